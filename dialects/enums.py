"""Enums whose members come from the shared layer's tables, and their parsing.

The opcode table (``runtime/machine/opcodes.py``) and the PEF schema's literals
(``runtime/pef/schema.py``) are the one list of each concept; the shared layer never imports
xdsl, so the dialects build their ``StrEnum``s from those lists here rather than writing the
names again. A dialect declares such an enum as

    if TYPE_CHECKING:
        class Combiner(StrEnum):
            '''(the type checker's view: a StrEnum whose members it does not list)'''
    else:
        Combiner = table_enum("Combiner", get_args(schema.Combiner), __name__)

and its ``EnumAttribute`` parses members with ``parse_member``, which refuses an unknown name
with a message that says what was expected.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar, cast

from xdsl.parser import AttrParser
from xdsl.utils.str_enum import StrEnum

E = TypeVar("E", bound=StrEnum)


def table_enum(name: str, values: Iterable[str], module: str) -> type[StrEnum]:
    """A ``StrEnum`` class ``name`` (of ``module``) with one member a value, in order; a
    member's name is its value upper-cased (``add`` is ``ADD``)."""
    members = [(value.upper(), value) for value in values]
    # The functional form of Enum's constructor, which the type checker reads as a member.
    return cast(type[StrEnum], StrEnum(name, members, module=module))


def parse_member(parser: AttrParser, enum_type: type[E], what: str) -> E:
    """A member of ``enum_type``, written as a bare identifier (``add``) or a string literal
    (``"add"``); an unknown one is ``unknown <what> 'x' (expected one of ...)``."""
    start = parser.pos
    value = parser.parse_optional_identifier_or_str_literal()
    if value is None:
        parser.raise_error(f"expected {what}", start)
    names = [member.value for member in enum_type]
    if value not in names:
        parser.raise_error(
            f"unknown {what} '{value}' (expected one of {', '.join(names)})", start, parser.pos
        )
    return enum_type(value)
