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
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
import soundfile as sf
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from eval.drums import DEB as DRUM_TASK_DEB  # noqa: E402 - evaluation audio, never a source
from hear_maeast import audio as hm_audio  # noqa: E402
from eval.debian import Deb, fetch_unpacked, file_licences  # noqa: E402

# ----------------------------------------------------------------------------- constants
SR = 16000
MIN_DUR, MAX_DUR = 2.0, 6.0
PEAK_DBFS = -3.0            # peak level before the random gain
MAX_EXTRA_ATTEN_DB = 9.0    # random gain: peak lands in [-12, -3] dBFS
SILENCE_PEAK = 1e-3         # clips with a lower peak count as failures
SILENCE_RMS = 1e-4
MAX_ATTEMPTS = 3            # regenerate a failed clip with a new sub-seed this often

DEFAULT_COUNTS = {"speech": 1500, "music": 1500, "texture": 1000}
KIND_IDS = {"speech": 1, "music": 2, "texture": 3}

SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
MUSIC_BATCH = 40            # clips per fluidsynth call
MUSIC_GAP_S = 3.0           # silence between slots so release/reverb tails die out
MIDI_TPB = 480
MIDI_TEMPO = 480000         # us per beat -> exactly 1 tick per millisecond

# espeak-ng voice -> script used to write its pseudo-words.
SPEECH_VOICES = {
    "latin": ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc",
              "de", "fr-fr", "fr-be", "es", "es-419", "it", "pt", "pt-br", "nl", "sv",
              "nb", "da", "fi", "et", "pl", "cs", "sk", "sl", "hr", "bs", "hu", "ro",
              "tr", "az", "id", "ms", "vi", "sw", "af", "ca", "eu", "cy", "ga", "is",
              "lt", "lv", "sq", "eo", "la", "mt", "ht", "haw", "mi", "qu", "uz", "tn",
              "cmn-latn-pinyin"],
    "cyrillic": ["ru", "uk", "bg", "mk", "sr", "kk", "ky", "tt", "ba"],
    "greek": ["el"],
    "arabic": ["ar", "fa", "ur"],
    "hebrew": ["he"],
    "devanagari": ["hi", "mr", "ne"],
    "bengali": ["bn", "as"],
    "gurmukhi": ["pa"],
    "gujarati": ["gu"],
    "tamil": ["ta"],
    "telugu": ["te"],
    "kannada": ["kn"],
    "malayalam": ["ml"],
    "georgian": ["ka"],
    "armenian": ["hy"],
    "thai": ["th"],
    "hangul": ["ko"],
    "kana": ["ja"],
    "han": ["cmn", "yue"],
}
VOICE_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                  "klatt", "klatt2", "klatt3", "klatt4", "whisper", "whisperf", "croak",
                  "adam", "Alex", "Alicia", "Andrea", "Annie", "belinda", "benjamin",
                  "boris", "david", "edward", "Gene", "john", "linda", "max", "Michael",
                  "norbert", "paul", "robert", "steph", "travis", "victor", "zac",
                  "grandma", "grandpa", "anika", "Lee", "Mario", "pablo", "quincy"]
VARIANT_PROB = 0.6
SPEED_RANGE = (95, 260)     # words per minute
PITCH_RANGE = (10, 90)      # espeak pitch 0..99

INDIC_BLOCKS = {"devanagari": 0x0900, "bengali": 0x0980, "gurmukhi": 0x0A00,
                "gujarati": 0x0A80, "tamil": 0x0B80, "telugu": 0x0C00,
                "kannada": 0x0C80, "malayalam": 0x0D00}
LATIN_ONSETS = "b c d f g h j k l m n p r s t v w z br ch dr fl gr kl pl sh st th tr".split()
LATIN_VOWELS = "a e i o u a e i o ai au ou ie".split()
LATIN_CODAS = ["", "", "", "n", "r", "s", "l", "m", "t", "k", "st", "nd"]

SCALES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10],
          "dorian": [0, 2, 3, 5, 7, 9, 10], "pentatonic": [0, 2, 4, 7, 9],
          "blues": [0, 3, 5, 6, 7, 10], "chromatic": list(range(12)),
          "harmonic_minor": [0, 2, 3, 5, 7, 8, 11]}
PART_TYPES = ["melody", "chords", "arp", "bass", "pad"]
DRUM_KICKS, DRUM_SNARES, DRUM_HATS = [35, 36], [38, 40, 37, 39], [42, 44, 46]
DRUM_OTHER = list(range(41, 60)) + list(range(60, 82))

TEXTURE_TYPES = ["noise", "impulses", "sweeps", "engine", "birds", "bubbles"]
MIX_PROB = 0.3


# ----------------------------------------------------------------------------- helpers
def clip_rng(seed: int, kind: str, index: int, attempt: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, KIND_IDS[kind], index, attempt])


def clip_path(out_dir: Path, kind: str, index: int) -> Path:
    return out_dir / kind / f"{kind}_{index:05d}.wav"


def is_silent(x: np.ndarray) -> bool:
    return (x.size == 0 or np.max(np.abs(x)) < SILENCE_PEAK
            or np.sqrt(np.mean(x ** 2)) < SILENCE_RMS or not np.all(np.isfinite(x)))


def to_mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1) if x.ndim == 2 else x


def resample(x: np.ndarray, sr_in: int, sr_out: int = SR) -> np.ndarray:
    """The package's one resampler (hear_maeast.audio.resample), in float64 for the processing here."""
    return x if sr_in == sr_out else hm_audio.resample(x, sr_in, sr_out).astype(np.float64)


def fade(x: np.ndarray, ms: float = 20.0) -> np.ndarray:
    n = min(int(SR * ms / 1000), len(x) // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n)
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def fit_length(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Trim (with fade-out) or zero-pad (at a random offset) to exactly n samples."""
    if len(x) >= n:
        return fade(x[:n].copy())
    out = np.zeros(n, dtype=np.float64)
    off = int(rng.integers(0, n - len(x) + 1))
    out[off:off + len(x)] = x
    return out


def normalise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = x - np.mean(x)
    peak = np.max(np.abs(x))
    gain_db = PEAK_DBFS - rng.uniform(0.0, MAX_EXTRA_ATTEN_DB)
    return x / peak * 10 ** (gain_db / 20)


def write_wav(path: Path, x: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.wav")
    sf.write(tmp, np.clip(x, -1.0, 1.0).astype(np.float32), SR, subtype="PCM_16")
    os.replace(tmp, path)  # atomic: an interrupted run never leaves a half file


def random_duration(rng: np.random.Generator) -> float:
    return float(rng.uniform(MIN_DUR, MAX_DUR))


def lowpass_noise(rng: np.random.Generator, n: int, cutoff_hz: float) -> np.ndarray:
    sos = signal.butter(2, cutoff_hz, "lowpass", fs=SR, output="sos")
    y = signal.sosfilt(sos, rng.standard_normal(n))
    return y / (np.max(np.abs(y)) + 1e-12)


def slow_envelope(rng: np.random.Generator, n: int, rate_hz: float, depth: float) -> np.ndarray:
    """Smooth random positive envelope in [1-depth, 1]."""
    lfo = lowpass_noise(rng, n, max(rate_hz, 0.2))
    return 1.0 - depth * (0.5 + 0.5 * lfo)


def colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """1/f^exponent noise (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    f[0] = f[1]
    y = np.fft.irfft(spec / f ** (exponent / 2), n)
    return y / (np.std(y) + 1e-12)


def synthetic_reverb(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rt60 = rng.uniform(0.15, 0.9)
    n = int(rt60 * SR)
    t = np.arange(n) / SR
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[0] = 1.0 / rng.uniform(0.1, 0.6)                    # direct path vs. reverb ratio
    wet = signal.fftconvolve(x, ir)[: len(x)]
    return wet / (np.max(np.abs(wet)) + 1e-12) * np.max(np.abs(x))


def add_noise(x: np.ndarray, rng: np.random.Generator, snr_db: float) -> np.ndarray:
    noise = colored_noise(rng, len(x), rng.uniform(0.0, 2.0))
    p_sig = np.mean(x ** 2) + 1e-12
    return x + noise * np.sqrt(p_sig / 10 ** (snr_db / 10))


# ----------------------------------------------------------------------------- speech
def _assigned(chars) -> list[str]:
    return [c for c in chars if unicodedata.category(c) != "Cn"]


def _indic_syllable(rng: np.random.Generator, base: int) -> str:
    cons = [c for c in _assigned(map(chr, range(base + 0x15, base + 0x3A)))
            if unicodedata.category(c) == "Lo"]
    signs = [c for c in _assigned(map(chr, range(base + 0x3E, base + 0x4D)))
             if unicodedata.category(c) in ("Mc", "Mn")]
    s = str(rng.choice(cons))
    return s + (str(rng.choice(signs)) if rng.random() < 0.7 else "")


def _range_chars(lo: int, hi: int) -> list[str]:
    return [c for c in _assigned(map(chr, range(lo, hi + 1))) if unicodedata.category(c) == "Ll"
            or unicodedata.category(c) == "Lo"]


SCRIPT_CHARS = {
    "cyrillic": _range_chars(0x430, 0x44F),
    "greek": _range_chars(0x3B1, 0x3C9),
    "arabic": _range_chars(0x628, 0x63A) + _range_chars(0x641, 0x64A),
    "hebrew": _range_chars(0x5D0, 0x5EA),
    "georgian": _range_chars(0x10D0, 0x10F0),
    "armenian": _range_chars(0x561, 0x586),
    "kana": _range_chars(0x3042, 0x3093),
}
CYRILLIC_VOWELS = list("аеиоуыэюяё")
GREEK_VOWELS = list("αεηιουω")
THAI_CONS = [chr(c) for c in range(0x0E01, 0x0E2F)]
THAI_VOWELS = ["\u0E32", "\u0E34", "\u0E35", "\u0E36", "\u0E37", "\u0E38", "\u0E39", ""]


def syllable(rng: np.random.Generator, script: str) -> str:
    if script == "latin":
        return (str(rng.choice(LATIN_ONSETS)) + str(rng.choice(LATIN_VOWELS))
                + str(rng.choice(LATIN_CODAS)))
    if script in ("cyrillic", "greek"):
        vowels = CYRILLIC_VOWELS if script == "cyrillic" else GREEK_VOWELS
        cons = [c for c in SCRIPT_CHARS[script] if c not in vowels]
        return str(rng.choice(cons)) + str(rng.choice(vowels))
    if script in INDIC_BLOCKS:
        return _indic_syllable(rng, INDIC_BLOCKS[script])
    if script == "hangul":
        lead, vowel, tail = rng.integers(0, 19), rng.integers(0, 21), rng.integers(0, 28)
        return chr(0xAC00 + (lead * 21 + vowel) * 28 + (tail if rng.random() < 0.4 else 0))
    if script == "han":
        return chr(int(rng.integers(0x4E00, 0x9FA6)))
    if script == "thai":
        return str(rng.choice(THAI_CONS)) + str(rng.choice(THAI_VOWELS))
    return "".join(rng.choice(SCRIPT_CHARS[script], size=int(rng.integers(1, 3))))


def random_sentence(rng: np.random.Generator, script: str, n_words: int) -> str:
    words = []
    for i in range(n_words):
        w = "".join(syllable(rng, script) for _ in range(int(rng.integers(1, 4))))
        if script == "latin" and (i == 0 or words[-1][-1] == "."):
            w = w.capitalize()
        if i < n_words - 1 and rng.random() < 0.12:
            w += str(rng.choice([",", ",", ".", "?", "!"]))
        words.append(w)
    sep = "" if script in ("han", "kana", "thai") and rng.random() < 0.7 else " "
    return sep.join(words) + str(rng.choice([".", ".", "?", "!"]))


def pick_voice(rng: np.random.Generator) -> tuple[str, str]:
    script = str(rng.choice(list(SPEECH_VOICES)))
    if script == "latin" and rng.random() < 0.5:   # keep a reasonable share of non-Latin
        script = str(rng.choice(list(SPEECH_VOICES)))
    voice = str(rng.choice(SPEECH_VOICES[script]))
    if rng.random() < VARIANT_PROB:
        voice += "+" + str(rng.choice(VOICE_VARIANTS))
    return voice, script


def espeak(text: str, voice: str, speed: int, pitch: int, tmp_dir: Path) -> np.ndarray:
    wav = tmp_dir / "speech.wav"
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    x, sr = sf.read(wav, dtype="float64", always_2d=False)
    return resample(to_mono(x), sr)


def make_speech(rng: np.random.Generator, tmp_dir: Path) -> np.ndarray:
    dur = random_duration(rng)
    voice, script = pick_voice(rng)
    speed = int(rng.integers(*SPEED_RANGE))
    pitch = int(rng.integers(*PITCH_RANGE))
    n_words = max(2, int(dur * speed / 60 * rng.uniform(0.8, 1.6)))
    x = espeak(random_sentence(rng, script, n_words), voice, speed, pitch, tmp_dir)
    if is_silent(x):
        return x
    if rng.random() < 0.3:
        x = synthetic_reverb(x, rng)
    x = fit_length(x, int(dur * SR), rng)
    if rng.random() < 0.5:
        x = add_noise(x, rng, rng.uniform(15.0, 40.0))
    return x


# ----------------------------------------------------------------------------- music
def _scale_note(root: int, scale: list[int], degree: int) -> int:
    octave, step = divmod(degree, len(scale))
    return root + 12 * octave + scale[step]


def _chord(root: int, scale: list[int], degree: int, size: int) -> list[int]:
    return [_scale_note(root, scale, degree + 2 * k) for k in range(size)]


def part_melody(rng, ctx) -> list[tuple]:
    notes, t, deg = [], 0.0, int(rng.integers(7, 14))
    while t < ctx["dur"]:
        length = float(rng.choice([0.25, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0])) * ctx["beat"]
        if rng.random() > 0.15:
            deg = int(np.clip(deg + rng.integers(-3, 4), 0, 21))
            notes.append((t, t + length * rng.uniform(0.6, 1.0),
                          _scale_note(ctx["root"], ctx["scale"], deg), int(rng.integers(60, 120))))
        t += length
    return notes


def part_chords(rng, ctx) -> list[tuple]:
    notes, hit = [], float(rng.choice([1, 2, 4])) * ctx["beat"]
    for t0, degree in ctx["progression"]:
        t = t0
        while t < min(t0 + ctx["bar"], ctx["dur"]):
            for n in _chord(ctx["root"] + 12, ctx["scale"], degree, int(rng.integers(3, 5))):
                notes.append((t, t + hit * 0.9, n, int(rng.integers(50, 100))))
            t += hit
    return notes


def part_arp(rng, ctx) -> list[tuple]:
    notes, step = [], float(rng.choice([0.25, 0.5])) * ctx["beat"]
    for t0, degree in ctx["progression"]:
        chord = _chord(ctx["root"] + 12 * int(rng.integers(1, 3)), ctx["scale"], degree, 4)
        order = chord + chord[-2:0:-1] if rng.random() < 0.5 else chord
        t, k = t0, 0
        while t < min(t0 + ctx["bar"], ctx["dur"]):
            notes.append((t, t + step * 0.9, order[k % len(order)], int(rng.integers(55, 110))))
            t, k = t + step, k + 1
    return notes


def part_bass(rng, ctx) -> list[tuple]:
    notes, step = [], float(rng.choice([0.5, 1.0, 2.0])) * ctx["beat"]
    for t0, degree in ctx["progression"]:
        t = t0
        while t < min(t0 + ctx["bar"], ctx["dur"]):
            n = _scale_note(ctx["root"] - 12, ctx["scale"], degree + (4 if rng.random() < 0.2 else 0))
            notes.append((t, t + step * 0.85, n, int(rng.integers(70, 120))))
            t += step
    return notes


def part_pad(rng, ctx) -> list[tuple]:
    return [(t0, min(t0 + ctx["bar"], ctx["dur"]), n, int(rng.integers(40, 90)))
            for t0, degree in ctx["progression"]
            for n in _chord(ctx["root"], ctx["scale"], degree, 3)]


def part_drums(rng, ctx) -> list[tuple]:
    step = ctx["beat"] / float(rng.choice([2, 4]))
    n_steps = int(ctx["dur"] / step)
    per_beat = int(round(ctx["beat"] / step))
    kick, snare, hat = (int(rng.choice(DRUM_KICKS)), int(rng.choice(DRUM_SNARES)),
                        int(rng.choice(DRUM_HATS)))
    extra = [int(x) for x in rng.choice(DRUM_OTHER, size=3)]
    p_hat, p_extra = rng.uniform(0.3, 1.0), rng.uniform(0.0, 0.25)
    notes = []
    for s in range(n_steps):
        t, beat_pos = s * step, s % (4 * per_beat)
        hits = []
        if beat_pos in (0, 2 * per_beat) or rng.random() < 0.08:
            hits.append(kick)
        if beat_pos in (per_beat, 3 * per_beat) or rng.random() < 0.05:
            hits.append(snare)
        if rng.random() < p_hat:
            hits.append(hat)
        if rng.random() < p_extra:
            hits.append(int(rng.choice(extra)))
        notes += [(t, t + 0.1, n, int(rng.integers(50, 127))) for n in hits]
    return notes


PART_FUNCS = {"melody": part_melody, "chords": part_chords, "arp": part_arp,
              "bass": part_bass, "pad": part_pad}


def music_spec(rng: np.random.Generator) -> dict:
    """A random piece: duration and a list of parts (channel, program, notes)."""
    dur = random_duration(rng)
    beat = rng.uniform(0.3, 0.9)
    bar = beat * float(rng.choice([2, 3, 4, 4]))
    scale = SCALES[str(rng.choice(list(SCALES)))]
    degrees = rng.integers(0, 7, size=int(np.ceil(dur / bar)) + 1)
    ctx = {"dur": dur, "beat": beat, "bar": bar, "scale": scale,
           "root": int(rng.integers(45, 62)),
           "progression": [(i * bar, int(d)) for i, d in enumerate(degrees) if i * bar < dur]}
    n_parts = int(rng.choice([1, 1, 2, 2, 3, 4]))
    types = list(rng.choice(PART_TYPES, size=n_parts))
    use_drums = rng.random() < 0.4
    parts = []
    melodic_channels = [c for c in range(16) if c != 9]
    for ch, ptype in zip(melodic_channels, types):
        program = int(rng.integers(32, 40)) if ptype == "bass" and rng.random() < 0.6 \
            else int(rng.integers(0, 128))
        parts.append({"channel": ch, "program": program,
                      "volume": int(rng.integers(70, 128)),
                      "notes": PART_FUNCS[ptype](rng, ctx)})
    if use_drums:
        parts.append({"channel": 9, "program": int(rng.choice([0, 8, 16, 24, 25, 32, 40, 48])),
                      "volume": int(rng.integers(80, 128)), "notes": part_drums(rng, ctx)})
    return {"dur": dur, "parts": parts}


def _clip_note(n: tuple, dur: float) -> tuple | None:
    start, end, pitch, vel = n
    end = min(end, dur - 0.05)
    if start >= end or not 0 <= pitch <= 127:
        return None
    return start, end, pitch, vel


def build_midi(specs: list[dict], slot_starts: list[float], path: Path, end_s: float) -> None:
    """One MIDI file holding every spec in its own time slot (1 tick = 1 ms)."""
    events = []  # (ms, order, message); order makes offs/resets precede ons at equal times
    for spec, t0 in zip(specs, slot_starts):
        ms0 = int(round(t0 * 1000))
        for part in spec["parts"]:
            ch = part["channel"]
            events += [(ms0, 0, mido.Message("control_change", channel=ch, control=121, value=0)),
                       (ms0, 1, mido.Message("program_change", channel=ch, program=part["program"])),
                       (ms0, 1, mido.Message("control_change", channel=ch, control=7,
                                             value=part["volume"]))]
            for n in filter(None, (_clip_note(n, spec["dur"]) for n in part["notes"])):
                start, end, pitch, vel = n
                events.append((ms0 + int(start * 1000) + 1, 3,
                               mido.Message("note_on", channel=ch, note=pitch, velocity=vel)))
                events.append((ms0 + int(end * 1000) + 1, 2,
                               mido.Message("note_off", channel=ch, note=pitch, velocity=0)))
    events.append((int(end_s * 1000), 4, mido.Message("control_change", channel=0,
                                                      control=123, value=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=MIDI_TEMPO, time=0)])
    last = 0
    for ms, _, msg in events:
        track.append(msg.copy(time=ms - last))
        last = ms
    mid = mido.MidiFile(ticks_per_beat=MIDI_TPB)
    mid.tracks.append(track)
    mid.save(path)


def render_music_batch(specs: list[dict], soundfont: str, tmp_dir: Path) -> list[np.ndarray]:
    starts, t = [], 0.0
    for spec in specs:
        starts.append(t)
        t += spec["dur"] + MUSIC_GAP_S
    mid_path, wav_path = tmp_dir / "batch.mid", tmp_dir / "batch.wav"
    build_midi(specs, starts, mid_path, t)
    cmd = ["fluidsynth", "-ni", "-q", "-o", "audio.file.format=float", "-o", "synth.cpu-cores=1",
           "-F", str(wav_path), "-r", str(SR), soundfont, str(mid_path)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    audio, sr = sf.read(wav_path, dtype="float64", always_2d=False)
    audio = resample(to_mono(audio), sr)
    clips = []
    for spec, t0 in zip(specs, starts):
        a, n = int(round(t0 * SR)), int(round(spec["dur"] * SR))
        seg = np.zeros(n)
        piece = audio[a:a + n]
        seg[:len(piece)] = piece
        clips.append(fade(seg, 10.0))
    return clips


# ----------------------------------------------------------------------------- texture
def tex_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rain/wind/surf-like: coloured noise, band-limited, slowly amplitude-modulated."""
    x = colored_noise(rng, n, rng.uniform(0.0, 2.0))
    lo = rng.uniform(50, 2000)
    hi = min(lo * rng.uniform(1.5, 20), SR / 2 - 200)
    x = signal.sosfilt(signal.butter(2, [lo, hi], "bandpass", fs=SR, output="sos"), x)
    x *= slow_envelope(rng, n, rng.uniform(0.2, 4.0), rng.uniform(0.0, 0.9))
    if rng.random() < 0.4:  # rain drops
        drops = (rng.random(n) < rng.uniform(2, 60) / SR) * rng.standard_normal(n)
        ir = np.exp(-np.arange(int(0.004 * SR)) / (0.0008 * SR))
        x += np.convolve(drops, ir)[:n] * rng.uniform(1, 5) * np.std(x)
    return x


def tex_impulses(rng: np.random.Generator, n: int) -> np.ndarray:
    """Clicks/knocks/footsteps/drips: impulse train exciting damped resonances."""
    rate = rng.uniform(0.5, 15)
    if rng.random() < 0.5:  # quasi-periodic
        times = np.arange(rng.uniform(0, 1 / rate), n / SR, 1 / rate)
        times = times + rng.normal(0, rng.uniform(0, 0.2) / rate, len(times))
    else:
        times = np.cumsum(rng.exponential(1 / rate, size=int(rate * n / SR * 2) + 2))
    ir_len = int(rng.uniform(0.02, 0.4) * SR)
    t = np.arange(ir_len) / SR
    ir = np.zeros(ir_len)
    for _ in range(int(rng.integers(1, 4))):
        ir += rng.uniform(0.3, 1) * np.sin(2 * np.pi * rng.uniform(80, 5000) * t) \
            * np.exp(-t / rng.uniform(0.003, 0.1))
    ir += rng.uniform(0, 0.5) * rng.standard_normal(ir_len) * np.exp(-t / 0.002)
    x = np.zeros(n + ir_len)
    for tt in times[(times >= 0) & (times < n / SR)]:
        i = int(tt * SR)
        x[i:i + ir_len] += ir * rng.uniform(0.3, 1.0)
    return x[:n]


def tex_sweeps(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sirens/whistles/zips: repeated linear, exponential or sinusoidal sweeps."""
    period = rng.uniform(0.1, 2.0)
    m = int(period * SR)
    t = np.arange(m) / SR
    f0, f1 = rng.uniform(100, 6000, size=2)
    method = str(rng.choice(["linear", "logarithmic", "quadratic"]))
    seg = signal.chirp(t, f0, period, f1, method=method)
    if rng.random() < 0.5:  # siren-like: continuous sinusoidal FM
        tt = np.arange(n) / SR
        fc, dev, rate = rng.uniform(300, 3000), rng.uniform(50, 800), rng.uniform(0.2, 5)
        return np.sin(2 * np.pi * fc * tt - dev / rate * np.cos(2 * np.pi * rate * tt))
    seg *= np.hanning(m) ** rng.uniform(0.1, 1.0)
    return np.tile(seg, n // m + 1)[:n]


def tex_engine(rng: np.random.Generator, n: int) -> np.ndarray:
    """Engine/motor/fan/hum: jittery f0 with random harmonic amplitudes plus rumble."""
    f0 = rng.uniform(20, 250) * (1 + rng.uniform(0.0, 0.15) * lowpass_noise(rng, n, 1.0)
                                 + rng.uniform(0, 0.3) * np.linspace(0, 1, n) * rng.choice([-1, 1]))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = np.zeros(n)
    for h in range(1, int(rng.integers(4, 25))):
        if np.max(f0) * h < SR / 2 - 500:
            x += rng.uniform(0, 1) / h ** rng.uniform(0.3, 1.5) * np.sin(h * phase + rng.uniform(0, 6.3))
    x *= 1 + rng.uniform(0, 0.5) * np.sin(phase / rng.integers(1, 5))
    return x / (np.std(x) + 1e-12) + rng.uniform(0, 0.8) * lowpass_noise(rng, n, rng.uniform(150, 800))


def tex_birds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Bird-like song: phrases of short FM chirps with sweeping carriers."""
    x = np.zeros(n)
    t_cursor = rng.uniform(0, 0.5)
    while t_cursor < n / SR:
        for _ in range(int(rng.integers(1, 8))):
            d = rng.uniform(0.03, 0.3)
            m = int(d * SR)
            i = int(t_cursor * SR)
            if i + m >= n:
                break
            t = np.arange(m) / SR
            fc = np.linspace(rng.uniform(1500, 6000), rng.uniform(1500, 7000), m)
            fm = rng.uniform(0, 500) * np.sin(2 * np.pi * rng.uniform(10, 80) * t)
            x[i:i + m] += np.sin(2 * np.pi * np.cumsum(fc + fm) / SR) * np.hanning(m) \
                * rng.uniform(0.3, 1)
            t_cursor += d + rng.uniform(0.01, 0.1)
        t_cursor += rng.uniform(0.2, 1.5)
    return x


def tex_bubbles(rng: np.random.Generator, n: int) -> np.ndarray:
    """Water/bubbles: exponentially decaying rising sinusoids at random times."""
    x = np.zeros(n)
    for _ in range(int(rng.uniform(3, 40) * n / SR)):
        d = rng.uniform(0.01, 0.08)
        m = int(d * SR)
        i = int(rng.integers(0, max(1, n - m)))
        t = np.arange(m) / SR
        f = rng.uniform(300, 3000) * (1 + rng.uniform(0.5, 3) * t / d)
        x[i:i + m] += np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t / (d / 4)) * rng.uniform(0.2, 1)
    return x


TEXTURE_FUNCS = {"noise": tex_noise, "impulses": tex_impulses, "sweeps": tex_sweeps,
                 "engine": tex_engine, "birds": tex_birds, "bubbles": tex_bubbles}


def make_texture(rng: np.random.Generator) -> np.ndarray:
    n = int(random_duration(rng) * SR)
    n_layers = int(rng.integers(2, 4)) if rng.random() < MIX_PROB else 1
    x = np.zeros(n)
    for name in rng.choice(TEXTURE_TYPES, size=n_layers, replace=False):
        layer = TEXTURE_FUNCS[str(name)](rng, n)
        x += layer / (np.max(np.abs(layer)) + 1e-12) * rng.uniform(0.3, 1.0)
    if rng.random() < 0.2:
        x = synthetic_reverb(x, rng)
    return fade(x)


# ----------------------------------------------------------------------------- real recordings (Debian)
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


# ----------------------------------------------------------------------------- driver
class Progress:
    def __init__(self, kind: str, total: int):
        self.kind, self.total, self.done, self.t0 = kind, total, 0, time.time()

    def step(self, k: int = 1) -> None:
        self.done += k
        if self.done == self.total or self.done % 100 < k:
            el = time.time() - self.t0
            eta = el / max(self.done, 1) * (self.total - self.done)
            print(f"[{self.kind}] {self.done}/{self.total} new clips  "
                  f"{el:6.0f}s elapsed  eta {eta:5.0f}s", flush=True)


def finish_clip(path: Path, x: np.ndarray, rng: np.random.Generator) -> bool:
    if is_silent(x):
        return False
    write_wav(path, normalise(x, rng))
    return True


def build_simple(kind: str, indices: list[int], out_dir: Path, seed: int, tmp_dir: Path) -> list[int]:
    """speech/texture: one clip at a time. Returns indices that failed every attempt."""
    failed, prog = [], Progress(kind, len(indices))
    for idx in indices:
        ok = False
        for attempt in range(MAX_ATTEMPTS):
            rng = clip_rng(seed, kind, idx, attempt)
            try:
                x = make_speech(rng, tmp_dir) if kind == "speech" else make_texture(rng)
                ok = finish_clip(clip_path(out_dir, kind, idx), x, rng)
            except (subprocess.SubprocessError, RuntimeError, ValueError, OSError) as e:
                print(f"\n[{kind}] {idx} attempt {attempt}: {e}", file=sys.stderr)
            if ok:
                break
        if not ok:
            failed.append(idx)
        prog.step()
    return failed


def build_music(indices: list[int], out_dir: Path, seed: int, tmp_dir: Path, soundfont: str) -> list[int]:
    pending, prog = list(indices), Progress("music", len(indices))
    for attempt in range(MAX_ATTEMPTS):
        failed = []
        for b in range(0, len(pending), MUSIC_BATCH):
            batch = pending[b:b + MUSIC_BATCH]
            rngs = [clip_rng(seed, "music", idx, attempt) for idx in batch]
            specs = [music_spec(r) for r in rngs]
            try:
                clips = render_music_batch(specs, soundfont, tmp_dir)
            except (subprocess.SubprocessError, RuntimeError, OSError) as e:
                print(f"\n[music] batch starting {batch[0]} attempt {attempt}: {e}", file=sys.stderr)
                failed += batch
                continue
            for idx, rng, x in zip(batch, rngs, clips):
                if finish_clip(clip_path(out_dir, "music", idx), x, rng):
                    prog.step()
                else:
                    failed.append(idx)
        pending = failed
        if not pending:
            break
    return pending


def find_soundfont(user: str | None) -> str:
    for cand in ([user] if user else []) + list(SOUNDFONT_CANDIDATES):
        if cand and Path(cand).exists():
            return cand
    sys.exit("No GM soundfont found: apt-get install fluid-soundfont-gm, or pass --soundfont")


def check_tools(kinds: list[str]) -> None:
    need = {"speech": "espeak-ng", "music": "fluidsynth"}
    missing = [need[k] for k in kinds if k in need and shutil.which(need[k]) is None]
    if missing:
        sys.exit(f"Missing tools: {', '.join(missing)} (apt-get install -y {' '.join(missing)})")


def summarise(out_dir: Path, failures: dict[str, list[int]], real_rows: list[dict]) -> None:
    print("\nSummary")
    total_s = sum(r["seconds"] for r in real_rows)
    for package in dict.fromkeys(r["package"] for r in real_rows):
        rows = [r for r in real_rows if r["package"] == package]
        print(f"  real     {len(rows):6d} clips  {sum(r['seconds'] for r in rows) / 3600:6.2f} h  {package}")
    for kind in DEFAULT_COUNTS:
        files = sorted((out_dir / kind).glob(f"{kind}_*.wav"))
        secs = sum(sf.info(f).frames for f in files) / SR
        total_s += secs
        print(f"  {kind:8s} {len(files):6d} clips  {secs / 3600:6.2f} h"
              f"  failures this run: {len(failures.get(kind, []))}"
              + (f" {failures[kind][:10]}" if failures.get(kind) else ""))
    print(f"  total    {total_s / 3600:6.2f} h")


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
