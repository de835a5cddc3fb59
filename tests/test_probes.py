"""`hear-maeast probe`: linear (EVAR), knn (X-ARES) and mlp (heareval's protocol, no TensorFlow) on heareval's
embeddings of every task type `make eval` builds, their results in the table, and the inputs they refuse.

The embeddings are real: the generated task suite (eval/synth.py: scene multiclass train/valid/test, 5-fold,
multi-label, event) embedded by heareval's own task_embeddings (eval/runner.py's embed_task) with `toy_hear`,
a tiny third-party HEAR module (log-mel frames).
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch


from conftest import PROBED_MODEL as MODEL, run_cli

PITCH, TIMBRE, MIXTURE, EVENTS = (f"{t}-v1.0-small" for t in ("synth_pitch", "synth_timbre", "synth_mixture",
                                                                  "synth_events"))
# TensorFlow and Lightning made unimportable before anything is imported (heareval.score must not need them)
NO_TENSORFLOW = ("import sys; sys.modules['tensorflow'] = None; sys.modules['pytorch_lightning'] = None; "
                 "from hear_maeast.cli import main; main(sys.argv[1:])")


def probe(*args, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    """`hear-maeast probe ARGS` in a subprocess in which TensorFlow and Lightning cannot be imported."""
    return subprocess.run([sys.executable, "-c", NO_TENSORFLOW, "probe", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def scores(folder: Path) -> dict:
    return json.loads((folder / "test.predicted-scores.json").read_text())


def test_all_probes_score_every_task_type_without_tensorflow(probe_results, toy_hear_env):
    root, results = probe_results
    proc = probe("--tasks-dir", root, "--module", "toy_hear", "--out", results, "--seed", "1", "--grid", "faster",
                 env=toy_hear_env)  # heareval's smallest grid: the fast one is timed against heareval below
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "embeddings of 4 tasks kept" in proc.stdout  # eval's embeddings reused, the model never loaded
    for p in ("linear", "knn", "mlp"):
        run = json.loads((results / f"{MODEL}-{p}" / "run.json").read_text())
        assert run["protocol"] == p and run["module"] == "toy_hear" and run["tasks"][PITCH]["status"] == "done"
    # pitch from log-mel frames: every probe far above chance (1/12)
    for p in ("linear", "knn"):
        assert scores(results / f"{MODEL}-{p}" / PITCH)["test"]["test_score"] > 0.5, p
    timbre = scores(results / f"{MODEL}-linear" / TIMBRE)
    assert set(timbre) >= {"fold00", "fold04", "aggregated_scores"}  # heareval's k-fold layout and rotation
    assert len(list((results / f"{MODEL}-mlp" / TIMBRE).glob("fold0*.predictions.pkl"))) == 5
    mixture = scores(results / f"{MODEL}-mlp" / MIXTURE)["test"]
    assert set(mixture) >= {"test_mAP", "test_d_prime", "test_aucroc"} and mixture["test_score"] == mixture["test_mAP"]
    events = scores(results / f"{MODEL}-linear" / EVENTS)["test"]
    assert "test_event_onset_200ms_fms_precision" in events  # heareval's event-based score, on post-processed events
    for task in (MIXTURE, EVENTS):  # kNN: single-label clip tasks only
        assert (results / f"{MODEL}-knn" / task / "not-applicable.json").is_file()
        assert not (results / f"{MODEL}-knn" / task / "test.predicted-scores.json").exists()
    # resumed: nothing recomputed
    again = run_cli("probe", "--tasks-dir", root, "--module", "toy_hear", "--out", results, "--seed", "1", "--grid",
                    "faster", "--probe", "knn")
    assert again.count("(kept)") == 4, again


def test_knn_is_the_softmax_weighted_cosine_vote_of_ten_neighbours(probe_results):
    """The vote against a direct computation on real embeddings: cosine similarities, 10 nearest, softmax(s/0.07)."""
    from eval.probes.data import read_task
    from eval.probes.knn import vote

    task = read_task(probe_results[1] / MODEL / PITCH)
    train, test = task.splits["train"], task.splits["test"]
    got = vote(train.x, train.y, test.x)
    a = train.x / np.linalg.norm(train.x, axis=1, keepdims=True)
    b = test.x / np.linalg.norm(test.x, axis=1, keepdims=True)
    for i in range(len(b)):
        sims = a @ b[i]
        near = np.argsort(-sims)[:10]
        w = np.exp((sims[near] - sims[near].max()) / 0.07)
        expected = (w[:, None] * train.y[near]).sum(0) / w.sum()
        np.testing.assert_allclose(got[i], expected, atol=1e-5)


def test_table_shows_a_row_per_probe_and_pairs_each_with_the_same_probe(probe_results, toy_hear_env, tmp_path):
    root, results = probe_results
    run_cli("probe", "--tasks-dir", root, "--module", "toy_hear", "--out", results, "--seed", "1", "--grid", "faster",
            "--probe", "linear", "--probe", "knn")  # kept when the test above ran
    other = results / "toy_hear-other-linear"  # a second model's linear row, to pair
    if not other.exists():
        shutil.copytree(results / f"{MODEL}-linear", other)
        run = json.loads((other / "run.json").read_text())
        (other / "run.json").write_text(json.dumps({**run, "name": other.name}))
    out = run_cli("table", results, "--against", MODEL)
    rows = [line.split(" | ")[0].lstrip("| ") for line in out.splitlines() if line.startswith("| ")]
    assert rows[:4] == [ "model", MODEL, f"{MODEL}-linear", f"{MODEL}-knn"] or rows[1:5] == [
        MODEL, f"{MODEL}-linear", f"{MODEL}-knn", f"{MODEL}-mlp"], rows
    knn_row = next(line for line in out.splitlines() if line.startswith(f"| {MODEL}-knn |"))
    assert knn_row.count("n/a") == 2  # mixture and events
    paired = out[out.index("| vs "):]
    assert "toy_hear-other-linear" in paired and f"paired with that probe's row of {MODEL}" in paired
    line = next(line for line in paired.splitlines() if line.startswith("| toy_hear-other-linear |"))
    assert "0:0 p=1" in line  # the same predictions as the model's own linear row: no clip differs


def test_mlp_scores_the_smallest_task_as_heareval_does(probe_results, tmp_path):
    """heareval's predictions runner (deterministic: its seed 42) and the mlp probe (seed 42: the grid point heareval
    draws) with `make eval`'s `fast` grid, one grid point each (to keep `make test` short), on the same embeddings:
    test accuracies within 2 of the 40 test clips. scripts/probe_agreement.py runs the full grid over seeds
    (docs/evaluation.md)."""
    from eval.probes import mlp
    from eval.probes.data import read_task
    from eval.probes.scoring import Scorer
    from eval.results import read_score
    from eval.runner import prediction_env

    _, results = probe_results
    theirs = tmp_path / PITCH
    shutil.copytree(results / MODEL / PITCH, theirs)
    proc = subprocess.run([sys.executable, "-m", "heareval.predictions.runner", str(theirs), "--grid", "fast",
                           "--grid-points", "1"], env=prediction_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    task = read_task(results / MODEL / PITCH)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as heareval gets it (prediction_env) and `hear-maeast probe` runs it
    try:
        folds, info = mlp.run(task, Scorer(task), seed=42, grid="fast", points=1)
    finally:
        torch.set_num_threads(threads)
    heareval = json.loads((theirs / "test.predicted-scores.json").read_text())
    assert info["hparams"]["lr"] == heareval["hparams"]["lr"]  # the same grid point
    assert abs(folds[0].scores["test_score"] - read_score(theirs).mean) <= 2 / 40 + 1e-6  # heareval's is float32


@pytest.mark.parametrize("name, points", [(TIMBRE, 8), (EVENTS, 3)])  # events: 3 points, to keep make test short
def test_stacked_grid_points_train_as_each_alone(probe_results, name, points):
    """The mlp probe's grid points trained at once (one matmul for every member's first layer, each member its own
    Adam, dropout stream, early stopping and best checkpoint) give what each gives trained alone: the same
    validation scores, best epochs, chosen grid point and test predictions (bitwise on this CPU)."""
    from eval.probes import mlp
    from eval.probes.data import read_task
    from eval.probes.scoring import Scorer

    task = read_task(probe_results[1] / MODEL / name)
    runs = {e: mlp.run(task, Scorer(task), seed=3, grid="fast", points=points, engine=e)
            for e in ("stacked", "sequential")}
    (stacked, info), (alone, info_alone) = runs["stacked"], runs["sequential"]
    assert info["hparams"] == info_alone["hparams"] and len(stacked) == len(task.rotation())
    for a, b in zip(stacked, alone):
        assert a.extra == b.extra and a.scores == b.scores
        np.testing.assert_allclose(a.probs, b.probs, rtol=1e-5, atol=1e-7)


def _copy(probe_results, tmp_path) -> tuple[Path, Path, Path]:
    """(tasks root, --out, the pitch task's embeddings folder in it): a private copy of eval's embeddings."""
    root, results = probe_results
    out = tmp_path / "out"
    shutil.copytree(results / MODEL / PITCH, out / MODEL / PITCH)
    return root, out, out / MODEL / PITCH


def _labels(folder: Path, split: str, change) -> None:
    path = folder / f"{split}.target-labels.pkl"
    rows = pickle.loads(path.read_bytes())
    path.write_bytes(pickle.dumps([change(r) for r in rows]))


def _files(*folders: Path) -> list:
    return sorted((str(p), p.stat().st_mtime_ns) for f in folders for p in f.rglob("*"))


@pytest.mark.parametrize("damage, code, message", [
    ("nan", 1, "hold NaN or inf; the model produced them"),
    ("unseen", 1, "has labels never in its training split train"),
    ("one-class", 1, "has a single class"),
    ("other-weights", 2, "holds results that are not this model's: they are of other weights"),
    ("truncated", 1, "cannot be read (ValueError: train.embeddings.npy holds"),
    ("huge", 1, "reach 1e+36; above 1.63e+18 a row's squared norm overflows float32 and no probe"),
    ("widths", 1, "are of different widths per split ({'train': 128, 'valid': 128, 'test': 64}): they are not of one"),
])
def test_probe_refuses_what_it_cannot_score_in_one_line(probe_results, tmp_path, damage, code, message):
    root, out, emb = _copy(probe_results, tmp_path)
    if damage == "nan":
        dims = json.loads((emb / "train.embedding-dimensions.json").read_text())
        x = np.memmap(emb / "train.embeddings.npy", dtype=np.float32, mode="r+", shape=tuple(dims))
        x[3, 5] = np.nan
        x.flush()
    elif damage == "unseen":  # no training clip keeps the first test clip's label
        gone = pickle.loads((emb / "test.target-labels.pkl").read_bytes())[0][0]
        keep = next(r[0] for r in pickle.loads((emb / "train.target-labels.pkl").read_bytes()) if r[0] != gone)
        _labels(emb, "train", lambda r: [keep] if r[0] == gone else r)
    elif damage == "one-class":
        _labels(emb, "train", lambda r: ["C4"])
    elif damage == "huge":  # finite, but near float32's max: before, the mlp probe wrote NaN and recorded it done
        dims = json.loads((emb / "train.embedding-dimensions.json").read_text())
        x = np.memmap(emb / "train.embeddings.npy", dtype=np.float32, mode="r+", shape=tuple(dims))
        x[0] = 1e36
        x.flush()
    elif damage == "widths":  # the test split of another model (or embedding type): each file whole on its own
        dims = json.loads((emb / "test.embedding-dimensions.json").read_text())
        np.zeros((dims[0], dims[1] // 2), np.float32).tofile(emb / "test.embeddings.npy")  # as heareval writes it
        (emb / "test.embedding-dimensions.json").write_text(json.dumps([dims[0], dims[1] // 2]))
    elif damage == "truncated":  # a half-copied file: one row short
        path = emb / "train.embeddings.npy"
        path.write_bytes(path.read_bytes()[:-4 * json.loads((emb / "train.embedding-dimensions.json").read_text())[1]])
    module = "toy_hear"
    if damage == "other-weights":  # eval's folder of this package's default weights, written by other weights
        module, name = "hear_maeast", "hear_maeast-default"
        (out / MODEL).rename(out / name)
        (out / name / "run.json").write_text(json.dumps({"name": name, "module": module, "model_options": {},
                                                         "weights_sha256": "0" * 64}))
        emb = out / name / PITCH
    before = _files(root, emb)
    text = run_cli("probe", "--tasks-dir", root, "--task", PITCH, "--module", module, "--out", out,
                   "--probe", "linear", code=code)
    error = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and message in error[0], text
    assert _files(root, emb) == before  # the tasks and the embeddings untouched; anything written is in --out


def test_embeddings_of_another_version_of_the_task_are_computed_again(probe_results, toy_hear_env, tmp_path):
    """A task rebuilt under the same name (here: its metadata changed by a byte) is embedded again by eval's own
    code, in eval's folder under --out, before it is probed; the old embeddings are not scored."""
    tasks, out = tmp_path / "tasks", tmp_path / "out"
    shutil.copytree(probe_results[0] / PITCH, tasks / PITCH)
    emb = out / MODEL / PITCH

    def probe_linear() -> str:
        proc = subprocess.run([sys.executable, "-m", "hear_maeast.cli", "probe", "--tasks-dir", str(tasks), "--module",
                               "toy_hear", "--out", str(out), "--probe", "linear"], env=toy_hear_env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.stdout

    assert f"embedding {PITCH}" in probe_linear()  # none yet: computed by eval's code
    before = (emb / "test.embeddings.npy").stat().st_mtime_ns
    metadata = tasks / PITCH / "task_metadata.json"
    metadata.write_text(metadata.read_text() + "\n")
    assert f"embedding {PITCH}" in probe_linear() and (emb / "test.embeddings.npy").stat().st_mtime_ns != before
    assert (emb / "task_metadata.json").read_bytes() == metadata.read_bytes()
    assert scores(out / f"{MODEL}-linear" / PITCH)["test"]["test_score"] > 0.5


def test_a_task_too_big_for_memory_is_refused_with_the_numbers(probe_results, tmp_path):
    """Embeddings larger than the memory left (sparse files: nothing is really written) are refused before any
    row is read: one line with the GiB needed and available."""
    from eval.probes.data import available_memory, read_task
    from hear_maeast.errors import WorkFailed

    emb = tmp_path / PITCH
    shutil.copytree(probe_results[1] / MODEL / PITCH, emb)
    free = available_memory()
    if free is None:
        pytest.skip("no /proc/meminfo on this machine: the memory check is off")
    dim = 16384
    rows = free // (2 * 4 * dim * 3) + 1  # each split: the three pooled for the largest data split exceed `free`
    for split in ("train", "valid", "test"):
        with open(emb / f"{split}.embeddings.npy", "wb") as f:
            f.truncate(4 * dim * rows)
        (emb / f"{split}.embedding-dimensions.json").write_text(json.dumps([int(rows), dim]))
        (emb / f"{split}.target-labels.pkl").write_bytes(pickle.dumps([["C4"]] * int(rows)))
    with pytest.raises(WorkFailed, match=r"needs up to \d+\.\d GiB of memory .* GiB are available"):
        read_task(emb, tmp_path / "out")
