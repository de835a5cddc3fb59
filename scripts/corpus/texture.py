"""texture: numpy/scipy environmental-like sounds: filtered modulated noise (rain, wind), impulse trains with
damped resonances (clicks, knocks), sweeps, engine-like harmonic hum, bird-like FM chirps, bubbles, and mixtures."""

from __future__ import annotations

import numpy as np
from scipy import signal

from corpus.clips import SR, colored_noise, fade, lowpass_noise, random_duration, slow_envelope, synthetic_reverb


TEXTURE_TYPES = ["noise", "impulses", "sweeps", "engine", "birds", "bubbles"]
MIX_PROB = 0.3


def tex_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rain/wind/surf-like: coloured noise, band-limited, slowly amplitude-modulated."""
    x = colored_noise(rng, n, rng.uniform(0.0, 2.0))
    lo = rng.uniform(50, 2000)
    hi = min(lo * rng.uniform(1.5, 20), SR / 2 - 200)
    x = signal.sosfilt(signal.butter(2, [lo, hi], "bandpass", fs=SR, output="sos"), x)
    x *= slow_envelope(rng, n, rng.uniform(0.2, 4.0), rng.uniform(0.0, 0.9))
    if rng.random() < 0.4:  # rain drops
        drops = (rng.random(n) < rng.uniform(2, 60) / SR) * rng.standard_normal(n)
        ir = np.exp(-np.arange(int(0.004 * SR)) / (0.0008 * SR))
        x += np.convolve(drops, ir)[:n] * rng.uniform(1, 5) * np.std(x)
    return x


def tex_impulses(rng: np.random.Generator, n: int) -> np.ndarray:
    """Clicks/knocks/footsteps/drips: impulse train exciting damped resonances."""
    rate = rng.uniform(0.5, 15)
    if rng.random() < 0.5:  # quasi-periodic
        times = np.arange(rng.uniform(0, 1 / rate), n / SR, 1 / rate)
        times = times + rng.normal(0, rng.uniform(0, 0.2) / rate, len(times))
    else:
        times = np.cumsum(rng.exponential(1 / rate, size=int(rate * n / SR * 2) + 2))
    ir_len = int(rng.uniform(0.02, 0.4) * SR)
    t = np.arange(ir_len) / SR
    ir = np.zeros(ir_len)
    for _ in range(int(rng.integers(1, 4))):
        ir += rng.uniform(0.3, 1) * np.sin(2 * np.pi * rng.uniform(80, 5000) * t) \
            * np.exp(-t / rng.uniform(0.003, 0.1))
    ir += rng.uniform(0, 0.5) * rng.standard_normal(ir_len) * np.exp(-t / 0.002)
    x = np.zeros(n + ir_len)
    for tt in times[(times >= 0) & (times < n / SR)]:
        i = int(tt * SR)
        x[i:i + ir_len] += ir * rng.uniform(0.3, 1.0)
    return x[:n]


def tex_sweeps(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sirens/whistles/zips: repeated linear, exponential or sinusoidal sweeps."""
    period = rng.uniform(0.1, 2.0)
    m = int(period * SR)
    t = np.arange(m) / SR
    f0, f1 = rng.uniform(100, 6000, size=2)
    method = str(rng.choice(["linear", "logarithmic", "quadratic"]))
    seg = signal.chirp(t, f0, period, f1, method=method)
    if rng.random() < 0.5:  # siren-like: continuous sinusoidal FM
        tt = np.arange(n) / SR
        fc, dev, rate = rng.uniform(300, 3000), rng.uniform(50, 800), rng.uniform(0.2, 5)
        return np.sin(2 * np.pi * fc * tt - dev / rate * np.cos(2 * np.pi * rate * tt))
    seg *= np.hanning(m) ** rng.uniform(0.1, 1.0)
    return np.tile(seg, n // m + 1)[:n]


def tex_engine(rng: np.random.Generator, n: int) -> np.ndarray:
    """Engine/motor/fan/hum: jittery f0 with random harmonic amplitudes plus rumble."""
    f0 = rng.uniform(20, 250) * (1 + rng.uniform(0.0, 0.15) * lowpass_noise(rng, n, 1.0)
                                 + rng.uniform(0, 0.3) * np.linspace(0, 1, n) * rng.choice([-1, 1]))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = np.zeros(n)
    for h in range(1, int(rng.integers(4, 25))):
        if np.max(f0) * h < SR / 2 - 500:
            x += rng.uniform(0, 1) / h ** rng.uniform(0.3, 1.5) * np.sin(h * phase + rng.uniform(0, 6.3))
    x *= 1 + rng.uniform(0, 0.5) * np.sin(phase / rng.integers(1, 5))
    return x / (np.std(x) + 1e-12) + rng.uniform(0, 0.8) * lowpass_noise(rng, n, rng.uniform(150, 800))


def tex_birds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Bird-like song: phrases of short FM chirps with sweeping carriers."""
    x = np.zeros(n)
    t_cursor = rng.uniform(0, 0.5)
    while t_cursor < n / SR:
        for _ in range(int(rng.integers(1, 8))):
            d = rng.uniform(0.03, 0.3)
            m = int(d * SR)
            i = int(t_cursor * SR)
            if i + m >= n:
                break
            t = np.arange(m) / SR
            fc = np.linspace(rng.uniform(1500, 6000), rng.uniform(1500, 7000), m)
            fm = rng.uniform(0, 500) * np.sin(2 * np.pi * rng.uniform(10, 80) * t)
            x[i:i + m] += np.sin(2 * np.pi * np.cumsum(fc + fm) / SR) * np.hanning(m) \
                * rng.uniform(0.3, 1)
            t_cursor += d + rng.uniform(0.01, 0.1)
        t_cursor += rng.uniform(0.2, 1.5)
    return x


def tex_bubbles(rng: np.random.Generator, n: int) -> np.ndarray:
    """Water/bubbles: exponentially decaying rising sinusoids at random times."""
    x = np.zeros(n)
    for _ in range(int(rng.uniform(3, 40) * n / SR)):
        d = rng.uniform(0.01, 0.08)
        m = int(d * SR)
        i = int(rng.integers(0, max(1, n - m)))
        t = np.arange(m) / SR
        f = rng.uniform(300, 3000) * (1 + rng.uniform(0.5, 3) * t / d)
        x[i:i + m] += np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t / (d / 4)) * rng.uniform(0.2, 1)
    return x


TEXTURE_FUNCS = {"noise": tex_noise, "impulses": tex_impulses, "sweeps": tex_sweeps,
                 "engine": tex_engine, "birds": tex_birds, "bubbles": tex_bubbles}


def make_texture(rng: np.random.Generator) -> np.ndarray:
    n = int(random_duration(rng) * SR)
    n_layers = int(rng.integers(2, 4)) if rng.random() < MIX_PROB else 1
    x = np.zeros(n)
    for name in rng.choice(TEXTURE_TYPES, size=n_layers, replace=False):
        layer = TEXTURE_FUNCS[str(name)](rng, n)
        x += layer / (np.max(np.abs(layer)) + 1e-12) * rng.uniform(0.3, 1.0)
    if rng.random() < 0.2:
        x = synthetic_reverb(x, rng)
    return fade(x)
