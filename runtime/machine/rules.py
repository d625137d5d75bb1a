"""The arithmetic of a unit's configuration, written once for the compiler and the runtime.

A PCU runs over an iteration space of counters ``c`` with extents ``S[c]`` (outermost first)
and reads and writes its buffers through accesses, ``address = offset + sum(strides[c] *
counter[c])`` (plus ``index_stride`` times an index value in ``[0, index_limit)`` for a
data-dependent access). The dialects' verifiers, the passes, the PEF validator, the emulator and
the performance model all ask these questions; here is the one answer to each:

- which counters a unit reduces (``reduced_counters``) and spreads over its lanes
  (``lanes_counter``);
- whether a unit's combiner fits its output (``combiner_problem``);
- whether an access reaches any address at all (``reaches_any``) and which it reaches
  (``address_range``);
- the block of a parallel unit's copy (``copy_block``) and whether a unit can be made parallel
  with given factors (``parallel_problem``);
- whether two switches are joined by a link (``adjacent``), so whether a route's switches
  follow one another over links (``route_break``);
- the order in which an access visits its buffer's elements (``visit_order``), so whether a
  reader reads a buffer in the order its writer wrote it, and whether an access walks a buffer
  in consecutive row blocks, one an iteration of its outermost counter (``row_blocks``), or
  of its leading counters flattened (``row_walk``);
- whether a unit may write its result over a buffer that it and the units it reads from read
  (``in_place_problem``: an update in place, the optimizer's new parameter over the old);
- how many PMUs hold a buffer whole (``pmus_to_hold``) and whether its PMUs do (``held``);
  how many bytes of a PMU a buffer takes (``pmu_footprint``) and whether one fits beside a
  pinned home on its slot (``beside_pinned_home``);
- how many pipeline stages a unit body takes (``pipeline_depth``, ``unit_depth``);
- whether an input port may be a register port (``register_problem``): read once, when its
  section starts, and held in a register of the PCU (every copy's) for the whole run;
- which network a stream travels (``on_scalar_network``: a register port's, on a target with a
  scalar network) and what the routes of a section load each link of either network with
  (``link_loads``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from runtime.machine.opcodes import OPCODES


def reduced_counters(space: Sequence[int], out_strides: Sequence[int]) -> list[int]:
    """Counters with out stride 0 and extent above 1: those the combiner folds."""
    return [c for c, (e, s) in enumerate(zip(space, out_strides, strict=True)) if s == 0 and e > 1]


def lanes_counter(space: Sequence[int], out_strides: Sequence[int]) -> int:
    """The counter spread over the lanes: the innermost not reduced with an extent above 1, else
    the innermost not reduced, else the innermost (-1 for a 0-d space)."""
    if not space:
        return -1
    reduced = set(reduced_counters(space, out_strides))
    free = [c for c in range(len(space)) if c not in reduced]
    wide = [c for c in free if space[c] > 1]
    if wide:
        return wide[-1]
    return free[-1] if free else len(space) - 1


def combiner_problem(
    space: Sequence[int], out_strides: Sequence[int], combiner: str, scatter: bool = False
) -> str | None:
    """What is wrong with ``combiner`` for a unit over ``space`` writing through ``out_strides``
    (a data-dependent output if ``scatter``), or None.

    Values meet at one result element over the reduced counters and, for a scatter, wherever the
    index repeats. So a reduction needs a combiner; a combiner needs a reduction (or an empty
    one, a counter of out stride 0 and extent 0: a reduction over no points writes the
    combiner's identity) or a scatter; and a scatter adds the values that meet (``add``) or
    stores them (``none``), never ``max`` or ``min``."""
    reduced = reduced_counters(space, out_strides)
    empty = any(e == 0 and s == 0 for e, s in zip(space, out_strides, strict=True))
    if reduced and combiner == "none":
        return f"counters {reduced} have out stride 0 (a reduction) but the combiner is 'none'"
    if scatter and combiner not in ("add", "none"):
        return f"a scatter output combines with 'add' or 'none', not '{combiner}'"
    if not reduced and not empty and not scatter and combiner != "none":
        return (
            f"combiner '{combiner}' but no counter is reduced (none has out stride 0 and "
            "extent other than 1) and the output is not a scatter"
        )
    return None


def reaches_any(space: Sequence[int], strides: Sequence[int], output: bool = False) -> bool:
    """Whether an access reaches any address over ``space``: an input's only if the space has
    points; an output's if every counter it moves along has points (a reduction over no points
    still writes its result, the combiner's identity)."""
    if output:
        return all(e > 0 for e, s in zip(space, strides, strict=True) if s != 0)
    return all(e > 0 for e in space)


def address_range(
    offset: int,
    strides: Sequence[int],
    space: Sequence[int],
    index_stride: int = 0,
    index_limit: int = 1,
) -> tuple[int, int]:
    """The lowest and highest flat address an access reaches over a non-empty ``space`` (with
    index values in ``[0, index_limit)`` for a data-dependent access)."""
    lo = hi = offset
    spans = [s * (e - 1) for s, e in zip(strides, space, strict=True)]
    spans.append(index_stride * (index_limit - 1))
    for span in spans:
        lo += min(0, span)
        hi += max(0, span)
    return lo, hi


def copy_block(space: Sequence[int], factors: Sequence[int]) -> tuple[int, ...]:
    """The block of each copy of a parallel unit: ``b[c] = ceil(S[c] / p[c])`` points of counter
    ``c`` (copy ``k`` runs over ``[k[c] * b[c], min(S[c], (k[c] + 1) * b[c]))``)."""
    return tuple(-(-e // max(p, 1)) for e, p in zip(space, factors, strict=True))


def copy_points(extent: int, factor: int, k: int, interleaved: bool) -> range:
    """The points of a counter of ``extent`` that copy ``k`` of ``factor`` runs over: its block
    ``[k * b, min(extent, (k + 1) * b))`` (``copy_block``), or ``interleaved`` every
    ``factor``-th point from ``k``."""
    if interleaved:
        return range(k, extent, factor)
    block = -(-extent // max(factor, 1))
    return range(k * block, min(extent, (k + 1) * block))


def interleave_problem(
    space: Sequence[int], out_strides: Sequence[int], factors: Sequence[int]
) -> str | None:
    """What forbids a unit's copies from taking the points of their split counters in turn
    (``interleaved``), or None: it must be parallel with a split counter besides its lanes
    counter (``lanes_counter``, which keeps its blocks, so that a copy's vectors stay
    consecutive points)."""
    lanes = lanes_counter(space, out_strides)
    if not any(f > 1 for c, f in enumerate(factors) if c != lanes):
        return "interleaved, but no counter besides the lanes counter is split"
    return None


def interleaved_counters(
    space: Sequence[int], out_strides: Sequence[int], interleaved: bool
) -> frozenset[int]:
    """The counters an ``interleaved`` unit's copies take in turn: all but its lanes counter
    (none when it is not interleaved)."""
    if not interleaved:
        return frozenset()
    lanes = lanes_counter(space, out_strides)
    return frozenset(c for c in range(len(space)) if c != lanes)


def adjacent(a: Sequence[int], b: Sequence[int]) -> bool:
    """Whether a link joins switches ``a`` and ``b`` (``[x, y]``): one apart in x or in y."""
    return abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1


def route_break(hops: Sequence[Sequence[int]]) -> int | None:
    """The first hop of a route that is not adjacent to the hop before it, None when every hop
    is."""
    for h in range(1, len(hops)):
        if not adjacent(hops[h - 1], hops[h]):
            return h
    return None


def parallel_problem(
    space: Sequence[int],
    out_strides: Sequence[int],
    factors: Sequence[int],
    *,
    indexed: bool = False,
    positional: bool = False,
    counters: Sequence[int] = (),
    reads: Sequence[tuple[str, object]] = (),
) -> str | None:
    """What forbids running a unit over ``space`` as ``prod(factors)`` copies, or None.

    One factor a counter, from 1 to its extent, every copy's block non-empty (``copy_block``),
    above 1 only on a counter that is not reduced nor read by a ``counter`` stage (``counters``:
    a copy's counter runs over its own block, so such a stage would see the block's values; a
    counter no stage reads may be split, the others keep every value: a cross-entropy's class
    index beside rows split among copies); and the unit has no data-dependent access
    (``indexed``), no ``rand`` stage (``positional``: its value depends on every counter) and
    reads each buffer through one access (``reads``: ``(buffer, access)`` an input port, the
    buffer named as the message should name it)."""
    if len(factors) != len(space):
        return f"parallel has {len(factors)} factors for {len(space)} counters"
    blocks = copy_block(space, factors)
    reduced = reduced_counters(space, out_strides)
    for c, (f, e, b) in enumerate(zip(factors, space, blocks, strict=True)):
        if f < 1 or f > max(e, 1) or (e > 0 and (f - 1) * b >= e):
            return (
                f"parallel factor {f} of counter {c} (extent {e}) leaves a copy no block (need "
                "1 <= factor and every block non-empty)"
            )
        if f > 1 and c in reduced:
            return f"parallel factor {f} on reduced counter {c}"
        if f > 1 and c in counters:
            return f"parallel factor {f} on counter {c}, which a 'counter' stage reads"
    if indexed:
        return "a parallel unit with a data-dependent access"
    if positional:
        return "a parallel unit with a 'rand' stage"
    seen: dict[str, object] = {}
    for k, (buffer, access) in enumerate(reads):
        if seen.setdefault(buffer, access) != access:
            return (
                f"input {k} reads {buffer} through another access than an earlier input (a "
                "parallel unit reads a buffer through one access)"
            )
    return None


def pmus_to_hold(nbytes: int, pmu_bytes: int) -> int:
    """The PMUs a buffer of ``nbytes`` needs to stay whole on chip: ``ceil(nbytes / pmu_bytes)``,
    at least 1 (its address range cut into that many consecutive pieces of equal size)."""
    return max(1, -(-nbytes // pmu_bytes))


def held(nbytes: int, pmus: int, pmu_bytes: int) -> bool:
    """Whether ``pmus`` PMUs (at least one) hold a buffer of ``nbytes`` whole; else it streams
    through them in tiles."""
    return nbytes <= max(1, pmus) * pmu_bytes


def pmu_footprint(tile_bytes: int, nbuf: int, nbytes: int, pmus: int, pmu_bytes: int) -> int:
    """The bytes a buffer of an ``nbytes`` tensor takes of each of its ``pmus`` PMUs, at most:
    its ``nbuf`` tiles in flight, or its piece of the tensor when they hold it (``held``: its
    address range cut into ``pmus`` consecutive pieces of ``ceil(nbytes / pmus)`` bytes, the
    pieces the performance model's rules 1 and 2 stream and share the banks of), the whole PMU
    at most."""
    piece = -(-nbytes // max(1, pmus)) if held(nbytes, pmus, pmu_bytes) else 0
    return min(pmu_bytes, max(tile_bytes * nbuf, piece))


def beside_pinned_home(home: int, other: int, pmu_bytes: int) -> bool:
    """Whether a buffer whose ``pmu_footprint`` is ``other`` fits a PMU beside a pinned home
    whose footprint is ``home``. Sections loaded in turn around pinned homes may put a buffer
    on a home's slot when they bind none to its symbol (they neither read nor write it): the
    symbol stays in its addresses while the section's configuration uses the others, so the
    two must fit the PMU's ``pmu_bytes`` together; they never share its banks, the symbol
    idling while that section runs."""
    return home + other <= pmu_bytes


def pipeline_depth(
    stage_ops: Sequence[str], combiner: str, result_op: str | None, tree_width: int = 1
) -> int:
    """The pipeline stages a body takes: one a stage (``Opcode.stages``: none for an immediate
    or the counter chain); a combiner takes one more, except that an ``add`` combiner fuses with
    a ``mul`` result into one multiply-add; a reduction over ``tree_width`` lanes adds the
    cross-lane tree, ``ceil(log2(tree_width))`` stages. At least 1.

    ``stage_ops`` are the body's opcodes, ``result_op`` the opcode of the value it yields (None:
    an input)."""
    depth = sum(OPCODES[op].stages for op in stage_ops)
    if combiner != "none":
        depth += 0 if combiner == "add" and result_op == "mul" else 1
        depth += math.ceil(math.log2(tree_width)) if tree_width > 1 else 0
    return max(depth, 1)


def unit_depth(
    stage_ops: Sequence[str],
    combiner: str,
    result_op: str | None,
    space: Sequence[int],
    out_strides: Sequence[int],
    lanes: int,
) -> int:
    """The pipeline depth of a unit of ``lanes`` lanes over ``space``: its body's, plus the
    cross-lane tree when it reduces its lanes counter."""
    at_lanes = lanes_counter(space, out_strides)
    reduces_lanes = at_lanes in reduced_counters(space, out_strides)
    tree = min(max(1, lanes), space[at_lanes]) if reduces_lanes else 1
    return pipeline_depth(stage_ops, combiner, result_op, tree)


def visit_order(
    space: Sequence[int], strides: Sequence[int], offset: int = 0, indexed: bool = False
) -> tuple[int, list[tuple[int, int]]] | None:
    """The elements an access visits, in order, as ``(offset, loops)`` (``(extent, stride)``
    loops outermost first, extent-1 loops dropped, contiguous loops merged: ``[4, 8]`` with
    strides ``[8, 1]`` is the one loop ``(32, 1)``) if it visits each element in one run, a
    counter of stride 0 only innermost (a value held while it repeats: a reduction's result
    written once its innermost reduction is over); else None (a gather, a broadcast over an
    outer counter, a reduction over an outer counter, whose result is complete only at the end).

    Two accesses with equal orders visit the same elements in the same order: a reader whose
    order equals its writer's can read each element as soon as it is written."""
    if indexed:
        return None
    loops: list[tuple[int, int]] = []
    for extent, stride in zip(space, strides, strict=True):
        if extent <= 1:
            continue
        if loops and loops[-1][1] == stride * extent:
            loops[-1] = (loops[-1][0] * extent, stride)
        else:
            loops.append((extent, stride))
    while loops and loops[-1][1] == 0:
        loops.pop()
    if any(stride == 0 for _, stride in loops):
        return None
    return offset, loops


UnitWalk = tuple[Sequence[int], int, Sequence[int]]
"""A unit's walk of one buffer: its space, the access's offset and its strides."""


def one_to_one(space: Sequence[int], strides: Sequence[int]) -> bool:
    """Whether an affine access visits a different address at every point of ``space``: the
    counters that move, ordered by stride, each step over all the addresses the ones inside it
    reach (``[4, 8]`` with strides ``[8, 1]``; not a reduced counter's stride 0, not ``[1, 1]``)."""
    reach = 0  # the farthest address the counters taken so far reach from their first
    for extent, stride in sorted(
        ((e, abs(st)) for e, st in zip(space, strides, strict=True) if e > 1), key=lambda c: c[1]
    ):
        if stride <= reach:
            return False
        reach += stride * (extent - 1)
    return True


def in_place_problem(
    write: UnitWalk, reads: Sequence[tuple[UnitWalk, tuple[UnitWalk, UnitWalk] | None]]
) -> str | None:
    """Why a unit may not write its result over a buffer holding the old value, or None when it
    may (an **update in place**). ``write``: its output's walk; ``reads``: every read of the old
    buffer, each with ``None`` when the writer itself reads it, else the reading unit's output
    walk and the writer's walk of that output.

    Every address is written once, at one point, after every read of it: each read walks the
    old buffer as the write walks the result (same space, offset and strides, one address a
    point), so the address a point writes is read at that point only; and a read by another
    unit passes its result on at that point (its output written one address a point, the writer
    reading it there), so the writer's point waits for it. The optimizer's parameter read by
    the weight decay and by the update ``p - lr * step`` that writes it qualifies."""

    def same(a: UnitWalk, b: UnitWalk) -> bool:  # lists (a PEF) or tuples (the IR) alike
        return (tuple(a[0]), a[1], tuple(a[2])) == (tuple(b[0]), b[1], tuple(b[2]))

    space, _, strides = write
    if not one_to_one(space, strides):
        return "its result is not written one address a point"
    for read, passed in reads:
        if not same(read, write):
            return "a read of the old value walks it otherwise than the write"
        if passed is not None:
            out, taken = passed
            if not same(out, taken):
                return "a reader's result is not read by the writer where it is written"
            if tuple(out[0]) != tuple(space) or not one_to_one(out[0], out[2]):
                return "a reader's result is not written one address a point of the write's space"
    return None


def row_blocks(
    space: Sequence[int],
    strides: Sequence[int],
    elements: int,
    offset: int = 0,
    indexed: bool = False,
) -> tuple[int, int] | None:
    """``(counter, rows)`` if an access walks a buffer of ``elements`` elements in ``rows``
    consecutive blocks of ``elements // rows`` addresses, one an iteration of its outermost
    counter of extent above 1 (``counter``), in increasing order, each iteration touching its
    own block only (in any order inside it, any number of times: a matmul reading the rows of
    its left operand, or writing the rows of its result, each after its reduction; at an
    ``offset`` inside the first block, part of each: attention's keys, columns 48 to 95 of
    each token's ``[q | k | v]`` row); else None.

    The first counter of ``row_walk``, which the performance model's rule 1 reads rows with
    (a writer and a reader that both walk a buffer so pipeline it a row at a time)."""
    if indexed or offset < 0:
        return None
    loops = [(c, e, st) for c, (e, st) in enumerate(zip(space, strides, strict=True)) if e > 1]
    if not loops:
        return None
    counter, extent, stride = loops[0]
    if stride <= 0 or extent * stride != elements or any(st < 0 for _, _, st in loops):
        return None
    if offset + sum((e - 1) * st for _, e, st in loops[1:]) >= stride:
        return None
    return counter, extent


ROWS_MOST = 1 << 16
"""``row_walk`` flattens no more counters into rows than keep their number at most this."""


def row_walk(
    space: Sequence[int],
    strides: Sequence[int],
    elements: int,
    offset: int = 0,
    indexed: bool = False,
    whole: int = -1,
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """``(counters, extents)``: ``row_blocks`` at a finer grain. The leading counters of extent
    above 1 whose iterations, together, walk the buffer in consecutive blocks (each counter's
    blocks the previous one's block split evenly, the counters inside it staying inside its
    block), flattened row-major into ``prod(extents)`` rows: ``[8, 32, 48]`` strides
    ``[1536, 48, 1]`` walks 256 rows of 48, not 8 of 1536. The first is ``row_blocks``'
    counter; a counter is added while the rows stay at most ``ROWS_MOST`` and it is not
    ``whole`` (the lanes counter: a vector's elements arrive together). None where
    ``row_blocks`` is."""
    if row_blocks(space, strides, elements, offset, indexed) is None:
        return None
    loops = [(c, e, st) for c, (e, st) in enumerate(zip(space, strides, strict=True)) if e > 1]
    counters, extents = [loops[0][0]], [loops[0][1]]
    stride = loops[0][2]
    for j, (c, e, st) in enumerate(loops[1:], start=1):
        if c == whole or st <= 0 or e * st != stride or math.prod(extents) * e > ROWS_MOST:
            break
        if offset + sum((e2 - 1) * st2 for _, e2, st2 in loops[j + 1 :]) >= st:
            break
        counters.append(c)
        extents.append(e)
        stride = st
    return tuple(counters), tuple(extents)


def register_problem(space: Sequence[int], strides: Sequence[int], indexed: bool) -> str | None:
    """What forbids an input port reading through an access (``strides`` over ``space``) from
    being a register port, or None. A register port reads its PMU once, when the section
    starts, and the PCU holds the value in a register for its whole run, instead of a stream
    of vectors from the PMU: a scalar (a learning rate, a bias correction, ``eps``) read by
    many units then costs its PMU one read a reader, not one a vector. The access must read
    one address at every point: every stride 0 on a counter of extent above 1, no
    data-dependent term."""
    if indexed:
        return "its access is data-dependent"
    moving = [c for c, (e, st) in enumerate(zip(space, strides, strict=True)) if e > 1 and st]
    if moving:
        return f"its address moves with counter {moving[0]}, not one address at every point"
    return None


Link = tuple[tuple[int, int], tuple[int, int]]
"""A directed link between two adjacent switches: (from switch, to switch)."""


def on_scalar_network(register: bool, scalar_link_capacity: int) -> bool:
    """Whether a stream into a PCU travels the scalar network rather than the vector one.

    Plasticine (ISCA 2017) joins its units by three static networks through the same switches:
    a word-level scalar one, a multiple-word vector one and a bit-level control one. A register
    port (``register_problem``) takes one word, once, when its section starts: that is the
    scalar network's job, so its stream is routed there, on a target that has one
    (``Target.scalar_link_capacity`` above 0), and takes no room on the vector links; on a
    target without one (an older PEF's: 0) it rides the vector links like any stream."""
    return register and scalar_link_capacity > 0


def link_loads(
    routes: Iterable[tuple[Sequence[Sequence[int]], int | None]],
) -> tuple[dict[Link, int], dict[Link, int]]:
    """What ``routes`` (each its switches and, for a scalar route, the PMU whose value it
    carries, else None) load each link with: ``(vector, scalar)``.

    A vector link carries at most ``link_capacity`` routes, counted once a route however often
    it passes the link. A scalar link carries the values of at most ``scalar_link_capacity``
    PMUs: a switch copies a scalar onto every link its readers need (a broadcast tree), so the
    routes of one PMU's registers share one track of each link they pass (a PMU's few register
    words, read once when the section starts, follow one another on it: a word a cycle)."""
    vector: dict[Link, int] = {}
    sources: dict[Link, set[int]] = {}
    for hops, source in routes:
        passed = {((a[0], a[1]), (b[0], b[1])) for a, b in zip(hops, hops[1:], strict=False)}
        for link in passed:
            if source is None:
                vector[link] = vector.get(link, 0) + 1
            else:
                sources.setdefault(link, set()).add(source)
    return vector, {link: len(held) for link, held in sources.items()}
