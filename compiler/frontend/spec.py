"""What the tools hand the compiler: the user's model, example batch, loss and optimizer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class ModelSpec:
    """A model to compile.

    ``loss_fn(outputs, *targets)`` returns a 0-d tensor (``outputs`` is what the module returns:
    a tensor or a tuple of tensors). ``loss_fn`` and ``optimizer`` are needed for training only.
    ``source_file`` is the user's model.py: op locations point into it. ``precision``:
    ``fp32``, or ``bf16-mixed`` (the model and its loss traced under
    ``torch.autocast(device_type="cpu", dtype=torch.bfloat16)``: the graph holds torch's casts).
    """

    name: str
    module: torch.nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    example_targets: tuple[torch.Tensor, ...]
    loss_fn: Callable[..., torch.Tensor] | None
    optimizer: torch.optim.Optimizer | None
    source_file: Path
    precision: str = "fp32"
