"""The HEAR 2021 API: load_model, get_scene_embeddings, get_timestamp_embeddings.

Long audio is encoded in chunks of the preset's `input_frames` (MSM-MAE: its fixed input length, padded as the
official runtime does; MAE-AST: 1024 frames by default), so memory does not grow with attention over the clip.

Timestamps. A patch model sees time in columns of `pw` frames (16 frames = 160 ms for 16x16 patches). To give an
embedding every <= 50 ms we run `shifts` passes over the spectrogram, pass s starting s * pw / shifts frames later,
and interleave their columns: 16x16 patches -> 4 passes, one column every 40 ms. Each embedding is the frequency
tokens of one column concatenated (lowest band first), and its timestamp is the centre of the frames it covers.
Frame models (128x2, 20 ms) need one pass.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hear_maeast.checkpoint import CheckpointNotFound, is_safetensors, load_checkpoint
from hear_maeast.model import MaskedAutoencoder, tokens_to_columns

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "default.safetensors"
MODEL_OPTIONS = ("layer", "norm_stats", "device", "max_batch", "trust_pickle", "input_frames", "patch_size")
MAX_BATCH = 64  # encoder sequences per forward pass when chunking long audio
SEGMENT_CHUNKS = 16  # chunks of audio per front-end segment


def load_model(model_file_path: str = "", **model_options) -> MaskedAutoencoder:
    """Load a model for HEAR. No path: the bundled default weights (see README, "Default weights").

    model_options: layer (int, 1-based encoder block to read; -1 = last), norm_stats ([mean, std] replacing the
    stored normalisation), device ("cpu", "cuda", ...), max_batch (sequences per forward pass),
    trust_pickle / input_frames / patch_size (official checkpoints, see README "Using the authors' weights").
    """
    unknown = sorted(set(model_options) - set(MODEL_OPTIONS))
    if unknown:
        raise ValueError(f"unknown model option(s) {unknown}; known options: {list(MODEL_OPTIONS)}")
    path = Path(model_file_path) if model_file_path else DEFAULT_WEIGHTS
    if not path.is_file():
        hint = " (the package was installed without its default weights)" if not model_file_path else ""
        raise CheckpointNotFound(f"checkpoint file not found: {path}{hint}")
    official = {k: model_options[k] for k in ("trust_pickle", "input_frames", "patch_size") if k in model_options}
    if is_safetensors(path) and not official:
        model = load_checkpoint(path)
    else:  # the authors' .pth / fairseq .pt files, detected by content (README: "Using the authors' weights")
        from hear_maeast.official import load_official

        model = load_official(path, **official)
    return configure(model, **{k: v for k, v in model_options.items() if k not in official})


def configure(model: MaskedAutoencoder, layer: int = -1, norm_stats=None, device=None, max_batch: int = MAX_BATCH):
    """Apply HEAR model options and put the model in inference mode."""
    depth = model.cfg.depth
    if not isinstance(layer, int) or not (layer == -1 or 1 <= layer <= depth):
        raise ValueError(f"layer={layer!r}: expected an int in 1..{depth} or -1 (last)")
    if norm_stats is not None:
        if not (isinstance(norm_stats, (list, tuple)) and len(norm_stats) == 2):
            raise ValueError(f"norm_stats={norm_stats!r}: expected [mean, std]")
        model.frontend.set_norm_stats(*norm_stats)
    if not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch={max_batch!r}: expected a positive int")
    model.layer, model.max_batch = layer, max_batch
    if device is not None:
        model.to(device)
    return model.eval().requires_grad_(False)


def _check(audio, model) -> torch.Tensor:
    """Validate HEAR input. float64 tensors and float numpy arrays are converted to float32; ints are refused."""
    if not isinstance(model, MaskedAutoencoder):
        raise TypeError(f"model must come from hear_maeast.load_model(), got {type(model).__module__}.{type(model).__name__}")
    return check_audio(audio, model.device)


def check_audio(audio, device) -> torch.Tensor:
    """HEAR input [n_sounds, n_samples] as float32 on `device`; one clear error for anything else (any HEAR module
    of the package, e.g. hear_maeast.logmel, validates its input here)."""
    if isinstance(audio, np.ndarray):
        if not np.issubdtype(audio.dtype, np.floating):
            raise TypeError(f"audio has dtype {audio.dtype}; expected floats in [-1, 1] (divide int16 PCM by 32768)")
        audio = torch.from_numpy(np.ascontiguousarray(audio))
    if not isinstance(audio, torch.Tensor):
        raise TypeError(f"audio must be a torch.Tensor [n_sounds, n_samples], got {type(audio).__name__}")
    if not audio.is_floating_point():
        raise TypeError(f"audio has dtype {audio.dtype}; expected float32 in [-1, 1] (divide int16 PCM by 32768)")
    if audio.ndim != 2:
        raise ValueError(f"audio has shape {tuple(audio.shape)}; expected 2-D [n_sounds, n_samples] at 16 kHz mono")
    if audio.shape[0] == 0:
        raise ValueError("audio is an empty batch (0 sounds); expected [n_sounds >= 1, n_samples]")
    if audio.shape[1] == 0:
        raise ValueError("audio has 0 samples; expected at least one sample per sound")
    finite = torch.isfinite(audio).all(dim=1)
    if not finite.all():
        bad = torch.nonzero(~finite).flatten().tolist()
        raise ValueError(f"audio contains NaN or Inf samples in sound(s) {bad[:10]}; clean or drop them first")
    return audio.to(device=device, dtype=torch.float32)


@torch.no_grad()
def encode_columns(model: MaskedAutoencoder, spec: torch.Tensor) -> torch.Tensor:
    """Chunked encoding: spec [M, F, T] (T a multiple of the patch width) -> columns [M, T / pw, F_grid * D]."""
    chunk = model.cfg.input_frames
    m, _, t = spec.shape
    n_full = t // chunk
    parts = []
    if n_full:
        full = spec[..., : n_full * chunk].unflatten(-1, (n_full, chunk)).transpose(1, 2).flatten(0, 1)  # [M*C, F, L]
        cols = _encode_batched(model, full)  # [M*C, L/pw, Dc]
        parts.append(cols.unflatten(0, (m, n_full)).flatten(1, 2))  # [M, C*L/pw, Dc]
    if t % chunk:
        parts.append(_encode_batched(model, spec[..., n_full * chunk :]))  # the shorter last chunk (1-D positions)
    return torch.cat(parts, dim=1)


def _encode_batched(model, chunks: torch.Tensor) -> torch.Tensor:
    return torch.cat([tokens_to_columns(model.encode(c, model.layer), model.cfg) for c in chunks.split(model.max_batch)])


def _shifted_columns(model: MaskedAutoencoder, spec: torch.Tensor, shifts: int, length: int) -> torch.Tensor:
    """spec [B, F, >= length] -> interleaved columns [B, S * n_cols, Dc]; column k starts at frame k * pw / shifts.

    `spec` may hold up to (shifts - 1) * pw / shifts frames past `length`: the shifted passes' overlap.
    """
    cfg = model.cfg
    step = cfg.patch_size[1] // shifts
    unit = cfg.input_frames if cfg.fixed_length else cfg.patch_size[1]  # 2-D positions need whole chunks
    span = math.ceil(length / unit) * unit
    padded = F.pad(spec, (0, span + (shifts - 1) * step - spec.shape[-1]))  # zeros = the normalised mean
    views = torch.stack([padded[..., s * step : s * step + span] for s in range(shifts)], dim=1)  # [B, S, F, span]
    cols = encode_columns(model, views.flatten(0, 1))  # [B*S, span/pw, Dc]
    cols = cols.unflatten(0, (spec.shape[0], shifts))  # [B, S, n_cols, Dc]
    return cols.transpose(1, 2).flatten(1, 2)  # [B, n_cols*S, Dc]: k = j * S + s


def _columns(model: MaskedAutoencoder, audio: torch.Tensor, shifts: int) -> torch.Tensor:
    """audio [B, N] -> interleaved columns [B, K, Dc], front end and encoder run one segment of
    SEGMENT_CHUNKS chunks at a time, so working memory does not grow with the clip (only the output does)."""
    cfg = model.cfg
    step = cfg.patch_size[1] // shifts
    n_frames = model.frontend.num_frames(audio.shape[1])
    seg = cfg.input_frames * SEGMENT_CHUNKS  # a whole number of chunks: segments split where chunks split
    parts = []
    for start in range(0, n_frames, seg):
        stop = min(start + seg, n_frames)
        spec = model.frontend(audio, start, min(stop + (shifts - 1) * step, n_frames))  # [B, F, <= seg + overlap]
        parts.append(_shifted_columns(model, spec, shifts, stop - start))
    return torch.cat(parts, dim=1)


def column_times(model: MaskedAutoencoder, num_samples: int, shifts: int) -> torch.Tensor:
    """Centres (ms) of the columns that start inside the audio and end their centre before its end."""
    cfg = model.cfg
    pw = cfg.patch_size[1]
    n_frames = model.frontend.num_frames(num_samples)
    start = torch.arange(math.ceil(n_frames * shifts / pw) + shifts) * (pw / shifts)  # first frame of column k
    centre = cfg.frame_offset_ms + cfg.frame_ms * (start + (pw - 1) / 2)
    duration_ms = num_samples * 1000.0 / model.sample_rate
    valid = (start < n_frames) & (centre <= duration_ms)
    if not valid.any():  # shorter than one column: one embedding, stamped at the middle of the audio
        return torch.tensor([duration_ms / 2])
    return centre[valid]


@torch.no_grad()
def get_timestamp_embeddings(audio: torch.Tensor, model: MaskedAutoencoder):
    """audio [n_sounds, n_samples] float in [-1, 1] at 16 kHz -> (embeddings [n, K, D] float32, timestamps [n, K] ms).

    Timestamps are centred on what each embedding sees, every `hop_ms` (<= 50 ms), and never past the audio's end.
    """
    audio = _check(audio, model)
    shifts = model.cfg.shifts
    times = column_times(model, audio.shape[1], shifts)  # [K]
    emb = _columns(model, audio, shifts)[:, : len(times)]  # [n, K, Dc]
    ts = times.to(emb.device, torch.float32).expand(audio.shape[0], -1)
    return emb.float().contiguous(), ts.contiguous()


@torch.no_grad()
def get_scene_embeddings(audio: torch.Tensor, model: MaskedAutoencoder) -> torch.Tensor:
    """audio [n_sounds, n_samples] -> [n, scene_embedding_size] float32: the mean over time of the encoder outputs.

    MSM-MAE ("columns"): mean of the concatenated column embeddings, as the official runtime; MAE-AST ("tokens"):
    mean of all token embeddings. Columns made only of padding are left out.
    """
    audio = _check(audio, model)
    cfg = model.cfg
    n_cols = max(1, math.ceil(model.frontend.num_frames(audio.shape[1]) / cfg.patch_size[1]))
    cols = _columns(model, audio, 1)[:, :n_cols]  # [n, C, Fg*D]
    if cfg.scene_pool == "tokens":
        cols = cols.unflatten(-1, (cfg.grid[0], cfg.dim))  # [n, C, Fg, D]
        return cols.mean(dim=(1, 2)).float()
    return cols.mean(dim=1).float()
