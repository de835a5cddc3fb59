"""`make bench`: the CPU benchmarks in under 10 minutes on a 2-core machine, then the GPU part where CUDA is present.

    python benchmarks/run_all.py [--threads N] [--out benchmarks/results] [--quick]

Prints every table and writes benchmarks/results/{attention,pretrain_step_<preset>,embed_throughput,loader,gpu}.json
and summary.md (the tables, with the machine and its load). The sizes below are chosen for the time budget;
each script takes larger ones on its own command line (see its --help).
--quick: micro presets and tiny sizes, for checking that everything runs (seconds, numbers meaningless).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, device_name, load_average, provenance, set_threads, write_json  # noqa: E402

import torch  # noqa: E402

import attention  # noqa: E402
import embed_throughput  # noqa: E402
import gpu  # noqa: E402
import loader  # noqa: E402
import pretrain_step  # noqa: E402

# (preset, batch, mask ratios, warm-up, repeats): the CPU presets at every ratio, the base presets at 0.75.
# One warm-up step, then the median of 3 (fewer repeats for the base presets, whose SSAST step takes seconds).
PRETRAIN = [("mae-ast-frame-small", 2, [0.5, 0.75, 0.9], 1, 3),
            ("msm-mae-small-80x208p16x16", 8, [0.5, 0.75, 0.9], 1, 3),
            ("mae-ast-patch-12l", 1, [0.75], 1, 3),
            ("msm-mae-base-80x208p16x16", 4, [0.75], 1, 3)]
# (presets, clips s, batch sizes, max seconds per call): the default weights' preset and a frame model at every
# length; a base preset on short clips only (a 10 min base call takes minutes on 2 cores).
EMBED = [(["msm-mae-tiny-80x208p16x16", "mae-ast-frame-small"], [1, 10, 600], [1, 16], 40.0),
         (["msm-mae-base-80x208p16x16"], [1, 10], [1], 40.0)]
QUICK_PRETRAIN = [("msm-mae-micro", 2, [0.5, 0.75, 0.9], 1, 2), ("mae-ast-patch-micro", 2, [0.75], 1, 2)]
QUICK_EMBED = [(["msm-mae-micro", "mae-ast-frame-micro"], [1, 10, 60], [1, 4], 10.0)]


class Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
            st.flush()
        return len(s)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--quick", action="store_true", help="micro presets, tiny sizes: a smoke run")
    ap.add_argument("--tmp", default="/tmp", help="where benchmarks/loader.py generates its data (deleted after)")
    a = ap.parse_args(argv)
    threads = set_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cpu = torch.device("cpu")
    log = io.StringIO()
    header = (f"# Benchmarks\n\nMachine: {device_name(cpu)}; torch {torch.__version__}; "
              f"load average at start {load_average()}; {time.strftime('%Y-%m-%d %H:%M %Z')}.\n"
              f"Command: python benchmarks/run_all.py{' --quick' if a.quick else ''}\n")
    with contextlib.redirect_stdout(Tee(sys.stdout, log)):
        print(header)
        res = attention.run(attention.SHAPES[:2] if a.quick else attention.SHAPES, "cpu", "fp32", 3 if a.quick else 5)
        write_json(out / "attention.json", dict(res, provenance=provenance(cpu)))

        summary = {}
        for preset, batch, ratios, warmup, repeats in (QUICK_PRETRAIN if a.quick else PRETRAIN):
            res = pretrain_step.run(preset, ratios, batch, threads, warmup, repeats, "cpu", "fp32")
            write_json(out / f"pretrain_step_{preset}.json", dict(res, provenance=provenance(cpu)))
            summary[preset] = res
        rows = [dict(preset=p, mask=r, speedup=v["speedup"], flop_ratio=v["flop_ratio"], memory=v["memory_reduction"],
                     speedup_full=v["speedup_vs_full"], memory_full=v["memory_reduction_vs_full"])
                for p, res in summary.items() for r, v in res["results"].items()]
        print(pretrain_step.table(rows, [("preset", "preset"), ("mask", "mask"), ("speedup", "speedup vs SSAST"),
                                         ("flop_ratio", "FLOP ratio"), ("memory", "memory reduction vs SSAST"),
                                         ("speedup_full", "speedup vs 1 full pass"),
                                         ("memory_full", "memory reduction vs 1 full pass")],
                                  "Pretraining step summary: ours (MAE) against SSAST as published (targets at 0.75, "
                                  "base presets: >= 4x faster, >= 3x less activation memory)"))

        parts = []
        for presets, clips, batches, max_s in (QUICK_EMBED if a.quick else EMBED):
            parts.append(embed_throughput.run(presets, clips, batches, threads, 3, max_s, "cpu", "fp32"))
        embed = dict(parts[0], results=[r for p in parts for r in p["results"]],
                     checks=[c for p in parts for c in p["checks"]], provenance=provenance(cpu))
        write_json(out / "embed_throughput.json", embed)

        res = loader.run([200, 2000] if a.quick else [10_000, 100_000], 32, threads, a.tmp, a.quick)
        write_json(out / "loader.json", dict(res, provenance=provenance(cpu)))

        if torch.cuda.is_available():
            res = gpu.run(gpu.BASE_PRESETS, 32, [0.75], 10, None, True)
            write_json(out / "gpu.json", dict(res, provenance=provenance(torch.device("cuda"))))
        else:
            print("\nGPU part: no CUDA device on this machine, skipped (benchmarks/gpu.py runs it where there is one).")
        print(f"\nTotal {time.perf_counter() - t0:.0f} s; load average at the end {load_average()}.")
    (out / "summary.md").write_text(log.getvalue())
    print(f"wrote {out / 'summary.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
