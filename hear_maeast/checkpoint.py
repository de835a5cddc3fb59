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
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hear_maeast.config import ModelConfig
from hear_maeast.errors import BadInput
from hear_maeast.model import MaskedAutoencoder

FORMAT = "hear_maeast/1"
_DERIVED = ("frontend.features.",)  # buffers rebuilt from the configuration
LEGACY_NORM_STATS = "frontend.norm_stats"  # version 0.1.0 kept the statistics in this tensor too


class CheckpointError(BadInput):
    """A checkpoint that cannot be loaded (exit 2 on the command line); the message names the file and what is wrong."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """Also a FileNotFoundError, for callers that catch that."""


def model_state(model: MaskedAutoencoder) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint stores (the configuration holds everything else)."""
    return {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor) and not k.startswith(_DERIVED)}


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), fsync, then rename over `path`: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; checkpoints are shared like any other file
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(model: MaskedAutoencoder, path, provenance: dict | None = None, dtype=None) -> Path:
    """Write `model` to `path` (a .safetensors file). dtype=torch.float16 halves the file (weights only)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model_state(model).items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    metadata = {"format": FORMAT, "config": model.cfg.to_json(), "provenance": json.dumps(provenance or {})}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return Path(path)


def is_safetensors(path: Path) -> bool:
    """Content sniffing: 8-byte little-endian header length, then a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < os.path.getsize(path)


def read_metadata(path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e}); was it truncated or corrupted?") from e


def load_checkpoint(path, map_location="cpu") -> MaskedAutoencoder:
    """Build the model described by the file's metadata and load its tensors (strictly)."""
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(
            f"{path}: a safetensors file without hear_maeast metadata (format={meta.get('format')!r}); "
            "write checkpoints with `hear-maeast pretrain` or `hear-maeast convert`"
        )
    try:
        cfg = ModelConfig.from_dict(json.loads(meta["config"]))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid model configuration in metadata: {e}") from e
    try:
        tensors = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: cannot read tensors ({e}); the file may be truncated") from e
    model = MaskedAutoencoder(cfg)
    _norm_stats_tensor(model, tensors.pop(LEGACY_NORM_STATS, None), path)
    load_state(model, tensors, source=str(path))
    model.provenance = json.loads(meta.get("provenance") or "{}")
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


def load_state(model: MaskedAutoencoder, tensors: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict with a message that lists every difference between the file and the configuration."""
    expected = model_state(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = [
        f"{k}: file {tuple(tensors[k].shape)} vs config {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''}" if missing else "",
                 f"unexpected {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}" if unexpected else "",
                 f"wrong shapes {shapes[:8]}" if shapes else ""]
        raise CheckpointError(
            f"{source}: tensors do not match configuration {model.cfg.name!r}: " + "; ".join(p for p in parts if p)
        )
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{source}: non-finite values (NaN/Inf) in {bad[:8]}")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, strict=False)
