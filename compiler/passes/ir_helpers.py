"""IR helpers the passes share; no pass owns them (a pass imports this, never another pass).

- errors that point at the user's line (``describe_location``, ``fail``, ``op_name``);
- shapes and strides of tensor values (``elt_of``, ``row_major``);
- how many PMUs a buffer spans (``assign_pmus``, run by assign-pmus and again by
  partition-sections on the pieces it cuts, with ``is_resident`` and ``resident_pmus``);
- a section as the placer sees it (``section_graph``), and the placement partition-sections
  found for it, recorded on the section for place-and-route (``record_placement``,
  ``recorded_placement``);
- the module attribute naming the target a module was placed for (``TARGET_ATTR``), and the
  target a pass's option names (``pass_target``: an unknown one fails the pass in one line);
- the points a vector of a unit spreads over its lanes (``unit_lanes``: the bf16 rate of a
  unit streaming only bf16).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from xdsl.dialects.builtin import (
    IntegerAttr,
    MemRefType,
    TensorType,
    UnregisteredOp,
    i64,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.utils.exceptions import DiagnosticException, PassFailedException

from compiler.passes import parallel_layout
from compiler.passes.placement import DRAM, Graph, Placement, Stream, Unit
from compiler.passes.routing import Coord
from compiler.passes.tiling import element_bytes, element_dtype
from compiler.targets import Target, TargetError, get_target
from compiler.value_names import source_location
from dialects.dataflow import SectionOp
from dialects.pcu import PlacementAttr, SectionPlacementAttr, StreamAttr, UnitOp
from dialects.pmu import BufferOp, BufferPlacementAttr, RouteAttr, route_attr
from dialects.rdu_tile import AccessAttr, element_type, shape_of
from runtime.machine import perf
from runtime.machine.rules import copy_block, pmus_to_hold, register_problem, visit_order
from runtime.machine.targets import stream_bytes

TARGET_ATTR = "rdu.target"
"""The module attribute naming the target a module was placed for (set by place-and-route)."""

RESIDENT_ATTR = "rdu.resident"
"""The module attribute of the symbols kept on chip, their homes and hand-offs (set by
co-place-sections or pin-resident-symbols: ``compiler/passes/residency.py``)."""

PINNED_ATTR = "rdu.resident_pinned"
"""Set (a unit attribute) with ``RESIDENT_ATTR`` by pin-resident-symbols: the sections are
loaded in turn, only the symbols' homes stay (``runtime.pef.schema.Residency.co_resident``
false)."""

PLACEMENT_ATTR = "rdu.placement"
"""The section attribute holding the placement partition-sections found for it (its slots and
routes, in ``section_graph`` order), which place-and-route writes onto the units."""

RANDOM_OPCODES = ("rand",)
"""Stages whose value depends on the point's index in the unit's whole space."""


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def describe_location(op: Operation) -> str:
    """``file:line`` of an op's location, or the op name when it has none."""
    loc = source_location(op.location)
    filename = getattr(loc, "filename", None)
    line = getattr(loc, "line", None)
    if filename is not None and line is not None:
        return f"{filename.data}:{line.data}"
    return op.name


def op_name(op: Operation) -> str:
    """The op's name as written (an unregistered op's own name, not ``builtin.unregistered``)."""
    if isinstance(op, UnregisteredOp):
        return op.op_name.data
    return op.name


def fail(op: Operation, message: str) -> DiagnosticException:
    """A one-line error that points at the op's source line."""
    return DiagnosticException(f"{describe_location(op)}: {message}")


# --------------------------------------------------------------------------------------------
# Shapes and strides
# --------------------------------------------------------------------------------------------


def row_major(shape: Sequence[int]) -> list[int]:
    """Row-major strides (in elements) of ``shape``."""
    strides = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * shape[i + 1]
    return strides


def elt_of(value: SSAValue | Attribute) -> Attribute:
    """The element type of a tensor value (or of a tensor type)."""
    typ = value.type if isinstance(value, SSAValue) else value
    assert isinstance(typ, TensorType)
    return typ.element_type


# --------------------------------------------------------------------------------------------
# How many PMUs a buffer takes
# --------------------------------------------------------------------------------------------


def _in_order(space: Sequence[int], access: AccessAttr) -> tuple[int, list[tuple[int, int]]] | None:
    """The elements ``access`` visits, in order (``runtime.machine.rules.visit_order``)."""
    return visit_order(space, access.stride_values, access.offset_value, access.is_indexed)


def is_resident(buffer: BufferOp, readers: Sequence[tuple[UnitOp, AccessAttr]]) -> bool:
    """Whether ``buffer`` must hold its whole tensor: a PCU writes it and one of ``readers``
    (units of the same section and the accesses they read it through) reads it out of order."""
    writer = buffer.source.owner
    if not isinstance(writer, UnitOp) or not readers:
        return False
    written = _in_order(writer.space_values, writer.out)
    if written is None:
        return True
    return any(_in_order(unit.space_values, access) != written for unit, access in readers)


def buffer_bytes(buffer: BufferOp) -> int:
    """Bytes of the tensor ``buffer`` holds."""
    return math.prod(shape_of(buffer.result.type)) * element_bytes(element_type(buffer.result.type))


def pass_target(name: str) -> Target:
    """The target a pass's ``target`` option names; an unknown one fails the pass in one line."""
    try:
        return get_target(name)
    except TargetError as err:
        raise PassFailedException(str(err)) from None


def resident_pmus(buffer: BufferOp, target: Target) -> int:
    """PMUs of a resident buffer: its whole tensor on chip."""
    return pmus_to_hold(buffer_bytes(buffer), target.pmu_bytes)


def assign_pmus(section: SectionOp, target: Target) -> None:
    """Set ``pmus`` on every buffer of ``section`` (see assign-pmus); 1 is left unset."""
    readers: dict[BufferOp, list[tuple[UnitOp, AccessAttr]]] = {}
    # The parallel units' factors, read once: parallelize-units counts a section's PMUs
    # hundreds of times, each buffer asking every unit that touches it.
    factors: dict[UnitOp, tuple[int, ...]] = {}
    for op in section.body.block.ops:
        if isinstance(op, UnitOp):
            if op.parallel is not None:
                factors[op] = op.parallel_values
            for value, access in zip(op.inputs, op.ins.data, strict=True):
                if isinstance(value.owner, BufferOp):
                    readers.setdefault(value.owner, []).append((op, access))
    # One attribute a count (making an IntegerAttr, verified on construction, took a quarter
    # of the count).
    counts: dict[int, IntegerAttr] = {}
    for op in section.body.block.ops:
        if not isinstance(op, BufferOp):
            continue
        writer = op.source.owner
        written = factors.get(writer) if isinstance(writer, UnitOp) else None
        parallel_readers = [
            (factors[unit], access.stride_values)
            for unit, access in readers.get(op, [])
            if unit in factors
        ]
        count = 1
        if written is not None or parallel_readers:
            count = parallel_layout.held_pmus(op, written, parallel_readers, target)
        elif is_resident(op, readers.get(op, [])):
            count = resident_pmus(op, target)
        op.properties.pop("pmus", None)
        if count > 1:
            if count not in counts:
                counts[count] = IntegerAttr(count, i64)
            op.properties["pmus"] = counts[count]


# --------------------------------------------------------------------------------------------
# A section as the placer sees it
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sink:
    """Where the route of one stream is written: a PMU's fill or store route, a PCU port, a leg
    of a parallel unit's multicast stream, or a parallel unit's copy's output."""

    kind: Literal["fill", "store", "port", "bank", "leg", "out"]
    op: Operation
    port: int = 0
    """A port's index; a leg's: the first port reading the stream's buffer."""
    copies: tuple[int, ...] = ()
    """A leg's: the copies its multicast stream feeds (the legs of one stream are consecutive,
    one a copy: from a PMU of the buffer to the first copy, then from each copy to the next);
    an output's: its copy."""


@dataclass(frozen=True)
class SectionGraph:
    """A section as the placer sees it, plus where each stream's route goes on the IR."""

    graph: Graph
    units: Sequence[UnitOp | BufferOp]
    sinks: Sequence[Sink]
    banks: Sequence[BufferOp] = ()
    """The buffer each PMU after ``units`` belongs to (a buffer's second, third... PMU)."""
    copies: Sequence[tuple[UnitOp, int]] = ()
    """The parallel unit and copy of each PCU after the banks (copies 1, 2...; copy 0 is the
    unit's own index in ``units``)."""


def unit_vector_shape(unit: UnitOp, target: Target) -> tuple[tuple[int, ...], perf.VectorShape]:
    """One copy's block of ``unit`` (its whole space on one PCU) and how the performance model
    walks it a vector at a time (``runtime.machine.perf.vector_shape``, at the PCU's lanes)."""
    space = unit.space_values
    if unit.parallel is not None:
        space = copy_block(space, unit.parallel_values)
    lanes = max(1, unit.lanes.value.data)
    return space, block_vector_shape(unit, space, lanes, unit.depth(space), target)


def unit_streams(unit: UnitOp) -> list[tuple[tuple[int, ...], int]]:
    """The streams of ``unit`` as ``runtime.machine.perf.vector_shape`` takes them: each input
    port's that is not a register (``UnitOp.is_register_port``), its strides and element
    bytes, then the output's."""
    streams: list[tuple[tuple[int, ...], int]] = []
    for port, (value, access) in enumerate(zip(unit.inputs, unit.ins.data, strict=True)):
        if unit.is_register_port(port):
            continue
        assert isinstance(value.type, MemRefType)
        streams.append((access.stride_values, element_bytes(value.type.element_type)))
    streams.append((unit.out.stride_values, element_bytes(elt_of(unit.result))))
    return streams


def block_vector_shape(
    unit: UnitOp, block: Sequence[int], lanes: int, depth: int, target: Target
) -> perf.VectorShape:
    """``runtime.machine.perf.vector_shape`` of a copy of ``unit`` over ``block`` at ``lanes``
    lanes, its body ``depth`` stages deep."""
    return perf.vector_shape(
        block,
        unit.out.stride_values,
        lanes,
        depth,
        target.pcu_stages,
        unit_streams(unit),
        stream_bytes(target),
    )


def port_bytes(
    unit: UnitOp,
    port: int,
    target: Target,
    shaped: tuple[tuple[int, ...], perf.VectorShape] | None = None,
) -> int:
    """The bytes one copy of ``unit`` reads through input ``port`` in one run, as the
    performance model counts a stream's (its vectors times the port's elements a vector; one
    element for a register port). ``shaped``: ``unit_vector_shape(unit, target)`` when known
    (the same for every port)."""
    size = element_bytes(element_type(unit.inputs[port].type))
    if unit.is_register_port(port):
        return size
    space, shape = unit_vector_shape(unit, target) if shaped is None else shaped
    along = shape.along(unit.ins.data[port].stride_values, space)
    return shape.vectors(space) * math.prod(n for _, n in along) * size


def output_bytes(unit: UnitOp) -> int:
    """The bytes one copy of ``unit`` writes in one run: its block's points that are not
    reduced."""
    space = unit.space_values
    if unit.parallel is not None:
        space = copy_block(space, unit.parallel_values)
    points = math.prod(e for e, s in zip(space, unit.out.stride_values, strict=True) if s != 0)
    return points * element_bytes(element_type(unit.result.type))


def multicast_groups(unit: UnitOp, port: int) -> list[tuple[int, ...]]:
    """The copies of the parallel ``unit`` that read the same block of input ``port``'s buffer,
    each group fed by one multicast stream (the split counters its access varies with), in
    order of their first copy."""
    factors = unit.parallel_values
    strides = unit.ins.data[port].stride_values
    split = [c for c, p in enumerate(factors) if p > 1]
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, index in enumerate(parallel_layout.copy_indices(factors)):
        key = tuple(index[c] for c in split if strides[c] != 0)
        groups.setdefault(key, []).append(k)
    return [tuple(g) for g in groups.values()]


def section_graph(section: SectionOp, target: Target | None = None) -> SectionGraph:
    """The units of ``section`` in dataflow order and its streams: a buffer's fill (from DRAM or
    its PCU), every PCU input port, every yielded buffer's store to DRAM, and a chain of streams
    through the ``pmus - 1`` more PMUs of a buffer that spans several (see place-and-route). A
    stream into register ports (``UnitOp.is_register_port``) is marked ``scalar``: it travels
    the scalar network on a target that has one.

    A parallel unit (``parallel [...]``) beside other units is ``P`` PCUs, copy 0 at the unit's
    index and copies 1.. after the banks. Each of its copies writes its result into one PMU of
    the result buffer (copy ``k`` into its ``k mod pmus``-th), and each group of copies reading
    the same block of a buffer (``multicast_groups``) is fed by one multicast stream, placed as
    a chain of legs: from a PMU of the buffer (the group's number mod its PMUs) to the group's
    first copy, then from each copy to the next; place-and-route joins the legs' routes into
    the stream's. The streams of a section without a parallel unit are as they always were.

    Given the ``target``, each stream carries its ``weight``, the bytes it moves in one run
    (``port_bytes``, ``output_bytes``, a load or store its tensor's bytes; a chain through a
    buffer's PMUs none), which the router uses to keep heavy streams apart."""
    weigh = target is not None
    where = f"section '{section.sym_name.data}'"
    units: list[UnitOp | BufferOp] = [
        op for op in section.body.block.ops if isinstance(op, UnitOp | BufferOp)
    ]
    index: dict[Operation, int] = {op: i for i, op in enumerate(units)}
    streams: list[Stream] = []
    sinks: list[Sink] = []
    # The graph index of every PMU of each buffer, and of every copy of each parallel unit.
    pmus_of: dict[BufferOp, list[int]] = {}
    banks: list[BufferOp] = []
    for i, op in enumerate(units):
        if isinstance(op, BufferOp):
            pmus_of[op] = [i]
            for _ in range(op.num_pmus - 1):
                banks.append(op)
                pmus_of[op].append(len(units) + len(banks) - 1)
    copies: list[tuple[UnitOp, int]] = []
    copies_of: dict[UnitOp, list[int]] = {}
    for i, op in enumerate(units):
        if isinstance(op, UnitOp) and op.parallel is not None:
            copies_of[op] = [i]
            for k in range(1, op.copies):
                copies.append((op, k))
                copies_of[op].append(len(units) + len(banks) + len(copies) - 1)

    def buffer_of(value: SSAValue, what: str) -> int:
        owner = value.owner
        if not isinstance(owner, BufferOp):
            raise PassFailedException(f"{where}: {what} is not a pmu.buffer")
        return index[owner]

    for i, op in enumerate(units):
        if isinstance(op, BufferOp):
            owner = op.source.owner
            if op.from_dram:
                streams.append(Stream(DRAM, i, weight=buffer_bytes(op) if weigh else 0))
            elif isinstance(owner, UnitOp) and owner in copies_of:
                targets = pmus_of[op]
                out = output_bytes(owner) if weigh else 0
                for k, at in enumerate(copies_of[owner]):
                    streams.append(Stream(at, targets[k % len(targets)], weight=out))
                    sinks.append(Sink("out", owner, 0, (k,)))
                continue
            elif isinstance(owner, UnitOp):
                streams.append(Stream(index[owner], i, weight=output_bytes(owner) if weigh else 0))
            else:
                raise PassFailedException(
                    f'{where}: pmu.buffer "{op.buffer_name.data}" is not filled from DRAM or a PCU'
                )
            sinks.append(Sink("fill", op))
        elif op in copies_of:
            shaped = unit_vector_shape(op, target) if target is not None else None
            fed: set[int] = set()
            for port, value in enumerate(op.inputs):
                b = buffer_of(value, f"input {port} of pcu.unit @{op.sym_name.data}")
                if b in fed:
                    continue  # one access a buffer: its streams feed every port reading it
                fed.add(b)
                owner = value.owner
                assert isinstance(owner, BufferOp)
                sources = pmus_of[owner]
                register = op.is_register_port(port)
                moved = port_bytes(op, port, target, shaped) if target is not None else 0
                for g, group in enumerate(multicast_groups(op, port)):
                    previous = sources[g % len(sources)]
                    scalar = previous if register else None
                    for k in group:
                        streams.append(Stream(previous, copies_of[op][k], scalar, moved))
                        sinks.append(Sink("leg", op, port, group))
                        previous = copies_of[op][k]
        else:
            shaped = unit_vector_shape(op, target) if target is not None else None
            for port, value in enumerate(op.inputs):
                what = f"input {port} of pcu.unit @{op.sym_name.data}"
                b = buffer_of(value, what)
                scalar = b if op.is_register_port(port) else None
                moved = port_bytes(op, port, target, shaped) if target is not None else 0
                streams.append(Stream(b, i, scalar, moved))
                sinks.append(Sink("port", op, port))
    stored: set[int] = set()
    for k, value in enumerate(section.yield_op.values):
        b = buffer_of(value, f"result {k} of the section")
        if b not in stored:
            stored.add(b)
            owner = units[b]
            assert isinstance(owner, BufferOp)
            streams.append(Stream(b, DRAM, weight=buffer_bytes(owner) if weigh else 0))
            sinks.append(Sink("store", units[b]))
    for op, at in pmus_of.items():
        for previous, nxt in zip(at, at[1:], strict=False):
            streams.append(Stream(previous, nxt))
            sinks.append(Sink("bank", op))
    more = [Unit(f'pmu.buffer "{b.buffer_name.data}" (one more PMU)', "pmu") for b in banks]
    more_pcus = [Unit(f"pcu.unit @{u.sym_name.data} (copy {k})", "pcu") for u, k in copies]
    graph = Graph([*(_placed_unit(op) for op in units), *more, *more_pcus], streams)
    return SectionGraph(graph, units, sinks, banks, copies)


def _placed_unit(op: UnitOp | BufferOp) -> Unit:
    if isinstance(op, UnitOp):
        return Unit(f"pcu.unit @{op.sym_name.data}", "pcu")
    return Unit(f'pmu.buffer "{op.buffer_name.data}"', "pmu")


def record_placement(section: SectionOp, placed: Placement) -> None:
    """Record ``placed`` (a placement of ``section_graph(section)``) on ``section``:
    ``rdu.placement = #pcu.section_placement<at [(x0, y0), ...], routes [...]>``, the slot of
    every unit and the switches of every stream, in graph order."""
    routes = [route_attr(hops) for hops in placed.routes]
    section.attributes[PLACEMENT_ATTR] = SectionPlacementAttr(placed.at, routes)


def recorded_placement(section: SectionOp) -> Placement | None:
    """The placement ``record_placement`` left on ``section`` (None: none), unchecked."""
    attr = section.attributes.get(PLACEMENT_ATTR)
    if attr is None:
        return None
    if not isinstance(attr, SectionPlacementAttr):
        raise PassFailedException(
            f"section '{section.sym_name.data}': {PLACEMENT_ATTR} must be a "
            "#pcu.section_placement<...>"
        )
    return Placement(attr.slots, tuple(route.hops for route in attr.routes.data))


# --------------------------------------------------------------------------------------------
# Lanes
# --------------------------------------------------------------------------------------------


def unit_lanes(unit: UnitOp, target: Target) -> int:
    """The points a vector of ``unit`` spreads over its lanes, as the performance model counts
    them (``runtime.machine.perf.unit_lanes``): its lanes, or the target's bf16 rate when every
    input stream (a port that is not a register: ``rules.register_problem``) is bf16."""
    space = unit.space_values
    streams: list[str] = []
    for value, access in zip(unit.inputs, unit.ins.data, strict=True):
        if register_problem(space, access.stride_values, access.is_indexed) is None:
            continue
        assert isinstance(value.type, MemRefType)
        streams.append(element_dtype(value.type.element_type))
    return perf.stream_lanes(unit.lanes.value.data, streams, target)


def write_placement(sg: SectionGraph, result: Placement) -> None:
    """Write ``result``, a placement of ``sg.graph``, onto the section's units and buffers: a
    PCU's slot and port routes; a parallel unit's copies' slots, its multicast streams (the
    routes of a stream's legs joined) and one output route a copy; a buffer's slots, fill and
    store routes (a parallel unit's result buffer has no fill: the copies' outputs)."""
    count, nbanks = len(sg.units), len(sg.banks)
    slots: dict[UnitOp | BufferOp, list[Coord]] = {
        op: [slot] for op, slot in zip(sg.units, result.at[:count], strict=True)
    }
    for op, slot in zip(sg.banks, result.at[count : count + nbanks], strict=True):
        slots[op].append(slot)
    for (op, _), slot in zip(sg.copies, result.at[count + nbanks :], strict=True):
        slots[op].append(slot)
    port_routes: dict[UnitOp, list[RouteAttr | None]] = {
        op: [None] * len(op.inputs) for op in sg.units if isinstance(op, UnitOp)
    }
    legs: dict[tuple[UnitOp, int, tuple[int, ...]], list[Coord]] = {}
    outs: dict[UnitOp, dict[int, RouteAttr]] = {}
    fills: dict[BufferOp, RouteAttr] = {}
    stores: dict[BufferOp, RouteAttr] = {}
    for sink, hops in zip(sg.sinks, result.routes, strict=True):
        if sink.kind == "bank":
            continue  # reserved by the placement; the PEF has no stream between a buffer's PMUs
        if sink.kind == "leg":
            assert isinstance(sink.op, UnitOp)
            path = legs.setdefault((sink.op, sink.port, sink.copies), [])
            path += hops[1:] if path else hops
            continue
        route = route_attr(hops)
        if sink.kind == "out":
            assert isinstance(sink.op, UnitOp)
            outs.setdefault(sink.op, {})[sink.copies[0]] = route
        elif sink.kind == "port":
            assert isinstance(sink.op, UnitOp)
            port_routes[sink.op][sink.port] = route
        else:
            assert isinstance(sink.op, BufferOp)
            (fills if sink.kind == "fill" else stores)[sink.op] = route
    streams: dict[UnitOp, list[StreamAttr]] = {}
    for (op, port, copies), path in legs.items():
        streams.setdefault(op, []).append(StreamAttr(port, copies, route_attr(path)))
    for op in sg.units:  # replaces any earlier placement
        if isinstance(op, UnitOp) and op.parallel is not None:
            out = outs[op]
            op.placement = PlacementAttr(
                slots[op],
                streams=streams.get(op, []),
                out_routes=[out[k] for k in range(op.copies)],
            )
        elif isinstance(op, UnitOp):
            routes = port_routes[op]
            assert all(r is not None for r in routes), f"an input of {op.sym_name.data} unrouted"
            op.placement = PlacementAttr(slots[op], [r for r in routes if r is not None])
        else:
            op.placement = BufferPlacementAttr(slots[op], fills.get(op), stores.get(op))
