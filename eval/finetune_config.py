"""The options of `hear-maeast finetune` and their defaults, written once: `FinetuneConfig` is what eval/finetune.py
runs and what eval/cli.py's options default to. Torch-free on import (the CLI imports it to build its options).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hear_maeast.errors import BadInput


@dataclass
class FinetuneConfig:
    """Every option of a fine-tuning run (recorded in run.json) and its default, for small HEAR tasks (docs/finetuning.md); the
    click options of `hear-maeast finetune` take their defaults from here."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 5e-4  # peak, for the head; block i of L gets lr * layer_decay^(L + 1 - i)
    layer_decay: float = 0.75
    head_lr_scale: float = 10.0  # the head's lr over the peak lr: SSAST's `head_lr` (10 in its ESC-50 recipe)
    weight_decay: float = 0.05
    warmup_epochs: float = 3.0
    patience: int = 10  # epochs without a better valid score before stopping; 0: never stop early
    mixup: float = 0.5  # probability per example (AST/SSAST), lambda ~ Beta(10, 10)
    specaug: bool = True
    freqm: int | None = None  # widest frequency mask in mel bins; None: 3/16 of the preset's bins
    timem: int | None = None  # widest time mask in frames; None: 3/16 of the crop (at most the input frames)
    layer: int = -1  # 1-based encoder block whose output is pooled; -1: the last (with the final norm)
    device: str | None = None  # None: cuda when present, else cpu
    precision: str | None = None  # fp32 | bf16; None: bf16 on cuda, fp32 elsewhere
    seed: int = 0
    save_models: bool = False  # also write each fold's best model (<fold>.model.safetensors + .head.safetensors)

    def resolved(self) -> "FinetuneConfig":
        from hear_maeast.device import resolve_device

        device = self.device or str(resolve_device(None))  # the package's one default: cuda when present
        precision = self.precision or ("bf16" if device.startswith("cuda") else "fp32")
        return FinetuneConfig(**{**asdict(self), "device": device, "precision": precision})

    def check(self) -> None:
        problems = [f"--{k.replace('_', '-')} {v} must be {want}" for k, v, ok, want in [
            ("epochs", self.epochs, self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size, self.batch_size >= 1, ">= 1"),
            ("lr", self.lr, self.lr > 0, "> 0"),
            ("layer_decay", self.layer_decay, 0 < self.layer_decay <= 1, "in (0, 1]"),
            ("head_lr_scale", self.head_lr_scale, self.head_lr_scale > 0, "> 0"),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0"),
            ("warmup_epochs", self.warmup_epochs, self.warmup_epochs >= 0, ">= 0"),
            ("patience", self.patience, self.patience >= 0, ">= 0 (0: never stop early)"),
            ("mixup", self.mixup, 0 <= self.mixup <= 1, "a probability in [0, 1]"),
            ("freqm", self.freqm, self.freqm is None or self.freqm >= 0, ">= 0"),
            ("timem", self.timem, self.timem is None or self.timem >= 0, ">= 0"),
            ("precision", self.precision, self.precision in (None, "fp32", "bf16"), "fp32 or bf16"),
        ] if not ok]
        if self.device:  # the package's one device check
            from hear_maeast.device import resolve_device

            try:
                resolve_device(self.device, "--device")
            except BadInput as e:
                problems.append(str(e))
        if problems:
            raise BadInput("; ".join(problems))
