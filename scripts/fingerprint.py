"""Embedding fingerprint: every HEAR output of a fixed set of models on fixed clips, saved or compared bit for bit.

A refactor must not change what the package computes. Take a fingerprint before, another after, compare:

    python scripts/fingerprint.py save before.npz
    ... change the code ...
    python scripts/fingerprint.py compare before.npz     # exit 1 and the differing keys if any bit changed

Models: the bundled default weights, randomly initialised micro checkpoints of each family (seed 0), and
official-format files built by the test suite's builders (tests/test_official.py). Clips: seeded noise bursts of
lengths chosen to hit every tail case (whole chunks, partial tokens, shorter than a token).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SECONDS = (0.05, 0.5, 1.0, 2.05, 3.3, 7.9, 10.2, 12.0)


def clips() -> dict[float, torch.Tensor]:
    rng = np.random.default_rng(0)
    out = {}
    for s in SECONDS:
        n = int(s * 16000)
        env = np.abs(np.sin(np.linspace(0, 7 * s, n)))  # loudness that moves, so columns differ
        out[s] = torch.from_numpy((0.1 * env * rng.standard_normal(n)).astype(np.float32))[None]
    return out


def models(tmp: Path) -> dict[str, tuple[str, dict]]:
    """name -> (path, model options) for hear_maeast.load_model."""
    sys.path.insert(0, str(REPO / "tests"))
    import test_official as official  # the test suite's builders of official-format files

    from hear_maeast.checkpoint import save_checkpoint
    from hear_maeast.config import get_preset
    from hear_maeast.model import MaskedAutoencoder

    out = {"default": ("", {})}
    for name in ("msm-mae-micro", "mae-ast-patch-micro", "mae-ast-frame-micro"):
        torch.manual_seed(0)
        out[name] = (str(save_checkpoint(MaskedAutoencoder(get_preset(name)), tmp / f"{name}.safetensors")), {})
    out["official-msm-mae"] = (str(official.save_msm_mae(tmp / "80x208p16x16_fp", official.msm_mae_state())), {})
    for kind in ("patch", "frame"):
        path = tmp / f"random_{kind}_75_2LayerEncoder.pt"
        torch.save(official.mae_ast_checkpoint(kind), path)
        out[f"official-mae-ast-{kind}"] = (str(path), {"trust_pickle": True})
    return out


def fingerprint() -> dict[str, np.ndarray]:
    from hear_maeast import get_scene_embeddings, get_timestamp_embeddings, load_model

    torch.set_num_threads(1)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (path, options) in models(Path(tmp)).items():
            for layer in (-1, 1):
                model = load_model(path, layer=layer, **options)
                for s, audio in clips().items():
                    key = f"{name}/layer{layer}/{s}s"
                    emb, ts = get_timestamp_embeddings(audio, model)
                    result[f"{key}/timestamp"] = emb.numpy()
                    result[f"{key}/times"] = ts.numpy()
                    result[f"{key}/scene"] = get_scene_embeddings(audio, model).numpy()
    return result


def compare(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> list[str]:
    problems = [f"{k}: missing" for k in sorted(set(before) - set(after))]
    problems += [f"{k}: new" for k in sorted(set(after) - set(before))]
    for k in sorted(set(before) & set(after)):
        a, b = before[k], after[k]
        if a.shape != b.shape:
            problems.append(f"{k}: shape {a.shape} -> {b.shape}")
        elif not np.array_equal(a, b):
            rel = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))
            problems.append(f"{k}: differs (max relative {rel:.2e})")
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["save", "compare"])
    p.add_argument("file", type=Path)
    p.add_argument("--only", default="", help="compare only keys starting with this prefix")
    args = p.parse_args()
    now = fingerprint()
    if args.action == "save":
        np.savez_compressed(args.file, **now)
        print(f"{len(now)} arrays -> {args.file}")
        return 0
    before = dict(np.load(args.file))
    pick = lambda d: {k: v for k, v in d.items() if k.startswith(args.only)}  # noqa: E731
    problems = compare(pick(before), pick(now))
    print("\n".join(problems) if problems else f"bit-identical: {len(pick(now))} arrays")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
