"""ONNX: the model as two graphs (`hear-maeast export [CKPT] --onnx OUT.onnx`), run by onnxruntime under the HEAR
API's own chunking and pooling, in torch (`load_onnx`) or without it (hear_maeast.onnx_runtime).

The encoder (OUT.onnx): normalised spectrogram chunk `spec` [B, F, T] -> `tokens` [B, N, D], the output of the
exported layer (what `MaskedAutoencoder.encode(spec, layer)` returns). Batch is dynamic; time is dynamic for 1-D
positions (MAE-AST: any whole number of patch widths up to `input_frames`) and fixed for 2-D positions (MSM-MAE: its
grid of `input_frames`, which the HEAR API pads every chunk to). The model's configuration and layer are stored in
the graph's metadata, so the file alone is enough to run it.

The front end (OUT.frontend.onnx, beside it): a waveform segment `wav` [B, S] -> `spec` [B, F, 1 + (S - 400) // 160].
The HEAR API computes the spectrogram a segment at a time across chunk boundaries (MSM-MAE's centred STFT reflects
only at the clip's edges) and then cuts it into chunks and shifted passes, so the graph takes a segment's samples
with its edges already reflected (hear_rules.frame_window, reflected) and frames them itself. Each frame's spectrum
is one linear map of its 400 samples, built in float64 from torchaudio's own definitions (log-mel: Hann window x
DFT; Kaldi fbank: DC removal, pre-emphasis 0.97, Povey window, 512-point DFT), run as a Conv1d of stride 160; then
power, torchaudio's mel filterbank, log and the stored normalisation. No weights, no randomness (fbank's dither is 0).
`load_onnx` keeps the front end in torch; the two graphs share a pair id, so a front end is never run with another
export's encoder.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
import torchaudio

from hear_maeast.adapters import require
from hear_maeast.checkpoint import model_state
from hear_maeast.config import ModelConfig
from hear_maeast.errors import BadInput, WorkFailed
from hear_maeast.files import atomic_write, check_output
from hear_maeast.frontend import FrontEnd, LogMel
from hear_maeast.model import ALL_LAYERS, MAX_BATCH, MaskedAutoencoder
from hear_maeast.onnx_runtime import META_CONFIG, META_LAYER, META_PAIR, META_SOURCE, frontend_path, open_encoder
from hear_maeast.timing import HOP, SAMPLE_RATE, WIN

OPSET = 18
IR_VERSION = 10  # what onnxruntime >= 1.16 reads


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
    """Write the per-chunk encoder of `model` at `layer` (default: the model's) to `out` (.onnx) and its front end
    beside it (onnx_runtime.frontend_path), both atomically and tied by one pair id; returns `out`."""
    require("onnxscript", "onnx")
    cfg = model.cfg
    layer = resolved_layer(model.layer if layer is None else layer, cfg.depth)
    out = Path(out)
    front = frontend_path(out)
    source = [model.source] if getattr(model, "source", "") else []
    for path in (out, front):
        check_output(path, source)  # before the export's work (atomic_write checks again as it writes)
    program = _encoder_program(model, layer)
    meta = {META_CONFIG: cfg.to_json(), META_PAIR: pair_id(model, layer)}
    program.model.metadata_props.update({**meta, META_LAYER: str(layer),
                                         META_SOURCE: str(getattr(model, "source", "") or "")})
    graph = frontend_graph(cfg, meta)
    atomic_write(front, lambda tmp: _save(graph, tmp), inputs=source + [out])
    atomic_write(out, lambda tmp: program.save(str(tmp)), inputs=source + [front])  # never a half file or the input
    return out


def _encoder_program(model: MaskedAutoencoder, layer: int):
    """torch.onnx's program of the per-chunk encoder at `layer`, exported on the CPU (the model is put back)."""
    cfg = model.cfg
    device = model.device
    model.cpu().eval()
    spec = torch.zeros(2, cfg.n_mels, cfg.input_frames)  # [B, F, T]
    axes = {0: torch.export.Dim("batch", min=1, max=4096)}
    if not cfg.fixed_length:  # 1-D positions: any whole number of tokens up to one chunk
        pw = cfg.patch_size[1]
        axes[2] = pw * torch.export.Dim("time_tokens", min=1, max=cfg.input_frames // pw)
    try:
        with torch.no_grad(), _quiet():
            return torch.onnx.export(_ChunkEncoder(model, layer).eval(), (spec,), input_names=["spec"],
                                     output_names=["tokens"], dynamic_shapes=(axes,), dynamo=True,
                                     opset_version=OPSET, verbose=False)
    finally:
        model.to(device)


def pair_id(model: MaskedAutoencoder, layer: int) -> str:
    """What ties a front-end graph to its encoder graph: a hash of the configuration, the layer and every tensor
    (the same checkpoint exported twice gives the same id; another checkpoint of the same preset does not)."""
    h = hashlib.sha256(f"{model.cfg.to_json()}|layer {layer}".encode())
    for name, tensor in sorted(model_state(model).items()):  # the tensors a checkpoint stores
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _save(graph, tmp) -> None:
    import onnx

    onnx.save(graph, str(tmp))


# ---- the front end as a graph --------------------------------------------------------------------------
def frame_maps(cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """(basis [2K, WIN] float32, filterbank [F, K] float32): one frame's real and imaginary spectrum as a linear map
    of its WIN samples, and the mel filterbank over its K power bins, as torchaudio defines them (float64 first)."""
    n = np.arange(WIN)
    if cfg.frontend == "logmel":  # torchaudio MelSpectrogram: periodic Hann window, n_fft = WIN
        frame = np.diag(torch.hann_window(WIN, dtype=torch.float64).numpy())
        n_fft, mel = WIN, LogMel(cfg.n_mels).mel.mel_scale.fb.T.numpy()  # [F, 201]
    else:  # torchaudio.compliance.kaldi.fbank's defaults: remove_dc_offset, preemphasis 0.97, povey, 512 points
        dc = np.eye(WIN) - 1.0 / WIN
        pre = np.eye(WIN) - 0.97 * np.eye(WIN, k=-1)
        pre[0, 0] -= 0.97  # x[-1] := x[0] (replicate padding)
        window = torch.hann_window(WIN, periodic=False, dtype=torch.float64).pow(0.85).numpy()
        frame = np.diag(window) @ pre @ dc
        n_fft = 512
        banks, _ = torchaudio.compliance.kaldi.get_mel_banks(cfg.n_mels, n_fft, float(SAMPLE_RATE), 20.0, 0.0, 100.0,
                                                             -500.0, 1.0)  # low 20 Hz, high Nyquist, no VTLN warp
        mel = torch.nn.functional.pad(banks.float(), (0, 1)).numpy()  # [F, 257], the Nyquist bin unused
    angle = 2 * np.pi * (np.outer(np.arange(n_fft // 2 + 1), n) % n_fft) / n_fft  # [K, WIN], reduced exactly
    basis = np.concatenate([np.cos(angle), -np.sin(angle)]) @ frame  # [2K, WIN]
    return basis.astype(np.float32), np.ascontiguousarray(mel, np.float32)


def frontend_graph(cfg: ModelConfig, meta: dict):
    """The front end of `cfg` as an ONNX model: wav [B, S] -> spec [B, F, 1 + (S - WIN) // HOP], with `meta`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    basis, mel = frame_maps(cfg)
    k = mel.shape[1]
    eps = np.finfo(np.float32).eps  # log-mel: log(x + eps); Kaldi: log(max(x, eps))
    consts = {"basis": basis[:, None, :], "mel": mel, "axis1": np.array([1]), "halves": np.array([k, k]),
              "eps": np.float32(eps), "mean": np.float32(cfg.norm_mean), "std": np.float32(cfg.norm_std),
              "scale": np.float32(cfg.norm_scale)}
    node = helper.make_node
    nodes = [node("Unsqueeze", ["wav", "axis1"], ["x"]),  # [B, 1, S]
             node("Conv", ["x", "basis"], ["spectrum"], strides=[HOP]),  # [B, 2K, T]
             node("Split", ["spectrum", "halves"], ["re", "im"], axis=1),  # [B, K, T] each
             node("Mul", ["re", "re"], ["re2"]), node("Mul", ["im", "im"], ["im2"]),
             node("Add", ["re2", "im2"], ["power"]),
             node("MatMul", ["mel", "power"], ["energy"]),  # [F, K] @ [B, K, T] -> [B, F, T]
             node("Add" if cfg.frontend == "logmel" else "Max", ["energy", "eps"], ["floored"]),
             node("Log", ["floored"], ["logs"]), node("Sub", ["logs", "mean"], ["centred"]),
             node("Div", ["centred", "std"], ["scaled"]), node("Mul", ["scaled", "scale"], ["spec"])]
    wav = helper.make_tensor_value_info("wav", TensorProto.FLOAT, ["batch", "samples"])
    spec = helper.make_tensor_value_info("spec", TensorProto.FLOAT, ["batch", cfg.n_mels, "frames"])
    graph = helper.make_graph(nodes, f"{cfg.name} front end", [wav], [spec],
                              [numpy_helper.from_array(np.asarray(v), name) for name, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="hear_maeast")
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    return model


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
    """An exported encoder graph as a HEAR model (front end in torch). layer: must be the exported one (-1 = the last
    block). The graph is checked against the configuration in its metadata (input and output shapes, then one chunk
    run: onnx_runtime.open_encoder) before it is returned: a truncated, foreign or edited file is a CheckpointError
    naming it, never a wrong embedding later."""
    require("onnxruntime", "onnx")
    session, cfg, exported, _ = open_encoder(path, threads)
    if resolved_layer(layer, cfg.depth) != exported:
        raise BadInput(f"{path}: exported for layer {exported}, asked for layer {layer}; export it again with "
                       f"`hear-maeast export CKPT --onnx OUT --layer {layer}`")
    return OnnxModel(cfg, session, exported, str(path))
