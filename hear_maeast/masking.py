"""Masks for pretraining, per sample and vectorised: each returns `keep` [B, Nv] and `mask` [B, N] (1 = masked).

Index convention: `keep` lists the visible tokens in increasing index order, so the encoder sees them in
their original order (positions are added before masking anyway).
"""

from __future__ import annotations

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
