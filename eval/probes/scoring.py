"""Scores with heareval's own score functions (`heareval.score`, which imports no TensorFlow and no Lightning), and
heareval's event post-processing (frames -> events) re-implemented from heareval.predictions.task_predictions,
which cannot be imported without Lightning.

Scene tasks: each metric of the task's `evaluation` list is called with (probabilities [clips, labels], one-hot or
multi-hot targets), the first being the score, as heareval does (mAP for multi-label tasks, never argmax).
Event tasks: frame probabilities become events per clip (median filter over `median_filter_ms`, threshold 0.5,
adjacent frames merged, events shorter than `min_duration` ms dropped) for every point of the task's
post-processing grid; the best on the validation split is used on the test split; a NaN score counts as 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from eval.probes.data import SplitData, TaskData
from eval.protocol import first_value, score_functions

# heareval.predictions.task_predictions.EVENT_POSTPROCESSING_GRID (its default when a task sets none)
EVENT_POSTPROCESSING_GRID = {"median_filter_ms": [250], "min_duration": [125, 250]}
THRESHOLD = 0.5

Postprocessing = tuple  # ((name, value), ...), heareval's form (JSON-serialisable as a list of pairs)


def frames_to_events(probs: np.ndarray, times: np.ndarray, labels: list[str], median_filter_ms: float,
                     min_duration: float) -> list[dict]:
    """One clip's frame probabilities [T, L] at `times` [T] (ms) -> [{"label", "start", "end"}] (heareval's rule)."""
    from scipy.ndimage import median_filter

    order = np.argsort(times, kind="stable")
    times, probs = times[order], probs[order]
    if median_filter_ms and len(times) > 1:
        width = int(round(median_filter_ms / float(np.mean(np.diff(times)))))
        if width:
            probs = median_filter(probs, size=(width, 1))
    active = probs > THRESHOLD  # [T, L]
    events = []
    for k in range(active.shape[1]):
        on = np.flatnonzero(active[:, k])
        if not len(on):
            continue
        breaks = np.flatnonzero(np.diff(on) != 1)
        for first, last in zip(np.r_[on[0], on[breaks + 1]], np.r_[on[breaks], on[-1]]):
            if times[last] - times[first] >= min_duration:
                events.append({"label": labels[k], "start": float(times[first]), "end": float(times[last])})
    events.sort(key=lambda e: e["start"])
    return events


def events_of(probs: np.ndarray, split: SplitData, labels: list[str], post: Postprocessing) -> dict[str, list]:
    """{clip slug: events} for all clips of an event split, from frame probabilities [rows, L]."""
    return {slug: frames_to_events(probs[rows], times, labels, **dict(post))
            for slug, (rows, times) in split.clips().items()}  # first-seen order, as heareval's dict


@dataclass
class Scored:
    score: float  # the primary score (NaN -> 0 for event scores, as heareval's model selection)
    postprocessing: Postprocessing = ()
    events: dict | None = None  # event tasks: the predicted events with that post-processing


class Scorer:
    """The task's score functions from heareval.score, and its event post-processing grid."""

    def __init__(self, task: TaskData):
        self.task = task
        self.functions = score_functions(task.metadata, task.label_to_idx)
        self.primary = self.functions[0]
        self.maximize = bool(self.primary.maximize)
        grid = task.metadata.get("evaluation_params", {}).get("event_postprocessing_grid", EVENT_POSTPROCESSING_GRID)
        keys = sorted(grid)  # sklearn's ParameterGrid order, as heareval
        self.grid: list[Postprocessing] = [tuple(zip(keys, v)) for v in product(*(grid[k] for k in keys))]

    def better(self, a: float, b: float | None) -> bool:
        return b is None or (a > b if self.maximize else a < b)

    def validate(self, probs: np.ndarray, split: SplitData, post: Postprocessing | None = None) -> Scored:
        """Primary score of probabilities on a split; event tasks: the best point of the post-processing grid
        (or `post` alone)."""
        if not self.task.is_event:
            return Scored(first_value(self.primary(probs, split.y)))
        results = []
        for p in ([post] if post else self.grid):
            events = events_of(probs, split, self.task.labels, p)
            score = first_value(self.primary(events, split.events))
            results.append(Scored(0.0 if np.isnan(score) else score, p, events))
        best = results[0]
        for r in results[1:]:  # heareval sorts (score, postprocessing) descending: the first best is kept here
            if self.better(r.score, best.score):
                best = r
        return best

    def test_scores(self, probs: np.ndarray, split: SplitData, post: Postprocessing = ()) -> tuple[dict, dict | None]:
        """heareval's test result keys: test_score (the primary), test_<metric>, test_<metric>_<subscore>."""
        if self.task.is_event:
            args = (events_of(probs, split, self.task.labels, post), split.events)
        else:
            args = (probs, split.y)
        out: dict[str, float] = {}
        for fn in self.functions:
            value = fn(*args)
            if isinstance(value, tuple):
                out[f"test_{fn}"] = float(value[0][1])
                out.update({f"test_{fn}_{sub}": float(v) for sub, v in value})
            else:
                out[f"test_{fn}"] = float(value)
        out["test_score"] = out[f"test_{self.primary}"]
        return out, (args[0] if self.task.is_event else None)
