"""What every probe returns per tested split, and the few helpers they share."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from eval.probes.data import SplitData, TaskData, peak_magnitude
from eval.probes.scoring import Postprocessing, Scorer
from hear_maeast.errors import WorkFailed


@dataclass
class FoldResult:
    """One tested split: the probe's probabilities on its rows and heareval's test result keys."""

    test: list[str]  # heareval split names tested (["test"], or one fold)
    probs: np.ndarray  # [rows, labels]: softmax (multiclass), sigmoid (multi-label) or kNN vote
    targets: np.ndarray  # [rows, labels] one-hot / multi-hot
    scores: dict  # test_score, test_<metric>, ... (heareval's keys)
    logits: np.ndarray | None = None
    extra: dict = field(default_factory=dict)  # validation_score, epoch, ...
    postprocessing: Postprocessing = ()
    events: dict | None = None  # event tasks: predicted events


def cpu_threads() -> int:
    """torch's CPU threads for the probes: OMP_NUM_THREADS when set, else 1, as `eval` runs heareval's predictions
    (eval.runner.prediction_env): these small matrices gain little from a second thread, and on a busy 2-core
    machine two threads spin (measured: the mlp probe on the synthetic pitch task took 158 s with 2, 15 s with 1)."""
    threads = int(os.environ.get("OMP_NUM_THREADS") or 1)
    torch.set_num_threads(threads)
    return threads


def tensors(split: SplitData, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) on `device`; on the CPU x shares the split's memory (a read-only memmap: never written to)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.from_numpy(split.x).to(device), torch.from_numpy(split.y).to(device)


def scored_fold(task: TaskData, scorer: Scorer, names: list[str], probs: np.ndarray, logits: np.ndarray | None,
                post: Postprocessing, extra: dict) -> FoldResult:
    """A FoldResult for the tested split `names`, scored with the task's score functions."""
    if not np.isfinite(probs).all():  # e.g. embeddings near float32's limits overflow the probe's layers
        peak = max(peak_magnitude(s.x) for s in task.splits.values())
        raise WorkFailed(f"{task.name}: the probe's predictions on {'+'.join(names)} hold NaN or inf (the embeddings "
                         f"reach |x| = {peak:.3g}, beyond what a float32 probe can train on): scale the model's "
                         "embeddings and embed the task again")
    test = task.pooled(names)
    scores, events = scorer.test_scores(probs, test, post)
    return FoldResult(list(names), probs, test.y, {**scores, **extra}, logits, extra, post, events)
