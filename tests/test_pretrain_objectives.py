"""Masks and losses of pretraining: chunked masks (SSAST/MAE-AST), masked MSE, MAE-AST's InfoNCE."""

from __future__ import annotations

import math

import pytest
import torch

from hear_maeast.masking import chunk_mask, num_visible, random_mask
from pretrain.losses import info_nce, masked_mse, masked_tokens, pretrain_loss
from hear_maeast.optim import lr_at


def _neighbour_share(mask: torch.Tensor, grid: tuple[int, int]) -> float:
    """Share of masked tokens with a masked 4-neighbour. mask [B, F*T] in freq-major order."""
    m = mask.view(-1, *grid).bool()
    padded = torch.nn.functional.pad(m.float(), (1, 1, 1, 1)).bool()
    nb = padded[:, :-2, 1:-1] | padded[:, 2:, 1:-1] | padded[:, 1:-1, :-2] | padded[:, 1:-1, 2:]
    return ((m & nb).sum() / m.sum()).item()


@pytest.mark.parametrize("grid,ratio", [((5, 13), 0.75), ((8, 64), 0.75), ((16, 16), 0.3), ((1, 128), 0.75), ((8, 16), 0.5)])
def test_chunk_mask_has_the_requested_ratio_in_every_clip(grid, ratio):
    n = grid[0] * grid[1]
    keep, mask = chunk_mask(64, grid, ratio, torch.Generator().manual_seed(0))
    assert keep.shape == (64, num_visible(n, ratio)) and mask.shape == (64, n)
    assert (mask.sum(1) == n - num_visible(n, ratio)).all()  # the exact count, like random masking
    assert (keep.diff(dim=1) > 0).all()  # visible tokens sorted, no repeats
    assert (mask.gather(1, keep) == 0).all()  # keep and mask agree


def test_chunk_mask_is_made_of_blocks_and_random_mask_is_not():
    g = torch.Generator().manual_seed(0)
    grid = (16, 16)
    _, chunks = chunk_mask(32, grid, 0.3, g)
    _, scattered = random_mask(32, 256, 0.3, g)
    assert _neighbour_share(chunks, grid) > 0.97  # c x c blocks (c in 3..5): a masked token is rarely alone
    assert _neighbour_share(scattered, grid) < 0.85  # random: 1 - 0.7^4 ~ 0.76


def test_chunk_mask_with_one_chunk_size_masks_whole_squares():
    # 9 masked tokens of c = 3 on a grid where one block fits anywhere inside: one 3 x 3 square (or clipped pieces)
    _, mask = chunk_mask(200, (12, 12), 1 - 135 / 144, torch.Generator().manual_seed(1), sizes=(3,))
    m = mask.view(-1, 12, 12)
    assert (m.sum((1, 2)) == 9).all()
    rows, cols = m.any(2).sum(1), m.any(1).sum(1)  # rows / columns touched per clip
    squares = (rows == 3) & (cols == 3)
    assert squares.float().mean() > 0.5  # most clips: exactly one 3 x 3 block; the rest start at an edge


def test_frame_spans_are_contiguous_runs_in_time():
    _, mask = chunk_mask(16, (1, 200), 0.4, torch.Generator().manual_seed(0))
    m = mask.bool()
    starts = (m[:, 1:] & ~m[:, :-1]).sum() + m[:, 0].sum()  # number of masked runs
    assert m.sum() / starts >= 3  # runs of 3-5 tokens (merged where they touch), not single tokens


def test_chunk_mask_follows_the_token_order():
    """time_major (MAE-AST: t * F_grid + f) is the freq_major mask of the same draw, transposed."""
    a = chunk_mask(4, (8, 16), 0.75, torch.Generator().manual_seed(3), order="freq_major")[1].view(4, 8, 16)
    b = chunk_mask(4, (8, 16), 0.75, torch.Generator().manual_seed(3), order="time_major")[1].view(4, 16, 8)
    assert torch.equal(a, b.transpose(1, 2))


def test_info_nce_matches_a_hand_computed_value():
    # one clip, 3 tokens, tokens 0 and 2 masked. predictions p0 = [1, 0], p2 = [0, 1]; targets t0 = [1, 0], t2 = [1, 1]
    pred = torch.tensor([[[1.0, 0.0], [9.0, 9.0], [0.0, 1.0]]])
    target = torch.tensor([[[1.0, 0.0], [5.0, 5.0], [1.0, 1.0]]])
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    # logits = [[p0.t0, p0.t2], [p2.t0, p2.t2]] = [[1, 1], [0, 1]]; loss = -mean(log softmax diagonal)
    row0 = 1 - math.log(math.e + math.e)
    row1 = 1 - math.log(1 + math.e)
    assert info_nce(pred, target, mask).item() == pytest.approx(-(row0 + row1) / 2, rel=1e-6)


def test_info_nce_is_per_clip_and_vectorised():
    """Negatives come from the same clip only: the batched loss is the mean of the per-clip losses."""
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 10, 4, generator=g), torch.randn(3, 10, 4, generator=g)
    _, mask = random_mask(3, 10, 0.6, g)
    per_clip = [info_nce(pred[i : i + 1], target[i : i + 1], mask[i : i + 1]) for i in range(3)]
    assert info_nce(pred, target, mask).item() == pytest.approx(torch.stack(per_clip).mean().item(), rel=1e-6)


def test_masked_mse_counts_masked_patches_only():
    recon, target = torch.zeros(1, 2, 4), torch.ones(1, 2, 4)
    recon[0, 1] = 1.0  # the visible patch is perfect, the masked one is off by 1 everywhere
    assert masked_mse(recon, target, torch.tensor([[1.0, 0.0]])).item() == 1.0
    target = torch.tensor([[[1.0, 3.0, 1.0, 3.0]]])  # norm_pix_loss: targets become (x - 2) / std
    normed = (target - 2) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    assert masked_mse(normed, target, torch.ones(1, 1), norm_pix_loss=True).item() == pytest.approx(0.0, abs=1e-6)


def test_objectives_combine_as_in_mae_ast():
    g = torch.Generator().manual_seed(0)
    out = {k: torch.randn(2, 8, 4, generator=g) for k in ("target", "recon", "logits_proj")}
    _, mask = random_mask(2, 8, 0.5, g)
    joint, gen, disc = (pretrain_loss(out, mask, o) for o in ("joint", "generative", "discriminative"))
    assert joint["loss"].item() == pytest.approx(10 * joint["mse"].item() + joint["nce"].item())
    assert gen["loss"].item() == pytest.approx(10 * joint["mse"].item()) and "nce" not in gen
    assert disc["loss"].item() == pytest.approx(joint["nce"].item()) and "mse" not in disc
    assert pretrain_loss(out, mask, "mse")["loss"].item() == pytest.approx(joint["mse"].item())


def test_learning_rate_schedules():
    assert lr_at(0, 100, 10, 1.0, "cosine") == pytest.approx(0.1)  # linear warm-up
    assert lr_at(9, 100, 10, 1.0, "cosine") == pytest.approx(1.0)
    assert lr_at(55, 100, 10, 1.0, "cosine") == pytest.approx(0.5)  # half-way through the cosine
    assert lr_at(55, 100, 10, 1.0, "poly") == pytest.approx(0.5)  # linear decay (fairseq polynomial, power 1)
    assert lr_at(99, 100, 10, 1.0, "constant") == 1.0
    assert lr_at(100, 200, 10, 1.0, "poly") > lr_at(100, 100, 10, 1.0, "poly")  # a raised total re-plans the decay


def test_masked_tokens_without_a_host_sync_pick_the_same_tokens():
    """The training loop passes the masked count, so InfoNCE never waits for the device (no `nonzero`)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 64, 3, generator=g)
    keep, mask = random_mask(5, 64, 0.75, g)
    assert torch.equal(masked_tokens(x, mask, n_masked=64 - keep.shape[1]), masked_tokens(x, mask))
    out = {k: torch.randn(5, 64, 3, generator=g) for k in ("target", "recon", "logits_proj")}
    a, b = pretrain_loss(out, mask, "joint"), pretrain_loss(out, mask, "joint", n_masked=48)
    assert a["loss"].item() == b["loss"].item()
