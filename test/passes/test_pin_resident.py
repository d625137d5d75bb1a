"""pin-resident-symbols: which symbols stay on chip, and in how wide a home."""

from __future__ import annotations

from pathlib import Path

from xdsl.dialects.builtin import IntegerAttr, i64
from xdsl.parser import Parser

from compiler.driver import make_context
from compiler.passes.pin_resident_symbols import _narrow, _pins, _within_budget
from compiler.passes.residency import resident_symbols
from compiler.targets import get_target
from dialects.dataflow import SectionOp
from dialects.pmu import BufferOp

MODULE = Path(__file__).with_name("pin_resident_symbols.mlir")


def test_a_home_no_wider_than_its_own_section_when_the_wide_one_does_not_fit() -> None:
    # The SGD step of pin_resident_symbols.mlir, its forward's load of the weight in 3 PMUs
    # (as a matmul's copies would have it, a stream a PMU) while the optimizer's home and its
    # load updated in place take one. Shared where it lives, the home takes 3 PMUs, 2 more
    # than the optimizer's own; narrowed, the forward's load is filled by a hand-off and the
    # home takes one PMU, which the forward gives up instead. With no room left in the
    # optimizer, only the narrow home fits.
    module = Parser(make_context(), MODULE.read_text()).parse_module()
    sections = [op for op in module.walk() if isinstance(op, SectionOp)]
    forward = sections[0]
    (load,) = [
        b
        for b in forward.body.block.ops
        if isinstance(b, BufferOp) and b.buffer_name.data == "net.0.weight"
    ]
    load.properties["pmus"] = IntegerAttr(3, i64)
    residents = resident_symbols(sections, module, get_target("tiny"))
    (weight,) = [r for r in residents if r.name == "net.0.weight"]
    assert (0, load) in weight.shared and _pins(weight) == 3
    narrow = _narrow(weight)
    assert (0, load) in narrow.loads and (0, load) not in narrow.shared
    assert narrow.home == weight.home and _pins(narrow) == 1
    idle = {weight.name: frozenset[int]()}
    chosen, added = _within_budget(sections, [weight], [4, 0], idle)
    assert chosen == [narrow] and added == [1, -1]
    chosen, added = _within_budget(sections, [weight], [4, 4], idle)
    assert chosen == [weight] and added == [0, 1]
