"""Leaderboard tables from `hear-maeast eval` results folders (scores read by eval.results, the one reader).

Rows: one per model; then the reference rows (HEAR 2021 best, MSM-MAE paper) for the official HEAR 2021 tasks
only; then `clips` (train/valid/test sizes, or the total and number of folds) and `chance` (the score of
predictions that ignore the audio, eval.taskdir.chance_level) for every task, and for accuracy tasks `majority`
(always answering the training clips' most frequent label, eval.taskdir.majority_level: a skewed task's real
floor). A task whose folder exists but has no scores (failed.json, or stopped half-way) is `failed`, never an
empty cell; one that a protocol does not apply to (an event task in a fine-tuning run) is `n/a`. Fine-tuned rows
(`hear-maeast finetune`) are named `<model>-finetuned`, sit right after their model's probe row, and a note under
the Markdown table says so.

`--against MODEL` adds a second table: every other model compared with MODEL clip by clip on the same test
clips, with the exact McNemar test (eval.paired), for the tasks too small for their means to rank models.

Which tasks are official: `table` sees only results folders, so a task counts as the official one when its folder
name is one of the 19 AND its clip count, summed over the split JSONs heareval copied into the results when it
embedded the task, is within 1 % of the official task's (hearbenchmark.com/hear-tasks, "# clips"). A task built
from a subset and named like an official one (the 85-clip Speech Commands subset as `...-full`) gets no
reference row.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from eval.probes import PROBES
from eval.results import FINETUNED_SUFFIX, ModelResults, Score, read_models, read_task_facts
from eval.taskdir import TaskFacts
from hear_maeast.files import atomic_write

# The 19 tasks of the HEAR 2021 leaderboard, by task folder name: (clips in the official task, from
# hearbenchmark.com/hear-tasks; best score on the leaderboard, hearbenchmark.com docs/leaderboard.csv).
HEAR_2021 = {
    "dcase2016_task2-hear2021-full": (72, 0.925),
    "nsynth_pitch-v2.2.3-5h": (5000, 0.878),
    "nsynth_pitch-v2.2.3-50h": (49060, 0.900),
    "speech_commands-v0.0.2-5h": (22890, 0.976),
    "speech_commands-v0.0.2-full": (100503, 0.978),
    "beehive_states_fold0-v2-full": (576, 0.878),
    "beijing_opera-v1.0-hear2021-full": (236, 0.975),
    "tfds_crema_d-1.0.0-full": (7438, 0.752),
    "esc50-v2.0.0-full": (2000, 0.948),
    "fsd50k-v1.0-full": (51185, 0.641),
    "gunshot_triangulation-v1.0-full": (88, 0.967),
    "tfds_gtzan-1.0.0-full": (1000, 0.883),
    "tfds_gtzan_music_speech-1.0.0-full": (128, 0.992),
    "libricount-v1.0.0-hear2021-full": (5720, 0.785),
    "maestro-v3.0.0-5h": (185, 0.469),
    "mridangam_stroke-v1.5-full": (6977, 0.975),
    "mridangam_tonic-v1.5-full": (6977, 0.942),
    "vocal_imitation-v1.1.3-full": (5601, 0.215),
    "vox_lingua_top10-hear2021-full": (972, 0.720),
}
OFFICIAL_CLIPS = {task: clips for task, (clips, _) in HEAR_2021.items()}
CLIPS_TOLERANCE = 0.01  # relative: the published counts are the tasks' as hear-preprocess wrote them
HEAR_2021_BEST = {task: best for task, (_, best) in HEAR_2021.items()}
# The MSM-MAE paper's own HEAR scores known here (abstract): CREMA-D 73.4 %, LibriCount 85.8 %.
MSM_MAE_PAPER = {
    "tfds_crema_d-1.0.0-full": 0.734,
    "libricount-v1.0.0-hear2021-full": 0.858,
}
REFERENCES = {"HEAR 2021 best": HEAR_2021_BEST, "MSM-MAE paper": MSM_MAE_PAPER}
FINETUNED_NOTE = ("Rows ending in `-finetuned`: the encoder fine-tuned on each task (`hear-maeast finetune`); "
                  "the other rows: heareval's probe on frozen embeddings (`hear-maeast eval`). "
                  "n/a: not fine-tuned (event task).")
PROBE_SUFFIXES = tuple(f"-{p}" for p in PROBES)
ROW_SUFFIXES = (*PROBE_SUFFIXES, FINETUNED_SUFFIX)
PROBES_NOTE = ("Rows ending in `-linear`, `-knn`, `-mlp`: `hear-maeast probe` on the same frozen embeddings (EVAR's "
               "linear probe, X-ARES's kNN, heareval's MLP protocol in plain PyTorch); n/a: kNN on a multi-label or "
               "event task. The rows without a suffix are heareval's own MLP probe, the scorer of record.")
UNKNOWN, UNDEFINED = "?", "-"  # task facts not recorded (no copy of the task in the results) / no chance level


def is_official(task: str, facts: TaskFacts | None) -> bool:
    """The task folder is one of the 19 HEAR 2021 tasks with the official task's clip count (see the docstring)."""
    official = OFFICIAL_CLIPS.get(task)
    return official is not None and facts is not None and abs(facts.total - official) <= CLIPS_TOLERANCE * official


def reference_rows(tasks: list[str], facts: dict[str, TaskFacts | None]) -> dict[str, dict[str, Score]]:
    """{reference name: {task: Score}} for the official tasks among `tasks`; references with none are left out."""
    rows = {}
    for ref_name, ref in REFERENCES.items():
        row = {t: Score(ref[t]) for t in tasks if t in ref and is_official(t, facts[t])}
        if row:
            rows[ref_name] = row
    return rows


def collect(paths: list[Path]) -> tuple[list[str], list[ModelResults], dict[str, TaskFacts | None]]:
    """(task columns, one ModelResults per model folder, the facts of each task) from RESULTS or model folders."""
    models = beside_probes(read_models(paths))
    tasks = sorted({t for m in models for t in m.scores})
    return tasks, models, read_task_facts(models, tasks)


def row_suffix(name: str) -> str:
    """`-linear`, `-knn`, `-mlp` (a `hear-maeast probe` row), `-finetuned`, or "" (heareval's probe, `eval`)."""
    return next((s for s in ROW_SUFFIXES if name.endswith(s)), "")


def beside_probes(models: list[ModelResults]) -> list[ModelResults]:
    """The same models, each `<model>-<probe>` and `<model>-finetuned` row moved right after its model's row (when
    there is one), in ROW_SUFFIXES order."""
    names = {m.name for m in models}
    placed = {m.name for m in models if row_suffix(m.name) and m.name[: -len(row_suffix(m.name))] in names}
    by_name = {m.name: m for m in models}
    order = []
    for m in (m for m in models if m.name not in placed):
        order += [m] + [by_name[m.name + s] for s in ROW_SUFFIXES if m.name + s in placed]
    return order


def table_rows(tasks: list[str], models: list[ModelResults], facts: dict[str, TaskFacts | None]) -> list[list[str]]:
    """Header, one row per model, the reference rows, then each task's `clips`, `chance` and `majority`."""
    out = [["model", *tasks]]
    for m in models:
        out.append([m.name, *(str(m.scores[t]) if t in m.scores else "" for t in tasks)])
    for ref_name, row in reference_rows(tasks, facts).items():
        out.append([ref_name, *(str(row[t]) if t in row else "" for t in tasks)])
    out.append(["clips", *(facts[t].size() if facts[t] else UNKNOWN for t in tasks)])
    for row in ("chance", "majority"):
        out.append([row, *(UNKNOWN if not facts[t] else UNDEFINED if getattr(facts[t], row) is None
                           else f"{getattr(facts[t], row):.3f}" for t in tasks)])
    return out


def md_cell(text: str) -> str:
    """One Markdown table cell of any text: a name holding `|` or a newline (from --name, run.json, a folder) stays
    in its cell instead of forging columns or rows."""
    return " ".join(str(text).replace("\\", "\\\\").replace("|", "\\|").split())


def to_markdown(table: list[list[str]]) -> str:
    header, *body = [[md_cell(cell) for cell in row] for row in table]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def to_csv(table: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(table)
    return buf.getvalue()


def plot(tasks: list[str], models: list[ModelResults], facts: dict[str, TaskFacts | None], path: Path) -> None:
    """Grouped bar chart: one group per task, one bar per model (and reference); failed tasks drawn as 0 and marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    series = {m.name: {t: m.scores.get(t) for t in tasks} for m in models}
    for ref_name, row in reference_rows(tasks, facts).items():
        series[ref_name] = {t: row.get(t) for t in tasks}
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
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def _write_text(path: Path, text: str) -> None:
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def paired_markdown(tasks: list[str], models: list[ModelResults], facts: dict[str, TaskFacts | None],
                    against: str) -> str:
    """The paired table: heareval's rows against `against`, and each probe's rows (`-linear` ...) against
    `against`'s row of the same probe (`<against>-linear` ...) when there is one. A model with probe rows but no
    heareval predictions (only `hear-maeast probe` was run) gets its probe rows paired alone."""
    from eval.paired import paired_note, paired_rows  # reads heareval's predictions: brings torch
    from hear_maeast.errors import BadInput

    names = {m.name for m in models}
    groups = [([m for m in models if row_suffix(m.name) not in PROBE_SUFFIXES], against)]
    for suffix in PROBE_SUFFIXES:
        group = [m for m in models if row_suffix(m.name) == suffix]
        if against + suffix in names and len(group) > 1:
            groups.append((group, against + suffix))
    table: list[list[str]] = []
    for i, (group, reference) in enumerate(groups):
        try:
            rows = paired_rows(tasks, group, facts, reference)
        except BadInput:
            if i == 0 and len(groups) > 1:  # no heareval predictions to pair with: the probes' rows only
                continue
            raise
        table += rows if not table else rows[1:]
    note = paired_note(md_cell(against))
    if len(groups) > 1:
        probes = ", ".join(f"`{md_cell(reference)}`" for _, reference in groups[1:])
        note += (f" Rows of a probe (`-linear`, `-knn`, `-mlp`) are paired with that probe's row of "
                 f"{md_cell(against)} ({probes}) instead.")
    return to_markdown(table) + "\n" + note + "\n"


def write_table(paths: list[Path], markdown: Path | None = None, csv_path: Path | None = None,
                png: Path | None = None, against: str | None = None) -> str:
    """Collect scores, write the requested files, and return the Markdown table; with `against` (a model name),
    the paired clip-by-clip comparison of every other model with it follows (eval.paired)."""
    tasks, models, facts = collect(paths)
    table = table_rows(tasks, models, facts)
    md = to_markdown(table)
    if any(m.name.endswith(FINETUNED_SUFFIX) for m in models):
        md += "\n" + FINETUNED_NOTE + "\n"
    if any(row_suffix(m.name) in PROBE_SUFFIXES for m in models):
        md += "\n" + PROBES_NOTE + "\n"
    if against:
        md += "\n" + paired_markdown(tasks, models, facts, against)
    if markdown:
        _write_text(markdown, md)
    if csv_path:
        _write_text(csv_path, to_csv(table))
    if png:
        plot(tasks, models, facts, Path(png))
    return md
