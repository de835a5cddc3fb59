"""The checkpoint format: one safetensors file, no pickle, so loading an untrusted file cannot run code.

tensors   the model's state dict (front-end filterbanks excluded: they follow from the configuration)
metadata  "format":     "hear_maeast/1"
          "config":     the ModelConfig as JSON: sizes and the normalisation statistics (their one record; files
                        of version 0.1.0 also hold them as a tensor `frontend.norm_stats`, still read)
          "provenance": JSON: package version, git commit, command, data, steps ... (free-form)
Files are written atomically: to a temporary file in the same folder, fsync'd, then renamed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from hear_maeast.config import ModelConfig
from hear_maeast.errors import BadInput, CheckpointError, CheckpointNotFound  # noqa: F401 (their home is errors)
from hear_maeast.files import atomic_write
from hear_maeast.model import MaskedAutoencoder

FORMAT = "hear_maeast/1"
_DERIVED = ("frontend.features.",)  # buffers rebuilt from the configuration
LEGACY_NORM_STATS = "frontend.norm_stats"  # version 0.1.0 kept the statistics in this tensor too


def model_state(model: MaskedAutoencoder) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint stores (the configuration holds everything else)."""
    return {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor) and not k.startswith(_DERIVED)}


def save_checkpoint(model: MaskedAutoencoder, path, provenance: dict | None = None, dtype=None) -> Path:
    """Write `model` to `path` (a .safetensors file). dtype=torch.float16 halves the file (weights only)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model_state(model).items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    metadata = {"format": FORMAT, "config": model.cfg.to_json(), "provenance": json.dumps(provenance or {})}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return Path(path)


def is_safetensors(path: Path) -> bool:
    """Content sniffing: 8-byte little-endian header length (safetensors caps it at 100 MB), then a JSON object;
    a truncated file still sniffs as one, so that reading it says so."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= 100_000_000


def read_header(path) -> tuple[dict, dict[str, tuple[int, ...]]]:
    """(metadata, {tensor name: shape}) from the file's header alone: nothing is allocated for the tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e}); was it truncated or corrupted?") from e


def read_metadata(path) -> dict:
    return read_header(path)[0]


def _config(meta: dict, path: Path) -> ModelConfig:
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(
            f"{path}: a safetensors file without hear_maeast metadata (format={meta.get('format')!r}); "
            "write checkpoints with `hear-maeast pretrain` or `hear-maeast convert`"
        )
    try:
        return ModelConfig.from_json(meta["config"])
    except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
        raise CheckpointError(f"{path}: invalid model configuration in metadata: {e}") from e


def _provenance(meta: dict, path: Path) -> dict:
    try:
        provenance = json.loads(meta.get("provenance") or "{}")
    except ValueError as e:
        raise CheckpointError(f"{path}: its provenance metadata is not JSON ({e}); rewrite the file with "
                              "`hear-maeast convert` from a good copy") from e
    if not isinstance(provenance, dict):
        raise CheckpointError(f"{path}: its provenance metadata is {type(provenance).__name__}, not a JSON object")
    return provenance


def size_claims(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The tensors whose shapes pin every size that costs memory (widths, MLP widths, token count), for checking
    a file's header before the model is built; the full comparison follows once it is (`load_state`)."""
    cls, n, hidden = int(cfg.cls_token), cfg.num_patches, lambda d: int(d * cfg.mlp_ratio)
    claims = {"patch_embed.weight": (cfg.dim, cfg.patch_dim), "pos_embed": (1, cls + n, cfg.dim),
              "mask_token": (1, 1, cfg.decoder_dim), "decoder_pos_embed": (1, cls + n, cfg.decoder_dim),
              "encoder.blocks.0.mlp.fc1.weight": (hidden(cfg.dim), cfg.dim)}
    if cfg.decoder_depth:
        claims["decoder.blocks.0.mlp.fc1.weight"] = (hidden(cfg.decoder_dim), cfg.decoder_dim)
    return claims


def _check_header(cfg: ModelConfig, shapes: dict[str, tuple], path: Path) -> None:
    """Refuse a file whose configuration claims more than its tensors hold, before allocating the model."""
    missing, extra = [], []
    for side, depth in (("encoder", cfg.depth), ("decoder", cfg.decoder_depth)):
        found = {int(k.split(".")[2]) for k in shapes if k.startswith(f"{side}.blocks.") and k.split(".")[2].isdigit()}
        missing += [f"{side}.blocks.{i}" for i in range(min(depth, 10**3)) if i not in found]
        extra += [f"{side}.blocks.{i}" for i in sorted(found) if i >= depth]
    wrong = [f"{k}: file {shapes.get(k, 'absent')} vs expected {v}" for k, v in size_claims(cfg).items()
             if shapes.get(k) != v]
    parts = [f"missing blocks {missing[:10]}{' ...' if len(missing) > 10 else ''}" if missing else "",
             f"unexpected blocks {extra[:10]}" if extra else "", f"wrong shapes {wrong[:10]}" if wrong else ""]
    if any(parts):
        raise CheckpointError(f"{path}: the file does not match model {cfg.name!r} (checked before building it): "
                              + "; ".join(p for p in parts if p))


def load_checkpoint(path, map_location="cpu") -> MaskedAutoencoder:
    """Build the model described by the file's metadata and load its tensors (strictly).

    The header's shapes are compared with the sizes the configuration claims before any tensor is read or the model
    is built, so a small file whose metadata claims a huge model costs nothing.
    """
    path = Path(path)
    meta, shapes = read_header(path)
    cfg = _config(meta, path)
    provenance = _provenance(meta, path)
    _check_header(cfg, shapes, path)
    try:
        tensors = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: cannot read tensors ({e}); the file may be truncated") from e
    model = MaskedAutoencoder(cfg)
    _norm_stats_tensor(model, tensors.pop(LEGACY_NORM_STATS, None), path)
    load_state(model, tensors, source=str(path))
    model.provenance = provenance
    return model


def _norm_stats_tensor(model: MaskedAutoencoder, stats: torch.Tensor | None, path: Path) -> None:
    """A file of version 0.1.0: the tensor is what that version normalised with (equal to the config it wrote)."""
    if stats is None:
        return
    if stats.shape != (2,) or not stats.is_floating_point():
        raise CheckpointError(f"{path}: {LEGACY_NORM_STATS} has shape {tuple(stats.shape)}; expected [mean, std]")
    if torch.equal(stats.float(), torch.tensor([model.cfg.norm_mean, model.cfg.norm_std])):
        return  # the usual case: 0.1.0 wrote the statistics in force into the config as well
    try:
        model.set_norm_stats(*stats.double().tolist())
    except ValueError as e:
        raise CheckpointError(f"{path}: {LEGACY_NORM_STATS}: {e}") from e


def compare_shapes(model: MaskedAutoencoder, found: dict[str, tuple], source: str, unknown=(),
                   names: dict[str, str] | None = None) -> None:
    """Raise one CheckpointError listing every difference between a file's tensors (name -> shape) and the
    model's; `unknown` are file keys no mapping knows, `names` our names -> the file's, for messages."""
    names = names or {}
    expected = {k: tuple(v.shape) for k, v in model_state(model).items()}
    missing = sorted(names.get(k, k) for k in set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    shapes = [f"{names.get(k, k)}: file {tuple(found[k])} vs expected {v}"
              for k, v in expected.items() if k in found and tuple(found[k]) != v]
    parts = [f"unknown keys {sorted(unknown)[:10]}" if unknown else "",
             f"missing keys {missing[:10]}" if missing else "",
             f"unexpected keys {extra[:10]}" if extra else "",
             f"wrong shapes {shapes[:10]}" if shapes else ""]
    if any(parts):
        raise CheckpointError(f"{source}: the file does not match model {model.cfg.name!r}: "
                              + "; ".join(p for p in parts if p))


def load_state(model: MaskedAutoencoder, tensors: dict[str, torch.Tensor], source: str, unknown=(),
               names: dict[str, str] | None = None) -> None:
    """Fill `model` with `tensors`, strictly: every difference is listed in one message, NaN or Inf is refused."""
    compare_shapes(model, {k: tuple(v.shape) for k, v in tensors.items()}, source, unknown, names)
    # abs().amax() propagates NaN and Inf and is several times faster than isfinite().all() on big tensors
    bad = [k for k, v in tensors.items() if v.is_floating_point() and v.numel() and not torch.isfinite(v.abs().amax())]
    if bad:
        raise CheckpointError(f"{source}: non-finite values (NaN/Inf) in {bad[:8]}")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, strict=False)
