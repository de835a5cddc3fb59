"""A run's checkpoint: RUN_DIR/train_state.pt (model, optimiser, scaler, RNG, step, unreadable clips; what `--resume`
reads back) and RUN_DIR/model.safetensors (the HEAR module's format), written state first so that the model never
runs ahead of the state it resumes from."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist

from hear_maeast.checkpoint import save_checkpoint
from hear_maeast.config import ModelConfig
from hear_maeast.errors import BadInput
from pretrain.run import Run
from pretrain.runfolder import MODEL_FILE, STATE_FILE, load_state, save_state


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


def save(run: Run) -> None:
    """train_state.pt, then model.safetensors (rank 0; every rank takes part in gathering unreadable clips)."""
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
