"""eval.paired: the exact McNemar test and the reading of heareval's predictions pickles (fast; the end-to-end
check on real heareval runs is tests/test_eval_runner.py::test_table_against_pairs_the_same_test_clips)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

import numpy as np

from eval.paired import mcnemar_p, read_own_predictions, read_predictions
from eval.layout import ResultsError

from conftest import REPO, run_env


def test_mcnemar_p_is_scipys_exact_binomial_test():
    from scipy.stats import binomtest

    for a in range(0, 25):
        for b in range(0, 25):
            expected = binomtest(a, a + b, 0.5).pvalue if a + b else 1.0
            assert mcnemar_p(a, b) == pytest.approx(expected, rel=1e-9, abs=1e-15), (a, b)


def write_predictions(path, target_idx, predicted_idx, labels=4):
    eye = torch.eye(labels)
    with open(path, "wb") as f:  # as heareval writes it (pickle.dump of a dict of tensors)
        pickle.dump({"target": eye[target_idx], "prediction": eye[predicted_idx] * 0.9,
                     "prediction_logit": eye[predicted_idx]}, f)


def test_read_predictions_gives_label_indices(tmp_path):
    write_predictions(tmp_path / "test.predictions.pkl", [0, 3, 2], [0, 1, 2])
    target, predicted = read_predictions(tmp_path / "test.predictions.pkl", (3, 4))
    assert target.tolist() == [0, 3, 2] and predicted.tolist() == [0, 1, 2]


class Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("content", [pickle.dumps({"target": Boom()}), b"\x80\x04garbage", b""])
def test_a_hostile_or_broken_predictions_file_is_refused_in_one_line(tmp_path, content, monkeypatch):
    path = tmp_path / "test.predictions.pkl"
    path.write_bytes(content)
    monkeypatch.chdir(tmp_path)  # where os.system's `touch` would land if the pickle ran it
    with pytest.raises(ResultsError, match=r"test\.predictions\.pkl cannot be read") as e:
        read_predictions(path, (3, 4))
    assert "\n" not in str(e.value) and not (tmp_path / "pwned").exists()


def event_predictions(path, start=np.float64(275.0)):
    frames = torch.rand(6, 3)
    with open(path, "wb") as f:  # as heareval writes an event task's (task_predictions.py, EventPredictionModel)
        pickle.dump({"target": (frames > 0.5).float(), "prediction": frames, "prediction_logit": frames,
                     "target_events": {"a.wav": [{"label": "tone", "start": 250.0, "end": 300.0}]},
                     "predicted_events": {"a.wav": [{"label": "tone", "start": start, "end": np.float64(435.0)}]},
                     "timestamp": torch.arange(6.0)}, f)
    return frames


def test_an_event_tasks_own_predictions_load_with_their_numpy_scalars(tmp_path):
    frames = event_predictions(tmp_path / "test.predictions.pkl")
    found = read_own_predictions(tmp_path / "test.predictions.pkl")
    assert torch.equal(found["prediction"], frames) and found["timestamp"].tolist() == [0, 1, 2, 3, 4, 5]
    assert found["predicted_events"]["a.wav"][0]["start"] == 275.0
    with pytest.raises(ResultsError, match="cannot be read"):  # the task-shaped reader takes tensors only
        read_predictions(tmp_path / "test.predictions.pkl", (6, 3))


def test_a_numpy_scalar_that_is_not_a_number_or_a_foreign_call_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    event_predictions(tmp_path / "test.predictions.pkl", start=Boom())
    with pytest.raises(pickle.UnpicklingError, match="system, which a predictions file never holds"):
        read_own_predictions(tmp_path / "test.predictions.pkl")
    path = tmp_path / "text.predictions.pkl"
    with open(path, "wb") as f:
        pickle.dump({"start": np.str_("x")}, f)  # numpy's scalar rebuild with a string dtype
    with pytest.raises(ValueError, match="not a number"):
        read_own_predictions(path)
    assert not (tmp_path / "pwned").exists()


def fake_model(folder, task, target, predicted, score, metric="top1_acc"):
    out = folder / task
    out.mkdir(parents=True)
    (out / "task_metadata.json").write_text(json.dumps({
        "task_name": "t", "embedding_type": "scene", "prediction_type": "multiclass", "split_mode": "trainvaltest",
        "evaluation": [metric], "splits": ["train", "valid", "test"]}))
    (out / "labelvocabulary.csv").write_text("idx,label\n" + "".join(f"{i},l{i}\n" for i in range(4)))
    for split, n in (("train", 4), ("valid", 2), ("test", len(target))):
        (out / f"{split}.json").write_text(json.dumps({f"{split}_{i}.wav": [f"l{i % 4}"] for i in range(n)}))
    (out / "test.predicted-scores.json").write_text(json.dumps({"test": {"test_score": score}}))
    write_predictions(out / "test.predictions.pkl", target, predicted)


def table(*args):
    return subprocess.run([sys.executable, "-m", "hear_maeast.cli", "table", *map(str, args)], capture_output=True,
                          text=True, env=run_env(), cwd=REPO, timeout=120)


def test_table_against_counts_the_clips_each_model_alone_got_right(tmp_path):
    target = [0, 1, 2, 3, 0, 1, 2, 3]
    for model, predicted, score in (("a", [0, 1, 2, 3, 0, 1, 0, 0], 0.75),  # wrong on clips 6, 7
                                    ("b", [1, 0, 2, 3, 0, 1, 2, 0], 0.625)):  # wrong on clips 0, 1, 7
        fake_model(tmp_path / model, "t-v1-small", target, predicted, score)
        fake_model(tmp_path / model, "u-v1-small", target, predicted, score, metric="mAP")  # no per-clip right/wrong
    proc = table(tmp_path / "a", tmp_path / "b", "--against", "a")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = lines.index("| vs a | t-v1-small | u-v1-small |")
    assert lines[start + 2] == "| b | 1:2 p=1 |  |"  # b alone right on clip 6; a alone right on clips 0 and 1
    assert "exact two-sided McNemar" in proc.stdout
    # and the other way round
    proc = table(tmp_path / "a", tmp_path / "b", "--against", "b")
    assert "| a | 2:1 p=1 |  |" in proc.stdout.splitlines()


def test_table_against_refuses_an_unknown_model_and_unpaired_clips(tmp_path):
    fake_model(tmp_path / "a", "t-v1-small", [0, 1, 2, 3], [0, 1, 2, 3], 1.0)
    fake_model(tmp_path / "b", "t-v1-small", [0, 1, 3, 2], [0, 1, 2, 3], 0.5)  # same sizes, other clips
    proc = table(tmp_path / "a", tmp_path / "b", "--against", "c")
    assert proc.returncode == 2 and proc.stderr == "error: --against c: no such model in these results (models: a, b)\n"
    proc = table(tmp_path / "a", tmp_path / "b", "--against", "a")
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1 and "list different test clips" in proc.stderr
