"""Score rollouts against the truth: an ``xarray.Dataset`` with dims (model, sample, time).

Fields (:func:`evaluate_fields`), for predictions ``p`` and truth ``y`` of shape
``(sample, time, C, X, Y)``:

- ``rel_l2(model, sample, time) = ||p_t - y_t|| / ||y_t||`` (norm over C, X, Y);
- ``rel_l2_rollout(model, sample) = sqrt(sum_t ||p_t - y_t||^2 / sum_t ||y_t||^2)``, the
  relative L2 over the whole rollout (G-FNO's metric);
- ``mse(model, sample, time)``;
- ``correlation(model, sample, time)``: Pearson correlation of ``p_t`` and ``y_t`` over
  grid points and channels, and ``correlation_time(model, sample)``: the first time it
  falls below ``threshold`` (0.8), ``inf`` when it never does within the rollout;
- of the first variable ``w`` (vorticity): ``energy = 1/2 mean |u|^2`` with
  ``u_hat = i (k_y, -k_x) w_hat / (2 pi |k|^2)``, ``enstrophy = 1/2 mean w^2``, each with
  ``*_true(sample, time)``; and the shell-summed energy spectrum
  ``spectrum(model, spectrum_time, wavenumber)`` averaged over samples, with
  ``spectrum_true``;
- ``spectrum_ratio(model, spectrum_time, wavenumber)``: ``spectrum / spectrum_true`` for the
  resolved shells ``1 <= k <= N/3`` (NaN elsewhere), and ``spectrum_ratio_worst(model,
  spectrum_time)``: the ratio farthest from 1 in the log sense (``max |log2 ratio|`` as a
  factor: 2 means some shell is off by 2x), and ``spectrum_ratio_worst_split(spectrum_time)``
  the same between the truth's first and second half of the samples (``s // 2`` and the
  rest): the sampling floor of the measure (its log about sqrt(2) times what a model
  statistically identical to the solver scores, two half-size means being compared
  instead of two full-size ones);
- the solver's stationary band of energy and enstrophy, ``energy_band`` and
  ``enstrophy_band(quantile)``: the 5th and 95th percentiles of the truth over every sample
  and the second half of the rollout (past the transient from the initial states); and
  ``energy_in_band``/``enstrophy_in_band(model, time)``: the fraction of samples inside it;
- ``blow_up_time(model, sample)``: the first time a prediction is not finite (the rollout's
  blow-up guard fills NaN from there), ``inf`` when never;
- ``snapshot(model, snapshot_time, x, y)`` and ``snapshot_true``: sample 0's first variable
  at a few times (so plots read data, never models).

Particles (:func:`evaluate_particles`), positions and velocities ``(sample, time, N, 3)``:
``position_mse``, ``rel_l2`` (positions), ``energy`` and ``energy_true`` (kinetic plus
Coulomb ``q_i q_j / sqrt(r^2 + eps^2)``), ``energy_drift = (E_t - E_0) / |E_0|`` from the
initial state (and the solver's own ``energy_drift_true(sample, time)``),
``momentum_drift = ||P_t - P_0||`` and ``angular_momentum_drift = ||L_t - L_0||`` with
``L = sum_i x_i x v_i`` (unit masses; the solver's own as ``*_true(sample, time)``),
``escaped(model, time)``: the fraction of samples with a particle farther than
``escape_radius`` from the origin (or not finite), and ``trajectory`` / ``trajectory_true``
of sample 0.

Steps a blow-up guard marked (NaN) give NaN metrics.

Examples
--------
>>> import torch
>>> y = torch.randn(2, 3, 1, 8, 8)
>>> ev = evaluate_fields({"copy": y.clone(), "zero": torch.zeros_like(y)}, y)
>>> ev.rel_l2.dims
('model', 'sample', 'time')
>>> ev.rel_l2_rollout.sel(model="zero").values.tolist()
[1.0, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import xarray as xr

from grepsnet_sciml.models.energy import coulomb_energy

__all__ = ["evaluate", "evaluate_fields", "evaluate_particles", "energy_spectrum",
           "field_energy", "stationary_band"]


def _check(predictions: Mapping, truth_shape: tuple, argument: str = "predictions"):
    if not isinstance(predictions, Mapping) or not predictions:
        raise ValueError(f"{argument}: expected a non-empty dict name -> tensor, got "
                         f"{type(predictions).__name__}")
    for name, p in predictions.items():
        if tuple(p.shape) != truth_shape:
            raise ValueError(f"{argument}[{name!r}]: shape {tuple(p.shape)} differs from the "
                             f"truth {truth_shape}")


def _wavenumbers(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    k = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
    return k[:, None].expand(n, n), k[None, :].expand(n, n)


def field_energy(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(energy, enstrophy)`` of vorticity ``w (..., N, N)`` on the unit torus.

    ``energy = 1/2 mean |u|^2`` from the stream function (``-Lap psi = w``),
    ``enstrophy = 1/2 mean w^2``; both ``(...)``.
    """
    w = w.double()
    n = w.shape[-1]
    kx, ky = _wavenumbers(n)
    k2 = 4 * math.pi**2 * (kx**2 + ky**2)
    k2[0, 0] = 1.0
    w_hat = torch.fft.fft2(w) / (n * n)
    # |u_hat|^2 = |w_hat|^2 / (4 pi^2 |k|^2), Parseval: mean |u|^2 = sum |u_hat|^2
    e = 0.5 * (w_hat.abs() ** 2 / k2).sum((-2, -1))
    e = e - 0.5 * (w_hat[..., 0, 0].abs() ** 2)  # the mean has no velocity
    return e, 0.5 * (w**2).mean((-2, -1))


def energy_spectrum(w: torch.Tensor) -> torch.Tensor:
    """Shell-summed kinetic energy ``E(k)``, ``k = 0 .. N/2``, of ``w (..., N, N)``.

    Shell ``k`` holds the modes with ``round(|k|) = k``; ``sum_k E(k)`` is the energy of
    :func:`field_energy` up to the corner modes beyond ``N/2``.
    """
    w = w.double()
    n = w.shape[-1]
    kx, ky = _wavenumbers(n)
    kk = torch.sqrt(kx**2 + ky**2)
    k2 = 4 * math.pi**2 * kk**2
    k2[0, 0] = 1.0
    dens = 0.5 * (torch.fft.fft2(w) / (n * n)).abs() ** 2 / k2
    dens[..., 0, 0] = 0.0
    shell = kk.round().long()
    out = torch.zeros(*w.shape[:-2], n // 2 + 1, dtype=torch.float64)
    keep = shell <= n // 2
    out.index_add_(-1, shell[keep], dens[..., keep])
    return out


def _per_step(p: torch.Tensor, y: torch.Tensor):
    s, t = y.shape[:2]
    pf, yf = p.double().reshape(s, t, -1), y.double().reshape(s, t, -1)
    err2 = ((pf - yf) ** 2).sum(-1)
    ref2 = (yf**2).sum(-1)
    rel = err2.sqrt() / ref2.sqrt().clamp_min(1e-300)
    mse = ((pf - yf) ** 2).mean(-1)
    pc, yc = pf - pf.mean(-1, keepdim=True), yf - yf.mean(-1, keepdim=True)
    corr = (pc * yc).sum(-1) / (pc.norm(dim=-1) * yc.norm(dim=-1)).clamp_min(1e-300)
    whole = err2.sum(1).sqrt() / ref2.sum(1).sqrt().clamp_min(1e-300)
    return rel, whole, mse, corr


def stationary_band(values: torch.Tensor, quantiles=(0.05, 0.95)) -> np.ndarray:
    """Quantiles of ``values (sample, time)`` over every sample and the second half of the
    times (past the transient); ``(len(quantiles),)``."""
    later = values[:, values.shape[1] // 2 :].double().flatten()
    return torch.quantile(later, torch.tensor(quantiles, dtype=torch.float64)).numpy()


def _in_band(values: torch.Tensor, band: np.ndarray) -> np.ndarray:
    """Fraction of samples of ``values (sample, time)`` inside ``band``, per time."""
    inside = (values >= float(band[0])) & (values <= float(band[-1]))
    return inside.double().mean(0).numpy()


def _first_time(flags: torch.Tensor, times: np.ndarray) -> np.ndarray:
    """Per sample, the first time ``flags (sample, time)`` is true; ``inf`` if never."""
    first = times[flags.float().argmax(-1).numpy()]
    return np.where(flags.any(-1).numpy(), first, np.inf)


def _blow_up_time(p: torch.Tensor, times: np.ndarray) -> np.ndarray:
    return _first_time(~torch.isfinite(p.reshape(*p.shape[:2], -1)).all(-1), times)


def _spectrum_ratio(spec: torch.Tensor, true: torch.Tensor, n: int) -> np.ndarray:
    """``spec / true`` on the shells ``1 <= k <= n // 3``, NaN elsewhere."""
    ratio = torch.full_like(spec, math.nan)
    k = slice(1, n // 3 + 1)
    ratio[..., k] = spec[..., k] / true[..., k].clamp_min(1e-300)
    return ratio.numpy()


def _worst_ratio(ratios: np.ndarray) -> np.ndarray:
    """``exp2(max_k |log2 ratio|)`` over the last axis of shell ratios (NaN shells skipped;
    NaN where no shell is finite)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        off = np.abs(np.log2(ratios))
    off = np.where(np.isnan(off), -np.inf, off).max(-1)  # NaN: no resolved shell, or blown up
    return np.where(np.isneginf(off), np.nan, np.exp2(off))


def _correlation_time(corr: torch.Tensor, times: np.ndarray, threshold: float) -> np.ndarray:
    return _first_time(~(corr >= threshold), times)  # NaN (blown up) counts as below


def evaluate_fields(predictions: Mapping[str, torch.Tensor], truth: torch.Tensor,
                    times: Sequence[float] | None = None, threshold: float = 0.8,
                    spectrum_times: Sequence[int] | None = None,
                    snapshot_times: Sequence[int] | None = None) -> xr.Dataset:
    """Metrics of field rollouts (see the module docstring).

    Parameters
    ----------
    predictions : dict of str -> torch.Tensor
        ``(sample, time, C, X, Y)`` per model (channel 0 is the vorticity).
    truth : torch.Tensor
        ``(sample, time, C, X, Y)``.
    times : sequence of float, optional
        Time of each step (default 1, 2, ...).
    threshold : float
        Correlation threshold of ``correlation_time``.
    spectrum_times, snapshot_times : sequence of int, optional
        Step indices for spectra and snapshots (default: first, middle, last).

    Returns
    -------
    xarray.Dataset
    """
    if truth.ndim != 5:
        raise ValueError(f"truth: expected (sample, time, C, X, Y), got {tuple(truth.shape)}")
    _check(predictions, tuple(truth.shape))
    s, t = truth.shape[:2]
    times = np.arange(1, t + 1, dtype=np.float64) if times is None else np.asarray(
        times, dtype=np.float64)
    if times.shape != (t,):
        raise ValueError(f"times: expected {t} values, got {times.shape}")
    default = sorted({0, t // 2, t - 1})
    spectrum_times = list(spectrum_times if spectrum_times is not None else default)
    snapshot_times = list(snapshot_times if snapshot_times is not None else default)
    names = list(predictions)
    metrics = {k: [] for k in ("rel_l2", "rel_l2_rollout", "mse", "correlation",
                               "correlation_time", "energy", "enstrophy", "spectrum",
                               "snapshot")}
    for name in names:
        p = predictions[name]
        rel, whole, mse, corr = _per_step(p, truth)
        e, z = field_energy(p[:, :, 0])
        metrics["rel_l2"].append(rel)
        metrics["rel_l2_rollout"].append(whole)
        metrics["mse"].append(mse)
        metrics["correlation"].append(corr)
        metrics["correlation_time"].append(_correlation_time(corr, times, threshold))
        metrics["energy"].append(e)
        metrics["enstrophy"].append(z)
        metrics["spectrum"].append(energy_spectrum(p[:, spectrum_times, 0]).mean(0))
        metrics["snapshot"].append(p[0, snapshot_times, 0].double())
    e_true, z_true = field_energy(truth[:, :, 0])
    true_spectra = energy_spectrum(truth[:, spectrum_times, 0])
    spectrum_true = true_spectra.mean(0)
    ratios = np.stack([_spectrum_ratio(m, spectrum_true, truth.shape[-1])
                       for m in metrics["spectrum"]])
    worst = _worst_ratio(ratios)
    half = s // 2
    split = (_worst_ratio(_spectrum_ratio(true_spectra[:half].mean(0),
                                          true_spectra[half:].mean(0), truth.shape[-1]))
             if half else np.full(len(spectrum_times), np.nan))
    e_band, z_band = stationary_band(e_true), stationary_band(z_true)
    dims = ("model", "sample", "time")
    data = {
        "rel_l2": (dims, np.stack([m.numpy() for m in metrics["rel_l2"]])),
        "rel_l2_rollout": (dims[:2], np.stack([m.numpy() for m in metrics["rel_l2_rollout"]])),
        "mse": (dims, np.stack([m.numpy() for m in metrics["mse"]])),
        "correlation": (dims, np.stack([m.numpy() for m in metrics["correlation"]])),
        "correlation_time": (dims[:2], np.stack(metrics["correlation_time"]),
                             {"threshold": threshold,
                              "note": "inf: never below the threshold within the rollout"}),
        "energy": (dims, np.stack([m.numpy() for m in metrics["energy"]])),
        "energy_true": (dims[1:], e_true.numpy()),
        "enstrophy": (dims, np.stack([m.numpy() for m in metrics["enstrophy"]])),
        "enstrophy_true": (dims[1:], z_true.numpy()),
        "spectrum": (("model", "spectrum_time", "wavenumber"),
                     np.stack([m.numpy() for m in metrics["spectrum"]])),
        "spectrum_true": (("spectrum_time", "wavenumber"), spectrum_true.numpy()),
        "spectrum_ratio": (("model", "spectrum_time", "wavenumber"), ratios,
                           {"note": "model / truth on the shells 1 <= k <= N/3"}),
        "spectrum_ratio_worst": (("model", "spectrum_time"), worst,
                                 {"note": "exp2(max_k |log2 ratio|): 1 is exact, 2 a shell "
                                          "off by a factor 2"}),
        "spectrum_ratio_worst_split": (("spectrum_time",), split,
                                       {"note": "the same between the solver's first and "
                                                "second half of the samples: the sampling "
                                                "floor (NaN for one sample)"}),
        "energy_band": (("quantile",), e_band),
        "enstrophy_band": (("quantile",), z_band),
        "energy_in_band": (("model", "time"),
                           np.stack([_in_band(m, e_band) for m in metrics["energy"]])),
        "enstrophy_in_band": (("model", "time"),
                              np.stack([_in_band(m, z_band) for m in metrics["enstrophy"]])),
        "blow_up_time": (dims[:2], np.stack([_blow_up_time(predictions[m], times)
                                              for m in names]),
                         {"note": "inf: finite over the whole rollout"}),
        "snapshot": (("model", "snapshot_time", "x", "y"),
                     np.stack([m.numpy() for m in metrics["snapshot"]])),
        "snapshot_true": (("snapshot_time", "x", "y"),
                          truth[0, snapshot_times, 0].double().numpy()),
    }
    coords = {"model": names, "sample": np.arange(s), "time": times,
              "spectrum_time": times[spectrum_times], "snapshot_time": times[snapshot_times],
              "wavenumber": np.arange(truth.shape[-1] // 2 + 1), "quantile": [0.05, 0.95]}
    return xr.Dataset(data, coords=coords, attrs={"kind": "field"})


def _particle_energy(x: torch.Tensor, v: torch.Tensor, q: torch.Tensor, eps: float):
    return coulomb_energy(x.double(), v.double(), q.double(), eps)


def _angular_momentum(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``L = sum_i x_i x v_i`` (unit masses), ``(..., N, 3) -> (..., 3)``."""
    return torch.linalg.cross(x.double(), v.double(), dim=-1).sum(-2)


def evaluate_particles(predictions: Mapping[str, tuple], truth: tuple, charges: torch.Tensor,
                       initial: tuple, times: Sequence[float] | None = None,
                       softening: float = 0.0, escape_radius: float = 1000.0) -> xr.Dataset:
    """Metrics of particle rollouts (see the module docstring).

    Parameters
    ----------
    predictions : dict of str -> (positions, velocities)
        Each ``(sample, time, N, 3)``.
    truth : (positions, velocities)
        ``(sample, time, N, 3)``.
    charges : torch.Tensor
        ``(sample, N)`` or ``(sample, N, 1)``.
    initial : (positions, velocities)
        ``(sample, N, 3)``: the state the rollouts started from (reference of the drifts).
    times : sequence of float, optional
    softening : float
        ``eps`` of the Coulomb energy.
    escape_radius : float
        Distance from the origin beyond which a particle counts as escaped.
    """
    x_true, v_true = truth
    if x_true.ndim != 4:
        raise ValueError(f"truth: expected (sample, time, N, 3) positions, got "
                         f"{tuple(x_true.shape)}")
    for name, pair in predictions.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"predictions[{name!r}]: expected (positions, velocities)")
    _check({k: v[0] for k, v in predictions.items()}, tuple(x_true.shape))
    q = charges[..., 0] if charges.ndim == 3 else charges
    q = q[:, None]
    s, t = x_true.shape[:2]
    times = np.arange(1, t + 1, dtype=np.float64) if times is None else np.asarray(
        times, dtype=np.float64)
    e0 = _particle_energy(initial[0], initial[1], q[:, 0], softening)
    p0 = initial[1].double().sum(-2)
    l0 = _angular_momentum(*initial)
    out = {k: [] for k in ("position_mse", "rel_l2", "energy", "energy_drift",
                           "momentum_drift", "angular_momentum_drift", "trajectory")}
    escaped = []
    for x, v in predictions.values():
        rel, _, mse, _ = _per_step(x, x_true)
        e = _particle_energy(x, v, q, softening)
        out["position_mse"].append(mse.numpy())
        out["rel_l2"].append(rel.numpy())
        out["energy"].append(e.numpy())
        out["energy_drift"].append(((e - e0[:, None]) / e0.abs()[:, None]).numpy())
        out["momentum_drift"].append((v.double().sum(-2) - p0[:, None]).norm(dim=-1).numpy())
        out["angular_momentum_drift"].append(
            (_angular_momentum(x, v) - l0[:, None]).norm(dim=-1).numpy())
        far = ~(x.double().norm(dim=-1) <= escape_radius)  # NaN counts as escaped
        escaped.append(far.any(-1).double().mean(0).numpy())
        out["trajectory"].append(x[0].double().numpy())
    dims = ("model", "sample", "time")
    data = {k: (dims, np.stack(v)) for k, v in out.items() if k != "trajectory"}
    e_true = _particle_energy(x_true, v_true, q, softening)
    data["energy_true"] = (dims[1:], e_true.numpy())
    data["energy_drift_true"] = (dims[1:], ((e_true - e0[:, None]) / e0.abs()[:, None]).numpy())
    data["momentum_drift_true"] = (dims[1:], (v_true.double().sum(-2) - p0[:, None]).norm(
        dim=-1).numpy())
    data["angular_momentum_drift_true"] = (dims[1:], (_angular_momentum(x_true, v_true)
                                                      - l0[:, None]).norm(dim=-1).numpy())
    data["escaped"] = (("model", "time"), np.stack(escaped), {"escape_radius": escape_radius})
    data["trajectory"] = (("model", "time", "particle", "spatial"), np.stack(out["trajectory"]))
    data["trajectory_true"] = (("time", "particle", "spatial"), x_true[0].double().numpy())
    data["initial_position"] = (("particle", "spatial"), initial[0][0].double().numpy())
    coords = {"model": list(predictions), "sample": np.arange(s), "time": times}
    return xr.Dataset(data, coords=coords, attrs={"kind": "particles", "softening": softening})


def evaluate(predictions, truth, kind: str, **kwargs) -> xr.Dataset:
    """Dispatch to :func:`evaluate_fields` (``kind="field"``) or :func:`evaluate_particles`."""
    if kind == "field":
        return evaluate_fields(predictions, truth, **kwargs)
    if kind == "particles":
        return evaluate_particles(predictions, truth, **kwargs)
    raise ValueError(f"kind: expected 'field' or 'particles', got {kind!r}")
