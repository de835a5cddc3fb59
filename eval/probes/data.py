"""A task's embeddings as heareval wrote them, read without heareval's predictions code (no Lightning, no TensorFlow).

heareval's embeddings folder for a task (eval/runner.py's `embed_task` writes it) holds, per split:

    <split>.embeddings.npy               raw float32 memmap, shape in <split>.embedding-dimensions.json
    <split>.target-labels.pkl            one list of labels per row (a clip, or a frame of an event task)
    <split>.filename-timestamps.json     event tasks: (clip path, timestamp in ms) per row
    <split>.json, task_metadata.json, labelvocabulary.csv   copies of the task's own files

Rows are in heareval's order (a fixed shuffle of each split's clips), so every probe's predictions list the test
clips in the order heareval's do, and `table --against` can pair them (eval/paired.py).

The data splits are heareval's (`get_splits_from_metadata`): train/valid/test, or for a k-fold task each fold
tested once, the next fold (sorted, wrapping round) the validation fold and the others the training folds.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eval.protocol import rotation
from eval.taskdir import EVENT, TaskError, check_metadata, read_split, read_vocabulary, task_splits
from hear_maeast.errors import WorkFailed


class _PlainData(pickle.Unpickler):
    """target-labels.pkl holds lists of labels (str/int) only: no class is ever loaded from it."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"it names {module}.{name}; a target-labels file holds lists of labels only")


@dataclass
class SplitData:
    """One data split (heareval splits pooled in order): features, binary targets and, for event tasks, frames."""

    names: list[str]  # heareval split names, pooled in this order
    x: np.ndarray  # [rows, D] float32: a read-only memmap of one split, or a pooled copy of several
    y: np.ndarray  # [rows, labels] float32 in {0, 1}
    frames: list[tuple[str, float]] = field(default_factory=list)  # event tasks: (clip slug, ms) per row
    events: dict = field(default_factory=dict)  # event tasks: the split JSONs' {clip slug: [events]}
    _clips: dict | None = field(default=None, repr=False)

    def clips(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Event tasks: {clip slug: (its rows, their times in ms)} in first-seen order (heareval's), computed once."""
        if self._clips is None:
            slugs = [s for s, _ in self.frames]
            names, first, inverse = np.unique(slugs, return_index=True, return_inverse=True)
            times = np.array([t for _, t in self.frames], dtype=np.float64)
            rows = np.argsort(inverse, kind="stable")  # grouped by clip, each clip's rows in row order
            bounds = np.cumsum(np.bincount(inverse, minlength=len(names)))
            groups = np.split(rows, bounds[:-1])
            self._clips = {str(names[k]): (groups[k], times[groups[k]]) for k in np.argsort(first, kind="stable")}
        return self._clips


@dataclass
class TaskData:
    """A task's embeddings folder, read: metadata, label vocabulary and every heareval split's arrays."""

    folder: Path
    metadata: dict
    labels: list[str]  # vocabulary, index order
    splits: dict[str, SplitData]  # heareval split name -> its rows

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def is_event(self) -> bool:
        return self.metadata["embedding_type"] == EVENT

    @property
    def multiclass(self) -> bool:
        return self.metadata["prediction_type"] == "multiclass"

    @property
    def label_to_idx(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def rotation(self) -> list[dict[str, list[str]]]:
        """heareval's data splits: [{"train": [...], "valid": [...], "test": [...]}], one per tested fold."""
        return rotation(self.metadata, list(self.splits))

    def pooled(self, names: list[str]) -> SplitData:
        """The splits `names` as one (one split: its memmap, no copy; several: one pooled copy)."""
        parts = [self.splits[n] for n in names]
        if len(parts) == 1:
            return parts[0]
        frames = [f for p in parts for f in p.frames]
        events = {k: v for p in parts for k, v in p.events.items()}
        return SplitData(list(names), np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                         frames, events)

    def targets(self, names: list[str]) -> np.ndarray:
        """The targets [rows, labels] of the splits `names`, pooled (the features are not read)."""
        return np.concatenate([self.splits[n].y for n in names])


def _read_split(folder: Path, split: str, label_to_idx: dict[str, int], event: bool) -> SplitData:
    """One split's memmap, labels and (event tasks) frames; TaskError naming the file when one is damaged."""
    dims_file = folder / f"{split}.embedding-dimensions.json"
    try:
        rows, dim = json.loads(dims_file.read_text())
        path = folder / f"{split}.embeddings.npy"
        if path.stat().st_size != 4 * rows * dim:  # truncated, or of other dimensions
            raise ValueError(f"{path.name} holds {path.stat().st_size} bytes, {dims_file.name} says {rows} x {dim} "
                             f"float32 ({4 * rows * dim} bytes)")
        x = np.memmap(path, dtype=np.float32, mode="r", shape=(rows, dim)) if rows else np.zeros((0, dim), np.float32)
        with open(folder / f"{split}.target-labels.pkl", "rb") as f:
            labels = _PlainData(f).load()
        if len(labels) != rows:
            raise ValueError(f"{len(labels)} label rows for {rows} embedding rows")
    except (OSError, ValueError, TypeError, pickle.UnpicklingError) as e:
        raise TaskError(f"the embeddings of split {split} in {folder} cannot be read ({type(e).__name__}: {e}); "
                        f"delete {folder} and run the same command again, which embeds the task again") from None
    y = np.zeros((rows, len(label_to_idx)), np.float32)
    for i, row in enumerate(labels):
        try:
            y[i, [label_to_idx[str(label)] for label in row]] = 1.0
        except KeyError as e:
            raise TaskError(f"{folder}: split {split} has label {e} that is not in labelvocabulary.csv; the task "
                            f"folder is damaged: rebuild it") from None
    data = SplitData([split], x, y)
    if event:
        data.frames = [(Path(name).name, float(t)) for name, t in json.loads(
            (folder / f"{split}.filename-timestamps.json").read_text())]
        data.events = read_split(folder, split)
    return data


def read_task(folder: Path, out: Path | None = None) -> TaskData:
    """A task's embeddings folder (heareval's layout), read and checked (see `check`); with `out`, refused first
    when a probe's matrices would not fit in memory or its predictions on disk under `out` (`check_room`)."""
    folder = Path(folder)
    metadata = check_metadata(folder)
    labels = read_vocabulary(folder)
    label_to_idx = {label: i for i, label in enumerate(labels)}
    event = metadata["embedding_type"] == EVENT
    splits = {s: _read_split(folder, s, label_to_idx, event) for s in task_splits(metadata, folder)}
    widths = {s: d.x.shape[1] for s, d in splits.items()}
    if len(set(widths.values())) > 1:  # each split whole, but not of one model (or one embedding type)
        raise TaskError(f"the embeddings in {folder} are of different widths per split ({widths}): they are not of "
                        f"one model; delete {folder} and run the same command again, which embeds the task again")
    task = TaskData(folder, metadata, labels, splits)
    if out is not None:
        check_room(task, Path(out))
    check(task)
    return task


GiB = 2**30


def available_memory() -> int | None:
    """Bytes the kernel says a new allocation can take (MemAvailable); None where /proc/meminfo is missing."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def needs(task: TaskData) -> tuple[int, int]:
    """(memory, disk) bytes a probe needs for the task, at most: per data split (one rotation at a time), its train,
    valid and test rows, their standardised copy (the linear probe) and float64 temporaries of the training rows
    (the linear probe's std, kNN's bank); and the predictions it writes (target, probabilities, logits
    [rows, labels] float32 per tested split)."""
    dim, labels = next(iter(task.splits.values())).x.shape[1], len(task.labels)
    rows = lambda names: sum(len(task.splits[n].y) for n in names)  # noqa: E731
    memory = max(4 * dim * (2 * sum(rows(names) for names in r.values()) + 2 * rows(r["train"]))
                 for r in task.rotation())
    return memory, 3 * 4 * labels * sum(len(s.y) for s in task.splits.values())


def check_room(task: TaskData, out: Path) -> None:
    """Refuse up front (WorkFailed, the numbers and a way out) a task whose probe would not fit in memory or on disk."""
    import shutil

    memory, disk = needs(task)
    free = available_memory()
    if free is not None and memory > free:
        raise WorkFailed(f"{task.name}: a probe needs up to {memory / GiB:.1f} GiB of memory for its training "
                         f"matrices, {free / GiB:.1f} GiB are available: free memory, or run it on a larger machine")
    parent = next(p for p in (out, *out.parents) if p.exists())
    room = shutil.disk_usage(parent).free
    if disk > room:
        raise WorkFailed(f"{task.name}: its predictions need {disk / GiB:.2f} GiB on disk, {room / GiB:.2f} GiB are "
                         f"free under {parent}: free some space, or give another --out")


CHUNK_ROWS = 1 << 16  # rows read at a time when a whole split is only scanned (65,536 x D float32)


def nonfinite_rows(x: np.ndarray) -> int:
    """Rows of x holding NaN or inf, counted chunk by chunk (a memmap is never read whole)."""
    return sum(int((~np.isfinite(x[i:i + CHUNK_ROWS]).all(axis=1)).sum()) for i in range(0, len(x), CHUNK_ROWS))


def peak_magnitude(x: np.ndarray) -> float:
    """max |x|, chunk by chunk (a memmap is never read whole)."""
    return max((float(np.abs(x[i:i + CHUNK_ROWS]).max()) for i in range(0, len(x), CHUNK_ROWS)), default=0.0)


def check(task: TaskData) -> None:
    """Refuse what no probe can score: NaN/inf embeddings, or values so large that a row's squared norm overflows
    float32 (WorkFailed), a training split of one class, test labels never seen in training (TaskError); each in one
    line saying what to do."""
    for name, split in task.splits.items():
        bad = nonfinite_rows(split.x)
        if bad:
            raise WorkFailed(f"{task.folder}: {bad} embedding rows of split {name} hold NaN or inf; the model "
                             f"produced them: fix the model (or its --model-options) and embed the task again")
        peak, limit = peak_magnitude(split.x), float(np.sqrt(np.finfo(np.float32).max / split.x.shape[1]))
        if peak > limit:  # a row's squared norm overflows float32: every probe's arithmetic turns to inf / NaN
            raise WorkFailed(f"{task.folder}: embedding values of split {name} reach {peak:.3g}; above {limit:.3g} a "
                             f"row's squared norm overflows float32 and no probe (heareval's included) trains on it: "
                             f"scale the model's embeddings and embed the task again")
    for fold in task.rotation():
        seen = task.targets(fold["train"]).sum(0) > 0
        if task.multiclass and int(seen.sum()) < 2:
            raise TaskError(f"{task.name}: training split {'+'.join(fold['train'])} has a single class; a "
                            f"classifier needs two or more: rebuild the task")
        unseen = [task.labels[i] for i in np.flatnonzero((task.targets(fold["test"]).sum(0) > 0) & ~seen)]
        if unseen:
            raise TaskError(f"{task.name}: test split {'+'.join(fold['test'])} has labels never in its training "
                            f"split {'+'.join(fold['train'])} ({', '.join(unseen[:5])}); no probe can learn "
                            f"them: rebuild the task with every label in training")
