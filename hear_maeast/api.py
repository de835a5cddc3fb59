"""The HEAR 2021 API: load_model, get_scene_embeddings, get_timestamp_embeddings.

Long audio is encoded in chunks of the preset's `input_frames` (MSM-MAE: its fixed input length, padded as the
official runtime does; MAE-AST: 1024 frames by default), so memory does not grow with attention over the clip.
The official MAE-AST attends over a whole clip: past one chunk we differ on purpose (docs/hear-api.md,
"Options, input and outputs").

Timestamps. A patch model sees time in columns of `pw` frames (16 frames = 160 ms for 16x16 patches). To give an
embedding every <= 50 ms we run `shifts` passes over the spectrogram, pass s starting s * pw / shifts frames later,
and interleave their columns: 16x16 patches -> 4 passes, one column every 40 ms. Each embedding is the frequency
tokens of one column concatenated (lowest band first), and its timestamp is the centre of the frames it covers.
Frame models (128x2, 20 ms) need one pass.

Tails. MSM-MAE (2-D positions, a fixed grid) pads every pass to whole chunks, as its official runtime. MAE-AST
(1-D positions) never pads: its official model cuts tokens with nn.Unfold, which drops the last T mod pw frames,
and a padded token would change every other through attention. So each MAE-AST pass holds whole tokens inside
the audio only; its unshifted pass is the official model's tokens, and the scene embedding is their mean. A clip
shorter than one token (the official model gives none) gets one embedding of the audio zero-padded to one token.

Input rule: float audio in [-1, 1]; peaks above MAX_PEAK are refused (int16-scale audio must be divided by 32768),
and non-finite encoder outputs raise WorkFailed instead of returning NaN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hear_maeast import hear_rules
from hear_maeast.checkpoint import CheckpointNotFound
from hear_maeast.device import resolve_device  # the device rule (hear_maeast.api.resolve_device stays importable)
from hear_maeast.errors import BadInput
from hear_maeast.hear_rules import MAX_BATCH, MAX_PEAK, tail_rule  # noqa: F401 (the API's names for them)
from hear_maeast.loading import load_any
from hear_maeast.model import ALL_LAYERS, MaskedAutoencoder, pool_scene, tokens_to_columns

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "default.safetensors"
MODEL_OPTIONS = ("layer", "norm_stats", "device", "max_batch", "trust_pickle", "input_frames", "patch_size")


def load_model(model_file_path: str = "", **model_options) -> MaskedAutoencoder:
    """Load a model for HEAR. No path: the bundled default weights (hear_maeast/weights/MODEL_CARD.md).

    model_options: layer (int, 1-based encoder block to read; -1 = last), norm_stats ([mean, std] replacing the
    stored normalisation), device ("cpu", "cuda", ...), max_batch (sequences per forward pass),
    trust_pickle / input_frames / patch_size (official checkpoints, see docs/hear-api.md, "The authors' weights").
    """
    unknown = sorted(set(model_options) - set(MODEL_OPTIONS))
    if unknown:
        raise BadInput(f"unknown model option(s) {unknown}; known options: {list(MODEL_OPTIONS)}")
    path = Path(model_file_path) if model_file_path else DEFAULT_WEIGHTS
    if not path.is_file():
        hint = " (the package was installed without its default weights)" if not model_file_path else ""
        raise CheckpointNotFound(f"checkpoint file not found: {path}{hint}")
    official = {k: model_options[k] for k in ("trust_pickle", "input_frames", "patch_size") if k in model_options}
    model = load_any(path, **official)  # ours or the authors' files, told apart by content
    model.source = str(path)
    return configure(model, **{k: v for k, v in model_options.items() if k not in official})


def configure(model: MaskedAutoencoder, layer: int = -1, norm_stats=None, device=None, max_batch: int = MAX_BATCH):
    """Apply HEAR model options and put the model in inference mode."""
    depth = model.cfg.depth
    if not isinstance(layer, int) or not (layer == -1 or 1 <= layer <= depth):
        raise BadInput(f"layer={layer!r}: expected an int in 1..{depth} or -1 (last)")
    if norm_stats is not None:
        if not (isinstance(norm_stats, (list, tuple)) and len(norm_stats) == 2):
            raise BadInput(f"norm_stats={norm_stats!r}: expected [mean, std]")
        model.set_norm_stats(*norm_stats)
    if not isinstance(max_batch, int) or max_batch < 1:
        raise BadInput(f"max_batch={max_batch!r}: expected a positive int")
    model.layer, model.max_batch = layer, max_batch
    if device is not None:
        model.to(resolve_device(device))
    return model.eval().requires_grad_(False)


def _check(audio, model) -> torch.Tensor:
    """Validate HEAR input [n_sounds, n_samples]: float64 tensors and float numpy arrays are converted to float32;
    integers, NaN/Inf and peaks above MAX_PEAK (int16 scale) are refused with a message saying what to do."""
    if not isinstance(model, MaskedAutoencoder):
        raise TypeError(f"model must come from hear_maeast.load_model(), got {type(model).__module__}.{type(model).__name__}")
    return check_audio(audio, model.device)


def check_audio(audio, device) -> torch.Tensor:
    """HEAR input [n_sounds, n_samples] as float32 on `device`; one clear error for anything else (any HEAR module
    of the package, e.g. hear_maeast.logmel, validates its input here; the rules and messages: hear_rules)."""
    if isinstance(audio, np.ndarray):
        if not np.issubdtype(audio.dtype, np.floating):
            raise hear_rules.dtype_error(audio.dtype)
        audio = torch.from_numpy(np.ascontiguousarray(audio))
    if not isinstance(audio, torch.Tensor):
        raise hear_rules.AudioTypeError(f"audio must be a torch.Tensor [n_sounds, n_samples], got "
                                        f"{type(audio).__name__}")
    if not audio.is_floating_point():
        raise hear_rules.dtype_error(audio.dtype, "float32")
    problem = hear_rules.shape_problem(tuple(audio.shape))
    if problem:
        raise BadInput(problem)
    _check_values(audio)
    return audio.to(device=device, dtype=torch.float32)


def _check_values(audio: torch.Tensor) -> None:
    """audio [n, N]: every sample finite and |sample| <= MAX_PEAK (checked before float32, where 1e300 is Inf)."""
    finite = torch.isfinite(audio).all(dim=1)  # [n]
    if not finite.all():
        raise hear_rules.nonfinite_error(torch.nonzero(~finite).flatten().tolist())
    peak = audio.abs().amax(dim=1)  # [n]
    if (peak > MAX_PEAK).any():
        raise hear_rules.peak_error(peak.max().item(), torch.nonzero(peak > MAX_PEAK).flatten().tolist())


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


def _padded_passes(model: MaskedAutoencoder, spec: torch.Tensor, shifts: int, length: int) -> torch.Tensor:
    """Fixed grids (MSM-MAE): spec [B, F, >= length] -> interleaved columns [B, S * n_cols, Dc]; column k starts at
    frame k * pw / shifts, and every pass is zero-padded to whole chunks, as the official runtime pads.

    `spec` may hold up to (shifts - 1) * pw / shifts frames past `length`: the shifted passes' overlap.
    """
    cfg = model.cfg
    step = cfg.patch_size[1] // shifts
    span, frames = hear_rules.padded_frames(cfg, length, shifts)  # 2-D positions need whole chunks
    padded = F.pad(spec, (0, frames - spec.shape[-1]))  # zeros = the normalised mean
    views = torch.stack([padded[..., s * step : s * step + span] for s in range(shifts)], dim=1)  # [B, S, F, span]
    cols = encode_columns(model, views.flatten(0, 1))  # [B*S, span/pw, Dc]
    return hear_rules.interleave(cols.unflatten(0, (spec.shape[0], shifts)))  # [B, S, n_cols, Dc] -> [B, n_cols*S, Dc]


def _whole_token_passes(model: MaskedAutoencoder, spec: torch.Tensor, shifts: int, length: int) -> torch.Tensor:
    """1-D positions (MAE-AST): spec [B, F, A >= length] -> interleaved columns [B, K, Dc], whole tokens only.

    Pass s starts s * pw / shifts frames in and keeps the tokens that start before `length` and end inside the A
    frames at hand: on a whole clip, pass 0 is the official model (nn.Unfold drops a partial last token, it never
    pads) and pass s the official model on the audio from frame s * pw / shifts on. No token sees a padded frame.
    """
    pw = model.cfg.patch_size[1]
    step = pw // shifts
    counts = hear_rules.token_counts(model.cfg, shifts, length, spec.shape[-1])  # non-increasing
    # float32: under autocast the front end gives bf16/fp16 `spec` while the encoder's last norm gives float32
    width = model.cfg.timestamp_embedding_size * (model.cfg.depth if model.layer == ALL_LAYERS else 1)
    cols = spec.new_zeros(spec.shape[0], shifts, counts[0], width, dtype=torch.float32)  # [B, S, n_0, Dc]
    for n in sorted(set(counts) - {0}):  # at most two lengths: passes ending before the last hop have one column less
        group = [s for s in range(shifts) if counts[s] == n]
        views = torch.stack([spec[..., s * step : s * step + n * pw] for s in group], dim=1)  # [B, Sg, F, n * pw]
        enc = encode_columns(model, views.flatten(0, 1)).unflatten(0, (spec.shape[0], len(group)))  # [B, Sg, n, Dc]
        cols[:, group, :n] = enc.float()
    return hear_rules.interleave(cols)[:, : sum(counts)]  # [B, K, Dc]: k = j * S + s, a prefix of the grid


def _columns(model: MaskedAutoencoder, audio: torch.Tensor, shifts: int) -> torch.Tensor:
    """audio [B, N] -> interleaved columns [B, K, Dc], front end and encoder run one segment of
    SEGMENT_CHUNKS chunks at a time (hear_rules.segments), so working memory does not grow with the clip (only the
    output does)."""
    cfg = model.cfg
    n_frames = model.frontend.num_frames(audio.shape[1])
    if not cfg.fixed_length and n_frames < cfg.patch_size[1]:  # under one token: the official model gives none, we one
        return encode_columns(model, F.pad(model.frontend(audio), (0, tail_rule(cfg, n_frames)[0] - n_frames)))
    passes = _padded_passes if cfg.fixed_length else _whole_token_passes
    parts = []
    for start, stop, read_stop in hear_rules.segments(cfg, n_frames, shifts):
        spec = model.frontend(audio, start, read_stop)  # [B, F, <= segment + overlap]
        parts.append(passes(model, spec, shifts, stop - start))
    return torch.cat(parts, dim=1)


def column_times(model: MaskedAutoencoder, num_samples: int, shifts: int) -> torch.Tensor:
    """Centres (ms) of the timestamp columns [K], column k covering frames [k * pw / shifts, + pw): which columns
    are kept is hear_rules.column_times's rule (MSM-MAE: those starting inside the audio with their centre before
    its end; MAE-AST: those whose frames all lie inside the audio)."""
    return torch.from_numpy(hear_rules.column_times(model.cfg, num_samples, shifts))


def _finite(x: torch.Tensor, model: MaskedAutoencoder) -> torch.Tensor:
    """x [n, ...] -> x; never hand back NaN: non-finite embeddings mean weights or statistics out of range."""
    finite = torch.isfinite(x).flatten(1).all(dim=1)  # [n]
    if not finite.all():
        raise hear_rules.nonfinite_embeddings_error(model.source, torch.nonzero(~finite).flatten().tolist())
    return x


@torch.no_grad()
def get_timestamp_embeddings(audio: torch.Tensor, model: MaskedAutoencoder):
    """audio [n_sounds, n_samples] float in [-1, 1] at 16 kHz -> (embeddings [n, K, D] float32, timestamps [n, K] ms).

    Timestamps are centred on what each embedding sees, every `hop_ms` (<= 50 ms), and never past the audio's end.
    MAE-AST: the unshifted columns are the official model's token columns (whole tokens, the partial last one
    dropped); for clips longer than `input_frames`, of each chunk. Refuses (BadInput) audio with a peak above
    MAX_PEAK (8: int16-scale audio must be divided by 32768); raises WorkFailed instead of returning NaN.
    """
    audio = _check(audio, model)
    shifts = model.cfg.shifts
    times = column_times(model, audio.shape[1], shifts)  # [K]
    emb = _finite(_columns(model, audio, shifts)[:, : len(times)], model)  # [n, K, Dc]
    ts = times.to(emb.device, torch.float32).expand(audio.shape[0], -1)
    return emb.float().contiguous(), ts.contiguous()


def _scene_columns(model: MaskedAutoencoder, audio: torch.Tensor) -> torch.Tensor:
    """audio [n, N] (checked) -> the unshifted columns the scene embedding pools [n, C, Fg*D'] (D' = D, or depth*D
    with model.layer ALL_LAYERS); MAE-AST: the official model's tokens, the partial last one dropped."""
    n_cols = hear_rules.scene_columns(model.cfg, audio.shape[1])
    return _finite(_columns(model, audio, 1)[:, :n_cols], model)


@torch.no_grad()
def get_layer_states(audio: torch.Tensor, model: MaskedAutoencoder) -> list[torch.Tensor]:
    """audio [n_sounds, n_samples] -> [depth x [n, C, Fg*D]]: every encoder block's output, one column every patch
    width (pw * 10 ms), the columns the scene embedding pools; entry l-1 is what `load_model(layer=l)` embeds.
    For harnesses that weigh the layers themselves (hear_maeast.adapters.s3prl). Same input rules."""
    audio = _check(audio, model)
    cfg, layer = model.cfg, model.layer
    model.layer = ALL_LAYERS
    try:
        cols = _scene_columns(model, audio)  # [n, C, Fg * depth * D]
    finally:
        model.layer = layer
    per_layer = cols.unflatten(-1, (cfg.grid[0], cfg.depth, cfg.dim)).float()  # [n, C, Fg, depth, D]
    return [per_layer[..., i, :].flatten(-2) for i in range(cfg.depth)]


@torch.no_grad()
def get_scene_embeddings(audio: torch.Tensor, model: MaskedAutoencoder) -> torch.Tensor:
    """audio [n_sounds, n_samples] -> [n, scene_embedding_size] float32: the mean over time of the encoder outputs.

    MSM-MAE ("columns"): mean of the concatenated column embeddings, as the official runtime (columns made only of
    padding left out); MAE-AST ("tokens"): mean of the official model's tokens (the partial last token dropped, as
    its nn.Unfold does). Same input rules as `get_timestamp_embeddings`.
    """
    audio = _check(audio, model)
    return pool_scene(_scene_columns(model, audio), model.cfg).float()  # [n, C, Fg*D] -> [n, D_scene]
