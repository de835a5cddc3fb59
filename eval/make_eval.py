"""The main job behind `make eval`: tasks, validator, both heareval stages, and the leaderboard table.

    python -m eval.make_eval --work work --shared ../shared/data

1. WORK/tasks: the built-in generated suite; with the shared data folder also the real spoken digit task
   (the official 44.1 kHz small archive resampled to 16 kHz) and Speech Commands built from the raw
   v0.02 subset (`speech_commands-v0.0.2-small`: a subset, so not named like the full task); and the real drum
   task `hydrogen_drums-v1.0-full` from the Debian package hydrogen-drumkits, fetched into WORK/debian (skipped,
   with the reason, when it cannot be fetched).
2. `hear-validator hear_maeast` on the default weights.
3. `hear-maeast eval --tasks-dir WORK/tasks --grid fast --out WORK/results`, for the model and, when it is the
   default weights, for the same preset randomly initialised (the honest baseline: what pretraining bought).
   Then `hear_maeast.logmel`, the log-mel floor every learned representation must beat (results/logmel-floor).
4. `hear-maeast finetune --tasks-dir WORK/tasks --out WORK/results --epochs N` for a hear_maeast model: the encoder
   fine-tuned on each scene task (the MAE-AST paper's protocol; docs/finetuning.md), a `<model>-finetuned` row
   next to the probe rows (event tasks: n/a; the drum task is left out to keep `make eval` short). Few epochs (`--finetune-epochs`, 0 skips it) keep `make eval` short.
5. `hear-maeast probe --probe linear --probe knn` on the default weights, the random init and the log-mel floor:
   EVAR's linear probe and X-ARES's kNN on the embeddings `eval` wrote (rows `<model>-linear`, `<model>-knn`),
   for a default-weights run only. heareval's probe stays the score of record.
6. `hear-maeast table WORK/results --against <model>` -> WORK/leaderboard.md, .csv, .png, and the table printed:
   the scores, then every other row compared with the model clip by clip (exact McNemar test: which differences
   the small tasks can tell from luck), followed by a note for every task whose audio is nearly silent (the
   official small spoken-digit archive: see `quiet_tasks`).

Every step keeps what earlier runs finished, so an interrupted run resumes where it stopped; results of weights
that have changed since (a re-trained default) are replaced (`eval` and `finetune` with `--replace-stale`, one
run-folder rule: eval/runs.py), never shown as the new ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np

from eval.runs import model_name
from eval.taskdir import read_audio
from hear_maeast.timing import SAMPLE_RATE

SPOKEN_DIGIT = "hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz"
SPEECH_COMMANDS = "speech_commands_v0.02-small.zip"
QUIET_DBFS = -60.0  # a task whose every clip peaks below this is nearly silent: its scores say little
FINETUNE_EPOCHS = 10  # docs/finetuning.md, "The fine-tuned row of `make eval`": what these epochs add to `make eval`, and what 30 epochs give
FLOOR_NAME = "logmel-floor"  # results folder of hear_maeast.logmel, the floor every learned model must beat
MAKE_EVAL_PROBES = ("linear", "knn")  # `hear-maeast probe` rows next to heareval's (docs/evaluation.md, "hear-maeast probe": their time)


def _step(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def _bin(name: str) -> str:
    """A console script of this environment (next to its python), else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _same_model(a, b) -> bool:
    """Same tensors and the same configuration (which carries the normalisation statistics)."""
    import torch

    from hear_maeast.checkpoint import model_state

    sa, sb = model_state(a), model_state(b)
    return a.cfg == b.cfg and sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def random_init_checkpoint(path: Path) -> Path:
    """The default weights' preset freshly initialised, with their normalisation statistics.

    Bit-identical to `hear-maeast pretrain --preset <default's preset> --steps 0 --seed 0` on the default weights'
    corpus (same seed, same initialisation, same statistics), without needing that corpus. A file already there is
    kept only while it holds exactly these tensors and configuration, so it follows a re-trained default; kept,
    its bytes (and so the sha256 its results are keyed to) stay the same, where a re-save would not (safetensors
    writes its metadata in no fixed order).
    """
    import torch

    import hear_maeast
    from hear_maeast.checkpoint import load_checkpoint, save_checkpoint
    from hear_maeast.model import MaskedAutoencoder

    default = hear_maeast.load_model()
    torch.manual_seed(0)
    model = MaskedAutoencoder(default.cfg)  # the configuration carries the statistics
    if path.is_file() and _same_model(load_checkpoint(path), model):
        return path
    return save_checkpoint(model, path, provenance={"steps": 0, "seed": 0, "note": "random init of the default preset"})


def quiet_tasks(tasks_dir: Path, sample_rate: int = SAMPLE_RATE) -> list[str]:
    """A note for each task whose every clip (at `sample_rate`) peaks below QUIET_DBFS, with the peaks in LSB of
    16-bit PCM: the official small spoken-digit archive is such a task, and no model can do much there."""
    notes = []
    for task in sorted(p for p in Path(tasks_dir).iterdir() if (p / str(sample_rate)).is_dir()):
        peaks = [float(np.abs(read_audio(w)[0]).max(initial=0.0))
                 for w in sorted((task / str(sample_rate)).glob("*/*.wav"))]
        if peaks and max(peaks) < 10 ** (QUIET_DBFS / 20):
            lo, hi = round(min(peaks) * 32768), round(max(peaks) * 32768)
            notes.append(f"note: {task.name} is nearly silent: its clips peak at {lo}-{hi} LSB of 16-bit PCM "
                         f"(below {QUIET_DBFS:.0f} dBFS), so every model scores near chance there")
    return notes


def drum_task(tasks_dir: Path, cache: Path) -> str:
    """Build the real drum task (its Debian package fetched into CACHE); a one-line reason when it cannot be."""
    from eval.drums import build
    from eval.taskdir import TaskError
    from eval.debian import PackageUnavailable

    try:
        return str(build(tasks_dir, cache))
    except (PackageUnavailable, TaskError) as e:
        return f"real drum task skipped: {e}"


def _run(cmd: list[str], env: dict | None = None) -> int:
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, env=env).returncode


def build_tasks(tasks_dir: Path, shared: Path, work: Path) -> None:
    """Step 1: the generated suite, and the real tasks whose sources are in `shared` (each skipped with the reason)."""
    from eval import synth
    from eval.resample import resample_tree
    from eval.speech_commands import build

    _step(f"tasks in {tasks_dir}")
    for folder in synth.write_suite(tasks_dir):
        print(folder)
    if (shared / SPOKEN_DIGIT).is_file():
        for folder in resample_tree(shared / SPOKEN_DIGIT, tasks_dir, SAMPLE_RATE):
            print(folder)
    else:
        print(f"{shared / SPOKEN_DIGIT} not found: real spoken digit task skipped")
    if (shared / SPEECH_COMMANDS).is_file():
        print(build(shared / SPEECH_COMMANDS, tasks_dir, mode="small"))
    else:
        print(f"{shared / SPEECH_COMMANDS} not found: real speech commands task skipped")
    print(drum_task(tasks_dir, work / "debian"))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hear_maeast.cli", *args]


def eval_command(tasks_dir: Path, results: Path, module: str, grid: str, model_path: str = "") -> list[str]:
    """`hear-maeast eval` as step 3 runs it (stale results of changed weights replaced)."""
    return _cli("eval", "--tasks-dir", str(tasks_dir), "--module", module, "--grid", grid, "--out", str(results),
                "--replace-stale") + (["--model", model_path] if model_path else [])


def finetune_command(tasks_dir: Path, results: Path, epochs: int, model_path: str = "") -> list[str]:
    """`hear-maeast finetune` as step 4 runs it (stale results of changed weights replaced): every task but the
    drum task (its 5 x ~400-clip folds would add ~10 min on 2 cores: `make eval` stays under 15 minutes, and
    docs/finetuning.md gives the command that fine-tunes it too)."""
    from eval.drums import TASK as DRUM_TASK

    only = [a for t in sorted(p.name for p in tasks_dir.iterdir() if p.is_dir() and p.name != DRUM_TASK)
            for a in ("--task", t)]
    return _cli("finetune", "--tasks-dir", str(tasks_dir), "--out", str(results), "--epochs", str(epochs),
                "--replace-stale", *only) + (["--model", model_path] if model_path else [])


def probe_steps(tasks_dir: Path, results: Path, work: Path, module: str, model_path: str, grid: str) -> int:
    """Step 3: the model's probe and the random-init baseline (default weights only); OR of the exit codes. The
    log-mel floor is `floor_step`, run after fine-tuning."""
    _step(f"hear-maeast eval (--grid {grid})")
    eval_cmd = eval_command(tasks_dir, results, module, grid, model_path)
    rc = _run(eval_cmd)
    if module == "hear_maeast" and not model_path:
        _step("the same preset, randomly initialised (baseline)")
        baseline = random_init_checkpoint(work / "random-init.safetensors")
        rc |= _run(eval_cmd + ["--model", str(baseline), "--name", "hear_maeast-random-init"])
    return rc


def floor_step(tasks_dir: Path, results: Path, grid: str) -> int:
    _step("the log-mel floor (hear_maeast.logmel)")
    return _run(eval_command(tasks_dir, results, "hear_maeast.logmel", grid) + ["--name", FLOOR_NAME])

def _one_thread_env() -> dict:
    """The environment of the torch steps (finetune, probe): one thread unless OMP_NUM_THREADS says otherwise. On a
    2-core machine shared with anything else, two threads spin and took 2-5x longer here."""
    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def probes_step(tasks_dir: Path, results: Path, work: Path) -> int:
    """Step 5 (default weights): `hear-maeast probe` (MAKE_EVAL_PROBES) on the embeddings `eval` wrote for the
    default weights, the random init and the log-mel floor; OR of the exit codes."""
    _step(f"hear-maeast probe ({', '.join(MAKE_EVAL_PROBES)}): the default weights, the random init, the floor")
    probe_cmd = _cli("probe", "--tasks-dir", str(tasks_dir), "--out", str(results), "--replace-stale",
                     *(a for p in MAKE_EVAL_PROBES for a in ("--probe", p)))
    env = _one_thread_env()  # tiny torch ops on 2 busy cores spin with two (measured: docs/evaluation.md)
    rc = _run(probe_cmd, env=env)
    rc |= _run(probe_cmd + ["--model", str(work / "random-init.safetensors"), "--name", "hear_maeast-random-init"],
               env=env)
    return rc | _run(probe_cmd + ["--module", "hear_maeast.logmel", "--name", FLOOR_NAME], env=env)


def finetune_step(tasks_dir: Path, results: Path, epochs: int, model_path: str) -> int:
    """Step 4 (hear_maeast models, epochs > 0)."""
    _step(f"hear-maeast finetune (--epochs {epochs}): the small scene tasks, encoder fine-tuned")
    return _run(finetune_command(tasks_dir, results, epochs, model_path), env=_one_thread_env())


def leaderboard(tasks_dir: Path, results: Path, work: Path, against: str) -> int:
    """Step 5: the table (compared with `against` when it has results), then the notes on nearly silent tasks."""
    _step("leaderboard")
    table_rc = _run(_cli("table", str(results), "-o", str(work / "leaderboard.md"), "--csv",
                         str(work / "leaderboard.csv"), "--plot", str(work / "leaderboard.png"))
                    + (["--against", against] if (results / against).is_dir() else []))
    notes = quiet_tasks(tasks_dir)
    print("\n".join(notes))
    if notes and not table_rc:
        with open(work / "leaderboard.md", "a") as md:
            md.write("\n" + "\n".join(notes) + "\n")
    return table_rc


@click.command()
@click.option("--work", default="work", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--shared", default="../shared/data", show_default=True, type=click.Path(path_type=Path),
              help="Folder with the small real HEAR data; skipped when absent.")
@click.option("--module", default="hear_maeast", show_default=True)
@click.option("--model", "model_path", default="", help="Checkpoint; the module's default weights when empty.")
@click.option("--grid", default="fast", show_default=True)
@click.option("--finetune-epochs", default=FINETUNE_EPOCHS, show_default=True,
              help="Epochs of `hear-maeast finetune` per task and fold (hear_maeast models only); 0: skip it.")
def main(work: Path, shared: Path, module: str, model_path: str, grid: str, finetune_epochs: int):
    start = time.time()
    tasks_dir, results = work / "tasks", work / "results"
    build_tasks(tasks_dir, shared, work)
    _step(f"hear-validator {module}")
    validator_rc = _run([_bin("hear-validator"), module] + (["-m", model_path] if model_path else []))
    eval_rc = probe_steps(tasks_dir, results, work, module, model_path, grid)
    finetune_rc = 0
    if module == "hear_maeast" and finetune_epochs > 0:
        finetune_rc = finetune_step(tasks_dir, results, finetune_epochs, model_path)
    eval_rc |= floor_step(tasks_dir, results, grid)
    probe_rc = probes_step(tasks_dir, results, work) if module == "hear_maeast" and not model_path else 0
    # compared with the folder `eval` wrote the model's results to
    table_rc = leaderboard(tasks_dir, results, work, model_name(module, model_path))
    print(f"\nwrote {work / 'leaderboard.md'}, .csv, .png in {time.time() - start:.0f} s")
    steps = (("hear-validator", validator_rc), ("eval", eval_rc), ("finetune", finetune_rc), ("probe", probe_rc),
             ("table", table_rc))
    for what, rc in steps:
        if rc:
            print(f"{what} failed (exit {rc})", file=sys.stderr)
    sys.exit(1 if any(rc for _, rc in steps) else 0)


if __name__ == "__main__":
    main()
