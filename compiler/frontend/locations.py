"""Source locations: which line of the user's model.py an FX node comes from.

torch records a Python stack trace on every node (``node.meta["stack_trace"]``, outermost frame
first); backward nodes carry the trace of the forward code they differentiate. We take the
innermost frame in the user's file, else the innermost frame outside torch and outside this
frontend, else a fallback line (the loss function's ``return`` for the loss, whose frames torch
does not record, or the model's ``forward``).

Errors name a second frame too: the library line that made the call (``call_site``), the
innermost frame of the trace when it lies below the user's line (``modeling_llama.py:113 in
LlamaRotaryEmbedding.forward``), its function's qualified name read from the library's source.
Frames of generated code (``<eval_with_key>.N``, FX graph modules) are never shown.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from xdsl.dialects.builtin import FileLineColLoc, IntAttr, StringAttr

_FRAME = re.compile(r'File "([^"]+)", line (\d+)(?:, in (\S+))?')
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


@dataclass(frozen=True)
class CallSite:
    """A library line that called an op: file name, line, qualified function name."""

    file: str
    line: int
    function: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where} in {self.function}" if self.function else where


def _qualified_names(path: Path) -> list[tuple[int, int, str]]:
    """``(first line, last line, qualified name)`` of every function in a Python file."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    out: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                out.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, f"{name}.<locals>.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def qualified_name(
    path: Path,
    line: int,
    fallback: str,
    functions: dict[Path, list[tuple[int, int, str]]] | None = None,
) -> str:
    """The qualified name of the innermost function of ``path`` around ``line``
    (``LlamaRotaryEmbedding.forward``); ``fallback`` (the trace's bare name) if none is found.
    ``functions`` keeps each file's functions for the next call (one compile's ``Locator``)."""
    found = functions.get(path) if functions is not None else None
    if found is None:
        found = _qualified_names(path)
        if functions is not None:
            functions[path] = found
    best: tuple[int, str] | None = None
    for first, last, name in found:
        if first <= line <= last and (best is None or first >= best[0]):
            best = (first, name)
    return best[1] if best else fallback


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
        self._functions: dict[Path, list[tuple[int, int, str]]] = {}
        """The functions of each library file a call site is in (``qualified_name``)."""

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

    def _frames(self, stack_trace: str | None) -> list[tuple[Path, int, str]]:
        """``(file, line, function)`` of each frame, outermost first, without generated code."""
        return [
            (self._resolve(f), int(n), fn)
            for f, n, fn in _FRAME.findall(stack_trace or "")
            if not f.startswith("<")  # <eval_with_key>.N: an FX graph module's generated code
        ]

    def _user_frame(self, frames: list[tuple[Path, int, str]]) -> int | None:
        """The index of the frame shown as the user's line: the innermost in the model file,
        else the innermost outside torch and this frontend."""
        for i in reversed(range(len(frames))):
            if frames[i][0] == self.source:
                return i
        for i in reversed(range(len(frames))):
            if not _is_library(frames[i][0]):
                return i
        return None

    def _of_trace(self, stack_trace: str | None) -> SourceLine:
        frames = self._frames(stack_trace)
        i = self._user_frame(frames)
        if i is not None:
            return SourceLine(self._display(frames[i][0]), frames[i][1])
        in_loss = self.loss_call is not None and self.loss_call in [(p, n) for p, n, _ in frames]
        return self.loss if in_loss else self.default

    def call_site(self, stack_trace: str | None) -> CallSite | None:
        """The library line that called the op: the innermost frame, when it lies below the
        user's line (None when the user's own line calls it, or the trace has no frames)."""
        frames = self._frames(stack_trace)
        i = self._user_frame(frames)
        if not frames or (i is not None and i == len(frames) - 1):
            return None
        path, line, function = frames[-1]
        if path.is_relative_to(_FRONTEND_DIR):  # the training wrapper's own frames
            return None
        return CallSite(path.name, line, qualified_name(path, line, function, self._functions))

    def call_site_of(self, node: torch.fx.Node) -> CallSite | None:
        """``call_site`` of an FX node's stack trace."""
        return self.call_site(node.meta.get("stack_trace"))

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
