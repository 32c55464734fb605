"""The jobs behind ``grepsnet rollout``, ``evaluate`` and ``diagnose``: checkpoint + data in,
stores, datasets and figures out.

Each job takes a trained checkpoint (:func:`~.experiment.load_model`) and a generated
dataset, starts from the same states for the surrogate and the numerical solver
(:mod:`.reference`), and writes its results into ``out_dir``:

- :func:`rollout_job`: the surrogate's long rollout streamed to ``rollout.zarr``;
- :func:`evaluate_job`: ``evaluation.nc`` (:mod:`.evaluate`) plus error-vs-time,
  snapshot, spectrum (fields) or trajectory (particles) figures;
- :func:`diagnose_job`: ``diagnostics.nc`` (:mod:`.diagnostics`) plus the equivariance
  error and transformed-test error figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from . import plots
from .data import field_trajectories, open_dataset
from .diagnostics import field_elements, field_transform, particle_transform, symmetry_consistency
from .evaluate import evaluate_fields, evaluate_particles
from .experiment import LoadedModel, load_model
from .reference import dataset_config, navier_stokes_solver, particle_solver
from .rollout import rollout

__all__ = ["JobConfig", "initial_states", "rollout_job", "evaluate_job", "diagnose_job"]


@dataclass
class JobConfig:
    """Settings shared by the rollout, evaluate and diagnose jobs.

    Attributes
    ----------
    checkpoint : str
        A ``best.pt``/``last.pt`` written by training.
    data : str
        A generated dataset of the same kind (e.g. the test split).
    out_dir : str
        Where results go.
    n_steps : int
        Rollout steps (model steps; particle steps are ``delta`` frames each).
    n_samples : int
        Samples taken from the start of ``data`` (0: all).
    start : int
        Field: first frame of the initial window; particles: the initial frame.
    chunk : int
        Steps between flushes of streamed rollouts.
    """

    checkpoint: str = "runs/train/best.pt"
    data: str = ""
    out_dir: str = "runs/eval"
    n_steps: int = 50
    n_samples: int = 4
    start: int = 0
    chunk: int = 16

    def __post_init__(self):
        for name in ("n_steps", "chunk"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got "
                                 f"{getattr(self, name)!r}")
        if self.n_samples < 0 or self.start < 0:
            raise ValueError(f"n_samples, start: expected >= 0, got {self.n_samples}, "
                             f"{self.start}")


def _samples(ds, n: int) -> list[int]:
    total = ds.sizes["sample"]
    return list(range(total if n == 0 else min(n, total)))


def initial_states(loaded: LoadedModel, ds, job: JobConfig):
    """``(initial_state, step_time, solver)`` for the job's samples."""
    idx = _samples(ds, job.n_samples)
    cfg = loaded.config
    if loaded.kind == "field":
        t_in = cfg.data.t_in
        if job.start + t_in > ds.sizes["time"]:
            raise ValueError(f"start: frames {job.start}..{job.start + t_in - 1} exceed the "
                             f"{ds.sizes['time']} frames of the data")
        frames = field_trajectories(ds, loaded.layout, idx, slice(job.start, job.start + t_in))
        step_time = float(dataset_config(ds).get("record_every", 1.0))
        return frames, step_time, navier_stokes_solver(ds, loaded.layout)
    if job.start >= ds.sizes["time"]:
        raise ValueError(f"start: frame {job.start} exceeds the {ds.sizes['time']} frames")
    sub = ds.isel(sample=idx, time=job.start)
    state = tuple(torch.as_tensor(np.asarray(sub[v].values), dtype=torch.float32)
                  for v in ("position", "velocity"))
    q = torch.as_tensor(np.asarray(ds.charge.isel(sample=idx).values), dtype=torch.float32)
    delta = cfg.data.delta
    times = ds.time.values
    step_time = float(times[1] - times[0]) * delta if len(times) > 1 else float(delta)
    return (*state, q[..., None]), step_time, particle_solver(ds, delta)


def rollout_job(job: JobConfig) -> str:
    """Roll the checkpoint's model out for ``n_steps`` into ``out_dir/rollout.zarr``."""
    loaded, ds = load_model(job.checkpoint), open_dataset(job.data)
    state, step_time, _ = initial_states(loaded, ds, job)
    store = os.path.join(job.out_dir, "rollout.zarr")
    os.makedirs(job.out_dir, exist_ok=True)
    rollout(loaded.model, state, job.n_steps, layout=loaded.layout, store=store,
            chunk=job.chunk, step_time=step_time)
    return store


def evaluate_job(job: JobConfig, name: str = "surrogate") -> xr.Dataset:
    """Surrogate vs solver from the same states: ``out_dir/evaluation.nc`` and figures."""
    loaded, ds = load_model(job.checkpoint), open_dataset(job.data)
    state, step_time, solver = initial_states(loaded, ds, job)
    result = rollout(loaded.model, state, job.n_steps, layout=loaded.layout,
                     step_time=step_time)
    truth = solver(state, job.n_steps)
    times = step_time * np.arange(1, job.n_steps + 1)
    os.makedirs(job.out_dir, exist_ok=True)
    if loaded.kind == "field":
        ev = evaluate_fields({name: result.states}, truth, times=times)
        plots.plot_error_vs_time(ev, os.path.join(job.out_dir, "error_vs_time"))
        plots.plot_snapshots(ev, os.path.join(job.out_dir, "snapshots"))
        plots.plot_spectra(ev, os.path.join(job.out_dir, "spectra"))
    else:
        eps = float(dataset_config(ds).get("softening") or 0.0)
        ev = evaluate_particles({name: result.states}, truth, state[2], initial=state[:2],
                                times=times, softening=eps)
        plots.plot_error_vs_time(ev, os.path.join(job.out_dir, "error_vs_time"))
        plots.plot_error_vs_time(ev, os.path.join(job.out_dir, "energy_drift"),
                                 metric="energy_drift")
        plots.plot_trajectories(ev, os.path.join(job.out_dir, "trajectories"))
    ev = ev.assign(valid_steps=(("model", "sample"), result.valid_steps[None].numpy()))
    _write_netcdf(ev, os.path.join(job.out_dir, "evaluation.nc"))
    return ev


def diagnose_job(job: JobConfig, name: str = "surrogate", n_elements: int = 8) -> xr.Dataset:
    """Symmetry consistency of surrogate and solver: ``out_dir/diagnostics.nc`` and figures."""
    loaded, ds = load_model(job.checkpoint), open_dataset(job.data)
    state, step_time, solver = initial_states(loaded, ds, job)
    if loaded.kind == "field":
        transform = field_transform(loaded.layout, field_elements(ds))
        state = state.double()
    else:
        transform = particle_transform(n_elements)
        state = tuple(t.double() for t in state)
    model = loaded.model.double()

    def learned(s, n):
        return rollout(model, s, n, layout=loaded.layout, step_time=step_time).states

    truth = solver(state, job.n_steps)
    diag = symmetry_consistency({name: learned, "solver": solver}, state, job.n_steps,
                                transform, truth=truth)
    diag = diag.assign_coords(time=step_time * diag.time.values)
    os.makedirs(job.out_dir, exist_ok=True)
    plots.plot_equivariance(diag, os.path.join(job.out_dir, "equivariance_error"))
    plots.plot_equivariance(diag, os.path.join(job.out_dir, "transformed_test_error"),
                            variable="transformed_error")
    _write_netcdf(diag, os.path.join(job.out_dir, "diagnostics.nc"))
    return diag


def _write_netcdf(ds: xr.Dataset, path: str) -> None:
    tmp = path + ".tmp"
    ds.to_netcdf(tmp, engine="h5netcdf")
    os.replace(tmp, path)
