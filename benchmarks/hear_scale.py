"""HEAR-shaped synthetic tasks at the real size of the 19 HEAR 2021 leaderboard tasks.

    python benchmarks/hear_scale.py --list [--task NAME ...] [--fraction F]
    python benchmarks/hear_scale.py --out DIR [--task NAME ...] [--fraction F] [--seed S] [--jobs N] [--json FILE]

Writes, for each task, a folder in the official layout at 16000 Hz only (DIR/<task folder>/task_metadata.json,
labelvocabulary.csv, <split>.json, 16000/<split>/*.wav) with the real task's name, splits, clip counts, clip length
(or, for FSD50K, the real spread of lengths), label count, metrics and evaluation parameters, so that embedding and
probe times can be measured at the real scale without the official archives. `--fraction F` scales every split
(0 < F <= 1), never below what a probe needs: every label in every split (so every training split has them all
and every tested label was seen in training) and, for event tasks, at least one clip. `--list` prints the shapes
(clips, hours and 16 kHz disk size at F) and where each number comes from.

The audio is generated from eval/synth.py's signals: each label is one sound class (a synthetic instrument at a
pitch of its own; pitches for the NSynth and MAESTRO tasks), with coloured background noise at a random SNR, a
random level and random timing, so a probe can learn it but not from loudness or onset time alone. Multilabel
clips mix 1-3 label sounds; event clips hold labelled events at random times, onsets more than 200 ms apart.
Same seed, same files (one random stream per clip, whatever --jobs). Clips are written by a pool of --jobs
processes (default: all cores), each clip on its own, so memory holds a few clips, never a task.

Before writing, the bytes needed are compared with the free space of --out: refused (exit 2, nothing written)
when they do not fit. Each task is written into `<folder>.partial` and renamed when complete; its
task_metadata.json is written last, so an interrupted run never leaves a folder that reads as a task. A re-run
keeps complete tasks of the same shape, fraction and seed and rewrites the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if str(ROOT / "benchmarks") not in sys.path:  # hear_shapes, hear_scale_audio (when imported, not run)
    sys.path.append(str(ROOT / "benchmarks"))

from eval.taskdir import LABEL_VOCABULARY, METADATA, PARTIAL, refuse_foreign, remove_own_folder  # noqa: E402
from hear_maeast.errors import BadInput, HearMaeastError, describe  # noqa: E402
from hear_scale_audio import jobs_of, run_jobs  # noqa: E402
from hear_shapes import (  # noqa: E402, F401 (BY_FOLDER, SHAPES: imported from here by the tests and hear_suite)
    BY_FOLDER, SAMPLE_RATE, SHAPES, Shape, TaskPlan, check_fraction, check_seed, disk_bytes, plan_task, select,
    split_json, task_metadata, vocabulary_csv)

DONE = ".hear-scale-done.json"  # a complete task of ours: its content is the task's metadata

# ---------------------------------------------------------------------------------------------- the task folders
def _write_text(path: Path, text: str) -> None:
    """Write `text` to path in one step (a temporary name, then rename): never half a file under its name."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def state(folder: Path, metadata: dict) -> str:
    """"complete" (ours, same metadata), "ours" (ours, to rewrite), "absent"; BadInput for a folder not ours."""
    if not folder.exists():
        return "absent"
    done = folder / DONE
    if (folder / PARTIAL).is_file():
        return "ours"
    if done.is_file():
        try:
            same = json.loads(done.read_text()) == metadata
        except (OSError, json.JSONDecodeError):
            same = False
        return "complete" if same else "ours"
    refuse_foreign(folder, (DONE,))  # raises: the folder is not ours, it is left alone
    return "ours"


def write_task(out: Path, plan: TaskPlan, pool: ProcessPoolExecutor | None, workers: int = 1) -> Path:
    """Write one task into out/<folder>.partial, rename it to out/<folder>, then write its metadata and marker."""
    folder = out / plan.shape.folder
    tmp = folder.with_name(folder.name + ".partial")
    for old in (folder, tmp):
        if old.exists():
            remove_own_folder(old, (PARTIAL, DONE))
    tmp.mkdir(parents=True)
    (tmp / PARTIAL).write_text("")
    for split in plan.splits:
        (tmp / str(SAMPLE_RATE) / split).mkdir(parents=True)
    run_jobs(jobs_of(tmp, plan), pool, workers)
    for split in plan.splits:
        _write_text(tmp / f"{split}.json", json.dumps(split_json(plan, split), indent=1))
    _write_text(tmp / LABEL_VOCABULARY, vocabulary_csv(plan.shape))
    tmp.rename(folder)
    metadata = json.dumps(task_metadata(plan), indent=1)
    _write_text(folder / METADATA, metadata)  # only now does the folder read as a task
    _write_text(folder / DONE, metadata)
    (folder / PARTIAL).unlink()
    return folder


def free_bytes(out: Path) -> tuple[int, int, Path]:
    """(free bytes, block size, the existing folder measured) for --out, which may not exist yet."""
    probe = out.resolve()
    while not probe.exists():
        probe = probe.parent
    usage, stat = shutil.disk_usage(probe), os.statvfs(probe)
    return usage.free, stat.f_frsize or 4096, probe


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def check_space(out: Path, plans: list[TaskPlan]) -> None:
    """Refuse (BadInput, exit 2) before anything is written when the tasks do not fit in --out's free space."""
    if not plans:
        return
    free, block, where = free_bytes(out)
    needed = sum(disk_bytes(p, block) for p in plans)
    if needed > free:
        fits = min(p.fraction for p in plans) * free / needed * 0.9
        raise BadInput(f"--out {out}: the {len(plans)} task(s) to write need {gb(needed)} ({needed} bytes) but only "
                       f"{gb(free)} ({free} bytes) are free on {where}; nothing was written. Write less (--fraction "
                       f"{fits:.3g} or fewer --task) or choose an --out on a larger disk")


@dataclass
class Written:
    folder: str
    status: str  # written | kept
    clips: int
    hours: float
    bytes: int
    seconds: float

    @property
    def rate(self) -> float | None:
        """Hours of audio written per minute of wall time."""
        return self.hours / (self.seconds / 60) if self.status == "written" and self.seconds > 0 else None


def write(out: Path, shapes: list[Shape], fraction: float, seed: int, jobs: int, log=print) -> list[Written]:
    """Write the tasks into `out`: plan all, refuse what is not ours or does not fit, then write task by task."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file; give the folder to write the task folders into")
    plans = [plan_task(s, fraction, seed) for s in shapes]
    states = [state(out / p.shape.folder, task_metadata(p)) for p in plans]
    for p in plans:  # a .partial folder that is not ours is refused before anything is written
        tmp = out / (p.shape.folder + ".partial")
        if tmp.exists() and not (tmp / PARTIAL).is_file():
            remove_own_folder(tmp, (PARTIAL,))
    todo = [p for p, st in zip(plans, states) if st != "complete"]
    check_space(out, todo)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    # the workers ignore Ctrl-C: this process stops them, and leaves the task being written as <folder>.partial
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN)
                               ) if jobs > 1 and todo else None
    try:
        for plan, st in zip(plans, states):
            hours, size = plan.samples / SAMPLE_RATE / 3600, disk_bytes(plan)
            if st == "complete":
                results.append(Written(plan.shape.folder, "kept", plan.clips, hours, size, 0.0))
                log(f"{plan.shape.folder}: kept (complete, same shape, fraction and seed)")
                continue
            t0 = time.perf_counter()
            write_task(out, plan, pool, jobs)
            results.append(Written(plan.shape.folder, "written", plan.clips, hours, size, time.perf_counter() - t0))
            r = results[-1]
            log(f"{r.folder}: {r.clips} clips, {r.hours:.2f} h, {gb(r.bytes)} in {r.seconds:.1f} s "
                f"({r.rate:.2f} h of audio per minute)")
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return results


# ---------------------------------------------------------------------------------------------- the command
def split_counts(shape: Shape, counts: dict[str, int] | None = None) -> str:
    """`4000/500/500` (train/valid/test) or `5 folds: 1396-1395` (or `5 x 400`)."""
    values = list((counts or dict(shape.splits)).values())
    if shape.split_mode == "trainvaltest":
        return "/".join(str(v) for v in values)
    lo, hi = min(values), max(values)
    return f"{len(values)} x {lo}" if lo == hi else f"{len(values)} folds: {hi}-{lo}"


def duration(shape: Shape) -> str:
    if shape.sample_duration is not None:
        return f"{shape.sample_duration:g}"
    lo, _, hi = next(iter(shape.lengths.values()))
    means = "/".join(f"{v[1]:g}" for v in shape.lengths.values())
    return f"{lo:g}-{hi:g} (mean {means})"


def shape_rows(shapes: list[Shape], fraction: float, seed: int) -> list[dict]:
    rows = []
    for s in shapes:
        plan = plan_task(s, fraction, seed)
        rows.append({
            "task": s.folder, "kind": f"{s.embedding_type} {s.prediction_type}, {s.split_mode}",
            "clips": split_counts(s), "scaled": split_counts(s, {k: len(v) for k, v in plan.splits.items()}),
            "duration": duration(s), "labels": len(s.labels), "metric": s.evaluation[0],
            "hours": round(plan.samples / SAMPLE_RATE / 3600, 3), "gb": round(disk_bytes(plan) / 1e9, 3),
            "real_hours": round(s.hours, 2),
        })
    return rows


def print_list(shapes: list[Shape], fraction: float, seed: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import table

    rows = shape_rows(shapes, fraction, seed)
    columns = [("task", "task folder"), ("kind", "kind"), ("clips", "clips per split"), ("duration", "clip s"),
               ("labels", "labels"), ("metric", "primary metric"), ("real_hours", "real hours")]
    if fraction < 1:
        columns.append(("scaled", f"clips at {fraction:g}"))
    columns += [("hours", f"hours at {fraction:g}"), ("gb", f"16 kHz GB at {fraction:g}")]
    total = {"task": "all", "hours": round(sum(r["hours"] for r in rows), 2),
             "gb": round(sum(r["gb"] for r in rows), 2), "real_hours": round(sum(r["real_hours"] for r in rows), 1)}
    print(table(rows + [total], columns))
    print("\nSources (hearbenchmark/hear-preprocess files at the commit named; 'approximate' says which numbers are "
          "not exact):")
    for s in shapes:
        print(f"- {s.folder}: {s.source}." + (f" Approximate: {s.approximate}." if s.approximate else ""))
    print("\nmetrics, in heareval's order: " + "; ".join(f"{s.folder} {', '.join(s.evaluation)}" for s in shapes))


def machine() -> str:
    cpu = "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "unknown"
    return f"{cpu}, {os.cpu_count()} cores, load average {load}"


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, the package's convention (hear_maeast.errors)
        print(f"error: hear_scale: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    ap = Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--out", type=Path, help="tasks root to write the task folders into")
    ap.add_argument("--task", action="append", metavar="NAME",
                    help="a task folder (or task_name) to write, repeatable; default: all 19")
    ap.add_argument("--fraction", type=float, default=1.0, help="share of every split's clips, in (0, 1] [1]")
    ap.add_argument("--seed", type=int, default=0, help="generator seed: the same seed writes the same files [0]")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="writer processes [all cores]")
    ap.add_argument("--list", action="store_true", help="print the shapes and their sources, write nothing")
    ap.add_argument("--json", metavar="FILE", help="also write the per-task numbers and the rate to FILE")
    args = ap.parse_args(argv)
    try:
        shapes = select(args.task)
        fraction, seed = check_fraction(args.fraction), check_seed(args.seed)
        if args.jobs < 1:
            raise BadInput(f"--jobs {args.jobs}: expected at least 1")
        if args.list:
            print_list(shapes, fraction, seed)
            return 0
        if args.out is None:
            raise BadInput("--out DIR is required to write tasks (or --list to see them)")
        t0 = time.perf_counter()
        results = write(args.out, shapes, fraction, seed, args.jobs)
        seconds = time.perf_counter() - t0
    except BrokenPipeError:  # `--list | head`: the reader has gone, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted: a task being written is left as <folder>.partial (never read as a task); run the same "
              "command again to rewrite it", file=sys.stderr)
        return 130
    except (HearMaeastError, OSError) as e:
        message, code = describe(e)
        print(f"error: hear_scale: {' '.join(message.split())}", file=sys.stderr)
        return code
    written = [r for r in results if r.status == "written"]
    hours = sum(r.hours for r in written)
    rate = hours / (seconds / 60) if written and seconds > 0 else None
    print(f"{len(written)} written, {len(results) - len(written)} kept: {hours:.2f} h of audio, "
          f"{gb(sum(r.bytes for r in written))} in {seconds:.1f} s"
          + (f" = {rate:.2f} h of audio per minute" if rate else "")
          + f" ({args.jobs} processes; {machine()}; {time.strftime('%Y-%m-%d')})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
            "jobs": args.jobs, "fraction": fraction, "seed": seed, "seconds": round(seconds, 2),
            "hours_written": round(hours, 4), "hours_per_minute": rate and round(rate, 3),
            "tasks": [dict(r.__dict__, rate=r.rate) for r in results]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
