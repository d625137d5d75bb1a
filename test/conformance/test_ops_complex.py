"""Conformance of complex numbers, which the frontend rewrites as pairs of reals
(``compiler/frontend/complex_pairs.py``): rotary embeddings in complex form (DeepSeek-V2's,
Llama 4's), complex products and Fourier transforms (FNet's ``fftn``, ``rfft`` and ``irfft``),
forward and backward, against torch on the CPU.

Tolerances (normwise relative, see harness.py): 1e-4 where cos and sin sit on the path, 1e-5
for products alone."""

from __future__ import annotations

import pytest
import torch
from harness import GENERATOR, check

from compiler.frontend import UnsupportedOpError


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GENERATOR)


def test_rotary_embedding_in_complex_numbers() -> None:
    """``view_as_complex`` of the query's pairs, times ``polar(1, angle)`` scaled,
    ``view_as_real``, flattened."""

    def fn(q):
        frequencies = 1.0 / 10000 ** (torch.arange(0, 6, 2) / 6)
        angles = torch.arange(5.0).unsqueeze(-1) * frequencies
        turns = torch.polar(torch.ones_like(angles), angles) * 0.5
        pairs = torch.view_as_complex(q.reshape(2, 5, 3, 2))
        return torch.view_as_real(pairs * turns).flatten(2)

    check(fn, rand(2, 5, 6), rtol=1e-4)


def test_products_of_complex_values_and_their_gradients() -> None:
    """Complex times complex (both with gradients: each one's is the other's conjugate), and
    times a real tensor and a number."""

    def fn(a, b, r):
        za, zb = torch.view_as_complex(a), torch.view_as_complex(b)
        return torch.view_as_real(za * zb * r.unsqueeze(-1) * 3.0)

    check(fn, rand(4, 3, 2), rand(3, 2), rand(4))


def test_fnets_fourier_transform_over_tokens_and_features() -> None:
    """FNet's mixing: the real part of ``fftn`` over two dims of a real tensor (made complex,
    then ``_fft_c2c`` forward; its gradient the inverse transform)."""
    check(lambda x: torch.fft.fftn(x, dim=(1, 2)).real, rand(2, 5, 6), rtol=1e-4)


def test_fft_and_ifft_at_torchs_normalizations() -> None:
    """``fft`` at ``norm="ortho"`` (1 / sqrt(n)) along the last dim, then ``ifft`` at
    ``norm="forward"`` (no scaling on the inverse) along the first, of a complex input."""

    def fn(a):
        spectrum = torch.fft.fft(torch.view_as_complex(a), norm="ortho") * 2.0
        return torch.view_as_real(torch.fft.ifft(spectrum, dim=0, norm="forward"))

    check(fn, rand(4, 6, 2), rtol=1e-4)


@pytest.mark.parametrize("n", [8, 7])
def test_rfft2_of_even_and_odd_lengths(n: int) -> None:
    """The one-sided transform (``n // 2 + 1`` frequencies) along the last dim, the full one
    along the other; its gradient pads the frequencies with zeros (``new_zeros``,
    ``slice_scatter``) and transforms back."""
    check(lambda x: torch.view_as_real(torch.fft.rfft2(x, norm="ortho")), rand(3, 4, n), rtol=1e-4)


@pytest.mark.parametrize("n", [8, 9])
def test_irfft_to_even_and_odd_lengths(n: int) -> None:
    """The real signal of ``n`` points from its first ``n // 2 + 1`` frequencies (the first,
    and for even ``n`` the last, counted once, their imaginary parts ignored, as torch does);
    its gradient a one-sided ``rfft``."""
    check(
        lambda a: torch.fft.irfft(torch.view_as_complex(a), n=n), rand(3, n // 2 + 1, 2), rtol=1e-4
    )


def test_rfft_then_irfft_filters_a_signal() -> None:
    """A spectral filter: ``rfft``, a real gain a frequency, ``irfft`` back."""

    def fn(x, gain):
        return torch.fft.irfft(torch.fft.rfft(x) * gain, n=x.shape[-1])

    check(fn, rand(3, 8), rand(5), rtol=1e-4)


def test_an_unsupported_complex_op_is_refused_in_one_line() -> None:
    with pytest.raises(UnsupportedOpError) as error:
        check(lambda a: torch.view_as_complex(a).abs(), rand(4, 2))
    message = str(error.value)
    assert "harness.py:" in message and "\n" not in message and "complex" in message, message


def test_a_complex_number_factor_is_refused_in_one_line() -> None:
    """Times ``1j``: not rewritten as pairs (not supported yet), refused, not miscomputed."""
    with pytest.raises(UnsupportedOpError) as error:
        check(lambda a: torch.view_as_real(torch.view_as_complex(a) * 1j), rand(4, 2))
    assert "\n" not in str(error.value) and "complex" in str(error.value)
