"""The example scripts run end to end at a tiny size and produce what they promise."""

import json
import os
import runpy
import sys

import pytest
import xarray as xr

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def _run(name, *args):
    argv = sys.argv
    sys.argv = [name, *args]
    try:
        runpy.run_path(os.path.join(EXAMPLES, name), run_name="__main__")
    finally:
        sys.argv = argv


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    data, out = str(root / "data"), str(root / "runs")
    _run("generate_data.py", "--out", data, "--resolution", "16", "--ns-samples", "5",
         "--frames", "6", "--particle-samples", "10")
    _run("train_surrogate.py", "--data", data, "--out", out, "--epochs", "1", "--t-in", "2")
    return data, out


def test_generate_and_train_examples(runs):
    data, out = runs
    ds = xr.open_zarr(os.path.join(data, "ns_sym_train.zarr"), consolidated=False)
    assert ds.vorticity.shape == (5, 6, 16, 16) and ds.attrs["group"] == "D4()"
    for model in ("fno", "mpnn"):
        with open(os.path.join(out, model, "metrics.jsonl")) as f:
            rows = f.read().splitlines()
        assert len(rows) == 1 and json.loads(rows[0])["valid_error"] > 0
        assert os.path.exists(os.path.join(out, model, "best.pt"))


def test_rollout_and_diagnostics_examples(runs, capsys):
    data, out = runs
    _run("rollout_far.py", "--data", data, "--runs", out, "--steps", "8")
    ev = xr.open_dataset(os.path.join(out, "fno", "eval", "evaluation.nc"), engine="h5netcdf")
    assert ev.rel_l2.sizes == {"model": 1, "sample": 2, "time": 8}
    ev.close()
    stream = xr.open_zarr(os.path.join(out, "fno", "eval", "rollout.zarr"), consolidated=False)
    assert stream.vorticity.sizes["time"] == 8
    _run("symmetry_diagnostics.py", "--data", data, "--runs", out, "--steps", "2")
    with open(os.path.join(out, "fno", "diagnose", "equivariance_error.json")) as f:
        diag = json.load(f)
    solver = diag["models"]["solver"]
    assert max(max(v) for v in solver.values()) < 1e-10  # the NS solver keeps D4 (+ shifts)
    assert "largest equivariance error" in capsys.readouterr().out
