"""`knn`: X-ARES's kNN probe (xares 0.1.3 on PyPI: xares/trainer.py `KNN`, `KNNTrainer`; xares/task.py `run_knn`).

What is X-ARES's: k = 10 nearest training clips by cosine similarity (dot products of L2-normalised embeddings),
each neighbour's one-hot label weighted by softmax(similarity / 0.07) over the k, the votes summed per class; the
training clips are the task's training split for a train/valid/test task (no validation split: nothing is tuned),
and all other folds for each tested fold of a k-fold task. Single-label clip tasks only; multi-label and event
tasks are `n/a` (X-ARES scores those with its MLP only).

Where this deviates: xares 0.1.3 normalises the training matrix after transposing it (`normalize(train.T, dim=1)`),
i.e. each embedding dimension over the training clips rather than each clip; here each training clip is
L2-normalised, as the test clips are there and as the cosine kNN it follows (DINO's) does. The score is the
task's own metric from heareval.score (top1_acc or pitch_acc: X-ARES's accuracy) on the vote.
"""

from __future__ import annotations

import numpy as np
import torch

from eval.probes.common import FoldResult, scored_fold
from eval.probes.data import TaskData
from eval.probes.scoring import Scorer

K = 10
TEMPERATURE = 0.07


def applies(task: TaskData) -> bool:
    return task.multiclass and not task.is_event


QUERY_ELEMENTS = 1 << 24  # similarities computed at a time: 16 M float64 (128 MiB), whatever the task's size


def vote(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, k: int = K,
         temperature: float = TEMPERATURE) -> np.ndarray:
    """Class votes [test rows, labels] (each row sums to 1) from train_x [N, D], one-hot train_y [N, L], test_x
    [M, D]; the test rows in chunks, so the [M, N] similarities are never held whole."""
    bank = torch.nn.functional.normalize(torch.from_numpy(np.asarray(train_x, dtype=np.float64)), dim=1)  # [N, D]
    onehot = torch.from_numpy(np.asarray(train_y, dtype=np.float64))  # [N, L]
    chunk = max(1, QUERY_ELEMENTS // max(1, len(bank)))
    out = []
    for i in range(0, len(test_x), chunk):
        rows = np.asarray(test_x[i:i + chunk], dtype=np.float64)  # a copy: a memmap's rows are read-only
        query = torch.nn.functional.normalize(torch.from_numpy(rows), dim=1)
        sims, idx = (query @ bank.T).topk(min(k, len(bank)), dim=1)  # [m, k]
        weights = (sims / temperature).softmax(1)  # [m, k]
        out.append((onehot[idx] * weights[..., None]).sum(1).float().numpy())  # [m, k, L] -> [m, L]
    return np.concatenate(out) if out else np.zeros((0, train_y.shape[1]), np.float32)


def run(task: TaskData, scorer: Scorer) -> tuple[list[FoldResult], dict]:
    results = []
    for split in task.rotation():
        names = split["train"] if task.metadata["split_mode"] == "trainvaltest" else split["train"] + split["valid"]
        train, test = task.pooled(names), task.pooled(split["test"])
        probs = vote(train.x, train.y, test.x)
        results.append(scored_fold(task, scorer, split["test"], probs, None, (), {}))
    return results, {"k": K, "temperature": TEMPERATURE}
