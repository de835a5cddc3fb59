"""The optimiser rules pretraining (`pretrain/train.py`) and fine-tuning (`eval/finetune.py`) share: the learning-rate
schedule and the AdamW parameter groups.

- `lr_at`: linear warm-up, then half-cycle cosine, linear ("poly", power 1) decay or a constant; a pure function of
  (step, total), so a run that raises its total on resume re-plans the decay.
- `no_weight_decay`: MAE's rule (util/misc.py add_weight_decay): biases, norms and tokens (every tensor of < 2 dims,
  and the `*_token` parameters) are not decayed.
- `decay_groups`: pretraining's two groups (decayed, not decayed), or one group when a recipe decays everything.
- `layer_decay_groups`: fine-tuning's groups, MAE's layer-wise lr decay (util/lr_decay.py) with an `lr_scale` per
  group, for a model holding the encoder as `backbone` and a linear `head`.
"""

from __future__ import annotations

import math

import torch


def lr_at(step: int, total: int, warmup: int, peak: float, schedule: str) -> float:
    """Linear warm-up over `warmup` updates, then half-cycle cosine / linear ("poly", power 1) decay to 0 / constant."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return peak * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "poly":
        return peak * max(0.0, 1.0 - progress)
    return peak


def no_weight_decay(name: str, p: torch.Tensor) -> bool:
    """True for a bias, a norm's weight or a token (MAE: every tensor of < 2 dims, and the `*_token` parameters)."""
    return p.ndim < 2 or name.endswith("_token")


def decay_groups(model: torch.nn.Module, weight_decay: float, exempt: bool = True) -> list[dict]:
    """AdamW groups of the trainable parameters: [decayed, not decayed (`no_weight_decay`)]; one group, all decayed,
    when `exempt` is False (MAE-AST's fairseq recipe)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not exempt:
        return [{"params": [p for _, p in params], "weight_decay": weight_decay}]
    return [{"params": [p for n, p in params if not no_weight_decay(n, p)], "weight_decay": weight_decay},
            {"params": [p for n, p in params if no_weight_decay(n, p)], "weight_decay": 0.0}]


def layer_id(name: str, depth: int, used: int, prenorm: bool) -> int | None:
    """MAE's layer ids for layer-wise lr decay (util/lr_decay.py): 0 the embedding, i for block i, used + 1 the top.

    None for what the classifier does not use (the decoder, the mask token, blocks above `layer`)."""
    if name.startswith("head."):
        return used + 1
    if name.startswith(("backbone.patch_embed.", "backbone.cls_token")):
        return 0
    if name.startswith("backbone.encoder.blocks."):
        block = int(name.split(".")[3])
        return block + 1 if block < used else None
    if name.startswith("backbone.encoder.norm."):
        if not prenorm:
            return 0  # a post-norm (wav2vec2) encoder normalises its input
        return used + 1 if used == depth else None
    return None


def layer_decay_groups(model: torch.nn.Module, weight_decay: float, layer_decay: float, head_lr_scale: float = 1.0
                       ) -> list[dict]:
    """AdamW groups with `lr_scale` = layer_decay^(top - id) (the head: head_lr_scale); no weight decay where
    `no_weight_decay` says. `model` holds the encoder as `backbone` (a MaskedAutoencoder) and a `head`.

    Parameters the classifier does not use are frozen (requires_grad False) and left out."""
    backbone = model.backbone
    depth = backbone.cfg.depth
    used = depth if backbone.layer == -1 else backbone.layer
    groups: dict[tuple[int, bool, bool], dict] = {}
    for name, p in model.named_parameters():
        lid = layer_id(name, depth, used, backbone.cfg.norm_position == "pre")
        p.requires_grad_(lid is not None)
        if lid is None:
            continue
        no_decay = no_weight_decay(name, p)
        head = name.startswith("head.")
        group = groups.setdefault((lid, no_decay, head), {
            "params": [], "names": [], "weight_decay": 0.0 if no_decay else weight_decay,
            "lr_scale": head_lr_scale if head else layer_decay ** (used + 1 - lid)})
        group["params"].append(p)
        group["names"].append(name)
    return list(groups.values())
