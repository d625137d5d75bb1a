"""Complex numbers as pairs of reals: a rewrite of the traced graph before it is converted.

The IR has no complex type. A model that rotates with complex numbers (DeepSeek-V2's and Llama
4's rotary embeddings: ``view_as_complex`` of the query's pairs, times ``polar(1, angle)``,
``view_as_real``) computes nothing a real graph cannot: ``as_pairs`` rewrites every complex
value of the traced graph (forward and backward) as a real tensor with a last dim of 2, real
part then imaginary part, as ``view_as_real`` lays it out:

- ``view_as_complex(x)`` and ``view_as_real(z)`` are the pairs themselves;
- ``polar(r, a)`` is ``stack([r * cos(a), r * sin(a)], -1)``;
- ``mul`` of two complex values is ``(ac - bd, ad + bc)``; of a complex value and a real one
  (a tensor, unsqueezed to the pair dim, or a number), each part times it;
- ``_conj(z)`` (their gradients) is ``stack([re, -im], -1)``;
- ``clone``, ``neg``, and ``add`` and ``sub`` of two complex values are the same op on the
  pairs; an op of dims (``unsqueeze``, ``squeeze``, ``select``, ``slice``, ``sum``,
  ``permute``) takes a negative dim past the pair dim, one of a shape (``view``, ``reshape``,
  ``expand``) the shape with the pair dim last;
- an export's check of a complex value's dtype (``_assert_tensor_metadata``) goes;
- a real tensor made complex (``_to_copy``) is the pairs ``(x, 0)``; a gradient's complex
  zeros, its ``slice_scatter`` and ``copy`` into them (an ``rfft``'s) are the same on the pairs;
- the Fourier transforms (``_fft_c2c``, ``_fft_r2c``, ``_fft_c2r``: ``fft``, ``fftn``,
  ``rfft``, ``irfft``...) are matrix products along each transformed dim with ``cos`` and
  ``sin`` of ``2 pi (jk mod n) / n`` (``_dft``, built from ``arange``: the angle is reduced in
  integers before it is rounded), ``n^2`` multiply-adds a row where torch's kernel does
  ``n log n``; FNet's ``fftn(x).real`` becomes::

      re' = mm(re, cos) + mm(im, sin),  im' = mm(im, cos) - mm(re, sin)   (each dim in turn)

Each new node keeps the metadata of the node it stands for (where it comes from in the model,
so errors name the model's line) with its own value (``val``: the op run on the fake values).
A complex value any other op reads is left as it is: its op is then refused in one line, as
any op the frontend does not convert (``dtype torch.complex64``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch._subclasses.fake_tensor import FakeTensor
from torch.fx import Graph, Node
from torch.fx.node import map_aggregate

aten = torch.ops.aten

_OWN_META = ("val", "tensor_meta", "rdu_int_range")
"""A node's metadata of its own value, which a new node does not take over."""


def _is_complex(value: Any) -> bool:
    val = value.meta.get("val") if isinstance(value, Node) else None
    return isinstance(val, torch.Tensor) and val.is_complex()


class _Rewriter:
    """Emits the pairs of one complex node before it, with its metadata."""

    def __init__(self, graph: Graph, node: Node, pairs: dict[Node, Node]) -> None:
        self.graph, self.node, self.pairs = graph, node, pairs

    def arg(self, value: Any) -> Any:
        """An argument with complex nodes as their pairs."""
        return self.pairs.get(value, value) if isinstance(value, Node) else value

    def emit(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> Node:
        """A call of ``target`` on ``args`` before the node, its value run on the fake values
        (in the node's fake mode when no argument has one: an ``arange``)."""
        with self.graph.inserting_before(self.node):
            new = self.graph.call_function(target, tuple(args), kwargs)
        new.meta = {k: v for k, v in self.node.meta.items() if k not in _OWN_META}
        vals = map_aggregate(args, lambda a: a.meta["val"] if isinstance(a, Node) else a)
        leaves = [*pytree.tree_leaves(vals), self.node.meta.get("val")]
        modes = [v.fake_mode for v in leaves if isinstance(v, FakeTensor)]
        with modes[0] if modes else contextlib.nullcontext():
            new.meta["val"] = target(*vals, **kwargs)
        return new

    def part(self, pair: Node, k: int) -> Node:
        return self.emit(aten.select.int, pair, -1, k)

    def pair(self, real: Node, imag: Node) -> Node:
        return self.emit(aten.stack.default, [real, imag], -1)


def _mul(r: _Rewriter, a: Any, b: Any) -> Node:
    if _is_complex(a) and _is_complex(b):
        pa, pb = r.arg(a), r.arg(b)
        ar, ai, br, bi = r.part(pa, 0), r.part(pa, 1), r.part(pb, 0), r.part(pb, 1)
        times = aten.mul.Tensor
        real = r.emit(aten.sub.Tensor, r.emit(times, ar, br), r.emit(times, ai, bi))
        imag = r.emit(aten.add.Tensor, r.emit(times, ar, bi), r.emit(times, ai, br))
        return r.pair(real, imag)
    z, x = (a, b) if _is_complex(a) else (b, a)
    if isinstance(x, Node):  # a real tensor: the same factor for both parts
        x = r.emit(aten.unsqueeze.default, x, -1)
    return r.emit(aten.mul.Tensor, r.arg(z), x)


def _rewrite(r: _Rewriter) -> Node | None:
    """The pairs of ``r.node``, or None when its op is not rewritten."""
    args: list[Any] = list(r.node.args)
    target: Any = r.node.target
    if target == aten._to_copy.default and set(r.node.kwargs) <= _TO_COPY_KEYS:
        return _to_complex(r, args[0])
    if target in _FFTS and not r.node.kwargs and len(args) == 4:
        return _FFTS[target](r, *args)
    if target in _ZEROS and _is_complex(r.node) and set(r.node.kwargs) <= _TO_COPY_KEYS | _PIN:
        shape = [*r.node.meta["val"].shape, 2]  # a gradient's zeros (an rfft's)
        return r.emit(aten.zeros.default, shape, dtype=_part_dtype(r.node))
    if target == aten.copy.default and not r.node.kwargs and all(_is_complex(a) for a in args):
        return r.emit(target, r.arg(args[0]), r.arg(args[1]))  # a slice's new value
    if target == aten.slice_scatter.default and not r.node.kwargs and len(args) >= 2:
        if all(_is_complex(a) for a in args[:2]):  # into a gradient's zeros (an rfft's)
            dim = _before_pair(args[2]) if len(args) > 2 else 0
            return r.emit(target, r.arg(args[0]), r.arg(args[1]), dim, *args[3:])
    if r.node.kwargs and target != aten.clone.default:
        return None  # a keyword (add's alpha, sum's dtype) not carried over: left complex
    if any(isinstance(a, complex) for a in pytree.tree_leaves(args)):
        return None  # a complex number (times 1j): left complex
    if target == aten.view_as_complex.default:
        return r.emit(aten.clone.default, args[0])
    if target == aten.view_as_real.default:
        return r.emit(aten.clone.default, r.arg(args[0]))
    if target == aten.polar.default:
        radius, angle = args[0], args[1]
        real = r.emit(aten.mul.Tensor, radius, r.emit(aten.cos.default, angle))
        imag = r.emit(aten.mul.Tensor, radius, r.emit(aten.sin.default, angle))
        return r.pair(real, imag)
    if target in (aten.mul.Tensor, aten.mul.Scalar) and len(args) == 2:
        return _mul(r, args[0], args[1])
    if target == aten._conj.default:
        pair = r.arg(args[0])
        return r.pair(r.part(pair, 0), r.emit(aten.neg.default, r.part(pair, 1)))
    if target == aten.clone.default and len(args) == 1:
        return r.emit(aten.clone.default, r.arg(args[0]))
    if target in _DIM_OPS and len(args) >= 2 and isinstance(args[1], int):
        return r.emit(target, r.arg(args[0]), _before_pair(args[1]), *args[2:])
    dims_given: Any = args[1] if len(args) >= 2 else None
    if target == aten.sum.dim_IntList and dims_given is not None:
        dims = [_before_pair(int(d)) for d in dims_given]
        return r.emit(target, r.arg(args[0]), dims, *args[2:])
    if target in _SHAPE_OPS:
        return r.emit(target, r.arg(args[0]), [*args[1], 2])
    if target == aten.permute.default:
        rank = len(args[1])
        return r.emit(target, r.arg(args[0]), [int(d) % rank for d in args[1]] + [rank])
    if target in (aten.add.Tensor, aten.sub.Tensor) and len(args) == 2:
        if all(_is_complex(a) for a in args):  # a real term would add to the real part alone
            return r.emit(target, r.arg(args[0]), r.arg(args[1]))
    if target == aten.neg.default:
        return r.emit(target, r.arg(args[0]))
    return None


_TO_COPY_KEYS = {"dtype", "layout", "device"}
"""The keywords of a ``_to_copy`` to a complex dtype (``x.to(torch.complex64)``)."""

_ZEROS = (aten.new_zeros.default, aten.zeros.default, aten.zeros_like.default)
_PIN = {"pin_memory"}
"""A complex zeros' keywords besides ``_TO_COPY_KEYS``."""

_PART_DTYPES = {torch.complex64: torch.float32, torch.complex128: torch.float64}


def _part_dtype(value: Node) -> torch.dtype:
    """The dtype of the parts of a complex value, or a real value's own."""
    dtype: torch.dtype = value.meta["val"].dtype
    return _PART_DTYPES.get(dtype, dtype)


def _to_complex(r: _Rewriter, x: Any) -> Node | None:
    """A real tensor made complex: its pairs, the imaginary part 0; a complex one: itself."""
    if not isinstance(x, Node) or not _is_complex(r.node):
        return None  # to a real dtype: left as it is
    if _is_complex(x):
        return r.emit(aten.clone.default, r.arg(x))
    return r.pair(x, r.emit(aten.full_like.default, x, 0.0))


def _dft(r: _Rewriter, period: int, rows: int, cols: int) -> tuple[Node, Node]:
    """``cos`` and ``sin`` of ``2 pi (i j mod period) / period`` for ``i < rows``, ``j < cols``:
    the discrete Fourier transform's matrices, their angles reduced to one turn in integers
    (before they are rounded to the parts' dtype), so that they are as exact as torch's."""
    i = r.emit(aten.arange.default, rows, dtype=torch.int64)
    j = r.emit(aten.arange.default, cols, dtype=torch.int64)
    ij = r.emit(aten.mul.Tensor, r.emit(aten.unsqueeze.default, i, 1), j)
    turns = r.emit(aten.remainder.Scalar, ij, period)
    real = r.emit(aten._to_copy.default, turns, dtype=_part_dtype(r.node))
    angle = r.emit(aten.mul.Tensor, real, 2 * math.pi / period)
    return r.emit(aten.cos.default, angle), r.emit(aten.sin.default, angle)


def _along(r: _Rewriter, x: Node, dim: int, matrix: Node) -> Node:
    """``x`` times ``matrix`` ([n, m]) along its ``dim`` (of n): the result's ``dim`` has m."""
    shape = list(x.meta["val"].shape)
    rank = len(shape)
    order = [d for d in range(rank) if d != dim] + [dim]
    rest = [shape[d] for d in order[:-1]]
    moved = r.emit(aten.permute.default, x, order)
    flat = r.emit(aten.reshape.default, moved, [math.prod(rest), shape[dim]])
    product = r.emit(aten.mm.default, flat, matrix)
    out = r.emit(aten.reshape.default, product, [*rest, matrix.meta["val"].shape[1]])
    return r.emit(aten.permute.default, out, [order.index(d) for d in range(rank)])


def _combine(r: _Rewriter, a: Node, b: Node, sign: int) -> Node:
    """``a + b`` (``sign`` 1) or ``a - b`` (-1)."""
    return r.emit(aten.add.Tensor if sign > 0 else aten.sub.Tensor, a, b)


def _c2c_along(r: _Rewriter, re: Node, im: Node, dim: int, forward: bool) -> tuple[Node, Node]:
    """The transform of the pairs ``(re, im)`` along ``dim``: times ``exp(-+2 pi i jk / n)``,
    ``cos`` and ``sin`` matrices being symmetric."""
    n = re.meta["val"].shape[dim]
    cos, sin = _dft(r, n, n, n)
    sign = 1 if forward else -1
    rc, rs = _along(r, re, dim, cos), _along(r, re, dim, sin)
    ic, is_ = _along(r, im, dim, cos), _along(r, im, dim, sin)
    return _combine(r, rc, is_, sign), _combine(r, ic, rs, -sign)


def _scaled(r: _Rewriter, x: Node, normalization: int, n: int) -> Node:
    """``x`` as torch's ``normalization`` says: 0 as it is, 1 over ``sqrt(n)``, 2 over ``n``."""
    if normalization == 0:
        return x
    return r.emit(aten.mul.Tensor, x, 1 / (math.sqrt(n) if normalization == 1 else n))


def _complex_dims(r: _Rewriter, dims: Any) -> list[int] | None:
    """The transformed dims, of a rank without the pair dim (None: not a list of ints)."""
    rank = r.node.meta["val"].dim()
    if not isinstance(dims, list | tuple) or not all(isinstance(d, int) for d in dims):
        return None
    return [d % rank for d in dims]


def _fft_c2c(r: _Rewriter, z: Any, dims: Any, normalization: int, forward: bool) -> Node | None:
    """``_fft_c2c``: the transform along each dim in turn, then scaled."""
    dims = _complex_dims(r, dims)
    if dims is None or not _is_complex(z):
        return None
    pair = r.arg(z)
    re, im = r.part(pair, 0), r.part(pair, 1)
    for d in dims:
        re, im = _c2c_along(r, re, im, d, bool(forward))
    n = math.prod(re.meta["val"].shape[d] for d in dims)
    return r.pair(_scaled(r, re, normalization, n), _scaled(r, im, normalization, n))


def _fft_r2c(r: _Rewriter, x: Any, dims: Any, normalization: int, onesided: bool) -> Node | None:
    """``_fft_r2c`` (``rfft``): along the last dim, a real signal times ``cos`` and ``-sin``
    (the first ``n // 2 + 1`` frequencies when ``onesided``), then ``_fft_c2c`` along the
    others."""
    dims = _complex_dims(r, dims)
    if dims is None or not isinstance(x, Node) or _is_complex(x):
        return None
    n = x.meta["val"].shape[dims[-1]]
    cos, sin = _dft(r, n, n, n // 2 + 1 if onesided else n)
    re = _along(r, x, dims[-1], cos)
    im = r.emit(aten.neg.default, _along(r, x, dims[-1], sin))
    for d in dims[:-1]:
        re, im = _c2c_along(r, re, im, d, True)
    size = math.prod(x.meta["val"].shape[d] for d in dims)
    return r.pair(_scaled(r, re, normalization, size), _scaled(r, im, normalization, size))


def _fft_c2r(r: _Rewriter, z: Any, dims: Any, normalization: int, last: int) -> Node | None:
    """``_fft_c2r`` (``irfft``): the inverse ``_fft_c2c`` along all dims but the last, then along
    it the real signal of ``last`` points whose first ``last // 2 + 1`` frequencies ``z``
    holds: each frequency ``k`` but 0 and ``last / 2`` counted twice (for its conjugate,
    ``last - k``), their imaginary parts ignored, as torch's kernel does."""
    dims = _complex_dims(r, dims)
    if dims is None or not _is_complex(z) or not isinstance(last, int):
        return None
    pair = r.arg(z)
    re, im = r.part(pair, 0), r.part(pair, 1)
    half = last // 2 + 1
    if re.meta["val"].shape[dims[-1]] != half:
        return None
    for d in dims[:-1]:
        re, im = _c2c_along(r, re, im, d, False)
    cos, sin = _dft(r, last, half, last)
    k = r.emit(aten.arange.default, half, dtype=_part_dtype(r.node))
    ends = [r.emit(aten.eq.Scalar, k, at) for at in (0, last / 2)]
    once = [r.emit(aten._to_copy.default, end, dtype=_part_dtype(r.node)) for end in ends]
    twice = r.emit(
        aten.sub.Tensor,
        r.emit(aten.sub.Tensor, r.emit(aten.full_like.default, k, 2.0), once[0]),
        once[1],
    )
    weight = r.emit(aten.unsqueeze.default, twice, 1)
    cos, sin = r.emit(aten.mul.Tensor, cos, weight), r.emit(aten.mul.Tensor, sin, weight)
    out = _combine(r, _along(r, re, dims[-1], cos), _along(r, im, dims[-1], sin), -1)
    size = math.prod(out.meta["val"].shape[d] for d in dims)
    return _scaled(r, out, normalization, size)


_FFTS: dict[Any, Callable[..., Node | None]] = {
    aten._fft_c2c.default: _fft_c2c,
    aten._fft_r2c.default: _fft_r2c,
    aten._fft_c2r.default: _fft_c2r,
}
"""The Fourier transforms, as matrix products of the pairs (``_dft``)."""


_DIM_OPS = (
    aten.unsqueeze.default,
    aten.squeeze.dim,
    aten.select.int,
    aten.slice.Tensor,
)
"""Ops of one dim and further arguments: the same on the pairs, a negative dim one earlier."""

_SHAPE_OPS = (
    aten.view.default,
    aten._unsafe_view.default,
    aten.reshape.default,
    aten.expand.default,
)
"""Ops of a shape: the same on the pairs, the shape with the pair dim last."""


def _before_pair(dim: int) -> int:
    """A complex value's ``dim`` on its pairs: a negative dim counts past the pair dim."""
    return dim - 1 if dim < 0 else dim


def as_pairs(graph: Graph) -> None:
    """Rewrite every complex value of ``graph`` as pairs of reals (see the module docstring)."""
    pairs: dict[Node, Node] = {}
    done: list[Node] = []  # real results rewritten
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        reads = any(_is_complex(a) for a in node.all_input_nodes)
        if not reads and not _is_complex(node):
            continue
        if node.target == aten._assert_tensor_metadata.default and not node.users:
            graph.erase_node(node)  # a check of a complex value's dtype (an export's .to())
            continue
        if any(_is_complex(a) and a not in pairs for a in node.all_input_nodes):
            continue  # reads a complex value left as it is
        new = _rewrite(_Rewriter(graph, node, pairs))
        if new is None:
            continue
        if _is_complex(node):
            pairs[node] = new  # its rewritten readers read the pairs
        else:  # a real result (view_as_real): its readers read the pairs
            node.replace_all_uses_with(new)
            done.append(node)
    # A complex node whose readers all read its pairs is read no more, nor one its readers
    # left (last first, so that a chain of them goes)
    for node in reversed([*pairs, *done]):
        if not node.users:
            graph.erase_node(node)
