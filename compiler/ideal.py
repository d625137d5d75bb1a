"""The ideal: a bound on a compiled step's time computed independently of our cost model.

The report sets the modelled time (``runtime/machine/perf.py``) against this bound, so that a
mapping is judged by something it cannot flatter:

- **FLOPs**: ``torch.utils.flop_counter.FlopCounterMode`` over the model's forward and, in
  training, its backward (the loss's ``backward()``) on the example batch (attention in its math
  form, as the frontend traces it), plus the optimizer's update: ``optimizer_flops``, the
  elementwise operations of torch's update formula, one FLOP each, for every element of every
  trainable parameter (FlopCounterMode counts matrix products and convolutions only, and no
  optimizer step; its formulas lack the grouped product of a mixture of experts' experts: ours,
  ``COUNTS_TORCH_LACKS``, counts each token's own experts). At the target's peak at the PEF's
  precision (``runtime.machine.targets.peak_dtype``: bf16's for ``bf16-mixed`` and ``bf16``).
- **off-chip bytes**: the batch (the PEF's ``input`` and ``label`` symbols) plus the state
  (``parameter``, ``buffer`` and ``optimizer_state`` symbols) read once, and the state a step
  updates (a section result under its own name) written once. At the target's DRAM bandwidth.
- the ideal time is the larger of the two; **with residency** the state stays on chip across
  steps when the target's SRAM (every PMU's bytes) holds it, so only the batch crosses DRAM.

torch runs the model once more, eagerly, on a copy whose tensors are fake (shapes only, see
``counted_flops``; the compiled model's parameters, buffers and random state are left alone).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from compiler.frontend import ModelSpec
from compiler.targets import Target
from runtime.machine.opcodes import DTYPE_BYTES
from runtime.pef.schema import Program

STATE_ROLES = ("parameter", "buffer", "optimizer_state")
"""The symbols a step keeps from one step to the next."""

BATCH_ROLES = ("input", "label")


@dataclass(frozen=True)
class Ideal:
    """The bound of one step (see the module docstring)."""

    flops: int
    """FlopCounterMode's forward (and backward), plus the optimizer's."""
    counted_flops: int
    """FlopCounterMode's part."""
    batch_bytes: int
    state_bytes: int
    """Read once a step (parameters, buffers, optimizer state)."""
    updated_bytes: int
    """Written once a step (the state the step updates)."""
    peak_flops: float
    dram_bytes_per_second: float
    sram_bytes: int

    @property
    def compute_seconds(self) -> float:
        return self.flops / self.peak_flops

    @property
    def offchip_bytes(self) -> int:
        """Without residency: the batch, the state read and the updated state written."""
        return self.batch_bytes + self.state_bytes + self.updated_bytes

    @property
    def resident(self) -> bool:
        """Whether the state fits in the target's SRAM."""
        return self.state_bytes <= self.sram_bytes

    @property
    def seconds(self) -> float:
        """The ideal without residency."""
        return max(self.compute_seconds, self.offchip_bytes / self.dram_bytes_per_second)

    @property
    def resident_seconds(self) -> float:
        """The ideal with residency (the same as without when the state does not fit)."""
        moved = self.batch_bytes if self.resident else self.offchip_bytes
        return max(self.compute_seconds, moved / self.dram_bytes_per_second)


def optimizer_flops(optimizer: torch.optim.Optimizer | None) -> int:
    """The FLOPs of one ``optimizer.step()``: per element of each trainable parameter, the
    elementwise operations of torch's update (``torch/optim/sgd.py``, ``adamw.py``), one each:

    - SGD: ``p -= lr * g`` 2; weight decay ``g += wd * p`` 2; momentum ``b = m * b + (1 - d) *
      g`` 3, and Nesterov ``g += m * b`` 2 more;
    - AdamW: decay ``p *= 1 - lr * wd`` 1; ``m = b1 * m + (1 - b1) * g`` 3; ``v = b2 * v + (1 -
      b2) * g * g`` 4; ``d = sqrt(v) / sqrt(c2) + eps`` 3; ``p -= lr / c1 * m / d`` 2: 13.
    """
    if optimizer is None:
        return 0
    total = 0
    for group in optimizer.param_groups:
        elements = sum(p.numel() for p in group["params"] if p.requires_grad)
        if isinstance(optimizer, torch.optim.AdamW):
            each = 13
        elif isinstance(optimizer, torch.optim.SGD):
            each = 2 + (2 if group.get("weight_decay", 0) else 0)
            if group.get("momentum", 0):
                each += 3 + (2 if group.get("nesterov", False) else 0)
        else:
            raise NotImplementedError(
                f"the ideal of {type(optimizer).__name__} is not supported yet (SGD and AdamW)"
            )
        total += elements * each
    return total


def _grouped_mm_flops(a: Sequence[int], b: Sequence[int], *args: Any, **kwargs: Any) -> int:
    """A grouped matrix product's multiply-adds, twice: every row of ``a`` times the weight of
    its group. The three forms a mixture of experts' step calls: ``[rows, k] x [groups, k,
    n]`` (the experts' forward and their input's gradient), ``[k, rows] x [rows, n]`` (their
    weights' gradient, the rows cut into groups) and ``[groups, m, k] x [groups, k, n]``:
    ``2 * prod(a) * n`` each."""
    return 2 * math.prod(a) * b[-1]


COUNTS_TORCH_LACKS: dict[Any, Any] = {torch.ops.aten._grouped_mm: _grouped_mm_flops}
"""FlopCounterMode's formulas for products it has no count of (torch 2.13): ``_grouped_mm``,
transformers' experts (Mixtral) on the CPU."""


def counted_flops(spec: ModelSpec, *, inference: bool) -> int:
    """FlopCounterMode's FLOPs of the model's forward (and, in training, the loss's backward) on
    the example batch, run on a copy of the module whose parameters, buffers and batch are fake
    tensors (``FakeTensorMode``: shapes and dtypes, no data, no arithmetic).

    FlopCounterMode counts from the shapes of each matrix product and convolution, so the count
    is the one a run on the real tensors gives (test/compiler/test_ideal.py compares both); the
    real run took 1 to 12 s of a GPT-2 small compile (its backward's products), the fake one
    takes a fraction of a second. The copy's parameters are new ``Parameter`` objects (the
    gradients land on the copy's, the model's are left alone), its buffers fakes of the model's
    (a forward may update them: batch norm's running statistics).

    An op whose fake kernel refuses what its real one takes is counted on real tensors, on a
    copy of the model's: torch's ``grouped_mm`` checks for bf16 on fake tensors, and
    transformers' mixture of experts calls it in f32 on the CPU (``COUNTS_TORCH_LACKS``
    counts it)."""
    try:
        return _count(spec, inference, FakeTensorMode(allow_non_fake_inputs=True))
    except Exception:  # noqa: BLE001 - any op's fake kernel; the real run raises the model's own
        return _count(spec, inference, None)


def _count(spec: ModelSpec, inference: bool, fake: FakeTensorMode | None) -> int:
    """``counted_flops`` on a copy of the module, its tensors fakes of ``fake`` (None: copies of
    the real ones)."""

    def faked(t: torch.Tensor) -> torch.Tensor:
        return fake.from_tensor(t) if fake is not None else t.clone()

    # Inference: no parameter of the copy asks for a gradient. Under no_grad alone, a view of
    # one (Perceiver's latents, ``expand``-ed to the batch) still says it does, with no
    # gradient function, and FlopCounterMode's module hooks fail on it.
    memo: dict[int, object] = {
        id(p): torch.nn.Parameter(
            faked(p.detach()), requires_grad=p.requires_grad and not inference
        )
        for p in spec.module.parameters()
    }
    memo.update((id(b), faked(b)) for b in spec.module.buffers())
    module = copy.deepcopy(spec.module, memo)
    module.train(not inference)

    def batch(values: tuple[object, ...]) -> list[object]:
        return [faked(v) if isinstance(v, torch.Tensor) else v for v in values]

    inputs, targets = batch(spec.example_inputs), batch(spec.example_targets)
    counter = FlopCounterMode(display=False, custom_mapping=COUNTS_TORCH_LACKS)
    # In math form, as the frontend traces it: attention's products are matmuls FlopCounterMode
    # counts (it has no count for the CPU's fused attention kernel).
    with torch.random.fork_rng(), sdpa_kernel([SDPBackend.MATH]), _meta_failures_unlogged():
        with fake or contextlib.nullcontext(), counter:
            if inference:
                with torch.no_grad():
                    module(*inputs)
            else:
                assert spec.loss_fn is not None
                outputs = module(*inputs)
                loss = spec.loss_fn(outputs, *targets)
                if loss.requires_grad:  # a model with nothing to train has no backward to count
                    loss.backward()
    return int(counter.get_total_flops())


@contextmanager
def _meta_failures_unlogged() -> Iterator[None]:
    """``FakeTensorMode`` logs an op's failure with its traceback (``log.exception``) before
    raising it. A model that fails on its example batch fails the count, run beside the trace
    (rdu-compile forks it first), as it fails the trace, which reports it in one line: the
    count's log would print the traceback too."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def step_ideal(
    spec: ModelSpec, program: Program, target: Target, counted: int | None = None
) -> Ideal:
    """The ideal of one step of ``program``, compiled from ``spec`` for ``target``;
    ``counted``: ``counted_flops`` of ``spec``, if known (rdu-compile counts them beside the
    lowering, ``compiler.forked``)."""
    inference = program.meta.inference
    symbols = program.meta.symbols

    def size(index: int) -> int:
        symbol = symbols[index]
        return math.prod(symbol.shape) * DTYPE_BYTES[symbol.dtype]

    updated = {
        out.symbol
        for section in program.sections
        for out in section.outputs
        if symbols[out.symbol].role in STATE_ROLES
    }
    if counted is None:
        counted = counted_flops(spec, inference=inference)
    return Ideal(
        flops=counted + (0 if inference else optimizer_flops(spec.optimizer)),
        counted_flops=counted,
        batch_bytes=sum(size(i) for i, s in enumerate(symbols) if s.role in BATCH_ROLES),
        state_bytes=sum(size(i) for i, s in enumerate(symbols) if s.role in STATE_ROLES),
        updated_bytes=sum(size(i) for i in updated),
        peak_flops=target.peak_flops_of(program.meta.precision()),
        dram_bytes_per_second=target.dram_gbps * 1e9 if target.dram_gbps > 0 else math.inf,
        sram_bytes=target.num_pmus * target.pmu_bytes,
    )
