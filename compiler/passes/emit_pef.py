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
from typing import TypeVar

from xdsl.context import Context
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    IntAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    UnitAttr,
)
from xdsl.passes import ModulePass

from compiler.passes.ir_helpers import PINNED_ATTR, RESIDENT_ATTR, TARGET_ATTR
from compiler.passes.pef_sections import EmitPefError, SectionEmitter, SymbolTable, route_hops
from compiler.targets import Target, TargetError, get_target
from dialects.dataflow import SectionOp
from dialects.pmu import RouteAttr
from runtime.pef import PefError, schema, write_pef

DEFAULT_TARGET = "plasticine"

_T = TypeVar("_T")


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
    table = SymbolTable()
    for section in sections:
        table.add_section(section)
    scalar_tracks = target.scalar_link_capacity
    pef_sections = [SectionEmitter(section, table, scalar_tracks).emit() for section in sections]
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


def _residency(module: ModuleOp, table: SymbolTable) -> schema.Residency | None:
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
                    moves.append(schema.Handoff(section.data, index.data, route_hops(route)))
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


def _non_persistent(module: ModuleOp, table: SymbolTable) -> list[schema.NonPersistentBuffer]:
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
# Module attributes
# --------------------------------------------------------------------------------------------


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
