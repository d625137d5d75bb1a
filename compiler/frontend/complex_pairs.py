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
- an export's check of a complex value's dtype (``_assert_tensor_metadata``) goes.

Each new node keeps the metadata of the node it stands for (where it comes from in the model,
so errors name the model's line) with its own value (``val``: the op run on the fake values).
A complex value any other op reads is left as it is: its op is then refused in one line, as
any op the frontend does not convert (``dtype torch.complex64``).
"""

from __future__ import annotations

import contextlib
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

    def emit(self, target: Callable[..., Any], *args: Any) -> Node:
        """A call of ``target`` on ``args`` before the node, its value run on the fake values."""
        with self.graph.inserting_before(self.node):
            new = self.graph.call_function(target, tuple(args))
        new.meta = {k: v for k, v in self.node.meta.items() if k not in _OWN_META}
        vals = map_aggregate(args, lambda a: a.meta["val"] if isinstance(a, Node) else a)
        modes = [v.fake_mode for v in pytree.tree_leaves(vals) if isinstance(v, FakeTensor)]
        with modes[0] if modes else contextlib.nullcontext():
            new.meta["val"] = target(*vals)
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
    if target == aten.mul.Tensor and len(args) == 2:
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
