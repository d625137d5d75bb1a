"""The placement attributes (``#pmu.route``, ``#pmu.placement``, ``#pcu.stream``,
``#pcu.placement``, ``#pcu.section_placement``): their text round-trips, and a malformed one is
refused, when parsed or built, with a message saying what is wrong. (How a placement must fit
its op is in the lit tests ``test/dialects/pcu/invalid.mlir`` and
``test/dialects/pmu/invalid.mlir``.)"""

from __future__ import annotations

import pytest
from xdsl.context import Context
from xdsl.dialects.builtin import Builtin
from xdsl.ir import Attribute
from xdsl.parser import Parser
from xdsl.utils.exceptions import ParseError, VerifyException

from dialects import all_dialects
from dialects.pcu import PlacementAttr, StreamAttr
from dialects.pmu import BufferPlacementAttr, RouteAttr


def context() -> Context:
    ctx = Context()
    ctx.load_dialect(Builtin)
    for name, factory in all_dialects().items():
        ctx.register_dialect(name, factory)
    return ctx


def parse(text: str) -> Attribute:
    return Parser(context(), text).parse_attribute()


@pytest.mark.parametrize(
    "text",
    [
        "#pmu.route<(0, 1)>",
        "#pmu.route<(0, 1) -> (0, 0) -> (1, 0)>",
        "#pmu.placement<at (1, 0)>",
        "#pmu.placement<at (1, 0), fill (0, 0) -> (1, 0), store (1, 0) -> (0, 0)>",
        "#pmu.placement<at [(2, 1), (3, 2)], store (2, 1) -> (1, 1) -> (0, 1)>",
        "#pcu.stream<port 1 to copies [0, 2] via (1, 2) -> (1, 1) -> (0, 1) -> (0, 0)>",
        "#pcu.placement<at (0, 0)>",
        "#pcu.placement<at (0, 2), routes [(0, 1) -> (0, 2), (0, 3) -> (0, 2)]>",
        "#pcu.placement<at [(0, 0), (2, 0)], streams [port 0 to copies [0, 1] via (1, 0) -> "
        "(0, 0) -> (1, 0) -> (2, 0)], out_routes [(0, 0) -> (1, 0), (2, 0) -> (1, 0)]>",
        "#pcu.section_placement<at [(1, 0), (2, 0)], routes [(0, 0) -> (1, 0), (1, 0) -> (2, 0)]>",
    ],
)
def test_text_round_trips(text: str) -> None:
    attr = parse(text)
    assert str(attr) == text
    assert parse(str(attr)) == attr


def test_fields_read_back_as_coordinates() -> None:
    buffer = parse("#pmu.placement<at [(1, 0), (3, 0)], store (1, 0) -> (0, 0)>")
    assert isinstance(buffer, BufferPlacementAttr)
    assert buffer.slots == ((1, 0), (3, 0))
    assert buffer.fill_route is None
    assert buffer.store_route == RouteAttr([(1, 0), (0, 0)])
    unit = parse(
        "#pcu.placement<at [(0, 0), (2, 0)], streams [port 0 to copies [1, 0] via (2, 0) -> "
        "(1, 0) -> (0, 0)], out_routes [(0, 0) -> (1, 0), (2, 0) -> (1, 0)]>"
    )
    assert isinstance(unit, PlacementAttr) and unit.is_parallel
    (stream,) = unit.streams.data
    assert (stream.port.data, stream.copy_values) == (0, (1, 0))
    assert stream.route.hops == ((2, 0), (1, 0), (0, 0))
    assert [r.hops for r in unit.out_routes.data] == [((0, 0), (1, 0)), ((2, 0), (1, 0))]
    assert unit == PlacementAttr(
        [(0, 0), (2, 0)],
        streams=[StreamAttr(0, [1, 0], RouteAttr([(2, 0), (1, 0), (0, 0)]))],
        out_routes=[RouteAttr([(0, 0), (1, 0)]), RouteAttr([(2, 0), (1, 0)])],
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("#pmu.route<>", "'(' expected"),
        ("#pmu.route<(0, 1, 2)>", "')' expected"),
        ("#pmu.route<(0, 1) -> (0, 3)>", "pmu.route: hop 1 (0, 3) is not adjacent to hop 0 (0, 1)"),
        ("#pmu.route<(0, 0) -> (1, 1)>", "pmu.route: hop 1 (1, 1) is not adjacent to hop 0 (0, 0)"),
        ("#pmu.route<(0, 0) -> (-1, 0)>", "pmu.route: (0, 0) -> (-1, 0) leaves the grid"),
        ("#pmu.placement<fill (0, 0)>", "Expected 'at' (pmu.placement starts with its slots)"),
        ("#pmu.placement<at (1)>", "Expected ','"),
        ("#pmu.placement<at []>", "'(' expected"),
        ("#pmu.placement<at (-1, 0)>", "pmu.placement: slot (-1, 0) is off the grid (negative)"),
        (
            "#pmu.placement<at [(1, 0), (2, 0), (1, 0)]>",
            "pmu.placement: 'at' lists a slot twice: [(1, 0), (2, 0), (1, 0)]",
        ),
        (
            "#pmu.placement<at (1, 0), fill (0, 0) -> (1, 0), fill (0, 0)>",
            "pmu.placement: 'fill' given twice",
        ),
        (
            "#pmu.placement<at (1, 0), route (0, 0)>",
            "Expected one of 'fill', 'store' (a field of pmu.placement)",
        ),
        (
            "#pmu.placement<at (1, 0), fill (0, 0) -> (2, 0)>",
            "pmu.route: hop 1 (2, 0) is not adjacent to hop 0 (0, 0)",
        ),
        ("#pcu.stream<to copies [0] via (0, 0)>", "Expected 'port' (a pcu.stream starts"),
        ("#pcu.stream<port -1 to copies [0] via (0, 0)>", "pcu.stream: port -1 must be >= 0"),
        (
            "#pcu.stream<port 0 to copies [] via (0, 0)>",
            "pcu.stream: copies [] must be distinct copy numbers (>= 0), at least one",
        ),
        (
            "#pcu.stream<port 0 to copies [1, 1] via (0, 0)>",
            "pcu.stream: copies [1, 1] must be distinct copy numbers (>= 0), at least one",
        ),
        (
            "#pcu.placement<at [(0, 0), (2, 0)]>",
            "pcu.placement: 2 slots but no streams and out_routes (one PCU has one slot and "
            "routes; a parallel unit's copies have streams and out_routes)",
        ),
        (
            "#pcu.placement<at (0, 0), routes [(1, 0) -> (0, 0)], out_routes [(0, 0) -> (1, 0)]>",
            "pcu.placement: routes (one PCU) and streams or out_routes (a parallel unit) both "
            "given",
        ),
        (
            "#pcu.placement<at [(0, 0), (2, 0)], out_routes [(0, 0) -> (1, 0)]>",
            "pcu.placement: 1 out_routes for 2 copies (one a copy)",
        ),
        (
            "#pcu.placement<at (0, 0), streams [port 0 to copies [0, 1] via (1, 0) -> (0, 0)], "
            "out_routes [(0, 0) -> (1, 0)]>",
            "pcu.placement: a stream feeds copy 1, there are 1 copies",
        ),
        (
            "#pcu.placement<at (0, 0), streams [port 0 to copies [0, 0] via (1, 0) -> (0, 0)]>",
            "pcu.stream: copies [0, 0] must be distinct copy numbers",
        ),
        (
            "#pcu.placement<at (0, 0), routes [(1, 0) -> (0, 0)], routes []>",
            "pcu.placement: 'routes' given twice",
        ),
        (
            "#pcu.placement<at (0, 0), route [(1, 0) -> (0, 0)]>",
            "Expected one of 'out_routes', 'routes', 'streams' (a field of pcu.placement)",
        ),
        ("#pcu.placement<at (0, 0), routes [(1, 0), (0, 0) -> (0, 2)]>", "is not adjacent"),
        (
            "#pcu.section_placement<at [(1, 0), (1, 0)]>",
            "pcu.section_placement: 'at' lists a slot twice",
        ),
        ("#pcu.section_placement<at (1, 0), routes [(0, 0) -> (2, 0)]>", "is not adjacent"),
    ],
)
def test_malformed_text_is_refused(text: str, message: str) -> None:
    with pytest.raises(ParseError) as err:
        parse(text)
    assert message in str(err.value)


def test_malformed_attributes_are_refused_when_built() -> None:
    with pytest.raises(VerifyException, match=r"pmu.route: needs at least one \(x, y\) switch"):
        RouteAttr([])
    with pytest.raises(VerifyException, match=r"hop 2 \(2, 1\) is not adjacent to hop 1"):
        RouteAttr([(0, 0), (1, 0), (2, 1)])
    with pytest.raises(VerifyException, match="pmu.placement: 'at' needs at least one slot"):
        BufferPlacementAttr([])
    with pytest.raises(VerifyException, match="pcu.placement: 1 out_routes for 2 copies"):
        PlacementAttr([(0, 0), (2, 0)], out_routes=[RouteAttr([(0, 0)])])
    with pytest.raises(VerifyException, match="pcu.stream: port -2 must be >= 0"):
        StreamAttr(-2, [0], RouteAttr([(0, 0)]))


def test_placed_takes_a_unit_placement() -> None:
    text = """
    "builtin.module"() ({
    ^bb0(%a: memref<4xf32>):
      %u = pcu.unit @u (%a) space [4] tile [4] lanes 4 ins [#rdu_tile.access<0 : [1]>]
          out #rdu_tile.access<0 : [1]> combiner "none" placed #pmu.placement<at (0, 0)>
          : (memref<4xf32>) -> tensor<4xf32> {
      ^bb1(%x: f32):
        pcu.yield %x : f32
      }
    }) : () -> ()
    """
    with pytest.raises(ParseError, match=r"'placed' takes a #pcu.placement<...>"):
        Parser(context(), text).parse_module()
