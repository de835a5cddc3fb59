"""Pretraining data: audio files -> front-end features, decoded once -> random crops of the model's input length.

Every file is decoded once (hear_maeast.audio: soundfile, mixed to mono, resampled to 16 kHz) and turned into the model's own
front-end features (`model.frontend.features`, un-normalised), kept in memory or in a `--cache DIR` of .npy
arrays, so epochs after the first do no audio decoding. Unreadable files are skipped, counted and reported.
Batches are drawn statelessly from (seed, rank, step): resuming at step s sees exactly the crops it would have seen.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hear_maeast.audio import AUDIO_EXTENSIONS, find_audio, load_audio


def list_audio(data: str | Path) -> list[Path]:
    """A folder (searched recursively) or a text file listing one audio path per line (relative to the list)."""
    if not Path(data).exists():
        raise FileNotFoundError(f"--data {data}: no such folder or list file")
    files = find_audio(data)
    if not files:
        raise ValueError(f"--data {data}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    return files


def _cache_path(cache: Path, path: Path, kind: str) -> Path:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{kind}"
    return cache / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"


_FEATURES = None  # per worker process: the front end's feature module


def _init_worker(features) -> None:
    global _FEATURES
    torch.set_num_threads(1)
    _FEATURES = features


def _decode(args) -> np.ndarray | Path | str:
    """One file -> features [F, T] float32, or the .npy holding them (with a cache), or an error message."""
    path, cache, kind = args
    try:
        target = _cache_path(cache, path, kind) if cache else None
        if target is not None and target.exists():
            return target
        with torch.no_grad():
            wav = load_audio(path)  # [samples] at 16 kHz
            if wav.numel() == 0 or not torch.isfinite(wav).all():
                raise ValueError("empty audio or non-finite samples")
            feats = _FEATURES(wav[None])[0].numpy()  # [F, T]
        if target is not None:
            tmp = target.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, feats)
            os.replace(tmp, target)
            return target
        return feats
    except Exception as e:  # noqa: BLE001 - any unreadable file is skipped and reported, never fatal
        return f"{type(e).__name__}: {e}".strip()


@dataclass
class Corpus:
    """Decoded features of one rank's share of the files."""

    features: list[np.ndarray | Path]  # each [F, T] in memory, or a cached .npy read on demand (memory-mapped)
    files: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def clip(self, i: int) -> np.ndarray:
        f = self.features[i]
        return np.load(f, mmap_mode="r") if isinstance(f, Path) else f  # [F, T]

    def stats(self, max_clips: int = 1000) -> torch.Tensor:
        """[count, sum, sum of squares] (float64) over every value of up to max_clips clips."""
        s = torch.zeros(3, dtype=torch.float64)
        for i in range(0, len(self.features), max(1, len(self.features) // max_clips))[:max_clips]:
            x = torch.from_numpy(np.asarray(self.clip(i), dtype=np.float64))
            s += torch.stack([torch.tensor(float(x.numel()), dtype=torch.float64), x.sum(), (x * x).sum()])
        return s


def decode_all(files: list[Path], features, cache: str | None, kind: str, workers: int = 0, progress=None) -> Corpus:
    """Decode `files` with the front end's `features` module, in `workers` processes (0 = here)."""
    cache_dir = Path(cache) if cache else None
    if cache_dir:
        cache_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(p, cache_dir, kind) for p in files]
    if workers > 0:
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(features,)) as pool:
            results = list(progress(pool.map(_decode, jobs, chunksize=8), total=len(jobs)) if progress else pool.map(_decode, jobs))
    else:
        _init_worker(features)
        results = [_decode(j) for j in (progress(jobs) if progress else jobs)]
    corpus = Corpus([], [])
    for path, r in zip(files, results):
        if isinstance(r, str):
            corpus.skipped.append((path, r))
        else:
            corpus.features.append(r)
            corpus.files.append(path)
    return corpus


def crop_batch(corpus: Corpus, index: torch.Tensor, frames: int, g: torch.Generator) -> torch.Tensor:
    """Random crops of `frames` frames (shorter clips padded with NaN, to become the normalised mean 0) -> [B, F, T]."""
    out = []
    for i in index.tolist():
        x = corpus.clip(i)  # [F, T_clip]
        t = x.shape[1]
        start = int(torch.randint(0, t - frames + 1, (1,), generator=g)) if t > frames else 0
        crop = torch.from_numpy(np.array(x[:, start : start + frames], dtype=np.float32))
        if crop.shape[1] < frames:
            crop = torch.nn.functional.pad(crop, (0, frames - crop.shape[1]), value=float("nan"))
        out.append(crop)
    return torch.stack(out)


def batch_indices(n: int, batch: int, step: int, steps_per_epoch: int, seed: int, rank: int) -> torch.Tensor:
    """The clips of one batch: epoch e is a seeded permutation of this rank's clips, cycled if it is short."""
    epoch, i = divmod(step, steps_per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + rank))
    pos = torch.arange(i * batch, (i + 1) * batch) % n
    return perm[pos]
