"""No command destroys work it did not make; resume applies or refuses changed settings;
unreadable or unsafe checkpoints, wrong data and unwritable folders are clear errors;
outputs get the user's umask."""

import dataclasses
import json
import os
import pickle
import stat

import pytest
import torch
from test_solvers_data import toy_field_dataset, toy_particle_dataset

from grepsnet_sciml.cli import main
from grepsnet_sciml.solvers.config import config_from_dict
from grepsnet_sciml.solvers.experiment import load_model, train
from grepsnet_sciml.solvers.pipeline import JobConfig, evaluate_job, evaluation_summary
from grepsnet_sciml.solvers.plots import plot_error_vs_time
from grepsnet_sciml.solvers.registry import get_model
from grepsnet_sciml.solvers.trainer import RUN_MARKER, load_checkpoint, save_atomic


def _config(data, out, **changes):
    values = {
        "data": {"train": str(data), "t_in": 2, "valid_rollout_steps": 2},
        "model": {"name": "fno", "modes": 3, "width": 4, "n_layers": 1},
        "train": {"out_dir": str(out), "epochs": 2, "batch_size": 4, "lr": 3e-3,
                  "progress": False, "device": "cpu"},
    }
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        if (section, key) == ("model", "name"):  # keep only the fields that model has
            fields = {f.name for f in dataclasses.fields(get_model(value).config)}
            values["model"] = {k: v for k, v in values["model"].items() if k in fields}
        values[section][key] = value
    return config_from_dict(values)


@pytest.fixture(scope="module")
def field_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "heat.zarr"
    toy_field_dataset(n_samples=4, n_time=6, n=8).to_zarr(path, consolidated=False)
    return path


@pytest.fixture(scope="module")
def particle_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "free.zarr"
    toy_particle_dataset(n_samples=6, n_time=10).to_zarr(path, consolidated=False)
    return path


@pytest.fixture(scope="module")
def ns_run(tmp_path_factory):
    """A 1-epoch FNO on tiny NS-Sym data: (best.pt, test data) for the job commands."""
    from grepsnet_sciml.datasets import navier_stokes

    root = tmp_path_factory.mktemp("ns")
    paths = []
    for split, n, seed in (("train", 3, 0), ("test", 2, 1)):
        ds = navier_stokes.generate(n, "ns-sym", resolution=16, sim_resolution=16,
                                    viscosity=1e-3, t_final=4.0, record_every=1.0, seed=seed,
                                    progress=False)
        paths.append(root / f"{split}.zarr")
        ds.to_zarr(paths[-1], consolidated=False)
    train(_config(paths[0], root / "run", train__epochs=1, train__batch_size=2))
    return str(root / "run" / "best.pt"), str(paths[1])


@pytest.fixture(scope="module")
def finished(field_data, tmp_path_factory):
    """A finished 1-epoch run: (out_dir, {file: bytes})."""
    out = tmp_path_factory.mktemp("runs") / "done"
    train(_config(field_data, out, train__epochs=1))
    return out, _snapshot(out)


def _snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


# ---- 1. train never replaces a run it was not told to ---------------------------------
def test_train_refuses_a_used_out_dir_and_keeps_it(field_data, finished, capsys):
    out, before = finished
    with pytest.raises(FileExistsError, match=r"train.out_dir: .*done' already holds best.pt, "
                                              r"grepsnet-run.json, last.pt, metrics.jsonl; "
                                              r"nothing was touched. Pass resume=True"):
        train(_config(field_data, out, train__lr=0.1))
    assert _snapshot(out) == before
    assert main(["train", "--data.train", str(field_data), "--train.out_dir", str(out),
                 "--train.progress", "false", "--model.modes", "3", "--data.t_in", "2",
                 "--train.batch_size", "4"]) == 2
    assert "already holds best.pt" in capsys.readouterr().err and _snapshot(out) == before


def test_overwrite_replaces_only_a_grepsnet_run(field_data, tmp_path):
    out = tmp_path / "run"
    train(_config(field_data, out, train__epochs=1))
    old = load_checkpoint(out / "last.pt")["config"]["seed"]
    _, history = train(_config(field_data, out, train__epochs=1, train__seed=5),
                       overwrite=True)
    assert len(history) == 1 and load_checkpoint(out / "last.pt")["config"]["seed"] == 5 != old
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # not appended
    # a run folder holding a foreign file: nothing is removed
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    with pytest.raises(FileExistsError, match=r"holds entries no grepsnet training run "
                                              r"writes: notes.txt; nothing was removed"):
        train(_config(field_data, out), overwrite=True)
    assert _snapshot(out) == before
    # a folder that is no grepsnet run at all
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("text")
    with pytest.raises(FileExistsError, match=r"thesis': overwrite replaces only a run folder "
                                              r"written by grepsnet train, but it is not "
                                              r"marked as a grepsnet training run \(no "
                                              r"grepsnet-run.json\) and holds chapter1.tex"):
        train(_config(field_data, foreign), overwrite=True)
    assert (foreign / "chapter1.tex").read_text() == "text"
    assert os.listdir(foreign) == ["chapter1.tex"]


def test_read_only_output_folder_is_a_clear_error(field_data, ns_run, tmp_path, capsys,
                                                  monkeypatch):
    import errno
    import tempfile

    def read_only(*args, **kwargs):  # what a read-only file system answers (also as root)
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    code = main(["train", "--data.train", str(field_data), "--train.out_dir",
                 str(tmp_path / "run"), "--train.progress", "false", "--model.modes", "3",
                 "--data.t_in", "2", "--train.batch_size", "4"])
    err = capsys.readouterr().err
    assert code == 2 and "grepsnet train: error: cannot write" in err, err
    assert f"{tmp_path / 'run'} is not writable (Read-only file system)" in err
    ckpt, test = ns_run
    code = main(["evaluate", "--checkpoint", ckpt, "--data", test, "--out-dir",
                 str(tmp_path / "eval"), "--n-steps", "2", "--n-samples", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "grepsnet evaluate: error: cannot write" in err, err
    assert "Traceback" not in err


# ---- 2. resume applies or refuses changed settings --------------------------------------
def test_resume_applies_changed_lr_and_epochs(field_data, tmp_path, capsys):
    out = tmp_path / "run"
    train(_config(field_data, out, train__epochs=1))
    trainer, history = train(_config(field_data, out, train__epochs=3, train__lr=0.1),
                             resume=True)
    assert trainer.resume_note.endswith(
        "applying changed settings: train.epochs 1 -> 3, train.lr 0.003 -> 0.1")
    assert [r["epoch"] for r in history] == [2, 3]
    per_epoch = trainer.batches_per_epoch
    total = 3 * per_epoch
    import math

    # the new cosine: lr * (1 + cos(pi s / T)) / 2 with T = 3 epochs, lr = 0.1
    want = 0.1 * (1 + math.cos(math.pi * 2 * per_epoch / total)) / 2
    assert history[0]["lr"] == pytest.approx(want, rel=1e-9)
    assert history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["config"]["lr"] == 0.1 and ckpt["scheduler"]["T_max"] == total
    assert ckpt["optimizer"]["param_groups"][0]["initial_lr"] == 0.1
    # the CLI says so
    assert main(["train", "--data.train", str(field_data), "--data.t_in", "2",
                 "--data.valid_rollout_steps", "2", "--model.name", "fno", "--model.modes",
                 "3", "--model.width", "4", "--model.n_layers", "1", "--train.out_dir",
                 str(out), "--train.epochs", "4", "--train.lr", "0.1", "--train.batch_size",
                 "4", "--train.progress", "false", "--train.device", "cpu", "--resume"]) == 0
    assert "applying changed settings: train.epochs 3 -> 4" in capsys.readouterr().out


def test_resume_refuses_changed_model_data_and_run_settings(field_data, tmp_path, capsys):
    out = tmp_path / "run"
    train(_config(field_data, out, train__epochs=1))
    before = _snapshot(out)
    with pytest.raises(ValueError, match=r"resume: .*last.pt' was trained with other settings "
                                         r"than requested, which a resumed run cannot change: "
                                         r"data.t_in: stored 2, requested 3; model.width: "
                                         r"stored 4, requested 8; train.batch_size: stored 4, "
                                         r"requested 2"):
        train(_config(field_data, out, model__width=8, data__t_in=3, train__batch_size=2),
              resume=True)
    assert _snapshot(out) == before
    # through the CLI: a message, no load_state_dict traceback
    assert main(["train", "--data.train", str(field_data), "--data.t_in", "2",
                 "--data.valid_rollout_steps", "2", "--model.name", "fno", "--model.modes",
                 "3", "--model.width", "16", "--model.n_layers", "1", "--train.out_dir",
                 str(out), "--train.batch_size", "4", "--train.progress", "false",
                 "--train.device", "cpu", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "model.width: stored 4, requested 16" in err and "Traceback" not in err
    assert _snapshot(out) == before


def test_resume_accepts_the_same_data_given_by_a_relative_path(field_data, tmp_path,
                                                               monkeypatch):
    out = tmp_path / "run"
    train(_config(field_data, out, train__epochs=1))
    monkeypatch.chdir(field_data.parent)
    _, history = train(_config(field_data.name, out, train__epochs=2), resume=True)
    assert [r["epoch"] for r in history] == [2]
    with pytest.raises(ValueError, match=r"data.train: stored .*heat.zarr', requested "
                                         r"'other.zarr'"):
        train(_config("other.zarr", out, train__epochs=3), resume=True)


# ---- 4/5. checkpoints: corrupt, foreign or unsafe files are named -------------------------
class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("content", [b"", b"hello, I am a text file\n", os.urandom(4096),
                                     "truncated"], ids=["empty", "text", "random", "truncated"])
def test_unreadable_checkpoints_are_named(finished, tmp_path, content, capsys, field_data):
    out, before = finished
    path = tmp_path / "bad.pt"
    path.write_bytes(before["best.pt"][:2000] if content == "truncated" else content)
    with pytest.raises(ValueError, match=r"checkpoint: .*bad.pt' (is empty|is not a grepsnet "
                                         r"checkpoint or is corrupt)"):
        load_model(path)
    for command in ("rollout", "evaluate", "diagnose"):
        assert main([command, "--checkpoint", str(path), "--data", str(field_data),
                     "--out-dir", str(tmp_path / command)]) == 2
        err = capsys.readouterr().err
        assert "bad.pt" in err and "Traceback" not in err
    # the same file as last.pt of a run to resume
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match=r"checkpoint: .*run/last.pt'"):
        train(_config(field_data, run), resume=True)


def test_checkpoint_with_pickled_objects_is_refused(finished, tmp_path):
    out, _ = finished
    ckpt = load_checkpoint(out / "best.pt")
    ckpt["meta"]["payload"] = Payload()
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        torch.save(ckpt, f)
    with pytest.raises(ValueError, match=r"evil.pt' holds pickled Python objects other than "
                                         r"tensors and plain data, which could run code when "
                                         r"loaded; refused"):
        load_checkpoint(path)
    path.write_bytes(pickle.dumps({"model": {}, "config": {}, "x": Payload()}, protocol=2))
    with pytest.raises(ValueError, match="holds pickled Python objects|is not a grepsnet"):
        load_checkpoint(path)
    # what grepsnet writes loads with weights_only=True
    plain = torch.load(out / "best.pt", weights_only=True)
    assert isinstance(plain["config"], dict) and isinstance(plain["meta"]["experiment"], dict)


def test_checkpoint_and_data_of_other_kinds(finished, particle_data, field_data, tmp_path):
    out, _ = finished
    with pytest.raises(ValueError, match=r"data: .*free.zarr' holds particles data .*but "
                                         r"checkpoint .*best.pt' holds a field model \('fno'\)"):
        evaluate_job(JobConfig(checkpoint=str(out / "best.pt"), data=str(particle_data),
                               out_dir=str(tmp_path / "e"), n_steps=2))
    assert not (tmp_path / "e").exists()
    particles = _config(particle_data, tmp_path / "p", data__input_frames=[0, 1],
                        data__delta=3, model__name="mpnn", train__epochs=1)
    train(particles)
    with pytest.raises(ValueError, match=r"data: .*heat.zarr' holds field data .*but "
                                         r"checkpoint .*last.pt' holds a particles model "
                                         r"\('mpnn'\)"):
        evaluate_job(JobConfig(checkpoint=str(tmp_path / "p" / "last.pt"),
                               data=str(field_data), out_dir=str(tmp_path / "e"), n_steps=2))
    for name in ("fno", "grepsfno"):
        cfg = _config(particle_data, tmp_path / name, model__name=name,
                      data__input_frames=[0, 1], data__delta=3)
        with pytest.raises(ValueError, match=rf"model.name: '{name}' is a field model, but "
                                             r".*free.zarr' holds particles data"):
            train(cfg)
        assert not (tmp_path / name).exists()
    with pytest.raises(ValueError, match=r"model.name: 'egnn' is a particles model, but "
                                         r".*heat.zarr' holds field data"):
        train(_config(field_data, tmp_path / "egnn", model__name="egnn"))


@pytest.mark.parametrize("name,modes,bound", [("fno", 5, 4), ("grepsfno", 40, 4)])
def test_modes_too_large_for_the_grid(field_data, tmp_path, name, modes, bound):
    cfg = _config(field_data, tmp_path / "m", model__name=name, model__modes=modes)
    with pytest.raises(ValueError, match=rf"model.modes: {modes} is too large for the 8x8 grid "
                                         rf"of .*heat.zarr': '{name}' keeps the window "
                                         rf"\|k\| <= modes - 1, which must stay below "
                                         rf"Nyquist N/2 = {bound}; expected modes <= {bound}"):
        train(cfg)
    assert not (tmp_path / "m").exists()


def test_float64_data_into_a_float32_model(tmp_path):
    from grepsnet_sciml.solvers.trainer import TrainConfig, Trainer

    data = torch.utils.data.TensorDataset(torch.randn(8, 3, dtype=torch.float64),
                                          torch.randn(8, 1, dtype=torch.float64))
    trainer = Trainer(torch.nn.Linear(3, 1), data, TrainConfig(
        out_dir=str(tmp_path / "r"), epochs=1, batch_size=4, progress=False, device="cpu"))
    with pytest.raises(ValueError, match=r"train_set: items are torch.float64 but the model's "
                                         r"parameters are torch.float32"):
        trainer.fit()
    assert not (tmp_path / "r").exists()


# ---- 1/3. jobs: refuse existing results, report blow-ups ----------------------------------
def test_jobs_refuse_existing_results_and_overwrite_only_their_own(ns_run, tmp_path, capsys):
    ckpt, test = ns_run
    job = ["--checkpoint", ckpt, "--data", test, "--n-steps", "3", "--n-samples", "1"]
    eval_dir = tmp_path / "eval"
    assert main(["evaluate", *job, "--out-dir", str(eval_dir)]) == 0
    capsys.readouterr()
    (eval_dir / "mine.txt").write_text("keep")
    before = _snapshot(eval_dir)
    assert main(["evaluate", *job, "--out-dir", str(eval_dir)]) == 2
    assert "already holds evaluate results (evaluation.nc, error_vs_time.png" in \
        capsys.readouterr().err
    assert _snapshot(eval_dir) == before
    assert main(["evaluate", *job, "--out-dir", str(eval_dir), "--overwrite"]) == 0
    assert (eval_dir / "mine.txt").read_text() == "keep"
    # rollout into the same folder: its own output does not exist yet
    assert main(["rollout", *job, "--out-dir", str(eval_dir)]) == 0
    assert "rollout of 3 steps written to" in capsys.readouterr().out
    assert main(["rollout", *job, "--out-dir", str(eval_dir)]) == 2
    assert "already holds rollout results (rollout.zarr)" in capsys.readouterr().err
    assert main(["rollout", *job, "--out-dir", str(eval_dir), "--overwrite"]) == 0
    # a foreign rollout.zarr is never removed
    other = tmp_path / "other"
    (other / "rollout.zarr").mkdir(parents=True)
    (other / "rollout.zarr" / "data.bin").write_bytes(b"x")
    assert main(["rollout", *job, "--out-dir", str(other), "--overwrite"]) == 2
    assert "was not written by grepsnet rollout" in capsys.readouterr().err
    assert (other / "rollout.zarr" / "data.bin").read_bytes() == b"x"
    assert main(["diagnose", *job, "--n-steps", "1", "--out-dir", str(tmp_path / "d")]) == 0
    assert main(["diagnose", *job, "--n-steps", "1", "--out-dir", str(tmp_path / "d")]) == 2
    assert "already holds diagnose results (diagnostics.nc" in capsys.readouterr().err


def test_evaluate_reports_the_blow_up_guard(ns_run, tmp_path, capsys):
    path, test = ns_run
    ckpt = load_checkpoint(path)
    weights = ckpt["model"]
    for key, value in weights.items():  # a model that multiplies its input by about 1e4
        if value.is_floating_point() and "scale" not in key and "shift" not in key:
            weights[key] = value * 30
    save_atomic(ckpt, tmp_path / "wild.pt")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "wild.pt"), "--data",
                 test, "--out-dir", str(tmp_path / "e"), "--n-steps", "4",
                 "--n-samples", "2"]) == 0
    printed = capsys.readouterr().out
    assert "surrogate: blow-up guard: 2 of 2 samples blew up" in printed
    assert "rel_l2_rollout undefined: every sample blew up within the 4 steps" in printed
    assert "nan" not in printed.replace("NaN/Inf", "")
    import xarray as xr

    ev = xr.open_dataset(tmp_path / "e" / "evaluation.nc", engine="h5netcdf")
    assert (ev.blowup_step.values > 0).all() and "blew up" in ev.attrs["guard"]
    assert evaluation_summary(ev)[0].startswith("surrogate: blow-up guard")
    ev.close()


# ---- 6. modes follow the umask --------------------------------------------------------
def test_outputs_get_the_umask_mode(field_data, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        train(_config(field_data, out, train__epochs=1))
        import xarray as xr

        ev = xr.Dataset({"rel_l2": (("model", "sample", "time"), [[[0.1, 0.2]]])},
                        coords={"model": ["m"], "time": [1.0, 2.0]})
        plot_error_vs_time(ev, str(tmp_path / "fig"))
    finally:
        os.umask(old)
    for path in (out / "best.pt", out / "last.pt", out / "metrics.jsonl", out / RUN_MARKER,
                 tmp_path / "fig.png", tmp_path / "fig.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert json.loads((tmp_path / "fig.json").read_text())["metric"] == "rel_l2"
