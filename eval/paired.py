"""Paired comparison of two models on the same test clips (`hear-maeast table --against MODEL`).

A leaderboard cell is a mean over a task's test clips; on a task of 11 or 40 test clips two models a few clips
apart cannot be told apart. This compares them clip by clip: for every clip of the tested splits, did each model
get it right? `a:b` counts the clips only the row's model got right (a) and those only MODEL got right (b); p is
the exact two-sided McNemar test (McNemar 1947; the binomial test of a against a + b at 1/2), the standard
paired test for two classifiers scored on one test set (Dietterich 1998).

Where the clips come from: heareval writes `<split>.predictions.pkl` ({"target": [clips, labels] one-hot,
"prediction": [clips, labels], "prediction_logit": ...}, torch tensors) for every split it tests: `test`, or
each fold of a k-fold task (each clip is tested once; the folds are pooled here). The clip order is a function of
the task's split JSONs alone (heareval.embeddings.task_embeddings.memmap_embeddings: `random.Random(0)` shuffles
each split's clips, splits in task_metadata order), so the clip of every row is known from the split JSONs heareval
copied into the results: clips are paired by name, and two folders whose clip names or targets differ are
refused. A task's files must cover its tested splits, each once (every fold of a k-fold task): a fold's file
missing is refused, never paired on the folds left. Each file is checked against its task before a tensor is made
(rows: the split's clips, columns: the vocabulary; dense, inside its storage): reading one takes the memory of the
arrays the task implies. Only accuracy
tasks are compared (`top1_acc`, and `pitch_acc`, which heareval scores with the same Top1Accuracy: a clip is right or
wrong); the cell is empty for the others (mAP, event onsets) and rows without predictions (`-finetuned`) are left
out. Which row is paired with which is eval/table.py's `pairing`.
"""

from __future__ import annotations

import io
import math
import pickle
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.layout import FINETUNED_SUFFIX, PREDICTIONS, ResultsError
from eval.results import ModelResults
from eval.protocol import ACCURACY_METRICS, TaskFacts, tested_splits
from eval.taskdir import METADATA, TaskError, read_metadata, read_split, read_vocabulary, task_splits

SIGNIFICANT = 0.05


def mcnemar_p(a: int, b: int) -> float:
    """Exact two-sided McNemar p: P(|X - n/2| >= |a - n/2|) for X ~ Binomial(n = a + b, 1/2); 1.0 when n = 0."""
    n, k = a + b, min(a, b)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


@dataclass(frozen=True)
class Paired:
    only_model: int  # clips the row's model got right and the reference got wrong
    only_reference: int  # the other way round
    clips: int

    @property
    def p(self) -> float:
        return mcnemar_p(self.only_model, self.only_reference)

    def __str__(self) -> str:
        mark = "*" if self.p < SIGNIFICANT else ""
        return f"{self.only_model}:{self.only_reference} p={self.p:.2g}{mark}"


class _Predictions(pickle.Unpickler):
    """heareval's predictions pickle holds torch tensors and nothing else: only their rebuild functions load, and
    every tensor is checked against the shape the task implies BEFORE it is made (a few-KB pickle with zero strides
    and a huge size would otherwise claim gigabytes the moment it is used)."""

    ALLOWED = {("collections", "OrderedDict")}
    # An event task's file also holds its events ({"label", "start": np.float64, "end"}) and a [frames] timestamp
    # tensor; numpy rebuilds a scalar from a dtype and its bytes, allowed for numeric dtypes only.
    NUMPY_SCALAR = {("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar")}

    def __init__(self, file, shape: tuple[int, int] | None):
        """shape: (rows, labels) the task implies; None (a file this process's own heareval run just wrote, of a
        shape only it knows, e.g. an event task's frames) checks density only: memory stays within the file's bytes."""
        super().__init__(file)
        self.shape = shape

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _storage_from_bytes
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild_tensor
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        if self.shape is None and (module, name) == ("numpy", "dtype"):
            return np.dtype
        if self.shape is None and (module, name) in self.NUMPY_SCALAR:
            return _numeric_scalar
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a predictions file never holds")

    def _rebuild_tensor(self, storage, offset, size, stride, *rest):
        """torch's _rebuild_tensor_v2, for a dense [clips, labels] tensor lying inside its storage only (shape None:
        any dense [rows, labels] or [rows] one)."""
        import torch
        from torch._utils import _rebuild_tensor_v2

        rows, labels = self.shape or (tuple(size) + (1, 1))[:2]
        if self.shape is None and len(size) == 1:  # an event task's [frames] timestamps
            size, stride = (rows,), (1,)
        elif len(size) != 2 or tuple(size) != (rows, labels):
            raise ValueError(f"a tensor of shape {list(size)}, the task implies [{rows}, {labels}] (its test clips, its "
                             "labels)")
        inside = isinstance(offset, int) and 0 <= offset and offset + rows * labels <= storage._size()  # no warning
        dense = (labels, 1) if len(size) == 2 else (1,)
        if not isinstance(storage, torch.storage.TypedStorage) or tuple(stride) != dense or not inside:
            raise ValueError(f"a tensor that is not a dense {list(size)} block of its storage")
        return _rebuild_tensor_v2(storage, offset, size, stride, *rest)


def _numeric_scalar(dtype: np.dtype, data: bytes):
    """numpy's scalar rebuild (numpy._core.multiarray.scalar) for bool, integer, float and complex dtypes only."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or not isinstance(data, bytes):
        raise ValueError(f"a numpy scalar of dtype {dtype!r}, not a number")
    if len(data) != dtype.itemsize:
        raise ValueError(f"a numpy {dtype} scalar of {len(data)} bytes")
    return np.frombuffer(data, dtype)[0]


def _storage_from_bytes(data: bytes):
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


def read_own_predictions(path: Path) -> dict:
    """Every entry of a `<split>.predictions.pkl` the caller's own heareval run just wrote, of any task type (an
    event task's frames are known only to that run): tensors dense inside their storage, numbers, strings; the
    restricted unpickler all the same (scripts/probe_agreement.py)."""
    with open(path, "rb") as f:
        return _Predictions(f, None).load()


def read_predictions(path: Path, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(target label index, predicted label index), one per clip, from one heareval `<split>.predictions.pkl` of a
    task with `shape` = (test clips, labels). Memory: the arrays the shape implies, never what the file claims."""
    limit = 3 * 8 * shape[0] * shape[1] + 2**20  # three float64 [clips, labels] tensors and the pickle's framing
    try:
        size = Path(path).stat().st_size
        if size > limit:
            raise ValueError(f"{size} bytes, more than 3 tensors of [{shape[0]}, {shape[1]}] can take")
        with open(path, "rb") as f:
            found = _Predictions(f, shape).load()
        target, prediction = found["target"], found["prediction"]
        if not all(hasattr(x, "shape") and tuple(x.shape) == shape for x in (target, prediction)):
            raise ValueError(f"target and prediction must both be [{shape[0]}, {shape[1]}] tensors")
    except Exception as e:  # anything half-written, foreign or hostile: one message naming the file
        raise ResultsError(f"{path} cannot be read ({type(e).__name__}: {e}); delete the task's results folder and "
                           f"run the same `hear-maeast eval` command again") from None
    return target.argmax(1).numpy(), prediction.argmax(1).numpy()


@dataclass(frozen=True)
class ClipHits:
    """One model's tested clips of one task: names (heareval's row order), target label index, right or wrong."""

    names: list[str]
    targets: np.ndarray  # [clips] int
    right: np.ndarray  # [clips] bool


def tested_clips(task_out: Path) -> dict[str, list[str]]:
    """{split: its clip names in the order of heareval's predictions rows}, from the task files heareval copied
    into `task_out`: heareval shuffles each split's clips with one random.Random(0), splits in metadata order
    (heareval.embeddings.task_embeddings.memmap_embeddings); a shuffle depends on the list's length only."""
    task_out = Path(task_out)
    prng, order = random.Random(0), {}
    try:
        for split in task_splits(read_metadata(task_out), task_out / METADATA):
            order[split] = list(read_split(task_out, split))
            prng.shuffle(order[split])
    except TaskError as e:
        raise ResultsError(f"{e} (in a results folder: delete {task_out} and evaluate again)") from None
    return order


def clip_hits(task_out: Path) -> ClipHits | None:
    """Every tested split of one task's results, pooled, in heareval's clip order; None when the folder has no
    predictions (a fine-tuned row, a failed task). Each `<split>.predictions.pkl` is read against the task: its
    rows must be that split's clips (`fold00|fold01`: both), its columns the task's labels."""
    files = sorted(Path(task_out).glob("*" + PREDICTIONS))
    if not files:
        return None
    order = tested_clips(task_out)
    try:
        labels = len(read_vocabulary(task_out))
        tested = tested_splits(read_metadata(task_out), list(order))
    except TaskError as e:
        raise ResultsError(f"{e} (in a results folder: delete {task_out} and evaluate again)") from None
    keys = [f.name[: -len(PREDICTIONS)].split("|") for f in files]
    if sorted(s for k in keys for s in k) != sorted(tested):
        found = ", ".join("|".join(k) for k in keys)
        raise ResultsError(f"{task_out} holds the predictions of {found}, but its task tests {', '.join(tested)}, each "
                           "once: a file is missing or left from another run; delete the task's folder and run the "
                           "command that wrote it again (`hear-maeast eval` or `probe`)")
    names, targets, right = [], [], []
    for f, splits in zip(files, keys):
        clips = [c for s in splits for c in order[s]]
        target, predicted = read_predictions(f, (len(clips), labels))
        names += clips
        targets.append(target)
        right.append(target == predicted)
    return ClipHits(names, np.concatenate(targets), np.concatenate(right))


def compare(mine: ClipHits, theirs: ClipHits, where: str) -> Paired:
    """One model's clip_hits against the reference's on one task's pooled test clips, paired by clip name
    (`where` names both folders); refused unless both tested the same clips with the same targets."""
    if sorted(mine.names) != sorted(theirs.names):
        raise ResultsError(f"{where} list different test clips (their clip names differ): compare models scored on "
                           f"the same task folder")
    at = {name: i for i, name in enumerate(theirs.names)}
    idx = np.array([at[name] for name in mine.names], dtype=np.int64)  # theirs, in my order
    if not np.array_equal(mine.targets, theirs.targets[idx]):
        raise ResultsError(f"{where} list different test clips (their targets differ): compare models scored on the "
                           f"same task folder")
    right, ref_right = mine.right, theirs.right[idx]
    return Paired(int((right & ~ref_right).sum()), int((ref_right & ~right).sum()), len(right))


def has_predictions(m: ModelResults, tasks: list[str], facts: dict[str, TaskFacts | None]) -> bool:
    """Whether `m` holds predictions files for any accuracy task among `tasks` (read later, by paired_rows)."""
    return any(t in m.scores and facts[t] is not None and facts[t].metric in ACCURACY_METRICS
               and any((m.folder / t).glob("*" + PREDICTIONS)) for t in tasks)


def nothing_to_pair(m: ModelResults, tasks: list[str], facts: dict[str, TaskFacts | None]) -> str:
    """Why a row without predictions (has_predictions) pairs with nothing."""
    if m.run_name.endswith(FINETUNED_SUFFIX):
        return "a fine-tuned row has no heareval predictions"
    accuracy = [t for t in tasks if t in m.scores and facts[t] is not None and facts[t].metric in ACCURACY_METRICS]
    return f"it has no {PREDICTIONS.lstrip('.')} for any accuracy task ({', '.join(accuracy) or 'none here'})"


def paired_rows(tasks: list[str], rows: list[ModelResults], facts: dict[str, TaskFacts | None],
                reference: ModelResults) -> list[list[str]]:
    """Header `vs <reference>` + tasks, then each of `rows` with its Paired cell on each accuracy task it shares
    with `reference`; a row with no cell (no predictions: a fine-tuned row) is left out."""
    paired_tasks = [t for t in tasks if t in reference.scores and facts[t] is not None
                    and facts[t].metric in ACCURACY_METRICS]
    ref_hits = {t: clip_hits(reference.folder / t) for t in paired_tasks}  # read once, not once per row
    out = [[f"vs {reference.name}", *tasks]]
    for m in rows:
        cells = []
        for t in tasks:
            mine = clip_hits(m.folder / t) if t in m.scores and ref_hits.get(t) is not None else None
            where = f"{m.folder / t} and {reference.folder / t}"
            cells.append(str(compare(mine, ref_hits[t], where)) if mine is not None else "")
        if any(cells):
            out.append([m.name, *cells])
    return out


def paired_note(against: str | None = None) -> str:
    """The note under the paired tables: of one table, paired with `against`; of several, each with its header's."""
    if against is not None:
        return (f"Paired with {against} on the same test clips (accuracy tasks; k-fold tasks pool their folds): `a:b` "
                f"= clips only the row's model got right : clips only {against} got right; p = exact two-sided "
                f"McNemar test; * p < {SIGNIFICANT}. Without a *, this task cannot tell the two apart.")
    return ("Each table pairs its rows with the row its header names (`vs ROW`), on the same test clips (accuracy "
            "tasks; k-fold tasks pool their folds): `a:b` = clips only the row's model got right : clips only ROW got "
            f"right; p = exact two-sided McNemar test; * p < {SIGNIFICANT}. Without a *, this task cannot tell the "
            "two apart.")
