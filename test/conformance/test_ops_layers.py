"""Conformance of torch.nn layers the frontend takes through decompositions (its own or torch's,
``compiler/frontend/decompositions.py``), forward and backward, on shapes that do not divide
tiles: group norm, the piecewise and smooth activations (hardswish, hardsigmoid, mish, CELU,
GLU, PReLU, log-sigmoid), pixel shuffle, reflection and replication padding, nearest and
bilinear upsampling, ``F.normalize`` and cosine similarity, unfold and fold; remainder, fmod
and rounded division (float and integer), weight norm, ``Bilinear``, ``repeat`` of a strided
tensor and ``EmbeddingBag``.

Tolerances (normwise relative, see harness.py): 1e-5 for arithmetic, gathers and sums; 1e-4
where a transcendental function (exp, log, tanh, rsqrt, sqrt) sits on the path, as in the
transformer ops' conformance."""

from __future__ import annotations

import pytest
import torch
from harness import GENERATOR, check

from compiler.frontend import UnsupportedOpError

F = torch.nn.functional
TRANSCENDENTAL = 1e-4


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GENERATOR)


@pytest.mark.parametrize("groups", [1, 2, 6])
def test_group_norm(groups: int) -> None:
    check(
        lambda x, w, b: F.group_norm(x, groups, w, b, eps=1e-5),
        rand(2, 6, 3, 5),
        rand(6),
        rand(6),
        rtol=TRANSCENDENTAL,
    )


def test_group_norm_without_affine_on_a_sequence() -> None:
    check(lambda x: F.group_norm(x * 3 + 1, 3), rand(3, 9, 7), rtol=TRANSCENDENTAL)


@pytest.mark.parametrize(
    "fn",
    [F.hardswish, F.hardsigmoid, F.relu6, lambda x: F.hardtanh(x, -0.5, 2.0)],
    ids=["hardswish", "hardsigmoid", "relu6", "hardtanh"],
)
def test_piecewise_activations(fn) -> None:
    check(lambda x: fn(x * 4), rand(5, 7))  # across every piece


@pytest.mark.parametrize(
    "fn",
    [F.mish, lambda x: F.celu(x, alpha=0.7), F.logsigmoid, lambda x: F.glu(x, dim=1)],
    ids=["mish", "celu", "logsigmoid", "glu"],
)
def test_smooth_activations(fn) -> None:
    check(lambda x: fn(x * 3), rand(5, 8), rtol=TRANSCENDENTAL)


@pytest.mark.parametrize("channels", [1, 4])
def test_prelu(channels: int) -> None:
    check(lambda x, w: F.prelu(x, w), rand(3, 4, 5), rand(channels))


def test_pixel_shuffle_and_unshuffle() -> None:
    check(lambda x: F.pixel_shuffle(x, 2) * 2, rand(2, 8, 3, 5))
    check(lambda x: F.pixel_unshuffle(x, 3), rand(2, 2, 6, 9))


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
@pytest.mark.parametrize(
    "shape,pad",
    [((2, 3, 7), (2, 3)), ((2, 3, 5, 6), (1, 2, 3, 1)), ((1, 2, 4, 3, 5), (1, 1, 2, 0, 1, 2))],
    ids=["1d", "2d", "3d"],
)
def test_reflection_and_replication_pads(mode: str, shape: tuple, pad: tuple) -> None:
    if mode == "reflect" and len(shape) == 5:
        pad = (1, 1, 1, 0, 1, 2)  # a reflection pad is narrower than its dim
    check(lambda x: F.pad(x, pad, mode=mode), rand(*shape))


@pytest.mark.parametrize(
    "kw",
    [
        dict(scale_factor=2, mode="nearest"),
        dict(size=(5, 7), mode="nearest"),
        dict(scale_factor=2, mode="bilinear", align_corners=False),
        dict(size=(4, 9), mode="bilinear", align_corners=True),
    ],
    ids=["nearest-x2", "nearest-size", "bilinear-x2", "bilinear-corners"],
)
def test_upsampling(kw: dict) -> None:
    check(lambda x: F.interpolate(x, **kw), rand(2, 3, 3, 4))


def test_normalize_and_cosine_similarity() -> None:
    check(lambda x: F.normalize(x, dim=1), rand(4, 6), rtol=TRANSCENDENTAL)
    check(lambda x, y: F.cosine_similarity(x, y, dim=-1), rand(3, 5), rand(3, 5),
          rtol=TRANSCENDENTAL)  # fmt: skip


def test_unfold_and_fold() -> None:
    check(lambda x: F.unfold(x, 2, stride=1, padding=1), rand(2, 3, 4, 5))
    check(lambda x: F.fold(x, (4, 5), 2, stride=1, padding=1), rand(2, 12, 30))


@pytest.mark.parametrize("bidirectional", [False, True], ids=["lstm", "bidirectional"])
def test_lstm(bidirectional: bool) -> None:
    """torch's CPU LSTM runs oneDNN's kernel; traced without oneDNN it is its cells' ops."""
    directions = 2 if bidirectional else 1
    hidden, features = 5, 3
    weights = [
        rand(4 * hidden, features),
        rand(4 * hidden, hidden),
        rand(4 * hidden),
        rand(4 * hidden),
    ]
    weights = weights * directions  # the same cell weights both ways (different values below)

    def lstm(x, h0, c0, *params):
        out, _, _ = torch.lstm(x, (h0, c0), list(params), True, 1, 0.0, True, bidirectional, True)
        return out

    params = [w * (0.5 + 0.1 * i) for i, w in enumerate(weights)]
    check(lstm, rand(2, 4, features), rand(directions, 2, hidden), rand(directions, 2, hidden),
          *params, rtol=TRANSCENDENTAL)  # fmt: skip


def test_gru() -> None:
    hidden, features = 5, 3
    params = [
        rand(3 * hidden, features),
        rand(3 * hidden, hidden),
        rand(3 * hidden),
        rand(3 * hidden),
    ]
    check(lambda x, h0, *p: torch.gru(x, h0, list(p), True, 1, 0.0, True, False, True)[0],
          rand(2, 4, features), rand(1, 2, hidden), *params, rtol=TRANSCENDENTAL)  # fmt: skip


@pytest.mark.parametrize("output", [1, 2, (2, 3)])
def test_adaptive_max_pool2d(output) -> None:
    check(lambda x: F.adaptive_max_pool2d(x, output), rand(2, 3, 4, 6))


def test_adaptive_max_pool_indices_match_torch() -> None:
    x = torch.tensor([[[[1.0, 3.0, 3.0], [0.0, 3.0, 2.0]]]])  # ties: the first maximum
    check(lambda x: F.adaptive_max_pool2d(x, 1, return_indices=True)[1].float(), x, backward=False)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: torch.argmax(x, 1).float(),
        lambda x: torch.argmin(x, 0, keepdim=True).float(),
        lambda x: torch.argmax(x).float(),
        lambda x: torch.argmax(torch.floor(x), -1).float(),  # ties: the first one
    ],
    ids=["argmax", "argmin-keepdim", "argmax-flat", "argmax-ties"],
)
def test_argmax_argmin(fn) -> None:
    check(fn, rand(5, 7), backward=False)


@pytest.mark.parametrize("keepdim", [False, True])
def test_max_and_min_with_indices(keepdim: bool) -> None:
    def fn(x):
        top, where = torch.max(x, 1, keepdim=keepdim)
        low, at = torch.min(x, 0, keepdim=keepdim)
        return top * 2 + where.float() + (low * 3 + at.float()).sum()

    check(fn, rand(5, 7))


def test_scatter_one_value_a_row() -> None:
    labels = torch.tensor([[2], [0], [4]])
    check(lambda x, i: x.scatter(1, i, 7.0) * 2, rand(3, 5), labels)
    check(lambda x, s, i: x.scatter(1, i, s), rand(3, 5), rand(3, 1), labels)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, y: x.slice_scatter(y[:, :3], 1, 2, 5),
        lambda x, y: x.slice_scatter(y[:2], 0, 1, 5, 2),
        lambda x, y: x.select_scatter(y[:, 0], 1, -2),
        lambda x, y: x.select_scatter(y[1], 0, 0) * 2,
    ],
    ids=["slice", "slice-step", "select", "select-first"],
)
def test_slice_and_select_scatter(fn) -> None:
    """A slice or select assignment as a value (RWKV's, Funnel's ``x[:, 0] = y``)."""
    check(fn, rand(4, 6), rand(4, 6))


def test_in_place_slice_assignment() -> None:
    def fn(x, y):
        z = x * 1.5
        z[:, 1:4] = y[:, :3] * 2
        z[0] = y[1]
        return z

    check(fn, rand(3, 6), rand(3, 6))


def divisors(*shape: int) -> torch.Tensor:
    """Divisors of either sign, none near 0 (where a quotient's floor would jump)."""
    r = rand(*shape)
    return torch.where(r < 0, r - 0.5, r + 0.5)


@pytest.mark.parametrize(
    "fn",
    [
        lambda a, b: torch.remainder(a * 3, b),
        lambda a, b: torch.fmod(a * 3, b),
        lambda a, b: torch.div(a * 3, b, rounding_mode="floor") * b + a,
        lambda a, b: torch.div(a * 3, b, rounding_mode="trunc") * b + a,
        lambda a, b: a * 3 % 0.7 + torch.remainder(a * 3, -0.7) + torch.floor(a) + torch.trunc(b),
    ],
    ids=["remainder", "fmod", "div-floor", "div-trunc", "scalars"],
)
def test_remainder_fmod_and_rounded_division(fn) -> None:
    """Float remainders against torch: the divisor's sign (remainder), the dividend's (fmod);
    the gradient of ``b`` is ``-floor(a / b)`` (``-trunc`` for fmod)."""
    check(fn, rand(4, 6), divisors(4, 6))


def test_integer_remainder_and_floor_division() -> None:
    """CANINE's hash of ids, ``(ids + 1) * prime % buckets``, and negative operands of both
    signs (torch's integer ``%`` and ``//`` round toward minus infinity)."""
    ids = torch.randint(-40, 40, (3, 5), generator=GENERATOR)
    divisor = torch.tensor([7, -7, 3, -2, 5])
    check(lambda i: ((i + 1) * 31 % 7).float(), ids, backward=False)
    check(lambda i, d: (i % d * 100 + i // d + torch.fmod(i, d) * 1000).float(), ids, divisor,
          backward=False)  # fmt: skip


def test_hashed_embedding() -> None:
    """Ids hashed into buckets, then embedded: the weight's gradient through the hash."""
    ids = torch.randint(0, 1000, (2, 6), generator=GENERATOR)
    check(lambda i, w: F.embedding((i + 1) * 43 % 11, w), ids, rand(11, 4))


def test_weight_norm_of_a_convolution_along_its_kernel() -> None:
    """wav2vec2's positional convolution: ``parametrizations.weight_norm`` with ``dim=2`` on a
    grouped ``Conv1d`` (``_weight_norm_interface``: torch's decomposition, our gradient)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(4, 6, kernel_size=3, padding=1, groups=2)
    conv = torch.nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
    check(conv, rand(2, 4, 7), rtol=TRANSCENDENTAL)


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated")
def test_legacy_weight_norm_of_a_linear() -> None:
    """``torch.nn.utils.weight_norm`` (a forward pre-hook), the default ``dim=0``."""
    torch.manual_seed(0)
    linear = torch.nn.utils.weight_norm(torch.nn.Linear(5, 3))
    check(linear, rand(4, 5), rtol=TRANSCENDENTAL)


def test_bilinear() -> None:
    """``nn.Bilinear`` (``_trilinear``, forward and the three gradients, decomposed)."""
    torch.manual_seed(0)
    check(torch.nn.Bilinear(3, 4, 5), rand(2, 3), rand(2, 4))
    check(lambda x, y, w: F.bilinear(x, y, w), rand(2, 6, 3), rand(2, 6, 2), rand(4, 3, 2))


@pytest.mark.parametrize("backward", [True, False], ids=["training", "inference"])
def test_repeat_of_a_permuted_tensor_then_view(backward: bool) -> None:
    """WavLM's relative position bias: a permuted tensor repeated over the batch and viewed
    (``repeat``, our decomposition: contiguous as torch's kernel; torch's strided it, and the
    ``view`` failed to trace), and a repeat of a transposed tensor with a new leading dim."""
    check(
        lambda w: w.permute(2, 0, 1).unsqueeze(0).repeat(2, 1, 1, 1).view(8, 5, 3) * w.sum(),
        rand(5, 3, 4),
        backward=backward,
    )
    check(lambda x: x.t().repeat(2, 3, 1).view(2, 3, -1), rand(3, 4), backward=backward)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag_of_fixed_bags(mode: str) -> None:
    """``nn.EmbeddingBag`` on a 2-d input: bags of one length (offsets an ``arange``), the
    weight's gradient (``max``: at the rows the maxima came from)."""
    ids = torch.randint(0, 9, (3, 4), generator=GENERATOR)
    check(lambda i, w: F.embedding_bag(i, w, mode=mode), ids, rand(9, 5))


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag_with_offsets(mode: str) -> None:
    """A 1-d input and offsets given at run time (a model input), one bag empty (0, as
    torch's), and with ``include_last_offset``."""
    ids = torch.randint(0, 9, (8,), generator=GENERATOR)
    check(lambda i, o, w: F.embedding_bag(i, w, o, mode=mode), ids, torch.tensor([0, 2, 2, 5]),
          rand(9, 5))  # fmt: skip
    check(lambda i, o, w: F.embedding_bag(i, w, o, mode=mode, include_last_offset=True), ids,
          torch.tensor([0, 3, 3, 8]), rand(9, 5))  # fmt: skip


def test_embedding_bag_with_per_sample_weights() -> None:
    ids = torch.randint(0, 9, (8,), generator=GENERATOR)
    check(lambda i, w, p: F.embedding_bag(i, w, per_sample_weights=p, mode="sum"),
          ids.view(2, 4), rand(9, 5), rand(2, 4))  # fmt: skip
    check(lambda i, o, w, p: F.embedding_bag(i, w, o, per_sample_weights=p, mode="sum"),
          ids, torch.tensor([0, 3, 3]), rand(9, 5), rand(8))  # fmt: skip


def test_embedding_bag_padding_idx_is_refused_in_one_line() -> None:
    with pytest.raises(UnsupportedOpError) as error:
        check(lambda i, w: F.embedding_bag(i, w, padding_idx=0), torch.tensor([[0, 1], [2, 0]]),
              rand(3, 4))  # fmt: skip
    message = str(error.value)
    assert "aten._embedding_bag" in message and "harness.py:" in message and "\n" not in message
    assert "padding_idx=0 is not supported yet" in message
