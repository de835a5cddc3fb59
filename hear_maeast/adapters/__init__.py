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
not ours (load_model), and audio at a rate other than the one the adapter declared to its harness (check_rate).
"""

from __future__ import annotations

import torch

from hear_maeast.errors import BadInput
from hear_maeast.timing import SAMPLE_RATE


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

    def timestamps(self, audio) -> tuple[torch.Tensor, torch.Tensor]:
        """[n, N] -> (embeddings [n, K, D_stamp], timestamps [n, K] ms): get_timestamp_embeddings."""
        return self.api.get_timestamp_embeddings(audio, self.model)

    def scene(self, audio) -> torch.Tensor:
        """[n, N] -> [n, D_scene]: get_scene_embeddings."""
        return self.api.get_scene_embeddings(audio, self.model)

    def layer_states(self, audio) -> list[torch.Tensor]:
        """[n, N] -> [depth x [n, C, Fg*D]]: get_layer_states."""
        return self.api.get_layer_states(audio, self.model)


def require(module: str, extra: str):
    """Import a harness package, or BadInput naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise BadInput(f"{module} is not installed ({e}); install it with: pip install 'hear_maeast[{extra}]' "
                       "-c constraints.txt") from e
