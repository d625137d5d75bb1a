"""rdu-test names the first unit that diverges, and catches a small error in any one op.

Faults are injected into the emulator's opcode table (``runtime.fabric.OPCODES``: a Fabric
plans its units from it when it is built), in-process, so nothing is recompiled:

- a forward opcode (``tanh``) and a backward one (``select``, which only the backward's
  ``threshold_backward`` uses in the test model) off by 1e-3 relative: rdu-test fails and names
  that op, its unit and the model's line (with the library line of the torch module);
- every float opcode the MLP and the GPT examples use, in turn, off by 1e-4 relative: rdu-test
  fails at its default tolerances.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from e2e_helpers import MLP, ROOT, in_process, shared_compile, tool

import runtime.fabric as fabric
import tools.reference
from runtime.pef import read_pef
from tools.rdu_run import Run
from tools.rdu_test import END_TO_END, check_against_torch, rdu_test

TANH_MLP = ROOT / "test" / "e2e" / "models" / "tanh_mlp.py"
GPT = ROOT / "examples" / "gpt" / "model.py"
GPT_ARGS = ["--n-embd", "16", "--block-size", "8", "--n-head", "2", "--n-layer", "1"]


def _line(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _compile(out: Path, model: Path, name: str, *args: str) -> Path:
    result = in_process("rdu-compile", str(model), "--output-folder", str(out), *args)
    assert result.returncode == 0, result.stderr
    return out / name / f"{name}.pef"


@pytest.fixture(scope="module")
def tanh_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compile(tmp_path_factory.mktemp("tanh"), TANH_MLP, "tanh_mlp", "-b", "4")


@pytest.fixture(scope="module")
def gpt_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compile(tmp_path_factory.mktemp("gpt"), GPT, "gpt", "-b", "2", *GPT_ARGS)


def _perturbed(op: str, eps: float) -> fabric.Opcode:
    """Opcode ``op`` with its float results times ``1 + eps`` (a ``cast``'s result taken as
    float32 first: its implementation returns its operand, the stage casts it)."""
    base = fabric.OPCODES[op]
    assert base.impl is not None

    def impl(*args: np.ndarray, _impl=base.impl) -> np.ndarray:
        result = _impl(*args)
        if op == "cast":
            result = np.asarray(result, np.float32)
        return result * np.float32(1 + eps) if result.dtype.kind == "f" else result

    return fabric.Opcode(op, base.arity, impl)


@pytest.fixture
def perturb(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """``perturb(op, eps)``: opcode ``op`` off by ``eps`` relative for the test."""
    yield lambda op, eps: monkeypatch.setitem(fabric.OPCODES, op, _perturbed(op, eps))


def _rdu_test(model: Path, pef: Path, *args: str):
    return CliRunner().invoke(rdu_test, [str(model), "--pef", str(pef), *args])


def test_a_perturbed_forward_op_is_named_with_the_models_line(tanh_pef: Path, perturb) -> None:
    perturb("tanh", 1e-3)
    result = _rdu_test(TANH_MLP, tanh_pef)
    assert result.exit_code == 1, result.output
    line = _line(TANH_MLP, "return self.out(self.fc2(h))")
    found = next(x for x in result.output.splitlines() if x.startswith("first divergence:"))
    assert found.startswith("first divergence: forward unit 3 tanh_")
    assert "tanh = aten.tanh 'tanh'" in found
    assert f"at tanh_mlp.py:{line} (torch/nn/modules/activation.py:" in found
    assert "max rel 1.0e-03" in found


def test_a_perturbed_backward_op_is_named_with_the_models_line(tanh_pef: Path, perturb) -> None:
    perturb("select", 1e-3)
    result = _rdu_test(TANH_MLP, tanh_pef)
    assert result.exit_code == 1, result.output
    line = _line(TANH_MLP, "h = self.act(self.fc1(x))")
    found = next(x for x in result.output.splitlines() if x.startswith("first divergence:"))
    assert found.startswith("first divergence: backward unit ")
    assert "select = aten.threshold_backward 'threshold_backward'" in found
    assert f"at tanh_mlp.py:{line} (torch/nn/modules/activation.py:" in found


def test_localize_on_a_correct_compile_finds_no_divergence(tanh_pef: Path) -> None:
    result = _rdu_test(TANH_MLP, tanh_pef, "--localize")
    assert result.exit_code == 0, result.output
    assert "first divergence: none (every unit within the tolerance)" in result.output
    # the units say which traced value they hold (what the search compares)
    text = tool("rdu-pef", str(tanh_pef)).stdout
    assert " value tanh\n" in text and " value threshold_backward\n" in text


def _float_opcodes(pef: Path) -> list[str]:
    """The opcodes of the PEF's stages with a float result (constants and counters aside)."""
    ops = {
        stage.op
        for section in read_pef(pef).sections
        for pcu in section.pcus
        for stage in pcu.stages
        if stage.dtype == "f32" and stage.op not in ("const", "counter")
    }
    return sorted(ops)


@pytest.mark.parametrize("example", ["mlp", "gpt"])
def test_an_error_of_1e_4_in_any_one_op_is_caught(
    example: str, mlp_pef: Path, gpt_pef: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, pef, args = (MLP, mlp_pef, []) if example == "mlp" else (GPT, gpt_pef, GPT_ARGS)
    opts = {"pef_path": str(pef), "seed": 0, "init_ckpt_path": None}
    run = Run(str(model), args, debug=True, lr=None, momentum=None, weight_decay=None, **opts)
    # the model is traced once for every check (the graph does not depend on the fault)
    monkeypatch.setattr(
        tools.reference, "trace_joint", functools.cache(tools.reference.trace_joint)
    )
    assert all(r.ok for r in check_against_torch(run))
    ops = _float_opcodes(pef)
    assert {"add", "mul", "exp"} <= set(ops)
    missed = []
    for op in ops:
        with monkeypatch.context() as patch:
            patch.setitem(fabric.OPCODES, op, _perturbed(op, 1e-4))
            if all(r.ok for r in check_against_torch(run)):
                missed.append(op)
    assert not missed, f"{example}: a 1e-4 error in {missed} passes rdu-test"


ZOO = ROOT / "examples" / "zoo" / "model.py"


@pytest.fixture(scope="module")
def mobilenet_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test_zoo's MobileNetV2 training PEF (compiled once for both)."""
    return shared_compile(tmp_path_factory, ZOO, "mobilenet", "--zoo", "mobilenet", "-b", "2")


def test_deep_batch_norm_passes_within_torchs_own_error_and_a_1e_3_fault_fails(
    mobilenet_pef: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MobileNetV2 (17 blocks, batch norm in training over 2 images): torch's own float32
    error reaches past rtol (the tensors that pass only by it), the fabric passes at the
    defaults, and an opcode 1e-3 off still fails. The backward's tensors that passed only by
    it, the reduce_1x1 batch norms' bias gradients (sums of their output's gradient that
    cancel to noise: max rel about 1), are judged at their terms' size
    (``tools.tolerance.cancelled``)."""
    opts = {"pef_path": str(mobilenet_pef), "seed": 0, "init_ckpt_path": None}
    args = ["--zoo", "mobilenet"]
    run = Run(str(ZOO), args, debug=True, lr=None, momentum=None, weight_decay=None, **opts)
    monkeypatch.setattr(
        tools.reference, "trace_joint", functools.cache(tools.reference.trace_joint)
    )
    rows = check_against_torch(run)
    assert all(r.ok for r in rows), max(rows, key=lambda r: r.ratio)
    leaning = [r for r in rows if r.by_torch_error]
    assert {r.section for r in leaning} >= {"forward", END_TO_END}
    bias = "inner.mobilenet_v2.layer.4.reduce_1x1.normalization.bias.grad"
    cancelling = next(r for r in rows if r.section == "backward" and r.name == bias)
    assert cancelling.max_rel > 0.5 and cancelling.limit > 2 * cancelling.torch_term
    with monkeypatch.context() as patch:  # batch norm's own opcode
        patch.setitem(fabric.OPCODES, "rsqrt", _perturbed("rsqrt", 1e-3))
        failed = {r.section for r in check_against_torch(run) if not r.ok}
    assert "forward" in failed and END_TO_END in failed


def test_localize_on_a_correct_deep_batch_norm_compile_finds_no_divergence(
    mobilenet_pef: Path,
) -> None:
    """MobileNetV2's optimizer is cut into pieces that hand Adam's steps on through spills
    (values torch has no name for): each piece's are computed from torch's gradients, so a
    gradient near 0 that differs from torch's by a rounding does not flip a step's sign and
    pass for a divergence."""
    result = _rdu_test(ZOO, mobilenet_pef, "--zoo", "mobilenet", "--localize")
    assert result.exit_code == 0, result.output
    assert "first divergence: none (every unit within the tolerance)" in result.output
