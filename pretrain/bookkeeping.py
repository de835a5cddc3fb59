"""`Bookkeeping`: the losses kept on the device until `check` reads them back (one sync), where all ranks agree on
whether they (and, before a save, the weights) are finite and whether SIGTERM arrived; log.csv, TensorBoard and the
progress bar; the checkpoints (pretrain/state.py)."""

from __future__ import annotations

import csv
import math
import time

import torch
from tqdm import tqdm

from hear_maeast.errors import WorkFailed
from pretrain.run import Run
from pretrain.runfolder import LOG_FILE, TENSORBOARD, open_log
from pretrain.state import save
from pretrain.world import agree

PARTS = ("loss", "mse", "nce")


class Bookkeeping:
    """Losses kept on the device until `check` reads them back (one sync), the log, TensorBoard, the progress bar,
    SIGTERM, and checkpoints."""

    def __init__(self, run: Run):
        self.run, self.pending, self.stop = run, [], False
        self.t_last = time.perf_counter()
        main = run.rank == 0
        self.log = open_log(run.folder / LOG_FILE, run.step if run.tc.resume else None) if main else None
        self.tb = None
        if main and run.tc.tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package (pip install .[train])

            self.tb = SummaryWriter(str(run.folder / TENSORBOARD), purge_step=run.step + 1 if run.tc.resume else None)
        self.bar = tqdm(total=run.sched.total, initial=run.step, disable=not main, desc=run.cfg.name, dynamic_ncols=True)

    def on_sigterm(self, signum, frame) -> None:
        self.stop = True  # acted on at the next check, by every rank at once

    def record(self, step: int, lr: float, parts: dict) -> None:
        nan = torch.full((), float("nan"), device=parts["loss"].device)
        self.pending.append((step, lr, torch.stack([parts.get(p, nan).float() for p in PARTS])))  # [len(PARTS)]

    def check(self, weights: bool) -> bool:
        """Read back the pending losses; all ranks agree on a non-finite loss (or weights) -> WorkFailed, and on
        SIGTERM -> True. Then log them."""
        run = self.run
        values = torch.stack([v for *_, v in self.pending]).cpu() if self.pending else torch.zeros(0, len(PARTS))  # [n, 3]
        loss_bad = not torch.isfinite(values[:, 0]).all().item()
        weights_bad = weights and not all(torch.isfinite(p).all() for p in run.model.parameters())
        n_loss, n_weights, n_stop = agree([loss_bad, weights_bad, self.stop], run.world, run.device)
        if n_loss or n_weights:
            first, last = (self.pending[0][0], self.pending[-1][0]) if self.pending else (run.step, run.step)
            where = f"at step {last}" if first == last else f"between steps {first} and {last}"
            raise WorkFailed(f"the {'loss' if n_loss else 'model'} became non-finite (NaN/Inf) {where} on "
                             f"{int(n_loss or n_weights)} of {run.world} process(es); nothing was saved after it: lower --lr "
                             f"(now {run.sched.peak:.3g}), use --precision fp32 or bf16, or --clip-grad")
        self.write(values)
        return bool(n_stop)

    def write(self, values: torch.Tensor) -> None:
        now = time.perf_counter()
        run, n = self.run, len(self.pending)
        sps = run.sched.global_batch * n / max(now - self.t_last, 1e-9)
        self.t_last = now
        if self.log and n:
            rows = [[step, f"{step / run.sched.steps_per_epoch:.4f}", f"{v[0]:.6f}", f"{lr:.6g}", f"{sps:.1f}"]
                    + ["" if math.isnan(x) else f"{x:.6f}" for x in v[1:].tolist()]
                    for (step, lr, _), v in zip(self.pending, values)]
            csv.writer(self.log).writerows(rows)
            self.log.flush()
            for (step, lr, _), v in zip(self.pending, values) if self.tb else ():
                for tag, x in [*zip(PARTS, v.tolist()), ("lr", lr)]:
                    if not math.isnan(x):
                        self.tb.add_scalar(tag, x, step)
            if self.tb:
                self.tb.add_scalar("samples_per_s", sps, self.pending[-1][0])
                self.tb.flush()
            self.bar.set_postfix(loss=f"{values[-1, 0]:.4f}", lr=f"{self.pending[-1][1]:.2e}", samples_s=f"{sps:.0f}")
        self.bar.update(n)
        self.pending = []

    def save(self) -> None:
        """train_state.pt, then model.safetensors (rank 0; every rank takes part in gathering unreadable clips)."""
        save(self.run)

    def close(self) -> None:
        self.bar.close()
        for f in (self.log, self.tb):
            if f is not None:
                f.close()
