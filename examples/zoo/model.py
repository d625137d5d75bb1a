"""A zoo of architectures nobody here wrote, built from small configs with the library defaults
left as they are (dropout on, the default attention implementation, non-persistent buffers).

    rdu-compile examples/zoo/model.py --zoo llama -b 2
    rdu-test    examples/zoo/model.py --zoo llama --pef out/zoo-llama/zoo-llama.pef

``--zoo NAME`` picks the model (``ZOO`` below lists them); causal LMs train on next-token
prediction of random tokens, classifiers on a made-up label, vision models on random images.
Needs ``transformers`` for all but the ``torch.nn`` entries.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

VOCAB = 32
CLASSES = 3
IMAGE = 16


@dataclass(frozen=True)
class Entry:
    """One architecture: how to build it and what it eats."""

    family: str  # what the README's table says
    task: str  # "lm" | "seq2seq" (tokens -> logits per token) | "classify" | "image" (-> class)
    build: Callable[[], nn.Module]
    image: int = IMAGE
    """Side of the images (vision models): MobileNetV2 downsamples 32x, and batch norm over the
    two values a channel of a 1x1 map leaves at batch 2 is degenerate (its gradient is rounding
    noise), so it gets 64x64."""

    @property
    def needs_transformers(self) -> bool:
        return not self.family.startswith("`torch.nn")


def _hf(config_name: str, model_name: str, **config: object) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import transformers

        cfg = getattr(transformers, config_name)(**config)
        return getattr(transformers, model_name)(cfg)

    return build


_LM = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
)
_ENCODER = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    num_labels=CLASSES,
)


class _TorchEncoder(nn.Module):
    """``torch.nn.TransformerEncoder`` over embedded tokens, classifying the first token."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 32)
        layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(32, CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens))[:, 0])


class _TorchDecoder(nn.Module):
    """``torch.nn.TransformerDecoderLayer`` with a causal mask, as a tiny language model."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 32)
        self.layer = nn.TransformerDecoderLayer(
            32, 4, dim_feedforward=64, batch_first=True, norm_first=True
        )
        self.head = nn.Linear(32, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        mask = nn.Transformer.generate_square_subsequent_mask(tokens.shape[1])
        return self.head(self.layer(x, x, tgt_mask=mask, tgt_is_causal=True))


ZOO: dict[str, Entry] = {
    "gpt2": Entry(
        "GPT-2 (`GPT2LMHeadModel`)",
        "lm",
        _hf(
            "GPT2Config",
            "GPT2LMHeadModel",
            vocab_size=VOCAB,
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_positions=64,
        ),
    ),
    "llama": Entry(
        "Llama (`LlamaForCausalLM`)",
        "lm",
        _hf("LlamaConfig", "LlamaForCausalLM", num_key_value_heads=2, **_LM),
    ),
    "mistral": Entry(
        "Mistral (`MistralForCausalLM`)",
        "lm",
        _hf("MistralConfig", "MistralForCausalLM", num_key_value_heads=2, **_LM),
    ),
    "mixtral": Entry(  # a mixture of 8 experts, 2 a token: transformers' defaults
        "Mixtral (`MixtralForCausalLM`)",
        "lm",
        _hf("MixtralConfig", "MixtralForCausalLM", num_key_value_heads=2, **_LM),
    ),
    "qwen2": Entry(
        "Qwen2 (`Qwen2ForCausalLM`)",
        "lm",
        _hf("Qwen2Config", "Qwen2ForCausalLM", num_key_value_heads=2, **_LM),
    ),
    "phi": Entry("Phi (`PhiForCausalLM`)", "lm", _hf("PhiConfig", "PhiForCausalLM", **_LM)),
    "bert": Entry(
        "BERT (`BertForSequenceClassification`)",
        "classify",
        _hf("BertConfig", "BertForSequenceClassification", **_ENCODER),
    ),
    "distilbert": Entry(
        "DistilBERT (`DistilBertForSequenceClassification`)",
        "classify",
        _hf(
            "DistilBertConfig",
            "DistilBertForSequenceClassification",
            vocab_size=VOCAB,
            dim=32,
            n_layers=2,
            n_heads=4,
            hidden_dim=64,
            max_position_embeddings=64,
            num_labels=CLASSES,
        ),
    ),
    "roberta": Entry(
        "RoBERTa (`RobertaForSequenceClassification`)",
        "classify",
        _hf("RobertaConfig", "RobertaForSequenceClassification", pad_token_id=1, **_ENCODER),
    ),
    "fnet": Entry(  # tokens mixed by a Fourier transform (fftn over tokens and features)
        "FNet (`FNetForSequenceClassification`)",
        "classify",
        _hf(
            "FNetConfig",
            "FNetForSequenceClassification",
            **{k: v for k, v in _ENCODER.items() if k != "num_attention_heads"},
        ),
    ),
    "t5": Entry(
        "T5 (`T5ForConditionalGeneration`)",
        "seq2seq",
        _hf(
            "T5Config",
            "T5ForConditionalGeneration",
            vocab_size=VOCAB,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            decoder_start_token_id=0,
        ),
    ),
    "vit": Entry(
        "ViT (`ViTForImageClassification`)",
        "image",
        _hf(
            "ViTConfig",
            "ViTForImageClassification",
            image_size=IMAGE,
            patch_size=4,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            num_labels=CLASSES,
        ),
    ),
    "resnet": Entry(
        "ResNet (`ResNetForImageClassification`)",
        "image",
        _hf(
            "ResNetConfig",
            "ResNetForImageClassification",
            embedding_size=8,
            hidden_sizes=[8, 16],
            depths=[1, 1],
            num_labels=CLASSES,
        ),
    ),
    "convnext": Entry(
        "ConvNeXt (`ConvNextForImageClassification`)",
        "image",
        _hf(
            "ConvNextConfig",
            "ConvNextForImageClassification",
            hidden_sizes=[8, 16],
            depths=[1, 1],
            num_stages=2,
            num_labels=CLASSES,
            image_size=IMAGE,
        ),
    ),
    "mobilenet": Entry(
        "MobileNetV2 (`MobileNetV2ForImageClassification`)",
        "image",
        _hf(
            "MobileNetV2Config",
            "MobileNetV2ForImageClassification",
            image_size=64,
            depth_multiplier=0.25,
            num_labels=CLASSES,
        ),
        image=64,
    ),
    "efficientnet": Entry(
        "EfficientNet (`EfficientNetForImageClassification`)",
        "image",
        _hf(
            "EfficientNetConfig",
            "EfficientNetForImageClassification",
            image_size=64,
            width_coefficient=0.1,
            depth_coefficient=0.1,
            hidden_dim=128,  # its last layer's channels at width 0.1 (the pooler's kernel)
            num_labels=CLASSES,
        ),
        image=64,
    ),
    "swin": Entry(
        "Swin (`SwinForImageClassification`)",
        "image",
        _hf(
            "SwinConfig",
            "SwinForImageClassification",
            image_size=IMAGE,
            patch_size=2,
            embed_dim=16,
            depths=[1, 1],
            num_heads=[2, 4],
            window_size=4,
            num_labels=CLASSES,
        ),
    ),
    "torch-encoder": Entry("`torch.nn.TransformerEncoder`", "classify", _TorchEncoder),
    "torch-decoder": Entry("`torch.nn.TransformerDecoderLayer`", "lm", _TorchDecoder),
}


TASKS = {
    "lm": "causal LM: logits per token, cross-entropy on the next token",
    "classify": "sequence classification",
    "image": "image classification",
    "seq2seq": "encoder-decoder: the decoder predicts the next token of the encoder's tokens",
}


def readme_table() -> str:
    """The README's table of the zoo (``test/e2e/test_zoo.py`` checks that the README has it)."""
    rows = ["| `--zoo` | architecture | task |", "|---|---|---|"]
    for name, entry in ZOO.items():
        task = TASKS[entry.task]
        if entry.task == "image":
            task += f" (3x{entry.image}x{entry.image})"
        rows.append(f"| `{name}` | {entry.family} | {task} |")
    return "\n".join(rows)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--zoo", choices=sorted(ZOO), default="llama", help="the architecture")
    parser.add_argument("--seq-len", type=int, default=8, help="tokens a sequence")
    parser.add_argument("--steps-per-epoch", type=int, default=4, help="training batches")


class TensorsOnly(nn.Module):
    """The model, returning its logits tensor (the tools want tensors)."""

    def __init__(self, inner: nn.Module, task: str) -> None:
        super().__init__()
        self.inner = inner
        self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.inner, _TorchEncoder | _TorchDecoder):
            return self.inner(x)
        if self.task == "image":
            return self.inner(pixel_values=x).logits
        if self.task == "seq2seq":  # T5: the decoder reads the same tokens
            return self.inner(input_ids=x, decoder_input_ids=x, use_cache=False).logits
        kwargs = {"use_cache": False} if self.task == "lm" else {}
        return self.inner(input_ids=x, **kwargs).logits


def model(args: argparse.Namespace) -> nn.Module:
    torch.manual_seed(args.seed)
    entry = ZOO[args.zoo]
    return TensorsOnly(entry.build(), entry.task)


def example_inputs(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    if ZOO[args.zoo].task == "image":
        side = ZOO[args.zoo].image
        return (torch.zeros(args.batch_size, 3, side, side),)
    return (torch.zeros(args.batch_size, args.seq_len, dtype=torch.int64),)


def example_targets(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    if ZOO[args.zoo].task in ("lm", "seq2seq"):
        return (torch.zeros(args.batch_size, args.seq_len, dtype=torch.int64),)
    return (torch.zeros(args.batch_size, dtype=torch.int64),)


def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def optimizer(params, args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3)


def data(split: str, args: argparse.Namespace) -> Iterator[tuple[tuple, tuple]]:
    """Random batches: an LM predicts the next token of a sequence counting up by a random step;
    a classifier finds which of three tokens is most frequent; an image model, the brightest
    channel."""
    rng = np.random.default_rng([args.seed, args.epoch] if split == "train" else [1_000_003])
    task = ZOO[args.zoo].task
    for _ in range(args.steps_per_epoch if split == "train" else 2):
        b, n = args.batch_size, args.seq_len
        if task == "image":
            side = ZOO[args.zoo].image
            x = rng.standard_normal((b, 3, side, side)).astype(np.float32)
            y = x.mean((2, 3)).argmax(1)
            yield (torch.from_numpy(x),), (torch.from_numpy(y),)
        elif task in ("lm", "seq2seq"):
            start = rng.integers(0, VOCAB, size=(b, 1))
            step = rng.integers(1, 4, size=(b, 1))
            x = (start + step * np.arange(n + 1)) % VOCAB
            yield (torch.from_numpy(x[:, :-1]),), (torch.from_numpy(x[:, 1:]),)
        else:
            x = rng.integers(4, VOCAB, size=(b, n))
            counts = np.stack([(x == t).sum(1) for t in range(4, 4 + CLASSES)], 1)
            yield (torch.from_numpy(x),), (torch.from_numpy(counts.argmax(1)),)
