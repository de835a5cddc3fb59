"""MTEB 2.x audio (MAEB; `pip install 'hear_maeast[mteb]'`): a model MTEB's audio tasks accept, and a local audio
classification task built from local clips (nothing from the hub).

    import mteb
    from eval.harness_tasks import mteb_task                      # a HEAR task folder, e.g. ../shared/data's
    from hear_maeast.adapters.mteb import MaeastAudioModel, local_task
    task = mteb_task("path/to/spoken_digit-1.0.9-small")          # = local_task(name, labels, splits) of its clips
    result = mteb.evaluate(MaeastAudioModel("model.safetensors"), task, cache=None)

Embeddings are the HEAR API's scene embeddings, one clip at a time at its own length (the API chunks long clips),
so a clip's embedding never depends on the other clips of its batch. Each row is [n_samples] or channels first
[channels, n_samples] floats (mixed down, as MTEB's collator); integer samples, [n_samples, channels], a clip of 0
samples and an empty split are refused by name (Embedder.clip). Audio must arrive at 16 kHz: MTEB's AudioCollator
would resample other rates with torchaudio; this model refuses them instead (BadInput naming the rate), so what it
embeds is what the HEAR API embeds. The local task passes
audio as arrays ({"array", "sampling_rate"} rows, no `datasets.Audio` feature), so no torchcodec or FFmpeg is needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hear_maeast.adapters import Embedder, require
from hear_maeast.errors import BadInput

require("mteb", "mteb")

from mteb.abstasks.classification import AbsTaskClassification  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402
from mteb.models import ModelMeta  # noqa: E402
from mteb.models.abs_encoder import AbsEncoder  # noqa: E402


def model_meta(embedder: Embedder, name: str) -> ModelMeta:
    cfg = embedder.cfg
    return ModelMeta(
        loader=None, name=f"hear_maeast/{name}", revision="local", release_date=None, languages=None,
        open_weights=True, max_tokens=None, n_parameters=None, n_embedding_parameters=None, memory_usage_mb=None,
        embed_dim=cfg.scene_embedding_size, license=None, reference=None, similarity_fn_name="cosine",
        framework=["PyTorch"], use_instructions=False, public_training_code=None, public_training_data=None,
        training_datasets=None, modalities=["audio"])


class MaeastAudioModel(AbsEncoder):
    """MTEB encoder: audio rows {"array", "sampling_rate": 16000} -> scene embeddings [n, scene_embedding_size]."""

    def __init__(self, checkpoint: str = "", *, layer: int = -1, onnx: str = "", **model_options):
        self.embedder = Embedder(checkpoint, layer=layer, onnx=onnx, **model_options)
        self.mteb_model_meta = model_meta(self.embedder, self.embedder.cfg.name)

    def encode(self, inputs, *, task_metadata, hf_split: str, hf_subset: str, prompt_type=None,
               **kwargs: Any) -> np.ndarray:
        if "audio" not in inputs.dataset.column_names:
            raise BadInput(f"MTEB task {task_metadata.name}: no audio column; hear_maeast models embed audio only")
        out = []
        for batch in inputs:
            for row in batch["audio"]:
                where = f"MTEB task {task_metadata.name}, split {hf_split}, clip {len(out)}"
                self.embedder.check_rate(row["sampling_rate"], where)
                audio = self.embedder.clip(row["array"], where)  # [N] mono (channels first, as MTEB's collator)
                out.append(self.embedder.scene(audio[None])[0].cpu().numpy())
        if not out:
            raise BadInput(f"MTEB task {task_metadata.name}, split {hf_split}: no clips to embed (an empty split); "
                           "give the task at least one clip per split")
        return np.stack(out)  # [n, D]


class LocalAudioClassification(AbsTaskClassification):
    """An MTEB audio classification task over local clips (`local_task`); MTEB's own evaluator scores it (logistic
    regression on `samples_per_label` clips per label, `n_experiments` times, accuracy)."""

    input_column_name: str = "audio"
    label_column_name: str = "label"
    samples_per_label: int = 4
    n_experiments: int = 3

    def __init__(self, splits: dict, **kwargs):
        super().__init__(**kwargs)
        self.local_splits = splits

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        from datasets import Dataset, DatasetDict

        self.dataset = DatasetDict({split: Dataset.from_list(rows) for split, rows in self.local_splits.items()})
        self.data_loaded = True


def local_task(name: str, labels, splits: dict, test_fold: int = -1) -> LocalAudioClassification:
    """Clips as an MTEB task: the task's name, its label vocabulary and {split: [(clip, audio [N] at 16 kHz,
    label)]} (eval.harness_tasks.mteb_task reads them from a HEAR task folder); split test_fold (the last) is
    "test", the others "train"."""
    from hear_maeast.adapters import check_clips
    from hear_maeast.timing import SAMPLE_RATE

    index = check_clips(name, labels, splits, "MTEB")
    folds = list(splits)
    if not (isinstance(test_fold, int) and -len(folds) <= test_fold < len(folds)):
        raise BadInput(f"MTEB task {name}: test_fold={test_fold!r}; expected an index of its {len(folds)} splits "
                       f"{folds} (-1 = the last)")
    test = folds[test_fold]
    rows = {"train": [], "test": []}
    for fold in folds:
        for _, audio, label in splits[fold]:
            rows["test" if fold == test else "train"].append(
                {"audio": {"array": np.asarray(audio).tolist(), "sampling_rate": SAMPLE_RATE}, "label": index[label]})
    title = "".join(w.capitalize() for w in name.replace("-", "_").split("_"))
    metadata = TaskMetadata(  # a class attribute: MTEB restores it from the class when it unloads the data
        name=f"HearMaeastLocal{title}", description=f"local clips of the HEAR task {name}", reference=None,
        dataset={"path": f"local/{name}", "revision": "local"}, type="AudioClassification", category="a2c",
        eval_splits=["test"], eval_langs=["zxx-Zxxx"], main_score="accuracy", date=None, domains=None,
        task_subtypes=None, license=None, annotations_creators=None, dialect=None, modalities=["audio"],
        sample_creation="found", bibtex_citation="")
    return type(f"Local{title}", (LocalAudioClassification,), {"metadata": metadata})(rows)
