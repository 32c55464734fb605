"""Long-horizon rollouts of trained NS surrogates against the solver: the issue's measures.

Every checkpoint is rolled out ``n_steps`` model steps from the same test states as the
dataset's numerical solver (:func:`~grepsnet_sciml.solvers.reference.navier_stokes_solver`),
and :func:`~grepsnet_sciml.solvers.evaluate.evaluate_fields` scores them. Reported per
model, at each horizon ``h`` of ``horizons`` (model steps; e.g. 10x and 100x the training
horizon):

- ``blow_ups``: samples whose rollout became non-finite (the blow-up guard) by ``h``;
- ``energy_in_band``/``enstrophy_in_band``: the fraction of samples inside the solver's
  stationary band (5th-95th percentile of the truth over every sample and the second half
  of the ``n_steps`` rollout) at step ``h``, and the solver's own fraction;
- ``spectrum_ratio_worst``: the shell spectrum ratio model/solver farthest from 1
  (``1 <= |k| <= N/3``, as a factor) at step ``h``, and ``spectrum_ratio`` every shell's
  ratio (``|k| = 1 .. N/3`` in order; None where a blown-up model has none), beside
  ``solver_spectrum_ratio_worst_split``, the same between the first and the second half of
  the solver's samples (the measure's sampling floor at this many samples);
- ``rel_l2``: the relative L2 error at step ``h`` (mean over samples);
- ``energy_steps_in_band``/``enstrophy_steps_in_band``: the fraction of the steps ``1 .. h``
  at which the mean over samples is inside the band, and the solver's own
  (``solver_..._steps_in_band``);

and ``correlation_time`` (median over samples, in the data's time units: the first time the
correlation with the truth falls below 0.8). Writes ``<stem>.{json,md}`` and the
energy/enstrophy-against-band figure ``<stem>_band.{png,json}`` (``stem`` defaults to
``ns_long_horizon``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from grepsnet_sciml._atomic import atomic_write_text

__all__ = ["run"]


def _at(values: np.ndarray, step: int) -> float:
    return float(values[step - 1])


def run(checkpoints: dict, data, n_steps: int, horizons, n_samples: int = 16,
        out_dir: Path = Path("benchmarks/results"), threads: int = 1,
        stem: str = "ns_long_horizon", energy_budget=(), test_steps: int = 0) -> dict:
    """Roll every checkpoint out beside the solver and write the tables and the figure.

    Parameters
    ----------
    checkpoints : dict of str -> path
        Display name -> checkpoint written by ``grepsnet train`` (all on the same data
        layout and ``t_in``).
    data : path
        The test store the initial states come from (frames ``0 .. t_in - 1``).
    n_steps : int
        Model steps of every rollout (the largest horizon).
    horizons : sequence of int
        Steps at which the measures are read, each ``<= n_steps``.
    n_samples : int
        Test trajectories (the first ones of ``data``).
    out_dir : Path
    threads : int
        Torch threads.
    stem : str
        File names: ``<stem>.{json,md}`` and ``<stem>_band.{png,json}``.
    energy_budget : collection of str
        Display names of ``checkpoints`` rolled out with the energy-budget head put on
        (:func:`~grepsnet_sciml.solvers.experiment.load_model` ``energy_budget=True``); the
        others as trained.
    test_steps : int
        When positive, each model is also rolled out ``test_steps`` steps from every
        trajectory of ``data`` and scored against the stored frames by the NS bench's
        headline metric (:func:`~grepsnet_sciml.benchmarks.ns.relative_l2_percent`, G-FNO's
        test error in %): ``test_error`` in each row.

    Returns
    -------
    dict
        ``{"rows": [...], "files": {...}}``, one row per model and horizon.
    """
    from grepsnet_sciml.datasets.contract import DatasetSpec
    from grepsnet_sciml.solvers import plots
    from grepsnet_sciml.solvers.data import field_trajectories, open_dataset
    from grepsnet_sciml.solvers.evaluate import evaluate_fields
    from grepsnet_sciml.solvers.experiment import load_model
    from grepsnet_sciml.solvers.reference import navier_stokes_solver
    from grepsnet_sciml.solvers.rollout import rollout

    horizons = [int(h) for h in horizons]
    bad = [h for h in horizons if not 1 <= h <= n_steps]
    if bad:
        raise ValueError(f"horizons: {bad} outside 1..n_steps = {n_steps}")
    if not checkpoints:
        raise ValueError("checkpoints: expected at least one name -> checkpoint")
    unknown = sorted(set(energy_budget) - set(checkpoints))
    if unknown:
        raise ValueError(f"energy_budget: {unknown} are not among the checkpoints' names "
                         f"{list(checkpoints)}")
    torch.set_num_threads(threads)
    ds = open_dataset(data)
    loaded = {name: load_model(path, energy_budget=True if name in energy_budget else None)
              for name, path in checkpoints.items()}
    first = next(iter(loaded.values()))
    t_in = first.config.data.t_in
    frames = field_trajectories(ds, first.layout, list(range(min(n_samples,
                                                                  ds.sizes["sample"]))),
                                slice(0, t_in))
    truth = navier_stokes_solver(ds, first.layout)(frames, n_steps)
    step_time = float(DatasetSpec.from_dataset(ds).config.get("record_every", 1.0))
    predictions = {}
    for name, model in loaded.items():
        if model.config.data.t_in != t_in:
            raise ValueError(f"checkpoints: {name!r} takes t_in = {model.config.data.t_in} "
                             f"frames, the first takes {t_in}; expected the same")
        predictions[name] = rollout(model.model, frames, n_steps, layout=model.layout,
                                    step_time=step_time).states
    test_errors = {name: _test_error(model, ds, t_in, test_steps)
                   for name, model in loaded.items()} if test_steps > 0 else {}
    times = step_time * np.arange(1, n_steps + 1)
    ev = evaluate_fields(predictions, truth, times=times,
                         spectrum_times=[h - 1 for h in horizons])
    rows = []
    shells = frames.shape[-1] // 3
    for name in predictions:
        m = ev.sel(model=name)
        blow = m.blow_up_time.values
        for j, h in enumerate(horizons):
            rows.append({
                "model": name, "checkpoint": os.fspath(checkpoints[name]), "horizon": h,
                "energy_budget": loaded[name].model.head is not None,
                **({"test_error": test_errors[name]} if name in test_errors else {}),
                "blow_ups": int(np.sum(blow <= times[h - 1])),
                "energy_in_band": _at(m.energy_in_band.values, h),
                "enstrophy_in_band": _at(m.enstrophy_in_band.values, h),
                "solver_energy_in_band": _in_band(ev.energy_true.values[:, h - 1],
                                                  ev.energy_band.values),
                "spectrum_ratio_worst": float(m.spectrum_ratio_worst.values[j]),
                "spectrum_ratio": [float(r) if np.isfinite(r) else None
                                   for r in m.spectrum_ratio.values[j][1 : shells + 1]],
                "solver_spectrum_ratio_worst_split": float(
                    ev.spectrum_ratio_worst_split.values[j]),
                "rel_l2": float(m.rel_l2.values[:, h - 1].mean()),
                "correlation_time": float(np.median(m.correlation_time.values)),
                "energy_mean": float(m.energy.values[:, h - 1].mean()),
                "energy_mean_true": float(ev.energy_true.values[:, h - 1].mean()),
                **{f"{q}_steps_in_band": _steps_in_band(m[q].values[:, :h], band)
                   for q, band in (("energy", ev.energy_band.values),
                                   ("enstrophy", ev.enstrophy_band.values))},
                **{f"solver_{q}_steps_in_band": _steps_in_band(ev[f"{q}_true"].values[:, :h],
                                                               ev[f"{q}_band"].values)
                   for q in ("energy", "enstrophy")},
            })
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = plots.plot_field_band(ev, os.fspath(out_dir / f"{stem}_band"))
    result = {"data": os.fspath(data), "n_samples": int(frames.shape[0]), "n_steps": n_steps,
              "step_time": step_time, "horizons": horizons,
              "energy_band": ev.energy_band.values.tolist(),
              "enstrophy_band": ev.enstrophy_band.values.tolist(), "rows": rows,
              "files": {"json": os.fspath(out_dir / f"{stem}.json"),
                        "md": os.fspath(out_dir / f"{stem}.md"), "png": figure}}
    atomic_write_text(out_dir / f"{stem}.json", json.dumps(result, indent=1))
    atomic_write_text(out_dir / f"{stem}.md", format_table(result))
    return result


def _in_band(values: np.ndarray, band: np.ndarray) -> float:
    return float(np.mean((values >= band[0]) & (values <= band[-1])))


def _test_error(loaded, ds, t_in: int, steps: int) -> float:
    """G-FNO's test error (%) of ``steps`` rollout steps from every trajectory of ``ds``."""
    from grepsnet_sciml.benchmarks.ns import relative_l2_percent
    from grepsnet_sciml.solvers.data import field_trajectories
    from grepsnet_sciml.solvers.rollout import rollout

    if ds.sizes["time"] < t_in + steps:
        raise ValueError(f"test_steps: {steps} steps after {t_in} input frames need "
                         f"{t_in + steps} frames; the data hold {ds.sizes['time']}")
    frames = field_trajectories(ds, loaded.layout, times=slice(0, t_in + steps))
    pred = rollout(loaded.model, frames[:, :t_in], steps, layout=loaded.layout).states
    return relative_l2_percent(pred.double(), frames[:, t_in:].double())


def _steps_in_band(values: np.ndarray, band: np.ndarray) -> float:
    """Fraction of the steps at which the mean over samples of ``values (sample, step)`` is
    inside ``band``."""
    return _in_band(values.mean(0), band)


def format_table(result: dict) -> str:
    """Markdown table of :func:`run`'s rows."""
    lines = ["| model | steps | blow-ups | energy in band (solver) | enstrophy in band | "
             "worst spectrum ratio (solver halves) | rel. L2 | energy (solver) | "
             "correlation time | "
             "steps with mean energy, enstrophy in band (solver) | test % |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['horizon']} | {r['blow_ups']}/{result['n_samples']} | "
            f"{r['energy_in_band']:.2f} ({r['solver_energy_in_band']:.2f}) | "
            f"{r['enstrophy_in_band']:.2f} | {r['spectrum_ratio_worst']:.2f} "
            f"({r['solver_spectrum_ratio_worst_split']:.2f}) | "
            f"{r['rel_l2']:.2f} | {r['energy_mean']:.4f} ({r['energy_mean_true']:.4f}) | "
            f"{r['correlation_time']:.1f} | {r['energy_steps_in_band']:.2f}, "
            f"{r['enstrophy_steps_in_band']:.2f} ({r['solver_energy_steps_in_band']:.2f}, "
            f"{r['solver_enstrophy_steps_in_band']:.2f}) | "
            f"{format(r['test_error'], '.2f') if 'test_error' in r else '-'} |")
    return "\n".join(lines) + "\n"
