"""Hugging Face ``GPT2LMHeadModel`` built from a config (no download), or loaded from a local
``save_pretrained`` folder (``--pretrained DIR``), fine-tuned as a character language model on
the GPT example's sonnets.

``--size tiny`` (the default) is 2 layers at hidden 128 over the sonnets' characters;
``--size small`` is ``GPT2Config()`` as the library defines it: GPT-2 small, 12 layers, hidden
768, 12 heads, the 50,257-token vocabulary, 124M parameters (random init; the sonnets'
character ids are tokens of it). ``--n-layer N`` overrides the size's number of blocks (the
compile-time scaling rows). ``--dropout P`` sets the config's three dropout rates (default:
the config's own, 0.1).

Needs the ``transformers`` package (``pip install -e '.[hf]'``; ``make test`` installs it).
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from transformers import GPT2Config

_GPT = Path(__file__).resolve().parents[1] / "gpt" / "model.py"


def _gpt_example():
    """The GPT example's module (its text, vocabulary and data windows)."""
    spec = importlib.util.spec_from_file_location("rdu_example_gpt_text", _GPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pretrained", default=None, help="a local save_pretrained folder")
    parser.add_argument(
        "--size", choices=("tiny", "small"), default="tiny", help="tiny: 2 x 128; small: GPT-2"
    )
    parser.add_argument("--dropout", type=float, default=None, help="dropout rates (default 0.1)")
    parser.add_argument("--block-size", type=int, default=16, help="context length")
    parser.add_argument(
        "--n-layer", type=int, default=None, help="transformer blocks (default: the size's own)"
    )
    parser.add_argument("--steps-per-epoch", type=int, default=20, help="training batches")


class LogitsOnly(nn.Module):
    """The Hugging Face model, returning its logits tensor (the tools want tensors)."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=input_ids, use_cache=False).logits


def model(args: argparse.Namespace) -> nn.Module:
    from transformers import GPT2LMHeadModel

    if args.pretrained:
        lm = GPT2LMHeadModel.from_pretrained(args.pretrained)
    else:
        lm = GPT2LMHeadModel(config(args))
    return LogitsOnly(lm)


def config(args: argparse.Namespace) -> GPT2Config:
    """The ``GPT2Config`` of ``--size`` and ``--dropout``."""
    from transformers import GPT2Config

    if args.size == "small":
        config = GPT2Config()
    else:
        config = GPT2Config(
            vocab_size=len(_gpt_example().vocabulary()),
            n_positions=64,
            n_embd=128,
            n_layer=2,
            n_head=4,
            bos_token_id=0,
            eos_token_id=0,
        )
    if args.block_size > config.n_positions:
        raise ValueError(
            f"--block-size {args.block_size} is longer than the model's {config.n_positions} "
            "positions"
        )
    if args.n_layer is not None:
        if args.n_layer < 1:
            raise ValueError(f"--n-layer {args.n_layer}: at least 1")
        config.n_layer = args.n_layer
    if args.dropout is not None:
        config.resid_pdrop = config.embd_pdrop = config.attn_pdrop = args.dropout
    config._attn_implementation = "sdpa"  # attention in its math form when traced
    return config


def example_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, args.block_size, dtype=torch.int64),)


def example_targets(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, args.block_size, dtype=torch.int64),)


def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def optimizer(params, args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3)


def data(split: str, args: argparse.Namespace) -> Iterator[tuple[tuple, tuple]]:
    """The GPT example's windows of the sonnets."""
    return _gpt_example().data(split, args)
