"""The HEAR API without torch: exported graphs (`hear-maeast export [CKPT] --onnx OUT.onnx`) run by onnxruntime, with
numpy around them. Nothing here imports torch, so it runs where torch is not installed.

    from hear_maeast import onnx_runtime as hear
    model = hear.load_model("model.onnx")                      # and model.frontend.onnx beside it
    scene = hear.get_scene_embeddings(audio, model)            # audio: float32 numpy [n_sounds, n_samples], 16 kHz
    emb, ts = hear.get_timestamp_embeddings(audio, model)      # [n, K, D], [n, K] ms

    python -m hear_maeast.onnx_runtime model.onnx a.wav b.wav -o out.npz [--timestamps] [--threads N]

Two graphs. The front end (OUT.frontend.onnx): a waveform segment `wav` [B, S], whose edges are already reflected or
padded (hear_rules.frame_window), -> the normalised spectrogram `spec` [B, F, 1 + (S - 400) // 160], every frame's
spectrum one linear map (a strided Conv1d). The encoder (OUT.onnx, as `load_onnx` reads it): a chunk `spec` [B, F,
T] -> `tokens` [B, N, D]. Between them, the torch API's rules from hear_rules: the same segments of SEGMENT_CHUNKS
chunks (working memory bounded on long clips), chunks, shifted passes, tails, pooling and timestamps.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from hear_maeast import hear_rules
from hear_maeast.config import ModelConfig
from hear_maeast.errors import BadInput, CheckpointError, CheckpointNotFound, debug_enabled, describe
from hear_maeast.files import atomic_write, check_output, open_regular
from hear_maeast.timing import SAMPLE_RATE

META_CONFIG, META_LAYER, META_SOURCE = "hear_maeast/config", "hear_maeast/layer", "hear_maeast/source"
META_PAIR = "hear_maeast/pair"  # the same id in an encoder and its front end: a hash of the weights and the layer
FRONTEND_SUFFIX = ".frontend.onnx"
FRONTEND_FIELDS = ("frontend", "n_mels", "norm_mean", "norm_std", "norm_scale")  # what the front end computes from
AGAIN = "export it again with `hear-maeast export [CKPT] --onnx OUT.onnx`"


def frontend_path(encoder) -> Path:
    """The front-end graph beside an encoder graph: model.onnx -> model.frontend.onnx."""
    encoder = Path(encoder)
    return encoder.with_name((encoder.name[:-5] if encoder.name.endswith(".onnx") else encoder.name) + FRONTEND_SUFFIX)


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise BadInput(f"onnxruntime is not installed ({e}); install it with: pip install onnxruntime (or "
                       "'hear_maeast[onnx]' -c constraints.txt)") from e
    return onnxruntime


def open_session(path, threads: int | None = None):
    """An onnxruntime CPU session of `path` (a regular file), or CheckpointError naming it."""
    ort, path = _onnxruntime(), Path(path)
    if not path.exists():
        raise CheckpointNotFound(f"ONNX file not found: {path}")
    os.close(open_regular(path))  # a pipe, a device or a folder: refused before onnxruntime reads a byte
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    # each session has its own thread pool; idle workers spinning in one (the front end's) took the cores the other
    # (the encoder's) needed: 2 threads, 10 s, default weights: scene 0.096 s spinning vs 0.035 s not (2-core CPU)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
        raise CheckpointError(f"{path}: not a readable ONNX file ({' '.join(str(e).split())[:200]}); {AGAIN}") from e


def read_config(session, path) -> tuple[ModelConfig, dict]:
    """(configuration, metadata) of a graph of ours, or CheckpointError naming it."""
    meta = session.get_modelmeta().custom_metadata_map
    if META_CONFIG not in meta:
        raise CheckpointError(f"{path}: an ONNX graph without hear_maeast metadata; {AGAIN}")
    try:
        return ModelConfig.from_json(meta[META_CONFIG]), meta
    except ValueError as e:  # JSON or a configuration that does not parse (BadInput is a ValueError)
        raise CheckpointError(f"{path}: its hear_maeast metadata is damaged ({' '.join(str(e).split())[:200]}); "
                              f"{AGAIN}") from None


def open_encoder(path, threads: int | None = None):
    """(session, cfg, exported layer, metadata) of a per-chunk encoder graph, checked against its metadata."""
    session = open_session(path, threads)
    cfg, meta = read_config(session, path)
    try:
        layer = int(meta.get(META_LAYER, ""))
    except ValueError:
        raise CheckpointError(f"{path}: its hear_maeast metadata is damaged (layer {meta.get(META_LAYER)!r}); "
                              f"{AGAIN}") from None
    if not 1 <= layer <= cfg.depth:
        raise CheckpointError(f"{path}: its metadata names layer {layer} of a {cfg.depth}-block model; {AGAIN}")
    check_encoder(session, cfg, path)
    return session, cfg, layer, meta


def _io(session) -> tuple[list, list]:
    return ([(i.name, i.shape) for i in session.get_inputs()], [(o.name, o.shape) for o in session.get_outputs()])


def _run_once(session, feeds: dict, cfg: ModelConfig, path, what: str) -> np.ndarray:
    """The graph's one output on `feeds` (one chunk or one frame of `cfg`), or CheckpointError naming the file."""
    (name, x), = feeds.items()
    try:
        (out,) = session.run(None, feeds)
    except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
        raise CheckpointError(f"{path}: the graph does not run on {what} of {cfg.name} ({name} {list(x.shape)}: "
                              f"{' '.join(str(e).split())[:200]}); {AGAIN}") from None
    return out


def check_encoder(session, cfg: ModelConfig, path) -> None:
    """The graph is the per-chunk encoder of `cfg`: spec [B, n_mels, T] -> tokens [B, N, dim], and one chunk of the
    smallest length it takes gives the token count `cfg` implies (a graph of another configuration, or one whose
    metadata was copied from another export, fails here)."""
    ins, outs = _io(session)
    if [i[0] for i in ins] != ["spec"] or [o[0] for o in outs] != ["tokens"] or len(ins[0][1]) != 3 \
            or len(outs[0][1]) != 3:
        raise CheckpointError(f"{path}: not a hear_maeast per-chunk encoder (inputs {ins}, outputs {outs}); {AGAIN}")
    if ins[0][1][1] != cfg.n_mels or outs[0][1][2] != cfg.dim:
        raise CheckpointError(f"{path}: the graph takes {ins[0][1][1]} mel bins and gives {outs[0][1][2]}-d tokens, "
                              f"but its metadata describes {cfg.name} ({cfg.n_mels} bins, {cfg.dim}-d): the metadata "
                              f"is another model's; {AGAIN}")
    pw = cfg.patch_size[1]
    frames = cfg.input_frames if cfg.fixed_length else pw  # one chunk, or one token of time
    spec = np.zeros((1, cfg.n_mels, frames), np.float32)
    tokens = _run_once(session, {"spec": spec}, cfg, path, "one chunk")
    expected = (1, cfg.grid[0] * (frames // pw), cfg.dim)
    if tokens.shape != expected or not np.isfinite(tokens).all():
        raise CheckpointError(f"{path}: one chunk gives tokens {tokens.shape}, but {cfg.name} gives {expected} "
                              f"(finite): the graph and its metadata are of different models; {AGAIN}")


def open_frontend(path, encoder, cfg: ModelConfig, pair: str | None, threads: int | None = None):
    """The front-end session of the encoder graph `encoder` (cfg, pair id): refused in one line when it is missing,
    another model's (pair id or front-end settings) or not a front end of `cfg`."""
    if not Path(path).exists():
        raise CheckpointNotFound(f"{path}: the front-end graph of {encoder} is missing (export writes both files); "
                                 f"keep them together, or {AGAIN}")
    session = open_session(path, threads)
    own, meta = read_config(session, path)
    if pair is None:
        raise CheckpointError(f"{encoder}: exported without a front end (an older export); {AGAIN}")
    if meta.get(META_PAIR) != pair or any(getattr(own, f) != getattr(cfg, f) for f in FRONTEND_FIELDS):
        raise CheckpointError(f"{path}: the front end of another export ({own.name}, pair {meta.get(META_PAIR)}) than "
                              f"the encoder {encoder} ({cfg.name}, pair {pair}); use the two files one export wrote, "
                              f"or {AGAIN}")
    ins, outs = _io(session)
    if [i[0] for i in ins] != ["wav"] or [o[0] for o in outs] != ["spec"]:
        raise CheckpointError(f"{path}: not a hear_maeast front end (inputs {ins}, outputs {outs}); {AGAIN}")
    wav = np.zeros((1, hear_rules.min_samples("fbank")), np.float32)  # one window's samples: one frame
    spec = _run_once(session, {"wav": wav}, cfg, path, "one frame")
    if spec.shape != (1, cfg.n_mels, 1) or not np.isfinite(spec).all():
        raise CheckpointError(f"{path}: one frame gives {spec.shape}, but {cfg.name} gives (1, {cfg.n_mels}, 1) "
                              f"(finite); {AGAIN}")
    return session


class OnnxRuntimeModel:
    """What the HEAR calls read: the configuration, the exported layer, the two sessions, the HEAR attributes."""

    sample_rate = SAMPLE_RATE

    def __init__(self, cfg: ModelConfig, encoder, frontend, layer: int, source: str, max_batch: int):
        self.cfg, self.encoder, self.frontend, self.layer = cfg, encoder, frontend, layer
        self.source, self.max_batch = source, max_batch
        self.scene_embedding_size = cfg.scene_embedding_size
        self.timestamp_embedding_size = cfg.timestamp_embedding_size


def load_model(model_file_path, threads: int | None = None, max_batch: int = hear_rules.MAX_BATCH) -> OnnxRuntimeModel:
    """An exported encoder graph and the front end beside it (frontend_path), both checked against their metadata
    and each other. threads: onnxruntime's intra-op threads (default: its own choice); max_batch: chunks per run."""
    if not model_file_path:
        raise BadInput("the ONNX runtime has no default weights: export them first with `hear-maeast export --onnx "
                       "OUT.onnx` and pass OUT.onnx")
    for name, value in (("max_batch", max_batch), ("threads", 1 if threads is None else threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadInput(f"{name}={value!r}: expected a positive int")
    encoder, cfg, layer, meta = open_encoder(model_file_path, threads)
    frontend = open_frontend(frontend_path(model_file_path), model_file_path, cfg, meta.get(META_PAIR), threads)
    return OnnxRuntimeModel(cfg, encoder, frontend, layer, str(model_file_path), max_batch)


# ---- the front end and the encoder -----------------------------------------------------------------------
def features(model: OnnxRuntimeModel, audio: np.ndarray, start: int, stop: int) -> np.ndarray:
    """audio [B, N] -> normalised frames [start, stop) [B, F, stop - start], from the samples they read only."""
    front = model.cfg.frontend
    short = hear_rules.min_samples(front) - audio.shape[1]
    if short > 0:  # shorter clips get zeros, as the torch front ends pad them
        audio = np.pad(audio, ((0, 0), (0, short)))
    n = audio.shape[1]
    lo, hi = hear_rules.frame_window(front, start, stop)
    left, right = hear_rules.reflected(lo, hi, n)  # empty but at log-mel's clip edges
    wav = np.concatenate([audio[:, left], audio[:, max(lo, 0) : min(hi, n)], audio[:, right]], axis=1)  # [B, hi-lo]
    (spec,) = model.frontend.run(["spec"], {"wav": wav})
    return spec


def _encode_batched(model: OnnxRuntimeModel, chunks: np.ndarray) -> np.ndarray:
    """chunks [M, F, L] -> columns [M, L / pw, Fg * D], model.max_batch chunks per run."""
    parts = [model.encoder.run(["tokens"], {"spec": np.ascontiguousarray(chunks[i : i + model.max_batch])})[0]
             for i in range(0, len(chunks), model.max_batch)]
    return hear_rules.tokens_to_columns(np.concatenate(parts), model.cfg)


def _encode_columns(model: OnnxRuntimeModel, spec: np.ndarray) -> np.ndarray:
    """Chunked encoding: spec [M, F, T] (T a multiple of the patch width) -> columns [M, T / pw, Fg * D]."""
    chunk = model.cfg.input_frames
    m, f, t = spec.shape
    n_full = t // chunk
    parts = []
    if n_full:
        full = spec[..., : n_full * chunk].reshape(m, f, n_full, chunk).swapaxes(1, 2).reshape(m * n_full, f, chunk)
        cols = _encode_batched(model, full)  # [M*C, L/pw, Dc]
        parts.append(cols.reshape(m, n_full * cols.shape[1], cols.shape[2]))  # [M, C*L/pw, Dc]
    if t % chunk:
        parts.append(_encode_batched(model, spec[..., n_full * chunk :]))  # the shorter last chunk (1-D positions)
    return np.concatenate(parts, axis=1)


# ---- passes, segments, the HEAR calls (hear_maeast.api's, in numpy) --------------------------------------
def _padded_passes(model: OnnxRuntimeModel, spec: np.ndarray, shifts: int, length: int) -> np.ndarray:
    """Fixed grids (MSM-MAE): spec [B, F, >= length] -> [B, S * n_cols, Dc], every pass padded to whole chunks."""
    b, f, _ = spec.shape
    step = model.cfg.patch_size[1] // shifts
    span, frames = hear_rules.padded_frames(model.cfg, length, shifts)
    padded = np.pad(spec, ((0, 0), (0, 0), (0, frames - spec.shape[-1])))  # zeros = the normalised mean
    views = np.stack([padded[..., s * step : s * step + span] for s in range(shifts)], axis=1)  # [B, S, F, span]
    cols = _encode_columns(model, views.reshape(b * shifts, f, span))  # [B*S, n_cols, Dc]
    return hear_rules.interleave(cols.reshape(b, shifts, *cols.shape[1:]))


def _whole_token_passes(model: OnnxRuntimeModel, spec: np.ndarray, shifts: int, length: int) -> np.ndarray:
    """1-D positions (MAE-AST): spec [B, F, A >= length] -> [B, K, Dc], whole tokens only, none padded."""
    b, f, _ = spec.shape
    pw = model.cfg.patch_size[1]
    step = pw // shifts
    counts = hear_rules.token_counts(model.cfg, shifts, length, spec.shape[-1])
    cols = np.zeros((b, shifts, counts[0], model.cfg.timestamp_embedding_size), np.float32)  # [B, S, n_0, Dc]
    for n in sorted(set(counts) - {0}):
        group = [s for s in range(shifts) if counts[s] == n]
        views = np.stack([spec[..., s * step : s * step + n * pw] for s in group], axis=1)  # [B, Sg, F, n * pw]
        enc = _encode_columns(model, views.reshape(b * len(group), f, n * pw))  # [B*Sg, n, Dc]
        cols[:, group, :n] = enc.reshape(b, len(group), n, -1)
    return hear_rules.interleave(cols)[:, : sum(counts)]


def _columns(model: OnnxRuntimeModel, audio: np.ndarray, shifts: int) -> np.ndarray:
    """audio [B, N] -> interleaved columns [B, K, Dc], one segment of SEGMENT_CHUNKS chunks at a time."""
    cfg = model.cfg
    n_frames = hear_rules.num_frames(cfg.frontend, audio.shape[1])
    if not cfg.fixed_length and n_frames < cfg.patch_size[1]:  # under one token: padded to one, as the torch API
        pad = hear_rules.tail_rule(cfg, n_frames)[0] - n_frames
        return _encode_columns(model, np.pad(features(model, audio, 0, n_frames), ((0, 0), (0, 0), (0, pad))))
    passes = _padded_passes if cfg.fixed_length else _whole_token_passes
    parts = [passes(model, features(model, audio, start, read_stop), shifts, stop - start)
             for start, stop, read_stop in hear_rules.segments(cfg, n_frames, shifts)]
    return np.concatenate(parts, axis=1)


def _checked(audio, model) -> np.ndarray:
    if not isinstance(model, OnnxRuntimeModel):
        raise hear_rules.AudioTypeError(f"model must come from hear_maeast.onnx_runtime.load_model(), got "
                                        f"{type(model).__name__}")
    return hear_rules.check_audio_array(audio)


def _finite(x: np.ndarray, model: OnnxRuntimeModel) -> np.ndarray:
    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)  # [n]
    if not finite.all():
        raise hear_rules.nonfinite_embeddings_error(model.source, np.flatnonzero(~finite).tolist())
    return x


def get_timestamp_embeddings(audio: np.ndarray, model: OnnxRuntimeModel) -> tuple[np.ndarray, np.ndarray]:
    """audio float32 [n_sounds, n_samples] in [-1, 1] at 16 kHz -> (embeddings [n, K, D], timestamps [n, K] ms),
    float32, one every hop_ms, as hear_maeast.get_timestamp_embeddings gives them."""
    audio = _checked(audio, model)
    times = hear_rules.column_times(model.cfg, audio.shape[1], model.cfg.shifts)  # [K]
    emb = _finite(_columns(model, audio, model.cfg.shifts)[:, : len(times)], model)  # [n, K, Dc]
    return np.ascontiguousarray(emb, np.float32), np.broadcast_to(times, (len(audio), len(times))).copy()


def get_scene_embeddings(audio: np.ndarray, model: OnnxRuntimeModel) -> np.ndarray:
    """audio float32 [n_sounds, n_samples] -> [n, scene_embedding_size] float32, as hear_maeast.get_scene_embeddings."""
    audio = _checked(audio, model)
    cols = _finite(_columns(model, audio, 1)[:, : hear_rules.scene_columns(model.cfg, audio.shape[1])], model)
    return hear_rules.pool_scene(cols, model.cfg).astype(np.float32)  # [n, C, Fg*D] -> [n, D_scene]


# ---- wav files -----------------------------------------------------------------------------------------
def read_wav(path) -> np.ndarray:
    """A 16 kHz audio file as float32 mono [n_samples] (channels averaged): soundfile when installed (wav, flac,
    ogg), else Python's wave module (PCM wav). Another rate, no samples or an unreadable file: BadInput naming it."""
    try:
        from hear_maeast.audio import read_mono  # soundfile and soxr
    except ImportError:
        mono, rate = _read_pcm_wav(path)
    else:
        mono, rate = read_mono(path)
    if rate != SAMPLE_RATE:
        raise BadInput(f"{path}: audio at {rate} Hz; the ONNX runtime reads {SAMPLE_RATE} Hz only: resample it first "
                       f"(hear_maeast.audio.resample, or `sox {Path(path).name} -r {SAMPLE_RATE} out.wav`)")
    if len(mono) == 0:
        raise BadInput(f"{path}: the file holds no audio (0 samples); remove it or record something")
    return mono


def _read_pcm_wav(path) -> tuple[np.ndarray, int]:
    """Python's wave module: 8-, 16-, 24- or 32-bit PCM -> (float32 [n] in [-1, 1], rate)."""
    import wave

    with os.fdopen(open_regular(path), "rb") as f:
        try:
            with wave.open(f) as w:
                width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
                raw = w.readframes(w.getnframes())
        except (wave.Error, EOFError) as e:
            raise BadInput(f"{path}: cannot decode audio ({e}); expected a PCM wav file (install soundfile for "
                           "float wav, flac and ogg)") from None
    if width == 3:  # 24-bit little-endian: widen to int32
        raw = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        raw = np.pad(raw, ((0, 0), (1, 0))).tobytes()
        width = 4
    data = np.frombuffer(raw, {1: np.uint8, 2: "<i2", 4: "<i4"}[width]).astype(np.float64)
    data = (data - 128) / 128 if width == 1 else data / 2.0 ** (8 * width - 1)
    return data.reshape(-1, channels).mean(axis=1).astype(np.float32), rate


def embed_files(paths, model: OnnxRuntimeModel, timestamps: bool = False) -> dict:
    """Audio files -> the arrays `hear-maeast embed` writes: files, scene [n, D]; with timestamps, per file i
    timestamp_embeddings_<i> [T_i, D'] and timestamps_<i> [T_i] (ms). One file at a time."""
    arrays, scenes = {}, []
    for i, path in enumerate(paths):
        wav = read_wav(path)[None]  # [1, n_samples]
        scenes.append(get_scene_embeddings(wav, model)[0])
        if timestamps:
            emb, ts = get_timestamp_embeddings(wav, model)
            arrays[f"timestamp_embeddings_{i}"], arrays[f"timestamps_{i}"] = emb[0], ts[0]
    return dict(files=np.array([str(p) for p in paths]), scene=np.stack(scenes), **arrays)


def main(argv=None) -> int:
    """python -m hear_maeast.onnx_runtime MODEL.onnx AUDIO... -o OUT.npz: one line and exit 2 on bad input."""
    ap = argparse.ArgumentParser(prog="python -m hear_maeast.onnx_runtime", description=main.__doc__)
    ap.add_argument("model", help="The exported encoder graph (its .frontend.onnx beside it).")
    ap.add_argument("audio", nargs="+", help="16 kHz audio files (wav; flac and ogg with soundfile installed).")
    ap.add_argument("-o", "--output", required=True, help="Output .npz file (the keys of `hear-maeast embed`).")
    ap.add_argument("--timestamps", action="store_true", help="Also write timestamp embeddings.")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime's intra-op threads.")
    args = ap.parse_args(argv)
    try:
        check_output(args.output, [args.model, frontend_path(args.model), *args.audio])  # before any work
        model = load_model(args.model, threads=args.threads)
        arrays = embed_files(args.audio, model, args.timestamps)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the temporary name
                np.savez(f, **arrays)

        atomic_write(Path(args.output), write, inputs=[args.model, frontend_path(args.model), *args.audio])
    except Exception as e:  # noqa: BLE001 - every error becomes one line (hear_maeast.errors.describe)
        if debug_enabled():
            raise
        message, code = describe(e)
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        return code
    print(f"wrote {args.output}: {len(args.audio)} file(s), scene embeddings {arrays['scene'].shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
