"""Shared fixtures of the hardening tests: the MLP example compiled once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from hardening_helpers import MLP, compile_model


@pytest.fixture(scope="session")
def mlp_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_model(MLP, tmp_path_factory.mktemp("hardening-mlp"))
