"""File helpers without torch (the CLI, `eval` and `table` import them at the top, before any model is needed)."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
import stat
import sys
import tempfile
import time
from pathlib import Path

from hear_maeast.errors import BadInput

_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def check_output(path, inputs=()) -> None:
    """BadInput unless writing `path` can only ever replace a regular file that is none of `inputs`: a named pipe,
    a device (/dev/null as root) or a folder at `path` would be replaced by a regular file, and an output that is an
    input (the same name, a symlink or a hard link to it: the same inode) would replace what is being read."""
    path = Path(path)
    try:
        st = os.stat(path)  # follows symlinks: a link to /dev/null is a device
    except FileNotFoundError:
        return
    except OSError as e:  # a link loop, a path through a file
        raise BadInput(f"{path}: cannot be written ({e.strerror}); choose another output file") from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise BadInput(f"{path} is {kind}, not a regular file; only a regular file is ever written or replaced "
                       "(choose a file path for the output)")
    for source in inputs:
        try:
            same = os.path.samefile(path, source)
        except OSError:
            continue
        if same:
            what = ("the input file itself" if os.path.abspath(path) == os.path.abspath(source) else
                    f"the input file {source} (the same file, by a link)")
            raise BadInput(f"{path} is {what}; writing it would destroy what is being read: choose another output file")


def atomic_write(path: Path, write, inputs=()) -> None:
    """Call write(tmp_path), fsync, then rename over `path`: readers never see a half-written file. Only a regular
    file that is none of `inputs` is ever replaced (check_output, before writing and again before the rename)."""
    path = Path(path)
    check_output(path, inputs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # a read-only or full location: name the file asked for, not a temporary name
        raise _naming(e, path) from e
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; checkpoints are shared like any other file
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        check_output(path, inputs)  # a pipe or a link put there while writing
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


def open_regular(path) -> int:
    """A read-only descriptor of `path` once it is known to be a regular file (after symlinks), else BadInput naming
    it. Opened non-blocking and checked with fstat before a byte is read: a named pipe `x.wav` would block a reader
    forever, a link to /dev/zero would never end, and checking after the open leaves no window to swap the file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise BadInput(f"{path}: cannot open ({e.strerror}); expected a readable file") from None
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        os.set_blocking(fd, True)
        return fd
    os.close(fd)
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise BadInput(f"{path} is {kind}, not a regular file; only regular files are read (replace it or remove it)")


LOCK_FILE = ".lock"


class FolderLock:
    """An exclusive, non-blocking flock on FOLDER/.lock, held until `release()` or the process's death."""

    def __init__(self, folder: Path, option: str = "--out"):
        self.folder, self.option, self.fd = Path(folder), option, None

    def acquire(self) -> "FolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise BadInput(f"{self.option} {self.folder} is in use by another process ({holder}); wait for it to "
                               f"finish or stop it, or choose another {self.option}") from None
            print(f"warning: cannot lock {self.folder / LOCK_FILE} ({e.strerror}; the file system does not support "
                  "locks): make sure no other process uses this folder", file=sys.stderr, flush=True)
            return self
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock; the file stays (harmless, hidden)
            self.fd = None
