"""int32 tensors, computed as int64: allowed where their values provably fit in int32.

The IR has one integer type, i64. torch's int32 arithmetic wraps around at 2**31 where int64's
does not, so an int32 value computed in int64 is the same number exactly when no int32 result on
the way leaves the int32 range. ``int_range`` bounds a node's values from the graph (bools,
constants, casts, sums and cumulative sums over known extents, interval arithmetic, absolute
values, clamps, and integers a float holds exactly: ``histc``'s counts); a node whose torch
dtype is int32 converts only if its bounds fit (``GraphBuilder`` checks), so the numbers are
torch's. RoBERTa's position ids are the case in point: ``(cumsum(ids != pad) * (ids !=
pad)).int()``, at most the sequence length; LongT5's local attention mask another:
``abs(arange(3 * block, dtype=int32) - centres) < block``.

int32 DRAM tensors (model inputs, parameters, buffers) are refused: their symbol would be i64.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch

INT32 = (-(2**31), 2**31 - 1)

_FLOAT32S = (torch.float32, torch.bfloat16)
"""Floats whose cast to int32 saturates as torch's (``aten._to_copy``'s converter)."""

Range = tuple[int, int] | None
"""Inclusive bounds of an integer (or bool) value; None: not known."""

_KEY = "rdu_int_range"
"""Where a node's bounds are kept (``node.meta``): each is worked out once."""

_SAME = {
    # casts and copies keep the values (a cast of a float is not bounded: see _range)
    "aten._to_copy.default",
    "aten.to.dtype",
    "aten.to.dtype_layout",
    "aten._to_dtype.default",
    "aten.type_as.default",
    "aten.clone.default",
    "aten.alias.default",
    "aten.detach.default",
    "aten.contiguous.default",
    "aten.lift_fresh_copy.default",
    # views and rearrangements
    "aten.view.default",
    "aten._unsafe_view.default",
    "aten.reshape.default",
    "aten.expand.default",
    "aten.unsqueeze.default",
    "aten.squeeze.dim",
    "aten.squeeze.dims",
    "aten.squeeze.default",
    "aten.permute.default",
    "aten.transpose.int",
    "aten.t.default",
    "aten.slice.Tensor",
    "aten.select.int",
    "aten.flatten.using_ints",
    "aten.unflatten.int",
    "aten.flip.default",
    "aten.repeat.default",
}


def fits_int32(node: torch.fx.Node) -> bool:
    """Whether every value of ``node`` provably lies in the int32 range."""
    r = int_range(node)
    return r is not None and INT32[0] <= r[0] and r[1] <= INT32[1]


def int_range(node: Any) -> Range:
    """Bounds of the values of an FX node or a Python number (None if unknown)."""
    if isinstance(node, bool):
        return (int(node), int(node))
    if isinstance(node, int):
        return (node, node)
    if not isinstance(node, torch.fx.Node):
        return None
    if _KEY not in node.meta:
        node.meta[_KEY] = _range(node)
    return node.meta[_KEY]


def _dtype(node: torch.fx.Node) -> torch.dtype | None:
    val = node.meta.get("val")
    return val.dtype if isinstance(val, torch.Tensor) else None


EXACT_INTEGERS = {
    torch.float64: 2**53,
    torch.float32: 2**24,
    torch.float16: 2**11,
    torch.bfloat16: 2**8,
}
"""The integers a float dtype holds exactly: those of magnitude up to this."""


def _range(node: torch.fx.Node) -> Range:
    dtype = _dtype(node)
    if dtype == torch.bool:
        return (0, 1)
    if node.op != "call_function":
        return None
    name = str(node.target)
    args = node.args
    if dtype is not None and dtype.is_floating_point:
        # integers cast to a float that holds them exactly (histc's counts: a sum of bools)
        source = args[0] if args else None
        if name not in _SAME or not isinstance(source, torch.fx.Node):
            return None
        r = int_range(source)  # None for a float that may hold any value
        most = EXACT_INTEGERS.get(dtype, 0)
        return r if r is not None and -most <= r[0] and r[1] <= most else None
    if name in _SAME:  # a float cast to an integer is bounded only if it holds integers
        r = int_range(args[0])
        source = args[0] if isinstance(args[0], torch.fx.Node) else None
        if dtype == torch.int32 and source is not None and _dtype(source) in _FLOAT32S:
            # within int32 whatever the float: the cast takes a value outside it to -2**31, as
            # torch's CPU kernel does (aten._to_copy's converter)
            return r if r is not None and INT32[0] <= r[0] and r[1] <= INT32[1] else INT32
        return r
    if name in ("aten.add.Tensor", "aten.add.Scalar", "aten.sub.Tensor", "aten.sub.Scalar"):
        a, b = int_range(args[0]), int_range(args[1])
        alpha = node.kwargs.get("alpha", 1)
        if a is None or b is None or not isinstance(alpha, int):
            return None
        b = _scale(b, alpha)
        return _add(a, b) if "add" in name else _add(a, _scale(b, -1))
    if name in ("aten.mul.Tensor", "aten.mul.Scalar"):
        a, b = int_range(args[0]), int_range(args[1])
        if a is None or b is None:
            return None
        products = [x * y for x in a for y in b]
        return (min(products), max(products))
    if name == "aten.neg.default":
        a = int_range(args[0])
        return None if a is None else _scale(a, -1)
    if name == "aten.abs.default":  # LongT5's local attention: |relative position| < block
        a = int_range(args[0])
        if a is None:
            return None
        return (max(a[0], -a[1], 0), max(-a[0], a[1]))
    if name in ("aten.maximum.default", "aten.minimum.default"):  # torch.max(a, b)
        a, b = int_range(args[0]), int_range(args[1])
        if a is None or b is None:
            return None
        pick = max if name == "aten.maximum.default" else min
        return (pick(a[0], b[0]), pick(a[1], b[1]))
    if name == "aten.cat.default":  # ProphetNet's relative positions, its two streams'
        parts = [int_range(t) for t in args[0]] if isinstance(args[0], list | tuple) else [None]
        if any(r is None for r in parts):
            return None
        known = cast(list[tuple[int, int]], parts)
        return (min(r[0] for r in known), max(r[1] for r in known))
    if name in ("aten.where.self", "aten.where.ScalarSelf", "aten.where.ScalarOther"):
        a, b = int_range(args[1]), int_range(args[2])
        return None if a is None or b is None else (min(a[0], b[0]), max(a[1], b[1]))
    if name in ("aten.clamp.default", "aten.clamp_min.default", "aten.clamp_max.default"):
        given = [*args[1:], None, None]
        low, high = (None, given[0]) if name == "aten.clamp_max.default" else given[:2]
        if not isinstance(low, int | None) or not isinstance(high, int | None):
            return None
        a = int_range(args[0]) or (-math.inf, math.inf)

        def clamped(v: float) -> float:  # torch's: min(max(v, low), high)
            v = v if low is None else max(v, low)
            return v if high is None else min(v, high)

        lo, hi = clamped(a[0]), clamped(a[1])
        return None if math.isinf(lo) or math.isinf(hi) else (int(lo), int(hi))
    if name == "aten.cumsum.default":
        source = args[0]
        assert isinstance(source, torch.fx.Node)
        shape, dim = source.meta["val"].shape, args[1]
        assert isinstance(dim, int), dim
        return _sum_of(int_range(source), int(shape[dim % max(len(shape), 1)]))
    if name in ("aten.sum.dim_IntList", "aten.sum.default"):
        source = args[0]
        assert isinstance(source, torch.fx.Node)
        shape = [int(d) for d in source.meta["val"].shape]
        dims = cast(list[int], args[1]) if len(args) > 1 and args[1] else range(len(shape))
        return _sum_of(int_range(source), math.prod(shape[d] for d in dims))
    if name in ("aten.full.default", "aten.scalar_tensor.default"):
        return int_range(args[1] if name == "aten.full.default" else args[0])
    if name in ("aten.zeros.default", "aten.zeros_like.default"):
        return (0, 0)
    if name in ("aten.ones.default", "aten.ones_like.default"):
        return (1, 1)
    if name.startswith("aten.arange."):
        numbers = [a for a in args if isinstance(a, int)]
        start, end = (0, numbers[0]) if len(numbers) == 1 else (numbers[0], numbers[1])
        return (min(start, end), max(start, end))
    return None


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return (a[0] + b[0], a[1] + b[1])


def _scale(a: tuple[int, int], k: int) -> tuple[int, int]:
    return (min(a[0] * k, a[1] * k), max(a[0] * k, a[1] * k))


def _sum_of(a: Range, n: int) -> Range:
    """Bounds of a sum of 1 to ``n`` terms each within ``a`` (a cumulative sum's partial sums)."""
    if a is None:
        return None
    if n == 0:
        return (0, 0)
    return (min(a[0], n * a[0]), max(a[1], n * a[1]))
