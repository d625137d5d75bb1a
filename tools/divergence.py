"""The first unit of a PEF that diverges from torch (what ``rdu-test`` prints on a mismatch).

    first divergence: forward unit 3 tanh_2 (add, tanh = aten.tanh 'tanh') on PCU (1,4)
        at model.py:12 (torch/nn/modules/activation.py:392): max abs 2.1e-03, max rel 1.0e-03

How a unit is judged (``first_divergence``):

- Each PCU of the PEF says which traced value its output PMU holds (``Pcu.value``, an FX node
  name, from the compiler's named locations: ``compiler/value_names.py``), or its output is
  stored to a DRAM symbol torch has a value for (the loss, a gradient, an updated parameter).
  torch's values come from running the compiler's own traced graph (the joint training graph,
  or the inference graph) with an FX interpreter on the same parameters and batch
  (``torch_values``).
- Sections and their units are visited in run (dataflow) order. A unit is run alone
  (``Fabric.run_unit``) on torch's values of its inputs: section inputs torch has a value for
  (parameters, the batch, saved activations, gradients) and the outputs of earlier units that
  hold a traced value; an input torch has no value for (an intermediate, such as the matmul
  inside an ``addmm``) is recomputed the same way by its unit. So a unit's error is its own
  (with those intermediates' since the last traced values): rounding upstream is not
  amplified, and a correct unit stays within float32 rounding of torch. Comparing every
  captured output with torch's instead would blame the first unit that amplifies an upstream
  error past the tolerance (a difference of nearly equal values), not the unit that made it.
- The first unit whose output is past the tolerance (``tolerance_judge``: rdu-test's rule,
  ``tools.tolerance``) is the divergence; the intermediates recomputed for it are listed (the
  fault may be there: torch has no value to tell them apart). A forward value's scale is its
  operands' size (``tools.reference.operand_size``: a batch norm's mean that cancels to 1e-9
  is known to its operands' rounding), and torch's own float32 error is the unit's
  (``tools.reference.OwnError``: the FX nodes from the traced values the unit reads to the one
  it holds, run in float64 on torch's float32 values of those), not the whole run's in
  float64: a unit is fed torch's float32 values of its inputs, so its error is its own ops'
  rounding (a batch norm's ``(x - mean) * rstd`` in one unit is as ill-conditioned in torch),
  and the whole run's error (upstream rounding amplified through the depth) would let a unit's
  own fault hide behind it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.fabric import DTYPES, Fabric
from runtime.pef.schema import Pcu, Program, Section, Symbol
from tools.tolerance import NO_ERROR, TorchError, float_error

_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


@dataclass(frozen=True)
class Divergence:
    """The first unit, in dataflow order, whose output differs from torch's value."""

    section: str
    unit: int  # the PCU's index in its section
    name: str  # the unit's (kernel's) name, ``<kind>_<i>``
    ops: tuple[str, ...]  # its opcodes, a reduction last (``reduce add``)
    value: str  # the traced value (FX node) or DRAM symbol its output holds
    op: str  # the ATen op of that FX node ("" for a symbol torch's graph does not name)
    at: tuple[int, int]  # the PCU's slot on the grid
    loc: str  # the user's line (``model.py:12``)
    library: str  # the innermost library frame of the node's stack trace ("" if none)
    max_abs: float
    max_rel: float
    upstream: tuple[str, ...] = ()  # units without a traced value recomputed for this one

    def as_dict(self) -> dict[str, Any]:
        """The fields, for ``rdu-test --json``."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        what = self.op.removesuffix(".default") if self.op else "symbol"
        where = self.loc + (f" ({self.library})" if self.library else "")
        text = (
            f"{self.section} unit {self.unit} {self.name} ({', '.join(self.ops)} = {what} "
            f"'{self.value}') on PCU ({self.at[0]},{self.at[1]}) at {where}: "
            f"max abs {self.max_abs:.1e}, max rel {self.max_rel:.1e}"
        )
        if self.upstream:
            text += f" (computed from units torch has no value for: {', '.join(self.upstream)})"
        return text


@dataclass
class Reference:
    """torch's side of one step, by name: what each section reads and each unit should hold."""

    inputs: dict[str, np.ndarray]
    """The DRAM a step starts from (state, batch, hyperparameters), the same on both sides."""
    values: dict[str, np.ndarray] = field(default_factory=dict)
    """torch's value of every traced value (FX node name)."""
    reads: dict[str, np.ndarray] = field(default_factory=dict)
    """torch's value of a symbol a later section reads (``saved.*``, gradients)."""
    writes: dict[str, np.ndarray] = field(default_factory=dict)
    """torch's value of a symbol a section writes (loss, outputs, gradients, updated state)."""
    traces: dict[str, str] = field(default_factory=dict)
    """The stack trace of every traced value (FX node name), for the library line."""
    ops: dict[str, str] = field(default_factory=dict)
    """The ATen op of every traced value (``aten.tanh.default``)."""
    scales: dict[str, float] = field(default_factory=dict)
    """The operand size of every traced value (``tools.reference.operand_size``)."""
    errors: dict[str, TorchError] = field(default_factory=dict)
    """torch's own float32 error of every symbol written (its section's); a traced value's is
    set before its unit is judged (``own_error``)."""
    own_error: Callable[[str, set[str]], TorchError] | None = None
    """``own_error(value, given)``: torch's own float32 error of traced value ``value``
    computed from the traced values ``given`` (those its unit reads) in float64
    (``tools.reference.OwnError``)."""
    nodes: dict[str, str] = field(default_factory=dict)
    """DRAM symbol -> the traced value it holds (parameters, the batch, ``saved.*``)."""


Judge = Callable[
    [str, str, np.ndarray, np.ndarray, Mapping[str, np.ndarray]], tuple[float, float, bool]
]
"""``judge(section kind, name, fabric, torch, torch's section results) -> (max abs, max rel, ok)``:
``name`` is the unit's traced value or symbol, the arrays flat."""


def unit_ops(pcu: Pcu) -> tuple[str, ...]:
    """A unit's opcodes in stage order (constants and counters left out), then its reduction."""
    ops = tuple(s.op for s in pcu.stages if s.op not in ("const", "counter"))
    if pcu.combiner != "none":
        ops += (f"reduce {pcu.combiner}",)
    return ops or ("copy",)


def library_line(trace: str) -> str:
    """The innermost frame of a stack trace in torch or another installed library, as
    ``torch/nn/modules/activation.py:392`` ("" if the innermost frame is the user's)."""
    frames = _FRAME.findall(trace or "")
    if not frames:
        return ""
    path, line = frames[-1]
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            return f"{path.split(marker, 1)[1]}:{line}"
    return ""


def _as_pmu(value: np.ndarray, shape: list[int], dtype: str) -> np.ndarray | None:
    """``value`` as a PMU's flat buffer (None if it does not have the PMU's shape)."""
    array = np.asarray(value)
    if tuple(array.shape) != tuple(shape):
        return None
    return np.ascontiguousarray(array, dtype=DTYPES[dtype]).reshape(-1)


def first_divergence(
    program: Program,
    reference: Reference,
    judge: Judge,
    *,
    sections: list[str] | None = None,
    fabric: Fabric | None = None,
) -> Divergence | None:
    """The first unit (sections in run order, PCUs in dataflow order) whose output, computed
    alone from torch's values of its inputs, fails ``judge`` against torch's value; None if
    every unit torch has a value for passes. ``sections``: judge only these (all run)."""
    fabric = fabric or Fabric(program)
    symbols = program.meta.symbols
    # The fabric's own step, for values torch has no name for (a spill between the pieces of a
    # cut section); each section runs on torch's values of what it reads, so that such a value
    # is the fabric's on torch's inputs, not on the fabric's own upstream (an Adam step from a
    # gradient near 0 flips sign on a rounding-level difference).
    dram = dict(reference.inputs)
    holds: dict[str, str] = {}  # a spill symbol -> the traced value its PMU held
    written: set[str] = set()  # symbols an earlier section of the step wrote
    for section in program.sections:
        known = {}  # what the section reads: torch's value where torch has one
        for i in section.inputs:
            name = symbols[i].name
            if name in written:  # e.g. a parameter an earlier piece of the optimizer updated
                source = reference.writes
            else:
                source = reference.reads
            if name in source:
                known[name] = source[name]
            elif holds.get(name) in reference.values:
                known[name] = reference.values[holds[name]]
            elif name in dram:
                known[name] = dram[name]
        stored = {o.pmu: symbols[o.symbol].name for o in section.outputs}
        written.update(stored.values())
        for o in section.outputs:
            producer = section.pmus[o.pmu].producer
            if producer >= 0 and section.pcus[producer].value:
                holds[symbols[o.symbol].name] = section.pcus[producer].value
                reference.nodes[symbols[o.symbol].name] = section.pcus[producer].value
        if sections is None or section.name in sections:
            found = _judge_section(fabric, section, symbols, known, stored, reference, judge)
            if found is not None:
                return found
        for name, value in known.items():
            if name in dram and np.shape(value) == np.shape(dram[name]):
                dram[name] = np.asarray(value, dtype=np.asarray(dram[name]).dtype)
        fabric.run_section(section.name, dram)
    return None


def _judge_section(
    fabric: Fabric,
    section: Section,
    symbols: list[Symbol],
    known: Mapping[str, np.ndarray],
    stored: Mapping[int, str],
    reference: Reference,
    judge: Judge,
) -> Divergence | None:
    buffers: dict[int, np.ndarray] = {}  # PMU -> torch's value, or the unit's on torch's inputs
    given: dict[int, set[str]] = {}  # PMU -> the traced values (torch's) its value comes from
    for k, pmu in enumerate(section.pmus):
        if pmu.source == "dram":
            name = symbols[pmu.symbol].name
            if name in known:
                flat = _as_pmu(known[name], pmu.shape, pmu.dtype)
                if flat is not None:
                    buffers[k] = flat
                    given[k] = {reference.nodes.get(name, name)}
    recomputed: dict[int, tuple[int, ...]] = {}  # PMU -> the untraced units behind its value
    for index, pcu in enumerate(section.pcus):
        out = section.pmus[pcu.out_pmu]
        expected = None
        if pcu.value in reference.values:
            expected = _as_pmu(reference.values[pcu.value], out.shape, out.dtype)
        if expected is None and stored.get(pcu.out_pmu) in reference.writes:
            expected = _as_pmu(reference.writes[stored[pcu.out_pmu]], out.shape, out.dtype)
        if any(p.pmu not in buffers for p in pcu.inputs):
            if expected is not None:  # not judged (an input neither torch nor a unit gives)
                buffers[pcu.out_pmu] = expected
                given[pcu.out_pmu] = {pcu.value}
            continue
        got = fabric.run_unit(section.name, index, buffers)
        behind = tuple(sorted({u for p in pcu.inputs for u in recomputed.get(p.pmu, ())}))
        if expected is None:
            buffers[pcu.out_pmu] = got
            recomputed[pcu.out_pmu] = (*behind, index)
            given[pcu.out_pmu] = {v for p in pcu.inputs for v in given.get(p.pmu, ())}
            continue
        value = pcu.value if pcu.value in reference.values else stored[pcu.out_pmu]
        if reference.own_error is not None and value == pcu.value:
            reads = {v for p in pcu.inputs for v in given.get(p.pmu, ())}
            reference.errors[value] = reference.own_error(value, reads)
        max_abs, max_rel, ok = judge(section.kind, value, got, expected, reference.writes)
        if not ok:
            return Divergence(
                section=section.name,
                unit=index,
                name=pcu.name,
                ops=unit_ops(pcu),
                value=value,
                op=reference.ops.get(pcu.value, ""),
                at=(pcu.at[0], pcu.at[1]),
                loc=pcu.loc,
                library=library_line(reference.traces.get(pcu.value, "")),
                max_abs=max_abs,
                max_rel=max_rel,
                upstream=tuple(f"{u} {section.pcus[u].name}" for u in behind),
            )
        buffers[pcu.out_pmu] = expected
        given[pcu.out_pmu] = {reference.nodes.get(value, value)}
    return None


# -- torch's values --------------------------------------------------------------------------


def torch_values(traced: Any, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every FX node's value (by node name) of an inference graph (a
    ``compiler.frontend.trace.Traced``: no tangent, no random op) run on ``inputs`` (by DRAM
    symbol). Training graphs run in ``tools.reference.run_joint`` (the fabric's dropout)."""
    from tools.reference import run_inference_graph

    return _arrays(run_inference_graph(traced, inputs))


def _arrays(env: Mapping[Any, Any]) -> dict[str, np.ndarray]:
    import torch

    from tools.reference import as_numpy

    return {
        node.name: as_numpy(value) for node, value in env.items() if isinstance(value, torch.Tensor)
    }


def _describe(traced: Any, reference: Reference) -> None:
    """The ATen op and the stack trace of every node (a ``getitem`` is its tuple's op, indexed)."""
    import operator

    for node in traced.graph.nodes:
        reference.traces[node.name] = node.meta.get("stack_trace") or ""
        if node.op != "call_function":
            continue
        if node.target is operator.getitem and hasattr(node.args[0], "target"):
            source = str(node.args[0].target)
            reference.ops[node.name] = f"{source.removesuffix('.default')}[{node.args[1]}]"
        else:
            reference.ops[node.name] = str(node.target)


def localize(run: Any, overrides: Mapping[str, float | None] | None = None, seed: int = 0):
    """The first divergence of the batch rdu-test compares, for ``run`` (a
    ``tools.rdu_run.Run``): torch's values from ``tools.reference`` (the graph the compiler
    traced, run in torch with the fabric's dropout; each kind of section's inputs and results),
    judged by ``tools.tolerance`` at rdu-test's tolerances (``overrides``: ``--rtol/--atol``)."""
    import torch

    from runtime.session import rng_seed_value
    from tools.reference import (
        OwnError,
        as_numpy,
        operand_size,
        run_inference_graph,
        run_joint,
        section_cases,
        trace_inference_graph,
        trace_joint,
    )

    program = run.program
    state, step = run.initial_state()
    hyper = {} if run.is_inference else run.hyperparameters()
    split = "test" if run.is_inference else "train"
    inputs, targets = next(iter(run.batches(split, 0)))
    feed = run.batch(inputs, targets)
    if run.is_inference:
        traced = trace_inference_graph(run)
        cases = section_cases(run, state, step, feed, hyper, seed)
        env = run_inference_graph(traced, {**state, **feed})
        env64 = run_inference_graph(traced, {**state, **feed}, wide=True)
        random: set = set()
    else:
        joint = trace_joint(run)
        traced = joint.traced
        cases = section_cases(run, state, step, feed, hyper, seed, joint)
        rng_seed = rng_seed_value(seed, step)
        start = {**state, **feed, "rng_seed": np.asarray(rng_seed, dtype=np.int64)}
        env = run_joint(joint, start, rng_seed)
        env64 = run_joint(joint, start, rng_seed, wide=True)
        random = set(joint.streams)
    reference = Reference({}, _arrays(env))
    memo: dict = {}
    for node in traced.graph.nodes:
        if node.op == "call_function":
            reference.scales[node.name] = operand_size(node, env, memo)
    for case in cases:
        reference.inputs.update(case.inputs)
        reference.writes.update(case.expected)
        reference.errors.update(case.errors)
    whole = {
        n.name: float_error(as_numpy(env[n]), as_numpy(env64[n]))
        for n in env
        if isinstance(env[n], torch.Tensor) and isinstance(env64.get(n), torch.Tensor)
    }
    reference.own_error = OwnError(traced.graph, env, frozenset(random), whole)
    reference.nodes = {gi.name: gi.node.name for gi in traced.inputs}
    reference.nodes.update({f"saved.{n.name}": n.name for n in traced.graph.nodes})
    reference.reads = dict(reference.inputs)
    _describe(traced, reference)
    roles = {s.name: s.role for s in program.meta.symbols}
    judge = tolerance_judge(roles, state, overrides, reference.scales, reference.errors)
    return first_divergence(program, reference, judge)


def tolerance_judge(
    roles: Mapping[str, str],
    before: Mapping[str, np.ndarray],
    overrides: Mapping[str, float | None] | None = None,
    scales: Mapping[str, float] | None = None,
    errors: Mapping[str, TorchError] | None = None,
) -> Judge:
    """rdu-test's rule (``tools.tolerance``) for a unit's output: scaled like the tensors
    rdu-test judges. A forward value by its operands' size (``scales``: by traced value, as
    ``tools.reference.operand_size`` gives; itself without one); a backward value by the larger
    of itself and the step's largest gradient (rounding in the backward is of the gradients'
    size: a value that cancels to almost nothing is not held to its own digits); a parameter
    the optimizer writes by its update (``tools.tolerance.scale_of``). ``errors``: torch's own
    float32 error of each value (``Reference.errors``), added to the limit as rdu-test does."""
    from tools.tolerance import compare, largest, scale_of, tolerance_for

    def judge(
        kind: str, name: str, got: np.ndarray, expected: np.ndarray, writes: Mapping
    ) -> tuple[float, float, bool]:
        tol = tolerance_for(expected.dtype, dict(overrides or {}))
        scale, relative_to = None, None
        if kind == "backward":
            grads = {k: v for k, v in writes.items() if roles.get(k) == "gradient"}
            scale = max(largest(grads), largest({name: expected}))
        elif roles.get(name) in ("parameter", "optimizer_state"):
            scale, relative_to = scale_of(roles[name], name, writes, before)
            if relative_to is not None:
                relative_to = relative_to.reshape(-1)
        elif kind == "forward" and scales and name in scales:
            scale = max(scales[name], largest({name: expected}))
        row = compare(
            name,
            got,
            expected,
            scale=scale,
            relative_to=relative_to,
            tolerance=tol,
            torch_error=(errors or {}).get(name, NO_ERROR),
        )
        return row.max_abs, row.max_rel, row.ok

    return judge
