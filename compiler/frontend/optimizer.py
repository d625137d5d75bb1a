"""The optimizer section: SGD (momentum, weight decay) and AdamW updates written as dataflow ops.

Not traced: torch's functional optimizers do not trace on CPU, so the update is spelled out here,
matching torch's single-tensor implementations. Hyperparameters are 0-d f32 section arguments
(run-time inputs, named by ``HYPERPARAMETERS``); :func:`hyperparameter_values` gives their values
for a step. Updated parameters and state are yielded under their own names.

SGD (dampening 0, no nesterov, no maximize)::

    d = g + weight_decay * p;  buf' = momentum * buf + d;  p' = p - lr * buf'
    (momentum == 0 at compile time: no buffer, p' = p - lr * d)

AdamW (no amsgrad, no maximize)::

    p1 = p * (1 - lr * weight_decay)
    m' = m + one_minus_beta1 * (g - m);   v' = v * beta2 + one_minus_beta2 * g * g
    denom = sqrt(v') / bias_correction2_sqrt + eps
    p' = p1 - (lr / bias_correction1) * m' / denom

``one_minus_beta1/2`` are inputs, computed on the host in double precision as torch computes
them: ``1 - beta2`` in f32 from a rounded 0.999 is 1.3e-5 off, and so would be every ``v'``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from xdsl.dialects.builtin import f32
from xdsl.ir import SSAValue

from compiler.frontend.build import SectionArg, SectionResult, make_section
from compiler.frontend.emitter import Emitter, tensor
from compiler.frontend.errors import FrontendError
from compiler.frontend.locations import SourceLine
from compiler.value_names import ssa_hint
from dialects.dataflow import SectionOp

HYPERPARAMETERS = {
    "sgd": ("lr", "momentum", "weight_decay"),
    "sgd_no_momentum": ("lr", "weight_decay"),
    "adamw": (
        "lr",
        "beta1",
        "beta2",
        "eps",
        "weight_decay",
        "bias_correction1",
        "bias_correction2_sqrt",
        "one_minus_beta1",
        "one_minus_beta2",
    ),
}
"""The hyperparameter section arguments of each optimizer form, in argument order."""

STATE = {"sgd": ("momentum_buffer",), "sgd_no_momentum": (), "adamw": ("exp_avg", "exp_avg_sq")}
"""Per-parameter state (torch's state keys): DRAM symbols ``<param>.<key>``."""


@dataclass
class OptimizerPlan:
    """What the optimizer section updates and how."""

    kind: str  # a key of HYPERPARAMETERS
    params: list[str]  # symbols of the parameters it updates
    group: dict[str, object]  # the (single, merged) param group's settings


def _one_group(optimizer: torch.optim.Optimizer, keys: tuple[str, ...]) -> dict[str, object]:
    groups = optimizer.param_groups
    first = groups[0]
    for g in groups[1:]:
        for k in keys:
            if g.get(k) != first.get(k):
                raise FrontendError(
                    f"{type(optimizer).__name__} param groups with different '{k}' are not "
                    "supported yet"
                )
    return first


def plan_optimizer(
    optimizer: torch.optim.Optimizer, symbols: dict[int, str], trainable: list[str]
) -> OptimizerPlan:
    """Check the optimizer is one we support; the parameters it updates, in ``trainable`` order."""
    name = type(optimizer).__name__
    if isinstance(optimizer, torch.optim.SGD):
        group = _one_group(optimizer, ("lr", "momentum", "dampening", "weight_decay", "nesterov"))
        if group.get("dampening", 0) != 0:
            raise FrontendError("SGD with dampening != 0 is not supported yet")
        if group.get("nesterov"):
            raise FrontendError("SGD with nesterov=True is not supported yet")
        if group.get("maximize"):
            raise FrontendError("SGD with maximize=True is not supported yet")
        kind = "sgd" if group.get("momentum", 0) != 0 else "sgd_no_momentum"
    elif isinstance(optimizer, torch.optim.AdamW):
        group = _one_group(optimizer, ("lr", "betas", "eps", "weight_decay", "amsgrad"))
        if group.get("amsgrad"):
            raise FrontendError("AdamW with amsgrad=True is not supported yet")
        if group.get("maximize"):
            raise FrontendError("AdamW with maximize=True is not supported yet")
        kind = "adamw"
    else:
        raise FrontendError(f"optimizer {name} is not supported yet (SGD and AdamW are)")
    in_optimizer: set[str] = set()
    for g in optimizer.param_groups:
        for p in g["params"]:
            sym = symbols.get(id(p))
            if sym is None:
                raise FrontendError(f"{name} holds a tensor that is not a parameter of the model")
            in_optimizer.add(sym)
    return OptimizerPlan(kind, [p for p in trainable if p in in_optimizer], dict(group))


def _number(value: object, name: str) -> float:
    """A hyperparameter of the param group as a float (torch allows a 0-d tensor too)."""
    if not isinstance(value, int | float | torch.Tensor):
        raise FrontendError(f"optimizer {name} {value!r} is not a number")
    return float(value)


def hyperparameter_values(plan: OptimizerPlan, step: int) -> dict[str, float]:
    """The hyperparameter inputs for the ``step``-th update (1-based), from the param group."""
    g = plan.group
    values: dict[str, float] = {
        "lr": _number(g["lr"], "lr"),
        "weight_decay": _number(g["weight_decay"], "weight_decay"),
    }
    if plan.kind == "sgd":
        values["momentum"] = _number(g["momentum"], "momentum")
    if plan.kind == "adamw":
        betas = g["betas"]
        if not isinstance(betas, tuple | list) or len(betas) != 2:
            raise FrontendError(f"optimizer betas {betas!r} are not two numbers")
        beta1, beta2 = _number(betas[0], "beta1"), _number(betas[1], "beta2")
        values.update(
            beta1=beta1,
            beta2=beta2,
            eps=_number(g["eps"], "eps"),
            bias_correction1=1.0 - beta1**step,
            bias_correction2_sqrt=math.sqrt(1.0 - beta2**step),
            one_minus_beta1=1.0 - beta1,
            one_minus_beta2=1.0 - beta2,
        )
    return {k: values[k] for k in HYPERPARAMETERS[plan.kind]}


def build_optimizer(
    plan: OptimizerPlan, shapes: dict[str, tuple[int, ...]], where: SourceLine
) -> SectionOp:
    """The ``optimizer`` section for ``plan`` (``shapes``: parameter symbol -> shape)."""
    args: list[SectionArg] = []
    for p in plan.params:
        args.append(SectionArg(p, "parameter", tensor(shapes[p], f32)))
    for p in plan.params:
        args.append(SectionArg(f"{p}.grad", "gradient", tensor(shapes[p], f32)))
    for p in plan.params:
        for key in STATE[plan.kind]:
            args.append(SectionArg(f"{p}.{key}", "optimizer_state", tensor(shapes[p], f32)))
    for h in HYPERPARAMETERS[plan.kind]:
        args.append(SectionArg(h, "hyperparameter", tensor((), f32)))

    def body(em: Emitter, v: dict[str, SSAValue]) -> list[SectionResult]:
        new_params: list[SectionResult] = []
        new_state: list[SectionResult] = []
        coefficients = _adamw_coefficients(em, v) if plan.kind == "adamw" else {}
        for p in plan.params:
            param, grad = v[p], v[f"{p}.grad"]
            if plan.kind == "adamw":
                p_new, m_new, v_new = _adamw(
                    em, {**v, **coefficients}, param, grad, v[f"{p}.exp_avg"], v[f"{p}.exp_avg_sq"]
                )
                new_state.append(SectionResult(f"{p}.exp_avg", "optimizer_state", m_new))
                new_state.append(SectionResult(f"{p}.exp_avg_sq", "optimizer_state", v_new))
            else:
                d = em.add(grad, em.mul(v["weight_decay"], param))
                if plan.kind == "sgd":
                    buf = em.add(em.mul(v["momentum"], v[f"{p}.momentum_buffer"]), d)
                    new_state.append(SectionResult(f"{p}.momentum_buffer", "optimizer_state", buf))
                    d = buf
                p_new = em.sub(param, em.mul(v["lr"], d))
            p_new.name_hint = ssa_hint(p)
            new_params.append(SectionResult(p, "parameter", p_new))
        return new_params + new_state

    return make_section("optimizer", "optimizer", args, body, where)


def _adamw_coefficients(em: Emitter, h: dict[str, SSAValue]) -> dict[str, SSAValue]:
    """The 0-d factors every parameter's update shares, computed once per step (so the section
    does not repeat them per parameter, nor read one constant from every unit).

    ``1 - beta1`` and ``1 - beta2`` are inputs the host computes in double precision, as torch
    does: ``1 - float32(0.999)`` on the fabric would be 1.3e-5 off ``0.001``."""
    return {
        "decay": em.sub(1.0, em.mul(h["lr"], h["weight_decay"])),
        "step_size": em.div(h["lr"], h["bias_correction1"]),
    }


def _adamw(
    em: Emitter,
    h: dict[str, SSAValue],
    p: SSAValue,
    g: SSAValue,
    m: SSAValue,
    v: SSAValue,
) -> tuple[SSAValue, SSAValue, SSAValue]:
    p1 = em.mul(p, h["decay"])
    m_new = em.add(m, em.mul(h["one_minus_beta1"], em.sub(g, m)))
    v_new = em.add(em.mul(v, h["beta2"]), em.mul(em.mul(h["one_minus_beta2"], g), g))
    denom = em.add(em.div(em.unary("sqrt", v_new), h["bias_correction2_sqrt"]), h["eps"])
    p_new = em.sub(p1, em.mul(h["step_size"], em.div(m_new, denom)))
    return p_new, m_new, v_new
