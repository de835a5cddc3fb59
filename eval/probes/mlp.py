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

What differs from heareval, and why:
- every grid point (and every fold's model) draws its initialisation and dropout masks from its own seed
  (`member_seed`), where heareval draws all of them from one stream in turn: so a member's result does not
  depend on which others are trained, and all of them can be trained at once;
- the grid points are trained at once (`train_stacked`): every member's first Linear runs as one matmul over
  the shared input rows (they see the same batches) and the rest of each member as its own modules, with its own
  Adam, early stopping and best checkpoint. This is the same arithmetic as training them one by one (`train`):
  on this CPU the predictions are bitwise identical (tests/test_probes.py). On a CPU the training is bound by
  its matmuls, which stacking does not reduce (docs/evaluation.md, "The suite at its real size").
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
from hear_maeast.device import resolve_device

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


def member_seed(seed: int, *where: int) -> int:
    """A grid point's or a fold's own seed (its initialisation and dropout masks), from the run's seed and its place."""
    return int(np.random.SeedSequence([seed, *where]).generate_state(1)[0])


def _has_norm(model: Predictor) -> bool:
    return any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())


def _epoch(model: Predictor, opt, x: torch.Tensor, y: torch.Tensor, batch: int) -> None:
    model.train()
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        if len(xb) < 2 and _has_norm(model):
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


class _Member:
    """One grid point (or fold) in training: its model, Adam, random stream and Lightning's two callbacks
    (ModelCheckpoint: the strictly best validation kept; EarlyStopping: stop after `patience` without one)."""

    def __init__(self, nfeatures: int, nlabels: int, multiclass: bool, conf: dict, seed: int, device: torch.device):
        torch.manual_seed(seed)
        self.conf = conf
        self.model = Predictor(nfeatures, nlabels, multiclass, conf).to(device)
        self.opt = conf["optim"](self.model.parameters(), lr=conf["lr"])
        self.device, self.norm = device, _has_norm(self.model)
        self.rng = self._rng()  # the member's dropout stream, swapped into torch's generator while it runs
        self.best: Fit | None = None
        self.wait, self.stopped = 0, False

    def _rng(self) -> tuple:
        return torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None

    def running(self, epoch: int) -> bool:
        return not self.stopped and epoch < self.conf["max_epochs"]

    def validates(self, epoch: int) -> bool:
        return not (epoch + 1) % self.conf["check_val_every_n_epoch"]

    def after_first(self, z: torch.Tensor) -> torch.Tensor:
        """Logits [B, L] from the first Linear's output z, drawing dropout masks from this member's stream."""
        torch.set_rng_state(self.rng[0])
        if self.rng[1] is not None:
            torch.cuda.set_rng_state(self.rng[1], self.device)
        hidden = self.model.hidden
        logits = self.model.projection(hidden[1:](z)) if isinstance(hidden, torch.nn.Sequential) else z
        self.rng = self._rng()
        return logits

    @property
    def first(self) -> torch.nn.Linear:
        hidden = self.model.hidden
        return hidden[0] if isinstance(hidden, torch.nn.Sequential) else self.model.projection

    def record(self, epoch: int, value: float, post: Postprocessing, maximize: bool) -> None:
        if self.best is None or (value > self.best.score if maximize else value < self.best.score):
            self.best, self.wait = Fit(copy.deepcopy(self.model), value, epoch, post), 0
        else:
            self.wait += 1
            self.stopped = self.wait >= self.conf["patience"]

    def fit(self) -> Fit:
        if self.best is None:  # heareval raises too: no validation ran (max_epochs < check_val_every_n_epoch)
            raise ValueError(f"no validation in {self.conf['max_epochs']} epochs "
                             f"(every {self.conf['check_val_every_n_epoch']})")
        return self.best


def _split_tensors(task: TaskData, split: dict, device: torch.device):
    train_data, valid = task.pooled(split["train"]), task.pooled(split["valid"])
    return (*tensors(train_data, device), *tensors(valid, device), valid)


def train(task: TaskData, scorer: Scorer, split: dict, conf: dict, device: torch.device, seed: int) -> Fit:
    """One grid point on one data split, alone: heareval's training with checkpointing and early stopping."""
    x, y, vx, vy, valid = _split_tensors(task, split, device)
    member = _Member(x.shape[1], y.shape[1], task.multiclass, conf, seed, device)
    for epoch in range(conf["max_epochs"]):
        _epoch(member.model, member.opt, x, y, conf["batch_size"])
        if member.validates(epoch):
            member.record(epoch, *_validate(member.model, scorer, vx, vy, valid))
            if member.stopped:
                break
    return member.fit()


def _stacked_epoch(members: list[_Member], x: torch.Tensor, y: torch.Tensor, batch: int) -> None:
    """One epoch of every member over the same batches; the first Linear of all of them as one matmul."""
    for m in members:
        m.model.train()
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        todo = [m for m in members if len(xb) >= 2 or not m.norm]  # BatchNorm cannot train on one row
        if not todo:
            continue
        for m in todo:
            m.opt.zero_grad()
        firsts = [m.first for m in todo]
        z = torch.nn.functional.linear(xb, torch.cat([f.weight for f in firsts]), torch.cat([f.bias for f in firsts]))
        parts = z.split([f.out_features for f in firsts], dim=1)  # [B, sum H] -> one [B, H] per member
        sum(m.model.loss(m.after_first(zk.contiguous()), yb) for m, zk in zip(todo, parts)).backward()
        for m in todo:
            m.opt.step()


def train_stacked(task: TaskData, scorer: Scorer, split: dict, confs: list[dict], device: torch.device,
                  seeds: list[int]) -> list[Fit]:
    """Every grid point on one data split at once: the same arithmetic as `train` on each, one pass over the rows."""
    x, y, vx, vy, valid = _split_tensors(task, split, device)
    members = [_Member(x.shape[1], y.shape[1], task.multiclass, c, s, device) for c, s in zip(confs, seeds)]
    for epoch in range(max(c["max_epochs"] for c in confs)):
        running = [m for m in members if m.running(epoch)]
        for batch in sorted({m.conf["batch_size"] for m in running}):
            _stacked_epoch([m for m in running if m.conf["batch_size"] == batch], x, y, batch)
        for m in running:
            if m.validates(epoch):
                m.record(epoch, *_validate(m.model, scorer, vx, vy, valid))
    return [m.fit() for m in members]


ENGINES = ("auto", "stacked", "sequential")


def run(task: TaskData, scorer: Scorer, seed: int = 42, grid: str = "fast", points: int = GRID_POINTS,
        device: str | None = None, engine: str = "auto") -> tuple[list[FoldResult], dict]:
    """heareval's task_predictions: model selection on the first data split, then every split tested. `engine`:
    the grid points trained at once (stacked) or one by one (sequential): the same results. `auto` stacks them on
    CUDA, where one matmul for all replaces eight small ones, and not on a CPU, where the matmuls already run at the
    core's peak and stacking only adds the copy of the weights (measured: docs/evaluation.md)."""
    dev = resolve_device(device, "--device")
    if engine == "auto":
        engine = "stacked" if dev.type == "cuda" else "sequential"
    np.random.seed(seed % 2**32)
    splits = task.rotation()
    confs = grid_points(task.metadata, grid, points, seed)
    seeds = [member_seed(seed, 0, k) for k in range(len(confs))]
    if engine == "stacked":
        fits = train_stacked(task, scorer, splits[0], confs, dev, seeds)
    else:
        fits = [train(task, scorer, splits[0], c, dev, s) for c, s in zip(confs, seeds)]
    maximize = scorer.maximize if task.metadata.get("use_scoring_for_early_stopping", True) else False  # else: loss
    # stable: ties keep the shuffled order, as heareval
    best = sorted(range(len(fits)), key=lambda k: fits[k].score, reverse=maximize)[0]
    per_split = [fits[best]] + [train(task, scorer, s, confs[best], dev, member_seed(seed, i, best))
                                for i, s in enumerate(splits[1:], start=1)]
    results = []
    for split, fit in zip(splits, per_split):
        probs, logits = predict(fit.model, tensors(task.pooled(split["test"]), dev)[0])
        results.append(scored_fold(task, scorer, split["test"], probs, logits, fit.postprocessing,
                                   {"validation_score": fit.score, "epoch": fit.epoch}))
    return results, {"hparams": conf_json(confs[best]), "postprocessing": [list(p) for p in fits[best].postprocessing],
                     "grid": grid, "grid_points": points, "seed": seed, "engine": engine}
