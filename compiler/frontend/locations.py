"""Source locations: which line of the user's model.py an FX node comes from.

torch records a Python stack trace on every node (``node.meta["stack_trace"]``, outermost frame
first); backward nodes carry the trace of the forward code they differentiate. We take the
innermost frame in the user's file, else the innermost frame outside torch and outside this
frontend, else a fallback line (the loss function's ``return`` for the loss, whose frames torch
does not record, or the model's ``forward``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from xdsl.dialects.builtin import FileLineColLoc, IntAttr, StringAttr

_FRAME = re.compile(r'File "([^"]+)", line (\d+)')
_TORCH_DIR = Path(torch.__file__).resolve().parent
_SITE_DIR = _TORCH_DIR.parent
_FRONTEND_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class SourceLine:
    """A file (as shown to the user) and a 1-based line (0 if unknown)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"

    def loc(self) -> FileLineColLoc:
        """The xdsl location ``loc("model.py":LINE:0)``."""
        return FileLineColLoc(StringAttr(self.file), IntAttr(self.line), IntAttr(0))


def _resolve(path: str) -> Path:
    try:
        return Path(path).resolve()
    except OSError:
        return Path(path)


def _is_library(path: Path) -> bool:
    return path.is_relative_to(_SITE_DIR) or path.is_relative_to(_FRONTEND_DIR)


def _first_line(fn: Callable[..., Any] | None, source: Path, want_return: bool) -> int | None:
    """The line of ``fn``'s first ``return`` (or its ``def``) if ``fn`` lives in ``source``."""
    if fn is None:
        return None
    try:
        target = inspect.unwrap(fn)
        path = inspect.getsourcefile(target)
        if path is None or _resolve(path) != source:
            return None
        lines, start = inspect.getsourcelines(target)
    except (TypeError, OSError):
        return None
    if want_return:
        for i, text in enumerate(lines):
            if text.strip().startswith("return"):
                return start + i
    return start


class Locator:
    """Maps FX nodes to the user's lines."""

    def __init__(
        self,
        source_file: Path,
        module: torch.nn.Module,
        loss_fn: Callable[..., Any] | None = None,
        loss_call: tuple[Path, int] | None = None,
    ) -> None:
        self.source = _resolve(str(source_file))
        self.name = Path(source_file).name
        forward_line = _first_line(type(module).forward, self.source, want_return=False)
        self.default = SourceLine(self.name, forward_line or 0)
        loss_line = _first_line(loss_fn, self.source, want_return=True)
        self.loss = SourceLine(self.name, loss_line) if loss_line else self.default
        self.loss_call = loss_call
        self._lines: dict[str | None, SourceLine] = {}
        """``of_trace`` by stack trace (nodes share their traces; resolving each frame's path
        asks the file system)."""
        self._paths: dict[str, Path] = {}

    def _display(self, path: Path) -> str:
        return self.name if path == self.source else path.name

    def of_trace(self, stack_trace: str | None) -> SourceLine:
        """The user's line for a recorded stack trace."""
        line = self._lines.get(stack_trace)
        if line is None:
            line = self._lines[stack_trace] = self._of_trace(stack_trace)
        return line

    def _resolve(self, path: str) -> Path:
        resolved = self._paths.get(path)
        if resolved is None:
            resolved = self._paths[path] = _resolve(path)
        return resolved

    def _of_trace(self, stack_trace: str | None) -> SourceLine:
        frames = [(self._resolve(f), int(n)) for f, n in _FRAME.findall(stack_trace or "")]
        in_loss = self.loss_call is not None and self.loss_call in frames
        for path, line in reversed(frames):
            if path == self.source:
                return SourceLine(self.name, line)
        for path, line in reversed(frames):
            if not _is_library(path):
                return SourceLine(self._display(path), line)
        return self.loss if in_loss else self.default

    def of_node(self, node: torch.fx.Node) -> SourceLine:
        """The user's line for an FX node (backward nodes: the forward line they come from)."""
        return self.of_trace(node.meta.get("stack_trace"))

    def of_text(self, pattern: str) -> SourceLine:
        """The first line of the user's file matching ``pattern`` (a regex), else the default."""
        try:
            text = self.source.read_text()
        except OSError:
            return self.default
        for i, line in enumerate(text.splitlines(), start=1):
            if re.search(pattern, line):
                return SourceLine(self.name, i)
        return self.default
