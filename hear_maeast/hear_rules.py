"""The HEAR API's rules without torch: what audio it accepts, which samples each front-end segment reads, how the
frames are cut into segments, chunks and shifted passes, and where each embedding is stamped.

One home for them: the torch API (hear_maeast.api, hear_maeast.frontend) and the torch-free ONNX runtime
(hear_maeast.onnx_runtime) both call these functions, so the two cannot drift apart. Only numpy; the array work
itself (slicing, padding, encoding) stays with each caller's library.
"""

from __future__ import annotations

import math

import numpy as np

from hear_maeast.errors import BadInput, WorkFailed
from hear_maeast.timing import HOP, SAMPLE_RATE, WIN

SEGMENT_CHUNKS = 16  # chunks of audio per front-end segment: working memory stays bounded on long clips
MAX_BATCH = 64  # encoder sequences per forward pass when the HEAR API chunks long audio
MAX_PEAK = 8.0  # audio is float in [-1, 1]; a louder peak is refused (int16-scale audio must be divided by 32768)


class AudioTypeError(BadInput, TypeError):
    """Audio of the wrong type or dtype: a TypeError for the HEAR API's callers, exit 2 on the command line."""


# ---- input ---------------------------------------------------------------------------------------------
def dtype_error(dtype, expected: str = "floats") -> AudioTypeError:
    return AudioTypeError(f"audio has dtype {dtype}; expected {expected} in [-1, 1] (divide int16 PCM by 32768)")


def shape_problem(shape: tuple) -> str | None:
    """What is wrong with HEAR input of this shape ([n_sounds >= 1, n_samples >= 1]), or None."""
    if len(shape) != 2:
        return f"audio has shape {tuple(shape)}; expected 2-D [n_sounds, n_samples] at 16 kHz mono"
    if shape[0] == 0:
        return "audio is an empty batch (0 sounds); expected [n_sounds >= 1, n_samples]"
    if shape[1] == 0:
        return "audio has 0 samples; expected at least one sample per sound"
    return None


def nonfinite_error(bad: list[int]) -> BadInput:
    return BadInput(f"audio contains NaN or Inf samples in sound(s) {bad[:10]}; clean or drop them first")


def peak_error(peak: float, bad: list[int]) -> BadInput:
    return BadInput(
        f"audio peaks at {_above(peak, MAX_PEAK)} in sound(s) {bad[:10]}; expected floats in [-1, 1] (peaks up to "
        f"{MAX_PEAK:g} are accepted): audio at int16 scale must be divided by 32768 (int32: by 2147483648)"
    )


def _above(value: float, limit: float) -> str:
    """`value` (> limit) with the fewest digits that still read as above `limit`: 8.0000001, not 8."""
    return next((text for digits in range(6, 18) if float(text := f"{value:.{digits}g}") > limit), repr(value))


def check_audio_array(audio) -> np.ndarray:
    """HEAR input as numpy: float [n_sounds, n_samples] -> float32, or the torch API's one-line errors."""
    if not isinstance(audio, np.ndarray):
        raise AudioTypeError(f"audio must be a numpy array [n_sounds, n_samples] of float32, got "
                             f"{type(audio).__name__}")
    if not np.issubdtype(audio.dtype, np.floating):
        raise dtype_error(audio.dtype)
    problem = shape_problem(audio.shape)
    if problem:
        raise BadInput(problem)
    finite = np.isfinite(audio).all(axis=1)  # [n]; checked before float32, where 1e300 is Inf
    if not finite.all():
        raise nonfinite_error(np.flatnonzero(~finite).tolist())
    peak = np.abs(audio).max(axis=1)  # [n]
    if (peak > MAX_PEAK).any():
        raise peak_error(float(peak.max()), np.flatnonzero(peak > MAX_PEAK).tolist())
    return np.ascontiguousarray(audio, dtype=np.float32)


# ---- frames --------------------------------------------------------------------------------------------
def min_samples(frontend: str) -> int:
    """Shorter clips are zero-padded to this: log-mel's reflect padding needs more samples than it pads (WIN / 2),
    Kaldi's fbank one whole window."""
    return WIN // 2 + 1 if frontend == "logmel" else WIN


def num_frames(frontend: str, num_samples: int) -> int:
    """Frames of a clip: log-mel's centred STFT, one every HOP from sample 0; Kaldi's snip-edges windows."""
    n = max(num_samples, min_samples(frontend))
    return 1 + n // HOP if frontend == "logmel" else 1 + (n - WIN) // HOP


def frame_window(frontend: str, start: int, stop: int) -> tuple[int, int]:
    """Samples [lo, hi) that frames [start, stop) read; log-mel frame f is centred on sample f * HOP, so its
    window reaches before 0 and past the end (into reflected samples), Kaldi's frame f covers [f * HOP, + WIN)."""
    if frontend == "logmel":
        return start * HOP - WIN // 2, (stop - 1) * HOP + WIN // 2
    return start * HOP, (stop - 1) * HOP + WIN


def reflected(lo: int, hi: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Of samples [lo, hi) of a clip of n (> WIN / 2) samples, the indices standing for those before 0 and from n
    on: reflected at the edges without repeating them, as torch.stft's center=True pads ([-lo], [hi - n] long)."""
    left = np.arange(-lo, 0, -1)  # sample j < 0 is sample -j
    right = np.arange(n - 2, 2 * n - 2 - hi, -1)  # sample j >= n is sample 2 (n - 1) - j
    return left, right


# ---- chunks, passes, tails -----------------------------------------------------------------------------
def tail_rule(cfg, n_frames: int) -> tuple[int, int]:
    """The tail and padding rule of a clip of `n_frames` frames (n_frames >= 1): (span, n_cols). The encoder sees the
    frames zero-padded (zeros = the normalised mean) or cut to `span`; its first `n_cols` columns are the clip's.

    MSM-MAE (fixed grid): padded to whole chunks, as the official runtime pads; the columns made only of padding
    left out. MAE-AST (1-D positions): whole tokens only, the partial last one dropped as the official model's
    nn.Unfold does; a clip shorter than one token padded to one. docs/design.md, "The MAE-AST tail". Fine-tuning
    (eval/finetune.py) pools its training crops by the same rule.
    """
    pw = cfg.patch_size[1]
    if cfg.fixed_length:
        return math.ceil(n_frames / cfg.input_frames) * cfg.input_frames, max(1, math.ceil(n_frames / pw))
    n_cols = max(1, n_frames // pw)
    return n_cols * pw, n_cols


def segments(cfg, n_frames: int, shifts: int) -> list[tuple[int, int, int]]:
    """(start, stop, read_stop) per front-end segment: SEGMENT_CHUNKS whole chunks of frames [start, stop), so
    segments split where chunks split; the front end reads on to read_stop for the shifted passes' overlap."""
    overlap = (shifts - 1) * (cfg.patch_size[1] // shifts)
    seg = cfg.input_frames * SEGMENT_CHUNKS
    bounds = [(start, min(start + seg, n_frames)) for start in range(0, n_frames, seg)]
    return [(start, stop, min(stop + overlap, n_frames)) for start, stop in bounds]


def padded_frames(cfg, length: int, shifts: int) -> tuple[int, int]:
    """Fixed grids: (span, padded) of a segment of `length` frames: each pass covers `span` (whole chunks) frames,
    pass s from frame s * pw / shifts on, so the segment is zero-padded to `padded` frames."""
    span, _ = tail_rule(cfg, length)
    return span, span + (shifts - 1) * (cfg.patch_size[1] // shifts)


def token_counts(cfg, shifts: int, length: int, available: int) -> list[int]:
    """1-D positions: whole tokens per pass of a segment of `length` frames with `available` frames at hand (the
    overlap included): pass s, from frame s * pw / shifts on, keeps the tokens that start before `length` and end
    inside the frames at hand; non-increasing in s."""
    pw = cfg.patch_size[1]
    step = pw // shifts
    return [max(0, min(-(-length // pw), (available - s * step) // pw)) for s in range(shifts)]


# ---- columns (torch tensors and numpy arrays alike: reshape, swapaxes and mean only) ---------------------
def tokens_to_columns(x, cfg):
    """[B, N, D] -> [B, T_grid, F_grid * D]: the frequency tokens of each time column, lowest first."""
    b, n, d = x.shape
    fg = cfg.n_mels // cfg.patch_size[0]
    tg = n // fg
    x = x.reshape(b, fg, tg, d).swapaxes(1, 2) if cfg.token_order == "freq_major" else x.reshape(b, tg, fg, d)
    return x.reshape(b, tg, fg * d)


def interleave(cols):
    """Shifted passes' columns [B, S, n, Dc] -> [B, n * S, Dc]: column k = j * S + s starts at (k * pw / S) frames."""
    b, s, n, dc = cols.shape
    return cols.swapaxes(1, 2).reshape(b, n * s, dc)


def pool_scene(cols, cfg):
    """Scene pooling of a family: columns [B, C, F_grid * D] -> [B, scene_embedding_size].

    MSM-MAE ("columns"): the mean of the columns (concatenated frequency tokens, as the official runtime);
    MAE-AST ("tokens"): the mean of all tokens. The HEAR API, fine-tuning (eval/finetune.py) and the ONNX runtime
    pool here.
    """
    if cfg.scene_pool == "tokens":
        b, c, _ = cols.shape
        return cols.reshape(b, c, cfg.grid[0], cfg.dim).mean(axis=(1, 2))  # [B, C, Fg, D] -> [B, D]
    return cols.mean(axis=1)


def nonfinite_embeddings_error(source: str, bad: list[int]) -> WorkFailed:
    return WorkFailed(
        f"{source or 'the model'}: the encoder gave NaN or Inf embeddings for sound(s) {bad[:10]} of finite audio: "
        "its weights or normalisation statistics are out of range (e.g. values near 1e30); check how the checkpoint "
        "was made, or load another one"
    )


# ---- timestamps ----------------------------------------------------------------------------------------
def column_times(cfg, num_samples: int, shifts: int) -> np.ndarray:
    """Centres (ms, float32 [K]) of the timestamp columns, column k covering frames [k * pw / shifts, + pw).

    Fixed grids (MSM-MAE, padded as its official runtime): the columns that start inside the audio and have their
    centre before its end. 1-D positions (MAE-AST, never padded, as the official model): the columns whose frames
    all lie inside the audio. float32 arithmetic throughout, as the torch API has always stamped.
    """
    pw = cfg.patch_size[1]
    n_frames = num_frames(cfg.frontend, num_samples)
    start = np.arange(math.ceil(n_frames * shifts / pw) + shifts, dtype=np.float32) * np.float32(pw / shifts)
    centre = cfg.frame_offset_ms + cfg.frame_ms * (start + (pw - 1) / 2)  # [K] float32 (numpy's weak scalars)
    duration_ms = num_samples * 1000.0 / SAMPLE_RATE
    valid = (start < n_frames) & (centre <= duration_ms) if cfg.fixed_length else start + pw <= n_frames
    if not valid.any():  # shorter than one column: one embedding, stamped at the middle of the audio
        return np.array([duration_ms / 2], np.float32)
    return centre[valid]


def scene_columns(cfg, num_samples: int) -> int:
    """How many unshifted columns the scene embedding pools (tail_rule)."""
    return tail_rule(cfg, num_frames(cfg.frontend, num_samples))[1]
