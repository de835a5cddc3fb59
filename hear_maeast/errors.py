"""One error convention for every command line of the package (`hear-maeast ...`, `python -m pretrain`).

Library code raises the typed exceptions below (never `SystemExit`); the command line turns them into one line a
person can act on, naming the file or option and what to do:

    exit 2  BadInput: a bad option, argument, input file or checkpoint (also click's own usage errors)
    exit 1  WorkFailed: the work itself failed (a task that could not be scored, a run that diverged); also an
            OSError (disk full, permission denied), shown as its message and file
    exit 1  anything else is a bug: one line saying so; `--debug` (or HEAR_MAEAST_DEBUG=1) shows the traceback

Both are ValueErrors, so API callers that catch ValueError keep working.
"""

from __future__ import annotations

import os
import sys

try:
    import click
except ModuleNotFoundError:  # a bare machine (benchmarks/gpu_check.py uses hear_maeast.files): no command line here
    click = None


class HearMaeastError(ValueError):
    """A problem a person can fix. The message names the file or option and says what to do."""

    exit_code = 1


class BadInput(HearMaeastError):
    """A bad option, argument or input file: the user must change what they asked for."""

    exit_code = 2


class WorkFailed(HearMaeastError):
    """The inputs were acceptable but the work failed (e.g. a task that could not be embedded or scored)."""

    exit_code = 1


class CheckpointError(BadInput):
    """A checkpoint that cannot be loaded (exit 2 on the command line); the message names the file and what is wrong.
    Here, not in hear_maeast.checkpoint, so that the torch-free ONNX runtime raises it too."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """Also a FileNotFoundError, for callers that catch that."""


def debug_enabled() -> bool:
    return os.environ.get("HEAR_MAEAST_DEBUG", "") not in ("", "0")


def describe(e: BaseException) -> tuple[str, int]:
    """(one-line message, exit code) for an exception that reached the command line."""
    if isinstance(e, HearMaeastError):
        return str(e), e.exit_code
    if isinstance(e, OSError):
        where = " ".join(str(f) for f in (e.filename, e.filename2) if f)
        what = e.strerror or str(e)
        hint = (" (free some space or choose another output folder)" if e.errno in (28, 122) else
                " (choose a writable output folder)" if e.errno in (1, 13, 30) else "")  # EPERM, EACCES, EROFS
        return f"{what}{': ' + where if where else ''}{hint}", 1
    return (f"internal error: {type(e).__name__}: {e} (run again with --debug for the traceback, and please report "
            "it)"), 1


class FriendlyErrors:
    """Mixin for click commands and groups: typed exceptions become one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as e:  # noqa: BLE001 - the one place where every error becomes a message
            if debug_enabled():
                raise
            message, code = describe(e)
            click.echo(f"error: {' '.join(message.split())}", err=True)
            sys.stderr.flush()
            ctx.exit(code)


if click is not None:
    class Command(FriendlyErrors, click.Command):
        pass

    class Group(FriendlyErrors, click.Group):
        pass
