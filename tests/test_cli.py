"""The `hear-maeast` command line, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import soundfile as sf

from conftest import BIN, run_env


def cli(*args, check=True) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "hear-maeast"), *map(str, args)], capture_output=True, text=True,
                          env=run_env(), timeout=300, check=check)


def test_version_and_help_list_every_subcommand():
    import hear_maeast
    from hear_maeast.cli import SUBCOMMANDS

    assert cli("--version").stdout.strip() == f"hear-maeast, version {hear_maeast.__version__}"
    out = cli("--help").stdout
    listed = [line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.startswith("  ")]
    assert listed == sorted(SUBCOMMANDS)  # each command once, in order
    assert set(SUBCOMMANDS) == {"presets", "embed", "convert", "export", "features", "pretrain", "reconstruct",
                                "tasks", "eval", "finetune", "table", "probe"}
    for name in SUBCOMMANDS:  # every lazy entry imports and has its own help
        assert cli(name, "--help").stdout.startswith(f"Usage: hear-maeast {name} ")


def test_presets_json_is_pure_json_with_the_documented_fields():
    rows = json.loads(cli("presets", "--json").stdout)
    by_name = {r["name"]: r for r in rows}
    for name in ("msm-mae-base-80x208p16x16", "msm-mae-base-80x512p16x16", "mae-ast-patch-12l", "mae-ast-frame-12l",
                 "mae-ast-patch-6l", "mae-ast-frame-6l", "msm-mae-small-80x208p16x16", "mae-ast-patch-small",
                 "mae-ast-frame-small"):
        r = by_name[name]
        assert r["family"] in ("msm-mae", "mae-ast") and r["params"] > r["encoder_params"] > 0
        assert r["hop_ms"] <= 50
    assert by_name["msm-mae-base-80x208p16x16"]["timestamp_embedding_size"] == 3840
    assert by_name["mae-ast-patch-12l"]["timestamp_embedding_size"] == 6144
    assert by_name["mae-ast-frame-12l"]["input_frames"] == 1024
    assert 85e6 < by_name["msm-mae-base-80x512p16x16"]["params"] < 100e6  # ViT-B encoder + 4-block decoder
    assert by_name["mae-ast-frame-small"]["dim"] == 384 and by_name["mae-ast-frame-small"]["depth"] == 12


def test_embed_real_audio_of_any_rate_and_channel_count(digit_wavs, micro_checkpoints, tmp_path):
    mono8k = digit_wavs[0]  # real 8 kHz mono speech
    data, sr = sf.read(mono8k, dtype="float32")
    stereo = tmp_path / "stereo44k.flac"
    sf.write(stereo, np.stack([data, -0.5 * data], axis=1).repeat(2, axis=0), 44100)  # 2 channels, another rate
    out = tmp_path / "emb.npz"
    res = cli("embed", mono8k, stereo, "--model", micro_checkpoints["mae-ast-frame-micro"], "--timestamps",
                      "-o", out)
    assert "wrote" in res.stdout
    z = np.load(out)
    assert z["scene"].shape == (2, 32) and np.isfinite(z["scene"]).all()
    assert z["timestamp_embeddings_1"].shape[0] == z["timestamps_1"].shape[0] > 0
    assert list(z["files"]) == [str(mono8k), str(stereo)]


def test_embed_reports_bad_input_without_a_traceback(tmp_path, micro_checkpoints):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wav")
    res = cli("embed", bad, "--model", micro_checkpoints["msm-mae-micro"], "-o", tmp_path / "x.npz", check=False)
    assert res.returncode == 2 and "error: " + str(bad) + ": cannot decode audio" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "x.npz").exists()
    res = cli("embed", bad, "--model", tmp_path / "none.safetensors", "-o", tmp_path / "x.npz", check=False)
    assert res.returncode == 2 and "checkpoint file not found: " + str(tmp_path / "none.safetensors") in res.stderr


def test_reconstruct_uses_the_default_weights_and_reports_a_missing_model(tmp_path):
    t = np.arange(32000) / 16000
    clip = tmp_path / "chirp.wav"
    sf.write(clip, (0.3 * np.sin(2 * np.pi * (300 + 400 * t) * t)).astype(np.float32), 16000)
    res = cli("reconstruct", clip, "-o", tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 10_000, res.stdout + res.stderr
    res = cli("reconstruct", clip, "--model", tmp_path / "gone.safetensors", "-o", tmp_path / "x.png", check=False)
    assert res.returncode != 0 and "gone.safetensors" in res.stderr and "Traceback" not in res.stderr
