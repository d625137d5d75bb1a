"""One matrix multiply, ``x @ w``: ``x`` is ``[batch, k]``, the parameter ``w`` is ``[k, n]``.

The smallest model that loads the fabric with arithmetic: what the performance model's reports
are checked against (``rdu-compile examples/matmul/model.py --inference -b 4096 --arch sn10``
is the 4096 x 4096 x 4096 matmul). Its data are random numbers and its loss the mean square.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import torch
from torch import nn


def add_args(parser: argparse.ArgumentParser) -> None:
    """This model's own arguments (the batch is ``-b``)."""
    parser.add_argument("--k", type=int, default=4096, help="inner dimension")
    parser.add_argument("--n", type=int, default=4096, help="output columns")


class MatMul(nn.Module):
    def __init__(self, k: int, n: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(k, n) / k**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w


def model(args: argparse.Namespace) -> nn.Module:
    return MatMul(args.k, args.n)


def example_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, args.k),)


def example_targets(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, args.n),)


def loss(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(outputs, target)


def data(
    split: str, args: argparse.Namespace
) -> Iterator[tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]]:
    """Four batches of random inputs and targets (the same for a given seed, split and epoch)."""
    generator = torch.Generator().manual_seed(hash((args.seed, args.epoch, split)) % 2**31)
    for _ in range(4):
        x = torch.randn(args.batch_size, args.k, generator=generator)
        y = torch.randn(args.batch_size, args.n, generator=generator)
        yield (x,), (y,)
