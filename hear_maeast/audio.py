"""Reading audio files: soundfile to decode (torchaudio >= 2.9 `load` needs torchcodec and FFmpeg), channels
averaged to mono, soxr to resample.

Why soxr (python-soxr, "VHQ"): torchaudio's windowed-sinc resampler builds a kernel of (new / g) x (old / g) taps,
g = gcd of the rates, so a 1-s file at 44101, 22051 or 7919 Hz needed 2 GiB to more than 4 GiB; soxr's polyphase
filters stay within a few MiB for any rate, are 5-50x faster, and are more accurate: measured against exact tones,
in-band error -72 dB (torchaudio -22 dB, scipy.signal.resample_poly -36 dB, both losing the top of the band) and
aliasing of 8.6-20 kHz tones -156 dB (torchaudio -18 dB). `python benchmarks/resample.py`;
benchmarks/results/resample.json.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, NamedTuple

import numpy as np
import soundfile as sf
import soxr

from hear_maeast.errors import BadInput
from hear_maeast.files import open_regular
from hear_maeast.timing import SAMPLE_RATE

if TYPE_CHECKING:
    import torch

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


class AudioInfo(NamedTuple):
    frames: int
    samplerate: int
    channels: int
    subtype: str


@contextmanager
def open_audio(path) -> Iterator[sf.SoundFile]:
    """The one place the package opens a file of audio (every reader goes through here): a soundfile handle of a
    regular file, or BadInput naming the file (see open_regular)."""
    fd = open_regular(path)
    try:
        try:
            f = sf.SoundFile(fd, closefd=False)
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as e:
            raise BadInput(f"{path}: cannot decode audio ({e}); expected a wav, flac or ogg file") from e
        with f:
            yield f
    finally:
        os.close(fd)


def audio_info(path) -> AudioInfo:
    """Frames, rate, channels and subtype of an audio file, read from its header."""
    with open_audio(path) as f:
        return AudioInfo(f.frames, f.samplerate, f.channels, f.subtype)


def read_audio(path, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, int]:
    """Frames [start, stop) of an audio file at its own rate: (float32 [n, channels], rate). BadInput names the
    file when it cannot be decoded."""
    with open_audio(path) as f:
        try:
            if start:
                f.seek(min(start, f.frames))
            frames = -1 if stop is None else max(0, stop - start)
            return f.read(frames, dtype="float32", always_2d=True), f.samplerate
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
            raise BadInput(f"{path}: cannot decode audio ({e}); expected a wav, flac or ogg file") from e


def read_mono(path, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, int]:
    """Samples [start, stop) of an audio file at its own rate, channels averaged: (float32 [n], sample rate);
    BadInput naming the file when it cannot be read (see read_audio)."""
    data, sr = read_audio(path, start, stop)  # [N, C]
    return np.ascontiguousarray(data.mean(axis=1)), sr  # [N]


def load_audio(path, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Decode `path` to float32 mono at `sample_rate`: [n_samples]. Raises BadInput (a ValueError) naming the file."""
    import torch  # here only: the task commands read audio through this module without torch

    mono, sr = read_mono(path)  # [N]
    if len(mono) == 0:
        raise BadInput(f"{path}: the file holds no audio (0 samples); remove it or record something")
    return torch.from_numpy(resample(mono, sr, sample_rate) if sr != sample_rate else mono)


def resample(audio: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """The one resampler of the package: [n] or [n, channels] float audio -> round(n * new_sr / orig_sr) samples,
    same layout, float32 (so clips of equal length stay equal). Memory stays within a few MiB of the input and
    output for any pair of rates."""
    for name, rate in (("orig_sr", orig_sr), ("new_sr", new_sr)):
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise BadInput(f"{name}={rate!r}: a sample rate must be a positive int (Hz)")
    x = np.ascontiguousarray(audio, dtype=np.float32)
    n_out = int(round(len(x) * new_sr / orig_sr))
    if orig_sr == new_sr or len(x) == 0:
        return x.copy()
    y = soxr.resample(x, orig_sr, new_sr, quality="VHQ")  # [~n_out] or [~n_out, channels]
    if len(y) < n_out:
        y = np.pad(y, [(0, n_out - len(y))] + [(0, 0)] * (y.ndim - 1))
    return np.ascontiguousarray(y[:n_out])


def find_audio(root) -> list[Path]:
    """Audio files under a folder (recursive, sorted) or listed in a text file (one path per line)."""
    root = Path(root)
    if root.is_dir():
        return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if root.is_file() and root.suffix.lower() in (".txt", ".lst", ".list"):
        lines = [ln.strip() for ln in root.read_text().splitlines()]
        return [(root.parent / ln) if not Path(ln).is_absolute() else Path(ln) for ln in lines if ln and not ln.startswith("#")]
    raise BadInput(f"{root}: expected a folder of audio files or a text file listing them")
