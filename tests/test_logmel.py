"""The log-mel floor (hear_maeast.logmel) as a HEAR module: the validator, shapes, timestamps, and what it computes."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

from conftest import BIN, run_env
from hear_maeast import logmel


@pytest.fixture(scope="module")
def model():
    return logmel.load_model()


@pytest.fixture(scope="module")
def real_clip(speech_wavs) -> torch.Tensor:
    """A real spoken word: [16000] float32."""
    from hear_maeast.audio import load_audio

    return load_audio(speech_wavs[0])


def reference_logmel(audio: torch.Tensor) -> torch.Tensor:
    """MSM-MAE's front end as its official runtime computes it: nnAudio's MelSpectrogram, whose filterbank is
    librosa's default (Slaney scale and area normalisation): n_fft 400, hop 160, centred with reflect padding, 80 mels
    50-8000 Hz, power 2, then log(x + float32 eps). Here with librosa itself. [n, 80, T]"""
    librosa = pytest.importorskip("librosa")
    mel = librosa.feature.melspectrogram(y=audio.numpy(), sr=16000, n_fft=400, hop_length=160, win_length=400,
                                         center=True, pad_mode="reflect", power=2.0, n_mels=80, fmin=50, fmax=8000)
    return torch.from_numpy(np.log(mel + np.finfo(np.float32).eps)).float()


@pytest.mark.slow
def test_hear_validator_passes_the_floor():
    res = subprocess.run([str(BIN / "hear-validator"), "hear_maeast.logmel"], capture_output=True, text=True,
                         env=run_env(), timeout=600)
    assert "Looks good!" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]


@pytest.mark.slow  # librosa's first import compiles with numba: over 10 s here
def test_scene_embedding_is_the_per_bin_mean_then_std_of_the_log_mel(model, real_clip):
    audio = real_clip[None]  # [1, n], a real spoken word
    emb = logmel.get_scene_embeddings(audio, model)
    assert emb.shape == (1, 160) and model.scene_embedding_size == 160 and emb.dtype == torch.float32
    mel = reference_logmel(audio)  # [1, 80, T]
    torch.testing.assert_close(emb[0, :80], mel[0].mean(-1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(emb[0, 80:], mel[0].std(-1, unbiased=False), atol=1e-4, rtol=1e-4)


@pytest.mark.slow  # librosa, as above
def test_timestamps_every_40_ms_centred_on_the_frames_they_average(model, real_clip):
    audio = real_clip.repeat(17120 // len(real_clip) + 1)[None, :17120]  # 1.07 s (a validator length) of real speech
    emb, ts = logmel.get_timestamp_embeddings(audio, model)
    assert emb.shape == (1, ts.shape[1], 80) and ts.shape[0] == 1 and model.timestamp_embedding_size == 80
    assert np.allclose(np.diff(ts[0].numpy()), 40.0) and ts[0, 0] == 15.0  # frames 0-3 are centred at 0..30 ms
    assert ts[0, -1] <= 1070.0 and ts[0, -1] > 1070.0 - 50.0  # to the end of the audio, never past it
    mel = reference_logmel(audio)[0]  # [80, 108]
    for k in (0, 7, ts.shape[1] - 1):
        torch.testing.assert_close(emb[0, k], mel[:, 4 * k : 4 * k + 4].mean(-1), atol=1e-4, rtol=1e-4)


def test_clips_shorter_than_one_window_get_one_embedding_at_their_middle(model):
    emb, ts = logmel.get_timestamp_embeddings(torch.zeros(3, 100), model)  # 6.25 ms
    assert emb.shape == (3, 1, 80) and torch.all(ts == 3.125)
    assert torch.isfinite(emb).all() and torch.isfinite(logmel.get_scene_embeddings(torch.zeros(3, 100), model)).all()


def test_bad_input_and_weights_are_refused_with_a_clear_message(model):
    with pytest.raises(ValueError, match="no weights"):
        logmel.load_model("some.safetensors")
    with pytest.raises(TypeError, match="int16"):
        logmel.get_scene_embeddings(torch.zeros(1, 1600, dtype=torch.int16), model)
    with pytest.raises(ValueError, match="NaN"):
        logmel.get_timestamp_embeddings(torch.full((1, 1600), float("nan")), model)
