"""split-units: fit every PCU to the target's stages and ports, and every PMU to its bytes.

A ``pcu.unit`` has at most ``target.pcu_stages`` stages (every op of its body but the yield:
``pcu.stage``, ``pcu.const``, ``pcu.counter``) and reads at most ``target.pcu_ports`` input
ports. A unit over either is split into a chain of units, each computing part of the body:

- the body is a tree of stages over the input ports (a stage value read twice is first made a
  part of its own, except the widening of a bf16 port to f32: every part reading it widens the
  port again, a stage, instead of a unit writing the widened copy). Walking it bottom-up, a
  stage joins its operands' parts until the part would exceed the stages or the ports; then
  its operand part with the most stages (or ports) becomes a unit of its own, and so on until
  the part fits;
- a part that became a unit computes one value over the counters that value varies over (the
  counters its ports' accesses and its ``pcu.counter`` stages walk; all of them if it draws
  random numbers, which hash the point's index), writes it row-major into a new ``pmu.buffer``,
  and the unit that needs it reads that buffer as one more port (stride 0 on the counters the
  value does not vary over). Constants are repeated in every part that uses them;
- the last part keeps the unit's name, space, result access and combiner; a part is named
  ``<unit>.<k>`` (``k`` from 0, in dataflow order) and sits just before the unit.

How many PMUs each buffer takes is assign-pmus' (after parallelize-units).

Before, on ``tiny`` (4 stages, 3 ports)::

    %r = pcu.unit @add_0 (%a, %b, %c, %d) space [8] tile [8] lanes 4 ins [...x4] out ...
           combiner none : (...) -> tensor<8xf32> {
    ^bb0(%0: f32, %1: f32, %2: f32, %3: f32):
      %4 = pcu.stage add(%0, %1) : (f32, f32) -> f32
      %5 = pcu.stage add(%2, %3) : (f32, f32) -> f32
      %6 = pcu.stage add(%4, %5) : (f32, f32) -> f32
      pcu.yield %6 : f32
    }

After::

    %p = pcu.unit @"add_0.0" (%a, %b) space [8] ... : (...) -> tensor<8xf32> {
    ^bb0(%0: f32, %1: f32):
      %2 = pcu.stage add(%0, %1) : (f32, f32) -> f32
      pcu.yield %2 : f32
    }
    %pb = pmu.buffer %p {name = "add_0.0", ...} : tensor<8xf32> -> memref<8xf32>
    %r = pcu.unit @add_0 (%c, %d, %pb) space [8] ... {
    ^bb0(%0: f32, %1: f32, %2: f32):
      %3 = pcu.stage add(%0, %1) : (f32, f32) -> f32
      %4 = pcu.stage add(%2, %3) : (f32, f32) -> f32
      pcu.yield %4 : f32
    }
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import BFloat16Type, Float32Type, ModuleOp, TensorType
from xdsl.ir import Attribute, Block, BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import DiagnosticException

from compiler.passes.ir_helpers import RANDOM_OPCODES, describe_location, row_major
from compiler.passes.tiling import NBUF, buffer_tile_bytes, element_bytes, tile_elements
from compiler.targets import Target, get_target
from compiler.value_names import source_location, ssa_hint
from dialects.dataflow import SectionOp
from dialects.pcu import ConstOp, CounterOp, StageOp, UnitOp, YieldOp
from dialects.pmu import BufferOp
from dialects.rdu_tile import AccessAttr, access_attr, element_type, shape_of


def stage_count(unit: UnitOp) -> int:
    """The stages of ``unit``: every op of its body but the yield."""
    return sum(1 for op in unit.body.block.ops if not isinstance(op, YieldOp))


def needs_split(unit: UnitOp, target: Target) -> bool:
    """Whether ``unit`` has more stages or input ports than one PCU of ``target``."""
    return stage_count(unit) > target.pcu_stages or len(unit.inputs) > target.pcu_ports


# --------------------------------------------------------------------------------------------
# Splitting a unit
def widened_port(stage: StageOp) -> int | None:
    """The input port ``stage`` widens (a ``cast`` of a bf16 port to f32), or None."""
    if stage.opcode.data != "cast" or not isinstance(stage.result.type, Float32Type):
        return None
    arg = stage.args[0]
    if not isinstance(arg, BlockArgument) or not isinstance(arg.type, BFloat16Type):
        return None
    return arg.index


# --------------------------------------------------------------------------------------------


_Cut = Operation | BlockArgument
"""What a part computes: a stage's value, or a gathered input port's (a copy of it)."""


@dataclass
class _Part:
    """Stages that run on one PCU: ``ops`` (program order is kept by the caller), the constants
    and counters they read (``leaves``), the unit's input ports they read (``ports``, by index)
    and the parts they read the results of (``cuts``)."""

    ops: set[Operation] = field(default_factory=set)
    leaves: set[Operation] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)
    cuts: set[_Cut] = field(default_factory=set)

    def merge(self, other: _Part) -> None:
        self.ops |= other.ops
        self.leaves |= other.leaves
        self.ports |= other.ports
        self.cuts |= other.cuts

    @property
    def stages(self) -> int:
        return len(self.ops) + len(self.leaves)


def _value(cut: _Cut) -> SSAValue:
    return cut if isinstance(cut, BlockArgument) else cut.results[0]


class _UnitSplitter:
    """Splits one unit (see the module docstring)."""

    def __init__(self, unit: UnitOp, target: Target, taken: set[str]) -> None:
        self.unit = unit
        self.target = target
        self.taken = taken
        self.name = unit.sym_name.data
        self.block = unit.body.block
        self.space = unit.space_values
        self.ins = list(unit.ins.data)

    def fail(self, message: str) -> DiagnosticException:
        return DiagnosticException(
            f"{describe_location(self.unit)}: pcu.unit @{self.name}: {message}"
        )

    def port_count(self, part: _Part) -> int:
        """Input ports a part reads: distinct (buffer, access) of its unit ports (with the ports
        that index them), plus one per part it reads."""
        keys = {(self.unit.inputs[i], self.ins[i]) for i in self.with_index_ports(part.ports)}
        return len(keys) + len(part.cuts)

    def with_index_ports(self, ports: set[int]) -> list[int]:
        """``ports`` and the ports whose values index their accesses, in order."""
        result = set(ports)
        for i in ports:
            if self.ins[i].is_indexed:
                result.add(self.ins[i].index_port)
        return sorted(result)

    def fits(self, part: _Part) -> bool:
        t = self.target
        return part.stages <= t.pcu_stages and self.port_count(part) <= t.pcu_ports

    def partition(self) -> tuple[dict[_Cut, _Part], _Part]:
        """Every stage's part, bottom-up (the parts of the cut stages and gathered ports among
        them), and the part of the yielded value."""
        uses = {
            op: len({u.operation for u in op.results[0].uses})
            for op in self.block.ops
            if op.results
        }
        parts: dict[_Cut, _Part] = {}
        for op in self.block.ops:
            if not isinstance(op, StageOp):
                continue
            children: list[_Cut] = []
            gathered: list[_Cut] = []
            part = _Part(ops={op})
            for value in op.args:
                owner = value.owner
                if isinstance(value, BlockArgument):
                    part.ports.add(value.index)
                    if self.ins[value.index].is_indexed:
                        gathered.append(value)
                        parts[value] = _Part(ports={value.index})
                elif isinstance(owner, ConstOp | CounterOp):
                    part.leaves.add(owner)
                elif isinstance(owner, StageOp):
                    port = widened_port(owner)
                    if uses[owner] > 1 and port is not None:  # widened again where read
                        part.ops.add(owner)
                        part.ports.add(port)
                    elif uses[owner] > 1:
                        part.cuts.add(owner)  # read twice: a part of its own
                    else:
                        children.append(owner)
            merged = list(dict.fromkeys(children))
            while True:
                trial = _Part(set(part.ops), set(part.leaves), set(part.ports), set(part.cuts))
                for child in merged:
                    trial.merge(parts[child])
                if self.fits(trial):
                    parts[op] = trial
                    break
                too_many_ports = self.port_count(trial) > self.target.pcu_ports
                # A gathered port (two ports: it and its index) may become a copy of its own.
                candidates = merged + (
                    [g for g in gathered if g not in part.cuts] if too_many_ports else []
                )
                if not candidates:
                    raise self.fail(
                        f'stage "{op.opcode.data}" alone needs {trial.stages} stages and '
                        f"{self.port_count(trial)} ports; target '{self.target.name}' has "
                        f"{self.target.pcu_stages} and {self.target.pcu_ports}"
                    )

                def weight(child: _Cut, ports: bool = too_many_ports) -> tuple[int, int]:
                    p = parts[child]
                    return (self.port_count(p), p.stages) if ports else (p.stages, 0)

                cut = max(candidates, key=weight)
                if isinstance(cut, BlockArgument):
                    part.ports.discard(cut.index)
                else:
                    merged.remove(cut)
                part.cuts.add(cut)
        yielded = self.unit.yield_op.value
        owner = yielded.owner
        if isinstance(owner, StageOp):
            root = parts[owner]
        elif isinstance(yielded, BlockArgument):
            root = _Part(ports={yielded.index})
        else:
            assert isinstance(owner, Operation)
            root = _Part(leaves={owner})
        if self.unit.out.is_indexed:
            root.ports.add(self.unit.out.index_port)
        return parts, root

    def counters_of(self, part: _Part, axes: dict[_Cut, tuple[int, ...]]) -> tuple[int, ...]:
        """The counters (extent above 1) a part's value varies over."""
        if any(op.opcode.data in RANDOM_OPCODES for op in part.ops if isinstance(op, StageOp)):
            return tuple(c for c, e in enumerate(self.space) if e > 1)
        used: set[int] = set()
        for i in self.with_index_ports(part.ports):
            used |= {c for c, s in enumerate(self.ins[i].stride_values) if s != 0}
        for leaf in part.leaves:
            if isinstance(leaf, CounterOp):
                used.add(leaf.counter.value.data)
        for cut in part.cuts:
            used |= set(axes[cut])
        return tuple(c for c in sorted(used) if self.space[c] > 1)

    def run(self) -> None:
        parts, root = self.partition()
        cuts: set[_Cut] = set(root.cuts)
        for part in parts.values():
            cuts |= part.cuts
        axes: dict[_Cut, tuple[int, ...]] = {}
        buffers: dict[_Cut, BufferOp] = {}
        # Gathered ports first, then stages in program order: a part's cuts come before it.
        ordered = [a for a in self.block.args if a in cuts]
        ordered += [op for op in self.block.ops if op in cuts]
        for op in ordered:
            part = parts[op]
            counters = self.counters_of(part, axes)
            axes[op] = counters
            unit, buffer = self.emit_part(op, part, counters, buffers, axes)
            Rewriter.insert_op([unit, buffer], InsertPoint.before(self.unit))
            buffers[op] = buffer
        everything = tuple(range(len(self.space)))
        last, _ = self.build(None, root, everything, buffers, axes)
        last.result.name_hint = self.unit.result.name_hint
        Rewriter.insert_op(last, InsertPoint.before(self.unit))
        self.unit.result.replace_all_uses_with(last.result)
        Rewriter.erase_op(self.unit)

    def emit_part(
        self,
        op: _Cut,
        part: _Part,
        counters: tuple[int, ...],
        buffers: dict[_Cut, BufferOp],
        axes: dict[_Cut, tuple[int, ...]],
    ) -> tuple[UnitOp, BufferOp]:
        """The unit computing ``op``'s value over ``counters`` and the buffer it fills."""
        unit, out_tile = self.build(op, part, counters, buffers, axes)
        name = unit.sym_name.data
        elt = element_type(unit.result.type)
        written = out_tile * element_bytes(elt)
        total = math.prod(shape_of(unit.result.type)) * element_bytes(elt)
        tile_bytes = buffer_tile_bytes([written], total, self.target)
        buffer = BufferOp(unit, name, tile_bytes, NBUF, self.target.pmu_banks)
        buffer.location = self.unit.location
        buffer.result.name_hint = ssa_hint(re.sub(r"[^A-Za-z0-9_]", "_", name) + "_pmu")
        return unit, buffer

    def build(
        self,
        op: _Cut | None,
        part: _Part,
        counters: tuple[int, ...],
        buffers: dict[_Cut, BufferOp],
        axes: dict[_Cut, tuple[int, ...]],
    ) -> tuple[UnitOp, int]:
        """The unit of ``part`` over ``counters`` (``op`` None: the unit's last part, over its
        whole space, with its result access) and the elements of its output tile."""
        whole = op is None
        dims = counters
        # A part whose value varies over no counter still has one counter, of extent 1.
        space = [self.space[c] for c in dims] if dims or whole else [1]
        tile_all = self.unit.tile_values
        tile = [tile_all[c] for c in dims] if dims or whole else [1]

        def project(strides: Sequence[int]) -> list[int]:
            return [strides[c] for c in dims] if dims or whole else [0]

        # Ports: the unit's own (one per distinct buffer and access), then the parts it reads.
        port_of: dict[int, int] = {}
        keys: dict[tuple[SSAValue, AccessAttr], int] = {}
        inputs: list[SSAValue] = []
        arg_types: list[Attribute] = []
        for i in self.with_index_ports(part.ports):
            key = (self.unit.inputs[i], self.ins[i])
            if key not in keys:
                keys[key] = len(inputs)
                inputs.append(self.unit.inputs[i])
                arg_types.append(self.block.args[i].type)
            port_of[i] = keys[key]
        ins: list[AccessAttr] = []
        for _, access in keys:
            index: tuple[int, ...] = ()
            if access.is_indexed:
                index = (port_of[access.index_port], access.index_stride, access.index_limit)
            ins.append(access_attr(access.offset_value, project(access.stride_values), index))
        cut_port: dict[_Cut, int] = {}
        for cut in sorted(part.cuts, key=self.position):
            buffer = buffers[cut]
            cut_dims = axes[cut]
            dense = row_major([self.space[c] for c in cut_dims])
            strides = [
                dense[cut_dims.index(c)] if c in cut_dims else 0 for c in range(len(self.space))
            ]
            cut_port[cut] = len(inputs)
            inputs.append(buffer.result)
            arg_types.append(element_type(buffer.result.type))
            ins.append(access_attr(0, project(strides)))

        body = Block(arg_types=arg_types)
        vmap: dict[SSAValue, SSAValue] = {}
        for i in port_of:
            vmap[self.block.args[i]] = body.args[port_of[i]]
        for cut, port in cut_port.items():
            vmap[_value(cut)] = body.args[port]
        for leaf in sorted(part.leaves, key=self.position):
            if isinstance(leaf, CounterOp):
                c = leaf.counter.value.data
                new: Operation = (
                    CounterOp(dims.index(c)) if c in dims else ConstOp(0, leaf.result.type)
                )
            else:
                new = leaf.clone()
            body.add_op(new)
            vmap[leaf.results[0]] = new.results[0]
        for stage in sorted(part.ops, key=self.position):
            body.add_op(stage.clone(value_mapper=vmap))
        value = self.unit.yield_op.value if op is None else _value(op)
        body.add_op(YieldOp(vmap[value]))

        if whole:
            name = self.name
            result_type = self.unit.result.type
            out = self.unit.out
            if out.is_indexed:
                index = (port_of[out.index_port], out.index_stride, out.index_limit)
                out = access_attr(out.offset_value, out.stride_values, index)
            combiner = self.unit.combiner.data
        else:
            name = self.unique(f"{self.name}.")
            result_type = TensorType(vmap[value].type, space)
            out = access_attr(0, row_major(space))
            combiner = "none"
        unit = UnitOp(
            name,
            inputs,
            result_type,
            space,
            tile,
            self.unit.lanes.value.data,
            ins,
            out,
            combiner,
            body,
        )
        # Only the last part computes the unit's value: the others take the plain location.
        unit.location = self.unit.location if op is None else source_location(self.unit.location)
        return unit, tile_elements(out.stride_values, tile)

    def position(self, op: _Cut) -> int:
        if isinstance(op, BlockArgument):
            return op.index - len(self.block.args)  # before every op
        return self.block.get_operation_index(op)

    def unique(self, prefix: str) -> str:
        n = 0
        while f"{prefix}{n}" in self.taken:
            n += 1
        name = f"{prefix}{n}"
        self.taken.add(name)
        return name


def split_section(section: SectionOp, target: Target) -> None:
    """Split the units of ``section`` that do not fit ``target``."""
    block = section.body.block
    taken: set[str] = set()
    for op in block.ops:
        if isinstance(op, UnitOp):
            taken.add(op.sym_name.data)
        elif isinstance(op, BufferOp):
            taken.add(op.buffer_name.data)
    for unit in [op for op in block.ops if isinstance(op, UnitOp)]:
        if needs_split(unit, target):
            _UnitSplitter(unit, target, taken).run()


@dataclass(frozen=True)
class SplitUnits(ModulePass):
    """Split units over the target's PCU stages or ports (see the module docstring)."""

    name = "split-units"

    target: str = "plasticine"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = get_target(self.target)
        for section in [s for s in op.walk() if isinstance(s, SectionOp)]:
            split_section(section, target)
