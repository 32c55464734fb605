"""Registered equivariant models through the pipeline: train, checkpoint, reload, roll out."""

import json

import pytest
import torch
from test_solvers_data import toy_field_dataset, toy_particle_dataset

from grepsnet_sciml import Reps
from grepsnet_sciml.cli import main
from grepsnet_sciml.groups import C4, D4, O
from grepsnet_sciml.solvers.config import config_from_dict, config_to_dict
from grepsnet_sciml.solvers.experiment import load_model, model_from_dataset, train
from grepsnet_sciml.solvers.registry import REGISTRY, EGNNConfig, model_name
from grepsnet_sciml.solvers.rollout import rollout
from grepsnet_sciml.solvers.trainer import TrainConfig, load_checkpoint, save_atomic
from grepsnet_sciml.testing import FLOAT32_RTOL, assert_equivariant

FIELD_MODELS = {"grepsfno": Reps("2xT0p", D4()), "grepsfno-c4": Reps("2xT0p", C4()),
                "gfno-p4": Reps("2xT0", C4()), "gfno-p4m-pseudo": Reps("2xT0p", D4())}
"""Field models equivariant for the toy data's pseudo-scalar vorticity, with their rep_in
(over C4 a scalar and a pseudo-scalar transform alike)."""
PARTICLE_MODELS = ("grepsnbody", "egnn")


@pytest.fixture(scope="module")
def field_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "heat.zarr"
    toy_field_dataset(n_samples=4, n_time=6, n=12).to_zarr(path, consolidated=False)
    return path


@pytest.fixture(scope="module")
def particle_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "free.zarr"
    toy_particle_dataset(n_samples=6, n_time=10).to_zarr(path, consolidated=False)
    return path


def _field_config(name, data, out, **train):
    return config_from_dict({
        "data": {"train": str(data), "t_in": 2, "valid_rollout_steps": 2},
        "model": {"name": name, "modes": 3, "width": 2, "n_layers": 1},
        "train": {"out_dir": str(out), "epochs": 2, "batch_size": 4, "lr": 3e-3,
                  "progress": False, "device": "cpu", **train},
    })


def _particle_config(name, data, out, **train):
    return config_from_dict({
        "data": {"train": str(data), "input_frames": [0, 1, 2], "delta": 3,
                 "predict_velocity": True, "valid_rollout_steps": 2},
        "model": {"name": name, "hidden": 8, "n_layers": 1},
        "train": {"out_dir": str(out), "epochs": 2, "batch_size": 4, "lr": 3e-3,
                  "loss": "mse", "progress": False, "device": "cpu", **train},
    })


def test_every_model_is_registered():
    assert set(REGISTRY) == {"fno", "fno-aug", "grepsfno", "grepsfno-c4", "gfno-p4", "gfno-p4m",
                             "gfno-p4m-pseudo", "mpnn", "grepsnbody", "egnn"}
    assert {n: e.kind for n, e in REGISTRY.items() if e.kind == "particles"} == {
        "mpnn": "particles", "grepsnbody": "particles", "egnn": "particles"}


def _train_and_reload(cfg):
    trainer, history = train(cfg)
    assert len(history) == cfg.train.epochs
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in history)
    loaded = load_model(f"{cfg.train.out_dir}/last.pt", name=model_name(cfg.model))
    assert type(loaded.model.core) is type(trainer.model.core)
    return trainer.model.eval(), loaded


@pytest.mark.parametrize("name", FIELD_MODELS)
def test_field_model_trains_reloads_and_stays_equivariant(name, field_data, tmp_path):
    trained, loaded = _train_and_reload(_field_config(name, field_data, tmp_path / name))
    x = torch.randn(3, 2, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), trained(x), rtol=0, atol=0)
    # the trained normalization is in the checkpoint and keeps the symmetry
    assert loaded.model.in_norms[0].scale.item() != 1
    report = assert_equivariant(loaded.model, inputs=x, dtype=torch.float32)
    group = loaded.model.rep_in.group
    assert loaded.model.rep_in == FIELD_MODELS[name]
    assert len(report.rows) >= group.order and report.max_error < FLOAT32_RTOL
    # autoregressive rollout of the reloaded model commutes with the group
    frames = torch.randn(2, 2, 1, 12, 12)
    g = group.elements()[1]

    def act(frames):  # every frame is one pseudo-scalar field
        b, t = frames.shape[:2]
        return Reps(f"{t}xT0p", group).act(g, frames.reshape(b, t, 12, 12), grid=True).reshape(
            frames.shape)

    rolled = rollout(loaded.model, frames, 3, layout=loaded.layout).states
    rolled_moved = rollout(loaded.model, act(frames), 3, layout=loaded.layout).states
    torch.testing.assert_close(rolled_moved, act(rolled), rtol=1e-4,
                               atol=1e-4 * float(rolled.abs().max()))


def _orthogonal(seed):
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed)))
    return q


@pytest.mark.parametrize("name", PARTICLE_MODELS)
def test_particle_model_trains_reloads_and_rolls_out(name, particle_data, tmp_path):
    trained, loaded = _train_and_reload(_particle_config(name, particle_data, tmp_path / name))
    assert loaded.model.rep_out == (Reps("T1", O(3)), Reps("T1", O(3)))
    ds = toy_particle_dataset(n_samples=2, n_time=1, seed=5)
    x, v = (torch.tensor(ds[k].values[:, 0], dtype=torch.float32) for k in ("position",
                                                                          "velocity"))
    q = torch.tensor(ds.charge.values, dtype=torch.float32)[..., None]
    with torch.no_grad():
        for a, b in zip(loaded.model(x, v, q), trained(x, v, q)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    report = assert_equivariant(loaded.model, inputs=(x, v, q), dtype=torch.float32)
    assert report.passed and report.max_error < FLOAT32_RTOL
    # rollout uses the predicted velocities; rotating the start rotates the trajectory
    rot = _orthogonal(1)
    result = rollout(loaded.model, (x, v, q), 4, step_time=0.3)
    pos, vel = result.states
    pos_r, vel_r = rollout(loaded.model, (x @ rot.T, v @ rot.T, q), 4, step_time=0.3).states
    assert pos.shape == (2, 4, 5, 3) and result.valid_steps.tolist() == [4, 4]
    torch.testing.assert_close(pos_r, pos @ rot.T, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(vel_r, vel @ rot.T, rtol=1e-4, atol=1e-4)


def test_energy_head_keeps_the_energy_in_the_data_units_behind_normalization(particle_data,
                                                                             tmp_path):
    from grepsnet_sciml.models.energy import EnergyProjection, coulomb_energy
    cfg = _particle_config("grepsnbody", particle_data, tmp_path / "e")
    cfg = config_from_dict({**config_to_dict(cfg), "model": {
        **config_to_dict(cfg)["model"], "conserve_energy": True, "energy_softening": 0.1,
        "radial": "inverse"}})
    trained, loaded = _train_and_reload(cfg)
    model = loaded.model
    # the head sits outside the normalization; the core no longer applies it
    assert isinstance(model.head, EnergyProjection) and not model.core.conserve_energy
    scales = [float(n.scale.flatten()[0]) for n in model.in_norms[:2]]
    assert all(abs(sc - 1) > 1e-3 for sc in scales)  # a normalization that changes units
    ds = toy_particle_dataset(n_samples=3, n_time=1, seed=5)
    x, v = (torch.tensor(ds[k].values[:, 0]) for k in ("position", "velocity"))
    q = torch.tensor(ds.charge.values)[..., None]
    model = model.double()
    with torch.no_grad():
        x_out, v_out = model(x, v, q)
    e0, e1 = coulomb_energy(x, v, q[..., 0], 0.1), coulomb_energy(x_out, v_out, q[..., 0], 0.1)
    assert float(((e1 - e0) / e0).abs().max()) < 1e-12
    assert_equivariant(model, inputs=(x, v, q), dtype=torch.float64)


def test_checkpoint_of_another_model_or_reps_is_refused(particle_data, field_data, tmp_path):
    train(_particle_config("egnn", particle_data, tmp_path / "egnn", epochs=1))
    path = str(tmp_path / "egnn" / "last.pt")
    with pytest.raises(ValueError, match=r"holds a 'egnn' model \(EGNN\); expected 'grepsnbody'"):
        load_model(path, name="grepsnbody")
    train(_field_config("grepsfno", field_data, tmp_path / "gf", epochs=1))
    gpath = str(tmp_path / "gf" / "last.pt")
    with pytest.raises(ValueError, match=r"rep_in \['2xT0p'\] of D4\(\); expected \['3xT0p'\]"):
        load_model(gpath, rep_in=Reps("3xT0p", D4()))
    # weights of another model under this description
    ckpt = load_checkpoint(gpath)
    ckpt["model"] = load_checkpoint(path)["model"]
    save_atomic(ckpt, tmp_path / "swapped.pt")
    with pytest.raises(ValueError, match="do not fit the GRepsFNO2d"):
        load_model(tmp_path / "swapped.pt")
    # a description that the stored config does not rebuild
    ckpt = load_checkpoint(gpath)
    ckpt["meta"]["model"]["class"] = "GFNO2d"
    save_atomic(ckpt, tmp_path / "edited.pt")
    with pytest.raises(ValueError, match="describes"):
        load_model(tmp_path / "edited.pt")
    # the energy-budget head is the vorticity equation's: not for particles, nor for toy
    # fields whose generator config gives no viscosity
    with pytest.raises(ValueError, match="energy_budget: .* holds a particle model"):
        load_model(path, energy_budget=True)
    with pytest.raises(ValueError,
                       match=r"model.energy_budget: needs the data's \['record_every'\]"):
        load_model(gpath, energy_budget=True)
    assert load_model(gpath, energy_budget=False).model.head is None


def test_models_reject_data_of_the_wrong_kind(tmp_path):
    fields = toy_field_dataset(n_samples=1, n_time=3, n=8, velocity=True)
    with pytest.raises(ValueError, match="'gfno-p4m' takes frames of one scalar"):
        model_from_dataset(fields, "gfno-p4m", t_in=2, variables=["vorticity", "velocity"],
                           modes=2, width=2, n_layers=1)
    with pytest.raises(ValueError, match=r"model.name: unknown model 'gfno'"):
        model_from_dataset(fields, "gfno", t_in=2)
    with pytest.raises(ValueError, match=r"'egnn' maps \(positions T1"):
        REGISTRY["egnn"].builder(EGNNConfig(), Reps("2xT0p", D4()), Reps("T0p", D4()))
    with pytest.raises(ValueError, match="model.width: FNOConfig expects a positive number, "
                                         "got -1"):
        config_from_dict({"model": {"width": -1}})
    with pytest.raises(ValueError, match=r"'grepsfno-c4' works over C4\(\), which is not a "
                                         r"subgroup of the data's group D1\('x'\)"):
        model_from_dataset(fields.assign_attrs(group="D1('x')"), "grepsfno-c4", t_in=2,
                           modes=2, width=1, n_layers=1)


def test_gfno_p4m_takes_frames_as_scalars_and_its_pseudo_variant_as_pseudo_scalars():
    fields = toy_field_dataset(n_samples=1, n_time=3, n=8)
    scalar = model_from_dataset(fields, "GFNO-p4m", t_in=2, modes=2, width=1, n_layers=1)
    pseudo = model_from_dataset(fields, "gfno-p4m-pseudo", t_in=2, modes=2, width=1,
                                n_layers=1)
    assert (scalar.vorticity, scalar.rep_in) == ("scalar", Reps("2xT0", D4()))
    assert (pseudo.vorticity, pseudo.rep_in) == ("pseudoscalar", Reps("2xT0p", D4()))


def test_trainer_constant_schedule_and_time_budget(field_data, tmp_path):
    out = tmp_path / "budget"
    cfg = _field_config("gfno-p4", field_data, out, epochs=3, schedule="constant",
                        time_budget_s=1e-9)
    _, history = train(cfg)
    assert [r["epoch"] for r in history] == [1]  # stopped at the first epoch boundary
    assert history[0]["stopped"] == "time_budget" and history[0]["lr"] == 3e-3
    assert history[0]["elapsed"] > 0
    _, again = train(cfg, resume=True)  # the budget is used up: nothing more
    assert again == []
    cfg.train.time_budget_s = 1e6
    _, rest = train(cfg, resume=True)
    assert [r["epoch"] for r in rest] == [2, 3] and "stopped" not in rest[-1]
    assert rest[-1]["lr"] == 3e-3 and rest[-1]["elapsed"] > history[0]["elapsed"]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    for key, value in (("schedule", "linear"), ("time_budget_s", -1.0)):
        with pytest.raises(ValueError, match=key):
            TrainConfig(**{key: value})


def test_cli_trains_a_registered_model(particle_data, tmp_path, capsys):
    out = str(tmp_path / "cli")
    assert main(["train", "--data.train", str(particle_data), "--data.input_frames", "0,1",
                 "--data.delta", "3", "--model.name", "grepsnbody", "--model.hidden", "8",
                 "--model.n_layers", "1", "--train.epochs", "1", "--train.batch_size", "4",
                 "--train.progress", "false", "--train.out_dir", out]) == 0
    assert "trained 1 epochs" in capsys.readouterr().out
    assert type(load_model(f"{out}/best.pt", name="grepsnbody").model.core).__name__ == (
        "GRepsNBody")


def test_cli_diagnose_of_grepsfno_on_ns_sym(tmp_path, capsys):
    """Through ``grepsnet diagnose`` GRepsFNO commutes with NS-Sym's declared elements."""
    import xarray as xr

    from grepsnet_sciml.datasets import navier_stokes

    paths = []
    for split, n, seed in (("train", 3, 0), ("test", 1, 1)):
        ds = navier_stokes.generate(n, "ns-sym", resolution=16, sim_resolution=16,
                                    viscosity=1e-3, t_final=4.0, record_every=1.0, seed=seed,
                                    progress=False)
        paths.append(str(tmp_path / f"{split}.zarr"))
        ds.to_zarr(paths[-1], consolidated=False)
    out = str(tmp_path / "run")
    assert main(["train", "--data.train", paths[0], "--data.t_in", "2", "--model.name",
                 "grepsfno", "--model.modes", "3", "--model.width", "2", "--model.n_layers",
                 "1", "--train.epochs", "1", "--train.batch_size", "2", "--train.progress",
                 "false", "--train.out_dir", out]) == 0
    assert main(["diagnose", "--checkpoint", f"{out}/best.pt", "--data", paths[1],
                 "--out-dir", str(tmp_path / "diag"), "--n-steps", "2", "--n-samples",
                 "1"]) == 0
    diag = xr.open_dataset(tmp_path / "diag" / "diagnostics.nc", engine="h5netcdf")
    assert diag.sizes["element"] == 8  # D4 with NS-Sym's shifts
    assert float(diag.equivariance_error.sel(model="surrogate").max()) < 1e-10
    assert float(diag.equivariance_error.sel(model="solver").max()) < 1e-10
    diag.close()
    assert "largest equivariance error" in capsys.readouterr().out
