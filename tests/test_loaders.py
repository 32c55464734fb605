"""Loaders for the community's files: FNO/G-FNO .mat (v5 and v7.3) and EGNN .npy."""

import json

import h5py
import numpy as np
import pytest
import scipy.io
import xarray as xr

from grepsnet_sciml.datasets import charged_particles, navier_stokes
from grepsnet_sciml.datasets.contract import DatasetSpec
from grepsnet_sciml.datasets.loaders import load_egnn_npy, load_fno_mat
from grepsnet_sciml.datasets.storage import open_dataset, validate_dataset, write_dataset

S, N, T = 3, 8, 4


def _fields(dtype=np.float32):
    """u[s, i, j, k] = 1000 s + 100 k + 10 i + j / 10: any axis mix-up changes the values."""
    s, i, j, k = np.meshgrid(np.arange(S), np.arange(N), np.arange(N), np.arange(T),
                             indexing="ij")
    u = (1000 * s + 100 * k + 10 * i + j / 10).astype(dtype)
    a = (u[..., 0] - 0.5).astype(dtype)
    return a, u, np.arange(1, T + 1, dtype=np.float64)


def _save_v73(path, variables):
    """Write an HDF5 file laid out as MATLAB -v7.3 does it.

    512-byte user block starting with the MAT header text, each variable a dataset with its
    axes reversed (column-major) and a ``MATLAB_class`` attribute.
    """
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, value in variables.items():
            value = np.atleast_2d(value)  # MATLAB has no 1-D arrays: t is (1, T)
            dataset = f.create_dataset(name, data=value.T)
            matlab_class = {"float64": "double", "float32": "single"}[str(value.dtype)]
            dataset.attrs["MATLAB_class"] = np.bytes_(matlab_class)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created by: tests HDF5 schema 1.00 ."
    header = header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as f:
        f.write(header)


@pytest.mark.parametrize("version", ["v5", "v7.3"])
@pytest.mark.parametrize("forcing, group", [("fno", "D2('diagonal')"), ("symmetric", "D4()")])
def test_fno_mat_round_trip(tmp_path, version, forcing, group):
    a, u, t = _fields()
    path = tmp_path / f"ns_{version}.mat"
    if version == "v5":
        scipy.io.savemat(path, {"a": a, "u": u, "t": t})
        assert not h5py.is_hdf5(path)
    else:
        _save_v73(path, {"a": a, "u": u, "t": t})
        assert h5py.is_hdf5(path)
        with h5py.File(path, "r") as f:
            assert f["u"].shape == (T, N, N, S)  # reversed on disk, as MATLAB writes it
        with pytest.raises(NotImplementedError):
            scipy.io.loadmat(path)  # scipy cannot read v7.3 files: our h5py path is needed
    ds = load_fno_mat(path, forcing=forcing, viscosity=1e-4, chunk_size=2)
    validate_dataset(ds)
    assert ds.vorticity.dims == ("sample", "time", "x", "y")
    assert ds.vorticity.dtype == np.float32
    np.testing.assert_array_equal(ds.vorticity.values[:, 1:], u.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(ds.vorticity.values[:, 0], a)
    np.testing.assert_array_equal(ds.time.values, np.concatenate([[0.0], t]))
    np.testing.assert_array_equal(ds.x.values, np.arange(N) / N)
    assert ds.attrs["group"] == group
    assert json.loads(ds.attrs["representations"])["vorticity"] == "T0p"
    spec = DatasetSpec.from_dataset(ds)
    assert spec == navier_stokes.dataset_spec(forcing, "fno", spec.config, spec.metadata)
    assert spec.exact is False and spec.metadata["source"] == str(path)
    config = json.loads(ds.attrs["config"])
    assert config["viscosity"] == 1e-4 and config["forcing"] == forcing
    if version == "v7.3":
        assert ds.vorticity.chunks[0] == (2, 1)  # read lazily, by samples
    without_initial = load_fno_mat(path, forcing=forcing, include_initial=False)
    np.testing.assert_array_equal(without_initial.vorticity.values, u.transpose(0, 3, 1, 2))


def test_loaded_file_has_the_generator_form(tmp_path):
    generated = navier_stokes.generate(1, "ns", resolution=8, sim_resolution=8, t_final=0.5,
                                       record_every=0.25, progress=False)
    w = generated.vorticity.values
    path = tmp_path / "gen.mat"
    scipy.io.savemat(path, {"u": w.transpose(0, 2, 3, 1), "t": generated.time.values})
    loaded = load_fno_mat(path, forcing="fno")
    xr.testing.assert_identical(loaded.vorticity, generated.vorticity)
    for key in ("kind", "group", "representations", "symmetry"):
        if key == "symmetry":  # same declaration up to the scheme's exactness note
            ours, theirs = (json.loads(d.attrs[key]) for d in (loaded, generated))
            assert ours["elements"] == theirs["elements"] and ours["group"] == theirs["group"]
        else:
            assert loaded.attrs[key] == generated.attrs[key]


def test_gfno_times_are_subsampled_like_its_frames(tmp_path):
    a, u, _ = _fields(np.float64)
    t_all = 0.25 * np.arange(1, 4 * T + 1)  # G-FNO saves all 4T record times, keeps u[..., ::4]
    path = tmp_path / "gfno.mat"
    scipy.io.savemat(path, {"a": a, "u": u, "t": t_all})
    ds = load_fno_mat(path, forcing="symmetric", include_initial=False)
    np.testing.assert_array_equal(ds.time.values, [0.25, 1.25, 2.25, 3.25])
    explicit = load_fno_mat(path, forcing="symmetric", include_initial=False,
                            time=[1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(explicit.time.values, [1.0, 2.0, 3.0, 4.0])


def test_a_loaded_file_streams_into_a_store(tmp_path):
    a, u, t = _fields()
    path = tmp_path / "ns.mat"
    _save_v73(path, {"a": a, "u": u, "t": t})
    ds = load_fno_mat(path, forcing="fno", chunk_size=2)

    def chunk(first, n):
        return ds.isel(sample=slice(first, first + n)).load()

    out = write_dataset(tmp_path / "ns.zarr", chunk, S, 2, config={"source": str(path)},
                        progress=False)
    xr.testing.assert_identical(open_dataset(out).load(), ds.load())


def test_fno_mat_bad_input(tmp_path):
    a, u, t = _fields()
    good = tmp_path / "good.mat"
    scipy.io.savemat(good, {"a": a, "u": u, "t": t})
    with pytest.raises(ValueError, match="forcing: expected one of .* got 'kolmogorov'"):
        load_fno_mat(good, forcing="kolmogorov")
    with pytest.raises(FileNotFoundError, match="missing.mat"):
        load_fno_mat(tmp_path / "missing.mat", forcing="fno")
    (tmp_path / "text.mat").write_text("hello, not MATLAB")
    with pytest.raises(ValueError, match="text.mat: not a readable MATLAB .mat file"):
        load_fno_mat(tmp_path / "text.mat", forcing="fno")
    scipy.io.savemat(tmp_path / "no_u.mat", {"a": a})
    with pytest.raises(ValueError, match="no_u.mat: no variable 'u'"):
        load_fno_mat(tmp_path / "no_u.mat", forcing="fno")
    scipy.io.savemat(tmp_path / "flat.mat", {"u": u[..., 0], "t": t})
    with pytest.raises(ValueError, match=r"variable 'u' has shape \(3, 8, 8\)"):
        load_fno_mat(tmp_path / "flat.mat", forcing="fno")
    scipy.io.savemat(tmp_path / "bad_t.mat", {"u": u, "t": np.arange(7.0)})
    with pytest.raises(ValueError, match="'t' has 7 times, which does not fit the 4 frames"):
        load_fno_mat(tmp_path / "bad_t.mat", forcing="fno")
    scipy.io.savemat(tmp_path / "no_t.mat", {"u": u})
    with pytest.raises(ValueError, match="no variable 't'; pass time="):
        load_fno_mat(tmp_path / "no_t.mat", forcing="fno")
    with pytest.raises(ValueError, match="time: expected 4 times"):
        load_fno_mat(good, forcing="fno", time=[1.0, 2.0])
    scipy.io.savemat(tmp_path / "bad_a.mat", {"a": a[:, :4], "u": u, "t": t})
    with pytest.raises(ValueError, match="variable 'a' has shape"):
        load_fno_mat(tmp_path / "bad_a.mat", forcing="fno")
    scipy.io.savemat(tmp_path / "n6.mat", {"u": u[:, :6, :6], "t": t})
    with pytest.raises(ValueError, match=r"n6.mat: the 'symmetric' forcing's declared symmetry: "
                       r"element 'm': shift \[0.25, 0.25\] is not a whole number of cells on "
                       r"the 6 x 6 grid; expected N divisible by 4"):
        load_fno_mat(tmp_path / "n6.mat", forcing="symmetric")
    assert load_fno_mat(tmp_path / "n6.mat", forcing=None).sizes["x"] == 6  # no shifts


def test_egnn_npy_files_load_into_the_particle_form(tmp_path):
    rng = np.random.default_rng(0)
    n = 4
    loc = rng.standard_normal((n, 49, 3, 5))  # the generator's own axes (n, frame, xyz, particle)
    vel = rng.standard_normal((n, 49, 3, 5))
    charges = rng.choice([-1.0, 1.0], size=(n, 5, 1))
    suffix = "charged5_initvel1small"
    for name, array in (("loc", loc), ("vel", vel), ("charges", charges),
                        ("edges", charges @ charges.transpose(0, 2, 1))):
        np.save(tmp_path / f"{name}_valid_{suffix}.npy", array)
    ds = load_egnn_npy(tmp_path, "valid")
    validate_dataset(ds)
    assert ds.position.dims == ("sample", "time", "particle", "spatial")
    np.testing.assert_array_equal(ds.position.values, loc.transpose(0, 1, 3, 2))
    np.testing.assert_array_equal(ds.velocity.values, vel.transpose(0, 1, 3, 2))
    np.testing.assert_array_equal(ds.charge.values, charges[..., 0])
    np.testing.assert_allclose(ds.time.values, 0.1 * np.arange(1, 50), rtol=1e-12)
    assert ds.attrs["group"] == "O(3)" and ds.attrs["kind"] == "particles"
    # the same form as the generator's own output
    generated = charged_particles.generate(2, preset="egnn", seed=43, n_steps=300,
                                           record_every=100, progress=False)
    assert set(generated.variables) == set(ds.variables)
    assert generated.attrs["representations"] == ds.attrs["representations"]
    with pytest.raises(ValueError, match="expected file loc_test_charged5_initvel1small.npy"):
        load_egnn_npy(tmp_path, "test")
