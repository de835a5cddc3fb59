"""The SSAST pretraining step as published (Gong et al., AAAI 2022), built from hear_maeast's own modules.

A benchmark baseline, not a user option. SSAST runs the encoder over every token: the patch embeddings of masked
tokens are replaced by one learned mask embedding (before positions are added), the whole sequence goes through
the encoder, and 2-layer MLP heads (Linear D->D, ReLU, Linear D->P) read the encoder outputs at the masked
positions; there is no decoder. The published step makes two passes with independent masks, one for the
discriminative objective (InfoNCE) and one for the generative objective (MSE), loss = InfoNCE + 10 x MSE.

Everything else is the model under test: `MaskedAutoencoder.embed_tokens` (patchify, patch embedding, positions),
its CLS token when the preset has one, its `encoder` stack, the preset's masks, and the loss functions of
`pretrain.losses`. Only the decoder is removed.
"""

from __future__ import annotations

import torch
from torch import nn

from hear_maeast.config import ModelConfig
from hear_maeast.masking import num_masked
from hear_maeast.model import MaskedAutoencoder, patchify
from pretrain.losses import masked_tokens, pretrain_loss
from pretrain.step import autocast_for


def mlp_head(dim: int, out: int) -> nn.Sequential:
    """SSAST's cpredlayer / gpredlayer."""
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, out))


class SSASTStyle(nn.Module):
    """hear_maeast's encoder run SSAST's way. forward(spec [B, F, T], mask [B, N]) -> per-masked-token outputs."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.n_masked = num_masked(cfg)  # M: known, so gathering the masked tokens never waits for the device
        self.mae = MaskedAutoencoder(cfg)
        for name in ("decoder_embed", "decoder", "decoder_pred", "decoder_cls"):  # SSAST has no decoder
            setattr(self.mae, name, None)
        self.mae.mask_token = None
        self.mask_embed = nn.Parameter(torch.empty(1, 1, cfg.dim))
        nn.init.xavier_normal_(self.mask_embed)  # as SSAST
        self.disc_head = mlp_head(cfg.dim, cfg.patch_dim)
        self.gen_head = mlp_head(cfg.dim, cfg.patch_dim)

    def encode_all(self, spec: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """spec [B, F, T], mask [B, N] (1 = masked) -> encoder outputs of all tokens [B, N, D] (CLS dropped)."""
        mae = self.mae
        x = mae.embed_tokens(spec)  # [B, N, D], positions added
        offset = 1 if mae.cls_token is not None else 0
        pos = mae.pos_embed[:, offset : offset + x.shape[1]]  # [1, N, D]
        x = torch.where(mask.bool()[..., None], self.mask_embed + pos, x)  # masked: mask embedding + position
        if offset:
            cls = (mae.cls_token + mae.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
            x = torch.cat([cls, x], dim=1)
        return mae.encoder(x)[:, offset:]

    def forward(self, spec: torch.Tensor, mask: torch.Tensor, heads: tuple[str, ...] = ("disc", "gen")) -> dict:
        """-> {"target", "recon" (gen head), "logits_proj" (disc head)}, each [B, M, P] over the masked tokens only,
        the layout `pretrain.losses.pretrain_loss` reads (with an all-ones mask [B, M])."""
        h = masked_tokens(self.encode_all(spec, mask), mask, self.n_masked)  # [B, M, D]
        out = {"target": masked_tokens(patchify(spec, self.cfg), mask, self.n_masked)}  # [B, M, P]
        if "gen" in heads:
            out["recon"] = self.gen_head(h)
        if "disc" in heads:
            out["logits_proj"] = self.disc_head(h)
        return out


def ssast_loss(model: SSASTStyle, spec: torch.Tensor, mask_disc: torch.Tensor, mask_gen: torch.Tensor,
               precision: str = "fp32") -> torch.Tensor:
    """The published step's loss: two passes with independent masks, InfoNCE + 10 x MSE (forwards under the
    precision's autocast, losses outside it, as in `pretrain.step.mae_loss`)."""
    with autocast_for(spec.device, precision):
        disc = model(spec, mask_disc, heads=("disc",))
        gen = model(spec, mask_gen, heads=("gen",))
    ones = torch.ones(disc["target"].shape[:2], device=spec.device)  # [B, M]: every gathered token is masked
    m = ones.shape[1]
    return (pretrain_loss(disc, ones, "discriminative", n_masked=m)["loss"]
            + pretrain_loss(gen, ones, "generative", n_masked=m)["loss"])


def full_pass_loss(model: SSASTStyle, spec: torch.Tensor, mask: torch.Tensor, objective: str,
                   precision: str = "fp32") -> torch.Tensor:
    """One all-token pass with the preset's own objective (the heads it needs): the encoder's cost without
    dropping masked tokens, everything else as in our step."""
    heads = {"mse": ("gen",), "generative": ("gen",), "discriminative": ("disc",)}.get(objective, ("disc", "gen"))
    with autocast_for(spec.device, precision):
        out = model(spec, mask, heads=heads)
    ones = torch.ones(out["target"].shape[:2], device=spec.device)
    return pretrain_loss(out, ones, objective, n_masked=ones.shape[1])["loss"]
