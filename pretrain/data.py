"""Pretraining data: where the clips are and how one clip's features are read (docs/pretraining.md, "Data").

`open_source(data, cfg)` turns `--data` into one of three sources, each an index held in a few numpy arrays (no
Python object per clip, so memory stays flat in the corpus size and forked loader workers share it):

  FeatureStore  a `hear-maeast features` folder: manifest.json, clips.csv, shards/*.f16 (float16, time-major [T, F];
                the format and its checks: pretrain/store.py)
  NpyFiles      MSM-MAE/M2D log-mel files made by `wav_to_lms.py`: .npy float32 [1, F, T] or [F, T], a folder
                (any sub-folders) or a CSV with a `file_name` column, relative to `--data-root`
  AudioFiles    audio decoded on the fly: a folder (wav/flac/ogg, any sub-folders), a .txt list, a CSV with a
                `file_name` column, or a fairseq manifest (.tsv: a root line, then `relative/path.wav<TAB>samples`)

Startup reads the listing only (manifest, CSV or directory entries): no file is opened, stat'ed or hashed per clip.
A file is checked when a loader worker reads it (`read`, `crop`): an unreadable one raises, and the loader replaces
it (pretrain/loader.py). Only the first readable file is looked at before training, to refuse a corpus whose
features do not fit the preset (80 log-mel vs 128 fbank bins, wrong rank) with the file named.
"""

from __future__ import annotations

import csv
import os
from array import array
from pathlib import Path

import numpy as np
import torch

from hear_maeast.audio import AUDIO_EXTENSIONS, load_audio
from hear_maeast.errors import BadInput
from hear_maeast.files import open_regular
from pretrain.store import CLIPS, MANIFEST, clip_rows, damaged, read_manifest
from pretrain.store import CLIP_COLUMNS, SHARDS, STORE_FORMAT, UnreadableManifest  # noqa: F401 - pretrain.data's names

SEGMENT_FRAMES = 6000  # audio decoded on the fly goes through the front end a minute at a time (bounded memory)
LIST_SUFFIXES = (".txt", ".lst", ".list")


class WrongShape(BadInput):
    """A feature file that does not fit the preset's front end: refused before training, replaced during it."""


# ---- an index of relative paths in two numpy arrays ----------------------------------------------------------------
class Paths:
    """Many paths as UTF-8 bytes in one array plus end offsets: about len(path) + 8 bytes per clip, one object."""

    def __init__(self, blob: np.ndarray, ends: np.ndarray):
        self.blob, self.ends = blob, ends

    @classmethod
    def build(cls, names) -> "Paths":
        blob, ends = bytearray(), array("q")
        for name in names:
            blob += name.encode("utf-8", "surrogateescape")
            ends.append(len(blob))
        return cls(np.frombuffer(blob, np.uint8), np.frombuffer(ends, np.int64) if ends else np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> str:
        start = int(self.ends[i - 1]) if i > 0 else 0
        return self.blob[start : int(self.ends[i])].tobytes().decode("utf-8", "surrogateescape")

    @property
    def nbytes(self) -> int:
        return self.blob.nbytes + self.ends.nbytes


def walk(root: Path, suffixes: tuple[str, ...]):
    """Relative paths of the files under `root` whose suffix is in `suffixes`, in a fixed order (names sorted in
    each folder, depth first). Directory entries only: no stat per file."""
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(root / rel if rel else root) as it:
            entries = sorted((e.name, _is_dir(e)) for e in it)
        subdirs = []
        for name, is_dir in entries:
            path = f"{rel}/{name}" if rel else name
            if is_dir:
                subdirs.append(path)
            elif os.path.splitext(name)[1].lower() in suffixes:
                yield path
        stack.extend(reversed(subdirs))


def _is_dir(entry: os.DirEntry) -> bool:
    """A link loop is not a folder: listed as a file, it is refused (and named) when a worker opens it."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def csv_column(path: Path, column: str = "file_name"):
    """The values of one column of a CSV file, streamed."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if column not in (reader.fieldnames or []):
            raise BadInput(f"--data {path}: a CSV list needs a {column!r} column (as M2D's file lists), "
                           f"found {reader.fieldnames}")
        for row in reader:
            if row[column]:
                yield row[column]


# ---- sources -------------------------------------------------------------------------------------------------------
class Source:
    """n clips of features [n_mels, T]; `read(i)` and `crop(i, ...)` raise on an unreadable or unfit file."""

    n_mels: int
    description: str

    def __len__(self) -> int:
        raise NotImplementedError

    def name(self, i: int) -> str:
        raise NotImplementedError

    @property
    def index_bytes(self) -> int:
        """Memory held per clip by the index (numpy arrays only)."""
        return self.paths.nbytes

    def read(self, i: int) -> np.ndarray:
        """Clip i's features, [F, T] (float16 or float32; possibly a view of a memory map)."""
        raise NotImplementedError

    def crop(self, i: int, frames: int, u: float) -> np.ndarray:
        """`frames` frames of clip i starting at floor(u * (T - frames + 1)), NaN-padded when T < frames: [F, frames]."""
        x = self.read(i)
        return pad_crop(x[:, crop_start(x.shape[1], frames, u):][:, :frames], frames)

    def check_first(self, tries: int = 16) -> None:
        """Read the first readable of the first `tries` clips: raises WrongShape if features do not fit."""
        errors = []
        for i in range(min(tries, len(self))):
            try:
                self.read(i)
                return
            except WrongShape:
                raise
            except Exception as e:  # noqa: BLE001 - an unreadable file is replaced later, never fatal on its own
                errors.append(f"{self.name(i)}: {e}")
        if errors:
            raise BadInput(f"--data {self.description}: the first {len(errors)} files are all unreadable "
                           f"(first: {errors[0]}); is the data complete?")


def crop_start(t: int, frames: int, u: float) -> int:
    return int(u * (t - frames + 1)) if t > frames else 0


def pad_crop(x: np.ndarray, frames: int) -> np.ndarray:
    """[F, t <= frames] -> [F, frames], a float copy, NaN where there was no audio (the loop makes it the mean)."""
    out = np.full((x.shape[0], frames), np.nan, dtype=x.dtype if x.dtype in (np.float16, np.float32) else np.float32)
    out[:, : x.shape[1]] = x
    if not np.isfinite(out[:, : x.shape[1]]).all():
        raise ValueError("non-finite values (NaN/Inf) in the features")
    return out


def fit_shape(x: np.ndarray, n_mels: int, where: str) -> np.ndarray:
    """[1, F, T] or [F, T] -> [F, T] with F == n_mels, or WrongShape naming the file."""
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2 or x.shape[1] == 0:
        raise WrongShape(f"{where}: features of shape {list(x.shape)}; expected [1, F, T] or [F, T] (MSM-MAE/M2D layout)")
    if x.shape[0] != n_mels:
        raise WrongShape(f"{where}: {x.shape[0]} frequency bins, the preset's front end makes {n_mels} "
                         "(80 log-mel: msm-mae presets; 128 fbank: mae-ast presets); choose a matching preset, or "
                         "convert the audio with `hear-maeast features --preset P`")
    if not np.issubdtype(x.dtype, np.floating):
        raise WrongShape(f"{where}: features of dtype {x.dtype}; expected float32 (or float16)")
    return x


class NpyFiles(Source):
    """MSM-MAE/M2D log-mel .npy files, read with a memory map (a crop reads only its own columns)."""

    def __init__(self, root: Path, paths: Paths, n_mels: int, description: str):
        self.root, self.paths, self.n_mels, self.description = root, paths, n_mels, description

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, i: int) -> str:
        return str(self.root / self.paths[i])

    def read(self, i: int) -> np.ndarray:
        path = self.name(i)
        os.close(open_regular(path))  # a named pipe would block np.load forever
        return fit_shape(np.load(path, mmap_mode="r", allow_pickle=False), self.n_mels, path)


class AudioFiles(Source):
    """Audio decoded on the fly (hear_maeast.audio.load_audio) and turned into the preset's own front-end features;
    a crop computes only its own frames."""

    def __init__(self, root: Path, paths: Paths, cfg, description: str):
        from hear_maeast.frontend import FrontEnd

        self.root, self.paths, self.description = root, paths, description
        self.n_mels = cfg.n_mels
        self.features = FrontEnd(cfg).features  # un-normalised: [B, samples] -> [B, F, T]

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, i: int) -> str:
        p = Path(self.paths[i])
        return str(p if p.is_absolute() else self.root / p)

    def _wav(self, i: int) -> torch.Tensor:
        wav = load_audio(self.name(i))  # [samples] at 16 kHz, mono
        if wav.numel() == 0 or not torch.isfinite(wav).all():
            raise ValueError("empty audio or non-finite samples")
        return wav

    @torch.no_grad()
    def read(self, i: int) -> np.ndarray:
        wav = self._wav(i)[None]
        t = self.features.num_frames(wav.shape[-1])
        parts = [self.features(wav, s, min(s + SEGMENT_FRAMES, t))[0] for s in range(0, t, SEGMENT_FRAMES)]
        return torch.cat(parts, dim=1).numpy()  # [F, T]

    @torch.no_grad()
    def crop(self, i: int, frames: int, u: float) -> np.ndarray:
        wav = self._wav(i)[None]
        t = self.features.num_frames(wav.shape[-1])
        start = crop_start(t, frames, u)
        return pad_crop(self.features(wav, start, min(start + frames, t))[0].numpy(), frames)


class FeatureStore(Source):
    """A `hear-maeast features` store: clips are [T, F] blocks of float16 shards, each memory-mapped once per process."""

    def __init__(self, root: Path, manifest: dict, shard_names: list[str], shard: np.ndarray, offset: np.ndarray,
                 frames: np.ndarray):
        self.root, self.manifest, self.shard_names = root, manifest, shard_names
        self.shard, self.offset, self.frames = shard, offset, frames  # [n] int32, int64, int64
        self.n_mels, self.description = int(manifest["n_mels"]), str(root)
        self.dtype = np.dtype(manifest["dtype"])
        self._maps: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.offset)

    def name(self, i: int) -> str:
        o = int(self.offset[i])
        return f"{self.root / self.shard_names[self.shard[i]]} frames [{o}, {o + int(self.frames[i])})"

    @property
    def index_bytes(self) -> int:
        return self.shard.nbytes + self.offset.nbytes + self.frames.nbytes

    def _map(self, s: int) -> np.ndarray:
        if s not in self._maps:  # after fork, each worker maps the shards it touches
            m = np.memmap(self.root / self.shard_names[s], dtype=self.dtype, mode="r")
            self._maps[s] = m[: len(m) // self.n_mels * self.n_mels].reshape(-1, self.n_mels)
        return self._maps[s]

    def read(self, i: int) -> np.ndarray:
        o, t = int(self.offset[i]), int(self.frames[i])
        x = self._map(int(self.shard[i]))[o : o + t]  # [T, F]
        if x.shape[0] != t:
            raise ValueError(f"shard truncated: {x.shape[0]} of {t} frames present")
        return x.T  # [F, T], a view

    @property
    def norm_stats(self) -> tuple[float, float] | None:
        m = self.manifest
        return (m["norm_mean"], m["norm_std"]) if m.get("norm_std") else None

    def __getstate__(self):  # memory maps are re-opened by whoever unpickles (spawned workers)
        return dict(self.__dict__, _maps={})


def read_store(root: Path, require_complete: bool = True) -> FeatureStore:
    """Open a store: the manifest and the clip table, checked against each other and against the shards' sizes
    (rows inside shards/, contiguous, non-empty; each shard exactly as long as its rows), so that a store that
    disagrees with itself is refused by name instead of training on misaligned or missing data."""
    manifest = read_manifest(root)
    if require_complete and not manifest.get("complete"):
        raise BadInput(f"--data {root}: the feature store is unfinished; run the same `hear-maeast features` "
                       "command again to finish it")
    names, ends = clip_rows(root, shard := array("i"), offset := array("q"), frames := array("q"))
    row_bytes = int(manifest["n_mels"]) * np.dtype(manifest["dtype"]).itemsize
    for name, rows in zip(names, ends):
        path = root / name
        size = path.stat().st_size if path.is_file() else None
        if size != rows * row_bytes:
            raise damaged(root, f"{name} holds {size if size is not None else 'no file of'} bytes, its {CLIPS} rows "
                                 f"say {rows} frames of {manifest['n_mels']} {manifest['dtype']} bins ({rows * row_bytes})")
    if manifest.get("complete") and (manifest["clips"], manifest["frames"]) != (len(offset), sum(frames)):
        raise damaged(root, f"{MANIFEST} says {manifest['clips']} clips of {manifest['frames']} frames, {CLIPS} lists "
                             f"{len(offset)} of {sum(frames)}")
    arrays = [np.frombuffer(a, dt) if len(a) else np.zeros(0, dt) for a, dt in ((shard, np.int32), (offset, np.int64), (frames, np.int64))]
    return FeatureStore(root, manifest, names, *arrays)


# ---- --data -> a source --------------------------------------------------------------------------------------------
def fairseq_manifest(path: Path):
    """(root, relative paths) of a fairseq/MAE-AST .tsv manifest: a root line, then `path<TAB>num_samples` lines."""
    f = open(path, encoding="utf-8")
    first = f.readline().strip()
    if not first or "\t" in first:
        f.close()
        raise BadInput(f"--data {path}: a fairseq manifest starts with the audio root folder on its first line")

    root = Path(first)

    def rows():
        with f:
            for line in f:
                if line.strip():
                    yield line.split("\t", 1)[0].strip()

    return root, rows()


def list_file(path: Path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                yield line


def open_source(data, cfg, data_root=None) -> Source:
    """`--data` (store folder, .npy folder, audio folder, CSV, fairseq .tsv or .txt list) -> a Source for `cfg`."""
    try:
        return _open_source(Path(data), cfg, data_root)
    except (UnicodeDecodeError, csv.Error) as e:
        raise BadInput(f"--data {data}: not a readable UTF-8 list ({e})") from None


def _open_source(data: Path, cfg, data_root) -> Source:
    if not data.exists():
        raise BadInput(f"--data {data}: no such folder or list file")
    if data.is_dir():
        if (data / MANIFEST).exists():
            return check_store(read_store(data), cfg)
        npy = Paths.build(walk(data, (".npy",)))
        if len(npy):
            return NpyFiles(data, npy, cfg.n_mels, str(data))
        audio = Paths.build(walk(data, AUDIO_EXTENSIONS))
        if not len(audio):
            raise BadInput(f"--data {data}: no .npy feature files and no audio files ({', '.join(AUDIO_EXTENSIONS)}) "
                           "found in it or its sub-folders")
        return AudioFiles(data, audio, cfg, str(data))
    suffix = data.suffix.lower()
    if suffix == ".tsv":
        root, rows = fairseq_manifest(data)
        return nonempty(AudioFiles(root, Paths.build(rows), cfg, str(data)))
    if suffix in LIST_SUFFIXES:
        return nonempty(AudioFiles(data.parent, Paths.build(list_file(data)), cfg, str(data)))
    if suffix == ".csv":
        root = Path(data_root) if data_root else data.parent
        paths = Paths.build(csv_column(data))
        if len(paths) and paths[0].lower().endswith(".npy"):
            return NpyFiles(root, paths, cfg.n_mels, str(data))
        return nonempty(AudioFiles(root, paths, cfg, str(data)))
    raise BadInput(f"--data {data}: expected a folder, a .csv file list (file_name column), a fairseq .tsv manifest "
                   f"or a .txt list of audio files")


def nonempty(source: Source) -> Source:
    if not len(source):
        raise BadInput(f"--data {source.description}: the list names no files")
    return source


def check_store(store: FeatureStore, cfg) -> FeatureStore:
    m = store.manifest
    if (m["frontend"], int(m["n_mels"])) != (cfg.frontend, cfg.n_mels):
        raise WrongShape(f"--data {store.root}: a store of {m['n_mels']} {m['frontend']} bins, the preset {cfg.name} "
                         f"needs {cfg.n_mels} {cfg.frontend} bins; use a matching preset or run `hear-maeast features "
                         f"--preset {cfg.name}`")
    if not len(store):
        raise BadInput(f"--data {store.root}: the store holds no readable clip (see its skipped.txt)")
    return store
