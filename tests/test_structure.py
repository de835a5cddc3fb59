"""The code's layout rules (docs/architecture.md, /work/shared/STYLE.md), checked on the source itself: functions
under 60 lines, `eval` independent of `pretrain`, torch-free command-line modules, defaults written once."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import click
import pytest

from conftest import run_env

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("hear_maeast", "pretrain", "eval")
MAX_LINES = 60


def _sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (REPO / pkg).rglob("*.py"))


def test_no_function_is_longer_than_60_lines():
    long = []
    for path in _sources(*PACKAGES) + [REPO / "scripts" / "build_corpus.py"] + _sources("scripts/corpus"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])  # click options count too
                if node.end_lineno - start + 1 > MAX_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} "
                                f"({node.end_lineno - start + 1} lines)")
    assert not long, "functions over 60 lines: " + ", ".join(long)


def test_eval_never_imports_pretrain():
    """Evaluation and fine-tuning share the optimiser rules through hear_maeast.optim, not pretrain."""
    found = []
    for path in _sources("eval"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(REPO)}:{node.lineno}" for n in names if n.split(".")[0] == "pretrain"]
    assert not found, f"eval imports pretrain at {found}"


def test_the_model_package_never_imports_eval_or_pretrain():
    """hear_maeast (the HEAR module heareval imports) depends on nothing above it: every import, at the top or
    inside a function, of every module under hear_maeast/ (task folders reach the harness adapters through
    eval/harness_tasks.py)."""
    found = []
    for path in _sources("hear_maeast"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            found += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names
                      if n.split(".")[0] in ("eval", "pretrain")]
    assert not found, f"hear_maeast imports eval or pretrain at {found}"


def test_command_line_modules_import_without_torch():
    """`hear-maeast table`, `tasks` and `--help` start without torch; atomic_write comes from hear_maeast.files; the
    ONNX runtime and the HEAR rules it shares with the torch API never import torch (docs/harnesses.md, "ONNX")."""
    code = ("import sys, hear_maeast.cli, eval.cli, eval.runner, eval.runs, eval.table, eval.taskdir, "
            "eval.finetune_config, pretrain.cli, hear_maeast.onnx_runtime, hear_maeast.hear_rules; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=run_env(), cwd=REPO,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def _restated_defaults(cli_file: str, command: str, names: set[str]) -> list[str]:
    """The options of `command` in cli_file that write their own `default=` for a config field in `names` (a copy of
    the config's default, which would drift from it) instead of taking the config's."""
    tree = ast.parse((REPO / cli_file).read_text())
    function = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == command)
    found = []
    for call in function.decorator_list:
        words = [a.value for a in getattr(call, "args", []) if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if not words or not any(k.arg == "default" for k in call.keywords):
            continue
        name = next((w for w in words[1:] if not w.startswith("-")), words[0].split("/")[0].lstrip("-").replace("-", "_"))
        if name in names:
            found.append(f"{cli_file}:{call.lineno} {name}")
    return found


def test_finetune_options_default_to_finetune_config():
    from eval.cli import finetune
    from eval.finetune_config import FinetuneConfig

    options = {p.name: p for p in finetune.params if isinstance(p, click.Option)}
    config = FinetuneConfig()
    for field in fields(FinetuneConfig):
        assert options[field.name].default == getattr(config, field.name), field.name
    names = {f.name for f in fields(FinetuneConfig)}
    assert not _restated_defaults("eval/cli.py", "finetune", names), "defaults written again beside FinetuneConfig's"


def test_pretrain_options_default_to_train_config():
    """Every `pretrain` option of a TrainConfig field defaults to the field's default, taken from it, not restated."""
    from pretrain.cli import pretrain
    from pretrain.config import TrainConfig

    config = {f.name: f.default for f in fields(TrainConfig)}
    options = [p for p in pretrain.params if isinstance(p, click.Option) and p.name in config]
    assert {p.name for p in options} == set(config) - {"command"}  # every field is an option
    assert all(p.default == config[p.name] for p in options if not p.required), [(p.name, p.default) for p in options]
    assert not _restated_defaults("pretrain/cli.py", "pretrain", set(config)), "defaults written again beside TrainConfig's"


def test_pretrain_choices_are_the_model_configs_vocabulary():
    """--mask-kind and --objective offer what ModelConfig validates (hear_maeast/config.py), --precision what
    TrainConfig runs: taken from there, so pretrain/cli.py holds none of the words itself."""
    from hear_maeast.config import CHOICES
    from pretrain.cli import pretrain, reconstruct
    from pretrain.config import PRECISIONS

    for command, name, words in ((pretrain, "mask_kind", CHOICES["mask_kind"]), (reconstruct, "mask_kind",
                                 CHOICES["mask_kind"]), (pretrain, "objective", CHOICES["objective"]),
                                 (pretrain, "precision", PRECISIONS)):
        option = next(p for p in command.params if p.name == name)
        assert tuple(option.type.choices) == tuple(words), (command.name, name)
    vocabulary = {*CHOICES["mask_kind"], *CHOICES["objective"], *PRECISIONS}
    tree = ast.parse((REPO / "pretrain" / "cli.py").read_text())
    copies = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in vocabulary]
    assert not copies, f"pretrain/cli.py restates the vocabulary at lines {copies}"


@pytest.mark.parametrize("key, shown", [
    ("lr", "MSM-MAE 1.5e-4 x global batch / 128; MAE-AST 1e-4"),
    ("weight_decay", "MSM-MAE 0.05, not on biases/norms/tokens; MAE-AST 0.01"),
    ("clip_grad", "MSM-MAE off; MAE-AST 10"),
    ("schedule", "MSM-MAE cosine; MAE-AST poly"),
    ("warmup_frac", "10% (MSM-MAE) / 8% (MAE-AST) of the total"),
])
def test_pretrain_help_states_the_recipes_it_trains_with(key, shown):
    from pretrain.cli import pretrain
    from pretrain.recipes import defaults

    assert defaults(key) == shown  # what the recipes hold today, as a person writes it
    helps = " ".join(p.help or "" for p in pretrain.params if isinstance(p, click.Option))
    assert f"[default: {shown}]" in helps


def _module_imports() -> dict[str, set[str]]:
    """{module: the package modules it imports, at the top or inside a function}; a module importing its own
    package's __init__ (e.g. `from hear_maeast import __version__`) is not an edge."""
    modules = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
               for p in _sources(*PACKAGES)}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name
                       and not (modules[m].name == "__init__.py" and name.startswith(m + "."))}
    return graph


def test_no_module_imports_itself_back_through_others():
    """No import circle among the package modules (eval.results and eval.runs imported each other before the
    results layout got one home, eval/layout.py)."""
    graph = _module_imports()

    def reaches(start: str, target: str, seen: set) -> bool:
        return any(m == target or (m not in seen and not seen.add(m) and reaches(m, target, seen))
                   for m in graph[start])

    circles = sorted(m for m in graph if reaches(m, m, set()))
    assert not circles, f"modules in an import circle: {circles}"
