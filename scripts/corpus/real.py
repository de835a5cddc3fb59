"""real: recordings from pinned Debian packages (REAL_SOURCES), fetched and unpacked by eval.debian, decoded and
resampled by hear_maeast.audio, cut into consecutive clips, each file kept only if its licence is in the chosen tier;
the manifest real/sources.csv and the credits real/CREDITS.md. Evaluation audio is refused before anything is
fetched."""

from __future__ import annotations

import csv
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from corpus.clips import MAX_DUR, SR, is_silent, write_wav
from eval.debian import Deb, fetch_unpacked, file_licences
from eval.drums import DEB as DRUM_TASK_DEB  # evaluation audio, never a source
from hear_maeast import audio as hm_audio


@dataclass(frozen=True)
class RealSource:
    """Audio files of one pinned Debian package. licence '' = per file, from the package's DEP-5 copyright file."""

    deb: Deb
    globs: tuple[str, ...]
    best: str               # the most permissive licence among its audio: a source that cannot be kept is not fetched
    licence: str = ""
    what: str = ""


def _deb(package: str, version: str, sha256: str, pool: str) -> Deb:
    return Deb(package, version, sha256, "pool/main/" + pool)


REAL_SOURCES = (
    RealSource(_deb("sonic-pi-samples", "3.2.2~repack-8",
                    "25f2312d2fae005e6ad0f4726b8ed3084e776006a5a132083506e960224ac79d",
                    "s/sonic-pi/sonic-pi-samples_3.2.2~repack-8_all.deb"),
               ("usr/share/sonic-pi/samples/*.flac",), best="CC0", what="instrument, drum and ambient samples, loops"),
    RealSource(_deb("openclonk-data", "8.1-3", "1505314b47196c5052caf75e870ea2cf36bdb4e1d0c7e3f133da93815b7e642f",
                    "o/openclonk/openclonk-data_8.1-3_all.deb"),
               ("usr/share/games/openclonk/Music.ocg/*.ogg",), licence="CC-BY-3.0", best="CC-BY-3.0",
               what="game music by K-Pone (licence from Music.ocg/authors.txt; the copyright file is not DEP-5)"),
    RealSource(_deb("supertuxkart-data", "1.4+dfsg-2",
                    "568d69cda50dc8ad1facb89514bd14953dfca736fdb83c49ae330b0aa7dd2364",
                    "s/supertuxkart/supertuxkart-data_1.4+dfsg-2_all.deb"),
               ("usr/share/games/supertuxkart/data/**/*.ogg",),
               best="CC0", what="game music and sound effects"),
    RealSource(_deb("redeclipse-data", "1.6.0-1", "ada26453d3100bd61154ce20a699352f0b48bb29f8505f477ebdcb612f71ab42",
                    "r/redeclipse-data/redeclipse-data_1.6.0-1_all.deb"),
               ("usr/share/games/redeclipse/data/sounds/**/*.ogg", "usr/share/games/redeclipse/data/sounds/**/*.wav"),
               best="CC0-1.0", what="game music and sound effects"),
    RealSource(_deb("hyperrogue-music", "12.0q-1", "61ab9f4c2169442d85f42c42d26e80c1a18b93c741f3d44f1b9d83015904e7f7",
                    "h/hyperrogue/hyperrogue-music_12.0q-1_all.deb"),
               ("usr/share/hyperrogue/**/*.ogg",),
               best="CC0-1.0", what="game music and sound effects"),
    RealSource(_deb("asterisk-moh-opsound-wav", "2.03-1.1",
                    "8f9d808a729d305c2d3343993f21ca5e6829e411682618dc8ea7aa8bc24a566c",
                    "a/asterisk-moh-opsound/asterisk-moh-opsound-wav_2.03-1.1_all.deb"),
               ("usr/share/asterisk/moh/*.wav",), licence="CC-BY-SA-3.0",
               best="CC-BY-SA-3.0", what="music on hold (copyright file, not DEP-5: CC BY-SA 3.0)"),
    RealSource(_deb("asterisk-prompt-it-menardi-wav", "1:1.4.22+mm20110907-3.1",
                    "3094530d98f8758ac275572d59624c41f60969fef883f34f4886d144f3dfeb21",
                    "a/asterisk-prompt-it/asterisk-prompt-it-menardi-wav_1.4.22+mm20110907-3.1_all.deb"),
               ("usr/share/asterisk/sounds/it_IT_f_Menardi/**/*.wav",),
               best="CC-BY-SA-3.0", what="Italian speech: telephone prompts read by Paola Dal Zot (8 kHz)"),
    RealSource(_deb("megaglest-data", "3.13.0-3", "ed4783d9fc78e201a548b266f7c30325eb16cfd58a20bf4597dd6e622f84a07e",
                    "m/megaglest-data/megaglest-data_3.13.0-3_all.deb"),
               ("usr/share/games/megaglest/**/*.ogg", "usr/share/games/megaglest/**/*.wav"),
               best="CC-BY-SA-3.0", what="game music, voices and sound effects"),
    RealSource(_deb("flare-game", "1.14-1", "4ab6a8298276013d35a0806257e130d992761af1b749041433b409c3dafec508",
                    "f/flare-game/flare-game_1.14-1_all.deb"),
               ("usr/share/games/flare/mods/**/*.ogg",), best="CC-BY-SA-3.0", what="game music and sound effects"),
    RealSource(_deb("freeorion-data", "0.4.10.2-1", "911a15d562f9c2a454eda03d4ed9e9ddc01be850d415652f257fe14660896017",
                    "f/freeorion/freeorion-data_0.4.10.2-1_all.deb"),
               ("usr/share/games/freeorion/default/data/sound/**/*.ogg",
                "usr/share/games/freeorion/default/data/sound/**/*.wav"),
               best="CC-BY-SA-3.0", what="game music and sound effects"),
)
REAL_TIERS = ("permissive", "share-alike")
REAL_SEGMENT_S = MAX_DUR    # long recordings are cut into clips of the synthetic clips' longest length
REAL_MIN_S = 0.5            # shorter pieces (and shorter files) are dropped
HELD_OUT = re.compile(r"asterisk-core-sounds-.*|" + re.escape(DRUM_TASK_DEB.package))


def licence_tier(licence: str) -> str | None:
    """'permissive', 'share-alike' or None (anything else, GPL included) for a DEP-5 licence short name; of
    alternatives ("A or B") the most permissive counts."""
    tiers = set()
    for alt in re.split(r"\s+or\s+", licence.strip().lower()):
        if re.fullmatch(r"cc0(-1\.0)?|public-domain|pd|cc-by-[34]\.0\+?|mit|expat|isc|zlib|bsd-[23]-clause", alt):
            tiers.add("permissive")
        elif re.fullmatch(r"cc-(by-sa|sa-by)(-[34]\.0)?(\+|-[a-z]{2})?", alt):  # -us, -au: ported versions
            tiers.add("share-alike")
    return next((t for t in REAL_TIERS if t in tiers), None)


def allowed(licence: str, tier: str) -> bool:
    got = licence_tier(licence)
    return got is not None and REAL_TIERS.index(got) <= REAL_TIERS.index(tier)


def real_files(src: RealSource, root: Path) -> list[tuple[Path, str, str]]:
    """[(file, licence, copyright holders)] of one unpacked package, sorted, every licence (filtered later)."""
    files = sorted({f for g in src.globs for f in root.glob(g) if f.is_file()})
    if src.licence:
        return [(f, src.licence, "") for f in files]
    return [(f, *file_licences(root, src.deb.package, files)[f]) for f in files]


def real_segments(x: np.ndarray) -> list[np.ndarray]:
    """Consecutive REAL_SEGMENT_S pieces of a 16 kHz recording; short or silent pieces dropped."""
    n, keep = int(REAL_SEGMENT_S * SR), []
    for a in range(0, len(x), n):
        piece = x[a:a + n]
        if len(piece) >= REAL_MIN_S * SR and not is_silent(piece):
            keep.append(piece)
    return keep


def real_clips(f: Path, stem: str, folder: Path, wanted: bool) -> list[Path]:
    """The clips of one recording: made once (a marker in FOLDER/.done says a file is complete), removed when the
    file is not wanted (its licence is outside the tier asked for)."""
    marker = folder / ".done" / stem
    clips = sorted(p for p in folder.glob(f"{stem}-*.wav") if re.fullmatch(re.escape(stem) + r"-\d{3}\.wav", p.name))
    if not wanted or not marker.is_file():
        for p in clips:
            p.unlink()
        marker.unlink(missing_ok=True)
        clips = []
    if wanted and not marker.is_file():
        for k, piece in enumerate(real_segments(hm_audio.load_audio(f).numpy().astype(np.float64))):
            clips.append(folder / f"{stem}-{k:03d}.wav")
            write_wav(clips[-1], piece)
        marker.parent.mkdir(exist_ok=True)
        marker.write_text(str(len(clips)))
    return clips


def build_real_source(src: RealSource, out_dir: Path, cache: Path, tier: str) -> list[dict]:
    """OUT_DIR/real/<package>/<file>-<k>.wav for every file whose licence is in `tier`; their manifest rows."""
    if HELD_OUT.fullmatch(src.deb.package):
        raise ValueError(f"{src.deb.package} is evaluation audio and must never be in the pretraining corpus")
    folder = out_dir / "real" / src.deb.package
    if not allowed(src.best, tier):  # nothing of it can be kept: do not download it
        shutil.rmtree(folder, ignore_errors=True)
        return []
    root = fetch_unpacked(src.deb, cache)
    files = real_files(src, root)
    common = Path(os.path.commonpath([f.parent for f, _, _ in files])) if files else root
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for f, licence, holders in files:
        stem = re.sub(r"[^A-Za-z0-9.-]+", "_", f.relative_to(common).with_suffix("").as_posix())[:120]
        for clip in real_clips(f, stem, folder, allowed(licence, tier)):
            rows.append({"file": clip.relative_to(out_dir).as_posix(), "package": src.deb.package,
                         "version": src.deb.version, "source": f.relative_to(root).as_posix(), "licence": licence,
                         "copyright": holders, "seconds": round(sf.info(clip).frames / SR, 3)})
    return rows


def build_real(out_dir: Path, cache: Path, tier: str) -> list[dict]:
    """Every source in turn; the manifest OUT_DIR/real/sources.csv lists what was kept."""
    rows = []
    for src in REAL_SOURCES:
        t0 = time.time()
        got = build_real_source(src, out_dir, cache, tier)
        secs = sum(r["seconds"] for r in got)
        print(f"[real] {src.deb.package:32s} {len(got):5d} clips {secs / 3600:6.2f} h  ({time.time() - t0:.0f} s)",
              flush=True)
        rows += got
    with open(out_dir / "real" / "sources.csv.tmp", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["file"])
        writer.writeheader()
        writer.writerows(rows)
    os.replace(out_dir / "real" / "sources.csv.tmp", out_dir / "real" / "sources.csv")
    write_credits(rows, out_dir / "real" / "CREDITS.md")
    return rows


def write_credits(rows: list[dict], path: Path) -> None:
    """The attribution CC BY asks for, one section per package: for each licence its share of the audio and the
    copyright holders of the files kept (the package's own note when its copyright file names none). Shipped next
    to weights trained on the corpus (hear_maeast/weights/CREDITS.md)."""
    notes = {src.deb.package: src.what for src in REAL_SOURCES}
    lines = ["# Credits: the real recordings in the pretraining corpus", "",
             "Built by `scripts/build_corpus.py`; every clip, with its source file, is listed in `real/sources.csv`.",
             "The recordings themselves are not distributed here.", ""]
    for package in dict.fromkeys(r["package"] for r in rows):
        mine = [r for r in rows if r["package"] == package]
        lines += [f"## {package} {mine[0]['version']} (Debian)", ""]
        for licence in sorted({r["licence"] for r in mine}):
            kept = [r for r in mine if r["licence"] == licence]
            holders = sorted({r["copyright"].strip() for r in kept if r["copyright"].strip()})
            lines.append(f"- {licence}: {len(kept)} clips, {sum(r['seconds'] for r in kept) / 60:.1f} min; "
                         + ("; ".join(holders) if holders else notes[package]))
        lines.append("")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, path)
