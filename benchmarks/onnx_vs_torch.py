"""The torch-free ONNX runtime vs the torch API on this CPU (hear_maeast.onnx_runtime, hear_maeast.adapters.onnx).

    python benchmarks/onnx_vs_torch.py [--checkpoint CKPT] [--presets P ...] [--seconds 10] [--threads N]
                                       [--repeats R] [--json FILE]

For the default weights (or CKPT) and each preset (randomly initialised: speed does not depend on the weights), both
graphs are exported with `export_onnx`; then, on one clip of --seconds of noise, on the same N threads (torch's
intra-op threads and onnxruntime's): the front end alone, the per-chunk encoder alone on one full chunk, and the
whole `get_scene_embeddings` / `get_timestamp_embeddings` calls, each through
  - torch: the torch API (hear_maeast.api);
  - onnx encoder: the torch API around the exported encoder (`load_onnx`: front end, chunking, pooling in torch);
  - runtime: hear_maeast.onnx_runtime, both graphs with numpy around them (no torch involved in the call).
Reported: median seconds of each, the runtime's speed-up over torch, and the largest relative difference
(max |runtime - torch| / max |torch|). Needs `pip install '.[onnx]'`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import provenance, set_threads, table, time_median, write_json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import hear_maeast  # noqa: E402
from hear_maeast import hear_rules, onnx_runtime  # noqa: E402
from hear_maeast.adapters.onnx import export_onnx, load_onnx  # noqa: E402
from hear_maeast.config import get_preset  # noqa: E402
from hear_maeast.model import MaskedAutoencoder  # noqa: E402

CPU = torch.device("cpu")
COLUMNS = [("model", "model"), ("call", "call"), ("torch_s", "torch s"), ("onnx_encoder_s", "onnx encoder s"),
           ("runtime_s", "runtime s"), ("speedup", "runtime speed-up"), ("rel_diff", "max rel. diff")]


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def calls(model, hybrid, runtime, seconds: float) -> dict:
    """{call: (torch fn, onnx-encoder fn or None, runtime fn)}, each returning an array."""
    cfg = model.cfg
    chunk = torch.randn(1, cfg.n_mels, cfg.input_frames)  # [1, F, T]
    audio = (torch.randn(1, int(seconds * 16000)) * 0.1).clamp(-1, 1)  # [1, N]
    wav = audio.numpy()
    frames = hear_rules.num_frames(cfg.frontend, wav.shape[1])
    return {
        f"front end, {seconds:g} s": (lambda: model.frontend(audio), None,
                                      lambda: onnx_runtime.features(runtime, wav, 0, frames)),
        "encoder, 1 chunk": (lambda: model.encode(chunk, model.layer), lambda: hybrid.encode(chunk, hybrid.layer),
                             lambda: runtime.encoder.run(["tokens"], {"spec": chunk.numpy()})[0]),
        f"scene, {seconds:g} s": (lambda: hear_maeast.get_scene_embeddings(audio, model),
                                  lambda: hear_maeast.get_scene_embeddings(audio, hybrid),
                                  lambda: onnx_runtime.get_scene_embeddings(wav, runtime)),
        f"timestamp, {seconds:g} s": (lambda: hear_maeast.get_timestamp_embeddings(audio, model)[0],
                                      lambda: hear_maeast.get_timestamp_embeddings(audio, hybrid)[0],
                                      lambda: onnx_runtime.get_timestamp_embeddings(wav, runtime)[0]),
    }


def measure(name: str, model, seconds: float, threads: int, repeats: int, folder: Path) -> list[dict]:
    """Rows for one model: front end, encoder, scene and timestamp calls; torch vs onnx encoder vs runtime."""
    path = export_onnx(model, folder / f"{name.replace(' ', '_')}.onnx")
    hybrid = load_onnx(path, layer=model.layer, threads=threads)
    runtime = onnx_runtime.load_model(path, threads=threads)
    rows = []
    with torch.no_grad():
        for call, (torch_fn, hybrid_fn, runtime_fn) in calls(model, hybrid, runtime, seconds).items():
            t_torch, _ = time_median(torch_fn, CPU, 1, repeats)
            t_hybrid = time_median(hybrid_fn, CPU, 1, repeats)[0] if hybrid_fn else None
            t_runtime, _ = time_median(runtime_fn, CPU, 1, repeats)
            rows.append(dict(model=name, call=call, torch_s=t_torch, onnx_encoder_s=t_hybrid, runtime_s=t_runtime,
                             speedup=t_torch / t_runtime, rel_diff=rel(runtime_fn(), torch_fn())))
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="", help="Checkpoint to export (default: the bundled default weights).")
    ap.add_argument("--presets", nargs="*", default=["mae-ast-patch-small"], help="Randomly initialised presets too.")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    threads = set_threads(args.threads)
    models = {"default weights" if not args.checkpoint else Path(args.checkpoint).name:
              hear_maeast.load_model(args.checkpoint)}
    for preset in args.presets:
        torch.manual_seed(0)
        models[preset] = MaskedAutoencoder(get_preset(preset)).eval()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            rows += measure(name, model, args.seconds, threads, args.repeats, Path(tmp))
    print(table(rows, COLUMNS, f"torch-free ONNX runtime vs torch, {threads} threads"))
    out = dict(provenance=provenance(CPU), threads=threads, rows=rows)
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
