"""The ``dataflow`` dialect: the tensor-level IR the frontend produces.

A model becomes a ``builtin.module`` holding ``dataflow.section`` ops (``forward``, ``backward``,
``optimizer``). Each section is isolated from above: its block arguments are the DRAM tensors it
reads (named by ``arg_names`` / ``arg_roles``), its ``dataflow.yield`` gives the DRAM tensors it
writes (``result_names`` / ``result_roles``). Inside a section, values are builtin ``tensor<...>``
types with static shapes and these primitives compute on them:

- ``dataflow.matmul``: batched matrix product with equal batch dims,
- ``dataflow.pointwise <kind>``: elementwise op with numpy broadcasting of its operands,
- ``dataflow.reduce sum|max|min``: reduction over some dims (kept as 1 or dropped),
- ``dataflow.fill``: a splat constant; ``dataflow.iota``: indices along a dim,
- views: ``dataflow.transpose``, ``dataflow.reshape``, ``dataflow.broadcast``,
  ``dataflow.as_strided`` (affine windows: convolution, pooling),
- ``dataflow.pad``: zero padding at the edges and between elements,
- ``dataflow.extract_slice`` (a view: slice, select, split, flip), ``dataflow.take`` and
  ``dataflow.put_add`` (gather and scatter-add along a dim by an index tensor: embedding and its
  gradient), ``dataflow.random`` (counter-based uniform numbers: dropout).

See docs/design.md for the contract shared with the lowering passes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from enum import auto
from typing import TYPE_CHECKING, get_args

from xdsl.dialects.builtin import (
    I64,
    AnyFloat,
    ArrayAttr,
    DenseArrayBase,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    StringAttr,
    SymbolNameConstraint,
    TensorType,
    f64,
    i1,
    i64,
)
from xdsl.dialects.utils import EnumAttribute
from xdsl.ir import (
    Attribute,
    Block,
    Dialect,
    Operation,
    Region,
    SpacedOpaqueSyntaxAttribute,
    SSAValue,
)
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.traits import (
    IsolatedFromAbove,
    IsTerminator,
    NoMemoryEffect,
    SymbolOpInterface,
)
from xdsl.utils.exceptions import VerifyException
from xdsl.utils.str_enum import StrEnum

from dialects.enums import parse_member, table_enum
from runtime.machine.opcodes import OPCODES, TypeRule, opcodes_with, rule_error
from runtime.machine.rules import address_range
from runtime.pef import schema

POINTWISE_RULES: dict[str, tuple[int, TypeRule]] = {
    **{
        name: (op.arity, op.rule)
        for name, op in OPCODES.items()
        if op.arity > 0 and name != "rand"  # random numbers are dataflow.random's
    },
    "relu": (1, "arith"),  # max(x, 0)
}
"""Every pointwise kind: its arity and its type rule (``runtime/machine/opcodes.py``; every
kind but ``relu`` is the PCU opcode of its name)."""
UNARY_KINDS = tuple(k for k, (arity, _) in POINTWISE_RULES.items() if arity == 1)
BINARY_KINDS = tuple(k for k, (arity, _) in POINTWISE_RULES.items() if arity == 2)
COMPARISON_KINDS = opcodes_with("compare")
LOGICAL_KINDS = opcodes_with("logic")


# --------------------------------------------------------------------------------------------
# Enum attributes: section kinds, roles, pointwise and reduce kinds
# --------------------------------------------------------------------------------------------

if TYPE_CHECKING:

    class SectionKind(StrEnum):
        """The kinds of section (``runtime/pef/schema.py``), in the order a training step runs
        them: ``forward``, ``backward``, ``optimizer``."""

    class Role(StrEnum):
        """The roles of a DRAM tensor (``runtime/pef/schema.py``; the symbol table in
        docs/design.md)."""

    class PointwiseKind(StrEnum):
        """The kinds of ``dataflow.pointwise``: the keys of ``POINTWISE_RULES``."""

else:
    SectionKind = table_enum("SectionKind", get_args(schema.SectionKind), __name__)
    Role = table_enum("Role", get_args(schema.Role), __name__)
    PointwiseKind = table_enum("PointwiseKind", POINTWISE_RULES, __name__)


class ReduceKind(StrEnum):
    """How ``dataflow.reduce`` combines the values of its reduced dims."""

    SUM = auto()
    MAX = auto()
    MIN = auto()


@irdl_attr_definition
class SectionKindAttr(EnumAttribute[SectionKind], SpacedOpaqueSyntaxAttribute):
    """A section's kind: ``forward`` (``#dataflow<section_kind forward>``)."""

    name = "dataflow.section_kind"

    @classmethod
    def parse_parameter(cls, parser: AttrParser) -> SectionKind:
        return parse_member(parser, SectionKind, "section kind")


@irdl_attr_definition
class RoleAttr(EnumAttribute[Role], SpacedOpaqueSyntaxAttribute):
    """A DRAM tensor's role: ``#dataflow<role parameter>``."""

    name = "dataflow.role"

    @classmethod
    def parse_parameter(cls, parser: AttrParser) -> Role:
        return parse_member(parser, Role, "role")


@irdl_attr_definition
class PointwiseKindAttr(EnumAttribute[PointwiseKind], SpacedOpaqueSyntaxAttribute):
    """A pointwise kind: ``#dataflow<pointwise add>`` (``add`` in ``dataflow.pointwise``)."""

    name = "dataflow.pointwise"

    @classmethod
    def parse_parameter(cls, parser: AttrParser) -> PointwiseKind:
        return parse_member(parser, PointwiseKind, "pointwise kind")


@irdl_attr_definition
class ReduceKindAttr(EnumAttribute[ReduceKind], SpacedOpaqueSyntaxAttribute):
    """A reduce kind: ``#dataflow<reduce sum>`` (``sum`` in ``dataflow.reduce``)."""

    name = "dataflow.reduce"

    @classmethod
    def parse_parameter(cls, parser: AttrParser) -> ReduceKind:
        return parse_member(parser, ReduceKind, "reduce kind")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _static_tensor(value: SSAValue | Attribute, what: str) -> TensorType[Attribute]:
    """The value's (or type's) tensor type, which must have a static shape."""
    typ = value.type if isinstance(value, SSAValue) else value
    if not isinstance(typ, TensorType):
        raise VerifyException(f"{what} must be a ranked tensor, got {typ}")
    if any(d < 0 for d in typ.get_shape()):
        raise VerifyException(f"{what} must have a static shape, got {typ}")
    return typ


def _fmt_shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...] | None:
    """numpy broadcasting of ``shapes``; None if they do not broadcast."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[int] = []
    for i in range(rank):
        dim = 1
        for s in shapes:
            j = i - (rank - len(s))
            if j < 0:
                continue
            d = s[j]
            if d == 1:
                continue
            if dim not in (1, d):
                return None
            dim = d
        out.append(dim)
    return tuple(out)


@functools.cache
def fabric_dtype(typ: Attribute) -> str:
    """The fabric's name of an element type: its IR text, which for the fabric's element types
    (``runtime.machine.opcodes.DTYPES``: ``f32``, ``bf16``, ``i64``, ``i1``) is their name;
    any other type's text no type rule but ``cast``'s accepts.

    Cached (types are immutable and hashable): printing one takes about 20 us, and the
    lowering of GPT-2 small asks about 46,000 times, for a handful of types."""
    return str(typ)


def _is_float(t: Attribute) -> bool:
    return isinstance(t, AnyFloat)


def _dense_i64(values: Sequence[int]) -> DenseArrayBase[IntegerType]:
    return DenseArrayBase.from_list(i64, list(values))


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def _string_array(values: Sequence[str]) -> ArrayAttr[StringAttr]:
    return ArrayAttr([StringAttr(v) for v in values])


def _role_array(values: Sequence[str]) -> ArrayAttr[RoleAttr]:
    return ArrayAttr([RoleAttr(Role(v)) for v in values])


@irdl_op_definition
class YieldOp(IRDLOperation):
    """Terminator of a section: the values stored to DRAM under the section's result names.

    Operands may be of any type: tensors at the dataflow level, pmu buffers after lowering.
    """

    name = "dataflow.yield"

    values = var_operand_def()

    assembly_format = "($values^ `:` type($values))? attr-dict"

    traits = traits_def(IsTerminator(), NoMemoryEffect())

    def __init__(self, *values: SSAValue | Operation) -> None:
        super().__init__(operands=[list(values)])

    def verify_(self) -> None:
        parent = self.parent_op()
        if not isinstance(parent, SectionOp):
            raise VerifyException("'dataflow.yield' must be the terminator of a 'dataflow.section'")


@irdl_op_definition
class SectionOp(IRDLOperation):
    """One program section (forward, backward or optimizer) bound to named DRAM tensors.

    The block's arguments are the section's DRAM inputs (``arg_names[i]`` with role
    ``arg_roles[i]``); the terminating ``dataflow.yield`` gives its DRAM outputs
    (``result_names`` / ``result_roles``). The op stays through every level of lowering.
    """

    name = "dataflow.section"

    sym_name = prop_def(SymbolNameConstraint())
    kind = prop_def(SectionKindAttr)
    arg_names = prop_def(ArrayAttr[StringAttr])
    arg_roles = prop_def(ArrayAttr[RoleAttr])
    result_names = prop_def(ArrayAttr[StringAttr])
    result_roles = prop_def(ArrayAttr[RoleAttr])

    body = region_def("single_block")

    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$sym_name $kind attr-dict-with-keyword $body"

    traits = traits_def(IsolatedFromAbove(), SymbolOpInterface())

    def __init__(
        self,
        sym_name: str,
        kind: str,
        arg_names: Sequence[str],
        arg_roles: Sequence[str],
        result_names: Sequence[str],
        result_roles: Sequence[str],
        body: Region | Block,
    ) -> None:
        if isinstance(body, Block):
            body = Region(body)
        super().__init__(
            properties={
                "sym_name": StringAttr(sym_name),
                "kind": SectionKindAttr(SectionKind(kind)),
                "arg_names": _string_array(arg_names),
                "arg_roles": _role_array(arg_roles),
                "result_names": _string_array(result_names),
                "result_roles": _role_array(result_roles),
            },
            regions=[body],
        )

    @property
    def block(self) -> Block:
        """The section's only block."""
        block = self.body.block
        return block

    @property
    def yield_op(self) -> YieldOp:
        """The terminator."""
        last = self.body.block.last_op
        assert isinstance(last, YieldOp)
        return last

    def arg_by_name(self) -> dict[str, SSAValue]:
        """Block arguments by DRAM name."""
        return {n.data: a for n, a in zip(self.arg_names, self.body.block.args, strict=True)}

    def verify_(self) -> None:
        name = self.sym_name.data
        block = self.body.block
        nargs = len(block.args)
        if len(self.arg_names) != nargs or len(self.arg_roles) != nargs:
            raise VerifyException(
                f"section @{name}: {nargs} block arguments but {len(self.arg_names)} arg_names "
                f"and {len(self.arg_roles)} arg_roles"
            )
        last = block.last_op
        if not isinstance(last, YieldOp):
            raise VerifyException(f"section @{name}: body must end with 'dataflow.yield'")
        nres = len(last.values)
        if len(self.result_names) != nres or len(self.result_roles) != nres:
            raise VerifyException(
                f"section @{name}: yield has {nres} operands but {len(self.result_names)} "
                f"result_names and {len(self.result_roles)} result_roles"
            )
        for what, names in (("arg_names", self.arg_names), ("result_names", self.result_names)):
            seen: set[str] = set()
            for n in names:
                if n.data in seen:
                    raise VerifyException(f"section @{name}: duplicate name '{n.data}' in {what}")
                seen.add(n.data)


# --------------------------------------------------------------------------------------------
# Compute
# --------------------------------------------------------------------------------------------


@irdl_op_definition
class MatmulOp(IRDLOperation):
    """``[..., M, K] x [..., K, N] -> [..., M, N]`` with equal batch dims."""

    name = "dataflow.matmul"

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)

    assembly_format = "$lhs `,` $rhs attr-dict `:` functional-type(operands, results)"

    traits = traits_def(NoMemoryEffect())

    def __init__(
        self, lhs: SSAValue | Operation, rhs: SSAValue | Operation, result_type: Attribute
    ):
        super().__init__(operands=[lhs, rhs], result_types=[result_type])

    def verify_(self) -> None:
        a = _static_tensor(self.lhs, "matmul lhs")
        b = _static_tensor(self.rhs, "matmul rhs")
        r = _static_tensor(self.result, "matmul result")
        sa, sb, sr = a.get_shape(), b.get_shape(), r.get_shape()
        if len(sa) < 2 or len(sa) != len(sb):
            raise VerifyException(
                f"matmul operands must have equal rank >= 2, got {_fmt_shape(sa)} and "
                f"{_fmt_shape(sb)}"
            )
        if sa[:-2] != sb[:-2]:
            raise VerifyException(
                f"matmul batch dims differ: {_fmt_shape(sa[:-2])} vs {_fmt_shape(sb[:-2])}"
            )
        if sa[-1] != sb[-2]:
            raise VerifyException(
                f"matmul contraction dims differ: lhs {_fmt_shape(sa)} has K={sa[-1]}, "
                f"rhs {_fmt_shape(sb)} has K={sb[-2]}"
            )
        expected = (*sa[:-1], sb[-1])
        if tuple(sr) != expected:
            raise VerifyException(
                f"matmul result shape {_fmt_shape(sr)} should be {_fmt_shape(expected)}"
            )
        if not (a.element_type == b.element_type == r.element_type):
            raise VerifyException(
                f"matmul element types must match, got {a.element_type}, {b.element_type} -> "
                f"{r.element_type}"
            )


@irdl_op_definition
class PointwiseOp(IRDLOperation):
    """An elementwise op; operands broadcast (numpy rules) to the result shape.

    unary: neg exp log sqrt rsqrt tanh erf cos sin abs relu not cast; binary: add sub mul div
    max min pow eq ne lt le gt ge and or; ternary: select(cond, a, b). Element types follow the
    PCU opcode's type rule (``runtime/machine/opcodes.py``; ``relu`` is ``max(x, 0)``):
    comparisons give i1, ``and``/``or``/``not`` are logical on i1 and bitwise on i64, ``cast``
    converts to the result's element type.
    """

    name = "dataflow.pointwise"

    kind = prop_def(PointwiseKindAttr)
    inputs = var_operand_def(TensorType)
    result = result_def(TensorType)

    assembly_format = "$kind `(` $inputs `)` attr-dict `:` functional-type($inputs, $result)"

    traits = traits_def(NoMemoryEffect())

    def __init__(
        self, kind: str, inputs: Sequence[SSAValue | Operation], result_type: Attribute
    ) -> None:
        super().__init__(
            operands=[list(inputs)],
            result_types=[result_type],
            properties={"kind": PointwiseKindAttr(PointwiseKind(kind))},
        )

    def verify_(self) -> None:
        kind = self.kind.data
        arity = POINTWISE_RULES[kind][0]
        if len(self.inputs) != arity:
            raise VerifyException(
                f"pointwise '{kind}' takes {arity} operand(s), got {len(self.inputs)}"
            )
        types = [_static_tensor(v, f"pointwise '{kind}' operand") for v in self.inputs]
        r = _static_tensor(self.result, f"pointwise '{kind}' result")
        shapes = [t.get_shape() for t in types]
        bshape = broadcast_shapes(*shapes)
        if bshape is None:
            raise VerifyException(
                f"pointwise '{kind}': operand shapes "
                f"{', '.join(_fmt_shape(s) for s in shapes)} do not broadcast"
            )
        if bshape != tuple(r.get_shape()):
            raise VerifyException(
                f"pointwise '{kind}': operands broadcast to {_fmt_shape(bshape)} but the result "
                f"is {_fmt_shape(r.get_shape())}"
            )
        rule = POINTWISE_RULES[kind][1]
        operands = [fabric_dtype(t.element_type) for t in types]
        problem = rule_error(rule, kind, fabric_dtype(r.element_type), operands)
        if problem:
            raise VerifyException(f"pointwise {problem}")


@irdl_op_definition
class ReduceOp(IRDLOperation):
    """Reduce ``dims`` of the input with sum, max or min.

    The result is the input's shape with those dims removed, or kept as 1 (the result type says
    which).
    """

    name = "dataflow.reduce"

    kind = prop_def(ReduceKindAttr)
    dims = prop_def(DenseArrayBase.constr(I64))
    input = operand_def(TensorType)
    result = result_def(TensorType)

    assembly_format = "$kind $input `dims` $dims attr-dict `:` functional-type($input, $result)"

    traits = traits_def(NoMemoryEffect())

    def __init__(
        self,
        kind: str,
        input: SSAValue | Operation,
        dims: Sequence[int],
        result_type: Attribute,
    ) -> None:
        super().__init__(
            operands=[input],
            result_types=[result_type],
            properties={"kind": ReduceKindAttr(ReduceKind(kind)), "dims": _dense_i64(dims)},
        )

    def keeps_dims(self) -> bool:
        """Whether the reduced dims stay in the result as 1."""
        a = _static_tensor(self.input, "reduce input")
        r = _static_tensor(self.result, "reduce result")
        return len(r.get_shape()) == len(a.get_shape()) and len(self.dims) > 0

    def verify_(self) -> None:
        a = _static_tensor(self.input, "reduce input")
        r = _static_tensor(self.result, "reduce result")
        shape = a.get_shape()
        dims = tuple(self.dims.get_values())
        if len(set(dims)) != len(dims) or any(d < 0 or d >= len(shape) for d in dims):
            raise VerifyException(
                f"reduce dims {_fmt_shape(dims)} must be distinct and in [0, {len(shape)})"
            )
        dropped = tuple(d for i, d in enumerate(shape) if i not in dims)
        kept = tuple(1 if i in dims else d for i, d in enumerate(shape))
        rs = tuple(r.get_shape())
        if rs != dropped and rs != kept:
            raise VerifyException(
                f"reduce result shape {_fmt_shape(rs)} should be {_fmt_shape(dropped)} "
                f"(dims dropped) or {_fmt_shape(kept)} (dims kept)"
            )
        if a.element_type != r.element_type:
            raise VerifyException(
                f"reduce element types differ: {a.element_type} -> {r.element_type}"
            )


@irdl_op_definition
class FillOp(IRDLOperation):
    """A splat constant: every element is ``value`` (0-d tensors allowed).

    ``value`` is a FloatAttr (f64) for a float result, an IntegerAttr (i64) otherwise (an
    IntegerAttr also fills a float tensor). Syntax: ``dataflow.fill 1.000000e+00 : tensor<f32>``,
    with ``inf``, ``-inf`` and ``nan`` spelled out.
    """

    name = "dataflow.fill"

    value = prop_def(FloatAttr | IntegerAttr)
    result = result_def(TensorType)

    traits = traits_def(NoMemoryEffect())

    def __init__(self, value: float | int | bool, result_type: TensorType[Attribute]) -> None:
        attr: Attribute
        if isinstance(value, float) or _is_float(result_type.element_type):
            attr = FloatAttr(float(value), f64)
        else:
            attr = IntegerAttr(int(value), i64)
        super().__init__(result_types=[result_type], properties={"value": attr})

    @property
    def number(self) -> float | int:
        """The fill value as a Python number."""
        v = self.value
        return v.value.data

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        v = self.value
        if isinstance(v, FloatAttr):
            x = float(v.value.data)
            if math.isnan(x):
                printer.print_string("nan")
            elif math.isinf(x):
                printer.print_string("inf" if x > 0 else "-inf")
            else:
                printer.print_float(x, f64)
        else:
            printer.print_int(v.value.data)
        printer.print_op_attributes(self.attributes)
        printer.print_string(" : ")
        printer.print_attribute(self.result.type)

    @classmethod
    def parse(cls, parser: Parser) -> FillOp:
        value: Attribute
        neg = parser.parse_optional_punctuation("-") is not None
        if parser.parse_optional_keyword("inf") is not None:
            value = FloatAttr(-math.inf if neg else math.inf, f64)
        elif parser.parse_optional_keyword("nan") is not None:
            value = FloatAttr(math.nan, f64)
        else:
            x = parser.parse_number(allow_boolean=True)
            if neg:
                x = -x
            value = FloatAttr(x, f64) if isinstance(x, float) else IntegerAttr(x, i64)
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        typ = parser.parse_type()
        op = cls.create(result_types=[typ], properties={"value": value}, attributes=attrs)
        return op

    def verify_(self) -> None:
        r = _static_tensor(self.result, "fill result")
        if isinstance(self.value, FloatAttr) and not _is_float(r.element_type):
            raise VerifyException(
                f"fill with a float value needs a float element type, got {r.element_type}"
            )
        if isinstance(self.value, FloatAttr) and self.value.type != f64:
            raise VerifyException("fill float value must be an f64 attribute")
        if isinstance(self.value, IntegerAttr) and r.element_type == i1:
            if self.value.value.data not in (0, 1):
                raise VerifyException(
                    f"fill of an i1 tensor takes 0 or 1, got {self.value.value.data}"
                )


@irdl_op_definition
class IotaOp(IRDLOperation):
    """Each element is its index along ``dim``."""

    name = "dataflow.iota"

    dim = prop_def(IntegerAttr[I64])
    result = result_def(TensorType)

    assembly_format = "`dim` $dim attr-dict `:` type($result)"

    traits = traits_def(NoMemoryEffect())

    def __init__(self, dim: int, result_type: Attribute) -> None:
        super().__init__(result_types=[result_type], properties={"dim": IntegerAttr(dim, i64)})

    def verify_(self) -> None:
        r = _static_tensor(self.result, "iota result")
        d = self.dim.value.data
        if not 0 <= d < len(r.get_shape()):
            raise VerifyException(
                f"iota dim {d} out of range for a rank-{len(r.get_shape())} result"
            )
        if not isinstance(r.element_type, IntegerType | AnyFloat) or r.element_type == i1:
            raise VerifyException(
                f"iota needs an integer or float element type, got {r.element_type}"
            )


# --------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------


@irdl_op_definition
class TransposeOp(IRDLOperation):
    """``result.shape[i] == input.shape[perm[i]]``."""

    name = "dataflow.transpose"

    perm = prop_def(DenseArrayBase.constr(I64))
    input = operand_def(TensorType)
    result = result_def(TensorType)

    assembly_format = "$input `perm` $perm attr-dict `:` functional-type($input, $result)"

    traits = traits_def(NoMemoryEffect())

    def __init__(
        self, input: SSAValue | Operation, perm: Sequence[int], result_type: Attribute
    ) -> None:
        super().__init__(
            operands=[input], result_types=[result_type], properties={"perm": _dense_i64(perm)}
        )

    def verify_(self) -> None:
        a = _static_tensor(self.input, "transpose input")
        r = _static_tensor(self.result, "transpose result")
        perm = tuple(self.perm.get_values())
        shape = a.get_shape()
        if sorted(perm) != list(range(len(shape))):
            raise VerifyException(
                f"transpose perm {_fmt_shape(perm)} is not a permutation of rank {len(shape)}"
            )
        expected = tuple(shape[p] for p in perm)
        if tuple(r.get_shape()) != expected:
            raise VerifyException(
                f"transpose result shape {_fmt_shape(r.get_shape())} should be "
                f"{_fmt_shape(expected)}"
            )
        if a.element_type != r.element_type:
            raise VerifyException("transpose must keep the element type")


@irdl_op_definition
class ReshapeOp(IRDLOperation):
    """Same elements in row-major order, new shape (same element count)."""

    name = "dataflow.reshape"

    input = operand_def(TensorType)
    result = result_def(TensorType)

    assembly_format = "$input attr-dict `:` functional-type($input, $result)"

    traits = traits_def(NoMemoryEffect())

    def __init__(self, input: SSAValue | Operation, result_type: Attribute) -> None:
        super().__init__(operands=[input], result_types=[result_type])

    def verify_(self) -> None:
        a = _static_tensor(self.input, "reshape input")
        r = _static_tensor(self.result, "reshape result")
        if math.prod(a.get_shape()) != math.prod(r.get_shape()):
            raise VerifyException(
                f"reshape changes the element count: {_fmt_shape(a.get_shape())} -> "
                f"{_fmt_shape(r.get_shape())}"
            )
        if a.element_type != r.element_type:
            raise VerifyException("reshape must keep the element type")


@irdl_op_definition
class BroadcastOp(IRDLOperation):
    """Broadcast (numpy rules) the input to the result's shape."""

    name = "dataflow.broadcast"

    input = operand_def(TensorType)
    result = result_def(TensorType)

    assembly_format = "$input attr-dict `:` functional-type($input, $result)"

    traits = traits_def(NoMemoryEffect())

    def __init__(self, input: SSAValue | Operation, result_type: Attribute) -> None:
        super().__init__(operands=[input], result_types=[result_type])

    def verify_(self) -> None:
        a = _static_tensor(self.input, "broadcast input")
        r = _static_tensor(self.result, "broadcast result")
        sa, sr = a.get_shape(), r.get_shape()
        ok = len(sa) <= len(sr) and all(
            d in (1, e) for d, e in zip(reversed(sa), reversed(sr), strict=False)
        )
        if not ok:
            raise VerifyException(f"cannot broadcast {_fmt_shape(sa)} to {_fmt_shape(sr)}")
        if a.element_type != r.element_type:
            raise VerifyException("broadcast must keep the element type")


# --------------------------------------------------------------------------------------------
# Windows and padding (convolution and pooling)
# --------------------------------------------------------------------------------------------


@irdl_op_definition
class AsStridedOp(IRDLOperation):
    """A view of the input's row-major elements at affine addresses (numpy's ``as_strided``).

    ``result[i] = flat(input)[offset + sum_d strides[d] * i[d]]``, ``flat`` being the input in
    row-major order. Strides are in elements and may be 0 (a broadcast), negative (a flip) or
    overlap (the sliding windows of a convolution or a pooling). Every address the view reaches
    must be inside the input. Like the other views it folds into the readers' accesses.
    """

    name = "dataflow.as_strided"

    offset = prop_def(IntegerAttr[I64])
    strides = prop_def(DenseArrayBase.constr(I64))
    input = operand_def(TensorType)
    result = result_def(TensorType)

    assembly_format = (
        "$input `offset` $offset `strides` $strides attr-dict `:` functional-type($input, $result)"
    )

    traits = traits_def(NoMemoryEffect())

    def __init__(
        self,
        input: SSAValue | Operation,
        offset: int,
        strides: Sequence[int],
        result_type: Attribute,
    ) -> None:
        super().__init__(
            operands=[input],
            result_types=[result_type],
            properties={"offset": IntegerAttr(offset, i64), "strides": _dense_i64(strides)},
        )

    def verify_(self) -> None:
        a = _static_tensor(self.input, "as_strided input")
        r = _static_tensor(self.result, "as_strided result")
        shape = r.get_shape()
        strides = tuple(self.strides.get_values())
        if len(strides) != len(shape):
            raise VerifyException(
                f"as_strided has {len(strides)} strides for a rank-{len(shape)} result"
            )
        if a.element_type != r.element_type:
            raise VerifyException("as_strided must keep the element type")
        if math.prod(shape) == 0:
            return
        lo, hi = address_range(self.offset.value.data, strides, shape)
        size = math.prod(a.get_shape())
        if lo < 0 or hi >= size:
            raise VerifyException(
                f"as_strided reaches elements [{lo}, {hi}] of an input of {size} elements"
            )


def padded_shape(
    shape: Sequence[int], low: Sequence[int], high: Sequence[int], interior: Sequence[int]
) -> tuple[int, ...]:
    """The result shape of ``dataflow.pad``."""
    return tuple(
        lo + hi + (n - 1) * (mid + 1) + 1 if n else lo + hi
        for n, lo, hi, mid in zip(shape, low, high, interior, strict=True)
    )


@irdl_op_definition
class PadOp(IRDLOperation):
    """Zero padding: ``result[low + i * (interior + 1)] = input[i]`` (per dim), zero elsewhere.

    ``low`` and ``high`` pad the edges, ``interior`` puts that many zeros between neighbours
    (dilation, e.g. for the gradient of a strided convolution); all non-negative. The result
    has ``low + high + (n - 1) * (interior + 1) + 1`` elements along a dim of ``n > 0``. Lowered
    to a copy into a zero-initialised buffer through an offset, strided out access.
    """

    name = "dataflow.pad"

    low = prop_def(DenseArrayBase.constr(I64))
    high = prop_def(DenseArrayBase.constr(I64))
    interior = prop_def(DenseArrayBase.constr(I64))
    input = operand_def(TensorType)
    result = result_def(TensorType)

    assembly_format = (
        "$input `low` $low `high` $high `interior` $interior attr-dict `:` "
        "functional-type($input, $result)"
    )

    traits = traits_def(NoMemoryEffect())

    def __init__(
        self,
        input: SSAValue | Operation,
        low: Sequence[int],
        high: Sequence[int],
        interior: Sequence[int],
        result_type: Attribute,
    ) -> None:
        super().__init__(
            operands=[input],
            result_types=[result_type],
            properties={
                "low": _dense_i64(low),
                "high": _dense_i64(high),
                "interior": _dense_i64(interior),
            },
        )

    def verify_(self) -> None:
        a = _static_tensor(self.input, "pad input")
        r = _static_tensor(self.result, "pad result")
        shape = a.get_shape()
        low = tuple(self.low.get_values())
        high = tuple(self.high.get_values())
        interior = tuple(self.interior.get_values())
        if not len(low) == len(high) == len(interior) == len(shape):
            raise VerifyException(
                f"pad needs one low, high and interior per dim of a rank-{len(shape)} input"
            )
        if any(v < 0 for v in (*low, *high, *interior)):
            raise VerifyException("pad amounts must be non-negative")
        expected = padded_shape(shape, low, high, interior)
        if tuple(r.get_shape()) != expected:
            raise VerifyException(
                f"pad result shape {_fmt_shape(r.get_shape())} should be {_fmt_shape(expected)}"
            )
        if a.element_type != r.element_type:
            raise VerifyException("pad must keep the element type")


# --------------------------------------------------------------------------------------------
# Slices, data-dependent indexing and random numbers
# --------------------------------------------------------------------------------------------


def _verify_slice(what: str, big: Sequence[int], small: Sequence[int], offsets, steps) -> None:
    """Check that ``small`` is ``big`` sliced at ``offsets`` by ``steps`` (per dim, != 0)."""
    if not len(big) == len(small) == len(offsets) == len(steps):
        raise VerifyException(
            f"{what}: offsets {_fmt_shape(offsets)} and steps {_fmt_shape(steps)} need one entry "
            f"per dim of {_fmt_shape(big)} and {_fmt_shape(small)}"
        )
    for d, (n, k, o, s) in enumerate(zip(big, small, offsets, steps, strict=True)):
        if s == 0:
            raise VerifyException(f"{what}: step of dim {d} is 0")
        if k < 0 or (k > 0 and not (0 <= o < n and 0 <= o + s * (k - 1) < n)):
            raise VerifyException(
                f"{what}: dim {d}: {k} elements from {o} by {s} do not fit extent {n}"
            )


@irdl_op_definition
class ExtractSliceOp(IRDLOperation):
    """A view: ``result[i] = input[offsets + steps * i]`` per dim (steps may be negative).

    Slices, ``select`` (a slice of extent 1, then a reshape), ``split`` and ``flip`` are this op.
    """

    name = "dataflow.extract_slice"

    offsets = prop_def(DenseArrayBase.constr(I64))
    steps = prop_def(DenseArrayBase.constr(I64))
    input = operand_def(TensorType)
    result = result_def(TensorType)

    assembly_format = (
        "$input `offsets` $offsets `steps` $steps attr-dict `:` functional-type($input, $result)"
    )

    traits = traits_def(NoMemoryEffect())

    def __init__(
        self,
        input: SSAValue | Operation,
        offsets: Sequence[int],
        steps: Sequence[int],
        result_type: Attribute,
    ) -> None:
        super().__init__(
            operands=[input],
            result_types=[result_type],
            properties={"offsets": _dense_i64(offsets), "steps": _dense_i64(steps)},
        )

    def verify_(self) -> None:
        a = _static_tensor(self.input, "extract_slice input")
        r = _static_tensor(self.result, "extract_slice result")
        _verify_slice(
            "extract_slice", a.get_shape(), r.get_shape(),
            self.offsets.get_values(), self.steps.get_values(),
        )  # fmt: skip
        if a.element_type != r.element_type:
            raise VerifyException("extract_slice must keep the element type")


def _verify_take_shapes(
    what: str, table: Sequence[int], index: Sequence[int], dim: int, gathered: Sequence[int]
) -> None:
    if not 0 <= dim < len(table):
        raise VerifyException(f"{what}: dim {dim} out of range for rank {len(table)}")
    expected = (*table[:dim], *index, *table[dim + 1 :])
    if tuple(gathered) != expected:
        raise VerifyException(
            f"{what}: shape {_fmt_shape(gathered)} should be {_fmt_shape(expected)} (the table "
            f"{_fmt_shape(table)} with dim {dim} replaced by the index shape {_fmt_shape(index)})"
        )


@irdl_op_definition
class TakeOp(IRDLOperation):
    """A data-dependent gather along ``dim`` (numpy's ``take``):
    ``result[a..., j..., b...] = input[a..., index[j...], b...]``.

    Embedding, ``index_select`` and indexing with one integer tensor. Index values must be in
    ``[0, input.shape[dim])`` (checked on the fabric at run time).
    """

    name = "dataflow.take"

    dim = prop_def(IntegerAttr[I64])
    input = operand_def(TensorType)
    index = operand_def(TensorType)
    result = result_def(TensorType)

    assembly_format = (
        "$input `,` $index `dim` $dim attr-dict `:` functional-type(operands, results)"
    )

    traits = traits_def(NoMemoryEffect())

    def __init__(
        self,
        input: SSAValue | Operation,
        index: SSAValue | Operation,
        dim: int,
        result_type: Attribute,
    ) -> None:
        super().__init__(
            operands=[input, index],
            result_types=[result_type],
            properties={"dim": IntegerAttr(dim, i64)},
        )

    def verify_(self) -> None:
        a = _static_tensor(self.input, "take input")
        i = _static_tensor(self.index, "take index")
        r = _static_tensor(self.result, "take result")
        if i.element_type != i64:
            raise VerifyException(f"take index must be i64, got {i.element_type}")
        _verify_take_shapes(
            "take result", a.get_shape(), i.get_shape(), self.dim.value.data, r.get_shape()
        )
        if a.element_type != r.element_type:
            raise VerifyException("take must keep the element type")


@irdl_op_definition
class GatherOp(IRDLOperation):
    """A data-dependent gather along ``dim`` with an index of the input's rank (torch's
    ``gather``, numpy's ``take_along_axis``): ``result[i] = input[i with i[dim] = index[i]]``;
    the result has the index's shape (no larger than the input's on the other dims).
    """

    name = "dataflow.gather"

    dim = prop_def(IntegerAttr[I64])
    input = operand_def(TensorType)
    index = operand_def(TensorType)
    result = result_def(TensorType)

    assembly_format = (
        "$input `,` $index `dim` $dim attr-dict `:` functional-type(operands, results)"
    )

    traits = traits_def(NoMemoryEffect())

    def __init__(
        self,
        input: SSAValue | Operation,
        index: SSAValue | Operation,
        dim: int,
        result_type: Attribute,
    ) -> None:
        super().__init__(
            operands=[input, index],
            result_types=[result_type],
            properties={"dim": IntegerAttr(dim, i64)},
        )

    def verify_(self) -> None:
        a = _static_tensor(self.input, "gather input")
        i = _static_tensor(self.index, "gather index")
        r = _static_tensor(self.result, "gather result")
        if i.element_type != i64:
            raise VerifyException(f"gather index must be i64, got {i.element_type}")
        sa, si, d = a.get_shape(), i.get_shape(), self.dim.value.data
        if len(sa) != len(si) or not 0 <= d < len(sa):
            raise VerifyException(
                f"gather: index {_fmt_shape(si)} and input {_fmt_shape(sa)} need one rank and "
                f"dim {d} in it"
            )
        if any(n > m for k, (n, m) in enumerate(zip(si, sa, strict=True)) if k != d):
            raise VerifyException(f"gather: index {_fmt_shape(si)} exceeds input {_fmt_shape(sa)}")
        if tuple(r.get_shape()) != tuple(si) or a.element_type != r.element_type:
            raise VerifyException("gather result must have the index's shape, the input's type")


@irdl_op_definition
class ScatterAddOp(IRDLOperation):
    """The transpose of ``gather`` (torch's ``scatter_add`` into zeros): for every point ``i``
    of the index, ``result[i with i[dim] = index[i]] += input[i]``.
    """

    name = "dataflow.scatter_add"

    dim = prop_def(IntegerAttr[I64])
    input = operand_def(TensorType)
    index = operand_def(TensorType)
    result = result_def(TensorType)

    assembly_format = (
        "$input `,` $index `dim` $dim attr-dict `:` functional-type(operands, results)"
    )

    traits = traits_def(NoMemoryEffect())

    def __init__(
        self,
        input: SSAValue | Operation,
        index: SSAValue | Operation,
        dim: int,
        result_type: Attribute,
    ) -> None:
        super().__init__(
            operands=[input, index],
            result_types=[result_type],
            properties={"dim": IntegerAttr(dim, i64)},
        )

    def verify_(self) -> None:
        a = _static_tensor(self.input, "scatter_add input")
        i = _static_tensor(self.index, "scatter_add index")
        r = _static_tensor(self.result, "scatter_add result")
        if i.element_type != i64:
            raise VerifyException(f"scatter_add index must be i64, got {i.element_type}")
        sa, si, sr, d = a.get_shape(), i.get_shape(), r.get_shape(), self.dim.value.data
        if not len(sa) == len(si) == len(sr) or not 0 <= d < len(sr):
            raise VerifyException("scatter_add: input, index and result need one rank")
        if any(n > m for n, m in zip(si, sa, strict=True)) or any(
            n > m for k, (n, m) in enumerate(zip(si, sr, strict=True)) if k != d
        ):
            raise VerifyException(
                f"scatter_add: index {_fmt_shape(si)} exceeds input {_fmt_shape(sa)} or "
                f"result {_fmt_shape(sr)}"
            )
        if a.element_type != r.element_type:
            raise VerifyException("scatter_add must keep the element type")


@irdl_op_definition
class PutAddOp(IRDLOperation):
    """The transpose of ``take`` (a scatter-add into zeros, numpy's ``add.at``):
    ``result[a..., k, b...] = sum over j with index[j...] == k of input[a..., j..., b...]``.

    The gradient of an embedding (``embedding_dense_backward``) and ``index_put`` with
    ``accumulate=True``.
    """

    name = "dataflow.put_add"

    dim = prop_def(IntegerAttr[I64])
    input = operand_def(TensorType)
    index = operand_def(TensorType)
    result = result_def(TensorType)

    assembly_format = (
        "$input `,` $index `dim` $dim attr-dict `:` functional-type(operands, results)"
    )

    traits = traits_def(NoMemoryEffect())

    def __init__(
        self,
        input: SSAValue | Operation,
        index: SSAValue | Operation,
        dim: int,
        result_type: Attribute,
    ) -> None:
        super().__init__(
            operands=[input, index],
            result_types=[result_type],
            properties={"dim": IntegerAttr(dim, i64)},
        )

    def verify_(self) -> None:
        a = _static_tensor(self.input, "put_add input")
        i = _static_tensor(self.index, "put_add index")
        r = _static_tensor(self.result, "put_add result")
        if i.element_type != i64:
            raise VerifyException(f"put_add index must be i64, got {i.element_type}")
        _verify_take_shapes(
            "put_add input", r.get_shape(), i.get_shape(), self.dim.value.data, a.get_shape()
        )
        if a.element_type != r.element_type:
            raise VerifyException("put_add must keep the element type")


@irdl_op_definition
class RandomOp(IRDLOperation):
    """Uniform f32 numbers in ``[0, 1)``, a counter-based function of the 0-d i64 ``seed``, the
    ``stream`` (one per random op of a section) and each element's row-major index: the same
    seed gives the same numbers on every run (the ``rand`` PCU opcode documents the hash).
    """

    name = "dataflow.random"

    stream = prop_def(IntegerAttr[I64])
    seed = operand_def(TensorType)
    result = result_def(TensorType)

    assembly_format = "$seed `stream` $stream attr-dict `:` functional-type($seed, $result)"

    traits = traits_def(NoMemoryEffect())

    def __init__(self, seed: SSAValue | Operation, stream: int, result_type: Attribute) -> None:
        super().__init__(
            operands=[seed],
            result_types=[result_type],
            properties={"stream": IntegerAttr(stream, i64)},
        )

    def verify_(self) -> None:
        s = _static_tensor(self.seed, "random seed")
        r = _static_tensor(self.result, "random result")
        if s.element_type != i64 or s.get_shape():
            raise VerifyException(f"random seed must be a 0-d i64 tensor, got {s}")
        if not _is_float(r.element_type):
            raise VerifyException(f"random result must be a float tensor, got {r}")
        if not 0 <= self.stream.value.data < 256:
            raise VerifyException(f"random stream {self.stream.value.data} not in [0, 256)")


Dataflow = Dialect(
    "dataflow",
    [
        SectionOp,
        YieldOp,
        MatmulOp,
        PointwiseOp,
        ReduceOp,
        FillOp,
        IotaOp,
        TransposeOp,
        ReshapeOp,
        BroadcastOp,
        AsStridedOp,
        PadOp,
        ExtractSliceOp,
        TakeOp,
        GatherOp,
        ScatterAddOp,
        PutAddOp,
        RandomOp,
    ],
    [SectionKindAttr, RoleAttr, PointwiseKindAttr, ReduceKindAttr],
)
"""The dataflow dialect."""
