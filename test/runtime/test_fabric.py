"""The emulated fabric on hand-built programs, against numpy and torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pefkit import (
    ProgramBuilder,
    broadcast_strides,
    elementwise,
    matmul_program,
    row_major,
    st,
)

from runtime.fabric import OPCODES, Fabric, FabricError, erf
from runtime.machine.opcodes import OPCODES as OPCODE_TABLE
from runtime.pef import PefError, decode_pef, encode_pef

RNG = np.random.default_rng(0)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape, dtype=np.float32)


def run(program, dram: dict[str, np.ndarray], section: str = "forward") -> dict[str, np.ndarray]:
    program = decode_pef(encode_pef(program))  # every test program also round-trips
    Fabric(program).run_section(section, dram)
    return dram


def test_every_opcode_of_the_table_has_an_implementation() -> None:
    assert set(OPCODES) == set(OPCODE_TABLE)
    for name, op in OPCODES.items():
        assert op.arity == OPCODE_TABLE[name].arity
        assert (op.impl is None) == (name in ("const", "counter"))


@pytest.mark.parametrize("transpose_b", [False, True])
def test_matmul(transpose_b: bool) -> None:
    a, b = randn(8, 32), randn(16, 32) if transpose_b else randn(32, 16)
    dram = run(matmul_program(8, 32, 16, transpose_b=transpose_b), {"a": a, "b": b})
    want = a @ (b.T if transpose_b else b)
    assert dram["out"].dtype == np.float32
    np.testing.assert_allclose(dram["out"], want, rtol=1e-5, atol=1e-5)


def test_batched_matmul_with_transposed_operand_and_scaled_output() -> None:
    # out[b, m, n] = sum_k q[b, m, k] * kt[b, n, k] * 0.5  (attention scores)
    B, M, N, K = 3, 5, 7, 8
    p = ProgramBuilder(inference=True)
    p.symbol("q", [B, M, K])
    p.symbol("k", [B, N, K])
    p.symbol("scores", [B, M, N], role="output")
    s = p.section("forward")
    q, k = s.load("q"), s.load("k")
    out = s.pcu(
        "scores",
        [B, M, N, K],
        [(q, 0, [M * K, K, 0, 1]), (k, 0, [N * K, 0, K, 1])],
        [st("mul", 0, 1), st("const", imm=0.5), st("mul", 2, 3)],
        [B, M, N],
        (0, [M * N, N, 1, 0]),
        combiner="add",
    )
    s.store("scores", out)
    qa, ka = randn(B, M, K), randn(B, N, K)
    dram = run(p.build(), {"q": qa, "k": ka})
    np.testing.assert_allclose(dram["scores"], 0.5 * qa @ ka.transpose(0, 2, 1), rtol=1e-5)


def test_contraction_with_a_broadcast_operand_and_a_counter_neither_reads() -> None:
    # out[m] = sum_{j,k} x[m, k] * w[k]   (j is a reduced counter no operand varies over)
    M, J, K = 4, 3, 6
    p = ProgramBuilder(inference=True)
    p.symbol("x", [M, K])
    p.symbol("w", [K])
    p.symbol("y", [M], role="output")
    s = p.section("forward")
    x, w = s.load("x"), s.load("w")
    out = s.pcu(
        "gemv",
        [M, J, K],
        [(x, 0, [K, 0, 1]), (w, 0, [0, 0, 1])],
        [st("mul", 0, 1)],
        [M],
        (0, [1, 0, 0]),
        combiner="add",
    )
    s.store("y", out)
    xa, wa = randn(M, K), randn(K)
    dram = run(p.build(), {"x": xa, "w": wa})
    np.testing.assert_allclose(dram["y"], J * (xa @ wa), rtol=1e-5)


def test_sum_of_squares_is_a_batched_dot() -> None:
    # out[r] = sum_c x[r, c] * x[r, c]
    R, C = 6, 33
    p = ProgramBuilder(inference=True)
    p.symbol("x", [R, C])
    p.symbol("ss", [R], role="output")
    s = p.section("forward")
    x = s.load("x")
    out = s.pcu("ss", [R, C], [(x, 0, [C, 1])], [st("mul", 0, 0)], [R], (0, [1, 0]), combiner="add")
    s.store("ss", out)
    xa = randn(R, C)
    np.testing.assert_allclose(run(p.build(), {"x": xa})["ss"], (xa * xa).sum(1), rtol=1e-5)


def test_sums_over_many_rows_add_in_float64_and_round_once() -> None:
    # out[c] = sum_r x[r, c] and sq[c] = sum_r x[r, c]^2 over the outer counter: numpy's float32
    # sum adds one row at a time there (an error growing with R); the fabric rounds once.
    R, C = 20_000, 3
    p = ProgramBuilder(inference=True)
    p.symbol("x", [R, C])
    p.symbol("total", [C], role="output")
    p.symbol("squares", [C], role="output")
    s = p.section("forward")
    x = s.load("x")
    total = s.pcu("t", [R, C], [(x, 0, [C, 1])], [], [C], (0, [0, 1]), result=0, combiner="add")
    sq = s.pcu("q", [R, C], [(x, 0, [C, 1])], [st("mul", 0, 0)], [C], (0, [0, 1]), combiner="add")
    s.store("total", total)
    s.store("squares", sq)
    xa = (1 + randn(R, C) * 1e-3).astype(np.float32)
    dram = run(p.build(), {"x": xa})
    wide = xa.astype(np.float64)
    np.testing.assert_array_equal(dram["total"], wide.sum(0).astype(np.float32))
    np.testing.assert_array_equal(dram["squares"], (wide * wide).sum(0).astype(np.float32))
    assert np.any(xa.sum(0) != wide.sum(0).astype(np.float32))  # float32 row by row is not


def test_elementwise_chain_with_broadcasting_matches_torch() -> None:
    # y = gelu(x * scale + bias) with scale [1, C] and bias [C] broadcast over [R, C]
    R, C = 5, 12
    p = ProgramBuilder(inference=True)
    p.symbol("x", [R, C])
    p.symbol("scale", [1, C])
    p.symbol("bias", [C])
    p.symbol("y", [R, C], role="output")
    s = p.section("forward")
    x, sc, b = s.load("x"), s.load("scale"), s.load("bias")
    stages = [
        st("mul", 0, 1),  # 3
        st("add", 3, 2),  # 4
        st("const", imm=1 / math.sqrt(2)),  # 5
        st("mul", 4, 5),  # 6
        st("erf", 6),  # 7
        st("const", imm=1.0),  # 8
        st("add", 7, 8),  # 9
        st("const", imm=0.5),  # 10
        st("mul", 4, 10),  # 11
        st("mul", 11, 9),  # 12
    ]
    out = elementwise(s, "gelu", [R, C], [(x, [R, C]), (sc, [1, C]), (b, [C])], stages)
    s.store("y", out)
    xa, sa, ba = randn(R, C), randn(1, C), randn(C)
    y = run(p.build(), {"x": xa, "scale": sa, "bias": ba})["y"]
    want = torch.nn.functional.gelu(torch.from_numpy(xa * sa + ba)).numpy()
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


def test_row_max_reduction_and_softmax_against_torch() -> None:
    R, C = 4, 10
    p = ProgramBuilder(inference=True)
    p.symbol("x", [R, C])
    p.symbol("rowmax", [R], role="output")
    p.symbol("rowmin", [R], role="output")
    p.symbol("softmax", [R, C], role="output")
    s = p.section("forward")
    x = s.load("x")
    mx = s.pcu("max", [R, C], [(x, 0, [C, 1])], [], [R], (0, [1, 0]), result=0, combiner="max")
    mn = s.pcu("min", [R, C], [(x, 0, [C, 1])], [], [R], (0, [1, 0]), result=0, combiner="min")
    e = elementwise(s, "exp", [R, C], [(x, [R, C]), (mx, [R, 1])], [st("sub", 0, 1), st("exp", 2)])
    total = s.pcu("sum", [R, C], [(e, 0, [C, 1])], [], [R], (0, [1, 0]), result=0, combiner="add")
    sm = elementwise(s, "div", [R, C], [(e, [R, C]), (total, [R, 1])], [st("div", 0, 1)])
    s.store("rowmax", mx)
    s.store("rowmin", mn)
    s.store("softmax", sm)
    xa = randn(R, C)
    dram = run(p.build(), {"x": xa})
    np.testing.assert_array_equal(dram["rowmax"], xa.max(1))
    np.testing.assert_array_equal(dram["rowmin"], xa.min(1))
    want = torch.softmax(torch.from_numpy(xa), 1).numpy()
    np.testing.assert_allclose(dram["softmax"], want, rtol=1e-6, atol=1e-7)


def test_i64_compare_select_with_counter_one_hot_and_nll() -> None:
    # onehot[b, c] = select(counter1 == label[b], 1.0, 0.0); nll[b] = -sum_c onehot * logp
    B, C = 6, 5
    p = ProgramBuilder(inference=True)
    p.symbol("label", [B], "i64")
    p.symbol("logp", [B, C])
    p.symbol("onehot", [B, C], role="output")
    p.symbol("nll", [B], role="output")
    p.symbol("iota", [B, C], "i64", role="output")
    s = p.section("forward")
    lab, logp = s.load("label"), s.load("logp")
    select = [
        st("counter", dtype="i64", imm=1),  # 1
        st("eq", 1, 0, dtype="i1"),  # 2
        st("const", imm=1.0),  # 3
        st("const", imm=0.0),  # 4
        st("select", 2, 3, 4),  # 5
    ]
    oh = s.pcu("onehot", [B, C], [(lab, 0, [1, 0])], select, [B, C])
    prod = s.pcu(
        "pick",
        [B, C],
        [(oh, 0, [C, 1]), (logp, 0, [C, 1])],
        [st("mul", 0, 1)],
        [B],
        (0, [1, 0]),
        combiner="add",
    )
    nll = s.pcu("neg", [B], [(prod, 0, [1])], [st("neg", 0)], [B])
    iota = s.pcu("iota", [B, C], [], [st("counter", dtype="i64", imm=1)], [B, C], dtype="i64")
    s.store("onehot", oh)
    s.store("nll", nll)
    s.store("iota", iota)
    labels = RNG.integers(0, C, B).astype(np.int64)
    lp = torch.log_softmax(torch.from_numpy(randn(B, C)), 1)
    dram = run(p.build(), {"label": labels, "logp": lp.numpy()})
    np.testing.assert_array_equal(dram["onehot"], np.eye(C, dtype=np.float32)[labels])
    want = torch.nn.functional.nll_loss(lp, torch.from_numpy(labels), reduction="none")
    np.testing.assert_allclose(dram["nll"], want.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(dram["iota"], np.broadcast_to(np.arange(C), (B, C)))
    assert dram["iota"].dtype == np.int64


def test_transpose_copy_and_fill_and_sum_of_a_constant() -> None:
    R, C = 3, 4
    p = ProgramBuilder(inference=True)
    p.symbol("x", [R, C])
    p.symbol("xt", [C, R], role="output")
    p.symbol("fill", [R, C], role="output")
    p.symbol("count", [R], role="output")
    s = p.section("forward")
    x = s.load("x")
    xt = s.pcu("transpose", [C, R], [(x, 0, [1, C])], [], [C, R], result=0)
    fill = s.pcu("fill", [R, C], [], [st("const", imm=2.5)], [R, C])
    count = s.pcu("count", [R, C], [], [st("const", imm=1.0)], [R], (0, [1, 0]), combiner="add")
    s.store("xt", xt)
    s.store("fill", fill)
    s.store("count", count)
    xa = randn(R, C)
    dram = run(p.build(), {"x": xa})
    np.testing.assert_array_equal(dram["xt"], xa.T)
    np.testing.assert_array_equal(dram["fill"], np.full((R, C), 2.5, np.float32))
    np.testing.assert_array_equal(dram["count"], np.full(R, C, np.float32))


def test_negative_strides_reverse() -> None:
    n = 7
    p = ProgramBuilder(inference=True)
    p.symbol("x", [n])
    p.symbol("y", [n], role="output")
    s = p.section("forward")
    x = s.load("x")
    s.store("y", s.pcu("rev", [n], [(x, n - 1, [-1])], [], [n], result=0))
    xa = randn(n)
    np.testing.assert_array_equal(run(p.build(), {"x": xa})["y"], xa[::-1])


UNARY = {
    "neg": torch.neg,
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "rsqrt": torch.rsqrt,
    "tanh": torch.tanh,
    "erf": torch.erf,
    "cos": torch.cos,
    "sin": torch.sin,
    "abs": torch.abs,
}
BINARY = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "max": torch.maximum,
    "min": torch.minimum,
    "pow": torch.pow,
}
COMPARE = {
    "eq": torch.eq,
    "ne": torch.ne,
    "lt": torch.lt,
    "le": torch.le,
    "gt": torch.gt,
    "ge": torch.ge,
}


def _one_stage(op: str, inputs: dict[str, tuple[np.ndarray, str]], dtype: str) -> np.ndarray:
    shape = list(next(iter(inputs.values()))[0].shape)
    p = ProgramBuilder(inference=True)
    for name, (array, dt) in inputs.items():
        p.symbol(name, list(array.shape), dt)
    p.symbol("y", shape, dtype, role="output")
    s = p.section("forward")
    pmus = [(s.load(name), shape) for name in inputs]
    stage = st(op, *range(len(inputs)), dtype=dtype)
    s.store("y", elementwise(s, op, shape, pmus, [stage], dtype=dtype))
    dram = run(p.build(), {name: array for name, (array, _) in inputs.items()})
    return dram["y"]


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_f32_opcodes_match_torch(op: str) -> None:
    x = randn(64) * 3
    if op in ("log", "sqrt", "rsqrt"):
        x = np.abs(x) + np.float32(0.1)
    y = _one_stage(op, {"x": (x, "f32")}, "f32")
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, UNARY[op](torch.from_numpy(x)).numpy(), rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_f32_opcodes_match_torch(op: str) -> None:
    a, b = randn(64), randn(64)
    if op == "pow":
        a = np.abs(a) + np.float32(0.5)
    y = _one_stage(op, {"a": (a, "f32"), "b": (b, "f32")}, "f32")
    want = BINARY[op](torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, want, rtol=2e-6)


@pytest.mark.parametrize("op", sorted(COMPARE))
@pytest.mark.parametrize("dtype", ["f32", "i64"])
def test_compare_opcodes(op: str, dtype: str) -> None:
    a = RNG.integers(-3, 3, 50)
    b = RNG.integers(-3, 3, 50)
    np_dtype = np.float32 if dtype == "f32" else np.int64
    a, b = a.astype(np_dtype), b.astype(np_dtype)
    y = _one_stage(op, {"a": (a, dtype), "b": (b, dtype)}, "i1")
    assert y.dtype == np.bool_
    np.testing.assert_array_equal(y, COMPARE[op](torch.from_numpy(a), torch.from_numpy(b)))


def test_integer_and_logic_opcodes() -> None:
    a = np.array([7, -7, 7, -7, 5, 0], np.int64)
    b = np.array([2, 2, -2, -2, 0, 3], np.int64)
    assert _one_stage("div", {"a": (a, "i64"), "b": (b, "i64")}, "i64").tolist() == [
        3,
        -3,
        -3,
        3,
        0,
        0,
    ]  # toward zero; x / 0 -> 0
    e = np.array([2, 0, -1, 3], np.int64)
    base = np.array([3, 5, 2, -1], np.int64)
    assert _one_stage("pow", {"a": (base, "i64"), "b": (e, "i64")}, "i64").tolist() == [
        9,
        1,
        0,
        -1,
    ]
    t = np.array([True, True, False, False])
    f = np.array([True, False, True, False])
    assert _one_stage("and", {"a": (t, "i1"), "b": (f, "i1")}, "i1").tolist() == [1, 0, 0, 0]
    assert _one_stage("or", {"a": (t, "i1"), "b": (f, "i1")}, "i1").tolist() == [1, 1, 1, 0]
    assert _one_stage("not", {"a": (t, "i1")}, "i1").tolist() == [0, 0, 1, 1]
    assert _one_stage("not", {"a": (a, "i64")}, "i64").tolist() == (~a).tolist()
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    for op, bitwise in (("and", torch.bitwise_and), ("or", torch.bitwise_or)):
        got = _one_stage(op, {"a": (a, "i64"), "b": (b, "i64")}, "i64")
        assert got.tolist() == bitwise(ta, tb).tolist()
    x = np.array([1.5, -2.0, 0.5, 3.0], np.float32)
    got = _one_stage("pow", {"a": (x, "f32"), "b": (e, "i64")}, "f32")  # an f32 to i64 powers
    assert got.dtype == np.float32
    assert got.tolist() == torch.pow(torch.from_numpy(x), torch.from_numpy(e)).tolist()
    x = np.array([1.7, -1.7, 0.0, 3.0], np.float32)
    assert _one_stage("cast", {"x": (x, "f32")}, "i64").tolist() == [1, -1, 0, 3]
    assert _one_stage("cast", {"x": (x, "f32")}, "i1").tolist() == [1, 1, 0, 1]
    assert _one_stage("cast", {"t": (t, "i1")}, "f32").tolist() == [1.0, 1.0, 0.0, 0.0]


def test_erf_is_float32_accurate() -> None:
    x = np.concatenate(
        [np.linspace(-6, 6, 200001, dtype=np.float32), np.array([0.0, -0.0, 1e-30, 2.0, -2.0])]
    ).astype(np.float32)
    got = erf(x)
    assert got.dtype == np.float32
    want = np.array([math.erf(float(v)) for v in x])
    assert np.max(np.abs(got.astype(np.float64) - want)) < 1e-7
    np.testing.assert_array_equal(erf(np.array([np.inf, -np.inf], np.float32)), [1.0, -1.0])
    assert np.isnan(erf(np.array([np.nan], np.float32)))[0]


def test_empty_space_reductions_write_the_identity() -> None:
    p = ProgramBuilder(inference=True)
    p.symbol("x", [3, 0])
    p.symbol("s", [3], role="output")
    p.symbol("m", [3], role="output")
    s = p.section("forward")
    x = s.load("x")
    sm = s.pcu("sum", [3, 0], [(x, 0, [0, 1])], [], [3], (0, [1, 0]), result=0, combiner="add")
    mx = s.pcu("max", [3, 0], [(x, 0, [0, 1])], [], [3], (0, [1, 0]), result=0, combiner="max")
    s.store("s", sm)
    s.store("m", mx)
    dram = run(p.build(), {"x": np.zeros((3, 0), np.float32)})
    assert dram["s"].tolist() == [0, 0, 0]
    assert dram["m"].tolist() == [-np.inf] * 3


def test_input_shape_and_dtype_errors_name_the_symbol() -> None:
    fabric = Fabric(matmul_program(2, 3, 4))
    with pytest.raises(
        FabricError, match=r"input 'a' is \[2, 4\] f32 but the PEF expects \[2, 3\]"
    ):
        fabric.run_section("forward", {"a": randn(2, 4), "b": randn(3, 4)})
    with pytest.raises(FabricError, match=r"input 'b' is \[3, 4\] i64"):
        fabric.run_section("forward", {"a": randn(2, 3), "b": np.zeros((3, 4), np.int64)})
    with pytest.raises(FabricError, match="input 'b' is not in DRAM"):
        fabric.run_section("forward", {"a": randn(2, 3)})
    with pytest.raises(FabricError, match="no section 'backward'"):
        fabric.run_section("backward", {})


def test_outputs_replace_dram_entries_and_inputs_are_not_written() -> None:
    a, b = randn(2, 3), randn(3, 4)
    a0, b0 = a.copy(), b.copy()
    dram = {"a": a, "b": b}
    fabric = Fabric(matmul_program(2, 3, 4))
    fabric.run_section("forward", dram)
    first = dram["out"]
    fabric.run_section("forward", dram)
    assert dram["out"] is not first
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_performance_counters() -> None:
    program = matmul_program(4, 8, 16)
    fabric = Fabric(program)
    fabric.run_section("forward", {"a": randn(4, 8), "b": randn(8, 16)})
    c = fabric.counters["forward"]
    # runtime/machine/perf.py, worked out in test_perf.py: 8 vectors, 4 cycles each (the 4-bank
    # PMUs), plus a fill of 6 stages and 3 hops.
    assert c.units[0].cycles == 8 * 4 + 6 + 3
    assert c.cycles == c.units[0].cycles
    assert c.dram_bytes_in == (4 * 8 + 8 * 16) * 4
    assert c.dram_bytes_out == 4 * 16 * 4
    assert c.runs == 1 and c.host_seconds > 0
    assert c.seconds == pytest.approx(c.cycles / 1e9)


def test_pmu_capacity_is_enforced_on_configure() -> None:
    from pefkit import replace

    program = matmul_program(2, 3, 4)
    section = program.sections[0]
    big = replace(section.pmus[0], tile_bytes=program.meta.target.pmu_bytes, nbuf=2)
    bad = replace(program, sections=[replace(section, pmus=[big, *section.pmus[1:]])])
    with pytest.raises(PefError, match="exceeds the PMU capacity"):
        Fabric(bad)


def test_large_matmul_is_one_blas_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """A matmul unit runs as one ``np.matmul`` over its whole tile space (BLAS's speed; its time
    against numpy's is bench/'s, not a test's)."""
    m, k, n = 64, 4096, 4096
    a, b = randn(m, k), randn(k, n)
    fabric = Fabric(matmul_program(m, k, n))
    dram = {"a": a, "b": b}
    calls: list[tuple[int, int]] = []
    matmul = np.matmul

    def counted(x: np.ndarray, y: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        calls.append((x.size, y.size))
        return matmul(x, y, *args, **kwargs)

    monkeypatch.setattr(np, "matmul", counted)
    fabric.run_section("forward", dram)
    assert calls == [(m * k, k * n)]
    np.testing.assert_allclose(dram["out"], a @ b, rtol=1e-4, atol=1e-3)


def test_broadcast_strides_helper() -> None:
    assert broadcast_strides([1, 4], [3, 4]) == [0, 1]
    assert broadcast_strides([4], [2, 3, 4]) == [0, 0, 1]
    assert row_major([2, 3, 4]) == [12, 4, 1]


def test_two_pcus_write_halves_of_one_pmu_and_outputs_never_alias() -> None:
    """Concatenation by two writers; copies and constants never alias DRAM or plan state."""
    n = 4
    p = ProgramBuilder(inference=True)
    p.symbol("x", [n])
    p.symbol("cat", [2 * n], role="output")
    p.symbol("copy", [n], role="output")
    p.symbol("iota", [n], "i64", role="output")
    p.symbol("twice", [n], role="output")
    s = p.section("forward")
    x = s.load("x")
    cat = s.pcu("low", [n], [(x, 0, [1])], [st("neg", 0)], [2 * n], (0, [1]))
    s.pcu("high", [n], [(x, 0, [1])], [], [2 * n], (n, [1]), result=0, into=cat)
    copy = s.pcu("copy", [n], [(x, 0, [1])], [], [n], result=0)
    iota = s.pcu("iota", [n], [], [st("counter", dtype="i64", imm=0)], [n], dtype="i64")
    twice = s.pcu("twice", [n], [(x, 0, [1])], [st("add", 0, 0)], [n])
    s.pcu("overwrite", [1], [], [st("const", imm=7.0)], [n], (0, [0]), into=twice)
    s.store("cat", cat)
    s.store("copy", copy)
    s.store("iota", iota)
    s.store("twice", twice)
    xa = randn(n)
    fabric = Fabric(decode_pef(encode_pef(p.build())))
    dram = {"x": xa}
    fabric.run_section("forward", dram)
    np.testing.assert_array_equal(dram["cat"], np.concatenate([-xa, xa]))
    np.testing.assert_array_equal(dram["copy"], xa)
    np.testing.assert_array_equal(dram["twice"], np.concatenate([[7.0], 2 * xa[1:]]))
    assert not np.shares_memory(dram["copy"], xa)
    dram["iota"][:] = 99  # the host owns what the fabric stored
    dram["copy"][:] = 0
    fabric.run_section("forward", dram)
    assert dram["iota"].tolist() == list(range(n))
    np.testing.assert_array_equal(dram["copy"], xa)


def test_non_contiguous_and_read_only_host_arrays() -> None:
    a = np.asfortranarray(randn(4, 6))
    b = randn(8, 6).T  # a transposed view
    a.flags.writeable = False
    dram = {"a": a, "b": b}
    Fabric(matmul_program(4, 6, 8)).run_section("forward", dram)
    np.testing.assert_allclose(dram["out"], a @ b, rtol=1e-5, atol=1e-6)


def test_multiply_accumulate_without_a_shared_reduced_counter() -> None:
    # y[m] = sum_j x[m, j] * w[m] * 3  (w does not vary over j; the const over nothing)
    M, J = 5, 7
    p = ProgramBuilder(inference=True)
    p.symbol("x", [M, J])
    p.symbol("w", [M])
    p.symbol("y", [M], role="output")
    s = p.section("forward")
    x, w = s.load("x"), s.load("w")
    stages = [st("const", imm=3.0), st("mul", 1, 2), st("mul", 0, 3)]
    out = s.pcu(
        "scaled", [M, J], [(x, 0, [J, 1]), (w, 0, [1, 0])], stages, [M], (0, [1, 0]),
        combiner="add",
    )  # fmt: skip
    s.store("y", out)
    xa, wa = randn(M, J), randn(M)
    y = run(p.build(), {"x": xa, "w": wa})["y"]
    np.testing.assert_allclose(y, (xa * (wa * 3)[:, None]).sum(1), rtol=1e-5, atol=1e-6)
