"""`python benchmarks/gpu.py --check` (`make gpu-check`): one command for a lent GPU, from a plain checkout.

Installs nothing and needs no `make install`: the package is imported from this checkout (PYTHONPATH), the CLI runs
as `python -m hear_maeast`. Each section runs in its own process under a wall-clock guard (--budget, default 300 s,
for the whole run; each section also has its own cap): a section that needs a module this machine lacks, or that
overruns, is recorded as skipped with the reason, and the next one still runs. Each finished section is written to
the results file at once (--out, default benchmarks/results/gpu_check_<device>.json; numbers only, no audio,
refused above 16 MiB; written atomically by hear_maeast.files.atomic_write); the table is printed last.
Nothing is lost: the file says "complete": false until the last section is in it, so a run killed at any moment
(SIGKILL included) leaves the sections it finished, marked partial, and "running": the section it was in and the
file of that section's finished items (WORK/<section>.partial.jsonl); SIGINT or SIGTERM stops the running section
(its process group), records it as "interrupted" with the items it finished, prints the table and exits 130 / 143;
a section whose parent dies is stopped with it (PR_SET_PDEATHSIG). A results file that cannot be written (a full
disk) is one line; the run goes on, tries again after each section, and exits 1 with the table printed.
Bad options are one line and exit 2: --device other than cuda[:N] or cpu, cuda where there is none, an --out
that is a folder, a pipe or a device. Sections, in order:
  env            torch, device, the optional modules present; SDPA's flash and efficient kernels accept the
                 model's attention in bf16 (each forced alone in turn: a mask, dtype or layout that forced the math
                 path would fail here)
  ceilings       a bf16 matmul (n^3, mean of 10 after 3) and a device copy: TFLOP/s and GB/s (read + written)
  step-eager     benchmarks/pretrain_step.py's step, bf16, masks pre-drawn: both base presets at two batch sizes,
                 MAE and SSAST: ms, clips/s, MFU (analytic FLOPs / 989 TFLOP/s for H100/H200), memory (above the
                 footprint once built and, compiled, once the CUDA graphs are recorded: their pools are in it)
  pretrain-cli   `hear-maeast pretrain` fed by its loader from a generated feature store (`hear-maeast features` of
                 synthetic clips): samples/s over steps 21-N without and with a checkpoint every 20 steps in the
                 window, against the synthetic step (pre-drawn masks) at the same preset and batch
  resume         `hear-maeast pretrain` (msm-mae-tiny on the same store) stopped by SIGTERM, then --resume: its
                 losses against an uninterrupted run's
  api            the HEAR API (default weights and a randomly initialised base preset) on the device against the
                 CPU, TF32 off: max |difference| / max |cpu|
  finetune       one epoch (a few bf16 steps) of `hear-maeast finetune` on a generated task
  probes         the mlp probe (heareval's protocol, grid fast) on embeddings of the ESC-50 shape and of parts of the
                 DCASE 2016 task 2 and FSD50K shapes (Gaussian rows, 960 dims: the default weights' width), its grid
                 points stacked and one by one: seconds and scores (gpu_sections.PROBE_SHAPES)
  step-compiled  the step under `pretrain.step.compiled` (as training compiles it): first compiled vs eager bf16
                 losses over 20 steps (within 2e-2 relative; msm-mae-base at batch 512, the shape of the table's
                 first item, whose compilation then comes from inductor's cache), then the step-eager table compiled,
                 larger batches and the MAE step first, as far as the budget goes (each result written as it comes;
                 `--sections step-compiled` gives it the whole budget)
On CPU (`--device cpu`, the test) the same sections run with micro presets and small batches.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

MAX_BYTES = 16 * 2**20
BASE = {"cuda": ["msm-mae-base-80x208p16x16", "mae-ast-patch-12l"], "cpu": ["msm-mae-micro", "mae-ast-patch-micro"]}
SETTINGS = {
    "cuda": dict(presets=BASE["cuda"], batches={"msm-mae-base-80x208p16x16": (128, 512), "mae-ast-patch-12l": (128, 256)},
                 repeats=5, loss_preset="msm-mae-base-80x208p16x16", loss_batch=512, matmul_n=8192, copy_mib=1024,
                 cli_preset="msm-mae-base-80x208p16x16", cli_batch=128, cli_steps=60, cli_log=20, clips=256, clip_s=10.5,
                 resume_steps=40, resume_preset="msm-mae-tiny-80x208p16x16", resume_batch=64,
                 api_preset="msm-mae-base-80x208p16x16", finetune_batch=32, precision="bf16", probe_dim=960,
                 probe_grid="fast"),
    "cpu": dict(presets=BASE["cpu"], batches={"msm-mae-micro": (2, 4), "mae-ast-patch-micro": (2, 4)}, repeats=2,
                loss_preset="msm-mae-micro", loss_batch=4, matmul_n=256, copy_mib=16, cli_preset="msm-mae-micro",
                cli_batch=4, cli_steps=6, cli_log=2, clips=12, clip_s=3.0, resume_steps=8, resume_preset="msm-mae-micro",
                resume_batch=4, api_preset="msm-mae-micro", finetune_batch=16, precision="bf16", probe_dim=16,
                probe_grid="faster"),
}
# section -> (modules it imports beyond torch and numpy, its own cap in seconds)
SECTIONS = {
    "env": ((), 30),
    "ceilings": ((), 30),
    "step-eager": (("click", "tqdm", "safetensors", "soundfile", "soxr"), 90),
    "pretrain-cli": (("click", "tqdm", "safetensors", "soundfile", "soxr"), 80),
    "resume": (("click", "tqdm", "safetensors", "soundfile", "soxr"), 60),
    "api": (("click", "safetensors", "soundfile", "soxr"), 30),
    "finetune": (("click", "tqdm", "safetensors", "soundfile", "soxr", "pandas", "heareval"), 60),
    "probes": (("heareval", "sklearn", "sed_eval", "dcase_util", "scipy"), 90),
    "step-compiled": (("click", "tqdm", "safetensors", "soundfile", "soxr"), 600),
}


# ---- the guard (parent process) -------------------------------------------------------------------------------------
class Stopped(BaseException):
    """SIGINT, SIGTERM or SIGHUP reached the guard."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum, self.name = signum, signal.Signals(signum).name


def _stop(signum, frame):
    raise Stopped(signum)


def usage_error(message: str, who: str = "gpu check") -> None:
    """A bad option: one line, exit 2 (the package's convention, hear_maeast.errors)."""
    print(f"error: {who}: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


class Results:
    """One JSON file, rewritten (atomically) after every section: {"provenance", "settings", "complete",
    "sections": [...]}; "complete" is false until the run's last section is in it."""

    def __init__(self, path: Path, head: dict):
        self.path, self.data, self.unwritten = path, dict(head, complete=False, sections=[]), None
        self.write()  # an --out that cannot be written at all: OSError before any section runs

    def add(self, entry: dict) -> None:
        self.data.pop("running", None)
        self.data["sections"].append(entry)
        try:
            self.save()
        except ValueError as e:  # this section's result is too large: keep its name and why, the run goes on
            self.data["sections"][-1] = dict(section=entry.get("section"), status="failed", reason=str(e))
            self.save()

    def finish(self, **marks) -> None:
        self.data.update(marks)
        self.save()

    def save(self) -> None:
        """write(), or one line on stderr when the file cannot be written (a full disk): the file keeps what it held
        (atomic_write leaves no half file), the run goes on and the next save tries again."""
        try:
            self.write()
        except OSError as e:
            if self.unwritten is None:
                print(f"error: gpu check: cannot write {self.path} ({e.strerror or e}); it keeps the "
                      f"{self.written} section(s) written before; the run goes on and tries again after each section",
                      file=sys.stderr, flush=True)
            self.unwritten = e
        else:
            self.unwritten = None

    def write(self) -> None:
        from hear_maeast.files import atomic_write

        text = json.dumps(self.data, indent=1, default=str) + "\n"
        if len(text.encode()) > MAX_BYTES:
            raise ValueError(f"{self.path}: the results would exceed 16 MiB; refused")
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))
        self.written = len(self.data["sections"])


def missing(modules) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _die_with_parent(parent: int):
    """preexec_fn of a section: SIGTERM to it when the guard dies, even by SIGKILL (Linux prctl PR_SET_PDEATHSIG);
    the worker's handler then kills its process group (worker). None where there is no prctl."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None).prctl  # looked up here: the child between fork and exec only calls it
    except (OSError, AttributeError):
        return None

    def preexec():
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG = 1
        if os.getppid() != parent:  # the guard died before prctl took effect
            os._exit(1)

    return preexec


def run_section(name: str, a, limit: float, work: Path) -> dict:
    """One section in a child process, killed at `limit` s: {"section", "status", "seconds", "result" | "reason"}.
    A Stopped guard kills it too; the entry is then "interrupted", with the items it finished."""
    partial = work / f"{name}.partial.jsonl"
    partial.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE / "gpu.py"), "--check", "--section", name, "--device", a.device, "--work", str(work)]
    if a.compile_backend:
        cmd += ["--compile-backend", a.compile_backend]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT, start_new_session=True,
                         preexec_fn=_die_with_parent(os.getpid()))
    try:
        stdout, _ = p.communicate(timeout=max(limit, 1))
        lines = stdout.strip().splitlines()
        out = dict(status="ok" if p.returncode == 0 else "failed")
        try:
            out.update(result=json.loads(lines[-1])) if p.returncode == 0 and lines else out.update(
                reason=f"exit {p.returncode}: " + " | ".join(lines[-3:])[-2000:])
        except ValueError:  # a section that printed something else last: its failure, not the guard's
            out = dict(status="failed", reason="its last line is not JSON: " + lines[-1][-2000:])
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # the section and everything it started (CLI runs, loader workers)
        p.communicate()
        out = dict(status="skipped", reason=f"overran its {limit:.0f} s (the guard stopped it)")
    except Stopped as e:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        out = dict(status="interrupted", reason=f"{e.name} reached the guard; the section was stopped", signal=e.name)
    if partial.exists():
        out["partial"] = [json.loads(line) for line in partial.read_text().splitlines() if line.strip()]
    return dict(section=name, seconds=round(time.perf_counter() - t0, 1), **out)


def guard(a) -> Results:
    from common import provenance

    import torch

    from hear_maeast.errors import BadInput
    from hear_maeast.files import check_output

    dev = torch.device(a.device)
    out = Path(a.out or ROOT / "benchmarks" / "results" / f"gpu_check_{dev.type}.json")
    try:
        check_output(out)  # a folder, a pipe or a device is never replaced
    except BadInput as e:
        usage_error(f"--out {e}")
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        res = Results(out, dict(provenance=provenance(dev), budget_s=a.budget, settings=SETTINGS[dev.type]))
    except OSError as e:
        print(f"error: gpu check: cannot write the results file {out} ({e.strerror or e}); choose a writable --out "
              "(nothing was run)", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop)
    deadline = time.monotonic() + a.budget
    stopped = None
    try:
        for name in a.sections or list(SECTIONS):
            needs, cap = SECTIONS[name]
            left = deadline - time.monotonic()
            lacking = missing(needs)
            if lacking:
                entry = dict(section=name, status="skipped", reason=f"needs {', '.join(lacking)}, not installed here")
            elif left < 3:
                entry = dict(section=name, status="skipped", reason="no time left in the budget")
            else:  # a SIGKILLed guard leaves this mark, and the section's finished items in its partial file
                res.finish(running=dict(section=name, partial=str(work / f"{name}.partial.jsonl")))
                entry = run_section(name, a, min(dict(a.cap or []).get(name, cap), left), work)
            res.add(entry)
            print(f"  {name}: {entry['status']} ({entry.get('seconds', 0)} s)"
                  f"{' - ' + entry['reason'] if 'reason' in entry else ''}", file=sys.stderr, flush=True)
            if entry["status"] == "interrupted":
                stopped = entry["signal"]
                break
    except Stopped as e:  # between sections
        stopped = e.name
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # the results are being written: a second Ctrl-C must not lose them
    res.finish(**({"complete": False, "interrupted": stopped} if stopped else {"complete": True}))
    print(summary(res.data), flush=True)
    if res.unwritten is not None:
        print(f"error: gpu check: {out} could not be written ({res.unwritten.strerror or res.unwritten}); it holds the "
              f"first {res.written} section(s), the table above is the whole run", file=sys.stderr, flush=True)
        raise SystemExit(1)
    print(f"wrote {out}{' (partial: ' + stopped + ')' if stopped else ''}", file=sys.stderr)
    if stopped:
        raise SystemExit(128 + signal.Signals[stopped].value)
    return res


def summary(data: dict) -> str:
    """The table printed last: one row per section, its headline numbers."""
    from common import table

    rows = []
    for s in data["sections"]:
        got = s.get("result") or {}
        items = got.get("items") or s.get("partial") or []
        head = got.get("headline") or (f"{len(items)} item(s) before it stopped" if items else "")
        rows.append(dict(section=s["section"], status=s["status"], seconds=s.get("seconds"),
                         what=head or s.get("reason", "")))
    state = "" if data.get("complete") else f", partial: {data.get('interrupted') or 'not finished'}"
    lines = [table(rows, [("section", "section"), ("status", "status"), ("seconds", "s"), ("what", "result")],
                   f"GPU check on {data['provenance']['device']} (budget {data['budget_s']} s{state})")]
    for s in data["sections"]:
        items = (s.get("result") or {}).get("items") or s.get("partial") or []
        if items and "ms" in items[0]:
            cols = [(k, k) for k in ("preset", "batch", "path", "mode", "ms", "clips_per_s", "mfu", "memory_mib", "error")]
            lines.append(table(items, cols, f"{s['section']}"))
    return "\n".join(lines)


# ---- the worker (child process) -------------------------------------------------------------------------------------
def worker(a) -> None:
    import torch

    import gpu_sections

    # the guard died (PR_SET_PDEATHSIG) or stopped it: end this section and all it started (its process group)
    if os.getpgrp() == os.getpid():  # the guard started it as its own group's leader
        signal.signal(signal.SIGTERM, lambda signum, frame: os.killpg(0, signal.SIGKILL))
    dev = torch.device(a.device)
    s = dict(SETTINGS[dev.type], device=a.device, work=a.work, compile_backend=a.compile_backend or "inductor")
    partial = Path(a.work) / f"{a.section}.partial.jsonl"

    def keep(item: dict) -> None:  # a finished item, kept even if the section is stopped later
        with open(partial, "a") as f:
            f.write(json.dumps(item, default=str) + "\n")

    try:
        result = gpu_sections.SECTION_FUNCTIONS[a.section](s, keep)
    except Exception as e:  # noqa: BLE001 - reported in the results as this section's failure, one line
        print(f"{type(e).__name__}: {e}".replace("\n", " ")[:1500], flush=True)
        raise SystemExit(1) from None
    print(json.dumps(result, default=str), flush=True)


def cap_arg(text: str) -> tuple[str, float]:
    name, _, seconds = text.partition("=")
    if name not in SECTIONS:
        raise argparse.ArgumentTypeError(f"{name!r}: not a section ({', '.join(SECTIONS)})")
    return name, float(seconds)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--budget", type=float, default=300.0, help="--check: seconds for the whole run")
    ap.add_argument("--cap", action="append", type=cap_arg, metavar="SECTION=SECONDS",
                    help="--check: another cap for a section (repeatable)")
    ap.add_argument("--sections", nargs="+", choices=list(SECTIONS), help="--check: only these sections")
    ap.add_argument("--out", help="--check: the results file [default: benchmarks/results/gpu_check_<device>.json]")
    ap.add_argument("--work", default=str(ROOT / "work" / "gpu_check"), help="--check: scratch folder (stores, runs)")
    ap.add_argument("--compile-backend", help=argparse.SUPPRESS)  # tests on CPU: "eager" (inductor compiles C++ for minutes)
    ap.add_argument("--section", choices=list(SECTIONS), help=argparse.SUPPRESS)  # the worker of one section


def device_problem(text: str, missing_cuda: bool = True) -> str | None:
    """What is wrong with --device TEXT here (None: nothing): not a device, not cuda[:N] or cpu, a CUDA device this
    machine lacks (`missing_cuda=False`: no CUDA at all is not a problem; gpu.py then skips)."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        return f"--device {text!r} is not a device; use cuda, cuda:N, or cpu for a dry run"
    if dev.type not in ("cuda", "cpu"):
        return f"--device {text!r}: the GPU check runs on cuda, cuda:N, or cpu for a dry run"
    if dev.type == "cuda" and not torch.cuda.is_available():
        return ("no CUDA device here; run it on a machine with one (or --device cpu for a dry run)"
                if missing_cuda else None)
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        return f"--device {text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
    return None


def check(a) -> None:
    problem = device_problem(a.device)
    if problem:
        usage_error(problem)
    if a.section:
        worker(a)
    else:
        guard(a)
