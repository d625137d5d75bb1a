"""The ``pcu`` dialect: pattern compute units and their stage pipelines.

A ``pcu.unit`` is one PCU: a counter chain over a tiled iteration space (``space``, ``tile``), a
number of SIMD ``lanes``, one input port per operand (a ``pmu.buffer`` read through the matching
``ins`` access) and one output stream (written through ``out`` into the ``pmu.buffer`` that holds
the unit's result, combining over reduction counters with ``combiner``). Accesses are
``#rdu_tile.access`` attributes with the same meaning as in ``rdu_tile.kernel``.

Its body is the stage pipeline, one op a stage; block arguments are the scalars arriving on the
input ports:

    %c = pcu.unit @matmul_3 (%a_pmu, %b_pmu) space [16, 128, 64] tile [16, 128, 64] lanes 16
           ins [#rdu_tile.access<0 : [64, 0, 1]>, #rdu_tile.access<0 : [0, 1, 128]>]
           out #rdu_tile.access<0 : [128, 1, 0]> combiner add
           : (memref<16x64xf32>, memref<64x128xf32>) -> tensor<16x128xf32> {
    ^bb0(%x: f32, %y: f32):
      %p = pcu.stage mul(%x, %y) : (f32, f32) -> f32
      pcu.yield %p : f32
    }

(the printer puts the header on one line). parallelize-units may add ``parallel [p0, p1, ...]``
after ``combiner``: the unit is ``prod(p)`` identical PCUs ("copies"), copy ``k`` running
counter ``c`` over the block ``[k[c] * b[c], min(S[c], (k[c] + 1) * b[c]))``,
``b[c] = ceil(S[c] / p[c])`` (see ``runtime/pef/schema.py``, ``Pcu.parallel``), or, with
``interleaved`` after it, over every ``p[c]``-th point from ``k[c]`` (``Pcu.interleaved``).

Stage ops: ``pcu.stage <opcode>(...)`` (see ``StageOpcode``), ``pcu.const <number> : type``,
``pcu.counter <c> : i64``, ``pcu.yield``.

place-and-route adds, printed after ``combiner`` (and ``parallel``), ``placed
#pcu.placement<...>`` (a ``PlacementAttr``; routes are ``#pmu.route``s written without their
``#pmu.route<>``, see ``dialects/pmu.py``). A unit of one PCU:

    placed #pcu.placement<at (0, 0), routes [(1, 0) -> (0, 0), (1, 1) -> (0, 1) -> (0, 0)]>

``at``: the PCU's slot; ``routes``: one a input port, the stream from that port's PMU to this
PCU. The stream out of the PCU is routed on the receiving ``pmu.buffer`` (its ``fill``). A
parallel unit (see ``compiler/passes/parallel_layout.py``):

    placed #pcu.placement<at [(0, 0), (2, 0)],
      streams [port 0 to copies [0, 1] via (1, 0) -> (0, 0) -> (1, 0) -> (2, 0)],
      out_routes [(0, 0) -> (1, 0), (2, 0) -> (1, 0)]>

``at``: the slots of its copies, copy 0 first; ``streams``: multicast streams (``#pcu.stream``),
each from a PMU of input ``port``'s buffer through the switches of the copies it feeds;
``out_routes``: one a copy, from its switch to a PMU of its result buffer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from xdsl.dialects.builtin import (
    I64,
    AnyFloat,
    ArrayAttr,
    DenseArrayBase,
    FloatAttr,
    IntAttr,
    IntegerAttr,
    IntegerType,
    MemRefType,
    StringAttr,
    TensorType,
    UnitAttr,
    i1,
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

from dialects.dataflow import fabric_dtype
from dialects.enums import parse_member, table_enum
from dialects.pmu import (
    RouteAttr,
    Slot,
    check_slots,
    checked,
    flat_slots,
    pairs,
    parse_placement,
    parse_route,
    placement_text,
    route_list_text,
)
from dialects.rdu_tile import (
    AccessAttr,
    Combiner,
    CombinerAttr,
    dense_i64,
    element_type,
    i64_values,
    int_list_text,
    parse_int_list,
    parse_space_props,
    print_space_props,
    shape_of,
    verify_body,
    verify_space,
)
from runtime.machine.opcodes import OPCODES, Opcode, type_error
from runtime.machine.rules import (
    interleave_problem,
    parallel_problem,
    register_problem,
    unit_depth,
)

STAGE_OPCODES: dict[str, Opcode] = {name: op for name, op in OPCODES.items() if op.arity > 0}
"""The opcodes of ``pcu.stage`` (``runtime/machine/opcodes.py``): every opcode with operands
(``const`` and ``counter`` are ``pcu.const`` and ``pcu.counter``)."""

if TYPE_CHECKING:

    class StageOpcode(StrEnum):
        """The opcode of a ``pcu.stage``: the keys of ``STAGE_OPCODES``."""

else:
    StageOpcode = table_enum("StageOpcode", STAGE_OPCODES, __name__)


@irdl_attr_definition
class StageOpcodeAttr(EnumAttribute[StageOpcode], SpacedOpaqueSyntaxAttribute):
    """A stage's opcode: ``#pcu<opcode mul>`` (``mul`` in ``pcu.stage``)."""

    name = "pcu.opcode"

    @classmethod
    def parse_parameter(cls, parser: AttrParser) -> StageOpcode:
        return parse_member(parser, StageOpcode, "opcode")


# --------------------------------------------------------------------------------------------
# Stage ops
# --------------------------------------------------------------------------------------------


@irdl_op_definition
class StageOp(IRDLOperation):
    """One pipeline stage: ``%r = pcu.stage add(%a, %b) : (f32, f32) -> f32``.

    Its operand and result types follow the opcode's type rule (``runtime/machine/opcodes.py``,
    the rules the PEF validator checks too): comparisons give i1; ``select`` is (cond, a, b);
    ``cast`` converts to its result type.
    """

    name = "pcu.stage"

    opcode = prop_def(StageOpcodeAttr)
    args = var_operand_def()
    result = result_def()

    assembly_format = "$opcode `(` $args `)` attr-dict `:` functional-type($args, $result)"

    traits = lazy_traits_def(lambda: (NoMemoryEffect(), HasParent(UnitOp)))

    def __init__(
        self, opcode: str, args: Sequence[SSAValue | Operation], result_type: Attribute
    ) -> None:
        super().__init__(
            operands=[list(args)],
            result_types=[result_type],
            properties={"opcode": StageOpcodeAttr(StageOpcode(opcode))},
        )

    def verify_(self) -> None:
        op = self.opcode.data
        arity = STAGE_OPCODES[op].arity
        if len(self.args) != arity:
            raise VerifyException(f"pcu.stage {op} takes {arity} operand(s), got {len(self.args)}")
        operands = [fabric_dtype(a.type) for a in self.args]
        problem = type_error(op, fabric_dtype(self.result.type), operands)
        if problem:
            raise VerifyException(f"pcu.stage {problem}")


@irdl_op_definition
class ConstOp(IRDLOperation):
    """A constant stage: ``%c = pcu.const 1.000000e+00 : f32`` (also ``inf``, ``-inf``, ``nan``;
    ``true``/``false`` for i1).

    ``value`` is a FloatAttr or IntegerAttr of the result type.
    """

    name = "pcu.const"

    value = prop_def(FloatAttr | IntegerAttr)
    result = result_def()

    traits = lazy_traits_def(lambda: (NoMemoryEffect(), HasParent(UnitOp)))

    def __init__(self, value: float | int, result_type: Attribute) -> None:
        attr: Attribute
        if isinstance(result_type, AnyFloat):
            attr = FloatAttr(float(value), result_type)
        else:
            assert isinstance(result_type, IntegerType)
            attr = IntegerAttr(int(value), result_type)
        super().__init__(result_types=[result_type], properties={"value": attr})

    @property
    def number(self) -> float | int:
        """The constant as a Python number (an i1 constant is 0 or 1)."""
        data = self.value.value.data
        if self.value.type == i1:
            return int(data != 0)
        return data

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
                printer.print_float(x, v.type)
        elif v.type == i1:
            printer.print_string("true" if v.value.data else "false")
        else:
            printer.print_int(v.value.data)
        printer.print_op_attributes(self.attributes)
        printer.print_string(" : ")
        printer.print_attribute(self.result.type)

    @classmethod
    def parse(cls, parser: Parser) -> ConstOp:
        neg = parser.parse_optional_punctuation("-") is not None
        number: float | int
        if parser.parse_optional_keyword("inf") is not None:
            number = -math.inf if neg else math.inf
        elif parser.parse_optional_keyword("nan") is not None:
            number = math.nan
        else:
            number = parser.parse_number(allow_boolean=True, context_msg=" (the constant)")
            number = -number if neg else number
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        pos = parser.pos
        typ = parser.parse_type()
        value: Attribute
        if isinstance(typ, AnyFloat):
            value = FloatAttr(float(number), typ)
        elif isinstance(typ, IntegerType) and isinstance(number, int):
            value = IntegerAttr(number, typ)
        else:
            parser.raise_error(f"pcu.const: cannot hold {number} in a {typ}", pos, parser.pos)
        return cls.create(result_types=[typ], properties={"value": value}, attributes=attrs)

    def verify_(self) -> None:
        if self.value.type != self.result.type:
            raise VerifyException(
                f"pcu.const: value type {self.value.type} differs from result type "
                f"{self.result.type}"
            )


@irdl_op_definition
class CounterOp(IRDLOperation):
    """The current value of counter ``c`` of the unit's chain: ``%i = pcu.counter 0 : i64``."""

    name = "pcu.counter"

    counter = prop_def(IntegerAttr[I64])
    result = result_def(IntegerType)

    assembly_format = "$counter attr-dict `:` type($result)"

    traits = lazy_traits_def(lambda: (NoMemoryEffect(), HasParent(UnitOp)))

    def __init__(self, counter: int) -> None:
        super().__init__(properties={"counter": IntegerAttr(counter, i64)}, result_types=[i64])

    def verify_(self) -> None:
        if self.result.type != i64:
            raise VerifyException(f"pcu.counter gives i64, got {self.result.type}")
        unit = self.parent_op()
        if not isinstance(unit, UnitOp):
            return
        c = self.counter.value.data
        rank = len(unit.space)
        if not 0 <= c < rank:
            raise VerifyException(
                f"pcu.counter: counter {c} out of range, the unit's space has {rank} counters"
            )


@irdl_op_definition
class YieldOp(IRDLOperation):
    """The value the pipeline writes to the output stream: ``pcu.yield %v : f32``."""

    name = "pcu.yield"

    value = operand_def()

    assembly_format = "$value attr-dict `:` type($value)"

    traits = lazy_traits_def(lambda: (IsTerminator(), NoMemoryEffect(), HasParent(UnitOp)))

    def __init__(self, value: SSAValue | Operation) -> None:
        super().__init__(operands=[value])


# --------------------------------------------------------------------------------------------
# Placement
# --------------------------------------------------------------------------------------------


@irdl_attr_definition
class StreamAttr(ParametrizedAttribute):
    """A multicast stream into a parallel unit: from a PMU of input ``port``'s buffer through the
    switch of every copy in ``copies``, along ``route``:
    ``#pcu.stream<port 0 to copies [0, 1] via (1, 0) -> (0, 0) -> (1, 0) -> (2, 0)>``."""

    name = "pcu.stream"

    port: IntAttr
    copies: DenseArrayBase[I64]
    route: RouteAttr

    def __init__(self, port: int, copies: Sequence[int], route: RouteAttr) -> None:
        super().__init__(IntAttr(port), dense_i64(copies), route)

    @property
    def copy_values(self) -> tuple[int, ...]:
        """The copies it feeds."""
        return tuple(self.copies.get_values())

    def verify(self) -> None:
        copies = self.copy_values
        if self.port.data < 0:
            raise VerifyException(f"pcu.stream: port {self.port.data} must be >= 0")
        if not copies or min(copies) < 0 or len(set(copies)) != len(copies):
            raise VerifyException(
                f"pcu.stream: copies {int_list_text(copies)} must be distinct copy numbers "
                "(>= 0), at least one"
            )

    def text(self) -> str:
        """The parameters' syntax, without the angle brackets."""
        return (
            f"port {self.port.data:d} to copies {int_list_text(self.copy_values)} "
            f"via {self.route.text()}"
        )

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<{self.text()}>")

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        pos = parser.pos
        with parser.in_angle_brackets():
            params = parse_stream(parser)
        return checked(parser, cls, params, pos)


def parse_stream(parser: AttrParser) -> tuple[IntAttr, DenseArrayBase[IntegerType], RouteAttr]:
    """``port P to copies [k, ...] via ROUTE`` (a stream's parameters)."""
    parser.parse_keyword("port", " (a pcu.stream starts with its port)")
    port = parser.parse_integer(context_msg=" (the stream's port)")
    parser.parse_keyword("to")
    parser.parse_keyword("copies")
    copies = parse_int_list(parser, "the stream's copies")
    parser.parse_keyword("via")
    return IntAttr(port), dense_i64(copies), parse_route(parser)


def _parse_streams(parser: AttrParser) -> ArrayAttr[StreamAttr]:
    def one() -> StreamAttr:
        pos = parser.pos
        params = parse_stream(parser)
        checked(parser, StreamAttr, params, pos)
        return StreamAttr.new(params)

    return ArrayAttr(parser.parse_comma_separated_list(parser.Delimiter.SQUARE, one))


def _parse_routes(parser: AttrParser) -> ArrayAttr[RouteAttr]:
    return ArrayAttr(
        parser.parse_comma_separated_list(parser.Delimiter.SQUARE, lambda: parse_route(parser))
    )


@irdl_attr_definition
class PlacementAttr(ParametrizedAttribute):
    """Where a ``pcu.unit``'s PCUs are and how its operands reach them (see the module
    docstring): one PCU has one slot and ``routes``, one a input port; a parallel unit has a
    slot a copy, ``streams`` and ``out_routes`` (one a copy)."""

    name = "pcu.placement"

    at: DenseArrayBase[I64]
    """The slots, flattened ``x0, y0, x1, y1, ...``."""
    routes: ArrayAttr[RouteAttr]
    streams: ArrayAttr[StreamAttr]
    out_routes: ArrayAttr[RouteAttr]

    def __init__(
        self,
        slots: Sequence[Sequence[int]],
        routes: Sequence[RouteAttr] = (),
        streams: Sequence[StreamAttr] = (),
        out_routes: Sequence[RouteAttr] = (),
    ) -> None:
        super().__init__(
            flat_slots(slots), ArrayAttr(routes), ArrayAttr(streams), ArrayAttr(out_routes)
        )

    @property
    def slots(self) -> tuple[Slot, ...]:
        """The PCU's slot, or its copies' (copy 0 first)."""
        return pairs(self.at.get_values())

    @property
    def is_parallel(self) -> bool:
        """Whether it places the copies of a parallel unit (streams and out routes)."""
        return bool(self.streams.data or self.out_routes.data)

    def verify(self) -> None:
        what = "pcu.placement"
        slots = check_slots(what, self.at)
        if not self.is_parallel:
            if len(slots) != 1:
                raise VerifyException(
                    f"{what}: {len(slots)} slots but no streams and out_routes (one PCU has one "
                    "slot and routes; a parallel unit's copies have streams and out_routes)"
                )
            return
        if self.routes.data:
            raise VerifyException(
                f"{what}: routes (one PCU) and streams or out_routes (a parallel unit) both given"
            )
        if len(self.out_routes) != len(slots):
            raise VerifyException(
                f"{what}: {len(self.out_routes)} out_routes for {len(slots)} copies (one a copy)"
            )
        for stream in self.streams.data:
            high = max(stream.copy_values)
            if high >= len(slots):
                raise VerifyException(
                    f"{what}: a stream feeds copy {high}, there are {len(slots)} copies"
                )

    def print_parameters(self, printer: Printer) -> None:
        fields: list[tuple[str, str]] = []
        if self.routes.data:
            fields.append(("routes", route_list_text(self.routes.data)))
        if self.streams.data:
            fields.append(("streams", "[" + ", ".join([s.text() for s in self.streams.data]) + "]"))
        if self.out_routes.data:
            fields.append(("out_routes", route_list_text(self.out_routes.data)))
        printer.print_string(placement_text(self.slots, fields))

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        routes = (lambda: _parse_routes(parser), ArrayAttr(()))
        streams = (lambda: _parse_streams(parser), ArrayAttr(()))
        fields = {"routes": routes, "streams": streams, "out_routes": routes}
        return parse_placement(parser, cls, fields)


@irdl_attr_definition
class SectionPlacementAttr(ParametrizedAttribute):
    """A section's placement as partition-sections found it, for place-and-route (the
    section's ``rdu.placement``): the slot of every unit and the route of every stream of the
    section's graph, in the graph's order (``compiler/passes/ir_helpers.section_graph``):
    ``#pcu.section_placement<at [(1, 0), (2, 0)], routes [(0, 0) -> (1, 0), (1, 0) -> (2, 0)]>``.
    """

    name = "pcu.section_placement"

    at: DenseArrayBase[I64]
    """The slots, flattened ``x0, y0, x1, y1, ...``."""
    routes: ArrayAttr[RouteAttr]

    def __init__(self, slots: Sequence[Sequence[int]], routes: Sequence[RouteAttr]) -> None:
        super().__init__(flat_slots(slots), ArrayAttr(routes))

    @property
    def slots(self) -> tuple[Slot, ...]:
        return pairs(self.at.get_values())

    def verify(self) -> None:
        check_slots("pcu.section_placement", self.at)

    def print_parameters(self, printer: Printer) -> None:
        fields = [("routes", route_list_text(self.routes.data))] if self.routes.data else []
        printer.print_string(placement_text(self.slots, fields))

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        routes = (lambda: _parse_routes(parser), ArrayAttr(()))
        return parse_placement(parser, cls, {"routes": routes})


# --------------------------------------------------------------------------------------------
# The unit
# --------------------------------------------------------------------------------------------


@irdl_op_definition
class UnitOp(IRDLOperation):
    """One PCU (see the module docstring)."""

    name = "pcu.unit"

    inputs = var_operand_def(MemRefType)
    result = result_def(TensorType)

    sym_name = prop_def(StringAttr)
    space = prop_def(DenseArrayBase.constr(I64))
    tile = prop_def(DenseArrayBase.constr(I64))
    lanes = prop_def(IntegerAttr[I64])
    ins = prop_def(ArrayAttr[AccessAttr])
    out = prop_def(AccessAttr)
    combiner = prop_def(CombinerAttr)
    parallel = opt_prop_def(DenseArrayBase.constr(I64))
    interleaved = opt_prop_def(UnitAttr)
    placement = opt_prop_def(PlacementAttr)

    body = region_def("single_block")

    traits = traits_def(IsolatedFromAbove(), NoMemoryEffect())

    def __init__(
        self,
        name: str,
        inputs: Sequence[SSAValue | Operation],
        result_type: Attribute,
        space: Sequence[int],
        tile: Sequence[int],
        lanes: int,
        ins: Sequence[AccessAttr],
        out: AccessAttr,
        combiner: str,
        body: Region | Block,
    ) -> None:
        if isinstance(body, Block):
            body = Region(body)
        super().__init__(
            operands=[list(inputs)],
            result_types=[result_type],
            properties={
                "sym_name": StringAttr(name),
                "space": dense_i64(space),
                "tile": dense_i64(tile),
                "lanes": IntegerAttr(lanes, i64),
                "ins": ArrayAttr(ins),
                "out": out,
                "combiner": CombinerAttr(Combiner(combiner)),
            },
            regions=[body],
        )

    @property
    def space_values(self) -> tuple[int, ...]:
        return i64_values(self.space)

    @property
    def tile_values(self) -> tuple[int, ...]:
        return i64_values(self.tile)

    @property
    def parallel_values(self) -> tuple[int, ...]:
        """The factors of a parallel unit (``()``: one PCU)."""
        return () if self.parallel is None else i64_values(self.parallel)

    @property
    def copies(self) -> int:
        """How many PCUs the unit is (the product of its factors)."""
        return math.prod(self.parallel_values)

    @property
    def yield_op(self) -> YieldOp:
        last = self.body.block.last_op
        assert isinstance(last, YieldOp)
        return last

    def parallel_problem(self, factors: Sequence[int]) -> str | None:
        """What forbids running the unit as ``prod(factors)`` copies, or None
        (``runtime.machine.rules.parallel_problem``, as the PEF validator asks it)."""
        operands = list(self.inputs)
        return parallel_problem(
            self.space_values,
            self.out.stride_values,
            factors,
            indexed=self.out.is_indexed or any(a.is_indexed for a in self.ins.data),
            positional=any(OPCODES[op].positional for op in self.stage_opcodes()),
            counters=self.counter_stages(),
            reads=[
                (f"operand {operands.index(v)}", a)
                for v, a in zip(operands, self.ins.data, strict=True)
            ],
        )

    def is_register_port(self, port: int) -> bool:
        """Whether input ``port`` reads one address at every point, so that the PCU reads it
        once into a register (``runtime.machine.rules.register_problem``, which emit-pef and the
        PEF validator ask too): its stream travels the scalar network."""
        access = self.ins.data[port]
        return register_problem(self.space_values, access.stride_values, access.is_indexed) is None

    def counter_stages(self) -> list[int]:
        """The counters the body's ``pcu.counter`` ops read."""
        return [op.counter.value.data for op in self.body.block.ops if isinstance(op, CounterOp)]

    def stage_opcodes(self) -> list[str]:
        """The body's opcodes in order (``const`` and ``counter`` for those ops)."""
        ops: list[str] = []
        for op in self.body.block.ops:
            if isinstance(op, StageOp):
                ops.append(op.opcode.data)
            elif isinstance(op, ConstOp):
                ops.append("const")
            elif isinstance(op, CounterOp):
                ops.append("counter")
        return ops

    def depth(self, space: Sequence[int] | None = None) -> int:
        """The pipeline stages the unit takes (``runtime.machine.rules.unit_depth``) over its
        space, or over ``space`` (a parallel copy's block)."""
        yielded = self.yield_op.value.owner
        result_op = yielded.opcode.data if isinstance(yielded, StageOp) else None
        return unit_depth(
            self.stage_opcodes(),
            self.combiner.data,
            result_op,
            self.space_values if space is None else space,
            self.out.stride_values,
            self.lanes.value.data,
        )

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_symbol_name(self.sym_name.data)
        printer.print_string(" (")
        printer.print_list(self.inputs, printer.print_operand)
        printer.print_string(")")
        print_space_props(
            printer,
            self.space,
            self.tile,
            [("lanes", self.lanes.value.data)],
            self.ins,
            self.out,
            self.combiner,
        )
        if self.parallel is not None:
            printer.print_string(f" parallel {int_list_text(self.parallel.get_values())}")
        if self.interleaved is not None:
            printer.print_string(" interleaved")
        if self.placement is not None:
            printer.print_string(" placed ")
            printer.print_attribute(self.placement)
        printer.print_op_attributes(self.attributes)
        printer.print_string(" : ")
        printer.print_function_type(self.operand_types, self.result_types)
        printer.print_string(" ")
        printer.print_region(self.body)

    @classmethod
    def parse(cls, parser: Parser) -> UnitOp:
        name = parser.parse_symbol_name()
        operands = parser.parse_comma_separated_list(
            parser.Delimiter.PAREN, parser.parse_unresolved_operand
        )
        props = parse_space_props(parser, ("lanes",))
        props["sym_name"] = name
        if parser.parse_optional_keyword("parallel") is not None:
            props["parallel"] = dense_i64(parse_int_list(parser, "parallel"))
        if parser.parse_optional_keyword("interleaved") is not None:
            props["interleaved"] = UnitAttr()
        if parser.parse_optional_keyword("placed") is not None:
            pos = parser.pos
            placement = parser.parse_attribute()
            if not isinstance(placement, PlacementAttr):
                parser.raise_error(
                    "pcu.unit: 'placed' takes a #pcu.placement<...>", pos, parser.pos
                )
            props["placement"] = placement
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        pos = parser.pos
        ftype = parser.parse_function_type()
        if len(ftype.outputs.data) != 1:
            parser.raise_error("pcu.unit has exactly one result", pos, parser.pos)
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
        what = f"pcu.unit @{self.sym_name.data}"
        if self.lanes.value.data < 1:
            raise VerifyException(f"{what}: lanes must be >= 1, got {self.lanes.value.data}")
        for v in self.inputs:
            owner = v.owner
            if isinstance(owner, Operation) and owner.name != "pmu.buffer":
                raise VerifyException(
                    f"{what}: operands must be 'pmu.buffer' results, got a '{owner.name}' result"
                )
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
            ("pcu",),
        )
        if self.parallel is not None:
            problem = self.parallel_problem(self.parallel_values)
            if problem:
                raise VerifyException(f"{what}: {problem}")
        if self.interleaved is not None:
            factors = self.parallel_values or (1,) * len(self.space_values)
            problem = interleave_problem(self.space_values, self.out.stride_values, factors)
            if problem:
                raise VerifyException(f"{what}: {problem}")
        if self.placement is not None:
            self.verify_placement(what, self.placement)

    def verify_placement(self, what: str, placed: PlacementAttr) -> None:
        """``placed`` against the unit: one PCU's slot and routes, or a slot a copy."""
        if self.parallel is None:
            if placed.is_parallel:
                raise VerifyException(
                    f"{what}: placed as a parallel unit (streams, out_routes), but not parallel"
                )
            if len(placed.routes) != len(self.inputs):
                raise VerifyException(
                    f"{what}: {len(placed.routes)} routes for {len(self.inputs)} input ports"
                )
            return
        if len(placed.slots) != self.copies or not placed.is_parallel:
            raise VerifyException(
                f"{what}: parallel {list(self.parallel_values)} is {self.copies} copies: its "
                f"placement needs a slot, and an out route, a copy (got {len(placed.slots)} "
                f"slot(s), {len(placed.out_routes)} out route(s))"
            )
        for stream in placed.streams.data:
            if stream.port.data >= len(self.inputs):
                raise VerifyException(
                    f"{what}: a stream feeds port {stream.port.data}, the unit has "
                    f"{len(self.inputs)} input ports"
                )


Pcu = Dialect(
    "pcu",
    [UnitOp, StageOp, ConstOp, CounterOp, YieldOp],
    [StageOpcodeAttr, StreamAttr, PlacementAttr, SectionPlacementAttr],
)
"""The pcu dialect."""
