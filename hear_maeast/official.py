"""Load the authors' released checkpoints: MSM-MAE (nttcslab/msm-mae) and MAE-AST (AlanBaade/MAE-AST-Public).

MSM-MAE   `<F>x<T>p<ph>x<pw>_<tag>/checkpoint-100.pth`: dict(model=state_dict, optimizer, epoch, scaler,
          args=argparse.Namespace). Read with torch.load(weights_only=True), allow-listing argparse.Namespace only.
          Sizes come from the tensors (patch size from the Conv2d weight, grid from the position table); the
          folder name, as the official loader parses it, is a fallback and a cross-check.
MAE-AST   fairseq: dict(cfg={"model": ..., "task": ...} (pickled omegaconf objects), model=state_dict).
          Unpickling it can run code, so it is refused unless the caller passes trust_pickle=True.

Both become a `MaskedAutoencoder` of the matching family (see `hear_maeast.config`), tensor for tensor:
the Conv2d patch embedding becomes a Linear over [mel, frame]-flattened patches, fairseq's q/k/v projections
are fused into one qkv weight with three biases, MAE-AST's BatchNorm running statistics become the front end's
fixed normalisation (std = sqrt(var + 1e-5), times 0.5). `hear-maeast convert` writes the result as safetensors.
"""

from __future__ import annotations

import argparse
import io
import math
import pickletools
import re
import zipfile
from pathlib import Path

import torch

from hear_maeast.checkpoint import CheckpointError, is_safetensors, load_checkpoint, model_state
from hear_maeast.config import get_preset
from hear_maeast.model import MaskedAutoencoder, sincos_2d
from hear_maeast.timing import SAMPLE_RATE

MSM_MAE, MAE_AST = "msm-mae", "mae-ast"
MSM_MAE_NORM_STATS = (-7.1, 4.2)  # docs/design.md, "Normalisation": AudioSet log-mel stats for this front end; `norm_stats` overrides
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


# ---- format detection (no unpickling) ----------------------------------------------------------
def _pickle_scan(stream) -> tuple[set[str], set[str]]:
    """Strings and globals ("module.name") referenced by one pickle, read with pickletools (nothing executed)."""
    strings, globals_, memo, recent = set(), set(), {}, []
    for op, arg, _ in pickletools.genops(stream):
        if isinstance(arg, str) and ("UNICODE" in op.name or op.name in ("STRING", "BINSTRING", "SHORT_BINSTRING")):
            strings.add(arg)
            recent = (recent + [arg])[-2:]
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT") and recent:
            memo[arg] = recent[-1]
        elif op.name == "MEMOIZE" and recent:
            memo[len(memo)] = recent[-1]
        elif op.name in ("BINGET", "LONG_BINGET", "GET") and arg in memo:
            recent = (recent + [memo[arg]])[-2:]
        elif op.name == "GLOBAL":
            globals_.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and len(recent) == 2:
            globals_.add(".".join(recent))
        if op.name == "STOP":
            break
    return strings, globals_


def scan_torch_file(path: Path) -> tuple[set[str], set[str]]:
    """(strings, globals) of the object pickle of a torch.save file, zip or legacy format, without loading it."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
                if not names:
                    raise CheckpointError(f"{path}: a zip file but not a torch checkpoint (no data.pkl)")
                return _pickle_scan(io.BytesIO(z.read(names[0])))
        with open(path, "rb") as f:  # legacy format: magic number, protocol, sys info, then the object
            for _ in range(3):
                _pickle_scan(f)
            return _pickle_scan(f)
    except CheckpointError:
        raise
    except Exception as e:  # pickletools raises ValueError on garbage; zipfile BadZipFile; EOF on truncation
        raise CheckpointError(
            f"{path}: not a torch checkpoint that can be inspected ({type(e).__name__}: {e}); expected an official "
            "MSM-MAE .pth, an official MAE-AST .pt, or a hear_maeast .safetensors file"
        ) from e


def detect_format(path) -> str:
    """"safetensors", "msm-mae" or "mae-ast", by content."""
    path = Path(path)
    if is_safetensors(path):
        return "safetensors"
    strings, _ = scan_torch_file(path)
    if "post_extract_proj.weight" in strings or "enc_sine_pos_embed.pe" in strings:
        return MAE_AST
    if "patch_embed.proj.weight" in strings:
        return MSM_MAE
    raise CheckpointError(
        f"{path}: a torch checkpoint, but neither an official MSM-MAE file (no 'patch_embed.proj.weight') nor an "
        "official MAE-AST file (no 'post_extract_proj.weight'); hear_maeast cannot tell what model it holds"
    )


# ---- entry point -------------------------------------------------------------------------------
def load_official(path, trust_pickle: bool = False, input_frames: int | None = None,
                  patch_size=None) -> MaskedAutoencoder:
    """An official checkpoint (or a hear_maeast safetensors file) -> MaskedAutoencoder, eval mode.

    input_frames: MSM-MAE: the input length T in frames (normally read from the tensors or the folder name);
      MAE-AST: the frames per encoder chunk (default 1024 = 10.24 s; up to the file's position table).
    patch_size: (mel bins, frames) as "16x16" or [16, 16]; a cross-check, or the patch/frame choice for MAE-AST
      files whose configuration lacks the kernel sizes.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    patch = _parse_patch(patch_size) if patch_size is not None else None
    if input_frames is not None and (not isinstance(input_frames, int) or input_frames <= 0):
        raise CheckpointError(f"input_frames={input_frames!r}: expected a positive int (frames of 10 ms)")
    kind = detect_format(path)
    if kind == "safetensors":
        model = load_checkpoint(path)
        wrong = []
        if input_frames is not None and input_frames != model.cfg.input_frames:
            wrong.append(f"input_frames={input_frames} (the file has {model.cfg.input_frames})")
        if patch is not None and patch != model.cfg.patch_size:
            wrong.append(f"patch_size={patch} (the file has {model.cfg.patch_size})")
        if wrong:
            raise CheckpointError(f"{path}: a hear_maeast checkpoint, whose sizes are fixed; cannot apply {wrong}")
        return model
    if kind == MSM_MAE:
        ckpt = _load_msm_mae_file(path, trust_pickle)
        model = msm_mae_model(ckpt, source=str(path), folder=path.parent.name, input_frames=input_frames,
                              patch_size=patch)
    else:
        ckpt = _load_fairseq_file(path, trust_pickle)
        model = mae_ast_model(ckpt, source=str(path), input_frames=input_frames, patch_size=patch)
    model.provenance = {"converted_from": path.name, "official_format": kind, "licence": LICENCES[kind]}
    return model.eval()


def _parse_patch(value) -> tuple[int, int]:
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", value)
        if m:
            return int(m[1]), int(m[2])
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise CheckpointError(f"patch_size={value!r}: expected mel bins x frames, e.g. '16x16' or [16, 16]")


# ---- MSM-MAE -----------------------------------------------------------------------------------
def _load_msm_mae_file(path: Path, trust_pickle: bool) -> dict:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # MAE's training script stores its args there
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refusal (an UnpicklingError) or a damaged file
        if not trust_pickle:
            raise CheckpointError(
                f"{path}: an MSM-MAE checkpoint that torch.load(weights_only=True) refuses ({e}). It references "
                "objects beyond tensors and argparse.Namespace; if you trust the file, pass trust_pickle=True "
                "(CLI: --trust-pickle), ideally once, with `hear-maeast convert --trust-pickle SRC DST.safetensors`"
            ) from e
    return torch.load(path, map_location="cpu", weights_only=False)


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


def msm_mae_model(ckpt: dict, source: str, folder: str | None = None, input_frames: int | None = None,
                  patch_size: tuple[int, int] | None = None) -> MaskedAutoencoder:
    """An unpickled official MSM-MAE checkpoint (the dict, or its 'model' state dict) -> MaskedAutoencoder."""
    sd = ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt else ckpt
    if not isinstance(sd, dict) or "patch_embed.proj.weight" not in sd or "pos_embed" not in sd:
        raise CheckpointError(f"{source}: no MSM-MAE state dict (expected 'patch_embed.proj.weight' and 'pos_embed')")
    w = sd["patch_embed.proj.weight"]
    if w.ndim != 4 or w.shape[1] != 1:
        raise CheckpointError(f"{source}: patch_embed.proj.weight has shape {tuple(w.shape)}; expected [D, 1, ph, pw]")
    dim, ph, pw = w.shape[0], w.shape[2], w.shape[3]
    cls = "cls_token" in sd
    n_tokens = sd["pos_embed"].shape[1] - int(cls)
    # sizes: explicit options, then the folder name, then the official runtime's 80 mel bins
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
    elif frames is None:  # T from the position table: N = (F / ph) * (T / pw)
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
    depth, dec_depth = _count_blocks(sd, "blocks."), _count_blocks(sd, "decoder_blocks.")
    dec_dim = sd["decoder_embed.weight"].shape[0] if "decoder_embed.weight" in sd else sd["mask_token"].shape[-1]
    mlp_ratio = sd["blocks.0.mlp.fc1.weight"].shape[0] / dim if depth else 4.0
    base = get_preset("msm-mae-base-80x208p16x16")
    standard = (dim, depth, dec_dim, dec_depth, mlp_ratio) == (768, 12, 384, 4, 4.0)
    size = "base" if standard else f"d{dim}x{depth}"
    cfg = base.replace(
        name=f"msm-mae-{size}-{n_mels}x{frames}p{ph}x{pw}", n_mels=n_mels, input_frames=frames, patch_size=(ph, pw),
        cls_token=cls, dim=dim, depth=depth, heads=_heads(dim), mlp_ratio=mlp_ratio,
        decoder_dim=dec_dim, decoder_depth=dec_depth, decoder_heads=_heads(dec_dim, decoder=True),
        norm_mean=MSM_MAE_NORM_STATS[0], norm_std=MSM_MAE_NORM_STATS[1],
    )
    _validate(cfg, source)
    tensors, unknown = {}, []
    for key, value in sd.items():
        ours = _rename(key, _MSM_RENAMES)
        if ours is None:
            unknown.append(key)
        else:
            tensors[ours] = value.reshape(dim, ph * pw) if key == "patch_embed.proj.weight" else value
    model = MaskedAutoencoder(cfg)
    _load(model, tensors, unknown, source, _msm_official_names(model))
    # The table is 2-D sin-cos over the grid: a wrong F x T split of the same token count shows here.
    expected = sincos_2d(dim, cfg.grid)
    if (model.pos_embed[0, int(cls):] - expected).abs().max() > 1e-4:
        raise CheckpointError(
            f"{source}: pos_embed is not the 2-D sin-cos table of a {cfg.grid[0]}x{cfg.grid[1]} patch grid "
            f"(input {n_mels}x{frames}, patches {ph}x{pw}); name the folder <F>x<T>p<ph>x<pw>_<tag> as the "
            "authors did, or pass input_frames"
        )
    return model


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
def _load_fairseq_file(path: Path, trust_pickle: bool) -> dict:
    if not trust_pickle:
        _, globals_ = scan_torch_file(path)
        foreign = sorted(g for g in globals_ if not g.startswith(("torch.", "collections.OrderedDict", "_codecs.")))
        raise CheckpointError(
            f"{path}: an official MAE-AST (fairseq) checkpoint. Its configuration is pickled Python objects "
            f"({', '.join(foreign[:6]) or 'omegaconf configs'}), and unpickling a file can run arbitrary code, so "
            "hear_maeast does not open it unless you say you trust it: load_model(path, trust_pickle=True) or "
            "model options {\"trust_pickle\": true}. Better, convert it once to a pickle-free file: "
            "`hear-maeast convert --trust-pickle SRC DST.safetensors`, then use DST.safetensors everywhere."
        )
    try:
        import omegaconf  # noqa: F401  (fairseq pickles its configuration as omegaconf objects)
    except ImportError:
        raise CheckpointError(
            f"{path}: reading an official MAE-AST checkpoint needs omegaconf (its configuration is pickled as "
            "omegaconf objects): pip install omegaconf   (or: pip install 'hear_maeast[official]')"
        ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as e:
        raise CheckpointError(f"{path}: the checkpoint pickles objects from a module that is not installed ({e})") from e


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
    sd = ckpt["model"]
    cfg_all = _plain(ckpt.get("cfg"))
    mcfg, tcfg = _plain(cfg_all.get("model")), _plain(cfg_all.get("task"))
    if "post_extract_proj.weight" not in sd:
        raise CheckpointError(f"{source}: no 'post_extract_proj.weight'; not an MAE-AST state dict")
    dim, patch_dim = sd["post_extract_proj.weight"].shape
    # patch or frame: the official kernel sizes (MAE_AST_Config fields; default 16 x 16), or the option
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
    n_mels = int(tcfg.get("feature_dim", 128))
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
    differ += [f"{name}={have!r} (supported: {want!r})" for name, have, want in checks if have != want]
    depth, dec_depth = _count_blocks(sd, "encoder.layers."), _count_blocks(sd, "decoder.layers.")
    dec_dim = sd["decoder_mask_emb"].shape[0] if "decoder_mask_emb" in sd else dim
    ffn = sd["encoder.layers.0.fc1.weight"].shape[0] if depth else 4 * dim
    if dec_dim != dim and "post_enc_proj.weight" not in sd:
        differ.append(f"decoder width {dec_dim} differs from the encoder's {dim} without post_enc_proj")
    if dec_dim == dim and "post_enc_proj.weight" in sd:
        differ.append("post_enc_proj between equal widths (use_post_enc_proj=True) is not supported")
    if dec_depth and sd["decoder.layers.0.fc1.weight"].shape[0] / dec_dim != ffn / dim:
        differ.append("the decoder's FFN width is not the encoder's ratio (official: encoder_ffn_embed_dim for both)")
    for name, have in [("encoder_layers", depth), ("decoder_layers", dec_depth), ("encoder_embed_dim", dim),
                       ("encoder_ffn_embed_dim", ffn)]:
        if name in mcfg and int(mcfg[name]) != have:
            differ.append(f"cfg.model.{name}={mcfg[name]} but the tensors have {have}")
    if differ:
        raise CheckpointError(f"{source}: unsupported or inconsistent MAE-AST checkpoint: " + "; ".join(differ))
    frame = ph == n_mels
    kind = "frame" if frame else "patch"
    base = get_preset(f"mae-ast-{kind}-12l")
    heads = int(mcfg.get("encoder_attention_heads", 12))
    # MAE_AST_Config.layer_norm_first: True is a pre-norm stack whose final LayerNorm follows the blocks
    norm_position = "pre" if bool(mcfg.get("layer_norm_first", False)) else "post"
    mask_kind = "chunk" if tcfg.get("mask_type", "chunk_mask" if not frame else "random_mask") == "chunk_mask" else "random"
    ratio = float(mcfg.get("random_mask_prob", base.mask_ratio))  # "retain_spans" uses 1.45 for ~75 %
    mask_ratio = ratio if 0 <= ratio < 1 else base.mask_ratio
    name = f"mae-ast-{kind}-{depth}l" + ("" if (dim, ffn, norm_position) == (768, 3072, "post") else f"-d{dim}-{norm_position}norm")
    bn_mean = sd["batch_norm.running_mean"].double().reshape(-1) if "batch_norm.running_mean" in sd else None
    bn_var = sd["batch_norm.running_var"].double().reshape(-1) if "batch_norm.running_var" in sd else None
    if bn_mean is None or bn_var is None or bn_mean.numel() != 1 or bn_var.numel() != 1:
        raise CheckpointError(f"{source}: expected batch_norm.running_mean and running_var of one channel each")
    if not float(bn_var) + BN_EPS > 0:  # also NaN
        raise CheckpointError(f"{source}: batch_norm.running_var is {float(bn_var)}; a variance must be >= 0")
    cfg = base.replace(
        name=name, n_mels=n_mels, patch_size=(ph, pw), input_frames=input_frames or base.input_frames,
        dim=dim, depth=depth, heads=heads, mlp_ratio=ffn / dim, norm_position=norm_position,
        decoder_dim=dec_dim, decoder_depth=dec_depth, decoder_heads=heads, mask_kind=mask_kind,
        mask_ratio=mask_ratio,
        norm_mean=float(bn_mean), norm_std=math.sqrt(float(bn_var) + BN_EPS), norm_scale=0.5,
    )
    _validate(cfg, source)
    n = cfg.num_patches
    tensors, unknown = {}, []
    for key, value in sd.items():
        if key in MAE_AST_UNUSED or key.startswith("batch_norm.running_"):
            continue
        if key in ("enc_sine_pos_embed.pe", "dec_sine_pos_embed.pe"):
            if value.shape[1] < n:
                raise CheckpointError(f"{source}: {key} has {value.shape[1]} positions; input_frames="
                                      f"{cfg.input_frames} needs {n}")
            tensors["pos_embed" if key.startswith("enc") else "decoder_pos_embed"] = value[:, :n]
            continue
        if key == "decoder_mask_emb":
            tensors["mask_token"] = value.reshape(1, 1, -1)
            continue
        m = re.fullmatch(r"(encoder|decoder)\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key)
        if m:
            continue  # fused below
        ours = _mae_ast_rename(key)
        if ours is None:
            unknown.append(key)
        else:
            tensors[ours] = value
    for side, layers in (("encoder", depth), ("decoder", dec_depth)):
        for i in range(layers):
            pre = f"{side}.layers.{i}.self_attn."
            parts = {f"{p}_proj.{t}": sd.get(f"{pre}{p}_proj.{t}") for p in "qkv" for t in ("weight", "bias")}
            if any(v is None for v in parts.values()):
                continue  # reported as missing by _load
            tensors[f"{side}.blocks.{i}.attn.qkv.weight"] = torch.cat([parts[f"{p}_proj.weight"] for p in "qkv"])
            for p in "qkv":
                tensors[f"{side}.blocks.{i}.attn.{p}_bias"] = parts[f"{p}_proj.bias"]
    model = MaskedAutoencoder(cfg)
    _load(model, tensors, unknown, source, {})
    return model


# ---- shared ------------------------------------------------------------------------------------
def _validate(cfg, source: str) -> None:
    try:
        cfg.validate()
    except ValueError as e:
        raise CheckpointError(f"{source}: {e}") from e


def _load(model: MaskedAutoencoder, tensors: dict, unknown: list[str], source: str, official_names: dict) -> None:
    """Strict load with one message listing every difference (official names where we know them)."""
    expected = model_state(model)
    missing = sorted(official_names.get(k, k) for k in set(expected) - set(tensors))
    shapes = [f"{official_names.get(k, k)}: file {tuple(tensors[k].shape)} vs expected {tuple(v.shape)}"
              for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    extra = sorted(set(tensors) - set(expected))  # e.g. a decoder_cls the configuration has no head for
    parts = [f"unknown keys {sorted(unknown)[:10]}" if unknown else "",
             f"missing keys {missing[:10]}" if missing else "",
             f"unexpected keys {extra[:10]}" if extra else "",
             f"wrong shapes {shapes[:10]}" if shapes else ""]
    if any(parts):
        raise CheckpointError(f"{source}: the checkpoint does not match model {model.cfg.name!r}: "
                              + "; ".join(p for p in parts if p))
    # abs().amax() propagates NaN and Inf and is several times faster than isfinite().all() on big tensors
    bad = [k for k, v in tensors.items() if v.is_floating_point() and v.numel() and not torch.isfinite(v.abs().amax())]
    if bad:
        raise CheckpointError(f"{source}: non-finite values (NaN/Inf) in {bad[:8]}")
    model.load_state_dict({k: v.float().contiguous() for k, v in tensors.items()}, strict=False)
