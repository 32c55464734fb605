"""Slow, obviously correct per-trajectory loops of both particle presets.

One trajectory at a time, written the straightforward way: a ``(3, n)`` state and the
force as a full ``(3, n, n)`` matrix summed over partners. The tests hold the vectorised
generators against these, and ``benchmarks/generate_particles.py`` times them.

``egnn_trajectory`` follows ``ChargedParticlesSim.sample_trajectory`` of vgsatorras/egnn
(see ``../shared/reference/README.md``), with ``d ** 1.5`` taken through the C library's
``pow`` (``numpy.float_power``), as the reference files were made.
"""

from __future__ import annotations

import numpy as np

from ._particles_egnn import EGNN_CHARGE_PROBABILITIES, EGNN_CHARGE_VALUES

__all__ = ["egnn_trajectory", "clean_trajectory"]


def _egnn_force(x: np.ndarray, edges: np.ndarray, clip: float) -> np.ndarray:
    n = x.shape[1]
    a = x.T
    norm = (a**2).sum(axis=1).reshape(n, 1)
    d = norm + norm.reshape(1, n) - 2 * a.dot(a.T)
    with np.errstate(invalid="ignore", divide="ignore"):
        size = edges / np.float_power(d, 1.5)
    np.fill_diagonal(size, 0)
    diff = np.stack([np.subtract.outer(x[c], x[c]) for c in range(3)])
    force = (size[None] * diff).sum(axis=-1)
    return np.clip(force, -clip, clip)


def egnn_trajectory(rs: np.random.RandomState, n: int = 5, n_steps: int = 5000,
                    record_every: int = 100, dt: float = 1e-3):
    """One EGNN trajectory drawn from ``rs``.

    Returns
    -------
    loc, vel : numpy.ndarray
        ``(R, 3, n)``, frame ``k`` at step ``record_every (k + 1)``.
    charges : numpy.ndarray
        ``(n,)``.
    """
    n_records = n_steps // record_every - 1
    charges = rs.choice(EGNN_CHARGE_VALUES, size=(n, 1), p=EGNN_CHARGE_PROBABILITIES)
    edges = charges.dot(charges.T)
    x = rs.randn(3, n) * (float(n) / 5.0) ** (1 / 3)
    v = rs.randn(3, n)
    v = v * 0.5 / np.sqrt((v**2).sum(axis=0)).reshape(1, -1)
    for sign in (1.0, -1.0):  # the box at +-5, applied once
        out = sign * x > 5.0
        x[out] = sign * 10.0 - x[out]
        v[out] = -sign * np.abs(v[out])
    loc = np.zeros((n_records, 3, n))
    vel = np.zeros((n_records, 3, n))
    clip = 0.1 / dt
    v += dt * _egnn_force(x, edges, clip)
    for step in range(1, n_steps):
        x += dt * v
        if step % record_every == 0:
            loc[step // record_every - 1], vel[step // record_every - 1] = x, v
        v += dt * _egnn_force(x, edges, clip)
    rs.randn(n_records, 3, n)
    rs.randn(n_records, 3, n)
    return loc, vel, charges[:, 0]


def _clean_acceleration(x: np.ndarray, charges: np.ndarray, eps: float) -> np.ndarray:
    diff = x[:, :, None] - x[:, None, :]  # (3, n, n): x_i - x_j
    r2 = (diff**2).sum(axis=0) + eps**2
    np.fill_diagonal(r2, 1.0)
    size = np.outer(charges, charges) / r2**1.5
    np.fill_diagonal(size, 0.0)
    return (size[None] * diff).sum(axis=-1)


def clean_trajectory(charges, positions, velocities, n_steps: int = 5000,
                     record_every: int = 100, dt: float = 1e-3, softening: float = 0.1):
    """Velocity Verlet for one trajectory from ``(3, n)`` positions/velocities.

    Returns ``(R, 3, n)`` positions and velocities at steps ``0, r, 2r, .., n_steps``.
    """
    x = np.array(positions, dtype=np.float64)
    v = np.array(velocities, dtype=np.float64)
    loc, vel = [x.copy()], [v.copy()]
    acc = _clean_acceleration(x, charges, softening)
    for step in range(1, n_steps + 1):
        v = v + 0.5 * dt * acc
        x = x + dt * v
        acc = _clean_acceleration(x, charges, softening)
        v = v + 0.5 * dt * acc
        if step % record_every == 0:
            loc.append(x.copy())
            vel.append(v.copy())
    return np.stack(loc), np.stack(vel)
