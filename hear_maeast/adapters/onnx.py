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
import warnings
from pathlib import Path

import torch

from hear_maeast.adapters import require
from hear_maeast.checkpoint import CheckpointError, CheckpointNotFound
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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(out))
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
    """An exported graph as a HEAR model. layer: must be the exported one (-1 = the last block)."""
    ort = require("onnxruntime", "onnx")
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFound(f"ONNX file not found: {path}")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
        raise CheckpointError(f"{path}: not a readable ONNX file ({' '.join(str(e).split())[:200]})") from e
    meta = session.get_modelmeta().custom_metadata_map
    if META_CONFIG not in meta:
        raise CheckpointError(f"{path}: an ONNX graph without hear_maeast metadata; export one with "
                              "`hear-maeast export CKPT --onnx OUT.onnx`")
    cfg = ModelConfig.from_json(meta[META_CONFIG])
    exported = int(meta[META_LAYER])
    if resolved_layer(layer, cfg.depth) != exported:
        raise BadInput(f"{path}: exported for layer {exported}, asked for layer {layer}; export it again with "
                       f"`hear-maeast export CKPT --onnx OUT --layer {layer}`")
    return OnnxModel(cfg, session, exported, str(path))
