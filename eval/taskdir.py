"""What a HEAR task folder is, and clear refusals when a folder is not one.

The official layout (written by hear-preprocess, read by heareval):

    TASKS/<task_name>-<version>-<mode>/
      task_metadata.json      embedding_type, prediction_type, split_mode, splits, evaluation, ...
      labelvocabulary.csv     header idx,label
      <split>.json            scene: {"x.wav": ["label", ...]}; event: {"x.wav": [{"label","start","end"}]} (ms)
      <sample_rate>/<split>/<file>.wav

Sources given to `tasks` commands may be a task folder, a tasks root (a folder of task folders), or an archive
(`.tar.gz`, `.tgz`, `.tar`, `.zip`) holding either, with the official `hear-<ver>/tasks/` prefix or not.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from pathlib import Path

METADATA = "task_metadata.json"
LABEL_VOCABULARY = "labelvocabulary.csv"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
SCENE, EVENT = "scene", "event"
SPLIT_MODES = ("trainvaltest", "new_split_kfold", "presplit_kfold")


class TaskError(ValueError):
    """A folder or archive is not a usable HEAR task; the message says what is wrong and what to do."""


def is_task(path: Path) -> bool:
    return (Path(path) / METADATA).is_file()


def is_archive(path: Path) -> bool:
    return Path(path).is_file() and str(path).lower().endswith(ARCHIVE_SUFFIXES)


def task_splits(metadata: dict) -> list[str]:
    """Split names of a task: `splits` when written (hear-preprocess always writes it), else from `split_mode`."""
    if metadata.get("splits"):
        return list(metadata["splits"])
    if metadata.get("split_mode") == "trainvaltest":
        return ["train", "valid", "test"]
    if "nfolds" in metadata:
        return [f"fold{i:02d}" for i in range(int(metadata["nfolds"]))]
    raise TaskError("task_metadata.json has neither `splits` nor a split_mode/nfolds to derive them from")


def sample_rates(task_dir: Path) -> list[int]:
    """The audio sample rates present in a task folder (its integer-named subfolders), ascending."""
    return sorted(int(p.name) for p in Path(task_dir).iterdir() if p.is_dir() and p.name.isdigit())


def read_metadata(task_dir: Path) -> dict:
    task_dir = Path(task_dir)
    path = task_dir / METADATA
    if not path.is_file():
        raise TaskError(
            f"{task_dir} is not a HEAR task folder: {METADATA} is missing. A task folder holds {METADATA}, "
            f"{LABEL_VOCABULARY}, one <split>.json per split and <sample_rate>/<split>/*.wav "
            f"(see the official HEAR 2021 task layout)."
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise TaskError(f"{path} is not valid JSON ({e})") from e


def check_task(task_dir: Path, sample_rate: int | None = None) -> dict:
    """Check a task folder against the official layout and return its metadata.

    With `sample_rate`, also require the audio folders `<sample_rate>/<split>/` (the only ones heareval reads
    for a model of that rate). Raises TaskError naming the first missing or malformed piece.
    """
    task_dir = Path(task_dir)
    if not task_dir.is_dir():
        raise TaskError(f"{task_dir} does not exist or is not a folder")
    metadata = read_metadata(task_dir)
    for key in ("embedding_type", "prediction_type", "split_mode", "evaluation"):
        if key not in metadata:
            raise TaskError(f"{task_dir / METADATA} has no `{key}` field; it is not a HEAR task's metadata")
    if metadata["embedding_type"] not in (SCENE, EVENT):
        raise TaskError(f"{task_dir / METADATA}: embedding_type must be scene or event, got {metadata['embedding_type']!r}")
    if metadata["split_mode"] not in SPLIT_MODES:
        raise TaskError(
            f"{task_dir / METADATA}: split_mode {metadata['split_mode']!r} is not one heareval scores "
            f"({', '.join(SPLIT_MODES)})"
        )
    if not (task_dir / LABEL_VOCABULARY).is_file():
        raise TaskError(f"{task_dir} is not a complete HEAR task: {LABEL_VOCABULARY} is missing")
    header = (task_dir / LABEL_VOCABULARY).read_text().splitlines()[:1]
    if header != ["idx,label"]:
        raise TaskError(f"{task_dir / LABEL_VOCABULARY} must start with the header `idx,label`, got {header}")
    splits = task_splits(metadata)
    for split in splits:
        if not (task_dir / f"{split}.json").is_file():
            raise TaskError(f"{task_dir} is not a complete HEAR task: {split}.json is missing (splits: {splits})")
    if sample_rate is not None:
        rates = sample_rates(task_dir)
        if sample_rate not in rates:
            have = ", ".join(map(str, rates)) or "none"
            raise TaskError(
                f"{task_dir.name} has no audio at {sample_rate} Hz (it has: {have}). heareval reads only "
                f"{task_dir.name}/{sample_rate}/<split>/; make a {sample_rate} Hz copy first: "
                f"hear-maeast tasks resample {task_dir} NEW_TASKS_ROOT --sr {sample_rate}"
            )
        for split in splits:
            if not (task_dir / str(sample_rate) / split).is_dir():
                raise TaskError(f"{task_dir} has no audio folder {sample_rate}/{split}/")
    return metadata


def find_tasks(root: Path) -> list[Path]:
    """Task folders under `root`: `root` itself when it is one, else its subfolders (heareval's --tasks-dir view).

    Refuses a subfolder that is not a task, since heareval would treat every entry as one.
    """
    root = Path(root)
    if not root.is_dir():
        raise TaskError(f"{root} does not exist or is not a folder")
    if is_task(root):
        return [root]
    children = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not children:
        raise TaskError(f"{root} holds no task folders (expected {root}/<task>/{METADATA})")
    for child in children:
        if not is_task(child):
            read_metadata(child)  # raises with the layout explained
    return children


def locate_tasks_root(folder: Path) -> Path:
    """Within an extracted archive, the folder whose children (or itself) are tasks.

    Strips the official `hear-<ver>/tasks/` or `tasks/` prefixes by looking for task_metadata.json up to 3 levels down.
    """
    folder = Path(folder)
    if is_task(folder):
        return folder
    for depth in range(1, 4):
        hits = sorted(folder.glob("/".join(["*"] * depth) + "/" + METADATA))
        if hits:
            parents = {h.parent.parent for h in hits}
            if len(parents) > 1:
                raise TaskError(f"{folder} holds tasks in several places: {sorted(map(str, parents))}")
            return parents.pop()
    raise TaskError(f"no {METADATA} found in {folder} (nor in its first 3 levels): this is not a HEAR task tree")


def safe_extract(archive: Path, dest: Path) -> Path:
    """Extract a .tar(.gz)/.zip into `dest` refusing any member that would land outside it; return `dest`."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                target = (root / info.filename).resolve()
                if not target.is_relative_to(root):
                    raise TaskError(f"{archive}: member {info.filename!r} would be written outside {dest}; refused")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            try:
                # "data" refuses absolute paths, `..`, links out of dest and device files
                tf.extractall(dest, filter="data")
            except tarfile.FilterError as e:
                raise TaskError(f"{archive}: unsafe member refused ({e})") from e
    else:
        raise TaskError(f"{archive} is neither a zip nor a tar archive")
    return dest


def archive_stem(path: Path) -> str:
    name = Path(path).name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
