"""The emulated fabric: configures a PEF's units and runs its sections with numpy.

A section runs in three steps: its DRAM inputs are bound from the host's ``dram`` dict (by
symbol name, shape and dtype checked) into the PMUs loaded from DRAM; the PCUs run one after
another in the (dataflow) order of the PEF; each section output's PMU is stored back to DRAM.

A PCU runs over its whole iteration space at once, never a Python loop per element or tile:

- every input port is a strided view of its PMU's flat buffer
  (``address = offset + sum(strides[c] * counter[c])``), with only the counters the port's
  address varies over as axes (a zero stride is a broadcast: that axis is dropped);
- a value is an array whose axes are the (sorted) counters it varies over, fixed when the unit
  is configured; a stage combines its operands with numpy broadcasting over the union of their
  axes (the reshapes that align them are planned once, at configuration);
- the output: counters with output stride 0 are reduced with the combiner (add: sum, max, min),
  counters the result does not vary over are broadcast, and the result is written through a
  strided view of the output PMU. When the yielded value is a ``mul`` and the combiner is
  ``add``, the multiply-accumulate is one contraction (``np.matmul``, so BLAS for f32, batched
  over the counters both operands share that are not reduced), never an M*N*K temporary.

A parallel PCU (``Pcu.parallel``) runs its copies together, as one computation over the whole
space (``whole_unit``): its copies' blocks partition the space (``validate`` proved every block
non-empty, none cut a reduced counter, each buffer read through one access), so one plan over
their union computes every copy's points, one ``np.matmul`` for a matmul however many copies,
and the result is the unit's on one PCU bit for bit, whatever its split (``copy_pcus`` gives
the copies as PCUs of their own: the same points, and the same numbers up to the order of a
sum's additions).

A register port (``Port.register``: one address at every point) is read once, its element
copied into a 0-d array that every stage broadcasts, instead of a view of the PMU.

Values are ``f32``/``bf16``/``i64``/``i1`` (float32/``ml_dtypes.bfloat16``/int64/bool); every
stage's result is kept in its dtype (float32 math stays float32). bf16 computes as torch's CPU
kernels do: a stage widens its bf16 operands to float32, computes in float32 and rounds its
result to bf16 (``round_to_bf16``: to nearest even); a contraction or an ``add`` reduction of
bf16 values accumulates from float32 and rounds once, at the end; ``cast`` to bf16 rounds.
Accumulation: an ``add`` reduction and a batched dot (``_sum``, ``_dot``) of float values add
in float64 and round once, as a scatter-add does (numpy's float32 sum over an axis that is not
the innermost adds a row at a time, an error growing with the count: MobileNetV2's batch-norm
gradients went past torch's own error, whose reductions are cascaded); a matmul accumulates as
BLAS does, in float32.
Strided views are made with ``np.ndarray(buffer=...)``,
which is ``as_strided`` with a bounds check (``validate`` already proved the bounds). A PCU
result that is a fresh array already laid out as its whole output PMU becomes that PMU's buffer
without a copy; the last float ufunc of an elementwise unit that does not (a cache block of a
large one) writes straight into its output view.

Memory and threads: a PMU's buffer is dropped once the last PCU reading it has run (a section
holds its live values only); freed arrays' pages are reused by the next allocation
(``runtime.host_memory``). The matmuls run on numpy's BLAS with its threads; with more than one
(``host_threads``), the cache blocks of an elementwise unit run concurrently on a pool of as
many threads, a unit of ``threads * 16K`` points or more cut into a block a thread at least.

Chains: consecutive elementwise units over one space where each reads what an earlier one wrote
at the same point (an optimizer's update cut into units by split-units, a fused activation's
backward) run block by block (``_Chain``): every unit's first block, then every unit's second,
so what a unit reads from the one before is still in the cache, and the blocks (not the units)
go to the threads. A PMU that only the chain reads is never written whole: each block has its
own small buffer of it (unless ``run_section`` captures every PMU). The plans are the units'
own cache blocks: every element is computed by the same numpy calls as unit by unit.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import time
from collections.abc import Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, cast

import msgspec
import numpy as np
import threadpoolctl

from runtime.dtypes import NUMPY_DTYPES, bf16, fabric_dtype_name, is_bf16, is_float
from runtime.errors import RduError
from runtime.host_memory import keep_freed_memory
from runtime.machine import perf
from runtime.machine.opcodes import OPCODES as OPCODE_TABLE
from runtime.machine.rules import copy_points, interleaved_counters, reduced_counters
from runtime.pef.schema import Access, Meta, Pcu, Program, Section, Stage
from runtime.pef.validate import validate

DTYPES: Mapping[str, np.dtype] = NUMPY_DTYPES
"""The numpy dtype of every fabric dtype (``runtime/dtypes.py``)."""


class FabricError(RduError):
    """Host tensors that do not fit a section, or an unknown section."""


# -- the instruction set -------------------------------------------------------------------------


@dataclass(frozen=True)
class Opcode:
    """A PCU opcode: its arity and numpy implementation (None: const and counter, no operands).

    Implementations take and return arrays; the fabric casts the result to the stage's dtype.
    """

    name: str
    arity: int
    impl: Callable[..., np.ndarray] | None


# erf(x) ~ x * P(x^2) / Q(x^2) on [-4, 4] (erf is +-1 in float32 beyond): the rational fit
# Eigen uses for float32 (generic_fast_erf_float), evaluated in float64 so that rounding adds
# nothing to its 9.5e-8 absolute error (at most 1.6 float32 ulp; torch's float32 erf: 6e-8).
_ERF_P = (
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
)
_ERF_Q = (
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
)
_ERF_BLOCK = 16384  # elements per block: the float64 temporaries stay in the L2 cache


def _erf_block(x: np.ndarray, out: np.ndarray) -> None:
    x64 = np.clip(x, -4.0, 4.0, dtype=np.float64)
    z = x64 * x64
    p = z * _ERF_P[0]
    p += _ERF_P[1]
    for c in _ERF_P[2:]:
        p *= z
        p += c
    q = z * _ERF_Q[0]
    q += _ERF_Q[1]
    for c in _ERF_Q[2:]:
        q *= z
        q += c
    p *= x64
    p /= q
    out[...] = p


def erf(x: np.ndarray) -> np.ndarray:
    """The error function of a float32 array, float32 result, |error| < 1e-7.

    Vectorised; evaluated block by block (cache blocking inside this one elementwise kernel, the
    blocks have nothing to do with the PCU's tiles).
    """
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty(flat.shape, np.float32)
    for start in range(0, flat.size, _ERF_BLOCK):
        stop = start + _ERF_BLOCK
        _erf_block(flat[start:stop], out[start:stop])
    return out.reshape(np.shape(x))


def _rsqrt(x: np.ndarray) -> np.ndarray:
    return np.reciprocal(np.sqrt(x))


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f":
        return np.true_divide(a, b)
    q = np.floor_divide(a, b)  # integers: round toward zero (arith.divsi), x / 0 -> 0
    return q + ((np.remainder(a, b) != 0) & ((a < 0) != (b < 0)))


# x ** e for the exponents torch's CPU pow computes with multiplies and divisions (ATen's
# PowKernel): the same float32 results as torch, where numpy's powf differs by an ulp and takes
# over 100 times as long for 3 and -2 (58 ns an element: GPT-2's GELU spent 70% of an inference
# batch in it).
_POW_BY_PRODUCTS: dict[float, Callable[[np.ndarray], np.ndarray]] = {
    2.0: lambda a: a * a,
    3.0: lambda a: a * a * a,
    -0.5: lambda a: np.reciprocal(np.sqrt(a)),
    -1.0: np.reciprocal,
    -2.0: lambda a: np.reciprocal(a * a),
}


def _pow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f":
        b = b.astype(a.dtype, copy=False)
        if b.size == 1 and b.ndim <= a.ndim:  # one exponent: the result has a's shape
            by_products = _POW_BY_PRODUCTS.get(float(b.reshape(-1)[0]))
            if by_products is not None:
                return by_products(a)
        return np.power(a, b)
    b = b.astype(np.int64, copy=False)
    result = np.power(a, np.maximum(b, 0))
    if not np.any(b < 0):
        return result
    # Integers to negative powers: 1 for base 1, +-1 for base -1, 0 otherwise (truncation).
    negative = np.where(a == 1, 1, np.where(a == -1, np.where(b % 2 == 0, 1, -1), 0))
    return np.where(b < 0, negative, result)


def _select(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(c, a, b)


def _identity(x: np.ndarray) -> np.ndarray:
    return x


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix64(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer (uint64 arithmetic wraps modulo 2**64; numpy warns of the wrap
    on a 0-d value, which is the arithmetic meant, so the warning is off here)."""
    with np.errstate(over="ignore"):
        z = z ^ (z >> np.uint64(30))
        z = z * _MIX1
        z = z ^ (z >> np.uint64(27))
        z = z * _MIX2
        return z ^ (z >> np.uint64(31))


def _rand(index: np.ndarray, key: np.ndarray) -> np.ndarray:
    """The ``rand`` opcode (runtime/machine/opcodes.py): a float32 in [0, 1) from ``key`` and the
    row-major ``index`` of each point of the space."""
    with np.errstate(over="ignore"):
        z = _mix64(_mix64(np.asarray(key).astype(np.uint64)) + (index + np.uint64(1)) * _GOLDEN)
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)


def _flat_index(axes: tuple[int, ...], space: tuple[int, ...]) -> np.ndarray:
    """The row-major index of every point of ``space`` over ``axes`` (uint64)."""
    strides = [math.prod(space[c + 1 :]) for c in range(len(space))]
    index = np.zeros((1,) * len(axes), np.uint64)
    for i, c in enumerate(axes):
        shape = [1] * len(axes)
        shape[i] = space[c]
        index = index + (np.arange(space[c], dtype=np.uint64) * np.uint64(strides[c])).reshape(
            shape
        )
    return index.reshape(tuple(space[c] for c in axes))


_IMPLS: dict[str, Callable[..., np.ndarray] | None] = {
    "neg": np.negative,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "rsqrt": _rsqrt,
    "tanh": np.tanh,
    "erf": erf,
    "cos": np.cos,
    "sin": np.sin,
    "abs": np.abs,
    "not": np.invert,  # logical not on i1, bitwise on i64
    "cast": _identity,  # the conversion is the cast to the stage dtype every stage gets
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": _div,
    "max": np.maximum,  # NaN-propagating, like torch.maximum
    "min": np.minimum,
    "pow": _pow,
    "eq": np.equal,
    "ne": np.not_equal,
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "and": np.bitwise_and,  # logical on i1
    "or": np.bitwise_or,
    "select": _select,
    "const": None,
    "counter": None,
    "rand": _rand,  # called as _rand(index, key): the PCU's plan binds each point's index
}

OPCODES: dict[str, Opcode] = {
    name: Opcode(name, op.arity, _IMPLS[name]) for name, op in OPCODE_TABLE.items()
}
"""Every opcode of the instruction set (``runtime.machine.opcodes``) with its implementation."""


# -- configuration: every PCU compiled once into a plan of numpy calls ---------------------------

Shape = tuple[int, ...]


@dataclass(frozen=True)
class _View:
    """A strided view of a PMU's flat buffer over the counters its address varies with."""

    pmu: int
    axes: tuple[int, ...]
    shape: Shape
    byte_offset: int
    byte_strides: Shape

    @staticmethod
    def of(pmu: int, access: Access, space: Shape, itemsize: int) -> _View:
        axes = tuple(
            c for c, (s, e) in enumerate(zip(access.strides, space, strict=True)) if s and e != 1
        )
        return _View(
            pmu,
            axes,
            tuple(space[c] for c in axes),
            access.offset * itemsize,
            tuple(access.strides[c] * itemsize for c in axes),
        )

    def over(self, buffer: np.ndarray) -> np.ndarray:
        """The view (``np.ndarray(buffer=...)``: ``as_strided`` with a bounds check)."""
        return np.ndarray(
            self.shape,
            buffer.dtype,
            buffer=buffer,
            offset=self.byte_offset,
            strides=self.byte_strides,
        )

    def covers(self, size: int, itemsize: int) -> bool:
        """Whether the view is the whole row-major buffer of ``size`` elements, in order."""
        strides, acc = [], itemsize
        for extent in reversed(self.shape):
            strides.append(acc)
            acc *= extent
        return (
            self.byte_offset == 0
            and math.prod(self.shape) == size
            and self.byte_strides == tuple(reversed(strides))
        )


@dataclass(frozen=True)
class _Indexed:
    """A data-dependent access: ``offset + affine(counters) + stride * index``, ``index`` being
    the value of input port ``port``; the addresses span ``axes`` (affine and index axes)."""

    port: int
    stride: int
    limit: int
    affine: np.ndarray  # flat addresses over the affine axes, reshaped to broadcast over axes
    index_shape: Shape | None  # reshape of the index value to broadcast over axes
    axes: tuple[int, ...]
    label: str

    @staticmethod
    def of(access: Access, space: Shape, index_axes: tuple[int, ...], label: str) -> _Indexed:
        affine_axes = tuple(
            c for c, (s, e) in enumerate(zip(access.strides, space, strict=True)) if s and e != 1
        )
        axes = tuple(sorted(set(affine_axes) | set(index_axes)))
        affine = np.full((1,) * len(axes), access.offset, np.int64)
        for i, c in enumerate(axes):
            if c in affine_axes:
                shape = [1] * len(axes)
                shape[i] = space[c]
                step = np.arange(space[c], dtype=np.int64) * access.strides[c]
                affine = affine + step.reshape(shape)
        affine.flags.writeable = False
        return _Indexed(
            access.index_port,
            access.index_stride,
            access.index_limit,
            affine,
            _broadcast_shape(index_axes, axes, space) if index_axes else None,
            axes,
            label,
        )

    def addresses(self, values: list[np.ndarray]) -> np.ndarray:
        """Flat addresses of every point (index values checked in ``[0, limit)``)."""
        index = values[self.port]
        if index.size:
            lo, hi = int(index.min()), int(index.max())
            if lo < 0 or hi >= self.limit:
                bad = lo if lo < 0 else hi
                raise FabricError(f"{self.label}: index value {bad} out of range [0, {self.limit})")
        if self.index_shape is not None:
            index = index.reshape(self.index_shape)
        return self.affine + index * np.int64(self.stride)


@dataclass(frozen=True)
class _Step:
    """One stage: ``values[value] = impl(*operands)``, each operand reshaped to broadcast."""

    value: int
    impl: Callable[..., np.ndarray]
    args: tuple[int, ...]
    shapes: tuple[Shape | None, ...]
    dtype: np.dtype
    widen: bool = False  # some operand is bf16: computed on float32 copies (the module docstring)


def round_to_bf16(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to bfloat16, to nearest even (torch's ``.to(torch.bfloat16)``); a
    non-float32 ``x`` goes through float32 first (an int64 as torch converts it, a bool
    exactly). Every rounding of the emulator to bf16 is this function."""
    x = np.asarray(x)
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    return x.astype(bf16())


def _to_dtype(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``x`` converted to ``dtype`` (to bf16 by ``round_to_bf16``)."""
    if is_bf16(dtype):
        return round_to_bf16(x)
    return x.astype(dtype)


def _widened(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 when it is bf16 (exact), else as it is."""
    return x.astype(np.float32) if is_bf16(x.dtype) else x


@dataclass(frozen=True)
class _Contraction:
    """``sum over the reduced counters of x * y`` as one matmul (or a batched dot, or a product
    when the operands share no reduced counter). Operands' axes summed out first (``*_sum``)
    are reduced counters only that operand varies over."""

    x: int
    y: int
    x_sum: Shape
    y_sum: Shape
    kind: Literal["mul", "dot", "matmul"]
    x_perm: Shape
    y_perm: Shape
    x_shape: Shape | None
    y_shape: Shape | None
    result_shape: Shape | None
    result_perm: Shape | None


@dataclass(frozen=True)
class _PcuPlan:
    label: str
    space: Shape
    ports: tuple[tuple[int, _View], ...]  # (value number, view) of the ports the result needs
    consts: tuple[tuple[int, np.ndarray], ...]  # const and counter values, made once
    steps: tuple[_Step, ...]
    nvalues: int
    result: int
    contraction: _Contraction | None
    reduce_dims: Shape  # array dims of the result reduced with the combiner
    scale: int  # product of the reduced counters the result does not vary over (add)
    out: _View  # over the kept (non-reduced) counters
    out_shape: Shape | None  # reshape of the result to broadcast into the out view
    out_size: int
    combiner: str
    dtype: np.dtype
    adopt: bool  # the result is a fresh array laid out as the whole out PMU: use it as is
    empty: bool  # the iteration space has no point
    gathers: tuple[tuple[int, _Indexed, int], ...] = ()  # (port, addresses, pmu): indexed reads
    scatter: _Scatter | None = None  # an indexed output (a scatter)
    final: _Step | None = None  # the result's ufunc, computed straight into the out view
    registers: tuple[tuple[int, _View], ...] = ()  # (value number, 0-d view): read once

    @staticmethod
    def build(index: int, pcu: Pcu, section: Section) -> _PcuPlan:
        space = tuple(pcu.space)
        nin = len(pcu.inputs)
        pmu_dtypes = [DTYPES[p.dtype] for p in section.pmus]
        reduced = set(reduced_counters(space, pcu.out.strides))
        views = [_View.of(p.pmu, p.access, space, pmu_dtypes[p.pmu].itemsize) for p in pcu.inputs]
        label = f"pcu {index} '{pcu.name}'" + (f" ({pcu.loc})" if pcu.loc else "")
        gathers = {
            k: _Indexed.of(p.access, space, views[p.access.index_port].axes, f"{label}: input {k}")
            for k, p in enumerate(pcu.inputs)
            if p.access.index_port >= 0
        }

        # Static facts of every value: the counters it varies over, dtype, freshly allocated.
        axes: list[tuple[int, ...]] = [
            gathers[k].axes if k in gathers else v.axes for k, v in enumerate(views)
        ]
        dtypes: list[np.dtype] = [pmu_dtypes[p.pmu] for p in pcu.inputs]
        fresh: list[bool] = [False] * nin
        for stage in pcu.stages:
            dtype = DTYPES[stage.dtype]
            if stage.op == "const":
                axes.append(())
            elif stage.op == "counter":
                c = _counter_index(stage)
                axes.append((c,) if space[c] != 1 else ())
            elif stage.op == "rand":
                axes.append(tuple(c for c, e in enumerate(space) if e != 1))
            else:
                axes.append(tuple(sorted(set().union(*(axes[a] for a in stage.args)))))
            fresh.append(
                stage.op not in ("const", "counter")
                and (stage.op != "cast" or dtypes[stage.args[0]] != dtype)
            )
            dtypes.append(dtype)

        contract = False
        if pcu.combiner == "add" and reduced and pcu.result >= nin:
            stage = pcu.stages[pcu.result - nin]
            contract = stage.op == "mul" and stage.dtype in ("f32", "bf16", "i64")
        contract = contract and pcu.out.index_port < 0

        needed: set[int] = set()
        todo = list(pcu.stages[pcu.result - nin].args) if contract else [pcu.result]
        while todo:
            v = todo.pop()
            if v not in needed:
                needed.add(v)
                if v >= nin:
                    todo.extend(pcu.stages[v - nin].args)
                elif v in gathers:
                    todo.append(gathers[v].port)
        if pcu.out.index_port >= 0:
            needed.add(pcu.out.index_port)

        consts: list[tuple[int, np.ndarray]] = []
        steps: list[_Step] = []
        for v in sorted(n for n in needed if n >= nin):
            stage = pcu.stages[v - nin]
            dtype = DTYPES[stage.dtype]
            if stage.op == "const":
                consts.append((v, np.asarray(stage.imm, dtype=dtype)))
            elif stage.op == "counter":
                c = _counter_index(stage)
                counter = np.arange(space[c], dtype=np.int64) if axes[v] else np.zeros((), np.int64)
                counter.flags.writeable = False
                consts.append((v, counter))
            else:
                impl = OPCODES[stage.op].impl
                if stage.op == "rand":
                    impl = functools.partial(_rand, _flat_index(axes[v], space))
                assert impl is not None
                shapes = tuple(_broadcast_shape(axes[a], axes[v], space) for a in stage.args)
                widen = any(is_bf16(dtypes[a]) for a in stage.args)
                steps.append(_Step(v, impl, tuple(stage.args), shapes, dtype, widen))

        contraction = None
        if contract:
            x, y = pcu.stages[pcu.result - nin].args
            contraction, result_axes = _plan_contraction(x, axes[x], y, axes[y], reduced, space)
            covered = set(axes[x]) | set(axes[y])
            reduce_dims: Shape = ()
            is_fresh = True
        else:
            covered = set(axes[pcu.result])
            reduce_dims = tuple(i for i, c in enumerate(axes[pcu.result]) if c in reduced)
            result_axes = tuple(c for c in axes[pcu.result] if c not in reduced)
            is_fresh = fresh[pcu.result] or bool(reduce_dims)
        scale = 1
        if pcu.combiner == "add":
            scale = math.prod(space[c] for c in reduced if c not in covered)
        is_fresh = is_fresh or scale != 1

        out_dtype = DTYPES[pcu.dtype]
        out = _View.of(pcu.out_pmu, pcu.out, space, out_dtype.itemsize)
        scatter = None
        if pcu.out.index_port >= 0:
            scatter = _plan_scatter(
                pcu, space, axes[pcu.result], views[pcu.out.index_port].axes, label
            )
        out_size = math.prod(section.pmus[pcu.out_pmu].shape)
        adopt = is_fresh and result_axes == out.axes and out.covers(out_size, out_dtype.itemsize)
        final = None
        if (
            not adopt
            and not contract
            and not reduce_dims
            and scatter is None
            and scale == 1
            and result_axes == out.axes
            and steps
            and steps[-1].value == pcu.result
            and isinstance(steps[-1].impl, np.ufunc)
            and steps[-1].impl.nout == 1
            and out_dtype.kind == "f"
            and steps[-1].dtype == out_dtype
            and all(dtypes[a] == out_dtype for a in steps[-1].args)
        ):  # a float ufunc of float operands: its own result dtype is the output's
            final = steps.pop()
        return _PcuPlan(
            label=label,
            space=space,
            ports=tuple(
                (i, views[i])
                for i in range(nin)
                if i in needed and i not in gathers and not pcu.inputs[i].register
            ),
            registers=tuple(
                (i, views[i]) for i in range(nin) if i in needed and pcu.inputs[i].register
            ),
            consts=tuple(consts),
            steps=tuple(steps),
            nvalues=nin + len(pcu.stages),
            result=pcu.result,
            contraction=contraction,
            reduce_dims=reduce_dims,
            scale=scale,
            out=out,
            out_shape=_broadcast_shape(result_axes, out.axes, space),
            out_size=out_size,
            combiner=pcu.combiner,
            dtype=out_dtype,
            adopt=adopt,
            empty=math.prod(space) == 0,
            gathers=tuple((k, g, views[k].pmu) for k, g in gathers.items() if k in needed),
            scatter=scatter,
            final=final,
        )


@dataclass(frozen=True)
class _Scatter:
    """An indexed output: every point's value combines (add) or is stored (none) at its
    address; counters neither the value nor the address varies over multiply an add."""

    addresses: _Indexed
    value_shape: Shape | None  # reshape of the result value to broadcast over the axes
    shape: Shape  # the points: extents of the union of the value's and the address's axes
    scale: int


def _plan_scatter(
    pcu: Pcu, space: Shape, value_axes: tuple[int, ...], index_axes: tuple[int, ...], label: str
) -> _Scatter:
    addresses = _Indexed.of(pcu.out, space, index_axes, f"{label}: output")
    axes = tuple(sorted(set(addresses.axes) | set(value_axes)))
    if axes != addresses.axes:  # the addresses broadcast over the value's axes too
        old = addresses.axes  # the affine part has extent 1 on the index's own axes: keep it
        reshape = tuple(addresses.affine.shape[old.index(c)] if c in old else 1 for c in axes)
        affine = addresses.affine.reshape(reshape)
        index_shape = _broadcast_shape(index_axes, axes, space) if index_axes else None
        addresses = _Indexed(
            addresses.port, addresses.stride, addresses.limit, affine, index_shape, axes,
            addresses.label,
        )  # fmt: skip
    scale = 1
    if pcu.combiner == "add":
        scale = math.prod(e for c, e in enumerate(space) if c not in axes)
    return _Scatter(
        addresses, _broadcast_shape(value_axes, axes, space), tuple(space[c] for c in axes), scale
    )


def _scatter(plan: _PcuPlan, buffers: list[np.ndarray | None], values: list[np.ndarray]) -> None:
    """Write (combiner none) or add (combiner add) every point's value at its address."""
    scatter = plan.scatter
    assert scatter is not None
    value = values[plan.result]
    if scatter.value_shape is not None:
        value = value.reshape(scatter.value_shape)
    addresses = np.broadcast_to(scatter.addresses.addresses(values), scatter.shape).reshape(-1)
    value = np.broadcast_to(value, scatter.shape).reshape(-1)
    buffer = buffers[plan.out.pmu] = np.zeros(plan.out_size, plan.dtype)
    if plan.combiner == "none":
        buffer[addresses] = value
        return
    if is_float(plan.dtype):  # float64 sums in one pass: no float32 rounding per addition
        # Over the addresses written only (an embedding's gradient touches a few of its rows).
        written, slot = np.unique(addresses, return_inverse=True)
        total = np.bincount(slot, weights=_widened(value), minlength=written.size)
        total *= scatter.scale
        buffer[written] = round_to_bf16(total) if is_bf16(plan.dtype) else total
    else:
        np.add.at(buffer, addresses, value)
        buffer *= np.asarray(scatter.scale, plan.dtype)


def _broadcast_shape(axes: tuple[int, ...], union: tuple[int, ...], space: Shape) -> Shape | None:
    """How an array over ``axes`` is reshaped to broadcast over ``union`` (None: as it is)."""
    if axes == union or not axes:
        return None
    return tuple(space[c] if c in axes else 1 for c in union)


def _plan_contraction(
    x: int, xs: tuple[int, ...], y: int, ys: tuple[int, ...], reduced: set[int], space: Shape
) -> tuple[_Contraction, tuple[int, ...]]:
    """The plan of ``sum_reduced x * y`` and the axes of its result."""
    x_only = [c for c in xs if c in reduced and c not in ys]
    y_only = [c for c in ys if c in reduced and c not in xs]
    x_sum = tuple(xs.index(c) for c in x_only)
    y_sum = tuple(ys.index(c) for c in y_only)
    xs = tuple(c for c in xs if c not in x_only)
    ys = tuple(c for c in ys if c not in y_only)
    k = [c for c in xs if c in ys and c in reduced]

    def size(counters: list[int]) -> int:
        return math.prod(space[c] for c in counters)

    if not k:
        union = tuple(sorted(set(xs) | set(ys)))
        plan = _Contraction(
            x, y, x_sum, y_sum, "mul", (), (),
            _broadcast_shape(xs, union, space), _broadcast_shape(ys, union, space), None, None,
        )  # fmt: skip
        return plan, union
    batch = [c for c in xs if c in ys and c not in reduced]
    m = [c for c in xs if c not in ys]
    n = [c for c in ys if c not in xs]
    x_perm = tuple(xs.index(c) for c in batch + m + k)
    y_perm = tuple(ys.index(c) for c in batch + k + n)
    order = batch + m + n
    axes = tuple(sorted(order))
    result_shape = tuple(space[c] for c in order)
    result_perm = tuple(order.index(c) for c in axes)
    if not m and not n:
        kind: Literal["dot", "matmul"] = "dot"
        x_shape: Shape = (size(batch), size(k))
        y_shape: Shape = x_shape
    elif batch:
        kind = "matmul"
        x_shape = (size(batch), size(m), size(k))
        y_shape = (size(batch), size(k), size(n))
    else:
        kind = "matmul"
        x_shape = (size(m), size(k))
        y_shape = (size(k), size(n))
    plan = _Contraction(
        x, y, x_sum, y_sum, kind, x_perm, y_perm, x_shape, y_shape, result_shape,
        None if result_perm == tuple(range(len(axes))) else result_perm,
    )  # fmt: skip
    return plan, axes


def whole_unit(pcu: Pcu) -> Pcu:
    """A parallel PCU as one PCU over its whole space (``pcu`` itself if it is not parallel):
    what its copies compute together, since their blocks partition the space."""
    if not pcu.parallel:
        return pcu
    return msgspec.structs.replace(pcu, parallel=[], more_at=[])


def copy_pcus(pcu: Pcu) -> list[Pcu]:
    """The copies of a parallel PCU as PCUs of their own (``[pcu]`` if it is not parallel):
    copy ``k`` runs over its block, its accesses starting at the block's first point. The
    emulator runs ``whole_unit`` instead; these are what the PEF configures, one a PCU."""
    if not pcu.parallel:
        return [pcu]
    copies: list[Pcu] = []
    turns = interleaved_counters(pcu.space, pcu.out.strides, pcu.interleaved)
    for index in itertools.product(*(range(p) for p in pcu.parallel)):
        points = [
            copy_points(e, p, k, c in turns)
            for c, (e, p, k) in enumerate(zip(pcu.space, pcu.parallel, index, strict=True))
        ]
        start = [r.start for r in points]
        copy = _moved(pcu, start, [len(r) for r in points], f"{pcu.name} copy {len(copies)}")
        if turns:  # every p-th point: each counter's strides times its step
            steps = [r.step for r in points]

            def spread(access: Access, steps: list[int] = steps) -> Access:
                strides = [st * k for st, k in zip(access.strides, steps, strict=True)]
                return msgspec.structs.replace(access, strides=strides)

            copy = msgspec.structs.replace(
                copy,
                inputs=[msgspec.structs.replace(q, access=spread(q.access)) for q in copy.inputs],
                out=spread(copy.out),
                interleaved=False,
            )
        copies.append(copy)
    return copies


_BLOCK_ELEMENTS = 1 << 16
"""Points of an elementwise PCU's block: its temporaries (256 KB a float32 value) stay in the L2
cache and are reused by the allocator, instead of a fresh array of the whole space a stage."""


_SHARE_ELEMENTS = 1 << 14
"""Fewest points of a block cut for a thread's share of a unit (smaller ones cost more in calls
than a second thread saves)."""


def cache_blocks(pcu: Pcu, threads: int = 1) -> list[Pcu]:
    """An elementwise PCU over a large space as PCUs over consecutive blocks of it (``[pcu]``
    for any other): each block is planned like a parallel copy (its extents, every access's
    offset moved to its first point), so the numbers are the same, computed block by block.

    Elementwise: combiner none, no data-dependent access, and no stage that reads the point's
    position (``counter``, ``rand``): every point's value depends only on what its accesses
    read. The blocks split the outermost counters, whole rows of the inner ones at a time.
    With ``threads`` above 1 (they run the blocks concurrently), a unit of at least
    ``threads * _SHARE_ELEMENTS`` points is cut into at least ``threads`` blocks.
    """
    ranges = _block_ranges(pcu, threads)
    if not ranges:
        return [pcu]
    return [
        _moved(pcu, first, extent, f"{pcu.name} block {k}")
        for k, (first, extent) in enumerate(ranges)
    ]


def _block_ranges(pcu: Pcu, threads: int) -> list[tuple[list[int], list[int]]]:
    """The cache blocks of ``cache_blocks`` as (first point, extents) (none: the unit is not
    cut). Units over one space are cut alike."""
    space = pcu.space
    points = math.prod(space)
    block = _BLOCK_ELEMENTS
    if threads > 1 and points >= threads * _SHARE_ELEMENTS:
        block = min(block, -(-points // threads))
    positional = any(stage.op in ("counter", "rand") for stage in pcu.stages)
    indexed = pcu.out.index_port >= 0 or any(p.access.index_port >= 0 for p in pcu.inputs)
    if (
        pcu.combiner != "none"
        or positional
        or indexed
        or pcu.parallel
        or points <= 2 * block
        and block == _BLOCK_ELEMENTS
    ):
        return []
    split = 0  # the counter cut into runs of rows; the ones before it go one index at a time
    while math.prod(space[split + 1 :]) > block:
        split += 1
    inner = math.prod(space[split + 1 :])
    rows = max(1, block // inner if block == _BLOCK_ELEMENTS else -(-block // inner))
    starts = [range(e) for e in space[:split]] + [range(0, space[split], rows)]
    ranges: list[tuple[list[int], list[int]]] = []
    for start in itertools.product(*starts):
        first = list(start) + [0] * (len(space) - split - 1)
        extent = [1] * split + [min(rows, space[split] - start[split])] + space[split + 1 :]
        ranges.append((first, extent))
    return ranges


def _moved(
    pcu: Pcu, first: list[int], extent: list[int], name: str, local: frozenset[int] = frozenset()
) -> Pcu:
    """``pcu`` over the part of its space from ``first`` with ``extent``: its accesses moved,
    except those of the PMUs in ``local`` (a chain's block-sized buffers: ``_Chain``)."""

    def moved(pmu: int, access: Access) -> Access:
        if pmu in local:
            return access
        shift = sum(st * s for st, s in zip(access.strides, first, strict=True))
        return msgspec.structs.replace(access, offset=access.offset + shift)

    return msgspec.structs.replace(
        pcu,
        space=extent,
        tile=[min(t, max(e, 1)) for t, e in zip(pcu.tile, extent, strict=True)],
        inputs=[msgspec.structs.replace(p, access=moved(p.pmu, p.access)) for p in pcu.inputs],
        out=moved(pcu.out_pmu, pcu.out),
        parallel=[],
        more_at=[],
        name=name,
    )


@dataclass(frozen=True)
class _Chain:
    """Elementwise PCUs, consecutive in the section and over one space (so cut into the same
    cache blocks), run block by block: every unit's block ``k``, in order, then block ``k + 1``.
    A unit reads what an earlier one of the chain wrote only through the very access it was
    written with, into a PMU it writes whole, so block ``k`` reads block ``k`` only, while it
    is still in the cache; the blocks are independent (they run concurrently on the threads).
    Each point's value is computed by the same plans as unit by unit: the same numbers.

    A PMU written in the chain and read by no unit after it nor by the host (``local``) is kept
    block-sized, one buffer a block (its accesses not moved: ``local_blocks``), unless every
    buffer is captured (``run_section(pmus=)``): then the chain writes every PMU whole."""

    units: tuple[int, ...]  # the PCUs, in run order
    blocks: tuple[tuple[_PcuPlan, ...], ...]  # per block, the units' plans (every PMU whole)
    local_blocks: tuple[tuple[_PcuPlan, ...], ...]  # the same, over the local PMUs' blocks
    written: tuple[tuple[int, int, np.dtype, bool], ...]  # (pmu, size, dtype, written whole)
    local: tuple[tuple[int, int, np.dtype], ...]  # (pmu, points of a block, dtype)


@dataclass(frozen=True)
class _SectionPlan:
    section: Section
    pcus: tuple[tuple[_PcuPlan, ...], ...]  # per PCU of the section, its cache blocks' plans
    runs: tuple[tuple[int | _Chain, tuple[int, ...]], ...]
    """In run order: a PCU run whole or a chain of cut ones, and the PMUs free after it."""

    @staticmethod
    def build(section: Section, threads: int) -> _SectionPlan:
        pcus = tuple(
            tuple(_PcuPlan.build(i, b, section) for b in cache_blocks(whole_unit(p), threads))
            for i, p in enumerate(section.pcus)
        )
        frees = last_readers(section)
        runs: list[tuple[int | _Chain, tuple[int, ...]]] = []
        for units in _chained_units(section, threads):
            freed = tuple(pmu for u in units for pmu in frees[u])
            if len(pcus[units[0]]) == 1:
                runs.append((units[0], freed))
            else:
                runs.append((_chain(section, units, pcus, threads, frees), freed))
        return _SectionPlan(section, pcus, tuple(runs))


def _writes_whole(section: Section, pcu: Pcu) -> bool:
    """Whether ``pcu`` writes every element of its output PMU, in row-major order."""
    itemsize = DTYPES[pcu.dtype].itemsize
    out = _View.of(pcu.out_pmu, pcu.out, tuple(pcu.space), itemsize)
    size = math.prod(section.pmus[pcu.out_pmu].shape)
    return pcu.out.index_port < 0 and out.covers(size, itemsize)


def _chained_units(section: Section, threads: int) -> list[list[int]]:
    """The section's PCUs in run order, grouped into the units of each chain (``_Chain``); a
    unit alone where it chains with none. A unit joins the chain before it when both are cut
    into cache blocks over one space, every unit writes its PMU whole, and the unit reads the
    chain's PMUs through their writers' accesses; a chain is cut where no later unit of it
    reads what an earlier one wrote (chains as short as their data flow)."""
    runs: list[list[int]] = []
    written: dict[int, tuple[int, Access]] = {}  # the current run's PMUs: (writer, access)
    chainable = [
        bool(_block_ranges(whole_unit(p), threads)) and _writes_whole(section, p)
        for p in section.pcus
    ]
    for i, pcu in enumerate(section.pcus):
        current = runs[-1] if runs else []
        joins = (
            chainable[i]
            and current
            and chainable[current[0]]
            and section.pcus[current[0]].space == pcu.space
            and all(
                p.pmu not in written or (not p.register and p.access == written[p.pmu][1])
                for p in pcu.inputs
            )
        )
        if not joins:
            written.clear()
            runs.append([i])
        else:
            current.append(i)
        written[pcu.out_pmu] = (i, pcu.out)
    chains: list[list[int]] = []
    for run in runs:  # cut where no later unit reads an earlier one's PMU
        producer = {section.pcus[u].out_pmu: k for k, u in enumerate(run)}
        first_read = [
            min((producer[p.pmu] for p in section.pcus[u].inputs if p.pmu in producer), default=k)
            for k, u in enumerate(run)
        ]
        start = 0
        for k in range(1, len(run) + 1):
            if k == len(run) or min(first_read[k:]) >= k:
                chains.append(run[start:k])
                start = k
    return chains


def _chain(
    section: Section,
    units: list[int],
    pcus: tuple[tuple[_PcuPlan, ...], ...],
    threads: int,
    frees: tuple[tuple[int, ...], ...],
) -> _Chain:
    """The chain of ``units`` (``_chained_units``) with its local PMUs' plans: the PMUs it
    writes that are free once it has run (``frees``: ``last_readers``)."""
    ranges = _block_ranges(whole_unit(section.pcus[units[0]]), threads)
    freed = {pmu for u in units for pmu in frees[u]}
    local = frozenset(section.pcus[u].out_pmu for u in units) & freed
    block_points = math.prod(ranges[0][1])
    local_blocks = []
    for k, (first, extent) in enumerate(ranges):
        plans = []
        for u in units:
            pcu = whole_unit(section.pcus[u])
            if pcu.out_pmu in local or any(p.pmu in local for p in pcu.inputs):
                name = f"{pcu.name} block {k}"
                plans.append(_PcuPlan.build(u, _moved(pcu, first, extent, name, local), section))
            else:
                plans.append(pcus[u][k])
        local_blocks.append(tuple(plans))
    written = tuple(
        (p.out_pmu, math.prod(section.pmus[p.out_pmu].shape), DTYPES[p.dtype], whole)
        for p, whole in ((section.pcus[u], _writes_whole(section, section.pcus[u])) for u in units)
    )
    return _Chain(
        units=tuple(units),
        blocks=tuple(zip(*(pcus[u] for u in units), strict=True)),
        local_blocks=tuple(local_blocks),
        written=written,
        local=tuple((pmu, block_points, dtype) for pmu, _, dtype, _ in written if pmu in local),
    )


def last_readers(section: Section) -> tuple[tuple[int, ...], ...]:
    """Per PCU (in run order), the PMUs that are free once it has run: every PMU it reads or
    writes that no later PCU reads and that is not a section output (the section's live
    buffers are then the ones a later unit or the host still needs)."""
    kept = {out.pmu for out in section.outputs}
    last: dict[int, int] = {}
    for i, pcu in enumerate(section.pcus):
        last[pcu.out_pmu] = max(last.get(pcu.out_pmu, i), i)
        for port in pcu.inputs:
            last[port.pmu] = i
    frees: list[list[int]] = [[] for _ in section.pcus]
    for pmu, i in last.items():
        if pmu not in kept:
            frees[i].append(pmu)
    return tuple(tuple(sorted(f)) for f in frees)


# -- execution -----------------------------------------------------------------------------------


def _contract(plan: _Contraction, values: list[np.ndarray]) -> np.ndarray:
    x, y = _widened(values[plan.x]), _widened(values[plan.y])  # bf16: float32 accumulation
    if plan.x_sum:
        x = _sum(x, plan.x_sum)
    if plan.y_sum:
        y = _sum(y, plan.y_sum)
    if plan.kind == "mul":
        if plan.x_shape is not None:
            x = x.reshape(plan.x_shape)
        if plan.y_shape is not None:
            y = y.reshape(plan.y_shape)
        return np.multiply(x, y)
    x = np.transpose(x, plan.x_perm).reshape(plan.x_shape)
    y = np.transpose(y, plan.y_perm).reshape(plan.y_shape)
    if plan.kind == "dot":  # no matmul shape to gain and no temporary either
        result = _dot(x, y)
    else:
        result = np.matmul(x, y)
    result = result.reshape(plan.result_shape)
    if plan.result_perm is not None:
        result = result.transpose(plan.result_perm)
    return result


def _dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``sum_k x[b, k] * y[b, k]``: float32 accumulated in float64 (numpy casts block by
    block: no float64 copy of x or y) and rounded once."""
    if x.dtype == np.float32 and y.dtype == np.float32:
        return np.einsum("bk,bk->b", x, y, dtype=np.float64, casting="safe").astype(np.float32)
    return np.einsum("bk,bk->b", x, y)


def _sum(x: np.ndarray, axis: Shape) -> np.ndarray:
    """``x`` summed over ``axis``: float32 (bf16 comes widened) accumulated in float64 (block
    by block: no float64 copy of x) and rounded once; other dtypes as they are."""
    if x.dtype == np.float32:
        return np.add.reduce(x, axis=axis, dtype=np.float64).astype(np.float32)
    return np.sum(x, axis=axis)


_REDUCERS: dict[str, Callable[..., np.ndarray]] = {"add": _sum, "max": np.max, "min": np.min}


def _identity_of(combiner: str, dtype: np.dtype) -> np.ndarray:
    """The combiner's neutral element: what a reduction over no point yields."""
    if combiner in ("add", "none"):
        return np.zeros((), dtype)
    if is_float(dtype):
        return np.asarray(-np.inf if combiner == "max" else np.inf, dtype)
    if dtype.kind == "b":
        return np.asarray(combiner == "min", dtype)
    info = np.iinfo(dtype)
    return np.asarray(info.min if combiner == "max" else info.max, dtype)


def _counter_index(stage: Stage) -> int:
    """The counter a ``counter`` stage reads (``validate.py`` checked that it is an int)."""
    assert isinstance(stage.imm, int), stage.imm
    return stage.imm


def _written(buffers: list[np.ndarray | None], pmu: int) -> np.ndarray:
    """The contents of a PMU a PCU reads: the host or an earlier unit wrote it (dataflow order)."""
    buffer = buffers[pmu]
    assert buffer is not None, f"PMU {pmu} is read before it is written"
    return buffer


def _run_pcu(plan: _PcuPlan, buffers: list[np.ndarray | None]) -> None:
    """Run one PCU over its whole iteration space and write its output PMU."""
    if plan.empty:
        if math.prod(plan.out.shape):
            _write(plan, buffers, _identity_of(plan.combiner, plan.dtype))
        return
    # Every value is written (ports, gathers, constants, then steps in value order) before
    # a step reads it: the slots start empty.
    values = cast(list[np.ndarray], [None] * plan.nvalues)
    for v, view in plan.ports:
        values[v] = view.over(_written(buffers, view.pmu))
    for v, view in plan.registers:  # one element, read once and held (a copy, not a view)
        values[v] = view.over(_written(buffers, view.pmu)).copy()
    for v, gather, pmu in plan.gathers:
        values[v] = _written(buffers, pmu)[gather.addresses(values)]
    for v, const in plan.consts:
        values[v] = const
    for step in plan.steps:
        operands = [
            values[a] if shape is None else values[a].reshape(shape)
            for a, shape in zip(step.args, step.shapes, strict=True)
        ]
        if step.widen:
            operands = [_widened(o) for o in operands]
        result = step.impl(*operands)
        if result.dtype != step.dtype:
            result = _to_dtype(result, step.dtype)
        values[step.value] = result
    final = plan.final
    if final is not None:  # no temporary of the result, no copy of it into the PMU
        buffer = buffers[plan.out.pmu]
        if buffer is None:
            buffer = buffers[plan.out.pmu] = np.zeros(plan.out_size, plan.dtype)
        operands = [
            values[a] if shape is None else values[a].reshape(shape)
            for a, shape in zip(final.args, final.shapes, strict=True)
        ]
        final.impl(*operands, out=plan.out.over(buffer))
        return
    if plan.scatter is not None:
        _scatter(plan, buffers, values)
        return
    if plan.contraction is not None:
        array = _contract(plan.contraction, values)
    else:
        array = values[plan.result]
        if plan.reduce_dims:  # bf16: float32 accumulation
            array = _REDUCERS[plan.combiner](_widened(array), axis=plan.reduce_dims)
    if plan.scale != 1:
        array = _widened(array)
        array = array * np.asarray(plan.scale, dtype=array.dtype)
    array = np.asarray(array)
    if array.dtype != plan.dtype:
        array = _to_dtype(array, plan.dtype)
    if plan.out_shape is not None:
        array = array.reshape(plan.out_shape)
    _write(plan, buffers, array)


def _write(plan: _PcuPlan, buffers: list[np.ndarray | None], array: np.ndarray) -> None:
    buffer = buffers[plan.out.pmu]
    if buffer is None:
        if plan.adopt and array.flags.c_contiguous and array.shape == plan.out.shape:
            buffers[plan.out.pmu] = array.reshape(-1)  # already the PMU's layout: no copy
            return
        buffer = buffers[plan.out.pmu] = np.zeros(plan.out_size, plan.dtype)
    plan.out.over(buffer)[...] = array


def _run_chain(
    chain: _Chain,
    buffers: list[np.ndarray | None],
    pool: ThreadPoolExecutor | None,
    keep: bool,
) -> None:
    """Run a chain block by block (on the pool's threads when there is one: numpy releases the
    GIL in its loops). Its PMUs are allocated first (left uninitialised where written whole),
    each local one block-sized, a buffer a block, unless every PMU is kept (``keep``)."""
    local = () if keep else chain.local
    skip = {pmu for pmu, _, _ in local}
    for pmu, size, dtype, whole in chain.written:
        if pmu not in skip:
            buffers[pmu] = np.empty(size, dtype) if whole else np.zeros(size, dtype)

    def run(plans: tuple[_PcuPlan, ...]) -> None:
        block_buffers = buffers
        if local:  # this block's own buffers of the local PMUs
            block_buffers = list(buffers)
            for pmu, points, dtype in local:
                block_buffers[pmu] = np.empty(points, dtype)
        with np.errstate(all="ignore"):  # the error state is the thread's own
            for plan in plans:
                _run_pcu(plan, block_buffers)

    blocks = chain.local_blocks if local else chain.blocks
    if pool is None:
        for plans in blocks:
            run(plans)
        return
    for _ in pool.map(run, blocks):  # every block done (the first error raised)
        pass


def host_threads() -> int:
    """The threads the emulator computes with: numpy's BLAS library's thread count (what
    ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS`` or ``threadpoolctl`` set), at most the CPUs."""
    counts = [
        int(info.get("num_threads") or 1)
        for info in threadpoolctl.threadpool_info()
        if info.get("user_api") == "blas"
    ]
    return max(1, min(max(counts, default=1), os.cpu_count() or 1))


class Fabric:
    """A fabric configured with a program: run its sections on host DRAM (a dict of arrays).

    Configuring validates the program (so PMU capacities, ``tile_bytes * nbuf <=
    target.pmu_bytes``, and every access bound are enforced before anything runs) and plans every
    PCU once. ``counters[section]`` holds the section's performance counters
    (``runtime.machine.perf``).
    """

    def __init__(self, program: Program, threads: int | None = None) -> None:
        validate(program)
        keep_freed_memory()  # every step's arrays reuse the pages the last step's freed
        self.program = program
        self.meta: Meta = program.meta
        self.threads = host_threads() if threads is None else max(1, threads)
        """Host threads: the BLAS calls use the library's own; with more than one, the cache
        blocks of an elementwise unit run concurrently on a pool of this many."""
        self._plans: dict[str, _SectionPlan] = {
            s.name: _SectionPlan.build(s, self.threads) for s in program.sections
        }
        self.counters: dict[str, perf.SectionCounters] = {
            s.name: perf.SectionCounters(model)
            for s, model in zip(program.sections, perf.program_models(program), strict=True)
        }
        self._pool: ThreadPoolExecutor | None = None
        self.on_run: Callable[[str, float, float], None] | None = None
        """Called after every section run with the section's name, the host time it started
        (``time.perf_counter``) and the seconds it took (a timeline: ``runtime.machine.trace``)."""

    @property
    def section_names(self) -> list[str]:
        """The sections, in run order."""
        return [s.name for s in self.program.sections]

    def _plan(self, name: str) -> _SectionPlan:
        plan = self._plans.get(name)
        if plan is None:
            raise FabricError(
                f"no section '{name}' in this PEF (it has: {', '.join(self.section_names)})"
            )
        return plan

    def run_section(
        self,
        name: str,
        dram: MutableMapping[str, np.ndarray],
        pmus: dict[int, np.ndarray] | None = None,
    ) -> None:
        """Run section ``name``: read its inputs from ``dram``, store its outputs into it.

        Outputs replace the ``dram`` entries (arrays given as inputs are never written).
        ``pmus`` (a capture, for inspection: rdu-test's divergence search) receives every PMU's
        flat buffer after the run, by PMU index: a PMU a PCU writes holds that PCU's output
        (one producer a PMU), so this is every unit's output; nothing is copied. Without a
        capture, a PMU's buffer is dropped as soon as its last reader has run (memory stays
        bounded by the live values, not by every value of the section).
        """
        plan = self._plan(name)
        start = time.perf_counter()
        section = plan.section
        buffers = self._bind(section, dram)
        keep = pmus is not None
        pool = self._threads_pool()
        with np.errstate(all="ignore"):
            for run, frees in plan.runs:
                if isinstance(run, _Chain):
                    _run_chain(run, buffers, pool, keep)
                else:
                    _run_pcu(plan.pcus[run][0], buffers)
                if not keep:
                    for pmu in frees:
                        buffers[pmu] = None
        if pmus is not None:
            pmus.update((i, b) for i, b in enumerate(buffers) if b is not None)
        symbols = self.meta.symbols
        for out in section.outputs:
            sym = symbols[out.symbol]
            pmu = section.pmus[out.pmu]
            buffer = buffers[out.pmu]
            if buffer is None:  # its PCU wrote nothing (an empty iteration space)
                buffer = np.zeros(math.prod(pmu.shape), DTYPES[pmu.dtype])
            elif pmu.source == "dram":
                buffer = buffer.copy()
            dram[sym.name] = buffer.reshape(sym.shape)
        counters = self.counters[name]
        counters.runs += 1
        seconds = time.perf_counter() - start
        counters.host_seconds += seconds
        if self.on_run is not None:
            self.on_run(name, start, seconds)

    def _threads_pool(self) -> ThreadPoolExecutor | None:
        """The pool of ``threads`` workers (None at one thread), made on first use."""
        if self.threads > 1 and self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="rdu-fabric")
        return self._pool

    def run_unit(self, name: str, index: int, pmus: Mapping[int, np.ndarray]) -> np.ndarray:
        """Run PCU ``index`` of section ``name`` alone (all copies of a parallel one) on the
        input PMUs' flat buffers ``pmus`` (by PMU index, as ``run_section`` captures them) and
        return its output PMU's flat buffer. Nothing else is read or written: rdu-test runs a
        unit on torch's values of its inputs this way."""
        plan = self._plan(name)
        section = plan.section
        if not 0 <= index < len(section.pcus):
            raise FabricError(f"section '{name}' has no pcu {index}")
        pcu = section.pcus[index]
        buffers: list[np.ndarray | None] = [None] * len(section.pmus)
        for port in pcu.inputs:
            pmu = section.pmus[port.pmu]
            array = pmus.get(port.pmu)
            want = DTYPES[pmu.dtype]
            if array is None or array.size != math.prod(pmu.shape) or array.dtype != want:
                raise FabricError(
                    f"section '{name}' pcu {index} '{pcu.name}': pmu {port.pmu} '{pmu.name}' "
                    f"needs {math.prod(pmu.shape)} {pmu.dtype} elements"
                )
            buffers[port.pmu] = np.ascontiguousarray(array).reshape(-1)
        with np.errstate(all="ignore"):
            for block in plan.pcus[index]:
                _run_pcu(block, buffers)
        out = buffers[pcu.out_pmu]
        if out is None:  # an empty iteration space wrote nothing
            out_pmu = section.pmus[pcu.out_pmu]
            out = np.zeros(math.prod(out_pmu.shape), DTYPES[out_pmu.dtype])
        return out

    def _bind(
        self, section: Section, dram: MutableMapping[str, np.ndarray]
    ) -> list[np.ndarray | None]:
        """The PMUs' flat buffers: DRAM inputs checked and bound; the ones PCUs write are
        allocated when first written (None until then)."""
        symbols = self.meta.symbols
        flat: dict[int, np.ndarray] = {}
        for index in section.inputs:
            sym = symbols[index]
            if sym.name not in dram:
                raise FabricError(f"section '{section.name}': input '{sym.name}' is not in DRAM")
            array = np.asarray(dram[sym.name])
            want = DTYPES[sym.dtype]
            if array.shape != tuple(sym.shape) or array.dtype != want:
                given = fabric_dtype_name(array.dtype) or array.dtype
                raise FabricError(
                    f"section '{section.name}': input '{sym.name}' is {list(array.shape)} "
                    f"{given} but the PEF expects {sym.shape} {sym.dtype}"
                )
            flat[index] = np.ascontiguousarray(array).reshape(-1)
        return [flat[p.symbol] if p.source == "dram" else None for p in section.pmus]
