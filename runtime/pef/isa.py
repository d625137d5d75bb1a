"""The PCU instruction set: opcode names, arities and operand type rules.

This is part of the PEF format (the compiler emits these opcodes, ``validate`` checks them, the
emulator in ``runtime.fabric`` implements them). Pure data: no numpy here.

Type rules (``d`` is the stage's own dtype, the dtype of the value it produces):

- ``float``: every operand ``f32``; ``d`` is ``f32``.    exp log sqrt rsqrt tanh erf cos sin
- ``arith``: every operand ``d``; ``d`` is ``f32`` or ``i64``.    neg abs sub div
- ``arith1``: like arith but ``d`` may also be ``i1``
  (``add`` is or, ``mul`` and ``min`` are and, ``max`` is or).   add mul max min
- ``pow``: base ``d`` (``f32``/``i64``), exponent ``f32`` or ``i64``.   pow
- ``logic``: every operand ``d``; ``d`` is ``i1`` or ``i64`` (bitwise). not and or
- ``compare``: both operands of one dtype; ``d`` is ``i1``.      eq ne lt le gt ge
- ``select``: ``(cond: i1, a: d, b: d)``.                        select
- ``cast``: any operand dtype to ``d``.                          cast
- ``const``: no operand, ``imm`` is the number.                  const
- ``counter``: no operand, ``imm`` is the counter index, ``d`` is ``i64``.  counter
- ``rand``: one ``i64`` operand (the key), ``d`` is ``f32``.          rand

``rand`` is a counter-based generator: with ``n`` the point's row-major index in the PCU's
whole space (independent of tiles and lanes), ``G = 0x9E3779B97F4A7C15`` and ``mix`` the
splitmix64 finalizer (``z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27;
z *= 0x94D049BB133111EB; z ^= z >> 31``, all modulo 2**64), it gives
``(mix(mix(key) + (n + 1) * G) >> 40) * 2**-24``: 24 random bits, a float32 in ``[0, 1)``.

Integer ``div`` rounds toward zero (like ``arith.divsi``); ``f32 -> i64`` casts truncate.
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple

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


class Signature(NamedTuple):
    """An opcode's number of operands and its type rule."""

    arity: int
    rule: TypeRule


SIGNATURES: Final[dict[str, Signature]] = {
    **{
        op: Signature(1, "float")
        for op in ("exp", "log", "sqrt", "rsqrt", "tanh", "erf", "cos", "sin")
    },
    **{op: Signature(1, "arith") for op in ("neg", "abs")},
    "not": Signature(1, "logic"),
    "cast": Signature(1, "cast"),
    **{op: Signature(2, "arith") for op in ("sub", "div")},
    **{op: Signature(2, "arith1") for op in ("add", "mul", "max", "min")},
    "pow": Signature(2, "pow"),
    **{op: Signature(2, "compare") for op in ("eq", "ne", "lt", "le", "gt", "ge")},
    **{op: Signature(2, "logic") for op in ("and", "or")},
    "select": Signature(3, "select"),
    "const": Signature(0, "const"),
    "counter": Signature(0, "counter"),
    "rand": Signature(1, "rand"),
}


def type_error(op: str, dtype: str, operands: list[str]) -> str | None:
    """Why ``op`` producing ``dtype`` from operands of ``operands`` dtypes is ill-typed, or None."""
    rule = SIGNATURES[op].rule
    shown = f"'{op}' ({', '.join(operands)}) -> {dtype}"
    if rule == "float":
        ok = dtype == "f32" and all(o == "f32" for o in operands)
        need = "f32 operands and result"
    elif rule in ("arith", "arith1"):
        allowed = ("f32", "i64", "i1") if rule == "arith1" else ("f32", "i64")
        ok = dtype in allowed and all(o == dtype for o in operands)
        need = f"operands of the result dtype, one of {'/'.join(allowed)}"
    elif rule == "pow":
        ok = dtype in ("f32", "i64") and operands[0] == dtype and operands[1] in ("f32", "i64")
        need = "an f32/i64 base of the result dtype and an f32/i64 exponent"
    elif rule == "logic":
        ok = dtype in ("i1", "i64") and all(o == dtype for o in operands)
        need = "i1 or i64 operands of the result dtype"
    elif rule == "compare":
        ok = dtype == "i1" and operands[0] == operands[1]
        need = "two operands of one dtype and an i1 result"
    elif rule == "select":
        ok = operands[0] == "i1" and operands[1] == dtype and operands[2] == dtype
        need = "an i1 condition and two operands of the result dtype"
    elif rule == "counter":
        ok = dtype == "i64"
        need = "an i64 result"
    elif rule == "rand":
        ok = dtype == "f32" and operands[0] == "i64"
        need = "an i64 key and an f32 result"
    else:  # cast, const
        return None
    return None if ok else f"{shown} is ill-typed: needs {need}"
