"""Leaderboard tables from `hear-maeast eval` results folders (scores read by eval.results, the one reader).

Rows: one per model; then the reference rows (best published, HEAR 2021 best, MSM-MAE paper) for the official HEAR
tasks only; then `clips` (train/valid/test sizes, or the total and number of folds) and `chance` (the score of
predictions that ignore the audio, eval.protocol.chance_level) for every task, and for accuracy tasks `majority`
(always answering the training clips' most frequent label, eval.protocol.majority_level: a skewed task's real
floor). A task whose folder exists but has no scores (failed.json, or stopped half-way) is `failed`, never an
empty cell; one that a protocol does not apply to (an event task in a fine-tuning run) is `n/a`.

One model's rows: `<model>` (heareval's probe, `eval`), `<model>-linear`, `-knn`, `-mlp` (`hear-maeast probe`) and
`<model>-finetuned` in one RESULTS folder sit together in that order (`model_blocks`), but only when their run.json
say they scored the same model (eval.results.Identity: weights sha256, module, options). Rows named as one model's
whose run.json disagree (a `probe --replace-stale` of other weights under the same --name) are labelled with what
differs (`[weights 1a2b3c4d5e6f]`) and listed apart, and a note says so. A probe row whose copies of a task's files
differ from its model's other rows' was scored on another version of the task: refused, with what to run.

`--against ROW` adds paired tables (eval.paired): every other row compared clip by clip on the same test clips, with
the exact McNemar test, for the tasks too small for their means to rank models. ROW is any row, or a model whose
rows are probe rows only; each table is headed by the row it pairs with (`vs <row>`): rows of a probe with that
probe's row of ROW's model, the others with ROW itself (`pairing`).

The reference rows, their sources and which tasks count as the official ones: eval/references.py.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from eval.probes import PROBES
from eval.references import best_note, reference_rows
from eval.layout import FINETUNED_SUFFIX, ResultsError
from eval.results import ModelResults, read_models, read_task_facts
from eval.protocol import TaskFacts
from eval.taskdir import LABEL_VOCABULARY, METADATA, TaskError, read_metadata, task_splits
from hear_maeast.errors import BadInput
from hear_maeast.files import atomic_write

FINETUNED_NOTE = ("Rows ending in `-finetuned`: the encoder fine-tuned on each task (`hear-maeast finetune`); "
                  "the other rows: heareval's probe on frozen embeddings (`hear-maeast eval`). "
                  "n/a: not fine-tuned (event task).")
PROBE_SUFFIXES = tuple(f"-{p}" for p in PROBES)
ROW_SUFFIXES = (*PROBE_SUFFIXES, FINETUNED_SUFFIX)
PROBES_NOTE = ("Rows ending in `-linear`, `-knn`, `-mlp`: `hear-maeast probe` on the same frozen embeddings (EVAR's "
               "linear probe, X-ARES's kNN, heareval's MLP protocol in plain PyTorch); n/a: kNN on a multi-label or "
               "event task. The rows without a suffix are heareval's own MLP probe, the scorer of record.")
UNKNOWN, UNDEFINED = "?", "-"  # task facts not recorded (no copy of the task in the results) / no chance level
NOT_RECORDED = "identity not recorded"  # the label of rows whose folder has no run.json (or an older one)
APART_NOTE = ("Rows labelled `[...]` ({models}): named as one model's rows, but their run.json say they scored "
              "different models (eval.runs.IDENTITY: the weights' sha256, the module, load_model's options; e.g. "
              "`probe --replace-stale` with other weights under the same --name): the label says what differs; "
              "they are listed apart, not as one model's rows.")


def collect(paths: list[Path]) -> tuple[list[str], list[list[ModelResults]], dict[str, TaskFacts | None]]:
    """(task columns, the rows in blocks of one model each (model_blocks), the facts of each task) from RESULTS or
    model folders."""
    blocks = model_blocks(read_models(paths))
    models = [m for block in blocks for m in block]
    tasks = sorted({t for m in models for t in m.scores})
    for block in blocks:
        check_task_copies(block, tasks)
    return tasks, blocks, read_task_facts(models, tasks)


def row_suffix(name: str) -> str:
    """`-linear`, `-knn`, `-mlp` (a `hear-maeast probe` row), `-finetuned`, or "" (heareval's probe, `eval`)."""
    return next((s for s in ROW_SUFFIXES if name.endswith(s)), "")


def stem(name: str) -> str:
    """The model a row is named for: its name without the row suffix."""
    return name[: len(name) - len(row_suffix(name))]


def model_blocks(models: list[ModelResults]) -> list[list[ModelResults]]:
    """The rows in blocks, one per model: rows of one RESULTS folder named for one model (`<model>`,
    `<model>-linear` ..., `<model>-finetuned`, in that order) whose run.json identities agree (rows recording none,
    e.g. no run.json, join them then). Rows named as one model's that disagree are split by identity, each labelled
    with what differs; the first block stays in place, the others go after every other model's rows."""
    groups: dict[tuple[Path, str], list[ModelResults]] = {}
    for m in models:
        groups.setdefault((m.folder.parent.resolve(), stem(m.run_name)), []).append(m)
    order = ("", *ROW_SUFFIXES)
    placed, apart = [], []
    for rows in groups.values():
        blocks = by_identity(sorted(rows, key=lambda m: order.index(row_suffix(m.run_name))))
        if len(blocks) > 1:
            label_apart(blocks)
        placed.append(blocks[0])
        apart += blocks[1:]
    return placed + apart


def by_identity(rows: list[ModelResults]) -> list[list[ModelResults]]:
    """`rows` (of one model's name) split into lists of rows that scored the same model (Identity.same_model); rows
    recording no identity join the only list, or make their own when the others disagree."""
    blocks: list[list[ModelResults]] = []
    for m in (m for m in rows if m.identity is not None):
        block = next((b for b in blocks if all(m.identity.same_model(o.identity) for o in b)), None)
        if block is None:
            blocks.append([m])
        else:
            block.append(m)
    if len(blocks) <= 1:
        return [rows]  # one model's rows (those recording no identity cannot disagree), in their order
    unknown = [m for m in rows if m.identity is None]
    return blocks + ([unknown] if unknown else [])


def label_apart(blocks: list[list[ModelResults]]) -> None:
    """Append to each row's name what tells its block from the others: `[weights <sha256[:12]>]`, `[module ...]`,
    `[options {...}]`, or `[identity not recorded]`."""
    ids = [b[0].identity for b in blocks]
    known = [i for i in ids if i is not None]
    differs = {f: len({getattr(i, f) for i in known if getattr(i, f) is not None}) > 1
               for f in ("weights_sha256", "module", "model_options")}
    for block, identity in zip(blocks, ids):
        parts = [NOT_RECORDED] if identity is None else []
        if identity is not None and (differs["weights_sha256"] or not any(differs.values())):
            parts.append(f"weights {identity.weights_sha256[:12]}" if identity.weights_sha256 else "no weights file")
        if identity is not None and differs["module"]:
            parts.append(f"module {identity.module}")
        if identity is not None and differs["model_options"] and identity.model_options is not None:
            parts.append(f"options {identity.model_options}")
        for m in block:
            m.name = f"{m.name} [{', '.join(parts)}]"


def check_task_copies(block: list[ModelResults], tasks: list[str]) -> None:
    """One model's rows were scored on one version of each task: the copies of its metadata, vocabulary and split
    files in their task folders are equal, byte for byte (a probe row kept from before the task was rebuilt and
    embedded again is not). ResultsError naming both folders and what to run."""
    for task in tasks:
        folders = [m.folder / task for m in block if task in m.scores and (m.folder / task / METADATA).is_file()]
        if len(folders) < 2:
            continue
        try:
            names = [METADATA, LABEL_VOCABULARY, *(f"{s}.json" for s in task_splits(read_metadata(folders[0]),
                                                                                  folders[0] / METADATA))]
        except TaskError as e:
            raise ResultsError(f"{e} (in a results folder: delete {folders[0]} and evaluate again)") from None
        copy = lambda folder, n: (folder / n).read_bytes() if (folder / n).is_file() else None  # noqa: E731
        for folder in folders[1:]:
            differ = [n for n in names if copy(folder, n) != copy(folders[0], n)]
            if differ:
                raise ResultsError(f"{folder} and {folders[0]} were scored on different versions of task {task} "
                                   f"(their copies of {', '.join(differ)} differ): run the command that wrote the "
                                   f"older one again (`hear-maeast probe` or `eval`), which scores the task as it is "
                                   f"now")


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


def models_named_so(blocks: list[list[ModelResults]], row: ModelResults) -> list[list[ModelResults]]:
    """The blocks of rows named for `row`'s model in its RESULTS folder: more than one when they are listed apart."""
    key = lambda m: (m.folder.parent.resolve(), stem(m.run_name))  # noqa: E731
    return [b for b in blocks if key(b[0]) == key(row)]


def find_reference(blocks: list[list[ModelResults]], against: str) -> tuple[ModelResults | None, list[ModelResults]]:
    """(the row `--against` names, as the table shows it or as its run.json names it; or None when it names a model
    whose rows are probe rows only) and that row's model's block. BadInput when it names none, or several."""
    rows = [m for block in blocks for m in block]
    named = [m for m in rows if m.name == against] or [m for m in rows if m.run_name == against]
    of_model = [b for b in blocks if any(stem(m.run_name) == against for m in b)]
    if len(named) > 1 or (not named and len(of_model) > 1):
        shown = named or [m for b in of_model for m in b]
        raise BadInput(f"--against {against}: names more than one row or model ({', '.join(m.name for m in shown)}); "
                       "give one row's name as the table shows it")
    if named:
        return named[0], next(b for b in blocks if any(m is named[0] for m in b))
    if of_model:
        return None, of_model[0]
    raise BadInput(f"--against {against}: no such model in these results (models: {', '.join(m.name for m in rows)})")


def pairing(blocks: list[list[ModelResults]], reference: ModelResults | None, block: list[ModelResults],
            usable) -> tuple[list[tuple[ModelResults, list[ModelResults]]], list[ModelResults]]:
    """Which row each row is paired with: the other rows of `block` (the reference's model: the same embeddings
    read by another probe) with `reference`; another model's row with `block`'s row of its own kind (heareval's,
    `-linear` ...) when that one is `usable` (has predictions), else with `reference`. Returns ([(row paired with,
    its rows)], in `block`'s order, and the rows left with nothing usable to pair with)."""
    own = {}
    for m in block:
        own.setdefault(row_suffix(m.run_name), m)
    plan = {id(m): (m, []) for m in ([reference] if reference else []) + block}
    unpaired = []
    for other in (b for b in blocks if b is not block):
        for m in other:
            ref = own.get(row_suffix(m.run_name))
            ref = ref if ref is not None and usable(ref) else reference
            (plan[id(ref)][1] if ref is not None and usable(ref) else unpaired).append(m)
    for m in block if reference is not None else []:
        if m is not reference:
            (plan[id(reference)][1] if usable(reference) else unpaired).append(m)
    return [(ref, rows) for ref, rows in plan.values() if rows], unpaired


def paired_markdown(tasks: list[str], blocks: list[list[ModelResults]], facts: dict[str, TaskFacts | None],
                    against: str) -> str:
    """The paired tables (`pairing`), each headed `vs <the row its rows are paired with>`, and a note saying
    which row was paired with which."""
    from eval.paired import has_predictions, nothing_to_pair, paired_note, paired_rows  # brings torch

    reference, block = find_reference(blocks, against)
    seen: dict[int, bool] = {}

    def usable(m: ModelResults) -> bool:  # each row's folders looked at once
        if id(m) not in seen:
            seen[id(m)] = has_predictions(m, tasks, facts)
        return seen[id(m)]

    plan, unpaired = pairing(blocks, reference, block, usable)
    if not plan:
        why = nothing_to_pair(reference, tasks, facts) if reference else "none of its rows has predictions"
        raise BadInput(f"--against {against}: nothing to pair with: {why}; choose a row scored by `hear-maeast eval` "
                       "or `hear-maeast probe`")
    tables = [(ref, paired_rows(tasks, rows, facts, ref)) for ref, rows in plan]
    tables = [(ref, table) for ref, table in tables if len(table) > 1]  # rows without predictions are left out
    lines = [paired_note(md_cell(tables[0][0].name) if len(tables) == 1 else None)]
    refs = [f"`{md_cell(ref.name)}`" for ref, _ in plan if ref is not reference]
    model = md_cell(stem(block[0].run_name))
    if refs:
        lines.append(f"Rows of a probe (`-linear`, `-knn`, `-mlp`) are paired with that probe's row of {model} when "
                     f"it has one, heareval's rows with {model}'s heareval row ({', '.join(refs)})"
                     + (f"; the other rows with {md_cell(reference.name)}." if reference else "."))
    if reference and len(block) > 1 and usable(reference):
        lines.append(f"The other rows of {md_cell(reference.name)}'s model (the same embeddings, another probe) are "
                     f"paired with {md_cell(reference.name)}.")
    names = ", ".join(f"`{md_cell(m.name)}`" for m in unpaired)
    if unpaired and reference:
        lines.append(f"Nothing is paired with {md_cell(reference.name)} "
                     f"({nothing_to_pair(reference, tasks, facts)}): {names}.")
    elif unpaired:
        lines.append(f"Not paired ({md_cell(against)} has no row of their kind with predictions): {names}.")
    if not tables:
        lines.insert(0, f"No other row has predictions of a task it shares with {md_cell(against)}.")
    return "".join(to_markdown(table) + "\n" for _, table in tables) + " ".join(lines) + "\n"


def write_table(paths: list[Path], markdown: Path | None = None, csv_path: Path | None = None,
                png: Path | None = None, against: str | None = None) -> str:
    """Collect scores, write the requested files, and return the Markdown table; with `against` (a row's or a
    model's name), the paired clip-by-clip comparisons with it follow (eval.paired)."""
    tasks, blocks, facts = collect(paths)
    models = [m for block in blocks for m in block]
    table = table_rows(tasks, models, facts)
    md = to_markdown(table)
    if any(m.run_name.endswith(FINETUNED_SUFFIX) for m in models):
        md += "\n" + FINETUNED_NOTE + "\n"
    if any(row_suffix(m.run_name) in PROBE_SUFFIXES for m in models):
        md += "\n" + PROBES_NOTE + "\n"
    apart = sorted({md_cell(stem(b[0].run_name)) for b in blocks if len(models_named_so(blocks, b[0])) > 1})
    if apart:
        md += "\n" + APART_NOTE.format(models=", ".join(f"`{a}`" for a in apart)) + "\n"
    note = best_note(tasks, facts)  # each `best published` cell's model and source
    if note:
        md += "\n" + md_cell(note) + "\n"
    if against:
        md += "\n" + paired_markdown(tasks, blocks, facts, against)
    if markdown:
        _write_text(markdown, md)
    if csv_path:
        _write_text(csv_path, to_csv(table))
    if png:
        plot(tasks, models, facts, Path(png))
    return md
