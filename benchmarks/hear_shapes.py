"""The 19 HEAR 2021 leaderboard tasks' shapes and the plan of their clips (benchmarks/hear_scale.py writes them).

The shapes: each task's name, splits, clip counts, clip length (FSD50K: a spread of lengths), labels, metrics and
evaluation parameters, with where each number comes from (`SHAPES`, `BY_FOLDER`; `select` picks them for --task).
The plan: from a shape, a fraction and a seed, every clip to write, with its length and its labels or events
(`plan_task`), and the files that describe the task (`task_metadata`, `split_json`, `vocabulary_csv`) and its size
on disk (`disk_bytes`). The audio of the clips is benchmarks/hear_scale_audio.py's.
"""

from __future__ import annotations

import json
import math
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from eval import synth  # noqa: E402
from hear_maeast.errors import BadInput  # noqa: E402

SAMPLE_RATE = synth.SAMPLE_RATE  # 16000 Hz: the only rate written (the models' rate)
GENERATOR_VERSION = 2  # bump when the audio recipe (hear_scale_audio.py) changes, so re-runs rewrite old tasks
WAV_HEADER = 44  # bytes of a PCM wav header as soundfile writes it

# ---------------------------------------------------------------------------------------------- the shapes
HP = "hearbenchmark/hear-preprocess"
SECRET = f"{HP} hearpreprocess/secrettasks/hearsecrettasks"
TASKS_PAGE = "hearbenchmark.com/hear-tasks.html Task Summary (= Turian et al. 2022, PMLR 176, Table 1)"
SPLIT_RULE = (f"{HP} hearpreprocess/pipeline.py@1ce771d split_train_test_val: missing splits drawn from the split "
              "keys, n_valid = round(n x VALIDATION_PERCENTAGE / 100); the released pipeline splits 80/10/10 "
              "(hearpreprocess/nsynth_pitch_kfold.py: 'train/val/test is 80/10/10')")
EQUAL_FOLDS = ("folds: the documented total cut into nfolds equal parts (the folds are drawn from shuffled split keys; "
               "tfds_crema_d.py's '1488 or 1487 samples per fold' shows equal parts), so each fold's count is +-1")


def tvt(train: int, valid: int, test: int) -> tuple[tuple[str, int], ...]:
    return (("train", train), ("valid", valid), ("test", test))


def folds(total: int, k: int, first: int | None = None) -> tuple[tuple[str, int], ...]:
    """`total` clips in k folds fold00..: equal parts (the first ones 1 larger), or `first` in fold00 and the rest
    equal."""
    if first is not None:
        rest = folds(total - first, k - 1)
        return (("fold00", first),) + tuple((f"fold{i + 1:02d}", n) for i, (_, n) in enumerate(rest))
    return tuple((f"fold{i:02d}", total // k + (i < total % k)) for i in range(k))


def names(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i:0{len(str(n - 1))}d}" for i in range(n))


PITCHES = tuple(str(p) for p in range(21, 109))  # MIDI 21-108 (A0-C8): nsynth_pitch.py pitch_range_min/max
ESC50 = ("airplane breathing brushing_teeth can_opening car_horn cat chainsaw chirping_birds church_bells clapping "
         "clock_alarm clock_tick coughing cow crackling_fire crickets crow crying_baby dog door_wood_creaks "
         "door_wood_knock drinking_sipping engine fireworks footsteps frog glass_breaking hand_saw helicopter hen "
         "insects keyboard_typing laughing mouse_click pig pouring_water rain rooster sea_waves sheep siren sneezing "
         "snoring thunderstorm toilet_flush train vacuum_cleaner washing_machine water_drops wind").split()
ACC_METRICS = ("top1_acc", "mAP", "d_prime", "aucroc")


@dataclass(frozen=True)
class Shape:
    """One HEAR 2021 task as the official preprocessing wrote it; `source` says where each number comes from and
    `approximate` which of them are not exact, and why ("" when all are)."""

    task_name: str
    version: str
    mode: str
    embedding_type: str  # scene | event
    prediction_type: str  # multiclass | multilabel
    split_mode: str  # trainvaltest | new_split_kfold | presplit_kfold
    splits: tuple[tuple[str, int], ...]  # (split name, clips) of the real task
    sample_duration: float | None  # seconds; None: variable, drawn from `lengths`
    labels: tuple[str, ...]  # the vocabulary, in labelvocabulary.csv order
    evaluation: tuple[str, ...]  # heareval's metrics, the first is the score
    source: str
    approximate: str = ""
    lengths: dict | None = None  # variable length: {split: (min, mean, max) seconds}
    evaluation_params: dict | None = None
    extra_metadata: dict = field(default_factory=dict)  # other keys of the real task_metadata.json
    sound: str = "class"  # label sounds: "class" (one instrument and pitch per label), "pitch" (NSynth), "piano"
    event_s: tuple[float, float, float, float] = (0.3, 2.0, 0.5, 4.0)  # event length lo, hi; gap after it lo, hi

    @property
    def folder(self) -> str:
        return f"{self.task_name}-{self.version}-{self.mode}"

    @property
    def clips(self) -> int:
        return sum(n for _, n in self.splits)

    def mean_seconds(self, split: str) -> float:
        return self.lengths[split][1] if self.sample_duration is None else self.sample_duration

    @property
    def hours(self) -> float:
        return sum(n * self.mean_seconds(s) for s, n in self.splits) / 3600


SHAPES: tuple[Shape, ...] = (
    Shape("dcase2016_task2", "hear2021", "full", "event", "multilabel", "trainvaltest", tvt(58, 7, 7), 120.0,
          ("clearthroat", "cough", "doorslam", "drawer", "keyboard", "keys", "knock", "laughter", "pageturn",
           "phone", "speech"), ("event_onset_200ms_fms", "segment_1s_er"),
          f"{HP} hearpreprocess/dcase2016_task2.py@20dc228 (task_config: version, sample_duration 120.0, evaluation; "
          f"dev and eval mixed as 'train' and re-split); 72 clips: {TASKS_PAGE}; 11 labels: the DCASE 2016 task 2 "
          f"classes; split: {SPLIT_RULE}. No evaluation_params in the metadata: heareval applies its "
          "TASK_SPECIFIC_PARAM_GRID['dcase2016_task2'] = {check_val_every_n_epoch: [10]} by task name "
          "(heareval/predictions/task_predictions.py line 52, heareval 2021.1.3) and its default "
          "EVENT_POSTPROCESSING_GRID (median_filter_ms 250, min_duration 125/250)",
          "train/valid/test 58/7/7: the 80/10/10 split rule applied to the 72 clips, not read from the archive"),
    Shape("nsynth_pitch", "v2.2.3", "5h", "scene", "multiclass", "trainvaltest", tvt(4000, 500, 500), 4.0, PITCHES,
          ("pitch_acc", "chroma_acc"),
          f"{HP} hearpreprocess/nsynth_pitch.py@0e91411 (sample_duration 4.0, pitch_range_min 21, pitch_range_max "
          f"108, evaluation, mode 5h); 5000 clips: {TASKS_PAGE}; split: 5 h of train+valid at 80:10 (16000 s, 2000 s) "
          "and test as large as valid",
          "train/valid/test 4000/500/500: the stored nsynth_pitch.py caps splits at 5 h x 3/4, 1/4, 1/4 (5625 clips), "
          "the published total is 5000; 4000/500/500 is the 80/10/10 rule's split of it (it also reproduces the "
          "50 h total exactly)",
          extra_metadata={"pitch_range_min": 21, "pitch_range_max": 108}, sound="pitch"),
    Shape("nsynth_pitch", "v2.2.3", "50h", "scene", "multiclass", "trainvaltest", tvt(40000, 5000, 4060), 4.0,
          PITCHES, ("pitch_acc", "chroma_acc"),
          f"{HP} hearpreprocess/nsynth_pitch.py@0e91411 (mode 50h); 49060 clips: {TASKS_PAGE}; split: 50 h of "
          "train+valid at 80:10 (40000, 5000 clips) and the whole NSynth test set in range (49060 - 45000 = 4060 of "
          "its 4096 notes)",
          "train/valid 40000/5000 from the 80/10/10 rule; test 4060 = published total minus those",
          extra_metadata={"pitch_range_min": 21, "pitch_range_max": 108}, sound="pitch"),
    Shape("speech_commands", "v0.0.2", "5h", "scene", "multiclass", "trainvaltest", tvt(16000, 2000, 4890), 1.0,
          ("_silence_", "_unknown_", "down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes"),
          ("top1_acc",),
          f"{HP} hearpreprocess/speech_commands.py@8b18fb2 (WORDS, _silence_, _unknown_, sample_duration 1.0, "
          "evaluation, max_task_duration_by_split test None); 22890 clips: "
          f"{TASKS_PAGE}; split: 5 h of train+valid at 80:10 and the whole official test set (4890, TFDS "
          "speech_commands test split)",
          "train/valid 16000/2000 from the 80/10/10 rule (with the test set's 4890 it gives the published 22890)"),
    Shape("speech_commands", "v0.0.2", "full", "scene", "multiclass", "trainvaltest", tvt(85511, 10102, 4890), 1.0,
          ("_silence_", "_unknown_", "down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes"),
          ("top1_acc",),
          f"{HP} hearpreprocess/speech_commands.py@8b18fb2 (the TensorFlow dataset's split method); 100503 clips: "
          f"{TASKS_PAGE}; split: TFDS speech_commands 0.0.2 train/validation/test 85511/10102/4890 (sum 100503)"),
    Shape("beehive_states_fold0", "v2", "full", "scene", "multiclass", "trainvaltest", tvt(256, 32, 288), 600.0,
          ("NOQUEEN", "QUEEN"), ("aucroc", "mAP", "d_prime", "top1_acc"),
          f"{SECRET}/beehive_states_fold0.py@cbcba42 (sample_duration 60 * 10, evaluation, '576 * 600 = 345600 "
          f"secs', train hive1 / test hive3, hive1 split into train and valid); 576 clips: {TASKS_PAGE}",
          "the clips per hive are not published: hive1 and hive3 taken as 288 each, hive1 split 8:1 (80:10)"),
    Shape("beijing_opera", "v1.0-hear2021", "full", "scene", "multiclass", "new_split_kfold", folds(236, 5), 4.77,
          ("bangu", "daluo", "naobo", "xiaoluo"), ACC_METRICS,
          f"{SECRET}/beijing_opera.py@c4cd11e (nfolds 5, sample_duration 4.77, evaluation, '236 * 4.77'); 236 clips: "
          f"{TASKS_PAGE}; 4 labels: the dataset's 4 instrument classes",
          EQUAL_FOLDS),
    Shape("tfds_crema_d", "1.0.0", "full", "scene", "multiclass", "new_split_kfold", folds(7438, 5), 5.0,
          ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD"), ACC_METRICS,
          f"{SECRET}/tfds_crema_d.py@cbcba42 (nfolds 5, sample_duration 5, evaluation, '1488 or 1487 samples per "
          f"fold'); 7438 clips: {TASKS_PAGE}; 6 labels: CREMA-D's six emotions",
          EQUAL_FOLDS),
    Shape("esc50", "v2.0.0", "full", "scene", "multiclass", "presplit_kfold", folds(2000, 5), 5.0, tuple(ESC50),
          ACC_METRICS,
          f"{SECRET}/esc50.py@cbcba42 (presplit_kfold, nfolds 5, sample_duration 5, evaluation); 2000 clips: "
          f"{TASKS_PAGE}; ESC-50's 5 folds of 400 clips and 50 classes"),
    Shape("fsd50k", "v1.0", "full", "scene", "multilabel", "trainvaltest", tvt(36784, 4170, 10231), None,
          names("fsd50k_class_", 200), ("mAP", "d_prime", "aucroc", "top1_acc"),
          f"{SECRET}/fsd50k.py@497c4f2 (multilabel, sample_duration None, evaluation, official dev split "
          "train/val, eval as test, 12 train clips >= 30 s removed); 51185 clips: "
          f"{TASKS_PAGE}; FSD50K (zenodo.org/record/4060432): 200 classes, dev 40966 clips (train 36796, val 4170) "
          "80.4 h, eval 10231 clips 27.9 h, clips 0.3-30 s",
          "the 12 removed clips taken from train (36796 - 12); clip lengths: min/mean/max per split as documented "
          "(dev mean 80.4 h / 40966 = 7.07 s, eval 27.9 h / 10231 = 9.82 s), the shape between them a truncated "
          "log-normal (sigma 0.9), not the real histogram",
          lengths={"train": (0.3, 7.07, 30.0), "valid": (0.3, 7.07, 30.0), "test": (0.3, 9.82, 30.0)}),
    Shape("gunshot_triangulation", "v1.0", "full", "scene", "multiclass", "new_split_kfold", folds(88, 7, first=16),
          1.5, ("mic1", "mic2", "mic3", "mic4"), ACC_METRICS,
          f"{SECRET}/gunshot_triangulation.py@497c4f2 (nfolds 7 = one per firearm, sample_duration 1.5, evaluation, "
          f"22 shots x 4 mics, firearm 1 fired 4 shots and 2-7 fired 3 each); 88 clips: {TASKS_PAGE}",
          "which fold holds firearm 1's 16 clips depends on the preprocessing's shuffle; taken as fold00"),
    Shape("tfds_gtzan", "1.0.0", "full", "scene", "multiclass", "new_split_kfold", folds(1000, 10), 30.0,
          ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"), ACC_METRICS,
          f"{SECRET}/tfds_gtzan.py@cbcba42 (nfolds 10, sample_duration 30.0, evaluation, '30.0*1000 seconds'); "
          f"1000 clips: {TASKS_PAGE}; 10 genres",
          EQUAL_FOLDS),
    Shape("tfds_gtzan_music_speech", "1.0.0", "full", "scene", "multiclass", "new_split_kfold", folds(128, 10), 30.0,
          ("music", "speech"), ACC_METRICS,
          f"{SECRET}/tfds_gtzan_music_speech.py@c4cd11e (nfolds 10, sample_duration 30.0, evaluation); 128 clips: "
          f"{TASKS_PAGE}",
          EQUAL_FOLDS),
    Shape("libricount", "v1.0.0-hear2021", "full", "scene", "multiclass", "new_split_kfold", folds(5720, 5), 5.0,
          tuple(sorted(str(i) for i in range(11))), ACC_METRICS,
          f"{SECRET}/libricount.py@cbcba42 (nfolds 5, sample_duration 5.0, evaluation, '5.0 * 5720', 0-10 "
          f"speakers); 5720 clips: {TASKS_PAGE}",
          EQUAL_FOLDS),
    Shape("maestro", "v3.0.0", "5h", "event", "multilabel", "new_split_kfold", folds(185, 5), 120.0, PITCHES,
          ("event_onset_50ms_fms", "event_onset_offset_50ms_20perc_fms"),
          f"{SECRET}/maestro.py@c4cd11e (nfolds 5, sample_duration 120.0, evaluation, evaluation_params, "
          "use_scoring_for_early_stopping False, mode 5h: max_task_duration_by_fold 3600 * 5 / 4 = 37 clips, labels "
          f"MIDI pitches 21-108); 185 clips: {TASKS_PAGE}",
          "events: the real MAESTRO is polyphonic piano, about 10 notes a second; these notes come one at a time, "
          "onsets 0.25-0.8 s apart (about 3 a second)",
          evaluation_params={"event_postprocessing_grid": {"median_filter_ms": [150], "min_duration": [50]},
                             "task_specific_param_grid": {"max_epochs": [50], "check_val_every_n_epoch": [1]}},
          extra_metadata={"use_scoring_for_early_stopping": False}, sound="piano", event_s=(0.15, 0.5, 0.1, 0.3)),
    Shape("mridangam_stroke", "v1.5", "full", "scene", "multiclass", "new_split_kfold", folds(6977, 5), 0.81,
          ("bheem", "cha", "dheem", "dhin", "num", "ta", "tha", "tham", "thi", "thom"), ACC_METRICS,
          f"{SECRET}/mridangam_stroke.py@c4cd11e (nfolds 5, sample_duration 0.81, evaluation, '0.81 * 6977', 10 "
          f"strokes); 6977 clips: {TASKS_PAGE}",
          EQUAL_FOLDS),
    Shape("mridangam_tonic", "v1.5", "full", "scene", "multiclass", "new_split_kfold", folds(6977, 5), 0.81,
          ("b", "c", "csh", "d", "dsh", "e"), ACC_METRICS,
          f"{SECRET}/mridangam_tonic.py@c4cd11e (mridangam_stroke's config, 6 tonics); 6977 clips: {TASKS_PAGE}",
          EQUAL_FOLDS),
    Shape("vocal_imitation", "v1.1.3", "full", "scene", "multiclass", "new_split_kfold", folds(5601, 3), 11.26,
          names("reference_", 302), ("mAP", "d_prime", "aucroc", "top1_acc"),
          f"{SECRET}/vocal_imitation.py@497c4f2 (nfolds 3, sample_duration 11.26, evaluation, '11.26 * 5601', label "
          f"= the imitated reference sound); 5601 clips: {TASKS_PAGE}; 302 labels: VocalImitationSet's 302 "
          "reference sounds",
          f"302 labels: the set's reference sounds, not counted in the included imitations; {EQUAL_FOLDS}"),
    Shape("vox_lingua_top10", "hear2021", "full", "scene", "multiclass", "new_split_kfold", folds(972, 5), 18.64,
          names("language_", 10), ACC_METRICS,
          f"{SECRET}/vox_lingua_top10.py@497c4f2 (nfolds 5, sample_duration 18.64, evaluation, NUMBER_OF_LANGUAGES "
          f"10, '18.64 * 972'); 972 clips: {TASKS_PAGE}",
          f"label names (the 10 languages are not named in the config); {EQUAL_FOLDS}"),
)
BY_FOLDER = {s.folder: s for s in SHAPES}


def _check_table() -> None:
    for s in SHAPES:
        assert s.split_mode == "trainvaltest" or all(name.startswith("fold") for name, _ in s.splits), s.folder
        assert (s.sample_duration is None) == (s.lengths is not None), s.folder
        assert len(set(s.labels)) == len(s.labels) and all(n > 0 for _, n in s.splits), s.folder
        lo, hi, gap_lo, _ = s.event_s
        assert lo + gap_lo > 0.2, f"{s.folder}: onsets must stay more than 200 ms apart"


_check_table()


def select(requested: list[str] | None) -> list[Shape]:
    """The shapes named by --task (a folder name, or a task_name that names one folder); all when none."""
    if not requested:
        return list(SHAPES)
    chosen = []
    for name in requested:
        hits = [s for s in SHAPES if name in (s.folder, s.task_name)]
        if len(hits) != 1:
            why = (f"names {len(hits)} tasks ({', '.join(s.folder for s in hits)}); give the folder name" if hits else
                   "is not one of the 19 HEAR 2021 tasks")
            raise BadInput(f"--task {name!r} {why}; choose from: {', '.join(BY_FOLDER)} (or --list)")
        if hits[0] not in chosen:
            chosen.append(hits[0])
    return chosen


def check_fraction(fraction: float) -> float:
    if not 0 < fraction <= 1:  # also refuses nan
        raise BadInput(f"--fraction {fraction!r}: expected a number in (0, 1], e.g. 0.01 for 1 % of every split")
    return fraction


def check_seed(seed: int) -> int:
    if not 0 <= seed < 2**63:
        raise BadInput(f"--seed {seed}: expected a non-negative integer below 2**63")
    return seed


# ---------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Clip:
    """One clip to write: its index in the split, file name, length in samples and labels (label indices) or
    events ((start sample, length in samples, label index), ...)."""

    index: int
    name: str
    samples: int
    labels: tuple = ()
    events: tuple = ()


@dataclass
class TaskPlan:
    shape: Shape
    fraction: float
    seed: int
    splits: dict[str, list[Clip]]

    @property
    def samples(self) -> int:
        return sum(c.samples for clips in self.splits.values() for c in clips)

    @property
    def clips(self) -> int:
        return sum(len(clips) for clips in self.splits.values())


def task_key(shape: Shape) -> int:
    """A stable number per task for its random streams: adding or reordering tasks changes no other task."""
    return zlib.crc32(shape.folder.encode())


def _label_stream(rng: np.random.Generator, n_labels: int):
    """Label indices as successive random permutations: any n_labels consecutive draws cover every label."""
    while True:
        yield from rng.permutation(n_labels).tolist()


def _truncated_lognormal(lo: float, mean: float, hi: float, sigma: float = 0.9):
    """(mu, sigma) of a log-normal truncated to [lo, hi] whose mean is `mean` (bisection on mu)."""
    from scipy.special import ndtr

    a, b = math.log(lo), math.log(hi)

    def truncated_mean(mu: float) -> float:
        mass = ndtr((b - mu) / sigma) - ndtr((a - mu) / sigma)
        part = ndtr((b - mu - sigma**2) / sigma) - ndtr((a - mu - sigma**2) / sigma)
        return math.exp(mu + sigma**2 / 2) * part / mass

    low, high = a - 3 * sigma, b + 3 * sigma
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if truncated_mean(mid) < mean else (low, mid)
    return (low + high) / 2, sigma


def _draw_lengths(rng: np.random.Generator, bounds: tuple[float, float, float], n: int) -> np.ndarray:
    """n clip lengths in samples from the truncated log-normal with the split's (min, mean, max) seconds."""
    from scipy.special import ndtr, ndtri

    lo, mean, hi = bounds
    mu, sigma = _truncated_lognormal(lo, mean, hi)
    u = rng.uniform(ndtr((math.log(lo) - mu) / sigma), ndtr((math.log(hi) - mu) / sigma), n)
    return np.round(np.exp(mu + sigma * ndtri(u)) * SAMPLE_RATE).astype(np.int64)


def _plan_events(rng: np.random.Generator, shape: Shape, n: int, stream) -> tuple:
    """Events of one clip: (start, length, label) in samples, onsets more than 200 ms apart, all inside the clip."""
    lo, hi, gap_lo, gap_hi = shape.event_s
    events, t = [], rng.uniform(0.05, 1.0)
    while True:
        length = rng.uniform(lo, hi)
        if t + length > n / SAMPLE_RATE - 0.05:
            return tuple(events)
        events.append((int(round(t * SAMPLE_RATE)), int(round(length * SAMPLE_RATE)), next(stream)))
        t += length + rng.uniform(gap_lo, gap_hi)


def scaled_count(real: int, fraction: float) -> int:
    return max(1, min(real, round(real * fraction)))


def plan_task(shape: Shape, fraction: float, seed: int) -> TaskPlan:
    """Every clip of the task at `fraction`: count per split, lengths, labels or events, all from the seed.

    A split gets round(real count x fraction) clips, more where needed for every label to occur in it (label
    indices come as successive permutations, so that takes n_labels draws), never more than the real count."""
    n_labels = len(shape.labels)
    plan = {}
    for split_index, (split, real) in enumerate(shape.splits):
        rng = np.random.default_rng([seed, task_key(shape), split_index, 0])
        stream = _label_stream(rng, n_labels)
        target = scaled_count(real, fraction)
        lengths = (_draw_lengths(rng, shape.lengths[split], real) if shape.sample_duration is None else
                   np.full(real, int(round(shape.sample_duration * SAMPLE_RATE))))
        clips, seen = [], set()
        for i in range(real):
            if i >= target and len(seen) == n_labels:
                break
            name, n = f"{split}_{i:06d}.wav", int(lengths[i])
            if shape.embedding_type == "event":
                events = _plan_events(rng, shape, n, stream)
                seen.update(e[2] for e in events)
                clips.append(Clip(i, name, n, events=events))
                continue
            k = int(rng.integers(1, 4)) if shape.prediction_type == "multilabel" else 1
            labels: list[int] = []
            while len(labels) < k:
                label = next(stream)
                if label not in labels:
                    labels.append(label)
            seen.update(labels)
            clips.append(Clip(i, name, n, labels=tuple(sorted(labels))))
        plan[split] = clips
    return TaskPlan(shape, fraction, seed, plan)


def task_metadata(plan: TaskPlan) -> dict:
    """task_metadata.json as hear-preprocess writes it (the keys heareval reads), plus where it came from."""
    s = plan.shape
    metadata = {
        "task_name": s.task_name, "version": s.version, "mode": s.mode, "embedding_type": s.embedding_type,
        "prediction_type": s.prediction_type, "split_mode": s.split_mode, "sample_duration": s.sample_duration,
        "evaluation": list(s.evaluation), "splits": [name for name, _ in s.splits],
    }
    if s.split_mode != "trainvaltest":
        metadata["nfolds"] = len(s.splits)
    if s.evaluation_params:
        metadata["evaluation_params"] = s.evaluation_params
    metadata.update(s.extra_metadata)
    metadata["generator"] = {"module": "benchmarks/hear_scale.py", "version": GENERATOR_VERSION, "seed": plan.seed,
                             "fraction": plan.fraction, "clips": {k: len(v) for k, v in plan.splits.items()},
                             "real_clips": dict(s.splits)}
    return metadata


def split_json(plan: TaskPlan, split: str) -> dict:
    labels = plan.shape.labels
    if plan.shape.embedding_type == "event":
        return {c.name: [{"label": labels[k], "start": 1000.0 * start / SAMPLE_RATE,
                          "end": 1000.0 * (start + length) / SAMPLE_RATE} for start, length, k in c.events]
                for c in plan.splits[split]}
    return {c.name: [labels[k] for k in c.labels] for c in plan.splits[split]}


def vocabulary_csv(shape: Shape) -> str:
    return "idx,label\n" + "".join(f"{i},{label}\n" for i, label in enumerate(shape.labels))


def disk_bytes(plan: TaskPlan, block: int = 4096) -> int:
    """Bytes the task takes on a filesystem of `block`-byte blocks: every file rounded up to whole blocks."""

    def blocks(size: int) -> int:
        return -(-size // block) * block

    total = sum(blocks(WAV_HEADER + 2 * c.samples) for clips in plan.splits.values() for c in clips)
    total += sum(blocks(len(json.dumps(split_json(plan, split), indent=1))) for split in plan.splits)
    metadata = json.dumps(task_metadata(plan), indent=1)
    total += blocks(len(vocabulary_csv(plan.shape))) + 2 * blocks(len(metadata))
    return total + block * (3 + len(plan.splits))  # the folders
