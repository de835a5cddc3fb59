"""Model configurations and the preset registry.

MSM-MAE and MAE-AST are two configurations of one model family: a front end, a tokeniser, positions,
a stack of Transformer blocks (pre-norm or post-norm) and a light decoder. A new variant is a new preset.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from hear_maeast.timing import FRAME0_MS, FRAME_MS

FAMILIES = ("msm-mae", "mae-ast")


@dataclass(frozen=True)
class ModelConfig:
    name: str
    family: str  # "msm-mae" | "mae-ast"
    # front end
    frontend: str  # "logmel" (MSM-MAE: torchaudio MelSpectrogram, Slaney) | "fbank" (MAE-AST: Kaldi fbank)
    n_mels: int
    norm_mean: float  # fixed normalisation statistics: x <- (x - mean) / std * scale
    norm_std: float
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
    block: str = "prenorm"  # "prenorm" (timm/MAE ViT) | "postnorm" (wav2vec2 / fairseq)
    qkv_bias: str = "qv"  # "qv": q and v biases, no k bias (MSM-MAE) | "qkv" (MAE-AST)
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
        """Shifted passes per column so that the timestamp hop is <= max_hop_ms (README: timestamps)."""
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
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown model configuration fields {unknown}; known: {sorted(names)}")
        d = dict(d)
        if "patch_size" in d:
            d["patch_size"] = tuple(d["patch_size"])
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        ph, pw = self.patch_size
        problems = []
        if self.family not in FAMILIES:
            problems.append(f"family {self.family!r} is not one of {FAMILIES}")
        if self.n_mels % ph:
            problems.append(f"n_mels={self.n_mels} is not a multiple of the patch height {ph}")
        if self.input_frames % pw:
            problems.append(f"input_frames={self.input_frames} is not a multiple of the patch width {pw}")
        if self.dim % self.heads or self.decoder_dim % self.decoder_heads:
            problems.append("dim and decoder_dim must be multiples of their head counts")
        if not 0.0 <= self.mask_ratio < 1.0:
            problems.append(f"mask_ratio={self.mask_ratio} must be in [0, 1)")
        for name, value, allowed in [
            ("frontend", self.frontend, ("logmel", "fbank")),
            ("token_order", self.token_order, ("freq_major", "time_major")),
            ("patch_flatten", self.patch_flatten, ("ft", "tf")),
            ("positions", self.positions, ("sincos2d", "sincos1d")),
            ("block", self.block, ("prenorm", "postnorm")),
            ("qkv_bias", self.qkv_bias, ("qv", "qkv")),
            ("mask_kind", self.mask_kind, ("random", "chunk")),
            ("objective", self.objective, ("mse", "joint", "generative", "discriminative")),
            ("scene_pool", self.scene_pool, ("columns", "tokens")),
        ]:
            if value not in allowed:
                problems.append(f"{name}={value!r} is not one of {allowed}")
        if problems:
            raise ValueError(f"invalid model configuration {self.name!r}: " + "; ".join(problems))


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
    positions="sincos1d", cls_token=False, block="postnorm", qkv_bias="qkv", norm_eps=1e-5,
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
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
