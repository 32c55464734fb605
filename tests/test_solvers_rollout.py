"""Rollout, blow-up guard, zarr streaming, evaluation, symmetry diagnostics and plots."""

import json
import math

import numpy as np
import pytest
import torch
import xarray as xr
from test_solvers_data import heat_step, toy_field_dataset, toy_particle_dataset

from grepsnet_sciml.datasets.contract import group_elements
from grepsnet_sciml.groups import D4
from grepsnet_sciml.solvers.data import FieldLayout, field_layout, field_trajectories
from grepsnet_sciml.solvers.diagnostics import (
    field_elements,
    field_transform,
    particle_transform,
    symmetry_consistency,
)
from grepsnet_sciml.solvers.evaluate import (
    energy_spectrum,
    evaluate,
    evaluate_fields,
    evaluate_particles,
    field_energy,
)
from grepsnet_sciml.solvers.plots import (
    plot_energy_drift,
    plot_equivariance,
    plot_error_vs_time,
    plot_snapshots,
    plot_spectra,
    plot_trajectories,
)
from grepsnet_sciml.solvers.rollout import rollout, solver_rollout, store_coordinates

LAYOUT = FieldLayout(("vorticity",), ("T0p",), D4())


class HeatModel(torch.nn.Module):
    """The exact heat flow over one frame interval, as a 2-frame-window field model."""

    def __init__(self, dt=1.0, t_out=1, scale=None):
        super().__init__()
        self.dt, self.t_out, self.scale = dt, t_out, scale

    def forward(self, x):
        last = x[:, -1:]
        out = torch.cat([heat_step(last, self.dt * (k + 1)) for k in range(self.t_out)], 1)
        if self.scale is not None:
            out = out * self.scale[:, None, None, None].to(out.dtype)
        return out


def heat_solver(frames, n_steps):
    w = frames[:, -1]
    return torch.stack([heat_step(w, float(k + 1)) for k in range(n_steps)], 1)


def test_field_rollout_matches_exact_trajectory_with_sliding_window():
    ds = toy_field_dataset(n_samples=3, n_time=9)
    frames = field_trajectories(ds, field_layout(ds), dtype=torch.float64)
    for t_out in (1, 3):
        result = rollout(HeatModel(t_out=t_out), frames[:, :2], 7, layout=LAYOUT)
        assert result.states.shape == (3, 7, 1, 16, 16)
        torch.testing.assert_close(result.states, frames[:, 2:], rtol=1e-10, atol=1e-12)
        assert result.valid_steps.tolist() == [7, 7, 7] and not result.blown_up.any()


def test_sliding_window_feeds_the_last_t_in_frames():
    class Sum(torch.nn.Module):  # next frame = sum of the window: a Fibonacci recurrence
        def forward(self, x):
            return x.sum(1, keepdim=True)

    start = torch.ones(1, 2, 1, 4, 4)
    result = rollout(Sum(), start, 6, layout=LAYOUT)
    assert result.states[0, :, 0, 0, 0].tolist() == [2, 3, 5, 8, 13, 21]


class Marked(torch.nn.Module):
    """Identity on the last frame, but x10 per step where pixel (0, 0) is marked (> 50) and
    NaN where pixel (1, 1) is marked (< -50): per-sample, as rollout requires."""

    def forward(self, x):
        last = x[:, -1:]
        grow = torch.where(last[:, :, 0, 0].abs() > 50, 10.0, 1.0)[:, :, None, None]
        nan = (last[:, :, 1, 1] < -50)[:, :, None, None]
        return torch.where(nan, math.nan, last * grow)


def _marked_frames(grow=(1,), nan=()):
    frames = torch.randn(3, 2, 1, 8, 8, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(0))
    frames[:, :, 0, 0, 0] = frames[:, :, 0, 1, 1] = 0.0  # marker pixels: unmarked
    frames[list(grow), :, 0, 0, 0] = 100.0
    frames[list(nan), :, 0, 1, 1] = -100.0
    return frames


def test_blow_up_guard_stops_one_trajectory_and_keeps_the_rest():
    frames = _marked_frames()
    calls = []

    class Counting(Marked):
        def forward(self, x):
            calls.append(x.shape[0])
            return super().forward(x)

    result = rollout(Counting(), frames, 6, layout=LAYOUT, growth_limit=2e3)
    # norms grow 10, 100, 1000 (kept), 1e4 (stopped at step 4)
    assert result.valid_steps.tolist() == [6, 3, 6]
    assert result.blowup_step.tolist() == [0, 4, 0]
    assert result.blown_up.tolist() == [False, True, False]
    assert torch.isnan(result.states[1, 3:]).all() and torch.isfinite(result.states[1, :3]).all()
    torch.testing.assert_close(result.states[0, -1], frames[0, -1])
    assert calls == [3, 3, 3, 3, 2, 2]  # the blown-up trajectory is no longer stepped
    assert result.guard_report() == (
        "blow-up guard: 1 of 3 samples blew up (NaN/Inf or norm above the growth limit): "
        "sample 1 at step 4")
    nan = rollout(Marked(), _marked_frames(nan=(2,)), 4, layout=LAYOUT, growth_limit=2e3)
    assert nan.valid_steps.tolist() == [4, 3, 0] and nan.blowup_step.tolist() == [0, 4, 1]


def test_rollout_stops_when_every_trajectory_blew_up(tmp_path):
    frames = _marked_frames(grow=(), nan=(0, 1, 2))
    frames[1, :, 0, 1, 1] = 0.0  # sample 1 dies later, by growth
    frames[1, :, 0, 0, 0] = 100.0
    calls = []

    class Counting(Marked):
        def forward(self, x):
            calls.append(x.shape[0])
            return super().forward(x)

    result = rollout(Counting(), frames, 1000, layout=LAYOUT, growth_limit=2e3)
    assert calls == [3, 1, 1, 1] and result.steps_run == 4 and result.n_steps == 1000
    assert result.blowup_step.tolist() == [1, 4, 1] and result.states.shape[1] == 1000
    assert torch.isnan(result.states[:, 4:]).all()
    assert result.guard_report().endswith(
        "sample 0 at step 1, sample 1 at step 4, sample 2 at step 1; every trajectory had "
        "stopped, so the rollout ended at step 4 of 1000")
    streamed = rollout(Marked(), frames, 1000, layout=LAYOUT, growth_limit=2e3,
                       store=tmp_path / "r.zarr", chunk=3)
    ds = xr.open_zarr(tmp_path / "r.zarr", consolidated=False)
    assert ds.sizes["time"] == 4 and ds.blowup_step.values.tolist() == [1, 4, 1]
    assert ds.attrs["steps_run"] == 4 and ds.attrs["n_steps_requested"] == 1000
    assert "sample 1 at step 4" in ds.attrs["guard"] == streamed.guard_report()
    np.testing.assert_array_equal(ds.vorticity.values,
                                  result.states[:, :4, 0].float().numpy())  # stored float32


def test_huge_n_steps_with_immediate_blow_up_is_fast_and_small(tmp_path):
    import time
    import tracemalloc

    frames = _marked_frames(grow=(), nan=(0, 1, 2))
    tracemalloc.start()
    clock = time.perf_counter()
    result = rollout(Marked(), frames, 10_000_000, layout=LAYOUT, store=tmp_path / "big.zarr")
    seconds = time.perf_counter() - clock
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.steps_run == 1 and result.blowup_step.tolist() == [1, 1, 1]
    assert seconds < 10 and peak < 20e6, (seconds, peak)  # a 1e7-step time axis is 80 MB
    ds = xr.open_zarr(tmp_path / "big.zarr", consolidated=False)
    assert ds.sizes["time"] == 1 and ds.attrs["n_steps_requested"] == 10_000_000


def test_rollout_refuses_a_state_of_another_dtype():
    model = torch.nn.Conv2d(2, 1, 1)  # float32 parameters
    with pytest.raises(ValueError, match=r"initial_state: dtype torch.float64 differs from "
                                         r"the model's parameters \(torch.float32\)"):
        rollout(model, torch.zeros(1, 2, 1, 4, 4, dtype=torch.float64), 2, layout=LAYOUT)
    with torch.no_grad():
        model.weight.fill_(0.5)
        model.bias.zero_()
    assert rollout(model, torch.ones(1, 2, 1, 4, 4), 2, layout=LAYOUT).steps_run == 2


def test_rollout_streams_to_zarr_with_the_same_values(tmp_path):
    frames = torch.randn(2, 2, 1, 8, 8)
    store = tmp_path / "roll.zarr"
    streamed = rollout(HeatModel(), frames, 10, layout=LAYOUT, store=store, chunk=3,
                       step_time=0.5)
    assert streamed.states is None
    ds = xr.open_zarr(store)  # consolidated metadata: no warning (warnings are errors)
    memory = rollout(HeatModel(), frames, 10, layout=LAYOUT)
    np.testing.assert_array_equal(ds.vorticity.values, memory.states[:, :, 0].numpy())
    np.testing.assert_allclose(ds.time.values, 0.5 * np.arange(1, 11))
    assert ds.valid_steps.values.tolist() == [10, 10]
    assert ds.sample.values.tolist() == [0, 1] and "x" not in ds.coords
    assert ds.attrs["steps_run"] == 10 and ds.attrs["group"] == "D4()"
    assert json.loads(ds.attrs["representations"]) == {"vorticity": "T0p"}
    with pytest.raises(FileExistsError, match="already exists"):
        rollout(HeatModel(), frames, 2, layout=LAYOUT, store=store)


def test_multi_variable_rollout_in_memory_equals_the_streamed_one(tmp_path):
    """Vorticity and velocity frames (3 channels): whole frames in memory, one array per
    variable in the store, the same values."""
    layout = FieldLayout(("vorticity", "velocity"), ("T0p", "T1"), D4())
    frames = torch.randn(2, 2, 3, 8, 8)

    class Halve(torch.nn.Module):  # next frame = half the last one
        def forward(self, x):
            return layout.pack(0.5 * layout.unpack(x, 2)[:, -1:])

    memory = rollout(Halve(), frames, 5, layout=layout)
    assert memory.states.shape == (2, 5, 3, 8, 8)
    torch.testing.assert_close(memory.states[:, -1], frames[:, -1] / 32, rtol=0, atol=0)
    store = tmp_path / "roll.zarr"
    rollout(Halve(), frames, 5, layout=layout, store=store, chunk=2)
    ds = xr.open_zarr(store)
    np.testing.assert_array_equal(ds.vorticity.values, memory.states[:, :, 0].numpy())
    np.testing.assert_array_equal(ds.velocity.values,
                                  memory.states[:, :, 1:].movedim(2, -1).numpy())


def test_field_store_has_the_data_coordinates_absolute_times_and_attrs(tmp_path):
    data = toy_field_dataset(n_samples=5, n_time=6, n=8, dt=0.25)
    data = data.assign_coords(sample=np.arange(10, 15), time=data.time + 3.0)
    layout = field_layout(data)
    samples, start, t_in = [1, 3], 2, 2
    frames = field_trajectories(data, layout, samples, slice(start, start + t_in)).float()
    where = store_coordinates(data, samples, start + t_in - 1)
    assert where["start_time"] == 3.75
    store = tmp_path / "roll.zarr"
    rollout(HeatModel(), frames, 4, layout=layout, store=store, chunk=3, step_time=0.25,
            attrs={"model": "heat", "checkpoint": "run/best.pt", "start_frame": start},
            **where)
    ds = xr.open_zarr(store)
    assert ds.sample.values.tolist() == [11, 13]
    np.testing.assert_array_equal(ds.x.values, np.arange(8) / 8)
    np.testing.assert_array_equal(ds.y.values, np.arange(8) / 8)
    np.testing.assert_allclose(ds.time.values, 3.75 + 0.25 * np.arange(1, 5))
    assert ds.vorticity.dims == ("sample", "time", "x", "y")
    assert {k: ds.attrs[k] for k in ("model", "checkpoint", "start_frame", "written_by")} == {
        "model": "heat", "checkpoint": "run/best.pt", "start_frame": 2,
        "written_by": "grepsnet rollout"}
    with pytest.raises(ValueError, match=r"coords: 'x' has shape \(3,\), expected \(8,\)"):
        rollout(HeatModel(), frames, 2, layout=layout, store=tmp_path / "bad.zarr",
                coords={"x": np.arange(3)})
    with pytest.raises(ValueError, match=r"coords: dimensions \['particle'\] are not stored"):
        rollout(HeatModel(), frames, 2, layout=layout, store=tmp_path / "bad2.zarr",
                coords={"particle": np.arange(3)})
    with pytest.raises(ValueError, match=r"frame: expected a frame index in \[0, 6\), got 6"):
        store_coordinates(data, samples, 6)


def test_particle_store_has_particle_and_spatial_coordinates(tmp_path):
    data = toy_particle_dataset(n_samples=3, n_time=12, dt=0.1)
    data = data.assign_coords(particle=np.arange(5), spatial=["x", "y", "z"])
    samples, start = [0, 2], 4
    sub = data.isel(sample=samples, time=start)
    state = tuple(torch.as_tensor(sub[v].values) for v in ("position", "velocity"))
    q = torch.as_tensor(data.charge.isel(sample=samples).values)[..., None]

    class Drift(torch.nn.Module):
        def forward(self, x, v, q):
            return x + 0.1 * v

    store = tmp_path / "p.zarr"
    rollout(Drift(), (*state, q), 3, store=store, step_time=0.1,
            **store_coordinates(data, samples, start))
    ds = xr.open_zarr(store)
    assert ds.position.dims == ("sample", "time", "particle", "spatial")
    assert "particle" in ds.coords and ds.particle.values.tolist() == list(range(5))
    assert "spatial" in ds.coords and ds.spatial.values.tolist() == ["x", "y", "z"]
    np.testing.assert_allclose(ds.time.values, 0.4 + 0.1 * np.arange(1, 4))
    np.testing.assert_allclose(ds.position.values, data.position.values[samples, 5:8],
                               rtol=1e-6, atol=1e-6)


def test_particle_rollout_free_flight_and_solver_side_by_side():
    ds = toy_particle_dataset(n_samples=3, n_time=12, dt=0.1)
    x = torch.as_tensor(ds.position.values)
    v = torch.as_tensor(ds.velocity.values)
    q = torch.as_tensor(ds.charge.values)[..., None]

    class Drift(torch.nn.Module):  # exact for free flight over 2 frames
        def forward(self, x, v, q):
            return x + 0.2 * v

    def solver(state, n):
        x0, v0, _ = state
        return (torch.stack([x0 + 0.2 * (k + 1) * v0 for k in range(n)], 1),
                v0[:, None].expand(-1, n, -1, -1))

    learned, (x_true, v_true) = solver_rollout(Drift(), solver, (x[:, 0], v[:, 0], q), 5,
                                               step_time=0.2)
    torch.testing.assert_close(learned.states[0], x[:, 2:12:2], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(learned.states[1], v[:, 2:12:2], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x_true, x[:, 2:12:2])
    with pytest.raises(ValueError, match="step_time: required"):
        rollout(Drift(), (x[:, 0], v[:, 0], q), 2)


def test_rollout_bad_input():
    with pytest.raises(ValueError, match="n_steps: expected a positive integer, got 0"):
        rollout(HeatModel(), torch.zeros(1, 2, 1, 4, 4), 0, layout=LAYOUT)
    with pytest.raises(ValueError, match="layout: a FieldLayout is required"):
        rollout(HeatModel(), torch.zeros(1, 2, 1, 4, 4), 2)
    with pytest.raises(ValueError, match=r"initial_state: expected \(batch, t_in, 1, X, Y\)"):
        rollout(HeatModel(), torch.zeros(1, 2, 4, 4), 2, layout=LAYOUT)
    bad = torch.zeros(1, 2, 1, 4, 4)
    bad[0, 0, 0, 0, 0] = math.inf
    with pytest.raises(ValueError, match="initial_state: contains NaN or Inf"):
        rollout(HeatModel(), bad, 2, layout=LAYOUT)


def test_field_energy_and_spectrum_of_a_single_mode():
    n = 16
    x = torch.arange(n, dtype=torch.float64) / n
    w = torch.cos(2 * math.pi * 3 * x)[:, None].expand(n, n)  # |k| = 3
    e, z = field_energy(w)
    # psi = w / (4 pi^2 9), u = (0, -psi_x): mean u^2 = 1 / (2 * 4 pi^2 * 9), E = mean u^2 / 2
    assert float(e) == pytest.approx(1 / (16 * math.pi**2 * 9), rel=1e-12)
    assert float(z) == pytest.approx(0.25, rel=1e-12)
    spec = energy_spectrum(w)
    assert float(spec[3]) == pytest.approx(float(e), rel=1e-12)
    assert float(spec.sum() - spec[3]) == pytest.approx(0.0, abs=1e-20)


def test_evaluate_fields_metrics():
    ds = toy_field_dataset(n_samples=2, n_time=7)
    frames = field_trajectories(ds, field_layout(ds), dtype=torch.float64)
    truth = frames[:, 1:]
    noisy = truth + 0.1 * truth.std() * torch.randn_like(truth)
    blown = truth.clone()
    blown[1, 3:] = math.nan
    ev = evaluate({"exact": truth.clone(), "noisy": noisy, "blown": blown}, truth,
                  kind="field", times=ds.time.values[1:])
    assert ev.rel_l2.dims == ("model", "sample", "time")
    assert float(ev.rel_l2.sel(model="exact").max()) == 0.0
    assert float(ev.correlation.sel(model="exact").min()) == pytest.approx(1.0, rel=1e-12)
    # the whole-rollout metric is the norm ratio over all steps together
    e = (noisy - truth).reshape(2, -1).norm(dim=1) / truth.reshape(2, -1).norm(dim=1)
    np.testing.assert_allclose(ev.rel_l2_rollout.sel(model="noisy").values, e.numpy())
    np.testing.assert_allclose(ev.energy.sel(model="exact").values, ev.energy_true.values)
    assert ev.correlation_time.sel(model="blown").values.tolist() == [math.inf, 4.0]
    assert ev.correlation_time.sel(model="exact").values.tolist() == [math.inf, math.inf]
    assert np.isnan(ev.rel_l2.sel(model="blown", sample=1).values[3:]).all()
    # heat flow dissipates energy monotonically
    assert (np.diff(ev.energy_true.values, axis=1) < 0).all()
    with pytest.raises(ValueError, match=r"predictions\['x'\]: shape"):
        evaluate_fields({"x": truth[:1]}, truth)
    with pytest.raises(ValueError, match="kind: expected 'field' or 'particles'"):
        evaluate({"x": truth}, truth, kind="mesh")


def test_evaluate_particles_conservation_metrics(tmp_path):
    ds = toy_particle_dataset(n_samples=2, n_time=6)
    x = torch.as_tensor(ds.position.values)
    v = torch.as_tensor(ds.velocity.values)
    q = torch.as_tensor(ds.charge.values)
    ev = evaluate_particles({"exact": (x[:, 1:], v[:, 1:]),
                             "kicked": (x[:, 1:], v[:, 1:] + 1.0)},
                            (x[:, 1:], v[:, 1:]), q, initial=(x[:, 0], v[:, 0]))
    assert float(ev.position_mse.sel(model="exact").max()) == 0.0
    # free flight: momentum conserved exactly; a kick of +1 per component on 5 particles
    assert float(ev.momentum_drift.sel(model="exact").max()) < 1e-12
    np.testing.assert_allclose(ev.momentum_drift.sel(model="kicked").values, math.sqrt(3) * 5)
    np.testing.assert_allclose(ev.energy.sel(model="exact").values, ev.energy_true.values)
    # the solver's own drift is the exact model's, and is plotted beside every model's
    np.testing.assert_allclose(ev.energy_drift_true.values,
                               ev.energy_drift.sel(model="exact").values, atol=1e-15)
    assert float(np.abs(ev.energy_drift.sel(model="kicked")).min()) > 1e-3
    png = plot_energy_drift(ev, str(tmp_path / "drift"), horizon=3)
    data = json.loads((tmp_path / "drift.json").read_text())
    assert png.endswith("drift.png") and data["horizon"] == 3
    np.testing.assert_allclose(data["solver"], np.abs(ev.energy_drift_true.values).mean(0))
    assert set(data["models"]) == {"exact", "kicked"}


def test_symmetry_consistency_solver_exact_model_not(tmp_path):
    ds = toy_field_dataset(n_samples=2, n_time=6)
    layout = field_layout(ds)
    frames = field_trajectories(ds, layout, dtype=torch.float64)
    elements = field_elements(ds)  # no element list: D4 with zero shifts
    assert [e.name for e in elements] == D4().element_names
    assert all(e.shift == (0.0, 0.0) for e in elements)
    torch.manual_seed(0)
    from grepsnet_sciml.models.baselines import FNOBaseline

    fno = FNOBaseline(layout.reps(2), layout.reps(1), modes=4, width=8, n_layers=2).double()
    fns = {"fno": lambda s, n: rollout(fno, s, n, layout=layout).states,
           "solver": heat_solver}
    diag = symmetry_consistency(fns, frames[:, :2], 4, field_transform(layout, elements),
                                truth=frames[:, 2:6])
    assert diag.equivariance_error.dims == ("model", "element", "time")
    assert float(diag.equivariance_error.sel(model="solver").max()) < 1e-12
    assert float(diag.equivariance_error.sel(model="fno").isel(element=slice(1, None)).min()) \
        > 1e-4
    assert float(diag.equivariance_error.sel(model="fno", element="e").max()) == 0.0
    assert float(diag.transformed_error.sel(model="solver").max()) < 1e-12
    # shifted elements: a heat flow also commutes with the shift of an NS-Sym reflection
    shifted = group_elements(D4(), dict.fromkeys(D4().element_names, (0.25, 0.25)))
    diag2 = symmetry_consistency({"solver": heat_solver}, frames[:, :2], 3,
                                 field_transform(layout, shifted))
    assert float(diag2.equivariance_error.max()) < 1e-12
    png = plot_equivariance(diag, str(tmp_path / "equiv"))
    data = json.loads((tmp_path / "equiv.json").read_text())
    assert png.endswith(".png") and set(data["models"]) == {"fno", "solver"}
    assert len(data["models"]["fno"]["r"]) == 4
    # one shared log scale: the solver's ~1e-15 and the FNO's >1e-4 on the same y axis
    import matplotlib.pyplot as plt

    captured = []
    original = plt.subplots
    plt.subplots = lambda *a, **k: captured.append(original(*a, **k)) or captured[-1]
    try:
        plot_equivariance(diag, str(tmp_path / "equiv2"))
    finally:
        plt.subplots = original
    axes = captured[0][1][0]
    low, high = axes[0].get_ylim()
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])
    assert low < 1e-12 and high > 1e-4 and axes[1].get_ylabel() == ""


def test_particle_symmetry_consistency():
    ds = toy_particle_dataset(n_samples=2, n_time=4)
    state = (torch.as_tensor(ds.position.values[:, 0]), torch.as_tensor(ds.velocity.values[:, 0]),
             torch.as_tensor(ds.charge.values)[..., None])

    def free(s, n):
        x, v = s[0], s[1]
        return (torch.stack([x + (k + 1) * v for k in range(n)], 1),
                v[:, None].repeat(1, n, 1, 1))

    def biased(s, n):
        x, v = free(s, n)
        return x + torch.tensor([1.0, 0.0, 0.0], dtype=x.dtype), v

    diag = symmetry_consistency({"free": free, "biased": biased}, state, 3,
                                particle_transform(4))
    assert float(diag.equivariance_error.sel(model="free").max()) < 1e-12
    assert float(diag.equivariance_error.sel(model="biased").min()) > 1e-3


def test_plots_write_png_and_json(tmp_path):
    ds = toy_field_dataset(n_samples=2, n_time=5)
    frames = field_trajectories(ds, field_layout(ds), dtype=torch.float64)
    ev = evaluate_fields({"a": frames[:, 1:] * 1.1}, frames[:, 1:])
    for fn, name in ((plot_error_vs_time, "err"), (plot_snapshots, "snap"),
                     (plot_spectra, "spec")):
        png = fn(ev, str(tmp_path / name))
        assert (tmp_path / f"{name}.png").stat().st_size > 1000 and png.endswith(".png")
        json.loads((tmp_path / f"{name}.json").read_text())
    data = json.loads((tmp_path / "err.json").read_text())
    np.testing.assert_allclose(data["models"]["a"], 0.1, rtol=1e-12)
    p = toy_particle_dataset(n_samples=1, n_time=5)
    x, v = torch.as_tensor(p.position.values), torch.as_tensor(p.velocity.values)
    q = torch.as_tensor(p.charge.values)
    evp = evaluate_particles({"m": (x[:, 1:], v[:, 1:])}, (x[:, 1:], v[:, 1:]), q,
                             initial=(x[:, 0], v[:, 0]))
    plot_trajectories(evp, str(tmp_path / "traj"))
    assert (tmp_path / "traj.png").exists() and (tmp_path / "traj.json").exists()


def test_band_plot_tells_a_dozen_models_apart(tmp_path):
    import matplotlib.pyplot as plt

    from grepsnet_sciml.solvers import plots

    styles = {(s["color"], s["ls"]) for s in map(plots.model_style, range(40))}
    assert len(styles) == 40
    gen = torch.Generator().manual_seed(0)
    truth = torch.randn(2, 6, 1, 12, 12, generator=gen, dtype=torch.float64)
    preds = {f"m{k}": truth * (1 + 0.1 * k) for k in range(12)}
    ev = evaluate_fields(preds, truth, times=np.arange(1.0, 7.0), spectrum_times=[5])
    drawn = []
    original = plt.Axes.plot

    def spy(self, *args, **kwargs):
        drawn.append((kwargs.get("label"), kwargs.get("color"), kwargs.get("ls")))
        return original(self, *args, **kwargs)

    plt.Axes.plot = spy
    try:
        plots.plot_field_band(ev, str(tmp_path / "band"))
    finally:
        plt.Axes.plot = original
    models = [(c, s) for label, c, s in drawn if label and label.startswith("m")]
    assert len(models) == 24 and len(set(models)) == 12  # two panels, twelve styles
