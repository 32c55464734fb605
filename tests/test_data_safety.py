"""What the data side refuses or reports: foreign paths under --overwrite, read-only folders,
damaged chunks, foreign files given as data, grids the declared symmetry cannot act on, and
the modes of what it writes."""

import errno
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from grepsnet_sciml.cli import main
from grepsnet_sciml.datasets import charged_particles, storage
from grepsnet_sciml.datasets import navier_stokes as ns
from grepsnet_sciml.datasets.splits import generate_splits, generate_to_store, open_splits
from grepsnet_sciml.datasets.storage import open_dataset
from grepsnet_sciml.solvers import data as solver_data

TINY_NS = ["--resolution", "8", "--sim-resolution", "8", "--t-final", "0.5",
           "--record-every", "0.25", "--no-progress"]


def _standin(n_samples, *, seed, first_sample=0):
    """Field data in the contract: ``u[k] = seed + k`` on a 4 x 4 grid over 2 frames."""
    k = np.arange(first_sample, first_sample + n_samples, dtype=float)
    u = (seed + k)[:, None, None, None] * np.ones((n_samples, 2, 4, 4))
    return xr.Dataset(
        {"vorticity": (("sample", "time", "x", "y"), u)},
        coords={"sample": np.arange(first_sample, first_sample + n_samples),
                "time": [0.0, 1.0], "x": np.arange(4) / 4, "y": np.arange(4) / 4},
        attrs={"kind": "field", "group": "D4()",
               "representations": json.dumps({"vorticity": "T0p"})})


def _store(path, n=6, seed=0):
    return generate_to_store(_standin, path, n, seed=seed, chunk_size=2, progress=False)


def _tree(path):
    path = Path(path)
    if path.is_file():
        return {".": path.read_bytes()}
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*"))
            if f.is_file()}


# ----- --overwrite replaces only what we wrote ---------------------------------------------
def test_overwrite_refuses_a_foreign_folder_and_keeps_its_files(tmp_path, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("\\chapter{Results}")
    with pytest.raises(ValueError) as info:
        generate_to_store(_standin, thesis, 4, overwrite=True, progress=False)
    message = str(info.value)
    assert message.startswith(f"{thesis}: refusing to overwrite it")
    assert "it holds files that are not ours: ['thesis.tex']" in message
    with pytest.raises(ValueError, match=f"{thesis}: refusing to overwrite it"):
        generate_splits(_standin, thesis, {"train": 2, "valid": 1}, overwrite=True,
                        progress=False)
    command = ["generate", "navier-stokes", "--samples", "1", "--out", str(thesis), *TINY_NS]
    assert main([*command, "--overwrite"]) == 2
    assert f"{thesis}: refusing to overwrite it" in capsys.readouterr().err
    assert main([*command, "--overwrite", "--valid", "1"]) == 2
    assert f"{thesis}: refusing to overwrite it" in capsys.readouterr().err
    assert _tree(thesis) == {"thesis.tex": b"\\chapter{Results}"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]  # no workspace left


def test_overwrite_refuses_foreign_netcdf_and_zarr_and_our_store_with_extra_files(tmp_path):
    foreign_nc = tmp_path / "foreign.nc"
    xr.Dataset({"t": ("x", np.arange(3.0))}).to_netcdf(foreign_nc, engine="h5netcdf")
    noise_nc = tmp_path / "noise.nc"
    noise_nc.write_bytes(np.random.default_rng(0).bytes(512))
    foreign_zarr = tmp_path / "foreign.zarr"
    xr.Dataset({"t": ("x", np.arange(3.0))}).to_zarr(foreign_zarr, consolidated=False)
    ours = _store(tmp_path / "ours.zarr")
    (ours / "notes.txt").write_text("mine")
    for path, reason in ((foreign_nc, "not a grepsnet-sciml dataset"),
                         (noise_nc, "not a readable zarr store or netCDF-4 file"),
                         (foreign_zarr, "not a grepsnet-sciml dataset"),
                         (ours, r"holds files that are not ours: \['notes.txt'\]")):
        before = _tree(path)
        with pytest.raises(ValueError, match=rf"{path}: refusing to overwrite it: .*{reason}"):
            generate_to_store(_standin, path, 4, seed=1, overwrite=True, progress=False)
        assert _tree(path) == before


def test_overwrite_replaces_our_store_nc_and_split_directory(tmp_path):
    for name in ("a.zarr", "a.nc"):
        path = _store(tmp_path / name, seed=0)
        generate_to_store(_standin, path, 6, seed=5, chunk_size=2, overwrite=True,
                          progress=False)
        assert open_dataset(path).vorticity.values[:, 0, 0, 0].tolist() == [5, 6, 7, 8, 9, 10]
    splits = tmp_path / "splits"
    generate_splits(_standin, splits, {"train": 2, "valid": 1}, progress=False)
    generate_splits(_standin, splits, {"train": 3}, overwrite=True, progress=False)
    assert list(open_splits(splits)) == ["train"]
    (splits / "thesis.tex").write_text("x")
    with pytest.raises(ValueError, match=r"holds files that are not ours: \['thesis.tex'\]"):
        generate_splits(_standin, splits, {"train": 2}, overwrite=True, progress=False)
    assert (splits / "thesis.tex").read_text() == "x"


# ----- a read-only output folder --------------------------------------------------------------
@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A folder in which nothing can be created (EROFS), as on a read-only mount; tests run
    as root here, which chmod cannot stop."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    real_mkdir, real_mkstemp = os.mkdir, __import__("tempfile").mkstemp

    def mkdir(path, *args, **kwargs):
        if Path(path).parent == folder:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, *args, **kwargs)

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == folder:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr("tempfile.mkstemp", mkstemp)
    return folder


def test_read_only_output_folder_is_named(read_only, capsys):
    with pytest.raises(PermissionError) as info:
        _store(read_only / "out.zarr")
    assert f"the folder {read_only} is not writable (Read-only file system)" in str(info.value)
    with pytest.raises(PermissionError, match=f"the folder {read_only} is not writable"):
        generate_splits(_standin, read_only / "splits", {"train": 2}, progress=False)
    out = read_only / "cli.zarr"
    assert main(["generate", "navier-stokes", "--samples", "1", "--out", str(out),
                 *TINY_NS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grepsnet generate: error: cannot create") and str(read_only) in err
    ds = charged_particles.generate(2, preset="clean", n_steps=200, record_every=100,
                                    progress=False)
    with pytest.raises(PermissionError, match=f"its folder {read_only} is not writable"):
        charged_particles.save_egnn_npy(ds, read_only, "train")
    assert list(read_only.iterdir()) == []


# ----- damaged chunks -------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_zarr_chunk_names_store_variable_and_chunk(tmp_path, damage):
    path = _store(tmp_path / "d.zarr")
    chunk = path / "vorticity" / "c" / "1" / "0" / "0" / "0"
    good = chunk.read_bytes()
    chunk.write_bytes(good[: len(good) // 2] if damage == "truncated"
                      else np.random.default_rng(1).bytes(len(good)))
    expected = rf"{path}: variable 'vorticity': cannot read chunk file\(s\) {chunk} \("
    ds = open_dataset(path)  # metadata are intact: opening works, reading names the chunk
    with pytest.raises(ValueError, match=expected):
        ds.vorticity.load()
    assert ds.vorticity.isel(sample=slice(0, 2)).values[:, 0, 0, 0].tolist() == [0, 1]
    layout = solver_data.field_layout(solver_data.open_dataset(path))
    with pytest.raises(ValueError, match=expected):
        solver_data.field_trajectories(solver_data.open_dataset(path), layout)
    with pytest.raises(ValueError, match=expected):
        solver_data.FieldWindows(path, t_in=1)


def test_damaged_chunks_through_splits_and_particle_pairs(tmp_path):
    splits = tmp_path / "splits"
    generate_splits(_standin, splits, {"train": 4, "valid": 2}, chunk_size=2, progress=False)
    chunk = splits / "valid.zarr" / "vorticity" / "c" / "0" / "0" / "0" / "0"
    chunk.write_bytes(b"")
    opened = open_splits(splits)
    assert float(opened["train"].vorticity.sum()) > 0
    with pytest.raises(ValueError, match=rf"valid.zarr: variable 'vorticity': .*{chunk}"):
        opened["valid"].vorticity.load()
    ds = charged_particles.generate(4, preset="clean", n_steps=200, record_every=100,
                                    progress=False)
    particles = generate_to_store(_particles, tmp_path / "p.zarr", 4, chunk_size=2,
                                  kwargs={"source": "clean"}, progress=False)
    np.testing.assert_array_equal(open_dataset(particles).position.values, ds.position.values)
    charge = particles / "charge" / "c" / "1" / "0"
    charge.write_bytes(charge.read_bytes()[:3])
    with pytest.raises(ValueError, match=rf"p.zarr: variable 'charge': .*{charge}"):
        solver_data.ParticlePairs(particles, input_frames=0, delta=1)


def _particles(n_samples, *, seed, first_sample=0, source="clean"):
    return charged_particles.generate(n_samples, preset=source, seed=seed,
                                      first_sample=first_sample, n_steps=200,
                                      record_every=100, progress=False)


@pytest.mark.parametrize("name, content, expected", [
    ("notes.txt", b"just text", "not a readable zarr store or netCDF-4 file"),
    ("empty.nc", b"", "not a readable zarr store or netCDF-4 file"),
    ("noise.nc", bytes(range(256)) * 4, "not a readable zarr store or netCDF-4 file"),
    ("foreign.zarr", None, "not a grepsnet-sciml dataset: attrs ['kind', 'group', "
                           "'representations'] missing"),
])
def test_foreign_files_given_as_data_are_named(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is None:
        xr.Dataset({"u": ("x", np.zeros(3))}).to_zarr(path, consolidated=False)
    else:
        path.write_bytes(content)
    for reader in (open_dataset, solver_data.open_dataset,
                   lambda p: solver_data.FieldWindows(p, t_in=1)):
        with pytest.raises(ValueError) as info:
            reader(path)
        assert str(info.value).startswith(f"{path}: ") and expected in str(info.value)
    assert not storage.workspace_of(path).exists()


# ----- grids the declared symmetry cannot act on ----------------------------------------------
@pytest.mark.parametrize("forcing", ["symmetric", "fno"])
def test_resolution_not_divisible_by_4_is_refused_for_named_forcings(forcing, capsys, tmp_path):
    with pytest.raises(ValueError) as info:
        ns.generate(1, forcing=forcing, resolution=30, sim_resolution=60, t_final=0.5,
                    record_every=0.25, progress=False)
    message = str(info.value)
    assert message.startswith("resolution: 30 is not divisible by 4")
    assert "shifts [(0.25" in message and "such as 28 or 32" in message
    preset = "ns-sym" if forcing == "symmetric" else "ns"
    with pytest.raises(ValueError, match="resolution: 30 is not divisible by 4"):
        ns.preset(preset, resolution=30, sim_resolution=30)
    out = tmp_path / "x.zarr"
    assert main(["generate", "navier-stokes", "--preset", preset, "--samples", "1",
                 "--resolution", "6", "--sim-resolution", "12", "--out", str(out),
                 "--t-final", "0.5", "--record-every", "0.25", "--no-progress"]) == 2
    assert "resolution: 6 is not divisible by 4" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_no_forcing_and_user_forcing_accept_any_even_resolution():
    free = ns.generate(1, forcing=None, resolution=6, t_final=0.5, record_every=0.25,
                       progress=False)
    assert free.vorticity.shape == (1, 2, 6, 6) and free.attrs["group"] == "D4()"
    user = ns.generate(1, forcing=np.zeros((10, 10)), resolution=10, t_final=0.5,
                       record_every=0.25, progress=False)
    assert user.attrs["group"] == "C1()"


# ----- modes of what is written ---------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_get_the_umask_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        store = _store(tmp_path / "d.zarr")
        nc = _store(tmp_path / "d.nc")
        splits = generate_splits(_standin, tmp_path / "s", {"train": 2}, progress=False)
        ds = charged_particles.generate(2, preset="clean", n_steps=200, record_every=100,
                                        progress=False)
        charged_particles.save_egnn_npy(ds, tmp_path / "npy", "train")
        with pytest.raises(RuntimeError):
            generate_to_store(_crash_late, tmp_path / "w.zarr", 4, chunk_size=2, progress=False)
    finally:
        os.umask(old)
    files = [*store.rglob("*"), nc, *(tmp_path / "s").rglob("*"), *(tmp_path / "npy").iterdir(),
             storage.workspace_of(tmp_path / "w.zarr") / storage.MANIFEST_NAME]
    modes = {stat.S_IMODE(f.stat().st_mode) for f in files if f.is_file()}
    assert modes == {0o666 & ~umask}
    folders = [store, tmp_path / "s", *splits.values(), storage.workspace_of(tmp_path / "w.zarr")]
    assert {stat.S_IMODE(f.stat().st_mode) for f in folders} == {0o777 & ~umask}


def _crash_late(n_samples, *, seed, first_sample=0):
    if first_sample >= 2:
        raise RuntimeError("simulated crash")
    return _standin(n_samples, seed=seed, first_sample=first_sample)


def test_generation_keeps_the_callers_thread_count():
    before = torch.get_num_threads()
    ns.generate(1, resolution=8, t_final=0.25, record_every=0.25, progress=False)
    assert torch.get_num_threads() == before
