"""HEAR task folders for the other harnesses (docs/harnesses.md): a scene multiclass task's clips, read by
eval/taskdir.py (the one reader of task folders), handed to the harness adapters of hear_maeast/adapters/, which
take clips and never read task folders (the model package imports neither eval nor pretrain).

    python -m eval.harness_tasks xares-shards TASK_DIR ENV_ROOT     # X-ARES webdataset shards; prints the folder

    from eval.harness_tasks import mteb_task
    task = mteb_task("path/to/spoken_digit-1.0.9-small")          # an MTEB task: last fold = test, others = train
"""

from __future__ import annotations

import sys
from pathlib import Path

from eval.taskdir import labelled_clips

USAGE = "usage: python -m eval.harness_tasks xares-shards TASK_DIR ENV_ROOT"


def mteb_task(task_dir, test_fold: int = -1):
    """A HEAR scene multiclass task folder as an MTEB task (hear_maeast.adapters.mteb.local_task of its clips)."""
    from hear_maeast.adapters.mteb import local_task

    name, labels, splits = labelled_clips(Path(task_dir))
    return local_task(name, labels, splits, test_fold=test_fold)


def xares_shards(task_dir, env_root) -> Path:
    """A HEAR scene multiclass task folder -> X-ARES shards in ENV_ROOT/<task name>/ (hear_maeast.adapters.xares.
    write_shards of its clips); returns that folder, for HEAR_MAEAST_XARES_TASK."""
    from hear_maeast.adapters.xares import write_shards

    name, labels, splits = labelled_clips(Path(task_dir))
    return write_shards(name, labels, splits, env_root)


def main(argv: list[str]) -> int:
    from hear_maeast.errors import HearMaeastError, describe

    if len(argv) != 3 or argv[0] != "xares-shards":
        print(USAGE, file=sys.stderr)
        return 2
    try:
        print(xares_shards(argv[1], argv[2]))
    except (HearMaeastError, OSError) as e:
        message, code = describe(e)
        print(f"error: {message}", file=sys.stderr)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
