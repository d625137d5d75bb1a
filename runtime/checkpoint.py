"""``.pt`` checkpoints that load straight into the user's torch model and optimizer.

A checkpoint is ``{"model": state_dict, "optimizer": optimizer state_dict, "step": int}``
written with ``torch.save`` (atomically: temp file, fsync, rename) and read with
``torch.load(weights_only=True)`` (loading never runs code from the file). So
``model.load_state_dict(ckpt["model"])`` and ``torch.optim.SGD(model.parameters(), ...)
.load_state_dict(ckpt["optimizer"])`` work on what ``rdu-run`` writes.

The optimizer state lives in DRAM under ``<param>.<state>`` names (``net.0.weight.momentum_buffer``,
``.exp_avg``, ``.exp_avg_sq``); ``optimizer_to_torch`` / ``optimizer_from_torch`` convert between
those and torch's format ``{"state": {i: {...}}, "param_groups": [{..., "params": [0..n-1]}]}``
given the parameters in the model's ``parameters()`` order.

torch is imported lazily, only here: the rest of the runtime runs without it.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypedDict

import numpy as np

from runtime.dtypes import HOST_KINDS, NUMPY_DTYPES
from runtime.errors import RduError
from runtime.machine.atomic import atomic_writer
from runtime.machine.files import not_a_regular_file
from runtime.pef.schema import Symbol

_NP_DTYPES = NUMPY_DTYPES
_KINDS = HOST_KINDS

STATE_KEYS: dict[str, tuple[str, ...]] = {
    "sgd": ("momentum_buffer",),
    "adamw": ("exp_avg", "exp_avg_sq"),
    "adam": ("exp_avg", "exp_avg_sq"),
}


class CheckpointError(RduError):
    """A checkpoint that cannot be read or does not fit the PEF: names the tensor."""


class Checkpoint(TypedDict):
    """A loaded checkpoint, tensors as numpy arrays."""

    model: dict[str, np.ndarray]
    optimizer: dict[str, Any] | None
    step: int


def _torch() -> Any:
    import torch

    return torch


def _to_tensor(value: Any) -> Any:
    """numpy arrays (nested in dicts, lists and tuples) to torch tensors; the rest unchanged."""
    torch = _torch()
    if isinstance(value, np.ndarray | np.generic):
        return torch.from_numpy(np.array(value, copy=True))
    if isinstance(value, Mapping):
        return {k: _to_tensor(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_tensor(v) for v in value)
    return value


def _to_numpy(value: Any) -> Any:
    """torch tensors (nested) to numpy arrays (float16/bfloat16 widened to float32)."""
    torch = _torch()
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.float()
        return np.array(tensor.numpy(), copy=True)
    if isinstance(value, Mapping):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_numpy(v) for v in value)
    return value


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: Mapping[str, np.ndarray],
    optimizer: Mapping[str, Any] | None,
    step: int,
) -> None:
    """Write a checkpoint atomically. ``optimizer`` is in torch's format (see
    ``optimizer_to_torch``), with numpy arrays or tensors."""
    torch = _torch()
    payload = {  # the arrays themselves, not copies: serialised at once (0.5B: 2 GB a copy)
        "model": {name: _as_tensor(v) for name, v in model.items()},
        "optimizer": _to_tensor(dict(optimizer)) if optimizer is not None else None,
        "step": int(step),
    }
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(directory, exist_ok=True)
    # Streamed to the file, not serialised in memory first (the whole checkpoint again, and
    # more while a BytesIO grows); torch.save's zip writer reports a failed write as a
    # RuntimeError ("unexpected pos"), so the write's own OSError (ENOSPC) is kept and raised.
    with atomic_writer(path) as handle:
        writer = _Writer(handle)
        try:
            torch.save(payload, writer)
        except RuntimeError:
            if writer.error is not None:
                raise writer.error from None
            raise


def _as_tensor(value: Any) -> Any:
    """A numpy array as a tensor sharing its memory (a read-only array: copied)."""
    array = np.asarray(value)
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, copy=True)
    return _torch().from_numpy(array)


class _Writer(io.RawIOBase):
    """A binary file that keeps the ``OSError`` of a failed write (``error``) for the caller."""

    def __init__(self, handle: Any) -> None:
        super().__init__()
        self.handle = handle
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.handle.flush()


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    expected: Sequence[Symbol] | None = None,
    allowed: Collection[str] | None = None,
) -> Checkpoint:
    """Read a checkpoint (or a bare model state_dict) as numpy arrays.

    With ``expected``, the model tensors are checked against those symbols (every one present,
    shapes equal) and converted to their dtypes. With ``allowed`` too (the model's state_dict
    keys), loading is strict like ``load_state_dict``: a tensor neither expected nor allowed is
    refused by name (a checkpoint of another model).
    """
    torch = _torch()
    where = os.fspath(path)
    problem = not_a_regular_file(where)
    if problem:
        raise CheckpointError(f"{where}: {problem}")
    try:
        data = torch.load(where, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{where}: no such checkpoint file") from None
    except Exception as exc:  # torch raises many types for a foreign or damaged file
        raise CheckpointError(f"{where}: not a readable checkpoint: {_why(exc)}") from None
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{where}: holds a {type(data).__name__}, not a checkpoint dict")
    if "model" in data:
        model, optimizer, step = data["model"], data.get("optimizer"), data.get("step", 0)
    elif all(isinstance(v, torch.Tensor) for v in data.values()):
        model, optimizer, step = data, None, 0  # a bare model.state_dict()
    else:
        raise CheckpointError(f"{where}: has no 'model' entry (keys: {', '.join(map(str, data))})")
    if not isinstance(model, Mapping):
        raise CheckpointError(f"{where}: 'model' is a {type(model).__name__}, not a state_dict")
    for name, value in model.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{where}: model entry '{name}' is not a tensor")
    if optimizer is not None and not isinstance(optimizer, Mapping):
        raise CheckpointError(f"{where}: 'optimizer' is a {type(optimizer).__name__}")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{where}: 'step' is {step!r}, not a step count")
    arrays = _to_numpy(dict(model))
    if expected is not None:
        arrays = conform_tensors(arrays, expected, f"{where}: model")
        if allowed is not None:
            known = set(allowed) | {s.name for s in expected}
            extra = [name for name in arrays if name not in known]
            if extra:
                more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
                raise CheckpointError(
                    f"{where}: model: unexpected tensor '{extra[0]}'{more}: not in the model "
                    "or the PEF (a checkpoint of another model?)"
                )
    return Checkpoint(
        model=arrays,
        optimizer=_to_numpy(dict(optimizer)) if optimizer is not None else None,
        step=step,
    )


def _why(exc: Exception) -> str:
    """torch.load's complaint in one line, without its terminal colours; for a file that holds
    more than tensors, what it would have run."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    if "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        what = f" ({found.group(1)})" if found else ""
        return (
            f"it holds Python objects{what} that loading would run; checkpoints are read with "
            "torch.load(weights_only=True) and hold only tensors"
        )
    return text.splitlines()[0] if text else type(exc).__name__


def conform_tensors(
    tensors: Mapping[str, np.ndarray], expected: Sequence[Symbol], what: str = "checkpoint"
) -> dict[str, np.ndarray]:
    """``tensors`` with every expected symbol present, of its shape, converted to its dtype."""
    out = dict(tensors)
    for sym in expected:
        if sym.name not in tensors:
            raise CheckpointError(
                f"{what}: missing tensor '{sym.name}' (the PEF expects {sym.shape} {sym.dtype})"
            )
        array = np.asarray(tensors[sym.name])
        if array.shape != tuple(sym.shape):
            raise CheckpointError(
                f"{what}: tensor '{sym.name}' has shape {list(array.shape)}, the PEF expects "
                f"{sym.shape}"
            )
        if array.dtype.kind not in _KINDS[sym.dtype]:
            raise CheckpointError(
                f"{what}: tensor '{sym.name}' is {array.dtype}, the PEF expects {sym.dtype}"
            )
        out[sym.name] = array.astype(_NP_DTYPES[sym.dtype], copy=False)
    return out


_DISPLAY = {"sgd": "SGD", "adamw": "AdamW", "adam": "Adam"}


def _family(kind: str) -> str:
    """Optimizers whose state is the same tensors (Adam and AdamW: ``exp_avg``,
    ``exp_avg_sq``)."""
    return "adam" if kind in ("adam", "adamw") else kind


def saved_optimizer_kind(state_dict: Mapping[str, Any]) -> str | None:
    """Which optimizer a torch optimizer state_dict comes from: ``sgd`` or ``adam`` (Adam,
    AdamW), from its param_groups' settings or its per-parameter state; None if it does not
    say."""
    groups = state_dict.get("param_groups")
    if isinstance(groups, list) and groups and isinstance(groups[0], Mapping):
        if "betas" in groups[0]:
            return "adam"
        if "momentum" in groups[0]:
            return "sgd"
    per_param = state_dict.get("state")
    if isinstance(per_param, Mapping):
        for entry in per_param.values():
            if isinstance(entry, Mapping):
                if "exp_avg" in entry:
                    return "adam"
                if "momentum_buffer" in entry:
                    return "sgd"
    return None


def optimizer_mismatch(checkpoint: Checkpoint, optimizer: str) -> str:
    """Why ``checkpoint``'s optimizer state cannot continue a PEF's ``optimizer``, or "": it
    has none, or it is another optimizer's."""
    name = _DISPLAY.get(optimizer.lower(), optimizer)
    saved = checkpoint["optimizer"]
    if saved is None:
        return f"has no optimizer state for the PEF's {name}"
    kind = saved_optimizer_kind(saved)
    if kind is not None and kind != _family(optimizer.lower()):
        saved_name = "SGD" if kind == "sgd" else "Adam/AdamW"
        return f"holds {saved_name} optimizer state, the PEF's optimizer is {name}"
    return ""


def _kind(optimizer: str) -> str:
    kind = optimizer.lower()
    if kind not in STATE_KEYS:
        raise CheckpointError(
            f"optimizer '{optimizer}' has no checkpoint format (known: {', '.join(STATE_KEYS)})"
        )
    return kind


def _param_group(kind: str, hyper: Mapping[str, float], count: int) -> dict[str, Any]:
    """torch's param_group for these hyperparameters, every default key included."""
    torch = _torch()
    dummy = [torch.zeros(1, requires_grad=True)]
    lr = float(hyper.get("lr", 1e-3))
    weight_decay = float(hyper.get("weight_decay", 0.0 if kind == "sgd" else 1e-2))
    if kind == "sgd":
        opt = torch.optim.SGD(
            dummy,
            lr=lr,
            momentum=float(hyper.get("momentum", 0.0)),
            dampening=float(hyper.get("dampening", 0.0)),
            weight_decay=weight_decay,
            nesterov=bool(hyper.get("nesterov", False)),
        )
    else:
        cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
        opt = cls(
            dummy,
            lr=lr,
            betas=(float(hyper.get("beta1", 0.9)), float(hyper.get("beta2", 0.999))),
            eps=float(hyper.get("eps", 1e-8)),
            weight_decay=weight_decay,
        )
    group = dict(opt.state_dict()["param_groups"][0])
    group["params"] = list(range(count))
    return group


def optimizer_to_torch(
    state: Mapping[str, np.ndarray],
    params: Sequence[str],
    optimizer: str,
    hyper: Mapping[str, float],
    step: int,
) -> dict[str, Any]:
    """torch's optimizer state_dict from DRAM optimizer state (``<param>.<key>`` names).

    ``params`` are the parameter names in ``model.parameters()`` order. At step 0 the state is
    empty, as torch's is before its first step.
    """
    kind = _kind(optimizer)
    torch = _torch()
    per_param: dict[int, dict[str, Any]] = {}
    if step > 0:
        for i, name in enumerate(params):
            keys = [key for key in STATE_KEYS[kind] if f"{name}.{key}" in state]
            if not keys:  # frozen or without a gradient: torch keeps no state for it either
                continue
            entry: dict[str, Any] = {}
            if kind != "sgd":
                entry["step"] = torch.tensor(float(step), dtype=torch.float32)
                if len(keys) != len(STATE_KEYS[kind]):
                    missing = next(k for k in STATE_KEYS[kind] if k not in keys)
                    raise CheckpointError(f"optimizer state: missing tensor '{name}.{missing}'")
            for key in keys:
                entry[key] = torch.from_numpy(np.array(state[f"{name}.{key}"], copy=True))
            per_param[i] = entry
    return {"state": per_param, "param_groups": [_param_group(kind, hyper, len(params))]}


def optimizer_from_torch(
    state_dict: Mapping[str, Any],
    params: Sequence[str],
    optimizer: str,
    expected: Sequence[Symbol] | None = None,
) -> dict[str, np.ndarray]:
    """DRAM optimizer state (``<param>.<key>`` arrays) from torch's optimizer state_dict.

    Tensors may be torch tensors or numpy arrays (as ``load_checkpoint`` returns). State torch
    has not created yet (before the first step) is left out: the session starts it at zeros.
    With ``expected`` (the PEF's optimizer_state symbols) shapes and dtypes are checked.
    """
    kind = _kind(optimizer)
    groups = state_dict.get("param_groups")
    per_param = state_dict.get("state")
    if not isinstance(groups, list) or not isinstance(per_param, Mapping):
        raise CheckpointError("optimizer state: needs 'state' and 'param_groups' (torch format)")
    count = sum(len(g.get("params", [])) for g in groups if isinstance(g, Mapping))
    if count != len(params):
        raise CheckpointError(
            f"optimizer state: covers {count} parameters, the PEF has {len(params)}"
        )
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(params):
        entry = per_param.get(i, per_param.get(str(i)))
        if entry is None:
            continue
        for key in STATE_KEYS[kind]:
            value = entry.get(key)
            if value is not None:
                out[f"{name}.{key}"] = np.asarray(_to_numpy(value))
    if expected is not None:
        present = [s for s in expected if s.name in out]
        out = conform_tensors(out, present, "optimizer state")
    return out
