"""The structured layout of a parallel unit's section: copies on a grid, operands multicast.

A section holding a parallel ``pcu.unit`` (``parallel [p0, p1, ...]``, set by parallelize-units)
and only its buffers (``lone_parallel_unit``; a parallel unit beside others is placed with
them by ``placement``) is not annealed: ``layout`` puts it down directly, in time linear in
its copies and PMUs.

- **copies**: at most two counters are split. The one the performance model spreads over the
  lanes (``runtime.machine.rules.lanes_counter``) runs over the PCU slots of a row, the other
  over the rows (``grid_axes``); copy ``(r, c)`` of that grid sits at row ``y = r``, slot
  ``x = 2c + y % 2`` (the checkerboard's PCU slots, from the left, the DRAM edge).
- **multicast lines**: the copies that read the same addresses of an operand (the same block
  of every split counter its access varies with) form a group; a group in one row is one line
  of copies along it, a group over several rows a line per column of the grid (the
  checkerboard puts a column of copies on two: ``straight_lines``). Each line is one stream,
  a path of adjacent switches from a PMU of the buffer through the switch of every copy of
  the line, so that a stream uses the links of its own row or column only: a matmul's left
  operand flows along the rows, its right operand down the columns, and no link carries
  both (each link 64 bytes a cycle, shared by its streams: ``runtime/machine/perf.py``). A
  buffer with fewer PMUs than lines gets one stream a group instead, zig-zagging through the
  group in grid order.
- **PMUs**: a buffer of a parallel unit stays whole on chip, in at least as many PMUs as streams
  leave or enter it (``buffer_pmus``: its multicast groups, or its writers over the links'
  capacity, halved), so that no PMU's links carry more than they can; its address range is cut
  in consecutive pieces. Pieces are given slots in this order: the first piece of a buffer
  loaded from or stored to DRAM a free PMU slot of column 0, where DRAM's address generators
  attach to the switch network (its load or store takes no link); a piece for each line, a
  free PMU slot on the line from its far end (``line_slots``; the lines with the fewest such
  slots choose first), so the line's stream starts there and runs one way; the other pieces
  near the rows of copies: piece ``q`` prefers row ``floor((q + 1/2) * rows_used / n)``, the
  pieces wanting a row spread evenly over it, the buffers interleaved, each taking the free
  PMU slot nearest to where it prefers.
- **streams**: a line's stream enters at the copy nearest its PMU, runs to the nearer end and
  back to the other (from a PMU at an end: straight along the line). A line without a PMU of
  its own starts from the buffer's PMU cheapest in hops, with the detour back, plus
  ``SOURCE_PENALTY`` hops for every stream already leaving it.
- **outputs**: each copy's output goes to a PMU of its result buffer, nearest pairs first, at
  most ``link_capacity`` copies writing one PMU (more only if the PMUs are too few).
- the loads from DRAM (one route a buffer, to its first PMU, from the left-edge switch of its
  row) and the stores to DRAM are routed like place-and-route's (``routing.Router.path``: X
  then Y, Y then X, a detour).

On sn10 the 4096^3 matmul (``parallel [32, 20, 1]``) gets 32 row streams of its left operand
(28.1 MB each) and 40 column streams of its right operand (75.0 MB each) on links of their
own, and both operands' loads and the result's store at the DRAM edge: its busiest link
carries 75.5 MB (1.18M cycles at 64 bytes a cycle), under its compute (1.74M cycles); the
earlier layout (loads into row 0 through one link, column streams zig-zagging over the rows'
links) put 237 MB on one link (3.71M cycles, 30.1% of peak).

Every stream is checked against the links' capacity; a layout that does not fit raises
``placement.PlacementError``. ``place_parallel_section`` writes a layout onto the IR (see
``dialects/pcu.py`` for the unit's ``#pcu.placement``: its copies' slots, ``streams`` and
``out_routes``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Container, Sequence
from dataclasses import dataclass

from compiler.passes.placement import PlacementError
from compiler.passes.routing import Coord, Router, xy_path
from compiler.passes.tiling import element_bytes
from compiler.targets import Target
from dialects.dataflow import SectionOp
from dialects.pcu import PlacementAttr, StreamAttr, UnitOp
from dialects.pmu import BufferOp, BufferPlacementAttr, route_attr
from dialects.rdu_tile import element_type, shape_of
from runtime.machine import rules


@dataclass(frozen=True)
class BufferSpec:
    """A buffer of the section: its PMUs and whether it is loaded from / stored to DRAM."""

    name: str
    pmus: int
    from_dram: bool
    stored: bool


@dataclass(frozen=True)
class PortSpec:
    """An input port of the unit: its buffer (index into the buffers) and access strides."""

    buffer: int
    strides: tuple[int, ...]


@dataclass(frozen=True)
class ParallelSpec:
    """A parallel unit and its buffers, as the layout sees them."""

    name: str
    space: tuple[int, ...]
    out_strides: tuple[int, ...]
    factors: tuple[int, ...]
    ports: tuple[PortSpec, ...]
    out: int
    buffers: tuple[BufferSpec, ...]


@dataclass(frozen=True)
class Multicast:
    """One stream from a PMU of port ``port``'s buffer through the switches of ``copies``."""

    port: int
    copies: tuple[int, ...]
    hops: tuple[Coord, ...]


@dataclass(frozen=True)
class Layout:
    """Where everything goes: ``copies[k]`` the slot of copy ``k``; ``pmus[b]`` the slots of
    buffer ``b``'s PMUs; the multicast streams; ``outputs[k]`` the route of copy ``k``'s output;
    ``fills[b]`` / ``stores[b]`` the route of buffer ``b``'s load from / store to DRAM."""

    copies: tuple[Coord, ...]
    pmus: tuple[tuple[Coord, ...], ...]
    streams: tuple[Multicast, ...]
    outputs: tuple[tuple[Coord, ...], ...]
    fills: dict[int, tuple[Coord, ...]]
    stores: dict[int, tuple[Coord, ...]]


def row_slots(target: Target) -> int:
    """PCU slots every row has (the checkerboard gives odd rows one fewer on an odd width)."""
    return target.cols // 2 if target.rows > 1 else (target.cols + 1) // 2


def buffer_pmus(nbytes: int, elements: int, streams: int, target: Target) -> int:
    """The PMUs of a buffer a parallel unit reads or writes: enough for its bytes, and at least
    ``streams`` (but no more than its elements), its address range cut into that many pieces."""
    return max(1, min(max(1, elements), max(rules.pmus_to_hold(nbytes, target.pmu_bytes), streams)))


def port_streams(factors: Sequence[int], strides: Sequence[int]) -> int:
    """The multicast streams an input port of a parallel unit takes: one a block of the split
    counters its access varies with."""
    return math.prod(p for p, s in zip(factors, strides, strict=True) if s != 0)


def out_streams(factors: Sequence[int], target: Target) -> int:
    """The PMUs a parallel unit's copies write into at least: ``link_capacity / 2`` copies each,
    so that the nearest PMUs have room for every copy near them."""
    return -(-math.prod(factors) // max(1, target.link_capacity // 2))


def unit_buffers(
    unit: UnitOp, factors: Sequence[int], target: Target
) -> list[tuple[BufferOp, int]]:
    """The buffers of ``unit`` (inputs in port order, then its result) and the PMUs each takes
    (``buffer_pmus``) when ``unit`` has the factors ``factors`` and a section of its own."""
    out = next(use.operation for use in unit.result.uses)
    assert isinstance(out, BufferOp)
    streams: dict[BufferOp, int] = {}
    for value, access in zip(unit.inputs, unit.ins.data, strict=True):
        owner = value.owner
        assert isinstance(owner, BufferOp)
        streams[owner] = max(streams.get(owner, 0), port_streams(factors, access.stride_values))
    streams[out] = max(streams.get(out, 0), out_streams(factors, target))
    result = []
    for buffer, n in streams.items():
        elements = math.prod(shape_of(buffer.result.type))
        nbytes = elements * element_bytes(element_type(buffer.result.type))
        result.append((buffer, buffer_pmus(nbytes, elements, n, target)))
    return result


def held_pmus(
    buffer: BufferOp,
    writer: Sequence[int] | None,
    readers: Sequence[tuple[Sequence[int], Sequence[int]]],
    target: Target,
) -> int:
    """``buffer_pmus`` of a buffer in the IR, from the parallel units that read or write it:
    ``writer`` the factors of the parallel unit writing it (None: none does), ``readers`` the
    factors of each parallel unit reading it and the strides of the port it reads through (1
    if no parallel unit reads or writes it)."""
    streams = 0 if writer is None else out_streams(writer, target)
    for factors, strides in readers:
        streams = max(streams, port_streams(factors, strides))
    if streams == 0:
        return 1
    elements = math.prod(shape_of(buffer.result.type))
    nbytes = elements * element_bytes(element_type(buffer.result.type))
    return buffer_pmus(nbytes, elements, streams, target)


def grid_axes(
    space: Sequence[int], out_strides: Sequence[int], factors: Sequence[int], target: Target
) -> tuple[int, int]:
    """The counters over the rows and over the PCU slots of a row (-1: none), see the module
    docstring. Raises ``PlacementError`` for more than two split counters."""
    split = [c for c, p in enumerate(factors) if p > 1]
    if len(split) > 2:
        raise PlacementError(f"parallel {list(factors)}: more than two split counters")
    if not split:
        return -1, -1
    if len(split) == 1:
        c = split[0]
        return (-1, c) if factors[c] <= row_slots(target) else (c, -1)
    lanes = rules.lanes_counter(space, out_strides)
    col = lanes if lanes in split else split[-1]
    row = split[0] if split[1] == col else split[1]
    return row, col


def copy_indices(factors: Sequence[int]) -> list[tuple[int, ...]]:
    """Every copy's multi-index, copy ``k`` being row-major over the factors."""
    return list(itertools.product(*(range(p) for p in factors)))


def layout(spec: ParallelSpec, target: Target) -> Layout:
    """The layout of ``spec`` on ``target`` (see the module docstring)."""
    where = f"parallel pcu.unit @{spec.name} ({math.prod(spec.factors)} copies)"
    row_c, col_c = grid_axes(spec.space, spec.out_strides, spec.factors, target)
    rows_used = spec.factors[row_c] if row_c >= 0 else 1
    cols_used = spec.factors[col_c] if col_c >= 0 else 1
    if rows_used > target.rows or cols_used > row_slots(target):
        raise PlacementError(
            f"{where}: a {rows_used} x {cols_used} grid of copies does not fit target "
            f"'{target.name}' ({target.rows} rows of {row_slots(target)} PCU slots)"
        )
    indices = copy_indices(spec.factors)
    grid = [(k[row_c] if row_c >= 0 else 0, k[col_c] if col_c >= 0 else 0) for k in indices]
    copies = tuple((2 * c + r % 2, r) for r, c in grid)

    # Multicast lines: the copies reading the same block of a port's operand, in straight lines.
    free = {
        (x, y)
        for y in range(target.rows)
        for x in range(target.cols)
        if not target.is_pcu_slot(x, y)
    }
    need = sum(b.pmus for b in spec.buffers)
    if need > len(free):
        raise PlacementError(f"{where}: needs {need} PMUs, target '{target.name}' has {len(free)}")
    lines: list[tuple[int, tuple[int, ...]]] = []  # (port, its copies in line order)
    split = [c for c, p in enumerate(spec.factors) if p > 1]
    for p, port in enumerate(spec.ports):
        if any(port.buffer == q.buffer and port.strides == q.strides for q in spec.ports[:p]):
            continue  # the same stream as an earlier port's
        groups: dict[tuple[int, ...], list[int]] = {}
        for k, index in enumerate(indices):
            key = tuple(index[c] for c in split if port.strides[c] != 0)
            groups.setdefault(key, []).append(k)
        straight = [line for ks in groups.values() for line in straight_lines(ks, copies)]
        if len(straight) > spec.buffers[port.buffer].pmus:  # too few PMUs: a stream a group
            straight = [tuple(sorted(ks, key=lambda k: grid[k])) for ks in groups.values()]
        lines += [(p, line) for line in straight]

    # PMUs: a DRAM buffer's first at the DRAM edge; a line's source at its far end, on it.
    pmus: list[list[Coord | None]] = [[None] * buf.pmus for buf in spec.buffers]
    for b, buf in enumerate(spec.buffers):
        if buf.from_dram or buf.stored:
            edge = sorted((s for s in free if s[0] == 0), key=lambda s: (s[1], s[0]))
            if edge:
                pmus[b][0] = edge[0]
                free.discard(edge[0])
    line_source: dict[int, int] = {}  # line -> the piece of its buffer it starts from
    ends = [line_slots([copies[k] for k in line], target) for _, line in lines]
    for i in sorted(range(len(lines)), key=lambda i: len(ends[i])):  # the fewest choices first
        pieces = pmus[spec.ports[lines[i][0]].buffer]
        q = next((q for q, at in enumerate(pieces) if at is None), None)
        slot = next((s for s in ends[i] if s in free), None)
        if q is not None and slot is not None:
            pieces[q] = slot
            free.discard(slot)
            line_source[i] = q
    # The other pieces near the rows of copies, spread over their row.
    wants: dict[int, list[tuple[int, int]]] = {}
    for b, buf in enumerate(spec.buffers):
        for q in range(buf.pmus):
            if pmus[b][q] is None:
                row = min(target.rows - 1, int((q + 0.5) * rows_used / buf.pmus))
                wants.setdefault(row, []).append((b, q))
    by_row = sorted(free, key=lambda s: (s[1], s[0]))
    for row in sorted(wants):
        # Interleave the buffers along the row: every buffer's pieces spread over all of it.
        rank: dict[int, int] = {}
        order = []
        for b, q in wants[row]:
            order.append((rank.get(b, 0), b, q))
            rank[b] = rank.get(b, 0) + 1
        pieces = [(b, q) for _, b, q in sorted(order)]
        for t, (b, q) in enumerate(pieces):
            want = ((t + 0.5) * target.cols / len(pieces), row)
            best = min(by_row, key=lambda s: (abs(s[0] - want[0]) + 2 * abs(s[1] - want[1]), s))
            by_row.remove(best)
            pmus[b][q] = best
    placed = [[at for at in pieces if at is not None] for pieces in pmus]

    router = Router(target)

    def take(hops: Sequence[Coord], what: str, scalar: int | None = None) -> None:
        over = router.take(hops, scalar)
        if over is not None:
            raise PlacementError(
                f"{where} cannot be routed on target '{target.name}': {what} overloads link "
                f"{list(over[0])} -> {list(over[1])} (link capacity {target.link_capacity})"
            )

    # Multicast streams, one a line: from its source into the copy nearest it, on to the
    # nearer end of the line, back to the other (straight when the source is at an end).
    streams: list[Multicast] = []
    sources = [[0] * len(pieces) for pieces in placed]  # streams leaving each PMU
    for i, (p, line) in enumerate(lines):
        buffer = spec.ports[p].buffer
        order = [copies[k] for k in line]
        src = line_source.get(i)
        if src is None:  # more lines than pieces: the cheapest piece
            src, _ = _source(placed[buffer], sources[buffer], order)
        enter = _entry(placed[buffer][src], order)
        # A register port's stream is on the scalar network (a 0-d buffer: one PMU).
        port = spec.ports[p]
        register = rules.register_problem(spec.space, port.strides, indexed=False) is None
        sources[buffer][src] += 1
        if enter <= len(order) - 1 - enter:
            seq = order[enter::-1] + order[enter + 1 :]
        else:
            seq = order[enter:] + order[enter - 1 :: -1]
        path = _path([placed[buffer][src], *seq])
        take(path, f"the stream of input {p}", buffer if register else None)
        streams.append(Multicast(p, tuple(sorted(line)), path))

    # Outputs: nearest pairs of a copy and a PMU of its result buffer with room first.
    slots = placed[spec.out]
    cap = max(target.link_capacity, -(-len(copies) // len(slots)))
    writers = [0] * len(slots)
    into: list[int] = [-1] * len(copies)
    pairs = sorted(
        (_dist(slots[q], at), k, q) for k, at in enumerate(copies) for q in range(len(slots))
    )
    for _, k, q in pairs:
        if into[k] < 0 and writers[q] < cap:
            into[k] = q
            writers[q] += 1
    outputs = [
        _route(at, slots[into[k]], router, where, f"the output of copy {k}")
        for k, at in enumerate(copies)
    ]

    fills: dict[int, tuple[Coord, ...]] = {}
    stores: dict[int, tuple[Coord, ...]] = {}
    for b, buf in enumerate(spec.buffers):
        at = placed[b][0]
        if buf.from_dram:
            fills[b] = _route((0, at[1]), at, router, where, f'the load of "{buf.name}"')
    for b, buf in enumerate(spec.buffers):
        at = placed[b][0]
        if buf.stored:
            stores[b] = _route(at, (0, at[1]), router, where, f'the store of "{buf.name}"')
    return Layout(
        copies, tuple(tuple(p) for p in placed), tuple(streams), tuple(outputs), fills, stores
    )


def straight_lines(members: Sequence[int], copies: Sequence[Coord]) -> list[tuple[int, ...]]:
    """The copies ``members`` (indices into ``copies``, their slots) of one multicast group in
    straight lines of the grid: a group in one row is one line, along it; a group over several
    rows is a line a column (the checkerboard puts a column of copies on two), down it. A
    stream along a line uses the links of that row or column only: x's row streams and w's
    column streams of a matmul never share a link."""
    if len({copies[k][1] for k in members}) == 1:
        return [tuple(sorted(members, key=lambda k: copies[k][0]))]
    by_x: dict[int, list[int]] = {}
    for k in members:
        by_x.setdefault(copies[k][0], []).append(k)
    return [tuple(sorted(ks, key=lambda k: copies[k][1])) for _, ks in sorted(by_x.items())]


def line_slots(line: Sequence[Coord], target: Target) -> list[Coord]:
    """The PMU slots on ``line`` (copy slots along one row or down one column) in the order a
    stream would rather start from: a row's from its east end (away from the DRAM edge) back;
    a column's from its bottom up, or from its top down in every other pair of columns (so that
    the columns' sources take at most half of the top and bottom rows' PMU slots, and each row
    keeps one for its own line). From an end, a stream runs along the line one way, over the
    links of the line only."""
    (x0, y0), (x1, y1) = min(line), max(line)
    if x0 != x1 or len(line) == 1:  # along a row
        slots = [(x, y0) for x in range(min(x1 + 1, target.cols - 1), max(x0 - 1, 0) - 1, -1)]
    else:  # down a column
        slots = [(x0, y) for y in range(min(y1 + 1, target.rows - 1), max(y0 - 1, 0) - 1, -1)]
        if x0 // 2 % 2:
            slots.reverse()
    return [s for s in slots if not target.is_pcu_slot(*s)]


SOURCE_PENALTY = 4
"""Placement cost of each stream already leaving a PMU, in hops: streams spread over the PMUs."""


def _entry(slot: Coord, order: Sequence[Coord]) -> int:
    """The copy (index into ``order``) a stream from ``slot`` through the copies at ``order``
    enters at: the cheapest in hops plus the detour back from the nearer end (``_source``)."""
    _, enter = _source([slot], [0], order)
    return enter


def _source(slots: Sequence[Coord], used: Sequence[int], order: Sequence[Coord]) -> tuple[int, int]:
    """The PMU (of ``slots``) a multicast stream through the copies at ``order`` starts from, and
    the copy it enters at: the cheapest in hops to that copy plus the detour back from the nearer
    end of ``order``, plus ``SOURCE_PENALTY`` a stream already leaving that PMU."""
    best: tuple[int, int, int] | None = None
    for q, slot in enumerate(slots):
        for m, at in enumerate(order):
            back = min(m, len(order) - 1 - m)
            cost = _dist(slot, at) + 2 * back * _step_len(order) + SOURCE_PENALTY * used[q]
            if best is None or cost < best[0]:
                best = (cost, q, m)
    assert best is not None
    return best[1], best[2]


def _step_len(order: Sequence[Coord]) -> int:
    """Hops between neighbouring copies of a stream (1 along a row, 2 down a zig-zag column)."""
    if len(order) < 2:
        return 1
    return max(1, _dist(order[0], order[1]))


def _dist(a: Coord, b: Coord) -> int:
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def _path(points: Sequence[Coord]) -> tuple[Coord, ...]:
    """The X-then-Y path through ``points`` in order."""
    hops: list[Coord] = [points[0]]
    for a, b in zip(points, points[1:], strict=False):
        hops += xy_path(a, b)[1:]
    return tuple(hops)


def _route(a: Coord, b: Coord, router: Router, where: str, what: str) -> tuple[Coord, ...]:
    """A point-to-point route within the links' capacity, taken (``Router.path``)."""
    hops = router.path(a, b)
    if hops is None:
        target = router.target
        raise PlacementError(
            f"{where} cannot be routed on target '{target.name}': no path with room left for "
            f"{what} (link capacity {target.link_capacity})"
        )
    router.take(hops)
    return hops


# -- the IR ---------------------------------------------------------------------------------------


def lone_parallel_unit(section: SectionOp) -> UnitOp | None:
    """The unit of ``section`` if it is its only unit and parallel (laid out by ``layout``; a
    parallel unit beside others is placed with them by ``placement``)."""
    units = [op for op in section.body.block.ops if isinstance(op, UnitOp)]
    if len(units) == 1 and units[0].parallel is not None:
        return units[0]
    return None


def section_spec(section: SectionOp, unit: UnitOp) -> tuple[ParallelSpec, list[BufferOp]]:
    """The layout's view of a section holding the parallel ``unit`` (and its buffers only)."""
    where = f"section '{section.sym_name.data}'"
    ops = list(section.body.block.ops)
    units = [op for op in ops if isinstance(op, UnitOp)]
    if units != [unit]:
        raise PlacementError(
            f"{where}: a parallel unit (@{unit.sym_name.data}) must be alone in its section"
        )
    buffers = [op for op in ops if isinstance(op, BufferOp)]
    stored = {v.owner for v in section.yield_op.values}
    return unit_spec(unit, buffers, stored), buffers


def unit_spec(unit: UnitOp, buffers: Sequence[BufferOp], stored: Container[object]) -> ParallelSpec:
    """The layout's view of ``unit`` with ``buffers`` (its own among them); ``stored``: the
    buffers stored to DRAM."""
    index = {b: i for i, b in enumerate(buffers)}
    out = next(use.operation for use in unit.result.uses)
    assert isinstance(out, BufferOp)
    ports = []
    for value, access in zip(unit.inputs, unit.ins.data, strict=True):
        owner = value.owner
        assert isinstance(owner, BufferOp)
        ports.append(PortSpec(index[owner], tuple(access.stride_values)))
    specs = tuple(
        BufferSpec(b.buffer_name.data, b.num_pmus, b.from_dram, b in stored) for b in buffers
    )
    return ParallelSpec(
        unit.sym_name.data,
        unit.space_values,
        tuple(unit.out.stride_values),
        unit.parallel_values,
        tuple(ports),
        index[out],
        specs,
    )


def place_parallel_section(section: SectionOp, unit: UnitOp, target: Target) -> None:
    """Lay out a section holding the parallel ``unit`` and write it onto the IR (replacing any
    earlier placement): each buffer's slots, fill and store routes (the result buffer's fill is
    the unit's ``out_routes``); the unit's copies' slots, ``streams`` and ``out_routes``."""
    spec, buffers = section_spec(section, unit)
    placed = layout(spec, target)
    for b, op in enumerate(buffers):
        fill, store = placed.fills.get(b), placed.stores.get(b)
        op.placement = BufferPlacementAttr(
            placed.pmus[b],
            route_attr(fill) if fill is not None else None,
            route_attr(store) if store is not None else None,
        )
    unit.placement = PlacementAttr(
        placed.copies,
        streams=[StreamAttr(s.port, s.copies, route_attr(s.hops)) for s in placed.streams],
        out_routes=[route_attr(hops) for hops in placed.outputs],
    )
