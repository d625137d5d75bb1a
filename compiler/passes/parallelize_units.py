"""parallelize-units: spread units over many PCUs ("copies"), in proportion to their work.

A ``pcu.unit`` with ``parallel [p0, p1, ...]``, one factor a counter, is ``P = prod(p)``
identical PCUs, copy ``k`` (a multi-index) running counter ``c`` over its block
``[k[c] * b[c], min(S[c], (k[c] + 1) * b[c]))``, ``b[c] = ceil(S[c] / p[c])``. Each output
element is computed by one copy, in the same order as on one PCU: the result is the same.

The factors: at most two counters are split, the lanes counter ``L`` of the performance model
(over the PCU slots of a row, at most ``cols // 2`` copies) and its unroll counter ``U`` (or,
without one, the innermost other counter that is not reduced; over the rows, at most ``rows``);
never a reduced counter (output stride 0). A grid ``p[U] x p[L]`` whose blocks are all non-empty
is scored by the vectors of a copy (``runtime.machine.perf``), counted at the lanes the copy runs
at (``block_lanes``: a unit streaming only bf16 at the target's bf16 rate where that takes
fewer cycles than its own lanes, as the performance model packs it). The buffers a parallel
unit reads and writes stay whole on chip, all their PMUs (counted by assign-pmus, which runs
next), so its operands are loaded from DRAM once. Not parallelized: units with a
data-dependent access or a ``rand`` stage (its value depends on every counter), reading a
buffer through two different accesses (a buffer feeds a copy one stream), or whose result has
other readers than its buffer; a unit with a ``counter`` stage is split only along the
counters no such stage reads (a cross-entropy's masked sum over the classes, along its rows).

Three rules give factors (the third shapes the first):

1. **Balancing** (``balance``, on by default), a section at a time: in a section that fits the
   target as it is (its units and PMUs; a larger one is cut by partition-sections and left
   alone), the units on the critical path get copies. The path is in cycles, a copy taking its
   vectors times the cycles each takes (``copy_cycles``: its slowest input port's banks or
   stream, or its passes round the pipeline, as the performance model counts them; a parallel
   unit's also the hops of its multicast streams, guessed by ``multicast_hops``), each unit
   starting when its inputs' writers start (it streams) or end (it reads a writer's result in
   another order than it is written, or either is parallel: the performance model's rules); of
   its units whose own time sets the path, the one whose step saves the most cycles a PCU it
   adds takes it (``best_step``: one of its next ``LOOKAHEAD`` grids in its ``frontier``, more
   copies and fewer cycles each; a unit on the path adds its cycles to the path's, so a few
   copies more for an elementwise unit go before a few more for a matmul on 50), until the
   path is no longer than the section's DRAM traffic (``dram_floor``: below it more copies
   gain nothing), no unit on it can be split further or below ``MIN_COPY_CYCLES``, or the
   target's PCUs and PMUs are taken.
   Then the **chains are cut alike** (``line_up``): units that walk the same rows one after
   another (``row_chains``: each reads its writer's result in the rows it writes its own, as
   the performance model's rule 1 reads rows: the MLP's matmul, ReLU, matmul and log-softmax
   over the batch) follow each other a row behind only if their copies cut those rows into
   the same runs; each unit choosing its split alone (matmul_0 in 11 runs of 24 rows, the ReLU
   in 4 of 64, the next matmul in 22 of 12) leaves a copy whose first row ends a writer's run
   waiting for the writer's end. So each chain, heaviest first, tries every cut into equal
   runs its units' rows all take (up to twice the most runs any has), each unit with the
   fewest copies along its lanes that keep up with the chain's slowest, and keeps the cut
   that shortens the critical path, with such units following each other there, within the
   PCUs and PMUs the allocation took. MLP b256 on sn10: the forward cut in 8 runs, 1,960 to
   1,674 cycles.
   Or the **chains are cut first** (``allocation``): the chains, each unit joined only
   through the writer it waits for (``row_chains``' segments: a residual read of an earlier
   block does not tie the blocks into one chain), are cut into ``CUT_RUNS`` equal runs of
   rows before the steps, which then step their units through that cut only
   (``cut_frontier``) and count them following each other a row behind; ``line_up`` after.
   Of these allocations and the one above, the section takes the one whose units the
   performance model (rules 1 and 2, ``modelled_cycles``: the section before placement) ends
   soonest, a cut first only where it saves more than ``CUT_GAIN`` leaves; of the cuts first
   within ``CUT_GAIN`` of the fastest, which that model cannot tell apart, the one whose state
   takes the fewest PMUs (``state_pmus``). GPT b8's forward on sn10: cut first in 8 runs,
   14,677 to 13,005 cycles placed; its backward keeps its own (its dW matmuls, not its chains,
   set it).
   The section is then placed and routed (as partition-sections will, seed 0); if it does not
   route, it is allocated again over fewer PCUs, ``KEEP``'s shares of the first allocation's
   extra ones in turn, until one routes, else it is left as it was. The allocation that
   routes then has its copies put **in order** (``in_order``): each parallel unit's copies
   on its innermost counters other than the lanes counter (``in_order_grid``: a layer norm's
   ``[8, 32, 48]`` split ``[1, 8, 1]``, the tokens, not ``[8, 1, 1]``, the sequences), every
   one **interleaved** where it may be (``interleaved``: copy ``k`` taking the points ``k, k +
   p, ...`` of each split counter but the lanes counter), all at once, kept if the section so
   placed ends sooner: copies in blocks complete every block of rows at the unit's end;
   interleaved, they complete the rows in order, so a reader of whole blocks (attention's
   heads, reading a sequence's tokens) or of rows in order starts before the writer ends, and
   only if every unit before does so do the sequences come early. Then ``interleave`` tries,
   unit by unit, the other way for each (their work, streams and placement are the same).
   GPT b8 on sn10: forward 12,836 to 11,718 cycles. The allocation is then **refined by the
   performance model** (``refine``, ``section_timing``: rules 1 and 2 before placement)
   within the PMUs it took (the rest is the pins' room) and the PCUs it took or, a second
   start, the fabric's: the readers of the busiest PMU and the units ending last take their
   next grids, those ending first giving grids back, while the section ends sooner (or its
   latest units do), and where no unit's next grid helps, a run of units over one space on
   the critical chain takes one grid (``aligned_step``), each then following its writer a run
   behind; a third start tries that first (``refined_starts``). Each refined allocation is
   placed too and kept if, placed, it ends the section sooner than the best so far by
   ``REFINE_GAIN`` (``placed_cycles``: with its busiest link, rule 3, over the placement's
   routes), and interleaved again. GPT b8's backward on sn10: its dW matmuls, which the
   allocation's critical path (the dX chain) left on one to four copies, get two to twelve,
   15,650 cycles before placement to 7,294 placed (compute; 7,826 with the first two starts
   alone, its GELU's five readers of one PMU then setting rule 2 at 7,680). The
   units keep their section: partition-sections and place-and-route place a parallel unit's
   copies beside the other units, its operands multicast.
3. **Sharing the fabric** (``co_resident_shares``): when a program's sections, as they are,
   fit the target together (co-place-sections will try to place them all at once), each
   section is balanced within its share (its own units and buffers' PMUs plus an even part of
   those left free), so that they still fit together, and against a DRAM floor without the
   symbols expected to stay on chip (the state, and the activations and gradients another
   section loads: ``dram_floor``'s ``kept``): a section that does not store such a symbol
   reads it where it lives, whole from the start (co-place-sections shares its home's PMUs),
   one that stores it too gets it at the on-chip stream rate (a hand-off may copy it). A
   program whose sections do not fit together is balanced as before, each section
   with the whole fabric, and so is one where the shares would not pay: the sum over its
   sections of the critical path (or DRAM floor) with shares is compared with the sum without
   them plus a configuration latency a section (GPT b8 on sn10 balances each section over all
   640 PCUs: sharing would take it from 69.5 to 111 us).
2. **Threshold**: a unit whose work on one PCU is at least ``min_vectors`` vectors (default
   ``2**28``, about 0.2 s of one PCU at 1.3 GHz: no unit of the examples at their sizes; the
   4096^3 matmul's 716M) takes the grid whose copies have the fewest vectors (then the fewest
   copies) that the structured layout (``parallel_layout``) can place and route, and a section
   of its own (a section holding such a unit is not balanced).
4. **State in pieces** (``split_state``): a section that balancing leaves on one PCU a unit,
   its critical path under its DRAM floor, is the optimizer's: its parameters, gradients and
   moments cross DRAM there, as far as this pass knows, but pin-resident-symbols keeps them on
   chip, and then the banks of the moments' PMUs set its time, each moment read and written
   in place and read again by the step (GPT b8's on sn10: three streams of 576 vectors on one
   PMU, 1,728 cycles). When the program's sections are loaded in turn (rule 3 found no
   shares), each chain of such a section over one tensor (``tensor_chains``: a parameter's
   update, its moments', its step's and its own units) that reads a symbol the other sections
   hold in several PMUs (``state_pieces``: the forward's weights, cut for its matmuls'
   multicast streams, the backward's gradients for its dW matmuls' copies) takes as many
   copies along its outermost counter as the fewest PMUs of those symbols
   (``state_factors``), in blocks: copy ``k`` streams the ``k``-th block of rows of every
   buffer, the moments are cut into as many pieces, and no buffer another section shares (a pinned
   home's, which takes the PMUs of its widest buffer everywhere) gets wider. Kept if the
   section places and routes. GPT b8's optimizer on sn10: 2,695 cycles to 1,860 (its
   moments' banks 1,728 to 864: three of its four MLP weights' gradients are in two PMUs);
   HF GPT-2 b8's, 13,304 to 7,202.

Before, on sn10, the 4096^3 matmul (one PCU: 716M vectors)::

    %mm = pcu.unit @matmul_0 (%x, %w) space [4096, 4096, 4096] tile [...] lanes 16
            ins [#rdu_tile.access<0 : [4096, 0, 1]>, #rdu_tile.access<0 : [0, 1, 4096]>]
            out #rdu_tile.access<0 : [4096, 1, 0]> combiner add : ... {...}
    %r = pmu.buffer %mm {name = "matmul_0", ...} : tensor<4096x4096xf32> -> ...

After (640 copies of 1.17M vectors; assign-pmus then puts each buffer in 128 PMUs)::

    %mm = pcu.unit @matmul_0 (%x, %w) space [4096, 4096, 4096] ... combiner add
            parallel [32, 20, 1] : ... {...}

Balancing two independent matmuls of 256 and 64 rows on sn10 (11008 and 2816 vectors on one
PCU, six cycles each: the six rows a vector unrolls are in one bank;
test/passes/parallelize_units_balance.mlir) gives them ``parallel [22, 4, 1]`` (interleaved)
and ``parallel [16, 1, 1]``: 88 copies of 768 cycles and 16 of 1024, under the section's 1656
cycles of DRAM traffic.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial

import msgspec
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, UnitAttr
from xdsl.ir import BlockArgument, SSAValue
from xdsl.passes import ModulePass

from compiler.forked import Beside
from compiler.passes import parallel_layout, placement
from compiler.passes.ir_helpers import (
    PLACEMENT_ATTR,
    assign_pmus,
    block_vector_shape,
    buffer_bytes,
    elt_of,
    is_resident,
    pass_target,
    record_placement,
    recorded_placement,
    resident_pmus,
    section_graph,
    unit_lanes,
    unit_streams,
)
from compiler.passes.parallel_layout import BufferSpec, ParallelSpec, PortSpec
from compiler.passes.pef_sections import UnplacedPcus, unplaced_section
from compiler.passes.placement import PlacementError
from compiler.passes.residency import STATE_ROLES, updates_in_place
from compiler.passes.tiling import element_dtype
from compiler.targets import Target
from dialects.dataflow import SectionOp
from dialects.pcu import UnitOp
from dialects.pmu import BufferOp
from dialects.rdu_tile import AccessAttr, dense_i64, shape_of
from runtime.machine import perf, rules
from runtime.machine.opcodes import DTYPE_BYTES, ELEMENT_TYPES
from runtime.machine.targets import dram_bytes_per_cycle, stream_bytes
from runtime.pef import schema

DEFAULT_MIN_VECTORS = 1 << 28
"""Units with fewer vectors on one PCU stay on one PCU."""

LAYOUT_TRIES = 8
"""How many of the best grids are tried with the layout before giving up on a unit."""


def copy_vectors(unit: UnitOp, block: Sequence[int], target: Target) -> int:
    """Vectors one copy of ``unit`` running over ``block`` takes (``runtime.machine.perf``), at
    the lanes it runs at (``block_lanes``)."""
    return CopyCost(unit, target).vectors(block)


def block_lanes(unit: UnitOp, block: Sequence[int], target: Target, depth: int) -> int:
    """The lanes a copy of ``unit`` over ``block`` runs at, as the performance model packs it:
    the bf16 rate for a unit streaming only bf16 (``ir_helpers.unit_lanes``) where its vectors
    at that rate take fewer cycles than at its own lanes (``vector_cycles``); else its own. A
    bf16 matmul reading its weight transposed (32 bf16 at a stride: 32 words, two cycles of 16
    banks) runs no faster than at its own lanes, and is sized at those."""
    return CopyCost(unit, target, depth).lanes(block)


class CopyCost:
    """``copy_vectors``, ``block_lanes`` and ``copy_cycles`` of one unit over many blocks: what
    does not depend on the block (its body's depth, its lanes and bf16 rate, its output's
    strides) read from the IR once, and the cycles a vector takes kept by the vector's shape
    (``scored_candidates`` and ``frontier`` ask for every grid of copies of every unit)."""

    def __init__(self, unit: UnitOp, target: Target, depth: int | None = None) -> None:
        self.unit = unit
        self.target = target
        self.depth = unit.depth() if depth is None else depth
        self.out = unit.out.stride_values
        self.plain = max(1, unit.lanes.value.data)
        self.packed = max(1, unit_lanes(unit, target))
        self.passes = max(1, -(-self.depth // target.pcu_stages))
        self.streams = unit_streams(unit)
        self.link = stream_bytes(target)
        self._ii: dict[tuple[int, ...], int] = {}
        self._shapes: dict[tuple[int, ...], perf.VectorShape] = {}

    def shape(self, block: Sequence[int], lanes: int) -> perf.VectorShape:
        """``perf.vector_shape`` of a copy over ``block`` at ``lanes``, kept by the block."""
        key = (lanes, *block)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = perf.vector_shape(
                block, self.out, lanes, self.depth, self.target.pcu_stages, self.streams, self.link
            )
        return shape

    def ii(self, block: Sequence[int], lanes: int, shape: perf.VectorShape) -> int:
        """``vector_ii`` of a copy over ``block`` at ``lanes`` (its ``shape``), kept by what it
        depends on (the vector's shape and which of the block's counters move)."""
        moves = tuple(e > 1 for e in block)
        key = (lanes, shape.lanes_at, shape.width, shape.unroll_at, shape.unroll, *moves)
        if key not in self._ii:
            self._ii[key] = vector_ii(self.unit, block, self.target, lanes, self.depth)
        return self._ii[key]

    def lanes(self, block: Sequence[int]) -> int:
        """``block_lanes``."""
        plain, packed = self.plain, self.packed
        if packed == plain:
            return plain
        faster = self.at_lanes(block, packed) < self.at_lanes(block, plain)
        return packed if faster else plain

    def at_lanes(self, block: Sequence[int], lanes: int) -> int:
        """``vector_cycles`` at ``lanes``."""
        shape = self.shape(block, lanes)
        return shape.vectors(block) * self.ii(block, lanes, shape)

    def vectors(self, block: Sequence[int]) -> int:
        """``copy_vectors``."""
        return self.shape(block, self.lanes(block)).vectors(block)

    def cycles(self, block: Sequence[int]) -> int:
        """``copy_cycles``."""
        lanes = self.lanes(block)
        shape = self.shape(block, lanes)
        return shape.vectors(block) * max(self.passes, self.ii(block, lanes, shape))


def copy_cycles(unit: UnitOp, block: Sequence[int], target: Target) -> int:
    """Cycles one copy of ``unit`` running over ``block`` streams for, fill aside: its vectors
    (``copy_vectors``) times the cycles each takes (``vector_ii``: a unit whose operand vectors
    crowd into few banks of their PMU, or take several cycles of a stream, takes that many a
    vector, and a body deeper than the pipeline a cycle a pass, as the performance model counts
    it)."""
    return CopyCost(unit, target).cycles(block)


def vector_cycles(
    unit: UnitOp, block: Sequence[int], target: Target, lanes: int, depth: int
) -> int:
    """Cycles a copy of ``unit`` over ``block`` takes at ``lanes`` lanes: its vectors times
    ``vector_ii``."""
    shape = block_vector_shape(unit, block, lanes, depth, target)
    return shape.vectors(block) * vector_ii(unit, block, target, lanes, depth)


def vector_ii(unit: UnitOp, block: Sequence[int], target: Target, lanes: int, depth: int) -> int:
    """The cycles the slowest input port of a copy of ``unit`` over ``block`` at ``lanes`` lanes
    takes to deliver one vector (its PMU's banks, or the stream's bytes:
    ``runtime.machine.perf``, "initiation interval"), register ports aside; at least 1."""
    space = unit.space_values
    shape = block_vector_shape(unit, block, lanes, depth, target)
    ii = 1
    for value, access in zip(unit.inputs, unit.ins.data, strict=True):
        buffer = value.owner
        if not isinstance(buffer, BufferOp):
            continue
        if rules.register_problem(space, access.stride_values, access.is_indexed) is None:
            continue
        along = shape.along(access.stride_values, block)
        dtype = element_dtype(elt_of(buffer.source))
        skew = buffer.bank_skew.value.data if buffer.bank_skew is not None else 0
        per_word = ELEMENT_TYPES[dtype].per_lane
        nbanks = buffer.banks.value.data
        banks = perf.bank_cycles(along, nbanks, skew, access.offset_value, per_word)
        nbytes = math.prod(n for _, n in along) * DTYPE_BYTES[dtype]
        ii = max(ii, banks, -(-nbytes // stream_bytes(target)))
    return ii


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
    """No data-dependent access or ``rand`` stage, and one access a buffer (see the module
    docstring): one copy a counter passes the shared rule."""
    return unit.parallel_problem([1] * len(unit.space_values)) is None


def grids(unit: UnitOp, target: Target) -> list[tuple[int, tuple[int, ...]]]:
    """``(copies, factors)`` of every grid of copies worth trying (see the module docstring),
    one copy included: ``p[U] x p[L]`` within the rows and a row's PCU slots, every block
    non-empty."""
    space = unit.space_values
    at_u, at_l = split_counters(unit)
    rows = range(1, min(target.rows, space[at_u]) + 1) if at_u >= 0 else [1]
    cols = range(1, min(parallel_layout.row_slots(target), space[at_l]) + 1) if at_l >= 0 else [1]
    found: list[tuple[int, tuple[int, ...]]] = []
    fixed = unit.counter_stages()
    for pr in rows:
        for pc in cols:
            factors = [1] * len(space)
            if at_u >= 0:
                factors[at_u] = pr
            if at_l >= 0:
                factors[at_l] = pc
            if any(factors[c] > 1 for c in fixed):  # a ``counter`` stage reads it
                continue
            if _blocks_filled(space, factors):  # else an empty last block (``parallel_problem``)
                found.append((pr * pc, tuple(factors)))
    return found


def scored_candidates(unit: UnitOp, target: Target) -> list[tuple[int, int, tuple[int, ...]]]:
    """``(vectors a copy, copies, factors)`` of every grid of copies worth trying, best first
    (fewest vectors, then fewest copies; see the module docstring); one copy included."""
    space = unit.space_values
    cost = CopyCost(unit, target)
    scored = [
        (cost.vectors(rules.copy_block(space, factors)), copies, factors)
        for copies, factors in grids(unit, target)
    ]
    scored.sort()
    return scored


def _blocks_filled(space: Sequence[int], factors: Sequence[int]) -> bool:
    """Whether every copy's block is non-empty: ``(p - 1) * ceil(S / p) < S`` a counter."""
    return all(p == 1 or (p - 1) * -(-e // p) < e for e, p in zip(space, factors, strict=True))


def candidates(unit: UnitOp, target: Target) -> list[tuple[int, ...]]:
    """The factor vectors worth trying, best first (see the module docstring)."""
    return [f for _, p, f in scored_candidates(unit, target) if p > 1]


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
    space = unit.space_values
    if copy_vectors(unit, space, target) < min_vectors:
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


# -- work-proportional allocation inside a section -------------------------------------------


KEEP = (0.9, 0.8, 0.7, 0.55, 0.4, 0.25)
"""After a first allocation that does not route, the shares of its extra PCUs (those beyond
one a unit) the next allocations take, one a try, until one routes; then the section is left
as it was. Gently at first: HF GPT-2's backward on sn10 took 584 PCUs and did not route; at
0.9 of its extra ones (539) it routes, 50.8k cycles -> 38.0k (its dW matmuls had kept 2 and 3
copies at 451 PCUs, where each try used to keep 0.7 of the PCUs of the one before)."""

MIN_COPY_CYCLES = 32
"""A unit is not split below this many cycles a copy: its fill and routes would dominate."""

LOOKAHEAD = 4
"""How many of a unit's next grids (``frontier``) a step of the allocation weighs."""


def fewest_copies(extent: int, most: int) -> list[int]:
    """The factors from 1 to ``most`` of a counter of ``extent`` that give a block no smaller
    factor gives (``ceil(extent / p)``, the fewest copies for each block size); every block of
    such a factor is non-empty."""
    found: list[int] = []
    for p in range(1, min(most, extent) + 1):
        block = -(-extent // p)
        if not found or block < -(-extent // found[-1]):
            found.append(-(-extent // block))
    return sorted(set(found))


def outer_counter(unit: UnitOp, at_u: int, at_l: int) -> int:
    """The outermost counter a unit's copies may also split beside ``split_counters``' two (-1:
    none): not reduced, of extent above 1 (the batch and heads of an attention's matmuls)."""
    space = unit.space_values
    reduced = set(rules.reduced_counters(space, unit.out.stride_values))
    for c, extent in enumerate(space):
        if c not in reduced and c not in (at_u, at_l) and extent > 1:
            return c
    return -1


_NAMES = re.compile(r'%[\w.$-]+|@[\w.$-]+|name = "[^"]*"')


def unit_structure(unit: UnitOp) -> str:
    """What ``frontier`` reads of ``unit``, as text: the unit and the buffers it reads printed,
    their names left out and their SSA values numbered in order of appearance (the twelve
    blocks of GPT-2 small have one structure a unit of a block), and whether its result's one
    reader is a buffer."""
    names: dict[str, str] = {}

    def rename(match: re.Match[str]) -> str:
        name = match.group(0)
        if name[0] != "%":
            return name[0]
        return names.setdefault(name, f"%{len(names)}")

    readers = [use.operation for use in unit.result.uses]
    alone = len(readers) == 1 and isinstance(readers[0], BufferOp)
    text = "\n".join([str(unit), *(str(v.owner) for v in unit.inputs), str(alone)])
    return _NAMES.sub(rename, text)


def frontier(
    unit: UnitOp, target: Target, outer: bool = False, cost: CopyCost | None = None
) -> list[tuple[int, int, tuple[int, ...]]]:
    """``(copies, cycles a copy, factors)`` a unit may take (``copy_cycles``), one copy first,
    each with more copies and fewer cycles than the one before; just one copy for a unit that
    cannot be parallelized (see ``can_parallelize``) or whose result has other readers than its
    buffer. The grids: ``p[U]`` within the rows and ``p[L]`` within a row's PCU slots, as
    ``grids``, and with ``outer`` (a unit beside others, placed by the annealer rather than the
    structured layout) ``outer_counter`` split too; of the factors giving one block size, the
    fewest (``fewest_copies``); ``cost``: the unit's ``CopyCost``, if one is kept."""
    space = unit.space_values
    cost = CopyCost(unit, target) if cost is None else cost
    options: list[tuple[int, int, tuple[int, ...]]] = [(1, cost.cycles(space), (1,) * len(space))]
    readers = [use.operation for use in unit.result.uses]
    if not can_parallelize(unit) or len(readers) != 1 or not isinstance(readers[0], BufferOp):
        return options
    at_u, at_l = split_counters(unit)
    at_o = outer_counter(unit, at_u, at_l) if outer else -1
    fixed = unit.counter_stages()  # a ``counter`` stage reads them: not split
    axes = [
        (c, fewest_copies(space[c], most))
        for c, most in (
            (at_u, target.rows),
            (at_l, parallel_layout.row_slots(target)),
            (at_o, space[at_o]),
        )  # fmt: skip
        if c >= 0 and c not in fixed
    ]
    scored: list[tuple[int, int, tuple[int, ...]]] = []
    for chosen in itertools.product(*(ps for _, ps in axes)):
        copies = math.prod(chosen)
        if copies > target.num_pcus:
            continue
        factors = [1] * len(space)
        for (c, _), p in zip(axes, chosen, strict=True):
            factors[c] = p
        scored.append((copies, cost.cycles(rules.copy_block(space, factors)), tuple(factors)))
    for copies, cycles, factors in sorted(scored):
        if copies > options[-1][0] and cycles < options[-1][1]:
            options.append((copies, cycles, factors))
    return options


HOPS_BASE = 8
HOPS_PER_COPY = 2
"""``multicast_hops``' guess: the hops of a parallel unit's longest input stream, which the
performance model adds to its fill, grow with the copies the stream visits: on GPT b8's
sections on sn10 placed, 20 to 67 hops for streams feeding 1 to 22 copies."""


def multicast_hops(unit: UnitOp, factors: Sequence[int]) -> int:
    """The allocation's guess of the hops of the longest input stream of ``unit`` with
    ``factors`` (the placement is not known yet): ``HOPS_BASE`` plus ``HOPS_PER_COPY`` a copy
    that its most shared operand block's multicast stream feeds."""
    copies = math.prod(factors)
    shared = [
        copies // parallel_layout.port_streams(factors, access.stride_values)
        for access in unit.ins.data
    ]
    return HOPS_BASE + HOPS_PER_COPY * max(shared, default=1)


def unit_rows(
    unit: UnitOp, access: AccessAttr, shape: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """``(counters, extents)``: the rows ``unit`` walks a buffer of ``shape`` in through
    ``access`` (``rules.row_walk``, its lanes counter kept whole, as the performance model's
    rule 1 reads them)."""
    space = unit.space_values
    lanes = rules.lanes_counter(space, unit.out.stride_values)
    return rules.row_walk(
        space,
        access.stride_values,
        math.prod(shape),
        access.offset_value,
        access.is_indexed,
        lanes,
    )


def contiguous_split(extents: Sequence[int], copies: int) -> tuple[int, ...] | None:
    """Factors over counters of ``extents`` (rows row-major) that cut the rows into ``copies``
    runs of consecutive rows, equal and in order (outer counters first, each factor dividing
    what it splits), or None: ``[8, 32]`` in 16 is ``[8, 2]``, in 4 ``[4, 1]``, in 3 None."""
    factors: list[int] = []
    left = copies
    for extent in extents:
        if left == 1:
            factors.append(1)
        elif extent % left == 0:
            factors.append(left)
            left = 1
        elif left % extent == 0:
            factors.append(extent)
            left //= extent
        else:
            return None
    return tuple(factors) if left == 1 else None


@dataclass
class RowChains:
    """Units of a section that walk the same rows one after another (each reads its writer's
    result in the rows it writes its own: the performance model's rule 1), in chains: split
    alike along those rows, a unit follows its writer a row behind; split otherwise, a copy
    whose first row ends a writer's run waits for the writer's end."""

    chain: dict[UnitOp, int]
    """Each unit's chain (a unit in none is not here)."""
    rows: dict[UnitOp, tuple[tuple[int, ...], tuple[int, ...]]]
    """Each chained unit's row counters and their extents (its output's ``unit_rows``)."""

    def split(self, unit: UnitOp, factors: Sequence[int]) -> int:
        """The runs of rows ``unit``'s copies cut its rows into with ``factors`` (0: not
        equal runs in order; 1: every copy walks every row)."""
        counters, extents = self.rows[unit]
        along = [factors[c] for c in counters]
        copies = math.prod(along)
        return copies if contiguous_split(extents, copies) == tuple(along) else 0


def row_chains(units: Sequence[UnitOp], segments: bool = False) -> RowChains:
    """The ``RowChains`` of ``units``: a unit that may be parallel (``can_parallelize``, its
    result read through its buffer only) and walks its result in rows joins the chain of a
    writer it reads in the same rows, through the counters it writes its own rows with.
    ``segments``: only through the writer it waits for, the last of its writers in the
    section's order (a fill, one value, aside), so a residual read of an earlier block does
    not join two blocks into one chain that must take one cut (``cut_frontier``)."""
    rows: dict[UnitOp, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for u in units:
        readers = [use.operation for use in u.result.uses]
        if not can_parallelize(u) or len(readers) != 1 or not isinstance(readers[0], BufferOp):
            continue
        walk = unit_rows(u, u.out, shape_of(u.result.type))
        fixed = set(u.counter_stages())
        if walk is not None and not fixed & set(walk[0]):
            rows[u] = walk
    parent = {u: u for u in rows}

    def root(u: UnitOp) -> UnitOp:
        while parent[u] is not u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    order = {u: i for i, u in enumerate(units)}
    for u in rows:
        inputs = list(zip(u.inputs, u.ins.data, strict=True))
        if segments:
            inputs = _waited_for(inputs, order)
        for value, access in inputs:
            buffer = value.owner
            if not isinstance(buffer, BufferOp) or buffer.source.owner not in rows:
                continue
            writer = buffer.source.owner
            assert isinstance(writer, UnitOp)
            read = unit_rows(u, access, shape_of(buffer.result.type))
            if read is None or read[0] != rows[u][0]:
                continue
            if math.prod(read[1]) == math.prod(rows[writer][1]) == math.prod(rows[u][1]):
                parent[root(u)] = root(writer)
    roots: dict[UnitOp, int] = {}
    chain = {u: roots.setdefault(root(u), len(roots)) for u in rows}
    sizes: dict[int, int] = {}
    for c in chain.values():
        sizes[c] = sizes.get(c, 0) + 1
    kept = {u for u, c in chain.items() if sizes[c] > 1}
    return RowChains({u: chain[u] for u in kept}, {u: rows[u] for u in kept})


def _waited_for(
    inputs: list[tuple[SSAValue, AccessAttr]], order: dict[UnitOp, int]
) -> list[tuple[SSAValue, AccessAttr]]:
    """Of a unit's inputs, the one written last by a unit of the section (``order``), a
    fill of one value aside: the input it waits for (none: no such writer)."""
    last: tuple[int, SSAValue, AccessAttr] | None = None
    for value, access in inputs:
        buffer = value.owner
        if not isinstance(buffer, BufferOp) or not isinstance(buffer.source.owner, UnitOp):
            continue
        writer = buffer.source.owner
        if writer not in order or math.prod(writer.space_values) <= 1:
            continue
        if last is None or order[writer] > last[0]:
            last = (order[writer], value, access)
    return [] if last is None else [(last[1], last[2])]


@dataclass
class _Allocation:
    """The copies given to the units of one section, and the PCUs and PMUs they take."""

    section: SectionOp
    target: Target
    units: list[UnitOp]
    level: dict[UnitOp, int]
    base_pmus: dict[BufferOp, int]
    """The PMUs each buffer takes without parallel units (assign-pmus' count)."""
    writers: dict[UnitOp, list[tuple[UnitOp, bool]]]
    """Per unit, the units of the section whose results it reads, and whether it reads one in
    another order than it is written (``is_resident``: it waits for the whole)."""
    loads: dict[UnitOp, list[tuple[int, int]]]
    """Per unit, when the first and the last element of each buffer it reads from DRAM are
    there (cycles from the section's start)."""
    latency: int
    """The DRAM latency in cycles (the last store's, after the last unit)."""

    known: Frontiers = field(default_factory=lambda: Frontiers())
    """Each unit's ``frontier``, found when first needed."""
    outer: bool = True
    """Whether a unit beside others may split its ``outer_counter`` too."""
    one: dict[UnitOp, int] = field(default_factory=dict)
    """Each unit's cycles on one PCU (``copy_cycles``)."""
    _writers_at: list[list[tuple[int, bool, bool]]] = field(default_factory=list)
    """``writers`` by position in ``units``, each with whether it is in the unit's chain
    (``critical_path`` runs over the section for every copy it gives: at 12 blocks of GPT-2
    small, 1,207 times over 538 units)."""
    _cycles_at: list[int] = field(default_factory=list)
    """``cycles`` by position, at the levels ``critical_path`` last saw (``_levels_seen``)."""
    _levels_seen: list[int] = field(default_factory=list)
    _hops: dict[tuple[UnitOp, tuple[int, ...]], int] = field(default_factory=dict)
    """``hops`` by unit and grid."""
    short: set[UnitOp] = field(default_factory=set)
    """Units whose longer steps (``best_step``) did not fit: they take their next grid."""
    chains: RowChains = field(default_factory=lambda: RowChains({}, {}))
    """The section's ``row_chains``: a unit follows a writer of its chain split alike."""
    chosen: dict[UnitOp, tuple[int, int, tuple[int, ...]]] = field(default_factory=dict)
    """Grids given outside the units' frontiers (``line_up``), by unit: they override the
    unit's level."""
    _split_at: list[int] = field(default_factory=list)
    """``RowChains.split`` by position (-1: not chained), at the levels last seen."""
    follows: bool = False
    """Whether ``critical_path`` lets a unit follow a parallel writer of its chain cut alike
    (``line_up`` weighs its cuts so; the allocation's steps do not, see ``line_up``, unless
    the chains are cut first: ``cut``)."""
    cut: dict[UnitOp, int] = field(default_factory=dict)
    """Chained units cut first (``cut_frontier``), by unit: the runs of rows of their cut."""
    _cut_options: dict[UnitOp, list[tuple[int, int, tuple[int, ...]]]] = field(default_factory=dict)
    _cut_cycles: dict[tuple[UnitOp, tuple[int, ...]], int] = field(default_factory=dict)
    """``cut_cycles`` by unit and grid."""
    _steps: dict[tuple[UnitOp, int, bool], tuple[float, int]] = field(default_factory=dict)
    """``best_step`` by unit, level and whether it is ``short``."""

    def cut_grids(self, unit: UnitOp, runs: int) -> list[tuple[int, ...]]:
        """``cut_grids``, found once a unit structure, rows and runs (``Frontiers.cuts``)."""
        key = (self.known.structure(unit), self.chains.rows[unit], runs)
        found = self.known.cuts.get(key)
        if found is None:
            found = self.known.cuts[key] = cut_grids(self, unit, runs)
        return found

    def cut_cycles(self, unit: UnitOp, factors: tuple[int, ...]) -> int:
        """``copy_cycles`` of a copy of ``unit`` with ``factors``, found once."""
        key = (unit, factors)
        if key not in self._cut_cycles:
            block = rules.copy_block(unit.space_values, factors)
            self._cut_cycles[key] = self.known.cost(unit, self.target).cycles(block)
        return self._cut_cycles[key]

    def options(self, unit: UnitOp) -> list[tuple[int, int, tuple[int, ...]]]:
        if unit in self.cut:
            if unit not in self._cut_options:
                self._cut_options[unit] = cut_frontier(self, unit, self.cut[unit])
            return self._cut_options[unit]
        return self.known.of(unit, self.target, self.outer and len(self.units) > 1)

    def factors(self, unit: UnitOp) -> tuple[int, ...]:
        if unit in self.chosen:
            return self.chosen[unit][2]
        if self.level[unit] == 0:  # one copy, every frontier's first: none found for it
            return (1,) * len(unit.space_values)
        return self.options(unit)[self.level[unit]][2]

    def cycles(self, unit: UnitOp) -> int:
        """Cycles a copy of ``unit`` takes at its level: ``copy_cycles``, and for a parallel
        unit the hops of its multicast streams (``multicast_hops``)."""
        if unit in self.chosen:
            _, cycles, factors = self.chosen[unit]
            return cycles + (self.hops(unit, factors) if math.prod(factors) > 1 else 0)
        if self.level[unit] > 0:
            _, cycles, factors = self.options(unit)[self.level[unit]]
            return cycles + self.hops(unit, factors)
        if self.level[unit] == 0:
            if unit not in self.one:
                self.one[unit] = self.known.cost(unit, self.target).cycles(unit.space_values)
            return self.one[unit]
        return self.options(unit)[self.level[unit]][1]

    def hops(self, unit: UnitOp, factors: tuple[int, ...]) -> int:
        """``multicast_hops``, computed once a unit and grid (``best_step`` asks it of every
        grid it looks ahead to, at every step)."""
        key = (unit, factors)
        if key not in self._hops:
            self._hops[key] = multicast_hops(unit, factors)
        return self._hops[key]

    def copies(self, unit: UnitOp) -> int:
        if unit in self.chosen:
            return self.chosen[unit][0]
        return 1 if self.level[unit] == 0 else self.options(unit)[self.level[unit]][0]

    def parallel(self, unit: UnitOp) -> bool:
        return self.copies(unit) > 1

    def best_step(self, unit: UnitOp) -> tuple[float, int]:
        """(cycles saved a PCU added, level) of the best of ``unit``'s next ``LOOKAHEAD`` grids
        (only the next one for a unit in ``short``); ``(0, level)`` when it has none. A unit on
        the path adds its cycles to the path's, so the cycles a PCU saves rank the steps: two
        more copies of an elementwise unit before a few more of a matmul already on 50. Found
        once a unit, level and reach (the allocation asks it of every unit on the path at
        every step; a unit's grids and cycles are fixed until ``line_up``)."""
        key = (unit, self.level[unit], unit in self.short)
        found = self._steps.get(key)
        if found is None:
            found = self._steps[key] = self._best_step(unit)
        return found

    def _best_step(self, unit: UnitOp) -> tuple[float, int]:
        options, level = self.options(unit), self.level[unit]
        copies, cycles = self.copies(unit), self.cycles(unit)
        reach = 1 if unit in self.short else LOOKAHEAD
        best: tuple[float, int] = (0.0, level)
        for to in range(level + 1, min(len(options), level + 1 + reach)):
            more, fewer, factors = options[to]
            gain = (cycles - fewer - self.hops(unit, factors)) / (more - copies)
            if gain > best[0]:
                best = (gain, to)
        return best

    def pcus(self) -> int:
        return sum(self.copies(u) for u in self.units)

    def buffer_pmus(self, buffer: BufferOp) -> int:
        """What ``parallel_layout.held_pmus`` would give ``buffer`` with these factors."""
        streams = 0
        writer = buffer.source.owner
        if isinstance(writer, UnitOp) and writer in self.level and self.parallel(writer):
            streams = parallel_layout.out_streams(self.factors(writer), self.target)
        for use in buffer.result.uses:
            unit = use.operation
            if isinstance(unit, UnitOp) and unit in self.level and self.parallel(unit):
                strides = unit.ins.data[use.index].stride_values
                streams = max(streams, parallel_layout.port_streams(self.factors(unit), strides))
        if streams == 0:
            return self.base_pmus[buffer]
        elements = math.prod(shape_of(buffer.result.type))
        return parallel_layout.buffer_pmus(buffer_bytes(buffer), elements, streams, self.target)

    def unit_pmus(self, unit: UnitOp) -> dict[BufferOp, int]:
        """The PMUs of the buffers ``unit`` reads and writes."""
        bufs = [v.owner for v in unit.inputs] + [u.operation for u in unit.result.uses]
        return {b: self.buffer_pmus(b) for b in bufs if isinstance(b, BufferOp)}

    def _split(self, unit: UnitOp) -> int:
        """1 for one copy; for a chained unit ``RowChains.split`` (its runs of rows, 0: not
        equal runs); else 0 when it is parallel (it waits for whole buffers)."""
        if not self.parallel(unit):
            return 1
        if unit in self.chains.rows:
            return self.chains.split(unit, self.factors(unit))
        return 0

    def critical_path(self) -> tuple[int, list[UnitOp]]:
        """When the section's last unit ends, in cycles from its start, and the units whose
        own time sets that (those worth splitting), last first, under the rules of the
        performance model simplified (``runtime.machine.perf``): a unit takes its cycles
        (``copy_cycles``) plus its pipeline's stages; it streams from a writer whose result it
        reads in the order it is written (it starts when the writer starts and ends no sooner
        than the writer does), and waits for the writer to end when it reads it in another
        order or when either of them is parallel; a buffer from DRAM has its first element a
        DRAM latency after the start, its last once its bytes have followed (what a parallel
        unit waits for)."""
        if not self.units:
            return 0, []
        if not self._writers_at:  # the writers by position: no op hashed in the loop below
            position = {u: i for i, u in enumerate(self.units)}
            chain = self.chains.chain
            self._writers_at = [
                [(position[w], waits, chain.get(w, -1) == chain.get(u, -2))
                 for w, waits in self.writers[u]]
                for u in self.units
            ]  # fmt: skip
        level = [self.level[u] if u not in self.chosen else -1 - i
                 for i, u in enumerate(self.units)]  # fmt: skip
        if len(self._cycles_at) != len(level):
            self._cycles_at = [self.cycles(u) for u in self.units]
            self._split_at = [self._split(u) for u in self.units]
        else:  # a unit's cycles change with its level only: one or two units a call
            for i, (now, seen) in enumerate(zip(level, self._levels_seen, strict=True)):
                if now != seen or now < 0:
                    self._cycles_at[i] = self.cycles(self.units[i])
                    self._split_at[i] = self._split(self.units[i])
        self._levels_seen = level
        stages = self.target.pcu_stages
        start: list[int] = []
        end: list[int] = []
        before: list[tuple[bool, int]] = []  # own time, and the unit before on the path (-1)
        split = self._split_at
        for i, u in enumerate(self.units):
            at, done = 0, 0
            at_from, done_from = -1, -1
            for first_in, last_in in self.loads[u]:
                at = max(at, last_in if level[i] != 0 else first_in)
                done = max(done, last_in)
            for w, waits, chained in self._writers_at[i]:
                alike = self.follows and chained and split[w] == split[i] > 0
                whole = waits or ((level[w] != 0 or level[i] != 0) and not alike)
                t = end[w] if whole else start[w]
                if t > at:
                    at, at_from = t, w
                if end[w] > done:
                    done, done_from = end[w], w
            start.append(at)
            own = at + self._cycles_at[i] + stages
            if own >= done:
                end.append(own)
                before.append((True, at_from))
            else:
                end.append(done)
                before.append((False, done_from))
        last = max(range(len(end)), key=end.__getitem__)
        length = end[last] + self.latency
        path: list[UnitOp] = []
        while last >= 0:
            own, previous = before[last]
            if own:
                path.append(self.units[last])
            last = previous
        return length, path


def cut_grids(alloc: _Allocation, unit: UnitOp, runs: int) -> list[tuple[int, ...]]:
    """The factors of ``unit`` cutting its rows into ``runs`` equal runs in order
    (``contiguous_split``), its lanes counter into more and more blocks (``fewest_copies``),
    within the target's PCUs; none when its rows do not take that many runs."""
    counters, extents = alloc.chains.rows[unit]
    along = contiguous_split(extents, runs)
    if along is None:
        return []
    space = unit.space_values
    _, at_l = split_counters(unit)
    lanes = [1]
    if at_l >= 0 and at_l not in counters and at_l not in unit.counter_stages():
        lanes = fewest_copies(space[at_l], parallel_layout.row_slots(alloc.target))
    grids: list[tuple[int, ...]] = []
    for q in lanes:
        factors = [1] * len(space)
        for c, f in zip(counters, along, strict=True):
            factors[c] = f
        if q > 1:
            factors[at_l] = q
        if math.prod(factors) > alloc.target.num_pcus:
            break
        grids.append(tuple(factors))
    return grids


def aligned_grid(
    alloc: _Allocation, unit: UnitOp, runs: int, most: int | None = None
) -> tuple[int, int, tuple[int, ...]] | None:
    """``(copies, cycles a copy, factors)`` of ``unit`` cutting its rows into ``runs`` equal
    runs in order and its lanes counter into the fewest blocks (``cut_grids``) whose copies
    take at most ``most`` cycles (the most the lanes allow, if none does; None: as many as the
    lanes allow)."""
    grids = alloc.cut_grids(unit, runs)
    if most is None:  # the last: the most lanes
        grids = grids[-1:]
    for factors in grids:
        copies, cycles = math.prod(factors), alloc.cut_cycles(unit, factors)
        if most is None or cycles + (alloc.hops(unit, factors) if copies > 1 else 0) <= most:
            return copies, cycles, factors
    if not grids:
        return None
    return math.prod(grids[-1]), alloc.cut_cycles(unit, grids[-1]), grids[-1]


def cut_frontier(
    alloc: _Allocation, unit: UnitOp, runs: int
) -> list[tuple[int, int, tuple[int, ...]]]:
    """``frontier`` of a chained unit whose rows are cut first into ``runs`` equal runs in
    order: one copy, then the grids of ``cut_grids`` whose blocks are all non-empty, each with
    more copies and fewer cycles a copy than the one before."""
    space = unit.space_values
    one = (1,) * len(space)
    options: list[tuple[int, int, tuple[int, ...]]] = [(1, alloc.cut_cycles(unit, one), one)]
    for factors in alloc.cut_grids(unit, runs):
        copies = math.prod(factors)
        if not _blocks_filled(space, factors):
            continue
        cycles = alloc.cut_cycles(unit, factors)
        if copies > options[-1][0] and cycles < options[-1][1]:
            options.append((copies, cycles, factors))
    return options


def line_up(alloc: _Allocation, budget: int, pmus: dict[BufferOp, int]) -> None:
    """Give each chain of ``alloc.chains`` one cut of its rows (``aligned_grid``), so that its
    units follow each other a row behind, where that shortens the section's critical path
    within the PCUs and PMUs: for each chain, heaviest first, every cut into runs that all its
    units' rows take evenly, up to twice the most runs any of them has now, each unit with
    the fewest copies along its lanes that keep up with the chain's slowest unit."""
    chains: dict[int, list[UnitOp]] = {}
    for u in alloc.units:
        if u in alloc.chains.chain:
            chains.setdefault(alloc.chains.chain[u], []).append(u)
    alloc.follows = True
    best = alloc.critical_path()[0]
    pcus = alloc.pcus()  # kept as the chains' cuts are taken, not summed again each try
    for members in sorted(chains.values(), key=lambda m: -sum(alloc.cycles(u) for u in m)):
        extents = [alloc.chains.rows[u][1] for u in members]
        most = max(math.prod(alloc.factors(u)[c] for c in alloc.chains.rows[u][0]) for u in members)
        top = min(math.prod(extents[0]), alloc.target.num_pcus, 2 * most)
        for runs in range(1, top + 1):
            if any(contiguous_split(e, runs) is None for e in extents):
                continue
            fastest = [aligned_grid(alloc, u, runs) for u in members]
            if any(g is None for g in fastest):
                continue
            slowest = max(  # the chain's pace: its slowest unit at the most lanes
                g[1] + (alloc.hops(u, g[2]) if g[0] > 1 else 0)
                for u, g in zip(members, fastest, strict=True)
                if g is not None
            )
            grids = [aligned_grid(alloc, u, runs, slowest) for u in members]
            saved = {u: alloc.chosen.get(u) for u in members}
            theirs = sum(alloc.copies(u) for u in members)
            for u, grid in zip(members, grids, strict=True):
                assert grid is not None
                alloc.chosen[u] = grid
            changed: dict[BufferOp, int] = {}
            for u in members:
                changed.update(alloc.unit_pmus(u))
            total = sum(pmus.values()) + sum(n - pmus[b] for b, n in changed.items())
            after = pcus - theirs + sum(alloc.copies(u) for u in members)
            fits = after <= max(budget, pcus) and total <= sum(pmus.values())
            length = alloc.critical_path()[0] if fits else best
            if length < best:
                best, pcus = length, after
                pmus.update(changed)
                continue
            for u, grid in saved.items():
                if grid is None:
                    alloc.chosen.pop(u, None)
                else:
                    alloc.chosen[u] = grid
    alloc.follows = False


def loaded_from(buffer: BufferOp, section: SectionOp) -> str | None:
    """The section argument (symbol) ``buffer`` is loaded from, None for one a PCU fills."""
    source = buffer.source
    if isinstance(source, BlockArgument) and source.block is section.body.block:
        return section.arg_names.data[source.index].data
    return None


def dram_floor(section: SectionOp, target: Target, kept: frozenset[str] = frozenset()) -> int:
    """Cycles the section's DRAM traffic takes at least: its loads (each buffer once) and its
    stores at the target's DRAM bandwidth (0 without one), and the DRAM latency; the symbols
    in ``kept`` (on chip, co-place-sections) move no DRAM bytes."""
    per_cycle = dram_bytes_per_cycle(target)
    if not math.isfinite(per_cycle):
        return 0
    ops = list(section.body.block.ops)
    loaded = sum(
        buffer_bytes(b)
        for b in ops
        if isinstance(b, BufferOp) and b.from_dram and loaded_from(b, section) not in kept
    )
    stored = {
        v.owner
        for v, name in zip(section.yield_op.values, section.result_names, strict=True)
        if name.data not in kept
    }
    total = loaded + sum(buffer_bytes(b) for b in stored if isinstance(b, BufferOp))
    latency = perf.ns_to_cycles(target.dram_latency_ns, target.clock_ghz)
    return latency + math.ceil(total / per_cycle)


class Frontiers(dict[UnitOp, list[tuple[int, int, tuple[int, ...]]]]):
    """Each unit's ``frontier``, kept by a caller that allocates a section more than once (one
    compile's: ``ParallelizeUnits.apply`` makes it), found once a ``unit_structure``: units
    alike have one frontier (GPT-2 small's twelve blocks: about 2.5 s of a 20 s compile, once
    a block). The ``CopyCost`` and the ``cut_grids`` of units alike are kept here too: the
    allocations of one section (a cut first into each of ``CUT_RUNS``, the retries of
    ``balance_section``) ask the same of them (GPT-2 small's forward on sn40l: its four
    allocations 5.1 s -> 3.7 s of CPU). So are the units' unplaced PCUs (``pcus``)."""

    def __init__(self, pcus: UnplacedPcus | None = None) -> None:
        super().__init__()
        self.pcus: UnplacedPcus = {} if pcus is None else pcus
        """The PCUs ``unplaced_section`` made, by unit, factors and interleaving (its
        ``made``): the pass times sections again and again changing nothing else of them
        (GPT b8 on sn10: 79,656 PCUs made, about 1,700 distinct)."""
        self.alike: dict[tuple[str, bool], list[tuple[int, int, tuple[int, ...]]]] = {}
        self.structures: dict[UnitOp, str] = {}
        self.costs: dict[str, CopyCost] = {}
        """A ``CopyCost`` a structure: the cycles of a copy of units alike, found once."""
        self.cuts: dict[
            tuple[str, tuple[tuple[int, ...], tuple[int, ...]], int], list[tuple[int, ...]]
        ] = {}
        """``cut_grids`` by structure, rows (``RowChains.rows``) and runs."""

    def structure(self, unit: UnitOp) -> str:
        """``unit_structure``, found once a unit."""
        found = self.structures.get(unit)
        if found is None:
            found = self.structures[unit] = unit_structure(unit)
        return found

    def cost(self, unit: UnitOp, target: Target) -> CopyCost:
        """The ``CopyCost`` of ``unit``'s structure (one target a compile)."""
        key = self.structure(unit)
        found = self.costs.get(key)
        if found is None:
            found = self.costs[key] = CopyCost(unit, target)
        return found

    def of(
        self, unit: UnitOp, target: Target, outer: bool
    ) -> list[tuple[int, int, tuple[int, ...]]]:
        """``frontier(unit, target, outer)``, found once a unit and once a structure."""
        found = self.get(unit)
        if found is None:
            key = (self.structure(unit), outer)
            if key not in self.alike:
                self.alike[key] = frontier(unit, target, outer, self.cost(unit, target))
            found = self[unit] = list(self.alike[key])
        return found


def allocate(
    section: SectionOp,
    target: Target,
    pcus: int | None = None,
    known: Frontiers | None = None,
    share: Share | None = None,
    outer: bool = True,
) -> dict[UnitOp, tuple[int, ...]]:
    """The factors of the units of ``section`` that get more than one copy (``allocation``)."""
    return allocation(section, target, pcus, known, share, outer)[0]


def allocation(
    section: SectionOp,
    target: Target,
    pcus: int | None = None,
    known: Frontiers | None = None,
    share: Share | None = None,
    outer: bool = True,
) -> tuple[dict[UnitOp, tuple[int, ...]], int | None]:
    """The factors of the units of ``section`` that get more than one copy, and the section's
    estimated cycles with them (see ``allocation_of``): of the allocation with its chains cut
    after the steps (``line_up``) and those with them cut first into ``CUT_RUNS`` runs, the
    one whose units end soonest by the performance model (``modelled_cycles``: rules 1 and
    2), a cut first only where it saves more than ``CUT_GAIN`` leaves, and of the cuts first
    within ``CUT_GAIN`` of the fastest the one whose state takes the fewest PMUs
    (``state_pmus``)."""
    units = [op for op in section.body.block.ops if isinstance(op, UnitOp)]
    kept = share.kept if share is not None else frozenset()
    cut_runs = partial(cut_allocations, section, target, pcus, known, share, outer)
    forked = CUT_RUNS[1:] if len(units) >= FORK_UNITS else ()
    with ExitStack() as beside:
        sent = partial(_sent_cuts, units, partial(cut_runs, forked))
        later = beside.enter_context(Beside(sent)) if forked else None
        found = allocation_of(section, target, pcus, known, share, outer)
        if found[1] is None or not row_chains(units, segments=True).chain:
            return found
        stock = found[0]
        made = None if known is None else known.pcus
        best = modelled_cycles(section, target, stock, kept, made) * CUT_GAIN
        timed = cut_runs([runs for runs in CUT_RUNS if runs not in forked], stock)
        if later is not None:
            timed += [
                (c, ({units[i]: f for i, f in cut.items()}, e)) for c, cut, e in later.result()
            ]
    cuts: list[tuple[int, tuple[dict[UnitOp, tuple[int, ...]], int | None]]] = []
    for cycles, cut in timed:
        if cut[1] is None or cut[0] == stock:
            continue
        if cycles < best:
            cuts.append((cycles, cut))
    if not cuts:
        return found
    fastest = min(cycles for cycles, _ in cuts)
    close = [(cycles, cut) for cycles, cut in cuts if cycles * CUT_GAIN <= fastest]
    if len(close) == 1:
        return close[0][1]
    return min(close, key=lambda c: (state_pmus(section, target, c[1][0]), c[0]))[1]


CUT_RUNS = (4, 8, 16)
"""The runs of rows ``allocation`` tries cutting every chain into before the steps."""

FORK_UNITS = 200
"""Sections of at least this many units have their allocations cut first into the second
and later of ``CUT_RUNS`` made in a child process (``compiler.forked``) while this one makes
the stock allocation and the first cut: GPT-2 small's forward on sn40l, 453 units, about a
second each. The examples' sections (at most about 150 units) stay in the process."""


def cut_allocations(
    section: SectionOp,
    target: Target,
    pcus: int | None,
    known: Frontiers | None,
    share: Share | None,
    outer: bool,
    runs: Sequence[int],
    stock: dict[UnitOp, tuple[int, ...]] | None = None,
) -> list[tuple[int, tuple[dict[UnitOp, tuple[int, ...]], int | None]]]:
    """``allocation_of`` ``section`` with its chains cut first into each of ``runs``, each
    with its ``modelled_cycles`` (0 where not modelled: no allocation, or the ``stock`` one),
    in the order of ``runs``."""
    kept = share.kept if share is not None else frozenset()
    timed: list[tuple[int, tuple[dict[UnitOp, tuple[int, ...]], int | None]]] = []
    for r in runs:
        cut = allocation_of(section, target, pcus, known, share, outer, r)
        same = cut[1] is None or cut[0] == stock
        made = None if known is None else known.pcus
        cycles = 0 if same else modelled_cycles(section, target, cut[0], kept, made)
        timed.append((cycles, cut))
    return timed


def _sent_cuts(
    units: Sequence[UnitOp],
    work: Callable[[], list[tuple[int, tuple[dict[UnitOp, tuple[int, ...]], int | None]]]],
) -> list[tuple[int, dict[int, tuple[int, ...]], int | None]]:
    """``cut_allocations``' answer as a child sends it: each unit by its position."""
    position = {u: i for i, u in enumerate(units)}
    return [(c, {position[u]: f for u, f in cut.items()}, e) for c, (cut, e) in work()]


CUT_GAIN = 0.95
"""A cut first is taken when it ends the section's units in at most this share of the
cycles of the allocation with its chains cut after the steps (``modelled_cycles`` guesses
the hops before placement: within 5%, MLP b64's backward on sn10 modelled 460 cycles cut
first and 479 not, placed 476 and 470); of the cuts first within it of the fastest, which
the model before placement cannot tell apart, the one whose state takes the fewest PMUs
(``state_pmus``)."""


def state_pmus(section: SectionOp, target: Target, factors: dict[UnitOp, tuple[int, ...]]) -> int:
    """The PMUs that ``section``'s buffers loaded from the step's state (its parameters,
    buffers and optimizer state) take with ``factors`` (assign-pmus' count: as many as the
    streams its readers' copies take). pin-resident-symbols keeps such a symbol on chip in a
    home as wide as its widest buffer, taking those PMUs from every section that reads it: of
    two allocations alike in time, the one reading the state from fewer PMUs leaves more
    symbols room to stay (GPT b8 on sn10: its forward cut in 4 runs or 8, 12,952 and 12,976
    cycles before placement; in 4 its weights in 9 to 12 PMUs each for the streams of
    matmuls split 9 and 12 ways along their columns, and five of them no longer stay on chip:
    the optimizer bound by DRAM again, the step 25,356 cycles instead of 22,603 in 8 runs)."""
    roles = {
        name.data: role.data.value
        for name, role in zip(section.arg_names, section.arg_roles, strict=True)
    }
    units = [op for op in section.body.block.ops if isinstance(op, UnitOp)]
    had = {u: tuple(u.parallel_values) for u in units if u.parallel is not None}
    set_factors(units, factors)
    try:
        with pmus_counted(section, target):
            return sum(
                b.num_pmus
                for b in section.body.block.ops
                if isinstance(b, BufferOp)
                and b.from_dram
                and roles.get(loaded_from(b, section) or "") in STATE_ROLES
            )
    finally:
        set_factors(units, had)


@dataclass(frozen=True)
class Timing:
    """An allocation of a section timed by the performance model before placement
    (``section_timing``)."""

    cycles: int
    """The later of when its units end (rule 1) and its busiest PMU's banks (rule 2)."""
    ends: dict[UnitOp, int]
    """When each unit ends (rule 1)."""
    pmus: int
    """The PMUs its buffers take (assign-pmus' count)."""
    crowded: tuple[UnitOp, ...] = ()
    """When rule 2 sets ``cycles``: the units reading the busiest buffer."""
    path: tuple[UnitOp, ...] = ()
    """The units the last one to end waited for, each for the writer of its input that ended
    last, those that end the most cycles after that writer first."""
    chain: tuple[UnitOp, ...] = ()
    """The same units in the order they wait for each other, the last one to end last."""


def unplaced_model(
    section: SectionOp,
    target: Target,
    factors: dict[UnitOp, tuple[int, ...]],
    kept: frozenset[str],
    made: UnplacedPcus | None = None,
) -> tuple[schema.Section, list[perf.UnitModel], perf.OnChip, dict[int, int]]:
    """What the performance model times ``section`` (its units' parallel factors as the IR
    has them, ``factors``) on before placement: its PEF section as assign-pmus counts its
    PMUs, each PCU's model (a parallel unit's fill with ``multicast_hops``' guess), the
    symbols in ``kept`` on chip (there from the start) and each PMU's off-chip bytes.
    ``made``: PCUs made before (``Frontiers.pcus``)."""
    units = [op for op in section.body.block.ops if isinstance(op, UnitOp)]
    with pmus_counted(section, target):
        pef = unplaced_section(section, target, made)
    models = [
        perf.unit_model(p, pef, target, multicast_hops(u, factors[u]) if u in factors else 0)
        for p, u in zip(pef.pcus, units, strict=True)
    ]
    symbols = [*pef.inputs, *(o.symbol for o in pef.outputs)]
    names = [n.data for n in (*section.arg_names, *section.result_names)]
    on_chip = perf.OnChip(
        frozenset(i for i, name in zip(symbols, names, strict=True) if name in kept)
    )
    return pef, models, on_chip, perf.pmu_loads(pef, target, on_chip)


def section_timing(
    section: SectionOp,
    target: Target,
    factors: dict[UnitOp, tuple[int, ...]],
    kept: frozenset[str] = frozenset(),
    made: UnplacedPcus | None = None,
) -> Timing:
    """The units of ``section`` with ``factors`` timed by the performance model's rules 1 and
    2 (``perf.unit_times``, ``perf.compute_cycles``, ``perf.port_busy``) on the section as
    assign-pmus counts its PMUs, before placement (a parallel unit's fill with
    ``multicast_hops``' guess, one multicast stream a block of an operand its copies read; the
    symbols in ``kept`` on chip, there from the start): a comparison of allocations."""
    units = [op for op in section.body.block.ops if isinstance(op, UnitOp)]
    had = {u: tuple(u.parallel_values) for u in units if u.parallel is not None}
    set_factors(units, factors)
    try:
        pef, models, on_chip, loads = unplaced_model(section, target, factors, kept, made)
    finally:
        set_factors(units, had)
    times = perf.unit_times(pef, models, target, loads, on_chip)
    compute = perf.compute_cycles(pef, times, target, loads, on_chip)
    streams: dict[tuple[int, int], int] = {}
    for i, (pcu, unit) in enumerate(zip(pef.pcus, units, strict=True)):
        for port in pcu.inputs if unit in factors else ():
            n = parallel_layout.port_streams(factors[unit], port.access.strides)
            streams[(port.pmu, i)] = streams.get((port.pmu, i), 0) + n
    busy = perf.port_busy(models, streams)
    pmu = perf.pmu_bound(pef, busy)
    crowded: tuple[UnitOp, ...] = ()
    if pmu > compute:
        busiest = max(busy, key=lambda i: -(-busy[i] // max(1, pef.pmus[i].pmus)))
        crowded = tuple(
            u
            for u, pcu in zip(units, pef.pcus, strict=True)
            if any(port.pmu == busiest for port in pcu.inputs)
        )
    ends = {u: t.end for u, t in zip(units, times, strict=True)}
    pmus = sum(max(1, b.pmus) for b in pef.pmus)
    path, chain = perf.critical_path(pef, units, times)
    return Timing(max(compute, pmu), ends, pmus, crowded, path, chain)


def in_order_grid(unit: UnitOp, factors: tuple[int, ...]) -> tuple[int, ...]:
    """The grid of as many copies as ``factors`` whose splits sit on the innermost counters
    they can: the copies off the lanes counter (the product of their factors) put on the
    counters that are neither the lanes counter nor reduced, innermost first, each taking the
    largest divisor of what is left that fills its blocks; ``factors`` when that leaves some
    or is not a grid the unit may run. ``[8, 1, 1]`` over ``[8, 32, 48]`` (a sequence a copy)
    becomes ``[1, 8, 1]``: interleaved, the copies take a sequence's tokens in turn and
    complete the sequences in order, the first an eighth of the way, not all at the end."""
    space = unit.space_values
    out = unit.out.stride_values
    lanes = rules.lanes_counter(space, out)
    reduced = set(rules.reduced_counters(space, out))
    outer = [c for c, e in enumerate(space) if c != lanes and c not in reduced and e > 1]
    left = math.prod(factors[c] for c in outer)
    grid = list(factors)
    for c in reversed(outer):
        take = max(
            d for d in range(1, left + 1) if left % d == 0 and _blocks_filled([space[c]], [d])
        )
        grid[c], left = take, left // take
    if left != 1 or unit.parallel_problem(grid) is not None:
        return factors
    return tuple(grid)


def ordered_grid(unit: UnitOp, factors: tuple[int, ...], target: Target) -> tuple[int, ...]:
    """``in_order_grid``, unless a copy of it takes longer than one of ``factors``: P @ V
    over [8, 32, 12, 32] (heads, rows, columns, terms) in 8 copies a head each unrolls its 32
    rows 6 at a time, 192 cycles; over the rows, 4 rows a copy, it would unroll 4, 256
    cycles."""
    moved = in_order_grid(unit, factors)
    space = unit.space_values
    slower = copy_cycles(unit, rules.copy_block(space, moved), target) > copy_cycles(
        unit, rules.copy_block(space, factors), target
    )
    return factors if slower else moved


def set_interleaved(units: Sequence[UnitOp], interleaved: set[UnitOp]) -> None:
    """Interleave the copies of the units in ``interleaved``, and of no other of ``units``."""
    for unit in units:
        if unit in interleaved:
            unit.properties["interleaved"] = UnitAttr()
        else:
            unit.properties.pop("interleaved", None)


def in_order(
    section: SectionOp,
    target: Target,
    factors: dict[UnitOp, tuple[int, ...]],
    kept: frozenset[str] = frozenset(),
    made: UnplacedPcus | None = None,
) -> dict[UnitOp, tuple[int, ...]]:
    """Give every parallel unit of ``section`` its ``in_order_grid``, interleaved where it
    may be (``rules.interleave_problem``), all at once, if the section so placed ends sooner
    (``placed_cycles``); return the factors it keeps. One unit at a time gains little: a
    sequence's tokens are there early only if every unit before takes them in order (the
    attention's heads behind q, k, v, behind the layer norm). GPT b8's forward on sn10:
    12,836 to 11,718 cycles (with ``interleave`` after)."""
    units = [op for op in section.body.block.ops if isinstance(op, UnitOp)]
    moved = {u: ordered_grid(u, f, target) for u, f in factors.items()}
    woven = {
        u
        for u, f in moved.items()
        if rules.interleave_problem(u.space_values, u.out.stride_values, f) is None
    }
    had = {u for u in units if u.interleaved is not None}
    if moved == factors and woven == had:
        return factors
    as_is = partial(placed_ends, section, target, factors, kept, made)  # in a child if large
    with Beside(as_is, fork=len(units) >= FORK_UNITS) as before:
        placement = section.attributes[PLACEMENT_ATTR]
        set_factors(units, moved)
        set_interleaved(units, woven)
        after = placed_ends(section, target, moved, kept, made) if routes(section, target) else None
        placed = section.attributes[PLACEMENT_ATTR]
        set_factors(units, factors)  # the section as it was, for before.result()
        set_interleaved(units, had)
        section.attributes[PLACEMENT_ATTR] = placement
        if after is not None and after < before.result():
            set_factors(units, moved)
            set_interleaved(units, woven)
            section.attributes[PLACEMENT_ATTR] = placed
            return moved
    return factors


def interleave(
    section: SectionOp,
    target: Target,
    kept: frozenset[str] = frozenset(),
    made: UnplacedPcus | None = None,
) -> None:
    """Interleave the copies of the parallel units of ``section`` (``pcu.unit``'s
    ``interleaved``: copy ``k`` takes the points ``k, k + p, ...`` of a split counter, not a
    block), or no longer interleave them, where the performance model says the section ends
    sooner so, one unit at a time in the section's order, each kept if it helps. Copies that
    each write a block of rows finish every block at the unit's end; interleaved, they write
    the rows in order, as one PCU would, so a reader that needs whole blocks of them (an
    attention's sequence, read by its heads) starts before the writer ends. Only rule 1's
    times change: the copies' work, streams and placement are the same, so the section keeps
    its placement."""
    units = [op for op in section.body.block.ops if isinstance(op, UnitOp)]
    factors = {u: u.parallel_values for u in units if u.parallel is not None}
    candidates = [
        i
        for i, u in enumerate(units)
        if u in factors
        and rules.interleave_problem(u.space_values, u.out.stride_values, factors[u]) is None
    ]
    if not candidates:
        return
    pef, models, on_chip, loads = unplaced_model(section, target, factors, kept, made)
    candidates = [i for i in candidates if perf.splits_rows(pef.pcus[i], pef)]

    def cycles(pcus: list[schema.Pcu]) -> int:
        timed = msgspec.structs.replace(pef, pcus=pcus)
        times = perf.unit_times(timed, models, target, loads, on_chip)
        return perf.compute_cycles(timed, times, target, loads, on_chip)

    pcus = list(pef.pcus)
    best = cycles(pcus)
    for i in candidates:
        woven = not pcus[i].interleaved
        trial = [*pcus[:i], msgspec.structs.replace(pcus[i], interleaved=woven), *pcus[i + 1 :]]
        sooner = cycles(trial)
        if sooner < best:
            best, pcus = sooner, trial
            set_interleaved([units[i]], {units[i]} if woven else set())


def modelled_cycles(
    section: SectionOp,
    target: Target,
    factors: dict[UnitOp, tuple[int, ...]],
    kept: frozenset[str] = frozenset(),
    made: UnplacedPcus | None = None,
) -> int:
    """``section_timing``'s cycles."""
    return section_timing(section, target, factors, kept, made).cycles


def base_pmus(
    section: SectionOp, target: Target, units: Sequence[UnitOp]
) -> dict[BufferOp, int] | None:
    """The PMUs each buffer of ``section`` takes with its ``units`` on one PCU each (the
    fewest: copies only add streams), or None when the section is not balanced: a unit
    parallel already (its own section), or the section too large for the target as it is
    (partition-sections cuts it)."""
    if any(u.parallel is not None for u in units):
        return None
    readers: dict[BufferOp, list[tuple[UnitOp, AccessAttr]]] = {}
    for u in units:
        for value, access in zip(u.inputs, u.ins.data, strict=True):
            if isinstance(value.owner, BufferOp):
                readers.setdefault(value.owner, []).append((u, access))
    base: dict[BufferOp, int] = {}
    for op in section.body.block.ops:
        if isinstance(op, BufferOp):
            resident = is_resident(op, readers.get(op, []))
            base[op] = resident_pmus(op, target) if resident else 1
    if len(units) > target.num_pcus or sum(base.values()) > target.num_pmus:
        return None
    return base


def allocation_of(
    section: SectionOp,
    target: Target,
    pcus: int | None = None,
    known: Frontiers | None = None,
    share: Share | None = None,
    outer: bool = True,
    runs: int = 0,
) -> tuple[dict[UnitOp, tuple[int, ...]], int | None]:
    """The factors of the units of ``section`` that get more than one copy (see the module
    docstring): of the units on the section's critical path, the one whose step
    (``best_step``) saves the most cycles a PCU takes it, until that path is no longer than
    the section's DRAM floor, no unit on it can be split further, or the target's PCUs (at
    most ``pcus`` of them) and PMUs are taken; ``outer``: units may split their
    ``outer_counter`` (``known`` holds the frontiers of one ``outer``). A section that does not
    fit the target as it is (partition-sections will cut it) gets nothing. ``share``: the
    section's share of a fabric it will hold with the program's other sections (rule 3), and
    the symbols they will keep on chip. ``runs``: every chain (``row_chains`` in segments)
    whose units' rows all take that many equal runs is cut so first, its units stepping only
    through that cut (``cut_frontier``), following each other a row behind. Also the
    section's estimated cycles with those factors: the longer of its critical path and its
    DRAM floor (None for a section that is not balanced: a unit parallel already, or too
    large)."""
    budget = target.num_pcus if pcus is None else min(pcus, target.num_pcus)
    pmu_budget = target.num_pmus
    kept: frozenset[str] = frozenset()
    if share is not None:
        budget, pmu_budget, kept = min(budget, share.pcus), share.pmus, share.kept
    units = [op for op in section.body.block.ops if isinstance(op, UnitOp)]
    if not units:
        return {}, 0
    base = base_pmus(section, target, units)
    if base is None:
        return {}, None
    latency = perf.ns_to_cycles(target.dram_latency_ns, target.clock_ghz)
    per_cycle = dram_bytes_per_cycle(target)
    writers: dict[UnitOp, list[tuple[UnitOp, bool]]] = {}
    loads: dict[UnitOp, list[tuple[int, int]]] = {}
    stored = {
        name.data: value.owner
        for name, value in zip(section.result_names, section.yield_op.values, strict=True)
    }
    for u in units:
        writers[u], loads[u] = [], []
        for value, access in zip(u.inputs, u.ins.data, strict=True):
            buf = value.owner
            if isinstance(buf, BufferOp) and isinstance(buf.source.owner, UnitOp):
                writers[u].append((buf.source.owner, is_resident(buf, [(u, access)])))
            elif isinstance(buf, BufferOp) and buf.from_dram and loaded_from(buf, section) in kept:
                # on chip: on its home's slots (co-place-sections' shared PMUs) unless this
                # section stores the symbol too (the home may be here: a hand-off copies it,
                # unless the home's writer updates it in place)
                home = stored.get(loaded_from(buf, section) or "")
                copied = isinstance(home, BufferOp) and not updates_in_place(home, buf)
                copy = -(-buffer_bytes(buf) // stream_bytes(target))
                loads[u].append((0, copy if copied else 0))
            elif isinstance(buf, BufferOp) and buf.from_dram:
                moved = buffer_bytes(buf) / per_cycle if math.isfinite(per_cycle) else 0
                loads[u].append((latency, latency + math.ceil(moved)))
    alloc = _Allocation(
        section, target, units, dict.fromkeys(units, 0), base, writers, loads, latency,
        Frontiers() if known is None else known, outer,
        chains=row_chains(units, segments=runs > 0),
    )  # fmt: skip
    if runs:
        members: dict[int, list[UnitOp]] = {}
        for u, c in alloc.chains.chain.items():
            members.setdefault(c, []).append(u)
        for chain in members.values():
            if all(contiguous_split(alloc.chains.rows[u][1], runs) for u in chain):
                alloc.cut.update(dict.fromkeys(chain, runs))
        alloc.follows = True
    pmus = dict(base)
    pcus = alloc.pcus()  # kept as the units' levels change, not summed again each step
    floor = dram_floor(section, target, kept)
    frozen: set[UnitOp] = set()
    while True:
        length, path = alloc.critical_path()
        if length <= floor:
            break
        steps = [
            (gain, u, to)
            for u in path
            if u not in frozen and alloc.cycles(u) > MIN_COPY_CYCLES
            for gain, to in [alloc.best_step(u)]
            if to > alloc.level[u]
        ]
        if not steps:
            break
        _, pick, to = max(steps, key=lambda s: s[0])
        before, level = alloc.copies(pick), alloc.level[pick]
        alloc.level[pick] = to
        changed = alloc.unit_pmus(pick)
        total = sum(pmus.values()) + sum(n - pmus[b] for b, n in changed.items())
        used = pcus - before + alloc.copies(pick)
        if used > budget or total > pmu_budget:
            alloc.level[pick] = level
            if to == level + 1:
                frozen.add(pick)
            else:  # the step too far for what is left: the next grid only, from now on
                alloc.short.add(pick)
            continue
        pcus = used
        pmus.update(changed)
    if alloc.chains.chain:
        line_up(alloc, budget, pmus)
    factors = {u: alloc.factors(u) for u in units if alloc.parallel(u)}
    return factors, max(alloc.critical_path()[0], floor)


def routes(section: SectionOp, target: Target) -> bool:
    """Whether ``section``, with the factors its units have, places and routes (seed 0); the
    placement found is recorded on it (``ir_helpers.record_placement``), which
    partition-sections takes if the section is still the same."""
    with pmus_counted(section, target):
        try:
            unit = parallel_layout.lone_parallel_unit(section)
            if unit is not None:
                spec, _ = parallel_layout.section_spec(section, unit)
                parallel_layout.layout(spec, target)
                return True
            graph = section_graph(section, target).graph
            if placement.fanout_excess(graph, target) is not None:
                return False
            record_placement(section, placement.place_and_route(graph, target))
            return True
        except PlacementError:
            return False


@contextmanager
def pmus_counted(section: SectionOp, target: Target) -> Iterator[None]:
    """``section``'s buffers with their PMUs counted (``assign_pmus``) for the time of the
    ``with`` block, then without (balancing counts them again as the factors change)."""
    assign_pmus(section, target)
    try:
        yield
    finally:
        for op in section.body.block.ops:
            if isinstance(op, BufferOp):
                op.properties.pop("pmus", None)


def set_factors(units: Sequence[UnitOp], factors: dict[UnitOp, tuple[int, ...]]) -> None:
    """Give ``units`` the ``factors`` (one PCU: none). A unit keeps its interleaving, which
    the performance model ignores where the factors split no counter but the lanes counter
    (``drop_interleaving`` removes it then)."""
    for unit in units:
        if unit in factors:
            unit.properties["parallel"] = dense_i64(factors[unit])
        else:
            unit.properties.pop("parallel", None)


def drop_interleaving(units: Sequence[UnitOp]) -> None:
    """Interleave only the units whose factors allow it (``rules.interleave_problem``)."""
    for unit in units:
        if unit.interleaved is not None and (
            unit.parallel is None
            or rules.interleave_problem(
                unit.space_values, unit.out.stride_values, unit.parallel_values
            )
        ):
            unit.properties.pop("interleaved", None)


def balance_section(
    section: SectionOp,
    target: Target,
    share: Share | None = None,
    known: Frontiers | None = None,
    first: dict[UnitOp, tuple[int, ...]] | None = None,
) -> None:
    """Give the units of ``section`` the copies ``allocate`` finds, as many of them as place
    and route: if the first allocation does not, one whose units split two counters only (their
    streams fewer: no ``outer_counter``) over the same PCUs; then allocations over ``KEEP``'s
    shares of the first one's extra PCUs in turn, until one routes, else the section is left
    as it was. ``known``: the units' frontiers found so far (with ``outer_counter``);
    ``first``: the first allocation, when already made (``co_resident_shares`` made both)."""
    known = Frontiers() if known is None else known
    frontiers = {True: known, False: Frontiers(known.pcus)}
    made = known.pcus
    if first is None:
        factors = allocate(section, target, known=frontiers[True], share=share)
    else:
        factors = first
    if not factors:
        return  # nothing to spread (or a unit parallel already: its own section)
    units = [op for op in section.body.block.ops if isinstance(op, UnitOp)]
    set_factors(units, factors)
    extra = sum(u.copies for u in units) - len(units)
    budgets = [len(units) + int(extra * keep) for keep in KEEP]
    if any(f.count(1) < len(f) - 2 for f in factors.values()):
        budgets.insert(0, len(units) + extra)  # first the same PCUs over fewer streams
    tried: list[dict[UnitOp, tuple[int, ...]]] = []
    for budget in [None, *budgets]:
        if budget is not None:
            set_factors(units, {})
            factors = allocate(section, target, budget, frontiers[False], share, outer=False)
            if not factors:
                break
            if factors in tried:  # the same copies as an allocation that did not route
                continue
            set_factors(units, factors)
        tried.append(factors)
        if routes(section, target):
            if PLACEMENT_ATTR in section.attributes:  # not a lone parallel unit's layout
                kept = share.kept if share is not None else frozenset()
                outer = budget is None
                factors = in_order(section, target, factors, kept, made)
                interleave(section, target, kept, made)
                kept_factors = factors
                fabric = share.pcus if share is not None else target.num_pcus
                known = frontiers[outer]
                for refined in refined_starts(section, target, factors, kept, known, outer, fabric):
                    if placed_better(section, target, units, kept_factors, refined, kept, made):
                        kept_factors = refined
                if kept_factors is not factors:
                    drop_interleaving(units)
                    interleave(section, target, kept, made)
            return
        section.attributes.pop(PLACEMENT_ATTR, None)
    set_factors(units, {})


def total_copies(units: Sequence[UnitOp], factors: dict[UnitOp, tuple[int, ...]]) -> int:
    """The PCUs ``units`` take with ``factors`` (a unit without factors: one)."""
    return sum(math.prod(factors.get(u, (1,))) for u in units)


REFINE_STARTS_UNITS = 256
"""The most units a section may have for ``refined_starts`` to run ``refine`` over the
fabric's PCUs too, a bound on compile time: a run's section timings grow with the units
(GPT b8's sections on sn10, 101 to 129 units, 1 to 4 s a run and three)."""

REFINE_UNITS = 400
"""The most units a section may have for ``refined_starts`` to run ``refine`` at all, a
bound on compile time: HF GPT-2 small's forward on sn40l in the compile benchmark, 453
units, took 2.2 s of an 18 s compile for one run that gave no unit a grid (its time is its
tiled loads'); the sections the examples refine on sn10 and sn40l have at most 149 units
(hf_bert's)."""


def refined_starts(
    section: SectionOp,
    target: Target,
    factors: dict[UnitOp, tuple[int, ...]],
    kept: frozenset[str],
    known: Frontiers,
    outer: bool,
    fabric: int,
) -> list[dict[UnitOp, tuple[int, ...]]]:
    """The ``refine`` runs ``balance_section`` places (the best kept), each unlike ``factors``
    and the runs before: within the allocation's PCUs; within the ``fabric``'s (a co-resident
    section's share of it), with ``aligned_step`` only where no unit's step helps and then
    before them. A run over the fabric's PCUs is the first one again unless that refused a
    trial for its PCUs, and the third is the second (or the first) again when that changed
    nothing (its first step: the same unit steps and ``aligned_step`` failing): those are
    skipped, and so are the second and third for a section of more than
    ``REFINE_STARTS_UNITS`` units, and all of them for one of more than ``REFINE_UNITS``."""
    units = sum(isinstance(op, UnitOp) for op in section.body.block.ops)
    if units > REFINE_UNITS:
        return []
    capped: list[bool] = []
    runs = [refine(section, target, factors, kept, known, outer, capped=capped)]
    many = units > REFINE_STARTS_UNITS
    if not many:  # one run is as much as a compile can give a section of more units
        if capped:
            runs.append(refine(section, target, factors, kept, known, outer, fabric))
        if runs[-1] != factors:
            runs.append(refine(section, target, factors, kept, known, outer, fabric, True))
    distinct: list[dict[UnitOp, tuple[int, ...]]] = []
    for refined in runs:
        if refined != factors and refined not in distinct:
            distinct.append(refined)
    return distinct


REFINE_STEPS = 32
"""The most grids ``refine`` gives in a section; it stops sooner where no grid helps. GPT b8's
backward on sn10 takes 24 (at 16, 8,717 cycles before placement; at 24, 8,413), HF GPT-2 b8's
27 (24,786 at 16; 21,123 at 27): its step 55,788 cycles to 52,912. About 0.3 s of HF GPT-2
b8's compile (GPT-2 small's forward on sn40l, 453 units, is not refined: ``REFINE_UNITS``)."""

REFINE_LATEST = 4
"""How many of the units ending last ``refine`` tries a grid for, latest first."""

REFINE_PATH = 4
"""How many units of the critical path (``Timing.path``: those that add the most to it first)
``refine`` tries a grid for when none of the units ending last gains."""

REFINE_DONORS = 3
"""How many of the units ending first may give a grid back for one ``refine`` gives."""


def refine(
    section: SectionOp,
    target: Target,
    factors: dict[UnitOp, tuple[int, ...]],
    kept: frozenset[str],
    known: Frontiers,
    outer: bool,
    most: int | None = None,
    aligned_first: bool = False,
    capped: list[bool] | None = None,
) -> dict[UnitOp, tuple[int, ...]]:
    """``factors`` improved by the performance model itself (``section_timing``, before
    placement), within the PMUs they take (what they leave free stays free: the pinned
    symbols' homes, the other sections' shares) and the PCUs they take, or ``most`` PCUs when
    that is more (``refined_starts``: the fabric's, room to route then checked by placing);
    ``capped`` gets ``True`` appended when a trial is refused for its PCUs.

    Each step tries the next grid of a unit's frontier (more copies) for the readers of the
    busiest PMU when rule 2 sets the section's cycles, then for the ``REFINE_LATEST`` units
    ending last, then for the ``REFINE_PATH`` units that add the most to the critical path
    (``Timing.path``: a chain's bottleneck upstream, which the units ending last only
    follow): alone, then with one of the ``REFINE_DONORS`` parallel units ending first back
    on its grid before (room for it). The first that fits and ends the section sooner,
    or as soon with its ``REFINE_LATEST`` latest units ending sooner (when two units end it
    together, neither one's step alone ends it sooner), is taken, up to ``REFINE_STEPS``
    times; where none is, ``aligned_step`` (or, ``aligned_first``, that before the others).
    A unit on a grid off its frontier (a chain's cut, ``line_up``) keeps it. GPT b8's
    backward on sn10, its copies in order and interleaved first (``in_order``,
    ``interleave``): its dW matmuls on one to four copies each (the allocation's critical path
    is the dX chain's) get more, 15,650 cycles to 7,980 before placement; placed, compute
    7,833 cycles (its busiest link, 7,168, follows where the pins' placement puts things)."""
    units = [op for op in section.body.block.ops if isinstance(op, UnitOp)]
    current = dict(factors)
    best = section_timing(section, target, current, kept, known.pcus)
    pcus, pmus = total_copies(units, current), best.pmus
    if most is not None:
        pcus = max(pcus, most)

    def grid(unit: UnitOp, step: int) -> tuple[int, ...] | None:
        """The grid ``step`` places along ``unit``'s frontier from its own (None: past an end,
        or its own off the frontier)."""
        if not unit.space_values:
            return None
        options = [g for _, _, g in known.of(unit, target, outer and len(units) > 1)]
        now = current.get(unit, options[0])
        at = options.index(now) + step if now in options else -1
        return options[at] if 0 <= at < len(options) else None

    def sooner(timing: Timing) -> tuple[int, list[int]]:
        """The section's cycles, then the latest ends of its units: two units ending last
        together (two dW matmuls) each take a step, the first one's not ending it sooner."""
        return timing.cycles, sorted(timing.ends.values(), reverse=True)[:REFINE_LATEST]

    def given(
        base: dict[UnitOp, tuple[int, ...]], unit: UnitOp, grid: tuple[int, ...]
    ) -> dict[UnitOp, tuple[int, ...]]:
        changed = {u: f for u, f in base.items() if u is not unit}
        if math.prod(grid) > 1:
            changed[unit] = grid
        return changed

    for _ in range(REFINE_STEPS):
        latest = sorted(units, key=lambda u: -best.ends[u])
        donors = [(u, back) for u in reversed(latest) if u in current for back in [grid(u, -1)]]
        step = None
        if aligned_first:
            step = aligned_step(
                section, target, current, best, kept, (known, outer), pcus, pmus, capped
            )
        chain = best.path[:REFINE_PATH]
        for unit in dict.fromkeys([*best.crowded, *latest[:REFINE_LATEST], *chain]):
            if step is not None:
                break
            up = grid(unit, 1)
            if up is None:
                continue
            more = given(current, unit, up)
            trials = [more] + [
                given(more, u, back) for u, back in donors if u is not unit and back is not None
            ][:REFINE_DONORS]
            for trial in trials:
                if total_copies(units, trial) > pcus:
                    if capped is not None:
                        capped.append(True)
                    continue
                timing = section_timing(section, target, trial, kept, known.pcus)
                if timing.pmus <= pmus and sooner(timing) < sooner(best):
                    step = (trial, timing)
                    break
            if step is not None:
                break
        if step is None and not aligned_first:
            step = aligned_step(
                section, target, current, best, kept, (known, outer), pcus, pmus, capped
            )
        if step is None:
            break
        current, best = step
    return current


def aligned_runs(
    chain: Sequence[UnitOp], known: Frontiers, target: Target, outer: bool
) -> list[list[UnitOp]]:
    """The runs of units of a critical ``chain`` (``Timing.chain``) over one space, each
    waiting for the one before, that may be parallel (more than one grid in their frontier,
    found into ``known`` for the units of such runs only: a long chain has many)."""
    groups: list[list[UnitOp]] = []
    for unit in chain:
        if groups and groups[-1][-1].space_values == unit.space_values:
            groups[-1].append(unit)
        else:
            groups.append([unit])
    runs: list[list[UnitOp]] = []
    for group in groups:
        if len(group) < 2 or not group[0].space_values:
            continue
        runs.append([])
        for unit in group:
            if len(known.of(unit, target, outer)) < 2:
                runs.append([])
            else:
                runs[-1].append(unit)
    return [run for run in runs if len(run) > 1]


def fitted_grid(unit: UnitOp, factors: Sequence[int]) -> tuple[int, ...] | None:
    """``factors`` for ``unit`` with no split on a counter it reduces or a ``counter`` stage
    reads (None: those left do not make a parallel unit it may be)."""
    space = unit.space_values
    fixed = {*rules.reduced_counters(space, unit.out.stride_values), *unit.counter_stages()}
    grid = tuple(1 if c in fixed else f for c, f in enumerate(factors))
    if math.prod(grid) < 2 or unit.parallel_problem(grid) is not None:
        return None
    return grid


def aligned_step(
    section: SectionOp,
    target: Target,
    current: dict[UnitOp, tuple[int, ...]],
    best: Timing,
    kept: frozenset[str],
    frontiers: tuple[Frontiers, bool],
    pcus: int,
    pmus: int,
    capped: list[bool] | None = None,
) -> tuple[dict[UnitOp, tuple[int, ...]], Timing] | None:
    """``refine``'s move when no unit's next grid helps: a run of units over one space on the
    critical chain (``aligned_runs``) all given the first grid one of them has that ends the
    section sooner, within ``pcus`` and ``pmus``, so that each follows the one before a run
    behind (rule 1: a reader split as its writer; a reduction keeps its reduced counters
    whole, ``fitted_grid``). ``frontiers``: the units' frontiers found so far and whether
    they split ``outer_counter`` (as ``refine``'s); ``capped`` gets ``True`` appended when a
    trial is refused for its PCUs. GPT b8's loss on sn10: the log-softmax and the
    cross-entropy over ``[256, 58]`` split ``[6, 1]``, ``[3, 2]``, ``[8, 1]``, ``[2, 4]``, ``[8,
    1]`` wait for each other's ends; all ``[6, 1]``, each follows the one before."""
    units = [op for op in section.body.block.ops if isinstance(op, UnitOp)]
    known, outer = frontiers
    for run in aligned_runs(best.chain, known, target, outer and len(units) > 1):
        for grid in dict.fromkeys(current[u] for u in run if u in current):
            trial = dict(current)
            for unit in run:
                fitted = fitted_grid(unit, grid)
                if fitted is None:
                    trial.pop(unit, None)
                else:
                    trial[unit] = fitted
            if trial == current:
                continue
            if total_copies(units, trial) > pcus:
                if capped is not None:
                    capped.append(True)
                continue
            timing = section_timing(section, target, trial, kept, known.pcus)
            if timing.pmus <= pmus and timing.cycles < best.cycles:
                return trial, timing
    return None


REFINE_GAIN = 0.97
"""A refined allocation (``refine``) replaces the one it came from when, both placed, the
section's cycles (``placed_cycles``) are at most this share of the other's."""


def placed_better(
    section: SectionOp,
    target: Target,
    units: Sequence[UnitOp],
    factors: dict[UnitOp, tuple[int, ...]],
    refined: dict[UnitOp, tuple[int, ...]],
    kept: frozenset[str],
    made: UnplacedPcus | None = None,
) -> bool:
    """Give the units of ``section``, placed with ``factors``, the ``refined`` ones if those
    place and route too and end the section sooner by ``REFINE_GAIN`` (``placed_cycles``);
    else leave ``factors`` and their placement. Whether it gave the refined ones."""
    before = placed_cycles(section, target, factors, kept, made)
    placement = section.attributes[PLACEMENT_ATTR]
    set_factors(units, refined)
    if routes(section, target) and placed_cycles(section, target, refined, kept, made) <= (
        before * REFINE_GAIN
    ):
        return True
    set_factors(units, factors)
    section.attributes[PLACEMENT_ATTR] = placement
    return False


def placed_cycles(
    section: SectionOp,
    target: Target,
    factors: dict[UnitOp, tuple[int, ...]],
    kept: frozenset[str],
    made: UnplacedPcus | None = None,
) -> int:
    """The cycles of ``section`` with ``factors`` and its recorded placement: the later of
    ``section_timing``'s and its busiest link's (the performance model's rule 3 over the
    placement's routes, each stream's bytes as ``section_graph`` weighs them)."""
    return placed_ends(section, target, factors, kept, made)[0]


def placed_ends(
    section: SectionOp,
    target: Target,
    factors: dict[UnitOp, tuple[int, ...]],
    kept: frozenset[str],
    made: UnplacedPcus | None = None,
) -> tuple[int, list[int]]:
    """``placed_cycles``, then the ``REFINE_LATEST`` latest ends of the units: of two
    mappings that end the section together (at its busiest link or its last unit), the one
    whose other units end sooner comes first (GPT b8's backward on sn10: its dX chain in
    order ends thousands of cycles sooner, while a dW matmul that waits for none of it ends
    the section either way)."""
    timing = section_timing(section, target, factors, kept, made)
    latest = sorted(timing.ends.values(), reverse=True)[:REFINE_LATEST]
    placed = recorded_placement(section)
    assert placed is not None
    with pmus_counted(section, target):
        graph = section_graph(section, target).graph
    routes = zip(graph.streams, placed.routes, strict=True)
    links = perf.busiest_link(
        ((hops, stream.weight) for stream, hops in routes if stream.scalar is None), target
    )
    return max(timing.cycles, links), latest


@dataclass(frozen=True)
class Share:
    """What a section may take of a fabric it will hold with the program's other sections
    (rule 3 of the module docstring): its PCUs and PMUs, and the symbols kept on chip."""

    pcus: int
    pmus: int
    kept: frozenset[str]


def co_resident_shares(
    sections: Sequence[SectionOp], target: Target, known: Frontiers | None = None
) -> tuple[list[Share] | None, list[dict[UnitOp, tuple[int, ...]]] | None]:
    """Each section's ``Share`` when the sections, as they are, fit the target together (their
    units and buffers; co-place-sections will try to keep them all on the fabric), else None.
    The PCUs and PMUs left free are split evenly between the sections; the symbols expected on
    chip are the state and the activations, gradients and spills that another section loads
    (co-place-sections decides: this is the pass's estimate). ``known``: the units' frontiers,
    kept for the balancing that follows. Also the first allocation of each section under the
    answer, made by the way (None when not made)."""
    known = Frontiers() if known is None else known
    if len(sections) < 2:
        return None, None
    units = sum(1 for s in sections for op in s.body.block.ops if isinstance(op, UnitOp))
    buffers = [op for s in sections for op in s.body.block.ops if isinstance(op, BufferOp)]
    pmus = sum(resident_pmus(b, target) for b in buffers)
    if units > target.num_pcus or pmus > target.num_pmus:
        return None, None
    loaded: set[str] = set()
    kept: set[str] = set()
    for s in sections:
        for name, role in zip(s.arg_names, s.arg_roles, strict=True):
            loaded.add(name.data)
            if role.data.value in ("parameter", "buffer", "optimizer_state"):
                kept.add(name.data)
    for s in sections:
        for name, role in zip(s.result_names, s.result_roles, strict=True):
            if role.data.value in ("activation", "gradient", "spill") and name.data in loaded:
                kept.add(name.data)
    shares = []
    n = len(sections)
    for s in sections:
        own = sum(1 for op in s.body.block.ops if isinstance(op, UnitOp))
        own_pmus = sum(
            resident_pmus(b, target) for b in s.body.block.ops if isinstance(b, BufferOp)
        )
        pcus = own + (target.num_pcus - units) // n
        shares.append(Share(pcus, own_pmus + (target.num_pmus - pmus) // n, frozenset(kept)))
    # Sharing pays when the step it gives (each section's critical path or on-chip DRAM floor,
    # loaded once) beats the one without (each section with the whole fabric against its own
    # DRAM floor, and a configuration latency a section run): e.g. not for GPT on sn10, whose
    # sections each balance over all 640 PCUs.
    load = perf.ns_to_cycles(target.config_latency_ns, target.clock_ghz)
    shared = whole = 0
    alone: list[dict[UnitOp, tuple[int, ...]]] = []
    sharing: list[dict[UnitOp, tuple[int, ...]]] = []
    for section, share in zip(sections, shares, strict=True):
        factors, apart = allocation(section, target, known=known)
        alone.append(factors)
        factors, together = allocation(section, target, known=known, share=share)
        sharing.append(factors)
        if apart is None or together is None:
            return None, None
        whole += apart + load
        shared += together
    return (shares, sharing) if shared < whole else (None, alone)


def state_pieces(
    section: SectionOp, sections: Sequence[SectionOp], target: Target
) -> dict[str, int]:
    """The PMUs that the buffers of the sections other than ``section`` bound to each symbol
    (loaded from it or stored to it) take at most, as assign-pmus counts them for the factors
    their units have."""
    pieces: dict[str, int] = {}
    for other in sections:
        if other is section:
            continue
        stored = {
            value.owner: name.data
            for name, value in zip(other.result_names, other.yield_op.values, strict=True)
        }
        with pmus_counted(other, target):
            for op in other.body.block.ops:
                if not isinstance(op, BufferOp):
                    continue
                for name in (loaded_from(op, other), stored.get(op)):
                    if name is not None:
                        pieces[name] = max(pieces.get(name, 1), op.num_pmus)
    return pieces


def tensor_chains(units: Sequence[UnitOp]) -> list[list[UnitOp]]:
    """``units`` joined into chains over one tensor: a unit and the writer of a buffer it
    reads are in one chain when their spaces are the same (an optimizer's update of one
    parameter: its moments', its step's and its own units), in the units' order."""
    chain = {u: i for i, u in enumerate(units)}

    def root(u: UnitOp) -> UnitOp:
        while units[chain[u]] is not u:
            u = units[chain[u]]
        return u

    for u in units:
        for value in u.inputs:
            buffer = value.owner
            if isinstance(buffer, BufferOp) and isinstance(buffer.source.owner, UnitOp):
                writer = buffer.source.owner
                if writer in chain and writer.space_values == u.space_values:
                    a, b = root(u), root(writer)
                    if a is not b:
                        chain[a] = chain[b]
    members: dict[UnitOp, list[UnitOp]] = {}
    for u in units:
        members.setdefault(root(u), []).append(u)
    return list(members.values())


def state_factors(
    section: SectionOp, sections: Sequence[SectionOp], target: Target
) -> dict[UnitOp, tuple[int, ...]]:
    """The factors ``split_state`` gives the units of ``section``: each chain over one tensor
    (``tensor_chains``) that reads a symbol another section's buffers hold in more than one
    PMU (``state_pieces``) takes, on each of its units, as many copies along its outermost
    counter as the fewest PMUs of those symbols, or the most below that the counter's extent
    is a multiple of, its copies in blocks (copy ``k`` streaming the ``k``-th block of rows of
    each buffer: the ``k``-th piece of one in as many PMUs, the moments' among them); never
    along the lanes counter, nor where a unit cannot be split (``parallel_problem``)."""
    units = [op for op in section.body.block.ops if isinstance(op, UnitOp)]
    pieces = state_pieces(section, sections, target)
    factors: dict[UnitOp, tuple[int, ...]] = {}
    for chain in tensor_chains(units):
        read = {
            name
            for u in chain
            for value in u.inputs
            if isinstance(value.owner, BufferOp)
            for name in [loaded_from(value.owner, section)]
            if name is not None and name in pieces
        }
        space = chain[0].space_values
        if not read or len(space) < 2:
            continue
        copies = min(pieces[name] for name in read)
        while copies > 1 and space[0] % copies:
            copies -= 1
        grid = (copies, *[1] * (len(space) - 1))
        if copies < 2 or any(
            rules.lanes_counter(u.space_values, u.out.stride_values) == 0
            or u.parallel_problem(list(grid)) is not None
            for u in chain
        ):
            continue
        factors.update(dict.fromkeys(chain, grid))
    return factors


def split_state(section: SectionOp, sections: Sequence[SectionOp], target: Target) -> None:
    """Split the chains of ``section`` over its state as ``state_factors`` says when balancing
    left every unit of it on one PCU, if the section so places and routes (rule 4 of the
    module docstring)."""
    units = [op for op in section.body.block.ops if isinstance(op, UnitOp)]
    if not units or base_pmus(section, target, units) is None:
        return  # a unit parallel already, or a section no copies could make route
    factors = state_factors(section, sections, target)
    if not factors or total_copies(units, factors) > target.num_pcus:
        return
    set_factors(units, factors)
    if not routes(section, target):
        set_factors(units, {})
        section.attributes.pop(PLACEMENT_ATTR, None)


@dataclass(frozen=True)
class ParallelizeUnits(ModulePass):
    """Give units copies in proportion to their work (see the module docstring)."""

    name = "parallelize-units"

    target: str = "plasticine"
    min_vectors: int = DEFAULT_MIN_VECTORS
    """Units with at least this many vectors on one PCU get a section of their own."""
    balance: bool = True
    """Spread the units of each section that fits the target over its free PCUs."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = pass_target(self.target)
        for unit in [u for u in op.walk() if isinstance(u, UnitOp)]:
            if unit.parallel is not None:
                continue
            factors = choose_factors(unit, target, self.min_vectors)
            if factors is not None:
                unit.properties["parallel"] = dense_i64(factors)
        if self.balance:
            sections = [s for s in op.walk() if isinstance(s, SectionOp)]
            known = Frontiers()  # a unit's frontier is the same whatever its section's share
            shares, first = co_resident_shares(sections, target, known)
            for k, section in enumerate(sections):
                share = None if shares is None else shares[k]
                balance_section(section, target, share, known, None if first is None else first[k])
            if shares is None:
                for section in sections:
                    split_state(section, sections, target)
