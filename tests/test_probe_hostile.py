"""`hear-maeast probe` attacked as a hostile user would (issue 33; docs/reliability.md, "probe"): task folders
whose splits heareval's rotation cannot use, results and embeddings damaged or deleted between runs, a real
SIGKILL mid-run, two runs on one --out, a --module whose outputs break the HEAR API. Each is refused in one line
naming the problem and the way out, or done again; nothing is read as done that is not.

The embeddings are real: heareval's own task_embeddings with `toy_hear` on the generated suite (conftest.py's
`probe_results`); every run here is a real `hear-maeast probe` subprocess or click invocation.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import PROBED_MODEL as MODEL, run_cli

PITCH, TIMBRE = "synth_pitch-v1.0-small", "synth_timbre-v1.0-small"
DONE = "probe-done.json"


def probe(env: dict, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hear_maeast.cli", "probe", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def one_error(proc: subprocess.CompletedProcess, code: int, message: str) -> None:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == code and len(errors) == 1 and message in errors[0], proc.stdout[-2000:] + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


# -- task folders heareval's rotation cannot use: refused before any work, the good tasks' runs included --
def _split_names(task: Path) -> list[str]:
    return json.loads((task / "task_metadata.json").read_text())["splits"]


def _empty_split(task: Path) -> None:
    (task / "valid.json").write_text("{}")


def _metadata(task: Path, change) -> None:
    path = task / "task_metadata.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


@pytest.mark.parametrize("task_name, damage, message", [
    (PITCH, _empty_split, "valid.json lists no clips: heareval can neither embed nor score an empty split"),
    (TIMBRE, lambda t: _metadata(t, lambda m: {**m, "splits": m["splits"][:4]}),
     "nfolds is 5 but `splits` lists 4 folds"),
    (TIMBRE, lambda t: _metadata(t, lambda m: {**m, "splits": [*m["splits"][:4], "fold00"]}), "names a split twice"),
    (TIMBRE, lambda t: _metadata(t, lambda m: {**m, "splits": m["splits"][:2], "nfolds": 2}),
     "a k-fold task needs 3 or more folds"),
    (PITCH, lambda t: _metadata(t, lambda m: {**m, "splits": ["train", "test", "dev"]}),
     "a trainvaltest task has the splits train, valid and test"),
])
def test_a_task_whose_splits_cannot_be_rotated_is_refused_before_any_work(probe_results, tmp_path, task_name,
                                                                         damage, message):
    """Before, an empty valid.json crashed inside heareval and the run then probed no task at all; nfolds 5 with
    4 listed splits was scored on 4 folds without a word."""
    root = tmp_path / "tasks"
    for name in (PITCH, TIMBRE):
        shutil.copytree(probe_results[0] / name, root / name, ignore=shutil.ignore_patterns("16000"))
    damage(root / task_name)
    text = run_cli("probe", "--tasks-dir", root, "--module", "toy_hear", "--out", tmp_path / "out", "--probe",
                   "linear", code=1)
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0] and task_name in errors[0], text
    assert not (tmp_path / "out").exists()


# -- results and embeddings damaged or deleted since: done again, never read as done, never the whole run lost --
@pytest.fixture(scope="module")
def probed(probe_results, toy_hear_env, tmp_path_factory) -> tuple[Path, Path, dict]:
    """(tasks root of the pitch task, --out after one linear probe of it, the test scores it wrote); the tests
    using it leave it as they found it."""
    tmp_path = tmp_path_factory.mktemp("probed")
    root = tmp_path / "tasks"
    for name in (PITCH, TIMBRE):
        shutil.copytree(probe_results[0] / name, root / name)
    out = tmp_path / "out"
    assert f"embedding {PITCH}" in ok(probe(toy_hear_env, "--tasks-dir", root, "--out", out, "--module", "toy_hear",
                                            "--probe", "linear"))
    return root, out, json.loads((out / f"{MODEL}-linear" / PITCH / "test.predicted-scores.json").read_text())


def test_damaged_or_deleted_results_and_embeddings_are_done_again(probed, toy_hear_env):
    """A damaged probe-done.json, a deleted score file (as a damaged score's message says to do) and a deleted
    embeddings file: each is redone on the next run, with the same score; before, the first two stopped the run or
    kept the task as done, and the third stopped the whole run."""
    root, out, first = probed
    results, emb = out / f"{MODEL}-linear" / PITCH, out / MODEL / PITCH
    args = ("--tasks-dir", root, "--out", out, "--module", "toy_hear", "--probe", "linear")
    pitch_line = lambda text: next(line for line in text.splitlines() if f"] linear {PITCH}:" in line)  # noqa: E731

    for damage in (lambda: (results / DONE).write_text('{"embeddings_sha2'),  # cut short by a full disk
                   lambda: (results / "test.predicted-scores.json").unlink()):
        damage()
        text = ok(probe(toy_hear_env, *args))
        assert not pitch_line(text).endswith("(kept)"), text
        assert json.loads((results / "test.predicted-scores.json").read_text()) == first
    (emb / "valid.embeddings.npy").unlink()
    text = ok(probe(toy_hear_env, *args))  # embedded again by eval's code; the same bytes, so the score is kept
    assert f"embedding {PITCH}" in text and (emb / "valid.embeddings.npy").is_file(), text
    assert pitch_line(text).endswith("(kept)"), text
    assert json.loads((results / "test.predicted-scores.json").read_text()) == first
    run = json.loads((out / MODEL / "run.json").read_text())
    assert run["tasks"][PITCH]["status"] == "embedded" and run["module"] == "toy_hear"


def _rows(table: str) -> dict[str, list[str]]:
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.split("|")[1:-1]] for line in
                                              table.splitlines() if line.startswith("| "))}


def test_table_after_probe_alone_has_no_heareval_row(probed, toy_hear_env):
    """After `probe` alone, heareval never ran: its row would read `failed` on every task; there is none. After
    `eval --task` of one of the tasks, that task has heareval's score and the other, only embedded, no cell."""
    root, out, _ = probed
    rows = _rows(run_cli("table", out))
    assert f"{MODEL}-linear" in rows and MODEL not in rows, rows
    proc = subprocess.run([sys.executable, "-m", "hear_maeast.cli", "eval", "--tasks-dir", str(root), "--task", PITCH,
                           "--module", "toy_hear", "--grid", "faster", "--out", str(out)], env=toy_hear_env,
                          capture_output=True, text=True, timeout=600)
    ok(proc)
    rows = _rows(run_cli("table", out))
    header = rows["model"]
    pitch, timbre = rows[MODEL][header.index(PITCH)], rows[MODEL][header.index(TIMBRE)]
    assert pitch not in ("", "failed") and timbre == "", rows


def test_a_second_run_on_the_same_out_is_refused_while_one_holds_it(probed, toy_hear_env):
    """Two probes on one --out would interleave writes in the embeddings folder and the probe folders: the second
    stops with the holder's pid and writes nothing."""
    root, out, _ = probed
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from hear_maeast.files import FolderLock; FolderLock(Path(sys.argv[1])).acquire(); "
                               "print('held', flush=True); time.sleep(120)", str(out / f"{MODEL}-linear")],
                              env=toy_hear_env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted((str(p), p.stat().st_mtime_ns) for p in out.rglob("*") if p.name != ".lock")
        one_error(probe(toy_hear_env, "--tasks-dir", root, "--out", out, "--module", "toy_hear", "--probe", "linear"),
                  2, f"is in use by another process (pid {holder.pid}")
        assert sorted((str(p), p.stat().st_mtime_ns) for p in out.rglob("*") if p.name != ".lock") == before
    finally:
        holder.kill()
        holder.wait()


def test_a_run_killed_mid_task_redoes_that_task_and_keeps_the_finished_one(probe_results, toy_hear_env, tmp_path):
    """A real SIGKILL while the mlp probe trains on the second task: the rerun keeps the first task (its done
    marker, written last, matches) and computes the second, whose half-written folder is never read as done."""
    out = tmp_path / "out"
    shutil.copytree(probe_results[1] / MODEL, out / MODEL)  # eval's embeddings (and no run.json: a warning)
    args = ["--tasks-dir", probe_results[0], "--task", PITCH, "--task", TIMBRE, "--out", out, "--module", "toy_hear",
            "--probe", "mlp", "--grid", "faster"]
    proc = subprocess.Popen([sys.executable, "-m", "hear_maeast.cli", "probe", *map(str, args)],
                            env={**toy_hear_env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    for line in proc.stdout:
        if f"] mlp {PITCH}:" in line or time.time() > deadline:
            break
    os.kill(proc.pid, signal.SIGKILL)  # timbre's 5 folds are training (or its results are being written)
    proc.wait()
    timbre = out / f"{MODEL}-mlp" / TIMBRE
    assert (out / f"{MODEL}-mlp" / PITCH / DONE).is_file() and not (timbre / DONE).exists()

    text = ok(probe(toy_hear_env, *args))
    lines = {name: [line for line in text.splitlines() if f"] mlp {name}:" in line] for name in (PITCH, TIMBRE)}
    assert len(lines[PITCH]) == 1 and lines[PITCH][0].endswith("(kept)"), text
    assert len(lines[TIMBRE]) == 1 and not lines[TIMBRE][0].endswith("(kept)"), text
    scores = json.loads((timbre / "test.predicted-scores.json").read_text())
    assert sorted(k for k in scores if k.startswith("fold")) == [f"fold{i:02d}" for i in range(5)]


# -- a --module whose outputs break the HEAR API: one line naming the function and what it returned --
class _Model(torch.nn.Module):
    sample_rate, scene_embedding_size, timestamp_embedding_size = 16000, 4, 4


def _module(scene=None, stamps=None):
    class Module:
        __name__ = "bad_hear"

        @staticmethod
        def get_scene_embeddings(audio, model):
            return scene(len(audio))

        @staticmethod
        def get_timestamp_embeddings(audio, model):
            return stamps(len(audio))
    return Module()


GOOD_STAMPS = lambda n: (torch.zeros(n, 3, 4), torch.arange(3.0).expand(n, 3) * 50)  # noqa: E731


@pytest.mark.parametrize("scene, stamps, message", [
    (lambda n: np.zeros((n, 4), np.float32), None, "get_scene_embeddings returned a ndarray, not a torch.Tensor"),
    (lambda n: torch.zeros(n + 1, 4), None, "returned a torch.float32 tensor of shape [3, 4] for 2 sounds"),
    (lambda n: torch.zeros(n, 4, 1), None, "of shape [2, 4, 1] for 2 sounds"),
    (lambda n: torch.zeros(n, 4, dtype=torch.int64), None, "returned a torch.int64 tensor"),
    (lambda n: torch.zeros(n, 5), None, "returned 5-d embeddings, but the model's scene_embedding_size is 4"),
    (lambda n: torch.full((n, 4), float("nan")), None, "get_scene_embeddings returned NaN or inf"),
    (None, lambda n: torch.zeros(n, 3, 4), "returned a Tensor, not (embeddings, timestamps)"),
    (None, lambda n: (torch.zeros(n, 3, 4), torch.zeros(n, 2)), "returned timestamps [2, 2] for embeddings [2, 3, 4]"),
    (None, lambda n: (torch.zeros(n, 3, 4), torch.tensor([100.0, 50, 0]).expand(n, 3)), "timestamps that decrease"),
    (None, lambda n: (torch.zeros(n, 3, 4), np.zeros((n, 3))), "(timestamps) returned a ndarray, not a torch.Tensor"),
])
def test_module_outputs_that_break_the_hear_api_are_refused(scene, stamps, message):
    from eval.runner import CheckedModule
    from hear_maeast.errors import WorkFailed

    checked = CheckedModule(_module(scene, stamps), _Model())
    audio = torch.zeros(2, 16000)
    with pytest.raises(WorkFailed, match="^--module bad_hear: ") as e:
        (checked.get_scene_embeddings if scene else checked.get_timestamp_embeddings)(audio, None)
    assert message in str(e.value) and "the HEAR API requires" in str(e.value)
    good = CheckedModule(_module(lambda n: torch.ones(n, 4), GOOD_STAMPS), _Model())
    assert good.get_scene_embeddings(audio, None).shape == (2, 4)  # a module that keeps the API passes unchanged
    assert good.get_timestamp_embeddings(audio, None)[1].shape == (2, 3)


BAD_MODULE = '''
import numpy as np, torch
sample_rate, scene_embedding_size, timestamp_embedding_size = 16000, 8, 8
class M(torch.nn.Module):
    sample_rate, scene_embedding_size, timestamp_embedding_size = 16000, 8, 8
def load_model(model_file_path=""):
    return M()
def get_scene_embeddings(audio, model):
    return np.zeros((len(audio), 8), np.float32)  # numpy, where the HEAR API says torch.Tensor
def get_timestamp_embeddings(audio, model):
    return torch.zeros(len(audio), 2, 8), torch.zeros(len(audio), 2)
'''


def test_a_module_returning_numpy_stops_in_one_line_through_heareval(probe_results, toy_hear_env, tmp_path):
    """End to end: heareval's own embedding loop calls the checked module; the run stops in one line and leaves
    no embeddings read as done."""
    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / "bad_hear.py").write_text(BAD_MODULE)
    env = {**toy_hear_env, "PYTHONPATH": f"{tmp_path / 'mod'}{os.pathsep}{toy_hear_env.get('PYTHONPATH', '')}"}
    out = tmp_path / "out"
    proc = probe(env, "--tasks-dir", probe_results[0], "--task", PITCH, "--out", out, "--module", "bad_hear",
                 "--probe", "linear")
    one_error(proc, 1, "--module bad_hear: get_scene_embeddings returned a ndarray, not a torch.Tensor")
    assert not (out / "bad_hear-default" / PITCH / ".done.embeddings").exists()
