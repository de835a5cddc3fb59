"""`hear-maeast pretrain`, `hear-maeast features` and `hear-maeast reconstruct` (also `python -m pretrain` /
`torchrun -m pretrain`). Errors become one line and an exit code (hear_maeast.errors)."""

from __future__ import annotations

import os
import shlex
from dataclasses import MISSING, fields

import click

from hear_maeast.config import CHOICES as MODEL_CHOICES
from hear_maeast.config import PRESETS
from hear_maeast.errors import BadInput, Command
from pretrain.config import PRECISIONS, TrainConfig
from pretrain.recipes import COMPILE_MIN_STEPS, CPU_BATCH, defaults

SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}
MASK_KINDS, OBJECTIVES = MODEL_CHOICES["mask_kind"], MODEL_CHOICES["objective"]  # the model's vocabulary, one home


def command_line(ctx: click.Context, params: dict) -> str:
    """The command with every option spelt out: a run's provenance (sys.argv may be a test runner's or torchrun's)."""
    words = ctx.command_path.split()
    for p in ctx.command.params:
        value = params.get(p.name)
        if value is None or getattr(p, "hidden", False):
            continue
        if isinstance(value, bool):
            words += [p.opts[0]] if value else p.secondary_opts[:1]
        elif isinstance(value, tuple):
            words += [p.opts[0], *map(str, value)]
        else:
            words += [p.opts[0], str(value)]
    return shlex.join(words)


DATA_HELP = ("A `hear-maeast features` store; a folder of MSM-MAE/M2D log-mel .npy files or of audio (wav/flac/ogg), "
             "any sub-folders; a .csv list with a file_name column (see --data-root); a fairseq .tsv manifest; or a "
             ".txt list of audio files. Audio is decoded on the fly by the loader workers.")


# `hear-maeast pretrain`: every default is TrainConfig's (pretrain/config.py)
TC_DEFAULTS = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}


def _tc(flag: str, help: str | None = None, **kwargs):
    """A `pretrain` option defaulting to TrainConfig's field of the same name."""
    return click.option(flag, default=TC_DEFAULTS[flag.split("/")[0].lstrip("-").replace("-", "_")], help=help, **kwargs)


@click.command(cls=Command, context_settings=SETTINGS)
@click.option("--preset", required=True, type=click.Choice(list(PRESETS)), help="Model preset (see `hear-maeast presets`).")
@click.option("--data", required=True, help=DATA_HELP)
@_tc("--data-root", type=click.Path(file_okay=False), help="Folder the file_name entries of a --data CSV are relative to [default: the CSV's folder].")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder: model.safetensors, train_state.pt, log.csv (locked while in use).")
@_tc("--steps", type=click.IntRange(min=0), help="Total optimiser updates (0: write the initialised model with the data's stats).")
@_tc("--epochs", type=click.FloatRange(min=0), help="Total passes over the data (instead of --steps).")
@_tc("--batch-size", type=click.IntRange(min=1), help=f"Clips per process per micro-batch [default: {CPU_BATCH} on CPU; on CUDA {defaults('cuda_batch')}].")
@_tc("--accum-steps", type=click.IntRange(min=1), help="Micro-batches per update (gradient accumulation).")
@_tc("--seed", type=int)
@_tc("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available).")
@_tc("--precision", type=click.Choice(PRECISIONS), help="Autocast dtype (fp16 uses a GradScaler; on CPU use fp32 or bf16, fp16 is ~20x slower there).")
@_tc("--compile/--no-compile", help=f"torch.compile the training step (about a minute of compilation first) [default: on for CUDA runs of >= {COMPILE_MIN_STEPS:,} steps, off otherwise].")
@_tc("--num-workers", type=click.IntRange(min=0), help="Loader processes per training process, reading, cropping and masking batches (0: in the training process) [default: min(8, cores per process - 1)].")
@_tc("--prefetch", type=click.IntRange(min=1), help="Micro-batches each loader worker prepares ahead.")
@_tc("--norm-stats", nargs=2, type=float, help="MEAN STD of the features [default: the store's, else from up to 10,000 clips].")
@_tc("--lr", type=float, help=f"Peak learning rate [default: {defaults('lr')}].")
@_tc("--weight-decay", type=float, help=f"[default: {defaults('weight_decay')}]")
@_tc("--clip-grad", type=float, help=f"Gradient norm clip, 0 = off [default: {defaults('clip_grad')}].")
@_tc("--schedule", type=click.Choice(["cosine", "poly", "constant"]), help=f"After warm-up [default: {defaults('schedule')}].")
@_tc("--warmup-steps", type=click.IntRange(min=0), help=f"Linear warm-up updates [default: {defaults('warmup_frac')}].")
@_tc("--warmup-epochs", type=click.FloatRange(min=0), help="Warm-up in epochs (instead of --warmup-steps).")
@_tc("--mask-ratio", type=click.FloatRange(0, 1, max_open=True), help="[default: the preset's, 0.75; it must mask at least one token]")
@_tc("--mask-kind", type=click.Choice(MASK_KINDS), help="[default: the preset's]")
@_tc("--objective", type=click.Choice(OBJECTIVES), help="[default: the preset's]")
@_tc("--norm-pix-loss/--no-norm-pix-loss", help="Per-patch normalised MSE targets [default: the preset's].")
@_tc("--save-every", type=click.IntRange(min=1), help="Write model and training state every N updates (and at the end).")
@_tc("--log-every", type=click.IntRange(min=1), help="Read the losses back from the device every N updates (log.csv still has every step).")
@_tc("--tensorboard", is_flag=True, help="Also log to RUN_DIR/tensorboard (needs the tensorboard package).")
@_tc("--resume", is_flag=True, help="Continue the run in --out exactly where its last checkpoint left off.")
@click.option("--cache", hidden=True, help="Removed: see `hear-maeast features`.")
@_tc("--dump-rank-params", is_flag=True, hidden=True)
def pretrain(**kwargs):
    """Pretrain a preset on log-mel files, a feature store or audio; the result loads with hear_maeast.load_model.

    Never pretrain on audio from a task you will evaluate on (e.g. a HEAR task's clips): the scores would be
    inflated. Runs on CPU, one GPU, or many under `torchrun --nproc-per-node N -m pretrain ...` (same flags).
    SIGTERM (as schedulers send before a kill) writes a checkpoint and exits 143; rerun with --resume.
    """
    from pretrain.train import train

    if kwargs.pop("cache") is not None:
        raise BadInput("--cache was replaced by a feature store: run `hear-maeast features AUDIO STORE --preset P` "
                       "once, then `hear-maeast pretrain --data STORE`")
    if kwargs["warmup_steps"] is not None and kwargs["warmup_epochs"] is not None:
        raise click.UsageError("give at most one of --warmup-steps and --warmup-epochs")
    if (kwargs["steps"] is None) == (kwargs["epochs"] is None):
        raise click.UsageError("give exactly one of --steps N or --epochs N")
    train(TrainConfig(**kwargs, command=command_line(click.get_current_context(), kwargs)))


@click.command(cls=Command, context_settings=SETTINGS)
@click.argument("audio", metavar="AUDIO_DIR_OR_LIST")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--preset", required=True, type=click.Choice(list(PRESETS)), help="Any preset with the front end to store (msm-mae: 80 log-mel bins; mae-ast: 128 fbank bins).")
@click.option("--workers", default=min(16, os.cpu_count() or 1), type=click.IntRange(min=0), help="Decoding processes (0: in this process) [default: the cores, at most 16].")
@click.option("--data-root", type=click.Path(file_okay=False), help="Folder the file_name entries of a CSV list are relative to [default: the CSV's folder].")
@click.option("--commit-every", default=1000, type=click.IntRange(min=1), hidden=True, help="Clips per commit (tests).")
def features(audio, out, preset, workers, data_root, commit_every):
    """Convert audio (a folder, a .txt or .csv list, or a fairseq .tsv manifest) once into a feature store OUT for
    `hear-maeast pretrain --data OUT`: float16 shards, a manifest and the data's normalisation statistics.

    Unreadable files are skipped and listed (OUT/skipped.txt); killed, the same command continues where it stopped.
    """
    from hear_maeast.config import get_preset
    from pretrain.features import build_store

    m = build_store(audio, out, get_preset(preset), workers, data_root, commit_every)
    for source, why in m["skipped_files"][:20]:
        click.echo(f"skipped unreadable file {source}: {why}", err=True)
    if len(m["skipped_files"]) > 20:
        click.echo(f"... and {len(m['skipped_files']) - 20} more (all listed in {out}/skipped.txt)", err=True)
    click.echo(f"{out}: {m['clips']} clips ({m.get('hours', 0):.2f} h) of {m['n_mels']} {m['frontend']} features, "
               f"{m['skipped']} unreadable file(s) skipped, norm_stats [{m.get('norm_mean', float('nan')):.4f}, "
               f"{m.get('norm_std', float('nan')):.4f}]")


@click.command(cls=Command, context_settings=SETTINGS)
@click.argument("clip", type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "model_path", default="", help="A hear_maeast .safetensors checkpoint [default: the bundled default weights].")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG: input, masked input, reconstruction.")
@click.option("--wav", type=click.Path(dir_okay=False), help="Also render the reconstruction to audio (Griffin-Lim; see above).")
@click.option("--mask-ratio", type=click.FloatRange(0, 1, max_open=True), help="[default: the model's]")
@click.option("--mask-kind", type=click.Choice(MASK_KINDS), help="[default: the model's]")
@click.option("--start", default=0.0, type=float, help="Seconds into the clip where the model's input window starts.")
@click.option("--seed", default=0, type=int)
def reconstruct(**kwargs):
    """The papers' qualitative view of one clip: input, masked input and the model's reconstruction, as one PNG.

    --wav inverts the reconstructed (normalised) spectrogram: undo the normalisation and the log, invert the mel
    filterbank (torchaudio InverseMelScale), then Griffin-Lim phase. For log-mel (MSM-MAE) front ends this is the
    front end's own filterbank. Kaldi fbank (MAE-AST) is approximated: Kaldi's mel banks (512-point FFT, 20 Hz -
    8 kHz) are inverted and pre-emphasis undone, but Griffin-Lim assumes a Hann window and centred frames
    (Kaldi: povey window, snipped edges), so expect a rougher sound.
    """
    from pretrain.reconstruct import reconstruct as run

    try:
        run(**kwargs)
    except (ValueError, TypeError) as e:  # bad checkpoint or audio: the message says which file and why
        raise BadInput(str(e)) from None
