"""The built-in task suite: small generated HEAR tasks covering every kind heareval scores.

| task folder                  | kind                              | clips            | what is learnt                       |
|------------------------------|-----------------------------------|------------------|--------------------------------------|
| synth_pitch-v1.0-small       | scene, multiclass, trainvaltest   | 200 x 1 s        | which of 8 notes (random timbre)     |
| synth_timbre-v1.0-small      | scene, multiclass, 5 folds        | 150 x 1 s        | which of 5 instruments (random note) |
| synth_mixture-v1.0-small     | scene, multilabel (mAP)           | 150 x 2 s        | which of 6 sources are present       |
| synth_events-v1.0-small      | event, onsets (ms)                | 70 x 3 s         | when each of 4 sound events starts   |

Every clip has a random level (a 30 dB range), coloured background noise at a random SNR and random timing,
so no task is solvable by loudness or onset time alone: a representation has to carry pitch, timbre or
spectro-temporal shape. Deterministic from the seed (numpy's PCG64 generator, one child stream per task).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from eval.taskwrite import finish_task, start_task, task_done
from hear_maeast.errors import BadInput

SAMPLE_RATE = 16000  # Hz: the generated tasks' own rate (the rate of the models they were made for)
VERSION = "v1.0"
MODE = "small"

NOTES = ["C4", "D4", "E4", "F4", "G4", "A4", "B4", "C5"]  # one C major octave
NOTE_HZ = {n: 261.63 * 2 ** (s / 12) for n, s in zip(NOTES, [0, 2, 4, 5, 7, 9, 11, 12])}
INSTRUMENTS = ["organ", "brass", "pluck", "bowed", "flute"]
SOURCES = ["hum", "beep", "chirp_up", "chirp_down", "hiss", "clicks"]
# The four events share one random frequency range, so band energy alone cannot tell them apart: only how the
# sound moves over its 150-400 ms does (a frame-wise spectrum sees a tone in every case).
EVENTS = ["tone", "sweep_up", "sweep_down", "tremolo"]


# ---------------------------------------------------------------------------------------------- signals
def _time(n: int) -> np.ndarray:
    return np.arange(n) / SAMPLE_RATE  # [n] seconds


def _harmonic(f0: np.ndarray | float, n: int, amps: np.ndarray) -> np.ndarray:
    """Sum of harmonics k*f0 with amplitudes `amps` [K]; f0 may vary per sample ([n] Hz). Returns [n]."""
    f0 = np.broadcast_to(np.asarray(f0, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE  # [n]
    out = np.zeros(n)
    for k, a in enumerate(amps, start=1):
        if a and k * f0.max() < SAMPLE_RATE / 2:
            out += a * np.sin(k * phase)
    return out


def _envelope(n: int, attack_s: float, release_s: float) -> np.ndarray:
    """Linear attack, flat, linear release; [n] in [0, 1]."""
    env = np.ones(n)
    a, r = min(n, int(attack_s * SAMPLE_RATE)), min(n, int(release_s * SAMPLE_RATE))
    if a:
        env[:a] = np.linspace(0, 1, a)
    if r:
        env[n - r :] *= np.linspace(1, 0, r)
    return env


def _band_noise(rng: np.random.Generator, n: int, lo_hz: float, hi_hz: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spec[(f < lo_hz) | (f > hi_hz)] = 0
    out = np.fft.irfft(spec, n)
    return out / (np.abs(out).max() + 1e-9)


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """Coloured noise (spectral slope between white and brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spec /= np.maximum(f, 20.0) ** rng.uniform(0.0, 1.0)
    out = np.fft.irfft(spec, n)
    return out / (out.std() + 1e-9)


def _mix_to_clip(rng: np.random.Generator, signal: np.ndarray) -> np.ndarray:
    """Add background noise at 5-30 dB SNR, then set a random peak level between -30 and -1 dBFS."""
    rms = np.sqrt(np.mean(signal**2)) + 1e-9
    snr_db = rng.uniform(5, 30)
    clip = signal + _background(rng, len(signal)) * rms / 10 ** (snr_db / 20)
    peak = 10 ** (rng.uniform(-30, -1) / 20)
    return (clip / (np.abs(clip).max() + 1e-9) * peak).astype(np.float32)


def _place(n: int, sound: np.ndarray, start: int) -> np.ndarray:
    out = np.zeros(n)
    end = min(n, start + len(sound))
    out[start:end] = sound[: end - start]
    return out


def _random_timbre(rng: np.random.Generator) -> np.ndarray:
    k = rng.integers(1, 9)
    return rng.uniform(0.2, 1.0, k) / np.arange(1, k + 1) ** rng.uniform(0.5, 2.0)


def instrument_note(rng: np.random.Generator, instrument: str, f0: float, n: int) -> np.ndarray:
    """One note of a synthetic instrument, [n] samples; instruments differ in spectrum and envelope."""
    t = _time(n)
    ks = np.arange(1, 16)
    if instrument == "organ":  # odd harmonics, flat envelope
        sig = _harmonic(f0, n, np.where(ks % 2 == 1, 1 / ks, 0.0)) * _envelope(n, 0.02, 0.05)
    elif instrument == "brass":  # bright sawtooth, slow-ish attack
        sig = _harmonic(f0, n, 1 / ks) * _envelope(n, 0.08, 0.1)
    elif instrument == "pluck":  # fast decay, upper harmonics decay faster
        sig = sum(np.sin(2 * np.pi * k * f0 * t) / k * np.exp(-t * (4 + 3 * k)) for k in range(1, 10) if k * f0 < 7000)
    elif instrument == "bowed":  # vibrato, soft attack
        vib = f0 * (1 + 0.01 * np.sin(2 * np.pi * rng.uniform(5, 7) * t))
        sig = _harmonic(vib, n, 1 / ks**1.3) * _envelope(n, 0.15, 0.1)
    elif instrument == "flute":  # nearly pure tone plus breath noise
        sig = _harmonic(f0, n, np.array([1.0, 0.1, 0.05])) + 0.3 * _band_noise(rng, n, f0, 6000)
        sig *= _envelope(n, 0.05, 0.05)
    else:
        raise ValueError(f"unknown instrument {instrument!r}")
    return sig


def source_sound(rng: np.random.Generator, source: str, n: int) -> np.ndarray:
    """One of the mixture task's sources, [n] samples."""
    t = _time(n)
    if source == "hum":  # low harmonic drone
        return _harmonic(rng.uniform(80, 160), n, np.array([1, 0.6, 0.4, 0.3, 0.2])) * _envelope(n, 0.05, 0.05)
    if source == "beep":  # mid sine, gated
        gate = (np.sin(2 * np.pi * rng.uniform(2, 4) * t) > 0).astype(float)
        return np.sin(2 * np.pi * rng.uniform(900, 1300) * t) * gate
    if source in ("chirp_up", "chirp_down"):
        lo, hi = rng.uniform(300, 600), rng.uniform(2000, 3500)
        f = np.linspace(lo, hi, n) if source == "chirp_up" else np.linspace(hi, lo, n)
        return np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE) * _envelope(n, 0.02, 0.02)
    if source == "hiss":  # high band noise
        return _band_noise(rng, n, 4000, 7500) * _envelope(n, 0.05, 0.05)
    if source == "clicks":  # click train
        out = np.zeros(n)
        period = int(SAMPLE_RATE / rng.uniform(8, 20))
        click = np.hanning(64)[32:]  # 2 ms decaying click
        for s in range(int(rng.integers(0, period)), n - len(click), period):
            out[s : s + len(click)] += click * rng.choice([-1, 1])
        return out
    raise ValueError(f"unknown source {source!r}")


def event_sound(rng: np.random.Generator, event: str, n: int) -> np.ndarray:
    """One event of the event task, [n] samples: a harmonic tone at 400-2000 Hz that is steady, rises or falls by a
    fifth, or pulses at 10-16 Hz."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    f0 = 2 ** rng.uniform(np.log2(400), np.log2(2000))
    glide = {"sweep_up": 1.5, "sweep_down": 1 / 1.5}.get(event, 1.0)
    f = f0 * glide ** np.linspace(0, 1, n)  # [n] instantaneous frequency
    phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    out = np.sin(phase) + 0.3 * np.sin(2 * phase)
    if event == "tremolo":
        out *= 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(10, 16) * _time(n)))
    return out * _envelope(n, 0.01, 0.03)


# ---------------------------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class SynthTask:
    name: str  # task_name
    embedding_type: str
    prediction_type: str
    split_mode: str
    splits: tuple[tuple[str, int], ...]  # (split name, number of clips)
    sample_duration: float  # seconds
    evaluation: tuple[str, ...]
    labels: tuple[str, ...]
    make_clip: Callable[[np.random.Generator, int], tuple[np.ndarray, object]]  # (rng, n) -> (audio [n], label)
    evaluation_params: dict | None = None

    @property
    def folder(self) -> str:
        return f"{self.name}-{VERSION}-{MODE}"

    @property
    def n_samples(self) -> int:
        return int(round(self.sample_duration * SAMPLE_RATE))


def _pitch_clip(rng, n):
    note = NOTES[rng.integers(len(NOTES))]
    f0 = NOTE_HZ[note] * 2 ** (rng.uniform(-0.2, 0.2) / 12)  # +-20 cents
    length = int(rng.uniform(0.4, 0.8) * SAMPLE_RATE)
    amps = _random_timbre(rng)
    tone = _harmonic(f0, length, amps) * _envelope(length, rng.uniform(0.005, 0.1), rng.uniform(0.02, 0.2))
    return _mix_to_clip(rng, _place(n, tone, int(rng.integers(0, n - length)))), [note]


def _timbre_clip(rng, n):
    instrument = INSTRUMENTS[rng.integers(len(INSTRUMENTS))]
    f0 = 2 ** rng.uniform(np.log2(150), np.log2(600))
    length = int(rng.uniform(0.5, 0.8) * SAMPLE_RATE)
    note = instrument_note(rng, instrument, f0, length)
    return _mix_to_clip(rng, _place(n, note, int(rng.integers(0, n - length)))), [instrument]


def _mixture_clip(rng, n):
    present = sorted(rng.choice(len(SOURCES), size=rng.integers(1, 4), replace=False))
    mix = np.zeros(n)
    for i in present:
        length = int(rng.uniform(0.5, 1.5) * SAMPLE_RATE)
        sound = source_sound(rng, SOURCES[i], length)
        sound /= np.sqrt(np.mean(sound**2)) + 1e-9
        mix += _place(n, sound * 10 ** (rng.uniform(-10, 0) / 20), int(rng.integers(0, n - length)))
    return _mix_to_clip(rng, mix), [SOURCES[i] for i in present]


def _events_clip(rng, n):
    mix, events = np.zeros(n), []
    start = int(rng.uniform(0.05, 0.5) * SAMPLE_RATE)
    while True:
        length = int(rng.uniform(0.15, 0.4) * SAMPLE_RATE)
        if start + length >= n:
            break
        label = EVENTS[rng.integers(len(EVENTS))]
        sound = event_sound(rng, label, length)
        sound /= np.sqrt(np.mean(sound**2)) + 1e-9
        mix += _place(n, sound * 10 ** (rng.uniform(-10, 0) / 20), start)
        events.append({"label": label, "start": 1000.0 * start / SAMPLE_RATE, "end": 1000.0 * (start + length) / SAMPLE_RATE})
        start += length + int(rng.uniform(0.2, 0.9) * SAMPLE_RATE)  # gaps: onsets stay > 200 ms apart
    return _mix_to_clip(rng, mix), events


TASKS = (
    SynthTask("synth_pitch", "scene", "multiclass", "trainvaltest", (("train", 120), ("valid", 40), ("test", 40)),
              1.0, ("top1_acc",), tuple(NOTES), _pitch_clip),
    SynthTask("synth_timbre", "scene", "multiclass", "new_split_kfold", tuple((f"fold{i:02d}", 30) for i in range(5)),
              1.0, ("top1_acc",), tuple(INSTRUMENTS), _timbre_clip),
    SynthTask("synth_mixture", "scene", "multilabel", "trainvaltest", (("train", 90), ("valid", 30), ("test", 30)),
              2.0, ("mAP", "d_prime", "aucroc"), tuple(SOURCES), _mixture_clip),
    SynthTask("synth_events", "event", "multilabel", "trainvaltest", (("train", 40), ("valid", 15), ("test", 15)),
              3.0, ("event_onset_200ms_fms",), tuple(EVENTS), _events_clip,
              # one postprocessing setting, and validation every 10 epochs as heareval does for DCASE 2016
              # task 2: scoring events (sed_eval) dominates the time of an event task on a CPU
              {"event_postprocessing_grid": {"median_filter_ms": [150], "min_duration": [50]},
               "task_specific_param_grid": {"check_val_every_n_epoch": [10]}}),
)
TASK_NAMES = tuple(t.name for t in TASKS)


def task_metadata(task: SynthTask, seed: int) -> dict:
    metadata = {
        "task_name": task.name,
        "version": VERSION,
        "embedding_type": task.embedding_type,
        "prediction_type": task.prediction_type,
        "split_mode": task.split_mode,
        "sample_duration": task.sample_duration,
        "evaluation": list(task.evaluation),
        "mode": MODE,
        "splits": [s for s, _ in task.splits],
        "generator": {"module": __name__, "seed": seed},
    }
    if task.split_mode != "trainvaltest":
        metadata["nfolds"] = len(task.splits)
    if task.evaluation_params:
        metadata["evaluation_params"] = task.evaluation_params
    return metadata


def write_task(task: SynthTask, out_root: Path, seed: int = 0) -> Path:
    """Write one generated task in the official layout under `out_root`; skipped when already complete."""
    folder = Path(out_root) / task.folder
    metadata = task_metadata(task, seed)
    if task_done(folder, metadata):
        return folder
    tmp = start_task(folder)  # ours (another seed): replaced; a folder we did not write: refused
    # one independent stream per task, so adding a task never changes the others
    rng = np.random.default_rng([seed, TASK_NAMES.index(task.name)])
    for split, count in task.splits:
        audio_dir = tmp / str(SAMPLE_RATE) / split
        audio_dir.mkdir(parents=True)
        labels = {}
        for i in range(count):
            audio, label = task.make_clip(rng, task.n_samples)
            name = f"{split}_{i:04d}.wav"
            sf.write(audio_dir / name, audio, SAMPLE_RATE, subtype="PCM_16")
            labels[name] = label
        (tmp / f"{split}.json").write_text(json.dumps(labels, indent=1))
    return finish_task(tmp, metadata, list(task.labels), metadata)


def write_suite(out_root: Path, seed: int = 0, only: tuple[str, ...] = ()) -> list[Path]:
    unknown = set(only) - set(TASK_NAMES)
    if unknown:
        raise BadInput(f"--only {sorted(unknown)}: no such synthetic task; choose from {list(TASK_NAMES)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise BadInput(f"--seed {seed!r}: expected a non-negative integer")
    return [write_task(t, out_root, seed) for t in TASKS if not only or t.name in only]
