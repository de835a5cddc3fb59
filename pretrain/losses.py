"""Pretraining objectives (docs/design.md, "Pretraining"): MSE on masked patches (MSM-MAE) and MAE-AST's InfoNCE + 10 x MSE.

Shapes: B batch, N tokens, M masked tokens per clip (the same for every clip), P values per patch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MSE_WEIGHT = 10.0  # MAE-AST: total = 10 x MSE + 1 x InfoNCE


def masked_mse(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix_loss: bool = False) -> torch.Tensor:
    """recon, target [B, N, P], mask [B, N] (1 = masked) -> squared error averaged per patch, then over masked patches."""
    if norm_pix_loss:  # MAE: each target patch normalised by its own mean and variance
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = ((recon - target) ** 2).mean(dim=-1)  # [B, N]
    return (per_patch * mask).sum() / mask.sum()


def masked_tokens(x: torch.Tensor, mask: torch.Tensor, n_masked: int | None = None) -> torch.Tensor:
    """x [B, N, P], mask [B, N] with M ones per row -> [B, M, P] (masked tokens in index order).
    With n_masked (= M) given, no host sync: a stable sort puts the masked indices first, in order."""
    b = x.shape[0]
    if n_masked is None:
        idx = mask.bool().nonzero()[:, 1].view(b, -1)  # [B, M]; nonzero lists rows in order (waits for the device)
    else:
        idx = mask.bool().to(torch.uint8).argsort(dim=1, descending=True, stable=True)[:, :n_masked]  # [B, M]
    return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))


def info_nce(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, n_masked: int | None = None) -> torch.Tensor:
    """MAE-AST's InfoNCE: per clip, logits = pred (M x P) @ target^T (P x M), log-softmax over targets,
    loss = -mean of the diagonal; negatives are the clip's other masked patches (no temperature, no L2 norm).
    pred, target [B, N, P], mask [B, N] -> scalar (mean over clips and masked tokens)."""
    p, t = masked_tokens(pred.float(), mask, n_masked), masked_tokens(target.float(), mask, n_masked)  # [B, M, P]; fp32 under autocast too
    logits = p @ t.transpose(1, 2)  # [B, M, M]
    return -F.log_softmax(logits, dim=-1).diagonal(dim1=-2, dim2=-1).mean()


def pretrain_loss(out: dict, mask: torch.Tensor, objective: str, norm_pix_loss: bool = False,
                  n_masked: int | None = None) -> dict[str, torch.Tensor]:
    """The model's forward output + mask -> {"loss", and its parts "mse" / "nce"} for one objective:
    "mse" (MSM-MAE), "joint" (10 x MSE + InfoNCE), "generative" (10 x MSE), "discriminative" (InfoNCE).
    n_masked: masked tokens per clip, when known (the training loop): the loss then never waits for the device."""
    parts = {}
    if objective in ("mse", "joint", "generative"):
        parts["mse"] = masked_mse(out["recon"].float(), out["target"].float(), mask, norm_pix_loss)
    if objective in ("joint", "discriminative"):
        parts["nce"] = info_nce(out["logits_proj"], out["target"], mask, n_masked)
    weight = 1.0 if objective == "mse" else MSE_WEIGHT
    parts["loss"] = weight * parts.get("mse", 0.0) + parts.get("nce", 0.0)
    return parts
