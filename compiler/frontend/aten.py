"""ATen ops -> dataflow primitives: one small function per op, registered by the op's name.

To support a new op, add a function decorated with ``@converts("aten.name.overload")``. It gets a
:class:`Call` (the emitter, the FX node and its arguments by schema name, FX nodes replaced by
their IR values) and returns the op's value (or a tuple for multi-result ops). Raise
:class:`ConversionError` for a form of the op that is not supported (the caller turns it into an
``UnsupportedOpError`` naming the user's line).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from xdsl.dialects.builtin import bf16, f32, i1, i64
from xdsl.ir import Attribute, SSAValue

from compiler.frontend.converter import Call, ConversionError, Converter, ConverterTable, Result
from compiler.frontend.emitter import Emitter, Operand, elt_of, is_float, promote, shape_of
from compiler.frontend.int_bounds import INT32, int_range

TABLE = ConverterTable()
"""This family's converters (the registry joins it with the others)."""
converts = TABLE.converts


def reduction_dims(dim: Any, rank: int) -> list[int]:
    """Normalized reduction dims; None or [] means all dims."""
    if dim is None:
        return list(range(rank))
    if isinstance(dim, int):
        dim = [dim]
    dims = [d % rank if rank else 0 for d in dim]
    return dims if dims else list(range(rank))


# ------------------------------------------------------------------------------------------
# identity and views
# ------------------------------------------------------------------------------------------

IDENTITY_OPS = frozenset(
    {
        "aten.detach.default",
        "aten.alias.default",
        "aten.clone.default",
        "aten.lift_fresh_copy.default",
        "aten.contiguous.default",
        "aten.dropout.default",
    }
)
"""Ops that return their first argument's value unchanged."""

VIEW_OPS = frozenset(
    {
        "aten.t.default",
        "aten.transpose.int",
        "aten.permute.default",
        "aten.numpy_T.default",
        "aten.view.default",
        "aten._unsafe_view.default",
        "aten.reshape.default",
        "aten.view_copy.default",
        "aten.unsqueeze.default",
        "aten.squeeze.dim",
        "aten.squeeze.dims",
        "aten.squeeze.default",
        "aten.flatten.using_ints",
        "aten.unflatten.int",
        "aten.expand.default",
        "aten.expand_copy.default",
        "aten.permute_copy.default",
        "aten.t_copy.default",
        "aten.transpose_copy.int",
    }
)
"""Ops that only re-view their input (cheap to recompute instead of saving)."""


@converts(*IDENTITY_OPS)
def _identity(c: Call) -> Result:
    if c.node.target == torch.ops.aten.dropout.default and c.a.get("train"):
        raise ConversionError("dropout in training mode")
    return c.tensor(next(iter(c.a)))


@converts("aten._assert_tensor_metadata.default")
def _no_result(c: Call) -> Result:
    return None


@converts("aten.t.default", "aten.t_copy.default")
def _t(c: Call) -> Result:
    x = c.tensor("self")
    return c.em.transpose(x, [1, 0]) if len(shape_of(x)) == 2 else x


@converts("aten.transpose.int", "aten.transpose_copy.int")
def _transpose(c: Call) -> Result:
    x = c.tensor("self")
    rank = len(shape_of(x))
    if rank < 2:
        return x
    perm = list(range(rank))
    d0, d1 = c.dim(rank, "dim0"), c.dim(rank, "dim1")
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return c.em.transpose(x, perm)


@converts("aten.permute.default", "aten.permute_copy.default")
def _permute(c: Call) -> Result:
    x = c.tensor("self")
    rank = len(shape_of(x))
    return c.em.transpose(x, [d % rank for d in c.a["dims"]])


@converts("aten.numpy_T.default")
def _numpy_t(c: Call) -> Result:
    x = c.tensor("self")
    return c.em.transpose(x, list(reversed(range(len(shape_of(x))))))


@converts(
    "aten.view.default",
    "aten._unsafe_view.default",
    "aten.reshape.default",
    "aten.view_copy.default",
    "aten.unsqueeze.default",
    "aten.squeeze.dim",
    "aten.squeeze.dims",
    "aten.squeeze.default",
    "aten.flatten.using_ints",
    "aten.unflatten.int",
)
def _reshape(c: Call) -> Result:
    return c.em.reshape(c.tensor("self"), c.out_shape)


@converts("aten.expand.default", "aten.expand_copy.default")
def _expand(c: Call) -> Result:
    return c.em.broadcast(c.tensor("self"), c.out_shape)


# ------------------------------------------------------------------------------------------
# constants
# ------------------------------------------------------------------------------------------


def _fill_out(c: Call, value: Any) -> Result:
    shape, elt = c.out()
    return c.em.fill(value, shape, elt)


@converts("aten.full.default", "aten.full_like.default", "aten.new_full.default")
def _full(c: Call) -> Result:
    return _fill_out(c, c.a["fill_value"])


@converts(
    "aten.zeros.default",
    "aten.zeros_like.default",
    "aten.new_zeros.default",
)
def _zeros(c: Call) -> Result:
    return _fill_out(c, 0)


@converts("aten.ones.default", "aten.ones_like.default", "aten.new_ones.default")
def _ones(c: Call) -> Result:
    return _fill_out(c, 1)


@converts("aten.scalar_tensor.default")
def _scalar_tensor(c: Call) -> Result:
    return _fill_out(c, c.a["s"])


@converts("aten.arange.default", "aten.arange.start", "aten.arange.start_step")
def _arange(c: Call) -> Result:
    shape, elt = c.out()
    start = c.a.get("start", 0) or 0
    step = c.a.get("step", 1) or 1
    x = c.em.iota(0, shape, elt if elt != i1 else i64)
    if step != 1:
        x = c.em.mul(x, step)
    if start != 0:
        x = c.em.add(x, start)
    return c.em.cast(x, elt)


# ------------------------------------------------------------------------------------------
# elementwise
# ------------------------------------------------------------------------------------------


def _operand(c: Call, name: str) -> Operand:
    v = c.a[name]
    if isinstance(v, SSAValue | bool | int | float):
        return v
    raise ConversionError(f"argument {name} of type {type(v).__name__}")


def _arith(c: Call, kind: str, a: Operand, b: Operand) -> SSAValue:
    elt = c.out_elt
    return c.em.binary(kind, a, b, elt)


def _with_alpha(c: Call, kind: str) -> SSAValue:
    """``self <kind> alpha * other`` (torch's add/sub with their ``alpha`` argument)."""
    b = _operand(c, "other")
    alpha = c.a.get("alpha", 1)
    if alpha != 1:
        b = _arith(c, "mul", b, alpha)
    return _arith(c, kind, _operand(c, "self"), b)


@converts("aten.add.Tensor", "aten.add.Scalar")
def _add(c: Call) -> Result:
    return _with_alpha(c, "add")


@converts("aten.sub.Tensor", "aten.sub.Scalar")
def _sub(c: Call) -> Result:
    return _with_alpha(c, "sub")


@converts("aten.rsub.Scalar", "aten.rsub.Tensor")
def _rsub(c: Call) -> Result:
    a = _operand(c, "self")
    alpha = c.a.get("alpha", 1)
    if alpha != 1:
        a = _arith(c, "mul", a, alpha)
    return _arith(c, "sub", _operand(c, "other"), a)


@converts("aten.mul.Tensor", "aten.mul.Scalar")
def _mul(c: Call) -> Result:
    return _arith(c, "mul", _operand(c, "self"), _operand(c, "other"))


@converts("aten.div.Tensor", "aten.div.Scalar", "aten.div.Tensor_mode", "aten.div.Scalar_mode")
def _div(c: Call) -> Result:
    """``a / b``; with ``rounding_mode`` ``"trunc"`` or ``"floor"``, the quotient rounded so
    (``//`` and ``remainder``'s gradient are the floor's)."""
    em, elt = c.em, c.out_elt
    a, b = _operand(c, "self"), _operand(c, "other")
    quotient = _arith(c, "div", a, b)  # a Python number as bf16's div takes it (Emitter.binary)
    mode = c.a.get("rounding_mode")
    if mode is None:
        return quotient
    if mode == "trunc":
        return truncated(em, quotient) if is_float(elt) else quotient
    if mode == "floor":
        if is_float(elt):
            return floored(em, quotient)
        # toward zero: one less where a remainder has b's other sign
        a, b = em.as_tensor(a, elt), em.as_tensor(b, elt)
        return em.sub(quotient, em.cast(_other_sign(em, em.sub(a, em.mul(quotient, b)), b), elt))
    raise ConversionError(f"rounding_mode={mode!r}")


def truncated(em: Emitter, x: SSAValue) -> SSAValue:
    """``trunc`` of a float tensor: a cast to i64 and back; magnitudes from ``2**23`` on are
    whole already (f32) and stay as they are, as do infinities and NaN."""
    whole = em.cast(em.cast(x, i64), elt_of(x))
    return em.select(em.binary("lt", em.unary("abs", x), float(2**23)), whole, x)


def floored(em: Emitter, x: SSAValue) -> SSAValue:
    """``floor`` of a float tensor: the truncation, less one where it rounded up (a negative
    fraction)."""
    whole = truncated(em, x)
    return em.select(em.binary("gt", whole, x), em.sub(whole, 1.0), whole)


def _other_sign(em: Emitter, r: SSAValue, b: SSAValue) -> SSAValue:
    """Where a truncated division's remainder ``r`` is not 0 and its sign is not the divisor
    ``b``'s: there the floored quotient is one less, the floored remainder ``r + b``."""
    zero = em.scalar(0, elt_of(r))
    signs_differ = em.binary("ne", em.binary("lt", r, zero), em.binary("lt", b, zero))
    return em.binary("and", em.binary("ne", r, zero), signs_differ)


def _fmod(em: Emitter, a: SSAValue, b: SSAValue) -> SSAValue:
    """``a - trunc(a / b) * b``: the remainder of the division toward zero, ``a``'s sign (the
    fabric's integer ``div`` rounds toward zero already)."""
    quotient = em.div(a, b)
    if is_float(elt_of(a)):
        quotient = truncated(em, quotient)
    return em.sub(a, em.mul(quotient, b))


@converts("aten.floor.default", "aten.trunc.default")
def _floor(c: Call) -> Result:
    """``floor`` (Swin's drop path rounds its random numbers so) and ``trunc``; the identity
    on integers."""
    x = c.tensor("self")
    if not is_float(elt_of(x)):
        return x
    return floored(c.em, x) if "floor" in str(c.node.target) else truncated(c.em, x)


@converts("aten.fmod.Tensor", "aten.fmod.Scalar")
def _fmod_op(c: Call) -> Result:
    """``fmod(a, b)``: the remainder with the dividend's sign (C's ``fmod``)."""
    em, elt = c.em, c.out_elt
    a, b = em.as_tensor(_operand(c, "self"), elt), em.as_tensor(_operand(c, "other"), elt)
    return _fmod(em, a, b)


@converts("aten.remainder.Tensor", "aten.remainder.Scalar", "aten.remainder.Scalar_Tensor")
def _remainder(c: Call) -> Result:
    """``a % b`` as torch (and Python) define it, the divisor's sign: ``a - floor(a / b) * b``,
    computed as torch's CPU kernel does, ``fmod`` plus ``b`` where their signs differ (CANINE
    hashes its ids so). Its gradient is ``div(rounding_mode="floor")``'s."""
    em, elt = c.em, c.out_elt
    a, b = em.as_tensor(_operand(c, "self"), elt), em.as_tensor(_operand(c, "other"), elt)
    r = _fmod(em, a, b)
    return em.select(_other_sign(em, r, b), em.add(r, b), r)


@converts("aten.maximum.default")
def _maximum(c: Call) -> Result:
    return _arith(c, "max", _operand(c, "self"), _operand(c, "other"))


@converts("aten.minimum.default")
def _minimum(c: Call) -> Result:
    return _arith(c, "min", _operand(c, "self"), _operand(c, "other"))


@converts("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor", "aten.pow.Scalar")
def _pow(c: Call) -> Result:
    base, exponent = _operand(c, "self"), _operand(c, "exponent")
    elt = c.out_elt
    if not isinstance(exponent, SSAValue):
        if exponent == 1:
            return c.em.as_tensor(base, elt)
        if exponent == 2:
            x = c.em.as_tensor(base, elt)
            return c.em.mul(x, x)
        if exponent == 0.5 and is_float(elt):
            return c.em.unary("sqrt", base, elt)
        if exponent == -0.5 and is_float(elt):
            return c.em.unary("rsqrt", base, elt)
    return c.em.binary("pow", base, exponent, elt)


def _unary(kind: str) -> Converter:
    def convert(c: Call) -> Result:
        return c.em.unary(kind, _operand(c, "self"), c.out_elt)

    convert.__doc__ = f"Pointwise '{kind}'."
    return convert


for _kind, _names in {
    "neg": ("aten.neg.default",),
    "exp": ("aten.exp.default",),
    "log": ("aten.log.default",),
    "sqrt": ("aten.sqrt.default",),
    "rsqrt": ("aten.rsqrt.default",),
    "tanh": ("aten.tanh.default",),
    "erf": ("aten.erf.default",),
    "cos": ("aten.cos.default",),
    "sin": ("aten.sin.default",),
    "abs": ("aten.abs.default",),
    "relu": ("aten.relu.default",),
}.items():
    converts(*_names)(_unary(_kind))


@converts("aten.sign.default", "aten.sgn.default")
def _sign(c: Call) -> Result:
    em, elt = c.em, c.out_elt
    x = c.em.as_tensor(_operand(c, "self"), elt)
    negative = em.select(em.binary("lt", x, 0, elt), em.scalar(-1, elt), em.scalar(0, elt))
    return em.select(em.binary("gt", x, 0, elt), em.scalar(1, elt), negative)


@converts("aten.reciprocal.default")
def _reciprocal(c: Call) -> Result:
    return c.em.div(1.0, c.em.as_tensor(_operand(c, "self"), c.out_elt))


@converts("aten.log1p.default")
def _log1p(c: Call) -> Result:
    x = c.em.as_tensor(_operand(c, "self"), c.out_elt)
    return c.em.unary("log", c.em.add(x, 1.0))


@converts("aten.expm1.default")
def _expm1(c: Call) -> Result:
    x = c.em.as_tensor(_operand(c, "self"), c.out_elt)
    return c.em.sub(c.em.unary("exp", x), 1.0)


def _sigmoid(em: Emitter, x: SSAValue) -> SSAValue:
    return em.div(1.0, em.add(em.unary("exp", em.unary("neg", x)), 1.0))


@converts("aten.sigmoid.default")
def _sigmoid_op(c: Call) -> Result:
    return _sigmoid(c.em, c.em.as_tensor(_operand(c, "self"), c.out_elt))


@converts("aten.sigmoid_backward.default")
def _sigmoid_backward(c: Call) -> Result:
    g, y = c.tensor("grad_output"), c.tensor("output")
    em = c.em
    return em.mul(g, em.mul(y, em.sub(1.0, y)))


@converts("aten.tanh_backward.default")
def _tanh_backward(c: Call) -> Result:
    g, y = c.tensor("grad_output"), c.tensor("output")
    em = c.em
    return em.mul(g, em.sub(1.0, em.mul(y, y)))


@converts("aten.silu.default")
def _silu(c: Call) -> Result:
    x = c.tensor("self")
    return c.em.mul(x, _sigmoid(c.em, x))


@converts("aten.silu_backward.default")
def _silu_backward(c: Call) -> Result:
    g, x = c.tensor("grad_output"), c.tensor("self")
    em = c.em
    s = _sigmoid(em, x)
    return em.mul(g, em.mul(s, em.add(em.mul(x, em.sub(1.0, s)), 1.0)))


_SQRT1_2 = 1.0 / math.sqrt(2.0)
_SQRT_2_PI = math.sqrt(2.0 / math.pi)


@converts("aten.gelu.default")
def _gelu(c: Call) -> Result:
    x, em = c.tensor("self"), c.em
    if c.a.get("approximate", "none") == "tanh":
        inner = em.mul(em.add(x, em.mul(em.mul(em.mul(x, x), x), 0.044715)), _SQRT_2_PI)
        return em.mul(em.mul(x, 0.5), em.add(em.unary("tanh", inner), 1.0))
    return em.mul(em.mul(x, 0.5), em.add(em.unary("erf", em.mul(x, _SQRT1_2)), 1.0))


@converts("aten.gelu_backward.default")
def _gelu_backward(c: Call) -> Result:
    g, x, em = c.tensor("grad_output"), c.tensor("self"), c.em
    if c.a.get("approximate", "none") == "tanh":
        x2 = em.mul(x, x)
        inner = em.mul(em.add(x, em.mul(em.mul(x2, x), 0.044715)), _SQRT_2_PI)
        t = em.unary("tanh", inner)
        left = em.mul(em.add(t, 1.0), 0.5)
        dinner = em.mul(em.add(em.mul(x2, 3 * 0.044715), 1.0), _SQRT_2_PI)
        right = em.mul(em.mul(em.mul(x, 0.5), em.sub(1.0, em.mul(t, t))), dinner)
        return em.mul(g, em.add(left, right))
    cdf = em.mul(em.add(em.unary("erf", em.mul(x, _SQRT1_2)), 1.0), 0.5)
    pdf = em.mul(em.unary("exp", em.mul(em.mul(x, x), -0.5)), 1.0 / math.sqrt(2.0 * math.pi))
    return em.mul(g, em.add(cdf, em.mul(x, pdf)))


@converts("aten.threshold_backward.default")
def _threshold_backward(c: Call) -> Result:
    g, y, em = c.tensor("grad_output"), c.tensor("self"), c.em
    return em.select(em.binary("le", y, c.a["threshold"], elt_of(y)), 0.0, g)


@converts("aten.threshold.default")
def _threshold(c: Call) -> Result:
    x, em = c.tensor("self"), c.em
    return em.select(em.binary("le", x, c.a["threshold"], elt_of(x)), c.a["value"], x)


def _compare(kind: str) -> Converter:
    def convert(c: Call) -> Result:
        a, b = _operand(c, "self"), _operand(c, "other")
        return c.em.binary(kind, a, b, promote(a, b))

    convert.__doc__ = f"Comparison '{kind}' (gives i1)."
    return convert


for _kind in ("eq", "ne", "lt", "le", "gt", "ge"):
    converts(f"aten.{_kind}.Tensor", f"aten.{_kind}.Scalar")(_compare(_kind))


@converts("aten.logical_and.default", "aten.bitwise_and.Tensor")
def _and(c: Call) -> Result:
    return _logical(c, "and")


@converts("aten.logical_or.default", "aten.bitwise_or.Tensor")
def _or(c: Call) -> Result:
    return _logical(c, "or")


def _logical(c: Call, kind: str) -> SSAValue:
    a, b = _operand(c, "self"), _operand(c, "other")
    if c.out_elt != i1:
        raise ConversionError("bitwise ops on non-bool tensors")
    em = c.em
    return em.binary(kind, truth(em, a), truth(em, b))


def truth(em: Emitter, x: Operand) -> SSAValue:
    """``x`` as an i1 tensor (non-zero is true); a Python scalar becomes an i1 constant."""
    if isinstance(x, SSAValue):
        return x if elt_of(x) == i1 else em.binary("ne", x, 0, elt_of(x))
    return em.scalar(bool(x), i1)


@converts("aten.logical_not.default", "aten.bitwise_not.default")
def _not(c: Call) -> Result:
    if c.out_elt != i1:
        raise ConversionError("bitwise not on a non-bool tensor")
    return c.em.pointwise("not", truth(c.em, _operand(c, "self")))


@converts(
    "aten.where.self",
    "aten.where.ScalarSelf",
    "aten.where.ScalarOther",
    "aten.where.Scalar",
)
def _where(c: Call) -> Result:
    em, elt = c.em, c.out_elt
    cond = truth(em, _operand(c, "condition"))
    return em.select(
        cond, em.as_tensor(_operand(c, "self"), elt), em.as_tensor(_operand(c, "other"), elt)
    )


@converts("aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def _masked_fill(c: Call) -> Result:
    em, elt = c.em, c.out_elt
    x = c.tensor("self")
    return em.select(truth(em, _operand(c, "mask")), em.as_tensor(_operand(c, "value"), elt), x)


@converts(
    "aten.clamp.default",
    "aten.clamp.Tensor",
    "aten.clamp_min.default",
    "aten.clamp_min.Tensor",  # F.normalize's and cosine similarity's eps, decomposed
    "aten.clamp_max.default",
    "aten.clamp_max.Tensor",
)
def _clamp(c: Call) -> Result:
    em, elt = c.em, c.out_elt
    x = em.as_tensor(_operand(c, "self"), elt)
    lo = c.a.get("min")
    hi = c.a.get("max")
    if lo is not None:
        x = em.binary("max", x, lo, elt)
    if hi is not None:
        x = em.binary("min", x, hi, elt)
    return x


@converts(
    "aten._to_copy.default",
    "aten.to.dtype",
    "aten.to.dtype_layout",
    "aten._to_dtype.default",
)
def _to_copy(c: Call) -> Result:
    x = c.tensor("self")
    val = c.node.meta.get("val")
    source = c.node.args[0] if c.node.args else None
    if isinstance(val, torch.Tensor) and val.dtype == torch.int32 and elt_of(x) in (f32, bf16):
        held = int_range(source) if isinstance(source, torch.fx.Node) else None
        if held is None or not (INT32[0] <= held[0] and held[1] <= INT32[1]):
            return _float_to_int32(c.em, x, c.out_elt)
    return c.em.cast(x, c.out_elt)


def _float_to_int32(em: Emitter, x: SSAValue, elt: Attribute) -> SSAValue:
    """A float cast to int32 as torch's CPU kernel casts it (x86's conversion): truncated, and a
    value outside int32 (an infinity, NaN) is ``-2**31``. So the result is within int32
    whatever the float (``int_bounds``), and matches torch's where it falls outside (ProphetNet
    casts the log of relative positions, minus infinity at 0, then selects it away)."""
    inside = em.binary(
        "and", em.binary("ge", x, -(2.0**31)), em.binary("lt", x, 2.0**31)
    )  # NaN is neither
    return em.select(inside, em.cast(x, elt), INT32[0])


# ------------------------------------------------------------------------------------------
# reductions
# ------------------------------------------------------------------------------------------


def _reduce(c: Call, kind: str, dim: Any, keepdim: bool) -> SSAValue:
    x = c.tensor("self")
    elt = c.out_elt
    if kind == "sum":
        x = c.em.cast(x, elt)
    return c.em.reduce(kind, x, reduction_dims(dim, len(shape_of(x))), keepdim)


@converts("aten.sum.dim_IntList", "aten.sum.default")
def _sum(c: Call) -> Result:
    return _reduce(c, "sum", c.a.get("dim"), bool(c.a.get("keepdim", False)))


@converts("aten.mean.dim", "aten.mean.default")
def _mean(c: Call) -> Result:
    """The sum over ``dim`` divided by its count. Of a bf16 tensor: summed and divided in f32,
    rounded to bf16 once, as torch's CPU kernel (a bf16 sum, rounded, then divided and rounded
    again, is another number where the count is not a power of two: a mean over 12 tokens)."""
    x = c.tensor("self")
    dims = reduction_dims(c.a.get("dim"), len(shape_of(x)))
    count = math.prod(shape_of(x)[d] for d in dims)
    keepdim = bool(c.a.get("keepdim", False))
    if c.out_elt == bf16:
        total = c.em.reduce("sum", c.em.cast(x, f32), dims, keepdim)
        return c.em.cast(c.em.div(total, float(count)), bf16)
    return c.em.div(_reduce(c, "sum", dims, keepdim), float(count))


@converts("aten.amax.default", "aten.max.default")
def _amax(c: Call) -> Result:
    return _reduce(c, "max", c.a.get("dim"), bool(c.a.get("keepdim", False)))


@converts("aten.amin.default", "aten.min.default")
def _amin(c: Call) -> Result:
    return _reduce(c, "min", c.a.get("dim"), bool(c.a.get("keepdim", False)))


def arg_extreme(em: Emitter, x: SSAValue, kind: str, dim: int) -> SSAValue:
    """The index along ``dim`` (kept, size 1) of the first maximum (``kind`` ``max``) or
    minimum of ``x``, a NaN counting as the extreme, as torch's ``argmax`` / ``max.dim``: the
    positions where ``x`` equals its extreme (or is NaN), the least of them."""
    shape = shape_of(x)
    extreme = em.reduce(kind, x, [dim], True)  # NaN-propagating, as the fabric's max
    hit = em.binary("eq", x, em.broadcast(extreme, shape))
    if is_float(elt_of(x)):
        hit = em.binary("or", hit, em.binary("ne", x, x))
    candidates = em.select(hit, em.iota(dim, shape), shape[dim])
    return em.reduce("min", candidates, [dim], True)


@converts("aten.argmax.default", "aten.argmin.default")
def _argmax(c: Call) -> Result:
    """``argmax(x, dim=None, keepdim=False)``: over the flattened tensor when ``dim`` is None."""
    em = c.em
    x = c.tensor("self")
    kind = "max" if "argmax" in str(c.node.target) else "min"
    dim = c.a.get("dim")
    if dim is None:
        flat = em.reshape(x, (math.prod(shape_of(x)),))
        index = arg_extreme(em, flat, kind, 0)
        return em.reshape(index, [1] * len(shape_of(x)) if c.a.get("keepdim") else ())
    dim = dim % max(len(shape_of(x)), 1)
    index = arg_extreme(em, x, kind, dim)
    return index if c.a.get("keepdim") else em.reshape(index, c.out_shape)


@converts("aten.max.dim", "aten.min.dim")
def _max_dim(c: Call) -> Result:
    """``max(x, dim, keepdim)``: the values and the index of the first extreme, as torch."""
    em = c.em
    x = c.tensor("self")
    kind = "max" if str(c.node.target).startswith("aten.max") else "min"
    dim = c.dim(len(shape_of(x)))
    keepdim = bool(c.a.get("keepdim", False))
    values = em.reduce(kind, x, [dim], keepdim)
    index = arg_extreme(em, x, kind, dim)
    return values, index if keepdim else em.reshape(index, shape_of(values))


def _var(
    em: Emitter, x: SSAValue, dims: list[int], correction: float, keepdim: bool
) -> tuple[SSAValue, SSAValue]:
    n = math.prod(shape_of(x)[d] for d in dims)
    mean = em.div(em.reduce("sum", x, dims, True), float(n))
    d = em.sub(x, mean)
    var = em.div(em.reduce("sum", em.mul(d, d), dims, keepdim), float(max(n - correction, 0)))
    if not keepdim:
        mean = em.reshape(mean, shape_of(var))
    return var, mean


def _correction(c: Call) -> float:
    corr = c.a.get("correction")
    if corr is None:
        return 0.0 if c.a.get("unbiased") is False else 1.0
    return float(corr)


@converts("aten.var.correction", "aten.var.dim")
def _var_op(c: Call) -> Result:
    x = c.tensor("self")
    dims = reduction_dims(c.a.get("dim"), len(shape_of(x)))
    return _var(c.em, x, dims, _correction(c), bool(c.a.get("keepdim", False)))[0]


@converts("aten.var_mean.correction", "aten.var_mean.dim")
def _var_mean(c: Call) -> Result:
    x = c.tensor("self")
    dims = reduction_dims(c.a.get("dim"), len(shape_of(x)))
    return _var(c.em, x, dims, _correction(c), bool(c.a.get("keepdim", False)))


@converts("aten.logsumexp.default")
def _logsumexp(c: Call) -> Result:
    x, em = c.tensor("self"), c.em
    dims = reduction_dims(c.a.get("dim"), len(shape_of(x)))
    keep = bool(c.a.get("keepdim", False))
    m = em.reduce("max", x, dims, True)
    s = em.unary("log", em.reduce("sum", em.unary("exp", em.sub(x, m)), dims, True))
    r = em.add(s, m)
    return r if keep else em.reshape(r, c.out_shape)


# ------------------------------------------------------------------------------------------
# matmul family
# ------------------------------------------------------------------------------------------


@converts("aten.mm.default", "aten.bmm.default")
def _mm(c: Call) -> Result:
    return c.em.matmul(c.tensor("self"), c.tensor("mat2"))


@converts("aten.addmm.default")
def _addmm(c: Call) -> Result:
    em = c.em
    prod = em.matmul(c.tensor("mat1"), c.tensor("mat2"))
    alpha, beta = c.a.get("alpha", 1), c.a.get("beta", 1)
    if alpha != 1:
        prod = em.mul(prod, alpha)
    if beta == 0:
        return prod
    bias = c.tensor("self")
    if beta != 1:
        bias = em.mul(bias, beta)
    return em.add(prod, bias)


@converts("aten.matmul.default")
def _matmul(c: Call) -> Result:
    em = c.em
    a, b = c.tensor("self"), c.tensor("other")
    sa, sb = shape_of(a), shape_of(b)
    if len(sa) == 1:
        a, sa = em.reshape(a, (1, sa[0])), (1, sa[0])
    if len(sb) == 1:
        b, sb = em.reshape(b, (sb[0], 1)), (sb[0], 1)
    batch = torch.broadcast_shapes(sa[:-2], sb[:-2])
    a = em.broadcast(a, (*batch, *sa[-2:]))
    b = em.broadcast(b, (*batch, *sb[-2:]))
    return em.reshape(em.matmul(a, b), c.out_shape)


@converts("aten.linear.default")
def _linear(c: Call) -> Result:
    em = c.em
    x, w = c.tensor("input"), c.tensor("weight")
    sx = shape_of(x)
    x2 = em.reshape(x, (math.prod(sx[:-1]), sx[-1]))
    y = em.matmul(x2, em.transpose(w, [1, 0]))
    if c.a.get("bias") is not None:
        y = em.add(y, c.tensor("bias"))
    return em.reshape(y, c.out_shape)


# ------------------------------------------------------------------------------------------
# softmax and losses
# ------------------------------------------------------------------------------------------


@converts("aten._log_softmax.default")
def _log_softmax(c: Call) -> Result:
    x, em = c.tensor("self"), c.em
    dim = c.dim(len(shape_of(x)))
    shifted = em.sub(x, em.reduce("max", x, [dim], True))
    lse = em.unary("log", em.reduce("sum", em.unary("exp", shifted), [dim], True))
    return em.sub(shifted, lse)


@converts("aten._softmax.default")
def _softmax(c: Call) -> Result:
    x, em = c.tensor("self"), c.em
    dim = c.dim(len(shape_of(x)))
    e = em.unary("exp", em.sub(x, em.reduce("max", x, [dim], True)))
    return em.div(e, em.reduce("sum", e, [dim], True))


@converts("aten._log_softmax_backward_data.default")
def _log_softmax_backward(c: Call) -> Result:
    g, y, em = c.tensor("grad_output"), c.tensor("output"), c.em
    dim = c.dim(len(shape_of(y)))
    return em.sub(g, em.mul(em.unary("exp", y), em.reduce("sum", g, [dim], True)))


@converts("aten._softmax_backward_data.default")
def _softmax_backward(c: Call) -> Result:
    g, y, em = c.tensor("grad_output"), c.tensor("output"), c.em
    dim = c.dim(len(shape_of(y)))
    return em.mul(y, em.sub(g, em.reduce("sum", em.mul(g, y), [dim], True)))


@dataclass
class _Nll:
    """The one-hot selection of targets shared by nll_loss forward and backward."""

    x: SSAValue  # [N, C]
    onehot: SSAValue  # i1 [N, C]
    weight: SSAValue  # f32 [N]: class weight of each sample, 0 where ignored


def _nll_setup(c: Call) -> _Nll:
    em = c.em
    x, target = c.tensor("self"), c.tensor("target")
    if len(shape_of(x)) == 1:
        x = em.reshape(x, (1, shape_of(x)[0]))
        target = em.reshape(target, (1,))
    if len(shape_of(x)) != 2:
        raise ConversionError("nll_loss on inputs of rank > 2")
    n, classes = shape_of(x)
    target = em.cast(target, i64)
    onehot = em.binary("eq", em.iota(1, (n, classes)), em.reshape(target, (n, 1)), i64)
    valid = em.binary("ne", target, int(c.a["ignore_index"]), i64)
    elt = elt_of(x)
    if c.a.get("weight") is None:
        weight = em.cast(valid, elt)
    else:
        per_class = em.select(onehot, em.reshape(c.tensor("weight"), (1, classes)), 0.0)
        weight = em.select(valid, em.reduce("sum", per_class, [1], False), 0.0)
    return _Nll(x, onehot, weight)


@converts("aten.nll_loss_forward.default")
def _nll_loss_forward(c: Call) -> Result:
    em = c.em
    s = _nll_setup(c)
    picked = em.reduce("sum", em.select(s.onehot, s.x, 0.0), [1], False)
    losses = em.unary("neg", em.mul(picked, s.weight))
    reduction = int(c.a["reduction"])
    total = em.reduce("sum", s.weight, [0], False)
    if reduction == 0:
        return em.reshape(losses, c.out(0)[0]), em.fill(0.0, (), elt_of(s.x))
    loss = em.reduce("sum", losses, [0], False)
    if reduction == 1:
        loss = em.div(loss, total)
    return loss, total


@converts("aten.nll_loss_backward.default")
def _nll_loss_backward(c: Call) -> Result:
    em = c.em
    s = _nll_setup(c)
    g = c.tensor("grad_output")
    reduction = int(c.a["reduction"])
    n = shape_of(s.x)[0]
    if reduction == 0:
        g = em.reshape(g, (n,))
    elif reduction == 1:
        g = em.div(g, c.tensor("total_weight"))
    coef = em.reshape(em.mul(em.unary("neg", s.weight), g), (n, 1))
    grad = em.select(s.onehot, coef, 0.0)
    return em.reshape(grad, c.out_shape)


@converts("aten.mse_loss.default")
def _mse_loss(c: Call) -> Result:
    em = c.em
    d = em.sub(c.tensor("self"), c.tensor("target"))
    sq = em.mul(d, d)
    reduction = int(c.a["reduction"])
    if reduction == 0:
        return sq
    total = em.reduce("sum", sq, list(range(len(shape_of(sq)))), False)
    return em.div(total, float(math.prod(shape_of(sq)))) if reduction == 1 else total


@converts("aten.mse_loss_backward.default")
def _mse_loss_backward(c: Call) -> Result:
    em = c.em
    x, t, g = c.tensor("self"), c.tensor("target"), c.tensor("grad_output")
    scale = 2.0 / math.prod(shape_of(x)) if int(c.a["reduction"]) == 1 else 2.0
    return em.mul(em.mul(em.sub(x, t), g), scale)
