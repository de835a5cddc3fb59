"""Bad inputs fed to the package as a careless or hostile user would: each gives one line naming the problem, the
exit code of hear_maeast.errors (2 bad option or argument, 1 failed work), no traceback, and nothing written
outside the output folder. Sections by area; each section is self-contained."""


# ---- eval ----------------------------------------------------------------------------------------------------
# `hear-maeast tasks | eval | table` through real subprocesses.
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_env, shared_file

EVAL_PITCH = "synth_pitch-v1.0-small"


def eval_cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hear_maeast.cli", *map(str, args)], capture_output=True,
                               text=True, env=env or run_env(), timeout=600)


def eval_snapshot(root: Path, out: Path) -> dict:
    """Every file and folder under `root` except those in `out`, with size and modification time."""
    return {p: (p.is_dir() or p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p != out and out not in p.parents}


def eval_refused(proc, code: int, message: str) -> None:
    """One `error:` line holding `message` as the last line of stderr, exit `code`, no traceback."""
    assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last


@pytest.fixture(scope="module")
def eval_pitch_task(tmp_path_factory) -> Path:
    """A small real HEAR task folder (the built-in synthetic pitch task)."""
    from eval import synth

    return synth.write_suite(tmp_path_factory.mktemp("eval_robust"), only=("synth_pitch",))[0]


def eval_guard(root: Path, out: Path):
    """A check, to call after the command, that nothing under `root` outside `out` changed since this call."""
    before = eval_snapshot(root, out)

    def unchanged():
        assert eval_snapshot(root, out) == before

    return unchanged


@pytest.fixture
def eval_case(tmp_path, eval_pitch_task) -> tuple[Path, Path]:
    """(a writable copy of the pitch task in `tmp_path/in`, the output folder `tmp_path/out`)."""
    task = tmp_path / "in" / EVAL_PITCH
    shutil.copytree(eval_pitch_task, task)
    return task, tmp_path / "out"


def test_eval_robust_a_corrupt_wav_inside_a_task(eval_case, toy_hear_env):
    task, out = eval_case
    bad = task / "16000" / "train" / "train_0000.wav"
    bad.write_bytes(b"RIFF....not audio")
    unchanged = eval_guard(task.parent.parent, out)
    eval_refused(eval_cli("tasks", "resample", task, out / "tasks", "--sr", "8000"), 1,
                 f"{bad}: cannot decode audio")
    proc = eval_cli("eval", "--tasks-dir", task, "--module", "toy_hear", "--grid", "faster", "--out", out / "r",
                    env=toy_hear_env)
    eval_refused(proc, 1, f"1 of 1 tasks failed ({EVAL_PITCH})")
    failure = json.loads((out / "r" / "toy_hear-default" / EVAL_PITCH / "failed.json").read_text())
    assert "train_0000.wav" in failure["error"]
    unchanged()


def test_eval_robust_a_label_vocabulary_that_is_not_utf8(eval_case):
    task, out = eval_case
    (task / "labelvocabulary.csv").write_bytes(b"idx,label\n0,C\xe94\n")
    unchanged = eval_guard(task.parent.parent, out)
    message = f"{task / 'labelvocabulary.csv'} is not UTF-8 text"
    eval_refused(eval_cli("tasks", "resample", task, out / "tasks"), 1, message)
    eval_refused(eval_cli("eval", "--tasks-dir", task, "--out", out / "r"), 1, message)
    unchanged()


def test_eval_robust_metadata_that_is_not_an_object_or_names_a_path(eval_case):
    task, out = eval_case
    metadata = (task / "task_metadata.json").read_text()
    (task / "task_metadata.json").write_text("[1]")
    unchanged = eval_guard(task.parent.parent, out)
    eval_refused(eval_cli("eval", "--tasks-dir", task, "--out", out), 1, "must hold a JSON object")
    unchanged()
    (task / "task_metadata.json").write_text(metadata)
    # heareval writes `<split>/<clip>.embedding.npy`: a clip named ../../x.wav would land outside the results
    labels = json.loads((task / "test.json").read_text())
    (task / "test.json").write_text(json.dumps({**labels, "../../../x.wav": ["C4"]}))
    unchanged = eval_guard(task.parent.parent, out)
    eval_refused(eval_cli("eval", "--tasks-dir", task, "--out", out), 1,
                 "test.json: clip name '../../../x.wav' is not a plain file or folder name")
    unchanged()


def test_eval_robust_files_that_are_not_the_archives_they_are_named(eval_case, tmp_path):
    _, out = eval_case
    (tmp_path / "in" / "tasks.tar.gz").write_text("just text\n")
    (tmp_path / "in" / "speech.zip").write_text("just text\n")
    truncated = tmp_path / "in" / "truncated.tar.gz"
    truncated.write_bytes(shared_file("hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz").read_bytes()[:30000])
    unchanged = eval_guard(tmp_path, out)
    eval_refused(eval_cli("tasks", "resample", tmp_path / "in" / "tasks.tar.gz", out), 1,
                 "tasks.tar.gz is neither a zip nor a tar archive")
    eval_refused(eval_cli("tasks", "speech-commands", tmp_path / "in" / "speech.zip", out), 1,
                 "speech.zip is neither a zip nor a tar archive")
    eval_refused(eval_cli("tasks", "resample", truncated, out), 1, "truncated.tar.gz is damaged or truncated")
    unchanged()
    assert not [p for p in out.rglob("*") if p.is_file()]  # no half-extracted task left behind


def test_eval_robust_bad_options_exit_2(eval_case):
    task, out = eval_case
    unchanged = eval_guard(task.parent.parent, out)
    for args, message in [
        (("tasks", "resample", task, out, "--sr", "0"), "--sr 0: expected a sample rate in Hz from 1000 to 192000"),
        (("tasks", "synth", out, "--seed", "-1"), "--seed -1: expected a non-negative integer"),
        (("tasks", "synth", out, "--only", "nope"), "--only ['nope']: no such synthetic task"),
        (("tasks", "speech-commands", task, out, "--mode", "x/.."), "--mode 'x/..': expected one word"),
        (("eval", "--tasks-dir", task, "--out", out, "--model-options", "[1]"), "--model-options must be a JSON object"),
        (("eval", "--tasks-dir", task, "--out", out, "--model-options", "{layer: 4}"), "is not valid JSON"),
        (("eval", "--tasks-dir", task, "--out", out, "--name", "../../X"), "--name '../../X' is not a plain"),
        (("eval", "--tasks-dir", task, "--out", out, "--task", "nope"), "--task ['nope']: no such task folder"),
        (("eval", "--tasks-dir", task, "--out", out, "--model", task / "nope.safetensors"), "does not exist"),
        (("eval", "--tasks-dir", task, "--out", out, "--module", "no_such_hear_module"),
         "--module no_such_hear_module: cannot import it"),
        (("table", task.parent), "no model results in"),
    ]:
        eval_refused(eval_cli(*args), 2, message)
    unchanged()


@pytest.mark.slow
def test_eval_robust_options_the_module_refuses(eval_case):
    task, out = eval_case
    unchanged = eval_guard(task.parent.parent, out)
    eval_refused(eval_cli("eval", "--tasks-dir", task, "--out", out, "--model-options", '{"nope": 1}'), 2,
                 "hear_maeast.load_model refused --model (none) with --model-options {\"nope\": 1}")
    unchanged()


def test_eval_robust_a_half_written_score_file(tmp_path):
    results = tmp_path / "results" / "some-model" / EVAL_PITCH
    results.mkdir(parents=True)
    (results / "test.predicted-scores.json").write_text('{"test": {"test_sco')
    unchanged = eval_guard(tmp_path, tmp_path / "leaderboard.md")
    eval_refused(eval_cli("table", tmp_path / "results", "-o", tmp_path / "leaderboard.md"), 1,
                 f"{results / 'test.predicted-scores.json'} cannot be read (JSONDecodeError")
    unchanged()
    assert not (tmp_path / "leaderboard.md").exists()


def test_eval_robust_debug_shows_the_traceback(eval_case):
    task, out = eval_case
    proc = eval_cli("--debug", "tasks", "resample", task, out, "--sr", "0")
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "BadInput" in proc.stderr
    assert os.environ.get("HEAR_MAEAST_DEBUG", "") in ("", "0")  # the flag reached only the child


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
    _core_pytest.param(["embed", "noise.wav", "--model", "good.safetensors", "--model-options", '{"device": "cuda"}'],
                       2, "error: device 'cuda': this machine has 0 CUDA device(s); use cpu",
                       marks=_core_pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="CUDA is here")),
    (["embed", "noise.wav", "--model-options", "[1]"], 2,
     "error: --model-options must be a JSON object such as '{\"layer\": 4}', got '[1]' (a JSON array)"),
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


# ---- pretrain ----
import os  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from conftest import BIN  # noqa: E402


def _pretrain_tree(root: Path) -> dict:
    """Every file under root with its size and mtime: to show what a command changed."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def pretrain_lms(speech_folder, tmp_path_factory) -> Path:
    """Eight real clips as MSM-MAE/M2D log-mel files ([1, 80, T] float32 .npy)."""
    from hear_maeast.audio import load_audio
    from hear_maeast.config import get_preset
    from hear_maeast.frontend import FrontEnd

    root = tmp_path_factory.mktemp("lms")
    features = FrontEnd(get_preset("msm-mae-micro")).features
    for w in sorted(speech_folder.rglob("*.wav"))[:8]:
        with torch.no_grad():
            np.save(root / f"{w.parent.name}_{w.stem}.npy", features(load_audio(w)[None]).numpy())
    return root


def _pretrain(tmp_path: Path, data: Path, *extra, expect: int) -> str:
    """Run `hear-maeast pretrain` into tmp_path/run; check the exit code and that nothing but the run changed."""
    before = {k: v for k, v in _pretrain_tree(tmp_path).items() if not k.startswith("run")}
    data_before = _pretrain_tree(data)
    cmd = [str(BIN / "hear-maeast"), "pretrain", "--preset", "msm-mae-micro", "--data", str(data), "--out",
           str(tmp_path / "run"), "--batch-size", "4", "--device", "cpu", "--num-workers", "0", *map(str, extra)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"))
    assert p.returncode == expect, p.stderr[-3000:]
    assert {k: v for k, v in _pretrain_tree(tmp_path).items() if not k.startswith("run")} == before
    assert _pretrain_tree(data) == data_before
    return p.stderr


@pytest.mark.parametrize("option,value,message", [
    ("--mask-ratio", "0", "--mask-ratio 0.0: masks none of the 65 tokens, so there is nothing to reconstruct"),
    ("--lr", "-1", "--lr -1.0: expected a finite number > 0"),
    ("--lr", "nan", "--lr nan: expected a finite number > 0"),
    ("--device", "foo", "--device 'foo' is not a device; use cpu, cuda or cuda:N"),  # the package's one device check
])
def test_pretrain_refuses_options_that_cannot_train(pretrain_lms, tmp_path, option, value, message):
    err = _pretrain(tmp_path, pretrain_lms, "--steps", 2, option, value, expect=2)
    assert err.strip().splitlines()[-1].startswith(f"error: {message}")
    assert not (tmp_path / "run").exists()


def test_pretrain_refuses_an_empty_data_folder(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    err = _pretrain(tmp_path, tmp_path / "empty", "--steps", 2, expect=2)
    assert err.strip().splitlines()[-1] == (f"error: --data {tmp_path / 'empty'}: no .npy feature files and no audio "
                                            "files (.wav, .flac, .ogg) found in it or its sub-folders")
    assert not (tmp_path / "run").exists()


def test_pretrain_resume_from_a_truncated_state_is_a_clear_message(pretrain_lms, tmp_path):
    _pretrain(tmp_path, pretrain_lms, "--steps", 2, expect=0)
    state = tmp_path / "run" / "train_state.pt"
    state.write_bytes(state.read_bytes()[:5000])
    err = _pretrain(tmp_path, pretrain_lms, "--steps", 4, "--resume", expect=2)
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: --resume: {state} cannot be read") and "truncated or damaged" in last
    assert len(err.strip().splitlines()) == 1


def test_pretrain_survives_a_truncated_feature_file(pretrain_lms, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for p in sorted(pretrain_lms.glob("*.npy")):
        (data / p.name).write_bytes(p.read_bytes())
    victim = sorted(data.glob("*.npy"))[3]
    victim.write_bytes(victim.read_bytes()[:300])  # cut mid-array
    err = _pretrain(tmp_path, data, "--steps", 3, expect=0)
    assert err.count(f"unreadable clip {victim}: ") == 1  # reported once, replaced, counted
    from hear_maeast import load_model

    assert load_model(str(tmp_path / "run" / "model.safetensors")).provenance["skipped"] == 1


def test_pretrain_refuses_a_second_process_on_the_same_run_folder(pretrain_lms, tmp_path):
    from hear_maeast.files import FolderLock

    lock = FolderLock(tmp_path / "run").acquire()  # as a live run holds it
    try:
        err = _pretrain(tmp_path, pretrain_lms, "--steps", 2, expect=2)
    finally:
        lock.release()
    assert f"--out {tmp_path / 'run'} is in use by another process (pid {os.getpid()} on" in err.strip().splitlines()[-1]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]


# ---- HEAR API ----------------------------------------------------------------------------------------------------
# In-process: the API raises typed errors (TypeError for wrong types, BadInput / WorkFailed otherwise) and never
# returns NaN. More cases, with real audio, in tests/test_api.py and tests/test_fidelity.py.
import numpy as _api_np  # noqa: E402
import pytest as _api_pytest  # noqa: E402
import torch as _api_torch  # noqa: E402

_API_BAD_AUDIO = {
    "int16 samples": (lambda: _api_torch.zeros(1, 16000, dtype=_api_torch.int16), TypeError, "divide int16 PCM by 32768"),
    "int16 numpy": (lambda: _api_np.zeros((1, 16000), _api_np.int16), TypeError, "divide int16 PCM by 32768"),
    "a list": (lambda: [[0.0] * 16000], TypeError, "must be a torch.Tensor"),
    "1-D": (lambda: _api_torch.zeros(16000), ValueError, r"expected 2-D \[n_sounds, n_samples\]"),
    "no sounds": (lambda: _api_torch.zeros(0, 16000), ValueError, "empty batch"),
    "no samples": (lambda: _api_torch.zeros(2, 0), ValueError, "0 samples"),
    "NaN": (lambda: _api_torch.full((2, 16000), float("nan")), ValueError, r"NaN or Inf samples in sound\(s\) \[0, 1\]"),
    "int16 scale floats": (lambda: _api_torch.full((1, 16000), 20000.0), ValueError, "divided by 32768"),
    "1e300 float64": (lambda: _api_torch.full((1, 16000), 1e300, dtype=_api_torch.float64), ValueError, "audio peaks"),
    "a hair above 8": (lambda: _api_torch.full((1, 16000), 8.0000001, dtype=_api_torch.float64), ValueError,
                       r"audio peaks at 8\.0000001 in sound"),  # not "at 8 ... (peaks up to 8 are accepted)"
}


@_api_pytest.mark.parametrize("case", sorted(_API_BAD_AUDIO))
def test_api_bad_audio_is_refused_with_what_to_do(case):
    from hear_maeast import get_scene_embeddings, get_timestamp_embeddings
    from hear_maeast.config import get_preset
    from hear_maeast.errors import BadInput
    from hear_maeast.model import MaskedAutoencoder

    make, error, message = _API_BAD_AUDIO[case]
    model = MaskedAutoencoder(get_preset("mae-ast-frame-micro")).eval()
    for fn in (get_scene_embeddings, get_timestamp_embeddings):
        with _api_pytest.raises(error, match=message) as caught:
            fn(make(), model)
        assert error is TypeError or isinstance(caught.value, BadInput)  # the CLIs print BadInput as one line


def test_api_weights_that_overflow_raise_instead_of_returning_nan():
    from hear_maeast import get_scene_embeddings
    from hear_maeast.config import get_preset
    from hear_maeast.errors import WorkFailed
    from hear_maeast.model import MaskedAutoencoder

    model = MaskedAutoencoder(get_preset("msm-mae-micro")).eval()
    with _api_torch.no_grad():
        model.patch_embed.weight.fill_(1e30)  # finite, so it loads; the encoder overflows
    with _api_pytest.raises(WorkFailed, match="NaN or Inf embeddings"):
        get_scene_embeddings(0.1 * _api_torch.randn(1, 16000), model)


# ---- files that are not what they seem, stores, tables, names (issue 23) ---------------------------------------
# Real subprocesses on real files. Each test failed before its fix.
import json as _h_json  # noqa: E402
import re  # noqa: E402
import shutil as _h_shutil  # noqa: E402


def _h_cli(*args, timeout: int = 180, cwd=None) -> subprocess.CompletedProcess:
    """`hear-maeast ARGS` in a subprocess, one thread, with a timeout: a hang fails the test instead of stalling it."""
    return subprocess.run([str(BIN / "hear-maeast"), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"))


def _h_refused(proc, code: int, *parts: str) -> str:
    """One `error:` line holding every part, exit `code`, no traceback; returns the line."""
    assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(p in last for p in parts), last
    return last


def _h_traps(folder: Path) -> dict[str, str]:
    """Three `*.wav` entries that are not regular files, with what the refusal says of each."""
    os.mkfifo(folder / "pipe.wav")  # opening it for reading blocks until a writer comes: forever
    (folder / "zero.wav").symlink_to("/dev/zero")  # never ends
    (folder / "loop.wav").symlink_to(folder / "loop.wav")
    return {"pipe.wav": "is a named pipe, not a regular file", "zero.wav": "is a character device, not a regular file",
            "loop.wav": "Too many levels of symbolic links"}


@pytest.fixture
def hostile_audio(speech_folder, tmp_path) -> tuple[Path, dict[str, str]]:
    """Four real one-second words and the three traps, in one folder."""
    folder = tmp_path / "audio"
    folder.mkdir()
    for w in sorted(speech_folder.rglob("*.wav"))[:4]:
        _h_shutil.copy(w, folder / f"{w.parent.name}_{w.name}")
    return folder, _h_traps(folder)


def test_audio_that_is_not_a_regular_file_is_skipped_never_read(hostile_audio, tmp_path):
    """`features` and `pretrain --data` skip a named pipe, a link to /dev/zero and a link loop (named in
    skipped.txt / on stderr) instead of hanging on them; the four real clips are converted and trained on."""
    folder, traps = hostile_audio
    store = tmp_path / "store"
    proc = _h_cli("features", folder, store, "--preset", "msm-mae-micro", "--workers", 0, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    skipped = dict(line.split("\t", 1) for line in (store / "skipped.txt").read_text().splitlines())
    assert {Path(k).name for k in skipped} == set(traps)
    for source, why in skipped.items():
        assert traps[Path(source).name] in why, why
    assert _h_json.loads((store / "manifest.json").read_text())["clips"] == 4
    proc = _h_cli("pretrain", "--preset", "msm-mae-micro", "--data", folder, "--out", tmp_path / "run", "--steps", 2,
                  "--batch-size", 4, "--device", "cpu", "--num-workers", 0, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def hostile_store(speech_folder, tmp_path_factory) -> tuple[Path, Path]:
    """(the audio folder: four real words, a finished `features` store of it for msm-mae-micro)."""
    root = tmp_path_factory.mktemp("hostile_store")
    (audio := root / "audio").mkdir()
    for w in sorted(speech_folder.rglob("*.wav"))[:4]:
        _h_shutil.copy(w, audio / f"{w.parent.name}_{w.name}")
    proc = _h_cli("features", audio, root / "store", "--preset", "msm-mae-micro", "--workers", 0)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return audio, root / "store"


def _h_tamper(store: Path, copy: Path, manifest: dict | None = None, rows=None, text: str | None = None) -> Path:
    """A copy of `store` with manifest keys changed, clips.csv rows rewritten by `rows(list of dicts)`, or the
    manifest replaced by `text`."""
    import csv

    _h_shutil.copytree(store, copy)
    m = _h_json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(text if text is not None else _h_json.dumps({**m, **(manifest or {})}))
    if rows:
        with open(copy / "clips.csv", newline="") as f:
            table = list(csv.DictReader(f))
        with open(copy / "clips.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows(rows(table))
    return copy


def _h_edit(i: int, **changes):
    return lambda table: [dict(r, **changes) if k == i else r for k, r in enumerate(table)]


_H_DAMAGED_STORES = {  # what is changed -> what the refusal names
    "dtype object": (dict(manifest={"dtype": "object"}), "dtype 'object' is not one of ('float16', 'float32')"),
    "bin count": (dict(manifest={"n_mels": 40}), "frames of 40 float16 bins"),
    "clip count": (dict(manifest={"clips": 5}), "manifest.json says 5 clips of"),
    "a row missing": (dict(rows=lambda t: t[:3]), "its clips.csv rows say"),
    "file_name ../": (dict(rows=_h_edit(1, file_name="../outside.f16")),
                      "clips.csv line 3: file_name '../outside.f16' is not a file of its shards/ folder"),
    "file_name absolute": (dict(rows=_h_edit(0, file_name="/etc/passwd")), "file_name '/etc/passwd' is not a file"),
    "file_name shards/..": (dict(rows=_h_edit(0, file_name="shards/..")), "file_name 'shards/..' is not a file"),
    "a row of 0 frames": (dict(rows=_h_edit(3, frames="0")), "and frames '0' do not follow the previous row"),
    "overlapping rows": (dict(rows=_h_edit(2, offset="0")), "line 4: offset '0' and frames '101' do not follow"),
    "norm_std underflows float32": (dict(manifest={"norm_std": 1e-50}), "std 1e-50 is below 1e-06"),
    "norm_std a string": (dict(manifest={"norm_std": "4.5"}), "expected a finite mean and a std > 0"),
}


@pytest.mark.parametrize("case", sorted(_H_DAMAGED_STORES))
def test_a_store_that_disagrees_with_itself_is_refused_by_name(hostile_store, tmp_path, case):
    """The store reader (pretrain.data.read_store, used by pretrain and features) checks manifest, clip table and
    shard sizes against each other; before, each case trained on misaligned, foreign or padded data with exit 0
    (or, dtype "object", died of a segmentation fault)."""
    from hear_maeast.config import get_preset
    from hear_maeast.errors import BadInput
    from pretrain.data import open_source

    change, message = _H_DAMAGED_STORES[case]
    copy = _h_tamper(hostile_store[1], tmp_path / "store", **change)
    with pytest.raises(BadInput) as caught:
        open_source(copy, get_preset("msm-mae-micro"))
    assert message in str(caught.value) and str(copy) in str(caught.value), caught.value


def test_pretrain_on_a_store_claiming_dtype_object_is_one_line_not_a_segfault(hostile_store, tmp_path):
    copy = _h_tamper(hostile_store[1], tmp_path / "store", manifest={"dtype": "object"})
    proc = _h_cli("pretrain", "--preset", "msm-mae-micro", "--data", copy, "--out", tmp_path / "run", "--steps", 1,
                  "--batch-size", 2, "--device", "cpu", "--num-workers", 0)
    _h_refused(proc, 2, f"--data {copy}: manifest.json: dtype 'object'", "run `hear-maeast features` again")


def test_a_truncated_manifest_says_to_rerun_features_and_rerunning_it_works(hostile_store, tmp_path):
    audio, store = hostile_store
    from hear_maeast.config import get_preset
    from hear_maeast.errors import BadInput
    from pretrain.data import open_source

    copy = _h_tamper(store, tmp_path / "store", text=(store / "manifest.json").read_text()[:40])
    with pytest.raises(BadInput, match=rf"--data {copy}: unreadable manifest.json .* run `hear-maeast features AUDIO"):
        open_source(copy, get_preset("msm-mae-micro"))  # what `pretrain --data` says
    proc = _h_cli("features", audio, copy, "--preset", "msm-mae-micro", "--workers", 0)
    assert proc.returncode == 0 and "manifest.json is unreadable; converting the audio again" in proc.stderr, proc.stderr
    assert (copy / "clips.csv").read_bytes() == (store / "clips.csv").read_bytes()
    assert (copy / "shards" / "00000.f16").read_bytes() == (store / "shards" / "00000.f16").read_bytes()


def test_features_on_a_finished_store_of_other_audio_is_refused(hostile_store, tmp_path):
    """Before, `features OTHER_AUDIO STORE` said "already complete" and kept the old audio's features."""
    audio, store = hostile_store
    other = tmp_path / "other"
    _h_shutil.copytree(audio, other)
    tree = lambda: {k: v for k, v in _pretrain_tree(store).items() if k != ".lock"}  # noqa: E731 - the lock is rewritten
    before = tree()
    _h_refused(_h_cli("features", other, store, "--preset", "msm-mae-micro", "--workers", 0), 2,
               f"{store} holds the features of {audio}, not of {other}: choose another OUT")
    assert tree() == before


# -- tables: names, scores, predictions, run.json --
def _h_result(model: Path, task: str = "t-v1-small", score=0.5, target=(0, 1, 2, 3), predicted=(0, 1, 2, 0),
              names=None, run: dict | None = None) -> Path:
    """A model's results folder as `hear-maeast eval` leaves it: heareval's copies of a 4-label scene task, a score
    file and a test.predictions.pkl (and a run.json when given). `names`: the test clips (default test_0.wav ...)."""
    from test_paired import write_predictions

    out = model / task
    out.mkdir(parents=True)
    (out / "task_metadata.json").write_text(_h_json.dumps({
        "task_name": "t", "embedding_type": "scene", "prediction_type": "multiclass", "split_mode": "trainvaltest",
        "evaluation": ["top1_acc"], "splits": ["train", "valid", "test"]}))
    (out / "labelvocabulary.csv").write_text("idx,label\n" + "".join(f"{i},l{i}\n" for i in range(4)))
    names = names or [f"test_{i}.wav" for i in range(len(target))]
    for split, clips in (("train", [f"train_{i}.wav" for i in range(4)]), ("valid", ["valid_0.wav", "valid_1.wav"]),
                         ("test", names)):
        (out / f"{split}.json").write_text(_h_json.dumps({c: [f"l{i % 4}"] for i, c in enumerate(clips)}))
    (out / "test.predicted-scores.json").write_text(_h_json.dumps({"test": {"test_score": score}}))
    write_predictions(out / "test.predictions.pkl", list(target), list(predicted))
    if run is not None:
        (model / "run.json").write_text(_h_json.dumps(run))
    return out


def test_table_escapes_names_so_that_none_forges_a_row(tmp_path):
    """A name holding `|` and a newline (from --name or a run.json) stays in its cell: the table keeps its rows."""
    forged = "evil | 1.000 |\n| forged-model | 1.000"
    _h_result(tmp_path / "a", run={"name": forged})
    _h_result(tmp_path / "b")
    proc = _h_cli("table", tmp_path / "a", tmp_path / "b")
    assert proc.returncode == 0, proc.stderr
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("|")]
    assert not any(ln.startswith("| forged-model") for ln in rows), proc.stdout
    assert r"| evil \| 1.000 \| \| forged-model \| 1.000 | 0.500 |" in rows
    assert all(len(re.findall(r"(?<!\\)\|", ln)) == 3 for ln in rows), rows  # every row: 2 cells


@pytest.mark.parametrize("score", [float("nan"), -0.25, float("inf"), 37.0])
def test_table_refuses_a_score_that_is_not_a_score(tmp_path, score):
    task = _h_result(tmp_path / "a", score=score)
    _h_refused(_h_cli("table", tmp_path / "a"), 1, f"{task / 'test.predicted-scores.json'} holds test score",
               "not a score in [0, 1]")


def test_eval_scores_again_instead_of_keeping_a_nan_score(tmp_path):
    """`eval` keeps finished scores on a re-run; a hand-edited NaN is not one (before: "kept; test score nan")."""
    from eval.layout import PREDICTION_DONE
    from eval.runner import scores_kept

    task = _h_result(tmp_path / "a", score=float("nan"))
    (task / PREDICTION_DONE).write_text("")
    assert not scores_kept(task)
    assert not (task / "test.predicted-scores.json").exists() and not (task / PREDICTION_DONE).exists()


def _h_zero_stride_predictions(path: Path, rows: int, labels: int = 4) -> None:
    """A few-KB pickle that rebuilds [rows, labels] tensors with zero strides over a one-element storage."""
    import pickle
    from collections import OrderedDict

    import torch

    class Claim:
        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, (torch.zeros(1).storage(), 0, (rows, labels), (0, 0), False,
                                                     OrderedDict())

    path.write_bytes(pickle.dumps({"target": Claim(), "prediction": Claim(), "prediction_logit": Claim()}))


def _h_peak_rss_mib(*args) -> tuple[subprocess.CompletedProcess, float]:
    """`hear-maeast ARGS` and its peak resident memory (MiB), measured by a parent that runs only it."""
    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stderr.write(p.stderr); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); "
             "sys.exit(p.returncode)")
    proc = subprocess.run([sys.executable, "-c", probe, str(BIN / "hear-maeast"), *map(str, args)],
                          capture_output=True, text=True, timeout=180, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    return proc, float(proc.stdout.strip().splitlines()[-1])


def test_a_predictions_pickle_claiming_a_huge_tensor_is_refused_before_it_is_made(tmp_path):
    """Reading any predictions file takes at most the arrays the task implies + 100 MiB: a 2e7-row claim with zero
    strides (a few KB on disk) is refused by name; before, it took gigabytes while being read."""
    for model in ("a", "b"):
        _h_result(tmp_path / model)
    baseline, base_mib = _h_peak_rss_mib("table", tmp_path / "a", tmp_path / "b", "--against", "a")
    assert baseline.returncode == 0, baseline.stderr
    bad = tmp_path / "b" / "t-v1-small" / "test.predictions.pkl"
    _h_zero_stride_predictions(bad, 20_000_000)
    proc, mib = _h_peak_rss_mib("table", tmp_path / "a", tmp_path / "b", "--against", "a")
    _h_refused(proc, 1, f"{bad} cannot be read", "a tensor of shape [20000000, 4], the task implies [4, 4]")
    assert mib < base_mib + 100, (mib, base_mib)


def test_table_against_pairs_only_clips_of_the_same_names(tmp_path):
    """Same targets, other clips: before, a paired cell was computed."""
    _h_result(tmp_path / "a")
    _h_result(tmp_path / "b", names=[f"other_{i}.wav" for i in range(4)])
    _h_refused(_h_cli("table", tmp_path / "a", tmp_path / "b", "--against", "a"), 1,
               "list different test clips (their clip names differ)")


def test_table_against_a_finetuned_row_says_there_is_nothing_to_pair(tmp_path):
    _h_result(tmp_path / "a")
    _h_result(tmp_path / "a-finetuned")
    (tmp_path / "a-finetuned" / "t-v1-small" / "test.predictions.pkl").unlink()  # finetune writes none
    _h_refused(_h_cli("table", tmp_path / "a", tmp_path / "a-finetuned", "--against", "a-finetuned"), 2,
               "--against a-finetuned: nothing to pair with: a fine-tuned row has no heareval predictions")


def test_a_run_json_whose_tasks_is_not_an_object_is_one_line(tmp_path):
    """eval.runs.read_run, the one reader of run.json (`eval`, `finetune` and `table`); before, `eval` said
    "internal error: AttributeError"."""
    from eval.layout import ResultsError
    from eval.runs import open_run

    _h_result(tmp_path / "toy", run={"name": "toy", "tasks": [1, 2]})
    message = f"{tmp_path / 'toy' / 'run.json'} must hold `tasks` as an object of {{task: record}}"
    _h_refused(_h_cli("table", tmp_path / "toy"), 1, message)
    with pytest.raises(ResultsError, match="must hold `tasks` as an object"):
        open_run(tmp_path / "toy", {"name": "toy"})


# -- names --
@pytest.mark.parametrize("command,name", [("eval", "../../escaped"), ("finetune", "../../escaped"),
                                          ("finetune", "ABSOLUTE"), ("probe", "../../escaped"), ("probe", "ABSOLUTE")])
def test_every_command_taking_a_name_refuses_a_path(eval_case, tmp_path, command, name):
    """One name check (eval.taskdir.plain_name) for `eval`, `finetune` and `probe --name`: before, finetune wrote
    its results outside --out (into tmp_path/escaped-finetuned, or the absolute path)."""
    task, _ = eval_case
    out = tmp_path / "deep" / "out"
    name = str(tmp_path / "escaped") if name == "ABSOLUTE" else name  # both land in tmp_path when not refused
    unchanged = eval_guard(tmp_path, out)
    eval_refused(eval_cli(command, "--tasks-dir", task, "--out", out, "--name", name), 2,
                 f"--name {name!r} is not a plain file or folder name")
    unchanged()
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))


# -- fine-tuning --
def _h_finetune(task_root: Path, ckpt: Path, out: Path, *extra) -> subprocess.CompletedProcess:
    return _h_cli("finetune", "--tasks-dir", task_root, "--model", ckpt, "--out", out, "--epochs", 1, "--device", "cpu",
                  "--batch-size", 4, *extra, timeout=300)


@pytest.fixture(scope="module")
def hostile_ft(eval_pitch_task, micro_checkpoints, tmp_path_factory) -> tuple[Path, Path, Path]:
    """(a tasks root holding a tiny copy of the pitch task: 8/4/4 clips, a micro checkpoint, a finished
    one-epoch `finetune` results folder of it)."""
    root = tmp_path_factory.mktemp("hostile_ft")
    task = root / "tasks" / EVAL_PITCH
    _h_shutil.copytree(eval_pitch_task, task)
    for split, n in (("train", 8), ("valid", 4), ("test", 4)):
        clips = _h_json.loads((task / f"{split}.json").read_text())
        keep = dict(list(clips.items())[:n])
        (task / f"{split}.json").write_text(_h_json.dumps(keep))
        for wav in (task / "16000" / split).iterdir():
            if wav.name not in keep:
                wav.unlink()
    proc = _h_finetune(root / "tasks", micro_checkpoints["msm-mae-micro"], root / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "tasks", micro_checkpoints["msm-mae-micro"], root / "out"


def _h_ft_copy(hostile_ft, tmp_path) -> tuple[Path, Path, Path]:
    """A writable copy of the tasks root and of the results: (tasks root, task folder, run folder)."""
    tasks, _, out = hostile_ft
    _h_shutil.copytree(tasks, tmp_path / "tasks")
    _h_shutil.copytree(out, tmp_path / "out")
    return tmp_path / "tasks", tmp_path / "tasks" / EVAL_PITCH, tmp_path / "out" / "hear_maeast-msm-mae-micro-finetuned"


def test_finetune_rerun_on_a_changed_task_does_not_report_the_old_score(hostile_ft, tmp_path):
    """Same task name, other labels: the fold is trained again (eval.runs.same_task), never "kept"."""
    tasks, task, run = _h_ft_copy(hostile_ft, tmp_path)
    test = _h_json.loads((task / "test.json").read_text())
    labels = sorted({label for v in test.values() for label in v})
    (task / "test.json").write_text(_h_json.dumps({c: [labels[(i + 1) % len(labels)]] for i, c in enumerate(test)}))
    proc = _h_finetune(tasks, hostile_ft[1], tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "kept (finished earlier)" not in proc.stdout + proc.stderr and "test score" in proc.stdout + proc.stderr
    assert (run / EVAL_PITCH / "test.json").read_bytes() == (task / "test.json").read_bytes()


def test_finetune_discards_a_truncated_state_and_redoes_the_fold(hostile_ft, tmp_path):
    """Before: `OSError: [Errno 22]` without a file name, on every re-run."""
    tasks, _, run = _h_ft_copy(hostile_ft, tmp_path)
    for name in ("test.finetune.json", "test.predicted-scores.json"):
        (run / EVAL_PITCH / name).unlink()
    state = run / EVAL_PITCH / "test.finetune-state.pt"
    state.write_bytes(b"PK\x03\x04" + bytes(300))  # a zip header and nothing else, as a kill mid-copy leaves
    proc = _h_finetune(tasks, hostile_ft[1], tmp_path / "out")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert f"{state} cannot be read" in log and "it is discarded and the fold starts over" in log, log[-3000:]
    assert (run / EVAL_PITCH / "test.predicted-scores.json").is_file() and not state.exists()


def test_finetune_never_adopts_a_foreign_folder_nor_shares_one_with_a_live_run(hostile_ft, tmp_path):
    """An --out/<name> without run.json is not ours (before: adopted, its files overwritten); a folder another
    process holds (pretrain's lock, now shared) is refused with its pid."""
    from hear_maeast.files import FolderLock

    tasks, ckpt, _ = hostile_ft
    foreign = tmp_path / "a" / "hear_maeast-msm-mae-micro-finetuned"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine\n")
    _h_refused(_h_finetune(tasks, ckpt, tmp_path / "a"), 2, f"{foreign} holds files (notes.txt) but no run.json")
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    held = tmp_path / "b" / "hear_maeast-msm-mae-micro-finetuned"
    lock = FolderLock(held).acquire()
    try:
        _h_refused(_h_finetune(tasks, ckpt, tmp_path / "b"), 2, f"--out {held} is in use by another process (pid "
                                                                f"{os.getpid()}")
    finally:
        lock.release()
    assert sorted(p.name for p in held.iterdir()) == [".lock"]


def test_a_broken_label_vocabulary_is_refused_by_every_command(hostile_ft, tmp_path):
    """The one vocabulary reader (eval.taskdir.read_vocabulary); before, one idx for two labels scored 1.000 on a
    task the model cannot solve, and a bad idx gave an IndexError in failed.json."""
    tasks, task, _ = _h_ft_copy(hostile_ft, tmp_path)
    for vocabulary, problem in (("idx,label\n0,a\n7,b\n", "idx [0, 7] are not 0 to 1 each once"),
                                ("idx,label\n0,a\nx,b\n", "line 3 (x,b): its idx is not an integer"),
                                ("idx,label\n0,a\n0,b\n", "idx 0 is given to two labels ('a' and 'b')")):
        (task / "labelvocabulary.csv").write_text(vocabulary)
        _h_refused(eval_cli("eval", "--tasks-dir", tasks, "--module", "hear_maeast", "--out", tmp_path / "new"), 1,
                   f"{task / 'labelvocabulary.csv'}", problem)
    _h_refused(_h_finetune(tasks, hostile_ft[1], tmp_path / "new"), 1, f"{task / 'labelvocabulary.csv'}", problem)
    assert not (tmp_path / "new").exists()


def test_finetune_refuses_a_clip_of_zero_samples_by_name(hostile_ft, tmp_path, split="train"):
    """Before: train cropped batches to zero samples; test raised ZeroDivisionError. One check for every split
    (eval.taskdir.scene_clips)."""
    import soundfile as sf

    tasks, task, _ = _h_ft_copy(hostile_ft, tmp_path)
    wav = sorted((task / "16000" / split).iterdir())[0]
    sf.write(wav, np.zeros(0, "float32"), 16000, subtype="PCM_16")
    proc = _h_finetune(tasks, hostile_ft[1], tmp_path / "new")  # results are keyed to the task's files, not its audio
    run = tmp_path / "new" / "hear_maeast-msm-mae-micro-finetuned"
    _h_refused(proc, 1, f"fine-tuning failed on {EVAL_PITCH} (see failed.json")
    assert f"{wav}: the file holds no audio (0 samples)" in _h_json.loads(
        (run / EVAL_PITCH / "failed.json").read_text())["error"]


# -- outputs on a read-only location --
def _h_read_only(folder: Path) -> list[str]:
    """A command prefix that runs the command with `folder` remounted read-only (a private mount namespace); skips
    where user namespaces are not allowed."""
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" || exit 99; exec "$@"'
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, str(folder), "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot remount a folder read-only here (unshare: {probe.stderr.strip()[:200]})")
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, str(folder)]


def test_outputs_on_a_read_only_location_are_one_line_and_keep_the_previous_results(hostile_store, tmp_path):
    """`embed -o` and `table -o` into a read-only folder (every output goes through hear_maeast.files.atomic_write):
    one line naming the path asked for (before: a temporary name), exit 1, the previous results byte for byte."""
    audio, store = hostile_store
    out = tmp_path / "ro"
    out.mkdir()
    (out / "x.npz").write_bytes(b"previous embeddings")
    (out / "table.md").write_text("previous table\n")
    _h_result(tmp_path / "results" / "m")
    prefix = _h_read_only(out)
    before = _pretrain_tree(out)
    wav = sorted(audio.iterdir())[0]
    for args, named in ((["embed", wav, "-o", out / "x.npz"], out / "x.npz"),
                        (["table", tmp_path / "results", "-o", out / "table.md"], out / "table.md")):
        proc = subprocess.run([*prefix, str(BIN / "hear-maeast"), *map(str, args)], capture_output=True, text=True,
                              timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"))
        _h_refused(proc, 1, f"Read-only file system: {named} (choose a writable output folder)")
    assert _pretrain_tree(out) == before


def test_scores_outside_0_1_are_refused_only_where_the_primary_metric_lies_in_0_1(tmp_path):
    import json as _json

    from eval.layout import ResultsError
    from eval.results import read_score

    def task_out(name, metric, score):
        out = tmp_path / name
        out.mkdir()
        (out / "task_metadata.json").write_text(_json.dumps({"evaluation": [metric]}))
        (out / "test.predicted-scores.json").write_text(_json.dumps({"test": {"test_score": score}}))
        return out

    assert read_score(task_out("dprime", "d_prime", -0.4)).mean == -0.4  # heareval's d_prime can be negative
    assert read_score(task_out("er", "segment_1s_er", 1.3)).mean == 1.3  # an error rate can exceed 1
    with pytest.raises(ResultsError, match=r"not a score in \[0, 1\]"):
        read_score(task_out("acc", "top1_acc", 1.3))
    with pytest.raises(ResultsError, match="not a finite score"):
        read_score(task_out("dprime-nan", "d_prime", float("nan")))
