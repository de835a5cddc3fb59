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
