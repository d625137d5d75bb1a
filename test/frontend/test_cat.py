"""How the frontend concatenates: a few parts of one extent as one select, others padded."""

from __future__ import annotations

from xdsl.dialects.builtin import f32
from xdsl.ir import Block

from compiler.frontend.aten_transformer import SELECTED_PARTS, _cat
from compiler.frontend.emitter import Emitter, shape_of, tensor
from dialects.dataflow import PadOp, PointwiseOp


def _emitted(shapes: list[tuple[int, ...]], dim: int) -> tuple[tuple[int, ...], list[object]]:
    block = Block(arg_types=[tensor(s, f32) for s in shapes])
    out = _cat(Emitter(block), list(block.args), dim, f32)
    return shape_of(out), list(block.ops)


def _kinds(ops: list[object]) -> list[str]:
    return [op.kind.data.value for op in ops if isinstance(op, PointwiseOp)]


def test_a_cat_of_parts_of_one_extent_is_one_select_over_them_stacked() -> None:
    # Attention's query, key and value gradients, [8, 32, 48] each, cut from one projection:
    # their cat along the features is out[..., p, j] = part p [..., j], the parts stacked
    # before the features and the part index compared with 0 and 1: no pad and no add, so
    # after fusion one kernel reads the three parts (padding each took a kernel and a buffer
    # of the whole [8, 32, 144] result).
    shape, ops = _emitted([(8, 32, 48)] * 3, 2)
    assert shape == (8, 32, 144)
    assert not any(isinstance(op, PadOp) for op in ops)
    assert sorted(_kinds(ops)) == ["eq", "eq", "select", "select"]


def test_a_cat_of_parts_of_other_extents_or_of_many_parts_pads_them() -> None:
    shape, ops = _emitted([(4, 3), (4, 5)], 1)
    assert shape == (4, 8)
    assert sum(isinstance(op, PadOp) for op in ops) == 2 and _kinds(ops) == ["add"]
    shape, ops = _emitted([(4, 2)] * (SELECTED_PARTS + 1), 1)
    assert shape == (4, 2 * (SELECTED_PARTS + 1))
    assert sum(isinstance(op, PadOp) for op in ops) == SELECTED_PARTS + 1


def test_a_cat_of_views_of_one_tensor_pads_them() -> None:
    # Rotary's rotate_half: cat(-x[..., 16:], x[..., :16]). One kernel selecting between the
    # halves would read x through two accesses, which keeps it on one PCU; each pad splits.
    block = Block(arg_types=[tensor((4, 32), f32)])
    em = Emitter(block)
    (x,) = block.args
    low = em.extract_slice(x, [0, 0], [1, 1], [4, 16])
    high = em.extract_slice(x, [0, 16], [1, 1], [4, 16])
    out = _cat(em, [em.unary("neg", high), low], 1, f32)
    assert shape_of(out) == (4, 32)
    assert sum(isinstance(op, PadOp) for op in block.ops) == 2
