"""Every conformance test draws its inputs from a generator seeded afresh for it."""

from __future__ import annotations

import pytest
from harness import GENERATOR


@pytest.fixture(autouse=True)
def seeded_inputs() -> None:
    GENERATOR.manual_seed(0)
