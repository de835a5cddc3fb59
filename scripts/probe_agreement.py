"""Does `hear-maeast probe --probe mlp` agree with heareval's own predictions runner? Shown over seeds, not assumed.

    python scripts/probe_agreement.py RESULTS/<model> --task TASK [--task ...] [-n 5] [--grid fast] --work DIR

RESULTS/<model> is a folder `hear-maeast eval` wrote (its heareval embeddings are used as they are). For each task:
heareval (`python -m heareval.predictions.runner --deterministic False`) N times, each on its own copy of the
embeddings under DIR, and the `mlp` probe N times with seeds 0..N-1. Prints, per task, both score ranges, and the
rate at which two runs predict the same label for a test clip (argmax; multi-label and event tasks: each label's
decision at 0.5 per clip or frame): among heareval's runs (its own run-to-run agreement) and between each of ours
and each of heareval's. The agreement holds when our mean lies within heareval's min-max range widened by one of
its standard deviations, and our clip-level agreement with heareval is at least heareval's own minus 0.05.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eval.paired import PREDICTIONS, read_own_predictions  # noqa: E402
from eval.probes.common import cpu_threads  # noqa: E402
from eval.probes.run import probe_task  # noqa: E402
from eval.results import read_score  # noqa: E402
from eval.runner import prediction_env  # noqa: E402

KEEP = (".embeddings.npy", ".embedding-dimensions.json", ".target-labels.pkl", ".filename-timestamps.json", ".json",
        ".csv")
SKIP = ("test.predicted-scores.json", "prediction-done.json", "run.json", "failed.json", "profile.embeddings.json")


def copy_embeddings(src: Path, dst: Path) -> Path:
    """The files heareval's predictions runner reads, without any earlier scores."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name.endswith(KEEP) and f.name not in SKIP:
            shutil.copyfile(f, dst / f.name)
    return dst


def heareval_run(src: Path, dst: Path, grid: str) -> float:
    copy_embeddings(src, dst)
    start = time.time()
    cmd = [sys.executable, "-m", "heareval.predictions.runner", str(dst.resolve()), "--grid", grid,
           "--deterministic", "False"]
    proc = subprocess.run(cmd, env=prediction_env(), capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"heareval failed on {dst}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return time.time() - start


def decisions(folder: Path, multiclass: bool) -> np.ndarray:
    """Every tested split's predicted labels, pooled in heareval's order: argmax, or 0.5 decisions (flattened)."""
    out = []
    for f in sorted(folder.glob("*" + PREDICTIONS)):
        prediction = read_own_predictions(f)["prediction"].numpy()  # heareval's own file, just written
        out.append(prediction.argmax(1) if multiclass else (prediction > 0.5).ravel())
    return np.concatenate(out)


def agreement(a: list[np.ndarray], b: list[np.ndarray] | None = None) -> float:
    pairs = itertools.combinations(a, 2) if b is None else itertools.product(a, b)
    return float(np.mean([np.mean(x == y) for x, y in pairs]))


def compare(src: Path, work: Path, n: int, grid: str) -> dict:
    metadata = json.loads((src / "task_metadata.json").read_text())
    multiclass = metadata["prediction_type"] == "multiclass" and metadata["embedding_type"] == "scene"
    theirs, ours, t_theirs, t_ours = [], [], [], []
    for i in range(n):
        t_theirs.append(heareval_run(src, work / f"heareval-{i}" / src.name, grid))
        start = time.time()
        probe_task("mlp", src, work / f"mlp-{i}" / src.name, i, grid)
        t_ours.append(time.time() - start)
    theirs = [work / f"heareval-{i}" / src.name for i in range(n)]
    ours = [work / f"mlp-{i}" / src.name for i in range(n)]
    s_theirs = np.array([read_score(f).mean for f in theirs])
    s_ours = np.array([read_score(f).mean for f in ours])
    d_theirs = [decisions(f, multiclass) for f in theirs]
    d_ours = [decisions(f, multiclass) for f in ours]
    std = float(s_theirs.std(ddof=1)) if n > 1 else 0.0
    own, cross = agreement(d_theirs), agreement(d_ours, d_theirs)
    return {"task": src.name, "heareval": s_theirs.tolist(), "mlp": s_ours.tolist(), "heareval_std": std,
            "score_holds": bool(s_theirs.min() - std <= s_ours.mean() <= s_theirs.max() + std),
            "heareval_agreement": own, "cross_agreement": cross, "agreement_holds": cross >= own - 0.05,
            "heareval_s": float(np.mean(t_theirs)), "mlp_s": float(np.mean(t_ours))}


def markdown(rows: list[dict]) -> str:
    lines = ["| task | heareval min-max (mean ± std) | mlp min-max (mean) | score holds | heareval run-to-run "
             "agreement | mlp-heareval agreement | agreement holds |", "|---|---|---|---|---:|---:|---|"]
    for r in rows:
        h, m = np.array(r["heareval"]), np.array(r["mlp"])
        lines.append(f"| {r['task']} | {h.min():.3f}-{h.max():.3f} ({h.mean():.3f} ± {r['heareval_std']:.3f}) | "
                     f"{m.min():.3f}-{m.max():.3f} ({m.mean():.3f}) | {'yes' if r['score_holds'] else 'NO'} | "
                     f"{r['heareval_agreement']:.3f} | {r['cross_agreement']:.3f} | "
                     f"{'yes' if r['agreement_holds'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path, help="RESULTS/<model>, written by `hear-maeast eval`")
    parser.add_argument("--task", action="append", required=True)
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--grid", default="fast")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    cpu_threads()  # one torch thread unless OMP_NUM_THREADS says otherwise, as heareval gets (prediction_env)
    rows = []
    for task in args.task:
        rows.append(compare(args.model_dir / task, args.work, args.n, args.grid))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    print(markdown(rows))


if __name__ == "__main__":
    main()
