"""Conformance of the storage ops (empty tensors, copies, ``as_strided`` and its scatter),
``floor`` and int32 arithmetic, forward and backward, against torch on the CPU.

These come into graphs from library code rather than from models written for us: MobileNetV2's
in-place dropout (``empty_like``; its gradient ``new_empty_strided`` and ``copy``), the
channels-last restride of Swin's 1x1 adaptive pooling (``as_strided``; its gradient
``as_strided_scatter``), Swin's drop path (``floor``), RoBERTa's position ids, LongT5's
local attention mask and ProphetNet's relative position buckets (int32).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from harness import GENERATOR, check

from compiler.frontend.errors import FrontendError


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GENERATOR)


# -- empty tensors and copies -----------------------------------------------------------------


def test_copy_into_an_empty_tensor() -> None:
    """``empty_like(x).copy_(y)``: y's values (broadcast, cast) in x's shape; the gradient
    goes to y."""

    def fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(x).copy_(y * 2) * x

    check(fn, rand(3, 5), rand(5))


def test_new_empty_strided_filled_by_copy() -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return x.new_empty_strided((4, 3), (1, 4)).copy_(x.t()) + 1

    check(fn, rand(3, 4))


# -- as_strided and its gradient ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "stride", "offset"),
    [((3, 4), (5, 1), 2), ((2, 3), (1, 6), 1), ((4, 5), (5, 1), 0), ((2, 2, 3), (10, 1, 3), 2)],
)
def test_as_strided(size: tuple[int, ...], stride: tuple[int, ...], offset: int) -> None:
    check(lambda x: torch.as_strided(x, size, stride, offset) * 3, rand(4, 5))


def test_as_strided_of_a_transposed_tensor() -> None:
    """The storage of ``x.t()`` is ``x``'s row-major elements: torch addresses it so."""
    check(lambda x: x.t().as_strided((2, 3), (1, 5), 2), rand(4, 5))


def test_as_strided_windows_overlap() -> None:
    """Overlapping windows (each element in several): the forward is a view; the gradient adds
    the windows up."""
    check(lambda x: x.as_strided((4, 3), (2, 1)) * 2, rand(10))


def test_adaptive_pool_of_a_channels_last_view() -> None:
    """Swin's head: a 1x1 adaptive pooling of a transposed tensor is a mean restrided
    channels-last (``as_strided``), whose gradient is an ``as_strided_scatter``."""
    check(lambda x: F.adaptive_avg_pool1d(x.transpose(1, 2), 1).flatten(1), rand(2, 5, 3))


def test_as_strided_of_a_slice_is_refused() -> None:
    """A column slice is not its storage (the other columns are between its rows)."""
    with pytest.raises(FrontendError, match=r"as_strided.*storage is not its own elements"):
        check(lambda x: x[:, 1:3].as_strided((2, 2), (1, 2)), rand(4, 5))


# -- floor -------------------------------------------------------------------------------------


def test_floor() -> None:
    x = rand(4, 6) * 3
    x[0, :4] = torch.tensor([2.0, -2.0, -0.5, 0.0])
    check(lambda x: torch.floor(x) * x, x)


def test_floor_of_large_and_special_values() -> None:
    x = torch.tensor([1.5e7, -1.5e7 - 0.5, 3.0e9, -3.0e9, 2.0**23 + 2, -(2.0**24) - 2])
    check(lambda x: torch.floor(x), x, backward=False)


# -- int32 -------------------------------------------------------------------------------------


def test_int32_position_ids_as_roberta_computes_them() -> None:
    """``(cumsum(mask).type_as(mask) + 0) * mask`` in int32, ``mask = ids != pad``: at most the
    sequence length, so computing it in int64 gives torch's numbers."""

    def fn(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        mask = ids.ne(1).int()
        positions = (torch.cumsum(mask, dim=1).type_as(mask) + 0) * mask
        return x * (positions.long() + 1)

    ids = torch.tensor([[1, 4, 4, 2, 1, 3, 5], [3, 1, 2, 2, 4, 1, 1]])
    check(fn, rand(2, 7), ids)


def test_int32_absolute_relative_positions_as_longt5_computes_them() -> None:
    """LongT5's local attention mask: ``abs(positions - centres) < block`` in int32, the
    positions an int32 ``arange`` (an absolute value of a bounded difference is bounded)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(12, dtype=torch.int32)
        relative = positions.unsqueeze(0) - positions[4:-4].unsqueeze(1)
        near = torch.abs(relative) < 3
        return torch.where(near, x, 0.0) * (torch.abs(relative - 2).float() + 1)

    check(fn, rand(4, 12))


def test_int32_counts_from_floats_holding_integers() -> None:
    """Counts kept as floats (``histc``'s, a mixture of experts' tokens per expert) summed in
    int32: integers a float holds exactly are bounded as integers; a clamp bounds whatever it
    clamps."""

    def fn(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        counts = (ids.unsqueeze(1) == torch.arange(3)).sum(0).float()
        ends = torch.cumsum(counts, dim=0, dtype=torch.int32)
        capped = torch.cumsum(ids.clamp(-2, 5).int(), dim=0)
        return x * ends.float() + capped.float().sum()

    check(fn, rand(3), torch.tensor([2, 0, 2, 1, -7, 9]))


def test_int32_of_any_float_is_torchs() -> None:
    """A float cast to int32 truncates, and a value outside int32 (an infinity, NaN, 3e9)
    becomes ``-2**31``, as torch's CPU kernel makes it: so the cast is within int32 whatever
    the float."""
    x = torch.tensor([-math.inf, math.inf, math.nan, 3e9, -3e9, 2.5, -2.5, 2147483520.0, 7.9])
    check(lambda x: x.to(torch.int32).to(torch.float32), x, backward=False)


def test_int32_relative_position_buckets_as_prophetnet_computes_them() -> None:
    """ProphetNet's buckets: relative positions of its two streams (``cat``, ``repeat``, ``max``
    with zeros bound them), and the log of the larger ones cast to int32, minus infinity at 0
    (cast to ``-2**31``, then selected away)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(1, 9).repeat(1, 1)
        streams = torch.cat((positions - 1, positions), dim=-1).unsqueeze(1)
        relative = streams.repeat(1, 8, 1) - positions.unsqueeze(-1)
        inverse = torch.max(-relative, torch.zeros_like(relative))
        large = 4 + torch.log(inverse.float() / 4) / math.log(32 / 4) * 4
        large = torch.min(large, torch.ones_like(large) * 7).int()
        buckets = torch.where(inverse < 4, inverse.int(), large)
        return x * buckets.float()

    check(fn, rand(1, 8, 16))


def test_int32_of_a_float_that_may_hold_any_value_is_refused() -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return x * torch.cumsum(x.detach().float() * 1e9, dim=0, dtype=torch.int32).float()

    with pytest.raises(FrontendError, match=r"cumsum.*int32 result not provably within"):
        check(fn, rand(3))


def test_int32_that_may_wrap_around_is_refused() -> None:
    """Token ids times a million may pass 2**31 in int32 (torch wraps around, int64 does not)."""

    def fn(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return x * (ids.int() * 1000000).float()

    with pytest.raises(FrontendError, match=r"_to_copy.*int32 result not provably within"):
        check(fn, rand(2, 3), torch.ones(2, 3, dtype=torch.int64))


def test_int32_model_input_is_refused() -> None:
    with pytest.raises(FrontendError, match=r"input\.0 has unsupported dtype torch\.int32"):
        check(lambda x, i: x * i, rand(2, 3), torch.ones(2, 3, dtype=torch.int32))
