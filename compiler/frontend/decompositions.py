"""Our decomposition table: the ATen ops torch rewrites into simpler ones before we convert.

Ops we convert directly (compiler/frontend/registry.py: linear, softmax, nll_loss, ...) stay fused;
the ones listed here are rewritten by torch's own decompositions into ops the table handles.
Extend ``DECOMPOSED`` when a model brings a composite op whose parts we already convert.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch._decomp import get_decompositions

from compiler.frontend.registry import CONVERTERS

aten = torch.ops.aten

DECOMPOSED: list[Any] = [
    aten._native_batch_norm_legit_functional,
    aten._native_batch_norm_legit_no_training,
    aten._native_batch_norm_legit,
    aten.native_batch_norm,
    aten.native_batch_norm_backward,
    aten.native_layer_norm,
    aten.native_layer_norm_backward,
    aten.hardtanh,
    aten.hardtanh_backward,
    aten.leaky_relu,
    aten.leaky_relu_backward,
    aten.softplus,
    aten.softplus_backward,
    aten.elu,
    aten.elu_backward,
    aten.addcmul,
    aten.addcdiv,
    aten.lerp,
    aten.square,
    aten.rsub,
    aten.hardsigmoid,
    aten.hardswish,
    aten.mish,
    aten.smooth_l1_loss,
    aten.smooth_l1_loss_backward,
    aten.huber_loss_backward,
    aten.huber_loss,
    aten.binary_cross_entropy,
    aten.binary_cross_entropy_backward,
    aten.binary_cross_entropy_with_logits,
    aten.repeat,  # GPT-J's rotary sin/cos, BLOOM's ALiBi slopes
    aten.baddbmm,  # BLOOM's attention scores
]


def decomposition_table() -> dict[Any, Callable[..., Any]]:
    """The table handed to the joint trace (training)."""
    return dict(get_decompositions(DECOMPOSED))


def inference_table() -> Any:
    """The table for ``ExportedProgram.run_decompositions`` (inference).

    torch's default (core ATen) table, minus the ops we convert directly (they stay fused),
    plus ours: composite ops become the same core ops the training trace shows.
    """
    table = torch.export.default_decompositions()
    for op in list(table.keys()):
        if str(op) in CONVERTERS:
            table.pop(op)
    for op, fn in decomposition_table().items():
        table[op] = fn
    return table
