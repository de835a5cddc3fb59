"""ONNX (hear_maeast.adapters.onnx, `hear-maeast export --onnx`): onnxruntime's per-chunk outputs and the HEAR
API's scene and timestamp embeddings around them equal torch's on real speech of 0.5 s to 30 s, both families; so do
the front-end graph's features (torchaudio's) and the torch-free runtime's embeddings (hear_maeast.onnx_runtime, in a
process where torch cannot be imported); mismatched graphs and bad audio are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
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
    """A real ENOSPC (a 64 KiB tmpfs in a private mount namespace): one line naming the file that did not fit (the
    front end, written first), exit 1, the previous OUT byte for byte and no temporary left."""
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
    assert run.returncode == 1, run.stdout + run.stderr  # the front end (written first) does not fit
    assert run.stderr.strip().splitlines()[-1] == (f"error: No space left on device: {out / 'm.frontend.onnx'} (free "
                                                   "some space or choose another output folder)"), run.stderr
    assert run.stdout.split("LEFT:")[1].splitlines() == ["m.onnx ", "previous"]  # no temporary, the old file


# ---- the torch-free runtime (hear_maeast.onnx_runtime): the front-end graph, then the HEAR calls without torch ----
TORCH_FREE = "import sys; sys.modules['torch'] = sys.modules['torchaudio'] = None  # any import of them fails\n"
RUNTIME_CHILD = TORCH_FREE + """
import json, numpy as np
from hear_maeast import onnx_runtime as hear
assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchaudio') and sys.modules[m] is not None]
speech = np.load(sys.argv[1])
out = {}
for name, (graph, lengths) in json.loads(sys.argv[2]).items():
    model = hear.load_model(graph, threads=1)
    for n in lengths:
        audio = speech[None, :n]
        out[f"{name}/{n}/scene"] = hear.get_scene_embeddings(audio, model)
        out[f"{name}/{n}/emb"], out[f"{name}/{n}/ts"] = hear.get_timestamp_embeddings(audio, model)
np.savez(sys.argv[3], **out)
print("torch importable:", any(sys.modules.get(m) for m in ('torch', 'torchaudio')))
"""
LENGTHS = ["under-a-patch", "one-chunk", "0.5s", "3s", "30s"]


def torch_free(code: str, *args, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -c code args` in a process where torch and torchaudio cannot be imported."""
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env1(),
                          timeout=timeout, cwd=REPO)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("length", LENGTHS)
def test_the_front_end_graph_equals_torchaudio(exported, speech, name, length):
    """The ONNX front end against the torch path (torchaudio in float32) and torchaudio's own float64 result: within
    1e-4 relative of the float64 one, and no farther from the float32 one than torchaudio's float32 rounding is from
    float64 (Kaldi's float32 FFT alone differs from float64 by 1.2e-4 on the 30 s clip, at near-silent bins)."""
    import copy

    from hear_maeast import hear_rules, onnx_runtime

    torch_model, onnx_model = exported[name]
    runtime = onnx_runtime.load_model(onnx_model.source)
    audio = speech[None, : samples(torch_model, length)]
    ours = onnx_runtime.features(runtime, audio.numpy(), 0, hear_rules.num_frames(torch_model.cfg.frontend,
                                                                                   audio.shape[1]))
    ref = torch_model.frontend(audio)  # [1, F, T] float32, as the torch API computes it
    exact = copy.deepcopy(torch_model.frontend).double()(audio.double())
    assert ours.shape == ref.shape and ours.dtype == np.float32
    ours = torch.from_numpy(ours).double()
    assert rel(ours, exact) < RTOL
    assert rel(ours, ref.double()) < RTOL + rel(ref.double(), exact)


def test_the_runtime_without_torch_equals_the_torch_api(exported, speech, tmp_path):
    """In a process where torch is not importable, hear_maeast.onnx_runtime's scene and timestamp embeddings equal
    the torch API's within 1e-4 relative, the timestamps exactly, on real speech of 50 ms to 30 s, both families."""
    import json


    import hear_maeast

    np.save(tmp_path / "speech.npy", speech.numpy())
    plan = {name: (exported[name][1].source, [samples(exported[name][0], length) for length in LENGTHS])
            for name in FAMILIES}
    run = torch_free(RUNTIME_CHILD, tmp_path / "speech.npy", json.dumps(plan), tmp_path / "out.npz")
    assert run.returncode == 0 and "torch importable: False" in run.stdout, run.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    for name, (_, lengths) in plan.items():
        torch_model = exported[name][0]
        for n in lengths:
            audio = speech[None, :n]
            ref = hear_maeast.get_scene_embeddings(audio, torch_model)
            emb, ts = hear_maeast.get_timestamp_embeddings(audio, torch_model)
            assert rel(torch.from_numpy(got[f"{name}/{n}/scene"]), ref) < RTOL, (name, n)
            assert got[f"{name}/{n}/emb"].shape == tuple(emb.shape) and rel(torch.from_numpy(got[f"{name}/{n}/emb"]),
                                                                            emb) < RTOL, (name, n)
            assert np.array_equal(got[f"{name}/{n}/ts"], ts.numpy()), (name, n)


def test_the_runtime_refuses_mismatched_graphs_and_bad_audio_in_one_line(exported, tmp_path):
    """A front end beside another export's encoder (another family, or the same checkpoint's other layer), an encoder
    without its front end, an encoder of an older export (no pair id), int16 or stereo audio: one line each."""
    import shutil

    import onnx

    from hear_maeast import onnx_runtime
    from hear_maeast.errors import CheckpointError, CheckpointNotFound

    graphs = {name: Path(exported[name][1].source) for name in FAMILIES}
    ast, msm = tmp_path / "ast.onnx", tmp_path / "msm.onnx"
    shutil.copy(graphs["mae-ast-patch-micro"], ast)
    with pytest.raises(CheckpointNotFound, match=f"^{tmp_path / 'ast.frontend.onnx'}: the front-end graph of {ast} "
                                                 "is missing"):
        onnx_runtime.load_model(ast)
    shutil.copy(onnx_runtime.frontend_path(graphs["msm-mae-micro"]), tmp_path / "ast.frontend.onnx")
    with pytest.raises(CheckpointError, match=r"ast.frontend.onnx: the front end of another export \(msm-mae-micro"):
        onnx_runtime.load_model(ast)
    export_onnx(exported["mae-ast-patch-micro"][0], tmp_path / "first.onnx", layer=1)  # same weights, other layer
    shutil.copy(tmp_path / "first.frontend.onnx", tmp_path / "ast.frontend.onnx")
    with pytest.raises(CheckpointError, match=r"the front end of another export \(mae-ast-patch-micro, pair \w+\) "
                                              r"than the encoder"):
        onnx_runtime.load_model(ast)
    older = onnx.load(str(graphs["msm-mae-micro"]))
    kept = [p for p in older.metadata_props if p.key != onnx_runtime.META_PAIR]
    del older.metadata_props[:]
    older.metadata_props.extend(kept)
    onnx.save(older, str(msm))
    shutil.copy(onnx_runtime.frontend_path(graphs["msm-mae-micro"]), tmp_path / "msm.frontend.onnx")
    with pytest.raises(CheckpointError, match=r"msm.onnx: exported without a front end \(an older export\)"):
        onnx_runtime.load_model(msm)
    model = onnx_runtime.load_model(graphs["msm-mae-micro"])
    with pytest.raises(TypeError, match=r"^audio has dtype int16; expected floats in \[-1, 1\] \(divide int16 PCM"):
        onnx_runtime.get_scene_embeddings(np.zeros((1, 16000), np.int16), model)
    with pytest.raises(BadInput, match=r"^audio has shape \(1, 2, 16000\); expected 2-D \[n_sounds, n_samples\]"):
        onnx_runtime.get_timestamp_embeddings(np.zeros((1, 2, 16000), np.float32), model)
    with pytest.raises(BadInput, match=r"^audio peaks at 16000 in sound\(s\) \[0\]"):
        onnx_runtime.get_scene_embeddings(np.full((1, 800), 16000.0, np.float32), model)


def test_embed_a_wav_without_torch_and_export_the_default_weights(exported, speech_wavs, tmp_path):
    """`hear-maeast export --onnx OUT` (no CKPT: the bundled weights) writes both graphs; `python -m
    hear_maeast.onnx_runtime` embeds a 16 kHz wav without torch as `hear-maeast embed` does, and refuses an 8 kHz
    one in one line (exit 2)."""
    import soundfile as sf

    import hear_maeast
    from conftest import run_cli
    from hear_maeast.audio import load_audio

    out = run_cli("export", "--onnx", tmp_path / "default.onnx")
    assert f"wrote {tmp_path / 'default.frontend.onnx'}" in out and "msm-mae-tiny" in out
    cli = TORCH_FREE + "from hear_maeast.onnx_runtime import main; sys.exit(main(sys.argv[1:]))"
    run = torch_free(cli, tmp_path / "default.onnx", speech_wavs[0], "-o", tmp_path / "e.npz", "--timestamps")
    assert run.returncode == 0 and "wrote" in run.stdout, run.stderr[-2000:]
    got, wav = np.load(tmp_path / "e.npz"), load_audio(speech_wavs[0])[None]
    default = hear_maeast.load_model()
    assert rel(torch.from_numpy(got["scene"]), hear_maeast.get_scene_embeddings(wav, default)) < RTOL
    assert np.array_equal(got["timestamps_0"], hear_maeast.get_timestamp_embeddings(wav, default)[1][0].numpy())
    sf.write(tmp_path / "8k.wav", np.zeros(8000, np.float32), 8000)
    run = torch_free(cli, tmp_path / "default.onnx", tmp_path / "8k.wav", "-o", tmp_path / "f.npz")
    assert run.returncode == 2 and not (tmp_path / "f.npz").exists()
    assert run.stderr.strip() == (f"error: {tmp_path / '8k.wav'}: audio at 8000 Hz; the ONNX runtime reads 16000 Hz "
                                  "only: resample it first (hear_maeast.audio.resample, or `sox 8k.wav -r 16000 "
                                  "out.wav`)")


def test_without_soundfile_a_pcm_wav_is_read_by_the_wave_module_as_soundfile_reads_it(tmp_path):
    """The runtime's wav reader falls back to Python's wave module: 16- and 24-bit PCM, stereo averaged to mono."""
    import soundfile as sf

    from hear_maeast.audio import read_mono
    from hear_maeast.onnx_runtime import _read_pcm_wav

    stereo = (np.random.default_rng(0).uniform(-0.9, 0.9, (1600, 2))).astype(np.float32)
    for subtype in ("PCM_16", "PCM_24", "PCM_U8"):
        sf.write(tmp_path / "s.wav", stereo, 16000, subtype=subtype)
        mono, rate = _read_pcm_wav(tmp_path / "s.wav")
        expected, _ = read_mono(tmp_path / "s.wav")
        assert rate == 16000 and mono.dtype == np.float32 and np.abs(mono - expected).max() < 1e-6, subtype
    sf.write(tmp_path / "f.wav", stereo, 16000, subtype="FLOAT")
    with pytest.raises(BadInput, match="f.wav: cannot decode audio .* expected a PCM wav file"):
        _read_pcm_wav(tmp_path / "f.wav")
