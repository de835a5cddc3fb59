"""The options of `hear-maeast pretrain` and their defaults, written once: `TrainConfig` is what pretrain/train.py runs
and what pretrain/cli.py's options default to. Torch-free on import (the CLI imports it to build its options).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hear_maeast.errors import BadInput

PRECISIONS = ("fp32", "bf16", "fp16")  # autocast dtypes; fp16 with a GradScaler


@dataclass
class TrainConfig:
    """Every option of a pretraining run (recorded in train_state.pt) and its default (docs/pretraining.md); the click
    options of `hear-maeast pretrain` take their defaults from here."""

    preset: str
    data: str
    out: str
    steps: int | None = None  # total optimiser updates (or --epochs)
    epochs: float | None = None
    batch_size: int | None = None  # per process, as in MAE; None: `default_batch_size`
    accum_steps: int = 1
    seed: int = 0
    device: str | None = None
    precision: str = "fp32"  # fp32 | bf16 | fp16
    num_workers: int | None = None  # loader processes per rank; None: min(8, cores per rank - 1)
    data_root: str | None = None  # folder the paths of a --data CSV are relative to (default: the CSV's folder)
    norm_stats: tuple[float, float] | None = None  # (mean, std); default: the store's, or from a sample of clips
    lr: float | None = None  # peak lr; default from the recipe (MSM-MAE scales 1.5e-4 x global batch / 128)
    weight_decay: float | None = None
    clip_grad: float | None = None
    schedule: str | None = None  # cosine | poly | constant
    warmup_steps: int | None = None
    warmup_epochs: float | None = None
    mask_ratio: float | None = None  # model overrides; default: the preset's
    mask_kind: str | None = None
    objective: str | None = None
    norm_pix_loss: bool | None = None
    save_every: int = 1000
    log_every: int = 20  # losses are read back from the device (one sync) every this many updates
    compile: bool | None = None  # torch.compile the step; None: on CUDA for runs of >= COMPILE_MIN_STEPS updates
    tensorboard: bool = False
    prefetch: int = 4  # micro-batches each loader worker prepares ahead
    resume: bool = False
    dump_rank_params: bool = False  # tests: each rank writes its parameters to rank<r>.safetensors
    command: str = ""  # the command line, for provenance (default: sys.argv)


def check_options(tc: TrainConfig) -> None:
    """Numbers a click type cannot refuse (finite, positive): one message naming the option."""
    for option, value, positive in (("--lr", tc.lr, True), ("--weight-decay", tc.weight_decay, False),
                                    ("--clip-grad", tc.clip_grad, False)):
        if value is not None and not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
            raise BadInput(f"{option} {value}: expected a finite number {'> 0' if positive else '>= 0'}"
                           f"{' (e.g. 1.5e-4)' if option == '--lr' else ''}")
    if tc.norm_stats is not None and not (all(map(math.isfinite, tc.norm_stats)) and tc.norm_stats[1] > 0):
        raise BadInput(f"--norm-stats {tc.norm_stats}: expected a finite mean and a std > 0")
    if tc.precision not in PRECISIONS:
        raise BadInput(f"--precision {tc.precision!r}: expected {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}")
    if (tc.steps is None) == (tc.epochs is None):
        raise BadInput("give exactly one of --steps N or --epochs N")
