"""LeNet-5 classifying scikit-learn's bundled 8x8 digits (no download), upsampled to 16x16.

conv 5x5 (pad 2) -> relu -> max pool 2 -> conv 5x5 -> relu -> max pool 2 -> 120 -> 84 -> 10,
LeNet-5's layout (whose 32x32 input was MNIST's 28x28 padded by 2, as conv1's padding does here).
The model.py contract is in the README; examples/mlp/model.py is the simplest example.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn


def add_args(parser: argparse.ArgumentParser) -> None:
    """This model's own arguments (shown by ``rdu-compile model.py --help``)."""
    parser.add_argument("--upsample", type=int, default=2, help="input scale: 8x8 -> 8k x 8k")
    parser.add_argument("--classes", type=int, default=10, help="number of classes")


class LeNet5(nn.Module):
    def __init__(self, size: int, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = ((size // 2) - 4) // 2
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _size(args: argparse.Namespace) -> int:
    return 8 * args.upsample


def model(args: argparse.Namespace) -> nn.Module:
    return LeNet5(_size(args), args.classes)


def example_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, 1, _size(args), _size(args)),)


def example_targets(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, dtype=torch.int64),)


def loss(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs, target)


def optimizer(params, args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=3e-3)


def _split(split: str, upsample: int) -> tuple[np.ndarray, np.ndarray]:
    # Imported here: scikit-learn takes about a second to import and rdu-compile needs no data.
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    x = np.kron(x, np.ones((upsample, upsample), np.float32))[:, None]  # nearest neighbour
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    cut = int(0.8 * len(x))
    keep = order[:cut] if split == "train" else order[cut:]
    return x[keep], y[keep]


def data(
    split: str, args: argparse.Namespace
) -> Iterator[tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]]:
    """Batches of ``((inputs...), (targets...))``; the training order depends on seed and epoch."""
    x, y = _split(split, args.upsample)
    order = np.arange(len(x))
    if split == "train":
        order = np.random.default_rng([args.seed, args.epoch]).permutation(len(x))
    b = args.batch_size
    for start in range(0, len(order) - b + 1, b):
        idx = order[start : start + b]
        yield (torch.from_numpy(x[idx]),), (torch.from_numpy(y[idx]),)
