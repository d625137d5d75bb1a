"""Conformance of the transformer ops, forward and backward, against torch on the CPU.

Shapes are small and odd (they do not divide the 16-lane tiles) and include broadcasting.
Tolerances (normwise relative, see harness.py): 1e-5 for fp32 arithmetic, gathers, slices and
reductions; 1e-4 where a transcendental function (exp, tanh, erf, rsqrt) sits on the path,
since the fabric's and torch's float32 implementations differ by an ulp or two and softmax,
layer norm and GELU amplify that slightly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from harness import GENERATOR, check

from compiler.driver import compile_in_memory
from compiler.frontend import ModelSpec
from compiler.frontend.errors import FrontendError
from compiler.targets import get_target
from runtime.fabric import FabricError
from runtime.session import InferenceSession, TrainingSession

TRANSCENDENTAL = 1e-4


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GENERATOR)


def ints(high: int, *shape: int) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=GENERATOR)


# -- views: slice, select, split, flip, expand, permute -------------------------------------


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x[:, 1:6:2],
        lambda x: x[-3:, ::3],
        lambda x: x[1:2, 2:],
        lambda x: x[:, 5],
        lambda x: x[2],
        lambda x: x.narrow(1, 2, 3),
        lambda x: x.flip(1),
        lambda x: x.flip(0, 1)[1:, :4],
        lambda x: x.t()[2:5],
    ],
)
def test_slice_select_flip(fn) -> None:
    check(fn, rand(5, 7))


@pytest.mark.parametrize("size,dim", [(3, 1), (2, 0), ([1, 4, 2], 1)])
def test_split(size, dim) -> None:
    check(
        lambda x: torch.cat([p * (i + 1) for i, p in enumerate(x.split(size, dim))], dim),
        rand(5, 7),
    )


def test_unbind_chunk() -> None:
    check(lambda x: torch.stack(x.unbind(1)[::2], 0) + x.chunk(3, 1)[0].sum(), rand(4, 6))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat(dim: int) -> None:
    shapes = {0: ((2, 3, 5), (4, 3, 5)), 1: ((3, 1, 5), (3, 4, 5)), -1: ((3, 4, 2), (3, 4, 5))}
    a, b = shapes[dim]
    last = a[-1] * 2 + b[-1] if dim == -1 else a[-1]
    check(lambda x, y, z: torch.cat([x, y, x], dim) * z, rand(*a), rand(*b), rand(last))


@pytest.mark.parametrize("dim", [0, 2])
def test_stack(dim: int) -> None:
    check(lambda x, y: torch.stack([x, y * 2, x * y], dim), rand(3, 5), rand(3, 5))


def test_expand_permute() -> None:
    check(lambda x, y: x.expand(4, 3, 5).permute(2, 0, 1) * y, rand(3, 1), rand(5, 4, 3))


@pytest.mark.parametrize("times", [(2, 3), (3, 1, 2)])
def test_repeat(times: tuple[int, ...]) -> None:
    """``Tensor.repeat`` (tiling, GPT-J's rotary sin and cos), by torch's decomposition."""
    check(lambda x: x.repeat(*times) * torch.arange(1.0, 16.0).reshape(3, 5).repeat(*times),
          rand(3, 5))  # fmt: skip


def test_baddbmm() -> None:
    """``beta * x + alpha * (a @ b)`` batched (BLOOM's attention scores with ALiBi), by torch's
    decomposition."""
    check(lambda x, a, b: torch.baddbmm(x, a, b, beta=0.5, alpha=0.25), rand(3, 1, 6),
          rand(3, 5, 7), rand(3, 7, 6))  # fmt: skip


# -- masks, softmax, attention ---------------------------------------------------------------


@pytest.mark.parametrize("diagonal", [0, 1, -2])
def test_tril_triu(diagonal: int) -> None:
    check(lambda x: x.tril(diagonal) + 2 * x.triu(diagonal), rand(2, 5, 7))


def test_causal_mask_softmax() -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        t = x.shape[-1]
        mask = torch.arange(t)[None, :] > torch.arange(t)[:, None]
        return x.masked_fill(mask, float("-inf")).softmax(-1)

    check(fn, rand(3, 6, 6), rtol=TRANSCENDENTAL)


def test_causal_mask_from_a_buffer_like_input() -> None:
    def fn(x, keep):
        return x.masked_fill(~keep, float("-inf")).softmax(-1)

    check(fn, rand(2, 5, 5), torch.ones(5, 5, dtype=torch.bool).tril(), rtol=TRANSCENDENTAL)


@pytest.mark.parametrize("shape,dim", [((5, 9), -1), ((3, 4, 7), 1), ((2, 3, 5), 0)])
def test_softmax_log_softmax(shape, dim) -> None:
    check(lambda x: x.softmax(dim) + x.log_softmax(dim), rand(*shape), rtol=TRANSCENDENTAL)


@pytest.mark.parametrize("causal", [True, False])
def test_scaled_dot_product_attention(causal: bool) -> None:
    q, k, v = rand(2, 3, 5, 4), rand(2, 3, 7, 4), rand(2, 3, 7, 6)
    if causal:
        k, v = k[:, :, :5], v[:, :, :5]
    check(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
        q, k, v, rtol=TRANSCENDENTAL,
    )  # fmt: skip


def test_attention_with_masks() -> None:
    bool_mask = torch.rand(5, 5, generator=GENERATOR) > 0.3
    bool_mask[:, 0] = True  # every row sees something

    def fn(q, k, v, b, m):
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        return a + F.scaled_dot_product_attention(q, k, v, attn_mask=b)

    q, k, v, b = rand(2, 5, 4), rand(2, 5, 4), rand(2, 5, 3), rand(1, 5, 5)
    check(fn, q, k, v, b, bool_mask, rtol=TRANSCENDENTAL)


def test_fully_masked_rows_are_zero() -> None:
    """``_safe_softmax`` (what attention's math form uses) gives 0, not NaN, for a row with
    nothing to attend to."""
    mask = torch.ones(4, 4, dtype=torch.bool).tril()
    mask[2] = False
    check(
        lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
        rand(1, 4, 3), rand(1, 4, 3), rand(1, 4, 3), mask, rtol=TRANSCENDENTAL,
    )  # fmt: skip


# -- normalization and activations ------------------------------------------------------------


@pytest.mark.parametrize("shape,norm", [((3, 5, 7), (7,)), ((4, 9), (9,)), ((2, 3, 6), (3, 6))])
def test_layer_norm(shape, norm) -> None:
    check(
        lambda x, w, b: F.layer_norm(x, norm, w, b, eps=1e-5),
        rand(*shape), rand(*norm), rand(*norm), rtol=TRANSCENDENTAL,
    )  # fmt: skip


def test_layer_norm_without_affine() -> None:
    check(lambda x: F.layer_norm(x, (11,)), rand(3, 11), rtol=TRANSCENDENTAL)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate: str) -> None:
    check(lambda x: F.gelu(x * 2, approximate=approximate), rand(5, 13), rtol=TRANSCENDENTAL)


def test_var_mean_and_var() -> None:
    check(lambda x: torch.stack(torch.var_mean(x, 1, correction=0)) + x.var(0).sum(), rand(5, 7))


@pytest.mark.parametrize("dim", [0, 1])
def test_cumsum(dim: int) -> None:
    check(lambda x: torch.cumsum(x, dim), rand(5, 7))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_loss(reduction: str) -> None:
    check(lambda x, y: F.mse_loss(x, y, reduction=reduction).reshape(1), rand(4, 7), rand(4, 7))


# -- gather and scatter-add --------------------------------------------------------------------


@pytest.mark.parametrize("idx_shape", [(3, 4), (7,), (2, 1, 5)])
def test_embedding(idx_shape) -> None:
    check(lambda w, i: F.embedding(i, w), rand(11, 5), ints(11, *idx_shape))


def test_embedding_repeated_indices_and_padding() -> None:
    idx = torch.tensor([[1, 3, 1, 1], [0, 3, 2, 1]])
    check(lambda w, i: F.embedding(i, w, padding_idx=3), rand(6, 9), idx)


@pytest.mark.parametrize("dim", [0, 1])
def test_index_select(dim: int) -> None:
    check(lambda x, i: x.index_select(dim, i) * 2, rand(5, 6), torch.tensor([4, 0, 4, 2]))


def test_index_with_a_tensor() -> None:
    check(lambda x, i: x[:, i] + x[i[:2]].sum(), rand(5, 6, 3), torch.tensor([[1, 4], [0, 4]]))


def test_index_with_several_tensors() -> None:
    """Broadcast index tensors on adjacent dims (how Hugging Face builds causal masks)."""
    rows, cols = torch.tensor([[0], [2], [3]]), torch.tensor([[1, 4]])
    check(lambda x, r, c: x[:, r, c] * 2, rand(2, 4, 5), rows, cols)


def test_index_with_negative_indices() -> None:
    """A negative index counts from the end of its dim: a constant list (Falcon's multi-query
    ``qkv[..., [-2], :]``) and an input tensor, through the gradient (``index_put``) too."""
    check(lambda x: x[..., [-2], :] * 2 + x[:, [-1]].sum(), rand(2, 3, 5, 4))
    check(lambda x, r, c: x[r, c] * 3, rand(4, 5), torch.tensor([[-1], [2]]),
          torch.tensor([[-5, 1, -2]]))  # fmt: skip


def test_index_put_accumulate() -> None:
    def fn(x, v, i):
        return torch.index_put(x, (i,), v, accumulate=True)

    check(fn, rand(6, 4), rand(5, 4), torch.tensor([1, 3, 1, 0, 1]))
    check(fn, rand(6, 4), rand(5, 4), torch.tensor([1, -3, 1, -6, -1]))


def test_index_out_of_range_is_a_one_line_error() -> None:
    module = torch.nn.Embedding(5, 3)
    spec = ModelSpec(
        name="emb",
        module=module,
        example_inputs=(torch.zeros(4, dtype=torch.int64),),
        example_targets=(),
        loss_fn=None,
        optimizer=None,
        source_file=Path(__file__),
    )
    program = compile_in_memory(spec, inference=True, target=get_target("plasticine"))
    session = InferenceSession(program, {"weight": module.weight.detach().numpy()})
    with pytest.raises(FabricError, match=r"index value 7 out of range \[0, 5\)"):
        session.run({"input.0": np.array([0, 1, 7, 2])})


# -- creation ops and casts --------------------------------------------------------------------


def test_arange_full_scalar_tensor() -> None:
    def fn(x):
        t = x.shape[1]
        ramp = torch.arange(1, 2 * t + 1, 2) * 0.5
        return x * ramp + torch.full((t,), 2.0) + torch.scalar_tensor(3.0) + torch.arange(t)

    check(fn, rand(4, 6))


def test_dtype_casts() -> None:
    def fn(x, i):
        return x * i.to(torch.float32) + (x > 0).float() + (i > 3).long() * x

    check(fn, rand(3, 5), ints(7, 3, 5))


# -- dropout ---------------------------------------------------------------------------------


def test_dropout_off() -> None:
    check(
        lambda x: F.dropout(x, 0.0, training=True) + F.dropout(x, 0.5, training=False), rand(5, 7)
    )


class _Dropout(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(64, 33))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.w * x, 0.25) * 3


def _dropout_step(seed: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    spec = ModelSpec(
        name="dropout",
        module=_Dropout(),
        example_inputs=(torch.ones(64, 33),),
        example_targets=(),
        loss_fn=lambda out: out.sum(),
        optimizer=None,
        source_file=Path(__file__),
    )
    program = compile_in_memory(spec, inference=False, target=get_target("plasticine"))
    session = TrainingSession(program, {"w": np.ones((64, 33), np.float32)}, step=step)
    session.seed = seed
    result = session.step({"input.0": np.full((64, 33), 2.0, np.float32)}, {})
    return result.outputs["output.0"], result.gradients["w.grad"]


def test_dropout_on_the_fabric() -> None:
    """Kept elements are scaled by 1/(1-p), the rest 0; the gradient uses the same mask; the
    mask is a function of the seed and the step, and about p of the elements drop."""
    out, grad = _dropout_step(seed=1, step=0)
    kept = out != 0
    np.testing.assert_allclose(out[kept], 2 * 3 / 0.75, rtol=1e-6)
    np.testing.assert_allclose(grad, np.where(kept, 2 * 3 / 0.75, 0), rtol=1e-6)
    assert abs(1 - kept.mean() - 0.25) < 0.05
    again, _ = _dropout_step(seed=1, step=0)
    np.testing.assert_array_equal(out, again)
    other_seed, _ = _dropout_step(seed=2, step=0)
    other_step, _ = _dropout_step(seed=1, step=1)
    assert (other_seed != out).any() and (other_step != out).any()


def test_unsupported_indexing_is_refused_with_the_line() -> None:
    with pytest.raises(FrontendError, match=r"aten\.index\.Tensor.*not next to each other"):
        check(lambda x, i, j: x[i, :, j], rand(6, 4, 5), ints(6, 3), ints(5, 3))


@pytest.mark.parametrize("dim", [0, 1])
def test_gather_and_scatter_add(dim: int) -> None:
    """torch.gather (BERT gathers its token-type buffer); its gradient is a scatter_add."""
    index = torch.tensor([[0, 3, 3], [2, 1, 0]])
    check(lambda x, i: torch.gather(x, dim, i), rand(4, 5), index)
