"""Hugging Face ``LlamaForCausalLM`` built from a small config (2 layers, hidden 64; no download),
or loaded from a local ``save_pretrained`` folder (``--pretrained DIR``), trained with AdamW as a
character language model on the GPT example's sonnets. The library's defaults stay as they are:
rotary position embeddings (their ``inv_freq`` a non-persistent buffer), RMSNorm, the SiLU-gated
MLP, grouped-query attention (``--kv-heads``), the default attention implementation and mask.

``rdu-run --inference --prompt TEXT`` generates text greedily (or sampled at ``--temperature``)
through the inference PEF, one forward a character (``generate`` below).

Needs the ``transformers`` package (``pip install -e '.[hf]'``; ``make test`` installs it).
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

_GPT = Path(__file__).resolve().parents[1] / "gpt" / "model.py"


def _gpt_example():
    """The GPT example's module (its text, vocabulary, data windows and generation loop)."""
    spec = importlib.util.spec_from_file_location("rdu_example_gpt_text", _GPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pretrained", default=None, help="a local save_pretrained folder")
    parser.add_argument("--hidden-size", type=int, default=64, help="model width")
    parser.add_argument("--num-layers", type=int, default=2, help="decoder layers")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--kv-heads", type=int, default=2, help="key/value heads (grouped query)")
    parser.add_argument("--block-size", type=int, default=16, help="context length (characters)")
    parser.add_argument("--steps-per-epoch", type=int, default=20, help="training batches")
    parser.add_argument("--prompt", default="Shall I compare", help="--inference: the prompt")
    parser.add_argument("--max-new-tokens", type=int, default=40, help="characters to generate")
    parser.add_argument(
        "--temperature", type=float, default=0.0, help="sampling temperature (0: greedy)"
    )


class LogitsOnly(nn.Module):
    """The Hugging Face model, returning its logits tensor (the tools want tensors)."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=input_ids, use_cache=False).logits


def model(args: argparse.Namespace) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = len(_gpt_example().vocabulary())
    if args.pretrained:
        if not Path(args.pretrained, "config.json").is_file():
            raise FileNotFoundError(f"--pretrained {args.pretrained}: no save_pretrained folder")
        lm = LlamaForCausalLM.from_pretrained(args.pretrained, local_files_only=True)
        if lm.config.vocab_size < vocab:
            raise ValueError(
                f"{args.pretrained}: vocab_size {lm.config.vocab_size} is smaller than the "
                f"sonnets' {vocab} characters"
            )
        return LogitsOnly(lm)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=args.hidden_size,
        intermediate_size=2 * args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=64,
    )
    return LogitsOnly(LlamaForCausalLM(config))


def example_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, args.block_size, dtype=torch.int64),)


def example_targets(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, args.block_size, dtype=torch.int64),)


def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def optimizer(params, args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=2e-3, betas=(0.9, 0.99), weight_decay=0.01)


def data(split: str, args: argparse.Namespace) -> Iterator[tuple[tuple, tuple]]:
    """The GPT example's windows of the sonnets."""
    return _gpt_example().data(split, args)


def generate(
    forward: Callable[[tuple[torch.Tensor, ...]], tuple[np.ndarray, ...]],
    args: argparse.Namespace,
) -> str:
    """``args.prompt`` continued by ``args.max_new_tokens`` characters, one forward a character
    (the GPT example's loop: the last ``block_size`` characters at positions ``0..n-1``, the
    padding after them hidden by the causal mask; greedy at temperature 0)."""
    return _gpt_example().generate(forward, args)
