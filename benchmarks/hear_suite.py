"""The HEAR suite at its real shapes, measured: write, embed, then heareval's predictions runner and our probes.

    python benchmarks/hear_suite.py --work WORK [--task FOLDER[=FRACTION] ...] [--grid fast] [--threads 1]
                                    [--embed-threads 2] [--no-heareval] [--probe mlp ...] [--json FILE]

Per task (default: all 19 leaderboard shapes at the fractions of FRACTIONS, which fit a 2-core session):
benchmarks/hear_scale.py writes the task at that fraction under WORK/tasks; the default weights embed it with eval's
own code (heareval's task_embeddings) into WORK/embeddings; then, on those embeddings, `python -m
heareval.predictions.runner --grid GRID` and `hear-maeast probe`'s probes (benchmarks/probe.py's bench_task), each in
a process of its own. Recorded per task: seconds and the process's own peak RSS (wait4) of each stage, scores, rows,
and each time divided by the fraction: the extrapolation to the full task, stated as such (training time grows with
the rows, which grow with the fraction; the grid's epochs do not). Rows are appended to --json as each task ends, and
a re-run skips the tasks already there (same fraction, grid, threads).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import load_average, provenance, run_measured, table  # noqa: E402
from probe import bench_task  # noqa: E402

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
# fractions that fit one 2-core session (each task's heareval run ~1-3 min): the full task where it is small
FRACTIONS = {
    "dcase2016_task2-hear2021-full": 0.1, "nsynth_pitch-v2.2.3-5h": 0.05, "nsynth_pitch-v2.2.3-50h": 0.005,
    "speech_commands-v0.0.2-5h": 0.05, "speech_commands-v0.0.2-full": 0.01, "beehive_states_fold0-v2-full": 0.05,
    "beijing_opera-v1.0-hear2021-full": 1.0, "tfds_crema_d-1.0.0-full": 0.2, "esc50-v2.0.0-full": 1.0,
    "fsd50k-v1.0-full": 0.02, "gunshot_triangulation-v1.0-full": 1.0, "tfds_gtzan-1.0.0-full": 0.5,
    "tfds_gtzan_music_speech-1.0.0-full": 1.0, "libricount-v1.0.0-hear2021-full": 0.2, "maestro-v3.0.0-5h": 0.05,
    "mridangam_stroke-v1.5-full": 0.5, "mridangam_tonic-v1.5-full": 0.5, "vocal_imitation-v1.1.3-full": 0.2,
    "vox_lingua_top10-hear2021-full": 0.2,
}
EMBED = ("import sys; from pathlib import Path; from eval.runner import load_embedding, embed_task; "
         "print(embed_task(load_embedding('hear_maeast', '', {}), Path(sys.argv[1]), Path(sys.argv[2])))")


def _env(threads: int) -> dict:
    import os

    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(HERE.parent),
            "TF_CPP_MIN_LOG_LEVEL": "2"}


def _stage(cmd: list[str], threads: int) -> dict:
    run = run_measured(cmd, _env(threads))
    if run["rc"]:
        sys.exit(f"{' '.join(cmd)} failed (exit {run['rc']}):\n{run['out'][-4000:]}")
    return run


def rows_of(emb: Path) -> dict:
    """Rows (clips, or frames of an event task) per split of an embeddings folder, and their width."""
    dims = {p.name.split(".")[0]: json.loads(p.read_text()) for p in emb.glob("*.embedding-dimensions.json")}
    return {"rows": {k: v[0] for k, v in sorted(dims.items())}, "dim": next(iter(dims.values()))[1] if dims else 0}


def measure(folder: str, fraction: float, work: Path, grid: str, threads: int, embed_threads: int,
            probes: tuple[str, ...], heareval: bool) -> dict:
    tasks, emb_root = work / "tasks" / f"f{fraction:g}", work / "embeddings" / f"f{fraction:g}"
    write = _stage([sys.executable, str(HERE / "hear_scale.py"), "--out", str(tasks), "--task", folder,
                    "--fraction", str(fraction)], embed_threads)
    task = tasks / folder
    emb = emb_root / folder
    embed = _stage([sys.executable, "-c", EMBED, str(task), str(emb)], embed_threads)
    row = {"task": folder, "fraction": fraction, "write_s": write["seconds"], "embed_s": embed["seconds"],
           "embed_rss": embed["rss_bytes"], "embed_threads": embed_threads, **rows_of(emb),
           "clips": sum(len(json.loads(p.read_text())) for p in task.glob("*.json") if p.name != "task_metadata.json"),
           "audio_h": sum(f.stat().st_size for f in task.rglob("*.wav")) / (2 * 16000 * 3600)}
    row.update(bench_task(emb, work / "probes" / f"f{fraction:g}", grid, "cpu", probes, threads, heareval))
    for key in [k for k in row if k.endswith("_s") and k != "write_s"]:
        row[f"{key[:-2]}_full_s"] = row[key] / fraction  # extrapolated to the full task: linear in its rows
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--task", action="append", default=[], help="FOLDER or FOLDER=FRACTION (default: all 19)")
    parser.add_argument("--grid", default="fast")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of heareval's runner and our probes")
    parser.add_argument("--embed-threads", type=int, default=2)
    parser.add_argument("--probe", action="append", choices=("mlp", "linear", "knn"))
    parser.add_argument("--no-heareval", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep each task's audio and embeddings (default: removed)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    todo = [(t.split("=")[0], float(t.split("=")[1]) if "=" in t else FRACTIONS[t]) for t in args.task] or \
        list(FRACTIONS.items())
    done = json.loads(args.json.read_text()) if args.json and args.json.exists() else {"rows": []}
    done.setdefault("provenance", provenance(torch.device("cpu")))
    print(f"load average at start: {load_average()}", flush=True)
    for folder, fraction in todo:
        if any(r["task"] == folder and r["fraction"] == fraction and r["grid"] == args.grid
               and r["threads"] == args.threads for r in done["rows"]):
            continue
        row = measure(folder, fraction, args.work, args.grid, args.threads, args.embed_threads,
                      tuple(args.probe or ("mlp",)), not args.no_heareval)
        row["load_average_after"] = load_average()
        done["rows"].append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            args.json.write_text(json.dumps(done, indent=1))
        if not args.keep:
            for sub in ("tasks", "embeddings", "probes"):
                shutil.rmtree(args.work / sub, ignore_errors=True)
    columns = [("task", "task"), ("fraction", "fraction"), ("audio_h", "audio h"), ("embed_s", "embed s"),
               ("embed_rss", "embed RSS"), ("heareval_s", "heareval s"), ("heareval_score", "heareval score"),
               ("mlp_s", "mlp s"), ("mlp_score", "mlp score"), ("mlp_rss", "mlp RSS"), ("speedup", "heareval/mlp")]
    print(table(done["rows"], columns, f"the HEAR suite's shapes, grid {args.grid}"))


if __name__ == "__main__":
    main()
