"""The performance model's remembered answers (runtime/machine/perf.py): a PCU's model, a
walk and a reader's wait, remembered because a compiler times a section again and again with
a few units changed, are the ones computed afresh, whatever changed between two calls."""

from __future__ import annotations

import pytest
from pefkit import matmul_program, parallel_matmul_program, replace

from runtime.machine import perf
from runtime.machine.perf import Walk, unit_model, walk_start
from runtime.pef import schema


def with_pmus(program: schema.Program, **changes: object) -> schema.Program:
    section = program.sections[0]
    pmus = [replace(p, **changes) for p in section.pmus]
    return replace(program, sections=[replace(section, pmus=pmus)])


def with_pcu(program: schema.Program, **changes: object) -> schema.Program:
    section = program.sections[0]
    pcus = [replace(p, **changes) for p in section.pcus]
    return replace(program, sections=[replace(section, pcus=pcus)])


MATMUL = matmul_program(64, 48, 32)
VARIANTS = {
    "as built": MATMUL,
    "one bank": with_pmus(MATMUL, banks=1),
    "skewed": with_pmus(MATMUL, banks=4, bank_skew=64),
    "bf16": matmul_program(64, 48, 32, dtype="bf16"),
    "parallel": parallel_matmul_program(64, 48, 32),
    "fewer lanes": with_pcu(MATMUL, lanes=8),
    "renamed": with_pcu(MATMUL, name="other"),
}


def fresh(program: schema.Program, in_hops: int) -> perf.UnitModel:
    perf._UNIT_MODELS.clear()
    section = program.sections[0]
    return unit_model(section.pcus[0], section, program.meta.target, in_hops)


def test_a_remembered_unit_model_is_the_one_computed_afresh() -> None:
    expected = {(name, hops): fresh(p, hops) for name, p in VARIANTS.items() for hops in (0, 3)}
    assert len({m for m in expected.values()}) > 5  # the variants differ
    perf._UNIT_MODELS.clear()
    for _ in range(2):  # every answer computed once, then remembered
        for (name, hops), model in expected.items():
            section = VARIANTS[name].sections[0]
            target = VARIANTS[name].meta.target
            assert unit_model(section.pcus[0], section, target, hops) == model, (name, hops)
    assert len(perf._UNIT_MODELS) == len(expected)


def test_the_memo_starts_again_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(perf, "UNIT_MODELS_HELD", 2)
    perf._UNIT_MODELS.clear()
    for name in ("as built", "one bank", "skewed"):
        section = VARIANTS[name].sections[0]
        unit_model(section.pcus[0], section, VARIANTS[name].meta.target)
    assert len(perf._UNIT_MODELS) == 1


@pytest.mark.parametrize("first", [0, 7, 100])
def test_a_remembered_wait_counts_from_the_writers_first_element(first: int) -> None:
    # A reader one row behind a writer of 64 rows in 4 blocks: its wait depends on the span
    # and the pace, not on when the writer starts.
    written, read = Walk((64,), (4,)), Walk((64,), (1,))
    start, begin = walk_start(first, first + 640, written, read, 64)
    perf._walk_waits.cache_clear()
    assert walk_start(first, first + 640, written, read, 64) == (start, begin)
    assert walk_start(0, 640, written, read, 64) == (start - first, begin - first)
