"""Wall time of heareval's predictions runner vs the `mlp` probe (heareval's protocol in plain PyTorch), same grid.

    python benchmarks/probe.py RESULTS/<model> [--task TASK ...] [--grid fast] [--device cpu|cuda] [--json FILE]

RESULTS/<model> is a folder `hear-maeast eval` wrote. Per task: `python -m heareval.predictions.runner --grid GRID`
(a subprocess with eval's environment: one torch thread) on a fresh copy of the embeddings, then the mlp probe with
the same grid (seed 42: the 8 grid points heareval draws) in a subprocess with the same environment, on --device
(heareval runs on the CPU unless it finds a GPU). Both times include the process start and the imports; linear and
knn are timed too. Prints a table; numbers depend on the machine and its load (printed with them).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import load_average, provenance, run_measured, table, write_json  # noqa: E402

import torch  # noqa: E402

from eval.results import read_score  # noqa: E402
from eval.runner import prediction_env  # noqa: E402
from scripts.probe_agreement import copy_embeddings  # noqa: E402

OURS = ("import sys; from pathlib import Path; from eval.probes.run import probe_task; "
        "print(probe_task(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), 42, sys.argv[4], sys.argv[5])[0])")


def timed(cmd: list[str], threads: int = 1) -> tuple[float, str, int]:
    """(seconds, last line printed, the process's peak RSS in bytes) of one subprocess, with eval's environment."""
    env = {**prediction_env(), "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    run = run_measured(cmd, env)
    if run["rc"]:
        sys.exit(f"{' '.join(cmd)} failed:\n{run['out'][-4000:]}")
    lines = run["out"].strip().splitlines()
    return run["seconds"], lines[-1] if lines else "", run["rss_bytes"]


def bench_task(src: Path, work: Path, grid: str, device: str, probes: tuple[str, ...] = ("mlp", "linear", "knn"),
               threads: int = 1, heareval: bool = True) -> dict:
    """heareval's predictions runner and our probes on the same embeddings folder `src`, each in its own process."""
    row = {"task": src.name, "grid": grid, "threads": threads}
    if heareval:
        dst = copy_embeddings(src, work / "heareval" / src.name)
        row["heareval_s"], _, row["heareval_rss"] = timed(
            [sys.executable, "-m", "heareval.predictions.runner", str(dst), "--grid", grid], threads)
        row["heareval_score"] = str(read_score(dst))
    for probe in probes:
        out = work / probe / src.name
        shutil.rmtree(out, ignore_errors=True)
        row[f"{probe}_s"], row[f"{probe}_score"], row[f"{probe}_rss"] = timed(
            [sys.executable, "-c", OURS, probe, str(src), str(out), grid, device], threads)
    if heareval and "mlp_s" in row:
        row["speedup"] = row["heareval_s"] / row["mlp_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--task", action="append", help="default: every task folder of model_dir")
    parser.add_argument("--grid", default="fast")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", type=Path, default=Path("/tmp/hear-maeast-bench-probe"))
    parser.add_argument("--json")
    args = parser.parse_args()
    tasks = args.task or sorted(p.name for p in args.model_dir.iterdir() if (p / ".done.embeddings").exists())
    print(f"load average at start: {load_average()}", flush=True)
    rows = [bench_task(args.model_dir / t, args.work, args.grid, args.device) for t in tasks]
    columns = [("task", "task"), ("heareval_s", "heareval s"), ("heareval_score", "heareval score"),
               ("mlp_s", f"mlp s ({args.device})"), ("mlp_score", "mlp score"), ("speedup", "heareval / mlp"),
               ("linear_s", "linear s"), ("linear_score", "linear score"), ("knn_s", "knn s"), ("knn_score", "knn score")]
    print(table(rows, columns, f"probe wall time, grid {args.grid}"))
    write_json(args.json, {"provenance": provenance(torch.device(args.device)), "grid": args.grid, "rows": rows})


if __name__ == "__main__":
    main()
