"""A small IR builder for dataflow ops: shapes, element types and locations handled in one place.

Converters (compiler/frontend/aten.py) call these helpers instead of building ops by hand: the
helpers compute result types (numpy broadcasting, reductions, matmul), insert casts and 0-d
``dataflow.fill`` constants for Python scalars, and stamp every op with the current location.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.builder import Builder
from xdsl.dialects.builtin import (
    AnyFloat,
    FileLineColLoc,
    IntAttr,
    StringAttr,
    TensorType,
    bf16,
    f32,
    i1,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, OpResult, SSAValue
from xdsl.rewriter import InsertPoint

from dialects.dataflow import (
    BINARY_KINDS,
    COMPARISON_KINDS,
    LOGICAL_KINDS,
    AsStridedOp,
    BroadcastOp,
    ExtractSliceOp,
    FillOp,
    GatherOp,
    IotaOp,
    MatmulOp,
    PadOp,
    PointwiseOp,
    PutAddOp,
    RandomOp,
    ReduceOp,
    ReshapeOp,
    ScatterAddOp,
    TakeOp,
    TransposeOp,
    broadcast_shapes,
    padded_shape,
)

Scalar = float | int | bool
"""A Python number standing for a 0-d constant."""

Operand = SSAValue | Scalar


class ShapeError(Exception):
    """Operands that do not fit together (a bug in a converter or an unsupported form)."""


def tensor(shape: Sequence[int], elt: Attribute) -> TensorType[Attribute]:
    """``tensor<shape x elt>``."""
    return TensorType(elt, list(shape))


def shape_of(v: SSAValue) -> tuple[int, ...]:
    """The static shape of a tensor value."""
    t = v.type
    assert isinstance(t, TensorType)
    return tuple(t.get_shape())


def elt_of(v: SSAValue) -> Attribute:
    """The element type of a tensor value."""
    t = v.type
    assert isinstance(t, TensorType)
    return t.element_type


def is_float(elt: Attribute) -> bool:
    """Whether ``elt`` is a float type."""
    return isinstance(elt, AnyFloat)


def promote(*xs: Operand) -> Attribute:
    """The common element type of tensors and Python scalars (float > i64 > i1)."""
    elts: list[Attribute] = []
    for x in xs:
        if isinstance(x, SSAValue):
            elts.append(elt_of(x))
        elif isinstance(x, bool):
            elts.append(i1)
        elif isinstance(x, int):
            elts.append(i64)
        else:
            elts.append(f32)
    if any(is_float(e) for e in elts):
        return f32
    if any(e == i64 for e in elts):
        return i64
    return i1


class Emitter:
    """Appends dataflow ops at the end of a block, each with the current location."""

    def __init__(self, block: Block) -> None:
        self.builder = Builder(InsertPoint.at_end(block))
        self.loc: FileLineColLoc = FileLineColLoc(StringAttr("unknown"), IntAttr(0), IntAttr(0))
        self._scalars: dict[tuple[str, Scalar | str], SSAValue] = {}
        self.section_args: dict[str, SSAValue] = {}
        """The section's block arguments by DRAM name (converters needing ``rng_seed``)."""
        self.random_streams = 0
        """Random ops emitted so far: the next one's stream."""

    def _emit(self, op: Operation) -> SSAValue:
        op.location = self.loc
        self.builder.insert(op)
        return op.results[0]

    # constants ---------------------------------------------------------------------------

    def fill(self, value: Scalar, shape: Sequence[int], elt: Attribute) -> SSAValue:
        """A splat constant."""
        if is_float(elt):
            value = float(value)
        elif elt == i1:
            value = int(bool(value))
        else:
            if isinstance(value, float) and not value.is_integer():
                raise ShapeError(f"fill of an integer tensor with {value}")
            value = int(value)
        return self._emit(FillOp(value, tensor(shape, elt)))

    def scalar(self, value: Scalar, elt: Attribute) -> SSAValue:
        """A 0-d constant (one op per value and type in a section)."""
        key = (str(elt), value if value == value else "nan")
        if key not in self._scalars:
            self._scalars[key] = self.fill(value, (), elt)
        return self._scalars[key]

    def iota(self, dim: int, shape: Sequence[int], elt: Attribute = i64) -> SSAValue:
        """Indices along ``dim``."""
        return self._emit(IotaOp(dim, tensor(shape, elt)))

    def as_tensor(self, x: Operand, elt: Attribute) -> SSAValue:
        """``x`` as a tensor of element type ``elt`` (scalars become 0-d fills, casts added)."""
        if isinstance(x, SSAValue):
            return self.cast(x, elt)
        return self.scalar(x, elt)

    # pointwise ---------------------------------------------------------------------------

    def pointwise(self, kind: str, *xs: SSAValue, elt: Attribute | None = None) -> SSAValue:
        """A ``dataflow.pointwise`` whose result shape is the broadcast of the operands'."""
        shape = broadcast_shapes(*(shape_of(x) for x in xs))
        if shape is None:
            shapes = ", ".join(str(list(shape_of(x))) for x in xs)
            raise ShapeError(f"shapes {shapes} do not broadcast")
        if elt is None:
            if kind in COMPARISON_KINDS or kind in LOGICAL_KINDS:
                elt = i1
            elif kind == "select":
                elt = elt_of(xs[1])
            else:
                elt = elt_of(xs[0])
        return self._emit(PointwiseOp(kind, list(xs), tensor(shape, elt)))

    def cast(self, x: SSAValue, elt: Attribute) -> SSAValue:
        """``x`` converted to ``elt`` (no op if it already is)."""
        if elt_of(x) == elt:
            return x
        return self.pointwise("cast", x, elt=elt)

    def unary(self, kind: str, x: Operand, elt: Attribute | None = None) -> SSAValue:
        """A unary pointwise op computed in ``elt`` (default: ``x``'s element type)."""
        elt = elt or promote(x)
        return self.pointwise(kind, self.as_tensor(x, elt))

    def binary(self, kind: str, a: Operand, b: Operand, elt: Attribute | None = None) -> SSAValue:
        """A binary pointwise op; operands are converted to ``elt`` (default: promoted).

        A bf16 ``mul`` or ``div`` by a Python number computes in f32, the number unrounded, as
        torch's CPU kernels do (they keep it in their f32 "opmath" type), and rounds its result
        once; torch's ``add`` and ``sub`` round the number to bf16 first, as any other op here
        does (measured against torch 2.13 on the CPU: test/conformance/test_ops_bf16_mixed.py)."""
        assert kind in BINARY_KINDS
        if kind in LOGICAL_KINDS:
            elt = i1
        elt = elt or promote(a, b)
        scalar = not (isinstance(a, SSAValue) and isinstance(b, SSAValue))
        if elt == bf16 and scalar and kind in ("mul", "div"):
            wide = self.pointwise(kind, self.as_tensor(a, f32), self.as_tensor(b, f32))
            return self.cast(wide, bf16)
        return self.pointwise(kind, self.as_tensor(a, elt), self.as_tensor(b, elt))

    def add(self, a: Operand, b: Operand) -> SSAValue:
        return self.binary("add", a, b)

    def sub(self, a: Operand, b: Operand) -> SSAValue:
        return self.binary("sub", a, b)

    def mul(self, a: Operand, b: Operand) -> SSAValue:
        return self.binary("mul", a, b)

    def div(self, a: Operand, b: Operand) -> SSAValue:
        return self.binary("div", a, b)

    def select(self, cond: Operand, a: Operand, b: Operand) -> SSAValue:
        """``cond ? a : b`` elementwise; ``a`` and ``b`` are promoted to one type."""
        elt = promote(a, b)
        c = self.as_tensor(cond, i1)
        return self.pointwise("select", c, self.as_tensor(a, elt), self.as_tensor(b, elt))

    # reductions and matmul ----------------------------------------------------------------

    def reduce(self, kind: str, x: SSAValue, dims: Sequence[int], keepdim: bool) -> SSAValue:
        """Reduce ``dims`` (normalized, any order) of ``x``."""
        shape = shape_of(x)
        rank = len(shape)
        nd = sorted({d % rank for d in dims}) if rank else []
        if not nd:
            return x
        if keepdim:
            out = [1 if i in nd else s for i, s in enumerate(shape)]
        else:
            out = [s for i, s in enumerate(shape) if i not in nd]
        return self._emit(ReduceOp(kind, x, nd, tensor(out, elt_of(x))))

    def matmul(self, a: SSAValue, b: SSAValue) -> SSAValue:
        """``[..., M, K] x [..., K, N]`` with equal batch dims."""
        sa, sb = shape_of(a), shape_of(b)
        if len(sa) != len(sb) or len(sa) < 2 or sa[:-2] != sb[:-2] or sa[-1] != sb[-2]:
            raise ShapeError(f"matmul of {list(sa)} and {list(sb)}")
        elt = promote(a, b)
        a, b = self.cast(a, elt), self.cast(b, elt)
        return self._emit(MatmulOp(a, b, tensor((*sa[:-1], sb[-1]), elt)))

    # views ---------------------------------------------------------------------------------

    def transpose(self, x: SSAValue, perm: Sequence[int]) -> SSAValue:
        """Permute dims (no op for the identity)."""
        perm = [p % max(len(perm), 1) for p in perm]
        inner = x.owner if isinstance(x, OpResult) else None
        if isinstance(inner, TransposeOp):  # transpose of a transpose: one transpose
            first = inner.perm.get_values()
            perm = [first[p] for p in perm]
            x = inner.input
        if list(perm) == list(range(len(perm))):
            return x
        shape = shape_of(x)
        return self._emit(TransposeOp(x, perm, tensor([shape[p] for p in perm], elt_of(x))))

    def swap_last(self, x: SSAValue) -> SSAValue:
        """Swap the last two dims."""
        rank = len(shape_of(x))
        perm = list(range(rank))
        perm[-2], perm[-1] = perm[-1], perm[-2]
        return self.transpose(x, perm)

    def reshape(self, x: SSAValue, shape: Sequence[int]) -> SSAValue:
        """Same elements, new shape (no op if unchanged)."""
        shape = tuple(shape)
        if shape == shape_of(x):
            return x
        if math.prod(shape) != math.prod(shape_of(x)):
            raise ShapeError(f"reshape of {list(shape_of(x))} to {list(shape)}")
        inner = x.owner if isinstance(x, OpResult) else None
        if isinstance(inner, ReshapeOp):  # reshape of a reshape: one reshape
            return self.reshape(inner.input, shape)
        return self._emit(ReshapeOp(x, tensor(shape, elt_of(x))))

    def broadcast(self, x: SSAValue, shape: Sequence[int]) -> SSAValue:
        """numpy broadcast of ``x`` to ``shape`` (no op if unchanged)."""
        shape = tuple(shape)
        if shape == shape_of(x):
            return x
        if broadcast_shapes(shape_of(x), shape) != shape:
            raise ShapeError(f"broadcast of {list(shape_of(x))} to {list(shape)}")
        inner = x.owner if isinstance(x, OpResult) else None
        if isinstance(inner, BroadcastOp):  # broadcast of a broadcast: one broadcast
            return self.broadcast(inner.input, shape)
        return self._emit(BroadcastOp(x, tensor(shape, elt_of(x))))

    # windows and padding (convolution, pooling) --------------------------------------------

    def as_strided(
        self, x: SSAValue, shape: Sequence[int], strides: Sequence[int], offset: int = 0
    ) -> SSAValue:
        """The view ``v[i] = flat(x)[offset + sum_d strides[d] * i[d]]`` (row-major ``x``)."""
        return self._emit(AsStridedOp(x, offset, strides, tensor(shape, elt_of(x))))

    def pad(
        self,
        x: SSAValue,
        low: Sequence[int],
        high: Sequence[int],
        interior: Sequence[int] | None = None,
    ) -> SSAValue:
        """Zero padding (no op if there is none); ``interior`` zeros between neighbours."""
        interior = list(interior) if interior is not None else [0] * len(low)
        if not any(low) and not any(high) and not any(interior):
            return x
        if any(v < 0 for v in (*low, *high, *interior)):
            raise ShapeError(f"negative padding {list(low)}, {list(high)}, {interior}")
        shape = padded_shape(shape_of(x), low, high, interior)
        return self._emit(PadOp(x, low, high, interior, tensor(shape, elt_of(x))))

    # slices, gather and scatter-add, random numbers (transformers) -------------------------

    def extract_slice(
        self, x: SSAValue, offsets: Sequence[int], steps: Sequence[int], shape: Sequence[int]
    ) -> SSAValue:
        """The view ``v[i] = x[offsets + steps * i]`` of extents ``shape`` (no op if whole)."""
        if tuple(shape) == shape_of(x) and not any(offsets) and all(s == 1 for s in steps):
            return x
        return self._emit(ExtractSliceOp(x, offsets, steps, tensor(shape, elt_of(x))))

    def take(self, x: SSAValue, index: SSAValue, dim: int) -> SSAValue:
        """``x[..., index[j...], ...]`` along ``dim`` (a gather, numpy's ``take``)."""
        shape = shape_of(x)
        index = self.cast(index, i64)
        out = (*shape[:dim], *shape_of(index), *shape[dim + 1 :])
        return self._emit(TakeOp(x, index, dim, tensor(out, elt_of(x))))

    def put_add(self, x: SSAValue, index: SSAValue, dim: int, extent: int) -> SSAValue:
        """The transpose of ``take``: ``x``'s slices added at rows ``index`` of a zero tensor
        with ``extent`` rows along ``dim``."""
        shape = shape_of(x)
        index = self.cast(index, i64)
        q = len(shape_of(index))
        out = (*shape[:dim], extent, *shape[dim + q :])
        return self._emit(PutAddOp(x, index, dim, tensor(out, elt_of(x))))

    def random(self, seed: SSAValue, shape: Sequence[int]) -> SSAValue:
        """Uniform f32 numbers in ``[0, 1)`` from the 0-d i64 ``seed``, a new stream each call."""
        stream = self.random_streams
        self.random_streams += 1
        return self._emit(RandomOp(seed, stream, tensor(shape, f32)))

    def gather(self, x: SSAValue, index: SSAValue, dim: int) -> SSAValue:
        """``x`` with ``dim`` indexed by ``index`` (torch's ``gather``): the index's shape."""
        index = self.cast(index, i64)
        return self._emit(GatherOp(x, index, dim, tensor(shape_of(index), elt_of(x))))

    def scatter_add(self, x: SSAValue, index: SSAValue, dim: int, shape: Sequence[int]) -> SSAValue:
        """The transpose of ``gather``: ``x`` added into zeros of ``shape`` at ``index``."""
        index = self.cast(index, i64)
        return self._emit(ScatterAddOp(x, index, dim, tensor(shape, elt_of(x))))
