"""The fixed pass pipeline rdu-compile runs, in order (rdu-opt can run any subset)."""

from __future__ import annotations

from xdsl.passes import ModulePass

from compiler.passes.convert_dataflow_to_rdu_tile import ConvertDataflowToRduTile
from compiler.passes.convert_rdu_tile_to_pcu_pmu import ConvertRduTileToPcuPmu
from compiler.passes.place_and_route import PlaceAndRoute


def lowering_passes(target: str) -> list[tuple[str, ModulePass]]:
    """(stage name, pass) from dataflow IR down to placed and routed PCU/PMU IR."""
    return [
        ("rdu_tile", ConvertDataflowToRduTile(target=target)),
        ("pcu_pmu", ConvertRduTileToPcuPmu(target=target)),
        ("placed", PlaceAndRoute(target=target)),
    ]
