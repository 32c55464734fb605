"""Several trained surrogates side by side: one evaluation and one symmetry diagnosis.

:func:`compare_job` is :func:`~.pipeline.evaluate_job` and :func:`~.pipeline.diagnose_job`
for several checkpoints of the same kind at once: every model and the numerical solver
start from the same states, so the figures (error vs time, snapshots, spectra or
trajectories, equivariance error per step) show the models beside each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import numpy as np
import xarray as xr

from . import plots
from .data import open_dataset
from .diagnostics import field_elements, field_transform, particle_transform, symmetry_consistency
from .evaluate import evaluate_fields, evaluate_particles
from .experiment import load_model
from .pipeline import (
    JobConfig,
    _write_netcdf,
    claim_outputs,
    initial_states,
    job_outputs,
    with_guard,
)
from .reference import dataset_config
from .rollout import rollout

__all__ = ["compare_job"]


def _load_all(checkpoints: Mapping[str, str]):
    if not checkpoints:
        raise ValueError("checkpoints: expected at least one {name: checkpoint path}")
    loaded = {name: load_model(path) for name, path in checkpoints.items()}
    kinds = {m.kind for m in loaded.values()}
    if len(kinds) != 1:
        raise ValueError(f"checkpoints: expected models of one kind, got "
                         f"{ {n: m.kind for n, m in loaded.items()} }")
    layouts = {str(m.layout.to_json()) if m.layout is not None else "" for m in loaded.values()}
    if len(layouts) != 1:
        raise ValueError("checkpoints: the field models read different variables; expected "
                         "one layout")
    steps = {m.config.data.delta if m.kind == "particles" else 1 for m in loaded.values()}
    if len(steps) != 1:
        raise ValueError(f"checkpoints: the particle models step {sorted(steps)} frames; "
                         "expected one step")
    return loaded


def _first_state(state):
    return state[0] if isinstance(state, tuple) else state


def compare_job(checkpoints: Mapping[str, str], data: str, out_dir: str, n_steps: int,
                n_samples: int = 4, diagnose_steps: int = 10, diagnose_samples: int | None = None,
                n_elements: int = 8, overwrite: bool = False,
                horizon: int | None = None,
                announce: Callable[[str], None] | None = None) -> tuple[xr.Dataset, xr.Dataset]:
    """Evaluate and diagnose several surrogates against the solver from the same states.

    Parameters
    ----------
    checkpoints : dict of str -> str
        Display name -> checkpoint, all of one kind (fields or particles) and one layout.
    data : str
        A generated dataset of that kind (e.g. the test split).
    out_dir : str
        Receives ``evaluation.nc``, ``diagnostics.nc`` and the figures (PNG + JSON).
    n_steps : int
        Rollout steps of the evaluation.
    n_samples, diagnose_samples : int
        Samples (from the start of ``data``) evaluated and diagnosed; ``diagnose_samples``
        defaults to ``n_samples``, so that the error on the transformed test set compares
        with the evaluation's on the same samples.
    diagnose_steps : int
        Rollout steps of the symmetry diagnosis (float64).
    n_elements : int
        Particles: random E(3) x S_n elements of the diagnosis (fields use the dataset's
        declared elements).
    overwrite : bool
        Replace earlier results of this job in ``out_dir`` (refused otherwise; see
        :func:`~.pipeline.claim_outputs`).
    horizon : int, optional
        Rollout steps the training trajectories held; marked on the error-vs-time figures.
    announce : callable, optional
        Called with the name of each stage (``"rolling out"``, ``"evaluating"``,
        ``"diagnostics"``) as it starts, e.g. to print a header.

    Returns
    -------
    evaluation, diagnostics : xarray.Dataset
        ``evaluation`` with a ``model`` axis in the order of ``checkpoints`` (plus
        ``valid_steps(model, sample)``, ``blowup_step(model, sample)`` and
        ``attrs["guard"]``); ``diagnostics`` with ``equivariance_error(model,
        element, time)`` and ``transformed_error`` for every model and ``"solver"``, and
        ``attrs["n_samples"]``.
    """
    loaded = _load_all(checkpoints)
    first = next(iter(loaded.values()))
    ds = open_dataset(data)

    # ---- evaluation: every model and the solver from the same states --------------------
    job = JobConfig(checkpoint=next(iter(checkpoints.values())), data=data, out_dir=out_dir,
                    n_steps=n_steps, n_samples=n_samples)
    state, step_time, solver = initial_states(first, ds, job)
    for m, path in zip(loaded.values(), checkpoints.values()):
        initial_states(m, ds, JobConfig(checkpoint=path, data=data, n_samples=1))
    claim_outputs(out_dir, job_outputs("compare", first.kind), overwrite, "compare")
    say = announce or (lambda stage: None)
    say("rolling out")
    results = {name: rollout(m.model, state, n_steps, layout=m.layout, step_time=step_time)
               for name, m in loaded.items()}
    truth = solver(state, n_steps)
    times = step_time * np.arange(1, n_steps + 1)
    say("evaluating")
    predictions = {name: r.states for name, r in results.items()}
    if first.kind == "field":
        ev = evaluate_fields(predictions, truth, times=times)
        plots.plot_snapshots(ev, os.path.join(out_dir, "snapshots"))
        plots.plot_spectra(ev, os.path.join(out_dir, "spectra"))
        plots.plot_field_band(ev, os.path.join(out_dir, "energy_band"), horizon=horizon)
    else:
        eps = float(dataset_config(ds).get("softening") or 0.0)
        ev = evaluate_particles(predictions, truth, state[2], initial=state[:2], times=times,
                                softening=eps)
        plots.plot_energy_drift(ev, os.path.join(out_dir, "energy_drift"), horizon=horizon)
        plots.plot_conservation(ev, os.path.join(out_dir, "conservation"), horizon=horizon)
        plots.plot_trajectories(ev, os.path.join(out_dir, "trajectories"))
    plots.plot_error_vs_time(ev, os.path.join(out_dir, "error_vs_time"),
                             metric="rel_l2" if first.kind == "field" else "position_mse",
                             horizon=horizon)
    ev = with_guard(ev, list(results.values()))
    _write_netcdf(ev, os.path.join(out_dir, "evaluation.nc"))

    # ---- symmetry diagnosis in float64 --------------------------------------------------
    say("diagnostics")
    djob = JobConfig(checkpoint=job.checkpoint, data=data, out_dir=out_dir, n_steps=diagnose_steps,
                     n_samples=n_samples if diagnose_samples is None else diagnose_samples)
    dstate, step_time, solver = initial_states(first, ds, djob)
    if first.kind == "field":
        transform = field_transform(first.layout, field_elements(ds))
        dstate = dstate.double()
    else:
        transform = particle_transform(n_elements)
        dstate = tuple(t.double() for t in dstate)

    def learned(model, layout):
        return lambda s, n: rollout(model, s, n, layout=layout, step_time=step_time).states

    fns = {name: learned(m.model.double(), m.layout) for name, m in loaded.items()}
    fns["solver"] = solver
    truth = solver(dstate, diagnose_steps)
    diag = symmetry_consistency(fns, dstate, diagnose_steps, transform, truth=truth)
    diag = diag.assign_coords(time=step_time * diag.time.values).assign_attrs(
        n_samples=len(_first_state(dstate)))
    plots.plot_equivariance(diag, os.path.join(out_dir, "equivariance_error"))
    plots.plot_equivariance(diag, os.path.join(out_dir, "transformed_test_error"),
                            variable="transformed_error")
    _write_netcdf(diag, os.path.join(out_dir, "diagnostics.nc"))
    return ev, diag
