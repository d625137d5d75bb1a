"""When a fabric tensor agrees with torch's: the rule rdu-test judges by, importable on its own.

    from tools.tolerance import compare
    row = compare("fc1.weight.grad", fabric, torch_value, scale=largest_gradient)
    row.ok, row.max_abs, row.limit

The rule, in the spirit of ``torch.testing.assert_close`` but normwise (one number a tensor, so
an element that cancels to almost nothing is not held to its own digits)::

    max|fabric - torch| <= rtol * max|torch| + atol * scale + C * max|torch - torch64|

``rtol``, ``atol`` and ``C`` depend on the dtype (:data:`DEFAULT_TOLERANCES`: float32 ``rtol =
1e-5``, ``atol = 2**-22``, about two units in the last place, ``C = 4``; integer and bool tensors
must be equal).

The last part is torch's own float32 error: ``torch64`` is the same computation run again in
float64 (``tools.reference``), so ``max|torch - torch64|`` is how far torch's float32 result is
from the exact one. The fabric's result is rounding of the same computation in another order
(other summation orders, fused stages), so it is about as far from the exact result, in another
direction: ``|fabric - torch| <= |fabric - exact| + |torch - exact|``. ``C = 4`` allows the
fabric's error up to three times torch's (a sequential sum's rounding grows faster than a
pairwise one's). On a well-conditioned model the part is about float32's spacing (1e-7 relative:
the MLP and GPT examples), so it hides no error that ``rtol`` would catch; on an ill-conditioned
one (batch norm in training over a small batch, through 17 blocks: MobileNetV2) torch's own
error reaches 1e-5 relative and more, and holding the fabric to 1e-5 of torch would judge
rounding noise.
``scale`` is the size of the quantity the tensor is part of (:func:`scale_of` says which), so the
absolute part is rounding of that size, never a fixed number:

- a forward value (loss, output, activation, buffer) and optimizer state: the tensor itself;
- a gradient: the largest gradient element of its module (``blocks.0.attn.key.bias.grad`` and
  ``blocks.0.attn.key.weight.grad``: a layer's gradients come from one upstream gradient of the
  loss, so they are rounded at one scale). The gradient of attention's key bias is zero in exact
  arithmetic (softmax ignores a constant shift); in float32 it is the rounding noise of terms
  that cancel, of the size of its weight's gradient, not of its own;
- a gradient that sums a gradient (a bias's: its output's gradient summed over the batch) and
  that torch computes below float32's resolution of its terms (``cancelled``: ``max|torch| <=
  atol * max sum|terms|``): the sum of its terms' magnitudes. Such a sum cancelled to rounding
  noise, known to that resolution and no better: a batch norm's bias gradient where a batch
  norm in training follows, exactly 0 in torch in float32 and float64 when the batch's two
  samples' gradients are exact negatives (HF's EfficientNet at its initialisation); the fabric
  breaks that symmetry by a rounding. A sum that did not cancel so far keeps its module's scale;
- a parameter after the optimizer: ``rtol`` applies to the update (``max|torch - before|``) and
  the absolute part to the parameter (``scale = max|before|``): a step of 1e-3 on a weight near 1
  is only known to float32's spacing at 1.

Non-finite elements must be non-finite in the same places with the same values.

bfloat16 tensors (``--precision bf16-mixed``: torch's bf16 values under autocast) are held to
two conditions, each with a part for torch's own sensitivity to bf16 rounding. Normwise,
``max|fabric - torch| <= 2**-8 * max|torch| + 2**-8 * scale + 1 * max|torch - torch64|``: one
bf16 unit in the last place at the tensor's scale (bf16 keeps 8 significant bits), the most a
rounding to the other neighbour moves an element, plus how far torch is from its wide run. And
by element, at most ``max(1/16, 2 * torch's own fraction)`` of the elements may differ from
torch's at all. Both compute in float32 and round once to nearest even, so on equal inputs they
differ only where the float32 value lies within float32 rounding noise (another summation
order) of a halfway point between two bf16 numbers, a few elements in a thousand; a fabric that
truncated instead of rounding would differ in about half of them
(``test/conformance/test_ops_bf16_mixed.py``, ``test/e2e/test_mlp_bf16_mixed.py``,
``test/e2e/test_bf16_mixed_inference.py`` and, for the ResNet at its default batch,
``test/e2e/test_examples_bf16_mixed.py`` flip the emulator's rounding to truncation and check
that this rule fails it).

Inputs are not equal deep in a model: an element rounded the other way is read by a convolution
(a change in every output it reaches, some of which then cross a halfway point too) and by a
batch or layer norm's statistics (a shift of every element of the tensor), so a handful of
flips in one layer becomes thousands a few layers on (the ResNet example at batch 16: one flip
in ``layer1.conv1``, 100 in ``layer1.conv2``, 28% of ``layer2.conv2``'s elements). How far this
goes is the model's, not the fabric's: torch64, for a bf16-mixed step, is another legitimate bf16
evaluation (``tools.reference.wide_call``): every op computed in float64, rounded to bf16 where
torch's value is bf16, each element to the other neighbour wherever it lies within the op's
float32 error (``max|float32 result - float64 result|``, the op run once more in float32; for a
cast of a float32 value torch computed, two float32 units at its scale, the float32 ``atol``) of a
halfway point: every rounding that a kernel as accurate as torch's could make differently, made
differently. ``max|torch - torch64|`` and the fraction of elements where they differ
(:class:`TorchError`) are torch's own sensitivity; the fabric's flips are a subset of those
candidates, but which ones start a cascade is chance (a 32-element batch-norm statistic can
differ in as many elements as torch64 does), hence the factor 2 on the fraction. Where no
rounding is uncertain (a float32 weight cast to bf16 is exact in float32) the fraction stays
``1/16``: a truncating fabric differs there in half the elements and fails. (torch64 rounded to
nearest, without the flips, agrees with torch almost everywhere, torch's float32 accumulation
being far finer than bf16's spacing: it measures no sensitivity at all.)

A float32 tensor computed through bf16 values (a bf16-mixed PEF's forward and backward: the
loss from bf16 logits, a weight's gradient cast from a bf16 matmul) carries their roundings: a
bf16 value on the way that rounded to the other neighbour (float32 noise across a halfway
point) moves it by a bf16 unit. Such tensors are held to the float32 rule with the bf16
normwise part in place of float32's (:func:`through_bf16`: ``rtol`` and ``atol`` at least
``2**-8``), and their torch error is the distance to the same torch64 (so it includes the
cascade of flipped bf16 values they are computed from: a convolution's weight gradient sums
them); the optimizer's float32 arithmetic on float32 master weights keeps the float32 rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """A relative part (of the tensor's largest magnitude) and an absolute part (of its scale)."""

    rtol: float
    atol: float
    torch_factor: float = 0.0
    """``C``: how many times torch's own float32 error (``max|torch - torch64|``) the limit
    allows on top."""
    mismatch: float = 1.0
    """The largest fraction of the elements that may differ from torch's at all (bf16)."""
    mismatch_factor: float = 0.0
    """How many times torch's own fraction of differing elements (from its wide run,
    :attr:`TorchError.differ`) the fraction may reach, when that is more than ``mismatch``."""


@dataclass(frozen=True)
class TorchError:
    """How far torch's value is from its wide run (``tools.reference``: the same computation in
    float64, rounded to bf16 where torch's value is bf16): torch's own error."""

    max_abs: float = 0.0
    """``max|torch - torch64|`` over the elements finite in both."""
    differ: float = 0.0
    """The fraction of those elements that differ at all (read for bf16 tensors only: a float32
    value always differs from its float64 one)."""


NO_ERROR = TorchError()


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(rtol=1e-5, atol=2.0**-22, torch_factor=4.0),
    "float64": Tolerance(rtol=1e-12, atol=2.0**-51),  # no wider reference: no torch error
    "float16": Tolerance(rtol=1e-3, atol=2.0**-9, torch_factor=4.0),
    "bfloat16": Tolerance(
        rtol=2.0**-8, atol=2.0**-8, torch_factor=1.0, mismatch=1 / 16, mismatch_factor=2.0
    ),
}
"""Per float dtype; any other dtype (integers, bool) must match exactly."""

EXACT = Tolerance(rtol=0.0, atol=0.0)


def through_bf16(tol: Tolerance) -> Tolerance:
    """``tol`` (a float32 tolerance) for a tensor computed through bf16 values: its normwise
    parts at least bf16's (the module docstring)."""
    bf16 = DEFAULT_TOLERANCES["bfloat16"]
    return Tolerance(max(tol.rtol, bf16.rtol), max(tol.atol, bf16.atol), tol.torch_factor)


def tolerance_for(
    dtype: np.dtype | str, overrides: Mapping[str, float | None] | None = None
) -> Tolerance:
    """The tolerance of ``dtype`` (exact for non-float dtypes), with ``rtol``/``atol``/
    ``torch_factor`` overrides (``None`` values ignored) for float dtypes."""
    name = np.dtype(dtype).name
    base = DEFAULT_TOLERANCES.get(name, EXACT)
    if base is EXACT or not overrides:
        return base
    values = {"mismatch": base.mismatch, "mismatch_factor": base.mismatch_factor}
    for key in ("rtol", "atol", "torch_factor"):
        given = overrides.get(key)
        values[key] = getattr(base, key) if given is None else float(given)
    return Tolerance(**values)


@dataclass
class Comparison:
    """One tensor judged: its errors, the limit they are held to, the verdict."""

    name: str
    max_abs: float
    """max|fabric - torch| (inf where only one side is finite)."""
    max_rel: float
    """max_abs / max|torch| (max_abs when torch's tensor is 0): for reading, not the rule."""
    limit: float
    """rtol * max|torch| + atol * scale + torch_term."""
    ok: bool
    section: str = ""
    torch_term: float = 0.0
    """The part of ``limit`` that is torch's own float32 error: ``C * max|torch - torch64|``."""
    mismatched: float = 0.0
    """The fraction of the elements that differ from torch's (judged for bf16 only)."""
    mismatch_limit: float = 1.0
    """The largest fraction allowed: ``max(mismatch, mismatch_factor * torch's own)``."""

    @property
    def by_torch_error(self) -> bool:
        """Passes only because of torch's own float32 error (past ``limit - torch_term``)."""
        return self.ok and self.max_abs > self.limit - self.torch_term

    @property
    def ratio(self) -> float:
        """How much of the limit the error uses (> 1: past it)."""
        if self.limit > 0:
            return self.max_abs / self.limit
        return 0.0 if self.max_abs == 0 else float("inf")


def compare(
    name: str,
    actual: np.ndarray,
    expected: np.ndarray,
    *,
    scale: float | None = None,
    relative_to: np.ndarray | None = None,
    tolerance: Tolerance | None = None,
    section: str = "",
    torch_error: TorchError = NO_ERROR,
) -> Comparison:
    """Judge ``actual`` (the fabric's) against ``expected`` (torch's) by the module's rule.

    ``scale``: the size of the quantity (the absolute part's unit; default ``max|expected|``).
    ``relative_to``: what the relative part is of, if not ``expected`` (a parameter's update:
    ``expected - before``). ``tolerance``: default by ``expected``'s dtype. ``torch_error``:
    torch's own error, ``expected`` against its wide run (:func:`float_error`; none: not known).
    Shapes must be equal.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        return Comparison(name, float("inf"), float("inf"), 0.0, False, section)
    tol = tolerance or tolerance_for(expected.dtype)
    max_abs = size = 0.0
    differing = counted = 0  # finite elements that differ from torch's, of all finite ones
    for a, e in _blocks(actual, expected):  # float64 temporaries a block at a time (0.5B: GBs)
        finite = np.isfinite(e)
        if not np.array_equal(np.isfinite(a), finite) or not np.array_equal(a[~finite], e[~finite]):
            return Comparison(name, float("inf"), float("inf"), 0.0, False, section)
        if finite.any():
            diff = np.abs(a[finite] - e[finite])
            max_abs = max(max_abs, float(diff.max()))
            size = max(size, float(np.abs(e[finite]).max()))
            differing += int(np.count_nonzero(diff))
            counted += diff.size
    rel_base = size
    if relative_to is not None:
        rel_base = largest({"": relative_to})
    own = torch_error.max_abs
    term = tol.torch_factor * own if math.isfinite(own) else 0.0
    limit = tol.rtol * rel_base + tol.atol * (size if scale is None else float(scale)) + term
    max_rel = max_abs / size if size > 0 else max_abs
    mismatched, allowed = 0.0, 1.0
    if tol.mismatch < 1 and counted:
        mismatched = differing / counted
        allowed = max(tol.mismatch, min(1.0, tol.mismatch_factor * torch_error.differ))
    ok = max_abs <= limit and mismatched <= allowed
    return Comparison(name, max_abs, max_rel, limit, ok, section, term, mismatched, allowed)


def float_error(value: np.ndarray, wide: np.ndarray | None) -> TorchError:
    """``max|value - wide|`` and the fraction of elements that differ, over the elements finite
    in both (none for non-float tensors, a missing or mis-shaped ``wide``): torch's own error
    when ``wide`` is its wide run."""
    value = np.asarray(value)
    floating = value.dtype.kind == "f" or value.dtype.name == "bfloat16"
    if wide is None or not floating or np.shape(wide) != value.shape:
        return NO_ERROR
    error, differing, counted = 0.0, 0, 0
    for a, b in _blocks(value, np.asarray(wide)):
        both = np.isfinite(a) & np.isfinite(b)
        if both.any():
            diff = np.abs(a[both] - b[both])
            error = max(error, float(diff.max()))
            differing += int(np.count_nonzero(diff))
            counted += diff.size
    return TorchError(error, differing / counted if counted else 0.0)


BLOCK = 1 << 20
"""Elements a block: the rule's float64 temporaries of a 136M-element embedding were 6 GB."""


def _blocks(*arrays: np.ndarray) -> Iterator[tuple[np.ndarray, ...]]:
    """Equal-shaped ``arrays`` flattened, as float64, ``BLOCK`` elements at a time. Quietly: a
    float32 value whose cast numpy flags "invalid" (a signalling NaN; seen in some runs on a
    ``[2, 1280, 1, 1]`` tensor of MobileNetV2's torch run, as a RuntimeWarning in rdu-test's
    output) is a NaN here, and every user of the blocks skips what is not finite."""
    flat = [np.asarray(x).reshape(-1) for x in arrays]
    n = flat[0].size
    for start in range(0, max(n, 1), BLOCK):
        with np.errstate(invalid="ignore"):
            block = tuple(f[start : start + BLOCK].astype(np.float64) for f in flat)
        yield block


def largest(arrays: Mapping[str, np.ndarray]) -> float:
    """The largest finite magnitude over ``arrays`` (0 when there is none)."""
    best = 0.0
    for value in arrays.values():
        for (v,) in _blocks(value):
            v = np.abs(v[np.isfinite(v)])
            if v.size:
                best = max(best, float(v.max()))
    return best


def cancelled(expected: np.ndarray, terms: float, tol: Tolerance) -> bool:
    """Whether ``expected``, a sum of terms whose magnitudes add up to at most ``terms`` an
    element, is below float32's resolution of them: ``max|expected| <= atol * terms`` (see the
    module docstring: then ``terms`` is its scale)."""
    return terms > 0 and largest({"": expected}) <= tol.atol * terms


def scale_of(
    role: str, name: str, expected: Mapping[str, np.ndarray], before: Mapping[str, np.ndarray]
) -> tuple[float | None, np.ndarray | None]:
    """``(scale, relative_to)`` for :func:`compare` of tensor ``name`` of PEF role ``role``:
    ``expected`` are torch's values of the tensors judged together (a section's results),
    ``before`` the state before the step (for parameters after the optimizer)."""
    if role == "gradient":
        module = name.removesuffix(".grad").rpartition(".")[0]
        siblings = {
            k: v
            for k, v in expected.items()
            if k.endswith(".grad") and k.removesuffix(".grad").rpartition(".")[0] == module
        }
        return largest(siblings or {name: expected[name]}), None
    if role == "parameter" and name in before:
        prior = np.asarray(before[name], dtype=np.float64)
        update = np.asarray(expected[name], dtype=np.float64) - prior
        return largest({name: prior}), update
    return None, None
