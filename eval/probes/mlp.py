"""`mlp`: heareval 2021's downstream MLP protocol, re-implemented in plain PyTorch (no Lightning, no TensorFlow).

Read from heareval 2021.1.3's heareval/predictions/task_predictions.py and runner.py; what is the same:
- the grids (`default`, `fast`, `faster`: PARAM_GRID and its two variants), updated with heareval's task-specific
  grid (dcase2016_task2) and the task metadata's `evaluation_params.task_specific_param_grid`; sklearn's
  ParameterGrid order, shuffled with Python's `random` seeded with the seed (heareval seeds 42 when
  `--deterministic True`, its default: seed 42 draws the grid points heareval draws), the first `grid_points` (8)
  kept;
- the model: per hidden layer Linear (weights re-initialised by the grid's xavier init with the gain of the
  previous activation) -> BatchNorm1d -> Dropout -> ReLU, then a Linear projection; softmax + cross-entropy
  (multiclass) or sigmoid + BCE (multi-label, and every event task: frame-level);
- Adam at the grid's lr; batches of `batch_size` (1024) in heareval's row order, never shuffled (heareval's
  dataloader shuffles only a split named "train" given as a string, and it always passes a list);
- validation every `check_val_every_n_epoch` epochs on the primary score (event tasks: events post-processed with
  every point of the grid, the best kept), or on the loss when the metadata says `use_scoring_for_early_stopping:
  false`; the best validation kept (strictly better, as Lightning's ModelCheckpoint); stop after `patience`
  validations without a strictly better one (Lightning's EarlyStopping);
- model selection on the first data split, then the best grid point trained on the other folds; each fold tested
  with its own best checkpoint (and event post-processing of its best epoch).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from itertools import product

import numpy as np
import torch

from eval.probes.common import FoldResult, scored_fold, tensors
from eval.probes.data import TaskData
from eval.probes.scoring import Postprocessing, Scorer
from hear_maeast.api import resolve_device

PARAM_GRID = {
    "hidden_layers": [1, 2], "hidden_dim": [1024], "dropout": [0.1], "lr": [3.2e-3, 1e-3, 3.2e-4, 1e-4],
    "patience": [20], "max_epochs": [500], "check_val_every_n_epoch": [3], "batch_size": [1024],
    "hidden_norm": [torch.nn.BatchNorm1d], "norm_after_activation": [False], "embedding_norm": [torch.nn.Identity],
    "initialization": [torch.nn.init.xavier_uniform_, torch.nn.init.xavier_normal_], "optim": [torch.optim.Adam],
}
GRIDS = {
    "default": PARAM_GRID,
    "fast": {**PARAM_GRID, "max_epochs": [10, 50], "check_val_every_n_epoch": [3, 10]},
    "faster": {**PARAM_GRID, "hidden_layers": [0, 1], "hidden_dim": [64, 128], "patience": [1, 3],
               "max_epochs": [10], "check_val_every_n_epoch": [1]},
}
TASK_SPECIFIC_PARAM_GRID = {"dcase2016_task2": {"check_val_every_n_epoch": [10]}}
GRID_POINTS = 8  # heareval.predictions.runner --grid-points default


def grid_points(metadata: dict, grid: str, n: int, seed: int) -> list[dict]:
    """heareval's model-selection grid points for a task: ParameterGrid order, shuffled, the first n."""
    final = dict(GRIDS[grid])
    final.update(TASK_SPECIFIC_PARAM_GRID.get(metadata.get("task_name"), {}))
    final.update(metadata.get("evaluation_params", {}).get("task_specific_param_grid", {}))
    keys = sorted(final)  # sklearn.model_selection.ParameterGrid iterates sorted keys, the last fastest
    confs = [dict(zip(keys, values)) for values in product(*(final[k] for k in keys))]
    random.Random(seed).shuffle(confs)
    return confs[:n]


def conf_json(conf: dict) -> dict:
    """heareval's hparams_to_json, but classes and functions by name (heareval's str() shows their address)."""
    return {k: v if isinstance(v, (str, int, float)) else f"{v.__module__}.{v.__qualname__}" for k, v in conf.items()}


class Predictor(torch.nn.Module):
    """heareval's FullyConnectedPrediction."""

    def __init__(self, nfeatures: int, nlabels: int, multiclass: bool, conf: dict):
        super().__init__()
        layers, dim, last = [], nfeatures, "linear"
        for _ in range(conf["hidden_layers"]):
            linear = torch.nn.Linear(dim, conf["hidden_dim"])
            conf["initialization"](linear.weight, gain=torch.nn.init.calculate_gain(last))
            norm = conf["hidden_norm"](conf["hidden_dim"])
            layers += [linear] + ([] if conf["norm_after_activation"] else [norm])
            layers += [torch.nn.Dropout(conf["dropout"]), torch.nn.ReLU()] + ([norm] if conf["norm_after_activation"] else [])
            dim, last = conf["hidden_dim"], "relu"
        self.hidden = torch.nn.Sequential(*layers) if layers else torch.nn.Identity()
        self.projection = torch.nn.Linear(dim, nlabels)
        conf["initialization"](self.projection.weight, gain=torch.nn.init.calculate_gain(last))
        self.multiclass = multiclass

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, D] -> logits [B, L]
        return self.projection(self.hidden(x))

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.multiclass:
            return torch.nn.functional.cross_entropy(logits, y.argmax(1))
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(1) if self.multiclass else logits.sigmoid()


@torch.no_grad()
def predict(model: Predictor, x: torch.Tensor, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, logits) [rows, L] in eval mode."""
    model.eval()
    logits = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)]) if len(x) else model(x)
    return model.activate(logits).cpu().numpy(), logits.cpu().numpy()


@dataclass
class Fit:
    model: Predictor
    score: float  # best validation score (or loss)
    epoch: int  # 0-based epoch of the best validation
    postprocessing: Postprocessing


def _epoch(model: Predictor, opt, x: torch.Tensor, y: torch.Tensor, batch: int) -> None:
    model.train()
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        if len(xb) < 2 and any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()):
            continue  # a last batch of one row: BatchNorm cannot train on it
        opt.zero_grad()
        model.loss(model(xb), yb).backward()
        opt.step()


def _validate(model: Predictor, scorer: Scorer, x, y, valid) -> tuple[float, Postprocessing, bool]:
    """(value, post-processing, maximise?) of one validation: the primary score, or the loss when the task's
    metadata turns scoring off for early stopping."""
    if not scorer.task.metadata.get("use_scoring_for_early_stopping", True):
        with torch.no_grad():
            model.eval()
            return float(model.loss(model(x), y)), scorer.grid[0] if scorer.task.is_event else (), False
    probs, _ = predict(model, x)
    scored = scorer.validate(probs, valid)
    return scored.score, scored.postprocessing, scorer.maximize


def train(task: TaskData, scorer: Scorer, split: dict, conf: dict, device: torch.device) -> Fit:
    """One grid point on one data split: heareval's training with checkpointing and early stopping."""
    train_data, valid = task.pooled(split["train"]), task.pooled(split["valid"])
    x, y = tensors(train_data, device)
    vx, vy = tensors(valid, device)
    model = Predictor(x.shape[1], y.shape[1], task.multiclass, conf).to(device)
    opt = conf["optim"](model.parameters(), lr=conf["lr"])
    best: Fit | None = None
    wait = 0
    for epoch in range(conf["max_epochs"]):
        _epoch(model, opt, x, y, conf["batch_size"])
        if (epoch + 1) % conf["check_val_every_n_epoch"]:
            continue
        value, post, maximize = _validate(model, scorer, vx, vy, valid)
        if best is None or (value > best.score if maximize else value < best.score):
            best, wait = Fit(copy.deepcopy(model), value, epoch, post), 0
        else:
            wait += 1
            if wait >= conf["patience"]:
                break
    if best is None:  # heareval raises too: no validation ran (max_epochs < check_val_every_n_epoch)
        raise ValueError(f"no validation in {conf['max_epochs']} epochs (every {conf['check_val_every_n_epoch']})")
    return best


def run(task: TaskData, scorer: Scorer, seed: int = 42, grid: str = "fast", points: int = GRID_POINTS,
        device: str | None = None) -> tuple[list[FoldResult], dict]:
    """heareval's task_predictions: model selection on the first data split, then every split tested."""
    dev = resolve_device(device, "--device")
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    splits = task.rotation()
    fits = []
    for conf in grid_points(task.metadata, grid, points, seed):
        fit = train(task, scorer, splits[0], conf, dev)
        fits.append((fit, conf))
    maximize = scorer.maximize if task.metadata.get("use_scoring_for_early_stopping", True) else False  # else: loss
    fits.sort(key=lambda fc: fc[0].score, reverse=maximize)  # stable: ties keep the shuffled order, as heareval
    best_fit, best_conf = fits[0]
    per_split = [best_fit] + [train(task, scorer, s, best_conf, dev) for s in splits[1:]]
    results = []
    for split, fit in zip(splits, per_split):
        probs, logits = predict(fit.model, tensors(task.pooled(split["test"]), dev)[0])
        results.append(scored_fold(task, scorer, split["test"], probs, logits, fit.postprocessing,
                                   {"validation_score": fit.score, "epoch": fit.epoch}))
    return results, {"hparams": conf_json(best_conf), "postprocessing": [list(p) for p in best_fit.postprocessing],
                     "grid": grid, "grid_points": points, "seed": seed}
