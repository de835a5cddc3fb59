"""The pretraining loop (nanoGPT-style): one function, the same on one CPU and under `torchrun` (DDP).

RUN_DIR/model.safetensors  the latest weights in the HEAR module's format (what `hear_maeast.load_model` reads)
RUN_DIR/train_state.pt     model + optimiser + scaler + RNG + step, for `--resume` (written first, atomically)
RUN_DIR/log.csv            step, epoch, loss, lr, samples_per_s (+ the loss parts mse, nce)
The learning rate is a pure function of (step, total), so raising --steps/--epochs on resume re-plans the schedule.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from hear_maeast import __version__
from hear_maeast.checkpoint import atomic_write, save_checkpoint
from hear_maeast.config import ModelConfig, get_preset
from hear_maeast.masking import chunk_mask, random_mask
from hear_maeast.model import MaskedAutoencoder
from hear_maeast.provenance import git_commit
from pretrain.data import batch_indices, crop_batch, decode_all, list_audio
from pretrain.losses import pretrain_loss

MODEL_FILE, STATE_FILE, LOG_FILE = "model.safetensors", "train_state.pt", "log.csv"
# The papers' recipes (docs/design.md, "Pretraining"). MAE-AST's fairseq Adam decays weights decoupled, i.e. AdamW.
RECIPES = {
    "msm-mae": dict(betas=(0.9, 0.95), eps=1e-8, weight_decay=0.05, lr=1.5e-4, lr_per_batch=128,
                    schedule="cosine", warmup_frac=0.1, clip_grad=0.0, no_decay_on_1d=True),
    "mae-ast": dict(betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01, lr=1e-4, lr_per_batch=None,
                    schedule="poly", warmup_frac=0.08, clip_grad=10.0, no_decay_on_1d=False),
}


@dataclass
class TrainConfig:
    preset: str
    data: str
    out: str
    steps: int | None = None  # total optimiser updates (or --epochs)
    epochs: float | None = None
    batch_size: int = 32  # per process, as in MAE
    accum_steps: int = 1
    seed: int = 0
    device: str | None = None
    precision: str = "fp32"  # fp32 | bf16 | fp16
    num_workers: int = 0  # decoding processes
    cache: str | None = None
    lr: float | None = None  # peak lr; default from the recipe (MSM-MAE scales 1.5e-4 x global batch / 128)
    weight_decay: float | None = None
    clip_grad: float | None = None
    schedule: str | None = None  # cosine | poly | constant
    warmup_steps: int | None = None
    warmup_epochs: float | None = None
    mask_ratio: float | None = None  # model overrides; default: the preset's
    mask_kind: str | None = None
    objective: str | None = None
    norm_pix_loss: bool | None = None
    save_every: int = 1000
    resume: bool = False
    dump_rank_params: bool = False  # tests: each rank writes its parameters to rank<r>.safetensors
    command: str = ""  # the command line, for provenance (default: sys.argv)


def lr_at(step: int, total: int, warmup: int, peak: float, schedule: str) -> float:
    """Linear warm-up over `warmup` updates, then half-cycle cosine / linear ("poly", power 1) decay to 0 / constant."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return peak * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "poly":
        return peak * max(0.0, 1.0 - progress)
    return peak


def build_optimizer(model: torch.nn.Module, recipe: dict, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; MSM-MAE (as MAE) exempts biases, norms and tokens (every tensor of < 2 dims) from weight decay."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if recipe["no_decay_on_1d"]:
        decay = [p for n, p in params if p.ndim >= 2 and not n.endswith("_token")]
        rest = [p for n, p in params if not (p.ndim >= 2 and not n.endswith("_token"))]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    else:
        groups = [{"params": [p for _, p in params], "weight_decay": weight_decay}]
    # fused: one kernel for all parameters instead of a Python loop (16-20 % of a CPU step, benchmarks/)
    return torch.optim.AdamW(groups, lr=lr, betas=recipe["betas"], eps=recipe["eps"], fused=True)


def make_mask(cfg, batch: int, g: torch.Generator):
    """keep [B, Nv], mask [B, N] for the model's mask kind and ratio."""
    if cfg.mask_kind == "chunk":
        return chunk_mask(batch, cfg.grid, cfg.mask_ratio, g, order=cfg.token_order)
    return random_mask(batch, cfg.num_patches, cfg.mask_ratio, g)


def setup_distributed(device: str | None) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Under torchrun: gloo on CPU, nccl on CUDA, one GPU per local rank."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as nanoGPT: fp32 runs use TF32
    if world == 1:
        return 0, 1, torch.device(device)
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local))
        return dist.get_rank(), world, torch.device("cuda", local)
    dist.init_process_group("gloo")
    return dist.get_rank(), world, torch.device(device)


def all_sum(x: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        x = x.clone()
        dist.all_reduce(x)
    return x


def write_csv(path, rows) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def train(tc: TrainConfig) -> Path:
    rank, world, device = setup_distributed(tc.device)
    run = Path(tc.out)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if rank == 0 else (lambda *a: None)
    if tc.resume and not (run / STATE_FILE).exists():
        raise SystemExit(f"--resume: no training state {run / STATE_FILE}; start without --resume (or check --out)")
    if not tc.resume and (run / STATE_FILE).exists():
        raise SystemExit(f"--out {run} already holds a run; add --resume to continue it, or choose a new --out")
    if tc.precision not in ("fp32", "bf16", "fp16"):
        raise SystemExit(f"--precision {tc.precision!r}: expected fp32, bf16 or fp16")
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        for stale in run.glob(".*.tmp"):  # left by a process killed mid-write; never loadable under the real name
            stale.unlink()

    # model: the preset with any objective / masking overrides
    overrides = {k: getattr(tc, k) for k in ("mask_ratio", "mask_kind", "objective", "norm_pix_loss") if getattr(tc, k) is not None}
    cfg = get_preset(tc.preset).replace(**overrides)
    torch.manual_seed(tc.seed)
    model = MaskedAutoencoder(cfg)
    recipe = RECIPES[cfg.family]

    # data: each rank decodes its share of the files once
    files = list_audio(tc.data)
    kind = f"{cfg.frontend}{cfg.n_mels}"
    corpus = decode_all(files[rank::world], model.frontend.features, tc.cache, kind, tc.num_workers,
                        progress=(lambda it, **kw: tqdm(it, desc="decoding", disable=rank != 0, **kw)))
    for path, why in corpus.skipped:
        print(f"skipped unreadable file {path}: {why}", file=sys.stderr, flush=True)
    n_ok, n_bad = all_sum(torch.tensor([len(corpus.files), len(corpus.skipped)]), world).tolist()
    say(f"data: {n_ok} clips decoded, {n_bad} unreadable file(s) skipped, from {tc.data}")
    if not corpus.files:
        raise SystemExit(f"rank {rank}: none of its {len(files[rank::world])} files could be decoded; see the messages above")

    global_batch = tc.batch_size * tc.accum_steps * world
    steps_per_epoch = max(1, n_ok // global_batch)
    total = tc.steps if tc.steps is not None else round(tc.epochs * steps_per_epoch)
    warmup = (tc.warmup_steps if tc.warmup_steps is not None else
              round(tc.warmup_epochs * steps_per_epoch) if tc.warmup_epochs is not None else round(recipe["warmup_frac"] * total))
    peak = tc.lr if tc.lr is not None else recipe["lr"] * (global_batch / recipe["lr_per_batch"] if recipe["lr_per_batch"] else 1)
    schedule = tc.schedule or recipe["schedule"]
    clip = tc.clip_grad if tc.clip_grad is not None else recipe["clip_grad"]
    wd = tc.weight_decay if tc.weight_decay is not None else recipe["weight_decay"]

    model.to(device)
    optimizer = build_optimizer(model, recipe, peak, wd)
    scaler = torch.amp.GradScaler(device.type, enabled=tc.precision == "fp16")
    step = 0
    if tc.resume:
        state = torch.load(run / STATE_FILE, map_location=device, weights_only=True)
        if ModelConfig.from_json(state["config"]) != cfg:  # run folders of 0.1.0 use older key names
            raise SystemExit(f"--resume: {run} was trained with a different model configuration ({json.loads(state['config'])['name']}); "
                             "resume with the same --preset and masking/objective options")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        step = state["step"]
        torch.set_rng_state(state["rng"]["cpu"].cpu())
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), device)
        if step > total:
            raise SystemExit(f"--resume: {run} is already at step {step}, past the requested total of {total}")
        say(f"resumed {run} at step {step} of {total}")
    else:  # the data's normalisation statistics, once, from a sample of clips (all ranks' shares)
        count, s1, s2 = all_sum(corpus.stats(), world).tolist()
        mean = s1 / count
        model.set_norm_stats(mean, math.sqrt(max(s2 / count - mean * mean, 1e-12)))
    say(f"{cfg.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, norm_stats "
        f"{[round(v, 4) for v in model.frontend.norm_stats.tolist()]}, {total} steps of {global_batch} clips "
        f"({steps_per_epoch} per epoch), peak lr {peak:.3g} ({schedule}, warm-up {warmup}), {tc.precision} on {device} x {world}")

    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=cfg.objective == "discriminative") if world > 1 else model
    autocast = torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.precision), enabled=tc.precision != "fp32")
    provenance = dict(package="hear_maeast", version=__version__, git_commit=git_commit(), command=tc.command or shlex.join(sys.argv),
                      data=str(tc.data), clips=n_ok, skipped=n_bad, preset=tc.preset, seed=tc.seed, world_size=world,
                      batch_size=tc.batch_size, accum_steps=tc.accum_steps, precision=tc.precision, total_steps=total)

    def save(step: int) -> None:
        if rank != 0:
            return
        state = dict(model=model.state_dict(), optimizer=optimizer.state_dict(), scaler=scaler.state_dict(), step=step,
                     config=cfg.to_json(), train_config=json.dumps(asdict(tc)),
                     rng=dict(cpu=torch.get_rng_state(), cuda=torch.cuda.get_rng_state(device) if device.type == "cuda" else None))
        atomic_write(run / STATE_FILE, lambda tmp: torch.save(state, tmp))  # state first: the model never runs ahead of it
        save_checkpoint(model, run / MODEL_FILE, dict(provenance, steps=step, epochs=round(step / steps_per_epoch, 3)))

    if rank == 0 and tc.resume and (run / LOG_FILE).exists():  # drop rows logged after the checkpoint we resume from
        rows = list(csv.reader(open(run / LOG_FILE, newline="")))
        rows = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= step]
        atomic_write(run / LOG_FILE, lambda tmp: write_csv(tmp, rows))
    log_file = open(run / LOG_FILE, "a", newline="") if rank == 0 else None
    log = csv.writer(log_file) if log_file else None
    if log and log_file.tell() == 0:
        log.writerow(["step", "epoch", "loss", "lr", "samples_per_s", "mse", "nce"])
    bar = tqdm(total=total, initial=step, disable=rank != 0, desc=cfg.name, dynamic_ncols=True)
    frames, n_local = cfg.input_frames, len(corpus.files)
    model.train()
    sps, t_last = 0.0, time.perf_counter()
    while step < total:
        lr = lr_at(step, total, warmup, peak, schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
        for micro in range(tc.accum_steps):
            k = step * tc.accum_steps + micro  # micro-batch number: crops and masks depend on (seed, rank, k) only
            g = torch.Generator().manual_seed(hash((tc.seed, rank, k)) & 0x7FFF_FFFF_FFFF)
            idx = batch_indices(n_local, tc.batch_size, k, steps_per_epoch * tc.accum_steps, tc.seed, rank)
            spec = crop_batch(corpus, idx, frames, g).to(device)  # [B, F, T], NaN where padded
            spec = torch.nan_to_num(model.frontend.normalize(spec), nan=0.0)  # padding = the normalised mean
            keep, mask = make_mask(cfg, tc.batch_size, g)  # [B, Nv], [B, N]
            sync = nullcontext() if world == 1 or micro == tc.accum_steps - 1 else ddp.no_sync()
            with sync:
                with autocast:
                    out = ddp(spec, keep.to(device))  # {"target", "recon", ("logits_proj")}: [B, N, P]
                parts = pretrain_loss(out, mask.to(device), cfg.objective, cfg.norm_pix_loss)  # logged: the last micro-batch's
                scaler.scale(parts["loss"] / tc.accum_steps).backward()
        if clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        now = time.perf_counter()
        sps, t_last = global_batch / (now - t_last), now
        if rank == 0:
            loss = parts["loss"].item()
            if not math.isfinite(loss):
                raise SystemExit(f"loss is {loss} at step {step}; lower --lr or use --precision fp32/bf16")
            log.writerow([step, f"{step / steps_per_epoch:.4f}", f"{loss:.6f}", f"{lr:.6g}", f"{sps:.1f}"]
                         + [f"{parts[p].item():.6f}" if p in parts else "" for p in ("mse", "nce")])
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{sps:.0f}")
            bar.update(1)
        if step % tc.save_every == 0 and step < total:
            log_file and log_file.flush()
            save(step)
    bar.close()
    save(step)
    if log_file:
        log_file.close()
    if tc.dump_rank_params:
        save_checkpoint(model, run / f"rank{rank}.safetensors")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    say(f"wrote {run / MODEL_FILE} (step {step})")
    return run / MODEL_FILE


__all__ = ["TrainConfig", "train", "lr_at", "build_optimizer", "RECIPES"]
