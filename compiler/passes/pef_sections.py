"""The PEF's sections from ``dataflow.section`` ops (``runtime/pef/schema.py``): what emit-pef
writes for each placed section (``SectionEmitter``, see emit-pef's docstring for what goes
where), and a section before placement (``unplaced_section``: units at the origin, no routes),
which parallelize-units times with the performance model to compare allocations."""

from __future__ import annotations

from typing import cast

from xdsl.dialects.builtin import MemRefType, TensorType
from xdsl.ir import Attribute, BlockArgument, Operation, SSAValue
from xdsl.utils.exceptions import PassFailedException

from compiler.targets import Target
from compiler.value_names import source_line, value_name
from dialects.dataflow import SectionOp, fabric_dtype
from dialects.pcu import ConstOp, CounterOp, PlacementAttr, StageOp, UnitOp, YieldOp
from dialects.pmu import BufferOp, RouteAttr
from dialects.rdu_tile import AccessAttr
from runtime.machine.opcodes import DTYPES
from runtime.machine.rules import on_scalar_network
from runtime.pef import schema


class EmitPefError(PassFailedException):
    """The module cannot be written as a PEF (not placed, or bound inconsistently)."""


class SymbolTable:
    """The DRAM symbols of all sections, in order of first appearance."""

    def __init__(self) -> None:
        self.symbols: list[schema.Symbol] = []
        self.index: dict[str, int] = {}
        self.first_seen: dict[str, str] = {}

    def add_section(self, section: SectionOp) -> None:
        where = f"section '{section.sym_name.data}'"
        block = section.body.block
        for name, role, arg in zip(section.arg_names, section.arg_roles, block.args, strict=True):
            self.add(name.data, role.data.value, arg.type, f"{where} argument")
        results = section.yield_op.values
        for name, role, value in zip(
            section.result_names, section.result_roles, results, strict=True
        ):
            self.add(name.data, role.data.value, value.type, f"{where} result")

    def add(self, name: str, role: str, typ: Attribute, where: str) -> None:
        shape, dtype = shape_dtype(typ, f"{where} '{name}'")
        symbol = schema.Symbol(name=name, shape=shape, dtype=dtype, role=cast(schema.Role, role))
        if name not in self.index:
            self.index[name] = len(self.symbols)
            self.symbols.append(symbol)
            self.first_seen[name] = where
            return
        known = self.symbols[self.index[name]]
        if known != symbol:
            raise EmitPefError(
                f"emit-pef: symbol '{name}' is {_show(known)} as {self.first_seen[name]} but "
                f"{_show(symbol)} as {where}"
            )

    def batch_size(self) -> int:
        """The default batch size: the leading dim of ``input.0`` (1 if there is none)."""
        if "input.0" in self.index:
            shape = self.symbols[self.index["input.0"]].shape
            if shape:
                return shape[0]
        return 1


def _show(symbol: schema.Symbol) -> str:
    return f"{symbol.shape} {symbol.dtype} ({symbol.role})"


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


class SectionEmitter:
    """Builds one ``schema.Section`` from a placed ``dataflow.section``."""

    def __init__(self, section: SectionOp, table: SymbolTable, scalar_tracks: int) -> None:
        self.section = section
        self.table = table
        self.scalar_tracks = scalar_tracks
        """The target's ``scalar_link_capacity`` (0: no scalar network)."""
        self.where = f"emit-pef: section '{section.sym_name.data}'"
        ops = list(section.body.block.ops)
        self.buffers = [op for op in ops if isinstance(op, BufferOp)]
        self.units = [op for op in ops if isinstance(op, UnitOp)]
        self.pmu_index: dict[Operation, int] = {op: i for i, op in enumerate(self.buffers)}
        self.pcu_index: dict[Operation, int] = {op: i for i, op in enumerate(self.units)}
        self.arg_symbols = [table.index[n.data] for n in section.arg_names]

    def fail(self, what: str) -> EmitPefError:
        return EmitPefError(f"{self.where}: {what}")

    def emit(self) -> schema.Section:
        section = self.section
        kind = section.kind.data.value
        pmus = [self.pmu(op) for op in self.buffers]
        pcus = [self.pcu(op) for op in self.units]
        outputs: list[schema.Output] = []
        stored: list[tuple[int, int]] = []  # (pmu, symbol) of each distinct stored PMU
        for name, value in zip(section.result_names, section.yield_op.values, strict=True):
            pmu = self.pmu_of(value, f"result '{name.data}'")
            symbol = self.table.index[name.data]
            outputs.append(schema.Output(symbol=symbol, pmu=pmu))
            if all(p != pmu for p, _ in stored):
                stored.append((pmu, symbol))
        routes: list[schema.Route] = []
        for op in section.body.block.ops:
            if isinstance(op, BufferOp):
                i = self.pmu_index[op]
                src = self.source_of(op)
                writer = op.source.owner
                if isinstance(writer, UnitOp) and writer.parallel is not None:
                    routes += self.out_routes(writer, src, i)
                    continue
                routes.append(schema.Route(src=src, dst=("pmu", i), hops=self.hops(op, "fill")))
            elif isinstance(op, UnitOp):
                routes += self.port_routes(op)
        for pmu, symbol in stored:
            hops = self.hops(self.buffers[pmu], "store")
            routes.append(schema.Route(src=("pmu", pmu), dst=("dram", symbol), hops=hops))
        return schema.Section(
            name=section.sym_name.data,
            kind=cast(schema.SectionKind, kind),
            inputs=list(self.arg_symbols),
            outputs=outputs,
            pmus=pmus,
            pcus=pcus,
            routes=routes,
        )

    # -- units ---------------------------------------------------------------------------------

    def pmu_of(self, value: SSAValue, what: str) -> int:
        owner = value.owner
        if not isinstance(owner, BufferOp) or owner not in self.pmu_index:
            raise self.fail(f"{what} is not a pmu.buffer of the section")
        return self.pmu_index[owner]

    def source_of(self, op: BufferOp) -> tuple[str, int]:
        source = op.source
        if isinstance(source, BlockArgument) and source.block is self.section.body.block:
            return ("dram", self.arg_symbols[source.index])
        owner = source.owner
        if isinstance(owner, UnitOp) and owner in self.pcu_index:
            return ("pcu", self.pcu_index[owner])
        raise self.fail(f'pmu.buffer "{op.buffer_name.data}" is not filled from DRAM or a PCU')

    def slots(self, op: UnitOp | BufferOp, label: str) -> list[list[int]]:
        """The unit's slots (a parallel unit's copies', a buffer's PMUs'), first one first."""
        if op.placement is None:
            raise self.fail(f"{label} is not placed (run place-and-route first)")
        return [[x, y] for x, y in op.placement.slots]

    def hops(self, op: BufferOp, key: str) -> list[list[int]]:
        placement = op.placement
        route = None
        if placement is not None:
            route = placement.fill_route if key == "fill" else placement.store_route
        if route is None:
            raise self.fail(
                f'pmu.buffer "{op.buffer_name.data}" has no {key} route (run place-and-route first)'
            )
        return route_hops(route)

    def unit_placement(self, op: UnitOp) -> PlacementAttr:
        if op.placement is None:
            raise self.fail(f"pcu.unit @{op.sym_name.data} is not placed (run place-and-route)")
        return op.placement

    def out_routes(self, op: UnitOp, src: tuple[str, int], pmu: int) -> list[schema.Route]:
        """The routes of a parallel unit's copies into its result buffer's PMUs."""
        return [
            schema.Route(src=src, dst=("pmu", pmu), hops=route_hops(r), taps=[[src[1], k]])
            for k, r in enumerate(self.unit_placement(op).out_routes.data)
        ]

    def on_scalar_network(self, op: UnitOp, port: int) -> bool:
        """Whether the route into input ``port`` of ``op`` is on the scalar network."""
        return on_scalar_network(op.is_register_port(port), self.scalar_tracks)

    def port_routes(self, op: UnitOp) -> list[schema.Route]:
        i = self.pcu_index[op]
        placement = self.unit_placement(op)
        if op.parallel is not None:
            result: list[schema.Route] = []
            for stream in placement.streams.data:
                port = stream.port.data
                value = op.inputs[port]
                src = self.pmu_of(value, f"input {port} of pcu.unit @{op.sym_name.data}")
                result.append(
                    schema.Route(
                        src=("pmu", src),
                        dst=("pcu", i),
                        hops=route_hops(stream.route),
                        taps=[[i, k] for k in stream.copy_values],
                        scalar=self.on_scalar_network(op, port),
                    )
                )
            return result
        return [
            schema.Route(
                src=("pmu", self.pmu_of(value, f"input {k} of pcu.unit @{op.sym_name.data}")),
                dst=("pcu", i),
                hops=route_hops(route),
                scalar=self.on_scalar_network(op, k),
            )
            for k, (value, route) in enumerate(zip(op.inputs, placement.routes.data, strict=True))
        ]

    def pmu(self, op: BufferOp) -> schema.Pmu:
        label = f'pmu.buffer "{op.buffer_name.data}"'
        shape, dtype = shape_dtype(op.result.type, label)
        kind, index = self.source_of(op)
        slots = self.slots(op, label)
        return schema.Pmu(
            name=op.buffer_name.data,
            at=slots[0],
            shape=shape,
            dtype=dtype,
            tile_bytes=op.tile_bytes.value.data,
            nbuf=op.nbuf.value.data,
            banks=op.banks.value.data,
            bank_skew=op.bank_skew.value.data if op.bank_skew is not None else 0,
            pmus=op.num_pmus,
            more_at=slots[1:],
            source="dram" if kind == "dram" else "pcu",
            symbol=index if kind == "dram" else -1,
            producer=index if kind == "pcu" else -1,
        )

    def pcu(self, op: UnitOp) -> schema.Pcu:
        label = f"pcu.unit @{op.sym_name.data}"
        _, dtype = shape_dtype(op.result.type, label)
        readers = [use.operation for use in op.result.uses]
        out = [r for r in readers if isinstance(r, BufferOp)]
        if len(out) != 1 or len(readers) != 1:
            raise self.fail(f"{label}: its result must fill exactly one pmu.buffer")
        inputs = [
            schema.Port(
                pmu=self.pmu_of(value, f"input {k} of {label}"),
                access=_access(access),
                register=op.is_register_port(k),
            )
            for k, (value, access) in enumerate(zip(op.inputs, op.ins.data, strict=True))
        ]
        combiner = op.combiner.data.value
        stages, result = _stages(op, label)
        slots = self.slots(op, label)
        return schema.Pcu(
            name=op.sym_name.data,
            loc=source_line(op.location),
            value=value_name(op.location),
            at=slots[0],
            space=list(op.space_values),
            tile=list(op.tile_values),
            lanes=op.lanes.value.data,
            inputs=inputs,
            stages=stages,
            result=result,
            out_pmu=self.pmu_index[out[0]],
            out=_access(op.out),
            combiner=cast(schema.Combiner, combiner),
            dtype=dtype,
            parallel=list(op.parallel_values),
            more_at=slots[1:],
            interleaved=op.interleaved is not None,
        )


def _stages(op: UnitOp, label: str) -> tuple[list[schema.Stage], int]:
    """The stage pipeline of ``op`` and the value number ``pcu.yield`` gives."""
    block = op.body.block
    number: dict[SSAValue, int] = {arg: i for i, arg in enumerate(block.args)}
    stages: list[schema.Stage] = []
    result = -1
    for stage_op in block.ops:
        if isinstance(stage_op, YieldOp):
            result = number[stage_op.value]
            continue
        if isinstance(stage_op, StageOp):
            op_name = stage_op.opcode.data.value
            args, imm = [number[a] for a in stage_op.args], None
        elif isinstance(stage_op, ConstOp):
            op_name, args, imm = "const", [], stage_op.number
        elif isinstance(stage_op, CounterOp):
            op_name, args, imm = "counter", [], stage_op.counter.value.data
        else:
            raise EmitPefError(f"emit-pef: {label}: '{stage_op.name}' is not a PCU stage")
        _, dtype = shape_dtype(stage_op.results[0].type, f"{label} stage '{op_name}'")
        number[stage_op.results[0]] = len(block.args) + len(stages)
        stages.append(schema.Stage(op=op_name, args=args, dtype=dtype, imm=imm))
    return stages, result


# --------------------------------------------------------------------------------------------
# Small conversions
# --------------------------------------------------------------------------------------------


def shape_dtype(typ: Attribute, what: str) -> tuple[list[int], schema.Dtype]:
    """Shape and PEF dtype of a tensor, memref or scalar type."""
    shape: list[int] = []
    element = typ
    if isinstance(typ, TensorType | MemRefType):
        shape = [int(d) for d in typ.get_shape()]
        element = typ.get_element_type()
    name = fabric_dtype(element)
    if name in DTYPES:
        return shape, cast(schema.Dtype, name)
    held = ", ".join(DTYPES)
    raise EmitPefError(f"emit-pef: {what} has type {typ}; the PEF holds {held}")


def _access(attr: AccessAttr) -> schema.Access:
    if attr.is_indexed:
        return schema.Access(
            offset=attr.offset_value,
            strides=list(attr.stride_values),
            index_port=attr.index_port,
            index_stride=attr.index_stride,
            index_limit=attr.index_limit,
        )
    return schema.Access(offset=attr.offset_value, strides=list(attr.stride_values))


def route_hops(route: RouteAttr) -> list[list[int]]:
    """A route's switches, in order, as the PEF's ``Route.hops``."""
    return [list(hop) for hop in route.hops]


UnplacedPcus = dict[tuple[UnitOp, Attribute | None, Attribute | None], schema.Pcu]
"""Unplaced PCUs made so far, by unit and its ``parallel`` and ``interleaved`` properties
(``unplaced_section``'s ``made``)."""


class UnplacedEmitter(SectionEmitter):
    """A section not yet placed: every unit at the origin, no route into or out of a PCU, and
    each buffer's load from DRAM and store to it on the origin's switch alone (no hops).

    ``made``: the PCUs made before, given again for a unit whose ``parallel`` and
    ``interleaved`` are as they were (and new ones added), for a caller that changes nothing
    else of its sections' units and buffers between calls (parallelize-units, which times
    sections again and again with a few units' factors changed)."""

    def __init__(
        self,
        section: SectionOp,
        table: SymbolTable,
        scalar_tracks: int,
        made: UnplacedPcus | None = None,
    ) -> None:
        super().__init__(section, table, scalar_tracks)
        self.made = made

    def pcu(self, op: UnitOp) -> schema.Pcu:
        if self.made is None:
            return super().pcu(op)
        key = (op, op.parallel, op.interleaved)
        pcu = self.made.get(key)
        if pcu is None:
            pcu = self.made[key] = super().pcu(op)
        return pcu

    def slots(self, op: UnitOp | BufferOp, label: str) -> list[list[int]]:
        count = op.num_pmus if isinstance(op, BufferOp) else max(1, op.copies)
        return [[0, 0]] * count

    def hops(self, op: BufferOp, key: str) -> list[list[int]]:
        return [[0, 0]]

    def out_routes(self, op: UnitOp, src: tuple[str, int], pmu: int) -> list[schema.Route]:
        return []

    def port_routes(self, op: UnitOp) -> list[schema.Route]:
        return []


def unplaced_section(
    section: SectionOp, target: Target, made: UnplacedPcus | None = None
) -> schema.Section:
    """``section`` as the PEF would hold it before placement (its buffers' PMUs counted by
    assign-pmus), for the performance model to time its units (``UnplacedEmitter``: units
    at the origin, no hops; ``made``: PCUs made before, given again)."""
    table = SymbolTable()
    table.add_section(section)
    return UnplacedEmitter(section, table, target.scalar_link_capacity, made).emit()
