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
from xdsl.parser import Parser

from compiler.driver import compile_in_memory, make_context
from compiler.frontend import ModelSpec
from compiler.passes.parallelize_units import DEFAULT_MIN_VECTORS, allocate
from compiler.targets import get_target
from dialects.dataflow import SectionOp
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
    # Every unit spread: parallel units share a section where the fabric holds them all (sn10),
    # placed together with their multicast streams; on tiny the section is cut.
    spec, module = _spec("mlp", True, batch_size=8, hidden=16, classes=10)
    program = compile_in_memory(spec, inference=True, target=get_target(arch), min_vectors=1)
    parallel = _parallel(program)
    assert parallel
    most = max(sum(1 for p in s.pcus if p.parallel) for s in program.sections)
    assert most > 1 if arch == "sn10" else most >= 1
    x = torch.randn(8, *spec.example_inputs[0].shape[1:])
    _check_against_torch(program, module, x)


def test_the_default_threshold_gives_no_unit_a_section_of_its_own() -> None:
    spec, _ = _spec("mlp", False, batch_size=256, hidden=128, classes=10)
    program = compile_in_memory(spec, inference=False, target=get_target("sn10"))
    assert [s.name for s in program.sections] == ["forward", "backward", "optimizer"]
    assert DEFAULT_MIN_VECTORS >= 1 << 24


def test_balance_spreads_the_mlp_inside_its_sections() -> None:
    # At the defaults on sn10 (640 PCUs) every section keeps its units together and the units
    # on its critical path get copies, placed with the others. Training: parallel units beside
    # ordinary ones (the numbers of such sections against torch: rdu-test in test_mlp.py, on
    # plasticine); inference: its three fused units all spread in one section, against torch.
    target = get_target("sn10")
    spec, _ = _spec("mlp", False, batch_size=256, hidden=128, classes=10)
    training = compile_in_memory(spec, inference=False, target=target)
    validate(training)
    assert [s.name for s in training.sections] == ["forward", "backward", "optimizer"]
    forward = training.sections[0]
    copies = {p.name: math.prod(p.parallel) if p.parallel else 1 for p in forward.pcus}
    assert copies["matmul_0"] > copies["matmul_3"] > 1 and min(copies.values()) == 1
    model = model_section(forward, training.meta)
    assert model.pcus_used == sum(copies.values()) <= target.num_pcus
    alone = compile_in_memory(spec, inference=False, target=target, balance=False)
    assert not _parallel(alone)
    assert model.cycles * 3 < model_section(alone.sections[0], alone.meta).cycles

    spec, module = _spec("mlp", True, batch_size=256, hidden=128, classes=10)
    program = compile_in_memory(spec, inference=True, target=target)
    (section,) = program.sections
    assert len([p for p in section.pcus if p.parallel]) == len(section.pcus) > 1
    x = torch.randn(256, *spec.example_inputs[0].shape[1:])
    _check_against_torch(program, module, x)


def test_allocation_gives_more_copies_to_more_work() -> None:
    # parallelize_units_balance.mlir: two independent matmuls of 256 and 64 rows on sn10. With
    # 8 PCUs, the one with four times the work gets three times the copies (each step splits
    # the unit with the most cycles on the critical path); without a limit, both get copies
    # until the section is down to its DRAM traffic: five times the copies (the bigger one
    # also waits for its larger operand to load).
    text = (Path(__file__).parent / "parallelize_units_balance.mlir").read_text()
    module = Parser(make_context(), text).parse_module()
    (section,) = [op for op in module.walk() if isinstance(op, SectionOp)]
    target = get_target("sn10")
    few = {u.sym_name.data: math.prod(f) for u, f in allocate(section, target, 8).items()}
    assert few == {"ma": 6, "mb": 2}
    many = {u.sym_name.data: math.prod(f) for u, f in allocate(section, target).items()}
    assert many == {"ma": 15, "mb": 3}
