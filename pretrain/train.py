"""The pretraining loop, the same on one CPU, one GPU and under `torchrun` (DDP), in three parts as MAE's
main_pretrain / engine_pretrain: `setup` (folder, data, model, optimiser, resume; the `Run` of pretrain/run.py),
`train_step` (one optimiser update) and `Bookkeeping` (pretrain/bookkeeping.py: log, agreed checks, checkpoints).

Around it: the options (pretrain/config.py `TrainConfig`), the processes (pretrain/world.py), the run folder's files
(pretrain/runfolder.py) and what a checkpoint holds (pretrain/state.py: written, read back by --resume).
The learning rate is a pure function of (step, total), so raising --steps/--epochs on resume re-plans the schedule.
No step waits for the device: losses stay on it and are read back every --log-every steps and before every save,
where all ranks agree on whether the loss is finite (and, before a save, the weights) and whether SIGTERM arrived.
"""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from hear_maeast import __version__
from hear_maeast.checkpoint import save_checkpoint
from hear_maeast.config import ModelConfig, get_preset
from hear_maeast.errors import BadInput, WorkFailed
from hear_maeast.files import FolderLock
from hear_maeast.masking import num_masked
from hear_maeast.model import MaskedAutoencoder
from hear_maeast.optim import decay_groups, lr_at
from hear_maeast.provenance import git_commit
from pretrain.bookkeeping import Bookkeeping
from pretrain.config import TrainConfig, check_options
from pretrain.data import FeatureStore, Source, open_source
from pretrain.loader import MicroBatches, Plan, clip_sums, loader, mean_std, stats_sample
from pretrain.recipes import CPU_BATCH, RECIPES
from pretrain.run import Run, Schedule
from pretrain.runfolder import MODEL_FILE, STATE_FILE, clear_temporaries
from pretrain.state import resume_from
from pretrain.step import compile_by_default, compiled, mae_loss, mark_step
from pretrain.world import agree, all_sum, default_workers, setup_distributed, teardown


class Stopped(WorkFailed):
    """SIGTERM arrived (a scheduler's notice): the run saved a checkpoint and stopped."""

    exit_code = 128 + signal.SIGTERM


def build_optimizer(model: torch.nn.Module, recipe: dict, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; MSM-MAE (as MAE) exempts biases, norms and tokens from weight decay (hear_maeast.optim)."""
    groups = decay_groups(model, weight_decay, exempt=recipe["no_decay_on_1d"])
    # fused: one kernel for all parameters instead of a Python loop (16-20 % of a CPU step, benchmarks/)
    return torch.optim.AdamW(groups, lr=lr, betas=recipe["betas"], eps=recipe["eps"], fused=True)


# ---- checks and plan ----------------------------------------------------------------------------------------------
def model_config(tc: TrainConfig) -> ModelConfig:
    """The preset with the objective / masking overrides, refused if it cannot train."""
    overrides = {k: getattr(tc, k) for k in ("mask_ratio", "mask_kind", "objective", "norm_pix_loss") if getattr(tc, k) is not None}
    try:
        cfg = get_preset(tc.preset).replace(**overrides)
        cfg.validate()
    except ValueError as e:
        raise BadInput(f"--preset {tc.preset}: {e}") from None
    if num_masked(cfg) < 1:
        raise BadInput(f"--mask-ratio {cfg.mask_ratio}: masks none of the {cfg.num_patches} tokens, so there is nothing "
                       "to reconstruct; use a ratio in (0, 1) that masks at least one, e.g. 0.75")
    return cfg


def default_batch_size(cfg: ModelConfig, device: torch.device) -> int:
    """Clips per process when --batch-size is not given: the recipe's CUDA batch on a GPU (pretrain/recipes.py)."""
    return RECIPES[cfg.family]["cuda_batch"] if device.type == "cuda" else CPU_BATCH


# ---- setup ---------------------------------------------------------------------------------------------------------
def claim_folder(tc: TrainConfig, rank: int, world: int, device: torch.device) -> FolderLock:
    """Lock --out (rank 0), then check it against --resume; every rank gets the same verdict."""
    run = Path(tc.out)
    lock, problem = FolderLock(run), ""
    if rank == 0:
        if run.exists() and not run.is_dir():
            problem = f"--out {run}: exists and is not a folder"
        else:
            try:
                lock.acquire()
            except BadInput as e:
                problem = str(e)
    if not problem and tc.resume and not (run / STATE_FILE).exists():
        problem = f"--resume: no training state {run / STATE_FILE}; start without --resume (or check --out)"
    if not problem and not tc.resume and (run / STATE_FILE).exists():
        problem = f"--out {run} already holds a run; add --resume to continue it, or choose a new --out"
    if agree([float(bool(problem))], world, device)[0]:
        lock.release()
        raise BadInput(problem or "another rank refused --out (see its message)")
    if rank == 0:
        clear_temporaries(run)
    return lock


def open_data(tc: TrainConfig, cfg: ModelConfig, world: int) -> Source:
    """The --data listing (no clip opened but the first readable one, to refuse features that do not fit)."""
    source = open_source(tc.data, cfg, tc.data_root)
    source.check_first()
    if len(source) < world:
        raise BadInput(f"--data {tc.data}: {len(source)} clip(s) for {world} processes; every process needs at least one")
    return source


def build_model(tc: TrainConfig, cfg: ModelConfig, sched: Schedule, device: torch.device):
    torch.manual_seed(tc.seed)
    model = MaskedAutoencoder(cfg).to(device)
    optimizer = build_optimizer(model, RECIPES[cfg.family], sched.peak, sched.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=tc.precision == "fp16")
    return model, optimizer, scaler


def set_norm_stats(run: Run) -> None:
    """The data's normalisation statistics: --norm-stats, else the store's, else from a sample of clips (all ranks)."""
    tc, source = run.tc, run.source
    if tc.norm_stats is not None:
        mean, std = tc.norm_stats
    elif isinstance(source, FeatureStore) and source.norm_stats:
        mean, std = source.norm_stats
    else:
        sample = stats_sample(len(source))[run.rank :: run.world]
        bar = (lambda it, **kw: tqdm(it, desc="statistics", disable=run.rank != 0, **kw))
        sums, bad = clip_sums(source, sample, workers_of(tc), progress=bar)
        run.note_bad(bad)
        mean, std = mean_std(all_sum(torch.from_numpy(sums), run.world))
    try:
        run.model.set_norm_stats(mean, std)
    except ValueError as e:  # e.g. a hand-edited manifest
        raise BadInput(f"--data {tc.data}: unusable normalisation statistics ({e}); pass --norm-stats MEAN STD") from None


def workers_of(tc: TrainConfig) -> int:
    return tc.num_workers if tc.num_workers is not None else default_workers()


def start_batches(run: Run) -> None:
    """The DataLoader from the current step to the end: micro-batch k = step * accum_steps + micro."""
    tc = run.tc
    plan = Plan(len(run.source), tc.batch_size, tc.seed, run.rank, run.world, run.sched.steps_per_epoch * tc.accum_steps)
    todo = range(run.step * tc.accum_steps, run.sched.total * tc.accum_steps)
    if len(todo):
        run.batches = iter(loader(MicroBatches(run.source, run.cfg, plan), todo, workers_of(tc), run.device.type == "cuda",
                                  tc.prefetch, run.lock.fd))


def setup(tc: TrainConfig) -> Run:
    """Options, processes, data listing, folder lock, model, optimiser, resume or statistics, loader."""
    check_options(tc)
    cfg = model_config(tc)
    rank, world, device = setup_distributed(tc.device)
    lock = None
    try:
        if tc.batch_size is None:
            tc = replace(tc, batch_size=default_batch_size(cfg, device))
        source = open_data(tc, cfg, world)
        lock = claim_folder(tc, rank, world, device)
        sched = Schedule.plan(tc, RECIPES[cfg.family], len(source), world)
        model, optimizer, scaler = build_model(tc, cfg, sched, device)
        run = Run(tc, cfg, rank, world, device, Path(tc.out), lock, source, sched, model, model, optimizer, scaler)
        resume_from(run) if tc.resume else set_norm_stats(run)
        if world > 1:
            run.ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=cfg.objective == "discriminative")
        compile_step(run)
        run.provenance = provenance(run)
        describe(run)
        start_batches(run)
        return run
    except BaseException:
        lock and lock.release()
        teardown(world, ok=False)
        raise


def compile_step(run: Run) -> None:
    """The step's forward + loss under torch.compile (pretrain/step.py) when --compile, or by default on CUDA for runs
    of at least COMPILE_MIN_STEPS updates; the model itself stays as it is (state_dict keys unchanged)."""
    on = run.tc.compile if run.tc.compile is not None else compile_by_default(run.device, run.sched.total)
    run.tc = replace(run.tc, compile=on)
    if on:
        run.loss_fn = compiled(mae_loss, run.device, graphs=run.world == 1 and run.tc.accum_steps == 1)


def provenance(run: Run) -> dict:
    tc = run.tc
    return dict(package="hear_maeast", version=__version__, git_commit=git_commit(), command=tc.command or shlex.join(sys.argv),
                data=str(tc.data), clips=len(run.source), preset=tc.preset, seed=tc.seed, world_size=run.world,
                batch_size=tc.batch_size, accum_steps=tc.accum_steps, precision=tc.precision, total_steps=run.sched.total)


def describe(run: Run) -> None:
    s, m = run.sched, run.model
    run.say(f"data: {len(run.source)} clips from {run.tc.data} ({type(run.source).__name__}), "
            f"{workers_of(run.tc)} loader worker(s) per process")
    run.say(f"{run.cfg.name}: {sum(p.numel() for p in m.parameters()) / 1e6:.2f} M parameters, norm_stats "
            f"{[round(v, 4) for v in m.frontend.norm_stats.tolist()]}, {s.total} steps of {s.global_batch} clips "
            f"({s.steps_per_epoch} per epoch), peak lr {s.peak:.3g} ({s.kind}, warm-up {s.warmup}), "
            f"{run.tc.precision}{' compiled' if run.tc.compile else ''} on {run.device} x {run.world}")


# ---- one step ------------------------------------------------------------------------------------------------------
def train_step(run: Run) -> tuple[float, dict[str, torch.Tensor]]:
    """One optimiser update over accum_steps micro-batches; returns the lr and the last micro-batch's loss parts,
    still on the device (no host sync)."""
    tc, cfg, sched, dev = run.tc, run.cfg, run.sched, run.device
    lr = lr_at(run.step, sched.total, sched.warmup, sched.peak, sched.kind)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    for micro in range(tc.accum_steps):
        batch = next(run.batches)
        run.note_bad(batch["bad"])
        spec = batch["spec"].to(dev, non_blocking=True)  # [B, F, T] as stored (float16 / float32), NaN where padded
        keep, mask = batch["keep"].to(dev, non_blocking=True), batch["mask"].to(dev, non_blocking=True)  # [B, Nv], [B, N]
        sync = nullcontext() if run.world == 1 or micro == tc.accum_steps - 1 else run.ddp.no_sync()
        with sync:
            mark_step()
            parts = run.loss_fn(run.ddp, spec, keep, mask, tc.precision, run.model.frontend)  # normalise, forward, loss
            run.scaler.scale(parts["loss"] / tc.accum_steps).backward()
    if sched.clip > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), sched.clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    return lr, {k: v.detach() for k, v in parts.items()}


# ---- the loop ------------------------------------------------------------------------------------------------------
def loop(run: Run, book: Bookkeeping) -> None:
    tc, total = run.tc, run.sched.total
    while run.step < total:
        lr, parts = train_step(run)
        run.step += 1
        book.record(run.step, lr, parts)
        saving = run.step % tc.save_every == 0 and run.step < total
        if saving or run.step % tc.log_every == 0:
            stop = book.check(weights=saving)
            if saving or stop:
                book.save()
            if stop:
                raise Stopped(f"stopped by SIGTERM at step {run.step} of {total} after writing a checkpoint; "
                              f"continue with the same command and --resume")
    book.check(weights=True)
    book.save()


def train(tc: TrainConfig) -> Path:
    """Pretrain as `tc` says; returns RUN_DIR/model.safetensors."""
    run = setup(tc)
    book, ok = Bookkeeping(run), False
    main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, book.on_sigterm) if main_thread else None
    try:
        loop(run, book)
        if tc.dump_rank_params:
            save_checkpoint(run.model, run.folder / f"rank{run.rank}.safetensors")
        ok = True
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        book.close()
        run.batches = None  # stops the loader's workers
        run.lock.release()
        teardown(run.world, ok)
    run.say(f"wrote {run.folder / MODEL_FILE} (step {run.step})")
    return run.folder / MODEL_FILE


__all__ = ["TrainConfig", "Run", "train", "setup", "teardown", "train_step", "Bookkeeping", "Stopped", "build_optimizer",
           "RECIPES"]
