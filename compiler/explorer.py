"""``report.html``: an explorer of a PEF in one self-contained file (inline SVG, CSS and script;
no network, no server).

What it shows, all from the report (``compiler/report.py``, the performance model of
``runtime/machine/perf.py``) and the PEF:

- the summary table (a row a section: units used, modelled cycles and time, FLOPs, off-chip
  bytes, fraction of peak, roofline bound, what bounds it) and the target's figures;
- a roofline plot: every section at its arithmetic intensity (FLOPs over off-chip bytes) and
  achieved FLOP/s, under the target's peak and its DRAM bandwidth line (log-log);
- per section, the grid: PCU slots squares, PMU slots circles, free slots grey (one SVG
  pattern, so a grid of any size costs the same), DRAM the bar on the left; each placed unit one
  SVG element (``<g class="unit">``, its copies or PMUs all in it), a PCU shaded by its share of
  the section's modelled time; every link a stream uses, coloured by its load (streams over the
  link's capacity). Hovering a unit shows (and clicking pins) what it is: its kernel (stages,
  combiner, iteration space), the torch ops and the model lines it implements
  (``compiler/provenance.py``), its modelled cycles, share of the section's time, what bounds
  it, and its streams, which are drawn on the grid;
- a search box: a model line (``model.py:27``, or ``27``) highlights the units that implement
  it; other text matches unit names, traced values and torch ops.

Building it is string formatting: about 35 ms for the GPT example (batch 8 by 64, 11 sections).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from compiler.provenance import KernelKey, Origin, unit_kernel
from runtime.machine.opcodes import DTYPE_BYTES
from runtime.pef.schema import Pcu, Pmu, Program, Section


def build_explorer(
    program: Program,
    report: Mapping[str, Any],
    origins: Mapping[KernelKey, Origin] | None = None,
    ops: Mapping[str, str] | None = None,
) -> str:
    """The HTML page (see the module docstring). ``origins``: the provenance of each kernel
    (None: each unit's own location only); ``ops``: the ATen op of each traced value."""
    origins = origins or {}
    ops = ops or {}
    units: list[dict[str, Any]] = []
    grids = []
    for index, (section, entry) in enumerate(zip(program.sections, report["sections"],
                                                 strict=True)):  # fmt: skip
        first = len(units)
        units += _section_units(index, section, entry, origins, ops, program)
        grids.append(_grid_svg(index, section, program, units[first:], first))
    title = f"{report['model']} on {report['target']['name']}"
    data = json.dumps({"units": units}, separators=(",", ":")).replace("</", "<\\/")
    sections_html = "\n".join(
        f'<section class="fabric" id="s{i}"><h2>{html.escape(s.name)} '
        f'<small>({html.escape(s.kind)}): {_section_line(e)}</small></h2>{grid}</section>'
        for i, (s, e, grid) in enumerate(zip(program.sections, report["sections"], grids,
                                             strict=True))
    )  # fmt: skip
    kind = "inference" if report["inference"] else "training"
    return _PAGE.format(
        title=html.escape(title),
        heading=html.escape(f"{report['model']} ({kind}, batch {report['batch_size']})"),
        target=_target_line(report["target"]),
        summary=_summary_table(report),
        roofline=_roofline_svg(report),
        sections=sections_html,
        data=data,
        style=_STYLE,
        script=_SCRIPT,
    )


# -- the units --------------------------------------------------------------------------------


def _section_units(
    index: int,
    section: Section,
    entry: Mapping[str, Any],
    origins: Mapping[KernelKey, Origin],
    ops: Mapping[str, str],
    program: Program,
) -> list[dict[str, Any]]:
    """The details of every unit of ``section`` (PCUs, then PMUs), as the page shows them."""
    symbols = program.meta.symbols
    cycles = max(1, entry["cycles"])
    streams: dict[tuple[str, int], list[str]] = {}
    routes: dict[tuple[str, int], list[int]] = {}
    for r, route in enumerate(section.routes):
        src, dst = _end_name(section, route.src, symbols), _end_name(section, route.dst, symbols)
        text = f"{src} \u2192 {dst} ({len(route.hops) - 1} hops)"
        for end in {route.src, route.dst}:
            streams.setdefault(end, []).append(text)
            routes.setdefault(end, []).append(r)
    units: list[dict[str, Any]] = []
    for i, (pcu, model) in enumerate(zip(section.pcus, entry["units"], strict=True)):
        origin = origins.get(unit_kernel(section.kind, pcu.name))
        values = list(origin.values) if origin else ([pcu.value] if pcu.value else [])
        lines = list(origin.lines) if origin else []
        if pcu.loc and pcu.loc not in lines:
            lines.insert(0, pcu.loc)
        units.append({
            "s": index, "kind": "pcu", "i": i, "name": pcu.name,
            "at": [pcu.at, *pcu.more_at],
            "kernel": _kernel_text(pcu),
            "space": pcu.space,
            "values": values,
            "ops": [ops.get(v, "") for v in values],
            "lines": lines,
            "cycles": model["cycles"],
            "share": round(model["cycles"] / cycles, 4),
            "bound": model["bound"],
            "vectors": model["vectors"],
            "ii": model["initiation_interval"],
            "copies": model["copies"],
            "streams": streams.get(("pcu", i), []),
            "routes": routes.get(("pcu", i), []),
        })  # fmt: skip
    for i, pmu in enumerate(section.pmus):
        units.append({
            "s": index, "kind": "pmu", "i": i, "name": pmu.name,
            "at": [pmu.at, *pmu.more_at],
            "tensor": f"{pmu.dtype}{list(pmu.shape)}",
            "source": (f"DRAM {symbols[pmu.symbol].name}" if pmu.source == "dram"
                       else f"pcu {pmu.producer} {section.pcus[pmu.producer].name}"),
            "bytes": math.prod(pmu.shape) * DTYPE_BYTES[pmu.dtype],
            "pmus": pmu.pmus,
            "streams": streams.get(("pmu", i), []),
            "routes": routes.get(("pmu", i), []),
            "lines": [], "values": [], "ops": [],
        })  # fmt: skip
    return units


def _end_name(section: Section, end: Sequence[Any], symbols: Sequence[Any]) -> str:
    kind, index = end[0], int(end[1])
    if kind == "dram":
        return f"DRAM {symbols[index].name}"
    unit: Pcu | Pmu = section.pcus[index] if kind == "pcu" else section.pmus[index]
    return f"{kind} {index} {unit.name}"


def _kernel_text(pcu: Pcu) -> str:
    """``mul, add, reduce add``: the stage opcodes (constants and counters left out)."""
    ops = [s.op for s in pcu.stages if s.op not in ("const", "counter")]
    if pcu.combiner != "none":
        ops.append(f"reduce {pcu.combiner}")
    return ", ".join(ops) or "copy"


# -- the grid ---------------------------------------------------------------------------------


def _load_colour(load: float) -> str:
    """Green (a stream on a link of capacity 4) through yellow to red (the link full)."""
    t = max(0.0, min(1.0, load))
    hue = 120 * (1 - t)
    return f"hsl({hue:.0f},75%,40%)"


def _share_colour(share: float) -> str:
    light = 82 - 50 * max(0.0, min(1.0, share)) ** 0.5
    return f"hsl(215,55%,{light:.0f}%)"


def _grid_svg(
    index: int,
    section: Section,
    program: Program,
    units: Sequence[Mapping[str, Any]],
    first: int,
) -> str:
    """The grid of ``section``: free slots (a pattern), its units (``units``, numbered from
    ``first`` in the page's list), its links by load, its routes (shown with their unit)."""
    target = program.meta.target
    cols, rows = target.cols, target.rows

    def sy(y: float) -> float:  # the fabric's y grows upwards, SVG's downwards
        return rows - y

    parts: list[str] = []
    pattern = []
    for px in (0, 1):
        for pr in (0, 1):
            y = rows - 1 - pr
            if (px + y) % 2 == 0:
                pattern.append(f'<rect x="{px + 0.2}" y="{pr + 0.2}" width="0.6" height="0.6"/>')
            else:
                pattern.append(f'<circle cx="{px + 0.5}" cy="{pr + 0.5}" r="0.3"/>')
    pid = f"free{index}"
    parts.append(
        f'<defs><pattern id="{pid}" width="2" height="2" patternUnits="userSpaceOnUse">'
        f'<g class="free">{"".join(pattern)}</g></pattern></defs>'
        f'<rect x="0" y="0" width="{cols}" height="{rows}" fill="url(#{pid})"/>'
        f'<rect class="dram" x="-0.9" y="0" width="0.45" height="{rows}"/>'
        f'<text class="dram-label" x="-0.6" y="{rows / 2}" '
        f'transform="rotate(-90 -0.6 {rows / 2})">DRAM</text>'
    )
    loads: dict[tuple[tuple[int, int], tuple[int, int]], int] = {}
    for route in section.routes:
        if route.scalar:  # on the scalar network, not a vector link
            continue
        for a, b in zip(route.hops, route.hops[1:], strict=False):
            key = ((a[0], a[1]), (b[0], b[1]))
            loads[key] = loads.get(key, 0) + 1
    capacity = max(1, target.link_capacity)
    drawn: set[tuple[tuple[int, int], tuple[int, int]]] = set()
    links = []
    for (a, b), n in loads.items():
        pair = (min(a, b), max(a, b))
        if pair in drawn:
            continue
        drawn.add(pair)
        back = loads.get((b, a), 0)
        load = max(n, back) / capacity
        links.append(
            f'<line class="link" x1="{a[0]}" y1="{sy(a[1])}" x2="{b[0]}" y2="{sy(b[1])}" '
            f'stroke="{_load_colour(load)}"><title>link ({a[0]},{a[1]})-({b[0]},{b[1]}): '
            f"{n} and {back} streams of {capacity}</title></line>"
        )
    parts.append(f'<g class="links">{"".join(links)}</g>')
    for k, unit in enumerate(units):
        shapes = []
        for x, y in unit["at"]:
            if unit["kind"] == "pcu":
                fill = _share_colour(unit["share"])
                shapes.append(f'<rect x="{x + 0.12}" y="{sy(y + 1) + 0.12}" width="0.76" '
                              f'height="0.76" fill="{fill}"/>')  # fmt: skip
            else:
                shapes.append(f'<circle cx="{x + 0.5}" cy="{sy(y + 1) + 0.5}" r="0.36"/>')
        parts.append(f'<g class="unit {unit["kind"]}" data-u="{first + k}">{"".join(shapes)}</g>')
    routes = []
    for r, route in enumerate(section.routes):
        points: list[tuple[float, float]] = [(h[0], sy(h[1])) for h in route.hops]
        if route.src[0] == "dram":
            points.insert(0, (-0.45, points[0][1]))
        if route.dst[0] == "dram":
            points.append((-0.45, points[-1][1]))
        text = " ".join(f"{x:g},{y:g}" for x, y in points)
        routes.append(f'<polyline class="route" id="r{index}-{r}" points="{text}"/>')
    parts.append(f'<g class="routes">{"".join(routes)}</g>')
    width = min(1100, max(360, 34 * (cols + 2)))
    return (
        f'<svg class="grid" data-s="{index}" viewBox="-1 -0.3 {cols + 1.3} {rows + 0.6}" '
        f'width="{width}" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'
    )


# -- the tables and the roofline ----------------------------------------------------------------


def _si(x: float, unit: str) -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    if 0 < abs(x) < 1:
        for scale, prefix in ((1e-3, "m"), (1e-6, "\u00b5"), (1e-9, "n")):
            if abs(x) >= scale:
                return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def _section_line(entry: Mapping[str, Any]) -> str:
    return html.escape(
        f"{entry['pcus']['used']} PCUs, {entry['pmus']['used']} PMUs, "
        f"{entry['cycles']} cycles ({_si(entry['seconds'], 's')}), {entry['bound']}-bound, "
        f"{entry['fraction_of_peak']:.1%} of peak"
    )


def _target_line(target: Mapping[str, Any]) -> str:
    cols, rows = target["grid"]
    return html.escape(
        f"target {target['name']}: {cols}x{rows} grid, {target['pcus']} PCUs "
        f"({target['pcu_lanes']} lanes x {target['pcu_stages']} stages), {target['pmus']} PMUs "
        f"({_si(target['pmu_bytes'], 'B')}), {target['links']} links, "
        f"{target['clock_ghz']:g} GHz, peak {_si(target['peak_flops'], 'FLOP/s')}, "
        f"DRAM {target['dram_gbps']:g} GB/s"
    )


def _summary_table(report: Mapping[str, Any]) -> str:
    head = ("section", "PCUs", "PMUs", "links", "cycles", "time", "FLOPs", "off-chip",
            "peak", "roof", "bound")  # fmt: skip
    rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for i, s in enumerate(report["sections"]):
        cells = (
            f'<a href="#s{i}">{html.escape(s["name"])}</a>',
            f"{s['pcus']['used']}/{s['pcus']['available']}",
            f"{s['pmus']['used']}/{s['pmus']['available']}",
            f"{s['links']['used']}/{s['links']['available']}",
            str(s["cycles"]),
            _si(s["seconds"], "s"),
            _si(s["flops"], ""),
            _si(s["offchip_bytes"]["total"], "B"),
            f"{s['fraction_of_peak']:.1%}",
            f"{s['roofline_fraction']:.1%}",
            html.escape(s["bound"]),
        )
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    t = report["total"]
    cells = ("total", "", "", "", str(t["cycles"]), _si(t["seconds"], "s"), _si(t["flops"], ""),
             _si(t["offchip_bytes"], "B"), f"{t['fraction_of_peak']:.1%}",
             f"{t['roofline_fraction']:.1%}", "")  # fmt: skip
    rows.append('<tr class="total">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f'<table class="summary">{"".join(rows)}</table>'


def _roofline_svg(report: Mapping[str, Any]) -> str:
    """Achieved FLOP/s against FLOPs per off-chip byte, log-log, under the roofs."""
    target = report["target"]
    peak = target["peak_flops"]
    bandwidth = target["dram_gbps"] * 1e9  # bytes a second
    points = []
    for s in report["sections"]:
        moved, flops, seconds = s["offchip_bytes"]["total"], s["flops"], s["seconds"]
        if flops <= 0 or seconds <= 0:
            continue  # nothing to place on a log scale (a copy section)
        intensity = flops / moved if moved else math.inf
        points.append((s["name"], intensity, flops / seconds))
    ridge = peak / bandwidth if bandwidth > 0 else 1.0
    finite = [p[1] for p in points if math.isfinite(p[1])] + [ridge]
    x_lo, x_hi = min(finite) / 4, max(finite) * 4
    y_lo = min([p[2] for p in points] + [peak]) / 4
    y_hi = peak * 4
    w, h, left, bottom = 640, 340, 70, 40

    def px(x: float) -> float:
        x = min(max(x, x_lo), x_hi)
        return left + (math.log10(x) - math.log10(x_lo)) / math.log10(x_hi / x_lo) * (w - left - 10)

    def py(y: float) -> float:
        y = min(max(y, y_lo), y_hi)
        return (
            h
            - bottom
            - (math.log10(y) - math.log10(y_lo)) / math.log10(y_hi / y_lo) * (h - bottom - 10)
        )

    out = [f'<svg class="roofline" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
           'xmlns="http://www.w3.org/2000/svg">']  # fmt: skip
    out.append(f'<rect x="{left}" y="10" width="{w - left - 10}" height="{h - bottom - 10}" '
               'class="plot"/>')  # fmt: skip
    for decade in range(math.floor(math.log10(x_lo)), math.ceil(math.log10(x_hi)) + 1):
        x = 10.0**decade
        if x_lo <= x <= x_hi:
            out.append(f'<line class="tick" x1="{px(x):.1f}" y1="10" x2="{px(x):.1f}" '
                       f'y2="{h - bottom}"/><text class="axis" x="{px(x):.1f}" '
                       f'y="{h - bottom + 14}">{_si(x, "")}</text>')  # fmt: skip
    for decade in range(math.floor(math.log10(y_lo)), math.ceil(math.log10(y_hi)) + 1):
        y = 10.0**decade
        if y_lo <= y <= y_hi:
            out.append(f'<line class="tick" x1="{left}" y1="{py(y):.1f}" x2="{w - 10}" '
                       f'y2="{py(y):.1f}"/><text class="axis" x="{left - 4}" y="{py(y) + 4:.1f}" '
                       f'text-anchor="end">{_si(y, "")}</text>')  # fmt: skip
    if bandwidth > 0:
        roof = [
            (x_lo, min(peak, bandwidth * x_lo)),
            (min(ridge, x_hi), min(peak, bandwidth * min(ridge, x_hi))),
        ]
        roof.append((x_hi, peak))
    else:
        roof = [(x_lo, peak), (x_hi, peak)]
    line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in roof)
    out.append(f'<polyline class="roof" points="{line}"><title>peak {_si(peak, "FLOP/s")}, '
               f'DRAM {target["dram_gbps"]:g} GB/s</title></polyline>')  # fmt: skip
    placed: list[tuple[float, float]] = []  # labels' anchors: a label moves down off another
    for name, intensity, achieved in points:
        label = "inf" if not math.isfinite(intensity) else f"{intensity:.3g}"
        tx, ty = px(intensity) + 6, py(achieved) - 5
        moves = 0
        while moves < 3 and any(abs(tx - x) < 70 and abs(ty - y) < 11 for x, y in placed):
            ty, moves = ty + 11, moves + 1
        text = ""  # a crowded point keeps its name in its tooltip only
        if moves < 3:
            placed.append((tx, ty))
            text = f'<text x="{tx:.1f}" y="{ty:.1f}">{html.escape(name)}</text>'
        out.append(
            f'<g class="point"><circle cx="{px(intensity):.1f}" cy="{py(achieved):.1f}" r="4"/>'
            f"{text}<title>{html.escape(name)}: {label} FLOP/B, {_si(achieved, 'FLOP/s')}"
            "</title></g>"
        )
    out.append(f'<text class="label" x="{(w + left) / 2}" y="{h - 6}">FLOPs per off-chip byte'
               f'</text><text class="label" x="14" y="{(h - bottom) / 2}" '
               f'transform="rotate(-90 14 {(h - bottom) / 2})">FLOP/s</text></svg>')  # fmt: skip
    return "".join(out)


_STYLE = """
body{font:14px system-ui,sans-serif;margin:0 0 0 1em;color:#222}
main{margin-right:370px}
#info{position:fixed;right:0;top:0;width:350px;height:100vh;overflow:auto;background:#fafafa;
border-left:1px solid #ccc;padding:8px 10px;box-sizing:border-box;font-size:13px}
#info h3{margin:4px 0}#info dt{font-weight:600;margin-top:6px}#info dd{margin:0 0 0 8px}
table.summary{border-collapse:collapse}table.summary td,table.summary th{padding:2px 8px;
text-align:right;border-bottom:1px solid #ddd}table.summary td:first-child{text-align:left}
tr.total td{font-weight:600}
svg.grid{display:block;margin:4px 0 18px;background:#fff;max-width:100%;height:auto}
.free rect,.free circle{fill:#e6e6e6}
.dram{fill:#55a868}.dram-label{font-size:0.35px;fill:#fff;text-anchor:middle}
.link{stroke-width:0.07;stroke-linecap:round}
.unit{cursor:pointer}.unit.pmu circle{fill:#dd8452}.unit.pcu rect{stroke:#2d4f86;stroke-width:0.03}
.unit:hover rect,.unit:hover circle,.unit.on rect,.unit.on circle{stroke:#000;stroke-width:0.08}
.unit.hit rect,.unit.hit circle{stroke:#e0007a;stroke-width:0.14}
.route{fill:none;stroke:#000;stroke-width:0.05;stroke-dasharray:0.12 0.08;display:none}
.route.show{display:inline}
svg.roofline .plot{fill:#fcfcfc;stroke:#bbb}svg.roofline .tick{stroke:#eee}
svg.roofline .axis{font-size:10px;fill:#555;text-anchor:middle}
svg.roofline .roof{fill:none;stroke:#c44;stroke-width:2}
svg.roofline .point circle{fill:#4c72b0}svg.roofline .point text{font-size:10px}
svg.roofline .label{font-size:12px;text-anchor:middle}
#search{width:320px;padding:3px}#hits{margin-left:8px;color:#555}
"""

_SCRIPT = r"""
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const info = document.getElementById("info");
let pinned = null;
function esc(t){return String(t).replace(/[&<>"]/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",
'"':"&quot;"}[c]));}
function list(xs){return xs.length?xs.map(esc).join("<br>"):"\u2014";}
function describe(u){
  const where=u.at.map(a=>"("+a[0]+","+a[1]+")").join(" ");
  let h="<h3>"+esc(u.kind.toUpperCase()+" "+u.i+" "+u.name)+"</h3><dl>";
  h+="<dt>section</dt><dd>"+esc(document.querySelectorAll("section.fabric")[u.s]
      .querySelector("h2").firstChild.textContent.trim())+"</dd>";
  h+="<dt>slot"+(u.at.length>1?"s":"")+"</dt><dd>"+esc(where)+"</dd>";
  if(u.kind==="pcu"){
    h+="<dt>kernel</dt><dd>"+esc(u.kernel)+" over ["+u.space.join(", ")+"]"+
       (u.copies>1?" on "+u.copies+" PCUs":"")+"</dd>";
    const ops=u.values.map((v,k)=>v+(u.ops[k]?" = "+u.ops[k]:""));
    h+="<dt>torch ops</dt><dd>"+list(ops)+"</dd>";
    h+="<dt>source lines</dt><dd class='lines'>"+list(u.lines)+"</dd>";
    h+="<dt>modelled</dt><dd>"+u.cycles+" cycles, "+(100*u.share).toFixed(1)+
       "% of the section's time, "+esc(u.bound)+"-bound, "+u.vectors+" vectors, II "+u.ii+"</dd>";
  } else {
    h+="<dt>tensor</dt><dd>"+esc(u.tensor)+", "+u.bytes+" B"+
       (u.pmus>1?" on "+u.pmus+" PMUs":"")+"</dd><dt>written by</dt><dd>"+esc(u.source)+"</dd>";
  }
  h+="<dt>streams</dt><dd>"+list(u.streams)+"</dd></dl>";
  return h;
}
function show(el){
  document.querySelectorAll(".route.show").forEach(r=>r.classList.remove("show"));
  document.querySelectorAll(".unit.on").forEach(e=>e.classList.remove("on"));
  if(!el){info.innerHTML=info.dataset.help;return;}
  const u=DATA.units[+el.dataset.u];
  el.classList.add("on");
  u.routes.forEach(r=>{const p=document.getElementById("r"+u.s+"-"+r);
    if(p)p.classList.add("show");});
  info.innerHTML=describe(u);
}
info.dataset.help=info.innerHTML;
document.querySelectorAll(".unit").forEach(el=>{
  el.addEventListener("mouseenter",()=>{if(!pinned)show(el);});
  el.addEventListener("mouseleave",()=>{if(!pinned)show(null);});
  el.addEventListener("click",()=>{pinned=(pinned===el)?null:el;show(pinned||el);});
});
function matches(u,q){
  const line=q.match(/^(?:(.*):)?(\d+)$/);
  if(line){return u.lines.some(l=>{const m=l.match(/^(.*):(\d+)$/);
    return m&&m[2]===line[2]&&(!line[1]||m[1]===line[1]||m[1].endsWith("/"+line[1]));});}
  const t=q.toLowerCase();
  return [u.name].concat(u.values,u.ops,u.lines).some(x=>x&&x.toLowerCase().includes(t));
}
const search=document.getElementById("search"), hits=document.getElementById("hits");
search.addEventListener("input",()=>{
  const q=search.value.trim(); let n=0;
  document.querySelectorAll(".unit").forEach(el=>{
    const hit=q!==""&&matches(DATA.units[+el.dataset.u],q);
    el.classList.toggle("hit",hit); if(hit)n++;});
  hits.textContent=q?n+" unit"+(n===1?"":"s"):"";
  const first=document.querySelector(".unit.hit");
  if(first)first.closest("section").scrollIntoView({block:"nearest"});
});
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{style}</style></head>
<body><main>
<h1>{heading}</h1>
<p>{target}</p>
<p>Figures from the performance model (<code>runtime/machine/perf.py</code>) of the PEF as compiled.
<b>peak</b>: FLOPs over what the fabric could do in the modelled time (a chained section's:
from the step's start to its end); <b>roof</b>: the most the off-chip traffic allows.</p>
{summary}
<h2>Roofline</h2>
{roofline}
<h2>Sections</h2>
<p><label>Find the units of a model line (<code>model.py:27</code> or <code>27</code>), a traced
value or a torch op: <input id="search" type="search" placeholder="model.py:27"></label>
<span id="hits"></span></p>
<p>PCUs squares (darker: a larger share of the section's modelled time), PMUs circles, free
slots grey, DRAM the bar on the left; links coloured by their load, green (one stream) to red
(full). Hover over a unit to see it, click to keep it.</p>
{sections}
</main>
<aside id="info"><h3>Unit</h3><p>Hover over a unit of a grid.</p></aside>
<script type="application/json" id="data">{data}</script>
<script>{script}</script>
</body></html>
"""
