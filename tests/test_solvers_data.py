"""Data to tensors: layouts, windows, particle pairs, representations and bad input.

Also holds the tiny stand-in datasets the other solver tests build on: an exact heat-
equation field dataset (commutes with D4 and shifts) and free-flying charged particles.
"""

import json
import math

import numpy as np
import pytest
import torch
import xarray as xr

from grepsnet_sciml import Reps
from grepsnet_sciml.groups import D4, O
from grepsnet_sciml.solvers.data import (
    FieldLayout,
    FieldWindows,
    ParticlePairs,
    field_layout,
    open_dataset,
    particle_reps,
)

HEAT_NU = 2e-3


def heat_step(w: torch.Tensor, t: float, nu: float = HEAT_NU) -> torch.Tensor:
    """Exact heat flow ``w_t = nu Lap w`` on the unit torus for time ``t`` (last 2 axes)."""
    n = w.shape[-1]
    k = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    w_hat = torch.fft.fft2(w.double()) * torch.exp(-nu * 4 * math.pi**2 * k2 * t)
    return torch.fft.ifft2(w_hat).real.to(w.dtype)


def toy_field_dataset(n_samples=4, n_time=8, n=16, seed=0, velocity=False, dt=1.0):
    """Heat-equation trajectories in the NS data contract (vorticity T0p over D4)."""
    gen = torch.Generator().manual_seed(seed)
    w0 = torch.randn(n_samples, n, n, generator=gen, dtype=torch.float64)
    w0 = heat_step(w0, 2.0)  # smooth
    w0 = w0 / w0.std()
    frames = torch.stack([heat_step(w0, dt * k) for k in range(n_time)], 1)
    coords = {"x": np.arange(n) / n, "y": np.arange(n) / n, "time": dt * np.arange(n_time)}
    data = {"vorticity": (("sample", "time", "x", "y"), frames.numpy())}
    reps = {"vorticity": "T0p"}
    if velocity:
        vel = torch.stack([frames, -frames.roll(1, -1)], -1)
        data["velocity"] = (("sample", "time", "x", "y", "component"), vel.numpy())
        reps["velocity"] = "T1"
    return xr.Dataset(data, coords=coords, attrs={
        "kind": "field", "group": "D4()", "representations": json.dumps(reps),
        "symmetry": "{}", "config": json.dumps({"viscosity": HEAT_NU}), "seed": seed})


def toy_particle_dataset(n_samples=6, n_time=12, n_particles=5, seed=0, dt=0.1):
    """Free flight ``x(t) = x0 + v0 t`` of charged particles in the particle data contract."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=(n_samples, n_particles, 3))
    v0 = 0.5 * rng.normal(size=(n_samples, n_particles, 3))
    t = dt * np.arange(n_time)
    pos = x0[:, None] + v0[:, None] * t[None, :, None, None]
    vel = np.broadcast_to(v0[:, None], pos.shape).copy()
    charge = rng.choice([-1.0, 1.0], size=(n_samples, n_particles))
    dims = ("sample", "time", "particle", "spatial")
    return xr.Dataset(
        {"position": (dims, pos), "velocity": (dims, vel),
         "charge": (("sample", "particle"), charge)},
        coords={"time": t},
        attrs={"kind": "particles", "group": "O(3)", "seed": seed, "config": "{}",
               "symmetry": "{}", "representations": json.dumps(
                   {"position": "T1", "velocity": "T1", "charge": "T0"})})


def test_layout_pack_unpack_round_trip():
    layout = FieldLayout(("vorticity", "velocity"), ("T0p", "T1"), D4())
    frames = torch.randn(2, 3, 3, 8, 8)
    packed = layout.pack(frames)
    assert layout.reps(3) == Reps("3xT0p + 3xT1", D4())
    assert packed.shape == (2, 9, 8, 8)
    # channel-major per variable: vorticity frames first, then (vx, vy) per frame
    assert torch.equal(packed[:, :3], frames[:, :, 0])
    assert torch.equal(packed[:, 3:5], frames[:, 0, 1:3])
    assert torch.equal(layout.unpack(packed, 3), frames)


def test_layout_packing_commutes_with_group_action():
    # acting on each frame, then packing, equals acting on the packed tensor with reps(3)
    layout = FieldLayout(("vorticity", "velocity"), ("T0p", "T1"), D4())
    frames = torch.randn(2, 3, 3, 8, 8, dtype=torch.float64)
    frame_reps = layout.reps(1)
    for g in range(8):
        moved = torch.stack([frame_reps.act(g, frames[:, t], grid=True) for t in range(3)], 1)
        assert torch.equal(layout.pack(moved), layout.reps(3).act(g, layout.pack(frames),
                                                                   grid=True))


def test_field_windows_teacher_forcing_pairs():
    ds = toy_field_dataset(n_samples=3, n_time=7, velocity=True)
    windows = FieldWindows(ds, t_in=3, t_out=2, variables=["vorticity", "velocity"],
                           samples=[0, 2])
    assert len(windows) == 2 * (7 - 5 + 1)
    assert windows.rep_in == Reps("3xT0p + 3xT1", D4())
    assert windows.rep_out == Reps("2xT0p + 2xT1", D4())
    x, y = windows[4]  # sample 2, start 1
    w = torch.as_tensor(ds.vorticity.values[2], dtype=torch.float32)
    assert torch.equal(x[:3], w[1:4])
    assert torch.equal(y[:2], w[4:6])
    v = torch.as_tensor(ds.velocity.values[2], dtype=torch.float32)
    assert torch.equal(x[3:5], v[1].permute(2, 0, 1))
    lazy = FieldWindows(ds, t_in=3, t_out=2, variables=["vorticity", "velocity"],
                        samples=[0, 2], in_memory=False)
    assert all(torch.equal(a, b) for a, b in zip(lazy[4], windows[4]))


def test_open_dataset_lazily_from_zarr_and_netcdf(tmp_path):
    ds = toy_field_dataset(n_samples=2, n_time=5)
    ds.to_zarr(tmp_path / "d.zarr", consolidated=False)
    ds.to_netcdf(tmp_path / "d.nc", engine="h5netcdf")
    for path in (tmp_path / "d.zarr", tmp_path / "d.nc"):
        opened = open_dataset(path)
        assert opened.vorticity.chunks is not None  # dask-backed
        x, y = FieldWindows(opened, t_in=2)[0]
        np.testing.assert_allclose(x.numpy(), ds.vorticity.values[0, :2], rtol=1e-6)
        opened.close()


def test_particle_pairs_egnn_task():
    ds = toy_particle_dataset(n_samples=4, n_time=45)
    pairs = ParticlePairs(ds, input_frames=30, delta=10)
    assert len(pairs) == 4
    (x, v, q), y = pairs[1]
    assert x.shape == (5, 3) and v.shape == (5, 3) and q.shape == (5, 1)
    np.testing.assert_allclose(y.numpy(), ds.position.values[1, 40], rtol=1e-6)
    np.testing.assert_allclose(x.numpy(), ds.position.values[1, 30], rtol=1e-6)
    assert pairs.rep_in == (Reps("T1", O(3)), Reps("T1", O(3)), Reps("T0", O(3)))
    both = ParticlePairs(ds, input_frames=[0, 30], delta=10, predict_velocity=True)
    assert len(both) == 8 and len(both[0][1]) == 2
    assert particle_reps(ds, predict_velocity=True)[1] == (Reps("T1", O(3)),) * 2


def test_wrong_kind_missing_variable_and_attrs_are_named(tmp_path):
    particles = toy_particle_dataset()
    particles.to_zarr(tmp_path / "p.zarr", consolidated=False)
    with pytest.raises(ValueError, match=r"p\.zarr.*'particles'.*expected 'field'"):
        FieldWindows(tmp_path / "p.zarr", t_in=2)
    fields = toy_field_dataset()
    with pytest.raises(ValueError, match="'field'.*expected 'particles'"):
        ParticlePairs(fields, input_frames=1, delta=1)
    with pytest.raises(ValueError, match="variable 'velocity' is missing"):
        field_layout(fields, ["velocity"])
    no_group = fields.copy()
    no_group.attrs = {k: v for k, v in fields.attrs.items() if k != "group"}
    with pytest.raises(ValueError, match="missing 'group' attribute"):
        FieldWindows(no_group, t_in=2)
    no_reps = fields.copy()
    no_reps.attrs = {k: v for k, v in fields.attrs.items() if k != "representations"}
    with pytest.raises(ValueError, match="missing 'representations' attribute"):
        FieldWindows(no_reps, t_in=2)
    with pytest.raises(ValueError, match="t_in: expected a positive integer, got 0"):
        FieldWindows(fields, t_in=0)
    with pytest.raises(ValueError, match="needs t_in \\+ t_out = 9 frames"):
        FieldWindows(fields, t_in=8)
    with pytest.raises(ValueError, match="input_frames: frame 10 \\+ delta 5"):
        ParticlePairs(particles, input_frames=10, delta=5)


def test_nan_in_data_names_file_and_variable(tmp_path):
    ds = toy_field_dataset(n_samples=2, n_time=5)
    ds.vorticity.values[1, 3, 2, 2] = np.nan
    ds.to_zarr(tmp_path / "nan.zarr", consolidated=False)
    with pytest.raises(ValueError, match=r"nan\.zarr: variable 'vorticity' contains NaN"):
        FieldWindows(tmp_path / "nan.zarr", t_in=2)
    lazy = FieldWindows(tmp_path / "nan.zarr", t_in=2, in_memory=False)
    lazy[0]
    with pytest.raises(ValueError, match=r"nan\.zarr: variable 'vorticity' contains NaN"):
        lazy[4]
    p = toy_particle_dataset()
    p.velocity.values[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="variable 'velocity' contains NaN or Inf"):
        ParticlePairs(p, input_frames=1, delta=1)
