"""What every clip of the corpus shares: its seed and file name, its length and level, the silence rule, and the
noise and room helpers the synthetic kinds build on. All at 16 kHz, in float64 until written as 16-bit PCM."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from hear_maeast import audio as hm_audio

SR = 16000
MIN_DUR, MAX_DUR = 2.0, 6.0
PEAK_DBFS = -3.0            # peak level before the random gain
MAX_EXTRA_ATTEN_DB = 9.0    # random gain: peak lands in [-12, -3] dBFS
SILENCE_PEAK = 1e-3         # clips with a lower peak count as failures
SILENCE_RMS = 1e-4
KIND_IDS = {"speech": 1, "music": 2, "texture": 3}


def clip_rng(seed: int, kind: str, index: int, attempt: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, KIND_IDS[kind], index, attempt])


def clip_path(out_dir: Path, kind: str, index: int) -> Path:
    return out_dir / kind / f"{kind}_{index:05d}.wav"


def is_silent(x: np.ndarray) -> bool:
    return (x.size == 0 or np.max(np.abs(x)) < SILENCE_PEAK
            or np.sqrt(np.mean(x ** 2)) < SILENCE_RMS or not np.all(np.isfinite(x)))


def to_mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1) if x.ndim == 2 else x


def resample(x: np.ndarray, sr_in: int, sr_out: int = SR) -> np.ndarray:
    """The package's one resampler (hear_maeast.audio.resample), in float64 for the processing here."""
    return x if sr_in == sr_out else hm_audio.resample(x, sr_in, sr_out).astype(np.float64)


def fade(x: np.ndarray, ms: float = 20.0) -> np.ndarray:
    n = min(int(SR * ms / 1000), len(x) // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n)
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def fit_length(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Trim (with fade-out) or zero-pad (at a random offset) to exactly n samples."""
    if len(x) >= n:
        return fade(x[:n].copy())
    out = np.zeros(n, dtype=np.float64)
    off = int(rng.integers(0, n - len(x) + 1))
    out[off:off + len(x)] = x
    return out


def normalise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = x - np.mean(x)
    peak = np.max(np.abs(x))
    gain_db = PEAK_DBFS - rng.uniform(0.0, MAX_EXTRA_ATTEN_DB)
    return x / peak * 10 ** (gain_db / 20)


def write_wav(path: Path, x: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.wav")
    sf.write(tmp, np.clip(x, -1.0, 1.0).astype(np.float32), SR, subtype="PCM_16")
    os.replace(tmp, path)  # atomic: an interrupted run never leaves a half file


def random_duration(rng: np.random.Generator) -> float:
    return float(rng.uniform(MIN_DUR, MAX_DUR))


def lowpass_noise(rng: np.random.Generator, n: int, cutoff_hz: float) -> np.ndarray:
    sos = signal.butter(2, cutoff_hz, "lowpass", fs=SR, output="sos")
    y = signal.sosfilt(sos, rng.standard_normal(n))
    return y / (np.max(np.abs(y)) + 1e-12)


def slow_envelope(rng: np.random.Generator, n: int, rate_hz: float, depth: float) -> np.ndarray:
    """Smooth random positive envelope in [1-depth, 1]."""
    lfo = lowpass_noise(rng, n, max(rate_hz, 0.2))
    return 1.0 - depth * (0.5 + 0.5 * lfo)


def colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """1/f^exponent noise (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    f[0] = f[1]
    y = np.fft.irfft(spec / f ** (exponent / 2), n)
    return y / (np.std(y) + 1e-12)


def synthetic_reverb(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rt60 = rng.uniform(0.15, 0.9)
    n = int(rt60 * SR)
    t = np.arange(n) / SR
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[0] = 1.0 / rng.uniform(0.1, 0.6)                    # direct path vs. reverb ratio
    wet = signal.fftconvolve(x, ir)[: len(x)]
    return wet / (np.max(np.abs(wet)) + 1e-12) * np.max(np.abs(x))


def add_noise(x: np.ndarray, rng: np.random.Generator, snr_db: float) -> np.ndarray:
    noise = colored_noise(rng, len(x), rng.uniform(0.0, 2.0))
    p_sig = np.mean(x ** 2) + 1e-12
    return x + noise * np.sqrt(p_sig / 10 ** (snr_db / 10))
