"""Pretraining data: the formats users already have (MSM-MAE/M2D log-mel .npy folders and CSV lists, MAE-AST fairseq
manifests), `hear-maeast features` stores, and the loader (startup reads listings only; batches a pure function of
(seed, rank, step); an unreadable file replaced, never fatal). Real speech from ../shared/data throughout."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
import tracemalloc
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import soundfile as sf
import torch

import hear_maeast
from hear_maeast.audio import load_audio
from hear_maeast.config import get_preset
from hear_maeast.frontend import FrontEnd
from pretrain.data import AudioFiles, FeatureStore, NpyFiles, Paths, WrongShape, open_source, read_store
from pretrain.loader import MicroBatches, Plan, loader

from conftest import BIN, env1, run_cli as cli

MSM, AST = get_preset("msm-mae-micro"), get_preset("mae-ast-patch-micro")


def losses(run: Path) -> list[float]:
    return [float(row["loss"]) for row in csv.DictReader(open(run / "log.csv"))]


def train_args(data, out, preset="msm-mae-micro", steps=4, *extra) -> list:
    return ["pretrain", "--preset", preset, "--data", data, "--out", out, "--steps", steps, "--batch-size", 4,
            "--device", "cpu", "--num-workers", 1, "--seed", 1, *extra]


@pytest.fixture(scope="module")
def wav_files(speech_folder) -> list[Path]:
    return sorted(speech_folder.rglob("*.wav"))


@pytest.fixture(scope="module")
def m2d(wav_files, tmp_path_factory) -> Path:
    """An M2D/MSM-MAE log-mel folder as wav_to_lms.py writes it: float32 [1, 80, T] .npy files in sub-folders."""
    root = tmp_path_factory.mktemp("m2d")
    features = FrontEnd(MSM).features
    for w in wav_files:
        out = root / w.parent.name / (w.stem + ".npy")
        out.parent.mkdir(exist_ok=True)
        with torch.no_grad():
            np.save(out, features(load_audio(w)[None]).numpy())  # [1, 80, T]
    return root


@pytest.fixture(scope="module")
def store(speech_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store") / "store"
    cli("features", speech_folder, out, "--preset", "msm-mae-micro", "--workers", 1)
    return out


# ---- formats -------------------------------------------------------------------------------------------------------
def test_m2d_folder_and_csv_list_train_and_resume(m2d, tmp_path):
    listing = tmp_path / "lists" / "files_speech.csv"  # M2D keeps its lists apart from the data: --data-root
    listing.parent.mkdir()
    names = sorted(str(p.relative_to(m2d)) for p in m2d.rglob("*.npy"))
    listing.write_text("file_name\n" + "\n".join(names) + "\n")
    cli(*train_args(m2d, tmp_path / "folder"))
    out = cli(*train_args(listing, tmp_path / "csv", "msm-mae-micro", 4, "--data-root", m2d))
    assert f"data: {len(names)} clips" in out and "NpyFiles" in out
    cli(*train_args(m2d, tmp_path / "folder", "msm-mae-micro", 6, "--resume"))
    assert [len(losses(tmp_path / r)) for r in ("folder", "csv")] == [6, 4]
    model = hear_maeast.load_model(str(tmp_path / "folder" / "model.safetensors"))
    assert model.provenance["steps"] == 6 and model.provenance["clips"] == len(names)
    emb = hear_maeast.get_scene_embeddings(torch.zeros(1, 16000), model)
    assert torch.isfinite(emb).all()


@pytest.mark.parametrize("shape,expected", [((1, 128, 50), "128 frequency bins"), ((80,), "shape [80]"),
                                            ((2, 80, 50), "shape [2, 80, 50]")])
def test_features_that_do_not_fit_the_preset_are_refused_naming_the_file(tmp_path, shape, expected):
    np.save(tmp_path / "clip.npy", np.zeros(shape, np.float32))
    out = cli(*train_args(tmp_path, tmp_path / "run"), code=2)
    assert f"{tmp_path / 'clip.npy'}: " in out and expected in out
    assert not (tmp_path / "run").exists()


def test_fairseq_manifest_is_decoded_on_the_fly(wav_files, tmp_path):
    root = wav_files[0].parents[1]
    rows = [f"{w.relative_to(root)}\t{sf.info(w).frames}" for w in wav_files[:12]]
    (tmp_path / "train.tsv").write_text(f"{root}\n" + "\n".join(rows) + "\n")
    source = open_source(tmp_path / "train.tsv", AST)
    assert isinstance(source, AudioFiles) and len(source) == 12 and source.name(0) == str(wav_files[0])
    out = cli(*train_args(tmp_path / "train.tsv", tmp_path / "run", "mae-ast-patch-micro", 2))
    assert "data: 12 clips" in out and len(losses(tmp_path / "run")) == 2


def test_an_empty_folder_or_list_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(hear_maeast.errors.BadInput, match="no .npy feature files and no audio files"):
        open_source(tmp_path / "empty", MSM)
    (tmp_path / "list.csv").write_text("file_name\n")
    with pytest.raises(hear_maeast.errors.BadInput, match="names no files"):
        open_source(tmp_path / "list.csv", MSM)
    (tmp_path / "bad.csv").write_text("path\nx.npy\n")
    with pytest.raises(hear_maeast.errors.BadInput, match="'file_name' column"):
        open_source(tmp_path / "bad.csv", MSM)


# ---- startup: listings only, memory in numpy arrays ----------------------------------------------------------------
def test_startup_opens_one_clip_only(m2d, store):
    real_load = np.load
    with mock.patch("numpy.load", side_effect=real_load) as load:
        source = open_source(m2d, MSM)
        source.check_first()
    assert load.call_count == 1 and len(source) == 78  # the first clip, checked against the preset
    with mock.patch("numpy.memmap") as memmap:
        assert isinstance(open_source(store, MSM), FeatureStore)
    memmap.assert_not_called()  # shards are mapped by the loader workers


def test_the_index_costs_its_path_bytes_not_an_object_per_clip(tmp_path):
    n = 100_000
    names = [f"audioset/unbalanced_train_segments/{i:06d}_YTid{i * 7919 % 10**6:06d}.npy" for i in range(n)]
    (tmp_path / "files.csv").write_text("file_name\n" + "\n".join(names) + "\n")
    path_bytes = sum(map(len, names))
    del names
    tracemalloc.start()
    source = open_source(tmp_path / "files.csv", MSM)
    retained, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert isinstance(source, NpyFiles) and len(source) == n and source.paths[n - 1].endswith(".npy")
    assert source.paths.nbytes == path_bytes + 8 * n
    assert retained < 1.3 * (path_bytes + 8 * n)  # a list of str would be ~2.5x (49 bytes of object per path)


def test_paths_round_trip_any_file_name():
    names = ["a.npy", "süß/ä b.npy", "x" * 300 + ".npy", "\udcff-undecodable.npy"]
    p = Paths.build(names)
    assert [p[i] for i in range(len(p))] == names


# ---- the loader ----------------------------------------------------------------------------------------------------
def test_batches_are_a_pure_function_of_seed_rank_and_step(store):
    source = open_source(store, MSM)
    plan = Plan(len(source), 4, seed=3, rank=1, world=2, per_epoch=5)
    direct = [MicroBatches(source, MSM, plan)[k] for k in (0, 7, 12)]
    workers = list(loader(MicroBatches(open_source(store, MSM), MSM, plan), [0, 7, 12], workers=2, pin=False))
    for a, b in zip(direct, workers):
        for key in ("spec", "keep", "mask"):
            assert torch.equal(a[key].nan_to_num(), b[key].nan_to_num()), key
    assert a["spec"].shape == (4, 80, MSM.input_frames) and a["spec"].dtype == torch.float16
    other_rank = MicroBatches(source, MSM, Plan(len(source), 4, seed=3, rank=0, world=2, per_epoch=5))
    assert not torch.equal(other_rank[0]["spec"].nan_to_num(), direct[0]["spec"].nan_to_num())
    clips = MicroBatches(source, MSM, plan).clips(0)
    assert (clips % 2 == 1).all()  # rank 1's share: clips 1, 3, 5 ...


def test_an_unreadable_clip_is_replaced_by_the_same_other_clip_every_time(m2d, tmp_path):
    data = tmp_path / "data"
    for p in sorted(m2d.rglob("*.npy"))[:8]:
        (data / p.parent.name).mkdir(parents=True, exist_ok=True)
        (data / p.parent.name / p.name).write_bytes(p.read_bytes())
    victim = sorted(data.rglob("*.npy"))[5]
    victim.write_bytes(victim.read_bytes()[:150])  # truncated: header only
    source = open_source(data, MSM)
    plan = Plan(len(source), 8, seed=0, rank=0, world=1, per_epoch=1)  # one batch = every clip once
    a, b = MicroBatches(source, MSM, plan)[0], MicroBatches(open_source(data, MSM), MSM, plan)[0]
    assert [source.name(c) for c, _ in a["bad"]] == [str(victim)] and a["bad"] == b["bad"]
    assert torch.equal(a["spec"].nan_to_num(), b["spec"].nan_to_num())
    assert torch.isfinite(a["spec"].nan_to_num(nan=0.0)).all()


def test_audio_crops_equal_the_front_end_on_the_whole_clip(wav_files):
    source = open_source(wav_files[0].parents[1], MSM)
    i = next(i for i in range(len(source)) if "_background_noise_" in source.name(i))  # a minute of noise
    full = source.read(i)  # [80, T]
    crop = source.crop(i, 208, 0.37)
    start = int(0.37 * (full.shape[1] - 208 + 1))
    np.testing.assert_allclose(crop, full[:, start : start + 208], rtol=1e-5, atol=1e-5)


# ---- hear-maeast features ------------------------------------------------------------------------------------------
def test_features_skips_and_lists_corrupt_files_and_stores_the_statistics(store, wav_files):
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["complete"] and manifest["clips"] == len(wav_files) and manifest["dtype"] == "float16"
    s = read_store(store)
    x = s.read(0)  # [80, T], a float16 view of the shard
    ref = FrontEnd(MSM).features(load_audio(Path(list(csv.DictReader(open(store / "clips.csv")))[0]["source"]))[None])[0]
    np.testing.assert_allclose(x.astype(np.float32), ref.numpy(), rtol=1e-3, atol=1e-2)  # float16 rounding
    values = np.concatenate([s.read(i).astype(np.float64).ravel() for i in range(len(s))])
    assert manifest["norm_mean"] == pytest.approx(values.mean()) and manifest["norm_std"] == pytest.approx(values.std())


def test_features_resumes_after_a_kill_to_the_same_store(wav_files, tmp_path):
    audio = tmp_path / "audio"
    for k in range(6):  # enough files that the kill lands mid-way; some corrupt ones among them
        (audio / f"copy{k}").mkdir(parents=True)
        for w in wav_files[:60]:
            (audio / f"copy{k}" / f"{w.parent.name}_{w.name}").symlink_to(w)
        (audio / f"copy{k}" / "zz_corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    cmd = [str(BIN / "hear-maeast"), "features", str(audio), "", "--preset", "msm-mae-micro", "--workers", "0",
           "--commit-every", "7"]
    killed, ref = tmp_path / "killed", tmp_path / "ref"
    proc = subprocess.Popen(cmd[:3] + [str(killed)] + cmd[4:], env=env1(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (killed / "clips.csv").exists() or len((killed / "clips.csv").read_text().splitlines()) < 30:
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not json.loads((killed / "manifest.json").read_text())["complete"]
    for out in (killed, ref):
        p = subprocess.run(cmd[:3] + [str(out)] + cmd[4:], env=env1(), capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        assert "6 unreadable file(s) skipped" in p.stdout
        listed = [ln for ln in p.stderr.splitlines() if ln.startswith("skipped unreadable file")]
        assert len(listed) == 6 and all("zz_corrupt.wav: " in ln for ln in listed)
    assert (killed / "clips.csv").read_bytes() == (ref / "clips.csv").read_bytes()
    assert (killed / "shards" / "00000.f16").read_bytes() == (ref / "shards" / "00000.f16").read_bytes()
    assert len((ref / "skipped.txt").read_text().splitlines()) == 6


def test_the_store_trains_like_the_float32_audio_path(speech_folder, store, tmp_path):
    cli(*train_args(store, tmp_path / "store", "msm-mae-micro", 6))
    cli(*train_args(speech_folder, tmp_path / "audio", "msm-mae-micro", 6))
    a, b = losses(tmp_path / "store"), losses(tmp_path / "audio")
    np.testing.assert_allclose(a, b, rtol=1e-2)  # the same crops and masks; float16 features only
    stats = hear_maeast.load_model(str(tmp_path / "store" / "model.safetensors")).frontend.norm_stats.tolist()
    manifest = json.loads((store / "manifest.json").read_text())
    assert stats == pytest.approx([manifest["norm_mean"], manifest["norm_std"]])  # the manifest's, into the checkpoint


def test_a_store_of_another_front_end_is_refused(store, tmp_path):
    with pytest.raises(WrongShape, match="needs 128 fbank bins"):
        open_source(store, AST)
    out = cli("features", tmp_path, store, "--preset", "mae-ast-patch-micro", code=2)
    assert "holds a store of 80 logmel features" in out
