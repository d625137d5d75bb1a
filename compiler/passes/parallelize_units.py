"""parallelize-units: spread a unit with a lot of work over many PCUs ("copies").

A ``pcu.unit`` whose modelled work on one PCU (its vectors, ``runtime.machine.perf``) is at least
``min_vectors`` gets ``parallel [p0, p1, ...]``, one factor a counter: it becomes ``P = prod(p)``
identical PCUs, copy ``k`` (a multi-index) running counter ``c`` over its block
``[k[c] * b[c], min(S[c], (k[c] + 1) * b[c]))``, ``b[c] = ceil(S[c] / p[c])``. Each output
element is computed by one copy, in the same order as on one PCU: the result is the same.

The factors: at most two counters are split, the lanes counter ``L`` of the performance model
(over the PCU slots of a row, at most ``cols // 2`` copies) and its unroll counter ``U`` (or,
without one, the innermost other counter that is not reduced; over the rows, at most ``rows``);
never a reduced counter (output stride 0). Of every ``p[U] x p[L]`` grid whose blocks are all
non-empty, the one whose copies have the fewest vectors (then the fewest copies) that the
structured layout (``parallel_layout``) can place and route is taken. The buffers a parallel
unit reads and writes stay whole on chip, all their PMUs (counted by assign-pmus, which runs
next), so its operands are loaded from DRAM once; partition-sections then gives the unit a
section of its own. Not parallelized (left as they are): units below the threshold, with a
data-dependent access, a ``counter`` or ``rand`` stage (they would see a copy's own counters),
reading a buffer through two different accesses (a buffer feeds a copy one stream), whose
buffers do not fit the PMUs, or with no grid of more than one copy that routes.

``min_vectors`` (default ``2**28``: about 0.2 s of one PCU at 1.3 GHz) is far above any unit
of the examples (at their default sizes the largest, ResNet's, has 262k vectors on sn10; a
512x2048x8192 matmul, the size of a GPT layer's at hidden 2048, 90M), so their mapping never
changes; tests force it lower.

Before, on sn10, the 4096^3 matmul (one PCU: 716M vectors)::

    %mm = pcu.unit @matmul_0 (%x, %w) space [4096, 4096, 4096] tile [...] lanes 16
            ins [#rdu_tile.access<0 : [4096, 0, 1]>, #rdu_tile.access<0 : [0, 1, 4096]>]
            out #rdu_tile.access<0 : [4096, 1, 0]> combiner add : ... {...}
    %r = pmu.buffer %mm {name = "matmul_0", ...} : tensor<4096x4096xf32> -> ...

After (640 copies of 1.17M vectors; assign-pmus then puts each buffer in 128 PMUs)::

    %mm = pcu.unit @matmul_0 (%x, %w) space [4096, 4096, 4096] ... combiner add
            parallel [32, 20, 1] : ... {...}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from compiler.passes import parallel_layout
from compiler.passes.ir_helpers import pass_target
from compiler.passes.parallel_layout import BufferSpec, ParallelSpec, PortSpec
from compiler.passes.placement import PlacementError
from compiler.targets import Target
from dialects.pcu import UnitOp
from dialects.pmu import BufferOp
from dialects.rdu_tile import dense_i64
from runtime.machine import perf, rules

DEFAULT_MIN_VECTORS = 1 << 28
"""Units with fewer vectors on one PCU stay on one PCU."""

LAYOUT_TRIES = 8
"""How many of the best grids are tried with the layout before giving up on a unit."""


def unit_shape(unit: UnitOp) -> tuple[int, int]:
    """(depth, lanes) of ``unit`` under the performance model."""
    return unit.depth(), max(1, unit.lanes.value.data)


def copy_vectors(
    block: Sequence[int], out_strides: Sequence[int], lanes: int, depth: int, stages: int
) -> int:
    """Vectors one copy running over ``block`` takes (``runtime.machine.perf``)."""
    return perf.vector_shape(block, out_strides, lanes, depth, stages).vectors(block)


def split_counters(unit: UnitOp) -> tuple[int, int]:
    """(row counter, lanes counter) a unit may be split over (-1: none)."""
    space = unit.space_values
    out = unit.out.stride_values
    reduced = set(rules.reduced_counters(space, out))
    at_l = rules.lanes_counter(space, out)
    if at_l in reduced or at_l < 0 or space[at_l] <= 1:
        at_l = -1
    at_u = perf.unroll_counter(space, out, at_l)
    if at_u < 0:
        wide = [c for c, e in enumerate(space) if c not in reduced and c != at_l and e > 1]
        at_u = wide[-1] if wide else -1
    return at_u, at_l


def can_parallelize(unit: UnitOp) -> bool:
    """No data-dependent access, ``counter`` or ``rand`` stage, and one access a buffer (see the
    module docstring): one copy a counter passes the shared rule."""
    return unit.parallel_problem([1] * len(unit.space_values)) is None


def candidates(unit: UnitOp, target: Target) -> list[tuple[int, ...]]:
    """The factor vectors worth trying, best first (see the module docstring)."""
    space = unit.space_values
    out = unit.out.stride_values
    depth, lanes = unit_shape(unit)
    at_u, at_l = split_counters(unit)
    rows = range(1, min(target.rows, space[at_u]) + 1) if at_u >= 0 else [1]
    cols = range(1, min(parallel_layout.row_slots(target), space[at_l]) + 1) if at_l >= 0 else [1]
    scored: list[tuple[int, int, tuple[int, ...]]] = []
    for pr in rows:
        for pc in cols:
            factors = [1] * len(space)
            if at_u >= 0:
                factors[at_u] = pr
            if at_l >= 0:
                factors[at_l] = pc
            if unit.parallel_problem(factors) is not None:
                continue  # an empty last block
            block = rules.copy_block(space, factors)
            vectors = copy_vectors(block, out, lanes, depth, target.pcu_stages)
            scored.append((vectors, pr * pc, tuple(factors)))
    scored.sort()
    return [f for _, p, f in scored if p > 1]


def _spec(unit: UnitOp, factors: tuple[int, ...], target: Target) -> ParallelSpec:
    """The layout's view of ``unit`` alone in a section, its buffers whole on chip."""
    held = parallel_layout.unit_buffers(unit, factors, target)
    index = {b: i for i, (b, _) in enumerate(held)}
    out = held[-1][0]
    ports: list[PortSpec] = []
    for value, access in zip(unit.inputs, unit.ins.data, strict=True):
        owner = value.owner
        assert isinstance(owner, BufferOp)
        ports.append(PortSpec(index[owner], tuple(access.stride_values)))
    return ParallelSpec(
        unit.sym_name.data,
        unit.space_values,
        tuple(unit.out.stride_values),
        factors,
        tuple(ports),
        len(held) - 1,
        tuple(BufferSpec(b.buffer_name.data, n, b is not out, b is out) for b, n in held),
    )


def choose_factors(unit: UnitOp, target: Target, min_vectors: int) -> tuple[int, ...] | None:
    """The factors of ``unit`` (None: leave it on one PCU), see the module docstring."""
    if not can_parallelize(unit):
        return None
    depth, lanes = unit_shape(unit)
    space = unit.space_values
    if copy_vectors(space, unit.out.stride_values, lanes, depth, target.pcu_stages) < min_vectors:
        return None
    readers = [use.operation for use in unit.result.uses]
    if len(readers) != 1 or not isinstance(readers[0], BufferOp):
        return None
    for factors in candidates(unit, target)[:LAYOUT_TRIES]:
        spec = _spec(unit, factors, target)
        if math.prod(factors) > target.num_pcus:
            continue
        try:
            parallel_layout.layout(spec, target)
        except PlacementError:
            continue
        return factors
    return None


@dataclass(frozen=True)
class ParallelizeUnits(ModulePass):
    """Give units with a lot of work ``parallel`` factors (see the module docstring)."""

    name = "parallelize-units"

    target: str = "plasticine"
    min_vectors: int = DEFAULT_MIN_VECTORS
    """Units with fewer vectors on one PCU are left alone."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = pass_target(self.target)
        for unit in [u for u in op.walk() if isinstance(u, UnitOp)]:
            if unit.parallel is not None:
                continue
            factors = choose_factors(unit, target, self.min_vectors)
            if factors is not None:
                unit.properties["parallel"] = dense_i64(factors)
