"""Every pass of the compiler, by its command-line name, imported lazily.

The pipeline rdu-compile runs is in ``compiler/pipeline.py``; rdu-opt can run any of these.
"""

from collections.abc import Callable

from xdsl.passes import ModulePass


def all_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    def convert_dataflow_to_rdu_tile() -> type[ModulePass]:
        from compiler.passes.convert_dataflow_to_rdu_tile import ConvertDataflowToRduTile

        return ConvertDataflowToRduTile

    def convert_rdu_tile_to_pcu_pmu() -> type[ModulePass]:
        from compiler.passes.convert_rdu_tile_to_pcu_pmu import ConvertRduTileToPcuPmu

        return ConvertRduTileToPcuPmu

    def fuse_elementwise() -> type[ModulePass]:
        from compiler.passes.fuse_elementwise import FuseElementwise

        return FuseElementwise

    def fuse_casts() -> type[ModulePass]:
        from compiler.passes.fuse_casts import FuseCasts

        return FuseCasts

    def split_units() -> type[ModulePass]:
        from compiler.passes.split_units import SplitUnits

        return SplitUnits

    def assign_pmus() -> type[ModulePass]:
        from compiler.passes.assign_pmus import AssignPmus

        return AssignPmus

    def parallelize_units() -> type[ModulePass]:
        from compiler.passes.parallelize_units import ParallelizeUnits

        return ParallelizeUnits

    def partition_sections() -> type[ModulePass]:
        from compiler.passes.partition_sections import PartitionSections

        return PartitionSections

    def place_and_route() -> type[ModulePass]:
        from compiler.passes.place_and_route import PlaceAndRoute

        return PlaceAndRoute

    def co_place_sections() -> type[ModulePass]:
        from compiler.passes.co_place_sections import CoPlaceSections

        return CoPlaceSections

    def pin_resident_symbols() -> type[ModulePass]:
        from compiler.passes.pin_resident_symbols import PinResidentSymbols

        return PinResidentSymbols

    def emit_pef() -> type[ModulePass]:
        from compiler.passes.emit_pef import EmitPef

        return EmitPef

    return {
        "convert-dataflow-to-rdu-tile": convert_dataflow_to_rdu_tile,
        "fuse-elementwise": fuse_elementwise,
        "fuse-casts": fuse_casts,
        "convert-rdu-tile-to-pcu-pmu": convert_rdu_tile_to_pcu_pmu,
        "split-units": split_units,
        "parallelize-units": parallelize_units,
        "assign-pmus": assign_pmus,
        "partition-sections": partition_sections,
        "place-and-route": place_and_route,
        "co-place-sections": co_place_sections,
        "pin-resident-symbols": pin_resident_symbols,
        "emit-pef": emit_pef,
    }
