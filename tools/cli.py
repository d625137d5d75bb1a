"""Plumbing the rdu-* commands share: model arguments, help, and one-line errors.

Every command takes ``--debug``. Without it an error is one line on stderr
(``rdu-compile: error: ...``) and a non-zero exit: 1 for a problem with the user's input,
2 for an internal error. With it, the full traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from tools.model_file import ModelFile, load_model_file

MODEL_COMMAND_SETTINGS = {
    "ignore_unknown_options": True,
    "allow_extra_args": True,
    "help_option_names": [],
}


def user_error_types() -> tuple[type[BaseException], ...]:
    """Our error types, imported lazily so that each tool loads only what it uses."""
    from runtime.errors import RduError
    from tools.model_file import ModelFileError

    types: list[type[BaseException]] = [ModelFileError, RduError, ToolError]
    if "compiler" in sys.modules:
        from compiler.frontend import FrontendError
        from compiler.targets import TargetError

        types += [FrontendError, TargetError]
    if "xdsl" in sys.modules:
        from xdsl.utils.exceptions import DiagnosticException, VerifyException

        types += [DiagnosticException, VerifyException]
    return tuple(types)


class ToolError(Exception):
    """A bad command line or a failed check (one-line message)."""


def host_memory_bytes() -> int | None:
    """This machine's physical memory (None where the system does not say): no example batch
    or PEF whose tensors alone take more can be compiled or run here."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def size_text(n: float) -> str:
    """``25.6 GiB``, ``12.0 MiB``, ``512 bytes``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def fail(tool: str, message: str, code: int) -> NoReturn:
    click.echo(f"{tool}: error: {message}", err=True)
    sys.exit(code)


def guarded(tool: str, debug: bool, body: Callable[[], int | None]) -> None:
    """Run a command body; turn every exception into one line unless ``debug``."""
    try:
        code = body()
    except KeyboardInterrupt:
        if debug:
            raise
        fail(tool, "interrupted", 130)
    except Exception as error:
        if debug:
            raise
        text = " ".join(str(error).split()) or type(error).__name__
        # What the command did about it (PEP 678 notes: "stopped at step 7; wrote last.pt").
        notes = "".join(f"; {' '.join(str(n).split())}" for n in getattr(error, "__notes__", ()))
        if isinstance(error, user_error_types()):
            fail(tool, text + notes, 1)
        fail(tool, f"internal error: {type(error).__name__}: {text} (rerun with --debug){notes}", 2)
    sys.exit(code or 0)


class OneLineCommand(click.Command):
    """A click command whose usage errors (an unknown option, a bad value, a missing argument)
    are one line, ``rdu-run: error: no such option: --lrr (did you mean --lr?)``, and exit 1
    like every other bad input (click's own are usage, a hint and the error, exit 2)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as error:
            fail(self.name or ctx.info_name or "rdu", usage_message(error), 1)


def usage_message(error: click.UsageError) -> str:
    """Click's usage error in one line: what is wrong and, for an unknown option, the closest
    options."""
    if isinstance(error, click.NoSuchOption):
        return no_such_option(error.option_name, sorted(error.possibilities or ()))
    text = " ".join(error.format_message().split()).rstrip(".")
    for kind in ("integer", "float"):  # click names an IntRange's or FloatRange's type so
        text = text.replace(f"is not a valid {kind} range", f"is not a valid {kind}")
    return f"{text[:1].lower()}{text[1:]} (see --help)"


def no_such_option(option: str, close: list[str]) -> str:
    """``no such option: --lrr (did you mean --lr?)``."""
    if not close:
        return f"no such option: {option} (see --help)"
    return f"no such option: {option} (did you mean {' or '.join(close)}?)"


def _close_options(option: str, parser: argparse.ArgumentParser) -> list[str]:
    """The options of the running command and of the model closest to ``option``."""
    import difflib

    names = [o for action in parser._actions for o in action.option_strings]
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        names += [o for p in ctx.command.params if isinstance(p, click.Option) for o in p.opts]
    return difflib.get_close_matches(option.split("=", 1)[0], names, n=3, cutoff=0.6)


class _ModelArgumentParser(argparse.ArgumentParser):
    """argparse that raises a ToolError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise ToolError(f"bad model argument: {message}")


def shared_model_parser(model_file: ModelFile | None) -> argparse.ArgumentParser:
    """The argparse parser for the model's own arguments (from ``add_args``)."""
    parser = _ModelArgumentParser(prog="model arguments", add_help=False)
    if model_file is not None:
        model_file.add_args(parser)
    return parser


def model_namespace(
    model_file: ModelFile, extra: list[str], shared: dict[str, Any]
) -> argparse.Namespace:
    """Parse the model's own arguments from ``extra`` and add the shared ones to the namespace."""
    parser = shared_model_parser(model_file)
    args, unknown = parser.parse_known_args(extra)
    if unknown:
        option = next((u for u in unknown if u.startswith("-")), None)
        if option is None:
            raise ToolError(f"unexpected argument(s) {' '.join(unknown)} (see --help)")
        raise ToolError(no_such_option(option, _close_options(option, parser)))
    for key, value in shared.items():
        setattr(args, key, value)
    return args


def print_help(ctx: click.Context, model_path: str | None, debug: bool) -> None:
    """The command's help, with experimental options when ``debug``, then the model's options."""
    if debug:
        for param in ctx.command.params:
            if isinstance(param, click.Option):
                param.hidden = False
    click.echo(ctx.get_help())
    if model_path is None:
        return
    model_file = load_model_file(model_path)
    text = shared_model_parser(model_file).format_help()
    click.echo(f"\nModel arguments ({model_file.path.name}):")
    click.echo(text.split("\n", 1)[1] if "\n" in text else text)
