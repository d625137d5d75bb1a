"""A tiny numpy reference interpreter for the dataflow dialect (a test tool only).

    outputs = run_section(section, {"fc1.weight": array, ...})   # -> {result name: array}

Each op is evaluated with numpy on whole tensors, in program order; it is here to check the
frontend's IR against torch, not to be fast or to model the fabric.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
from xdsl.dialects.builtin import Float32Type, IntegerType, TensorType
from xdsl.ir import Attribute, SSAValue

from dialects.dataflow import (
    AsStridedOp,
    BroadcastOp,
    FillOp,
    IotaOp,
    MatmulOp,
    PadOp,
    PointwiseOp,
    ReduceOp,
    ReshapeOp,
    SectionOp,
    TransposeOp,
    YieldOp,
)

_erf = np.vectorize(math.erf, otypes=[np.float64])


def np_dtype(elt: Attribute) -> type[np.generic]:
    """The numpy dtype of an element type (f32, i64, i1)."""
    if isinstance(elt, Float32Type):
        return np.float32
    if isinstance(elt, IntegerType) and elt.width.data == 1:
        return np.bool_
    if isinstance(elt, IntegerType):
        return np.int64
    raise NotImplementedError(f"element type {elt}")


def _result_type(v: SSAValue) -> tuple[tuple[int, ...], type[np.generic]]:
    t = v.type
    assert isinstance(t, TensorType)
    return tuple(t.get_shape()), np_dtype(t.element_type)


_POINTWISE: dict[str, Callable[..., np.ndarray]] = {
    "neg": np.negative,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "rsqrt": lambda x: 1 / np.sqrt(x),
    "tanh": np.tanh,
    "erf": lambda x: _erf(x),
    "cos": np.cos,
    "sin": np.sin,
    "abs": np.abs,
    "relu": lambda x: np.maximum(x, 0),
    "not": np.logical_not,
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "max": np.maximum,
    "min": np.minimum,
    "pow": np.power,
    "eq": np.equal,
    "ne": np.not_equal,
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "and": np.logical_and,
    "or": np.logical_or,
    "select": np.where,
    "cast": lambda x: x,
}


def run_section(section: SectionOp, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Evaluate ``section`` on named inputs; its results by name."""
    env: dict[SSAValue, np.ndarray] = {}
    names = [n.data for n in section.arg_names]
    missing = [n for n in names if n not in inputs]
    if missing:
        raise KeyError(f"section {section.sym_name.data} needs {missing}")
    for name, arg in zip(names, section.body.block.args, strict=True):
        shape, dtype = _result_type(arg)
        value = np.asarray(inputs[name]).astype(dtype)
        assert value.shape == shape, f"{name}: shape {value.shape}, expected {shape}"
        env[arg] = value
    for op in section.body.block.ops:
        if isinstance(op, YieldOp):
            return {n.data: env[v] for n, v in zip(section.result_names, op.values, strict=True)}
        env[op.results[0]] = _eval(op, env)
    raise AssertionError("section without a yield")


def run_module(sections: list[SectionOp], state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run sections in order over one DRAM dictionary (results overwrite it); return it."""
    for section in sections:
        state.update(run_section(section, state))
    return state


def _eval(op: object, env: dict[SSAValue, np.ndarray]) -> np.ndarray:
    if isinstance(op, FillOp):
        shape, dtype = _result_type(op.result)
        return np.full(shape, op.number, dtype=dtype)
    if isinstance(op, IotaOp):
        shape, dtype = _result_type(op.result)
        dim = op.dim.value.data
        idx = np.arange(shape[dim]).reshape([-1 if i == dim else 1 for i in range(len(shape))])
        return np.broadcast_to(idx, shape).astype(dtype)
    if isinstance(op, PointwiseOp):
        shape, dtype = _result_type(op.result)
        args = [env[v] for v in op.inputs]
        with np.errstate(all="ignore"):
            out = _POINTWISE[op.kind.data](*args)
        return np.broadcast_to(np.asarray(out).astype(dtype), shape)
    if isinstance(op, ReduceOp):
        shape, dtype = _result_type(op.result)
        dims = tuple(op.dims.get_values())
        fn = {"sum": np.sum, "max": np.max, "min": np.min}[op.kind.data]
        out = fn(env[op.input], axis=dims, keepdims=op.keeps_dims())
        return np.asarray(out).astype(dtype).reshape(shape)
    if isinstance(op, MatmulOp):
        return np.matmul(env[op.lhs], env[op.rhs])
    if isinstance(op, TransposeOp):
        return np.transpose(env[op.input], op.perm.get_values())
    if isinstance(op, ReshapeOp):
        shape, _ = _result_type(op.result)
        return np.reshape(env[op.input], shape)
    if isinstance(op, BroadcastOp):
        shape, _ = _result_type(op.result)
        return np.broadcast_to(env[op.input], shape)
    if isinstance(op, AsStridedOp):
        shape, _ = _result_type(op.result)
        flat = np.ascontiguousarray(env[op.input]).reshape(-1)
        index = op.offset.value.data + sum(
            np.arange(n).reshape([-1 if i == d else 1 for i in range(len(shape))]) * s
            for d, (n, s) in enumerate(zip(shape, op.strides.get_values(), strict=True))
        )
        return flat[np.broadcast_to(index, shape)]
    if isinstance(op, PadOp):
        shape, dtype = _result_type(op.result)
        out = np.zeros(shape, dtype)
        where = tuple(
            slice(lo, lo + (n - 1) * (mid + 1) + 1, mid + 1)
            for n, lo, mid in zip(
                env[op.input].shape, op.low.get_values(), op.interior.get_values(), strict=True
            )
        )
        out[where] = env[op.input]
        return out
    raise NotImplementedError(f"no interpreter rule for {op}")
