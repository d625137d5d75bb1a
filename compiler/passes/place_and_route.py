"""place-and-route: put every virtual unit of a section on a slot of the grid, route its streams.

Per ``dataflow.section``, the ``pcu.unit`` and ``pmu.buffer`` ops (in dataflow order) and the
streams between them become a ``placement.Graph``:

- a ``pmu.buffer`` whose source is a section argument is filled from DRAM, one whose source is a
  ``pcu.unit`` result by that PCU;
- each input port of a ``pcu.unit`` is a stream from the port's ``pmu.buffer``;
- each ``pmu.buffer`` the section's ``dataflow.yield`` returns is stored to DRAM;
- a ``pmu.buffer`` that spans ``pmus = N`` PMUs takes ``N - 1`` more PMU slots in a chain, each
  joined to the one before by a stream (the traffic between the pieces of its address range), so
  they are placed close by and the links they need are reserved; their slots follow the first
  PMU's on its ``at``.
  A chain rather than a star: a star's first PMU would send ``N - 1`` streams besides its
  readers' and its store, more than the links of a switch carry once ``N`` is in the tens (GPT
  at hidden 2048: 35 sections as a star, 21 as a chain, and 26% fewer modelled cycles).

The placement is the one partition-sections found and recorded on the section
(``rdu.placement``: slots and routes in that graph's order; checked, then dropped). A section
without one (place-and-route run alone) is placed here: ``placement.place_and_route`` (greedy,
then simulated annealing of the total stream length with seed 0, then dimension-ordered routing
within the links' capacity). Either way the answer goes onto the IR as placement attributes
(``dialects/pmu.py``, ``dialects/pcu.py``): a buffer's ``#pmu.placement`` holds its slots
(``at``), the stream into it (``fill``) and its store to DRAM (``store``); a unit's
``#pcu.placement`` its slot and the stream into each input port (``routes``). The module gets
``rdu.target`` so emit-pef knows what the placement is for.
Before, on target ``tiny``:

    %x = pmu.buffer %arg {name = "input.0", ...} : tensor<4xf32> -> memref<4xf32>
    %r = pcu.unit @relu (%x) space [4] ... combiner none : (memref<4xf32>) -> tensor<4xf32> {..}
    %y = pmu.buffer %r {name = "output.0", ...} : tensor<4xf32> -> memref<4xf32>
    dataflow.yield %y : memref<4xf32>

after:

    %x = pmu.buffer %arg {name = "input.0", ...,
                          placement = #pmu.placement<at (0, 1), fill (0, 1)>} : ...
    %r = pcu.unit @relu (%x) space [4] ... combiner none
           placed #pcu.placement<at (0, 0), routes [(0, 1) -> (0, 0)]> : ...
    %y = pmu.buffer %r {name = "output.0", ..., placement = #pmu.placement<at (1, 0),
                        fill (0, 0) -> (1, 0), store (1, 0) -> (0, 0)>} : ...

A parallel unit (``parallel [...]``) beside other units is placed with them: its copies are
PCUs of the graph, each copy's output a stream to a PMU of its result buffer, each multicast
stream a chain of legs from a PMU of the operand through the copies it feeds, whose routes are
joined into the stream's (``ir_helpers.section_graph``; ``#pcu.placement<at [...], streams
[...], out_routes [...]>``). A section holding a parallel unit alone with its buffers is not
annealed: ``parallel_layout`` lays its copies out on a grid and multicasts its operands to them.

A section that needs more PCUs or PMUs than the target has, or whose streams cannot be routed,
fails the pass with one line naming the section and the target.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from compiler.passes import parallel_layout, placement
from compiler.passes.ir_helpers import (
    PLACEMENT_ATTR,
    TARGET_ATTR,
    pass_target,
    recorded_placement,
    section_graph,
    write_placement,
)
from compiler.passes.placement import PlacementError
from compiler.targets import Target
from dialects.dataflow import SectionOp


@dataclass(frozen=True)
class PlaceAndRoute(ModulePass):
    """Place every pcu.unit and pmu.buffer on the grid and route every stream (see the module
    docstring)."""

    name = "place-and-route"

    target: str = "plasticine"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = pass_target(self.target)
        for section in op.walk():
            if isinstance(section, SectionOp):
                place_section(section, target)
        op.attributes[TARGET_ATTR] = StringAttr(target.name)


def place_section(section: SectionOp, target: Target) -> None:
    """Place and route one section in place: a placement attribute on each of its units and
    buffers (the placement recorded on the section, else one found here)."""
    unit = parallel_layout.lone_parallel_unit(section)
    if unit is not None:
        try:
            parallel_layout.place_parallel_section(section, unit, target)
        except PlacementError as err:
            raise PassFailedException(f"section '{section.sym_name.data}': {err}") from None
        return
    sg = section_graph(section, target)
    name = section.sym_name.data
    result = recorded_placement(section)
    if result is not None:
        wrong = placement.check_placement(sg.graph, target, result)
        if wrong is not None:
            raise PassFailedException(
                f"section '{name}': the placement recorded on it ({PLACEMENT_ATTR}) does not fit "
                f"its units on target '{target.name}': {wrong}"
            )
        del section.attributes[PLACEMENT_ATTR]
    else:
        try:
            result = placement.place_and_route(sg.graph, target, section=name)
        except PlacementError as err:
            raise PassFailedException(str(err)) from None
    write_placement(sg, result)
