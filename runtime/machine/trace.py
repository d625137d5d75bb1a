"""Timelines of a program as ``trace.json``, in the Chrome trace-event format (JSON object form),
which Perfetto's UI (ui.perfetto.dev, "Open trace file") and chrome://tracing open as they are.

Two clocks, in two kinds of processes of the trace, never mixed on one track:

- **modelled time** (the performance model, ``runtime/machine/perf.py``): one process a section,
  ``section forward.0``, whose tracks are

  - ``runs``: a slice a run of the section (its modelled cycles; args: cycles, bound, FLOPs,
    off-chip bytes, fraction of peak) and an instant ``load forward.0`` where the fabric is
    configured for it (reconfiguring is not modelled: it takes no time here);
  - ``DRAM``: the run's off-chip traffic at the target's bandwidth: its loads from the start,
    then its spills, and its stores ending with the run (the model overlaps them with compute);
  - one track a PCU (``pcu 3 tanh_5``): the unit busy from the cycle its first input can arrive
    (the fill of the units before it, as the model chains them) for its modelled cycles; in
    co-resident sections, which run chained (the model's rule 8), from its modelled start,
    counted from the step's start (before the section's own run when an earlier section's
    units were still running).

  Sections run one after another on the fabric, so a run starts where the one before ended.
- **host wall time** (``rdu-run --profile`` only): one process, ``emulator (host wall time)``,
  with ``sections``, a slice for every section run as long as the numpy emulator took, and
  ``collectives``, the data-parallel exchanges (gradient all-reduce, broadcasts, metrics) as long
  as they took. Its origin is the first thing recorded.

``rdu-compile`` writes one modelled step (every section once, in order); ``rdu-run --profile``
writes what ran (``RunRecorder``: every section run and collective, evaluation batches
included). A long run is cut short so that the file stays readable: per-unit and DRAM tracks for
the first ``DETAIL_RUNS`` runs of each section, and at most ``MAX_RUNS`` runs in all
(``otherData`` says how many were left out).

The format is a plain JSON object (``traceEvents``, ``displayTimeUnit``, ``otherData``):
``X`` (complete) events with ``ts`` and ``dur`` in microseconds, ``i`` (instant) events and
``M`` (metadata) events naming processes and threads; slices on one track never overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from runtime.machine.atomic import atomic_write_bytes
from runtime.machine.perf import SectionModel, program_models
from runtime.pef.schema import Program, Section

DETAIL_RUNS = 4
"""Runs of each section drawn with their units and DRAM traffic (the model is the same for
every run of a section: the first ones show it)."""
MAX_RUNS = 50_000
"""Section runs recorded at most (about 10 MB of trace); later ones are counted, not drawn."""
MAX_COLLECTIVES = 50_000


@dataclass(frozen=True)
class SectionRun:
    """One run of a section on the emulator, in host time (``time.perf_counter``)."""

    section: str
    start: float
    seconds: float


@dataclass(frozen=True)
class CollectiveCall:
    """One data-parallel collective, in host time: what it exchanged (its one-line
    description), its kind (``allreduce_mean``, ``allreduce_sum``, ``broadcast``)."""

    what: str
    op: str
    start: float
    seconds: float


@dataclass
class RunRecorder:
    """What a run did, for its trace: ``attach`` it to a fabric (``Fabric.on_run``) and pass
    collectives through ``runtime.distributed.TimedCommunicator``."""

    runs: list[SectionRun] = field(default_factory=list)
    collectives: list[CollectiveCall] = field(default_factory=list)
    runs_dropped: int = 0
    collectives_dropped: int = 0

    def attach(self, fabric: Any) -> None:
        """Record every section run of ``fabric`` (a ``runtime.fabric.Fabric``)."""
        fabric.on_run = self.section_ran

    def section_ran(self, section: str, start: float, seconds: float) -> None:
        if len(self.runs) < MAX_RUNS:
            self.runs.append(SectionRun(section, start, seconds))
        else:
            self.runs_dropped += 1

    def collective_ran(self, what: str, op: str, start: float, seconds: float) -> None:
        if len(self.collectives) < MAX_COLLECTIVES:
            self.collectives.append(CollectiveCall(what, op, start, seconds))
        else:
            self.collectives_dropped += 1


# -- the events -----------------------------------------------------------------------------------


def unit_starts(section: Section, model: SectionModel) -> list[int]:
    """The cycle each PCU of ``section`` can start (its inputs' first elements there): the
    chain of fills ``runtime.machine.perf.model_section`` adds up for the section's fill."""
    ready: dict[int, int] = {}  # PMU -> cycles until its first element is there
    starts: list[int] = []
    for pcu, unit in zip(section.pcus, model.units, strict=True):
        start = max((ready.get(p.pmu, 0) for p in pcu.inputs), default=0)
        starts.append(start)
        ready[pcu.out_pmu] = max(ready.get(pcu.out_pmu, 0), start + unit.fill)
    return starts


class TraceBuilder:
    """Events of one trace, with the process and track ids and their names."""

    HOST_PID = 1
    """The host's process; each section's is ``2 + its index``."""
    RUNS, DRAM, FIRST_PCU = 1, 2, 3
    """Track (thread) ids in a section's process: its runs, its DRAM traffic, and PCU ``i`` at
    ``FIRST_PCU + i``. Never 0: Perfetto's JSON importer takes thread 0 for the process's main
    thread (tid = pid) and would merge that track with the one whose tid is the pid."""
    SECTIONS, COLLECTIVES = 1, 2
    """Track ids in the host's process."""

    def __init__(self, program: Program, models: Sequence[SectionModel] | None = None) -> None:
        """``models``: the sections' models, in order, when already computed."""
        self.program = program
        self.events: list[dict[str, Any]] = []
        if models is None:
            models = program_models(program)
        self.models = {s.name: m for s, m in zip(program.sections, models, strict=True)}
        self.index = {s.name: i for i, s in enumerate(program.sections)}
        self.starts = {s.name: unit_starts(s, self.models[s.name]) for s in program.sections}
        self.clock_ghz = program.meta.target.clock_ghz
        self.named: set[tuple[int, int]] = set()
        self.other: dict[str, Any] = {
            "model": program.meta.model_name,
            "target": program.meta.target.name,
            "batch_size": program.meta.batch_size,
            "clock_ghz": self.clock_ghz,
        }

    def us(self, cycles: float) -> float:
        """Microseconds of ``cycles`` at the target's clock."""
        return cycles / (self.clock_ghz * 1e3)

    def track(self, pid: int, tid: int, process: str, thread: str) -> None:
        """Name a process and one of its tracks (once each), sorted by their ids."""
        if (pid, -1) not in self.named:
            self.named.add((pid, -1))
            self.events.append(_meta("process_name", pid, 0, name=process))
            self.events.append(_meta("process_sort_index", pid, 0, sort_index=pid))
        if (pid, tid) not in self.named:
            self.named.add((pid, tid))
            self.events.append(_meta("thread_name", pid, tid, name=thread))
            self.events.append(_meta("thread_sort_index", pid, tid, sort_index=tid))

    def modelled_run(self, name: str, ts: float, run: int, detail: bool) -> float:
        """One run of section ``name`` from ``ts`` (microseconds of modelled time); its end."""
        model = self.models[name]
        section = self.program.sections[self.index[name]]
        pid = 2 + self.index[name]
        process = f"section {name} (modelled)"
        dur = self.us(model.cycles)
        self.track(pid, self.RUNS, process, "runs")
        self.events.append(
            {"ph": "i", "s": "t", "pid": pid, "tid": self.RUNS, "ts": ts, "name": f"load {name}",
             "cat": "config", "args": {"note": "reconfiguring the fabric is not modelled"}}
        )  # fmt: skip
        self.events.append(
            _slice(pid, self.RUNS, ts, dur, name, "section", run=run, cycles=model.cycles,
                   bound=model.bound, flops=model.flops, offchip_bytes=model.dram_bytes,
                   fraction_of_peak=round(model.fraction_of_peak, 6))
        )  # fmt: skip
        if detail:
            self._dram(pid, process, ts, model)
            origin, starts = ts, self.starts[name]
            if model.resident:  # chained (rule 8): from the step's start, before this run's
                origin -= self.us(model.chained_from)
                starts = [t.start for t in model.times]
            for i, (unit, start) in enumerate(zip(model.units, starts, strict=True)):
                tid = self.FIRST_PCU + i
                self.track(pid, tid, process, f"pcu {i} {unit.name}")
                self.events.append(
                    _slice(pid, tid, origin + self.us(start), self.us(unit.cycles), unit.name,
                           "unit", cycles=unit.cycles, bound=unit.bound, vectors=unit.vectors,
                           initiation_interval=unit.ii, fill=unit.fill, copies=unit.copies,
                           loc=section.pcus[i].loc)
                )  # fmt: skip
        return ts + dur

    def _dram(self, pid: int, process: str, ts: float, model: SectionModel) -> None:
        """The run's off-chip transfers on its ``DRAM`` track (see the module docstring)."""
        per_cycle = model.dram_bytes_per_cycle
        if not model.dram_bytes or per_cycle == float("inf"):
            return
        self.track(pid, self.DRAM, process, "DRAM")
        traffic = model.traffic
        end = ts + self.us(model.cycles)
        load, spill = self.us(traffic.bytes_in / per_cycle), self.us(traffic.spilled / per_cycle)
        store = self.us(traffic.bytes_out / per_cycle)
        for what, start, dur, size in (
            ("load", ts, load, traffic.bytes_in),
            ("spill", ts + load, spill, traffic.spilled),
            ("store", end - store, store, traffic.bytes_out),
        ):
            if size:
                self.events.append(_slice(pid, self.DRAM, start, dur, f"{what} {size} B", "dram",
                                          bytes=size))  # fmt: skip

    def modelled_step(self) -> None:
        """One run of every section, in order (what ``rdu-compile`` writes)."""
        ts = 0.0
        for section in self.program.sections:
            ts = self.modelled_run(section.name, ts, 0, detail=True)
        self.other["modelled_step_us"] = ts

    def recorded(self, recorder: RunRecorder) -> None:
        """What ``recorder`` saw: every run in modelled time, and host wall time beside it."""
        origin = min(
            [r.start for r in recorder.runs] + [c.start for c in recorder.collectives],
            default=0.0,
        )
        ts = 0.0
        runs: dict[str, int] = {}
        host = "emulator (host wall time)"
        for run in recorder.runs:
            n = runs.get(run.section, 0)
            runs[run.section] = n + 1
            ts = self.modelled_run(run.section, ts, n, detail=n < DETAIL_RUNS)
            self.track(self.HOST_PID, self.SECTIONS, host, "sections")
            self.events.append(
                _slice(self.HOST_PID, self.SECTIONS, (run.start - origin) * 1e6, run.seconds * 1e6,
                       run.section, "host", run=n)
            )  # fmt: skip
        for call in recorder.collectives:
            self.track(self.HOST_PID, self.COLLECTIVES, host, "collectives")
            self.events.append(
                _slice(self.HOST_PID, self.COLLECTIVES, (call.start - origin) * 1e6,
                       call.seconds * 1e6, call.op, "collective", what=call.what)
            )  # fmt: skip
        self.other.update(
            modelled_us=ts,
            section_runs=runs,
            runs_left_out=recorder.runs_dropped,
            collectives_left_out=recorder.collectives_dropped,
        )

    def document(self) -> dict[str, Any]:
        return {"traceEvents": self.events, "displayTimeUnit": "ns", "otherData": self.other}


def _meta(kind: str, pid: int, tid: int, **args: Any) -> dict[str, Any]:
    return {"ph": "M", "name": kind, "pid": pid, "tid": tid, "args": args}


def _slice(
    pid: int, tid: int, ts: float, dur: float, name: str, cat: str, **args: Any
) -> dict[str, Any]:
    return {"ph": "X", "pid": pid, "tid": tid, "ts": ts, "dur": dur, "name": name, "cat": cat,
            "args": args}  # fmt: skip


def modelled_step_trace(program: Program) -> dict[str, Any]:
    """The trace of one modelled step of ``program`` (every section once)."""
    builder = TraceBuilder(program)
    builder.modelled_step()
    return builder.document()


def run_trace(program: Program, recorder: RunRecorder) -> dict[str, Any]:
    """The trace of a run: what ``recorder`` saw, in modelled and in host time."""
    builder = TraceBuilder(program)
    builder.recorded(recorder)
    return builder.document()


def write_trace(path: Path, trace: dict[str, Any]) -> Path:
    """Write ``trace`` to ``path`` (atomically)."""
    atomic_write_bytes(path, msgspec.json.encode(trace))
    return path
