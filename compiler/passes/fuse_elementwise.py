"""fuse-elementwise: inline elementwise kernels into the one kernel that reads their result.

A kernel ``P`` is fused into a kernel ``K`` when

- ``P`` is elementwise: combiner ``none`` and its result written row-major over its space
  (``out`` offset 0, strides ``row_major(space)`` on every counter of extent above 1), so each
  point of its space writes one distinct element;
- every use of ``P``'s result is an operand of ``K`` (one or more of its operands) and the
  section does not yield it;
- ``K``'s access to it composes with ``P``'s space: the element ``K`` reads at each of its
  points is written by ``P`` at a point whose coordinates are affine in ``K``'s counters,
  ``p[d] = q[d] + sum_c M[d][c] * k[c]``, inside ``P``'s space. ``M`` comes from ``K``'s
  strides: counter ``c`` walks ``P``'s dim ``d``, the outermost whose row-major stride divides
  ``K``'s stride of ``c`` (a stride 0, a broadcast, walks no dim). A read that crosses ``P``'s
  dims (a reshape that merges them) does not compose and is not fused.

Not fused: a result ``K`` reads through a data-dependent access (a gather) or uses as another
access's index, and a producer drawing random numbers (``rdu_tile.random`` hashes the point's
index in its space) unless ``K`` runs over the same space point for point. Index ports of the
accesses are renumbered as operands move.

``K`` may be elementwise itself or a reduction (a ``sum`` of an ``exp``, a matmul of a
``relu``). The fused kernel keeps ``K``'s name, space, result access, combiner and location;
``P``'s operands replace the fused operand, read through ``P``'s accesses composed with ``M``
and ``q``; ``P``'s body is inlined ahead of ``K``'s (an ``rdu_tile.index d`` of ``P`` becomes
``q[d] + sum_c M[d][c] * index c``); operands that are the same tensor through the same access
are merged; the tile is chosen again (``tiling.choose_tile``) for the new accesses. Fusing
repeats until no kernel can be fused (the ``FuseProducer`` pattern, applied to a fixpoint), so
chains fold into their last consumer. The numbers do
not change: the same scalar ops run on the same values.

Before (target ``plasticine``)::

    %e = rdu_tile.kernel @exp_0 (%x) space [4, 8] tile [4, 8]
           ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none
           : (tensor<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%a: f32):
      %r = math.exp %a : f32
      rdu_tile.yield %r : f32
    }
    %s = rdu_tile.kernel @sum_1 (%e) space [4, 8] tile [4, 8]
           ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [1, 0]> combiner add
           : (tensor<4x8xf32>) -> tensor<4xf32> {
    ^bb0(%a: f32):
      rdu_tile.yield %a : f32
    }

After::

    %s = rdu_tile.kernel @sum_1 (%x) space [4, 8] tile [4, 8]
           ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [1, 0]> combiner add
           : (tensor<4x8xf32>) -> tensor<4xf32> {
    ^bb0(%a: f32):
      %r = math.exp %a : f32
      rdu_tile.yield %r : f32
    }
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import IndexType, IntegerAttr, ModuleOp, i64
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from compiler.passes.ir_helpers import elt_of, row_major
from compiler.passes.tiling import choose_tile, element_dtype
from compiler.targets import Target, get_target
from dialects.rdu_tile import AccessAttr, IndexOp, KernelOp, RandomOp, YieldOp
from runtime.machine.rules import address_range


@dataclass(frozen=True)
class Composition:
    """Where ``P``'s counters are at a point of ``K``: ``p[d] = q[d] + sum_c M[d][c] * k[c]``."""

    q: tuple[int, ...]
    """One offset per counter of ``P``."""
    m: tuple[tuple[int, ...], ...]
    """One row per counter of ``P``, one column per counter of ``K``."""
    counters: int
    """The number of ``K``'s counters."""

    def compose(self, access: AccessAttr) -> AccessAttr:
        """An access of ``P`` (over its counters) as an access over ``K``'s counters."""
        strides = access.stride_values
        offset = access.offset_value + sum(s * q for s, q in zip(strides, self.q, strict=True))
        new = [
            sum(s * row[c] for s, row in zip(strides, self.m, strict=True))
            for c in range(self.counters)
        ]
        index = access.index if access.is_indexed else ()
        return AccessAttr(offset, new, index)


def is_elementwise(kernel: KernelOp) -> bool:
    """Combiner none and a row-major result over the space: each point writes its own element."""
    out = kernel.out
    if kernel.combiner.data != "none" or out.offset_value != 0 or out.is_indexed:
        return False
    space = kernel.space_values
    expected = row_major(space)
    return all(
        e <= 1 or s == r for e, s, r in zip(space, kernel.out.stride_values, expected, strict=True)
    )


def composition(producer: KernelOp, read: AccessAttr, space: Sequence[int]) -> Composition | None:
    """How a reader iterating ``space`` through ``read`` walks ``producer``'s space (or None)."""
    dims_space = producer.space_values
    if 0 in dims_space or 0 in space:
        return None
    strides = row_major(dims_space)
    dims = [d for d, e in enumerate(dims_space) if e > 1]
    q = [0] * len(dims_space)
    rest = read.offset_value
    for d in dims:
        q[d], rest = divmod(rest, strides[d])
    if rest != 0:
        return None
    m = [[0] * len(space) for _ in dims_space]
    for c, (extent, stride) in enumerate(zip(space, read.stride_values, strict=True)):
        if extent <= 1 or stride == 0:
            continue
        walked = next((d for d in dims if stride > 0 and stride % strides[d] == 0), None)
        if walked is None:
            return None
        m[walked][c] = stride // strides[walked]
    for d, extent in enumerate(dims_space):
        lo, hi = address_range(q[d], m[d], space)
        if lo < 0 or hi > max(extent, 1) - 1:
            return None
    return Composition(tuple(q), tuple(tuple(row) for row in m), len(space))


def _index_ops(comp: Composition, d: int, index_op: IndexOp) -> list[Operation]:
    """Ops computing ``q[d] + sum_c M[d][c] * index c`` (the last op's result is the value)."""
    ops: list[Operation] = []
    value: SSAValue | None = None
    for c, factor in enumerate(comp.m[d]):
        if factor == 0:
            continue
        index = IndexOp(c, i64)
        ops.append(index)
        term = index.result
        if factor != 1:
            scale = arith.ConstantOp(IntegerAttr(factor, i64))
            mul = arith.MuliOp(term, scale.result)
            ops += [scale, mul]
            term = mul.result
        if value is not None:
            ops.append(arith.AddiOp(value, term))
            term = ops[-1].results[0]
        value = term
    if value is None or comp.q[d] != 0:
        offset = arith.ConstantOp(IntegerAttr(comp.q[d], i64))
        ops.append(offset)
        if value is not None:
            ops.append(arith.AddiOp(value, offset.result))
        value = ops[-1].results[0]
    if isinstance(index_op.result.type, IndexType):
        ops.append(arith.IndexCastOp(value, index_op.result.type))
    return ops


def with_ports(access: AccessAttr, ports: Sequence[int]) -> AccessAttr:
    """``access`` with its index port (if any) renumbered: old operand ``i`` is ``ports[i]``."""
    if not access.is_indexed:
        return access
    index = (ports[access.index_port], access.index_stride, access.index_limit)
    return AccessAttr(access.offset_value, access.stride_values, index)


def fuse(producer: KernelOp, consumer: KernelOp, slot: int, target: Target) -> KernelOp | None:
    """``consumer`` with ``producer`` inlined at operand ``slot`` (None if it does not compose)."""
    space = consumer.space_values
    comp = composition(producer, consumer.ins.data[slot], space)
    if comp is None:
        return None
    nprod = len(producer.inputs)
    old_inputs = list(consumer.inputs)
    # Where the operands go: the producer's replace the consumer's operand ``slot``.
    cons_ports = [i if i < slot else i - 1 + nprod for i in range(len(old_inputs))]
    prod_ports = [slot + i for i in range(nprod)]
    inputs = [*old_inputs[:slot], *producer.inputs, *old_inputs[slot + 1 :]]
    cons_ins = [with_ports(a, cons_ports) for a in consumer.ins.data]
    prod_ins = [with_ports(comp.compose(a), prod_ports) for a in producer.ins.data]
    ins = [*cons_ins[:slot], *prod_ins, *cons_ins[slot + 1 :]]
    out = with_ports(consumer.out, cons_ports)

    block = Block(arg_types=[elt_of(v) for v in inputs])
    vmap: dict[SSAValue, SSAValue] = {}
    for i, arg in enumerate(producer.body.block.args):
        vmap[arg] = block.args[slot + i]
    for op in producer.body.block.ops:
        if isinstance(op, YieldOp):
            continue
        if isinstance(op, IndexOp):
            ops = _index_ops(comp, op.counter.value.data, op)
            block.add_ops(ops)
            vmap[op.result] = ops[-1].results[0]
            continue
        block.add_op(op.clone(value_mapper=vmap))
    inlined = vmap.get(producer.yield_op.value, producer.yield_op.value)
    cmap: dict[SSAValue, SSAValue] = {}
    for i, arg in enumerate(consumer.body.block.args):
        cmap[arg] = inlined if i == slot else block.args[cons_ports[i]]
    for op in consumer.body.block.ops:
        block.add_op(op.clone(value_mapper=cmap))
    inputs, ins, out = _merge_duplicates(block, inputs, ins, out)

    accesses = [
        (a.stride_values, element_dtype(elt_of(v))) for a, v in zip(ins, inputs, strict=True)
    ]
    accesses.append((out.stride_values, element_dtype(elt_of(consumer.result))))
    tile = choose_tile(space, accesses, out.stride_values, target)
    name = consumer.sym_name.data if consumer.sym_name is not None else None
    fused = KernelOp(
        inputs, consumer.result.type, space, tile, ins, out, consumer.combiner.data, block, name
    )
    fused.location = consumer.location
    return fused


def _merge_duplicates(
    block: Block, inputs: list[SSAValue], ins: list[AccessAttr], out: AccessAttr
) -> tuple[list[SSAValue], list[AccessAttr], AccessAttr]:
    """One operand per (tensor, access): later duplicates' block arguments are replaced."""
    first: dict[tuple[SSAValue, AccessAttr], int] = {}
    ports: list[int] = []
    keep: list[int] = []
    for i, key in enumerate(zip(inputs, ins, strict=True)):
        if key in first:
            block.args[i].replace_all_uses_with(block.args[first[key]])
            ports.append(ports[first[key]])
        else:
            first[key] = i
            ports.append(len(keep))
            keep.append(i)
    for i in reversed(range(len(inputs))):
        if i not in keep:
            block.erase_arg(block.args[i])
    new_ins = [with_ports(ins[i], ports) for i in keep]
    return [inputs[i] for i in keep], new_ins, with_ports(out, ports)


def _is_identity(comp: Composition, producer: KernelOp, consumer: KernelOp) -> bool:
    """Whether the consumer's point is the producer's point (same space, same counters)."""
    if producer.space_values != consumer.space_values or any(comp.q):
        return False
    return all(
        factor == (1 if d == c else 0)
        for d, row in enumerate(comp.m)
        for c, factor in enumerate(row)
        if producer.space_values[d] > 1
    )


def fusable_slot(kernel: KernelOp) -> tuple[KernelOp, int] | None:
    """A producer ``kernel`` reads that may be fused into it, and the operand slot.

    Every use of the producer's result must be ``kernel``'s (so a yielded result is never
    fused); a result read through a data-dependent access (a gather) or used as another
    access's index is not fused, and a producer drawing random numbers (hashed from the point's
    index in its space) only into a kernel over the same space, point for point.
    """
    accesses = [*kernel.ins.data, kernel.out]
    for slot, value in enumerate(kernel.inputs):
        producer = value.owner
        if not isinstance(producer, KernelOp) or not is_elementwise(producer):
            continue
        if any(use.operation is not kernel for use in value.uses):
            continue
        read = kernel.ins.data[slot]
        if read.is_indexed or any(a.index_port == slot for a in accesses):
            continue
        comp = composition(producer, read, kernel.space_values)
        if comp is None:
            continue
        random = any(isinstance(op, RandomOp) for op in producer.body.block.ops)
        if random and not _is_identity(comp, producer, kernel):
            continue
        return producer, slot
    return None


@dataclass
class FuseProducer(RewritePattern):
    """Fuse into a kernel the first of its producers that may be fused (``fusable_slot``);
    applied until no kernel has one, so chains fold into their last consumer."""

    target: Target

    @op_type_rewrite_pattern
    def match_and_rewrite(self, kernel: KernelOp, rewriter: PatternRewriter) -> None:
        found = fusable_slot(kernel)
        if found is None:
            return
        producer, slot = found
        fused = fuse(producer, kernel, slot, self.target)
        assert fused is not None
        fused.result.name_hint = kernel.result.name_hint
        rewriter.replace(kernel, fused)
        if not producer.result.uses:
            rewriter.erase(producer)


@dataclass(frozen=True)
class FuseElementwise(ModulePass):
    """Inline elementwise kernels into their only consumer (see the module docstring)."""

    name = "fuse-elementwise"

    target: str = "plasticine"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        fusion = FuseProducer(get_target(self.target))
        PatternRewriteWalker(
            GreedyRewritePatternApplier([fusion], dce_enabled=False)
        ).rewrite_module(op)
