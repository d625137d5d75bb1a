"""convert-dataflow-to-rdu-tile: every dataflow compute op becomes one ``rdu_tile.kernel``.

Inside each ``dataflow.section``:

- ``matmul`` ``[..., M, K] x [..., K, N]``: counters ``(batch..., M, N, K)``, out stride 0 on K,
  combiner ``add``, body ``mulf`` (``muli`` on integers);
- ``pointwise``: counters = the result's dims; each operand broadcasts (numpy rules) with stride 0
  on the dims it lacks; the body is the ``arith``/``math`` op(s) of the kind;
- ``reduce``: counters = the input's dims, out stride 0 on the reduced dims, combiner
  ``add``/``max``/``min``, body yields its argument;
- ``fill``: no operands, the body yields an ``arith.constant``; ``iota``: yields
  ``rdu_tile.index``;
- ``pad``: counters = the input's dims; the out access has an offset (``low``) and strides
  spread by ``interior + 1``, so the rest of the (zero-initialised) result stays zero;
- a float ``mul`` read only by a ``sum`` fuses with it into one ``contract`` kernel over the
  product's space (body ``mulf``, combiner ``add``): convolutions are built so;
- ``take`` / ``gather``: counters = the result's dims; the table's access has no stride on the
  counters that walk the index and a data-dependent term ``stride[dim] * ins[1]``
  (``#rdu_tile.access<0 : [0, 1] + 16 * ins[1] of 65>``); ``put_add`` / ``scatter_add``:
  counters = the input's dims, the same term on the out access, combiner ``add``;
- ``random``: counters = the result's dims, body ``rdu_tile.random`` of the seed plus
  ``stream << 32``.

Views (``transpose``, ``reshape``, ``broadcast``, ``as_strided``, ``extract_slice``) produce
no kernel: every operand
is walked back through its views to the materialized tensor (a section argument or a kernel
result) and the views fold into the operand's access (transpose permutes strides, broadcast gives
stride 0, reshape re-strides, as_strided of a row-major layout is its own access, a slice moves
the offset and multiplies the strides by its steps). A reshape the
strides cannot express (it merges dims that are not contiguous, e.g. after a transpose) first
materializes a copy kernel. A view that a section yields
is materialized by a copy kernel too, so every section result is a kernel result or an argument.
The dataflow ops are erased; kernels keep the locations of the ops they come from and are named
``<kind>_<i>`` (``matmul_0``, ``relu_1``, ``sum_2``, ``copy_3``...: the kind and the kernel's
index in its section), the names the PCUs and PMUs carry on.

How: the ``ComputeToKernel`` pattern lowers each compute op (its kernel builder in ``_LOWER``),
asking the section's ``ViewLayouts`` (the view-layout analysis) where its operands' elements
live; ``CopyYieldedViews`` materializes yielded views; ``RefuseOp`` stops at anything else; then
``EraseFoldedOps``, walking each section bottom-up, erases the views and contracted ``mul`` ops.

Tiles come from the target (see ``compiler/passes/tiling.py``): the innermost non-reduced counter
gets a vector of ``pcu_lanes``, and counters grow from the innermost outwards while the tiles of
every operand and the result, double-buffered, fit one PMU.

Before (target ``plasticine``)::

    %t = dataflow.transpose %w perm [1, 0] : (tensor<128x64xf32>) -> tensor<64x128xf32>
    %y = dataflow.matmul %x, %t : (tensor<16x64xf32>, tensor<64x128xf32>) -> tensor<16x128xf32>

After::

    %y = rdu_tile.kernel @matmul_0 (%x, %w) space [16, 128, 64] tile [16, 128, 64]
           ins [#rdu_tile.access<0 : [64, 0, 1]>, #rdu_tile.access<0 : [0, 64, 1]>]
           out #rdu_tile.access<0 : [128, 1, 0]> combiner add
           : (tensor<16x64xf32>, tensor<128x64xf32>) -> tensor<16x128xf32> {
    ^bb0(%a: f32, %b: f32):
      %p = arith.mulf %a, %b : f32
      rdu_tile.yield %p : f32
    }
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from xdsl.context import Context
from xdsl.dialects import arith, math
from xdsl.dialects.builtin import (
    AnyFloat,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    TensorType,
    i1,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint

from compiler.passes.ir_helpers import elt_of, fail, op_name, row_major
from compiler.passes.tiling import TileChoices, element_dtype
from compiler.targets import Target, get_target
from compiler.value_names import source_location
from dialects import dataflow as df
from dialects.rdu_tile import AccessAttr, IndexOp, KernelOp, RandomOp, YieldOp, access_attr
from runtime.machine.rules import reduced_counters

VIEW_OPS = (df.TransposeOp, df.ReshapeOp, df.BroadcastOp, df.AsStridedOp, df.ExtractSliceOp)
COMPUTE_OPS = (df.MatmulOp, df.PointwiseOp, df.ReduceOp, df.FillOp, df.IotaOp, df.PadOp)
INDEXING_OPS = (df.TakeOp, df.GatherOp, df.ScatterAddOp, df.PutAddOp, df.RandomOp)
"""Gather, scatter-add and random numbers: kernels with data-dependent accesses or hashes."""
REDUCE_COMBINER = {"sum": "add", "max": "max", "min": "min"}


def shape_of(value: SSAValue) -> tuple[int, ...]:
    typ = value.type
    assert isinstance(typ, TensorType)
    return tuple(typ.get_shape())


@dataclass(frozen=True)
class Layout:
    """Where the elements of a (view) tensor live: ``source[offset + sum_d strides[d] * i_d]``."""

    source: SSAValue
    offset: int
    strides: tuple[int, ...]


def broadcast_strides(
    strides: Sequence[int], shape: Sequence[int], to: Sequence[int]
) -> tuple[int, ...]:
    """Strides of a ``shape`` layout broadcast (numpy rules) to ``to``: 0 on expanded dims."""
    lead = len(to) - len(shape)
    out: list[int] = []
    for i, extent in enumerate(to):
        j = i - lead
        if j < 0 or (shape[j] == 1 and extent != 1):
            out.append(0)
        else:
            out.append(strides[j])
    return tuple(out)


def reshape_strides(
    shape: Sequence[int], strides: Sequence[int], new_shape: Sequence[int]
) -> tuple[int, ...] | None:
    """Strides of ``new_shape`` over the same elements as the strided ``shape``, or None.

    numpy's no-copy reshape: dims of extent 1 are dropped, then old and new dims are matched in
    groups of equal element count; a group of old dims must be contiguous among themselves.
    """
    old = [(d, s) for d, s in zip(shape, strides, strict=True) if d != 1]
    old_dims = [d for d, _ in old]
    old_strides = [s for _, s in old]
    new_dims = [d for d in new_shape if d != 1]
    out_dense: list[int] = [0] * len(new_dims)
    oi = ni = 0
    while oi < len(old_dims) and ni < len(new_dims):
        oj, nj = oi + 1, ni + 1
        np_, op_ = new_dims[ni], old_dims[oi]
        while np_ != op_:
            if np_ < op_:
                np_ *= new_dims[nj]
                nj += 1
            else:
                op_ *= old_dims[oj]
                oj += 1
        for k in range(oi, oj - 1):
            if old_strides[k] != old_strides[k + 1] * old_dims[k + 1]:
                return None
        out_dense[nj - 1] = old_strides[oj - 1]
        for k in range(nj - 1, ni, -1):
            out_dense[k - 1] = out_dense[k] * new_dims[k]
        oi, ni = oj, nj
    result: list[int] = []
    it = iter(out_dense)
    for d in new_shape:
        result.append(0 if d == 1 else next(it))
    return tuple(result)


# --------------------------------------------------------------------------------------------
# Kernel bodies
# --------------------------------------------------------------------------------------------


def _zero(typ: Attribute) -> Operation:
    if isinstance(typ, AnyFloat):
        return arith.ConstantOp(FloatAttr(0.0, typ))
    assert isinstance(typ, IntegerType)
    return arith.ConstantOp(IntegerAttr(0, typ))


def _constant(value: float | int, typ: Attribute) -> Operation:
    if isinstance(typ, AnyFloat):
        return arith.ConstantOp(FloatAttr(float(value), typ))
    assert isinstance(typ, IntegerType)
    if typ == i1:
        return arith.ConstantOp(IntegerAttr(int(bool(value)), i1))
    return arith.ConstantOp(IntegerAttr(int(value), typ))


def cast_ops(x: SSAValue, src: Attribute, dst: Attribute) -> list[Operation]:
    """Ops converting scalar ``x`` of type ``src`` to ``dst`` (torch semantics; to i1 is != 0)."""
    if src == dst:
        return []
    if dst == i1:
        zero = _zero(src)
        if isinstance(src, AnyFloat):
            return [zero, arith.CmpfOp(x, zero, "une")]
        return [zero, arith.CmpiOp(x, zero, "ne")]
    if isinstance(src, AnyFloat) and isinstance(dst, AnyFloat):
        if src.bitwidth < dst.bitwidth:
            return [arith.ExtFOp(x, dst)]
        return [arith.TruncFOp(x, dst)]
    if isinstance(src, IntegerType) and isinstance(dst, AnyFloat):
        return [arith.UIToFPOp(x, dst) if src == i1 else arith.SIToFPOp(x, dst)]
    if isinstance(src, AnyFloat) and isinstance(dst, IntegerType):
        return [arith.FPToSIOp(x, dst)]
    assert isinstance(src, IntegerType) and isinstance(dst, IntegerType)
    if src.width.data < dst.width.data:
        return [arith.ExtUIOp(x, dst) if src == i1 else arith.ExtSIOp(x, dst)]
    return [arith.TruncIOp(x, dst)]


_FLOAT_CMP = {"eq": "oeq", "ne": "une", "lt": "olt", "le": "ole", "gt": "ogt", "ge": "oge"}
_INT_CMP = {"eq": "eq", "ne": "ne", "lt": "slt", "le": "sle", "gt": "sgt", "ge": "sge"}
_BOOL_CMP = {"eq": "eq", "ne": "ne", "lt": "ult", "le": "ule", "gt": "ugt", "ge": "uge"}

_FLOAT_BINARY: dict[str, Callable[[SSAValue, SSAValue], Operation]] = {
    "add": arith.AddfOp,
    "sub": arith.SubfOp,
    "mul": arith.MulfOp,
    "div": arith.DivfOp,
    "max": arith.MaximumfOp,
    "min": arith.MinimumfOp,
    "pow": math.PowFOp,
}
_INT_BINARY: dict[str, Callable[[SSAValue, SSAValue], Operation]] = {
    "add": arith.AddiOp,
    "sub": arith.SubiOp,
    "mul": arith.MuliOp,
    "div": arith.DivSIOp,
    "max": arith.MaxSIOp,
    "min": arith.MinSIOp,
    "and": arith.AndIOp,
    "or": arith.OrIOp,
}
_FLOAT_UNARY: dict[str, Callable[[SSAValue], Operation]] = {
    "neg": arith.NegfOp,
    "exp": math.ExpOp,
    "log": math.LogOp,
    "sqrt": math.SqrtOp,
    "rsqrt": math.RsqrtOp,
    "tanh": math.TanhOp,
    "erf": math.ErfOp,
    "cos": math.CosOp,
    "sin": math.SinOp,
    "abs": math.AbsFOp,
}


def pointwise_body(op: df.PointwiseOp, args: Sequence[SSAValue]) -> list[Operation]:
    """The scalar ops of a pointwise kind; the last op's result is the value to yield."""
    kind = op.kind.data
    rtype = elt_of(op.result)
    atype = args[0].type
    is_float = isinstance(atype, AnyFloat)
    if kind == "cast":
        ops = cast_ops(args[0], atype, rtype)
        return ops
    if kind == "relu":
        zero = _zero(atype)
        if is_float:
            return [zero, arith.MaximumfOp(args[0], zero)]
        return [zero, arith.MaxSIOp(args[0], zero)]
    if kind == "neg" and not is_float:
        zero = _zero(atype)
        return [zero, arith.SubiOp(zero, args[0])]
    if kind == "abs" and not is_float:
        return [math.AbsIOp(args[0])]
    if kind == "not":
        if atype != i1:
            raise fail(op, f"pointwise 'not' on {atype} has no lowering to the fabric yet")
        true = arith.ConstantOp(IntegerAttr(1, i1))
        return [true, arith.XOrIOp(args[0], true)]
    if kind == "select":
        return [arith.SelectOp(args[0], args[1], args[2])]
    if kind in _FLOAT_CMP:
        if is_float:
            return [arith.CmpfOp(args[0], args[1], _FLOAT_CMP[kind])]
        table = _BOOL_CMP if atype == i1 else _INT_CMP
        return [arith.CmpiOp(args[0], args[1], table[kind])]
    if is_float and kind in _FLOAT_UNARY:
        return [_FLOAT_UNARY[kind](args[0])]
    if kind == "pow" and args[1].type != atype:
        powers = f"{atype} to {args[1].type} powers"
        raise fail(op, f"pointwise 'pow' of {powers} has no lowering to the fabric yet")
    if is_float and kind in _FLOAT_BINARY:
        return [_FLOAT_BINARY[kind](args[0], args[1])]
    if not is_float and kind in _INT_BINARY:
        return [_INT_BINARY[kind](args[0], args[1])]
    raise fail(op, f"pointwise '{kind}' on {atype} has no lowering to the fabric")


def fuses_into_reduce(value: SSAValue) -> bool:
    """Whether ``value`` is a float ``mul`` read only by a ``sum``: the pair lowers to one
    multiply-accumulate kernel (a contraction, like a matmul's), so that a convolution built
    as ``sum(window(x) * w)`` over ``(n, oc, oh, ow, ic, kh, kw)`` never materializes the
    product."""
    owner = value.owner
    if not isinstance(owner, df.PointwiseOp) or owner.kind.data != "mul":
        return False
    if not isinstance(elt_of(value), AnyFloat):
        return False
    uses = list(value.uses)
    if len(uses) != 1:
        return False
    user = uses[0].operation
    return isinstance(user, df.ReduceOp) and user.kind.data == "sum"


def reduce_out_strides(op: df.ReduceOp) -> list[int]:
    """The out strides of a reduce over its input's dims: 0 on the reduced ones."""
    in_shape = shape_of(op.input)
    dims = set(op.dims.get_values())
    ro = row_major(shape_of(op.result))
    keeps = len(shape_of(op.result)) == len(in_shape)
    strides: list[int] = []
    j = 0
    for i in range(len(in_shape)):
        if i in dims:
            strides.append(0)
            j += 1 if keeps else 0
        else:
            strides.append(ro[j])
            j += 1
    return strides


# --------------------------------------------------------------------------------------------
# The pass
# --------------------------------------------------------------------------------------------


@dataclass
class ViewLayouts:
    """The view-layout analysis of one section, which the patterns query: where the elements
    of each value live over its materialized source (``layout``: views fold into offsets and
    strides; a view the strides cannot express is copied, through the rewriter, by a kernel
    inserted before it), and the kernels' names (``<kind>_<i>``, ``i`` counting the section's
    kernels in the order they are made)."""

    section: df.SectionOp
    tiles: TileChoices
    layouts: dict[SSAValue, Layout] = field(default_factory=dict)
    count: int = 0
    contracted: set[Operation] = field(default_factory=set)
    """The ``mul`` ops lowered with the ``sum`` reading them (erased last, not lowered)."""

    def name(self, kind: str) -> str:
        name = f"{kind}_{self.count}"
        self.count += 1
        return name

    def layout(self, value: SSAValue, rewriter: PatternRewriter) -> Layout:
        """The layout of ``value`` over its materialized source (copying where views cannot)."""
        if value in self.layouts:
            return self.layouts[value]
        owner = value.owner
        if isinstance(owner, df.TransposeOp):
            inner = self.layout(owner.input, rewriter)
            perm = tuple(owner.perm.get_values())
            result = Layout(inner.source, inner.offset, tuple(inner.strides[p] for p in perm))
        elif isinstance(owner, df.BroadcastOp):
            inner = self.layout(owner.input, rewriter)
            strides = broadcast_strides(inner.strides, shape_of(owner.input), shape_of(value))
            result = Layout(inner.source, inner.offset, strides)
        elif isinstance(owner, df.ExtractSliceOp):
            result = self.slice_layout(owner, rewriter)
        elif isinstance(owner, df.AsStridedOp):
            result = self.strided_layout(owner, rewriter)
        elif isinstance(owner, df.ReshapeOp):
            inner = self.layout(owner.input, rewriter)
            strides = reshape_strides(shape_of(owner.input), inner.strides, shape_of(value))
            if strides is not None:
                result = Layout(inner.source, inner.offset, strides)
            else:
                copy = self.copy_kernel(owner.input, owner, InsertPoint.before(owner), rewriter)
                result = Layout(copy.result, 0, tuple(row_major(shape_of(value))))
        else:
            # A section argument or a kernel result: the tensor itself, row-major.
            result = Layout(value, 0, tuple(row_major(shape_of(value))))
        self.layouts[value] = result
        return result

    def access(
        self, value: SSAValue, dims: Sequence[int | None], rewriter: PatternRewriter
    ) -> tuple[SSAValue, AccessAttr]:
        """The source and access of ``value``: ``dims[c]`` is the dim counter ``c`` walks."""
        lay = self.layout(value, rewriter)
        strides = [0 if d is None else lay.strides[d] for d in dims]
        return lay.source, access_attr(lay.offset, strides)

    def copy_kernel(
        self, value: SSAValue, at: Operation, where: InsertPoint, rewriter: PatternRewriter
    ) -> KernelOp:
        """A kernel writing ``value`` (a view) row-major into a new tensor, inserted at
        ``where``."""
        shape = shape_of(value)
        src, acc = self.access(value, list(range(len(shape))), rewriter)
        body = Block(arg_types=[elt_of(value)])
        body.add_op(YieldOp(body.args[0]))
        kernel = self.kernel("copy", at, [src], [acc], value.type, shape, shape, "none", body)
        if value not in at.results:  # a copy of the view's input holds no value of ``at``'s
            kernel.location = source_location(at.location)
        rewriter.insert(kernel, where)
        return kernel

    def kernel(
        self,
        kind: str,
        origin: Operation,
        inputs: Sequence[SSAValue],
        ins: Sequence[AccessAttr],
        result_type: Attribute,
        space: Sequence[int],
        out_shape: Sequence[int],
        combiner: str,
        body: Block,
        out_strides: Sequence[int] | None = None,
        out_offset: int = 0,
        out_index: Sequence[int] = (),
    ) -> KernelOp:
        """A kernel with a tile chosen from the target, at ``origin``'s location."""
        if out_strides is None:
            out_strides = row_major(out_shape)
        out = access_attr(out_offset, out_strides, out_index)
        accesses = [
            (a.stride_values, element_dtype(elt_of(v))) for a, v in zip(ins, inputs, strict=True)
        ]
        accesses.append((tuple(out_strides), element_dtype(elt_of(result_type))))
        tile = self.tiles.tile(space, accesses, out_strides)
        if combiner != "none" and not reduced_counters(space, out_strides):
            combiner = "none"
        kernel = KernelOp(
            inputs, result_type, space, tile, ins, out, combiner, body, self.name(kind)
        )
        kernel.location = origin.location
        return kernel

    def strided_layout(self, op: df.AsStridedOp, rewriter: PatternRewriter) -> Layout:
        """An ``as_strided`` view is affine in its input's row-major elements: it folds into
        the input's layout when that is row-major (otherwise the input is copied first)."""
        shape = shape_of(op.input)
        dense = tuple(row_major(shape))
        inner = self.layout(op.input, rewriter)
        contiguous = all(
            s == d for s, d, n in zip(inner.strides, dense, shape, strict=True) if n != 1
        )
        if not contiguous:
            copy = self.copy_kernel(op.input, op, InsertPoint.before(op), rewriter)
            inner = Layout(copy.result, 0, dense)
        offset = inner.offset + op.offset.value.data
        return Layout(inner.source, offset, tuple(op.strides.get_values()))

    def slice_layout(self, op: df.ExtractSliceOp, rewriter: PatternRewriter) -> Layout:
        """A slice folds into any layout: the offset moves to the first element, every stride
        is multiplied by its step (a negative step walks backwards)."""
        inner = self.layout(op.input, rewriter)
        offsets, steps = op.offsets.get_values(), op.steps.get_values()
        offset = inner.offset + sum(o * s for o, s in zip(offsets, inner.strides, strict=True))
        strides = tuple(s * k for s, k in zip(inner.strides, steps, strict=True))
        return Layout(inner.source, offset, strides)


@dataclass
class Lowering:
    """The sections being lowered and their view layouts, for the patterns to ask about."""

    target: Target
    sections: dict[df.SectionOp, ViewLayouts] = field(default_factory=dict)
    tiles: TileChoices = field(init=False)

    def __post_init__(self) -> None:
        self.tiles = TileChoices(self.target)

    def views(self, op: Operation) -> ViewLayouts:
        """The view layouts of the section ``op`` is in."""
        section = op.parent_op()
        assert isinstance(section, df.SectionOp)
        if section not in self.sections:
            self.sections[section] = ViewLayouts(section, self.tiles)
        return self.sections[section]


# --------------------------------------------------------------------------------------------
# The kernel of each compute op
# --------------------------------------------------------------------------------------------


def lower_matmul(views: ViewLayouts, op: df.MatmulOp, rewriter: PatternRewriter) -> KernelOp:
    sa, sb = shape_of(op.lhs), shape_of(op.rhs)
    nb = len(sa) - 2
    m, k, n = sa[-2], sa[-1], sb[-1]
    batch = list(range(nb))
    space = (*sa[:nb], m, n, k)
    a, acc_a = views.access(op.lhs, [*batch, nb, None, nb + 1], rewriter)
    b, acc_b = views.access(op.rhs, [*batch, None, nb + 1, nb], rewriter)
    out_shape = shape_of(op.result)
    ro = row_major(out_shape)
    out_strides = [*ro[:nb], ro[nb], ro[nb + 1], 0]
    elt = elt_of(op.result)
    body = Block(arg_types=[elt, elt])
    x, y = body.args
    mul = arith.MulfOp(x, y) if isinstance(elt, AnyFloat) else arith.MuliOp(x, y)
    body.add_ops([mul, YieldOp(mul.result)])
    return views.kernel(
        "matmul",
        op,
        [a, b],
        [acc_a, acc_b],
        op.result.type,
        space,
        out_shape,
        "add",
        body,
        out_strides,
    )


def lower_pointwise(views: ViewLayouts, op: df.PointwiseOp, rewriter: PatternRewriter) -> KernelOp:
    shape = shape_of(op.result)
    rank = len(shape)
    inputs: list[SSAValue] = []
    ins: list[AccessAttr] = []
    for operand in op.inputs:
        lay = views.layout(operand, rewriter)
        strides = broadcast_strides(lay.strides, shape_of(operand), shape)
        inputs.append(lay.source)
        ins.append(access_attr(lay.offset, strides))
        assert len(strides) == rank
    body = Block(arg_types=[elt_of(v) for v in op.inputs])
    ops = pointwise_body(op, body.args)
    body.add_ops(ops)
    value = ops[-1].results[0] if ops else body.args[0]
    body.add_op(YieldOp(value))
    return views.kernel(op.kind.data, op, inputs, ins, op.result.type, shape, shape, "none", body)


def lower_reduce(views: ViewLayouts, op: df.ReduceOp, rewriter: PatternRewriter) -> KernelOp:
    if fuses_into_reduce(op.input):
        return lower_contraction(views, op, rewriter)
    in_shape = shape_of(op.input)
    dims = set(op.dims.get_values())
    src, acc = views.access(op.input, list(range(len(in_shape))), rewriter)
    out_shape = shape_of(op.result)
    ro = row_major(out_shape)
    keeps = len(out_shape) == len(in_shape)
    out_strides: list[int] = []
    j = 0
    for i in range(len(in_shape)):
        if i in dims:
            out_strides.append(0)
            j += 1 if keeps else 0
        else:
            out_strides.append(ro[j])
            j += 1
    body = Block(arg_types=[elt_of(op.input)])
    body.add_op(YieldOp(body.args[0]))
    kind = op.kind.data
    return views.kernel(
        kind,
        op,
        [src],
        [acc],
        op.result.type,
        in_shape,
        out_shape,
        REDUCE_COMBINER[kind],
        body,
        out_strides,
    )


def lower_fill(views: ViewLayouts, op: df.FillOp, rewriter: PatternRewriter) -> KernelOp:
    shape = shape_of(op.result)
    elt = elt_of(op.result)
    body = Block()
    const = _constant(op.number, elt)
    body.add_ops([const, YieldOp(const.results[0])])
    return views.kernel("fill", op, [], [], op.result.type, shape, shape, "none", body)


def lower_iota(views: ViewLayouts, op: df.IotaOp, rewriter: PatternRewriter) -> KernelOp:
    shape = shape_of(op.result)
    elt = elt_of(op.result)
    body = Block()
    index = IndexOp(op.dim.value.data, i64)
    ops: list[Operation] = [index, *cast_ops(index.result, i64, elt)]
    body.add_ops(ops)
    body.add_op(YieldOp(ops[-1].results[0]))
    return views.kernel("iota", op, [], [], op.result.type, shape, shape, "none", body)


def lower_pad(views: ViewLayouts, op: df.PadOp, rewriter: PatternRewriter) -> KernelOp:
    """A copy of the input into its (zero-initialised) result through an out access with an
    offset (``low``) and strides spread by ``interior + 1``: the rest stays zero."""
    shape = shape_of(op.input)
    src, acc = views.access(op.input, list(range(len(shape))), rewriter)
    result_shape = shape_of(op.result)
    ro = row_major(result_shape)
    low, interior = op.low.get_values(), op.interior.get_values()
    offset = sum(lo * r for lo, r in zip(low, ro, strict=True))
    strides = [(mid + 1) * r for mid, r in zip(interior, ro, strict=True)]
    body = Block(arg_types=[elt_of(op.input)])
    body.add_op(YieldOp(body.args[0]))
    return views.kernel(
        "pad", op, [src], [acc], op.result.type, shape, result_shape, "none", body,
        strides, offset,
    )  # fmt: skip


def lower_contraction(views: ViewLayouts, op: df.ReduceOp, rewriter: PatternRewriter) -> KernelOp:
    """``sum(a * b)`` as one multiply-accumulate kernel over the product's space (see
    ``fuses_into_reduce``): the product is never materialized."""
    mul = op.input.owner
    assert isinstance(mul, df.PointwiseOp)
    views.contracted.add(mul)
    space = shape_of(op.input)
    inputs: list[SSAValue] = []
    ins: list[AccessAttr] = []
    for operand in mul.inputs:
        lay = views.layout(operand, rewriter)
        inputs.append(lay.source)
        strides = broadcast_strides(lay.strides, shape_of(operand), space)
        ins.append(access_attr(lay.offset, strides))
    body = Block(arg_types=[elt_of(v) for v in mul.inputs])
    ops = pointwise_body(mul, body.args)
    body.add_ops(ops)
    body.add_op(YieldOp(ops[-1].results[0]))
    return views.kernel(
        "contract", op, inputs, ins, op.result.type, space, shape_of(op.result), "add",
        body, reduce_out_strides(op),
    )  # fmt: skip


def _index_access(
    views: ViewLayouts, op: df.TakeOp | df.PutAddOp, rewriter: PatternRewriter, rank: int
) -> tuple[int, int, SSAValue, AccessAttr]:
    """The dim, index rank, source and access of the index operand over a space of rank
    ``rank`` whose counters ``dim .. dim + q - 1`` walk the index."""
    d = op.dim.value.data
    q = len(shape_of(op.index))
    lay = views.layout(op.index, rewriter)
    strides = [0] * d + list(lay.strides) + [0] * (rank - d - q)
    return d, q, lay.source, access_attr(lay.offset, strides)


def lower_take(views: ViewLayouts, op: df.TakeOp, rewriter: PatternRewriter) -> KernelOp:
    """``take``: space = the result; the table's access has no stride on the index
    counters but a data-dependent term: ``table_stride[dim] * ins[1]``."""
    space = shape_of(op.result)
    d, q, idx, idx_acc = _index_access(views, op, rewriter, len(space))
    lay = views.layout(op.input, rewriter)
    limit = shape_of(op.input)[d]
    strides = [*lay.strides[:d], *([0] * q), *lay.strides[d + 1 :]]
    table_acc = access_attr(lay.offset, strides, (1, lay.strides[d], limit))
    body = Block(arg_types=[elt_of(op.input), i64])
    body.add_op(YieldOp(body.args[0]))
    return views.kernel(
        "take", op, [lay.source, idx], [table_acc, idx_acc], op.result.type, space, space,
        "none", body,
    )  # fmt: skip


def lower_gather(views: ViewLayouts, op: df.GatherOp, rewriter: PatternRewriter) -> KernelOp:
    """``gather``: space = the index; the input's access is its own on every counter but
    ``dim``, where it is ``input_stride[dim] * ins[1]``."""
    space = shape_of(op.result)
    d = op.dim.value.data
    lay = views.layout(op.input, rewriter)
    idx, idx_acc = views.access(op.index, list(range(len(space))), rewriter)
    strides = [0 if c == d else s for c, s in enumerate(lay.strides)]
    acc = access_attr(lay.offset, strides, (1, lay.strides[d], shape_of(op.input)[d]))
    body = Block(arg_types=[elt_of(op.input), i64])
    body.add_op(YieldOp(body.args[0]))
    return views.kernel(
        "gather", op, [lay.source, idx], [acc, idx_acc], op.result.type, space, space,
        "none", body,
    )  # fmt: skip


def lower_scatter_add(
    views: ViewLayouts, op: df.ScatterAddOp, rewriter: PatternRewriter
) -> KernelOp:
    """``scatter_add``: space = the index; the out access is row-major on every counter but
    ``dim``, where it is ``row_major(result)[dim] * ins[1]``; values meeting add up."""
    space = shape_of(op.index)
    d = op.dim.value.data
    src, acc = views.access(op.input, list(range(len(space))), rewriter)
    idx, idx_acc = views.access(op.index, list(range(len(space))), rewriter)
    result = shape_of(op.result)
    ro = row_major(result)
    out_strides = [0 if c == d else s for c, s in enumerate(ro)]
    body = Block(arg_types=[elt_of(op.input), i64])
    body.add_op(YieldOp(body.args[0]))
    return views.kernel(
        "scatter_add", op, [src, idx], [acc, idx_acc], op.result.type, space, result, "add",
        body, out_strides, 0, (1, ro[d], result[d]),
    )  # fmt: skip


def lower_put_add(views: ViewLayouts, op: df.PutAddOp, rewriter: PatternRewriter) -> KernelOp:
    """``put_add``: space = the input; the out access skips the index counters and adds
    ``row_major(result)[dim] * ins[1]``; values meeting at one element add up."""
    space = shape_of(op.input)
    d, q, idx, idx_acc = _index_access(views, op, rewriter, len(space))
    src, acc = views.access(op.input, list(range(len(space))), rewriter)
    result = shape_of(op.result)
    ro = row_major(result)
    out_strides = [*ro[:d], *([0] * q), *ro[d + 1 :]]
    body = Block(arg_types=[elt_of(op.input), i64])
    body.add_op(YieldOp(body.args[0]))
    return views.kernel(
        "put_add", op, [src, idx], [acc, idx_acc], op.result.type, space, result, "add",
        body, out_strides, 0, (1, ro[d], result[d]),
    )  # fmt: skip


def lower_random(views: ViewLayouts, op: df.RandomOp, rewriter: PatternRewriter) -> KernelOp:
    """``random``: the key is the seed plus ``stream << 32``; the ``rand`` stage hashes it
    with each point's row-major index."""
    space = shape_of(op.result)
    lay = views.layout(op.seed, rewriter)
    seed_acc = access_attr(lay.offset, [0] * len(space))
    body = Block(arg_types=[i64])
    stream = _constant(op.stream.value.data << 32, i64)
    key = arith.AddiOp(body.args[0], stream.results[0])
    value = RandomOp(key.result, elt_of(op.result))
    body.add_ops([stream, key, value, YieldOp(value.result)])
    return views.kernel(
        "random", op, [lay.source], [seed_acc], op.result.type, space, space, "none", body
    )


# --------------------------------------------------------------------------------------------
# The patterns
# --------------------------------------------------------------------------------------------


_LOWER: dict[type[Operation], Callable[[ViewLayouts, Any, PatternRewriter], KernelOp]] = {
    df.MatmulOp: lower_matmul,
    df.PointwiseOp: lower_pointwise,
    df.ReduceOp: lower_reduce,
    df.FillOp: lower_fill,
    df.IotaOp: lower_iota,
    df.PadOp: lower_pad,
    df.TakeOp: lower_take,
    df.GatherOp: lower_gather,
    df.ScatterAddOp: lower_scatter_add,
    df.PutAddOp: lower_put_add,
    df.RandomOp: lower_random,
}
"""The kernel builder of every dataflow compute op (one pattern applies them all)."""


@dataclass
class ComputeToKernel(RewritePattern):
    """A dataflow compute op becomes its kernel (``_LOWER``); its operands are walked back
    through their views (``ViewLayouts``). A float ``mul`` read only by a ``sum`` is left for
    the ``sum``, which lowers the pair to one contraction."""

    lowering: Lowering

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        lower = _LOWER.get(type(op))
        if lower is None or not isinstance(op.parent_op(), df.SectionOp):
            return
        views = self.lowering.views(op)
        if op in views.contracted or (
            isinstance(op, df.PointwiseOp) and fuses_into_reduce(op.result)
        ):
            return
        kernel = lower(views, op, rewriter)
        rewriter.replace(op, kernel)


@dataclass
class CopyYieldedViews(RewritePattern):
    """A view a section yields is materialized by a copy kernel before the yield."""

    lowering: Lowering

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: df.YieldOp, rewriter: PatternRewriter) -> None:
        if not isinstance(op.parent_op(), df.SectionOp):
            return
        views = self.lowering.views(op)
        for i, value in enumerate(op.values):
            if isinstance(value.owner, VIEW_OPS):
                copy = views.copy_kernel(value, value.owner, InsertPoint.before(op), rewriter)
                op.operands[i] = copy.result
                rewriter.notify_op_modified(op)


class RefuseOp(RewritePattern):
    """An op of a section that is no view, compute op, kernel or yield cannot be lowered."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op.parent_op(), df.SectionOp):
            return
        if isinstance(op, (*VIEW_OPS, df.YieldOp, KernelOp, *COMPUTE_OPS, *INDEXING_OPS)):
            return
        raise fail(op, f"'{op_name(op)}' cannot be lowered to rdu_tile")


class EraseFoldedOps(RewritePattern):
    """Last, from the bottom of each section up: the views (folded into the accesses of their
    readers) and the ``mul`` of a contraction go; a view something still reads is an error."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op.parent_op(), df.SectionOp):
            return
        if isinstance(op, df.PointwiseOp) and not op.results[0].uses:
            rewriter.erase(op)  # fused into the reduce that read it
        elif isinstance(op, VIEW_OPS):
            if op.results[0].uses:
                user = next(iter(op.results[0].uses)).operation
                raise fail(user, f"'{op_name(user)}' reads a view and cannot be lowered")
            rewriter.erase(op)


@dataclass(frozen=True)
class ConvertDataflowToRduTile(ModulePass):
    """Lower dataflow compute ops to tiled ``rdu_tile.kernel`` ops (see the module docstring)."""

    name = "convert-dataflow-to-rdu-tile"

    target: str = "plasticine"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        lowering = Lowering(get_target(self.target))
        patterns = [ComputeToKernel(lowering), CopyYieldedViews(lowering), RefuseOp()]
        PatternRewriteWalker(
            GreedyRewritePatternApplier(patterns, dce_enabled=False)
        ).rewrite_module(op)
        PatternRewriteWalker(EraseFoldedOps(), walk_reverse=True).rewrite_module(op)
