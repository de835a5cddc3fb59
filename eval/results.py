"""Reading a results folder: the one reader of scores, shared by `hear-maeast eval` and `hear-maeast table`.

The layout it reads is eval/layout.py's (the versions before this one wrote it too; run.json is absent in
hand-made folders).

The leaderboard number is `["test"]["test_score"]` for train/valid/test tasks, `["aggregated_scores"]
["test_score_mean"]` (with `test_score_std`) for k-fold tasks, and the one fold's `test_score` when a k-fold
result has a single fold (heareval writes no aggregate then). A task folder without a score file is `failed`;
a score file that cannot be read (half-written, edited) is a ResultsError naming it, and so is a score file beside
a failed.json or a not-applicable.json (one of them is left from another run: the cell would be a guess).

Which model a row scored (`Identity`) is read from its run.json's eval.runs.IDENTITY keys: `table` places rows
beside each other as one model's only when those agree (eval/table.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from eval.layout import EMBEDDED, EMBEDDINGS_DONE, FAILED, FAILED_JSON, NA, NOT_APPLICABLE, RUN, SCORES, ResultsError
from eval.runs import FINETUNE, IDENTITY, protocol, read_run
from eval.protocol import TaskFacts, task_facts
from eval.taskdir import METADATA, TaskError, sample_rates
from hear_maeast.errors import BadInput



@dataclass(frozen=True)
class Score:
    mean: float | None  # None: failed
    std: float | None = None  # over folds, for k-fold tasks
    na: bool = False  # the protocol does not apply to this task (no score, not a failure)

    def __str__(self) -> str:
        if self.mean is None:
            return NA if self.na else FAILED
        if self.std is None or math.isnan(self.std):
            return f"{self.mean:.3f}"
        return f"{self.mean:.3f}±{self.std:.3f}"


def _unreadable(path: Path, why: str) -> ResultsError:
    return ResultsError(f"{path} cannot be read ({why}); it was probably written half-way: delete it and run the "
                        f"same `hear-maeast eval` command again, which scores that task again")


# heareval's score functions whose values lie in [0, 1]; the others (d_prime, segment_1s_er) are only finite
BOUNDED_METRICS = {"top1_acc", "pitch_acc", "chroma_acc", "mAP", "event_onset_200ms_fms", "event_onset_50ms_fms",
                   "event_onset_offset_50ms_20perc_fms"}


def _number(path: Path, value, what: str = "test score", bounded: bool = True) -> float:
    """A score read from `path`: a finite number, in [0, 1] when its metric is `bounded` (every HEAR primary metric
    is); a NaN, an Inf, a negative or an absurd value (a hand edit, a broken run) is refused, never shown or kept."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _unreadable(path, f"expected a number, got {value!r}")
    if not (math.isfinite(value) and (not bounded or 0.0 <= value <= 1.0)):
        expected = "a score in [0, 1]" if bounded else "a finite score"
        raise ResultsError(f"{path} holds {what} {value!r}, not {expected}: it was edited or damaged; delete it and "
                           "run the same `hear-maeast eval` command again, which scores that task again")
    return float(value)


def _primary_bounded(task_out: Path) -> bool:
    """Whether the task's primary metric (first of `evaluation` in the metadata copied beside the scores) lies in
    [0, 1]; True when the metadata is not there or names no metric."""
    try:
        evaluation = json.loads((Path(task_out) / METADATA).read_text(encoding="utf-8")).get("evaluation") or []
    except (OSError, ValueError, AttributeError):
        return True
    return not evaluation or evaluation[0] in BOUNDED_METRICS


def parse_scores(path: Path, scores, bounded: bool = True) -> Score:
    """The leaderboard number of heareval's `test.predicted-scores.json` contents (see the module docstring)."""
    if not isinstance(scores, dict):
        raise _unreadable(path, "not a JSON object")
    if isinstance(scores.get("aggregated_scores"), dict):  # k-fold: mean and std over folds
        agg = scores["aggregated_scores"]
        return Score(_number(path, agg.get("test_score_mean"), bounded=bounded),
                     _number(path, agg.get("test_score_std"), "test_score_std", bounded=bounded))
    folds = [v for v in scores.values() if isinstance(v, dict) and "test_score" in v]  # "test" or one fold
    if len(folds) == 1:
        return Score(_number(path, folds[0]["test_score"], bounded=bounded))
    raise _unreadable(path, f"no test score in it (keys: {sorted(scores)})")


def read_score(task_out: Path) -> Score:
    """The leaderboard number of one task's results folder; Score(None) (`failed`) when it has no score file. A score
    file beside a failed.json or a not-applicable.json is refused: the folder says two things."""
    path = Path(task_out) / SCORES
    if not path.is_file():
        return Score(None, na=(Path(task_out) / NOT_APPLICABLE).is_file())
    beside = [f for f in (FAILED_JSON, NOT_APPLICABLE) if (Path(task_out) / f).exists()]
    if beside:
        raise ResultsError(f"{task_out} holds both {SCORES} and {beside[0]}: one of them is left from another run; "
                           f"delete {task_out} and run the command that wrote it again (`hear-maeast eval`, `probe` "
                           "or `finetune`), which does that task again")
    try:
        scores = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise _unreadable(path, f"{type(e).__name__}: {e}") from e
    return parse_scores(path, scores, _primary_bounded(task_out))


def is_task_result(path: Path) -> bool:
    """A task's results folder, finished or not; a task folder itself (it holds <rate>/ audio) is not one."""
    if any((path / f).exists() for f in (SCORES, FAILED_JSON, EMBEDDINGS_DONE, NOT_APPLICABLE)):
        return True
    return (path / METADATA).is_file() and not sample_rates(path)  # heareval stopped while embedding


def is_model_dir(path: Path) -> bool:
    return (path / RUN).is_file() or any(is_task_result(c) for c in path.iterdir() if c.is_dir())


def model_dirs(path: Path) -> list[Path]:
    """Model folders in `path`: itself when it is one (RESULTS/<model>), else its subfolders (RESULTS)."""
    path = Path(path)
    if not path.is_dir():
        raise BadInput(f"{path} is not a folder of results (expected RESULTS/<model>/<task>/{SCORES})")
    if is_model_dir(path):
        return [path]
    found = sorted(c for c in path.iterdir() if c.is_dir() and is_model_dir(c))
    if not found:
        raise BadInput(f"no model results in {path} (expected {path}/<model>/<task>/{SCORES}); give the --out "
                       f"folder of `hear-maeast eval`, or one model folder in it (a tasks folder is eval's input)")
    return found


@dataclass(frozen=True)
class Identity:
    """Which model a row scored, from its run.json (eval.runs.IDENTITY): the weights' sha256 (None: a module without
    a weights file), the module, and load_model's options as sorted JSON (None for a fine-tuned row: its options
    are fine-tuning's, so only its weights and module say which model it started from)."""

    weights_sha256: str | None
    module: str | None
    model_options: str | None

    def same_model(self, other: Identity) -> bool:
        options = None in (self.model_options, other.model_options) or self.model_options == other.model_options
        return (self.weights_sha256, self.module) == (other.weights_sha256, other.module) and options


def _text(value) -> str | None:
    return value if value is None or isinstance(value, str) else json.dumps(value, sort_keys=True)


def run_identity(run: dict) -> Identity | None:
    """The Identity a run.json records; None when it records none (no run.json, a hand-made one, a version of
    hear-maeast that did not record the weights)."""
    keys = IDENTITY.get(protocol(run)) if isinstance(protocol(run), str) else None
    if not run or keys is None or any(k not in run for k in keys):
        return None
    options = None if protocol(run) == FINETUNE else json.dumps(run["model_options"], sort_keys=True)
    return Identity(_text(run[keys[0]]), _text(run.get("module")), options)


@dataclass
class ModelResults:
    """One model's row: its name (as shown; `run_name`: as its run.json or folder names it), the score of every
    task folder it has, and which model it scored (None: not recorded)."""

    name: str
    folder: Path
    scores: dict[str, Score] = field(default_factory=dict)
    identity: Identity | None = None
    run_name: str = ""

    def __post_init__(self):
        self.run_name = self.run_name or self.name


def read_model(model_dir: Path) -> ModelResults:
    """One model folder's row. A task `hear-maeast probe` only embedded (its run.json record says EMBEDDED, and it
    holds no score or failure) has no cell: heareval never ran on it, so it is neither a score nor `failed`."""
    run = read_run(model_dir) or {}
    name = run.get("name") if isinstance(run.get("name"), str) else Path(model_dir).name
    records = run.get("tasks", {})
    only_embedded = lambda t: (records.get(t.name, {}).get("status") == EMBEDDED  # noqa: E731
                               and not any((t / f).exists() for f in (SCORES, FAILED_JSON)))
    tasks = sorted(t for t in Path(model_dir).iterdir() if t.is_dir() and is_task_result(t) and not only_embedded(t))
    return ModelResults(name, Path(model_dir), {t.name: read_score(t) for t in tasks}, run_identity(run))


def read_models(paths: list[Path]) -> list[ModelResults]:
    """Every model folder under `paths`, each once. Two folders holding the same model name are both kept, each
    labelled `<name> (<folder>)`, so that no row replaces another."""
    folders: dict[Path, Path] = {}
    for p in paths:
        for mdir in model_dirs(Path(p)):
            folders.setdefault(mdir.resolve(), mdir)  # the same folder given twice is read once
    models = [m for m in map(read_model, folders.values()) if m.scores]  # a folder of embeddings only: no row
    if folders and not models:
        raise BadInput(f"{', '.join(map(str, paths))}: its model folders hold embeddings but no scores yet; score them "
                       "with `hear-maeast eval` or `hear-maeast probe` first")
    names = [m.name for m in models]
    for m in models:
        if names.count(m.name) > 1:
            m.name = f"{m.name} ({m.folder})"
    return models


def read_task_facts(models: list[ModelResults], tasks: list[str]) -> dict[str, TaskFacts | None]:
    """Size and chance level of each task, from the copies of its files heareval made in the results when it
    embedded the task (None when no results folder of that task holds them). Refuses a task whose results were
    computed on different data for different models: their scores would not be comparable."""
    facts: dict[str, TaskFacts | None] = {}
    for task in tasks:
        seen: dict[Path, TaskFacts] = {}
        for m in models:
            if task in m.scores and (m.folder / task / METADATA).is_file():
                try:
                    seen[m.folder / task] = task_facts(m.folder / task)
                except TaskError as e:
                    raise ResultsError(f"{e} (in a results folder: delete {m.folder / task} and evaluate again)") from e
        if len({tuple(f.clips.items()) for f in seen.values()}) > 1:
            sizes = ", ".join(f"{folder}: {f.size()}" for folder, f in seen.items())
            raise ResultsError(f"task {task} was scored on different data in different results folders ({sizes}); "
                               f"compare models evaluated on the same task folder")
        facts[task] = next(iter(seen.values()), None)
    return facts
