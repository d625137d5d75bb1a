"""The forward and backward sections of a traced model (see build.py for the machinery)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from xdsl.dialects.builtin import i64
from xdsl.ir import SSAValue

from compiler.frontend.aten_transformer import RNG_SEED, needs_rng_seed
from compiler.frontend.build import (
    Env,
    GraphBuilder,
    SectionArg,
    SectionResult,
    live_nodes,
    make_section,
    ordered,
    sorted_inputs,
)
from compiler.frontend.converter import op_name
from compiler.frontend.emitter import Emitter, tensor
from compiler.frontend.errors import FrontendError
from compiler.frontend.remat import recomputed_in_backward
from compiler.frontend.trace import GraphInput, GraphOutput
from dialects.dataflow import SectionOp

Lookup = Callable[[torch.fx.Node], Any]


def _output_node(out: GraphOutput) -> torch.fx.Node:
    if not isinstance(out.node, torch.fx.Node):
        raise FrontendError(f"{out.name} is not a tensor computed by the model ({out.node!r})")
    return out.node


def _forward_expand(gb: GraphBuilder, node: torch.fx.Node) -> list[torch.fx.Node]:
    if node.op != "call_function":
        return []
    return list(node.all_input_nodes)


def _convert_all(
    gb: GraphBuilder,
    em: Emitter,
    nodes: list[torch.fx.Node],
    env: Env,
    args: dict[str, SSAValue],
    lookup_extra: dict[torch.fx.Node, str] | None = None,
) -> Lookup:
    """Convert ``nodes`` in order into ``env``; return the node -> value lookup.

    Placeholders resolve to section arguments, identity ops to their input, nodes named in
    ``lookup_extra`` (saved activations) to the section argument of that name.
    """

    def lookup(node: torch.fx.Node) -> Any:
        if node in env:
            return env[node]
        if gb.is_constant(node):
            env[node] = gb.constant(em, node)
            return env[node]
        gi = gb.input_of.get(node)
        if gi is not None:
            return args[gi.name]
        resolved = gb.resolve(node)
        if resolved in env:
            return env[resolved]
        if lookup_extra is not None and resolved in lookup_extra:
            return args[lookup_extra[resolved]]
        if resolved is not node:
            return lookup(resolved)
        raise AssertionError(f"internal: no value for node {node.name}")

    for node in nodes:
        env[node] = gb.convert(em, node, lookup)
    return lookup


def _rng_seed_arg(nodes: list[torch.fx.Node]) -> list[SectionArg]:
    """The ``rng_seed`` input (0-d i64, set by the session each step) when a node draws random
    numbers (dropout in training)."""
    if any(needs_rng_seed(op_name(n.target), n.args) for n in nodes):
        return [SectionArg(RNG_SEED, "hyperparameter", tensor((), i64))]
    return []


def _value(lookup: Lookup, node: torch.fx.Node) -> SSAValue:
    value = lookup(node)
    if not isinstance(value, SSAValue):
        raise FrontendError(f"internal: {node.name} has no tensor value")
    return value


def build_inference(gb: GraphBuilder) -> list[SectionOp]:
    """One ``forward`` section: parameters, buffers, inputs -> ``output.<i>``."""
    traced = gb.traced
    roots = [_output_node(o) for o in traced.outputs]
    live = live_nodes(roots, lambda n: _forward_expand(gb, n))
    nodes = ordered(traced.graph, {n for n in live if n.op == "call_function"})
    gb.check_supported(nodes)
    inputs = sorted_inputs(traced.inputs)
    args = [SectionArg(i.name, i.role, gb.input_type(i)) for i in inputs]
    args += _rng_seed_arg(nodes)

    def body(em: Emitter, values: dict[str, SSAValue]) -> list[SectionResult]:
        env: Env = {}
        lookup = _convert_all(gb, em, nodes, env, values)
        return [
            SectionResult(o.name, o.role, _value(lookup, _output_node(o))) for o in traced.outputs
        ]

    return [make_section("forward", "forward", args, body, gb.locator.default)]


def _backward_needs(
    gb: GraphBuilder, grad_outputs: list[GraphOutput]
) -> tuple[list[torch.fx.Node], list[GraphInput], list[torch.fx.Node]]:
    """What the backward needs: the forward values it loads (saved), the section inputs it
    reads, and the nodes it converts (its own and the forward ops it recomputes)."""
    traced = gb.traced
    saved: list[torch.fx.Node] = []
    bwd_inputs: list[GraphInput] = []

    def backward_expand(node: torch.fx.Node) -> list[torch.fx.Node]:
        if node.op != "call_function":
            return []
        out: list[torch.fx.Node] = []
        for arg in node.all_input_nodes:
            out.extend(_backward_ref(arg))
        return out

    def _backward_ref(arg: torch.fx.Node) -> list[torch.fx.Node]:
        """Nodes the backward converts to get ``arg``; notes saved values and inputs."""
        if arg in traced.tangents or gb.is_constant(arg):
            return []
        if arg in gb.input_of:
            if gb.input_of[arg] not in bwd_inputs:
                bwd_inputs.append(gb.input_of[arg])
            return []
        if gb.is_backward(arg):
            return [arg]
        resolved = gb.resolve(arg)
        if resolved in gb.input_of:
            return _backward_ref(resolved)
        if gb.recomputable(resolved):
            return [resolved]
        if resolved not in saved:
            saved.append(resolved)
        return []

    grad_roots: list[torch.fx.Node] = []
    for o in grad_outputs:
        grad_roots.extend(_backward_ref(_output_node(o)))
        for term in o.more:
            grad_roots.extend(_backward_ref(term))
    bwd_live = live_nodes(grad_roots, backward_expand)
    bwd_nodes = ordered(traced.graph, {n for n in bwd_live if n.op == "call_function"})

    return saved, bwd_inputs, bwd_nodes


def build_training(gb: GraphBuilder) -> tuple[SectionOp, SectionOp]:
    """The ``forward`` and ``backward`` sections of the joint graph."""
    traced = gb.traced
    order = {"loss": 0, "output": 1, "buffer": 2}
    fwd_outputs = sorted(
        (o for o in traced.outputs if o.role != "gradient"), key=lambda o: order.get(o.role, 3)
    )
    grad_outputs = [o for o in traced.outputs if o.role == "gradient"]

    saved, bwd_inputs, bwd_nodes = _backward_needs(gb, grad_outputs)
    gb.recompute = recomputed_in_backward(
        saved + [i.node for i in bwd_inputs],
        lambda n: n.op != "call_function" or n in gb.input_of,
    )
    if gb.recompute:
        saved, bwd_inputs, bwd_nodes = _backward_needs(gb, grad_outputs)

    saved = ordered(traced.graph, set(saved))
    fwd_roots = [_output_node(o) for o in fwd_outputs] + saved
    fwd_live = live_nodes(fwd_roots, lambda n: _forward_expand(gb, n))
    fwd_nodes = ordered(
        traced.graph,
        {n for n in fwd_live if n.op == "call_function" and not gb.is_backward(n)},
    )
    gb.check_supported(ordered(traced.graph, set(fwd_nodes) | set(bwd_nodes)))

    saved_names = {n: f"saved.{n.name}" for n in saved}

    # forward
    inputs = sorted_inputs(traced.inputs)
    fwd_args = [SectionArg(i.name, i.role, gb.input_type(i)) for i in inputs]
    fwd_args += _rng_seed_arg(fwd_nodes)

    def forward_body(em: Emitter, values: dict[str, SSAValue]) -> list[SectionResult]:
        env: Env = {}
        lookup = _convert_all(gb, em, fwd_nodes, env, values)
        results = [
            SectionResult(o.name, o.role, _value(lookup, _output_node(o))) for o in fwd_outputs
        ]
        results += [SectionResult(saved_names[n], "activation", _value(lookup, n)) for n in saved]
        return results

    forward = make_section("forward", "forward", fwd_args, forward_body, gb.locator.default)

    # backward
    bwd_args = [SectionArg(i.name, i.role, gb.input_type(i)) for i in sorted_inputs(bwd_inputs)]
    bwd_args += [
        SectionArg(saved_names[n], "activation", gb.arg_type(n, saved_names[n])) for n in saved
    ]

    def backward_body(em: Emitter, values: dict[str, SSAValue]) -> list[SectionResult]:
        env: Env = {}
        for tangent in traced.tangents:
            typ = gb.arg_type(tangent, "the loss gradient")
            em.loc = gb.locator.loss.loc()
            one = em.fill(1.0, typ.get_shape(), typ.element_type)
            one.name_hint = "loss_grad"
            env[tangent] = one
        lookup = _convert_all(gb, em, bwd_nodes, env, values, saved_names)
        results: list[SectionResult] = []
        for o in grad_outputs:
            value = _value(lookup, o.node)
            for term in o.more:
                em.loc = gb.where(term).loc()
                value = em.add(value, _value(lookup, term))
            results.append(SectionResult(o.name, o.role, value))
        return results

    backward = make_section("backward", "backward", bwd_args, backward_body, gb.locator.loss)
    return forward, backward
