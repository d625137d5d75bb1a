# ruff: noqa: E501  (IR text in the tests is kept one op a line, as rdu-opt prints it)
"""Fusion, unit splitting and sections on the MLP and on small hand-made sections."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from xdsl.dialects.builtin import ModuleOp
from xdsl.parser import Parser

from compiler.driver import compile_in_memory, make_context
from compiler.frontend import ModelSpec
from compiler.passes.assign_pmus import AssignPmus
from compiler.passes.emit_pef import module_to_program
from compiler.passes.place_and_route import PlaceAndRoute
from compiler.passes.split_units import SplitUnits
from compiler.targets import get_target
from runtime.fabric import Fabric
from runtime.pef import decode_pef, encode_pef
from runtime.pef.schema import Program
from runtime.session import TrainingSession
from tools.model_file import load_model_file

MLP = Path(__file__).resolve().parents[2] / "examples" / "mlp" / "model.py"


def mlp_spec() -> tuple[ModelSpec, dict[str, np.ndarray]]:
    model_file = load_model_file(MLP)
    args = argparse.Namespace(batch_size=16, seed=0, epoch=0, hidden=128, classes=10, debug=False)
    torch.manual_seed(0)
    module = model_file.call("model", args)
    spec = model_file.spec(module, args, inference=False)
    state = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    return spec, state


@pytest.fixture(scope="module")
def programs() -> dict[tuple[str, int], Program]:
    spec, _ = mlp_spec()
    return {
        (arch, level): compile_in_memory(
            spec, inference=False, target=get_target(arch), opt_level=level
        )
        for arch, level in (("plasticine", 0), ("plasticine", 1), ("tiny", 1), ("tiny", 0))
    }


def pcus_of(program: Program, kind: str) -> int:
    return sum(len(s.pcus) for s in program.sections if s.kind == kind)


def test_fusion_folds_the_sgd_update_and_the_loss(programs: dict[tuple[str, int], Program]) -> None:
    fused, unfused = programs["plasticine", 1], programs["plasticine", 0]
    # SGD with momentum and weight decay: 6 ops a parameter, 2 kernels once fused.
    assert pcus_of(unfused, "optimizer") == 24
    assert pcus_of(fused, "optimizer") == 8
    assert pcus_of(fused, "forward") * 3 <= pcus_of(unfused, "forward") * 2
    # It fits plasticine: one section of each kind, as before.
    assert [s.name for s in fused.sections] == ["forward", "backward", "optimizer"]


def test_o0_gives_every_op_a_section(programs: dict[tuple[str, int], Program]) -> None:
    for level_0 in (programs["plasticine", 0], programs["tiny", 0]):
        forward = [s for s in level_0.sections if s.kind == "forward"]
        assert len(forward) == 24
        assert [s.name for s in forward[:2]] == ["forward.0", "forward.1"]
        for section in level_0.sections:
            assert len({op_of_name(p.name) for p in section.pcus}) <= 1, section.name


def op_of_name(name: str) -> str:
    """The op a PCU belongs to: split-units names the parts of unit ``u`` ``u.0``, ``u.1``..."""
    return name.split(".", 1)[0]


def test_tiny_cuts_the_mlp_into_sections_that_fit(programs: dict[tuple[str, int], Program]) -> None:
    target = get_target("tiny")
    program = programs["tiny", 1]
    kinds = [s.kind for s in program.sections]
    assert kinds == sorted(kinds, key=["forward", "backward", "optimizer"].index)
    assert kinds.count("forward") >= 2 and kinds.count("optimizer") >= 2
    for section in program.sections:
        assert len(section.pcus) <= target.num_pcus, section.name
        assert sum(p.pmus for p in section.pmus) <= target.num_pmus, section.name
        for pcu in section.pcus:
            assert len(pcu.stages) <= target.pcu_stages, pcu.name
            assert len(pcu.inputs) <= target.pcu_ports, pcu.name
    spills = [s for s in program.meta.symbols if s.role == "spill"]
    assert spills and all(s.name.startswith("spill.") for s in spills)
    decode_pef(encode_pef(program))  # the section table and flags take many sections a kind


def test_tiny_and_plasticine_train_alike(programs: dict[tuple[str, int], Program]) -> None:
    _, state = mlp_spec()
    rng = np.random.default_rng(0)
    batch = {
        "input.0": rng.standard_normal((16, 64)).astype(np.float32),
        "target.0": rng.integers(0, 10, 16),
    }
    hyper = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "dampening": 0.0}
    results = {}
    for key in (("plasticine", 1), ("tiny", 1), ("tiny", 0)):
        session = TrainingSession(programs[key], state)
        step = session.step(batch, hyper)
        results[key] = (step.loss, session.state())
    loss, params = results["plasticine", 1]
    for key in (("tiny", 1), ("tiny", 0)):
        other_loss, other = results[key]
        assert other_loss == pytest.approx(loss, rel=1e-6)
        for name, value in params.items():
            np.testing.assert_allclose(other[name], value, rtol=1e-5, atol=1e-7, err_msg=name)


SCALED_MATMUL = """
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a", "b"], arg_roles = [#dataflow<role input>, #dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%a: tensor<64x128xf32>, %b: tensor<128x4xf32>):
    %0 = pmu.buffer %a {name = "a", tile_bytes = 2048 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<64x128xf32> -> memref<64x128xf32>
    %1 = pmu.buffer %b {name = "b", tile_bytes = 2048 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<128x4xf32> -> memref<128x4xf32>
    %r = pcu.unit @matmul_0 (%0, %1) space [64, 4, 128] tile [4, 4, 128] lanes 4 ins [#rdu_tile.access<0 : [128, 0, 1]>, #rdu_tile.access<0 : [0, 1, 4]>] out #rdu_tile.access<0 : [4, 1, 0]> combiner add : (memref<64x128xf32>, memref<128x4xf32>) -> tensor<64x4xf32> {
    ^bb0(%x: f32, %y: f32):
      %c2 = pcu.const 2.000000e+00 : f32
      %2 = pcu.stage mul(%x, %c2) : (f32, f32) -> f32
      %c1 = pcu.const 1.000000e+00 : f32
      %3 = pcu.stage add(%2, %c1) : (f32, f32) -> f32
      %4 = pcu.stage mul(%3, %y) : (f32, f32) -> f32
      pcu.yield %4 : f32
    }
    %rb = pmu.buffer %r {name = "matmul_0", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<64x4xf32> -> memref<64x4xf32>
    dataflow.yield %rb : memref<64x4xf32>
  }
}
"""


def test_a_resident_tensor_spans_pmus_that_placement_reserves() -> None:
    ctx = make_context()
    module = Parser(ctx, SCALED_MATMUL).parse_module()
    assert isinstance(module, ModuleOp)
    SplitUnits(target="tiny").apply(ctx, module)
    AssignPmus(target="tiny").apply(ctx, module)
    PlaceAndRoute(target="tiny").apply(ctx, module)
    module.verify()
    program = module_to_program(module, get_target("tiny"))
    section = program.sections[0]
    assert [p.name for p in section.pcus] == ["matmul_0.0", "matmul_0"]
    part = next(p for p in section.pmus if p.name == "matmul_0.0")
    assert part.pmus == 2 and len(part.more_at) == 1  # 64x128 f32 = 32 KiB, 16 KiB a PMU
    slots = [tuple(u.at) for u in [*section.pcus, *section.pmus]]
    slots += [tuple(at) for p in section.pmus for at in p.more_at]
    assert len(slots) == len(set(slots))
    decode_pef(encode_pef(program))
    a = np.random.default_rng(0).standard_normal((64, 128)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((128, 4)).astype(np.float32)
    dram = {"a": a, "b": b}
    Fabric(program).run_section("forward", dram)
    np.testing.assert_allclose(dram["output.0"], (a * 2 + 1) @ b, rtol=1e-5, atol=1e-5)
