"""The generated audio of benchmarks/hear_scale.py's clips, and the pool jobs that write them.

Each label is one sound class (label_sound): a synthetic instrument of eval/synth.py at a pitch of its own, or, for
the NSynth and MAESTRO tasks, a tone or plucked note at the label's MIDI pitch; a clip mixes its labels' sounds (scene
clips) or its planned events (event clips) with coloured background noise at a random SNR and level (clip_audio,
one random stream per clip). write_clips is one pool job, a few clips of one split written as PCM_16 wavs; jobs_of
cuts a task's plan into jobs of about CHUNK_SAMPLES and run_jobs runs them, so memory holds a few clips, never a task.
"""

from __future__ import annotations

import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "benchmarks") not in sys.path:  # hear_shapes
    sys.path.append(str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from eval import synth  # noqa: E402
from hear_shapes import BY_FOLDER, SAMPLE_RATE, Clip, Shape, TaskPlan, task_key  # noqa: E402

BLOCK = 30 * SAMPLE_RATE  # samples of background noise made at once (long clips are mixed block by block)
SHORT_CLIP_S = 4.0  # clips up to this long hold one sound; longer ones a repeated motif
CHUNK_SAMPLES = 60 * SAMPLE_RATE  # about this much audio per pool job (a 600-s clip is a job of its own)

BASE_HZ = 110.0  # the lowest label pitch (A2)


def _class_f0(rng: np.random.Generator, k: int) -> float:
    """Label k's pitch: slot k // 5 semitones above BASE_HZ (the 5 instruments share a slot), jittered by up to a
    third of a semitone, so that neighbours differ by one semitone or by instrument: a probe needs pitch and timbre,
    not just the coarse spectrum (302 labels reach 3.5 kHz)."""
    return BASE_HZ * 2 ** ((k // len(synth.INSTRUMENTS) + rng.uniform(-1 / 3, 1 / 3)) / 12)


def label_sound(rng: np.random.Generator, shape: Shape, k: int, n: int) -> np.ndarray:
    """Label k's sound, [n] samples at unit RMS: for "class" labels a synthetic instrument (which one: k modulo 5)
    at the label's pitch (_class_f0); for pitch labels (MIDI numbers) a random-timbre tone ("pitch", NSynth-like:
    held, then released) or a plucked note ("piano") at that pitch, +-20 cents."""
    if shape.sound == "class":
        instrument = synth.INSTRUMENTS[k % len(synth.INSTRUMENTS)]
        sound = synth.instrument_note(rng, instrument, _class_f0(rng, k), n)
    else:
        midi = int(shape.labels[k])
        f0 = 440.0 * 2 ** ((midi - 69 + rng.uniform(-0.2, 0.2)) / 12)
        if shape.sound == "piano":
            sound = synth.instrument_note(rng, "pluck", f0, n)
        else:
            sound = synth._harmonic(f0, n, synth._random_timbre(rng))
            sound *= synth._envelope(n, rng.uniform(0.005, 0.1), rng.uniform(0.3, 1.0))
    return sound / (np.sqrt(np.mean(sound**2)) + 1e-9)


def _add(mix: np.ndarray, sound: np.ndarray, start: int, gain: float) -> None:
    """mix[start:] += gain * sound, cut at the end of mix (in place: a long clip takes hundreds of these)."""
    end = min(len(mix), start + len(sound))
    mix[start:end] += gain * sound[: end - start]


def _gain(rng: np.random.Generator) -> float:
    return 10 ** (rng.uniform(-10, 0) / 20)


def _fast(n: int) -> int:
    """The next length >= n whose FFT is fast: a clip of 11.26 s is 180160 samples = 2^6 * 5 * 563, whose FFT
    takes many times that of a length with small prime factors only (the noise is made by FFT)."""
    from scipy.fft import next_fast_len

    return next_fast_len(n, real=True)


def _mix(rng: np.random.Generator, signal: np.ndarray) -> np.ndarray:
    """Background noise at 5-30 dB SNR and a random peak level (eval.synth._mix_to_clip, on the signal padded to
    a fast FFT length, then cut back); clips longer than BLOCK get their noise a block at a time (colour and SNR
    change from block to block, as in long recordings), at one peak level."""
    n = len(signal)
    if n <= BLOCK:
        return synth._mix_to_clip(rng, np.pad(signal, (0, _fast(n) - n)))[:n]
    rms = np.sqrt(np.mean(signal**2)) + 1e-9
    out = signal.copy()
    for b in range(0, n, BLOCK):
        seg = out[b : b + BLOCK]
        seg += synth._background(rng, _fast(len(seg)))[: len(seg)] * rms / 10 ** (rng.uniform(5, 30) / 20)
    peak = 10 ** (rng.uniform(-30, -1) / 20)
    return (out / (np.abs(out).max() + 1e-9) * peak).astype(np.float32)


def scene_audio(rng: np.random.Generator, shape: Shape, clip: Clip) -> np.ndarray:
    """One scene clip, float32 [samples]: each of its labels' sounds once (clips up to SHORT_CLIP_S) or as a motif of
    1-2 s repeated over 30-50 % of the clip (longer clips), at random times and levels, then noise and level."""
    n = clip.samples
    mix = np.zeros(n)
    for k in clip.labels:
        if shape.sound == "pitch":  # an NSynth note: starts at once, held 2.5-3.8 s, then released
            length = min(n, int(rng.uniform(2.5, 3.8) * SAMPLE_RATE))
            starts = [int(rng.integers(0, max(1, min(n - length, SAMPLE_RATE // 20)) + 1))]
        elif n <= SHORT_CLIP_S * SAMPLE_RATE:
            length = max(1, int(rng.uniform(0.5, 0.9) * n))
            starts = [int(rng.integers(0, n - length + 1))]
        else:
            length = int(rng.uniform(1.0, 2.0) * SAMPLE_RATE)
            starts = rng.integers(0, n - length + 1, max(1, round(rng.uniform(0.3, 0.5) * n / length))).tolist()
        sound = label_sound(rng, shape, k, length)
        for start in starts:
            _add(mix, sound, start, _gain(rng))
    return _mix(rng, mix)


def event_audio(rng: np.random.Generator, shape: Shape, clip: Clip) -> np.ndarray:
    """One event clip, float32 [samples]: every planned event's label sound at its time, at a random level."""
    mix = np.zeros(clip.samples)
    for start, length, k in clip.events:
        _add(mix, label_sound(rng, shape, k, length), start, _gain(rng))
    return _mix(rng, mix)


def clip_audio(shape: Shape, seed: int, split_index: int, clip: Clip) -> np.ndarray:
    rng = np.random.default_rng([seed, task_key(shape), split_index, clip.index + 1])  # one stream per clip
    return (event_audio if shape.embedding_type == "event" else scene_audio)(rng, shape, clip)


def write_clips(job: tuple) -> int:
    """A pool job: write clips of one split as PCM_16 wavs; returns the samples written."""
    folder, seed, split_index, split, clips = job
    shape = BY_FOLDER[Path(folder).name.removesuffix(".partial")]
    audio_dir = Path(folder) / str(SAMPLE_RATE) / split
    for clip in clips:
        sf.write(audio_dir / clip.name, clip_audio(shape, seed, split_index, clip), SAMPLE_RATE, subtype="PCM_16")
    return sum(c.samples for c in clips)


def jobs_of(folder: Path, plan: TaskPlan):
    """The task's clips in pool jobs of about CHUNK_SAMPLES of audio each."""
    for split_index, (split, clips) in enumerate(plan.splits.items()):
        chunk, size = [], 0
        for clip in clips:
            chunk.append(clip)
            size += clip.samples
            if size >= CHUNK_SAMPLES:
                yield (str(folder), plan.seed, split_index, split, chunk)
                chunk, size = [], 0
        if chunk:
            yield (str(folder), plan.seed, split_index, split, chunk)


def run_jobs(jobs, pool: ProcessPoolExecutor | None, workers: int = 1) -> int:
    """All jobs, in this process (pool None) or at most 2 per worker in flight, so memory stays a few clips."""
    if pool is None:
        return sum(write_clips(job) for job in jobs)
    done, pending, limit = 0, set(), 2 * workers
    for job in jobs:
        if len(pending) >= limit:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            done += sum(f.result() for f in finished)
        pending.add(pool.submit(write_clips, job))
    for future in pending:
        done += future.result()
    return done
