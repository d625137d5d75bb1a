"""Shared fixtures: the MLP (training and inference), LeNet and ResNet examples compiled at
rdu-compile's defaults, once per test session; a headless Chromium (from the distribution,
driven by selenium through its chromedriver) for the tests that open a page."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import ROOT, compile_mlp, in_process


@pytest.fixture(scope="session")
def mlp_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_mlp(tmp_path_factory.mktemp("mlp"))


@pytest.fixture(scope="session")
def mlp_inference_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_mlp(tmp_path_factory.mktemp("mlp-inf"), "--inference", "--pef-name", "mlp-inf")


def _compile_example(name: str, out: Path) -> Path:
    result = in_process(
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


def _chromium() -> tuple[str, str] | None:
    browser = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
    )
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    found = _chromium()
    if found is None:
        pytest.skip("no Chromium and chromedriver here (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # selenium never downloads a browser or driver
    options = Options()
    options.binary_location = found[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    try:
        yield driver
    finally:
        driver.quit()
