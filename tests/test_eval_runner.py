"""`hear-maeast eval` and `hear-maeast table` end to end: heareval's own code embeds and scores real task folders.

One session-scoped run (a third-party HEAR module, `toy_hear`, on a train/valid/test task, the real 5-fold
spoken digit task and a broken task) produces real `test.predicted-scores.json` files of both kinds; the
table tests read those.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import json
import pickle
import re
import shutil
import statistics
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


def heareval_accuracy(task_out: Path, fold: str) -> float:
    """top1 accuracy of heareval's own test predictions for one fold (its `<fold>.predictions.pkl`)."""
    with open(task_out / f"{fold}.predictions.pkl", "rb") as f:
        predictions = pickle.load(f)  # {"target": [n, labels] one-hot, "prediction": [n, labels]}
    return (predictions["prediction"].argmax(1) == predictions["target"].argmax(1)).float().mean().item()


def test_eval_scores_every_task_with_any_hear_module_and_exits_1_after_a_failure(toy_run, eval_tasks):
    proc, results, _ = toy_run
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # the broken task, after the others
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: 1 of 3 tasks failed ({BROKEN}); the others are scored. What went wrong: "
        f"{results / 'toy_hear-default'}/<task>/failed.json; run the same command again to retry them")
    assert "Traceback" not in proc.stderr
    run_dir = results / "toy_hear-default"  # each model its own folder
    run = json.loads((run_dir / "run.json").read_text())
    import hear_maeast

    assert run["module"] == "toy_hear" and run["model_file_path"] == "" and run["model_options"] == {}
    assert run["weights_file"] is None and run["weights_sha256"] is None  # a module with no weights file
    assert run["hear_maeast_version"] == hear_maeast.__version__ and run["sample_rate"] == 16000
    assert "git_commit" in run and run["grid"] == "faster"
    assert run["tasks"][PITCH]["status"] == run["tasks"][DIGIT]["status"] == "done"
    assert run["tasks"][BROKEN]["status"] == "failed"
    assert "FAILED" in proc.stdout and BROKEN in proc.stdout

    # the score is heareval's accuracy of its own predictions on the 40 test clips, labelled as test.json says
    pitch = json.loads((run_dir / PITCH / "test.predicted-scores.json").read_text())
    assert pitch["test"]["test_score"] == pytest.approx(heareval_accuracy(run_dir / PITCH, "test"), abs=1e-6)
    with open(run_dir / PITCH / "test.predictions.pkl", "rb") as f:
        targets = pickle.load(f)["target"].argmax(1).tolist()
    vocabulary = [line.split(",")[1] for line in (eval_tasks / PITCH / "labelvocabulary.csv").read_text().splitlines()[1:]]
    test_labels = json.loads((eval_tasks / PITCH / "test.json").read_text())
    assert collections.Counter(vocabulary[i] for i in targets) == collections.Counter(
        labels[0] for labels in test_labels.values())
    assert run["tasks"][PITCH]["score"] == f"{pitch['test']['test_score']:.3f}"
    assert pitch["test"]["test_score"] > 0.5  # 8 notes, chance 0.125: log-mel frames hear pitch

    # k-fold: one score per fold, each heareval's accuracy on that fold, and their mean and sample std
    digit = json.loads((run_dir / DIGIT / "test.predicted-scores.json").read_text())
    folds = [f"fold0{i}" for i in range(5)]
    assert sorted(k for k in digit if k.startswith("fold")) == folds
    accuracies = [heareval_accuracy(run_dir / DIGIT, fold) for fold in folds]
    assert [digit[f]["test_score"] for f in folds] == pytest.approx(accuracies, abs=1e-6)
    assert digit["aggregated_scores"]["test_score_mean"] == pytest.approx(statistics.mean(accuracies), abs=1e-6)
    assert digit["aggregated_scores"]["test_score_std"] == pytest.approx(statistics.stdev(accuracies), abs=1e-6)
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
    assert proc.returncode == 1  # a task folder that cannot be used: failed work
    assert "spoken_digit-1.0.9-small has no audio at 16000 Hz (it has: 44100)" in proc.stderr
    assert "hear-maeast tasks resample" in proc.stderr
    assert not list((tmp_path / "r").glob("*/*/*.npy"))  # refused before computing anything


def test_eval_refuses_a_folder_that_is_not_a_task(tmp_path, toy_hear_env):
    (tmp_path / "tasks" / "notes").mkdir(parents=True)
    proc = hear_maeast("eval", "--tasks-dir", tmp_path / "tasks", "--module", "toy_hear", "--out", tmp_path / "r",
                       env=toy_hear_env)
    assert proc.returncode == 1 and "notes is not a HEAR task folder: task_metadata.json is missing" in proc.stderr


def test_a_good_representation_beats_a_poor_one_on_the_synthetic_pitch_task(eval_tasks, toy_run, toy_hear_env):
    """Model options reach load_model, get their own results folder, and the synthetic task tells models apart."""
    _, results, _ = toy_run
    proc = hear_maeast("eval", "--tasks-dir", eval_tasks, "--module", "toy_hear", "--model-options",
                       '{"features": "loudness"}', "--grid", "faster", "--out", results, "--task", PITCH,
                       env=toy_hear_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    poor = json.loads((results / "toy_hear-default-features=loudness" / PITCH / "test.predicted-scores.json").read_text())
    good = json.loads((results / "toy_hear-default" / PITCH / "test.predicted-scores.json").read_text())
    assert good["test"]["test_score"] > poor["test"]["test_score"] + 0.3


def heareval_test_order(task_dir: Path, split: str) -> list[str]:
    """The clips of `split` in the order heareval lists them in its embeddings and predictions, following its code
    (heareval.embeddings.task_embeddings: one random.Random(0) shuffles each split's keys, splits in metadata order)."""
    import random

    prng = random.Random()
    prng.seed(0)
    for s in json.loads((task_dir / "task_metadata.json").read_text())["splits"]:
        keys = list(json.loads((task_dir / f"{s}.json").read_text()))
        prng.shuffle(keys)
        if s == split:
            return keys
    raise AssertionError(f"no split {split}")


def test_table_against_pairs_the_same_test_clips(eval_tasks, toy_run, toy_hear_env, tmp_path):
    """Two models' predictions list the same clips in heareval's order, and each paired cell agrees with heareval's
    own scores: (a - b) / clips is the difference of the two test accuracies; p is scipy's exact binomial test."""
    from scipy.stats import binomtest

    _, results, _ = toy_run
    poor = "toy_hear-default-features=loudness"
    proc = hear_maeast("eval", "--tasks-dir", eval_tasks, "--module", "toy_hear", "--model-options",
                       '{"features": "loudness"}', "--grid", "faster", "--out", results, "--task", PITCH,
                       env=toy_hear_env)  # the same run as the test above: resumed when that one ran first
    assert proc.returncode == 0, proc.stderr[-3000:]
    vocabulary = [line.split(",")[1] for line in (eval_tasks / PITCH / "labelvocabulary.csv").read_text().splitlines()[1:]]
    test_labels = json.loads((eval_tasks / PITCH / "test.json").read_text())
    expected = [test_labels[clip][0] for clip in heareval_test_order(eval_tasks / PITCH, "test")]
    for model in ("toy_hear-default", poor):
        with open(results / model / PITCH / "test.predictions.pkl", "rb") as f:
            targets = pickle.load(f)["target"].argmax(1).tolist()
        assert [vocabulary[i] for i in targets] == expected

    md = tmp_path / "leaderboard.md"
    proc = hear_maeast("table", results / "toy_hear-default", results / poor, "--against", "toy_hear-default",
                       "-o", md, env=toy_hear_env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = md.read_text().splitlines()
    start = lines.index(f"| vs toy_hear-default | {DIGIT} | {BROKEN} | {PITCH} |")
    assert len(lines) > start + 3 and lines[start + 3] == ""  # one row: the other model
    cell = lines[start + 2].split(" | ")[-1].rstrip(" |")
    assert lines[start + 2].startswith(f"| {poor} |  |  | ")  # no digit result, a failed task: empty cells
    a, b, p, star = re.fullmatch(r"(\d+):(\d+) p=([0-9.e-]+)(\*?)", cell).groups()
    scores = {m: json.loads((results / m / PITCH / "test.predicted-scores.json").read_text())["test"]["test_score"]
              for m in ("toy_hear-default", poor)}
    assert (int(a) - int(b)) / len(expected) == pytest.approx(scores[poor] - scores["toy_hear-default"], abs=1e-6)
    exact = binomtest(int(a), int(a) + int(b), 0.5).pvalue
    assert p == f"{exact:.2g}" and star == "*" and exact < 0.05  # a 0.3 accuracy gap on 40 clips is no luck


def test_eval_keys_results_to_the_weights_and_refuses_a_retrained_checkpoint(eval_tasks, micro_checkpoints,
                                                                           toy_hear_env, tmp_path):
    """The package's module on a checkpoint; re-trained in place, the checkpoint is not resumed from stale results."""
    ckpt, out = tmp_path / "model.safetensors", tmp_path / "results"
    shutil.copy(micro_checkpoints["msm-mae-micro"], ckpt)
    proc = hear_maeast("eval", "--tasks-dir", eval_tasks, "--model", ckpt, "--grid", "faster", "--out", out,
                       "--task", PITCH, env=toy_hear_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = out / "hear_maeast-model"
    run = json.loads((run_dir / "run.json").read_text())
    old_sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert run["module"] == "hear_maeast" and run["weights_file"] == str(ckpt.resolve())
    assert run["weights_sha256"] == old_sha
    scores = run_dir / PITCH / "test.predicted-scores.json"
    assert json.loads(scores.read_text())["test"]["test_score"] == pytest.approx(
        heareval_accuracy(run_dir / PITCH, "test"), abs=1e-6)

    import torch

    from hear_maeast.checkpoint import save_checkpoint
    from hear_maeast.config import get_preset
    from hear_maeast.model import MaskedAutoencoder

    torch.manual_seed(1)  # "re-trained": other weights in the same file
    save_checkpoint(MaskedAutoencoder(get_preset("msm-mae-micro")), ckpt)
    before = scores.stat().st_mtime_ns
    proc = hear_maeast("eval", "--tasks-dir", eval_tasks, "--model", ckpt, "--grid", "faster", "--out", out,
                       "--task", PITCH, env=toy_hear_env)
    new_sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {run_dir} holds results that are not this model's: they are of other weights (sha256 "
        f"{old_sha[:12]}..., now {new_sha[:12]}... for {ckpt.resolve()}). Pass --replace-stale to delete them and "
        f"score this model there, or give this run its own folder with --name or --out")
    assert scores.stat().st_mtime_ns == before


def test_a_results_folder_of_other_weights_is_refused_or_replaced(tmp_path):
    from eval.runs import open_run, weights_file
    from hear_maeast.api import DEFAULT_WEIGHTS
    from hear_maeast.errors import BadInput

    assert weights_file("hear_maeast") == DEFAULT_WEIGHTS and weights_file("toy_hear") is None
    config = {"name": "m", "module": "hear_maeast", "model_options": {}, "weights_file": "/x/m.safetensors",
              "weights_sha256": "a" * 64}
    run_dir = tmp_path / "m"
    open_run(run_dir, config)
    (run_dir / PITCH).mkdir()
    assert open_run(run_dir, config) == {} and (run_dir / PITCH).is_dir()  # the same model resumes
    retrained = {**config, "weights_sha256": "b" * 64}
    with pytest.raises(BadInput, match=re.escape("of other weights (sha256 aaaaaaaaaaaa..., now bbbbbbbbbbbb...")):
        open_run(run_dir, retrained)
    assert (run_dir / PITCH).is_dir()
    open_run(run_dir, retrained, replace_stale=True)
    assert not (run_dir / PITCH).exists() and json.loads((run_dir / "run.json").read_text())["weights_sha256"] == "b" * 64

    previous_version = {k: v for k, v in config.items() if not k.startswith("weights")}  # recorded no weights
    (run_dir / "run.json").write_text(json.dumps(previous_version))
    with pytest.raises(BadInput, match="written by an earlier hear-maeast that did not record which weights"):
        open_run(run_dir, config)

    finetuned = {**config, "protocol": "finetune", "model_sha256": "a" * 64, "options": {}}  # the other protocol:
    with pytest.raises(BadInput, match=r"holds probe results \(heareval's\) of `hear-maeast eval`"):  # never deleted
        open_run(run_dir, finetuned, replace_stale=True)
    assert json.loads((run_dir / "run.json").read_text()) == previous_version


def test_eval_and_table_read_a_single_fold_result_alike(toy_run, eval_tasks, toy_hear_env, tmp_path):
    """heareval writes no aggregate for a k-fold result of one fold: `eval` and `table` read it with one reader."""
    from eval.table import write_table

    _, results, _ = toy_run
    shutil.copytree(results / "toy_hear-default", tmp_path / "toy_hear-default")
    scores_path = tmp_path / "toy_hear-default" / DIGIT / "test.predicted-scores.json"
    scores = json.loads(scores_path.read_text())
    scores_path.write_text(json.dumps({"fold00": scores["fold00"], "hparams": scores["hparams"]}))
    proc = hear_maeast("eval", "--tasks-dir", eval_tasks, "--module", "toy_hear", "--grid", "faster",
                       "--out", tmp_path, "--task", DIGIT, env=toy_hear_env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "predictions: kept" in proc.stdout
    expected = f"{scores['fold00']['test_score']:.3f}"
    run = json.loads((tmp_path / "toy_hear-default" / "run.json").read_text())
    assert run["tasks"][DIGIT] == {**run["tasks"][DIGIT], "status": "done", "score": expected}
    assert write_table([tmp_path]).splitlines()[2].startswith(f"| toy_hear-default | {expected} | ")


def test_make_eval_notes_the_nearly_silent_spoken_digit_task(eval_tasks):
    from eval.make_eval import quiet_tasks

    notes = quiet_tasks(eval_tasks)  # the synthetic tasks peak far higher
    assert len(notes) == 1 and notes[0].startswith(f"note: {DIGIT} is nearly silent: its clips peak at ")
    lo, hi = map(int, re.search(r"peak at (\d+)-(\d+) LSB", notes[0]).groups())
    assert 1 <= lo <= hi <= 3


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
    # no reference row (none is one of the 19 HEAR 2021 tasks); each task's size and chance level (10 digits, 8 notes)
    # and the majority level (a balanced digit task: a fold's majority elsewhere is scarce in it, so below chance)
    assert lines[3:] == ["| clips | 100 in 5 folds | 120/40/40 | 120/40/40 |", "| chance | 0.100 | 0.125 | 0.125 |",
                         "| majority | 0.070 | 0.250 | 0.250 |"]
    rows = list(csv.reader(io.StringIO(csv_path.read_text())))
    assert rows[0][0] == "model" and rows[1][2] == "failed" and re.fullmatch(r"0\.\d{3}±0\.\d{3}", rows[1][1])
    assert rows[2] == ["clips", "100 in 5 folds", "120/40/40", "120/40/40"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def fake_task_result(task_out: Path, clips: dict[str, int], score: float) -> None:
    """A results folder of one task as heareval leaves it: copies of the task's files and a score file."""
    task_out.mkdir(parents=True)
    trainvaltest = list(clips) == ["train", "valid", "test"]
    (task_out / "task_metadata.json").write_text(json.dumps({
        "task_name": task_out.name.split("-")[0], "embedding_type": "scene", "prediction_type": "multiclass",
        "split_mode": "trainvaltest" if trainvaltest else "new_split_kfold", "evaluation": ["top1_acc"],
        "splits": list(clips)}))
    (task_out / "labelvocabulary.csv").write_text("idx,label\n" + "".join(f"{i},l{i}\n" for i in range(4)))
    for split, n in clips.items():
        (task_out / f"{split}.json").write_text(json.dumps({f"{split}_{i}.wav": [f"l{i % 4}"] for i in range(n)}))
    scores = {"test": {"test_score": score}} if trainvaltest else {
        **{split: {"test_score": score} for split in clips}, "aggregated_scores": {"test_score_mean": score,
                                                                                    "test_score_std": 0.0}}
    (task_out / "test.predicted-scores.json").write_text(json.dumps(scores))


SC_FULL, CREMA_D, ESC50 = "speech_commands-v0.0.2-full", "tfds_crema_d-1.0.0-full", "esc50-v2.0.0-full"
OFFICIAL_SIZES = {SC_FULL: {"train": 85111, "valid": 10102, "test": 5290},  # 100503 clips, as published
                  CREMA_D: {f"fold0{i}": 1488 - 2 * (i == 4) for i in range(5)},  # 7438 clips in 5 folds
                  ESC50: {f"fold0{i}": 400 for i in range(5)}}


def test_table_adds_reference_rows_for_hear_2021_tasks(tmp_path):
    """Models first, then the best published score, the HEAR 2021 best and the MSM-MAE paper where the task is one
    of theirs; a note names each best published cell's model and source (ESC-50's is later than 2021)."""
    from eval.table import write_table

    for model in ("model_a", "model_b"):
        for task, clips in OFFICIAL_SIZES.items():
            fake_task_result(tmp_path / model / task, clips, 0.5)
    lines = write_table([tmp_path]).splitlines()
    assert lines[0] == f"| model | {ESC50} | {SC_FULL} | {CREMA_D} |"
    assert [line.split(" | ")[0] for line in lines[2:9]] == ["| model_a", "| model_b", "| best published",
                                                             "| HEAR 2021 best", "| MSM-MAE paper", "| clips",
                                                             "| chance"]
    assert lines[4:10] == ["| best published | 0.967 | 0.978 | 0.752 |", "| HEAR 2021 best | 0.947 | 0.978 | 0.752 |",
                           "| MSM-MAE paper |  |  | 0.734 |",
                           "| clips | 2000 in 5 folds | 85111/10102/5290 | 7438 in 5 folds |",
                           "| chance | 0.250 | 0.250 | 0.250 |",
                           "| majority | 0.250 | 0.250 | 0.250 |"]  # labels l0..l3 in turn: l0 (first of a tie) holds 1/4
    note = lines[11]
    assert note.startswith(f"`best published`: {ESC50}: CED-Base (CED 2023); {SC_FULL}: IUT-CSE MLP (keyword) "
                           f"(HEAR 2021); {CREMA_D}: GURA Fuse Hubert (HEAR 2021). Sources: CED 2023: Dinkel et al."), note
    assert "HEAR 2021: hearbenchmark.com leaderboard" in note and "PMLR 176" in note


def test_reference_rows_attach_only_to_the_official_tasks(tmp_path):
    """The 85-clip Speech Commands subset named like the full task gets no reference row (the full task has 100503)."""
    from eval.table import write_table

    fake_task_result(tmp_path / "model_a" / SC_FULL, {"train": 62, "valid": 12, "test": 11}, 0.909)
    fake_task_result(tmp_path / "model_a" / CREMA_D, OFFICIAL_SIZES[CREMA_D], 0.5)
    lines = write_table([tmp_path]).splitlines()
    assert lines[0] == f"| model | {SC_FULL} | {CREMA_D} |"
    assert lines[3:6] == ["| best published |  | 0.752 |", "| HEAR 2021 best |  | 0.752 |", "| MSM-MAE paper |  | 0.734 |"]
    assert lines[6] == "| clips | 62/12/11 | 7438 in 5 folds |"
    assert SC_FULL not in lines[-1] and f"{CREMA_D}: GURA Fuse Hubert (HEAR 2021)" in lines[-1]


def test_table_keeps_two_models_of_the_same_name_apart(toy_run, tmp_path):
    from eval.table import write_table

    _, results, _ = toy_run
    for where, score in (("a", 0.111), ("b", 0.222)):
        shutil.copytree(results / "toy_hear-default", tmp_path / where / "toy_hear-default")
        (tmp_path / where / "toy_hear-default" / PITCH / "test.predicted-scores.json").write_text(
            json.dumps({"test": {"test_score": score}}))
    lines = write_table([tmp_path / "a", tmp_path / "b", tmp_path / "a"]).splitlines()  # `a` twice: read once
    rows = [line for line in lines if line.startswith("| toy_hear-default")]
    assert [row.split(" | ")[0] for row in rows] == [f"| toy_hear-default ({tmp_path / w / 'toy_hear-default'})"
                                                      for w in ("a", "b")]
    assert rows[0].endswith("| 0.111 |") and rows[1].endswith("| 0.222 |")


def test_table_reads_results_written_by_the_previous_version(toy_run, tmp_path):
    """Folders written before the weights were recorded (no weights_file / weights_sha256) read as before."""
    from eval.table import write_table

    _, results, _ = toy_run
    shutil.copytree(results / "toy_hear-default", tmp_path / "toy_hear-default")
    run_json = tmp_path / "toy_hear-default" / "run.json"
    run = json.loads(run_json.read_text())
    run_json.write_text(json.dumps({k: v for k, v in run.items() if not k.startswith("weights")}))
    assert write_table([tmp_path]) == write_table([results / "toy_hear-default"])
