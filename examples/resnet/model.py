"""A small ResNet classifying scikit-learn's bundled 8x8 digits (no download), as 1x8x8 images.

stem (conv 3x3, BatchNorm, ReLU) -> BasicBlock(w -> w) -> BasicBlock(w -> 2w, stride 2, with a
1x1-conv + BatchNorm shortcut) -> adaptive average pooling -> linear. BatchNorm trains on batch
statistics; its running mean and variance (and batch counter) are outputs of the forward section,
written back to DRAM and saved in checkpoints; inference uses them.
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
    parser.add_argument("--width", type=int, default=16, help="channels of the stem")
    parser.add_argument("--classes", type=int, default=10, help="number of classes")


class BasicBlock(nn.Module):
    """Two 3x3 conv + BatchNorm layers and a shortcut (a 1x1 conv + BatchNorm when the shape
    changes), as in torchvision's ResNet-18."""

    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False), nn.BatchNorm2d(outputs)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, width: int, classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.layer1 = BasicBlock(width, width, stride=1)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def model(args: argparse.Namespace) -> nn.Module:
    return ResNet(args.width, args.classes)


def example_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, 1, 8, 8),)


def example_targets(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, dtype=torch.int64),)


def loss(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs, target)


def optimizer(params, args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4)


def _split(split: str) -> tuple[np.ndarray, np.ndarray]:
    # Imported here: scikit-learn takes about a second to import and rdu-compile needs no data.
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    cut = int(0.8 * len(x))
    keep = order[:cut] if split == "train" else order[cut:]
    return x[keep], y[keep]


def data(
    split: str, args: argparse.Namespace
) -> Iterator[tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]]:
    """Batches of ``((inputs...), (targets...))``; the training order depends on seed and epoch."""
    x, y = _split(split)
    order = np.arange(len(x))
    if split == "train":
        order = np.random.default_rng([args.seed, args.epoch]).permutation(len(x))
    b = args.batch_size
    for start in range(0, len(order) - b + 1, b):
        idx = order[start : start + b]
        yield (torch.from_numpy(x[idx]),), (torch.from_numpy(y[idx]),)
