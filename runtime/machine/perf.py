"""The performance model of the fabric: cycles, FLOPs and off-chip bytes of every section.

One documented place: the compiler's reports (``rdu-compile``: ``report.json``, the summary) and
the runtime's counters (``rdu-run --profile``) both come from here, from the configuration a PEF
holds and the figures of its target. Nothing is measured on the host; the model is fixed by the
configuration, so a run's counters are the model times the number of runs.

A PCU (counters ``c`` with extents ``S[c]``; ``R``: the reduced counters, output stride 0 and
extent above 1):

- **lanes**: the lanes counter ``L`` (``lanes_counter``: the innermost counter that is not
  reduced and has an extent above 1, else the innermost not reduced, else the innermost) is
  spread over the SIMD lanes, ``min(lanes, S[L])`` points a vector. ``lanes`` is the PCU's
  (``Pcu.lanes``, the target's ``pcu_lanes``), except in a **bf16 unit** (``unit_lanes``): one
  with at least one input stream and every input stream (an input port that is not a
  register) a bf16 PMU, a 32-bit lane taking two operands. It runs at the target's bf16 rate,
  ``lanes * bf16_lanes // pcu_lanes`` points a vector (``bf16_lanes``: the target's
  ``pcu_bf16_lanes``, or ``pcu_lanes`` when it gives none): on sn10 32 instead of 16. Its
  stages may be f32 inside and its output f32 (a bf16-mixed matmul widens its bf16 operands,
  multiplies and accumulates in f32): the rate is that of the operands the lanes take in, a
  bf16 multiply with f32 accumulation, as the vendor's bf16 peak counts it; an f32 output
  moves twice the bytes of a bf16 one, which its output vectors pay (``II_out`` below). A unit
  with any f32 (or i64, i1) input stream runs at ``pcu_lanes``. A bf16 unit may also put one
  element a lane (``pcu_lanes`` points a vector): it is modelled at the packing that takes
  fewer cycles (two a lane can lose where a vector's words crowd into few banks, a transposed
  read, or where the lanes counter's extent is not a multiple of the wider vector, 48 on 32
  lanes taking two vectors where 16 lanes take three full ones). The PEF does not record the
  packing; the emulator computes the same numbers either way.
- **depth** ``d`` (``runtime.machine.rules.unit_depth``): the stages the body takes, one an
  op; ``const`` and ``counter`` take none (immediates, the counter chain: ``Opcode.stages``). A
  combiner takes one stage, except that an ``add`` combiner fuses with a ``mul`` result into one
  multiply-add; a reduction over the lanes counter adds the cross-lane reduction tree,
  ``ceil(log2(min(lanes, S[L])))`` stages. ``d >= 1``.
- **passes** ``ceil(d / pcu_stages)``: a body deeper than the pipeline goes round it that often.
- **unroll** ``u``: a reduction puts ``u <= min(pcu_stages // d, S[U])`` copies of its body
  down the pipeline, each accumulating a different value of the unroll counter ``U`` (the
  innermost counter other than ``L`` that is not reduced and has an extent above 1): the
  outer-product mapping of a matrix multiply, where an operand that does not vary with ``U`` is
  read once a cycle and shared by the ``u`` copies, one that does not vary with ``L`` by the
  lanes. ``u`` is the smallest that takes the fewest cycles of the unit's streams
  (``vector_shape``: ``V`` times the input ports' stream cycles a vector, or the output's
  vectors times theirs, banks aside): a matmul's six rows of x ride one stream cycle, but a
  sum over a row whose every operand varies with ``U`` would only widen its stream ``u``
  times for the same cycles and complete its first result ``u`` times later (layer norm's
  sums: 48 cycles, not 192). ``u = 1`` without a reduction or without such a counter (an
  elementwise unit gains nothing: every copy would need its own output vector a cycle).
- **vectors** ``V = ceil(S[L] / lanes) * ceil(S[U] / u) * prod(S[c], other c)``.
- **initiation interval** ``II`` (cycles between vectors) is the largest of ``passes`` and, for
  every input port, the cycles its vector of operands takes: ``w`` elements (``min(lanes, S[L])``
  if the port varies with ``L``, times ``u`` if it varies with ``U``), which the stream moves in
  ``ceil(w * bytes / stream_bytes_per_cycle)`` cycles and the PMU's banks deliver in as many
  cycles as the most words that fall in one bank (``bank_cycles``; a bank gives one word a
  cycle, a word holding ``per_lane`` elements of the PMU's dtype, one f32 or two bf16:
  ``runtime.machine.opcodes.ELEMENT_TYPES``; element ``a`` is in word ``w = a // per_lane``, of
  bank ``(w + w * per_lane // skew) mod banks``, ``skew`` being the PMU's ``bank_skew`` in
  elements, 0 for none; with ``per_lane`` 1: ``(a + a // skew) mod banks``).
  A **register port** (``Port.register``: one address at every point, a scalar) is read once,
  when the section starts, into a register: it takes no cycles a vector (it sets no ``II``).
- **output**: ``prod(S[c], c not in R)`` elements, written in vectors the same way: a unit is
  also bound by ``out_vectors * II_out`` cycles.
- **fill**: ``pcu_stages * passes`` plus the hops of its longest input route (a hop a cycle).
- ``cycles(pcu) = max(V * II, out_vectors * II_out) + fill``.
- **FLOPs**: ``prod(S)`` times (the arithmetic stages, ``add sub mul div max min neg exp log
  sqrt rsqrt tanh erf cos sin abs pow``: ``Opcode.flops`` in ``runtime.machine.opcodes``, plus
  one for a combiner).
- a **parallel** PCU (``Pcu.parallel``, factors ``p``) is ``P = prod(p)`` copies running at
  once, each over its block of ``b[c] = ceil(S[c] / p[c])`` points of counter ``c``: its
  vectors, output vectors, lanes and unroll are one copy's (over the extents ``b``, the largest
  block), its fill the stages plus the hops of its longest input route (a multicast route's
  whole path); FLOPs are still over the whole space ``S``. It uses ``P`` PCUs.

A section runs its PCUs concurrently, streaming to each other through PMUs. The rules, each
tested on a hand-computed case in ``test/runtime/test_perf.py``:

1. **Dependences** (``unit_times``; cycles from the start of the section's run). A buffer's
   *first* element is there when its writer's first result is, its *last* when its writer
   ends; a buffer loaded from DRAM has its first element a DRAM latency after the start and its
   last once its bytes have followed at the DRAM bandwidth, in address order, or, for one in
   several PMUs (consecutive pieces of its addresses, ``Pmu.pmus``), its pieces filled at once
   (the load's requests interleaved over them; ``pieces_walk``), each in address order at one
   pace, when its readers can start sooner so (the latest of their starts; a parallel reader
   whose copies each walk a piece: MLP b256's first matmul on sn10, 8 copies over the 8 pieces
   of the batch, starts 305 cycles sooner: at 313, not 618). A route's hops delay only the data it
   carries: the fill counts the longest route into the PCU, so an input over a shorter one is
   there for it that many hops sooner (an operand multicast far from a home kept on chip
   does not hold up the input that arrives last). A PCU reading a buffer in the order
   it is written (``runtime.machine.rules.visit_order`` of both accesses equal; a DRAM buffer is
   written row-major, and one streamed in tiles is streamed in each reader's order) starts when
   the first element is there. **Rows** (``Walk``, ``walk_start``): a buffer is written in
   rows of consecutive addresses when its writer's leading counters walk them in increasing
   order, each iteration writing its own row only, or part of it from an offset inside the
   first (attention's keys, columns 48 to 95 of each token's ``[q | k | v]``, no longer
   waiting for the qkv matmul's end) (``rules.row_walk``: the leading counters
   flattened row-major, ``[8, 32, 48]`` written as 256 rows of 48, the lanes counter never
   split into rows; a DRAM load row-major, an element a row). A writer whose copies split
   those counters writes every copy's box of rows at once, each row-major, at one pace: a
   copy's rows are complete evenly between the buffer's first element and its last.
   Interleaved copies (``Pcu.interleaved``) take a split counter's rows in turn, row ``r``
   being the ``r // p``-th of its copy's: together they complete the rows in order, as one
   PCU would (a reader of whole blocks of rows, such as an attention's sequences, need not
   wait for the writer's end), and an interleaved reader's copies read them so. A PCU
   whose leading counters walk the buffer in rows the same way (a matmul reading the rows of
   its left operand, each row several times), parallel or not, reads it a row at a time: a
   copy reaches the ``i``-th row of its box ``i * steady / rows of a box`` cycles after it
   starts, and a row is there when every written row it overlaps is. The PCU starts when its
   last copy can start without reaching a row before it is there, and its first results
   follow its copies' first rows (they are paced by the writer's). A copy whose first row is
   the last of a writer's box waits for the writer's end: readers split as their writer
   (``[2, 2, 1]`` behind ``[4, 1]`` over the same 64 rows) follow it a row behind. A reader
   or a parallel writer of more than ``rules.ROWS_MOST`` rows is taken as reading (writing)
   the whole buffer. One reading a buffer in any other order (transposed, broadcast over an
   outer counter, gathered; a register port) starts only when the last element is there.
   ``start`` is the latest of these over its inputs, ``end = max(start + cycles(pcu), last
   input + fill)`` (it cannot finish before its inputs have). Its first result is there at
   ``start + fill + first_vectors * II`` (``start`` there being its copies' first rows for
   one reading in rows), ``first_vectors`` being the vectors of its counters
   from the outermost reduced one inwards (a matmul accumulating ``k`` innermost emits after
   its first ``k`` sweep); but a unit whose result is not written in one run (a reduction over
   an outer counter, such as ``dW = X^T dY`` summing over the tokens, which are the producer's
   streamed, outermost dimension) emits only at its ``end``, so every reader of it starts after
   it ends. ``compute`` is the latest ``end``, or the time the last output reaches DRAM (a
   DRAM latency after its buffer is complete).
2. **PMU banks**: every PMU serves its readers and writer from its banks: ``pmu = max over
   buffers of the cycles their banks are busy`` (the sum over its ports of vectors times
   ``bank_cycles``, shared by the ``pmus`` PMUs a buffer spans). A parallel PCU's port counts
   once a stream feeding it (a multicast stream is read once for all the copies it feeds), its
   output once a copy. A register port costs its PMU one cycle a stream feeding it (one
   read), not one a vector: a scalar read by many units does not serialise them.
3. **Links are shared** (``route_bytes``, ``busiest_link``): a switch-to-switch link moves
   ``stream_bytes_per_cycle`` bytes a cycle, whatever the number of streams on it, so ``link =
   max over links of the bytes of every route through it / stream_bytes_per_cycle``. A route
   carries: a load its PMU's off-chip bytes, a store its symbol's bytes, a stream into a PCU the
   vectors times the elements of its ports (a multicast once, for one copy; a register port
   its one element), a stream out of a PCU its output. A route on the scalar network
   (``Route.scalar``: into register ports, ``runtime.machine.rules.on_scalar_network``) is on
   no vector link: it carries one word, once, when the section starts, arriving within the
   unit's fill (its hops), and neither counts here nor among the links used.
4. **Off-chip traffic** (**bytes moved off-chip**): a PMU loaded from DRAM whose tensor fits its
   PMUs (``pmus * pmu_bytes``) is loaded once; a larger one is streamed in tiles for every
   reader, reloaded whenever the tile loop (counters outermost first, ``ceil(S[c] / tile[c])``
   tiles each) moves a counter the reader's access varies with: ``tiles / reuse * tile elements
   * bytes``, ``reuse`` being the tiles of the innermost counters (those of one tile aside) it
   does not vary with. A tensor a PCU writes that does not fit its PMUs spills: it goes off-chip
   once and comes back like a large input for each reader. Every section output is stored once.
   ``dram = latency + bytes / (dram_gbps / clock_ghz)`` cycles (0 without traffic), ``latency``
   being the target's ``dram_latency_ns``, paid once: requests are pipelined.
5. **Loading a section** (``load_cycles``): before it runs, its configuration, the section's
   bytes in the PEF, is read from DRAM at ``dram_gbps``, and loading takes the target's fixed
   ``config_latency_ns`` more. A section is loaded every time it runs (a step runs its sections
   in turn, so the fabric holds another one in between), unless the sections are co-resident
   (rule 7).
6. ``cycles(section) = load + max(compute, pmu, dram, link)``, the largest named by ``bound``.
7. **Symbols kept on chip** (``OnChip``, from the PEF's ``resident`` section,
   ``runtime.pef.schema.Residency``). When the sections are **co-resident** the fabric holds
   every section at once, so a section is loaded once a run, not once a step: its ``load`` is
   reported apart (``first_load``, with the first DRAM load of the on-chip state), and they
   run chained (rule 8). When they are loaded
   in turn around **pinned** homes (``Residency.co_resident`` false), each is loaded every run
   as rule 5 says, and ``first_load`` is the state's first DRAM load alone. Either way, a
   symbol kept on chip moves no DRAM bytes: a PMU loaded from it
   is either its home or a shared PMU on the home's slots (already holding it: its first
   element and its last are there at 0, unless an earlier chained section writes it, rule 8;
   in the home's own section, the old value its writer
   updates in place, ``rules.in_place_problem``, whose reads and the writes of the new value
   busy the same PMUs, rule 2) or filled by a hand-off, an on-chip copy from the
   home along the hand-off's route (its first element after the route's hops, its last once
   its bytes have followed at one stream's bytes a cycle, rule 8 for a home written earlier
   in the step; the route's links carry those
   bytes, rule 3; the copy writes the PMU's banks, a cycle a word a bank, and reads the
   home's when the home is in the same section, rule 2).
   A section output to an on-chip symbol is not stored: it is complete when its writer ends.
   The batch, the hyperparameters, the loss and the outputs still cross DRAM (rule 4).
8. **Co-resident sections are chained** (``chained_models``): configured together, they run
   as one dataflow graph, each unit starting when its inputs are there, whichever section
   wrote them (a step still ends before the next begins). Their times count from the start
   of the step. A PMU loaded from a symbol an earlier section of the step wrote has it as
   rule 1 has a buffer written in its own section: on the home's slots, when and in the order
   its writer writes it; through a hand-off, the copy following the writer over the route's
   hops (its last element a copy's time after the first, not before the writer's last; in the
   writer's order when that is address order, else read whole); through DRAM, a DRAM latency
   after the store (itself a latency after the writer's end), at the DRAM bandwidth. A unit
   that writes a symbol an earlier section reads starts no sooner than those reads are done
   (the readers' end; for a hand-off, its copy's). The step is the largest of the last end
   and the bounds of rules 2 to 4 over every section at once: a PMU slot's banks serve every
   section's ports on it, a link carries every section's routes, and DRAM every section's
   bytes. A section's ``cycles`` is what it adds to the step (its end less the previous
   sections', none when it ends sooner), the last one's the rest of the step: the sections'
   cycles add up to the step.

The latencies are the target's figures (our assumptions for every preset, see
``runtime/machine/targets.py``), 0 when a target gives none.

Peak: every stage of every lane of every PCU doing a multiply-add (2 FLOPs) a cycle,
``num_pcus * lanes * pcu_stages * 2``, ``lanes`` at the PEF's precision
(``runtime.machine.targets.peak_dtype``): ``pcu_lanes`` for ``fp32``, ``bf16_lanes`` for
``bf16-mixed`` and ``bf16`` (every section of a bf16-mixed PEF, the f32 optimizer included, is
judged against the bf16 peak, the figure a user of the machine is sold). ``fraction_of_peak =
FLOPs / (cycles * peak)``; the roofline bound is ``min(1, FLOPs / bytes off-chip * DRAM bytes a
cycle / peak)``, the fraction no mapping can beat with that much off-chip traffic.

Not modelled: control beyond the dependences (a unit starts as soon as its inputs are there),
the DRAM latency of each tile of a streamed tensor (requests are pipelined), several DRAM
channels' own bandwidths (one figure for all), and keeping a section loaded across runs unless
the sections are co-resident (rule 7); chained sections' DRAM loads each run at the whole
bandwidth from the step's start, as one section's do (rule 1), the DRAM bound counting them
all.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import msgspec

from runtime.machine.opcodes import DTYPE_BYTES, ELEMENT_TYPES, OPCODES
from runtime.machine.rules import (
    ROWS_MOST,
    copy_block,
    held,
    lanes_counter,
    reduced_counters,
    row_walk,
    unit_depth,
    visit_order,
)
from runtime.machine.targets import (
    bf16_lanes,
    dram_bytes_per_cycle,
    num_links,
    num_pcus,
    num_pmus,
    peak_dtype,
    peak_flops_per_cycle,
    stream_bytes,
)
from runtime.pef.schema import Access, Meta, Pcu, Port, Program, Residency, Section, Symbol, Target
from runtime.pef.wire import encode_section

T = TypeVar("T")
"""What ``critical_path`` gives back for each PCU."""

# -- the counters of a unit -----------------------------------------------------------------------


def unroll_counter(space: Sequence[int], out_strides: Sequence[int], lanes_at: int) -> int:
    """The counter a reduction unrolls down the pipeline (-1: none, see the module docstring)."""
    reduced = set(reduced_counters(space, out_strides))
    if not reduced:
        return -1
    wide = [c for c in range(len(space)) if c not in reduced and c != lanes_at and space[c] > 1]
    return wide[-1] if wide else -1


def bank_cycles(
    vector: Sequence[tuple[int, int]],
    banks: int,
    skew: int = 0,
    offset: int = 0,
    per_word: int = 1,
) -> int:
    """Cycles a PMU of ``banks`` banks takes to deliver one vector of elements: the most words
    that fall in one bank (a bank gives one word a cycle). ``vector`` lists ``(stride,
    count)``: the addresses are ``offset + sum of i * stride`` for ``i < count`` of each;
    element ``a`` is in word ``w = a // per_word`` (``per_word`` elements a word: 2 for bf16),
    which lives in bank ``(w + w * per_word // skew) % banks``; an address the vector reads
    twice takes two reads of its word."""
    addresses = [offset]
    for stride, count in vector:
        addresses = [a + i * stride for a in addresses for i in range(max(count, 1))]
    per_word = max(1, per_word)
    reads: dict[int, int] = {}  # address -> times the vector reads it
    for a in addresses:
        reads[a] = reads.get(a, 0) + 1
    word_reads: dict[int, int] = {}  # word -> reads of it (its elements come together)
    for a, n in reads.items():
        word_reads[a // per_word] = max(word_reads.get(a // per_word, 0), n)
    load: dict[int, int] = {}
    for word, n in word_reads.items():
        a = word * per_word
        bank = (word + (a // skew if skew > 0 else 0)) % banks
        load[bank] = load.get(bank, 0) + n
    return max(load.values(), default=1)


def unit_lanes(pcu: Pcu, section: Section, target: Target) -> int:
    """The points a vector of ``pcu`` spreads over its lanes (see the module docstring): the
    PCU's lanes, or in a bf16 unit (every input stream a bf16 PMU) the target's bf16 rate."""
    streams = [section.pmus[p.pmu].dtype for p in pcu.inputs if not p.register]
    return stream_lanes(pcu.lanes, streams, target)


def stream_lanes(lanes: int, streams: Sequence[str], target: Target) -> int:
    """``unit_lanes`` of a unit of ``lanes`` lanes whose input streams hold ``streams`` (their
    dtypes): the target's bf16 rate when there is one and all are bf16 (the compiler asks it
    of its units to choose bank skews and parallel factors)."""
    lanes = max(1, lanes)
    if streams and all(d == "bf16" for d in streams):
        return max(1, lanes * bf16_lanes(target) // max(1, target.pcu_lanes))
    return lanes


@dataclass(frozen=True)
class PortModel:
    """One stream of a PCU: an input port (``port >= 0``) or the output (``port == -1``)."""

    port: int
    pmu: int
    elements: int
    """Elements a vector."""
    stream_cycles: int
    bank_cycles: int
    register: bool = False
    """A register port: read once when the section starts (``stream_cycles`` and
    ``bank_cycles`` 0: no cycles a vector)."""

    @property
    def cycles(self) -> int:
        """Cycles a vector takes on this stream."""
        return max(self.stream_cycles, self.bank_cycles)


@dataclass(frozen=True)
class UnitModel:
    """One PCU under the model (see the module docstring)."""

    name: str
    iterations: int
    flops: int
    lanes: int
    depth: int
    passes: int
    unroll: int
    vectors: int
    ii: int
    out_vectors: int
    fill: int
    ports: tuple[PortModel, ...]
    bound: str
    """What sets the unit's time: "compute", "stream", "banks" (an input's), or "output"."""
    copies: int = 1
    """The PCUs it takes: ``prod(parallel)`` for a parallel PCU, else 1."""
    first_vectors: int = 0
    """Vectors it reads before its first result is complete: those of its counters from the
    outermost reduced one inwards (0 without a reduction)."""

    @property
    def steady(self) -> int:
        """Cycles without the fill."""
        return max(self.vectors * self.ii, self.out_vectors * self.ports[-1].cycles)

    @property
    def cycles(self) -> int:
        return self.steady + self.fill


@dataclass(frozen=True)
class VectorShape:
    """How a PCU walks its space a vector at a time: ``width`` points of the lanes counter and
    ``unroll`` points of the unroll counter (-1: none) per vector."""

    lanes_at: int
    width: int
    unroll_at: int
    unroll: int

    def along(self, strides: Sequence[int], space: Sequence[int]) -> list[tuple[int, int]]:
        """``(stride, count)`` of the elements one vector reads through an access."""
        along: list[tuple[int, int]] = []
        if _varies(strides, space, self.lanes_at):
            along.append((strides[self.lanes_at], self.width))
        if _varies(strides, space, self.unroll_at):
            along.append((strides[self.unroll_at], self.unroll))
        return along

    def stream_cycles(
        self,
        space: Sequence[int],
        streams: Sequence[tuple[Sequence[int], int]],
        link: int,
        out_elements: int,
    ) -> int:
        """Cycles the vectors over ``space`` take on their streams (``vector_shape``'s
        ``streams``, the output's last, and ``link``; the output's ``out_elements`` in vectors
        of its own), banks aside: at least a cycle a vector."""

        def elements(strides: Sequence[int]) -> int:
            return math.prod(n for _, n in self.along(strides, space))

        *ins, (out_strides, out_size) = streams
        per_vector = max([1, *(-(-elements(st) * size // link) for st, size in ins)])
        out_vectors = -(-out_elements // elements(out_strides))
        out_cycles = -(-elements(out_strides) * out_size // link)
        return max(self.vectors(space) * per_vector, out_vectors * out_cycles)

    def vectors(self, space: Sequence[int]) -> int:
        """Vectors over the whole space."""
        if math.prod(space) == 0:
            return 0
        n = 1
        for c, extent in enumerate(space):
            if c == self.lanes_at:
                n *= -(-extent // max(self.width, 1))
            elif c == self.unroll_at:
                n *= -(-extent // self.unroll)
            else:
                n *= extent
        return n


def vector_shape(
    space: Sequence[int],
    out_strides: Sequence[int],
    lanes: int,
    depth: int,
    stages: int,
    streams: Sequence[tuple[Sequence[int], int]],
    link: int,
) -> VectorShape:
    """The vector shape of a PCU of ``lanes`` lanes and ``stages`` stages running a body of
    ``depth`` stages over ``space`` (see the module docstring): its unroll the smallest that
    takes the fewest cycles of its streams (``streams``: each input stream's strides and
    element bytes, the output's last; ``link``: a stream's bytes a cycle)."""
    at_l = lanes_counter(space, out_strides)
    at_u = unroll_counter(space, out_strides, at_l)
    width = max(1, min(lanes, space[at_l]) if at_l >= 0 else 1)
    most = 1
    if at_u >= 0 and depth <= stages:
        most = max(1, min(stages // depth, space[at_u]))
    best = VectorShape(at_l, width, -1, 1)
    if most == 1:
        return best
    reduced = set(reduced_counters(space, out_strides))
    out_elements = math.prod(e for c, e in enumerate(space) if c not in reduced)
    fewest = best.stream_cycles(space, streams, link, out_elements)
    for unroll in range(2, most + 1):
        shape = VectorShape(at_l, width, at_u, unroll)
        cycles = shape.stream_cycles(space, streams, link, out_elements)
        if cycles < fewest:
            best, fewest = shape, cycles
    return best


def _varies(strides: Sequence[int], space: Sequence[int], c: int) -> bool:
    return c >= 0 and strides[c] != 0 and space[c] > 1


_UNIT_MODELS: dict[tuple[bytes, tuple[tuple[str, int, int], ...], Target, int], UnitModel] = {}
"""``unit_model``'s answers by what they depend on (``unit_model_key``)."""
UNIT_MODELS_HELD = 50_000
"""Answers ``_UNIT_MODELS`` holds at most: it starts again empty past that."""
_pcu_bytes = msgspec.msgpack.Encoder().encode


def unit_model_key(
    pcu: Pcu, section: Section, target: Target, in_hops: int
) -> tuple[bytes, tuple[tuple[str, int, int], ...], Target, int]:
    """All ``unit_model`` reads: the PCU (its bytes), the dtype, banks and skew of every PMU
    it reads or writes, the target and the hops. A compiler times a section again and again
    with a few of its units changed (parallelize-units' search): the others' models are the
    ones it had (GPT b8 on sn10: 2,484 distinct of 79,320)."""
    pmus = [section.pmus[p.pmu] for p in pcu.inputs]
    pmus.append(section.pmus[pcu.out_pmu])
    held = tuple((p.dtype, p.banks, p.bank_skew) for p in pmus)
    return _pcu_bytes(pcu), held, target, in_hops


def unit_model(pcu: Pcu, section: Section, target: Target, in_hops: int = 0) -> UnitModel:
    """The model of ``pcu``, one of ``section``'s (``in_hops``: its longest input route); a
    bf16 unit at the better of its two packings (see the module docstring). Remembered by
    ``unit_model_key``."""
    key = unit_model_key(pcu, section, target, in_hops)
    model = _UNIT_MODELS.get(key)
    if model is None:
        if len(_UNIT_MODELS) >= UNIT_MODELS_HELD:
            _UNIT_MODELS.clear()
        model = _UNIT_MODELS[key] = _better_packing(pcu, section, target, in_hops)
    return model


def _better_packing(pcu: Pcu, section: Section, target: Target, in_hops: int) -> UnitModel:
    packed = unit_lanes(pcu, section, target)
    plain = max(1, pcu.lanes)
    model = _unit_model(pcu, section, target, in_hops, packed)
    if packed == plain:
        return model
    one = _unit_model(pcu, section, target, in_hops, plain)
    return one if one.cycles < model.cycles else model


def _unit_model(pcu: Pcu, section: Section, target: Target, in_hops: int, lanes: int) -> UnitModel:
    iterations = math.prod(pcu.space)
    copies = math.prod(pcu.parallel) if pcu.parallel else 1
    space = pcu.space
    if pcu.parallel:  # one copy: the largest block
        space = list(copy_block(pcu.space, pcu.parallel))
    reduced = set(reduced_counters(space, pcu.out.strides))
    nin = len(pcu.inputs)
    result_op = pcu.stages[pcu.result - nin].op if pcu.result >= nin else None
    stage_ops = [st.op for st in pcu.stages]
    depth = unit_depth(stage_ops, pcu.combiner, result_op, space, pcu.out.strides, lanes)
    passes = -(-depth // target.pcu_stages)
    link = stream_bytes(target)
    streams = [
        (p.access.strides, DTYPE_BYTES[section.pmus[p.pmu].dtype])
        for p in pcu.inputs
        if not p.register
    ]
    streams.append((pcu.out.strides, DTYPE_BYTES[section.pmus[pcu.out_pmu].dtype]))
    shape = vector_shape(space, pcu.out.strides, lanes, depth, target.pcu_stages, streams, link)
    unroll = shape.unroll
    vectors = shape.vectors(space)

    def stream(pmu: int, strides: Sequence[int], offset: int, port: int) -> PortModel:
        along = shape.along(strides, space)
        elements = math.prod(n for _, n in along)
        buffer = section.pmus[pmu]
        nbytes = elements * DTYPE_BYTES[buffer.dtype]
        per_word = ELEMENT_TYPES[buffer.dtype].per_lane
        banks = bank_cycles(along, max(1, buffer.banks), buffer.bank_skew, offset, per_word)
        return PortModel(port, pmu, elements, -(-nbytes // link), banks)

    ports = [
        PortModel(k, p.pmu, 1, 0, 0, register=True)
        if p.register
        else stream(p.pmu, p.access.strides, p.access.offset, k)
        for k, p in enumerate(pcu.inputs)
    ]
    out = stream(pcu.out_pmu, pcu.out.strides, pcu.out.offset, -1)
    out_elements = math.prod(e for c, e in enumerate(space) if c not in reduced)
    out_vectors = -(-out_elements // max(out.elements, 1)) if math.prod(space) else 0
    ii = max([passes] + [p.cycles for p in ports])
    bound = "compute"
    if ii > passes:
        worst = max(ports, key=lambda p: p.cycles)
        bound = "banks" if worst.bank_cycles > worst.stream_cycles else "stream"
    if out_vectors * out.cycles > vectors * ii:
        bound = "output"
    first_vectors = 0
    if reduced:
        outermost = min(reduced)
        first_vectors = shape.vectors([1] * outermost + list(space[outermost:]))
    flops_each = sum(OPCODES[s.op].flops for s in pcu.stages)
    flops_each += 1 if pcu.combiner != "none" else 0
    return UnitModel(
        name=pcu.name,
        iterations=iterations,
        flops=iterations * flops_each,
        lanes=lanes,
        depth=depth,
        passes=passes,
        unroll=unroll,
        vectors=vectors,
        ii=ii,
        out_vectors=out_vectors,
        fill=target.pcu_stages * passes + in_hops,
        ports=(*ports, out),
        bound=bound,
        copies=copies,
        first_vectors=first_vectors,
    )


# -- symbols kept on chip (rule 7) ---------------------------------------------------------------


@dataclass(frozen=True)
class OnChip:
    """What rule 7 needs of one co-resident section: the symbols kept on chip, the hand-offs
    into its PMUs and the home PMUs it holds."""

    symbols: frozenset[int]
    """The symbols (indices into ``meta.symbols``) kept on chip."""
    co_resident: bool = True
    """The sections sit on the fabric together, configured once a run (else: loaded in turn,
    around the homes pinned for the symbols)."""
    handoffs: Mapping[int, tuple[list[list[int]], int]] = field(default_factory=dict)
    """PMU -> the hand-off filling it: its route's hops and the home PMU when the home is in
    this section (-1: another section's)."""
    in_place: Mapping[int, int] = field(default_factory=dict)
    """PMU -> the home PMU of this section on whose slots it sits: the old value of a symbol
    its home's writer updates in place (``runtime.machine.rules.in_place_problem``)."""


def on_chip(section: Section, resident: Residency | None) -> OnChip | None:
    """Rule 7's view of ``section`` when the program keeps symbols on chip, else None."""
    if resident is None:
        return None
    handoffs: dict[int, tuple[list[list[int]], int]] = {}
    in_place: dict[int, int] = {}
    for entry in resident.symbols:
        for h in entry.handoffs:
            if h.section == section.name:
                home = entry.pmu if entry.section == section.name else -1
                handoffs[h.pmu] = (h.hops, home)
        for shared in entry.shared:
            if shared.section == section.name == entry.section:
                in_place[shared.pmu] = entry.pmu
    symbols = frozenset(e.symbol for e in resident.symbols)
    return OnChip(symbols, resident.co_resident, handoffs, in_place)


def _resident_pmu(section: Section, i: int, onchip: OnChip | None) -> bool:
    """Whether PMU ``i`` of ``section`` is loaded from a symbol kept on chip."""
    pmu = section.pmus[i]
    return onchip is not None and pmu.source == "dram" and pmu.symbol in onchip.symbols


# -- off-chip traffic -----------------------------------------------------------------------------


def nbytes(shape: Sequence[int], dtype: str) -> int:
    """Bytes of a tensor of ``shape`` and ``dtype``."""
    return math.prod(shape) * DTYPE_BYTES[dtype]


def streamed_bytes(pcu: Pcu, strides: Sequence[int], dtype: str) -> int:
    """Bytes a PCU reads through an access when the tensor is streamed tile by tile (see the
    module docstring): tiles loaded times the elements of a tile."""
    trips = [-(-e // max(t, 1)) if e else 0 for e, t in zip(pcu.space, pcu.tile, strict=True)]
    reuse = 1
    for c in reversed(range(len(trips))):
        if trips[c] == 1:
            continue  # one tile: the loop never moves it
        if strides[c] != 0:
            break
        reuse *= trips[c]
    loads = math.prod(trips) // max(reuse, 1)
    tile = math.prod(
        min(t, e) for t, e, s in zip(pcu.tile, pcu.space, strides, strict=True) if s != 0
    )
    return loads * tile * DTYPE_BYTES[dtype]


@dataclass(frozen=True)
class Traffic:
    """A section's off-chip bytes: loaded from and stored to DRAM, and spilled (both ways)."""

    bytes_in: int
    bytes_out: int
    spilled: int

    @property
    def total(self) -> int:
        return self.bytes_in + self.bytes_out + self.spilled


def pmu_loads(section: Section, target: Target, onchip: OnChip | None = None) -> dict[int, int]:
    """Off-chip bytes each PMU moves in one run (see the module docstring): a PMU loaded from
    DRAM its loads, a PMU a PCU writes that does not fit its PMUs its spill (out and back); a
    PMU loaded from a symbol kept on chip none (rule 7)."""
    readers: dict[int, list[tuple[Pcu, list[int]]]] = {}
    for pcu in section.pcus:
        for port in pcu.inputs:
            readers.setdefault(port.pmu, []).append((pcu, port.access.strides))
    stored = {out.pmu for out in section.outputs}
    loads: dict[int, int] = {}
    for i, pmu in enumerate(section.pmus):
        size = nbytes(pmu.shape, pmu.dtype)
        if _resident_pmu(section, i, onchip):
            loads[i] = 0
            continue
        if held(size, pmu.pmus, target.pmu_bytes):
            loads[i] = size if pmu.source == "dram" else 0
            continue
        streamed = sum(streamed_bytes(p, s, pmu.dtype) for p, s in readers.get(i, []))
        if pmu.source == "dram":
            loads[i] = streamed if i in readers else size
        else:
            loads[i] = streamed + (0 if i in stored else size)
    return loads


def section_traffic(
    section: Section, symbols: Sequence[Symbol], target: Target, onchip: OnChip | None = None
) -> Traffic:
    """Off-chip bytes of one run of ``section`` (see the module docstring): a symbol kept on
    chip (rule 7) is neither loaded nor stored."""
    loads = pmu_loads(section, target, onchip)
    bytes_in = sum(n for i, n in loads.items() if section.pmus[i].source == "dram")
    spilled = sum(n for i, n in loads.items() if section.pmus[i].source != "dram")
    kept = onchip.symbols if onchip is not None else frozenset()
    stores = [symbols[o.symbol] for o in section.outputs if o.symbol not in kept]
    bytes_out = sum(nbytes(sym.shape, sym.dtype) for sym in stores)
    return Traffic(bytes_in, bytes_out, spilled)


# -- when each unit runs, and what the links carry ----------------------------------------------


def ns_to_cycles(ns: float, clock_ghz: float) -> int:
    """Whole cycles that ``ns`` nanoseconds take at ``clock_ghz``."""
    return math.ceil(ns * clock_ghz) if ns > 0 else 0


def _row_major(shape: Sequence[int]) -> list[int]:
    strides, step = [], 1
    for extent in reversed(shape):
        strides.append(step)
        step *= max(extent, 1)
    return strides[::-1]


def _written_order(pcu: Pcu) -> tuple[int, list[tuple[int, int]]] | None:
    """The order ``pcu`` writes its output in (None: not one run, or copies writing at once)."""
    if pcu.parallel:
        return None
    out = pcu.out
    return visit_order(pcu.space, out.strides, out.offset, out.index_port >= 0)


def _read_order(pcu: Pcu, access: Access) -> tuple[int, list[tuple[int, int]]] | None:
    """The order ``pcu`` reads a buffer through ``access`` in (None: not one run, or copies)."""
    if pcu.parallel:
        return None
    return visit_order(pcu.space, access.strides, access.offset, access.index_port >= 0)


def _walk(pcu: Pcu, access: Access, elements: int) -> Walk | None:
    """How ``pcu`` walks a buffer of ``elements`` through ``access`` in rows (``rules.row_walk``,
    its lanes counter kept whole), its copies split along them as ``pcu.parallel`` says."""
    return _walk_of(
        tuple(pcu.space),
        tuple(pcu.out.strides),
        tuple(access.strides),
        elements,
        access.offset,
        access.index_port >= 0,
        tuple(pcu.parallel),
        pcu.interleaved,
    )


@functools.lru_cache(maxsize=1 << 16)
def _walk_of(
    space: tuple[int, ...],
    out_strides: tuple[int, ...],
    strides: tuple[int, ...],
    elements: int,
    offset: int,
    indexed: bool,
    parallel: tuple[int, ...],
    interleaved: bool,
) -> Walk | None:
    """``_walk`` of a PCU by the fields it reads (a section is timed again and again)."""
    lanes = lanes_counter(space, out_strides)
    found = row_walk(space, strides, elements, offset, indexed, lanes)
    if found is None:
        return None
    counters, extents = found
    factors = tuple(parallel[c] if parallel else 1 for c in counters)
    return Walk(extents, factors, interleaved and any(f > 1 for f in factors))


def splits_rows(pcu: Pcu, section: Section) -> bool:
    """Whether ``pcu``'s copies split the rows it walks a buffer in (rule 1): whether their
    order (``Pcu.interleaved``) changes when its rows are read or written."""
    accesses = [(pcu.out_pmu, pcu.out), *((p.pmu, p.access) for p in pcu.inputs)]
    for pmu, access in accesses:
        walk = _walk(pcu, access, math.prod(section.pmus[pmu].shape))
        if walk is not None and not walk.one_run:
            return True
    return False


@dataclass(frozen=True)
class UnitTime:
    """When one PCU of a section runs, in cycles from the start of the section's run (once it
    is loaded): see the module docstring."""

    start: int
    """Its inputs are there for it to start (a parallel PCU: for its last copy to start)."""
    first: int
    """Its first result is there, for a reader that reads it in the order it is written."""
    end: int
    """Its last result is written."""


@dataclass(frozen=True)
class Walk:
    """A buffer walked in ``prod(extents)`` rows of consecutive addresses (rule 1), the rows
    numbered row-major over ``extents`` (the walking unit's leading counters, ``row_walk``);
    its copies split counter ``j`` ``factors[j]`` ways, each copy walking its box of rows
    (``ceil(extents[j] / factors[j])`` a counter) row-major, all at once and at one pace. A
    DRAM load, or one PCU writing in address order, is one copy walking every element."""

    extents: tuple[int, ...]
    factors: tuple[int, ...]
    interleaved: bool = False
    """The copies take the rows of each split counter in turn (``Pcu.interleaved``): copy
    ``k`` walks rows ``k, k + factor, ...`` of it, not a block of consecutive ones."""

    @property
    def rows(self) -> int:
        return math.prod(self.extents)

    @property
    def one_run(self) -> bool:
        """One copy: its rows in increasing order."""
        return all(f == 1 for f in self.factors)

    @property
    def box(self) -> int:
        """The rows a copy walks (its box; the last copies' may be smaller)."""
        return math.prod(-(-e // f) for e, f in zip(self.extents, self.factors, strict=True))

    def position(self, row: int) -> int:
        """Where ``row`` comes in its copy's walk (0: the copy's first)."""
        position, inner = 0, 1
        for extent, factor in zip(reversed(self.extents), reversed(self.factors), strict=True):
            block = -(-extent // factor)
            at = row % extent
            position += (at // factor if self.interleaved else at % block) * inner
            row //= extent
            inner *= block
        return position

    def stretches(self) -> set[int]:
        """The rows that begin a stretch of rows a copy walks one after another (row ``r + 1``
        right after ``r``): where the innermost counter enters a copy's block."""
        if self.one_run:
            return {0}
        if self.interleaved:  # a copy's next row is ``factor`` rows on: every row is one
            return set(range(self.rows))
        extent = self.extents[-1]
        block = -(-extent // self.factors[-1])
        return {o * extent + i for o in range(self.rows // extent) for i in range(0, extent, block)}


def walk_start(first: int, last: int, written: Walk, read: Walk, steady: int) -> tuple[int, int]:
    """``(start, begin)`` of a reader walking a buffer as ``read`` in ``steady`` cycles, the
    buffer written as ``written`` between ``first`` (its first element) and ``last``. A
    written row is complete when its copy gets past it, each copy's rows evenly between
    ``first`` and ``last``; a read row is there when every written row it overlaps is. A copy
    reaches its ``i``-th row ``i * steady / rows of a copy`` cycles after it starts. ``start``:
    when its last copy can start so that every row is there when the copy reaches it (it then
    runs without waiting); ``begin``: when every copy's first row is there (its first results
    follow, paced by the writer's)."""
    start, begin = _walk_waits(last - first, written, read, steady)
    return first + start, first + begin


@functools.lru_cache(maxsize=1 << 16)
def _walk_waits(span: int, written: Walk, read: Walk, steady: int) -> tuple[int, int]:
    """``walk_start`` counted from ``first`` (a section is timed again and again)."""
    box = read.box
    points, firsts, whole = _read_rows(written, read)
    start = 0
    for done, position in points:
        start = max(start, -(-done * span // whole) - position * steady // box)
    return start, -(-firsts * span // whole)


@functools.cache
def _read_rows(written: Walk, read: Walk) -> tuple[tuple[tuple[int, int], ...], int, int]:
    """``walk_start``'s rows, for any times: ``(done, position)`` of the read rows that can
    set the start, a read row being there ``done / whole`` of the way from the first element
    to the last and reached at ``position`` in its copy's walk; the largest ``done`` of a
    copy's first row; and ``whole``. Along a stretch of rows that both walks take one after
    another the wait changes evenly, so only the stretches' ends are looked at (to a cycle's
    rounding), and where a finer read enters a written row (a coarser one: every row); of
    those, only rows no other is both later done and sooner reached than."""
    rows = read.rows
    if written.one_run or written.rows <= rows:
        begins = read.stretches()
        if written.rows == rows:
            begins |= written.stretches()
        elif not written.one_run:  # finer reading: where a read row enters a written one
            for w in range(written.rows):
                begins |= {w * rows // written.rows, -(-w * rows // written.rows)}
        looked: Sequence[int] = sorted(begins | {b - 1 for b in begins if b} | {rows - 1})
    else:
        looked = range(rows)
    whole = written.rows if written.one_run else written.box
    points: dict[int, int] = {}  # done -> the soonest position
    firsts = 0
    for r in looked:
        if written.one_run:  # complete in address order: a read row needs its last address
            done = -(-(r + 1) * written.rows // rows)
        else:
            lo, hi = r * written.rows // rows, -(-(r + 1) * written.rows // rows)
            done = 1 + max(written.position(w) for w in range(lo, max(hi, lo + 1)))
        position = read.position(r)
        points[done] = min(points.get(done, position), position)
        if position == 0:
            firsts = max(firsts, done)
    kept: list[tuple[int, int]] = []
    for done in sorted(points, reverse=True):
        if not kept or points[done] < kept[-1][1]:
            kept.append((done, points[done]))
    return tuple(kept), firsts, whole


PIECE_ROWS = 256
"""A piece of a load into several PMUs is walked in at most this many rows (``pieces_walk``)."""


def pieces_walk(elements: int, pmus: int) -> Walk | None:
    """A DRAM load of ``elements`` into ``pmus`` consecutive pieces, the pieces written at once
    (the load's requests interleaved over them), each in address order; None for one PMU or
    pieces of unequal size."""
    if pmus <= 1 or elements % pmus:
        return None
    rows = elements // pmus
    while rows > PIECE_ROWS and rows % 2 == 0:
        rows //= 2
    return Walk((rows * pmus,), (pmus,))


def _rows_start(
    pcu: Pcu,
    access: Access,
    unit: UnitModel,
    elements: int,
    first: int,
    last: int,
    written: Walk | None,
) -> tuple[int, int]:
    """``(start, begin)`` of ``pcu`` reading a buffer of ``elements`` through ``access`` in
    rows (``walk_start``), the buffer written as ``written`` between ``first`` and ``last``;
    ``(last, last)`` when it reads no rows it can follow (the whole buffer first, rule 1)."""
    walk = _walk(pcu, access, elements)
    if walk is None or written is None or walk.rows > ROWS_MOST:
        return last, last
    return walk_start(first, last, written, walk, unit.steady)


def _readers_start(
    section: Section,
    readers: Sequence[tuple[Pcu, Port, UnitModel]],
    b: int,
    first: int,
    last: int,
    written: Walk,
) -> int:
    """The latest start of the PCUs reading PMU ``b`` through ``readers`` (each reading port,
    its PCU and the PCU's model; loaded from DRAM between ``first`` and ``last``, written as
    ``written``), from that buffer alone (rule 1)."""
    elements = math.prod(section.pmus[b].shape)
    latest = first
    for pcu, port, unit in readers:
        at = (
            last
            if port.register
            else _rows_start(pcu, port.access, unit, elements, first, last, written)[0]
        )
        latest = max(latest, at)
    return latest


def handoff_bytes(section: Section, i: int) -> int:
    """The bytes a hand-off into PMU ``i`` of ``section`` copies: its whole tensor."""
    pmu = section.pmus[i]
    return nbytes(pmu.shape, pmu.dtype)


def input_hops(section: Section) -> dict[tuple[int, int], int]:
    """The hops of the longest route from each PMU to each PCU of ``section`` that reads it,
    by ``(pcu, pmu)`` (a multicast route's whole path)."""
    hops: dict[tuple[int, int], int] = {}
    for route in section.routes:
        if route.src[0] == "pmu" and route.dst[0] == "pcu":
            key = (route.dst[1], route.src[1])
            hops[key] = max(hops.get(key, 0), len(route.hops) - 1)
    return hops


@dataclass(frozen=True)
class Arrival:
    """When a buffer a section reads is there, set from outside the section (rule 8: written
    earlier in the step by a chained section): its first element, its last, and how it is
    written (``visit_order``'s order, ``Walk``'s rows; None: readers wait for its last)."""

    first: int
    last: int
    order: tuple[int, list[tuple[int, int]]] | None = None
    walk: Walk | None = None


def unit_times(
    section: Section,
    units: Sequence[UnitModel],
    target: Target,
    loads: Mapping[int, int],
    onchip: OnChip | None = None,
    arrivals: Mapping[int, Arrival] | None = None,
    not_before: Mapping[int, int] | None = None,
) -> tuple[UnitTime, ...]:
    """When each PCU of ``section`` runs (see the module docstring); ``loads``: each PMU's
    off-chip bytes (``pmu_loads``); ``onchip``: the symbols kept on chip (rule 7);
    ``arrivals``: PMUs whose contents are there as given (rule 8); ``not_before``: PCUs that
    start no sooner than given (rule 8: they overwrite what an earlier section reads)."""
    return _unit_times(section, units, target, loads, onchip, arrivals, not_before)[0]


def _unit_times(
    section: Section,
    units: Sequence[UnitModel],
    target: Target,
    loads: Mapping[int, int],
    onchip: OnChip | None,
    arrivals: Mapping[int, Arrival] | None,
    not_before: Mapping[int, int] | None,
) -> tuple[tuple[UnitTime, ...], dict[int, Arrival]]:
    """``unit_times``, and when each PMU's contents are there (an ``Arrival`` a PMU)."""
    routed = input_hops(section)
    latency = ns_to_cycles(target.dram_latency_ns, target.clock_ghz)
    per_cycle = dram_bytes_per_cycle(target)
    first_at: dict[int, int] = {}  # PMU -> its first element is there
    all_at: dict[int, int] = {}  # PMU -> its last element is there
    written: dict[int, tuple[int, list[tuple[int, int]]] | None] = {}  # PMU -> its write order
    rows_at: dict[int, Walk] = {}  # PMU -> how its rows are written, for readers in rows
    tiled: set[int] = set()  # PMUs streamed from DRAM in tiles, in each reader's own order
    writers: dict[int, int] = {}
    for pcu in section.pcus:
        writers[pcu.out_pmu] = writers.get(pcu.out_pmu, 0) + 1
    readers: dict[int, list[tuple[Pcu, Port, UnitModel]]] = {}  # PMU -> its ports, PCU order
    for pcu, unit in zip(section.pcus, units, strict=True):
        for port in pcu.inputs:
            readers.setdefault(port.pmu, []).append((pcu, port, unit))
    for i, pmu in enumerate(section.pmus):
        if pmu.source != "dram":
            continue
        written[i] = visit_order(pmu.shape, _row_major(pmu.shape))
        rows_at[i] = Walk((math.prod(pmu.shape),), (1,))  # row-major, an element at a time
        if arrivals is not None and i in arrivals:  # written earlier in the step (rule 8)
            given = arrivals[i]
            first_at[i], all_at[i], written[i] = given.first, given.last, given.order
            if given.walk is None:
                rows_at.pop(i)
            else:
                rows_at[i] = given.walk
            continue
        if _resident_pmu(section, i, onchip):  # its home, or a copy from it (rule 7)
            assert onchip is not None
            handoff = onchip.handoffs.get(i)
            hops = len(handoff[0]) - 1 if handoff is not None else 0
            copy = -(-handoff_bytes(section, i) // stream_bytes(target)) if handoff else 0
            first_at[i], all_at[i] = hops, hops + copy
            continue
        first_at[i] = latency
        all_at[i] = latency + (math.ceil(loads[i] / per_cycle) if math.isfinite(per_cycle) else 0)
        if not held(nbytes(pmu.shape, pmu.dtype), pmu.pmus, target.pmu_bytes):
            tiled.add(i)
            continue
        pieces = pieces_walk(math.prod(pmu.shape), pmu.pmus)
        mine = readers.get(i, [])
        if pieces is not None and _readers_start(
            section, mine, i, first_at[i], all_at[i], pieces
        ) < _readers_start(section, mine, i, first_at[i], all_at[i], rows_at[i]):
            rows_at[i] = pieces
            written[i] = None
    times: list[UnitTime] = []
    for i, (pcu, unit) in enumerate(zip(section.pcus, units, strict=True)):
        longest = unit.fill - target.pcu_stages * unit.passes  # the fill's hops
        start = begin = not_before.get(i, 0) if not_before else 0  # begin: its (last copy's)
        last_input = 0  # first inputs are there
        for port in pcu.inputs:
            b = port.pmu
            lead = longest - routed.get((i, b), longest)  # a shorter route: there sooner
            first, last = first_at.get(b, 0) - lead, all_at.get(b, 0) - lead
            last_input = max(last_input, last)
            if port.register:  # read once, complete
                start, begin = max(start, last), max(begin, last)
                continue
            order = _read_order(pcu, port.access)
            if b in tiled or (order is not None and order == written.get(b)):
                start, begin = max(start, first), max(begin, first)  # streams, as it arrives
                continue
            elements = math.prod(section.pmus[b].shape)
            at, first_row = _rows_start(
                pcu, port.access, unit, elements, first, last, rows_at.get(b)
            )  # in rows, or the whole buffer first
            start, begin = max(start, at), max(begin, first_row)
        end = max(start + unit.cycles, last_input + unit.fill)
        out = pcu.out_pmu
        elements = math.prod(section.pmus[out].shape)
        order = _written_order(pcu)
        walk = _walk(pcu, pcu.out, elements)
        first = end
        if order is not None or walk is not None:
            first = min(end, begin + unit.fill + unit.first_vectors * unit.ii)
        times.append(UnitTime(start, first, end))
        first_at[out] = max(first_at.get(out, 0), first)
        all_at[out] = max(all_at.get(out, 0), end)
        written[out] = order
        if writers[out] > 1:
            rows_at.pop(out, None)
        elif order == (0, [(elements, 1)]):
            rows_at[out] = Walk((elements,), (1,))
        elif walk is not None and (walk.one_run or walk.rows <= ROWS_MOST):
            rows_at[out] = walk
    there = {b: Arrival(first_at[b], all_at[b], written.get(b), rows_at.get(b)) for b in first_at}
    return tuple(times), there


def critical_path(
    section: Section, units: Sequence[T], times: Sequence[UnitTime]
) -> tuple[tuple[T, ...], tuple[T, ...]]:
    """The units (``units[i]`` standing for PCU ``i`` of ``section``, ``times`` theirs) of the
    critical chain: from the one that ends last back through the writer of its input that ends
    last, and so on; ordered by how long after that writer each ends, and in the order they
    wait for each other (the compiler's ``Timing.path`` and ``Timing.chain``)."""
    writers: dict[int, list[int]] = {}
    for i, pcu in enumerate(section.pcus):
        writers.setdefault(pcu.out_pmu, []).append(i)
    at: int | None = max(range(len(units)), key=lambda i: times[i].end, default=None)
    adds: dict[int, int] = {}
    while at is not None and at not in adds:
        pcu = section.pcus[at]
        before = [w for port in pcu.inputs for w in writers.get(port.pmu, []) if w != at]
        writer = max(before, key=lambda w: times[w].end, default=None)
        adds[at] = times[at].end - (times[writer].end if writer is not None else 0)
        at = writer
    path = tuple(units[i] for i in sorted(adds, key=lambda i: -adds[i]))
    return path, tuple(units[i] for i in reversed(adds))


def compute_cycles(
    section: Section,
    times: Sequence[UnitTime],
    target: Target,
    loads: Mapping[int, int],
    onchip: OnChip | None = None,
) -> int:
    """When the last unit of ``section`` ends, or the last output reaches DRAM (a DRAM
    latency after its PMU is complete; an output kept on chip is not stored, rule 7)."""
    latency = ns_to_cycles(target.dram_latency_ns, target.clock_ghz)
    per_cycle = dram_bytes_per_cycle(target)
    done = max((t.end for t in times), default=0)
    writer = {pcu.out_pmu: t.end for pcu, t in zip(section.pcus, times, strict=True)}
    kept = onchip.symbols if onchip is not None else frozenset()
    for out in section.outputs:
        if out.symbol in kept:
            continue
        complete = writer.get(out.pmu)
        if complete is None:  # a PMU loaded from DRAM and stored again (a PCU-less piece)
            load = loads.get(out.pmu, 0)
            complete = latency + (math.ceil(load / per_cycle) if math.isfinite(per_cycle) else 0)
        done = max(done, complete + latency)
    return done


def route_bytes(
    section: Section,
    units: Sequence[UnitModel],
    symbols: Sequence[Symbol],
    loads: Mapping[int, int],
    onchip: OnChip | None = None,
) -> list[int]:
    """Bytes each route of ``section`` carries in one run: a load its PMU's off-chip bytes, a
    store its symbol's bytes (none for a symbol kept on chip, rule 7), a stream into a PCU the
    vectors times the elements its ports read (shared evenly by the routes between the same PMU
    and PCU; a multicast carries one copy's port once), a stream out of a PCU its output (one
    copy's, a route a copy)."""
    kept = onchip.symbols if onchip is not None else frozenset()
    port_bytes: dict[tuple[int, int], list[int]] = {}  # (pmu, pcu) -> bytes of each port
    out_bytes: list[int] = []
    for i, unit in enumerate(units):
        for port in unit.ports:
            size = DTYPE_BYTES[section.pmus[port.pmu].dtype]
            if port.port >= 0:
                moved = size if port.register else unit.vectors * port.elements * size
                port_bytes.setdefault((port.pmu, i), []).append(moved)
            else:
                out_bytes.append(unit.out_vectors * port.elements * size)
    plain_routes: dict[tuple[int, int], int] = {}
    for route in section.routes:
        if route.src[0] == "pmu" and route.dst[0] == "pcu" and not route.taps:
            key = (route.src[1], route.dst[1])
            plain_routes[key] = plain_routes.get(key, 0) + 1
    carried: list[int] = []
    for route in section.routes:
        (src, a), (dst, b) = route.src, route.dst
        if src == "dram":
            carried.append(loads.get(b, 0))
        elif dst == "dram":
            carried.append(0 if b in kept else nbytes(symbols[b].shape, symbols[b].dtype))
        elif src == "pmu" and route.taps:
            carried.append(max(port_bytes.get((a, b), [0])))
        elif src == "pmu":
            total = sum(port_bytes.get((a, b), []))
            carried.append(-(-total // plain_routes[(a, b)]))
        else:
            carried.append(out_bytes[a])
    return carried


def busiest_link_bytes(routes: Iterable[tuple[Sequence[Sequence[int]], int]]) -> int:
    """The bytes the busiest switch-to-switch link moves: those of every route through it
    (``routes``: each its switches and its bytes), a route counted each time it passes."""
    load: dict[tuple[tuple[int, int], tuple[int, int]], int] = {}
    for hops, moved in routes:
        for a, b in zip(hops, hops[1:], strict=False):
            link = ((a[0], a[1]), (b[0], b[1]))
            load[link] = load.get(link, 0) + moved
    return max(load.values(), default=0)


def busiest_link(routes: Iterable[tuple[Sequence[Sequence[int]], int]], target: Target) -> int:
    """Rule 3: the cycles the busiest switch-to-switch link needs for the bytes of every
    route through it (``busiest_link_bytes``), at one stream's bytes a cycle: the streams on a
    link share its bandwidth."""
    return -(-busiest_link_bytes(routes) // stream_bytes(target))


def load_cycles(section: Section, target: Target) -> int:
    """Cycles loading ``section`` onto the fabric takes: its configuration (the section's bytes
    in the PEF) read from DRAM, plus the target's fixed ``config_latency_ns``."""
    per_cycle = dram_bytes_per_cycle(target)
    config = len(encode_section(section))
    read = math.ceil(config / per_cycle) if math.isfinite(per_cycle) else 0
    return ns_to_cycles(target.config_latency_ns, target.clock_ghz) + read


# -- a section ------------------------------------------------------------------------------------


def cycles_to_seconds(cycles: float, clock_ghz: float) -> float:
    """The time ``cycles`` take at ``clock_ghz``."""
    return cycles / (clock_ghz * 1e9)


def fraction_of_peak(flops: float, cycles: float, peak_flops_per_cycle: float) -> float:
    """``flops`` over what the whole fabric could do in ``cycles`` (0 for no cycles)."""
    return flops / (cycles * peak_flops_per_cycle) if cycles else 0.0


@dataclass(frozen=True)
class SectionModel:
    """One run of a section under the model (see the module docstring)."""

    section: str
    units: tuple[UnitModel, ...]
    pcus_used: int
    pmus_used: int
    links_used: int
    pcus_available: int
    pmus_available: int
    links_available: int
    compute_cycles: int
    """When the last unit ends (its outputs in DRAM), its units running as ``times`` says."""
    fill_cycles: int
    """The fills of the longest chain of PCUs (part of ``compute_cycles``)."""
    pmu_cycles: int
    dram_cycles: int
    link_cycles: int
    """The busiest link's bytes at one stream's bytes a cycle."""
    load_cycles: int
    """Loading the section's configuration, before it runs (once a run when co-resident)."""
    cycles: int
    """``load_cycles`` plus the largest of compute, PMU, DRAM and link cycles (without
    ``load_cycles`` when co-resident: rule 7)."""
    bound: str
    """What sets the section's time: "compute" (its PCUs), "pmu", "dram" or "link"."""
    flops: int
    traffic: Traffic
    clock_ghz: float
    peak_flops_per_cycle: int
    dram_bytes_per_cycle: float
    times: tuple[UnitTime, ...] = ()
    """When each PCU runs (``unit_times``), in the order of ``units``."""
    resident: bool = False
    """Co-resident with the program's other sections (rule 7): loaded once a run, and chained
    with them (rule 8): ``times`` and ``compute_cycles`` count from the start of the step, and
    ``cycles`` is what the section adds to the step."""
    chained_from: int = 0
    """Chained (rule 8): the step's cycles before this section's (the previous sections'
    ``cycles``); its ``times`` count from the step's start, that many cycles before its own."""
    pmu_busy: Mapping[int, int] = field(default_factory=dict, repr=False)
    """Rule 2: the cycles each PMU's banks are busy (by PMU index)."""
    link_routes: tuple[tuple[Sequence[Sequence[int]], int], ...] = field(default=(), repr=False)
    """Rule 3: every route on the vector links and the bytes it carries (the hand-offs' too)."""

    @property
    def dram_bytes(self) -> int:
        """Bytes moved off-chip (loads, stores and spills)."""
        return self.traffic.total

    @property
    def seconds(self) -> float:
        """Modelled time at the target's clock."""
        return cycles_to_seconds(self.cycles, self.clock_ghz)

    @property
    def span_cycles(self) -> int:
        """The cycles its units and its traffic take: its ``cycles``, or chained (rule 8) from
        the step's start to its end."""
        return self.chained_from + self.cycles

    @property
    def fraction_of_peak(self) -> float:
        """FLOPs over what the whole fabric could do in the section's span."""
        return fraction_of_peak(self.flops, self.span_cycles, self.peak_flops_per_cycle)

    @property
    def roofline_fraction(self) -> float:
        """The fraction of peak the section's off-chip traffic allows at most."""
        if self.dram_bytes == 0:
            return 1.0
        attainable = self.flops / self.dram_bytes * self.dram_bytes_per_cycle
        return min(1.0, attainable / self.peak_flops_per_cycle)


def _links(section: Section) -> int:
    """The vector links the routes of ``section`` use (the scalar network's aside)."""
    links: set[tuple[tuple[int, int], tuple[int, int]]] = set()
    for route in section.routes:
        if route.scalar:
            continue
        for a, b in zip(route.hops, route.hops[1:], strict=False):
            links.add(((a[0], a[1]), (b[0], b[1])))
    return len(links)


def port_busy(units: Sequence[UnitModel], streams: Mapping[tuple[int, int], int]) -> dict[int, int]:
    """Rule 2: the cycles each PMU's banks are busy serving the ports of ``units`` (by PMU
    index): an input port its vectors times its bank cycles once a stream feeding it
    (``streams``: by ``(pmu, pcu)``, the multicast streams between them; 1 if absent), a
    register port one read a stream, an output its vectors once a copy."""
    busy: dict[int, int] = {}
    for i, unit in enumerate(units):
        for port in unit.ports:
            vectors = unit.vectors if port.port >= 0 else unit.out_vectors
            times = unit.copies if port.port < 0 else streams.get((port.pmu, i), 1)
            reads = 1 if port.register else vectors * port.bank_cycles  # a register: one read
            busy[port.pmu] = busy.get(port.pmu, 0) + reads * times
    return busy


def pmu_bound(section: Section, busy: Mapping[int, int]) -> int:
    """Rule 2's bound: the busiest buffer's cycles, shared by the PMUs it spans."""
    return max((-(-n // max(1, section.pmus[i].pmus)) for i, n in busy.items()), default=0)


def model_section(section: Section, meta: Meta, resident: Residency | None = None) -> SectionModel:
    """The model of one run of ``section`` of a program whose meta is ``meta``; ``resident``:
    the program's co-residency (rule 7), if it has one."""
    onchip = on_chip(section, resident)
    return section_model(section, meta.target, meta.symbols, onchip, meta.precision())


def section_model(
    section: Section,
    target: Target,
    symbols: Sequence[Symbol],
    onchip: OnChip | None = None,
    precision: str = "fp32",
) -> SectionModel:
    """``model_section`` of a section whose symbols are ``symbols``, rule 7's view of it given
    (``onchip``: the compiler's, before the PEF's ``resident`` section is written), its peak
    that of ``precision``."""
    in_hops: dict[int, int] = {}
    for route in section.routes:
        if route.dst[0] == "pcu":
            i = route.dst[1]
            in_hops[i] = max(in_hops.get(i, 0), len(route.hops) - 1)
    units = tuple(
        unit_model(p, section, target, in_hops.get(i, 0)) for i, p in enumerate(section.pcus)
    )
    # The fills of the longest chain: a PCU's first result waits for its inputs' producers.
    ready: dict[int, int] = {}  # PMU -> cycles until its first element is there
    fill = 0
    for pcu, unit in zip(section.pcus, units, strict=True):
        start = max((ready.get(p.pmu, 0) for p in pcu.inputs), default=0)
        done = start + unit.fill
        ready[pcu.out_pmu] = max(ready.get(pcu.out_pmu, 0), done)
        fill = max(fill, done)
    loads = pmu_loads(section, target, onchip)
    timeline = unit_times(section, units, target, loads, onchip)
    compute = compute_cycles(section, timeline, target, loads, onchip)
    streams: dict[tuple[int, int], int] = {}  # (pmu, pcu) -> multicast routes between them
    for route in section.routes:
        if route.taps and route.src[0] == "pmu":
            key = (route.src[1], route.dst[1])
            streams[key] = streams.get(key, 0) + 1
    busy = port_busy(units, streams)
    handoffs: list[tuple[list[list[int]], int]] = []
    for i, (hops, home) in (onchip.handoffs if onchip is not None else {}).items():
        buffer = section.pmus[i]  # a copy writes its banks (and reads its home's), a word a bank
        words = -(-math.prod(buffer.shape) // ELEMENT_TYPES[buffer.dtype].per_lane)
        for at in (i, home) if home >= 0 else (i,):
            banks = max(1, section.pmus[at].banks)
            busy[at] = busy.get(at, 0) + -(-words // banks)
        handoffs.append((hops, handoff_bytes(section, i)))
    in_place = onchip.in_place if onchip is not None else {}
    for i, home in in_place.items():  # the old value's reads and the new one's writes: one PMU
        busy[home] = busy.get(home, 0) + busy.pop(i, 0)
    pmu = pmu_bound(section, busy)
    traffic = section_traffic(section, symbols, target, onchip)
    per_cycle = dram_bytes_per_cycle(target)
    dram = 0
    if traffic.total and math.isfinite(per_cycle):
        latency = ns_to_cycles(target.dram_latency_ns, target.clock_ghz)
        dram = latency + math.ceil(traffic.total / per_cycle)
    carried = route_bytes(section, units, symbols, loads, onchip)
    link_routes = (
        *(
            (r.hops, moved)
            for r, moved in zip(section.routes, carried, strict=True)
            if not r.scalar
        ),
        *handoffs,
    )
    links = busiest_link(link_routes, target)
    bounds = {"compute": compute, "dram": dram, "pmu": pmu, "link": links}
    bound = max(bounds, key=lambda k: bounds[k])  # the first of the largest
    load = load_cycles(section, target)
    co_resident = onchip is not None and onchip.co_resident
    cycles = bounds[bound] + (0 if co_resident else load)  # co-resident: loaded once
    return SectionModel(
        section=section.name,
        units=units,
        pcus_used=sum(u.copies for u in units),
        pmus_used=sum(max(1, p.pmus) for i, p in enumerate(section.pmus) if i not in in_place),
        links_used=_links(section),
        pcus_available=num_pcus(target),
        pmus_available=num_pmus(target),
        links_available=num_links(target),
        compute_cycles=compute,
        fill_cycles=fill,
        pmu_cycles=pmu,
        dram_cycles=dram,
        link_cycles=links,
        load_cycles=load,
        cycles=cycles,
        bound=bound,
        flops=sum(u.flops for u in units),
        traffic=traffic,
        clock_ghz=target.clock_ghz,
        peak_flops_per_cycle=peak_flops_per_cycle(target, peak_dtype(precision)),
        dram_bytes_per_cycle=per_cycle,
        times=timeline,
        resident=co_resident,
        pmu_busy=busy,
        link_routes=link_routes,
    )


def program_models(program: Program) -> list[SectionModel]:
    """The model of one run of every section of ``program``, in run order (rule 7 applied to
    co-resident sections, which rule 8 chains)."""
    models = [model_section(s, program.meta, program.resident) for s in program.sections]
    if program.resident is not None and program.resident.co_resident:
        return chained_models(program, models)
    return models


def _arrival_in(
    section: Section, i: int, onchip: OnChip, written: Arrival, load: int, target: Target
) -> Arrival:
    """Rule 8: when PMU ``i`` of ``section``, loaded from a symbol an earlier section wrote
    (``written``: how it arrived in its writer's PMU), has it."""
    handoff = onchip.handoffs.get(i)
    pmu = section.pmus[i]
    if pmu.symbol not in onchip.symbols:  # stored to DRAM, then loaded again (rule 4)
        latency = ns_to_cycles(target.dram_latency_ns, target.clock_ghz)
        per_cycle = dram_bytes_per_cycle(target)
        first = written.last + 2 * latency
        follow = math.ceil(load / per_cycle) if math.isfinite(per_cycle) else 0
        order = visit_order(pmu.shape, _row_major(pmu.shape))
        return Arrival(first, first + follow, order, Walk((math.prod(pmu.shape),), (1,)))
    if handoff is None:  # its home, or a PMU on the home's slots: the writer's own
        return written
    hops = len(handoff[0]) - 1  # a copy along the route, at one stream's bytes a cycle
    copy = -(-handoff_bytes(section, i) // stream_bytes(target))
    last = max(written.last, written.first + copy) + hops
    in_order = written.walk is not None and written.walk.one_run
    if in_order:
        return Arrival(written.first + hops, last, written.order, written.walk)
    return Arrival(written.first + hops, last)


def chained_models(program: Program, models: Sequence[SectionModel]) -> list[SectionModel]:
    """Rule 8: the co-resident sections of ``program`` (their models alone: ``models``) run
    chained, as one dataflow graph: each unit starts when its inputs are there, whichever
    section wrote them, and no unit overwrites a symbol before the earlier sections' readers
    of its old value are done. Returns the models with ``times`` and ``compute_cycles`` from
    the start of the step, ``cycles`` what each adds to the step (the step's end so far less
    the previous section's), the last one taking the step's throughput bounds too."""
    target = program.meta.target
    written: dict[int, Arrival] = {}  # symbol -> how its newest value this step arrives
    read_until: dict[int, int] = {}  # symbol -> when the earlier sections are done with it
    chained: list[SectionModel] = []
    step = 0
    for section, model in zip(program.sections, models, strict=True):
        onchip = on_chip(section, program.resident)
        assert onchip is not None
        loads = pmu_loads(section, target, onchip)
        arrivals = {
            i: _arrival_in(section, i, onchip, written[pmu.symbol], loads.get(i, 0), target)
            for i, pmu in enumerate(section.pmus)
            if pmu.source == "dram" and pmu.symbol in written
        }
        stores = {out.pmu: out.symbol for out in section.outputs}
        not_before = {
            j: read_until[stores[pcu.out_pmu]]
            for j, pcu in enumerate(section.pcus)
            if stores.get(pcu.out_pmu, -1) in read_until
        }
        times, there = _unit_times(
            section, model.units, target, loads, onchip, arrivals, not_before
        )
        compute = compute_cycles(section, times, target, loads, onchip)
        for i, pmu in enumerate(section.pmus):
            if pmu.source != "dram" or pmu.symbol < 0:
                continue
            ends = [t.end for pcu, t in zip(section.pcus, times, strict=True)
                    if any(p.pmu == i for p in pcu.inputs)]  # fmt: skip
            done = max(ends, default=0)
            if i in onchip.handoffs:  # the home is free once copied
                done = there[i].last
            read_until[pmu.symbol] = max(read_until.get(pmu.symbol, 0), done)
        writes = {pcu.out_pmu for pcu in section.pcus}
        for out in section.outputs:
            if out.pmu in writes:
                written[out.symbol] = there[out.pmu]
        end = max(step, compute)
        chained.append(
            replace(
                model,
                times=times,
                compute_cycles=compute,
                cycles=end - step,
                bound="compute",
                chained_from=step,
            )
        )
        step = end
    busy: dict[tuple[int, ...], int] = {}  # PMU slot -> its banks' busy cycles, every section's
    spans: dict[tuple[int, ...], int] = {}
    for section, model in zip(program.sections, models, strict=True):
        for i, n in model.pmu_busy.items():
            slot = tuple(section.pmus[i].at)
            busy[slot] = busy.get(slot, 0) + n
            spans[slot] = max(1, section.pmus[i].pmus)
    per_cycle = dram_bytes_per_cycle(target)
    moved = sum(m.traffic.total for m in models)
    bounds = {
        "compute": step,
        "dram": (
            ns_to_cycles(target.dram_latency_ns, target.clock_ghz) + math.ceil(moved / per_cycle)
            if moved and math.isfinite(per_cycle)
            else 0
        ),
        "pmu": max((-(-n // spans[slot]) for slot, n in busy.items()), default=0),
        "link": busiest_link([r for m in models for r in m.link_routes], target),
    }
    bound = max(bounds, key=lambda k: bounds[k])
    last = chained[-1]
    chained[-1] = replace(last, cycles=last.cycles + bounds[bound] - step, bound=bound)
    return chained


def first_load_cycles(program: Program, models: Sequence[SectionModel]) -> int:
    """Rule 7's one-time cost of a run that keeps symbols on chip, before the first step: when
    the sections are co-resident, every section's configuration (``load_cycles``, one DRAM
    request and one configuration latency each); and the on-chip symbols a step reads before
    writing them (the state, loaded from DRAM into their homes once: their bytes at the DRAM
    bandwidth). 0 without symbols on chip."""
    resident = program.resident
    if resident is None:
        return 0
    meta = program.meta
    state = 0
    for entry in resident.symbols:
        symbol = meta.symbols[entry.symbol]
        if symbol.role in ("parameter", "buffer", "optimizer_state"):
            state += nbytes(symbol.shape, symbol.dtype)
    per_cycle = dram_bytes_per_cycle(meta.target)
    read = math.ceil(state / per_cycle) if state and math.isfinite(per_cycle) else 0
    configure = sum(m.load_cycles for m in models) if resident.co_resident else 0
    return configure + read


# -- counters of a run ----------------------------------------------------------------------------


@dataclass
class SectionCounters:
    """One section's counters: the model of one run, and how many runs and how much host
    (emulation) time they took. The fabric counts these while it runs."""

    model: SectionModel
    runs: int = 0
    host_seconds: float = field(default=0.0)

    @property
    def section(self) -> str:
        return self.model.section

    @property
    def units(self) -> tuple[UnitModel, ...]:
        return self.model.units

    @property
    def cycles(self) -> int:
        """Modelled cycles of one run."""
        return self.model.cycles

    @property
    def clock_ghz(self) -> float:
        return self.model.clock_ghz

    @property
    def dram_bytes_in(self) -> int:
        return self.model.traffic.bytes_in

    @property
    def dram_bytes_out(self) -> int:
        return self.model.traffic.bytes_out

    @property
    def seconds(self) -> float:
        """Modelled time of one run at the target's clock."""
        return self.model.seconds

    @property
    def total_cycles(self) -> int:
        """Modelled cycles over all runs so far."""
        return self.model.cycles * self.runs


def section_counters(
    section: Section, meta: Meta, resident: Residency | None = None
) -> SectionCounters:
    """Fresh counters (no run yet) of ``section`` (``resident``: the program's co-residency)."""
    return SectionCounters(model_section(section, meta, resident))


_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""))
_SMALL = ((1e-3, "m"), (1e-6, "u"), (1e-9, "n"))


def si(x: float, unit: str) -> str:
    """``x`` with an SI prefix and three significant digits: ``1.23 GB``, ``4.5 us``."""
    if x == 0:
        return f"0 {unit}"
    x = float(f"{x:.3g}")  # rounded first, so that 999.96 is 1.00 k, not 1e+03
    for scale, prefix in _PREFIXES if abs(x) >= 1 else _SMALL:
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def format_models(models: Sequence[SectionModel], runs: Sequence[int] | None = None) -> str:
    """A table, a line a section (times ``runs`` of each if given), then the total."""
    head = (
        f"{'section':<12}{'PCUs':>11}{'PMUs':>11}{'links':>12}{'cycles':>13}{'time':>11}"
        f"{'FLOPs':>11}{'off-chip':>11}{'peak':>7}{'roof':>7}  bound"
    )
    if runs is not None:
        head += f"{'runs':>8}"
    lines = [head]
    for k, m in enumerate(models):
        n = 1 if runs is None else runs[k]
        line = (
            f"{m.section:<12}{f'{m.pcus_used}/{m.pcus_available}':>11}"
            f"{f'{m.pmus_used}/{m.pmus_available}':>11}"
            f"{f'{m.links_used}/{m.links_available}':>12}{m.cycles * n:>13}"
            f"{si(m.seconds * n, 's'):>11}{si(m.flops * n, ''):>11}"
            f"{si(m.dram_bytes * n, 'B'):>11}{m.fraction_of_peak:>7.1%}"
            f"{m.roofline_fraction:>7.1%}  {m.bound}"
        )
        if runs is not None:
            line += f"{n:>8}"
        lines.append(line)
    weights = [1] * len(models) if runs is None else list(runs)
    cycles = sum(m.cycles * n for m, n in zip(models, weights, strict=True))
    seconds = sum(m.seconds * n for m, n in zip(models, weights, strict=True))
    flops = sum(m.flops * n for m, n in zip(models, weights, strict=True))
    moved = sum(m.dram_bytes * n for m, n in zip(models, weights, strict=True))
    peak = sum(m.cycles * n * m.peak_flops_per_cycle for m, n in zip(models, weights, strict=True))
    fraction = flops / peak if peak else 0.0
    lines.append(
        f"{'total':<12}{'':>11}{'':>11}{'':>12}{cycles:>13}{si(seconds, 's'):>11}"
        f"{si(flops, ''):>11}{si(moved, 'B'):>11}{fraction:>7.1%}"
    )
    return "\n".join(lines)


def format_report(counters: Mapping[str, SectionCounters]) -> str:
    """The counters of a run, like a profiler: per section, the model times the runs."""
    values = list(counters.values())
    table = format_models([c.model for c in values], [c.runs for c in values])
    host = sum(c.host_seconds for c in values)
    return f"{table}\nhost (emulation) time {host:.3f} s"
