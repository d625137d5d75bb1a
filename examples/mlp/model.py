"""A 64-128-10 MLP classifying scikit-learn's bundled 8x8 digits (no download).

The model.py contract (see the README): module-level functions the RDU tools call.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn


def add_args(parser: argparse.ArgumentParser) -> None:
    """This model's own arguments (shown by ``rdu-compile model.py --help``)."""
    parser.add_argument("--hidden", type=int, default=128, help="hidden layer width")
    parser.add_argument("--classes", type=int, default=10, help="number of classes")


class MLP(nn.Module):
    def __init__(self, inputs: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(inputs, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def model(args: argparse.Namespace) -> nn.Module:
    return MLP(64, args.hidden, args.classes)


def example_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, 64),)


def example_targets(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, dtype=torch.int64),)


def loss(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs, target)


def optimizer(params, args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as ``sklearn.datasets.load_digits(return_X_y=True)`` gives them
    (1,797 rows of 64 pixels from 0 to 16, and their labels), read from the file scikit-learn
    ships without importing it: that import (scipy's with it) would take longer than the run."""
    package = importlib.util.find_spec("sklearn")
    assert package is not None and package.submodule_search_locations, "scikit-learn is missing"
    folder = Path(package.submodule_search_locations[0])
    table = np.loadtxt(folder / "datasets" / "data" / "digits.csv.gz", delimiter=",")
    return table[:, :-1], table[:, -1].astype(int)


def _split(split: str) -> tuple[np.ndarray, np.ndarray]:
    pixels, labels = _digits()
    x = (pixels / 16.0).astype(np.float32)
    y = labels.astype(np.int64)
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
