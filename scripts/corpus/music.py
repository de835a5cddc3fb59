"""music: random General MIDI pieces made with mido (melody, chords, arpeggios, bass, pads, drums on channel 9),
rendered with fluidsynth and a GM soundfont, many clips per fluidsynth call (one slot each, separated by silent gaps)
to amortise the soundfont's load time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import soundfile as sf

from corpus.clips import SR, fade, random_duration, resample, to_mono


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


SCALES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10],
          "dorian": [0, 2, 3, 5, 7, 9, 10], "pentatonic": [0, 2, 4, 7, 9],
          "blues": [0, 3, 5, 6, 7, 10], "chromatic": list(range(12)),
          "harmonic_minor": [0, 2, 3, 5, 7, 8, 11]}
PART_TYPES = ["melody", "chords", "arp", "bass", "pad"]
DRUM_KICKS, DRUM_SNARES, DRUM_HATS = [35, 36], [38, 40, 37, 39], [42, 44, 46]
DRUM_OTHER = list(range(41, 60)) + list(range(60, 82))


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


def find_soundfont(user: str | None) -> str:
    for cand in ([user] if user else []) + list(SOUNDFONT_CANDIDATES):
        if cand and Path(cand).exists():
            return cand
    sys.exit("No GM soundfont found: apt-get install fluid-soundfont-gm, or pass --soundfont")
