"""The symmetry-exact charged-particle system: softened Coulomb and velocity Verlet.

Equations (unit masses, charges ``q_i``, softening length ``eps``)::

    U = sum_{i<j} q_i q_j / sqrt(|x_i - x_j|^2 + eps^2)
    a_i = -dU/dx_i = sum_{j != i} q_i q_j (x_i - x_j) / (|x_i - x_j|^2 + eps^2)^{3/2}

Every operation uses only differences ``x_i - x_j`` and their Euclidean norms, with no
clipping or box, so the flow commutes with rotations, reflections, translations and
particle permutations up to round-off; pair terms are antisymmetric, so the total momentum
is conserved up to round-off, and velocity Verlet (symplectic, time-reversible) keeps the
energy error bounded. The state is kept as ``(n, 3, B)`` arrays.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._particles_common import Pairs, check_finite

__all__ = ["CleanForce", "draw_sample", "integrate", "advance"]


def draw_sample(seed: int, stream: int, index: int, n: int, loc_std: float, speed: float):
    """Charges ``(n,)``, positions ``(3, n)`` and velocities ``(3, n)`` of one sample.

    The randomness derives from ``(seed, stream, index)`` alone through
    ``numpy.random.SeedSequence(seed, spawn_key=(stream, index))`` and PCG64: charges
    ``+-1`` with probability 1/2, positions ``N(0, loc_std^2)`` per coordinate, velocities in
    a uniformly random direction with speed ``speed``.
    """
    rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(stream, index))))
    charges = rng.choice(np.array([-1.0, 1.0]), size=n)
    positions = rng.standard_normal((3, n)) * loc_std
    direction = rng.standard_normal((3, n))
    velocities = direction * (speed / np.sqrt((direction * direction).sum(axis=0)))
    return charges, positions, velocities


class CleanForce:
    """Softened Coulomb accelerations ``(n, 3, B)`` of ``B`` trajectories.

    Only elementwise operations on whole ``(.., B)`` slices, with every sum written out in a
    fixed order (``r^2 = (d_0^2 + d_1^2) + d_2^2``; partners in increasing index,
    :meth:`Pairs.sum_left_to_right`): no BLAS product or numpy reduction whose rounding could
    depend on ``B`` (the chunk size) or on the CPU, so each trajectory is bit-identical
    however it is batched.

    Parameters
    ----------
    charges : numpy.ndarray
        ``(B, n)``.
    softening : float
        ``eps >= 0``.
    """

    def __init__(self, charges: np.ndarray, softening: float):
        self.pairs = Pairs(charges.shape[1])
        self.pair_charge = np.ascontiguousarray(
            (charges[:, self.pairs.i] * charges[:, self.pairs.j]).T)  # (P, B)
        self.eps2 = softening * softening

    def __call__(self, y: np.ndarray) -> np.ndarray:
        """Acceleration ``(n, 3, B)`` at positions ``y`` ``(n, 3, B)``."""
        diff = y[self.pairs.i] - y[self.pairs.j]  # (P, 3, B)
        sq = diff * diff
        r2 = ((sq[:, 0] + sq[:, 1]) + sq[:, 2]) + self.eps2  # (P, B)
        strength = self.pair_charge / (r2 * np.sqrt(r2))
        terms = strength[:, None, :] * diff
        return self.pairs.sum_left_to_right(terms, np.empty_like(y))


def integrate(
    charges: np.ndarray,
    positions: np.ndarray,
    velocities: np.ndarray,
    n_steps: int,
    record_every: int,
    dt: float,
    softening: float,
    first_sample: int,
    advance_bar: Callable[[int], None],
):
    """Velocity Verlet from ``(B, 3, n)`` initial states; frames at steps ``0, r, 2r, ..``.

    Per step: ``v += (dt/2) a(x)``, ``x += dt v``, ``v += (dt/2) a(x)`` (positions and
    velocities at the same time).

    Returns
    -------
    positions, velocities : numpy.ndarray
        ``(B, R, n, 3)`` with ``R = n_steps / record_every + 1``; frame ``k`` is step
        ``k record_every``, time ``k record_every dt``.
    """
    force = CleanForce(charges, softening)
    y = np.ascontiguousarray(positions.transpose(2, 1, 0))
    w = np.ascontiguousarray(velocities.transpose(2, 1, 0))
    n_records = n_steps // record_every + 1
    loc = np.empty((n_records,) + y.shape)
    vel = np.empty((n_records,) + y.shape)
    loc[0], vel[0] = y, w
    half = 0.5 * dt
    with np.errstate(all="ignore"):  # a blow-up is reported by check_finite
        acc = force(y)
        for step in range(1, n_steps + 1):
            w += half * acc
            y += dt * w
            acc = force(y)
            w += half * acc
            if step % record_every == 0:
                check_finite((y, w), first_sample, step * dt)
                loc[step // record_every], vel[step // record_every] = y, w
                advance_bar(record_every)
    return loc.transpose(3, 0, 1, 2), vel.transpose(3, 0, 1, 2)


def advance(y, w, charges, n_steps: int, dt: float, softening: float):
    """``n_steps`` velocity Verlet steps in place on ``(n, 3, B)`` arrays (as :func:`integrate`)."""
    force = CleanForce(charges, softening)
    half = 0.5 * dt
    with np.errstate(all="ignore"):  # the caller checks for NaN/Inf
        acc = force(y)
        for _ in range(n_steps):
            w += half * acc
            y += dt * w
            acc = force(y)
            w += half * acc
    return y, w
