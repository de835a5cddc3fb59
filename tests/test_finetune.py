"""`hear-maeast finetune` on real task folders: heareval's splits and metrics, score files that `table` reads, event
tasks shown as n/a, resume after a SIGKILL and determinism. Micro presets and 2 epochs: these check the machinery;
the quality comparison is measured in docs/finetuning.md, not asserted on tiny tasks.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from eval import synth
from eval.protocol import aggregate, rotation
from eval.finetune import SceneClassifier
from eval.resample import resample_tree
from eval.speech_commands import build
from hear_maeast.optim import layer_decay_groups

from conftest import run_env, shared_file

SPOKEN_DIGIT = "hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz"
SPEECH_COMMANDS = "speech_commands_v0.02-small.zip"
DIGIT = "spoken_digit-1.0.9-small"
COMMANDS = "speech_commands-v0.0.2-small"
MIXTURE, EVENTS = "synth_mixture-v1.0-small", "synth_events-v1.0-small"
SCORES = "test.predicted-scores.json"
# heareval's keys for one fold (task_predictions.py: the logged test metrics, then validation_score, epoch, time)
FOLD_KEYS = {"test_loss", "test_score", "validation_score", "epoch", "time_in_min"}


def hear_maeast(*args, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hear_maeast.cli", *map(str, args)], capture_output=True, text=True,
                          env=run_env(), timeout=timeout)


@pytest.fixture(scope="session")
def ft_tasks(tmp_path_factory) -> Path:
    """Real Speech Commands (train/valid/test), the real 5-fold spoken digit task, synthetic multilabel and event."""
    root = tmp_path_factory.mktemp("ft_tasks")
    build(shared_file(SPEECH_COMMANDS), root, mode="small", progress=False)
    resample_tree(shared_file(SPOKEN_DIGIT), root, 16000, progress=False)
    synth.write_suite(root, only=("synth_mixture", "synth_events"))
    return root


# ---------------------------------------------------------------------------------------------- the pieces
@pytest.mark.slow  # imports heareval's predictions module (Lightning): ~15 s
def test_folds_rotate_and_aggregate_as_heareval(ft_tasks):
    from heareval.predictions.task_predictions import aggregate_test_results, get_splits_from_metadata

    digit = json.loads((ft_tasks / DIGIT / "task_metadata.json").read_text())
    shuffled = {**digit, "splits": ["fold03", "fold00", "fold04", "fold01", "fold02"]}
    commands = json.loads((ft_tasks / COMMANDS / "task_metadata.json").read_text())
    for metadata in (digit, shuffled, commands):
        assert rotation(metadata, metadata["splits"]) == get_splits_from_metadata(metadata)
    assert rotation(digit, digit["splits"])[4] == {"train": ["fold01", "fold02", "fold03"], "valid": ["fold00"], "test": ["fold04"]}

    results = {f"fold0{i}": {"test_loss": 1.0 + i, "test_score": 0.1 * i ** 2, "epoch": i + 1} for i in range(5)}
    results["fold04"]["test_loss"] = float("nan")
    ours, theirs = aggregate(results), aggregate_test_results(results)
    assert list(ours) == list(theirs) and all(ours[k] == theirs[k] or (math.isnan(ours[k]) and math.isnan(theirs[k]))
                                              for k in ours)  # bit for bit (NaN where heareval's is NaN)


@pytest.mark.parametrize("preset", ["msm-mae-micro", "mae-ast-patch-micro"])
@pytest.mark.parametrize("layer", [-1, 1])
def test_training_path_pools_a_clip_as_the_hear_api_does(micro_checkpoints, real_clip, preset, layer):
    """A crop is pooled as the API pools the whole clip, so training and evaluation see the same embedding."""
    import hear_maeast

    model = hear_maeast.load_model(str(micro_checkpoints[preset]), layer=layer)
    clf = SceneClassifier(model, nlabels=3)
    torch.nn.init.normal_(clf.head.weight)
    audio = real_clip[None, :12000]  # [1, N]: a real spoken digit, shorter than one chunk
    spec = model.frontend(audio)  # [1, F, T]
    assert spec.shape[-1] < model.cfg.input_frames
    with torch.no_grad():
        assert torch.allclose(clf.forward_spec(spec), clf.forward_clips(audio), atol=1e-5)


def test_layer_wise_lr_decay_follows_mae(micro_checkpoints):
    """MAE's util/lr_decay.py: with L blocks, block i gets decay^(L + 1 - i), the embedding decay^(L + 1), the top 1."""
    import hear_maeast

    def scales(preset, layer):
        clf = SceneClassifier(hear_maeast.load_model(str(micro_checkpoints[preset]), layer=layer), nlabels=2)
        groups = layer_decay_groups(clf, weight_decay=0.05, layer_decay=0.5)
        found = {n: (g["lr_scale"], g["weight_decay"]) for g in groups for n in g["names"]}
        trained = {n for n, p in clf.named_parameters() if p.requires_grad}
        return found, trained

    found, trained = scales("msm-mae-micro", -1)  # pre-norm, 2 blocks
    assert found["backbone.patch_embed.weight"] == (0.125, 0.05) and found["backbone.cls_token"] == (0.125, 0.0)
    assert found["backbone.encoder.blocks.0.mlp.fc1.weight"] == (0.25, 0.05)
    assert found["backbone.encoder.blocks.1.attn.q_bias"] == (0.5, 0.0)
    assert found["backbone.encoder.norm.weight"] == (1.0, 0.0) and found["head.weight"] == (1.0, 0.05)
    assert set(found) == trained and not any(n.startswith(("backbone.decoder", "backbone.mask_token")) for n in trained)

    found, trained = scales("msm-mae-micro", 1)  # block 1 only: the final norm and block 2 are not used
    assert found["backbone.patch_embed.weight"][0] == 0.25 and found["backbone.encoder.blocks.0.attn.proj.weight"][0] == 0.5
    assert not any(n.startswith(("backbone.encoder.blocks.1.", "backbone.encoder.norm.")) for n in trained)

    found, _ = scales("mae-ast-patch-micro", -1)  # post-norm (wav2vec2): the norm is on the encoder's input
    assert found["backbone.encoder.norm.weight"][0] == 0.125

    clf = SceneClassifier(hear_maeast.load_model(str(micro_checkpoints["msm-mae-micro"])), nlabels=2)
    groups = layer_decay_groups(clf, weight_decay=0.05, layer_decay=0.5, head_lr_scale=10.0)  # SSAST's head_lr
    assert {n: g["lr_scale"] for g in groups for n in g["names"]}["head.bias"] == 10.0


# ---------------------------------------------------------------------------------------------- the command
@pytest.mark.slow
def test_finetune_writes_heareval_score_files_that_table_reads(ft_tasks, micro_checkpoints, tmp_path):
    ckpt = micro_checkpoints["msm-mae-micro"]
    proc = hear_maeast("finetune", "--tasks-dir", ft_tasks, "--model", ckpt, "--out", tmp_path, "--epochs", 2,
                       "--task", COMMANDS, "--task", MIXTURE, "--task", EVENTS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{EVENTS}: skipped, an event task: only scene tasks are fine-tuned" in proc.stdout
    run_dir = tmp_path / "hear_maeast-msm-mae-micro-finetuned"  # never the probe row's name
    run = json.loads((run_dir / "run.json").read_text())
    assert run["protocol"] == "finetune" and run["model_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert run["seed"] == 0 and run["epochs"] == 2 and run["options"]["mixup"] == 0.5 and run["preset"] == "msm-mae-micro"
    assert run["tasks"][COMMANDS]["best_epoch"]["test"] in (1, 2) and run["tasks"][EVENTS]["status"] == "n/a"

    commands = json.loads((run_dir / COMMANDS / SCORES).read_text())  # real audio, multiclass
    mixture = json.loads((run_dir / MIXTURE / SCORES).read_text())  # multilabel: heareval's three scores
    assert set(commands["test"]) == FOLD_KEYS | {"test_top1_acc"}
    assert set(mixture["test"]) == FOLD_KEYS | {"test_mAP", "test_d_prime", "test_aucroc"}
    assert mixture["test"]["test_score"] == mixture["test"]["test_mAP"] and 0 <= commands["test"]["test_score"] <= 1
    assert {"hparams", "postprocessing", "score_mode", "embedding_path"} <= set(commands)

    probe = tmp_path / "hear_maeast-msm-mae-micro" / COMMANDS  # a probe row of the same model, as `eval` lays it out
    probe.mkdir(parents=True)
    (probe / SCORES).write_text(json.dumps({"test": {"test_score": 0.5}}))
    table = hear_maeast("table", run_dir, probe.parent, timeout=120)  # given after it, listed before it
    assert table.returncode == 0, table.stderr[-3000:]
    lines = table.stdout.splitlines()
    assert lines[0] == f"| model | {COMMANDS} | {EVENTS} | {MIXTURE} |"
    assert lines[2] == f"| hear_maeast-msm-mae-micro | 0.500 |  |  |"
    assert lines[3] == (f"| hear_maeast-msm-mae-micro-finetuned | {commands['test']['test_score']:.3f} | n/a | "
                        f"{mixture['test']['test_score']:.3f} |")
    assert "Rows ending in `-finetuned`: the encoder fine-tuned" in table.stdout


def _scores(path: Path) -> dict:
    """A score file without what legitimately differs between two runs (wall time, the folder)."""
    scores = json.loads(path.read_text())
    for value in scores.values():
        for key in ("time_in_min", "time_in_min_mean", "time_in_min_std"):
            if isinstance(value, dict):
                value.pop(key, None)
    scores.pop("embedding_path")
    return scores


@pytest.mark.slow
def test_a_killed_run_resumes_at_its_last_epoch_and_ends_as_an_uninterrupted_one(ft_tasks, micro_checkpoints, tmp_path):
    args = ["finetune", "--tasks-dir", ft_tasks, "--task", DIGIT, "--model", micro_checkpoints["msm-mae-micro"],
            "--epochs", 2, "--batch-size", 30]
    whole = hear_maeast(*args, "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]

    task_out = tmp_path / "killed" / "hear_maeast-msm-mae-micro-finetuned" / DIGIT
    cmd = [sys.executable, "-m", "hear_maeast.cli", *map(str, args), "--out", str(tmp_path / "killed")]
    proc = subprocess.Popen(cmd, env=run_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (task_out / "fold01.finetune-state.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # mid-fold: fold00 finished, fold01 after its first epoch
    proc.wait()
    assert (task_out / "fold00.finetune.json").exists() and not (task_out / "fold01.finetune.json").exists()
    assert not (task_out / SCORES).exists()

    resumed = hear_maeast(*args, "--out", tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "fold00: kept (finished earlier)" in resumed.stdout and "fold01: resuming after epoch 1 of 2" in resumed.stdout
    assert not list(task_out.glob("*.finetune-state.pt"))  # a finished fold keeps its result, not its state
    expected = _scores(tmp_path / "whole" / "hear_maeast-msm-mae-micro-finetuned" / DIGIT / SCORES)
    assert _scores(task_out / SCORES) == expected  # bit for bit: the seed fixes every random draw
    assert sorted(k for k in expected if k.startswith("fold")) == [f"fold0{i}" for i in range(5)]
    assert expected["aggregated_scores"]["test_score_std"] > 0


@pytest.mark.slow  # three subprocesses: ~5 s
def test_event_tasks_and_bad_options_are_refused_before_any_work(ft_tasks, tmp_path):
    events_only = hear_maeast("finetune", "--tasks-dir", ft_tasks / EVENTS, "--out", tmp_path / "r")
    assert events_only.returncode == 2
    assert f"error: {EVENTS}: event task(s); only scene tasks are fine-tuned" in events_only.stderr
    bad = hear_maeast("finetune", "--tasks-dir", ft_tasks, "--task", COMMANDS, "--mixup", 2, "--out", tmp_path / "r")
    assert bad.returncode == 2 and "--mixup 2.0 must be a probability in [0, 1]" in bad.stderr
    layer = hear_maeast("finetune", "--tasks-dir", ft_tasks, "--task", COMMANDS, "--layer", 99, "--out", tmp_path / "r")
    assert layer.returncode == 2 and "layer=99: expected an int in 1..6 or -1" in layer.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow  # three fine-tuning subprocesses of one epoch on a micro model: ~25 s
def test_make_eval_finetunes_again_after_the_weights_or_the_task_change(micro_checkpoints, tmp_path):
    """`make eval` in the same work/ after the weights changed (a package upgrade: same name, other sha256) replaces
    the stale fine-tuning results instead of stopping; a task rebuilt under the same name is fine-tuned again."""
    from eval.make_eval import finetune_command
    from hear_maeast.checkpoint import save_checkpoint
    from hear_maeast.config import get_preset
    from hear_maeast.model import MaskedAutoencoder

    tasks, results, ckpt = tmp_path / "tasks", tmp_path / "results", tmp_path / "model.safetensors"
    synth.write_suite(tasks, only=("synth_pitch",))
    ckpt.write_bytes(micro_checkpoints["msm-mae-micro"].read_bytes())
    cmd = finetune_command(tasks, results, 1, str(ckpt))
    run = lambda: subprocess.run(cmd, capture_output=True, text=True, env=run_env(), timeout=600)  # noqa: E731
    run_json = results / "hear_maeast-model-finetuned" / "run.json"
    first = run()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    torch.manual_seed(1)  # the new weights, under the same name
    save_checkpoint(MaskedAutoencoder(get_preset("msm-mae-micro")), ckpt)
    second = run()
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "they are not this model's (--replace-stale)" in second.stdout and "kept" not in second.stdout
    assert json.loads(run_json.read_text())["model_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()

    shutil.rmtree(tasks / "synth_pitch-v1.0-small")
    synth.write_suite(tasks, seed=1, only=("synth_pitch",))  # the same task name, other clips and labels
    third = run()
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert "kept (finished earlier)" not in third.stdout and "task files changed" in third.stdout
