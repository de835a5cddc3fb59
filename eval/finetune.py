"""`hear-maeast finetune`: fine-tune the encoder on HEAR scene tasks (the protocol of the MAE-AST paper), scored with
heareval's own metric functions and written in heareval's layout, next to the probe rows (heareval's MLP on frozen
embeddings) of `hear-maeast eval`.

Protocol (docs/finetuning.md):
- Splits as heareval's predictions runner: a train/valid/test task trains on `train`, picks its epoch on `valid`
  and scores `test`; a k-fold task runs once per fold, folds sorted by name, fold i the test fold, fold i + 1 (mod k)
  the valid fold, the other folds the training set; mean and std (pandas, ddof 1) over folds, as heareval.
- Model: the encoder up to `--layer`, the family's scene pooling (`hear_maeast.model.pool_scene`: MSM-MAE the mean of
  columns, MAE-AST the mean of tokens) and a linear head; softmax and cross-entropy (multiclass) or sigmoid and
  binary cross-entropy (multilabel), the activations and losses of heareval's probe.
- Training, SSAST/AST fine-tuning (github.com/YuanGongND/ssast, src/dataloader.py, src/finetune/*/run_*.sh), which
  MAE-AST used: random crops of the preset's input length; mixup with probability `--mixup` per example (AST's
  convention, not a Beta alpha), the partner drawn from the batch, lambda ~ Beta(10, 10), mixed on the waveforms,
  labels mixed alike; SpecAugment, one frequency and one time mask per example (torchaudio FrequencyMasking /
  TimeMasking; SSAST's ESC-50 recipe masks up to 24 of 128 mel bins and 96 of its 512 frames, the whole clip: by
  default 3/16 of the mel bins and of the crop's frames).
- Optimiser, MAE / AudioMAE fine-tuning (github.com/facebookresearch/mae util/lr_decay.py, main_finetune.py;
  github.com/facebookresearch/AudioMAE main_finetune_esc.py): AdamW (0.9, 0.999), weight decay 0.05 except on biases,
  norms and tokens; layer-wise lr decay: with L blocks in use, block i (1-based) gets decay^(L + 1 - i) of the lr,
  the patch embedding (and CLS, and a post-norm encoder's input norm) decay^(L + 1), the final norm the full lr;
  the head `--head-lr-scale` times the lr (SSAST's `head_lr`, 10 in its ESC-50 recipe: a new head on a small
  task needs larger steps than the pretrained blocks); linear warm-up then half-cycle cosine, per step
  (`hear_maeast.optim`).
- Evaluation: whole clips through the HEAR API's chunked path (`hear_maeast.get_scene_embeddings`), then the head.
  Valid after every epoch; the best epoch (highest valid score, ties to the lower valid loss; the lowest valid loss
  when the task sets `use_scoring_for_early_stopping: false`, as heareval) is kept and scored on test; training
  stops after `--patience` epochs without a better one.

Layout (each run its own folder, like `hear-maeast eval`): eval/layout.py (heareval's score file, whose "epoch" is
the best epoch counted from 1; per fold a finished `<fold>.finetune.json`, kept on resume, and the training state
after its last finished epoch; the task's files copied, its results kept only while they equal them).

The run-folder rules are eval/runs.py's, as for `hear-maeast eval`: a folder of other weights or options is refused,
or replaced with --replace-stale (`make eval` passes it); a task whose files changed is fine-tuned again.

Every file is written atomically, so a killed run resumes at its last finished epoch with the same result as an
uninterrupted one: all randomness of an epoch is drawn from generators seeded by (seed, fold, epoch).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from eval.finetune_config import FinetuneConfig
from eval.finetune_data import Split, crop_batch, mixup, spec_augment
from eval.layout import FAILED_JSON, FINETUNED_SUFFIX, NOT_APPLICABLE, RUN, SCORES
from eval.protocol import aggregate, first_value, rotation, score_functions
from eval.runs import (DEFAULT_MODULE, FINETUNE, copy_task_files, model_name, open_run, package_version, progress,
                       same_task, select_tasks, weights_file, write_json)
from eval.taskdir import EVENT, check_task, clip_batches, label_indices, plain_name, read_metadata, task_splits
from hear_maeast.files import atomic_write
from hear_maeast.api import get_scene_embeddings, tail_rule
from hear_maeast.errors import BadInput, WorkFailed
from hear_maeast.model import MaskedAutoencoder, pool_scene, tokens_to_columns
from hear_maeast.optim import layer_decay_groups, lr_at
from hear_maeast.provenance import file_sha256
from hear_maeast.timing import HOP, SAMPLE_RATE, WIN

SPECAUG_FRACTION = 3 / 16  # SSAST ESC-50: freqm 24 of 128 bins, timem 96 of 512 frames
HEAD_INIT_STD = 2e-5  # MAE fine-tuning: trunc_normal_(head.weight, std=2e-5)
ADAMW_BETAS = (0.9, 0.999)


_log = progress("finetune")


# ---------------------------------------------------------------------------------------------- model
class SceneClassifier(nn.Module):
    """The encoder up to `backbone.layer`, the family's scene pooling, a linear head."""

    def __init__(self, backbone: MaskedAutoencoder, nlabels: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.cfg.scene_embedding_size, nlabels)
        nn.init.trunc_normal_(self.head.weight, std=HEAD_INIT_STD)
        nn.init.zeros_(self.head.bias)

    def forward_spec(self, spec: torch.Tensor) -> torch.Tensor:
        """Training path on one chunk: spec [B, F, T <= input_frames] -> logits [B, C], pooled as the HEAR API pools
        a clip of T frames (hear_maeast.api.tail_rule: MSM-MAE padded to the fixed grid, MAE-AST whole tokens)."""
        cfg = self.backbone.cfg
        span, n_cols = tail_rule(cfg, spec.shape[-1])
        x = F.pad(spec, (0, span - spec.shape[-1]))[..., :span]  # zeros = the normalised mean, as the API pads
        cols = tokens_to_columns(self.backbone.encode(x, self.backbone.layer), cfg)[:, :n_cols]  # [B, C, Fg*D]
        return self.head(pool_scene(cols, cfg))

    def forward_clips(self, audio: torch.Tensor) -> torch.Tensor:
        """Evaluation path: whole clips [B, N] through the HEAR API's chunked scene embedding -> logits [B, C]."""
        return self.head(get_scene_embeddings(audio, self.backbone))


# ---------------------------------------------------------------------------------------------- training
@dataclass
class Fold:
    """What one fold trains on: the task, its splits and heareval's scores, and where its files go."""

    task_dir: Path
    out: Path
    index: int  # 0-based position in the rotation: seeds the fold's randomness
    name: str  # heareval's key: the test split(s) joined by "|"
    splits: dict[str, list[str]]
    prediction_type: str
    scores: list  # heareval.score functions; the first is the primary score
    by_score: bool  # select on the primary valid score (else on the valid loss), as heareval


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _loss(logits: torch.Tensor, targets: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """heareval's logit losses; multiclass takes soft targets (mixup), which equal its argmax loss on one-hot ones."""
    if prediction_type == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, targets)
    return F.cross_entropy(logits, targets)


def _autocast(tc: FinetuneConfig):
    device_type = torch.device(tc.device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=tc.precision == "bf16")


def train_epoch(model: SceneClassifier, opt, fold: Fold, train: Split, tc: FinetuneConfig, epoch: int,
                schedule, bar) -> float:
    """One pass over the training clips in a random order; returns the mean training loss."""
    cfg = model.backbone.cfg
    rng = np.random.default_rng(_seed(tc.seed, fold.index, epoch))
    torch.manual_seed(_seed(tc.seed, fold.index, epoch, 1))  # SpecAugment draws from torch's generator
    crop = (cfg.input_frames - 1) * HOP + WIN  # enough samples for input_frames frames with either front end
    freqm = round(cfg.n_mels * SPECAUG_FRACTION) if tc.freqm is None else tc.freqm
    steps_per_epoch, total, warmup = schedule
    model.train()
    order, losses = rng.permutation(len(train)), []
    for b in range(steps_per_epoch):
        idx = order[b * tc.batch_size : (b + 1) * tc.batch_size]
        wav, y = mixup(crop_batch(train, idx, crop, rng), train.targets[idx], tc.mixup, rng)
        spec = model.backbone.frontend(wav.to(tc.device))[..., : cfg.input_frames]  # [B, F, T]
        if tc.specaug:  # SSAST's widths are fractions of its input, which is the whole clip: here, the crop
            timem = round(spec.shape[-1] * SPECAUG_FRACTION) if tc.timem is None else tc.timem
            spec = spec_augment(spec, freqm, timem)
        with _autocast(tc):
            logits = model.forward_spec(spec)
        loss = _loss(logits.float(), y.to(tc.device), fold.prediction_type)
        if not torch.isfinite(loss):
            raise WorkFailed(f"{fold.task_dir.name} {fold.name}: the training loss is {loss.item()} at epoch "
                             f"{epoch + 1}; lower --lr or use --precision fp32")
        lr = lr_at(epoch * steps_per_epoch + b, total, warmup, tc.lr, "cosine")
        for group in opt.param_groups:
            group["lr"] = lr * group["lr_scale"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.update()
        bar.set_postfix_str(f"loss {loss.item():.3f}", refresh=False)
    return float(np.mean(losses))


@torch.no_grad()
def predict(model: SceneClassifier, split: Split, tc: FinetuneConfig) -> torch.Tensor:
    """Logits [N, C] of every clip, whole, batched by equal length (clip_batches)."""
    model.eval()
    logits = torch.zeros(len(split), split.targets.shape[1])
    for batch, audio in clip_batches(split.clips, tc.batch_size):
        with _autocast(tc):
            logits[batch] = model.forward_clips(torch.from_numpy(audio).to(tc.device)).float().cpu()
    return logits


def score(logits: torch.Tensor, targets: torch.Tensor, fold: Fold, prefix: str) -> dict[str, float]:
    """heareval's numbers for one split: <prefix>_loss, <prefix>_score (the primary score) and <prefix>_<score>."""
    activation = torch.sigmoid if fold.prediction_type == "multilabel" else lambda x: torch.softmax(x, dim=1)
    predictions, targets_np = activation(logits).numpy(), targets.numpy()
    out = {f"{prefix}_loss": float(_loss(logits, targets, fold.prediction_type))}
    values = {}
    for fn in fold.scores:
        value = fn(predictions, targets_np)
        values[str(fn)] = first_value(value)
    out[f"{prefix}_score"] = values[str(fold.scores[0])]
    out.update({f"{prefix}_{k}": v for k, v in values.items()})
    return out


# ---------------------------------------------------------------------------------------------- one fold
def _file_stem(fold: Fold) -> str:
    return fold.name.replace("|", "+")


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def new_fold_model(template: MaskedAutoencoder, nlabels: int, fold: Fold, tc: FinetuneConfig):
    """A fresh copy of the pretrained encoder with a new head (seeded by the fold), and its AdamW."""
    torch.manual_seed(_seed(tc.seed, fold.index, 0, 2))
    model = SceneClassifier(copy.deepcopy(template), nlabels).to(tc.device)
    groups = layer_decay_groups(model, tc.weight_decay, tc.layer_decay, tc.head_lr_scale)
    opt = torch.optim.AdamW(groups, lr=tc.lr, betas=ADAMW_BETAS)
    return model, opt


def _better(new: dict, best: dict | None, by_score: bool) -> bool:
    if best is None:
        return True
    if by_score:
        return new["score"] > best["score"] or (new["score"] == best["score"] and new["loss"] < best["loss"])
    return new["loss"] < best["loss"]


def fit(model: SceneClassifier, opt, fold: Fold, train: Split, valid: Split, tc: FinetuneConfig, state: dict,
        state_file: Path) -> dict:
    """Train from state["epoch"] to the end or an early stop; after every epoch the state is saved atomically."""
    steps = math.ceil(len(train) / tc.batch_size)
    schedule = (steps, steps * tc.epochs, round(tc.warmup_epochs * steps))
    bar = tqdm(total=steps * tc.epochs, initial=steps * state["epoch"], unit="step", leave=False,
               desc=f"{fold.task_dir.name} {fold.name}")
    for epoch in range(state["epoch"], tc.epochs):
        if tc.patience and state["bad_epochs"] >= tc.patience:
            break
        start = time.time()
        train_loss = train_epoch(model, opt, fold, train, tc, epoch, schedule, bar)
        v = score(predict(model, valid, tc), valid.targets, fold, "valid")
        now = {"score": v["valid_score"], "loss": v["valid_loss"], "epoch": epoch + 1}
        if _better(now, state["best"], fold.by_score):
            state["best"] = {**now, "state": trainable_state(model)}
            state["bad_epochs"] = 0
        else:
            state["bad_epochs"] += 1
        state["history"].append({"epoch": epoch + 1, "train_loss": train_loss, **v})
        state["epoch"], state["seconds"] = epoch + 1, state["seconds"] + time.time() - start
        state["model"], state["optimizer"] = trainable_state(model), opt.state_dict()
        atomic_write(state_file, lambda tmp: torch.save(state, tmp))
        bar.set_postfix_str(f"valid {v['valid_score']:.3f}, best {state['best']['score']:.3f} "
                            f"(epoch {state['best']['epoch']})")
    bar.close()
    return state


def run_fold(fold: Fold, template: MaskedAutoencoder, label_to_idx: dict, tc: FinetuneConfig) -> dict:
    """Train, select and test one fold; a finished fold is kept, an interrupted one resumes at its last epoch."""
    result_file = fold.out / f"{_file_stem(fold)}.finetune.json"
    state_file = fold.out / f"{_file_stem(fold)}.finetune-state.pt"
    if result_file.is_file():
        try:
            result = json.loads(result_file.read_text(encoding="utf-8"))
            _log(f"  {fold.name}: kept (finished earlier)")
            return result
        except ValueError as e:
            _discard(result_file, e, fold)
    train, valid, test = (Split.read(fold.task_dir, fold.splits[k], label_to_idx) for k in ("train", "valid", "test"))
    model, opt = new_fold_model(template, len(label_to_idx), fold, tc)
    state = {"epoch": 0, "best": None, "bad_epochs": 0, "history": [], "seconds": 0.0}
    if state_file.is_file():
        try:
            saved = torch.load(state_file, map_location="cpu", weights_only=True)
            model.load_state_dict(saved["model"], strict=False)
            opt.load_state_dict(saved["optimizer"])
            state = saved
            _log(f"  {fold.name}: resuming after epoch {state['epoch']} of {tc.epochs}")
        except Exception as e:  # noqa: BLE001 - truncated or foreign: never fatal, the fold is simply redone
            model, opt = new_fold_model(template, len(label_to_idx), fold, tc)  # nothing half-loaded
            _discard(state_file, e, fold)
    _log(f"  {fold.name}: train {fold.splits['train']} ({len(train)} clips), valid {fold.splits['valid']} "
         f"({len(valid)}), test {fold.splits['test']} ({len(test)})")
    state = fit(model, opt, fold, train, valid, tc, state, state_file)
    model.load_state_dict(state["best"]["state"], strict=False)  # the best epoch's weights
    scores = score(predict(model, test, tc), test.targets, fold, "test")
    best = state["best"]
    scores.update(validation_score=best["score"] if fold.by_score else best["loss"], epoch=best["epoch"],
                  time_in_min=state["seconds"] / 60)
    result = {"scores": scores, "best_epoch": best["epoch"], "epochs_run": state["epoch"], "history": state["history"]}
    if tc.save_models:
        save_fold_model(model, fold, result)
    write_json(result_file, result)
    state_file.unlink(missing_ok=True)
    _log(f"  {fold.name}: test {scores['test_score']:.3f} (best valid epoch {best['epoch']} of {state['epoch']} run)")
    return result


def _discard(path: Path, e: Exception, fold: Fold) -> None:
    """A fold's file that cannot be read (cut by a kill or a full disk): named, deleted, and the fold redone."""
    _log(f"  {fold.name}: {path} cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:200]}); it is "
         "discarded and the fold starts over")
    path.unlink(missing_ok=True)


def save_fold_model(model: SceneClassifier, fold: Fold, result: dict) -> None:
    """The fine-tuned encoder in the package's checkpoint format (a HEAR module file) and the head beside it."""
    from safetensors.torch import save_file

    from hear_maeast.checkpoint import save_checkpoint

    stem = fold.out / _file_stem(fold)
    save_checkpoint(model.backbone, f"{stem}.model.safetensors",
                    provenance={"finetuned_on": fold.task_dir.name, "fold": fold.name,
                                "best_epoch": result["best_epoch"]})
    head = {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}
    atomic_write(Path(f"{stem}.head.safetensors"), lambda tmp: save_file(head, tmp))


# ---------------------------------------------------------------------------------------------- tasks and runs
def _primary(results: dict) -> str:
    if "aggregated_scores" in results:
        agg = results["aggregated_scores"]
        return f"{agg['test_score_mean']:.3f}±{agg['test_score_std']:.3f}"
    (only,) = [v for v in results.values() if isinstance(v, dict) and "test_score" in v]
    return f"{only['test_score']:.3f}"


def keep_only_this_task(task_dir: Path, task_out: Path) -> None:
    """Results in `task_out` are kept only while they are of this very task (eval.runs.same_task): otherwise they
    are deleted, and the task's files copied there for the next run to compare."""
    if same_task(task_dir, task_out):
        return
    if task_out.is_dir() and any(task_out.iterdir()):
        _log("  the task files changed since its results were made (or an older hear-maeast made them): "
             "fine-tuning it again")
        shutil.rmtree(task_out)
    copy_task_files(task_dir, task_out)


def finetune_task(task_dir: Path, task_out: Path, template: MaskedAutoencoder, tc: FinetuneConfig) -> dict:
    """Every fold of one scene task, then its test.predicted-scores.json; returns its run.json entry."""
    metadata = check_task(task_dir, SAMPLE_RATE)
    keep_only_this_task(task_dir, task_out)
    label_to_idx = label_indices(task_dir)
    scores = score_functions(metadata, label_to_idx)
    by_score = metadata.get("use_scoring_for_early_stopping", True)
    results, best_epochs = {}, {}
    for i, splits in enumerate(rotation(metadata, task_splits(metadata))):
        fold = Fold(task_dir, task_out, i, "|".join(splits["test"]), splits, metadata["prediction_type"], scores,
                    by_score)
        detail = run_fold(fold, template, label_to_idx, tc)
        results[fold.name], best_epochs[fold.name] = detail["scores"], detail["best_epoch"]
    if len(results) > 1:
        results["aggregated_scores"] = aggregate(results)
    results.update(hparams={**asdict(tc), "protocol": FINETUNE}, postprocessing=[],
                   score_mode="max" if by_score else "min", embedding_path=str(task_out))
    write_json(task_out / SCORES, results)
    return {"status": "done", "score": _primary(results), "best_epoch": best_epochs}


def scene_and_event_tasks(tasks_dir: Path, only: tuple[str, ...]) -> tuple[list[Path], list[Path]]:
    """(scene tasks, event tasks) under `tasks_dir` (eval.runs.select_tasks: checked before any work); BadInput when
    none is a scene task, TaskError (exit 1, as `eval`) when a task folder is not usable."""
    tasks = select_tasks(tasks_dir, only, SAMPLE_RATE)
    scene = [t for t in tasks if read_metadata(t)["embedding_type"] != EVENT]
    event = [t for t in tasks if t not in scene]
    if not scene:
        raise BadInput(f"{', '.join(t.name for t in event)}: event task(s); only scene tasks are fine-tuned "
                       f"(score event tasks with heareval's probe: hear-maeast eval)")
    return scene, event


def load_backbone(model_path: str, layer: int) -> MaskedAutoencoder:
    """The pretrained model (default weights when no path), reading block `layer`; BadInput when it cannot load."""
    import hear_maeast

    if model_path and not Path(model_path).is_file():
        raise BadInput(f"--model {model_path} does not exist")
    try:
        return hear_maeast.load_model(model_path, layer=layer)
    except BadInput:
        raise
    except ValueError as e:  # checkpoint errors and a bad --layer
        raise BadInput(str(e)) from e


def finetuned_name(model_path: str, name: str | None) -> str:
    """`<model>-finetuned` (the name `eval` gives the model, plus the suffix), so fine-tuned rows never collide with
    probe rows; a --name without the suffix gets it."""
    name = plain_name(name or model_name(DEFAULT_MODULE, model_path), "--name", BadInput)  # eval's check
    return name if name.endswith(FINETUNED_SUFFIX) else name + FINETUNED_SUFFIX


def run_config(name: str, model_path: str, tasks_dir: Path, template: MaskedAutoencoder, tc: FinetuneConfig) -> dict:
    from hear_maeast.provenance import git_commit

    weights = weights_file(DEFAULT_MODULE, model_path)
    return {"name": name, "protocol": FINETUNE, "module": DEFAULT_MODULE,
            "model_file_path": str(Path(model_path).resolve()) if model_path else "",
            "weights_file": str(weights.resolve()), "model_sha256": file_sha256(weights),
            "preset": template.cfg.name, "options": {k: v for k, v in asdict(tc).items() if k != "save_models"},
            "seed": tc.seed, "epochs": tc.epochs, "hear_maeast_version": package_version("hear_maeast"),
            "git_commit": git_commit(), "tasks_dir": str(Path(tasks_dir).resolve())}


def _run_task(task: Path, task_out: Path, template: MaskedAutoencoder, tc: FinetuneConfig) -> dict:
    """One task, its failure recorded in failed.json (the other tasks go on), as `hear-maeast eval` does."""
    failed_file = task_out / FAILED_JSON
    failed_file.unlink(missing_ok=True)  # a previous failure: try again
    start = time.time()
    try:
        entry = finetune_task(task, task_out, template, tc)
        _log(f"  test score {entry['score']} ({time.time() - start:.0f} s)")
        return {**entry, "seconds": round(time.time() - start, 1)}
    except Exception as e:  # noqa: BLE001 - record, go on with the other tasks
        message = f"{type(e).__name__}: {e}"
        _log(f"  FAILED: {message}")
        write_json(failed_file, {"error": message, "traceback": traceback.format_exc()})
        return {"status": "failed", "error": message}


def run_finetune(tasks_dir: Path, out: Path, model_path: str = "", name: str | None = None,
                 only: tuple[str, ...] = (), tc: FinetuneConfig | None = None, replace_stale: bool = False) -> dict:
    """Fine-tune on every scene task under `tasks_dir`; returns run.json's `tasks` ({task: entry}).

    The run folder follows eval/runs.py: a folder of other weights or options is refused, or replaced with
    `replace_stale`. Event tasks get a not-applicable.json (`table`: n/a). Raises WorkFailed, after all tasks ran,
    when any failed.
    """
    tc = (tc or FinetuneConfig()).resolved()
    tc.check()
    name = finetuned_name(model_path, name)
    scene, event = scene_and_event_tasks(tasks_dir, only)
    template = load_backbone(model_path, tc.layer)
    config = run_config(name, model_path, tasks_dir, template, tc)
    run_dir = Path(out) / name
    open_run(run_dir, config, replace_stale, _log)
    _log(f"{template.cfg.name} ({model_path or 'default weights'}), {tc.epochs} epochs, {tc.precision} on "
         f"{tc.device}; results in {run_dir}")
    status, start = {}, time.time()
    for task in event:
        reason = "an event task: only scene tasks are fine-tuned (heareval's probe scores it: hear-maeast eval)"
        _log(f"{task.name}: skipped, {reason}")
        write_json(run_dir / task.name / NOT_APPLICABLE, {"reason": reason})
        status[task.name] = {"status": "n/a", "reason": reason}
    for i, task in enumerate(scene, 1):
        _log(f"[{i}/{len(scene)}] {task.name}")
        status[task.name] = _run_task(task, run_dir / task.name, template, tc)
    write_json(run_dir / RUN, {**config, "tasks": status})
    failed = [t for t, s in status.items() if s["status"] == "failed"]
    _log(f"{len(scene) - len(failed)} of {len(scene)} scene tasks done in {time.time() - start:.0f} s"
         + (f"; failed: {', '.join(failed)}" if failed else ""))
    if failed:
        raise WorkFailed(f"fine-tuning failed on {', '.join(failed)} (see failed.json in {run_dir}/<task>/)")
    return status
