"""One folder per run (or feature store), owned by one process at a time: the training state, the log; the lock
(hear_maeast.files.FolderLock, shared with `eval` and `finetune`).

The lock is `flock` on FOLDER/.lock, taken without waiting: a second `pretrain` (or `--resume`, or `features`) on a
folder in use stops with a message naming the holder's pid and host, instead of interleaving the log or killing the
live run. The kernel releases it when the holding process dies, however it dies (SIGKILL included), so a crashed
run never needs manual cleanup. Under torchrun the global rank 0 holds it for the whole job; the other ranks learn
the outcome from it before touching the folder. Network file systems: Linux NFS clients turn flock into NFS byte-range
locks (NFSv4, or v3 with lockd), which hold across machines; where the file system cannot lock (some FUSE or Lustre
mounts without `-o flock`), the run says so and continues unlocked, and keeping one process per folder is up to you.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from hear_maeast.errors import BadInput
from hear_maeast.files import atomic_write

# RUN_DIR/model.safetensors  the latest weights in the HEAR module's format (what `hear_maeast.load_model` reads)
# RUN_DIR/train_state.pt     model + optimiser + scaler + RNG + step + unreadable clips, for `--resume` (written first)
# RUN_DIR/log.csv            step, epoch, loss, lr, samples_per_s (+ the loss parts mse, nce); RUN_DIR/tensorboard/
# RUN_DIR/.lock              held by the running process
MODEL_FILE, STATE_FILE, LOG_FILE, TENSORBOARD = "model.safetensors", "train_state.pt", "log.csv", "tensorboard"


def clear_temporaries(folder: Path) -> None:
    """Remove .NAME.*.tmp files left by a process killed mid-write (never loadable under the real name)."""
    for stale in Path(folder).glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def load_state(path: Path, device) -> dict:
    """train_state.pt -> dict, or BadInput saying it is damaged (writes are atomic, so only outside harm truncates it)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        raise BadInput(f"--resume: {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                       "it is truncated or damaged: restore it from a backup, or start a new run in another --out") from None


def save_state(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


# ---- log.csv -------------------------------------------------------------------------------------------------------
LOG_COLUMNS = ["step", "epoch", "loss", "lr", "samples_per_s", "mse", "nce"]


def open_log(path: Path, resume_step: int | None):
    """log.csv for appending; on resume, rows logged after the checkpoint we resume from are dropped first."""
    if resume_step is not None and path.exists():
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        rows = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= resume_step]
        atomic_write(path, lambda tmp: _write_rows(tmp, rows))
    f = open(path, "a", newline="")
    if f.tell() == 0:
        csv.writer(f).writerow(LOG_COLUMNS)
    return f


def _write_rows(path, rows) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
