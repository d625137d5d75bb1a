"""A tiny regression MLP with a tanh and a relu, for rdu-test's divergence search.

``fc1 -> relu -> fc2 -> tanh``, mean squared error: the forward's tanh and the backward's
``threshold_backward`` (a ``select``, which the forward does not use) each get a unit of their
own, so a fault injected into either opcode has one unit to find. Random data, no download.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import torch
from torch import nn


class TanhMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(16, 4)
        self.out = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x))
        return self.out(self.fc2(h))


def model(args: argparse.Namespace) -> nn.Module:
    return TanhMLP()


def example_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, 8),)


def example_targets(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, 4),)


def loss(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(outputs, target)


def optimizer(params, args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.1)


def data(
    split: str, args: argparse.Namespace
) -> Iterator[tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]]:
    generator = torch.Generator().manual_seed(args.seed + (split == "test"))
    for _ in range(2):
        x = torch.randn(args.batch_size, 8, generator=generator)
        yield (x,), (torch.tanh(x[:, :4] - x[:, 4:]),)
