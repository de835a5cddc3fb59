"""heareval's evaluation protocol, one home, used by heareval driving (eval/runner.py reads its results), the probes
(eval/probes/) and fine-tuning (eval/finetune.py), so that a change to the protocol changes all three:

- `rotation`: which splits train, validate and test (heareval's get_splits_from_metadata / data_splits_from_folds:
  train/valid/test once, or each sorted fold tested once, the next one validating, the others training);
- `aggregate`: the mean and std over folds of every number (heareval's aggregate_test_results: a pandas frame, NaN
  skipped, std with ddof 1);
- `score_functions`, `first_value`: the task's metrics from heareval.score (the first is the primary score; a
  metric returning sub-scores counts by its first);
- the leaderboard facts of a task (`task_facts`): its size, `chance_level` (predictions that ignore the audio) and
  `majority_level` (always the training clips' most frequent label).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from eval.taskdir import EVENT, METADATA, TRAINVALTEST, check_metadata, read_split, read_vocabulary, task_splits
from hear_maeast.errors import BadInput


def rotation(metadata: dict, splits: list[str]) -> list[dict[str, list[str]]]:
    """heareval's data splits: [{"train": [...], "valid": [...], "test": [...]}], one per tested fold. `splits`:
    the task's (eval.taskdir.task_splits, which refuses a k-fold task of fewer than 3 folds)."""
    if metadata["split_mode"] == TRAINVALTEST:
        return [{"train": ["train"], "valid": ["valid"], "test": ["test"]}]
    folds = sorted(splits)
    k = len(folds)
    return [{"train": [f for f in folds if f not in (folds[i], folds[(i + 1) % k])],
             "valid": [folds[(i + 1) % k]], "test": [folds[i]]} for i in range(k)]


def tested_splits(metadata: dict, splits: list[str]) -> list[str]:
    """The splits a task's scores are measured on: `test`, or every fold (each is tested once)."""
    return ["test"] if metadata["split_mode"] == TRAINVALTEST else list(splits)


def aggregate(folds: dict[str, dict]) -> dict[str, float]:
    """<key>_mean and <key>_std over folds of every number all folds hold, as heareval's aggregate_test_results."""
    import pandas as pd

    keys = [k for k in next(iter(folds.values())) if all(isinstance(f.get(k), (int, float)) for f in folds.values())]
    frame = pd.DataFrame.from_dict({f: {k: r[k] for k in keys} for f, r in folds.items()}, orient="index")
    out = {}
    for key in frame:
        out[f"{key}_mean"] = float(frame[key].mean())
        out[f"{key}_std"] = float(frame[key].std())
    return out


def score_functions(metadata: dict, label_to_idx: dict) -> list:
    """heareval's own score functions for the task's `evaluation` list (the first is the primary score)."""
    import warnings

    with warnings.catch_warnings():  # its dependencies warn about pkg_resources on import; not ours to fix
        warnings.simplefilter("ignore")
        from heareval.score import available_scores

    unknown = [s for s in metadata["evaluation"] if s not in available_scores]
    if unknown:
        raise BadInput(f"task_metadata.json names scores {unknown} that heareval does not know "
                       f"(it knows {sorted(available_scores)})")
    return [available_scores[s](label_to_idx=label_to_idx) for s in metadata["evaluation"]]


def first_value(value) -> float:
    """A score function's number: the value, or the first sub-score of one that returns ((name, value), ...)."""
    return float(value[0][1] if isinstance(value, tuple) else value)


# ---------------------------------------------------------------------------------------------- size and chance
ACCURACY_METRICS = ("top1_acc", "pitch_acc")  # one label per clip, exact match: chance is 1 / n_labels
CONSTANT_CHANCE = {"aucroc": 0.5, "d_prime": 0.0}  # scores that ignore the audio rank at random


@dataclass(frozen=True)
class TaskFacts:
    """What a leaderboard reader needs to know about a task besides the scores."""

    split_mode: str
    clips: dict[str, int]  # clips per split, in the metadata's order
    metric: str  # the primary metric: the first of `evaluation`
    chance: float | None  # expected primary score of predictions that ignore the audio; None where undefined
    majority: float | None = None  # accuracy of always answering the training clips' most frequent label

    @property
    def total(self) -> int:
        return sum(self.clips.values())

    def size(self) -> str:
        """`62/12/11` (train/valid/test) or `100 in 5 folds`."""
        if self.split_mode == TRAINVALTEST and list(self.clips) == ["train", "valid", "test"]:
            return "/".join(str(n) for n in self.clips.values())
        return f"{self.total} in {len(self.clips)} folds"


def chance_level(metric: str, labels: list[str], tested: list[list], embedding_type: str) -> float | None:
    """Expected score of predictions that ignore the audio, for the primary metric over the tested clips' labels.

    top1_acc / pitch_acc: 1 / n_labels (a uniform guess). mAP: the mean over the vocabulary of the fraction of
    tested clips carrying each label (the average precision of a random ranking, macro-averaged as heareval
    does). aucroc 0.5, d_prime 0. Event metrics (onset F-measures): None, no label-free level exists."""
    if embedding_type == EVENT:
        return None
    if metric in ACCURACY_METRICS:
        return 1.0 / max(1, len(labels))
    if metric == "mAP":
        counts = {label: 0 for label in labels}
        for clip_labels in tested:
            for label in set(clip_labels):
                counts[label] = counts.get(label, 0) + 1
        return sum(counts.values()) / max(1, len(tested)) / max(1, len(counts))
    return CONSTANT_CHANCE.get(metric)


def majority_level(metric: str, splits: dict[str, dict], split_mode: str) -> float | None:
    """Accuracy metrics only: the score of always answering the most frequent label of the training clips, which
    beats a uniform guess on a skewed task. train/valid/test: the `train` split's, scored on `test`; folds: for each
    fold, the other folds' label scored on it, averaged over folds as heareval averages them. None otherwise."""
    if metric not in ACCURACY_METRICS:
        return None

    def firsts(clips: dict) -> list:
        return [labels[0] for labels in clips.values() if labels]

    if split_mode == TRAINVALTEST:
        pairs = [(firsts(splits.get("train", {})), firsts(splits.get("test", {})))]
    else:
        pairs = [([x for other, c in splits.items() if other != fold for x in firsts(c)], firsts(clips))
                 for fold, clips in splits.items()]
    scores = []
    for train, test in pairs:
        if train and test:
            top = Counter(train).most_common(1)[0][0]  # a tie goes to the label seen first
            scores.append(sum(label == top for label in test) / len(test))
    return sum(scores) / len(scores) if scores else None


def task_facts(task_dir: Path) -> TaskFacts:
    """Size and chance level of a task folder (or of a heareval results folder, which holds copies of the task's
    metadata, vocabulary and split JSONs made when it was embedded)."""
    metadata = check_metadata(task_dir)
    splits = {s: read_split(task_dir, s) for s in task_splits(metadata, Path(task_dir) / METADATA)}
    # every fold is a test fold once; a train/valid/test task tests its `test` split
    tested = [splits.get(s, {}) for s in tested_splits(metadata, list(splits))]
    metric = metadata["evaluation"][0]
    chance = chance_level(metric, read_vocabulary(task_dir), [labels for clips in tested for labels in clips.values()],
                          metadata["embedding_type"])
    majority = majority_level(metric, splits, metadata["split_mode"])
    return TaskFacts(metadata["split_mode"], {s: len(c) for s, c in splits.items()}, metric, chance, majority)
