"""The checkpoint format: old files keep loading, bad ones are refused before they cost memory."""

from __future__ import annotations

import json
import re
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
    # float32 round-off, not bit equality: the same weights give results a few ulp apart on CPUs whose matmul
    # kernels differ (seen on an Intel Xeon here against the machine that wrote the file)
    same = dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tokens, torch.from_numpy(expected[f"{family}/tokens"]), **same)
    if family == "msm-mae":  # MAE-AST's clip-level semantics are being aligned with the official model's tail rule
        scene = hear_maeast.get_scene_embeddings(clip, model)
        torch.testing.assert_close(scene, torch.from_numpy(expected["msm-mae/scene"]), **same)


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


# ---- normalisation statistics: one record, in the configuration -------------------------------------
def _rewrite(src: Path, dst: Path, config: dict | None = None, tensors: dict | None = None) -> Path:
    """A copy of checkpoint `src` with its configuration or tensors changed (metadata kept otherwise)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
    meta["config"] = json.dumps({**json.loads(meta["config"]), **(config or {})})
    save_file({**load_file(str(src)), **(tensors or {})}, str(dst), metadata=meta)
    return dst


@pytest.mark.parametrize("std", [0.0, -4.2])
def test_a_checkpoint_whose_std_is_not_positive_is_refused_naming_the_file(tmp_path, micro_checkpoints, std):
    bad = _rewrite(micro_checkpoints["msm-mae-micro"], tmp_path / "zero_std.safetensors", config={"norm_std": std})
    with pytest.raises(BadInput, match=rf"zero_std.safetensors.*norm_std={std} must be > 0"):
        hear_maeast.load_model(str(bad))


def test_a_version_0_1_0_statistics_tensor_with_a_negative_std_is_refused(tmp_path):
    bad = _rewrite(DATA / "v0.1.0-msm-mae-tiny.safetensors", tmp_path / "old.safetensors",
                   tensors={"frontend.norm_stats": torch.tensor([-5.5, -3.25])})
    with pytest.raises(BadInput, match=r"old.safetensors: frontend.norm_stats: norm_stats=\[-5.5, -3.25\]: expected .* std > 0"):
        hear_maeast.load_model(str(bad))


def test_norm_stats_live_in_the_configuration_and_travel_with_it(tmp_path):
    from hear_maeast.checkpoint import save_checkpoint
    from hear_maeast.model import MaskedAutoencoder

    model = MaskedAutoencoder(get_preset("mae-ast-frame-micro"))
    model.set_norm_stats(-3.0, 2.5)
    assert (model.cfg.norm_mean, model.cfg.norm_std) == (-3.0, 2.5) and model.frontend.norm_stats.tolist() == [-3.0, 2.5]
    with pytest.raises(RuntimeError):  # a copy: writing into it cannot silently diverge from the configuration
        model.frontend.norm_stats.copy_(torch.tensor([0.0, 1.0]))
    with pytest.raises(BadInput, match=r"norm_stats=\[1.0, 0.0\]: expected \[mean, std\], finite, with std > 0"):
        model.set_norm_stats(1.0, 0.0)
    loaded = hear_maeast.load_model(str(save_checkpoint(model, tmp_path / "m.safetensors")))
    assert loaded.cfg == model.cfg
    # a PyTorch state dict (the training state) carries them, and one written by 0.1.0 still loads
    fresh = MaskedAutoencoder(get_preset("mae-ast-frame-micro"))
    fresh.load_state_dict(model.state_dict())
    assert fresh.cfg == model.cfg
    old = {k: v for k, v in model.state_dict().items() if k != "_extra_state"}
    fresh = MaskedAutoencoder(get_preset("mae-ast-frame-micro"))
    fresh.load_state_dict({**old, "frontend.norm_stats": torch.tensor([-1.0, 0.5])})
    assert (fresh.cfg.norm_mean, fresh.cfg.norm_std) == (-1.0, 0.5)


# ---- bounded memory and time for any file ------------------------------------------------------------
PROBE = """
import json, os, resource, sys, time
import hear_maeast.api, hear_maeast.official  # imported once, before measuring
for path in sys.argv[1:]:
    sys.stdout.flush()
    if os.fork() == 0:  # each file in a fresh child: its own peak memory
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        try:
            hear_maeast.api.load_model(path)
            error = None
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(json.dumps({"path": path, "error": error, "seconds": time.perf_counter() - start, "grew_mib": grew}))
        sys.stdout.flush()
        os._exit(0)
    os.wait()
"""


def load_in_children(paths: list[Path]) -> dict[str, dict]:
    """load_model(path) for each path in a fresh child process: its error, seconds and peak memory growth (MiB)."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", PROBE, *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return {Path(r["path"]).name: r for r in map(json.loads, res.stdout.strip().splitlines())}


def _zip_bomb(path: Path, inflated_mib: int) -> Path:
    """A torch-style zip whose data.pkl is `inflated_mib` MiB of pickle opcodes, deflated to a few MiB."""
    import zipfile

    chunk = b"N0" * (1 << 19)  # 1 MiB of NONE, POP
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("archive/data.pkl", "w", force_zip64=True) as f:
            f.write(b"\x80\x02")
            for _ in range(inflated_mib):
                f.write(chunk)
            f.write(b".")
    return path


@pytest.fixture(scope="module")
def hostile_loads(tmp_path_factory, micro_checkpoints) -> dict[str, dict]:
    """Small files that claim, or inflate to, far more than they hold; each loaded in a fresh process."""
    tmp = tmp_path_factory.mktemp("hostile")
    files = [
        _rewrite(micro_checkpoints["msm-mae-micro"], tmp / "wide.safetensors", config={"dim": 2048, "heads": 16}),
        _rewrite(micro_checkpoints["msm-mae-micro"], tmp / "deep.safetensors", config={"depth": 1_000_000}),
        _zip_bomb(tmp / "checkpoint-100.pth", 512),
        tmp / "model.pt",
    ]
    files[-1].write_bytes(b"\x80\x02" + b"N0" * 4_000_000 + b".")  # legacy torch.save format: pickles in a row
    assert all(f.stat().st_size < 10 << 20 for f in files)
    return load_in_children(files)


@pytest.mark.parametrize("name,message", [
    ("wide.safetensors", r"does not match model .* \(checked before building it\): wrong shapes .*"
                         r"'patch_embed.weight: file \(32, 256\) vs expected \(2048, 256\)"),
    ("deep.safetensors", r"does not match .*missing blocks \['encoder.blocks.2', .* \.\.\."),
])
def test_a_small_file_claiming_a_huge_model_is_refused_before_anything_is_allocated(hostile_loads, name, message):
    got = hostile_loads[name]
    assert re.search(rf"CheckpointError: .*{name}: the file " + message, got["error"]), got
    assert got["grew_mib"] < 100 and got["seconds"] < 20, got  # building it first took 400+ MiB, or minutes


def test_the_sizes_checked_before_building_are_the_models_own():
    from hear_maeast.checkpoint import model_state, size_claims
    from hear_maeast.config import PRESETS
    from hear_maeast.model import MaskedAutoencoder

    for cfg in PRESETS.values():
        if "micro" in cfg.name or "tiny" in cfg.name:
            state = model_state(MaskedAutoencoder(cfg))
            assert {k: tuple(state[k].shape) for k in size_claims(cfg)} == size_claims(cfg)


def test_a_pickle_that_inflates_to_gigabytes_is_refused_at_once(hostile_loads):
    got = hostile_loads["checkpoint-100.pth"]  # 2.3 MiB on disk
    assert re.search(r"checkpoint-100.pth: a zip whose entries inflate to 512 MiB from a 2.\d MiB file", got["error"])
    assert got["grew_mib"] < 100 and got["seconds"] < 20, got  # scanning it took minutes in gigabytes


def test_a_pickle_with_millions_of_operations_is_refused_after_a_bounded_scan(hostile_loads):
    got = hostile_loads["model.pt"]
    assert "model.pt: its object pickle has more than 2000000 operations" in got["error"], got
    assert got["grew_mib"] < 100, got
