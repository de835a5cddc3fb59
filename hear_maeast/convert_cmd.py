"""`hear-maeast convert`: an official MSM-MAE / MAE-AST checkpoint -> a pickle-free hear_maeast safetensors file."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import click
import torch

from hear_maeast.checkpoint import CheckpointError, save_checkpoint


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@click.command()
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--trust-pickle", is_flag=True,
              help="Unpickle a fairseq (MAE-AST) file, which can run code: only for files you trust.")
@click.option("--input-frames", type=int, default=None,
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
    from hear_maeast.loading import load_any

    if dst.suffix != ".safetensors":
        raise click.BadParameter(f"{dst}: the destination must end in .safetensors", param_hint="DST")
    try:
        model = load_any(src, trust_pickle=trust_pickle, input_frames=input_frames, patch_size=patch_size)
    except CheckpointError as e:
        raise click.ClickException(str(e)) from None
    provenance = dict(getattr(model, "provenance", {}) or {})
    provenance.update({"source_sha256": _sha256(src), "converted_by": "hear-maeast convert " + " ".join(sys.argv[2:])})
    provenance.setdefault("command", provenance["converted_by"])
    save_checkpoint(model, dst, provenance=provenance, dtype=torch.float16 if dtype == "float16" else None)
    cfg = model.cfg
    click.echo(f"wrote {dst}: {cfg.name} ({cfg.family}, {cfg.n_mels}x{cfg.input_frames} frames, patches "
               f"{cfg.patch_size[0]}x{cfg.patch_size[1]}, embeddings {cfg.timestamp_embedding_size}-d every "
               f"{cfg.hop_ms:g} ms)")
    if "licence" in provenance:
        click.echo(f"licence: {provenance['licence']}")
