"""The HEAR API as heareval and hear-validator use it: shapes, timestamps, batch independence, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import hear_maeast
from hear_maeast.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from hear_maeast.config import PRESETS, get_preset
from hear_maeast.errors import BadInput, WorkFailed
from hear_maeast.model import MaskedAutoencoder

SR = 16000
FAMILIES = ("msm-mae-micro", "mae-ast-patch-micro", "mae-ast-frame-micro")


@pytest.fixture(scope="module", params=FAMILIES)
def model(request, micro_checkpoints):
    return hear_maeast.load_model(str(micro_checkpoints[request.param]))


def test_loaded_model_has_the_hear_attributes(model):
    assert model.sample_rate == 16000
    assert isinstance(model.scene_embedding_size, int) and isinstance(model.timestamp_embedding_size, int)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_a_clip_alone_and_inside_a_batch_give_the_same_embedding(model, real_clip):
    n = len(real_clip)
    others = torch.stack([torch.randn(n) * 0.5, torch.zeros(n), real_clip.flip(0) * 0.1])
    batch = torch.cat([others[:2], real_clip[None], others[2:]])
    alone_scene = hear_maeast.get_scene_embeddings(real_clip[None], model)
    batch_scene = hear_maeast.get_scene_embeddings(batch, model)
    torch.testing.assert_close(batch_scene[2:3], alone_scene, atol=1e-5, rtol=0)
    alone_ts, _ = hear_maeast.get_timestamp_embeddings(real_clip[None], model)
    batch_ts, _ = hear_maeast.get_timestamp_embeddings(batch, model)
    torch.testing.assert_close(batch_ts[2:3], alone_ts, atol=1e-5, rtol=0)


@pytest.mark.parametrize("seconds", [1.07, 1.98, 4.0, 2.74, 600.0])
def test_timestamps_are_regular_centred_and_inside_the_audio(model, seconds):
    n = int(seconds * SR)
    audio = torch.rand(2, n) * 2 - 1  # white noise, as hear-validator feeds
    emb, ts = hear_maeast.get_timestamp_embeddings(audio, model)
    cfg = model.cfg
    assert emb.dtype == torch.float32 and ts.dtype == torch.float32
    assert emb.shape[:2] == ts.shape and emb.shape[0] == 2 and emb.shape[2] == model.timestamp_embedding_size
    hop = torch.diff(ts[0].double())
    assert (hop - cfg.hop_ms).abs().max() < 1e-3, "timestamps must be regular"
    assert cfg.hop_ms <= 50
    assert ts.max() <= seconds * 1000, "no timestamp past the end of the audio"
    # centred: the first embedding covers frames [0, pw), whose centre is (pw - 1) / 2 frames after frame 0
    pw = cfg.patch_size[1]
    assert ts[0, 0].item() == pytest.approx(cfg.frame_offset_ms + 10 * (pw - 1) / 2)
    # dense: the last embedding is less than one hop plus one column from the end
    assert seconds * 1000 - ts[0, -1].item() < cfg.hop_ms + pw * 10 + cfg.frame_offset_ms
    assert torch.isfinite(emb).all()


def test_long_audio_is_encoded_in_chunks(model):
    """Attention never spans more than one chunk: tokens of chunk 2 do not see chunk 1."""
    cfg = model.cfg
    n = cfg.input_frames * 160 * 2 + 8000
    a = torch.randn(1, n) * 0.1
    b = a.clone()
    b[:, : cfg.input_frames * 160 // 2] = 0  # change only the first half of the first chunk
    ea, ta = hear_maeast.get_timestamp_embeddings(a, model)
    eb, _ = hear_maeast.get_timestamp_embeddings(b, model)
    late = ta[0] > (cfg.input_frames + cfg.patch_size[1] * 2) * 10 + 200  # well inside the 2nd chunk onwards
    torch.testing.assert_close(ea[0, late], eb[0, late], atol=1e-5, rtol=0)
    assert not torch.allclose(ea[0, ~late], eb[0, ~late])


def test_long_audio_in_segments_equals_one_pass(model, monkeypatch):
    """The front end and encoder run SEGMENT_CHUNKS chunks at a time; the result does not depend on it."""
    audio = torch.randn(2, model.cfg.input_frames * 160 * 3 + 5000) * 0.1
    monkeypatch.setattr(hear_maeast.hear_rules, "SEGMENT_CHUNKS", 1)
    seg_emb, seg_ts = hear_maeast.get_timestamp_embeddings(audio, model)
    seg_scene = hear_maeast.get_scene_embeddings(audio, model)
    monkeypatch.setattr(hear_maeast.hear_rules, "SEGMENT_CHUNKS", 1000)
    emb, ts = hear_maeast.get_timestamp_embeddings(audio, model)
    torch.testing.assert_close(seg_ts, ts)
    torch.testing.assert_close(seg_emb, emb, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(seg_scene, hear_maeast.get_scene_embeddings(audio, model), atol=1e-4, rtol=1e-4)


def test_a_last_segment_of_one_frame_is_embedded_as_in_one_pass(micro_checkpoints, monkeypatch):
    """MSM-MAE: a clip of k segments of frames and one sample more ends with a segment of one frame, whose window
    reflects 200 samples at the clip's end. Before, the front end reflected only the 200 samples it had sliced, and
    torch's reflect padding refused (a RuntimeError at 33.28 s with the default SEGMENT_CHUNKS)."""
    model = hear_maeast.load_model(str(micro_checkpoints["msm-mae-micro"]))
    audio = torch.randn(1, model.cfg.input_frames * 160) * 0.1  # 209 frames: segments of 208 and 1 below
    monkeypatch.setattr(hear_maeast.hear_rules, "SEGMENT_CHUNKS", 1)
    segmented = hear_maeast.get_timestamp_embeddings(audio, model)[0], hear_maeast.get_scene_embeddings(audio, model)
    monkeypatch.setattr(hear_maeast.hear_rules, "SEGMENT_CHUNKS", 1000)
    torch.testing.assert_close(segmented[0], hear_maeast.get_timestamp_embeddings(audio, model)[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(segmented[1], hear_maeast.get_scene_embeddings(audio, model), atol=1e-5, rtol=0)


def test_scene_embedding_is_the_mean_over_time(model, real_clip):
    cfg, pw = model.cfg, model.cfg.patch_size[1]
    # a length at which the timestamp grid's unshifted columns are exactly the scene's columns
    n = next(n for n in range(32000, 40000, 40)
             if len(hear_maeast.api.column_times(model, n, cfg.shifts)[:: cfg.shifts]) == -(-model.frontend.num_frames(n) // pw))
    audio = real_clip.repeat(n // len(real_clip) + 1)[None, :n]
    scene = hear_maeast.get_scene_embeddings(audio, model)
    assert scene.shape == (1, model.scene_embedding_size) and scene.dtype == torch.float32
    emb, _ = hear_maeast.get_timestamp_embeddings(audio, model)
    cols = emb[0, :: cfg.shifts]  # the unshifted pass
    if cfg.scene_pool == "tokens":
        cols = cols.unflatten(-1, (cfg.grid[0], cfg.dim)).mean(1)
    torch.testing.assert_close(scene[0], cols.mean(0), atol=1e-5, rtol=1e-5)


def test_layer_and_norm_stats_options(micro_checkpoints, real_clip):
    path = str(micro_checkpoints["msm-mae-micro"])
    last = hear_maeast.get_scene_embeddings(real_clip[None], hear_maeast.load_model(path))
    first = hear_maeast.get_scene_embeddings(real_clip[None], hear_maeast.load_model(path, layer=1))
    assert not torch.allclose(first, last)
    torch.testing.assert_close(last, hear_maeast.get_scene_embeddings(real_clip[None], hear_maeast.load_model(path, layer=2)))
    other = hear_maeast.get_scene_embeddings(real_clip[None], hear_maeast.load_model(path, norm_stats=[-3.0, 2.0]))
    assert not torch.allclose(other, last)
    with pytest.raises(ValueError, match="layer=7"):
        hear_maeast.load_model(path, layer=7)
    with pytest.raises(ValueError, match="norm_stats"):
        hear_maeast.load_model(path, norm_stats=[0.0, -1.0])
    with pytest.raises(ValueError, match="unknown model option"):
        hear_maeast.load_model(path, layers=3)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_gives_its_embedding_sizes(name):
    cfg = get_preset(name)
    model = hear_maeast.api.configure(MaskedAutoencoder(cfg))
    audio = torch.randn(1, SR) * 0.1
    emb, ts = hear_maeast.get_timestamp_embeddings(audio, model)
    assert emb.shape[-1] == cfg.timestamp_embedding_size == cfg.grid[0] * cfg.dim
    assert hear_maeast.get_scene_embeddings(audio, model).shape == (1, cfg.scene_embedding_size)
    expected = {"msm-mae-base-80x208p16x16": (3840, 3840), "mae-ast-patch-12l": (6144, 768), "mae-ast-frame-12l": (768, 768)}
    if name in expected:
        assert (cfg.timestamp_embedding_size, cfg.scene_embedding_size) == expected[name]


# ---- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [hear_maeast.get_scene_embeddings, hear_maeast.get_timestamp_embeddings])
def test_bad_audio_is_refused_with_a_message(model, fn):
    ok = torch.zeros(1, SR)
    cases = [
        (ok[0], ValueError, "expected 2-D"),
        (ok[None], ValueError, "expected 2-D"),
        ((ok * 32767).to(torch.int16), TypeError, "int16"),
        (torch.zeros(0, SR), ValueError, "empty batch"),
        (torch.zeros(1, 0), ValueError, "0 samples"),
        (torch.cat([ok, torch.full((1, SR), float("nan"))]), ValueError, r"NaN or Inf .*\[1\]"),
        (torch.tensor([[0.0, float("inf")]]), ValueError, "NaN or Inf"),
        ([[0.0] * 100], TypeError, "torch.Tensor"),
        (np.zeros((1, 100), dtype=np.int32), TypeError, "int32"),
    ]
    for audio, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            fn(audio, model)
    with pytest.raises(TypeError, match="hear_maeast.load_model"):
        fn(ok, torch.nn.Linear(2, 2))


def test_float64_and_numpy_audio_are_converted(model):
    audio = torch.rand(1, SR, dtype=torch.float64) - 0.5
    ref = hear_maeast.get_scene_embeddings(audio.float(), model)
    torch.testing.assert_close(hear_maeast.get_scene_embeddings(audio, model), ref)
    torch.testing.assert_close(hear_maeast.get_scene_embeddings(audio.numpy(), model), ref)


def test_mixed_precision_gives_float32_close_to_full_precision(model):
    """Under torch.autocast (bf16 on CPU; the same code path runs fp16/bf16 on CUDA) both functions return float32
    embeddings close to the float32 ones. MAE-AST (whole-token passes) once failed with "Index put requires the
    source and destination dtypes match"."""
    audio = (torch.rand(2, SR, generator=torch.Generator().manual_seed(0)) - 0.5) * 0.2
    scene, (emb, ts) = hear_maeast.get_scene_embeddings(audio, model), hear_maeast.get_timestamp_embeddings(audio, model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scene16 = hear_maeast.get_scene_embeddings(audio, model)
        emb16, ts16 = hear_maeast.get_timestamp_embeddings(audio, model)
    assert scene16.dtype == emb16.dtype == ts16.dtype == torch.float32
    assert emb16.shape == emb.shape and torch.equal(ts16, ts)
    torch.testing.assert_close(scene16, scene, atol=0.1, rtol=0.1)  # bf16 keeps ~3 significant digits
    torch.testing.assert_close(emb16, emb, atol=0.1, rtol=0.1)


@pytest.mark.parametrize("samples", [1, 100, 399, "one patch less one sample"])
def test_audio_shorter_than_one_patch_gives_one_embedding(model, samples):
    """MAE-AST gives no token for audio shorter than one patch (its nn.Unfold drops a partial one); we give exactly
    one embedding, of the audio zero-padded to one column, stamped at the middle of the audio. MSM-MAE pads, as its
    runtime: every column that starts in the audio and has its centre inside it (2399 samples = 150 ms: the columns
    centred at 75 and 115 ms), and one embedding at the middle when there is none."""
    pw = model.cfg.patch_size[1]
    if not isinstance(samples, int):  # the longest clip whose frames do not fill one patch
        samples = next(n for n in range(pw * 160 + 400, 0, -1) if model.frontend.num_frames(n) < pw)
    audio = torch.rand(1, samples) - 0.5
    emb, ts = hear_maeast.get_timestamp_embeddings(audio, model)
    expected = [75.0, 115.0] if (model.cfg.family, samples) == ("msm-mae", 2399) else [samples / 16 / 2]  # ms
    assert ts.tolist() == [expected]
    assert emb.shape == (1, len(expected), model.timestamp_embedding_size) and torch.isfinite(emb).all()
    scene = hear_maeast.get_scene_embeddings(audio, model)
    if model.cfg.scene_pool == "tokens":
        torch.testing.assert_close(scene[0], emb[0, 0].unflatten(-1, (model.cfg.grid[0], -1)).mean(0))
    else:
        torch.testing.assert_close(scene[0], emb[0, 0])


def test_audio_louder_than_full_scale_is_refused_with_what_to_do(model, real_clip):
    """HEAR audio is float in [-1, 1]. int16-scale floats, or 1e30, would give NaN or meaningless embeddings."""
    real_clip = real_clip / real_clip.abs().max()  # at full scale
    for audio in (real_clip[None] * 32767, torch.full((1, SR), 1e30), torch.full((1, SR), 1e300, dtype=torch.float64)):
        for fn in (hear_maeast.get_scene_embeddings, hear_maeast.get_timestamp_embeddings):
            with pytest.raises(BadInput, match=r"audio peaks at .* divided by 32768"):
                fn(audio, model)
    with pytest.raises(BadInput, match=r"sound\(s\) \[1\]"):  # names the offending sound of the batch
        hear_maeast.get_scene_embeddings(torch.stack([real_clip, real_clip * 100]), model)
    peak = hear_maeast.api.MAX_PEAK
    over = real_clip / real_clip.abs().max() * peak  # a float mix that overshoots full scale: accepted up to MAX_PEAK
    assert torch.isfinite(hear_maeast.get_scene_embeddings(over[None], model)).all()


def test_weights_out_of_range_raise_instead_of_returning_nan(tmp_path, real_clip):
    """Finite weights of 1e30 load (they are finite) but overflow in the encoder: an error naming the file, no NaN."""
    model = MaskedAutoencoder(get_preset("mae-ast-frame-micro"))
    with torch.no_grad():
        model.patch_embed.weight.fill_(1e30)
    path = save_checkpoint(model, tmp_path / "huge.safetensors")
    loaded = hear_maeast.load_model(str(path))
    for fn in (hear_maeast.get_scene_embeddings, hear_maeast.get_timestamp_embeddings):
        with pytest.raises(WorkFailed, match=r"huge.safetensors: the encoder gave NaN or Inf .*sound\(s\) \[0\]"):
            fn(real_clip[None], loaded)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_model_made_directly_or_by_load_checkpoint_embeds(name, micro_checkpoints, real_clip):
    """Runtime options (layer, max_batch) and provenance are declared on the model with defaults, so the HEAR
    functions need no `load_model` / `configure` first."""
    fresh = MaskedAutoencoder(get_preset(name))
    assert (fresh.layer, fresh.max_batch, fresh.provenance, fresh.source) == (-1, hear_maeast.api.MAX_BATCH, {}, "")
    emb, _ = hear_maeast.get_timestamp_embeddings(real_clip[None], fresh)
    assert hear_maeast.get_scene_embeddings(real_clip[None], fresh).shape == (1, fresh.scene_embedding_size)
    direct = load_checkpoint(micro_checkpoints[name])
    configured = hear_maeast.load_model(str(micro_checkpoints[name]))
    torch.testing.assert_close(hear_maeast.get_scene_embeddings(real_clip[None], direct),
                               hear_maeast.get_scene_embeddings(real_clip[None], configured))
    assert configured.source == str(micro_checkpoints[name]) and direct.provenance == configured.provenance


def test_checkpoint_problems_name_the_file(tmp_path, micro_checkpoints):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match="nope.safetensors"):
        hear_maeast.load_model(str(missing))
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError, for callers that catch that
        hear_maeast.load_model(str(missing))
    good = micro_checkpoints["msm-mae-micro"].read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="truncated.safetensors"):
        hear_maeast.load_model(str(truncated))
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="garbage.bin"):
        hear_maeast.load_model(str(garbage))


def test_checkpoint_whose_config_does_not_match_its_tensors(tmp_path):
    from safetensors.torch import load_file, save_file

    src = save_checkpoint(MaskedAutoencoder(get_preset("msm-mae-micro")), tmp_path / "a.safetensors")
    cfg = json.loads(get_preset("msm-mae-micro").to_json())
    cfg.update(depth=3, dim=48)
    bad = tmp_path / "mismatch.safetensors"
    save_file(load_file(str(src)), str(bad), metadata={"format": "hear_maeast/1", "config": json.dumps(cfg), "provenance": "{}"})
    with pytest.raises(CheckpointError, match=r"mismatch.safetensors.*missing.*encoder.blocks.2.*wrong shapes"):
        hear_maeast.load_model(str(bad))


def test_default_weights_load_and_say_what_they_are():
    model = hear_maeast.load_model()
    assert model.provenance.get("command"), "the bundled weights must record the command that trained them"
    assert model.provenance.get("steps", 0) > 0, "the bundled weights must be trained, never random"


def test_the_device_rule_has_one_home_and_refuses_in_one_line(micro_checkpoints):
    """hear_maeast.device.resolve_device serves the API, the command line, the adapters, pretraining and the probes;
    hear_maeast.api.resolve_device, kept for code written against the API module, is the same function."""
    from hear_maeast import api
    from hear_maeast.device import resolve_device

    assert api.resolve_device is resolve_device
    assert resolve_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(BadInput, match=r"^--device 'gpu0' is not a device; use cpu, cuda or cuda:N$"):
        resolve_device("gpu0", "--device")
    with pytest.raises(BadInput, match=r"^device 'cuda:99': this machine has \d+ CUDA device\(s\); use cpu$"):
        resolve_device("cuda:99")
    with pytest.raises(BadInput, match=r"device 'cuda:99': this machine has"):
        hear_maeast.load_model(str(micro_checkpoints["msm-mae-micro"]), device="cuda:99")
    assert hear_maeast.load_model(str(micro_checkpoints["msm-mae-micro"]), device="cpu").device.type == "cpu"
