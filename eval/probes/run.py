"""Running the probes on a model's embeddings and writing heareval's result layout (eval/layout.py): the
embeddings `hear-maeast eval` writes in RESULTS/<model>/<task>/ are read here (computed with eval's own code,
embed_task, when missing or stale); each probe's results go to RESULTS/<model>-<probe>/<task>/ in heareval's
files (scores {"test": {"test_score": ...}} or one entry per fold and "aggregated_scores"; predictions; copies of
the task's files, so `table` knows its size and chance), n/a for kNN on a multi-label or event task.

A task's probe results are kept while its embeddings and the probe's options are unchanged, redone otherwise.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import time
from pathlib import Path

from eval.probes import PROBES
from eval.probes.common import FoldResult, cpu_threads
from eval.probes.data import TaskData, read_task
from eval.probes.scoring import Scorer
from eval.layout import EMBEDDED, EMBEDDING_FILES, FAILED_JSON, NOT_APPLICABLE, PROBE_DONE as DONE, RUN, SCORES
from eval.protocol import aggregate
from eval.results import Score, read_score
from eval.runs import (check_previous, foreign_files, hold_lock, model_name, open_run, progress, read_run,
                       select_tasks, weights_file, write_json)
from eval.taskdir import LABEL_VOCABULARY, METADATA, TaskError, plain_name, task_splits
from hear_maeast.errors import BadInput, WorkFailed
from hear_maeast.files import atomic_write

TASK_COPIES = (METADATA, LABEL_VOCABULARY)


def embeddings_sha256(folder: Path) -> str:
    """One digest of a task's embeddings, labels and task files (what a probe's scores depend on)."""
    metadata = json.loads((folder / METADATA).read_text())
    digest = hashlib.sha256()
    names = [*TASK_COPIES]
    for split in task_splits(metadata, folder / METADATA):
        names += [f"{split}.json", *(f"{split}.{name}" for name in EMBEDDING_FILES)]
    for name in names:
        digest.update(name.encode() + b"\0")
        with open(folder / name, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def run_probe(probe: str, task: TaskData, seed: int, grid: str, device: str | None):
    """(FoldResults, info) of one probe on one task; None where the probe does not apply (kNN: n/a)."""
    from eval.probes import knn, linear, mlp

    scorer = Scorer(task)
    if probe == "linear":
        return linear.run(task, scorer, seed=seed, device=device)
    if probe == "knn":
        return knn.run(task, scorer) if knn.applies(task) else None
    if probe == "mlp":
        return mlp.run(task, scorer, seed=seed, grid=grid, device=device)
    raise BadInput(f"--probe {probe!r}: no such probe; choose from {', '.join(PROBES)}")


def _predictions(r: FoldResult) -> dict:
    import torch

    out = {"target": torch.from_numpy(r.targets), "prediction": torch.from_numpy(r.probs),
           "prediction_logit": torch.from_numpy(r.logits if r.logits is not None else r.probs)}
    if r.events is not None:
        out["predicted_events"] = r.events
    return out


def write_results(out: Path, task: TaskData, probe: str, results: list[FoldResult] | None, info: dict) -> None:
    """A task's probe results in heareval's layout (see the module docstring); None: not applicable."""
    out.mkdir(parents=True, exist_ok=True)
    for name in (*TASK_COPIES, *(f"{s}.json" for s in task.splits)):
        shutil.copyfile(task.folder / name, out / name)
    if results is None:
        write_json(out / NOT_APPLICABLE, {"probe": probe, "why": "single-label clip tasks only"})
        return
    folds = {}
    for r in results:
        key = "|".join(r.test)
        atomic_write(out / f"{key}.predictions.pkl",
                     lambda tmp, r=r: Path(tmp).write_bytes(pickle.dumps(_predictions(r))))
        folds[key] = r.scores
    scores = dict(folds)
    if len(folds) > 1:
        scores["aggregated_scores"] = aggregate(folds)
    scores.update({"probe": probe, **info, "postprocessing": [list(p) for p in results[0].postprocessing]})
    write_json(out / SCORES, scores)


def kept_score(out: Path, key: dict) -> Score | None:
    """The score of a task's probe results when they are finished (the done marker, written last, names `key`) and
    readable (a score, or n/a); None when they must be redone: a marker of other embeddings or options, or one that
    is damaged, or a score file deleted or damaged since."""
    try:
        if json.loads((out / DONE).read_text()) != key:
            return None
        score = read_score(out)
    except (OSError, ValueError):  # no marker, a damaged marker (JSONDecodeError), a damaged score (ResultsError)
        return None
    return score if score.mean is not None or score.na else None


def probe_task(probe: str, emb_dir: Path, out: Path, seed: int, grid: str, device: str | None = None
               ) -> tuple[str, float]:
    """Score one task's embeddings with one probe into `out`; (score text, seconds: 0 when kept)."""
    try:
        key = {"embeddings_sha256": embeddings_sha256(emb_dir), "probe": probe, "seed": seed, "grid": grid}
    except OSError as e:  # a file deleted or unreadable since the embeddings were checked
        why = f"{e.strerror or type(e).__name__}: {e.filename}"
        raise TaskError(f"the embeddings in {emb_dir} cannot be read ({why}); run the same command again, which "
                        "embeds the task again") from None
    kept = kept_score(out, key)
    if kept is not None:
        return str(kept), 0.0
    if out.exists():
        shutil.rmtree(out)  # of other embeddings or options, or cut short: ours to redo (in a probe's results folder)
    start = time.time()
    task = read_task(emb_dir, out)
    found = run_probe(probe, task, seed, grid, device)
    results, info = found if found is not None else (None, {})
    write_results(out, task, probe, results, info)
    write_json(out / DONE, key)  # last: the results are whole
    return str(read_score(out)), time.time() - start


# ---------------------------------------------------------------------------------------------- the command
_log = progress("probe")


def model_config(module: str, model_path: str, model_options: dict, protocol: str | None = None) -> dict:
    """The identity eval.runs keys a run to (module, options, weights sha256), computed without loading the model;
    with `protocol`, that of a probe's own run folder."""
    from hear_maeast.provenance import file_sha256

    weights = weights_file(module, model_path)
    config = {"module": module, "model_options": model_options,
              "weights_sha256": file_sha256(weights) if weights else None,
              "weights_file": str(weights.resolve()) if weights else None}
    return {**config, "protocol": protocol} if protocol else config


def refused(run_dir: Path, config: dict, replace_stale: bool) -> bool:
    """eval.runs' rule (check_previous), checked before any work: True when `run_dir` holds another model's results
    and `replace_stale` lets them be replaced; BadInput when it may not (or holds another protocol's results)."""
    return check_previous(run_dir, read_run(run_dir), config, replace_stale)


def ensure_embeddings(tasks: list[Path], emb_run: Path, module: str, model_path: str, model_options: dict,
                      grid: str, replace_stale: bool) -> None:
    """Reuse `eval`'s embeddings in RESULTS/<model>/<task>/ when they are this model's and of this task's files;
    otherwise compute them there with eval's own code (load_embedding, run_config, open_run, embed_task)."""
    from eval.runner import check_rates, embed_task, embeddings_done, load_embedding, run_config

    other = refused(emb_run, model_config(module, model_path, model_options), replace_stale)
    if not other and foreign_files(emb_run):
        _log(f"warning: {emb_run} has no {RUN} (not written by `hear-maeast eval` or `probe`): its embeddings are "
             f"taken as {module}'s without a check")
    todo = [t for t in tasks if other or not embeddings_done(t, emb_run / t.name)]
    if not todo:
        _log(f"embeddings of {len(tasks)} tasks kept from {emb_run}")
        return
    embedding = load_embedding(module, model_path, model_options)
    check_rates(todo, int(embedding.sample_rate))
    previous = None if other else read_run(emb_run)
    config = run_config(embedding, module, model_path, model_options, None, emb_run.name, tasks[0].parent)
    records = open_run(emb_run, config, replace_stale, _log)
    # eval's run.json (its grid, its per-task records) kept: a task it scored stays as it scored it
    config = {**config, **(previous or {})}
    for task in todo:
        records[task.name] = {"status": EMBEDDED}  # heareval has not scored these embeddings (table: no cell)
        write_json(emb_run / RUN, {**config, "tasks": records})
        _log(f"embedding {task.name}: {embed_task(embedding, task, emb_run / task.name):.1f} s")


def _probe_tasks(probe: str, tasks: list[Path], emb_run: Path, run_dir: Path, config: dict, replace_stale: bool,
                 device: str | None) -> list[tuple[str, str, Exception]]:
    """One probe on every task into `run_dir` (its run.json with a record per task); the failures, recorded in each
    task's failed.json."""
    open_run(run_dir, config, replace_stale, _log)
    status, failed = {}, []
    for task in tasks:
        try:
            score, seconds = probe_task(probe, emb_run / task.name, run_dir / task.name, config["seed"],
                                        config["grid"], device)
            _log(f"{probe} {task.name}: {score} ({'kept' if not seconds else f'{seconds:.1f} s'})")
            status[task.name] = {"status": "n/a" if score == "n/a" else "done", "score": score, "probe_s": seconds}
        except (BadInput, WorkFailed) as e:
            _log(f"{probe} {task.name}: FAILED: {e}")
            write_json(run_dir / task.name / FAILED_JSON, {"error": str(e)})
            failed.append((probe, task.name, e))
            status[task.name] = {"status": "failed", "error": str(e)}
    write_json(run_dir / RUN, {**config, "tasks": status})
    return failed


def run_probes(tasks_dir: Path, out: Path, probes: tuple[str, ...], module: str = "hear_maeast", model_path: str = "",
               model_options: dict | None = None, name: str | None = None, only: tuple[str, ...] = (),
               grid: str = "fast", seed: int = 0, device: str | None = None, replace_stale: bool = False) -> list[Path]:
    """Every probe on every task of `tasks_dir` into OUT/<name>-<probe>/; returns those folders.

    Bad options, and a results folder of another model, are refused before any work (BadInput). A task a probe
    cannot score (NaN embeddings, a one-class training split, test labels never trained on) is recorded in its
    failed.json and the others still run; then the first such error is raised, naming every failed one."""
    from eval.probes.mlp import GRIDS

    bad = [p for p in probes if p not in PROBES]
    if bad or not probes:
        raise BadInput(f"--probe {', '.join(bad) or '(none)'}: choose one or more of {', '.join(PROBES)}")
    if grid not in GRIDS:
        raise BadInput(f"--grid must be one of {', '.join(GRIDS)} (heareval's grids, for the mlp probe), got {grid!r}")
    if device:  # the package's one device check (exit 2), before any embedding is computed
        from hear_maeast.device import resolve_device

        resolve_device(device, "--device")
    model_options = model_options or {}
    tasks = select_tasks(Path(tasks_dir), only)
    name = plain_name(name or model_name(module, model_path, model_options), "--name", BadInput)
    emb_run = Path(out) / name
    configs = {p: {"name": f"{name}-{p}", **model_config(module, model_path, model_options, p), "seed": seed,
                   "grid": grid, "embeddings": str(emb_run.resolve())} for p in probes}
    for probe in probes:  # refused before any embedding is computed
        refused(Path(out) / configs[probe]["name"], configs[probe], replace_stale)
    for folder in (emb_run, *(Path(out) / c["name"] for c in configs.values())):
        if folder.is_dir():  # one run at a time on the embeddings it reads and the folders it writes (open_run
            hold_lock(folder)  # locks those it creates); nothing is created before the model loads
    ensure_embeddings(tasks, emb_run, module, model_path, model_options, grid, replace_stale)
    cpu_threads()
    failed, folders = [], []
    for probe in probes:
        folders.append(Path(out) / configs[probe]["name"])
        failed += _probe_tasks(probe, tasks, emb_run, folders[-1], configs[probe], replace_stale, device)
    if failed:
        names = ", ".join(f"{t} ({p})" for p, t, _ in failed)
        first = failed[0][2]
        if len(failed) == 1:
            raise type(first)(f"{failed[0][0]} probe: {first}")
        raise type(first)(f"{len(failed)} probe runs failed ({names}); the first: {first}")
    return folders
