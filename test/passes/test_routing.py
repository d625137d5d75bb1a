"""The router both placers share (compiler/passes/routing.py), without IR."""

from __future__ import annotations

import heapq
import random

from compiler.passes.routing import (
    DETOUR_HOPS,
    Coord,
    Router,
    link_usage,
    links,
    xy_path,
    yx_path,
)
from compiler.targets import Target

GRID = Target("grid4x3", cols=4, rows=3, pcu_lanes=4, pcu_stages=4, pmu_bytes=1024,
              pmu_banks=4, clock_ghz=1.0, link_capacity=1)  # fmt: skip


def test_paths_go_along_one_axis_then_the_other() -> None:
    assert xy_path((0, 0), (2, 1)) == ((0, 0), (1, 0), (2, 0), (2, 1))
    assert yx_path((0, 0), (2, 1)) == ((0, 0), (0, 1), (1, 1), (2, 1))
    assert xy_path((1, 1), (1, 1)) == ((1, 1),)
    assert links(((0, 0), (1, 0), (1, 1))) == [((0, 0), (1, 0)), ((1, 0), (1, 1))]


def test_path_tries_x_then_y_then_y_then_x_then_a_detour() -> None:
    router = Router(GRID)
    a, b = (1, 1), (2, 2)
    first = router.path(a, b)
    assert first == xy_path(a, b)
    assert first is not None and router.take(first) is None
    second = router.path(a, b)
    assert second == yx_path(a, b)  # the X-first links are full (capacity 1)
    assert second is not None and router.take(second) is None
    third = router.path(a, b)
    assert third is not None and router.has_room(third)
    assert third[0] == a and third[-1] == b
    assert len(third) - 1 == 6  # the shortest detour: both 2-hop paths have a full link


def test_no_path_when_every_link_out_is_full() -> None:
    router = Router(GRID)
    for neighbour in ((1, 0), (0, 1)):  # a corner switch has two links out
        assert router.take(((0, 0), neighbour)) is None
    assert router.path((0, 0), (3, 2)) is None


def test_take_counts_a_link_once_a_route_and_names_the_one_it_overloads() -> None:
    router = Router(GRID)
    there_and_back = ((0, 0), (1, 0), (0, 0), (1, 0))  # passes (0,0)->(1,0) twice
    assert router.take(there_and_back) is None
    assert router.usage == {((0, 0), (1, 0)): 1, ((1, 0), (0, 0)): 1}
    assert router.take(((1, 0), (0, 0))) == ((1, 0), (0, 0))
    assert link_usage([((0, 0), (1, 0)), ((0, 0), (1, 0), (1, 1))]) == {
        ((0, 0), (1, 0)): 2,
        ((1, 0), (1, 1)): 1,
    }


def test_a_heavy_stream_spares_the_links_of_the_heavy_streams_before_it() -> None:
    wide = Target("grid4x3", cols=4, rows=3, pcu_lanes=4, pcu_stages=4, pmu_bytes=1024,
                  pmu_banks=4, clock_ghz=1.0, link_capacity=4)  # fmt: skip
    router = Router(wide)
    a, b = (0, 0), (2, 2)
    first = router.path(a, b, weight=1000)
    assert first == xy_path(a, b)  # nothing moves yet: X then Y, as ever
    assert first is not None and router.take(first, weight=1000) is None
    assert router.busiest(first) == 1000
    # A second heavy stream takes Y then X, whose links move nothing yet; a stream that
    # moves nothing (weight 0) still takes X then Y.
    assert router.path(a, b, weight=1000) == yx_path(a, b)
    assert router.path(a, b) == xy_path(a, b)
    # With both taken, a third goes where the busiest link moves less: the lighter second.
    second = yx_path(a, b)
    assert router.take(second, weight=10) is None
    assert router.path(a, b, weight=1000) == second


def test_a_heavy_stream_along_one_column_detours_round_a_busy_link_when_spreading() -> None:
    wide = Target("grid4x6", cols=4, rows=6, pcu_lanes=4, pcu_stages=4, pmu_bytes=1024,
                  pmu_banks=4, clock_ghz=1.0, link_capacity=4)  # fmt: skip
    a, b = (1, 5), (1, 1)
    for spread, expect in ((False, 4), (True, 6)):
        router = Router(wide, spread=spread)
        straight = router.path(a, b, weight=1000)
        assert straight == xy_path(a, b) and router.take(straight, weight=1000) is None
        second = router.path(a, b, weight=1000)
        assert second is not None and len(second) - 1 == expect
        if spread:  # one column over and back: no link of the first route
            assert not set(links(second)) & set(links(straight))
            assert router.busiest(second) == 0
    # A light stream (weight 0) goes straight, spreading or not.
    router = Router(wide, spread=True)
    router.take(xy_path(a, b), weight=1000)
    assert router.path(a, b) == xy_path(a, b)


def _breadth_first(router: Router, a: tuple[int, int], b: tuple[int, int]):
    """The detour as a plain breadth-first search: a queue, neighbours in the order +x, -x, +y,
    -y, a switch's parent the first switch to reach it over a link with room."""
    cols, rows = router.target.cols, router.target.rows
    parent = {a: a}
    queue = [a]
    for p in queue:
        if p == b:
            hops = [b]
            while hops[-1] != a:
                hops.append(parent[hops[-1]])
            return tuple(reversed(hops))
        x, y = p
        for q in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if q not in parent and 0 <= q[0] <= cols and 0 <= q[1] <= rows and router.room((p, q)):
                parent[q] = p
                queue.append(q)
    return None


def test_a_detour_is_the_breadth_first_searchs_route() -> None:
    """``Router.detour`` searches with bit sets of switches; its route is the one a queue gives
    (of the shortest routes, the one whose moves come first in the order +x, -x, +y, -y), and
    None where that finds none, on grids whose links are filled at random."""
    import random

    grid = Target("grid7x5", cols=7, rows=5, pcu_lanes=4, pcu_stages=4, pmu_bytes=1024,
                  pmu_banks=4, clock_ghz=1.0, link_capacity=1)  # fmt: skip
    switches = [(x, y) for x in range(grid.cols + 1) for y in range(grid.rows + 1)]
    rng = random.Random(0)
    found = unreachable = 0
    for _ in range(300):
        router = Router(grid)
        for _ in range(rng.randrange(0, 150)):
            p = rng.choice(switches)
            q = rng.choice(((p[0] + 1, p[1]), (p[0] - 1, p[1]), (p[0], p[1] + 1), (p[0], p[1] - 1)))
            if q in switches:
                router.take((p, q))
        a, b = rng.choice(switches), rng.choice(switches)
        want = _breadth_first(router, a, b)
        assert router.detour(a, b) == want, (a, b, sorted(router.full))
        found += want is not None and len(want) > 1
        unreachable += want is None
    assert found > 100 and unreachable > 10, (found, unreachable)  # both cases were seen


def test_a_heavy_stream_between_a_row_and_a_column_goes_round_busy_links_when_spreading() -> None:
    # (0, 0) -> (2, 2): X then Y passes (1, 0) -> (2, 0), Y then X (0, 1) -> (0, 2), each
    # already moving 1000 bytes. Spreading, the stream takes a staircase through (1, 1), as
    # short and on links that move nothing; without, X then Y.
    wide = Target("grid4x6", cols=4, rows=6, pcu_lanes=4, pcu_stages=4, pmu_bytes=1024,
                  pmu_banks=4, clock_ghz=1.0, link_capacity=4)  # fmt: skip
    a, b = (0, 0), (2, 2)
    for spread in (False, True):
        router = Router(wide, spread=spread)
        router.take(((1, 0), (2, 0)), weight=1000)
        router.take(((0, 1), (0, 2)), weight=1000)
        hops = router.path(a, b, weight=1000)
        if spread:
            assert hops is not None and len(hops) == 5 and (1, 1) in hops
            assert router.busiest(hops) == 0
        else:
            assert hops == xy_path(a, b)


def _quieter_by_coordinates(
    router: Router, a: Coord, b: Coord, limit: int, below: int
) -> tuple[Coord, ...] | None:
    """``Router.quieter`` as it was written first, over coordinates and the router's ``bytes``
    and ``full`` (its answer for ``below``: the route if its busiest link moves less)."""
    lo_x, hi_x = max(0, min(a[0], b[0]) - 1), min(router.target.cols, max(a[0], b[0]) + 1)
    lo_y, hi_y = max(0, min(a[1], b[1]) - 1), min(router.target.rows, max(a[1], b[1]) + 1)
    best: dict[Coord, tuple[int, int]] = {a: (0, 0)}
    parent: dict[Coord, Coord] = {a: a}
    heap = [(0, 0, a)]
    while heap:
        busy, n, p = heapq.heappop(heap)
        if p == b:
            hops = [b]
            while hops[-1] != a:
                hops.append(parent[hops[-1]])
            route = tuple(reversed(hops))
            return route if router.busiest(route) < below else None
        if best[p] < (busy, n):
            continue
        x, y = p
        for q in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if not (lo_x <= q[0] <= hi_x and lo_y <= q[1] <= hi_y) or (p, q) in router.full:
                continue
            step = (max(busy, router.bytes.get((p, q), 0)), n + 1)
            if step[1] > limit or (q in best and best[q] <= step):
                continue
            best[q] = step
            parent[q] = p
            heapq.heappush(heap, (*step, q))
    return None


def test_quieter_takes_the_routes_of_the_search_over_coordinates() -> None:
    """On random loads of a 6 x 5 grid (some links full, the others moving random bytes),
    ``quieter`` (switch numbers, flat arrays, links as busy as ``below`` never taken) gives
    the route the same search over coordinates gives, or none when that one's busiest link is
    not below ``below``: a valid route within ``limit`` hops and the box."""
    grid = Target("grid6x5", cols=6, rows=5, pcu_lanes=4, pcu_stages=4, pmu_bytes=1024,
                  pmu_banks=4, clock_ghz=1.0, link_capacity=3)  # fmt: skip
    chance = random.Random(7)
    found_some = 0
    for _ in range(60):
        router = Router(grid, spread=True)
        for _ in range(25):  # streams of random weights between random switches
            a = (chance.randint(0, grid.cols), chance.randint(0, grid.rows))
            b = (chance.randint(0, grid.cols), chance.randint(0, grid.rows))
            hops = router.path(a, b, weight=chance.choice([0, 100, 300, 1000]))
            if hops is not None:
                router.take(hops, weight=chance.choice([0, 100, 300, 1000]))
        for _ in range(10):
            a = (chance.randint(0, grid.cols), chance.randint(0, grid.rows))
            b = (chance.randint(0, grid.cols), chance.randint(0, grid.rows))
            limit = abs(a[0] - b[0]) + abs(a[1] - b[1]) + DETOUR_HOPS
            below = chance.choice([1, 200, 600, 2000, 10**6])
            found = router.quieter(a, b, limit, below)
            assert found == _quieter_by_coordinates(router, a, b, limit, below)
            if found is not None:
                assert found[0] == a and found[-1] == b and len(found) - 1 <= limit
                assert router.has_room(found) and router.busiest(found) < below
                found_some += 1
    assert found_some > 100
