"""Tiny models, one a kind of module state, for test/e2e/test_module_state.py.

    rdu-compile test/e2e/models/state.py --kind frozen -b 4

``--kind``:

- ``non_persistent``: buffers registered with ``persistent=False`` (a float scale, a 0-d gain
  like Gemma's ``embed_scale``, a 0-d bfloat16 one in the float32 model like RecurrentGemma's
  ``normalizer``, and the integer positions an embedding reads), absent from ``state_dict()``,
  like BERT's ``token_type_ids``;
- ``frozen``: a layer with ``requires_grad=False`` (no gradient, never updated);
- ``tied``: a language-model head tied to the embedding (one tensor, two names);
- ``unused``: a parameter the forward never reads (torch gives it no gradient);
- ``updated``: buffers the forward updates in place in training (a running mean and an integer
  step counter), beyond batch norm.

Data: random batches from a fixed seed; SGD with momentum and weight decay, or AdamW with
``--optimizer adamw``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

FEATURES = 8
CLASSES = 4
VOCAB = 16
SEQ = 6
KINDS = ("non_persistent", "frozen", "tied", "unused", "updated")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=KINDS, default="non_persistent")
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    parser.add_argument("--scale", type=float, default=1.0, help="non_persistent: buffer scale")
    parser.add_argument(
        "--trainable-only", action="store_true", help="give the optimizer trainable parameters only"
    )


class NonPersistent(nn.Module):
    """Float (two 0-d, one of them bfloat16) and integer buffers, all ``persistent=False``."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.fc = nn.Linear(FEATURES, 16)
        self.position = nn.Embedding(FEATURES, 16)
        self.out = nn.Linear(16, CLASSES)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 16) * scale, persistent=False)
        self.register_buffer("positions", torch.arange(FEATURES).flip(0), persistent=False)
        self.register_buffer("gain", torch.tensor(2.0**0.5), persistent=False)
        normalizer = torch.tensor(16**0.5, dtype=torch.bfloat16)
        self.register_buffer("normalizer", normalizer, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc(x)) * self.scale
        h = h + self.position(self.positions).mean(0)
        return self.out(h * self.gain / self.normalizer.type(h.dtype))


class Frozen(nn.Module):
    """The first layer frozen (a pretrained feature extractor), the head trained."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Linear(FEATURES, 16)
        self.head = nn.Linear(16, CLASSES)
        self.features.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.features(x)))


class Tied(nn.Module):
    """A tiny language model whose output projection is its embedding (one tensor)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 12)
        self.mix = nn.Linear(12, 12)
        self.head = nn.Linear(12, VOCAB, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mix(self.embed(tokens))))


class Unused(nn.Module):
    """A layer kept for later (built, never called) beside the ones the forward runs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(FEATURES, 16)
        self.spare = nn.Linear(16, 16)
        self.out = nn.Linear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc(x)))


class Updated(nn.Module):
    """Centres its input on a running mean it updates in training, and counts its steps."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(FEATURES, 16)
        self.out = nn.Linear(16, CLASSES)
        self.register_buffer("running_mean", torch.zeros(FEATURES))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.running_mean.mul_(0.8).add_(0.2 * x.mean(0))
                self.steps.add_(1)
        return self.out(torch.relu(self.fc(x - self.running_mean)))


def model(args: argparse.Namespace) -> nn.Module:
    torch.manual_seed(args.seed)
    if args.kind == "non_persistent":
        return NonPersistent(args.scale)
    return {"frozen": Frozen, "tied": Tied, "unused": Unused, "updated": Updated}[args.kind]()


def example_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    if args.kind == "tied":
        return (torch.zeros(args.batch_size, SEQ, dtype=torch.int64),)
    return (torch.zeros(args.batch_size, FEATURES),)


def example_targets(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    if args.kind == "tied":
        return (torch.zeros(args.batch_size, SEQ, dtype=torch.int64),)
    return (torch.zeros(args.batch_size, dtype=torch.int64),)


def loss(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), target.reshape(-1))


def optimizer(params, args: argparse.Namespace) -> torch.optim.Optimizer:
    if args.trainable_only:  # as fine-tuning scripts do with frozen layers
        params = [p for p in params if p.requires_grad]
    if args.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=0.01, weight_decay=0.1)
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01)


def data(
    split: str, args: argparse.Namespace
) -> Iterator[tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]]:
    """Four training batches an epoch (two test batches), drawn from the seed and epoch."""
    count = 4 if split == "train" else 2
    rng = np.random.default_rng([args.seed, args.epoch, split == "train"])
    b = args.batch_size
    for _ in range(count):
        if args.kind == "tied":
            tokens = rng.integers(0, VOCAB, (b, SEQ + 1))
            yield (torch.from_numpy(tokens[:, :-1]),), (torch.from_numpy(tokens[:, 1:]),)
        else:
            x = rng.normal(1.0, 1.0, (b, FEATURES)).astype(np.float32)
            y = rng.integers(0, CLASSES, b)
            yield (torch.from_numpy(x),), (torch.from_numpy(y),)
