"""Run folders: the one home of RESULTS/<name>/ as `hear-maeast eval` (heareval's probe, eval/runner.py) and
`hear-maeast finetune` (eval/finetune.py) write it and `hear-maeast table` reads it (through eval/results.py).

The layout and run.json's keys are eval/layout.py's; run.json is written with `write_json`, read by `read_run`.

The rules, one each:
- Identity (`IDENTITY`): a run folder belongs to one protocol and one model: module, options and the sha256 of the
  weights file (`weights_file`: --model, or the bundled default weights). `open_run` resumes a folder of the same
  identity; one of another identity is stale (e.g. the weights were re-trained, or the package's default weights
  changed): refused with the reason, or deleted first with `replace_stale` (`--replace-stale`). A folder of the other
  protocol is always refused, never deleted.
- Task content (`same_task`): a task's kept results are of this very task while the copies in its results folder
  equal the task folder's metadata, vocabulary and split files, byte for byte (heareval makes these copies when it
  embeds; `copy_task_files` makes them for fine-tuning). A task rebuilt under the same name is done again.
- Task selection (`select_tasks`): every task of a tasks root, or those named by --task, checked before any work.
- Names (`model_name`): a model's results folder is named by module, checkpoint stem and options.
- Ownership (`open_run`): a folder holding files but no run.json is not ours and is never adopted; a run folder is
  locked (`.lock`, pretrain's flock) by the process running in it.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
from pathlib import Path
from typing import Callable

from eval.layout import RUN, ResultsError
from eval.probes import PROBES
from eval.taskdir import LABEL_VOCABULARY, METADATA, TaskError, check_task, find_tasks, task_splits
from hear_maeast.errors import BadInput
from hear_maeast.files import LOCK_FILE, FolderLock, atomic_write

DEFAULT_MODULE = "hear_maeast"
PROBE, FINETUNE = "probe", "finetune"
# The keys that say which model (and options) a run scored; the first is the weights' sha256.
IDENTITY = {PROBE: ("weights_sha256", "module", "model_options"), FINETUNE: ("model_sha256", "options")}
WHAT = {PROBE: "probe results (heareval's) of `hear-maeast eval`", FINETUNE: "fine-tuning results of `hear-maeast finetune`"}
# `hear-maeast probe` (eval/probes): RESULTS/<model>-<probe>/, keyed to the model as eval's folder is
for _probe in PROBES:
    IDENTITY[_probe] = IDENTITY[PROBE]
    WHAT[_probe] = f"`hear-maeast probe --probe {_probe}` results"


# ---------------------------------------------------------------------------------------------- run.json
def progress(command: str) -> Callable[[str], None]:
    """The progress lines of `hear-maeast COMMAND` on stdout, each flushed and marked `[hear-maeast COMMAND]`."""
    return lambda msg: print(f"[hear-maeast {command}] {msg}", flush=True)


def write_json(path: Path, obj) -> None:
    """`obj` as indented JSON, written atomically (a killed run never leaves half a file)."""
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2)))


def read_run(model_dir: Path) -> dict | None:
    """RESULTS/<model>/run.json, or None when the folder has none; ResultsError when it cannot be read."""
    path = Path(model_dir) / RUN
    if not path.is_file():
        return None
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ResultsError(f"{path} cannot be read ({type(e).__name__}: {e}); delete {model_dir} and evaluate the "
                           f"model again") from e
    tasks = run.get("tasks", {}) if isinstance(run, dict) else None
    if not (isinstance(tasks, dict) and all(isinstance(v, dict) for v in tasks.values())):
        what = "a JSON object" if not isinstance(run, dict) else "`tasks` as an object of {task: record}"
        raise ResultsError(f"{path} must hold {what}; delete {model_dir} and evaluate the model again")
    return run


def protocol(run: dict) -> str:
    """PROBE or FINETUNE: the protocol a run.json records (folders of `eval` record none)."""
    return run.get("protocol", PROBE)


def stale_reason(run_dir: Path, previous: dict, config: dict) -> str | None:
    """None when `previous` (a run.json) is of the same model as `config`; else why not, and what to do."""
    keys = IDENTITY[protocol(config)]
    if all(previous.get(k) == config.get(k) for k in keys):
        return None
    sha = keys[0]
    if sha not in previous:
        why = "they were written by an earlier hear-maeast that did not record which weights they scored"
    elif previous.get(sha) != config.get(sha):
        old, new = str(previous.get(sha))[:12], str(config.get(sha))[:12]
        why = f"they are of other weights (sha256 {old}..., now {new}... for {config.get('weights_file')})"
    else:
        key = next(k for k in keys if previous.get(k) != config.get(k))
        why = f"they are of another model ({key}: {previous.get(key)!r}, now {config.get(key)!r})"
    return (f"{run_dir} holds results that are not this model's: {why}. Pass --replace-stale to delete them and "
            f"score this model there, or give this run its own folder with --name or --out")


def check_previous(run_dir: Path, previous: dict | None, config: dict, replace_stale: bool) -> bool:
    """The rule for a run folder's earlier run.json `previous` (None: a new folder): False when `run_dir` may be
    resumed for `config`, True when it holds another model's results and `replace_stale` lets them be replaced;
    BadInput when they may not be (`stale_reason`), or when it holds the other protocol's results."""
    if previous is None:
        return False
    if protocol(previous) != protocol(config):
        raise BadInput(f"{run_dir} holds {WHAT[protocol(previous)]}; give this run its own folder with --name or "
                       f"another --out")
    why = stale_reason(run_dir, previous, config)
    if why and not replace_stale:
        raise BadInput(why)
    return bool(why)


def open_run(run_dir: Path, config: dict, replace_stale: bool = False,
             log: Callable[[str], None] = print) -> dict:
    """Create or resume `run_dir` for the run `config` (its run.json, written here); returns the previous run's
    per-task records ({} when new).

    Refuses (BadInput) a folder that is not ours (files, no run.json), one another process holds (its lock), one of
    the other protocol, and a stale one (`stale_reason`) unless `replace_stale`, which empties it first (it holds our
    run.json, so it is ours to delete)."""
    run_dir = Path(run_dir)
    _refuse_foreign(run_dir)
    hold_lock(run_dir)
    previous = read_run(run_dir)
    if check_previous(run_dir, previous, config, replace_stale):
        log(f"deleting the results in {run_dir}: they are not this model's (--replace-stale)")
        for child in run_dir.iterdir():  # all but the lock this process holds
            if child.name != LOCK_FILE:
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        previous = None
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / RUN, config)
    return (previous or {}).get("tasks") or {}


def _refuse_foreign(run_dir: Path) -> None:
    """A folder that holds files but no run.json was not made by `eval` or `finetune`: never adopted (its files
    would be overwritten)."""
    foreign = foreign_files(run_dir)
    if foreign:
        raise BadInput(f"{run_dir} holds files ({', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}) but no "
                       f"{RUN}: it is not a results folder of hear-maeast and is left untouched; choose another --name "
                       "or --out")


def foreign_files(run_dir: Path) -> list[str]:
    """The files of a folder that has no run.json (besides a lock): not written by `eval`, `finetune` or `probe`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or (run_dir / RUN).is_file():
        return []
    return sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_FILE)


_HELD: dict[Path, FolderLock] = {}  # run folders this process holds, until it exits (the kernel then releases them)


def hold_lock(run_dir: Path) -> None:
    """pretrain's lock (hear_maeast.files.FolderLock) on the run folder, for the rest of this process: a second
    `eval`, `finetune` or `probe` on the same folder stops with the holder's pid instead of interleaving writes
    (`probe` holds its model's embeddings folder too, so no run replaces the embeddings it reads)."""
    key = run_dir.resolve()
    if key not in _HELD:
        _HELD[key] = FolderLock(run_dir, "--out").acquire()


# ---------------------------------------------------------------------------------------------- the model
def weights_file(module: str, model_path: str = "") -> Path | None:
    """The weights file a run scores: --model, or this package's bundled default weights; None for another module
    without --model (whatever it loads is its own business, so only its name and options key the run)."""
    if model_path:
        return Path(model_path)
    if module == DEFAULT_MODULE:
        from hear_maeast.api import DEFAULT_WEIGHTS

        return Path(DEFAULT_WEIGHTS)
    return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", text).strip("-")


def model_name(module: str, model_path: str = "", model_options: dict | None = None) -> str:
    """Folder name of a model's results: module, checkpoint stem (or `default`), options."""
    parts = [module, Path(model_path).stem if model_path else "default"]
    parts += [f"{k}={v}" for k, v in sorted((model_options or {}).items())]
    return _slug("-".join(parts))


def package_version(module: str) -> str | None:
    try:
        top = importlib.import_module(module.split(".")[0])
        return getattr(top, "__version__", None)
    except Exception:  # noqa: BLE001 - the version is informative only
        return None


# ---------------------------------------------------------------------------------------------- tasks
def select_tasks(tasks_dir: Path, only: tuple[str, ...] = (), sample_rate: int | None = None) -> list[Path]:
    """The task folders to run (all of `tasks_dir`, or those named by --task), each checked against the layout (and
    for audio at `sample_rate`) before any work. BadInput for an unknown --task name, TaskError for a bad folder."""
    tasks = find_tasks(Path(tasks_dir))
    missing = set(only) - {t.name for t in tasks}
    if missing:
        raise BadInput(f"--task {sorted(missing)}: no such task folder in {tasks_dir}; "
                       f"it has {[t.name for t in tasks]}")
    tasks = [t for t in tasks if not only or t.name in only]
    for task in tasks:
        check_task(task, sample_rate)
    return tasks


def task_files(task_dir: Path) -> list[str]:
    """The files that define a task's content: its metadata, label vocabulary and split JSONs."""
    return [METADATA, LABEL_VOCABULARY, *(f"{s}.json" for s in task_splits(check_task(task_dir)))]


def same_task(task_dir: Path, task_out: Path) -> bool:
    """The copies in `task_out` equal the task's metadata, vocabulary and split files, byte for byte: results kept
    there are of this very task (a task rebuilt under the same name is done again)."""
    try:
        names = task_files(task_dir)
    except TaskError:
        return False
    return all((task_out / n).is_file() and (task_out / n).read_bytes() == (task_dir / n).read_bytes() for n in names)


def copy_task_files(task_dir: Path, task_out: Path) -> None:
    """Copy the task's content files into its results folder (as heareval does when it embeds), for `same_task`."""
    task_out.mkdir(parents=True, exist_ok=True)
    for name in task_files(task_dir):
        data = (Path(task_dir) / name).read_bytes()
        atomic_write(task_out / name, lambda tmp, data=data: Path(tmp).write_bytes(data))
