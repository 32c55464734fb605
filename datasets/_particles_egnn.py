"""The EGNN charged-particle generator, vectorised over trajectories and bit-identical to it.

Re-implements ``ChargedParticlesSim.sample_trajectory`` of vgsatorras/egnn
(``n_body_system/dataset/synthetic_sim.py``, see ``../shared/reference/README.md``) on all
trajectories at once. Bitwise agreement needs the same floating-point operations per
trajectory, in the same order:

* random draws: one legacy ``numpy.random.RandomState``; per trajectory
  ``choice([-1, 0, 1], (n, 1), p=[1/2, 0, 1/2])``, ``randn(3, n)``, ``randn(3, n)`` and two
  discarded ``randn(R, 3, n)`` (observation noise times zero), drawn one trajectory after
  the other (cheap); only the integration is vectorised;
* squared distances ``|a|^2 + |b|^2 - 2 a.b`` with ``a.b`` rounded as the original's BLAS
  ``syrk`` (``fma(a_2, b_2, fma(a_1, b_1, a_0 b_0))``): through torch's fused ``addcmul_``
  on the pairs, or, where that is not fused, ``numpy.matmul`` over a stack of
  ``(n, 3) @ (3, n)`` matrices, which calls the same ``syrk`` once per trajectory;
* ``d ** 1.5`` through the C library's ``pow`` (``numpy.float_power``; ``numpy.power`` may
  use a SIMD approximation that differs in the last bit on some CPUs);
* force components summed over partners in numpy's order (:meth:`Pairs.sum_in_order`).

The state is kept as ``(n, 3, B)`` arrays (see :mod:`._particles_common`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from ._particles_common import Pairs, check_finite

__all__ = [
    "EGNN_CHARGE_VALUES",
    "EGNN_CHARGE_PROBABILITIES",
    "EgnnForce",
    "torch_fma_is_exact",
    "draw_trajectories",
    "skip_trajectories",
    "initial_state",
    "integrate",
    "advance",
]

EGNN_CHARGE_VALUES = np.array([-1.0, 0.0, 1.0])
EGNN_CHARGE_PROBABILITIES = [0.5, 0.0, 0.5]


def _draw_one(rs: np.random.RandomState, n: int, n_records: int):
    charges = rs.choice(EGNN_CHARGE_VALUES, size=(n, 1), p=EGNN_CHARGE_PROBABILITIES)
    positions = rs.randn(3, n)
    velocities = rs.randn(3, n)
    rs.randn(n_records, 3, n)  # observation noise of positions, multiplied by noise_var = 0
    rs.randn(n_records, 3, n)  # and of velocities
    return charges[:, 0], positions, velocities


def draw_trajectories(rs: np.random.RandomState, count: int, n: int, n_records: int):
    """The raw draws of ``count`` consecutive trajectories, advancing ``rs`` as the original.

    Returns
    -------
    charges : numpy.ndarray
        ``(count, n)``, each -1 or +1.
    positions, velocities : numpy.ndarray
        ``(count, 3, n)`` standard normal draws (before scaling).
    """
    draws = [_draw_one(rs, n, n_records) for _ in range(count)]
    if not draws:
        return np.zeros((0, n)), np.zeros((0, 3, n)), np.zeros((0, 3, n))
    charges, positions, velocities = (np.stack(parts) for parts in zip(*draws))
    return charges, positions, velocities


def skip_trajectories(rs: np.random.RandomState, count: int, n: int, n_records: int) -> None:
    """Advance ``rs`` past ``count`` trajectories without integrating them."""
    for _ in range(count):
        _draw_one(rs, n, n_records)


def initial_state(positions, velocities, loc_std: float, speed: float, box: float):
    """The original's initial state from raw draws ``(B, 3, n)``.

    ``x = loc_std z``, ``v = (speed u) / |u|`` per particle, then the reflecting box
    ``[-box, box]`` applied once: a coordinate ``x > box`` becomes ``2 box - x`` with
    ``v -> -|v|``, then one ``x < -box`` becomes ``-2 box - x`` with ``v -> |v|``.
    """
    x = positions * loc_std
    sq = velocities * velocities
    norm = np.sqrt((sq[:, 0] + sq[:, 1]) + sq[:, 2])[:, None, :]
    v = velocities * speed / norm
    over = x > box
    x = np.where(over, 2 * box - x, x)
    v = np.where(over, -np.abs(v), v)
    under = x < -box
    x = np.where(under, -2 * box - x, x)
    v = np.where(under, np.abs(v), v)
    return x, v


@functools.lru_cache(maxsize=1)
def torch_fma_is_exact() -> bool:
    """Whether ``torch.Tensor.addcmul_`` on CPU float64 rounds once, as a fused multiply-add.

    Checked on ``c + a a`` with ``a = 1 + 2^-30``, ``c = -(1 + 2^-29)``: exactly ``2^-60``,
    but 0 if the product is rounded first; on contiguous and strided operands of a length
    that exercises both the vector loop and its scalar tail.
    """
    a = torch.full((37, 3), 1.0 + 2.0**-30, dtype=torch.float64)
    result = torch.full((37,), -(1.0 + 2.0**-29), dtype=torch.float64)
    result[:20].addcmul_(a[:20, 0].contiguous(), a[:20, 1].contiguous())
    result[20:].addcmul_(a[20:, 1], a[20:, 2])
    return bool((result == 2.0**-60).all())


class EgnnForce:
    """The original's clipped Coulomb force on ``B`` trajectories, bit for bit.

    ``F_i = clip(sum_j q_i q_j (x_i - x_j) / d_ij^{3/2}, -c, c)`` per Cartesian component, with
    ``d_ij = (|x_i|^2 + |x_j|^2) - 2 x_i . x_j`` and ``c = 0.1 / dt``.

    The BLAS ``syrk`` of the original computes ``x_i . x_j`` as
    ``fma(a_2, b_2, fma(a_1, b_1, a_0 b_0))``. Where torch's ``addcmul_`` is a fused
    multiply-add (:func:`torch_fma_is_exact`), that is evaluated directly on the pairs
    (fast); otherwise (``fused=False``) ``numpy.matmul`` calls the same ``syrk`` once per
    trajectory, exactly as the original's ``A.dot(A.T)``.

    Parameters
    ----------
    charges : numpy.ndarray
        ``(B, n)`` charges.
    clip : float
        Bound ``c`` on each force component.
    fused : bool, optional
        Use the fused multiply-add path; default :func:`torch_fma_is_exact`.
    """

    def __init__(self, charges: np.ndarray, clip: float, fused: bool | None = None):
        self.pairs = Pairs(charges.shape[1])
        self.pair_charge = np.ascontiguousarray((charges[:, self.pairs.i] *
                                                 charges[:, self.pairs.j]).T)  # (P, B)
        self.clip = clip
        self.fused = torch_fma_is_exact() if fused is None else fused

    def _dot(self, y: np.ndarray, yi: np.ndarray, yj: np.ndarray) -> np.ndarray:
        """``x_i . x_j`` ``(P, B)`` rounded as the original's ``syrk``."""
        if self.fused:
            gram = yi[:, 0] * yj[:, 0]
            ti, tj = torch.from_numpy(yi), torch.from_numpy(yj)
            torch.from_numpy(gram).addcmul_(ti[:, 1], tj[:, 1]).addcmul_(ti[:, 2], tj[:, 2])
            return gram
        x = np.ascontiguousarray(y.transpose(2, 1, 0))  # (B, 3, n): the original's layout
        gram = np.matmul(x.transpose(0, 2, 1), x)  # one syrk per trajectory, as A.dot(A.T)
        return gram[:, self.pairs.i, self.pairs.j].T

    def __call__(self, y: np.ndarray) -> np.ndarray:
        """Force ``(n, 3, B)`` at positions ``y`` ``(n, 3, B)``."""
        i, j = self.pairs.i, self.pairs.j
        yi, yj = y[i], y[j]  # (P, 3, B)
        sq = y * y
        norm2 = (sq[:, 0] + sq[:, 1]) + sq[:, 2]  # (n, B)
        d = (norm2[i] + norm2[j]) - 2 * self._dot(y, yi, yj)  # (P, B)
        strength = self.pair_charge / np.float_power(d, 1.5)
        terms = strength[:, None, :] * (yi - yj)  # (P, 3, B)
        force = self.pairs.sum_in_order(terms, np.empty_like(y))
        return np.clip(force, -self.clip, self.clip, out=force)


def integrate(
    charges: np.ndarray,
    positions: np.ndarray,
    velocities: np.ndarray,
    n_steps: int,
    record_every: int,
    dt: float,
    first_sample: int,
    advance_bar: Callable[[int], None],
):
    """Run the original's loop on ``B`` trajectories and return the recorded frames.

    One full kick ``v += dt F(x_0)``, then for ``s = 1 .. n_steps - 1``: ``x += dt v``, record
    when ``s % record_every == 0``, ``v += dt F(x)``.

    Parameters
    ----------
    charges : numpy.ndarray
        ``(B, n)``.
    positions, velocities : numpy.ndarray
        ``(B, 3, n)`` initial state (after :func:`initial_state`).

    Returns
    -------
    positions, velocities : numpy.ndarray
        ``(B, R, n, 3)`` with ``R = n_steps / record_every - 1``; frame ``k`` is step
        ``record_every (k + 1)``.
    """
    force = EgnnForce(charges, 0.1 / dt)
    y = np.ascontiguousarray(positions.transpose(2, 1, 0))
    w = np.ascontiguousarray(velocities.transpose(2, 1, 0))
    n_records = n_steps // record_every - 1
    loc = np.empty((n_records,) + y.shape)
    vel = np.empty((n_records,) + y.shape)
    with np.errstate(all="ignore"):  # a blow-up is reported by check_finite
        w += dt * force(y)
        frame = 0
        for step in range(1, n_steps):
            y += dt * w
            if step % record_every == 0:
                check_finite((y, w), first_sample, step * dt)
                loc[frame], vel[frame] = y, w
                frame += 1
                advance_bar(record_every)
            w += dt * force(y)
    advance_bar(record_every)
    return loc.transpose(3, 0, 1, 2), vel.transpose(3, 0, 1, 2)


def advance(y: np.ndarray, w: np.ndarray, charges: np.ndarray, n_steps: int, dt: float):
    """``n_steps`` kick-drift steps from a recorded state, in place on ``(n, 3, B)`` arrays.

    Each step is ``w += dt F(y); y += dt w``, so from frame ``k`` of the generator
    (position at step ``s`` and the velocity that carried it there), ``record_every``
    steps give frame ``k + 1`` bit for bit.
    """
    force = EgnnForce(charges, 0.1 / dt)
    with np.errstate(all="ignore"):  # the caller checks for NaN/Inf
        for _ in range(n_steps):
            w += dt * force(y)
            y += dt * w
    return y, w
