"""The `hear-maeast` command line: the group, and the core package's own commands (presets, embed, convert).

Other subpackages own their commands (`pretrain/cli.py`, `eval/cli.py`); the group imports every subcommand lazily
(`module:attribute` in SUBCOMMANDS), so `hear-maeast presets` imports neither the training loop nor heareval, and
nothing here imports torch before a command needs it. Errors are one line and an exit code (hear_maeast.errors):
2 for a bad option, argument, input file or checkpoint, 1 for failed work; `--debug` shows the traceback.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from pathlib import Path

import click

from hear_maeast import __version__
from hear_maeast.errors import Group
from hear_maeast.files import atomic_write, check_output
from hear_maeast.options import MODEL_OPTIONS_EXAMPLE, parse_model_options
from hear_maeast.provenance import file_sha256

# name -> "module:attribute" of a click.Command
SUBCOMMANDS = {
    "presets": "hear_maeast.cli:presets",
    "embed": "hear_maeast.cli:embed",
    "convert": "hear_maeast.cli:convert",
    "export": "hear_maeast.cli:export",
    "pretrain": "pretrain.cli:pretrain",
    "features": "pretrain.cli:features",
    "reconstruct": "pretrain.cli:reconstruct",
    "tasks": "eval.cli:tasks",
    "eval": "eval.cli:eval_cmd",
    "table": "eval.cli:table",
    "probe": "eval.cli:probe",
    "finetune": "eval.cli:finetune",
}


class LazyGroup(Group):
    """Subcommands imported on first use; errors become one line (hear_maeast.errors)."""

    def list_commands(self, ctx):
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx, name):
        target = SUBCOMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


# torch.cuda imports pynvml (installed for heareval) and warns about it on every start; it is not ours to fix
warnings.filterwarnings("ignore", message="The pynvml package is deprecated", category=FutureWarning)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hear-maeast")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error instead of one line.")
def main(debug: bool):
    """MSM-MAE and MAE-AST: pretrain, embed, and evaluate on HEAR."""
    if debug:
        os.environ["HEAR_MAEAST_DEBUG"] = "1"  # seen by hear_maeast.errors, here and in child processes


# ---- option parsing shared by the core commands ------------------------------------------------------
def parse_device(value: str | None):
    """'cpu', 'cuda', 'cuda:1', 'mps' ... -> torch.device, or BadInput saying what this machine has."""
    if value is None:
        return None
    from hear_maeast.device import resolve_device

    return resolve_device(value, "--device")


# ---- presets -----------------------------------------------------------------------------------------
@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def presets(as_json):
    """List every preset: family, parameters (decoder included), input length, embedding sizes, hop."""
    from hear_maeast.config import PRESETS
    from hear_maeast.model import MaskedAutoencoder

    rows = []
    for name, cfg in PRESETS.items():
        model = MaskedAutoencoder(cfg)
        rows.append({
            "name": name, "family": cfg.family, "params": sum(p.numel() for p in model.parameters()),
            "encoder_params": sum(p.numel() for n, p in model.named_parameters()
                                  if not n.startswith("decoder") and n != "mask_token"),
            "input_frames": cfg.input_frames, "patch_size": list(cfg.patch_size), "dim": cfg.dim, "depth": cfg.depth,
            "scene_embedding_size": cfg.scene_embedding_size, "timestamp_embedding_size": cfg.timestamp_embedding_size,
            "hop_ms": cfg.hop_ms,
        })
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(f"{'preset':28} {'family':8} {'params':>8} {'frames':>6} {'patch':>7} {'scene':>6} {'stamp':>6} {'hop ms':>6}")
    for r in rows:
        patch = "x".join(map(str, r["patch_size"]))
        click.echo(f"{r['name']:28} {r['family']:8} {r['params'] / 1e6:7.1f}M {r['input_frames']:6d} {patch:>7} "
                   f"{r['scene_embedding_size']:6d} {r['timestamp_embedding_size']:6d} {r['hop_ms']:6.0f}")


# ---- embed -------------------------------------------------------------------------------------------
@click.command()
@click.argument("audio", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "model_path", default="", help="Checkpoint (.safetensors or official); default: bundled weights.")
@click.option("--model-options", default="{}", help=f"JSON object of load_model options, e.g. '{MODEL_OPTIONS_EXAMPLE}'.")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: cpu, or the model options' device).")
@click.option("--timestamps", is_flag=True, help="Also write timestamp embeddings (ragged: one array per file).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .npz file.")
def embed(audio, model_path, model_options, device, timestamps, output):
    """Embed audio files (wav/flac/ogg, any sample rate, stereo mixed down) into an .npz file.

    Keys: `files`, `scene` [n, D]; with --timestamps also `timestamp_embeddings_<i>` [T_i, D'] and
    `timestamps_<i>` [T_i] (ms) for file i. The file is written atomically, once every input is embedded.
    """
    import numpy as np
    from tqdm import tqdm

    import hear_maeast
    from hear_maeast.audio import load_audio

    check_output(output, audio)  # before any work: never replace an input, a pipe or a device
    options = parse_model_options(model_options)
    if device is not None:
        options["device"] = str(parse_device(device))
    model = hear_maeast.load_model(model_path, **options)
    arrays, scenes = {}, []
    for i, path in enumerate(tqdm(audio, desc="embedding", unit="file")):
        wav = load_audio(path)[None].to(model.device)  # [1, n_samples] at 16 kHz
        scenes.append(hear_maeast.get_scene_embeddings(wav, model)[0].cpu().numpy())
        if timestamps:
            emb, ts = hear_maeast.get_timestamp_embeddings(wav, model)
            arrays[f"timestamp_embeddings_{i}"] = emb[0].cpu().numpy()
            arrays[f"timestamps_{i}"] = ts[0].cpu().numpy()
    scene = np.stack(scenes)  # [n, D]

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the temporary name
            np.savez(f, files=np.array([str(p) for p in audio]), scene=scene, **arrays)

    atomic_write(output, write, inputs=audio)
    click.echo(f"wrote {output}: {len(audio)} file(s), scene embeddings {scene.shape}")


# ---- convert -----------------------------------------------------------------------------------------
@click.command()
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--trust-pickle", is_flag=True,
              help="Unpickle a fairseq (MAE-AST) file, which can run code: only for files you trust.")
@click.option("--input-frames", type=click.IntRange(min=1), default=None,
              help="MSM-MAE: input length T in frames (default: from the tensors / folder name). "
                   "MAE-AST: frames per encoder chunk (default 1024).")
@click.option("--patch-size", default=None, metavar="PHxPW", help="Patch size as mel bins x frames, e.g. 16x16.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Storage type of the weights (float16 halves the file; they load as float32).")
def convert(src: Path, dst: Path, trust_pickle: bool, input_frames: int | None, patch_size: str | None, dtype: str):
    """Convert the authors' checkpoint SRC into DST.safetensors (loads with no pickle at all).

    The authors' licences apply to the result: it is for your own evaluation, not for redistribution.
    SRC may also be a hear_maeast checkpoint, e.g. to store it in float16; its provenance is kept.
    """
    import torch

    from hear_maeast.checkpoint import save_checkpoint
    from hear_maeast.loading import load_any

    if dst.suffix != ".safetensors":
        raise click.BadParameter(f"{dst}: the destination must end in .safetensors", param_hint="DST")
    check_output(dst, [src])
    model = load_any(src, trust_pickle=trust_pickle, input_frames=input_frames, patch_size=patch_size)
    provenance = dict(getattr(model, "provenance", {}) or {})
    provenance.update({"source_sha256": file_sha256(src), "converted_by": "hear-maeast convert " + " ".join(sys.argv[2:])})
    provenance.setdefault("command", provenance["converted_by"])
    save_checkpoint(model, dst, provenance=provenance, dtype=torch.float16 if dtype == "float16" else None)
    cfg = model.cfg
    click.echo(f"wrote {dst}: {cfg.name} ({cfg.family}, {cfg.n_mels}x{cfg.input_frames} frames, patches "
               f"{cfg.patch_size[0]}x{cfg.patch_size[1]}, embeddings {cfg.timestamp_embedding_size}-d every "
               f"{cfg.hop_ms:g} ms)")
    if "licence" in provenance:
        click.echo(f"licence: {provenance['licence']}")


# ---- export ------------------------------------------------------------------------------------------
@click.command()
@click.argument("ckpt", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--onnx", "onnx_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output .onnx file: the per-chunk encoder; its front end goes beside it as OUT.frontend.onnx "
                   "(docs/harnesses.md, \"ONNX\").")
@click.option("--layer", type=int, default=-1, show_default=True, help="Encoder block to export (1-based; -1 = last).")
def export(ckpt: Path | None, onnx_path: Path, layer: int):
    """Export checkpoint CKPT (default: the bundled weights) to ONNX: the per-chunk encoder and the front end, which
    hear_maeast.onnx_runtime runs without torch (needs `pip install 'hear_maeast[onnx]'`)."""
    import hear_maeast
    from hear_maeast.adapters.onnx import export_onnx
    from hear_maeast.api import DEFAULT_WEIGHTS
    from hear_maeast.onnx_runtime import frontend_path

    source = ckpt or DEFAULT_WEIGHTS
    for out in (onnx_path, frontend_path(onnx_path)):
        check_output(out, [source])  # before the export's work; export_onnx checks again as it writes
    model = hear_maeast.load_model(str(ckpt or ""), layer=layer)
    export_onnx(model, onnx_path)
    cfg = model.cfg
    click.echo(f"wrote {onnx_path}: {cfg.name} layer {layer}, spec [batch, {cfg.n_mels}, "
               f"{cfg.input_frames if cfg.fixed_length else 'frames'}] -> tokens [batch, tokens, {cfg.dim}]")
    click.echo(f"wrote {frontend_path(onnx_path)}: wav [batch, samples] -> spec [batch, {cfg.n_mels}, frames]")


if __name__ == "__main__":
    main()
