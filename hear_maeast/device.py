"""The package's one device rule: which torch device a `--device` option, a `device` model option or a harness's
`.to(device)` names, refused in one line (BadInput) when this machine lacks it. Served to the HEAR API (load_model's
`device`), the command line (`embed --device`), the harness adapters, pretraining and the probes.

None (no device given) is the package's one default: cuda when present, else cpu.
"""

from __future__ import annotations

import torch

from hear_maeast.errors import BadInput


def resolve_device(value, option: str = "device") -> torch.device:
    """'cpu', 'cuda', 'cuda:1', 'mps' or a torch.device -> torch.device, or BadInput saying what this machine has
    (torch's own RuntimeError would read as a bug in the package). None (no --device given): cuda when present,
    else cpu, the package's one default."""
    if value is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError, TypeError):
        raise BadInput(f"{option} {value!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        raise BadInput(f"{option} {value!r}: this machine has {torch.cuda.device_count()} CUDA device(s); use cpu")
    if device.type not in ("cpu", "cuda") and not _backend_available(device.type):
        raise BadInput(f"{option} {value!r}: {device.type} is not available here; use cpu")
    return device


def _backend_available(kind: str) -> bool:
    """Whether torch's backend for a device type other than cpu and cuda (mps, xpu, ...) is usable here."""
    return getattr(getattr(torch, kind, None), "is_available", lambda: False)()
