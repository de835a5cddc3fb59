"""Click commands of `hear-maeast` that live in eval/: `tasks` (synth, resample, speech-commands), `eval`, `table`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from eval.taskdir import TaskError
from hear_maeast.timing import SAMPLE_RATE


def _fail(e: Exception) -> None:
    click.echo(f"error: {e}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def tasks():
    """Prepare HEAR task folders (one folder per task, named like the official ones) in a tasks root."""


@tasks.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, show_default=True, help="Generator seed; the same seed gives the same audio.")
@click.option("--only", multiple=True, help="Write only this task (repeatable), e.g. synth_pitch.")
def synth(out: Path, seed: int, only: tuple[str, ...]):
    """Write the built-in generated task suite into OUT (seconds; kept when already there)."""
    from eval import synth as synth_mod

    try:
        for folder in synth_mod.write_suite(out, seed=seed, only=only):
            click.echo(str(folder))
    except ValueError as e:
        _fail(e)


@tasks.command()
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.argument("dst", type=click.Path(file_okay=False, path_type=Path))
@click.option("--sr", default=SAMPLE_RATE, show_default=True, help="Target sample rate in Hz (default: the models').")
def resample(src: Path, dst: Path, sr: int):
    """HEAR tasks in SRC (a task folder, a tasks root, or a .tar.gz/.zip of either) -> DST/<task>/ at --sr Hz."""
    from eval.resample import resample_tree

    try:
        for folder in resample_tree(src, dst, sr):
            click.echo(str(folder))
    except TaskError as e:
        _fail(e)


@tasks.command("speech-commands")
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--test-set", type=click.Path(exists=True, path_type=Path),
              help="The official speech_commands_test_set_v0.02 (folder or archive); replaces the testing-list clips.")
@click.option("--mode", default="full", show_default=True,
              help="Task name suffix: speech_commands-v0.0.2-<mode>. Use another name (e.g. small) for a subset.")
def speech_commands(src: Path, out: Path, test_set: Path | None, mode: str):
    """Raw Speech Commands v0.02 in SRC (folder or archive) -> OUT/speech_commands-v0.0.2-<mode>/ (HEAR recipe)."""
    from eval.speech_commands import build

    try:
        click.echo(str(build(src, out, test_set=test_set, mode=mode)))
    except TaskError as e:
        _fail(e)


@tasks.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the .deb and its unpacked files [default: ~/.cache/hear_maeast/debian].")
def drums(out: Path, cache: Path | None):
    """Real drum hits from Debian's hydrogen-drumkits -> OUT/hydrogen_drums-v1.0-full/ (6 classes, 5 folds by kit)."""
    from eval.drums import build

    cache = cache or Path.home() / ".cache" / "hear_maeast" / "debian"
    try:
        click.echo(str(build(out, cache)))
    except TaskError as e:
        _fail(e)


@click.command("eval")
@click.option("--tasks-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A tasks root (one folder per task) or a single task folder.")
@click.option("--model", "model_path", default="", help="Checkpoint (.safetensors) for the module; default weights if empty.")
@click.option("--model-options", default="{}", help='JSON dict passed to load_model, e.g. \'{"preset": "msm-mae-208"}\'.')
@click.option("--module", default="hear_maeast", show_default=True, help="Any HEAR module importable by name.")
@click.option("--grid", default="default", show_default=True, type=click.Choice(["default", "fast", "faster"]),
              help="heareval's hyper-parameter grid; fast is what a CPU or CI run wants.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="RESULTS folder.")
@click.option("--name", default=None, help="Results folder name for this model (default: module-checkpoint-options).")
@click.option("--task", "only", multiple=True, help="Only this task folder name (repeatable).")
def eval_cmd(tasks_dir, model_path, model_options, module, grid, out, name, only):
    """Embed every task with a HEAR module and score it with heareval's predictions runner.

    Results go to OUT/<model-name>/<task>/; a re-run resumes. Exits 1 when any task failed (after the others).
    """
    from eval.runner import run_eval

    try:
        options = json.loads(model_options)
        if not isinstance(options, dict):
            raise TaskError(f"--model-options must be a JSON object, got {model_options!r}")
    except json.JSONDecodeError as e:
        _fail(TaskError(f"--model-options is not valid JSON ({e})"))
    if model_path and not Path(model_path).is_file():
        _fail(TaskError(f"--model {model_path} does not exist"))
    try:
        failed = run_eval(tasks_dir, out, module=module, model_path=model_path, model_options=options, grid=grid,
                          name=name, only=only)
    except TaskError as e:
        _fail(e)
    sys.exit(1 if failed else 0)


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Markdown file to write.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="CSV file to write.")
@click.option("--plot", "png", type=click.Path(dir_okay=False, path_type=Path), help="PNG bar chart to write.")
def table(results, output, csv_path, png):
    """Leaderboard table from RESULTS folders (RESULTS or RESULTS/<model>); printed as Markdown."""
    from eval.table import write_table

    try:
        click.echo(write_table(list(results), output, csv_path, png), nl=False)
    except (FileNotFoundError, ValueError) as e:
        _fail(e)
