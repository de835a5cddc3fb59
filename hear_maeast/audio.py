"""Reading audio files: soundfile to decode (torchaudio >= 2.9 `load` needs torchcodec and FFmpeg),
torchaudio to resample, channels averaged to mono."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from hear_maeast.errors import BadInput
from hear_maeast.timing import SAMPLE_RATE

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


def load_audio(path, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Decode `path` to float32 mono at `sample_rate`: [n_samples]. Raises BadInput (a ValueError) naming the file."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [N, C]
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise BadInput(f"{path}: cannot decode audio ({e}); expected a wav, flac or ogg file") from e
    if len(data) == 0:
        raise BadInput(f"{path}: the file holds no audio (0 samples); remove it or record something")
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if sr != sample_rate:
        wav = torchaudio.functional.resample(wav, sr, sample_rate)
    return wav


def resample(audio: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """The one resampler of the package: [n] or [n, channels] float audio -> round(n * new_sr / orig_sr) samples,
    same layout (so clips of equal length stay equal)."""
    n_out = int(round(len(audio) * new_sr / orig_sr))
    x = torch.from_numpy(np.ascontiguousarray(audio.T if audio.ndim == 2 else audio, dtype=np.float32))
    y = torchaudio.functional.resample(x, orig_sr, new_sr).numpy()  # [..., ceil(n * new / orig)]
    if y.shape[-1] < n_out:
        y = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, n_out - y.shape[-1])])
    y = y[..., :n_out]
    return y.T if audio.ndim == 2 else y


def find_audio(root) -> list[Path]:
    """Audio files under a folder (recursive, sorted) or listed in a text file (one path per line)."""
    root = Path(root)
    if root.is_dir():
        return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if root.is_file() and root.suffix.lower() in (".txt", ".lst", ".list"):
        lines = [ln.strip() for ln in root.read_text().splitlines()]
        return [(root.parent / ln) if not Path(ln).is_absolute() else Path(ln) for ln in lines if ln and not ln.startswith("#")]
    raise BadInput(f"{root}: expected a folder of audio files or a text file listing them")
