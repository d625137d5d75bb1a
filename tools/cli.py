"""Plumbing the rdu-* commands share: model arguments, help, and one-line errors.

Every command takes ``--debug``. Without it an error is one line on stderr
(``rdu-compile: error: ...``) and a non-zero exit: 1 for a problem with the user's input,
2 for an internal error. With it, the full traceback.
"""

from __future__ import annotations

import argparse
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
        raise ToolError(f"unknown option(s) {' '.join(unknown)} (see --help)")
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
