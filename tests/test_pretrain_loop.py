"""The training loop's guarantees: one process per run folder (lock), a checkpoint on SIGTERM, a non-finite loss
stopping every rank (and never saved), run folders of the previous version resuming, TensorBoard and the compiled step.
Runs on a `hear-maeast features` store of real speech (../shared/data); CUDA-only checks skip with a reason."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from unittest import mock

import pytest
import torch
from safetensors.torch import load_file

from pretrain.train import TrainConfig, setup, train, train_step

from conftest import BIN, REPO, env1, run_cli as cli


def logged_steps(run: Path) -> list[int]:
    return [int(row["step"]) for row in csv.DictReader(open(run / "log.csv"))]


def pretrain_cmd(data, out, *extra) -> list[str]:
    return [str(BIN / "hear-maeast"), "pretrain", "--preset", "msm-mae-micro", "--data", str(data), "--out", str(out),
            "--batch-size", "4", "--device", "cpu", "--num-workers", "1", *map(str, extra)]


@pytest.fixture(scope="module")
def store(speech_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store") / "store"
    cli("features", speech_folder, out, "--preset", "msm-mae-micro", "--workers", 1)
    return out


def wait_for_rows(run: Path, proc, rows: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not (run / "log.csv").exists() or len(logged_steps(run)) < rows:
        assert proc.poll() is None and time.time() < deadline, "training exited or never logged"
        time.sleep(0.05)


def test_one_process_per_run_folder_and_sigterm_writes_a_checkpoint(store, tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen(pretrain_cmd(store, run, "--steps", 100_000, "--log-every", 2), env=env1(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_rows(run, first, 2)
        for extra in ([], ["--resume"]):  # a second run, or a resume, while the first is alive: refused, first untouched
            p = subprocess.run(pretrain_cmd(store, run, "--steps", 10, *extra), capture_output=True, text=True,
                               env=env1(), timeout=120)
            assert p.returncode == 2 and f"is in use by another process (pid {first.pid} on" in p.stderr, p.stderr
            assert first.poll() is None
        first.send_signal(signal.SIGTERM)  # what a scheduler sends before it kills
        _, err = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 143, err[-2000:]
    step = torch.load(run / "train_state.pt", weights_only=True)["step"]
    assert f"stopped by SIGTERM at step {step} " in err.splitlines()[-1] and logged_steps(run)[-1] == step
    p = subprocess.run(pretrain_cmd(store, run, "--steps", step + 2, "--resume"), capture_output=True, text=True,
                       env=env1(), timeout=120)  # the lock died with the process
    assert p.returncode == 0 and f"resumed {run} at step {step}" in p.stderr, p.stderr
    assert logged_steps(run) == list(range(1, step + 3))


@pytest.mark.slow
def test_a_non_finite_loss_stops_every_rank_and_is_never_saved(store, tmp_path):
    run = tmp_path / "ddp"
    cmd = [str(BIN / "torchrun"), "--nproc-per-node", "2", "-m", "pretrain", "--preset", "msm-mae-micro",
           "--data", str(store), "--out", str(run), "--steps", "50", "--batch-size", "2", "--device", "cpu",
           "--num-workers", "0", "--lr", "1e30", "--warmup-steps", "0", "--log-every", "1", "--save-every", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env1(), timeout=300, cwd=REPO)  # a hang would time out
    assert p.returncode != 0
    errors = re.findall(r"error: [^\n]*", p.stderr)  # one per rank (a line may follow rank 0's progress bar)
    assert len(errors) == 2 and all("became non-finite (NaN/Inf) at step" in e and "on 2 of 2 process(es)" in e for e in errors), p.stderr[-3000:]
    saved = load_file(run / "model.safetensors")  # the last checkpoint precedes the failure
    assert all(torch.isfinite(v).all() for v in saved.values())
    assert torch.load(run / "train_state.pt", weights_only=True)["step"] == logged_steps(run)[-1]  # the last finite step


def test_a_run_folder_of_the_previous_version_resumes(store, tmp_path):
    """The previous version's train_state.pt held model, optimizer, scaler, step, config, train_config and rng only,
    with its own TrainConfig fields (cache, num_workers 0); resuming reads what it needs and tolerates the rest."""
    run = tmp_path / "run"
    cli("pretrain", "--preset", "msm-mae-micro", "--data", store, "--out", run, "--steps", 3, "--batch-size", 4,
        "--device", "cpu", "--num-workers", 0)
    state = torch.load(run / "train_state.pt", weights_only=True)
    old = {k: state[k] for k in ("model", "optimizer", "scaler", "step", "config", "rng")}
    old["train_config"] = json.dumps(dict(preset="msm-mae-micro", data=str(store), out=str(run), steps=3, cache=None, num_workers=0))
    torch.save(old, run / "train_state.pt")
    out = cli("pretrain", "--preset", "msm-mae-micro", "--data", store, "--out", run, "--steps", 5, "--batch-size", 4,
              "--device", "cpu", "--num-workers", 0, "--resume")
    assert f"resumed {run} at step 3" in out and logged_steps(run) == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_tensorboard_logs_beside_the_csv(store, tmp_path):
    cli("pretrain", "--preset", "msm-mae-micro", "--data", store, "--out", tmp_path, "--steps", 3, "--batch-size", 4,
        "--device", "cpu", "--num-workers", 0, "--tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3]


def logged_losses(run: Path) -> list[float]:
    return [float(row["loss"]) for row in csv.DictReader(open(run / "log.csv"))]


def micro_run(store, out, **kw) -> TrainConfig:
    return TrainConfig(**{**dict(preset="msm-mae-micro", data=str(store), out=str(out), steps=20, batch_size=4,
                                 device="cpu", num_workers=0, log_every=5, save_every=1000), **kw})


def test_the_compiled_step_trains_as_the_eager_one(store, tmp_path):
    """The training step under torch.compile (inductor, fp32; pretrain/step.py) gives the eager step's losses within
    1e-4 relative at each of 20 steps: the same model, only fused. (The one real compilation in `make test`.)"""
    losses = {}
    for compiled in (False, True):
        train(micro_run(store, tmp_path / str(compiled), compile=compiled))
        losses[compiled] = logged_losses(tmp_path / str(compiled))
    assert len(losses[True]) == 20
    for step, (e, c) in enumerate(zip(losses[False], losses[True]), 1):
        assert abs(c - e) <= 1e-4 * abs(e), f"step {step}: eager {e}, compiled {c}"


def test_compile_is_on_by_default_only_for_long_cuda_runs():
    from pretrain.step import COMPILE_MIN_STEPS, compile_by_default, compile_mode

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not compile_by_default(cpu, 10**7)
    assert compile_by_default(cuda, COMPILE_MIN_STEPS) and not compile_by_default(cuda, COMPILE_MIN_STEPS - 1)
    assert compile_mode(cuda) == "reduce-overhead" and compile_mode(cuda, graphs=False) is None and compile_mode(cpu) is None


@pytest.mark.heavy
def test_a_compiled_run_stopped_and_resumed_logs_the_uninterrupted_losses(store, tmp_path):
    """SIGTERM's flag raised after step 6 of 12 (a checkpoint at step 6), then --resume: compiled both times, the
    losses of steps 7-12 equal those of an uninterrupted compiled run."""
    from pretrain.train import Bookkeeping, Stopped

    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(micro_run(store, whole, steps=12, save_every=6, compile=True))
    record = Bookkeeping.record

    def record_then_stop(self, step, lr, p):
        record(self, step, lr, p)
        self.stop = self.stop or step >= 6

    with mock.patch.object(Bookkeeping, "record", record_then_stop), pytest.raises(Stopped):
        train(micro_run(store, parts, steps=12, save_every=6, compile=True))
    assert logged_steps(parts) == list(range(1, 7))
    train(micro_run(store, parts, steps=12, save_every=6, compile=True, resume=True))
    assert logged_steps(parts) == list(range(1, 13))
    assert logged_losses(parts) == logged_losses(whole)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
def test_a_cuda_step_never_waits_for_the_device(store, tmp_path):
    tc = TrainConfig(preset="msm-mae-micro", data=str(store), out=str(tmp_path), steps=20, batch_size=8, device="cuda",
                     num_workers=1, precision="bf16", compile=True)
    run = setup(tc)
    try:
        for _ in range(3):  # the first steps compile, warm up and record the CUDA graphs (pretrain/step.py)
            train_step(run)
            run.step += 1
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")  # any host sync inside a step raises
        try:
            for _ in range(3):
                _, parts = train_step(run)
                run.step += 1
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert torch.isfinite(parts["loss"]).item()
    finally:
        run.batches = None
        run.lock.release()
