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


def snapshot(folder) -> dict:
    """Every entry under `folder`: its kind (file, link, pipe) and a file's bytes, to show that nothing changed."""
    import os
    import stat
    from pathlib import Path

    out = {}
    for p in sorted(Path(folder).rglob("*")):
        st = os.lstat(p)
        kind = "link" if stat.S_ISLNK(st.st_mode) else "pipe" if stat.S_ISFIFO(st.st_mode) else "dir" \
            if stat.S_ISDIR(st.st_mode) else "file"
        out[str(p)] = (kind, os.readlink(p) if kind == "link" else p.read_bytes() if kind == "file" else None)
    return out


def refused(res, code: int, message: str) -> None:
    """One `error:` line holding `message`, exit `code`, no traceback."""
    assert res.returncode == code, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.lower().startswith("error: ") and message in last, last  # click says "Error:"


def score_folder(root):
    """A results folder as `hear-maeast eval` leaves it, for `table`: one model, one two-clip scene task."""
    task = root / "m" / "t-v1-small"
    task.mkdir(parents=True)
    (task / "task_metadata.json").write_text(json.dumps({
        "task_name": "t", "embedding_type": "scene", "prediction_type": "multiclass", "split_mode": "trainvaltest",
        "evaluation": ["top1_acc"], "splits": ["train", "valid", "test"]}))
    (task / "labelvocabulary.csv").write_text("idx,label\n0,a\n1,b\n")
    for split in ("train", "valid", "test"):
        (task / f"{split}.json").write_text(json.dumps({f"{split}_0.wav": ["a"], f"{split}_1.wav": ["b"]}))
    (task / "test.predicted-scores.json").write_text(json.dumps({"test": {"test_score": 0.5}}))
    return root


def test_no_output_replaces_an_input_a_pipe_or_a_device(micro_checkpoints, tmp_path):
    """Every output goes through hear_maeast.files.atomic_write, which replaces only a regular file that is none of
    the command's inputs (check_output). Before: `export CKPT --onnx CKPT` replaced the checkpoint with the graph,
    and an output that was a named pipe (or, as root, /dev/null) was replaced by a regular file."""
    import os
    import shutil

    ckpt = tmp_path / "model.safetensors"
    shutil.copy(micro_checkpoints["msm-mae-micro"], ckpt)
    (tmp_path / "link.safetensors").symlink_to(ckpt.name)
    os.link(ckpt, tmp_path / "hard.safetensors")
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "null").symlink_to(os.devnull)  # as root, replacing /dev/null itself would break the machine
    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32), 16000)
    results = score_folder(tmp_path / "results")
    before = snapshot(tmp_path)
    for args, code, message in [
        (["export", ckpt, "--onnx", ckpt], 2, f"{ckpt} is the input file itself; writing it would destroy"),
        (["export", ckpt, "--onnx", tmp_path / "link.safetensors"], 2, f"is the input file {ckpt} (the same file, by a link)"),
        (["export", ckpt, "--onnx", tmp_path / "hard.safetensors"], 2, f"is the input file {ckpt} (the same file, by a link)"),
        (["export", ckpt, "--onnx", tmp_path / "pipe"], 2, f"{tmp_path / 'pipe'} is a named pipe, not a regular file"),
        (["export", ckpt, "--onnx", tmp_path / "null"], 2, f"{tmp_path / 'null'} is a character device, not a regular"),
        (["export", ckpt, "--onnx", tmp_path], 2, "is a directory"),
        (["convert", ckpt, tmp_path / "link.safetensors"], 2, f"is the input file {ckpt} (the same file, by a link)"),
        (["embed", tmp_path / "a.wav", "--model", ckpt, "-o", tmp_path / "a.wav"], 2, "is the input file itself"),
        (["table", results, "-o", tmp_path / "pipe"], 2, f"{tmp_path / 'pipe'} is a named pipe, not a regular file"),
    ]:
        refused(cli(*args, check=False), code, message)
    assert snapshot(tmp_path) == before  # the checkpoint, both links, the pipe and the link to /dev/null survive


def test_model_options_are_read_in_one_place_with_one_line_refusals(tmp_path):
    """`embed` and `eval` read --model-options with hear_maeast.options.parse_model_options: a JSON object, or one
    line (exit 2) with an example; before, `embed` gave click's usage block and `eval` another wording."""
    import eval.cli
    import hear_maeast.cli
    from hear_maeast.options import parse_model_options

    assert eval.cli.parse_model_options is hear_maeast.cli.parse_model_options is parse_model_options
    assert parse_model_options('{"layer": 4}') == {"layer": 4}
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    for text, message in [("[1]", "error: --model-options must be a JSON object such as '{\"layer\": 4}', got '[1]' "
                                  "(a JSON array)"),
                          ("{layer: 4}", "error: --model-options '{layer: 4}' is not valid JSON (Expecting property "
                                         "name enclosed in double quotes: line 1 column 2 (char 1)); expected an "
                                         "object such as '{\"layer\": 4}'")]:
        for args in (["embed", wav, "-o", tmp_path / "out.npz"], ["eval", "--tasks-dir", tmp_path, "--out", tmp_path]):
            proc = cli(*args, "--model-options", text, check=False)
            assert proc.returncode == 2 and proc.stderr.strip() == message, (args, proc.stderr)
    assert not (tmp_path / "out.npz").exists()
