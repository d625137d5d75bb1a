"""ATen converters for transformers: slices and concatenation, gather and scatter-add
(embedding, embedding bags), masks, safe softmax, dropout, cumulative sums, with their gradients.

Their table joins the others in ``compiler/frontend/registry.py``. The dataflow primitives they
build on:

- ``dataflow.extract_slice``: a view (``slice``, ``select``, ``split``, ``narrow``, ``flip``);
  its gradient is ``dataflow.pad`` (the slice placed into zeros), and ``cat`` adds up padded
  parts;
- ``dataflow.take`` / ``dataflow.put_add``: a gather along a dim by an index tensor, and its
  transpose, a scatter-add into zeros (``embedding`` and ``embedding_dense_backward``,
  ``index_select``, one-tensor ``index`` and ``index_put(accumulate=True)``); on the fabric an
  access with a data-dependent term;
- ``dataflow.random``: dropout's mask, ``rand`` and ``bernoulli``, from the section input
  ``rng_seed`` (a 0-d i64 the session sets every step) and a stream per random op.

Scaled dot-product attention is traced in its math form (``bmm``, masks built with ``tril`` or
comparisons of ``arange``s, ``_safe_softmax``), so it needs nothing of its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from xdsl.dialects.builtin import f32, i1, i64
from xdsl.ir import OpResult, SSAValue

from compiler.frontend.aten import arg_extreme, reduction_dims, truth
from compiler.frontend.converter import (
    Call,
    ConversionError,
    ConverterTable,
    Result,
    normalize_args,
)
from compiler.frontend.emitter import Emitter, elt_of, is_float, shape_of
from compiler.frontend.int_bounds import int_range
from dialects.dataflow import (
    AsStridedOp,
    BroadcastOp,
    ExtractSliceOp,
    PointwiseOp,
    ReshapeOp,
    TransposeOp,
)

TABLE = ConverterTable()
"""This family's converters (the registry joins it with the others)."""
converts = TABLE.converts

RNG_SEED = "rng_seed"
"""The section input (hyperparameter role, 0-d i64) that random ops hash: set by the session."""

RANDOM_OPS = frozenset(
    {
        "aten.native_dropout.default",
        "aten.rand.default",
        "aten.rand_like.default",
        "aten.bernoulli.p",
        "aten.bernoulli.default",
        "aten.uniform.default",
        "aten.exponential.default",
    }
)
"""Ops whose converters read ``RNG_SEED`` (dropout only when it is random: training, p > 0);
each draws one stream (``Emitter.random``)."""


def needs_rng_seed(name: str, args: Sequence[Any]) -> bool:
    """Whether a call of ``name`` with positional ``args`` draws random numbers."""
    if name not in RANDOM_OPS:
        return False
    if name != "aten.native_dropout.default":
        return True
    p = args[1] if len(args) > 1 else 0.0
    train = args[2] if len(args) > 2 else True
    return bool(train is not False and float(p) > 0)


# ------------------------------------------------------------------------------------------
# slices
# ------------------------------------------------------------------------------------------


def _slice_bounds(n: int, start: int | None, end: int | None, step: int) -> tuple[int, int]:
    """Python slice semantics (clamped): the first index and the number of elements."""
    if step < 1:
        raise ConversionError(f"slice step {step} (must be positive)")
    first, stop, _ = slice(start, end, step).indices(n)
    return first, max(0, -(-(stop - first) // step))


def _slice(em: Emitter, x: SSAValue, dim: int, first: int, count: int, step: int) -> SSAValue:
    shape = list(shape_of(x))
    rank = len(shape)
    offsets, steps = [0] * rank, [1] * rank
    offsets[dim], steps[dim], shape[dim] = (first if count else 0), step, count
    return em.extract_slice(x, offsets, steps, shape)


def _unslice(em: Emitter, g: SSAValue, dim: int, first: int, step: int, extent: int) -> SSAValue:
    """``g`` placed along ``dim`` at ``first, first + step, ...`` of ``extent`` zeros."""
    rank = len(shape_of(g))
    k = shape_of(g)[dim]
    low, high, interior = [0] * rank, [0] * rank, [0] * rank
    if k == 0:
        shape = list(shape_of(g))
        shape[dim] = extent
        return em.fill(0, shape, elt_of(g))
    low[dim] = first
    interior[dim] = step - 1
    high[dim] = extent - first - (k - 1) * step - 1
    return em.pad(g, low, high, interior)


@converts("aten.slice.Tensor", "aten.slice_copy.Tensor")
def _slice_op(c: Call) -> Result:
    x = c.tensor("self")
    rank = len(shape_of(x))
    dim = c.dim(rank)
    step = int(c.a.get("step") or 1)
    first, count = _slice_bounds(shape_of(x)[dim], c.a.get("start"), c.a.get("end"), step)
    return _slice(c.em, x, dim, first, count, step)


@converts("aten.narrow.default", "aten.narrow_copy.default")
def _narrow(c: Call) -> Result:
    x = c.tensor("self")
    dim = c.dim(len(shape_of(x)))
    start = int(c.a["start"]) % max(shape_of(x)[dim], 1)
    return _slice(c.em, x, dim, start, int(c.a["length"]), 1)


@converts("aten.select.int", "aten.select_copy.int")
def _select(c: Call) -> Result:
    x = c.tensor("self")
    dim = c.dim(len(shape_of(x)))
    index = int(c.a["index"]) % shape_of(x)[dim]
    return c.em.reshape(_slice(c.em, x, dim, index, 1, 1), c.out_shape)


@converts("aten.split.Tensor", "aten.split_with_sizes.default", "aten.unsafe_split.Tensor")
def _split(c: Call) -> Result:
    x = c.tensor("self")
    dim = c.dim(len(shape_of(x)))
    n = shape_of(x)[dim]
    if "split_sizes" in c.a:
        if not all(isinstance(s, int) for s in c.a["split_sizes"]):  # JetMoE's experts'
            raise ConversionError("split sizes set by the data (read with .tolist() or .item())")
        sizes = [int(s) for s in c.a["split_sizes"]]
    else:
        size = int(c.a["split_size"])
        sizes = [min(size, n - i) for i in range(0, n, size)] if size else [n]
    parts: list[SSAValue] = []
    start = 0
    for size in sizes:
        parts.append(_slice(c.em, x, dim, start, size, 1))
        start += size
    return tuple(parts)


@converts("aten.unbind.int")
def _unbind(c: Call) -> Result:
    x = c.tensor("self")
    dim = c.dim(len(shape_of(x)))
    shape = [s for i, s in enumerate(shape_of(x)) if i != dim]
    return tuple(
        c.em.reshape(_slice(c.em, x, dim, i, 1, 1), shape) for i in range(shape_of(x)[dim])
    )


@converts("aten.flip.default")
def _flip(c: Call) -> Result:
    x = c.tensor("self")
    shape = shape_of(x)
    dims = {d % len(shape) for d in c.a["dims"]}
    offsets = [n - 1 if d in dims and n > 0 else 0 for d, n in enumerate(shape)]
    steps = [-1 if d in dims else 1 for d in range(len(shape))]
    if not any(n > 1 for d, n in enumerate(shape) if d in dims):
        return x
    return c.em.extract_slice(x, offsets, steps, shape)


@converts("aten.slice_backward.default")
def _slice_backward(c: Call) -> Result:
    g = c.tensor("grad_output")
    sizes = [int(s) for s in c.a["input_sizes"]]
    dim = c.dim(len(sizes))
    step = int(c.a.get("step") or 1)
    first, count = _slice_bounds(sizes[dim], c.a.get("start"), c.a.get("end"), step)
    if count != shape_of(g)[dim]:
        raise ConversionError(f"slice_backward of {count} elements, the gradient has another")
    return _unslice(c.em, g, dim, first, step, sizes[dim])


@converts("aten.select_backward.default")
def _select_backward(c: Call) -> Result:
    g = c.tensor("grad_output")
    sizes = [int(s) for s in c.a["input_sizes"]]
    dim = c.dim(len(sizes))
    index = int(c.a["index"]) % sizes[dim]
    kept = list(sizes)
    kept[dim] = 1
    return _unslice(c.em, c.em.reshape(g, kept), dim, index, 1, sizes[dim])


def _scatter_into(c: Call, src: SSAValue, dim: int, first: int, step: int) -> SSAValue:
    """``self`` with ``src`` written along ``dim`` at ``first, first + step, ...``: ``src``
    placed there among zeros (``_unslice``), chosen where a placed mask of ones is set."""
    em = c.em
    x = c.tensor("self")
    extent = shape_of(x)[dim]
    placed = _unslice(em, em.cast(src, elt_of(x)), dim, first, step, extent)
    where = _unslice(em, em.fill(True, shape_of(src), i1), dim, first, step, extent)
    return em.select(where, placed, x)


@converts("aten.slice_scatter.default")
def _slice_scatter(c: Call) -> Result:
    """``x[..., start:end:step, ...] = src`` as a value (the functional form of a slice
    assignment, as torch traces ``x[:, 1:] = y``)."""
    x = c.tensor("self")
    src = c.tensor("src")
    dim = c.dim(len(shape_of(x)))
    step = int(c.a.get("step") or 1)
    first, count = _slice_bounds(shape_of(x)[dim], c.a.get("start"), c.a.get("end"), step)
    if count != shape_of(src)[dim]:
        raise ConversionError(f"slice_scatter of {shape_of(src)[dim]} elements into {count}")
    return _scatter_into(c, src, dim, first, step) if count else x


@converts("aten.select_scatter.default")
def _select_scatter(c: Call) -> Result:
    """``x[..., index, ...] = src`` as a value (``src`` without the dim)."""
    x = c.tensor("self")
    shape = list(shape_of(x))
    dim = c.dim(len(shape))
    index = int(c.a["index"]) % shape[dim]
    kept = list(shape)
    kept[dim] = 1
    return _scatter_into(c, c.em.reshape(c.tensor("src"), kept), dim, index, 1)


SELECTED_PARTS = 4
"""A ``cat`` of at most this many parts of one extent is one select over the parts stacked
(``_stacked``); a longer one, or one of parts of different extents, pads and adds them."""


def _cat(em: Emitter, xs: Sequence[SSAValue], dim: int, elt: Any) -> SSAValue:
    """Each part padded to the whole extent along ``dim``, the parts added up; or, for a few
    parts of one extent, ``_stacked``."""
    xs = [em.cast(x, elt) for x in xs if shape_of(x) != (0,)]  # torch skips legacy empty 1-d
    if len(xs) == 1:
        return xs[0]
    if len(xs) <= SELECTED_PARTS and len({shape_of(x)[dim] for x in xs}) == 1:
        roots = [_viewed(x) for x in xs]
        if len(set(roots)) == len(roots):
            return _stacked(em, xs, dim)
    total = sum(shape_of(x)[dim] for x in xs)
    out: SSAValue | None = None
    start = 0
    for x in xs:
        n = shape_of(x)[dim]
        part = _unslice(em, x, dim, start, 1, total)
        start += n
        out = part if out is None else em.add(out, part)
    assert out is not None
    return out


def _viewed(x: SSAValue) -> SSAValue:
    """The tensor ``x`` is a view of, through views and one-operand pointwise ops (which fuse
    into their reader, reading that tensor through their access)."""
    while isinstance(x, OpResult):
        op = x.owner
        if isinstance(op, (ExtractSliceOp, ReshapeOp, TransposeOp, BroadcastOp, AsStridedOp)):
            x = op.input
        elif isinstance(op, PointwiseOp) and len(op.inputs) == 1:
            x = op.inputs[0]
        else:
            break
    return x


def _stacked(em: Emitter, xs: Sequence[SSAValue], dim: int) -> SSAValue:
    """The parts ``xs`` (one shape) concatenated along ``dim`` as one elementwise select over
    them stacked on a new axis before ``dim``, flattened into it: ``out[..., p, j, ...] =
    xs[p][..., j, ...]``, each part read at every point, the part index compared with each
    ``p``. One kernel, where padding each part and adding them up takes a kernel a part and a
    buffer of the whole result each (attention's query, key and value gradients, cut from
    one projection: its backward's ``cat``). Only for parts that are not views of one tensor
    (``_viewed``; rotary's halves of one vector): the kernel would read that tensor through two
    accesses, which keeps it on one PCU (parallelize-units), where each pad splits."""
    shape = shape_of(xs[0])
    rank = len(shape)
    parts = [em.reshape(x, (*shape[:dim], 1, *shape[dim:])) for x in xs]
    which = em.iota(dim, (*[1] * dim, len(xs), *[1] * (rank - dim)))
    out = parts[-1]
    for p in reversed(range(len(xs) - 1)):
        out = em.select(em.binary("eq", which, p), parts[p], out)
    stacked = shape_of(out)
    return em.reshape(out, (*stacked[:dim], len(xs) * shape[dim], *stacked[dim + 2 :]))


@converts("aten.cat.default", "aten.concat.default", "aten.concatenate.default")
def _cat_op(c: Call) -> Result:
    xs = [v for v in c.a["tensors"] if isinstance(v, SSAValue)]
    if len(xs) != len(c.a["tensors"]):
        raise ConversionError("cat of non-tensor values")
    rank = len(c.out_shape)
    return _cat(c.em, xs, c.dim(rank), c.out_elt)


@converts("aten.stack.default")
def _stack(c: Call) -> Result:
    xs = [v for v in c.a["tensors"] if isinstance(v, SSAValue)]
    rank = len(c.out_shape)
    dim = c.dim(rank)
    parts = []
    for x in xs:
        shape = list(shape_of(x))
        shape.insert(dim, 1)
        parts.append(c.em.reshape(x, shape))
    return _cat(c.em, parts, dim, c.out_elt)


# ------------------------------------------------------------------------------------------
# masks, safe softmax, any/all, cumulative sums
# ------------------------------------------------------------------------------------------


def _triangle(c: Call, keep: str) -> Result:
    """``x`` where ``col - row`` compares with ``diagonal`` by ``keep`` (le: tril, ge: triu)."""
    x, em = c.tensor("self"), c.em
    shape = shape_of(x)
    if len(shape) < 2:
        raise ConversionError("tril/triu of a tensor of rank < 2")
    rows, cols = shape[-2], shape[-1]
    offset = em.sub(em.iota(1, (rows, cols)), em.iota(0, (rows, cols)))
    mask = em.binary(keep, offset, int(c.a.get("diagonal") or 0), i64)
    return em.select(mask, x, em.scalar(0, elt_of(x)))


@converts("aten.tril.default")
def _tril(c: Call) -> Result:
    return _triangle(c, "le")


@converts("aten.triu.default")
def _triu(c: Call) -> Result:
    return _triangle(c, "ge")


@converts("aten._safe_softmax.default")
def _safe_softmax(c: Call) -> Result:
    """Softmax whose fully masked rows (all ``-inf``) are 0 rather than NaN."""
    x, em = c.em.cast(c.tensor("self"), c.out_elt), c.em
    dim = c.dim(len(shape_of(x)))
    m = em.reduce("max", x, [dim], True)
    m = em.select(em.binary("eq", m, float("-inf")), 0.0, m)
    e = em.unary("exp", em.sub(x, m))
    s = em.reduce("sum", e, [dim], True)
    return em.div(e, em.select(em.binary("eq", s, 0.0), 1.0, s))


def _any_all(c: Call, kind: str) -> Result:
    x = truth(c.em, c.a["self"])
    rank = len(shape_of(x))
    dim = c.a.get("dim")
    dims = reduction_dims(dim, rank)
    return c.em.reduce(kind, x, dims, bool(c.a.get("keepdim", False)))


@converts("aten.any.dim", "aten.any.dims", "aten.any.default")
def _any(c: Call) -> Result:
    return _any_all(c, "max")


@converts("aten.all.dim", "aten.all.dims", "aten.all.default")
def _all(c: Call) -> Result:
    return _any_all(c, "min")


@converts("aten.cumsum.default")
def _cumsum(c: Call) -> Result:
    """``out[..., i, ...] = sum_{j <= i} x[..., j, ...]``: a masked sum over a second copy of
    ``dim`` (quadratic in the extent of ``dim``, fine for sequence lengths)."""
    em = c.em
    x = em.cast(c.tensor("self"), c.out_elt)
    shape = shape_of(x)
    if not shape:
        return x
    dim = c.dim(len(shape))
    n = shape[dim]
    # dims [..., i, j, ...]: x varies over j, the mask j <= i
    pair = (*shape[:dim], n, n, *shape[dim + 1 :])
    spread = (*shape[:dim], 1, n, *shape[dim + 1 :])
    xs = em.broadcast(em.reshape(x, spread), pair)
    mask_shape = [1] * len(pair)
    mask_shape[dim], mask_shape[dim + 1] = n, n
    mask = em.binary("le", em.iota(dim + 1, mask_shape), em.iota(dim, mask_shape), i64)
    return em.reduce("sum", em.select(mask, xs, em.scalar(0, elt_of(x))), [dim + 1], False)


# ------------------------------------------------------------------------------------------
# gather and scatter-add
# ------------------------------------------------------------------------------------------


@converts("aten.embedding.default")
def _embedding(c: Call) -> Result:
    return c.em.take(c.tensor("weight"), c.tensor("indices"), 0)


@converts("aten.embedding_dense_backward.default")
def _embedding_backward(c: Call) -> Result:
    em = c.em
    g, idx = c.tensor("grad_output"), c.tensor("indices")
    if c.a.get("scale_grad_by_freq"):
        raise ConversionError("scale_grad_by_freq=True")
    padding = int(c.a.get("padding_idx", -1))
    if padding >= 0:
        keep = em.binary("ne", idx, padding, i64)
        keep = em.reshape(keep, (*shape_of(idx), 1))
        g = em.select(keep, g, em.scalar(0, elt_of(g)))
    return em.put_add(g, idx, 0, int(c.a["num_weights"]))


@converts("aten.index_select.default")
def _index_select(c: Call) -> Result:
    x, idx = c.tensor("self"), c.tensor("index")
    dim = c.dim(len(shape_of(x)))
    return c.em.take(x, c.em.reshape(idx, (math.prod(shape_of(idx)),)), dim)


@converts("aten.index_add.default")
def _index_add(c: Call) -> Result:
    """``x`` plus ``alpha * source`` added at ``index`` along ``dim`` (the gradient of
    ``index_select``)."""
    em = c.em
    x, source = c.tensor("self"), c.tensor("source")
    dim = c.dim(len(shape_of(x)))
    alpha = c.a.get("alpha", 1)
    if alpha != 1:
        source = em.mul(source, alpha)
    return em.add(x, em.put_add(source, c.tensor("index"), dim, shape_of(x)[dim]))


@converts("aten.gather.default")
def _gather(c: Call) -> Result:
    x = c.tensor("self")
    if c.a.get("sparse_grad"):
        raise ConversionError("sparse_grad=True")
    dim = c.dim(len(shape_of(x)))
    return c.em.gather(x, c.tensor("index"), dim)


@converts("aten.scatter_add.default")
def _scatter_add(c: Call) -> Result:
    """``x`` plus ``src`` added at ``index`` along ``dim`` (the gradient of ``gather``)."""
    x = c.tensor("self")
    dim = c.dim(len(shape_of(x)))
    added = c.em.scatter_add(c.tensor("src"), c.tensor("index"), dim, shape_of(x))
    return c.em.add(x, added)


def _flat_index(c: Call, x: SSAValue) -> tuple[int, SSAValue, tuple[int, ...]]:
    """``indices`` (Nones, then integer tensors on consecutive dims ``a .. a+k-1``) as one index
    into ``x`` with those dims merged: ``(a, flat index, merged shape)``. The index tensors
    broadcast together; the flat index is ``sum_j t_j * (row-major stride of dim a+j)``, a
    negative ``t_j`` counting from the end of its dim as in torch (Falcon's ``qkv[..., [-2], :]``)
    unless its bounds (``int_range``) show it is not negative."""
    em = c.em
    indices = list(c.a["indices"])
    while indices and indices[-1] is None:
        indices.pop()
    a = 0
    while a < len(indices) and indices[a] is None:
        a += 1
    tensors = indices[a:]
    if not tensors or any(t is None for t in tensors):
        raise ConversionError("index tensors on dims that are not next to each other")
    for t in tensors:
        if not isinstance(t, SSAValue) or elt_of(t) == i1 or is_float(elt_of(t)):
            raise ConversionError("indexing with a boolean mask or a non-integer tensor")
    shape = shape_of(x)
    k = len(tensors)
    merged = (*shape[:a], math.prod(shape[a : a + k]), *shape[a + k :])
    index_nodes = c.node.kwargs.get("indices", c.node.args[1])
    assert isinstance(index_nodes, list | tuple), index_nodes
    nodes = list(index_nodes)[a : a + k]
    flat: SSAValue | None = None
    for j, t in enumerate(tensors):
        t = em.cast(t, i64)
        bounds = int_range(nodes[j])
        if bounds is None or bounds[0] < 0:  # torch counts a negative index from the end
            t = em.select(em.binary("lt", t, 0, i64), em.add(t, shape[a + j]), t)
        stride = math.prod(shape[a + j + 1 : a + k])
        term = t if stride == 1 else em.mul(t, stride)
        flat = term if flat is None else em.add(flat, term)
    assert flat is not None
    return a, flat, merged


SCATTER_MOST = 64
"""The most values a row ``scatter`` writes (each one a few ops: topk's gradient writes ``k``)."""


@converts("aten.scatter.src", "aten.scatter.value")
def _scatter(c: Call) -> Result:
    """``scatter(x, dim, index, src)``: ``x`` with ``src`` (or a number) written at ``index``
    along ``dim`` (the gradient of ``max(x, dim)`` and of ``topk``, one-hot labels). A row's
    values are written in turn, each where its index points: where two point at one place
    the later one stays, as torch's CPU kernel writes them (torch leaves that order open)."""
    em = c.em
    x = c.tensor("self")
    rank = len(shape_of(x))
    dim = c.dim(rank)
    index = c.tensor("index")
    at = shape_of(index)
    deep = at[dim] if rank else 1
    if deep > SCATTER_MOST:
        raise ConversionError(
            f"scatter of {deep} values a row along dim {dim} (at most {SCATTER_MOST} are "
            "supported yet)"
        )
    one = (*at[:dim], 1, *at[dim + 1 :]) if rank else at
    src = em.cast(c.tensor("src"), elt_of(x)) if "src" in c.a else None
    out = x
    for j in range(deep):
        start = [0] * rank
        if rank:
            start[dim] = j
        where = em.extract_slice(index, start, [1] * rank, one)
        if src is not None:
            value = em.extract_slice(src, start, [1] * rank, one)
        else:
            value = em.fill(c.a["value"], one, elt_of(x))
        writes = em.scatter_add(em.fill(1.0, one, f32), where, dim, shape_of(x))
        written = em.binary("ne", writes, 0.0)
        out = em.select(written, em.scatter_add(value, where, dim, shape_of(x)), out)
    return out


@converts("aten.index.Tensor", "aten._unsafe_index.Tensor")  # unsafe: upsampling, padding
def _index(c: Call) -> Result:
    x = c.tensor("self")
    dim, idx, merged = _flat_index(c, x)
    return c.em.take(c.em.reshape(x, merged), idx, dim)


@converts("aten.index_put.default", "aten._unsafe_index_put.default")
def _index_put(c: Call) -> Result:
    """``index_put(x, indices, values, accumulate)``: ``x`` plus the values scattered, or
    without ``accumulate`` the values written over (``_overwritten``)."""
    em = c.em
    x = c.tensor("self")
    dim, idx, merged = _flat_index(c, x)
    want = (*merged[:dim], *shape_of(idx), *merged[dim + 1 :])
    values = em.broadcast(em.as_tensor(c.a["values"], elt_of(x)), want)
    if not c.a.get("accumulate"):
        return em.reshape(_overwritten(em, em.reshape(x, merged), idx, values, dim), shape_of(x))
    added = em.put_add(values, idx, dim, merged[dim])
    return em.add(x, em.reshape(added, shape_of(x)))


def _overwritten(em: Emitter, x: SSAValue, idx: SSAValue, values: SSAValue, dim: int) -> SSAValue:
    """``x`` with ``values`` written at rows ``idx`` along ``dim`` (``index_put`` without
    accumulating: ``inverse[perm] = arange(n)``, a mixture of experts' way back from its sorted
    tokens): each row of ``x`` takes the value of the last index pointing at it, in the
    index's order, as torch's CPU kernel writes them (torch leaves that order open); a row
    no index points at keeps its value. Every index is compared with every row."""
    shape = shape_of(x)
    n, rows = math.prod(shape_of(idx)), shape[dim]
    order = em.iota(0, (n, 1))
    points = em.binary("eq", em.reshape(idx, (n, 1)), em.iota(1, (1, rows)))
    last = em.reduce("max", em.select(points, order, -1), [0], False)  # [rows]
    flat = em.reshape(values, (*shape[:dim], n, *shape[dim + 1 :]))
    taken = em.take(flat, em.binary("max", last, 0), dim)
    along = [rows if d == dim else 1 for d in range(len(shape))]
    written = em.reshape(em.binary("ge", last, 0), along)
    return em.select(written, taken, x)


# ------------------------------------------------------------------------------------------
# embedding bags
# ------------------------------------------------------------------------------------------

BAG_MODES = ("sum", "mean", "max")
"""``_embedding_bag``'s ``mode`` argument, by number."""


@dataclass
class _Bags:
    """Which bag each of ``_embedding_bag``'s ``n`` flat indices falls in: ``length``
    consecutive indices a bag when the offsets are an evenly spaced ``arange`` (the form
    ``F.embedding_bag`` builds for a 2-d input), else ``member``, a ``[bags, n]`` mask
    computed on the fabric from the offsets' values (an index belongs to the last bag whose
    offset is not past it)."""

    bags: int
    n: int
    length: int | None
    member: SSAValue | None
    """i1 ``[bags, n]`` (None when ``length`` is set)."""

    def sizes(self, em: Emitter) -> SSAValue:
        """The number of indices in each bag (i64 ``[bags]``)."""
        if self.member is None:
            return em.fill(self.length or 0, (self.bags,), i64)
        return em.reduce("sum", em.cast(self.member, i64), [1], False)

    def divisor(self, em: Emitter, elt: Any) -> SSAValue:
        """Each bag's size, at least 1, as ``[bags, 1]`` of ``elt``: ``mean``'s divisor (an
        empty bag's mean is 0, as torch's)."""
        return em.reshape(em.cast(em.binary("max", self.sizes(em), 1), elt), (self.bags, 1))

    def offset2bag(self, em: Emitter) -> SSAValue:
        """The bag of each index (i64 ``[n]``), as torch's second result."""
        if self.member is None:
            return em.reshape(em.iota(0, (self.bags, self.length or 0)), (self.n,))
        position = em.iota(0, (self.bags, self.n))
        return em.reduce("sum", em.select(self.member, position, 0), [0], False)

    def total(self, em: Emitter, rows: SSAValue, weights: SSAValue | None) -> SSAValue:
        """Each bag's ``rows`` (``[n, d]``), times ``weights`` (``[n]``) if given, added."""
        d = shape_of(rows)[1]
        if self.member is None:
            spread = em.reshape(rows, (self.bags, self.n // self.bags, d))
            if weights is not None:
                spread = em.mul(spread, em.reshape(weights, (self.bags, self.n // self.bags, 1)))
            return em.reduce("sum", spread, [1], False)
        share = em.cast(self.member, elt_of(rows))
        if weights is not None:
            share = em.mul(share, em.reshape(weights, (1, self.n)))
        return em.matmul(share, rows)

    def spread(self, em: Emitter, grad: SSAValue) -> SSAValue:
        """Each index given its bag's row of ``grad`` (``[bags, d]`` -> ``[n, d]``; zeros for
        an index in no bag): the transpose of ``total``."""
        d = shape_of(grad)[1]
        if self.member is None:
            length = self.n // self.bags
            spread = em.broadcast(em.reshape(grad, (self.bags, 1, d)), (self.bags, length, d))
            return em.reshape(spread, (self.n, d))
        return em.matmul(em.transpose(em.cast(self.member, elt_of(grad)), [1, 0]), grad)

    def maximum(self, em: Emitter, rows: SSAValue, indices: SSAValue) -> tuple[SSAValue, SSAValue]:
        """Each bag's largest ``rows`` feature by feature and the index (a row of the
        weight) it came from, the first as torch's; 0 and 0 for an empty bag."""
        n, d = shape_of(rows)
        ids = em.cast(indices, i64)
        if self.member is None:
            shape = (self.bags, n // self.bags, d)
            values = em.reshape(rows, shape)
            ids = em.broadcast(em.reshape(ids, (*shape[:2], 1)), shape)
        else:
            shape = (self.bags, n, d)
            inside = em.reshape(self.member, (self.bags, n, 1))
            values = em.select(inside, em.reshape(rows, (1, n, d)), float("-inf"))
            ids = em.broadcast(em.reshape(ids, (1, n, 1)), shape)
        top = em.reduce("max", values, [1], False)
        where = em.reshape(em.gather(ids, arg_extreme(em, values, "max", 1), 1), (self.bags, d))
        if self.member is None:
            return top, where
        filled = em.reshape(em.binary("gt", self.sizes(em), 0), (self.bags, 1))
        return em.select(filled, top, 0.0), em.select(filled, where, 0)


_ARANGES = frozenset({"aten.arange.start_step", "aten.arange.start", "aten.arange.default"})


def _bags(c: Call, bags: int) -> _Bags:
    """The bags of ``c``'s ``indices`` and ``offsets`` (``bags`` of them: one fewer than the
    offsets with ``include_last_offset``, the last offset then the end of the last bag)."""
    em = c.em
    n = shape_of(c.tensor("indices"))[0]
    offsets_node = c.node.kwargs.get("offsets", c.node.args[2])
    if isinstance(offsets_node, torch.fx.Node) and str(offsets_node.target) in _ARANGES:
        a = normalize_args(offsets_node, offsets_node.args, offsets_node.kwargs)
        start, step = a.get("start") or 0, a.get("step") or 1
        if start == 0 and isinstance(step, int) and bags and step * bags == n:
            return _Bags(bags, n, step, None)
    offsets = em.cast(c.tensor("offsets"), i64)
    grid = (bags, n)
    position = em.iota(1, grid)
    starts = em.extract_slice(offsets, [0], [1], [bags])
    started = em.binary("le", em.reshape(starts, (bags, 1)), position)
    bag = em.sub(em.reduce("sum", em.cast(started, i64), [0], True), 1)
    member = em.binary("eq", em.broadcast(bag, grid), em.iota(0, grid))
    if shape_of(offsets)[0] == bags + 1:
        end = em.extract_slice(offsets, [bags], [1], [1])
        member = em.binary("and", member, em.binary("lt", position, end))
    return _Bags(bags, n, None, member)


def _bag_mode(c: Call) -> str:
    """The mode of a bag op, refusing the options not supported yet."""
    padding = c.a.get("padding_idx")
    if padding is not None and int(padding) >= 0:
        raise ConversionError(f"padding_idx={padding} is not supported yet")
    if c.a.get("scale_grad_by_freq"):
        raise ConversionError("scale_grad_by_freq=True is not supported yet")
    if c.a.get("sparse"):
        raise ConversionError("sparse=True (a sparse gradient) is not supported yet")
    return BAG_MODES[int(c.a["mode"])]


@converts("aten._embedding_bag.default", "aten._embedding_bag_forward_only.default")
def _embedding_bag(c: Call) -> Result:
    """``nn.EmbeddingBag``: the weight's rows at ``indices`` summed, averaged or maxed over
    each bag (optionally weighted by ``per_sample_weights``), with torch's other results:
    each index's bag, each bag's size and, for ``max``, the rows the maxima came from."""
    em = c.em
    mode = _bag_mode(c)
    indices = c.tensor("indices")
    out_shape, elt = c.out(0)
    bags = _bags(c, out_shape[0])
    rows = em.take(c.tensor("weight"), indices, 0)
    weights = c.a.get("per_sample_weights")
    sizes = bags.sizes(em)
    if mode == "max":
        out, where = bags.maximum(em, rows, indices)
    else:
        out = bags.total(em, rows, c.tensor("per_sample_weights") if weights is not None else None)
        if mode == "mean":
            out = em.div(out, bags.divisor(em, elt))
        where = sizes if mode == "mean" else em.fill(0, c.out(3)[0], i64)
    offset2bag = bags.offset2bag(em) if c.out(1)[0] != (0,) else em.fill(0, (0,), i64)
    size_out = sizes if mode != "sum" else em.fill(0, c.out(2)[0], i64)
    return out, offset2bag, size_out, where


@converts("aten._embedding_bag_backward.default")
def _embedding_bag_backward(c: Call) -> Result:
    """The weight's gradient: ``max`` adds each bag's gradient at the rows its maxima came
    from (``maximum_indices``; none from an empty bag); ``sum`` and ``mean`` give each index
    its bag's gradient (divided by the bag's size for ``mean``, times its weight) and add it
    at its row."""
    em = c.em
    mode = _bag_mode(c)
    grad = c.tensor("grad")
    bags = _bags(c, shape_of(grad)[0])
    extent = int(c.a["num_weights"])
    sizes = bags.sizes(em)
    if mode == "max":
        filled = em.reshape(em.binary("gt", sizes, 0), (bags.bags, 1))
        kept = em.select(filled, grad, em.scalar(0, elt_of(grad)))
        return em.scatter_add(kept, c.tensor("maximum_indices"), 0, (extent, shape_of(grad)[1]))
    if mode == "mean":
        grad = em.div(grad, bags.divisor(em, elt_of(grad)))
    each = bags.spread(em, grad)
    if c.a.get("per_sample_weights") is not None:
        each = em.mul(each, em.reshape(c.tensor("per_sample_weights"), (bags.n, 1)))
    return em.put_add(each, c.tensor("indices"), 0, extent)


@converts("aten._embedding_bag_per_sample_weights_backward.default")
def _embedding_bag_per_sample_weights_backward(c: Call) -> Result:
    """The gradient of ``per_sample_weights`` (mode ``sum``): each index's bag gradient
    dotted with its row of the weight."""
    em = c.em
    mode = _bag_mode(c)
    if mode != "sum":
        raise ConversionError(f"per_sample_weights with mode {mode!r} (torch takes only 'sum')")
    grad = c.tensor("grad")
    bags = _bags(c, shape_of(grad)[0])
    rows = em.take(c.tensor("weight"), c.tensor("indices"), 0)
    return em.reduce("sum", em.mul(bags.spread(em, grad), rows), [1], False)


# ------------------------------------------------------------------------------------------
# dropout
# ------------------------------------------------------------------------------------------


@converts("aten.native_dropout.default")
def _native_dropout(c: Call) -> Result:
    """``(x * keep / (1 - p), keep)`` with ``keep = u >= p``, ``u`` uniform from the fabric's
    counter-based generator (so ``P(keep) = 1 - p``); eval or ``p == 0``: ``(x, all true)``."""
    em = c.em
    x = c.tensor("input")
    p = float(c.a["p"])
    shape = shape_of(x)
    if not needs_rng_seed("aten.native_dropout.default", [x, p, c.a.get("train")]):
        return x, em.fill(1, shape, i1)
    keep = em.binary("ge", _uniform(c, shape), p, f32)
    scale = 0.0 if p >= 1 else 1.0 / (1.0 - p)
    return em.mul(em.mul(x, em.cast(keep, elt_of(x))), scale), keep


def _uniform(c: Call, shape: Sequence[int]) -> SSAValue:
    """Uniform f32 numbers in ``[0, 1)`` of ``shape``: the op's own stream of the fabric's
    counter-based generator."""
    seed = c.em.section_args.get(RNG_SEED)
    if seed is None:
        raise ConversionError("random numbers outside the forward section (no rng_seed input)")
    return c.em.random(seed, shape)


@converts("aten.rand.default", "aten.rand_like.default")
def _rand(c: Call) -> Result:
    """``torch.rand``: the fabric's uniform numbers (Swin's stochastic depth draws them)."""
    shape, elt = c.out()
    if not is_float(elt):
        raise ConversionError(f"rand of dtype {elt}")
    return c.em.cast(_uniform(c, shape), elt)


@converts("aten.bernoulli.p", "aten.bernoulli.default")
def _bernoulli(c: Call) -> Result:
    """``1`` with probability ``p`` (a number, or a tensor of ``self``'s shape), else ``0``, in
    ``self``'s dtype: ``u < p`` (in-place dropout on the CPU draws its mask so)."""
    shape, elt = c.out()
    p = c.a.get("p") if "aten.bernoulli.p" == str(c.node.target) else c.tensor("self")
    if not isinstance(p, SSAValue | float | int):
        raise ConversionError(f"bernoulli with p of type {type(p).__name__}")
    return c.em.cast(c.em.binary("lt", _uniform(c, shape), p, f32), elt)


@converts("aten.uniform.default")
def _uniform_between(c: Call) -> Result:
    """``Tensor.uniform_(low, high)``: ``u * (high - low) + low`` of the fabric's ``u``, in
    ``self``'s dtype (PhiMoE's router, and its jitter of the hidden states)."""
    shape, elt = c.out()
    low, high = float(c.a.get("from", 0.0)), float(c.a.get("to", 1.0))
    return c.em.cast(c.em.add(c.em.mul(_uniform(c, shape), high - low), low), elt)


@converts("aten.exponential.default")
def _exponential(c: Call) -> Result:
    """``Tensor.exponential_(lambd)``: ``log(1 - u) / -lambd`` of the fabric's ``u`` in ``[0,
    1)``, so finite (PhiMoE's router: Gumbel noise as the log of exponential numbers)."""
    shape, elt = c.out()
    lambd = float(c.a.get("lambd", 1.0))
    gap = c.em.sub(1.0, _uniform(c, shape))
    return c.em.cast(c.em.div(c.em.unary("log", gap), -lambd), elt)


@converts("aten.native_dropout_backward.default")
def _native_dropout_backward(c: Call) -> Result:
    em = c.em
    g = c.tensor("grad_output")
    mask = em.cast(c.tensor("mask"), elt_of(g))
    return em.mul(em.mul(g, mask), float(c.a["scale"]))
