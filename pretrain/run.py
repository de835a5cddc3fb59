"""A pretraining run: its plan (`Schedule`: length, learning rate, batches per epoch) and `Run`, everything the loop
needs, made by `setup` (pretrain/train.py) and read by the bookkeeping (pretrain/bookkeeping.py) and the
checkpoints (pretrain/state.py)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hear_maeast.config import ModelConfig
from hear_maeast.files import FolderLock
from hear_maeast.model import MaskedAutoencoder
from pretrain.config import TrainConfig
from pretrain.data import Source
from pretrain.step import mae_loss


@dataclass
class Schedule:
    """The run's length and learning-rate plan, from the options, the recipe and the data size."""

    total: int
    warmup: int
    peak: float
    kind: str
    clip: float
    weight_decay: float
    global_batch: int
    steps_per_epoch: int

    @classmethod
    def plan(cls, tc: TrainConfig, recipe: dict, n_clips: int, world: int) -> "Schedule":
        gb = tc.batch_size * tc.accum_steps * world
        per_epoch = max(1, n_clips // gb)
        total = tc.steps if tc.steps is not None else round(tc.epochs * per_epoch)
        warmup = (tc.warmup_steps if tc.warmup_steps is not None else round(tc.warmup_epochs * per_epoch)
                  if tc.warmup_epochs is not None else round(recipe["warmup_frac"] * total))
        peak = tc.lr if tc.lr is not None else recipe["lr"] * (gb / recipe["lr_per_batch"] if recipe["lr_per_batch"] else 1)
        pick = lambda mine, key: mine if mine is not None else recipe[key]  # noqa: E731
        return cls(total, warmup, peak, pick(tc.schedule, "schedule"), pick(tc.clip_grad, "clip_grad"),
                   pick(tc.weight_decay, "weight_decay"), gb, per_epoch)


@dataclass
class Run:
    """Everything the loop needs, made by `setup`."""

    tc: TrainConfig
    cfg: ModelConfig
    rank: int
    world: int
    device: torch.device
    folder: Path
    lock: FolderLock
    source: Source
    sched: Schedule
    model: MaskedAutoencoder
    ddp: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    step: int = 0
    bad: dict = field(default_factory=dict)  # unreadable clip -> why: reported once each; all ranks' at each save
    batches: object = None
    provenance: dict = field(default_factory=dict)
    loss_fn: object = mae_loss  # pretrain.step.mae_loss, or it under torch.compile (`compile_step`)

    def say(self, *a) -> None:
        if self.rank == 0:
            print(*a, file=sys.stderr, flush=True)

    def note_bad(self, items) -> None:
        for clip, why in items:
            if clip not in self.bad:
                self.bad[clip] = why
                print(f"unreadable clip {self.source.name(clip)}: {why} (replaced by another clip; counted)",
                      file=sys.stderr, flush=True)
