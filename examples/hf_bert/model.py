"""Hugging Face ``BertForSequenceClassification`` built from a config (2 layers, hidden 128; no
download), or loaded from a local ``save_pretrained`` folder (``--pretrained DIR``).

The task (made up, so that nothing is downloaded): which of three tokens (1, 2, 3) a random
sequence of tokens 1..19 holds most often. Needs ``transformers`` (``pip install -e '.[hf]'``).
"""

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
    parser.add_argument("--pretrained", default=None, help="a local save_pretrained folder")
    parser.add_argument("--seq-len", type=int, default=12, help="tokens a sequence")
    parser.add_argument("--steps-per-epoch", type=int, default=20, help="training batches")


class LogitsOnly(nn.Module):
    """The Hugging Face model, returning its logits tensor (the tools want tensors)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # Token types and positions given, so that BERT's non-persistent buffers of them (not in
        # the state_dict, hence not in checkpoints) are not read.
        batch, length = input_ids.shape
        positions = torch.arange(length, device=input_ids.device).expand(batch, length)
        return self.classifier(
            input_ids=input_ids,
            token_type_ids=torch.zeros_like(input_ids),
            position_ids=positions,
        ).logits


def model(args: argparse.Namespace) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    if args.pretrained:
        classifier = BertForSequenceClassification.from_pretrained(args.pretrained)
    else:
        config = BertConfig(
            vocab_size=VOCAB,
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=256,
            max_position_embeddings=64,
            num_labels=CLASSES,
        )
        config._attn_implementation = "sdpa"  # attention in its math form when traced
        classifier = BertForSequenceClassification(config)
    return LogitsOnly(classifier)


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
        y = counts.argmax(1)
        yield (torch.from_numpy(x),), (torch.from_numpy(y),)
