"""Shared fixtures: real audio from ../shared/data (skipped with a reason when absent) and tiny checkpoints."""

from __future__ import annotations

import io
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
BIN = Path(sys.executable).parent
torch.set_num_threads(min(2, torch.get_num_threads()))


def shared_file(name: str) -> Path:
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"real audio not available: {path} is absent (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="session")
def digit_wavs(tmp_path_factory) -> list[Path]:
    """The real Free Spoken Digit clips (8 kHz wav) from ../shared/data/spoken_digit-small.zip."""
    out = tmp_path_factory.mktemp("digits")
    with zipfile.ZipFile(shared_file("spoken_digit-small.zip")) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".wav"))
        for n in names:
            (out / Path(n).name).write_bytes(z.read(n))
    return sorted(out.glob("*.wav"))


@pytest.fixture(scope="session")
def real_clip(digit_wavs) -> torch.Tensor:
    """One real spoken digit, resampled to 16 kHz: [n_samples] float32."""
    from hear_maeast.audio import load_audio

    return load_audio(digit_wavs[0])


@pytest.fixture(scope="session")
def micro_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Randomly initialised micro checkpoints of each family (a real file in the real format)."""
    from hear_maeast.checkpoint import save_checkpoint
    from hear_maeast.config import get_preset
    from hear_maeast.model import MaskedAutoencoder

    out = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for name in ("msm-mae-micro", "mae-ast-patch-micro", "mae-ast-frame-micro"):
        torch.manual_seed(0)
        paths[name] = save_checkpoint(MaskedAutoencoder(get_preset(name)), out / f"{name}.safetensors",
                                      provenance={"note": "random init, test fixture"})
    return paths


def run_env() -> dict:
    """Environment for subprocesses of the HEAR tools."""
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="2")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env
