"""speech: espeak-ng in many languages and voice variants, speaking random pseudo-words written in the language's
own script, at a random speed and pitch; resampled to 16 kHz, trimmed or padded, optional low-level noise and
synthetic reverb."""

from __future__ import annotations

import subprocess
import unicodedata
from pathlib import Path

import numpy as np
import soundfile as sf

from corpus.clips import SR, add_noise, fit_length, is_silent, random_duration, resample, synthetic_reverb, to_mono


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
