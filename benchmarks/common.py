"""Shared helpers for the benchmark scripts: threads, timing, peak memory, subprocesses, analytic FLOPs, tables.

Benchmarks are scripts, not tests: each prints a table and, with --json FILE, writes its numbers.
Memory is measured in a fresh process per measured path, so one path's allocations never hide another's:
CPU: peak resident set (VmHWM in /proc/self/status, reset through /proc/self/clear_refs) minus the resident set
at the baseline; CUDA: torch.cuda.max_memory_allocated after a reset, minus the allocated bytes at the baseline.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="The pynvml package is deprecated")  # torch's import-time notice

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MiB = 2**20
# glibc keeps freed blocks below its (adaptive) mmap threshold in the heap, so a process's resident set would
# remember earlier steps' buffers; a fixed 1 MiB threshold hands every tensor above 1 MiB back to the kernel on
# free, so peak RSS tracks the live bytes. Set for workers that measure several peaks in one process.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(MiB)}


# ---- environment -------------------------------------------------------------------------------
def set_threads(n: int | None) -> int:
    """Fix torch's intra-op thread count (default: all cores) so runs are comparable; returns it."""
    n = n or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_median(fn, device: torch.device, warmup: int, repeats: int) -> tuple[float, list[float]]:
    """Run fn `warmup` times untimed, then `repeats` times; (median seconds, all timings)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


# ---- memory ------------------------------------------------------------------------------------
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}; CPU memory is measured on Linux only")


class PeakMemory:
    """Peak memory above a baseline. `start()` takes the baseline (and resets the peak), `peak()` reads bytes above it.

    CPU: VmHWM - VmRSS(at start). Writing "5" to /proc/self/clear_refs resets VmHWM to the current RSS; where the
    kernel refuses that, the high-water mark since process start is used (an overestimate if set-up peaked higher).
    CUDA: max_memory_allocated - memory_allocated(at start), after reset_peak_memory_stats.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.base = 0

    def start(self) -> None:
        import gc

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self.base = _status_kib("VmRSS") * 1024

    def peak(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self.base
        return _status_kib("VmHWM") * 1024 - self.base


def run_worker(module_file: str, args: list[str], timeout: float | None = None, malloc_env: bool = True) -> dict:
    """Run `python module_file --worker ...args` in a fresh process; it prints one JSON line last on stdout
    (its stderr, progress and errors, goes to ours). malloc_env: set MALLOC_ENV, for workers measuring several
    peaks in one process."""
    env = dict(os.environ, **(MALLOC_ENV if malloc_env else {}))
    proc = subprocess.run([sys.executable, module_file, "--worker", *args], stdout=subprocess.PIPE, text=True, env=env,
                          timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {Path(module_file).name} {' '.join(args)} failed (exit {proc.returncode}); its error is above")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- analytic FLOPs ----------------------------------------------------------------------------
def run_measured(cmd: list[str], env: dict, timeout: float | None = None) -> dict:
    """Run `cmd` to its end: {"seconds": wall, "rss_bytes": the child's own peak resident set (wait4's ru_maxrss:
    this process and no other), "rc", "out": stdout + stderr}; a child still running after `timeout` is killed."""
    import signal
    import tempfile

    with tempfile.TemporaryFile("w+") as out:
        start = time.time()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        deadline = start + timeout if timeout else None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline and time.time() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.time() - start
        out.seek(0)
        return {"seconds": seconds, "rss_bytes": usage.ru_maxrss * 1024, "rc": proc.returncode, "out": out.read()}


def linear_flops(tokens: float, d_in: int, d_out: int) -> float:
    """One Linear applied to `tokens` vectors: 2 * tokens * d_in * d_out multiply-adds counted as 2 FLOPs."""
    return 2.0 * tokens * d_in * d_out


def block_flops(tokens: int, dim: int, mlp_ratio: float) -> float:
    """One Transformer block on a sequence of L tokens, width D, MLP hidden H = mlp_ratio * D, forward:
    qkv 2*L*D*3D + out proj 2*L*D*D + MLP 2*L*D*H*2  (= 24 L D^2 for H = 4D)
    + attention scores Q K^T 2*L*L*D + weighted values A V 2*L*L*D  (= 4 L^2 D).
    Norms, softmax, GELU and residual adds are elementwise and left out."""
    hidden = int(dim * mlp_ratio)
    return linear_flops(tokens, dim, 4 * dim) + linear_flops(tokens, dim, 2 * hidden) + 4.0 * tokens * tokens * dim


def stack_flops(tokens: int, dim: int, depth: int, mlp_ratio: float) -> float:
    return depth * block_flops(tokens, dim, mlp_ratio)


TRAIN_FACTOR = 3.0  # forward + backward ~ 3 x forward for matmuls (input and weight gradients each cost one forward)


# ---- output ------------------------------------------------------------------------------------
def table(rows: list[dict], columns: list[tuple[str, str]], title: str = "") -> str:
    """rows of dicts -> a Markdown table; columns [(key, header)]; floats printed with 3 significant digits."""

    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    head = "| " + " | ".join(h for _, h in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join(([f"\n{title}\n"] if title else []) + [head, rule] + body)


def write_json(path: str | None, data: dict) -> None:
    if not path:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {p}", file=sys.stderr)


def provenance(device: torch.device) -> dict:
    from hear_maeast import __version__

    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return dict(version=__version__, git_commit=commit, torch=torch.__version__, device=device_name(device),
                threads=torch.get_num_threads(), load_average_at_start=load_average(), command=" ".join(sys.argv),
                date=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
