"""The official HEAR tools, as installed, driving this module: hear-validator and both heareval runners."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import BIN, run_env, shared_file

pytestmark = pytest.mark.slow


def validate(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "hear-validator"), "hear_maeast", *args], capture_output=True, text=True,
                          env=run_env(), timeout=600)


@pytest.mark.parametrize("name", ["msm-mae-micro", "mae-ast-patch-micro", "mae-ast-frame-micro"])
def test_hear_validator_passes_a_checkpoint_of_each_family(micro_checkpoints, name):
    res = validate("-m", str(micro_checkpoints[name]))
    assert "Looks good!" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]


def test_hear_validator_passes_the_default_weights():
    res = validate()
    assert "Looks good!" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]


def test_hear_validator_fails_loudly_on_a_missing_checkpoint(tmp_path):
    res = validate("-m", str(tmp_path / "missing.safetensors"))
    assert "Looks good!" not in res.stdout and "missing.safetensors" in res.stdout + res.stderr


@pytest.fixture(scope="module")
def digit_task_16k(tmp_path_factory):
    """The real HEAR spoken digit task (44.1 kHz archive) resampled to 16 kHz."""
    from eval.resample import resample_tree

    root = tmp_path_factory.mktemp("tasks")
    resample_tree(shared_file("hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz"), root, 16000, progress=False)
    return root


def test_heareval_runners_end_to_end_on_the_real_spoken_digit_task(digit_task_16k, micro_checkpoints, tmp_path):
    emb = tmp_path / "embeddings"
    subprocess.run(
        [sys.executable, "-m", "heareval.embeddings.runner", "hear_maeast", "--model",
         str(micro_checkpoints["msm-mae-micro"]), "--tasks-dir", str(digit_task_16k), "--embeddings-dir", str(emb)],
        check=True, env=run_env(), timeout=900, cwd=tmp_path,
    )
    task = next((emb / "hear_maeast").iterdir())
    assert (task / ".done.embeddings").exists() or any(task.glob("*.embeddings.npy"))
    subprocess.run([sys.executable, "-m", "heareval.predictions.runner", str(task), "--grid", "fast"],
                   check=True, env=run_env(), timeout=900, cwd=tmp_path)
    scores = json.loads((task / "test.predicted-scores.json").read_text())
    acc = scores["aggregated_scores"]["test_score_mean"]
    assert 0.0 <= acc <= 1.0
