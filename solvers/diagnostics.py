"""Symmetry diagnostics of rollouts: does ``M^t(g x0) = g M^t(x0)`` hold, step by step?

For a trajectory map ``M`` (a learned model's :func:`~.rollout.rollout` or the numerical
solver), a state ``x0`` and each declared symmetry element ``g``:

.. math::
    \\mathrm{err}_g(t) = \\frac{\\lVert M^t(g x_0) - g M^t(x_0) \\rVert}
                              {\\lVert M^t(x_0) \\rVert}

per sample, then averaged over samples. The transformed-test error is the error of the
model on the transformed test set, ``||M^t(g x0) - g y_t|| / ||y_t||`` against the true
trajectory ``y`` (G-FNO's rotated test).

Field elements are the dataset's declared
:class:`~grepsnet_sciml.datasets.contract.SymmetryElement` values (the point-group element
with its accompanying shift, see ``grepsnet_sciml.datasets.navier_stokes``); each acts
through ``Reps.act`` of the packed frame (vorticity T0p changes sign under reflections)
and then shifts cyclically. Particle elements are random ``O(3)`` matrices combined with a random
translation of the positions and a random permutation of the particles.

Examples
--------
>>> import torch
>>> from grepsnet_sciml.datasets.contract import group_elements
>>> from grepsnet_sciml.groups import D4
>>> from grepsnet_sciml.solvers.data import FieldLayout
>>> layout = FieldLayout(("vorticity",), ("T0p",), D4())
>>> elements = group_elements(D4())
>>> same = lambda x, n: x[:, -1:].repeat(1, n, 1, 1, 1)   # an equivariant "solver"
>>> err = symmetry_consistency({"copy": same}, torch.randn(2, 1, 1, 8, 8), 3,
...                            field_transform(layout, elements))
>>> float(err.equivariance_error.max())
0.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import xarray as xr

from grepsnet_sciml.datasets.contract import DatasetSpec, SymmetryElement
from grepsnet_sciml.groups import O, PlanarGroup

from .data import FieldLayout

__all__ = ["field_elements", "field_transform", "particle_transform", "symmetry_consistency",
           "transformed_test_error"]


def field_elements(ds) -> tuple[SymmetryElement, ...]:
    """The declared symmetry elements of a field dataset (:attr:`DatasetSpec.elements`)."""
    return DatasetSpec.from_dataset(ds).elements


def field_transform(layout: FieldLayout, elements: Sequence[SymmetryElement]):
    """``(names, act)`` with ``act(k, frames)`` applying ``elements[k]`` to ``(B, T, C, X, Y)``.

    Each element acts on every frame through ``layout.reps(1)`` (:meth:`SymmetryElement.act`).
    """
    if not isinstance(layout.group, PlanarGroup):
        raise ValueError(f"layout: field symmetries need a planar group, got {layout.group!r}")
    frame_reps = layout.reps(1)

    def act(k: int, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        flat = frames.reshape(b * t, *frames.shape[2:])
        return elements[k].act(frame_reps, flat).reshape(frames.shape)

    return [e.name for e in elements], act


def particle_transform(n_elements: int = 8, seed: int = 0):
    """``(names, act)`` for random E(3) x S_n elements acting on particle states.

    ``act(k, state)`` maps ``(positions, velocities[, charges])`` with particles on axis -2
    (``(B, [T,] N, 3)``) to ``(g x_pi + t, g v_pi[, q_pi])``.
    """
    gen = torch.Generator().manual_seed(seed)
    mats = O(3).sample(n_elements, generator=gen)
    shifts = torch.randn(n_elements, 3, generator=gen, dtype=torch.float64)
    perms = [None] * n_elements

    def act(k: int, state):
        x, v = state[0], state[1]
        n = x.shape[-2]
        if perms[k] is None or len(perms[k]) != n:
            perms[k] = torch.randperm(n, generator=torch.Generator().manual_seed(seed + k))
        p = perms[k]
        g = mats[k].to(x.dtype)
        out = [x.index_select(-2, p) @ g.T + shifts[k].to(x.dtype),
               v.index_select(-2, p) @ g.T]
        if len(state) > 2:
            q = state[2]
            out.append(q.index_select(1, p))
        return tuple(out)

    return [f"g{k}" for k in range(n_elements)], act


def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


def _rel(a: torch.Tensor, b: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per (sample, time) ``||a - b|| / ||ref||`` over the trailing axes, mean over samples."""
    s, t = ref.shape[:2]
    num = (a.double() - b.double()).reshape(s, t, -1).norm(dim=-1)
    den = ref.double().reshape(s, t, -1).norm(dim=-1).clamp_min(1e-300)
    return (num / den).mean(0)


def symmetry_consistency(trajectory_fns: Mapping[str, Callable], initial_state, n_steps: int,
                         transform, truth=None) -> xr.Dataset:
    """Equivariance error of trajectory maps per element and step.

    Parameters
    ----------
    trajectory_fns : dict of str -> callable
        ``fn(initial_state, n_steps)`` returning states ``(B, n_steps, ...)`` (fields) or
        ``(positions, velocities)`` of that shape (particles): models and the solver.
    initial_state : torch.Tensor or tuple
        Fields ``(B, t_in, C, X, Y)``; particles ``(positions, velocities, charges)``.
    transform : (names, act)
        From :func:`field_transform` or :func:`particle_transform`.
    truth : optional
        The true trajectory from ``initial_state`` (as the fns return it); adds
        ``transformed_error(model, element, time)``.

    Returns
    -------
    xarray.Dataset
        ``equivariance_error(model, element, time)`` (and ``transformed_error``).
    """
    names, act = transform
    out_err, out_test = [], []
    for fn in trajectory_fns.values():
        base = fn(initial_state, n_steps)
        errs, tests = [], []
        for k in range(len(names)):
            moved = fn(act(k, initial_state), n_steps)
            if isinstance(base, (tuple, list)):
                expected = act(k, base)
                errs.append(_rel(moved[0], expected[0], base[0]))  # positions
            else:
                expected = act(k, base)
                errs.append(_rel(moved, expected, base))
            if truth is not None:
                target = act(k, truth)
                tests.append(_rel(_first(moved), _first(target), _first(truth)))
        out_err.append(torch.stack(errs).numpy())
        if truth is not None:
            out_test.append(torch.stack(tests).numpy())
    dims = ("model", "element", "time")
    data = {"equivariance_error": (dims, np.stack(out_err))}
    if truth is not None:
        data["transformed_error"] = (dims, np.stack(out_test))
    coords = {"model": list(trajectory_fns), "element": names,
              "time": np.arange(1, n_steps + 1)}
    return xr.Dataset(data, coords=coords)


def transformed_test_error(trajectory_fn: Callable, initial_state, truth, n_steps: int,
                           transform) -> xr.DataArray:
    """Error of one model on the transformed test set, ``(element, time)``."""
    ds = symmetry_consistency({"model": trajectory_fn}, initial_state, n_steps, transform,
                              truth=truth)
    return ds.transformed_error.sel(model="model", drop=True)
