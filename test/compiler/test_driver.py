"""The driver's garbage-collection policy while compiling (``collecting_less``)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch

from compiler import driver
from compiler.targets import get_target


def _spec() -> driver.ModelSpec:
    linear = torch.nn.Linear(2, 2)
    return driver.ModelSpec("linear", linear, (torch.zeros(1, 2),), (), None, None, Path(__file__))


class _Stop(Exception):
    """Raised from inside a compile to end it early."""


def test_collecting_less_sets_the_compile_thresholds_then_puts_back_the_old_ones() -> None:
    before = gc.get_threshold()
    with driver.collecting_less():
        assert gc.get_threshold() == driver.COMPILE_GC_THRESHOLDS
    assert gc.get_threshold() == before
    with pytest.raises(_Stop), driver.collecting_less():
        raise _Stop
    assert gc.get_threshold() == before


def test_compile_in_memory_compiles_with_the_compile_thresholds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[int, ...]] = []

    def build(*args: object, **kwargs: object) -> None:
        seen.append(gc.get_threshold())
        raise _Stop

    monkeypatch.setattr(driver, "build_dataflow", build)
    before = gc.get_threshold()
    with pytest.raises(_Stop):
        driver.compile_in_memory(_spec(), inference=True, target=get_target("tiny"))
    assert seen == [driver.COMPILE_GC_THRESHOLDS]
    assert gc.get_threshold() == before
