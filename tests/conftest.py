"""Shared fixtures: real audio from ../shared/data (skipped with a reason when absent) and tiny checkpoints."""

from __future__ import annotations

import os
import sys
import subprocess
import zipfile
from pathlib import Path

import pytest
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
def speech_wavs(tmp_path_factory) -> list[Path]:
    """Real spoken words at a normal level (1 s, 16 kHz wav) from ../shared/data/speech_commands_v0.02-small.zip
    (the spoken digit clips peak at a few LSB, too quiet where a level matters)."""
    out = tmp_path_factory.mktemp("speech")
    with zipfile.ZipFile(shared_file("speech_commands_v0.02-small.zip")) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".wav") and "_background_noise_" not in n)
        for i, n in enumerate(names):
            (out / f"{i:03d}-{Path(n).name}").write_bytes(z.read(n))
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


def env1() -> dict:
    """Environment for a subprocess of ours: one torch thread, no warnings on stderr (messages are asserted)."""
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def run_cli(*args, code: int = 0) -> str:
    """`hear-maeast ARGS` in this process (click's runner); asserts the exit code, returns the output."""
    from click.testing import CliRunner

    from hear_maeast.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def run_env() -> dict:
    """Environment for subprocesses of the HEAR tools (one torch thread: heareval's dataloader workers fill the cores)."""
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="1")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


# --- eval/ fixtures -------------------------------------------------------------------------------------------

TOY_HEAR_MODULE = '''"""A tiny HEAR module for tests: log-mel frames every 25 ms; features="loudness" keeps only frame loudness."""
import torch
import torchaudio

HOP = 400  # samples: 25 ms at 16 kHz


class Toy(torch.nn.Module):
    sample_rate = 16000

    def __init__(self, features="logmel"):
        super().__init__()
        self.features = features
        self.mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=1024, hop_length=HOP, n_mels=64)
        self.timestamp_embedding_size = 64 if features == "logmel" else 1
        self.scene_embedding_size = 2 * self.timestamp_embedding_size


def load_model(model_file_path="", features="logmel"):
    return Toy(features)


def get_timestamp_embeddings(audio, model):
    x = torch.log(model.mel(audio) + 1e-6).transpose(1, 2)  # [n, T, 64]; frame t is centred on t * HOP
    if model.features == "loudness":
        x = x.mean(-1, keepdim=True)  # [n, T, 1]
    timestamps = (torch.arange(x.shape[1]) * HOP * 1000.0 / 16000).expand(x.shape[0], -1)  # [n, T] ms
    return x.float(), timestamps.float()


def get_scene_embeddings(audio, model):
    x, _ = get_timestamp_embeddings(audio, model)
    return torch.cat([x.mean(1), x.std(1)], -1)  # [n, 2 * D]
'''


@pytest.fixture(scope="session")
def toy_hear_env(tmp_path_factory) -> dict:
    """Environment (for subprocesses) in which `toy_hear`, a minimal third-party HEAR module, is importable."""
    folder = tmp_path_factory.mktemp("toy_module")
    (folder / "toy_hear.py").write_text(TOY_HEAR_MODULE)
    env = run_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


PROBED_MODEL = "toy_hear-default"  # the model folder name of `probe_results`


@pytest.fixture(scope="session")
def probe_results(tmp_path_factory, toy_hear_env) -> tuple[Path, Path]:
    """(tasks root, RESULTS) with RESULTS/toy_hear-default/<task>/ embedded by heareval for the four synth tasks."""
    from eval import synth

    root, results = tmp_path_factory.mktemp("probe_tasks"), tmp_path_factory.mktemp("probe_results")
    synth.write_suite(root)
    code = ("import sys; from pathlib import Path; from eval.runner import load_embedding, embed_task; "
            "e = load_embedding('toy_hear', '', {}); "
            "[embed_task(e, t, Path(sys.argv[2]) / t.name) for t in sorted(Path(sys.argv[1]).iterdir())]")
    # heareval's task_embeddings imports TensorFlow: in a subprocess, so that this process never does
    proc = subprocess.run([sys.executable, "-c", code, str(root), str(results / PROBED_MODEL)], env=toy_hear_env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, results


# --- pretrain/ fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def speech_folder(tmp_path_factory) -> Path:
    """A folder of real speech (Speech Commands v0.02 subset: 72 one-second words + 6 noises, in sub-folders)."""
    out = tmp_path_factory.mktemp("speech")
    with zipfile.ZipFile(shared_file("speech_commands_v0.02-small.zip")) as z:
        z.extractall(out, [n for n in z.namelist() if n.endswith(".wav")])
    return out
