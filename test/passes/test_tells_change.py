"""Passes that say whether they changed the IR (``compiler.pipeline.TellsChange``): when one
says it did not, the IR prints as it did before it (the stage dumps then copy the earlier
stage's file instead of printing it again), and when it says it did, it did."""

from __future__ import annotations

from pathlib import Path

import pytest
from xdsl.parser import Parser
from xdsl.passes import ModulePass

from compiler.driver import make_context
from compiler.ir_text import print_ir
from compiler.passes.co_place_sections import CoPlaceSections
from compiler.passes.fuse_casts import FuseCasts
from compiler.passes.pin_resident_symbols import PinResidentSymbols
from compiler.passes.place_and_route import PlaceAndRoute
from compiler.pipeline import TellsChange, apply_pass

HERE = Path(__file__).parent


def _module(name: str):
    text = (HERE / name).read_text().split("// -----")[0]
    return Parser(make_context(), text).parse_module()


CASES = [
    # a bf16-mixed linear layer's roundings fused into the matmul
    ("fuse_casts.mlir", [], FuseCasts(target="plasticine"), True),
    # f32 kernels: no cast to fuse
    ("fuse_elementwise.mlir", [], FuseCasts(target="plasticine"), False),
    # sections that fit the fabric together, and ones that do not (tiny's 8 PMUs)
    ("co_place_sections.mlir", ["plasticine"], CoPlaceSections(target="plasticine"), True),
    ("pin_resident_symbols.mlir", ["tiny"], CoPlaceSections(target="tiny"), False),
    # on tiny, symbols are pinned; on plasticine the sections are co-resident already
    ("pin_resident_symbols.mlir", ["tiny"], PinResidentSymbols(target="tiny"), True),
    (
        "pin_resident_symbols.mlir",
        ["plasticine"],
        PinResidentSymbols(target="plasticine"),
        False,
    ),
]


@pytest.mark.parametrize(("name", "placed_on", "pass_", "changes"), CASES)
def test_a_pass_says_whether_it_changed_the_ir(
    name: str, placed_on: list[str], pass_: ModulePass, changes: bool
) -> None:
    assert isinstance(pass_, TellsChange)
    ctx, module = make_context(), _module(name)
    for target in placed_on:  # the passes before it in rdu-compile's pipeline
        PlaceAndRoute(target=target).apply(ctx, module)
        if isinstance(pass_, PinResidentSymbols):
            CoPlaceSections(target=target).apply(ctx, module)
    before = print_ir(module)
    changed = apply_pass(pass_, ctx, module)
    assert changed is changes
    assert (print_ir(module) != before) is changes
