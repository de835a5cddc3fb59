"""`linear`: EVAR's linear evaluation (nttcslab/eval-audio-repr: lineareval.py, evar/utils/torch_mlp_clf2.py).

What is EVAR's: features standardised with the training split's mean and standard deviation (sklearn's
StandardScaler: population std, 1 where a dimension is constant); one torch Linear layer (PyTorch's default init);
Adam (betas 0.9/0.999, eps 1e-8, weight decay 1e-8) at lr 3e-4 (`lr_lineareval` of EVAR's configs for most models;
its M2D configs use 3e-5); shuffled batches of min(200, rows); at most 200 epochs; loss -mean(one-hot *
log_softmax) for single-label tasks (EVAR's loss_nll_with_logits) and BCE on sigmoid for multi-label ones;
validation after every epoch on accuracy (single-label) or mAP (multi-label), the weights of the best epoch kept
(`>=`: a later equal epoch wins), stop after 20 epochs without one (EVAR's `early_stop_epochs` in its configs).

Where this deviates, and why:
- the splits are heareval's (train/valid/test; for k-fold tasks each fold tested once with the next fold as the
  validation fold, heareval's rotation) so that the three probes are scored on the same clips and pair clip by
  clip; EVAR uses its own folds for its tasks;
- the score is the task's own metric from heareval.score (as heareval scores it), not EVAR's re-implementation;
- event (timestamp) tasks, which EVAR does not have: frame-level multi-label on the timestamp embeddings, early
  stopping on the frame mAP, then heareval's event post-processing chosen on the validation split and heareval's
  event score on the test split.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from eval.probes.common import FoldResult, scored_fold
from eval.probes.data import SplitData, TaskData
from eval.probes.scoring import Scorer
from hear_maeast.device import resolve_device

LR = 3e-4
WEIGHT_DECAY = 1e-8
MAX_EPOCHS = 200
PATIENCE = 20
MAX_BATCH = 200


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """sklearn StandardScaler fitted on `train`, applied to it and to `others`."""
    mean = train.mean(0, dtype=np.float64)
    std = train.std(0, dtype=np.float64)
    std[std == 0] = 1.0
    return [((a - mean) / std).astype(np.float32) for a in (train, *others)]


def _loss(logits: torch.Tensor, y: torch.Tensor, multiclass: bool) -> torch.Tensor:
    if multiclass:
        return -(y * logits.log_softmax(-1)).mean()
    return torch.nn.functional.binary_cross_entropy(logits.sigmoid(), y)


def _probs(model: torch.nn.Module, x: torch.Tensor, multiclass: bool) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
    return (logits.softmax(-1) if multiclass else logits.sigmoid()).cpu().numpy(), logits.cpu().numpy()


def _valid_metric(task: TaskData, scorer: Scorer, probs: np.ndarray, valid: SplitData) -> float:
    """Accuracy for single-label tasks, mAP for multi-label ones (frame-level on event tasks)."""
    if task.multiclass:
        return float((probs.argmax(1) == valid.y.argmax(1)).mean())
    if not task.is_event:
        return scorer.validate(probs, valid).score  # the task's own metric (mAP for the multi-label clip tasks)
    from heareval.score import available_scores

    return float(available_scores["mAP"](label_to_idx=task.label_to_idx)(probs, valid.y))


def fit(task: TaskData, scorer: Scorer, split: dict, seed: int, device: torch.device, lr: float = LR):
    """Train on the split's training rows, early-stopped on its validation rows; (model, [train, valid, test]
    features standardised, best epoch, its validation score)."""
    train, valid, test = (task.pooled(split[k]) for k in ("train", "valid", "test"))
    xs = [torch.from_numpy(a).to(device) for a in standardise(train.x, valid.x, test.x)]
    y = torch.from_numpy(train.y).to(device)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = torch.nn.Linear(xs[0].shape[1], y.shape[1]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    batch = min(MAX_BATCH, len(y))
    best, best_state, best_epoch, wait = -np.inf, None, 0, 0
    for epoch in range(MAX_EPOCHS):
        model.train()
        for idx in torch.randperm(len(y), generator=gen).split(batch):
            opt.zero_grad()
            _loss(model(xs[0][idx]), y[idx], task.multiclass).backward()
            opt.step()
        value = _valid_metric(task, scorer, _probs(model, xs[1], task.multiclass)[0], valid)
        if value >= best:
            best, best_state, best_epoch, wait = value, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            wait += 1
            if wait >= PATIENCE:
                break
    model.load_state_dict(best_state)
    return model, xs, best_epoch, best


def run(task: TaskData, scorer: Scorer, seed: int = 0, device: str | None = None) -> tuple[list[FoldResult], dict]:
    dev = resolve_device(device, "--device")
    results = []
    for split in task.rotation():
        model, xs, epoch, best = fit(task, scorer, split, seed, dev)
        post = ()
        if task.is_event:  # heareval's post-processing, chosen on the validation split with the best weights
            post = scorer.validate(_probs(model, xs[1], False)[0], task.pooled(split["valid"])).postprocessing
        probs, logits = _probs(model, xs[2], task.multiclass)
        results.append(scored_fold(task, scorer, split["test"], probs, logits, post,
                                   {"validation_score": best, "epoch": epoch}))
    return results, {"lr": LR, "max_epochs": MAX_EPOCHS, "patience": PATIENCE, "seed": seed}
