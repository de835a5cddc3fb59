"""The DDP world of a pretraining run: one process on CPU or one GPU, or many under `torchrun` (gloo on CPU, nccl on
CUDA, one GPU per local rank), and the collectives every rank calls at the same point."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from hear_maeast.device import resolve_device


def setup_distributed(device: str | None) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Under torchrun: gloo on CPU, nccl on CUDA, one GPU per local rank."""
    device = str(resolve_device(device, "--device"))  # the package's one device check and default
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as nanoGPT: fp32 runs use TF32
    if world == 1:
        return 0, 1, torch.device(device)
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local))
        return dist.get_rank(), world, torch.device("cuda", local)
    dist.init_process_group("gloo")
    return dist.get_rank(), world, torch.device(device)


def all_sum(x: torch.Tensor, world: int) -> torch.Tensor:
    """Sum over ranks (a collective: every rank must call it at the same point)."""
    if world > 1:
        x = x.clone()
        dist.all_reduce(x)
    return x


def default_workers() -> int:
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return min(8, max(1, (os.cpu_count() or 1) // local - 1))


def agree(flags: list[float], world: int, device: torch.device) -> list[float]:
    """Sum of per-rank numbers on every rank, so that all ranks take the same branch (no rank left in a collective)."""
    return all_sum(torch.tensor(flags, dtype=torch.float64, device=device if world > 1 and device.type == "cuda" else "cpu"),
                   world).tolist()


def teardown(world: int, ok: bool) -> None:
    if world > 1 and dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()
