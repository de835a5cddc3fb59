"""The sections of `python benchmarks/gpu.py --check` (benchmarks/gpu_check.py runs each in its own process).

Each is f(settings, keep) -> {"headline": one line for the table, "items": [...], ...}; keep(item) writes a finished
item at once, so a section stopped by the guard still reports what it finished. Settings: gpu_check.SETTINGS.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import ROOT, PeakMemory, sync, time_median

PEAK = 989.0  # TFLOP/s, dense bf16: H100 SXM / H200 (gpu.PEAK_BF16_TFLOPS)


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "hear_maeast", *map(str, args)]


def child_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")


# ---- env, ceilings -------------------------------------------------------------------------------------------------
def env(s, keep) -> dict:
    dev = torch.device(s["device"])
    mods = {m: importlib_ok(m) for m in ("numpy", "torchaudio", "click", "tqdm", "safetensors", "soundfile", "soxr",
                                         "pandas", "heareval", "triton")}
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    out = dict(torch=torch.__version__, python=sys.version.split()[0], device=name, modules=mods,
               capability=list(torch.cuda.get_device_capability(dev)) if dev.type == "cuda" else None)
    out["sdpa_bf16"] = sdpa = sdpa_check(dev) if mods["click"] else {"flash": "not checked (hear_maeast needs click)",
                                                                     "efficient": "not checked"}
    out["headline"] = f"{name}, torch {torch.__version__}; SDPA bf16 flash: {sdpa['flash']}, efficient: {sdpa['efficient']}"
    return out


def sdpa_check(dev: torch.device) -> dict:
    """Each of SDPA's fused kernels forced alone on the model's attention in bf16: "ok", or why it refused."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from hear_maeast.model import Attention

    attn = Attention(768, 12, k_bias=False).to(dev)
    x = torch.randn(64, 17, 768, device=dev)  # msm-mae-base's encoder sequence: 16 visible tokens + CLS
    sdpa = {}
    for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
        if dev.type == "cpu" and name == "efficient":
            sdpa[name] = "n/a on cpu"
            continue
        try:
            with sdpa_kernel([backend]), torch.autocast(dev.type, dtype=torch.bfloat16):
                attn(x).float().sum().backward()
            sdpa[name] = "ok"
        except RuntimeError as e:
            sdpa[name] = f"refused: {str(e).splitlines()[0][:200]}"
    return sdpa


def importlib_ok(m: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(m) is not None


def ceilings(s, keep) -> dict:
    dev, n = torch.device(s["device"]), s["matmul_n"]
    a, b = (torch.randn(n, n, device=dev, dtype=torch.bfloat16) for _ in range(2))
    t, _ = time_median(lambda: a @ b, dev, 3, 10)
    x = torch.empty(s["copy_mib"] * 2**20 // 4, device=dev)
    y = torch.empty_like(x)
    tc, _ = time_median(lambda: y.copy_(x), dev, 3, 10)
    out = dict(bf16_tflops=2 * n**3 / t / 1e12, matmul_n=n, copy_gb_per_s=2 * x.numel() * 4 / tc / 1e9, copy_mib=s["copy_mib"])
    out["headline"] = f"bf16 matmul {out['bf16_tflops']:.3g} TFLOP/s (n={n}); copy {out['copy_gb_per_s']:.4g} GB/s"
    return out


# ---- the step ------------------------------------------------------------------------------------------------------
def step_item(s, preset: str, batch: int, path: str, compiled: bool) -> dict:
    """One synthetic step (pretrain_step.setup_path: masks pre-drawn) timed: ms, clips/s, MFU, memory."""
    from hear_maeast.config import get_preset
    from pretrain_step import setup_path, step_flops

    dev = torch.device(s["device"])
    item = dict(preset=preset, batch=batch, path=path, mode="compiled" if compiled else "eager")
    try:
        t0 = time.perf_counter()
        _, step = setup_path(preset, path, 0.75, batch, s["device"], s["precision"], compiled, backend=s["compile_backend"])
        for _ in range(3 if compiled else 0):
            step()  # compile, warm up, record the CUDA graphs
        sync(dev)
        item["compile_s"] = time.perf_counter() - t0 if compiled else None
        mem = PeakMemory(dev)
        mem.start()
        t, _ = time_median(step, dev, 1, s["repeats"])
        flops = step_flops(get_preset(preset).replace(mask_ratio=0.75), path) * batch
        item.update(ms=1e3 * t, clips_per_s=batch / t, mfu=flops / t / (PEAK * 1e12) if dev.type == "cuda" else None,
                    memory_mib=mem.peak() / 2**20)
    except (RuntimeError, MemoryError) as e:  # out of memory at the larger batch: reported, the rest goes on
        item["error"] = str(e).splitlines()[0][:300]
    finally:
        free(dev)
    return item


def free(dev: torch.device) -> None:
    import gc

    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def step_table(s, keep, compiled: bool) -> list[dict]:
    """Every (preset, batch, path). Compiled, the order the targets need them in, as far as the budget goes: the MAE
    step at each preset's larger batch (MFU), then SSAST there (the ratio), then the smaller batches."""
    todo = [(p, b, path) for p in s["presets"] for b in s["batches"][p] for path in ("mae", "ssast")]
    if compiled:
        todo.sort(key=lambda t: (t[1] != max(s["batches"][t[0]]), t[2] != "mae"))
    items = []
    for preset, batch, path in todo:
        items.append(step_item(s, preset, batch, path, compiled))
        keep(items[-1])
    return items


def step_eager(s, keep) -> dict:
    items = step_table(s, keep, compiled=False)
    return dict(items=items, headline=speedups(items))


def speedups(items: list[dict]) -> str:
    ms = {(i["preset"], i["batch"], i["path"]): i.get("ms") for i in items}
    parts = [f"{p.split('-')[0]}@{b}: {ms[(p, b, 'ssast')] / ms[(p, b, 'mae')]:.2f}x"
             for (p, b, path) in ms if path == "mae" and ms[(p, b, "mae")] and ms.get((p, b, "ssast"))]
    return "SSAST / MAE step time: " + ", ".join(parts)


def compiled_losses(s, steps: int = 20) -> dict:
    """Eager and compiled bf16 training from the same weights on the same pre-drawn masks: losses step by step."""
    from pretrain_step import setup_path

    losses = {}
    for compiled in (False, True):
        _, step = setup_path(s["loss_preset"], "mae", 0.75, s["loss_batch"], s["device"], s["precision"], compiled,
                             n_masks=steps, backend=s["compile_backend"])
        losses[compiled] = torch.stack([step().clone() for _ in range(steps)]).float().cpu().tolist()
        free(torch.device(s["device"]))
    rel = [abs(c - e) / abs(e) for e, c in zip(losses[False], losses[True])]
    return dict(preset=s["loss_preset"], batch=s["loss_batch"], eager=losses[False], compiled=losses[True],
                max_rel=max(rel), within_2e_2=max(rel) <= 2e-2)


def step_compiled(s, keep) -> dict:
    eq = compiled_losses(s)
    keep(eq)
    items = step_table(s, keep, compiled=True)
    return dict(losses=eq, items=items, headline=f"compiled vs eager bf16 losses, 20 steps: max rel "
                f"{eq['max_rel']:.2e} ({'ok' if eq['within_2e_2'] else 'OVER 2e-2'}); " + speedups(items))


# ---- the CLI -------------------------------------------------------------------------------------------------------
def feature_store(s) -> Path:
    """`hear-maeast features` of generated clips (tones, amplitude modulation, noise) in the work folder, once."""
    import soundfile as sf

    work = Path(s["work"])
    store, wavs = work / f"store-{s['cli_preset']}", work / "wavs"
    if (store / "manifest.json").exists():
        return store
    wavs.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(s["clip_s"] * 16000)) / 16000
    for i in range(s["clips"]):
        f0 = rng.uniform(80, 2000)
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5)) * (1 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 8) * t))
        sf.write(wavs / f"{i:04d}.wav", (0.1 * x + 0.02 * rng.standard_normal(len(t))).astype(np.float32), 16000)
    subprocess.run(cli("features", wavs, store, "--preset", s["cli_preset"], "--workers", min(8, os.cpu_count() or 1)),
                   check=True, env=child_env(), stdout=subprocess.DEVNULL)
    return store


def pretrain_cmd(s, store: Path, out: Path, steps: int, *extra, preset=None, batch=None) -> list[str]:
    return cli("pretrain", "--preset", preset or s["cli_preset"], "--data", store, "--out", out, "--steps", steps,
               "--batch-size", batch or s["cli_batch"], "--device", s["device"], "--precision", s["precision"],
               "--seed", 0, "--no-compile", *extra)


def log_rows(run: Path) -> list[dict]:
    return list(csv.DictReader(open(run / "log.csv"))) if (run / "log.csv").exists() else []


def pretrain_cli(s, keep) -> dict:
    from pretrain_step import setup_path

    dev = torch.device(s["device"])
    store = feature_store(s)
    _, step = setup_path(s["cli_preset"], "mae", 0.75, s["cli_batch"], s["device"], s["precision"])
    t, _ = time_median(step, dev, 2, s["repeats"])
    del step
    free(dev)
    synthetic = s["cli_batch"] / t
    keep(dict(synthetic_samples_per_s=synthetic))
    items = []
    for save_every in (10**6, s["cli_log"]):
        run = Path(s["work"]) / f"cli-save{save_every}"
        subprocess.run(["rm", "-rf", str(run)])
        window = s["cli_log"]
        subprocess.run(pretrain_cmd(s, store, run, s["cli_steps"], "--save-every", save_every, "--log-every", window),
                       check=True, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = [r for r in log_rows(run) if int(r["step"]) > window]  # the first window holds start-up and warm-up
        sps = float(np.mean([float(r["samples_per_s"]) for r in rows]))
        items.append(dict(checkpoint_every=window if save_every < 10**6 else None, samples_per_s=sps,
                          vs_synthetic=sps / synthetic))
        keep(items[-1])
    return dict(synthetic_samples_per_s=synthetic, items=items, headline="CLI / synthetic step: " + ", ".join(
        f"{i['vs_synthetic']:.0%} ({'a checkpoint each window' if i['checkpoint_every'] else 'no checkpoint'})" for i in items))


def resume(s, keep) -> dict:
    store, work, n = feature_store(s), Path(s["work"]), s["resume_steps"]
    whole, parts = work / "resume-whole", work / "resume-parts"
    subprocess.run(["rm", "-rf", str(whole), str(parts)])
    args = ("--save-every", n // 2, "--log-every", 2)

    def cmd(out, *extra):  # a smaller model of the same front end: the mechanics, not the model, are under test
        return pretrain_cmd(s, store, out, n, *args, *extra, preset=s["resume_preset"], batch=s["resume_batch"])

    subprocess.run(cmd(whole), check=True, env=child_env(), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    p = subprocess.Popen(cmd(parts), env=child_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    while len(log_rows(parts)) < n // 2 and p.poll() is None:
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    code = p.wait()
    stopped_at = len(log_rows(parts))
    subprocess.run(cmd(parts, "--resume"), check=True, env=child_env(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a, b = log_rows(whole), log_rows(parts)
    same = [r["loss"] for r in a] == [r["loss"] for r in b]
    diff = max(abs(float(x["loss"]) - float(y["loss"])) for x, y in zip(a, b))
    out = dict(steps=n, sigterm_exit=code, stopped_at_step=stopped_at, losses_identical=same, max_abs_diff=diff,
               rows=(len(a), len(b)))
    out["headline"] = (f"SIGTERM exit {code} at step {stopped_at}, resumed to {n}: losses "
                       f"{'bit-identical' if same else f'differ (max {diff:.3g})'}")
    return out


# ---- the HEAR API, fine-tuning -------------------------------------------------------------------------------------
def api(s, keep) -> dict:
    import hear_maeast
    from hear_maeast.config import get_preset
    from hear_maeast.model import MaskedAutoencoder

    dev = torch.device(s["device"])
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    g = torch.Generator().manual_seed(0)
    t = torch.arange(int(3.3 * 16000)) / 16000
    audio = 0.1 * torch.sin(2 * torch.pi * 440 * t)[None].repeat(2, 1) + 0.01 * torch.randn(2, len(t), generator=g)
    items = []
    torch.manual_seed(0)
    for name, model in (("default", hear_maeast.load_model()), (s["api_preset"], MaskedAutoencoder(get_preset(s["api_preset"])))):
        model.eval()
        outs = {}
        for d in ("cpu", dev):
            m = model.to(d)
            with torch.no_grad():
                emb, times = hear_maeast.get_timestamp_embeddings(audio.to(d), m)
                outs[str(d)] = (hear_maeast.get_scene_embeddings(audio.to(d), m).cpu(), emb.cpu(), times.cpu())
        (sc, tc_, tt), (sd, td, ttd) = outs["cpu"], outs[str(dev)]
        items.append(dict(model=name, scene_rel=rel(sd, sc), timestamp_rel=rel(td, tc_), times_equal=bool(torch.equal(tt, ttd))))
        keep(items[-1])
    worst = max(max(i["scene_rel"], i["timestamp_rel"]) for i in items)
    return dict(items=items, headline=f"{dev} vs cpu: max relative difference {worst:.2e}, times equal: "
                f"{all(i['times_equal'] for i in items)}")


def rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def finetune(s, keep) -> dict:
    work = Path(s["work"])
    tasks, out = work / "tasks", work / "finetune"
    subprocess.run(cli("tasks", "synth", tasks, "--only", "synth_pitch"), check=True, env=child_env(), stdout=subprocess.DEVNULL)
    task = next(tasks.glob("synth_pitch*")).name
    subprocess.run(["rm", "-rf", str(out)])
    t0 = time.perf_counter()
    p = subprocess.run(cli("finetune", "--tasks-dir", tasks, "--task", task, "--out", out, "--epochs", 1,
                           "--batch-size", s["finetune_batch"], "--device", s["device"], "--precision", "bf16"),
                       env=child_env(), capture_output=True, text=True)
    scores = list(out.glob(f"*/{task}/test.predicted-scores.json"))
    res = dict(exit=p.returncode, seconds=time.perf_counter() - t0, stderr_tail=p.stderr[-500:] if p.returncode else "",
               scores=json.loads(scores[0].read_text()).get("aggregated_scores") if scores else None)
    res["headline"] = f"1 epoch of synth_pitch, bf16: exit {p.returncode}" + (f", test {res['scores']}" if res["scores"] else "")
    if p.returncode:
        raise RuntimeError(f"hear-maeast finetune failed (exit {p.returncode}): {p.stderr[-300:]}")
    return res


# ---- the probes' engine -------------------------------------------------------------------------------------------
def embeddings_task(folder: Path, kind: str, rows: dict[str, int], labels: int, dim: int, seed: int = 0) -> Path:
    """A heareval embeddings folder of class-structured Gaussian rows (no audio, no TensorFlow): `kind` "scene"
    (multiclass; k-fold when the splits are folds) or "event" (frames of 40 ms, events of 0.3-2 s)."""
    import pickle

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((labels, dim)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    splits = list(rows)
    meta = dict(task_name=f"gpu_{kind}", embedding_type=kind, prediction_type="multiclass" if kind == "scene" else
                "multilabel", split_mode="trainvaltest" if "train" in rows else "new_split_kfold", splits=splits,
                evaluation=["top1_acc"] if kind == "scene" else ["event_onset_200ms_fms"], sample_duration=120.0)
    meta["nfolds"] = len(splits)
    for split, n in rows.items():
        if kind == "scene":
            y = [[str(v)] for v in rng.permutation(np.arange(n) % labels)]  # every label in every split
            (folder / f"{split}.json").write_text(json.dumps({f"{split}_{i}.wav": l for i, l in enumerate(y)}))
        else:  # n frames over clips of 120 s (3000 frames each), an event every 2-6 s
            clips, times = {}, []
            for c in range(max(1, n // 3000)):
                starts = np.cumsum(rng.uniform(2000, 6000, 30))
                clips[f"{split}_{c}.wav"] = [dict(label=str(rng.integers(labels)), start=float(t), end=float(t + 1000))
                                             for t in starts if t < 118_000]
                times += [(f"{split}_{c}.wav", 20.0 + 40 * k) for k in range(3000)]
            y = [[e["label"] for e in clips[c] if e["start"] <= t <= e["end"]] for c, t in times]
            (folder / f"{split}.json").write_text(json.dumps(clips))
            (folder / f"{split}.filename-timestamps.json").write_text(json.dumps(times))
        x = rng.standard_normal((len(y), dim), dtype=np.float32)
        for i, row in enumerate(y):
            x[i] += sum((centres[int(l)] for l in row), np.zeros(dim, np.float32))
        x.tofile(folder / f"{split}.embeddings.npy")
        (folder / f"{split}.embedding-dimensions.json").write_text(json.dumps([len(y), dim]))
        (folder / f"{split}.target-labels.pkl").write_bytes(pickle.dumps(y))
    (folder / "labelvocabulary.csv").write_text("idx,label\n" + "".join(f"{i},{i}\n" for i in range(labels)))
    (folder / "task_metadata.json").write_text(json.dumps(meta))
    return folder


PROBE_SHAPES = {  # (kind, rows per split, labels): ESC-50's shape, a quarter of DCASE 2016 task 2's, a fifth of
    # FSD50K's rows and labels (multiclass here: one label per row)
    "esc50": ("scene", {f"fold{i:02d}": 400 for i in range(5)}, 50),
    "dcase2016_task2-quarter": ("event", {"train": 27000, "valid": 6000, "test": 27000}, 11),
    "fsd50k-like-0.2": ("scene", {"train": 7200, "valid": 900, "test": 2000}, 200),
}


def probes(s, keep) -> dict:
    """The mlp probe (heareval's protocol, grid s["probe_grid"]) on the device: stacked and one member at a time, on the same
    rows; seconds and scores each (the two must agree: the same arithmetic up to the device's rounding)."""
    from eval.probes import mlp
    from eval.probes.data import read_task
    from eval.probes.scoring import Scorer

    items = []
    for name, (kind, rows, labels) in PROBE_SHAPES.items():
        if s["device"] == "cpu":  # the dry run: the same code on a sliver of each shape
            rows = {k: max(labels, v // 100) if kind == "scene" else 3000 for k, v in rows.items()}
        task = read_task(embeddings_task(Path(s["work"]) / "probes" / name, kind, rows, labels, s["probe_dim"]))
        item = dict(task=name, rows=rows, dim=s["probe_dim"])
        for engine in ("stacked", "sequential"):
            t0 = time.perf_counter()
            folds, _ = mlp.run(task, Scorer(task), seed=42, grid=s["probe_grid"], device=s["device"], engine=engine)
            sync(torch.device(s["device"]))
            item[f"{engine}_s"] = time.perf_counter() - t0
            item[f"{engine}_scores"] = [f.scores["test_score"] for f in folds]
        items.append(item)
        keep(item)
    return dict(items=items, headline=f"mlp probe, grid {s['probe_grid']}: " + "; ".join(
        f"{i['task']} stacked {i['stacked_s']:.1f} s, one by one {i['sequential_s']:.1f} s" for i in items))


SECTION_FUNCTIONS = {"env": env, "ceilings": ceilings, "step-eager": step_eager, "pretrain-cli": pretrain_cli,
                     "resume": resume, "api": api, "finetune": finetune, "probes": probes, "step-compiled": step_compiled}
