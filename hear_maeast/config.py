"""Model configurations and the preset registry.

MSM-MAE and MAE-AST are two configurations of one model family: a front end, a tokeniser, positions,
a stack of Transformer blocks (pre-norm or post-norm) and a light decoder. A new variant is a new preset.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from hear_maeast.errors import BadInput
from hear_maeast.timing import FRAME0_MS, FRAME_MS

FAMILIES = ("msm-mae", "mae-ast")


@dataclass(frozen=True)
class ModelConfig:
    name: str
    family: str  # "msm-mae" | "mae-ast"
    # front end
    frontend: str  # "logmel" (MSM-MAE: torchaudio MelSpectrogram, Slaney) | "fbank" (MAE-AST: Kaldi fbank)
    n_mels: int
    norm_mean: float  # fixed normalisation statistics, x <- (x - mean) / std * scale: the one record of them
    norm_std: float  # (docs/design.md, "Normalisation"); change them with MaskedAutoencoder.set_norm_stats
    norm_scale: float = 1.0  # MAE-AST multiplies its BatchNorm output by 0.5
    # tokens
    input_frames: int = 208  # frames per encoder chunk (fixed grid for 2-D positions, a maximum for 1-D)
    patch_size: tuple[int, int] = (16, 16)  # (mel bins, frames); MAE-AST frames are (128, 2)
    token_order: str = "freq_major"  # MSM-MAE: f * T_grid + t | "time_major" (MAE-AST): t * F_grid + f
    patch_flatten: str = "ft"  # values inside a patch: "ft" = [mel, frame] (Conv2d weight order) | "tf"
    positions: str = "sincos2d"  # "sincos2d" (MSM-MAE) | "sincos1d" (MAE-AST)
    cls_token: bool = True
    # encoder
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    norm_position: str = "pre"  # LayerNorm "pre" (timm/MAE ViT) | "post" (wav2vec2 / fairseq) the residual add
    k_bias: bool = False  # attention key bias: MSM-MAE has q and v biases only; MAE-AST (fairseq) all three
    norm_eps: float = 1e-6
    # decoder (pretraining only; kept in the same model so a checkpoint holds the whole model)
    decoder_dim: int = 384
    decoder_depth: int = 4
    decoder_heads: int = 6
    # pretraining objective defaults
    mask_ratio: float = 0.75
    mask_kind: str = "random"  # "random" | "chunk"
    objective: str = "mse"  # "mse" (MSM-MAE) | "joint" (MAE-AST: InfoNCE + 10 x MSE) | "generative" | "discriminative"
    norm_pix_loss: bool = False
    # HEAR embeddings
    scene_pool: str = "columns"  # "columns": mean of time columns (F_grid * D) | "tokens": mean of tokens (D)
    max_hop_ms: float = 50.0

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        """Tokens per chunk as (F_grid, T_grid)."""
        return self.n_mels // self.patch_size[0], self.input_frames // self.patch_size[1]

    @property
    def num_patches(self) -> int:
        f, t = self.grid
        return f * t

    @property
    def patch_dim(self) -> int:
        return self.patch_size[0] * self.patch_size[1]

    @property
    def fixed_length(self) -> bool:
        """2-D positions fix the grid: every chunk is padded to `input_frames`."""
        return self.positions == "sincos2d"

    @property
    def frame_ms(self) -> float:
        return FRAME_MS

    @property
    def frame_offset_ms(self) -> float:
        """Centre of frame 0: centred STFT (log-mel) at 0 ms; Kaldi's snip-edges frames at 12.5 ms."""
        return FRAME0_MS[self.frontend]

    @property
    def shifts(self) -> int:
        """Shifted passes per column so that the timestamp hop is <= max_hop_ms (docs/hear-api.md: timestamps)."""
        pw = self.patch_size[1]
        for n in range(1, pw + 1):
            if pw % n == 0 and pw * self.frame_ms / n <= self.max_hop_ms:
                return n
        return pw

    @property
    def hop_ms(self) -> float:
        return self.patch_size[1] * self.frame_ms / self.shifts

    @property
    def timestamp_embedding_size(self) -> int:
        return self.grid[0] * self.dim

    @property
    def scene_embedding_size(self) -> int:
        return self.timestamp_embedding_size if self.scene_pool == "columns" else self.dim

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """A validated configuration; keys written by earlier versions are read under their old names too."""
        if not isinstance(d, dict):
            raise BadInput(f"a model configuration must be a JSON object, got {type(d).__name__}")
        d = _upgrade(d)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.name not in d and f.default is dataclasses.MISSING)
        if unknown or missing:
            raise BadInput(f"model configuration: unknown fields {unknown}, missing fields {missing}; "
                           f"known: {sorted(names)}")
        if isinstance(d.get("patch_size"), list):
            d["patch_size"] = tuple(d["patch_size"])
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise BadInput listing every problem: wrong types, sizes that are not positive, unknown choices."""
        problems = _type_problems(self)
        if not problems:  # the arithmetic below needs the right types
            problems = _value_problems(self)
        if problems:
            raise BadInput(f"invalid model configuration {self.name!r}: " + "; ".join(problems))


# ---- validation ------------------------------------------------------------------------------------
_POSITIVE_INTS = ("n_mels", "input_frames", "dim", "depth", "heads", "decoder_dim", "decoder_heads")
CHOICES = {  # each option's vocabulary, the one home (pretrain/cli.py offers mask_kind and objective from here)
    "family": FAMILIES,
    "frontend": ("logmel", "fbank"),
    "token_order": ("freq_major", "time_major"),
    "patch_flatten": ("ft", "tf"),
    "positions": ("sincos2d", "sincos1d"),
    "norm_position": ("pre", "post"),
    "mask_kind": ("random", "chunk"),
    "objective": ("mse", "joint", "generative", "discriminative"),
    "scene_pool": ("columns", "tokens"),
}
MAX_MELS = 256  # more mel bins than the 512-point FFT has bins is meaningless (and bounds the filterbank's memory)
MIN_NORM_STD = 1e-6  # a smaller std underflows float32 (1e-50 -> 0) or makes the normalised features overflow
MAX_NORM_MEAN = 1e30  # log-mel means are tens; past float32's range (3.4e38) a mean becomes Inf


def norm_stats_problem(mean: float, std: float) -> str | None:
    """What makes (mean, std) unusable as float32 normalisation statistics beyond finite and std > 0, or None."""
    if 0 < std < MIN_NORM_STD:
        return f"std {std:g} is below {MIN_NORM_STD:g} (it underflows float32 or makes the normalised features overflow)"
    if abs(mean) > MAX_NORM_MEAN:
        return f"mean {mean:g} is beyond +-{MAX_NORM_MEAN:g} (outside float32's range, or meaningless for log-mels)"
    return None


# Configuration keys of version 0.1.0 -> (new key, old value -> new value)
_LEGACY = {
    "block": ("norm_position", {"prenorm": "pre", "postnorm": "post"}),
    "qkv_bias": ("k_bias", {"qv": False, "qkv": True}),
}


def _upgrade(d: dict) -> dict:
    """Configuration written by version 0.1.0 -> today's names (docs/design.md, "Transformer blocks")."""
    d = dict(d)
    for old, (new, values) in _LEGACY.items():
        if old not in d:
            continue
        value = d.pop(old)
        if value not in values:
            raise BadInput(f"model configuration: {old}={value!r} is not one of {sorted(values)}")
        if new in d and d[new] != values[value]:
            raise BadInput(f"model configuration: {old}={value!r} contradicts {new}={d[new]!r}")
        d[new] = values[value]
    return d


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _type_problems(c: ModelConfig) -> list[str]:
    problems = [f"{n}={getattr(c, n)!r} must be a positive int" for n in _POSITIVE_INTS
                if not (_is_int(getattr(c, n)) and getattr(c, n) > 0)]
    if not (_is_int(c.decoder_depth) and c.decoder_depth >= 0):
        problems.append(f"decoder_depth={c.decoder_depth!r} must be an int >= 0")
    if not (isinstance(c.patch_size, tuple) and len(c.patch_size) == 2
            and all(_is_int(v) and v > 0 for v in c.patch_size)):
        problems.append(f"patch_size={c.patch_size!r} must be two positive ints (mel bins, frames)")
    for n in ("norm_mean", "norm_std", "norm_scale", "mlp_ratio", "norm_eps", "mask_ratio", "max_hop_ms"):
        if not _is_number(getattr(c, n)):
            problems.append(f"{n}={getattr(c, n)!r} must be a finite number")
    for n in ("cls_token", "k_bias", "norm_pix_loss"):
        if not isinstance(getattr(c, n), bool):
            problems.append(f"{n}={getattr(c, n)!r} must be true or false")
    problems += [f"{n}={getattr(c, n)!r} is not one of {allowed}" for n, allowed in CHOICES.items()
                 if getattr(c, n) not in allowed]
    if not isinstance(c.name, str):
        problems.append(f"name={c.name!r} must be a string")
    return problems


def _value_problems(c: ModelConfig) -> list[str]:
    ph, pw = c.patch_size
    problems = []
    if c.n_mels > MAX_MELS:
        problems.append(f"n_mels={c.n_mels} is more than {MAX_MELS}")
    if c.n_mels % ph:
        problems.append(f"n_mels={c.n_mels} is not a multiple of the patch height {ph}")
    if c.input_frames % pw:
        problems.append(f"input_frames={c.input_frames} is not a multiple of the patch width {pw}")
    if c.dim % c.heads or c.decoder_dim % c.decoder_heads:
        problems.append("dim and decoder_dim must be multiples of their head counts")
    if not 0.0 <= c.mask_ratio < 1.0:
        problems.append(f"mask_ratio={c.mask_ratio} must be in [0, 1)")
    for n in ("norm_std", "norm_scale", "mlp_ratio", "norm_eps", "max_hop_ms"):
        if getattr(c, n) <= 0:
            problems.append(f"{n}={getattr(c, n)} must be > 0" + (
                " (a std of 0 gives NaN embeddings, a negative one flips their sign)" if n == "norm_std" else ""))
    if _is_number(c.norm_mean) and _is_number(c.norm_std) and norm_stats_problem(c.norm_mean, c.norm_std):
        problems.append(f"norm_mean={c.norm_mean}, norm_std={c.norm_std}: {norm_stats_problem(c.norm_mean, c.norm_std)}")
    if c.mlp_ratio > 0 and int(c.dim * c.mlp_ratio) < 1:
        problems.append(f"mlp_ratio={c.mlp_ratio} leaves no hidden units at width {c.dim}")
    return problems


# ---- presets -----------------------------------------------------------------------------------
# MSM-MAE (Niizumi et al. 2022): log-mel 80 bins, ViT-Base, 2-D sin-cos positions, CLS, q/v bias.
# AudioSet stats commonly used with this front end (docs/design.md, "Normalisation"); pretraining replaces them with the data's.
_MSM = ModelConfig(
    name="msm-mae-base-80x208p16x16", family="msm-mae", frontend="logmel", n_mels=80,
    norm_mean=-7.1, norm_std=4.2,
)
# MAE-AST (Baade et al. 2022): Kaldi fbank 128 bins, BatchNorm x 0.5, 1-D sinusoidal positions, no CLS,
# wav2vec2-style post-norm layers, 2-layer decoder of the encoder's width, InfoNCE + 10 x MSE.
_MAE_AST = ModelConfig(
    name="mae-ast-patch-12l", family="mae-ast", frontend="fbank", n_mels=128,
    norm_mean=-4.27, norm_std=4.57, norm_scale=0.5,
    input_frames=1024, patch_size=(16, 16), token_order="time_major", patch_flatten="tf",
    positions="sincos1d", cls_token=False, norm_position="post", k_bias=True, norm_eps=1e-5,
    decoder_dim=768, decoder_depth=2, decoder_heads=12,
    mask_kind="chunk", objective="joint", scene_pool="tokens",
)
_FRAME = dict(patch_size=(128, 2), mask_kind="random")
_SMALL = dict(dim=384, heads=6)
_MICRO = dict(dim=32, depth=2, heads=2, decoder_dim=32, decoder_depth=1, decoder_heads=2)

PRESETS: dict[str, ModelConfig] = {}


def _add(base: ModelConfig, name: str, **changes) -> None:
    cfg = base.replace(name=name, **changes)
    cfg.validate()
    PRESETS[name] = cfg


_add(_MSM, "msm-mae-base-80x208p16x16")
_add(_MSM, "msm-mae-base-80x512p16x16", input_frames=512)
_add(_MSM, "msm-mae-small-80x208p16x16", **_SMALL, decoder_dim=384, decoder_heads=6)
# Small enough to train on a laptop CPU in an hour and ship inside the package (the default weights).
_add(_MSM, "msm-mae-tiny-80x208p16x16", dim=192, depth=6, heads=3, decoder_dim=128, decoder_depth=2, decoder_heads=4)
_add(_MSM, "msm-mae-micro", **_MICRO)
_add(_MAE_AST, "mae-ast-patch-12l")
_add(_MAE_AST, "mae-ast-frame-12l", **_FRAME)
_add(_MAE_AST, "mae-ast-patch-6l", depth=6)
_add(_MAE_AST, "mae-ast-frame-6l", depth=6, **_FRAME)
_add(_MAE_AST, "mae-ast-patch-small", **_SMALL, decoder_dim=384, decoder_heads=6)
_add(_MAE_AST, "mae-ast-frame-small", **_SMALL, decoder_dim=384, decoder_heads=6, **_FRAME)
_add(_MAE_AST, "mae-ast-patch-micro", **_MICRO, input_frames=256)
_add(_MAE_AST, "mae-ast-frame-micro", **_MICRO, input_frames=256, **_FRAME)

DEFAULT_PRESET = "msm-mae-tiny-80x208p16x16"


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise BadInput(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
