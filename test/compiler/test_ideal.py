"""The ideal's FLOP count (``compiler.ideal.counted_flops``): FlopCounterMode run on fake tensors
counts what it counts on the real ones, and leaves the model alone."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from compiler.frontend import ModelSpec
from compiler.ideal import COUNTS_TORCH_LACKS, counted_flops
from tools.cli import model_namespace
from tools.model_file import load_model_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_spec(name: str, extra: list[str], *, inference: bool) -> ModelSpec:
    model_file = load_model_file(EXAMPLES / name / "model.py")
    shared = {"batch_size": 2, "seed": 0, "epoch": 0, "debug": False}
    args = model_namespace(model_file, extra, shared)
    torch.manual_seed(0)
    return model_file.spec(model_file.call("model", args), args, inference=inference)


def real_flops(spec: ModelSpec, *, inference: bool, mapping: dict | None = None) -> int:
    """FlopCounterMode on a deep copy of the model with its real tensors (the reference);
    ``mapping``: formulas of ours for ops it has none of."""
    module = copy.deepcopy(spec.module).train(not inference)
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with torch.random.fork_rng(), sdpa_kernel([SDPBackend.MATH]), counter:
        if inference:
            with torch.no_grad():
                module(*spec.example_inputs)
        else:
            assert spec.loss_fn is not None
            loss = spec.loss_fn(module(*spec.example_inputs), *spec.example_targets)
            loss.backward()
    return int(counter.get_total_flops())


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("mlp", []),
        ("lenet", []),  # convolutions (and their backward)
        ("resnet", ["--width", "4"]),  # batch norm: buffers a training forward updates
        ("gpt", ["--n-layer", "1"]),  # attention in math form, embeddings
        ("hf_gpt2", ["--dropout", "0.1"]),  # transformers' GPT-2, dropout on
        ("hf_llama", []),  # rotary embeddings (a non-persistent buffer)
    ],
)
@pytest.mark.parametrize("inference", [False, True])
def test_fake_tensors_count_the_flops_of_the_real_ones(
    name: str, extra: list[str], inference: bool
) -> None:
    spec = example_spec(name, extra, inference=inference)
    state = {k: v.clone() for k, v in spec.module.state_dict().items()}
    counted = counted_flops(spec, inference=inference)
    assert counted == real_flops(spec, inference=inference) > 0
    # The model is left alone: its tensors, their gradients, its mode.
    for key, value in spec.module.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(p.grad is None for p in spec.module.parameters())


class _GroupedExperts(torch.nn.Module):
    """A linear layer, then torch's grouped matmul in f32 (transformers' experts on the CPU),
    whose fake kernel wants bf16: the count falls back to real tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 8)
        self.experts = torch.nn.Parameter(torch.randn(2, 8, 4))  # rows of 16 bytes, as it wants

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offsets = torch.tensor([2, 5], dtype=torch.int32)
        return torch.nn.functional.grouped_mm(self.linear(x), self.experts, offs=offsets)


@pytest.mark.parametrize("inference", [False, True])
def test_an_op_fake_tensors_refuse_is_counted_on_real_ones(inference: bool) -> None:
    torch.manual_seed(0)
    spec = ModelSpec(
        name="experts",
        module=_GroupedExperts(),
        example_inputs=(torch.randn(5, 4),),
        example_targets=(torch.randn(5, 4),),
        loss_fn=lambda out, target: ((out - target) ** 2).mean(),
        optimizer=None,
        source_file=Path(__file__),
    )
    state = {k: v.clone() for k, v in spec.module.state_dict().items()}
    counted = counted_flops(spec, inference=inference)
    assert counted == real_flops(spec, inference=inference, mapping=COUNTS_TORCH_LACKS)
    for key, value in spec.module.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(p.grad is None for p in spec.module.parameters())
    # torch's own formulas count the linear layer only; ours the grouped product too: its
    # forward's 5 rows of 8 times 4 columns (and in training, both gradients: as many again
    # for each, 3 times the forward's in all)
    grouped = 2 * 5 * 8 * 4 * (1 if inference else 3)
    assert counted == real_flops(spec, inference=inference) + grouped


class _Latents(torch.nn.Module):
    """Perceiver's pattern: a learned array ``expand``-ed to the batch, then a product."""

    def __init__(self) -> None:
        super().__init__()
        self.latents = torch.nn.Parameter(torch.randn(3, 4))
        self.linear = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.latents.expand(x.shape[0], -1, -1)) + x.unsqueeze(1)


@pytest.mark.parametrize("inference", [False, True])
def test_a_view_of_a_parameter_is_counted(inference: bool) -> None:
    """In inference, under no_grad, a view of a parameter still asked for a gradient with no
    gradient function, and FlopCounterMode's module hooks failed on it (Perceiver)."""
    torch.manual_seed(0)
    spec = ModelSpec(
        name="latents",
        module=_Latents(),
        example_inputs=(torch.randn(2, 4),),
        example_targets=(torch.randn(2, 3, 4),),
        loss_fn=lambda out, target: ((out - target) ** 2).mean(),
        optimizer=None,
        source_file=Path(__file__),
    )
    assert counted_flops(spec, inference=inference) == 2 * 2 * 3 * 4 * 4 * (1 if inference else 3)
