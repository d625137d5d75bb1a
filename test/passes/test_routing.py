"""The router both placers share (compiler/passes/routing.py), without IR."""

from __future__ import annotations

from compiler.passes.routing import Router, link_usage, links, xy_path, yx_path
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
