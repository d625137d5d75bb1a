"""The placement and routing algorithms (compiler/passes/placement.py), without IR."""

from __future__ import annotations

import itertools
import random

import pytest

from compiler.passes import placement
from compiler.passes.placement import (
    DRAM,
    Graph,
    Placement,
    PlacementError,
    Stream,
    Unit,
    endpoint_switch,
    greedy_placement,
    link_bytes,
    place_and_route,
    placement_cost,
    route,
    slots,
    stream_weights,
    wire_length,
)
from compiler.passes.placement import check_placement as what_is_wrong
from compiler.passes.routing import Coord, link_usage
from compiler.targets import Target, get_target

GRID = Target("grid4x3", cols=4, rows=3, pcu_lanes=4, pcu_stages=4, pmu_bytes=1024,
              pmu_banks=4, clock_ghz=1.0, link_capacity=2)  # fmt: skip


def two_layer_graph() -> Graph:
    """y = (x @ w) + b, with a skip read of x: 2 PCUs, 5 PMUs, DRAM loads and one store."""
    units = [
        Unit("x", "pmu"),
        Unit("w", "pmu"),
        Unit("matmul", "pcu"),
        Unit("h", "pmu"),
        Unit("b", "pmu"),
        Unit("add", "pcu"),
        Unit("y", "pmu"),
    ]
    streams = [
        Stream(DRAM, 0),
        Stream(DRAM, 1),
        Stream(0, 2),
        Stream(1, 2),
        Stream(2, 3),
        Stream(DRAM, 4),
        Stream(3, 5),
        Stream(4, 5),
        Stream(0, 5),
        Stream(5, 6),
        Stream(6, DRAM),
    ]
    return Graph(units, streams)


def chain_graph(layers: int) -> Graph:
    """A chain of ``layers`` PCUs, each reading the previous result and a weight from DRAM."""
    units = [Unit("x", "pmu")]
    streams = [Stream(DRAM, 0)]
    previous = 0
    for i in range(layers):
        units += [Unit(f"w{i}", "pmu"), Unit(f"op{i}", "pcu"), Unit(f"out{i}", "pmu")]
        w, op, out = len(units) - 3, len(units) - 2, len(units) - 1
        streams += [Stream(DRAM, w), Stream(previous, op), Stream(w, op), Stream(op, out)]
        previous = out
    streams.append(Stream(previous, DRAM))
    return Graph(units, streams)


def brute_force_optimum(graph: Graph, target: Target) -> int:
    """The least total Manhattan stream length over every placement."""
    pcus = [i for i, u in enumerate(graph.units) if u.kind == "pcu"]
    pmus = [i for i, u in enumerate(graph.units) if u.kind == "pmu"]
    at: list[Coord] = [(0, 0)] * len(graph.units)
    best = None
    for pcu_slots in itertools.permutations(slots(target, "pcu"), len(pcus)):
        for i, slot in zip(pcus, pcu_slots, strict=True):
            at[i] = slot
        for pmu_slots in itertools.permutations(slots(target, "pmu"), len(pmus)):
            for i, slot in zip(pmus, pmu_slots, strict=True):
                at[i] = slot
            cost = wire_length(graph, at)
            best = cost if best is None else min(best, cost)
    assert best is not None
    return best


def check_placement(graph: Graph, target: Target, placement: Placement) -> None:
    """Every unit on a distinct slot of its kind; every route connected, adjacent, in capacity."""
    assert len(placement.at) == len(graph.units)
    assert len(set(placement.at)) == len(placement.at)
    for unit, (x, y) in zip(graph.units, placement.at, strict=True):
        assert 0 <= x < target.cols and 0 <= y < target.rows
        assert target.is_pcu_slot(x, y) == (unit.kind == "pcu")
    assert len(placement.routes) == len(graph.streams)
    for stream, hops in zip(graph.streams, placement.routes, strict=True):
        assert hops[0] == endpoint_switch(placement.at, stream, stream.src)
        assert hops[-1] == endpoint_switch(placement.at, stream, stream.dst)
        for (ax, ay), (bx, by) in itertools.pairwise(hops):
            assert abs(ax - bx) + abs(ay - by) == 1
        for x, y in hops:
            assert 0 <= x <= target.cols and 0 <= y <= target.rows
    assert max(link_usage(placement.routes).values(), default=0) <= target.link_capacity


def test_near_optimal_against_brute_force() -> None:
    graph = two_layer_graph()
    optimum = brute_force_optimum(graph, GRID)
    for seed in range(3):
        placement = place_and_route(graph, GRID, seed=seed)
        check_placement(graph, GRID, placement)
        assert placement.route_length <= 1.5 * optimum, (seed, placement.route_length, optimum)


def test_the_placer_keeps_heavy_streams_shorter() -> None:
    # A PCU reading a 4 MB stream and a 64 kB one: their lengths count 4 and 1 (the heaviest
    # WEIGHT_LEVELS times, the others in proportion to their bytes, at least once), so the
    # placement with the heavy stream one hop long costs less than the one with the light one.
    units = [Unit("heavy", "pmu"), Unit("light", "pmu"), Unit("op", "pcu")]
    graph = Graph(units, [Stream(0, 2, weight=4 << 20), Stream(1, 2, weight=64 << 10)])
    assert stream_weights(graph) == [4, 1]
    near, far = (1, 0), (3, 0)  # PMU slots one and three hops from the PCU at (0, 0)
    assert placement_cost(graph, GRID, [near, far, (0, 0)]) == 4 * 1 + 1 * 3
    assert placement_cost(graph, GRID, [far, near, (0, 0)]) == 4 * 3 + 1 * 1
    # Streams of unknown bytes (weight 0) all count once: the plain wire length.
    plain = two_layer_graph()
    assert stream_weights(plain) == [1] * len(plain.streams)


def test_dram_streams_enter_at_the_left_edge_of_the_units_row() -> None:
    graph = two_layer_graph()
    placement = place_and_route(graph, GRID)
    for stream, hops in zip(graph.streams, placement.routes, strict=True):
        if stream.src == DRAM:
            assert hops[0] == (0, placement.at[stream.dst][1])
        if stream.dst == DRAM:
            assert hops[-1] == (0, placement.at[stream.src][1])


def test_routes_respect_link_capacity_on_a_crowded_grid() -> None:
    # Nearly fills plasticine-sized PMU slots; DRAM streams crowd the left edge, so some streams
    # must leave dimension order.
    target = get_target("plasticine")
    graph = chain_graph(20)
    placement = place_and_route(graph, target)
    check_placement(graph, target, placement)
    assert placement.route_length >= wire_length(graph, placement.at)


def test_capacity_one_forces_detours() -> None:
    target = Target("narrow", cols=4, rows=4, pcu_lanes=4, pcu_stages=4, pmu_bytes=1024,
                    pmu_banks=4, clock_ghz=1.0, link_capacity=1)  # fmt: skip
    graph = chain_graph(2)
    placement = place_and_route(graph, target)
    check_placement(graph, target, placement)


def test_deterministic() -> None:
    graph = chain_graph(6)
    target = get_target("plasticine")
    first = place_and_route(graph, target, seed=7)
    assert place_and_route(graph, target, seed=7) == first
    assert place_and_route(chain_graph(6), target, seed=7) == first


def test_too_many_units_names_section_and_target() -> None:
    with pytest.raises(
        PlacementError, match="section 'backward' needs 10 PCUs, target 'tiny' has 8"
    ):
        place_and_route(chain_graph(10), get_target("tiny"), section="backward")


def test_unroutable_section_is_an_error() -> None:
    # One row of units, capacity 1: the edge switch (0, 0) has two links, three DRAM loads.
    target = Target("line", cols=6, rows=1, pcu_lanes=4, pcu_stages=4, pmu_bytes=1024,
                    pmu_banks=4, clock_ghz=1.0, link_capacity=1)  # fmt: skip
    graph = Graph(
        [Unit("a", "pmu"), Unit("b", "pmu"), Unit("c", "pmu")],
        [Stream(DRAM, 0), Stream(DRAM, 1), Stream(DRAM, 2)],
    )
    with pytest.raises(PlacementError, match="section 'forward' cannot be routed on target 'line'"):
        place_and_route(graph, target, section="forward")


def test_empty_and_single_unit_graphs() -> None:
    target = get_target("tiny")
    assert place_and_route(Graph([], []), target) == Placement((), ())
    single = place_and_route(Graph([Unit("x", "pmu")], [Stream(DRAM, 0), Stream(0, DRAM)]), target)
    check_placement(Graph([Unit("x", "pmu")], [Stream(DRAM, 0), Stream(0, DRAM)]), target, single)


def test_links_are_directed() -> None:
    # A PCU and a PMU side by side, streams both ways, one stream a link: no detour needed.
    target = Target("pair", cols=2, rows=1, pcu_lanes=4, pcu_stages=4, pmu_bytes=1024,
                    pmu_banks=4, clock_ghz=1.0, link_capacity=1)  # fmt: skip
    graph = Graph([Unit("p", "pcu"), Unit("x", "pmu")], [Stream(1, 0), Stream(0, 1)])
    placement = place_and_route(graph, target)
    check_placement(graph, target, placement)
    assert placement.routes == (((1, 0), (0, 0)), ((0, 0), (1, 0)))


def test_check_placement_accepts_what_place_and_route_finds_and_names_what_is_wrong() -> None:
    graph = two_layer_graph()
    placed = place_and_route(graph, GRID)
    assert what_is_wrong(graph, GRID, placed) is None
    at = placed.at
    swapped = Placement((at[2], at[1], at[0], *at[3:]), placed.routes)
    assert what_is_wrong(graph, GRID, swapped) == f"x at {list(at[2])}, not a PMU slot"
    shared = Placement((at[1], *at[1:]), placed.routes)
    assert what_is_wrong(graph, GRID, shared) == "two units on one slot"
    moved = tuple((x + 1, y) for x, y in placed.routes[0])  # starts one switch off DRAM's
    cut = Placement(at, (moved, *placed.routes[1:]))
    assert (
        what_is_wrong(graph, GRID, cut)
        == "the route of the stream DRAM -> x does not join its ends"
    )
    short = Placement(at[:-1], placed.routes)
    assert what_is_wrong(graph, GRID, short) == "6 slots and 11 routes for 7 units and 11 streams"


def _greedy_by_definition(graph: Graph, target: Target) -> list[Coord]:
    """``greedy_placement`` as its docstring defines it, slot by slot: in dataflow order, the
    first free slot of the unit's kind (column by column from the left) of least Manhattan
    length to its placed neighbours and to DRAM (its column), plus its row's DRAM detour."""
    from compiler.passes.placement import _row_penalty

    free = {kind: slots(target, kind) for kind in ("pcu", "pmu")}
    at: list[Coord] = []
    row_load = [(0, 0)] * target.rows
    for u, unit in enumerate(graph.units):
        loads = sum(1 for s in graph.streams if s.src == DRAM and s.dst == u)
        stores = sum(1 for s in graph.streams if s.dst == DRAM and s.src == u)
        near = [at[s.src] for s in graph.streams if s.dst == u and 0 <= s.src < u]
        near += [at[s.dst] for s in graph.streams if s.src == u and 0 <= s.dst < u]

        def cost(
            slot: Coord, near: list[Coord] = near, d: tuple[int, int] = (loads, stores)
        ) -> int:
            x, y = slot
            load = row_load[y]
            detour = _row_penalty((load[0] + d[0], load[1] + d[1]), target)
            detour -= _row_penalty(load, target)
            return (d[0] + d[1]) * x + sum(abs(x - a) + abs(y - b) for a, b in near) + detour

        best = min(free[unit.kind], key=cost)
        free[unit.kind].remove(best)
        at.append(best)
        row_load[best[1]] = (row_load[best[1]][0] + loads, row_load[best[1]][1] + stores)
    return at


@pytest.mark.parametrize("name", ["tiny", "plasticine", "sn40l"])
def test_greedy_placement_is_the_slot_by_slot_choice(name: str) -> None:
    """The vectorised greedy start picks exactly the slots the definition does (ties to the
    left, then down), on random graphs with many DRAM streams (rows over their edge links)."""
    import random

    target = get_target(name)
    rng = random.Random(0)
    for _ in range(6):
        n = rng.randint(1, min(target.num_pcus, target.num_pmus, 120))
        units = [Unit(f"u{i}", rng.choice(["pcu", "pmu"])) for i in range(n)]
        streams = []
        for u in range(n):
            streams += [Stream(DRAM, u)] * rng.randint(0, 4) + [Stream(u, DRAM)] * rng.randint(0, 2)
            streams += [Stream(rng.randrange(u), u) for _ in range(rng.randint(0, 2)) if u]
        graph = Graph(units, streams)
        assert greedy_placement(graph, target) == _greedy_by_definition(graph, target)


def _random_placed_graph(rng: random.Random, target: Target) -> tuple[Graph, list[Coord]]:
    """Units on random slots of their kinds, and streams between them and DRAM, most of them
    heavy (a weight) and many along one row or column (where ``spread`` detours)."""
    free = {kind: slots(target, kind) for kind in ("pcu", "pmu")}
    for kind_slots in free.values():
        rng.shuffle(kind_slots)
    n = rng.randint(4, 30)
    units = [Unit(f"u{i}", rng.choice(["pcu", "pmu"])) for i in range(n)]
    at = [free[unit.kind].pop() for unit in units]
    streams = []
    for _ in range(rng.randint(n, 4 * n)):
        src, dst = rng.sample([DRAM, *range(n)], 2)
        if src != DRAM and dst != DRAM and rng.random() < 0.5:  # a stream along one row
            same_row = [u for u in range(n) if u != src and at[u][1] == at[src][1]]
            dst = rng.choice(same_row) if same_row else dst
        streams.append(Stream(src, dst, weight=rng.choice([0, 64, 1024, 4096])))
    return Graph(units, streams), at


def test_route_tries_again_without_spreading_only_when_a_detour_was_spread() -> None:
    """``route`` routes a section again without ``spread`` only if a stream before the one left
    without a path took a ``spread`` detour (else the same routes, the same failure): the same
    answer as always routing it again, on random placed graphs, routed and not."""
    from compiler.passes.placement import _route, _Unroutable, route

    def always_again(graph: Graph, at: list[Coord]) -> object:
        try:
            return _route(graph, crowded, at, spread=True)
        except _Unroutable:
            try:
                return _route(graph, crowded, at, spread=False)
            except _Unroutable as err:
                return err.stream

    crowded = Target("crowded", cols=8, rows=6, pcu_lanes=4, pcu_stages=4, pmu_bytes=1024,
                     pmu_banks=4, clock_ghz=1.0, link_capacity=2)  # fmt: skip
    rng = random.Random(0)
    seen = {"spread routes": 0, "fails, no detour before": 0, "fails after a detour": 0}
    for _ in range(300):
        graph, at = _random_placed_graph(rng, crowded)
        try:
            _route(graph, crowded, at, spread=True)
            seen["spread routes"] += 1
        except _Unroutable as err:
            seen["fails after a detour" if err.spared else "fails, no detour before"] += 1
        try:
            answer: object = route(graph, crowded, at)
        except _Unroutable as err:
            answer = err.stream
        assert answer == always_again(graph, at)
    assert min(seen.values()) > 0, seen  # every case was met


def test_anneal_returns_the_best_placement_it_saw() -> None:
    """The annealing undoes the moves made since its best placement rather than copying every
    new best: what it returns is a placement (a distinct slot of its kind a unit) no costlier
    than its start."""
    from compiler.passes.placement import anneal, placement_cost

    target = get_target("plasticine")
    rng = random.Random(1)
    for _ in range(20):
        graph, _ = _random_placed_graph(rng, target)
        start = greedy_placement(graph, target)
        cost = placement_cost(graph, target, start)
        costs = []
        for moves in (50, 200, 800):
            at = anneal(graph, target, start, seed=3, moves=moves)
            assert len(set(at)) == len(at)
            assert all(
                target.is_pcu_slot(*slot) == (unit.kind == "pcu")
                for unit, slot in zip(graph.units, at, strict=True)
            )
            costs.append(placement_cost(graph, target, at))
        assert max(costs) <= cost


def test_fixed_units_keep_their_slots_and_the_others_avoid_blocked_slots() -> None:
    """A fixed unit ends on its slot (greedy puts it there, the annealing never moves it nor
    swaps it out); no unit takes a blocked slot; the streams still route."""
    graph = two_layer_graph()
    fixed = {2: (2, 0), 6: (3, 2)}  # matmul on a PCU slot, y on a PMU slot
    blocked = frozenset({(0, 0), (1, 0)})  # a PCU and a PMU slot nearest DRAM: greedy's picks
    assert blocked & set(greedy_placement(graph, GRID))  # so the test is not vacuous
    for seed in range(3):
        placed = place_and_route(graph, GRID, seed=seed, fixed=fixed, blocked=blocked)
        check_placement(graph, GRID, placed)
        assert what_is_wrong(graph, GRID, placed) is None
        assert all(placed.at[u] == slot for u, slot in fixed.items())
        assert not blocked & set(placed.at)
    start = greedy_placement(graph, GRID, fixed=fixed, blocked=blocked)
    assert all(start[u] == slot for u, slot in fixed.items()) and not blocked & set(start)


def test_anneal_never_moves_a_fixed_unit_nor_takes_a_blocked_slot() -> None:
    """On random graphs with a third of their units fixed and a few slots blocked, every seed
    of the annealing leaves the fixed units where they are and the blocked slots empty."""
    from compiler.passes.placement import anneal

    target = get_target("plasticine")
    rng = random.Random(2)
    for _ in range(10):
        graph, at = _random_placed_graph(rng, target)
        fixed = {u: at[u] for u in rng.sample(range(len(at)), len(at) // 3)}
        used = set(at)
        blocked = frozenset(rng.sample([s for s in target_slots(target) if s not in used], 8))
        start = greedy_placement(graph, target, fixed=fixed, blocked=blocked)
        for seed in range(3):
            moved = anneal(graph, target, start, seed=seed, moves=500, fixed=fixed,
                           blocked=blocked)  # fmt: skip
            assert all(moved[u] == slot for u, slot in fixed.items())
            assert not blocked & set(moved) and len(set(moved)) == len(moved)


def test_a_barred_slot_is_taken_by_another_unit_not_by_the_barred_one() -> None:
    """A unit's ``barred`` slots: greedy and the annealing never put it there (nor swap it
    there), every seed; another unit may take them (pin-resident-symbols: a buffer to pin may
    not land beside another symbol's home, the section's other buffers may)."""
    from compiler.passes.placement import anneal

    target = get_target("plasticine")
    rng = random.Random(5)
    took = wanted = 0
    for _ in range(10):
        graph, at = _random_placed_graph(rng, target)
        chosen = rng.sample(range(len(at)), len(at) // 4)
        near = [s for s in target_slots(target) if s[0] <= 2]  # where greedy puts things
        barred = {u: frozenset(near) for u in chosen}
        plain = greedy_placement(graph, target)
        wanted += sum(1 for u in chosen if plain[u] in near)  # where they would have gone
        start = greedy_placement(graph, target, barred=barred)
        assert not any(start[u] in barred[u] for u in chosen)
        for seed in range(3):
            moved = anneal(graph, target, start, seed=seed, moves=500, barred=barred)
            assert not any(moved[u] in barred[u] for u in chosen)
            assert len(set(moved)) == len(moved)
            took += sum(1 for u, slot in enumerate(moved) if u not in barred and slot in near)
    assert wanted > 0 and took > 0  # not vacuous; the others do take them: per unit
    graph = two_layer_graph()
    placed = place_and_route(graph, GRID, barred={0: frozenset({(0, 0), (1, 0)})})
    check_placement(graph, GRID, placed)
    assert placed.at[0] not in {(0, 0), (1, 0)}


def target_slots(target: Target) -> list[Coord]:
    return slots(target, "pcu") + slots(target, "pmu")


def test_no_fixed_and_no_blocked_is_the_placement_as_before() -> None:
    """``fixed=None`` and ``blocked=()`` (or empty) change no draw: the same placement as a call
    without them, on a crowded grid where the annealing and the routing both matter."""
    target = get_target("plasticine")
    for graph in (chain_graph(20), two_layer_graph()):
        plain = place_and_route(graph, target, seed=3)
        assert place_and_route(graph, target, seed=3, fixed=None, blocked=()) == plain
        assert place_and_route(graph, target, seed=3, fixed={}, blocked=frozenset()) == plain
        assert greedy_placement(graph, target, fixed={}, blocked=()) == greedy_placement(
            graph, target
        )


def test_known_answers_are_kept_apart_by_fixed_and_blocked() -> None:
    graph = two_layer_graph()
    known: dict[tuple[object, ...], Placement | int] = {}
    plain = place_and_route(graph, GRID, known=known)
    blocked = frozenset({plain.at[0]})
    other = place_and_route(graph, GRID, known=known, blocked=blocked)
    assert plain.at[0] not in other.at and len(known) == 2
    assert place_and_route(graph, GRID, known=known) == plain


def test_fixed_and_blocked_errors() -> None:
    graph = two_layer_graph()  # x, w, matmul, h, b, add, y: 2 PCUs, 5 PMUs
    with pytest.raises(
        PlacementError,
        match=r"section 'fwd': matmul is fixed at \[1, 0\], not a PCU slot of target 'grid4x3'",
    ):
        place_and_route(graph, GRID, section="fwd", fixed={2: (1, 0)})
    with pytest.raises(PlacementError, match=r"x is fixed at \[9, 0\], not a PMU slot"):
        place_and_route(graph, GRID, fixed={0: (9, 0)})  # off the grid
    with pytest.raises(PlacementError, match=r"section 'fwd': x is fixed at \[1, 0\], a blocked"):
        place_and_route(graph, GRID, section="fwd", fixed={0: (1, 0)}, blocked={(1, 0)})
    with pytest.raises(PlacementError, match=r"w is fixed at \[1, 0\], as is x"):
        place_and_route(graph, GRID, fixed={0: (1, 0), 1: (1, 0)})
    # GRID has 6 PMU slots for the 5 PMUs: blocking two leaves 4.
    with pytest.raises(
        PlacementError,
        match=r"section 'fwd' needs 5 PMUs, target 'grid4x3' has 4 free of its 6 \(2 blocked\)",
    ):
        place_and_route(graph, GRID, section="fwd", blocked={(1, 0), (0, 1)})
    # Blocked PCU slots (and slots off the grid) leave the PMUs room: it places.
    placed = place_and_route(graph, GRID, blocked={(0, 0), (2, 0), (9, 9)})
    check_placement(graph, GRID, placed)


def test_the_placement_a_section_keeps_anneals_ten_moves_a_unit() -> None:
    """``final_moves``: ten moves a unit for the last placement, at most 20,000, never fewer
    than the default (2000 at most, whatever the section's size)."""
    assert placement.final_moves(1100) == 11_000 > placement.default_moves(1100) == 2000
    assert placement.final_moves(50_000) == placement.FINAL_MOVES_MOST
    assert placement.final_moves(20) == placement.default_moves(20) == 2000
    assert placement.final_moves(1) == 0


def test_polish_keeps_the_placement_whose_busiest_link_moves_the_fewest_bytes() -> None:
    """``polish``: of the placement given and those of longer anneals, the one with the least
    ``link_bytes``, never a worse one. Four heavy streams from one PMU into four PCUs placed by
    hand up the grid's first columns, two of them leaving by the same links, spread out."""
    target = get_target("plasticine")
    units = [Unit("pmu", "pmu"), *(Unit(f"pcu {k}", "pcu") for k in range(4))]
    graph = Graph(units, [Stream(0, k, weight=1000) for k in range(1, 5)])
    start = [(1, 0), (0, 4), (0, 6), (1, 7), (0, 2)]
    placed = Placement(tuple(start), tuple(route(graph, target, start)))
    assert what_is_wrong(graph, target, placed) is None
    assert link_bytes(graph, placed) == 2000  # the streams into (0, 4) and (0, 2) up column 0
    polished = placement.polish(graph, target, placed)
    assert what_is_wrong(graph, target, polished) is None
    assert link_bytes(graph, polished) < link_bytes(graph, placed)
    assert link_bytes(graph, placement.polish(graph, target, polished)) <= link_bytes(
        graph, polished
    )


def _chain_beside_heavy_streams() -> Graph:
    """A chain ``in -> a -> ab -> b -> out`` of light streams beside four heavy ones from
    ``in`` to ``out`` through two more PCUs, which the anneal keeps shortest first."""
    units = [Unit("in", "pmu"), Unit("a", "pcu"), Unit("ab", "pmu"), Unit("b", "pcu")]
    units += [Unit("out", "pmu"), Unit("c", "pcu"), Unit("d", "pcu")]
    chain = [Stream(0, 1, weight=10), Stream(1, 2, weight=10), Stream(2, 3, weight=10)]
    heavy = [Stream(0, 5, weight=1000), Stream(0, 6, weight=1000)]
    heavy += [Stream(5, 4, weight=1000), Stream(6, 4, weight=1000)]
    return Graph(units, [*chain, Stream(3, 4, weight=10), *heavy])


def _chain_hops(found: Placement) -> int:
    return sum(len(hops) - 1 for hops in found.routes[:4])


def _far_apart(graph: Graph, target: Target) -> Placement:
    """``_chain_beside_heavy_streams`` placed by hand, its chain across the grid (44 hops)."""
    start: list[Coord] = [(1, 0), (10, 0), (3, 6), (12, 4), (5, 0), (0, 0), (2, 0)]
    return Placement(tuple(start), tuple(route(graph, target, start)))


def test_polish_keeps_the_placement_its_score_puts_lowest() -> None:
    """``polish(score=...)``: of the placement given and the longer anneals', the one the
    caller's score (its performance model) puts lowest; without one, the one whose busiest
    link moves the fewest bytes, the first on a tie (here every one's: 1,010 bytes)."""
    target = get_target("plasticine")
    graph = _chain_beside_heavy_streams()
    placed = _far_apart(graph, target)
    assert _chain_hops(placed) == 44 and link_bytes(graph, placed) == 1010
    assert placement.polish(graph, target, placed) == placed
    kept = placement.polish(graph, target, placed, score=_chain_hops)
    assert _chain_hops(kept) == 6
    assert what_is_wrong(graph, target, kept) is None


def test_polish_also_anneals_with_the_critical_streams_weighed_heaviest() -> None:
    """``polish(critical=...)``: each seed also anneals with the streams the caller names
    (those into its critical chain's units, here the light chain's) weighed as the heaviest,
    so they come out shorter: 6 hops at best without, 4 with."""
    target = get_target("plasticine")
    graph = _chain_beside_heavy_streams()
    placed = _far_apart(graph, target)
    asked: list[Placement] = []

    def critical(best: Placement) -> set[int]:
        asked.append(best)
        return {0, 1, 2, 3}

    kept = placement.polish(graph, target, placed, score=_chain_hops, critical=critical)
    assert _chain_hops(kept) == 4
    assert what_is_wrong(graph, target, kept) is None
    assert asked[0] == placed and len(asked) == placement.POLISH_SEEDS  # the best so far's
