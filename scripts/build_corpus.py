#!/usr/bin/env python3
"""Build a small, fully synthetic audio corpus for pretraining the bundled weights.

Every clip is generated on this machine; no recorded or evaluation audio is used.

    python3 scripts/build_corpus.py OUT_DIR --seed 0 [--n-speech N --n-music N --n-texture N]

Output: 16 kHz mono 16-bit PCM WAV clips of 2-6 s in OUT_DIR/{speech,music,texture}/,
named ``<kind>_<index>.wav``. Each clip is a pure function of (seed, kind, index), so
the build is deterministic and idempotent: existing files are skipped and a re-run
only fills in what is missing.

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

Needs: apt packages espeak-ng, fluidsynth, fluid-soundfont-gm; Python numpy, scipy,
soundfile, mido. Runs in one process (plus one espeak-ng/fluidsynth child at a time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
from math import gcd
from pathlib import Path

import mido
import numpy as np
import soundfile as sf
from scipy import signal

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
    if sr_in == sr_out:
        return x
    g = gcd(sr_in, sr_out)
    return signal.resample_poly(x, sr_out // g, sr_in // g)


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


def summarise(out_dir: Path, failures: dict[str, list[int]]) -> None:
    print("\nSummary")
    total_s = 0.0
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
    summarise(args.out_dir, failures)
    print(f"  elapsed  {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
