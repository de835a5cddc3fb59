"""`hear-maeast eval` and `hear-maeast table` end to end: heareval's own code embeds and scores real task folders.

One session-scoped run (a third-party HEAR module, `toy_hear`, on a train/valid/test task, the real 5-fold
spoken digit task and a broken task) produces real `test.predicted-scores.json` files of both kinds; the
table tests read those.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from eval import synth
from eval.resample import resample_tree

from conftest import shared_file

SPOKEN_DIGIT = "hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz"
PITCH = "synth_pitch-v1.0-small"
DIGIT = "spoken_digit-1.0.9-small"
BROKEN = "synth_broken-v1.0-small"

pytestmark = pytest.mark.slow


def hear_maeast(*args, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hear_maeast.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.fixture(scope="session")
def eval_tasks(tmp_path_factory) -> Path:
    """A tasks root: synthetic pitch (train/valid/test), the real spoken digit (5 folds) and a task missing a clip."""
    root = tmp_path_factory.mktemp("eval_tasks")
    synth.write_suite(root, only=("synth_pitch",))
    resample_tree(shared_file(SPOKEN_DIGIT), root, 16000, progress=False)
    broken = root / BROKEN
    shutil.copytree(root / PITCH, broken)
    (broken / "16000" / "test" / "test_0007.wav").unlink()
    return root


@pytest.fixture(scope="session")
def toy_run(eval_tasks, toy_hear_env, tmp_path_factory):
    """`hear-maeast eval --module toy_hear` on the three tasks: (process, RESULTS, seconds)."""
    results = tmp_path_factory.mktemp("results")
    start = time.time()
    proc = hear_maeast("eval", "--tasks-dir", eval_tasks, "--module", "toy_hear", "--grid", "faster",
                       "--out", results, env=toy_hear_env)
    return proc, results, time.time() - start


def test_eval_scores_every_task_with_any_hear_module_and_exits_1_after_a_failure(toy_run):
    proc, results, _ = toy_run
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # the broken task, after the others
    run_dir = results / "toy_hear-default"  # each model its own folder
    run = json.loads((run_dir / "run.json").read_text())
    import hear_maeast

    assert run["module"] == "toy_hear" and run["model_file_path"] == "" and run["model_options"] == {}
    assert run["hear_maeast_version"] == hear_maeast.__version__ and run["sample_rate"] == 16000
    assert "git_commit" in run and run["grid"] == "faster"
    assert run["tasks"][PITCH]["status"] == run["tasks"][DIGIT]["status"] == "done"
    assert run["tasks"][BROKEN]["status"] == "failed"
    assert "FAILED" in proc.stdout and BROKEN in proc.stdout

    pitch = json.loads((run_dir / PITCH / "test.predicted-scores.json").read_text())
    digit = json.loads((run_dir / DIGIT / "test.predicted-scores.json").read_text())
    assert 0 <= pitch["test"]["test_score"] <= 1  # train/valid/test: one test score
    assert sorted(k for k in digit if k.startswith("fold")) == [f"fold0{i}" for i in range(5)]  # 5 folds
    assert 0 <= digit["aggregated_scores"]["test_score_mean"] <= 1
    assert pitch["test"]["test_score"] > 0.5  # 8 notes, chance 0.125: log-mel frames hear pitch
    failure = json.loads((run_dir / BROKEN / "failed.json").read_text())
    assert "test_0007.wav" in failure["error"]  # what went wrong, for the person reading it


def test_eval_resumes_without_recomputing(toy_run, eval_tasks, toy_hear_env):
    _, results, first_seconds = toy_run
    scores = results / "toy_hear-default" / PITCH / "test.predicted-scores.json"
    embeddings = results / "toy_hear-default" / PITCH / "train.embeddings.npy"
    before = scores.stat().st_mtime_ns, embeddings.stat().st_mtime_ns
    proc = hear_maeast("eval", "--tasks-dir", eval_tasks, "--module", "toy_hear", "--grid", "faster",
                       "--out", results, "--task", PITCH, "--task", DIGIT, env=toy_hear_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (scores.stat().st_mtime_ns, embeddings.stat().st_mtime_ns) == before
    assert proc.stdout.count("embeddings: kept") == 2 and proc.stdout.count("predictions: kept") == 2


def test_eval_refuses_a_task_without_audio_at_the_model_rate(tmp_path, toy_hear_env):
    with tarfile.open(shared_file(SPOKEN_DIGIT)) as tf:
        tf.extractall(tmp_path / "x", filter="data")
    tasks_44k = tmp_path / "x" / "hear-2021.0.6" / "tasks"
    proc = hear_maeast("eval", "--tasks-dir", tasks_44k, "--module", "toy_hear", "--out", tmp_path / "r",
                       env=toy_hear_env)
    assert proc.returncode == 2
    assert "spoken_digit-1.0.9-small has no audio at 16000 Hz (it has: 44100)" in proc.stderr
    assert "hear-maeast tasks resample" in proc.stderr
    assert not list((tmp_path / "r").glob("*/*/*.npy"))  # refused before computing anything


def test_eval_refuses_a_folder_that_is_not_a_task(tmp_path, toy_hear_env):
    (tmp_path / "tasks" / "notes").mkdir(parents=True)
    proc = hear_maeast("eval", "--tasks-dir", tmp_path / "tasks", "--module", "toy_hear", "--out", tmp_path / "r",
                       env=toy_hear_env)
    assert proc.returncode == 2 and "notes is not a HEAR task folder: task_metadata.json is missing" in proc.stderr


def test_a_good_representation_beats_a_poor_one_on_the_synthetic_pitch_task(eval_tasks, toy_run, toy_hear_env):
    """Model options reach load_model, get their own results folder, and the synthetic task tells models apart."""
    _, results, _ = toy_run
    proc = hear_maeast("eval", "--tasks-dir", eval_tasks, "--module", "toy_hear", "--model-options",
                       '{"kind": "loudness"}', "--grid", "faster", "--out", results, "--task", PITCH, env=toy_hear_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    poor = json.loads((results / "toy_hear-default-kind=loudness" / PITCH / "test.predicted-scores.json").read_text())
    good = json.loads((results / "toy_hear-default" / PITCH / "test.predicted-scores.json").read_text())
    assert good["test"]["test_score"] > poor["test"]["test_score"] + 0.3


def test_eval_runs_the_package_module_on_a_checkpoint(eval_tasks, micro_checkpoints, toy_hear_env, tmp_path):
    ckpt = micro_checkpoints["msm-mae-micro"]
    proc = hear_maeast("eval", "--tasks-dir", eval_tasks, "--model", ckpt, "--grid", "faster", "--out", tmp_path,
                       "--task", PITCH, env=toy_hear_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "hear_maeast-msm-mae-micro"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["module"] == "hear_maeast" and run["model_file_path"] == str(ckpt.resolve())
    assert 0 <= json.loads((run_dir / PITCH / "test.predicted-scores.json").read_text())["test"]["test_score"] <= 1


# ---------------------------------------------------------------------------------------------- table
def test_table_from_real_heareval_scores_of_both_kinds(toy_run, tmp_path, toy_hear_env):
    _, results, _ = toy_run
    md, csv_path, png = tmp_path / "leaderboard.md", tmp_path / "leaderboard.csv", tmp_path / "leaderboard.png"
    proc = hear_maeast("table", results / "toy_hear-default", "-o", md, "--csv", csv_path, "--plot", png,
                       env=toy_hear_env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == md.read_text()
    lines = md.read_text().splitlines()
    assert lines[0] == f"| model | {DIGIT} | {BROKEN} | {PITCH} |"
    assert lines[1] == "|---|---:|---:|---:|"
    digit = json.loads((results / "toy_hear-default" / DIGIT / "test.predicted-scores.json").read_text())
    pitch = json.loads((results / "toy_hear-default" / PITCH / "test.predicted-scores.json").read_text())
    agg = digit["aggregated_scores"]
    assert lines[2] == (f"| toy_hear-default | {agg['test_score_mean']:.3f}±{agg['test_score_std']:.3f} | failed | "
                        f"{pitch['test']['test_score']:.3f} |")
    assert len(lines) == 3  # no reference row: none of these is one of the 19 HEAR 2021 tasks
    rows = list(csv.reader(io.StringIO(csv_path.read_text())))
    assert rows[0][0] == "model" and rows[1][2] == "failed" and re.fullmatch(r"0\.\d{3}±0\.\d{3}", rows[1][1])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_adds_reference_rows_for_hear_2021_tasks(toy_run, tmp_path):
    """Models first, then the HEAR 2021 best and the MSM-MAE paper where the task is one of theirs."""
    from eval.table import write_table

    _, results, _ = toy_run
    pitch = results / "toy_hear-default" / PITCH / "test.predicted-scores.json"
    digit = results / "toy_hear-default" / DIGIT / "test.predicted-scores.json"
    for model in ("model_a", "model_b"):
        for task, source in (("speech_commands-v0.0.2-full", pitch), ("tfds_crema_d-1.0.0-full", digit)):
            (tmp_path / model / task).mkdir(parents=True)
            shutil.copy(source, tmp_path / model / task)
    lines = write_table([tmp_path]).splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| model_a", "| model_b", "| HEAR 2021 best",
                                                            "| MSM-MAE paper"]
    assert lines[-2] == "| HEAR 2021 best | 0.978 | 0.752 |"
    assert lines[-1] == "| MSM-MAE paper |  | 0.734 |"
