"""bf16 on the emulated fabric computes as torch's CPU kernels do: ``cast`` to bf16 rounds to
nearest even, an elementwise bf16 stage widens to float32 and rounds its result once, and a bf16
multiply-accumulate or sum accumulates in float32 and rounds once at the end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pefkit import ProgramBuilder, elementwise, matmul_program, st

from runtime.dtypes import bf16
from runtime.fabric import Fabric
from runtime.pef import schema


def bf16_of(t: torch.Tensor) -> np.ndarray:
    """A torch bf16 tensor as a numpy bf16 array (the same bits)."""
    return t.contiguous().view(torch.int16).numpy().view(bf16())


def bits(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).view(np.uint16).astype(np.int64)


def unary_program(op: str, n: int, src: schema.Dtype, dst: schema.Dtype) -> schema.Program:
    p = ProgramBuilder(inference=True)
    p.symbol("x", [n], src)
    p.symbol("y", [n], dst, role="output")
    s = p.section("forward")
    s.store("y", elementwise(s, op, [n], [(s.load("x"), [n])], [st(op, 0, dtype=dst)], dtype=dst))
    return p.build()


def binary_program(op: str, n: int) -> schema.Program:
    p = ProgramBuilder(inference=True)
    for name in ("a", "b"):
        p.symbol(name, [n], "bf16")
    p.symbol("y", [n], "bf16", role="output")
    s = p.section("forward")
    ins = [(s.load("a"), [n]), (s.load("b"), [n])]
    s.store("y", elementwise(s, op, [n], ins, [st(op, 0, 1, dtype="bf16")], dtype="bf16"))
    return p.build()


def test_cast_to_bf16_rounds_to_nearest_even_as_torch() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, generator=g)
    # Ties: 1 + 2**-8 lies halfway between 1 and 1 + 2**-7 (even: 1); 1 + 3 * 2**-8 between
    # 1 + 2**-7 and 1 + 2**-6 (even: the upper one). Truncation gives 1 and 1 + 2**-7.
    x[:2] = torch.tensor([1 + 2**-8, 1 + 3 * 2**-8])
    dram = {"x": x.numpy()}
    Fabric(unary_program("cast", 4096, "f32", "bf16")).run_section("forward", dram)
    assert dram["y"].dtype == bf16()
    np.testing.assert_array_equal(bits(dram["y"]), bits(bf16_of(x.to(torch.bfloat16))))
    assert dram["y"][:2].astype(np.float32).tolist() == [1.0, 1 + 2**-6]


def test_cast_from_bf16_is_exact() -> None:
    x = torch.randn(257, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    dram = {"x": bf16_of(x)}
    Fabric(unary_program("cast", 257, "bf16", "f32")).run_section("forward", dram)
    np.testing.assert_array_equal(dram["y"], x.float().numpy())


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "max"])
def test_bf16_elementwise_rounds_its_float32_result_once(op: str) -> None:
    g = torch.Generator().manual_seed(2)
    a, b = (torch.randn(1000, generator=g).to(torch.bfloat16) for _ in range(2))
    dram = {"a": bf16_of(a), "b": bf16_of(b)}
    Fabric(binary_program(op, 1000)).run_section("forward", dram)
    want = {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b, "max": torch.maximum(a, b)}
    np.testing.assert_array_equal(bits(dram["y"]), bits(bf16_of(want[op])))


def test_bf16_matmul_accumulates_in_float32() -> None:
    m, k, n = 37, 53, 29
    g = torch.Generator().manual_seed(3)
    a = torch.randn(m, k, generator=g).to(torch.bfloat16)
    b = torch.randn(k, n, generator=g).to(torch.bfloat16)
    dram = {"a": bf16_of(a), "b": bf16_of(b)}
    Fabric(matmul_program(m, k, n, dtype="bf16")).run_section("forward", dram)
    out = dram["out"]
    assert out.dtype == bf16()
    # float32 accumulation rounded once: the exact product rounded, up to float32 order noise.
    exact = (a.double() @ b.double()).float().to(torch.bfloat16)
    ulps = np.abs(bits(out) - bits(bf16_of(exact)))
    assert ulps.max() <= 1 and (ulps == 0).mean() > 0.99
    # torch's CPU bf16 matmul: within one bf16 ulp
    assert np.abs(bits(out) - bits(bf16_of(a @ b))).max() <= 1
