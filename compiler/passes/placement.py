"""Placement and routing of one section's units on a target's grid: pure algorithms, no IR.

The ``place-and-route`` pass turns a section into a ``Graph`` (units in dataflow order and the
streams between them), calls ``place_and_route`` and writes the answer back onto the IR.

The grid (docs/design.md, runtime/pef/schema.py):

- unit slots ``(x, y)`` with ``0 <= x < cols`` and ``0 <= y < rows``, checkerboarded: a PCU where
  ``x + y`` is even, a PMU where it is odd;
- switches on a ``(cols + 1) x (rows + 1)`` grid of their own; the unit at ``(x, y)`` attaches to
  switch ``(x, y)``;
- DRAM address generators sit at the left edge: a stream between DRAM and the unit at ``(x, y)``
  enters or leaves the switch network at switch ``(0, y)``;
- a link is one direction of the wire between two adjacent switches and carries at most
  ``target.link_capacity`` streams (as ``runtime.pef.validate`` checks); a stream into a
  register port (``Stream.scalar``) goes on the scalar network when the target has one, whose
  links carry the values of ``target.scalar_link_capacity`` PMUs each
  (``runtime.machine.rules.link_loads``), and takes no room on the vector links.

The algorithm (a caller may give some units' slots, ``fixed``, and slots no unit may take,
``blocked``: those of units placed before, such as another section's sharing the grid):

1. greedy: the fixed units on their slots, then, in dataflow order, each other unit takes the
   free (not blocked) slot of its kind that is closest (in Manhattan distance over its streams)
   to its already placed neighbours and to DRAM;
2. simulated annealing of the total Manhattan length of all streams, each weighed by its bytes
   (``stream_weights``: 1 to ``WEIGHT_LEVELS``, so that a heavy stream is kept short and off
   other streams' links: GPT b8's backward on sn10 had three saved activations' streams to
   their dW matmuls down one column, 31.8k cycles of link time, when a cross-entropy unit's
   copies changed the placement; 18.4k weighed, under its DRAM time): one or two thousand
   moves (move a unit that is not fixed to a free slot of its kind or swap it with the unit
   there, unless that one is fixed; never onto a blocked slot), seeded, so the same graph always
   gets the same placement;
3. routing (``routing.Router``), stream by stream in order: X then Y; Y then X if that would
   overload a link; a shortest detour over links with room left if both would. If a stream
   still finds no path, the annealing is retried with other seeds before giving up.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

import numpy as np

from compiler.passes.routing import Coord, Router
from compiler.targets import Target
from runtime.machine.perf import busiest_link_bytes
from runtime.machine.rules import link_loads

UnitKind = Literal["pcu", "pmu"]
KINDS: Final[tuple[UnitKind, ...]] = ("pcu", "pmu")

DRAM: Final = -1
"""The endpoint index of off-chip memory in a ``Stream``."""

DRAM_DETOUR: Final = 3
"""Placement cost of each DRAM load (or store) of a row beyond ``link_capacity``: all of a row's
loads leave, and its stores enter, through its left-edge switch, so the extra ones detour through
a neighbour row."""

WEIGHT_LEVELS: Final = 4
"""The weight of the heaviest stream's length in ``placement_cost`` (the lightest: 1)."""

ROUTE_ATTEMPTS: Final = 4
"""How many annealing seeds we try before declaring a section unroutable."""


class PlacementError(Exception):
    """A section does not fit the target: too many units, or a stream finds no free path."""


@dataclass(frozen=True)
class Unit:
    """A virtual unit to place: a PCU or a PMU. ``name`` is only used in error messages."""

    name: str
    kind: UnitKind


@dataclass(frozen=True)
class Stream:
    """A stream from ``src`` to ``dst``: unit indices into ``Graph.units``, or ``DRAM``."""

    src: int
    dst: int
    scalar: int | None = None
    """A stream into register ports (``runtime.machine.rules.register_problem``): the unit
    index of the PMU whose value it carries; it travels the scalar network on a target that has
    one (``Router``). None: a vector stream."""
    weight: int = 0
    """The bytes it moves in one run, as the performance model counts them (0: not known);
    the router keeps heavy streams off each other's links where it can (``Router.path``)."""


@dataclass(frozen=True)
class Graph:
    """One section: its units in dataflow order and the streams between them."""

    units: Sequence[Unit]
    streams: Sequence[Stream]


@dataclass(frozen=True)
class Placement:
    """Where every unit sits and the switches every stream passes through.

    ``at[i]`` is the slot of ``graph.units[i]``; ``routes[j]`` is the list of switch coordinates
    of ``graph.streams[j]``, from the source's switch to the destination's, each adjacent to the
    next.
    """

    at: tuple[Coord, ...]
    routes: tuple[tuple[Coord, ...], ...]

    @property
    def route_length(self) -> int:
        """Total number of switch-to-switch hops over all streams."""
        return sum(len(hops) - 1 for hops in self.routes)


Known = dict[tuple[object, ...], Placement | int]
"""Answers of ``place_and_route`` a caller keeps, by what determines them (unit kinds, streams,
target, seed, moves, fixed units, blocked slots: names only appear in errors): a placement, or
for a graph that did not route the index of the stream that last found no path.
partition-sections keeps one for a run: the layers of a model give it the same pieces over and
over."""


def place_and_route(
    graph: Graph,
    target: Target,
    *,
    section: str = "section",
    seed: int = 0,
    moves: int | None = None,
    known: Known | None = None,
    fixed: Mapping[int, Coord] | None = None,
    blocked: Collection[Coord] = (),
    barred: Mapping[int, Collection[Coord]] | None = None,
) -> Placement:
    """Place every unit of ``graph`` on a slot of its kind and route every stream.

    ``section`` names the section in error messages; ``moves`` overrides the number of annealing
    moves (default: scaled with the number of units, 2000 at most). ``known`` holds the answers
    found so far by the caller (see ``Known``): an answer found there is not searched again, a
    new one is added. ``fixed``: units (indices into ``graph.units``) placed on the slot given,
    never moved; ``blocked``: slots no unit of ``graph`` may take (a fixed unit's own is not);
    ``barred``: slots that one unit (not a fixed one) may not take, others may.
    Raises ``PlacementError`` when the section needs more units of a kind than the target has
    slots not blocked, when a fixed slot is not of its unit's kind, is blocked or is another
    fixed unit's, or when a stream cannot be routed within the links' capacity.
    """
    _check_graph(graph)
    _check_fixed(graph, target, fixed, blocked, section)
    _check_capacity(graph, target, section, blocked)
    if moves is None:
        moves = default_moves(len(graph.units))
    key = (
        tuple(unit.kind for unit in graph.units),
        tuple((s.src, s.dst, s.scalar, s.weight) for s in graph.streams),
        target,
        seed,
        moves,
        tuple(sorted(fixed.items())) if fixed else (),
        frozenset(blocked),
        tuple(sorted((u, frozenset(b)) for u, b in barred.items())) if barred else (),
    )
    if known is None:
        known = {}
    placed = known.get(key)
    if isinstance(placed, Placement):
        return placed
    failed = placed
    # The same every attempt.
    start = (
        greedy_placement(graph, target, fixed=fixed, blocked=blocked, barred=barred)
        if failed is None
        else []
    )
    inputs = anneal_inputs(graph, target, start) if failed is None and moves > 0 else None
    for attempt in range(ROUTE_ATTEMPTS if failed is None else 0):
        at = anneal(
            graph,
            target,
            start,
            seed=seed + attempt,
            moves=moves,
            inputs=inputs,
            fixed=fixed,
            blocked=blocked,
            barred=barred,
        )
        try:
            routes = route(graph, target, at)
        except _Unroutable as err:
            failed = err.stream
            continue
        placed = Placement(tuple(at), tuple(routes))
        known[key] = placed
        return placed
    assert failed is not None
    known[key] = failed
    raise PlacementError(
        f"section '{section}' cannot be routed on target '{target.name}': no path with room "
        f"left for the stream {_describe(graph, failed)} (link capacity {target.link_capacity})"
    )


def check_placement(graph: Graph, target: Target, placed: Placement) -> str | None:
    """What is wrong with ``placed`` as a placement of ``graph`` on ``target``, or None: every
    unit on a distinct slot of its kind, every stream's route a path of adjacent switches from
    its source's switch to its destination's, no link over its capacity."""
    if len(placed.at) != len(graph.units) or len(placed.routes) != len(graph.streams):
        return (
            f"{len(placed.at)} slots and {len(placed.routes)} routes for {len(graph.units)} "
            f"units and {len(graph.streams)} streams"
        )
    kinds = {kind: set(slots(target, kind)) for kind in ("pcu", "pmu")}
    for unit, slot in zip(graph.units, placed.at, strict=True):
        if tuple(slot) not in kinds[unit.kind]:
            return f"{unit.name} at {list(slot)}, not a {unit.kind.upper()} slot"
    if len(set(placed.at)) != len(placed.at):
        return "two units on one slot"
    for index, (stream, hops) in enumerate(zip(graph.streams, placed.routes, strict=True)):
        ends = (endpoint_switch(placed.at, stream, stream.src),
                endpoint_switch(placed.at, stream, stream.dst))  # fmt: skip
        steps = zip(hops, hops[1:], strict=False)
        if (
            not hops
            or (hops[0], hops[-1]) != ends
            or any(abs(a[0] - b[0]) + abs(a[1] - b[1]) != 1 for a, b in steps)
        ):
            return f"the route of the stream {_describe(graph, index)} does not join its ends"
    scalar = target.scalar_link_capacity > 0
    vector, scalars = link_loads(
        (hops, stream.scalar if scalar else None)
        for stream, hops in zip(graph.streams, placed.routes, strict=True)
    )
    if any(n > target.link_capacity for n in vector.values()):
        return f"a link carries more than {target.link_capacity} streams"
    if any(n > target.scalar_link_capacity for n in scalars.values()):
        return f"a scalar link carries the values of more than {target.scalar_link_capacity} PMUs"
    return None


def default_moves(num_units: int) -> int:
    """Annealing moves for a section of ``num_units`` units: enough to settle, cheap per compile.

    At most 2000: on the GPT example (12 sections of about 100 units on plasticine) 8000 moves
    a section gave 6% fewer links and 15% fewer fill cycles than 2000, but 0.5 s more of a 5.6 s
    compile, and no fewer sections (2000 gave 11 instead of 12); the modelled time is the same
    to within 0.01%, since a section's fill is small next to its streaming time."""
    if num_units <= 1:
        return 0
    return min(2000, max(1000, 100 * num_units))


FINAL_MOVES_A_UNIT = 10
"""Annealing moves a unit for a section's last placement (``final_moves``, ``polish``)."""

FINAL_MOVES_MOST = 20_000
"""``final_moves``' most."""


def final_moves(num_units: int) -> int:
    """Annealing moves for the placements ``polish`` tries, those a program keeps
    (pin-resident-symbols' last ones, co-place-sections'): ``FINAL_MOVES_A_UNIT`` a unit, at
    most ``FINAL_MOVES_MOST``, never fewer than ``default_moves`` (none for a lone unit). The
    placements made to try an allocation or a cut (parallelize-units, partition-sections)
    settle for ``default_moves``, whose 2000 leave a section of a thousand units (GPT b8's
    backward on sn10, its units' copies counted) two moves a unit: the copies fed by one
    multicast stream end up far apart, the stream passing links twice (9,216 of the busiest
    link's 10,032 cycles). An anneal move costs microseconds; routing the result dominates."""
    fewest = default_moves(num_units)
    if fewest == 0:
        return 0
    return max(fewest, min(FINAL_MOVES_MOST, FINAL_MOVES_A_UNIT * num_units))


POLISH_SEEDS = 2
"""How many longer anneals ``polish`` tries, one a seed."""


def link_bytes(graph: Graph, placed: Placement) -> int:
    """The most bytes a link moves in one run: the ``weight`` of every vector stream whose route
    passes it, each time it passes (the performance model's rule 3 in bytes,
    ``perf.busiest_link_bytes``)."""
    streams = zip(graph.streams, placed.routes, strict=True)
    return busiest_link_bytes((hops, s.weight) for s, hops in streams if s.scalar is None)


def polish(
    graph: Graph,
    target: Target,
    placed: Placement,
    *,
    section: str = "section",
    fixed: Mapping[int, Coord] | None = None,
    blocked: Collection[Coord] = (),
    barred: Mapping[int, Collection[Coord]] | None = None,
    score: Callable[[Placement], int] | None = None,
    critical: Callable[[Placement], Collection[int]] | None = None,
) -> Placement:
    """The placement a section keeps: of ``placed`` and the placements of longer anneals
    (``final_moves``, seeds 0 to ``POLISH_SEEDS - 1``, with the same ``fixed``, ``blocked`` and
    ``barred`` slots), the one whose busiest link moves the fewest bytes (``link_bytes``; the
    first on a tie). A section's time is at least its busiest link's (the performance model's
    rule 3); more moves alone do not lower it (the anneal shortens the streams, and may pile
    heavy ones onto one link).

    ``score``: what to keep the lowest of instead, then the fewest bytes (the caller's
    performance model of the section so placed: its streams' hops are its units' fills too,
    rule 1). ``critical``: the streams that set the time of a placement (those into the units
    of its critical chain); each seed also anneals with those of the best placement so far
    weighed as the heaviest stream, so that they are kept short. GPT b8's forward on sn10,
    scored by the model: 6,968 cycles as the pins left it, 6,798 by the longer anneals, 6,616
    with its chain's streams weighed so (the fills of its chain 2,516 to 2,140 cycles)."""

    def rank(found: Placement) -> tuple[int, int]:
        moved = link_bytes(graph, found)
        return (moved, 0) if score is None else (score(found), moved)

    best, lowest = placed, rank(placed)
    moves = final_moves(len(graph.units))
    heaviest = max((s.weight for s in graph.streams), default=0)
    for seed in range(POLISH_SEEDS):
        graphs = [graph]
        if critical is not None:
            chain = critical(best)
            streams = [
                Stream(s.src, s.dst, s.scalar, heaviest) if j in chain else s
                for j, s in enumerate(graph.streams)
            ]
            graphs.append(Graph(graph.units, streams))
        for annealed in graphs:
            try:
                found = place_and_route(
                    annealed, target, section=section, seed=seed, moves=moves, fixed=fixed,
                    blocked=blocked, barred=barred,
                )  # fmt: skip
            except PlacementError:
                continue
            ranked = rank(found)
            if ranked < lowest:
                best, lowest = found, ranked
    return best


def slots(target: Target, kind: UnitKind) -> list[Coord]:
    """The slots of one kind, column by column from the left (the DRAM edge)."""
    want_pcu = kind == "pcu"
    return [
        (x, y)
        for x in range(target.cols)
        for y in range(target.rows)
        if target.is_pcu_slot(x, y) == want_pcu
    ]


def endpoint_switch(at: Sequence[Coord], stream: Stream, end: int) -> Coord:
    """The switch where the endpoint ``end`` (``stream.src`` or ``stream.dst``) enters the network.

    A unit uses the switch of its own slot; DRAM uses the left-edge switch of the other end's row.
    """
    if end != DRAM:
        return at[end]
    other = stream.dst if end == stream.src else stream.src
    return (0, at[other][1])


def stream_length(at: Sequence[Coord], stream: Stream) -> int:
    """Manhattan distance between a stream's two switches (its route length without detours)."""
    ax, ay = endpoint_switch(at, stream, stream.src)
    bx, by = endpoint_switch(at, stream, stream.dst)
    return abs(ax - bx) + abs(ay - by)


def wire_length(graph: Graph, at: Sequence[Coord]) -> int:
    """Total Manhattan length of all streams."""
    return sum(stream_length(at, s) for s in graph.streams)


def stream_weights(graph: Graph) -> list[int]:
    """What each stream's length counts in ``placement_cost``: 1, up to ``WEIGHT_LEVELS`` for
    the heaviest (in proportion to its bytes, ``Stream.weight``): a stream that moves many
    bytes is kept short, off other streams' links (the performance model shares a link's
    bandwidth among its streams)."""
    heaviest = max((s.weight for s in graph.streams), default=0)
    if heaviest <= 0:
        return [1] * len(graph.streams)
    return [1 + (WEIGHT_LEVELS - 1) * s.weight // heaviest for s in graph.streams]


def placement_cost(graph: Graph, target: Target, at: Sequence[Coord]) -> int:
    """What the placer minimises: the streams' Manhattan lengths, each times its weight
    (``stream_weights``), plus ``DRAM_DETOUR`` per DRAM load or store that its row's edge link
    cannot carry."""
    dram = _dram_degree(graph)
    load = [(0, 0)] * target.rows
    for u, (_, y) in enumerate(at):
        load[y] = _add(load[y], dram[u])
    weights = stream_weights(graph)
    wires = sum(w * stream_length(at, s) for s, w in zip(graph.streams, weights, strict=True))
    return wires + sum(_row_penalty(n, target) for n in load)


def greedy_placement(
    graph: Graph,
    target: Target,
    *,
    fixed: Mapping[int, Coord] | None = None,
    blocked: Collection[Coord] = (),
    barred: Mapping[int, Collection[Coord]] | None = None,
) -> list[Coord]:
    """Units in dataflow order, each on the free slot of its kind nearest its placed neighbours.

    Ties go to the leftmost slot (nearest DRAM), then the lowest row. A slot's cost is the sum
    of a column's and a row's (the Manhattan distances split by axis), so the costs of all the
    free slots of a kind are one numpy sum, and the first of least cost its ``argmin``.
    ``fixed`` units are placed first, on their slots (placed neighbours of the others from the
    start); those slots and the ``blocked`` ones are taken, and a unit's ``barred`` ones for
    it (see ``place_and_route``).
    """
    _check_fixed(graph, target, fixed, blocked)
    incident = _incident_streams(graph)
    dram = _dram_degree(graph)
    row_load = np.zeros((target.rows, 2), dtype=np.int64)  # per row: DRAM loads, stores
    free = {kind: np.array(slots(target, kind), dtype=np.int64).reshape(-1, 2) for kind in KINDS}
    xs = {kind: free[kind][:, 0].copy() for kind in KINDS}
    ys = {kind: free[kind][:, 1].copy() for kind in KINDS}
    # Added to a taken slot's cost: more than any free slot's, so the first of least cost
    # (``argmin``) is a free slot's while there is one.
    taken = {kind: np.zeros(len(free[kind]), dtype=np.int64) for kind in KINDS}
    columns, rows = np.arange(target.cols), np.arange(target.rows)
    at: list[Coord] = [(-1, -1)] * len(graph.units)
    placed = [False] * len(graph.units)
    index: dict[str, dict[Coord, int]] = {}
    if fixed or blocked or barred:
        index = {
            kind: {(int(x), int(y)): i for i, (x, y) in enumerate(free[kind])} for kind in KINDS
        }
        for slot in blocked:
            for kind in KINDS:
                if slot in index[kind]:
                    taken[kind][index[kind][slot]] = _TAKEN
        for u, slot in (fixed or {}).items():
            at[u] = slot
            placed[u] = True
            row_load[slot[1]] += dram[u]
            taken[graph.units[u].kind][index[graph.units[u].kind][slot]] = _TAKEN
    streams = graph.streams
    for u, unit in enumerate(graph.units):
        if placed[u]:  # fixed
            continue
        # The streams to DRAM or to placed units: a DRAM stream's length is u's column.
        ends = [
            stream.dst if stream.src == u else stream.src
            for stream in (streams[s] for s in incident[u])
        ]
        drams = ends.count(DRAM)
        near = [at[e] for e in ends if e != DRAM and placed[e]]
        if near:
            near_xy = np.array(near, dtype=np.int64)
            by_x = np.abs(columns[:, None] - near_xy[None, :, 0]).sum(axis=1)
            by_y = np.abs(rows[:, None] - near_xy[None, :, 1]).sum(axis=1)
            if drams:
                by_x += drams * columns
        else:
            by_x, by_y = drams * columns, np.zeros_like(rows)
        if dram[u] != (0, 0):  # _row_penalty of every row with u's DRAM streams, less without
            over = np.maximum(row_load + np.array(dram[u]) - target.link_capacity, 0)
            over -= np.maximum(row_load - target.link_capacity, 0)
            by_y = by_y + DRAM_DETOUR * over.sum(axis=1)
        kind_taken = taken[unit.kind]
        cost = by_x[xs[unit.kind]] + by_y[ys[unit.kind]] + kind_taken
        for slot in barred.get(u, ()) if barred else ():
            if slot in index[unit.kind]:
                cost[index[unit.kind][slot]] += _TAKEN
        best = int(np.argmin(cost))  # the first of least cost
        if cost[best] >= _TAKEN:
            raise PlacementError(f"no free {unit.kind.upper()} slot left for {unit.name}")
        xy = free[unit.kind]
        best_slot = (int(xy[best, 0]), int(xy[best, 1]))
        at[u] = best_slot
        placed[u] = True
        row_load[best_slot[1]] += dram[u]
        kind_taken[best] = _TAKEN
    return at


_TAKEN: Final = 1 << 40
"""``greedy_placement``'s cost of a taken slot: above any free slot's (a sum of distances)."""


def _median_of(others: Sequence[int], at: Sequence[Coord], u: int) -> Coord:
    """The median of the switches at the other end of ``u``'s streams (``at[u]`` if none), from
    ``_other_ends``: DRAM's switch is the left edge of ``u``'s row."""
    if not others:
        return at[u]
    xs = sorted(0 if o == DRAM else at[o][0] for o in others)
    ys = sorted(at[u][1] if o == DRAM else at[o][1] for o in others)
    return xs[len(xs) // 2], ys[len(ys) // 2]


@dataclass(frozen=True)
class AnnealInputs:
    """What ``anneal`` reads of a graph, its target and its start, the same for every seed
    (``place_and_route`` makes it once for its attempts)."""

    others: list[list[int]]
    """Per unit, the other end of each of its streams (``_other_ends``)."""
    units: list[list[tuple[int, int]]]
    """Per unit, those of ``others`` that are units, each with its stream's weight."""
    drams: list[int]
    """Per unit, the weights of its streams to or from DRAM, summed."""
    dram: list[tuple[int, int]]
    """Per unit, its DRAM loads and stores (``_dram_degree``)."""
    is_pcu: list[bool]
    pcu_slot: list[list[bool]]
    """``target.is_pcu_slot(x, y)`` as ``pcu_slot[x][y]``."""
    start_cost: int
    """``placement_cost`` of the start."""


def anneal_inputs(graph: Graph, target: Target, start: Sequence[Coord]) -> AnnealInputs:
    """``AnnealInputs`` of ``graph`` on ``target`` from ``start``."""
    incident = _incident_streams(graph)
    others = _other_ends(graph, incident)
    weights = stream_weights(graph)
    units = [
        [(o, weights[s]) for o, s in zip(ends, ss, strict=True) if o != DRAM]
        for ends, ss in zip(others, incident, strict=True)
    ]
    drams = [
        sum(weights[s] for o, s in zip(ends, ss, strict=True) if o == DRAM)
        for ends, ss in zip(others, incident, strict=True)
    ]
    return AnnealInputs(
        others=others,
        units=units,
        drams=drams,
        dram=_dram_degree(graph),
        is_pcu=[unit.kind == "pcu" for unit in graph.units],
        pcu_slot=[
            [target.is_pcu_slot(x, y) for y in range(target.rows)] for x in range(target.cols)
        ],
        start_cost=placement_cost(graph, target, start),
    )


def anneal(
    graph: Graph,
    target: Target,
    start: Sequence[Coord],
    *,
    seed: int,
    moves: int,
    inputs: AnnealInputs | None = None,
    fixed: Mapping[int, Coord] | None = None,
    blocked: Collection[Coord] = (),
    barred: Mapping[int, Collection[Coord]] | None = None,
) -> list[Coord]:
    """Simulated annealing of ``placement_cost`` from ``start``; returns the best placement seen.

    A move takes a unit to a slot of its kind, swapping it with the unit already there if any.
    A ``fixed`` unit (on its slot in ``start``) is never moved, nor swapped out of its slot, and
    no unit moves onto a ``blocked`` slot, nor onto one of its ``barred`` ones (see
    ``place_and_route``).
    Half the moves aim at the median of the unit's neighbours' switches (where its streams would
    be shortest), half at a random slot within a window that shrinks as the temperature falls.
    The temperature cools geometrically over ``moves`` moves. Deterministic for a given ``seed``.
    ``inputs``: ``anneal_inputs(graph, target, start)``, for a caller that anneals the same
    start with several seeds.
    """
    at = list(start)
    if moves <= 0 or len(at) <= 1:
        return at
    rng = random.Random(seed)
    if inputs is None:
        inputs = anneal_inputs(graph, target, start)
    others, units, drams = inputs.others, inputs.units, inputs.drams

    def wire_delta(w: int, src: Coord, dst: Coord, skip: int) -> int:
        """How much ``w``'s streams lengthen when ``w`` moves ``src -> dst`` (the other units
        staying put; a stream to ``skip``, the unit swapped with ``w``, keeps its length)."""
        (sx, sy), (dx, dy) = src, dst
        delta = drams[w] * (dx - sx)  # a DRAM stream's length is its unit's column
        for o, weight in units[w]:
            if o != skip:
                ox, oy = at[o]
                delta += weight * (abs(dx - ox) + abs(dy - oy) - abs(sx - ox) - abs(sy - oy))
        return delta

    cols, rows = target.cols, target.rows
    pcu_slot = inputs.pcu_slot
    getrandbits, uniform = rng.getrandbits, rng.random

    def below(n: int) -> int:
        """``rng.randrange(n)`` (for ``n >= 1``): the draws CPython's ``randrange`` makes
        (``_randbelow``: rejection sampling of ``n.bit_length()`` random bits), minus the
        argument checks that took a quarter of the annealing's time."""
        k = n.bit_length()
        r = getrandbits(k)
        while r >= n:
            r = getrandbits(k)
        return r

    def slot_near(want_pcu: bool, centre: Coord, radius: int) -> Coord:
        """A random slot of the kind within ``radius`` (per axis) of ``centre``, clamped to the
        grid (the draws of ``randint(-radius, radius)``)."""
        x = min(cols - 1, max(0, centre[0] - radius + below(2 * radius + 1)))
        y = min(rows - 1, max(0, centre[1] - radius + below(2 * radius + 1)))
        if pcu_slot[x][y] != want_pcu:
            # One step along x (or y on a one-column grid) flips the checkerboard colour.
            if cols > 1:
                x = x + 1 if x + 1 < cols and (x == 0 or uniform() < 0.5) else x - 1
            else:
                y = y + 1 if y + 1 < rows else y - 1
        return x, y

    is_pcu, dram = inputs.is_pcu, inputs.dram
    row_load = [(0, 0)] * target.rows
    for u, (_, y) in enumerate(at):
        row_load[y] = _add(row_load[y], dram[u])
    occupant: dict[Coord, int] = {slot: u for u, slot in enumerate(at)}
    cost = best_cost = inputs.start_cost
    # The best placement seen is ``at`` with the moves made since undone: each (unit, slot it
    # left), kept instead of copying ``at`` (1,000 units and more) at every new best.
    since_best: list[tuple[int, Coord]] = []
    # Starting from a good greedy placement: hot enough to leave its local minimum, not so hot
    # that a few thousand moves cannot settle again.
    t_start, t_end = 2.0, 0.05
    cooling = (t_end / t_start) ** (1.0 / moves)
    temperature = t_start
    span = max(target.cols, target.rows)
    # The units that may move, and the slots they may not take: the blocked and the fixed
    # units' (empty without ``fixed`` and ``blocked``: the same draws as before those).
    movable = [u for u in range(len(at)) if u not in fixed] if fixed else list(range(len(at)))
    taboo = set(blocked) | set(fixed.values()) if fixed else set(blocked)
    own = {u: set(slots) for u, slots in barred.items()} if barred else {}
    if not movable:
        return at
    n_units, unit_bits = len(movable), len(movable).bit_length()
    for step in range(moves):
        temperature *= cooling
        i = getrandbits(unit_bits)  # below(n_units), inline
        while i >= n_units:
            i = getrandbits(unit_bits)
        u = movable[i]
        if uniform() < 0.5:
            centre = _median_of(others[u], at, u)
            radius = 1
        else:
            centre = at[u]
            radius = max(1, round(span * (1 - step / moves)))
        slot = slot_near(is_pcu[u], centre, radius)
        if slot == at[u] or slot in taboo:
            continue
        v = occupant.get(slot)
        old = at[u]
        if own and (slot in own.get(u, ()) or (v is not None and old in own.get(v, ()))):
            continue
        delta = wire_delta(u, old, slot, DRAM if v is None else v)
        if v is not None:
            delta += wire_delta(v, slot, old, u)
        # DRAM loads and stores that move from the old row to the new one.
        shift = _sub(dram[u], dram[v] if v is not None else (0, 0))
        moved = shift != (0, 0) and old[1] != slot[1]
        if moved:
            a, b = row_load[old[1]], row_load[slot[1]]
            delta += _row_penalty(_sub(a, shift), target) - _row_penalty(a, target)
            delta += _row_penalty(_add(b, shift), target) - _row_penalty(b, target)
        if delta <= 0 or uniform() < math.exp(-delta / temperature):
            cost += delta
            at[u] = slot
            if v is not None:
                at[v] = old
            if moved:
                row_load[old[1]] = _sub(row_load[old[1]], shift)
                row_load[slot[1]] = _add(row_load[slot[1]], shift)
            occupant[slot] = u
            since_best.append((u, old))
            if v is not None:
                occupant[old] = v
                since_best.append((v, slot))
            else:
                del occupant[old]
            if cost < best_cost:
                best_cost = cost
                since_best.clear()
    for w, left in reversed(since_best):
        at[w] = left
    return at


def _other_ends(graph: Graph, incident: Sequence[Sequence[int]]) -> list[list[int]]:
    """Per unit, the other end of each of its streams (in ``incident`` order; DRAM as is)."""
    return [
        [graph.streams[s].dst if graph.streams[s].src == u else graph.streams[s].src for s in ss]
        for u, ss in enumerate(incident)
    ]


def route(graph: Graph, target: Target, at: Sequence[Coord]) -> list[tuple[Coord, ...]]:
    """Route every stream, in order, within ``target.link_capacity`` streams per link
    (``routing.Router.path``: X then Y, Y then X, the shortest detour over links with room),
    heavy streams detouring round busy links (``Router.spread``); if that leaves a stream no
    path, again without those detours (they take room other streams need). When no stream had
    taken such a detour before the one left without a path, routing again without them takes
    the same routes up to it and fails there too: it is not done (``Router.spared``)."""
    try:
        return _route(graph, target, at, spread=True)
    except _Unroutable as err:
        if not err.spared:
            raise
        return _route(graph, target, at, spread=False)


def reroute(graph: Graph, target: Target, placed: Placement) -> Placement:
    """``placed``'s slots with every stream of ``graph`` routed again by ``route`` (a placement
    found on the same units and streams without their ``weight``s: routed by bytes now), or
    ``placed`` as it is if that leaves a stream no path."""
    try:
        return Placement(placed.at, tuple(route(graph, target, placed.at)))
    except _Unroutable:
        return placed


def _route(
    graph: Graph, target: Target, at: Sequence[Coord], *, spread: bool
) -> list[tuple[Coord, ...]]:
    router = Router(target, spread=spread)
    routes: list[tuple[Coord, ...]] = []
    for index, stream in enumerate(graph.streams):
        a = endpoint_switch(at, stream, stream.src)
        b = endpoint_switch(at, stream, stream.dst)
        hops = router.path(a, b, stream.scalar, stream.weight)
        if hops is None:
            raise _Unroutable(index, spared=router.spared > 0)
        router.take(hops, stream.scalar, stream.weight)
        routes.append(hops)
    return routes


class _Unroutable(Exception):
    """Stream ``stream`` found no path; ``spared``: a route before it was a ``spread`` detour."""

    def __init__(self, stream: int, *, spared: bool = False) -> None:
        super().__init__(stream)
        self.stream = stream
        self.spared = spared


def _check_graph(graph: Graph) -> None:
    n = len(graph.units)
    for s in graph.streams:
        for end in (s.src, s.dst):
            if end != DRAM and not 0 <= end < n:
                raise ValueError(f"stream endpoint {end} is not a unit index or DRAM")
        if s.src == s.dst:
            raise ValueError(f"stream from {s.src} to itself")


def _check_fixed(
    graph: Graph,
    target: Target,
    fixed: Mapping[int, Coord] | None,
    blocked: Collection[Coord],
    section: str = "section",
) -> None:
    """Every fixed unit on a slot of its kind, not blocked, not another fixed unit's."""
    if not fixed:
        return
    barred = set(blocked)
    holder: dict[Coord, int] = {}
    for u, slot in fixed.items():
        if not 0 <= u < len(graph.units):
            raise ValueError(f"fixed unit {u} is not a unit index")
        unit, (x, y) = graph.units[u], slot
        where = f"section '{section}': {unit.name} is fixed at {[x, y]}"
        on_grid = 0 <= x < target.cols and 0 <= y < target.rows
        if not on_grid or target.is_pcu_slot(x, y) != (unit.kind == "pcu"):
            raise PlacementError(
                f"{where}, not a {unit.kind.upper()} slot of target '{target.name}'"
            )
        if slot in barred:
            raise PlacementError(f"{where}, a blocked slot")
        if slot in holder:
            raise PlacementError(f"{where}, as is {graph.units[holder[slot]].name}")
        holder[slot] = u


def _check_capacity(
    graph: Graph, target: Target, section: str, blocked: Collection[Coord] = ()
) -> None:
    barred = {(x, y) for x, y in blocked if 0 <= x < target.cols and 0 <= y < target.rows}
    for kind, have in (("pcu", target.num_pcus), ("pmu", target.num_pmus)):
        need = sum(1 for unit in graph.units if unit.kind == kind)
        gone = sum(1 for x, y in barred if target.is_pcu_slot(x, y) == (kind == "pcu"))
        if need > have - gone:
            free = f"{have - gone} free of its {have} ({gone} blocked)" if gone else f"{have}"
            raise PlacementError(
                f"section '{section}' needs {need} {kind.upper()}s, "
                f"target '{target.name}' has {free}"
            )


def _incident_streams(graph: Graph) -> list[list[int]]:
    incident: list[list[int]] = [[] for _ in graph.units]
    for s, stream in enumerate(graph.streams):
        for end in (stream.src, stream.dst):
            if end != DRAM:
                incident[end].append(s)
    return incident


def _dram_degree(graph: Graph) -> list[tuple[int, int]]:
    """Per unit, how many DRAM loads it receives and how many DRAM stores it sends."""
    loads = [0] * len(graph.units)
    stores = [0] * len(graph.units)
    for stream in graph.streams:
        if stream.src == DRAM:
            loads[stream.dst] += 1
        elif stream.dst == DRAM:
            stores[stream.src] += 1
    return list(zip(loads, stores, strict=True))


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] + b[0], a[1] + b[1]


def _sub(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] - b[0], a[1] - b[1]


def _row_penalty(load: tuple[int, int], target: Target) -> int:
    """The detour cost of a row's DRAM (loads, stores) beyond what its edge links carry."""
    cap = target.link_capacity
    return DRAM_DETOUR * (max(0, load[0] - cap) + max(0, load[1] - cap))


def _describe(graph: Graph, index: int) -> str:
    stream = graph.streams[index]
    names = ["DRAM" if e == DRAM else graph.units[e].name for e in (stream.src, stream.dst)]
    return f"{names[0]} -> {names[1]}"


def fanout_excess(graph: Graph, target: Target, rooms: Rooms | None = None) -> str | None:
    """Why ``graph`` cannot be routed whatever the placement, seen without placing it; or None.

    Two units never share a switch, so every stream between two units leaves its source's switch
    over one of that switch's links and enters its destination's switch over another; a stream
    between DRAM and a unit does too unless the unit sits in column 0 (where DRAM's switch is
    its own). So a unit needs a slot whose switch's links (``link_capacity`` streams each; 4
    links inside the grid, 3 on an edge, 2 in a corner) carry its streams out, and its streams
    in (the streams that chain a buffer's PMUs count like any other). Streams on the scalar
    network (``Stream.scalar``, on a target that has one) are not counted: a PMU's value takes
    one track of each link however many units read it. A necessary condition only: None does
    not mean that the graph routes. ``rooms``: ``slot_rooms(target)``, for a caller that asks
    often.
    """
    rooms = slot_rooms(target) if rooms is None else rooms
    for unit, fanout in zip(graph.units, unit_fanouts(graph, target), strict=True):
        if not fits_a_slot(fanout, rooms):
            best = max((room for _, room in rooms[unit.kind]), default=0)
            return (
                f"{unit.name} has {fanout.to_units + fanout.to_dram} streams out and "
                f"{fanout.from_units + fanout.from_dram} in, the links of a "
                f"{unit.kind.upper()} slot carry {best} each way"
            )
    return None


class UnitFanout(NamedTuple):
    """A unit's streams, as ``fanout_excess`` counts them: out to units and to DRAM, in from
    units and from DRAM."""

    kind: UnitKind
    to_units: int
    to_dram: int
    from_units: int
    from_dram: int


def unit_fanouts(graph: Graph, target: Target) -> list[UnitFanout]:
    """Every unit's streams out and in, to and from units and DRAM (``graph.units`` order),
    those on ``target``'s scalar network left out."""
    out = [[0, 0] for _ in graph.units]  # per unit: streams to units, to DRAM
    into = [[0, 0] for _ in graph.units]  # from units, from DRAM
    scalar_network = target.scalar_link_capacity > 0
    for stream in graph.streams:
        if stream.scalar is not None and scalar_network:
            continue
        if stream.src != DRAM:
            out[stream.src][stream.dst == DRAM] += 1
        if stream.dst != DRAM:
            into[stream.dst][stream.src == DRAM] += 1
    return [
        UnitFanout(unit.kind, o[0], o[1], n[0], n[1])
        for unit, o, n in zip(graph.units, out, into, strict=True)
    ]


Rooms = dict[UnitKind, frozenset[tuple[bool, int]]]
"""Per kind, the distinct (in column 0, streams its switch's links carry each way) of its slots."""


def slot_rooms(target: Target) -> Rooms:
    """The ``Rooms`` of ``target``'s slots (a target has a few: inside the grid, on an edge, in
    a corner)."""
    rooms: Rooms = {}
    for kind in KINDS:
        found: set[tuple[bool, int]] = set()
        for x, y in slots(target, kind):
            links = (x > 0) + (x < target.cols) + (y > 0) + (y < target.rows)
            found.add((x == 0, links * target.link_capacity))
        rooms[kind] = frozenset(found)
    return rooms


def fits_a_slot(fanout: UnitFanout, rooms: Rooms) -> bool:
    """Whether a slot of the unit's kind has links for its streams out and in (a DRAM stream
    of a unit in column 0 uses none of them), see ``fanout_excess``."""
    return any(
        fanout.to_units + (0 if edge else fanout.to_dram) <= room
        and fanout.from_units + (0 if edge else fanout.from_dram) <= room
        for edge, room in rooms[fanout.kind]
    )
