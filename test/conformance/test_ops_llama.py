"""Conformance of the Llama family's ops, forward and backward, against torch on the CPU.

cos and sin, the rotary position embedding as Llama applies it (``rotate_half``), RMSNorm, the
SiLU-gated MLP, grouped-query attention (``repeat_kv``, and sdpa's ``enable_gqa``) and the causal
masks as transformers builds them (``create_causal_mask``, the sliding-window one of Mistral,
with a padding mask), each through the library's own functions and modules where it has them.

Tolerances (normwise relative, see harness.py): 1e-5 for fp32 arithmetic, 1e-4 where a
transcendental function (cos, sin, exp, rsqrt) sits on the path.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from harness import GENERATOR, check

transformers = pytest.importorskip("transformers")
from transformers import LlamaConfig, MistralConfig  # noqa: E402
from transformers.integrations.sdpa_attention import sdpa_attention_forward  # noqa: E402
from transformers.masking_utils import (  # noqa: E402
    create_causal_mask,
    create_sliding_window_causal_mask,
)
from transformers.models.llama.modeling_llama import (  # noqa: E402
    LlamaMLP,
    LlamaRMSNorm,
    apply_rotary_pos_emb,
    eager_attention_forward,
    repeat_kv,
    rotate_half,
)

TRANSCENDENTAL = 1e-4


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GENERATOR)


def _config(attn: str, **extra: object) -> LlamaConfig:
    """A tiny Llama config (hidden 16, 4 heads of 4, 2 key/value heads) with the attention
    implementation ``attn``."""
    config = LlamaConfig(
        vocab_size=16, hidden_size=16, intermediate_size=24, num_attention_heads=4,
        num_key_value_heads=2, num_hidden_layers=1, **extra,
    )  # fmt: skip
    config._attn_implementation = attn
    return config


# -- cos and sin ------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [torch.cos, torch.sin], ids=["cos", "sin"])
def test_cos_sin(fn) -> None:
    # Angles as RoPE makes them (positions up to 64 times frequencies up to 1) and small ones.
    check(fn, torch.cat([rand(37) * 20, rand(20) * 0.1]), rtol=TRANSCENDENTAL)


def test_cos_sin_of_a_product_broadcast() -> None:
    check(lambda a, b: torch.cos(a * b) - 2 * torch.sin(b + a), rand(5, 1), rand(7), rtol=1e-4)


# -- rotary position embedding --------------------------------------------------------------


def test_rotate_half() -> None:
    check(rotate_half, rand(2, 3, 5, 8))


def _rotary(q, k, inv_freq, position_ids):
    """LlamaRotaryEmbedding.forward with ``inv_freq`` an argument (so its gradient is checked:
    the backward of cos and sin), then the library's ``apply_rotary_pos_emb``."""
    freqs = position_ids[..., None].float() * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    q_embed, k_embed = apply_rotary_pos_emb(q, k, emb.cos(), emb.sin())
    return torch.cat([q_embed, k_embed], dim=1)


def test_rope_as_llama_applies_it() -> None:
    batch, heads, kv_heads, seq, dim = 2, 4, 2, 7, 8
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    positions = torch.arange(seq).unsqueeze(0).expand(batch, seq) + torch.tensor([[0], [9]])
    q, k = rand(batch, heads, seq, dim), rand(batch, kv_heads, seq, dim)
    check(_rotary, q, k, inv_freq, positions, rtol=TRANSCENDENTAL)


# -- RMSNorm and the SiLU-gated MLP ---------------------------------------------------------


def test_rms_norm() -> None:
    norm = LlamaRMSNorm(12, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(rand(12))
    check(norm, rand(3, 5, 12), rtol=TRANSCENDENTAL)


def test_silu_gated_mlp() -> None:
    torch.manual_seed(0)
    mlp = LlamaMLP(_config("sdpa"))
    check(mlp, rand(2, 5, 16), rtol=TRANSCENDENTAL)


def test_silu_gated_mlp_with_biases() -> None:
    torch.manual_seed(1)
    mlp = LlamaMLP(_config("sdpa", mlp_bias=True))
    check(mlp, rand(3, 16), rtol=TRANSCENDENTAL)


# -- grouped-query attention ---------------------------------------------------------------


def test_repeat_kv() -> None:
    check(lambda kv: repeat_kv(kv, 3) * 1.5, rand(2, 2, 5, 4))


class _Groups(torch.nn.Module):
    """What the attention functions read off the attention module: 4 query heads share 2
    key/value heads, causal."""

    num_key_value_groups = 2
    is_causal = True


def test_grouped_query_attention_eager() -> None:
    """Llama's eager attention: repeat_kv, scaled scores, a causal float mask, softmax."""
    seq = 6

    def attend(q, k, v):
        mask = torch.full((seq, seq), torch.finfo(torch.float32).min).triu(1)[None, None]
        out, _ = eager_attention_forward(_Groups().eval(), q, k, v, mask, scaling=0.5)
        return out

    check(attend, rand(2, 4, seq, 4), rand(2, 2, seq, 4), rand(2, 2, seq, 4), rtol=1e-4)


def test_grouped_query_attention_sdpa_enable_gqa() -> None:
    """sdpa's own grouped-query form, which transformers uses when there is no mask."""

    def attend(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    check(attend, rand(2, 4, 5, 4), rand(2, 2, 5, 4), rand(2, 2, 5, 4), rtol=1e-4)


# -- the causal masks as transformers builds them ---------------------------------------------


def _attention(config, q, k, v, mask):
    """The model's attention implementation (``config._attn_implementation``) through ``mask``:
    sdpa (a bool mask, or ``is_causal`` when there is none) or eager (an additive one)."""
    if config._attn_implementation == "sdpa":
        return sdpa_attention_forward(_Groups().eval(), q, k, v, mask, scaling=0.5)[0]
    return eager_attention_forward(_Groups().eval(), q, k, v, mask, scaling=0.5)[0]


def _masked_attention(make_mask, config):
    """Attention through the mask ``make_mask`` builds from a padding mask (an input), as the
    model hands it to its attention implementation."""

    def attend(q, k, v, attention_mask):
        batch, seq = attention_mask.shape
        mask = make_mask(
            config=config,
            inputs_embeds=torch.zeros(batch, seq, config.hidden_size),
            attention_mask=attention_mask,
            past_key_values=None,
            position_ids=torch.arange(seq).unsqueeze(0),
        )
        return _attention(config, q, k, v, mask)

    return attend


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_causal_mask_as_the_model_builds_it(attn: str) -> None:
    """No padding mask, positions ``0..n-1`` (what LlamaModel passes): under tracing the mask is
    built from the positions; in eager torch sdpa may skip it for ``is_causal``."""
    config = _config(attn)

    def attend(q, k, v):
        batch, _, seq, _ = q.shape
        mask = create_causal_mask(
            config=config,
            inputs_embeds=torch.zeros(batch, seq, config.hidden_size),
            attention_mask=None,
            past_key_values=None,
            position_ids=torch.arange(seq).unsqueeze(0),
        )
        return _attention(config, q, k, v, mask)

    check(attend, rand(2, 4, 6, 4), rand(2, 2, 6, 4), rand(2, 2, 6, 4), rtol=1e-4)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_causal_mask_with_padding(attn: str) -> None:
    config = _config(attn)
    # Right padding: every query still sees at least its first token.
    padding = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    q, k, v = rand(2, 4, 6, 4), rand(2, 2, 6, 4), rand(2, 2, 6, 4)
    check(_masked_attention(create_causal_mask, config), q, k, v, padding, rtol=1e-4)


def test_sliding_window_causal_mask() -> None:
    config = MistralConfig(
        vocab_size=16, hidden_size=16, num_attention_heads=4, num_key_value_heads=2,
        num_hidden_layers=1, sliding_window=3,
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    padding = torch.ones(2, 7, dtype=torch.int64)
    q, k, v = rand(2, 4, 7, 4), rand(2, 2, 7, 4), rand(2, 2, 7, 4)
    attend = _masked_attention(create_sliding_window_causal_mask, config)
    check(attend, q, k, v, padding, rtol=1e-4)
