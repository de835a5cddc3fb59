"""MAE-AST through the public HEAR API equals the official model, on real speech of every length up to one chunk.

The official model cuts tokens with nn.Unfold (kernel = stride = patch), which drops the last T mod pw frames; every
token attends to every other, so a padded extra column would change them all. Each test builds an official-format
fairseq file (tests/test_official.py's builder), embeds UNTRIMMED real speech with `get_scene_embeddings` /
`get_timestamp_embeddings`, and compares with the reference forward pass written from the official code.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

import hear_maeast
from conftest import shared_file

pytest.importorskip("omegaconf", reason="the MAE-AST (fairseq) path needs omegaconf")
from test_official import KERNELS, mae_ast_checkpoint, mae_ast_reference  # noqa: E402  (the official-code builders)

SR = 16000
HEADS = 4
SECONDS = (1.0, 2.05, 3.3, 7.9, 10.2)  # 98, 203, 328, 788, 1018 frames: every one leaves a tail for patch models


@pytest.fixture(scope="module")
def words() -> torch.Tensor:
    """About 13 s of real speech at 16 kHz: Speech Commands words in a row, [n_samples]."""
    with zipfile.ZipFile(shared_file("speech_commands_v0.02-small.zip")) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".wav") and "_background_noise_" not in n)
        clips = [sf.read(io.BytesIO(z.read(n)), dtype="float32") for n in names[:14]]
    assert all(sr == SR for _, sr in clips)
    return torch.from_numpy(np.concatenate([c for c, _ in clips]))


@pytest.fixture(scope="module", params=["patch", "frame"])
def official_file(request, tmp_path_factory):
    """(kind, official state dict, path) of a 2-layer fairseq MAE-AST file of width 64."""
    ckpt = mae_ast_checkpoint(request.param, dim=64, depth=2, dec_depth=1, heads=HEADS, seed=11)
    path = tmp_path_factory.mktemp("fidelity") / f"random_{request.param}_75_2LayerEncoder.pt"
    torch.save(ckpt, path)
    return request.param, ckpt["model"], path


def official_columns(sd: dict, audio: torch.Tensor, kind: str, layer: int = -1) -> torch.Tensor:
    """The official model on a whole clip: audio [N] -> token columns [L / F_grid, F_grid * D] (Unfold drops the tail).

    layer=k: the output of encoder layer k; post-norm layers put the encoder's LayerNorm on the stack's input, so
    that is the official model with layers k+1.. removed.
    """
    if layer != -1:
        sd = {k: v for k, v in sd.items() if not (k.startswith("encoder.layers.") and int(k.split(".")[2]) >= layer)}
    fbank = torchaudio.compliance.kaldi.fbank(audio[None], sample_frequency=SR, use_energy=False,
                                              num_mel_bins=128)  # [T, 128], the official front end
    tokens = mae_ast_reference(sd, fbank[None], HEADS, KERNELS[kind])[0]  # [L, D], time-major (t * F_grid + f)
    f_grid = 128 // KERNELS[kind][0]
    return tokens.unflatten(0, (-1, f_grid)).flatten(1)  # [L / F_grid, F_grid * D], lowest band first


def official_frames(audio: torch.Tensor) -> int:
    return 1 + (len(audio) - 400) // 160  # Kaldi's snip-edges framing


@pytest.mark.parametrize("layer", [-1, 1])
@pytest.mark.parametrize("seconds", SECONDS)
def test_mae_ast_embeddings_equal_the_official_model_on_untrimmed_speech(official_file, words, seconds, layer):
    kind, sd, path = official_file
    model = hear_maeast.load_model(str(path), trust_pickle=True, layer=layer)
    audio = words[: int(seconds * SR)]
    ref = official_columns(sd, audio, kind, layer)  # [C, F_grid * D]
    assert official_frames(audio) % KERNELS[kind][1] or kind == "frame"  # patch clips all leave a tail
    scene = hear_maeast.get_scene_embeddings(audio[None], model)[0]  # [D]
    torch.testing.assert_close(scene, ref.unflatten(-1, (-1, model.cfg.dim)).mean((0, 1)), atol=1e-5, rtol=1e-5)
    emb, ts = hear_maeast.get_timestamp_embeddings(audio[None], model)
    shifts = model.cfg.shifts
    unshifted = emb[0, ::shifts]  # column j of the unshifted pass is the official token column j
    assert unshifted.shape == ref.shape
    torch.testing.assert_close(unshifted, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seconds", [2.05, 7.9])
def test_each_shifted_pass_is_the_official_model_on_the_audio_from_its_start(official_file, words, seconds):
    """Pass s starts s * pw / shifts frames later and holds whole tokens inside the audio only: it is the official
    model run on the clip without its first s * pw / shifts frames; the columns interleave every hop_ms."""
    kind, sd, path = official_file
    model = hear_maeast.load_model(str(path), trust_pickle=True)
    cfg = model.cfg
    audio = words[: int(seconds * SR)]
    emb, ts = hear_maeast.get_timestamp_embeddings(audio[None], model)
    pw, shifts = cfg.patch_size[1], cfg.shifts
    step = pw // shifts
    for s in range(shifts):
        ref = official_columns(sd, audio[s * step * 160 :], kind)  # its frame f is frame f + s * step of the clip
        assert emb[0, s::shifts].shape == ref.shape, s
        torch.testing.assert_close(emb[0, s::shifts], ref, atol=1e-5, rtol=1e-5)
    k = torch.arange(emb.shape[1])
    centre = 12.5 + 10 * (k * step + (pw - 1) / 2)  # ms: the centre of frames [k * step, k * step + pw)
    torch.testing.assert_close(ts[0], centre.float())
    assert (k * step + pw <= official_frames(audio)).all(), "no column reaches past the audio's last frame"
    assert (k[-1] + 1) * step + pw > official_frames(audio), "every column that fits is there"


def test_longer_clips_are_chunks_each_encoded_as_the_official_model(official_file, words):
    """Past input_frames (1024 frames, 10.24 s) we encode chunks on purpose (bounded memory); the official model
    attends over the whole clip. Each chunk equals the official model on that chunk's audio alone."""
    kind, sd, path = official_file
    model = hear_maeast.load_model(str(path), trust_pickle=True)
    chunk = model.cfg.input_frames
    audio = words[: int(12.7 * SR)]  # 1268 frames: one chunk and 244 more
    emb, _ = hear_maeast.get_timestamp_embeddings(audio[None], model)
    unshifted = emb[0, :: model.cfg.shifts]
    first = official_columns(sd, audio[: (chunk - 1) * 160 + 400], kind)  # frames [0, 1024)
    rest = official_columns(sd, audio[chunk * 160 :], kind)  # frames [1024, 1268)
    torch.testing.assert_close(unshifted, torch.cat([first, rest]), atol=1e-5, rtol=1e-5)
