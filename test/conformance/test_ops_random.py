"""Conformance of the random ops (``rand``, ``rand_like``, ``bernoulli``), forward and
backward, against torch on the CPU given the fabric's random numbers.

The fabric draws its own numbers (the counter-based ``rand`` stage, one stream per random op
in the order the forward section converts them, the key ``rng_seed + (stream << 32)``), so torch
cannot draw the same ones: the reference here is the same function written with those numbers
in place of torch's draws, differentiated by torch's autograd.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from compiler.driver import compile_in_memory
from compiler.frontend import ModelSpec
from compiler.targets import get_target
from runtime.fabric import _rand
from runtime.session import TrainingSession

SEED, STEP = 3, 5
RNG_SEED = ((SEED % (1 << 23)) << 40) | STEP
"""The ``rng_seed`` input of step ``STEP`` of a session seeded ``SEED`` (runtime/session.py)."""


def fabric_uniform(stream: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The numbers the fabric's random op of ``stream`` draws in this step."""
    index = np.arange(math.prod(shape), dtype=np.uint64)
    key = np.asarray(RNG_SEED + (stream << 32), dtype=np.int64)
    return torch.from_numpy(_rand(index, key).reshape(shape).copy())


class _Param(torch.nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor) -> None:
        super().__init__()
        self.fn = fn
        self.w = torch.nn.Parameter(w.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.w * x)


def check_random(
    fn: Callable[[torch.Tensor], torch.Tensor],
    reference: Callable[[torch.Tensor], torch.Tensor],
    shape: tuple[int, ...],
) -> torch.Tensor:
    """``fn(w * x)`` on the fabric (one training step) against ``reference(w * x)`` in torch:
    the output and ``w``'s gradient within 1e-5; returns the fabric's output."""
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    weight = torch.randn(shape, generator=g)
    module = _Param(fn, w)
    spec = ModelSpec("random", module, (x,), (weight,), lambda o, t: (o * t).sum(), None, Path())
    program = compile_in_memory(spec, inference=False, target=get_target("plasticine"))
    session = TrainingSession(program, {"w": w.numpy()}, step=STEP)
    session.seed = SEED
    result = session.step({"input.0": x.numpy(), "target.0": weight.numpy()}, {})
    ref_module = _Param(reference, w)
    out = ref_module(x)
    (out * weight).sum().backward()
    fabric_out = torch.from_numpy(result.outputs["output.0"])
    torch.testing.assert_close(fabric_out, out.detach(), rtol=1e-5, atol=1e-6)
    grad = torch.from_numpy(result.gradients["w.grad"])
    assert ref_module.w.grad is not None
    torch.testing.assert_close(grad, ref_module.w.grad, rtol=1e-5, atol=1e-6)
    return fabric_out


def test_rand_as_swin_drop_path() -> None:
    """Swin's stochastic depth: ``x / keep * floor(keep + rand(batch, 1, 1))``."""
    keep = 0.6

    def drop_path(h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return h.div(keep) * torch.floor(keep + u)

    shape = (8, 3, 5)
    out = check_random(
        lambda h: drop_path(h, torch.rand(h.shape[0], 1, 1)),
        lambda h: drop_path(h, fabric_uniform(0, (8, 1, 1))),
        shape,
    )
    dropped = (out == 0).all(dim=(1, 2))
    assert dropped.any() and not dropped.all()  # samples dropped whole, not all of them


def test_inplace_dropout_draws_bernoulli() -> None:
    """In-place dropout on the CPU traces as ``empty_like`` + ``bernoulli(1 - p)``: kept where
    ``u < 1 - p``."""
    p = 0.3
    shape = (6, 7)
    out = check_random(
        lambda h: F.dropout(h * 1, p, training=True, inplace=True),
        lambda h: h * (fabric_uniform(0, shape) < 1 - p) / (1 - p),
        shape,
    )
    assert 0.1 < (out == 0).float().mean() < 0.5


def test_bernoulli_of_probabilities_and_rand_like_take_a_stream_each() -> None:
    """Two random ops: streams 0 and 1 in the order the forward computes them."""
    shape = (5, 9)

    def fn(h: torch.Tensor) -> torch.Tensor:
        coin = torch.bernoulli(torch.sigmoid(h).detach())
        return h * coin + torch.rand_like(h)

    def reference(h: torch.Tensor) -> torch.Tensor:
        coin = (fabric_uniform(0, shape) < torch.sigmoid(h).detach()).float()
        return h * coin + fabric_uniform(1, shape)

    check_random(fn, reference, shape)


def test_uniform_and_exponential_as_phimoe_draws_them() -> None:
    """PhiMoE's router in training: Gumbel noise as ``log`` of ``exponential_`` numbers, and a
    coin from ``uniform_`` (``log(1 - u) / -lambd`` and ``u * (high - low) + low`` of the
    fabric's ``u``); streams in the order the forward draws them."""
    shape = (4, 6)

    def fn(h: torch.Tensor) -> torch.Tensor:
        noise = torch.empty_like(h).exponential_(2.0).log()
        coin = torch.empty_like(h).uniform_(-1.0, 3.0) > 0.5
        return torch.where(coin, h - noise, h * 2)

    def reference(h: torch.Tensor) -> torch.Tensor:
        noise = (torch.log(1 - fabric_uniform(0, shape)) / -2.0).log()
        coin = fabric_uniform(1, shape) * 4.0 - 1.0 > 0.5
        return torch.where(coin, h - noise, h * 2)

    check_random(fn, reference, shape)
