"""benchmarks/hear_scale.py: the 19 HEAR 2021 task shapes, written small (the CLI as a real subprocess).

    python benchmarks/hear_scale.py --out TASKS --task fsd50k-v1.0-full --fraction 0.001

writes TASKS/fsd50k-v1.0-full/ in the official layout at 16 kHz: the real splits, label count, metrics and clip
lengths, each split scaled by the fraction but never below every label once.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from eval.taskdir import METADATA, PARTIAL, check_task, is_task, read_split, read_vocabulary

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "hear_scale.py"
SPEC = importlib.util.spec_from_file_location("hear_scale", SCRIPT)
hear_scale = sys.modules.setdefault("hear_scale", importlib.util.module_from_spec(SPEC))  # dataclasses look it up
SPEC.loader.exec_module(hear_scale)
hear_scale_audio = sys.modules["hear_scale_audio"]  # benchmarks/hear_scale_audio.py: the clip-writing jobs

# one of each kind: scene train/valid/test, k-fold, multilabel with variable lengths, events (train/valid/test and
# k-fold, the latter with evaluation_params)
WRITTEN = ("speech_commands-v0.0.2-5h", "mridangam_tonic-v1.5-full", "fsd50k-v1.0-full",
           "dcase2016_task2-hear2021-full", "maestro-v3.0.0-5h")
FRACTION, SEED = "0.001", "3"


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout)


def tasks_args(names) -> list[str]:
    return [a for name in names for a in ("--task", name)]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hear_scale") / "tasks"
    proc = run("--out", str(out), *tasks_args(WRITTEN), "--fraction", FRACTION, "--seed", SEED, "--jobs", "2")
    assert proc.returncode == 0, proc.stderr
    assert "h of audio per minute" in proc.stdout.splitlines()[-1]
    return out


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (proc.returncode, proc.stderr)
    return lines[0]


@pytest.mark.parametrize("folder", WRITTEN)
def test_each_shape_is_a_hear_task_with_the_real_splits_labels_and_metrics(written, folder):
    shape = hear_scale.BY_FOLDER[folder]
    task = written / folder
    metadata = check_task(task, 16000)
    assert (metadata["task_name"], metadata["embedding_type"], metadata["prediction_type"], metadata["split_mode"]) \
        == (shape.task_name, shape.embedding_type, shape.prediction_type, shape.split_mode)
    assert metadata["splits"] == [name for name, _ in shape.splits]
    assert metadata["evaluation"] == list(shape.evaluation)
    assert metadata["sample_duration"] == shape.sample_duration
    assert metadata.get("evaluation_params") == shape.evaluation_params
    assert metadata.get("nfolds") == (None if shape.split_mode == "trainvaltest" else len(shape.splits))
    vocabulary = read_vocabulary(task)
    assert vocabulary == list(shape.labels)
    for split, real in shape.splits:
        clips = read_split(task, split)
        wavs = sorted(p.name for p in (task / "16000" / split).iterdir())
        assert wavs == sorted(clips)
        # round(real x fraction), at least 1, and more where needed for every label to occur in the split
        scaled = max(1, round(real * float(FRACTION)))
        assert scaled <= len(clips) <= min(real, max(scaled, len(vocabulary)))
        if shape.embedding_type == "event":
            assert len(clips) == 1
            labels = {e["label"] for events in clips.values() for e in events}
        else:
            labels = {label for clip_labels in clips.values() for label in clip_labels}
        assert labels == set(vocabulary), f"{split} lacks labels"
        for name, value in clips.items():
            info = sf.info(task / "16000" / split / name)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            seconds = info.frames / 16000
            if shape.sample_duration is None:
                lo, _, hi = shape.lengths[split]
                assert lo - 1e-3 <= seconds <= hi + 1e-3
            else:
                assert info.frames == round(shape.sample_duration * 16000)
            if shape.embedding_type == "event":
                onsets = [e["start"] for e in value]
                assert all(0 <= e["start"] < e["end"] <= 1000 * seconds for e in value)
                assert all(b - a > 200 for a, b in zip(onsets, onsets[1:])), "onsets must be > 200 ms apart"
            elif shape.prediction_type == "multiclass":
                assert len(value) == 1
            else:
                assert 1 <= len(value) <= 3 and len(set(value)) == len(value)


def test_the_clip_counts_follow_the_fraction_and_the_label_floor(written):
    counts = {f: {s: len(read_split(written / f, s)) for s in check_task(written / f)["splits"]} for f in WRITTEN}
    # 16000 x 0.001 = 16; valid and test need the 12 labels once each
    assert counts["speech_commands-v0.0.2-5h"] == {"train": 16, "valid": 12, "test": 12}
    assert counts["mridangam_tonic-v1.5-full"] == {f"fold{i:02d}": 6 for i in range(5)}  # 6 tonics
    assert counts["dcase2016_task2-hear2021-full"] == {"train": 1, "valid": 1, "test": 1}
    fsd = counts["fsd50k-v1.0-full"]
    assert all(200 / 3 <= n <= 200 for n in fsd.values())  # 200 labels, 1-3 a clip, every label in every split
    lengths = [sf.info(p).frames for p in (written / "fsd50k-v1.0-full" / "16000" / "train").iterdir()]
    assert len(set(lengths)) == len(lengths), "variable-length clips"


def test_the_pitch_vocabulary_gives_heareval_chroma_classes():
    """heareval's chroma_acc compares label indices modulo 12, so the vocabulary must be every MIDI pitch in order."""
    for folder in ("nsynth_pitch-v2.2.3-5h", "nsynth_pitch-v2.2.3-50h"):
        labels = hear_scale.BY_FOLDER[folder].labels
        assert [int(label) for label in labels] == list(range(21, 109))
        assert all((idx - int(label)) % 12 == (0 - 21) % 12 for idx, label in enumerate(labels))


def test_the_table_holds_the_19_leaderboard_tasks_with_their_published_totals():
    published = {"dcase2016_task2-hear2021-full": 72, "nsynth_pitch-v2.2.3-5h": 5000, "nsynth_pitch-v2.2.3-50h": 49060,
                 "speech_commands-v0.0.2-5h": 22890, "speech_commands-v0.0.2-full": 100503,
                 "beehive_states_fold0-v2-full": 576, "beijing_opera-v1.0-hear2021-full": 236,
                 "tfds_crema_d-1.0.0-full": 7438, "esc50-v2.0.0-full": 2000, "fsd50k-v1.0-full": 51185,
                 "gunshot_triangulation-v1.0-full": 88, "tfds_gtzan-1.0.0-full": 1000,
                 "tfds_gtzan_music_speech-1.0.0-full": 128, "libricount-v1.0.0-hear2021-full": 5720,
                 "maestro-v3.0.0-5h": 185, "mridangam_stroke-v1.5-full": 6977, "mridangam_tonic-v1.5-full": 6977,
                 "vocal_imitation-v1.1.3-full": 5601, "vox_lingua_top10-hear2021-full": 972}
    assert {s.folder: s.clips for s in hear_scale.SHAPES} == published
    assert all(s.source for s in hear_scale.SHAPES)


def test_the_same_seed_writes_the_same_files_whatever_the_processes(written, tmp_path):
    same = ("speech_commands-v0.0.2-5h", "mridangam_tonic-v1.5-full", "dcase2016_task2-hear2021-full")
    proc = run("--out", str(tmp_path), *tasks_args(same), "--fraction", FRACTION, "--seed", SEED, "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    for folder in same:
        files = sorted(p.relative_to(written / folder) for p in (written / folder).rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(tmp_path / folder) for p in (tmp_path / folder).rglob("*") if p.is_file())
        for f in files:
            assert (written / folder / f).read_bytes() == (tmp_path / folder / f).read_bytes(), f"{folder}/{f}"
    other = tmp_path / "other"
    assert run("--out", str(other), "--task", same[1], "--fraction", FRACTION, "--seed", "4").returncode == 0
    wav = Path("16000/fold00/fold00_000000.wav")
    assert (other / same[1] / wav).read_bytes() != (tmp_path / same[1] / wav).read_bytes()


def test_a_rerun_keeps_complete_tasks_and_an_interrupted_task_is_never_a_task(written, tmp_path, monkeypatch):
    mtime = (written / WRITTEN[0] / METADATA).stat().st_mtime_ns
    proc = run("--out", str(written), "--task", WRITTEN[0], "--fraction", FRACTION, "--seed", SEED)
    assert proc.returncode == 0 and "kept" in proc.stdout
    assert (written / WRITTEN[0] / METADATA).stat().st_mtime_ns == mtime

    # an interruption after the first clips: only <folder>.partial, without task_metadata.json
    shape = hear_scale.BY_FOLDER["mridangam_tonic-v1.5-full"]
    calls = []

    def interrupted(job):
        if calls:
            raise KeyboardInterrupt
        calls.append(job)
        return real_write(job)

    real_write = hear_scale_audio.write_clips
    monkeypatch.setattr(hear_scale_audio, "CHUNK_SAMPLES", 1)  # one clip per job
    monkeypatch.setattr(hear_scale_audio, "write_clips", interrupted)
    with pytest.raises(KeyboardInterrupt):
        hear_scale.write(tmp_path, [shape], 0.001, 0, jobs=1, log=lambda *_: None)
    partial = tmp_path / (shape.folder + ".partial")
    assert (partial / PARTIAL).is_file() and not is_task(partial) and not (tmp_path / shape.folder).exists()
    assert len(list((partial / "16000").rglob("*.wav"))) == 1
    proc = run("--out", str(tmp_path), "--task", shape.folder, "--fraction", "0.001", "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    assert not partial.exists() and check_task(tmp_path / shape.folder, 16000)
    assert not (tmp_path / shape.folder / PARTIAL).exists()

    # a folder that is not ours is refused and left alone
    foreign = tmp_path / "foreign" / shape.folder
    foreign.mkdir(parents=True)
    (foreign / "mine.txt").write_text("keep me")
    line = one_error_line(run("--out", str(foreign.parent), "--task", shape.folder, "--fraction", "0.001"))
    assert "not written by hear-maeast" in line and (foreign / "mine.txt").read_text() == "keep me"


def test_a_run_that_does_not_fit_is_refused_before_anything_is_written(tmp_path):
    """All 19 tasks at full size (over 42 GB of 16 kHz audio) into a filesystem with less free space."""
    needed = sum(s.hours for s in hear_scale.SHAPES) * 3600 * 16000 * 2  # the audio alone
    small = next((Path(p) for p in (tmp_path, "/dev/shm") if Path(p).is_dir() and shutil.disk_usage(p).free < needed),
                 None)
    if small is None:
        pytest.skip(f"no filesystem here with less than {needed / 1e9:.0f} GB free (tried {tmp_path} and /dev/shm)")
    out = small / f"hear_scale_refused_{os.getpid()}"
    line = one_error_line(run("--out", str(out), "--fraction", "1"))
    needed_bytes, free_bytes = (int(n) for n in re.findall(r"\((\d+) bytes\)", line))
    assert "need" in line and "free" in line and needed_bytes > free_bytes >= 0, line
    assert "--fraction" in line and "--out" in line, "the way out"
    assert not out.exists(), "nothing may be written"


@pytest.mark.parametrize("args, says", [
    (["--task", "no_such_task"], "not one of the 19"),
    (["--task", "nsynth_pitch"], "names 2 tasks"),
    (["--fraction", "0"], "(0, 1]"),
    (["--fraction", "1.5"], "(0, 1]"),
    (["--fraction", "nan"], "(0, 1]"),
    (["--fraction", "a lot"], "invalid float value"),
    (["--seed", "-1"], "non-negative"),
    ([], "--out DIR is required"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, says):
    """Each refused before any work, in one line naming the option and what is expected."""
    out = [] if not args else ["--out", str(tmp_path / "tasks")]
    line = one_error_line(run(*out, *args, timeout=60))
    assert says in line
    assert not (tmp_path / "tasks").exists()


def test_an_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    assert "is a file" in one_error_line(run("--out", str(tmp_path / "file"), "--task", "esc50", "--fraction", "0.01"))


def test_list_prints_every_shape_with_its_size_and_source():
    proc = run("--list", "--fraction", "0.01")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split(" | ")[0].strip("| ") for line in proc.stdout.splitlines() if line.startswith("| ")}
    assert {s.folder for s in hear_scale.SHAPES} <= rows
    sources = [line for line in proc.stdout.splitlines() if line.startswith("- ")]
    assert len(sources) == 19 and "16 kHz GB at 0.01" in proc.stdout and "Approximate:" in proc.stdout


def logmel_means(paths: list[Path]) -> np.ndarray:
    """Mean log-mel energies (64 bands, 25 ms windows, 10 ms hop) of each clip: [clips, 64]."""
    import torchaudio

    bank = torchaudio.functional.melscale_fbanks(257, 0.0, 8000.0, 64, 16000).numpy()  # [257, 64]
    out = []
    for path in paths:
        x, _ = sf.read(path, dtype="float32")
        frames = np.lib.stride_tricks.sliding_window_view(x, 400)[::160] * np.hanning(400)  # [T, 400]
        power = np.abs(np.fft.rfft(frames, 512)) ** 2  # [T, 257]
        out.append(np.log(power @ bank + 1e-10).mean(0))
    return np.stack(out)


def test_the_audio_is_learnable_a_linear_probe_on_log_mel_means_beats_chance(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folder = "mridangam_tonic-v1.5-full"
    proc = run("--out", str(tmp_path), "--task", folder, "--fraction", "0.03")
    assert proc.returncode == 0, proc.stderr
    task = tmp_path / folder
    vocabulary = read_vocabulary(task)

    def split(name):
        clips = read_split(task, name)
        x = logmel_means([task / "16000" / name / c for c in clips])
        return x, [vocabulary.index(labels[0]) for labels in clips.values()]

    train = [split(f"fold{i:02d}") for i in range(4)]
    x_test, y_test = split("fold04")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]))
    accuracy = float(np.mean(probe.predict(x_test) == np.array(y_test)))
    chance = 1 / len(vocabulary)
    assert accuracy > 2 * chance, f"accuracy {accuracy:.2f}, chance {chance:.2f}"
