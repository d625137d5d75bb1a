# ruff: noqa: E501  (IR text in the tests is kept one op a line, as rdu-opt prints it)
"""Kinds, roles, combiners and opcodes are enum attributes whose members are the shared layer's
one list of each (``runtime/machine/opcodes.py``, ``runtime/pef/schema.py``); an unknown name
is refused where it is written, with the names it could have been."""

from __future__ import annotations

from io import StringIO
from typing import get_args

import pytest
from xdsl.dialects.builtin import TensorType, f32
from xdsl.ir import Block
from xdsl.printer import Printer

from dialects.dataflow import POINTWISE_RULES, PointwiseKind, PointwiseOp, ReduceKind, Role
from dialects.dataflow import SectionKind as SectionKindEnum
from dialects.pcu import STAGE_OPCODES, StageOpcode
from dialects.rdu_tile import Combiner
from runtime.machine.opcodes import OPCODES
from runtime.pef import schema
from tools.rdu_opt import IrError, load_ir


def values(enum_type: type) -> list[str]:
    return [member.value for member in enum_type]


def test_each_enum_is_its_table() -> None:
    assert values(StageOpcode) == list(STAGE_OPCODES)
    assert set(STAGE_OPCODES) == {name for name, op in OPCODES.items() if op.arity > 0}
    assert values(PointwiseKind) == list(POINTWISE_RULES)
    assert values(Combiner) == list(get_args(schema.Combiner))
    assert values(Role) == list(get_args(schema.Role))
    assert values(SectionKindEnum) == list(get_args(schema.SectionKind))
    assert values(ReduceKind) == ["sum", "max", "min"]


UNIT = """\
builtin.module {
  dataflow.section @s forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>],
                                          result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4xf32>):
    %b = pmu.buffer %a {name = "a", tile_bytes = 16 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4xf32> -> memref<4xf32>
    %u = pcu.unit @u (%b) space [4] tile [4] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<4xf32>) -> tensor<4xf32> {
    ^bb0(%x: f32):
      %r = pcu.stage exp(%x) : (f32) -> f32
      pcu.yield %r : f32
    }
    dataflow.yield
  }
}
"""
POINTWISE = """\
builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4xf32>
  %1 = dataflow.pointwise exp(%0) : (tensor<4xf32>) -> tensor<4xf32>
  %2 = dataflow.reduce sum %1 dims [0] : (tensor<4xf32>) -> tensor<f32>
}
"""


@pytest.mark.parametrize(
    ("source", "good", "bad", "unknown", "message"),
    [
        (UNIT, "stage exp(", "stage fma(", "fma", "unknown opcode 'fma' (expected one of exp, log,"),
        (UNIT, "combiner none", "combiner mul", "mul", "unknown combiner 'mul' (expected one of none, add, max, min)"),
        (UNIT, "role input", "role weights", "weights", "unknown role 'weights' (expected one of input, label,"),
        (UNIT, "@s forward", "@s sideways", "sideways", "unknown section kind 'sideways' (expected one of forward,"),
        (POINTWISE, "pointwise exp", "pointwise expo", "expo", "unknown pointwise kind 'expo' (expected one of exp,"),
        (POINTWISE, "reduce sum", "reduce mean", "mean", "unknown reduce kind 'mean' (expected one of sum, max, min)"),
    ],
    ids=["opcode", "combiner", "role", "section-kind", "pointwise-kind", "reduce-kind"],
)  # fmt: skip
def test_an_unknown_name_is_refused_where_it_is_written(
    source: str, good: str, bad: str, unknown: str, message: str
) -> None:
    load_ir(source, "ok.mlir")
    lines = source.replace(good, bad).splitlines()
    line = next(i for i, text in enumerate(lines) if bad in text)
    col = lines[line].index(bad) + bad.index(unknown)
    with pytest.raises(IrError) as caught:
        load_ir("\n".join(lines), "bad.mlir")
    assert caught.value.where == f"bad.mlir:{line + 1}:{col + 1}"
    assert caught.value.message.startswith(message)


def test_the_names_print_bare_and_parse_quoted_too() -> None:
    module = load_ir(POINTWISE.replace("pointwise exp", 'pointwise "exp"'))
    text = str(module)
    assert "dataflow.pointwise exp(%0)" in text and "dataflow.reduce sum %1" in text
    assert str(load_ir(text)) == text
    generic = StringIO()
    Printer(generic, print_generic_format=True).print_op(module)
    assert "kind = #dataflow<pointwise exp>" in generic.getvalue()
    assert str(load_ir(generic.getvalue())) == text


def test_a_builder_refuses_an_unknown_name() -> None:
    block = Block(arg_types=[TensorType(f32, [4])])
    with pytest.raises(ValueError, match="'frobnicate' is not a valid PointwiseKind"):
        PointwiseOp("frobnicate", block.args, TensorType(f32, [4]))
