"""Writing a HEAR task folder: the one rule every builder follows (eval/synth.py, eval/speech_commands.py,
eval/drums.py), in the layout eval/taskdir.py reads.

    start_task(task_dir)        -> <task>.partial/, marked as ours (eval.taskdir.PARTIAL); the builder writes its
                                   audio (<rate>/<split>/) and split JSONs (<split>.json) there
    finish_task(partial, ...)   writes labelvocabulary.csv and task_metadata.json, the done marker last (`TASK_DONE`,
                                holding the builder's key: what it was built from), renames the folder to <task>/
    task_done(task_dir, key)    a finished folder of this key: kept, nothing rebuilt

A folder of the task's name is replaced only when it holds a done marker of ours (of another key: another seed,
source or version); one we did not write is refused, never deleted (eval.taskdir.remove_own_folder). A run killed
half-way leaves only the .partial folder, which the next run removes.
"""

from __future__ import annotations

import json
from pathlib import Path

from eval.taskdir import LABEL_VOCABULARY, METADATA, PARTIAL, refuse_foreign, remove_own_folder

TASK_DONE = ".hear-maeast-task.json"
# the done markers earlier versions' builders wrote: their folders are ours too
OLD_SYNTH_DONE, OLD_SPEECH_COMMANDS_DONE = ".synth-done.json", ".speech-commands-done"


def task_done(task_dir: Path, key: dict) -> bool:
    """`task_dir` is a finished task folder built from `key`."""
    try:
        return json.loads((Path(task_dir) / TASK_DONE).read_text()) == key
    except (OSError, ValueError):
        return False


def _ours(task_dir: Path) -> tuple[tuple[Path, tuple[str, ...]], ...]:
    """(folder, the markers that make it ours) for the task folder and its .partial folder."""
    task_dir = Path(task_dir)
    return ((task_dir, (TASK_DONE, OLD_SYNTH_DONE, OLD_SPEECH_COMMANDS_DONE)),
            (task_dir.with_name(task_dir.name + ".partial"), (PARTIAL,)))


def check_ours(task_dir: Path) -> None:
    """Refuse, before any work, a folder of the task's name that we did not write (start_task would refuse it)."""
    for folder, markers in _ours(task_dir):
        refuse_foreign(folder, markers)


def start_task(task_dir: Path) -> Path:
    """A fresh, empty `<task>.partial/` marked as ours; a task folder of ours removed first, any other refused."""
    check_ours(task_dir)  # refused before anything is deleted
    (task_dir, task_markers), (partial, partial_markers) = _ours(task_dir)
    remove_own_folder(task_dir, task_markers)
    remove_own_folder(partial, partial_markers)
    partial.mkdir(parents=True)
    (partial / PARTIAL).write_text("")
    return partial


def write_vocabulary(folder: Path, labels: list[str]) -> None:
    """labelvocabulary.csv as hear-preprocess writes it: `idx,label`, one row per label in index order."""
    (Path(folder) / LABEL_VOCABULARY).write_text("idx,label\n" + "".join(f"{i},{l}\n" for i, l in enumerate(labels)))


def finish_task(partial: Path, metadata: dict, labels: list[str], key: dict) -> Path:
    """Vocabulary, metadata and the done marker (last) into `partial`, then renamed to the task folder; returns it."""
    write_vocabulary(partial, labels)
    (partial / METADATA).write_text(json.dumps(metadata, indent=1))
    (partial / TASK_DONE).write_text(json.dumps(key))
    task_dir = partial.with_name(partial.name.removesuffix(".partial"))
    partial.rename(task_dir)
    (task_dir / PARTIAL).unlink()
    return task_dir
