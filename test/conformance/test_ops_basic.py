"""Conformance of the MLP-era ops, forward and backward, on shapes that do not divide tiles."""

from __future__ import annotations

import pytest
import torch
from harness import GENERATOR, check


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GENERATOR)


@pytest.mark.parametrize("shape", [(7,), (5, 13), (3, 1, 17)])
def test_relu(shape: tuple[int, ...]) -> None:
    check(torch.relu, rand(*shape))


@pytest.mark.parametrize("a,b", [((5, 13), (13,)), ((3, 1, 7), (4, 1)), ((1,), (6, 5))])
def test_add_mul_broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    check(lambda x, y: x * y + x, rand(*a), rand(*b))


@pytest.mark.parametrize("m,k,n", [(5, 7, 3), (17, 33, 9)])
def test_matmul(m: int, k: int, n: int) -> None:
    check(torch.mm, rand(m, k), rand(k, n))


def test_linear() -> None:
    check(torch.nn.functional.linear, rand(6, 11), rand(5, 11), rand(5))


@pytest.mark.parametrize("dim", [0, 1])
def test_log_softmax(dim: int) -> None:
    check(lambda x: torch.log_softmax(x, dim), rand(6, 9))


@pytest.mark.parametrize("dims,keep", [((1,), False), ((0,), True), ((0, 1), False)])
def test_sum(dims: tuple[int, ...], keep: bool) -> None:
    check(lambda x: x.sum(dims, keepdim=keep), rand(5, 7))


def test_cross_entropy() -> None:
    target = torch.randint(0, 9, (6,), generator=GENERATOR)
    check(lambda x, t: torch.nn.functional.cross_entropy(x, t).reshape(1), rand(6, 9), target)


@pytest.mark.parametrize("fn", [torch.exp, torch.tanh, torch.sigmoid])
def test_transcendental(fn) -> None:
    check(fn, rand(4, 9), rtol=1e-4)
