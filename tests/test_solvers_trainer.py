"""Trainer: metrics, checkpoints, exact resume after SIGKILL, NaN guard, DDP, configs."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from test_solvers_data import toy_field_dataset, toy_particle_dataset

from grepsnet_sciml.solvers.config import (
    ExperimentConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    set_field,
)
from grepsnet_sciml.solvers.experiment import load_model, model_from_dataset, train
from grepsnet_sciml.solvers.trainer import (
    TrainConfig,
    Trainer,
    TrainingDiverged,
    load_checkpoint,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _field_config(data_path, out_dir, epochs=3):
    return config_from_dict({
        "data": {"train": str(data_path), "t_in": 2, "valid_rollout_steps": 3},
        "model": {"name": "fno", "modes": 4, "width": 8, "n_layers": 2},
        "train": {"out_dir": str(out_dir), "epochs": epochs, "batch_size": 4, "lr": 3e-3,
                  "progress": False, "device": "cpu", "seed": 3},
    })


@pytest.fixture(scope="module")
def field_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "heat.zarr"
    toy_field_dataset(n_samples=4, n_time=8, n=16).to_zarr(path, consolidated=False)
    return path


def _metrics(folder):
    return [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]


def _weights(path):
    return load_checkpoint(path)["model"]


def test_training_writes_metrics_and_checkpoints(field_data, tmp_path):
    cfg = _field_config(field_data, tmp_path / "run")
    trainer, history = train(cfg)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    lines = _metrics(tmp_path / "run")
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert all(r["valid_error"] > 0 for r in lines)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine down to 0
    best = min(r["valid_error"] for r in lines)
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt["best"] == best and ckpt["config"]["lr"] == 3e-3
    assert isinstance(ckpt["config"], dict) and ckpt["meta"]["kind"] == "field"
    assert not [f for f in os.listdir(tmp_path / "run") if f.startswith(".tmp")]
    # the model (with its normalization) is rebuilt from the checkpoint alone
    loaded = load_model(tmp_path / "run" / "last.pt")
    x = torch.randn(2, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), trainer.model.eval()(x), rtol=0, atol=0)
    assert loaded.model.in_norms[0].scale.item() == trainer.model.in_norms[0].scale.item() != 1


_KILL_SCRIPT = """
import os, signal, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_solvers_trainer import _field_config
from grepsnet_sciml.solvers.experiment import train

def kill(trainer, epoch, batch, loss):
    if epoch == 1 and batch == 1:
        os.kill(os.getpid(), signal.SIGKILL)

train(_field_config({data!r}, {out!r}), callbacks=[kill])
"""


def test_resume_after_sigkill_is_bit_identical(field_data, tmp_path):
    out = tmp_path / "killed"
    script = _KILL_SCRIPT.format(tests=os.path.join(ROOT, "tests"), data=str(field_data),
                                 out=str(out))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert load_checkpoint(out / "last.pt")["epoch"] == 1  # killed mid-way through epoch 2
    _, resumed = train(_field_config(field_data, out), resume=True)
    assert [r["epoch"] for r in resumed] == [2, 3]
    train(_field_config(field_data, tmp_path / "straight"))
    a, b = _weights(out / "last.pt"), _weights(tmp_path / "straight" / "last.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ka, kb = load_checkpoint(out / "last.pt"), load_checkpoint(tmp_path / "straight" / "last.pt")
    assert ka["optimizer"]["state"].keys() and ka["optimizer"]["state"].keys() == kb[
        "optimizer"]["state"].keys()
    for idx, state in ka["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, kb["optimizer"]["state"][idx][name]), (idx, name)
    assert torch.equal(ka["rng"]["torch"], kb["rng"]["torch"])
    assert torch.equal(ka["rng"]["numpy"]["keys"], kb["rng"]["numpy"]["keys"])
    assert ka["rng"]["python"] == kb["rng"]["python"]
    assert ka["scheduler"] == kb["scheduler"]


def test_nan_loss_stops_and_keeps_good_checkpoints(field_data, tmp_path):
    def poison(trainer, epoch, batch, loss):
        if epoch == 1 and batch == 1:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    cfg = _field_config(field_data, tmp_path / "nan")
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, batch 3.*last\.pt"):
        train(cfg, callbacks=[poison])
    best_before = (tmp_path / "nan" / "best.pt").read_bytes()
    last = load_checkpoint(tmp_path / "nan" / "last.pt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert (tmp_path / "nan" / "best.pt").read_bytes() == best_before
    assert len((tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()) == 1


def test_particle_training_and_reload(tmp_path):
    path = tmp_path / "p.zarr"
    toy_particle_dataset(n_samples=10, n_time=12).to_zarr(path, consolidated=False)
    cfg = config_from_dict({
        "data": {"train": str(path), "input_frames": [0, 2, 4], "delta": 2,
                 "valid_rollout_steps": 3},
        "model": {"hidden": 16, "n_layers": 2},
        "train": {"out_dir": str(tmp_path / "run"), "epochs": 2, "batch_size": 6,
                  "progress": False, "device": "cpu"},
    })
    trainer, history = train(cfg)
    assert len(history) == 2 and history[-1]["valid_error"] > 0
    loaded = load_model(tmp_path / "run" / "last.pt")
    assert loaded.kind == "particles" and loaded.layout is None
    x, v, q = torch.randn(2, 5, 3), torch.randn(2, 5, 3), torch.ones(2, 5, 1)
    with torch.no_grad():
        for a, b in zip(loaded.model(x, v, q), trainer.model.eval()(x, v, q)):
            assert torch.equal(a, b)


def test_valid_every_sets_the_evaluation_cadence(tmp_path):
    data = torch.utils.data.TensorDataset(torch.randn(8, 3), torch.randn(8, 1))
    calls = []

    def valid_fn(model):  # improves at every call, so best follows the validated epochs
        calls.append(trainer.epoch)
        return 1.0 / len(calls)

    cfg = TrainConfig(out_dir=str(tmp_path / "run"), epochs=7, batch_size=4, progress=False,
                      device="cpu", valid_every=3)
    trainer = Trainer(torch.nn.Linear(3, 1), data, cfg, valid_fn=valid_fn)
    history = trainer.fit()
    assert calls == [3, 6, 7]  # every 3rd epoch and the last one
    assert [("valid_error" in r) for r in history] == [False, False, True, False, False, True,
                                                        True]
    assert [r["best"] for r in history] == [math.inf] * 2 + [1.0] * 3 + [0.5, 1 / 3]
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 7
    with pytest.raises(ValueError, match="valid_every: expected a positive integer, got 0"):
        TrainConfig(valid_every=0)


def test_trainer_bad_input(tmp_path):
    data = torch.utils.data.TensorDataset(torch.randn(4, 3), torch.randn(4, 1))
    with pytest.raises(ValueError, match="batch_size: 8 exceeds the 4 training items"):
        Trainer(torch.nn.Linear(3, 1), data, TrainConfig(out_dir=str(tmp_path), batch_size=8))
    with pytest.raises(ValueError, match="optimizer: expected 'adam' or 'adamw', got 'sgd'"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="lr: expected a positive learning rate"):
        TrainConfig(lr=0.0)
    with pytest.raises(ValueError, match="loss: unknown loss"):
        TrainConfig(loss="l1")


def test_config_toml_round_trip_and_errors(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(textwrap.dedent("""
        [data]
        train = "x.zarr"
        variables = ["vorticity", "velocity"]
        [model]
        name = "fno"
        [train]
        lr = 1
        epochs = 4
    """))
    cfg = load_config(path)
    assert cfg.data.variables == ["vorticity", "velocity"] and cfg.train.lr == 1.0
    cfg = set_field(cfg, "train.batch_size", "32")
    cfg = set_field(cfg, "data.input_frames", "10,20")
    cfg = set_field(cfg, "train.progress", "false")
    assert (cfg.train.batch_size, cfg.data.input_frames, cfg.train.progress) == (32, [10, 20],
                                                                                 False)
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert ExperimentConfig() == config_from_dict({})
    with pytest.raises(ValueError, match="train.epoch: unknown setting"):
        config_from_dict({"train": {"epoch": 3}})
    with pytest.raises(ValueError, match="train.epochs: expected int, got 'three'"):
        config_from_dict({"train": {"epochs": "three"}})
    with pytest.raises(ValueError, match="optim: unknown section"):
        config_from_dict({"optim": {}})
    with pytest.raises(ValueError, match="train.lr: expected float, got 'fast'"):
        set_field(cfg, "train.lr", "fast")
    with pytest.raises(ValueError, match="train.nope: unknown setting"):
        set_field(cfg, "train.nope", "1")


_DDP_SCRIPT = """
import os, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_solvers_trainer import _field_config
from grepsnet_sciml.solvers.experiment import train
torch.distributed.init_process_group("gloo")
train(_field_config({data!r}, {out!r}, epochs=2))
torch.distributed.destroy_process_group()
"""


def test_ddp_two_processes_match_single_process(field_data, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT.format(tests=os.path.join(ROOT, "tests"),
                                         data=str(field_data), out=str(tmp_path / "ddp")))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with socket.socket() as sock:  # a free loopback port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={port}", str(script)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train(_field_config(field_data, tmp_path / "single", epochs=2))
    a, b = _weights(tmp_path / "ddp" / "last.pt"), _weights(tmp_path / "single" / "last.pt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    rows, single = _metrics(tmp_path / "ddp"), _metrics(tmp_path / "single")
    assert [r["train_loss"] for r in rows] == pytest.approx([r["train_loss"] for r in single],
                                                           rel=1e-5)


def test_model_from_dataset_reads_the_representations():
    from grepsnet_sciml import Reps
    from grepsnet_sciml.groups import D4, O

    fields = toy_field_dataset(velocity=True)
    fno = model_from_dataset(fields, t_in=3, variables=["vorticity", "velocity"], modes=2,
                             width=4, n_layers=1)
    assert fno.rep_in == Reps("3xT0p + 3xT1", D4()) and fno.rep_out == Reps("T0p + T1", D4())
    mpnn = model_from_dataset(toy_particle_dataset(), hidden=8, n_layers=1)
    assert mpnn.rep_out == (Reps("T1", O(3)), Reps("T1", O(3)))
    with pytest.raises(ValueError, match="model.name: unknown model 'unet'"):
        model_from_dataset(fields, "unet")
