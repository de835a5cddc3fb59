"""onnxruntime vs torch on this CPU: the HEAR API around the exported per-chunk encoder (hear_maeast.adapters.onnx).

    python benchmarks/onnx_vs_torch.py [--checkpoint CKPT] [--presets P ...] [--seconds 10] [--threads N]
                                       [--repeats R] [--json FILE]

For the default weights (or CKPT) and each preset (randomly initialised: speed does not depend on the weights), the
per-chunk encoder is exported with `export_onnx`, then `get_scene_embeddings` and `get_timestamp_embeddings` on one
clip of --seconds run through torch and through the onnxruntime session (same front end in torch, same chunking and
pooling). Reported: median seconds of each, the speed-up, the per-chunk encoder alone on one full chunk, and the
largest relative difference of the outputs. Needs `pip install '.[onnx]'`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import provenance, set_threads, table, time_median, write_json  # noqa: E402

import torch  # noqa: E402

import hear_maeast  # noqa: E402
from hear_maeast.adapters.onnx import export_onnx, load_onnx  # noqa: E402
from hear_maeast.config import get_preset  # noqa: E402
from hear_maeast.model import MaskedAutoencoder  # noqa: E402

CPU = torch.device("cpu")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def measure(name: str, model, seconds: float, threads: int, repeats: int, folder: Path) -> list[dict]:
    """Rows for one model: the per-chunk encoder, then the scene and timestamp calls, torch vs onnxruntime."""
    path = export_onnx(model, folder / f"{name}.onnx")
    onnx_model = load_onnx(path, layer=model.layer, threads=threads)
    cfg = model.cfg
    chunk = torch.randn(1, cfg.n_mels, cfg.input_frames)  # [1, F, T]
    audio = (torch.randn(1, int(seconds * 16000)) * 0.1).clamp(-1, 1)  # [1, N]
    calls = {"encoder, 1 chunk": lambda m: m.encode(chunk, m.layer),
             f"scene, {seconds:g} s": lambda m: hear_maeast.get_scene_embeddings(audio, m),
             f"timestamp, {seconds:g} s": lambda m: hear_maeast.get_timestamp_embeddings(audio, m)[0]}
    rows = []
    with torch.no_grad():
        for call, fn in calls.items():
            t_torch, _ = time_median(lambda: fn(model), CPU, 1, repeats)
            t_onnx, _ = time_median(lambda: fn(onnx_model), CPU, 1, repeats)
            rows.append(dict(model=name, call=call, torch_s=t_torch, onnx_s=t_onnx, speedup=t_torch / t_onnx,
                             rel_diff=rel(fn(onnx_model), fn(model))))
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
    print(table(rows, [("model", "model"), ("call", "call"), ("torch_s", "torch s"), ("onnx_s", "onnxruntime s"),
                       ("speedup", "speed-up"), ("rel_diff", "max rel. diff")],
                f"onnxruntime vs torch, {threads} threads"))
    out = dict(provenance=provenance(CPU), threads=threads, rows=rows)
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
