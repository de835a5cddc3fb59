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
each split's clips, splits in task_metadata order), so two models scored on the same task folder list the same
clips in the same order; two folders whose targets differ are refused. Only accuracy tasks are compared
(`top1_acc`, and `pitch_acc`, which heareval scores with the same Top1Accuracy: a clip is right or wrong); the cell
is empty for the others (mAP, event onsets) and rows without predictions (`-finetuned`) are left out.
"""

from __future__ import annotations

import io
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.results import ModelResults, ResultsError
from eval.taskdir import ACCURACY_METRICS, TaskFacts
from hear_maeast.errors import BadInput

PREDICTIONS = ".predictions.pkl"  # heareval's <split>.predictions.pkl
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
    """heareval's predictions pickle holds torch tensors and nothing else: only their rebuild functions load."""

    ALLOWED = {("torch._utils", "_rebuild_tensor_v2"), ("collections", "OrderedDict")}

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _storage_from_bytes
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a predictions file never holds")


def _storage_from_bytes(data: bytes):
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


def read_predictions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(target label index, predicted label index), one per clip, from one heareval `<split>.predictions.pkl`."""
    try:
        with open(path, "rb") as f:
            found = _Predictions(f).load()
        target, prediction = found["target"], found["prediction"]
        if target.ndim != 2 or target.shape != prediction.shape:
            raise ValueError(f"target {tuple(target.shape)} and prediction {tuple(prediction.shape)} do not match")
    except Exception as e:  # anything half-written or foreign: one message naming the file
        raise ResultsError(f"{path} cannot be read ({type(e).__name__}: {e}); delete the task's results folder and "
                           f"run the same `hear-maeast eval` command again") from None
    return target.argmax(1).numpy(), prediction.argmax(1).numpy()


def clip_hits(task_out: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(targets, right-or-wrong) over every tested split of one task's results, in heareval's clip order; None
    when the folder has no predictions (a fine-tuned row, a failed task)."""
    files = sorted(Path(task_out).glob("*" + PREDICTIONS))
    if not files:
        return None
    read = [read_predictions(f) for f in files]
    targets = np.concatenate([t for t, _ in read])
    return targets, np.concatenate([t == p for t, p in read])


def compare(mine: tuple[np.ndarray, np.ndarray], theirs: tuple[np.ndarray, np.ndarray], where: str) -> Paired:
    """One model's clip_hits against the reference's on one task's pooled test clips (`where` names both folders)."""
    if not np.array_equal(mine[0], theirs[0]):
        raise ResultsError(f"{where} list different test clips (their targets differ): compare models scored on the "
                           f"same task folder")
    right, ref_right = mine[1], theirs[1]
    return Paired(int((right & ~ref_right).sum()), int((ref_right & ~right).sum()), len(right))


def paired_rows(tasks: list[str], models: list[ModelResults], facts: dict[str, TaskFacts | None],
                against: str) -> list[list[str]]:
    """Header `vs <against>` + tasks, then one row per other model: its Paired cell on each accuracy task."""
    by_name = {m.name: m for m in models}
    if against not in by_name:
        raise BadInput(f"--against {against}: no such model in these results (models: {', '.join(by_name)})")
    reference = by_name[against]
    paired_tasks = [t for t in tasks if t in reference.scores and facts[t] is not None
                    and facts[t].metric in ACCURACY_METRICS]
    ref_hits = {t: clip_hits(reference.folder / t) for t in paired_tasks}  # read once, not once per row
    out = [[f"vs {against}", *tasks]]
    for m in models:
        if m.name == against:
            continue
        cells = []
        for t in tasks:
            mine = clip_hits(m.folder / t) if t in m.scores and ref_hits.get(t) is not None else None
            where = f"{m.folder / t} and {reference.folder / t}"
            cells.append(str(compare(mine, ref_hits[t], where)) if mine is not None else "")
        if any(cells):  # a row with no predictions anywhere (a fine-tuned row) is left out
            out.append([m.name, *cells])
    return out


def paired_note(against: str) -> str:
    return (f"Paired with {against} on the same test clips (accuracy tasks; k-fold tasks pool their folds): `a:b` = "
            f"clips only the row's model got right : clips only {against} got right; p = exact two-sided McNemar "
            f"test; * p < {SIGNIFICANT}. Without a *, this task cannot tell the two apart.")
