"""parallelize-units end to end: kernels forced over many PCUs still compute what torch does.

``compile_in_memory(min_vectors=...)`` lowers parallelize-units' threshold so that small
kernels are spread too; the PEF then runs on the emulator copy by copy (runtime/fabric.py).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from compiler.driver import compile_in_memory
from compiler.frontend import ModelSpec
from compiler.passes.parallelize_units import DEFAULT_MIN_VECTORS
from compiler.targets import get_target
from runtime.machine.perf import model_section
from runtime.pef import schema, validate
from runtime.session import InferenceSession
from tools.model_file import load_model_file

ROOT = Path(__file__).resolve().parents[2]


def _spec(example: str, inference: bool, **args: int) -> tuple[ModelSpec, torch.nn.Module]:
    model_file = load_model_file(str(ROOT / "examples" / example / "model.py"))
    ns = argparse.Namespace(seed=0, epoch=0, debug=False, **args)
    torch.manual_seed(0)
    module = model_file.call("model", ns)
    spec = model_file.spec(module, ns, inference=inference)
    return spec, module


def _parallel(program: schema.Program) -> list[schema.Pcu]:
    return [p for s in program.sections for p in s.pcus if p.parallel]


def _check_against_torch(program: schema.Program, module: torch.nn.Module, x: torch.Tensor) -> None:
    validate(program)
    state = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    out = InferenceSession(program, state).run({"input.0": x.numpy()})["output.0"]
    with torch.no_grad():
        want = module(x).numpy()
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("arch", "mkn", "factors"),
    [("tiny", (8, 16, 8), [2, 2, 1]), ("sn10", (96, 64, 160), [16, 10, 1])],
)
def test_matmul_in_copies_matches_torch(
    arch: str, mkn: tuple[int, int, int], factors: list[int]
) -> None:
    m, k, n = mkn
    spec, module = _spec("matmul", True, batch_size=m, k=k, n=n)
    program = compile_in_memory(spec, inference=True, target=get_target(arch), min_vectors=1)
    (pcu,) = _parallel(program)
    assert pcu.parallel == factors
    assert len(pcu.more_at) == math.prod(factors) - 1
    (section,) = program.sections
    model = model_section(section, program.meta)
    assert model.pcus_used == math.prod(factors)
    assert model.units[0].vectors < model.units[0].iterations // math.prod(factors)
    x = torch.randn(spec.example_inputs[0].shape, generator=torch.Generator().manual_seed(1))
    _check_against_torch(program, module, x)


@pytest.mark.parametrize("arch", ["tiny", "sn10"])
def test_mlp_with_every_unit_in_copies_matches_torch(arch: str) -> None:
    # Every unit spread: each parallel unit is cut into a section of its own.
    spec, module = _spec("mlp", True, batch_size=8, hidden=16, classes=10)
    program = compile_in_memory(spec, inference=True, target=get_target(arch), min_vectors=1)
    parallel = _parallel(program)
    assert parallel
    for section in program.sections:
        assert len(section.pcus) == 1 or not any(p.parallel for p in section.pcus)
    x = torch.randn(8, *spec.example_inputs[0].shape[1:])
    _check_against_torch(program, module, x)


def test_the_default_threshold_leaves_the_mlp_alone() -> None:
    spec, _ = _spec("mlp", False, batch_size=256, hidden=128, classes=10)
    program = compile_in_memory(spec, inference=False, target=get_target("sn10"))
    assert not _parallel(program)
    assert DEFAULT_MIN_VECTORS >= 1 << 24
