"""A GPT-style character language model on Shakespeare's sonnets (public domain, shipped here).

Token and position embeddings, ``--n-layer`` blocks of causal self-attention (LayerNorm, GELU MLP,
residuals), a final LayerNorm and a head tied to the token embedding; AdamW. ``rdu-run
--inference --prompt TEXT`` generates text: the ``generate`` hook calls the inference PEF once per
new character (see the README's model.py contract).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

TEXT = Path(__file__).resolve().parent / "data" / "sonnets.txt"


def add_args(parser: argparse.ArgumentParser) -> None:
    """This model's own arguments (shown by ``rdu-compile model.py --help``)."""
    parser.add_argument("--block-size", type=int, default=32, help="context length (characters)")
    parser.add_argument("--n-embd", type=int, default=48, help="embedding width")
    parser.add_argument("--n-head", type=int, default=4, help="attention heads")
    parser.add_argument("--n-layer", type=int, default=2, help="transformer blocks")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout probability")
    parser.add_argument("--steps-per-epoch", type=int, default=100, help="training batches")
    parser.add_argument("--prompt", default="Shall I compare thee", help="--inference: the prompt")
    parser.add_argument("--max-new-tokens", type=int, default=200, help="characters to generate")
    parser.add_argument(
        "--temperature", type=float, default=0.0, help="sampling temperature (0: greedy)"
    )


def corpus() -> str:
    """The training text."""
    return TEXT.read_text(encoding="utf-8")


def vocabulary() -> list[str]:
    """The characters of the text, sorted: token ``i`` is ``vocabulary()[i]``."""
    return sorted(set(corpus()))


def unigram_entropy() -> float:
    """Entropy (nats per character) of the text's character frequencies: the loss a model that
    ignores the context reaches at best."""
    counts = np.unique(np.frombuffer(corpus().encode("utf-32-le"), np.uint32), return_counts=True)
    p = counts[1] / counts[1].sum()
    return float(-(p * np.log(p)).sum())


class Linear(nn.Linear):
    """``nn.Linear`` initialised as GPT-2 is (weights normal with ``std``, biases zero) by its
    own ``reset_parameters``: each weight is drawn once, not drawn by torch's default init and
    then drawn again (at ``--n-embd 2048`` the second draw cost 0.45 s a model)."""

    def __init__(self, n_in: int, n_out: int, bias: bool = True, std: float = 0.02) -> None:
        self.std = std
        super().__init__(n_in, n_out, bias)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=self.std)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class Embedding(nn.Embedding):
    """``nn.Embedding`` initialised as GPT-2 is (normal, std 0.02)."""

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, proj_std: float) -> None:
        super().__init__()
        self.n_head = n_head
        self.c_attn = Linear(n_embd, 3 * n_embd, bias=False)
        self.c_proj = Linear(n_embd, n_embd, std=proj_std)
        self.dropout = dropout
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q = q.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        k = k.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        v = v.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        y = y.transpose(1, 2).reshape(b, t, c)
        return self.resid_drop(self.c_proj(y))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, proj_std: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, proj_std)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(
            Linear(n_embd, 4 * n_embd),
            nn.GELU(approximate="tanh"),
            Linear(4 * n_embd, n_embd, std=proj_std),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab: int, args: argparse.Namespace) -> None:
        super().__init__()
        c = args.n_embd
        proj_std = 0.02 / math.sqrt(2 * args.n_layer)  # GPT-2's scaled residual projections
        self.wte = Embedding(vocab, c)
        self.wpe = Embedding(args.block_size, c)
        self.drop = nn.Dropout(args.dropout)
        self.blocks = nn.ModuleList(
            Block(c, args.n_head, args.dropout, proj_std) for _ in range(args.n_layer)
        )
        self.ln_f = nn.LayerNorm(c)
        self.head = nn.Linear(c, vocab, bias=False)
        self.head.weight = self.wte.weight  # tied

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def model(args: argparse.Namespace) -> nn.Module:
    return GPT(len(vocabulary()), args)


def example_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, args.block_size, dtype=torch.int64),)


def example_targets(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(args.batch_size, args.block_size, dtype=torch.int64),)


def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def optimizer(params, args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=2e-3, betas=(0.9, 0.99), weight_decay=0.01)


def encode(text: str) -> np.ndarray:
    """Token ids of ``text`` (characters outside the vocabulary are refused)."""
    index = {ch: i for i, ch in enumerate(vocabulary())}
    unknown = sorted({ch for ch in text if ch not in index})
    if unknown:
        raise ValueError(f"characters not in the vocabulary: {''.join(unknown)!r}")
    return np.array([index[ch] for ch in text], dtype=np.int64)


def decode(tokens) -> str:
    chars = vocabulary()
    return "".join(chars[int(t)] for t in tokens)


def data(
    split: str, args: argparse.Namespace
) -> Iterator[tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]]:
    """Windows of ``block_size`` characters and the same shifted by one: the first 90% of the
    text trains (random windows, by seed and epoch), the last 10% tests (consecutive)."""
    return windows(encode(corpus()), split, args)


def windows(
    tokens: np.ndarray, split: str, args: argparse.Namespace
) -> Iterator[tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]]:
    """Windows of ``block_size`` tokens and the same shifted by one, of the first 90% of
    ``tokens`` (``split`` "train": random windows, by seed and epoch) or of the last 10%
    (consecutive)."""
    cut = int(0.9 * len(tokens))
    t, b = args.block_size, args.batch_size
    if split == "train":
        part = tokens[:cut]
        rng = np.random.default_rng([args.seed, args.epoch])
        starts = rng.integers(0, len(part) - t - 1, size=(args.steps_per_epoch, b))
    else:
        part = tokens[cut:]
        all_starts = np.arange(0, len(part) - t - 1, t)
        starts = all_starts[: len(all_starts) // b * b].reshape(-1, b)
    offsets = np.arange(t)
    for row in starts:
        x = part[row[:, None] + offsets]
        y = part[row[:, None] + offsets + 1]
        yield (torch.from_numpy(x),), (torch.from_numpy(y),)


def generate(
    forward: Callable[[tuple[torch.Tensor, ...]], tuple[np.ndarray, ...]],
    args: argparse.Namespace,
) -> str:
    """``args.prompt`` continued by ``args.max_new_tokens`` characters, one forward a character.

    The context is the last ``block_size`` characters, placed at positions ``0..n-1`` (causal
    attention: the padding after them does not change the logits at ``n-1``); greedy at
    temperature 0, else sampled (seeded by ``args.seed``).
    """
    tokens = list(encode(args.prompt))
    if not tokens:
        raise ValueError("--prompt is empty")
    rng = np.random.default_rng(args.seed)
    t = args.block_size
    for _ in range(args.max_new_tokens):
        context = tokens[-t:]
        window = np.zeros((args.batch_size, t), np.int64)
        window[:, : len(context)] = context
        logits = np.asarray(forward((torch.from_numpy(window),))[0])[0, len(context) - 1]
        if args.temperature <= 0:
            tokens.append(int(np.argmax(logits)))
        else:
            z = logits.astype(np.float64) / args.temperature
            p = np.exp(z - z.max())
            tokens.append(int(rng.choice(len(p), p=p / p.sum())))
    return decode(tokens)
