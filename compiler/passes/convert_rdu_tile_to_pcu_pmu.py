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

How: ``SectionBuffers`` looks at a section once (the tiles streamed through each tensor, the
unit names) and loads its arguments; then rewrite patterns, one a concern: ``KernelToUnit``
(a kernel becomes a unit, its body moved in, and a buffer), the body's ops one pattern each
(``ConstantToConst``, ``CompareToStage``, ``XorToStage``, ``ArithToStage``, ``IndexToCounter``,
``RandomToStage``, ``YieldToPcuYield``; ``Bf16Multiply``, a multiply of widened bf16 values
reading them as they are; ``EraseUnusedStage``; ``RefuseBodyOp`` for the rest),
``YieldBuffers`` (the section yields PMUs); and last ``SkewBanks`` on every buffer.

Before (target ``plasticine``)::

    ^bb0(%x: tensor<16x128xf32>):
      %r = rdu_tile.kernel @relu_0 (%x) space [16, 128] tile [16, 128]
             ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [128, 1]>
             combiner none : (tensor<16x128xf32>) -> tensor<16x128xf32> {
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
             combiner none : (memref<16x128xf32>) -> tensor<16x128xf32> {
      ^bb0(%a: f32):
        %z = pcu.const 0.000000e+00 : f32
        %m = pcu.stage max(%a, %z) : (f32, f32) -> f32
        pcu.yield %m : f32
      }
      %1 = pmu.buffer %r {name = "relu_0", ...} : tensor<16x128xf32> -> memref<16x128xf32>
      dataflow.yield %1 : memref<16x128xf32>
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import (
    BFloat16Type,
    Float32Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    ModuleOp,
    TensorType,
    i1,
    i64,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint, Rewriter

from compiler.passes.ir_helpers import block_vector_shape, elt_of, fail, op_name, unit_lanes
from compiler.passes.tiling import (
    NBUF,
    TileChoices,
    buffer_tile_bytes,
    element_bytes,
    element_dtype,
    tile_elements,
)
from compiler.targets import Target, get_target
from compiler.value_names import ssa_hint
from dialects import dataflow as df
from dialects import rdu_tile
from dialects.pcu import ConstOp, CounterOp, StageOp, UnitOp
from dialects.pcu import YieldOp as PcuYieldOp
from dialects.pmu import BufferOp
from runtime.machine import perf
from runtime.machine.opcodes import ELEMENT_TYPES

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
    """Whether ``value`` is the boolean constant true (as an ``arith`` or a ``pcu`` constant)."""
    owner = value.owner
    if value.type != i1:
        return False
    if isinstance(owner, ConstOp):
        return owner.number != 0
    if isinstance(owner, arith.ConstantOp):
        attr = owner.value
        return isinstance(attr, IntegerAttr) and attr.value.data != 0
    return False


def tensor_bytes(value: SSAValue) -> int:
    typ = value.type
    assert isinstance(typ, TensorType)
    return math.prod(typ.get_shape()) * element_bytes(typ.element_type)


# --------------------------------------------------------------------------------------------
# What the patterns ask about a section
# --------------------------------------------------------------------------------------------


@dataclass
class SectionBuffers:
    """One section as its lowering sees it: the bytes of the tile each kernel streams through
    each tensor it reads or writes, the first kernel reading each argument, the unit name of
    every kernel (its own, made unique against the argument names), and the PMU of each
    section argument a kernel reads or the section yields (``load_arguments``)."""

    section: df.SectionOp
    target: Target
    footprints: dict[SSAValue, list[int]] = field(default_factory=dict)
    first_reader: dict[SSAValue, Operation] = field(default_factory=dict)
    names: dict[rdu_tile.KernelOp, str] = field(default_factory=dict)
    loads: dict[SSAValue, BufferOp] = field(default_factory=dict)

    def __post_init__(self) -> None:
        block = self.section.body.block
        yield_op = self.section.yield_op
        kernels: list[rdu_tile.KernelOp] = []
        for op in block.ops:
            if isinstance(op, rdu_tile.KernelOp):
                kernels.append(op)
            elif op is not yield_op:
                raise fail(op, f"'{op_name(op)}' cannot be lowered to PCUs and PMUs")
        for k in kernels:
            tile = k.tile_values
            for v, acc in zip(k.inputs, k.ins.data, strict=True):
                n = tile_elements(acc.stride_values, tile) * element_bytes(elt_of(v))
                self.footprints.setdefault(v, []).append(n)
                self.first_reader.setdefault(v, k)
            n = tile_elements(k.out.stride_values, tile) * element_bytes(elt_of(k.result))
            self.footprints.setdefault(k.result, []).append(n)
        taken = {n.data for n in self.section.arg_names}
        for i, k in enumerate(kernels):
            name = base = k.sym_name.data if k.sym_name is not None else f"unit_{i}"
            n = 1
            while name in taken:
                name = f"{base}_{n}"
                n += 1
            taken.add(name)
            self.names[k] = name

    def buffer(
        self, value: SSAValue, name: str, origin: Operation, tiles_of: SSAValue | None = None
    ) -> BufferOp:
        """A PMU holding ``value`` (a section argument or a unit's result), its tile the
        largest streamed through ``tiles_of`` (the kernel result a unit's replaces; default
        ``value``)."""
        footprints = self.footprints.get(value if tiles_of is None else tiles_of, [])
        tile_bytes = buffer_tile_bytes(footprints, tensor_bytes(value), self.target)
        buf = BufferOp(value, name, tile_bytes, NBUF, self.target.pmu_banks)
        buf.location = origin.location
        buf.result.name_hint = ssa_hint(re.sub(r"[^A-Za-z0-9_]", "_", name) + "_pmu")
        return buf

    def load_arguments(self) -> None:
        """A PMU loaded from DRAM, at the top of the section, for every argument a kernel
        reads or the section yields."""
        block = self.section.body.block
        yielded = set(self.section.yield_op.values)
        names = [n.data for n in self.section.arg_names]
        loads: list[Operation] = []
        for arg, name in zip(block.args, names, strict=True):
            if arg not in self.footprints and arg not in yielded:
                continue
            buf = self.buffer(arg, name, self.first_reader.get(arg, self.section))
            self.loads[arg] = buf
            loads.append(buf)
        if block.first_op is not None:
            Rewriter.insert_op(loads, InsertPoint.before(block.first_op))

    def pmu_of(self, value: SSAValue) -> BufferOp | None:
        """The PMU holding ``value``: its load, or the buffer its unit writes (None: its kernel
        is not a unit yet)."""
        if value in self.loads:
            return self.loads[value]
        if isinstance(value.owner, UnitOp):
            return next(u.operation for u in value.uses if isinstance(u.operation, BufferOp))
        return None


@dataclass
class Lowering:
    """The sections being lowered, for the patterns to ask about."""

    target: Target
    sections: dict[df.SectionOp, SectionBuffers] = field(default_factory=dict)

    def of(self, op: Operation) -> SectionBuffers:
        section = op.parent_op()
        assert isinstance(section, df.SectionOp)
        return self.sections[section]


def _in_unit(op: Operation) -> UnitOp | None:
    """The ``pcu.unit`` whose body ``op`` is in (None: another place)."""
    parent = op.parent_op()
    return parent if isinstance(parent, UnitOp) else None


# --------------------------------------------------------------------------------------------
# Kernels, and what the section yields
# --------------------------------------------------------------------------------------------


@dataclass
class KernelToUnit(RewritePattern):
    """A kernel becomes a ``pcu.unit`` (its body moved in, ``index`` arguments made i64) reading
    its operands' PMUs, and a ``pmu.buffer`` holding its result."""

    lowering: Lowering

    @op_type_rewrite_pattern
    def match_and_rewrite(self, k: rdu_tile.KernelOp, rewriter: PatternRewriter) -> None:
        section = self.lowering.of(k)
        pmus = [section.pmu_of(v) for v in k.inputs]
        if any(p is None for p in pmus):
            return  # a producer is not a unit yet
        name = section.names[k]
        for block in k.body.blocks:  # a unit's stages are numbered, not named
            for value in (*block.args, *(r for op in block.walk() for r in op.results)):
                value.name_hint = None
        unit = UnitOp(
            name,
            [p.result for p in pmus if p is not None],
            k.result.type,
            k.space_values,
            k.tile_values,
            self.lowering.target.pcu_lanes,
            list(k.ins.data),
            k.out,
            k.combiner.data,
            rewriter.move_region_contents_to_new_regions(k.body),
        )
        unit.location = k.location
        unit.result.name_hint = k.result.name_hint
        for arg in unit.body.block.args:
            if stage_type(arg.type) != arg.type:
                rewriter.replace_value_with_new_type(arg, stage_type(arg.type))
        buf = section.buffer(unit.result, name, k, tiles_of=k.result)
        rewriter.replace(k, [unit, buf], [unit.result])


@dataclass
class YieldBuffers(RewritePattern):
    """The section yields the PMUs of its results (an argument yielded as is: its load)."""

    lowering: Lowering

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: df.YieldOp, rewriter: PatternRewriter) -> None:
        if not isinstance(op.parent_op(), df.SectionOp):
            return
        if not any(isinstance(v.type, TensorType) for v in op.values):
            return
        section = self.lowering.of(op)
        pmus = [section.pmu_of(v) for v in op.values]
        if any(p is None for p in pmus):
            return  # a kernel is not a unit yet
        new = df.YieldOp(*(p.result for p in pmus if p is not None))
        new.location = op.location
        rewriter.replace(op, new)


# --------------------------------------------------------------------------------------------
# A unit's body: one stage an op
# --------------------------------------------------------------------------------------------


class ConstantToConst(RewritePattern):
    """``arith.constant`` is ``pcu.const`` (a boolean as 0 or 1)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.ConstantOp, rewriter: PatternRewriter) -> None:
        if _in_unit(op) is None:
            return
        attr = op.value
        typ = stage_type(op.result.type)
        if isinstance(attr, FloatAttr):
            rewriter.replace(op, ConstOp(float(attr.value.data), typ))
        elif isinstance(attr, IntegerAttr):
            number = attr.value.data
            rewriter.replace(op, ConstOp(int(number != 0) if typ == i1 else number, typ))


class CompareToStage(RewritePattern):
    """``arith.cmpf`` / ``arith.cmpi`` are a comparison stage (``CMP_OPCODES``)."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, arith.CmpfOp | arith.CmpiOp) or _in_unit(op) is None:
            return
        table = (
            arith.CMPF_COMPARISON_OPERATIONS
            if isinstance(op, arith.CmpfOp)
            else arith.CMPI_COMPARISON_OPERATIONS
        )
        predicate = table[op.predicate.value.data]
        if predicate in CMP_OPCODES:
            rewriter.replace(op, StageOp(CMP_OPCODES[predicate], [op.lhs, op.rhs], i1))


class XorToStage(RewritePattern):
    """A boolean ``arith.xori``: with ``true`` it is ``not``, else ``ne``."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.XOrIOp, rewriter: PatternRewriter) -> None:
        if _in_unit(op) is None or op.result.type != i1:
            return
        if _is_true(op.rhs) or _is_true(op.lhs):
            x = op.lhs if _is_true(op.rhs) else op.rhs
            rewriter.replace(op, StageOp("not", [x], i1))
        else:
            rewriter.replace(op, StageOp("ne", [op.lhs, op.rhs], i1))


class ArithToStage(RewritePattern):
    """Every other arith/math op is the stage ``OPCODES`` names; a cast between types a PCU
    holds alike (``index`` and i64) is no stage at all."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if op.name not in OPCODES or _in_unit(op) is None:
            return
        opcode = OPCODES[op.name]
        args = list(op.operands)
        rtype = stage_type(op.results[0].type)
        if opcode == "cast" and stage_type(args[0].type) == rtype:
            rewriter.replace(op, [], [args[0]])  # index <-> i64: nothing to do on the fabric
            return
        rewriter.replace(op, StageOp(opcode, args, rtype))


class Bf16Multiply(RewritePattern):
    """A multiply of two widened bf16 values reads the bf16 values: ``mul(cast x, cast y)``,
    ``x, y: bf16``, is ``mul(x, y) : (bf16, bf16) -> f32``, the PCU's bf16 multiplier (an exact
    product; ``Opcode.widening``). The widening casts no other stage reads are erased
    (``EraseUnusedStage``): a bf16-mixed matmul takes no stage to widen its operands."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: StageOp, rewriter: PatternRewriter) -> None:
        if op.opcode.data != "mul" or stage_type(op.result.type) != Float32Type():
            return
        narrow: list[SSAValue] = []
        for arg in op.args:
            cast = arg.owner
            if not isinstance(cast, StageOp) or cast.opcode.data != "cast":
                return
            if not isinstance(cast.args[0].type, BFloat16Type):
                return
            narrow.append(cast.args[0])
        rewriter.replace(op, StageOp("mul", narrow, op.result.type))


class IndexToCounter(RewritePattern):
    """``rdu_tile.index`` is ``pcu.counter``."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: rdu_tile.IndexOp, rewriter: PatternRewriter) -> None:
        if _in_unit(op) is not None:
            rewriter.replace(op, CounterOp(op.counter.value.data))


class RandomToStage(RewritePattern):
    """``rdu_tile.random`` is the ``rand`` stage."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: rdu_tile.RandomOp, rewriter: PatternRewriter) -> None:
        if _in_unit(op) is not None:
            rewriter.replace(op, StageOp("rand", [op.key], op.result.type))


class YieldToPcuYield(RewritePattern):
    """``rdu_tile.yield`` is ``pcu.yield``."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: rdu_tile.YieldOp, rewriter: PatternRewriter) -> None:
        if _in_unit(op) is not None:
            rewriter.replace(op, PcuYieldOp(op.value))


class EraseUnusedStage(RewritePattern):
    """A stage nothing reads (the ``true`` of a ``not``) would only waste a pipeline stage."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, StageOp | ConstOp | CounterOp) or _in_unit(op) is None:
            return
        if not any(r.uses for r in op.results):
            rewriter.erase(op)


class RefuseBodyOp(RewritePattern):
    """An op of a unit's body that no pattern before this one turned into a stage."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        unit = _in_unit(op)
        if unit is None or isinstance(op, StageOp | ConstOp | CounterOp | PcuYieldOp):
            return
        raise fail(unit, f"'{op_name(op)}' in kernel @{unit.sym_name.data} has no PCU stage")


# --------------------------------------------------------------------------------------------
# Bank skews
# --------------------------------------------------------------------------------------------


def unit_vector_shape(unit: UnitOp, target: Target) -> perf.VectorShape:
    """How ``unit`` walks its space a vector at a time (``runtime.machine.perf.vector_shape``)."""
    return block_vector_shape(
        unit, unit.space_values, unit_lanes(unit, target), unit.depth(), target
    )


@dataclass
class SkewBanks(RewritePattern):
    """Give a buffer the bank skew (``tiling.choose_bank_skew``) that makes the vectors its
    units stream through it cheapest; a buffer that needs none gets no ``bank_skew``."""

    target: Target
    shapes: dict[UnitOp, perf.VectorShape] = field(default_factory=dict)
    """Each unit's ``unit_vector_shape``, found once."""
    skews: TileChoices = field(init=False)

    def __post_init__(self) -> None:
        self.skews = TileChoices(self.target)

    def shape(self, unit: UnitOp) -> perf.VectorShape:
        if unit not in self.shapes:
            self.shapes[unit] = unit_vector_shape(unit, self.target)
        return self.shapes[unit]

    @op_type_rewrite_pattern
    def match_and_rewrite(self, buf: BufferOp, rewriter: PatternRewriter) -> None:
        streams: list[tuple[int, list[tuple[int, int]]]] = []
        writer = buf.source.owner
        for use in buf.result.uses:
            unit = use.operation
            if isinstance(unit, UnitOp):
                shape = self.shape(unit)
                access = unit.ins.data[use.index]
                along = shape.along(access.stride_values, unit.space_values)
                streams.append((shape.vectors(unit.space_values), along))
        if isinstance(writer, UnitOp):
            shape = self.shape(writer)
            space, out = writer.space_values, writer.out.stride_values
            along = shape.along(out, space)
            kept = [e for e, s in zip(space, out, strict=True) if s != 0 or e == 1]
            streams.append((-(-math.prod(kept) // max(1, math.prod(n for _, n in along))), along))
        per_word = ELEMENT_TYPES[element_dtype(elt_of(buf.source))].per_lane
        skew = self.skews.bank_skew(streams, buf.banks.value.data, per_word)
        if skew and (buf.bank_skew is None or buf.bank_skew.value.data != skew):
            buf.properties["bank_skew"] = IntegerAttr(skew, i64)
            rewriter.notify_op_modified(buf)


@dataclass(frozen=True)
class ConvertRduTileToPcuPmu(ModulePass):
    """Lower ``rdu_tile.kernel`` ops to ``pcu.unit`` and ``pmu.buffer`` ops (see the module
    docstring)."""

    name = "convert-rdu-tile-to-pcu-pmu"

    target: str = "plasticine"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        lowering = Lowering(get_target(self.target))
        for section in [s for s in op.walk() if isinstance(s, df.SectionOp)]:
            lowering.sections[section] = SectionBuffers(section, lowering.target)
        for section in lowering.sections.values():
            section.load_arguments()
        patterns: list[RewritePattern] = [
            KernelToUnit(lowering),
            YieldBuffers(lowering),
            ConstantToConst(),
            CompareToStage(),
            XorToStage(),
            ArithToStage(),
            Bf16Multiply(),
            IndexToCounter(),
            RandomToStage(),
            YieldToPcuYield(),
            EraseUnusedStage(),
            RefuseBodyOp(),
        ]
        PatternRewriteWalker(
            GreedyRewritePatternApplier(patterns, dce_enabled=False)
        ).rewrite_module(op)
        PatternRewriteWalker(SkewBanks(lowering.target), apply_recursively=False).rewrite_module(op)
