"""Tiling from the target: tiles padded to the PMU's banks, bank skews, and what the performance
model makes of a lowered linear layer."""

from __future__ import annotations

import pytest
import torch
from msgspec.structs import replace
from xdsl.dialects.builtin import bf16, f32, f64, i1, i64

from compiler.driver import compile_in_memory
from compiler.frontend import ModelSpec
from compiler.passes.tiling import TileChoices, choose_bank_skew, choose_tile, element_bytes
from compiler.targets import get_target
from runtime.machine.opcodes import DTYPE_BYTES
from runtime.machine.perf import model_section

COPY = [((3, 1), "f32"), ((3, 1), "f32")]
"""A copy of a [16, 3] f32 tensor: the input's and the result's (strides, element bytes)."""


def test_element_bytes_are_the_fabric_dtypes() -> None:
    assert [element_bytes(t) for t in (f32, bf16, i64, i1)] == [
        DTYPE_BYTES[d] for d in ("f32", "bf16", "i64", "i1")
    ]
    assert DTYPE_BYTES["bf16"] == 2
    with pytest.raises(ValueError, match="element type f64 is not supported yet"):
        element_bytes(f64)


def test_tiles_are_padded_to_the_banks() -> None:
    # A [8, 3] tile holds 24 elements: 384 bytes double-buffered for input and result, but a
    # PMU of 16 banks stores each tile in whole rows of 16 words: 32 elements, 512 bytes.
    target = replace(get_target("plasticine"), pmu_bytes=400)
    assert choose_tile([16, 3], COPY, (3, 1), replace(target, pmu_banks=1)) == [8, 3]
    assert choose_tile([16, 3], COPY, (3, 1), target) == [4, 3]


def test_bf16_tiles_hold_twice_the_elements_per_vector_and_bank() -> None:
    plasticine = get_target("plasticine")
    bf16_copy = [((64, 1), "bf16"), ((64, 1), "bf16")]
    f32_copy = [((64, 1), "f32"), ((64, 1), "f32")]
    # Nothing grows in a PMU of one byte: the lanes counter gets a vector of the lanes, a 32-bit
    # lane holding two bf16; a kernel with any f32 access keeps one element a lane.
    one_byte = replace(plasticine, pmu_bytes=1)
    assert choose_tile([1, 64], bf16_copy, (64, 1), one_byte) == [1, 32]
    assert choose_tile([1, 64], f32_copy, (64, 1), one_byte) == [1, 16]
    assert choose_tile([1, 64], [bf16_copy[0], f32_copy[1]], (64, 1), one_byte) == [1, 16]
    # A bank word holds two bf16: with 16 banks a row of words holds 16 f32 or 32 bf16. In 256
    # bytes (two tiles, input and result, double-buffered: 64 bytes a tile) fit one row of f32,
    # a [2, 6] tile, or one row of bf16 (64 bytes too), a [4, 6] tile.
    target = replace(plasticine, pmu_bytes=256, pmu_banks=16)
    copy6 = [((6, 1), "f32"), ((6, 1), "f32")]
    assert choose_tile([8, 6], copy6, (6, 1), target) == [2, 6]
    copy6b = [((6, 1), "bf16"), ((6, 1), "bf16")]
    assert choose_tile([8, 6], copy6b, (6, 1), target) == [4, 6]


def test_bank_skew_spreads_columns() -> None:
    rows = (1000, [(1, 16)])  # 1000 vectors along a row of 16
    columns = (1000, [(64, 16)])  # down a column of a 64-wide matrix
    assert choose_bank_skew([rows], 16) == 0
    assert choose_bank_skew([columns], 16) == 64
    assert choose_bank_skew([rows, columns], 16) == 64  # rows stay spread when skewed
    assert choose_bank_skew([(1, [])], 16) == 0


def test_tile_choices_answer_as_the_rules_and_remember(monkeypatch: pytest.MonkeyPatch) -> None:
    import compiler.passes.tiling as tiling

    target = replace(get_target("plasticine"), pmu_bytes=400)
    choices = TileChoices(target)
    columns = (1000, [(64, 16)])
    assert choices.tile([16, 3], COPY, (3, 1)) == choose_tile([16, 3], COPY, (3, 1), target)
    assert choices.bank_skew([columns], 16, 1) == choose_bank_skew([columns], 16) == 64
    calls: list[str] = []
    monkeypatch.setattr(tiling, "choose_tile", lambda *a: calls.append("tile") or [1, 1])
    monkeypatch.setattr(tiling, "choose_bank_skew", lambda *a: calls.append("skew") or 0)
    tile = choices.tile((16, 3), [([3, 1], "f32"), ((3, 1), "f32")], [3, 1])
    assert tile == [4, 3] and choices.bank_skew([(1000, ((64, 16),))], 16, 1) == 64
    tile.append(0)  # the caller's own list
    assert choices.tile([16, 3], COPY, (3, 1)) == [4, 3]
    assert calls == []  # equal arguments: remembered
    assert choices.tile([16, 4], COPY, (3, 1)) == [1, 1] and calls == ["tile"]
    assert TileChoices(target).bank_skew([columns], 16, 1) == 0  # a new run asks again


def test_lowered_linear_layer_streams_a_vector_a_cycle() -> None:
    """x @ W.T reads W down its columns: the skewed PMU lets every port deliver a vector a
    cycle, so the matmul unit is compute-bound: 16 lanes x 6 unrolled rows a cycle."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 128, bias=False)
    spec = ModelSpec(
        name="linear",
        module=layer,
        example_inputs=(torch.zeros(48, 64),),
        example_targets=(),
        loss_fn=None,
        optimizer=None,
        source_file="linear.py",
    )
    # One PCU (balance=False: parallelize-units would spread the matmul over copies).
    program = compile_in_memory(
        spec, inference=True, target=get_target("plasticine"), balance=False
    )
    section = program.sections[0]
    weight = next(p for p in section.pmus if p.name == "weight")
    assert weight.bank_skew == 64
    model = model_section(section, program.meta)
    (unit,) = [u for u in model.units if u.name.startswith("matmul")]
    assert all(p.bank_cycles == 1 for p in unit.ports[:-1])
    assert (unit.unroll, unit.ii, unit.bound) == (6, 1, "compute")
    assert unit.vectors == (128 // 16) * (48 // 6) * 64
