"""What rdu-compile writes beside the PEF, made cheap (issue 6): the stage IR dumps (xdsl's text,
with each distinct attribute's text kept and reused) and the fabric pictures (collections on an
Agg canvas; every slot of a unit, routes as polylines)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from xdsl.parser import Parser
from xdsl.printer import Printer

from compiler.driver import make_context, print_ir
from compiler.report import _end_point, draw_fabric
from compiler.targets import get_target
from runtime.pef import schema

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def _xdsl_text(module: object) -> str:
    out = io.StringIO()
    Printer(stream=out, print_debuginfo=True).print_op(module)  # type: ignore[arg-type]
    return out.getvalue() + "\n"


@pytest.mark.parametrize("name", ["place-and-route.mlir", "fuse_elementwise.mlir"])
def test_ir_dump_is_xdsl_text(name: str) -> None:
    text = (ROOT / "test" / "passes" / name).read_text().split("// -----")[0]
    module = Parser(make_context(), text).parse_module()
    expected = _xdsl_text(module)
    texts: dict = {}
    assert print_ir(module, texts) == expected
    assert texts  # attribute texts were kept ...
    assert print_ir(module, texts) == expected  # ... and printing from them gives the same text
    assert print_ir(module) == expected


def _pmu(name: str, at: list[int], more_at: list[list[int]] | None = None) -> schema.Pmu:
    more = more_at or []
    return schema.Pmu(
        name=name, at=at, shape=[4], dtype="f32", tile_bytes=16, nbuf=1, banks=1,
        source="dram", symbol=0, pmus=1 + len(more), more_at=more,
    )  # fmt: skip


def test_route_ticks_end_at_the_nearest_slot_of_a_unit() -> None:
    pmu = _pmu("w", [1, 0], [[3, 0], [3, 2]])
    section = schema.Section(
        name="forward", kind="forward", inputs=[], outputs=[], pmus=[pmu], pcus=[], routes=[]
    )
    assert _end_point(section, ("pmu", 0), [1, 1], 0.0) == (1.5, 0.5)
    assert _end_point(section, ("pmu", 0), [4, 2], 0.0) == (3.5, 2.5)
    assert _end_point(section, ("dram", 0), [0, 3], 0.05) == (-0.6, 3.05)


def test_picture_of_a_section_with_spanning_units(tmp_path: Path) -> None:
    """A buffer on several PMUs, routes from DRAM, between units and to DRAM: a PNG of the size
    the grid asks for (100 dpi)."""
    path = tmp_path / "fabric-forward.png"
    draw_fabric(_section_with_routes(), get_target("tiny"), path)
    data = path.read_bytes()
    assert data[:8] == PNG
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    assert (width, height) == (600, 400)  # max(6, (4 + 2) * 0.55) x max(4, ...) inches, 100 dpi


def _section_with_routes() -> schema.Section:
    pmus = [_pmu("x", [1, 0]), _pmu("w", [0, 1], [[2, 1]])]
    routes = [
        schema.Route(src=("dram", 0), dst=("pmu", 0), hops=[[0, 0], [1, 0]]),
        schema.Route(src=("pmu", 0), dst=("pmu", 1), hops=[[1, 0], [1, 1], [2, 1]]),
        schema.Route(src=("pmu", 1), dst=("dram", 1), hops=[[0, 1], [0, 0]]),
    ]
    return schema.Section(
        name="forward", kind="forward", inputs=[], outputs=[], pmus=pmus, pcus=[], routes=routes
    )
