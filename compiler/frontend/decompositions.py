"""Our decomposition table: the ATen ops torch rewrites into simpler ones before we convert.

Ops we convert directly (compiler/frontend/registry.py: linear, softmax, nll_loss, ...) stay fused;
the ones listed here are rewritten by torch's own decompositions into ops the table handles.
Extend ``DECOMPOSED`` when a model brings a composite op whose parts we already convert.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
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


def _topk(
    x: torch.Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``topk`` (a mixture of experts' router) as ``k`` rounds, each taking the largest (or
    smallest) value not taken yet, at its first index: values and indices in order, as
    torch's with ``sorted`` (without, torch leaves the order open). A value torch's own
    kernel ties with another may come at the other's index; a NaN is not ranked as torch
    ranks it (above every number)."""
    if x.dim() == 0:
        return x.clone(), torch.zeros((), dtype=torch.int64)
    dim = dim % x.dim()
    if k == 0:
        return x.narrow(dim, 0, 0), torch.zeros_like(x.narrow(dim, 0, 0), dtype=torch.int64)
    positions = torch.arange(x.shape[dim]).reshape([-1] + [1] * (x.dim() - dim - 1))
    taken = torch.zeros_like(x, dtype=torch.bool)
    skip = float("-inf") if largest else float("inf")
    if not x.is_floating_point():
        info = torch.iinfo(x.dtype)
        skip = info.min if largest else info.max
    values, indices = [], []
    for _ in range(k):
        left = torch.where(taken, skip, x)
        best = left.amax(dim, keepdim=True) if largest else left.amin(dim, keepdim=True)
        first = ((x == best) & ~taken).to(torch.int32).argmax(dim, keepdim=True)
        values.append(torch.gather(x, dim, first))
        indices.append(first)
        taken = taken | (positions == first)
    return torch.cat(values, dim), torch.cat(indices, dim)


def _sort(
    x: torch.Tensor, dim: int = -1, descending: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sort`` by ranks: an element's place is the number of elements that go before it
    (smaller, or larger when ``descending``) plus the equal ones at lower indices, so equal
    values keep their order (torch's ``stable``; without it torch leaves their order open).
    Every pair is compared: ``n * n`` a row (a mixture of experts' ``n`` token-expert pairs)."""
    if x.dim() == 0:
        return x.clone(), torch.zeros((), dtype=torch.int64)
    rows = x.movedim(dim, -1)
    n = rows.shape[-1]
    index = torch.arange(n)
    mine, other = rows.unsqueeze(-1), rows.unsqueeze(-2)  # [..., s, 1], [..., 1, t]
    ahead = other > mine if descending else other < mine
    rank = (ahead | ((other == mine) & (index < index.unsqueeze(-1)))).sum(-1)
    order = ((rank.unsqueeze(-1) == index) * index.unsqueeze(-1)).sum(-2)  # [..., place]
    return torch.gather(rows, -1, order).movedim(-1, dim), order.movedim(-1, dim)


def _sort_stable(
    x: torch.Tensor, *, stable: bool | None = None, dim: int = -1, descending: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sort(stable=...)``: ``_sort``, stable either way."""
    return _sort(x, dim, descending)


_NUMPY_FLOATS: dict[torch.dtype, Any] = {
    torch.float16: np.float16,
    torch.float32: np.float32,
    torch.float64: np.float64,
}


def _histc(x: torch.Tensor, bins: int = 100, min: float = 0, max: float = 0) -> torch.Tensor:
    """``histc``: the count of elements in each of ``bins`` equal bins over ``[min, max]``
    (the data's own range when they are equal, widened by 1 each way when that is one
    value), as torch's kernel places them: bin ``int((x - min) * bins / (max - min))``, the
    last bin holding ``max`` too, elements outside not counted. A mixture of experts counts
    its tokens per expert so."""
    flat = x.reshape(-1)
    if min == max:
        lo, hi = flat.amin(), flat.amax()
        same = lo == hi
        lo, hi = torch.where(same, lo - 1, lo), torch.where(same, hi + 1, hi)
        width: torch.Tensor | float = hi - lo
    else:  # the edges in the input's dtype, as the kernel takes them
        edges = _NUMPY_FLOATS.get(x.dtype)
        if edges is None:
            raise NotImplementedError(f"histc of {x.dtype} is not supported yet")
        lo, hi = (float(edges(v)) for v in (min, max))
        width = float(edges(hi) - edges(lo))
    place = ((flat - lo) * bins / width).to(torch.int64)
    place = torch.where(place == bins, bins - 1, place)
    inside = (flat >= lo) & (flat <= hi)
    hits = (place.unsqueeze(-1) == torch.arange(bins)) & inside.unsqueeze(-1)
    return hits.sum(0).to(x.dtype)


def _groups(offsets: torch.Tensor, rows: int) -> torch.Tensor:
    """Which group each of ``rows`` rows is in, one-hot (``[groups, rows, 1]``, 0 or 1):
    group ``g`` holds the rows from ``offsets[g - 1]`` (0 for the first) up to
    ``offsets[g]``; rows past the last offset are in none."""
    row = torch.arange(rows)
    group = (offsets.unsqueeze(0) <= row.unsqueeze(1)).sum(1)  # groups ended at or before
    member = group == torch.arange(offsets.shape[0]).unsqueeze(1)  # [groups, rows]
    return member.unsqueeze(-1)


def _grouped_mm(x: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """transformers' ``grouped_mm_fallback`` (a mixture of experts' experts): row ``s`` of
    ``x`` (``[rows, k]``, sorted by expert) times the weight of its group (``[groups, k,
    n]``, groups ending at ``offsets``), rows in no group 0. Computed densely: every row
    through every group's weight, each kept where it is the row's group (``groups`` times
    the multiply-adds of torch's loop over the groups, the same sums)."""
    member = _groups(offsets, x.shape[0]).to(x.dtype)
    return (torch.matmul(x.unsqueeze(0), weight) * member).sum(0)


def _grouped_mm_backward(
    x: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor, grad: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of ``_grouped_mm`` (transformers' ``grouped_mm_fallback_backward``):
    a row's input gradient through its group's weight, and each group's weight gradient
    from its own rows, densely as the forward."""
    member = _groups(offsets, x.shape[0]).to(x.dtype)
    grad_x = (torch.matmul(grad.unsqueeze(0), weight.transpose(1, 2)) * member).sum(0)
    grad_weight = torch.matmul((x.unsqueeze(0) * member).transpose(1, 2), grad.unsqueeze(0))
    return grad_x, grad_weight


def library_ops() -> dict[Any, Callable[..., Any]]:
    """Ours of the custom ops libraries register, when they are (transformers' grouped
    matmul of a mixture of experts' experts, registered when its ``integrations.moe`` is
    imported)."""
    table: dict[Any, Callable[..., Any]] = {}
    namespace = getattr(torch.ops, "transformers", None)
    for name, fn in (
        ("grouped_mm_fallback", _grouped_mm),
        ("grouped_mm_fallback_backward", _grouped_mm_backward),
    ):
        op = getattr(namespace, name, None) if namespace is not None else None
        if op is not None:
            table[op.default] = fn
    return table


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
    aten.topk.default: _topk,
    aten.sort.default: _sort,
    aten.sort.stable: _sort_stable,
    aten.histc.default: _histc,
}
"""Ours: ops torch's table has no decomposition of (weight norm's gradient, ``_trilinear``,
a mixture of experts' ``topk``, ``sort`` and ``histc``), and ``repeat``, whose decomposition in
torch's table strides its result."""


def decomposition_table() -> dict[Any, Callable[..., Any]]:
    """The table handed to the joint trace (training)."""
    return {
        **get_decompositions(DECOMPOSED),
        **PAD_BACKWARD,
        **MAX_POOL_BACKWARD,
        **OURS,
        **library_ops(),
    }


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
