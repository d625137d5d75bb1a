"""The refactor guard: every example's training and inference PEF, compiled as rdu-compile
compiles it at its defaults, is byte for byte the one recorded in ``pef_digests.txt``.

A refactor of the compiler, the dialects or the shared rules must leave these PEFs unchanged.
A deliberate change re-records the digests (``PYTHONPATH=$PWD .venv/bin/python
test/e2e/pef_guard.py``) and says in its commit which PEFs changed and why. The PEFs the suite
already compiles with rdu-compile (the MLP's, LeNet's and the ResNet's training PEF) are reused;
the others are compiled in this process (about 30 s of CPU for the fourteen).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pef_guard import EXAMPLES, compile_example, digest, pef_name, recorded_digests

COMPILED_BY_THE_SUITE = {
    "mlp": "mlp_pef",
    "mlp-inference": "mlp_inference_pef",
    "lenet": "lenet_pef",
    "resnet": "resnet_pef",
}
"""PEF name -> the session fixture (test/e2e/conftest.py) whose rdu-compile output it is."""


@pytest.mark.parametrize("inference", [False, True], ids=["training", "inference"])
@pytest.mark.parametrize("example", EXAMPLES)
def test_pef_is_byte_identical(example: str, inference: bool, request: pytest.FixtureRequest):
    name = pef_name(example, inference)
    fixture = COMPILED_BY_THE_SUITE.get(name)
    if fixture is not None:
        data = Path(request.getfixturevalue(fixture)).read_bytes()
    else:
        data = compile_example(example, inference)
    assert digest(data) == recorded_digests()[name], (
        f"{name}: the PEF's bytes changed; if deliberate, re-record with test/e2e/pef_guard.py"
    )
