"""`hear-maeast features`: audio -> a feature store, once, so that pretraining reads crops instead of decoding audio.

OUT/manifest.json  format, front end (frontend, n_mels), dtype, layout, clip and frame counts, the normalisation
                   statistics (mean, std over a sample of up to 10,000 clips, as M2D), "complete"
OUT/clips.csv      one row per source file, in the order of sources.txt: file_name (the shard), offset and frames
                   (the clip's rows in the shard), source, error (why an unreadable file was skipped; then no frames)
OUT/sources.txt    the absolute paths of the source files, fixed when the conversion starts (a resume uses it)
OUT/shards/NNNNN.f16  float16 features, time-major [frames, n_mels] rows, clip after clip, about 1 GiB each
OUT/skipped.txt    the unreadable sources and why

Why shards (benchmarks/loader.py, "layouts"): a crop from a memory-mapped shard reads one contiguous block and opens
no file, 3-5x the crops/s of one .npy file per clip, and a few large files suit network file systems better than
millions of small ones.
Resumable: each commit writes the shard data (fsync) before the clip rows that point at it (fsync), so after a kill
the rows are the truth: a re-run truncates the shard to the last committed row and continues from the next source.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from hear_maeast import __version__
from hear_maeast.files import FolderLock, atomic_write
from hear_maeast.errors import BadInput
from hear_maeast.provenance import git_commit
from hear_maeast.timing import HOP, SAMPLE_RATE
from pretrain.data import AudioFiles, Paths, list_file, open_source, read_store
from pretrain.store import CLIP_COLUMNS, CLIPS, MANIFEST, SHARDS, STORE_FORMAT, UnreadableManifest, read_manifest
from pretrain.loader import identity, clip_sums, mean_std, stats_sample
from pretrain.runfolder import clear_temporaries

SOURCES, SKIPPED = "sources.txt", "skipped.txt"
SHARD_BYTES = 2**30
COMMIT_CLIPS, COMMIT_SECONDS = 1000, 10.0
DTYPE = np.float16


class Converted(Dataset):
    """Item i = (i, features [T, F] in the store's dtype, "") or (i, None, why it could not be read)."""

    def __init__(self, audio: AudioFiles):
        self.audio = audio

    def __len__(self) -> int:
        return len(self.audio)

    def __getitem__(self, i: int):
        try:
            x = self.audio.read(i)  # [F, T] float32
            if not np.isfinite(x).all():
                raise ValueError("non-finite features")
            return i, np.ascontiguousarray(x.T.astype(DTYPE)), ""
        except Exception as e:  # noqa: BLE001 - any unreadable file is skipped and listed, never fatal
            return i, None, f"{type(e).__name__}: {e}".strip()


class Journal:
    """clips.csv and the open shard: rows are appended, and committed (shard first, both fsync'd) every so often."""

    def __init__(self, out: Path, n_mels: int, commit_every: int = COMMIT_CLIPS):
        self.out, self.n_mels, self.commit_every = out, n_mels, commit_every
        self.rows, self.last_commit = [], time.monotonic()
        self.done, self.shard_no, self.shard_rows = self._recover()
        (out / SHARDS).mkdir(exist_ok=True)
        self.shard = open(self._shard_path(), "ab")
        self.log = open(out / CLIPS, "a", newline="", encoding="utf-8")
        if self.log.tell() == 0:
            csv.writer(self.log).writerow(CLIP_COLUMNS)

    def _shard_path(self, no: int | None = None) -> Path:
        return self.out / SHARDS / f"{self.shard_no if no is None else no:05d}.f16"

    def _recover(self) -> tuple[int, int, int]:
        """(sources done, current shard, its committed rows) from clips.csv; cuts what a kill left uncommitted."""
        path, done, shard_no, rows = self.out / CLIPS, 0, 0, 0
        if path.exists():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):  # a row cut by the kill
                with open(path, "r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)
            with open(path, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    done += 1
                    if not row["error"]:
                        shard_no = int(Path(row["file_name"]).stem)
                        rows = int(row["offset"]) + int(row["frames"])
        bytes_per_row = self.n_mels * np.dtype(DTYPE).itemsize
        for p in sorted((self.out / SHARDS).glob("*.f16")):
            no = int(p.stem)
            if no > shard_no:
                p.unlink()
            elif no == shard_no and p.stat().st_size != rows * bytes_per_row:
                os.truncate(p, rows * bytes_per_row)
        return done, shard_no, rows

    def add(self, source: str, x: np.ndarray | None, why: str) -> None:
        if x is None:
            self.rows.append(["", "", "", source, why])
        else:
            if self.shard_rows and (self.shard_rows + len(x)) * x.shape[1] * x.itemsize > SHARD_BYTES:
                self.commit()
                self.shard.close()
                self.shard_no, self.shard_rows = self.shard_no + 1, 0
                self.shard = open(self._shard_path(), "ab")
            self.shard.write(x.tobytes())
            self.rows.append([f"{SHARDS}/{self._shard_path().name}", self.shard_rows, len(x), source, ""])
            self.shard_rows += len(x)
        self.done += 1
        if len(self.rows) >= self.commit_every or time.monotonic() - self.last_commit > COMMIT_SECONDS:
            self.commit()

    def commit(self) -> None:
        self.shard.flush()
        os.fsync(self.shard.fileno())  # the data first: a committed row never points past the shard's end
        csv.writer(self.log).writerows(self.rows)
        self.log.flush()
        os.fsync(self.log.fileno())
        self.rows, self.last_commit = [], time.monotonic()

    def close(self) -> None:
        self.commit()
        self.shard.close()
        self.log.close()


def list_sources(audio: str, out: Path, cfg, data_root) -> Paths:
    """The source files, fixed at the first run in OUT/sources.txt (absolute paths) so that a resume sees the same list."""
    path = out / SOURCES
    if not path.exists():
        try:
            source = open_source(audio, cfg, data_root)
        except BadInput as e:  # its messages name pretrain's option; here the folder or list is an argument
            raise BadInput(str(e).removeprefix("--data ")) from None
        if not isinstance(source, AudioFiles):
            raise BadInput(f"{audio}: holds feature files, not audio; train on it directly with `pretrain --data`")
        atomic_write(path, lambda tmp: Path(tmp).write_text(
            "".join(os.path.abspath(source.name(i)) + "\n" for i in range(len(source))), encoding="utf-8"))
    return Paths.build(list_file(path))


def existing_manifest(out: Path, cfg, audio: str) -> dict | None:
    """The manifest of the store already in OUT, made for this front end from this AUDIO; None for a new store.
    A manifest that is not JSON (cut short) leaves nothing to trust: the store is started over."""
    if not (out / MANIFEST).exists():
        return None
    try:
        manifest = read_manifest(out)
    except UnreadableManifest as e:
        if not (out / SOURCES).is_file():  # not a store of ours: never delete it
            raise BadInput(f"OUT {out}: {e}".replace(f"--data {out}: ", "")) from None
        print(f"note: {out}: {MANIFEST} is unreadable; converting the audio again from the start", file=sys.stderr)
        for p in [out / MANIFEST, out / CLIPS, out / SKIPPED, out / SOURCES, *(out / SHARDS).glob("*.f16")]:
            p.unlink(missing_ok=True)
        return None
    if (manifest.get("frontend"), manifest.get("n_mels")) != (cfg.frontend, cfg.n_mels):
        raise BadInput(f"{out} holds a store of {manifest.get('n_mels')} {manifest.get('frontend')} features; "
                       f"--preset {cfg.name} makes {cfg.n_mels} {cfg.frontend}: choose another OUT")
    if os.path.realpath(str(manifest.get("source"))) != os.path.realpath(audio):
        raise BadInput(f"{out} holds the features of {manifest.get('source')}, not of {audio}: choose another OUT "
                       f"(or delete {out} to convert {audio} into it)")
    return manifest


def start_manifest(out: Path, cfg, audio: str) -> dict:
    """The manifest of a new store."""
    manifest = dict(format=STORE_FORMAT, frontend=cfg.frontend, n_mels=cfg.n_mels, dtype=np.dtype(DTYPE).name,
                    layout="time-major [frames, n_mels] rows per clip", sample_rate=SAMPLE_RATE, hop=HOP, preset=cfg.name,
                    source=os.path.abspath(audio), version=__version__, git_commit=git_commit(), complete=False)
    atomic_write(out / MANIFEST, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1)))
    return manifest


def convert(audio: AudioFiles, journal: Journal, workers: int) -> None:
    items = DataLoader(Converted(audio), batch_size=None, sampler=range(journal.done, len(audio)), num_workers=workers,
                       collate_fn=identity, **(dict(prefetch_factor=8) if workers else {}))
    bar = tqdm(items, total=len(audio), initial=journal.done, desc="features", unit="file", dynamic_ncols=True)
    for i, x, why in bar:
        journal.add(audio.paths[i], x, why)
    journal.close()


def finish(out: Path, manifest: dict, workers: int) -> dict:
    """Statistics from a sample of the clips, skipped.txt, then the manifest marked complete."""
    store = read_store(out, require_complete=False)
    rows = list(csv.DictReader(open(out / CLIPS, newline="", encoding="utf-8")))
    skipped = [(r["source"], r["error"]) for r in rows if r["error"]]
    atomic_write(out / SKIPPED, lambda tmp: Path(tmp).write_text("".join(f"{s}\t{e}\n" for s, e in skipped), encoding="utf-8"))
    manifest = dict(manifest, clips=len(store), skipped=len(skipped), frames=int(store.frames.sum()),
                    hours=round(float(store.frames.sum()) * HOP / SAMPLE_RATE / 3600, 3))
    if len(store):
        sample = stats_sample(len(store))
        sums, _ = clip_sums(store, sample, workers)
        mean, std = mean_std(sums)
        manifest.update(norm_mean=mean, norm_std=std, stats_clips=len(sample))
    manifest["complete"] = True
    atomic_write(out / MANIFEST, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1)))
    return dict(manifest, skipped_files=skipped)


def build_store(audio: str, out, cfg, workers: int = 0, data_root=None, commit_every: int = COMMIT_CLIPS) -> dict:
    """Convert the audio files of `audio` (folder, list, CSV or fairseq .tsv) into a feature store in `out` for the
    front end of `cfg`; resumes an unfinished store. Returns the manifest (plus the skipped files).
    commit_every: clips per commit (at most this many, or 10 s of work, are redone after a kill)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"OUT {out}: exists and is not a folder")
    lock = FolderLock(out, "OUT").acquire()
    try:
        clear_temporaries(out)
        manifest = existing_manifest(out, cfg, audio)
        paths = list_sources(audio, out, cfg, data_root)  # before a new manifest: a bad AUDIO leaves none behind
        manifest = manifest or start_manifest(out, cfg, audio)
        if manifest.get("complete"):
            read_store(out)  # a finished store that disagrees with itself is refused, not called complete
            print(f"{out}: already complete ({manifest['clips']} clips of {audio}); nothing to do", file=sys.stderr)
            return dict(manifest, skipped_files=[])
        source = AudioFiles(Path("/"), paths, cfg, audio)
        convert(source, Journal(out, cfg.n_mels, commit_every), workers)
        return finish(out, manifest, workers)
    finally:
        lock.release()
