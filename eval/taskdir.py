"""What a HEAR task folder is, and clear refusals when a folder is not one.

The official layout (written by hear-preprocess, read by heareval):

    TASKS/<task_name>-<version>-<mode>/
      task_metadata.json      embedding_type, prediction_type, split_mode, splits, evaluation, ...
      labelvocabulary.csv     header idx,label
      <split>.json            scene: {"x.wav": ["label", ...]}; event: {"x.wav": [{"label","start","end"}]} (ms)
      <sample_rate>/<split>/<file>.wav

Sources given to `tasks` commands may be a task folder, a tasks root (a folder of task folders), or an archive
(`.tar.gz`, `.tgz`, `.tar`, `.zip`: eval/archives.py) holding either, with the official `hear-<ver>/tasks/` prefix or
not. Writing a task folder: eval/taskwrite.py; heareval's protocol over it (rotation, chance): eval/protocol.py.

Everything read from a task is untrusted: a split name or a clip name becomes a path (ours and heareval's), so
each goes through `plain_name` / `child_path` first, and a file that cannot be decoded is named in a TaskError.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hear_maeast import audio as hear_audio
from hear_maeast.errors import BadInput, HearMaeastError, WorkFailed

METADATA = "task_metadata.json"
LABEL_VOCABULARY = "labelvocabulary.csv"
SCENE, EVENT = "scene", "event"
TRAINVALTEST = "trainvaltest"  # the split mode of a task with train, valid and test splits (else k-fold)
SPLIT_MODES = (TRAINVALTEST, "new_split_kfold", "presplit_kfold")
PARTIAL = ".hear-maeast-partial"  # marks a half-written folder of ours, so that only ours are ever deleted


class TaskError(WorkFailed):
    """A folder or archive is not a usable HEAR task (failed work: exit 1); the message says what is wrong and
    what to do. Bad options and arguments are `BadInput` (exit 2) instead."""


def plain_name(name, what: str, error: type[HearMaeastError] = TaskError) -> str:
    """`name` when it is one plain file or folder name; `error` otherwise. For every name read from a task's
    metadata, a split JSON or an option that becomes a path: `../../x`, `a/b`, `/x`, `..` or `` never does."""
    if not isinstance(name, str) or name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        raise error(f"{what} {name!r} is not a plain file or folder name (expected one name such as `train` or "
                    f"`clip_0001.wav`, without '/', '\\' or '..')")
    return name


def child_path(folder: Path, name, what: str, error: type[HearMaeastError] = TaskError) -> Path:
    """`folder / name` for an untrusted `name` (see plain_name): a path that is always inside `folder`."""
    return Path(folder) / plain_name(name, what, error)


def refuse_foreign(folder: Path, markers: tuple[str, ...]) -> None:
    """BadInput when `folder` exists without any of `markers` (files our own writers put there): not ours."""
    folder = Path(folder)
    if folder.exists() and not any((folder / m).is_file() for m in markers):
        raise BadInput(f"{folder} exists and was not written by hear-maeast (it has no {markers[0]}); it is left "
                       f"untouched: move it away or choose another output folder")


def remove_own_folder(folder: Path, markers: tuple[str, ...]) -> None:
    """Delete `folder` only when it holds one of `markers`; refuse any other (`refuse_foreign`)."""
    refuse_foreign(folder, markers)
    if Path(folder).exists():
        shutil.rmtree(folder)


def read_audio(path: Path, start: int = 0, stop: int | None = None, always_2d: bool = False):
    """A task's clip, frames [start, stop), through the package's one audio reader (hear_maeast.audio: regular files
    only): ([n] or [n, channels] float32, rate); a TaskError naming the file when it cannot be read."""
    try:
        audio, rate = hear_audio.read_audio(path, start, stop)  # [n, channels]
    except BadInput as e:
        raise _audio_error(e) from e
    return (audio if always_2d or audio.shape[1] > 1 else audio[:, 0]), rate


def audio_info(path: Path) -> hear_audio.AudioInfo:
    """Frames, samplerate, channels and subtype of a task's clip; a TaskError naming a file it cannot read."""
    try:
        return hear_audio.audio_info(path)
    except BadInput as e:
        raise _audio_error(e) from e


def _audio_error(e: BadInput) -> TaskError:
    return TaskError(f"{e}; replace the file, or remove it and its entry from the split's JSON")


def read_text(path: Path) -> str:
    """A task's text file as UTF-8; a TaskError naming the file otherwise."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TaskError(f"{path} is not UTF-8 text ({e}); HEAR task files are UTF-8: re-save it as UTF-8") from e


def read_json(path: Path):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise TaskError(f"{path} is not valid JSON ({e}); the task folder is damaged: rebuild or re-download it") from e


def is_task(path: Path) -> bool:
    return (Path(path) / METADATA).is_file()


def task_splits(metadata: dict, source: Path | str = METADATA) -> list[str]:
    """Split names of a task: `splits` when written (hear-preprocess always writes it), else from `split_mode`.

    Each is a plain name (it becomes `<split>.json` and `<rate>/<split>/`); anything else is a TaskError naming
    `source` (the metadata file)."""
    if metadata.get("splits"):
        splits = metadata["splits"]
        if not isinstance(splits, list):
            raise TaskError(f"{source}: `splits` must be a list of split names, got {splits!r}")
        splits = [plain_name(s, f"{source}: split name") for s in splits]
    elif metadata.get("split_mode") == TRAINVALTEST:
        splits = ["train", "valid", "test"]
    elif isinstance(metadata.get("nfolds"), int) and 0 < metadata["nfolds"] <= 100:
        splits = [f"fold{i:02d}" for i in range(metadata["nfolds"])]
    else:
        raise TaskError(f"{source} has neither `splits` nor a split_mode/nfolds to derive them from")
    _check_splits(metadata, splits, source)
    return splits


def _check_splits(metadata: dict, splits: list[str], source) -> None:
    """The splits heareval's rotation needs: train, valid and test once each, or for a k-fold task `nfolds` (when
    given) distinct folds, at least 3 (each is tested once, the next one validates, the others train)."""
    again = "rebuild the task (hear-preprocess writes them consistently)"
    if len(set(splits)) != len(splits):
        raise TaskError(f"{source}: `splits` names a split twice ({splits}); {again}")
    if metadata.get("split_mode") == TRAINVALTEST:
        if sorted(splits) != ["test", "train", "valid"]:
            raise TaskError(f"{source}: a trainvaltest task has the splits train, valid and test, not {splits}; "
                            f"{again}")
        return
    nfolds = metadata.get("nfolds")
    if nfolds is not None and nfolds != len(splits):
        raise TaskError(f"{source}: nfolds is {nfolds!r} but `splits` lists {len(splits)} folds ({', '.join(splits)});"
                        f" scoring it would drop a fold without a word: {again}")
    if len(splits) < 3:
        raise TaskError(f"{source}: a k-fold task needs 3 or more folds (one tested, one validating, the others "
                        f"training), it has {len(splits)}; {again}")


def read_split(task_dir: Path, split: str) -> dict:
    """`<split>.json`: {clip file name: labels}; every clip name is a plain name (heareval makes paths of them)."""
    path = child_path(task_dir, f"{split}.json", f"{Path(task_dir) / METADATA}: split file")
    if not path.is_file():
        raise TaskError(f"{task_dir} is not a complete HEAR task: {path.name} is missing")
    clips = read_json(path)
    if not isinstance(clips, dict) or not all(isinstance(v, list) for v in clips.values()):
        raise TaskError(f"{path} must map each clip file name to a list of labels or events, as hear-preprocess "
                        f"writes it")
    if not clips:
        raise TaskError(f"{path} lists no clips: heareval can neither embed nor score an empty split; rebuild the "
                        f"task, or leave it out with --task")
    for name in clips:
        plain_name(name, f"{path}: clip name")
    return clips


def read_vocabulary(task_dir: Path) -> list[str]:
    """The labels of `labelvocabulary.csv` (header `idx,label`, read as CSV, quoted labels too, as heareval reads
    it), in index order. The one reader of vocabularies: every idx an integer, 0..n-1 each once, every label once;
    anything else (one idx for two labels would score a broken label map) is a TaskError naming the file."""
    path = Path(task_dir) / LABEL_VOCABULARY
    if not path.is_file():
        raise TaskError(f"{task_dir} is not a complete HEAR task: {LABEL_VOCABULARY} is missing")
    text = read_text(path)
    if text.splitlines()[:1] != ["idx,label"]:
        raise TaskError(f"{path} must start with the header `idx,label`, got {text.splitlines()[:1]}")
    labels: dict[int, str] = {}
    for line, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
        idx, label = (row.get("idx") or "").strip(), row.get("label")
        problem = ("its idx is not an integer" if not idx.lstrip("-").isdigit() else
                   f"idx {idx} is given to two labels ({labels.get(int(idx))!r} and {label!r})" if int(idx) in labels else
                   f"label {label!r} has two idx" if label in labels.values() else "")
        if problem or label is None:
            raise TaskError(f"{path} line {line} ({','.join(str(v) for v in row.values())}): {problem or 'no label'}; "
                            "each label needs its own idx, 0 to n-1: fix the file or rebuild the task")
        labels[int(idx)] = label
    if sorted(labels) != list(range(len(labels))):
        raise TaskError(f"{path}: idx {sorted(labels)[:10]} are not 0 to {len(labels) - 1} each once; fix the file or "
                        "rebuild the task")
    return [labels[i] for i in range(len(labels))]


def label_indices(task_dir: Path) -> dict[str, int]:
    """`labelvocabulary.csv` as {label: idx} (see read_vocabulary)."""
    return {label: i for i, label in enumerate(read_vocabulary(task_dir))}


@dataclass
class SceneClips:
    """The clips of one or more splits of a scene task at one sample rate: files, the label indices of each clip,
    lengths in samples, and the size of the vocabulary."""

    files: list[Path]
    labels: list[list[int]]
    samples: list[int]
    n_labels: int

    def __len__(self) -> int:
        return len(self.files)


def scene_clips(task_dir: Path, splits: list[str], label_to_idx: dict[str, int], sample_rate: int) -> SceneClips:
    """The clips of the splits `splits` of a scene task, in `<sample_rate>/<split>/`; a TaskError for a label not in
    the vocabulary, audio at another rate, a clip of 0 samples, or no clips at all."""
    task_dir = Path(task_dir)
    files, labels, samples = [], [], []
    for split in splits:
        for file, clip_labels in read_split(task_dir, split).items():
            unknown = [label for label in clip_labels if str(label) not in label_to_idx]
            if unknown:
                raise TaskError(f"{task_dir.name}/{split}.json: {file} has labels {unknown} that are not in "
                                f"{LABEL_VOCABULARY}")
            path = task_dir / str(sample_rate) / split / file
            info = audio_info(path)
            if info.samplerate != sample_rate:
                raise TaskError(f"{path} is at {info.samplerate} Hz, in the {sample_rate} Hz folder of the task")
            if info.frames == 0:  # a crop of it is empty, and a mean over it divides by zero
                raise _audio_error(BadInput(f"{path}: the file holds no audio (0 samples)"))
            files.append(path)
            labels.append([label_to_idx[str(label)] for label in clip_labels])
            samples.append(info.frames)
    if not files:
        raise TaskError(f"{task_dir.name}: the split(s) {splits} hold no clips")
    return SceneClips(files, labels, samples, len(label_to_idx))


def read_clip(path: Path, start: int = 0, stop: int | None = None):
    """Samples [start, stop) of a task's clip as float32 mono [n] (hear_maeast.audio.read_mono, no resampling); a
    TaskError naming the file when it cannot be decoded."""
    try:
        return hear_audio.read_mono(path, start, stop)[0]
    except BadInput as e:
        raise _audio_error(e) from e


BATCH_SAMPLES = 32 * 10 * 16000  # audio samples read at once by clip_batches: 20 MB of float32, whatever the length


def clip_batches(clips: SceneClips, batch_size: int, max_samples: int = BATCH_SAMPLES):
    """Whole clips batched by equal length, at most `batch_size` clips and `max_samples` samples at once (long clips
    go a few at a time): yields (clip indices, audio float32 [B, n])."""
    by_length: dict[int, list[int]] = {}
    for i, n in enumerate(clips.samples):
        by_length.setdefault(n, []).append(i)
    for n, idx in by_length.items():
        per_batch = max(1, min(batch_size, max_samples // n))
        for b in range(0, len(idx), per_batch):
            batch = idx[b : b + per_batch]
            yield batch, np.stack([read_clip(clips.files[i]) for i in batch])


def sample_rates(task_dir: Path) -> list[int]:
    """The audio sample rates present in a task folder (its integer-named subfolders), ascending."""
    return sorted(int(p.name) for p in Path(task_dir).iterdir() if p.is_dir() and p.name.isdigit())


def labelled_clips(task_dir: Path) -> tuple[str, list[str], dict[str, list[tuple[str, np.ndarray, str]]]]:
    """(task name, label vocabulary, {split: [(clip name, audio [N] float32 at 16 kHz, label)]}) of a multiclass
    scene task, for harnesses that bring their own data formats (X-ARES shards, an MTEB dataset; built locally,
    nothing downloaded). Audio from the 16000 Hz folder when present, else resampled from the highest rate there."""
    from hear_maeast.timing import SAMPLE_RATE

    task_dir = Path(task_dir)
    meta = check_metadata(task_dir)
    if (meta["embedding_type"], meta["prediction_type"]) != ("scene", "multiclass"):
        raise BadInput(f"{task_dir}: a {meta['embedding_type']} {meta['prediction_type']} task; the harness adapters "
                       "take scene multiclass tasks (one label per clip)")
    rates = sample_rates(task_dir)
    if not rates:
        raise BadInput(f"{task_dir}: no <sample_rate>/ audio folder; is the task complete?")
    rate = SAMPLE_RATE if SAMPLE_RATE in rates else rates[-1]
    splits = {}
    for split in task_splits(meta, task_dir / METADATA):
        clips = read_split(task_dir, split)
        splits[split] = [(name, hear_audio.load_audio(task_dir / str(rate) / split / name).numpy(), str(labels[0]))
                         for name, labels in sorted(clips.items())]
    return f"{meta.get('task_name', task_dir.name)}", read_vocabulary(task_dir), splits


def read_metadata(task_dir: Path) -> dict:
    task_dir = Path(task_dir)
    path = task_dir / METADATA
    if not path.is_file():
        raise TaskError(
            f"{task_dir} is not a HEAR task folder: {METADATA} is missing. A task folder holds {METADATA}, "
            f"{LABEL_VOCABULARY}, one <split>.json per split and <sample_rate>/<split>/*.wav "
            f"(see the official HEAR 2021 task layout)."
        )
    metadata = read_json(path)
    if not isinstance(metadata, dict):
        raise TaskError(f"{path} must hold a JSON object (the task's metadata), got {type(metadata).__name__}")
    return metadata


def check_metadata(task_dir: Path) -> dict:
    """The task's metadata, refused (TaskError) unless it has the fields heareval reads, with values it accepts."""
    metadata = read_metadata(task_dir)
    where = Path(task_dir) / METADATA
    for key in ("embedding_type", "prediction_type", "split_mode", "evaluation"):
        if key not in metadata:
            raise TaskError(f"{where} has no `{key}` field; it is not a HEAR task's metadata")
    if metadata["embedding_type"] not in (SCENE, EVENT):
        raise TaskError(f"{where}: embedding_type must be scene or event, got {metadata['embedding_type']!r}")
    if metadata["split_mode"] not in SPLIT_MODES:
        raise TaskError(f"{where}: split_mode {metadata['split_mode']!r} is not one heareval scores "
                        f"({', '.join(SPLIT_MODES)})")
    evaluation = metadata["evaluation"]
    if not (isinstance(evaluation, list) and evaluation and all(isinstance(m, str) for m in evaluation)):
        raise TaskError(f"{where}: evaluation must be a list of metric names (the first is the score), got "
                        f"{evaluation!r}")
    return metadata


def check_task(task_dir: Path, sample_rate: int | None = None) -> dict:
    """Check a task folder against the official layout and return its metadata.

    Reads the metadata, the label vocabulary and every split JSON (whose clip names must be plain names). With
    `sample_rate`, also requires the audio folders `<sample_rate>/<split>/` (the only ones heareval reads for a
    model of that rate). Raises TaskError naming the first missing or malformed piece.
    """
    task_dir = Path(task_dir)
    if not task_dir.is_dir():
        raise TaskError(f"{task_dir} does not exist or is not a folder")
    metadata = check_metadata(task_dir)
    read_vocabulary(task_dir)
    splits = task_splits(metadata, task_dir / METADATA)
    for split in splits:
        read_split(task_dir, split)
    if sample_rate is None:
        return metadata
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
