"""`hear-maeast tasks drums`: a real-audio HEAR task from Debian's Hydrogen drum kits (`hydrogen_drums-v1.0-full`).

Which drum of a kit is this hit? Six classes (kick, snare, hihat, tom, cymbal, percussion), 1.0 s clips of real
recorded one-shot samples from the 14 kits of the Debian package `hydrogen-drumkits` (version pinned), 16 kHz mono.
The labels come from the instrument names in each kit's drumkit.xml (LABEL_RULES below; unmatched instruments such
as sticks, whistles or effects are left out). Scene, multiclass, top1_acc, 5 folds.

The folds are made of whole kits, so a model is always tested on kits it was not trained on: velocity layers of
one drum never sit on both sides. Kits that share recordings (the Millo kits; The Black Pearl and Gimme A Hand,
whose hand claps are the same) are one group. Groups go, largest first, to the fold with the fewest clips so far.
Exact duplicate samples (same 16 kHz audio) are kept once. Clips are the first second of each sample (a hit starts
at its sample's start), zero-padded; silent samples are dropped. Deterministic: the same package gives the same
task, byte for byte. The package's audio is never part of the pretraining corpus (scripts/build_corpus.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

from eval.debian import Deb, fetch_unpacked
from eval.taskdir import METADATA, TaskError, audio_info, read_audio
from eval.taskwrite import check_ours, finish_task, start_task, task_done
from hear_maeast.timing import SAMPLE_RATE

TASK = "hydrogen_drums-v1.0-full"
DEB = Deb("hydrogen-drumkits", "2017.09.19~dfsg-1",
          "6ea3c6df9a67762e2362f946c695e619859126b19fbccf32a2e8f07dfd03b2f4",
          "pool/main/h/hydrogen-drumkits/hydrogen-drumkits_2017.09.19~dfsg-1_all.deb")
KITS = "usr/share/hydrogen/data/drumkits"
AUDIO = (".wav", ".flac", ".aif", ".aiff")
CLIP_S = 1.0
NFOLDS = 5
SILENT_PEAK = 1e-3  # a sample whose first second peaks lower holds no hit
LABELS = ["kick", "snare", "hihat", "tom", "cymbal", "percussion"]
# First match wins. None drops the instrument: sticks, clicks, whistles, effects and unnamed ones are no drum.
LABEL_RULES = [
    (None, r"\bstick\b|whistle|zap|\bfx\b|click$|^drum \d|^\d+$|redo"),
    ("percussion", r"cowbell|agogo|tambourine|conga|bongo|cajon|maraca|clave|woodblock|waterglass|djembe|sangban"
                   r"|dununba|kenkeni|clap|snap"),
    ("kick", r"kick|bass ?drum|bassdrum"),
    ("snare", r"snare|rim"),
    ("hihat", r"hh\b|hi-? ?hat|\bhat\b"),
    ("tom", r"\btom|tom\d"),
    ("cymbal", r"crash|ride|china|splash|cymbal|paiste bell"),
]
GROUPS = {"Millo-Drums_v.1": "Millo", "Millo_MultiLayered2": "Millo", "Millo_MultiLayered3": "Millo",
          "The Black Pearl 1.0": "MacArthur", "Gimme A Hand 1.0": "MacArthur"}


def label_of(instrument: str) -> str | None:
    name = instrument.strip().lower()
    for label, pattern in LABEL_RULES:
        if re.search(pattern, name):
            return label
    return None


def kit_samples(kit: Path) -> list[tuple[Path, str]]:
    """[(sample file, label)] of one kit, in drumkit.xml order; each file once (under its first instrument)."""
    root = ET.parse(kit / "drumkit.xml").getroot()
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    out, seen = [], set()
    for inst in root.iter(ns + "instrument"):
        label = label_of(inst.findtext(ns + "name") or "")
        for name in (e.text or "" for e in inst.iter(ns + "filename")):
            path = kit / name
            if label and path.suffix.lower() in AUDIO and path.is_file() and path not in seen:
                seen.add(path)
                out.append((path, label))
    return out


def _clip(path: Path) -> np.ndarray | None:
    """First CLIP_S seconds at 16 kHz mono, zero-padded: [n] float32; None when silent. Reads only that second."""
    from hear_maeast.audio import resample

    n = int(CLIP_S * SAMPLE_RATE)
    rate = audio_info(path).samplerate
    x, _ = read_audio(path, 0, int(np.ceil(CLIP_S * rate)), always_2d=True)  # [N, C]
    x = resample(x.mean(axis=1), rate, SAMPLE_RATE)[:n]  # [<= n]
    if x.size == 0 or np.abs(x).max() < SILENT_PEAK:
        return None
    return np.pad(x, (0, n - len(x)))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_")


def collect(kits_dir: Path) -> list[dict]:
    """Every usable clip: {name, kit, group, label, audio}, duplicates (same int16 audio) kept once, kits sorted."""
    clips, seen = [], set()
    for kit in sorted(p for p in Path(kits_dir).iterdir() if (p / "drumkit.xml").is_file()):
        for path, label in kit_samples(kit):
            audio = _clip(path)
            if audio is None:
                continue
            pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
            digest = hashlib.sha256(pcm.tobytes()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            clips.append({"name": f"{_slug(kit.name)}-{_slug(path.stem)}.wav", "kit": kit.name,
                          "group": GROUPS.get(kit.name, kit.name), "label": label, "audio": pcm})
    return clips


def assign_folds(clips: list[dict], nfolds: int = NFOLDS) -> dict[str, int]:
    """{group: fold}: groups by size (largest first, then name) to the fold with the fewest clips (lowest index)."""
    sizes = Counter(c["group"] for c in clips)
    load = [0] * nfolds
    folds = {}
    for group in sorted(sizes, key=lambda g: (-sizes[g], g)):
        fold = min(range(nfolds), key=lambda i: (load[i], i))
        folds[group] = fold
        load[fold] += sizes[group]
    return folds


def class_balance(clips: list[dict], folds: dict[str, int], nfolds: int = NFOLDS) -> dict[str, dict[str, int]]:
    """{fold name: {label: clips}} plus "all"."""
    out = {f"fold{i:02d}": {label: 0 for label in LABELS} for i in range(nfolds)}
    out["all"] = {label: 0 for label in LABELS}
    for c in clips:
        out[f"fold{folds[c['group']]:02d}"][c["label"]] += 1
        out["all"][c["label"]] += 1
    return out


def write_task(clips: list[dict], out_root: Path, source: str) -> Path:
    """Write OUT_ROOT/hydrogen_drums-v1.0-full/ (eval.taskwrite: a .partial folder, renamed when complete)."""
    partial = start_task(Path(out_root) / TASK)
    folds = assign_folds(clips)
    splits = [f"fold{i:02d}" for i in range(NFOLDS)]
    labels = {s: {} for s in splits}
    for c in clips:
        split = splits[folds[c["group"]]]
        (partial / str(SAMPLE_RATE) / split).mkdir(parents=True, exist_ok=True)
        sf.write(partial / str(SAMPLE_RATE) / split / c["name"], c["audio"], SAMPLE_RATE, subtype="PCM_16")
        labels[split][c["name"]] = [c["label"]]
    for split in splits:
        (partial / f"{split}.json").write_text(json.dumps(labels[split], indent=1, sort_keys=True))
    metadata = {
        "task_name": "hydrogen_drums", "version": "v1.0", "mode": "full", "embedding_type": "scene",
        "prediction_type": "multiclass", "split_mode": "presplit_kfold", "nfolds": NFOLDS, "splits": splits,
        "sample_duration": CLIP_S, "evaluation": ["top1_acc"], "source": source,
        "kits_by_fold": {s: sorted({c["kit"] for c in clips if splits[folds[c["group"]]] == s}) for s in splits},
        "class_balance": class_balance(clips, folds),
    }
    return finish_task(partial, metadata, LABELS, {"source": source})


def _built_before(task_dir: Path, source: str) -> bool:
    """A folder an earlier version wrote (no done marker; it renamed the folder into place whole): its metadata
    names this source."""
    try:
        return json.loads((task_dir / METADATA).read_text()).get("source") == source
    except (OSError, ValueError, AttributeError):
        return False


def build(out_root: Path, cache: Path) -> Path:
    """OUT_ROOT/hydrogen_drums-v1.0-full/ from the pinned hydrogen-drumkits package (fetched into CACHE).

    Kept when already complete. Raises eval.debian.PackageUnavailable when the package cannot be fetched.
    """
    task_dir, source = Path(out_root) / TASK, f"Debian {DEB.package} {DEB.version} ({DEB.filename})"
    if task_done(task_dir, {"source": source}) or _built_before(task_dir, source):
        return task_dir
    check_ours(task_dir)  # a folder of the task's name we did not write: refused before the download
    root = fetch_unpacked(DEB, cache)
    kits = root / KITS
    if not kits.is_dir():
        raise TaskError(f"{kits} not found: {DEB.package} {DEB.version} no longer has its drum kits there")
    clips = collect(kits)
    if len(clips) < 500:
        raise TaskError(f"only {len(clips)} usable drum hits in {kits} (expected about 600): the package changed")
    task_dir = write_task(clips, out_root, source)
    shutil.rmtree(root)  # 220 MB unpacked; the .deb stays in CACHE for the next build
    return task_dir
