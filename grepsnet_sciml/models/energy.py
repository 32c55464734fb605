"""The Coulomb energy of charged particles and the projection of velocities onto it.

Unit masses, charges ``q_i``, softening length ``eps >= 0`` (``eps = 0``: plain Coulomb)::

    E(x, v) = 1/2 sum_i |v_i|^2 + sum_{i<j} q_i q_j / sqrt(|x_i - x_j|^2 + eps^2)

This is the energy both charged-particle presets of :mod:`grepsnet_sciml.datasets` integrate
(the ``clean`` preset conserves it to round-off, the ``egnn`` preset to about 1e-3) and the
one :func:`~grepsnet_sciml.solvers.evaluate.evaluate_particles` reports.

:func:`project_energy` is a conservation head for (x, v) predictors: it rescales the
predicted velocities about their mean so that the predicted state has a prescribed energy.
It uses only distances, norms and the charge products, so it commutes with rotations,
reflections, translations, particle permutations and a flip of every charge, and it keeps
the mean velocity (the total momentum).

Examples
--------
>>> import torch
>>> _ = torch.manual_seed(0)
>>> x, v = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(2, 5, 3, dtype=torch.float64)
>>> v = v - v.mean(1, keepdim=True)  # at rest on average: all the kinetic energy is relative
>>> q = torch.tensor([[1.0, -1, 1, 1, -1], [-1, -1, 1, 1, 1]], dtype=torch.float64)
>>> target = coulomb_energy(x, v, q, softening=0.1)
>>> w = project_energy(x, 2 * v, target, q, softening=0.1)  # same positions, twice the speed
>>> bool(torch.allclose(coulomb_energy(x, w, q, softening=0.1), target)), bool(torch.allclose(w, v))
(True, True)
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EnergyProjection", "coulomb_energy", "coulomb_potential", "project_energy"]

_TINY = 1e-12


def coulomb_potential(positions: torch.Tensor, charges: torch.Tensor,
                      softening: float = 0.0) -> torch.Tensor:
    """``U(x) = sum_{i<j} q_i q_j / sqrt(|x_i - x_j|^2 + eps^2)``.

    Parameters
    ----------
    positions : torch.Tensor
        ``(..., n, 3)``.
    charges : torch.Tensor
        ``(..., n)``, broadcastable against the leading axes of ``positions``.
    softening : float
        ``eps >= 0``.

    Returns
    -------
    torch.Tensor
        ``(...)``.
    """
    n = positions.shape[-2]
    i, j = torch.triu_indices(n, n, 1, device=positions.device)
    r2 = ((positions[..., i, :] - positions[..., j, :]) ** 2).sum(-1)
    return (charges[..., i] * charges[..., j] / (r2 + softening * softening).sqrt()).sum(-1)


def coulomb_energy(positions: torch.Tensor, velocities: torch.Tensor, charges: torch.Tensor,
                   softening: float = 0.0) -> torch.Tensor:
    """``E = 1/2 sum_i |v_i|^2 + U(x)`` (see :func:`coulomb_potential`), shape ``(...)``."""
    return 0.5 * (velocities * velocities).sum((-1, -2)) + coulomb_potential(
        positions, charges, softening)


def project_energy(positions: torch.Tensor, velocities: torch.Tensor, energy: torch.Tensor,
                   charges: torch.Tensor, softening: float = 0.0) -> torch.Tensor:
    """Rescale velocities about their mean so that the state's energy is ``energy``.

    ``v_i' = vbar + lambda (v_i - vbar)`` with ``vbar = mean_i v_i`` and::

        lambda = sqrt(max(E - U(x) - n |vbar|^2 / 2, 0) / (1/2 sum_i |v_i - vbar|^2))

    so that ``E(x, v') = E`` whenever the energy left for the relative motion,
    ``E - U(x) - n |vbar|^2 / 2``, is positive; otherwise ``lambda = 0`` (the closest state
    of this form). ``vbar``, hence the total momentum, is unchanged.

    Parameters
    ----------
    positions, velocities : torch.Tensor
        ``(..., n, 3)``: the state to correct.
    energy : torch.Tensor
        ``(...)``: its prescribed energy (e.g. :func:`coulomb_energy` of the input state).
    charges : torch.Tensor
        ``(..., n)``.
    softening : float
        ``eps >= 0`` of the potential.

    Returns
    -------
    torch.Tensor
        ``(..., n, 3)`` velocities.
    """
    mean = velocities.mean(-2, keepdim=True)
    relative = velocities - mean
    kinetic = 0.5 * (relative * relative).sum((-1, -2))
    bulk = 0.5 * velocities.shape[-2] * (mean * mean).sum((-1, -2))
    left = energy - coulomb_potential(positions, charges, softening) - bulk
    scale = (left.clamp(min=_TINY) / kinetic.clamp(min=_TINY)).sqrt()
    scale = torch.where(left > 0, scale, torch.zeros_like(scale))
    return mean + scale[..., None, None] * relative


class EnergyProjection(nn.Module):
    """Output head of an (x, v) predictor that keeps the input state's Coulomb energy.

    ``head((x_0, v_0, q), (x_T, v_T)) = (x_T, project_energy(x_T, v_T, E(x_0, v_0), q))``
    (:func:`coulomb_energy`): exact to round-off whenever the predicted positions leave
    energy for the relative motion (otherwise the relative velocities become 0). Invariant
    scalars only, so E(3) x S_n-equivariant. No parameters. It needs the states in the units
    of the energy (the data's): a model that normalizes its inputs applies it after decoding
    (:class:`~grepsnet_sciml.solvers.normalize.NormalizedModel` ``head``).

    Parameters
    ----------
    softening : float
        ``eps >= 0``.
    """

    def __init__(self, softening: float = 0.0):
        super().__init__()
        if isinstance(softening, bool) or not (isinstance(softening, (int, float))
                                               and softening >= 0):
            raise ValueError(f"energy_softening: expected a number >= 0 (the softening length "
                             f"of the Coulomb energy), got {softening!r}")
        self.softening = float(softening)

    def forward(self, inputs, outputs):
        """``inputs`` ``(x_0, v_0, q)``, ``outputs`` ``(x_T, v_T)`` -> ``(x', v')``."""
        x0, v0, q = inputs
        q = q[..., 0] if q.ndim == x0.ndim else q
        x, v = outputs
        energy = coulomb_energy(x0, v0, q, self.softening)
        return x, project_energy(x, v, energy, q, self.softening)

    def extra_repr(self) -> str:
        return f"softening={self.softening}"
