"""fuse-casts: a cast kernel becomes a stage of a neighbour, so no cast keeps a PCU of its own.

bf16-mixed graphs hold torch autocast's casts as kernels of their own (``_to_copy``), which
fuse-elementwise leaves where their result has several readers or their producer is a
reduction. The rewrites keep the values rounded at the same points:

- **a rounding on the way out** (``RoundOnTheWayOut``): a kernel ``C`` that only rounds
  (``arith.truncf`` f32 to bf16, elementwise, reading its operand in the layout it writes) the
  result of a multiply-accumulate ``P`` (combiner ``add``, its yield ``mulf(extf a, extf b)`` of
  two bf16 values, a direct output, no other reader) becomes ``P`` yielding ``mulf a, b : bf16``
  into a bf16 result: a bf16 multiply-add accumulates in f32 and rounds once, at the end
  (``runtime/machine/opcodes.py``), what ``P`` then ``C`` computed;
- **a rounding inside its reader** (``RoundInProducer``): a kernel ``C`` that reads such a
  ``P`` (no other reader) and only rounds that operand (its every use in ``C``'s body an
  ``arith.truncf`` to bf16: a round trip ``extf(truncf(mm))``, torch's bf16 matmul result
  widened for the f32 ops of a backward, or a rounding fused into a larger body) reads ``P``'s
  bf16 result: ``P`` rounds on the way out, ``C`` takes the bf16 value as it is. A round trip
  becomes a widening only, which the next rule inlines into its readers: in a backward, where
  every parallel unit waits for its writer to end, a cast unit between a matmul and its
  reader is a unit more on the critical path (GPT's on sn10: seven, 7k cycles);
- **a widening into its readers** (``WidenInReaders``): a kernel ``C`` that only widens
  (``arith.extf`` bf16 to f32, elementwise) a tensor, whose every reader may inline it
  (``fusion.composition``, not through a gather or as an index) and which the section does not
  yield, is inlined into every reader (``fusion.fuse``): each reads the bf16 tensor and widens
  it in a stage of its own (exact), or, a multiply of two widened values, reads them as they are
  (the PCU's bf16 multiplier, chosen by convert-rdu-tile-to-pcu-pmu);
- **a parameter rounded into the layout its readers stream** (``TransposeRounding``): a
  ``truncf``-only kernel over a section argument ``W [n, k]`` that no reader gathers writes
  ``W^T [k, n]`` when more of its readers spread W's rows over their lanes than its columns
  (a matmul ``x W^T``: 32 bf16 of W^T in a row are 16 bank words, one cycle; 32 of W down a
  column are 32 words, two); each reader's access is rewritten for the transpose;
- **one cast of a value** (``MergeEqualCasts``): in a kernel's body, a second ``extf`` or
  ``truncf`` of the same value to the same type is the first one's result (fused bodies hold
  one a reader of the widened value; each would take a pipeline stage).

Before (a bf16-mixed linear layer's output, widened for a f32 softmax)::

    %mm = rdu_tile.kernel @matmul_0 (%x, %w) space [512, 58, 48] ... combiner add
            : (tensor<512x48xbf16>, tensor<58x48xbf16>) -> tensor<512x58xf32> {
    ^bb0(%a: bf16, %b: bf16):
      %0 = arith.extf %a : bf16 to f32
      %1 = arith.extf %b : bf16 to f32
      %2 = arith.mulf %0, %1 : f32
      rdu_tile.yield %2 : f32
    }
    %r = rdu_tile.kernel @cast_1 (%mm) space [512, 58] ... combiner none
            : (tensor<512x58xf32>) -> tensor<512x58xbf16> {
    ^bb0(%a: f32):
      %0 = arith.truncf %a : f32 to bf16
      rdu_tile.yield %0 : bf16
    }

After::

    %r = rdu_tile.kernel @matmul_0 (%x, %w) space [512, 58, 48] ... combiner add
            : (tensor<512x48xbf16>, tensor<58x48xbf16>) -> tensor<512x58xbf16> {
    ^bb0(%a: bf16, %b: bf16):
      %0 = arith.mulf %a, %b : bf16
      rdu_tile.yield %0 : bf16
    }
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import ArrayAttr, BFloat16Type, Float32Type, ModuleOp, TensorType
from xdsl.ir import Attribute, Block, BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint

from compiler.passes.fusion import composition, fuse, is_elementwise
from compiler.passes.ir_helpers import elt_of
from compiler.passes.tiling import TileChoices, element_dtype
from compiler.targets import get_target
from dialects.rdu_tile import AccessAttr, KernelOp, YieldOp, access_attr, dense_i64
from runtime.machine import rules


def only_cast(kernel: KernelOp, cast: type[arith.ExtFOp | arith.TruncFOp]) -> bool:
    """Whether ``kernel`` is elementwise and only casts its one operand with ``cast`` (an
    ``extf`` bf16 -> f32 or a ``truncf`` f32 -> bf16)."""
    if len(kernel.inputs) != 1 or not is_elementwise(kernel) or kernel.ins.data[0].is_indexed:
        return False
    ops = list(kernel.body.block.ops)
    if len(ops) != 2 or not isinstance(ops[0], cast) or not isinstance(ops[1], YieldOp):
        return False
    op = ops[0]
    if op.input != kernel.body.block.args[0] or ops[1].value != op.result:
        return False
    narrow, wide = (op.input.type, op.result.type)
    if isinstance(op, arith.TruncFOp):
        narrow, wide = wide, narrow
    return isinstance(narrow, BFloat16Type) and isinstance(wide, Float32Type)


def widened_bf16(value: SSAValue) -> SSAValue | None:
    """The bf16 value ``value`` widens (``arith.extf``), or None."""
    op = value.owner
    if isinstance(op, arith.ExtFOp) and isinstance(op.input.type, BFloat16Type):
        return op.input
    return None


def retiled(
    kernel: KernelOp, inputs: Sequence[SSAValue], result_type: Attribute, tiles: TileChoices
) -> list[int]:
    """The tile of ``kernel``'s space for these operands and this result (their element sizes
    set what a PMU holds: ``TileChoices.tile``)."""
    accesses = [
        (a.stride_values, element_dtype(elt_of(v)))
        for a, v in zip(kernel.ins.data, inputs, strict=True)
    ]
    assert isinstance(result_type, TensorType)
    accesses.append((kernel.out.stride_values, element_dtype(result_type.element_type)))
    return tiles.tile(kernel.space_values, accesses, kernel.out.stride_values)


def rounded_product(
    producer: KernelOp, result_type: TensorType, tiles: TileChoices
) -> KernelOp | None:
    """``producer`` (a multiply-accumulate of two widened bf16 values: combiner ``add``, its
    yield ``mulf(extf a, extf b)``) as a bf16 multiply-add into ``result_type`` (its shape in
    bf16): f32 accumulation, one rounding at the end (None: not such a producer)."""
    if producer.combiner.data != "add" or producer.out.is_indexed:
        return None
    product = producer.yield_op.value.owner
    if not isinstance(product, arith.MulfOp):
        return None
    narrow = [widened_bf16(product.lhs), widened_bf16(product.rhs)]
    if narrow[0] is None or narrow[1] is None:
        return None
    block = Block(arg_types=[a.type for a in producer.body.block.args])
    vmap: dict[SSAValue, SSAValue] = dict(zip(producer.body.block.args, block.args, strict=True))
    for op in producer.body.block.ops:
        if op is product or isinstance(op, YieldOp):
            continue
        block.add_op(op.clone(value_mapper=vmap))
    mul = arith.MulfOp(vmap.get(narrow[0], narrow[0]), vmap.get(narrow[1], narrow[1]))
    block.add_ops([mul, YieldOp(mul.result)])
    for op in reversed(list(block.ops)):  # the widenings nothing reads any more
        if isinstance(op, arith.ExtFOp) and not op.result.uses:
            block.erase_op(op)
    tile = retiled(producer, list(producer.inputs), result_type, tiles)
    name = producer.sym_name.data if producer.sym_name is not None else None
    rounded = KernelOp(
        list(producer.inputs),
        result_type,
        producer.space_values,
        tile,
        list(producer.ins.data),
        producer.out,
        "add",
        block,
        name,
    )
    rounded.location = producer.location
    return rounded


@dataclass
class RoundOnTheWayOut(RewritePattern):
    """A rounding to bf16 of a multiply-accumulate's result is the multiply-accumulate in bf16
    (see the module docstring)."""

    tiles: TileChoices

    @op_type_rewrite_pattern
    def match_and_rewrite(self, cast: KernelOp, rewriter: PatternRewriter) -> None:
        if not only_cast(cast, arith.TruncFOp):
            return
        producer = cast.inputs[0].owner
        if not isinstance(producer, KernelOp) or sum(1 for _ in producer.result.uses) != 1:
            return
        if cast.ins.data[0] != cast.out:  # reads each element where it writes it
            return
        result_type = cast.result.type
        assert isinstance(result_type, TensorType) and isinstance(producer.result.type, TensorType)
        if result_type.get_shape() != producer.result.type.get_shape():
            return
        rounded = rounded_product(producer, result_type, self.tiles)
        if rounded is None:
            return
        rounded.result.name_hint = cast.result.name_hint
        rewriter.replace(cast, rounded)
        rewriter.erase(producer)


@dataclass
class RoundInProducer(RewritePattern):
    """A reader that only rounds a multiply-accumulate's result to bf16 (every use of that
    operand in its body an ``arith.truncf`` to bf16) reads the multiply-accumulate's bf16
    result instead: the producer rounds on the way out, the reader takes the bf16 value as it
    is. A round trip ``extf(truncf(mm))`` (torch's bf16 matmul result widened for f32 ops)
    becomes a widening only, which ``WidenInReaders`` inlines into its readers (see the module
    docstring)."""

    tiles: TileChoices

    @op_type_rewrite_pattern
    def match_and_rewrite(self, reader: KernelOp, rewriter: PatternRewriter) -> None:
        if only_cast(reader, arith.TruncFOp) and reader.ins.data[0] == reader.out:
            return  # RoundOnTheWayOut's: the reader goes
        for slot, value in enumerate(reader.inputs):
            producer = value.owner
            if not isinstance(producer, KernelOp) or sum(1 for _ in producer.result.uses) != 1:
                continue
            if any(a.index_port == slot for a in [*reader.ins.data, reader.out]):
                continue
            arg = reader.body.block.args[slot]
            uses = [use.operation for use in arg.uses]
            if not uses or not all(_rounds_to_bf16(op) for op in uses):
                continue
            produced = producer.result.type
            assert isinstance(produced, TensorType)
            narrow = TensorType(BFloat16Type(), produced.get_shape())
            rounded = rounded_product(producer, narrow, self.tiles)
            if rounded is None:
                continue
            rounded.result.name_hint = producer.result.name_hint
            rewriter.replace(producer, rounded)
            rewriter.replace(reader, _reading_bf16(reader, slot, self.tiles))
            return


def _rounds_to_bf16(op: Operation) -> bool:
    return isinstance(op, arith.TruncFOp) and isinstance(op.result.type, BFloat16Type)


def _reading_bf16(reader: KernelOp, slot: int, tiles: TileChoices) -> KernelOp:
    """``reader`` with its operand ``slot`` (an f32 value its body only rounds to bf16) taken
    as bf16: the roundings are the operand itself."""
    old = reader.body.block.args[slot]
    arg_types = [a.type for a in reader.body.block.args]
    arg_types[slot] = BFloat16Type()
    block = Block(arg_types=arg_types)
    vmap: dict[SSAValue, SSAValue] = dict(zip(reader.body.block.args, block.args, strict=True))
    for op in reader.body.block.ops:
        if isinstance(op, arith.TruncFOp) and op.input == old:
            vmap[op.result] = block.args[slot]
            continue
        block.add_op(op.clone(value_mapper=vmap))
    inputs = list(reader.inputs)
    tile = retiled(reader, inputs, reader.result.type, tiles)
    name = reader.sym_name.data if reader.sym_name is not None else None
    kernel = KernelOp(
        inputs,
        reader.result.type,
        reader.space_values,
        tile,
        list(reader.ins.data),
        reader.out,
        reader.combiner.data,
        block,
        name,
    )
    kernel.location = reader.location
    kernel.result.name_hint = reader.result.name_hint
    return kernel


@dataclass
class WidenInReaders(RewritePattern):
    """A widening to f32 is inlined into every reader of its result (see the module
    docstring)."""

    tiles: TileChoices

    @op_type_rewrite_pattern
    def match_and_rewrite(self, cast: KernelOp, rewriter: PatternRewriter) -> None:
        if not only_cast(cast, arith.ExtFOp) or not cast.result.uses:
            return
        for use in cast.result.uses:
            reader = use.operation
            if not isinstance(reader, KernelOp):
                return  # yielded by the section
            read = reader.ins.data[use.index]
            accesses = [*reader.ins.data, reader.out]
            if read.is_indexed or any(a.index_port == use.index for a in accesses):
                return
            if composition(cast, read, reader.space_values) is None:
                return
        while cast.result.uses:
            use = next(iter(cast.result.uses))
            reader = use.operation
            assert isinstance(reader, KernelOp)
            fused = fuse(cast, reader, use.index, self.tiles)
            assert fused is not None
            fused.result.name_hint = reader.result.name_hint
            rewriter.replace(reader, fused)
        rewriter.erase(cast)


def transposed_access(
    access: AccessAttr, space: Sequence[int], rows: int, cols: int
) -> AccessAttr | None:
    """``access`` (over a row-major ``[rows, cols]`` tensor) over its transpose ``[cols, rows]``
    (None: a counter walks neither a row nor a column alone, or the columns it reaches cross a
    row)."""
    row0, col0 = divmod(access.offset_value, cols)
    strides: list[int] = []
    reach = col0
    for stride, extent in zip(access.stride_values, space, strict=True):
        if stride % cols == 0:  # walks the rows (0: neither)
            strides.append(stride // cols)
        elif 0 < stride < cols:
            strides.append(stride * rows)
            reach += stride * (extent - 1)
        else:
            return None
    if access.is_indexed:
        return None
    return access_attr(col0 * rows + row0, strides) if reach < cols else None


def _walks_rows_on_lanes(reader: KernelOp, slot: int, cols: int) -> bool | None:
    """Whether ``reader``'s lanes counter walks the rows (True) or the columns (False) of its
    operand ``slot``, a row-major matrix of ``cols`` columns (None: neither)."""
    space = reader.space_values
    lanes = rules.lanes_counter(space, reader.out.stride_values)
    if lanes < 0 or space[lanes] <= 1:
        return None
    stride = reader.ins.data[slot].stride_values[lanes]
    if stride == 0:
        return None
    return stride % cols == 0


@dataclass
class TransposeRounding(RewritePattern):
    """A parameter rounded to bf16 (a ``truncf``-only kernel over a section argument, a matrix
    ``[n, k]``) is written transposed, ``[k, n]``, when more of its readers spread its rows over
    their lanes than its columns: a bf16 matmul ``x W^T`` reads 32 n-points of the weight a
    vector, 32 bank words at stride ``k`` (two cycles of 16 banks), and of ``W^T`` 16 words in
    a row (one). Every reader's access is that of the transpose; the values do not change."""

    tiles: TileChoices

    @op_type_rewrite_pattern
    def match_and_rewrite(self, cast: KernelOp, rewriter: PatternRewriter) -> None:
        if not only_cast(cast, arith.TruncFOp) or not isinstance(cast.inputs[0], BlockArgument):
            return
        result_type = cast.result.type
        assert isinstance(result_type, TensorType)
        shape = result_type.get_shape()
        if len(shape) != 2 or min(shape) <= 1 or tuple(cast.space_values) != tuple(shape):
            return
        rows, cols = shape
        if cast.out != access_attr(0, [cols, 1]) or cast.ins.data[0] != cast.out:
            return
        reads: list[tuple[KernelOp, int, AccessAttr]] = []
        votes = 0
        for use in cast.result.uses:
            reader = use.operation
            if not isinstance(reader, KernelOp):
                return  # yielded by the section
            if any(a.index_port == use.index for a in [*reader.ins.data, reader.out]):
                return
            moved = transposed_access(reader.ins.data[use.index], reader.space_values, rows, cols)
            if moved is None:
                return
            reads.append((reader, use.index, moved))
            walks_rows = _walks_rows_on_lanes(reader, use.index, cols)
            votes += 0 if walks_rows is None else 1 if walks_rows else -1
        if votes <= 0:
            return
        transposed = KernelOp(
            list(cast.inputs),
            TensorType(result_type.element_type, [cols, rows]),
            cast.space_values,
            cast.tile_values,
            list(cast.ins.data),
            access_attr(0, [1, rows]),
            "none",
            cast.body.clone(),
            cast.sym_name.data if cast.sym_name is not None else None,
        )
        transposed.location = cast.location
        transposed.result.name_hint = cast.result.name_hint
        rewriter.insert(transposed, InsertPoint.before(cast))
        for reader, slot, moved in reads:
            ins = list(reader.ins.data)
            ins[slot] = moved
            reader.operands[slot] = transposed.result
            reader.properties["ins"] = ArrayAttr(ins)
            tile = retiled(reader, list(reader.inputs), reader.result.type, self.tiles)
            reader.properties["tile"] = dense_i64(tile)
            rewriter.notify_op_modified(reader)
        rewriter.erase(cast)


class MergeEqualCasts(RewritePattern):
    """A kernel body widens or rounds a value once: a later ``extf``/``truncf`` of the same
    value to the same type is the first one's result (inlining may have put several in, a stage
    each)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, kernel: KernelOp, rewriter: PatternRewriter) -> None:
        first: dict[tuple[str, SSAValue, Attribute], SSAValue] = {}
        for op in list(kernel.body.block.ops):
            if not isinstance(op, arith.ExtFOp | arith.TruncFOp):
                continue
            key = (op.name, op.input, op.result.type)
            if key not in first:
                first[key] = op.result
                continue
            rewriter.replace(op, [], [first[key]])


@dataclass(frozen=True)
class FuseCasts(ModulePass):
    """Fuse cast kernels into their neighbours (see the module docstring)."""

    name = "fuse-casts"

    target: str = "plasticine"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        self.apply_changed(ctx, op)

    def apply_changed(self, ctx: Context, op: ModuleOp) -> bool:
        """``apply``, saying whether a pattern rewrote the IR."""
        tiles = TileChoices(get_target(self.target))
        patterns: list[RewritePattern] = [
            RoundOnTheWayOut(tiles),
            RoundInProducer(tiles),
            WidenInReaders(tiles),
            TransposeRounding(tiles),
            MergeEqualCasts(),
        ]
        return PatternRewriteWalker(
            GreedyRewritePatternApplier(patterns, dce_enabled=False)
        ).rewrite_module(op)
