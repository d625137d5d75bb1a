"""``pef_sections.unplaced_section``'s ``made`` (parallelize-units' ``Frontiers.pcus``): a
unit's unplaced PCU is made once for each of its parallel factors and interleaving and given
again after; it is the PCU made afresh."""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec

from compiler.driver import make_context
from compiler.frontend import build_dataflow
from compiler.passes import pef_sections
from compiler.passes.parallelize_units import pmus_counted
from compiler.pipeline import lowering_passes
from compiler.targets import get_target
from dialects.dataflow import SectionOp
from dialects.pcu import UnitOp
from dialects.rdu_tile import dense_i64
from tools.model_file import load_model_file

ROOT = Path(__file__).resolve().parents[2]


def mlp_forward() -> SectionOp:
    """The MLP's forward (batch 64) as parallelize-units gets it on sn10."""
    model_file = load_model_file(str(ROOT / "examples" / "mlp" / "model.py"))
    ns = argparse.Namespace(seed=0, epoch=0, debug=False, batch_size=64, hidden=32, classes=10)
    spec = model_file.spec(model_file.call("model", ns), ns, inference=False)
    module = build_dataflow(spec, inference=False)
    ctx = make_context()
    for name, pass_ in lowering_passes(get_target("sn10").spec):
        if name == "parallel":
            break
        pass_.apply(ctx, module)
    return next(op for op in module.walk() if isinstance(op, SectionOp))


def unplaced_pcus(section: SectionOp, made: pef_sections.UnplacedPcus | None = None) -> list[bytes]:
    target = get_target("sn10")
    with pmus_counted(section, target):
        pef = pef_sections.unplaced_section(section, target, made)
    return [msgspec.msgpack.encode(p) for p in pef.pcus]


def test_a_remembered_pcu_is_the_one_made_afresh_for_its_factors() -> None:
    section = mlp_forward()
    units = [op for op in section.body.block.ops if isinstance(op, UnitOp)]
    matmul = next(u for u in units if u.sym_name.data.startswith("matmul"))
    grids = [None, (2, 1, 1), (4, 1, 1), None, (2, 1, 1)]

    def with_grid(
        grid: tuple[int, ...] | None, made: pef_sections.UnplacedPcus | None = None
    ) -> list[bytes]:
        if grid is None:
            matmul.properties.pop("parallel", None)
        else:
            matmul.properties["parallel"] = dense_i64(grid)
        return unplaced_pcus(section, made)

    fresh = [with_grid(grid) for grid in grids]
    assert fresh[0] != fresh[1] != fresh[2] and fresh[0] == fresh[3] and fresh[1] == fresh[4]
    made: pef_sections.UnplacedPcus = {}
    assert [with_grid(grid, made) for grid in grids] == fresh
    assert len(made) == len(units) + 2  # each unit once, and the matmul's two other grids
