"""s3prl (`pip install 'hear_maeast[s3prl]'`): an upstream with the `S3PRLUpstream` contract that
`s3prl.nn.Featurizer` takes: every encoder block's hidden states and their downsample rate.

    upstream = MaeastUpstream("model.safetensors")
    featurizer = s3prl.nn.Featurizer(upstream)
    all_hs, all_lens = upstream(wavs, wavs_len)   # wavs [B, N] at 16 kHz, zero-padded; wavs_len [B]
    hs, hs_len = featurizer(all_hs, all_lens)     # [B, T, hidden], weighted sum over the layers

Hidden state l-1 is what the HEAR API embeds with `layer=l` (hear_maeast.api.get_layer_states): one frame per patch
width, the frequency tokens of each time column side by side (Fg * D values; MAE-AST patch models: the official
tokens, as s3prl's own `mae_ast` upstream concatenates them), so the downsample rate is pw * 160 samples (16x16
patches: 2560 = 160 ms; 128x2 frames: 320 = 20 ms). Each clip is embedded at its own length (wavs_len), as the HEAR
API embeds one clip, and the frames are zero-padded to the longest clip.
"""

from __future__ import annotations

import math

import torch

from hear_maeast.adapters import Embedder, HarnessModule
from hear_maeast.errors import BadInput
from hear_maeast.timing import HOP


class MaeastUpstream(HarnessModule):
    """hidden states [depth x [B, T, Fg*D]], downsample rate pw * 160 samples at 16 kHz; `.to(device)` moves it."""

    def __init__(self, checkpoint: str = "", *, sample_rate: int = 16000, **model_options):
        super().__init__(Embedder(checkpoint, **model_options))
        self.embedder.check_rate(sample_rate, "s3prl")
        cfg = self.embedder.cfg
        self.num_layers = cfg.depth
        self.hidden_sizes = [cfg.timestamp_embedding_size] * cfg.depth
        self.downsample_rates = [cfg.patch_size[1] * HOP] * cfg.depth

    def forward(self, wavs: torch.Tensor, wavs_len: torch.Tensor) -> tuple[list, list]:
        """wavs [B, N] (zero-padded), wavs_len [B] -> ([depth x [B, T, H]], [depth x lengths [B]])."""
        wavs = self.embedder.batch(wavs, "s3prl upstream: wavs")  # [B >= 1, N >= 1] floats
        wavs_len = torch.as_tensor(wavs_len)
        if wavs_len.shape != (wavs.shape[0],):
            raise BadInput(f"s3prl upstream: wavs {tuple(wavs.shape)} and wavs_len {tuple(wavs_len.shape)}: expected "
                           "[B, N] and [B]")
        lengths = wavs_len.tolist()
        bad = [i for i, n in enumerate(lengths) if not (math.isfinite(n) and n == int(n) and 1 <= n <= wavs.shape[1])]
        if bad:  # a longer length would embed the padding, a negative one cut from the end: another clip either way
            raise BadInput(f"s3prl upstream: wavs_len {[lengths[i] for i in bad[:5]]} at {bad[:5]}; expected whole "
                           f"numbers of samples in 1..{wavs.shape[1]} (the padded length of wavs)")
        clips = [self.embedder.layer_states(wav[None, : int(n)]) for wav, n in zip(wavs, lengths)]  # B x depth
        lens = torch.tensor([states[0].shape[1] for states in clips], dtype=torch.long, device=wavs_len.device)  # [B]
        hidden = []
        for layer in range(self.num_layers):
            frames = [states[layer][0] for states in clips]  # B x [T_b, H]
            hidden.append(self.output(torch.nn.utils.rnn.pad_sequence(frames, batch_first=True)))  # [B, T, H]
        return hidden, [lens] * self.num_layers


def featurizer(upstream: MaeastUpstream, **options):
    """`s3prl.nn.Featurizer(upstream, **options)`. s3prl 0.4.18 cannot import `s3prl.nn` next to torchaudio >= 2.9:
    `s3prl.nn.upstream` imports `s3prl.hub`, which imports every upstream, and some call torchaudio functions that
    2.9 removed (`set_audio_backend`, `torchaudio.sox_effects`). The Featurizer never uses the hub, so when that
    import fails, s3prl.nn is imported with an empty `s3prl.hub` in its place (docs/harnesses.md, "s3prl")."""
    import sys
    import types

    try:
        from s3prl.nn import Featurizer
    except (AttributeError, ImportError):
        for name in [m for m in sys.modules if m == "s3prl.nn" or m.startswith(("s3prl.nn.", "s3prl.hub"))]:
            del sys.modules[name]
        sys.modules["s3prl.hub"] = types.ModuleType("s3prl.hub")  # a placeholder for the import only
        try:
            from s3prl.nn import Featurizer
        finally:
            del sys.modules["s3prl.hub"]
    return Featurizer(upstream, **options)
