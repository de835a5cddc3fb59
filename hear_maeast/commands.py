"""`hear-maeast presets` and `hear-maeast embed`."""

from __future__ import annotations

import json
from pathlib import Path

import click


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
            "encoder_params": sum(p.numel() for n, p in model.named_parameters() if not n.startswith("decoder") and n != "mask_token"),
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


@click.command()
@click.argument("audio", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "model_path", default="", help="Checkpoint (.safetensors or official); default: bundled weights.")
@click.option("--model-options", default="{}", help='JSON model options, e.g. \'{"layer": 6}\'.')
@click.option("--timestamps", is_flag=True, help="Also write timestamp embeddings (ragged: one array per file).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .npz file.")
def embed(audio, model_path, model_options, timestamps, output):
    """Embed audio files (wav/flac/ogg, any sample rate, stereo mixed down) into an .npz file.

    Keys: `files`, `scene` [n, D]; with --timestamps also `timestamp_embeddings_<i>` [T_i, D'] and
    `timestamps_<i>` [T_i] (ms) for file i.
    """
    import numpy as np
    from tqdm import tqdm

    import hear_maeast
    from hear_maeast.audio import load_audio

    try:
        options = json.loads(model_options)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not valid JSON: {e}", param_hint="--model-options")
    try:
        model = hear_maeast.load_model(model_path, **options)
    except (ValueError, TypeError) as e:
        raise click.ClickException(str(e))
    arrays, scenes = {}, []
    for i, path in enumerate(tqdm(audio, desc="embedding", unit="file")):
        try:
            wav = load_audio(path)[None].to(model.device)
        except ValueError as e:
            raise click.ClickException(str(e))
        scenes.append(hear_maeast.get_scene_embeddings(wav, model)[0].cpu().numpy())
        if timestamps:
            emb, ts = hear_maeast.get_timestamp_embeddings(wav, model)
            arrays[f"timestamp_embeddings_{i}"] = emb[0].cpu().numpy()
            arrays[f"timestamps_{i}"] = ts[0].cpu().numpy()
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez(output, files=np.array([str(p) for p in audio]), scene=np.stack(scenes), **arrays)
    click.echo(f"wrote {output}: {len(audio)} file(s), scene embeddings {np.stack(scenes).shape}")
