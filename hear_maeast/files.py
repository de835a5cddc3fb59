"""File helpers without torch (the CLI, `eval` and `table` import them at the top, before any model is needed)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), fsync, then rename over `path`: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; checkpoints are shared like any other file
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        named = _naming(e, path)
        if named is e:
            raise
        raise named from e


def _naming(e: BaseException, path: Path) -> BaseException:
    """An OS error while writing `path` (disk full ...) as an OSError that names it; writers such as numpy's and
    safetensors' report ENOSPC without the file, safetensors inside its own exception type."""
    if isinstance(e, OSError):
        return OSError(e.errno, e.strerror or str(e), str(path))
    m = re.search(r"os error (\d+)", str(e)) if isinstance(e, Exception) else None
    return OSError(int(m[1]), os.strerror(int(m[1])), str(path)) if m else e
