# ruff: noqa: E501  (IR text in the tests is kept one op a line, as rdu-opt prints it)
"""Where partition-sections cuts: the fan-out bound that rules pieces out without placing them,
the look-up of placements that failed, and the search for the longest piece that routes."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import pytest
from test_sections import SCALED_MATMUL
from xdsl.dialects.builtin import ModuleOp
from xdsl.parser import Parser
from xdsl.utils.exceptions import PassFailedException

from compiler.driver import make_context
from compiler.passes import partition_sections, placement
from compiler.passes.assign_pmus import AssignPmus
from compiler.passes.emit_pef import module_to_program
from compiler.passes.ir_helpers import section_graph
from compiler.passes.partition_sections import PartitionSections, _Partitioner
from compiler.passes.place_and_route import PlaceAndRoute
from compiler.passes.placement import DRAM, Graph, PlacementError, Stream, Unit
from compiler.passes.split_units import SplitUnits
from compiler.targets import Target, get_target
from dialects.dataflow import SectionOp
from dialects.pcu import UnitOp
from runtime.fabric import Fabric


def fan(readers: int, store: bool) -> Graph:
    """A PMU loaded from DRAM and read by ``readers`` PCUs (and stored back if ``store``)."""
    units = [Unit('pmu.buffer "w"', "pmu")] + [
        Unit(f"pcu.unit @r{k}", "pcu") for k in range(readers)
    ]
    streams = [Stream(DRAM, 0)] + [Stream(0, k + 1) for k in range(readers)]
    return Graph(units, streams + ([Stream(0, DRAM)] if store else []))


def test_fanout_excess_counts_the_links_of_a_slot() -> None:
    tiny = get_target("tiny")  # link capacity 2: 8 streams out of a slot inside the grid
    assert placement.fanout_excess(fan(8, store=False), tiny) is None
    assert placement.fanout_excess(fan(7, store=True), tiny) is None
    # 8 readers and the store: 9 out of a slot inside the grid; in column 0 the store needs no
    # link, but its switch has 3 links (6 streams) for the 8 readers.
    why = placement.fanout_excess(fan(8, store=True), tiny)
    assert (
        why == 'pmu.buffer "w" has 9 streams out and 1 in, the links of a PMU slot carry 8 each way'
    )
    with pytest.raises(PlacementError):
        placement.place_and_route(fan(8, store=True), tiny, section="fan")


def test_fanout_excess_only_rules_out_what_does_not_route() -> None:
    """A necessary condition: every graph it rules out fails to place and route."""
    target = Target("grid", cols=4, rows=4, pcu_lanes=4, pcu_stages=4, pmu_bytes=1024,
                    pmu_banks=4, clock_ghz=1.0, link_capacity=1)  # fmt: skip
    rng = random.Random(0)
    ruled_out = 0
    for case in range(40):
        kinds = ["pmu"] * rng.randint(1, 5) + ["pcu"] * rng.randint(1, 5)
        units = [Unit(f"u{i}", k) for i, k in enumerate(kinds)]  # type: ignore[arg-type]
        ends = [DRAM, *range(len(units))]
        streams = []
        for _ in range(rng.randint(len(units), 3 * len(units))):
            a, b = rng.sample(ends, 2)
            streams.append(Stream(a, b))
        graph = Graph(units, streams)
        if placement.fanout_excess(graph, target) is not None:
            ruled_out += 1
            with pytest.raises(PlacementError):
                placement.place_and_route(graph, target, section=f"case{case}")
    assert ruled_out >= 5


def test_a_graph_that_did_not_route_fails_again_without_annealing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tiny = get_target("tiny")
    graph = fan(8, store=True)
    known: placement.Known = {}
    with pytest.raises(PlacementError) as first:
        placement.place_and_route(graph, tiny, section="first", seed=12345, known=known)

    def no_annealing(*args: object, **kwargs: object) -> None:
        raise AssertionError("annealed again")

    monkeypatch.setattr(placement, "anneal", no_annealing)
    with pytest.raises(PlacementError) as second:
        placement.place_and_route(graph, tiny, section="second", seed=12345, known=known)
    assert str(second.value) == str(first.value).replace("'first'", "'second'")
    with pytest.raises(AssertionError, match="annealed again"):  # the answers are the caller's
        placement.place_and_route(graph, tiny, section="third", seed=12345)


# -- the search for the cut --------------------------------------------------------------------


def relu_chain(n: int) -> str:
    ops = []
    previous = "%b"
    for i in range(n):
        ops.append(
            f"    %u{i} = pcu.unit @relu_{i} ({previous}) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xf32>) -> tensor<8xf32> {{\n"
            "    ^bb0(%a: f32):\n"
            "      %z = pcu.const 0.000000e+00 : f32\n"
            "      %m = pcu.stage max(%a, %z) : (f32, f32) -> f32\n"
            "      pcu.yield %m : f32\n"
            "    }\n"
            f'    %r{i} = pmu.buffer %u{i} {{name = "relu_{i}", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64}} : tensor<8xf32> -> memref<8xf32>'
        )
        previous = f"%r{i}"
    body = "\n".join(ops)
    return f"""
builtin.module {{
  dataflow.section @forward forward attributes {{arg_names = ["input.0"], arg_roles = [#dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]}} {{
  ^bb0(%x: tensor<8xf32>):
    %b = pmu.buffer %x {{name = "input.0", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64}} : tensor<8xf32> -> memref<8xf32>
{body}
    dataflow.yield {previous} : memref<8xf32>
  }}
}}
"""


class Scripted(_Partitioner):
    """A partitioner whose pieces route (or not) as ``answer(units in the piece)`` says."""

    def __init__(self, answer: dict[int, str], n: int = 10) -> None:
        module = Parser(make_context(), relu_chain(n)).parse_module()
        section = next(op for op in module.walk() if isinstance(op, SectionOp))
        super().__init__(section, get_target("plasticine"), 0, 0, {})
        self.answer = answer
        self.asked: list[int] = []

    def judge(
        self,
        k: int,
        i: int,
        j: int,
        ends: dict[UnitOp, int],
        found: dict[int, SectionOp | placement.Placement],
        counts: object = None,
    ) -> partition_sections.Verdict:
        self.asked.append(j - i)
        answer = self.answer[j - i]
        if answer == "routes":
            found[j] = self.build(k, i, j, ends)
        return answer  # type: ignore[return-value]


def answers(longest: int, beyond: str, n: int = 10) -> dict[int, str]:
    return {size: "routes" if size <= longest else beyond for size in range(1, n + 1)}


def test_the_cut_tries_pieces_from_the_longest_down() -> None:
    scripted = Scripted(answers(8, "unroutable"))
    assert scripted.cut(0, 0, 10, {})[0] == 8
    assert scripted.asked == [10, 9, 8]


def test_pieces_ruled_out_without_placing_them_do_not_count_as_misses() -> None:
    scripted = Scripted(answers(3, "too many streams"))
    assert scripted.cut(0, 0, 10, {})[0] == 3
    assert scripted.asked == [10, 9, 8, 7, 6, 5, 4, 3]


def test_after_three_misses_the_cut_is_bisected() -> None:
    assert partition_sections.SHRINK_MISSES == 3
    for longest in range(1, 8):
        scripted = Scripted(answers(longest, "unroutable"))
        assert scripted.cut(0, 0, 10, {})[0] == longest
        assert scripted.asked[:3] == [10, 9, 8]
        assert len(scripted.asked) <= 3 + 6  # galloping up to 7 units, then bisecting


def test_the_longest_piece_that_fits_is_found_as_a_linear_scan_finds_it() -> None:
    module = Parser(make_context(), relu_chain(20)).parse_module()
    section = next(op for op in module.walk() if isinstance(op, SectionOp))
    partitioner = _Partitioner(section, get_target("tiny"), 0, 0, {})
    for i in range(20):
        j = i + 1
        while j < 20 and partitioner.fits(i, j + 1):
            j += 1
        assert partitioner.most(i) == j
    assert partitioner.most(0) == 7  # 7 PCUs; 8 PMUs: the input's and the seven results'


def test_a_unit_that_routes_nowhere_is_an_error() -> None:
    scripted = Scripted(answers(0, "unroutable"))
    with pytest.raises(PassFailedException, match="pcu.unit @relu_0 cannot be routed alone"):
        scripted.cut(0, 0, 10, {})


# -- a resident tensor whose PMUs its switch cannot all reach ---------------------------------

NARROW = """
name = "narrow"
cols = 6
rows = 4
pcu_lanes = 4
pcu_stages = 2
pmu_bytes = 4096
pmu_banks = 4
clock_ghz = 1.0
link_capacity = 1
dram_gbps = 4.0
stream_bytes_per_cycle = 16
"""


def test_a_resident_tensor_chains_its_pmus_and_stays_with_its_reader(
    tmp_path: Path,
) -> None:
    path = tmp_path / "narrow.toml"
    path.write_text(NARROW)
    target = get_target(str(path))
    ctx = make_context()
    module = Parser(ctx, SCALED_MATMUL).parse_module()
    assert isinstance(module, ModuleOp)
    SplitUnits(target=str(path)).apply(ctx, module)
    AssignPmus(target=str(path)).apply(ctx, module)
    # The scaled ``a`` (32 KiB, 8 PMUs of 4 KiB) is read out of order by the matmul: resident.
    # Its PMUs form a chain (two streams each at most): as a star, its first PMU would send 7
    # streams to the others, past the 4 the links of one slot carry, and ``a`` would have to be
    # cut from its reader.
    (whole,) = [op for op in module.walk() if isinstance(op, SectionOp)]
    sg = section_graph(whole)
    first = next(i for i, op in enumerate(sg.units) if getattr(op, "num_pmus", 1) == 8)
    more = range(len(sg.units), len(sg.graph.units))
    into_more = sorted((s.src, s.dst) for s in sg.graph.streams if s.dst in more)
    assert into_more == list(zip([first, *more][:-1], more, strict=True))
    assert placement.fanout_excess(sg.graph, target) is None
    PartitionSections(target=str(path)).apply(ctx, module)
    PlaceAndRoute(target=str(path)).apply(ctx, module)
    module.verify()
    program = module_to_program(module, target)
    (section,) = program.sections
    assert sorted(p.pmus for p in section.pmus) == [1, 1, 1, 1, 8]
    a = np.random.default_rng(0).standard_normal((64, 128)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((128, 4)).astype(np.float32)
    dram = {"a": a, "b": b}
    fabric = Fabric(program)
    for section in program.sections:
        fabric.run_section(section.name, dram)
    np.testing.assert_allclose(dram["output.0"], (a * 2 + 1) @ b, rtol=1e-5, atol=1e-5)


# -- a piece's streams counted without building it ---------------------------------------------


def piece_graphs_match(module: ModuleOp, target: Target) -> dict[str, int]:
    """Check ``piece_graph`` against ``section_graph`` of the built piece on pieces of every
    section of ``module`` (earlier units cut every 4); count what the pieces had."""
    seen = {"crossing": 0, "more PMUs": 0, "last": 0}
    for section in [op for op in module.walk() if isinstance(op, SectionOp)]:
        cutter = _Partitioner(section, target, 0, 0, {})
        n = len(cutter.units)
        for i in range(0, n, 8):
            ends = {u: min(i, (k // 4 + 1) * 4) for k, u in enumerate(cutter.units[:i])}
            for j in sorted({i + 1, i + 6, n} & set(range(i + 1, n + 1))):
                if any(u.parallel is not None for u in cutter.units[i:j]):
                    continue
                piece_ends = {**ends, **dict.fromkeys(cutter.units[i:j], j)}
                expected = section_graph(cutter.build(0, i, j, piece_ends)).graph
                got = cutter.piece_graph(i, j, piece_ends)
                assert got == expected, (section.sym_name.data, i, j)
                seen["crossing"] += any(k == "unit" for k, _ in cutter.sources(i, j))
                seen["more PMUs"] += any(u.name.endswith("(one more PMU)") for u in got.units)
                seen["last"] += j == n
    return seen


def stream_counts_match(module: ModuleOp, target: Target) -> int:
    """Check ``_StreamCounts``, walked down one unit at a time from the whole section, against
    the streams of ``piece_graph`` at every step, from every 8th unit of every section of
    ``module`` (no parallel unit); the number of pieces compared."""
    compared = 0
    for section in [op for op in module.walk() if isinstance(op, SectionOp)]:
        cutter = _Partitioner(section, target, 0, 0, {})
        n = len(cutter.units)
        if any(u.parallel is not None for u in cutter.units):
            continue
        for i in range(0, n, 8):
            ends = {u: min(i, (k // 4 + 1) * 4) for k, u in enumerate(cutter.units[:i])}
            counts = partition_sections._StreamCounts(cutter, i, n)
            for j in range(n, i, -1):
                if j < n:
                    counts.drop_last()
                piece_ends = {**ends, **dict.fromkeys(cutter.units[i:j], j)}
                graph = cutter.piece_graph(i, j, piece_ends)
                expected = placement.unit_fanouts(graph, target)
                assert sorted(counts.fanouts()) == sorted(expected), (section.sym_name.data, i, j)
                excess = placement.fanout_excess(graph, target) is not None
                assert bool(counts.excess) == excess, (section.sym_name.data, i, j)
                compared += 1
    return compared


def test_a_piece_graph_is_the_graph_of_the_piece_built(tmp_path: Path) -> None:
    """``piece_graph`` (what ``fanout_excess`` rules a piece out by, cloning nothing) is exactly
    ``section_graph`` of the piece ``build`` makes: on the GPT example's sections for ``tiny``
    (arguments read by several units, results of earlier pieces, the last piece's stores), and
    on a resident tensor spanning 8 PMUs. And the streams ``_StreamCounts`` keeps as a piece
    loses its last unit, one at a time, are those of its ``piece_graph`` at every length."""
    module = _gpt_before_sections()
    ctx = make_context()
    seen = piece_graphs_match(module, get_target("tiny"))
    assert seen["crossing"] and seen["last"], seen
    assert stream_counts_match(module, get_target("tiny")) > 100
    path = tmp_path / "narrow.toml"
    path.write_text(NARROW)
    module = Parser(ctx, SCALED_MATMUL).parse_module()
    SplitUnits(target=str(path)).apply(ctx, module)
    AssignPmus(target=str(path)).apply(ctx, module)
    assert piece_graphs_match(module, get_target(str(path)))["more PMUs"]
    assert stream_counts_match(module, get_target(str(path)))


# -- sections planned side by side in child processes ------------------------------------------


def _gpt_before_sections() -> ModuleOp:
    """The GPT example's training IR (one layer, hidden 16) lowered for ``tiny`` up to
    partition-sections: forward, backward and optimizer sections that are all cut."""
    import argparse

    from compiler.frontend import build_dataflow
    from compiler.pipeline import lowering_passes
    from tools.model_file import load_model_file

    root = Path(__file__).resolve().parents[2]
    model_file = load_model_file(str(root / "examples" / "gpt" / "model.py"))
    args = argparse.Namespace(
        seed=0, epoch=0, debug=False, batch_size=2, block_size=8, n_embd=16, n_head=2, n_layer=1,
        dropout=0.0, steps_per_epoch=1,
    )  # fmt: skip
    spec = model_file.spec(model_file.call("model", args), args, inference=False)
    module = build_dataflow(spec, inference=False)
    ctx = make_context()
    for stage, pass_ in lowering_passes("tiny"):
        if stage == "sections":
            break
        pass_.apply(ctx, module)
    return module


@pytest.mark.skipif(not hasattr(os, "fork"), reason="planning in child processes needs os.fork")
def test_sections_planned_in_child_processes_are_cut_as_in_one(
    monkeypatch: pytest.MonkeyPatch, forks: list[int]
) -> None:
    """With ``FORK_UNITS`` at 1, every section but the first is planned in a forked child, and
    the IR after partition-sections is the same text as planned in one process; a child that
    fails is planned again in the parent, with the same IR again."""
    from compiler.ir_text import print_ir

    module = _gpt_before_sections()
    alone = module.clone()
    PartitionSections(target="tiny").apply(make_context(), alone)
    want = print_ir(alone)
    assert want.count("dataflow.section @") > 6  # forward, backward and optimizer cut

    forks.clear()
    monkeypatch.setattr(partition_sections, "FORK_UNITS", 1)
    side_by_side = module.clone()
    PartitionSections(target="tiny").apply(make_context(), side_by_side)
    assert len(forks) == 2  # backward and optimizer (the forward planned here); pieces built here
    assert print_ir(side_by_side) == want

    parent, real_plan = os.getpid(), _Partitioner.plan

    def failing_in_a_child(self: _Partitioner) -> partition_sections.Cuts | None:
        if os.getpid() != parent:
            raise RuntimeError("a child that fails")
        return real_plan(self)

    monkeypatch.setattr(_Partitioner, "plan", failing_in_a_child)
    again = module.clone()
    PartitionSections(target="tiny").apply(make_context(), again)
    assert print_ir(again) == want


@pytest.mark.skipif(not hasattr(os, "fork"), reason="planning in child processes needs os.fork")
def test_plans_are_built_as_their_children_end_and_errors_raised_in_section_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each section's pieces are built as soon as its plan is known: the forward's, planned
    here, first, then the optimizer's and the backward's as their children end (the backward's
    made the slowest), with the same IR as planned in one process; when several sections
    fail, the first one's error is raised, whichever child ended first."""
    from compiler.ir_text import print_ir

    module = _gpt_before_sections()
    alone = module.clone()
    PartitionSections(target="tiny").apply(make_context(), alone)
    want = print_ir(alone)

    parent, real_plan, real_pieces = os.getpid(), _Partitioner.plan, _Partitioner.pieces
    built: list[str] = []

    def backward_slowest(self: _Partitioner) -> partition_sections.Cuts | None:
        if os.getpid() != parent and self.name == "backward":
            time.sleep(1.5)
        return real_plan(self)

    def noted(self: _Partitioner, cuts: partition_sections.Cuts) -> list[SectionOp]:
        built.append(self.name)
        return real_pieces(self, cuts)

    monkeypatch.setattr(partition_sections, "FORK_UNITS", 1)
    monkeypatch.setattr(_Partitioner, "plan", backward_slowest)
    monkeypatch.setattr(_Partitioner, "pieces", noted)
    side_by_side = module.clone()
    PartitionSections(target="tiny").apply(make_context(), side_by_side)
    assert print_ir(side_by_side) == want
    assert built == ["forward", "optimizer", "backward"]

    def failing(self: _Partitioner) -> partition_sections.Cuts | None:
        if self.name == "backward" and os.getpid() != parent:
            time.sleep(1.5)
        if self.name in ("backward", "optimizer"):
            raise RuntimeError(f"{self.name} does not fit")
        return real_plan(self)

    monkeypatch.setattr(_Partitioner, "plan", failing)
    with pytest.raises(RuntimeError, match="backward does not fit"):
        PartitionSections(target="tiny").apply(make_context(), module.clone())
