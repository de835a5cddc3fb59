"""Masks for pretraining, per sample and vectorised: each returns `keep` [B, Nv] and `mask` [B, N] (1 = masked).

Index convention: `keep` lists the visible tokens in increasing index order, so the encoder sees them in
their original order (positions are added before masking anyway).
"""

from __future__ import annotations

import math

import torch


def num_visible(num_tokens: int, mask_ratio: float) -> int:
    return max(1, int(round(num_tokens * (1 - mask_ratio))))


def _from_scores(scores: torch.Tensor, n_keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the n_keep lowest scores of each row. scores [B, N] -> keep [B, Nv], mask [B, N]."""
    keep = scores.argsort(dim=1)[:, :n_keep].sort(dim=1).values
    mask = torch.ones_like(scores)
    mask.scatter_(1, keep, 0.0)
    return keep, mask


def random_mask(batch: int, num_tokens: int, mask_ratio: float, generator=None, device=None):
    """MAE's per-sample random masking."""
    scores = torch.rand(batch, num_tokens, generator=generator, device=device)
    return _from_scores(scores, num_visible(num_tokens, mask_ratio))


def chunk_mask(batch: int, grid: tuple[int, int], mask_ratio: float, generator=None, device=None,
               order: str = "freq_major", sizes: tuple[int, ...] = (3, 4, 5)):
    """SSAST/MAE-AST chunked masking, per sample and vectorised: each clip draws a chunk size c in `sizes`, then
    chunks in a random order, masking whole chunks until the exact count is reached (the last one trimmed).

    grid (F_grid, T_grid): c x c blocks of tokens for patch grids; 1-D spans of c tokens when F_grid == 1
    (frame models). Blocks are clipped at the grid's edges (starts range over [-(c-1), size-1], so every
    token is equally likely to be masked). order: the model's token order, "freq_major" (f * T_grid + t) or
    "time_major" (t * F_grid + f). Returns keep [B, Nv] and mask [B, N], as `random_mask`.
    """
    fg, tg = grid
    n = fg * tg
    n_mask = n - num_visible(n, mask_ratio)
    sizes_t = torch.tensor(sizes, device=device)
    c = sizes_t[torch.randint(len(sizes), (batch,), generator=generator, device=device)]  # [B]
    cmax, cmin = max(sizes), min(sizes)
    # enough chunks to cover the masked share with high probability; the rare shortfall is filled at random
    area = cmin if fg == 1 else cmin * cmin
    k = math.ceil((-math.log(1 - min(mask_ratio, 0.99)) + 2.0) * n / area) + 1
    df, dt = torch.meshgrid(torch.arange(cmax if fg > 1 else 1, device=device), torch.arange(cmax, device=device), indexing="ij")
    df, dt = df.flatten(), dt.flatten()  # [O] offsets inside a chunk, raster order
    cf = c[:, None, None]  # [B, 1, 1]
    u = torch.rand(2, batch, k, 1, generator=generator, device=device)
    f0 = (u[0] * (fg + cf - 1)).long() - (cf - 1) if fg > 1 else torch.zeros_like(u[0], dtype=torch.long)
    t0 = (u[1] * (tg + cf - 1)).long() - (cf - 1)  # [B, K, 1]
    f, t = f0 + df, t0 + dt  # [B, K, O]
    valid = (df < cf) & (dt < cf) & (f >= 0) & (f < fg) & (t >= 0) & (t < tg)
    token = f * tg + t if order == "freq_major" else t * fg + f
    token = torch.where(valid, token, n).flatten(1)  # invalid cells go to a dummy slot n
    rank = torch.arange(k * len(df), device=device, dtype=torch.float32).expand(batch, -1)  # chunk, then raster order
    first = torch.full((batch, n + 1), float(k * len(df)), device=device).scatter_reduce(1, token, rank, "amin")[:, :n]
    first = first + torch.rand(batch, n, generator=generator, device=device) * (first >= k * len(df))  # uncovered: random
    return _from_scores(-first, n - n_mask)  # keep the tokens covered last (or never)


def make_mask(cfg, batch: int, generator=None, device=None):
    """The mask a model configuration asks for: keep [B, Nv], mask [B, N] for cfg.mask_kind and cfg.mask_ratio
    (chunked masks follow cfg.token_order)."""
    if cfg.mask_kind == "chunk":
        return chunk_mask(batch, cfg.grid, cfg.mask_ratio, generator, device, order=cfg.token_order)
    return random_mask(batch, cfg.num_patches, cfg.mask_ratio, generator, device)


def num_masked(cfg) -> int:
    """Tokens a pretraining mask hides per clip (0 means there is nothing to reconstruct)."""
    return cfg.num_patches - num_visible(cfg.num_patches, cfg.mask_ratio)
