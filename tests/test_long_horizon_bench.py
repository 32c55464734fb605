"""``benchmarks.long_horizon``: two checkpoints beside the solver, measures read at each
horizon agree with ``evaluate_fields`` on the same rollouts."""

import json

import numpy as np
import pytest
import torch
import xarray as xr

from grepsnet_sciml.benchmarks import long_horizon
from grepsnet_sciml.cli import main
from grepsnet_sciml.solvers.data import field_trajectories, open_dataset
from grepsnet_sciml.solvers.evaluate import evaluate_fields
from grepsnet_sciml.solvers.experiment import load_model
from grepsnet_sciml.solvers.reference import navier_stokes_solver
from grepsnet_sciml.solvers.rollout import rollout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from grepsnet_sciml.datasets import navier_stokes

    root = tmp_path_factory.mktemp("long")
    paths = {}
    for split, n, seed in (("train", 5, 0), ("test", 3, 1)):
        ds = navier_stokes.generate(n, "ns-sym", resolution=16, sim_resolution=16,
                                    viscosity=1e-3, t_final=6.0, record_every=1.0, seed=seed,
                                    progress=False)
        paths[split] = root / f"{split}.zarr"
        ds.to_zarr(paths[split], consolidated=False)
    ckpts = {}
    for name, model in (("FNO", 'name = "fno"\nmodes = 4\nwidth = 8'),
                        ("GRepsFNO", 'name = "grepsfno"\nmodes = 4\nwidth = 1')):
        config = root / f"{name}.toml"
        config.write_text(f'[data]\ntrain = "{paths["train"]}"\nt_in = 2\n\n[model]\n{model}\n'
                          'n_layers = 1\n\n[train]\nepochs = 1\nbatch_size = 4\n'
                          'progress = false\n')
        out = root / name
        assert main(["train", str(config), "--train.out_dir", str(out)]) == 0
        ckpts[name] = out / "best.pt"
    return root, paths["test"], ckpts


def test_measures_match_evaluate_fields_at_each_horizon(trained):
    root, test, ckpts = trained
    result = long_horizon.run(ckpts, test, n_steps=8, horizons=[2, 8], n_samples=2,
                              out_dir=root / "out")
    assert [(r["model"], r["horizon"]) for r in result["rows"]] == [
        ("FNO", 2), ("FNO", 8), ("GRepsFNO", 2), ("GRepsFNO", 8)]
    ds = open_dataset(test)
    loaded = load_model(ckpts["GRepsFNO"])
    frames = field_trajectories(ds, loaded.layout, [0, 1], slice(0, 2))
    truth = navier_stokes_solver(ds, loaded.layout)(frames, 8)
    pred = rollout(loaded.model, frames, 8, layout=loaded.layout).states
    ev = evaluate_fields({"m": pred}, truth, times=np.arange(1.0, 9.0), spectrum_times=[1, 7])
    row = result["rows"][3]
    assert row["rel_l2"] == pytest.approx(float(ev.rel_l2.values[0, :, 7].mean()), rel=1e-6)
    assert row["spectrum_ratio_worst"] == pytest.approx(
        float(ev.spectrum_ratio_worst.values[0, 1]), rel=1e-6)
    shells = ev.spectrum_ratio.values[0, 1, 1 : frames.shape[-1] // 3 + 1]
    assert row["spectrum_ratio"] == pytest.approx(shells.tolist(), rel=1e-6)
    assert max(max(r, 1 / r) for r in row["spectrum_ratio"]) == pytest.approx(
        row["spectrum_ratio_worst"], rel=1e-6)
    assert row["solver_spectrum_ratio_worst_split"] == pytest.approx(
        float(ev.spectrum_ratio_worst_split.values[1]), rel=1e-6)
    assert row["solver_spectrum_ratio_worst_split"] == result["rows"][1][
        "solver_spectrum_ratio_worst_split"]  # the solver's, the same for every model
    assert row["energy_mean_true"] == pytest.approx(float(ev.energy_true.values[:, 7].mean()),
                                                    rel=1e-6)
    assert row["blow_ups"] == 0 and 0 <= row["energy_in_band"] <= 1
    saved = json.loads((root / "out" / "ns_long_horizon.json").read_text())
    assert saved["rows"] == result["rows"]
    assert (root / "out" / "ns_long_horizon_band.png").stat().st_size > 0
    assert "| GRepsFNO | 8 | 0/2 |" in (root / "out" / "ns_long_horizon.md").read_text()


def test_bad_horizons_and_empty_checkpoints_are_named(trained):
    root, test, ckpts = trained
    with pytest.raises(ValueError, match=r"horizons: \[20\] outside 1..n_steps = 8"):
        long_horizon.run(ckpts, test, n_steps=8, horizons=[20], out_dir=root / "bad")
    with pytest.raises(ValueError, match="checkpoints: expected at least one"):
        long_horizon.run({}, test, n_steps=8, horizons=[8], out_dir=root / "bad")


def test_stem_names_every_output_file(trained):
    root, test, ckpts = trained
    result = long_horizon.run({"FNO": ckpts["FNO"]}, test, n_steps=3, horizons=[3],
                              n_samples=1, out_dir=root / "stem", stem="late")
    names = sorted(p.name for p in (root / "stem").iterdir())
    assert names == ["late.json", "late.md", "late_band.json",
                     "late_band.png"]
    assert result["files"]["md"].endswith("late.md")


def test_the_energy_budget_head_is_put_on_at_load_and_every_step_obeys_the_budget(trained):
    root, test, ckpts = trained
    plain, budget = load_model(ckpts["GRepsFNO"]), load_model(ckpts["GRepsFNO"],
                                                              energy_budget=True)
    assert plain.model.head is None and budget.model.head is not None
    head = budget.model.head
    assert (head.viscosity, head.frame_time, head.forcing) == (1e-3, 1.0, "symmetric")
    ds = open_dataset(test)
    frames = field_trajectories(ds, budget.layout, [0, 1], slice(0, 2))
    states = rollout(budget.model, frames, 6, layout=budget.layout).states[:, :, 0].double()
    previous = torch.cat([frames[:, -1:, 0].double(), states[:, :-1]], 1)
    assert float(head.residual(previous, states).abs().max()) < 1e-4  # float32 rollout
    unbudgeted = rollout(plain.model, frames, 6, layout=plain.layout).states[:, :, 0].double()
    previous = torch.cat([frames[:, -1:, 0].double(), unbudgeted[:, :-1]], 1)
    assert float(head.residual(previous, unbudgeted).abs().max()) > 1e-3
    off = load_model(ckpts["GRepsFNO"], energy_budget=False)
    assert off.model.head is None
    result = long_horizon.run(ckpts, test, n_steps=3, horizons=[3], n_samples=1,
                              out_dir=root / "budget", energy_budget=["GRepsFNO"])
    assert [r["energy_budget"] for r in result["rows"]] == [False, True]
    with pytest.raises(ValueError, match=r"energy_budget: \['EGNN'\] are not among"):
        long_horizon.run(ckpts, test, n_steps=3, horizons=[3], out_dir=root / "bad",
                         energy_budget=["EGNN"])


def test_rollout_cli_takes_the_energy_budget_switch(trained):
    root, test, ckpts = trained
    for switch in ("on", "off"):
        out = root / f"cli_{switch}"
        assert main(["rollout", "--checkpoint", str(ckpts["GRepsFNO"]), "--data", str(test),
                     "--out-dir", str(out), "--n-steps", "3", "--n-samples", "1",
                     "--energy-budget", switch]) == 0
    on, off = (xr.open_zarr(root / f"cli_{s}" / "rollout.zarr") for s in ("on", "off"))
    assert not np.allclose(on["vorticity"].values, off["vorticity"].values)
    with pytest.raises(SystemExit):
        main(["rollout", "--checkpoint", str(ckpts["GRepsFNO"]), "--data", str(test),
              "--energy-budget", "yes"])


def test_steps_in_band_count_the_steps_whose_sample_mean_is_inside(trained):
    root, test, ckpts = trained
    result = long_horizon.run({"FNO": ckpts["FNO"]}, test, n_steps=4, horizons=[2, 4],
                              n_samples=2, out_dir=root / "steps")
    ds = open_dataset(test)
    loaded = load_model(ckpts["FNO"])
    frames = field_trajectories(ds, loaded.layout, [0, 1], slice(0, 2))
    truth = navier_stokes_solver(ds, loaded.layout)(frames, 4)
    pred = rollout(loaded.model, frames, 4, layout=loaded.layout).states
    ev = evaluate_fields({"m": pred}, truth, times=np.arange(1.0, 5.0), spectrum_times=[3])
    lo, hi = ev.energy_band.values
    mean = ev.energy.values[0].mean(0)
    for row, h in zip(result["rows"], (2, 4)):
        assert row["energy_steps_in_band"] == pytest.approx(
            float(np.mean((mean[:h] >= lo) & (mean[:h] <= hi))))
        solver = ev.enstrophy_true.values.mean(0)[:h]
        zlo, zhi = ev.enstrophy_band.values
        assert row["solver_enstrophy_steps_in_band"] == pytest.approx(
            float(np.mean((solver >= zlo) & (solver <= zhi))))


def test_test_error_is_the_ns_bench_metric_over_every_trajectory(trained):
    from grepsnet_sciml.benchmarks.ns import relative_l2_percent

    root, test, ckpts = trained
    result = long_horizon.run({"GRepsFNO": ckpts["GRepsFNO"]}, test, n_steps=2, horizons=[2],
                              n_samples=1, out_dir=root / "test_error", test_steps=3)
    ds = open_dataset(test)
    loaded = load_model(ckpts["GRepsFNO"])
    frames = field_trajectories(ds, loaded.layout, [0, 1, 2], slice(0, 5))
    pred = rollout(loaded.model, frames[:, :2], 3, layout=loaded.layout).states
    expected = relative_l2_percent(pred.double(), frames[:, 2:].double())
    assert result["rows"][0]["test_error"] == pytest.approx(expected, rel=1e-9)
    assert f"| {expected:.2f} |" in (root / "test_error" / "ns_long_horizon.md").read_text()
    with pytest.raises(ValueError, match="test_steps: 9 steps after 2 input frames need 11"):
        long_horizon.run({"GRepsFNO": ckpts["GRepsFNO"]}, test, n_steps=2, horizons=[2],
                         n_samples=1, out_dir=root / "bad", test_steps=9)
