"""Task archives (.tar.gz / .tgz / .tar / .zip as HEAR distributes its tasks): reading their member names and
extracting them safely (no member written outside the destination, no links out, no device files); a file that is
not an archive, or a truncated one, is a TaskError naming it and the way out."""

from __future__ import annotations

import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path

from eval.taskdir import TaskError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def is_archive(path: Path) -> bool:
    return Path(path).is_file() and str(path).lower().endswith(ARCHIVE_SUFFIXES)


DAMAGED = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error)  # what a truncated or foreign archive raises


def _extract_zip(zf: zipfile.ZipFile, archive: Path, dest: Path) -> None:
    root = dest.resolve()
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


def safe_extract(archive: Path, dest: Path) -> Path:
    """Extract a .tar(.gz)/.zip into `dest` refusing any member that would land outside it; return `dest`.

    A file that is not an archive, or a truncated one, is a TaskError naming it."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _extract_zip(zf, archive, dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                # "data" refuses absolute paths, `..`, links out of dest and device files
                tf.extractall(dest, filter="data")
        else:
            raise TaskError(f"{archive} is neither a zip nor a tar archive (whatever its name says): give the "
                            f"task's .tar.gz or .zip as downloaded, or the extracted folder")
    except tarfile.FilterError as e:
        raise TaskError(f"{archive}: unsafe member refused ({e})") from e
    except DAMAGED as e:
        raise TaskError(f"{archive} is damaged or truncated ({type(e).__name__}: {e}); download it again") from e
    return dest


def archive_members(archive: Path) -> list[str]:
    """Member names of a .tar(.gz)/.zip without extracting it; a TaskError when it is not a readable archive."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                return zf.namelist()
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                return tf.getnames()
    except DAMAGED as e:
        raise TaskError(f"{archive} is damaged or truncated ({type(e).__name__}: {e}); download it again") from e
    raise TaskError(f"{archive} is neither a zip nor a tar archive (whatever its name says): give the task's "
                    f".tar.gz or .zip as downloaded, or the extracted folder")


def archive_stem(path: Path) -> str:
    name = Path(path).name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
