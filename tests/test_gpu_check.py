"""`python benchmarks/gpu.py --check`, the prepared run for a lent GPU, dry-run on the CPU with micro presets: every
section runs in its own process under the wall-clock guard, results land in one JSON file as each section finishes,
a section that overruns is recorded as skipped (with what it finished) and the next one still runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO, env1


def check(tmp_path, *args, timeout=600) -> tuple[dict, str]:
    out = tmp_path / "check.json"
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--check", "--device", "cpu",
                        "--compile-backend", "eager", "--work", str(tmp_path / "work"), "--out", str(out), *args],
                       capture_output=True, text=True, env=dict(env1(), PYTHONPATH=str(REPO)), timeout=timeout, cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(out.read_text()), p.stdout


def test_the_guard_records_an_overrunning_section_and_runs_the_next(tmp_path):
    data, stdout = check(tmp_path, "--sections", "env", "step-eager", "ceilings", "--cap", "step-eager=4")
    status = {s["section"]: s for s in data["sections"]}
    assert list(status) == ["env", "step-eager", "ceilings"]
    assert status["env"]["status"] == "ok" and status["env"]["result"]["sdpa_bf16"]["flash"] == "ok"
    assert status["step-eager"]["status"] == "skipped" and "overran its 4 s" in status["step-eager"]["reason"]
    assert status["ceilings"]["status"] == "ok" and status["ceilings"]["result"]["bf16_tflops"] > 0
    assert (tmp_path / "check.json").stat().st_size < 16 * 2**20
    # the table comes last: the sections' rows, then (when the overrun section finished some) its partial rows
    table = stdout[stdout.index("| section |"):] if "| section |" in stdout else stdout
    assert any(line.startswith("| ceilings | ok |") for line in table.splitlines()), stdout[-2000:]


@pytest.mark.heavy
def test_every_section_runs_end_to_end_on_the_cpu(tmp_path):
    data, stdout = check(tmp_path, "--budget", "1500", "--cap", "finetune=400", "--cap", "pretrain-cli=300",
                         "--cap", "resume=300", "--cap", "step-eager=300", timeout=1600)
    status = {s["section"]: s for s in data["sections"]}
    lacking = {k: s["reason"] for k, s in status.items() if s["status"] != "ok"}
    assert not lacking, lacking
    assert status["resume"]["result"]["losses_identical"] and status["resume"]["result"]["sigterm_exit"] == 143
    assert status["step-compiled"]["result"]["losses"]["within_2e_2"]
    assert len(status["step-eager"]["result"]["items"]) == 8 and "GPU check on" in stdout


def test_the_probes_section_times_both_engines_and_they_agree(tmp_path):
    """`probes` (the mlp probe's engine on three HEAR shapes, a sliver of each on the CPU): both engines ran on
    every shape and scored it the same."""
    data, _ = check(tmp_path, "--sections", "probes", timeout=300)
    (section,) = data["sections"]
    assert section["status"] == "ok", section
    items = section["result"]["items"]
    assert [i["task"] for i in items] == ["esc50", "dcase2016_task2-quarter", "fsd50k-like-0.2"]
    assert all(i["stacked_scores"] == i["sequential_scores"] and i["stacked_s"] > 0 for i in items)


def guard(tmp_path, *args, device: str = "cpu") -> list[str]:
    """The command line of the guard (a dry run on the CPU by default), its scratch folder in tmp_path."""
    return [sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--check", "--device", device, "--compile-backend",
            "eager", "--work", str(tmp_path / "work"), *args]


def workers(tmp_path) -> list[int]:
    """Pids of section workers of this test (their command line names its scratch folder)."""
    import os

    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "--section" in cmd and str(tmp_path / "work") in cmd:
            found.append(int(pid))
    return found


def test_bad_options_are_one_line_and_exit_2(tmp_path):
    """Before: `--device foo` and an --out that is a folder were tracebacks; no CUDA was exit 1."""
    import os
    import torch

    os.mkfifo(tmp_path / "pipe")
    cases = [("foo", [], "error: gpu check: --device 'foo' is not a device; use cuda, cuda:N, or cpu"),
             ("cpu", ["--out", str(tmp_path)], f"error: gpu check: --out {tmp_path} is a folder, not a regular file"),
             ("cpu", ["--out", str(tmp_path / "pipe")],
              f"error: gpu check: --out {tmp_path / 'pipe'} is a named pipe, not a regular file")]
    if not torch.cuda.is_available():
        cases.append(("cuda", [], "error: gpu check: no CUDA device here; run it on a machine with one"))
    for device, args, message in cases:
        p = subprocess.run(guard(tmp_path, "--sections", "env", *args, device=device), capture_output=True, text=True,
                           env=dict(env1(), PYTHONPATH=str(REPO)), timeout=120)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
        assert p.stderr.strip().splitlines()[-1].startswith(message), p.stderr
    assert (tmp_path / "pipe").is_fifo() and not (tmp_path / "work").exists()


FILL_AFTER_ENV = """mount -t tmpfs -o size=64k tmpfs "$0" || exit 99
"$@" & pid=$!
for i in $(seq 600); do grep -q '"status": "ok"' "$0/check.json" 2>/dev/null && break; sleep 0.1; done
dd if=/dev/zero of="$0/fill" bs=1k 2>/dev/null
wait $pid; rc=$?
echo "LEFT:$(ls -A "$0" | tr '\\n' ' ')"; cat "$0/check.json"; exit $rc"""


def test_a_full_disk_is_one_line_and_keeps_the_sections_written(tmp_path):
    """The results folder fills up (a 64 KiB tmpfs, filled once env is in the file): one line, the run goes on,
    the table shows every section, exit 1; the file keeps env, marked incomplete, and no temporary is left.
    Before: a traceback after env, the rest of the run lost, a half-written .tmp beside the results."""
    import shutil

    out = tmp_path / "results"
    out.mkdir()
    unshare = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c"]
    if not shutil.which("unshare") or subprocess.run([*unshare, 'mount -t tmpfs tmpfs "$0"', str(out)]).returncode:
        pytest.skip("cannot mount a tiny tmpfs here (unshare)")
    prefix = [*unshare, FILL_AFTER_ENV, str(out)]
    p = subprocess.run([*prefix, *guard(tmp_path, "--sections", "env", "ceilings", "--out", str(out / "check.json"))],
                       capture_output=True, text=True, env=dict(env1(), PYTHONPATH=str(REPO)), timeout=300)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert errors[0].startswith(f"error: gpu check: cannot write {out / 'check.json'} (No space left on device); it "
                                "keeps the 1 section(s) written before; the run goes on"), p.stderr
    assert errors[-1].endswith("it holds the first 1 section(s), the table above is the whole run"), p.stderr
    assert "| ceilings | ok |" in p.stdout  # the whole run, printed
    left, text = p.stdout.split("LEFT:")[1].split("\n", 1)
    assert left.split() == ["check.json", "fill"]  # no temporary
    data = json.loads(text)
    assert data["complete"] is False and [s["section"] for s in data["sections"]] == ["env"]


def running(results) -> str | None:
    """The section the results file says is running."""
    try:
        return (json.loads(results.read_text()).get("running") or {}).get("section")
    except (OSError, ValueError):
        return None


def test_an_interrupted_run_keeps_what_it_finished_marked_partial(tmp_path):
    """SIGINT mid-section: the section (and everything it started) is stopped and recorded as interrupted with the
    items it finished, the table is printed, exit 130. SIGKILL of the guard: the file says which section was running
    and that the run is incomplete, and the section's worker dies with the guard (PR_SET_PDEATHSIG). Before: SIGINT
    was a traceback and the file looked like a finished run of fewer sections."""
    import signal
    import time

    env = dict(env1(), PYTHONPATH=str(REPO))
    for sig in (signal.SIGINT, signal.SIGKILL):
        out = tmp_path / f"{sig.name}.json"
        p = subprocess.Popen(guard(tmp_path, "--sections", "env", "step-eager", "ceilings", "--out", str(out)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 120
        while not workers(tmp_path) or running(out) != "step-eager":  # step-eager's worker is up
            assert time.monotonic() < deadline and p.poll() is None, p.communicate()
            time.sleep(0.1)
        time.sleep(1)
        p.send_signal(sig)
        stdout, stderr = p.communicate(timeout=60)
        data = json.loads(out.read_text())
        status = {s["section"]: s["status"] for s in data["sections"]}
        assert data["complete"] is False and "Traceback" not in stderr, stderr[-3000:]
        if sig == signal.SIGINT:
            assert p.returncode == 130 and data["interrupted"] == "SIGINT", stderr[-3000:]
            assert status == {"env": "ok", "step-eager": "interrupted"} and "running" not in data
            assert "partial: SIGINT" in stdout and "| step-eager | interrupted |" in stdout
        else:
            assert p.returncode == -signal.SIGKILL and status == {"env": "ok"}
            assert data["running"]["section"] == "step-eager"
        deadline = time.monotonic() + 10
        while workers(tmp_path):  # the worker is gone with its guard
            assert time.monotonic() < deadline, workers(tmp_path)
            time.sleep(0.1)
