"""co-place-sections: put every section on the fabric at once, with the state kept on chip.

A training step runs its sections in turn (forward, backward, optimizer), and each one alone
uses a fraction of the fabric. When all of them fit together, this pass places them together,
on units of their own, in one placement whose routes are checked to fit the links' capacity
together: the fabric is configured once a run, not once a section run, and the tensors the
sections hand each other (saved activations, gradients) and keep across steps (parameters,
buffers, optimizer state) stay in PMUs instead of crossing DRAM
(``runtime/machine/perf.py`` rule 7 models it, and rule 8 runs the sections chained, each
unit starting when its inputs are there, whichever section wrote them;
``runtime.pef.schema.Residency`` records it).

The sections are co-placed when:

- there are at least two, none a parallel unit alone (``parallel_layout`` lays those out on a
  grid of their own);
- their PCUs (a parallel unit's copies) and their buffers' PMUs fit the target's together, and
  their streams, with the hand-offs below, route within the links' capacity together
  (``placement.place_and_route`` on the union of the sections' graphs, seed 0).

Otherwise the module is left as place-and-route made it.

Which symbols stay on chip, their homes, shared buffers and hand-offs: ``residency`` (its
docstring). Here a shared buffer is the home's very unit in the combined graph, and a hand-off
a stream of the combined graph, placed and routed with the rest. MLP b256 on sn10: the backward
reads the saved activation on its home's PMUs instead of waiting for a 2,048-cycle copy of its
131 kB.

The answer goes onto the IR: every unit and buffer gets its placement in the combined layout
(as place-and-route writes one), and the module gets ``rdu.resident``
(``residency.resident_attr``), which emit-pef turns into the PEF's ``resident`` section. When
the sections do not fit together, ``pin-resident-symbols`` may still keep symbols on chip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
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
from compiler.passes.residency import (
    Resident,
    buffer_units,
    node_op,
    resident_attr,
    resident_symbols,
    restore_pmus,
    share_pmus,
)
from dialects.dataflow import SectionOp
from dialects.pcu import UnitOp
from dialects.pmu import BufferOp


@dataclass(frozen=True)
class CoPlaceSections(ModulePass):
    """Place all sections together when they fit, keeping the state on chip (see the module
    docstring)."""

    name = "co-place-sections"

    target: str = "plasticine"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        self.apply_changed(ctx, op)

    def apply_changed(self, ctx: Context, op: ModuleOp) -> bool:
        """``apply``, saying whether the sections were placed together (the IR changed)."""
        target = pass_target(self.target)
        sections = [s for s in op.walk() if isinstance(s, SectionOp)]
        if len(sections) < 2 or any(parallel_layout.lone_parallel_unit(s) for s in sections):
            return False
        units = [u for s in sections for u in s.body.block.ops if isinstance(u, UnitOp)]
        if sum(u.copies for u in units) > target.num_pcus:
            return False  # no placement holds their PCUs together (GPT-2 small's: 0.6 s to find)
        residents = resident_symbols(sections, op, target)
        before = share_pmus(residents)
        graphs = [section_graph(s, target) for s in sections]
        graph, nodes, streams_at, handoffs_at = combined_graph(graphs, residents)
        name = "co-resident sections"
        try:
            placed = placement.place_and_route(graph, target, section=name)
        except PlacementError:
            restore_pmus(before)  # each section keeps its own placement
            return False
        placed = placement.polish(graph, target, placed, section=name)
        for sg, at, s0 in zip(graphs, nodes, streams_at, strict=True):
            m = len(sg.graph.streams)
            slots = tuple(placed.at[i] for i in at)
            write_placement(sg, Placement(slots, placed.routes[s0 : s0 + m]))
        routes = [
            [placed.routes[first + k] for k in range(len(r.loads))]
            for r, first in zip(residents, handoffs_at, strict=True)
        ]
        op.attributes[RESIDENT_ATTR] = resident_attr(sections, residents, routes)
        return True


def combined_graph(
    graphs: Sequence[SectionGraph], residents: Sequence[Resident]
) -> tuple[Graph, list[list[int]], list[int], list[int]]:
    """The sections' graphs side by side (units and streams renumbered), a buffer on its
    symbol's home's slot (``Resident.shared``) the home's unit itself, then a hand-off stream
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
            op = node_op(sg, i)
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
        home_nodes = [nodes[home_section][i] for i in buffer_units(graphs[home_section], home)]
        for s, buffer in resident.shared:
            for i, node in zip(buffer_units(graphs[s], buffer), home_nodes, strict=True):
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
