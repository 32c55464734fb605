"""Figures of evaluation and diagnostic datasets: a PNG and a JSON of its numbers each.

Every function reads an ``xarray.Dataset`` made by :mod:`.evaluate` or :mod:`.diagnostics`
(never a model), writes ``<path>.png`` and ``<path>.json`` (atomically) and returns the
PNG path.
"""

from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from grepsnet_sciml._atomic import atomic_path, atomic_write_text  # noqa: E402

__all__ = ["plot_conservation", "plot_energy_drift", "plot_error_vs_time", "plot_equivariance",
           "plot_field_band", "plot_snapshots", "plot_spectra", "plot_trajectories",
           "write_json"]


def _clean(value):
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(data: dict, path: str) -> None:
    """Write ``data`` as JSON atomically, with the umask's mode (NaN/Inf become null)."""
    atomic_write_text(path, json.dumps(_clean(data), indent=1))


def _save(fig, path: str, data: dict) -> str:
    base = path[:-4] if path.endswith(".png") else path
    try:
        with atomic_path(base + ".png") as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    write_json(data, base + ".json")
    return base + ".png"


_LABELS = {"rel_l2": "relative L2 error", "position_mse": "position MSE",
           "mse": "mean squared error", "energy_drift": "|relative energy drift|",
           "momentum_drift": "momentum drift |P(t) - P(0)|",
           "equivariance_error": "equivariance error ||M(g x) - g M(x)|| / ||M(x)||",
           "transformed_error": "relative L2 error on the transformed test set"}


def _label(name: str) -> str:
    return _LABELS.get(name, name.replace("_", " "))


def _time_axes(ax, times: np.ndarray, horizon: int | None = None) -> None:
    """Label the x axis in time units, add a top axis in rollout steps and mark ``horizon``.

    ``times`` are the step times ``step_time * (1, 2, ...)``, so ``times[0]`` is the step.
    """
    step = float(times[0]) if len(times) and times[0] > 0 else 1.0
    ax.set_xlabel("time (nondimensional units)")
    top = ax.secondary_xaxis("top", functions=(lambda t: t / step, lambda k: k * step))
    top.set_xlabel("rollout step", fontsize=8)
    top.tick_params(labelsize=8)
    top.xaxis.set_major_locator(MaxNLocator(integer=True))
    if horizon is not None:
        ax.axvline(horizon * step, color="0.3", ls=":", lw=1.2,
                   label=f"training horizon ({horizon} steps)")


def plot_error_vs_time(ev, path: str, metric: str = "rel_l2", horizon: int | None = None) -> str:
    """Mean over samples of ``|metric(model, sample, time)|`` against time, one line per model.

    Signed metrics (drifts) are plotted by magnitude on the log scale. ``horizon`` (rollout
    steps) marks the longest rollout the training data held.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    data = {"time": ev.time.values, "metric": metric, "horizon": horizon, "models": {}}
    for model in ev.model.values:
        curve = np.abs(ev[metric].sel(model=model)).mean("sample").values
        ax.plot(ev.time.values, curve, marker=".", label=str(model))
        data["models"][str(model)] = curve
    _time_axes(ax, ev.time.values, horizon)
    ax.set_ylabel(f"{_label(metric)} (mean over {ev.sizes['sample']} samples)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{_label(metric)} of the rollout against the solver", fontsize=10)
    return _save(fig, path, data)


def plot_energy_drift(ev, path: str, horizon: int | None = None) -> str:
    """``|energy_drift|`` of every model beside the solver's own (``energy_drift_true``).

    Both are relative to the energy of the initial state, averaged over samples, on a log
    scale; ``horizon`` as in :func:`plot_error_vs_time`.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    times = ev.time.values
    solver = np.abs(ev.energy_drift_true).mean("sample").values
    data = {"time": times, "horizon": horizon, "solver": solver, "models": {}}
    ax.plot(times, np.maximum(solver, 1e-300), "k-", marker=".", label="solver")
    for model in ev.model.values:
        curve = np.abs(ev.energy_drift.sel(model=model)).mean("sample").values
        ax.plot(times, curve, marker=".", label=str(model))
        data["models"][str(model)] = curve
    _time_axes(ax, times, horizon)
    ax.set_ylabel(f"|E(t) - E(0)| / |E(0)| (mean over {ev.sizes['sample']} samples)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("relative energy drift: models and solver", fontsize=10)
    return _save(fig, path, data)


def model_style(k: int) -> dict:
    """Line style of the ``k``-th model: the ten default colours solid, then dashed, dotted
    and dash-dotted, so up to 40 models are told apart."""
    dash = ("-", "--", ":", "-.")[(k // 10) % 4]
    return {"color": f"C{k % 10}", "ls": dash, "marker": "." if dash == "-" else None}


def _solver_and_models(ax, ev, var: str, floor: float | None = None) -> dict:
    """Plot the sample means of ``{var}_true`` (the solver, black) and of ``var`` per model
    against time, clamped below at ``floor`` for log scales; returns the plotted values."""
    def shown(values):
        return values if floor is None else np.maximum(values, floor)

    times = ev.time.values
    solver = ev[f"{var}_true"].mean("sample").values
    ax.plot(times, shown(solver), "k-", marker=".", label="solver")
    out = {"solver": solver, "models": {}}
    for k, model in enumerate(ev.model.values):
        curve = ev[var].sel(model=model).mean("sample").values
        ax.plot(times, shown(curve), label=str(model), **model_style(k))
        out["models"][str(model)] = curve
    return out


def plot_field_band(ev, path: str, horizon: int | None = None) -> str:
    """Energy and enstrophy of every model and of the solver against time, with the solver's
    stationary band (5th-95th percentile, ``energy_band``) shaded; means over samples."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    times = ev.time.values
    data = {"time": times, "horizon": horizon}
    for ax, var in zip(axes, ("energy", "enstrophy")):
        band = ev[f"{var}_band"].values
        ax.axhspan(band[0], band[-1], color="0.85", label="solver's 5-95% band")
        data[var] = {"band": band, **_solver_and_models(ax, ev, var)}
        _time_axes(ax, times, horizon)
        ax.set_ylabel(f"{var} (mean over {ev.sizes['sample']} samples)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("energy and enstrophy against the solver's stationary band", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, data)


def plot_conservation(ev, path: str, horizon: int | None = None) -> str:
    """Momentum and angular momentum drift of every model beside the solver's (log scale,
    means over samples)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0), sharey=True)
    times = ev.time.values
    data = {"time": times, "horizon": horizon}
    for ax, var, label in zip(axes, ("momentum_drift", "angular_momentum_drift"),
                              ("|P(t) - P(0)|", "|L(t) - L(0)|")):
        data[var] = _solver_and_models(ax, ev, var, floor=1e-300)
        _time_axes(ax, times, horizon)
        ax.set_ylabel(f"{label} (mean over {ev.sizes['sample']} samples, unit masses)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("momentum and angular momentum drift: models and solver", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, data)


def plot_equivariance(diag, path: str, variable: str = "equivariance_error") -> str:
    """``variable(model, element, time)``, one panel per model on one shared log scale.

    Curves that are exactly 0 (e.g. the identity element) cannot be drawn on a log scale;
    each panel names them instead.
    """
    models = list(diag.model.values)
    fig, axes = plt.subplots(1, len(models), figsize=(4.4 * len(models), 4.2), squeeze=False,
                             sharey=True)
    data = {"time": diag.time.values, "variable": variable, "models": {}}
    for ax, model in zip(axes[0], models):
        data["models"][str(model)] = {}
        zero = []
        for k, element in enumerate(diag.element.values):
            curve = diag[variable].sel(model=model, element=element).values
            data["models"][str(model)][str(element)] = curve
            if np.all(curve == 0):
                zero.append(str(element))
                continue
            ax.plot(diag.time.values, curve, marker=".", label=str(element),
                    color=f"C{k % 10}")
        if zero:
            ax.text(0.02, 0.02, "exactly 0: " + ", ".join(zero), transform=ax.transAxes,
                    fontsize=8)
        ax.set_yscale("log")
        _time_axes(ax, diag.time.values)
        ax.set_title(str(model))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2, title="element g", title_fontsize=7)
    axes[0, 0].set_ylabel(_label(variable), fontsize=9)
    n = diag.attrs.get("n_samples")
    fig.suptitle(_label(variable) + (f" ({n} samples)" if n else "") + ", per rollout step",
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, path, data)


def plot_snapshots(ev, path: str) -> str:
    """Truth / prediction / error of sample 0 at the evaluated snapshot times.

    Truth and predictions share one symmetric colour scale, the error rows another (so
    small errors stay visible); each row has its colorbar.
    """
    models = list(ev.model.values)
    times = ev.snapshot_time.values
    rows = 1 + 2 * len(models)
    fig, axes = plt.subplots(rows, len(times), figsize=(2.5 * len(times) + 1.0, 2.3 * rows),
                             squeeze=False)
    truth_all = ev.snapshot_true.values
    vmax = float(np.nanmax(np.abs(truth_all))) or 1.0
    errors = np.stack([ev.snapshot.sel(model=m).values - truth_all for m in models])
    emax = float(np.nanmax(np.abs(errors))) if np.isfinite(errors).any() else 1.0
    emax = emax or 1.0
    data = {"snapshot_time": times, "vorticity_range": vmax, "error_range": emax,
            "rel_error": {}}

    def show(i, j, field, scale, title):
        im = axes[i, j].imshow(field.T, origin="lower", cmap="RdBu_r", vmin=-scale,
                               vmax=scale, extent=(0, 1, 0, 1))
        axes[i, j].set_title(title, fontsize=8)
        return im

    for j, t in enumerate(times):
        im = show(0, j, truth_all[j], vmax, f"solver, t = {t:g}")
        for i, model in enumerate(models):
            pred = ev.snapshot.sel(model=model).values[j]
            im_p = show(1 + 2 * i, j, pred, vmax, f"{model}, t = {t:g}")
            im_e = show(2 + 2 * i, j, errors[i, j], emax, f"{model} - solver, t = {t:g}")
            rel = float(np.linalg.norm(errors[i, j]) / max(np.linalg.norm(truth_all[j]),
                                                           1e-300))
            data["rel_error"].setdefault(str(model), []).append(rel)
            if j == len(times) - 1:
                fig.colorbar(im_p, ax=axes[1 + 2 * i].tolist(), shrink=0.9,
                             label="vorticity")
                fig.colorbar(im_e, ax=axes[2 + 2 * i].tolist(), shrink=0.9,
                             label="error")
        if j == len(times) - 1:
            fig.colorbar(im, ax=axes[0].tolist(), shrink=0.9, label="vorticity")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("vorticity of sample 0 (x right, y up, unit torus)", fontsize=10)
    return _save(fig, path, data)


def plot_spectra(ev, path: str) -> str:
    """Energy spectra ``E(k)`` of truth and models at the spectrum times (log-log)."""
    times = ev.spectrum_time.values
    fig, axes = plt.subplots(1, len(times), figsize=(4 * len(times), 3.6), squeeze=False)
    k = ev.wavenumber.values[1:]
    data = {"wavenumber": k, "spectrum_time": times, "truth": [], "models": {}}
    for j, t in enumerate(times):
        ax = axes[0, j]
        true = ev.spectrum_true.values[j, 1:]
        ax.loglog(k, np.maximum(true, 1e-30), "k-", label="truth")
        data["truth"].append(true)
        for model in ev.model.values:
            curve = ev.spectrum.sel(model=model).values[j, 1:]
            ax.loglog(k, np.maximum(curve, 1e-30), label=str(model))
            data["models"].setdefault(str(model), []).append(curve)
        ax.set_title(f"t = {t:g}", fontsize=9)
        ax.set_xlabel("wavenumber |k|")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("kinetic energy spectrum E(k)")
    axes[0, 0].legend()
    return _save(fig, path, data)


def plot_trajectories(ev, path: str) -> str:
    """Sample 0's particle trajectories projected on the (x, y), (x, z) and (y, z) planes."""
    pairs = [(0, 1), (0, 2), (1, 2)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    true = ev.trajectory_true.values
    start = ev.initial_position.values
    data = {"truth": true, "models": {}}
    for ax, (a, b) in zip(axes, pairs):
        for p in range(true.shape[1]):
            ax.plot(np.r_[start[p, a], true[:, p, a]], np.r_[start[p, b], true[:, p, b]],
                    "k-", lw=1.2, label="truth" if p == 0 else None)
            for m, model in enumerate(ev.model.values):
                traj = ev.trajectory.sel(model=model).values
                ax.plot(np.r_[start[p, a], traj[:, p, a]], np.r_[start[p, b], traj[:, p, b]],
                        "--", color=f"C{m}", lw=1, label=str(model) if p == 0 else None)
        ax.scatter(start[:, a], start[:, b], c="k", s=12, zorder=3)
        ax.set_xlabel("xyz"[a])
        ax.set_ylabel("xyz"[b])
        ax.grid(alpha=0.3)
    for model in ev.model.values:
        data["models"][str(model)] = ev.trajectory.sel(model=model).values
    axes[0].legend(fontsize=8)
    return _save(fig, path, data)
