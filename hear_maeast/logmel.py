"""The floor: MSM-MAE's 80-bin log-mel spectrogram as a HEAR module, with no learned parameter.

    python -m heareval.embeddings.runner hear_maeast.logmel        hear-validator hear_maeast.logmel
    hear-maeast eval --module hear_maeast.logmel --tasks-dir TASKS --out RESULTS

Any learned representation must beat it on every task to claim it learned something (docs/evaluation.md).

- front end: hear_maeast.frontend.LogMel, the very features the MSM-MAE models read (before their normalisation,
  which is one affine map and does not change what a linear probe or MLP can learn);
- scene embedding: per-bin mean and standard deviation over the clip's frames, 160-d;
- timestamp embeddings: the frames averaged in windows of 4 (40 ms), one every 40 ms, stamped at the centre of
  the frames they average (frame f is centred at f * 10 ms); a last window with fewer frames is kept only when
  its regular timestamp lies inside the audio, so the spacing stays exactly 40 ms.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hear_maeast.api import check_audio
from hear_maeast.errors import BadInput
from hear_maeast.frontend import LogMel
from hear_maeast.timing import FRAME0_MS, FRAME_MS, SAMPLE_RATE

N_MELS = 80
WINDOW = 4  # frames per timestamp embedding: 40 ms, under HEAR's 50 ms


class LogMelFloor(nn.Module):
    """No parameters: the HEAR attributes around a LogMel front end."""

    sample_rate = SAMPLE_RATE
    scene_embedding_size = 2 * N_MELS
    timestamp_embedding_size = N_MELS

    def __init__(self):
        super().__init__()
        self.features = LogMel(N_MELS)

    @property
    def device(self) -> torch.device:
        return self.features.mel.mel_scale.fb.device


def load_model(model_file_path: str = "", **model_options) -> LogMelFloor:
    """The log-mel floor; it has no weights and no options, so both must be empty."""
    if model_file_path or model_options:
        raise BadInput(f"hear_maeast.logmel has no weights and no options (got model_file_path={model_file_path!r}, "
                       f"options {sorted(model_options)}); call load_model() with none")
    return LogMelFloor().eval()


def window_times(num_samples: int) -> torch.Tensor:
    """Timestamps (ms) of the windows: [K], every WINDOW * 10 ms, none past the end of the audio."""
    n_frames = LogMel.num_frames(num_samples)
    k = torch.arange(math.ceil(n_frames / WINDOW))
    centre = FRAME0_MS["logmel"] + FRAME_MS * (k * WINDOW + (WINDOW - 1) / 2)  # [K]
    keep = centre <= num_samples * 1000.0 / SAMPLE_RATE
    return centre[keep] if keep.any() else torch.tensor([num_samples * 500.0 / SAMPLE_RATE])


def _logmel(audio, model: LogMelFloor) -> torch.Tensor:
    if not isinstance(model, LogMelFloor):
        raise TypeError(f"model must come from hear_maeast.logmel.load_model(), got {type(model).__name__}")
    return model.features(check_audio(audio, model.device))  # [n, 80, T]


@torch.no_grad()
def get_timestamp_embeddings(audio: torch.Tensor, model: LogMelFloor):
    """audio [n, samples] at 16 kHz -> (embeddings [n, K, 80], timestamps [n, K] ms), one every 40 ms."""
    mel = _logmel(audio, model)  # [n, 80, T]
    times = window_times(audio.shape[1]).to(mel.device)  # [K]
    pooled = nn.functional.avg_pool1d(mel, WINDOW, ceil_mode=True)  # [n, 80, ceil(T / 4)]; a partial window: its mean
    emb = pooled[..., : len(times)].transpose(1, 2)  # [n, K, 80]
    return emb.contiguous(), times.expand(mel.shape[0], -1).contiguous()


@torch.no_grad()
def get_scene_embeddings(audio: torch.Tensor, model: LogMelFloor) -> torch.Tensor:
    """audio [n, samples] at 16 kHz -> [n, 160]: per-bin mean, then per-bin standard deviation, over frames."""
    mel = _logmel(audio, model)  # [n, 80, T]
    return torch.cat([mel.mean(dim=-1), mel.std(dim=-1, unbiased=False)], dim=-1)
