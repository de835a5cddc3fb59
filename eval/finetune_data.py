"""The inputs of fine-tuning (eval/finetune.py): a task's splits as clips and targets, and SSAST's training
augmentation (random crops, mixup on the waveforms, SpecAugment), each drawn from the generator it is given so that
an epoch's randomness is fixed by (seed, fold, epoch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from eval.taskdir import SceneClips, read_clip, scene_clips
from hear_maeast.timing import SAMPLE_RATE

MIXUP_BETA = 10.0  # SSAST's dataloader: lambda ~ Beta(10, 10)


@dataclass
class Split:
    """The clips of one or more task splits (eval.taskdir.SceneClips) and their targets [N, C] (one-hot or
    multi-hot)."""

    clips: SceneClips
    targets: torch.Tensor

    @classmethod
    def read(cls, task_dir: Path, names: list[str], label_to_idx: dict[str, int]) -> "Split":
        """The splits `names` of a scene task, audio at the model's 16 kHz."""
        clips = scene_clips(task_dir, names, label_to_idx, SAMPLE_RATE)
        targets = torch.zeros(len(clips), clips.n_labels)
        for i, idx in enumerate(clips.labels):
            targets[i, idx] = 1.0
        return cls(clips, targets)

    @property
    def files(self) -> list[Path]:
        return self.clips.files

    @property
    def samples(self) -> list[int]:
        return self.clips.samples

    def __len__(self) -> int:
        return len(self.clips)


def crop_batch(split: Split, idx: np.ndarray, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """Random crops of `crop` samples (or of the batch's shortest clip when shorter): [B, L]."""
    length = min(crop, *(split.samples[i] for i in idx))
    starts = [int(rng.integers(0, split.samples[i] - length + 1)) for i in idx]
    return torch.from_numpy(np.stack([read_clip(split.files[i], s, s + length) for i, s in zip(idx, starts)]))


def mixup(wav: torch.Tensor, targets: torch.Tensor, p: float, rng: np.random.Generator):
    """SSAST's mixup: with probability p per example lam * x + (1 - lam) * partner, lam ~ Beta(10, 10); labels alike."""
    b = wav.shape[0]
    partner = torch.from_numpy(rng.permutation(b))
    lam = torch.from_numpy(rng.beta(MIXUP_BETA, MIXUP_BETA, b).astype(np.float32))
    lam = torch.where(torch.from_numpy(rng.random(b) < p), lam, torch.ones(b))  # [B]; 1: not mixed
    return (lam[:, None] * wav + (1 - lam[:, None]) * wav[partner],
            lam[:, None] * targets + (1 - lam[:, None]) * targets[partner])


def spec_augment(spec: torch.Tensor, freqm: int, timem: int) -> torch.Tensor:
    """One frequency and one time mask per example (independent masks), filled with 0 = the normalised mean."""
    import torchaudio

    x = spec[:, None]  # [B, 1, F, T]: iid_masks needs a channel axis
    if freqm:
        x = torchaudio.transforms.FrequencyMasking(min(freqm, spec.shape[-2]), iid_masks=True)(x)
    if timem:
        x = torchaudio.transforms.TimeMasking(min(timem, spec.shape[-1]), iid_masks=True)(x)
    return x[:, 0]
