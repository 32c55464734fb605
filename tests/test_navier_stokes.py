"""Validation of the Navier-Stokes generator: reference scheme, exact solutions, order,
symmetries, budgets, reproducibility and bad input."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from grepsnet_sciml import Reps
from grepsnet_sciml.datasets import navier_stokes as ns
from grepsnet_sciml.datasets._ns_spectral import gaussian_random_field
from grepsnet_sciml.datasets.contract import DatasetSpec, SymmetryElement
from grepsnet_sciml.groups import D4, group_from_string

_ROOT = Path(__file__).resolve().parents[1]
REFERENCE = next(
    (
        root / "shared" / "reference" / "ns_sym_fno_scheme_64.npz"
        for root in (_ROOT, _ROOT.parent)
        if (root / "shared" / "reference" / "ns_sym_fno_scheme_64.npz").exists()
    ),
    _ROOT / "shared" / "reference" / "ns_sym_fno_scheme_64.npz",
)


def _rel(a, b):
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE.exists():
        pytest.skip(f"reference file {REFERENCE} not available")
    return dict(np.load(REFERENCE))


def _fno_reference_run(reference, t_final):
    return ns.generate(
        4, resolution=64, viscosity=float(reference["visc"]), forcing=reference["forcing"],
        t_final=t_final, record_every=0.25, scheme="fno",
        initial_condition=reference["w0"], progress=False,
    )


def test_fno_scheme_reproduces_reference_first_record(reference):
    ds = _fno_reference_run(reference, 0.25)
    sol = np.moveaxis(reference["sol"], -1, 1)  # (sample, record, x, y)
    assert ds.time.values.tolist() == [0.25]
    assert _rel(ds.vorticity.values[:, 0], sol[:, 0]) < 1e-10


@pytest.mark.slow
def test_fno_scheme_reproduces_reference_all_records(reference):
    ds = _fno_reference_run(reference, 2.0)
    sol = np.moveaxis(reference["sol"], -1, 1)
    np.testing.assert_allclose(ds.time.values, reference["t_nominal"])
    for r in range(sol.shape[1]):
        assert _rel(ds.vorticity.values[:, r], sol[:, r]) < 1e-10, r


@pytest.mark.parametrize("scheme", ["fast", "fno"])
def test_laplacian_eigenfunction_decays_exactly(scheme):
    n, nu, t_final = 32, 1e-3, 0.2
    x = torch.arange(n, dtype=torch.float64) / n
    xx, yy = torch.meshgrid(x, x, indexing="ij")
    # one shell |k|^2 = 5: psi is proportional to w, so u . grad w = 0
    w0 = torch.cos(2 * math.pi * (xx + 2 * yy)) + 0.7 * torch.sin(2 * math.pi * (2 * xx - yy))
    ds = ns.generate(
        1, resolution=n, viscosity=nu, forcing=None, t_final=t_final, record_every=0.1,
        scheme=scheme, initial_condition=w0, include_initial=True, progress=False,
    )
    for r, t in enumerate(ds.time.values):
        exact = w0 * math.exp(-nu * 4 * math.pi**2 * 5 * t)
        assert _rel(ds.vorticity.values[0, r], exact) < 1e-8, (scheme, t)


def test_fast_scheme_is_fourth_order_in_time():
    w0 = 4 * gaussian_random_field(2, 32, seed=5)

    def run(steps):
        solver = ns.NavierStokes2D(32, 1e-3, "symmetric", dt=0.5 / steps, cfl=None, cfl_max=2.0)
        return solver.advance(w0, 0.5)

    reference = run(256)
    errors = [_rel(run(steps), reference) for steps in (8, 16, 32)]
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert min(orders) >= 3.5, (errors, orders)
    assert errors[-1] > 1e-12  # still above round-off, so the order is measured


def _symmetry_run(name, w0, velocity=True):
    return ns.generate(
        w0.shape[0], name, resolution=16, sim_resolution=32, t_final=1.0, record_every=0.5,
        include_initial=True, initial_condition=w0, velocity=velocity, progress=False,
    )


@pytest.mark.parametrize("name", ["ns", "ns-sym"])
def test_declared_symmetries_commute_with_the_solver(name):
    w0 = 3 * gaussian_random_field(2, 32, seed=11)
    base = _symmetry_run(name, w0)
    spec = DatasetSpec.from_dataset(base)
    assert repr(spec.group) == base.attrs["group"] == {"ns": "D2('diagonal')",
                                                      "ns-sym": "D4()"}[name]
    assert spec.exact is True and spec.translations is False
    assert len(spec.elements) == spec.group.order
    assert any(e.det < 0 and any(e.shift) for e in spec.elements)  # shifted reflections
    w = torch.from_numpy(base.vorticity.values)
    u = torch.from_numpy(base.velocity.values)
    for element in spec.elements:  # each acts through Reps.act: T0p vorticity, T1 velocity
        moved = _symmetry_run(name, spec.act(element, "vorticity", w0))
        err_w = _rel(moved.vorticity.values, spec.act(element, "vorticity", w))
        err_u = _rel(moved.velocity.values, spec.act(element, "velocity", u))
        assert err_w < 1e-10 and err_u < 1e-10, (element.name, err_w, err_u)


@pytest.mark.parametrize(
    "name, element, kind",
    [
        # NS-Sym: a reflection without its (1/4, 1/4) shift
        ("ns-sym", SymmetryElement("m", ((1, 0), (0, -1)), (0, 0)), "T0p"),
        # NS-Sym: a reflection with the shift but vorticity treated as a true scalar
        ("ns-sym", SymmetryElement("m", ((1, 0), (0, -1)), (0.25, 0.25)), "T0"),
        # NS: the 90-degree rotation is no symmetry of the fno forcing
        ("ns", SymmetryElement("r", ((0, -1), (1, 0)), (0, 0)), "T0p"),
    ],
)
def test_non_symmetries_do_not_hold(name, element, kind):
    reps = Reps(kind, D4())

    def act(w):
        return element.act(reps, w.reshape(-1, 1, *w.shape[-2:])).reshape(w.shape)

    w0 = 3 * gaussian_random_field(1, 32, seed=11)
    base = torch.from_numpy(_symmetry_run(name, w0, velocity=False).vorticity.values)
    moved = _symmetry_run(name, act(w0), velocity=False)
    assert _rel(moved.vorticity.values[:, 1:], act(base)[:, 1:]) > 1e-3


def _spectral_fields(w, n):
    """psi, grad w and velocity by full FFTs (independent of the solver's internals)."""
    k = torch.fft.fftfreq(n, 1.0 / n).to(torch.float64)
    kx, ky = k[:, None], k[None, :]
    lap = 4 * math.pi**2 * (kx**2 + ky**2)
    w_hat = torch.fft.fft2(w)
    psi_hat = torch.where(lap > 0, w_hat / torch.where(lap > 0, lap, 1.0), 0.0)

    def real(a):
        return torch.fft.ifft2(a).real

    grad = real(2j * math.pi * kx * w_hat), real(2j * math.pi * ky * w_hat)
    vel = real(2j * math.pi * ky * psi_hat), real(-2j * math.pi * kx * psi_hat)
    return real(psi_hat), grad, vel


def test_energy_and_enstrophy_budgets():
    """dZ/dt = -nu <|grad w|^2> + <f w>,  dE/dt = -nu <w^2> + <psi f>  (<.> = domain mean)."""
    n, nu, h = 32, 2e-3, 2e-3
    dealiased = torch.fft.fftfreq(n, 1.0 / n).abs() <= n // 3
    w0 = 3 * gaussian_random_field(2, n, seed=2)
    # band-limit to the dealiased set, where the Galerkin scheme conserves Z and E exactly
    w0 = torch.fft.ifft2(torch.fft.fft2(w0) * (dealiased[:, None] & dealiased[None, :])).real
    solver = ns.NavierStokes2D(n, nu, "symmetric", dt=h / 8)
    states = [solver.advance(w0, 0.3 - 2 * h)]
    for _ in range(4):
        states.append(solver.advance(states[-1], h))
    w_mid = states[2]
    f = solver.forcing

    def enstrophy(w):
        return 0.5 * (w**2).mean((-2, -1))

    def energy(w):
        _, _, (u, v) = _spectral_fields(w, n)
        return 0.5 * (u**2 + v**2).mean((-2, -1))

    psi, (wx, wy), _ = _spectral_fields(w_mid, n)
    dz_budget = -nu * (wx**2 + wy**2).mean((-2, -1)) + (f * w_mid).mean((-2, -1))
    de_budget = -nu * (w_mid**2).mean((-2, -1)) + (psi * f).mean((-2, -1))
    def rate(q):  # fourth-order central difference at the middle state
        return (q(states[0]) - 8 * q(states[1]) + 8 * q(states[3]) - q(states[4])) / (12 * h)

    dz, de = rate(enstrophy), rate(energy)
    scale_z = (nu * (wx**2 + wy**2).mean((-2, -1))).abs() + (f * w_mid).mean((-2, -1)).abs()
    scale_e = (nu * (w_mid**2).mean((-2, -1))).abs() + (psi * f).mean((-2, -1)).abs()
    assert ((dz - dz_budget).abs() / scale_z).max() < 1e-8, (dz, dz_budget)
    assert ((de - de_budget).abs() / scale_e).max() < 1e-8, (de, de_budget)


def _small(n_samples, **kwargs):
    options = dict(resolution=16, t_final=0.5, record_every=0.25, progress=False)
    options.update(kwargs)
    return ns.generate(n_samples, **options)


def test_chunking_and_batching_give_identical_data():
    whole = _small(4, seed=7)
    parts = xr.concat([_small(2, seed=7, first_sample=0), _small(2, seed=7, first_sample=2)],
                      dim="sample")
    assert whole.sample.values.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(parts.vorticity.values, whole.vorticity.values)
    for batch_size in (1, 3):
        rebatched = _small(4, seed=7, batch_size=batch_size)
        np.testing.assert_array_equal(rebatched.vorticity.values, whole.vorticity.values)
    other = _small(1, seed=8)
    assert _rel(other.vorticity.values[0], whole.vorticity.values[0]) > 0.1


def test_burn_in_stores_the_last_frames_of_the_same_run():
    whole = _small(2, seed=3, t_final=1.0)
    burnt = _small(2, seed=3, t_final=1.0, t_start=0.5)
    assert burnt.time.values.tolist() == [0.75, 1.0]
    np.testing.assert_array_equal(burnt.vorticity.values, whole.vorticity.values[:, 2:])
    assert ns.NavierStokesConfig.from_json(burnt.attrs["config"]).t_start == 0.5


def test_random_field_statistics():
    n, samples = 32, 64
    w = gaussian_random_field(samples, n, seed=0)
    assert float(w.mean((-2, -1)).abs().max()) < 1e-12  # zero mean (k = 0 entry is 0)
    k = torch.fft.fftfreq(n, 1.0 / n).to(torch.float64)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    sqrt_eig = n**2 * math.sqrt(2) * 7**1.5 * (4 * math.pi**2 * k2 + 49) ** -1.25
    sqrt_eig[0, 0] = 0
    expected = float((sqrt_eig**2).sum() / (2 * n**4))  # variance of Re ifft2(s xi)
    assert abs(float(w.var()) / expected - 1) < 0.1


def test_float32_option_is_close_to_float64():
    w64 = _small(2, seed=3).vorticity
    w32 = _small(2, seed=3, dtype=torch.float32).vorticity
    assert w32.dtype == np.float32
    assert _rel(w32.values.astype(np.float64), w64.values) < 1e-4


def test_attrs_round_trip_through_json():
    ds = _small(1, preset="ns", sim_resolution=32, velocity=True, seed=12)
    attrs = json.loads(json.dumps(ds.attrs))
    assert attrs == ds.attrs
    assert attrs["kind"] == "field" and attrs["seed"] == 12
    assert attrs["group"] == "D2('diagonal')"
    group = group_from_string(attrs["group"])
    reps = json.loads(attrs["representations"])
    assert reps == {"vorticity": "T0p", "velocity": "T1"}
    assert Reps(reps["vorticity"], group).dim == 1 and Reps(reps["velocity"], group).dim == 2
    config = json.loads(attrs["config"])
    assert config["forcing"] == "fno" and config["sim_resolution"] == 32
    assert config["resolution"] == 16 and config["viscosity"] == 1e-4
    rebuilt = ns.NavierStokesConfig.from_json(attrs["config"])
    assert rebuilt.to_dict() == {k: config[k] for k in rebuilt.to_dict()}
    assert config["dtype"] == "float64" and config["initial_condition"].startswith("gaussian")
    symmetry = json.loads(attrs["symmetry"])
    names = [e["name"] for e in symmetry["elements"]]
    assert names == group.element_names
    assert all(set(e) == {"name", "matrix", "shift"} for e in symmetry["elements"])  # no negate
    assert DatasetSpec.from_dataset(ds).to_attrs() == attrs
    assert ds.vorticity.attrs["units"] and ds.vorticity.attrs["long_name"]
    assert ds.velocity.dims == ("sample", "time", "x", "y", "component")
    assert ds.attrs["solver_version"] == ns.SOLVER_VERSION


def test_presets():
    for name, forcing in (("ns", "fno"), ("ns-sym", "symmetric")):
        config = ns.preset(name)
        assert (config.viscosity, config.forcing) == (1e-4, forcing)
        assert (config.resolution, config.sim_resolution) == (64, 256)
        assert (config.t_final, config.record_every, config.include_initial) == (30.0, 1.0, False)
    assert ns.preset("ns-sym", resolution=32).resolution == 32


@pytest.mark.parametrize(
    "kwargs, argument, value",
    [
        (dict(viscosity=0.0), "viscosity", "0.0"),
        (dict(viscosity=-1e-3), "viscosity", "-0.001"),
        (dict(resolution=0), "resolution", "0"),
        (dict(n_samples=0), "n_samples", "0"),
        (dict(n_samples=-2), "n_samples", "-2"),
        (dict(resolution=32, sim_resolution=16), "resolution", "32"),
        (dict(resolution=12, sim_resolution=32), "resolution", "12"),
        (dict(preset="navier"), "preset", "navier"),
        (dict(forcing="sinus"), "forcing", "sinus"),
        (dict(scheme="rk9"), "scheme", "rk9"),
        (dict(t_final=0.3, record_every=0.25), "t_final", "0.3"),
        (dict(seed=-1), "seed", "-1"),
        (dict(initial_condition=np.zeros((8, 8))), "initial_condition", "(8, 8)"),
        (dict(initial_condition=np.zeros((3, 16, 16))), "initial_condition", "(3, 16, 16)"),
        (dict(initial_condition=np.full((16, 16), np.nan)), "initial_condition", "NaN"),
        (dict(forcing=np.zeros((8, 8))), "forcing", "(8, 8)"),
        (dict(scheme="fno", record_every=0.00015, t_final=0.0003), "record_every", "0.00015"),
        (dict(t_start=0.3), "t_start", "0.3"),
        (dict(t_start=0.5), "t_start", "0.5"),
        (dict(t_start=-0.25), "t_start", "-0.25"),
        (dict(t_start=0.25, include_initial=True), "include_initial", "0.25"),
    ],
)
def test_bad_input_is_refused(kwargs, argument, value):
    options = dict(n_samples=2, resolution=16, t_final=0.5, record_every=0.25, progress=False)
    options.update(kwargs)
    with pytest.raises(ValueError) as info:
        ns.generate(options.pop("n_samples"), **options)
    message = str(info.value)
    assert message.startswith(argument) and value in message, message


@pytest.mark.parametrize(
    "amplitude, cfl, reason",
    [(400, None, "CFL number"), (1e13, 0.8, "not finite .* or unbounded")],
)
def test_blow_up_names_sample_and_time(amplitude, cfl, reason):
    w0 = amplitude * gaussian_random_field(2, 16, seed=1)
    with pytest.raises(RuntimeError, match=rf"sample 5\d*: simulation blew up at t = .*{reason}"):
        ns.generate(2, resolution=16, initial_condition=w0, first_sample=5, t_final=0.5,
                    record_every=0.25, dt=0.05, cfl=cfl, progress=False)


def test_stepper_api_matches_generate():
    w0 = gaussian_random_field(2, 16, seed=4)
    solver = ns.NavierStokes2D(16, 1e-4, "symmetric")
    ds = _small(2, initial_condition=w0)
    stepped = solver.advance(solver.advance(w0, 0.25), 0.25)
    traj = solver.trajectory(w0, 0.5, 0.25)
    assert traj.shape == (2, 2, 16, 16)
    assert _rel(traj[:, 1], ds.vorticity.values[:, 1]) < 1e-14
    assert _rel(stepped, traj[:, 1]) < 1e-12
    with pytest.raises(ValueError, match="w: expected"):
        solver.advance(torch.zeros(2, 8, 8), 0.1)


def test_fno_scheme_breaks_grid_symmetry_only_through_nyquist_modes():
    """The reference scheme's Nyquist treatment breaks the 90-degree rotation slightly; with
    the Nyquist modes of the initial field zeroed it commutes to round-off."""
    n = 32
    w0 = gaussian_random_field(1, n, seed=9)
    spec = DatasetSpec.from_dataset(ns.generate(
        1, resolution=n, scheme="fno", t_final=1e-3, record_every=1e-3, progress=False,
    ))
    assert spec.exact is False
    element = spec.elements[1]  # r: rotation by 90 degrees, no shift
    assert element.name == "r" and element.shift == (0.0, 0.0)
    solver = ns.NavierStokes2D(n, 1e-4, "symmetric", scheme="fno")

    def error(w):
        moved = solver.advance(spec.act(element, "vorticity", w), 0.02)
        return _rel(moved, spec.act(element, "vorticity", solver.advance(w, 0.02)))

    nyquist = torch.ones(n, n)
    nyquist[n // 2, :] = 0
    nyquist[:, n // 2] = 0
    w0_filtered = torch.fft.ifft2(torch.fft.fft2(w0) * nyquist).real
    assert 1e-12 < error(w0) < 1e-5
    assert error(w0_filtered) < 1e-13


def test_progress_bar_reports_simulated_time(capsys):
    _small(1, progress=True)
    assert "navier-stokes" in capsys.readouterr().err


def test_user_forcing_is_declared_without_symmetry():
    f = 0.1 * gaussian_random_field(1, 16, seed=3)[0]
    ds = _small(1, forcing=f.numpy())
    config = json.loads(ds.attrs["config"])
    assert config["forcing"] == "array" and len(config["forcing_sha256"]) == 64
    assert ds.attrs["group"] == "C1()"
    assert _rel(ds.vorticity.values, _small(1).vorticity.values) > 1e-3
