"""The feature store's format on disk (what `hear-maeast features` writes, pretrain/features.py, and `pretrain --data
STORE` reads, pretrain/data.py's `read_store`): manifest.json, clips.csv and shards/*.f16, and the checks of the
manifest and the clip table that refuse a store which disagrees with itself, by name.

  manifest.json  format (STORE_FORMAT), frontend, n_mels, dtype, complete, clips, frames, norm_mean, norm_std, ...
  clips.csv      CLIP_COLUMNS, one row per source file, in order: its shard (file_name), first row (offset) and
                 frames, the source file, or the error that skipped it
  shards/*.f16   float16 rows of n_mels bins, time-major: a clip is rows [offset, offset + frames) of its shard
"""

from __future__ import annotations

import csv
import json
import math
from array import array
from pathlib import Path

from hear_maeast.config import norm_stats_problem
from hear_maeast.errors import BadInput

STORE_FORMAT = "hear_maeast-features/1"
MANIFEST, CLIPS, SHARDS = "manifest.json", "clips.csv", "shards"
CLIP_COLUMNS = ["file_name", "offset", "frames", "source", "error"]  # clips.csv: one row per source file, in order


class UnreadableManifest(BadInput):
    """A store's manifest.json that is not JSON (cut short, overwritten): `features` starts that store over."""


STORE_DTYPES = ("float16", "float32")  # what a shard may hold: np.memmap of "object" would read pointers


def damaged(root: Path, what: str) -> BadInput:
    return BadInput(f"--data {root}: {what}; the feature store is damaged: delete it and run `hear-maeast features` "
                    "again")


def read_manifest(root: Path) -> dict:
    """A store's manifest.json, checked: an object of our format, a float dtype, a bin count, and (when complete)
    clip and frame counts. BadInput saying to re-run `features` (which rewrites an unreadable manifest) otherwise."""
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UnreadableManifest(f"--data {root}: unreadable {MANIFEST} ({e}); run `hear-maeast features AUDIO {root} "
                                 "--preset P` again: it rewrites the manifest and converts the audio again") from e
    if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BadInput(f"--data {root}: {MANIFEST} of format {found!r}, expected {STORE_FORMAT!r}")
    problems = [f"dtype {manifest.get('dtype')!r} is not one of {STORE_DTYPES}"] * (
        manifest.get("dtype") not in STORE_DTYPES)
    if not (_count(manifest.get("n_mels")) and 0 < manifest["n_mels"] <= 1024):
        problems.append(f"n_mels {manifest.get('n_mels')!r} is not a bin count")
    if manifest.get("complete") and not (_count(manifest.get("clips")) and _count(manifest.get("frames"))):
        problems.append("a complete store without whole `clips` and `frames` counts")
    stats = (manifest.get("norm_mean"), manifest.get("norm_std"))
    if stats[1] is not None:
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in stats)
        why = norm_stats_problem(*stats) if numbers and stats[1] > 0 else "expected a finite mean and a std > 0"
        if why:
            problems.append(f"normalisation statistics {list(stats)} are unusable ({why})")
    if problems:
        raise damaged(root, f"{MANIFEST}: " + "; ".join(problems))
    return manifest


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def clip_rows(root: Path, shard: array, offset: array, frames: array) -> tuple[list[str], list[int]]:
    """Fill (shard number, offset, frames) from clips.csv; (shard names, rows used in each). Every row must name a
    file of shards/, and follow the previous row of its shard with at least one frame."""
    names: dict[str, int] = {}
    ends: list[int] = []
    try:
        with open(root / CLIPS, newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                if row.get("error"):
                    continue
                where = f"{CLIPS} line {line}"
                name, o, t = row.get("file_name") or "", _int(row.get("offset")), _int(row.get("frames"))
                parts = name.split("/")
                if len(parts) != 2 or parts[0] != SHARDS or parts[1] in ("", ".", "..") or "\\" in name:
                    raise damaged(root, f"{where}: file_name {name!r} is not a file of its {SHARDS}/ folder")
                s = names.setdefault(name, len(names))
                ends += [0] * (s + 1 - len(ends))
                if o != ends[s] or t is None or t <= 0:
                    raise damaged(root, f"{where}: offset {row.get('offset')!r} and frames {row.get('frames')!r} do "
                                         f"not follow the previous row of {name} (offset {ends[s]}, frames >= 1)")
                ends[s] += t
                shard.append(s)
                offset.append(o)
                frames.append(t)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise damaged(root, f"unreadable {CLIPS} ({e})") from None
    return list(names), ends


def _int(text) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None
