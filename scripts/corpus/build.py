"""The synthetic kinds built clip by clip (speech, texture) or in batches (music): each clip a pure function of
(seed, kind, index), retried with a new sub-seed when it fails or comes out silent; the tools they need; the summary."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from corpus.clips import SR, clip_path, clip_rng, is_silent, normalise, write_wav
from corpus.music import MUSIC_BATCH, music_spec, render_music_batch
from corpus.speech import make_speech
from corpus.texture import make_texture

MAX_ATTEMPTS = 3            # regenerate a failed clip with a new sub-seed this often
DEFAULT_COUNTS = {"speech": 1500, "music": 1500, "texture": 1000}


class Progress:
    def __init__(self, kind: str, total: int):
        self.kind, self.total, self.done, self.t0 = kind, total, 0, time.time()

    def step(self, k: int = 1) -> None:
        self.done += k
        if self.done == self.total or self.done % 100 < k:
            el = time.time() - self.t0
            eta = el / max(self.done, 1) * (self.total - self.done)
            print(f"[{self.kind}] {self.done}/{self.total} new clips  "
                  f"{el:6.0f}s elapsed  eta {eta:5.0f}s", flush=True)


def finish_clip(path: Path, x: np.ndarray, rng: np.random.Generator) -> bool:
    if is_silent(x):
        return False
    write_wav(path, normalise(x, rng))
    return True


def build_simple(kind: str, indices: list[int], out_dir: Path, seed: int, tmp_dir: Path) -> list[int]:
    """speech/texture: one clip at a time. Returns indices that failed every attempt."""
    failed, prog = [], Progress(kind, len(indices))
    for idx in indices:
        ok = False
        for attempt in range(MAX_ATTEMPTS):
            rng = clip_rng(seed, kind, idx, attempt)
            try:
                x = make_speech(rng, tmp_dir) if kind == "speech" else make_texture(rng)
                ok = finish_clip(clip_path(out_dir, kind, idx), x, rng)
            except (subprocess.SubprocessError, RuntimeError, ValueError, OSError) as e:
                print(f"\n[{kind}] {idx} attempt {attempt}: {e}", file=sys.stderr)
            if ok:
                break
        if not ok:
            failed.append(idx)
        prog.step()
    return failed


def build_music(indices: list[int], out_dir: Path, seed: int, tmp_dir: Path, soundfont: str) -> list[int]:
    pending, prog = list(indices), Progress("music", len(indices))
    for attempt in range(MAX_ATTEMPTS):
        failed = []
        for b in range(0, len(pending), MUSIC_BATCH):
            batch = pending[b:b + MUSIC_BATCH]
            rngs = [clip_rng(seed, "music", idx, attempt) for idx in batch]
            specs = [music_spec(r) for r in rngs]
            try:
                clips = render_music_batch(specs, soundfont, tmp_dir)
            except (subprocess.SubprocessError, RuntimeError, OSError) as e:
                print(f"\n[music] batch starting {batch[0]} attempt {attempt}: {e}", file=sys.stderr)
                failed += batch
                continue
            for idx, rng, x in zip(batch, rngs, clips):
                if finish_clip(clip_path(out_dir, "music", idx), x, rng):
                    prog.step()
                else:
                    failed.append(idx)
        pending = failed
        if not pending:
            break
    return pending


def check_tools(kinds: list[str]) -> None:
    need = {"speech": "espeak-ng", "music": "fluidsynth"}
    missing = [need[k] for k in kinds if k in need and shutil.which(need[k]) is None]
    if missing:
        sys.exit(f"Missing tools: {', '.join(missing)} (apt-get install -y {' '.join(missing)})")


def summarise(out_dir: Path, failures: dict[str, list[int]], real_rows: list[dict]) -> None:
    print("\nSummary")
    total_s = sum(r["seconds"] for r in real_rows)
    for package in dict.fromkeys(r["package"] for r in real_rows):
        rows = [r for r in real_rows if r["package"] == package]
        print(f"  real     {len(rows):6d} clips  {sum(r['seconds'] for r in rows) / 3600:6.2f} h  {package}")
    for kind in DEFAULT_COUNTS:
        files = sorted((out_dir / kind).glob(f"{kind}_*.wav"))
        secs = sum(sf.info(f).frames for f in files) / SR
        total_s += secs
        print(f"  {kind:8s} {len(files):6d} clips  {secs / 3600:6.2f} h"
              f"  failures this run: {len(failures.get(kind, []))}"
              + (f" {failures[kind][:10]}" if failures.get(kind) else ""))
    print(f"  total    {total_s / 3600:6.2f} h")
