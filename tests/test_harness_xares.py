"""X-ARES (hear_maeast.adapters.xares): its own encoder checker accepts our encoder, and its own pipeline
(`python -m xares.run`: encode, MLP, kNN) runs one task end to end on shards built from the real spoken digit task."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

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
    from eval.taskdir import safe_extract

    skip_unless_torchaudio_decodes(tmp_path)

    tasks = safe_extract(shared_file("hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz"), tmp_path / "hear")
    task = next(p for p in tasks.rglob("task_metadata.json")).parent
    folder = write_shards(task, tmp_path / "env")
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
    assert len(list((folder / "embeddings" / "MaeastEncoder").glob("wds-encoded-fold-fold0*-*.tar"))) == 5
