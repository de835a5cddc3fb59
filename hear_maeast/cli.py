"""The `hear-maeast` command line: one click group whose subcommands live next to the code they drive.

Subcommands are imported lazily (`module:attribute`), so `hear-maeast presets` does not import the
training loop or heareval, and each subpackage owns its own commands.
"""

from __future__ import annotations

import importlib
import os
import warnings

import click

from hear_maeast import __version__
from hear_maeast.errors import Group

# name -> "module:attribute" of a click.Command
SUBCOMMANDS = {
    "presets": "hear_maeast.commands:presets",
    "embed": "hear_maeast.commands:embed",
    "convert": "hear_maeast.convert_cmd:convert",
    "pretrain": "pretrain.cli:pretrain",
    "reconstruct": "pretrain.cli:reconstruct",
    "tasks": "eval.cli:tasks",
    "eval": "eval.cli:eval_cmd",
    "table": "eval.cli:table",
    "finetune": "eval.cli:finetune",
}


class LazyGroup(Group):
    """Subcommands imported on first use; errors become one line (hear_maeast.errors)."""

    def list_commands(self, ctx):
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx, name):
        target = SUBCOMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


# torch.cuda imports pynvml (installed for heareval) and warns about it on every start; it is not ours to fix
warnings.filterwarnings("ignore", message="The pynvml package is deprecated", category=FutureWarning)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hear-maeast")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error instead of one line.")
def main(debug: bool):
    """MSM-MAE and MAE-AST: pretrain, embed, and evaluate on HEAR."""
    if debug:
        os.environ["HEAR_MAEAST_DEBUG"] = "1"  # seen by hear_maeast.errors, here and in child processes


if __name__ == "__main__":
    main()
