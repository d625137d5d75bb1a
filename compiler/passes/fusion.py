"""Inlining one kernel into another, the rewrite the fusion passes share (fuse-elementwise,
fuse-casts; a pass never imports another pass).

``fuse(P, K, slot)`` is ``K`` with the elementwise kernel ``P`` inlined at its operand ``slot``
when ``K``'s read of ``P``'s result composes with ``P``'s space (``composition``: the element
``K`` reads at each of its points is written by ``P`` at a point whose coordinates are affine in
``K``'s counters); ``compiler/passes/fuse_elementwise.py`` describes the rewrite in full.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.dialects import arith
from xdsl.dialects.builtin import IndexType, IntegerAttr, i64
from xdsl.ir import Block, Operation, SSAValue

from compiler.passes.ir_helpers import elt_of, row_major
from compiler.passes.tiling import TileChoices, element_dtype
from dialects.rdu_tile import AccessAttr, IndexOp, KernelOp, YieldOp, access_attr
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
        return access_attr(offset, new, [v.data for v in index])


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
    return access_attr(access.offset_value, access.stride_values, index)


def fuse(producer: KernelOp, consumer: KernelOp, slot: int, tiles: TileChoices) -> KernelOp | None:
    """``consumer`` with ``producer`` inlined at operand ``slot`` (None if it does not compose),
    its tile from ``tiles``."""
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
    tile = tiles.tile(space, accesses, out.stride_values)
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
