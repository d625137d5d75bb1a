"""``torch.nn.TransformerEncoderLayer`` and ``torch.nn.MultiheadAttention`` inside a user model:
a token classifier on the same made-up task as ``examples/hf_bert`` (which of tokens 1, 2, 3 a
sequence holds most often)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

VOCAB = 20
CLASSES = 3


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--d-model", type=int, default=32, help="width")
    parser.add_argument("--seq-len", type=int, default=12, help="tokens a sequence")
    parser.add_argument("--steps-per-epoch", type=int, default=20, help="training batches")


class Classifier(nn.Module):
    def __init__(self, d_model: int, seq_len: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d_model)
        self.pos = nn.Parameter(torch.randn(seq_len, d_model) * 0.02)
        self.encoder = nn.TransformerEncoderLayer(
            d_model, nhead=4, dim_feedforward=2 * d_model, batch_first=True
        )
        self.attend = nn.MultiheadAttention(d_model, num_heads=4, batch_first=True)
        self.head = nn.Linear(d_model, CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.encoder(self.embed(tokens) + self.pos)
        y, _ = self.attend(x, x, x, need_weights=False)
        return self.head(y.mean(1))


def model(args: argparse.Namespace) -> nn.Module:
    return Classifier(args.d_model, args.seq_len)


def example_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, args.seq_len, dtype=torch.int64),)


def example_targets(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, dtype=torch.int64),)


def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


def optimizer(params, args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3)


def data(split: str, args: argparse.Namespace) -> Iterator[tuple[tuple, tuple]]:
    seed = [args.seed, args.epoch] if split == "train" else [1_000_003]
    rng = np.random.default_rng(seed)
    for _ in range(args.steps_per_epoch if split == "train" else 4):
        x = rng.integers(1, VOCAB, size=(args.batch_size, args.seq_len))
        counts = np.stack([(x == t).sum(1) for t in range(1, CLASSES + 1)], 1)
        yield (torch.from_numpy(x),), (torch.from_numpy(counts.argmax(1)),)
