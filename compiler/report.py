"""The compile report: what a PEF uses of its target and how fast the performance model says it
runs, as ``report.json``, a readable summary, and a picture of each section's placed units.

Every figure comes from ``runtime/machine/perf.py`` applied to the program the compiler wrote (the
same model ``rdu-run --profile`` counts with), so the report and the runtime never disagree:

- per section: units used (PCUs, PMUs, switch links) of those the target has, modelled cycles
  and time, FLOPs, bytes moved off-chip, the fraction of the target's peak achieved and the
  roofline bound (the fraction the off-chip traffic allows at most), and what bounds the time;
- per unit: its cycles, vectors, initiation interval, unroll, pipeline depth and FLOPs (of a
  parallel unit: one copy's, and its ``parallel`` factors and ``copies``);
- ``ideal`` (when the compiler gives it): the step's bound computed without the performance
  model (``compiler/ideal.py``), without and with residency, and the modelled time over each;
- ``fabric-<section>.png``: the grid (PCU slots squares, PMU slots circles, DRAM on the left
  edge), the slots the section's units occupy coloured, and every route drawn through the
  switches.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from compiler.ideal import Ideal
from compiler.targets import Target
from runtime.machine.atomic import atomic_write_bytes
from runtime.machine.perf import SectionModel, format_models, model_section, si
from runtime.pef.schema import Pcu, Pmu, Program, Section

REPORT_VERSION = 1


def section_models(program: Program) -> list[SectionModel]:
    """The model of one run of every section, in run order."""
    return [model_section(s, program.meta) for s in program.sections]


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


def build_report(program: Program, target: Target, ideal: Ideal | None = None) -> dict[str, Any]:
    """The report as a JSON-ready dict (see the module docstring); with ``ideal``, its bound."""
    models = section_models(program)
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
    peak = target.peak_flops_per_cycle
    per_cycle = target.dram_gbps / target.clock_ghz if target.dram_gbps > 0 else math.inf
    roofline = 1.0 if moved == 0 else min(1.0, flops / moved * per_cycle / peak)
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "model": program.meta.model_name,
        "batch_size": program.meta.batch_size,
        "inference": program.meta.inference,
        "target": {
            "name": target.name,
            "grid": [target.cols, target.rows],
            "pcus": target.num_pcus,
            "pmus": target.num_pmus,
            "links": target.num_links,
            "pcu_lanes": target.pcu_lanes,
            "pcu_stages": target.pcu_stages,
            "pmu_bytes": target.pmu_bytes,
            "pmu_banks": target.pmu_banks,
            "clock_ghz": target.clock_ghz,
            "dram_gbps": target.dram_gbps,
            "stream_bytes_per_cycle": target.stream_bytes_per_cycle,
            "peak_flops": _round(target.peak_flops),
        },
        "sections": sections,
        "total": {
            "cycles": cycles,
            "seconds": _round(cycles / (target.clock_ghz * 1e9)),
            "flops": flops,
            "offchip_bytes": moved,
            "fraction_of_peak": _round(flops / (cycles * peak) if cycles else 0.0),
            "roofline_fraction": _round(roofline),
        },
    }
    if ideal is not None:
        report["ideal"] = ideal_entry(ideal, cycles / (target.clock_ghz * 1e9))
    return report


def format_summary(program: Program, target: Target, ideal: Ideal | None = None) -> str:
    """The readable summary: the target's peak, then a line a section and the total, and with
    ``ideal`` the bound without and with residency (``format_ideal``)."""
    models = section_models(program)
    head = (
        f"target {target.name}: {target.num_pcus} PCUs, {target.num_pmus} PMUs, "
        f"{target.num_links} links, peak {si(target.peak_flops, 'FLOP/s')}, "
        f"DRAM {target.dram_gbps:g} GB/s, {target.clock_ghz:g} GHz"
    )
    legend = (
        "(peak: FLOPs over what the fabric could do in the modelled time; roof: the most the "
        "off-chip traffic allows)"
    )
    table = format_models(models)
    if ideal is not None:
        seconds = sum(m.seconds for m in models)
        table += "\n" + format_ideal(ideal, seconds)
        legend += (
            "\n(ideal: torch's FlopCounterMode FLOPs plus the optimizer's at peak, or the batch "
            "and the state through DRAM once, the larger; resident: the state kept on chip)"
        )
    return f"{head}\n{table}\n{legend}"


def write_report(
    program: Program,
    target: Target,
    out_dir: Path,
    *,
    pictures: bool = True,
    ideal: Ideal | None = None,
) -> Path:
    """Write ``out_dir/report.json`` (atomically) and, with ``pictures``, a
    ``fabric-<section>.png`` a section (without: ``compiler.pictures`` draws them)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    report = build_report(program, target, ideal)
    atomic_write_bytes(path, (json.dumps(report, indent=2) + "\n").encode())
    if pictures:
        draw_fabrics(program.sections, target, out_dir)
    return path


MAX_DRAWN_SIDE = 128
"""The pictures are drawn for grids of at most this many slots a side (sn30's is 64 x 40): a
larger one is a picture of tens of thousands of pixels a side that nobody can read, and takes
longer to draw than the compile."""


def pictures_skipped(target: Target) -> str | None:
    """Why no ``fabric-<section>.png`` is drawn for ``target`` (None: they are)."""
    if max(target.cols, target.rows) <= MAX_DRAWN_SIDE:
        return None
    return (
        f"no fabric pictures: the {target.cols}x{target.rows} grid is too big to draw, "
        f"at {MAX_DRAWN_SIDE} slots a side at most"
    )


def draw_fabrics(sections: list[Section], target: Target, out_dir: Path) -> None:
    """``out_dir/fabric-<section>.png`` of each of ``sections`` (``draw_fabric``), on one
    ``FabricCanvas``: the grid, legend and DRAM bar are drawn once for all of them. Nothing for
    a grid too big to draw (``pictures_skipped``)."""
    if sections and pictures_skipped(target) is None:
        canvas = FabricCanvas(target)
        for section in sections:
            canvas.draw(section, out_dir / f"fabric-{section.name}.png")


# -- the picture ----------------------------------------------------------------------------------

_PCU_COLOUR = "#4c72b0"
_PMU_COLOUR = "#dd8452"
_FREE_COLOUR = "#e8e8e8"
_ROUTE_COLOURS = {"load": "#2f8f4e", "store": "#8c4fb0", "unit": "#2a2a2a"}
"""Streams from DRAM, to DRAM, and between units."""


def draw_fabric(section: Section, target: Target, path: Path) -> None:
    """``path``: the grid of ``target`` with the units of ``section`` placed and its routes
    (``FabricCanvas.draw``)."""
    FabricCanvas(target).draw(section, path)


class FabricCanvas:
    """The picture of a target's grid, drawn once, on which each section's units and routes are
    drawn in turn.

    A unit at slot ``(x, y)`` is drawn in the cell whose lower-left corner is switch ``(x, y)``
    (PCU slots squares, PMU slots circles; coloured where the section uses them, grey where
    free; every slot of a unit spanning several: ``more_at``); routes run along the switch grid
    as polylines through their hops (offset a little by stream, so that parallel streams on a
    link stay apart), starting and ending with a short tick into their units (the unit's slot
    nearest the route's end). Units are not labelled: ``report.json`` gives each unit's slot.

    Cheap by construction (it runs for every section of every compile): matplotlib's
    object-oriented API on an Agg canvas (no pyplot), the slots as one ``PatchCollection`` and
    the routes as one ``LineCollection`` instead of an artist each, a fixed layout (no
    ``tight_layout``) and 100 dpi. What every section shares (the switches, the DRAM bar, the
    legend) is drawn once and kept as pixels; a section's picture restores those and draws its
    three artists of its own on them (slot colours, routes, title), as blitting does.
    """

    def __init__(self, target: Target) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import LineCollection, PatchCollection
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Circle, Rectangle

        self.target = target
        cols, rows = target.cols, target.rows
        scale = 0.55 if max(cols, rows) <= 16 else 0.3
        fig = Figure(figsize=(max(6.0, (cols + 2) * scale), max(4.0, (rows + 1.5) * scale)))
        self.figure = fig
        self.canvas = FigureCanvasAgg(fig)
        ax = fig.add_axes((0.01, 0.09, 0.98, 0.83))
        self.cells = [(x, y) for x in range(cols) for y in range(rows)]
        self.used_colours = [  # a cell's colour when a unit occupies it
            _PCU_COLOUR if target.is_pcu_slot(x, y) else _PMU_COLOUR for x, y in self.cells
        ]
        shapes: list[Rectangle | Circle] = []
        for x, y in self.cells:
            if target.is_pcu_slot(x, y):
                shapes.append(Rectangle((x + 0.15, y + 0.15), 0.7, 0.7))
            else:
                shapes.append(Circle((x + 0.5, y + 0.5), 0.36))
        self.slots = ax.add_collection(PatchCollection(shapes, linewidths=0, animated=True))
        self.routes = ax.add_collection(
            LineCollection([], linewidths=0.9, alpha=0.7, animated=True)
        )
        switches = [(x, y) for x in range(cols + 1) for y in range(rows + 1)]
        ax.scatter(*zip(*switches, strict=True), s=2, color="#9a9a9a", zorder=0)
        ax.add_patch(Rectangle((-0.9, -0.2), 0.4, rows + 0.4, color="#55a868", lw=0))
        ax.text(-0.7, rows / 2, "DRAM", rotation=90, ha="center", va="center", fontsize=7,
                color="white")  # fmt: skip
        handles: list[Line2D | Rectangle | Circle] = [
            Line2D([], [], color=c, label=f"{k} stream" if k != "unit" else "unit to unit")
            for k, c in _ROUTE_COLOURS.items()
        ]
        handles += [
            Rectangle((0, 0), 1, 1, color=_PCU_COLOUR, label="PCU"),
            Circle((0, 0), 1, color=_PMU_COLOUR, label="PMU"),
        ]
        fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=6, frameon=False)
        self.title = fig.suptitle("", fontsize=8, y=0.97, animated=True)
        ax.set_xlim(-1.0, cols + 0.2)
        ax.set_ylim(-0.2, rows + 0.2)
        ax.set_aspect("equal")
        ax.axis("off")
        fig.set_dpi(100)
        self.canvas.draw()  # everything but the animated artists
        self.background = self.canvas.copy_from_bbox(fig.bbox)

    def draw(self, section: Section, path: Path) -> None:
        """``path``: this grid with the units of ``section`` placed and its routes."""
        target = self.target
        used: set[tuple[int, int]] = set()
        for unit in [*section.pcus, *section.pmus]:
            for x, y in _slots(unit):  # a buffer may span several PMUs, a PCU have copies
                used.add((x, y))
        colours = zip(self.cells, self.used_colours, strict=True)
        self.slots.set_facecolors([c if cell in used else _FREE_COLOUR for cell, c in colours])
        segments: list[list[tuple[float, float]]] = []
        route_colours: list[str] = []
        for r, route in enumerate(section.routes):
            shift = ((r % 7) - 3) * 0.025
            points = [(h[0] + shift, h[1] + shift) for h in route.hops]
            points.insert(0, _end_point(section, route.src, route.hops[0], shift))
            points.append(_end_point(section, route.dst, route.hops[-1], shift))
            segments.append(points)
            src, dst = route.src[0], route.dst[0]
            kind = "load" if src == "dram" else "store" if dst == "dram" else "unit"
            route_colours.append(_ROUTE_COLOURS[kind])
        self.routes.set_segments(segments)
        self.routes.set_colors(route_colours)
        links = {
            ((a[0], a[1]), (b[0], b[1]))
            for route in section.routes
            for a, b in zip(route.hops, route.hops[1:], strict=False)
        }
        pcus = sum(1 + len(_more_at(p)) for p in section.pcus)
        pmus = sum(max(1, p.pmus) for p in section.pmus)
        self.title.set_text(
            f"section '{section.name}' on {target.name}: {pcus}/{target.num_pcus} "
            f"PCUs, {pmus}/{target.num_pmus} PMUs, {len(links)}/{target.num_links} "
            f"links, {len(section.routes)} streams"
        )
        import numpy as np
        from PIL import Image  # matplotlib's own PNG writer

        self.canvas.restore_region(self.background)
        for artist in (self.slots, self.routes, self.title):
            self.figure.draw_artist(artist)
        pixels = np.asarray(self.canvas.buffer_rgba())
        if pixels[..., 3].min() == 255:  # opaque (the default white figure): RGB, 25% less to pack
            pixels = pixels[..., :3]
        Image.fromarray(pixels).save(path, format="png", dpi=(100, 100), compress_level=1)


def _more_at(unit: Pcu | Pmu) -> list[list[int]]:
    """The slots of a unit after ``at``: a buffer's further PMUs, a parallel PCU's copies."""
    return list(getattr(unit, "more_at", []))


def _slots(unit: Pcu | Pmu) -> list[list[int]]:
    return [unit.at, *_more_at(unit)]


def _end_point(
    section: Section, end: tuple[str, int], hop: list[int], shift: float
) -> tuple[float, float]:
    """Where a route's tick ends: the centre of the endpoint unit's slot nearest ``hop`` (the
    route's first or last switch), or the DRAM bar at ``hop``'s height (plus the route's
    ``shift``)."""
    kind, index = end
    if kind == "dram":
        return (-0.6, hop[1] + shift)
    unit = section.pcus[index] if kind == "pcu" else section.pmus[index]
    x, y = min(_slots(unit), key=lambda s: abs(s[0] - hop[0]) + abs(s[1] - hop[1]))
    return (x + 0.5, y + 0.5)
