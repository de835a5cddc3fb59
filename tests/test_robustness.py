"""Bad inputs, fed the way a careless or hostile user would: each is refused with one line naming what was wrong and
what to do (exit 2 for bad options or inputs, 1 for failed work), and nothing outside the output folder changes.
Real subprocesses for the command lines. Each part of the package has its own section."""

from __future__ import annotations


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
    from pretrain.runfolder import FolderLock

    lock = FolderLock(tmp_path / "run").acquire()  # as a live run holds it
    try:
        err = _pretrain(tmp_path, pretrain_lms, "--steps", 2, expect=2)
    finally:
        lock.release()
    assert f"--out {tmp_path / 'run'} is in use by another process (pid {os.getpid()} on" in err.strip().splitlines()[-1]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]
