"""Shared fixtures: the MLP example compiled once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_helpers import compile_mlp


@pytest.fixture(scope="session")
def mlp_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_mlp(tmp_path_factory.mktemp("mlp"))


@pytest.fixture(scope="session")
def mlp_inference_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_mlp(tmp_path_factory.mktemp("mlp-inf"), "--inference", "--pef-name", "mlp-inf")
