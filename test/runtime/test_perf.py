"""The performance model (runtime/machine/perf.py) on hand-built programs, every figure worked out
by hand.

pefkit's programs run on a 16x16 grid (128 PCUs) of PCUs with 16 lanes and 6 stages, one
stream a cycle carrying 64 bytes; its PMUs have 4 banks (``with_banks`` changes that). Units
are placed in the order they are made, along row 0, so a route from slot ``i`` to slot ``j``
takes ``|i - j|`` hops.
"""

from __future__ import annotations

import math

import pytest
from pefkit import (
    TARGET,
    ProgramBuilder,
    chained_overwrite,
    co_resident_relus,
    in_place_update,
    matmul_program,
    parallel_matmul_program,
    replace,
    st,
)

from runtime.machine.perf import (
    Walk,
    bank_cycles,
    first_load_cycles,
    format_report,
    model_section,
    program_models,
    section_counters,
    streamed_bytes,
    unroll_counter,
    walk_start,
)
from runtime.machine.rules import lanes_counter, pipeline_depth
from runtime.machine.targets import peak_flops_per_cycle
from runtime.pef import schema
from runtime.pef.wire import encode_section

PEAK = 128 * 16 * 6 * 2  # pefkit's grid: FLOPs a cycle


def with_banks(program: schema.Program, banks: int, skews: dict[str, int] | None = None):
    """``program`` with every PMU of ``banks`` banks (and the given bank skews, by PMU name)."""
    skews = skews or {}
    sections = []
    for s in program.sections:
        pmus = [replace(p, banks=banks, bank_skew=skews.get(p.name, 0)) for p in s.pmus]
        sections.append(replace(s, pmus=pmus))
    return replace(program, sections=sections)


def with_target(program: schema.Program, **changes: object) -> schema.Program:
    meta = replace(program.meta, target=replace(program.meta.target, **changes))
    return replace(program, meta=meta)


def relu_program(rows: int = 64, cols: int = 16, dtype: str = "f32") -> schema.Program:
    """forward: y = max(x, 0) over [rows, cols]: PMU x at slot 0, PMU y at 1, the PCU at 2."""
    p = ProgramBuilder(inference=True)
    p.symbol("x", [rows, cols], dtype)
    p.symbol("y", [rows, cols], dtype, role="output")
    s = p.section("forward")
    x = s.load("x")
    zero = st("const", dtype=dtype, imm=0.0 if dtype == "f32" else 0)
    y = s.pcu("relu", [rows, cols], [(x, 0, [cols, 1])], [zero, st("max", 0, 1, dtype=dtype)],
              [rows, cols], dtype=dtype)  # fmt: skip
    s.store("y", y)
    return p.build()


def model(program: schema.Program):
    return model_section(program.sections[0], program.meta)


def test_counters_of_a_unit() -> None:
    assert lanes_counter([64, 16], [16, 1]) == 1
    assert lanes_counter([16, 1], [1, 1]) == 0  # an extent-1 counter gets no lanes
    assert lanes_counter([4, 16, 8], [16, 1, 0]) == 1  # k is reduced
    assert unroll_counter([4, 16, 8], [16, 1, 0], 1) == 0  # the rows of a matmul
    assert unroll_counter([64, 16], [16, 1], 1) == -1  # no reduction, no unroll
    assert pipeline_depth(["mul"], "add", "mul") == 1  # a multiply-add
    assert pipeline_depth(["const", "max"], "none", "max") == 1  # constants are free
    assert pipeline_depth(["exp"], "add", "exp") == 2  # an accumulate of its own
    assert pipeline_depth([], "add", None, tree_width=16) == 5  # + the 4-level lane tree


def test_bank_cycles() -> None:
    assert bank_cycles([(1, 16)], 16) == 1  # a row: one element a bank
    assert bank_cycles([(2, 16)], 16) == 2  # every other bank
    assert bank_cycles([(64, 16)], 16) == 16  # a column of a 64-wide matrix: one bank
    assert bank_cycles([(64, 16)], 16, skew=64) == 1  # skewed: spread again
    assert bank_cycles([(1, 16)], 16, skew=64) == 1  # and rows stay spread
    assert bank_cycles([(1, 16)], 4) == 4  # 16 elements from 4 banks
    assert bank_cycles([], 16) == 1  # one element


def test_elementwise_unit() -> None:
    m = model(with_banks(relu_program(), 16))
    (u,) = m.units
    # 16 lanes over the 16 columns, 64 rows: 64 vectors, each a 64-byte stream from 16 banks.
    assert (u.vectors, u.ii, u.unroll, u.depth, u.passes) == (64, 1, 1, 1, 1)
    assert u.out_vectors == 64
    assert u.fill == 6 + 2  # the pipeline, and the route from PMU x (slot 0) to slot 2
    assert u.cycles == 64 + 8 and u.bound == "compute"
    assert u.flops == 64 * 16  # one max a point
    assert m.cycles == 72 and m.bound == "compute"
    assert m.pmu_cycles == 64  # each PMU busy one cycle a vector
    assert (m.traffic.bytes_in, m.traffic.bytes_out, m.traffic.spilled) == (4096, 4096, 0)
    assert m.dram_cycles == 0  # pefkit's target gives no DRAM bandwidth
    assert m.fraction_of_peak == pytest.approx(1024 / (72 * PEAK))
    assert (m.pcus_used, m.pmus_used, m.pcus_available, m.pmus_available) == (1, 2, 128, 128)
    # x -> PCU: 2 links, PCU -> y: 1, the store y -> DRAM: 1 (the load of x takes none).
    assert m.links_used == 4
    assert m.links_available == 2 * (16 * 17 + 16 * 17)


def test_four_banks_make_a_vector_take_four_cycles() -> None:
    (u,) = model(relu_program()).units  # pefkit's 4-bank PMUs
    assert (u.ii, u.bound) == (4, "banks")
    assert u.cycles == 64 * 4 + 8


def test_wide_elements_are_stream_bound() -> None:
    (u,) = model(with_banks(relu_program(dtype="i64"), 16)).units
    # 16 lanes of 8 bytes = 128 bytes a vector, 64 bytes a cycle on the stream.
    assert (u.ii, u.bound) == (2, "stream")
    assert u.cycles == 64 * 2 + 8


def test_a_body_deeper_than_the_pipeline_takes_passes() -> None:
    p = ProgramBuilder(inference=True)
    p.symbol("x", [16])
    p.symbol("y", [16], role="output")
    s = p.section("forward")
    x = s.load("x")
    stages = [st("add", 0, 0)] + [st("add", 1 + i, 0) for i in range(6)]  # 7 adds
    s.store("y", s.pcu("chain", [16], [(x, 0, [1])], stages, [16]))
    (u,) = model(with_banks(p.build(), 16)).units
    assert (u.depth, u.passes, u.ii) == (7, 2, 2)
    assert u.fill == 2 * 6 + 2
    assert u.flops == 16 * 7


def test_matmul_unrolls_its_rows_down_the_pipeline() -> None:
    # out[4, 16] = a[4, 8] @ b[8, 16], space (m, n, k): lanes over n, the 4 rows m unrolled
    # down the 6 stages (one multiply-add each), k accumulated: 8 vectors.
    m = model(matmul_program(4, 8, 16))
    (u,) = m.units
    assert (u.unroll, u.vectors, u.depth) == (4, 8, 1)
    # 4 banks: a's 4 rows (stride 8) all fall in bank 0, b's 16 columns take 4 cycles.
    assert [p.bank_cycles for p in u.ports] == [4, 4, 16]
    assert (u.ii, u.out_vectors, u.fill) == (4, 1, 6 + 3)
    assert u.cycles == 8 * 4 + 9
    assert u.flops == 4 * 16 * 8 * 2

    # 16 banks, and a skewed by its row length: every vector in one cycle.
    m = model(with_banks(matmul_program(4, 8, 16), 16, {"a": 8}))
    (u,) = m.units
    assert [p.bank_cycles for p in u.ports] == [1, 1, 4]
    assert u.ii == 1
    # the output: 4 rows x 16 columns once, 256 bytes = 4 stream cycles.
    assert u.steady == max(8 * 1, 1 * 4)
    assert m.cycles == 8 + 9


def test_a_sum_unrolls_only_as_far_as_its_stream_carries_it() -> None:
    # A layer norm's sum: x[4, 16, 48] summed over its 48 features, space (b, t, f): lanes over
    # the 16 tokens t (the output's stride-1 counter), f reduced, b the unroll counter. Four
    # rows unrolled would read 4 x 16 f32 a vector, 256 bytes, four cycles of the 64-byte
    # stream: 48 vectors x 4 = 192 cycles, as many as 192 vectors of one row at a cycle each,
    # so the unit does not unroll, and its first sum is there after 48 cycles, not 192.
    p = ProgramBuilder(inference=True)
    p.symbol("x", [4, 16, 48])
    p.symbol("y", [4, 16], role="output")
    s = p.section("forward")
    x = s.load("x")
    s.store("y", s.pcu("sum", [4, 16, 48], [(x, 0, [768, 48, 1])], [], [4, 16], combiner="add"))
    (u,) = model(with_banks(p.build(), 16, {"x": 48})).units
    assert (u.unroll, u.vectors, u.ii) == (1, 192, 1)
    assert u.first_vectors * u.ii == 48
    assert u.steady == 192


def test_parallel_matmul_is_one_copy_plus_the_longest_multicast_route() -> None:
    # out[8, 32] = a[8, 8] @ b[8, 32] in 4 copies (parallel [2, 2, 1]), each over a block of
    # (4, 16, 8): 16 columns on the lanes, its 4 rows unrolled, 8 vectors (32 on one PCU).
    skews = {"a": 8}
    one = model(with_banks(matmul_program(8, 8, 32), 16, skews)).units[0]
    assert one.vectors == 2 * 2 * 8
    m = model(with_banks(parallel_matmul_program(8, 8, 32), 16, skews))
    (u,) = m.units
    assert (u.copies, u.lanes, u.unroll, u.vectors) == (4, 16, 4, 8)
    # a's 4 rows skewed into distinct banks, b's 16 columns too; the output block (4 rows of
    # 16) puts 4 elements in every bank and takes 4 stream cycles (256 bytes).
    assert [p.bank_cycles for p in u.ports] == [1, 1, 4]
    assert (u.ii, u.out_vectors, u.steady) == (1, 1, max(8 * 1, 1 * 4))
    # fill: 6 stages and the longest route in, a's stream from [0, 0] past copy 3 at [6, 0].
    assert u.fill == 6 + 6
    assert u.flops == 8 * 32 * 8 * 2  # the whole space
    assert m.pcus_used == 4
    assert m.compute_cycles == 8 + 12 and m.cycles == 20
    # banks: a and b feed 2 multicast streams each, 8 vectors of 1 cycle: 16 cycles; the out
    # PMU takes 4 copies' one vector of 4 cycles: 16.
    assert m.pmu_cycles == 16


def test_fill_of_a_chain_adds_up() -> None:
    p = ProgramBuilder(inference=True)
    p.symbol("x", [16])
    p.symbol("z", [16], role="output")
    s = p.section("forward")
    x = s.load("x")  # slot 0
    y = s.pcu("neg", [16], [(x, 0, [1])], [st("neg", 0)], [16])  # PMU slot 1, PCU slot 2
    z = s.pcu("exp", [16], [(y, 0, [1])], [st("exp", 0)], [16])  # PMU slot 3, PCU slot 4
    s.store("z", z)
    m = model(with_banks(p.build(), 16))
    first, second = m.units
    assert (first.fill, second.fill) == (6 + 2, 6 + 3)
    assert m.fill_cycles == first.fill + second.fill
    assert m.compute_cycles == 1 + m.fill_cycles  # one vector each


def test_dram_bound_section_and_roofline() -> None:
    # 1 GB/s at 1 GHz: a byte a cycle; x in and y out are 8192 bytes.
    program = with_target(with_banks(relu_program(), 16), dram_gbps=1.0)
    m = model(program)
    assert m.dram_cycles == 8192 and m.bound == "dram"
    # Before it runs, the section's configuration (its bytes in the PEF) is read at a byte a cycle.
    config = len(encode_section(program.sections[0]))
    assert m.load_cycles == config and m.cycles == config + 8192
    assert m.fraction_of_peak == pytest.approx(1024 / ((config + 8192) * PEAK))
    assert m.roofline_fraction == pytest.approx(1024 / 8192 * 1.0 / PEAK)
    assert m.fraction_of_peak <= m.roofline_fraction


def test_tensors_larger_than_a_pmu_stream_tile_by_tile() -> None:
    # 64x64x64 with 8 KiB PMUs: each 16 KiB operand is streamed in pefkit's [1, 1, 16] tiles.
    program = with_target(matmul_program(64, 64, 64), pmu_bytes=8192)
    section = program.sections[0]
    pcu = section.pcus[0]
    assert pcu.tile == [1, 1, 16]
    # a[m, k] varies with the innermost (k) tile counter: reloaded for every one of the
    # 64 * 64 * 4 tiles, 16 elements each: a is read 64 times over (once per column n).
    a_bytes = streamed_bytes(pcu, pcu.inputs[0].access.strides, "f32")
    assert a_bytes == 64 * 64 * 4 * 16 * 4 == 64 * (64 * 64 * 4)
    m = model(program)
    assert m.traffic.bytes_in == 2 * a_bytes
    assert m.traffic.bytes_out == 64 * 64 * 4
    # Reuse: with all of k in one tile, a's tile of a row stays while the n tiles go by.
    moved = replace(pcu, tile=[1, 16, 64])
    assert streamed_bytes(moved, [64, 0, 1], "f32") == 64 * 64 * 4  # a read once


def test_bank_words_hold_two_bf16() -> None:
    assert bank_cycles([(1, 32)], 16) == 2  # 32 f32 in 16 banks
    assert bank_cycles([(1, 32)], 16, per_word=2) == 1  # 32 bf16: 16 words, one a bank
    # A column of bf16 (rows of 64): element 64i is word 32i, bank 0 for all...
    assert bank_cycles([(64, 16)], 16, per_word=2) == 16
    # ... unless skewed by the row: word 32i in bank (32i + 64i // 64) % 16 = i % 16.
    assert bank_cycles([(64, 16)], 16, skew=64, per_word=2) == 1
    assert bank_cycles([(0, 1), (1, 4)], 4, per_word=1) == 1  # per_word 1: as before


def bf16_mixed(program: schema.Program) -> schema.Program:
    """``program`` as a ``--precision bf16-mixed`` PEF (its compile flag)."""
    meta = replace(program.meta, compile_flags=["--precision=bf16-mixed"])
    return replace(program, meta=meta)


def test_a_bf16_unit_runs_at_the_targets_bf16_rate() -> None:
    # y = max(x, 0) over [64, 32] bf16, 16 banks, on pefkit's 16 lanes with 32 bf16 lanes: every
    # stream is bf16, so a vector is 32 points of the 32 columns, 64 bytes (one stream cycle),
    # 16 words of two bf16 (one a bank): 64 vectors at II 1, plus the fill (6 stages, 2 hops).
    program = with_banks(relu_program(64, 32, "bf16"), 16)
    (u,) = model(with_target(program, pcu_bf16_lanes=32)).units
    assert (u.lanes, u.vectors, u.ii, u.out_vectors) == (32, 64, 1, 64)
    assert u.cycles == 64 + 8
    # Without a bf16 rate (pcu_bf16_lanes 0): 16 points a vector, 128 vectors.
    (u,) = model(program).units
    assert (u.lanes, u.vectors, u.ii) == (16, 128, 1)
    assert u.cycles == 128 + 8
    # An f32 unit gains nothing from the bf16 rate.
    f32 = with_target(with_banks(relu_program(64, 32, "f32"), 16), pcu_bf16_lanes=32)
    (u,) = model(f32).units
    assert (u.lanes, u.vectors) == (16, 128)


def test_a_bf16_unit_packs_one_element_a_lane_when_that_is_faster() -> None:
    # y = max(x, 0) over [64, 48] bf16 with pefkit's 4 banks: two a lane, a row is 2 vectors of
    # 32 (16 words: 4 a bank, II 4), 64 * 2 * 4 = 512 cycles; one a lane, 3 vectors of 16 (8
    # words, 2 a bank, II 2), 64 * 3 * 2 = 384: the model takes 384 (+ the fill, 8).
    program = with_target(relu_program(64, 48, "bf16"), pcu_bf16_lanes=32)
    (u,) = model(program).units
    assert (u.lanes, u.vectors, u.ii) == (16, 192, 2)
    assert u.cycles == 384 + 8


def test_a_unit_with_an_f32_input_runs_at_the_f32_rate() -> None:
    # y = x + z, x bf16 and z f32, y bf16: the f32 input takes one element a lane, so 16 lanes,
    # 2 * 64 vectors.
    p = ProgramBuilder(inference=True)
    p.symbol("x", [64, 32], "bf16")
    p.symbol("z", [64, 32], "f32")
    p.symbol("y", [64, 32], "bf16", role="output")
    s = p.section("forward")
    x, z = s.load("x"), s.load("z")
    stages = [st("cast", 0, dtype="f32"), st("add", 2, 1), st("cast", 3, dtype="bf16")]
    y = s.pcu("add", [64, 32], [(x, 0, [32, 1]), (z, 0, [32, 1])], stages, [64, 32],
              dtype="bf16")  # fmt: skip
    s.store("y", y)
    program = with_target(with_banks(p.build(), 16), pcu_bf16_lanes=32)
    (u,) = model(program).units
    assert (u.lanes, u.vectors) == (16, 128)


def test_a_bf16_matmul_accumulating_in_f32_runs_at_the_bf16_rate() -> None:
    # out[4, 32] (f32) = a[4, 8] @ b[8, 32], a and b bf16, as bf16-mixed compiles it: both
    # operands widened (a stage each), multiplied and accumulated in f32, depth 3. Space (m, n,
    # k): the bf16 inputs give 32 lanes over n, the 4 rows unrolled 6 // 3 = 2 down the stages,
    # k accumulated: 2 * 8 = 16 vectors. a's 2 rows (stride 8, skewed by 8) in 2 banks, b's 32
    # bf16 columns 16 words in 16 banks: II 1. The output: 4 x 32 f32 in 2 vectors of the 2
    # unrolled rows, 64 f32 each (256 bytes: 4 stream cycles, 4 a bank): 8 cycles, under 16.
    p = ProgramBuilder(inference=True)
    p.symbol("a", [4, 8], "bf16")
    p.symbol("b", [8, 32], "bf16")
    p.symbol("out", [4, 32], "f32", role="output")
    s = p.section("forward")
    a, b = s.load("a"), s.load("b")
    stages = [st("cast", 0, dtype="f32"), st("cast", 1, dtype="f32"), st("mul", 2, 3)]
    out = s.pcu("matmul", [4, 32, 8], [(a, 0, [8, 0, 1]), (b, 0, [0, 1, 32])], stages, [4, 32],
                (0, [32, 1, 0]), combiner="add")  # fmt: skip
    s.store("out", out)
    program = with_target(with_banks(p.build(), 16, {"a": 8}), pcu_bf16_lanes=32)
    (u,) = model(program).units
    assert (u.lanes, u.depth, u.unroll, u.vectors) == (32, 3, 2, 16)
    assert [p.bank_cycles for p in u.ports] == [1, 1, 4]
    assert (u.ii, u.out_vectors, u.ports[-1].stream_cycles) == (1, 2, 4)
    assert u.steady == 16
    # At the f32 rate: 16 lanes, 2 * 2 * 8 = 32 vectors.
    (u,) = model(with_target(program, pcu_bf16_lanes=0)).units
    assert (u.lanes, u.vectors, u.steady) == (16, 32, 32)


def test_a_bf16_pef_is_judged_against_the_bf16_peak() -> None:
    program = with_target(with_banks(relu_program(64, 32, "bf16"), 16), pcu_bf16_lanes=32)
    assert peak_flops_per_cycle(TARGET, "bf16") == PEAK  # no bf16 rate: the f32 one
    assert model(program).peak_flops_per_cycle == PEAK  # an fp32 PEF
    assert model(bf16_mixed(program)).peak_flops_per_cycle == 2 * PEAK
    m = model(bf16_mixed(program))
    assert m.fraction_of_peak == pytest.approx(64 * 32 / (m.cycles * 2 * PEAK))


def test_peak_is_every_stage_of_every_lane() -> None:
    assert peak_flops_per_cycle(TARGET) == PEAK
    plasticine = replace(TARGET, cols=16, rows=8)
    assert peak_flops_per_cycle(plasticine) * 1e9 == pytest.approx(12.3e12, rel=0.01)


def test_counters_and_profile_table() -> None:
    program = with_banks(relu_program(), 16)
    counters = section_counters(program.sections[0], program.meta)
    counters.runs = 3
    assert counters.total_cycles == 3 * 72
    text = format_report({"forward": counters})
    line = next(x for x in text.splitlines() if x.startswith("forward"))
    assert "216" in line and line.rstrip().endswith("3")  # 3 runs of 72 cycles
    assert math.isclose(counters.seconds, 72e-9)


# -- the dependence rules (the module docstring's rules 1, 3, 4 and 5) ----------------------------


def column_sum_then_negate() -> schema.Program:
    """forward: s = x.sum(0) over x [64, 16] (the reduction over the streamed, outermost
    dimension, like dW = X^T dY over the tokens), then z = -s. PMU x at slot 0, PMU s at 1, the
    sum's PCU at 2, PMU z at 3, the negation's PCU at 4."""
    p = ProgramBuilder(inference=True)
    p.symbol("x", [64, 16])
    p.symbol("z", [16], role="output")
    s = p.section("forward")
    x = s.load("x")
    total = s.pcu("colsum", [64, 16], [(x, 0, [16, 1])], [], [16], (0, [0, 1]), combiner="add")
    z = s.pcu("neg", [16], [(total, 0, [1])], [st("neg", 0)], [16])
    s.store("z", z)
    return with_banks(p.build(), 16)


def test_a_reduction_over_the_streamed_dimension_holds_its_consumer_until_it_ends() -> None:
    m = model(column_sum_then_negate())
    colsum, neg = m.units
    # The sum: 16 lanes over the columns, 64 vectors of one cycle (no unroll: no free counter
    # besides the lanes'), an accumulate stage; fill: 6 stages and 2 hops from x.
    assert (colsum.vectors, colsum.ii, colsum.depth, colsum.fill) == (64, 1, 1, 8)
    assert colsum.first_vectors == 64  # its first result needs every row
    assert colsum.cycles == 72
    # The negation: one vector; fill 6 stages and the 3 hops from s (slot 1 to 4).
    assert (neg.vectors, neg.fill, neg.cycles) == (1, 9, 10)
    sum_time, neg_time = m.times
    assert (sum_time.start, sum_time.first, sum_time.end) == (0, 72, 72)
    # s's first element is complete only when the sum ends: its consumer starts then, not a
    # fill after the sum started (as "slowest unit plus fill" had it: 64 + 8 + 9 = 81).
    assert neg_time.start == sum_time.end == 72
    assert neg_time.end == 72 + 10
    assert m.compute_cycles == 82 and m.cycles == 82


def test_a_streaming_consumer_starts_at_its_producers_first_result() -> None:
    # y = -x, z = exp(y) element by element: z reads y in the order y is written, so it starts
    # when y's first vector is out (the pipeline's 6 stages and 2 hops) and ends a fill (6
    # stages and the 3 hops from y) after y's last vector.
    p = ProgramBuilder(inference=True)
    p.symbol("x", [64, 16])
    p.symbol("z", [64, 16], role="output")
    s = p.section("forward")
    x = s.load("x")
    y = s.pcu("neg", [64, 16], [(x, 0, [16, 1])], [st("neg", 0)], [64, 16])
    z = s.pcu("exp", [64, 16], [(y, 0, [16, 1])], [st("exp", 0)], [64, 16])
    s.store("z", z)
    m = model(with_banks(p.build(), 16))
    first, second = m.times
    assert (first.start, first.first, first.end) == (0, 8, 64 + 8)
    assert second.start == 8
    assert second.end == max(8 + 64 + 9, first.end + 9) == 81
    # Read transposed, the same buffer must be complete first: exp starts when neg ends.
    p = ProgramBuilder(inference=True)
    p.symbol("x", [16, 16])
    p.symbol("z", [16, 16], role="output")
    s = p.section("forward")
    x = s.load("x")
    y = s.pcu("neg", [16, 16], [(x, 0, [16, 1])], [st("neg", 0)], [16, 16])
    z = s.pcu("exp", [16, 16], [(y, 0, [1, 16])], [st("exp", 0)], [16, 16])
    s.store("z", z)
    m = model(with_banks(p.build(), 16, {"neg.out": 16}))
    first, second = m.times
    assert second.start == first.end == 16 + 8
    # Read row by row, each row twice (a matmul reading its left operand): the reader's i-th
    # outer iteration touches row i only, so it waits for the first of the 16 rows, written
    # evenly between neg's first result (8) and its end (24): 8 + 16 / 16.
    p = ProgramBuilder(inference=True)
    p.symbol("x", [16, 16])
    p.symbol("z", [16, 2, 16], role="output")
    s = p.section("forward")
    x = s.load("x")
    y = s.pcu("neg", [16, 16], [(x, 0, [16, 1])], [st("neg", 0)], [16, 16])
    z = s.pcu("exp", [16, 2, 16], [(y, 0, [16, 0, 1])], [st("exp", 0)], [16, 2, 16])
    s.store("z", z)
    first, second = model(with_banks(p.build(), 16)).times
    assert (first.first, first.end) == (8, 24)
    assert second.start == 8 + 1


def neg_then_exp(
    rows: int,
    writer: list[int],
    space: list[int],
    strides: list[int],
    reader: list[int],
    offset: int = 0,
) -> schema.Program:
    """y = -x over [rows, 16] by a PCU ``parallel writer``, then z = exp(y) by a PCU over
    ``space`` reading y through ``strides`` from ``offset``, ``parallel reader`` (``[]``: one
    PCU). Slots: x 0, y 1, neg 2, z 3, exp 4; 16 banks."""
    p = ProgramBuilder(inference=True)
    p.symbol("x", [rows, 16])
    p.symbol("z", space, role="output")
    s = p.section("forward")
    x = s.load("x")
    y = s.pcu("neg", [rows, 16], [(x, 0, [16, 1])], [st("neg", 0)], [rows, 16])
    z = s.pcu("exp", space, [(y, offset, strides)], [st("exp", 0)], space)
    s.store("z", z)
    program = with_banks(p.build(), 16)
    section = program.sections[0]
    neg, exp = section.pcus
    pcus = [replace(neg, parallel=writer), replace(exp, parallel=reader)]
    return replace(program, sections=[replace(section, pcus=pcus)])


def test_parallel_units_stream_in_row_blocks() -> None:
    # neg in 4 copies along its rows writes y [64, 16] in 4 runs of 16 rows at once: a copy's
    # 16 vectors of one row, fill 6 stages and 2 hops: 24 cycles; its first result at 8, row
    # l of every run complete at 8 + (l + 1) * (24 - 8) / 16 = 9 + l.
    m = model(neg_then_exp(64, [4, 1], [64, 16], [16, 1], [4, 1]))
    neg, exp = m.units
    assert (neg.copies, neg.steady, neg.fill, neg.cycles) == (4, 16, 8, 24)
    assert (exp.copies, exp.steady, exp.fill, exp.cycles) == (4, 16, 9, 25)
    first, second = m.times
    assert (first.start, first.first, first.end) == (0, 8, 24)
    # exp in 4 copies along the same rows: copy k walks run k a row a cycle, as neg writes it,
    # so it starts at its first row (9) and ends a run and a fill later, 9 + 25: not after
    # neg ends (24 + 25 = 49, as when a parallel reader waited for the whole buffer).
    assert (second.start, second.first, second.end) == (9, 18, 34)
    # One PCU reading the 64 rows in order, a row a cycle: row 16 + l is there at 9 + l, when
    # it gets there (9 + 16 + l), so it starts at 9 too and ends 64 vectors and 9 later.
    _, alone = model(neg_then_exp(64, [4, 1], [64, 16], [16, 1], [])).times
    assert (alone.start, alone.end) == (9, 9 + 64 + 9)
    # Read transposed, the buffer must be complete first.
    _, transposed = model(neg_then_exp(64, [4, 1], [16, 64], [1, 16], [])).times
    assert transposed.start == first.end == 24


def test_a_reader_of_part_of_each_row_streams_behind_its_writer() -> None:
    # exp reads columns 8 to 15 of each of y's 64 rows of 16 (attention reading its keys,
    # columns 48 to 95 of each token's [q | k | v] row): at offset 8 its outer counter still
    # walks one row an iteration, so it reads y in 64 rows as one PCU reading whole rows does:
    # row 16 + l of neg's 4 runs is there at 9 + l, when exp gets there (9 + 16 + l); it
    # starts at 9 and ends 64 vectors and 9 later, not after neg's end (24).
    m = model(neg_then_exp(64, [4, 1], [64, 8], [16, 1], [], offset=8))
    first, second = m.times
    assert first.end == 24 and m.units[1].steady == 64
    assert (second.start, second.end) == (9, 9 + 64 + 9)


def test_a_row_block_straddling_two_runs_waits_for_the_first_to_end() -> None:
    # y [6, 16] written by neg in 3 runs of 2 rows (parallel [3, 1]: 2 vectors, ends at 10,
    # row l of a run at 8 + (l + 1) * 2 / 2 = 9 + l) and read by exp over [3, 32] in 3 copies
    # of one block of 2 rows (2 vectors, fill 9, 11 cycles): copy k's block is run k, there
    # at 10; exp ends at 10 + 11.
    aligned = model(neg_then_exp(6, [3, 1], [3, 32], [32, 1], [3, 1])).times
    assert aligned[0].end == 10 and (aligned[1].start, aligned[1].end) == (10, 21)
    # Written in 2 runs of 3 rows (parallel [2, 1]: 3 vectors, ends at 11, row l at 9 + l),
    # copy 1's block (rows 2 and 3) straddles them: row 2, the end of run 0, is there at 11
    # only, when neg ends; reading row 3 (there at 9) is not enough.
    straddling = model(neg_then_exp(6, [2, 1], [3, 32], [32, 1], [3, 1])).times
    assert straddling[0].end == 11 and (straddling[1].start, straddling[1].end) == (11, 22)


def test_a_reader_walking_leading_counters_flattened_streams_behind_its_writer() -> None:
    # exp over [2, 32, 16] reads y [64, 16] (neg in 4 runs of 16 rows, row l of a run complete
    # at 9 + l, as above) in 64 rows: its two leading counters flattened (``rules.row_walk``),
    # not 2 blocks of 32 rows. Split [1, 4, 1], copy k walks rows 32 b + 8 k + j (b < 2, j < 8)
    # a row a cycle: row 32 b + 8 k + j is row 8 (k % 2) + j of run 2 b + k // 2, there at
    # 9 + 8 (k % 2) + j, reached b * 8 + j cycles after the copy starts: it starts at
    # max(9 + 8 (k % 2) - 8 b) = 17 (copies 1 and 3, b = 0) and ends 25 later, at 42. In 2
    # blocks of 32 rows (each straddling two runs) it waited for neg's end, 24, and ended at 49.
    m = model(neg_then_exp(64, [4, 1], [2, 32, 16], [512, 16, 1], [1, 4, 1]))
    assert m.units[1].cycles == 25
    assert (m.times[1].start, m.times[1].first, m.times[1].end) == (17, 26, 42)
    # Split [2, 2, 1], copy (b, k) walks run 2 b + k row by row: it follows from row 0, at 9.
    aligned = model(neg_then_exp(64, [4, 1], [2, 32, 16], [512, 16, 1], [2, 2, 1]))
    assert (aligned.times[1].start, aligned.times[1].end) == (9, 34)
    # One PCU walks the 64 rows in order, row r reached r cycles in, there at 9 + r % 16.
    alone = model(neg_then_exp(64, [4, 1], [2, 32, 16], [512, 16, 1], []))
    assert (alone.times[1].start, alone.times[1].end) == (9, 9 + 64 + 9)


def test_walk_start_maps_rows_of_either_grain() -> None:
    # Written in 4 rows by 2 copies (rows 0, 1 and 2, 3; a copy's rows there at 10 + 100 (l +
    # 1) / 2: 60 and 110). Read in 2 rows by one copy, 20 cycles a row: each overlaps a
    # written row there at 110, so it starts at 110 (row 1, reached 20 cycles in, is no later).
    assert walk_start(10, 110, Walk((4,), (2,)), Walk((2,), (1,)), 40) == (110, 110)
    # Read in 8 rows by one copy, 5 cycles a row: row r needs written row r // 2, there at
    # 60, 110, 60, 110; row 2 (there at 110, reached 10 cycles in) sets the start, 100; row
    # 0 (60) its first results.
    assert walk_start(10, 110, Walk((4,), (2,)), Walk((8,), (1,)), 40) == (100, 60)
    # Written in address order by one PCU (a DRAM load of 1000 elements): read row r of 8
    # needs element 125 (r + 1) - 1, there at 10 + 12.5 (r + 1) (rounded up); by 2 copies of
    # 4 rows, 10 cycles a row, copy 1's first row (4, there at 73) is the first results, and
    # its last (7, there at 110, reached 30 cycles in) the start, 80.
    assert walk_start(10, 110, Walk((1000,), (1,)), Walk((8,), (2,)), 40) == (80, 73)


def two_readers_of_one_buffer(readers: int) -> schema.Program:
    """forward: ``readers`` PCUs each computing max(x, 0) of x [64, 16] i64 (8 KiB). PMU x at
    slot 0; reader k's output PMU at slot 1 + 2k, its PCU at 2 + 2k."""
    p = ProgramBuilder(inference=True)
    p.symbol("x", [64, 16], "i64")
    s = p.section("forward")
    x = s.load("x")
    for k in range(readers):
        p.symbol(f"y{k}", [64, 16], "i64", role="output")
        zero = st("const", dtype="i64", imm=0)
        y = s.pcu(f"relu{k}", [64, 16], [(x, 0, [16, 1])], [zero, st("max", 0, 1, dtype="i64")],
                  [64, 16], dtype="i64")  # fmt: skip
        s.store(f"y{k}", y)
    return with_banks(p.build(), 16)


def test_streams_on_a_link_share_its_bandwidth() -> None:
    # One reader: a vector of 16 i64 is 128 bytes, 2 cycles of a 64-byte stream: 64 vectors
    # take 128 cycles, and the link from x (slot 0 to 1) carries x's 8192 bytes in as many.
    alone = model(two_readers_of_one_buffer(1))
    assert alone.units[0].ii == 2 and alone.units[0].steady == 128
    assert alone.link_cycles == 8192 // 64 == 128
    assert alone.bound == "compute"  # 128 cycles and the fill
    # Two readers: both streams from x pass the links (0,0)-(1,0)-(2,0), and both stores the
    # link (1,0)-(0,0): 16384 bytes a link, 256 cycles, though each unit alone takes 128 and
    # x's banks are busy 2 x 64 cycles.
    m = model(two_readers_of_one_buffer(2))
    assert max(u.cycles for u in m.units) == 128 + 6 + 4
    assert m.pmu_cycles == 128
    assert m.link_cycles == 2 * 8192 // 64 == 256
    assert m.bound == "link" and m.cycles == 256


def test_loading_a_section_costs_its_bytes_at_dram_bandwidth_plus_a_latency() -> None:
    # 2 GB/s at 2 GHz: a byte a cycle; 100 ns at 2 GHz: 200 cycles.
    program = with_target(with_banks(relu_program(), 16), dram_gbps=2.0, clock_ghz=2.0,
                          config_latency_ns=100.0)  # fmt: skip
    m = model(program)
    config = len(encode_section(program.sections[0]))
    assert m.load_cycles == 200 + config
    # then the section runs: x (4096 bytes) in and y out, a byte a cycle.
    assert m.dram_cycles == 8192 and m.bound == "dram"
    assert m.cycles == 200 + config + 8192


def relu_in_pieces(parallel: list[int], pmus: int) -> schema.Program:
    """``relu_program`` (4 banks) with x loaded into ``pmus`` PMUs (consecutive pieces of its
    addresses) and the PCU ``parallel``, at 64 bytes of DRAM a cycle (a row of x a cycle)."""
    program = with_target(relu_program(), dram_gbps=64.0)
    section = program.sections[0]
    x = replace(section.pmus[0], pmus=pmus)
    relu = replace(section.pcus[0], parallel=parallel)
    pmus_now = [x, *section.pmus[1:]]
    return replace(program, sections=[replace(section, pmus=pmus_now, pcus=[relu])])


def test_a_load_into_several_pmus_fills_its_pieces_at_once_when_its_readers_gain() -> None:
    # x [64, 16] arrives a row a cycle, rows 0..63 complete at 1..64. The ReLU in 4 copies of
    # 16 rows, 4 cycles a row (16 elements from 4 banks): a copy's steady 64, fill 6 + 2 hops.
    m = model(relu_in_pieces([4, 1], 1))
    (u,), (t,) = m.units, m.times
    assert (u.copies, u.steady, u.fill) == (4, 64, 8)
    # x in one PMU, loaded in address order: copy 3 reaches its row l (x's 48 + l, complete
    # at 49 + l) 4l cycles after it starts, so it starts at 49 (l = 0); ends 49 + 72.
    assert (t.start, t.end) == (49, 121)
    # x in 4 PMUs, one a copy's rows: the load fills the 4 pieces at once, each at a quarter
    # of the pace, row l of every piece complete at 4(l + 1): a copy reaching it at 4 + 4l
    # never waits. Every copy starts at 4 and ends 4 + 72 (its last row there at 64).
    (t,) = model(relu_in_pieces([4, 1], 4)).times
    assert (t.start, t.first, t.end) == (4, 12, 76)
    # One PCU reading the rows in order, 4 cycles each: in address order it never waits
    # (start 0); the pieces at once would hold it (row 15 complete at 64, reached at 60). The
    # load keeps address order.
    (t,) = model(relu_in_pieces([], 4)).times
    assert (t.start, t.end) == (0, 256 + 8)


def matmul_then_negate(interleaved: bool) -> schema.Program:
    """y = x @ w ([64, 64] by [64, 16]) on 4 copies splitting its rows (``interleaved``: in
    turn, else in blocks of 16), then z = -y on one PCU reading y's rows in order."""
    p = ProgramBuilder(inference=True)
    p.symbol("x", [64, 64])
    p.symbol("w", [64, 16])
    p.symbol("z", [64, 16], role="output")
    s = p.section("forward")
    x, w = s.load("x"), s.load("w")
    y = s.pcu("matmul", [64, 16, 64], [(x, 0, [64, 0, 1]), (w, 0, [0, 1, 16])],
              [st("mul", 0, 1)], [64, 16], (0, [16, 1, 0]), combiner="add")  # fmt: skip
    z = s.pcu("neg", [64, 16], [(y, 0, [16, 1])], [st("neg", 0)], [64, 16])
    s.store("z", z)
    program = with_banks(p.build(), 16)
    section = program.sections[0]
    matmul = replace(section.pcus[0], parallel=[4, 1, 1], more_at=[[20, 0], [21, 0], [22, 0]],
                     interleaved=interleaved)  # fmt: skip
    return replace(program, sections=[replace(section, pcus=[matmul, section.pcus[1]])])


def test_interleaved_copies_write_their_rows_in_order() -> None:
    # Each copy of the matmul: 16 rows, 192 vectors 6 cycles apart (1152, fill 9); its first
    # result after its first row's 64 vectors (393), its last at 1161. The negation reads y's
    # 64 rows in order, a cycle each (fill 9).
    blocks, turns = model(matmul_then_negate(False)), model(matmul_then_negate(True))
    assert [(t.start, t.first, t.end) for t in blocks.times][0] == (0, 393, 1161)
    assert blocks.units == turns.units and blocks.times[0] == turns.times[0]
    # In blocks, row 15 (copy 0's last) is there only at 1161: the negation reaches it 15
    # cycles after it starts, so it starts at 1146.
    assert (blocks.times[1].start, blocks.times[1].end) == (1146, 1146 + 73)
    # In turn, the copies complete rows 4i..4i+3 at 393 + 48 (i + 1) (16 rows each over the
    # 768 cycles): row r, reached r cycles in, waits least for r = 60 (1161 - 60).
    assert (turns.times[1].start, turns.times[1].end) == (1101, 1101 + 73)


def test_a_routes_hops_delay_only_the_data_it_carries() -> None:
    # b loaded (slot 0), x loaded (1), y = -x (PMU 2, PCU 3), z = y + b (PMU 4, PCU 5): the add
    # reads y over 3 hops and b over 5. Its fill counts the longest: 6 + 5.
    p = ProgramBuilder(inference=True)
    p.symbol("b", [64, 16])
    p.symbol("x", [64, 16])
    p.symbol("z", [64, 16], role="output")
    s = p.section("forward")
    b, x = s.load("b"), s.load("x")
    y = s.pcu("neg", [64, 16], [(x, 0, [16, 1])], [st("neg", 0)], [64, 16])
    z = s.pcu("add", [64, 16], [(y, 0, [16, 1]), (b, 0, [16, 1])], [st("add", 0, 1)],
              [64, 16])  # fmt: skip
    s.store("z", z)
    m = model(with_banks(p.build(), 16))
    neg, add = m.units
    assert (add.steady, add.fill) == (64, 11)
    first, second = m.times
    assert (first.start, first.first, first.end) == (0, 8, 72)
    # b is there from the start; y's first vector at 8 crosses 3 hops, 2 fewer than the fill
    # counts: the add starts at 8 - 2, its first result a fill later, and it ends a fill after
    # y's last vector less those 2 (70 + 11), not 8 + 75 = 83 as when every input took the
    # longest route.
    assert (second.start, second.first, second.end) == (6, 17, 81)


def test_dram_latency_delays_the_first_input_and_the_last_output() -> None:
    # 50 ns at 1 GHz: x's first element 50 cycles after the start, y in DRAM 50 cycles after
    # its PMU is complete; no DRAM bandwidth given (no load or DRAM bound).
    m = model(with_target(with_banks(relu_program(), 16), dram_latency_ns=50.0))
    (t,) = m.times
    assert (t.start, t.end) == (50, 50 + 72)
    assert m.compute_cycles == 50 + 72 + 50 and m.cycles == 172
    # With 1 GB/s (a byte a cycle): x's last byte arrives at 50 + 4096, the unit ends a fill
    # later, y is in DRAM 50 after; the DRAM bound pays the latency once: 50 + 8192.
    program = with_target(with_banks(relu_program(), 16), dram_latency_ns=50.0, dram_gbps=1.0)
    m = model(program)
    (t,) = m.times
    assert t.end == 50 + 4096 + 8
    assert m.compute_cycles == 50 + 4096 + 8 + 50
    assert m.dram_cycles == 50 + 8192 and m.bound == "dram"


def test_co_resident_sections_load_once_and_keep_their_symbols_on_chip() -> None:
    # A byte a cycle of DRAM (2 GB/s at 2 GHz), 200 cycles of configuration latency, 64 bytes a
    # cycle on a stream (16 f32 lanes); x, h and y are 4096 bytes each.
    program = with_target(with_banks(co_resident_relus(), 16), dram_gbps=2.0, clock_ghz=2.0,
                          config_latency_ns=100.0)  # fmt: skip
    first, second = program_models(program)
    assert first.resident and second.resident
    config = [len(encode_section(s)) for s in program.sections]
    assert [first.load_cycles, second.load_cycles] == [200 + config[0], 200 + config[1]]
    # The first section loads x (4096 cycles) and does not store h: the relu ends a fill (8)
    # after x's last byte, the step's cycles leave the load out.
    assert (first.traffic.bytes_in, first.traffic.bytes_out) == (4096, 0)
    assert first.dram_cycles == 4096 and first.compute_cycles == 4096 + 8
    assert first.cycles == 4096 + 8 and first.bound == "compute"
    # Chained (rule 8), the second reads h from the hand-off as the first writes it: the copy
    # follows the writer's first result (8) over the route's 7 hops and ends 7 after it (4104
    # + 7, the writer being slower than the copy's 64 cycles); h's copy is written in address
    # order, as the relu2 reads it, so the relu2 starts at 15, its first result a fill later,
    # and it ends a fill after h's last element: 4111 + 8. No DRAM byte for h; y is stored.
    (t,) = second.times
    assert (t.start, t.first, t.end) == (15, 23, 4119)
    assert second.compute_cycles == 4119
    assert (second.traffic.bytes_in, second.traffic.bytes_out) == (4096 - 4096, 4096)
    # h's PMU: the copy writes 1024 words over 16 banks (64 cycles), the relu reads 64 vectors.
    assert second.pmu_cycles == 64 + 64
    # Each of the hand-off's links carries h's 4096 bytes: 64 cycles at least.
    assert second.link_cycles >= 64
    # The step: the chain ends at 4119, but DRAM moves x and y, 8192 bytes at a byte a cycle:
    # the second section adds 15 to the first's 4104, and the last the rest, bound by DRAM.
    assert second.cycles == 8192 - 4104 and second.bound == "dram"
    # Loaded once a run: both configurations, and no state to load (h is an activation).
    assert first_load_cycles(program, [first, second]) == first.load_cycles + second.load_cycles


def test_a_pmu_on_its_homes_slot_is_read_as_its_writer_writes_it() -> None:
    # As above, but the second section's h PMU sits on the home's slot: no hand-off, so the
    # relu2 reads h where the first relu writes it: from its first element (8), its first
    # result a fill later (6 stages and h's route to it along row 0 from column 1 to 10, 9
    # hops), ending a fill after h's last (4104); no copy in h's PMU banks or links.
    program = with_target(with_banks(co_resident_relus(shared=True), 16), dram_gbps=2.0,
                          clock_ghz=2.0, config_latency_ns=100.0)  # fmt: skip
    _, second = program_models(program)
    (unit,) = second.units
    (t,) = second.times
    assert unit.fill == 6 + 9 and (t.start, t.first, t.end) == (8, 8 + 15, 4104 + 15)
    assert second.traffic.bytes_in == 0 and second.pmu_cycles == 64  # the relu's reads
    assert second.link_cycles == 64  # the relu's 4096 bytes to y's PMU and y's store


def test_chained_sections_overwrite_a_symbol_after_its_earlier_readers_are_done() -> None:
    # Rule 8: y = relu(w), then w = -x in the next section, w kept on chip (its home the
    # second's output), no DRAM bandwidth given (x is there at once). The relu reads a copy of
    # w from the hand-off (9 hops, 64 cycles: there from 9 to 73) and ends at max(9 + 72, 73
    # + 8) = 81. The neg could start at 0, but it overwrites w's home: it starts once the copy
    # is done (73) and ends 72 later.
    program = with_target(with_banks(chained_overwrite(), 16), dram_gbps=0.0)
    first, second = program_models(program)
    assert [(t.start, t.end) for t in first.times] == [(9, 81)]
    assert [(t.start, t.end) for t in second.times] == [(73, 145)]
    assert (first.cycles, second.cycles) == (81, 145 - 81)
    # Read where it lives (a PMU on the home's slot): the neg waits for the relu's end (72).
    program = with_target(with_banks(chained_overwrite(shared=True), 16), dram_gbps=0.0)
    first, second = program_models(program)
    assert [(t.start, t.end) for t in first.times] == [(0, 72)]
    assert [(t.start, t.end) for t in second.times] == [(72, 144)]
    # The home's slot serves the relu's 64 reads and the neg's 64 writes: 128 < 144.
    assert second.bound == "compute" and first.cycles + second.cycles == 144


def test_a_chained_sections_reader_of_a_reduction_starts_after_it_ends() -> None:
    # Rule 8 with rule 1's reductions: h = the column sums of x ([64, 16] summed over the
    # rows, the outer counter: 64 vectors, fill 8) emits only at its end, 72; the next
    # section's relu of h (one vector; fill: 6 stages, 2 hops) reads it through a 7-hop
    # hand-off whose copy (64 bytes: a cycle) starts at 72: h is there at 72 + 1 + 7.
    p = ProgramBuilder(inference=True)
    p.symbol("x", [64, 16])
    p.symbol("h", [16], role="activation")
    p.symbol("y", [16], role="output")
    first = p.section("forward")
    h = first.pcu("sum", [64, 16], [(first.load("x"), 0, [16, 1])], [], [16],
                  (0, [0, 1]), combiner="add")  # fmt: skip
    first.store("h", h)
    second = p.section("forward.1", "forward")
    second._slot = 8
    y = second.pcu("relu", [16], [(second.load("h"), 0, [1])],
                   [st("const", imm=0.0), st("max", 0, 1)], [16])  # fmt: skip
    second.store("y", y)
    handoff = schema.Handoff(section="forward.1", pmu=0, hops=[[x, 0] for x in range(1, 9)])
    entry = schema.ResidentSymbol(symbol=1, section="forward", pmu=1, handoffs=[handoff])
    program = replace(p.build(), resident=schema.Residency(symbols=[entry]))
    first_model, second_model = program_models(with_target(with_banks(program, 16), dram_gbps=0.0))
    (reduce,) = first_model.times
    (relu,) = second_model.times
    assert (reduce.first, reduce.end) == (72, 72)
    assert (relu.start, relu.end) == (72 + 1 + 7, 80 + 1 + 8)


def test_sections_not_co_resident_keep_loading_every_run() -> None:
    program = with_target(with_banks(co_resident_relus(with_resident=False), 16), dram_gbps=2.0,
                          clock_ghz=2.0, config_latency_ns=100.0)  # fmt: skip
    first, second = program_models(program)
    assert not first.resident and not second.resident
    assert first.traffic.bytes_out == 4096 and second.traffic.bytes_in == 4096
    assert first.cycles == first.load_cycles + first.dram_cycles == first.load_cycles + 8192
    assert first_load_cycles(program, [first, second]) == 0


def test_sections_around_pinned_homes_load_every_run_and_keep_their_symbols_on_chip() -> None:
    # As test_co_resident_sections_load_once_and_keep_their_symbols_on_chip, the sections
    # loaded in turn (``co_resident`` false): each run pays its configuration (rule 5), h
    # still moves no DRAM byte, and the first load is the state's alone (none here: h is an
    # activation).
    program = with_target(with_banks(co_resident_relus(), 16), dram_gbps=2.0, clock_ghz=2.0,
                          config_latency_ns=100.0)  # fmt: skip
    assert program.resident is not None
    program = replace(program, resident=replace(program.resident, co_resident=False))
    first, second = program_models(program)
    assert not first.resident and not second.resident
    assert (first.traffic.bytes_out, second.traffic.bytes_in) == (0, 0)
    assert first.cycles == first.load_cycles + 4096 + 8
    assert second.cycles == second.load_cycles + 4096 and second.bound == "dram"
    assert first_load_cycles(program, [first, second]) == 0


def test_an_update_in_place_busies_its_homes_pmu_with_the_old_values_reads() -> None:
    # 16 x 16 f32, 16 lanes: 16 vectors a unit, each 16 consecutive words over 4 banks, 4
    # cycles. The home's PMU serves decay's and update's reads of the old w (64 + 64) and
    # update's writes (64): 192 cycles, against 64 + 64 = 128 for the old w's PMU alone; the
    # old w is there at once (no hand-off), and its PMU is the home's.
    program = in_place_update()
    (model,) = program_models(program)
    assert model.pmu_cycles == 192
    assert model.pmus_used == len(program.sections[0].pmus) - 1
    assert model.times[0].start == 0
