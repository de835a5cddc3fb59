"""Embedding throughput of the HEAR API: seconds of audio embedded per second of wall time, and peak memory.

    python benchmarks/embed_throughput.py [--presets P ...] [--clips 1 10 600] [--batch-sizes 1 16]
                                          [--threads N] [--repeats R] [--max-seconds S] [--device cpu|cuda]
                                          [--precision fp32|bf16] [--json FILE]

For each preset (randomly initialised: speed does not depend on the weights), `get_scene_embeddings` and
`get_timestamp_embeddings` on batches of synthetic 16 kHz clips of each length (the front end is part of the
timed call, as a HEAR user sees it). One process per preset; each call's memory is its peak above the process's
footprint just before the call, with the model loaded and the input audio already allocated (CPU: peak RSS,
CUDA: max_memory_allocated). Time: one warm-up call on the shortest clip, then the median of --repeats calls (one
call where the previous length predicts a second or more). A call whose time, extrapolated linearly from the
previous clip length, would pass --max-seconds is skipped and reported as skipped.

What should hold (the issue's targets): time linear in clip length (constant seconds of audio per second) and memory
flat in clip length, since the encoder sees chunks of the preset's `input_frames`, at most `max_batch` (64) of them
per forward pass ("seqs / pass"). Buffers proportional to the audio remain (the front end's spectrogram, the shifted
views, the embeddings returned); the check reports the memory growth per minute of audio, in MiB and as a multiple
of the audio's own size.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PeakMemory, provenance, run_worker, set_threads, table, time_median, write_json  # noqa: E402

import torch  # noqa: E402

from hear_maeast.config import get_preset  # noqa: E402

FUNCTIONS = ("scene", "timestamp")
CPU_PRESETS = ["msm-mae-tiny-80x208p16x16", "msm-mae-small-80x208p16x16", "mae-ast-frame-small", "mae-ast-patch-small",
               "msm-mae-base-80x208p16x16"]
SR = 16000


def sequences(cfg, clip_s: float, batch: int, fn: str) -> int:
    """Encoder sequences (chunks of input_frames, times the shifted passes for timestamps) a call encodes."""
    frames = int(clip_s * SR) // 160 + 1
    return batch * (cfg.shifts if fn == "timestamp" else 1) * math.ceil(frames / cfg.input_frames)


def measure(preset: str, clips: list[float], batches: list[int], threads: int, repeats: int, max_seconds: float,
            device: str, precision: str) -> list[dict]:
    from hear_maeast.api import configure, get_scene_embeddings, get_timestamp_embeddings
    from hear_maeast.model import MaskedAutoencoder

    set_threads(threads)
    dev = torch.device(device)
    cfg = get_preset(preset)
    torch.manual_seed(0)
    model = configure(MaskedAutoencoder(cfg), device=device)
    fns = {"scene": get_scene_embeddings, "timestamp": get_timestamp_embeddings}
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    g = torch.Generator().manual_seed(0)
    with autocast:
        for fn in fns.values():  # warm-up: one-time allocations happen before any baseline
            fn(0.1 * torch.randn(1, int(min(clips) * SR), generator=g).to(dev), model)
    rows = []
    for fn_name, fn in fns.items():
        for b in batches:
            prev = None  # (clip seconds, call seconds) of the last measured length
            for clip in sorted(clips):
                row = dict(preset=preset, function=fn_name, batch=b, clip_s=clip)
                if prev is not None and prev[1] * clip / prev[0] > max_seconds:
                    row["skipped"] = f"estimated {prev[1] * clip / prev[0]:.0f} s per call > --max-seconds {max_seconds:g}"
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
                    continue
                audio = (0.1 * torch.randn(b, int(clip * SR), generator=g)).to(dev)  # [B, samples]
                mem = PeakMemory(dev)
                mem.start()

                def call():
                    with autocast:
                        fn(audio, model)

                est = prev[1] * clip / prev[0] if prev else 0.0
                n = repeats if est < 1.0 else 1  # calls of a second or more are timed once
                median, times = time_median(call, dev, 0, n)
                peak = mem.peak()
                del audio
                prev = (clip, median)
                row.update(time_s=median, times_s=times, audio_s_per_s=b * clip / median, memory_mib=peak / 2**20,
                           audio_mib=4 * b * int(clip * SR) / 2**20, encoder_batch=min(model.max_batch, sequences(cfg, clip, b, fn_name)))
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def checks(rows: list[dict]) -> list[dict]:
    """Per (preset, function, batch), the longest measured clip against the 10 s clip (or the shortest):
    time_ratio = time per audio second, long / short (1 = linear time); memory growth per extra minute of audio,
    in MiB and as a multiple of that minute's own float32 samples (3.66 MiB per clip)."""
    out = []
    keys = sorted({(r["preset"], r["function"], r["batch"]) for r in rows}, key=str)
    for key in keys:
        got = sorted((r for r in rows if (r["preset"], r["function"], r["batch"]) == key and "time_s" in r),
                     key=lambda r: r["clip_s"])
        if len(got) < 2:
            continue
        ref = next((r for r in got[:-1] if r["clip_s"] == 10), got[0])
        long = got[-1]
        per_s = lambda r: r["time_s"] / (r["batch"] * r["clip_s"])  # noqa: E731
        minutes = (long["clip_s"] - ref["clip_s"]) / 60 * key[2]
        growth = (long["memory_mib"] - ref["memory_mib"]) / minutes
        out.append(dict(preset=key[0], function=key[1], batch=key[2], short_s=ref["clip_s"], long_s=long["clip_s"],
                        time_ratio=per_s(long) / per_s(ref), mem_short=ref["memory_mib"], mem_long=long["memory_mib"],
                        mib_per_min=growth, x_audio=growth / (4 * 60 * SR / 2**20)))
    return out


def run(presets, clips, batches, threads, repeats, max_seconds, device, precision) -> dict:
    rows = []
    for preset in presets:
        args = ["--presets", preset, "--clips", *map(str, clips), "--batch-sizes", *map(str, batches), "--threads",
                str(threads), "--repeats", str(repeats), "--max-seconds", str(max_seconds), "--device", device,
                "--precision", precision]
        rows += run_worker(__file__, args)
    cols = [("preset", "preset"), ("function", "function"), ("batch", "batch"), ("clip_s", "clip s"),
            ("audio_s_per_s", "audio s / s"), ("time_s", "s per call"), ("memory_mib", "peak MiB"),
            ("audio_mib", "audio MiB"), ("encoder_batch", "seqs / pass"), ("skipped", "note")]
    title = f"Embedding throughput, {precision}, {threads} threads on {device}"
    print(table(rows, cols, title))
    chk = checks(rows)
    cols = [("preset", "preset"), ("function", "function"), ("batch", "batch"), ("short_s", "short s"),
            ("long_s", "long s"), ("time_ratio", "time per audio s, long / short"), ("mem_short", "peak MiB short"),
            ("mem_long", "peak MiB long"), ("mib_per_min", "MiB per extra audio minute"), ("x_audio", "x the audio's size")]
    print(table(chk, cols, "Linear time, flat memory"), flush=True)
    return dict(device=device, precision=precision, threads=threads, repeats=repeats, max_seconds=max_seconds,
                results=rows, checks=chk)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=None, help=f"default on CPU: {' '.join(CPU_PRESETS)}; on CUDA: all")
    ap.add_argument("--clips", type=float, nargs="+", default=[1, 10, 600], help="clip lengths in seconds")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=120.0, help="skip a call estimated to take longer than this")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    threads = set_threads(a.threads)
    if a.worker:
        print(json.dumps(measure(a.presets[0], a.clips, a.batch_sizes, threads, a.repeats, a.max_seconds, a.device,
                                 a.precision)))
        return
    from hear_maeast.config import PRESETS

    presets = a.presets or (CPU_PRESETS if a.device == "cpu" else [p for p in PRESETS if "micro" not in p])
    out = run(presets, a.clips, a.batch_sizes, threads, a.repeats, a.max_seconds, a.device, a.precision)
    out["provenance"] = provenance(torch.device(a.device))
    write_json(a.json, out)


if __name__ == "__main__":
    main()
