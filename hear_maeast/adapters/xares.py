"""X-ARES (`pip install 'hear_maeast[xares]'`): an encoder its checker accepts, and a local task built from local
clips (write_shards). This module is both X-ARES's encoder file and its task file (it holds one `...Encoder` class
and one `..._config` function, which is how `xares.run` finds them):

    python -m eval.harness_tasks xares-shards TASK_DIR ENV_ROOT       # a HEAR task folder's webdataset shards
    HEAR_MAEAST_XARES_TASK=ENV_ROOT/NAME python -m xares.run --max-jobs 0 \
        hear_maeast/adapters/xares.py hear_maeast/adapters/xares.py     # X-ARES's own encode, MLP and kNN

The encoder reads HEAR_MAEAST_CHECKPOINT ("" = default weights), HEAR_MAEAST_LAYER and HEAR_MAEAST_ONNX (an exported
graph instead of torch), since X-ARES builds it without arguments. Its output is the HEAR API's timestamp
embeddings: [B, T, timestamp_embedding_size], one frame every hop_ms (40 ms for 16x16 patches, 20 ms for 128x2).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import torch

from hear_maeast.adapters import Embedder, HarnessModule, require
from hear_maeast.errors import BadInput
from hear_maeast.timing import SAMPLE_RATE

LABELS_FILE = "hear_maeast_labels.json"  # the task's label vocabulary and folds, next to its shards


class MaeastEncoder(HarnessModule):
    """X-ARES encoder: audio [B, N] at 16 kHz -> timestamp embeddings [B, T, output_dim], every hop_size_in_ms.
    `.to(device)` moves the model (X-ARES calls it with cuda when there is a GPU)."""

    sampling_rate = SAMPLE_RATE

    def __init__(self, checkpoint: str | None = None, layer: int | None = None, onnx: str | None = None):
        checkpoint = os.environ.get("HEAR_MAEAST_CHECKPOINT", "") if checkpoint is None else checkpoint
        onnx = os.environ.get("HEAR_MAEAST_ONNX", "") if onnx is None else onnx
        if layer is None:
            text = os.environ.get("HEAR_MAEAST_LAYER", "-1")
            try:
                layer = int(text)
            except ValueError:
                raise BadInput(f"HEAR_MAEAST_LAYER={text!r}: expected an int (1-based block, -1 = last)") from None
        super().__init__(Embedder(checkpoint, layer=layer, onnx=onnx))
        self.output_dim = self.embedder.cfg.timestamp_embedding_size
        self.hop_size_in_ms = self.embedder.cfg.hop_ms

    def forward(self, audio: torch.Tensor) -> torch.Tensor:  # [B, N] -> [B, T, D]
        embeddings, _ = self.embedder.timestamps(self.embedder.batch(audio, "X-ARES encoder"))
        return self.output(embeddings)


def write_shards(name: str, labels, splits: dict, env_root) -> Path:
    """Clips (the task's name, its label vocabulary, {split: [(clip, audio [N] at 16 kHz, label)]}; the clips of a
    HEAR task folder: eval.harness_tasks.xares_shards) -> ENV_ROOT/<name>/wds-audio-fold-<split>-000000.tar (16 kHz
    wav + {"label"}), the labels file and X-ARES's "audio ready" marker; returns the task's folder
    (HEAR_MAEAST_XARES_TASK)."""
    from hear_maeast.adapters import check_clips

    check_clips(name, labels, splits, "X-ARES")
    for what, text in [("task name", name), *(("split", split) for split in splits)]:
        if not isinstance(text, str) or text in ("", ".", "..") or Path(text).name != text or "\\" in text:
            raise BadInput(f"X-ARES {what} {text!r}: it names a folder or shard file (ENV_ROOT/<name>/"
                           "wds-audio-fold-<split>-000000.tar); give a plain name")
    require("webdataset", "xares")
    import soundfile as sf
    import webdataset as wds

    out = Path(env_root) / name
    out.mkdir(parents=True, exist_ok=True)
    for split, clips in splits.items():
        with wds.TarWriter(str(out / f"wds-audio-fold-{split}-000000.tar")) as tar:
            for clip, audio, label in clips:
                buf = io.BytesIO()
                sf.write(buf, audio, SAMPLE_RATE, format="WAV", subtype="FLOAT")
                tar.write({"__key__": Path(clip).stem.replace(".", "_"), "wav": buf.getvalue(),
                           "json": json.dumps({"label": label}).encode()})
    (out / LABELS_FILE).write_text(json.dumps({"labels": list(labels), "folds": list(splits)}))
    (out / ".audio_tar_ready").touch()
    return out


def hear_task_config(encoder):
    """X-ARES task of the shards in HEAR_MAEAST_XARES_TASK (write_shards): k-fold over the HEAR folds, accuracy.
    HEAR_MAEAST_XARES_EPOCHS sets the MLP's epochs (default 10)."""
    from xares.task import TaskConfig

    folder = Path(os.environ.get("HEAR_MAEAST_XARES_TASK", ""))
    if not (folder / LABELS_FILE).is_file():
        raise BadInput(f"HEAR_MAEAST_XARES_TASK={str(folder)!r}: no {LABELS_FILE} there; build the shards with "
                       "`python -m eval.harness_tasks xares-shards TASK_DIR ENV_ROOT`")
    text = os.environ.get("HEAR_MAEAST_XARES_EPOCHS", "10")
    if not text.isdigit() or int(text) < 1:
        raise BadInput(f"HEAR_MAEAST_XARES_EPOCHS={text!r}: expected a positive int (the MLP's epochs)")
    facts = json.loads((folder / LABELS_FILE).read_text())
    index = {label: i for i, label in enumerate(facts["labels"])}
    return TaskConfig(name=folder.name, env_root=str(folder.parent), private=True, encoder=encoder,
                      k_fold_splits=facts["folds"], output_dim=len(index), label_processor=lambda x: index[x["label"]],
                      epochs=int(text),
                      batch_size_encode=1,  # X-ARES zero-pads a batch and drops the lengths: one clip, no padding
                      num_encoder_workers=0, metric="accuracy", eval_weight=1)


if __name__ == "__main__":
    import sys

    sys.exit("the shards of a HEAR task folder: python -m eval.harness_tasks xares-shards TASK_DIR ENV_ROOT "
             "(this module is X-ARES's encoder and task file)")
