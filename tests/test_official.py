"""The authors' released checkpoints load and give the official implementations' embeddings.

The official files cannot be downloaded here, so each test builds one with the exact official key names,
shapes and containers (random values) and checks it against a reference forward pass written below from the
official code's semantics (MSM-MAE: timm ViT blocks with a zero k bias, Conv2d patches, 2-D sin-cos positions,
CLS; MAE-AST: BatchNorm x 0.5, nn.Unfold patches, fairseq post-norm layers with separate q/k/v projections).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchaudio

import hear_maeast
from hear_maeast.checkpoint import CheckpointError, model_state
from hear_maeast.model import sincos_1d, sincos_2d, tokens_to_columns
from hear_maeast.loading import detect_format
from hear_maeast.official import mae_ast_model, msm_mae_model

from conftest import BIN, run_env

omegaconf = pytest.importorskip("omegaconf", reason="the MAE-AST (fairseq) path needs omegaconf")


# ---- official position tables, written from the official formulas ------------------------------
def official_1d_sincos(dim: int, pos: np.ndarray) -> np.ndarray:
    """MAE's get_1d_sincos_pos_embed_from_grid: [sin(pos * omega), cos(pos * omega)], omega = 10000^(-2i/dim)."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def official_2d_sincos(dim: int, grid: tuple[int, int], cls: bool) -> torch.Tensor:
    """MSM-MAE's get_2d_sincos_pos_embed for a (gH=freq, gW=time) grid: meshgrid(w, h), w in the first half."""
    gh, gw = grid
    w, h = np.meshgrid(np.arange(gw, dtype=np.float32), np.arange(gh, dtype=np.float32))  # each [gH, gW]
    emb = np.concatenate([official_1d_sincos(dim // 2, w), official_1d_sincos(dim // 2, h)], axis=1)
    if cls:
        emb = np.concatenate([np.zeros([1, dim]), emb])
    return torch.from_numpy(emb).float()[None]


def official_sinusoid_table(n: int, dim: int, cls: bool) -> torch.Tensor:
    """MSM-MAE's get_sinusoid_encoding_table (decoder): angle pos / 10000^(2 (j // 2) / dim), sin even, cos odd."""
    angle = np.array([[p / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for p in range(n)])
    angle[:, 0::2], angle[:, 1::2] = np.sin(angle[:, 0::2]), np.cos(angle[:, 1::2])
    if cls:
        angle = np.concatenate([np.zeros([1, dim]), angle])
    return torch.from_numpy(angle).float()[None]


def mae_ast_pe(max_len: int, dim: int) -> torch.Tensor:
    """MAE-AST's SinusoidalPositionalEncoding.pe in float32, as the official module computes it: [1, L, dim]."""
    position = torch.arange(max_len).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, max_len, dim)
    pe[0, :, 0::2] = torch.sin(position * div)
    pe[0, :, 1::2] = torch.cos(position * div)
    return pe


# ---- official-format checkpoints ----------------------------------------------------------------
def _rand(g, *shape, scale=0.02):
    return torch.randn(*shape, generator=g) * scale


def _norm(g, prefix, d):
    return {f"{prefix}.weight": 1 + _rand(g, d, scale=0.1), f"{prefix}.bias": _rand(g, d, scale=0.1)}


def _timm_block(g, prefix, d, mlp=4):
    sd = {**_norm(g, f"{prefix}.norm1", d), f"{prefix}.attn.qkv.weight": _rand(g, 3 * d, d, scale=d ** -0.5),
          f"{prefix}.attn.q_bias": _rand(g, d, scale=0.1), f"{prefix}.attn.v_bias": _rand(g, d, scale=0.1),
          f"{prefix}.attn.proj.weight": _rand(g, d, d, scale=d ** -0.5), f"{prefix}.attn.proj.bias": _rand(g, d),
          **_norm(g, f"{prefix}.norm2", d),
          f"{prefix}.mlp.fc1.weight": _rand(g, mlp * d, d, scale=d ** -0.5), f"{prefix}.mlp.fc1.bias": _rand(g, mlp * d),
          f"{prefix}.mlp.fc2.weight": _rand(g, d, mlp * d, scale=(mlp * d) ** -0.5), f"{prefix}.mlp.fc2.bias": _rand(g, d)}
    return sd


def msm_mae_state(input_size=(80, 208), patch=(16, 16), dim=768, depth=2, dec_dim=384, dec_depth=1, cls=True,
                  seed=0) -> dict:
    """An MSM-MAE MaskedAutoencoderViT state dict: official names and shapes, random values."""
    g = torch.Generator().manual_seed(seed)
    grid = (input_size[0] // patch[0], input_size[1] // patch[1])
    sd = {}
    if cls:
        sd["cls_token"] = _rand(g, 1, 1, dim)
    sd["pos_embed"] = official_2d_sincos(dim, grid, cls)
    sd["patch_embed.proj.weight"] = _rand(g, dim, 1, *patch, scale=(patch[0] * patch[1]) ** -0.5)
    sd["patch_embed.proj.bias"] = _rand(g, dim)
    for i in range(depth):
        sd.update(_timm_block(g, f"blocks.{i}", dim))
    sd.update(_norm(g, "norm", dim))
    sd["mask_token"] = _rand(g, 1, 1, dec_dim)
    sd["decoder_embed.weight"], sd["decoder_embed.bias"] = _rand(g, dec_dim, dim, scale=dim ** -0.5), _rand(g, dec_dim)
    sd["decoder_pos_embed"] = official_sinusoid_table(grid[0] * grid[1], dec_dim, cls)
    for i in range(dec_depth):
        sd.update(_timm_block(g, f"decoder_blocks.{i}", dec_dim))
    sd.update(_norm(g, "decoder_norm", dec_dim))
    sd["decoder_pred.weight"] = _rand(g, patch[0] * patch[1], dec_dim)
    sd["decoder_pred.bias"] = _rand(g, patch[0] * patch[1])
    return sd


def save_msm_mae(folder, sd: dict):
    """torch.save the container MAE's training script writes: model, optimizer, epoch, scaler, args."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "checkpoint-100.pth"
    first = next(iter(sd.values()))
    torch.save({
        "model": sd,
        "optimizer": {"state": {0: {"step": torch.tensor(100.0), "exp_avg": torch.zeros_like(first),
                                    "exp_avg_sq": torch.zeros_like(first)}},
                      "param_groups": [{"lr": 1.5e-4, "betas": (0.9, 0.95), "weight_decay": 0.05, "params": [0]}]},
        "epoch": 99,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                   "_growth_tracker": 0},
        "args": argparse.Namespace(batch_size=512, epochs=100, model="mae_vit_base_patch16x16", input_size=[80, 208],
                                   mask_ratio=0.75, norm_pix_loss=False, blr=1.5e-4, data_path="/data/audioset_lms"),
    }, path)
    return path


def _fairseq_layer(g, prefix, d, ffn):
    sd = {}
    for p in ("q", "k", "v", "out"):
        sd[f"{prefix}.self_attn.{p}_proj.weight"] = _rand(g, d, d, scale=d ** -0.5)
        sd[f"{prefix}.self_attn.{p}_proj.bias"] = _rand(g, d, scale=0.1)
    sd.update(_norm(g, f"{prefix}.self_attn_layer_norm", d))
    sd[f"{prefix}.fc1.weight"], sd[f"{prefix}.fc1.bias"] = _rand(g, ffn, d, scale=d ** -0.5), _rand(g, ffn)
    sd[f"{prefix}.fc2.weight"], sd[f"{prefix}.fc2.bias"] = _rand(g, d, ffn, scale=ffn ** -0.5), _rand(g, d)
    sd.update(_norm(g, f"{prefix}.final_layer_norm", d))
    return sd


KERNELS = {"patch": (16, 16), "frame": (128, 2)}  # (chan, time) = (mel bins, frames)


def mae_ast_checkpoint(kind="patch", dim=768, depth=2, dec_depth=1, heads=12, max_tokens=1024, seed=0) -> dict:
    """A fairseq MAE-AST checkpoint: dict(cfg=DictConfig(model, task), model=state_dict, ...), random values."""
    g = torch.Generator().manual_seed(seed)
    chan, time = KERNELS[kind]
    ffn = 4 * dim
    sd = {"post_extract_proj.weight": _rand(g, dim, chan * time, scale=(chan * time) ** -0.5),
          "post_extract_proj.bias": _rand(g, dim),
          **_norm(g, "layer_norm", 128),
          "batch_norm.running_mean": torch.tensor([-4.3]), "batch_norm.running_var": torch.tensor([19.7]),
          "batch_norm.num_batches_tracked": torch.tensor(550000),
          "encoder_mask_emb": torch.rand(dim, generator=g),
          "enc_sine_pos_embed.pe": mae_ast_pe(max_tokens, dim)}
    for i in range(depth):
        sd.update(_fairseq_layer(g, f"encoder.layers.{i}", dim, ffn))
    sd.update(_norm(g, "encoder.layer_norm", dim))
    sd["decoder_mask_emb"] = torch.rand(dim, generator=g)
    sd["dec_sine_pos_embed.pe"] = mae_ast_pe(max_tokens, dim)
    for i in range(dec_depth):
        sd.update(_fairseq_layer(g, f"decoder.layers.{i}", dim, ffn))
    sd.update(_norm(g, "decoder.layer_norm", dim))
    for head in ("reconstruction", "classification"):
        sd[f"final_proj_{head}.weight"] = _rand(g, chan * time, dim)
        sd[f"final_proj_{head}.bias"] = _rand(g, chan * time)
    model_cfg = dict(
        _name="mae_ast", ast_kernel_size_chan=chan, ast_kernel_size_time=time, ast_kernel_stride_chan=chan,
        ast_kernel_stride_time=time, encoder_layers=depth, encoder_embed_dim=dim, encoder_ffn_embed_dim=ffn,
        encoder_attention_heads=heads, activation_fn="gelu", layer_norm_first=False, feature_grad_mult=0.1,
        use_post_enc_proj=False, decoder_embed_dim=dim, decoder_layers=dec_depth, decoder_layerdrop=0.0,
        dropout=0.1, attention_dropout=0.1, activation_dropout=0.0, encoder_layerdrop=0.05, dropout_input=0.1,
        random_mask_prob=0.75, mask_length=10, mask_selection="static", mask_other=0.0, no_mask_overlap=False,
        mask_min_space=0, conv_pos=128, conv_pos_groups=16, checkpoint_activations=False,
        max_token_length=max_tokens, enc_sine_pos=True, enc_conv_pos=False, dec_sine_pos=True, dec_conv_pos=False)
    task_cfg = dict(_name="mae_ast_pretraining", data="/data/manifests", feature_type="fbank",
                    mask_type="chunk_mask" if kind == "patch" else "random_mask", sample_rate=16000,
                    max_sample_size=250000, min_sample_size=32000, feature_rate=100, feature_dim=128,
                    pad_audio=False, random_crop=True, normalize=False, deltas=False)
    cfg = omegaconf.OmegaConf.create({"common": {"fp16": True, "seed": 1337}, "model": model_cfg, "task": task_cfg})
    return {"args": None, "cfg": cfg, "model": sd, "criterion": None, "optimizer_history": [
        {"criterion_name": "MAE_AST_Criterion", "optimizer_name": "FairseqAdam", "num_updates": 550000}],
        "task_state": {}, "extra_state": {"epoch": 40, "val_loss": 1.23}, "last_optimizer_state": None}


# ---- reference forward passes, from the official semantics ----------------------------------------
def _ln(x, sd, prefix, eps):
    return F.layer_norm(x, x.shape[-1:], sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps)


def _attend(q, k, v, heads):
    """[B, L, D] each -> [B, L, D]; explicit softmax(q k^T / sqrt(d)) v."""
    b, n, d = q.shape
    q, k, v = (t.reshape(b, n, heads, d // heads) for t in (q, k, v))
    w = torch.einsum("bqhc,bkhc->bhqk", q, k) * (d // heads) ** -0.5
    return torch.einsum("bhqk,bkhc->bqhc", w.softmax(-1), v).reshape(b, n, d)


def _timm_blocks(x, sd, prefix, heads):
    """timm pre-norm blocks with MSM-MAE's zero k bias (AttentionKBiasZero), LayerNorm eps 1e-6."""
    d = x.shape[-1]
    i = 0
    while f"{prefix}.{i}.norm1.weight" in sd:
        p = f"{prefix}.{i}"
        h = _ln(x, sd, f"{p}.norm1", 1e-6)
        qkv_bias = torch.cat([sd[f"{p}.attn.q_bias"], torch.zeros(d), sd[f"{p}.attn.v_bias"]])  # no k bias
        q, k, v = F.linear(h, sd[f"{p}.attn.qkv.weight"], qkv_bias).chunk(3, dim=-1)
        x = x + F.linear(_attend(q, k, v, heads), sd[f"{p}.attn.proj.weight"], sd[f"{p}.attn.proj.bias"])
        h = _ln(x, sd, f"{p}.norm2", 1e-6)
        x = x + F.linear(F.gelu(F.linear(h, sd[f"{p}.mlp.fc1.weight"], sd[f"{p}.mlp.fc1.bias"])),
                         sd[f"{p}.mlp.fc2.weight"], sd[f"{p}.mlp.fc2.bias"])
        i += 1
    return x


def msm_mae_encoder_reference(sd, lms, heads, patch, ids_keep=None):
    """The official forward_encoder: lms [B, 1, F, T] -> [B, (1) + Nv, D] (kept tokens in ids_keep order)."""
    x = F.conv2d(lms, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)  # [B, D, Fg, Tg]
    x = x.flatten(2).transpose(1, 2)  # [B, Fg * Tg, D], frequency-major
    cls = "cls_token" in sd
    x = x + sd["pos_embed"][:, 1:] if cls else x + sd["pos_embed"]
    if ids_keep is not None:
        x = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, x.shape[-1]))
    if cls:
        x = torch.cat([(sd["cls_token"] + sd["pos_embed"][:, :1]).expand(len(x), -1, -1), x], dim=1)
    return _ln(_timm_blocks(x, sd, "blocks", heads), sd, "norm", 1e-6)


def msm_mae_reference(sd, lms, heads, patch):
    """The official MSM-MAE encode_lms for one chunk: lms [B, 1, F, T] -> [B, T / pw, (F / ph) * D]."""
    x = msm_mae_encoder_reference(sd, lms, heads, patch)
    x = x[:, 1:] if "cls_token" in sd else x
    b, n, d = x.shape
    fg = lms.shape[2] // patch[0]
    return x.reshape(b, fg, n // fg, d).permute(0, 2, 1, 3).reshape(b, n // fg, fg * d)  # 'b (f t) d -> b t (f d)'


def msm_mae_decoder_reference(sd, latent, ids_restore, dec_heads):
    """The official forward_decoder: latent [B, 1 + Nv, D] (CLS first) -> predictions [B, N, ph * pw]."""
    x = F.linear(latent, sd["decoder_embed.weight"], sd["decoder_embed.bias"])
    n = ids_restore.shape[1]
    mask_tokens = sd["mask_token"].repeat(len(x), n + 1 - x.shape[1], 1)
    x_ = torch.cat([x[:, 1:], mask_tokens], dim=1)
    x_ = torch.gather(x_, 1, ids_restore[..., None].expand(-1, -1, x.shape[2]))  # unshuffle
    x = torch.cat([x[:, :1], x_], dim=1) + sd["decoder_pos_embed"]
    x = _ln(_timm_blocks(x, sd, "decoder_blocks", dec_heads), sd, "decoder_norm", 1e-6)
    return F.linear(x, sd["decoder_pred.weight"], sd["decoder_pred.bias"])[:, 1:]


def _fairseq_layers(x, sd, prefix, heads):
    """fairseq TransformerEncoder, layer_norm_first=False: layer_norm on the input, post-norm layers."""
    x = _ln(x, sd, f"{prefix}.layer_norm", 1e-5)
    i = 0
    while f"{prefix}.layers.{i}.fc1.weight" in sd:
        p = f"{prefix}.layers.{i}"
        q, k, v = (F.linear(x, sd[f"{p}.self_attn.{c}_proj.weight"], sd[f"{p}.self_attn.{c}_proj.bias"]) for c in "qkv")
        a = F.linear(_attend(q, k, v, heads), sd[f"{p}.self_attn.out_proj.weight"], sd[f"{p}.self_attn.out_proj.bias"])
        x = _ln(x + a, sd, f"{p}.self_attn_layer_norm", 1e-5)
        h = F.linear(F.gelu(F.linear(x, sd[f"{p}.fc1.weight"], sd[f"{p}.fc1.bias"])), sd[f"{p}.fc2.weight"],
                     sd[f"{p}.fc2.bias"])
        x = _ln(x + h, sd, f"{p}.final_layer_norm", 1e-5)
        i += 1
    return x


def mae_ast_patches(sd, fbank, kernel):
    """BatchNorm (eval) x 0.5, then nn.Unfold into tokens: fbank [B, T, 128] -> [B, L, time * chan]."""
    chan, time = kernel
    x = F.batch_norm(fbank[:, None], sd["batch_norm.running_mean"], sd["batch_norm.running_var"], training=False,
                     eps=1e-5) * 0.5  # [B, 1, T, 128]
    return F.unfold(x, kernel_size=(time, chan), stride=(time, chan)).transpose(1, 2)


def mae_ast_reference(sd, fbank, heads, kernel, retained=None):
    """The official MAE-AST forward(..., features_only=True)['x'] in eval mode: fbank [B, T, 128] -> [B, L, D]."""
    x = F.linear(mae_ast_patches(sd, fbank, kernel), sd["post_extract_proj.weight"], sd["post_extract_proj.bias"])
    x = x + sd["enc_sine_pos_embed.pe"][:, : x.shape[1]]  # added before the masked tokens are dropped
    if retained is not None:
        x = x[:, retained]
    return _fairseq_layers(x, sd, "encoder", heads)


def mae_ast_decoder_reference(sd, enc, retained, masked, n, heads):
    """The official decoder path: encoder output of the retained tokens -> (recon, class) logits at masked tokens."""
    full = torch.empty(len(enc), n, enc.shape[-1])
    full[:, retained] = enc
    full[:, masked] = sd["decoder_mask_emb"]
    full = full + sd["dec_sine_pos_embed.pe"][:, :n]
    x = _fairseq_layers(full, sd, "decoder", heads)[:, sorted(masked)]  # x[mask_indices]: token order
    return tuple(F.linear(x, sd[f"final_proj_{h}.weight"], sd[f"final_proj_{h}.bias"])
                 for h in ("reconstruction", "classification"))


# ---- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def speech(digit_wavs) -> torch.Tensor:
    """About 2.5 s of real speech at 16 kHz: several spoken digits in a row, [n_samples]."""
    from hear_maeast.audio import load_audio

    return torch.cat([load_audio(p) for p in digit_wavs[:6]])


@pytest.fixture(scope="module")
def msm_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("msm")
    return save_msm_mae(root / "80x208p16x16_test", msm_mae_state())


@pytest.fixture(scope="module", params=["patch", "frame"])
def mae_ast_file(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("maeast") / f"random_{request.param}_75_2LayerEncoder.pt"
    torch.save(mae_ast_checkpoint(request.param), path)
    return request.param, path


# ---- MSM-MAE ------------------------------------------------------------------------------------
def test_msm_mae_file_loads_with_sizes_read_from_its_tensors(msm_file):
    assert detect_format(msm_file) == "msm-mae"
    model = hear_maeast.load_model(str(msm_file))
    cfg = model.cfg
    assert (cfg.n_mels, cfg.input_frames, cfg.patch_size, cfg.cls_token) == (80, 208, (16, 16), True)
    assert (cfg.dim, cfg.depth, cfg.heads, cfg.decoder_dim, cfg.decoder_depth, cfg.decoder_heads) == (768, 2, 12, 384, 1, 6)
    assert model.frontend.norm_stats.tolist() == pytest.approx([-7.1, 4.2])  # the documented default
    assert "evaluation" in model.provenance["licence"]
    assert model.timestamp_embedding_size == 5 * 768 and model.cfg.hop_ms == 40
    other = hear_maeast.load_model(str(msm_file), norm_stats=[-5.0, 3.0])
    assert other.frontend.norm_stats.tolist() == [-5.0, 3.0]


@pytest.mark.parametrize("folder,patch,cls", [("80x208p16x16_test", (16, 16), True),
                                              ("80x512p16x8_nocls", (16, 8), False)])
def test_msm_mae_equals_the_official_forward_on_real_speech(tmp_path, speech, folder, patch, cls):
    frames = int(folder.split("p")[0].split("x")[1])
    sd = msm_mae_state((80, frames), patch, cls=cls, seed=1)
    model = hear_maeast.load_model(str(save_msm_mae(tmp_path / folder, sd)))
    assert model.cfg.cls_token == cls and model.cfg.patch_size == patch and model.cfg.input_frames == frames
    lms = model.frontend(speech[None])[..., :frames]  # [1, 80, T] normalised log-mel
    lms = F.pad(lms, (0, frames - lms.shape[-1]))  # one chunk, zero-padded as the runtime pads
    ours = tokens_to_columns(model.encode(lms), model.cfg)
    ref = msm_mae_reference(sd, lms[:, None], heads=12, patch=patch)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_msm_mae_pretraining_forward_equals_the_official_decoder(msm_file, speech):
    sd = torch.load(msm_file, weights_only=False)["model"]
    model = hear_maeast.load_model(str(msm_file))
    lms = model.frontend(speech[None])[..., :208]
    lms = F.pad(lms, (0, 208 - lms.shape[-1]))  # [1, 80, 208]
    ids_shuffle = torch.randperm(65, generator=torch.Generator().manual_seed(0))[None]  # official random_masking
    ids_keep, ids_restore = ids_shuffle[:, :16], ids_shuffle.argsort(dim=1)
    latent = msm_mae_encoder_reference(sd, lms[:, None], 12, (16, 16), ids_keep)
    ref = msm_mae_decoder_reference(sd, latent, ids_restore, dec_heads=6)
    out = model(lms, ids_keep)
    torch.testing.assert_close(model.forward_encoder(lms, ids_keep), latent, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["recon"], ref, atol=1e-5, rtol=1e-5)


def test_msm_mae_sizes_fall_back_to_80_mels_and_folder_names_are_cross_checked(tmp_path):
    sd = msm_mae_state((80, 512), seed=2)
    model = hear_maeast.load_model(str(save_msm_mae(tmp_path / "my_run", sd)))  # no size in the folder name
    assert model.cfg.input_frames == 512
    with pytest.raises(CheckpointError, match=r"folder name .*16x8 but the weights are 16x16"):
        hear_maeast.load_model(str(save_msm_mae(tmp_path / "80x1024p16x8_x", sd)))
    with pytest.raises(CheckpointError, match="pos_embed"):
        hear_maeast.load_model(str(save_msm_mae(tmp_path / "my_run", sd)), input_frames=208)


def test_msm_mae_grid_is_checked_against_the_position_table(tmp_path):
    # 65 patch positions are 5 x 13 (80 x 208) -- or 13 x 5: a table for the transposed grid must not load silently
    sd = msm_mae_state(seed=3)
    sd["pos_embed"] = official_2d_sincos(768, (13, 5), cls=True)
    with pytest.raises(CheckpointError, match="not the 2-D sin-cos table of a 5x13 patch grid"):
        hear_maeast.load_model(str(save_msm_mae(tmp_path / "run", sd)))


def test_a_mismatching_msm_mae_file_lists_what_differs(tmp_path):
    sd = msm_mae_state(seed=4)
    sd["blocks.0.attn.k_bias"] = torch.zeros(768)  # not in the official model
    del sd["norm.weight"]
    sd["blocks.1.mlp.fc2.bias"] = torch.zeros(700)
    with pytest.raises(CheckpointError) as e:
        hear_maeast.load_model(str(save_msm_mae(tmp_path / "80x208p16x16_bad", sd)))
    msg = str(e.value)
    assert "unknown keys ['blocks.0.attn.k_bias']" in msg
    assert "missing keys ['norm.weight']" in msg
    assert "blocks.1.mlp.fc2.bias: file (700,) vs expected (768,)" in msg


def _changed(a: dict, b: dict) -> set[str]:
    return {k for k in a if not torch.equal(a[k], b[k])}


MSM_PLACES = {  # official name -> our name (written out here, independently of hear_maeast.official)
    "cls_token": "cls_token", "pos_embed": "pos_embed", "patch_embed.proj.weight": "patch_embed.weight",
    "patch_embed.proj.bias": "patch_embed.bias", "norm.weight": "encoder.norm.weight", "norm.bias": "encoder.norm.bias",
    "mask_token": "mask_token", "decoder_embed.weight": "decoder_embed.weight", "decoder_embed.bias": "decoder_embed.bias",
    "decoder_pos_embed": "decoder_pos_embed", "decoder_norm.weight": "decoder.norm.weight",
    "decoder_norm.bias": "decoder.norm.bias", "decoder_pred.weight": "decoder_pred.weight",
    "decoder_pred.bias": "decoder_pred.bias",
}


def _msm_place(key: str) -> str:
    if key in MSM_PLACES:
        return MSM_PLACES[key]
    if key.startswith("decoder_blocks."):
        return "decoder.blocks." + key[len("decoder_blocks."):]
    return "encoder." + key  # blocks.N.... keeps its inner names (norm1, attn.qkv.weight, attn.q_bias, mlp.fc1 ...)


def test_every_msm_mae_tensor_lands_in_its_place():
    sd = msm_mae_state(dim=128, dec_dim=64, depth=2, dec_depth=2, seed=5)  # small: one load per official tensor
    base = model_state(msm_mae_model({"model": sd}, "test", "80x208p16x16_t"))
    for key in sd:
        poked = dict(sd)
        poked[key] = sd[key].clone()
        poked[key].view(-1)[-1] += 1e-5
        got = model_state(msm_mae_model({"model": poked}, "test", "80x208p16x16_t"))
        assert _changed(base, got) == {_msm_place(key)}, key


def test_sincos_tables_equal_the_official_formulas():
    for grid in [(5, 13), (5, 32), (10, 13), (1, 128)]:  # rectangular grids, time in the first half of channels
        torch.testing.assert_close(sincos_2d(768, grid), official_2d_sincos(768, grid, cls=False)[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(sincos_1d(384, torch.arange(65)), official_sinusoid_table(65, 384, False)[0],
                               atol=1e-6, rtol=0)
    # MAE-AST computes its table in float32; ours is float64-rounded: equal to float32 round-off of the angle
    torch.testing.assert_close(sincos_1d(768, torch.arange(512)), mae_ast_pe(512, 768)[0], atol=1e-4, rtol=0)


# ---- MAE-AST ------------------------------------------------------------------------------------
def test_mae_ast_file_is_refused_without_trust_pickle(mae_ast_file):
    _, path = mae_ast_file
    assert detect_format(path) == "mae-ast"
    with pytest.raises(CheckpointError) as e:
        hear_maeast.load_model(str(path))
    msg = str(e.value)
    assert "trust_pickle=True" in msg and "hear-maeast convert --trust-pickle" in msg and "omegaconf" in msg


def test_mae_ast_file_loads_with_its_batch_norm_as_fixed_stats(mae_ast_file):
    kind, path = mae_ast_file
    model = hear_maeast.load_model(str(path), trust_pickle=True)
    cfg = model.cfg
    assert cfg.name == f"mae-ast-{kind}-2l" and cfg.patch_size == {"patch": (16, 16), "frame": (128, 2)}[kind]
    assert (cfg.dim, cfg.depth, cfg.heads, cfg.decoder_depth, cfg.norm_position, cfg.k_bias) == (768, 2, 12, 1, "post", True)
    assert cfg.norm_mean == pytest.approx(-4.3) and cfg.norm_std == pytest.approx(math.sqrt(19.7 + 1e-5))
    assert cfg.norm_scale == 0.5 and cfg.mask_kind == {"patch": "chunk", "frame": "random"}[kind]
    assert model.pos_embed.shape == (1, 512, 768)  # 1024 frames per chunk, sliced from the file's table


def test_mae_ast_equals_the_official_forward_on_real_speech(mae_ast_file, speech):
    kind, path = mae_ast_file
    ckpt = torch.load(path, weights_only=False)
    model = hear_maeast.load_model(str(path), trust_pickle=True)
    fbank = torchaudio.compliance.kaldi.fbank(speech[None], sample_frequency=16000, use_energy=False,
                                              num_mel_bins=128)  # [T, 128], the official front end
    fbank = fbank[None, : fbank.shape[0] // 16 * 16]  # [1, T, 128], whole patches (Unfold drops the rest)
    ours = model.encode(model.frontend.normalize(fbank.transpose(1, 2)))  # [1, L, D]
    ref = mae_ast_reference(ckpt["model"], fbank, heads=12, kernel=KERNELS[kind])
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_mae_ast_pretraining_forward_equals_the_official_decoder(mae_ast_file, speech):
    kind, path = mae_ast_file
    sd = torch.load(path, weights_only=False)["model"]
    model = hear_maeast.load_model(str(path), trust_pickle=True)
    fbank = torchaudio.compliance.kaldi.fbank(speech[None], sample_frequency=16000, use_energy=False,
                                              num_mel_bins=128)[None, :128]  # [1, 128 frames, 128 bins]
    n = 64  # tokens: 8 x 8 patches or 64 frame pairs
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(1)).tolist()  # official random_mask
    retained, masked = idx[:16], idx[16:]
    enc = mae_ast_reference(sd, fbank, 12, KERNELS[kind], retained)
    recon, logits = mae_ast_decoder_reference(sd, enc, retained, masked, n, heads=12)
    out = model(model.frontend.normalize(fbank.transpose(1, 2)), torch.tensor([retained]))
    torch.testing.assert_close(out["target"], mae_ast_patches(sd, fbank, KERNELS[kind]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["recon"][:, sorted(masked)], recon, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["logits_proj"][:, sorted(masked)], logits, atol=1e-5, rtol=1e-5)


def _mae_ast_place(key: str) -> str | None:
    fixed = {"post_extract_proj.weight": "patch_embed.weight", "post_extract_proj.bias": "patch_embed.bias",
             "enc_sine_pos_embed.pe": "pos_embed", "dec_sine_pos_embed.pe": "decoder_pos_embed",
             "decoder_mask_emb": "mask_token", "batch_norm.running_mean": "norm_stats",
             "batch_norm.running_var": "norm_stats", "encoder.layer_norm.weight": "encoder.norm.weight",
             "encoder.layer_norm.bias": "encoder.norm.bias", "decoder.layer_norm.weight": "decoder.norm.weight",
             "decoder.layer_norm.bias": "decoder.norm.bias",
             "final_proj_reconstruction.weight": "decoder_pred.weight", "final_proj_reconstruction.bias": "decoder_pred.bias",
             "final_proj_classification.weight": "decoder_cls.weight", "final_proj_classification.bias": "decoder_cls.bias"}
    if key in fixed:
        return fixed[key]
    if key in ("layer_norm.weight", "layer_norm.bias", "encoder_mask_emb", "batch_norm.num_batches_tracked"):
        return None  # never used by the official forward: dropped
    side, _, i, *rest = key.split(".")
    inner = ".".join(rest)
    layer = {"self_attn.q_proj.weight": "attn.qkv.weight", "self_attn.k_proj.weight": "attn.qkv.weight",
             "self_attn.v_proj.weight": "attn.qkv.weight", "self_attn.q_proj.bias": "attn.q_bias",
             "self_attn.k_proj.bias": "attn.k_bias", "self_attn.v_proj.bias": "attn.v_bias",
             "self_attn.out_proj.weight": "attn.proj.weight", "self_attn.out_proj.bias": "attn.proj.bias",
             "self_attn_layer_norm.weight": "norm1.weight", "self_attn_layer_norm.bias": "norm1.bias",
             "final_layer_norm.weight": "norm2.weight", "final_layer_norm.bias": "norm2.bias",
             "fc1.weight": "mlp.fc1.weight", "fc1.bias": "mlp.fc1.bias", "fc2.weight": "mlp.fc2.weight",
             "fc2.bias": "mlp.fc2.bias"}[inner]
    return f"{side}.blocks.{i}.{layer}"


def _state_and_stats(model) -> dict:
    """The model's tensors and its normalisation statistics (which live in its configuration)."""
    return {**model_state(model), "norm_stats": torch.tensor([model.cfg.norm_mean, model.cfg.norm_std])}


def test_every_mae_ast_tensor_lands_in_its_place():
    ckpt = mae_ast_checkpoint("patch", dim=64, depth=2, dec_depth=2, heads=4, max_tokens=600, seed=6)
    sd = ckpt["model"]
    base = _state_and_stats(mae_ast_model(ckpt, "test"))
    for key in sd:
        poked = dict(sd)
        poked[key] = sd[key].clone()
        poked[key].view(-1)[0] += 1 if key.endswith("num_batches_tracked") else 1e-3
        got = _state_and_stats(mae_ast_model({**ckpt, "model": poked}, "test"))
        expected = _mae_ast_place(key)
        assert _changed(base, got) == ({expected} if expected else set()), key


def test_mae_ast_q_proj_goes_to_the_first_third_of_the_fused_qkv():
    ckpt = mae_ast_checkpoint("frame", dim=64, depth=1, dec_depth=1, heads=4, max_tokens=600, seed=7)
    model = mae_ast_model(ckpt, "test")
    sd = ckpt["model"]
    qkv = model.encoder.blocks[0].attn.qkv.weight
    for j, p in enumerate("qkv"):
        assert torch.equal(qkv[64 * j : 64 * (j + 1)], sd[f"encoder.layers.0.self_attn.{p}_proj.weight"])


def test_a_mismatching_mae_ast_file_lists_what_differs():
    ckpt = mae_ast_checkpoint("patch", dim=64, depth=1, dec_depth=1, heads=4, max_tokens=600)
    ckpt["model"]["encoder.layers.0.self_attn.extra_proj.weight"] = torch.zeros(64, 64)
    del ckpt["model"]["final_proj_classification.bias"]
    with pytest.raises(CheckpointError) as e:
        mae_ast_model(ckpt, "x.pt")
    assert "encoder.layers.0.self_attn.extra_proj.weight" in str(e.value) and "decoder_cls.bias" in str(e.value)
    ckpt = mae_ast_checkpoint("patch", dim=64, depth=1, dec_depth=1, heads=4, max_tokens=600)
    ckpt["cfg"]["model"]["enc_conv_pos"] = True
    ckpt["cfg"]["model"]["ast_kernel_stride_time"] = 8
    with pytest.raises(CheckpointError, match=r"overlapping patches .*enc_conv_pos=True"):
        mae_ast_model(ckpt, "x.pt")


# ---- front ends on real audio -------------------------------------------------------------------
def test_front_ends_equal_their_torchaudio_references_on_real_speech(speech):
    from hear_maeast.frontend import KaldiFbank, LogMel

    wav = speech[None]
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=400, win_length=400, hop_length=160, f_min=50, f_max=8000, n_mels=80,
        power=2.0, center=True, pad_mode="reflect", mel_scale="slaney", norm="slaney")
    ref = (mel(wav) + torch.finfo(torch.float32).eps).log()
    torch.testing.assert_close(LogMel(80)(wav), ref, atol=1e-5, rtol=0)
    ref = torchaudio.compliance.kaldi.fbank(wav, sample_frequency=16000, use_energy=False, num_mel_bins=128)
    torch.testing.assert_close(KaldiFbank(128)(wav)[0], ref.T, atol=1e-5, rtol=0)


# ---- convert, hear-validator, heareval ------------------------------------------------------------
def _cli(*args, timeout=300):
    return subprocess.run([str(BIN / "hear-maeast"), *map(str, args)], capture_output=True, text=True,
                          env=run_env(), timeout=timeout)


@pytest.fixture(scope="module")
def fairseq_patch_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fairseq") / "chunk_patch_75_2LayerEncoder.pt"
    torch.save(mae_ast_checkpoint("patch"), path)
    return path


@pytest.mark.parametrize("which", ["msm-mae", "mae-ast"])
def test_convert_round_trips_bit_exactly(tmp_path, msm_file, fairseq_patch_file, speech, which):
    src, options = (msm_file, {}) if which == "msm-mae" else (fairseq_patch_file, {"trust_pickle": True})
    dst = tmp_path / (src.stem + ".safetensors")
    run = _cli("convert", src, dst, *(["--trust-pickle"] if options else []))
    assert run.returncode == 0, run.stderr
    assert "must not be redistributed" in run.stdout
    original, converted = hear_maeast.load_model(str(src), **options), hear_maeast.load_model(str(dst))
    assert converted.cfg == original.cfg
    a, b = model_state(original), model_state(converted)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert converted.provenance["converted_from"] == src.name and len(converted.provenance["source_sha256"]) == 64
    ea, ta = hear_maeast.get_timestamp_embeddings(speech[None, :16000], original)
    eb, tb = hear_maeast.get_timestamp_embeddings(speech[None, :16000], converted)
    assert torch.equal(ea, eb) and torch.equal(ta, tb)


def test_convert_refuses_a_fairseq_file_without_trust_pickle(tmp_path, fairseq_patch_file):
    run = _cli("convert", fairseq_patch_file, tmp_path / "x.safetensors")
    assert run.returncode != 0 and "--trust-pickle" in run.stderr
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.slow
def test_official_files_pass_hear_validator(tmp_path, msm_file, fairseq_patch_file):
    converted = tmp_path / "mae_ast_patch.safetensors"
    assert _cli("convert", "--trust-pickle", fairseq_patch_file, converted).returncode == 0
    # hear-validator cannot pass model options: the MSM-MAE .pth directly, the fairseq file once converted
    for weights in (msm_file, converted):
        run = subprocess.run([str(BIN / "hear-validator"), "hear_maeast", "-m", str(weights)], capture_output=True,
                             text=True, env=run_env(), timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def _tiny_task(root, speech) -> None:
    """A one-fold-per-split scene task in the layout heareval reads, 4 real clips of 1 s at 16 kHz."""
    import soundfile as sf

    task = root / "digits-v1.0-full"
    (task / "16000").mkdir(parents=True)
    (task / "task_metadata.json").write_text(json.dumps({
        "task_name": "digits", "version": "v1.0", "embedding_type": "scene", "prediction_type": "multiclass",
        "split_mode": "trainvaltest", "splits": ["train", "valid", "test"], "sample_duration": 1.0,
        "evaluation": ["top1_acc"], "mode": "full"}))
    (task / "labelvocabulary.csv").write_text("idx,label\n0,a\n1,b\n")
    for split in ("train", "valid", "test"):
        (task / "16000" / split).mkdir()
        labels = {}
        for j in range(2):
            name = f"{split}{j}.wav"
            clip = speech[j * 8000 : j * 8000 + 16000]
            sf.write(task / "16000" / split / name, clip.numpy(), 16000)
            labels[name] = ["a" if j == 0 else "b"]
        (task / f"{split}.json").write_text(json.dumps(labels))


@pytest.mark.slow
def test_official_files_run_through_heareval_embeddings(tmp_path, msm_file, speech):
    fairseq_file = tmp_path / "random_frame_75_2LayerEncoder.pt"
    torch.save(mae_ast_checkpoint("frame"), fairseq_file)
    _tiny_task(tmp_path / "tasks", speech)
    for weights, options in [(msm_file, {}), (fairseq_file, {"trust_pickle": True})]:
        out = tmp_path / f"emb-{weights.stem}"
        run = subprocess.run(
            [sys.executable, "-m", "heareval.embeddings.runner", "hear_maeast", "--model", str(weights),
             "--tasks-dir", str(tmp_path / "tasks"), "--embeddings-dir", str(out), "--model-options",
             json.dumps(options)], capture_output=True, text=True, env=run_env(), timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        embs = sorted(out.rglob("*.embedding.npy"))
        assert len(embs) == 6
        model = hear_maeast.load_model(str(weights), **options)
        assert np.load(embs[0]).shape == (model.scene_embedding_size,)
