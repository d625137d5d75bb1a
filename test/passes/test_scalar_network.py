# ruff: noqa: E501  (IR text in the tests is kept one op a line, as rdu-opt prints it)
"""The scalar network: a stream into a register port (one word, read once when the section
starts) travels the scalar network on a target that has one (``Target.scalar_link_capacity``),
not the vector links. One rule (``runtime.machine.rules.on_scalar_network`` and
``link_loads``) that the placer, emit-pef, the PEF validator and the performance model share."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp
from xdsl.parser import Parser

from compiler.driver import make_context
from compiler.passes import placement
from compiler.passes.emit_pef import module_to_program
from compiler.passes.ir_helpers import section_graph
from compiler.passes.partition_sections import PartitionSections
from compiler.passes.place_and_route import PlaceAndRoute
from compiler.passes.placement import DRAM, Graph, PlacementError, Stream, Unit
from compiler.targets import get_target
from dialects.dataflow import SectionOp
from runtime.fabric import Fabric
from runtime.machine.perf import model_section
from runtime.machine.rules import link_loads, on_scalar_network
from runtime.pef import validate


def scalar_fan(readers: int, scalar: bool) -> Graph:
    """A 0-d PMU loaded from DRAM and read by ``readers`` PCUs, through register ports if
    ``scalar`` (the streams carry PMU 0's value)."""
    units = [Unit('pmu.buffer "lr"', "pmu")] + [
        Unit(f"pcu.unit @r{k}", "pcu") for k in range(readers)
    ]
    streams = [Stream(DRAM, 0)] + [Stream(0, k + 1, 0 if scalar else None) for k in range(readers)]
    return Graph(units, streams)


def test_the_rule() -> None:
    assert on_scalar_network(True, 2) and not on_scalar_network(False, 2)
    assert not on_scalar_network(True, 0)  # no scalar network: on the vector links
    # Two routes of PMU 7's value share a track of the link they both pass; PMU 8's takes
    # another; vector routes count one a route.
    a, b, c = (0, 0), (1, 0), (2, 0)
    vector, scalar = link_loads([((a, b, c), 7), ((a, b), 7), ((a, b), 8), ((a, b), None)])
    assert vector == {(a, b): 1}
    assert scalar == {(a, b): 2, (b, c): 1}


def test_a_scalar_read_by_eight_units_takes_no_vector_link() -> None:
    tiny = get_target("tiny")  # vector links: 2 streams; a slot's switch 8 out at most
    # As vector streams, 9 readers cannot leave the PMU's switch.
    assert placement.fanout_excess(scalar_fan(9, scalar=False), tiny) is not None
    with pytest.raises(PlacementError):
        placement.place_and_route(scalar_fan(9, scalar=False), tiny, section="fan")
    # Through register ports they go on the scalar network, one track a link for lr's value:
    # the graph places, and only the DRAM load is on a vector link.
    graph = scalar_fan(9, scalar=True)
    tiny9 = msgspec.structs.replace(tiny, cols=6, rows=6)  # 18 PCU slots for the 9 readers
    assert placement.fanout_excess(graph, tiny9) is None
    placed = placement.place_and_route(graph, tiny9, section="fan")
    assert placement.check_placement(graph, tiny9, placed) is None
    vector, scalar = link_loads(
        (hops, s.scalar) for s, hops in zip(graph.streams, placed.routes, strict=True)
    )
    assert sum(vector.values()) == len(placed.routes[0]) - 1  # the load's links only
    assert scalar and max(scalar.values()) == 1
    # A target without a scalar network carries them on the vector links, as before.
    none = msgspec.structs.replace(tiny9, scalar_link_capacity=0)
    assert placement.fanout_excess(graph, none) is not None
    assert placement.check_placement(graph, none, placed) is not None


def test_check_placement_counts_the_values_a_scalar_link_carries() -> None:
    # Three 0-d PMUs, each read by one PCU: the link (3, 1) -> (3, 2) carries all three PMUs'
    # values, one more than tiny's scalar links hold; two fit.
    tiny = get_target("tiny")
    units = [Unit(f"s{k}", "pmu") for k in range(3)] + [Unit("r", "pcu")]
    graph = Graph(units, [Stream(k, 3, k) for k in range(3)])
    at = ((1, 0), (2, 1), (3, 0), (3, 3))
    routes = (
        ((1, 0), (2, 0), (3, 0), (3, 1), (3, 2), (3, 3)),
        ((2, 1), (3, 1), (3, 2), (3, 3)),
        ((3, 0), (3, 1), (3, 2), (3, 3)),
    )
    why = placement.check_placement(graph, tiny, placement.Placement(at, routes))
    assert why == "a scalar link carries the values of more than 2 PMUs"
    two = Graph(units[1:], [Stream(k, 2, k) for k in range(2)])
    assert placement.check_placement(two, tiny, placement.Placement(at[1:], routes[1:])) is None


def optimizer_module(readers: int) -> str:
    """An optimizer-like section: ``y{i} = x{i} * lr`` for ``i < readers``, every unit reading
    the 0-d ``lr`` through strides ``[0, 0]`` (a register port)."""
    args = ", ".join(["%lr: tensor<f32>"] + [f"%x{i}: tensor<4x4xf32>" for i in range(readers)])
    names = ", ".join(['"lr"'] + [f'"x{i}"' for i in range(readers)])
    roles = ", ".join(["#dataflow<role hyperparameter>"] + ["#dataflow<role input>"] * readers)
    results = ", ".join(f'"y{i}"' for i in range(readers))
    result_roles = ", ".join(["#dataflow<role output>"] * readers)
    lines = [
        "builtin.module {",
        f"  dataflow.section @forward forward attributes {{arg_names = [{names}], arg_roles = [{roles}], result_names = [{results}], result_roles = [{result_roles}]}} {{",
        f"  ^bb0({args}):",
        '    %lrb = pmu.buffer %lr {name = "lr", tile_bytes = 4 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<f32> -> memref<f32>',
    ]
    for i in range(readers):
        lines += [
            f'    %xb{i} = pmu.buffer %x{i} {{name = "x{i}", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64}} : tensor<4x4xf32> -> memref<4x4xf32>',
            f"    %u{i} = pcu.unit @scale_{i} (%xb{i}, %lrb) space [4, 4] tile [4, 4] lanes 4 ins [#rdu_tile.access<0 : [4, 1]>, #rdu_tile.access<0 : [0, 0]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (memref<4x4xf32>, memref<f32>) -> tensor<4x4xf32> {{",
            "    ^bb0(%a: f32, %c: f32):",
            "      %s = pcu.stage mul(%a, %c) : (f32, f32) -> f32",
            "      pcu.yield %s : f32",
            "    }",
            f'    %yb{i} = pmu.buffer %u{i} {{name = "scale_{i}", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64}} : tensor<4x4xf32> -> memref<4x4xf32>',
        ]
    yields = ", ".join(f"%yb{i}" for i in range(readers))
    types = ", ".join(["memref<4x4xf32>"] * readers)
    lines += [f"    dataflow.yield {yields} : {types}", "  }", "}"]
    return "\n".join(lines)


def grid_target(tmp_path: Path, scalar_link_capacity: int) -> str:
    """An 8 x 8 target file with tiny's figures (2 streams a vector link)."""
    tiny = get_target("tiny")
    path = tmp_path / f"grid{scalar_link_capacity}.toml"
    path.write_text(
        f'name = "grid{scalar_link_capacity}"\ncols = 8\nrows = 8\npcu_lanes = 4\npcu_stages = 4\n'
        f"pmu_bytes = {tiny.pmu_bytes}\npmu_banks = 4\nclock_ghz = 1.0\nlink_capacity = 2\n"
        f"dram_gbps = 4.0\nstream_bytes_per_cycle = 16\n"
        f"scalar_link_capacity = {scalar_link_capacity}\n"
    )
    return str(path)


READERS = 10
"""More readers than the 8 streams the vector links of a slot's switch carry out."""


def compile_section(target: str) -> ModuleOp:
    ctx = make_context()
    module = Parser(ctx, optimizer_module(READERS)).parse_module()
    assert isinstance(module, ModuleOp)
    PartitionSections(target=target).apply(ctx, module)
    PlaceAndRoute(target=target).apply(ctx, module)
    module.verify()
    return module


def test_a_scalar_read_by_ten_units_no_longer_cuts_the_section(tmp_path: Path) -> None:
    # Without a scalar network lr's ten streams leave its PMU on vector links (8 at most): the
    # section is cut. With one, it routes whole.
    without = compile_section(grid_target(tmp_path, 0))
    assert len([op for op in without.walk() if isinstance(op, SectionOp)]) > 1
    path = grid_target(tmp_path, 1)
    module = compile_section(path)
    (section,) = [op for op in module.walk() if isinstance(op, SectionOp)]
    graph = section_graph(section).graph
    assert sum(s.scalar is not None for s in graph.streams) == READERS
    program = module_to_program(module, get_target(path))
    validate(program)
    (pef,) = program.sections
    lr = next(i for i, p in enumerate(pef.pmus) if p.name == "lr")
    scalar = [r for r in pef.routes if r.scalar]
    assert len(scalar) == READERS and all(r.src == ("pmu", lr) for r in scalar)
    assert all(not r.scalar for r in pef.routes if r.src != ("pmu", lr))
    # The numbers are the same as ever.
    rng = np.random.default_rng(0)
    dram = {"lr": np.asarray(0.5, np.float32)}
    for i in range(READERS):
        dram[f"x{i}"] = rng.standard_normal((4, 4), dtype=np.float32)
    Fabric(program).run_section("forward", dram)
    for i in range(READERS):
        np.testing.assert_array_equal(dram[f"y{i}"], dram[f"x{i}"] * np.float32(0.5))
    # The model counts no scalar route on a vector link: the links used are the vector
    # routes' only.
    m = model_section(pef, program.meta)
    vector_links = {
        (tuple(a), tuple(b))
        for r in pef.routes
        if not r.scalar
        for a, b in zip(r.hops, r.hops[1:], strict=False)
    }
    assert m.links_used == len(vector_links)
