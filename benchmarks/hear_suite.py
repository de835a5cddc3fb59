"""The HEAR suite at its real shapes, measured: write, embed, then heareval's predictions runner and our probes.

    python benchmarks/hear_suite.py --work WORK [--task FOLDER[=FRACTION] ...] [--grid fast] [--threads 1]
                                    [--embed-threads 2] [--no-heareval] [--probe mlp ...] [--json FILE]

Per task (default: all 19 leaderboard shapes at the fractions of FRACTIONS, which fit a 2-core session):
benchmarks/hear_scale.py writes the task at that fraction under WORK/tasks; the default weights embed it with eval's
own code (heareval's task_embeddings) into WORK/embeddings; then, on those embeddings, `python -m
heareval.predictions.runner --grid GRID` and `hear-maeast probe`'s probes (benchmarks/probe.py's bench_task), each in
a process of its own. Recorded per task: seconds and the process's own peak RSS (wait4) of each stage, scores, rows,
and each time scaled to the full task (`extrapolated`: stated as such, not measured). Rows are appended to --json as each task ends, and
a re-run skips the tasks already there (same fraction, grid, threads). `--report` prints the table of --json only.
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
FRACTIONS = {  # ~1,000 clips or fewer (every label in every split), events one clip per split or fold
    "esc50-v2.0.0-full": 1.0, "beijing_opera-v1.0-hear2021-full": 1.0, "gunshot_triangulation-v1.0-full": 1.0,
    "tfds_gtzan_music_speech-1.0.0-full": 1.0, "tfds_gtzan-1.0.0-full": 0.5, "tfds_crema_d-1.0.0-full": 0.1,
    "libricount-v1.0.0-hear2021-full": 0.1, "mridangam_stroke-v1.5-full": 0.1, "mridangam_tonic-v1.5-full": 0.1,
    "vocal_imitation-v1.1.3-full": 0.17, "vox_lingua_top10-hear2021-full": 0.5, "nsynth_pitch-v2.2.3-5h": 0.06,
    "nsynth_pitch-v2.2.3-50h": 0.006, "speech_commands-v0.0.2-5h": 0.02, "speech_commands-v0.0.2-full": 0.005,
    "beehive_states_fold0-v2-full": 0.02, "fsd50k-v1.0-full": 0.02, "dcase2016_task2-hear2021-full": 0.05,
    "maestro-v3.0.0-5h": 0.03,
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
           "clips": sum(len(json.loads((task / f"{split}.json").read_text()))
                        for split in json.loads((task / "task_metadata.json").read_text())["splits"]),
           "audio_h": sum(f.stat().st_size for f in task.rglob("*.wav")) / (2 * 16000 * 3600)}
    row.update(bench_task(emb, work / "probes" / f"f{fraction:g}", grid, "cpu", probes, threads, heareval))
    return row


STARTUP = {  # what each probe process does before its first row: interpreter, imports (TensorFlow for heareval)
    "heareval_s": [sys.executable, "-c", "import heareval.predictions.runner"],
    "mlp_s": [sys.executable, "-c", "import eval.probes.run, eval.probes.mlp, heareval.score"],
}


def startup(threads: int) -> dict:
    """Seconds of each probe process's start (the median of 3), which does not grow with the task."""
    import statistics

    return {k: statistics.median(_stage(cmd, threads)["seconds"] for _ in range(3)) for k, cmd in STARTUP.items()}


def extrapolated(row: dict, start: dict | None = None) -> dict:
    """The row's times scaled to the full task: embedding by the audio's hours, the rest by the clips (a probe's
    training time grows with its rows, the grid's epochs do not); the real and measured sizes come from
    hear_scale's shapes and plan (the plan of seed 0 is what was written); each process's start (`start`) once."""
    import hear_scale

    shape = next(s for s in hear_scale.SHAPES if s.folder == row["task"])
    plan = hear_scale.plan_task(shape, row["fraction"], 0)
    out = {**row, "clips": plan.clips, "audio_h": plan.samples / (16000 * 3600)}
    for key in [k for k in row if k.endswith("_s") and k != "write_s" and not k.endswith("_full_s")]:
        scale = shape.hours / out["audio_h"] if key == "embed_s" else shape.clips / plan.clips
        fixed = min((start or {}).get(key, 0.0), row[key])  # the process's start is paid once, at any size
        out[f"{key[:-2]}_full_s"] = fixed + (row[key] - fixed) * scale
    return out


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
    parser.add_argument("--report", action="store_true", help="print the table of --json, run nothing")
    args = parser.parse_args()
    if args.report:
        data = json.loads(args.json.read_text())
        print(report(data["rows"], args.grid, data.get("startup")))
        return
    todo = [(t.split("=")[0], float(t.split("=")[1]) if "=" in t else FRACTIONS[t]) for t in args.task] or \
        list(FRACTIONS.items())
    done = json.loads(args.json.read_text()) if args.json and args.json.exists() else {"rows": []}
    done.setdefault("provenance", provenance(torch.device("cpu")))
    print(f"load average at start: {load_average()}", flush=True)
    done.setdefault("startup", startup(args.threads))
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
    if args.json:
        args.json.write_text(json.dumps(done, indent=1))
    print(report(done["rows"], args.grid, done["startup"]))


def report(rows: list[dict], grid: str, start: dict | None = None) -> str:
    """The measured table, each time also extrapolated to the full task (/ fraction), and the suite's totals."""
    columns = [("task", "task"), ("fraction", "fraction"), ("clips", "clips"), ("audio_h", "audio h"),
               ("embed_s", "embed s"), ("embed_rss", "embed peak RSS"), ("heareval_s", "heareval s"),
               ("heareval_rss", "heareval peak RSS"), ("heareval_score", "heareval score"), ("mlp_s", "mlp s"),
               ("mlp_rss", "mlp peak RSS"), ("mlp_score", "mlp score"), ("speedup", "heareval / mlp"),
               ("embed_full_s", "embed s, full (extrapolated)"), ("heareval_full_s", "heareval s, full (extr.)"),
               ("mlp_full_s", "mlp s, full (extr.)")]
    rows = [extrapolated(r, start) for r in rows]
    shown = [{**r, **{k: f"{r[k] / 2**30:.2f} GiB" for k in r if k.endswith("_rss")}} for r in rows]
    totals = {k: sum(r.get(k, 0) for r in rows) / 3600 for k in ("embed_full_s", "heareval_full_s", "mlp_full_s")}
    return (table(shown, columns, f"the HEAR suite's shapes, grid {grid}") +
            f"\nwhole suite, extrapolated to the full tasks ({len(rows)} tasks): embedding {totals['embed_full_s']:.1f} h, "
            f"heareval's runner {totals['heareval_full_s']:.1f} h, the mlp probe {totals['mlp_full_s']:.1f} h")


if __name__ == "__main__":
    main()
