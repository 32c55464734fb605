"""The numerical solvers behind a generated dataset, as ``solver(initial_state, n_steps)``.

Each factory reads a dataset's generator config (:attr:`DatasetSpec.config
<grepsnet_sciml.datasets.contract.DatasetSpec.config>`) and returns a callable with the calling
convention of :func:`~.rollout.rollout`, so learned and true trajectories can be produced
from the same state (:func:`~.rollout.solver_rollout`):

- :func:`navier_stokes_solver`: continues the last frame of a ``(B, t_in, C, X, Y)`` window
  with ``grepsnet_sciml.datasets.navier_stokes.generate`` at the stored resolution ``X``
  (default time step of the configured scheme there), recording every
  ``record_every`` time units; returns ``(B, n_steps, C, X, Y)``. For data simulated at a
  finer grid than stored this is the same equation one grid level coarser.
- :func:`particle_solver`: continues ``(positions, velocities, charges)`` with
  ``charged_particles.simulate`` by ``delta * record_every`` integrator steps per model
  step; returns ``(positions, velocities)`` each ``(B, n_steps, N, 3)``.
"""

from __future__ import annotations

import numpy as np
import torch

from grepsnet_sciml.datasets.contract import DatasetSpec

from .data import PARTICLE_VARIABLES, FieldLayout, open_dataset

__all__ = ["navier_stokes_solver", "particle_solver", "dataset_config"]


def dataset_config(ds) -> dict:
    """The generator config of ``ds`` (:attr:`DatasetSpec.config`, a copy)."""
    return dict(DatasetSpec.from_dataset(ds).config)


def _solver_config(spec: DatasetSpec, keys: tuple[str, ...]) -> dict:
    """``spec.config``, with a ValueError naming the entries the solver needs but misses."""
    missing = [k for k in keys if k not in spec.config]
    if missing:
        raise ValueError(f"{spec.source}: attrs['config'] lacks {missing}; expected the "
                         f"generator config with {list(keys)} to rerun the solver")
    return dict(spec.config)


def navier_stokes_solver(ds, layout: FieldLayout, progress: bool = False):
    """``solver(frames (B, t_in, C, X, Y), n_steps) -> (B, n_steps, C, X, Y)`` for NS data.

    Parameters
    ----------
    ds : xarray.Dataset or path
        A dataset written by ``grepsnet_sciml.datasets.navier_stokes``.
    layout : FieldLayout
        Variables of the frames (vorticity first; velocity is derived from it).
    """
    from grepsnet_sciml.datasets import navier_stokes

    ds = open_dataset(ds)
    spec = DatasetSpec.from_dataset(ds)
    spec.require(ds, "field", layout.variables)
    cfg = _solver_config(spec, ("viscosity", "forcing", "record_every"))
    if layout.variables[0] != "vorticity":
        raise ValueError(f"layout: the solver state is the vorticity; expected it first, got "
                         f"{layout.variables}")
    if cfg.get("forcing") == "array":
        raise ValueError("ds: generated with a user forcing array that attrs do not hold; "
                         "cannot rerun the solver")
    base = navier_stokes.NavierStokesConfig(
        viscosity=cfg["viscosity"], forcing=cfg["forcing"], scheme=cfg.get("scheme", "fast"),
        record_every=cfg["record_every"], cfl_max=cfg.get("cfl_max", 1.0),
        forcing_amplitude=cfg.get("forcing_amplitude", navier_stokes.FORCING_AMPLITUDE))

    def solve(frames: torch.Tensor, n_steps: int) -> torch.Tensor:
        n = frames.shape[-1]
        w0 = frames[:, -1, 0].detach().cpu().double()
        out = navier_stokes.generate(
            w0.shape[0], base, resolution=n, sim_resolution=n,
            t_final=n_steps * base.record_every, velocity="velocity" in layout.variables,
            initial_condition=w0, progress=progress)
        parts = []
        for name, kind in zip(layout.variables, layout.kinds):
            values = torch.as_tensor(out[name].values)
            parts.append(values.movedim(-1, 2) if kind == "T1" else values[:, :, None])
        return torch.cat(parts, 2).to(frames.dtype)

    return solve


def particle_solver(ds, delta: int):
    """``solver((x, v, q), n_steps) -> (positions, velocities)`` for charged-particle data.

    Parameters
    ----------
    ds : xarray.Dataset or path
        A dataset written by ``grepsnet_sciml.datasets.charged_particles``.
    delta : int
        Dataset frames per model step.
    """
    from grepsnet_sciml.datasets import charged_particles

    ds = open_dataset(ds)
    spec = DatasetSpec.from_dataset(ds)
    spec.require(ds, "particles", PARTICLE_VARIABLES)
    cfg = _solver_config(spec, ("record_every", "dt"))
    preset = cfg.get("preset", "egnn")
    steps = int(delta) * int(cfg["record_every"])
    softening = cfg.get("softening") if preset == "clean" else None

    def solve(state, n_steps: int):
        x, v, q = (t.detach().cpu().double().numpy() for t in state)
        xs, vs = [], []
        for _ in range(n_steps):
            x, v = charged_particles.simulate(x, v, q, steps, preset=preset, dt=cfg["dt"],
                                              softening=softening)
            xs.append(x)
            vs.append(v)
        dtype = state[0].dtype
        return (torch.as_tensor(np.stack(xs, 1), dtype=dtype),
                torch.as_tensor(np.stack(vs, 1), dtype=dtype))

    return solve
