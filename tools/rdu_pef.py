"""rdu-pef: print a PEF as text (what it holds, section by section), so humans and lit can read it.

rdu-pef out/mlp/mlp.pef [--section forward] [--summary]
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import click

from runtime.pef import schema
from tools.cli import OneLineCommand, guarded


def _shape(dtype: str, shape: list[int]) -> str:
    return f"{dtype}[{','.join(map(str, shape))}]"


def _at(at: list[int]) -> str:
    return f"({at[0]},{at[1]})" if at else "(-)"


def _access(access: schema.Access) -> str:
    text = f"offset {access.offset} strides [{','.join(map(str, access.strides))}]"
    if access.index_port >= 0:  # a gather or scatter: plus stride * (the index port's value)
        text += f" + {access.index_stride} * in{access.index_port} (index < {access.index_limit})"
    return text


def format_program(program: schema.Program, section: str | None, summary: bool) -> Iterator[str]:
    meta = program.meta
    t = meta.target
    mode = "inference" if meta.inference else "training"
    yield f"pef: target {t.name}, {mode}" + (", data-parallel" if meta.data_parallel else "")
    yield (
        f"target: {t.cols}x{t.rows} grid, PCU {t.pcu_lanes} lanes x {t.pcu_stages} stages, "
        f"PMU {t.pmu_bytes} B in {t.pmu_banks} banks, {t.clock_ghz} GHz, "
        f"{t.link_capacity} streams a link, {t.stream_bytes_per_cycle} B a stream a cycle, "
        f"DRAM {t.dram_gbps} GB/s, DRAM latency {t.dram_latency_ns} ns, section load "
        f"{t.config_latency_ns} ns"
    )
    yield (
        f"meta: model {meta.model_name}, batch {meta.batch_size}, optimizer {meta.optimizer}, "
        f"compiler {meta.compiler_version}, flags [{' '.join(meta.compile_flags)}], "
        f"source sha256 {meta.source_hash[:16]}"
    )
    non_persistent = {e.symbol: e.sha256 for e in meta.non_persistent}
    for i, s in enumerate(meta.symbols):
        line = f"symbol {i}: {s.name} {_shape(s.dtype, s.shape)} {s.role}"
        if i in non_persistent:  # its values come from the model, checked against this digest
            digest = non_persistent[i]
            line += f" non-persistent sha256 {digest[:16]}" if digest else " non-persistent"
        yield line
    for c in meta.collectives:
        names = " ".join(meta.symbols[i].name for i in c.symbols)
        yield f"collective {c.op} before section {c.before}: {names}"
    for sec in program.sections:
        if section is not None and sec.name != section:
            continue
        yield (
            f"section {sec.name} ({sec.kind}): {len(sec.pcus)} PCUs, {len(sec.pmus)} PMUs, "
            f"{len(sec.routes)} routes"
        )
        if summary:
            continue
        for i in sec.inputs:
            yield f"  input {meta.symbols[i].name}"
        for i, m in enumerate(sec.pmus):
            source = (
                f"dram {meta.symbols[m.symbol].name}" if m.source == "dram" else f"pcu {m.producer}"
            )
            yield (
                f"  pmu {i} {m.name} at {_at(m.at)} {_shape(m.dtype, m.shape)} "
                f"tile {m.tile_bytes} B x{m.nbuf} banks {m.banks} <- {source}"
            )
        for i, p in enumerate(sec.pcus):
            yield (
                f"  pcu {i} {p.name} at {_at(p.at)} space [{','.join(map(str, p.space))}] "
                f"tile [{','.join(map(str, p.tile))}] lanes {p.lanes} {p.dtype} "
                f"combiner {p.combiner} loc {p.loc}" + (f" value {p.value}" if p.value else "")
            )
            if p.parallel:
                yield (
                    f"    parallel [{','.join(map(str, p.parallel))}]: "
                    f"{math.prod(p.parallel)} copies"
                    + (", interleaved" if p.interleaved else "")
                    + f", more at {' '.join(_at(a) for a in p.more_at)}"
                )
            for j, port in enumerate(p.inputs):
                yield f"    v{j} = in pmu {port.pmu} {_access(port.access)}"
            base = len(p.inputs)
            for j, st in enumerate(p.stages):
                args = " ".join(f"v{a}" for a in st.args)
                imm = "" if st.imm is None else f" {st.imm}"
                yield f"    v{base + j} = {st.op}{imm} {args} : {st.dtype}".rstrip()
            yield f"    out v{p.result} -> pmu {p.out_pmu} {_access(p.out)}"
        for r in sec.routes:
            hops = " ".join(_at(h) for h in r.hops)
            taps = f" taps {' '.join(f'{t[0]}.{t[1]}' for t in r.taps)}" if r.taps else ""
            scalar = " (scalar)" if r.scalar else ""
            yield f"  route {r.src[0]} {r.src[1]} -> {r.dst[0]} {r.dst[1]}{scalar}: {hops}{taps}"
        for o in sec.outputs:
            yield f"  output {meta.symbols[o.symbol].name} <- pmu {o.pmu}"
    resident = program.resident
    if resident is not None and section in (None, "resident"):
        names = [meta.symbols[e.symbol].name for e in resident.symbols]
        how = "co-resident" if resident.co_resident else "loaded in turn, homes pinned"
        yield f"resident: sections {how}, {len(names)} symbols on chip: {' '.join(names)}"
        if not summary:
            for e in resident.symbols:
                yield f"  on chip {meta.symbols[e.symbol].name}: home {e.section} pmu {e.pmu}"
                for h in e.handoffs:
                    hops = " ".join(_at(x) for x in h.hops)
                    yield f"    hand-off -> {h.section} pmu {h.pmu}: {hops}"
                for shared in e.shared:
                    how = (
                        "updated in place" if shared.section == e.section else "on the home's slots"
                    )
                    yield f"    shared by {shared.section} pmu {shared.pmu} ({how})"
    weights = program.weights
    if weights is not None and section in (None, "weights"):
        size = sum(len(t.data) for t in weights.tensors)
        yield f"weights: {len(weights.tensors)} tensors, {size} bytes, from {weights.source}"
        if not summary:
            for t in weights.tensors:
                s = meta.symbols[t.symbol]
                yield f"  weight {s.name} {_shape(t.dtype, s.shape)}: {len(t.data)} bytes"


@click.command(cls=OneLineCommand)
@click.argument("pef_path", metavar="PEF")
@click.option(
    "--section",
    default=None,
    help="Print only this section ('weights': the embedded weights; 'resident': the symbols "
    "kept on chip, by co-resident sections or in pinned homes).",
)
@click.option("--summary", is_flag=True, help="Symbols and per-section unit counts only.")
@click.option("--debug", is_flag=True, help="Full tracebacks.")
def rdu_pef(pef_path: str, section: str | None, summary: bool, debug: bool) -> None:
    """Print the PEF file as text."""

    def body() -> int:
        from runtime.pef import read_pef

        for line in format_program(read_pef(pef_path), section, summary):
            click.echo(line)
        return 0

    guarded("rdu-pef", debug, body)


def main() -> None:
    rdu_pef()


if __name__ == "__main__":
    main()
