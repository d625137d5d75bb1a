"""The MLP-era ops on the ``tiny`` target: a few units, so fused kernels are split across PCUs
and graphs cut into several sections, with tensors spilled to DRAM between them."""

from __future__ import annotations

import pytest
import torch
from harness import GENERATOR, check


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GENERATOR)


def test_relu() -> None:
    check(torch.relu, rand(5, 13), target="tiny")


def test_add_mul_broadcast() -> None:
    check(lambda x, y: x * y + x, rand(3, 1, 7), rand(4, 1), target="tiny")


def test_linear() -> None:
    check(torch.nn.functional.linear, rand(6, 11), rand(5, 11), rand(5), target="tiny")


def test_matmul_of_tensors_larger_than_a_pmu() -> None:
    check(torch.mm, rand(40, 72), rand(72, 64), target="tiny")


@pytest.mark.parametrize("dim", [0, 1])
def test_log_softmax(dim: int) -> None:
    check(lambda x: torch.log_softmax(x, dim), rand(6, 9), target="tiny")


def test_sum() -> None:
    check(lambda x: x.sum((0,), keepdim=True), rand(5, 7), target="tiny")


def test_cross_entropy() -> None:
    target = torch.randint(0, 9, (6,), generator=GENERATOR)
    check(
        lambda x, t: torch.nn.functional.cross_entropy(x, t).reshape(1),
        rand(6, 9),
        target,
        target="tiny",
    )


@pytest.mark.parametrize("fn", [torch.tanh, torch.sigmoid])
def test_transcendental(fn) -> None:
    check(fn, rand(4, 9), rtol=1e-4, target="tiny")
