"""torch's values for rdu-test: the whole step in eager torch, and every section on its own inputs.

rdu-test may import the compiler (the runtime may not): the joint forward+backward graph that
``rdu-compile`` lowered is traced again here (``compiler.frontend``; the same model, arguments
and batch size give the same graph and node names) and run in torch, node by node, so that every
DRAM tensor of a training step has a torch value under its PEF name:

- ``loss``, ``output.<i>``, updated ``<buffer>`` and the activations ``saved.<node>`` the
  backward reads: the forward nodes of those names;
- ``<param>.grad``: the graph's gradient outputs (the loss's tangent is 1, as the backward
  section's);
- parameters and optimizer state after the step: torch's own optimizer (``optimizer()`` of
  model.py) applied to given gradients.

Random ops draw the fabric's numbers (``tools/fabric_random.py``): a graph node by the stream the
compiler gave it, an eager run by the order of its draws.

:func:`section_cases` is the per-section runner: for each kind of section (``forward``,
``backward``, ``optimizer``; a kind cut into pieces ``forward.0``, ``forward.1``... runs its pieces
in order, spills staying inside) the DRAM inputs torch gives it and torch's values of its results.
Running a case on the fabric measures the error a section makes on its own, no section amplifying
another's rounding::

    run = Run(model_path, extra, debug=False, pef_path=pef, seed=0, ...)  # tools.rdu_run.Run
    state, step = run.initial_state()
    inputs, targets = next(iter(run.batches("train", 0)))
    cases = section_cases(run, state, step, run.batch(inputs, targets), run.hyperparameters(), 0)
    for case in cases:   # forward, backward, optimizer
        fabric_values = case.run(Fabric(run.program))   # {symbol: array}, like case.expected
        # judge each with tools.tolerance.compare (case.scales: forward values' scales)

A case's ``inputs`` are plain DRAM arrays, so a tool that localises an error (the first unit
that diverges) can run the case's sections unit by unit on them.
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch.fx.node import map_aggregate, map_arg

from runtime.fabric import Fabric
from runtime.pef.schema import Program, Symbol
from runtime.session import conform, rng_seed_value
from tools.cli import ToolError
from tools.fabric_random import Draw, FabricRandomMode, RandomMismatch, random_op, stream_key
from tools.tolerance import DEFAULT_TOLERANCES, NO_ERROR, TorchError, float_error

OPTIMIZER_STATE_KEYS = ("momentum_buffer", "exp_avg", "exp_avg_sq")
"""torch's per-parameter optimizer state keys the PEF names ``<param>.<key>``."""

EXPECTED_ROLES = {
    "forward": ("loss", "output", "activation", "buffer"),
    "backward": ("gradient",),
    "optimizer": ("parameter", "optimizer_state"),
}
"""The results of each kind of section that torch has values of (spills are internal)."""


@dataclass
class SectionCase:
    """One kind of section on torch's values: ``inputs`` are the DRAM tensors its sections read
    (and no earlier piece of the kind writes), ``expected`` torch's values of its results."""

    kind: str
    sections: list[str]
    inputs: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    scales: dict[str, float] = field(default_factory=dict)
    """For forward values: the size of each one's operands in torch (the scale of the absolute
    part of its tolerance, ``tools.tolerance``); for a gradient that sums a gradient: its terms'
    size (:func:`summed_terms_size`, read by ``tolerance.cancelled``); other tensors: see
    ``tolerance.scale_of``."""
    errors: dict[str, TorchError] = field(default_factory=dict)
    """torch's own error of each expected tensor, ``max|torch - torch64|`` and the fraction of
    elements that differ: torch64 is the section's computation in float64 on the same inputs,
    rounded to bf16 where torch's value is bf16 (:func:`wide_call`, ``tools.tolerance``)."""

    def run(self, fabric: Fabric) -> dict[str, np.ndarray]:
        """The fabric's values of ``expected``'s tensors: the sections run in order on
        ``inputs``."""
        dram = dict(self.inputs)
        for name in self.sections:
            fabric.run_section(name, dram)
        return {name: dram[name] for name in self.expected}


@dataclass
class Joint:
    """The traced joint graph, with what the compiler made of it."""

    traced: Any  # compiler.frontend.trace.Traced
    streams: dict[torch.fx.Node, int]
    """Random node -> the stream the compiler gave it."""
    random_nodes: list[torch.fx.Node]
    """The forward's random nodes (training, p > 0) in graph order, with or without a stream."""
    buffers: dict[str, np.ndarray]
    """The traced model's buffers: they stand for those the PEF does not hold (non-persistent).
    (Not the model itself: at 0.5B parameters its weights were 2 GB held for nothing.)"""
    mutates: bool = False
    """Some op of the graph writes an operand in place (then the run copies its inputs)."""

    def draws(self, rng_seed: int) -> list[Draw]:
        """What an eager run's random draws must be, in order (``FabricRandomMode``)."""
        out = []
        for node in self.random_nodes:
            val = node.meta["val"]
            first = val[0] if isinstance(val, tuple | list) else val
            p = None
            if len(node.args) > 1 and node.target in (
                torch.ops.aten.native_dropout.default,  # p: the drop probability
                torch.ops.aten.bernoulli.p,  # p: the probability of a one (a keep)
            ):
                probability = node.args[1]
                assert isinstance(probability, float | int), probability
                p = float(probability)
            stream = self.streams.get(node)
            key = None if stream is None else stream_key(rng_seed, stream)
            out.append(Draw(node.name, node.target, tuple(first.shape), p, key))
        return out


def pef_precision(program: Any) -> str:
    """The precision a PEF was compiled in: its ``--precision=`` compile flag (none: fp32)."""
    return program.meta.precision()


def trace_joint(run: Any) -> Joint:
    """The joint graph of ``run``'s model as ``rdu-compile`` traced it (the PEF's batch size and
    the model's arguments), and the random streams the frontend gives its random nodes."""
    from compiler.frontend.build import GraphBuilder
    from compiler.frontend.errors import FrontendError
    from compiler.frontend.locations import Locator
    from compiler.frontend.sections import build_training
    from compiler.frontend.trace import loss_call_site, trace_training

    module = run.torch_model()
    spec = run.model_file.spec(module, run.args, inference=False)
    spec.precision = pef_precision(run.program)
    try:
        traced = trace_training(spec)
        gb = GraphBuilder(
            traced, Locator(spec.source_file, spec.module, spec.loss_fn, loss_call_site())
        )
        build_training(gb)
    except FrontendError as error:
        raise ToolError(f"tracing the model again for torch's reference failed: {error}") from error
    streams, random_nodes = _random_nodes(traced, gb)
    buffers = {n: as_numpy(b) for n, b in module.named_buffers()}
    mutates = any(
        n.op == "call_function"
        and isinstance(n.target, torch._ops.OpOverload)
        and n.target._schema.is_mutable
        for n in traced.graph.nodes
    )
    return Joint(traced, streams, random_nodes, buffers, mutates)


def _random_nodes(traced: Any, gb: Any) -> tuple[dict[torch.fx.Node, int], list[torch.fx.Node]]:
    """The stream the frontend (``gb``, a ``GraphBuilder`` that built ``traced``) gave each
    random node, and the forward's random nodes in graph order (``Joint``'s fields)."""
    from compiler.frontend.aten_transformer import needs_rng_seed
    from compiler.frontend.converter import op_name

    streams: dict[torch.fx.Node, int] = {}
    for node, drawn in gb.random_streams.items():
        if len(drawn) != 1:
            raise ToolError(f"internal: random node {node.name} draws {len(drawn)} streams")
        streams[node] = drawn[0]
    random_nodes = [
        n
        for n in traced.graph.nodes
        if n.op == "call_function"
        and not gb.is_backward(n)
        and needs_rng_seed(op_name(n.target), n.args)
    ]
    return streams, random_nodes


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A copy of ``t`` as a numpy array; a bfloat16 tensor as ``ml_dtypes.bfloat16`` (the same
    bits: numpy has no bfloat16 of its own, so ``Tensor.numpy`` refuses it)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        from runtime.dtypes import bf16

        return t.contiguous().view(torch.int16).numpy().view(bf16()).copy()
    return t.numpy().copy()


def as_torch(a: np.ndarray) -> torch.Tensor:
    """A torch tensor of a copy of ``a``; a bfloat16 array as ``torch.bfloat16``."""
    from runtime.dtypes import is_bf16

    a = np.array(a)
    if is_bf16(a.dtype):
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _shared(a: np.ndarray) -> torch.Tensor:
    """``a`` as a torch tensor sharing its memory (a read-only or bfloat16 one: a copy)."""
    a = np.asarray(a)
    if not a.flags.writeable or not a.flags.c_contiguous or a.dtype.kind not in "fiub":
        return as_torch(a)
    return torch.from_numpy(a)


def widen(value: Any) -> Any:
    """``value`` with float32 tensors as float64 and ``torch.float32`` (a ``dtype`` argument) as
    ``torch.float64``, through tuples and lists: the float64 reference. Other dtypes (integer
    indices, bool masks, a model's own half precision) are left as they are."""

    def one(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and v.dtype == torch.float32:
            return v.to(torch.float64)
        return torch.float64 if v is torch.float32 else v

    return map_aggregate(value, one)


def wide_call(node: torch.fx.Node, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, the op of ``node``, as the wide reference computes it: in
    float64 (float32 and bfloat16 operands and ``dtype`` arguments as float64), then, where
    torch's value is bfloat16 (the traced ``node.meta["val"]``), rounded to bfloat16 as
    :func:`round_legitimately` does, with the op's float32 error measured by running it once
    more in float32. Other float results stay float64.

    On a float32 graph this is :func:`widen` of everything. On a bf16-mixed graph it is another
    legitimate bf16 evaluation: every value rounded where torch rounds, each op accurate to
    torch's float32 accumulation but rounding to the other neighbour wherever an error that size
    could (``tools.tolerance``: torch's distance from it is its own sensitivity to bf16
    rounding). Its bf16 values stay bf16 (no float64 copy of a bf16 activation outlives the op
    that reads it)."""
    meta = node.meta.get("val")
    result = fn(*map_aggregate(args, _as_float64), **map_aggregate(kwargs, _as_float64))
    if not _any_bf16(meta):
        return widen(result)
    if node.target is torch.ops.aten._to_copy.default:  # no arithmetic to run in float32
        return _round_as_traced(result, None, meta, _cast_band(node, args))
    approx = fn(*map_aggregate(args, _as_float32), **map_aggregate(kwargs, _as_float32))
    return _round_as_traced(result, approx, meta)


def _cast_band(node: torch.fx.Node, args: Any) -> float:
    """The float32 error of what a cast to bf16 rounds, when that is a float32 value torch
    computed (a norm's output, a per-channel statistic): about two float32 units at its scale
    (the float32 rule's ``atol``, ``tools.tolerance``), which the cast's own float32 run cannot
    show (it starts from the exact value). 0 for a cast of a graph input (a float32 weight is
    exact) or of a bf16 value."""
    source = node.args[0] if node.args else None
    value = args[0] if isinstance(args, tuple | list) and args else None
    if (
        not isinstance(source, torch.fx.Node)
        or source.op != "call_function"
        or not isinstance(value, torch.Tensor)
        or value.dtype != torch.float64  # torch's float32 value, in the wide run
        or value.numel() == 0
    ):
        return 0.0
    finite = value.abs().nan_to_num_(0.0, 0.0, 0.0)
    return DEFAULT_TOLERANCES["float32"].atol * float(finite.max())


def _as_float64(v: Any) -> Any:
    if isinstance(v, torch.Tensor) and v.dtype in (torch.float32, torch.bfloat16):
        return v.to(torch.float64)
    return torch.float64 if v is torch.float32 or v is torch.bfloat16 else v


def _as_float32(v: Any) -> Any:
    if isinstance(v, torch.Tensor) and v.dtype == torch.bfloat16:
        return v.to(torch.float32)
    return torch.float32 if v is torch.bfloat16 else v


def _any_bf16(meta: Any) -> bool:
    if isinstance(meta, tuple | list):
        return any(_any_bf16(m) for m in meta)
    return isinstance(meta, torch.Tensor) and meta.dtype == torch.bfloat16


def _round_as_traced(exact: Any, approx: Any, meta: Any, floor: float = 0.0) -> Any:
    """``exact`` (a float64 result, or a tuple of them) rounded to bfloat16 by
    :func:`round_legitimately` where ``meta`` (the traced value) is bfloat16, ``approx`` its
    float32 evaluation, ``floor`` the least band; other float values as :func:`widen` leaves
    them."""
    if isinstance(exact, tuple | list) and isinstance(meta, tuple | list):
        if len(exact) == len(meta):
            return type(exact)(
                _round_as_traced(e, a, m, floor)
                for e, a, m in zip(exact, approx, meta, strict=True)
            )
    if (
        isinstance(exact, torch.Tensor)
        and isinstance(meta, torch.Tensor)
        and meta.dtype == torch.bfloat16
        and exact.is_floating_point()
    ):
        return round_legitimately(exact, approx, floor)
    return widen(exact)


def round_legitimately(
    exact: torch.Tensor, approx: torch.Tensor | None, floor: float = 0.0
) -> torch.Tensor:
    """``exact`` (float64) rounded to bfloat16, each element to its nearest bf16 number unless
    it lies within ``band = max(max|approx - exact|, floor)`` (the op's float32 error,
    ``approx`` its float32 evaluation, None for a cast; ``floor``: the error of a float32
    value it rounds) of
    the halfway point between two: those go to the other neighbour.

    torch's bf16 value of the op is its float32 result rounded to nearest, and a float32
    result that close to a halfway point may round either way: another correct kernel (the
    fabric's, summing in another order) may round any of them the other way, and a later op
    (a convolution reading them, a batch norm's statistics) amplifies those flips. Flipping all
    of them is the furthest an evaluation as accurate as torch's may go from it."""
    nearest = exact.to(torch.bfloat16)
    band = floor
    if approx is not None and approx.numel():
        error = approx.to(torch.float64).sub_(exact).abs_().nan_to_num_(0.0, 0.0, 0.0)
        band = max(band, float(error.max()))  # in place: an activation's float64 copy, once
        del error
    if band == 0:
        return nearest
    near = nearest.to(torch.float64)
    toward = torch.where(exact > near, torch.inf, -torch.inf).to(torch.bfloat16)
    other = torch.nextafter(nearest, toward)
    halfway = (near + other.to(torch.float64)) / 2
    flip = (exact != near) & ((exact - halfway).abs() < band)
    flip &= torch.isfinite(exact) & torch.isfinite(other)
    return torch.where(flip, other, nearest)


def inference_draws(run: Any, rng_seed: int) -> list[Draw] | None:
    """The random draws of ``run``'s inference forward (a model that draws in eval mode:
    ViTMAE's masking noise), with the streams the frontend gives them, or None when the PEF
    reads no ``rng_seed`` (no random op)."""
    from compiler.frontend.build import GraphBuilder
    from compiler.frontend.errors import FrontendError
    from compiler.frontend.locations import Locator
    from compiler.frontend.sections import build_inference
    from compiler.frontend.trace import trace_inference

    program = run.program
    names = {program.meta.symbols[i].name for s in program.sections for i in s.inputs}
    if "rng_seed" not in names:
        return None
    try:
        spec = run.model_file.spec(run.torch_model(), run.args, inference=True)
        spec.precision = pef_precision(program)
        traced = trace_inference(spec)
        gb = GraphBuilder(traced, Locator(spec.source_file, spec.module))
        build_inference(gb)
    except FrontendError as error:
        raise ToolError(f"tracing the model again for torch's reference failed: {error}") from error
    return Joint(traced, *_random_nodes(traced, gb), {}).draws(rng_seed)


def trace_inference_graph(run: Any) -> Any:
    """The forward graph of ``run``'s model as ``rdu-compile --inference`` traced it (a
    ``compiler.frontend.trace.Traced``; under autocast for a bf16-mixed PEF)."""
    from compiler.frontend.trace import trace_inference

    spec = run.model_file.spec(run.torch_model(), run.args, inference=True)
    spec.precision = pef_precision(run.program)
    return trace_inference(spec)


def run_inference_graph(
    traced: Any, inputs: Mapping[str, Any], wide: bool = False
) -> dict[torch.fx.Node, Any]:
    """Every node's value of an inference graph (:func:`trace_inference_graph`: no tangent, no
    random op) run on ``inputs`` (by DRAM symbol); ``wide``: the wide reference
    (:func:`widen`, :func:`wide_call`)."""
    cast = widen if wide else (lambda v: v)
    bound = {i.node: i.name for i in traced.inputs}
    env: dict[torch.fx.Node, Any] = {}
    with torch.no_grad():
        for node in traced.graph.nodes:
            if node.op == "placeholder":
                if node in bound and not node.users and bound[node] not in inputs:
                    continue  # a buffer the graph does not read, and the PEF has not
                if node in bound:
                    env[node] = cast(as_torch(inputs[bound[node]]))
                else:
                    env[node] = cast(traced.constants[node.name])
            elif node.op == "get_attr":
                env[node] = cast(traced.constants[node.name])
            elif node.op == "call_function":
                args = map_arg(node.args, env.__getitem__)
                kwargs = map_arg(node.kwargs, env.__getitem__)
                fn: Callable[..., Any] = node.target  # type: ignore[assignment]
                env[node] = wide_call(node, fn, args, kwargs) if wide else fn(*args, **kwargs)
    return env


def run_joint(
    joint: Joint,
    feed: Mapping[str, np.ndarray],
    rng_seed: int,
    *,
    wide: bool = False,
    pinned: Mapping[torch.fx.Node, Any] | None = None,
    keep: Collection[torch.fx.Node] | None = None,
) -> dict[torch.fx.Node, Any]:
    """Every node's value in torch: placeholders from ``feed`` (DRAM names), the loss's tangent
    1, random nodes from their fabric streams, every other node its ATen op on the CPU.

    ``wide``: the float64 reference (:func:`widen` applied to every input and constant, each op
    by :func:`wide_call`: in float64, bf16 results rounded legitimately; the random numbers are
    the same). ``pinned``: nodes whose value is given, not
    computed (the backward's float64 run on the float32 activations it reads). ``keep``: the
    nodes whose values the caller reads; every other value is dropped once its last reader has
    run (at 0.5B parameters, keeping every intermediate of the step took more memory than the
    machine has), and only these are in the result. None: every node's value."""
    traced = joint.traced
    by_node = {gi.node: gi.name for gi in traced.inputs}
    feed = {**joint.buffers, **feed}
    # The graph's inputs as they are, without copies, unless an op writes one in place; in the
    # float64 run they are widened where they are read (each op's arguments), so no float64
    # copy of every parameter lives through the whole run (4 GB at 0.5B parameters).
    load = as_torch if joint.mutates else _shared
    env: dict[torch.fx.Node, Any] = {}
    cast = widen if wide else (lambda v: v)
    last_reader: dict[torch.fx.Node, torch.fx.Node] = {}
    for node in traced.graph.nodes:
        for a in node.all_input_nodes:
            last_reader[a] = node
    done_with: dict[torch.fx.Node, list[torch.fx.Node]] = {}
    if keep is not None:
        for a, reader in last_reader.items():
            if a not in keep:
                done_with.setdefault(reader, []).append(a)

    def value(a: Any) -> Any:
        return map_arg(a, env.__getitem__)

    with torch.no_grad():
        for node in traced.graph.nodes:
            if keep is not None and node not in keep and node not in last_reader:
                continue  # read by nothing and not asked for (graph outputs, unused results)
            if pinned is not None and node in pinned:
                env[node] = cast(_as_traced(pinned[node], node))
            elif node.op == "placeholder":
                if node in traced.tangents:
                    val = node.meta["val"]
                    env[node] = cast(torch.ones(val.shape, dtype=val.dtype))
                elif node.name in traced.constants:
                    env[node] = cast(traced.constants[node.name])
                else:
                    name = by_node[node]
                    if name not in feed:
                        raise ToolError(f"internal: no value for the graph input {name}")
                    env[node] = load(feed[name])
            elif node.op == "get_attr":
                env[node] = cast(traced.constants[node.name])
            elif node.op == "call_function":
                args, kwargs = value(node.args), value(node.kwargs)
                fn: Callable[..., Any] = node.target  # type: ignore[assignment]
                if node in joint.streams:
                    key = stream_key(rng_seed, joint.streams[node])
                    fn = functools.partial(_random, node.target, key)
                env[node] = wide_call(node, fn, args, kwargs) if wide else fn(*args, **kwargs)
                del args, kwargs
            for a in done_with.get(node, ()):
                env.pop(a, None)
    return env


def _random(target: Any, key: int, *args: Any, **options: Any) -> Any:
    """Random op ``target`` on ``args``, drawing the fabric's numbers of ``key``. Its keyword
    arguments (``dtype``, ``device``, ``layout`` of a ``rand``: Swin's drop path) are the traced
    call's; the numbers are the fabric's (``tools.fabric_random``), whatever the run's width
    (``uniform``'s bounds and ``exponential``'s rate are read from them)."""
    return random_op(target, args, key, options)


def _as_traced(value: Any, node: torch.fx.Node) -> Any:
    """``value`` with the strides the traced graph gave ``node`` (a value from DRAM is
    row-major; a saved ``permute`` that the graph later permutes back and ``view``s must keep
    its own layout, or the ``view`` fails)."""
    meta = node.meta.get("val")
    if not isinstance(value, torch.Tensor) or not isinstance(meta, torch.Tensor):
        return value
    if tuple(meta.shape) != tuple(value.shape) or meta.stride() == value.stride():
        return value
    if 0 in meta.stride():  # an expanded view: its elements share memory, only a view has it
        return value
    return torch.empty_strided(value.shape, meta.stride(), dtype=value.dtype).copy_(value)


class OwnError:
    """torch's own float32 error of a traced value computed from given ones: the FX nodes from
    the ``given`` values (and the graph's inputs, constants and random nodes) to the value, run
    again in float64 on torch's float32 values of those (``env``), as a unit of the divergence
    search computes it on torch's values of its inputs. When a unit reads a value torch has
    none for (the fabric's own, e.g. a spilled intermediate inside an op), or the value is more
    than :attr:`LIMIT` nodes from what is given, its error is the whole run's (``whole``: by node
    name, ``max|torch - torch64|`` of the whole step in float64): the unit's input then carries
    the fabric's upstream rounding, as torch's value carries torch's."""

    LIMIT = 256

    def __init__(
        self,
        graph: torch.fx.Graph,
        env: Mapping[torch.fx.Node, Any],
        random: frozenset,
        whole: Mapping[str, TorchError],
    ) -> None:
        self.env = env
        self.random = random
        self.whole = whole
        self.by_name = {n.name: n for n in graph.nodes}
        self.order = {n: i for i, n in enumerate(graph.nodes)}

    def __call__(self, name: str, given: set[str]) -> TorchError:
        node = self.by_name.get(name)
        value = self.env.get(node) if node is not None else None
        if not isinstance(value, torch.Tensor):
            return NO_ERROR
        assert node is not None  # value, a tensor, is the value of a node
        chain = self._chain(node, given)
        if chain is None or any(g not in self.by_name for g in given):
            return self.whole.get(name, NO_ERROR)
        wide: dict[torch.fx.Node, Any] = {}

        def operand(a: torch.fx.Node) -> Any:
            return wide[a] if a in wide else self.env[a]

        with torch.no_grad():
            for n in sorted(chain, key=self.order.__getitem__):
                # As run_joint's float64 run computes it (wide_call: float64 operands and dtype
                # arguments, bf16 results rounded once).
                assert callable(n.target), n.target  # call_function nodes
                args, kwargs = map_arg(n.args, operand), map_arg(n.kwargs, operand)
                wide[n] = wide_call(n, n.target, args, kwargs)
        result = wide[node]
        if not isinstance(result, torch.Tensor):
            return NO_ERROR
        return float_error(as_numpy(value), as_numpy(result))

    def _chain(self, node: torch.fx.Node, given: set[str]) -> set[torch.fx.Node] | None:
        """The nodes between ``given`` and ``node`` (``node`` included); None past LIMIT."""
        chain: set[torch.fx.Node] = set()
        todo = [node]
        while todo:
            n = todo.pop()
            if n in chain:
                continue
            chain.add(n)
            if len(chain) > self.LIMIT:
                return None
            for a in n.all_input_nodes:
                stop = a.op != "call_function" or a.name in given or a in self.random
                if not stop:
                    todo.append(a)
        return chain


def _largest(value: Any) -> float:
    """The largest finite magnitude of a float tensor with at least one dimension, else 0 (a
    0-d operand is a constant or a scalar: a fill value such as -1e9 is no size of the data)."""
    if not isinstance(value, torch.Tensor) or value.ndim == 0 or not value.is_floating_point():
        return 0.0
    v = value.detach().abs()
    v = v[torch.isfinite(v)]
    return float(v.max()) if v.numel() else 0.0


_CANCELLING = frozenset(
    {
        "aten.add.Tensor",
        "aten.sub.Tensor",
        "aten.mul.Tensor",
        "aten.div.Tensor",
        "aten.neg.default",
        "aten.sum.dim_IntList",
        "aten.mean.dim",
        "aten.select.int",
        "aten.slice.Tensor",
    }
)
"""Ops whose result may be far smaller than what it is computed from, without being known any
better (sums that cancel, and the scalings and views on the way to a compared tensor): their
operands' sizes are followed further back by :func:`operand_size`."""


def operand_size(
    node: torch.fx.Node, env: Mapping[torch.fx.Node, Any], memo: dict | None = None
) -> float:
    """The size of what ``node`` computes from: the largest magnitude among itself and its
    tensor operands, following back through views, element picks and the ops of
    :data:`_CANCELLING` (a batch norm's running mean is ``0.9 * rm + 0.1 * squeeze(mean)``, a
    mean of numbers that cancel: known to their rounding, not to its own size)."""
    from compiler.frontend.aten import IDENTITY_OPS, VIEW_OPS
    from compiler.frontend.converter import op_name

    memo = {} if memo is None else memo
    if node in memo:
        return memo[node]
    memo[node] = _largest(env.get(node))  # cycles cannot happen; this guards re-entry
    source = node
    if node.target is operator.getitem and isinstance(node.args[0], torch.fx.Node):
        source = node.args[0]  # an element of a tuple result: the op's operands
    sizes = [memo[node]]
    for a in source.all_input_nodes:
        value = env.get(a)
        follow = a.op == "call_function" and (
            a.target is operator.getitem
            or op_name(a.target) in VIEW_OPS | IDENTITY_OPS | _CANCELLING
        )
        if follow:
            sizes.append(operand_size(a, env, memo))
        elif isinstance(value, tuple | list):
            sizes += [_largest(v) for v in value]
        else:
            sizes.append(_largest(value))
    memo[node] = max(sizes)
    return memo[node]


def carries_gradient(traced: Any) -> set[torch.fx.Node]:
    """The nodes of a joint graph whose value depends on the loss's tangent: the backward's
    gradients, not the forward's values it reads."""
    carrying: set[torch.fx.Node] = set(traced.tangents)
    for node in traced.graph.nodes:  # in topological order
        if any(a in carrying for a in node.all_input_nodes):
            carrying.add(node)
    return carrying


def summed_terms_size(
    node: torch.fx.Node, env: Mapping[torch.fx.Node, Any], carrying: Collection[torch.fx.Node]
) -> float:
    """For a gradient that sums a gradient (``aten.sum.dim_IntList`` of a node that carries
    the loss's tangent, through views: a bias's gradient, the sum of its output's over the
    batch), the largest sum of its terms' magnitudes, ``max sum|g|``; else 0. A sum is known
    to float32's spacing at that size however far it cancels: a batch norm's bias gradient
    where a batch norm in training follows is the sum of terms that cancel to rounding noise
    (to exactly 0 in torch, when the batch's two samples' gradients are exact negatives)."""
    from compiler.frontend.aten import IDENTITY_OPS, VIEW_OPS
    from compiler.frontend.converter import op_name

    while node.op == "call_function" and op_name(node.target) in VIEW_OPS | IDENTITY_OPS:
        node = node.all_input_nodes[0]
    if node.op != "call_function" or op_name(node.target) != "aten.sum.dim_IntList":
        return 0.0
    terms = node.args[0]
    if not isinstance(terms, torch.fx.Node) or terms not in carrying:
        return 0.0
    value = env.get(terms)
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        return 0.0
    dims = node.args[1] if len(node.args) > 1 and node.args[1] is not None else None
    magnitudes = value.detach().abs()
    total = magnitudes.sum() if dims is None else magnitudes.sum(dim=list(cast(list[int], dims)))
    return _largest(total.reshape(-1))


def _dram_nodes(joint: Joint, program: Program, scales: bool) -> set[torch.fx.Node]:
    """The nodes whose values :func:`_dram_values` reads: the graph's outputs and gradient terms,
    the ``saved.*`` activations, and (``scales``) what :func:`operand_size` reads from them."""
    from compiler.frontend.aten import IDENTITY_OPS, VIEW_OPS
    from compiler.frontend.converter import op_name

    by_name = {n.name: n for n in joint.traced.graph.nodes}
    values: set[torch.fx.Node] = set()
    for o in joint.traced.outputs:
        if o.node is not None:
            values.add(o.node)
            values.update(o.more if o.role == "gradient" else ())
    for sym in program.meta.symbols:
        node = by_name.get(sym.name.removeprefix("saved."))
        if sym.role == "activation" and node is not None:
            values.add(node)
    if not scales:
        return values
    out = set(values)
    todo = [n for n in values if n.op == "call_function"]
    seen: set[torch.fx.Node] = set()
    while todo:  # operand_size's walk, without the values
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        out.add(node)
        source = node
        if node.target is operator.getitem and isinstance(node.args[0], torch.fx.Node):
            source = node.args[0]
        for a in source.all_input_nodes:
            out.add(a)
            if a.op == "call_function" and (
                a.target is operator.getitem
                or op_name(a.target) in VIEW_OPS | IDENTITY_OPS | _CANCELLING
            ):
                todo.append(a)
    return out


def joint_values(
    joint: Joint, program: Program, feed: Mapping[str, np.ndarray], rng_seed: int
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """torch's values of the step's DRAM tensors that the joint graph computes, by PEF name:
    loss, outputs, updated buffers, ``saved.*`` activations, gradients; and the size of each
    forward value's operands (:func:`operand_size`: the scale ``tools.tolerance`` judges it by)
    and of a summed gradient's terms (:func:`summed_terms_size`)."""
    env = run_joint(joint, feed, rng_seed, keep=_dram_nodes(joint, program, scales=True))
    scales: dict[str, float] = {}
    out = _dram_values(joint, program, env, scales)
    return out, scales


def float64_values(
    joint: Joint,
    program: Program,
    feed: Mapping[str, np.ndarray],
    rng_seed: int,
    pinned: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """:func:`joint_values`'s tensors from the joint graph run in float64 (float32 inputs,
    parameters, state and ``dtype`` arguments as float64; the fabric's random numbers):
    the exact values torch's float32 ones are rounding of (in a bf16-mixed step, the values
    torch holds in bf16 rounded where it rounds: :func:`wide_call`). ``pinned``: ``saved.*``
    activations (PEF names) whose value is given (the backward's run on the float32 activations
    it reads)."""
    by_name = {n.name: n for n in joint.traced.graph.nodes}
    nodes = {}
    for name, value in (pinned or {}).items():
        node = by_name.get(name.removeprefix("saved."))
        if node is not None:
            nodes[node] = as_torch(value)
    keep = _dram_nodes(joint, program, scales=False)
    env = run_joint(joint, feed, rng_seed, wide=True, pinned=nodes, keep=keep)
    return _dram_values(joint, program, env, None)


def _dram_values(
    joint: Joint,
    program: Program,
    env: Mapping[torch.fx.Node, Any],
    scales: dict[str, float] | None,
) -> dict[str, np.ndarray]:
    """The DRAM tensors of a run of the joint graph, by PEF name (``scales``, if given: filled
    with each forward value's operand size and each summed gradient's terms' size)."""
    by_name = {n.name: n for n in joint.traced.graph.nodes}
    out: dict[str, np.ndarray] = {}
    memo: dict[torch.fx.Node, float] = {}
    carrying: set[torch.fx.Node] = set()  # carries_gradient's, once a gradient needs it
    storages: set[int] = set()

    def own(tensor: torch.Tensor) -> np.ndarray:
        """``tensor`` as an array of its own: shared with the run's value (the caller drops the
        run) unless another result already holds that memory (a bfloat16 one: a copy, as
        ``ml_dtypes.bfloat16``)."""
        ptr = tensor.untyped_storage().data_ptr()
        if tensor.dtype == torch.bfloat16 or ptr in storages or not tensor.is_contiguous():
            return as_numpy(tensor)
        storages.add(ptr)
        return tensor.detach().numpy()

    def array(node: torch.fx.Node) -> np.ndarray:
        if node.op == "call_function" and scales is not None:
            scales[name] = operand_size(node, env, memo)
        return own(env[node])

    for o in joint.traced.outputs:
        name = o.name
        if o.role == "gradient":
            if o.node is None:
                if o.like is None:
                    continue
                out[o.name] = np.zeros(tuple(o.like.meta["val"].shape), np.float32)
                continue
            total = env[o.node]
            for term in o.more:
                total = total + env[term]
            out[o.name] = own(total)
            if scales is not None:
                carrying = carrying or carries_gradient(joint.traced)
                size = sum(summed_terms_size(t, env, carrying) for t in [o.node, *o.more])
                if size:  # a sum of a gradient: its terms' size (``tolerance.cancelled``)
                    scales[o.name] = size
        else:
            out[o.name] = array(o.node)
    for sym in program.meta.symbols:
        if sym.role != "activation":
            continue
        name = sym.name
        node = by_name.get(sym.name.removeprefix("saved."))
        if node is None:
            raise ToolError(
                f"the PEF's {sym.name} is no node of the model's graph traced again (was the PEF "
                "compiled from this model file with these arguments?)"
            )
        out[sym.name] = array(node)
    return out


def load_weights(model: torch.nn.Module, state: Mapping[str, np.ndarray]) -> None:
    """Copy the parameters and buffers of ``state`` (DRAM names) into ``model``."""
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if name in state:
                tensor.copy_(as_torch(np.asarray(state[name])))


def torch_optimizer(run: Any, model: torch.nn.Module, hyper: Mapping[str, float]):
    """model.py's optimizer (SGD at lr 0.01 without one) with the run's hyperparameters."""
    optimizer = run.torch_optimizer(model)
    for group in optimizer.param_groups:
        for key in ("lr", "momentum", "weight_decay"):
            if key in group and key in hyper:
                group[key] = hyper[key]
    return optimizer


def optimizer_step(
    run: Any,
    state: Mapping[str, np.ndarray],
    step: int,
    gradients: Mapping[str, np.ndarray],
    hyper: Mapping[str, float],
    *,
    wide: bool = False,
) -> dict[str, np.ndarray]:
    """Parameters and optimizer state (DRAM names) after torch's optimizer takes step ``step + 1``
    from ``state`` with ``gradients``; ``wide``: in float64 (the same inputs, widened; torch's
    default dtype float64: :func:`float64_default`)."""
    from runtime.checkpoint import optimizer_to_torch

    model = run.torch_model()
    if wide:
        model = model.double()
    load_weights(model, state)
    for name, p in model.named_parameters():
        grad = gradients.get(f"{name}.grad")
        # a copy of its own (an optimizer may write its gradient), made at the model's dtype
        p.grad = None if grad is None else torch.from_numpy(np.asarray(grad)).to(p.dtype, copy=True)
    with float64_default() if wide else contextlib.nullcontext():  # the optimizer's own tensors
        optimizer = torch_optimizer(run, model, hyper)
        names = [name for name, _ in model.named_parameters()]
        kind = run.program.meta.optimizer
        if step > 0 and kind != "none":
            optimizer.load_state_dict(optimizer_to_torch(state, names, kind, hyper, step))
        optimizer.step()
    out: dict[str, np.ndarray] = {}
    for name, p in model.named_parameters():  # the model is dropped: its memory, no copies
        p.grad = None
        out[name] = p.detach().numpy()
        for key, value in optimizer.state.get(p, {}).items():
            if key in OPTIMIZER_STATE_KEYS:
                out[f"{name}.{key}"] = value.detach().numpy()
    return out


def step_hyperparameters(hyper: Mapping[str, float], step: int) -> dict[str, float]:
    """The optimizer section's scalar inputs for step ``step + 1``: the run's hyperparameters and
    AdamW's bias corrections as torch computes them."""
    from runtime.session import adamw_coefficients

    out = dict(hyper)
    if "beta1" in hyper and "beta2" in hyper:
        out.update(adamw_coefficients(float(hyper["beta1"]), float(hyper["beta2"]), step + 1))
    return out


def section_cases(
    run: Any,
    state: Mapping[str, np.ndarray],
    step: int,
    feed: Mapping[str, np.ndarray],
    hyper: Mapping[str, float],
    seed: int,
    joint: Joint | None = None,
    wide: Mapping[str, np.ndarray] | None = None,
) -> list[SectionCase]:
    """Every kind of section of ``run.program`` with torch's values of its inputs and results.

    ``state``: parameters, buffers and optimizer state before the step (DRAM names); ``step``:
    the steps taken before; ``feed``: the batch (``input.<i>``, ``target.<i>``); ``hyper``: the
    run's hyperparameters; ``seed``: the run's seed (dropout). The forward runs on the batch and
    the state; the backward on torch's ``saved.*`` activations (and the state and batch); the
    optimizer on torch's gradients, the state, the hyperparameters and the bias corrections.
    An inference PEF has one case, the forward on the batch, against the model in eval mode.

    Each case's ``errors`` is torch's own float32 error of its results, each section run again
    in float64 on its inputs: the forward on the batch and state (``wide``: that run's values,
    :func:`float64_values`, if already computed), the backward on torch's float32 ``saved.*``
    activations (so the forward's error carried into them is not counted twice: the fabric's
    backward reads the same float32 activations), the optimizer on torch's float32 gradients.
    """
    program = run.program
    symbols = {s.name: s for s in program.meta.symbols}
    values: dict[str, np.ndarray] = {**state, **feed}
    scales: dict[str, float] = {}
    errors: dict[str, TorchError] = {}  # torch's own error of each value, once its float64 is read
    if run.is_inference:
        model = run.torch_model()
        load_weights(model, state)
        model.eval()
        inputs = [as_torch(feed[n]) for n in run.inputs]
        from compiler.frontend.trace import precision_context

        precision = pef_precision(run.program)
        if precision == "bf16":  # torch's bf16 inference: the model and its float inputs in bf16
            model.to(torch.bfloat16)
            inputs = [x.to(torch.bfloat16) if x.is_floating_point() else x for x in inputs]
        rng_seed = rng_seed_value(seed, step)
        draws = inference_draws(run, rng_seed)  # a model drawing in eval mode: the fabric's
        if draws is not None:
            values["rng_seed"] = np.asarray(rng_seed, dtype=np.int64)

        @contextlib.contextmanager
        def drawn() -> Iterator[None]:  # the fabric's numbers, every one drawn
            if draws is None:
                yield
                return
            mode = FabricRandomMode(draws)
            try:
                with mode:
                    yield
                mode.check_done()
            except RandomMismatch as error:
                raise ToolError(
                    f"torch's random draws cannot be matched to the fabric's: {error}"
                ) from error

        with torch.no_grad(), reference_attention():
            with precision_context(precision), drawn():  # bf16-mixed: under autocast, as compiled
                outputs = as_tuple(model(*inputs))
            wide_outputs = ()
            traced_wide = precision == "bf16-mixed"  # autocast's graph, rounded where torch does
            if precision == "fp32":
                try:
                    # as if written for float64: its new tensors too
                    with float64_default(), drawn():
                        wide_outputs = as_tuple(model.double()(*widen(inputs)))
                except RuntimeError:  # a kernel without float64 (transformers' grouped_mm)
                    traced_wide = True
            if traced_wide and draws is not None:  # the graph's random nodes draw torch's
                traced_wide, wide_outputs = False, ()  # torch's own error then unknown (0)
            if traced_wide:  # the graph compiled, in float64
                traced = trace_inference_graph(run)
                env = run_inference_graph(traced, {**state, **feed}, wide=True)
                wide_outputs = tuple(env[o.node] for o in traced.outputs)
                del env
        values.update({f"output.{i}": as_numpy(o) for i, o in enumerate(outputs)})
        for i, o in enumerate(wide_outputs):
            errors[f"output.{i}"] = float_error(values[f"output.{i}"], as_numpy(o))
    else:
        rng_seed = rng_seed_value(seed, step)
        values["rng_seed"] = np.asarray(rng_seed, dtype=np.int64)
        joint = joint or trace_joint(run)
        start = dict(values)
        computed, scales = joint_values(joint, program, start, rng_seed)
        values.update(computed)
        scalars = step_hyperparameters(hyper, step)
        values.update({k: np.asarray(v, dtype=np.float32) for k, v in scalars.items()})
        grads = {
            n: v for n, v in values.items() if symbols.get(n) and symbols[n].role == "gradient"
        }
        values.update(optimizer_step(run, state, step, grads, hyper))
        # Every value is final now: each float64 run is read into ``errors`` and dropped at
        # once (at 0.5B parameters, holding the three runs' arrays together took 12 GB).
        # Gradients: the backward on torch's float32 activations; the rest: the whole step.
        gradient = {n for n in computed if n in symbols and symbols[n].role == "gradient"}
        if wide is None:
            wide = float64_values(joint, program, start, rng_seed)
        errors.update(
            {
                n: float_error(values[n], wide[n])
                for n in computed
                if n not in gradient and n in wide
            }
        )
        saved = {k: v for k, v in computed.items() if k.startswith("saved.")}
        backward = float64_values(joint, program, start, rng_seed, pinned=saved)
        errors.update({n: float_error(values[n], backward[n]) for n in gradient if n in backward})
        del backward
        exact = optimizer_step(run, state, step, grads, hyper, wide=True)
        errors.update({n: float_error(values[n], v) for n, v in exact.items() if n in values})
        del exact
        # the optimizer's inputs are the state before the step
        for name, value in state.items():
            values.setdefault(name, value)
    cases = _cases(program, symbols, values, state)
    for case in cases:
        case.scales = {k: v for k, v in scales.items() if k in case.expected}
        case.errors = {k: errors.get(k, NO_ERROR) for k in case.expected}
    return cases


def _cases(
    program: Program,
    symbols: dict[str, Symbol],
    values: Mapping[str, np.ndarray],
    state: Mapping[str, np.ndarray],
) -> list[SectionCase]:
    cases: list[SectionCase] = []
    by_kind: dict[str, list[Any]] = {}
    for section in program.sections:
        by_kind.setdefault(section.kind, []).append(section)
    for kind, sections in by_kind.items():
        written: set[str] = set()
        inputs: dict[str, np.ndarray] = {}
        expected: dict[str, np.ndarray] = {}
        for section in sections:
            for i in section.inputs:
                sym = program.meta.symbols[i]
                if sym.name in written or sym.name in inputs:
                    continue
                source = state if sym.role in ("parameter", "buffer", "optimizer_state") else values
                if sym.name not in source:
                    if sym.role == "optimizer_state":  # before torch's first step: zeros
                        inputs[sym.name] = np.zeros(sym.shape, np.float32)
                        continue
                    raise ToolError(
                        f"internal: no torch value for {sym.name}, an input of {section.name}"
                    )
                inputs[sym.name] = conform(sym, source[sym.name], sym.role)
            for out in section.outputs:
                sym = program.meta.symbols[out.symbol]
                written.add(sym.name)
                if sym.role in EXPECTED_ROLES.get(kind, ()) and sym.name in values:
                    expected[sym.name] = np.asarray(values[sym.name])
                elif sym.role in EXPECTED_ROLES.get(kind, ()):
                    raise ToolError(
                        f"internal: no torch value for {sym.name}, a result of {section.name}"
                    )
        cases.append(SectionCase(kind, [s.name for s in sections], inputs, expected))
    return cases


@contextlib.contextmanager
def float64_default() -> Iterator[None]:
    """torch's default dtype float64 for an eager float64 run of the model (restored after): a
    tensor the model makes without a dtype (``torch.full((), torch.finfo(x.dtype).min)``) is
    float64 too, as if the model were written for float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@contextlib.contextmanager
def reference_attention() -> Iterator[None]:
    """torch's math attention (what the compiler traces; the other kernels draw dropout their own
    way)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        yield


def as_tuple(outputs: Any) -> tuple:
    return tuple(outputs) if isinstance(outputs, tuple | list) else (outputs,)
