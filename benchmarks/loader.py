"""The pretraining loader: startup cost and memory against the corpus size, crops per second per worker, the step time
with the loader against synthetic batches, and the store layout that was chosen.

    python benchmarks/loader.py [--sizes 10000 100000] [--frames 32] [--threads N] [--tmp /tmp] [--json FILE] [--quick]

All data is generated under --tmp (a fresh folder, deleted at the end); every measurement runs in a fresh process.
  layouts     crops/s, one process, warm page cache, 2,000 clips of 1,001 frames (10 s): one float32 .npy file per clip
              (M2D layout [1, 80, T], memory-mapped), one float16 .npy per clip (time-major), and float16 shards
              (`hear-maeast features`): why the store uses shards
  startup     seconds from `setup()` to the first batch (options, listing, folder lock, model, statistics, loader
              workers), and from process start; peak RSS of the training process then, and the PSS of its loader
              worker (its share of the pages it shares with the training process since the fork). For N short
              clips of --frames frames: an M2D folder of .npy files [1, 80, T] (sub-folders of 1,000) and its CSV
              list (msm-mae-base-80x208p16x16; statistics from a 10,000-clip sample), and a 128-bin feature store
              (mae-ast-patch-12l; statistics from its manifest). Targets: the largest size costs at most 2x the
              smallest's time plus a constant, and RSS grows by at most 100 MB per 100k clips.
  throughput  crops/s per loader worker with 1 and 2 workers: msm-mae-base-80x208p16x16 from a store of 10-s clips
              (batches of 64, masks included), and mae-ast-patch-12l decoding 10-s wav files on the fly (batches
              of 8). Target: >= 3,000 crops/s per worker from the store.
  step        median step time of msm-mae-tiny-80x208p16x16 (batch 32) fed by the loader (1 worker) against the
              same batch repeated (no loader), the training process at --threads - 1 threads. Target: within 5 %.
"""

from __future__ import annotations

import time

START = time.perf_counter()  # process start, as near as Python lets us: startup includes importing torch

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import _status_kib, provenance, run_worker, set_threads, table, write_json  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

MSM_BASE, AST_BASE, TINY = "msm-mae-base-80x208p16x16", "mae-ast-patch-12l", "msm-mae-tiny-80x208p16x16"
MiB = 2**20


# ---- generated data ------------------------------------------------------------------------------------------------
def make_npy_folder(root: Path, n: int, frames: int, n_mels: int = 80) -> Path:
    """n M2D-layout files [1, n_mels, frames] float32 in sub-folders of 1,000, and files.csv listing them."""
    x = np.random.default_rng(0).normal(-7.0, 4.0, (1, n_mels, frames)).astype(np.float32)
    names = []
    for i in range(n):
        name = f"{i // 1000:04d}/{i:07d}.npy"
        if i % 1000 == 0:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / name, x)
        names.append(name)
    (root / "files.csv").write_text("file_name\n" + "\n".join(names) + "\n")
    return root


def make_store(root: Path, n: int, frames: int, n_mels: int, frontend: str) -> Path:
    """A feature store as `hear-maeast features` writes it (one shard), of n random clips of `frames` frames."""
    from pretrain.data import CLIP_COLUMNS, STORE_FORMAT

    (root / "shards").mkdir(parents=True)
    block = np.random.default_rng(0).normal(-5.0, 4.0, (frames * 64, n_mels)).astype(np.float16)
    with open(root / "shards" / "00000.f16", "wb") as f:
        for _ in range(n // 64 + 1):
            f.write(block.tobytes())
    with open(root / "clips.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CLIP_COLUMNS)
        w.writerows(["shards/00000.f16", i * frames, frames, f"/generated/{i:07d}.wav", ""] for i in range(n))
    manifest = dict(format=STORE_FORMAT, frontend=frontend, n_mels=n_mels, dtype="float16", complete=True, clips=n,
                    norm_mean=-5.0, norm_std=4.0)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def make_wavs(root: Path, n: int, seconds: float) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        sf.write(root / f"{i:05d}.wav", (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000,
                 subtype="PCM_16")
    return root


# ---- measurements, each in its own process -------------------------------------------------------------------------
def pss_of(pid: int) -> int:
    """Proportional set size: pages shared with the training process (fork) count for their share only."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def measure_startup(data: str, preset: str, out: str) -> dict:
    from pretrain.train import TrainConfig, setup

    t0 = time.perf_counter()
    run = setup(TrainConfig(preset=preset, data=data, out=out, steps=1, batch_size=32, device="cpu", num_workers=1))
    batch = next(run.batches)
    t1 = time.perf_counter()
    workers = [pss_of(p.pid) for p in multiprocessing.active_children()]
    assert batch["spec"].shape[0] == 32
    res = dict(clips=len(run.source), setup_to_first_batch_s=t1 - t0, process_start_to_first_batch_s=t1 - START,
               peak_rss_mib=_status_kib("VmHWM") / 1024, worker_pss_mib=sum(workers) / MiB,
               index_mib=run.source.index_bytes / MiB)
    run.batches = None
    run.lock.release()
    return res


def measure_throughput(data: str, preset: str, workers: int, batch: int, seconds: float) -> dict:
    from hear_maeast.config import get_preset
    from pretrain.data import open_source
    from pretrain.loader import MicroBatches, Plan, loader

    cfg = get_preset(preset)
    source = open_source(data, cfg)
    plan = Plan(len(source), batch, seed=0, rank=0, world=1, per_epoch=max(1, len(source) // batch))
    it = iter(loader(MicroBatches(source, cfg, plan), range(10**9), workers, pin=False, prefetch=4))
    for _ in range(2 * max(workers, 1)):  # warm-up: workers started, shards mapped
        next(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += next(it)["spec"].shape[0]
    rate = n / (time.perf_counter() - t0)
    return dict(crops_per_s=rate, per_worker=rate / max(workers, 1), workers=workers, batch=batch)


def measure_step(data: str, out: str, synthetic: bool, threads: int, steps: int) -> dict:
    import itertools

    from pretrain.train import TrainConfig, setup, train_step

    set_threads(threads)
    run = setup(TrainConfig(preset=TINY, data=data, out=out, steps=10**6, batch_size=32, device="cpu", num_workers=1,
                            norm_stats=(-5.0, 4.0)))
    if synthetic:
        run.batches = itertools.repeat(next(run.batches))
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        train_step(run)
        run.step += 1
        times.append(time.perf_counter() - t0)
    run.batches = None
    run.lock.release()
    return dict(step_s=statistics.median(times[2:]), times_s=times[2:])


def measure_layouts(root: Path, n: int = 2000, frames: int = 1001, crops: int = 6000) -> dict:
    """crops/s of 208-frame crops, single process, warm cache: per-clip .npy (float32 [1, 80, T]; float16 [T, 80])
    against float16 shards."""
    from hear_maeast.config import get_preset
    from pretrain.data import open_source

    cfg = get_preset(MSM_BASE)
    rng = np.random.default_rng(0)
    x = rng.normal(-7, 4, (1, 80, frames)).astype(np.float32)
    for d in ("m2d", "f16"):
        (root / d).mkdir(parents=True)
    for i in range(n):
        np.save(root / "m2d" / f"{i:05d}.npy", x)
        np.save(root / "f16" / f"{i:05d}.npy", x[0].T.astype(np.float16))
    make_store(root / "store", n, frames, 80, "logmel")
    m2d, store = open_source(root / "m2d", cfg), open_source(root / "store", cfg)
    idx, us = rng.integers(0, n, crops), rng.random(crops)

    def f16_crop(i, u):
        y = np.load(root / "f16" / f"{i:05d}.npy", mmap_mode="r")
        s = int(u * (frames - 208 + 1))
        return np.array(y[s : s + 208].T)

    out = {}
    for name, fn in (("npy float32 [1, 80, T] per clip (M2D)", m2d.crop), ("npy float16 [T, 80] per clip", None),
                     ("float16 shards (store)", store.crop)):
        call = (lambda i, u: f16_crop(i, u)) if fn is None else (lambda i, u, fn=fn: fn(int(i), 208, u))
        t0 = time.perf_counter()
        for i, u in zip(idx, us):
            call(i, u)
        out[name] = crops / (time.perf_counter() - t0)
    return out


WORKERS = {"startup": measure_startup, "throughput": measure_throughput, "step": measure_step, "layouts": measure_layouts}


def in_process(kind: str, **kwargs) -> dict:
    """One measurement in a fresh process (its own peak RSS, no page of an earlier measurement)."""
    return run_worker(__file__, [kind, json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()})],
                      malloc_env=False)


# ---- driver --------------------------------------------------------------------------------------------------------
def startup(root: Path, sizes: list[int], frames: int, log) -> list[dict]:
    rows = []
    for n in sizes:
        t0 = time.perf_counter()
        folder = make_npy_folder(root / f"m2d{n}", n, frames)
        store = make_store(root / f"store{n}", n, frames, 128, "fbank")
        log(f"  generated {n} clips ({time.perf_counter() - t0:.0f} s)")
        for case, data, preset in (("M2D .npy folder", folder, MSM_BASE), ("M2D CSV list", folder / "files.csv", MSM_BASE),
                                   ("feature store, 128 fbank bins", store, AST_BASE)):
            r = in_process("startup", data=data, preset=preset, out=root / "runs" / f"{case[:3]}{n}")
            rows.append(dict(case=case, preset=preset, **r))
            log(f"  {case}, {n} clips: {r['setup_to_first_batch_s']:.2f} s, peak RSS {r['peak_rss_mib']:.0f} MiB")
        shutil.rmtree(folder)
        shutil.rmtree(store)
    return rows


def startup_checks(rows: list[dict]) -> list[dict]:
    """Per case: time ratio and RSS growth per 100k clips between the smallest and the largest corpus."""
    checks = []
    for case in dict.fromkeys(r["case"] for r in rows):
        r = sorted((x for x in rows if x["case"] == case), key=lambda x: x["clips"])
        small, large = r[0], r[-1]
        growth = (large["peak_rss_mib"] - small["peak_rss_mib"]) * 1e5 / max(large["clips"] - small["clips"], 1)
        checks.append(dict(case=case, clips=f"{small['clips']} -> {large['clips']}",
                           time_ratio=large["setup_to_first_batch_s"] / small["setup_to_first_batch_s"],
                           time_added_s=large["setup_to_first_batch_s"] - small["setup_to_first_batch_s"],
                           rss_mib_per_100k=growth, rss_ok=growth <= 100 * 1.048576))
    return checks


def throughput(root: Path, quick: bool, log) -> list[dict]:
    store = make_store(root / "store10s", 200 if quick else 2000, 1001, 80, "logmel")
    wavs = make_wavs(root / "wavs", 16 if quick else 64, 10.0)
    rows = []
    for workers in (1, 2):
        for case, data, preset, batch in (("store, 10-s clips", store, MSM_BASE, 64), ("wav 10 s, decoded", wavs, AST_BASE, 8)):
            r = in_process("throughput", data=data, preset=preset, workers=workers, batch=batch, seconds=2 if quick else 5)
            rows.append(dict(case=case, preset=preset, **r))
            log(f"  {case}, {preset}, {workers} worker(s): {r['per_worker']:.0f} crops/s per worker")
    return rows


def step_time(root: Path, threads: int, quick: bool, log) -> dict:
    store = root / "store10s"
    steps = 3 if quick else 10
    res = {}
    for synthetic in (True, False):
        r = in_process("step", data=store, out=root / "runs" / f"step{synthetic}", synthetic=synthetic,
                       threads=max(1, threads - 1), steps=steps)
        res["synthetic" if synthetic else "loader"] = r
    res["ratio"] = res["loader"]["step_s"] / res["synthetic"]["step_s"]
    log(f"  step time {TINY}, batch 32: loader {res['loader']['step_s'] * 1000:.0f} ms, synthetic "
        f"{res['synthetic']['step_s'] * 1000:.0f} ms, ratio {res['ratio']:.3f}")
    return res


def run(sizes: list[int], frames: int, threads: int, tmp: str, quick: bool = False, log=print) -> dict:
    root = Path(tempfile.mkdtemp(prefix="hear_maeast_loader_", dir=tmp))
    try:
        log("layouts (crops/s, one process):")
        layouts = in_process("layouts", root=root / "layouts", n=200 if quick else 2000, crops=1000 if quick else 6000)
        shutil.rmtree(root / "layouts")
        for k, v in layouts.items():
            log(f"  {k}: {v:.0f}")
        log("startup:")
        rows = startup(root, sizes, frames, log)
        log("throughput:")
        tp = throughput(root, quick, log)
        log("step:")
        step = step_time(root, threads, quick, log)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    res = dict(layouts_crops_per_s=layouts, startup=rows, startup_checks=startup_checks(rows), throughput=tp, step=step,
               frames_per_clip=frames)
    print_tables(res)
    return res


def print_tables(res: dict) -> None:
    print(table(res["startup"], [("case", "data"), ("clips", "clips"), ("setup_to_first_batch_s", "setup -> 1st batch s"),
                                 ("process_start_to_first_batch_s", "process start -> 1st batch s"),
                                 ("peak_rss_mib", "peak RSS MiB"), ("worker_pss_mib", "worker PSS MiB"),
                                 ("index_mib", "path index MiB")], "Loader startup"))
    print(table(res["startup_checks"], [("case", "data"), ("clips", "clips"), ("time_ratio", "time ratio"),
                                        ("time_added_s", "time added s"), ("rss_mib_per_100k", "RSS MiB per 100k clips")],
                "Startup against corpus size (targets: ratio <= 2 + a constant; <= 100 MB per 100k clips)"))
    print(table(res["throughput"], [("case", "data"), ("preset", "preset"), ("workers", "workers"), ("batch", "batch"),
                                    ("crops_per_s", "crops/s"), ("per_worker", "crops/s per worker")],
                "Loader throughput (target: >= 3,000 crops/s per worker from the store)"))
    s = res["step"]
    print(f"\nStep time, {TINY}, batch 32: loader {s['loader']['step_s'] * 1000:.0f} ms, synthetic batches "
          f"{s['synthetic']['step_s'] * 1000:.0f} ms (ratio {s['ratio']:.3f}; target <= 1.05)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--frames", type=int, default=32, help="frames per generated clip for the startup measurement")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="where the generated data goes (deleted after)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if a.worker:
        kind, kwargs = a.worker
        kwargs = json.loads(kwargs)
        print(json.dumps(WORKERS[kind](**{k: Path(v) if k == "root" else v for k, v in kwargs.items()})))
        return
    threads = set_threads(a.threads)
    sizes = [200, 2000] if a.quick else a.sizes
    res = run(sizes, a.frames, threads, a.tmp, a.quick)
    res["provenance"] = provenance(torch.device("cpu"))
    write_json(a.json, res)


if __name__ == "__main__":
    main()
