"""The IR dumps' text: xdsl's printer, with the same output for less work.

``rdu-compile`` writes the IR after each stage (``<name>.<stage>.mlir``); a GPT compile prints
about 2 MB of IR over its stages, hundreds of thousands of fragments, so the per-fragment
overhead of xdsl's ``Printer`` is most of that time. ``print_ir`` gives exactly xdsl's text
(``test/e2e/test_outputs.py`` compares them on the lit inputs and on every stage of a compile).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from xdsl.dialects.builtin import ModuleOp, UnregisteredOp
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.printer import Printer
from xdsl.traits import IsolatedFromAbove


@dataclass(eq=False)
class AttributeTexts:
    """The texts of the attributes printed so far (shared by the IR dumps of one compile).

    ``by_value``: equal attributes print alike. ``by_id``: the same text by the attribute
    object (kept alive here, so its id is not reused), looked up without hashing it: the hash
    of an attribute hashes all of its parameters, recursively, and most attributes a dump
    prints are objects printed before (a type, a location, an access pattern)."""

    by_value: dict[Attribute, str] = field(default_factory=dict)
    by_id: dict[int, tuple[Attribute, str]] = field(default_factory=dict)


T = TypeVar("T")

_ESCAPED = re.compile(rb"[^\x20-\x21\x23-\x5b\x5d-\x7e]")
"""A byte xdsl's ``print_bytes_literal`` escapes: a quote, a backslash, one outside 0x20-0x7E."""


@dataclass(eq=False, repr=False)
class _DumpPrinter(Printer):
    """xdsl's Printer, printing the same text with less work (``test/e2e/test_outputs.py``
    compares the two).

    The IR dumps are hundreds of thousands of fragments (a GPT compile prints about 2 MB of
    IR over its stages), so the per-fragment overhead of the base class is most of their time:

    - text without newlines (and a list's delimiters, a string literal with nothing to escape)
      is written straight to the stream, not through ``print(..., end="", file=stream)`` one
      fragment (or character) at a time; text with newlines (indentation, pending messages)
      still goes through the base class;
    - an op with a custom format is printed without the base class's look-ups of its traits
      and format (kept per op class), unless there are diagnostics to print;
    - SSA values are named as the base class names them, and found by their id (the base
      class hashes them with a Python-level ``__hash__``);
    - attributes are immutable values and most recur (types, access patterns, shapes), so the
      text of one is kept (``texts``) and written again; one whose text has a newline, or that
      registers a dialect resource, is printed each time.

    HF GPT-2's 8 dumps (2.2 MB) take 0.37 s, 1.1 s with the base class.
    """

    texts: AttributeTexts = field(default_factory=AttributeTexts, kw_only=True)
    out: IO[str] = field(kw_only=True)
    """Where the text goes (the base class's ``stream``, which may be None: stdout)."""
    _names: dict[int, tuple[SSAValue, str]] = field(default_factory=dict, init=False)
    _custom: dict[type[Operation], tuple[bool, ...]] = field(default_factory=dict, init=False)
    """Per op class: ``(isolated from above,)`` if it has a custom format, else ``()``."""

    def __post_init__(self) -> None:
        self.stream = self.out

    def print_string(self, text: str, *, indent: int | None = None) -> None:
        if "\n" in text:
            super().print_string(text, indent=indent)
        else:
            self._current_column += len(text)
            self.out.write(text)

    def print_op(self, op: Operation) -> None:
        kind = type(op)
        custom = self._custom.get(kind)
        if custom is None:
            isolated = bool(op.get_traits_of_type(IsolatedFromAbove))
            registered = not issubclass(kind, UnregisteredOp)
            custom = (isolated,) if registered and Operation.print is not kind.print else ()
            self._custom[kind] = custom
        if not custom or self.print_generic_format or self.diagnostic.op_messages:
            super().print_op(op)
            return
        # What the base class does for an op with a custom format and no diagnostics.
        if op.results:
            self.print_list(op.results, self.print_ssa_value)
            self._current_column += 3
            self.out.write(" = ")
        isolated = custom[0]
        if isolated:
            self.enter_scope()
        self._current_column += len(op.name)
        self.out.write(op.name)
        op.print(self)
        if self.print_debuginfo:
            self._current_column += 1
            self.out.write(" ")
            self.print_attribute(op.location)
        if isolated:
            self.exit_scope()

    def print_list(
        self, elems: Iterable[T], print_fn: Callable[[T], Any], delimiter: str = ", "
    ) -> None:
        if "\n" in delimiter:
            super().print_list(elems, print_fn, delimiter)
            return
        first = True
        for elem in elems:
            if first:
                first = False
            else:
                self._current_column += len(delimiter)
                self.out.write(delimiter)
            print_fn(elem)

    def print_bytes_literal(self, bytestring: bytes) -> None:
        if _ESCAPED.search(bytestring) is not None:
            super().print_bytes_literal(bytestring)
            return
        self._current_column += len(bytestring) + 2
        self.out.write(f'"{bytestring.decode()}"')

    def _print_new_line(self, indent: int | None = None, print_message: bool = True) -> None:
        if print_message and self._next_line_callback:
            super()._print_new_line(indent, print_message)
            return
        spaces = (self._indent if indent is None else indent) * self.indent_num_spaces
        self.out.write("\n" + " " * spaces)
        self._current_line += 1
        self._current_column = spaces

    def print_ssa_value(self, value: SSAValue) -> str:
        named = self._names.get(id(value))
        if named is not None and named[0] is value:
            name = named[1]
            self._current_column += len(name) + 1
            self.out.write("%" + name)
            return name
        # A new name, as the base class gives it.
        hint = value.name_hint
        if hint:
            index = self.ssa_names.get(hint, 0)
            name = f"{hint}_{index}" if index else hint
            self.ssa_names[hint] = index + 1
        else:
            name = self._get_new_valid_name_id()
        self._names[id(value)] = (value, name)
        self._current_column += len(name) + 1
        self.out.write("%" + name)
        return name

    def print_attribute(self, attribute: Attribute) -> None:
        if self.printing_location:  # inside a location (a named one's): printed without loc()
            super().print_attribute(attribute)
            return
        texts = self.texts
        known = texts.by_id.get(id(attribute))
        if known is not None and known[0] is attribute:
            text = known[1]
            self._current_column += len(text)
            self.out.write(text)
            return
        try:
            text = texts.by_value.get(attribute)
        except TypeError:  # an attribute holding something unhashable
            super().print_attribute(attribute)
            return
        if text is None:
            out = self.out
            column, resources = self._current_column, len(self._dialect_resources)
            self.stream = self.out = buffer = io.StringIO()
            try:
                super().print_attribute(attribute)
            finally:
                self.stream = self.out = out
            text = buffer.getvalue()
            out.write(text)
            if "\n" in text or resources != len(self._dialect_resources):
                return
            texts.by_value[attribute] = text
            self._current_column = column + len(text)
        else:
            self._current_column += len(text)
            self.out.write(text)
        texts.by_id[id(attribute)] = (attribute, text)


def print_ir(module: ModuleOp, texts: AttributeTexts | None = None) -> str:
    """``module`` as text (with locations); ``texts``: attribute texts kept between calls."""
    out = io.StringIO()
    printer = _DumpPrinter(
        out=out,
        print_debuginfo=True,
        texts=AttributeTexts() if texts is None else texts,
    )
    printer.print_op(module)
    return out.getvalue() + "\n"
