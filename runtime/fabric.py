"""The emulated fabric: configures a PEF's units and runs its sections with numpy.

A section runs in three steps: its DRAM inputs are bound from the host's ``dram`` dict (by
symbol name, shape and dtype checked) into the PMUs loaded from DRAM; the PCUs run one after
another in the (dataflow) order of the PEF; each section output's PMU is stored back to DRAM.

A PCU runs over its whole iteration space at once, never a Python loop per element or tile:

- every input port is a strided view of its PMU's flat buffer
  (``address = offset + sum(strides[c] * counter[c])``), with only the counters the port's
  address varies over as axes (a zero stride is a broadcast: that axis is dropped);
- a value is an ``(array, axes)`` pair, ``axes`` the sorted counters it varies over; a stage
  combines its operands with numpy broadcasting over the union of their axes;
- the output: counters with output stride 0 are reduced with the combiner (add: sum, max, min),
  counters the result does not vary over are broadcast, and the result is written through a
  strided view of the output PMU. When the yielded value is a ``mul`` and the combiner is
  ``add``, the multiply-accumulate is one contraction (``np.matmul``, so BLAS for f32, batched
  over the counters both operands share that are not reduced), never an M*N*K temporary.

Values are ``f32``/``i64``/``i1`` (float32/int64/bool); every stage's result is kept in its
dtype (float32 math stays float32). Strided views are made with ``np.ndarray(buffer=...)``,
which is ``as_strided`` with a bounds check (``validate`` already proved the bounds).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

import numpy as np

from runtime import perf
from runtime.errors import RduError
from runtime.pef import isa
from runtime.pef.schema import Meta, Pcu, Program, Section, Stage
from runtime.pef.validate import validate

DTYPES: dict[str, np.dtype] = {
    "f32": np.dtype(np.float32),
    "i64": np.dtype(np.int64),
    "i1": np.dtype(np.bool_),
}

Value = tuple[np.ndarray, tuple[int, ...]]
"""A PCU value: an array and the (sorted) counters its axes are, one array axis each."""


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


def _pow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f":
        return np.power(a, b.astype(a.dtype, copy=False))
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


_IMPLS: dict[str, Callable[..., np.ndarray] | None] = {
    "neg": np.negative,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "rsqrt": _rsqrt,
    "tanh": np.tanh,
    "erf": erf,
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
}

OPCODES: dict[str, Opcode] = {
    name: Opcode(name, sig.arity, _IMPLS[name]) for name, sig in isa.SIGNATURES.items()
}


# -- configuration: per-PCU plans, computed once -------------------------------------------------


@dataclass(frozen=True)
class _View:
    """A strided view of a PMU over some counters: element offset, axes, shape, strides."""

    pmu: int
    offset: int
    axes: tuple[int, ...]
    shape: tuple[int, ...]
    strides: tuple[int, ...]

    @staticmethod
    def of(pmu: int, offset: int, strides: list[int], space: list[int]) -> _View:
        axes = tuple(c for c, (s, e) in enumerate(zip(strides, space, strict=True)) if s and e != 1)
        return _View(
            pmu, offset, axes, tuple(space[c] for c in axes), tuple(strides[c] for c in axes)
        )

    def over(self, buffer: np.ndarray) -> np.ndarray:
        item = buffer.itemsize
        return np.ndarray(
            self.shape,
            buffer.dtype,
            buffer=buffer,
            offset=self.offset * item,
            strides=tuple(s * item for s in self.strides),
        )


@dataclass(frozen=True)
class _PcuPlan:
    label: str
    space: tuple[int, ...]
    ports: tuple[_View, ...]
    stages: tuple[Stage, ...]
    evaluate: tuple[int, ...]  # the value numbers of the stages to run, in order
    result: int
    out: _View  # over the kept (non-reduced) counters
    reduced: frozenset[int]  # counters with output stride 0 and extent > 1
    combiner: str
    dtype: np.dtype
    contract: bool  # the result is a mul accumulated with add: one matmul
    empty: bool  # the iteration space has no point

    @staticmethod
    def build(index: int, pcu: Pcu) -> _PcuPlan:
        space = list(pcu.space)
        nin = len(pcu.inputs)
        reduced = frozenset(
            c
            for c, (s, e) in enumerate(zip(pcu.out.strides, space, strict=True))
            if s == 0 and e > 1
        )
        contract = False
        if pcu.combiner == "add" and reduced and pcu.result >= nin:
            stage = pcu.stages[pcu.result - nin]
            contract = stage.op == "mul" and stage.dtype in ("f32", "i64")
        # Which stages the result needs (a contracted mul is done by the contraction).
        needed: set[int] = set()
        todo = list(pcu.stages[pcu.result - nin].args) if contract else [pcu.result]
        while todo:
            v = todo.pop()
            if v in needed:
                continue
            needed.add(v)
            if v >= nin:
                todo.extend(pcu.stages[v - nin].args)
        label = f"pcu {index} '{pcu.name}'" + (f" ({pcu.loc})" if pcu.loc else "")
        return _PcuPlan(
            label=label,
            space=tuple(space),
            ports=tuple(
                _View.of(p.pmu, p.access.offset, p.access.strides, space) for p in pcu.inputs
            ),
            stages=tuple(pcu.stages),
            evaluate=tuple(sorted(v for v in needed if v >= nin)),
            result=pcu.result,
            out=_View.of(pcu.out_pmu, pcu.out.offset, pcu.out.strides, space),
            reduced=reduced,
            combiner=pcu.combiner,
            dtype=DTYPES[pcu.dtype],
            contract=contract,
            empty=math.prod(space) == 0,
        )


@dataclass(frozen=True)
class _SectionPlan:
    section: Section
    pcus: tuple[_PcuPlan, ...]


# -- execution -----------------------------------------------------------------------------------


def _align(values: list[Value], space: tuple[int, ...]) -> tuple[list[np.ndarray], tuple[int, ...]]:
    """The operands reshaped to broadcast over the union of their axes, and that union."""
    first = values[0][1]
    if all(axes == first for _, axes in values):
        return [a for a, _ in values], first
    union = tuple(sorted(set().union(*(axes for _, axes in values))))
    arrays = []
    for array, axes in values:
        if array.ndim and axes != union:
            array = array.reshape([space[c] if c in axes else 1 for c in union])
        arrays.append(array)
    return arrays, union


def _stage(stage: Stage, values: dict[int, Value], space: tuple[int, ...]) -> Value:
    dtype = DTYPES[stage.dtype]
    if stage.op == "const":
        return np.asarray(stage.imm, dtype=dtype), ()
    if stage.op == "counter":
        c = int(stage.imm)  # type: ignore[arg-type]
        if space[c] == 1:
            return np.zeros((), dtype=np.int64), ()
        return np.arange(space[c], dtype=np.int64), (c,)
    arrays, axes = _align([values[a] for a in stage.args], space)
    impl = OPCODES[stage.op].impl
    assert impl is not None
    result = np.asarray(impl(*arrays))
    if result.dtype != dtype:
        result = result.astype(dtype)
    return result, axes


def _sum_out(value: Value, counters: list[int]) -> Value:
    array, axes = value
    if not counters:
        return value
    array = np.sum(array, axis=tuple(axes.index(c) for c in counters))
    return np.asarray(array), tuple(c for c in axes if c not in counters)


def _contract(x: Value, y: Value, plan: _PcuPlan) -> Value:
    """``sum over plan.reduced of x * y`` as one (batched) matmul."""
    space, reduced = plan.space, plan.reduced
    missing = [c for c in reduced if c not in x[1] and c not in y[1]]
    x = _sum_out(x, [c for c in x[1] if c in reduced and c not in y[1]])
    y = _sum_out(y, [c for c in y[1] if c in reduced and c not in x[1]])
    (xa, xs), (ya, ys) = x, y
    k = [c for c in xs if c in ys and c in reduced]
    if not k:
        arrays, axes = _align([x, y], space)
        result = np.multiply(*arrays)
    else:
        batch = [c for c in xs if c in ys and c not in reduced]
        m = [c for c in xs if c not in ys]
        n = [c for c in ys if c not in xs]

        def size(counters: list[int]) -> int:
            return math.prod(space[c] for c in counters)

        xt = xa.transpose([xs.index(c) for c in batch + m + k])
        yt = ya.transpose([ys.index(c) for c in batch + k + n])
        if not m and not n:  # dot products: no matmul shape to gain, no temporary either
            result = np.einsum(
                "bk,bk->b", xt.reshape(size(batch), size(k)), yt.reshape(size(batch), size(k))
            )
        elif batch:
            result = np.matmul(
                xt.reshape(size(batch), size(m), size(k)), yt.reshape(size(batch), size(k), size(n))
            )
        else:
            result = np.matmul(xt.reshape(size(m), size(k)), yt.reshape(size(k), size(n)))
        order = batch + m + n
        result = result.reshape([space[c] for c in order])
        axes = tuple(sorted(order))
        result = result.transpose([order.index(c) for c in axes])
    if missing:
        result = result * np.asarray(math.prod(space[c] for c in missing), dtype=result.dtype)
    return np.asarray(result), axes


_REDUCERS: dict[str, Callable[..., np.ndarray]] = {
    "add": np.sum,
    "max": np.max,
    "min": np.min,
}


def _reduce(value: Value, plan: _PcuPlan) -> Value:
    """Reduce the value over the reduced counters with the combiner."""
    array, axes = value
    dims = tuple(i for i, c in enumerate(axes) if c in plan.reduced)
    if dims:
        array = np.asarray(_REDUCERS[plan.combiner](array, axis=dims))
        axes = tuple(c for c in axes if c not in plan.reduced)
    if plan.combiner == "add":
        missing = math.prod(plan.space[c] for c in plan.reduced if c not in value[1])
        if missing != 1:
            array = array * np.asarray(missing, dtype=array.dtype)
    return array, axes


def _identity_of(combiner: str, dtype: np.dtype) -> np.ndarray:
    """The combiner's neutral element: what a reduction over no point yields."""
    if combiner in ("add", "none"):
        return np.zeros((), dtype)
    if dtype.kind == "f":
        return np.asarray(-np.inf if combiner == "max" else np.inf, dtype)
    if dtype.kind == "b":
        return np.asarray(combiner == "min", dtype)
    info = np.iinfo(dtype)
    return np.asarray(info.min if combiner == "max" else info.max, dtype)


def _run_pcu(plan: _PcuPlan, buffers: list[np.ndarray]) -> None:
    out_buffer = buffers[plan.out.pmu]
    if plan.empty:
        if all(e for e in plan.out.shape):
            plan.out.over(out_buffer)[...] = _identity_of(plan.combiner, plan.dtype)
        return
    values: dict[int, Value] = {}
    for i, port in enumerate(plan.ports):
        values[i] = (port.over(buffers[port.pmu]), port.axes)
    nin = len(plan.ports)
    for v in plan.evaluate:
        values[v] = _stage(plan.stages[v - nin], values, plan.space)
    if plan.contract:
        a, b = plan.stages[plan.result - nin].args
        array, axes = _contract(values[a], values[b], plan)
    else:
        array, axes = _reduce(values[plan.result], plan)
    if axes != plan.out.axes:
        array = array.reshape([plan.space[c] if c in axes else 1 for c in plan.out.axes])
    plan.out.over(out_buffer)[...] = array


def _dtype_name(dtype: np.dtype) -> str:
    for name, d in DTYPES.items():
        if d == dtype:
            return name
    return str(dtype)


class Fabric:
    """A fabric configured with a program: run its sections on host DRAM (a dict of arrays).

    Configuring validates the program (so PMU capacities, ``tile_bytes * nbuf <=
    target.pmu_bytes``, and every access bound are enforced before anything runs) and plans every
    PCU once. ``counters[section]`` holds the section's performance counters (``runtime.perf``).
    """

    def __init__(self, program: Program) -> None:
        validate(program)
        self.program = program
        self.meta: Meta = program.meta
        self._plans: dict[str, _SectionPlan] = {
            s.name: _SectionPlan(s, tuple(_PcuPlan.build(i, p) for i, p in enumerate(s.pcus)))
            for s in program.sections
        }
        clock = self.meta.target.clock_ghz
        self.counters: dict[str, perf.SectionCounters] = {
            s.name: perf.section_counters(s, self.meta.symbols, clock) for s in program.sections
        }

    @property
    def section_names(self) -> list[str]:
        """The sections, in run order."""
        return [s.name for s in self.program.sections]

    def run_section(self, name: str, dram: MutableMapping[str, np.ndarray]) -> None:
        """Run section ``name``: read its inputs from ``dram``, store its outputs into it.

        Outputs replace the ``dram`` entries (arrays given as inputs are never written).
        """
        plan = self._plans.get(name)
        if plan is None:
            raise FabricError(
                f"no section '{name}' in this PEF (it has: {', '.join(self.section_names)})"
            )
        start = time.perf_counter()
        section = plan.section
        buffers = self._bind(section, dram)
        with np.errstate(all="ignore"):
            for pcu in plan.pcus:
                _run_pcu(pcu, buffers)
        symbols = self.meta.symbols
        for out in section.outputs:
            sym = symbols[out.symbol]
            buffer = buffers[out.pmu]
            if section.pmus[out.pmu].source == "dram":
                buffer = buffer.copy()
            dram[sym.name] = buffer.reshape(sym.shape)
        counters = self.counters[name]
        counters.runs += 1
        counters.host_seconds += time.perf_counter() - start

    def _bind(self, section: Section, dram: MutableMapping[str, np.ndarray]) -> list[np.ndarray]:
        """The PMUs' flat buffers: DRAM inputs checked and bound, PCU-written ones zeroed."""
        symbols = self.meta.symbols
        flat: dict[int, np.ndarray] = {}
        for index in section.inputs:
            sym = symbols[index]
            if sym.name not in dram:
                raise FabricError(f"section '{section.name}': input '{sym.name}' is not in DRAM")
            array = np.asarray(dram[sym.name])
            want = DTYPES[sym.dtype]
            if array.shape != tuple(sym.shape) or array.dtype != want:
                raise FabricError(
                    f"section '{section.name}': input '{sym.name}' is {list(array.shape)} "
                    f"{_dtype_name(array.dtype)} but the PEF expects {sym.shape} {sym.dtype}"
                )
            flat[index] = np.ascontiguousarray(array).reshape(-1)
        buffers = []
        for pmu in section.pmus:
            if pmu.source == "dram":
                buffers.append(flat[pmu.symbol])
            else:
                buffers.append(np.zeros(math.prod(pmu.shape), DTYPES[pmu.dtype]))
        return buffers
