"""Which forward values the backward recomputes rather than loads: a minimum cut over bytes.

The backward section reads each forward value it needs from DRAM (a ``saved.*`` symbol the
forward writes): its bytes cross DRAM twice. A value that is cheap to redo from others (a view,
or a pointwise op: LayerNorm's affine, GELU, a residual add) can instead be recomputed in the
backward from values it loads anyway. Choosing what to load is a minimum s-t cut, the
construction of torch's ``min_cut_rematerialization_partition``:

- each forward value ``v`` is an edge ``v.in -> v.out`` whose capacity is what loading it costs
  (twice its bytes for an activation, once for a section input the backward reads from DRAM);
- a value that must be computed in the forward (not a view or pointwise op: a matmul, a
  reduction, a random draw) hangs from the source: ``source -> v.in``, unbounded;
- each use is ``v.out -> user.in``, unbounded; a value the backward's own ops read is
  ``v.out -> sink``, unbounded.

A cut edge is a value the backward loads; a forward op on the sink's side is recomputed there.
For GPT's block: the LayerNorm outputs, the GELU output and a view of the attention weights are
recomputed from the residual stream, the normalisation statistics, the GELU input and the
softmax, which are loaded anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import networkx as nx
import torch
from networkx.algorithms.flow import preflow_push

from compiler.frontend.aten import IDENTITY_OPS, VIEW_OPS
from compiler.frontend.converter import op_name

_SOURCE, _SINK = "source", "sink"


def _bytes(node: torch.fx.Node) -> int | None:
    """The bytes of the tensor ``node`` computes (None: not one tensor)."""
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        return None
    return val.numel() * val.element_size()


def cheap_to_recompute(node: torch.fx.Node) -> bool:
    """A view, identity or pointwise op (torch's ``Tag.pointwise``). No op that draws random
    numbers is one (``native_dropout``, ``rand_like``, ``bernoulli`` are tagged
    ``nondeterministic_seeded``, never ``pointwise``), so the backward never draws again."""
    if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
        return False
    name = op_name(node.target)
    return name in VIEW_OPS or name in IDENTITY_OPS or torch.Tag.pointwise in node.target.tags


def recomputed_in_backward(
    needed: Iterable[torch.fx.Node],
    is_input: Callable[[torch.fx.Node], bool],
) -> set[torch.fx.Node]:
    """The forward ops the backward should recompute to load the fewest bytes.

    ``needed``: the forward values the backward's own ops read; ``is_input``: a section input
    (a parameter, buffer or user input the backward reads from DRAM rather than recomputes).
    """
    graph = nx.DiGraph()
    graph.add_nodes_from((_SOURCE, _SINK))  # no value needed: an empty cut
    seen: set[torch.fx.Node] = set()
    stack = list(needed)
    for node in stack:
        graph.add_edge(f"{node.name}.out", _SINK)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        size = _bytes(node)
        if is_input(node):
            graph.add_edge(_SOURCE, f"{node.name}.in")
            graph.add_edge(f"{node.name}.in", f"{node.name}.out", capacity=size or 0)
            continue
        if size is None:  # a tuple (var_mean): only its items can be loaded
            graph.add_edge(f"{node.name}.in", f"{node.name}.out")
        else:
            graph.add_edge(f"{node.name}.in", f"{node.name}.out", capacity=2 * size)
        if not cheap_to_recompute(node):
            graph.add_edge(_SOURCE, f"{node.name}.in")
        for arg in node.all_input_nodes:
            graph.add_edge(f"{arg.name}.out", f"{node.name}.in")
            stack.append(arg)
    sink_side = _sink_side_of_latest_cut(graph)
    return {n for n in seen if f"{n.name}.in" in sink_side and not is_input(n)}


def _sink_side_of_latest_cut(graph: nx.DiGraph) -> set[str]:
    """The sink's side of the minimum cut nearest the sink: what can still reach the sink in the
    residual network of a maximum flow. Among cuts of equal bytes it recomputes the least (the
    MLP loads ReLU's output, as it would unaided, not its input)."""
    residual = preflow_push(graph, _SOURCE, _SINK)
    side = {_SINK}
    stack = [_SINK]
    while stack:
        v = stack.pop()
        for u in residual.predecessors(v):
            edge = residual[u][v]
            if u not in side and edge["capacity"] - edge["flow"] > 0:
                side.add(u)
                stack.append(u)
    return side
