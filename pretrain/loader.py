"""Batches for pretraining: a torch DataLoader whose worker processes read, crop and mask whole micro-batches.

Micro-batch k of rank r is a pure function of (seed, r, k) and the source's listing: which clips (a seeded
permutation of the rank's share per epoch), where each crop starts, the mask, and which clip replaces an unreadable
one. So `--resume` at step s sees exactly the batches an uninterrupted run would have seen, whatever the number of
workers, and a run killed at any moment resumes bit for bit.

Rank r's share is clips r, r + world, r + 2 world ... of the source. An unreadable clip is replaced by another
clip drawn from (seed, clip, attempt); the batch carries the unreadable clips' indices and reasons, so the main
process reports each once and counts it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hear_maeast.errors import WorkFailed
from hear_maeast.masking import make_mask
from pretrain.data import Source

MAX_REPLACEMENTS = 16  # consecutive unreadable replacements before a batch gives up: the data is not there
STATS_CLIPS = 10_000  # clips sampled for the normalisation statistics (as M2D)


def micro_seed(seed: int, rank: int, k: int) -> int:
    """The seed of micro-batch k on rank r (crops, masks, replacements)."""
    return hash((seed, rank, k)) & 0x7FFF_FFFF_FFFF


@dataclass
class Plan:
    """What rank `rank` draws: micro-batches of `batch` clips, `per_epoch` micro-batches per pass over its share."""

    n: int  # clips in the source
    batch: int
    seed: int
    rank: int
    world: int
    per_epoch: int

    @property
    def n_local(self) -> int:
        return len(range(self.rank, self.n, self.world))


class MicroBatches(Dataset):
    """Item k = micro-batch k: {"spec" [B, F, T] (NaN where padded), "keep" [B, Nv], "mask" [B, N], "bad" [(clip, why)]}."""

    def __init__(self, source: Source, cfg, plan: Plan, masks: bool = True):
        self.source, self.cfg, self.plan, self.masks = source, cfg, plan, masks
        self._perm: tuple[int, torch.Tensor] | None = None  # (epoch, permutation): one epoch cached per process

    def __len__(self) -> int:  # the sampler decides which k are drawn; any k is valid
        return 2**62

    def clips(self, k: int) -> np.ndarray:
        """Global clip indices of micro-batch k."""
        p = self.plan
        epoch, i = divmod(k, p.per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(p.seed * 1_000_003 + epoch * 7919 + p.rank)
            self._perm = (epoch, torch.randperm(p.n_local, generator=g, dtype=torch.int64))
        local = self._perm[1][torch.arange(i * p.batch, (i + 1) * p.batch) % p.n_local]
        return (p.rank + p.world * local).numpy()

    def replacement(self, clip: int, attempt: int) -> int:
        """Another clip than `clip`, drawn from (seed, clip, attempt) only."""
        n = self.plan.n
        g = torch.Generator().manual_seed(hash((self.plan.seed, clip, attempt)) & 0x7FFF_FFFF_FFFF)
        return (clip + 1 + int(torch.randint(max(n - 1, 1), (1,), generator=g))) % n

    def read(self, clip: int, u: float, bad: list) -> np.ndarray:
        """Clip `clip`'s crop, or a replacement's when it cannot be read ([F, T])."""
        frames = self.cfg.input_frames
        for attempt in range(MAX_REPLACEMENTS + 1):
            try:
                return self.source.crop(clip, frames, u)
            except Exception as e:  # noqa: BLE001 - any unreadable file is replaced, reported and counted
                bad.append((clip, f"{type(e).__name__}: {e}".strip()))
                clip = self.replacement(clip, attempt)
        raise WorkFailed(f"{MAX_REPLACEMENTS + 1} unreadable clips in a row from --data {self.source.description} "
                         f"(last: {self.source.name(bad[-1][0])}: {bad[-1][1]}); is the data complete and mounted?")

    def __getitem__(self, k: int) -> dict:
        g = torch.Generator().manual_seed(micro_seed(self.plan.seed, self.plan.rank, k))
        u = torch.rand(self.plan.batch, generator=g, dtype=torch.float64).tolist()
        bad: list = []
        spec = np.stack([self.read(int(c), uc, bad) for c, uc in zip(self.clips(k), u)])  # [B, F, T]
        out = {"spec": torch.from_numpy(spec), "bad": bad}
        if self.masks:
            out["keep"], out["mask"] = make_mask(self.cfg, self.plan.batch, g)  # [B, Nv], [B, N]
        return out


def _no_lock_in_workers(fd: int | None):
    def init(_worker_id: int) -> None:
        import os

        if fd is not None:  # forked workers must not keep the run lock alive after the main process dies
            os.close(fd)

    return init


def loader(dataset: Dataset, indices, workers: int, pin: bool, prefetch: int = 4, lock_fd: int | None = None) -> DataLoader:
    """A DataLoader over `indices` (items are whole micro-batches), `workers` persistent processes, `prefetch` items
    ahead each, pinned memory for a CUDA device."""
    kw = dict(prefetch_factor=prefetch, persistent_workers=True, worker_init_fn=_no_lock_in_workers(lock_fd)) if workers else {}
    return DataLoader(dataset, batch_size=None, sampler=indices, num_workers=workers, pin_memory=pin,
                      collate_fn=identity, **kw)


def identity(x):
    return x


# ---- normalisation statistics -------------------------------------------------------------------------------------
class ClipSums(Dataset):
    """Item j = [count, sum, sum of squares] (float64) of clip indices[j]'s features, or None if it cannot be read."""

    def __init__(self, source: Source, indices: np.ndarray):
        self.source, self.indices = source, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int):
        clip = int(self.indices[j])
        try:
            x = np.asarray(self.source.read(clip), dtype=np.float64)
            if not np.isfinite(x).all():
                raise ValueError("non-finite values (NaN/Inf) in the features")
        except Exception as e:  # noqa: BLE001 - reported by the caller, never fatal
            return clip, None, f"{type(e).__name__}: {e}".strip()
        return clip, np.array([x.size, x.sum(), np.square(x).sum()]), ""


def stats_sample(n: int, max_clips: int = STATS_CLIPS) -> np.ndarray:
    """Up to max_clips clip indices spread evenly over the source (all of them for a small one)."""
    return np.unique(np.linspace(0, n - 1, min(n, max_clips)).round().astype(np.int64)) if n else np.zeros(0, np.int64)


def clip_sums(source: Source, indices: np.ndarray, workers: int, progress=None) -> tuple[np.ndarray, list]:
    """[count, sum, sum of squares] over the clips `indices`, read by `workers` processes; and the unreadable ones."""
    total, bad = np.zeros(3), []
    items = DataLoader(ClipSums(source, indices), batch_size=None, num_workers=workers, collate_fn=identity)
    for clip, sums, why in (progress(items, total=len(indices)) if progress else items):
        if sums is None:
            bad.append((clip, why))
        else:
            total += sums
    return total, bad


def mean_std(sums) -> tuple[float, float]:
    count, s1, s2 = (float(v) for v in sums)
    if count == 0:
        raise WorkFailed("no clip could be read to compute the normalisation statistics; is the data there?")
    mean = s1 / count
    return mean, math.sqrt(max(s2 / count - mean * mean, 1e-12))
