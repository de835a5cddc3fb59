"""Pretraining step time and activation memory: our MAE step against the SSAST step as published.

    python benchmarks/pretrain_step.py [--preset P] [--mask-ratios 0.5 0.75 0.9] [--batch-size B] [--threads N]
                                       [--repeats R] [--device cpu|cuda] [--precision fp32|bf16] [--compile]
                                       [--json FILE]

One step = forward, loss, backward, gradient clipping (the recipe's) and an AdamW update (`pretrain.train`'s
optimiser), on precomputed normalised spectrograms: the front end runs once, outside the timed part, and the masks
are drawn before the timed steps (training draws them in the loader's workers), so the time is the device's work
alone. --compile: forward + loss (and the backward derived from them) under `pretrain.step.compiled`, as in
training. Paths, each measured in its own process:
  mae    ours: `MaskedAutoencoder.forward` (encoder on the visible tokens, decoder on all) + `pretrain_loss`
  ssast  SSAST as published (benchmarks/ssast_baseline.py): encoder over all tokens with a mask embedding in place
         of masked ones, two passes with independent masks (InfoNCE, then 10 x MSE), 2-layer MLP heads, no decoder
  full   one all-token pass of the same encoder with the preset's objective (SSAST with a single pass)
Each path at each mask ratio runs in a fresh process. Time: median of --repeats steps after --warmup steps, at a
fixed thread count. Memory: peak over those steps above the process's footprint once the model, its gradient
buffers, the optimiser and its state exist (CPU: peak RSS; CUDA: max_memory_allocated), i.e. activations and
temporaries. Gradients are zeroed in place between steps (zero_grad(set_to_none=False)) so that they stay in the
baseline.
speedup = time(ssast) / time(mae) and memory_reduction = memory(ssast) / memory(mae), as the issue defines them.

Analytic FLOPs per clip (matmuls only; `common.block_flops` gives one block: 24 L D^2 + 4 L^2 D for an MLP of 4D),
with N tokens, M = N - Nv masked, P values per patch, c = 1 if the preset has a CLS token, E/Dd the decoder's
depth/width, training = 3 x forward:
  mae   = 2 N P D                                  patch embedding (applied to every token before masking)
        + depth   x block(c + Nv, D)               encoder on the visible tokens
        + 2 (c + Nv) D Dd                          decoder embedding (when Dd != D)
        + E x block(c + N, Dd)                     decoder on all tokens
        + k x 2 N Dd P   (+ 2 M^2 P if InfoNCE)    k heads (1, or 2 for the joint objective) on all tokens
  ssast = 2 x [2 N P D + depth x block(c + N, D) + 2 M (D^2 + D P)]  + 2 M^2 P   two passes, one head each
  full  = 2 N P D + depth x block(c + N, D) + k x 2 M (D^2 + D P)  (+ 2 M^2 P if InfoNCE)
The FLOP ratio is the speedup a perfectly compute-bound implementation would show.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (TRAIN_FACTOR, PeakMemory, linear_flops, provenance, run_worker, set_threads,  # noqa: E402
                    stack_flops, table, time_median, write_json)

import torch  # noqa: E402

from hear_maeast.config import get_preset  # noqa: E402
from hear_maeast.masking import num_visible  # noqa: E402

PATHS = ("mae", "ssast", "full")


# ---- analytic FLOPs ----------------------------------------------------------------------------
def step_flops(cfg, path: str) -> float:
    """Training FLOPs per clip of one step (see the module docstring)."""
    n, d, p = cfg.num_patches, cfg.dim, cfg.patch_dim
    nv = num_visible(n, cfg.mask_ratio)
    m = n - nv
    c = 1 if cfg.cls_token else 0
    joint = cfg.objective in ("joint", "discriminative")
    nce = 2.0 * m * m * p
    embed = linear_flops(n, p, d)
    head_mlp = linear_flops(m, d, d) + linear_flops(m, d, p)
    if path == "mae":
        heads = (2 if cfg.objective == "joint" else 1) * linear_flops(n, cfg.decoder_dim, p)
        f = (embed + stack_flops(c + nv, d, cfg.depth, cfg.mlp_ratio)
             + (linear_flops(c + nv, d, cfg.decoder_dim) if cfg.decoder_dim != d else 0.0)
             + stack_flops(c + n, cfg.decoder_dim, cfg.decoder_depth, cfg.mlp_ratio) + heads + (nce if joint else 0.0))
    elif path == "ssast":
        f = 2 * (embed + stack_flops(c + n, d, cfg.depth, cfg.mlp_ratio) + head_mlp) + nce
    else:
        k = 2 if cfg.objective == "joint" else 1
        f = embed + stack_flops(c + n, d, cfg.depth, cfg.mlp_ratio) + k * head_mlp + (nce if joint else 0.0)
    return TRAIN_FACTOR * f


# ---- one path in this process --------------------------------------------------------------------
def spectrograms(cfg, frontend, batch: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Normalised spectrograms [B, F, input_frames] from the model's own front end on synthetic audio
    (noise plus a few tones: the step's cost does not depend on the values)."""
    n_samples = (cfg.input_frames + 4) * 160
    t = torch.arange(n_samples) / 16000
    freqs = 100 + 4000 * torch.rand(batch, 3, 1, generator=generator)
    wav = 0.05 * torch.randn(batch, n_samples, generator=generator) + 0.1 * torch.sin(2 * torch.pi * freqs * t).sum(1)
    with torch.no_grad():
        return frontend(wav.to(device))[..., : cfg.input_frames].contiguous()


def build(cfg, path: str, device: torch.device, precision: str = "fp32", compile_: bool = False, backend: str = "inductor"):
    """(module, optimiser, loss_fn(spec, *masks) -> scalar, clip, draw(generator) -> masks) with the preset family's
    recipe; cfg is the preset with the mask ratio under test. Masks are drawn by `draw`, on the device, before the
    timed steps. compile_: loss_fn under `pretrain.step.compiled`, as training compiles its step."""
    from hear_maeast.masking import make_mask
    from hear_maeast.model import MaskedAutoencoder
    from pretrain.recipes import RECIPES
    from pretrain.step import compiled, mae_loss
    from pretrain.train import build_optimizer
    from ssast_baseline import SSASTStyle, full_pass_loss, ssast_loss

    recipe = RECIPES[cfg.family]
    if path == "mae":
        model = MaskedAutoencoder(cfg).to(device)

        def loss_fn(spec, keep, mask):  # [B, F, T] normalised, [B, Nv], [B, N]
            return mae_loss(model, spec, keep, mask, precision)["loss"]

        def draw(batch, g):
            return tuple(m.to(device) for m in make_mask(cfg, batch, g))
    else:
        model = SSASTStyle(cfg).to(device)
        if path == "ssast":  # two independent masks
            def loss_fn(spec, mask_disc, mask_gen):
                return ssast_loss(model, spec, mask_disc, mask_gen, precision)

            def draw(batch, g):
                return tuple(make_mask(cfg, batch, g)[1].to(device) for _ in range(2))
        else:
            def loss_fn(spec, mask):
                return full_pass_loss(model, spec, mask, cfg.objective, precision)

            def draw(batch, g):
                return (make_mask(cfg, batch, g)[1].to(device),)
    optimizer = build_optimizer(model, recipe, recipe["lr"], recipe["weight_decay"])
    if compile_:
        loss_fn = compiled(loss_fn, device, backend=backend)
    return model, optimizer, loss_fn, recipe["clip_grad"], draw


def pre_drawn(draw, batch: int, g: torch.Generator, n: int) -> list[tuple]:
    """n mask sets drawn before timing (the loader draws them in its workers during training), cycled by the steps."""
    return [draw(batch, g) for _ in range(n)]


def materialise_optimizer_state(model, optimizer) -> None:
    """AdamW allocates its moments on the first update: do one with zero gradients at lr 0, so the baseline holds
    them; the gradient buffers stay allocated (steps zero them in place), so the baseline holds those too."""
    lrs = [g["lr"] for g in optimizer.param_groups]
    for g in optimizer.param_groups:
        g["lr"] = 0.0
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=False)
    for g, lr in zip(optimizer.param_groups, lrs):
        g["lr"] = lr


def make_step(model, optimizer, loss_fn, clip, spec, masks):
    """One training step on pre-drawn masks (cycled): forward + loss, backward, clip, AdamW; returns the loss."""
    from pretrain.step import mark_step

    state = {"i": 0}

    def step():
        mark_step()
        loss = loss_fn(spec, *masks[state["i"] % len(masks)])
        state["i"] += 1
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)  # gradient buffers belong to the baseline, with weights and moments
        return loss.detach()

    return step


def setup_path(preset: str, path: str, mask_ratio: float, batch: int, device: str, precision: str,
               compile_: bool = False, n_masks: int = 4, backend: str = "inductor"):
    """Model, optimiser (state allocated), spectrograms and pre-drawn masks of one path: (model, step)."""
    dev = torch.device(device)
    cfg = get_preset(preset).replace(mask_ratio=mask_ratio)
    torch.manual_seed(0)
    model, optimizer, loss_fn, clip, draw = build(cfg, path, dev, precision, compile_, backend)
    g = torch.Generator().manual_seed(0)
    spec = spectrograms(cfg, model.frontend if path == "mae" else model.mae.frontend, batch, g, device)  # [B, F, T]
    model.train()
    materialise_optimizer_state(model, optimizer)
    return model, make_step(model, optimizer, loss_fn, clip, spec, pre_drawn(draw, batch, g, n_masks))


def measure(preset: str, path: str, mask_ratio: float, batch: int, threads: int, warmup: int, repeats: int,
            device: str, precision: str, compile_: bool = False) -> dict:
    """One path at one mask ratio, in this (fresh) process: {time_s, times_s, memory_bytes}."""
    set_threads(threads)
    dev = torch.device(device)
    _, step = setup_path(preset, path, mask_ratio, batch, device, precision, compile_)
    for _ in range(3 if compile_ else 0):
        step()  # compiles, then (CUDA graphs) warms up and records: outside the measured memory and time
    mem = PeakMemory(dev)
    mem.start()
    median, times = time_median(step, dev, warmup, repeats)
    return dict(time_s=median, times_s=times, memory_bytes=mem.peak())


# ---- driver ------------------------------------------------------------------------------------
def run(preset: str, mask_ratios: list[float], batch: int, threads: int, warmup: int, repeats: int, device: str,
        precision: str, paths=PATHS, log=print, compile_: bool = False) -> dict:
    base = get_preset(preset)
    rows, results = [], {}
    for r in mask_ratios:
        cfg = base.replace(mask_ratio=r)
        got = {}
        for path in paths:  # a fresh process for each path and ratio: no memory carried over from another
            args = ["--preset", preset, "--path", path, "--mask-ratios", str(r), "--batch-size", str(batch),
                    "--threads", str(threads), "--warmup", str(warmup), "--repeats", str(repeats), "--device", device,
                    "--precision", precision, *(["--compile"] if compile_ else [])]
            got[path] = dict(run_worker(__file__, args, malloc_env=False), flops_per_clip=step_flops(cfg, path))
        mae = got["mae"]
        entry = {p: dict(time_s=v["time_s"], times_s=v["times_s"], memory_mib=v["memory_bytes"] / 2**20,
                         gflops_per_clip=v["flops_per_clip"] / 1e9,
                         gflop_per_s=v["flops_per_clip"] * batch / v["time_s"] / 1e9) for p, v in got.items()}
        res = {"paths": entry}
        for p in paths[1:]:
            suffix = "" if p == "ssast" else "_vs_full"
            res["speedup" + suffix] = got[p]["time_s"] / mae["time_s"]
            res["memory_reduction" + suffix] = got[p]["memory_bytes"] / max(mae["memory_bytes"], 1)
            res["flop_ratio" + suffix] = got[p]["flops_per_clip"] / mae["flops_per_clip"]
        results[str(r)] = res
        for p in paths:
            rows.append(dict(mask=r, path=p, ms=1000 * got[p]["time_s"], spread=max(got[p]["times_s"]) / min(got[p]["times_s"]),
                             mib=got[p]["memory_bytes"] / 2**20,
                             gf=got[p]["flops_per_clip"] / 1e9, gfs=entry[p]["gflop_per_s"],
                             speed=None if p == "mae" else got[p]["time_s"] / mae["time_s"],
                             flop=None if p == "mae" else got[p]["flops_per_clip"] / mae["flops_per_clip"],
                             mem=None if p == "mae" else got[p]["memory_bytes"] / max(mae["memory_bytes"], 1)))
        log(f"  {preset} mask {r}: speedup {res.get('speedup', float('nan')):.2f}x "
            f"(FLOP ratio {res.get('flop_ratio', float('nan')):.2f}x), memory {res.get('memory_reduction', float('nan')):.2f}x")
    title = (f"Pretraining step, {preset}, batch {batch}, {precision}{', compiled' if compile_ else ''}, {threads} threads on {device} "
             f"(median of {repeats} after {warmup} warm-up)")
    cols = [("mask", "mask"), ("path", "path"), ("ms", "step ms"), ("spread", "max/min"), ("mib", "act. MiB"), ("gf", "GFLOP/clip"),
            ("gfs", "GFLOP/s"), ("speed", "time / mae"), ("flop", "FLOPs / mae"), ("mem", "memory / mae")]
    print(table(rows, cols, title), flush=True)
    return dict(preset=preset, device=device, precision=precision, batch_size=batch, threads=threads, warmup=warmup,
                repeats=repeats, compiled=compile_, masks="pre-drawn", results=results)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="mae-ast-frame-small")
    ap.add_argument("--mask-ratios", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: autocast, as --precision bf16 in pretraining")
    ap.add_argument("--compile", action="store_true", help="the step under torch.compile (pretrain.step.compiled)")
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS, help="mae must come first")
    ap.add_argument("--path", choices=PATHS, help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    threads = set_threads(a.threads)
    if a.worker:
        import json

        print(json.dumps(measure(a.preset, a.path, a.mask_ratios[0], a.batch_size, threads, a.warmup, a.repeats,
                                 a.device, a.precision, a.compile)))
        return
    out = run(a.preset, a.mask_ratios, a.batch_size, threads, a.warmup, a.repeats, a.device, a.precision, tuple(a.paths),
              compile_=a.compile)
    out["provenance"] = provenance(torch.device(a.device))
    write_json(a.json, out)


if __name__ == "__main__":
    main()
