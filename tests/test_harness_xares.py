"""X-ARES (hear_maeast.adapters.xares): its own encoder checker accepts our encoder, and its own pipeline
(`python -m xares.run`: encode, MLP, kNN) runs one task end to end on shards built from the real spoken digit task."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from conftest import REPO, env1, shared_file

pytest.importorskip("xares", reason="X-ARES is not installed: pip install '.[xares]' -c constraints.txt")

from hear_maeast.adapters.xares import MaeastEncoder, write_shards  # noqa: E402
from hear_maeast.errors import BadInput  # noqa: E402


def test_xares_checker_accepts_the_encoder_of_each_family(micro_checkpoints):
    from xares.audio_encoder_checker import check_audio_encoder

    for name in ("msm-mae-micro", "mae-ast-frame-micro"):
        encoder = MaeastEncoder(str(micro_checkpoints[name]))
        assert check_audio_encoder(encoder), name
        out = encoder(torch.randn(2, 50000) * 0.1)  # [B, T, D]: one frame every hop_size_in_ms
        assert out.shape[-1] == encoder.output_dim
        assert abs(out.shape[1] * encoder.hop_size_in_ms - 50000 / 16) <= 2 * encoder.hop_size_in_ms


def test_encoder_refuses_a_layer_the_model_lacks_and_a_file_that_is_not_ours(micro_checkpoints, tmp_path,
                                                                            monkeypatch):
    with pytest.raises(BadInput, match=r"layer=7: expected an int in 1\.\.2"):
        MaeastEncoder(str(micro_checkpoints["msm-mae-micro"]), layer=7)
    (tmp_path / "x.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(BadInput, match="not a checkpoint hear_maeast can read"):
        MaeastEncoder(str(tmp_path / "x.safetensors"))
    monkeypatch.setenv("HEAR_MAEAST_LAYER", "last")
    with pytest.raises(BadInput, match="HEAR_MAEAST_LAYER='last'"):
        MaeastEncoder(str(micro_checkpoints["msm-mae-micro"]))


def test_the_task_encodes_one_clip_at_a_time_since_xares_pads_batches_without_lengths(micro_checkpoints, tmp_path,
                                                                                      monkeypatch):
    """X-ARES collates a batch by zero-padding its clips to the longest and hands the encoder the audio only
    (`for (audio, _), ... in dl: self.encoder(audio)`): no encoder can tell the padding from the clip, and through
    attention the padding changes the clip's own frames. So the task encodes one clip per batch (before: 8)."""
    import json

    from xares.audiowebdataset import pad

    from hear_maeast.adapters.xares import LABELS_FILE, hear_task_config

    encoder = MaeastEncoder(str(micro_checkpoints["mae-ast-patch-micro"]))
    (tmp_path / LABELS_FILE).write_text(json.dumps({"labels": ["a", "b"], "folds": ["fold00", "fold01"]}))
    monkeypatch.setenv("HEAR_MAEAST_XARES_TASK", str(tmp_path))
    assert hear_task_config(encoder).batch_size_encode == 1
    short, long = torch.randn(20000) * 0.1, torch.randn(60000) * 0.1
    padded, _ = pad([short, long])  # X-ARES's own collation: [2, 60000]
    alone = encoder(short[None])[0]  # [T, D]
    assert not torch.allclose(encoder(padded)[0, : len(alone)], alone, atol=1e-3)  # what batching would give
    monkeypatch.setenv("HEAR_MAEAST_XARES_EPOCHS", "ten")
    with pytest.raises(BadInput, match="HEAR_MAEAST_XARES_EPOCHS='ten': expected a positive int"):
        hear_task_config(encoder)


def skip_unless_torchaudio_decodes(tmp_path) -> None:
    """X-ARES decodes its shards with torchaudio.load, which needs torchcodec and FFmpeg's shared libraries."""
    import numpy as np
    import soundfile as sf
    import torchaudio

    sf.write(tmp_path / "probe.wav", np.zeros(1600, dtype=np.float32), 16000)
    try:
        torchaudio.load(str(tmp_path / "probe.wav"))
    except (ImportError, RuntimeError, OSError) as e:
        pytest.skip(f"X-ARES cannot decode audio here: torchaudio.load needs torchcodec and FFmpeg "
                    f"(pip install '.[xares]'; apt-get install ffmpeg): {' '.join(str(e).split())[:200]}")


@pytest.mark.slow
def test_one_xares_task_runs_end_to_end_on_local_shards_of_real_audio(micro_checkpoints, tmp_path):
    from eval.archives import safe_extract

    skip_unless_torchaudio_decodes(tmp_path)

    tasks = safe_extract(shared_file("hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz"), tmp_path / "hear")
    task = next(p for p in tasks.rglob("task_metadata.json")).parent
    shards = subprocess.run([sys.executable, "-m", "eval.harness_tasks", "xares-shards", str(task),
                             str(tmp_path / "env")], capture_output=True, text=True, env=env1(), cwd=REPO, timeout=300)
    assert shards.returncode == 0, shards.stderr[-2000:]
    folder = Path(shards.stdout.strip())  # the documented command prints the task's folder
    assert folder == tmp_path / "env" / "spoken_digit"
    with tarfile.open(folder / "wds-audio-fold-fold00-000000.tar") as tar:
        assert len([m for m in tar.getnames() if m.endswith(".wav")]) == 20  # 100 clips, 5 folds
    env = dict(env1(), HEAR_MAEAST_CHECKPOINT=str(micro_checkpoints["mae-ast-patch-micro"]),
               HEAR_MAEAST_XARES_TASK=str(folder), HEAR_MAEAST_XARES_EPOCHS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, "-m", "xares.run", "--max-jobs", "0", "hear_maeast/adapters/xares.py",
                          "hear_maeast/adapters/xares.py"], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "spoken_digit" in run.stdout and "Weighted Average MLP Score" in run.stdout
    scores = folder / "checkpoints" / "MaeastEncoder"
    mlp, knn = (float((scores / f).read_text().split()[0]) for f in ("mlp_score.txt", "knn_score.txt"))
    assert 0.0 <= mlp <= 1.0 and 0.0 <= knn <= 1.0
    encoded = sorted((folder / "embeddings" / "MaeastEncoder").glob("wds-encoded-fold-fold0*-*.tar"))
    assert len(encoded) == 5
    # what X-ARES stored for a clip is the encoder's output on that clip alone (X-ARES zero-pads a batch of several
    # lengths and drops them, so hear_task_config encodes one clip at a time; before, 8 at a time, padded)
    import io

    import numpy as np
    import soundfile as sf

    encoder = MaeastEncoder(str(micro_checkpoints["mae-ast-patch-micro"]))
    with tarfile.open(folder / "wds-audio-fold-fold00-000000.tar") as tar:
        wavs = [(Path(m.name).stem, sf.read(io.BytesIO(tar.extractfile(m).read()), dtype="float32")[0])
                for m in tar.getmembers() if m.name.endswith(".wav")]
    with tarfile.open(encoded[0]) as tar:
        stored = {Path(m.name).stem: np.load(io.BytesIO(tar.extractfile(m).read()))
                  for m in tar.getmembers() if m.name.endswith(".npy")}
    assert len(stored) == len(wavs) == 20
    for i, (name, clip) in enumerate(wavs):  # X-ARES keys an embedding by clip name and batch number
        embedding, alone = stored[f"{name}{i}"], encoder(torch.from_numpy(clip)[None])[0].numpy()
        assert embedding.shape == alone.shape and np.allclose(embedding, alone, atol=1e-5), name


def test_write_shards_takes_clips_and_refuses_what_it_cannot_write(tmp_path):
    """The adapter takes clips (name, labels, {split: [(clip, audio, label)]}); reading a HEAR task folder is
    eval.harness_tasks' (the model package never imports eval)."""
    import json

    import numpy as np

    from hear_maeast.adapters.xares import LABELS_FILE

    audio = np.zeros(1600, np.float32)
    splits = {"fold00": [("a.wav", audio, "x")], "fold01": [("b.c.wav", audio, "y")]}
    folder = write_shards("toy", ["x", "y"], splits, tmp_path)
    assert folder == tmp_path / "toy" and (folder / ".audio_tar_ready").is_file()
    assert json.loads((folder / LABELS_FILE).read_text()) == {"labels": ["x", "y"], "folds": ["fold00", "fold01"]}
    with tarfile.open(folder / "wds-audio-fold-fold01-000000.tar") as tar:
        assert sorted(tar.getnames()) == ["b_c.json", "b_c.wav"]
    for name, labels, bad, message in [
        ("toy", ["x"], splits, r"X-ARES task toy, split fold01: label\(s\) \['y'\] not in the task's 1 labels"),
        ("toy", ["x", "y"], {}, "X-ARES task toy: no splits"),
        ("toy", ["x", "y"], {"fold00": []}, "X-ARES task toy, split fold00: no clips"),
        ("../up", ["x", "y"], splits, r"X-ARES task name '\.\./up': .* give a plain name"),
        ("toy", ["x", "y"], {"a/b": splits["fold00"]}, "X-ARES split 'a/b'"),
    ]:
        with pytest.raises(BadInput, match=message):
            write_shards(name, labels, bad, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_the_shards_command_is_one_line_on_a_folder_that_is_not_a_task(tmp_path):
    run = subprocess.run([sys.executable, "-m", "eval.harness_tasks", "xares-shards", str(tmp_path),
                          str(tmp_path / "env")], capture_output=True, text=True, env=env1(), cwd=REPO, timeout=120)
    assert run.returncode == 1 and run.stderr.startswith("error: ") and "task_metadata.json is missing" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "env").exists()
    usage = subprocess.run([sys.executable, "-m", "eval.harness_tasks"], capture_output=True, text=True, env=env1(),
                           cwd=REPO, timeout=120)
    assert usage.returncode == 2 and "python -m eval.harness_tasks xares-shards TASK_DIR ENV_ROOT" in usage.stderr
