#!/usr/bin/env python3
"""Build the pretraining corpus of the bundled weights: synthetic clips plus real recordings from Debian packages.

No evaluation audio is used: the Debian package of the real drum task (eval/drums.py) and the
asterisk-core-sounds-* packages are refused as sources.

    python3 scripts/build_corpus.py OUT_DIR --seed 0 [--n-speech N --n-music N --n-texture N]
                                    [--real permissive|share-alike|none] [--debian-cache DIR]

Output: 16 kHz mono 16-bit PCM WAV clips of 2-6 s in OUT_DIR/{speech,music,texture}/,
named ``<kind>_<index>.wav``, and OUT_DIR/real/<package>/*.wav (see "real" below). Each
synthetic clip is a pure function of (seed, kind, index), so the build is deterministic and
idempotent: existing files are skipped and a re-run only fills in what is missing.

* speech  -- espeak-ng in many languages/voice variants, speaking random pseudo-words
             written in the language's own script; random speed and pitch; resampled
             to 16 kHz, trimmed/padded, optional low-level noise and synthetic reverb.
* music   -- random General MIDI pieces made with mido (melody, chords, arpeggios,
             bass, pads, drums on channel 9), rendered with fluidsynth + a GM
             soundfont. Many clips are rendered per fluidsynth call (one slot each,
             separated by silent gaps) to amortise the soundfont load time.
* texture -- numpy/scipy environmental-like sounds: filtered modulated noise
             (rain/wind), impulse trains with damped resonances (clicks/knocks),
             sweeps, engine-like harmonic hum, bird-like FM chirps, bubbles, mixtures.

* real    -- recordings from pinned Debian packages (REAL_SOURCES), fetched and unpacked into
             --debian-cache by eval.debian, decoded and resampled to 16 kHz mono by
             hear_maeast.audio, cut into consecutive 6 s clips (a last piece of >= 0.5 s kept,
             silent pieces dropped), at their recorded level. Each file is kept only if its
             licence, read from the package's DEP-5 copyright file (or stated below when the
             package has none), is in the chosen tier: `permissive` (public domain, CC0, CC BY,
             MIT-style: the weights can ship under MIT with the credits in
             hear_maeast/weights/CREDITS.md) or
             `share-alike` (also CC BY-SA). GPL audio is never used. OUT_DIR/real/sources.csv
             lists every clip with its package, version, file, licence and copyright holders;
             OUT_DIR/real/CREDITS.md sums them up per package and licence (ship it with the weights).

Needs: apt packages espeak-ng, fluidsynth, fluid-soundfont-gm; dpkg-deb and a Debian mirror (or
the .deb files in --debian-cache) for the real part; Python numpy, scipy, soundfile, mido, and
this package (hear_maeast). Runs in one process (plus one espeak-ng/fluidsynth child at a time).

The recipe is `main` below; its stages live in scripts/corpus/: clips.py (what every clip shares), speech.py,
music.py, texture.py, real.py, and build.py (clip by clip, retries, the summary).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from corpus.build import DEFAULT_COUNTS, build_music, build_simple, check_tools, summarise  # noqa: E402
from corpus.clips import clip_path  # noqa: E402
from corpus.music import find_soundfont  # noqa: E402
from corpus.real import REAL_TIERS, build_real  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-speech", type=int, default=DEFAULT_COUNTS["speech"])
    p.add_argument("--n-music", type=int, default=DEFAULT_COUNTS["music"])
    p.add_argument("--n-texture", type=int, default=DEFAULT_COUNTS["texture"])
    p.add_argument("--soundfont", default=None, help="GM .sf2 (default: Debian FluidR3_GM)")
    p.add_argument("--real", default="permissive", choices=REAL_TIERS + ("none",),
                   help="real recordings from Debian packages whose licence is in this tier (default: permissive)")
    p.add_argument("--debian-cache", type=Path, default=Path.home() / ".cache" / "hear_maeast" / "debian",
                   help="where the .deb files are kept and unpacked (about 4 GB for share-alike)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    counts = {"speech": args.n_speech, "music": args.n_music, "texture": args.n_texture}
    kinds = [k for k, c in counts.items() if c > 0]
    check_tools(kinds)
    soundfont = find_soundfont(args.soundfont) if counts["music"] > 0 else ""
    failures, t0 = {}, time.time()
    with tempfile.TemporaryDirectory(prefix="build_corpus_") as tmp:
        for kind in kinds:
            (args.out_dir / kind).mkdir(parents=True, exist_ok=True)
            todo = [i for i in range(counts[kind]) if not clip_path(args.out_dir, kind, i).exists()]
            print(f"[{kind}] {counts[kind] - len(todo)} present, {len(todo)} to make", flush=True)
            if kind == "music":
                failures[kind] = build_music(todo, args.out_dir, args.seed, Path(tmp), soundfont)
            else:
                failures[kind] = build_simple(kind, todo, args.out_dir, args.seed, Path(tmp))
    real_rows = [] if args.real == "none" else build_real(args.out_dir, args.debian_cache, args.real)
    summarise(args.out_dir, failures, real_rows)
    print(f"  elapsed  {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
