"""The frontend: a torch model -> a ``builtin.module`` of ``dataflow.section`` ops.

    module = build_dataflow(spec, inference=False)   # forward, backward, optimizer sections
    module = build_dataflow(spec, inference=True)    # one forward section
    check = check_ops(spec, inference=False)         # every refused op, nothing raised

Layout: trace.py (torch.export / aot_autograd, signature from descriptors), aten*.py (one
converter per ATen op, a table per family; converter.py says what a converter is, registry.py
joins the families' tables), emitter.py (IR helpers), build.py + sections.py (cutting the
graph into sections), optimizer.py (SGD / AdamW update), locations.py (user file:line per op),
decompositions.py (our decomposition table), int_bounds.py (when int32 may be computed as
int64). DRAM symbol names follow docs/design.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from xdsl.dialects.builtin import DictionaryAttr, ModuleOp, StringAttr

from compiler.frontend.errors import FrontendError, UnsupportedOpError
from compiler.frontend.spec import ModelSpec

if TYPE_CHECKING:
    from compiler.frontend.build import GraphBuilder, OpIssue
    from compiler.frontend.optimizer import OptimizerPlan
    from compiler.frontend.trace import Traced
    from dialects.dataflow import SectionOp

__all__ = [
    "FrontendError",
    "ModelSpec",
    "OpCheck",
    "UnsupportedOpError",
    "build_dataflow",
    "check_ops",
    "optimizer_plan",
]


def build_dataflow(
    spec: ModelSpec, inference: bool, ops: dict[str, str] | None = None, verify: bool = True
) -> ModuleOp:
    """Trace ``spec`` with torch and build its dataflow sections (raises FrontendError).

    ``ops``, if given, receives the ATen op of every traced value the IR names (FX node name ->
    ``aten.tanh.default``; an element of a tuple result: ``aten.native_layer_norm.default[0]``),
    for the report's explorer. ``verify=False``: the module is not verified here (the caller
    does, as rdu-compile does beside its first pass)."""
    sections, gb = _build_sections(spec, inference, collect=False)
    if ops is not None:
        ops.update(_traced_ops(gb))
    module = ModuleOp(sections)
    _note_non_persistent(module, spec, gb.traced)
    if verify:
        module.verify()
    return module


def _traced_ops(gb: GraphBuilder) -> dict[str, str]:
    """FX node name -> the ATen op computing it (see ``build_dataflow``)."""
    import operator

    import torch.fx

    ops = {node.name: name for node, name in gb.converted.items()}
    for node in gb.traced.graph.nodes:
        if node.op == "call_function" and node.target is operator.getitem:
            base, index = node.args[0], node.args[1]
            if isinstance(base, torch.fx.Node) and base.name in ops:
                ops[node.name] = f"{ops[base.name]}[{index}]"
    return ops


@dataclass
class OpCheck:
    """What ``check_ops`` found: the ops of the traced graph and the calls refused."""

    ops: dict[str, int]
    """Every ATen op the graph calls (that the sections need), with its number of calls."""
    issues: list[OpIssue]
    """Each call the frontend cannot convert, in graph order."""


def check_ops(spec: ModelSpec, inference: bool) -> OpCheck:
    """Trace ``spec`` and convert every op, noting each one the frontend refuses instead of
    stopping at the first (``rdu-compile --check``). The IR is dropped: nothing is lowered."""
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    built: list[GraphBuilder] = []
    try:
        _, gb = _build_sections(spec, inference, collect=True, built=built)
    except GuardOnDataDependentSymNode:
        # a refused op's value set a size (JetMoE's ``.tolist()`` of its experts' sizes): the
        # ops after it cannot be converted, those before are listed (that one among them)
        if not built or not built[0].issues:
            raise
        gb = built[0]
    assert gb.issues is not None
    ops: dict[str, int] = {}
    for name in gb.converted.values():
        ops[name] = ops.get(name, 0) + 1
    return OpCheck(dict(sorted(ops.items())), list(gb.issues))


def _build_sections(
    spec: ModelSpec, inference: bool, collect: bool, built: list[GraphBuilder] | None = None
) -> tuple[list[SectionOp], GraphBuilder]:
    """The sections of ``spec`` and the builder that converted its graph (also put in
    ``built``, as soon as it is made)."""
    from compiler.frontend.build import GraphBuilder
    from compiler.frontend.emitter import shape_of
    from compiler.frontend.locations import Locator
    from compiler.frontend.optimizer import build_optimizer
    from compiler.frontend.sections import build_inference, build_training
    from compiler.frontend.trace import loss_call_site, trace_inference, trace_training

    locator = Locator(spec.source_file, spec.module, spec.loss_fn, loss_call_site())
    if inference:
        gb = GraphBuilder(trace_inference(spec), locator, collect)
        if built is not None:
            built.append(gb)
        return build_inference(gb), gb
    plan = optimizer_plan(spec)  # refuse an unsupported optimizer before tracing
    gb = GraphBuilder(trace_training(spec), locator, collect)
    if built is not None:
        built.append(gb)
    forward, backward = build_training(gb)
    sections = [forward, backward]
    if plan is not None:
        # torch's optimizers skip a parameter without a gradient (one the loss does not depend
        # on): no weight decay, no momentum, no state. So does this section.
        graded = {o.name for o in gb.traced.outputs if o.role == "gradient"}
        plan.params = [p for p in plan.params if f"{p}.grad" in graded]
    if plan is not None and plan.params:
        shapes = {
            name: shape_of(t)
            for name, t in zip(
                [n.data for n in forward.arg_names], forward.body.block.args, strict=True
            )
        }
        where = locator.of_text(r"optim\.\w+\(|\b(SGD|AdamW)\(")
        sections.append(build_optimizer(plan, shapes, where))
    return sections, gb


NON_PERSISTENT_ATTR = "rdu.non_persistent"
"""Module attribute: ``{symbol = "sha256"}`` of the non-persistent buffers the sections read
(emit-pef records them in ``meta.non_persistent``)."""


def _note_non_persistent(module: ModuleOp, spec: ModelSpec, traced: Traced) -> None:
    """Record the model's non-persistent buffers and the digests of their values on ``module``."""
    from compiler.frontend.trace import non_persistent_buffers

    found = non_persistent_buffers(spec.module, traced)
    if found:
        module.attributes[NON_PERSISTENT_ATTR] = DictionaryAttr(
            {name: StringAttr(digest) for name, digest in found.items()}
        )


def optimizer_plan(spec: ModelSpec) -> OptimizerPlan | None:
    """The optimizer's plan (kind, updated parameters, settings), or None without one.

    ``compiler.frontend.optimizer.hyperparameter_values(plan, step)`` gives the hyperparameter
    inputs of a step.
    """
    from compiler.frontend.optimizer import plan_optimizer
    from compiler.frontend.trace import param_symbols

    if spec.optimizer is None:
        return None
    symbols = param_symbols(spec.module)
    trainable: list[str] = []
    seen: set[int] = set()
    for name, p in spec.module.named_parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            trainable.append(name)
    return plan_optimizer(spec.optimizer, symbols, trainable)
