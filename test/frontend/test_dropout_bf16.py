"""A dropout of a bf16 tensor (``--precision bf16-mixed``) is traced as eager torch computes it
on the CPU: scaled by ``1 / (1 - p)`` rounded to bf16, forward and backward
(``compiler.frontend.trace._dropout_as_eager``); a float32 dropout stays as traced."""

from __future__ import annotations

import operator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from compiler.frontend import ModelSpec
from compiler.frontend.trace import trace_training

aten = torch.ops.aten
BF16_SCALE = 1.109375  # 1 / 0.9 = 1.1111 rounded to bf16 (8 significant bits)


def _dropouts(precision: str) -> tuple[list[torch.fx.Node], list[torch.fx.Node]]:
    """The traced step of Linear -> Dropout(0.1): its forward and backward dropout nodes
    (``native_dropout_backward`` and ``getitem`` of ``native_dropout``)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.1))

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out.float(), y)

    x, y = torch.randn(4, 8), torch.randn(4, 8)
    spec = ModelSpec("net", model, (x,), (y,), loss, None, Path(__file__), precision=precision)
    graph = trace_training(spec).graph
    forward, backward = [], []
    for node in graph.nodes:
        dropout = node.target == aten.native_dropout_backward.default or (
            node.target is operator.getitem
            and node.args[0].target == aten.native_dropout.default  # type: ignore[union-attr]
            and node.args[1] == 0
        )
        if dropout:
            is_backward = node.meta.get("partitioner_tag") == "is_backward"
            (backward if is_backward else forward).append(node)
    return forward, backward


def test_a_bf16_dropout_scales_by_the_bf16_rounded_scale_forward_and_backward() -> None:
    forward, backward = _dropouts("bf16-mixed")
    assert [n.target for n in forward] == [aten.native_dropout_backward.default]
    assert forward[0].args[2] == BF16_SCALE and forward[0].meta["val"].dtype == torch.bfloat16
    assert [n.args[2] for n in backward] == [BF16_SCALE]
    assert backward[0].args[1] is forward[0].args[1]  # the same mask


def test_a_float32_dropout_stays_as_traced() -> None:
    forward, backward = _dropouts("fp32")
    assert [n.target for n in forward] == [operator.getitem]
    assert [n.args[2] for n in backward] == [pytest.approx(1 / 0.9)]


def test_the_rewritten_op_is_eager_cpu_dropout() -> None:
    """What the forward's node computes equals eager ``F.dropout``'s ``x * noise`` with
    ``noise = bernoulli_(1 - p).div_(1 - p)`` in bf16 (ATen's ``_dropout_impl`` on the CPU),
    and differs from ``native_dropout``'s float32 scale in many elements."""
    torch.manual_seed(0)
    x = torch.randn(4096).bfloat16()
    keep = torch.rand(4096) >= 0.1
    noise = keep.to(torch.bfloat16).div_(0.9)
    assert noise.max().item() == BF16_SCALE
    eager = x * noise
    assert torch.equal(aten.native_dropout_backward(x, keep, BF16_SCALE), eager)
    traced = aten.native_dropout_backward(x, keep, 1 / 0.9)
    assert (traced != eager).float().mean() > 0.1
