"""Published scores on the 19 official HEAR tasks: the reference rows of `hear-maeast table` (eval.table).

All are heareval's protocol (frozen embeddings, its MLP probe on each task's primary metric, the mean over folds),
each with its model and source (`SOURCES`; docs/evaluation.md, "Reference rows", says how they were read):
- `best published`: the best score published per task as far as the sources below go (read 2026-12-07), the HEAR
  2021 leaderboard's where no later paper or entry beats it;
- `HEAR 2021 best`: the best of the HEAR 2021 entries on the leaderboard (Turian et al., PMLR 176);
- `MSM-MAE paper`: the scores of MSM-MAE's own paper known here (Niizumi et al., PMLR 166, abstract).

Which tasks are official: `table` sees only results folders, so a task counts as the official one when its folder
name is one of the 19 AND its clip count, summed over the split JSONs heareval copied into the results when it
embedded the task, is within 1 % of the official task's (hearbenchmark.com/hear-tasks, "# clips"). A task built
from a subset and named like an official one (the 85-clip Speech Commands subset as `...-full`) gets no
reference row.
"""

from __future__ import annotations

from typing import NamedTuple

from eval.results import Score
from eval.protocol import TaskFacts


class Published(NamedTuple):
    score: float
    model: str
    source: str  # a key of SOURCES


SOURCES = {
    "HEAR 2021": "hearbenchmark.com leaderboard (docs/leaderboard.csv), the HEAR 2021 entries; Turian et al., "
                 "\"HEAR: Holistic Evaluation of Audio Representations\", PMLR 176:125-145, 2022",
    "EfficientAT 2023": "hearbenchmark.com leaderboard, its entry after 2021; Schmid, Koutini, Widmer, "
                        "\"Low-Complexity Audio Embedding Extractors\", EUSIPCO 2023 (arXiv 2303.01879)",
    "CED 2023": "Dinkel et al., \"CED: Consistent Ensemble Distillation for Audio Tagging\", ICASSP 2024 "
                "(arXiv 2308.11957, Aug 2023): heareval's runners, scores in the authors' README (RicherMans/CED)",
    "MW-MAE 2024": "Yadav et al., \"Masked Autoencoders with Multi-Window Local-Global Attention Are Better Audio "
                   "Learners\", ICLR 2024 (arXiv 2306.00561): the mean of 10 runs",
    "MSM-MAE 2022": "Niizumi et al., \"Masked Spectrogram Modeling using Masked Autoencoders for Learning "
                    "General-purpose Audio Representation\", PMLR 166:1-24, 2022 (abstract)",
}

# task folder: (clips in the official task, the best HEAR 2021 entry)
HEAR_2021 = {
    "dcase2016_task2-hear2021-full": (72, Published(0.925, "CP-JKU PaSST 2lvl+mel", "HEAR 2021")),
    "nsynth_pitch-v2.2.3-5h": (5000, Published(0.878, "GURA Avg Hubert+Crepe", "HEAR 2021")),
    "nsynth_pitch-v2.2.3-50h": (49060, Published(0.900, "CREPE", "HEAR 2021")),
    "speech_commands-v0.0.2-5h": (22890, Published(0.976, "IUT-CSE MLP (keyword)", "HEAR 2021")),
    "speech_commands-v0.0.2-full": (100503, Published(0.978, "IUT-CSE MLP (keyword)", "HEAR 2021")),
    "beehive_states_fold0-v2-full": (576, Published(0.878, "Sony UDONS ViT", "HEAR 2021")),
    "beijing_opera-v1.0-hear2021-full": (236, Published(0.975, "OpenL3", "HEAR 2021")),
    "tfds_crema_d-1.0.0-full": (7438, Published(0.752, "GURA Fuse Hubert", "HEAR 2021")),
    "esc50-v2.0.0-full": (2000, Published(0.947, "CP-JKU PaSST (3 variants)", "HEAR 2021")),
    "fsd50k-v1.0-full": (51185, Published(0.641, "CP-JKU PaSST (3 variants)", "HEAR 2021")),
    "gunshot_triangulation-v1.0-full": (88, Published(0.967, "GURA Fuse wav2vec2", "HEAR 2021")),
    "tfds_gtzan-1.0.0-full": (1000, Published(0.883, "CP-JKU PaSST (3 variants)", "HEAR 2021")),
    "tfds_gtzan_music_speech-1.0.0-full": (128, Published(0.992, "CVSSP PANNs", "HEAR 2021")),
    "libricount-v1.0.0-hear2021-full": (5720, Published(0.785, "Logitech AI SERAB BYOL-S", "HEAR 2021")),
    "maestro-v3.0.0-5h": (185, Published(0.469, "GURA Cat H+w+C", "HEAR 2021")),
    "mridangam_stroke-v1.5-full": (6977, Published(0.975, "GURA Fuse Cat H+w+C (time)", "HEAR 2021")),
    "mridangam_tonic-v1.5-full": (6977, Published(0.942, "IUT-CSE MLP (keyword)", "HEAR 2021")),
    "vocal_imitation-v1.1.3-full": (5601, Published(0.215, "GURA Fuse Cat H+w+C (time)", "HEAR 2021")),
    "vox_lingua_top10-hear2021-full": (972, Published(0.720, "GURA Fuse Cat H+w+C", "HEAR 2021")),
}
# published since, higher than the best HEAR 2021 entry
LATER = {
    "esc50-v2.0.0-full": Published(0.9665, "CED-Base", "CED 2023"),
    "fsd50k-v1.0-full": Published(0.6548, "CED-Base", "CED 2023"),
    "vocal_imitation-v1.1.3-full": Published(0.2269, "CED-Base", "CED 2023"),
    "tfds_gtzan-1.0.0-full": Published(0.908, "CP-JKU mn40_as (e1+l+all_se)", "EfficientAT 2023"),
    "libricount-v1.0.0-hear2021-full": Published(0.858, "MSM-MAE", "MSM-MAE 2022"),
    "mridangam_tonic-v1.5-full": Published(0.979, "MW-MAE-B-4x16-4l", "MW-MAE 2024"),
}
OFFICIAL_CLIPS = {task: clips for task, (clips, _) in HEAR_2021.items()}
CLIPS_TOLERANCE = 0.01  # relative: the published counts are the tasks' as hear-preprocess wrote them
HEAR_2021_BEST = {task: best for task, (_, best) in HEAR_2021.items()}
BEST_PUBLISHED = {**HEAR_2021_BEST, **LATER}
MSM_MAE_PAPER = {
    "tfds_crema_d-1.0.0-full": Published(0.734, "MSM-MAE", "MSM-MAE 2022"),
    "libricount-v1.0.0-hear2021-full": Published(0.858, "MSM-MAE", "MSM-MAE 2022"),
}
REFERENCES = {"best published": BEST_PUBLISHED, "HEAR 2021 best": HEAR_2021_BEST, "MSM-MAE paper": MSM_MAE_PAPER}
BEST_NOTE = "`best published`: {cells}. Sources: {sources}."


def is_official(task: str, facts: TaskFacts | None) -> bool:
    """The task folder is one of the 19 HEAR 2021 tasks with the official task's clip count (see the docstring)."""
    official = OFFICIAL_CLIPS.get(task)
    return official is not None and facts is not None and abs(facts.total - official) <= CLIPS_TOLERANCE * official


def reference_rows(tasks: list[str], facts: dict[str, TaskFacts | None]) -> dict[str, dict[str, Score]]:
    """{reference name: {task: Score}} for the official tasks among `tasks`; references with none are left out."""
    rows = {}
    for ref_name, ref in REFERENCES.items():
        row = {t: Score(ref[t].score) for t in tasks if t in ref and is_official(t, facts[t])}
        if row:
            rows[ref_name] = row
    return rows


def best_note(tasks: list[str], facts: dict[str, TaskFacts | None]) -> str | None:
    """The note under a table with a `best published` row: each cell's model and source, the sources in full."""
    shown = [t for t in tasks if is_official(t, facts[t])]
    if not shown:
        return None
    cells = "; ".join(f"{t}: {BEST_PUBLISHED[t].model} ({BEST_PUBLISHED[t].source})" for t in shown)
    used = sorted({BEST_PUBLISHED[t].source for t in shown})
    return BEST_NOTE.format(cells=cells, sources="; ".join(f"{k}: {SOURCES[k]}" for k in used))
