"""The bytes the placer weighs each stream by (``ir_helpers.section_graph`` with a target) are
the bytes the performance model counts on its route (``runtime.machine.perf.route_bytes``)."""

from __future__ import annotations

from test_scalar_network import optimizer_module
from test_sections import SCALED_MATMUL
from xdsl.dialects.builtin import ModuleOp
from xdsl.parser import Parser

from compiler.driver import make_context
from compiler.passes.assign_pmus import AssignPmus
from compiler.passes.emit_pef import module_to_program
from compiler.passes.ir_helpers import section_graph
from compiler.passes.place_and_route import PlaceAndRoute
from compiler.passes.split_units import SplitUnits
from compiler.targets import get_target
from dialects.dataflow import SectionOp
from runtime.machine.perf import model_section, pmu_loads, route_bytes


def weights_and_bytes(text: str, target: str) -> tuple[list[int], list[int]]:
    ctx = make_context()
    module = Parser(ctx, text).parse_module()
    assert isinstance(module, ModuleOp)
    SplitUnits(target=target).apply(ctx, module)
    AssignPmus(target=target).apply(ctx, module)
    PlaceAndRoute(target=target).apply(ctx, module)
    (section,) = [op for op in module.walk() if isinstance(op, SectionOp)]
    graph = section_graph(section, get_target(target))
    weights = [s.weight for s, sink in zip(graph.graph.streams, graph.sinks, strict=True)
               if sink.kind != "bank"]  # fmt: skip
    program = module_to_program(module, get_target(target))
    (pef,) = program.sections
    m = model_section(pef, program.meta)
    loads = pmu_loads(pef, program.meta.target)
    return sorted(weights), sorted(route_bytes(pef, m.units, program.meta.symbols, loads))


def test_a_matmul_split_in_two_weighs_what_the_model_counts() -> None:
    weights, moved = weights_and_bytes(SCALED_MATMUL, "tiny")
    assert weights == moved
    assert max(weights) > 0


def test_register_ports_weigh_their_one_element() -> None:
    weights, moved = weights_and_bytes(optimizer_module(3), "tiny")
    assert weights == moved
    assert weights.count(4) == 4  # lr's load and its three routes: one f32 each
