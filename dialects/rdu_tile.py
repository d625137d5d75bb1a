"""The ``rdu_tile`` dialect: one tiled iteration space a compute op.

An ``rdu_tile.kernel`` is a loop nest that is never unrolled: a list of counter extents (the
``space``, outermost first), a tile extent per counter, and one affine access per operand and for
the result. Counter ``c`` runs over ``0 .. space[c]-1``; at each point of the space the body reads
one scalar per operand at flat address ``offset + sum_c strides[c] * counter[c]`` of the operand's
row-major buffer, computes with ``arith``/``math`` ops and writes (or, on a reduction counter,
combines into) the result at the address the ``out`` access gives. A counter whose out stride is 0
(and whose extent is above 1) is a reduction counter; ``combiner`` says how the values meeting
at one result element combine (``add``/``max``/``min``), and is ``none`` exactly when no values
meet: no reduction counter and no data-dependent ``out`` access (a scatter, whose index may
repeat; a scatter adds or stores, ``runtime/machine/rules.py``'s ``combiner_problem``).

    %c = rdu_tile.kernel @matmul_0 (%a, %b) space [16, 128, 64] tile [16, 128, 64]
           ins [#rdu_tile.access<0 : [64, 0, 1]>, #rdu_tile.access<0 : [0, 1, 128]>]
           out #rdu_tile.access<0 : [128, 1, 0]> combiner add
           : (tensor<16x64xf32>, tensor<64x128xf32>) -> tensor<16x128xf32> {
    ^bb0(%x: f32, %y: f32):
      %p = arith.mulf %x, %y : f32
      rdu_tile.yield %p : f32
    }

(the printer puts the whole op header on one line; the ``@name`` is optional and names the PCU
and PMU the kernel becomes). ``rdu_tile.index <c> : i64`` gives the value
of counter ``c`` inside a body. The access attribute, the property printer/parser and the
verification of a tiled iteration space are shared with ``pcu.unit`` (dialects/pcu.py).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast, get_args

from xdsl.dialects.builtin import (
    I64,
    ArrayAttr,
    BytesAttr,
    ContainerType,
    DenseArrayBase,
    IndexType,
    IntAttr,
    IntegerAttr,
    IntegerType,
    ShapedType,
    StringAttr,
    TensorType,
    i64,
)
from xdsl.dialects.utils import EnumAttribute
from xdsl.ir import (
    Attribute,
    Block,
    Dialect,
    Operation,
    ParametrizedAttribute,
    Region,
    SpacedOpaqueSyntaxAttribute,
    SSAValue,
)
from xdsl.irdl import (
    BaseAttr,
    EqAttrConstraint,
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    lazy_traits_def,
    operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.traits import HasParent, IsolatedFromAbove, IsTerminator, NoMemoryEffect
from xdsl.utils.exceptions import VerifyException
from xdsl.utils.str_enum import StrEnum

from dialects.enums import parse_member, table_enum
from runtime.machine.rules import address_range, combiner_problem, reaches_any
from runtime.pef import schema

if TYPE_CHECKING:

    class Combiner(StrEnum):
        """How values meeting at one result element (over the reduction counters) combine:
        ``none``, ``add``, ``max``, ``min`` (``runtime/pef/schema.py``)."""

else:
    Combiner = table_enum("Combiner", get_args(schema.Combiner), __name__)


@irdl_attr_definition
class CombinerAttr(EnumAttribute[Combiner], SpacedOpaqueSyntaxAttribute):
    """A combiner: ``#rdu_tile<combiner add>`` (``combiner add`` in ``rdu_tile.kernel`` and
    ``pcu.unit``)."""

    name = "rdu_tile.combiner"

    @classmethod
    def parse_parameter(cls, parser: AttrParser) -> Combiner:
        return parse_member(parser, Combiner, "combiner")


BODY_DIALECTS = ("arith", "math", "rdu_tile")
"""The dialects whose ops may appear in a kernel body."""


# --------------------------------------------------------------------------------------------
# The access attribute
# --------------------------------------------------------------------------------------------


@irdl_attr_definition
class AccessAttr(ParametrizedAttribute):
    """An address generator: flat address = ``offset + sum_c strides[c] * counter[c]``, plus,
    for a data-dependent access, ``index_stride * v`` where ``v`` is the value that input
    ``index_port`` reads at the same point of the space (an i64 in ``[0, index_limit)``).

    Syntax: ``#rdu_tile.access<OFFSET : [S0, S1, ...]>``, one stride per counter of the space;
    a data-dependent access adds ``+ STRIDE * ins[PORT] of LIMIT``:
    ``#rdu_tile.access<0 : [0, 1] + 16 * ins[1] of 65>`` reads row ``ins[1]`` of a 65x16 table
    (a gather); as a kernel's ``out`` it writes there (a scatter, combined by the combiner).
    """

    name = "rdu_tile.access"

    offset: IntAttr
    strides: ArrayAttr[IntAttr]
    index: ArrayAttr[IntAttr]
    """Empty for an affine access, else ``[port, stride, limit]``."""

    def __init__(
        self,
        offset: int | IntAttr,
        strides: Sequence[int] | ArrayAttr[IntAttr],
        index: Sequence[int] | ArrayAttr[IntAttr] = (),
    ) -> None:
        if isinstance(offset, int):
            offset = IntAttr(offset)
        if not isinstance(strides, ArrayAttr):
            strides = ArrayAttr([IntAttr(s) for s in strides])
        if not isinstance(index, ArrayAttr):
            index = ArrayAttr([IntAttr(v) for v in index])
        super().__init__(offset, strides, index)

    def verify(self) -> None:
        if len(self.index.data) not in (0, 3):
            raise VerifyException("rdu_tile.access: index must be empty or [port, stride, limit]")
        if self.index.data and (self.index_port < 0 or self.index_limit < 1):
            raise VerifyException(
                f"rdu_tile.access: index port {self.index_port} must be >= 0 and index limit "
                f"{self.index_limit} >= 1"
            )

    @property
    def offset_value(self) -> int:
        """The offset as a Python int."""
        return self.offset.data

    @property
    def stride_values(self) -> tuple[int, ...]:
        """The strides as Python ints, one per counter."""
        return tuple(s.data for s in self.strides.data)

    @property
    def is_indexed(self) -> bool:
        """Whether the address has a data-dependent term."""
        return bool(self.index.data)

    @property
    def index_port(self) -> int:
        """The input whose value scales ``index_stride`` (-1: none)."""
        return self.index.data[0].data if self.index.data else -1

    @property
    def index_stride(self) -> int:
        """Elements per unit of the index value (0: none)."""
        return self.index.data[1].data if self.index.data else 0

    @property
    def index_limit(self) -> int:
        """Index values must be in ``[0, index_limit)`` (0: no index)."""
        return self.index.data[2].data if self.index.data else 0

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_int(self.offset.data)
            printer.print_string(" : ")
            with printer.in_square_brackets():
                printer.print_list(self.strides.data, lambda s: printer.print_int(s.data))
            if self.is_indexed:
                printer.print_string(
                    f" + {self.index_stride} * ins[{self.index_port}] of {self.index_limit}"
                )

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            offset = parser.parse_integer(context_msg=" (the access offset)")
            parser.parse_punctuation(":")
            strides = parser.parse_comma_separated_list(
                parser.Delimiter.SQUARE, lambda: parser.parse_integer(context_msg=" (a stride)")
            )
            index: list[int] = []
            if parser.parse_optional_punctuation("+") is not None:
                stride = parser.parse_integer(context_msg=" (the index stride)")
                parser.parse_punctuation("*")
                parser.parse_keyword("ins")
                parser.parse_punctuation("[")
                port = parser.parse_integer(context_msg=" (the index port)")
                parser.parse_punctuation("]")
                parser.parse_keyword("of")
                limit = parser.parse_integer(context_msg=" (the index limit)")
                index = [port, stride, limit]
        return (
            IntAttr(offset),
            ArrayAttr([IntAttr(s) for s in strides]),
            ArrayAttr([IntAttr(v) for v in index]),
        )

    def address_range(self, space: Sequence[int]) -> tuple[int, int]:
        """The lowest and highest flat address the access touches over ``space`` (non-empty),
        index values in ``[0, index_limit)``."""
        if not self.is_indexed:
            return address_range(self.offset_value, self.stride_values, space)
        return address_range(
            self.offset_value, self.stride_values, space, self.index_stride, self.index_limit
        )


def access_attr(offset: int, strides: Sequence[int], index: Sequence[int] = ()) -> AccessAttr:
    """``AccessAttr(offset, strides, index)``, one object for equal arguments.

    Attributes are immutable, so the lowering passes share them: building and verifying one
    takes about 30 us, and lowering GPT-2 small builds about 19,000, most of them equal to
    one built before (the blocks repeat)."""
    return _access(offset, tuple(strides), tuple(index))


@functools.lru_cache(maxsize=1 << 16)
def _access(offset: int, strides: tuple[int, ...], index: tuple[int, ...]) -> AccessAttr:
    return AccessAttr(offset, strides, index)


# --------------------------------------------------------------------------------------------
# Shared by rdu_tile.kernel and pcu.unit: properties of a tiled iteration space
# --------------------------------------------------------------------------------------------


def dense_i64(values: Sequence[int]) -> DenseArrayBase[IntegerType]:
    """A ``DenseArrayBase`` of i64 holding ``values``.

    Packed straight into bytes (xdsl's ``from_list`` checks and normalizes one value at a time,
    a tenth of the lowering passes' time); a value outside the signed 64-bit range goes through
    ``from_list``, which normalizes it or raises as before. One object for equal values, as
    ``access_attr`` (the blocks of a model repeat their spaces and tiles)."""
    return _dense_i64(tuple(values))


@functools.lru_cache(maxsize=1 << 16)
def _dense_i64(values: tuple[int, ...]) -> DenseArrayBase[IntegerType]:
    try:
        data = struct.pack(f"<{len(values)}q", *values)
    except struct.error:
        return DenseArrayBase.from_list(i64, values)
    return DenseArrayBase(i64, BytesAttr(data))


def i64_values(array: DenseArrayBase[IntegerType]) -> tuple[int, ...]:
    """``array.get_values()`` of an i64 array (a unit's space, tile or parallel factors),
    unpacked once for equal bytes: the passes read a unit's space millions of times in a
    GPT-2 small compile (``pcu.unit``'s ``is_register_port`` alone, 0.5 s of xdsl's unpacking
    there, its struct format built again at each call)."""
    return _unpack_i64(array.data.data)


@functools.lru_cache(maxsize=1 << 16)
def _unpack_i64(data: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(data) // 8}q", data)


def int_list_text(values: Sequence[int]) -> str:
    """``[1, 2, 3]`` as one string (what ``print_list`` of ``print_int`` prints, built at once:
    the IR dumps print hundreds of thousands of these fragments)."""
    return "[" + ", ".join([f"{v:d}" for v in values]) + "]"


def parse_int_list(parser: Parser | AttrParser, what: str) -> list[int]:
    """``[1, 2, 3]`` (``what`` names the list in error messages)."""
    return parser.parse_comma_separated_list(
        parser.Delimiter.SQUARE, lambda: parser.parse_integer(context_msg=f" in {what}")
    )


def print_space_props(
    printer: Printer,
    space: DenseArrayBase[IntegerType],
    tile: DenseArrayBase[IntegerType],
    extra: Sequence[tuple[str, int]],
    ins: ArrayAttr[AccessAttr],
    out: AccessAttr,
    combiner: CombinerAttr,
) -> None:
    """`` space [..] tile [..] <extra k v>.. ins [..] out #.. combiner <combiner>``."""
    head = f" space {int_list_text(space.get_values())} tile {int_list_text(tile.get_values())}"
    printer.print_string(head + "".join([f" {key} {value}" for key, value in extra]) + " ins [")
    printer.print_list(ins.data, printer.print_attribute)
    printer.print_string("] out ")
    printer.print_attribute(out)
    printer.print_string(" combiner ")
    combiner.print_parameter(printer)


def parse_space_props(parser: Parser, extra: Sequence[str]) -> dict[str, Attribute]:
    """Parse what ``print_space_props`` prints; ``extra`` are integer properties after tile."""
    props: dict[str, Attribute] = {}
    parser.parse_keyword("space")
    props["space"] = dense_i64(parse_int_list(parser, "space"))
    parser.parse_keyword("tile")
    props["tile"] = dense_i64(parse_int_list(parser, "tile"))
    for key in extra:
        parser.parse_keyword(key)
        props[key] = IntegerAttr(parser.parse_integer(context_msg=f" for {key}"), i64)
    parser.parse_keyword("ins")
    props["ins"] = ArrayAttr(
        parser.parse_comma_separated_list(parser.Delimiter.SQUARE, parser.parse_attribute)
    )
    parser.parse_keyword("out")
    props["out"] = parser.parse_attribute()
    parser.parse_keyword("combiner")
    props["combiner"] = CombinerAttr(CombinerAttr.parse_parameter(parser))
    return props


def _fmt(values: Sequence[int]) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def _num_elements(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def verify_space(
    what: str,
    space: Sequence[int],
    tile: Sequence[int],
    ins: Sequence[AccessAttr],
    operand_shapes: Sequence[Sequence[int]],
    out: AccessAttr,
    result_shape: Sequence[int],
    combiner: str,
) -> None:
    """Check a tiled iteration space, its accesses and its combiner (``what`` names the op)."""
    if any(e < 0 for e in space):
        raise VerifyException(f"{what}: space {_fmt(space)} has a negative extent")
    if len(tile) != len(space):
        raise VerifyException(
            f"{what}: tile {_fmt(tile)} needs one extent per counter of space {_fmt(space)}"
        )
    for c, (t, e) in enumerate(zip(tile, space, strict=True)):
        if not 1 <= t <= max(e, 1):
            raise VerifyException(
                f"{what}: tile extent {t} of counter {c} must be in [1, {max(e, 1)}]"
            )
    if len(ins) != len(operand_shapes):
        raise VerifyException(f"{what}: {len(operand_shapes)} operands but {len(ins)} ins accesses")
    named = [(f"ins[{i}]", a, s) for i, (a, s) in enumerate(zip(ins, operand_shapes, strict=True))]
    for label, access, shape in [*named, ("out", out, result_shape)]:
        if access.is_indexed:
            port = access.index_port
            if port >= len(ins) or ins[port].is_indexed or label == f"ins[{port}]":
                raise VerifyException(
                    f"{what}: {label} access is indexed by ins[{port}], which must be another "
                    "operand with an affine access"
                )
        if len(access.stride_values) != len(space):
            raise VerifyException(
                f"{what}: {label} access has {len(access.stride_values)} strides but the space "
                f"has {len(space)} counters"
            )
        if not reaches_any(space, access.stride_values, output=label == "out"):
            continue
        lo, hi = access.address_range(space)
        size = _num_elements(shape)
        if lo < 0 or hi >= size:
            raise VerifyException(
                f"{what}: {label} access {access} reaches addresses [{lo}, {hi}] over space "
                f"{_fmt(space)}, outside its buffer of {size} elements (shape {_fmt(shape)})"
            )
    problem = combiner_problem(space, out.stride_values, combiner, scatter=out.is_indexed)
    if problem:
        raise VerifyException(f"{what}: {problem}")


def verify_body(
    what: str,
    body: Region,
    arg_types: Sequence[Attribute],
    result_type: Attribute,
    yield_type: type[Operation],
    allowed_dialects: Sequence[str],
) -> None:
    """Check a body block: one scalar argument per operand, allowed ops, typed terminator."""
    block = body.block
    got = tuple(block.arg_types)
    if got != tuple(arg_types):
        raise VerifyException(
            f"{what}: body arguments ({', '.join(str(t) for t in got)}) must be the operands' "
            f"element types ({', '.join(str(t) for t in arg_types)})"
        )
    for op in block.ops:
        dialect = op.name.split(".", 1)[0]
        if dialect not in allowed_dialects:
            raise VerifyException(
                f"{what}: '{op.name}' is not allowed in the body (only "
                f"{', '.join(allowed_dialects)} ops)"
            )
    last = block.last_op
    if not isinstance(last, yield_type):
        raise VerifyException(f"{what}: body must end with '{yield_type.name}'")
    values = last.operands
    if len(values) != 1 or values[0].type != result_type:
        raise VerifyException(
            f"{what}: body must yield one value of the result's element type {result_type}, got "
            f"({', '.join(str(v.type) for v in values)})"
        )


def element_type(typ: Attribute) -> Attribute:
    """The element type of a shaped type."""
    assert isinstance(typ, ContainerType)
    return cast(Attribute, typ.get_element_type())


def shape_of(typ: Attribute) -> tuple[int, ...]:
    """The static shape of a shaped type."""
    assert isinstance(typ, ShapedType)
    return tuple(typ.get_shape())


# --------------------------------------------------------------------------------------------
# Ops
# --------------------------------------------------------------------------------------------


@irdl_op_definition
class YieldOp(IRDLOperation):
    """The value a kernel body computes at one point of the space: ``rdu_tile.yield %v : f32``."""

    name = "rdu_tile.yield"

    value = operand_def()

    assembly_format = "$value attr-dict `:` type($value)"

    traits = lazy_traits_def(lambda: (IsTerminator(), NoMemoryEffect(), HasParent(KernelOp)))

    def __init__(self, value: SSAValue | Operation) -> None:
        super().__init__(operands=[value])


@irdl_op_definition
class IndexOp(IRDLOperation):
    """The current value of counter ``c``: ``%i = rdu_tile.index 1 : i64`` (or ``: index``)."""

    name = "rdu_tile.index"

    counter = prop_def(IntegerAttr[I64])
    result = result_def(EqAttrConstraint(i64) | BaseAttr(IndexType))

    assembly_format = "$counter attr-dict `:` type($result)"

    traits = lazy_traits_def(lambda: (NoMemoryEffect(), HasParent(KernelOp)))

    def __init__(self, counter: int, result_type: Attribute = i64) -> None:
        super().__init__(
            properties={"counter": IntegerAttr(counter, i64)}, result_types=[result_type]
        )

    def verify_(self) -> None:
        kernel = self.parent_op()
        assert isinstance(kernel, KernelOp)
        c = self.counter.value.data
        rank = len(kernel.space)
        if not 0 <= c < rank:
            raise VerifyException(
                f"rdu_tile.index: counter {c} out of range, the kernel's space has {rank} counters"
            )


@irdl_op_definition
class RandomOp(IRDLOperation):
    """A uniform f32 in ``[0, 1)`` hashed from an i64 key and the point's row-major index in
    the kernel's space: ``%u = rdu_tile.random %key : f32`` (the PCU's ``rand`` stage; the
    hash is documented in runtime/machine/opcodes.py)."""

    name = "rdu_tile.random"

    key = operand_def(EqAttrConstraint(i64))
    result = result_def()

    assembly_format = "$key attr-dict `:` type($result)"

    traits = lazy_traits_def(lambda: (NoMemoryEffect(), HasParent(KernelOp)))

    def __init__(self, key: SSAValue | Operation, result_type: Attribute) -> None:
        super().__init__(operands=[key], result_types=[result_type])


@irdl_op_definition
class KernelOp(IRDLOperation):
    """One compute op as a tiled iteration space (see the module docstring)."""

    name = "rdu_tile.kernel"

    inputs = var_operand_def(TensorType)
    result = result_def(TensorType)

    space = prop_def(DenseArrayBase.constr(I64))
    tile = prop_def(DenseArrayBase.constr(I64))
    ins = prop_def(ArrayAttr[AccessAttr])
    out = prop_def(AccessAttr)
    combiner = prop_def(CombinerAttr)
    sym_name = opt_prop_def(StringAttr)
    """An optional name (``@matmul_0``), carried on to the PCU and PMU the kernel becomes."""

    body = region_def("single_block")

    traits = traits_def(IsolatedFromAbove(), NoMemoryEffect())

    def __init__(
        self,
        inputs: Sequence[SSAValue | Operation],
        result_type: Attribute,
        space: Sequence[int],
        tile: Sequence[int],
        ins: Sequence[AccessAttr],
        out: AccessAttr,
        combiner: str,
        body: Region | Block,
        name: str | None = None,
    ) -> None:
        if isinstance(body, Block):
            body = Region(body)
        props: dict[str, Attribute] = {
            "space": dense_i64(space),
            "tile": dense_i64(tile),
            "ins": ArrayAttr(ins),
            "out": out,
            "combiner": CombinerAttr(Combiner(combiner)),
        }
        if name is not None:
            props["sym_name"] = StringAttr(name)
        super().__init__(
            operands=[list(inputs)], result_types=[result_type], properties=props, regions=[body]
        )

    @property
    def space_values(self) -> tuple[int, ...]:
        return i64_values(self.space)

    @property
    def tile_values(self) -> tuple[int, ...]:
        return i64_values(self.tile)

    @property
    def yield_op(self) -> YieldOp:
        last = self.body.block.last_op
        assert isinstance(last, YieldOp)
        return last

    def print(self, printer: Printer) -> None:
        if self.sym_name is not None:
            printer.print_string(" ")
            printer.print_symbol_name(self.sym_name.data)
        printer.print_string(" (")
        printer.print_list(self.inputs, printer.print_operand)
        printer.print_string(")")
        print_space_props(printer, self.space, self.tile, (), self.ins, self.out, self.combiner)
        printer.print_op_attributes(self.attributes)
        printer.print_string(" : ")
        printer.print_function_type(self.operand_types, self.result_types)
        printer.print_string(" ")
        printer.print_region(self.body)

    @classmethod
    def parse(cls, parser: Parser) -> KernelOp:
        name = parser.parse_optional_symbol_name()
        operands = parser.parse_comma_separated_list(
            parser.Delimiter.PAREN, parser.parse_unresolved_operand
        )
        props = parse_space_props(parser, ())
        if name is not None:
            props["sym_name"] = name
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        pos = parser.pos
        ftype = parser.parse_function_type()
        if len(ftype.outputs.data) != 1:
            parser.raise_error("rdu_tile.kernel has exactly one result", pos, parser.pos)
        inputs = parser.resolve_operands(operands, ftype.inputs.data, pos)
        body = parser.parse_region()
        return cls.create(
            operands=list(inputs),
            result_types=[ftype.outputs.data[0]],
            properties=props,
            attributes=attrs,
            regions=[body],
        )

    def verify_(self) -> None:
        what = "rdu_tile.kernel"
        for v in self.inputs:
            if any(d < 0 for d in shape_of(v.type)):
                raise VerifyException(f"{what}: operand type {v.type} must have a static shape")
        verify_space(
            what,
            self.space_values,
            self.tile_values,
            self.ins.data,
            [shape_of(v.type) for v in self.inputs],
            self.out,
            shape_of(self.result.type),
            self.combiner.data,
        )
        verify_body(
            what,
            self.body,
            [element_type(v.type) for v in self.inputs],
            element_type(self.result.type),
            YieldOp,
            BODY_DIALECTS,
        )


RduTile = Dialect("rdu_tile", [KernelOp, YieldOp, IndexOp, RandomOp], [AccessAttr, CombinerAttr])
"""The rdu_tile dialect."""
