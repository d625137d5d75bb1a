"""Packed routes (runtime/pef/wire.py): a section's routes as the PEF stores them."""

from __future__ import annotations

import msgspec
import pytest
from pefkit import matmul_program, parallel_matmul_program, replace

from runtime.pef import PefError, decode_pef, encode_pef, schema
from runtime.pef.container import pack_sections
from runtime.pef.wire import PackedRoute, encode_section, pack_section, unpack_section

MM = matmul_program(2, 3, 4)


def test_a_route_packs_to_its_first_switch_and_a_letter_a_step() -> None:
    route = schema.Route(src=("pmu", 3), dst=("pcu", 1), hops=[[0, 5], [1, 5], [1, 4], [1, 5]])
    section = replace(MM.sections[0], routes=[route])
    (packed,) = pack_section(section).routes
    assert packed == PackedRoute(src_kind=1, src=3, dst_kind=0, dst=1, start=[0, 5], steps="ENS")
    assert unpack_section(pack_section(section)).routes == [route]
    dram = schema.Route(src=("dram", 0), dst=("pmu", 0), hops=[[0, 0]], scalar=True)
    empty = schema.Route(src=("pcu", 0), dst=("pmu", 1), hops=[], taps=[[0, 1]])
    section = replace(section, routes=[dram, empty])
    assert unpack_section(pack_section(section)) == section


def test_every_example_section_round_trips() -> None:
    for program in (MM, parallel_matmul_program(4, 3, 8)):
        assert decode_pef(encode_pef(program)) == program
        for section in program.sections:
            assert unpack_section(pack_section(section)) == section


def test_packed_routes_are_smaller_than_the_hops_they_stand_for() -> None:
    """What the packing saves on a section of the test grid: the routes' bytes, a third of
    them or more (the figures on the GPT example are in docs/design.md)."""
    section = MM.sections[0]
    hops = msgspec.msgpack.encode(section)  # the same section, its routes as schema.Route arrays
    assert len(encode_section(section)) < len(hops)
    unpacked = sum(len(msgspec.msgpack.encode(r)) for r in section.routes)
    packed = sum(len(msgspec.msgpack.encode(r)) for r in pack_section(section).routes)
    assert packed * 3 <= unpacked * 2


def test_a_route_whose_hops_are_not_adjacent_has_no_packed_form() -> None:
    routes = list(MM.sections[0].routes)
    routes[0] = replace(routes[0], hops=[[0, 0], [2, 0]])
    bad = replace(MM, sections=[replace(MM.sections[0], routes=routes)])
    with pytest.raises(PefError, match=r"^section 'forward': route 0: hop 1 \[2, 0\] is not adj"):
        encode_pef(bad, check=False)
    with pytest.raises(PefError, match=r"route 0 .*: hop 1 \[2, 0\] is not adjacent"):
        encode_pef(bad)  # validate says it first


def _reframed(change) -> bytes:  # noqa: ANN001
    """MM's PEF with its forward section's third packed route changed by ``change``."""
    document = msgspec.to_builtins(pack_section(MM.sections[0]))
    change(document[6][2])  # routes[2]: [src_kind, src, dst_kind, dst, start, steps, taps, scalar]
    meta = msgspec.msgpack.encode(MM.meta)
    payloads = [("meta", meta), ("forward", msgspec.msgpack.encode(document))]
    return pack_sections(payloads, flags=int(MM.meta.inference))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda r: r.__setitem__(5, "EX"),
            r"matching regex '\^\[EWSN\]\*\$' - at `\$.routes\[2\].steps`",
        ),
        (lambda r: r.__setitem__(0, 3), r"Expected `int` <= 2 - at `\$.routes\[2\].src_kind`"),
        (lambda r: r.__setitem__(4, [0, 0, 0]), r"of length <= 2 - at `\$.routes\[2\].start`"),
        (lambda r: r.__setitem__(4, [1]), r"route 2: start \[1\] is not a switch \[x, y\]"),
        (lambda r: r.__setitem__(5, "WWWW"), r"route 2 .*: hop 1 \[-1, 0\] is outside the switch"),
        (lambda r: r.__setitem__(5, r[5][:-1]), r"route 2 .* ends at switch"),
    ],
)
def test_a_corrupted_packed_route_is_refused(change, message: str) -> None:  # noqa: ANN001
    # routes[2] goes from [0, 0] three steps east, into the PCU at [3, 0]
    assert MM.sections[0].routes[2].hops == [[0, 0], [1, 0], [2, 0], [3, 0]]
    with pytest.raises(PefError, match=message):
        decode_pef(_reframed(change))
