"""The compile report: what a PEF uses of its target and how fast the performance model says it
runs, as ``report.json``, a readable summary, ``report.html`` (an explorer of the placed units:
``compiler/explorer.py``) and ``trace.json`` (one modelled step as a timeline:
``runtime/machine/trace.py``).

Every figure comes from ``runtime/machine/perf.py`` applied to the program the compiler wrote (the
same model ``rdu-run --profile`` counts with), so the report and the runtime never disagree:

- per section: units used (PCUs, PMUs, switch links) of those the target has, modelled cycles
  and time, FLOPs, bytes moved off-chip, the fraction of the target's peak achieved and the
  roofline bound (the fraction the off-chip traffic allows at most), and what bounds the time;
- per unit: its cycles, vectors, initiation interval, unroll, pipeline depth and FLOPs (of a
  parallel unit: one copy's, and its ``parallel`` factors, ``copies`` and whether they are
  ``interleaved``);
- ``ideal`` (when the compiler gives it): the step's bound computed without the performance
  model (``compiler/ideal.py``), without and with residency, and the modelled time over each;
- ``report.html``: the summary, a roofline plot and every section's grid, where each unit
  shows its kernel, torch ops, model lines, cycles and streams (replacing the PNG pictures of
  each section that matplotlib drew: the page costs 35 ms of a GPT compile, they cost 0.6 s).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from compiler.explorer import build_explorer
from compiler.ideal import Ideal
from compiler.provenance import KernelKey, Origin
from compiler.targets import Target
from runtime.machine.atomic import atomic_write_bytes
from runtime.machine.perf import (
    SectionModel,
    cycles_to_seconds,
    first_load_cycles,
    format_models,
    fraction_of_peak,
    program_models,
    si,
)
from runtime.machine.targets import bf16_lanes, peak_dtype, peak_flops_per_cycle
from runtime.machine.trace import TraceBuilder
from runtime.pef.schema import Program

REPORT_VERSION = 1


def section_models(program: Program) -> list[SectionModel]:
    """The model of one run of every section, in run order."""
    return program_models(program)


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def ideal_entry(ideal: Ideal, modelled_seconds: float) -> dict[str, Any]:
    """The report's ``ideal``: the bound computed without our cost model (``compiler.ideal``),
    without and with residency, and the modelled time over each (``of_ideal``)."""
    return {
        "flops": ideal.flops,
        "flop_counter_flops": ideal.counted_flops,
        "batch_bytes": ideal.batch_bytes,
        "state_bytes": ideal.state_bytes,
        "updated_bytes": ideal.updated_bytes,
        "resident": ideal.resident,
        "seconds": _round(ideal.seconds),
        "resident_seconds": _round(ideal.resident_seconds),
        "of_ideal": _round(modelled_seconds / ideal.seconds),
        "of_resident_ideal": _round(modelled_seconds / ideal.resident_seconds),
    }


def format_ideal(ideal: Ideal, modelled_seconds: float) -> str:
    """The summary's ideal lines: the bound without and with residency and the modelled time
    over each."""
    compute = si(ideal.compute_seconds, "s")
    lines = []
    for label, seconds, moved in (
        ("ideal", ideal.seconds, ideal.offchip_bytes),
        ("resident", ideal.resident_seconds, ideal.batch_bytes if ideal.resident else None),
    ):
        what = f"{si(moved, 'B')} off-chip" if moved is not None else "state does not fit"
        lines.append(
            f"{label:<12}{si(seconds, 's'):>11}  of ideal {modelled_seconds / seconds:6.1f}x  "
            f"({si(ideal.flops, 'FLOPs')} at peak {compute}, {what})"
        )
    return "\n".join(lines)


def build_report(
    program: Program,
    target: Target,
    models: Sequence[SectionModel] | None = None,
    ideal: Ideal | None = None,
) -> dict[str, Any]:
    """The report as a JSON-ready dict (see the module docstring); ``models``: the sections'
    (``section_models``) when already computed; with ``ideal``, its bound."""
    models = section_models(program) if models is None else models
    sections = []
    for section, m in zip(program.sections, models, strict=True):
        units = []
        for pcu, u in zip(section.pcus, m.units, strict=True):
            units.append(
                {
                    "name": u.name,
                    "loc": pcu.loc,
                    "cycles": u.cycles,
                    "vectors": u.vectors,
                    "initiation_interval": u.ii,
                    "unroll": u.unroll,
                    "depth": u.depth,
                    "passes": u.passes,
                    "fill": u.fill,
                    "flops": u.flops,
                    "bound": u.bound,
                    "copies": u.copies,
                    "parallel": list(pcu.parallel),
                    "interleaved": pcu.interleaved,
                }
            )
        sections.append(
            {
                "name": m.section,
                "kind": section.kind,
                "pcus": {"used": m.pcus_used, "available": m.pcus_available},
                "pmus": {"used": m.pmus_used, "available": m.pmus_available},
                "links": {"used": m.links_used, "available": m.links_available},
                "cycles": m.cycles,
                "seconds": _round(m.seconds),
                "compute_cycles": m.compute_cycles,
                "fill_cycles": m.fill_cycles,
                "pmu_cycles": m.pmu_cycles,
                "dram_cycles": m.dram_cycles,
                "link_cycles": m.link_cycles,
                "load_cycles": m.load_cycles,
                "bound": m.bound,
                "flops": m.flops,
                "offchip_bytes": {
                    "loaded": m.traffic.bytes_in,
                    "stored": m.traffic.bytes_out,
                    "spilled": m.traffic.spilled,
                    "total": m.dram_bytes,
                },
                "fraction_of_peak": _round(m.fraction_of_peak),
                "roofline_fraction": _round(m.roofline_fraction),
                "units": units,
            }
        )
    cycles = sum(m.cycles for m in models)
    flops = sum(m.flops for m in models)
    moved = sum(m.dram_bytes for m in models)
    precision = program.meta.precision()
    peak = peak_flops_per_cycle(target, peak_dtype(precision))
    per_cycle = target.dram_gbps / target.clock_ghz if target.dram_gbps > 0 else math.inf
    roofline = 1.0 if moved == 0 else min(1.0, flops / moved * per_cycle / peak)
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "model": program.meta.model_name,
        "batch_size": program.meta.batch_size,
        "inference": program.meta.inference,
        "precision": precision,
        "target": {
            "name": target.name,
            "grid": [target.cols, target.rows],
            "pcus": target.num_pcus,
            "pmus": target.num_pmus,
            "links": target.num_links,
            "pcu_lanes": target.pcu_lanes,
            "pcu_bf16_lanes": bf16_lanes(target),
            "pcu_stages": target.pcu_stages,
            "pmu_bytes": target.pmu_bytes,
            "pmu_banks": target.pmu_banks,
            "clock_ghz": target.clock_ghz,
            "dram_gbps": target.dram_gbps,
            "stream_bytes_per_cycle": target.stream_bytes_per_cycle,
            "peak_flops": _round(target.peak_flops_of(precision)),
            "peak_dtype": peak_dtype(precision),
        },
        "sections": sections,
        "total": {
            "cycles": cycles,
            "seconds": _round(cycles_to_seconds(cycles, target.clock_ghz)),
            "flops": flops,
            "offchip_bytes": moved,
            "fraction_of_peak": _round(fraction_of_peak(flops, cycles, peak)),
            "roofline_fraction": _round(roofline),
        },
    }
    if program.resident is not None:
        report["resident"] = resident_entry(program, models)
    if ideal is not None:
        report["ideal"] = ideal_entry(ideal, cycles_to_seconds(cycles, target.clock_ghz))
    return report


def resident_entry(program: Program, models: Sequence[SectionModel]) -> dict[str, Any]:
    """The report's ``resident``: the sections (co-resident: loaded once a run; else loaded in
    turn around pinned homes), the cycles of the first load apart from the step's (the
    co-resident sections' configurations and the state's one DRAM load) and the symbols kept on
    chip, each with its home."""
    assert program.resident is not None
    first = first_load_cycles(program, models)
    return {
        "sections": [m.section for m in models],
        "co_resident": program.resident.co_resident,
        "first_load_cycles": first,
        "first_load_seconds": _round(cycles_to_seconds(first, program.meta.target.clock_ghz)),
        "symbols": [
            {
                "name": program.meta.symbols[e.symbol].name,
                "home": {"section": e.section, "pmu": e.pmu},
                "handoffs": [{"section": h.section, "pmu": h.pmu} for h in e.handoffs],
            }
            for e in program.resident.symbols
        ],
    }


def format_resident(program: Program, models: Sequence[SectionModel]) -> str:
    """The summary's residency line (empty without symbols on chip)."""
    if program.resident is None:
        return ""
    first = first_load_cycles(program, models)
    names = [program.meta.symbols[e.symbol].name for e in program.resident.symbols]
    seconds = si(cycles_to_seconds(first, program.meta.target.clock_ghz), "s")
    if program.resident.co_resident:
        head = (
            f"co-resident: the {len(models)} sections are configured once ({first} cycles, "
            f"{seconds}, before the first step, not in the step) and run chained (a section's "
            "cycles: what it adds to the step)"
        )
    else:
        head = (
            f"pinned: the {len(models)} sections are loaded in turn around the homes of the "
            f"symbols on chip (their first load {first} cycles, {seconds}, before the first step)"
        )
    return f"{head}; {len(names)} symbols on chip: " + ", ".join(names)


def format_summary(
    program: Program,
    target: Target,
    models: Sequence[SectionModel] | None = None,
    ideal: Ideal | None = None,
) -> str:
    """The readable summary: the target's peak, then a line a section and the total, and with
    ``ideal`` the bound without and with residency (``format_ideal``)."""
    models = section_models(program) if models is None else models
    precision = program.meta.precision()
    head = (
        f"target {target.name}: {target.num_pcus} PCUs, {target.num_pmus} PMUs, "
        f"{target.num_links} links, peak {si(target.peak_flops_of(precision), 'FLOP/s')} "
        f"({peak_dtype(precision)}), DRAM {target.dram_gbps:g} GB/s, {target.clock_ghz:g} GHz, "
        f"precision {precision}"
    )
    legend = (
        "(peak: FLOPs over what the fabric could do in the modelled time, a chained section's "
        "from the step's start to its end; roof: the most the off-chip traffic allows)"
    )
    table = format_models(models)
    if program.resident is not None:
        table += "\n" + format_resident(program, models)
    if ideal is not None:
        seconds = sum(m.seconds for m in models)
        table += "\n" + format_ideal(ideal, seconds)
        legend += (
            "\n(ideal: torch's FlopCounterMode FLOPs plus the optimizer's at peak, or the batch "
            "and the state through DRAM once, the larger; resident: the state kept on chip)"
        )
    return f"{head}\n{table}\n{legend}"


@dataclass(frozen=True)
class ReportFiles:
    """What ``Report.write`` wrote, and the summary it printed in the log."""

    json: Path
    html: Path
    trace: Path
    summary: str


@dataclass(frozen=True)
class Report:
    """The report's files as they will be written (``make_report``), and its summary."""

    json: bytes
    html: bytes
    trace: bytes
    summary: str

    def write(self, out_dir: Path) -> ReportFiles:
        """Write ``out_dir/report.json``, ``report.html`` and ``trace.json``, each atomically."""
        out_dir.mkdir(parents=True, exist_ok=True)
        files = ReportFiles(
            out_dir / "report.json", out_dir / "report.html", out_dir / "trace.json", self.summary
        )
        for path, data in (
            (files.json, self.json),
            (files.html, self.html),
            (files.trace, self.trace),
        ):
            atomic_write_bytes(path, data)
        return files


def make_report(
    program: Program,
    target: Target,
    *,
    origins: Mapping[KernelKey, Origin] | None = None,
    ops: Mapping[str, str] | None = None,
    ideal: Ideal | None = None,
) -> Report:
    """The report of ``program`` from one computation of the sections' model, nothing written
    yet (the compile makes it while the IR is verified, and writes it once that passed).
    ``origins`` and ``ops``: what each unit implements (``compiler.provenance``) and the ATen
    op of each traced value, for the explorer; ``ideal``: the step's bound
    (``compiler.ideal``) for the report and the summary."""
    models = section_models(program)
    report = build_report(program, target, models, ideal)
    trace = TraceBuilder(program, models)
    trace.modelled_step()
    return Report(
        json=(json.dumps(report, indent=2) + "\n").encode(),
        html=build_explorer(program, report, origins, ops).encode(),
        trace=msgspec.json.encode(trace.document()),
        summary=format_summary(program, target, models, ideal),
    )
