"""The PCU's instruction set: one table of every opcode (name, arity, type rule, FLOPs, stages,
whether it reads the point's position).

Everything that knows an opcode reads it here: the dataflow and pcu verifiers
(``dialects/dataflow.py``, ``dialects/pcu.py``), the PEF validator (``runtime/pef/validate.py``),
the performance model (``runtime/machine/perf.py``) and the emulator (``runtime/fabric.py``,
which holds each opcode's numpy implementation). Adding an opcode is one entry in ``OPCODES``
plus its implementation in the emulator. Pure data: no numpy, no xdsl.

Values are ``f32``, ``bf16``, ``i64`` or ``i1``: one table, ``ELEMENT_TYPES`` (bytes, kind,
numpy name, elements a lane holds), from which ``DTYPES``, ``DTYPE_BYTES``, ``FLOAT_DTYPES``, the
PEF's ``Dtype``, the dialects' fabric names, tiling's element sizes and the emulator's numpy
dtypes all come. A "float" below is ``f32`` or ``bf16``. A ``bf16`` stage computes as torch's CPU
kernels do: its operands widened to f32, the f32 result rounded (to nearest even) to bf16; a
``bf16`` multiply-accumulate (combiner ``add``) accumulates in f32 and rounds once at the end.
Type rules (``d`` is the stage's own dtype, the dtype of the value it produces); each accepts
exactly what the emulator computes correctly:

- ``float``: every operand ``d``; ``d`` is a float.    exp log sqrt rsqrt tanh erf cos sin
- ``arith``: every operand ``d``; ``d`` is a float or ``i64``.    neg abs sub div
  (not ``i1``: numpy refuses to negate or subtract booleans)
- ``arith1``: like arith but ``d`` may also be ``i1``
  (``add`` is or, ``mul`` and ``min`` are and, ``max`` is or).   add mul max min
- ``pow``: base ``d`` (a float or ``i64``), exponent ``d``, or ``i64`` when ``d`` is a float
  (a float exponent of an ``i64`` base would be truncated: torch gives a float).   pow
- ``logic``: every operand ``d``; ``d`` is ``i1`` (logical) or ``i64`` (bitwise). not and or
- ``compare``: both operands of one dtype; ``d`` is ``i1``.      eq ne lt le gt ge
- ``select``: ``(cond: i1, a: d, b: d)``.                        select
- ``cast``: any operand dtype to ``d``.                          cast
- ``mul`` also takes two ``bf16`` operands to an ``f32`` product (exact: 8-bit significands
  multiply into 16 bits): the bf16 multiplier feeding an f32 accumulation, as a bf16-mixed
  matmul reads its bf16 operands without a widening stage (``Opcode.widening``).
- ``const``: no operand, the immediate is the number.            const
- ``counter``: no operand, the immediate is the counter index, ``d`` is ``i64``.  counter
- ``rand``: one ``i64`` operand (the key), ``d`` is ``f32``.          rand

``rand`` is a counter-based generator: with ``n`` the point's row-major index in the PCU's
whole space (independent of tiles and lanes), ``G = 0x9E3779B97F4A7C15`` and ``mix`` the
splitmix64 finalizer (``z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27;
z *= 0x94D049BB133111EB; z ^= z >> 31``, all modulo 2**64), it gives
``(mix(mix(key) + (n + 1) * G) >> 40) * 2**-24``: 24 random bits, a float32 in ``[0, 1)``.

Integer ``div`` rounds toward zero (like ``arith.divsi``); float ``-> i64`` casts truncate;
``f32 -> bf16`` rounds to nearest even (as torch's ``.to(torch.bfloat16)``), ``bf16 -> f32`` is
exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Dtype = Literal["f32", "bf16", "i64", "i1"]
"""The fabric's element types (also the PEF's ``dtype`` field and the MLIR spelling)."""


@dataclass(frozen=True)
class ElementType:
    """One element type of the fabric."""

    name: Dtype
    bytes: int
    """Bytes one element takes, in a PMU and in DRAM (a bool a byte)."""
    kind: Literal["float", "int", "bool"]
    numpy: str
    """numpy's name of the dtype (``bfloat16`` is ``ml_dtypes``', registered on its import)."""
    host_kinds: str
    """numpy kinds (``dtype.kind``) of host arrays the runtime converts to it (``V``: bf16)."""
    per_lane: int
    """Elements one 32-bit PCU lane holds (a vector of a PCU's lanes, a PMU bank's word)."""


ELEMENT_TYPES: Final[dict[str, ElementType]] = {
    e.name: e
    for e in (
        ElementType("f32", 4, "float", "float32", "fiubV", 1),
        ElementType("bf16", 2, "float", "bfloat16", "fiubV", 2),
        ElementType("i64", 8, "int", "int64", "iu", 1),
        ElementType("i1", 1, "bool", "bool", "b", 1),
    )
}
"""Every element type of the fabric, by name: the one table the others derive from."""

DTYPES: Final[tuple[str, ...]] = tuple(ELEMENT_TYPES)
"""The dtypes of the fabric's values (float32, bfloat16, int64, bool)."""

DTYPE_BYTES: Final[dict[str, int]] = {n: e.bytes for n, e in ELEMENT_TYPES.items()}
"""Bytes one element of each dtype takes, in a PMU and in DRAM (a bool a byte)."""

FLOAT_DTYPES: Final[tuple[str, ...]] = tuple(
    n for n, e in ELEMENT_TYPES.items() if e.kind == "float"
)
"""The float dtypes (``f32``, ``bf16``)."""

TypeRule = Literal[
    "float",
    "arith",
    "arith1",
    "pow",
    "logic",
    "compare",
    "select",
    "cast",
    "const",
    "counter",
    "rand",
]


@dataclass(frozen=True)
class Opcode:
    """One opcode of the PCU."""

    name: str
    arity: int
    """Operands it takes."""
    rule: TypeRule
    """Its type rule (the module docstring)."""
    flops: int
    """Floating-point operations it counts for, at each point (the performance model)."""
    stages: int
    """Pipeline stages it takes: 1, or 0 for an immediate or the counter chain."""
    positional: bool = False
    """Its value depends on the point's position in the unit's whole space, every counter of it
    (``rand``): a unit holding one is never split into parallel copies, which each start at
    their block. A ``counter`` reads one counter only: its unit may be split along the others
    (``rules.parallel_problem``'s ``counters``)."""
    widening: bool = False
    """It also takes ``bf16`` operands to an exact ``f32`` result (the bf16 multiplier)."""


def _ops(
    names: str, arity: int, rule: TypeRule, flops: int, stages: int = 1, positional: bool = False
) -> list[Opcode]:
    return [Opcode(name, arity, rule, flops, stages, positional) for name in names.split()]


OPCODES: Final[dict[str, Opcode]] = {
    op.name: op
    for op in (
        *_ops("exp log sqrt rsqrt tanh erf cos sin", 1, "float", flops=1),
        *_ops("neg abs", 1, "arith", flops=1),
        *_ops("not", 1, "logic", flops=0),
        *_ops("cast", 1, "cast", flops=0),
        *_ops("sub div", 2, "arith", flops=1),
        *_ops("add", 2, "arith1", flops=1),
        Opcode("mul", 2, "arith1", flops=1, stages=1, widening=True),
        *_ops("max min", 2, "arith1", flops=1),
        *_ops("pow", 2, "pow", flops=1),
        *_ops("eq ne lt le gt ge", 2, "compare", flops=0),
        *_ops("and or", 2, "logic", flops=0),
        *_ops("select", 3, "select", flops=0),
        *_ops("const", 0, "const", flops=0, stages=0),
        *_ops("counter", 0, "counter", flops=0, stages=0),
        *_ops("rand", 1, "rand", flops=0, positional=True),
    )
}
"""Every opcode by name."""


def opcodes_with(rule: TypeRule) -> tuple[str, ...]:
    """The opcodes of one type rule, in the table's order."""
    return tuple(name for name, op in OPCODES.items() if op.rule == rule)


_NEEDS: Final[dict[TypeRule, str]] = {
    "float": "float (f32/bf16) operands of the result dtype",
    "arith": "operands of the result dtype, one of f32/bf16/i64",
    "arith1": "operands of the result dtype, one of f32/bf16/i64/i1",
    "pow": "a base of the result dtype (f32/bf16/i64), an exponent of that dtype or i64",
    "logic": "i1 or i64 operands of the result dtype",
    "compare": "two operands of one dtype and an i1 result",
    "select": "an i1 condition and two operands of the result dtype",
    "counter": "an i64 result",
    "rand": "an i64 key and an f32 result",
}


def rule_accepts(rule: TypeRule, dtype: str, operands: list[str]) -> bool:
    """Whether ``rule`` allows a value of ``dtype`` computed from operands of ``operands``
    dtypes (the operand count is the caller's to check)."""
    if dtype not in DTYPES or any(o not in DTYPES for o in operands):
        return False
    if rule == "float":
        return dtype in FLOAT_DTYPES and all(o == dtype for o in operands)
    if rule in ("arith", "arith1"):
        allowed = (*FLOAT_DTYPES, "i64", "i1") if rule == "arith1" else (*FLOAT_DTYPES, "i64")
        return dtype in allowed and all(o == dtype for o in operands)
    if rule == "pow":
        exponents = (dtype, "i64") if dtype in FLOAT_DTYPES else ("i64",)
        return dtype in (*FLOAT_DTYPES, "i64") and operands[0] == dtype and operands[1] in exponents
    if rule == "logic":
        return dtype in ("i1", "i64") and all(o == dtype for o in operands)
    if rule == "compare":
        return dtype == "i1" and operands[0] == operands[1]
    if rule == "select":
        return operands[0] == "i1" and operands[1] == dtype and operands[2] == dtype
    if rule == "counter":
        return dtype == "i64"
    if rule == "rand":
        return dtype == "f32" and operands[0] == "i64"
    return True  # cast, const: any dtype


def rule_error(rule: TypeRule, name: str, dtype: str, operands: list[str]) -> str | None:
    """Why ``name`` (of type rule ``rule``) producing ``dtype`` from operands of ``operands``
    dtypes is ill-typed, or None."""
    if rule_accepts(rule, dtype, operands):
        return None
    shown = f"'{name}' ({', '.join(operands)}) -> {dtype}"
    return f"{shown} is ill-typed: needs {_NEEDS.get(rule, 'fabric values')}"


def type_error(op: str, dtype: str, operands: list[str]) -> str | None:
    """Why opcode ``op`` producing ``dtype`` from operands of ``operands`` dtypes is ill-typed,
    or None. ``op`` must be in ``OPCODES`` and ``operands`` of its arity."""
    if OPCODES[op].widening and dtype == "f32" and all(o == "bf16" for o in operands):
        return None
    return rule_error(OPCODES[op].rule, op, dtype, operands)
