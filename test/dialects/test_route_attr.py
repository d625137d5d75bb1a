"""``pmu.route_attr``: a ``RouteAttr`` made (and verified) once for equal hops."""

from __future__ import annotations

import pytest
from xdsl.utils.exceptions import VerifyException

from dialects.pmu import RouteAttr, route_attr


def test_equal_hops_give_the_one_route_attribute_a_constructor_gives() -> None:
    hops = ((0, 1), (0, 0), (1, 0))
    made = route_attr(hops)
    assert made == RouteAttr(hops)
    assert made.hops == hops
    assert route_attr([[0, 1], [0, 0], [1, 0]]) is made  # lists too: the same attribute


def test_a_route_that_jumps_is_refused_as_by_the_constructor() -> None:
    with pytest.raises(VerifyException, match="not adjacent"):
        route_attr(((0, 0), (2, 0)))
    with pytest.raises(VerifyException, match="not adjacent"):
        route_attr(((0, 0), (2, 0)))  # not kept: refused again
