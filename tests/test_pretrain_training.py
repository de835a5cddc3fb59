"""`hear-maeast pretrain` end to end on real audio (../shared/data): learning, checkpoints, corrupt files,
SIGKILL + --resume, two-process DDP, and `hear-maeast reconstruct`.

The audio is the Speech Commands subset: the spoken digit wavs in ../shared/data peak at 2-3 LSB of 16-bit PCM
(near silence), which a masked autoencoder reconstructs trivially.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import hear_maeast
from hear_maeast.audio import load_audio
from hear_maeast.cli import main
from hear_maeast.config import get_preset

from conftest import BIN

FAMILIES = ("msm-mae-micro", "mae-ast-patch-micro", "mae-ast-frame-micro")


@pytest.fixture(scope="module")
def speech(speech_folder) -> Path:
    return speech_folder


def wavs(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.wav"))


def cli(*args: str) -> None:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def losses(run: Path) -> list[float]:
    return [float(row["loss"]) for row in csv.DictReader(open(run / "log.csv"))]


def env1() -> dict:
    """Subprocesses share 2 cores with everything else: one thread each, and bitwise-repeatable arithmetic."""
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def pretrain_cmd(data, out, *extra) -> list[str]:
    return [str(BIN / "hear-maeast"), "pretrain", "--preset", "msm-mae-micro", "--data", str(data), "--out", str(out),
            "--batch-size", "4", "--device", "cpu", "--seed", "1", *map(str, extra)]


@pytest.fixture(scope="module")
def trained(speech, tmp_path_factory) -> dict[str, Path]:
    """30 steps of each family's micro preset on real speech, through the command line."""
    runs = {}
    for preset in FAMILIES:
        out = tmp_path_factory.mktemp(preset)
        cli("pretrain", "--preset", preset, "--data", speech, "--out", out, "--steps", 30,
            "--batch-size", 8, "--device", "cpu", "--lr", 2e-3, "--warmup-steps", 3, "--schedule", "constant")
        runs[preset] = out
    return runs


@pytest.mark.parametrize("preset", FAMILIES)
def test_loss_decreases(trained, preset):
    loss = losses(trained[preset])
    assert len(loss) == 30
    assert sum(loss[-5:]) / 5 < 0.8 * sum(loss[:5]) / 5, loss


@pytest.mark.parametrize("preset", FAMILIES)
def test_checkpoint_loads_as_a_hear_module(trained, preset, speech):
    model = hear_maeast.load_model(str(trained[preset] / "model.safetensors"))
    assert model.cfg.name == preset
    prov = model.provenance
    assert prov["steps"] == 30 and prov["clips"] == len(wavs(speech)) and prov["version"] == hear_maeast.__version__
    assert "pretrain" in prov["command"] and prov["git_commit"]
    mean, std = model.frontend.norm_stats.tolist()
    preset_stats = (get_preset(preset).norm_mean, get_preset(preset).norm_std)
    assert std > 0 and (mean, std) != preset_stats  # stats from the data, not the preset's defaults
    assert (model.cfg.norm_mean, model.cfg.norm_std) == pytest.approx((mean, std))  # and readable in the metadata
    emb = hear_maeast.get_scene_embeddings(load_audio(wavs(speech)[0])[None], model)
    assert emb.shape == (1, model.scene_embedding_size) and torch.isfinite(emb).all()


@pytest.mark.slow
@pytest.mark.parametrize("preset", FAMILIES)
def test_a_pretrained_checkpoint_passes_hear_validator(trained, preset):
    res = subprocess.run([str(BIN / "hear-validator"), "hear_maeast", "-m", str(trained[preset] / "model.safetensors")],
                         capture_output=True, text=True, env=env1(), timeout=600)
    assert "Looks good!" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]


def test_steps_0_writes_the_initialised_model_with_the_data_stats(speech, tmp_path):
    cli("pretrain", "--preset", "msm-mae-micro", "--data", speech, "--out", tmp_path, "--steps", 0, "--device", "cpu")
    model = hear_maeast.load_model(str(tmp_path / "model.safetensors"))
    assert model.provenance["steps"] == 0
    assert model.frontend.norm_stats[0].item() != pytest.approx(get_preset("msm-mae-micro").norm_mean)


def test_resume_without_state_is_a_clear_error(speech, tmp_path):
    result = CliRunner().invoke(main, ["pretrain", "--preset", "msm-mae-micro", "--data", str(speech),
                                       "--out", str(tmp_path), "--steps", "3", "--resume"])
    assert result.exit_code == 2 and "no training state" in result.output


def test_corrupt_files_are_replaced_reported_once_and_counted(speech, tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for w in wavs(speech)[:6]:
        (data / "sub" / w.name).write_bytes(w.read_bytes())
    (data / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really a wav file")
    (data / "empty.flac").write_bytes(b"")
    p = subprocess.run(pretrain_cmd(data, tmp_path / "run", "--steps", 4), capture_output=True, text=True, env=env1(), timeout=120)
    assert p.returncode == 0, p.stderr
    assert "data: 8 clips" in p.stderr  # listed, not opened, at startup
    for name in ("corrupt.wav", "empty.flac"):  # found by the statistics pass over every clip, reported once each
        assert p.stderr.count(f"unreadable clip {data / name}") == 1, p.stderr
    prov = hear_maeast.load_model(str(tmp_path / "run" / "model.safetensors")).provenance
    assert prov["clips"] == 8 and prov["skipped"] == 2
    assert len(losses(tmp_path / "run")) == 4 and all(math.isfinite(x) for x in losses(tmp_path / "run"))


def test_sigkill_then_resume_continues_exactly(speech, tmp_path):
    data, killed, ref = speech, tmp_path / "killed", tmp_path / "reference"
    steady = ["--schedule", "constant", "--warmup-steps", 0, "--save-every", 5]  # lr independent of the total
    proc = subprocess.Popen(pretrain_cmd(data, killed, "--steps", 100_000, *steady), env=env1(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (killed / "train_state.pt").exists():
            assert proc.poll() is None and time.time() < deadline, "training exited or never checkpointed"
            time.sleep(0.05)
        time.sleep(0.3)  # let it run on, likely into another checkpoint write
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # what the kill left behind loads (atomic writes); a half-written temporary is never under the real name
    state = torch.load(killed / "train_state.pt", weights_only=True)
    model = hear_maeast.load_model(str(killed / "model.safetensors"))
    step = state["step"]
    assert step % 5 == 0 and 0 < model.provenance["steps"] <= step
    assert {p.name for p in killed.iterdir() if not p.name.startswith(".")} == {"train_state.pt", "model.safetensors", "log.csv"}

    total = step + 5
    for out, extra in ((killed, ["--resume"]), (ref, [])):
        p = subprocess.run(pretrain_cmd(data, out, "--steps", total, *steady, *extra), capture_output=True, text=True, env=env1(), timeout=180)
        assert p.returncode == 0, p.stderr
        assert (f"resumed {killed} at step {step}" in p.stderr) == (out == killed)
    a, b = (torch.load(r / "train_state.pt", weights_only=True) for r in (killed, ref))
    assert a["step"] == b["step"] == total
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=k)
    for i, s in b["optimizer"]["state"].items():
        for k, v in s.items():
            torch.testing.assert_close(a["optimizer"]["state"][i][k], v, rtol=0, atol=0)
    assert not list(killed.glob(".*.tmp"))  # the resumed run cleared temporaries of the killed write
    assert [int(r["step"]) for r in csv.DictReader(open(killed / "log.csv"))][-1] == total


def test_two_process_ddp_on_cpu_keeps_ranks_identical(speech, tmp_path):
    run = tmp_path / "ddp"
    cmd = [str(BIN / "torchrun"), "--nproc-per-node", "2", "-m", "pretrain", "--preset", "msm-mae-micro",
           "--data", str(speech), "--out", str(run), "--steps", "4", "--batch-size", "4",
           "--device", "cpu", "--dump-rank-params"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env1(), timeout=240, cwd=Path(__file__).parents[1])
    assert p.returncode == 0, p.stderr[-3000:]
    assert "x 2" in p.stderr  # "... on cpu x 2": two processes
    r0, r1 = load_file(run / "rank0.safetensors"), load_file(run / "rank1.safetensors")
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    assert hear_maeast.load_model(str(run / "model.safetensors")).provenance["world_size"] == 2
    assert len(losses(run)) == 4  # rank 0 alone writes the log


@pytest.mark.parametrize("preset", ["msm-mae-micro", "mae-ast-patch-micro"])
def test_reconstruct_writes_a_png_and_audio(trained, preset, speech, tmp_path):
    png, wav = tmp_path / "recon.png", tmp_path / "recon.wav"
    cli("reconstruct", wavs(speech)[3], "--model", trained[preset] / "model.safetensors", "-o", png, "--wav", wav, "--seed", 2)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import soundfile as sf

    audio, sr = sf.read(wav)
    assert sr == 16000 and len(audio) > 4000 and abs(audio).max() > 0.1


def test_cache_option_points_to_the_feature_store(speech, tmp_path):
    p = subprocess.run(pretrain_cmd(speech, tmp_path / "run", "--steps", 1, "--cache", tmp_path / "cache"),
                       capture_output=True, text=True, env=env1(), timeout=120)
    assert p.returncode == 2 and "hear-maeast features" in p.stderr.splitlines()[-1]
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_bf16_autocast_with_gradient_accumulation(speech, tmp_path):
    cli("pretrain", "--preset", "mae-ast-frame-micro", "--data", speech, "--out", tmp_path, "--steps", 3, "--batch-size", 2,
        "--accum-steps", 2, "--precision", "bf16", "--device", "cpu")
    assert len(losses(tmp_path)) == 3 and all(map(lambda x: x == x, losses(tmp_path)))  # finite, no NaN
    assert hear_maeast.load_model(str(tmp_path / "model.safetensors")).provenance["accum_steps"] == 2
