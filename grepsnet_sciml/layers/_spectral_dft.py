"""The truncated real 2D DFT onto a mode window and back, as real matrix products (private).

A spectral convolution keeps only the window ``|kx|, |ky| <= K`` (``K = modes - 1``) of the
half spectrum ``ky >= 0``. Computing it with ``rfft2`` transforms every mode and, in the
backward pass, runs a full complex FFT over a zero-padded spectrum; for the small windows
of a Fourier neural operator (``2K + 1 <= N / 2``), two matrix products by precomputed
cosine/sine tables do less work and differentiate into matrix products too. Both functions
equal ``torch.fft.rfft2`` / ``torch.fft.irfft2`` on the window to rounding (tested).
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = ["window_rfft2", "window_irfft2", "window_rfft2_pairs", "window_irfft2_pairs"]


@functools.lru_cache(maxsize=32)
def _tables(n: int, modes: int, dtype: torch.dtype, device: torch.device):
    """Cosine/sine tables of the window: ``(forward_y, cos_x, sin_x, swap, inverse_y)``.

    ``forward_y`` ``(N, 2m)``: ``[cos, -sin](2 pi ky y / N)`` for ``ky = 0..K``
    (``m = K + 1``); ``cos_x``, ``sin_x`` ``(2K+1, N)``: ``cos, sin (2 pi kx x / N)`` for
    ``kx = -K..K``; ``swap`` ``(2m, 2m)``: ``[a | b] @ swap = [b | -a]`` (multiplication by
    ``-i`` of a pair); ``inverse_y`` ``(2m, N)``: ``c_ky [cos; -sin] / N^2`` with ``c_0 = 1``
    and ``c_ky = 2`` otherwise (the Hermitian partner of every ``ky > 0`` column), so that
    the inverse is ``irfft2``'s.
    """
    big_k = modes - 1
    grid = torch.arange(n, dtype=torch.float64)
    ky = torch.arange(big_k + 1, dtype=torch.float64)
    kx = torch.arange(-big_k, big_k + 1, dtype=torch.float64)
    phase_y = 2 * math.pi * torch.outer(grid, ky) / n  # (N, m)
    phase_x = 2 * math.pi * torch.outer(kx, grid) / n  # (2K+1, N)
    forward_y = torch.cat([torch.cos(phase_y), -torch.sin(phase_y)], 1)
    eye = torch.eye(big_k + 1, dtype=torch.float64)
    zero = torch.zeros_like(eye)
    swap = torch.cat([torch.cat([zero, -eye], 1), torch.cat([eye, zero], 1)], 0)
    weight = torch.full((big_k + 1,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    inverse_y = torch.cat([weight[:, None] * torch.cos(phase_y).T,
                           -weight[:, None] * torch.sin(phase_y).T], 0) / (n * n)
    return tuple(t.to(dtype=dtype, device=device) for t in
                 (forward_y, torch.cos(phase_x), torch.sin(phase_x), swap, inverse_y))


def window_rfft2_pairs(x: torch.Tensor, modes: int) -> torch.Tensor:
    """``rfft2(x)`` on the window as real pairs: ``(B, C, N, N) -> (B, C, 2K+1, 2(K+1))``.

    Row ``i`` is ``kx = i - K``; the last axis holds ``[Re X(kx, 0..K) | Im X(kx, 0..K)]`` of
    ``X(kx, ky) = sum_{x, y} u(x, y) exp(-2 pi i (kx x + ky y) / N)``: with
    ``A = u @ forward_y`` (the sum over ``y``), ``X = cos_x @ A + (sin_x @ A) @ swap``.
    """
    forward_y, cos_x, sin_x, swap, _ = _tables(x.shape[-1], modes, x.dtype, x.device)
    a = x @ forward_y
    return cos_x @ a + (sin_x @ a) @ swap


def window_irfft2_pairs(w: torch.Tensor, n: int) -> torch.Tensor:
    """``irfft2`` of a spectrum that is ``w`` on the window and zero elsewhere.

    ``(B, C, 2K+1, 2(K+1))`` real pairs (layout of :func:`window_rfft2_pairs`) ->
    ``(B, C, N, N)``: ``u(x, y) = N^-2 sum_{kx, ky} c_ky Re(w(kx, ky) e^{2 pi i (kx x + ky y)
    / N})``, as ``Z = cos_x^T @ w - (sin_x^T @ w) @ swap`` (the sum over ``kx``), then
    ``Z @ inverse_y``.
    """
    _, cos_x, sin_x, swap, inverse_y = _tables(n, w.shape[-1] // 2, w.dtype, w.device)
    return (cos_x.T @ w - (sin_x.T @ w) @ swap) @ inverse_y


def window_rfft2(x: torch.Tensor, modes: int) -> torch.Tensor:
    """:func:`window_rfft2_pairs` as complex ``(B, C, 2K+1, K+1)`` (column ``j``: ``ky = j``)."""
    pairs = window_rfft2_pairs(x, modes)
    return torch.complex(pairs[..., :modes], pairs[..., modes:])


def window_irfft2(w: torch.Tensor, n: int) -> torch.Tensor:
    """:func:`window_irfft2_pairs` of a complex window ``(B, C, 2K+1, K+1)``."""
    return window_irfft2_pairs(torch.cat([w.real, w.imag], -1), n)
