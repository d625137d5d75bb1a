"""A parallel PCU (``Pcu.parallel``) in the runtime: its copies run together (one computation
over the whole space), validated copy by copy.

``pefkit.parallel_matmul_program`` makes the matmul PCU four copies (``[2, 2, 1]``) with
multicast routes (``taps``) into them and one route out of each.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from pefkit import matmul_program, parallel_matmul_program, replace, st

from runtime.fabric import Fabric, _PcuPlan, _run_pcu, copy_pcus
from runtime.pef import PefError, schema, validate


def run(program: schema.Program, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    dram = {"a": a, "b": b}
    Fabric(program).run_section("forward", dram)
    return dram["out"]


@pytest.mark.parametrize("shape", [(8, 8, 32), (7, 5, 9)])
def test_copies_compute_the_product(shape: tuple[int, int, int]) -> None:
    m, k, n = shape  # (7, 5, 9): blocks of 4 and 3 rows, 5 and 4 columns
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = run(parallel_matmul_program(m, k, n), a, b)
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)


def written(copies: list[schema.Pcu]) -> list[int]:
    """The addresses of out[7, 9] the matmul's copies write, each as often as written."""
    return [
        c.out.offset + i * c.out.strides[0] + j * c.out.strides[1]
        for c in copies
        for i in range(c.space[0])
        for j in range(c.space[1])
    ]


def test_copy_blocks_and_offsets() -> None:
    (pcu,) = parallel_matmul_program(7, 5, 9).sections[0].pcus
    copies = copy_pcus(pcu)
    assert [c.space for c in copies] == [[4, 5, 5], [4, 4, 5], [3, 5, 5], [3, 4, 5]]
    # copy 3 starts at row 4, column 5: a at 4 * 5, b at column 5, out at 4 * 9 + 5.
    last = copies[3]
    assert [p.access.offset for p in last.inputs] == [20, 5]
    assert last.out.offset == 41
    assert sorted(written(copies)) == list(range(7 * 9))  # every element of out once


def test_interleaved_copies_take_the_rows_in_turn() -> None:
    # The [2, 2, 1] matmul over [7 rows, 9 columns, 5], interleaved: its lanes counter (the
    # columns) keeps its blocks of 5 and 4; the rows go in turn, copy 0 and 1 taking rows 0, 2,
    # 4, 6 and copies 2 and 3 rows 1, 3, 5: a's stride and out's row stride doubled.
    program = _with_pcu(parallel_matmul_program(7, 5, 9), interleaved=True)
    validate(program)
    (pcu,) = _section(program).pcus
    copies = copy_pcus(pcu)
    assert [c.space for c in copies] == [[4, 5, 5], [4, 4, 5], [3, 5, 5], [3, 4, 5]]
    last = copies[3]
    assert [p.access.offset for p in last.inputs] == [5, 5]  # row 1 of a; column 5 of b
    assert [p.access.strides for p in last.inputs] == [[10, 0, 1], [0, 1, 9]]
    assert (last.out.offset, last.out.strides) == (9 + 5, [18, 1, 0])
    assert sorted(written(copies)) == list(range(7 * 9))
    rng = np.random.default_rng(3)
    a = rng.standard_normal((7, 5), np.float32)
    b = rng.standard_normal((5, 9), np.float32)
    section = _section(program)
    buffers: list[np.ndarray | None] = [a.reshape(-1), b.reshape(-1), None]
    for copy in copies:  # one by one, as the PEF configures them
        _run_pcu(_PcuPlan.build(0, copy, section), buffers)
    assert buffers[2] is not None
    np.testing.assert_allclose(buffers[2].reshape(7, 9), a @ b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(run(program, a, b), run(parallel_matmul_program(7, 5, 9), a, b))


def test_interleaving_needs_a_split_counter_besides_the_lanes_counter() -> None:
    one = _with_pcu(matmul_program(8, 8, 32), interleaved=True)  # one PCU
    with pytest.raises(PefError, match="interleaved, but no counter besides the lanes"):
        validate(one)
    lanes_only = _with_pcu(parallel_matmul_program(8, 8, 32), parallel=[1, 4, 1], interleaved=True)
    with pytest.raises(PefError, match="interleaved, but no counter besides the lanes"):
        validate(lanes_only)


def test_a_parallel_matmul_runs_its_copies_as_one_np_matmul(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The four copies of the parallel matmul are one ``np.matmul`` over the whole space (one
    plan, not one a copy), and compute what the copies run one by one compute."""
    m, k, n = 7, 5, 9
    program = parallel_matmul_program(m, k, n)
    fabric = Fabric(program)
    (plans,) = fabric._plans["forward"].pcus  # one PCU
    assert [p.space for p in plans] == [(m, n, k)]
    rng = np.random.default_rng(2)
    a = rng.standard_normal((m, k), np.float32)
    b = rng.standard_normal((k, n), np.float32)
    calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    matmul = np.matmul

    def counted(x: np.ndarray, y: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        calls.append((x.shape, y.shape))
        return matmul(x, y, *args, **kwargs)

    monkeypatch.setattr(np, "matmul", counted)
    dram = {"a": a, "b": b}
    fabric.run_section("forward", dram)
    assert calls == [((m, k), (k, n))]
    section = _section(program)
    buffers: list[np.ndarray | None] = [a.reshape(-1), b.reshape(-1), None]  # pmus a, b, out
    for copy in copy_pcus(section.pcus[0]):  # the copies one by one, as the PEF configures them
        _run_pcu(_PcuPlan.build(0, copy, section), buffers)
    assert len(calls) == 1 + 4
    np.testing.assert_allclose(dram["out"], a @ b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dram["out"].reshape(-1), buffers[2], rtol=1e-6, atol=1e-6)


def _section(program: schema.Program) -> schema.Section:
    return program.sections[0]


def _with(program: schema.Program, **changes: object) -> schema.Program:
    return replace(program, sections=[replace(_section(program), **changes)])


def _with_pcu(program: schema.Program, **changes: object) -> schema.Program:
    (pcu,) = _section(program).pcus
    return _with(program, pcus=[replace(pcu, **changes)])


def _drop_route(program: schema.Program, index: int) -> schema.Program:
    routes = [r for r in _section(program).routes if r.taps]
    victim = routes[index]
    return _with(program, routes=[r for r in _section(program).routes if r is not victim])


def _replace_route(program: schema.Program, index: int, **changes: object) -> schema.Program:
    routes = list(_section(program).routes)
    tapped = [i for i, r in enumerate(routes) if r.taps]
    routes[tapped[index]] = replace(routes[tapped[index]], **changes)
    return _with(program, routes=routes)


P = parallel_matmul_program(8, 8, 32)

BROKEN: list[tuple[Callable[[], schema.Program], str]] = [
    (lambda: _with_pcu(P, more_at=[[4, 0], [4, 0], [6, 0]]), r"copy 2: slot \[4, 0\] \(more_at\)"),
    (lambda: _with_pcu(P, more_at=[[4, 0], [5, 0]]), r"4 copies but more_at lists 2 slots"),
    (lambda: _with_pcu(P, parallel=[2, 2, 2]), r"parallel factor 2 on reduced counter 2"),
    (lambda: _with_pcu(P, parallel=[2, 2]), r"parallel has 2 factors for 3 counters"),
    (
        lambda: _with_pcu(P, parallel=[6, 1, 1], more_at=[[4 + c, 0] for c in range(5)]),
        r"factor 6 of counter 0 \(extent 8\) leaves a copy no block",
    ),
    (
        lambda: _with_pcu(
            P,
            inputs=[_section(P).pcus[0].inputs[0]] * 2
            + [
                replace(
                    _section(P).pcus[0].inputs[0], access=schema.Access(offset=0, strides=[8, 0, 0])
                )
            ],
        ),
        r"input 2 reads pmu 0 through another access",
    ),
    (lambda: _drop_route(P, 0), r"input 0 of pcu 0 'matmul' .* copy 0 is fed by 0 routes"),
    (lambda: _drop_route(P, 5), r"the output of pcu 0 'matmul' .* copy 1 has 0 routes"),
    (
        lambda: _replace_route(P, 1, hops=[[0, 0], [1, 0], [2, 0], [3, 0], [4, 0], [5, 0]]),
        r"feeds copy 3 at \[6, 0\] \(taps\) but does not pass its switch",
    ),
    (lambda: _replace_route(P, 0, hops=[[3, 0], [4, 0]]), r"starts at switch \[3, 0\], not at"),
    (
        lambda: _with_pcu(P, stages=[st("counter", imm=0, dtype="i64"), st("mul", 0, 1)]),
        r"parallel factor 2 on counter 0, which a 'counter' stage reads",
    ),
    (
        lambda: _with_pcu(P, stages=[st("rand", 0), st("mul", 0, 1)]),
        r"a parallel unit with a 'rand' stage",
    ),
    (lambda: _replace_route(P, 0, taps=[[0, 0], [0, 4]]), r"taps\[1\] \[0, 4\] is not"),
    (
        lambda: _replace_route(P, 4, hops=[[4, 0], [3, 0], [2, 0]]),
        r"starts at switch \[4, 0\], its copy 0 is at \[3, 0\]",
    ),
]


@pytest.mark.parametrize(("program", "match"), BROKEN)
def test_validate_refuses_a_broken_parallel_pcu(
    program: Callable[[], schema.Program], match: str
) -> None:
    validate(P)
    with pytest.raises(PefError, match=match) as info:
        validate(program())
    assert "\n" not in str(info.value)


def test_a_counter_stage_on_a_counter_no_copy_splits_sees_every_value() -> None:
    # out[i, j] = sum_k a[i, k] * b[k, j] * k, the counter stage reading k (the reduced counter,
    # never split): the copies over rows and columns see k's every value, as one PCU does.
    stages = [
        st("counter", imm=2, dtype="i64"),
        st("cast", 2, dtype="f32"),
        st("mul", 0, 1),
        st("mul", 4, 3),
    ]
    program = _with_pcu(P, stages=stages, result=5)
    validate(program)
    rng = np.random.default_rng(2)
    a = rng.standard_normal((8, 8), dtype=np.float32)
    b = rng.standard_normal((8, 32), dtype=np.float32)
    weighted = a * np.arange(8, dtype=np.float32)
    np.testing.assert_allclose(run(program, a, b), weighted @ b, rtol=1e-5, atol=1e-5)
    alone = _with_pcu(matmul_program(8, 8, 32), stages=stages, result=5)
    np.testing.assert_array_equal(run(program, a, b), run(alone, a, b))


def test_multicast_routes_count_against_link_capacity() -> None:
    # Links [1, 0] -> [2, 0] .. [3, 0] -> [4, 0] carry a's two streams and b's two.
    program = replace(P, meta=replace(P.meta, target=replace(P.meta.target, link_capacity=3)))
    with pytest.raises(PefError, match=r"link \[\d, 0\] -> \[\d, 0\] carries 4 routes, capacity 3"):
        validate(program)


def test_a_captured_run_and_a_unit_run_alone_agree() -> None:
    """``run_section(pmus=...)`` captures every PMU (each unit's output); ``run_unit`` on the
    captured inputs gives the same output, every copy of a parallel unit included."""
    program = parallel_matmul_program(7, 5, 9)
    fabric = Fabric(program)
    rng = np.random.default_rng(1)
    dram = {
        "a": rng.standard_normal((7, 5), np.float32),
        "b": rng.standard_normal((5, 9), np.float32),
    }
    captured: dict[int, np.ndarray] = {}
    fabric.run_section("forward", dram, pmus=captured)
    section = _section(program)
    (pcu,) = section.pcus
    assert set(captured) == set(range(len(section.pmus)))
    np.testing.assert_array_equal(captured[pcu.out_pmu], dram["out"].reshape(-1))
    inputs = {p.pmu: captured[p.pmu] for p in pcu.inputs}
    np.testing.assert_array_equal(fabric.run_unit("forward", 0, inputs), dram["out"].reshape(-1))
    perturbed = {**inputs, pcu.inputs[0].pmu: inputs[pcu.inputs[0].pmu] * 2}
    np.testing.assert_allclose(
        fabric.run_unit("forward", 0, perturbed), 2 * dram["out"].reshape(-1), rtol=1e-6
    )
