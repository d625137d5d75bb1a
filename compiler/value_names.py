"""Which traced value an op computes: a name carried in the op's location.

The frontend gives the op that computes an FX node's value (the last op of the node's
conversion) the MLIR named location ``loc("relu"("model.py":30:0))``: the FX node's name
around the user's line. Every pass already carries an op's location to the ops that replace
it (a kernel takes its dataflow op's, a fused kernel its consumer's, a unit its kernel's), so a
PCU whose location is named holds that traced value, and ``emit-pef`` writes the name as
``Pcu.value``: ``rdu-test`` compares the unit's output with torch's value of the same node.
An op that computes something else from that node (a part of a split unit, a copy of a view's
input) takes the plain location (``source_location``).
"""

from __future__ import annotations

import re

from xdsl.dialects.builtin import (
    ArrayAttr,
    CallSiteLoc,
    FileLineColLoc,
    FusedLoc,
    LocationAttr,
    NameLoc,
    StringAttr,
    UnknownLoc,
)
from xdsl.ir import Attribute


def named(name: str, loc: Attribute) -> NameLoc:
    """``loc("name"(loc))``: ``loc`` saying it computes the traced value ``name``."""
    return NameLoc(StringAttr(name), source_location(loc))


def value_name(loc: Attribute) -> str:
    """The traced value a location names ("" if it names none)."""
    return loc.desc.data if isinstance(loc, NameLoc) else ""


def source_location(loc: Attribute) -> LocationAttr:
    """The location without its value name (the source line it points at; unknown if a name
    wraps no location)."""
    while isinstance(loc, NameLoc):
        loc = loc.location
    return loc if isinstance(loc, LocationAttr) else UnknownLoc()


def source_line(loc: Attribute) -> str:
    """``file:line`` a location points at ("" if it names none)."""
    while True:
        if isinstance(loc, FileLineColLoc):
            return f"{loc.filename.data}:{loc.line.data}"
        if isinstance(loc, NameLoc):
            loc = loc.location
        elif isinstance(loc, CallSiteLoc):
            loc = loc.callee
        elif isinstance(loc, FusedLoc) and isinstance(loc.locations, ArrayAttr) and loc.locations:
            loc = loc.locations.data[0]
        else:
            return ""


def ssa_hint(name: str) -> str:
    """``name`` as a valid SSA name hint (``[A-Za-z_$.-][A-Za-z0-9_$.-]*``): other characters
    become ``_``, and a name starting with a digit (an ``nn.Sequential``'s ``0.weight``) gets a
    ``_`` before it. Hints only make the IR readable; names that matter are attributes."""
    name = re.sub(r"[^A-Za-z0-9_$.-]", "_", name)
    return "_" + name if not name or name[0].isdigit() else name
