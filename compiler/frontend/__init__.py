"""The frontend: a torch model -> a ``builtin.module`` of ``dataflow.section`` ops.

    module = build_dataflow(spec, inference=False)   # forward, backward, optimizer sections
    module = build_dataflow(spec, inference=True)    # one forward section

Layout: trace.py (torch.export / aot_autograd, signature from descriptors), aten.py (the op
table: one converter per ATen op), emitter.py (IR helpers), build.py + sections.py (cutting the
graph into sections), optimizer.py (SGD / AdamW update), locations.py (user file:line per op),
decompositions.py (our decomposition table). DRAM symbol names follow docs/design.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xdsl.dialects.builtin import DictionaryAttr, ModuleOp, StringAttr

from compiler.frontend.errors import FrontendError, UnsupportedOpError
from compiler.frontend.spec import ModelSpec

if TYPE_CHECKING:
    from compiler.frontend.optimizer import OptimizerPlan
    from compiler.frontend.trace import Traced

__all__ = [
    "FrontendError",
    "ModelSpec",
    "UnsupportedOpError",
    "build_dataflow",
    "optimizer_plan",
]


def build_dataflow(spec: ModelSpec, inference: bool) -> ModuleOp:
    """Trace ``spec`` with torch and build its dataflow sections (raises FrontendError)."""
    from compiler.frontend.build import GraphBuilder
    from compiler.frontend.locations import Locator
    from compiler.frontend.optimizer import build_optimizer
    from compiler.frontend.sections import build_inference, build_training
    from compiler.frontend.trace import loss_call_site, trace_inference, trace_training

    locator = Locator(spec.source_file, spec.module, spec.loss_fn, loss_call_site())
    if inference:
        traced = trace_inference(spec)
        module = ModuleOp(build_inference(GraphBuilder(traced, locator)))
        _note_non_persistent(module, spec, traced)
        module.verify()
        return module
    plan = optimizer_plan(spec)  # refuse an unsupported optimizer before tracing
    traced = trace_training(spec)
    forward, backward = build_training(GraphBuilder(traced, locator))
    sections = [forward, backward]
    if plan is not None:
        # torch's optimizers skip a parameter without a gradient (one the loss does not depend
        # on): no weight decay, no momentum, no state. So does this section.
        graded = {o.name for o in traced.outputs if o.role == "gradient"}
        plan.params = [p for p in plan.params if f"{p}.grad" in graded]
    if plan is not None and plan.params:
        shapes = {
            name: tuple(int(d) for d in t.type.get_shape())  # type: ignore[attr-defined]
            for name, t in zip(
                [n.data for n in forward.arg_names], forward.body.block.args, strict=True
            )
        }
        where = locator.of_text(r"optim\.\w+\(|\b(SGD|AdamW)\(")
        sections.append(build_optimizer(plan, shapes, where))
    module = ModuleOp(sections)
    _note_non_persistent(module, spec, traced)
    module.verify()
    return module


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
