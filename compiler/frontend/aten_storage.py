"""ATen converters for ops that speak of storage: uninitialised tensors, copies, and views and
scatters through explicit strides (``as_strided``), which torch's decompositions and the
functionalisation of in-place code bring into graphs (MobileNet's in-place dropout, the
channels-last restride of a 1x1 adaptive pooling in Swin, and its gradient).

Our tensors are values without a layout: a tensor's elements are its row-major elements. An op
addressing a tensor's storage is converted when the storage is the tensor's own elements in some
order, which ``node.meta["val"]`` (torch's strides on the trace) tells: dense, without gaps or
overlaps. Storage offsets count from the tensor's first element.

Their table joins the others in ``compiler/frontend/registry.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from xdsl.dialects.builtin import f32, i64
from xdsl.ir import SSAValue

from compiler.frontend.converter import Call, ConversionError, ConverterTable, Result
from compiler.frontend.emitter import Emitter, is_float, shape_of

TABLE = ConverterTable()
"""This family's converters (the registry joins it with the others)."""
converts = TABLE.converts


@converts(
    "aten.empty_like.default",
    "aten.empty.memory_format",
    "aten.empty_strided.default",
    "aten.new_empty.default",
    "aten.new_empty_strided.default",
)
def _empty(c: Call) -> Result:
    """An uninitialised tensor: zeros (its values are whatever memory held; a program that
    reads them before writing them has no defined result, so zeros are as good as any)."""
    shape, elt = c.out()
    return c.em.fill(0, shape, elt)


@converts("aten.copy.default")
def _copy(c: Call) -> Result:
    """``self.copy_(src)`` made functional: ``src``'s values in ``self``'s shape and dtype."""
    shape, elt = c.out()
    return c.em.broadcast(c.em.cast(c.tensor("src"), elt), shape)


def _storage_order(val: Any, what: str) -> list[int]:
    """The permutation of a traced tensor's dims that lists its storage in row-major order
    (the identity for a contiguous tensor); refuses storage with gaps or overlaps."""
    if not isinstance(val, torch.Tensor):
        raise ConversionError(f"{what} without a traced layout")
    shape, strides = list(val.shape), list(val.stride())
    order = sorted(range(len(shape)), key=lambda d: (-strides[d], d))
    expected = 1
    for d in reversed(order):
        if shape[d] != 1 and strides[d] != expected:
            raise ConversionError(
                f"{what} of a tensor whose storage is not its own elements "
                f"(shape {shape}, strides {strides})"
            )
        expected *= shape[d]
    return order


def _addresses(
    size: Sequence[int], stride: Sequence[int], offset: int, extent: int, what: str
) -> None:
    """Refuse a strided view reaching outside ``[0, extent)``."""
    if any(s < 0 for s in stride):
        raise ConversionError(f"{what} with a negative stride {list(stride)}")
    if math.prod(size) == 0:
        return
    last = offset + sum(s * (n - 1) for s, n in zip(stride, size, strict=True))
    if offset < 0 or last >= extent:
        raise ConversionError(
            f"{what} reaching elements [{offset}, {last}] of a tensor of {extent} elements"
        )


def _in_storage_order(em: Emitter, x: SSAValue, val: Any, what: str) -> SSAValue:
    """``x`` transposed so that its row-major elements are its storage."""
    return em.transpose(x, _storage_order(val, what))


def _offset(c: Call, val: torch.Tensor) -> int:
    """The view's storage offset counted from the input's first element."""
    offset, own = c.a.get("storage_offset"), int(val.storage_offset())
    return (own if offset is None else int(offset)) - own


@converts("aten.as_strided.default", "aten.as_strided_copy.default")
def _as_strided(c: Call) -> Result:
    """``x.as_strided(size, stride, offset)``: a ``dataflow.as_strided`` view of ``x``'s
    storage (its elements in storage order)."""
    x = c.tensor("self")
    val = c.node.all_input_nodes[0].meta.get("val")
    size, stride = [int(n) for n in c.a["size"]], [int(s) for s in c.a["stride"]]
    storage = _in_storage_order(c.em, x, val, "as_strided")
    assert isinstance(val, torch.Tensor)
    offset = _offset(c, val)
    _addresses(size, stride, offset, math.prod(shape_of(x)), "as_strided")
    return c.em.as_strided(storage, size, stride, offset)


def _overlaps(size: Sequence[int], stride: Sequence[int]) -> bool:
    """Whether two points of a strided view share an address (dims sorted by stride: each
    stride must pass the reach of the smaller ones)."""
    reach = 0
    for s, n in sorted((s, n) for s, n in zip(stride, size, strict=True) if n > 1):
        if s <= reach:
            return True
        reach += s * (n - 1)
    return False


@converts("aten.as_strided_scatter.default")
def _as_strided_scatter(c: Call) -> Result:
    """``self`` with the view ``self.as_strided(size, stride, offset)`` replaced by ``src``
    (the gradient of ``as_strided``): ``src`` put at each view point's storage address (a
    ``dataflow.put_add`` into zeros by a flat index built from ``iota``s), the addresses hit
    taken from it, the rest from ``self``."""
    em = c.em
    x = c.tensor("self")
    shape, elt = c.out()
    if not is_float(elt):
        raise ConversionError(f"as_strided_scatter of {elt}")
    val = c.node.all_input_nodes[0].meta.get("val")
    size, stride = [int(n) for n in c.a["size"]], [int(s) for s in c.a["stride"]]
    order = _storage_order(val, "as_strided_scatter")
    assert isinstance(val, torch.Tensor)
    offset = _offset(c, val)
    total = math.prod(shape)
    _addresses(size, stride, offset, total, "as_strided_scatter")
    if _overlaps(size, stride):
        raise ConversionError(f"as_strided_scatter through overlapping strides {stride}")
    n = math.prod(size)
    if n == 0:
        return x
    address: SSAValue = em.fill(offset, size, i64)
    for d, s in enumerate(stride):
        if size[d] > 1:
            address = em.add(address, em.mul(em.iota(d, size), s))
    flat_address = em.reshape(address, (n,))
    src = em.reshape(em.broadcast(em.cast(c.tensor("src"), elt), size), (n,))
    placed = em.put_add(src, flat_address, 0, total)
    hit = em.binary("gt", em.put_add(em.fill(1.0, (n,), f32), flat_address, 0, total), 0.5, f32)
    storage = em.reshape(em.transpose(em.cast(x, elt), order), (total,))
    merged = em.select(hit, placed, storage)
    stored = em.reshape(merged, [shape[d] for d in order])
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return em.transpose(stored, inverse)
