"""Running the probes on a model's embeddings and writing heareval's result layout.

    RESULTS/<model>/<task>/                     the embeddings `hear-maeast eval` writes (eval/runner.py), read here;
                                                computed here with the same code (embed_task) when missing or stale
    RESULTS/<model>-<probe>/run.json            the model's keys (module, options, weights sha256), the probe and
                                                its options
    RESULTS/<model>-<probe>/<task>/
        test.predicted-scores.json              heareval's keys: {"test": {"test_score": ...}} or one entry per fold
                                                and "aggregated_scores" (mean, std over folds)
        <split>.predictions.pkl                 {"target", "prediction", "prediction_logit"} tensors (heareval's;
                                                the file `table --against` pairs, eval/paired.py)
        not-applicable.json                     kNN on a multi-label or event task: `n/a` in the table
        task_metadata.json, labelvocabulary.csv, <split>.json   copies, so `table` knows the task's size and chance
        probe-done.json                         the embeddings' sha256 and the options the scores belong to

A task's probe results are kept while its embeddings and the probe's options are unchanged, redone otherwise.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import time
from pathlib import Path

import numpy as np

from eval.probes import PROBES
from eval.probes.common import FoldResult
from eval.probes.data import TaskData, read_task
from eval.probes.scoring import Scorer
from eval.results import NOT_APPLICABLE, SCORES, read_score
from eval.taskdir import LABEL_VOCABULARY, METADATA, task_splits
from hear_maeast.errors import BadInput

DONE = "probe-done.json"
TASK_COPIES = (METADATA, LABEL_VOCABULARY)


def _write(path: Path, write) -> None:
    from hear_maeast.checkpoint import atomic_write

    atomic_write(path, write)


def write_json(path: Path, obj) -> None:
    _write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2)))


def embeddings_sha256(folder: Path) -> str:
    """One digest of a task's embeddings, labels and task files (what a probe's scores depend on)."""
    metadata = json.loads((folder / METADATA).read_text())
    digest = hashlib.sha256()
    names = [*TASK_COPIES]
    for split in task_splits(metadata, folder / METADATA):
        names += [f"{split}.json", f"{split}.embeddings.npy", f"{split}.embedding-dimensions.json",
                  f"{split}.target-labels.pkl"]
    for name in names:
        digest.update(name.encode() + b"\0")
        with open(folder / name, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def run_probe(probe: str, task: TaskData, seed: int, grid: str, device: str | None):
    """(FoldResults, info) of one probe on one task; None where the probe does not apply (kNN: n/a)."""
    from eval.probes import knn, linear, mlp

    scorer = Scorer(task)
    if probe == "linear":
        return linear.run(task, scorer, seed=seed, device=device)
    if probe == "knn":
        return knn.run(task, scorer) if knn.applies(task) else None
    if probe == "mlp":
        return mlp.run(task, scorer, seed=seed, grid=grid, device=device)
    raise BadInput(f"--probe {probe!r}: no such probe; choose from {', '.join(PROBES)}")


def _predictions(r: FoldResult) -> dict:
    import torch

    out = {"target": torch.from_numpy(r.targets), "prediction": torch.from_numpy(r.probs),
           "prediction_logit": torch.from_numpy(r.logits if r.logits is not None else r.probs)}
    if r.events is not None:
        out["predicted_events"] = r.events
    return out


def _aggregate(folds: dict[str, dict]) -> dict:
    """heareval's aggregate_test_results: <key>_mean and <key>_std (sample std, as pandas) over folds."""
    keys = [k for k in next(iter(folds.values())) if all(isinstance(f.get(k), (int, float)) for f in folds.values())]
    out = {}
    for k in keys:
        values = np.array([folds[f][k] for f in folds], dtype=np.float64)
        out[f"{k}_mean"], out[f"{k}_std"] = float(values.mean()), float(values.std(ddof=1))
    return out


def write_results(out: Path, task: TaskData, probe: str, results: list[FoldResult] | None, info: dict) -> None:
    """A task's probe results in heareval's layout (see the module docstring); None: not applicable."""
    out.mkdir(parents=True, exist_ok=True)
    for name in (*TASK_COPIES, *(f"{s}.json" for s in task.splits)):
        shutil.copyfile(task.folder / name, out / name)
    if results is None:
        write_json(out / NOT_APPLICABLE, {"probe": probe, "why": "single-label clip tasks only"})
        return
    folds = {}
    for r in results:
        key = "|".join(r.test)
        _write(out / f"{key}.predictions.pkl", lambda tmp, r=r: Path(tmp).write_bytes(pickle.dumps(_predictions(r))))
        folds[key] = r.scores
    scores = dict(folds)
    if len(folds) > 1:
        scores["aggregated_scores"] = _aggregate(folds)
    scores.update({"probe": probe, **info, "postprocessing": [list(p) for p in results[0].postprocessing]})
    write_json(out / SCORES, scores)


def probe_task(probe: str, emb_dir: Path, out: Path, seed: int, grid: str, device: str | None = None
               ) -> tuple[str, float]:
    """Score one task's embeddings with one probe into `out`; (score text, seconds: 0 when kept)."""
    key = {"embeddings_sha256": embeddings_sha256(emb_dir), "probe": probe, "seed": seed, "grid": grid}
    done = out / DONE
    if done.is_file() and json.loads(done.read_text()) == key:
        return str(read_score(out)), 0.0
    if out.exists():
        shutil.rmtree(out)  # of other embeddings or options: ours to redo (it sits in a probe's results folder)
    start = time.time()
    task = read_task(emb_dir)
    found = run_probe(probe, task, seed, grid, device)
    results, info = found if found is not None else (None, {})
    write_results(out, task, probe, results, info)
    write_json(done, key)
    return str(read_score(out)), time.time() - start
