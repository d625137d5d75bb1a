"""Shared fixtures: the MLP (training and inference), LeNet and ResNet examples compiled at
rdu-compile's defaults, once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_helpers import ROOT, compile_mlp, tool


@pytest.fixture(scope="session")
def mlp_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_mlp(tmp_path_factory.mktemp("mlp"))


@pytest.fixture(scope="session")
def mlp_inference_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_mlp(tmp_path_factory.mktemp("mlp-inf"), "--inference", "--pef-name", "mlp-inf")


def _compile_example(name: str, out: Path) -> Path:
    result = tool(
        "rdu-compile", str(ROOT / "examples" / name / "model.py"), "--output-folder", str(out)
    )
    assert result.returncode == 0, result.stderr
    return out / name / f"{name}.pef"


@pytest.fixture(scope="session")
def lenet_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compile_example("lenet", tmp_path_factory.mktemp("lenet"))


@pytest.fixture(scope="session")
def resnet_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compile_example("resnet", tmp_path_factory.mktemp("resnet"))
