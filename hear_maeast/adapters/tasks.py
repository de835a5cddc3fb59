"""A HEAR scene task folder (hear-preprocess layout, e.g. `hear-maeast tasks drums` or the spoken digit task in
../shared/data) as labelled 16 kHz clips, for harnesses that bring their own data formats (X-ARES shards, an MTEB
dataset): built locally, nothing downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hear_maeast.errors import BadInput
from hear_maeast.timing import SAMPLE_RATE


def scene_clips(task_dir) -> tuple[str, list[str], dict[str, list[tuple[str, np.ndarray, str]]]]:
    """(task name, label vocabulary, {split: [(clip name, audio [N] float32 at 16 kHz, label)]}) of a multiclass
    scene task; audio is read from the 16000 Hz folder when present, else resampled from the lowest rate there."""
    from eval import taskdir
    from hear_maeast.audio import load_audio

    task_dir = Path(task_dir)
    meta = taskdir.check_metadata(task_dir)
    if (meta["embedding_type"], meta["prediction_type"]) != ("scene", "multiclass"):
        raise BadInput(f"{task_dir}: a {meta['embedding_type']} {meta['prediction_type']} task; the harness adapters "
                       "take scene multiclass tasks (one label per clip)")
    rates = taskdir.sample_rates(task_dir)
    if not rates:
        raise BadInput(f"{task_dir}: no <sample_rate>/ audio folder; is the task complete?")
    rate = SAMPLE_RATE if SAMPLE_RATE in rates else rates[0]
    splits = {}
    for split in taskdir.task_splits(meta, task_dir / "task_metadata.json"):
        clips = taskdir.read_split(task_dir, split)
        splits[split] = [(name, load_audio(task_dir / str(rate) / split / name).numpy(), str(labels[0]))
                         for name, labels in sorted(clips.items())]
    return f"{meta.get('task_name', task_dir.name)}", taskdir.read_vocabulary(task_dir), splits
