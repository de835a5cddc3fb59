"""Resamplers for `hear_maeast.audio.resample`: peak memory, time and quality, each measurement in a fresh process.

    python benchmarks/resample.py [--seconds 1 60] [--rates 44100 48000 ...] [--max-gib 4] [--json FILE]

Methods: soxr (python-soxr, VHQ and HQ), scipy.signal.resample_poly (Kaiser window, its default), torchaudio's
windowed-sinc `functional.resample` (its defaults). Every source rate goes to 16 kHz. torchaudio builds a sinc
kernel of (16000 / g) x (rate / g) taps, g = gcd(rate, 16000), so an odd rate makes it gigabytes: each worker runs
under RLIMIT_AS (its start + --max-gib) and reports "> N GiB" where that is refused.

Quality, on 1 s, against the exact answer (tones are sampled analytically at 16 kHz, in float64):
  error_db  in-band tones (up to 0.9 x the lower Nyquist frequency): RMS error / RMS signal, in dB (lower is better)
  error_low_db  the same with tones up to 0.5 x that Nyquist frequency only (away from the band edge)
  alias_db  tones between 8.6 kHz and 0.95 x the source's Nyquist, which must vanish: RMS out / RMS in, in dB
            (downsampling only; lower is better)
The first and last 50 ms are left out (every method tapers the edges).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, PeakMemory, load_average, provenance, run_worker, table, write_json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

TARGET = 16000
RATES = [44100, 48000, 22050, 8000, 44101, 22051, 7919]
METHODS = ["soxr-vhq", "soxr-hq", "scipy-poly", "torchaudio"]
EDGE = 0.05  # seconds left out at each end


def resampler(method: str):
    if method.startswith("soxr"):
        import soxr

        quality = method.split("-")[1].upper()
        return lambda x, sr: soxr.resample(x, sr, TARGET, quality=quality)
    if method == "scipy-poly":
        from scipy.signal import resample_poly

        return lambda x, sr: resample_poly(x, TARGET // math.gcd(sr, TARGET), sr // math.gcd(sr, TARGET)).astype(
            np.float32)
    import torchaudio

    return lambda x, sr: torchaudio.functional.resample(torch.from_numpy(x), sr, TARGET).numpy()


def tones(freqs: list[float], sr: float, seconds: float, seed: int) -> np.ndarray:
    """Sum of unit-spaced tones at amplitude 0.05, random phases, sampled at `sr` in float64: [n]."""
    phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, len(freqs))
    t = np.arange(int(round(seconds * sr))) / sr
    return sum(0.05 * np.sin(2 * np.pi * f * t + p) for f, p in zip(freqs, phases)) if freqs else np.zeros_like(t)


def in_band(sr: int, fraction: float = 0.9) -> list[float]:
    top = fraction * min(sr, TARGET) / 2
    return [f for f in (97.0, 440.0, 1000.0, 1900.0, 2500.0, 3500.0, 5000.0, 6500.0, 7100.0) if f <= top]


def out_of_band(sr: int) -> list[float]:
    return [f for f in (8600.0, 10000.0, 15000.0, 20000.0) if sr > TARGET and f <= 0.95 * sr / 2]


def db(ratio: float) -> float:
    return round(20 * math.log10(max(ratio, 1e-12)), 1)


def quality(fn, sr: int) -> dict:
    def middle(x):
        k = int(EDGE * TARGET)
        return x[k:-k]

    out = {}
    for key, fraction in (("error_db", 0.9), ("error_low_db", 0.5)):
        x = tones(in_band(sr, fraction), sr, 1.0, 0).astype(np.float32)
        ideal = tones(in_band(sr, fraction), TARGET, 1.0, 0)
        y = fn(x, sr).astype(np.float64)
        n = min(len(y), len(ideal))
        out[key] = db(np.sqrt(np.mean(middle(y[:n] - ideal[:n]) ** 2)) / np.sqrt(np.mean(middle(ideal[:n]) ** 2)))
    out["out_samples"] = len(y)
    if out_of_band(sr):
        x = tones(out_of_band(sr), sr, 1.0, 1).astype(np.float32)
        y = fn(x, sr).astype(np.float64)
        out["alias_db"] = db(np.sqrt(np.mean(middle(y) ** 2)) / np.sqrt(np.mean(x ** 2)))
    return out


def worker(method: str, sr: int, seconds: float, max_gib: float) -> dict:
    torch.set_num_threads(1)
    fn = resampler(method)
    x = (0.1 * np.random.default_rng(2).standard_normal(int(seconds * sr))).astype(np.float32)
    if method != "torchaudio" or math.gcd(sr, TARGET) > 100:  # warm-up (not torchaudio's gigabyte kernels)
        fn(x[: sr // 10], sr)
    vm = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + int(max_gib * 2**30), resource.RLIM_INFINITY))
    peak = PeakMemory(torch.device("cpu"))
    peak.start()
    t0 = time.perf_counter()
    try:
        fn(x, sr)
    except (MemoryError, RuntimeError) as e:
        return {"error": f"> {max_gib:g} GiB ({type(e).__name__})"}
    row = {"seconds_taken": round(time.perf_counter() - t0, 4), "peak_mib": round(peak.peak() / 2**20, 1)}
    if seconds == 1:
        row.update(quality(fn, sr))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", nargs=4, metavar=("METHOD", "RATE", "SECONDS", "MAX_GIB"), help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, nargs="+", default=[1.0, 60.0])
    p.add_argument("--rates", type=int, nargs="+", default=RATES)
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--max-gib", type=float, default=4.0, help="address-space allowance per measurement")
    p.add_argument("--json", default=str(RESULTS / "resample.json"))
    args = p.parse_args()
    if args.worker:
        method, sr, seconds, max_gib = args.worker
        print(json.dumps(worker(method, int(sr), float(seconds), float(max_gib))))
        return
    rows = []
    for seconds in args.seconds:
        for sr in args.rates:
            for method in args.methods:
                try:
                    got = run_worker(__file__, [method, str(sr), str(seconds), str(args.max_gib)], timeout=600)
                except Exception as e:  # noqa: BLE001 - a crashed or timed-out worker is a result too
                    got = {"error": f"worker failed: {type(e).__name__}"}
                rows.append({"method": method, "rate": sr, "seconds": seconds, **got})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    columns = [("method", "method"), ("rate", "from Hz"), ("seconds", "clip s"), ("seconds_taken", "time s"),
               ("peak_mib", "peak MiB"), ("error_db", "error dB"), ("error_low_db", "error <0.5 Nyq dB"),
               ("alias_db", "alias dB"), ("error", "refused")]
    print(table(rows, columns, f"resampling to {TARGET} Hz (one thread; load average {load_average()})"))
    write_json(args.json, {"provenance": provenance(torch.device("cpu")), "threads": 1, "rows": rows})


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
