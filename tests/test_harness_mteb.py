"""MTEB 2.x audio (hear_maeast.adapters.mteb): MTEB's own evaluator scores our model on a local audio classification
task built from the real spoken digit task (arrays, no hub, no FFmpeg), and the embeddings it is given are the HEAR
API's scene embeddings."""

from __future__ import annotations

import pytest
import torch

from conftest import shared_file

pytest.importorskip("mteb", reason="MTEB is not installed: pip install '.[mteb]' -c constraints.txt")

from hear_maeast.errors import BadInput  # noqa: E402


@pytest.fixture(scope="module")
def digit_task(tmp_path_factory):
    from eval.archives import safe_extract

    root = safe_extract(shared_file("hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz"),
                        tmp_path_factory.mktemp("hear"))
    return next(root.rglob("task_metadata.json")).parent


@pytest.mark.slow
def test_mteb_evaluates_a_local_audio_classification_task(digit_task, micro_checkpoints, monkeypatch):
    import mteb

    from eval.harness_tasks import mteb_task
    from hear_maeast.adapters.mteb import MaeastAudioModel

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may come from the hub
    model = MaeastAudioModel(str(micro_checkpoints["mae-ast-patch-micro"]))
    task = mteb_task(digit_task)
    calls = []
    encode = model.encode
    model.encode = lambda inputs, **kw: calls.append(out := encode(inputs, **kw)) or out  # what MTEB is given
    result = mteb.evaluate(model, task, cache=None, show_progress_bar=False)
    (scores,) = result.task_results[0].scores["test"]
    assert result.task_results[0].task_name == "HearMaeastLocalSpokenDigit"
    assert 0.0 <= scores["accuracy"] <= 1.0 and len(scores["scores_per_experiment"]) == task.n_experiments
    test_rows = task.local_splits["test"]
    assert len(test_rows) == 20  # fold04 of 100 clips
    audio = torch.tensor(test_rows[0]["audio"]["array"], dtype=torch.float32)[None]
    ours = model.embedder.scene(audio)[0].numpy()
    assert any(((batch == ours).all(axis=1)).any() for batch in calls)  # the HEAR API's scene embedding, as is


def test_audio_at_a_rate_it_did_not_declare_is_refused(micro_checkpoints):
    from hear_maeast.adapters.mteb import MaeastAudioModel

    model = MaeastAudioModel(str(micro_checkpoints["msm-mae-micro"]))
    batch = [{"audio": [{"array": [0.0] * 8000, "sampling_rate": 8000}]}]

    class Rows(list):
        dataset = type("D", (), {"column_names": ["audio", "label"]})()

    meta = type("M", (), {"name": "Toy"})()
    with pytest.raises(BadInput, match="MTEB task Toy, split test, clip 0: audio at 8000 Hz, but this adapter declared 16000 Hz"):
        model.encode(Rows(batch), task_metadata=meta, hf_split="test", hf_subset="default")
    with pytest.raises(BadInput, match=r"layer=4: expected an int in 1\.\.2"):
        MaeastAudioModel(str(micro_checkpoints["msm-mae-micro"]), layer=4)


def test_rows_it_would_embed_wrongly_are_refused_by_clip(micro_checkpoints):
    """Before: a channels-last stereo row [16000, 2] was embedded as a 2-sample clip, a quiet int16 row as floats,
    and an empty split ended in numpy's "need at least one array to stack"."""
    import numpy as np

    from hear_maeast.adapters.mteb import MaeastAudioModel

    model = MaeastAudioModel(str(micro_checkpoints["msm-mae-micro"]))

    class Rows(list):
        dataset = type("D", (), {"column_names": ["audio", "label"]})()

    meta = type("M", (), {"name": "Toy"})()

    def encode(*arrays):
        rows = Rows([{"audio": [{"array": a, "sampling_rate": 16000} for a in arrays]}] if arrays else [])
        return model.encode(rows, task_metadata=meta, hf_split="test", hf_subset="default")

    stereo = np.random.default_rng(0).standard_normal((2, 16000)).astype(np.float32) * 0.1  # channels first
    mixed = model.embedder.scene(torch.from_numpy(stereo.mean(0))[None]).numpy()
    assert np.array_equal(encode(stereo, stereo[0])[0], mixed[0])
    for arrays, message in [((stereo[0], stereo.T), r"MTEB task Toy, split test, clip 1: audio of shape \(16000, 2\) "
                                                     r"\(channels last\? transpose it"),
                            ((np.full(16000, 3, np.int16),), "clip 0: audio of dtype torch.int16; expected floats"),
                            ((), "MTEB task Toy, split test: no clips to embed")]:
        with pytest.raises(BadInput, match=message):
            encode(*arrays)
    if not torch.cuda.is_available():
        with pytest.raises(BadInput, match="device 'cuda': this machine has 0 CUDA device"):
            MaeastAudioModel(str(micro_checkpoints["msm-mae-micro"]), device="cuda")


def test_local_task_takes_clips_and_refuses_what_it_cannot_score():
    """The adapter takes clips (name, labels, {split: [(clip, audio, label)]}); reading a HEAR task folder is
    eval.harness_tasks.mteb_task's (the model package never imports eval)."""
    import numpy as np

    from hear_maeast.adapters.mteb import local_task

    audio = np.full(4, 0.25, np.float32)
    splits = {"fold00": [("a.wav", audio, "y")], "fold01": [("b.wav", audio, "x"), ("c.wav", audio, "y")]}
    task = local_task("toy_task", ["x", "y"], splits)
    assert task.metadata.name == "HearMaeastLocalToyTask"
    assert [r["label"] for r in task.local_splits["test"]] == [0, 1] and len(task.local_splits["train"]) == 1
    assert task.local_splits["train"][0]["audio"] == {"array": [0.25] * 4, "sampling_rate": 16000}
    assert len(local_task("toy_task", ["x", "y"], splits, test_fold=0).local_splits["test"]) == 1
    for labels, bad, fold, message in [
        (["x"], splits, -1, r"MTEB task toy_task, split fold00: label\(s\) \['y'\] not in the task's 1 labels"),
        (["x", "y"], {}, -1, "MTEB task toy_task: no splits"),
        (["x", "y"], {"fold00": []}, -1, "MTEB task toy_task, split fold00: no clips"),
        (["x", "y"], splits, 2, r"MTEB task toy_task: test_fold=2; expected an index of its 2 splits"),
    ]:
        with pytest.raises(BadInput, match=message):
            local_task("toy_task", labels, bad, test_fold=fold)
