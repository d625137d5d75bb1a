"""co-place-sections: put every section on the fabric at once, with the state kept on chip.

A training step runs its sections in turn (forward, backward, optimizer), and each one alone
uses a fraction of the fabric. When all of them fit together, this pass places them together,
on units of their own, in one placement whose routes are checked to fit the links' capacity
together: the fabric is configured once a run, not once a section run, and the tensors the
sections hand each other (saved activations, gradients) and keep across steps (parameters,
buffers, optimizer state) stay in PMUs instead of crossing DRAM
(``runtime/machine/perf.py`` rule 7 models it; ``runtime.pef.schema.Residency`` records it).

The sections are co-placed when:

- there are at least two, none a parallel unit alone (``parallel_layout`` lays those out on a
  grid of their own);
- their PCUs (a parallel unit's copies) and their buffers' PMUs fit the target's together, and
  their streams, with the hand-offs below, route within the links' capacity together
  (``placement.place_and_route`` on the union of the sections' graphs, seed 0).

Otherwise the module is left as place-and-route made it.

A symbol is kept on chip when its role is one of ``validate.RESIDENT_ROLES`` (not the batch,
the hyperparameters, the loss or the outputs, which the host gives or takes every step), it is
not a non-persistent buffer (its value comes from the model at run time), and every buffer
bound to it (loaded from it or stored to it) holds it whole (``rules.held``), and it is state
(``STATE_ROLES``, kept from one step to the next) or a section loads it (a gradient no section
reads, in a PEF without an optimizer, is for the host); a symbol whose buffer streams in tiles
stays in DRAM. Its **home** is the buffer the last section (in run
order) to store it stores from, or for a symbol no section stores the first buffer loaded
from it. A buffer loaded from it in another section, of the home's tensor type, is **shared**:
the home's very unit in the combined graph, so it sits on the home's slots and reads the symbol
where it lives, with no copy (the sections run one at a time; ``share_pmus`` gives the home and
its shared buffers the most PMUs any of them has). Every other buffer loaded from it (in the
home's own section: the optimizer's load of a parameter it updates into the home) gets a
**hand-off**, an on-chip stream from the home (a stream of the combined graph, so it is placed
and routed with the rest). MLP b256 on sn10: the backward reads the saved activation on its
home's PMUs instead of waiting for a 2,048-cycle copy of its 131 kB.

The answer goes onto the IR: every unit and buffer gets its placement in the combined layout
(as place-and-route writes one), and the module gets ``rdu.resident``, one entry a symbol kept
on chip::

    rdu.resident = [["fc1.weight", "optimizer", 16, [["optimizer", 0, #pmu.route<...>]],
                     [["forward", 0]]], ...]

(symbol, home section, home buffer index among the section's ``pmu.buffer`` ops, each
hand-off's section, buffer index and route, and each shared buffer's section and index), which
emit-pef turns into the PEF's ``resident`` section.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import ArrayAttr, IntAttr, IntegerAttr, ModuleOp, StringAttr, i64
from xdsl.ir import Attribute, BlockArgument
from xdsl.passes import ModulePass

from compiler.passes import parallel_layout, placement
from compiler.passes.ir_helpers import (
    RESIDENT_ATTR,
    SectionGraph,
    buffer_bytes,
    pass_target,
    section_graph,
    write_placement,
)
from compiler.passes.placement import DRAM, Graph, Placement, PlacementError, Stream
from compiler.targets import Target
from dialects.dataflow import SectionOp
from dialects.pcu import UnitOp
from dialects.pmu import BufferOp, RouteAttr
from runtime.machine.rules import held
from runtime.pef.validate import RESIDENT_ROLES

STATE_ROLES = ("parameter", "buffer", "optimizer_state")
"""The roles of the symbols a step keeps for the next one."""


@dataclass(frozen=True)
class _Resident:
    """A symbol kept on chip: its home buffer and the buffers loaded from it elsewhere."""

    name: str
    home: tuple[int, BufferOp]
    """(section index, buffer)."""
    loads: list[tuple[int, BufferOp]]
    """(section index, buffer) of every other buffer loaded from it that a hand-off fills."""
    shared: list[tuple[int, BufferOp]] = field(default_factory=list)
    """(section index, buffer) of the buffers loaded from it that sit on the home's slot."""


@dataclass(frozen=True)
class CoPlaceSections(ModulePass):
    """Place all sections together when they fit, keeping the state on chip (see the module
    docstring)."""

    name = "co-place-sections"

    target: str = "plasticine"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = pass_target(self.target)
        sections = [s for s in op.walk() if isinstance(s, SectionOp)]
        if len(sections) < 2 or any(parallel_layout.lone_parallel_unit(s) for s in sections):
            return
        residents = resident_symbols(sections, op, target)
        before = share_pmus(residents)
        graphs = [section_graph(s, target) for s in sections]
        graph, nodes, streams_at, handoffs_at = combined_graph(graphs, residents)
        try:
            placed = placement.place_and_route(graph, target, section="co-resident sections")
        except PlacementError:
            for buffer, pmus in before.items():  # each section keeps its own placement
                if pmus is None:
                    buffer.properties.pop("pmus", None)
                else:
                    buffer.properties["pmus"] = pmus
            return
        for sg, at, s0 in zip(graphs, nodes, streams_at, strict=True):
            m = len(sg.graph.streams)
            slots = tuple(placed.at[i] for i in at)
            write_placement(sg, Placement(slots, placed.routes[s0 : s0 + m]))
        entries: list[Attribute] = []
        for resident, first in zip(residents, handoffs_at, strict=True):
            home_section, home = resident.home
            handoffs: list[Attribute] = []
            for k, (s, buffer) in enumerate(resident.loads):
                hops = placed.routes[first + k]
                handoffs.append(
                    ArrayAttr(
                        [
                            StringAttr(sections[s].sym_name.data),
                            IntAttr(_buffer_index(sections[s], buffer)),
                            RouteAttr(hops),
                        ]
                    )
                )
            shared = [
                ArrayAttr(
                    [StringAttr(sections[s].sym_name.data), IntAttr(_buffer_index(sections[s], b))]
                )
                for s, b in resident.shared
            ]
            entries.append(
                ArrayAttr(
                    [
                        StringAttr(resident.name),
                        StringAttr(sections[home_section].sym_name.data),
                        IntAttr(_buffer_index(sections[home_section], home)),
                        ArrayAttr(handoffs),
                        ArrayAttr(shared),
                    ]
                )
            )
        op.attributes[RESIDENT_ATTR] = ArrayAttr(entries)


def _buffer_index(section: SectionOp, buffer: BufferOp) -> int:
    """The buffer's index among the section's ``pmu.buffer`` ops: its PMU index in the PEF."""
    buffers = [op for op in section.body.block.ops if isinstance(op, BufferOp)]
    return buffers.index(buffer)


def resident_symbols(
    sections: Sequence[SectionOp], module: ModuleOp, target: Target
) -> list[_Resident]:
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
    residents: list[_Resident] = []
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
        residents.append(_Resident(name, home, copied, shared))
    return residents


def _on_home(home: tuple[int, BufferOp], section: int, buffer: BufferOp) -> bool:
    """Whether ``buffer`` (of section ``section``, loaded from a symbol whose home is ``home``)
    sits on the home's slots instead of being filled by a hand-off: it is in another section
    than the home (the two never run at once) and holds the same tensor type (``share_pmus``
    then gives both as many PMUs)."""
    home_section, home_buffer = home
    return section != home_section and buffer.result.type == home_buffer.result.type


def share_pmus(residents: Sequence[_Resident]) -> dict[BufferOp, Attribute | None]:
    """Give each resident symbol's home and the buffers on its slots (``_Resident.shared``) the
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


def combined_graph(
    graphs: Sequence[SectionGraph], residents: Sequence[_Resident]
) -> tuple[Graph, list[list[int]], list[int], list[int]]:
    """The sections' graphs side by side (units and streams renumbered), a buffer on its
    symbol's home's slot (``_Resident.shared``) the home's unit itself, then a hand-off stream
    from each resident symbol's home to each other buffer loaded from it. Also, per section,
    the combined unit of each of its units, where its streams start, and where each symbol's
    hand-offs start."""
    units: list[placement.Unit] = []
    streams: list[Stream] = []
    streams_at: list[int] = []
    on_home = {buffer for r in residents for _, buffer in r.shared}
    index: dict[BufferOp, int] = {}  # a buffer's (first PMU's) unit in the combined graph
    nodes: list[list[int]] = []
    for sg in graphs:
        local: list[int] = []
        for i, unit in enumerate(sg.graph.units):
            op = _node_op(sg, i)
            if op in on_home:
                local.append(-1)  # the home's unit, once every section has its units
                continue
            local.append(len(units))
            units.append(unit)
            if isinstance(op, BufferOp) and i < len(sg.units):
                index[op] = local[-1]
        nodes.append(local)
    for resident in residents:
        home_section, home = resident.home
        home_nodes = [nodes[home_section][i] for i in _buffer_units(graphs[home_section], home)]
        for s, buffer in resident.shared:
            for i, node in zip(_buffer_units(graphs[s], buffer), home_nodes, strict=True):
                nodes[s][i] = node
    for sg, local in zip(graphs, nodes, strict=True):
        streams_at.append(len(streams))
        for s in sg.graph.streams:
            src = s.src if s.src == DRAM else local[s.src]
            dst = s.dst if s.dst == DRAM else local[s.dst]
            scalar = None if s.scalar is None else local[s.scalar]
            streams.append(Stream(src, dst, scalar, s.weight))
    handoffs_at: list[int] = []
    for resident in residents:
        handoffs_at.append(len(streams))
        home = index[resident.home[1]]
        for _, buffer in resident.loads:
            streams.append(Stream(home, index[buffer], weight=buffer_bytes(buffer)))
    return Graph(units, streams), nodes, streams_at, handoffs_at


def _buffer_units(sg: SectionGraph, buffer: BufferOp) -> list[int]:
    """The units of ``sg.graph`` that are ``buffer``'s PMUs: its first, then its banks."""
    count = len(sg.units)
    banks = [count + j for j, b in enumerate(sg.banks) if b is buffer]
    return [list(sg.units).index(buffer), *banks]


def _node_op(sg: SectionGraph, i: int) -> UnitOp | BufferOp | None:
    """The unit or buffer of ``sg.graph.units[i]`` (a bank: its buffer; a parallel unit's copy
    after copy 0: None)."""
    count = len(sg.units)
    if i < count:
        return sg.units[i]
    if i < count + len(sg.banks):
        return sg.banks[i - count]
    return None
