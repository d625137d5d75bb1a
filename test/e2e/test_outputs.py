"""What rdu-compile writes beside the PEF, made cheap: the stage IR dumps (xdsl's text,
with each distinct attribute's text kept and reused) and the grids of report.html (every slot
of a unit in its element, links by load)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from xdsl.dialects.builtin import DenseArrayBase, i64
from xdsl.ir import Operation
from xdsl.parser import Parser
from xdsl.printer import Printer

from compiler.driver import make_context
from compiler.explorer import _grid_svg
from compiler.frontend import build_dataflow
from compiler.ir_text import AttributeTexts, print_ir
from compiler.pipeline import lowering_passes
from compiler.targets import get_target
from dialects.rdu_tile import dense_i64
from runtime.pef import schema
from tools.model_file import load_model_file

ROOT = Path(__file__).resolve().parents[2]


def _xdsl_text(module: Operation) -> str:
    out = io.StringIO()
    Printer(stream=out, print_debuginfo=True).print_op(module)
    return out.getvalue() + "\n"


@pytest.mark.parametrize("name", ["place_and_route.mlir", "fuse_elementwise.mlir"])
def test_ir_dump_is_xdsl_text(name: str) -> None:
    text = (ROOT / "test" / "passes" / name).read_text().split("// -----")[0]
    module = Parser(make_context(), text).parse_module()
    expected = _xdsl_text(module)
    texts = AttributeTexts()
    assert print_ir(module, texts) == expected
    assert texts.by_value and texts.by_id  # attribute texts were kept ...
    assert print_ir(module, texts) == expected  # ... and printing from them gives the same text
    assert print_ir(module) == expected


def test_every_stage_of_a_compile_dumps_as_xdsl_prints_it() -> None:
    """The dumps of one compile share their attribute texts across stages (the IR changes in
    between); each stage's text is still exactly xdsl's (the GPT example: attention, layer
    norm, several sections and multi-PMU buffers)."""
    model_file = load_model_file(str(ROOT / "examples" / "gpt" / "model.py"))
    args = argparse.Namespace(
        seed=0, epoch=0, debug=False, batch_size=2, block_size=8, n_embd=16, n_head=2, n_layer=1,
        dropout=0.0, steps_per_epoch=1,
    )  # fmt: skip
    spec = model_file.spec(model_file.call("model", args), args, inference=False)
    module = build_dataflow(spec, inference=False)
    texts = AttributeTexts()
    assert print_ir(module, texts) == _xdsl_text(module)
    ctx = make_context()
    for stage, pass_ in lowering_passes(get_target("tiny").spec):
        pass_.apply(ctx, module)
        assert print_ir(module, texts) == _xdsl_text(module), stage


@pytest.mark.parametrize("values", [[], [1, -2, 3], [2**63 - 1, -(2**63)], [2**63, 2**64 - 1]])
def test_dense_i64_is_what_xdsl_builds(values: list[int]) -> None:
    """``dense_i64`` packs the bytes itself; the last case (outside the signed range) goes
    through xdsl's ``from_list``, which normalizes it."""
    assert dense_i64(values) == DenseArrayBase.from_list(i64, values)


def _pmu(name: str, at: list[int], more_at: list[list[int]] | None = None) -> schema.Pmu:
    more = more_at or []
    return schema.Pmu(
        name=name, at=at, shape=[4], dtype="f32", tile_bytes=16, nbuf=1, banks=1,
        source="dram", symbol=0, pmus=1 + len(more), more_at=more,
    )  # fmt: skip


def test_the_grid_of_a_section_with_spanning_units() -> None:
    """A buffer on two PMUs is one unit element with a circle a PMU; each used link is drawn
    once, coloured by the streams over it; a stream's route from DRAM starts at the DRAM bar."""
    pmus = [_pmu("x", [1, 0]), _pmu("w", [0, 1], [[2, 1]])]
    routes = [
        schema.Route(src=("dram", 0), dst=("pmu", 0), hops=[[0, 0], [1, 0]]),
        schema.Route(src=("pmu", 0), dst=("pmu", 1), hops=[[1, 0], [1, 1], [2, 1]]),
        schema.Route(src=("pmu", 1), dst=("dram", 1), hops=[[0, 1], [0, 0]]),
        schema.Route(src=("pmu", 1), dst=("pmu", 0), hops=[[2, 1], [1, 1]]),
    ]
    section = schema.Section(
        name="forward", kind="forward", inputs=[], outputs=[], pmus=pmus, pcus=[], routes=routes
    )
    target = get_target("tiny")
    program = SimpleNamespace(meta=SimpleNamespace(target=target))
    units = [{"kind": "pmu", "at": [p.at, *p.more_at]} for p in pmus]
    svg = _grid_svg(0, section, program, units, 5)  # type: ignore[arg-type]
    assert svg.count('<g class="unit pmu"') == 2 and 'data-u="6"' in svg
    assert svg.split('data-u="6">')[1].split("</g>")[0].count("<circle") == 2
    assert svg.count('class="link"') == 4  # (1,1)-(2,1) both ways is one line
    capacity = target.link_capacity
    assert f"link (1,1)-(2,1): 1 and 1 streams of {capacity}" in svg
    assert f"link (0,0)-(1,0): 1 and 0 streams of {capacity}" in svg
    assert f'points="-0.45,{target.rows}' in svg  # from the DRAM bar at switch (0, 0)
