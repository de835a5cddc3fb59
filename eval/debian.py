"""Debian packages as a source of free, real audio: fetch a pinned .deb, unpack it, read each file's licence.

Debian ships recorded music, drum kits and sound effects under free licences, and its archive is reachable from
any machine that can install packages. Every package is pinned (version and SHA-256 of the .deb, from Debian 12
"bookworm"), so what is built from it is the same everywhere. A .deb is fetched, in this order, from:

1. the cache folder (a file whose SHA-256 matches);
2. `apt-get download <package>=<version>` (no root needed; uses the machine's own mirror and proxy settings);
Nothing else: packages come through the machine's own package client, as any other install does.

`unpack` needs `dpkg-deb` (Debian and Ubuntu have it). `file_licences` reads the package's machine-readable
copyright file (DEP-5) and gives every audio file the licence of the last stanza whose `Files:` pattern matches it
(see hear_maeast/weights/MODEL_CARD.md for the sources the corpus uses and why).
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hear_maeast.errors import WorkFailed
from hear_maeast.provenance import file_sha256



class PackageUnavailable(WorkFailed):
    """A pinned package could not be fetched or unpacked here; the message says what was tried and what to do."""


@dataclass(frozen=True)
class Deb:
    """One pinned Debian package: `pool` is its path under a mirror's root (the `Filename:` of `apt-cache show`)."""

    package: str
    version: str
    sha256: str
    pool: str

    @property
    def filename(self) -> str:
        return Path(self.pool).name


def _apt_download(deb: Deb, cache: Path) -> str:
    """Try `apt-get download` into `cache` under the pool's file name; returns '' on success, else why not."""
    if shutil.which("apt-get") is None:
        return "apt-get not found"
    try:
        run = subprocess.run(["apt-get", "download", f"{deb.package}={deb.version}"], cwd=cache, capture_output=True,
                             text=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as e:
        return f"apt-get download failed ({e})"
    if run.returncode:
        errors = [ln for ln in run.stderr.splitlines() if ln.startswith("E:")]
        return errors[-1] if errors else f"apt-get download exit {run.returncode}"
    for got in cache.glob(f"{deb.package}_*.deb"):  # apt writes an epoch as %3a; the pool name has none
        if got.name != deb.filename and file_sha256(got) == deb.sha256:
            got.replace(cache / deb.filename)
    return ""


def fetch(deb: Deb, cache: Path) -> Path:
    """The verified .deb of `deb` in `cache` (downloaded when missing). Raises PackageUnavailable."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / deb.filename
    why = []
    for step in (None, _apt_download):
        if step is not None and (err := step(deb, cache)):
            why.append(err)
        if target.is_file():
            if file_sha256(target) == deb.sha256:
                return target
            why.append(f"{target.name} has another SHA-256 (a different build); removed")
            target.unlink()
    raise PackageUnavailable(
        f"cannot fetch Debian package {deb.package} {deb.version} ({'; '.join(why)}). Put {deb.filename} "
        f"(SHA-256 {deb.sha256[:16]}...) in {cache}, or run `apt-get update` so that apt can download it"
    )


def unpack(deb_file: Path, dest: Path, label: str = "") -> Path:
    """`dpkg-deb -x` into `dest` (skipped when `dest` is already complete), `label` (default: the file's path)
    written to dest/.unpacked when done; returns `dest`."""
    dest = Path(dest)
    done = dest / ".unpacked"
    if done.is_file():
        return dest
    if shutil.which("dpkg-deb") is None:
        raise PackageUnavailable(f"dpkg-deb not found: cannot unpack {deb_file} (install dpkg, or use Debian/Ubuntu)")
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    run = subprocess.run(["dpkg-deb", "-x", str(deb_file), str(partial)], capture_output=True, text=True)
    if run.returncode:
        raise PackageUnavailable(f"dpkg-deb -x {deb_file} failed: {run.stderr.strip()[:300]}")
    (partial / done.name).write_text(label or str(deb_file))
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    return dest


def fetch_unpacked(deb: Deb, cache: Path) -> Path:
    """Fetch and unpack `deb` under `cache` (CACHE/<file>.deb, CACHE/<package>_<version>/); returns the root.
    A tree unpacked earlier from the same verified file is used as it is (hashing 4 GB of .deb takes minutes)."""
    root = Path(cache) / f"{deb.package}_{deb.version}"
    marker = root / ".unpacked"
    if marker.is_file() and marker.read_text().strip() == deb.sha256:
        return root
    shutil.rmtree(root, ignore_errors=True)
    return unpack(fetch(deb, cache), root, deb.sha256)


# ----------------------------------------------------------------------------------------------- licences
def parse_dep5(text: str) -> list[tuple[list[str], str, str]]:
    """(Files patterns, licence short name, Copyright text) for every stanza of a DEP-5 copyright file, in order."""
    stanzas, cur, key = [], {}, None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if cur:
                stanzas.append(cur)
            cur, key = {}, None
        elif line[0] in " \t" and key:
            cur[key] += "\n" + line.strip()
        elif m := re.match(r"([A-Za-z-]+):\s*(.*)", line):
            key = m.group(1).lower()
            cur[key] = m.group(2)
    return [(s["files"].split(), s["license"].split("\n")[0].strip(), " ".join(s.get("copyright", "").split()))
            for s in stanzas if "files" in s and "license" in s]


def _matches(path: str, pattern: str) -> bool:
    """DEP-5 patterns name paths in the source tree; installed paths differ in their leading folders
    (`etc/samples/x.flac` is installed as `usr/share/sonic-pi/samples/x.flac`), so a pattern also matches when a
    tail of it that still names a folder or a file matches the end of the path."""
    if pattern == "*":
        return True
    parts = pattern.strip("/").split("/")
    for i in range(len(parts)):
        tail = parts[i:]
        if all(set(p) <= set("*?") for p in tail):
            break  # a tail of wildcards only would match every file
        if fnmatch.fnmatchcase(path, "*/" + "/".join(tail)) or fnmatch.fnmatchcase(path, "/".join(tail)):
            return True
    return False


def file_licences(root: Path, package: str, files: list[Path]) -> dict[Path, tuple[str, str]]:
    """{file: (licence, copyright)} from ROOT/usr/share/doc/PACKAGE/copyright; ('', '') where it names none."""
    copyright_file = Path(root) / "usr/share/doc" / package / "copyright"
    rules = parse_dep5(copyright_file.read_text(errors="replace")) if copyright_file.is_file() else []
    out = {}
    for f in files:
        rel = Path(f).relative_to(root).as_posix()
        found = ("", "")
        for patterns, licence, holders in rules:  # the last matching stanza wins (DEP-5)
            if any(_matches(rel, p) for p in patterns):
                found = (licence, holders)
        out[f] = found
    return out
