"""``grepsnet import``: FNO .mat and EGNN .npy files into grepsnet stores."""

import json

import numpy as np
import scipy.io
import xarray as xr

from grepsnet_sciml.cli import main
from grepsnet_sciml.datasets import charged_particles
from grepsnet_sciml.datasets.contract import DatasetSpec
from grepsnet_sciml.datasets.loaders import load_fno_mat
from grepsnet_sciml.datasets.splits import open_splits
from grepsnet_sciml.datasets.storage import open_dataset
from grepsnet_sciml.solvers.data import field_layout


def _mat_file(path):
    rng = np.random.default_rng(0)
    u = rng.normal(size=(3, 8, 8, 2)).astype(np.float32)
    scipy.io.savemat(path, {"a": rng.normal(size=(3, 8, 8)).astype(np.float32), "u": u,
                            "t": np.array([1.0, 2.0])})
    return path


def test_fno_mat_becomes_a_store_with_the_contract(tmp_path, capsys):
    mat, out = _mat_file(tmp_path / "ns.mat"), tmp_path / "ns.zarr"
    args = ["import", "fno-mat", str(mat), "--out", str(out), "--forcing", "fno",
            "--viscosity", "1e-3", "--chunk-size", "2", "--no-progress"]
    assert main(args) == 0
    assert str(out) in capsys.readouterr().out
    ds = open_dataset(out)
    assert ds.vorticity.chunks[0] == (2, 1)
    expected = load_fno_mat(mat, "fno", viscosity=1e-3)
    np.testing.assert_array_equal(ds.vorticity.values, expected.vorticity.values)
    assert ds.time.values.tolist() == [0.0, 1.0, 2.0]
    assert ds.attrs["group"] == "D2('diagonal')" and ds.attrs["kind"] == "field"
    assert json.loads(ds.attrs["config"])["viscosity"] == 1e-3
    assert DatasetSpec.from_dataset(ds).kind == "field"
    assert field_layout(ds).variables == ("vorticity",)  # what grepsnet train reads
    with xr.open_zarr(out) as plain:  # consolidated metadata (warnings are errors)
        assert plain.sizes["sample"] == 3

    # an existing store is refused, and replaced with --overwrite
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args[:-5], "--forcing", "symmetric", "--no-initial", "--overwrite",
                 "--no-progress"]) == 0
    ds = open_dataset(out)
    assert ds.attrs["group"] == "D4()" and ds.time.values.tolist() == [1.0, 2.0]


def test_fno_mat_errors_name_the_argument(tmp_path, capsys):
    assert main(["import", "fno-mat", str(tmp_path / "missing.mat"), "--out",
                 str(tmp_path / "o.zarr"), "--forcing", "fno"]) == 2
    assert "missing.mat is not a file" in capsys.readouterr().err
    bad = tmp_path / "bad.mat"
    scipy.io.savemat(bad, {"v": np.zeros(3)})
    assert main(["import", "fno-mat", str(bad), "--out", str(tmp_path / "o.zarr"),
                 "--forcing", "fno"]) == 2
    assert "no variable 'u'" in capsys.readouterr().err
    assert not (tmp_path / "o.zarr").exists()


def test_egnn_npy_becomes_split_stores(tmp_path, capsys):
    files = tmp_path / "egnn"
    sources = {}
    for split, n in (("train", 3), ("valid", 2)):
        ds = charged_particles.generate(n, preset="egnn", n_steps=300, record_every=100,
                                        split=split, n_train=3, n_valid=2, seed=1,
                                        progress=False)
        charged_particles.save_egnn_npy(ds, files, split)
        sources[split] = ds
    out = tmp_path / "splits"
    args = ["import", "egnn-npy", str(files), "--out", str(out), "--chunk-size", "2",
            "--no-progress"]
    assert main(args) == 0
    stores = open_splits(out)
    assert list(stores) == ["train", "valid"]
    for split, ds in stores.items():
        np.testing.assert_array_equal(ds.position.values, sources[split].position.values)
        np.testing.assert_array_equal(ds.velocity.values, sources[split].velocity.values)
        np.testing.assert_array_equal(ds.charge.values, sources[split].charge.values)
        np.testing.assert_allclose(ds.time.values, sources[split].time.values)
        assert ds.attrs["split"] == split and ds.attrs["kind"] == "particles"
        assert ds.attrs["group"] == "O(3)"
    capsys.readouterr()
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_egnn_npy_without_files_is_an_error(tmp_path, capsys):
    assert main(["import", "egnn-npy", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "DIR: no loc_{train,valid,test}_charged5_initvel1small.npy" in err
    assert main(["import", "egnn-npy", str(tmp_path / "nope"), "--out", "o"]) == 2
    assert "DIR: expected a folder" in capsys.readouterr().err
