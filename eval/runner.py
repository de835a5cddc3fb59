"""`hear-maeast eval`: embeddings and scores for every task of a tasks folder, through heareval as installed.

The layout of a run is eval/layout.py's (heareval names its folders by module only, so two checkpoints would
share them; here every model gets its own folder; eval.results reads it).

Embeddings: `heareval.embeddings.task_embeddings.task_embeddings` with heareval's `Embedding` wrapper, in this
process (heareval's embeddings runner refuses to start on a CUDA machine with tensorflow-cpu).
Scores: `python -m heareval.predictions.runner` in a subprocess, with the environment `prediction_env` sets.

Results never go stale (the run-folder rules of eval/runs.py, shared with `hear-maeast finetune`): a run folder
belongs to one model, keyed by module, options and the sha256 of the weights file. A re-run of the same model
resumes: finished embeddings are kept while the task's metadata, vocabulary and split files are unchanged
(`eval.runs.same_task`), and finished scores while their file reads; failed or half-written ones are redone. A
folder holding another model's results, or results of weights since re-trained, is refused (or replaced with
`replace_stale`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

from eval.layout import (EMBEDDED, EMBEDDING_FILES, EMBEDDINGS_DONE, EVENT_TIMESTAMPS, FAILED_JSON, PREDICTION_DONE, RUN,
                         SCORES, ResultsError)
from eval.results import read_score
from eval.runs import (DEFAULT_MODULE, model_name, open_run, package_version, progress, same_task, select_tasks,
                       weights_file, write_json)
from eval.taskdir import EVENT, TaskError, check_metadata, check_task, plain_name, task_splits
from hear_maeast.errors import BadInput, WorkFailed
from hear_maeast.provenance import file_sha256, git_commit

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


_log = progress("eval")


def load_embedding(module: str, model_path: str, model_options: dict):
    """heareval's Embedding wrapper around MODULE.load_model; one-line errors naming the module and options."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or an empty name
        found = False
    if not found:  # said before importing heareval (and tensorflow with it), which takes seconds
        raise BadInput(f"--module {module}: cannot import it (no such module); install that HEAR module or fix its "
                       f"name")
    from heareval.embeddings.task_embeddings import TORCH, Embedding

    _log(f"loading {module} ({model_path or 'default weights'}, options {model_options})")
    try:
        # heareval calls load_model(path, **options) when given a path, load_model(**options) otherwise
        embedding = Embedding(module, model_path or None, model_options)
    except ModuleNotFoundError as e:  # the module imports one that is missing
        raise BadInput(f"--module {module}: cannot import it ({e}); install what it needs") from e
    except (TypeError, ValueError) as e:
        raise BadInput(f"{module}.load_model refused --model {model_path or '(none)'} with --model-options "
                       f"{json.dumps(model_options)}: {e}") from e
    except Exception as e:  # noqa: BLE001 - a third-party module failing to load is failed work, said in one line
        raise WorkFailed(f"{module}.load_model({model_path or ''}) failed: {type(e).__name__}: {e}") from e
    if embedding.type == TORCH:  # a TensorFlow module's tensors are heareval's to convert and check
        embedding.module = CheckedModule(embedding.module, embedding.model)
    return embedding


class CheckedModule:
    """A HEAR module whose embeddings are checked before heareval stores them: the HEAR API's types and shapes
    (torch tensors; scene [n_sounds, scene_embedding_size]; timestamp [n_sounds, n_frames, timestamp_embedding_size]
    with timestamps [n_sounds, n_frames] in ms, non-decreasing), finite values. A module that breaks them is a
    WorkFailed naming the function and what it returned, not heareval's internal error or a silently wrong file."""

    def __init__(self, module, model):
        self._module, self._model = module, model

    def __getattr__(self, name):
        return getattr(self._module, name)

    def _fail(self, what: str, problem: str):
        return WorkFailed(f"--module {self._module.__name__}: {what} {problem}; the HEAR API requires {EXPECTED[what]}")

    def _tensor(self, what: str, x, rank: int, rows: int, width_attr: str | None):
        import torch

        if not isinstance(x, torch.Tensor):
            raise self._fail(what, f"returned a {type(x).__name__}, not a torch.Tensor")
        if x.ndim != rank or x.shape[0] != rows or not x.is_floating_point():
            raise self._fail(what, f"returned a {x.dtype} tensor of shape {list(x.shape)} for {rows} sounds")
        width = getattr(self._model, width_attr, None) if width_attr else None
        if isinstance(width, int) and x.shape[-1] != width:
            raise self._fail(what, f"returned {x.shape[-1]}-d embeddings, but the model's {width_attr} is {width}")
        if not torch.isfinite(x).all():
            raise self._fail(what, "returned NaN or inf")
        return x

    def get_scene_embeddings(self, audio, model):
        what = "get_scene_embeddings"
        return self._tensor(what, self._module.get_scene_embeddings(audio, model), 2, len(audio),
                            "scene_embedding_size")

    def get_timestamp_embeddings(self, audio, model):
        what = "get_timestamp_embeddings"
        out = self._module.get_timestamp_embeddings(audio, model)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise self._fail(what, f"returned a {type(out).__name__}, not (embeddings, timestamps)")
        emb = self._tensor(what, out[0], 3, len(audio), "timestamp_embedding_size")
        ts = self._tensor(what + " (timestamps)", out[1], 2, len(audio), None)
        if ts.shape[1] != emb.shape[1]:
            raise self._fail(what, f"returned timestamps {list(ts.shape)} for embeddings {list(emb.shape)}")
        if ts.shape[1] > 1 and bool((ts.diff(dim=1) < 0).any()):
            raise self._fail(what, "returned timestamps that decrease")
        return emb, ts


EXPECTED = {"get_scene_embeddings": "a float torch.Tensor [n_sounds, scene_embedding_size], finite",
            "get_timestamp_embeddings": "(float torch.Tensor [n_sounds, n_frames, timestamp_embedding_size], "
                                        "timestamps [n_sounds, n_frames] in ms, non-decreasing), finite",
            "get_timestamp_embeddings (timestamps)": "timestamps as a float torch.Tensor [n_sounds, n_frames] in ms"}


def check_rates(tasks: list[Path], sample_rate: int) -> None:
    """Refuse, before computing anything, every task without audio at the model's rate (all named at once)."""
    refused = []
    for task in tasks:
        try:
            check_task(task, sample_rate)
        except TaskError as e:
            refused.append(str(e))
    if refused:
        raise TaskError("refusing to start: " + " | ".join(refused))


def run_config(embedding, module: str, model_path: str, model_options: dict, grid: str, name: str,
               tasks_dir: Path) -> dict:
    """run.json: which model (module, options, weights sha256) and which software scored it."""
    weights = weights_file(module, model_path)
    return {
        "name": name,
        "module": module,
        "model_file_path": str(Path(model_path).resolve()) if model_path else "",
        "model_options": model_options,
        "weights_file": str(weights.resolve()) if weights else None,
        "weights_sha256": file_sha256(weights) if weights else None,
        "package": module.split(".")[0],
        "package_version": package_version(module),
        "hear_maeast_version": package_version("hear_maeast"),
        "git_commit": git_commit(),
        "sample_rate": int(embedding.sample_rate),
        "scene_embedding_size": int(getattr(embedding.model, "scene_embedding_size", -1)),
        "timestamp_embedding_size": int(getattr(embedding.model, "timestamp_embedding_size", -1)),
        "grid": grid,
        "tasks_dir": str(Path(tasks_dir).resolve()),
    }


def embed_task(embedding, task_dir: Path, task_out: Path) -> float:
    """heareval's task_embeddings for one task into `task_out`; returns seconds taken. Skips finished ones."""
    from heareval.embeddings.task_embeddings import task_embeddings

    done = task_out / EMBEDDINGS_DONE
    if embeddings_done(task_dir, task_out):
        return 0.0
    if task_out.exists():  # half-written or of an older copy of the task: start over, as heareval's runner does
        shutil.rmtree(task_out)
    start = time.time()
    task_embeddings(embedding, task_dir, task_out)
    elapsed = time.time() - start
    write_json(task_out / "profile.embeddings.json", {"time_elapsed": elapsed})
    done.write_text("")
    return elapsed


def embeddings_done(task_dir: Path, task_out: Path) -> bool:
    """A task's embeddings in `task_out` are finished (heareval's done marker, written last), of this very task
    (`same_task`) and whole: every split's embeddings, dimensions and labels are there (a file deleted since is
    embedded again, never read as missing later)."""
    if not ((task_out / EMBEDDINGS_DONE).exists() and same_task(task_dir, task_out)):
        return False
    metadata = check_metadata(task_dir)  # same_task has read and checked the task's files
    files = (*EMBEDDING_FILES, *((EVENT_TIMESTAMPS,) if metadata["embedding_type"] == EVENT else ()))
    return all((task_out / f"{s}.{suffix}").is_file() for s in task_splits(metadata) for suffix in files)


def scores_kept(task_out: Path) -> bool:
    """Finished, readable scores are kept; otherwise heareval's done marker and any half-written score file are
    removed, so that heareval scores the task again (it skips a task whose done marker exists)."""
    try:
        if (task_out / PREDICTION_DONE).exists() and read_score(task_out).mean is not None:
            return True
    except ResultsError as e:
        _log(f"  {e}: scoring again")
    for name in (PREDICTION_DONE, SCORES):
        (task_out / name).unlink(missing_ok=True)
    return False


def predict_task(task_out: Path, grid: str, log_file: Path, extra_args: tuple[str, ...] = ()) -> float:
    """`python -m heareval.predictions.runner TASK_OUT --grid GRID` in a subprocess; returns seconds taken."""
    if scores_kept(task_out):
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
        raise WorkFailed(f"heareval.predictions.runner exited with {proc.returncode}; last lines of {log_file}:\n{tail}")
    return time.time() - start


def score_task(embedding, task: Path, task_out: Path, grid: str, prediction_args: tuple[str, ...],
               before: dict) -> dict:
    """Embed and score one task; its run.json record. A failure is recorded in failed.json, never raised."""
    failed_file = task_out / FAILED_JSON
    try:
        failed_file.unlink(missing_ok=True)  # a previous failure: try again from clean state
        t_emb = embed_task(embedding, task, task_out)
        _log(f"  embeddings: {'kept' if t_emb == 0 else f'{t_emb:.1f} s'}")
        t_pred = predict_task(task_out, grid, task_out / "predictions.log", prediction_args)
        score = read_score(task_out)  # the reader `table` uses
        if score.mean is None:
            raise WorkFailed(f"heareval finished without writing {task_out / SCORES}")
        _log(f"  predictions: {'kept' if t_pred == 0 else f'{t_pred:.1f} s'}; test score {score}")
        # a resumed run keeps the timings of the work it kept
        return {"status": "done", "score": str(score), "embed_s": t_emb or before.get("embed_s", 0.0),
                "predict_s": t_pred or before.get("predict_s", 0.0)}
    except Exception as e:  # noqa: BLE001 - record, go on with the other tasks
        message = f"{type(e).__name__}: {e}"
        _log(f"  FAILED: {message}")
        task_out.mkdir(parents=True, exist_ok=True)
        write_json(failed_file, {"error": message, "traceback": traceback.format_exc()})
        return {"status": "failed", "error": message}


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
    replace_stale: bool = False,
) -> Path:
    """Embed and score every task under `tasks_dir` into OUT/<name>/; returns that folder.

    Refuses, before computing anything, bad options (BadInput), a folder that is not a HEAR task or has no audio
    at the model's sample rate (TaskError), and a results folder of another model (eval.runs.open_run). A task that
    fails later is recorded in its failed.json and the others still run; then WorkFailed names the failed ones.
    """
    if grid not in GRIDS:
        raise BadInput(f"--grid must be one of {GRIDS}, got {grid!r}")
    model_options = {} if model_options is None else model_options
    if not isinstance(model_options, dict):
        raise BadInput(f"--model-options must be a JSON object such as '{{\"layer\": 4}}', got {model_options!r}")
    tasks = select_tasks(Path(tasks_dir), only)
    name = plain_name(name or model_name(module, model_path, model_options), "--name", BadInput)
    embedding = load_embedding(module, model_path, model_options)
    check_rates(tasks, int(embedding.sample_rate))
    config = run_config(embedding, module, model_path, model_options, grid, name, tasks_dir)
    run_dir = Path(out) / name
    before = open_run(run_dir, config, replace_stale, _log)
    _log(f"results in {run_dir}")

    status = {}
    # tasks `probe` embedded and this run does not score keep their record (the table shows no cell for them)
    embedded = {t: r for t, r in before.items() if r.get("status") == EMBEDDED and t not in {x.name for x in tasks}}
    for i, task in enumerate(tasks, 1):
        _log(f"[{i}/{len(tasks)}] {task.name}")
        status[task.name] = score_task(embedding, task, run_dir / task.name, grid, prediction_args,
                                       before.get(task.name, {}))
    write_json(run_dir / RUN, {**config, "tasks": {**embedded, **status}})
    failed = [t for t, s in status.items() if s["status"] == "failed"]
    _log(f"{len(status) - len(failed)} of {len(status)} tasks done" + (f"; failed: {', '.join(failed)}" if failed else ""))
    if failed:
        raise WorkFailed(f"{len(failed)} of {len(status)} tasks failed ({', '.join(failed)}); the others are scored. "
                         f"What went wrong: {run_dir}/<task>/failed.json; run the same command again to retry them")
    return run_dir
