"""The fixed pass pipeline rdu-compile runs, in order (rdu-opt can run any subset)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from compiler.passes.assign_pmus import AssignPmus
from compiler.passes.co_place_sections import CoPlaceSections
from compiler.passes.convert_dataflow_to_rdu_tile import ConvertDataflowToRduTile
from compiler.passes.convert_rdu_tile_to_pcu_pmu import ConvertRduTileToPcuPmu
from compiler.passes.fuse_casts import FuseCasts
from compiler.passes.fuse_elementwise import FuseElementwise
from compiler.passes.parallelize_units import ParallelizeUnits
from compiler.passes.partition_sections import PartitionSections
from compiler.passes.pin_resident_symbols import PinResidentSymbols
from compiler.passes.place_and_route import PlaceAndRoute
from compiler.passes.split_units import SplitUnits


def lowering_passes(
    target: str, *, opt_level: int = 1, min_vectors: int | None = None, balance: bool = True
) -> list[tuple[str, ModulePass]]:
    """(stage name, pass) from dataflow IR down to placed and routed PCU/PMU IR.

    ``opt_level`` 1 (``--o1``, the default) fuses elementwise kernels (and casts into their
    neighbours) and cuts a section only
    where it does not fit the target; 0 (``--o0``) does not fuse and gives every op a section.
    ``min_vectors`` overrides parallelize-units' threshold (tests spread small kernels with it);
    ``balance=False`` turns off its work-proportional spreading inside sections (tests compare;
    ``--o0`` too: its sections of one op each would undo the allocation's sections).
    """
    fusion: list[tuple[str, ModulePass]] = []
    if opt_level >= 1:
        fusion = [("fused", FuseElementwise(target=target)), ("casts", FuseCasts(target=target))]
    balance = balance and opt_level >= 1
    parallelize = ParallelizeUnits(target=target, balance=balance)
    if min_vectors is not None:
        parallelize = ParallelizeUnits(target=target, min_vectors=min_vectors, balance=balance)
    return [
        ("rdu_tile", ConvertDataflowToRduTile(target=target)),
        *fusion,
        ("pcu_pmu", ConvertRduTileToPcuPmu(target=target)),
        ("split", SplitUnits(target=target)),
        ("parallel", parallelize),
        ("pmus", AssignPmus(target=target)),
        ("sections", PartitionSections(target=target, max_ops=0 if opt_level >= 1 else 1)),
        ("placed", PlaceAndRoute(target=target)),
        ("resident", CoPlaceSections(target=target)),
        ("pinned", PinResidentSymbols(target=target)),
    ]


@runtime_checkable
class TellsChange(Protocol):
    """A pass that can say it left the IR as it was: ``apply_changed`` is its ``apply``,
    returning False then (fuse-casts on a model without casts; co-place-sections and
    pin-resident-symbols where nothing is placed together or pinned)."""

    def apply_changed(self, ctx: Context, op: ModuleOp) -> bool: ...


def apply_pass(pass_: ModulePass, ctx: Context, module: ModuleOp) -> bool:
    """Apply ``pass_`` to ``module``: whether it may have changed it (False only from a pass
    that says it did not, ``TellsChange``)."""
    if isinstance(pass_, TellsChange):
        return pass_.apply_changed(ctx, module)
    pass_.apply(ctx, module)
    return True
