"""validate(): the semantic checks decode_pef and Fabric run; each names what and where."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest
from pefkit import (
    ProgramBuilder,
    co_resident_relus,
    elementwise,
    in_place_update,
    matmul_program,
    replace,
    st,
)

from runtime.pef import PefError, decode_pef, encode_pef, schema, validate
from runtime.pef.container import pack_sections
from runtime.pef.wire import encode_section


def edit_section(program: schema.Program, **changes: object) -> schema.Program:
    return replace(program, sections=[replace(program.sections[0], **changes)])


def edit_pcu(program: schema.Program, index: int = 0, **changes: object) -> schema.Program:
    section = program.sections[0]
    pcus = list(section.pcus)
    pcus[index] = replace(pcus[index], **changes)
    return edit_section(program, pcus=pcus)


def edit_pmu(program: schema.Program, index: int, **changes: object) -> schema.Program:
    section = program.sections[0]
    pmus = list(section.pmus)
    pmus[index] = replace(pmus[index], **changes)
    return edit_section(program, pmus=pmus)


def edit_route(program: schema.Program, index: int, **changes: object) -> schema.Program:
    routes = list(program.sections[0].routes)
    routes[index] = replace(routes[index], **changes)
    return edit_section(program, routes=routes)


def two_stage_program() -> schema.Program:
    """forward: h = x * 2 (pcu 0), y = h + x (pcu 1)."""
    p = ProgramBuilder(inference=True)
    p.symbol("x", [4, 5])
    p.symbol("y", [4, 5], role="output")
    s = p.section("forward")
    x = s.load("x")
    h = elementwise(s, "double", [4, 5], [(x, [4, 5])], [st("const", imm=2.0), st("mul", 0, 1)])
    y = elementwise(s, "add", [4, 5], [(h, [4, 5]), (x, [4, 5])], [st("add", 0, 1)])
    s.store("y", y)
    return p.build()


MM = matmul_program(2, 3, 4)  # pmus: 0 a [2,3], 1 b [3,4], 2 out [2,4]; pcu 0 over [2, 4, 3]
GRID = MM.meta.target.cols


def _symbols(program: schema.Program, **changes: object) -> schema.Program:
    symbols = list(program.meta.symbols)
    symbols[0] = replace(symbols[0], **changes)
    return replace(program, meta=replace(program.meta, symbols=symbols))


CASES: list[tuple[str, Callable[[], schema.Program], str]] = [
    ("negative dim", lambda: _symbols(MM, shape=[2, -3]), r"symbol 0 'a' has negative dim 1"),
    (
        "route hop outside grid",
        lambda: edit_route(MM, 0, hops=[[0, 0], [-1, 0]]),
        r"route 0 \(dram 0 -> pmu 0\): hop 1 \[-1, 0\] is outside the switch grid",
    ),
    (
        "route hop past the last switch",
        lambda: edit_route(MM, 0, hops=[[GRID, 0], [GRID + 1, 0]]),
        rf"hop 1 \[{GRID + 1}, 0\] is outside the switch grid \(0..{GRID} x",
    ),
    (
        "route hops not adjacent",
        lambda: edit_route(MM, 1, hops=[[0, 0], [1, 1]]),
        r"route 1 .*: hop 1 \[1, 1\] is not adjacent to hop 0 \[0, 0\]",
    ),
    (
        "route endpoint out of range",
        lambda: edit_route(MM, 0, dst=("pmu", 9)),
        r"route 0 \(dram 0 -> pmu 9\): dst pmu 9 out of range \(0..2\)",
    ),
    (
        "route endpoint kind",
        lambda: edit_route(MM, 0, src=("disk", 0)),
        r"src kind 'disk' is not pcu, pmu or dram",
    ),
    (
        "link capacity",
        lambda: edit_section(
            MM,
            routes=[
                schema.Route(src=("pmu", 0), dst=("pcu", 0), hops=[[0, 0], [1, 0], [2, 0]])
                for _ in range(MM.meta.target.link_capacity + 1)
            ],
        ),
        r"link \[0, 0\] -> \[1, 0\] carries 65 routes, capacity 64",
    ),
    (
        "unit outside grid",
        lambda: edit_pcu(MM, at=[GRID, 0]),
        rf"pcu 0 'matmul' .*: at \[{GRID}, 0\] is not a slot",
    ),
    (
        "input pmu out of range",
        lambda: edit_pcu(
            MM,
            inputs=[
                schema.Port(pmu=7, access=schema.Access(0, [3, 0, 1])),
                *MM.sections[0].pcus[0].inputs[1:],
            ],
        ),
        r"pcu 0 'matmul' .*: input 0 pmu 7 out of range",
    ),
    (
        "output pmu out of range",
        lambda: edit_pcu(MM, out_pmu=3),
        r"pmu 2 'matmul.out': producer pcu 0 'matmul' .* writes pmu 3, not this one",
    ),
    (
        "section input symbol out of range",
        lambda: edit_section(MM, inputs=[0, 1, 5]),
        r"section 'forward': inputs\[2\] is symbol 5, out of range \(0..2\)",
    ),
    (
        "output symbol out of range",
        lambda: edit_section(MM, outputs=[schema.Output(symbol=3, pmu=2)]),
        r"outputs\[0\] is symbol 3, out of range",
    ),
    (
        "pmu symbol out of range",
        lambda: edit_pmu(MM, 0, symbol=9),
        r"pmu 0 'a': symbol 9, out of range",
    ),
    (
        "pmu loads a symbol that is not an input",
        lambda: edit_pmu(MM, 0, symbol=2),
        r"pmu 0 'a': loads symbol 'out', which is not among the section's inputs",
    ),
    (
        "pmu capacity",
        lambda: edit_pmu(MM, 0, tile_bytes=MM.meta.target.pmu_bytes // 2 + 1, nbuf=2),
        r"pmu 0 'a': tile_bytes .* exceeds the PMU capacity 262144",
    ),
    (
        "input access past the end",
        lambda: edit_pcu(
            MM,
            inputs=[
                schema.Port(pmu=0, access=schema.Access(1, [3, 0, 1])),
                MM.sections[0].pcus[0].inputs[1],
            ],
        ),
        r"input 0 reaches addresses 1..6, outside pmu 0 'a' of 6 elements",
    ),
    (
        "input access below 0",
        lambda: edit_pcu(
            MM,
            inputs=[
                schema.Port(pmu=0, access=schema.Access(1, [3, 0, -1])),
                MM.sections[0].pcus[0].inputs[1],
            ],
        ),
        r"input 0 reaches addresses -1..4, outside pmu 0 'a'",
    ),
    (
        "output access",
        lambda: edit_pcu(MM, out=schema.Access(0, [5, 1, 0])),
        r"output reaches addresses 0..8, outside pmu 2 'matmul.out' of 8 elements",
    ),
    (
        "stage arg not earlier",
        lambda: edit_pcu(MM, stages=[st("mul", 0, 2)]),
        r"stage 0 'mul': operand 2 is not an earlier value \(0..1\)",
    ),
    ("unknown opcode", lambda: edit_pcu(MM, stages=[st("fma", 0, 1)]), r"'fma': unknown opcode"),
    (
        "arity",
        lambda: edit_pcu(MM, stages=[st("mul", 0)]),
        r"stage 0 'mul': 1 operands, takes 2",
    ),
    (
        "ill-typed",
        lambda: edit_pcu(MM, stages=[st("lt", 0, 1, dtype="f32")]),
        r"stage 0 'lt' \(f32, f32\) -> f32 is ill-typed",
    ),
    (
        "counter index",
        lambda: edit_pcu(MM, stages=[st("counter", imm=3, dtype="i64"), st("cast", 2)]),
        r"stage 0 'counter': counter 3 is not one of the 3 counters",
    ),
    (
        "result out of range",
        lambda: edit_pcu(MM, result=5),
        r"result 5 is not a value \(0..2\)",
    ),
    (
        "reduction without combiner",
        lambda: edit_pcu(MM, combiner="none"),
        r"counters \[2\] have out stride 0 \(a reduction\) but the combiner is 'none'",
    ),
    (
        "result dtype",
        lambda: edit_pcu(MM, dtype="i64"),
        r"produces i64 into pmu 2 'matmul.out' of f32",
    ),
]


def _non_persistent(program: schema.Program, *entries: tuple[int, str]) -> schema.Program:
    listed = [schema.NonPersistentBuffer(symbol=i, sha256=d) for i, d in entries]
    return replace(program, meta=replace(program.meta, non_persistent=listed))


def _buffer_x() -> schema.Program:
    """two_stage_program with its input ``x`` a buffer (symbol 0)."""
    program = two_stage_program()
    symbols = list(program.meta.symbols)
    symbols[0] = replace(symbols[0], role="buffer")
    return replace(program, meta=replace(program.meta, symbols=symbols))


CASES += [
    (
        "non-persistent out of range",
        lambda: _non_persistent(_buffer_x(), (7, "")),
        r"meta: non_persistent\[0\]: symbol 7",
    ),
    (
        "non-persistent not a buffer",
        lambda: _non_persistent(two_stage_program(), (0, "")),
        r"'x' is not a buffer \(its role is input\)",
    ),
    (
        "non-persistent twice",
        lambda: _non_persistent(_buffer_x(), (0, ""), (0, "")),
        r"lists 'x' twice",
    ),
    (
        "non-persistent digest",
        lambda: _non_persistent(_buffer_x(), (0, "xyz")),
        r"'x' has a malformed sha256 'xyz'",
    ),
]


@pytest.mark.parametrize(
    ("program", "match"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_validate_refuses(program: Callable[[], schema.Program], match: str) -> None:
    built = program()
    with pytest.raises(PefError, match=match) as info:
        validate(built)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(("section 'forward'", "meta:"))


def test_decode_runs_validate() -> None:
    bad = _symbols(MM, shape=[2, -3])
    payloads = [("meta", msgspec.msgpack.encode(bad.meta))] + [
        (s.name, encode_section(s)) for s in bad.sections
    ]
    with pytest.raises(PefError, match="negative dim"):
        decode_pef(pack_sections(payloads, flags=1))


def test_dataflow_order() -> None:
    program = two_stage_program()
    validate(program)
    section = program.sections[0]
    swapped = [section.pcus[1], section.pcus[0]]
    pmus = [replace(p, producer=1 - p.producer) if p.source == "pcu" else p for p in section.pmus]
    bad = edit_section(program, pcus=swapped, pmus=pmus)
    with pytest.raises(
        PefError,
        match=r"pcu 0 'add' .*: input 0 reads pmu 1 'double.out' "
        r"before any earlier PCU writes it",
    ):
        validate(bad)


def test_producer_must_write_the_pmu() -> None:
    program = two_stage_program()
    with pytest.raises(PefError, match=r"pmu 1 'double.out': producer pcu 1 'add' .* writes pmu 2"):
        validate(edit_pmu(program, 1, producer=1))


def test_pcu_cannot_write_a_dram_pmu() -> None:
    with pytest.raises(PefError, match=r"writes pmu 0 'a', loaded from DRAM"):
        program = edit_pcu(MM, out_pmu=0)
        validate(edit_section(program, pmus=program.sections[0].pmus[:2]))


def test_more_stages_than_the_target_is_allowed() -> None:
    stages = [st("const", imm=1.0)] + [st("add", 0, 2)] * 20 + [st("mul", 0, 1)]
    validate(edit_pcu(MM, stages=stages, result=2 + len(stages) - 1))


def _resident(program: schema.Program, **changes: object) -> schema.Program:
    """``program`` with its one resident symbol changed (``changes`` on the entry)."""
    assert program.resident is not None
    entry = replace(program.resident.symbols[0], **changes)
    return replace(program, resident=schema.Residency(symbols=[entry]))


def test_co_resident_sections_validate_and_round_trip() -> None:
    program = co_resident_relus()
    validate(program)
    decoded = decode_pef(encode_pef(program))
    assert decoded.resident == program.resident and decoded.sections == program.sections
    # A PEF without co-residency has no resident section and the same bytes as before.
    plain = co_resident_relus(with_resident=False)
    assert decode_pef(encode_pef(plain)).resident is None


@pytest.mark.parametrize(
    ("change", "match"),
    [
        # the second section's h PMU on the first section's relu slot
        (
            lambda _: co_resident_relus(second_at=2),
            r"slot \[2, 0\] is both section 'forward' pcu 0 'relu''s and section 'forward.1' pmu",
        ),
        (lambda p: _resident(p, symbol=0), "symbol 'x' has role 'input', which crosses DRAM"),
        (lambda p: _resident(p, pmu=0), "its home, section 'forward' pmu 0, is neither"),
        (lambda p: _resident(p, section="backward"), r"symbol 'h' \(home\): no section"),
        (lambda p: _resident(p, handoffs=[]), "pmu 0 loads on-chip symbol 'h' but is neither"),
        (
            lambda p: _resident(
                p, handoffs=[schema.Handoff(section="forward.1", pmu=0, hops=[[1, 0], [3, 0]])]
            ),
            r"hop 1 \[3, 0\] is not adjacent",
        ),
        (
            lambda p: _resident(
                p, handoffs=[schema.Handoff(section="forward.1", pmu=0, hops=[[1, 0], [2, 0]])]
            ),
            r"must go from switch \[1, 0\] \(the home\) to \[8, 0\]",
        ),
        (
            lambda p: _resident(
                p, handoffs=[schema.Handoff(section="forward.1", pmu=1, hops=[[1, 0]])]
            ),
            "pmu 1 is not loaded from 'h'",
        ),
    ],
)
def test_validate_refuses_bad_co_residency(
    change: Callable[[schema.Program], schema.Program], match: str
) -> None:
    with pytest.raises(PefError, match=match):
        validate(change(co_resident_relus()))


def test_a_pmu_on_its_homes_slot_reads_the_symbol_where_it_lives() -> None:
    program = co_resident_relus(shared=True)
    validate(program)
    assert decode_pef(encode_pef(program)).resident == program.resident
    entry = program.resident.symbols[0] if program.resident else None
    assert entry is not None and not entry.handoffs
    elsewhere = _resident(co_resident_relus(), handoffs=[], shared=entry.shared)  # at (8, 0)
    with pytest.raises(PefError, match=r"sits at \[\[8, 0\]\], not on the home's slots"):
        validate(elsewhere)
    with pytest.raises(PefError, match="section 'forward' pmu 0 is not loaded from 'h'"):
        validate(_resident(program, shared=[*entry.shared, schema.SharedPmu("forward", 0)]))
    with pytest.raises(PefError, match="fed twice"):
        validate(_resident(program, shared=[schema.SharedPmu("forward.1", 0)] * 2))


def test_co_resident_routes_share_the_links_capacity() -> None:
    # Each section alone fits a capacity of one route a link; together (with the hand-off
    # along row 0) they do not.
    program = co_resident_relus()
    target = replace(program.meta.target, link_capacity=1)
    with pytest.raises(PefError, match="resident: link .* routes of the co-resident sections"):
        validate(replace(program, meta=replace(program.meta, target=target)))


def _pinned(program: schema.Program) -> schema.Program:
    """``program``'s residency with its sections loaded in turn around pinned homes."""
    assert program.resident is not None
    return replace(program, resident=replace(program.resident, co_resident=False))


def test_sections_loaded_in_turn_may_share_slots_but_not_a_pinned_home() -> None:
    # The second section's h PMU on the first section's relu slot: two co-resident sections
    # cannot both hold it, two sections loaded in turn can (the relu's slot is not a home).
    shared_slot = _pinned(co_resident_relus(second_at=2))
    validate(shared_slot)
    decoded = decode_pef(encode_pef(shared_slot))
    assert decoded.resident is not None and not decoded.resident.co_resident
    # On h's home (slot (1, 0)), another section's PMU would overwrite the symbol it keeps.
    with pytest.raises(
        PefError,
        match=r"section 'forward.1' pmu 0 'h' sits at \[1, 0\], a slot of the pinned home "
        r"section 'forward' pmu 1 'relu.out', whose symbol 'h' its section loads or stores",
    ):
        validate(_pinned(co_resident_relus(second_at=1)))
    # A resident section written before the field (its symbols alone): co-resident, as it was.
    resident = co_resident_relus().resident
    assert resident is not None
    old = msgspec.msgpack.encode([msgspec.to_builtins(resident.symbols)])
    assert msgspec.msgpack.decode(old, type=schema.Residency) == resident


def test_a_section_binding_nothing_to_a_pinned_symbol_may_sit_beside_its_home() -> None:
    # A third section, z = relu(x), neither loads nor stores h: its x PMU may sit on h's home
    # (slot (1, 0)), using the PMU's other addresses, when the two fit the PMU together.
    beside = _pinned(co_resident_relus(third_at=1))
    third = beside.sections[2]
    assert third.pmus[0].at == beside.sections[0].pmus[1].at == [1, 0]
    validate(beside)
    pmu_bytes = beside.meta.target.pmu_bytes
    big = replace(third.pmus[0], tile_bytes=pmu_bytes // 2)  # the whole PMU, double-buffered
    crowded = replace(
        beside, sections=[*beside.sections[:2], replace(third, pmus=[big, *third.pmus[1:]])]
    )
    with pytest.raises(
        PefError,
        match=rf"section 'forward.2' pmu 0 'x' sits at \[1, 0\], a slot of the pinned home "
        rf"section 'forward' pmu 1 'relu.out', and the two do not fit a PMU "
        rf"\(8192 \+ {pmu_bytes} bytes",
    ):
        validate(crowded)
    # Co-resident, the three sections cannot share the slot at all.
    with pytest.raises(PefError, match=r"slot \[1, 0\] is both"):
        validate(co_resident_relus(third_at=1))


def test_an_update_in_place_reads_the_old_value_on_its_homes_slots() -> None:
    # decay = w + g and update = w - decay read the old w where update writes the new one.
    validate(in_place_update())
    with pytest.raises(PefError, match=r"shared PMU 0: in the home's own section 'forward', and "
                       r"not an update in place: pcu 'update': a read of the old value walks it "
                       r"otherwise than the write"):  # fmt: skip
        validate(in_place_update(transposed=True))
