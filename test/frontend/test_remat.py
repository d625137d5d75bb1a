"""Rematerialisation: the backward recomputes cheap forward ops rather than loading them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from dataflow_interp import run_section
from torch import nn
from torch.nn import functional as F
from xdsl.dialects.builtin import ModuleOp, TensorType

from compiler.frontend import ModelSpec, build_dataflow
from dialects.dataflow import PointwiseOp, SectionOp

BATCH = 16


class GeluMlp(nn.Module):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 32)
        self.fc2 = nn.Linear(32, 4)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.gelu(self.fc1(x))))


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y)


def _build(dropout: float = 0.0) -> tuple[GeluMlp, dict[str, SectionOp]]:
    torch.manual_seed(0)
    model = GeluMlp(dropout)
    x, y = torch.randn(BATCH, 8), torch.randint(0, 4, (BATCH,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    spec = ModelSpec("gelu_mlp", model, (x,), (y,), _loss, opt, Path(__file__))
    module: ModuleOp = build_dataflow(spec, inference=False)
    return model, {op.sym_name.data: op for op in module.ops if isinstance(op, SectionOp)}


def _saved(section: SectionOp) -> dict[str, tuple[int, ...]]:
    """The activations a forward section stores, with their shapes."""
    out = {}
    stored = section.body.block.last_op
    assert stored is not None
    for name, role, value in zip(
        section.result_names, section.result_roles, stored.operands, strict=True
    ):
        if role.data == "activation":
            assert isinstance(value.type, TensorType)
            out[name.data] = tuple(value.type.get_shape())
    return out


def _op_names(section: SectionOp) -> set[str]:
    """Its ops' names, a pointwise op's with its kind (``dataflow.pointwise erf``)."""
    names = set()
    for op in section.body.walk():
        if isinstance(op, PointwiseOp):
            names.add(f"{op.name} {op.kind.data.value}")
        else:
            names.add(op.name)
    return names


def test_the_backward_recomputes_gelu_from_its_input() -> None:
    """Saving fc1's output and GELU's output costs two [16, 32] tensors through DRAM; the GELU's
    input alone is enough, and the backward redoes the GELU (pointwise) from it."""
    _, s = _build()
    saved = _saved(s["forward"])
    hidden = [name for name, shape in saved.items() if shape == (BATCH, 32)]
    assert hidden == ["saved.addmm"], saved  # fc1's output (the loss saves its own two)
    assert "dataflow.pointwise erf" in _op_names(s["backward"]), sorted(_op_names(s["backward"]))


def test_a_random_op_is_loaded_not_drawn_again() -> None:
    """Dropout's mask comes from random numbers (``native_dropout``, neither a view nor
    pointwise): the backward loads the mask rather than drawing it again."""
    _, s = _build(dropout=0.5)
    assert "dataflow.random" not in _op_names(s["backward"])
    assert "dataflow.random" in _op_names(s["forward"])


def test_the_recomputing_backward_matches_torch() -> None:
    model, s = _build()
    x = torch.randn(BATCH, 8)
    y = torch.randint(0, 4, (BATCH,))
    state: dict[str, np.ndarray] = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    state["input.0"], state["target.0"] = x.numpy(), y.numpy()
    state.update(run_section(s["forward"], state))
    state.update(run_section(s["backward"], state))
    loss = _loss(model(x), y)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None
        np.testing.assert_allclose(state[f"{name}.grad"], p.grad.numpy(), rtol=1e-5, atol=1e-6)
