"""`hear-maeast tasks resample`: a HEAR task tree at another sample rate.

The official HEAR 2021 archives on Zenodo hold 48 kHz audio only (the small open tasks 44.1 kHz); a 16 kHz
model reads only `<task>/16000/<split>/`. This writes that folder, copying the metadata and label files, with
the package's one resampler, `hear_maeast.audio.resample` (soxr). Every clip of n samples at rate r becomes round(n * sr / r) samples,
so clips of equal length within a split stay equal. Finished files are kept on a re-run (writes are atomic).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from eval.archives import archive_members, archive_stem, is_archive, safe_extract
from eval.taskdir import (LABEL_VOCABULARY, METADATA, TaskError, audio_info, check_task, child_path, find_tasks,
                          locate_tasks_root, read_audio, sample_rates, task_splits)
from hear_maeast.errors import BadInput

DONE = ".resample-done"
MIN_RATE, MAX_RATE = 1000, 192000  # Hz; HEAR tasks use 16000 to 48000, and memory grows with the rate


def check_rate(sr) -> int:
    """`sr` when it is a sample rate this command writes; BadInput (exit 2) otherwise."""
    if isinstance(sr, bool) or not isinstance(sr, int) or not MIN_RATE <= sr <= MAX_RATE:
        raise BadInput(f"--sr {sr!r}: expected a sample rate in Hz from {MIN_RATE} to {MAX_RATE} (HEAR models use "
                       f"16000 to 48000)")
    return sr


def _write_atomic(path: Path, audio: np.ndarray, sr: int, subtype: str) -> None:
    tmp = path.with_name(path.name + ".part.wav")
    if subtype.startswith("PCM"):
        audio = np.clip(audio, -1.0, 1.0)
    sf.write(tmp, audio, sr, subtype=subtype)
    tmp.replace(path)


def resample_file(src: Path, dst: Path, sr: int) -> None:
    """One clip -> `dst` at `sr` Hz, in the source's sample format; a TaskError naming a clip that cannot be read."""
    from hear_maeast.audio import resample as resample_audio  # torch: imported when there is audio to resample

    subtype = audio_info(src).subtype
    audio, file_sr = read_audio(src, always_2d=False)  # [n] or [n, channels]
    if file_sr != sr:
        audio = resample_audio(audio, file_sr, sr)
    _write_atomic(dst, audio, sr, subtype)


def _copy_task_files(task_dir: Path, out_task_dir: Path, splits: list[str]) -> None:
    out_task_dir.mkdir(parents=True, exist_ok=True)
    for name in (METADATA, LABEL_VOCABULARY, *(f"{s}.json" for s in splits)):
        shutil.copy2(child_path(task_dir, name, "task file"), child_path(out_task_dir, name, "task file"))


def resample_task(task_dir: Path, out_task_dir: Path, sr: int, progress: bool = True) -> Path:
    """One task folder -> `out_task_dir` with audio at `sr` (from the highest rate the task has)."""
    task_dir, out_task_dir = Path(task_dir), Path(out_task_dir)
    sr = check_rate(sr)
    metadata = check_task(task_dir)
    rates = sample_rates(task_dir)
    if not rates:
        raise TaskError(f"{task_dir} has no audio folder (<sample_rate>/<split>/*.wav); nothing to resample")
    src_sr = sr if sr in rates else max(rates)  # downsample from the best copy there is
    splits = task_splits(metadata, task_dir / METADATA)  # plain names: checked against path traversal
    _copy_task_files(task_dir, out_task_dir, splits)
    jobs = []
    for split in splits:
        src_dir = task_dir / str(src_sr) / split
        if not src_dir.is_dir():
            raise TaskError(f"{task_dir} has no audio folder {src_sr}/{split}/ (its metadata lists split {split!r})")
        dst_dir = out_task_dir / str(sr) / split
        dst_dir.mkdir(parents=True, exist_ok=True)
        jobs += [(f, dst_dir / f.name) for f in sorted(src_dir.glob("*.wav")) if not (dst_dir / f.name).exists()]
    for src, dst in tqdm(jobs, desc=f"{task_dir.name} {src_sr}->{sr} Hz", disable=not progress or not jobs, unit="clip"):
        resample_file(src, dst, sr)
    (out_task_dir / DONE).write_text(f"{task_dir.name} {src_sr} -> {sr}\n")
    return out_task_dir


def _archive_task_names(archive: Path) -> list[str]:
    """Names of the task folders inside an archive (the parents of its task_metadata.json members)."""
    names = {Path(n).parent.name for n in archive_members(archive) if Path(n).name == METADATA}
    return sorted(n for n in names if n not in ("", ".", ".."))  # odd ones are refused when extracting


def resample_tree(src: Path, dst_root: Path, sr: int, progress: bool = True) -> list[Path]:
    """A task folder, tasks root, or archive of either -> DST_ROOT/<task>/ at `sr`. Returns the task folders written."""
    src, dst_root = Path(src), Path(dst_root)
    sr = check_rate(sr)
    if not src.exists():
        raise BadInput(f"{src} does not exist")
    if is_archive(src):
        names = _archive_task_names(src)
        if names and all((dst_root / n / DONE).is_file() and (dst_root / n / str(sr)).is_dir() for n in names):
            return [dst_root / n for n in names]  # done before: no need to extract again
        dst_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".extract-{archive_stem(src)}-", dir=dst_root) as tmp:
            root = locate_tasks_root(safe_extract(src, Path(tmp)))
            return resample_tree(root, dst_root, sr, progress)
    tasks = find_tasks(src)
    for task in tasks:
        check_task(task)
    dst_root.mkdir(parents=True, exist_ok=True)
    return [resample_task(t, dst_root / t.name, sr, progress) for t in tasks]
