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

A job never replaces results it finds in ``out_dir``: with one of its outputs already there
it refuses (:class:`FileExistsError`) unless ``overwrite`` is set, and then replaces only its
own outputs (files of its names, a rollout store only when grepsnet wrote it). Other files
in ``out_dir`` are never touched, so several jobs may share a folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
import zarr

from grepsnet_sciml._atomic import atomic_path
from grepsnet_sciml.datasets.contract import DatasetSpec

from . import plots
from .data import field_trajectories, open_dataset
from .diagnostics import field_elements, field_transform, particle_transform, symmetry_consistency
from .evaluate import evaluate_fields, evaluate_particles
from .experiment import LoadedModel, _resolve_name, check_modes, load_model
from .reference import navier_stokes_solver, particle_solver
from .rollout import ROLLOUT_MARKER, RolloutResult, guard_report, rollout, store_coordinates

__all__ = ["JobConfig", "initial_states", "rollout_job", "evaluate_job", "diagnose_job",
           "claim_outputs", "job_outputs", "evaluation_summary", "with_guard"]

_FIGURES = {"field": ("error_vs_time", "snapshots", "spectra", "energy_band"),
            "particles": ("error_vs_time", "energy_drift", "conservation", "trajectories")}
_DIAGNOSE_FIGURES = ("equivariance_error", "transformed_test_error")


def _figure_files(names: Sequence[str]) -> list[str]:
    return [f"{n}.{ext}" for n in names for ext in ("png", "json")]


def job_outputs(job: str, kind: str) -> list[str]:
    """The entries job ``"rollout"``, ``"evaluate"``, ``"diagnose"`` or ``"compare"`` writes.

    ``kind`` is the data kind (``"field"`` or ``"particles"``).
    """
    if job == "rollout":
        return ["rollout.zarr"]
    if job == "evaluate":
        return ["evaluation.nc", *_figure_files(_FIGURES[kind])]
    if job == "diagnose":
        return ["diagnostics.nc", *_figure_files(_DIAGNOSE_FIGURES)]
    if job == "compare":
        return ["evaluation.nc", "diagnostics.nc",
                *_figure_files(_FIGURES[kind] + _DIAGNOSE_FIGURES)]
    raise ValueError(f"job: expected 'rollout', 'evaluate', 'diagnose' or 'compare', got "
                     f"{job!r}")


def _is_rollout_store(path: str) -> bool:
    try:
        return zarr.open_group(path, mode="r").attrs.get("written_by") == ROLLOUT_MARKER
    except Exception:  # anything unreadable is not a store of ours
        return False


def claim_outputs(out_dir: str, names: Sequence[str], overwrite: bool, job: str) -> None:
    """Make ``out_dir`` ready for a job's outputs ``names``, never destroying other work.

    Parameters
    ----------
    out_dir : str
        The job's folder (created if missing).
    names : sequence of str
        Entries the job writes (:func:`job_outputs`).
    overwrite : bool
        Replace those of ``names`` that exist: files are replaced when rewritten, a
        ``.zarr`` store is removed now, but only if grepsnet's :func:`~.rollout.rollout`
        wrote it.
    job : str
        Names the job in messages.

    Raises
    ------
    FileExistsError
        An output exists and ``overwrite`` is False, or it is not grepsnet's to replace
        (the message names it); nothing is touched.
    PermissionError
        ``out_dir`` cannot be created or written.
    """
    existing = [n for n in names if os.path.lexists(os.path.join(out_dir, n))]
    if existing and not overwrite:
        raise FileExistsError(
            f"out_dir: {out_dir!r} already holds {job} results ({', '.join(existing)}); "
            "nothing was touched. Pass overwrite=True (--overwrite) to replace them, or "
            "choose another out_dir")
    for name in existing:
        path = os.path.join(out_dir, name)
        if name.endswith(".zarr"):
            ours = os.path.isdir(path) and not os.path.islink(path) and _is_rollout_store(path)
        else:
            ours = os.path.isfile(path) and not os.path.islink(path)
        if not ours:
            want = (f"a rollout store with attrs written_by = {ROLLOUT_MARKER!r}"
                    if name.endswith(".zarr") else "a plain file")
            raise FileExistsError(
                f"out_dir: {path!r} was not written by grepsnet {job} (expected {want}); "
                "overwrite replaces only grepsnet's own results, so nothing was removed. "
                "Choose another out_dir or move it away yourself")
    for name in existing:
        if name.endswith(".zarr"):
            shutil.rmtree(os.path.join(out_dir, name))
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"out_dir: cannot create {out_dir!r} ({err.strerror}); choose "
                              "an output folder in a writable place") from err
    if not os.access(out_dir, os.W_OK):
        raise PermissionError(f"out_dir: {out_dir!r} is not writable; choose an output folder "
                              "you can write to")


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
    overwrite : bool
        Replace this job's earlier results in ``out_dir`` (see :func:`claim_outputs`).
    energy_budget : bool or None
        Field models: roll out with (True) or without (False) the energy-budget head,
        whatever the model was trained with; None: as trained (:func:`~.experiment.load_model`).
    """

    checkpoint: str = "runs/train/best.pt"
    data: str = ""
    out_dir: str = "runs/eval"
    n_steps: int = 50
    n_samples: int = 4
    start: int = 0
    chunk: int = 16
    overwrite: bool = False
    energy_budget: bool | None = None

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
    """``(initial_state, step_time, solver)`` for the job's samples.

    Raises
    ------
    ValueError
        ``ds`` holds data of another kind than the checkpoint's model, or a grid too
        coarse for its ``modes``; the message names data, checkpoint and model.
    """
    idx = _samples(ds, job.n_samples)
    cfg = loaded.config
    name = _resolve_name(cfg.model, loaded.kind)
    spec = DatasetSpec.from_dataset(ds)
    data_kind = spec.kind
    if data_kind != loaded.kind:
        raise ValueError(
            f"data: {job.data!r} holds {data_kind} data (attrs['kind'] = {data_kind!r}), but "
            f"checkpoint {job.checkpoint!r} holds a {loaded.kind} model ({name!r}); expected "
            f"{loaded.kind} data like the data it was trained on")
    if loaded.kind == "field":
        check_modes(name, cfg.model.modes, (ds.sizes["x"], ds.sizes["y"]), repr(job.data))
        t_in = cfg.data.t_in
        if job.start + t_in > ds.sizes["time"]:
            raise ValueError(f"start: frames {job.start}..{job.start + t_in - 1} exceed the "
                             f"{ds.sizes['time']} frames of the data")
        frames = field_trajectories(ds, loaded.layout, idx, slice(job.start, job.start + t_in))
        step_time = float(spec.config.get("record_every", 1.0))
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


def rollout_job(job: JobConfig) -> RolloutResult:
    """Roll the checkpoint's model out for ``n_steps`` into ``out_dir/rollout.zarr``.

    Memory and the time to the first step do not depend on ``n_steps``; the rollout stops
    once every trajectory has blown up (see :meth:`~.rollout.RolloutResult.guard_report`).
    """
    loaded = load_model(job.checkpoint, energy_budget=job.energy_budget)
    ds = open_dataset(job.data)
    state, step_time, _ = initial_states(loaded, ds, job)
    claim_outputs(job.out_dir, job_outputs("rollout", loaded.kind), job.overwrite, "rollout")
    store = os.path.join(job.out_dir, "rollout.zarr")
    idx = _samples(ds, job.n_samples)  # the samples initial_states took
    frame = job.start + loaded.config.data.t_in - 1 if loaded.kind == "field" else job.start
    attrs = {"model": _resolve_name(loaded.config.model, loaded.kind),
             "checkpoint": os.fspath(job.checkpoint), "data": os.fspath(job.data),
             "start_frame": int(frame), "group": str(ds.attrs.get("group", ""))}
    return rollout(loaded.model, state, job.n_steps, layout=loaded.layout, store=store,
                   chunk=job.chunk, step_time=step_time, **store_coordinates(ds, idx, frame),
                   attrs=attrs)


def evaluate_job(job: JobConfig, name: str = "surrogate") -> xr.Dataset:
    """Surrogate vs solver from the same states: ``out_dir/evaluation.nc`` and figures.

    The result carries ``valid_steps(model, sample)``, ``blowup_step(model, sample)`` and
    ``attrs["guard"]`` (:func:`~.rollout.guard_report`); :func:`evaluation_summary` turns
    it into text.
    """
    loaded = load_model(job.checkpoint, energy_budget=job.energy_budget)
    ds = open_dataset(job.data)
    state, step_time, solver = initial_states(loaded, ds, job)
    claim_outputs(job.out_dir, job_outputs("evaluate", loaded.kind), job.overwrite,
                  "evaluate")
    result = rollout(loaded.model, state, job.n_steps, layout=loaded.layout,
                     step_time=step_time)
    truth = solver(state, job.n_steps)
    times = step_time * np.arange(1, job.n_steps + 1)
    if loaded.kind == "field":
        ev = evaluate_fields({name: result.states}, truth, times=times)
        plots.plot_error_vs_time(ev, os.path.join(job.out_dir, "error_vs_time"))
        plots.plot_snapshots(ev, os.path.join(job.out_dir, "snapshots"))
        plots.plot_spectra(ev, os.path.join(job.out_dir, "spectra"))
        plots.plot_field_band(ev, os.path.join(job.out_dir, "energy_band"))
    else:
        eps = float(DatasetSpec.from_dataset(ds).config.get("softening") or 0.0)
        ev = evaluate_particles({name: result.states}, truth, state[2], initial=state[:2],
                                times=times, softening=eps)
        plots.plot_error_vs_time(ev, os.path.join(job.out_dir, "error_vs_time"),
                                 metric="position_mse")
        plots.plot_energy_drift(ev, os.path.join(job.out_dir, "energy_drift"))
        plots.plot_conservation(ev, os.path.join(job.out_dir, "conservation"))
        plots.plot_trajectories(ev, os.path.join(job.out_dir, "trajectories"))
    ev = with_guard(ev, [result])
    _write_netcdf(ev, os.path.join(job.out_dir, "evaluation.nc"))
    return ev


def with_guard(ev: xr.Dataset, results: Sequence[RolloutResult]) -> xr.Dataset:
    """``ev`` with ``valid_steps``/``blowup_step(model, sample)`` and ``attrs["guard"]``."""
    ev = ev.assign(
        valid_steps=(("model", "sample"), np.stack([r.valid_steps.numpy() for r in results])),
        blowup_step=(("model", "sample"), np.stack([r.blowup_step.numpy() for r in results]),
                     {"description": "1-based step at which the rollout's blow-up guard "
                                     "fired (its metrics are NaN from there); 0: never"}))
    return ev.assign_attrs(guard="; ".join(
        f"{m}: {r.guard_report()}" for m, r in zip(ev.model.values, results)))


def evaluation_summary(ev: xr.Dataset) -> list[str]:
    """Lines reporting the headline metric per model, and any blow-up instead of a bare NaN.

    The metric (``rel_l2_rollout`` for fields, ``position_mse`` for particles) is averaged
    over the samples whose rollout stayed finite; samples the blow-up guard stopped are
    counted and named.
    """
    field = "rel_l2_rollout" in ev
    metric = "rel_l2_rollout" if field else "position_mse"
    lines = []
    for model in ev.model.values:
        values = ev[metric].sel(model=model)
        if not field:
            values = values.mean("time")
        steps = ev.blowup_step.sel(model=model).values
        ok = steps == 0
        n_steps = ev.sizes["time"]
        if ok.all():
            lines.append(f"{model}: {metric} {float(values.mean()):.4g} (mean over "
                         f"{ok.size} samples)")
            continue
        lines.append(f"{model}: {guard_report(steps, n_steps)}")
        if ok.any():
            lines.append(f"{model}: {metric} {float(values.values[ok].mean()):.4g} (mean over "
                         f"the {int(ok.sum())} of {ok.size} samples that did not blow up; "
                         "undefined for the others)")
        else:
            lines.append(f"{model}: {metric} undefined: every sample blew up within the "
                         f"{n_steps} steps (earliest at step {int(steps.min())})")
    return lines


def diagnose_job(job: JobConfig, name: str = "surrogate", n_elements: int = 8) -> xr.Dataset:
    """Symmetry consistency of surrogate and solver: ``out_dir/diagnostics.nc`` and figures."""
    loaded = load_model(job.checkpoint, energy_budget=job.energy_budget)
    ds = open_dataset(job.data)
    state, step_time, solver = initial_states(loaded, ds, job)
    claim_outputs(job.out_dir, job_outputs("diagnose", loaded.kind), job.overwrite,
                  "diagnose")
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
    n_samples = len(state[0] if isinstance(state, tuple) else state)
    diag = diag.assign_coords(time=step_time * diag.time.values).assign_attrs(n_samples=n_samples)
    plots.plot_equivariance(diag, os.path.join(job.out_dir, "equivariance_error"))
    plots.plot_equivariance(diag, os.path.join(job.out_dir, "transformed_test_error"),
                            variable="transformed_error")
    _write_netcdf(diag, os.path.join(job.out_dir, "diagnostics.nc"))
    return diag


def _write_netcdf(ds: xr.Dataset, path: str) -> None:
    with atomic_path(path, suffix=".nc") as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
