"""ONNX: the per-chunk encoder as a graph (`hear-maeast export CKPT --onnx OUT.onnx`), run by onnxruntime under the
HEAR API's own chunking and pooling.

The graph: normalised spectrogram chunk `spec` [B, F, T] -> `tokens` [B, N, D], the output of the exported layer
(what `MaskedAutoencoder.encode(spec, layer)` returns). Batch is dynamic; time is dynamic for 1-D positions
(MAE-AST: any whole number of patch widths up to `input_frames`) and fixed for 2-D positions (MSM-MAE: its grid of
`input_frames`, which the HEAR API pads every chunk to). The model's configuration and layer are stored in the
graph's metadata, so the file alone is enough to run it.

The front end (waveform -> log-mel / Kaldi fbank, normalised) stays in torch, outside the graph: the HEAR API
computes it a segment at a time across chunk boundaries (MSM-MAE's centred STFT reflects only at the clip's edges)
and then cuts the spectrogram into chunks and shifted passes, so a graph that took waveform chunks could not
reproduce the API's embeddings. It has no weights and no randomness (no dithering: torchaudio's fbank dither is 0).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from hear_maeast.adapters import require
from hear_maeast.checkpoint import CheckpointError, CheckpointNotFound
from hear_maeast.files import atomic_write, check_output, open_regular
from hear_maeast.config import ModelConfig
from hear_maeast.errors import BadInput, WorkFailed
from hear_maeast.frontend import FrontEnd
from hear_maeast.model import ALL_LAYERS, MAX_BATCH, MaskedAutoencoder

META_CONFIG, META_LAYER, META_SOURCE = "hear_maeast/config", "hear_maeast/layer", "hear_maeast/source"
OPSET = 18


class _ChunkEncoder(torch.nn.Module):
    def __init__(self, model: MaskedAutoencoder, layer: int):
        super().__init__()
        self.model, self.layer = model, layer

    def forward(self, spec: torch.Tensor) -> torch.Tensor:  # [B, F, T] -> [B, N, D]
        return self.model.encode(spec, self.layer)


def resolved_layer(layer: int, depth: int) -> int:
    """1-based block index (-1 = the last), checked as load_model checks it."""
    if not isinstance(layer, int) or not (layer == -1 or 1 <= layer <= depth):
        raise BadInput(f"layer={layer!r}: expected an int in 1..{depth} or -1 (last)")
    return depth if layer == -1 else layer


def export_onnx(model: MaskedAutoencoder, out, layer: int | None = None) -> Path:
    """Write the per-chunk encoder of `model` at `layer` (default: the model's) to `out` (.onnx); returns the path."""
    require("onnxscript", "onnx")
    cfg = model.cfg
    layer = resolved_layer(model.layer if layer is None else layer, cfg.depth)
    out = Path(out)
    source = [model.source] if getattr(model, "source", "") else []
    check_output(out, source)  # before the export's work (atomic_write checks again as it writes)
    device = model.device
    model.cpu().eval()  # exported on the CPU, put back where it was below
    spec = torch.zeros(2, cfg.n_mels, cfg.input_frames)  # [B, F, T]
    axes = {0: torch.export.Dim("batch", min=1, max=4096)}
    if not cfg.fixed_length:  # 1-D positions: any whole number of tokens up to one chunk
        pw = cfg.patch_size[1]
        axes[2] = pw * torch.export.Dim("time_tokens", min=1, max=cfg.input_frames // pw)
    try:
        with torch.no_grad(), _quiet():
            program = torch.onnx.export(_ChunkEncoder(model, layer).eval(), (spec,), input_names=["spec"],
                                        output_names=["tokens"], dynamic_shapes=(axes,), dynamo=True,
                                        opset_version=OPSET, verbose=False)
    finally:
        model.to(device)
    program.model.metadata_props.update({META_CONFIG: cfg.to_json(), META_LAYER: str(layer),
                                         META_SOURCE: str(getattr(model, "source", "") or "")})
    atomic_write(out, lambda tmp: program.save(str(tmp)), inputs=source)  # never a half file, never the checkpoint
    return out


@contextlib.contextmanager
def _quiet():
    """The exporter's notices (torchvision ops it skips, deprecations inside torch) are not the user's to act on."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


class OnnxModel(MaskedAutoencoder):
    """A MaskedAutoencoder whose encoder is an onnxruntime session: the HEAR API runs on it unchanged (front end in
    torch, chunking, passes and pooling in Python). No torch weights: only what the HEAR API reads of a model is
    built (cfg, frontend, layer, max_batch, source, encode)."""

    def __init__(self, cfg: ModelConfig, session, layer: int, source: str):
        torch.nn.Module.__init__(self)  # not MaskedAutoencoder.__init__: the session replaces every weight
        self.cfg, self.frontend = cfg, FrontEnd(cfg)
        self.session, self.onnx_layer, self.source, self.provenance = session, layer, source, {}
        self.layer, self.max_batch = (-1 if layer == cfg.depth else layer), MAX_BATCH
        self.eval()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _apply(self, fn, recurse=True):
        return self  # .to(device) / .half(): the session runs on onnxruntime's CPU in float32, and its front end with it

    def encode(self, spec: torch.Tensor, layer: int = -1) -> torch.Tensor:  # [B, F, T] -> [B, N, D]
        if layer == ALL_LAYERS:
            raise BadInput(f"{self.source}: an exported graph holds one layer ({self.onnx_layer}); every layer's "
                           "hidden states need the checkpoint itself")
        if resolved_layer(layer, self.cfg.depth) != self.onnx_layer:
            raise BadInput(f"{self.source}: exported for layer {self.onnx_layer}, asked for layer {layer}; export it "
                           f"again with `hear-maeast export CKPT --onnx OUT --layer {layer}`")
        try:
            (tokens,) = self.session.run(["tokens"], {"spec": spec.detach().cpu().float().contiguous().numpy()})
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types; one line naming the file
            raise WorkFailed(f"{self.source}: onnxruntime failed on a chunk of shape {tuple(spec.shape)}: {e}") from e
        return torch.from_numpy(tokens)


def load_onnx(path, layer: int = -1, threads: int | None = None) -> OnnxModel:
    """An exported graph as a HEAR model. layer: must be the exported one (-1 = the last block). The graph is checked
    against the configuration in its metadata (input and output shapes, then one chunk run) before it is returned:
    a truncated, foreign or edited file is a CheckpointError naming it, never a wrong embedding later."""
    ort = require("onnxruntime", "onnx")
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFound(f"ONNX file not found: {path}")
    os.close(open_regular(path))  # a pipe, a device or a folder: refused before onnxruntime reads a byte
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
        raise CheckpointError(f"{path}: not a readable ONNX file ({' '.join(str(e).split())[:200]}); export it "
                              "again with `hear-maeast export CKPT --onnx OUT.onnx`") from e
    meta = session.get_modelmeta().custom_metadata_map
    if META_CONFIG not in meta:
        raise CheckpointError(f"{path}: an ONNX graph without hear_maeast metadata; export one with "
                              "`hear-maeast export CKPT --onnx OUT.onnx`")
    try:
        cfg = ModelConfig.from_json(meta[META_CONFIG])
        exported = int(meta.get(META_LAYER, ""))
    except ValueError as e:  # JSON, a configuration or a layer that does not parse (BadInput is a ValueError)
        raise CheckpointError(f"{path}: its hear_maeast metadata is damaged ({' '.join(str(e).split())[:200]}); "
                              "export it again with `hear-maeast export CKPT --onnx OUT.onnx`") from None
    if not 1 <= exported <= cfg.depth:
        raise CheckpointError(f"{path}: its metadata names layer {exported} of a {cfg.depth}-block model; export it "
                              "again with `hear-maeast export CKPT --onnx OUT.onnx`")
    _check_graph(session, cfg, path)
    if resolved_layer(layer, cfg.depth) != exported:
        raise BadInput(f"{path}: exported for layer {exported}, asked for layer {layer}; export it again with "
                       f"`hear-maeast export CKPT --onnx OUT --layer {layer}`")
    return OnnxModel(cfg, session, exported, str(path))


def _check_graph(session, cfg: ModelConfig, path: Path) -> None:
    """The graph is the per-chunk encoder of `cfg`: spec [B, n_mels, T] -> tokens [B, N, dim], and one chunk of the
    smallest length it takes gives the token count `cfg` implies (a graph of another configuration, or one whose
    metadata was copied from another export, fails here)."""
    again = "export the checkpoint again with `hear-maeast export CKPT --onnx OUT.onnx`"
    ins, outs = session.get_inputs(), session.get_outputs()
    if [i.name for i in ins] != ["spec"] or [o.name for o in outs] != ["tokens"] or len(ins[0].shape) != 3 \
            or len(outs[0].shape) != 3:
        raise CheckpointError(f"{path}: not a hear_maeast per-chunk encoder (inputs {[(i.name, i.shape) for i in ins]}, "
                              f"outputs {[(o.name, o.shape) for o in outs]}); {again}")
    frames = cfg.input_frames if cfg.fixed_length else cfg.patch_size[1]  # one chunk, or one token of time
    fg, pw = cfg.grid[0], cfg.patch_size[1]
    if ins[0].shape[1] != cfg.n_mels or outs[0].shape[2] != cfg.dim:
        raise CheckpointError(f"{path}: the graph takes {ins[0].shape[1]} mel bins and gives {outs[0].shape[2]}-d "
                              f"tokens, but its metadata describes {cfg.name} ({cfg.n_mels} bins, {cfg.dim}-d): the "
                              f"metadata is another model's; {again}")
    try:
        (tokens,) = session.run(["tokens"], {"spec": np.zeros((1, cfg.n_mels, frames), np.float32)})
    except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
        raise CheckpointError(f"{path}: the graph does not run on one chunk of {cfg.name} ([1, {cfg.n_mels}, {frames}]:"
                              f" {' '.join(str(e).split())[:200]}); {again}") from None
    expected = (1, fg * (frames // pw), cfg.dim)
    if tokens.shape != expected or not np.isfinite(tokens).all():
        raise CheckpointError(f"{path}: one chunk gives tokens {tokens.shape}, but {cfg.name} gives {expected} "
                              f"(finite): the graph and its metadata are of different models; {again}")
