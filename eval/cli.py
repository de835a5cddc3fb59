"""Click commands of `hear-maeast` that live in eval/: `tasks` (synth, resample, speech-commands), `eval`, `table`.

Errors are raised, never printed here: hear_maeast.errors turns them into one line and the exit code (2 for a bad
option or argument, 1 for failed work such as a bad task folder or a task that could not be scored).
"""

from __future__ import annotations

from pathlib import Path

import click

from eval.finetune_config import FinetuneConfig
from eval.probes import PROBES
from hear_maeast.errors import BadInput, Command, Group
from hear_maeast.options import MODEL_OPTIONS_EXAMPLE, parse_model_options  # --model-options: read in one place
from hear_maeast.timing import SAMPLE_RATE


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def tasks():
    """Prepare HEAR task folders (one folder per task, named like the official ones) in a tasks root."""


@tasks.command(cls=Command)
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, show_default=True, help="Generator seed; the same seed gives the same audio.")
@click.option("--only", multiple=True, help="Write only this task (repeatable), e.g. synth_pitch.")
def synth(out: Path, seed: int, only: tuple[str, ...]):
    """Write the built-in generated task suite into OUT (seconds; kept when already there)."""
    from eval import synth as synth_mod

    for folder in synth_mod.write_suite(out, seed=seed, only=only):
        click.echo(str(folder))


@tasks.command(cls=Command)
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.argument("dst", type=click.Path(file_okay=False, path_type=Path))
@click.option("--sr", default=SAMPLE_RATE, show_default=True, help="Target sample rate in Hz (default: the models').")
def resample(src: Path, dst: Path, sr: int):
    """HEAR tasks in SRC (a task folder, a tasks root, or a .tar.gz/.zip of either) -> DST/<task>/ at --sr Hz."""
    from eval.resample import resample_tree

    for folder in resample_tree(src, dst, sr):
        click.echo(str(folder))


@tasks.command("speech-commands", cls=Command)
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--test-set", type=click.Path(exists=True, path_type=Path),
              help="The official speech_commands_test_set_v0.02 (folder or archive); replaces the testing-list clips.")
@click.option("--mode", default="full", show_default=True,
              help="Task name suffix: speech_commands-v0.0.2-<mode>. Use another name (e.g. small) for a subset.")
def speech_commands(src: Path, out: Path, test_set: Path | None, mode: str):
    """Raw Speech Commands v0.02 in SRC (folder or archive) -> OUT/speech_commands-v0.0.2-<mode>/ (HEAR recipe)."""
    from eval.speech_commands import build

    click.echo(str(build(src, out, test_set=test_set, mode=mode)))


@tasks.command(cls=Command)
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the .deb and its unpacked files [default: ~/.cache/hear_maeast/debian].")
def drums(out: Path, cache: Path | None):
    """Real drum hits from Debian's hydrogen-drumkits -> OUT/hydrogen_drums-v1.0-full/ (6 classes, 5 folds by kit)."""
    from eval.drums import build

    cache = cache or Path.home() / ".cache" / "hear_maeast" / "debian"
    click.echo(str(build(out, cache)))


@click.command("eval", cls=Command)
@click.option("--tasks-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A tasks root (one folder per task) or a single task folder.")
@click.option("--model", "model_path", default="", help="Checkpoint (.safetensors) for the module; default weights if empty.")
@click.option("--model-options", default="{}",
              help=f"JSON object passed to load_model as keyword arguments, e.g. '{MODEL_OPTIONS_EXAMPLE}' "
                   "(embeddings of the 4th encoder block).")
@click.option("--module", default="hear_maeast", show_default=True, help="Any HEAR module importable by name.")
@click.option("--grid", default="default", show_default=True, type=click.Choice(["default", "fast", "faster"]),
              help="heareval's hyper-parameter grid; fast is what a CPU or CI run wants.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="RESULTS folder.")
@click.option("--name", default=None, help="Results folder name for this model (default: module-checkpoint-options).")
@click.option("--task", "only", multiple=True, help="Only this task folder name (repeatable).")
@click.option("--replace-stale", is_flag=True,
              help="When OUT/<name> holds results of another model or of other weights (e.g. a re-trained "
                   "checkpoint), delete them and score this model there; refused otherwise.")
def eval_cmd(tasks_dir, model_path, model_options, module, grid, out, name, only, replace_stale):
    """Embed every task with a HEAR module and score it with heareval's predictions runner.

    Results go to OUT/<model-name>/<task>/, keyed to the sha256 of the weights; a re-run of the same model resumes.
    Exits 1 when any task failed (after the others).
    """
    from eval.runner import run_eval

    options = parse_model_options(model_options)
    if model_path and not Path(model_path).is_file():
        raise BadInput(f"--model {model_path} does not exist or is not a file")
    run_eval(tasks_dir, out, module=module, model_path=model_path, model_options=options, grid=grid, name=name,
             only=only, replace_stale=replace_stale)


@click.command("probe", cls=Command)
@click.option("--tasks-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A tasks root (one folder per task) or a single task folder.")
@click.option("--probe", "probes", multiple=True, default=PROBES, show_default=True, type=click.Choice(PROBES),
              help="Probe to run (repeatable).")
@click.option("--model", "model_path", default="", help="Checkpoint (.safetensors) for the module; default weights if empty.")
@click.option("--model-options", default="{}", help=f"JSON object passed to load_model, e.g. '{MODEL_OPTIONS_EXAMPLE}'.")
@click.option("--module", default="hear_maeast", show_default=True, help="Any HEAR module importable by name.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="RESULTS folder (the one `hear-maeast eval --out` wrote: its embeddings are reused).")
@click.option("--name", default=None, help="The model's results folder name (default: as `eval` names it).")
@click.option("--task", "only", multiple=True, help="Only this task folder name (repeatable).")
@click.option("--grid", default="fast", show_default=True, type=click.Choice(["default", "fast", "faster"]),
              help="heareval's grid, for the mlp probe.")
@click.option("--seed", default=0, show_default=True, help="Seed of the linear and mlp probes (heareval's own is 42).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda when present, else cpu].")
@click.option("--replace-stale", is_flag=True, help="Replace results of another model or of other weights.")
def probe(tasks_dir, probes, model_path, model_options, module, out, name, only, grid, seed, device, replace_stale):
    """Score frozen embeddings with linear (EVAR), knn (X-ARES) and mlp (heareval's protocol, no TensorFlow) probes.

    Reads the embeddings `hear-maeast eval` wrote to OUT/<model>/ when they are this model's and of these task
    files, else computes them there with eval's own code; writes OUT/<model>-<probe>/<task>/ in heareval's layout
    (`table` shows a row per probe, `table --against` pairs them). Exits 1 when any task failed (after the others).
    """
    from eval.probes.run import run_probes

    options = parse_model_options(model_options)
    if model_path and not Path(model_path).is_file():
        raise BadInput(f"--model {model_path} does not exist or is not a file")
    run_probes(tasks_dir, out, tuple(dict.fromkeys(probes)), module=module, model_path=model_path,
               model_options=options, name=name, only=only, grid=grid, seed=seed, device=device,
               replace_stale=replace_stale)


@click.command(cls=Command)
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Markdown file to write.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="CSV file to write.")
@click.option("--plot", "png", type=click.Path(dir_okay=False, path_type=Path), help="PNG bar chart to write.")
@click.option("--against", metavar="MODEL", help="Also compare every other model with this one clip by clip "
              "(same test clips, exact McNemar test; accuracy tasks), in a second Markdown table.")
def table(results, output, csv_path, png, against):
    """Leaderboard table from RESULTS folders (RESULTS or RESULTS/<model>); printed as Markdown.

    Rows: models, the reference rows (best published, HEAR 2021 best, MSM-MAE paper; official tasks only, sources
    in eval/references.py), then each task's clips, chance and majority
    levels. --against MODEL: which differences with MODEL the test clips can tell apart from luck.
    """
    from eval.table import write_table

    click.echo(write_table(list(results), output, csv_path, png, against), nl=False)


# `hear-maeast finetune` (eval/finetune.py); errors are hear_maeast.errors' typed ones, printed as one line; every
# default is FinetuneConfig's (eval/finetune_config.py)
FT = FinetuneConfig()


def _ft(flag: str, help: str | None = None, **kwargs):
    """A `finetune` option defaulting to FinetuneConfig's field of the same name (shown when it is a value)."""
    default = getattr(FT, flag.split("/")[0].lstrip("-").replace("-", "_"))
    shown = default is not None and default is not False
    return click.option(flag, default=default, show_default=shown, help=help, **kwargs)


@click.command("finetune", cls=Command)
@click.option("--tasks-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A tasks root (one folder per task) or a single task folder; event tasks are skipped (n/a).")
@click.option("--model", "model_path", default="", help="Checkpoint (.safetensors or official); default weights if empty.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="RESULTS folder.")
@click.option("--name", default=None, help="Results folder name [default: <model>-finetuned]; -finetuned is appended.")
@click.option("--task", "only", multiple=True, help="Only this task folder name (repeatable).")
@_ft("--epochs", "Epochs per fold (at most: early stopping on valid).")
@_ft("--batch-size")
@_ft("--lr", "Peak learning rate (the head's; lower blocks get less).")
@_ft("--layer-decay", "Layer-wise lr decay (MAE/AudioMAE).")
@_ft("--head-lr-scale", "The head's lr over --lr (SSAST's head_lr).")
@_ft("--weight-decay", "AdamW's (not on biases, norms, tokens).")
@_ft("--warmup-epochs", "Linear warm-up, then cosine to 0.")
@_ft("--patience", "Stop after this many epochs without a better valid score; 0: never.")
@_ft("--mixup", "Probability that an example is mixed (AST/SSAST; not a Beta alpha); lambda ~ Beta(10, 10).")
@_ft("--specaug/--no-specaug", "SpecAugment time and frequency masks.")
@_ft("--freqm", "Widest frequency mask, mel bins [default: 3/16 of the bins].", type=int)
@_ft("--timem", "Widest time mask, frames [default: 3/16 of the crop].", type=int)
@_ft("--layer", "Encoder block (1-based) to pool and tune up to; -1: last.")
@_ft("--device", "cpu, cuda, cuda:1 ... [default: cuda when present, else cpu].")
@_ft("--precision", "[default: bf16 on CUDA, fp32 elsewhere].", type=click.Choice(["fp32", "bf16"]))
@_ft("--seed", "The same seed gives the same scores on CPU.")
@_ft("--save-models", "Also write each fold's best model: <fold>.model/.head.safetensors.", is_flag=True)
@click.option("--replace-stale", is_flag=True,
              help="When OUT/<name> holds fine-tuning results of other weights or options (e.g. after the default "
                   "weights changed), delete them and fine-tune this model there; refused otherwise.")
def finetune(tasks_dir, model_path, out, name, only, replace_stale, **options):
    """Fine-tune the encoder + a linear head on every scene task (the MAE-AST paper's protocol) and score it with
    heareval's splits and metrics: RESULTS/<model>-finetuned/<task>/test.predicted-scores.json, read by `table`.

    A re-run resumes per task, fold and epoch. Exits 1 when any task failed (after the others). docs/finetuning.md.
    """
    from eval.finetune import run_finetune

    run_finetune(tasks_dir, out, model_path=model_path, name=name, only=only, tc=FinetuneConfig(**options),
                 replace_stale=replace_stale)
