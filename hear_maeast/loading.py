"""The one entry point that reads any checkpoint file: `load_any(path, ...) -> MaskedAutoencoder`.

Which loader reads a file is decided here, from its content (never its name):

    safetensors  hear_maeast's own format (`hear_maeast.checkpoint`): no pickle, shapes checked before building
    msm-mae      the authors' MSM-MAE `.pth`: torch.load(weights_only=True), allow-listing argparse.Namespace only
    mae-ast      the authors' fairseq `.pt`: pickled omegaconf objects, unpickled only with trust_pickle=True

The official state dicts become models in `hear_maeast.official` (the key mappings). Torch files are inspected
with `pickletools` (nothing executed) under bounds, so a small hostile file cannot cost minutes or gigabytes
(docs/design.md, "Official checkpoint formats and key mappings").
"""

from __future__ import annotations

import argparse
import pickletools
import re
import zipfile
from pathlib import Path

import torch

from hear_maeast.checkpoint import CheckpointError, CheckpointNotFound, is_safetensors, load_checkpoint
from hear_maeast.model import MaskedAutoencoder

SAFETENSORS, MSM_MAE, MAE_AST = "safetensors", "msm-mae", "mae-ast"
MAX_PICKLE_BYTES = 64 << 20  # the official files' object pickles are well under 1 MiB
MAX_PICKLE_OPS = 2_000_000  # about 1.5 s of pickletools; the official files need tens of thousands
ZIP_SLACK = 1 << 20  # bytes of zip directory and padding tolerated beyond the file's own size


def load_any(path, trust_pickle: bool = False, input_frames: int | None = None, patch_size=None) -> MaskedAutoencoder:
    """Any checkpoint (ours or the authors') -> MaskedAutoencoder in eval mode, the loader chosen by content.

    input_frames: MSM-MAE: the input length T in frames (normally read from the tensors or the folder name);
      MAE-AST: the frames per encoder chunk (default 1024 = 10.24 s; up to the file's position table).
    patch_size: (mel bins, frames) as "16x16" or [16, 16]; a cross-check, or the patch/frame choice for MAE-AST
      files whose configuration lacks the kernel sizes. Our own files have fixed sizes: the options must agree.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a checkpoint file" if path.is_dir() else "not found"
        raise CheckpointNotFound(f"checkpoint file {what}: {path}")
    patch = parse_patch(patch_size) if patch_size is not None else None
    if input_frames is not None and (isinstance(input_frames, bool) or not isinstance(input_frames, int)
                                     or input_frames <= 0):
        raise CheckpointError(f"input_frames={input_frames!r}: expected a positive int (frames of 10 ms)")
    file_format = detect_format(path)
    if file_format == SAFETENSORS:
        return _own_file(path, input_frames, patch).eval()
    from hear_maeast import official

    if file_format == MSM_MAE:
        model = official.msm_mae_model(read_msm_mae_file(path, trust_pickle), source=str(path),
                                       folder=path.parent.name, input_frames=input_frames, patch_size=patch)
    else:
        model = official.mae_ast_model(read_fairseq_file(path, trust_pickle), source=str(path),
                                       input_frames=input_frames, patch_size=patch)
    model.provenance = {"converted_from": path.name, "official_format": file_format,
                        "licence": official.LICENCES[file_format]}
    return model.eval()


def _own_file(path: Path, input_frames: int | None, patch: tuple[int, int] | None) -> MaskedAutoencoder:
    model = load_checkpoint(path)
    wrong = []
    if input_frames is not None and input_frames != model.cfg.input_frames:
        wrong.append(f"input_frames={input_frames} (the file has {model.cfg.input_frames})")
    if patch is not None and patch != model.cfg.patch_size:
        wrong.append(f"patch_size={patch} (the file has {model.cfg.patch_size})")
    if wrong:
        raise CheckpointError(f"{path}: a hear_maeast checkpoint, whose sizes are fixed; cannot apply {wrong}")
    return model


def parse_patch(value) -> tuple[int, int]:
    """'16x16', '16,16' or [16, 16] -> (16, 16): mel bins x frames."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", value)
        if m and int(m[1]) > 0 and int(m[2]) > 0:
            return int(m[1]), int(m[2])
    elif (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        return int(value[0]), int(value[1])
    raise CheckpointError(f"patch_size={value!r}: expected mel bins x frames, e.g. '16x16' or [16, 16]")


# ---- format detection (no unpickling) ----------------------------------------------------------
def detect_format(path) -> str:
    """"safetensors", "msm-mae" or "mae-ast", by content."""
    path = Path(path)
    if is_safetensors(path):
        return SAFETENSORS
    strings, _ = scan_torch_file(path)
    if "post_extract_proj.weight" in strings or "enc_sine_pos_embed.pe" in strings:
        return MAE_AST
    if "patch_embed.proj.weight" in strings:
        return MSM_MAE
    raise CheckpointError(
        f"{path}: a torch checkpoint, but neither an official MSM-MAE file (no 'patch_embed.proj.weight') nor an "
        "official MAE-AST file (no 'post_extract_proj.weight'); hear_maeast cannot tell what model it holds"
    )


class _Bounded:
    """A read-only stream that refuses to yield more than `limit` bytes in total (before reading them)."""

    def __init__(self, stream, limit: int, path: Path):
        self.stream, self.left, self.path = stream, limit, path

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.left:
            raise CheckpointError(f"{self.path}: its object pickle is larger than {MAX_PICKLE_BYTES >> 20} MiB; "
                                  "the official checkpoints' are under 1 MiB, so this file is refused")
        data = self.stream.read(n)
        self.left -= len(data)
        return data

    def readline(self) -> bytes:  # text opcodes; pickletools reads them line by line
        line = self.stream.readline(min(self.left, 1 << 16) + 1)
        if len(line) > self.left:
            self.read(len(line))  # raises
        self.left -= len(line)
        return line


def _pickle_scan(stream, path: Path) -> tuple[set[str], set[str]]:
    """Strings and globals ("module.name") referenced by one pickle, read with pickletools (nothing executed)."""
    strings, globals_, memo, recent = set(), set(), {}, []
    for n, (op, arg, _) in enumerate(pickletools.genops(stream)):
        if n >= MAX_PICKLE_OPS:
            raise CheckpointError(f"{path}: its object pickle has more than {MAX_PICKLE_OPS} operations; the "
                                  "official checkpoints' have tens of thousands, so this file is refused")
        if isinstance(arg, str) and ("UNICODE" in op.name or op.name in ("STRING", "BINSTRING", "SHORT_BINSTRING")):
            strings.add(arg)
            recent = (recent + [arg])[-2:]
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT") and recent:
            memo[arg] = recent[-1]
        elif op.name == "MEMOIZE" and recent:
            memo[len(memo)] = recent[-1]
        elif op.name in ("BINGET", "LONG_BINGET", "GET") and arg in memo:
            recent = (recent + [memo[arg]])[-2:]
        elif op.name == "GLOBAL":
            globals_.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and len(recent) == 2:
            globals_.add(".".join(recent))
        if op.name == "STOP":
            break
    return strings, globals_


def _zip_pickle(z: zipfile.ZipFile, path: Path) -> zipfile.ZipInfo:
    """The object pickle of a torch.save zip, after checking the zip cannot inflate past the file's size."""
    inflated = sum(info.file_size for info in z.infolist())
    if inflated > 2 * path.stat().st_size + ZIP_SLACK:
        raise CheckpointError(
            f"{path}: a zip whose entries inflate to {inflated / 2**20:.0f} MiB from a "
            f"{path.stat().st_size / 2**20:.1f} MiB file; torch.save stores its entries uncompressed, so this is "
            "not a torch checkpoint, and it is refused to keep memory bounded")
    infos = [i for i in z.infolist() if i.filename.endswith("/data.pkl") and i.filename.count("/") == 1]
    if not infos:
        raise CheckpointError(f"{path}: a zip file but not a torch checkpoint (no data.pkl)")
    return infos[0]


def scan_torch_file(path: Path) -> tuple[set[str], set[str]]:
    """(strings, globals) of the object pickle of a torch.save file, zip or legacy format, without loading it."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z, z.open(_zip_pickle(z, path)) as f:
                return _pickle_scan(_Bounded(f, MAX_PICKLE_BYTES, path), path)
        with open(path, "rb") as raw:  # legacy format: magic number, protocol, sys info, then the object
            f = _Bounded(raw, MAX_PICKLE_BYTES, path)
            for _ in range(3):
                _pickle_scan(f, path)
            return _pickle_scan(f, path)
    except CheckpointError:
        raise
    except Exception as e:  # pickletools raises ValueError on garbage; zipfile BadZipFile; EOF on truncation
        raise CheckpointError(
            f"{path}: not a checkpoint hear_maeast can read: neither safetensors nor a readable torch.save file "
            f"({type(e).__name__}: {e}); expected a hear_maeast .safetensors file, an official MSM-MAE .pth or an "
            "official MAE-AST .pt (a truncated download looks like this too)"
        ) from e


# ---- reading the authors' files ------------------------------------------------------------------
def read_msm_mae_file(path: Path, trust_pickle: bool = False) -> dict:
    """An MSM-MAE checkpoint dict; weights only unless `trust_pickle` (then anything the file pickles)."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # MAE's training script stores its args there
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refusal (an UnpicklingError) or a damaged file
        if not trust_pickle:
            raise CheckpointError(
                f"{path}: an MSM-MAE checkpoint that torch.load(weights_only=True) refuses ({e}). It references "
                "objects beyond tensors and argparse.Namespace; if you trust the file, pass trust_pickle=True "
                "(CLI: --trust-pickle), ideally once, with `hear-maeast convert --trust-pickle SRC DST.safetensors`"
            ) from e
    return _unpickle_trusted(path)


def _unpickle_trusted(path: Path) -> dict:
    """torch.load with full unpickling, for a file the caller said they trust; failures name the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as e:
        raise CheckpointError(f"{path}: the checkpoint pickles objects from a module that is not installed ({e})") from e
    except Exception as e:
        raise CheckpointError(f"{path}: cannot unpickle ({type(e).__name__}: {e}); is it truncated?") from e


def read_fairseq_file(path: Path, trust_pickle: bool = False) -> dict:
    """A fairseq MAE-AST checkpoint dict; refused unless the caller trusts the file (unpickling runs code)."""
    if not trust_pickle:
        _, globals_ = scan_torch_file(path)
        foreign = sorted(g for g in globals_ if not g.startswith(("torch.", "collections.OrderedDict", "_codecs.")))
        raise CheckpointError(
            f"{path}: an official MAE-AST (fairseq) checkpoint. Its configuration is pickled Python objects "
            f"({', '.join(foreign[:6]) or 'omegaconf configs'}), and unpickling a file can run arbitrary code, so "
            "hear_maeast does not open it unless you say you trust it: load_model(path, trust_pickle=True) or "
            "model options {\"trust_pickle\": true}. Better, convert it once to a pickle-free file: "
            "`hear-maeast convert --trust-pickle SRC DST.safetensors`, then use DST.safetensors everywhere."
        )
    try:
        import omegaconf  # noqa: F401  (fairseq pickles its configuration as omegaconf objects)
    except ImportError:
        raise CheckpointError(
            f"{path}: reading an official MAE-AST checkpoint needs omegaconf (its configuration is pickled as "
            "omegaconf objects): pip install omegaconf   (or: pip install 'hear_maeast[official]')"
        ) from None
    return _unpickle_trusted(path)
