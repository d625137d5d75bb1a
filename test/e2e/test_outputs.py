"""What rdu-compile writes beside the PEF, made cheap: the stage IR dumps (xdsl's text,
with each distinct attribute's text kept and reused), the fabric pictures (collections on an
Agg canvas; every slot of a unit, routes as polylines), and the picture worker that draws them
beside the compiler (the same files as drawn in-process)."""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import pytest
from xdsl.dialects.builtin import DenseArrayBase, i64
from xdsl.parser import Parser
from xdsl.printer import Printer

from compiler.driver import make_context
from compiler.frontend import build_dataflow
from compiler.ir_text import AttributeTexts, print_ir
from compiler.pictures import PictureWorker
from compiler.pipeline import lowering_passes
from compiler.report import _end_point, draw_fabric
from compiler.targets import get_target
from dialects.rdu_tile import dense_i64
from runtime.pef import read_pef, schema
from tools.model_file import load_model_file

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def _xdsl_text(module: object) -> str:
    out = io.StringIO()
    Printer(stream=out, print_debuginfo=True).print_op(module)  # type: ignore[arg-type]
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


def _worker() -> PictureWorker:
    worker = PictureWorker.start(always=True)
    assert worker is not None  # Linux
    return worker


def test_the_picture_worker_draws_what_draw_fabric_draws(mlp_pef: Path, tmp_path: Path) -> None:
    """The worker's pictures, and those of the rdu-compile run (which used a worker), are the
    bytes ``draw_fabric`` writes in this process."""
    target = get_target("plasticine")
    (tmp_path / "worker").mkdir()
    worker = _worker()
    worker.draw(mlp_pef, target, tmp_path / "worker")
    worker.wait()
    sections = read_pef(mlp_pef).sections
    assert len(sections) == 3
    for section in sections:
        name = f"fabric-{section.name}.png"
        draw_fabric(section, target, tmp_path / name)
        expected = (tmp_path / name).read_bytes()
        assert (tmp_path / "worker" / name).read_bytes() == expected
        assert (mlp_pef.parent / name).read_bytes() == expected


def test_the_picture_worker_reports_its_error_in_one_line(tmp_path: Path) -> None:
    worker = _worker()
    worker.draw(tmp_path / "missing.pef", get_target("plasticine"), tmp_path)
    with pytest.raises(RuntimeError, match=r"^drawing the fabric pictures failed: PefError: "):
        worker.wait()
    assert not list(tmp_path.iterdir())


def test_a_picture_worker_without_a_request_is_stopped() -> None:
    worker = _worker()
    pid = worker.pid
    worker.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: no longer this process's child


def test_compile_model_with_a_picture_worker_writes_the_same_files(tmp_path: Path) -> None:
    """With a worker, the final IR's dump is written while the worker draws: every file but the
    log (its times) is the same as without one."""
    import torch

    from compiler.driver import compile_model
    from tools.cli import model_namespace
    from tools.model_file import load_model_file

    model_file = load_model_file(ROOT / "examples" / "mlp" / "model.py")
    args = model_namespace(model_file, [], {"batch_size": 16, "seed": 0, "epoch": 0})
    outputs: dict[str, dict[str, bytes]] = {}
    for kind, worker in (("here", None), ("worker", _worker())):
        torch.manual_seed(0)
        module = model_file.call("model", args)
        spec = model_file.spec(module, args, inference=False)
        compile_model(
            spec, inference=False, target=get_target("plasticine"), out_dir=tmp_path / kind,
            pef_name="mlp", flags=[], source_hash="", batch_size=16, pictures=worker,
        )  # fmt: skip
        outputs[kind] = {
            p.name: p.read_bytes() for p in (tmp_path / kind).iterdir() if p.suffix != ".log"
        }
    assert "mlp.placed.mlir" in outputs["here"] and "fabric-optimizer.png" in outputs["here"]
    assert outputs["worker"] == outputs["here"]
