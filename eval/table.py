"""Leaderboard tables from heareval's `test.predicted-scores.json` files.

The number per task is the one the HEAR leaderboard uses: `["test"]["test_score"]` for train/valid/test tasks,
`["aggregated_scores"]["test_score_mean"]` (with `test_score_std`) for k-fold tasks. Rows: one per model, then
the reference rows for the tasks that are among the 19 of HEAR 2021. A task whose folder exists but has no
scores (failed.json, or stopped half-way) is `failed`, never an empty cell; one that a protocol does not apply to
(an event task in a fine-tuning run: not-applicable.json) is `n/a`. Fine-tuned rows (`hear-maeast finetune`) are
named `<model>-finetuned`, sit right after their model's probe row, and a note under the Markdown table says so.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

SCORES = "test.predicted-scores.json"
FAILED = "failed"
NOT_APPLICABLE = "not-applicable.json"  # written by `hear-maeast finetune` for an event task
NA = "n/a"
FINETUNED_SUFFIX = "-finetuned"
FINETUNED_NOTE = ("Rows ending in `-finetuned`: the encoder fine-tuned on each task (`hear-maeast finetune`); "
                  "the other rows: heareval's probe on frozen embeddings (`hear-maeast eval`). "
                  "n/a: not fine-tuned (event task).")

# Best score on the HEAR leaderboard (hearbenchmark.com docs/leaderboard.csv), by task folder name.
HEAR_2021_BEST = {
    "dcase2016_task2-hear2021-full": 0.925,
    "nsynth_pitch-v2.2.3-5h": 0.878,
    "nsynth_pitch-v2.2.3-50h": 0.900,
    "speech_commands-v0.0.2-5h": 0.976,
    "speech_commands-v0.0.2-full": 0.978,
    "beehive_states_fold0-v2-full": 0.878,
    "beijing_opera-v1.0-hear2021-full": 0.975,
    "tfds_crema_d-1.0.0-full": 0.752,
    "esc50-v2.0.0-full": 0.948,
    "fsd50k-v1.0-full": 0.641,
    "gunshot_triangulation-v1.0-full": 0.967,
    "tfds_gtzan-1.0.0-full": 0.883,
    "tfds_gtzan_music_speech-1.0.0-full": 0.992,
    "libricount-v1.0.0-hear2021-full": 0.785,
    "maestro-v3.0.0-5h": 0.469,
    "mridangam_stroke-v1.5-full": 0.975,
    "mridangam_tonic-v1.5-full": 0.942,
    "vocal_imitation-v1.1.3-full": 0.215,
    "vox_lingua_top10-hear2021-full": 0.720,
}
# The MSM-MAE paper's own HEAR scores known here (abstract): CREMA-D 73.4 %, LibriCount 85.8 %.
MSM_MAE_PAPER = {
    "tfds_crema_d-1.0.0-full": 0.734,
    "libricount-v1.0.0-hear2021-full": 0.858,
}
REFERENCES = {"HEAR 2021 best": HEAR_2021_BEST, "MSM-MAE paper": MSM_MAE_PAPER}


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


def read_score(task_dir: Path) -> Score:
    """The leaderboard number of one task result folder (heareval's embeddings folder for the task)."""
    path = Path(task_dir) / SCORES
    if not path.is_file():
        return Score(None, na=(Path(task_dir) / NOT_APPLICABLE).is_file())
    scores = json.loads(path.read_text())
    if "aggregated_scores" in scores:  # k-fold: mean and std over folds
        agg = scores["aggregated_scores"]
        return Score(float(agg["test_score_mean"]), float(agg["test_score_std"]))
    if "test" in scores:
        return Score(float(scores["test"]["test_score"]))
    folds = [v for v in scores.values() if isinstance(v, dict) and "test_score" in v]
    if len(folds) == 1:  # a k-fold task with a single fold has no aggregate
        return Score(float(folds[0]["test_score"]))
    raise ValueError(f"{path}: no test score found (keys: {sorted(scores)})")


def _is_task_result(path: Path) -> bool:
    markers = (SCORES, "failed.json", "task_metadata.json", ".done.embeddings", NOT_APPLICABLE)
    return any((path / f).exists() for f in markers)


def _is_model_dir(path: Path) -> bool:
    return (path / "run.json").is_file() or any(_is_task_result(c) for c in path.iterdir() if c.is_dir())


def model_dirs(path: Path) -> list[Path]:
    """Model folders in `path`: itself when it is one (RESULTS/<model>), else its subfolders (RESULTS)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder of results (expected RESULTS/<model>/<task>/{SCORES})")
    if _is_model_dir(path):
        return [path]
    found = sorted(c for c in path.iterdir() if c.is_dir() and _is_model_dir(c))
    if not found:
        raise FileNotFoundError(f"no model results in {path} (expected {path}/<model>/<task>/{SCORES})")
    return found


def collect(paths: list[Path]) -> tuple[list[str], dict[str, dict[str, Score]]]:
    """(task columns, {model name: {task: Score}}) from RESULTS folders or single model folders."""
    rows: dict[str, dict[str, Score]] = {}
    tasks: set[str] = set()
    for p in paths:
        for mdir in model_dirs(Path(p)):
            name = mdir.name
            run_json = mdir / "run.json"
            if run_json.is_file():
                name = json.loads(run_json.read_text()).get("name", name)
            row = {t.name: read_score(t) for t in sorted(mdir.iterdir()) if t.is_dir() and _is_task_result(t)}
            rows[name] = row
            tasks.update(row)
    return sorted(tasks), beside_probes(rows)


def beside_probes(rows: dict) -> dict:
    """The same rows, each `<model>-finetuned` row moved right after its model's probe row (when there is one)."""
    placed = {n for n in rows if n.endswith(FINETUNED_SUFFIX) and n[: -len(FINETUNED_SUFFIX)] in rows}
    order = []
    for name in (n for n in rows if n not in placed):
        order += [name, name + FINETUNED_SUFFIX] if name + FINETUNED_SUFFIX in placed else [name]
    return {n: rows[n] for n in order}


def table_rows(tasks: list[str], rows: dict[str, dict[str, Score]]) -> list[list[str]]:
    """Header plus one row per model, then the reference rows that know at least one of the tasks."""
    out = [["model", *tasks]]
    for name, row in rows.items():
        out.append([name, *(str(row[t]) if t in row else "" for t in tasks)])
    for ref_name, ref in REFERENCES.items():
        if any(t in ref for t in tasks):
            out.append([ref_name, *(f"{ref[t]:.3f}" if t in ref else "" for t in tasks)])
    return out


def to_markdown(table: list[list[str]]) -> str:
    header, *body = table
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def to_csv(table: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(table)
    return buf.getvalue()


def plot(tasks: list[str], rows: dict[str, dict[str, Score]], path: Path) -> None:
    """Grouped bar chart: one group per task, one bar per model (and reference); failed tasks drawn as 0 and marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    series = {name: {t: row.get(t) for t in tasks} for name, row in rows.items()}
    for ref_name, ref in REFERENCES.items():
        if any(t in ref for t in tasks):
            series[ref_name] = {t: Score(ref[t]) if t in ref else None for t in tasks}
    width = 0.8 / max(1, len(series))
    x = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(tasks) + 2), 4.5))
    for i, (name, row) in enumerate(series.items()):
        means = [row[t].mean if row[t] is not None and row[t].mean is not None else 0.0 for t in tasks]
        stds = [row[t].std if row[t] is not None and row[t].std is not None else 0.0 for t in tasks]
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=name)
        for bar, t in zip(bars, tasks):
            if row[t] is not None and row[t].mean is None:
                ax.text(bar.get_x() + bar.get_width() / 2, 0.02, str(row[t]), rotation=90, ha="center", va="bottom",
                        fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(tasks, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test score (primary metric)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_table(paths: list[Path], markdown: Path | None = None, csv_path: Path | None = None,
                png: Path | None = None) -> str:
    """Collect scores, write the requested files, and return the Markdown table."""
    tasks, rows = collect(paths)
    table = table_rows(tasks, rows)
    md = to_markdown(table)
    if any(name.endswith(FINETUNED_SUFFIX) for name in rows):
        md += "\n" + FINETUNED_NOTE + "\n"
    if markdown:
        Path(markdown).write_text(md)
    if csv_path:
        Path(csv_path).write_text(to_csv(table))
    if png:
        plot(tasks, rows, Path(png))
    return md
