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
    aten.native_group_norm,  # GroupNorm: PoolFormer, diffusion UNets
    aten.native_group_norm_backward,
    aten.hardswish_backward,  # MobileNetV3, LeViT
    aten.hardsigmoid_backward,
    aten.mish_backward,
    aten.celu,
    aten.glu,
    aten.glu_backward,
    aten._prelu_kernel,
    aten._prelu_kernel_backward,
    aten.log_sigmoid_forward,
    aten.log_sigmoid_backward,
    aten.pixel_shuffle,
    aten.pixel_unshuffle,
    aten.reflection_pad1d,
    aten.reflection_pad2d,
    aten.reflection_pad3d,
    aten.replication_pad1d,
    aten.replication_pad2d,
    aten.replication_pad3d,
    aten.im2col,
    aten.col2im,
    aten.upsample_nearest2d,
    aten.upsample_bilinear2d,
    aten.linalg_vector_norm,
    aten.adaptive_max_pool2d,
    aten.adaptive_max_pool3d,
    aten.baddbmm,  # BLOOM's attention scores
    aten.floor_divide,  # ``//`` of tensors: ``div(rounding_mode="floor")``
    aten._weight_norm_interface,  # weight norm (wav2vec2's positional convolution)
]


def _reflected(left: int, middle: int, right: int) -> torch.Tensor:
    """The input positions a reflection pad reads along one dim (as torch's decomposition)."""
    at = torch.arange(-left, middle + right)
    return middle - 1 - (middle - 1 - at.abs()).abs()


def _replicated(left: int, middle: int, right: int) -> torch.Tensor:
    """The input positions a replication pad reads along one dim (as torch's decomposition)."""
    return torch.clamp(torch.arange(-left, middle + right), 0, middle - 1)


def _pad_backward(
    positions: Callable[[int, int, int], torch.Tensor],
) -> Callable[[torch.Tensor, torch.Tensor, list[int]], torch.Tensor]:
    """The gradient of a reflection or replication pad: the forward reads the input at
    ``positions`` along each padded dim in turn, so each output element's gradient is added
    back at the position it was read from (``index_add``, a dim at a time). torch's own
    decomposition of the reflection pad's gradient masks nine areas instead, and has none for
    the replication pad's."""

    def backward(grad: torch.Tensor, x: torch.Tensor, padding: list[int]) -> torch.Tensor:
        dims = len(padding) // 2
        first = x.dim() - dims
        for i in reversed(range(dims)):
            left, right = padding[2 * (dims - 1 - i)], padding[2 * (dims - 1 - i) + 1]
            size = x.shape[first + i]
            shape = [*grad.shape]
            shape[first + i] = size
            grad = torch.index_add(
                grad.new_zeros(shape), first + i, positions(left, size, right), grad
            )
        return grad

    return backward


def _adaptive_max_pool_backward(
    spatial: int,
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The gradient of an adaptive max pool over ``spatial`` dims: each window's gradient
    added at its maximum (``indices``: flat positions in the input's spatial dims, as torch's
    forward returns them)."""

    def backward(grad: torch.Tensor, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        at = indices.flatten(-spatial)
        added = x.new_zeros(x.shape).flatten(-spatial).scatter_add(-1, at, grad.flatten(-spatial))
        return added.view(x.shape)

    return backward


def _weight_norm_backward(
    grad: torch.Tensor, v: torch.Tensor, g: torch.Tensor, norms: torch.Tensor, dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient of weight norm ``w = v * g / |v|`` (the norm over every dim but ``dim``;
    ``dim`` -1: over all, as torch's forward): ``grad_g = sum(grad * v) / |v|`` and
    ``grad_v = g / |v| * (grad - v * grad_g / |v|)``. torch's table decomposes the forward
    (``_weight_norm_interface``), not its gradient."""
    others = [d for d in range(v.dim()) if d != dim]
    grad_g = (grad * v).sum(others, keepdim=True) / norms
    grad_v = g / norms * (grad - v * (grad_g / norms))
    return grad_v, grad_g


def _trilinear(
    i1: torch.Tensor,
    i2: torch.Tensor,
    i3: torch.Tensor,
    expand1: list[int],
    expand2: list[int],
    expand3: list[int],
    sumdim: list[int],
    unroll_dim: int = 1,
) -> torch.Tensor:
    """``_trilinear`` (``nn.Bilinear``, and each of its gradients): each input given size-1
    dims at its ``expand`` positions, the three multiplied and summed over ``sumdim``, as
    torch's kernel (``unroll_dim`` only chooses its loop)."""
    factors = []
    for x, expand in ((i1, expand1), (i2, expand2), (i3, expand3)):
        for d in sorted(expand):
            x = x.unsqueeze(d)
        factors.append(x)
    product = factors[0] * factors[1] * factors[2]
    return product.sum(list(sumdim)) if sumdim else product


def _repeat(x: torch.Tensor, times: list[int]) -> torch.Tensor:
    """``Tensor.repeat`` (GPT-J's rotary sin/cos, BLOOM's ALiBi slopes, WavLM's relative
    position bias): each dim ``d`` of size ``n`` becomes ``(times[d], n)``, expanded, copied
    and merged. Contiguous, as torch's kernel returns it: torch's decomposition copies the
    expanded tensor in its input's stride order, so after a permute (WavLM's bias) the result
    is strided and a ``view`` of it fails to trace."""
    x = x.reshape([1] * (len(times) - x.dim()) + list(x.shape))
    pairs = [s for n in x.shape for s in (1, n)]
    tiled = [s for r, n in zip(times, x.shape, strict=True) for s in (r, n)]
    merged = [r * n for r, n in zip(times, x.shape, strict=True)]
    copied = x.reshape(pairs).expand(tiled).clone(memory_format=torch.contiguous_format)
    return copied.view(merged)


PAD_BACKWARD: dict[Any, Callable[..., Any]] = {
    **{op: _pad_backward(_reflected) for op in (
        aten.reflection_pad1d_backward.default,
        aten.reflection_pad2d_backward.default,
        aten.reflection_pad3d_backward.default,
    )},
    **{op: _pad_backward(_replicated) for op in (
        aten.replication_pad1d_backward.default,
        aten.replication_pad2d_backward.default,
        aten.replication_pad3d_backward.default,
    )},
}  # fmt: skip
"""Ours: the pads' gradients, which torch's table leaves to ops we do not convert."""

MAX_POOL_BACKWARD: dict[Any, Callable[..., Any]] = {
    aten.adaptive_max_pool2d_backward.default: _adaptive_max_pool_backward(2),
    aten.adaptive_max_pool3d_backward.default: _adaptive_max_pool_backward(3),
}
"""Ours: the adaptive max pools' gradients (a scatter-add), which torch's table has not."""


OURS: dict[Any, Callable[..., Any]] = {
    aten._weight_norm_interface_backward.default: _weight_norm_backward,
    aten._trilinear.default: _trilinear,
    aten.repeat.default: _repeat,
}
"""Ours: ops torch's table has no decomposition of (weight norm's gradient, ``_trilinear``),
and ``repeat``, whose decomposition in torch's table strides its result."""


def decomposition_table() -> dict[Any, Callable[..., Any]]:
    """The table handed to the joint trace (training)."""
    return {**get_decompositions(DECOMPOSED), **PAD_BACKWARD, **MAX_POOL_BACKWARD, **OURS}


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
