"""pin-resident-symbols: keep symbols on chip while the sections are loaded in turn.

When a program's sections do not fit the fabric together (co-place-sections left them apart),
each is still loaded once a step, but the tensors they hand each other and keep across steps
need not cross DRAM: the PMUs holding them can stay put while the other sections' configurations
come and go. This pass chooses such symbols, gives each a **pinned home** (the PMU slots of its
home buffer, ``residency``'s docstring says which buffer that is) and places every section
again where needed so that:

- a buffer that is a symbol's home or shares it (loaded from it in another section, of the
  home's tensor type) sits on the home's slots;
- no other unit of a section that binds a buffer to the symbol sits on a pinned slot; a section
  that binds none (the forward, for the optimizer's momentum) may put a buffer there if the two
  fit the PMU together (``rules.beside_pinned_home``: the symbol keeps its addresses while the
  section uses the others, and idles while it runs);
- every other buffer loaded from a pinned symbol (the optimizer's load of the parameter it
  updates) is filled by a hand-off from the home, a stream routed with its section's own
  streams (a fixed unit on the home's slot when the home is another section's).

Which symbols: those ``residency.resident_symbols`` allows, most DRAM bytes saved a PMU first
(a symbol's bytes times the buffers bound to it, over the PMUs its home takes), each taken
while every section's PMUs, those of the symbols pinned so far included, still fit the target
(a home as wide as the widest buffer sharing it, or, when that does not fit, ``_narrow``: no
wider than its own section's buffers, a wider one in another section filled by a hand-off;
GPT b8 on sn10: a qkv weight's home in 3 PMUs, not the 9 its forward's matmul streams from,
kept the optimizer off DRAM, 2,273 cycles to 1,855, before the backward's cat took fewer PMUs):
a pinned home takes its PMUs from the sections that bind a buffer to its symbol and from those
whose buffers do not all fit beside it (``_idle_sections``), not from the others. GPT b8 on
sn10 pins 120 symbols instead of 78, all its state among them (the 52 optimizer states instead
of 19: the backward, which binds none of them, had 20 PMUs of room for their homes). Its step,
25,373 cycles (24,943 before), no longer hangs on where the placer puts things: with every
placement's seed 1, 2 or 3 it is 27,820, 27,020, 27,821 cycles (38,452, 34,795, 30,847 before,
when the larger allocations those seeds route left fewer PMUs for pins); HF GPT-2 b8's, with
seeds 0 to 2, 62,080 to 69,002 (61,862 to 78,554 before).

Sections are placed again only where they must be: the pins are first taken from the
placements place-and-route made (a symbol's home or a shared buffer where it already sits, if
no other pin is there; if that does not place, the shared buffer of the section with the most
units first), then every section that breaks a rule above is placed again with its
pinned units fixed and the other pins blocked (``placement.place_and_route``'s ``fixed`` and
``blocked``), until none does. If a section cannot be placed so (a full fabric, the pins
scattered where other sections put them, leaves its streams no path), the pass starts again
with a quarter fewer PMUs of other symbols' homes in that section, or, when none was in its
way, a quarter fewer of its own buffers pinned (``SHRINK``: the least valuable symbols given
up), ``MAX_ROUNDS`` times at most. Once every pin is known, each section placed again is
placed once more and kept as the placement of it that the performance model times fastest
(``_modelled_cycles``: ``perf.section_model`` of it as the PEF will hold it, its units' fills
with their routes' hops, the pinned symbols on chip, its hand-offs and its buffers updated in
place as the PEF's ``resident`` section will say), of the placer's default anneal and
longer ones, some with the streams into the units of its critical chain weighed heaviest
(``placement.polish``'s ``score`` and ``critical``). Kept by busiest link alone, GPT b8's step
on sn10 went 25,373 cycles to 24,638 and HF GPT-2 b8's 62,080 to 59,111; by the model, GPT b8's
18,438 to 18,066 (its forward 6,968 cycles to 6,616) and HF GPT-2 b8's on sn40l 60,172 to
55,236.

The module gets ``rdu.resident`` (``residency.resident_attr``) and ``rdu.resident_pinned``;
emit-pef writes the PEF's ``resident`` section with ``co_resident`` false, and the performance
model's rule 7 loads each section every run but moves no pinned symbol through DRAM.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, UnitAttr
from xdsl.passes import ModulePass

from compiler.passes import parallel_layout, placement
from compiler.passes.ir_helpers import (
    PINNED_ATTR,
    RESIDENT_ATTR,
    SectionGraph,
    buffer_bytes,
    pass_target,
    section_graph,
    write_placement,
)
from compiler.passes.pef_sections import SectionEmitter, SymbolTable
from compiler.passes.placement import DRAM, Graph, Placement, PlacementError, Stream, Unit
from compiler.passes.residency import (
    Resident,
    buffer_index,
    buffer_units,
    resident_attr,
    resident_symbols,
    restore_pmus,
    share_pmus,
)
from compiler.passes.routing import Coord
from compiler.targets import Target
from dialects.dataflow import SectionOp
from dialects.pcu import UnitOp
from dialects.pmu import BufferOp
from runtime.machine import perf
from runtime.machine.rules import beside_pinned_home, pmu_footprint

MIN_SAVED = 0.05
"""Symbols are pinned only if they move at least this share of the sections' DRAM bytes
(GPT-2 small on sn40l: the few that fit, its biases and norms, are under 1% of its 11.7 GB a
step; placing its sections around them took seconds of the compile)."""

MAX_ROUNDS = 8
"""How many times the pass gives up symbols and starts again before keeping none on chip."""

SHRINK = 4
"""A section that does not place with its pins gets ``1 / SHRINK`` fewer PMUs of other
symbols' homes in the next round, or ``1 / SHRINK`` fewer of its own symbols pinned."""


@dataclass(frozen=True)
class PinResidentSymbols(ModulePass):
    """Keep symbols on chip in pinned homes across sections loaded in turn (see the module
    docstring)."""

    name = "pin-resident-symbols"

    target: str = "plasticine"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        self.apply_changed(ctx, op)

    def apply_changed(self, ctx: Context, op: ModuleOp) -> bool:
        """``apply``, saying whether symbols were pinned (the IR changed)."""
        if RESIDENT_ATTR in op.attributes:
            return False  # co-resident: every section on the fabric at once
        target = pass_target(self.target)
        sections = [s for s in op.walk() if isinstance(s, SectionOp)]
        if len(sections) < 2 or any(parallel_layout.lone_parallel_unit(s) for s in sections):
            return False
        candidates = resident_symbols(sections, op, target)
        largest = [_largest_footprint(s, target) for s in sections]
        idle = {r.name: _idle_sections(largest, r, target) for r in candidates}
        total = len(placement.slots(target, "pmu"))
        room = [total - n for n in _own_pmus(sections)]  # the PMUs pins may add, a section
        dropped: set[str] = set()  # symbols given up
        graphs = _SectionGraphs(sections, target)
        for _ in range(MAX_ROUNDS):
            kept = [r for r in candidates if r.name not in dropped]
            chosen, added = _within_budget(sections, kept, room, idle)
            if not chosen or sum(map(_moved, chosen)) < _dram_bytes(sections) * MIN_SAVED:
                return False  # not worth placing sections again (nor the compile time it takes)
            before = share_pmus(chosen)
            now = graphs.now()
            try:
                try:
                    placed, handoffs = _Pinning(sections, chosen, target, idle, now).run()
                except _Unplaceable:
                    placed, handoffs = _Pinning(sections, chosen, target, idle, now, True).run()
            except _Unplaceable as err:
                restore_pmus(before)
                if added[err.section] > 0:  # fewer other symbols' homes in its way
                    room[err.section] = added[err.section] * (SHRINK - 1) // SHRINK
                else:  # fewer of its own buffers fixed where other sections put them
                    own = [r for r in chosen if any(t == err.section for t, _ in _bound(r))]
                    own.sort(key=_saved)
                    dropped |= {r.name for r in own[: max(1, len(own) // SHRINK)]}
                continue
            for sg, result in placed.values():
                write_placement(sg, result)
            routes = [[handoffs[(r.name, b)] for _, b in r.loads] for r in chosen]
            op.attributes[RESIDENT_ATTR] = resident_attr(sections, chosen, routes)
            op.attributes[PINNED_ATTR] = UnitAttr()
            return True
        return False  # no round's symbols placed


def _pinned_buffers(resident: Resident) -> list[tuple[int, BufferOp]]:
    """(section index, buffer) of the buffers on ``resident``'s home's slots: the home and the
    shared ones."""
    return [resident.home, *resident.shared]


def _bound(resident: Resident) -> list[tuple[int, BufferOp]]:
    """(section index, buffer) of every buffer bound to ``resident``."""
    return [*_pinned_buffers(resident), *resident.loads]


def _pins(resident: Resident) -> int:
    """The PMUs of ``resident``'s home once ``share_pmus`` has run."""
    return max(b.num_pmus for _, b in _pinned_buffers(resident))


def _narrow(r: Resident) -> Resident:
    """``r`` with the buffers it shares in other sections that are wider than its home's own
    section's (the home and the old value updated in place) filled by hand-offs instead: a
    home no wider than its section's, which takes fewer PMUs from the sections that share it
    (GPT b8 on sn10: a qkv weight in 3 PMUs, not the 9 of its forward's multicast streams)."""
    own = max(b.num_pmus for s, b in _pinned_buffers(r) if s == r.home[0])
    wide = [(s, b) for s, b in r.shared if s != r.home[0] and b.num_pmus > own]
    if not wide:
        return r
    shared = [sb for sb in r.shared if sb not in wide]
    return Resident(r.name, r.home, [*r.loads, *wide], shared)


def _moved(r: Resident) -> int:
    """The DRAM bytes pinning ``r`` saves a step: its bytes times the buffers bound to it."""
    return buffer_bytes(r.home[1]) * len(_bound(r))


def _saved(r: Resident) -> float:
    """The DRAM bytes pinning ``r`` saves a step, a PMU of its home."""
    return _moved(r) / _pins(r)


def _dram_bytes(sections: Sequence[SectionOp]) -> int:
    """The bytes the sections load from DRAM (each buffer once) and store to it, a step."""
    total = 0
    for section in sections:
        ops = section.body.block.ops
        total += sum(buffer_bytes(b) for b in ops if isinstance(b, BufferOp) and b.from_dram)
        stored = {v.owner for v in section.yield_op.values}
        total += sum(buffer_bytes(b) for b in stored if isinstance(b, BufferOp))
    return total


def _own_pmus(sections: Sequence[SectionOp]) -> list[int]:
    """Each section's PMUs: its buffers'."""
    return [
        sum(op.num_pmus for op in s.body.block.ops if isinstance(op, BufferOp)) for s in sections
    ]


def _footprint(buffer: BufferOp, target: Target) -> int:
    """``rules.pmu_footprint`` of ``buffer``: the most bytes it takes of each of its PMUs."""
    tile, nbuf = buffer.tile_bytes.value.data, buffer.nbuf.value.data
    return pmu_footprint(tile, nbuf, buffer_bytes(buffer), buffer.num_pmus, target.pmu_bytes)


def _largest_footprint(section: SectionOp, target: Target) -> int:
    """The most bytes a buffer of ``section`` takes of a PMU."""
    buffers = [b for b in section.body.block.ops if isinstance(b, BufferOp)]
    return max((_footprint(b, target) for b in buffers), default=0)


def _idle_sections(largest: Sequence[int], r: Resident, target: Target) -> frozenset[int]:
    """The sections that may put a buffer on ``r``'s pinned slots: those that bind no buffer to
    it and whose every buffer (the ``largest`` footprint, a section) fits a PMU beside its home
    (``rules.beside_pinned_home``)."""
    bound = {s for s, _ in _bound(r)}
    home = max(_footprint(b, target) for _, b in _pinned_buffers(r))
    return frozenset(
        s
        for s, most in enumerate(largest)
        if s not in bound and beside_pinned_home(home, most, target.pmu_bytes)
    )


def _within_budget(
    sections: Sequence[SectionOp],
    candidates: Sequence[Resident],
    room: Sequence[int],
    idle: dict[str, frozenset[int]],
) -> tuple[list[Resident], list[int]]:
    """The candidates to pin, most DRAM bytes saved a PMU first, each taken while the PMUs
    the pinned homes add to every section (those of a home not on the section's own buffers,
    none in its ``idle`` sections) stay within its ``room`` (see the module docstring); and
    those PMUs, a section."""

    added = [0] * len(sections)
    chosen: list[Resident] = []
    for wide in sorted(candidates, key=_saved, reverse=True):
        narrow = _narrow(wide)
        for r in [wide] if narrow is wide else [wide, narrow]:
            extra = [_pins(r)] * len(sections)  # its home's PMUs, taken from every section
            for s, buffer in _pinned_buffers(r):
                extra[s] -= buffer.num_pmus  # already among the section's own
            for s in idle[r.name]:
                extra[s] = 0  # its buffers beside the home
            if all(a + e <= most for a, e, most in zip(added, extra, room, strict=True)):
                added = [a + e for a, e in zip(added, extra, strict=True)]
                chosen.append(r)
                break
    order = {r.name: i for i, r in enumerate(candidates)}
    return sorted(chosen, key=lambda r: order[r.name]), added  # first appearance, as co-placement


Handoff = tuple[str, BufferOp]
"""A hand-off: its symbol and the buffer it fills."""


class _Unplaceable(Exception):
    """A section does not place with its pins (``section``: its index)."""

    def __init__(self, section: int) -> None:
        super().__init__(section)
        self.section = section


class _SectionGraphs:
    """Each section's ``section_graph``, made again only for a section whose buffers' PMUs
    changed (``share_pmus`` gives the homes' buffers more in a round and ``restore_pmus``
    takes them back; nothing else of the IR changes between rounds): mobilenet's 122 sections
    were each made into a graph 16 times, 9 of a 27 s compile."""

    def __init__(self, sections: Sequence[SectionOp], target: Target) -> None:
        self.sections = sections
        self.target = target
        self.made: dict[tuple[int, tuple[int, ...]], SectionGraph] = {}

    def now(self) -> list[SectionGraph]:
        """The sections' graphs as their buffers' PMUs are now."""
        graphs = []
        for k, section in enumerate(self.sections):
            ops = section.body.block.ops
            key = (k, tuple(op.num_pmus for op in ops if isinstance(op, BufferOp)))
            if key not in self.made:
                self.made[key] = section_graph(section, self.target)
            graphs.append(self.made[key])
        return graphs


class _Pinning:
    """The pins of the chosen symbols and the sections placed again around them."""

    def __init__(
        self,
        sections: Sequence[SectionOp],
        chosen: Sequence[Resident],
        target: Target,
        idle: dict[str, frozenset[int]],
        graphs: Sequence[SectionGraph],
        largest_first: bool = False,
    ) -> None:
        self.largest_first = largest_first
        """Pins from the placement of the section with the most units binding the symbol,
        rather than its home's."""
        self.sections = sections
        self.chosen = chosen
        self.target = target
        self.idle = idle
        """Per symbol, the sections whose buffers may sit on its pinned slots."""
        self.graphs = graphs
        """Each section's ``section_graph``, its buffers' PMUs as ``share_pmus`` left them."""
        self.pins: dict[str, list[Coord]] = {}
        self.owner: dict[Coord, str] = {}  # a pinned slot -> its symbol
        self.placed: dict[int, tuple[SectionGraph, Placement]] = {}
        self.handoffs: dict[Handoff, tuple[Coord, ...]] = {}  # their routes
        self.last: dict[int, tuple[Graph, Placement]] = {}  # a section's last placement, whole
        self.mine: list[dict[BufferOp, str]] = [{} for _ in sections]
        """Per section, its buffers on a chosen symbol's pinned slots, and the symbol."""
        self.loads: list[list[Handoff]] = [[] for _ in sections]
        """Per section, the (symbol, buffer) of each buffer a chosen symbol's home loads."""
        for r in chosen:
            for t, buffer in _pinned_buffers(r):
                self.mine[t][buffer] = r.name
            for t, buffer in r.loads:
                self.loads[t].append((r.name, buffer))

    def run(
        self,
    ) -> tuple[dict[int, tuple[SectionGraph, Placement]], dict[Handoff, tuple[Coord, ...]]]:
        """Pin every chosen symbol, placing sections again until each keeps the rules."""
        for r in self.chosen:  # where place-and-route already put a buffer on its slots
            buffers = _pinned_buffers(r)  # the home's first
            if self.largest_first:  # the section with the most units first
                buffers.sort(key=lambda sb: -len(self.graphs[sb[0]].units))
            for s, buffer in buffers:
                slots = self._slots(s, buffer)
                if len(slots) == _pins(r) and self._free(slots):
                    self._pin(r, slots)
                    break
        stale: list[int] = []
        for _ in range(len(self.sections) + 1):  # a round pins every symbol it places
            stale = [s for s in range(len(self.sections)) if not self._keeps_rules(s)]
            if not stale:
                self._polish()
                return self.placed, self.handoffs
            for s in stale:
                self._place(s)
        raise _Unplaceable(stale[0])  # did not settle: as a section that does not place

    def _pin(self, r: Resident, slots: Sequence[Coord]) -> None:
        self.pins[r.name] = list(slots)
        for slot in slots:
            self.owner[slot] = r.name

    def _free(self, slots: Sequence[Coord], section: int | None = None) -> bool:
        """Whether no symbol is pinned on ``slots`` (but one ``section`` may sit beside)."""
        return not any(
            slot in self.owner and section not in self.idle[self.owner[slot]] for slot in slots
        )

    def _slots(self, s: int, buffer: BufferOp) -> list[Coord]:
        """Where ``buffer`` of section ``s`` sits now: its new placement's, or the IR's."""
        if s in self.placed:
            sg, result = self.placed[s]
            return [result.at[i] for i in buffer_units(sg, buffer)]
        assert buffer.placement is not None
        return [(slot[0], slot[1]) for slot in buffer.placement.slots]

    def _keeps_rules(self, s: int) -> bool:
        """Whether section ``s`` as placed now sits on its pins, off the others', with a
        routed hand-off into every buffer that needs one."""
        for handoff in self.loads[s]:
            if handoff[0] not in self.pins or handoff not in self.handoffs:
                return False  # its home is not pinned yet, or no stream from it is routed
        mine = self.mine[s]
        for op in self.sections[s].body.block.ops:
            if not isinstance(op, BufferOp):
                continue
            slots = self._slots(s, op)
            name = mine.get(op)
            if name is not None:
                if self.pins.get(name) != slots:
                    return False
            elif not self._free(slots, s):
                return False
        return True

    def _polish(self) -> None:
        """Place each section placed again here once more, every pin now known, and keep the
        placement of it the performance model times fastest (``placement.polish``). The
        placements made to find the pins settle for the placer's default moves, two a unit in
        a section of a thousand units' copies, which leaves the copies one multicast stream
        feeds far apart (its route passing links twice, its readers' fills long) or heavy
        streams on one link."""
        for s in sorted(self.placed):
            self._place(s, polish=True)

    def _place(self, s: int, polish: bool = False) -> None:
        """Place section ``s`` again: its pinned buffers fixed on their pins (those not pinned
        yet free, then pinned where they land), every other pin blocked but those it may sit
        beside (not for its buffers to pin where they land), a hand-off stream from the home
        into every buffer that needs one; ``polish``: the placement ``placement.polish``
        keeps."""
        sg = self.graphs[s]
        # A buffer its home's writer updates in place is the home's very units here.
        same: dict[int, int] = {}
        for r in self.chosen:
            if r.home[0] == s:
                home = buffer_units(sg, r.home[1])
                for t, buffer in r.shared:
                    if t == s:
                        same.update(zip(buffer_units(sg, buffer), home, strict=True))
        keep = [i for i in range(len(sg.graph.units)) if i not in same]
        index = {i: k for k, i in enumerate(keep)}
        index.update({i: index[h] for i, h in same.items()})
        units: list[Unit] = [sg.graph.units[i] for i in keep]
        streams: list[Stream] = [
            Stream(
                st.src if st.src == DRAM else index[st.src],
                st.dst if st.dst == DRAM else index[st.dst],
                None if st.scalar is None else index[st.scalar],
                st.weight,
            )
            for st in sg.graph.streams
        ]
        fixed: dict[int, Coord] = {}
        later: list[tuple[Resident, BufferOp]] = []
        homes: dict[str, int] = {}  # a symbol -> its home's (first) unit in this graph
        for r in self.chosen:
            for t, buffer in _pinned_buffers(r):
                if t != s:
                    continue
                at = [index[i] for i in buffer_units(sg, buffer)]
                homes[r.name] = at[0]
                if r.name in self.pins:
                    fixed.update(zip(at, self.pins[r.name], strict=True))
                else:
                    later.append((r, buffer))
        wanted: list[tuple[Resident, BufferOp]] = []
        for r in self.chosen:
            for t, buffer in r.loads:
                if t != s or r.name not in self.pins and r.name not in homes:
                    continue
                if r.name not in homes:  # another section's home: a fixed unit on its slot
                    homes[r.name] = len(units)
                    fixed[len(units)] = self.pins[r.name][0]
                    units.append(Unit(f"home of '{r.name}'", "pmu"))
                streams.append(
                    Stream(
                        homes[r.name],
                        index[buffer_units(sg, buffer)[0]],
                        weight=buffer_bytes(buffer),
                    )
                )
                wanted.append((r, buffer))
        pinned = {slot: name for slot, name in self.owner.items() if slot not in fixed.values()}
        blocked = frozenset(slot for slot, name in pinned.items() if s not in self.idle[name])
        # A buffer to pin where it lands may land beside no home.
        barred = {index[i]: frozenset(pinned) for _, b in later for i in buffer_units(sg, b)}
        name = self.sections[s].sym_name.data
        graph = Graph(units, streams)
        last = self.last.get(s)
        if polish and last is not None and last[0] == graph:
            result = last[1]  # it keeps the rules (every section did, for the pins to settle)
        else:
            try:
                result = placement.place_and_route(
                    graph, self.target, section=name, fixed=fixed, blocked=blocked, barred=barred
                )
            except PlacementError as err:
                raise _Unplaceable(s) from err
        self.last[s] = (graph, result)
        n, m = len(sg.graph.units), len(sg.graph.streams)

        def own(found: Placement) -> Placement:
            """The placement of the section's own units and streams in ``found``."""
            return Placement(tuple(found.at[index[i]] for i in range(n)), found.routes[:m])

        if polish:
            score, critical = self._scoring(s, sg, wanted, own)
            result = placement.polish(
                graph, self.target, result, section=name, fixed=fixed, blocked=blocked,
                barred=barred, score=score, critical=critical,
            )  # fmt: skip
        self.placed[s] = (sg, own(result))
        for k, (r, buffer) in enumerate(wanted):
            self.handoffs[(r.name, buffer)] = result.routes[m + k]
        for r, buffer in later:
            slots = self._slots(s, buffer)
            if self._free(slots):
                self._pin(r, slots)

    def _scoring(
        self,
        s: int,
        sg: SectionGraph,
        wanted: Sequence[tuple[Resident, BufferOp]],
        own: Callable[[Placement], Placement],
    ) -> tuple[Callable[[Placement], int], Callable[[Placement], set[int]]]:
        """``polish``'s ``score`` and ``critical`` for section ``s`` (its graph ``sg``, the
        hand-offs into it ``wanted``, their streams after its own): a placement written onto
        the IR and timed by ``_modelled_cycles``, with every chosen symbol on chip; the
        streams into the units of the critical chain of a placement scored before (``polish``
        asks for the best one's)."""
        section = self.sections[s]
        kept = frozenset(r.name for r in self.chosen)
        homes = {r.name: buffer_index(section, r.home[1]) for r in self.chosen if r.home[0] == s}
        in_place = {
            buffer_index(section, b): homes[r.name]
            for r in self.chosen
            if r.name in homes
            for t, b in r.shared
            if t == s
        }
        m = len(sg.graph.streams)
        chains: dict[int, frozenset[UnitOp]] = {}  # by id: polish keeps what it scored alive

        def score(found: Placement) -> int:
            write_placement(sg, own(found))
            handoffs = {
                buffer_index(section, b): (
                    [list(hop) for hop in found.routes[m + k]],
                    homes.get(r.name, -1),
                )
                for k, (r, b) in enumerate(wanted)
            }
            cycles, chain = _modelled_cycles(section, self.target, (kept, handoffs, in_place))
            chains[id(found)] = chain
            return cycles

        def critical(found: Placement) -> set[int]:
            chain = chains[id(found)]
            return {
                j
                for j, sink in enumerate(sg.sinks)
                if sink.kind in ("port", "leg") and sink.op in chain
            }

        return score, critical


def _modelled_cycles(
    section: SectionOp,
    target: Target,
    onchip: tuple[frozenset[str], dict[int, tuple[list[list[int]], int]], dict[int, int]],
) -> tuple[int, frozenset[UnitOp]]:
    """The performance model's cycles of a run of ``section`` placed as its IR now says
    (``perf.section_model``: its units' fills with their routes' hops, rule 1; the symbols
    kept on chip, the hand-offs into it and the buffers updated in place as ``onchip`` says,
    rule 7), and the units of its critical chain (``perf.critical_path``), whose input streams
    ``polish`` may weigh heaviest."""
    table = SymbolTable()
    table.add_section(section)
    pef = SectionEmitter(section, table, target.scalar_link_capacity).emit()
    kept, handoffs, in_place = onchip
    symbols = frozenset(table.index[k] for k in kept if k in table.index)
    resident = perf.OnChip(symbols, False, handoffs, in_place)
    model = perf.section_model(pef, target, table.symbols, resident)
    ops = [op for op in section.body.block.ops if isinstance(op, UnitOp)]
    _, chain = perf.critical_path(pef, ops, model.times)
    return model.cycles, frozenset(chain)
