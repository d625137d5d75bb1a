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

    Every symbol must be a tensor of the module of the same role, shape and dtype; every
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
        if role != sym.role or shape != list(sym.shape) or dtype != sym.dtype:
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
