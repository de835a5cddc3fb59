"""ONNX (hear_maeast.adapters.onnx, `hear-maeast export --onnx`): onnxruntime's per-chunk outputs and the HEAR
API's scene and timestamp embeddings around them equal torch's on real speech of 0.5 s to 30 s, both families."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import REPO, env1

pytest.importorskip("onnxruntime", reason="the ONNX harness is not installed: pip install '.[onnx]' -c constraints.txt")
pytest.importorskip("onnxscript", reason="the ONNX exporter needs onnxscript: pip install '.[onnx]' -c constraints.txt")

from hear_maeast.adapters import Embedder  # noqa: E402
from hear_maeast.adapters.onnx import export_onnx, load_onnx  # noqa: E402
from hear_maeast.errors import BadInput  # noqa: E402

FAMILIES = ["msm-mae-micro", "mae-ast-patch-micro"]
RTOL = 1e-4


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def speech(speech_wavs) -> torch.Tensor:
    """30 s of real speech: the Speech Commands words one after another [480000]."""
    from hear_maeast.audio import load_audio

    return torch.cat([load_audio(p) for p in speech_wavs[:40]])[: 30 * 16000]


@pytest.fixture(scope="module")
def exported(micro_checkpoints, tmp_path_factory) -> dict:
    """{family: (torch model, onnxruntime model)}; the MAE-AST graph written by the real command line."""
    out, models = tmp_path_factory.mktemp("onnx"), {}
    for name in FAMILIES:
        torch_model = Embedder(str(micro_checkpoints[name])).model
        path = out / f"{name}.onnx"
        if name.startswith("mae-ast"):
            command = [sys.executable, "-m", "hear_maeast", "export", str(micro_checkpoints[name]), "--onnx", str(path)]
            run = subprocess.run(command, capture_output=True, text=True, env=env1(), timeout=300, cwd=REPO)
            assert run.returncode == 0, run.stderr[-2000:]
            assert f"wrote {path}" in run.stdout
        else:
            export_onnx(torch_model, path)
        models[name] = (torch_model, load_onnx(path))
    return models


@pytest.mark.parametrize("name", FAMILIES)
def test_per_chunk_outputs_equal_torch_on_real_speech(exported, speech, name):
    torch_model, onnx_model = exported[name]
    cfg = torch_model.cfg
    spec = torch_model.frontend(speech[None, : 3 * 16000])[..., : cfg.input_frames]  # [1, F, T] real features
    chunks = [torch.cat([spec, spec.flip(-1)])]  # batch of 2
    if not cfg.fixed_length:  # 1-D positions: the graph takes any whole number of tokens
        chunks.append(spec[..., : 5 * cfg.patch_size[1]])
    for chunk in chunks:
        ours = onnx_model.encode(chunk, -1)
        assert ours.shape == torch_model.encode(chunk).shape
        assert rel(ours, torch_model.encode(chunk)) < RTOL


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("seconds", [0.5, 3.0, 30.0])
def test_scene_and_timestamp_embeddings_equal_torch(exported, speech, name, seconds):
    import hear_maeast

    torch_model, onnx_model = exported[name]
    audio = speech[None, : int(seconds * 16000)]
    assert rel(hear_maeast.get_scene_embeddings(audio, onnx_model),
               hear_maeast.get_scene_embeddings(audio, torch_model)) < RTOL
    (emb, ts), (ref, ref_ts) = (hear_maeast.get_timestamp_embeddings(audio, m) for m in (onnx_model, torch_model))
    assert emb.shape == ref.shape and torch.equal(ts, ref_ts)
    assert rel(emb, ref) < RTOL


def test_a_graph_answers_for_its_own_layer_and_files_that_are_not_ours_are_refused(exported, micro_checkpoints,
                                                                                     tmp_path):
    import onnx

    torch_model, _ = exported["mae-ast-patch-micro"]
    path = export_onnx(torch_model, tmp_path / "layer1.onnx", layer=1)
    with pytest.raises(BadInput, match="exported for layer 1, asked for layer -1"):
        load_onnx(path)
    one = Embedder(onnx=str(path), layer=1)
    assert rel(one.scene(torch.ones(1, 8000) * 0.1), Embedder(str(micro_checkpoints["mae-ast-patch-micro"]),
                                                              layer=1).scene(torch.ones(1, 8000) * 0.1)) < RTOL
    with pytest.raises(BadInput, match=r"holds one layer \(1\); every layer's hidden states need the checkpoint"):
        one.layer_states(torch.ones(1, 8000) * 0.1)
    with pytest.raises(BadInput, match=r"layer=3: expected an int in 1\.\.2"):
        export_onnx(torch_model, tmp_path / "x.onnx", layer=3)
    plain = onnx.load(str(path))
    del plain.metadata_props[:]
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    with pytest.raises(BadInput, match="without hear_maeast metadata"):
        load_onnx(tmp_path / "plain.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(BadInput, match="not a readable ONNX file"):
        load_onnx(tmp_path / "junk.onnx")


def test_export_command_refuses_a_layer_the_model_lacks_in_one_line(micro_checkpoints, tmp_path):
    from conftest import run_cli

    out = run_cli("export", micro_checkpoints["msm-mae-micro"], "--onnx", tmp_path / "x.onnx", "--layer", "9", code=2)
    assert "layer=9: expected an int in 1..2 or -1 (last)" in out and not (tmp_path / "x.onnx").exists()
