"""partition-sections: cut every section that does not fit the fabric into several that do.

A section runs on the fabric all at once: its PCUs, and the PMUs of its buffers (``pmus`` of
them for a buffer that spans several, see assign-pmus), must fit the target's, and its streams
must route within the links' capacity. A section that does not fit is cut, in dataflow order,
into consecutive sections ``<name>.0``, ``<name>.1``... of the same kind that run one after the
other: each, from where the one before ends, takes as many units as fit (counting PCUs and
PMUs) and is checked by placing and routing it (``placement.place_and_route``, with the pass's
``seed``). A piece that does not route is shortened to the longest that does: one unit at a
time, where a piece whose streams out of (or into) one unit exceed what the links of a slot
carry (``placement.fanout_excess``, e.g. a buffer spanning more PMUs than its switch has links
for) is ruled out without placing it; after ``SHRINK_MISSES`` pieces placed in vain, by
galloping and bisection. ``max_ops=1`` (``rdu-compile --o0``) also cuts after every op (a unit
with the parts split-units made of it, ``<unit>.<k>``); 0, the default, cuts only where needed.
A section that fits stays whole and keeps its name. A parallel unit (``parallel [...]``, see
parallelize-units) counts its copies as PCUs and the PMUs of the buffers it reads and writes
(``parallel_layout.unit_buffers``: whole on chip, a PMU a stream at least); a piece holding it
and other units is placed like any other (its copies and multicast streams in the section's
graph, ``ir_helpers.section_graph``), a piece holding it alone with its structured layout
(``parallel_layout``).
A candidate piece is not even built: its streams are counted on the section (``piece_graph``;
walking down from the longest piece, one unit fewer at a time, ``_StreamCounts``) and it is placed
on that graph; only the piece chosen is built (one holding a parallel unit is built to be placed).

A section parallelize-units balanced arrives with the placement it found for it (seed 0),
taken as it is when the pass's seed is 0 and the section still fits it
(``placement.check_placement``). The placement found for a section (whole or a piece) is
recorded on it, ``rdu.placement =
#pcu.section_placement<at [(x0, y0), ...], routes [...]>`` (its units' slots and its streams'
routes, see ``ir_helpers.record_placement``), and place-and-route writes it onto the units: the
seed is this pass's alone.

Tensors crossing a cut go through DRAM. A buffer read by a later piece is yielded by its own
piece and loaded by the readers' pieces under its section result name if it has one, else
under a new symbol ``spill.<section>.<buffer>`` with role ``spill``. Every piece loads the
section arguments it reads; the last one also stores the arguments the section yields as they
are. Model state no piece reads (a parameter the forward never uses) stays an argument of the
first piece, so that the program names it. A result that replaces an argument of the same name
(an optimizer's updated parameter) while a later piece still reads the old value is yielded as
a spill and copied to its name by one more section at the end (no PCU: a PMU loads the spill
and stores it back).

Before, on ``tiny`` (8 PCUs and 8 PMUs), a section of 10 relu units in a chain
``input.0 -> relu_0 -> ... -> relu_9 -> output.0``, after (schematically)::

    dataflow.section @"forward.0" "forward" {arg_names = ["input.0"], result_names =
        ["spill.forward.relu_6"], result_roles = [#dataflow<role spill>]} { relu_0 .. relu_6 }
    dataflow.section @"forward.1" "forward" {arg_names = ["spill.forward.relu_6"],
        result_names = ["output.0"]} { relu_7 .. relu_9 }

(relu_0 .. relu_6 take 7 PCUs and 8 PMUs: the input's and the seven results').
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import Literal

from xdsl.context import Context
from xdsl.dialects.builtin import DictionaryAttr, ModuleOp, StringAttr
from xdsl.ir import Attribute, Block, BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import PassFailedException

from compiler.forked import Beside, first_done
from compiler.passes import parallel_layout, placement
from compiler.passes.ir_helpers import (
    assign_pmus,
    is_resident,
    pass_target,
    record_placement,
    recorded_placement,
    resident_pmus,
    section_graph,
)
from compiler.targets import Target
from dialects.dataflow import SectionOp, YieldOp
from dialects.pcu import UnitOp
from dialects.pmu import BufferOp

SPILL_ROLE = "spill"

SHRINK_MISSES = 3
"""Pieces one unit shorter each that may fail to route before the cut is bisected instead."""

Cuts = list[tuple[int, "SectionOp | placement.Placement | None"]]
"""A section's plan: per piece, where it ends and what ``_Partitioner.judge`` found for it (its
placement; the piece built, for one holding a parallel unit; None: such a piece judged in a
child process, ``_plans``)."""

Verdict = Literal["routes", "too many streams", "unroutable"]
"""Whether a piece routes; "too many streams": ruled out without placing it."""

_TRANSIENT = ("placement", "pmus")
"""Buffer properties a piece recomputes (placement, and the PMUs it spans in its piece)."""


def op_of(unit: UnitOp) -> str:
    """The op a unit belongs to: its name, or ``<unit>`` for a part ``<unit>.<k>``."""
    return unit.sym_name.data.split(".", 1)[0]


@dataclass(frozen=True)
class _Result:
    name: str
    role: str


class _Partitioner:
    """Cuts one section (see the module docstring)."""

    def __init__(
        self,
        section: SectionOp,
        target: Target,
        max_ops: int,
        seed: int,
        known: placement.Known,
        non_persistent: frozenset[str] = frozenset(),
    ) -> None:
        self.section = section
        self.target = target
        self.max_ops = max_ops
        self.seed = seed
        self.known = known
        self.name = section.sym_name.data
        self.rooms = placement.slot_rooms(target)  # what fanout_excess asks of every piece
        block = section.body.block
        self.block = block
        self.units = [op for op in block.ops if isinstance(op, UnitOp)]
        self.index = {u: i for i, u in enumerate(self.units)}
        self.out: dict[UnitOp, BufferOp] = {}
        for u in self.units:
            readers = [use.operation for use in u.result.uses]
            if len(readers) != 1 or not isinstance(readers[0], BufferOp):
                raise self.fail(f"pcu.unit @{u.sym_name.data} must fill exactly one pmu.buffer")
            self.out[u] = readers[0]
        self.writer = {b: u for u, b in self.out.items()}
        self.loads: dict[BlockArgument, list[BufferOp]] = {}
        for op in block.ops:
            if isinstance(op, BufferOp) and isinstance(op.source, BlockArgument):
                self.loads.setdefault(op.source, []).append(op)
        self.arg_name = {a: n.data for a, n in zip(block.args, section.arg_names, strict=True)}
        self.arg_role = {a: r.data for a, r in zip(block.args, section.arg_roles, strict=True)}
        self.arg_by_name = {n: a for a, n in self.arg_name.items()}
        # The model's state that nothing reads (a parameter the forward never uses) stays the
        # first piece's argument, as it was the section's: the program still names it, as
        # checkpoints and the check of the model against the PEF do. Other unread arguments (a
        # non-persistent buffer, which comes from the model; a hyperparameter) are dropped.
        self.unread = [
            a
            for a in block.args
            if a not in self.loads
            and self.arg_role[a] in ("parameter", "buffer")
            and self.arg_name[a] not in non_persistent
        ]
        self.results: list[tuple[SSAValue, _Result]] = [
            (v, _Result(n.data, r.data))
            for v, n, r in zip(
                section.yield_op.values, section.result_names, section.result_roles, strict=True
            )
        ]
        # Per unit: the last unit reading its result, and the units reading each argument.
        self.last_reader: dict[UnitOp, int] = {}
        self.arg_readers: dict[BlockArgument, list[int]] = {}
        for i, u in enumerate(self.units):
            for value in u.inputs:
                buf = value.owner
                assert isinstance(buf, BufferOp)
                if buf in self.writer:
                    w = self.writer[buf]
                    self.last_reader[w] = max(self.last_reader.get(w, -1), i)
                elif isinstance(buf.source, BlockArgument):
                    self.arg_readers.setdefault(buf.source, []).append(i)
        # The section results of each buffer (one lookup, not a walk over all results, for
        # every unit of every piece), and per unit the units reading its result out of order
        # (filled as pieces ask).
        self._named: dict[Operation | Block, list[_Result]] = {}  # a buffer -> its section results
        for v, r in self.results:
            self._named.setdefault(v.owner, []).append(r)
        self._out_of_order: dict[UnitOp, list[int]] = {}
        # Per unit, in plain values (``sources`` and ``piece_graph`` ask about every candidate
        # piece): what each of its inputs reads, ``(writer's index, writer)`` for a unit's
        # result and ``(-1, block argument)`` for an argument; its and its buffer's names; and
        # whether its piece yields its result whatever the cut (a section result); and which of
        # its inputs are register ports (their streams on the scalar network).
        self._reads: list[list[tuple[int, object]]] = []
        self._registers = [
            [u.is_register_port(k) for k in range(len(u.inputs))] for u in self.units
        ]
        for u in self.units:
            reads: list[tuple[int, object]] = []
            for value in u.inputs:
                buf = value.owner
                assert isinstance(buf, BufferOp)
                w = self.writer.get(buf)
                reads.append((self.index[w], w) if w is not None else (-1, buf.source))
            self._reads.append(reads)
        self._labels = [
            (f"pcu.unit @{u.sym_name.data}", f'pmu.buffer "{self.out[u].buffer_name.data}"')
            for u in self.units
        ]
        self._yielded = [self.out[u] in self._named for u in self.units]
        # The arguments the section yields as they are (the last piece loads and stores them).
        self.passed_through: list[BlockArgument] = list(
            dict.fromkeys(
                v.owner.source
                for v, _ in self.results
                if isinstance(v.owner, BufferOp)
                and v.owner not in self.writer
                and isinstance(v.owner.source, BlockArgument)
            )
        )

    def fail(self, message: str) -> PassFailedException:
        return PassFailedException(f"section '{self.name}': {message}")

    # -- what a piece needs ------------------------------------------------------------------

    def sources(self, i: int, j: int) -> list[tuple[str, object]]:
        """The DRAM tensors units ``i..j-1`` read, in order: ``("arg", block argument)`` or
        ``("unit", writer)`` for a result of an earlier piece."""
        seen: dict[tuple[str, object], None] = {}
        for reads in self._reads[i:j]:
            for w, what in reads:
                if w < 0:
                    seen.setdefault(("arg", what), None)
                elif w < i:
                    seen.setdefault(("unit", what), None)
        if j == len(self.units):
            for value, _ in self.results:
                if isinstance(value.owner, BufferOp) and value.owner not in self.writer:
                    seen.setdefault(("arg", value.owner.source), None)
        return list(seen)

    def pmus_needed(self, i: int, j: int) -> int:
        """PMUs of the piece of units ``i..j-1``: one a DRAM tensor it loads, plus its results'
        (a buffer a parallel unit reads or writes: all of its PMUs, ``parallel_layout``)."""
        if j - i == 1 and self.units[i].parallel is not None:
            unit = self.units[i]
            alone = parallel_layout.unit_buffers(unit, unit.parallel_values, self.target)
            return sum(n for _, n in alone)
        held: dict[BufferOp, int] = {}  # the buffers of the piece's parallel units
        for u in self.units[i:j]:
            if u.parallel is not None:
                for buf, n in parallel_layout.unit_buffers(u, u.parallel_values, self.target):
                    held[buf] = max(held.get(buf, 0), n)
        total = 0
        for kind, what in self.sources(i, j):
            if kind == "arg":
                assert isinstance(what, BlockArgument)
                total += max((held.get(b, 1) for b in self.loads[what]), default=1)
            else:
                assert isinstance(what, UnitOp)
                total += held.get(self.out[what], 1)
        for u in self.units[i:j]:
            total += max(self.held_pmus(u, i, j), held.get(self.out[u], 0))
        return total

    def fits(self, i: int, j: int) -> bool:
        if self.max_ops and len({op_of(u) for u in self.units[i:j]}) > self.max_ops:
            return False
        t = self.target
        units = self.units[i:j]
        pcus = sum(u.copies for u in units)
        return pcus <= t.num_pcus and self.pmus_needed(i, j) <= t.num_pmus

    # -- names -------------------------------------------------------------------------------

    def conflicting(self, name: str, j: int) -> bool:
        """Whether ``name`` is also an argument that a unit from ``j`` on still reads."""
        arg = self.arg_by_name.get(name)
        return arg is not None and any(r >= j for r in self.arg_readers.get(arg, []))

    def spill_name(self, u: UnitOp) -> str:
        return f"spill.{self.name}.{self.out[u].buffer_name.data}"

    def stored(self, u: UnitOp, j: int) -> tuple[list[_Result], str | None]:
        """What the piece ending before ``j`` stores of ``u``'s result: its section result
        names, and the name later pieces load it by (None: none reads it)."""
        buf = self.out[u]
        names = self._named.get(buf, [])
        kept = [r for r in names if not self.conflicting(r.name, j)]
        read_later = self.last_reader.get(u, -1) >= j
        spilled = (read_later and not kept) or len(kept) < len(names)
        results = list(kept)
        if spilled:
            results.append(_Result(self.spill_name(u), SPILL_ROLE))
        crossing = None
        if read_later:
            crossing = kept[0].name if kept else self.spill_name(u)
        return results, crossing

    def crossing(self, u: UnitOp, end: int) -> _Result:
        """The name and role a later piece loads ``u``'s result by (its piece ends at ``end``)."""
        results, name = self.stored(u, end)
        assert name is not None
        return next(r for r in results if r.name == name)

    # -- building ------------------------------------------------------------------------------

    def build(self, k: int, i: int, j: int, ends: dict[UnitOp, int]) -> SectionOp:
        """Piece ``k``: units ``i..j-1`` as a section (``ends[u]``: where ``u``'s piece ends)."""
        names: list[str] = []
        roles: list[str] = []
        types: list[Attribute] = []
        origins: list[BufferOp] = []
        for kind, what in self.sources(i, j):
            if kind == "arg":
                assert isinstance(what, BlockArgument)
                names.append(self.arg_name[what])
                roles.append(self.arg_role[what])
                types.append(what.type)
                origins.append(self.loads[what][0])
            else:
                assert isinstance(what, UnitOp)
                r = self.crossing(what, ends[what])
                names.append(r.name)
                roles.append(r.role)
                types.append(what.result.type)
                origins.append(self.out[what])
        unread = self.unread if i == 0 else []
        block = Block(arg_types=[*types, *(a.type for a in unread)])
        vmap: dict[SSAValue, SSAValue] = {}
        ops: list[Operation] = []
        for arg, name, origin in zip(block.args[: len(names)], names, origins, strict=True):
            load = origin.clone(value_mapper={origin.source: arg})
            for key in _TRANSIENT:
                load.properties.pop(key, None)
            load.properties["name"] = StringAttr(name)
            if isinstance(origin.source, BlockArgument):
                for other in self.loads[origin.source]:  # one load a piece serves every reader
                    vmap[other.result] = load.result
            vmap[origin.result] = load.result
            ops.append(load)
        last = j == len(self.units)
        result_values: list[SSAValue] = []
        result_names: list[str] = []
        result_roles: list[str] = []
        for u in self.units[i:j]:
            unit = u.clone(value_mapper=vmap)
            buf = self.out[u].clone(value_mapper=vmap)
            for key in _TRANSIENT:
                buf.properties.pop(key, None)
            ops += [unit, buf]
            for r in self.stored(u, j)[0]:
                result_values.append(buf.result)
                result_names.append(r.name)
                result_roles.append(r.role)
        if last:
            for value, r in self.results:
                owner = value.owner
                if isinstance(owner, BufferOp) and owner not in self.writer:
                    result_values.append(vmap[owner.result])
                    result_names.append(r.name)
                    result_roles.append(r.role)
        block.add_ops([*ops, YieldOp(*result_values)])
        piece = SectionOp(
            f"{self.name}.{k}",
            self.section.kind.data,
            [*names, *(self.arg_name[a] for a in unread)],
            [*roles, *(self.arg_role[a] for a in unread)],
            result_names,
            result_roles,
            block,
        )
        piece.location = self.section.location
        assign_pmus(piece, self.target)
        return piece

    def copies(self, k: int, ends: dict[UnitOp, int]) -> list[SectionOp]:
        """Sections storing the spilled results whose names later pieces still read as
        arguments (see the module docstring), as many PMUs as the target has a section."""
        pending: list[tuple[_Result, _Result, BufferOp]] = []
        for u in self.units:
            results, _ = self.stored(u, ends[u])
            spill = next((r for r in results if r.role == SPILL_ROLE), None)
            for r in self._named.get(self.out[u], []):
                if self.conflicting(r.name, ends[u]):
                    assert spill is not None
                    pending.append((spill, r, self.out[u]))
        sections: list[SectionOp] = []
        start = 0
        while start < len(pending):
            count = min(self.target.num_pmus, len(pending) - start)
            while True:
                chunk = pending[start : start + count]
                section = self.copy_section(k + len(sections), chunk)
                if self.routable(section) or count == 1:
                    break
                count -= 1
            sections.append(section)
            start += count
        return sections

    def copy_section(self, k: int, chunk: Sequence[tuple[_Result, _Result, BufferOp]]) -> SectionOp:
        block = Block(arg_types=[self.writer[b].result.type for _, _, b in chunk])
        ops: list[Operation] = []
        for arg, (spill, _, origin) in zip(block.args, chunk, strict=True):
            load = BufferOp(arg, spill.name, origin.tile_bytes.value.data, origin.nbuf.value.data,
                            origin.banks.value.data)  # fmt: skip
            load.location = origin.location
            ops.append(load)
        block.add_ops([*ops, YieldOp(*(op.results[0] for op in ops))])
        section = SectionOp(
            f"{self.name}.{k}",
            self.section.kind.data,
            [s.name for s, _, _ in chunk],
            [s.role for s, _, _ in chunk],
            [r.name for _, r, _ in chunk],
            [r.role for _, r, _ in chunk],
            block,
        )
        section.location = self.section.location
        return section

    def routable(self, piece: SectionOp) -> bool:
        return self.verdict(piece) == "routes"

    def verdict(self, piece: SectionOp) -> Verdict:
        """Whether ``piece`` routes (its placement then recorded on it for place-and-route);
        "too many streams" when ``placement.fanout_excess`` rules it out without placing it."""
        unit = parallel_layout.lone_parallel_unit(piece)
        if unit is not None:
            try:
                spec, _ = parallel_layout.section_spec(piece, unit)
                parallel_layout.layout(spec, self.target)
            except placement.PlacementError:
                return "unroutable"
            return "routes"
        graph = section_graph(piece, self.target).graph
        recorded = recorded_placement(piece) if self.seed == 0 else None
        if recorded is not None and placement.check_placement(graph, self.target, recorded) is None:
            return "routes"  # placed by parallelize-units (seed 0) as it is
        if placement.fanout_excess(graph, self.target, self.rooms) is not None:
            return "too many streams"
        try:
            placed = placement.place_and_route(
                graph, self.target, section=piece.sym_name.data, seed=self.seed, known=self.known
            )
        except placement.PlacementError:
            return "unroutable"
        record_placement(piece, placed)
        return "routes"

    # -- a piece's streams, without building it -------------------------------------------------

    def held_pmus(self, u: UnitOp, i: int, j: int) -> int:
        """PMUs of ``u``'s result buffer in the piece of units ``i..j-1`` (as ``assign_pmus``
        sets them on the built piece): its whole tensor's when a unit of the piece reads it
        out of order (``is_resident``), else 1."""
        if u not in self._out_of_order:  # computed once a unit: the same for every piece
            buf = self.out[u]
            self._out_of_order[u] = [
                self.index[reader]
                for use in buf.result.uses
                if isinstance(reader := use.operation, UnitOp)
                and is_resident(buf, [(reader, reader.ins.data[use.index])])
            ]
        if any(i <= r < j for r in self._out_of_order[u]):
            return resident_pmus(self.out[u], self.target)
        return 1

    def piece_graph(self, i: int, j: int, ends: dict[UnitOp, int]) -> placement.Graph:
        """``section_graph(self.build(k, i, j, ends)).graph`` (units, streams, in that order;
        no weights)
        computed from this section as it is, cloning nothing: what ``placement.fanout_excess``
        judges a piece by, so that a piece it rules out is never built. Not for a parallel
        unit's piece (its buffers span the PMUs ``parallel_layout`` gives them)."""
        sources = self.sources(i, j)
        units: list[placement.Unit] = []
        streams: list[placement.Stream] = []
        load_of: dict[object, int] = {}  # a DRAM tensor (arg or earlier unit) -> its load
        for kind, what in sources:
            if kind == "arg":
                assert isinstance(what, BlockArgument)
                name = self.arg_name[what]
            else:
                assert isinstance(what, UnitOp)
                name = self.crossing(what, ends[what]).name
            load_of[what] = len(units)
            streams.append(placement.Stream(placement.DRAM, len(units)))
            units.append(placement.Unit(f'pmu.buffer "{name}"', "pmu"))
        first = len(units)  # unit i + k at first + 2k, its result buffer at first + 2k + 1
        pmus: list[tuple[int, int]] = []  # (buffer index, PMUs) of the buffers spanning several
        stored: list[int] = []  # what stored(u, j) yields: u's section results, a spill read later
        for k in range(i, j):
            me = first + 2 * (k - i)
            pcu, buffer = self._labels[k]
            units.append(placement.Unit(pcu, "pcu"))
            for (w, what), register in zip(self._reads[k], self._registers[k], strict=True):
                src = first + 2 * (w - i) + 1 if w >= i else load_of[what]
                streams.append(placement.Stream(src, me, src if register else None))
            streams.append(placement.Stream(me, me + 1))
            units.append(placement.Unit(buffer, "pmu"))
            count = self.held_pmus(self.units[k], i, j)
            if count > 1:
                pmus.append((me + 1, count))
            if self._yielded[k] or self.last_reader.get(self.units[k], -1) >= j:
                stored.append(me + 1)
        if j == len(self.units):
            for value, _ in self.results:
                owner = value.owner
                if isinstance(owner, BufferOp) and owner not in self.writer:
                    stored.append(load_of[owner.source])
        streams += [placement.Stream(b, placement.DRAM) for b in dict.fromkeys(stored)]
        more: list[placement.Unit] = []
        for b, count in pmus:
            previous = b
            for _ in range(count - 1):
                more.append(placement.Unit(f"{units[b].name} (one more PMU)", "pmu"))
                streams.append(placement.Stream(previous, len(units) + len(more) - 1))
                previous = len(units) + len(more) - 1
        return placement.Graph([*units, *more], streams)

    # -- the cut -------------------------------------------------------------------------------

    def run(self) -> list[SectionOp] | None:
        """The pieces, or None when the section fits as it is."""
        cuts = self.plan()
        return None if cuts is None else self.pieces(cuts)

    def plan(self) -> Cuts | None:
        """Where each piece ends and what ``judge`` found for it, or None when the section
        fits as it is (its placement then recorded on it). Builds only the pieces holding a
        parallel unit (to judge them)."""
        n = len(self.units)
        if n == 0:
            return None
        if self.fits(0, n) and self.routable(self.section):
            return None
        cuts: Cuts = []
        ends: dict[UnitOp, int] = {}
        i = 0
        while i < n:
            if not self.fits(i, i + 1):
                u = self.units[i]
                raise self.fail(
                    f"pcu.unit @{u.sym_name.data} alone needs {self.pmus_needed(i, i + 1)} PMUs, "
                    f"target '{self.target.name}' has {self.target.num_pmus}"
                )
            j, judged = self.cut(len(cuts), i, self.most(i), ends)
            cuts.append((j, judged))
            ends.update((u, j) for u in self.units[i:j])
            i = j
        return cuts

    def pieces(self, cuts: Cuts) -> list[SectionOp]:
        """The pieces ``plan`` found, built, and the copy sections after them."""
        built: list[SectionOp] = []
        ends: dict[UnitOp, int] = {}
        i = 0
        for j, judged in cuts:
            built.append(self.piece(len(built), i, j, ends, judged))
            ends.update((u, j) for u in self.units[i:j])
            i = j
        return built + self.copies(len(built), ends)

    def most(self, i: int) -> int:
        """The end of the longest piece from unit ``i`` that fits (``fits`` only turns false as
        a piece grows: it reads more tensors, and its buffers get more readers, never fewer):
        galloping up, then bisecting."""
        return _last_true(i + 1, len(self.units) + 1, lambda j: self.fits(i, j))

    def cut(
        self, k: int, i: int, most: int, ends: dict[UnitOp, int]
    ) -> tuple[int, SectionOp | placement.Placement]:
        """Where piece ``k``, from unit ``i``, ends, and what ``judge`` found for it: the
        longest piece that ends at ``most`` at the latest (as many units as fit) and routes
        (``ends``: where the units of the earlier pieces end).

        Pieces are tried from the longest down, one unit shorter each time; one that
        ``placement.fanout_excess`` rules out costs no placement (its streams counted one unit
        fewer at a time, ``_StreamCounts``). After ``SHRINK_MISSES``
        placed pieces that did not route, the rest of the range is searched by galloping up
        from one unit (1, 2, 4... units more) and bisecting between the longest piece that
        routed and the shortest that did not. A candidate is placed on its graph
        (``piece_graph``) and only the piece chosen is built (one holding a parallel unit is
        built to be judged).
        """
        found: dict[int, SectionOp | placement.Placement] = {}

        def verdict(j: int, counts: _StreamCounts | None = None) -> Verdict:
            piece_ends = {**ends, **dict.fromkeys(self.units[i:j], j)}
            return self.judge(k, i, j, piece_ends, found, counts)

        bad, misses = most + 1, 0
        counts: _StreamCounts | None = None
        first_parallel = next(
            (p for p in range(i, most) if self.units[p].parallel is not None), most
        )
        while bad - 1 > i and misses < SHRINK_MISSES:
            j = bad - 1
            if j <= first_parallel:  # counted from the longest piece without one, then shorter
                if counts is None:
                    counts = _StreamCounts(self, i, j)
                else:
                    counts.drop_last()
            answer = verdict(j, counts if j <= first_parallel else None)
            if answer == "routes":
                return j, found[j]
            bad -= 1
            misses += answer == "unroutable"
        good = _last_true(i, bad, lambda j: verdict(j) == "routes")
        if good == i:
            raise self.fail(
                f"pcu.unit @{self.units[i].sym_name.data} cannot be routed alone on target "
                f"'{self.target.name}'"
            )
        return good, found[good]

    def judge(
        self,
        k: int,
        i: int,
        j: int,
        ends: dict[UnitOp, int],
        found: dict[int, SectionOp | placement.Placement],
        counts: _StreamCounts | None = None,
    ) -> Verdict:
        """Whether piece ``k`` of units ``i..j-1`` routes (``ends``: where every unit up to
        ``j`` ends), its placement (or the piece built and placed, for one holding a parallel
        unit) then kept in ``found[j]``; ``counts``: its streams counted, if they are."""
        if any(u.parallel is not None for u in self.units[i:j]):
            piece = self.build(k, i, j, ends)
            answer = self.verdict(piece)
            found[j] = piece
            return answer
        if counts is not None:
            assert (counts.i, counts.j) == (i, j)
            excess = counts.excess > 0
            graph = None
        else:
            graph = self.piece_graph(i, j, ends)
            excess = placement.fanout_excess(graph, self.target, self.rooms) is not None
        if excess:
            return "too many streams"
        graph = self.piece_graph(i, j, ends) if graph is None else graph
        try:
            found[j] = placement.place_and_route(
                graph, self.target, section=f"{self.name}.{k}", seed=self.seed, known=self.known
            )
        except placement.PlacementError:
            return "unroutable"
        return "routes"

    def piece(
        self,
        k: int,
        i: int,
        j: int,
        ends: dict[UnitOp, int],
        judged: SectionOp | placement.Placement | None,
    ) -> SectionOp:
        """Piece ``k`` of units ``i..j-1`` as ``judge`` found it routes: the piece it built, or
        the piece built now with the placement it found recorded on it (None: a piece holding
        a parallel unit judged in a child process, ``_plans``: built and judged again here)."""
        if isinstance(judged, SectionOp):
            return judged
        piece = self.build(k, i, j, {**ends, **dict.fromkeys(self.units[i:j], j)})
        if judged is None:
            self.verdict(piece)
            return piece
        # ``piece_graph`` has the piece's streams but not the bytes they move: route them again
        # by bytes on the slots found (``routing.Router.path``), as place-and-route would.
        weighted = section_graph(piece, self.target).graph
        record_placement(piece, placement.reroute(weighted, self.target, judged))
        return piece


class _StreamCounts:
    """The streams into and out of every unit of the piece of units ``i..j-1`` (no parallel
    unit), counted as ``fanout_excess`` counts them on its ``piece_graph``, and how many units
    no slot has the links for (``excess``), kept as the piece loses its last unit
    (``drop_last``): the walk down from the longest piece costs the units it drops, not the
    piece's graph at every step.

    The nodes are the piece's loads (by the argument or earlier unit they load), each unit's
    PCU and result buffer, and the more PMUs a buffer spanning several chains. Dropping unit
    ``k`` changes only the buffers and loads it reads: their readers, whether a result is now
    read after the piece (stored), whether a buffer it reads out of order stays whole (its PMUs),
    and at the section's end the loads of the arguments it yields as they are."""

    def __init__(self, cutter: _Partitioner, i: int, j: int) -> None:
        self.cutter = cutter
        self.i, self.j = i, j
        self.nodes: dict[tuple[object, ...], placement.UnitFanout] = {}
        self.excess = 0
        self.readers: dict[tuple[object, ...], int] = {}  # every read (a load exists)
        self.counted: dict[tuple[object, ...], int] = {}  # the reads on the vector network
        self.chain: dict[int, int] = {}  # a buffer -> its PMUs in the piece
        # A register port's stream is on the scalar network when the target has one, and
        # ``fanout_excess`` does not count it.
        self.scalar = cutter.target.scalar_link_capacity > 0
        for k in range(i, j):
            reads = self._read_keys(k)
            vector = sum(counted for _, counted in reads)
            self._set(("pcu", k), placement.UnitFanout("pcu", 1, 0, vector, 0))
            for key, counted in reads:
                self.readers[key] = self.readers.get(key, 0) + 1
                self.counted[key] = self.counted.get(key, 0) + counted
        for k in range(i, j):
            self._buffer(k)
        for what in [key[1] for key in self.readers if key[0] == "load"]:
            self._load(what)
        for what in cutter.passed_through if j == len(cutter.units) else ():
            self._load(what)

    def _read_keys(self, k: int) -> list[tuple[tuple[object, ...], bool]]:
        """Unit ``k``'s reads: what each reads, and whether its stream is counted."""
        c = self.cutter
        return [
            (("buf", w) if w >= self.i else ("load", what), not (self.scalar and register))
            for (w, what), register in zip(c._reads[k], c._registers[k], strict=True)
        ]

    def _set(self, node: tuple[object, ...], fanout: placement.UnitFanout | None) -> None:
        """Node ``node``'s streams are now ``fanout`` (None: it is no longer in the piece)."""
        old = self.nodes.pop(node, None)
        if old is not None:
            self.excess -= not placement.fits_a_slot(old, self.cutter.rooms)
        if fanout is not None:
            self.nodes[node] = fanout
            self.excess += not placement.fits_a_slot(fanout, self.cutter.rooms)

    def _buffer(self, w: int) -> None:
        """Count unit ``w``'s result buffer (and the PMUs it chains) again."""
        c = self.cutter
        unit = c.units[w]
        held = c.held_pmus(unit, self.i, self.j)
        stored = c._yielded[w] or c.last_reader.get(unit, -1) >= self.j
        readers = self.counted.get(("buf", w), 0) + (held > 1)
        self._set(("buf", w), placement.UnitFanout("pmu", readers, int(stored), 1, 0))
        for m in range(held, self.chain.get(w, 1)):
            self._set(("more", w, m), None)
        for m in range(1, held):
            self._set(("more", w, m), placement.UnitFanout("pmu", int(m < held - 1), 0, 1, 0))
        self.chain[w] = held

    def _load(self, what: object) -> None:
        """Count the load of ``what`` (an argument, or an earlier piece's unit) again."""
        readers = self.readers.get(("load", what), 0)
        kept = self.j == len(self.cutter.units) and what in self.cutter.passed_through
        counted = self.counted.get(("load", what), 0)
        fanout = placement.UnitFanout("pmu", counted, int(kept), 0, 1)
        self._set(("load", what), fanout if readers or kept else None)

    def drop_last(self) -> None:
        """The piece loses its last unit."""
        c = self.cutter
        k = self.j - 1
        assert k > self.i
        was_whole = self.j == len(c.units)
        self.j = k
        self._set(("pcu", k), None)
        self._set(("buf", k), None)
        for m in range(1, self.chain.pop(k, 1)):
            self._set(("more", k, m), None)
        buffers: set[int] = set()
        loads: set[object] = set(c.passed_through) if was_whole else set()
        for key, counted in self._read_keys(k):
            self.readers[key] -= 1
            self.counted[key] -= counted
            if key[0] == "buf":
                assert isinstance(key[1], int)
                buffers.add(key[1])
            else:
                loads.add(key[1])
        for w in buffers:
            self._buffer(w)
        for what in loads:
            self._load(what)

    def fanouts(self) -> list[placement.UnitFanout]:
        """Every node's streams (tests compare them with ``piece_graph``'s)."""
        return list(self.nodes.values())


def _last_true(good: int, bad: int, ok: Callable[[int], bool]) -> int:
    """The last ``j`` in ``good..bad-1`` with ``ok(j)``, for ``ok`` true up to some point and
    false after it (``good``: known true or the floor; ``ok`` is not asked about it or ``bad``):
    galloping up from ``good`` (1, 2, 4... more), then bisecting."""
    step = 1
    while good + step < bad:
        if not ok(good + step):
            bad = good + step
            break
        good += step
        step *= 2
    while bad - good > 1:
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good


@dataclass(frozen=True)
class PartitionSections(ModulePass):
    """Cut sections that do not fit the target into several (see the module docstring)."""

    name = "partition-sections"

    target: str = "plasticine"
    max_ops: int = 0
    """At most this many ops a section (0: no limit; ``--o0`` is 1)."""
    seed: int = 0
    """The seed of the placements (annealing) that check that a piece routes, and that
    place-and-route then takes."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = pass_target(self.target)
        known: placement.Known = {}  # the layers of a model give the same pieces again
        sections = [s for s in op.walk() if isinstance(s, SectionOp)]
        attr = op.attributes.get("rdu.non_persistent")
        non_persistent = frozenset(attr.data if isinstance(attr, DictionaryAttr) else ())
        cutters = [
            _Partitioner(s, target, self.max_ops, self.seed, known, non_persistent)
            for s in sections
        ]
        failed: dict[int, Exception] = {}  # raised in the sections' order, once all are known
        for k, cuts in _plans(cutters):
            if cuts is None or isinstance(cuts, Exception):
                if cuts is not None:
                    failed[k] = cuts
                continue
            try:
                pieces = cutters[k].pieces(cuts)
            except Exception as error:  # noqa: BLE001 - raised below, in section order
                failed[k] = error
                continue
            Rewriter.insert_op(pieces, InsertPoint.before(sections[k]))
            Rewriter.erase_op(sections[k])
        if failed:
            raise failed[min(failed)]


FORK_UNITS = 200
"""Sections of at least this many units, when there are two or more, are planned in children
(``_plans``), but the first: worth it for the seconds of placements a GPT-2 small or
BERT-base section takes, not for the tenths of a second of the examples'."""


def _plans(cutters: Sequence[_Partitioner]) -> Iterator[tuple[int, Cuts | None | Exception]]:
    """Every section's position and ``plan`` (or the error planning it met), each as soon as it
    is known. When two sections or more have ``FORK_UNITS`` units or more, all but the first
    of them are planned beside this process (``compiler.forked``), each in a child process,
    while it plans the others; then each child's plan comes as the child ends, whichever ends
    first, and ``apply`` builds its pieces while the others still plan (BERT-base: forward,
    backward and optimizer, 7 s of placements on one core; GPT-2 small on sn40l: the forward,
    placed whole already, checked here, the optimizer's pieces built while the backward's cuts
    are searched): a plan depends on its section alone, so it is the same wherever and
    whenever it is made. A child sends its cuts back as plain data (``_sent_plan``:
    placements; None for a piece holding a parallel unit, judged again when built); a section
    whose child fails is planned again here."""
    big = [k for k, c in enumerate(cutters) if len(c.units) >= FORK_UNITS]
    with ExitStack() as children:
        beside = {
            k: children.enter_context(Beside(partial(_sent_plan, cutters[k])))
            for k in big[1:]  # the first planned here while the others are
        }
        for k, cutter in enumerate(cutters):
            if k not in beside:
                yield k, _answer(cutter.plan)
        while beside:
            order = list(beside)
            k = order[first_done([beside[k] for k in order])]
            yield k, _answer(partial(_received_plan, cutters[k], beside.pop(k).result))


def _answer(plan: Callable[[], Cuts | None]) -> Cuts | None | Exception:
    """``plan()``, or the error it raised (``apply`` raises the first in the sections' order)."""
    try:
        return plan()
    except Exception as error:  # noqa: BLE001 - raised by apply, in section order
        return error


def _sent_plan(cutter: _Partitioner) -> dict[str, object]:
    """``cutter``'s plan as plain data, as a child sends it: the section's placement when it
    fits whole, else its cuts, each with its placement (None for a piece built to be judged:
    its IR stays in the child)."""
    cuts = cutter.plan()
    if cuts is None:
        return {"whole": recorded_placement(cutter.section)}
    sent = [(j, judged if isinstance(judged, placement.Placement) else None) for j, judged in cuts]
    return {"cuts": sent}


def _received_plan(cutter: _Partitioner, received: Callable[[], dict[str, object]]) -> Cuts | None:
    """``_sent_plan``'s plan again, as ``received()`` gives it (a whole section's placement
    recorded on it)."""
    sent = received()
    if "whole" in sent:  # the section fits as it is: its placement, as plan records it
        whole = sent["whole"]
        if isinstance(whole, placement.Placement):
            record_placement(cutter.section, whole)
        return None
    cuts = sent["cuts"]
    assert isinstance(cuts, list)
    return cuts
