"""The NS solver's dealiasing band as a filter on typed fields (private; see ``spectral``)."""

from __future__ import annotations

import torch
from torch import nn

from ..reps import Reps
from ._spectral_typed import check_reps

__all__ = ["DealiasFilter2d"]


class DealiasFilter2d(nn.Module):
    """Keep the Fourier modes of the solver's 2/3-rule band, drop the others.

    .. math:: \\hat y(k) = \\hat x(k)\\ \\text{if}\\ |k_x|, |k_y| \\le f N / 2, \\qquad
       \\hat y(k) = 0\\ \\text{otherwise,}

    on an ``N x N`` periodic grid with ``f = fraction`` (2/3: the pseudo-spectral NS solver's
    dealiasing, ``datasets/_ns_solver.py``). The band is a square centred on ``k = 0``, so it is
    invariant under D4 and negation; the same mask acts on every component, so the filter
    commutes with every element's action on every type and with cyclic shifts, and keeps
    real fields real. A surrogate's output filtered this way carries no energy where the
    solver's states carry none.

    Parameters
    ----------
    reps : Reps
        Type of the field, ``(batch, reps.dim, N, N) -> (batch, reps.dim, N, N)``.
    fraction : float
        Band edge as a fraction of the Nyquist wavenumber ``N / 2``, in ``(0, 1]``.
    """

    domain = "grid"
    translation_equivariant = True

    def __init__(self, reps: Reps, fraction: float = 2.0 / 3.0):
        super().__init__()
        check_reps(reps, "reps")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
                0 < fraction <= 1):
            raise ValueError(f"fraction: expected a number in (0, 1], got {fraction!r}")
        self.rep_in = self.rep_out = reps
        self.fraction = float(fraction)

    def mask(self, n: int, device=None) -> torch.Tensor:
        """``(N, N // 2 + 1)`` bool over the ``rfft2`` modes of an ``N x N`` grid."""
        edge = self.fraction * n / 2
        kx = torch.fft.fftfreq(n, 1.0 / n, device=device).abs()
        ky = torch.fft.rfftfreq(n, 1.0 / n, device=device)
        return (kx[:, None] <= edge) & (ky[None, :] <= edge)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rep_in.check(x, "x", grid=True)
        n = x.shape[-1]
        spectrum = torch.fft.rfft2(x) * self.mask(n, x.device)
        return torch.fft.irfft2(spectrum, s=(n, n))

    def extra_repr(self) -> str:
        return f"{self.rep_in}, fraction={self.fraction:.4g}"
