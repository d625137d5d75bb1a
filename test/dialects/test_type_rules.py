"""The opcode type rules live in three places (dataflow's pointwise kinds, pcu's stage opcodes,
the PEF's ISA in runtime/pef/isa.py): they must agree, or a kernel that verifies in one layer is
refused by the next."""

from __future__ import annotations

from dialects import dataflow, pcu
from runtime.pef.isa import SIGNATURES


def test_pcu_opcodes_have_the_isa_arities() -> None:
    for op, arity in pcu.OPCODE_ARITY.items():
        assert SIGNATURES[op].arity == arity, op


def test_float_only_opcodes_agree_in_all_three_places() -> None:
    # ``pow`` aside: the ISA's own rule also takes an i64 base, which the dialects refuse.
    isa_float = {op for op, sig in SIGNATURES.items() if sig.rule == "float"}
    assert set(pcu.FLOAT_OPCODES) - {"pow"} == isa_float
    assert set(dataflow.FLOAT_KINDS) - {"pow"} == isa_float


def test_every_float_pointwise_kind_is_a_pcu_opcode() -> None:
    for kind in dataflow.FLOAT_KINDS:
        assert kind in pcu.OPCODE_ARITY, kind
