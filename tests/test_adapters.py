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
