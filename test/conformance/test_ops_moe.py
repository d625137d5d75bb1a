"""Conformance of the ops a mixture of experts routes its tokens with (Mixtral's router and
transformers' grouped experts, ``compiler/frontend/decompositions.py``): ``topk``, ``sort``,
``histc``, ``scatter`` of several values a row (``topk``'s gradient), ``index_put`` that
overwrites, and transformers' grouped matmul, forward and backward, against torch on the CPU.

Tolerances (normwise relative, see harness.py): 1e-5, every result a selection, a count or a
sum of products."""

from __future__ import annotations

import pytest
import torch
from harness import GENERATOR, check

from compiler.frontend import UnsupportedOpError


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GENERATOR)


@pytest.mark.parametrize(
    "k,dim,largest", [(1, 1, True), (3, 1, True), (2, 0, False), (7, -1, True)]
)
def test_topk_values_and_indices(k: int, dim: int, largest: bool) -> None:
    def fn(x):
        values, indices = torch.topk(x, k, dim=dim, largest=largest)
        return values * 2 + indices.float()

    check(fn, rand(4, 7))


def test_topk_of_a_router_renormalised() -> None:
    """Mixtral's router: the two largest probabilities of each token, scaled to sum to 1."""

    def fn(logits):
        top, _ = torch.topk(torch.softmax(logits, -1), 2, dim=-1)
        return top / top.sum(-1, keepdim=True)

    check(fn, rand(6, 5), rtol=1e-4)  # exp on the path


def test_topk_takes_an_infinite_value_and_no_value_twice() -> None:
    x = torch.tensor([[1.0, float("-inf"), 0.5], [float("-inf"), 2.0, float("inf")]])
    check(lambda x: torch.topk(x, 3).indices.float(), x, backward=False)


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("dim", [0, 1])
def test_sort_of_floats(dim: int, descending: bool) -> None:
    def fn(x):
        values, indices = torch.sort(x, dim=dim, descending=descending)
        return values * 3 + indices.float()

    check(fn, rand(5, 6))


@pytest.mark.parametrize("descending", [False, True])
def test_stable_sort_of_integers_keeps_equal_ones_in_order(descending: bool) -> None:
    ids = torch.tensor([3, 1, 0, 3, 1, 2, 0, 3, 1, 1])

    def fn(x, ids):
        values, order = torch.sort(ids, stable=True, descending=descending)
        return x[order] * values.float().unsqueeze(-1)

    check(fn, rand(10, 3), ids)


@pytest.mark.parametrize("edges", [(0.0, 3.0), (-1.0, 1.0), (0.0, 0.0)], ids=str)
def test_histc(edges: tuple[float, float]) -> None:
    low, high = edges
    x = torch.tensor([0.0, 1.0, 2.0, 3.0, 3.0, 2.5, -1.0, 4.0, 0.25, -0.5, 1.0, 0.999])
    check(lambda x: torch.histc(x * 1.0, bins=4, min=low, max=high), x, backward=False)


def test_histc_of_one_value_widens_its_range() -> None:
    check(lambda x: torch.histc(x * 0 + 2, bins=3), rand(5), backward=False)


def test_scatter_of_several_values_a_row_the_last_write_stays() -> None:
    index = torch.tensor([[2, 1], [0, 0], [4, 3]])  # row 1 writes place 0 twice
    check(lambda x, s, i: x.scatter(1, i, s), rand(3, 5), rand(3, 2), index)
    rows = torch.tensor([[3, 0, 1], [3, 2, 1]])  # columns 0 and 2 write a row twice
    check(lambda x, i: x.scatter(0, i, 7.0) * 2, rand(4, 3), rows)


def test_scatter_of_too_many_values_a_row_is_refused_in_one_line() -> None:
    index = torch.arange(65).remainder(5).reshape(1, 65)
    with pytest.raises(UnsupportedOpError) as error:
        check(lambda x, i: x.scatter(1, i, 7.0), rand(1, 5), index)
    message = str(error.value)
    assert "aten.scatter.value" in message and "harness.py:" in message and "\n" not in message
    assert "65 values a row" in message and "at most 64" in message


def test_index_put_overwrites_the_last_write_staying() -> None:
    def fn(x, v, at):
        y = x * 2
        y[at] = v
        return y

    check(fn, rand(6, 3), rand(5, 3), torch.tensor([4, 0, 4, -1, 2]))


def test_inverse_permutation_by_index_put() -> None:
    """``inverse[perm] = arange(n)``: how transformers' experts put the tokens back."""

    def fn(x, perm):
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(perm.shape[0])
        return x[perm][inverse] * 2

    check(fn, rand(7, 2), torch.tensor([3, 6, 0, 5, 1, 4, 2]))


def test_grouped_matmul_of_transformers_experts() -> None:
    """transformers' ``grouped_mm_fallback``: each token-expert pair, sorted by expert, times
    its expert's weight; the offsets from ``histc`` of the sorted ids, as its experts compute
    them. Expert 2 gets no token and the last offset leaves no row out."""
    pytest.importorskip("transformers")
    import transformers.integrations.moe  # noqa: F401 - registers the op

    grouped = torch.ops.transformers.grouped_mm_fallback
    ids = torch.tensor([1, 0, 3, 1, 0, 0, 3, 1, 1])

    def fn(x, w, ids):
        sorted_ids, order = torch.sort(ids)
        counts = torch.histc(sorted_ids.float(), bins=4, min=0, max=3)
        offsets = torch.cumsum(counts, dim=0, dtype=torch.int32)
        return grouped(x[order], w, offsets)

    check(fn, rand(9, 5), rand(4, 5, 3), ids)


def test_grouped_matmul_rows_past_the_last_offset_are_zero() -> None:
    pytest.importorskip("transformers")
    import transformers.integrations.moe  # noqa: F401 - registers the op

    grouped = torch.ops.transformers.grouped_mm_fallback

    def fn(x, w, counts):
        offsets = torch.cumsum(counts.clamp(0, 2), dim=0, dtype=torch.int32)
        return grouped(x, w, offsets) + 1

    check(fn, rand(6, 4), rand(2, 4, 3), torch.tensor([2, 1]))
