"""`hear-maeast table` over `hear-maeast probe` rows: which rows are one model's, what each paired table pairs its
rows with, and the probe results it refuses to misread (issue 33).

The rows are real: `probe --probe linear --probe knn` on heareval's embeddings of two synth tasks by toy_hear (the
pitch task: train/valid/test; the timbre task: 5 folds), run once for this file; each test copies the folders it
needs under its tmp_path and edits what a user (or a second run) would have changed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROBED_MODEL, run_cli

PITCH, TIMBRE = "synth_pitch-v1.0-small", "synth_timbre-v1.0-small"


@pytest.fixture(scope="module")
def probed(probe_results, tmp_path_factory) -> Path:
    """RESULTS with m/ (eval's embeddings of the two tasks) and the probe rows m-linear/ and m-knn/."""
    root, results = probe_results
    out = tmp_path_factory.mktemp("probed")
    for task in (PITCH, TIMBRE):
        shutil.copytree(results / PROBED_MODEL / task, out / "m" / task)
    run_cli("probe", "--tasks-dir", root, "--task", PITCH, "--task", TIMBRE, "--module", "toy_hear", "--out", out,
            "--name", "m", "--probe", "linear", "--probe", "knn")
    return out


def results(probed: Path, tmp_path: Path, rows: dict[str, str], **run_json) -> Path:
    """A RESULTS folder holding copies of `probed`'s rows, {new name: probed row}; `run_json`: {new name: keys that
    replace those of its run.json} (e.g. other weights)."""
    out = tmp_path / "results"
    for name, row in rows.items():
        shutil.copytree(probed / row, out / name, ignore=shutil.ignore_patterns(".lock"))
        run = json.loads((out / name / "run.json").read_text())
        (out / name / "run.json").write_text(json.dumps({**run, "name": name, **run_json.get(name, {})}))
    return out


def tables(text: str) -> list[list[list[str]]]:
    """The Markdown tables of `table`'s output, each a list of rows of cells (the separator line dropped)."""
    found, current = [], None
    for line in text.splitlines():
        if line.startswith("| "):
            if current is None:
                current = []
                found.append(current)
            current.append([cell.strip() for cell in line.strip("|").split(" | ")])
        elif not line.startswith("|---"):
            current = None
    return found


def first_column(table: list[list[str]]) -> list[str]:
    return [row[0] for row in table]


def test_rows_named_as_one_model_but_of_other_weights_are_labelled_and_listed_apart(probed, tmp_path):
    """`probe --probe linear` with weights A under --name m, then `probe --probe knn --replace-stale` with weights B
    under the same name (simulated: the run.json of each row says which weights it scored). Before, `m-linear` and
    `m-knn` were shown as one model's rows, without a word."""
    a, b = "a" * 64, "b" * 64
    out = results(probed, tmp_path, {"m-linear": "m-linear", "m-knn": "m-knn", "o-linear": "m-linear",
                                     "m-finetuned": "m-linear"},
                  **{"m-linear": {"weights_sha256": a}, "m-knn": {"weights_sha256": b}, "o-linear": {"weights_sha256": "c" * 64},
                     "m-finetuned": {"protocol": "finetune", "model_sha256": a, "options": {"epochs": 2}}})
    for pkl in (out / "m-finetuned").rglob("*.predictions.pkl"):
        pkl.unlink()  # finetune writes none
    text = run_cli("table", out)
    # weights A's rows together (the fine-tuned row started from A too), then the other model, then weights B's row
    assert first_column(tables(text)[0])[1:5] == [f"m-linear [weights {a[:12]}]", f"m-finetuned [weights {a[:12]}]",
                                                   "o-linear", f"m-knn [weights {b[:12]}]"]
    assert "Rows labelled `[...]` (`m`): named as one model's rows, but their run.json say they scored different models" in text
    # --against m cannot choose between them; one row, by its name, can
    error = run_cli("table", out, "--against", "m", code=2)
    assert "error: --against m: names more than one row or model (m-linear [weights aaaaaaaaaaaa], " in error
    assert first_column(tables(run_cli("table", out, "--against", "m-knn"))[1])[0] == f"vs m-knn [weights {b[:12]}]"

    same = results(probed, tmp_path / "same", {"m-linear": "m-linear", "m-knn": "m-knn"})  # one model's rows
    text = run_cli("table", same)
    assert first_column(tables(text)[0])[1:3] == ["m-linear", "m-knn"] and "Rows labelled" not in text


def test_the_same_name_probed_again_with_other_options_gives_rows_labelled_apart(probe_results, probed, toy_hear_env,
                                                                                 tmp_path):
    """The finding for real: `probe --probe linear --name m`, then `probe --probe knn --name m --replace-stale` of
    toy_hear with other options (its embeddings computed again in m/, in a subprocess: heareval's embedder imports
    TensorFlow)."""
    out = tmp_path / "results"
    for row in ("m", "m-linear"):
        shutil.copytree(probed / row, out / row, ignore=shutil.ignore_patterns(".lock"))
    (out / "m" / "run.json").write_text(json.dumps({"name": "m", "module": "toy_hear", "model_options": {},
                                                    "weights_sha256": None, "weights_file": None}))  # as eval writes
    proc = subprocess.run([sys.executable, "-m", "hear_maeast.cli", "probe", "--tasks-dir", str(probe_results[0]),
                           "--task", PITCH, "--task", TIMBRE, "--module", "toy_hear", "--model-options",
                           '{"features": "loudness"}', "--out", str(out), "--name", "m", "--probe", "knn",
                           "--replace-stale"], env=toy_hear_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"embedding {PITCH}" in proc.stdout  # the other options' embeddings, not the first run's
    rows = [row for row in first_column(tables(run_cli("table", out))[0]) if row.startswith("m-")]
    assert sorted(rows) == ['m-knn [options {"features": "loudness"}]', "m-linear [options {}]"], rows


def test_against_a_model_with_probe_rows_only_heads_each_table_with_the_row_it_pairs_with(probed, tmp_path):
    """m has no heareval row: its linear rows are paired with m-linear, its kNN rows with m-knn, each in a table
    headed so. Before, one table headed `vs m-linear` held the rows paired with m-knn too."""
    out = results(probed, tmp_path, {"m-linear": "m-linear", "m-knn": "m-knn", "o-linear": "m-linear",
                                     "o-knn": "m-knn"})
    text = run_cli("table", out, "--against", "m")
    paired = tables(text)[1:]
    assert [first_column(t) for t in paired] == [["vs m-linear", "o-linear"], ["vs m-knn", "o-knn"]]
    assert all(cell == "0:0 p=1" for t in paired for cell in t[1][1:] if cell)  # copies: no clip differs
    assert "Rows of a probe (`-linear`, `-knn`, `-mlp`) are paired with that probe's row of m when it has one" in text


def test_against_a_probe_row_pairs_the_same_probe_with_it_and_says_so(probed, tmp_path):
    """`--against m-linear`: other models' linear rows and m's own kNN row are paired with it, other models' kNN
    rows with m-knn, and a heareval row of another model (m has none) with m-linear. Before: "no such model"."""
    out = results(probed, tmp_path, {"m-linear": "m-linear", "m-knn": "m-knn", "o-linear": "m-linear",
                                     "o-knn": "m-knn", "o": "m-linear"})
    run = json.loads((out / "o" / "run.json").read_text())
    (out / "o" / "run.json").write_text(json.dumps({k: v for k, v in run.items() if k != "protocol"}))  # eval's
    text = run_cli("table", out, "--against", "m-linear")
    paired = tables(text)[1:]
    assert [first_column(t) for t in paired] == [["vs m-linear", "o", "o-linear", "m-knn"], ["vs m-knn", "o-knn"]]
    assert paired[0][1][1:] == paired[0][2][1:] == ["0:0 p=1", "0:0 p=1"]  # copies of m-linear: no clip differs
    assert paired[0][3][1:] != ["0:0 p=1", "0:0 p=1"]  # kNN and linear on the same embeddings: some clips differ
    assert "; the other rows with m-linear." in text and "The other rows of m-linear's model" in text


@pytest.mark.parametrize("missing_in", [["o-linear"], ["m-linear", "o-linear"]])
def test_a_kfold_probe_row_missing_a_folds_predictions_is_refused(probed, tmp_path, missing_in):
    """A fold's predictions deleted from the timbre task (5 folds). Before: with it gone from one row, "different
    test clips"; from both, a paired cell silently over the 4 folds left."""
    out = results(probed, tmp_path, {"m-linear": "m-linear", "o-linear": "m-linear"})
    for row in missing_in:
        (out / row / TIMBRE / "fold03.predictions.pkl").unlink()
    error = run_cli("table", out, "--against", "m-linear", code=1).strip().splitlines()[-1]
    assert error.startswith(f"error: {out / missing_in[0] / TIMBRE} holds the predictions of fold00, fold01, fold02, "
                            "fold04, but its task tests fold00, fold01, fold02, fold03, fold04, each once"), error


def test_a_probe_row_scored_on_another_version_of_the_task_than_its_model_is_refused(probed, tmp_path):
    """The task rebuilt (its metadata changed) and `eval` run again, the probe row kept from before: its copies of
    the task files differ from the heareval row's. Before, both scores were shown as one model's on one task."""
    out = results(probed, tmp_path, {"m": "m-linear", "m-linear": "m-linear"})
    run = json.loads((out / "m" / "run.json").read_text())
    (out / "m" / "run.json").write_text(json.dumps({k: v for k, v in run.items() if k != "protocol"}))  # eval's
    metadata = out / "m" / PITCH / "task_metadata.json"
    metadata.write_text(metadata.read_text() + "\n")
    error = run_cli("table", out, code=1).strip().splitlines()[-1]
    assert error.startswith(f"error: {out / 'm-linear' / PITCH} and {out / 'm' / PITCH} were scored on different "
                            f"versions of task {PITCH} (their copies of task_metadata.json differ)"), error


@pytest.mark.parametrize("beside", ["not-applicable.json", "failed.json"])
def test_a_score_beside_a_not_applicable_or_failed_file_is_refused(probed, tmp_path, beside):
    """A kNN task folder that says both n/a (or failed) and a score. Before, the score was shown."""
    out = results(probed, tmp_path, {"m-knn": "m-knn"})
    (out / "m-knn" / PITCH / beside).write_text(json.dumps({"probe": "knn"}))
    error = run_cli("table", out, code=1).strip().splitlines()[-1]
    assert error == (f"error: {out / 'm-knn' / PITCH} holds both test.predicted-scores.json and {beside}: one of them "
                     f"is left from another run; delete {out / 'm-knn' / PITCH} and run the command that wrote it "
                     "again (`hear-maeast eval`, `probe` or `finetune`), which does that task again")
