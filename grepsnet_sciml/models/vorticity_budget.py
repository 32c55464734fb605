"""The kinetic-energy budget of 2D incompressible flow, and a model head that obeys it.

For the vorticity equation the Navier-Stokes data of :mod:`grepsnet_sciml.datasets` solve on
the unit torus, ``dw/dt + u . grad w = nu Lap w + f`` with ``-Lap psi = w``, the kinetic
energy ``E = 1/2 <|u|^2> = 1/2 <psi w>`` (``<.>``: the mean over the torus) changes only by
the forcing's work and the viscous dissipation (advection moves energy between scales but
neither makes nor destroys it)::

    dE/dt = P(w) - D(w),    P(w) = <psi f>,    D(w) = nu <w^2>

On the quick NS-Sym data (32x32 frames one time unit apart) the trapezoidal form of this
budget across one stored step holds to 5e-4 of ``E`` while ``E`` itself changes by 16% per
step. A surrogate trained on a pointwise loss does not keep it: the mean prediction of a
chaotic flow is smoother than the flow, so its energy falls behind the solver's a little at
every step (the energy of a GRepsFNO rollout on that data falls while the solver's doubles).

:class:`EnergyBudget` is an output head that rescales each predicted vorticity ``w_hat``
by the one factor ``lambda >= 0`` for which the step obeys the trapezoidal budget::

    E(lambda w_hat) - E(w) = tau / 2 [P(w) - D(w) + P(lambda w_hat) - D(lambda w_hat)]

``E`` and ``D`` are quadratic and ``P`` linear in the field, so ``lambda`` is the positive
root of ``a lambda^2 - b lambda - c = 0`` with ``a = E(w_hat) + tau D(w_hat) / 2``,
``b = tau P(w_hat) / 2`` and ``c = E(w) + tau (P(w) - D(w)) / 2`` (``c > 0``, hence one
positive root, unless the step is long enough for the dissipation to use up more than the
energy there is; there ``lambda`` is the larger real root, or the real part of complex
roots, and at least 0). ``E``, ``P`` and ``D``
are invariant under every symmetry of the data (a rotation or reflection, with the data's
shift, that maps the forcing to itself as a pseudo-scalar: ``det(g) f(g^{-1}(i - s)) = f(i)``),
so the head commutes with each of them, and it is resolution-independent (the forcing is
sampled on the grid of each input).

Examples
--------
>>> import torch
>>> _ = torch.manual_seed(0)
>>> head = EnergyBudget(viscosity=1e-4, frame_time=1.0, forcing="symmetric")
>>> w = torch.randn(2, 3, 16, 16, dtype=torch.float64)  # three input frames, the last is w
>>> w_next = head((w,), 0.9 * w[:, -1:])
>>> residual = head.residual(w[:, -1:], w_next)  # budget residual / E, per sample
>>> bool(residual.abs().max() < 1e-12)
True
"""

from __future__ import annotations

import math

import torch
from torch import nn

from grepsnet_sciml.datasets._ns_spectral import FORCINGS, scaled_forcing_field
from grepsnet_sciml.datasets.navier_stokes import FORCING_AMPLITUDE

__all__ = ["EnergyBudget", "energy_budget_terms"]

_TINY = 1e-30


def _inverse_laplacian_symbol(n: int, dtype: torch.dtype, device) -> torch.Tensor:
    """``1 / (4 pi^2 |k|^2)`` on the ``fft2`` grid, 0 at ``k = 0``; ``(n, n)``."""
    k = torch.fft.fftfreq(n, d=1.0 / n, dtype=dtype, device=device)
    k2 = 4 * math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2)
    k2[0, 0] = 1.0
    inverse = 1.0 / k2
    inverse[0, 0] = 0.0
    return inverse


def energy_budget_terms(w: torch.Tensor, forcing: torch.Tensor | None,
                        viscosity: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(E, P, D)`` of vorticity fields on the unit torus.

    ``E = 1/2 <psi w>``, ``P = <psi f>``, ``D = nu <w^2>`` with ``-Lap psi = w`` (the mean of
    ``w`` carries no energy).

    Parameters
    ----------
    w : torch.Tensor
        ``(..., N, N)`` vorticity.
    forcing : torch.Tensor or None
        ``(N, N)`` forcing of the vorticity equation (None: unforced, ``P = 0``).
    viscosity : float
        ``nu > 0``.

    Returns
    -------
    tuple of torch.Tensor
        Each ``(...)``.
    """
    n = w.shape[-1]
    w_hat = torch.fft.fft2(w) / (n * n)
    psi_hat = w_hat * _inverse_laplacian_symbol(n, w.real.dtype, w.device)
    energy = 0.5 * (psi_hat.conj() * w_hat).real.sum((-2, -1))
    if forcing is None:
        work = torch.zeros_like(energy)
    else:
        f_hat = torch.fft.fft2(forcing.to(w)) / (n * n)
        work = (psi_hat.conj() * f_hat).real.sum((-2, -1))
    dissipation = viscosity * (w * w).mean((-2, -1))
    return energy, work, dissipation


class EnergyBudget(nn.Module):
    """Output head of a vorticity predictor that makes every step obey the energy budget.

    ``head((x,), y)`` rescales each predicted frame ``y_j`` by the ``lambda_j >= 0`` of the
    module docstring, frame by frame: the previous frame is the last input frame for
    ``j = 0`` and the rescaled ``y_{j-1}`` after it. No parameters; the rescaling is
    differentiable, so the head trains with the model. It needs the fields in the data's
    units (a model that normalizes applies it after decoding:
    :class:`~grepsnet_sciml.solvers.normalize.NormalizedModel` ``head``).

    Parameters
    ----------
    viscosity : float
        ``nu > 0`` of the data.
    frame_time : float
        ``tau > 0``: the time between consecutive frames.
    forcing : {"fno", "symmetric"} or None
        The data's named forcing (None: unforced).
    amplitude : float
        Its amplitude.

    Notes
    -----
    Inputs ``(batch, t_in, N, N)`` and outputs ``(batch, t_out, N, N)``: frames of the
    vorticity alone, in time order (one channel per frame).
    """

    def __init__(self, viscosity: float, frame_time: float, forcing: str | None = None,
                 amplitude: float = FORCING_AMPLITUDE):
        super().__init__()
        for name, value in (("viscosity", viscosity), ("frame_time", frame_time)):
            if isinstance(value, bool) or not (isinstance(value, (int, float))
                                               and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive number, got {value!r}")
        if forcing is not None and forcing not in FORCINGS:
            raise ValueError(f"forcing: expected None or one of {list(FORCINGS)}, "
                             f"got {forcing!r}")
        self.viscosity, self.frame_time = float(viscosity), float(frame_time)
        self.forcing, self.amplitude = forcing, float(amplitude)

    def field(self, n: int, dtype: torch.dtype, device) -> torch.Tensor | None:
        """The forcing on the ``n x n`` grid, ``(n, n)``, or None."""
        if self.forcing is None:
            return None
        return scaled_forcing_field(self.forcing, n, self.amplitude).to(dtype=dtype,
                                                                        device=device)

    def _terms(self, w: torch.Tensor):
        return energy_budget_terms(w, self.field(w.shape[-1], w.dtype, w.device),
                                   self.viscosity)

    def residual(self, previous: torch.Tensor, following: torch.Tensor) -> torch.Tensor:
        """Trapezoidal budget residual of one step over the earlier energy, ``(...)``.

        ``(E(w') - E(w) - tau / 2 [P(w) - D(w) + P(w') - D(w')]) / E(w)`` for frames
        ``previous = w`` and ``following = w'`` of shape ``(..., N, N)``.
        """
        e0, p0, d0 = self._terms(previous)
        e1, p1, d1 = self._terms(following)
        change = e1 - e0 - 0.5 * self.frame_time * (p0 - d0 + p1 - d1)
        return change / e0.clamp_min(_TINY)

    def scale(self, previous: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
        """``lambda`` for a step ``previous -> predicted``, both ``(..., N, N)``; ``(...)``."""
        tau = self.frame_time
        e0, p0, d0 = self._terms(previous)
        e1, p1, d1 = self._terms(predicted)
        a = (e1 + 0.5 * tau * d1).clamp_min(_TINY)
        b = 0.5 * tau * p1
        c = e0 + 0.5 * tau * (p0 - d0)
        root = (b * b + 4 * a * c).clamp_min(0.0).sqrt()
        return ((b + root) / (2 * a)).clamp_min(0.0)

    def forward(self, inputs, outputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` ``(x,)`` with ``x (batch, t_in, N, N)``; ``outputs (batch, t_out, N, N)``."""
        (x,) = inputs
        previous, frames = x[:, -1], []
        for j in range(outputs.shape[1]):
            frame = self.scale(previous, outputs[:, j])[:, None, None] * outputs[:, j]
            frames.append(frame)
            previous = frame
        return torch.stack(frames, 1)

    def extra_repr(self) -> str:
        return (f"viscosity={self.viscosity:g}, frame_time={self.frame_time:g}, "
                f"forcing={self.forcing!r}, amplitude={self.amplitude:g}")
