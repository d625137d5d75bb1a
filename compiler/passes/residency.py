"""Symbols kept on chip: which, their homes, and the ``rdu.resident`` module attribute.

Shared by the two passes that keep symbols on chip: ``co-place-sections`` (every section on the
fabric at once) and ``pin-resident-symbols`` (sections loaded in turn around pinned homes).

A symbol is kept on chip when its role is one of ``validate.RESIDENT_ROLES`` (not the batch,
the hyperparameters, the loss or the outputs, which the host gives or takes every step), it is
not a non-persistent buffer (its value comes from the model at run time), and every buffer
bound to it (loaded from it or stored to it) holds it whole (``rules.held``), and it is state
(``STATE_ROLES``, kept from one step to the next) or a section loads it (a gradient no section
reads, in a PEF without an optimizer, is for the host); a symbol whose buffer streams in tiles
stays in DRAM. Its **home** is the buffer the last section (in run order) to store it stores
from, or for a symbol no section stores the first buffer loaded from it. A buffer loaded from
it in another section, of the home's tensor type, is **shared**: it sits on the home's slots
and reads the symbol where it lives, with no copy (the sections run one at a time;
``share_pmus`` gives the home and its shared buffers the most PMUs any of them has). So is a
buffer of the home's own section holding the old value that the home's writer **updates in
place** (``updates_in_place``: the optimizer's load of a parameter that the update ``p - lr *
step``, and the weight decay it reads, read at the very points where the update writes the
new value into the home). Every other buffer loaded from it gets a **hand-off**, an on-chip
stream from the home.

The module attribute (``resident_attr``), one entry a symbol kept on chip::

    rdu.resident = [["fc1.weight", "optimizer", 16, [["optimizer", 0, #pmu.route<...>]],
                     [["forward", 0]]], ...]

(symbol, home section, home buffer index among the section's ``pmu.buffer`` ops, each
hand-off's section, buffer index and route, and each shared buffer's section and index), which
emit-pef turns into the PEF's ``resident`` section.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from xdsl.dialects.builtin import ArrayAttr, IntAttr, IntegerAttr, ModuleOp, StringAttr, i64
from xdsl.ir import Attribute, BlockArgument

from compiler.passes.ir_helpers import SectionGraph, buffer_bytes
from compiler.passes.routing import Coord
from compiler.targets import Target
from dialects.dataflow import SectionOp
from dialects.pcu import UnitOp
from dialects.pmu import BufferOp, route_attr
from dialects.rdu_tile import AccessAttr
from runtime.machine.rules import UnitWalk, held, in_place_problem
from runtime.pef.validate import RESIDENT_ROLES

STATE_ROLES = ("parameter", "buffer", "optimizer_state")
"""The roles of the symbols a step keeps for the next one."""


@dataclass(frozen=True)
class Resident:
    """A symbol kept on chip: its home buffer and the buffers loaded from it elsewhere."""

    name: str
    home: tuple[int, BufferOp]
    """(section index, buffer)."""
    loads: list[tuple[int, BufferOp]]
    """(section index, buffer) of every other buffer loaded from it that a hand-off fills."""
    shared: list[tuple[int, BufferOp]] = field(default_factory=list)
    """(section index, buffer) of the buffers loaded from it that sit on the home's slot."""


def buffer_index(section: SectionOp, buffer: BufferOp) -> int:
    """The buffer's index among the section's ``pmu.buffer`` ops: its PMU index in the PEF."""
    buffers = [op for op in section.body.block.ops if isinstance(op, BufferOp)]
    return buffers.index(buffer)


def resident_symbols(
    sections: Sequence[SectionOp], module: ModuleOp, target: Target
) -> list[Resident]:
    """The symbols kept on chip, each with its home and the other buffers loaded from it, in
    order of first appearance (see the module docstring)."""
    non_persistent = module.attributes.get("rdu.non_persistent")
    skipped: set[str] = set()
    if non_persistent is not None:
        skipped = set(getattr(non_persistent, "data", {}))
    loads: dict[str, list[tuple[int, BufferOp]]] = {}
    stores: dict[str, list[tuple[int, BufferOp]]] = {}
    order: list[str] = []
    state: set[str] = set()  # kept from one step to the next
    for s, section in enumerate(sections):
        block = section.body.block
        names = {a: n.data for a, n in zip(block.args, section.arg_names, strict=True)}
        arg_roles = zip(section.arg_names, section.arg_roles, strict=True)
        roles = {n.data: r.data.value for n, r in arg_roles}
        for name, role in zip(section.result_names, section.result_roles, strict=True):
            roles[name.data] = role.data.value
        state |= {name for name, role in roles.items() if role in STATE_ROLES}
        for buffer in block.ops:
            if isinstance(buffer, BufferOp) and isinstance(buffer.source, BlockArgument):
                name = names[buffer.source]
                if roles[name] in RESIDENT_ROLES and name not in skipped:
                    loads.setdefault(name, []).append((s, buffer))
                    order += [] if name in order else [name]
        for name, value in zip(section.result_names, section.yield_op.values, strict=True):
            owner = value.owner
            if roles[name.data] in RESIDENT_ROLES and isinstance(owner, BufferOp):
                if name.data not in skipped:
                    stores.setdefault(name.data, []).append((s, owner))
                    order += [] if name.data in order else [name.data]
    residents: list[Resident] = []
    for name in order:
        if name not in loads and name not in state:
            continue  # a value no section reads (gradients without an optimizer): for the host
        bound = loads.get(name, []) + stores.get(name, [])
        if not all(held(buffer_bytes(b), b.num_pmus, target.pmu_bytes) for _, b in bound):
            continue  # streamed in tiles somewhere: it stays in DRAM
        home = stores[name][-1] if name in stores else loads[name][0]
        others = [(s, b) for s, b in loads.get(name, []) if b is not home[1]]
        shared = [(s, b) for s, b in others if _on_home(home, s, b)]
        copied = [(s, b) for s, b in others if (s, b) not in shared]
        residents.append(Resident(name, home, copied, shared))
    return residents


def _on_home(home: tuple[int, BufferOp], section: int, buffer: BufferOp) -> bool:
    """Whether ``buffer`` (of section ``section``, loaded from a symbol whose home is ``home``)
    sits on the home's slots instead of being filled by a hand-off: it holds the same tensor
    type (``share_pmus`` then gives both as many PMUs) and it is in another section than the
    home (the two never run at once) or the home's writer updates it in place."""
    home_section, home_buffer = home
    if buffer.result.type != home_buffer.result.type:
        return False
    return section != home_section or updates_in_place(home_buffer, buffer)


def updates_in_place(home: BufferOp, old: BufferOp) -> bool:
    """Whether the unit writing ``home`` may write it over ``old``, a buffer of its section
    that every unit reading it reads where that unit writes (``rules.in_place_problem``): so
    ``old`` may sit on ``home``'s slots, with no copy of the symbol's old value. Both hold the
    same tensor type."""
    writer = home.source.owner
    if old.result.type != home.result.type:
        return False
    if not isinstance(writer, UnitOp) or writer.out.is_indexed:
        return False

    def walk(unit: UnitOp, access: AccessAttr) -> UnitWalk:
        return (unit.space_values, access.offset_value, access.stride_values)

    reads: list[tuple[UnitWalk, tuple[UnitWalk, UnitWalk] | None]] = []
    for use in old.result.uses:
        unit = use.operation
        if not isinstance(unit, UnitOp) or unit.ins.data[use.index].is_indexed:
            return False
        read = walk(unit, unit.ins.data[use.index])
        if unit is writer:
            reads.append((read, None))
            continue
        results = {u.operation for u in unit.result.uses}
        taken = [writer.ins.data[k] for k, v in enumerate(writer.inputs) if v.owner in results]
        if not taken:
            return False
        reads += [(read, (walk(unit, unit.out), walk(writer, a))) for a in taken]
    return in_place_problem(walk(writer, writer.out), reads) is None


def share_pmus(residents: Sequence[Resident]) -> dict[BufferOp, Attribute | None]:
    """Give each resident symbol's home and the buffers on its slots (``Resident.shared``) the
    most PMUs any of them has (assign-pmus' count for its readers' streams): one set of PMUs
    serves every section that reads the symbol where it lives. Returns the ``pmus`` each buffer
    changed had before."""
    before: dict[BufferOp, Attribute | None] = {}
    for resident in residents:
        if not resident.shared:
            continue
        group = [resident.home[1], *(b for _, b in resident.shared)]
        most = max(b.num_pmus for b in group)
        for buffer in group:
            if buffer.num_pmus != most:
                before[buffer] = buffer.properties.get("pmus")
                buffer.properties["pmus"] = IntegerAttr(most, i64)
    return before


def restore_pmus(before: dict[BufferOp, Attribute | None]) -> None:
    """Give the buffers ``share_pmus`` changed the ``pmus`` they had (its return value)."""
    for buffer, pmus in before.items():
        if pmus is None:
            buffer.properties.pop("pmus", None)
        else:
            buffer.properties["pmus"] = pmus


def buffer_units(sg: SectionGraph, buffer: BufferOp) -> list[int]:
    """The units of ``sg.graph`` that are ``buffer``'s PMUs: its first, then its banks."""
    count = len(sg.units)
    banks = [count + j for j, b in enumerate(sg.banks) if b is buffer]
    return [list(sg.units).index(buffer), *banks]


def node_op(sg: SectionGraph, i: int) -> UnitOp | BufferOp | None:
    """The unit or buffer of ``sg.graph.units[i]`` (a bank: its buffer; a parallel unit's copy
    after copy 0: None)."""
    count = len(sg.units)
    if i < count:
        return sg.units[i]
    if i < count + len(sg.banks):
        return sg.banks[i - count]
    return None


def resident_attr(
    sections: Sequence[SectionOp],
    residents: Sequence[Resident],
    handoff_routes: Sequence[Sequence[Sequence[Coord]]],
) -> ArrayAttr:
    """The ``rdu.resident`` module attribute (see the module docstring): ``handoff_routes[k]``
    are the routes of ``residents[k].loads``' hand-offs, in order."""
    entries: list[Attribute] = []
    for resident, routes in zip(residents, handoff_routes, strict=True):
        home_section, home = resident.home
        handoffs: list[Attribute] = []
        for (s, buffer), hops in zip(resident.loads, routes, strict=True):
            section = StringAttr(sections[s].sym_name.data)
            index = IntAttr(buffer_index(sections[s], buffer))
            handoffs.append(ArrayAttr([section, index, route_attr(hops)]))
        shared = [
            ArrayAttr(
                [StringAttr(sections[s].sym_name.data), IntAttr(buffer_index(sections[s], b))]
            )
            for s, b in resident.shared
        ]
        entries.append(
            ArrayAttr(
                [
                    StringAttr(resident.name),
                    StringAttr(sections[home_section].sym_name.data),
                    IntAttr(buffer_index(sections[home_section], home)),
                    ArrayAttr(handoffs),
                    ArrayAttr(shared),
                ]
            )
        )
    return ArrayAttr(entries)
