"""The pretraining loop, the same on one CPU, one GPU and under `torchrun` (DDP), in three parts as MAE's
main_pretrain / engine_pretrain: `setup` (folder, data, model, optimiser, resume), `train_step` (one optimiser update)
and `Bookkeeping` (log, agreed checks, checkpoints).

RUN_DIR/model.safetensors  the latest weights in the HEAR module's format (what `hear_maeast.load_model` reads)
RUN_DIR/train_state.pt     model + optimiser + scaler + RNG + step + unreadable clips, for `--resume` (written first)
RUN_DIR/log.csv            step, epoch, loss, lr, samples_per_s (+ the loss parts mse, nce); RUN_DIR/tensorboard/
RUN_DIR/.lock              held by the running process (pretrain/runfolder.py)
The learning rate is a pure function of (step, total), so raising --steps/--epochs on resume re-plans the schedule.
No step waits for the device: losses stay on it and are read back every --log-every steps and before every save,
where all ranks agree on whether the loss is finite (and, before a save, the weights) and whether SIGTERM arrived.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from hear_maeast import __version__
from hear_maeast.api import resolve_device
from hear_maeast.checkpoint import save_checkpoint
from hear_maeast.config import ModelConfig, get_preset
from hear_maeast.errors import BadInput, WorkFailed
from hear_maeast.files import FolderLock
from hear_maeast.masking import num_masked
from hear_maeast.model import MaskedAutoencoder
from hear_maeast.optim import decay_groups, lr_at
from hear_maeast.provenance import git_commit
from pretrain.data import FeatureStore, Source, open_source
from pretrain.loader import MicroBatches, Plan, clip_sums, loader, mean_std, stats_sample
from pretrain.recipes import CPU_BATCH, RECIPES
from pretrain.runfolder import clear_temporaries, load_state, open_log, save_state
from pretrain.step import compile_by_default, compiled, mae_loss, mark_step

MODEL_FILE, STATE_FILE, LOG_FILE, TENSORBOARD = "model.safetensors", "train_state.pt", "log.csv", "tensorboard"


@dataclass
class TrainConfig:
    preset: str
    data: str
    out: str
    steps: int | None = None  # total optimiser updates (or --epochs)
    epochs: float | None = None
    batch_size: int | None = None  # per process, as in MAE; None: `default_batch_size`
    accum_steps: int = 1
    seed: int = 0
    device: str | None = None
    precision: str = "fp32"  # fp32 | bf16 | fp16
    num_workers: int | None = None  # loader processes per rank; None: min(8, cores per rank - 1)
    data_root: str | None = None  # folder the paths of a --data CSV are relative to (default: the CSV's folder)
    norm_stats: tuple[float, float] | None = None  # (mean, std); default: the store's, or from a sample of clips
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
    log_every: int = 20  # losses are read back from the device (one sync) every this many updates
    compile: bool | None = None  # torch.compile the step; None: on CUDA for runs of >= COMPILE_MIN_STEPS updates
    tensorboard: bool = False
    prefetch: int = 4  # micro-batches each loader worker prepares ahead
    resume: bool = False
    dump_rank_params: bool = False  # tests: each rank writes its parameters to rank<r>.safetensors
    command: str = ""  # the command line, for provenance (default: sys.argv)


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


def check_options(tc: TrainConfig) -> None:
    """Numbers a click type cannot refuse (finite, positive): one message naming the option."""
    for option, value, positive in (("--lr", tc.lr, True), ("--weight-decay", tc.weight_decay, False),
                                    ("--clip-grad", tc.clip_grad, False)):
        if value is not None and not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
            raise BadInput(f"{option} {value}: expected a finite number {'> 0' if positive else '>= 0'}"
                           f"{' (e.g. 1.5e-4)' if option == '--lr' else ''}")
    if tc.norm_stats is not None and not (all(map(math.isfinite, tc.norm_stats)) and tc.norm_stats[1] > 0):
        raise BadInput(f"--norm-stats {tc.norm_stats}: expected a finite mean and a std > 0")
    if tc.precision not in ("fp32", "bf16", "fp16"):
        raise BadInput(f"--precision {tc.precision!r}: expected fp32, bf16 or fp16")
    if (tc.steps is None) == (tc.epochs is None):
        raise BadInput("give exactly one of --steps N or --epochs N")


def default_batch_size(cfg: ModelConfig, device: torch.device) -> int:
    """Clips per process when --batch-size is not given: the recipe's CUDA batch on a GPU (pretrain/recipes.py)."""
    return RECIPES[cfg.family]["cuda_batch"] if device.type == "cuda" else CPU_BATCH


@dataclass
class Schedule:
    """The run's length and learning-rate plan, from the options, the recipe and the data size."""

    total: int
    warmup: int
    peak: float
    kind: str
    clip: float
    weight_decay: float
    global_batch: int
    steps_per_epoch: int

    @classmethod
    def plan(cls, tc: TrainConfig, recipe: dict, n_clips: int, world: int) -> "Schedule":
        gb = tc.batch_size * tc.accum_steps * world
        per_epoch = max(1, n_clips // gb)
        total = tc.steps if tc.steps is not None else round(tc.epochs * per_epoch)
        warmup = (tc.warmup_steps if tc.warmup_steps is not None else round(tc.warmup_epochs * per_epoch)
                  if tc.warmup_epochs is not None else round(recipe["warmup_frac"] * total))
        peak = tc.lr if tc.lr is not None else recipe["lr"] * (gb / recipe["lr_per_batch"] if recipe["lr_per_batch"] else 1)
        pick = lambda mine, key: mine if mine is not None else recipe[key]  # noqa: E731
        return cls(total, warmup, peak, pick(tc.schedule, "schedule"), pick(tc.clip_grad, "clip_grad"),
                   pick(tc.weight_decay, "weight_decay"), gb, per_epoch)


# ---- distributed ---------------------------------------------------------------------------------------------------
def setup_distributed(device: str | None) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Under torchrun: gloo on CPU, nccl on CUDA, one GPU per local rank."""
    device = str(resolve_device(device, "--device"))  # the package's one device check and default
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
    """Sum over ranks (a collective: every rank must call it at the same point)."""
    if world > 1:
        x = x.clone()
        dist.all_reduce(x)
    return x


def default_workers() -> int:
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return min(8, max(1, (os.cpu_count() or 1) // local - 1))


# ---- setup ---------------------------------------------------------------------------------------------------------
@dataclass
class Run:
    """Everything the loop needs, made by `setup`."""

    tc: TrainConfig
    cfg: ModelConfig
    rank: int
    world: int
    device: torch.device
    folder: Path
    lock: FolderLock
    source: Source
    sched: Schedule
    model: MaskedAutoencoder
    ddp: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    step: int = 0
    bad: dict = field(default_factory=dict)  # unreadable clip -> why: reported once each; all ranks' at each save
    batches: object = None
    provenance: dict = field(default_factory=dict)
    loss_fn: object = mae_loss  # pretrain.step.mae_loss, or it under torch.compile (`compile_step`)

    def say(self, *a) -> None:
        if self.rank == 0:
            print(*a, file=sys.stderr, flush=True)

    def note_bad(self, items) -> None:
        for clip, why in items:
            if clip not in self.bad:
                self.bad[clip] = why
                print(f"unreadable clip {self.source.name(clip)}: {why} (replaced by another clip; counted)",
                      file=sys.stderr, flush=True)


def agree(flags: list[float], world: int, device: torch.device) -> list[float]:
    """Sum of per-rank numbers on every rank, so that all ranks take the same branch (no rank left in a collective)."""
    return all_sum(torch.tensor(flags, dtype=torch.float64, device=device if world > 1 and device.type == "cuda" else "cpu"),
                   world).tolist()


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


def saved_config(state: dict, path: Path) -> ModelConfig:
    try:  # parsed, not compared as text: configuration keys renamed since the run started still match
        return ModelConfig.from_dict(json.loads(state["config"]))
    except (KeyError, ValueError, TypeError) as e:
        raise BadInput(f"--resume: {path} holds no readable model configuration ({e})") from None


def resume_from(run: Run) -> None:
    """Model, optimiser, scaler, step, RNG and unreadable clips from RUN_DIR/train_state.pt."""
    path = run.folder / STATE_FILE
    state = load_state(path, run.device)
    if saved_config(state, path) != run.cfg:
        raise BadInput(f"--resume: {run.folder} was trained with a different model configuration "
                       f"({saved_config(state, path).name}); resume with the same --preset and masking/objective options")
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    run.step = int(state["step"])
    run.bad = dict(state.get("bad_clips", {}))
    torch.set_rng_state(state["rng"]["cpu"].cpu())
    if run.device.type == "cuda" and state["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), run.device)
    if run.step > run.sched.total:
        raise BadInput(f"--resume: {run.folder} is already at step {run.step}, past the requested total of {run.sched.total}")
    if state.get("clips", len(run.source)) != len(run.source):
        run.say(f"warning: --data now lists {len(run.source)} clips, the run started with {state['clips']}: "
                "batches differ from those of an uninterrupted run")
    run.say(f"resumed {run.folder} at step {run.step} of {run.sched.total}")


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


def teardown(world: int, ok: bool) -> None:
    if world > 1 and dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()


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


# ---- bookkeeping ---------------------------------------------------------------------------------------------------
PARTS = ("loss", "mse", "nce")


class Bookkeeping:
    """Losses kept on the device until `check` reads them back (one sync), the log, TensorBoard, the progress bar,
    SIGTERM, and checkpoints."""

    def __init__(self, run: Run):
        self.run, self.pending, self.stop = run, [], False
        self.t_last = time.perf_counter()
        main = run.rank == 0
        self.log = open_log(run.folder / LOG_FILE, run.step if run.tc.resume else None) if main else None
        self.tb = None
        if main and run.tc.tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package (pip install .[train])

            self.tb = SummaryWriter(str(run.folder / TENSORBOARD), purge_step=run.step + 1 if run.tc.resume else None)
        self.bar = tqdm(total=run.sched.total, initial=run.step, disable=not main, desc=run.cfg.name, dynamic_ncols=True)

    def on_sigterm(self, signum, frame) -> None:
        self.stop = True  # acted on at the next check, by every rank at once

    def record(self, step: int, lr: float, parts: dict) -> None:
        nan = torch.full((), float("nan"), device=parts["loss"].device)
        self.pending.append((step, lr, torch.stack([parts.get(p, nan).float() for p in PARTS])))

    def check(self, weights: bool) -> bool:
        """Read back the pending losses; all ranks agree on a non-finite loss (or weights) -> WorkFailed, and on
        SIGTERM -> True. Then log them."""
        run = self.run
        values = torch.stack([v for *_, v in self.pending]).cpu() if self.pending else torch.zeros(0, len(PARTS))
        loss_bad = not torch.isfinite(values[:, 0]).all().item()
        weights_bad = weights and not all(torch.isfinite(p).all() for p in run.model.parameters())
        n_loss, n_weights, n_stop = agree([loss_bad, weights_bad, self.stop], run.world, run.device)
        if n_loss or n_weights:
            first, last = (self.pending[0][0], self.pending[-1][0]) if self.pending else (run.step, run.step)
            where = f"at step {last}" if first == last else f"between steps {first} and {last}"
            raise WorkFailed(f"the {'loss' if n_loss else 'model'} became non-finite (NaN/Inf) {where} on "
                             f"{int(n_loss or n_weights)} of {run.world} process(es); nothing was saved after it: lower --lr "
                             f"(now {run.sched.peak:.3g}), use --precision fp32 or bf16, or --clip-grad")
        self.write(values)
        return bool(n_stop)

    def write(self, values: torch.Tensor) -> None:
        now = time.perf_counter()
        run, n = self.run, len(self.pending)
        sps = run.sched.global_batch * n / max(now - self.t_last, 1e-9)
        self.t_last = now
        if self.log and n:
            rows = [[step, f"{step / run.sched.steps_per_epoch:.4f}", f"{v[0]:.6f}", f"{lr:.6g}", f"{sps:.1f}"]
                    + ["" if math.isnan(x) else f"{x:.6f}" for x in v[1:].tolist()]
                    for (step, lr, _), v in zip(self.pending, values)]
            csv.writer(self.log).writerows(rows)
            self.log.flush()
            for (step, lr, _), v in zip(self.pending, values) if self.tb else ():
                for tag, x in [*zip(PARTS, v.tolist()), ("lr", lr)]:
                    if not math.isnan(x):
                        self.tb.add_scalar(tag, x, step)
            if self.tb:
                self.tb.add_scalar("samples_per_s", sps, self.pending[-1][0])
                self.tb.flush()
            self.bar.set_postfix(loss=f"{values[-1, 0]:.4f}", lr=f"{self.pending[-1][1]:.2e}", samples_s=f"{sps:.0f}")
        self.bar.update(n)
        self.pending = []

    def save(self) -> None:
        """train_state.pt, then model.safetensors (rank 0; every rank takes part in gathering unreadable clips)."""
        run = self.run
        if run.world > 1:
            everyone = [None] * run.world
            dist.all_gather_object(everyone, run.bad)
            run.bad = {k: v for d in everyone for k, v in d.items()}
        if run.rank != 0:
            return
        state = dict(model=run.model.state_dict(), optimizer=run.optimizer.state_dict(), scaler=run.scaler.state_dict(),
                     step=run.step, config=run.cfg.to_json(), train_config=json.dumps(asdict(run.tc)),
                     rng=dict(cpu=torch.get_rng_state(),
                              cuda=torch.cuda.get_rng_state(run.device) if run.device.type == "cuda" else None),
                     bad_clips=dict(run.bad), clips=len(run.source))
        save_state(run.folder / STATE_FILE, state)  # state first: the model never runs ahead of it
        epochs = round(run.step / run.sched.steps_per_epoch, 3)
        save_checkpoint(run.model, run.folder / MODEL_FILE, dict(run.provenance, steps=run.step, epochs=epochs, skipped=len(run.bad)))

    def close(self) -> None:
        self.bar.close()
        for f in (self.log, self.tb):
            if f is not None:
                f.close()


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


__all__ = ["TrainConfig", "train", "setup", "train_step", "Bookkeeping", "build_optimizer", "RECIPES"]
