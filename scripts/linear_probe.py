"""A second opinion on a scene task: a standardised logistic-regression probe on HEAR scene embeddings.

    python scripts/linear_probe.py TASK_DIR MODEL [MODEL ...]      # MODEL: a .safetensors file, `default`, `logmel`

heareval's probe (an MLP on the raw embeddings, hyper-parameters chosen on the valid split) is the score of record;
on tasks of a few dozen test clips it can rank models by its own luck. This probe standardises each dimension and
fits scikit-learn's LogisticRegression for C in 0.01, 0.1, 1: train+valid -> test for a train/valid/test task, each
fold tested against all the others for a k-fold task (multiclass scene tasks only). Prints the test accuracy per C.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hear_maeast  # noqa: E402
import hear_maeast.logmel  # noqa: E402
from eval.taskdir import SceneClips, check_metadata, clip_batches, label_indices, scene_clips, task_splits  # noqa: E402
from hear_maeast.timing import SAMPLE_RATE  # noqa: E402

CS = (0.01, 0.1, 1.0)


def embedder(name: str):
    module, path = (hear_maeast.logmel, "") if name == "logmel" else (hear_maeast, "" if name == "default" else name)
    model = module.load_model(path)
    return lambda audio: module.get_scene_embeddings(audio, model).numpy()


def embed_split(clips: SceneClips, embed, batch: int = 64) -> np.ndarray:
    """Scene embeddings [N, D] of a split's clips, whole, batched by equal length (eval.taskdir.clip_batches)."""
    out = {}
    for idx, audio in clip_batches(clips, batch):
        out.update(zip(idx, embed(torch.from_numpy(audio))))
    return np.stack([out[i] for i in range(len(clips))])


def probe(task: Path, name: str) -> list[float]:
    """Test accuracy per C of the probe on the scene embeddings of model `name`."""
    metadata = check_metadata(task)
    if (metadata["embedding_type"], metadata["prediction_type"]) != ("scene", "multiclass"):
        sys.exit(f"{task.name} is a {metadata['embedding_type']} {metadata['prediction_type']} task; this probe "
                 f"scores multiclass scene tasks only")
    vocabulary = label_indices(task)
    splits = {s: scene_clips(task, [s], vocabulary, SAMPLE_RATE)
              for s in task_splits(metadata, task / "task_metadata.json")}
    embed = embedder(name)
    feats = {s: embed_split(split, embed) for s, split in splits.items()}
    labels = {s: np.array([clip[0] for clip in split.labels]) for s, split in splits.items()}  # multiclass: one label
    tests = ["test"] if metadata["split_mode"] == "trainvaltest" else list(splits)
    accs = []
    for c in CS:
        scores = []
        for test in tests:
            train = [s for s in splits if s != test]
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=c))
            clf.fit(np.concatenate([feats[s] for s in train]), np.concatenate([labels[s] for s in train]))
            scores.append(float((clf.predict(feats[test]) == labels[test]).mean()))
        accs.append(float(np.mean(scores)))
    return accs


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__.split("\n\n")[1].strip())
    task = Path(sys.argv[1])
    for name in sys.argv[2:]:
        accs = probe(task, name)
        print(f"{task.name}  {name}: " + ", ".join(f"C={c:g} {a:.3f}" for c, a in zip(CS, accs)), flush=True)


if __name__ == "__main__":
    main()
