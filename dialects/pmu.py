"""The ``pmu`` dialect: pattern memory units (on-chip buffers).

A ``pmu.buffer`` is one PMU holding one tensor, streamed through in tiles of ``tile_bytes`` with
``nbuf``-fold buffering over ``banks`` banks. Its source is either a section argument (an address
generator loads it from DRAM) or a ``pcu.unit`` result (the PCU writes it). Its result is a
``memref`` that ``pcu.unit`` ops read and ``dataflow.yield`` stores back to DRAM.

    %w_pmu = pmu.buffer %w {name = "net.0.weight", tile_bytes = 8192 : i64, nbuf = 2 : i64,
                            banks = 16 : i64} : tensor<64x128xf32> -> memref<64x128xf32>

A tensor that must stay on chip whole (see assign-pmus) and is larger than one PMU spans
several: ``pmus = N : i64`` (absent: 1) says how many PMUs of the grid the buffer occupies, its
address range cut into ``N`` consecutive pieces of equal size (at most ``target.pmu_bytes``
each; a buffer may span more PMUs than it needs to hold, for its streams).

``bank_skew = N`` (optional, set by convert-rdu-tile-to-pcu-pmu) skews the banking: element ``a``
lives in bank ``(a + a // N) % banks`` instead of ``a % banks``, so that vectors down a column of
``N`` elements spread over the banks too (see ``compiler/passes/tiling.py``).

place-and-route adds ``placement = #pmu.placement<...>`` (a ``BufferPlacementAttr``):

    #pmu.placement<at (1, 0), fill (0, 0) -> (1, 0), store (1, 0) -> (0, 0)>

- ``at``: the PMU's slot on the grid ``(x, y)``; a buffer of ``pmus = N`` PMUs lists the slots
  of all ``N``, first PMU first: ``at [(1, 0), (3, 0)]``;
- ``fill``: the route (``#pmu.route``, the switch coordinates from the source's switch to the
  buffer's, each adjacent to the next) of the stream that fills the buffer, from DRAM or from
  its producing PCU (absent when a parallel unit writes it: its copies' ``out_routes``);
- ``store``: likewise, of the stream storing it to DRAM (only on buffers that a section yields).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from xdsl.dialects.builtin import (
    I64,
    DenseArrayBase,
    IntegerAttr,
    IntegerType,
    MemRefType,
    NoneAttr,
    StringAttr,
    TensorType,
    i64,
)
from xdsl.ir import Attribute, Block, Dialect, Operation, ParametrizedAttribute, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.traits import NoMemoryEffect
from xdsl.utils.exceptions import VerifyException

from dialects.rdu_tile import dense_i64
from runtime.machine.rules import route_break

Slot = tuple[int, int]
"""A switch or unit slot on the grid, ``(x, y)``."""


# --------------------------------------------------------------------------------------------
# Slots and routes (shared with pcu.unit's placement)
# --------------------------------------------------------------------------------------------


def pairs(values: Sequence[int]) -> tuple[Slot, ...]:
    """``[x0, y0, x1, y1, ...]`` as ``((x0, y0), (x1, y1), ...)``."""
    it = iter(values)
    return tuple(zip(it, it, strict=True))


def flat_slots(slots: Sequence[Sequence[int]]) -> DenseArrayBase[IntegerType]:
    """Slots ``[(x0, y0), ...]`` stored as one ``array<i64: x0, y0, ...>``."""
    return dense_i64([v for slot in slots for v in slot])


def slots_text(slots: Sequence[Slot]) -> str:
    """``(x, y)`` for one slot, ``[(x0, y0), (x1, y1), ...]`` for several."""
    text = ", ".join([f"({x:d}, {y:d})" for x, y in slots])
    return text if len(slots) == 1 else f"[{text}]"


def parse_slot(parser: AttrParser) -> Slot:
    """``(x, y)``."""
    x, y = 0, 0
    with parser.in_parens():
        x = parser.parse_integer(context_msg=" (a slot's x)")
        parser.parse_punctuation(",")
        y = parser.parse_integer(context_msg=" (a slot's y)")
    return (x, y)


def parse_slots(parser: AttrParser) -> list[Slot]:
    """``(x, y)`` or ``[(x0, y0), (x1, y1), ...]``."""
    if parser.parse_optional_punctuation("[") is None:
        return [parse_slot(parser)]
    slots = [parse_slot(parser)]
    while parser.parse_optional_punctuation(",") is not None:
        slots.append(parse_slot(parser))
    parser.parse_punctuation("]")
    return slots


def check_slots(what: str, at: DenseArrayBase[IntegerType]) -> tuple[Slot, ...]:
    """The slots ``at`` holds (flattened), once they are pairs, at least one, on the grid
    (coordinates >= 0) and distinct; else raise."""
    if len(at) % 2:
        raise VerifyException(f"{what}: 'at' must hold (x, y) slots")
    slots = pairs(at.get_values())
    if not slots:
        raise VerifyException(f"{what}: 'at' needs at least one slot")
    for x, y in slots:
        if x < 0 or y < 0:
            raise VerifyException(f"{what}: slot ({x}, {y}) is off the grid (negative)")
    if len(set(slots)) != len(slots):
        raise VerifyException(f"{what}: 'at' lists a slot twice: {slots_text(slots)}")
    return slots


def placement_text(slots: Sequence[Slot], fields: Sequence[tuple[str, str]]) -> str:
    """A placement's parameters: ``<at SLOTS, KEY VALUE, ...>`` for the fields given."""
    return f"<at {slots_text(slots)}" + "".join([f", {k} {v}" for k, v in fields]) + ">"


@irdl_attr_definition
class RouteAttr(ParametrizedAttribute):
    """A stream's path through the switches, from the source's switch to the destination's,
    each adjacent to the next: ``#pmu.route<(0, 1) -> (0, 0) -> (1, 0)>`` (one hop when both
    ends share a switch)."""

    name = "pmu.route"

    flat: DenseArrayBase[I64]
    """The hops' coordinates ``x0, y0, x1, y1, ...``."""

    def __init__(self, hops: Sequence[Sequence[int]]) -> None:
        super().__init__(flat_slots(hops))

    @property
    def hops(self) -> tuple[Slot, ...]:
        """The switches ``(x, y)`` in order."""
        return pairs(self.flat.get_values())

    def verify(self) -> None:
        n = len(self.flat)
        if n == 0 or n % 2:
            raise VerifyException(
                f"pmu.route: needs at least one (x, y) switch, got {n} coordinate(s)"
            )
        hops = self.hops
        if any(x < 0 or y < 0 for x, y in hops):
            raise VerifyException(f"pmu.route: {self.text()} leaves the grid (a negative switch)")
        h = route_break(hops)
        if h is not None:
            raise VerifyException(
                f"pmu.route: hop {h} {hops[h]} is not adjacent to hop {h - 1} {hops[h - 1]}"
            )

    def text(self) -> str:
        """``(x0, y0) -> (x1, y1) -> ...``, the parameters' syntax."""
        return " -> ".join([f"({x:d}, {y:d})" for x, y in self.hops])

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<{self.text()}>")

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        pos = parser.pos
        with parser.in_angle_brackets():
            hops = parse_hops(parser)
        return checked(parser, cls, (flat_slots(hops),), pos)


def route_attr(hops: Sequence[Sequence[int]]) -> RouteAttr:
    """``RouteAttr(hops)``, made (and verified) once for equal hops: a compile records a
    section's routes again and again (partition-sections' pieces, then place-and-route writes
    them on the units: 15,317 of GPT-2 small's 24,246 routes were made before, 0.45 s)."""
    return _route_attr(tuple(map(tuple, hops)))


@functools.lru_cache(maxsize=1 << 16)
def _route_attr(hops: tuple[tuple[int, ...], ...]) -> RouteAttr:
    return RouteAttr(hops)


def parse_hops(parser: AttrParser) -> list[Slot]:
    """``(x0, y0) -> (x1, y1) -> ...`` (a route's parameters)."""
    hops = [parse_slot(parser)]
    while parser.parse_optional_punctuation("->") is not None:
        hops.append(parse_slot(parser))
    return hops


def parse_route(parser: AttrParser) -> RouteAttr:
    """A route written without its ``#pmu.route<>`` (inside a placement)."""
    pos = parser.pos
    hops = parse_hops(parser)
    try:
        return RouteAttr(hops)
    except VerifyException as err:
        parser.raise_error(str(err), pos, parser.pos)


def route_list_text(routes: Sequence[RouteAttr]) -> str:
    """``[(x, y) -> ..., ...]``: routes written without their ``#pmu.route<>``."""
    return "[" + ", ".join([r.text() for r in routes]) + "]"


@irdl_attr_definition
class BufferPlacementAttr(ParametrizedAttribute):
    """Where a ``pmu.buffer``'s PMUs are and the routes that fill and store it (see the module
    docstring): ``#pmu.placement<at (1, 0), fill (0, 0) -> (1, 0)>``."""

    name = "pmu.placement"

    at: DenseArrayBase[I64]
    """The slots of its PMUs, flattened ``x0, y0, x1, y1, ...``."""
    fill: RouteAttr | NoneAttr
    store: RouteAttr | NoneAttr

    def __init__(
        self,
        slots: Sequence[Sequence[int]],
        fill: RouteAttr | None = None,
        store: RouteAttr | None = None,
    ) -> None:
        super().__init__(flat_slots(slots), fill or NoneAttr(), store or NoneAttr())

    @property
    def slots(self) -> tuple[Slot, ...]:
        """The slots of its PMUs, first PMU first."""
        return pairs(self.at.get_values())

    @property
    def fill_route(self) -> RouteAttr | None:
        return self.fill if isinstance(self.fill, RouteAttr) else None

    @property
    def store_route(self) -> RouteAttr | None:
        return self.store if isinstance(self.store, RouteAttr) else None

    def verify(self) -> None:
        check_slots("pmu.placement", self.at)

    def print_parameters(self, printer: Printer) -> None:
        fields = [
            (key, route.text())
            for key, route in (("fill", self.fill), ("store", self.store))
            if isinstance(route, RouteAttr)
        ]
        printer.print_string(placement_text(self.slots, fields))

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        route = (lambda: parse_route(parser), NoneAttr())
        return parse_placement(parser, cls, {"fill": route, "store": route})


def parse_placement(
    parser: AttrParser,
    cls: type[ParametrizedAttribute],
    fields: dict[str, tuple[Callable[[], Attribute], Attribute]],
) -> Sequence[Attribute]:
    """A placement's parameters, checked: ``<at SLOTS, KEY VALUE, ...>``, each of ``fields``
    (``key: (parse its value, its value when absent)``, in the order of ``cls``'s parameters
    after ``at``) at most once, in any order."""
    what = cls.name
    pos = parser.pos
    found: dict[str, Attribute] = {}
    with parser.in_angle_brackets():
        parser.parse_keyword("at", f" ({what} starts with its slots)")
        at = flat_slots(parse_slots(parser))
        while parser.parse_optional_punctuation(",") is not None:
            key_pos = parser.pos
            key = parser.parse_keyword_in(list(fields), f" (a field of {what})")
            if key in found:
                parser.raise_error(f"{what}: '{key}' given twice", key_pos, parser.pos)
            found[key] = fields[key][0]()
    params = (at, *(found.get(key, absent) for key, (_, absent) in fields.items()))
    return checked(parser, cls, params, pos)


def checked(
    parser: AttrParser, cls: type[ParametrizedAttribute], params: Sequence[Attribute], pos: int
) -> Sequence[Attribute]:
    """``params`` once ``cls``'s verifier accepts them, else a parse error at ``pos`` (the
    attribute's text) saying why."""
    try:
        cls.new(params)
    except VerifyException as err:
        parser.raise_error(str(err), pos, parser.pos)
    return params


@functools.lru_cache(maxsize=1024)
def _memref_of(tensor: TensorType[Attribute]) -> MemRefType[Attribute]:
    """The memref of a tensor's shape and element type: one object a type (attributes are
    immutable), built once (xdsl's ``MemRefType`` checks its shape with ``isa``, 35 us a
    call)."""
    return MemRefType(tensor.element_type, tensor.get_shape())


@irdl_op_definition
class BufferOp(IRDLOperation):
    """A PMU holding one tensor (see the module docstring)."""

    name = "pmu.buffer"

    source = operand_def(TensorType)
    result = result_def(MemRefType)

    buffer_name = prop_def(StringAttr, prop_name="name")
    tile_bytes = prop_def(IntegerAttr[I64])
    nbuf = prop_def(IntegerAttr[I64])
    banks = prop_def(IntegerAttr[I64])
    bank_skew = opt_prop_def(IntegerAttr[I64])
    pmus = opt_prop_def(IntegerAttr[I64])
    placement = opt_prop_def(BufferPlacementAttr)

    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$source attr-dict `:` type($source) `->` type($result)"

    traits = traits_def(NoMemoryEffect())

    def __init__(
        self,
        source: SSAValue | Operation,
        name: str,
        tile_bytes: int,
        nbuf: int,
        banks: int,
    ) -> None:
        src = SSAValue.get(source)
        assert isinstance(src.type, TensorType)
        result_type = _memref_of(src.type)
        super().__init__(
            operands=[src],
            result_types=[result_type],
            properties={
                "name": StringAttr(name),
                "tile_bytes": IntegerAttr(tile_bytes, i64),
                "nbuf": IntegerAttr(nbuf, i64),
                "banks": IntegerAttr(banks, i64),
            },
        )

    @property
    def num_pmus(self) -> int:
        """How many PMUs the buffer occupies (``pmus``, 1 when absent)."""
        return 1 if self.pmus is None else self.pmus.value.data

    @property
    def from_dram(self) -> bool:
        """Whether an address generator loads this buffer from DRAM (its source is an argument)."""
        return isinstance(self.source.owner, Block)

    def verify_(self) -> None:
        what = f'pmu.buffer "{self.buffer_name.data}"'
        src = self.source.type
        res = self.result.type
        assert isinstance(src, TensorType) and isinstance(res, MemRefType)
        if tuple(src.get_shape()) != tuple(res.get_shape()) or (
            src.element_type != res.element_type
        ):
            raise VerifyException(
                f"{what}: result {res} must have the shape and element type of its source {src}"
            )
        owner = self.source.owner
        if isinstance(owner, Operation) and owner.name != "pcu.unit":
            raise VerifyException(
                f"{what}: source must be a section argument or a 'pcu.unit' result, got a "
                f"'{owner.name}' result"
            )
        for key, attr, low in (
            ("tile_bytes", self.tile_bytes, 1),
            ("nbuf", self.nbuf, 1),
            ("banks", self.banks, 1),
        ):
            if attr.value.data < low:
                raise VerifyException(f"{what}: {key} must be >= {low}, got {attr.value.data}")
        if self.bank_skew is not None and self.bank_skew.value.data < 1:
            raise VerifyException(
                f"{what}: bank_skew must be >= 1 (leave it out for none), got "
                f"{self.bank_skew.value.data}"
            )
        if self.num_pmus < 1:
            raise VerifyException(f"{what}: pmus must be >= 1, got {self.num_pmus}")
        if self.placement is not None and len(self.placement.slots) != self.num_pmus:
            raise VerifyException(
                f"{what}: its placement lists {len(self.placement.slots)} slot(s) for its "
                f"{self.num_pmus} PMU(s)"
            )


Pmu = Dialect("pmu", [BufferOp], [RouteAttr, BufferPlacementAttr])
"""The pmu dialect."""
