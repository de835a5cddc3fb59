"""The adapter layer's core (hear_maeast.adapters, api.get_layer_states), without any harness installed: every
block's hidden states in one pass are what `layer=l` embeds, and bad input gets the HEAR API's one-line errors."""

from __future__ import annotations

import pytest
import torch

import hear_maeast
from hear_maeast.adapters import Embedder
from hear_maeast.errors import BadInput
from hear_maeast.model import pool_scene


@pytest.mark.parametrize("name", ["msm-mae-micro", "mae-ast-patch-micro", "mae-ast-frame-micro"])
def test_layer_states_are_each_layers_own_columns_on_real_speech(micro_checkpoints, real_clip, name):
    audio = torch.cat([real_clip, real_clip.flip(0)])[None] * 100  # [1, N] ~2 s of a real digit, audible
    states = Embedder(str(micro_checkpoints[name])).layer_states(audio)  # depth x [1, C, Fg*D]
    model = Embedder(str(micro_checkpoints[name])).model
    assert len(states) == model.cfg.depth
    for layer, cols in enumerate(states, 1):  # the last with the final norm (MSM-MAE is pre-norm), as layer=-1
        expected = hear_maeast.get_scene_embeddings(audio, hear_maeast.load_model(str(micro_checkpoints[name]),
                                                                                  layer=layer))
        assert torch.allclose(pool_scene(cols, model.cfg), expected, atol=1e-5), layer
    assert not torch.allclose(states[0], states[-1])


def test_adapters_refuse_what_the_hear_api_refuses(micro_checkpoints, tmp_path):
    with pytest.raises(BadInput, match=r"layer=3: expected an int in 1\.\.2 or -1 \(last\)"):
        Embedder(str(micro_checkpoints["msm-mae-micro"]), layer=3)
    (tmp_path / "x.pt").write_text("not a model")
    with pytest.raises(BadInput, match="not a checkpoint hear_maeast can read"):
        Embedder(str(tmp_path / "x.pt"))
    embedder = Embedder(str(micro_checkpoints["msm-mae-micro"]))
    with pytest.raises(BadInput, match=r"^X: audio at 44100 Hz, but this adapter declared 16000 Hz; resample it"):
        embedder.check_rate(44100, "X")
    embedder.check_rate(16000, "X")
    with pytest.raises(BadInput, match="the graph holds the model; pass no checkpoint"):
        Embedder(str(micro_checkpoints["msm-mae-micro"]), onnx=str(tmp_path / "m.onnx"))


def test_adapters_refuse_audio_they_would_embed_wrongly(micro_checkpoints):
    """What the harnesses hand over is checked by the Embedder (clip, batch) before the HEAR API sees it. Before: a
    channels-last stereo row [16000, 2] was embedded as a clip of 2 samples, a quiet int16 clip (peak 3) as floats
    32768 times too loud, s3prl's wavs_len past the padded length or negative silently embedded another length,
    and empty batches ended in library errors (np.stack, pad_sequence); int16 tensors were a TypeError."""
    import numpy as np

    from hear_maeast.adapters.s3prl import MaeastUpstream
    from hear_maeast.adapters.xares import MaeastEncoder

    path = str(micro_checkpoints["mae-ast-frame-micro"])
    embedder = Embedder(path)
    stereo = np.random.default_rng(0).standard_normal((2, 16000)).astype(np.float32) * 0.1  # [channels, samples]
    assert torch.equal(embedder.clip(stereo, "X"), torch.from_numpy(stereo.mean(0)))  # mixed down, MTEB's layout
    assert torch.equal(embedder.clip(stereo[0].tolist(), "X"), torch.from_numpy(stereo[0]))
    for audio, message in [
        (stereo.T, r"^X: audio of shape \(16000, 2\) \(channels last\? transpose it: array.T\)"),
        (np.full(16000, 3, np.int16), r"^X: audio of dtype torch.int16; expected floats in \[-1, 1\] \(divide int16"),
        (np.zeros(0, np.float32), "^X: a clip of 0 samples"),
        (np.zeros((2, 3, 100), np.float32), r"^X: audio of shape \(2, 3, 100\); expected \[n_samples\] mono"),
        ([[0.0], [0.0, 1.0]], "^X: audio that is not an array of samples"),
    ]:
        with pytest.raises(BadInput, match=message):
            embedder.clip(audio, "X")

    encoder, upstream = MaeastEncoder(path), MaeastUpstream(path)
    wavs = torch.randn(2, 16000) * 0.1
    for audio, message in [((wavs * 3000).short(), "X-ARES encoder: audio of dtype torch.int16"),
                           (torch.zeros(0, 16000), r"X-ARES encoder: audio of shape \(0, 16000\); expected \[batch >= 1"),
                           (wavs[:, None].expand(2, 2, 16000), r"audio of shape \(2, 2, 16000\); expected \[batch")]:
        with pytest.raises(BadInput, match=message):
            encoder(audio)
    for lengths in ([16001, 8000], [-5, 8000], [0, 8000], [1.5, 8000]):
        with pytest.raises(BadInput, match=r"s3prl upstream: wavs_len .*; expected whole numbers of samples in "
                                           r"1\.\.16000"):
            upstream(wavs, torch.tensor(lengths))
    with pytest.raises(BadInput, match=r"s3prl upstream: wavs: audio of shape \(0, 16000\)"):
        upstream(torch.zeros(0, 16000), torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize("name", ["msm-mae-micro", "mae-ast-patch-micro"])
def test_a_clip_alone_equals_the_clip_in_a_batch_of_other_lengths(micro_checkpoints, real_clip, name):
    """s3prl embeds each clip at its own wavs_len, X-ARES's encoder each row of a batch of one length (X-ARES pads
    a batch of several lengths and drops them: hear_task_config encodes one clip at a time, test_harness_xares)."""
    from hear_maeast.adapters.s3prl import MaeastUpstream
    from hear_maeast.adapters.xares import MaeastEncoder

    clips = [real_clip * 100, torch.randn(40000) * 0.1, real_clip[:9000] * 100]  # three lengths, ~2 s at most
    wavs = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)  # [3, N], zero-padded
    upstream = MaeastUpstream(str(micro_checkpoints[name]))
    hidden, lens = upstream(wavs, torch.tensor([len(c) for c in clips]))
    for i, clip in enumerate(clips):
        alone, alone_lens = upstream(clip[None], torch.tensor([len(clip)]))
        assert lens[0][i] == alone_lens[0][0]
        for layer in range(upstream.num_layers):
            assert torch.allclose(hidden[layer][i, : lens[0][i]], alone[layer][0], atol=1e-5), (i, layer)
            assert not hidden[layer][i, lens[0][i]:].any()  # zeros past the clip
    encoder = MaeastEncoder(str(micro_checkpoints[name]))
    same = torch.stack([clips[1], clips[1].flip(0), clips[1] * 0.5])  # [3, 40000]
    batch = encoder(same)
    for i in range(3):
        assert torch.allclose(batch[i], encoder(same[i : i + 1])[0], atol=1e-5), i


def test_the_torch_adapters_move_with_to_device_like_any_torch_module(micro_checkpoints):
    """The X-ARES encoder and the s3prl upstream hold the model as a submodule: `.to(device)` moves it and what it
    returns. Before: the model was not a submodule, so X-ARES's `encoder.to("cuda")` moved nothing (and said
    nothing without a GPU). A device this machine lacks is one line (BadInput), not torch's error."""
    from hear_maeast.adapters.s3prl import MaeastUpstream
    from hear_maeast.adapters.xares import MaeastEncoder

    for module in (MaeastEncoder(str(micro_checkpoints["msm-mae-micro"])),
                   MaeastUpstream(str(micro_checkpoints["mae-ast-patch-micro"]))):
        assert module.model in module.modules() and len(list(module.parameters())) > 0
        assert {t.device.type for t in [*module.parameters(), *module.buffers()]} == {"cpu"}
        if torch.cuda.is_available():
            module.to("cuda")
            assert {p.device.type for p in module.parameters()} == {"cuda"}
            out = module(torch.randn(1, 16000).cuda() * 0.1) if isinstance(module, MaeastEncoder) else \
                module(torch.randn(1, 16000).cuda() * 0.1, torch.tensor([16000]))[0][-1]
            assert out.device.type == "cuda"
            module.cpu()
        else:
            with pytest.raises(BadInput, match=rf"^{type(module).__name__}.to 'cuda': this machine has 0 CUDA "
                                               r"device\(s\); use cpu"):
                module.to("cuda")
        with pytest.raises(BadInput, match=r"\.to 'cuda:7': this machine has \d CUDA device\(s\)"):
            module.cuda(7)
        with pytest.raises(BadInput, match=r"\.to\(torch.float16\): the model runs in float32; .* torch.autocast"):
            module.to(torch.float16)
        assert module.to(torch.device("cpu")) is module and module.output_device.type == "cpu"


LONG_PROBE = """
import json, resource, sys, torch
from hear_maeast.adapters import Embedder
from hear_maeast.adapters.s3prl import MaeastUpstream
from hear_maeast.adapters.xares import MaeastEncoder
path = sys.argv[1]
embedder, upstream, encoder = Embedder(path), MaeastUpstream(path), MaeastEncoder(path)
calls = {"mteb": lambda a: embedder.scene(embedder.clip(a[0], "MTEB")[None]), "xares": encoder,
         "s3prl": lambda a: upstream(a, torch.tensor([a.shape[1]]))}
short = torch.randn(1, 30 * 16000) * 0.1
for f in calls.values():
    f(short)  # imports, first-call set-up and the 30 s working set, before measuring
audio = torch.randn(1, 10 * 60 * 16000) * 0.1  # 10 minutes, 38 MB
out = {}
for name, f in calls.items():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    f(audio)
    out[name] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps(out))
"""


def test_ten_minutes_through_every_adapter_take_bounded_memory(micro_checkpoints):
    """The adapters hand whole clips to the HEAR API, which encodes them a segment of 16 chunks at a time: memory
    grows with the output only. (Attention over the whole 10 min of MAE-AST tokens would need gigabytes.)"""
    import json
    import subprocess
    import sys

    from conftest import REPO, env1

    res = subprocess.run([sys.executable, "-c", LONG_PROBE, str(micro_checkpoints["mae-ast-patch-micro"])],
                         capture_output=True, text=True, timeout=300, env=env1(), cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    for name, grew_mib in json.loads(res.stdout.splitlines()[-1]).items():
        assert grew_mib < 150, (name, grew_mib)
