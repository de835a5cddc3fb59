"""The checkpoint format: old files keep loading, bad ones are refused before they cost memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.numpy import load_file as load_numpy

import hear_maeast
from hear_maeast.config import ModelConfig, get_preset
from hear_maeast.errors import BadInput

DATA = Path(__file__).parent / "data"


# ---- files written by earlier versions ---------------------------------------------------------
@pytest.mark.parametrize("family,norm_position,k_bias", [("msm-mae", "pre", False), ("mae-ast-frame", "post", True)])
def test_checkpoints_written_by_version_0_1_0_load_and_compute_what_they_computed(family, norm_position, k_bias):
    # tests/data/v0.1.0-*: written by hear_maeast 0.1.0 (config keys `block`, `qkv_bias`; statistics also as a
    # tensor), with that version's outputs for one clip beside them
    expected = load_numpy(str(DATA / "v0.1.0-expected.safetensors"))
    model = hear_maeast.load_model(str(DATA / f"v0.1.0-{family}-tiny.safetensors"))
    assert (model.cfg.norm_position, model.cfg.k_bias) == (norm_position, k_bias)
    assert (model.cfg.norm_mean, model.cfg.norm_std) == (-5.5, 3.25)  # set with set_norm_stats before saving
    clip = torch.from_numpy(expected["clip"])
    with torch.no_grad():
        tokens = model.encode(model.frontend(clip)[..., :32])
    assert torch.equal(tokens, torch.from_numpy(expected[f"{family}/tokens"]))
    if family == "msm-mae":  # MAE-AST's clip-level semantics are being aligned with the official model's tail rule
        assert torch.equal(hear_maeast.get_scene_embeddings(clip, model), torch.from_numpy(expected["msm-mae/scene"]))


def test_configuration_keys_of_version_0_1_0_are_read_under_their_old_names():
    new = json.loads(get_preset("mae-ast-patch-micro").to_json())
    old = {k: v for k, v in new.items() if k not in ("norm_position", "k_bias")}
    old.update(block="postnorm", qkv_bias="qkv")
    assert ModelConfig.from_dict(old) == get_preset("mae-ast-patch-micro")
    with pytest.raises(BadInput, match="qkv_bias='kv' is not one of"):
        ModelConfig.from_dict({**old, "qkv_bias": "kv"})
    with pytest.raises(BadInput, match="block='prenorm' contradicts norm_position='post'"):
        ModelConfig.from_dict({**old, "block": "prenorm", "norm_position": "post"})


# ---- configurations ------------------------------------------------------------------------------
@pytest.mark.parametrize("change,message", [
    ({"heads": 0}, "heads=0 must be a positive int"),
    ({"depth": -1}, "depth=-1 must be a positive int"),
    ({"dim": 32.0}, "dim=32.0 must be a positive int"),
    ({"patch_size": [16]}, r"patch_size=\(16,\) must be two positive ints"),
    ({"norm_std": 0.0}, "norm_std=0.0 must be > 0"),
    ({"norm_mean": float("nan")}, "norm_mean=nan must be a finite number"),
    ({"n_mels": 100000, "patch_size": [100000, 2]}, "n_mels=100000 is more than 256"),
    ({"cls_token": "yes"}, "cls_token='yes' must be true or false"),
])
def test_a_configuration_with_impossible_values_is_refused_with_every_problem_named(change, message):
    d = {**json.loads(get_preset("msm-mae-micro").to_json()), **change}
    with pytest.raises(BadInput, match=message):
        ModelConfig.from_dict(d)
