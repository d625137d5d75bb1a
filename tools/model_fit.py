"""Whether a PEF fits the model it runs with: the module's parameters and buffers against the
PEF's symbols (names, shapes, dtypes), so a PEF compiled for another structure is refused before
anything runs (rdu-run, rdu-test)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runtime.pef.schema import Symbol


def _pef_dtype(tensor: Any) -> str:
    """The PEF dtype a torch tensor of the model stands for (``f32``, ``i64``, ``i1``), or its
    torch dtype when it has none."""
    import torch

    if tensor.dtype == torch.bool:
        return "i1"
    if tensor.dtype.is_floating_point:
        return "f32"
    if not tensor.dtype.is_complex:
        return "i64"
    return str(tensor.dtype).removeprefix("torch.")


def structure_mismatch(module: Any, symbols: Sequence[Symbol]) -> str:
    """The first difference between ``module``'s parameters and buffers and the PEF's
    ``parameter``/``buffer`` symbols, in one phrase; "" when they agree.

    Every symbol must be a tensor of the module of the same role, shape and dtype (a float
    tensor fits an ``f32`` or a ``bf16`` symbol); every
    parameter of the module must be a symbol, or share its storage with one (tied weights are
    compiled once, under one name)."""
    params = dict(module.named_parameters(remove_duplicate=False))
    buffers = dict(module.named_buffers(remove_duplicate=False))
    wanted = [s for s in symbols if s.role in ("parameter", "buffer")]
    for sym in wanted:
        tensor = params.get(sym.name, buffers.get(sym.name))
        if tensor is None:
            return (
                f"the PEF has {sym.role} '{sym.name}' {sym.shape} {sym.dtype}, the model has none"
            )
        role = "parameter" if sym.name in params else "buffer"
        shape, dtype = list(tensor.shape), _pef_dtype(tensor)
        # a float tensor fits a bf16 symbol too (--precision bf16: rounded when it is loaded)
        fits = dtype == sym.dtype or (dtype == "f32" and sym.dtype == "bf16")
        if role != sym.role or shape != list(sym.shape) or not fits:
            return (
                f"'{sym.name}' is a {role} {shape} {dtype} in the model, a {sym.role} "
                f"{sym.shape} {sym.dtype} in the PEF"
            )
    names = {s.name for s in wanted}
    storages = {t.data_ptr() for n, t in {**params, **buffers}.items() if n in names and t.numel()}
    for name, tensor in params.items():
        if name not in names and not (tensor.numel() and tensor.data_ptr() in storages):
            return (
                f"the model has parameter '{name}' {list(tensor.shape)} "
                f"{_pef_dtype(tensor)}, the PEF has none"
            )
    return ""


_COMPILED_IN = {"SGD": ("nesterov", "maximize"), "AdamW": ("amsgrad", "maximize")}
"""Settings an optimizer section is compiled with (rdu-compile refuses them set): a run cannot
change them, only the run-time hyperparameters (lr, momentum, weight decay, betas, eps)."""

_RUN_TIME = ("lr", "momentum", "dampening", "weight_decay", "betas", "eps")


def optimizer_mismatch(optimizer: Any, module: Any, compiled: str, updated: set[str]) -> str:
    """The first way the model file's ``optimizer`` differs from the update the PEF's optimizer
    section computes (``compiled``: ``sgd``, ``sgd_no_momentum``, ``adamw``; ``updated``: the
    parameters it writes), in one phrase; "" when it fits. A difference would be dropped
    without a word: the PEF's update is fixed and takes one value of each run-time
    hyperparameter."""
    import torch

    name = type(optimizer).__name__
    kinds = {"sgd": torch.optim.SGD, "sgd_no_momentum": torch.optim.SGD, "adamw": torch.optim.AdamW}
    wanted = kinds.get(compiled)
    if wanted is None or type(optimizer) is not wanted:
        return f"the model's optimizer() is {name}, the PEF was compiled for '{compiled}'"
    groups = optimizer.param_groups
    for key in _COMPILED_IN[name]:
        if any(group.get(key) for group in groups):
            return f"the model's optimizer() is {name} with {key}=True (not supported yet)"
    for key in _RUN_TIME:
        values = {repr(group.get(key)) for group in groups}
        if len(values) > 1:
            return (
                f"the model's optimizer() has param groups with different {key} "
                f"({', '.join(sorted(values))}), the PEF takes one"
            )
    if compiled == "sgd_no_momentum" and groups[0].get("momentum", 0) != 0:
        return (
            f"the model's optimizer() has momentum {groups[0]['momentum']}, the PEF was compiled "
            "without momentum"
        )
    params = dict(module.named_parameters(remove_duplicate=False))
    held = {id(p) for group in groups for p in group["params"]}
    if held - {id(p) for p in params.values()}:
        return "the model's optimizer() holds a tensor that is not a parameter of the model"
    left_out = sorted(n for n in updated if n in params and id(params[n]) not in held)
    if left_out:
        return (
            f"the PEF's optimizer updates '{left_out[0]}', the model's optimizer() does not "
            f"hold it ({len(left_out)} such)"
        )
    return ""
