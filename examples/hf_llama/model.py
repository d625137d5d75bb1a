"""Hugging Face ``LlamaForCausalLM`` built from a small config (2 layers, hidden 64; no download),
or loaded from a local ``save_pretrained`` folder (``--pretrained DIR``), trained with AdamW as a
character language model on the GPT example's sonnets. The library's defaults stay as they are:
rotary position embeddings (their ``inv_freq`` a non-persistent buffer), RMSNorm, the SiLU-gated
MLP, grouped-query attention (``--kv-heads``), the default attention implementation and mask.

``--size 0.5b`` is a published half-billion-parameter model of the Llama family instead:
Qwen2.5-0.5B's config (``Qwen2ForCausalLM``: 24 layers, hidden 896, 14 heads over 2 key/value
heads, intermediate 4864, vocabulary 151,936, tied embeddings, q/k/v biases, rope theta 1e6,
RMSNorm eps 1e-6; 494M parameters), written below from its published ``config.json`` (no
download), randomly initialised, in float32 (the published weights are bfloat16), trained with
plain SGD (no momentum: no optimizer state, so parameters and gradients are the whole 4 GB of
state). Its tokens are the sonnets' words hashed into the 151,936 ids (``word_tokens``), batch 1
x ``--block-size`` (128 in the benchmark). ``--num-layers``, ``--hidden-size``, ``--heads``,
``--kv-heads``, ``--intermediate-size`` and ``--vocab-size`` override the preset's figures (a
small model of the same architecture, for tests and for measuring how the cost grows).

``rdu-run --inference --prompt TEXT`` generates text greedily (or sampled at ``--temperature``)
through the inference PEF, one forward a character (``generate`` below).

Needs the ``transformers`` package (``pip install -e '.[hf]'``; ``make test`` installs it).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import zlib
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


QWEN25_05B = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-06,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
}
"""Qwen2.5-0.5B's published ``config.json`` (huggingface.co/Qwen/Qwen2.5-0.5B, model_type
``qwen2``), its architectural fields; sliding window off there too (``use_sliding_window``
false). Chosen over SmolLM2-360M and TinyLlama-1.1B: it is the one at about 0.5B parameters
(494M), and it adds to Llama's layer the q/k/v biases and tied embeddings the small Llama
example does not have."""

TINY = {"hidden_size": 64, "num_layers": 2, "heads": 4, "kv_heads": 2}


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pretrained", default=None, help="a local save_pretrained folder")
    parser.add_argument(
        "--size",
        choices=("tiny", "0.5b"),
        default="tiny",
        help="tiny: LlamaForCausalLM 2 x 64 on characters; 0.5b: Qwen2.5-0.5B's config on words",
    )
    parser.add_argument("--hidden-size", type=int, default=None, help="model width [64]")
    parser.add_argument("--num-layers", type=int, default=None, help="decoder layers [2]")
    parser.add_argument("--heads", type=int, default=None, help="attention heads [4]")
    parser.add_argument(
        "--kv-heads", type=int, default=None, help="key/value heads (grouped query) [2]"
    )
    parser.add_argument(
        "--intermediate-size", type=int, default=None, help="MLP width [2 x hidden; 0.5b: 4864]"
    )
    parser.add_argument(
        "--vocab-size", type=int, default=None, help="--size 0.5b: token ids [151936]"
    )
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


def _size(args: argparse.Namespace, name: str) -> int:
    """``args.<name>`` if given, else the tiny preset's figure."""
    value = getattr(args, name)
    return TINY[name] if value is None else value


def qwen_config(args: argparse.Namespace):
    """``--size 0.5b``'s ``Qwen2Config``: the published figures, with the overrides given."""
    from transformers import Qwen2Config

    figures = dict(QWEN25_05B)
    overrides = {
        "hidden_size": args.hidden_size,
        "num_hidden_layers": args.num_layers,
        "num_attention_heads": args.heads,
        "num_key_value_heads": args.kv_heads,
        "intermediate_size": args.intermediate_size,
        "vocab_size": args.vocab_size,
    }
    figures.update({k: v for k, v in overrides.items() if v is not None})
    if args.block_size > figures["max_position_embeddings"]:
        raise ValueError(f"--block-size {args.block_size} is longer than the model's positions")
    config = Qwen2Config(**figures)
    config._attn_implementation = "sdpa"  # attention in its math form when traced
    return config


def model(args: argparse.Namespace) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    if args.size == "0.5b":
        from transformers import Qwen2ForCausalLM

        if args.pretrained:
            raise ValueError("--pretrained with --size 0.5b: not supported yet")
        return LogitsOnly(Qwen2ForCausalLM(qwen_config(args)))
    if args.intermediate_size is not None or args.vocab_size is not None:
        raise ValueError("--intermediate-size and --vocab-size are --size 0.5b's")
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
    hidden = _size(args, "hidden_size")
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=_size(args, "num_layers"),
        num_attention_heads=_size(args, "heads"),
        num_key_value_heads=_size(args, "kv_heads"),
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
    if args.size == "0.5b":  # no momentum: no state beside the 2 GB of parameters
        return torch.optim.SGD(params, lr=1e-2)
    return torch.optim.AdamW(params, lr=2e-3, betas=(0.9, 0.99), weight_decay=0.01)


def word_tokens(vocab_size: int) -> np.ndarray:
    """The sonnets' words and punctuation, each hashed (CRC-32) to a token id below
    ``vocab_size``: a stream over the whole vocabulary of a real LLM's size, without a
    tokenizer to download. The same word is always the same id."""
    words = re.findall(r"\w+|[^\w\s]", _gpt_example().corpus())
    return np.array([zlib.crc32(w.encode()) % vocab_size for w in words], dtype=np.int64)


def data(split: str, args: argparse.Namespace) -> Iterator[tuple[tuple, tuple]]:
    """The GPT example's windows of the sonnets (``--size 0.5b``: of their hashed words, the
    first 90% training in random windows, the last 10% testing in consecutive ones)."""
    if args.size != "0.5b":
        return _gpt_example().data(split, args)
    return _gpt_example().windows(word_tokens(qwen_config(args).vocab_size), split, args)


def generate(
    forward: Callable[[tuple[torch.Tensor, ...]], tuple[np.ndarray, ...]],
    args: argparse.Namespace,
) -> str:
    """``args.prompt`` continued by ``args.max_new_tokens`` characters, one forward a character
    (the GPT example's loop: the last ``block_size`` characters at positions ``0..n-1``, the
    padding after them hidden by the causal mask; greedy at temperature 0)."""
    if args.size == "0.5b":
        raise ValueError("--inference --prompt with --size 0.5b: not supported yet (no tokenizer)")
    return _gpt_example().generate(forward, args)
