"""Reading and resampling audio: `hear_maeast.audio` (the one resampler of the package, used by embed, pretrain and
`tasks resample`)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from hear_maeast.audio import load_audio, resample
from hear_maeast.errors import BadInput


def tones(freqs, sr: int, seconds: float = 1.0) -> np.ndarray:
    """Sum of tones at amplitude 0.05 with fixed phases, sampled exactly at `sr` (float64)."""
    t = np.arange(int(round(seconds * sr))) / sr
    return sum(0.05 * np.sin(2 * np.pi * f * t + 0.3 * k) for k, f in enumerate(freqs))


def db(x: np.ndarray, ref: np.ndarray) -> float:
    inner = slice(800, -800)  # 50 ms at each end: every resampler tapers the edges
    return 20 * np.log10(np.sqrt(np.mean(x[inner] ** 2)) / np.sqrt(np.mean(ref[inner] ** 2)))


@pytest.mark.parametrize("sr", [44100, 48000, 22050, 8000, 44101, 7919])
def test_resampling_equals_the_exact_signal_and_removes_what_16k_cannot_hold(sr):
    band = [f for f in (97, 440, 1000, 2500, 3500, 5000, 6500, 7100) if f <= 0.9 * min(sr, 16000) / 2]
    out = resample(tones(band, sr).astype(np.float32), sr, 16000)
    ideal = tones(band, 16000)
    assert out.dtype == np.float32 and len(out) == 16000
    assert db(out - ideal, ideal) < -65  # torchaudio's sinc: -22 dB, losing the top of the band
    above = [f for f in (8600, 10000, 15000, 20000) if f < 0.95 * sr / 2]
    if above:  # content above 8 kHz must vanish, not fold back into the band
        x = tones(above, sr).astype(np.float32)
        assert db(resample(x, sr, 16000), x) < -100  # torchaudio: -18 dB


def test_resampling_keeps_the_layout_and_the_length_rule():
    x = np.random.default_rng(0).standard_normal((44100 * 2 + 7, 2)).astype(np.float32)  # [n, channels]
    y = resample(x, 44100, 16000)
    assert y.shape == (round(len(x) * 16000 / 44100), 2)
    np.testing.assert_array_equal(y[:, 1], resample(x[:, 1].copy(), 44100, 16000))
    np.testing.assert_array_equal(resample(x[:, 0], 16000, 16000), x[:, 0])
    with pytest.raises(BadInput, match="orig_sr=0: a sample rate must be a positive int"):
        resample(x, 0, 16000)


PROBE = """
import json, resource, sys
import numpy as np
from hear_maeast.audio import resample
resample(np.zeros(4410, np.float32), 44100, 16000)  # imports and first-call set-up, before measuring
vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, resource.RLIM_INFINITY))  # 1 GiB more, at most
out = {}
for sr in map(int, sys.argv[1:]):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        n = len(resample(np.random.default_rng(0).standard_normal(sr).astype(np.float32), sr, 16000))
    except (MemoryError, RuntimeError) as e:
        n = f"{type(e).__name__}: {e}"[:200]
    out[sr] = [n, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024]
print(json.dumps(out))
"""


def test_resampling_any_rate_takes_bounded_memory():
    # torchaudio needed 2 GiB (7919 Hz) to more than 4 GiB (44101, 22051 Hz) for one second of audio
    res = subprocess.run([sys.executable, "-c", PROBE, "44101", "22051", "7919", "48000"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    for sr, (n, grew_mib) in json.loads(res.stdout.splitlines()[-1]).items():
        assert n == 16000 and grew_mib < 50, (sr, n, grew_mib)


def test_load_audio_mixes_to_mono_and_resamples_with_the_one_resampler(tmp_path, digit_wavs):
    data, sr = sf.read(digit_wavs[0], dtype="float32")  # real 8 kHz speech
    stereo = tmp_path / "stereo.flac"
    sf.write(stereo, np.stack([data, 0.5 * data], axis=1), sr)
    wav = load_audio(stereo)
    np.testing.assert_allclose(wav.numpy(), resample(0.75 * data, sr, 16000), atol=1e-4)  # flac is 16-bit
    assert len(wav) == round(len(data) * 16000 / sr)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(BadInput, match="empty.wav: the file holds no audio"):
        load_audio(empty)
