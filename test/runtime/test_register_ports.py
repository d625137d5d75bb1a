"""Register ports (``Port.register``): a scalar operand read once when the section starts and
held in a register of the PCU, instead of a stream of vectors from its PMU. One rule
(``runtime.machine.rules.register_problem``), asked by emit-pef, the validator, the emulator
and the performance model; figures worked out by hand (pefkit's target: 16 lanes, 6 stages,
64-byte streams; PMUs of 16 banks here)."""

from __future__ import annotations

import numpy as np
import pytest
from pefkit import ProgramBuilder, replace, st

from runtime.fabric import Fabric
from runtime.machine.perf import model_section, pmu_loads, route_bytes
from runtime.machine.rules import register_problem
from runtime.pef import PefError, decode_pef, encode_pef, schema, validate
from runtime.pef.wire import encode_section

ROWS, COLS = 64, 16


def scaled_program(readers: int, register: bool) -> schema.Program:
    """forward: ``y{i} = x{i} * lr`` for ``i < readers``, every unit reading the one scalar
    ``lr`` (a 0-d tensor) through strides ``[0, 0]``; PMUs of 16 banks."""
    p = ProgramBuilder(inference=True)
    p.symbol("lr", [])
    for i in range(readers):
        p.symbol(f"x{i}", [ROWS, COLS])
        p.symbol(f"y{i}", [ROWS, COLS], role="output")
    s = p.section("forward")
    lr = s.load("lr")
    for i in range(readers):
        x = s.load(f"x{i}")
        y = s.pcu(f"scale{i}", [ROWS, COLS], [(x, 0, [COLS, 1]), (lr, 0, [0, 0])],
                  [st("mul", 0, 1)], [ROWS, COLS])  # fmt: skip
        s.store(f"y{i}", y)
    program = p.build()
    (section,) = program.sections
    pcus = [
        replace(pcu, inputs=[pcu.inputs[0], replace(pcu.inputs[1], register=register)])
        for pcu in section.pcus
    ]
    pmus = [replace(pmu, banks=16) for pmu in section.pmus]
    return replace(program, sections=[replace(section, pcus=pcus, pmus=pmus)])


def test_the_rule() -> None:
    assert register_problem([64, 16], [0, 0], indexed=False) is None
    assert register_problem([1, 16], [5, 0], indexed=False) is None  # extent 1: one address
    assert register_problem([], [], indexed=False) is None
    assert register_problem([64, 16], [16, 0], indexed=False) == (
        "its address moves with counter 0, not one address at every point"
    )
    assert register_problem([64, 16], [0, 0], indexed=True) == "its access is data-dependent"


def test_a_scalar_read_by_four_units_costs_its_pmu_one_read_each() -> None:
    # Streamed: each unit reads lr once a vector, 64 vectors (64 rows of 16 lanes): lr's PMU
    # serves 4 x 64 = 256 vector reads, the section's PMU bound, though each x{i} and y{i}
    # PMU is busy 64 cycles. Its routes carry 64 vectors of one 4-byte element: 256 bytes.
    streamed = scaled_program(4, register=False)
    (section,) = streamed.sections
    m = model_section(section, streamed.meta)
    assert m.pmu_cycles == 4 * 64
    loads = pmu_loads(section, streamed.meta.target)
    carried = route_bytes(section, m.units, streamed.meta.symbols, loads)
    lr_routes = [b for r, b in zip(section.routes, carried, strict=True) if r.src == ("pmu", 0)]
    assert lr_routes == [64 * 4] * 4
    # Registers: one read a unit, 4 cycles of lr's PMU; the bound is the x{i}/y{i} PMUs' 64.
    # Each route carries the one element (4 bytes); the units' II and cycles are unchanged
    # (a scalar port never set them: one element a vector, one bank, 1 cycle).
    held = scaled_program(4, register=True)
    (section,) = held.sections
    r = model_section(section, held.meta)
    assert r.pmu_cycles == 64
    loads = pmu_loads(section, held.meta.target)
    carried = route_bytes(section, r.units, held.meta.symbols, loads)
    lr_routes = [b for r_, b in zip(section.routes, carried, strict=True) if r_.src == ("pmu", 0)]
    assert lr_routes == [4] * 4
    for unit, before in zip(r.units, m.units, strict=True):
        lr_port = unit.ports[1]
        assert lr_port.register and lr_port.cycles == 0
        assert (unit.ii, unit.vectors, unit.cycles) == (before.ii, before.vectors, before.cycles)


def test_a_register_port_waits_for_its_value_to_be_complete() -> None:
    # lr computed by a unit first (lr2 = lr + lr, one point, fill 6 + its route), then read by
    # scale0 as a register: scale0 starts when lr2's writer ends (and lr2 has crossed its
    # route), not at its first result.
    p = ProgramBuilder(inference=True)
    p.symbol("lr", [])
    p.symbol("x", [ROWS, COLS])
    p.symbol("y", [ROWS, COLS], role="output")
    s = p.section("forward")
    lr = s.load("lr")
    x = s.load("x")
    lr2 = s.pcu("double", [], [(lr, 0, [])], [st("add", 0, 0)], [])
    y = s.pcu("scale", [ROWS, COLS], [(x, 0, [COLS, 1]), (lr2, 0, [0, 0])],
              [st("mul", 0, 1)], [ROWS, COLS])  # fmt: skip
    s.store("y", y)
    program = p.build()
    (section,) = program.sections
    scale = section.pcus[1]
    scale = replace(scale, inputs=[scale.inputs[0], replace(scale.inputs[1], register=True)])
    section = replace(section, pcus=[section.pcus[0], scale])
    program = replace(program, sections=[section])
    validate(program)
    m = model_section(section, program.meta)
    double, scaled = m.times
    # The fill counts scale0's longest route in, x's; lr2's value, over a shorter one, is
    # there that many hops sooner (rule 1).
    hops = {r.src[1]: len(r.hops) - 1 for r in section.routes if r.dst == ("pcu", 1)}
    assert hops[1] > hops[2]
    assert scaled.start == double.end - (hops[1] - hops[2])


def test_the_emulator_reads_a_register_once_and_computes_the_same_numbers() -> None:
    rng = np.random.default_rng(0)
    dram = {"lr": np.asarray(0.25, np.float32)}
    for i in range(2):
        dram[f"x{i}"] = rng.standard_normal((ROWS, COLS), dtype=np.float32)
    results = []
    for register in (False, True):
        program = decode_pef(encode_pef(scaled_program(2, register)))
        assert all(pcu.inputs[1].register == register for pcu in program.sections[0].pcus)
        plans = Fabric(program)._plans["forward"].pcus
        assert all(len(plan[0].registers) == register for plan in plans)
        out = dict(dram)
        Fabric(program).run_section("forward", out)
        results.append([out[f"y{i}"] for i in range(2)])
    for i in range(2):
        np.testing.assert_array_equal(results[1][i], dram[f"x{i}"] * np.float32(0.25))
        np.testing.assert_array_equal(results[0][i], results[1][i])


def test_a_port_that_is_not_one_address_cannot_be_a_register() -> None:
    program = scaled_program(1, register=True)
    validate(program)
    (section,) = program.sections
    (pcu,) = section.pcus
    bad = replace(pcu, inputs=[replace(pcu.inputs[0], register=True), pcu.inputs[1]])
    with pytest.raises(PefError, match="input 0 is a register port but its address moves with "
                       "counter 0, not one address at every point") as info:  # fmt: skip
        validate(replace(program, sections=[replace(section, pcus=[bad])]))
    assert "\n" not in str(info.value)


def test_a_register_port_round_trips_through_the_pef() -> None:
    # A port is a stream unless it says otherwise; the flag is kept, set or not.
    port = schema.Port(pmu=1, access=schema.Access(offset=0, strides=[1]))
    assert port.register is False
    for register in (False, True):
        program = scaled_program(1, register=register)
        decoded = decode_pef(encode_pef(program))
        assert decoded == program
        assert any(p.register for p in decoded.sections[0].pcus[0].inputs) is register


def on_scalar_network(program: schema.Program, capacity: int = 1) -> schema.Program:
    """``program`` on a target with a scalar network of ``capacity`` PMUs a link, its routes
    into register ports marked ``scalar``."""
    meta = replace(program.meta, target=replace(program.meta.target, scalar_link_capacity=capacity))
    sections = []
    for section in program.sections:
        registers = {
            (p.pmu, i) for i, pcu in enumerate(section.pcus) for p in pcu.inputs if p.register
        }
        routes = [
            replace(r, scalar=(r.src[0], r.dst[0]) == ("pmu", "pcu")
                    and (r.src[1], r.dst[1]) in registers)
            for r in section.routes
        ]  # fmt: skip
        sections.append(replace(section, routes=routes))
    return replace(program, meta=meta, sections=sections)


def test_a_route_on_the_scalar_network_is_on_no_vector_link() -> None:
    # One unit: lr at (0, 0), x at (1, 0), y's PMU at (2, 0), the PCU at (3, 0), all routes
    # along row 0 (64-byte links). x's load, x's port, the output and the store each move 4096
    # bytes (64 x 16 f32); lr's route its 4 bytes over (0,0) -> (1,0) -> (2,0) -> (3,0). On the
    # vector links it shares each of them with a 4096-byte route: ceil(4100 / 64) = 65
    # cycles. On the scalar network the busiest link moves 4096 bytes: 64 cycles.
    vector = scaled_program(1, register=True)
    validate(vector)
    assert model_section(vector.sections[0], vector.meta).link_cycles == 65
    scalar = on_scalar_network(vector)
    validate(scalar)
    (section,) = scalar.sections
    assert [r.scalar for r in section.routes].count(True) == 1
    assert model_section(section, scalar.meta).link_cycles == 64


def test_the_validator_keeps_scalar_routes_to_register_ports() -> None:
    # lr's two routes (to the PCUs at (3, 0) and (6, 0)) share the links from (0, 0) to
    # (3, 0): one PMU's value, one track, within a capacity of 1.
    program = on_scalar_network(scaled_program(2, register=True))
    validate(program)
    (section,) = program.sections
    lr = [k for k, r in enumerate(section.routes) if r.scalar]

    def with_routes(routes: list[schema.Route], capacity: int = 1) -> schema.Program:
        meta = replace(program.meta, target=replace(program.meta.target,
                                                    scalar_link_capacity=capacity))  # fmt: skip
        return replace(program, meta=meta, sections=[replace(section, routes=routes)])

    # A register port fed over the vector links on a target with a scalar network.
    routes = list(section.routes)
    routes[lr[0]] = replace(routes[lr[0]], scalar=False)
    with pytest.raises(PefError, match=r"no route on the scalar network for input 1 of pcu 0"):
        validate(with_routes(routes))
    # A scalar route on a target without one.
    with pytest.raises(PefError, match=r"is scalar but target 'test' has no scalar network"):
        validate(with_routes(list(section.routes), capacity=0))
    # A scalar route into a port that is not a register.
    x = next(k for k, r in enumerate(section.routes) if r.src == ("pmu", 1) and r.dst[0] == "pcu")
    routes = list(section.routes)
    routes[x] = replace(routes[x], scalar=True)
    with pytest.raises(PefError, match=r"is scalar but pcu 0 .* reads pmu 1 through no register"):
        validate(with_routes(routes))
    # Two PMUs' values (lr's and mu's, both read by one unit) over one scalar link.
    p = ProgramBuilder(inference=True)
    for name in ("lr", "mu"):
        p.symbol(name, [])
    p.symbol("x", [ROWS, COLS])
    p.symbol("y", [ROWS, COLS], role="output")
    s = p.section("forward")
    lr, mu, x = s.load("lr"), s.load("mu"), s.load("x")
    y = s.pcu("scale", [ROWS, COLS], [(x, 0, [COLS, 1]), (lr, 0, [0, 0]), (mu, 0, [0, 0])],
              [st("mul", 0, 1), st("mul", 3, 2)], [ROWS, COLS])  # fmt: skip
    s.store("y", y)
    two = p.build()
    (section,) = two.sections
    (pcu,) = section.pcus
    inputs = [pcu.inputs[0], *(replace(q, register=True) for q in pcu.inputs[1:])]
    two = replace(two, sections=[replace(section, pcus=[replace(pcu, inputs=inputs)])])
    validate(on_scalar_network(two, capacity=2))
    with pytest.raises(PefError, match=r"scalar link \[.*\] carries the values of 2 PMUs, "
                       r"capacity 1") as info:  # fmt: skip
        validate(on_scalar_network(two, capacity=1))
    assert "\n" not in str(info.value)


def test_a_routes_scalar_flag_costs_the_same_byte_set_or_not() -> None:
    # A section's bytes (what loading it costs) are its packed routes' values, no field names:
    # a route on the scalar network is the bytes of the same route on the vector links.
    vector = scaled_program(1, register=True)
    scalar = on_scalar_network(vector)
    assert [r.scalar for r in scalar.sections[0].routes] != [False] * len(scalar.sections[0].routes)
    assert len(encode_section(scalar.sections[0])) == len(encode_section(vector.sections[0]))
    assert decode_pef(encode_pef(scalar)) == scalar
