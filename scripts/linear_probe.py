"""A second opinion on a scene task: a standardised logistic-regression probe on HEAR scene embeddings.

    python scripts/linear_probe.py TASK_DIR MODEL [MODEL ...]      # MODEL: a .safetensors file, `default`, `logmel`

heareval's probe (an MLP on the raw embeddings, hyper-parameters chosen on the valid split) is the score of record;
on tasks of a few dozen test clips it can rank models by its own luck. This probe standardises each dimension and
fits scikit-learn's LogisticRegression for C in 0.01, 0.1, 1: train+valid -> test for a train/valid/test task, each
fold tested against all the others for a k-fold task (multiclass scene tasks only). Prints the test accuracy per C.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hear_maeast  # noqa: E402
import hear_maeast.logmel  # noqa: E402

CS = (0.01, 0.1, 1.0)


def load_split(task: Path, split: str) -> tuple[torch.Tensor, np.ndarray]:
    """Audio [n, samples] (the task's clips have one length) and first labels [n] of one split."""
    clips = json.loads((task / f"{split}.json").read_text())
    audio = np.stack([sf.read(task / "16000" / split / name, dtype="float32")[0] for name in clips])
    return torch.from_numpy(audio), np.array([labels[0] for labels in clips.values()])


def embedder(name: str):
    module, path = (hear_maeast.logmel, "") if name == "logmel" else (hear_maeast, "" if name == "default" else name)
    model = module.load_model(path)
    return lambda audio: np.concatenate([module.get_scene_embeddings(a, model).numpy() for a in audio.split(64)])


def probe(task: Path, name: str) -> list[float]:
    meta = json.loads((task / "task_metadata.json").read_text())
    embed = embedder(name)
    data = {s: load_split(task, s) for s in meta["splits"]}
    feats = {s: embed(a) for s, (a, _) in data.items()}
    tests = ["test"] if meta["split_mode"] == "trainvaltest" else list(data)
    accs = []
    for c in CS:
        scores = []
        for test in tests:
            train = [s for s in data if s != test]
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=c))
            clf.fit(np.concatenate([feats[s] for s in train]), np.concatenate([data[s][1] for s in train]))
            scores.append(float((clf.predict(feats[test]) == data[test][1]).mean()))
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
