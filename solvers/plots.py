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

from grepsnet_sciml._atomic import atomic_path, atomic_write_text  # noqa: E402

__all__ = ["plot_error_vs_time", "plot_equivariance", "plot_snapshots", "plot_spectra",
           "plot_trajectories", "write_json"]


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


def plot_error_vs_time(ev, path: str, metric: str = "rel_l2") -> str:
    """Mean over samples of ``|metric(model, sample, time)|`` against time, one line per model.

    Signed metrics (drifts) are plotted by magnitude on the log scale.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    data = {"time": ev.time.values, "metric": metric, "models": {}}
    for model in ev.model.values:
        curve = np.abs(ev[metric].sel(model=model)).mean("sample").values
        ax.plot(ev.time.values, curve, label=str(model))
        data["models"][str(model)] = curve
    ax.set_xlabel("time")
    ax.set_ylabel(f"|{metric}| (mean over samples)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{metric} of the rollout against the solver")
    return _save(fig, path, data)


def plot_equivariance(diag, path: str, variable: str = "equivariance_error") -> str:
    """``variable(model, element, time)`` on a log scale, one panel per model."""
    models = list(diag.model.values)
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    data = {"time": diag.time.values, "variable": variable, "models": {}}
    for ax, model in zip(axes[0], models):
        data["models"][str(model)] = {}
        zero = []
        for k, element in enumerate(diag.element.values):
            curve = diag[variable].sel(model=model, element=element).values
            data["models"][str(model)][str(element)] = curve
            if np.all(curve == 0):  # e.g. the identity: nothing to show on a log scale
                zero.append(str(element))
                continue
            ax.plot(diag.time.values, curve, label=str(element), color=f"C{k % 10}")
        if zero:
            ax.text(0.02, 0.02, "exactly 0: " + ", ".join(zero), transform=ax.transAxes,
                    fontsize=8)
        ax.set_yscale("log")
        ax.set_xlabel("rollout step")
        ax.set_ylabel("||M(g x) - g M(x)|| / ||M(x)||" if variable == "equivariance_error"
                      else "error on transformed test set")
        ax.set_title(str(model))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    return _save(fig, path, data)


def plot_snapshots(ev, path: str) -> str:
    """Truth / prediction / error of sample 0 at the evaluated snapshot times."""
    models = list(ev.model.values)
    times = ev.snapshot_time.values
    rows = 1 + 2 * len(models)
    fig, axes = plt.subplots(rows, len(times), figsize=(2.6 * len(times), 2.4 * rows),
                             squeeze=False)
    vmax = float(np.nanmax(np.abs(ev.snapshot_true.values))) or 1.0
    data = {"snapshot_time": times, "rel_error": {}}
    for j, t in enumerate(times):
        truth = ev.snapshot_true.values[j]
        axes[0, j].imshow(truth.T, origin="lower", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        axes[0, j].set_title(f"truth t={t:g}", fontsize=8)
        for i, model in enumerate(models):
            pred = ev.snapshot.sel(model=model).values[j]
            axes[1 + 2 * i, j].imshow(pred.T, origin="lower", cmap="RdBu_r", vmin=-vmax,
                                      vmax=vmax)
            axes[1 + 2 * i, j].set_title(f"{model}", fontsize=8)
            axes[2 + 2 * i, j].imshow((pred - truth).T, origin="lower", cmap="RdBu_r",
                                      vmin=-vmax, vmax=vmax)
            axes[2 + 2 * i, j].set_title(f"{model} - truth", fontsize=8)
            rel = float(np.linalg.norm(pred - truth) / max(np.linalg.norm(truth), 1e-300))
            data["rel_error"].setdefault(str(model), []).append(rel)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
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
        ax.set_title(f"t = {t:g}")
        ax.set_xlabel("|k|")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("E(k)")
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
