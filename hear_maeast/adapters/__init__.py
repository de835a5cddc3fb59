"""One model, every harness: thin adapters over the HEAR API (hear_maeast.api) for X-ARES, MTEB, s3prl and ONNX.

Every adapter holds an `Embedder`: a model loaded by `hear_maeast.load_model` (or an onnxruntime session with the
same front end, `onnx=`), embedded through the HEAR API's own functions, so the front end, the chunking of long
audio, the layer choice and the pooling are the API's everywhere and an embedding means the same thing in every
harness. The adapters only reshape what the API returns into each harness's contract (docs/harnesses.md):

    xares.MaeastEncoder   timestamp embeddings [B, T, D] every hop_ms       (X-ARES encoder checker)
    mteb.MaeastAudioModel scene embeddings [n, D] of local audio            (MTEB 2.x audio tasks)
    s3prl.MaeastUpstream  every encoder block's columns [B, T, Fg*D]        (s3prl.nn.Featurizer)
    onnx.export_onnx      the per-chunk encoder as an ONNX graph; onnx.load_onnx runs it under the HEAR API

Bad input is refused as the HEAR API refuses it (BadInput, one line): a layer the model lacks, a checkpoint that is
not ours (load_model), audio at a rate other than the one the adapter declared to its harness (check_rate), and
audio that is not float mono or channels-first, or an empty batch (clip, batch). The torch-module adapters
(X-ARES, s3prl) move with `.to(device)` like any torch module (HarnessModule).
"""

from __future__ import annotations

import numpy as np
import torch

from hear_maeast.device import resolve_device
from hear_maeast.errors import BadInput
from hear_maeast.timing import SAMPLE_RATE

MAX_CHANNELS = 16  # a clip with more "channels" than this is [n_samples, channels], or not audio


class Embedder:
    """A HEAR model and the API calls every adapter makes. checkpoint: "" = the bundled default weights, a
    hear_maeast .safetensors file or the authors' converted files (load_model decides); onnx: an exported graph
    (`hear-maeast export --onnx`) run by onnxruntime instead of torch; layer: 1-based encoder block, -1 = last."""

    def __init__(self, checkpoint: str = "", *, layer: int = -1, onnx: str = "", device=None, **model_options):
        from hear_maeast import api

        if onnx:
            from hear_maeast.adapters.onnx import load_onnx

            if checkpoint or model_options:
                raise BadInput(f"onnx={onnx!r}: the graph holds the model; pass no checkpoint or model options with it")
            if device is not None and resolve_device(device).type != "cpu":
                raise BadInput(f"onnx={onnx!r}, device={str(device)!r}: an exported graph runs on onnxruntime's CPU "
                               "provider; leave out device, or embed with the checkpoint itself")
            self.model = load_onnx(onnx, layer=layer)
        else:
            options = dict(model_options, layer=layer, **({"device": device} if device is not None else {}))
            self.model = api.load_model(str(checkpoint or ""), **options)
        self.api = api

    sample_rate = SAMPLE_RATE

    @property
    def cfg(self):
        return self.model.cfg

    def check_rate(self, rate, harness: str) -> None:
        """Refuse audio at a rate the adapter did not declare to its harness (the model takes 16 kHz only)."""
        if rate is not None and int(rate) != self.sample_rate:
            raise BadInput(f"{harness}: audio at {rate} Hz, but this adapter declared {self.sample_rate} Hz; resample "
                           f"it to {self.sample_rate} Hz first (hear_maeast.audio.resample)")

    def clip(self, audio, harness: str) -> torch.Tensor:
        """One clip as a harness hands it (a numpy array, a tensor or a list): [N] mono, or channels first
        [C <= MAX_CHANNELS, N] (MTEB's and torchaudio's layout, mixed down), floats in [-1, 1] -> [N] float32.
        Anything else is BadInput naming `harness`: integer samples (a quiet int16 clip would pass the API's peak
        check as floats 32768 times too loud), [N, C] (it would be embedded as C samples), 0 samples."""
        try:
            x = audio.detach() if isinstance(audio, torch.Tensor) else torch.from_numpy(np.asarray(audio))
        except (TypeError, ValueError) as e:  # ragged lists, strings, objects
            raise BadInput(f"{harness}: audio that is not an array of samples ({' '.join(str(e).split())[:120]}); "
                           "expected [n_samples] floats") from None
        if not x.is_floating_point():
            raise BadInput(f"{harness}: audio of dtype {x.dtype}; expected floats in [-1, 1] (divide int16 PCM by "
                           "32768, int32 by 2147483648)")
        if x.ndim == 2 and x.shape[0] <= MAX_CHANNELS and x.shape[0] < x.shape[1]:
            x = x.mean(0)  # channels first
        if x.ndim != 1:
            last = x.ndim == 2 and x.shape[0] > x.shape[1] and x.shape[1] <= MAX_CHANNELS
            hint = " (channels last? transpose it: array.T)" if last else ""
            raise BadInput(f"{harness}: audio of shape {tuple(x.shape)}{hint}; expected [n_samples] mono or "
                           f"[channels <= {MAX_CHANNELS}, n_samples] channels first, at {self.sample_rate} Hz")
        if len(x) == 0:
            raise BadInput(f"{harness}: a clip of 0 samples; expected at least one sample per clip")
        return x.float()

    def batch(self, audio, harness: str) -> torch.Tensor:
        """A batch as a harness hands it: a float tensor [B >= 1, N >= 1] of mono clips, else BadInput naming it."""
        if not isinstance(audio, torch.Tensor):
            raise BadInput(f"{harness}: audio of type {type(audio).__name__}; expected a float tensor [batch, n_samples]")
        if not audio.is_floating_point():
            raise BadInput(f"{harness}: audio of dtype {audio.dtype}; expected floats in [-1, 1] (divide int16 PCM by "
                           "32768, int32 by 2147483648)")
        if audio.ndim != 2 or 0 in audio.shape:
            raise BadInput(f"{harness}: audio of shape {tuple(audio.shape)}; expected [batch >= 1, n_samples >= 1] "
                           f"mono at {self.sample_rate} Hz")
        return audio

    def timestamps(self, audio) -> tuple[torch.Tensor, torch.Tensor]:
        """[n, N] -> (embeddings [n, K, D_stamp], timestamps [n, K] ms): get_timestamp_embeddings."""
        return self.api.get_timestamp_embeddings(audio, self.model)

    def scene(self, audio) -> torch.Tensor:
        """[n, N] -> [n, D_scene]: get_scene_embeddings."""
        return self.api.get_scene_embeddings(audio, self.model)

    def layer_states(self, audio) -> list[torch.Tensor]:
        """[n, N] -> [depth x [n, C, Fg*D]]: get_layer_states."""
        return self.api.get_layer_states(audio, self.model)


class HarnessModule(torch.nn.Module):
    """A torch module around an Embedder (the X-ARES encoder, the s3prl upstream): the model is a registered
    submodule, so `.to(device)` moves it as it moves any torch module; a device this machine lacks is BadInput (one
    line), not torch's error. An exported graph stays on onnxruntime's CPU provider; `output` puts what it returns
    on the device the module was moved to either way."""

    def __init__(self, embedder: Embedder):
        super().__init__()
        self.embedder, self.model = embedder, embedder.model
        self.output_device = embedder.model.device

    def to(self, *args, **kwargs):
        device, dtype, *_ = torch._C._nn._parse_to(*args, **kwargs)
        if dtype is not None and dtype != torch.float32:  # the API feeds float32 audio; autocast gives bf16 / fp16
            raise BadInput(f"{type(self).__name__}.to({dtype}): the model runs in float32; for mixed precision run it "
                           "under torch.autocast instead")
        if device is not None:
            self.output_device = resolve_device(str(device), f"{type(self).__name__}.to")
        return super().to(*args, **kwargs)

    def cuda(self, device=None):
        return self.to("cuda" if device is None else torch.device("cuda", device) if isinstance(device, int) else device)

    def cpu(self):
        return self.to("cpu")

    def output(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.output_device)


def check_clips(name: str, labels, splits: dict, harness: str) -> dict[str, int]:
    """The clips a task adapter takes (mteb.local_task, xares.write_shards): the task's name, its label vocabulary
    and {split: [(clip name, audio [N] float at 16 kHz, label)]}, as eval.harness_tasks reads them from a HEAR task
    folder. Returns {label: index}; no split, an empty split or a label outside the vocabulary is BadInput."""
    index = {label: i for i, label in enumerate(labels)}
    if not splits:
        raise BadInput(f"{harness} task {name}: no splits; give {{split: [(clip, audio, label)]}} with at least one")
    for split, clips in splits.items():
        if not clips:
            raise BadInput(f"{harness} task {name}, split {split}: no clips; give every split at least one clip")
        unknown = sorted({str(label) for _, _, label in clips if label not in index})
        if unknown:
            raise BadInput(f"{harness} task {name}, split {split}: label(s) {unknown[:5]} not in the task's "
                           f"{len(index)} labels; give every label of the clips in `labels`")
    return index


def require(module: str, extra: str):
    """Import a harness package, or BadInput naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise BadInput(f"{module} is not installed ({e}); install it with: pip install 'hear_maeast[{extra}]' "
                       "-c constraints.txt") from e
