"""Token layout: patchify / unpatchify / tokens_to_columns against the official codes' own tokenisers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hear_maeast.config import get_preset
from hear_maeast.model import patchify, tokens_to_columns, unpatchify

PRESETS = ("msm-mae-micro", "mae-ast-patch-micro", "mae-ast-frame-micro")


def official_tokens(spec: torch.Tensor, name: str) -> torch.Tensor:
    """spec [B, F, T] -> [B, N, ph * pw] as the official code cuts it.

    MSM-MAE (MAE's patchify): reshape to (h, p, w, q), einsum 'nchpwq->nhwpqc': frequency-major tokens, values
    [mel, frame]. MAE-AST: nn.Unfold on the (B, 1, T, F) fbank: time-major tokens, values [frame, mel].
    """
    ph, pw = get_preset(name).patch_size
    b, f, t = spec.shape
    if name.startswith("msm-mae"):
        x = spec.reshape(b, 1, f // ph, ph, t // pw, pw)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(b, (f // ph) * (t // pw), ph * pw)
    return F.unfold(spec.transpose(1, 2)[:, None], kernel_size=(pw, ph), stride=(pw, ph)).transpose(1, 2)


@pytest.mark.parametrize("name", PRESETS)
def test_patchify_cuts_tokens_as_the_official_code_and_unpatchify_inverts_it(name):
    cfg = get_preset(name)
    frames = 4 * cfg.patch_size[1]
    spec = torch.randn(2, cfg.n_mels, frames)  # [B, F, T]
    tokens = patchify(spec, cfg)
    assert torch.equal(tokens, official_tokens(spec, name))
    assert torch.equal(unpatchify(tokens, cfg, frames), spec)
    assert torch.equal(unpatchify(official_tokens(spec, name), cfg, frames), spec)


@pytest.mark.parametrize("name", PRESETS)
def test_tokens_to_columns_concatenates_the_frequency_tokens_of_each_time_column(name):
    cfg = get_preset(name)
    f_grid, t_grid = cfg.n_mels // cfg.patch_size[0], 5
    # token (f, t) holds [f, t, noise]; its index is f * T_grid + t (frequency-major, MSM-MAE) or t * F_grid + f
    # (time-major, MAE-AST)
    f, t = torch.meshgrid(torch.arange(f_grid), torch.arange(t_grid), indexing="ij")  # [Fg, Tg] each
    values = torch.stack([f.float(), t.float(), torch.rand(f_grid, t_grid)], dim=-1)  # [Fg, Tg, D = 3]
    d = values.shape[-1]
    order = values if cfg.token_order == "freq_major" else values.transpose(0, 1)
    tokens = order.reshape(1, f_grid * t_grid, d)  # [1, N, D] in the preset's token order
    cols = tokens_to_columns(tokens, cfg)  # [1, Tg, Fg * D]
    assert cols.shape == (1, t_grid, f_grid * d)
    for j in range(t_grid):
        expected = torch.cat([values[i, j] for i in range(f_grid)])  # lowest band first
        assert torch.equal(cols[0, j], expected), j
