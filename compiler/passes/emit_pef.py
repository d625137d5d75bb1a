"""emit-pef: write a placed and routed module as a PEF (runtime/pef/schema.py), IR unchanged.

``emit-pef{output=PATH}`` reads a module after ``place-and-route`` and writes the program file;
``module_to_program`` builds the same ``schema.Program`` for the driver, which writes it itself.
From the IR:

    builtin.module attributes {rdu.target = "tiny", rdu.model_name = "mlp"} {
      dataflow.section @forward forward attributes {arg_names = ["input.0"], ...} {
      ^bb0(%x: tensor<2x4xf32>):
        %xb = pmu.buffer %x {name = "input.0", ..., placement = #pmu.placement<at (0, 1), ...>}
        %r = pcu.unit @relu_1 (%xb) ... placed #pcu.placement<at (0, 0), routes [...]> ... {
        ^bb0(%a: f32):
          %z = pcu.const 0.0 : f32
          %m = pcu.stage max(%a, %z) : (f32, f32) -> f32
          pcu.yield %m : f32
        } loc("model.py":13:0)
        %rb = pmu.buffer %r {..., placement = #pmu.placement<at (1, 0), fill ..., store ...>}
        dataflow.yield %rb : memref<2x4xf32>
      }
    }

the PEF gets:

- ``meta``: the target (``Target.to_pef()``), ``inference`` (no backward section), the symbols
  (every section argument and result name, in order of first appearance, with its shape, dtype
  and role) and metadata. Metadata comes from keyword arguments of ``module_to_program``, else
  from module attributes the driver may set, else defaults:
  ``rdu.model_name`` (default "model"), ``rdu.batch_size`` (default: the leading dim of
  ``input.0``, else 1), ``rdu.compiler_version`` (the installed package's version),
  ``rdu.compile_flags`` (array of strings, default none), ``rdu.source_hash`` (default ""),
  ``rdu.optimizer`` (default "none" without an optimizer section, else "unknown"),
  ``rdu.loss`` (bool; default: whether a section yields a ``loss`` result),
  ``rdu.non_persistent`` (``{symbol = "sha256"}``: the model's non-persistent buffers, recorded
  in ``meta.non_persistent`` for the symbols a section reads; default none);
- per ``dataflow.section``, a ``schema.Section``: its PMUs and PCUs in IR (dataflow) order.
  A PMU loaded from DRAM names its symbol, one written by a PCU its producer. A PCU's input
  ports name their PMU and access, its stages are numbered inputs first, then one value per
  stage (``pcu.const`` is opcode ``const`` with the number as ``imm``, ``pcu.counter`` is
  ``counter`` with the counter index), ``result`` is the value ``pcu.yield`` gives, ``loc``
  the unit's location as ``file:line`` and ``value`` the traced value its location names
  (``loc("relu"(...))``, see ``compiler/value_names.py``; "" if none). A port that reads one
  address at every point (``runtime.machine.rules.register_problem``: a scalar) is a register
  port (``Port.register``: read once when the section starts); its route is on the scalar
  network (``Route.scalar``) when the target has one (``rules.on_scalar_network``). Routes
  come in IR
  order: into each PMU (from DRAM or its PCU), into each PCU port, then the stores of the
  yielded PMUs to DRAM; ``outputs`` bind each yielded PMU to its symbol. A parallel unit
  (``parallel [...]``) gets ``parallel`` and ``more_at`` (its copies' slots after copy 0's);
  its placement's ``streams`` become multicast routes into it (``taps``: the copies each feeds)
  and its ``out_routes`` one route a copy into its result's PMUs (``taps``: that copy), in place
  of the unit's port routes and the result buffer's fill route. A buffer of several PMUs gets
  ``more_at`` likewise.

The same module always gives byte-identical output: everything is emitted in IR order.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

from xdsl.context import Context
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    IntAttr,
    IntegerAttr,
    MemRefType,
    ModuleOp,
    StringAttr,
    TensorType,
    UnitAttr,
)
from xdsl.ir import Attribute, BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from compiler.passes.ir_helpers import PINNED_ATTR, RESIDENT_ATTR, TARGET_ATTR
from compiler.targets import Target, TargetError, get_target
from compiler.value_names import source_line, value_name
from dialects.dataflow import SectionOp, fabric_dtype
from dialects.pcu import ConstOp, CounterOp, PlacementAttr, StageOp, UnitOp, YieldOp
from dialects.pmu import BufferOp, RouteAttr
from dialects.rdu_tile import AccessAttr
from runtime.machine.opcodes import DTYPES
from runtime.machine.rules import on_scalar_network
from runtime.pef import PefError, schema, write_pef

DEFAULT_TARGET = "plasticine"

_T = TypeVar("_T")


class EmitPefError(PassFailedException):
    """The module cannot be written as a PEF (not placed, or bound inconsistently)."""


@dataclass(frozen=True)
class EmitPef(ModulePass):
    """Write the placed module to ``output`` as a PEF (see the module docstring); the IR is left
    as it is.

    ``target`` defaults to the one place-and-route recorded on the module (``rdu.target``);
    ``model_name`` and ``batch_size`` override the module's attributes.
    """

    name = "emit-pef"

    output: str
    target: str | None = None
    model_name: str | None = None
    batch_size: int | None = None

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        name = self.target or _str_attr(op, TARGET_ATTR) or DEFAULT_TARGET
        try:
            target = get_target(name)
        except TargetError as err:
            raise EmitPefError(str(err)) from None
        program = module_to_program(
            op, target, model_name=self.model_name, batch_size=self.batch_size
        )
        try:
            write_pef(self.output, program)
        except PefError as err:
            raise EmitPefError(f"emit-pef: the program does not validate: {err}") from None
        except OSError as err:
            raise EmitPefError(f"emit-pef: cannot write '{self.output}': {err}") from None


def module_to_program(
    module: ModuleOp,
    target: Target,
    *,
    model_name: str | None = None,
    batch_size: int | None = None,
    compiler_version: str | None = None,
    compile_flags: Sequence[str] | None = None,
    source_hash: str | None = None,
    optimizer: str | None = None,
    loss: bool | None = None,
) -> schema.Program:
    """The PEF program of a placed module (see the module docstring for what goes where).

    Keyword arguments left as None come from the module's ``rdu.*`` attributes or defaults.
    Raises ``EmitPefError`` if a unit is not placed, the module was placed for another target,
    or sections disagree about a symbol.
    """
    placed_for = _str_attr(module, TARGET_ATTR)
    if placed_for is not None and placed_for != target.name:
        raise EmitPefError(
            f"emit-pef: the module was placed for target '{placed_for}', not '{target.name}'"
        )
    sections = [op for op in module.walk() if isinstance(op, SectionOp)]
    table = _SymbolTable()
    for section in sections:
        table.add_section(section)
    scalar_tracks = target.scalar_link_capacity
    pef_sections = [_SectionEmitter(section, table, scalar_tracks).emit() for section in sections]
    kinds = [s.kind.data.value for s in sections]
    has_loss = any(sym.role == "loss" for sym in table.symbols)
    meta = schema.Meta(
        target=target.to_pef(),
        inference="backward" not in kinds,
        symbols=list(table.symbols),
        model_name=_pick(model_name, _str_attr(module, "rdu.model_name"), "model"),
        batch_size=_pick(batch_size, _int_attr(module, "rdu.batch_size"), table.batch_size()),
        compiler_version=_pick(
            compiler_version, _str_attr(module, "rdu.compiler_version"), _package_version()
        ),
        compile_flags=list(_pick(compile_flags, _str_list_attr(module, "rdu.compile_flags"), ())),
        source_hash=_pick(source_hash, _str_attr(module, "rdu.source_hash"), ""),
        optimizer=_pick(
            optimizer,
            _str_attr(module, "rdu.optimizer"),
            "unknown" if "optimizer" in kinds else "none",
        ),
        loss=_pick(loss, _bool_attr(module, "rdu.loss"), has_loss),
        non_persistent=_non_persistent(module, table),
    )
    return schema.Program(meta=meta, sections=pef_sections, resident=_residency(module, table))


def _residency(module: ModuleOp, table: _SymbolTable) -> schema.Residency | None:
    """The PEF's ``resident`` section from the ``rdu.resident`` module attribute
    (``compiler/passes/residency.py``; co-resident unless ``rdu.resident_pinned`` is set),
    None without it."""
    attr = module.attributes.get(RESIDENT_ATTR)
    if attr is None:
        return None
    where = f"emit-pef: module attribute {RESIDENT_ATTR}"
    symbols: list[schema.ResidentSymbol] = []
    for entry in attr.data if isinstance(attr, ArrayAttr) else ():
        match entry:
            case ArrayAttr(
                data=(
                    StringAttr() as name,
                    StringAttr() as home,
                    IntAttr() as pmu,
                    ArrayAttr() as handoffs,
                    ArrayAttr() as on_home,
                )
            ):
                pass
            case _:
                raise EmitPefError(f"{where}: malformed entry {entry}")
        if name.data not in table.index:
            raise EmitPefError(f"{where}: no symbol '{name.data}'")
        moves: list[schema.Handoff] = []
        for handoff in handoffs.data:
            match handoff:
                case ArrayAttr(
                    data=(StringAttr() as section, IntAttr() as index, RouteAttr() as route)
                ):
                    moves.append(schema.Handoff(section.data, index.data, _hops(route)))
                case _:
                    raise EmitPefError(f"{where}: malformed hand-off {handoff}")
        shared: list[schema.SharedPmu] = []
        for item in on_home.data:
            match item:
                case ArrayAttr(data=(StringAttr() as section, IntAttr() as index)):
                    shared.append(schema.SharedPmu(section.data, index.data))
                case _:
                    raise EmitPefError(f"{where}: malformed shared PMU {item}")
        symbols.append(
            schema.ResidentSymbol(table.index[name.data], home.data, pmu.data, moves, shared)
        )
    return schema.Residency(symbols, co_resident=PINNED_ATTR not in module.attributes)


def _non_persistent(module: ModuleOp, table: _SymbolTable) -> list[schema.NonPersistentBuffer]:
    """``meta.non_persistent`` from the ``rdu.non_persistent`` module attribute (the frontend's
    ``{symbol = "sha256"}``), for the symbols some section reads, in symbol order."""
    attr = module.attributes.get("rdu.non_persistent")
    if not isinstance(attr, DictionaryAttr):
        return []
    entries = [
        schema.NonPersistentBuffer(symbol=table.index[name], sha256=digest.data)
        for name, digest in attr.data.items()
        if name in table.index and isinstance(digest, StringAttr)
    ]
    return sorted(entries, key=lambda e: e.symbol)


# --------------------------------------------------------------------------------------------
# Symbols
# --------------------------------------------------------------------------------------------


class _SymbolTable:
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
        shape, dtype = _shape_dtype(typ, f"{where} '{name}'")
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


class _SectionEmitter:
    """Builds one ``schema.Section`` from a placed ``dataflow.section``."""

    def __init__(self, section: SectionOp, table: _SymbolTable, scalar_tracks: int) -> None:
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
        return _hops(route)

    def unit_placement(self, op: UnitOp) -> PlacementAttr:
        if op.placement is None:
            raise self.fail(f"pcu.unit @{op.sym_name.data} is not placed (run place-and-route)")
        return op.placement

    def out_routes(self, op: UnitOp, src: tuple[str, int], pmu: int) -> list[schema.Route]:
        """The routes of a parallel unit's copies into its result buffer's PMUs."""
        return [
            schema.Route(src=src, dst=("pmu", pmu), hops=_hops(r), taps=[[src[1], k]])
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
                        hops=_hops(stream.route),
                        taps=[[i, k] for k in stream.copy_values],
                        scalar=self.on_scalar_network(op, port),
                    )
                )
            return result
        return [
            schema.Route(
                src=("pmu", self.pmu_of(value, f"input {k} of pcu.unit @{op.sym_name.data}")),
                dst=("pcu", i),
                hops=_hops(route),
                scalar=self.on_scalar_network(op, k),
            )
            for k, (value, route) in enumerate(zip(op.inputs, placement.routes.data, strict=True))
        ]

    def pmu(self, op: BufferOp) -> schema.Pmu:
        label = f'pmu.buffer "{op.buffer_name.data}"'
        shape, dtype = _shape_dtype(op.result.type, label)
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
        _, dtype = _shape_dtype(op.result.type, label)
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
        _, dtype = _shape_dtype(stage_op.results[0].type, f"{label} stage '{op_name}'")
        number[stage_op.results[0]] = len(block.args) + len(stages)
        stages.append(schema.Stage(op=op_name, args=args, dtype=dtype, imm=imm))
    return stages, result


# --------------------------------------------------------------------------------------------
# Small conversions
# --------------------------------------------------------------------------------------------


def _shape_dtype(typ: Attribute, what: str) -> tuple[list[int], schema.Dtype]:
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


def _hops(route: RouteAttr) -> list[list[int]]:
    return [list(hop) for hop in route.hops]


def _pick(explicit: _T | None, attribute: _T | None, default: _T) -> _T:
    if explicit is not None:
        return explicit
    return attribute if attribute is not None else default


def _str_attr(module: ModuleOp, key: str) -> str | None:
    attr = module.attributes.get(key)
    return attr.data if isinstance(attr, StringAttr) else None


def _int_attr(module: ModuleOp, key: str) -> int | None:
    attr = module.attributes.get(key)
    return attr.value.data if isinstance(attr, IntegerAttr) else None


def _bool_attr(module: ModuleOp, key: str) -> bool | None:
    attr = module.attributes.get(key)
    if isinstance(attr, UnitAttr):
        return True
    return bool(attr.value.data) if isinstance(attr, IntegerAttr) else None


def _str_list_attr(module: ModuleOp, key: str) -> Sequence[str] | None:
    attr = module.attributes.get(key)
    if not isinstance(attr, ArrayAttr):
        return None
    return [a.data for a in attr.data if isinstance(a, StringAttr)]


def _package_version() -> str:
    try:
        return importlib.metadata.version("rdu-stack")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"
