"""The long-horizon measures of ``evaluate``: spectrum ratio, stationary band, blow-up time,
escapes, momentum and angular momentum drift."""

import math

import numpy as np
import pytest
import torch

from grepsnet_sciml.solvers.evaluate import (
    energy_spectrum,
    evaluate_fields,
    evaluate_particles,
    stationary_band,
)


def _fields(s=3, t=8, n=16, seed=0):
    return torch.randn(s, t, 1, n, n, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def test_spectrum_ratio_is_one_for_the_truth_and_two_for_a_scaled_field():
    y = _fields()
    ev = evaluate_fields({"same": y.clone(), "louder": math.sqrt(2) * y}, y)
    ratio = ev.spectrum_ratio
    resolved = ratio.sel(wavenumber=slice(1, 16 // 3))
    assert np.allclose(resolved.sel(model="same"), 1.0, atol=1e-12)
    assert np.allclose(resolved.sel(model="louder"), 2.0, atol=1e-12)  # energy ~ amplitude^2
    assert np.isnan(ratio.sel(wavenumber=0)).all() and np.isnan(ratio.sel(wavenumber=8)).all()
    assert np.allclose(ev.spectrum_ratio_worst.sel(model="louder"), 2.0)
    assert np.allclose(ev.spectrum_ratio_worst.sel(model="same"), 1.0)


def test_one_shell_off_is_the_worst_ratio():
    y = _fields(n=16)
    p = y.clone()
    w_hat = torch.fft.fft2(p)
    kx = torch.fft.fftfreq(16, d=1 / 16)
    shell = (kx[:, None] ** 2 + kx[None, :] ** 2).sqrt().round() == 3
    w_hat[..., shell] *= 2.0  # energy of shell 3 x4
    p = torch.fft.ifft2(w_hat).real
    ev = evaluate_fields({"p": p}, y)
    assert float(ev.spectrum_ratio.sel(model="p", wavenumber=3).max()) == pytest.approx(4.0)
    assert float(ev.spectrum_ratio_worst.sel(model="p").max()) == pytest.approx(4.0)
    assert torch.allclose(energy_spectrum(p[:, :, 0])[..., 2], energy_spectrum(y[:, :, 0])[..., 2])


def test_split_floor_compares_the_two_halves_of_the_solver_samples():
    y = _fields(s=4, n=16)
    w_hat = torch.fft.fft2(y)
    kx = torch.fft.fftfreq(16, d=1 / 16)
    shell = (kx[:, None] ** 2 + kx[None, :] ** 2).sqrt().round() == 2
    w_hat[2:, ..., shell] *= 3.0  # second half: shell 2 holds 9x the first half's energy
    y = torch.cat([y[:2], torch.fft.ifft2(w_hat[2:]).real])
    ev = evaluate_fields({"same": y.clone()}, y, spectrum_times=[0, 7])
    first, second = (energy_spectrum(y[:2, [0, 7], 0]).mean(0),
                     energy_spectrum(y[2:, [0, 7], 0]).mean(0))
    ratio = (first / second)[:, 1 : 16 // 3 + 1]
    expected = torch.exp2(ratio.log2().abs().max(-1).values)
    assert np.allclose(ev.spectrum_ratio_worst_split.values, expected.numpy(), rtol=1e-12)
    assert (ev.spectrum_ratio_worst_split.values > 3.0).all()  # shell 2: 9x, up to sampling
    assert np.isnan(evaluate_fields({"same": y[:1]}, y[:1]).spectrum_ratio_worst_split).all()
    identical = torch.cat([y[:2], y[:2]])
    assert np.allclose(evaluate_fields({"same": identical}, identical)
                       .spectrum_ratio_worst_split, 1.0, atol=1e-12)


def test_stationary_band_uses_the_second_half_and_counts_samples_inside():
    values = torch.cat([torch.full((4, 5), 100.0), torch.arange(20.0).reshape(4, 5)], 1)
    band = stationary_band(values)
    later = torch.arange(20.0).double()
    expected = torch.quantile(later, torch.tensor([0.05, 0.95], dtype=torch.float64))
    assert np.allclose(band, expected.numpy())
    y = _fields(s=4, t=10)
    ev = evaluate_fields({"same": y.clone(), "zero": torch.zeros_like(y)}, y)
    assert ev.energy_band.shape == (2,) and float(ev.energy_band[0]) < float(ev.energy_band[1])
    assert float(ev.energy_in_band.sel(model="zero").max()) == 0.0
    later_in = ev.energy_in_band.sel(model="same").isel(time=slice(5, None))
    assert 0.5 < float(later_in.mean()) <= 1.0


def test_blow_up_time_is_the_first_non_finite_step():
    y = _fields(s=2, t=6)
    p = y.clone()
    p[1, 3:] = math.nan  # the guard fills NaN from step 4 (time 4) on
    ev = evaluate_fields({"p": p}, y, times=[1, 2, 3, 4, 5, 6])
    assert ev.blow_up_time.sel(model="p").values.tolist() == [math.inf, 4.0]


def _particles(s=4, t=5, n=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(s, t, n, 3, generator=gen, dtype=torch.float64)
    v = torch.randn(s, t, n, 3, generator=gen, dtype=torch.float64)
    q = torch.randn(s, n, generator=gen, dtype=torch.float64).sign()
    return x, v, q


def test_angular_momentum_and_momentum_drift():
    x, v, q = _particles()
    x0, v0 = x[:, 0], v[:, 0]
    still = (x0[:, None].expand_as(x).clone(), v0[:, None].expand_as(v).clone())
    doubled = (still[0], 2 * still[1])
    ev = evaluate_particles({"still": still, "doubled": doubled}, (x, v), q, (x0, v0))
    assert float(ev.angular_momentum_drift.sel(model="still").max()) == 0.0
    l0 = torch.linalg.cross(x0, v0, dim=-1).sum(-2).norm(dim=-1)
    p0 = v0.sum(-2).norm(dim=-1)
    assert np.allclose(ev.angular_momentum_drift.sel(model="doubled").isel(time=0), l0.numpy())
    assert np.allclose(ev.momentum_drift.sel(model="doubled").isel(time=0), p0.numpy())
    assert ev.angular_momentum_drift_true.dims == ("sample", "time")
    assert ev.momentum_drift_true.dims == ("sample", "time")


def test_escaped_counts_samples_with_a_far_or_lost_particle():
    x, v, q = _particles()
    far = x.clone()
    far[0, 2:, 1] = 5000.0
    far[2, 4:, 0] = math.nan
    ev = evaluate_particles({"far": (far, v)}, (x, v), q, (x[:, 0], v[:, 0]),
                            escape_radius=1000.0)
    assert ev.escaped.sel(model="far").values.tolist() == [0.0, 0.0, 0.25, 0.25, 0.5]
    assert ev.escaped.attrs["escape_radius"] == 1000.0
