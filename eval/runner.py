"""`hear-maeast eval`: embeddings and scores for every task of a tasks folder, through heareval as installed.

Layout of a run (heareval names its folders by module only, so two checkpoints would share them; here every
model gets its own folder):

    RESULTS/<model-name>/run.json                      module, checkpoint, options, package version, git commit
    RESULTS/<model-name>/<task>/                        heareval's embedding folder for the task
        .done.embeddings                                embeddings finished (as heareval's own runner writes it)
        test.predicted-scores.json, prediction-done.json   written by `python -m heareval.predictions.runner`
        failed.json                                     what went wrong, when it did

Embeddings: `heareval.embeddings.task_embeddings.task_embeddings` with heareval's `Embedding` wrapper, in this
process (heareval's embeddings runner refuses to start on a CUDA machine with tensorflow-cpu).
Scores: `python -m heareval.predictions.runner` in a subprocess, with the environment README "The install" documents.
A re-run resumes: finished embeddings and scores are kept, failed or half-written ones are redone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

from eval.taskdir import TaskError, check_task, find_tasks
from hear_maeast.checkpoint import atomic_write
from hear_maeast.provenance import git_commit

DEFAULT_MODULE = "hear_maeast"
GRIDS = ("default", "fast", "faster")


def prediction_env() -> dict:
    env = dict(os.environ)
    # torch >= 2.6 loads with weights_only=True; Lightning checkpoints pickle classes
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # heareval's dataloaders use one worker per core; with torch's own threads on top, a small CPU is
    # oversubscribed (measured here: one thread halves the time of an event task on 2 cores)
    env.setdefault("OMP_NUM_THREADS", "1")
    # heareval trains deterministically; cuBLAS needs this on GPU for that
    env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return env


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", text).strip("-")


def model_name(module: str, model_path: str = "", model_options: dict | None = None) -> str:
    """Folder name of a model's results: module, checkpoint stem (or `default`), options."""
    parts = [module, Path(model_path).stem if model_path else "default"]
    parts += [f"{k}={v}" for k, v in sorted((model_options or {}).items())]
    return _slug("-".join(parts))


def package_version(module: str) -> str | None:
    try:
        import importlib

        top = importlib.import_module(module.split(".")[0])
        return getattr(top, "__version__", None)
    except Exception:  # noqa: BLE001 - the version is informative only
        return None


def _log(msg: str) -> None:
    print(f"[hear-maeast eval] {msg}", flush=True)


def _write_json(path: Path, obj) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2)))


def start_run(out: Path, name: str, config: dict) -> Path:
    """Create or resume RESULTS/<name>/ and its run.json; refuse a folder that holds another model's results."""
    run_dir = Path(out) / name
    run_json = run_dir / "run.json"
    if run_json.is_file():
        previous = json.loads(run_json.read_text())
        for key in ("module", "model_file_path", "model_options"):
            if previous.get(key) != config.get(key):
                raise TaskError(
                    f"{run_dir} holds results of another model ({key}: {previous.get(key)!r}, now {config.get(key)!r}). "
                    f"Give this run its own folder with --name, or another --out."
                )
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_json, config)
    return run_dir


def embed_task(embedding, task_dir: Path, task_out: Path) -> float:
    """heareval's task_embeddings for one task into `task_out`; returns seconds taken. Skips finished ones."""
    from heareval.embeddings.task_embeddings import task_embeddings

    done = task_out / ".done.embeddings"
    if done.exists():
        return 0.0
    if task_out.exists():  # half-written: start over, as heareval's runner does
        shutil.rmtree(task_out)
    start = time.time()
    task_embeddings(embedding, task_dir, task_out)
    elapsed = time.time() - start
    _write_json(task_out / "profile.embeddings.json", {"time_elapsed": elapsed})
    done.write_text("")
    return elapsed


def predict_task(task_out: Path, grid: str, log_file: Path, extra_args: tuple[str, ...] = ()) -> float:
    """`python -m heareval.predictions.runner TASK_OUT --grid GRID` in a subprocess; returns seconds taken."""
    if (task_out / "prediction-done.json").exists() and (task_out / "test.predicted-scores.json").exists():
        return 0.0
    # an absolute path: heareval logs to Path("logs").joinpath(path), i.e. into the task's own folder, not ./logs
    cmd = [sys.executable, "-m", "heareval.predictions.runner", str(task_out.resolve()), "--grid", grid, *extra_args]
    start = time.time()
    with open(log_file, "w") as log:
        log.write(" ".join(cmd) + "\n")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=prediction_env(), text=True,
                                errors="replace")
        for line in proc.stdout:  # everything to the log; heareval's own progress lines to the console
            log.write(line)
            if " - Grid point " in line or "Final Test Results" in line:
                message = line.split(" - ", 4)[-1].strip()
                message = message.split(":")[0] if "Grid point" in message else message[:100] + "..."
                _log(f"  heareval: {message}")
        proc.wait()
    if proc.returncode != 0:
        tail = "".join(log_file.read_text().splitlines(keepends=True)[-25:])
        raise RuntimeError(f"heareval.predictions.runner exited with {proc.returncode}; last lines of {log_file}:\n{tail}")
    return time.time() - start


def primary_score(task_out: Path) -> str:
    scores = json.loads((task_out / "test.predicted-scores.json").read_text())
    if "aggregated_scores" in scores:
        agg = scores["aggregated_scores"]
        return f"{agg['test_score_mean']:.3f}±{agg['test_score_std']:.3f}"
    return f"{scores['test']['test_score']:.3f}"


def run_eval(
    tasks_dir: Path,
    out: Path,
    module: str = DEFAULT_MODULE,
    model_path: str = "",
    model_options: dict | None = None,
    grid: str = "default",
    name: str | None = None,
    only: tuple[str, ...] = (),
    prediction_args: tuple[str, ...] = (),
) -> int:
    """Embed and score every task under `tasks_dir`; returns the number of failed tasks.

    Refuses (TaskError, before computing anything) a folder that is not a HEAR task or has no audio at the
    model's sample rate. A task that fails later is recorded in its failed.json and the others still run.
    """
    from heareval.embeddings.task_embeddings import Embedding

    if grid not in GRIDS:
        raise TaskError(f"--grid must be one of {GRIDS}, got {grid!r}")
    model_options = model_options or {}
    tasks = find_tasks(Path(tasks_dir))
    if only:
        missing = set(only) - {t.name for t in tasks}
        if missing:
            raise TaskError(f"no task folder named {sorted(missing)} in {tasks_dir}; it has {[t.name for t in tasks]}")
        tasks = [t for t in tasks if t.name in only]
    for task in tasks:
        check_task(task)  # layout problems are reported before a model is even loaded

    name = name or model_name(module, model_path, model_options)
    _log(f"loading {module} ({model_path or 'default weights'}, options {model_options})")
    # heareval calls load_model(path, **options) when given a path, load_model(**options) otherwise
    embedding = Embedding(module, model_path or None, model_options)
    sample_rate = int(embedding.sample_rate)
    refused = []
    for task in tasks:
        try:
            check_task(task, sample_rate)
        except TaskError as e:
            refused.append(str(e))
    if refused:
        raise TaskError("refusing to start:\n  " + "\n  ".join(refused))

    config = {
        "name": name,
        "module": module,
        "model_file_path": str(Path(model_path).resolve()) if model_path else "",
        "model_options": model_options,
        "package": module.split(".")[0],
        "package_version": package_version(module),
        "hear_maeast_version": package_version("hear_maeast"),
        "git_commit": git_commit(),
        "sample_rate": sample_rate,
        "scene_embedding_size": int(getattr(embedding.model, "scene_embedding_size", -1)),
        "timestamp_embedding_size": int(getattr(embedding.model, "timestamp_embedding_size", -1)),
        "grid": grid,
        "tasks_dir": str(Path(tasks_dir).resolve()),
    }
    previous_json = Path(out) / name / "run.json"
    previous = json.loads(previous_json.read_text()).get("tasks", {}) if previous_json.is_file() else {}
    run_dir = start_run(Path(out), name, config)
    _log(f"results in {run_dir}")

    status = {}
    for i, task in enumerate(tasks, 1):
        task_out = run_dir / task.name
        failed_file = task_out / "failed.json"
        _log(f"[{i}/{len(tasks)}] {task.name}")
        try:
            if failed_file.exists():  # a previous failure: try again from clean state
                failed_file.unlink()
            t_emb = embed_task(embedding, task, task_out)
            _log(f"  embeddings: {'kept' if t_emb == 0 else f'{t_emb:.1f} s'}")
            t_pred = predict_task(task_out, grid, task_out / "predictions.log", prediction_args)
            score = primary_score(task_out)
            _log(f"  predictions: {'kept' if t_pred == 0 else f'{t_pred:.1f} s'}; test score {score}")
            before = previous.get(task.name, {})  # a resumed run keeps the timings of the work it kept
            status[task.name] = {"status": "done", "score": score,
                                 "embed_s": t_emb or before.get("embed_s", 0.0),
                                 "predict_s": t_pred or before.get("predict_s", 0.0)}
        except Exception as e:  # noqa: BLE001 - record, go on with the other tasks
            message = f"{type(e).__name__}: {e}"
            _log(f"  FAILED: {message}")
            task_out.mkdir(parents=True, exist_ok=True)
            _write_json(failed_file, {"error": message, "traceback": traceback.format_exc()})
            status[task.name] = {"status": "failed", "error": message}
    config["tasks"] = status
    _write_json(run_dir / "run.json", config)
    failed = [t for t, s in status.items() if s["status"] == "failed"]
    _log(f"{len(status) - len(failed)} of {len(status)} tasks done" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return len(failed)
