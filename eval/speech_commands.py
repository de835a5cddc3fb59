"""`hear-maeast tasks speech-commands`: raw Speech Commands v0.02 -> the HEAR `speech_commands-v0.0.2-<mode>` task.

The HEAR 2021 recipe (hear-preprocess `speech_commands.py`, after TensorFlow Datasets):
- 12 labels: the 10 keywords, `_unknown_` for every other word, `_silence_` for 1 s windows cut from
  `_background_noise_/*.wav` every 0.5 s;
- valid = the clips of `validation_list.txt` plus the silence windows of `running_tap.wav`;
- train = every other word clip except those of `testing_list.txt`, plus the other silence windows;
- test = the separate official test-set archive (folders named by the 12 labels), when given (`--test-set`).
- scene, multiclass, trainvaltest, 1.0 s clips (zero-padded or cut), top1_acc, 16 kHz.

Without `--test-set` the test split is the `testing_list.txt` clips, and since there is then no test silence,
the last 10 % of each background file goes to the test silence (windows never cross that boundary); when
`running_tap.wav` is the only background file (as in the small subset), its first 80 % go to train and the
next 10 % to valid, so every split has all 12 labels. A task built that way is not the official one: name
its mode accordingly (e.g. `small`). On a subset with few words, the silence windows of a split are cut down
to one label's balanced share (an even selection), so silence does not swamp the task; on the full dataset
this never binds. File names follow the recipe: `<folder>_<stem>.wav`.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from eval.archives import is_archive, safe_extract
from eval.taskdir import TaskError, audio_info, read_audio, read_text
from eval.taskwrite import OLD_SPEECH_COMMANDS_DONE, check_ours, finish_task, start_task, task_done
from hear_maeast.errors import BadInput

WORDS = ["down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes"]
UNKNOWN, SILENCE, BACKGROUND = "_unknown_", "_silence_", "_background_noise_"
LABELS = WORDS + [UNKNOWN, SILENCE]
SAMPLE_RATE = 16000  # Hz: the dataset's own rate (its clips are recorded at it), not the model's
VALID_NOISE = "running_tap"  # TFDS/HEAR: its silence windows are the validation silence
MODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # official modes: full, 5h


def label_of(folder: str) -> str:
    return folder if folder in WORDS or folder == SILENCE else UNKNOWN


def _find_root(folder: Path, required: str) -> Path:
    """The folder holding `required` (the dataset root), at most 2 levels down (archives may add a top folder)."""
    for depth in range(3):
        hits = sorted(folder.glob("/".join(["*"] * depth + [required])))
        if hits:
            return hits[0].parent
    raise TaskError(
        f"{folder} is not the Speech Commands v0.02 layout: {required} is missing (expected one folder per word, "
        f"{BACKGROUND}/, validation_list.txt and testing_list.txt)"
    )


def silence_windows(n: int, sr: int = SAMPLE_RATE) -> list[int]:
    """Start samples of the 1 s silence windows, every 0.5 s, as TFDS and hear-preprocess cut them."""
    return list(range(0, n - sr, sr // 2))


def _fit(audio: np.ndarray, n: int) -> np.ndarray:
    return np.pad(audio, (0, n - len(audio))) if len(audio) < n else audio[:n]


def collect_clips(root: Path, test_root: Path | None) -> dict[str, list[tuple[str, Path, int | None, str]]]:
    """{split: [(out file name, source wav, silence window start or None, label)]} by the recipe above."""
    validation = set(read_text(root / "validation_list.txt").split())
    testing = set(read_text(root / "testing_list.txt").split())
    splits: dict[str, list] = {"train": [], "valid": [], "test": []}
    for wav in sorted(root.glob("[!_]*/*.wav")):
        rel = f"{wav.parent.name}/{wav.name}"
        split = "valid" if rel in validation else "test" if rel in testing else "train"
        if split == "test" and test_root is not None:
            continue  # the official test set replaces the testing-list clips
        splits[split].append((f"{wav.parent.name}_{wav.stem}.wav", wav, None, label_of(wav.parent.name)))

    noises = sorted((root / BACKGROUND).glob("*.wav"))
    if not noises:
        raise TaskError(f"{root / BACKGROUND} holds no .wav file: the {SILENCE} clips are cut from it")
    only_tap = all(p.stem == VALID_NOISE for p in noises)
    for noise in noises:
        n = audio_info(noise).frames
        for start in silence_windows(n):
            end = start + SAMPLE_RATE
            if test_root is None and end > 0.9 * n:  # the tail is the test silence
                split = "test" if start >= 0.9 * n else None  # no window straddles a boundary
            elif only_tap:
                split = "train" if end <= 0.8 * n else "valid" if start >= 0.8 * n else None
            elif noise.stem == VALID_NOISE:
                split = "valid"
            else:
                split = "train"
            if split is not None:
                splits[split].append((f"{SILENCE}_{noise.stem}-{start}.wav", noise, start, SILENCE))

    for split, clips in splits.items():
        # never more silence than a balanced share of the words (binds only on subsets: the full dataset
        # has ~400 silence windows for 85k training words)
        words = [c for c in clips if c[3] != SILENCE]
        silence = [c for c in clips if c[3] == SILENCE]
        cap = max(1, -(-len(words) // (len(LABELS) - 1)))
        if len(silence) > cap:
            silence = [silence[i] for i in np.linspace(0, len(silence) - 1, cap).round().astype(int)]
        splits[split] = words + silence

    if test_root is not None:
        for wav in sorted(test_root.glob("*/*.wav")):
            splits["test"].append((f"{wav.parent.name}_{wav.stem}.wav", wav, None, label_of(wav.parent.name)))
    return splits


def task_folder(out_root: Path, mode: str) -> Path:
    """OUT_ROOT/speech_commands-v0.0.2-<mode>; BadInput (exit 2) for a mode that is not one plain word."""
    if not isinstance(mode, str) or not MODE.fullmatch(mode):
        raise BadInput(f"--mode {mode!r}: expected one word of letters, digits, '.', '_' or '-' (the task folder is "
                       f"speech_commands-v0.0.2-<mode>), e.g. full or small")
    return Path(out_root) / f"speech_commands-v0.0.2-{mode}"


def _test_root(test_set: Path, tmp: Path) -> Path:
    """The folder of the official test set (one folder per label) inside a folder or archive."""
    test_dir = safe_extract(test_set, tmp / "test") if is_archive(test_set) else test_set
    hits = sorted({p.parent.parent for p in test_dir.glob("**/_silence_/*.wav")})
    if not hits:
        raise TaskError(f"{test_set} is not the Speech Commands test set: no {SILENCE}/ folder with clips in it")
    return hits[0]


def _clip_audio(wav: Path, start: int | None) -> np.ndarray:
    """One 1 s clip ([SAMPLE_RATE] float32): a word clip padded or cut, or a window of a background file."""
    kwargs = {} if start is None else {"start": start, "stop": start + SAMPLE_RATE}
    audio, sr = read_audio(wav, **kwargs)
    if sr != SAMPLE_RATE:
        raise TaskError(f"{wav} is at {sr} Hz; Speech Commands v0.02 is {SAMPLE_RATE} Hz")
    if audio.ndim != 1:
        raise TaskError(f"{wav} has {audio.shape[1]} channels; Speech Commands v0.02 is mono")
    return _fit(audio, SAMPLE_RATE)


def _write_splits(partial: Path, splits: dict, progress: bool) -> None:
    """<split>.json and 16000/<split>/*.wav for every split into `partial`."""
    bar = tqdm(total=sum(len(v) for v in splits.values()), desc=partial.name, unit="clip", disable=not progress)
    for split, clips in splits.items():
        audio_dir = partial / str(SAMPLE_RATE) / split
        audio_dir.mkdir(parents=True)
        labels = {}
        for name, wav, start, label in clips:
            sf.write(audio_dir / name, _clip_audio(wav, start), SAMPLE_RATE, subtype="PCM_16")
            labels[name] = [label]
            bar.update()
        (partial / f"{split}.json").write_text(json.dumps(labels, indent=1))
    bar.close()


def _metadata(mode: str, official_test_set: bool) -> dict:
    return {
        "task_name": "speech_commands",
        "version": "v0.0.2",
        "embedding_type": "scene",
        "prediction_type": "multiclass",
        "split_mode": "trainvaltest",
        "sample_duration": 1.0,
        "evaluation": ["top1_acc"],
        "mode": mode,
        "splits": ["train", "valid", "test"],
        "official_test_set": official_test_set,
    }


def build(src: Path, out_root: Path, test_set: Path | None = None, mode: str = "full", progress: bool = True) -> Path:
    """Write OUT_ROOT/speech_commands-v0.0.2-<mode>/ from the v0.02 layout (folder or archive); returns it.

    Written into `<task>.partial/` (marked as ours) and renamed when complete; a folder of the task's name that
    this builder did not write is refused, never deleted."""
    src, out_root = Path(src), Path(out_root)
    task_dir = task_folder(out_root, mode)
    key = {"mode": mode, "official_test_set": test_set is not None}
    if task_done(task_dir, key) or (task_dir / OLD_SPEECH_COMMANDS_DONE).is_file():  # an earlier version's: kept
        return task_dir
    check_ours(task_dir)  # a folder of the task's name that is not ours: refused before any work
    out_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".extract-speech-commands-", dir=out_root) as tmp:
        root = _find_root(safe_extract(src, Path(tmp) / "train") if is_archive(src) else src, "validation_list.txt")
        _find_root(root, "testing_list.txt")
        splits = collect_clips(root, _test_root(Path(test_set), Path(tmp)) if test_set is not None else None)
        partial = start_task(task_dir)
        _write_splits(partial, splits, progress)
    return finish_task(partial, _metadata(mode, test_set is not None), LABELS, key)
