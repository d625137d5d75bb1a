"""The runtime's route checks when it configures a section: every route joins its endpoints'
switches (DRAM's being the left edge of the other end's row), and every stream has a route."""

from __future__ import annotations

import pytest
from pefkit import matmul_program, replace

from runtime.fabric import Fabric
from runtime.pef import PefError, schema

MM = matmul_program(2, 3, 4)
"""PMUs a (slot [0, 0]), b ([1, 0]) and out ([2, 0]), the PCU at [3, 0]; routes: a's load,
b's load, out's fill by the PCU, the PCU's two ports, out's store."""


def with_routes(routes: list[schema.Route]) -> schema.Program:
    section = replace(MM.sections[0], routes=routes)
    return replace(MM, sections=[section])


def route_index(src: tuple[str, int], dst: tuple[str, int]) -> int:
    routes = MM.sections[0].routes
    return next(i for i, r in enumerate(routes) if tuple(r.src) == src and tuple(r.dst) == dst)


def test_pefkit_program_is_routed_end_to_end() -> None:
    Fabric(MM)  # validates
    port = MM.sections[0].routes[route_index(("pmu", 1), ("pcu", 0))]
    assert port.hops[0] == [1, 0] and port.hops[-1] == [3, 0]


def test_route_must_start_at_its_source() -> None:
    routes = list(MM.sections[0].routes)
    i = route_index(("pmu", 1), ("pcu", 0))
    routes[i] = replace(routes[i], hops=[[0, 0], [1, 0], [2, 0], [3, 0]])  # from a's switch
    with pytest.raises(PefError, match=r"route .* starts at switch \[0, 0\], its source's switch"):
        Fabric(with_routes(routes))


def test_route_must_end_at_its_destination() -> None:
    routes = list(MM.sections[0].routes)
    i = route_index(("pmu", 0), ("pcu", 0))
    routes[i] = replace(routes[i], hops=[[0, 0], [1, 0], [2, 0]])  # stops one switch short
    with pytest.raises(PefError, match=r"ends at switch \[2, 0\], its destination's switch is"):
        Fabric(with_routes(routes))


def test_dram_enters_at_the_left_edge_of_the_row() -> None:
    routes = list(MM.sections[0].routes)
    i = route_index(("dram", 1), ("pmu", 1))  # b's load: DRAM at [0, 0], b at [1, 0]
    routes[i] = replace(routes[i], hops=[[1, 1], [1, 0]])  # enters from the row above
    with pytest.raises(PefError, match=r"starts at switch \[1, 1\], its source's switch is \[0, 0"):
        Fabric(with_routes(routes))


def test_every_stream_needs_a_route() -> None:
    routes = list(MM.sections[0].routes)
    del routes[route_index(("pmu", 1), ("pcu", 0))]
    with pytest.raises(PefError, match=r"no route for input 1 of pcu 0 'matmul'"):
        Fabric(with_routes(routes))
    routes = [r for r in MM.sections[0].routes if r.dst[0] != "dram"]
    with pytest.raises(PefError, match=r"no route for the store of pmu 2 .* to 'out'"):
        Fabric(with_routes(routes))
