"""From a traced FX graph to ``dataflow.section`` ops.

Training: the joint graph is cut by ``meta["partitioner_tag"]`` into a ``forward`` section
(parameters, buffers, inputs and targets in; loss, outputs, buffer updates and the activations
the backward reads out) and a ``backward`` section (what it reads in; ``<param>.grad`` out). The
loss tangent is a ``dataflow.fill 1.0``. Views of section inputs (``t``, ``view``, ...) that the
backward needs are recomputed there rather than saved. Every op that will be converted is checked
against the table first, so an unsupported op is reported before any IR is built.

With ``collect=True`` (``rdu-compile --check``) nothing is refused on the way: each op without a
converter, or whose converter refuses its form (a ``ConversionError``), is noted as an
``OpIssue`` and stands in as zeros of torch's shape, so the conversion goes on and finds the rest.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.fx.experimental.symbolic_shapes import is_concrete_int
from torch.fx.node import map_aggregate
from xdsl.dialects.builtin import TensorType, f32
from xdsl.ir import Attribute, Block, OpResult, SSAValue

from compiler.frontend.aten import IDENTITY_OPS, VIEW_OPS
from compiler.frontend.converter import (
    Call,
    ConversionError,
    elt_of_dtype,
    normalize_args,
    op_name,
)
from compiler.frontend.emitter import Emitter, ShapeError, shape_of, tensor
from compiler.frontend.errors import FrontendError, UnsupportedOpError
from compiler.frontend.int_bounds import fits_int32
from compiler.frontend.locations import CallSite, Locator, SourceLine
from compiler.frontend.registry import CONVERTERS
from compiler.frontend.trace import GraphInput, Traced
from compiler.value_names import named, ssa_hint
from dialects.dataflow import SectionOp, YieldOp

ROLE_ORDER = {"parameter": 0, "buffer": 1, "input": 2, "label": 3}
"""Order of a section's arguments by role (then by first appearance)."""

CONSTANT_OPS = frozenset(
    {
        "aten.full.default",
        "aten.zeros.default",
        "aten.ones.default",
        "aten.scalar_tensor.default",
        "aten.arange.default",
        "aten.arange.start",
        "aten.arange.start_step",
    }
)
"""Ops without tensor inputs: recomputed in the backward rather than saved."""

Env = dict[torch.fx.Node, Any]


@dataclass
class SectionArg:
    """A section's block argument: DRAM symbol, role, type."""

    name: str
    role: str
    type: Attribute


@dataclass
class SectionResult:
    """A value a section stores to DRAM."""

    name: str
    role: str
    value: SSAValue


@dataclass(frozen=True)
class OpIssue:
    """One call of an op the frontend does not convert (``rdu-compile --check`` lists them)."""

    op: str
    where: SourceLine
    """The user's line."""
    call_site: CallSite | None
    """The library line that called the op (None: the user's line calls it)."""
    backward: bool
    detail: str = ""
    """Why a converter refused this form ("" when the op has no converter)."""

    def error(self) -> UnsupportedOpError:
        """The error an ordinary compile raises for it."""
        return UnsupportedOpError(
            str(self.where), self.op, self.detail, self.backward, self.call_site
        )


def tensor_type_of(val: Any, what: str, where: SourceLine) -> TensorType[Attribute]:
    """The IR type of a traced tensor (``node.meta["val"]``)."""
    if not isinstance(val, torch.Tensor):
        raise FrontendError(f"{where}: {what} is a {type(val).__name__}, not a tensor")
    try:
        elt = elt_of_dtype(val.dtype)
    except ConversionError as error:
        raise FrontendError(f"{where}: {what} has unsupported {error}") from error
    return tensor([int(d) for d in val.shape], elt)


def make_section(
    name: str,
    kind: str,
    args: Sequence[SectionArg],
    body: Callable[[Emitter, dict[str, SSAValue]], list[SectionResult]],
    where: SourceLine,
) -> SectionOp:
    """A section whose block has ``args`` and whose body ``body`` emits (returning the yields)."""
    block = Block(arg_types=[a.type for a in args])
    for a, v in zip(args, block.args, strict=True):
        v.name_hint = ssa_hint(a.name)
    em = Emitter(block)
    em.loc = where.loc()
    em.section_args = {a.name: v for a, v in zip(args, block.args, strict=True)}
    results = body(em, dict(em.section_args))
    em.loc = where.loc()
    yield_op = YieldOp(*[r.value for r in results])
    yield_op.location = where.loc()
    em.builder.insert(yield_op)
    remove_dead_ops(block)
    section = SectionOp(
        name,
        kind,
        [a.name for a in args],
        [a.role for a in args],
        [r.name for r in results],
        [r.role for r in results],
        block,
    )
    section.location = where.loc()
    return section


def remove_dead_ops(block: Block) -> None:
    """Erase ops whose results nobody uses (all dataflow ops but the yield are pure)."""
    for op in reversed(list(block.ops)):
        if isinstance(op, YieldOp):
            continue
        if all(not r.uses for r in op.results):
            block.erase_op(op)


class GraphBuilder:
    """Converts FX nodes of one traced graph, section by section."""

    def __init__(self, traced: Traced, locator: Locator, collect: bool = False) -> None:
        self.traced = traced
        self.locator = locator
        self.input_of: dict[torch.fx.Node, GraphInput] = {i.node: i for i in traced.inputs}
        self._backward = self._tag_backward()
        self.random_streams: dict[torch.fx.Node, tuple[int, ...]] = {}
        """The random streams (``dataflow.random``) each converted node drew, by node: how
        rdu-test gives torch's reference run the fabric's dropout masks."""
        self.issues: list[OpIssue] | None = [] if collect else None
        """With ``collect``: every refused op call, in conversion order (else None: raise)."""
        self.converted: dict[torch.fx.Node, str] = {}
        """Every call_function node converted (or refused), with its op name."""
        self._stand_ins: set[SSAValue] = set()
        self.recompute: set[torch.fx.Node] = set()
        """Forward ops the backward recomputes rather than loads (see remat.py)."""
        self._refused_nodes: set[torch.fx.Node] = set()

    # classification ----------------------------------------------------------------------

    def _tag_backward(self) -> set[torch.fx.Node]:
        """Backward nodes: tagged so, or (untagged) fed by a backward node or a tangent."""
        backward: set[torch.fx.Node] = set(self.traced.tangents)
        for node in self.traced.graph.nodes:
            if node.op != "call_function":
                continue
            tag = node.meta.get("partitioner_tag")
            if tag == "is_backward":
                backward.add(node)
            elif tag is None and any(a in backward for a in node.all_input_nodes):
                backward.add(node)
        return backward

    def is_backward(self, node: torch.fx.Node) -> bool:
        return node in self._backward

    def is_constant(self, node: torch.fx.Node) -> bool:
        return node.op == "get_attr" or (
            node.op == "placeholder" and node.name in self.traced.constants
        )

    @staticmethod
    def resolve(node: torch.fx.Node) -> torch.fx.Node:
        """Follow identity ops (detach, clone, ...) to the node that computes the value."""
        while node.op == "call_function" and op_name(node.target) in IDENTITY_OPS:
            first = node.args[0]
            if not isinstance(first, torch.fx.Node):
                break
            node = first
        return node

    def recomputable(self, node: torch.fx.Node) -> bool:
        """A forward view/constant of section inputs only, or an op the minimum cut chose
        (``recompute``): cheaper to redo than to save."""
        if node in self.recompute:
            return True
        if node.op == "placeholder" or self.is_constant(node):
            return node not in self.traced.tangents
        if node.op != "call_function":
            return False
        name = op_name(node.target)
        if name not in VIEW_OPS and name not in IDENTITY_OPS and name not in CONSTANT_OPS:
            return False
        return all(self.recomputable(a) for a in node.all_input_nodes)

    # location and checks -----------------------------------------------------------------

    def where(self, node: torch.fx.Node) -> SourceLine:
        return self.locator.of_node(node)

    def issue(self, node: torch.fx.Node, detail: str = "") -> OpIssue:
        """The refusal of ``node``'s op, located at the user's line and the library's."""
        return OpIssue(
            op_name(node.target),
            self.where(node),
            self.locator.call_site_of(node),
            self.is_backward(node),
            detail,
        )

    def check_supported(self, nodes: Iterable[torch.fx.Node]) -> None:
        """Raise UnsupportedOpError for the first op (in graph order) without a converter
        (collecting: nothing, ``convert`` notes them)."""
        if self.issues is not None:
            return
        for node in nodes:
            if node.op != "call_function" or node.target is operator.getitem:
                continue
            if op_name(node.target) not in CONVERTERS:
                raise self.issue(node).error()

    # conversion --------------------------------------------------------------------------

    def constant(self, em: Emitter, node: torch.fx.Node) -> SSAValue:
        """A constant tensor of the graph as a fill (only splat constants are supported)."""
        if node.op == "get_attr":
            value = self.traced.constants[node.name]
        else:
            value = self.traced.constants[node.name]
        typ = tensor_type_of(value, f"constant {node.name}", self.where(node))
        flat = value.detach().reshape(-1)
        if flat.numel() and not bool((flat == flat[0]).all()):
            users = list(node.users)
            where = self.where(users[0]) if users else self.locator.default
            raise FrontendError(
                f"{where}: a constant tensor of shape {list(value.shape)} with distinct values "
                "is not supported yet (make it a buffer or a parameter)"
            )
        first = flat[0].item() if flat.numel() else 0
        return em.fill(first, typ.get_shape(), typ.element_type)

    def convert(
        self, em: Emitter, node: torch.fx.Node, lookup: Callable[[torch.fx.Node], Any]
    ) -> Any:
        """The IR value(s) of one call_function node."""
        if node.target is operator.getitem:
            source, index = node.args
            assert isinstance(source, torch.fx.Node) and isinstance(index, int), node.args
            value = lookup(source)[index]
            if isinstance(value, SSAValue):
                _name_value(value, node)
            return value
        name = op_name(node.target)
        where = self.where(node)
        em.loc = where.loc()
        self.converted[node] = name
        args = map_aggregate(node.args, lambda a: lookup(a) if isinstance(a, torch.fx.Node) else a)
        kwargs = map_aggregate(
            node.kwargs, lambda a: lookup(a) if isinstance(a, torch.fx.Node) else a
        )
        if name not in CONVERTERS:  # only when collecting: check_supported raised otherwise
            return self._refused(em, node, self.issue(node))
        call = Call(em, node, normalize_args(node, args, kwargs))
        first_stream = em.random_streams
        try:
            result = CONVERTERS[name](call)
            result = self._match_meta(em, node, result)
        except (ConversionError, ShapeError) as error:
            if self.issues is None:
                raise self.issue(node, str(error)).error() from error
            if self._reads_stand_in((args, kwargs)):
                # its inputs are made up: whether it refuses the real ones is not known
                return self._stand_in(em, node.meta.get("val"))
            return self._refused(em, node, self.issue(node, str(error)))
        if em.random_streams > first_stream:
            self.random_streams[node] = tuple(range(first_stream, em.random_streams))
        return result

    def _refused(self, em: Emitter, node: torch.fx.Node, issue: OpIssue) -> Any:
        """Note ``issue`` (once a node: recomputed views convert twice); zeros stand in."""
        assert self.issues is not None
        if node not in self._refused_nodes:
            self._refused_nodes.add(node)
            self.issues.append(issue)
        return self._stand_in(em, node.meta.get("val"))

    def _stand_in(self, em: Emitter, val: Any) -> Any:
        """Zeros of torch's shape and dtype (f32 for a dtype we lack) for a refused op."""
        if isinstance(val, tuple | list):
            return tuple(self._stand_in(em, v) for v in val)
        if not isinstance(val, torch.Tensor):
            return None
        try:
            elt = elt_of_dtype(val.dtype)
        except ConversionError:
            elt = f32
        # a size set by the data (JetMoE's experts' split sizes) stands in as 1
        value = em.fill(0, [int(d) if is_concrete_int(d) else 1 for d in val.shape], elt)
        self._stand_ins.add(value)
        return value

    def _reads_stand_in(self, args: Any) -> bool:
        found = False

        def visit(a: Any) -> Any:
            nonlocal found
            found = found or (isinstance(a, SSAValue) and a in self._stand_ins)
            return a

        map_aggregate(args, visit)
        return found

    def _match_meta(self, em: Emitter, node: torch.fx.Node, result: Any) -> Any:
        """Check the converter's result against torch's shapes; cast to torch's dtypes."""
        val = node.meta.get("val")
        if isinstance(result, SSAValue):
            return self._match_one(em, node, result, val, hint=True)
        if isinstance(result, tuple) and isinstance(val, tuple | list):
            return tuple(
                self._match_one(em, node, r, v, hint=False) if isinstance(r, SSAValue) else r
                for r, v in zip(result, val, strict=False)
            )
        return result

    @staticmethod
    def _match_one(
        em: Emitter, node: torch.fx.Node, value: SSAValue, val: Any, hint: bool
    ) -> SSAValue:
        if not isinstance(val, torch.Tensor):
            return value
        shape = tuple(int(d) for d in val.shape)
        if shape_of(value) != shape:
            raise ShapeError(
                f"internal: converted to shape {list(shape_of(value))}, torch says {list(shape)}"
            )
        if val.dtype == torch.int32 and not fits_int32(node):
            raise ConversionError(
                "an int32 result not provably within int32 (int32 is computed as int64, "
                "which does not wrap around)"
            )
        value = em.cast(value, elt_of_dtype(val.dtype))
        if hint:
            _name_value(value, node)
        return value

    def arg_type(self, node: torch.fx.Node, what: str) -> TensorType[Attribute]:
        """The type of a section input bound to ``node`` (a saved activation, the loss's
        gradient). Collecting, one of a dtype we lack (complex rotary embeddings: a refused op
        made it) is f32, as a refused op's stand-in is."""
        val = node.meta.get("val")
        if self.issues is not None and isinstance(val, torch.Tensor):
            try:
                elt_of_dtype(val.dtype)
            except ConversionError:
                return tensor([int(d) for d in val.shape], f32)
        return tensor_type_of(val, what, self.where(node))

    def input_type(self, gi: GraphInput) -> TensorType[Attribute]:
        """The type of a section input bound to a graph placeholder."""
        where = self.locator.default
        val = gi.node.meta.get("val")
        if isinstance(val, torch.Tensor) and val.dtype == torch.int32:
            raise FrontendError(
                f"{where}: {gi.name} has unsupported dtype torch.int32 in DRAM "
                "(int32 is computed as int64: make it int64)"
            )
        return tensor_type_of(val, gi.name, where)


def _name_value(value: SSAValue, node: torch.fx.Node) -> None:
    """Name ``value`` after the FX node it is the value of, unless it has a name already (a
    value a converter passed through): its name hint, and its op's location
    ``loc("node"(file:line))`` (``compiler/value_names.py``: rdu-test finds the unit that holds
    a node's value by it)."""
    if value.name_hint is not None:
        return
    value.name_hint = ssa_hint(node.name)
    if isinstance(value, OpResult):
        value.op.location = named(node.name, value.op.location)


def live_nodes(
    roots: Iterable[torch.fx.Node],
    expand: Callable[[torch.fx.Node], Iterable[torch.fx.Node]],
) -> set[torch.fx.Node]:
    """Nodes reachable from ``roots`` through ``expand`` (their inputs that matter)."""
    seen: set[torch.fx.Node] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(expand(node))
    return seen


def ordered(graph: torch.fx.Graph, nodes: set[torch.fx.Node]) -> list[torch.fx.Node]:
    """``nodes`` in graph order."""
    return [n for n in graph.nodes if n in nodes]


def sorted_inputs(inputs: Iterable[GraphInput]) -> list[GraphInput]:
    """Section inputs ordered parameters, buffers, inputs, labels (stable), one per symbol."""
    unique: dict[str, GraphInput] = {}
    for i in inputs:
        unique.setdefault(i.name, i)
    return sorted(unique.values(), key=lambda i: ROLE_ORDER.get(i.role, 9))
