"""Front ends: waveform [B, samples] at 16 kHz -> normalised spectrogram [B, n_mels, frames].

Both use torchaudio; normalisation uses fixed statistics stored with the model, so an embedding never
depends on what else is in the batch (the official MSM-MAE runtime normalises by batch statistics).
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from hear_maeast import hear_rules
from hear_maeast.config import ModelConfig
from hear_maeast.timing import HOP, SAMPLE_RATE, WIN


class LogMel(nn.Module):
    """MSM-MAE: |STFT|^2 (n_fft 400, hop 160, centred, reflect) -> 80 Slaney mels 50-8000 Hz -> log(x + eps).

    Frame f is centred on sample f * 160. `forward(wav, start, stop)` computes frames [start, stop) from the
    samples they need only (reflect padding at the clip's edges, as torch.stft's center=True), so long audio can
    be processed a segment at a time with results identical to one pass (hear_rules.frame_window, reflected).
    """

    min_samples = hear_rules.min_samples("logmel")  # reflect padding needs more samples than it pads: zeros

    def __init__(self, n_mels: int = 80):
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=WIN, win_length=WIN, hop_length=HOP, f_min=50.0, f_max=8000.0,
            n_mels=n_mels, power=2.0, center=False, mel_scale="slaney", norm="slaney",
        )
        self.eps = torch.finfo(torch.float32).eps

    @staticmethod
    def num_frames(num_samples: int) -> int:
        return hear_rules.num_frames("logmel", num_samples)

    def forward(self, wav: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:  # [B, N] -> [B, F, T]
        if wav.shape[-1] < self.min_samples:
            wav = nn.functional.pad(wav, (0, self.min_samples - wav.shape[-1]))
        n = wav.shape[-1]
        stop = self.num_frames(n) if stop is None else stop
        lo, hi = hear_rules.frame_window("logmel", start, stop)  # samples of frames [start, stop)
        left, right = (torch.from_numpy(i).to(wav.device) for i in hear_rules.reflected(lo, hi, n))
        x = torch.cat([wav[:, left], wav[:, max(lo, 0) : min(hi, n)], wav[:, right]], dim=1)  # [B, hi - lo]
        return (self.mel(x) + self.eps).log()


class KaldiFbank(nn.Module):
    """MAE-AST: torchaudio.compliance.kaldi.fbank(use_energy=False, num_mel_bins=128), other arguments default."""

    def __init__(self, n_mels: int = 128):
        super().__init__()
        self.n_mels = n_mels

    min_samples = hear_rules.min_samples("fbank")  # one window; shorter clips are zero-padded to it

    @staticmethod
    def num_frames(num_samples: int) -> int:
        return hear_rules.num_frames("fbank", num_samples)  # snip_edges=True

    def forward(self, wav: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:  # [B, N] -> [B, F, T]
        if wav.shape[-1] < self.min_samples:
            wav = nn.functional.pad(wav, (0, self.min_samples - wav.shape[-1]))
        stop = self.num_frames(wav.shape[-1]) if stop is None else stop
        wav = wav[:, slice(*hear_rules.frame_window("fbank", start, stop))]  # frame f: samples [160 f, 160 f + 400)
        # kaldi.fbank takes one waveform at a time; it is the official function, so we loop over the batch
        feats = [
            torchaudio.compliance.kaldi.fbank(
                w[None], sample_frequency=SAMPLE_RATE, use_energy=False, num_mel_bins=self.n_mels
            )
            for w in wav
        ]
        return torch.stack(feats).transpose(1, 2)  # [B, T, F] -> [B, F, T]


class FrontEnd(nn.Module):
    """Waveform -> features -> (x - mean) / std * scale.

    The statistics are the configuration's (`ModelConfig.norm_mean`, `norm_std`, `norm_scale`), the one record of
    them (docs/design.md, "Normalisation"); change them with `MaskedAutoencoder.set_norm_stats`, which keeps the
    model's configuration and this front end in step.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.features = LogMel(cfg.n_mels) if cfg.frontend == "logmel" else KaldiFbank(cfg.n_mels)
        self.use_config(cfg)

    def use_config(self, cfg: ModelConfig) -> None:
        """Read the normalisation from `cfg` (called by the model whenever its configuration changes)."""
        self.mean, self.std, self.scale = cfg.norm_mean, cfg.norm_std, cfg.norm_scale

    @property
    def norm_stats(self) -> torch.Tensor:
        """[mean, std], a read-only copy: writing into it raises (use MaskedAutoencoder.set_norm_stats)."""
        with torch.inference_mode():  # an inference tensor refuses in-place writes outside inference mode
            return torch.tensor([self.mean, self.std])

    def set_norm_stats(self, mean: float, std: float) -> None:
        raise AttributeError("the normalisation statistics live in the model's configuration: call "
                             "model.set_norm_stats(mean, std) (docs/design.md, \"Normalisation\")")

    def num_frames(self, num_samples: int) -> int:
        return self.features.num_frames(num_samples)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std * self.scale  # Python floats: float32 ops, as with float32 scalars

    def forward(self, wav: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """[B, N] -> [B, F, T]: normalised frames [start, stop) (all by default)."""
        return self.normalize(self.features(wav, start, stop))
