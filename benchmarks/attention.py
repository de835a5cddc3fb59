"""The attention path: `scaled_dot_product_attention` (the model's) against explicit softmax(Q K^T / sqrt(d)) V.

    python benchmarks/attention.py [--shapes L:D:H:B ...] [--threads N] [--repeats R] [--device cpu|cuda] [--json FILE]

Both run the same `hear_maeast.model.Attention` module (same weights, biases made non-zero, same inputs); only the
middle step differs. Reported: the largest absolute difference of the outputs (and of the input gradients for a random upstream
gradient), whether
they agree within the tolerance (fp32: atol 1e-5, rtol 1e-4; bf16: atol 2e-2), and the time of each, forward only
(inference) and forward + backward (training), as explicit / SDPA (> 1: SDPA is faster).
Default shapes are the presets' sequences: L tokens (with CLS), width D, H heads, batch B.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import provenance, set_threads, table, time_median, write_json  # noqa: E402

import torch  # noqa: E402

from hear_maeast.model import Attention  # noqa: E402

# (label, L, D, H, B): MSM-MAE small/base chunk (65 patches + CLS); MAE-AST chunk (512 tokens) at small/base width;
# MSM-MAE's visible tokens at mask 0.75 (16 + CLS)
SHAPES = [("msm-mae-small, all tokens", 66, 384, 6, 32), ("msm-mae-small, visible at 0.75", 17, 384, 6, 32),
          ("mae-ast-*-small, all tokens", 512, 384, 6, 4), ("mae-ast-*-small, visible at 0.75", 128, 384, 6, 4),
          ("mae-ast-*-12l (base), all tokens", 512, 768, 12, 2)]


def explicit(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """Attention.forward with softmax(Q K^T / sqrt(d)) V written out. [B, L, D] -> [B, L, D]."""
    b, n, d = x.shape
    k_bias = attn.k_bias if attn.k_bias is not None else torch.zeros_like(attn.q_bias)
    qkv = torch.nn.functional.linear(x, attn.qkv.weight, torch.cat([attn.q_bias, k_bias, attn.v_bias]))
    q, k, v = qkv.reshape(b, n, 3, attn.heads, d // attn.heads).permute(2, 0, 3, 1, 4)  # 3 x [B, H, L, d]
    scores = (q @ k.transpose(-2, -1)) * (d // attn.heads) ** -0.5  # [B, H, L, L]
    y = scores.softmax(dim=-1) @ v  # [B, H, L, d]
    return attn.proj(y.transpose(1, 2).reshape(b, n, d))


def compare(label, n, d, h, b, device, dtype, repeats) -> dict:
    torch.manual_seed(0)
    attn = Attention(d, h, "qkv").to(device)
    with torch.no_grad():
        for p in (attn.q_bias, attn.k_bias, attn.v_bias):
            p.normal_(std=0.1)
    x = torch.randn(b, n, d, device=device)
    dy = torch.randn(b, n, d, device=device)  # upstream gradient
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    fns = {"sdpa": attn, "explicit": lambda t: explicit(attn, t)}
    outs, grads, t_fwd, t_train = {}, {}, {}, {}
    for name, fn in fns.items():
        xg = x.clone().requires_grad_(True)
        with autocast:
            y = fn(xg)
        y.backward(dy.to(y.dtype))
        outs[name], grads[name] = y.detach().float(), xg.grad.float()

        def fwd():
            with torch.no_grad(), autocast:
                fn(x)

        def train():
            xg = x.clone().requires_grad_(True)
            with autocast:
                y = fn(xg)
            y.backward(dy.to(y.dtype))

        t_fwd[name] = time_median(fwd, device, 2, repeats)[0]
        t_train[name] = time_median(train, device, 1, repeats)[0]
    atol, rtol = (1e-5, 1e-4) if dtype == torch.float32 else (2e-2, 2e-2)
    diff = (outs["sdpa"] - outs["explicit"]).abs().max().item()
    gdiff = (grads["sdpa"] - grads["explicit"]).abs().max().item()
    equal = torch.allclose(outs["sdpa"], outs["explicit"], atol=atol, rtol=rtol) and \
        torch.allclose(grads["sdpa"], grads["explicit"], atol=atol, rtol=rtol)
    return dict(shape=label, L=n, D=d, H=h, B=b, max_abs_diff=diff, max_abs_grad_diff=gdiff, equal=equal,
                sdpa_fwd_ms=1000 * t_fwd["sdpa"], explicit_fwd_ms=1000 * t_fwd["explicit"],
                fwd_ratio=t_fwd["explicit"] / t_fwd["sdpa"], sdpa_train_ms=1000 * t_train["sdpa"],
                explicit_train_ms=1000 * t_train["explicit"], train_ratio=t_train["explicit"] / t_train["sdpa"])


def run(shapes, device: str, precision: str, repeats: int) -> dict:
    dev = torch.device(device)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    rows = [compare(*s, dev, dtype, repeats) for s in shapes]
    cols = [("shape", "sequence"), ("L", "L"), ("D", "D"), ("B", "B"), ("max_abs_diff", "max |diff|"),
            ("max_abs_grad_diff", "max |grad diff|"), ("equal", "equal"), ("sdpa_fwd_ms", "SDPA fwd ms"),
            ("explicit_fwd_ms", "explicit fwd ms"), ("fwd_ratio", "fwd explicit/SDPA"),
            ("sdpa_train_ms", "SDPA fwd+bwd ms"), ("explicit_train_ms", "explicit fwd+bwd ms"),
            ("train_ratio", "fwd+bwd explicit/SDPA")]
    print(table(rows, cols, f"Attention block, SDPA vs explicit, {precision}, {torch.get_num_threads()} threads on {device}"),
          flush=True)
    return dict(device=device, precision=precision, repeats=repeats, results=rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", help="L:D:H:B, e.g. 512:768:12:2 (default: the presets' sequences)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    set_threads(a.threads)
    shapes = SHAPES if not a.shapes else [(s, *map(int, s.split(":"))) for s in a.shapes]
    out = run(shapes, a.device, a.precision, a.repeats)
    out["provenance"] = provenance(torch.device(a.device))
    write_json(a.json, out)
    if not all(r["equal"] for r in out["results"]):
        raise SystemExit("SDPA and the explicit attention disagree beyond the tolerance (see the table)")


if __name__ == "__main__":
    main()
