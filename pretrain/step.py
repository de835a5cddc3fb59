"""The pretraining step's device work in one function, and how it is compiled: the one home of both, used by the
training loop (`pretrain.train.train_step`) and by the benchmarks (benchmarks/pretrain_step.py, step_profile.py, gpu.py).

`mae_loss` is what a step runs between reading a batch and `backward()`: normalise the crop (padding -> the mean),
the model's forward (encoder on the visible tokens, decoder on all) under autocast, and the objective's loss, with
the number of masked tokens known so nothing waits for the device. `compiled` wraps such a function in
torch.compile with the settings below, so the forward, the loss and the backward that AOTAutograd derives from them
run as one captured graph each (no graph break: benchmarks/step_profile.py counts them).

Compile by default: on CUDA only, for runs of at least COMPILE_MIN_STEPS optimiser updates. Compiling the step took
45 s on one H200 (msm-mae-base, 2026-12-04, commit 384d0b8: benchmarks/README.md, "GPU: one NVIDIA H200"); a run
of 10,000 updates repays that when compilation saves at least 4.5 ms a step: 13 % of msm-mae-base's eager MAE step
at batch 128 (34.5 ms there) and 7 % of mae-ast-patch-12l's (67.2 ms). Fusing the elementwise work of a Transformer step saves more than that in
published PyTorch measurements, but the saving on this model is not yet measured (`python benchmarks/gpu.py
--check` measures it). Shorter runs (tests, smoke runs) stay eager; `--compile` / `--no-compile` decide either way.
On CPU, inductor compiles C++ for minutes on a small machine, so it is never the default there.

CUDA graphs (mode "reduce-overhead") replay the captured forward and backward with one launch each: used on CUDA in
a single process with one micro-batch per update, where every step has the same shapes (fixed crop, fixed batch, the
same number of visible tokens per clip); not under DDP, whose gradient hooks run outside the graph, nor with
--accum-steps > 1, whose accumulated gradients would sit in memory the next replay reuses.
"""

from __future__ import annotations

import torch

from pretrain.losses import pretrain_loss
from pretrain.recipes import COMPILE_MIN_STEPS


def autocast_for(device: torch.device, precision: str):
    """The autocast context of a precision ("fp32": none; "bf16", "fp16")."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def mae_loss(model, spec: torch.Tensor, keep: torch.Tensor, mask: torch.Tensor, precision: str = "fp32",
             frontend=None) -> dict[str, torch.Tensor]:
    """One micro-batch's loss parts {"loss", ("mse"), ("nce")}, all on the device.

    model: a MaskedAutoencoder (or its DDP wrapper); spec [B, F, T] raw features with NaN where padded (normalised
    here by `frontend`, the model's front end) or already normalised (frontend None); keep [B, Nv], mask [B, N]."""
    cfg = (model.module if hasattr(model, "module") else model).cfg
    if frontend is not None:
        spec = torch.nan_to_num(frontend.normalize(spec.float()), nan=0.0)  # padding = the normalised mean
    with autocast_for(spec.device, precision):
        out = model(spec, keep)  # {"target", "recon", ("logits_proj")}: [B, N, P]
    return pretrain_loss(out, mask, cfg.objective, cfg.norm_pix_loss, n_masked=mask.shape[1] - keep.shape[1])


def compile_mode(device: torch.device, graphs: bool = True) -> str | None:
    """torch.compile's mode: CUDA graphs on a CUDA device when `graphs` (one process, one micro-batch per update),
    inductor's default elsewhere."""
    return "reduce-overhead" if device.type == "cuda" and graphs else None


def compiled(fn, device: torch.device, graphs: bool = True, backend: str = "inductor"):
    """fn under torch.compile: static shapes (dynamic=False: a changed shape recompiles rather than generalises;
    the pretraining shapes never change), CUDA graphs where `compile_mode` allows them. graphs False: no CUDA graphs
    (DDP's hooks run outside a graph; accumulated gradients would live in memory the next replay reuses)."""
    mode = compile_mode(device, graphs) if backend == "inductor" else None
    return torch.compile(fn, dynamic=False, backend=backend, mode=mode)


def compile_by_default(device: torch.device, steps: int) -> bool:
    """Whether a run compiles when neither --compile nor --no-compile is given (see the module docstring)."""
    return device.type == "cuda" and steps >= COMPILE_MIN_STEPS


def mark_step() -> None:
    """Before each compiled step: with CUDA graphs, tells torch that the previous step's outputs are consumed, so
    its buffers may be reused (the loop copies the loss parts out right after each step)."""
    if hasattr(torch, "compiler") and hasattr(torch.compiler, "cudagraph_mark_step_begin"):
        torch.compiler.cudagraph_mark_step_begin()
