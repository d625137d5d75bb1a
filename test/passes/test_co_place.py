"""co-place-sections' first check (``CoPlaceSections.apply``): sections whose PCUs together
exceed the fabric's are left as place-and-route made them without a placement tried (GPT-2
small's five sections on sn40l, 1,917 PCUs of 1,040: 0.6 s of graphs and a placement that
could only fail); sections that fit are co-placed as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from xdsl.parser import Parser

from compiler.driver import make_context
from compiler.passes import co_place_sections, placement
from compiler.passes.co_place_sections import CoPlaceSections
from compiler.passes.ir_helpers import RESIDENT_ATTR
from compiler.passes.place_and_route import PlaceAndRoute
from compiler.targets import get_target

LIT = Path(__file__).parent / "co_place_sections.mlir"  # three PCUs, nine PMUs


@pytest.mark.parametrize("side", [2, 4])  # a 2 x 2 fabric has 2 PCUs, tiny (4 x 4) 8
def test_sections_are_placed_together_only_if_their_pcus_fit(
    monkeypatch: pytest.MonkeyPatch, side: int
) -> None:
    module = Parser(make_context(), LIT.read_text()).parse_module()
    PlaceAndRoute(target="tiny").apply(make_context(), module)
    target = msgspec.structs.replace(get_target("tiny"), cols=side, rows=side)
    monkeypatch.setattr(co_place_sections, "pass_target", lambda name: target)
    tried: list[int] = []
    place_and_route = placement.place_and_route

    def counted(*args: Any, **kwargs: Any) -> placement.Placement:
        tried.append(1)
        return place_and_route(*args, **kwargs)

    monkeypatch.setattr(placement, "place_and_route", counted)
    CoPlaceSections(target="tiny").apply(make_context(), module)
    assert (RESIDENT_ATTR in module.attributes) == (target.num_pcus >= 3)
    assert bool(tried) == (target.num_pcus >= 3)  # polished by more placements when it fits
