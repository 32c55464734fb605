"""The ``grepsnet train / rollout / evaluate / diagnose / demo`` commands on tiny real data."""

import json
import os

import numpy as np
import pytest
import xarray as xr

from grepsnet_sciml.cli import main


@pytest.fixture(scope="module")
def ns_data(tmp_path_factory):
    from grepsnet_sciml.datasets import navier_stokes

    root = tmp_path_factory.mktemp("cli")
    paths = []
    for split, n, seed in (("train", 5, 0), ("test", 2, 1)):
        ds = navier_stokes.generate(n, "ns-sym", resolution=16, sim_resolution=16,
                                    viscosity=1e-3, t_final=6.0, record_every=1.0, seed=seed,
                                    progress=False)
        path = root / f"{split}.zarr"
        ds.to_zarr(path, consolidated=False)
        paths.append(str(path))
    return root, paths


def test_train_evaluate_diagnose_rollout_commands(ns_data, capsys):
    root, (train, test) = ns_data
    config = root / "fno.toml"
    config.write_text(f'[data]\ntrain = "{train}"\nt_in = 2\n\n[model]\nname = "fno"\n'
                      'modes = 4\nwidth = 8\nn_layers = 2\n\n[train]\nepochs = 3\n'
                      'batch_size = 4\nprogress = false\n')
    out = str(root / "run")
    assert main(["train", str(config), "--train.out_dir", out, "--train.epochs", "1"]) == 0
    assert "trained 1 epochs" in capsys.readouterr().out
    ckpt = os.path.join(out, "best.pt")
    assert main(["train", str(config), "--train.out_dir", out, "--resume"]) == 0
    with open(os.path.join(out, "metrics.jsonl")) as f:
        assert [json.loads(x)["epoch"] for x in f] == [1, 2, 3]  # resumed, not restarted

    assert main(["evaluate", "--checkpoint", ckpt, "--data", test, "--out-dir",
                 str(root / "eval"), "--n-steps", "6", "--n-samples", "2"]) == 0
    ev = xr.open_dataset(root / "eval" / "evaluation.nc", engine="h5netcdf")
    assert ev.rel_l2.sizes == {"model": 1, "sample": 2, "time": 6}
    assert float(ev.rel_l2.min()) > 0
    ev.close()
    for name in ("error_vs_time", "snapshots", "spectra"):
        assert (root / "eval" / f"{name}.png").exists()
        assert (root / "eval" / f"{name}.json").exists()

    assert main(["diagnose", "--checkpoint", ckpt, "--data", test, "--out-dir",
                 str(root / "diag"), "--n-steps", "2", "--n-samples", "1"]) == 0
    diag = xr.open_dataset(root / "diag" / "diagnostics.nc", engine="h5netcdf")
    assert float(diag.equivariance_error.sel(model="solver").max()) < 1e-10
    assert float(diag.equivariance_error.sel(model="surrogate").max()) > 1e-6
    diag.close()

    assert main(["rollout", "--checkpoint", ckpt, "--data", test, "--out-dir",
                 str(root / "roll"), "--n-steps", "30", "--chunk", "7"]) == 0
    roll = xr.open_zarr(root / "roll" / "rollout.zarr")  # consolidated: no warning
    assert roll.vorticity.sizes == {"sample": 2, "time": 30, "x": 16, "y": 16}
    assert roll.valid_steps.values.tolist() == [30, 30]
    data = xr.open_zarr(test, consolidated=False)  # the fixture wrote it plainly
    # coordinates of the data, absolute times continuing from the last input frame
    np.testing.assert_array_equal(roll.x.values, data.x.values)
    np.testing.assert_array_equal(roll.sample.values, data.sample.values[:2])
    t_in, dt = 2, float(data.time[1] - data.time[0])
    assert float(roll.time[0]) == pytest.approx(float(data.time[t_in - 1]) + dt)
    assert roll.attrs["checkpoint"] == ckpt and roll.attrs["data"] == test
    assert roll.attrs["start_frame"] == t_in - 1 and roll.attrs["group"] == data.attrs["group"]
    assert roll.attrs["model"] in ("grepsfno", "fno", "gfno-p4")


def test_command_errors_name_the_problem(ns_data, capsys):
    root, (train, _) = ns_data
    assert main(["train", "--train.out_dir", str(root / "x")]) == 2
    assert "data.train: no training dataset given" in capsys.readouterr().err
    assert main(["train", "--data.train", train, "--train.epochs", "many"]) == 2
    assert "train.epochs: expected int, got 'many'" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(root / "none.pt"), "--data", train]) == 2
    assert "checkpoint: no file at" in capsys.readouterr().err
    assert main(["train", str(root / "missing.toml")]) == 2
    assert "config: no file at" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_small(tmp_path, capsys):
    assert main(["demo", "--small", "--quiet", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for header in ("== training GRepsFNO on NS-Sym", "== rolling out on NS-Sym",
                   "== evaluating on charged particles", "== diagnostics on charged particles"):
        assert header in printed
    table = [line.split() for line in printed.splitlines() if line.startswith(
        ("NS-Sym ", "particles "))]
    assert [row[1] for row in table] == ["GRepsFNO", "FNO", "GRepsNBody", "EGNN"]
    report = (tmp_path / "report.md").read_text()
    # every figure the demo wrote is linked from the report
    pngs = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.png"))
    assert "particles/transformed_test_error.png" in pngs and len(pngs) == 12
    assert "ns/energy_band.png" in pngs and "particles/conservation.png" in pngs
    for png in pngs:
        assert f"]({png})" in report, png
    assert "ns/equivariance_error.png" in report and (tmp_path / "ns" / "spectra.png").exists()
    assert "particles/trajectories.png" in report and "GRepsNBody" in report
    summary = json.loads((tmp_path / "summary.json").read_text())
    ns, particles = summary["navier_stokes"], summary["particles"]
    assert ns["solver"]["equivariance_error_last_step"] < 1e-10
    # GRepsFNO is exactly equivariant (float64 rollout); the FNO beside it is not
    assert ns["GRepsFNO"]["equivariance_error_last_step"] < 1e-10
    assert ns["FNO"]["equivariance_error_last_step"] > 1e-4
    for name in ("GRepsNBody", "EGNN"):
        assert len(particles[name]["position_mse_per_step"]) == 6
        assert max(particles[name]["equivariance_error_per_step"]) < 1e-10
    # the transformed-test rows are measured on the same test samples as the plain rows
    for part, n in ((ns, 2), (particles, 2)):
        for name in [m for m in part if m != "solver"]:
            assert part[name]["evaluated_samples"] == part[name]["diagnosed_samples"] == n
    with xr.open_dataset(tmp_path / "ns" / "diagnostics.nc", engine="h5netcdf") as diag:
        assert diag.attrs["n_samples"] == 2
    # the training horizon: 8 frames with 2 of history; 51 particle frames, 10 per step
    assert ns["FNO"]["training_horizon_steps"] == 6
    assert particles["EGNN"]["training_horizon_steps"] == 5
    assert particles["EGNN"]["position_mse_horizon"] == particles["EGNN"][
        "position_mse_per_step"][4]
    # every trained model's config is written beside its run, and is what was trained
    from grepsnet_sciml.solvers.config import load_config
    from grepsnet_sciml.solvers.experiment import load_model

    for part, run in (("ns", "train_grepsfno"), ("ns", "train_fno"),
                      ("particles", "train_grepsnbody"), ("particles", "train_egnn")):
        assert f"({part}/{run}.toml)" in report
        cfg = load_config(tmp_path / part / f"{run}.toml")
        assert cfg == load_model(str(tmp_path / part / run / "best.pt")).config
    # the data went through the resumable generate path: zarr stores with per-split seeds
    from grepsnet_sciml.datasets import navier_stokes
    from grepsnet_sciml.datasets.splits import split_seed
    from grepsnet_sciml.datasets.storage import open_dataset

    ns_train = open_dataset(tmp_path / "data" / "ns_sym_train.zarr")
    ns_test = open_dataset(tmp_path / "data" / "ns_sym_test.zarr")
    assert (ns_train.sizes["sample"], ns_test.sizes["sample"]) == (6, 2)
    expected = navier_stokes.generate(2, "ns-sym", resolution=16, sim_resolution=16,
                                      viscosity=1e-3, t_final=2.0, record_every=1.0,
                                      seed=split_seed(0, "test"), progress=False)
    assert (ns_test.vorticity.values == expected.vorticity.values).all()
    particles_test = open_dataset(tmp_path / "data" / "particles" / "test.zarr")
    assert particles_test.attrs["split"] == "test" and particles_test.sizes["sample"] == 2
