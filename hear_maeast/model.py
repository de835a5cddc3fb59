"""One masked-autoencoder family for MSM-MAE and MAE-AST.

spectrogram [B, F, T] -> patchify -> [B, N, P] -> patch_embed + positions -> mask -> encoder on visible tokens
-> decoder on all tokens (mask tokens at masked positions) -> per-patch predictions [B, N, P].
Shapes: B batch, F mel bins, T frames, N tokens, P = ph * pw values per patch, D width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hear_maeast.config import ModelConfig, norm_stats_problem
from hear_maeast.errors import BadInput
from hear_maeast.hear_rules import MAX_BATCH, pool_scene, tokens_to_columns  # noqa: F401 (imported from here too)
from hear_maeast.timing import SAMPLE_RATE

ALL_LAYERS = 0  # `layer` value for every block's output at once, concatenated along the width (hear_maeast.adapters)


# ---- positions ---------------------------------------------------------------------------------
def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Sinusoidal table, sin on even and cos on odd channels (as the classic Transformer). [L] -> [L, dim]."""
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    pe = torch.zeros(len(positions), dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(positions[:, None].double() * div)
    pe[:, 1::2] = torch.cos(positions[:, None].double() * div)
    return pe.float()


def sincos_mae(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """MAE's 1-D sin-cos: first half sin, second half cos, omega = 1 / 10000^(2i/dim). [L] -> [L, dim]."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = positions[:, None].double() * omega[None]
    return torch.cat([out.sin(), out.cos()], dim=1).float()


def sincos_2d(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """MAE's 2-D sin-cos over a (F_grid, T_grid) grid in frequency-major order: [F_grid * T_grid, dim]."""
    fg, tg = grid
    f = torch.arange(fg).repeat_interleave(tg)  # frequency index of token f * tg + t
    t = torch.arange(tg).repeat(fg)  # time index
    # MAE's meshgrid(w, h) puts the width (time) coordinate in the first half of the channels
    return torch.cat([sincos_mae(dim // 2, t), sincos_mae(dim // 2, f)], dim=1)


def position_table(cfg: ModelConfig, dim: int) -> torch.Tensor:
    """[1, (1 if CLS) + N, dim]; the CLS position is zeros."""
    if cfg.positions == "sincos2d":
        pe = sincos_2d(dim, cfg.grid)
    else:
        pe = sincos_1d(dim, torch.arange(cfg.num_patches))
    if cfg.cls_token:
        pe = torch.cat([torch.zeros(1, dim), pe])
    return pe[None]


# ---- tokens ------------------------------------------------------------------------------------
def patchify(spec: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """[B, F, T] -> [B, N, P] in the preset's token order and within-patch order."""
    b, f, t = spec.shape
    ph, pw = cfg.patch_size
    x = spec.reshape(b, f // ph, ph, t // pw, pw)  # [B, Fg, ph, Tg, pw]
    x = x.permute(0, 1, 3, 2, 4) if cfg.token_order == "freq_major" else x.permute(0, 3, 1, 2, 4)  # [B, g1, g2, ph, pw]
    if cfg.patch_flatten == "tf":
        x = x.transpose(-1, -2)  # [.., pw, ph]
    return x.reshape(b, (f // ph) * (t // pw), ph * pw)


def unpatchify(tokens: torch.Tensor, cfg: ModelConfig, frames: int) -> torch.Tensor:
    """Inverse of `patchify`: [B, N, P] -> [B, F, T]."""
    b = tokens.shape[0]
    ph, pw = cfg.patch_size
    fg, tg = cfg.n_mels // ph, frames // pw
    outer = (fg, tg) if cfg.token_order == "freq_major" else (tg, fg)
    inner = (pw, ph) if cfg.patch_flatten == "tf" else (ph, pw)
    x = tokens.reshape(b, *outer, *inner)
    if cfg.patch_flatten == "tf":
        x = x.transpose(-1, -2)  # [B, o1, o2, ph, pw]
    if cfg.token_order == "time_major":
        x = x.transpose(1, 2)  # [B, Fg, Tg, ph, pw]
    return x.permute(0, 1, 3, 2, 4).reshape(b, fg * ph, tg * pw)


# ---- Transformer -------------------------------------------------------------------------------
class Attention(nn.Module):
    """Multi-head self-attention through scaled_dot_product_attention.

    k_bias False: q and v biases but no k bias (MSM-MAE/BEiT style, parameters `q_bias`, `v_bias`);
    True: all three (fairseq's q_proj/k_proj/v_proj, fused here). docs/design.md, "Transformer blocks".
    """

    def __init__(self, dim: int, heads: int, k_bias: bool):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.k_bias = nn.Parameter(torch.zeros(dim)) if k_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, D] -> [B, L, D]
        b, n, d = x.shape
        k_bias = self.k_bias if self.k_bias is not None else torch.zeros_like(self.q_bias)
        qkv = F.linear(x, self.qkv.weight, torch.cat([self.q_bias, k_bias, self.v_bias]))
        q, k, v = qkv.reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 x [B, H, L, d]
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """pre-norm: x + attn(norm1(x)), then x + mlp(norm2(x)).  post-norm (wav2vec2): norm1(x + attn(x)), ..."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, norm_position: str, k_bias: bool, eps: float):
        super().__init__()
        self.prenorm = norm_position == "pre"
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, k_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.prenorm:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


class Transformer(nn.Module):
    """A stack of blocks with one LayerNorm: after the stack (pre-norm) or on its input (post-norm, wav2vec2)."""

    def __init__(self, dim, depth, heads, mlp_ratio, norm_position, k_bias, eps):
        super().__init__()
        self.prenorm = norm_position == "pre"
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, norm_position, k_bias, eps) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """[B, L, D] -> [B, L, D], the output of block `layer` (1-based; -1 = last, with the final norm);
        layer ALL_LAYERS: [B, L, depth * D], the outputs of blocks 1..depth side by side (each as `layer=l`)."""
        depth = len(self.blocks)
        stop = depth if layer in (-1, depth, ALL_LAYERS) else layer
        if not self.prenorm:
            x = self.norm(x)
        states = []  # kept only for ALL_LAYERS: otherwise each block's output is freed as the next one runs
        for blk in self.blocks[:stop]:
            x = blk(x)
            states += [x] if layer == ALL_LAYERS else []
        if self.prenorm and stop == depth:
            x = self.norm(x)
            states[-1:] = [x] if states else []
        return torch.cat(states, dim=-1) if layer == ALL_LAYERS else x


# ---- the model ---------------------------------------------------------------------------------
def _norm_stats_of_version_0_1_0(module, state_dict, prefix, *args) -> None:
    """State dicts written by version 0.1.0 hold the statistics as a tensor `frontend.norm_stats`."""
    old = state_dict.pop(prefix + "frontend.norm_stats", None)
    if old is not None and prefix + "_extra_state" not in state_dict:
        state_dict[prefix + "_extra_state"] = {"norm_stats": old.tolist()}


class MaskedAutoencoder(nn.Module):
    """Front end, tokeniser, encoder on visible tokens, decoder on all tokens. See `hear_maeast.config`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        from hear_maeast.frontend import FrontEnd

        cfg.validate()
        self.cfg = cfg
        self.frontend = FrontEnd(cfg)
        self.patch_embed = nn.Linear(cfg.patch_dim, cfg.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim)) if cfg.cls_token else None
        self.register_buffer("pos_embed", position_table(cfg, cfg.dim))  # [1, (1) + N, D]
        block_args = (cfg.mlp_ratio, cfg.norm_position, cfg.k_bias, cfg.norm_eps)
        self.encoder = Transformer(cfg.dim, cfg.depth, cfg.heads, *block_args)
        # decoder
        self.decoder_embed = nn.Linear(cfg.dim, cfg.decoder_dim) if cfg.decoder_dim != cfg.dim else nn.Identity()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_dim))
        self.register_buffer("decoder_pos_embed", position_table(cfg.replace(positions="sincos1d"), cfg.decoder_dim))
        self.decoder = Transformer(cfg.decoder_dim, cfg.decoder_depth, cfg.decoder_heads, *block_args)
        self.decoder_pred = nn.Linear(cfg.decoder_dim, cfg.patch_dim)  # reconstruction head
        # MAE-AST's discriminative (InfoNCE) head
        self.decoder_cls = nn.Linear(cfg.decoder_dim, cfg.patch_dim) if cfg.objective in ("joint", "discriminative") else None
        self.reset_parameters()
        # runtime state, not weights: `hear_maeast.api.configure` sets the first two, the loaders the last two; the
        # defaults let a model built here or by `load_checkpoint` embed through the HEAR API as it is
        self.layer = -1  # encoder block whose output is embedded (1-based; -1 = the last, with its final norm)
        self.max_batch = MAX_BATCH  # encoder sequences per forward pass
        self.provenance: dict = {}  # how the weights were made (checkpoint metadata), free-form
        self.source = ""  # the file the weights came from ("" = built in memory), named in error messages
        self.register_load_state_dict_pre_hook(_norm_stats_of_version_0_1_0)

    # HEAR attributes
    sample_rate = SAMPLE_RATE

    @property
    def scene_embedding_size(self) -> int:
        return self.cfg.scene_embedding_size

    @property
    def timestamp_embedding_size(self) -> int:
        return self.cfg.timestamp_embedding_size

    def reset_parameters(self) -> None:
        """MAE's initialisation: xavier-uniform Linear weights, zero biases, N(0, .02) CLS and mask tokens."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    # ---- normalisation statistics: in `cfg`, the one record (docs/design.md, "Normalisation") ---------
    def set_norm_stats(self, mean: float, std: float) -> None:
        """Replace the front end's statistics (finite, std > 0, else BadInput); they are saved with the config."""
        try:
            mean, std = float(mean), float(std)
        except (TypeError, ValueError):
            mean = std = math.nan
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):  # 0 gives NaN embeddings, < 0 flips them
            raise BadInput(f"norm_stats=[{mean}, {std}]: expected [mean, std], finite, with std > 0")
        if norm_stats_problem(mean, std):
            raise BadInput(f"norm_stats=[{mean}, {std}]: {norm_stats_problem(mean, std)}; recompute the statistics")
        self.cfg = cfg = self.cfg.replace(norm_mean=mean, norm_std=std)
        self.frontend.use_config(cfg)

    def get_extra_state(self) -> dict:  # state dicts (training state) carry the statistics too
        return {"norm_stats": [self.cfg.norm_mean, self.cfg.norm_std]}

    def set_extra_state(self, state: dict) -> None:
        self.set_norm_stats(*state["norm_stats"])

    @property
    def device(self) -> torch.device:
        return self.patch_embed.weight.device

    # ---- encoder -------------------------------------------------------------------------------
    def embed_tokens(self, spec: torch.Tensor) -> torch.Tensor:
        """[B, F, T] -> [B, N, D] patch embeddings with positions (no CLS)."""
        x = self.patch_embed(patchify(spec, self.cfg))
        offset = 1 if self.cls_token is not None else 0
        return x + self.pos_embed[:, offset : offset + x.shape[1]]

    def forward_encoder(self, spec: torch.Tensor, keep: torch.Tensor | None = None, layer: int = -1) -> torch.Tensor:
        """Encode visible tokens only.

        spec [B, F, T]; keep [B, Nv] indices of visible tokens (None = all) -> [B, (1) + Nv, D] (CLS first).
        """
        x = self.embed_tokens(spec)  # [B, N, D]
        if keep is not None:
            x = torch.gather(x, 1, keep[..., None].expand(-1, -1, x.shape[-1]))  # [B, Nv, D]
        if self.cls_token is not None:
            cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
            x = torch.cat([cls, x], dim=1)
        return self.encoder(x, layer)

    def encode(self, spec: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """All tokens of a chunk, CLS dropped: [B, F, T] -> [B, N, D]."""
        x = self.forward_encoder(spec, layer=layer)
        return x[:, 1:] if self.cls_token is not None else x

    # ---- decoder -------------------------------------------------------------------------------
    def forward_decoder(self, latent: torch.Tensor, keep: torch.Tensor, num_tokens: int) -> torch.Tensor:
        """latent [B, (1) + Nv, D], keep [B, Nv] -> decoder features of every token [B, N, Dd]."""
        x = self.decoder_embed(latent)  # [B, (1) + Nv, Dd]
        offset = 1 if self.cls_token is not None else 0
        b, dd = x.shape[0], x.shape[-1]
        full = self.mask_token.to(x.dtype).expand(b, num_tokens, dd).clone()  # [B, N, Dd]; x is bf16/fp16 under autocast
        full.scatter_(1, keep[..., None].expand(-1, -1, dd), x[:, offset:])
        full = full + self.decoder_pos_embed[:, offset : offset + num_tokens]
        if offset:
            full = torch.cat([x[:, :1] + self.decoder_pos_embed[:, :1], full], dim=1)
        return self.decoder(full)[:, offset:]

    def forward(self, spec: torch.Tensor, keep: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pretraining forward: spec [B, F, T], keep [B, Nv] -> predictions and targets, each [B, N, P]."""
        target = patchify(spec, self.cfg)  # [B, N, P]
        latent = self.forward_encoder(spec, keep)
        h = self.forward_decoder(latent, keep, target.shape[1])  # [B, N, Dd]
        out = {"target": target, "recon": self.decoder_pred(h)}
        if self.decoder_cls is not None:
            out["logits_proj"] = self.decoder_cls(h)
        return out

    def extra_repr(self) -> str:
        return f"preset={self.cfg.name}"
