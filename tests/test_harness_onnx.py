"""ONNX (hear_maeast.adapters.onnx, `hear-maeast export --onnx`): onnxruntime's per-chunk outputs and the HEAR
API's scene and timestamp embeddings around them equal torch's on real speech of 0.5 s to 30 s, both families."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
            path.write_bytes(b"an older export")  # an existing OUT is replaced, atomically
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


def samples(model, length: str) -> int:
    """A clip length in samples: shorter than one patch, exactly one chunk (input_frames frames), or seconds."""
    if length == "under-a-patch":
        n = 800  # 50 ms: 6 frames (MSM-MAE) or 3 (MAE-AST), a patch is 16
        assert model.frontend.num_frames(n) < model.cfg.patch_size[1]
        return n
    if length == "one-chunk":
        return next(n for n in range(model.cfg.input_frames * 160 - 800, model.cfg.input_frames * 160 + 800)
                    if model.frontend.num_frames(n) == model.cfg.input_frames)
    return int(float(length.rstrip("s")) * 16000)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("length", ["under-a-patch", "one-chunk", "0.5s", "3s", "30s"])  # 30 s: many chunks
def test_scene_and_timestamp_embeddings_equal_torch(exported, speech, name, length):
    import hear_maeast

    torch_model, onnx_model = exported[name]
    audio = speech[None, : samples(torch_model, length)]
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


def test_a_graph_is_checked_against_its_metadata_before_it_is_used(exported, tmp_path):
    """load_onnx checks a graph's inputs, outputs and one chunk against the configuration in its metadata. Before: a
    graph carrying another model's metadata loaded and failed (or embedded wrongly) later, a damaged layer field was
    an internal error, and a named pipe was "not found"."""
    import os

    import onnx

    from hear_maeast.checkpoint import CheckpointError

    from hear_maeast.config import get_preset

    graphs = {name: Path(exported[name][1].source) for name in FAMILIES}  # the fixture's exports
    data = graphs["mae-ast-patch-micro"].read_bytes()
    for cut in (16, len(data) // 2, len(data) - 100):  # a copy cut short: header, weights, metadata
        (tmp_path / "cut.onnx").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=f"^{tmp_path / 'cut.onnx'}: "):
            load_onnx(tmp_path / "cut.onnx")

    def relabelled(name: str, **meta) -> str:
        graph = onnx.load(str(graphs["mae-ast-patch-micro"]))
        for prop in graph.metadata_props:
            prop.value = meta.get(prop.key, prop.value)
        onnx.save(graph, str(tmp_path / name))
        return str(tmp_path / name)

    with pytest.raises(CheckpointError, match="the graph takes 128 mel bins .* its metadata describes msm-mae-micro"):
        load_onnx(relabelled("msm.onnx", **{"hear_maeast/config": exported["msm-mae-micro"][0].cfg.to_json()}))
    with pytest.raises(CheckpointError, match="does not run on one chunk of mae-ast-frame-micro"):  # 128 bins, 32-d too
        load_onnx(relabelled("frame.onnx", **{"hear_maeast/config": get_preset("mae-ast-frame-micro").to_json()}))
    with pytest.raises(CheckpointError, match="its hear_maeast metadata is damaged"):
        load_onnx(relabelled("layer.onnx", **{"hear_maeast/layer": "last"}))
    os.mkfifo(tmp_path / "pipe.onnx")
    with pytest.raises(BadInput, match="pipe.onnx is a named pipe, not a regular file"):
        load_onnx(tmp_path / "pipe.onnx")
    with pytest.raises(BadInput, match=r"layer=5: expected an int in 1\.\.2 or -1"):
        Embedder(onnx=str(graphs["msm-mae-micro"]), layer=5)
    if not torch.cuda.is_available():
        with pytest.raises(BadInput, match="device 'cuda': this machine has 0 CUDA device"):
            Embedder(onnx=str(graphs["msm-mae-micro"]), device="cuda")


def test_export_on_a_full_disk_is_one_line_and_keeps_the_previous_file(micro_checkpoints, tmp_path):
    """A real ENOSPC (a 64 KiB tmpfs in a private mount namespace): one line naming OUT, exit 1, the previous file
    byte for byte and no temporary left."""
    import shutil

    out = tmp_path / "out"
    out.mkdir()
    script = ('mount -t tmpfs -o size=64k tmpfs "$0" || exit 99; echo previous > "$0/m.onnx"; "$@"; rc=$?; '
              'echo "LEFT:$(ls -A "$0" | tr "\\n" " ")"; cat "$0/m.onnx"; exit $rc')
    prefix = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, str(out)]
    if not shutil.which("unshare") or subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tiny tmpfs here (unshare)")
    run = subprocess.run([*prefix, sys.executable, "-m", "hear_maeast", "export", str(micro_checkpoints["msm-mae-micro"]),
                          "--onnx", str(out / "m.onnx")], capture_output=True, text=True, env=env1(), timeout=300,
                         cwd=REPO)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr.strip().splitlines()[-1] == (f"error: No space left on device: {out / 'm.onnx'} (free some space "
                                                   "or choose another output folder)"), run.stderr
    assert run.stdout.split("LEFT:")[1].splitlines() == ["m.onnx ", "previous"]  # no temporary, the old file
