"""Chains of elementwise units run block by block (``runtime.fabric._Chain``) and leave every
buffer bit for bit as running the units one after another does."""

from __future__ import annotations

import numpy as np
import pytest
from pefkit import ProgramBuilder, elementwise, st

from runtime import fabric
from runtime.fabric import Fabric
from runtime.pef import schema

N = 400  # [N, N] = 160,000 points: three cache blocks a unit


def _program() -> schema.Program:
    """``t = a * b``, ``c = t + a``, ``d = c - b`` (a chain; ``t`` is read in it only, ``d``
    by the row sum after it too); ``rowsum = sum_j d * d``; ``e = d * d``; ``f = e.T + a`` (reads
    ``e`` transposed: a chain of its own)."""
    p = ProgramBuilder(inference=True)
    p.symbol("a", [N, N])
    p.symbol("b", [N, N])
    for name, shape in (("c", [N, N]), ("rowsum", [N]), ("f", [N, N])):
        p.symbol(name, shape, role="output")
    s = p.section("forward")
    a, b = s.load("a"), s.load("b")
    full = [N, N]
    t = elementwise(s, "t", full, [(a, full), (b, full)], [st("mul", 0, 1)])
    c = elementwise(s, "c", full, [(t, full), (a, full)], [st("add", 0, 1)])
    d = elementwise(s, "d", full, [(c, full), (b, full)], [st("sub", 0, 1)])
    rowsum = s.pcu(
        "rowsum", full, [(d, 0, [N, 1])], [st("mul", 0, 0)], [N], (0, [1, 0]), combiner="add"
    )
    e = elementwise(s, "e", full, [(d, full), (d, full)], [st("mul", 0, 1)])
    f = s.pcu("f", full, [(e, 0, [1, N]), (a, 0, [N, 1])], [st("add", 0, 1)], full)
    s.store("c", c)
    s.store("rowsum", rowsum)
    s.store("f", f)
    return p.build()


def _inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {name: rng.standard_normal((N, N), dtype=np.float32) for name in ("a", "b")}


def _unit_by_unit(program: schema.Program) -> dict[int, np.ndarray]:
    """Every PMU's buffer, each unit run alone (``Fabric.run_unit``) in the section's order."""
    section = program.sections[0]
    inputs = _inputs()
    names = [s.name for s in program.meta.symbols]
    pmus = {
        i: inputs[names[pmu.symbol]].reshape(-1)
        for i, pmu in enumerate(section.pmus)
        if pmu.source == "dram"
    }
    fab = Fabric(program, threads=1)
    for i, pcu in enumerate(section.pcus):
        pmus[pcu.out_pmu] = fab.run_unit("forward", i, pmus)
    return pmus


def test_the_chains_of_the_section() -> None:
    program = _program()
    runs = Fabric(program, threads=1)._plan("forward").runs
    chains = [r for r, _ in runs if isinstance(r, fabric._Chain)]
    assert [c.units for c in chains] == [(0, 1, 2), (4,), (5,)]
    section = program.sections[0]
    t = section.pcus[0].out_pmu
    assert [pmu for pmu, _, _ in chains[0].local] == [t]  # d is read after the chain: whole
    assert all(len(c.blocks) == 3 for c in chains)


@pytest.mark.parametrize("threads", [1, 2])
def test_chains_leave_every_buffer_as_unit_by_unit(threads: int) -> None:
    program = _program()
    section = program.sections[0]
    want = _unit_by_unit(program)
    fab = Fabric(program, threads=threads)
    captured: dict[int, np.ndarray] = {}
    dram: dict[str, np.ndarray] = dict(_inputs())
    fab.run_section("forward", dram, pmus=captured)
    assert captured.keys() == want.keys()
    for pmu, buffer in want.items():  # the capture: every PMU whole, the local one too
        np.testing.assert_array_equal(captured[pmu], buffer, err_msg=section.pmus[pmu].name)
    dram = dict(_inputs())
    fab.run_section("forward", dram)  # no capture: t block-sized, outputs the same
    for out in section.outputs:
        name = program.meta.symbols[out.symbol].name
        np.testing.assert_array_equal(dram[name].reshape(-1), want[out.pmu], err_msg=name)
