"""Training fingerprint: the per-step losses of seeded CPU pretraining and fine-tuning, saved or compared bit for bit.

A refactor must not change what training computes. With scripts/fingerprint.py (the HEAR API), take both before
and after and compare:

    python scripts/refactor_baseline.py save before.json
    ... change the code ...
    python scripts/refactor_baseline.py compare before.json    # exit 1 and the differing keys if any bit changed

Pretraining: 20 updates of `pretrain.train` (setup + train_step, one loader process, seed 0) for msm-mae-micro,
mae-ast-patch-micro and mae-ast-frame-micro on 48 generated noise clips; every loss part and lr, as float.hex.
Fine-tuning: `eval.finetune.run_finetune` on the built-in synth_pitch task (trainvaltest) for 5 epochs (20 updates)
of randomly initialised msm-mae-micro and mae-ast-patch-micro checkpoints (seed 0); every training loss (float.hex)
and the fold results (scores, history, best epoch; timings left out).
Evaluation: `hear-maeast eval --grid faster` (heareval's runners) on synth_pitch and `hear-maeast probe --probe
linear knn mlp` on synth_pitch, synth_timbre (5 folds) and synth_mixture (multi-label), default weights, as real
subprocesses: the sha256 of every embeddings file, every test.predicted-scores.json, and `hear-maeast table`'s text.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
PRETRAIN_PRESETS = ("msm-mae-micro", "mae-ast-patch-micro", "mae-ast-frame-micro")
FINETUNE_PRESETS = ("msm-mae-micro", "mae-ast-patch-micro")
STEPS = 20


def audio_folder(root: Path, n: int = 48) -> Path:
    """n seeded noise bursts of 1-4 s at 16 kHz."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        samples = int(rng.uniform(1.0, 4.0) * 16000)
        env = np.abs(np.sin(np.linspace(0, 5 * rng.uniform(1, 3), samples)))
        sf.write(root / f"clip{i:03d}.wav", (0.1 * env * rng.standard_normal(samples)).astype(np.float32), 16000)
    return root


def pretrain_losses(data: Path, preset: str, out: Path) -> list[list[str]]:
    from pretrain.train import TrainConfig, setup, teardown, train_step

    tc = TrainConfig(preset=preset, data=str(data), out=str(out), steps=STEPS, batch_size=8, num_workers=0, seed=0)
    run = setup(tc)
    rows = []
    try:
        while run.step < STEPS:
            lr, parts = train_step(run)
            run.step += 1
            rows.append([float(lr).hex()] + [f"{k}={float(v):.17g}:{float(v).hex()}" for k, v in sorted(parts.items())])
    finally:
        run.batches = None
        run.lock.release()
        teardown(run.world, True)
    return rows


def finetune_losses(tasks: Path, preset: str, tmp: Path) -> dict:
    import eval.finetune as ft
    from hear_maeast.checkpoint import save_checkpoint
    from hear_maeast.config import get_preset
    from hear_maeast.model import MaskedAutoencoder

    torch.manual_seed(0)
    model = save_checkpoint(MaskedAutoencoder(get_preset(preset)), tmp / f"{preset}.safetensors")
    losses, original = [], ft._loss

    def recording(logits, targets, prediction_type):
        loss = original(logits, targets, prediction_type)
        if loss.requires_grad:
            losses.append(f"{loss.item():.17g}:{loss.item().hex()}")
        return loss

    ft._loss = recording
    try:
        ft.run_finetune(tasks, tmp / f"results-{preset}", model_path=str(model), name=preset,
                        tc=ft.FinetuneConfig(epochs=5, device="cpu", patience=0))
    finally:
        ft._loss = original
    folds = {}
    for f in sorted((tmp / f"results-{preset}").rglob("*.finetune.json")):
        result = json.loads(f.read_text())
        result["scores"].pop("time_in_min", None)
        folds[f.name] = result
    return {"train_losses": losses, "folds": folds}


EVAL_TASKS = ("synth_pitch", "synth_timbre", "synth_mixture")


def cli(*args) -> str:
    import subprocess

    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "hear_maeast.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=1800)
    if proc.returncode:  # recorded, so that the comparison names it beside the other keys
        return f"hear-maeast {args[0]} failed (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return proc.stdout


def eval_results(tmp: Path) -> dict:
    """eval (heareval) on synth_pitch and the three probes on EVAL_TASKS: embeddings' sha256, scores, the table."""
    import hashlib

    from eval.synth import write_suite

    write_suite(tmp / "eval-tasks", seed=0, only=EVAL_TASKS)
    results = tmp / "eval-results"
    cli("eval", "--tasks-dir", tmp / "eval-tasks", "--task", "synth_pitch-v1.0-small", "--grid", "faster",
        "--out", results)
    cli("probe", "--tasks-dir", tmp / "eval-tasks", "--probe", "linear", "--probe", "knn", "--probe", "mlp",
        "--out", results)
    out = {"table": cli("table", results)}
    for f in sorted(results.rglob("*")):
        key = str(f.relative_to(results))
        if f.name.endswith("embeddings.npy"):
            out[key] = hashlib.sha256(f.read_bytes()).hexdigest()
        elif f.name == "test.predicted-scores.json":
            out[key] = json.loads(f.read_text())
    return out


def normalised(obj):
    """A score file without what differs from run to run in heareval's own output: its timing, the folder it ran
    in, and the memory addresses in the reprs of its hyper-parameters."""
    import re

    if isinstance(obj, dict):
        return {k: normalised(v) for k, v in obj.items() if k not in ("time_in_min", "embedding_path")}
    if isinstance(obj, list):
        return [normalised(v) for v in obj]
    return re.sub(r" at 0x[0-9a-f]+", "", obj) if isinstance(obj, str) else obj


def fingerprint() -> dict:
    torch.set_num_threads(1)
    from eval.synth import write_suite

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = audio_folder(tmp / "audio")
        for preset in PRETRAIN_PRESETS:
            out[f"pretrain/{preset}"] = pretrain_losses(data, preset, tmp / f"run-{preset}")
        write_suite(tmp / "tasks", seed=0, only=("synth_pitch",))
        for preset in FINETUNE_PRESETS:
            out[f"finetune/{preset}"] = finetune_losses(tmp / "tasks", preset, tmp)
        out["eval"] = eval_results(tmp)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["save", "compare"])
    p.add_argument("file", type=Path)
    args = p.parse_args()
    now = json.loads(json.dumps(fingerprint()))
    if args.action == "save":
        args.file.write_text(json.dumps(now, indent=1))
        print(f"{len(now)} runs -> {args.file}")
        return 0
    before = normalised(json.loads(args.file.read_text()))
    now = normalised(now)
    problems = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    if "eval" in problems:  # name the files that differ
        problems += [f"eval/{k}" for k in sorted(set(before["eval"]) | set(now.get("eval", {})))
                     if before["eval"].get(k) != now.get("eval", {}).get(k)]
    print("differ: " + ", ".join(problems) if problems else f"bit-identical: {len(now)} runs")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
