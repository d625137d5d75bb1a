"""Semantic checks of a decoded PEF, run before anything is configured.

msgspec's typed decoding already guarantees the shape of the data (types, required fields);
``validate`` checks what a schema cannot: indices in range, accesses inside their buffers for the
whole iteration space, a well-formed stage pipeline, dataflow order, routes through the switch
grid within link capacity, and PMU capacities. Every failure is a ``PefError`` whose one-line
message names the section, the unit and the field.

Routes: a link is one direction of a wire between two adjacent switches; a route uses a link at
most once however many times it lists it, and ``target.link_capacity`` bounds the routes per
link. A route starts at its source's switch and ends at its destination's (a unit's is the
switch of its slot; DRAM's is the left-edge switch ``[0, y]`` of the other endpoint's row), and
every stream of a section (each PMU's fill, each PCU port, each store to DRAM) has one.

A parallel PCU (``Pcu.parallel``): one factor a counter, from 1 to its extent, no empty block,
above 1 only on a counter that is not reduced, no data-dependent access, ``counter`` or ``rand``
stage, no PMU read through two different accesses; its copies' slots (``at``, ``more_at``)
distinct from each other and from every other PCU's; ``interleaved`` only on a parallel PCU
with a split counter besides its lanes counter. Its routes carry ``taps``: every input port
of every copy is fed by exactly one route from its PMU's buffer (starting at the switch of one
of the buffer's PMUs) that passes the copy's switch; every copy's output has exactly one route,
from its switch to the switch of one of its output buffer's PMUs. Link capacity counts every
route, multicast or not.

A register port (``Port.register``, read once when the section starts) must read one address
at every point (``runtime.machine.rules.register_problem``); it has its route like any port, on
the scalar network (``Route.scalar``) exactly when the target has one
(``rules.on_scalar_network``): a scalar route goes from a PMU into a PCU that reads it through
a register port, takes no room on the vector links, and a scalar link carries the values of at
most ``target.scalar_link_capacity`` PMUs (``rules.link_loads``: one PMU's routes share a
track).

Symbols kept on chip (``Program.resident``, ``schema.Residency``). Co-resident sections: every
section on units of its own (no PCU or PMU slot, copies' and buffers' extra slots included, in
two sections, but a shared PMU on its symbol's home's slots), all their routes and the
hand-offs' routes within the links' capacity together (they are configured at once). Sections
loaded in turn (``co_resident`` false): no two homes on one slot and no other unit on a home's
slots (a shared PMU aside) but a PMU of a section that neither loads nor stores the home's
symbol and fits beside it (``rules.beside_pinned_home``), each section's routes and the
hand-offs into it within the links' capacity together. A resident symbol is a state,
activation, gradient or spill symbol, listed once; its home is a PMU of a section bound to it
(loaded from it, or stored to it) that holds it whole; each hand-off goes into a PMU of a
section loaded from that symbol, along a route from the home's switch to that PMU's; each
shared PMU is a PMU loaded from the symbol, of the home's shape and dtype, on exactly the
home's slots, of another section than the home's or, in the home's own section, the old value
its writer updates in place (``runtime.machine.rules.in_place_problem``: every read of it walks
it as the home's writer writes the new value, by that writer or by a unit whose result that
writer reads where it is written); every PMU of every section loaded from a
resident symbol is its home, fed by a hand-off or shared, once, and holds it whole.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from runtime.errors import RduError
from runtime.machine.opcodes import DTYPE_BYTES, FLOAT_DTYPES, OPCODES, type_error
from runtime.machine.rules import (
    UnitWalk,
    address_range,
    adjacent,
    beside_pinned_home,
    combiner_problem,
    held,
    in_place_problem,
    interleave_problem,
    link_loads,
    on_scalar_network,
    parallel_problem,
    pmu_footprint,
    reaches_any,
    register_problem,
)
from runtime.pef.schema import (
    Access,
    Meta,
    Pcu,
    Pmu,
    Program,
    Residency,
    Route,
    Section,
    Symbol,
    Target,
    Weights,
)

_VALUE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
"""A ``Pcu.value``: an FX node's name."""


class PefError(RduError):
    """A PEF that cannot be loaded: the message says what is wrong and where."""


def numel(shape: list[int]) -> int:
    """Number of elements of a shape (1 for a 0-d tensor)."""
    return math.prod(shape)


def access_range(access: Access, space: list[int]) -> tuple[int, int]:
    """The lowest and highest flat address ``access`` reaches over a non-empty ``space``."""
    if access.index_port < 0:
        return address_range(access.offset, access.strides, space)
    return address_range(
        access.offset, access.strides, space, access.index_stride, access.index_limit
    )


def validate(program: Program) -> None:
    """Check ``program`` semantically; raise ``PefError`` at the first problem."""
    meta = program.meta
    _check_target(meta.target)
    _check_symbols(meta.symbols)
    seen: set[str] = set()
    for section in program.sections:
        if section.name in seen:
            raise PefError(f"section '{section.name}' appears twice")
        seen.add(section.name)
        _SectionChecker(section, meta).check()
    _check_sections(program)
    _check_collectives(program)
    _check_non_persistent(meta)
    _check_weights(program)
    if program.resident is not None:
        _check_residency(program, program.resident)


def _check_sections(program: Program) -> None:
    """The sections a PEF of its kind needs: a forward; an inference PEF nothing else; a
    training PEF whose backward computes gradients (``gradient`` symbols) a backward section,
    and an optimizer section exactly when ``meta.optimizer`` names one (a PEF compiled without
    an optimizer, in memory, computes gradients only; ``rdu-run`` refuses to train with it). A
    training PEF of a model without a trainable parameter has no gradient and no optimizer."""
    meta = program.meta
    kinds = Counter(s.kind for s in program.sections)
    if not kinds["forward"]:
        raise PefError("sections: no forward section")
    if meta.inference:
        for kind in ("backward", "optimizer"):
            if kinds[kind]:
                raise PefError(f"meta: inference is true but the PEF has a {kind} section")
        return
    if meta.optimizer == "none" and kinds["optimizer"]:
        raise PefError("meta: optimizer is 'none' but the PEF has an optimizer section")
    gradients = [s.name for s in meta.symbols if s.role == "gradient"]
    if not gradients:
        return
    needed = ["backward"] + ([] if meta.optimizer == "none" else ["optimizer"])
    for kind in needed:
        if not kinds[kind]:
            raise PefError(
                f"sections: a training PEF (meta.inference false, optimizer "
                f"'{meta.optimizer}') with gradients ('{gradients[0]}') has no {kind} section: "
                "its parameters would never change"
            )


def _check_target(target: Target) -> None:
    for field in ("cols", "rows", "pcu_lanes", "pcu_stages", "pmu_bytes", "pmu_banks"):
        if getattr(target, field) < 1:
            raise PefError(f"meta: target.{field} is {getattr(target, field)}, must be >= 1")
    if target.link_capacity < 1:
        raise PefError(f"meta: target.link_capacity is {target.link_capacity}, must be >= 1")
    if not target.clock_ghz > 0:
        raise PefError(f"meta: target.clock_ghz is {target.clock_ghz}, must be > 0")
    for field in ("dram_gbps", "stream_bytes_per_cycle", "pcu_bf16_lanes", "scalar_link_capacity"):
        if not getattr(target, field) >= 0:
            raise PefError(f"meta: target.{field} is {getattr(target, field)}, must be >= 0")
    for field in ("dram_latency_ns", "config_latency_ns"):  # 0: not given
        if not 0 <= getattr(target, field) < math.inf:
            raise PefError(
                f"meta: target.{field} is {getattr(target, field)}, must be >= 0 and finite"
            )


def _check_symbols(symbols: list[Symbol]) -> None:
    names: set[str] = set()
    for i, sym in enumerate(symbols):
        if not sym.name:
            raise PefError(f"meta: symbol {i} has an empty name")
        if sym.name in names:
            raise PefError(f"meta: symbol {i} '{sym.name}' is defined twice")
        names.add(sym.name)
        for d, dim in enumerate(sym.shape):
            if dim < 0:
                raise PefError(f"meta: symbol {i} '{sym.name}' has negative dim {d}: {sym.shape}")


def _check_collectives(program: Program) -> None:
    """A data-parallel PEF's collectives: before a real section, on real, distinct symbols."""
    meta = program.meta
    if meta.collectives and not meta.data_parallel:
        raise PefError("meta: collectives given but data_parallel is false")
    if meta.data_parallel and meta.inference:
        raise PefError("meta: an inference PEF cannot be data-parallel (it has no gradients)")
    names = {s.name for s in program.sections}
    nsym = len(meta.symbols)
    for c, collective in enumerate(meta.collectives):
        where = f"meta: collective {c} ({collective.op})"
        if collective.before not in names:
            raise PefError(f"{where}: runs before section '{collective.before}', which is absent")
        if len(set(collective.symbols)) != len(collective.symbols):
            raise PefError(f"{where}: lists a symbol twice")
        for i in collective.symbols:
            if not 0 <= i < nsym:
                raise PefError(f"{where}: symbol {_out_of(i, nsym)}")
            sym = meta.symbols[i]
            if collective.op == "allreduce_mean" and sym.dtype != "f32":
                raise PefError(f"{where}: averages '{sym.name}', which is {sym.dtype}, not f32")


def _check_non_persistent(meta: Meta) -> None:
    """Non-persistent buffers: distinct buffer symbols, each with an empty or sha256 digest."""
    nsym = len(meta.symbols)
    seen: set[int] = set()
    for n, entry in enumerate(meta.non_persistent):
        where = f"meta: non_persistent[{n}]"
        if not 0 <= entry.symbol < nsym:
            raise PefError(f"{where}: symbol {_out_of(entry.symbol, nsym)}")
        sym = meta.symbols[entry.symbol]
        if sym.role != "buffer":
            raise PefError(f"{where}: '{sym.name}' is not a buffer (its role is {sym.role})")
        if entry.symbol in seen:
            raise PefError(f"{where}: lists '{sym.name}' twice")
        seen.add(entry.symbol)
        digest = entry.sha256
        if digest and (len(digest) != 64 or digest.strip("0123456789abcdef")):
            raise PefError(f"{where}: '{sym.name}' has a malformed sha256 {digest[:80]!r}")


def _check_weights(program: Program) -> None:
    """Embedded weights (``Program.weights``): only in an inference PEF; every parameter and
    persistent buffer symbol once, nothing else, each of its symbol's dtype with
    ``numel(shape) * bytes(dtype)`` bytes of data."""
    weights: Weights | None = program.weights
    if weights is None:
        return
    meta = program.meta
    if not meta.inference:
        raise PefError("weights: a training PEF holds no weights (its state is a checkpoint)")
    nsym = len(meta.symbols)
    non_persistent = {e.symbol for e in meta.non_persistent}
    seen: set[int] = set()
    for n, tensor in enumerate(weights.tensors):
        where = f"weights: tensor {n}"
        if not 0 <= tensor.symbol < nsym:
            raise PefError(f"{where}: symbol {_out_of(tensor.symbol, nsym)}")
        sym = meta.symbols[tensor.symbol]
        where += f" ('{sym.name}')"
        if sym.role not in ("parameter", "buffer"):
            raise PefError(f"{where}: its role is {sym.role}, not parameter or buffer")
        if tensor.symbol in non_persistent:
            raise PefError(f"{where}: a non-persistent buffer (its values come from the model)")
        if tensor.symbol in seen:
            raise PefError(f"{where}: given twice")
        seen.add(tensor.symbol)
        if tensor.dtype != sym.dtype:
            raise PefError(f"{where}: is {tensor.dtype}, the symbol is {sym.dtype}")
        size = numel(sym.shape) * DTYPE_BYTES[sym.dtype]
        if len(tensor.data) != size:
            raise PefError(
                f"{where}: holds {len(tensor.data)} bytes, {sym.dtype} {sym.shape} is {size}"
            )
    for i, sym in enumerate(meta.symbols):
        if sym.role in ("parameter", "buffer") and i not in non_persistent and i not in seen:
            raise PefError(f"weights: no values for {sym.role} '{sym.name}' (symbol {i})")


RESIDENT_ROLES = ("parameter", "buffer", "optimizer_state", "activation", "gradient", "spill")
"""The roles of symbols that may stay on chip: the batch, the hyperparameters, the loss and the
outputs cross DRAM, the host giving or taking them every step."""


def _check_residency(program: Program, resident: Residency) -> None:
    """The residency of ``program``'s symbols, its sections co-resident or loaded in turn
    around pinned homes (see the module docstring)."""
    meta, t = program.meta, program.meta.target
    sections = {s.name: s for s in program.sections}
    on_home = {(sh.section, sh.pmu) for e in resident.symbols for sh in e.shared}
    homes = {(e.section, e.pmu) for e in resident.symbols}
    _check_slots(program, resident, on_home, homes)
    # The routes that must fit the links together: every section's when they are co-resident,
    # else each section's own with the hand-offs into it (keyed by section; "" for all).
    routes: dict[str, list[tuple[list[list[int]], int | None]]] = {}
    base = 0  # a scalar route's PMU, numbered across the sections
    for s in program.sections:
        group = "" if resident.co_resident else s.name
        routes.setdefault(group, [])
        routes[group] += [(r.hops, base + r.src[1] if r.scalar else None) for r in s.routes]
        base += len(s.pmus)
    fed: set[tuple[str, int]] = set()  # (section, pmu) holding a resident symbol
    seen: set[int] = set()
    for entry in resident.symbols:
        nsym = len(meta.symbols)
        if not 0 <= entry.symbol < nsym:
            raise PefError(f"resident: symbol {_out_of(entry.symbol, nsym)}")
        sym = meta.symbols[entry.symbol]
        where = f"resident: symbol '{sym.name}'"
        if entry.symbol in seen:
            raise PefError(f"{where} is listed twice")
        seen.add(entry.symbol)
        if sym.role not in RESIDENT_ROLES:
            raise PefError(f"{where} has role '{sym.role}', which crosses DRAM every step")
        home = _resident_pmu(sections, entry.section, entry.pmu, where + " (home)", t)
        stored = any(
            o.symbol == entry.symbol and o.pmu == entry.pmu for o in sections[entry.section].outputs
        )
        if home.symbol != entry.symbol and not stored:
            raise PefError(
                f"{where}: its home, section '{entry.section}' pmu {entry.pmu}, is neither "
                "loaded from it nor stored to it"
            )
        if home.source == "dram":
            fed.add((entry.section, entry.pmu))
        for k, handoff in enumerate(entry.handoffs):
            label = f"{where} hand-off {k}"
            pmu = _fed_once(
                sections, fed, (handoff.section, handoff.pmu), (entry.symbol, sym.name), label, t
            )
            hops = handoff.hops
            for h, hop in enumerate(hops):
                if len(hop) != 2 or not (0 <= hop[0] <= t.cols and 0 <= hop[1] <= t.rows):
                    raise PefError(f"{label}: hop {h} {hop} is outside the switch grid")
                if h and not adjacent((hops[h - 1][0], hops[h - 1][1]), (hop[0], hop[1])):
                    raise PefError(f"{label}: hop {h} {hop} is not adjacent to hop {h - 1}")
            if not hops or hops[0] != list(home.at) or hops[-1] != list(pmu.at):
                raise PefError(
                    f"{label}: must go from switch {list(home.at)} (the home) to "
                    f"{list(pmu.at)} (section '{handoff.section}' pmu {handoff.pmu})"
                )
            routes.setdefault("" if resident.co_resident else handoff.section, []).append(
                (hops, None)
            )
        for k, shared in enumerate(entry.shared):
            label = f"{where} shared PMU {k}"
            if shared.section == entry.section:
                problem = _in_place_problem(sections[shared.section], entry.pmu, shared.pmu)
                if problem is not None:
                    raise PefError(
                        f"{label}: in the home's own section '{shared.section}', and not an "
                        f"update in place: {problem}"
                    )
            pmu = _fed_once(
                sections, fed, (shared.section, shared.pmu), (entry.symbol, sym.name), label, t
            )
            if [pmu.at, *pmu.more_at] != [home.at, *home.more_at]:
                raise PefError(
                    f"{label}: section '{shared.section}' pmu {shared.pmu} sits at "
                    f"{[pmu.at, *pmu.more_at]}, not on the home's slots {[home.at, *home.more_at]}"
                )
            if (pmu.shape, pmu.dtype) != (home.shape, home.dtype):
                raise PefError(
                    f"{label}: {pmu.dtype}{pmu.shape} is not the home's {home.dtype}{home.shape}"
                )
    for s in program.sections:
        for i, pmu in enumerate(s.pmus):
            if pmu.source == "dram" and pmu.symbol in seen and (s.name, i) not in fed:
                name = meta.symbols[pmu.symbol].name
                raise PefError(
                    f"resident: section '{s.name}' pmu {i} loads on-chip symbol '{name}' but "
                    "is neither its home nor fed by a hand-off nor on its home's slots"
                )
    for group, carried in routes.items():
        what = "the co-resident sections" if not group else f"section '{group}' and its hand-offs"
        vector, scalar = link_loads(carried)
        for (a, b), n in vector.items():
            if n > t.link_capacity:
                raise PefError(
                    f"resident: link {list(a)} -> {list(b)} carries {n} routes of {what}, "
                    f"capacity {t.link_capacity}"
                )
        for (a, b), n in scalar.items():
            if n > t.scalar_link_capacity:
                raise PefError(
                    f"resident: scalar link {list(a)} -> {list(b)} carries the values of {n} "
                    f"PMUs of {what}, capacity {t.scalar_link_capacity}"
                )


def _in_place_problem(section: Section, home: int, old: int) -> str | None:
    """Why PMU ``old`` of ``section`` may not sit on the slots of PMU ``home`` of the same
    section, or None: the writer of ``home`` writes the symbol's new value over the old one
    (``rules.in_place_problem``)."""
    writers = [p for p in section.pcus if p.out_pmu == home]
    if len(writers) != 1:
        return f"pmu {home} has {len(writers)} writers, not one"
    writer = writers[0]
    if writer.out.index_port >= 0:
        return f"pcu '{writer.name}' writes it through a data-dependent access"

    def walk(pcu: Pcu, access: Access) -> UnitWalk:
        return (pcu.space, access.offset, access.strides)

    reads: list[tuple[UnitWalk, tuple[UnitWalk, UnitWalk] | None]] = []
    for pcu in section.pcus:
        for port in pcu.inputs:
            if port.pmu != old:
                continue
            if port.access.index_port >= 0:
                return f"pcu '{pcu.name}' reads pmu {old} through a data-dependent access"
            if pcu is writer:
                reads.append((walk(pcu, port.access), None))
                continue
            taken = [p.access for p in writer.inputs if p.pmu == pcu.out_pmu]
            if not taken:
                return f"pcu '{pcu.name}' reads it and pcu '{writer.name}' does not read its result"
            reads += [
                (walk(pcu, port.access), (walk(pcu, pcu.out), walk(writer, a))) for a in taken
            ]
    problem = in_place_problem(walk(writer, writer.out), reads)
    return None if problem is None else f"pcu '{writer.name}': {problem}"


def _check_slots(
    program: Program,
    resident: Residency,
    on_home: set[tuple[str, int]],
    homes: set[tuple[str, int]],
) -> None:
    """Co-resident sections share no slot (but a shared PMU on its home's slots, checked with
    its symbol); sections loaded in turn put no unit on a home's slots but the home, its
    shared PMUs and the PMUs of sections that neither load nor store its symbol and fit beside
    it (``rules.beside_pinned_home``)."""
    taken: dict[tuple[int, int], str] = {}  # slot -> the unit that holds it

    def take(at: list[int], what: str) -> None:
        slot = (at[0], at[1])
        if slot in taken:
            raise PefError(f"resident: slot {list(slot)} is both {taken[slot]}'s and {what}'s")
        taken[slot] = what

    t = program.meta.target

    def footprint(pmu: Pmu) -> int:
        size = numel(pmu.shape) * DTYPE_BYTES.get(pmu.dtype, 4)
        return pmu_footprint(pmu.tile_bytes, pmu.nbuf, size, pmu.pmus, t.pmu_bytes)

    symbol_of = {(e.section, e.pmu): e.symbol for e in resident.symbols}
    binding: dict[int, set[str]] = {e.symbol: {e.section} for e in resident.symbols}
    for s in program.sections:  # the sections that load or store each resident symbol
        bound = {p.symbol for p in s.pmus if p.source == "dram"} | {o.symbol for o in s.outputs}
        for symbol in bound & binding.keys():
            binding[symbol].add(s.name)
    pinned: dict[tuple[int, int], tuple[str, int, int]] = {}  # slot -> home, symbol, bytes
    for s in program.sections:
        for i, pmu in enumerate(s.pmus):
            if (s.name, i) in homes:
                home = f"section '{s.name}' pmu {i} '{pmu.name}'"
                for at in [pmu.at, *pmu.more_at]:
                    if (at[0], at[1]) in pinned:
                        other = pinned[(at[0], at[1])][0]
                        raise PefError(f"resident: homes {other} and {home} share slot {at}")
                    pinned[(at[0], at[1])] = (home, symbol_of[(s.name, i)], footprint(pmu))
    by_name = {s.name: s for s in program.sections}
    for sh in (sh for e in resident.symbols for sh in e.shared):  # on the home's slots too
        section = by_name.get(sh.section)
        if section is None or not 0 <= sh.pmu < len(section.pmus):
            continue  # refused with its symbol (_check_residency)
        pmu = section.pmus[sh.pmu]
        for at in [pmu.at, *pmu.more_at]:
            if (at[0], at[1]) in pinned:
                home, symbol, n = pinned[(at[0], at[1])]
                pinned[(at[0], at[1])] = (home, symbol, max(n, footprint(pmu)))
    for s in program.sections:
        units: list[tuple[str, list[list[int]], Pmu | None]] = [
            (f"pcu {i} '{p.name}'", [p.at, *p.more_at], None) for i, p in enumerate(s.pcus)
        ]
        for i, pmu in enumerate(s.pmus):
            if (s.name, i) in on_home or ((s.name, i) in homes and not resident.co_resident):
                continue  # on its home's slots: checked with its symbol below
            units.append((f"pmu {i} '{pmu.name}'", [pmu.at, *pmu.more_at], pmu))
        for unit, slots, buffer in units:
            what = f"section '{s.name}' {unit}"
            for at in slots:
                if resident.co_resident:
                    take(at, what)
                elif (at[0], at[1]) in pinned:
                    home, symbol, n = pinned[(at[0], at[1])]
                    symbols = program.meta.symbols
                    name = symbols[symbol].name if 0 <= symbol < len(symbols) else str(symbol)
                    if buffer is None:
                        why = "where no PCU may sit"
                    elif s.name in binding[symbol]:
                        why = f"whose symbol '{name}' its section loads or stores"
                    elif not beside_pinned_home(n, footprint(buffer), t.pmu_bytes):
                        why = (
                            f"and the two do not fit a PMU ({n} + {footprint(buffer)} bytes > "
                            f"{t.pmu_bytes})"
                        )
                    else:
                        continue  # beside the symbol, which idles while this section runs
                    raise PefError(
                        f"resident: {what} sits at {list(at)}, a slot of the pinned home "
                        f"{home}, {why}"
                    )


def _fed_once(
    sections: dict[str, Section],
    fed: set[tuple[str, int]],
    at: tuple[str, int],
    symbol: tuple[int, str],
    label: str,
    t: Target,
) -> Pmu:
    """PMU ``at`` (section, index) fed with resident symbol ``symbol`` (index, name) by a
    hand-off or on its home's slots: checked to load it and to be fed once, counted in
    ``fed``."""
    section, index = at
    pmu = _resident_pmu(sections, section, index, label, t)
    if pmu.source != "dram" or pmu.symbol != symbol[0]:
        raise PefError(f"{label}: section '{section}' pmu {index} is not loaded from '{symbol[1]}'")
    if at in fed:
        raise PefError(f"{label}: section '{section}' pmu {index} fed twice")
    fed.add(at)
    return pmu


def _resident_pmu(
    sections: dict[str, Section], name: str, index: int, where: str, t: Target
) -> Pmu:
    """PMU ``index`` of section ``name``, checked to exist and to hold its tensor whole."""
    section = sections.get(name)
    if section is None:
        raise PefError(f"{where}: no section '{name}'")
    if not 0 <= index < len(section.pmus):
        raise PefError(f"{where}: section '{name}' pmu {_out_of(index, len(section.pmus))}")
    pmu = section.pmus[index]
    size = numel(pmu.shape) * DTYPE_BYTES[pmu.dtype]
    if not held(size, pmu.pmus, t.pmu_bytes):
        raise PefError(
            f"{where}: section '{name}' pmu {index} '{pmu.name}' ({size} bytes) is streamed in "
            f"tiles through {pmu.pmus} PMUs, it cannot keep the symbol on chip"
        )
    return pmu


class _SectionChecker:
    """The checks of one section, with the context its error messages need."""

    def __init__(self, section: Section, meta: Meta) -> None:
        self.s = section
        self.meta = meta
        self.t = meta.target
        self.where = f"section '{section.name}'"
        self.slots: dict[int, set[tuple[int, ...]]] = {}

    def fail(self, what: str) -> PefError:
        return PefError(f"{self.where}: {what}")

    def check(self) -> None:
        s = self.s
        nsym = len(self.meta.symbols)
        for i, sym in enumerate(s.inputs):
            if not 0 <= sym < nsym:
                raise self.fail(f"inputs[{i}] is symbol {sym}, out of range (0..{nsym - 1})")
        if len(set(s.inputs)) != len(s.inputs):
            raise self.fail("inputs lists a symbol twice")
        for i, pmu in enumerate(s.pmus):
            self.check_pmu(i, pmu)
        written: set[int] = set()  # PMUs written by the PCUs checked so far
        for i, pcu in enumerate(s.pcus):
            self.check_pcu(i, pcu, written)
            written.add(pcu.out_pmu)
        self.check_outputs()
        self.check_copy_slots()
        self.check_routes()

    # -- units ---------------------------------------------------------------------------------

    def pmu_label(self, i: int) -> str:
        return f"pmu {i} '{self.s.pmus[i].name}'"

    def pcu_label(self, i: int) -> str:
        pcu = self.s.pcus[i]
        return f"pcu {i} '{pcu.name}'" + (f" ({pcu.loc})" if pcu.loc else "")

    def check_at(self, label: str, at: list[int]) -> None:
        t = self.t
        if len(at) != 2 or not (0 <= at[0] < t.cols and 0 <= at[1] < t.rows):
            raise self.fail(f"{label}: at {at} is not a slot of the {t.cols}x{t.rows} grid")

    def check_pmu(self, i: int, pmu: Pmu) -> None:
        label = self.pmu_label(i)
        t = self.t
        self.check_at(label, pmu.at)
        if any(dim < 0 for dim in pmu.shape):
            raise self.fail(f"{label}: negative dim in shape {pmu.shape}")
        if pmu.tile_bytes < 0 or pmu.nbuf < 1 or pmu.banks < 1:
            raise self.fail(
                f"{label}: tile_bytes {pmu.tile_bytes}, nbuf {pmu.nbuf}, banks {pmu.banks} "
                "(need tile_bytes >= 0, nbuf >= 1, banks >= 1)"
            )
        if pmu.bank_skew < 0:
            raise self.fail(f"{label}: bank_skew {pmu.bank_skew} must be >= 0 (0: none)")
        if pmu.tile_bytes * pmu.nbuf > t.pmu_bytes:
            raise self.fail(
                f"{label}: tile_bytes {pmu.tile_bytes} x nbuf {pmu.nbuf} = "
                f"{pmu.tile_bytes * pmu.nbuf} bytes exceeds the PMU capacity {t.pmu_bytes}"
            )
        if pmu.banks > t.pmu_banks:
            raise self.fail(f"{label}: {pmu.banks} banks, the target's PMUs have {t.pmu_banks}")
        if pmu.pmus < 1 or len(pmu.more_at) != pmu.pmus - 1:
            raise self.fail(
                f"{label}: spans {pmu.pmus} PMUs but more_at lists {len(pmu.more_at)} slots "
                "(need pmus >= 1 and pmus - 1 slots)"
            )
        for k, at in enumerate(pmu.more_at):
            self.check_at(f"{label} more_at[{k}]", at)
        size = numel(pmu.shape) * DTYPE_BYTES[pmu.dtype]
        if pmu.pmus > 1 and not held(size, pmu.pmus, t.pmu_bytes):
            raise self.fail(
                f"{label}: holds {size} bytes in {pmu.pmus} PMUs of {t.pmu_bytes} bytes"
            )
        if pmu.source == "dram":
            symbols = self.meta.symbols
            if not 0 <= pmu.symbol < len(symbols):
                raise self.fail(f"{label}: symbol {_out_of(pmu.symbol, len(symbols))}")
            if pmu.symbol not in self.s.inputs:
                raise self.fail(
                    f"{label}: loads symbol '{symbols[pmu.symbol].name}', "
                    "which is not among the section's inputs"
                )
            self.check_same_tensor(label, pmu, symbols[pmu.symbol])
        else:
            npcu = len(self.s.pcus)
            if not 0 <= pmu.producer < npcu:
                raise self.fail(f"{label}: producer pcu {_out_of(pmu.producer, npcu)}")
            if self.s.pcus[pmu.producer].out_pmu != i:
                raise self.fail(
                    f"{label}: producer {self.pcu_label(pmu.producer)} writes pmu "
                    f"{self.s.pcus[pmu.producer].out_pmu}, not this one"
                )

    def check_same_tensor(self, label: str, pmu: Pmu, sym: Symbol) -> None:
        if numel(pmu.shape) != numel(sym.shape) or pmu.dtype != sym.dtype:
            raise self.fail(
                f"{label}: holds {pmu.shape} {pmu.dtype} but symbol '{sym.name}' is "
                f"{sym.shape} {sym.dtype}"
            )

    def check_access(self, label: str, what: str, access: Access, pcu: Pcu, pmu: int) -> None:
        if len(access.strides) != len(pcu.space):
            raise self.fail(
                f"{label}: {what} has {len(access.strides)} strides for {len(pcu.space)} counters"
            )
        npmu = len(self.s.pmus)
        if not 0 <= pmu < npmu:
            raise self.fail(f"{label}: {what} pmu {pmu} out of range (0..{npmu - 1})")

    def check_bounds(
        self, label: str, what: str, access: Access, space: list[int], pmu: int
    ) -> None:
        size = numel(self.s.pmus[pmu].shape)
        lo, hi = access_range(access, space)
        if lo < 0 or hi >= size:
            raise self.fail(
                f"{label}: {what} reaches addresses {lo}..{hi}, outside "
                f"{self.pmu_label(pmu)} of {size} elements"
            )

    def check_index(self, label: str, what: str, access: Access, pcu: Pcu, port: int) -> None:
        """A data-dependent access: indexed by another input port, affine and i64, with a
        positive limit."""
        if access.index_port < 0:
            return
        k = access.index_port
        if k >= len(pcu.inputs) or k == port or pcu.inputs[k].access.index_port >= 0:
            raise self.fail(
                f"{label}: {what} is indexed by input {k}, which must be another input port "
                "with an affine access"
            )
        pmu = pcu.inputs[k].pmu
        if 0 <= pmu < len(self.s.pmus) and self.s.pmus[pmu].dtype != "i64":
            raise self.fail(f"{label}: {what} is indexed by input {k}, which is not i64")
        if access.index_limit < 1:
            raise self.fail(f"{label}: {what} has index limit {access.index_limit}, must be >= 1")

    def check_pcu(self, i: int, pcu: Pcu, written_before: set[int]) -> None:
        label = self.pcu_label(i)
        s, t = self.s, self.t
        self.check_at(label, pcu.at)
        if pcu.value and not _VALUE_NAME.fullmatch(pcu.value):
            raise self.fail(f"{label}: value '{pcu.value}' is not a traced value's name")
        if any(e < 0 for e in pcu.space):
            raise self.fail(f"{label}: negative extent in space {pcu.space}")
        if len(pcu.tile) != len(pcu.space) or any(e < 1 for e in pcu.tile):
            raise self.fail(f"{label}: tile {pcu.tile} does not fit space {pcu.space}")
        if not 1 <= pcu.lanes <= t.pcu_lanes:
            raise self.fail(f"{label}: {pcu.lanes} lanes, the target's PCUs have {t.pcu_lanes}")
        dtypes: list[str] = []
        for k, port in enumerate(pcu.inputs):
            what = f"input {k}"
            self.check_access(label, what, port.access, pcu, port.pmu)
            pmu = s.pmus[port.pmu]
            if pmu.source != "dram" and port.pmu not in written_before:
                raise self.fail(
                    f"{label}: {what} reads {self.pmu_label(port.pmu)} before any earlier PCU "
                    "writes it (PCUs must be in dataflow order)"
                )
            self.check_index(label, what, port.access, pcu, k)
            if port.register:
                problem = register_problem(
                    pcu.space, port.access.strides, port.access.index_port >= 0
                )
                if problem:
                    raise self.fail(f"{label}: {what} is a register port but {problem}")
            if reaches_any(pcu.space, port.access.strides):
                self.check_bounds(label, what, port.access, pcu.space, port.pmu)
            dtypes.append(pmu.dtype)
        self.check_index(label, "output", pcu.out, pcu, -1)
        self.check_access(label, "output", pcu.out, pcu, pcu.out_pmu)
        self.check_parallel(label, pcu)  # once every access has a stride a counter
        out_pmu = s.pmus[pcu.out_pmu]
        if out_pmu.source != "pcu":
            raise self.fail(f"{label}: writes {self.pmu_label(pcu.out_pmu)}, loaded from DRAM")
        if out_pmu.dtype != pcu.dtype:
            raise self.fail(
                f"{label}: produces {pcu.dtype} into {self.pmu_label(pcu.out_pmu)} of "
                f"{out_pmu.dtype}"
            )
        if reaches_any(pcu.space, pcu.out.strides, output=True):
            self.check_bounds(label, "output", pcu.out, pcu.space, pcu.out_pmu)
        problem = combiner_problem(
            pcu.space, pcu.out.strides, pcu.combiner, scatter=pcu.out.index_port >= 0
        )
        if problem:
            raise self.fail(f"{label}: {problem}")
        for k, stage in enumerate(pcu.stages):
            value = len(pcu.inputs) + k
            where = f"{label}: stage {k} '{stage.op}'"
            sig = OPCODES.get(stage.op)
            if sig is None:
                raise self.fail(f"{where}: unknown opcode")
            if len(stage.args) != sig.arity:
                raise self.fail(f"{where}: {len(stage.args)} operands, takes {sig.arity}")
            for a in stage.args:
                if not 0 <= a < value:
                    raise self.fail(
                        f"{where}: operand {a} is not an earlier value (0..{value - 1})"
                    )
            if stage.op in ("const", "counter") and stage.imm is None:
                raise self.fail(f"{where}: needs an immediate")
            if stage.op == "counter" and (
                not isinstance(stage.imm, int) or not 0 <= stage.imm < len(pcu.space)
            ):
                raise self.fail(
                    f"{where}: counter {stage.imm} is not one of the {len(pcu.space)} counters"
                )
            if (
                stage.op == "const"
                and stage.dtype not in FLOAT_DTYPES
                and not _is_integral(stage.imm)
            ):
                raise self.fail(f"{where}: immediate {stage.imm} is not an {stage.dtype}")
            problem = type_error(stage.op, stage.dtype, [dtypes[a] for a in stage.args])
            if problem:
                raise self.fail(f"{label}: stage {k} {problem}")
            dtypes.append(stage.dtype)
        if not 0 <= pcu.result < len(dtypes):
            raise self.fail(f"{label}: result {pcu.result} is not a value (0..{len(dtypes) - 1})")
        if dtypes[pcu.result] != pcu.dtype:
            raise self.fail(
                f"{label}: result value {pcu.result} is {dtypes[pcu.result]}, the unit "
                f"produces {pcu.dtype}"
            )

    def check_parallel(self, label: str, pcu: Pcu) -> None:
        """A parallel PCU's factors and copies (see the module docstring)."""
        p = pcu.parallel
        if pcu.interleaved:
            problem = interleave_problem(pcu.space, pcu.out.strides, p or [1] * len(pcu.space))
            if problem:
                raise self.fail(f"{label}: {problem}")
        if not p:
            if pcu.more_at:
                raise self.fail(f"{label}: more_at lists {len(pcu.more_at)} slots, not parallel")
            return
        problem = parallel_problem(
            pcu.space,
            pcu.out.strides,
            p,
            indexed=pcu.out.index_port >= 0 or any(k.access.index_port >= 0 for k in pcu.inputs),
            positional=any(OPCODES[st.op].positional for st in pcu.stages if st.op in OPCODES),
            counters=[
                st.imm for st in pcu.stages if st.op == "counter" and isinstance(st.imm, int)
            ],
            reads=[(f"pmu {port.pmu}", port.access) for port in pcu.inputs],
        )
        if problem:
            raise self.fail(f"{label}: {problem}")
        copies = math.prod(p)
        if len(pcu.more_at) != copies - 1:
            raise self.fail(
                f"{label}: parallel {p} is {copies} copies but more_at lists "
                f"{len(pcu.more_at)} slots (need {copies - 1})"
            )
        for k, at in enumerate(pcu.more_at):
            self.check_at(f"{label} more_at[{k}]", at)

    def check_copy_slots(self) -> None:
        """The copies of parallel PCUs sit on slots of their own."""
        if not any(p.parallel for p in self.s.pcus):
            return
        taken: dict[tuple[int, ...], str] = {}
        for i, pcu in enumerate(self.s.pcus):
            for k, at in enumerate([pcu.at, *pcu.more_at]):
                what = f"{self.pcu_label(i)} copy {k}"
                slot = tuple(at)
                if slot in taken:
                    raise self.fail(f"{what}: slot {list(slot)} (more_at) is also {taken[slot]}'s")
                taken[slot] = what

    def check_outputs(self) -> None:
        s = self.s
        symbols = self.meta.symbols
        seen: set[int] = set()
        for i, out in enumerate(s.outputs):
            if not 0 <= out.symbol < len(symbols):
                raise self.fail(
                    f"outputs[{i}] is symbol {out.symbol}, out of range (0..{len(symbols) - 1})"
                )
            if out.symbol in seen:
                raise self.fail(f"outputs stores symbol '{symbols[out.symbol].name}' twice")
            seen.add(out.symbol)
            if not 0 <= out.pmu < len(s.pmus):
                raise self.fail(f"outputs[{i}] is pmu {_out_of(out.pmu, len(s.pmus))}")
            self.check_same_tensor(
                f"outputs[{i}] ({self.pmu_label(out.pmu)})", s.pmus[out.pmu], symbols[out.symbol]
            )

    # -- routes --------------------------------------------------------------------------------

    def check_routes(self) -> None:
        s, t = self.s, self.t
        counts = {"pcu": len(s.pcus), "pmu": len(s.pmus), "dram": len(self.meta.symbols)}
        for r, route in enumerate(s.routes):
            label = f"route {r} ({route.src[0]} {route.src[1]} -> {route.dst[0]} {route.dst[1]})"
            for end, (kind, index) in (("src", route.src), ("dst", route.dst)):
                if kind not in counts:
                    raise self.fail(f"{label}: {end} kind '{kind}' is not pcu, pmu or dram")
                if not 0 <= index < counts[kind]:
                    raise self.fail(
                        f"{label}: {end} {kind} {index} out of range (0..{counts[kind] - 1})"
                    )
            prev: tuple[int, int] | None = None
            for h, hop in enumerate(route.hops):
                if len(hop) != 2 or not (0 <= hop[0] <= t.cols and 0 <= hop[1] <= t.rows):
                    raise self.fail(
                        f"{label}: hop {h} {hop} is outside the switch grid "
                        f"(0..{t.cols} x 0..{t.rows})"
                    )
                cur = (hop[0], hop[1])
                if prev is not None:
                    if not adjacent(prev, cur):
                        raise self.fail(
                            f"{label}: hop {h} {list(cur)} is not adjacent to hop {h - 1} "
                            f"{list(prev)}"
                        )
                prev = cur
            if route.scalar:
                self.check_scalar_route(label, route)
        vector, scalar = link_loads((r.hops, r.src[1] if r.scalar else None) for r in s.routes)
        for (a, b), n in vector.items():
            if n > t.link_capacity:
                raise self.fail(
                    f"link {list(a)} -> {list(b)} carries {n} routes, capacity {t.link_capacity}"
                )
        for (a, b), n in scalar.items():
            if n > t.scalar_link_capacity:
                raise self.fail(
                    f"scalar link {list(a)} -> {list(b)} carries the values of {n} PMUs, "
                    f"capacity {t.scalar_link_capacity}"
                )
        for r, route in enumerate(s.routes):
            label = f"route {r} ({route.src[0]} {route.src[1]} -> {route.dst[0]} {route.dst[1]})"
            if route.taps or self.parallel_end(route):
                self.check_taps(label, route)
            else:
                self.check_route_ends(label, route)
        self.check_streams_routed()
        self.check_copies_fed()

    def check_scalar_route(self, label: str, route: Route) -> None:
        """A route on the scalar network: the target has one, and it goes from a PMU into a PCU
        that reads that PMU through a register port."""
        if self.t.scalar_link_capacity < 1:
            raise self.fail(
                f"{label}: is scalar but target '{self.t.name}' has no scalar network "
                "(scalar_link_capacity 0)"
            )
        if route.src[0] != "pmu" or route.dst[0] != "pcu":
            raise self.fail(f"{label}: is scalar but does not go from a PMU into a PCU")
        pcu = self.s.pcus[route.dst[1]]
        if not any(p.register and p.pmu == route.src[1] for p in pcu.inputs):
            raise self.fail(
                f"{label}: is scalar but {self.pcu_label(route.dst[1])} reads pmu "
                f"{route.src[1]} through no register port"
            )

    def parallel_end(self, route: Route) -> bool:
        """Whether an endpoint of ``route`` is a parallel PCU."""
        return any(kind == "pcu" and self.s.pcus[i].parallel for kind, i in (route.src, route.dst))

    def pmu_slots(self, index: int) -> set[tuple[int, ...]]:
        """The slots of PMU ``index`` (``at`` and ``more_at``), made once a PMU."""
        slots = self.slots.get(index)
        if slots is None:
            pmu = self.s.pmus[index]
            slots = self.slots[index] = {tuple(pmu.at), *(tuple(a) for a in pmu.more_at)}
        return slots

    def copy_slot(self, pcu: Pcu, copy: int) -> list[int]:
        return list(pcu.at if copy == 0 else pcu.more_at[copy - 1])

    def check_taps(self, label: str, route: Route) -> None:
        """A route of a parallel PCU (see the module docstring)."""
        s = self.s
        if route.src[0] == "pmu" and route.dst[0] == "pcu":
            pcu_index, pmu_index, way = route.dst[1], route.src[1], "into"
        elif route.src[0] == "pcu" and route.dst[0] == "pmu":
            pcu_index, pmu_index, way = route.src[1], route.dst[1], "out of"
        else:
            raise self.fail(f"{label}: taps on a route that is not between a PMU and a PCU")
        pcu = s.pcus[pcu_index]
        if not pcu.parallel:
            raise self.fail(
                f"{label}: taps on a route of {self.pcu_label(pcu_index)}, not parallel"
            )
        copies = math.prod(pcu.parallel)
        if not route.taps:
            raise self.fail(f"{label}: no taps on a route {way} parallel pcu {pcu_index}")
        if not route.hops:
            raise self.fail(f"{label}: has no hops")
        for t, tap in enumerate(route.taps):
            if len(tap) != 2 or tap[0] != pcu_index or not 0 <= tap[1] < copies:
                raise self.fail(
                    f"{label}: taps[{t}] {tap} is not [{pcu_index}, copy] with copy in "
                    f"0..{copies - 1}"
                )
        pmu_slots = self.pmu_slots(pmu_index)
        hops = [list(h) for h in route.hops]
        if way == "into":
            if tuple(hops[0]) not in pmu_slots:
                raise self.fail(
                    f"{label}: starts at switch {hops[0]}, not at one of "
                    f"{self.pmu_label(pmu_index)}'s PMUs"
                )
            passed = {tuple(h) for h in hops}
            for tap in route.taps:
                slot = self.copy_slot(pcu, tap[1])
                if tuple(slot) not in passed:
                    raise self.fail(
                        f"{label}: feeds copy {tap[1]} at {slot} (taps) but does not pass its "
                        "switch"
                    )
        else:
            if pcu.out_pmu != pmu_index:
                raise self.fail(f"{label}: goes to pmu {pmu_index}, not its pcu's output")
            if len(route.taps) != 1:
                raise self.fail(f"{label}: a route out of a parallel PCU names one copy (taps)")
            slot = self.copy_slot(pcu, route.taps[0][1])
            if hops[0] != slot:
                raise self.fail(
                    f"{label}: starts at switch {hops[0]}, its copy {route.taps[0][1]} is at {slot}"
                )
            if tuple(hops[-1]) not in pmu_slots:
                raise self.fail(
                    f"{label}: ends at switch {hops[-1]}, not at one of "
                    f"{self.pmu_label(pmu_index)}'s PMUs"
                )

    def check_copies_fed(self) -> None:
        """Every input port and the output of every copy of a parallel PCU has one route."""
        s = self.s
        fed: Counter[tuple[int, int, int]] = Counter()  # (pmu, pcu, copy) into; (-1, ..) out
        for route in s.routes:
            for tap in route.taps:
                if route.dst[0] == "pcu":
                    fed[(route.src[1], tap[0], tap[1])] += 1
                else:
                    fed[(-1, tap[0], tap[1])] += 1
        for i, pcu in enumerate(s.pcus):
            if not pcu.parallel:
                continue
            for copy in range(math.prod(pcu.parallel)):
                for k, port in enumerate(pcu.inputs):
                    n = fed[(port.pmu, i, copy)]
                    if n != 1:
                        raise self.fail(
                            f"input {k} of {self.pcu_label(i)} copy {copy} is fed by {n} routes "
                            f"(taps) from pmu {port.pmu}, need exactly 1"
                        )
                n = fed[(-1, i, copy)]
                if n != 1:
                    raise self.fail(
                        f"the output of {self.pcu_label(i)} copy {copy} has {n} routes (taps), "
                        "need exactly 1"
                    )

    def endpoint_switch(self, end: tuple[str, int], other: tuple[str, int]) -> list[int]:
        """The switch where an endpoint meets the network: a unit's own slot's switch; for DRAM,
        the left-edge switch ``[0, y]`` of the other endpoint's row."""
        kind, index = end
        if kind == "dram":
            return [0, self.endpoint_switch(other, end)[1]]
        unit = self.s.pcus[index] if kind == "pcu" else self.s.pmus[index]
        return list(unit.at)

    def check_route_ends(self, label: str, route: Route) -> None:
        """A route starts at its source's switch and ends at its destination's."""
        if route.src[0] == "dram" and route.dst[0] == "dram":
            raise self.fail(f"{label}: goes from DRAM to DRAM")
        if not route.hops:
            raise self.fail(f"{label}: has no hops")
        first, last = list(route.hops[0]), list(route.hops[-1])
        src = self.endpoint_switch(route.src, route.dst)
        dst = self.endpoint_switch(route.dst, route.src)
        if first != src:
            raise self.fail(f"{label}: starts at switch {first}, its source's switch is {src}")
        if last != dst:
            raise self.fail(f"{label}: ends at switch {last}, its destination's switch is {dst}")

    def check_streams_routed(self) -> None:
        """Every stream of the section has a route: each PMU's fill (from DRAM or from the PCUs
        writing it), each PCU input port, each output's store to DRAM."""
        s = self.s
        routed = {(tuple(r.src), tuple(r.dst), r.scalar) for r in s.routes}
        needed: list[tuple[tuple[str, int], tuple[str, int], bool, str]] = []
        for i, pmu in enumerate(s.pmus):
            if pmu.source == "dram":
                what = f"the load of {self.pmu_label(i)}"
                needed.append((("dram", pmu.symbol), ("pmu", i), False, what))
        for i, pcu in enumerate(s.pcus):
            for k, port in enumerate(pcu.inputs):
                what = f"input {k} of {self.pcu_label(i)}"
                scalar = on_scalar_network(port.register, self.t.scalar_link_capacity)
                needed.append((("pmu", port.pmu), ("pcu", i), scalar, what))
            what = f"the output of {self.pcu_label(i)}"
            needed.append((("pcu", i), ("pmu", pcu.out_pmu), False, what))
        for src, dst, scalar, what in needed:
            if (src, dst, scalar) not in routed:
                network = " on the scalar network" if scalar else ""
                raise self.fail(
                    f"no route{network} for {what} ({src[0]} {src[1]} -> {dst[0]} {dst[1]})"
                )
        # A PMU stored under several names streams to DRAM once.
        stores = {r.src[1] for r in s.routes if r.src[0] == "pmu" and r.dst[0] == "dram"}
        for out in s.outputs:
            if out.pmu not in stores:
                name = self.meta.symbols[out.symbol].name
                raise self.fail(
                    f"no route for the store of {self.pmu_label(out.pmu)} to '{name}' "
                    f"(pmu {out.pmu} -> dram)"
                )


def _is_integral(x: float | int | None) -> bool:
    return isinstance(x, int) or (isinstance(x, float) and math.isfinite(x) and x.is_integer())


def _out_of(index: int, count: int) -> str:
    return f"{index}, out of range (0..{count - 1})" if count else f"{index}, but there are none"
