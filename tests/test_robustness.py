"""Bad inputs across the API, the command lines, archives, checkpoints and training: each is one actionable line
(exit 2 for a bad option, argument, input file or checkpoint; 1 for failed work), never a traceback (unless
--debug), and nothing outside the output folder changes. Each part of the package has its own section."""


# ---- core: checkpoints, embed, convert ----
import json as _core_json  # noqa: E402  (each section keeps its own imports, so sections merge independently)
import shutil as _core_shutil  # noqa: E402
import subprocess as _core_subprocess  # noqa: E402
from pathlib import Path as _CorePath  # noqa: E402

import numpy as _core_np  # noqa: E402
import pytest as _core_pytest  # noqa: E402
import soundfile as _core_sf  # noqa: E402

from conftest import BIN as _CORE_BIN, run_env as _core_run_env  # noqa: E402


def _core_snapshot(root: _CorePath, skip: _CorePath) -> dict:
    """Every file under `root` (outside `skip`) with its size and modification time."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file() and skip not in p.parents}


def _core_cli(*args, prefix=()) -> _core_subprocess.CompletedProcess:
    return _core_subprocess.run([*prefix, str(_CORE_BIN / "hear-maeast"), *map(str, args)], capture_output=True,
                                text=True, env=_core_run_env(), timeout=300)


@_core_pytest.fixture()
def core_inputs(tmp_path, micro_checkpoints) -> _CorePath:
    """A folder of inputs: a real-size clip, an empty wav, a text file, a good and some broken checkpoints."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    inp = tmp_path / "in"
    inp.mkdir()
    _core_sf.write(inp / "noise.wav", (0.1 * _core_np.random.default_rng(0).standard_normal(16000)).astype("float32"),
                   16000)
    _core_sf.write(inp / "empty.wav", _core_np.zeros(0, "float32"), 16000)  # a header and 0 frames
    (inp / "notes.txt").write_text("not a checkpoint\n")
    good = _core_shutil.copy(micro_checkpoints["msm-mae-micro"], inp / "good.safetensors")
    (inp / "truncated.safetensors").write_bytes(_CorePath(good).read_bytes()[:3000])
    with safe_open(good, framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(good)
    config = _core_json.loads(meta["config"])
    save_file(tensors, str(inp / "heads0.safetensors"), metadata={**meta, "config": _core_json.dumps({**config, "heads": 0})})
    save_file(tensors, str(inp / "provenance.safetensors"), metadata={**meta, "provenance": "{not json"})
    return inp


@_core_pytest.mark.parametrize("args,code,message", [
    (["embed", "noise.wav", "--device", "foo"], 2, "error: --device 'foo' is not a device; use cpu, cuda or cuda:N"),
    (["embed", "noise.wav", "--model-options", "[1]"], 2,
     "Invalid value for --model-options: '[1]' is a JSON list; expected an object"),
    (["embed", "empty.wav", "--model", "good.safetensors"], 2, "empty.wav: the file holds no audio (0 samples)"),
    (["embed", "noise.wav", "--model", "notes.txt"], 2, "notes.txt: not a checkpoint hear_maeast can read"),
    (["embed", "noise.wav", "--model", "truncated.safetensors"], 2,
     "truncated.safetensors: not a readable safetensors file"),
    (["embed", "noise.wav", "--model", "heads0.safetensors"], 2,
     "heads0.safetensors: invalid model configuration in metadata: invalid model configuration 'msm-mae-micro': "
     "heads=0 must be a positive int"),
    (["embed", "noise.wav", "--model", "provenance.safetensors"], 2,
     "provenance.safetensors: its provenance metadata is not JSON"),
    (["convert", "notes.txt"], 2, "notes.txt: not a checkpoint hear_maeast can read"),
    (["convert", "heads0.safetensors"], 2, "heads=0 must be a positive int"),
])
def test_core_bad_inputs_are_one_line_with_the_exit_code_and_change_nothing(core_inputs, tmp_path, args, code,
                                                                             message):
    out = tmp_path / "out"
    before = _core_snapshot(tmp_path, out)
    target = out / ("result.safetensors" if args[0] == "convert" else "result.npz")
    command = [args[0], *(core_inputs / a if (core_inputs / a).is_file() else a for a in args[1:])]
    res = _core_cli(*command, *(["-o", target] if args[0] == "embed" else [target]))
    assert res.returncode == code, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert _core_snapshot(tmp_path, out) == before  # inputs untouched
    assert not out.exists() or not any(out.iterdir())  # and no half-written output


def test_core_debug_shows_the_traceback(core_inputs, tmp_path):
    res = _core_cli("--debug", "convert", core_inputs / "notes.txt", tmp_path / "x.safetensors")
    assert res.returncode != 0 and "Traceback" in res.stderr and "CheckpointError" in res.stderr


def _core_tiny_disk_prefix(mount: _CorePath) -> list[str]:
    """A command prefix that runs the command with a 16 KiB tmpfs at `mount` (a private mount namespace), then
    lists what the command left there; skips where user namespaces are not allowed."""
    script = ('mount -t tmpfs -o size=16k tmpfs "$0" || exit 99; "$@"; rc=$?; echo "LEFT:$(ls -A "$0")"; exit $rc')
    probe = _core_subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, str(mount),
                                  "true"], capture_output=True, text=True)
    if probe.returncode != 0 or not _core_shutil.which("unshare"):
        _core_pytest.skip(f"cannot mount a tiny tmpfs here (unshare: {probe.stderr.strip()[:200]})")
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, str(mount)]


@_core_pytest.mark.parametrize("command", ["convert", "embed"])
def test_core_a_full_disk_is_one_line_naming_the_file_and_leaves_no_partial_file(core_inputs, tmp_path, command):
    out = tmp_path / "out"
    out.mkdir()
    prefix = _core_tiny_disk_prefix(out)  # a real ENOSPC, not a simulation
    before = _core_snapshot(tmp_path, out)
    if command == "convert":
        res = _core_cli("convert", core_inputs / "good.safetensors", out / "big.safetensors", prefix=prefix)
    else:
        many = [core_inputs / "noise.wav"] * 40  # 40 timestamp arrays: more than 16 KiB
        res = _core_cli("embed", *many, "--model", core_inputs / "good.safetensors", "--timestamps", "-o",
                        out / "big.npz", prefix=prefix)
    assert res.returncode == 1, res.stdout + res.stderr
    name = "big.safetensors" if command == "convert" else "big.npz"
    assert f"error: No space left on device: {out / name} (free some space or choose another output folder)" \
        in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stdout.strip().endswith("LEFT:"), res.stdout  # no temporary file left on the full disk
    assert _core_snapshot(tmp_path, out) == before
