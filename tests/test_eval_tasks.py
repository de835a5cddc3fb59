"""Preparing HEAR task folders: `hear-maeast tasks synth | resample | speech-commands`, and refusing bad ones."""

from __future__ import annotations

import collections
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from eval import synth
from eval.resample import resample_tree
from eval.speech_commands import LABELS, build
from eval.protocol import task_facts
from eval.taskdir import TaskError, check_task, task_splits
from hear_maeast.errors import BadInput

from conftest import run_env, shared_file

SPOKEN_DIGIT = "hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz"
SPEECH_COMMANDS = "speech_commands_v0.02-small.zip"


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`hear-maeast ARGS...` as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", "hear_maeast.cli", *map(str, args)], capture_output=True, text=True,
                          env=run_env(), timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"hear-maeast {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def clip_lengths(task: Path, sr: int, split: str) -> set[int]:
    return {sf.info(f).frames for f in (task / str(sr) / split).glob("*.wav")}


# ---------------------------------------------------------------------------------------------- synth
def test_synth_suite_is_a_valid_task_tree_of_every_kind_and_deterministic(tmp_path):
    cli("tasks", "synth", tmp_path / "a")
    synth.write_suite(tmp_path / "b", seed=0)
    synth.write_suite(tmp_path / "c", seed=1)

    kinds = set()
    for task in sorted((tmp_path / "a").iterdir()):
        metadata = check_task(task, 16000)  # the official layout, audio at 16 kHz
        assert task.name == f"{metadata['task_name']}-v1.0-small"
        vocab = (task / "labelvocabulary.csv").read_text().splitlines()[1:]
        labels = {line.split(",", 1)[1] for line in vocab}
        for split in task_splits(metadata):
            split_labels = json.loads((task / f"{split}.json").read_text())
            assert set(split_labels) == {f.name for f in (task / "16000" / split).glob("*.wav")}
            assert clip_lengths(task, 16000, split) == {int(metadata["sample_duration"] * 16000)}
            for clip_labels in split_labels.values():
                if metadata["embedding_type"] == "event":  # onsets and offsets in ms inside the clip
                    assert clip_labels and all(0 <= e["start"] < e["end"] <= 1000 * metadata["sample_duration"]
                                               for e in clip_labels)
                    assert {e["label"] for e in clip_labels} <= labels
                else:
                    assert set(clip_labels) <= labels
                    assert len(clip_labels) == 1 or metadata["prediction_type"] == "multilabel"
        kinds.add((metadata["embedding_type"], metadata["prediction_type"], metadata["split_mode"]))
        # same seed, same bytes; another seed, other audio
        some_wav = next((task / "16000").glob("*/*.wav"))
        rel = some_wav.relative_to(tmp_path / "a")
        assert some_wav.read_bytes() == (tmp_path / "b" / rel).read_bytes()
        assert some_wav.read_bytes() != (tmp_path / "c" / rel).read_bytes()
    assert kinds == {("scene", "multiclass", "trainvaltest"), ("scene", "multiclass", "new_split_kfold"),
                     ("scene", "multilabel", "trainvaltest"), ("event", "multilabel", "trainvaltest")}


def test_synth_pitch_is_not_solvable_by_loudness():
    """Levels are drawn independently of the label: the mean level of each note class is about the same."""
    rng = np.random.default_rng(0)
    levels = collections.defaultdict(list)
    for _ in range(400):
        audio, (note,) = synth._pitch_clip(rng, 16000)
        levels[note].append(20 * np.log10(np.abs(audio).max()))
    means = [np.mean(v) for v in levels.values()]
    assert len(levels) == len(synth.NOTES)
    assert max(means) - min(means) < 6  # dB, against a 29 dB range of levels


# ---------------------------------------------------------------------------------------------- resample
def test_resample_turns_the_real_44k_archive_into_a_16k_task_with_durations_kept(tmp_path):
    archive = shared_file(SPOKEN_DIGIT)
    out = cli("tasks", "resample", archive, tmp_path / "tasks", "--sr", "16000").stdout
    task = tmp_path / "tasks" / "spoken_digit-1.0.9-small"  # the hear-2021.0.6/tasks/ prefix is stripped
    assert str(task) in out
    metadata = check_task(task, 16000)
    assert metadata["split_mode"] == "new_split_kfold" and task_splits(metadata) == [f"fold0{i}" for i in range(5)]
    assert [p.name for p in task.iterdir() if p.is_dir()] == ["16000"]  # only the new rate is written

    with tarfile.open(archive) as tf:
        source = {Path(m.name).name: m for m in tf.getmembers() if m.name.endswith(".wav")}
        durations = {name: sf.info(io.BytesIO(tf.extractfile(m).read())).duration for name, m in source.items()}
        labels = json.load(tf.extractfile(next(m for m in tf.getmembers() if m.name.endswith("/fold00.json"))))
    assert json.loads((task / "fold00.json").read_text()) == labels
    resampled = sorted((task / "16000").glob("*/*.wav"))
    assert len(resampled) == len(source) == 100
    for wav in resampled:
        info = sf.info(wav)
        assert info.samplerate == 16000 and info.duration == pytest.approx(durations[wav.name], abs=1 / 16000)
    for split in task_splits(metadata):
        assert clip_lengths(task, 16000, split) == {16000}  # equal within the split: 1.0 s clips

    # the signal survives: the written clip is torchaudio's resampling of the original (to 16-bit precision),
    # which matches another method, scipy's polyphase filter. (These official small clips peak at 2-3 LSB.)
    from scipy.signal import resample_poly

    from hear_maeast.audio import resample as resample_audio

    wav = resampled[0]
    with tarfile.open(archive) as tf:
        original, sr = sf.read(io.BytesIO(tf.extractfile(source[wav.name]).read()), dtype="float32")
    ours = resample_audio(original, sr, 16000)
    assert np.abs(sf.read(wav, dtype="float32")[0] - ours).max() <= 1 / 32768
    assert np.corrcoef(ours, resample_poly(original.astype(np.float64), 160, 441)[:16000])[0, 1] > 0.99

    # idempotent: a second run rewrites nothing
    mtimes = {p: p.stat().st_mtime_ns for p in resampled}
    resample_tree(archive, tmp_path / "tasks", 16000, progress=False)
    assert {p: p.stat().st_mtime_ns for p in resampled} == mtimes


def test_resample_refuses_what_is_not_a_hear_task_and_names_the_missing_file(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = cli("tasks", "resample", tmp_path / "empty", tmp_path / "out", check=False)
    assert proc.returncode == 1 and "holds no task folders" in proc.stderr  # a bad task folder: failed work

    half = tmp_path / "root" / "half_task-1-full"
    half.mkdir(parents=True)
    (half / "task_metadata.json").write_text(json.dumps({
        "task_name": "half_task", "embedding_type": "scene", "prediction_type": "multiclass",
        "split_mode": "trainvaltest", "evaluation": ["top1_acc"], "splits": ["train", "valid", "test"]}))
    with pytest.raises(TaskError, match="labelvocabulary.csv is missing"):
        resample_tree(tmp_path / "root", tmp_path / "out", 16000)
    (half / "labelvocabulary.csv").write_text("idx,label\n0,a\n")
    (half / "train.json").write_text(json.dumps({"a.wav": ["a"]}))
    with pytest.raises(TaskError, match="valid.json is missing"):
        resample_tree(half, tmp_path / "out", 16000)

    stray = tmp_path / "root2" / "notes"
    stray.mkdir(parents=True)
    with pytest.raises(TaskError, match="task_metadata.json is missing"):
        resample_tree(tmp_path / "root2", tmp_path / "out", 16000)


def test_archives_with_members_escaping_the_destination_are_refused(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tf:
        data = b"{}"
        info = tarfile.TarInfo("tasks/../../outside.json")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(TaskError, match="unsafe member refused"):
        resample_tree(evil, tmp_path / "out", 16000)
    assert not (tmp_path / "outside.json").exists()


def test_resample_refuses_split_and_clip_names_that_would_leave_the_destination(tmp_path):
    """A split named `../../../ESCAPE` in the metadata would become DST/<task>/<sr>/../../../ESCAPE: refused, and
    nothing is written outside DST even when the source holds everything that name points to."""
    synth.write_suite(tmp_path / "src", only=("synth_pitch",))
    task = tmp_path / "src" / "synth_pitch-v1.0-small"
    evil = "../../../ESCAPE"
    metadata = json.loads((task / "task_metadata.json").read_text())
    (task / "task_metadata.json").write_text(json.dumps({**metadata, "splits": ["train", "valid", evil]}))
    shutil.copy(task / "test.json", os.path.normpath(task / f"{evil}.json"))  # what the old code read
    shutil.copytree(task / "16000" / "test", os.path.normpath(task / "16000" / evil))
    dst = tmp_path / "out" / "tasks"
    with pytest.raises(TaskError, match=re.escape(f"split name '{evil}' is not a plain file or folder name")):
        resample_tree(task, dst, 8000, progress=False)
    assert not os.path.exists(os.path.normpath(dst / task.name / "8000" / evil))  # = out/ESCAPE

    (task / "task_metadata.json").write_text(json.dumps(metadata))  # a clip name in a split JSON, as heareval reads it
    labels = json.loads((task / "test.json").read_text())
    (task / "test.json").write_text(json.dumps({**labels, "../../../x.wav": ["C4"]}))
    with pytest.raises(TaskError, match=re.escape("test.json: clip name '../../../x.wav' is not a plain")):
        check_task(task)


def test_task_facts_give_each_task_its_size_and_chance_level(tmp_path):
    synth.write_suite(tmp_path)
    pitch, timbre, mixture, events = (task_facts(tmp_path / f"{t}-v1.0-small") for t in synth.TASK_NAMES)
    assert (pitch.size(), pitch.metric, pitch.chance) == ("120/40/40", "top1_acc", 1 / 8)  # 8 notes
    assert (timbre.size(), timbre.total, timbre.chance) == ("150 in 5 folds", 150, 1 / 5)  # every fold tested once
    # mAP of scores that ignore the audio: the mean over the 6 sources of the share of test clips holding each
    test = json.loads((tmp_path / "synth_mixture-v1.0-small" / "test.json").read_text())
    shares = [sum(source in labels for labels in test.values()) / len(test) for source in synth.SOURCES]
    assert mixture.metric == "mAP" and mixture.chance == pytest.approx(sum(shares) / 6)
    assert events.chance is None  # onset F-measure: no label-free level
    assert events.majority is None and mixture.majority is None  # accuracy metrics only


def test_majority_level_answers_the_training_clips_most_frequent_label():
    """A skewed task's real floor (the Speech Commands subset: 9 of its 11 test clips are `_unknown_`)."""
    from eval.protocol import majority_level

    def clips(*labels):
        return {f"{i}.wav": [label] for i, label in enumerate(labels)}

    tvt = {"train": clips(*"aaaaab"), "valid": clips("b"), "test": clips(*"aaab")}
    assert majority_level("top1_acc", tvt, "trainvaltest") == 0.75  # "a" from train, 3 of 4 test clips
    folds = {"fold00": clips(*"aab"), "fold01": clips(*"bba"), "fold02": clips("b")}
    # fold00 <- "b" (3 of 4 elsewhere): 1/3; fold01 <- tie a/b, "a" seen first: 1/3; fold02 <- tie, "a": 0
    assert majority_level("pitch_acc", folds, "new_split_kfold") == pytest.approx((1 / 3 + 1 / 3 + 0) / 3)
    assert majority_level("mAP", tvt, "trainvaltest") is None


# ---------------------------------------------------------------------------------------------- speech commands
def test_speech_commands_builder_follows_the_hear_recipe_on_the_real_subset(tmp_path):
    zip_path = shared_file(SPEECH_COMMANDS)
    out = cli("tasks", "speech-commands", zip_path, tmp_path / "tasks", "--mode", "small").stdout
    task = tmp_path / "tasks" / "speech_commands-v0.0.2-small"
    assert str(task) in out
    metadata = check_task(task, 16000)
    assert {k: metadata[k] for k in ("task_name", "version", "embedding_type", "prediction_type", "split_mode",
                                     "sample_duration", "evaluation")} == {
        "task_name": "speech_commands", "version": "v0.0.2", "embedding_type": "scene",
        "prediction_type": "multiclass", "split_mode": "trainvaltest", "sample_duration": 1.0,
        "evaluation": ["top1_acc"]}
    assert (task / "labelvocabulary.csv").read_text().splitlines() == ["idx,label"] + [
        f"{i},{label}" for i, label in enumerate(LABELS)]

    with zipfile.ZipFile(zip_path) as zf:
        validation = set(zf.read("validation_list.txt").decode().split())
        testing = set(zf.read("testing_list.txt").decode().split())
        words = [n for n in zf.namelist() if n.endswith(".wav") and not n.startswith("_")]
    splits = {s: json.loads((task / f"{s}.json").read_text()) for s in ("train", "valid", "test")}
    for split, clips in splits.items():
        assert clip_lengths(task, 16000, split) == {16000}  # 1 s, padded or cut
        assert any(v == ["_silence_"] for v in clips.values()), f"{split} has no _silence_ clip"
    for word in words:  # every word clip lands where the lists say, labelled by the recipe
        folder, stem = word.split("/")
        name = f"{folder}_{Path(stem).stem}.wav"
        split = "valid" if word in validation else "test" if word in testing else "train"
        expected = folder if folder in LABELS[:10] else "_unknown_"
        assert splits[split][name] == [expected], word
    assert sum(len(c) for c in splits.values()) == len(words) + sum(
        v == ["_silence_"] for c in splits.values() for v in c.values())

    # a short clip is zero-padded at the end, not stretched
    with zipfile.ZipFile(zip_path) as zf:
        short, audio = next((w, a) for w in words for a in [sf.read(io.BytesIO(zf.read(w)))[0]] if len(a) < 16000)
    folder, stem = short.split("/")
    split = "valid" if short in validation else "test" if short in testing else "train"
    padded, _ = sf.read(task / "16000" / split / f"{folder}_{Path(stem).stem}.wav")
    assert np.allclose(padded[: len(audio)], audio, atol=1 / 32768) and not padded[len(audio):].any()


def test_speech_commands_official_test_set_replaces_the_testing_list(tmp_path):
    raw = tmp_path / "raw"
    with zipfile.ZipFile(shared_file(SPEECH_COMMANDS)) as zf:
        zf.extractall(raw)
    test_set = tmp_path / "test_set"  # the official test archive's layout: one folder per label
    for label, source in (("yes", "yes"), ("_unknown_", "bed"), ("_silence_", "no")):
        (test_set / label).mkdir(parents=True)
        for wav in sorted((raw / source).glob("*.wav"))[:1]:
            (test_set / label / wav.name).write_bytes(wav.read_bytes())
    task = build(raw, tmp_path / "tasks", test_set=test_set, progress=False)
    assert task.name == "speech_commands-v0.0.2-full"
    test = json.loads((task / "test.json").read_text())
    assert collections.Counter(v[0] for v in test.values()) == {"yes": 1, "_unknown_": 1, "_silence_": 1}
    assert json.loads((task / "task_metadata.json").read_text())["official_test_set"] is True


def test_speech_commands_refuses_another_layout(tmp_path):
    (tmp_path / "words" / "yes").mkdir(parents=True)
    proc = cli("tasks", "speech-commands", tmp_path / "words", tmp_path / "out", check=False)
    assert proc.returncode == 1 and "validation_list.txt is missing" in proc.stderr


def test_speech_commands_mode_never_names_a_folder_outside_the_task(tmp_path):
    """`--mode 'x/..'` once made the task folder OUT itself, and OUT was deleted; a folder of the task's name that
    the builder did not write is refused, never deleted."""
    out = tmp_path / "out"
    (out / "keep").mkdir(parents=True)
    (out / "keep" / "precious.txt").write_text("mine")
    proc = cli("tasks", "speech-commands", shared_file(SPEECH_COMMANDS), out, "--mode", "x/..", check=False)
    assert proc.returncode == 2 and "error: --mode 'x/..': expected one word" in proc.stderr
    assert (out / "keep" / "precious.txt").read_text() == "mine"

    (out / "speech_commands-v0.0.2-small").mkdir()
    (out / "speech_commands-v0.0.2-small" / "notes.txt").write_text("mine")
    with pytest.raises(BadInput, match="was not written by hear-maeast"):
        build(shared_file(SPEECH_COMMANDS), out, mode="small", progress=False)
    assert (out / "speech_commands-v0.0.2-small" / "notes.txt").read_text() == "mine"


def test_eval_help_example_of_model_options_is_a_real_option():
    import hear_maeast

    help_text = " ".join(cli("eval", "--help").stdout.split())
    example = re.search(r"--model-options TEXT .*?e\.g\. '(\{.*?\})'", help_text).group(1)
    model = hear_maeast.load_model(**json.loads(example))  # raises on an unknown option
    assert model.layer == json.loads(example)["layer"] < model.cfg.depth
