"""A model whose top-level module is an ``nn.Sequential``: its parameters are named ``0.weight``,
``2.bias`` (names that start with a digit), as torch's state_dict has them.

``Linear(8, 16) -> ReLU -> Linear(16, 4)``, cross-entropy on a made-up class, AdamW. Random
data, no download.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import torch
from torch import nn


def model(args: argparse.Namespace) -> nn.Module:
    torch.manual_seed(args.seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def example_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, 8),)


def example_targets(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, dtype=torch.int64),)


def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, target)


def optimizer(params, args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-2)


def data(
    split: str, args: argparse.Namespace
) -> Iterator[tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]]:
    generator = torch.Generator().manual_seed(args.seed + (split == "test"))
    for _ in range(2):
        x = torch.randn(args.batch_size, 8, generator=generator)
        yield (x,), (x[:, :4].argmax(1),)
