"""The authors' released checkpoints -> MaskedAutoencoder: the key mappings, one small step at a time.

MSM-MAE (nttcslab/msm-mae) `<F>x<T>p<ph>x<pw>_<tag>/checkpoint-100.pth` and MAE-AST (AlanBaade/MAE-AST-Public)
fairseq `.pt` files; `hear_maeast.loading` reads the files (and decides which loader applies), this module turns the
unpickled dicts into models, tensor for tensor: the Conv2d patch embedding becomes a Linear over [mel, frame]-
flattened patches, fairseq's q/k/v projections are fused into one qkv weight with three biases, MAE-AST's BatchNorm
running statistics become the configuration's fixed normalisation (std = sqrt(var + 1e-5), times 0.5).
The formats and mappings are written out in docs/design.md, "Official checkpoint formats and key mappings".
"""

from __future__ import annotations

import math
import re

import torch

from hear_maeast.checkpoint import CheckpointError, load_state, model_state
from hear_maeast.config import ModelConfig, get_preset
from hear_maeast.model import MaskedAutoencoder, sincos_2d
from hear_maeast.timing import SAMPLE_RATE

MSM_MAE, MAE_AST = "msm-mae", "mae-ast"
MSM_MAE_NORM_STATS = (-7.1, 4.2)  # docs/design.md, "Normalisation": AudioSet log-mel stats; `norm_stats` overrides
MSM_MAE_N_MELS = 80  # the official runtime's Config.n_mels
BN_EPS = 1e-5  # torch.nn.BatchNorm2d default, as in MAE-AST
# MAE-AST keys that exist in the file but do not influence any output we compute:
MAE_AST_UNUSED = {
    "layer_norm.weight": "top-level LayerNorm over the 128 mel bins, never called in the official forward",
    "layer_norm.bias": "top-level LayerNorm over the 128 mel bins, never called in the official forward",
    "encoder_mask_emb": "fills masked tokens that the encoder then drops (MAE-style), so it never reaches an output",
    "batch_norm.num_batches_tracked": "a counter; eval-mode BatchNorm uses only the running mean and variance",
}
LICENCES = {
    MSM_MAE: "NTT's licence for the MSM-MAE code and weights (evaluation only, https://github.com/nttcslab/msm-mae): "
             "this converted file is for your own evaluation and must not be redistributed",
    MAE_AST: "the MAE-AST authors' terms (https://github.com/AlanBaade/MAE-AST-Public): this converted file is for "
             "your own evaluation and must not be redistributed",
}


# ---- shared ------------------------------------------------------------------------------------
def _rename(key: str, table) -> str | None:
    for pattern, repl in table:
        if re.fullmatch(pattern, key):
            return re.sub(f"^{pattern}$", repl, key)
    return None


def _count_blocks(sd: dict, prefix: str) -> int:
    ids = {int(m[1]) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(ids) + 1 if ids else 0


def _heads(dim: int, decoder: bool = False) -> int:
    """The official head counts, which the tensors cannot show: ViT-B 768/12, 384/6 (64 per head); 1024 and
    1280 (ViT-L/H) 16; the 512-wide decoder of the L/H models 16."""
    table = {512: 16} if decoder else {1024: 16, 1280: 16}
    return table.get(dim, max(1, dim // 64))


def _build(cfg: ModelConfig, source: str) -> MaskedAutoencoder:
    """The configured model (its sizes all read from the file's tensors), or a CheckpointError naming the file."""
    try:
        cfg.validate()
    except ValueError as e:
        raise CheckpointError(f"{source}: {e}") from e
    return MaskedAutoencoder(cfg)


def _state_dict(sd, source: str, required: tuple[str, ...], family: str) -> dict:
    if not isinstance(sd, dict) or any(k not in sd for k in required):
        raise CheckpointError(f"{source}: no {family} state dict (expected {list(required)})")
    odd = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if odd:
        raise CheckpointError(f"{source}: the {family} state dict holds values that are not tensors: {odd[:5]}")
    return sd


# ---- MSM-MAE -----------------------------------------------------------------------------------
def parse_folder_name(name: str) -> tuple[int, int, int, int] | None:
    """'80x512p16x16_paper' -> (80, 512, 16, 16), as the official loader reads it; None if it does not match."""
    m = re.match(r"^(\d+)x(\d+)p(\d+)x(\d+)(?:$|[_p])", name)
    return tuple(int(v) for v in m.groups()) if m else None


_MSM_RENAMES = [  # official -> ours
    (r"patch_embed\.proj\.(weight|bias)", r"patch_embed.\1"),
    (r"blocks\.(\d+)\.(norm1|norm2|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)", r"encoder.blocks.\1.\2.\3"),
    (r"blocks\.(\d+)\.attn\.(qkv\.weight|q_bias|v_bias)", r"encoder.blocks.\1.attn.\2"),
    (r"norm\.(weight|bias)", r"encoder.norm.\1"),
    (r"(cls_token|pos_embed|mask_token|decoder_pos_embed)", r"\1"),
    (r"decoder_(embed|pred)\.(weight|bias)", r"decoder_\1.\2"),
    (r"decoder_blocks\.(\d+)\.(norm1|norm2|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)", r"decoder.blocks.\1.\2.\3"),
    (r"decoder_blocks\.(\d+)\.attn\.(qkv\.weight|q_bias|v_bias)", r"decoder.blocks.\1.attn.\2"),
    (r"decoder_norm\.(weight|bias)", r"decoder.norm.\1"),
]




def msm_mae_model(ckpt: dict, source: str, folder: str | None = None, input_frames: int | None = None,
                  patch_size: tuple[int, int] | None = None) -> MaskedAutoencoder:
    """An unpickled official MSM-MAE checkpoint (the dict, or its 'model' state dict) -> MaskedAutoencoder."""
    sd = ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt else ckpt
    sd = _state_dict(sd, source, ("patch_embed.proj.weight", "pos_embed"), "MSM-MAE")
    cfg = _msm_config(sd, source, _msm_sizes(sd, source, folder, input_frames, patch_size))
    model = _build(cfg, source)
    tensors, unknown = {}, []
    for key, value in sd.items():
        ours = _rename(key, _MSM_RENAMES)
        if ours is None:
            unknown.append(key)
        else:
            tensors[ours] = value.reshape(cfg.dim, cfg.patch_dim) if key == "patch_embed.proj.weight" else value
    load_state(model, tensors, source, unknown=unknown, names=_msm_official_names(model))
    _check_msm_positions(model, source)
    return model


def _msm_sizes(sd: dict, source: str, folder: str | None, input_frames: int | None,
               patch_size: tuple[int, int] | None) -> tuple[int, int, int, int]:
    """(n_mels, frames, ph, pw): the patch from the Conv2d weight; the input from the options, then the folder
    name, then the position table (N = F / ph * T / pw) with the official runtime's 80 mel bins."""
    w = sd["patch_embed.proj.weight"]
    if w.ndim != 4 or w.shape[1] != 1:
        raise CheckpointError(f"{source}: patch_embed.proj.weight has shape {tuple(w.shape)}; expected [D, 1, ph, pw]")
    ph, pw = w.shape[2], w.shape[3]
    n_tokens = sd["pos_embed"].shape[1] - int("cls_token" in sd)
    named = parse_folder_name(folder or "")
    n_mels = named[0] if named else MSM_MAE_N_MELS
    frames = input_frames or (named[1] if named else None)
    differ = []
    if patch_size is not None and tuple(patch_size) != (ph, pw):
        differ.append(f"patch_size option {tuple(patch_size)} but patch_embed.proj.weight is {ph}x{pw}")
    if named and named[2:] != (ph, pw):
        differ.append(f"folder name {folder!r} says patches {named[2]}x{named[3]} but the weights are {ph}x{pw}")
    if n_mels % ph:
        differ.append(f"{n_mels} mel bins are not a multiple of the patch height {ph}")
    elif frames is None:
        fg = n_mels // ph
        if n_tokens % fg:
            differ.append(f"pos_embed has {n_tokens} patch positions, not a multiple of {fg} frequency patches")
        frames = n_tokens // fg * pw
    if not differ and (frames % pw or (n_mels // ph) * (frames // pw) != n_tokens):
        differ.append(f"input {n_mels}x{frames} with {ph}x{pw} patches does not give the {n_tokens} patch "
                      "positions of pos_embed")
    if differ:
        raise CheckpointError(f"{source}: inconsistent MSM-MAE sizes: " + "; ".join(differ) +
                              ". Name the folder <F>x<T>p<ph>x<pw>_<tag> or pass input_frames / patch_size.")
    return n_mels, frames, ph, pw


def _msm_config(sd: dict, source: str, sizes: tuple[int, int, int, int]) -> ModelConfig:
    """The configuration the tensors imply (widths, depths, MLP ratio; heads by the official convention)."""
    n_mels, frames, ph, pw = sizes
    dim = sd["patch_embed.proj.weight"].shape[0]
    depth, dec_depth = _count_blocks(sd, "blocks."), _count_blocks(sd, "decoder_blocks.")
    dec = sd.get("decoder_embed.weight", sd.get("mask_token"))
    if dec is None:
        raise CheckpointError(f"{source}: neither decoder_embed.weight nor mask_token; cannot tell the decoder width")
    dec_dim = dec.shape[0] if "decoder_embed.weight" in sd else dec.shape[-1]
    fc1 = sd.get("blocks.0.mlp.fc1.weight")
    mlp_ratio = fc1.shape[0] / dim if fc1 is not None else 4.0
    standard = (dim, depth, dec_dim, dec_depth, mlp_ratio) == (768, 12, 384, 4, 4.0)
    size = "base" if standard else f"d{dim}x{depth}"
    return get_preset("msm-mae-base-80x208p16x16").replace(
        name=f"msm-mae-{size}-{n_mels}x{frames}p{ph}x{pw}", n_mels=n_mels, input_frames=frames, patch_size=(ph, pw),
        cls_token="cls_token" in sd, dim=dim, depth=depth, heads=_heads(dim), mlp_ratio=mlp_ratio,
        decoder_dim=dec_dim, decoder_depth=dec_depth, decoder_heads=_heads(dec_dim, decoder=True),
        norm_mean=MSM_MAE_NORM_STATS[0], norm_std=MSM_MAE_NORM_STATS[1],
    )


def _check_msm_positions(model: MaskedAutoencoder, source: str) -> None:
    """The table is 2-D sin-cos over the grid: a wrong F x T split of the same token count shows here."""
    cfg = model.cfg
    expected = sincos_2d(cfg.dim, cfg.grid)
    if (model.pos_embed[0, int(cfg.cls_token):] - expected).abs().max() > 1e-4:
        raise CheckpointError(
            f"{source}: pos_embed is not the 2-D sin-cos table of a {cfg.grid[0]}x{cfg.grid[1]} patch grid "
            f"(input {cfg.n_mels}x{cfg.input_frames}, patches {cfg.patch_size[0]}x{cfg.patch_size[1]}); name the "
            "folder <F>x<T>p<ph>x<pw>_<tag> as the authors did, or pass input_frames"
        )


def _msm_official_names(model: MaskedAutoencoder) -> dict[str, str]:
    """our name -> official name, for messages about missing tensors."""
    out = {}
    for ours in model_state(model):
        official = ours.replace("encoder.blocks.", "blocks.")
        official = official.replace("decoder.blocks.", "decoder_blocks.").replace("decoder.norm.", "decoder_norm.")
        official = re.sub(r"^encoder\.norm\.", "norm.", official)
        out[ours] = re.sub(r"^patch_embed\.", "patch_embed.proj.", official)
    return out


# ---- MAE-AST (fairseq) -------------------------------------------------------------------------
def _plain(cfg):
    """An omegaconf node (or dict) -> plain dict, {} when absent."""
    if cfg is None:
        return {}
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            return OmegaConf.to_container(cfg, resolve=False)
    except ImportError:
        pass
    return dict(cfg) if isinstance(cfg, dict) else dict(vars(cfg))


_FAIRSEQ_LAYER = {  # fairseq TransformerSentenceEncoderLayer -> our Block
    "self_attn.out_proj": "attn.proj", "self_attn_layer_norm": "norm1", "fc1": "mlp.fc1", "fc2": "mlp.fc2",
    "final_layer_norm": "norm2",
}


def _mae_ast_rename(key: str) -> str | None:
    for side in ("encoder", "decoder"):
        m = re.fullmatch(side + r"\.layers\.(\d+)\.(.+)\.(weight|bias)", key)
        if m and m[2] in _FAIRSEQ_LAYER:
            return f"{side}.blocks.{m[1]}.{_FAIRSEQ_LAYER[m[2]]}.{m[3]}"
        m = re.fullmatch(side + r"\.layer_norm\.(weight|bias)", key)
        if m:
            return f"{side}.norm.{m[1]}"
    simple = {"post_extract_proj": "patch_embed", "final_proj_reconstruction": "decoder_pred",
              "final_proj_classification": "decoder_cls", "post_enc_proj": "decoder_embed"}
    m = re.fullmatch(r"(\w+)\.(weight|bias)", key)
    if m and m[1] in simple:
        return f"{simple[m[1]]}.{m[2]}"
    return None


def mae_ast_model(ckpt: dict, source: str, input_frames: int | None = None,
                  patch_size: tuple[int, int] | None = None) -> MaskedAutoencoder:
    """An unpickled official MAE-AST checkpoint dict(cfg=..., model=...) -> MaskedAutoencoder."""
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{source}: expected a fairseq checkpoint dict with a 'model' state dict")
    sd = _state_dict(ckpt["model"], source, ("post_extract_proj.weight",), "MAE-AST")
    cfg_all = _plain(ckpt.get("cfg"))
    mcfg, tcfg = _plain(cfg_all.get("model")), _plain(cfg_all.get("task"))
    cfg = _mae_ast_config(sd, mcfg, tcfg, source, input_frames, patch_size)
    model = _build(cfg, source)
    tensors, unknown = _mae_ast_tensors(sd, cfg, source)
    load_state(model, tensors, source, unknown=unknown)
    return model


def _mae_ast_patch(mcfg: dict, patch_dim: int, patch_size) -> tuple[tuple[int, int], list[str]]:
    """Patch or frame: the official kernel sizes (MAE_AST_Config; default 16 x 16), or the option."""
    ph, pw = int(mcfg.get("ast_kernel_size_chan", 16)), int(mcfg.get("ast_kernel_size_time", 16))
    differ = []
    if patch_size is not None:
        if "ast_kernel_size_chan" in mcfg and tuple(patch_size) != (ph, pw):
            differ.append(f"patch_size option {tuple(patch_size)} but cfg.model says {ph}x{pw}")
        ph, pw = patch_size
    strides = (int(mcfg.get("ast_kernel_stride_chan", ph)), int(mcfg.get("ast_kernel_stride_time", pw)))
    if strides != (ph, pw):
        differ.append(f"overlapping patches (kernel {ph}x{pw}, stride {strides[0]}x{strides[1]}) are not supported")
    if ph * pw != patch_dim:
        differ.append(f"post_extract_proj.weight takes {patch_dim} values per token but patches are {ph}x{pw}")
    return (ph, pw), differ


def _mae_ast_unsupported(sd: dict, mcfg: dict, tcfg: dict, sizes: dict) -> list[str]:
    """What this package does not reproduce (a variant of the official model), or what contradicts itself."""
    checks = [
        ("task.feature_type", tcfg.get("feature_type", "fbank"), "fbank"),
        ("task.deltas", bool(tcfg.get("deltas", False)), False),
        ("task.sample_rate", int(tcfg.get("sample_rate", SAMPLE_RATE)), SAMPLE_RATE),
        ("model.activation_fn", mcfg.get("activation_fn", "gelu"), "gelu"),
        ("model.enc_conv_pos", bool(mcfg.get("enc_conv_pos", False)), False),
        ("model.dec_conv_pos", bool(mcfg.get("dec_conv_pos", False)), False),
        ("model.enc_sine_pos", "enc_sine_pos_embed.pe" in sd, True),
        ("model.dec_sine_pos", "dec_sine_pos_embed.pe" in sd, True),
    ]
    differ = [f"{name}={have!r} (supported: {want!r})" for name, have, want in checks if have != want]
    dim, dec_dim, ffn = sizes["dim"], sizes["decoder_dim"], sizes["ffn"]
    if dec_dim != dim and "post_enc_proj.weight" not in sd:
        differ.append(f"decoder width {dec_dim} differs from the encoder's {dim} without post_enc_proj")
    if dec_dim == dim and "post_enc_proj.weight" in sd:
        differ.append("post_enc_proj between equal widths (use_post_enc_proj=True) is not supported")
    dec_fc1 = sd.get("decoder.layers.0.fc1.weight")
    if dec_fc1 is not None and dec_fc1.shape[0] / dec_dim != ffn / dim:
        differ.append("the decoder's FFN width is not the encoder's ratio (official: encoder_ffn_embed_dim for both)")
    for name, have in [("encoder_layers", sizes["depth"]), ("decoder_layers", sizes["decoder_depth"]),
                       ("encoder_embed_dim", dim), ("encoder_ffn_embed_dim", ffn)]:
        if name in mcfg and int(mcfg[name]) != have:
            differ.append(f"cfg.model.{name}={mcfg[name]} but the tensors have {have}")
    return differ


def _mae_ast_sizes(sd: dict) -> dict:
    dim = sd["post_extract_proj.weight"].shape[0]
    depth, dec_depth = _count_blocks(sd, "encoder.layers."), _count_blocks(sd, "decoder.layers.")
    dec_dim = sd["decoder_mask_emb"].shape[0] if "decoder_mask_emb" in sd else dim
    fc1 = sd.get("encoder.layers.0.fc1.weight")
    return dict(dim=dim, depth=depth, decoder_dim=dec_dim, decoder_depth=dec_depth,
                ffn=fc1.shape[0] if fc1 is not None else 4 * dim)


def _batch_norm_stats(sd: dict, source: str) -> tuple[float, float]:
    """BatchNorm2d(1, affine=False) in eval mode -> (mean, std) with std = sqrt(running_var + eps)."""
    mean, var = sd.get("batch_norm.running_mean"), sd.get("batch_norm.running_var")
    if mean is None or var is None or mean.numel() != 1 or var.numel() != 1:
        raise CheckpointError(f"{source}: expected batch_norm.running_mean and running_var of one channel each")
    mean, var = float(mean.double()), float(var.double())
    if not var + BN_EPS > 0:  # also NaN
        raise CheckpointError(f"{source}: batch_norm.running_var is {var}; a variance must be >= 0")
    return mean, math.sqrt(var + BN_EPS)


def _mae_ast_config(sd: dict, mcfg: dict, tcfg: dict, source: str, input_frames: int | None,
                    patch_size) -> ModelConfig:
    sizes = _mae_ast_sizes(sd)
    (ph, pw), differ = _mae_ast_patch(mcfg, sd["post_extract_proj.weight"].shape[1], patch_size)
    differ += _mae_ast_unsupported(sd, mcfg, tcfg, sizes)
    if differ:
        raise CheckpointError(f"{source}: unsupported or inconsistent MAE-AST checkpoint: " + "; ".join(differ))
    n_mels = int(tcfg.get("feature_dim", 128))
    tokens = "frame" if ph == n_mels else "patch"
    base = get_preset(f"mae-ast-{tokens}-12l")
    heads = int(mcfg.get("encoder_attention_heads", 12))
    # MAE_AST_Config.layer_norm_first: True is a pre-norm stack whose final LayerNorm follows the blocks
    norm_position = "pre" if bool(mcfg.get("layer_norm_first", False)) else "post"
    mask = tcfg.get("mask_type", "chunk_mask" if tokens == "patch" else "random_mask")
    ratio = float(mcfg.get("random_mask_prob", base.mask_ratio))  # "retain_spans" uses 1.45 for ~75 %
    dim, depth, ffn = sizes["dim"], sizes["depth"], sizes["ffn"]
    standard = (dim, ffn, norm_position) == (768, 3072, "post")
    mean, std = _batch_norm_stats(sd, source)
    return base.replace(
        name=f"mae-ast-{tokens}-{depth}l" + ("" if standard else f"-d{dim}-{norm_position}norm"), n_mels=n_mels,
        patch_size=(ph, pw), input_frames=input_frames or base.input_frames, dim=dim, depth=depth, heads=heads,
        mlp_ratio=ffn / dim, norm_position=norm_position, decoder_dim=sizes["decoder_dim"],
        decoder_depth=sizes["decoder_depth"], decoder_heads=heads,
        mask_kind="chunk" if mask == "chunk_mask" else "random",
        mask_ratio=ratio if 0 <= ratio < 1 else base.mask_ratio, norm_mean=mean, norm_std=std, norm_scale=0.5,
    )


def _mae_ast_tensors(sd: dict, cfg: ModelConfig, source: str) -> tuple[dict, list[str]]:
    """Official tensors -> ours: renamed, position tables sliced to the chunk, q/k/v fused."""
    n = cfg.num_patches
    tensors, unknown = {}, []
    for key, value in sd.items():
        if key in MAE_AST_UNUSED or key.startswith("batch_norm.running_") or _QKV.fullmatch(key):
            continue  # unused, in the configuration, or fused below
        if key in ("enc_sine_pos_embed.pe", "dec_sine_pos_embed.pe"):
            if value.ndim != 3 or value.shape[1] < n:
                raise CheckpointError(f"{source}: {key} has shape {tuple(value.shape)}; input_frames="
                                      f"{cfg.input_frames} needs {n} positions")
            tensors["pos_embed" if key.startswith("enc") else "decoder_pos_embed"] = value[:, :n]
        elif key == "decoder_mask_emb":
            tensors["mask_token"] = value.reshape(1, 1, -1)
        elif (ours := _mae_ast_rename(key)) is not None:
            tensors[ours] = value
        else:
            unknown.append(key)
    for side, layers in (("encoder", cfg.depth), ("decoder", cfg.decoder_depth)):
        for i in range(layers):
            tensors.update(_fused_attention(sd, side, i))
    return tensors, unknown


_QKV = re.compile(r"(encoder|decoder)\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)")


def _fused_attention(sd: dict, side: str, i: int) -> dict:
    """fairseq's q_proj/k_proj/v_proj of one layer -> our qkv weight [3D, D] and q/k/v biases (missing: {})."""
    pre = f"{side}.layers.{i}.self_attn."
    parts = {f"{p}_proj.{t}": sd.get(f"{pre}{p}_proj.{t}") for p in "qkv" for t in ("weight", "bias")}
    if any(v is None for v in parts.values()):
        return {}  # reported as missing by load_state
    out = {f"{side}.blocks.{i}.attn.qkv.weight": torch.cat([parts[f"{p}_proj.weight"] for p in "qkv"])}
    out.update({f"{side}.blocks.{i}.attn.{p}_bias": parts[f"{p}_proj.bias"] for p in "qkv"})
    return out
