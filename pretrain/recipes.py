"""The papers' pretraining recipes (docs/design.md, "Pretraining"), written once: `hear-maeast pretrain` trains with
them (pretrain/train.py) and its help text states them (pretrain/cli.py, `defaults`). Torch-free on import.
MAE-AST's fairseq Adam decays weights decoupled, i.e. AdamW.

cuda_batch: clips per process on a GPU when --batch-size is not given (CPU: CPU_BATCH, small enough for a laptop).
MAE-AST (fairseq, config/pretrain/mae_ast.yaml): max_tokens 1.4 M samples on each of 32 GPUs = 2,800 s of audio per
update, ~273 crops of 10.24 s: 256. MSM-MAE: 512. The official code (nttcslab/msm-mae, patch_main.diff) trains with
--batch_size 64 per GPU x accum_iter x GPUs and scales lr = 1.5e-4 x batch / 128, as `lr_per_batch` here does; its
paper's batch is not checked here. 512 was chosen because on the H200 of 2026-12-04 the MAE step ran at 11.6 % MFU
at batch 512 against 4.4 % at 128. Both fit an 80 GB GPU in bf16 (measured there: mae-ast-patch-12l at batch 256 and
msm-mae-base at 512, benchmarks/results/gpu-H200-2026-12-04/).
"""

from __future__ import annotations

RECIPES = {
    "msm-mae": dict(betas=(0.9, 0.95), eps=1e-8, weight_decay=0.05, lr=1.5e-4, lr_per_batch=128,
                    schedule="cosine", warmup_frac=0.1, clip_grad=0.0, no_decay_on_1d=True, cuda_batch=512),
    "mae-ast": dict(betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01, lr=1e-4, lr_per_batch=None,
                    schedule="poly", warmup_frac=0.08, clip_grad=10.0, no_decay_on_1d=False, cuda_batch=256),
}
CPU_BATCH = 32
COMPILE_MIN_STEPS = 10_000  # CUDA runs at least this long compile their step by default (pretrain/step.py says why)


def _number(x: float) -> str:
    """1.5e-4, 1e-4, 0.05, 10: as a person writes them."""
    if x and abs(x) < 1e-3:
        mantissa, exponent = f"{x:e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{x:g}"


def _lr(r: dict) -> str:
    return _number(r["lr"]) + (f" x global batch / {r['lr_per_batch']}" if r["lr_per_batch"] else "")


def _weight_decay(r: dict) -> str:
    return _number(r["weight_decay"]) + (", not on biases/norms/tokens" if r["no_decay_on_1d"] else "")


def _clip(r: dict) -> str:
    return _number(r["clip_grad"]) if r["clip_grad"] else "off"


SHOW = {"cuda_batch": lambda r: str(r["cuda_batch"]), "lr": _lr, "weight_decay": _weight_decay, "clip_grad": _clip, "schedule": lambda r: r["schedule"]}


def defaults(key: str) -> str:
    """Each family's default for a recipe entry, for help texts: 'MSM-MAE 0.05, ...; MAE-AST 0.01'."""
    if key == "warmup_frac":
        return " / ".join(f"{r['warmup_frac']:.0%} ({family.upper()})" for family, r in RECIPES.items()) + " of the total"
    return "; ".join(f"{family.upper()} {SHOW[key](r)}" for family, r in RECIPES.items())
