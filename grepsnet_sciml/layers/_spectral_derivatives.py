"""Exact spectral derivatives converting between tensor orders (private; see ``spectral``).

Fields live on the unit torus sampled at ``x_i = i / N``; derivatives are taken in Fourier
space, ``d/dx_a -> 2 pi i k_a``, with the Nyquist modes (whose sign is ambiguous, so they would
break reflection equivariance) set to zero. Each layer is parameter-free and equivariant under
every planar group: gradient T0 -> T1, divergence T1 -> T0, curl T1 -> T0p
(``dv/dx - du/dy``, a pseudo-scalar) and Hessian T0 -> T2 (row-major ``d_a d_b f``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..reps import Reps
from ._spectral_kernels import check_planar_group

__all__ = ["SpectralGradient", "SpectralDivergence", "SpectralCurl", "SpectralHessian"]


def _ik(n: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(2 pi i kx, 2 pi i ky)`` on the rfft2 grid, ``(n, 1)`` and ``(1, n // 2 + 1)``."""
    kx = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
    ky = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64)
    if n % 2 == 0:
        kx[n // 2] = 0.0
        ky[-1] = 0.0
    kx = (2j * math.pi * kx).to(dtype=dtype, device=device)
    ky = (2j * math.pi * ky).to(dtype=dtype, device=device)
    return kx[:, None], ky[None, :]


class _Derivative(nn.Module):
    domain = "grid"
    translation_equivariant = True
    kinds: tuple[str, str] = ("T0", "T0")

    def __init__(self, group, channels: int = 1):
        super().__init__()
        check_planar_group(group)
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels: expected a positive integer, got {channels!r}")
        self.rep_in = Reps(f"{channels}x{self.kinds[0]}", group)
        self.rep_out = Reps(f"{channels}x{self.kinds[1]}", group)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rep_in.check(x, "x", grid=True)
        n = x.shape[-1]
        xh = torch.fft.rfft2(x)
        ikx, iky = _ik(n, x.device, xh.dtype)
        yh = self._multiply(xh.reshape(x.shape[0], self.channels, -1, n, n // 2 + 1), ikx, iky)
        return torch.fft.irfft2(yh.reshape(x.shape[0], -1, n, n // 2 + 1), s=(n, n))


class SpectralGradient(_Derivative):
    """``f -> (df/dx, df/dy)``: ``(batch, C, N, N) -> (batch, 2 C, N, N)``, T0 -> T1."""

    kinds = ("T0", "T1")

    def _multiply(self, fh, ikx, iky):
        return torch.cat([ikx * fh, iky * fh], 2)


class SpectralDivergence(_Derivative):
    """``(u, v) -> du/dx + dv/dy``: ``(batch, 2 C, N, N) -> (batch, C, N, N)``, T1 -> T0."""

    kinds = ("T1", "T0")

    def _multiply(self, vh, ikx, iky):
        return ikx * vh[:, :, :1] + iky * vh[:, :, 1:]


class SpectralCurl(_Derivative):
    """``(u, v) -> dv/dx - du/dy``: ``(batch, 2 C, N, N) -> (batch, C, N, N)``, T1 -> T0p."""

    kinds = ("T1", "T0p")

    def _multiply(self, vh, ikx, iky):
        return ikx * vh[:, :, 1:] - iky * vh[:, :, :1]


class SpectralHessian(_Derivative):
    """``f -> d_a d_b f`` row-major: ``(batch, C, N, N) -> (batch, 4 C, N, N)``, T0 -> T2."""

    kinds = ("T0", "T2")

    def _multiply(self, fh, ikx, iky):
        return torch.cat([ikx * ikx * fh, ikx * iky * fh, iky * ikx * fh, iky * iky * fh], 2)
