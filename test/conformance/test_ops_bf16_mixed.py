"""bf16-mixed (``rdu-compile --precision bf16-mixed``) against torch's CPU autocast: a matmul
through the compiler and the emulator agrees with torch's bf16 matmul within one bf16 ulp, on
shapes that divide no tile; rdu-test's bf16 rule (``tools.tolerance``) passes it and fails an
emulator that truncates instead of rounding to nearest even."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from harness import GENERATOR

import runtime.fabric as fabric_module
from compiler.driver import compile_in_memory
from compiler.frontend import ModelSpec
from compiler.frontend.errors import FrontendError
from compiler.frontend.trace import precision_context
from compiler.targets import get_target
from runtime.dtypes import bf16
from runtime.session import TrainingSession
from tools.reference import as_numpy
from tools.tolerance import compare

M, K, N = 37, 53, 29


class MatMul(torch.nn.Module):
    def __init__(self, b: torch.Tensor) -> None:
        super().__init__()
        self.b = torch.nn.Parameter(b)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return a @ self.b


def ordered(x: np.ndarray) -> np.ndarray:
    """bf16 values as integers in the order of the numbers, one apart a bf16 ulp."""
    bits = np.asarray(x).astype(bf16()).view(np.int16).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFF), bits)


def truncate_to_bf16(x: np.ndarray) -> np.ndarray:
    """A wrong rounding to bf16: the low 16 bits of the float32 dropped (toward zero)."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    return (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32).astype(bf16())


def _spec(
    name: str, module: torch.nn.Module, a: torch.Tensor, w: torch.Tensor, precision: str
) -> ModelSpec:
    """``module`` on input ``a`` with the loss ``sum(out * w)`` (its gradient is ``w``)."""
    return ModelSpec(
        name=name,
        module=module,
        example_inputs=(a,),
        example_targets=(w,),
        loss_fn=lambda out, w: (out.float() * w).sum(),
        optimizer=None,
        source_file=Path(__file__),
        precision=precision,
    )


def fabric_and_torch() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    a = torch.randn(M, K, generator=GENERATOR)
    b = torch.randn(K, N, generator=GENERATOR)
    w = torch.randn(M, N, generator=GENERATOR)
    module = MatMul(b.clone())
    spec = _spec("matmul", module, a, w, "bf16-mixed")
    program = compile_in_memory(spec, inference=False, target=get_target("plasticine"))
    result = TrainingSession(program, {"b": b.numpy().copy()}).step(
        {"input.0": a.numpy(), "target.0": w.numpy()}, {}
    )
    with precision_context("bf16-mixed"):
        out = module(a)
        loss = (out.float() * w).sum()
    loss.backward()
    assert module.b.grad is not None
    fabric = {"out": result.outputs["output.0"], "grad": result.gradients["b.grad"]}
    reference = {"out": as_numpy(out), "grad": as_numpy(module.b.grad)}
    return fabric, reference


def test_bf16_mixed_matmul_is_within_one_bf16_ulp_of_torch_autocast() -> None:
    fabric, reference = fabric_and_torch()
    assert fabric["out"].dtype == bf16() and reference["out"].dtype == bf16()
    assert fabric["grad"].dtype == np.float32  # master weights' gradients stay float32
    for name in ("out", "grad"):
        ulps = np.abs(ordered(fabric[name]) - ordered(reference[name]))
        assert ulps.max() <= 1, (name, ulps.max())
    assert compare("out", fabric["out"], reference["out"]).ok


def test_a_truncating_cast_fails_the_bf16_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fabric_module, "round_to_bf16", truncate_to_bf16)
    fabric, reference = fabric_and_torch()
    row = compare("out", fabric["out"], reference["out"])
    assert not row.ok and row.mismatched > 0.25, row


def test_a_precision_we_lack_is_refused_in_one_line() -> None:
    module = MatMul(torch.randn(8, 3, generator=GENERATOR))
    spec = _spec("bf16", module, torch.randn(4, 8, generator=GENERATOR), torch.zeros(4, 3), "bf16")
    with pytest.raises(FrontendError, match="precision 'bf16' is not supported yet") as info:
        compile_in_memory(spec, inference=False, target=get_target("plasticine"))
    assert "\n" not in str(info.value)


class ScaledMatMul(MatMul):
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        # torch keeps 0.1 and 0.7 in f32 (mul, div) and rounds 0.3 and 0.2 to bf16 (add, sub)
        return ((a @ self.b) * 0.1 + 0.3) / 0.7 - 0.2


def test_bf16_ops_with_python_numbers_round_them_as_torch() -> None:
    a = torch.randn(M, K, generator=GENERATOR)
    module = ScaledMatMul(torch.randn(K, N, generator=GENERATOR))
    w = torch.randn(M, N, generator=GENERATOR)
    spec = _spec("scaled", module, a, w, "bf16-mixed")
    program = compile_in_memory(spec, inference=False, target=get_target("plasticine"))
    state = {"b": module.b.detach().numpy().copy()}
    result = TrainingSession(program, state).step({"input.0": a.numpy(), "target.0": w.numpy()}, {})
    with precision_context("bf16-mixed"), torch.no_grad():
        want = as_numpy(module(a))
    # the other way round, two fifths of the elements would differ
    assert compare("out", result.outputs["output.0"], want).ok


class MeanOfMatMul(MatMul):
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return (a @ self.b).reshape(M, N // 3, 3).mean(1)  # bf16, over 9: not a power of two


def test_a_bf16_mean_rounds_once_as_torch() -> None:
    """torch's CPU mean of a bf16 tensor sums and divides in f32 and rounds once; the bf16 sum
    rounded first, then divided and rounded again, differs in a fifth of the elements here."""
    a = torch.randn(M, K, generator=GENERATOR)
    module = MeanOfMatMul(torch.randn(K, N // 3 * 3, generator=GENERATOR))
    w = torch.randn(M, 3, generator=GENERATOR)
    spec = _spec("mean", module, a, w, "bf16-mixed")
    program = compile_in_memory(spec, inference=False, target=get_target("plasticine"))
    state = {"b": module.b.detach().numpy().copy()}
    result = TrainingSession(program, state).step({"input.0": a.numpy(), "target.0": w.numpy()}, {})
    with precision_context("bf16-mixed"), torch.no_grad():
        want = as_numpy(module(a))
    got = result.outputs["output.0"]
    assert got.dtype == bf16()
    row = compare("out", got, want)
    assert row.ok and row.mismatched == 0, row
