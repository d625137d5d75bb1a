"""convert-rdu-tile-to-pcu-pmu: kernels become PCUs, the tensors between them PMUs.

Inside each ``dataflow.section``:

- every block argument that a kernel reads or the section yields gets a ``pmu.buffer`` loaded
  from DRAM, named after the argument (``arg_names``), at the top of the section;
- every ``rdu_tile.kernel`` becomes a ``pcu.unit`` with the same space, tile, accesses and
  combiner, ``lanes = target.pcu_lanes``, reading the PMUs of its operands; its result goes into
  a new ``pmu.buffer``. Unit and buffer take the kernel's name (``@matmul_0``) and location;
- the kernel body becomes the stage pipeline, one stage an op (table ``OPCODES``; comparisons
  by predicate, ``arith.xori`` with ``true`` is ``not``, ``arith.constant`` is ``pcu.const``,
  ``rdu_tile.index`` is ``pcu.counter``, ``index`` values become i64);
- the section's ``dataflow.yield`` yields the PMU buffers (``memref`` values), an argument
  yielded as is included.

A PMU's ``tile_bytes`` is the largest tile any unit streams through it (see
``compiler/passes/tiling.py``), ``nbuf`` is ``tiling.NBUF`` and ``banks`` is
``target.pmu_banks``; ``bank_skew`` is set where skewed banking makes the vectors its units
stream through it cheaper (``tiling.choose_bank_skew``).

Before (target ``plasticine``)::

    ^bb0(%x: tensor<16x128xf32>):
      %r = rdu_tile.kernel @relu_0 (%x) space [16, 128] tile [16, 128]
             ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [128, 1]>
             combiner "none" : (tensor<16x128xf32>) -> tensor<16x128xf32> {
      ^bb0(%a: f32):
        %z = arith.constant 0.000000e+00 : f32
        %m = arith.maximumf %a, %z : f32
        rdu_tile.yield %m : f32
      }
      dataflow.yield %r : tensor<16x128xf32>

After::

    ^bb0(%x: tensor<16x128xf32>):
      %0 = pmu.buffer %x {name = "input.0", tile_bytes = 8192 : i64, nbuf = 2 : i64,
                          banks = 16 : i64} : tensor<16x128xf32> -> memref<16x128xf32>
      %r = pcu.unit @relu_0 (%0) space [16, 128] tile [16, 128] lanes 16
             ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [128, 1]>
             combiner "none" : (memref<16x128xf32>) -> tensor<16x128xf32> {
      ^bb0(%a: f32):
        %z = pcu.const 0.000000e+00 : f32
        %m = pcu.stage "max"(%a, %z) : (f32, f32) -> f32
        pcu.yield %m : f32
      }
      %1 = pmu.buffer %r {name = "relu_0", ...} : tensor<16x128xf32> -> memref<16x128xf32>
      dataflow.yield %1 : memref<16x128xf32>
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import (
    FloatAttr,
    IndexType,
    IntegerAttr,
    ModuleOp,
    TensorType,
    i1,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from compiler.ir_helpers import elt_of, fail, op_name
from compiler.passes.tiling import (
    NBUF,
    buffer_tile_bytes,
    choose_bank_skew,
    element_bytes,
    tile_elements,
)
from compiler.targets import Target, get_target
from compiler.value_names import ssa_hint
from dialects import dataflow as df
from dialects import rdu_tile
from dialects.pcu import ConstOp, CounterOp, StageOp, UnitOp
from dialects.pcu import YieldOp as PcuYieldOp
from dialects.pmu import BufferOp
from runtime import perf

OPCODES: dict[str, str] = {
    "arith.addf": "add",
    "arith.addi": "add",
    "arith.subf": "sub",
    "arith.subi": "sub",
    "arith.mulf": "mul",
    "arith.muli": "mul",
    "arith.divf": "div",
    "arith.divsi": "div",
    "arith.divui": "div",
    "arith.maximumf": "max",
    "arith.maxnumf": "max",
    "arith.maxsi": "max",
    "arith.maxui": "max",
    "arith.minimumf": "min",
    "arith.minnumf": "min",
    "arith.minsi": "min",
    "arith.minui": "min",
    "arith.negf": "neg",
    "arith.andi": "and",
    "arith.ori": "or",
    "arith.select": "select",
    "arith.extf": "cast",
    "arith.truncf": "cast",
    "arith.sitofp": "cast",
    "arith.uitofp": "cast",
    "arith.fptosi": "cast",
    "arith.fptoui": "cast",
    "arith.extsi": "cast",
    "arith.extui": "cast",
    "arith.trunci": "cast",
    "arith.index_cast": "cast",
    "arith.index_castui": "cast",
    "math.exp": "exp",
    "math.log": "log",
    "math.sqrt": "sqrt",
    "math.rsqrt": "rsqrt",
    "math.tanh": "tanh",
    "math.erf": "erf",
    "math.cos": "cos",
    "math.sin": "sin",
    "math.absf": "abs",
    "math.absi": "abs",
    "math.powf": "pow",
}
"""The PCU opcode of every arith/math op a kernel body may hold (comparisons and xori aside)."""

CMP_OPCODES: dict[str, str] = {
    "eq": "eq",
    "ne": "ne",
    "oeq": "eq",
    "ueq": "eq",
    "one": "ne",
    "une": "ne",
    "olt": "lt",
    "ult": "lt",
    "slt": "lt",
    "ole": "le",
    "ule": "le",
    "sle": "le",
    "ogt": "gt",
    "ugt": "gt",
    "sgt": "gt",
    "oge": "ge",
    "uge": "ge",
    "sge": "ge",
}
"""``arith.cmpf``/``arith.cmpi`` predicate -> opcode (the fabric compares like numpy)."""


def stage_type(typ: Attribute) -> Attribute:
    """The type a value has inside a PCU (``index`` is i64)."""
    return i64 if isinstance(typ, IndexType) else typ


def _is_true(value: SSAValue) -> bool:
    owner = value.owner
    if not isinstance(owner, arith.ConstantOp) or value.type != i1:
        return False
    attr = owner.value
    return isinstance(attr, IntegerAttr) and attr.value.data != 0


def convert_body(kernel: rdu_tile.KernelOp, name: str) -> Block:
    """The stage pipeline of ``kernel``'s body."""
    old = kernel.body.block
    block = Block(arg_types=[stage_type(t) for t in old.arg_types])
    vmap: dict[SSAValue, SSAValue] = dict(zip(old.args, block.args, strict=True))
    for op in old.ops:
        new: Operation | None = None
        if isinstance(op, rdu_tile.YieldOp):
            new = PcuYieldOp(vmap[op.value])
        elif isinstance(op, arith.ConstantOp):
            attr = op.value
            typ = stage_type(op.result.type)
            if isinstance(attr, FloatAttr):
                new = ConstOp(float(attr.value.data), typ)
            elif isinstance(attr, IntegerAttr):
                number = attr.value.data
                new = ConstOp(int(number != 0) if typ == i1 else number, typ)
        elif isinstance(op, rdu_tile.IndexOp):
            new = CounterOp(op.counter.value.data)
        elif isinstance(op, rdu_tile.RandomOp):
            new = StageOp("rand", [vmap[op.key]], op.result.type)
        elif isinstance(op, arith.CmpfOp | arith.CmpiOp):
            table = (
                arith.CMPF_COMPARISON_OPERATIONS
                if isinstance(op, arith.CmpfOp)
                else arith.CMPI_COMPARISON_OPERATIONS
            )
            predicate = table[op.predicate.value.data]
            if predicate in CMP_OPCODES:
                args = [vmap[op.lhs], vmap[op.rhs]]
                new = StageOp(CMP_OPCODES[predicate], args, i1)
        elif isinstance(op, arith.XOrIOp) and op.result.type == i1:
            # x ^ true is not x; x ^ y on booleans is x != y.
            if _is_true(op.rhs) or _is_true(op.lhs):
                x = op.lhs if _is_true(op.rhs) else op.rhs
                new = StageOp("not", [vmap[x]], i1)
            else:
                new = StageOp("ne", [vmap[op.lhs], vmap[op.rhs]], i1)
        elif op.name in OPCODES:
            opcode = OPCODES[op.name]
            args = [vmap[v] for v in op.operands]
            rtype = stage_type(op.results[0].type)
            if opcode == "cast" and args[0].type == rtype:
                vmap[op.results[0]] = args[0]  # index <-> i64: nothing to do on the fabric
                continue
            new = StageOp(opcode, args, rtype)
        if new is None:
            raise fail(kernel, f"'{op_name(op)}' in kernel @{name} has no PCU stage")
        block.add_op(new)
        if op.results:
            vmap[op.results[0]] = new.results[0]
    # A stage nothing reads (the `true` of a `not`) would only waste a pipeline stage.
    for op in reversed(list(block.ops)):
        if not isinstance(op, PcuYieldOp) and not any(r.uses for r in op.results):
            block.erase_op(op)
    return block


def tensor_bytes(value: SSAValue) -> int:
    typ = value.type
    assert isinstance(typ, TensorType)
    n = 1
    for d in typ.get_shape():
        n *= d
    return n * element_bytes(typ.element_type)


@dataclass
class _SectionLowering:
    """Lowers one section's kernels to units and buffers."""

    section: df.SectionOp
    target: Target

    def unique(self, name: str, taken: set[str]) -> str:
        result, n = name, 1
        while result in taken:
            result = f"{name}_{n}"
            n += 1
        taken.add(result)
        return result

    def buffer(
        self, value: SSAValue, name: str, footprints: Sequence[int], origin: Operation
    ) -> BufferOp:
        tile_bytes = buffer_tile_bytes(footprints, tensor_bytes(value), self.target)
        buf = BufferOp(value, name, tile_bytes, NBUF, self.target.pmu_banks)
        buf.location = origin.location
        buf.result.name_hint = ssa_hint(re.sub(r"[^A-Za-z0-9_]", "_", name) + "_pmu")
        return buf

    def run(self) -> None:
        block = self.section.body.block
        yield_op = self.section.yield_op
        kernels: list[rdu_tile.KernelOp] = []
        for op in block.ops:
            if isinstance(op, rdu_tile.KernelOp):
                kernels.append(op)
            elif op is not yield_op:
                raise fail(op, f"'{op_name(op)}' cannot be lowered to PCUs and PMUs")

        # Bytes of the tile each unit streams through each tensor it reads or writes.
        footprints: dict[SSAValue, list[int]] = {}
        first_reader: dict[SSAValue, Operation] = {}
        for k in kernels:
            tile = k.tile_values
            for v, acc in zip(k.inputs, k.ins.data, strict=True):
                n = tile_elements(acc.stride_values, tile) * element_bytes(elt_of(v))
                footprints.setdefault(v, []).append(n)
                first_reader.setdefault(v, k)
            n = tile_elements(k.out.stride_values, tile) * element_bytes(elt_of(k.result))
            footprints.setdefault(k.result, []).append(n)

        taken: set[str] = set()
        buffers: dict[SSAValue, BufferOp] = {}
        yielded = set(yield_op.values)
        names = [n.data for n in self.section.arg_names]
        taken.update(names)
        loads: list[Operation] = []
        for arg, name in zip(block.args, names, strict=True):
            if arg not in footprints and arg not in yielded:
                continue
            origin = first_reader.get(arg, self.section)
            buf = self.buffer(arg, name, footprints.get(arg, []), origin)
            buffers[arg] = buf
            loads.append(buf)
        if block.first_op is not None:
            Rewriter.insert_op(loads, InsertPoint.before(block.first_op))

        for i, k in enumerate(kernels):
            base = k.sym_name.data if k.sym_name is not None else f"unit_{i}"
            name = self.unique(base, taken)
            body = convert_body(k, name)
            unit = UnitOp(
                name,
                [buffers[v].result for v in k.inputs],
                k.result.type,
                k.space_values,
                k.tile_values,
                self.target.pcu_lanes,
                list(k.ins.data),
                k.out,
                k.combiner.data,
                body,
            )
            unit.location = k.location
            unit.result.name_hint = k.result.name_hint
            buf = self.buffer(unit.result, name, footprints[k.result], k)
            Rewriter.insert_op([unit, buf], InsertPoint.before(k))
            buffers[k.result] = buf

        skew_banks([op for op in block.ops if isinstance(op, UnitOp)], self.target)
        for i, value in enumerate(yield_op.values):
            yield_op.operands[i] = buffers[value].result
        for k in reversed(kernels):
            Rewriter.erase_op(k)


def unit_vector_shape(unit: UnitOp, target: Target) -> perf.VectorShape:
    """How ``unit`` walks its space a vector at a time (``runtime.perf.vector_shape``)."""
    space = unit.space_values
    out_strides = unit.out.stride_values
    ops: list[str] = []
    for op in unit.body.block.ops:
        if isinstance(op, StageOp):
            ops.append(op.opcode.data)
        elif isinstance(op, ConstOp | CounterOp):
            ops.append("const")
    yielded = unit.body.block.last_op
    result_op = None
    if isinstance(yielded, PcuYieldOp) and isinstance(yielded.value.owner, StageOp):
        result_op = yielded.value.owner.opcode.data
    at_lanes = perf.lanes_counter(space, out_strides)
    reduced = perf.reduced_counters(space, out_strides)
    lanes = unit.lanes.value.data
    tree = min(lanes, space[at_lanes]) if at_lanes in reduced else 1
    depth = perf.pipeline_depth(ops, unit.combiner.data, result_op, tree)
    return perf.vector_shape(space, out_strides, lanes, depth, target.pcu_stages)


def skew_banks(units: Sequence[UnitOp], target: Target) -> None:
    """Give every buffer the bank skew (``tiling.choose_bank_skew``) that makes the vectors its
    units stream through it cheapest; a buffer that needs none gets no ``bank_skew``."""
    streams: dict[BufferOp, list[tuple[int, list[tuple[int, int]]]]] = {}
    for unit in units:
        shape = unit_vector_shape(unit, target)
        space = unit.space_values
        vectors = shape.vectors(space)
        for value, access in zip(unit.inputs, unit.ins.data, strict=True):
            if isinstance(value.owner, BufferOp):
                along = shape.along(access.stride_values, space)
                streams.setdefault(value.owner, []).append((vectors, along))
        along = shape.along(unit.out.stride_values, space)
        kept = [e for e, s in zip(space, unit.out.stride_values, strict=True) if s != 0 or e == 1]
        out_vectors = -(-math.prod(kept) // max(1, math.prod(n for _, n in along)))
        for use in unit.result.uses:
            if isinstance(use.operation, BufferOp):
                streams.setdefault(use.operation, []).append((out_vectors, along))
    for buf, vectors in streams.items():
        skew = choose_bank_skew(vectors, buf.banks.value.data)
        if skew:
            buf.properties["bank_skew"] = IntegerAttr(skew, i64)


@dataclass(frozen=True)
class ConvertRduTileToPcuPmu(ModulePass):
    """Lower ``rdu_tile.kernel`` ops to ``pcu.unit`` and ``pmu.buffer`` ops (see the module
    docstring)."""

    name = "convert-rdu-tile-to-pcu-pmu"

    target: str = "plasticine"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = get_target(self.target)
        sections = [s for s in op.walk() if isinstance(s, df.SectionOp)]
        for section in sections:
            _SectionLowering(section, target).run()
