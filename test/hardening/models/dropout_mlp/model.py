"""The MLP example with dropout and AdamW: what a resumed run must reproduce bit for bit
(data order, the dropout masks' random stream, AdamW's moments and step count).

Data, loss and arguments come from ``examples/mlp/model.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import torch
from torch import nn

_spec = importlib.util.spec_from_file_location(
    "rdu_example_mlp", Path(__file__).resolve().parents[4] / "examples" / "mlp" / "model.py"
)
assert _spec is not None and _spec.loader is not None
_mlp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mlp)

add_args = _mlp.add_args
example_inputs = _mlp.example_inputs
example_targets = _mlp.example_targets
loss = _mlp.loss
data = _mlp.data


class DropoutMLP(nn.Module):
    def __init__(self, inputs: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(inputs, hidden)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(0.25)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


def model(args: argparse.Namespace) -> nn.Module:
    return DropoutMLP(64, args.hidden, args.classes)


def optimizer(params, args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-2, weight_decay=1e-2)
