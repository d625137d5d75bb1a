"""The opcodes' type rules, one table (``runtime/machine/opcodes.py``) read by every layer: for
every opcode and every combination of operand and result dtypes, the pcu verifier accepts a
stage exactly when the PEF validator accepts it in a program, the dataflow verifier accepts the
pointwise kind of that name exactly when both do, and the emulator runs every accepted one.
Likewise for every combiner on an output that reduces or not and is a scatter or not, and for
every vector of parallel factors of a unit.

So a program the verifier accepts is never refused by the runtime, and the reverse."""

from __future__ import annotations

import itertools
import math
from typing import get_args

import numpy as np
import pytest
from pefkit import ProgramBuilder, elementwise, matmul_program, replace, st
from xdsl.dialects.builtin import MemRefType, TensorType, bf16, f32, i1, i64
from xdsl.ir import Attribute, Block
from xdsl.utils.exceptions import VerifyException

from dialects.dataflow import POINTWISE_RULES, PointwiseOp
from dialects.pcu import STAGE_OPCODES, CounterOp, StageOp, UnitOp
from dialects.pcu import YieldOp as PcuYieldOp
from dialects.rdu_tile import AccessAttr, dense_i64
from runtime.dtypes import NUMPY_DTYPES
from runtime.fabric import Fabric
from runtime.machine.opcodes import DTYPES, OPCODES
from runtime.pef import PefError, schema, validate

IR_TYPES: dict[str, Attribute] = {"f32": f32, "bf16": bf16, "i64": i64, "i1": i1}
SAMPLES: dict[str, np.ndarray] = {
    "f32": np.array([0.5, 1.5, 2.0, 3.25], np.float32),  # positive: log and sqrt are defined
    "bf16": np.array([0.5, 1.5, 2.0, 3.25], NUMPY_DTYPES["bf16"]),
    "i64": np.array([3, -2, 0, 7], np.int64),
    "i1": np.array([True, False, True, False]),
}

CASES = [
    (name, result, operands)
    for name, op in STAGE_OPCODES.items()
    for result in DTYPES
    for operands in itertools.product(DTYPES, repeat=op.arity)
]
"""Every stage opcode with every result dtype and operand dtypes (``const`` and ``counter``
are ops of their own in the pcu dialect and take no operands)."""


def pcu_accepts(name: str, result: str, operands: tuple[str, ...]) -> bool:
    block = Block(arg_types=[IR_TYPES[d] for d in operands])
    stage = StageOp(name, block.args, IR_TYPES[result])
    try:
        stage.verify_()
    except VerifyException as error:
        assert "ill-typed" in str(error), error
        return False
    return True


def dataflow_accepts(kind: str, result: str, operands: tuple[str, ...]) -> bool:
    block = Block(arg_types=[TensorType(IR_TYPES[d], [4]) for d in operands])
    op = PointwiseOp(kind, block.args, TensorType(IR_TYPES[result], [4]))
    try:
        op.verify_()
    except VerifyException as error:
        assert "ill-typed" in str(error), error
        return False
    return True


def one_stage_program(name: str, result: str, operands: tuple[str, ...]) -> schema.Program:
    """A PEF whose one PCU computes ``name`` over inputs of ``operands`` dtypes."""
    p = ProgramBuilder(inference=True)
    for k, dtype in enumerate(operands):
        p.symbol(f"x{k}", [4], dtype)
    p.symbol("y", [4], result, role="output")
    s = p.section("forward")
    inputs = [(s.load(f"x{k}"), [4]) for k in range(len(operands))]
    stage = st(name, *range(len(operands)), dtype=result)
    s.store("y", elementwise(s, name, [4], inputs, [stage], dtype=result))
    return p.build()


def runtime_accepts(name: str, result: str, operands: tuple[str, ...]) -> bool:
    try:
        validate(one_stage_program(name, result, operands))
    except PefError as error:
        assert "ill-typed" in str(error), error
        return False
    return True


@pytest.mark.parametrize("name", sorted(STAGE_OPCODES))
def test_verifier_and_pef_validator_accept_the_same_stages(name: str) -> None:
    cases = [c for c in CASES if c[0] == name]
    accepted = [c for c in cases if pcu_accepts(*c)]
    assert accepted, f"'{name}' is accepted with no dtypes at all"
    for case in cases:
        assert pcu_accepts(*case) == runtime_accepts(*case), case


@pytest.mark.parametrize("kind", sorted(POINTWISE_RULES))
def test_dataflow_pointwise_kinds_follow_the_same_rules(kind: str) -> None:
    opcode = "max" if kind == "relu" else kind  # relu is max(x, 0)
    arity = POINTWISE_RULES[kind][0]
    for result in DTYPES:
        for operands in itertools.product(DTYPES, repeat=arity):
            pcu_operands = (*operands, operands[0]) if kind == "relu" else operands
            expected = pcu_accepts(opcode, result, pcu_operands)
            if kind == "relu":
                expected = expected and result != "i1"  # max on i1 is or; relu is not
            if OPCODES[opcode].widening and result == "f32" and set(operands) == {"bf16"}:
                # the bf16 multiplier is a stage the lowering picks for mul(cast x, cast y):
                # the dataflow IR keeps every cast explicit
                expected = False
            assert dataflow_accepts(kind, result, operands) == expected, (kind, result, operands)


@pytest.mark.parametrize("name", sorted(STAGE_OPCODES))
def test_the_emulator_runs_every_accepted_stage_in_its_dtype(name: str) -> None:
    for case in CASES:
        if case[0] != name or not pcu_accepts(*case):
            continue
        _, result, operands = case
        dram = {f"x{k}": SAMPLES[d] for k, d in enumerate(operands)}
        with np.errstate(all="ignore"):  # i64 pow to a negative power, 1/0: defined results
            Fabric(one_stage_program(*case)).run_section("forward", dram)
        assert dram["y"].dtype == SAMPLES[result].dtype, case


def test_the_resolved_disagreements() -> None:
    """What the layers disagreed on before the one table, resolved to what the emulator
    computes correctly: bitwise ``and``/``or``/``not`` on i64 (numpy's bitwise ops, torch's
    ``bitwise_*``) and an f32 base to an i64 exponent are accepted; ``neg``/``sub`` on i1 (numpy
    refuses to negate booleans) and an i64 base to an f32 exponent (the exponent would be
    truncated where torch gives a float) are refused."""
    for name, result, operands in [
        ("and", "i64", ("i64", "i64")),
        ("or", "i64", ("i64", "i64")),
        ("not", "i64", ("i64",)),
        ("pow", "f32", ("f32", "i64")),
    ]:
        assert pcu_accepts(name, result, operands) and runtime_accepts(name, result, operands)
    for name, result, operands in [
        ("neg", "i1", ("i1",)),
        ("sub", "i1", ("i1", "i1")),
        ("pow", "i64", ("i64", "f32")),
    ]:
        assert not pcu_accepts(name, result, operands)
        assert not runtime_accepts(name, result, operands)
    with pytest.raises(TypeError):
        np.negative(SAMPLES["i1"])


def test_every_opcode_is_in_the_one_table() -> None:
    assert set(STAGE_OPCODES) == {name for name, op in OPCODES.items() if op.arity > 0}
    assert set(OPCODES) - set(STAGE_OPCODES) == {"const", "counter"}


# --------------------------------------------------------------------------------------------
# Combiners: a unit over space [4, 3] reading x [4, 3] and an i64 index [4, 3] in [0, 4)
# --------------------------------------------------------------------------------------------

OUTPUTS: dict[tuple[bool, bool], tuple[list[int], list[int], tuple[int, int, int] | None]] = {
    # (reduces, scatter): out shape, out strides, out index (port, stride, limit)
    (False, False): ([4, 3], [3, 1], None),  # y[i, j] = x[i, j]
    (True, False): ([4], [1, 0], None),  # y[i] = x[i, :] combined
    (False, True): ([48], [3, 1], (1, 12, 4)),  # y[3i + j + 12 idx[i, j]] = x[i, j]
    (True, True): ([4, 3], [0, 1], (1, 3, 4)),  # y[idx[i, j], j] combines x[i, j]
}
COMBINER_CASES = [
    (combiner, reduces, scatter)
    for combiner in get_args(schema.Combiner)
    for reduces in (False, True)
    for scatter in (False, True)
]
"""Every combiner on an output that reduces or not, and is a scatter or not."""


def combiner_unit(combiner: str, reduces: bool, scatter: bool, dtype: str = "f32") -> UnitOp:
    shape, strides, index = OUTPUTS[(reduces, scatter)]
    elt = IR_TYPES[dtype]
    block = Block(arg_types=[MemRefType(elt, [4, 3]), MemRefType(i64, [4, 3])])
    body = Block(arg_types=[elt, i64])
    body.add_op(PcuYieldOp(body.args[0]))
    return UnitOp(
        "u",
        block.args,
        TensorType(elt, shape),
        [4, 3],
        [4, 3],
        16,
        [AccessAttr(0, [3, 1]), AccessAttr(0, [3, 1])],
        AccessAttr(0, strides, index or ()),
        combiner,
        body,
    )


def combiner_program(
    combiner: str, reduces: bool, scatter: bool, dtype: str = "f32"
) -> schema.Program:
    shape, strides, index = OUTPUTS[(reduces, scatter)]
    p = ProgramBuilder(inference=True)
    p.symbol("x", [4, 3], dtype)
    p.symbol("idx", [4, 3], "i64")
    p.symbol("y", shape, dtype, role="output")
    s = p.section("forward")
    ports = [(s.load("x"), 0, [3, 1]), (s.load("idx"), 0, [3, 1])]
    y = s.pcu(
        "u", [4, 3], ports, [], shape, (0, strides), result=0, combiner=combiner, dtype=dtype,
        out_index=index,
    )  # fmt: skip
    s.store("y", y)
    return p.build()


def unit_accepts(combiner: str, reduces: bool, scatter: bool) -> bool:
    try:
        combiner_unit(combiner, reduces, scatter).verify()
    except VerifyException as error:
        assert "combine" in str(error), error
        return False
    return True


def program_accepts(combiner: str, reduces: bool, scatter: bool) -> bool:
    try:
        validate(combiner_program(combiner, reduces, scatter))
    except PefError as error:
        assert "combine" in str(error), error
        return False
    return True


@pytest.mark.parametrize("case", COMBINER_CASES, ids=str)
def test_verifier_and_pef_validator_accept_the_same_combiners(
    case: tuple[str, bool, bool],
) -> None:
    assert unit_accepts(*case) == program_accepts(*case)


def test_which_combiners_fit_which_outputs() -> None:
    """A reduction needs a combiner, a combiner a reduction or a scatter (whose index may
    repeat), and a scatter adds or stores."""
    accepted = {case for case in COMBINER_CASES if program_accepts(*case)}
    assert accepted == {
        ("none", False, False),
        ("none", False, True),
        ("add", False, True),
        ("add", True, False),
        ("add", True, True),
        ("max", True, False),
        ("min", True, False),
    }


REDUCE = {"add": np.sum, "max": np.max, "min": np.min}


@pytest.mark.parametrize("dtype", ["f32", "i64"])
def test_the_emulator_runs_every_accepted_combiner(dtype: str) -> None:
    x = np.arange(12).reshape(4, 3).astype(SAMPLES[dtype].dtype) - 5
    idx = np.array([[0, 3, 1], [2, 0, 0], [3, 3, 2], [1, 0, 3]], np.int64)
    for case in COMBINER_CASES:
        if not program_accepts(*case):
            continue
        combiner, reduces, scatter = case
        dram = {"x": x, "idx": idx}
        Fabric(combiner_program(*case, dtype=dtype)).run_section("forward", dram)
        if reduces and scatter:
            expected = np.zeros((4, 3), x.dtype)
            np.add.at(expected, (idx, np.arange(3)), x)
        elif reduces:
            expected = REDUCE[combiner](x, axis=1)
        elif scatter:
            expected = np.zeros(48, x.dtype)
            expected[np.arange(12).reshape(4, 3) + 12 * idx] = x
        else:
            expected = x
        np.testing.assert_array_equal(dram["y"].reshape(expected.shape), expected, str(case))


# --------------------------------------------------------------------------------------------
# Parallel factors: a matmul over space [m, n, k] = [4, 6, 3] (k reduced) as copies
# --------------------------------------------------------------------------------------------

FACTORS = list(itertools.product(range(1, 6), range(1, 8), range(1, 4)))
"""Every factor vector up to one past each extent."""
VARIANTS = ("matmul", "counter stage", "one buffer, two accesses")


def parallel_unit(variant: str, factors: tuple[int, ...]) -> UnitOp:
    a = MemRefType(f32, [4, 3])
    b = MemRefType(f32, [3, 6])
    block = Block(arg_types=[a, b])
    operands = [block.args[0], block.args[0 if variant == "one buffer, two accesses" else 1]]
    ins = [AccessAttr(0, [3, 0, 1]), AccessAttr(0, [0, 1, 6])]
    if variant == "one buffer, two accesses":
        ins[1] = AccessAttr(0, [0, 0, 1])
    body = Block(arg_types=[f32, f32])
    if variant == "counter stage":
        body.add_op(CounterOp(0))
    mul = StageOp("mul", body.args, f32)
    body.add_ops([mul, PcuYieldOp(mul)])
    unit = UnitOp(
        "u", operands, TensorType(f32, [4, 6]), [4, 6, 3], [1, 6, 3], 16, ins,
        AccessAttr(0, [6, 1, 0]), "add", body,
    )  # fmt: skip
    unit.properties["parallel"] = dense_i64(factors)
    return unit


def parallel_program(variant: str, factors: tuple[int, ...]) -> schema.Program:
    program = matmul_program(4, 3, 6)
    section = program.sections[0]
    (pcu,) = section.pcus
    copies = math.prod(factors)
    changes: dict[str, object] = {
        "parallel": list(factors),
        "more_at": [[4 + c % 12, 1 + c // 12] for c in range(copies - 1)],
    }
    if variant == "counter stage":
        changes["stages"] = [st("counter", imm=0, dtype="i64"), st("mul", 0, 1)]
    if variant == "one buffer, two accesses":
        a = schema.Port(pmu=0, access=schema.Access(offset=0, strides=[0, 0, 1]))
        changes["inputs"] = [pcu.inputs[0], a]
    pcu = replace(pcu, **changes)
    return replace(program, sections=[replace(section, pcus=[pcu])])


def unit_runs_parallel(variant: str, factors: tuple[int, ...]) -> bool:
    try:
        parallel_unit(variant, factors).verify()
    except VerifyException as error:
        assert "parallel" in str(error), error
        return False
    return True


def program_runs_parallel(variant: str, factors: tuple[int, ...]) -> bool:
    """Whether the validator takes the factors (it may refuse the copies' slots and routes,
    which this program does not lay out, after them)."""
    try:
        validate(parallel_program(variant, factors))
    except PefError as error:
        return not any(what in str(error) for what in PARALLEL_REFUSALS)
    return True


PARALLEL_REFUSALS = ("parallel has", "parallel factor", "a parallel unit", "another access")
"""The validator's refusals of factors (``runtime.machine.rules.parallel_problem``)."""


@pytest.mark.parametrize("variant", VARIANTS)
def test_verifier_and_pef_validator_accept_the_same_parallel_factors(variant: str) -> None:
    accepted = [f for f in FACTORS if unit_runs_parallel(variant, f)]
    assert accepted == [f for f in FACTORS if program_runs_parallel(variant, f)]
    matmul = [f for f in FACTORS if unit_runs_parallel("matmul", f)]
    if variant == "matmul":
        assert (2, 3, 1) in accepted and (3, 1, 1) not in accepted  # 3 blocks of 2 rows over 4
        assert not [f for f in accepted if f[2] > 1]  # k is reduced
    elif variant == "counter stage":  # it reads counter 0: the copies may split the others
        assert accepted == [f for f in matmul if f[0] == 1] and (1, 3, 1) in accepted
    else:
        assert accepted == []
