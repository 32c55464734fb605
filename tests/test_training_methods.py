"""Training methods for long rollouts: unrolled loss, curriculum, pushforward, input noise."""

import dataclasses
import json
import math
import types

import pytest
import torch
from test_solvers_data import toy_field_dataset, toy_particle_dataset

from grepsnet_sciml.groups import D4
from grepsnet_sciml.solvers.config import (
    config_from_dict,
    load_config,
    save_config,
    set_field,
)
from grepsnet_sciml.solvers.data import FieldLayout, FieldWindows, ParticlePairs
from grepsnet_sciml.solvers.experiment import make_datasets, train
from grepsnet_sciml.solvers.losses import get_loss
from grepsnet_sciml.solvers.rollout import rollout
from grepsnet_sciml.solvers.trainer import TrainConfig, Trainer, load_checkpoint, resume_changes
from grepsnet_sciml.solvers.unroll import (
    FieldLoss,
    ParticleLoss,
    add_input_noise,
    curriculum_steps,
    noise_generator,
    unrolled_loss,
    unrolled_particle_loss,
)

TOL = 1e-6  # unrolled loss vs the hand-written rollout loop (float64: ~1e-15 in practice)
TWO_FIELDS = FieldLayout(("vorticity", "velocity"), ("T0p", "T1"), D4())  # C = 3
VORTICITY = FieldLayout(("vorticity",), ("T0p",), D4())


@pytest.fixture(scope="module")
def field_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("methods") / "heat.zarr"
    toy_field_dataset(n_samples=4, n_time=8, n=16).to_zarr(path, consolidated=False)
    return path


def _conv(c_in: int, c_out: int, seed: int = 0, dtype=torch.float64, scale: float = 0.3):
    torch.manual_seed(seed)
    model = torch.nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="circular").to(dtype)
    with torch.no_grad():
        model.weight.mul_(scale)
    return model


def _train_cfg(out_dir, **kw):
    return TrainConfig(**{"out_dir": str(out_dir), "epochs": 2, "batch_size": 4, "lr": 3e-3,
                          "progress": False, "device": "cpu", "seed": 5, **kw})


def _experiment(data_path, out_dir, **train):
    return config_from_dict({
        "data": {"train": str(data_path), "t_in": 2, "valid_rollout_steps": 2},
        "model": {"name": "fno", "modes": 3, "width": 4, "n_layers": 1},
        "train": {"out_dir": str(out_dir), "epochs": 1, "batch_size": 4, "lr": 3e-3,
                  "progress": False, "device": "cpu", "seed": 3, **train},
    })


def _losses():
    seen = []
    return seen, lambda trainer, epoch, batch, loss: seen.append(loss)


# ------------------------------------------------------------- K = 1 is today's path ----
def test_one_step_field_loss_reproduces_todays_training_bit_for_bit(field_data, tmp_path):
    windows = FieldWindows(field_data, t_in=2, t_out=1)
    runs = []
    for name, loss_step in (("plain", None), ("field", FieldLoss(windows.layout, 1))):
        seen, record = _losses()
        trainer = Trainer(_conv(2, 1, dtype=torch.float32), windows,
                          _train_cfg(tmp_path / name), callbacks=[record], loss_step=loss_step)
        history = trainer.fit()
        runs.append((seen, [r["train_loss"] for r in history], trainer.model.state_dict()))
    (plain, plain_rows, plain_w), (field, field_rows, field_w) = runs
    assert len(plain) == 2 * (len(windows) // 4)
    assert plain == field and plain_rows == field_rows  # every batch loss, exactly
    for key in plain_w:
        assert torch.equal(plain_w[key], field_w[key]), key


def test_experiment_without_the_options_trains_one_step(field_data, tmp_path):
    trainer, _ = train(_experiment(field_data, tmp_path / "run"))
    assert trainer.loss_step is None  # the Trainer's own loss, untouched
    _, windows, _, _ = make_datasets(_experiment(field_data, tmp_path / "x"))
    assert windows[0][1].shape[0] == 1 and len(windows) == 3 * (8 - 2 - 1 + 1)


# ------------------------------------------------------------- unrolled loss -----------
def _by_hand(model, frames, t_in, t_out, steps, layout, loss_fn):
    """Mean per-step loss of a loop over frames with rollout's rule ``w <- [w, M(w)][-t_in:]``."""
    window, losses = frames[:, :t_in], []
    for k in range(steps):
        pred = model(layout.pack(window))
        true = frames[:, t_in + k * t_out : t_in + (k + 1) * t_out]
        losses.append(loss_fn(pred, layout.pack(true)))
        window = torch.cat([window, layout.unpack(pred, t_out)], 1)[:, -t_in:]
    return sum(losses) / steps


def _gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return abs(float(a.detach()) - float(b.detach()))


def _frames(layout, n_frames, seed=1):
    return torch.randn(2, n_frames, layout.frame_channels, 8, 8, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("t_in, t_out", [(2, 2), (3, 1), (1, 2)])
@pytest.mark.parametrize("loss", ["mse", "relative_l2"])
def test_unrolled_loss_equals_a_loop_over_rollout_steps(t_in, t_out, loss):
    layout, steps = VORTICITY, 3
    model, loss_fn = _conv(t_in, t_out), get_loss(loss)
    frames = _frames(layout, t_in + steps * t_out)
    x, y = layout.pack(frames[:, :t_in]), layout.pack(frames[:, t_in:])

    got = unrolled_loss(model, x, y, layout=layout, t_out=t_out, steps=steps, loss_fn=loss_fn)

    states = rollout(model, frames[:, :t_in], steps * t_out, layout=layout,
                     growth_limit=1e30).states  # (B, K t_out, C, X, Y): rollout's own steps
    want = sum(loss_fn(layout.pack(states[:, k * t_out : (k + 1) * t_out]),
                       layout.pack(frames[:, t_in + k * t_out : t_in + (k + 1) * t_out]))
               for k in range(steps)) / steps
    assert _gap(got, want) < TOL
    assert _gap(got, _by_hand(model, frames, t_in, t_out, steps, layout, loss_fn)) < TOL
    # fewer steps use the first frames of a longer target (the curriculum)
    two = unrolled_loss(model, x, y, layout=layout, t_out=t_out, steps=2, loss_fn=loss_fn)
    assert _gap(two, _by_hand(model, frames, t_in, t_out, 2, layout, loss_fn)) < TOL


@pytest.mark.parametrize("t_in, t_out", [(2, 2), (3, 1), (1, 2)])
def test_unrolled_loss_slides_packed_multi_variable_windows(t_in, t_out):
    layout, steps, c = TWO_FIELDS, 3, TWO_FIELDS.frame_channels  # channel-major per variable
    model, loss_fn = _conv(t_in * c, t_out * c), get_loss("relative_l2")
    frames = _frames(layout, t_in + steps * t_out)
    x, y = layout.pack(frames[:, :t_in]), layout.pack(frames[:, t_in:])
    got = unrolled_loss(model, x, y, layout=layout, t_out=t_out, steps=steps, loss_fn=loss_fn)
    want = _by_hand(model, frames, t_in, t_out, steps, layout, loss_fn)
    assert _gap(got, want) < TOL


def test_unrolled_loss_of_one_step_is_the_plain_loss_and_bad_targets_are_named():
    model, loss_fn = _conv(2, 1), get_loss("relative_l2")
    x, y = torch.randn(3, 2, 8, 8, dtype=torch.float64), torch.randn(3, 1, 8, 8,
                                                                      dtype=torch.float64)
    one = unrolled_loss(model, x, y, layout=VORTICITY, t_out=1, steps=1, loss_fn=loss_fn)
    assert torch.equal(one, loss_fn(model(x), y))
    with pytest.raises(ValueError, match=r"target: expected \(batch, n \* 1, X, Y\) with n >= "
                                         r"steps = 2"):
        unrolled_loss(model, x, y, layout=VORTICITY, t_out=1, steps=2, loss_fn=loss_fn)
    with pytest.raises(ValueError, match="steps: expected a positive integer, got 0"):
        unrolled_loss(model, x, y, layout=VORTICITY, t_out=1, steps=0, loss_fn=loss_fn)


# ------------------------------------------------------------- pushforward -------------
def test_pushforward_gradients_are_those_of_the_last_step_with_earlier_steps_detached():
    layout, t_in, t_out, steps = TWO_FIELDS, 2, 1, 3
    c = layout.frame_channels
    model, loss_fn = _conv(t_in * c, t_out * c), get_loss("relative_l2")
    frames = _frames(layout, t_in + steps * t_out, seed=2)
    x, y = layout.pack(frames[:, :t_in]), layout.pack(frames[:, t_in:])

    loss = unrolled_loss(model, x, y, layout=layout, t_out=t_out, steps=steps,
                         loss_fn=loss_fn, pushforward=True)
    loss.backward()
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    # by hand: steps 1 .. K-1 detached, then the last step
    window = frames[:, :t_in]
    for _ in range(steps - 1):
        pred = model(layout.pack(window)).detach()
        window = torch.cat([window, layout.unpack(pred, t_out)], 1)[:, -t_in:]
    last = loss_fn(model(layout.pack(window)), layout.pack(frames[:, -t_out:]))
    last.backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    assert _gap(loss, last) < TOL
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)

    full = unrolled_loss(model, x, y, layout=layout, t_out=t_out, steps=steps, loss_fn=loss_fn)
    full.backward()  # the full unroll backpropagates through every step: other gradients
    assert not torch.allclose(model.weight.grad, want[0])


# ------------------------------------------------------------- input noise -------------
def test_zero_noise_is_the_identity():
    x = torch.randn(2, 3, 8, 8)
    assert add_input_noise(x, 0.0, noise_generator(0, 0)) is x


def test_noise_std_is_level_times_the_rms_of_each_sample():
    scales = torch.tensor([0.5, 1.0, 4.0])
    x = 1.0 + torch.randn(3, 4, 128, 128, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(0)) * scales[:, None, None,
                                                                               None]
    before = x.clone()
    noisy = add_input_noise(x, 0.05, noise_generator(7, 11))
    assert torch.equal(x, before)  # not in place
    rms = x.pow(2).flatten(1).mean(1).sqrt()
    noise = (noisy - x).flatten(1)
    # 65536 draws per sample: relative error of the std ~ 1/sqrt(2 n) = 0.3 %
    torch.testing.assert_close(noise.std(1), 0.05 * rms, rtol=0.02, atol=0)
    assert (noise.mean(1).abs() < 5 * 0.05 * rms / 256).all()
    assert abs(float(torch.corrcoef(noise[:2])[0, 1])) < 0.02  # independent across samples


def test_noise_is_reproducible_per_seed_and_step():
    x = torch.randn(2, 2, 16, 16)
    a = add_input_noise(x, 0.1, noise_generator(3, 4))
    assert torch.equal(a, add_input_noise(x, 0.1, noise_generator(3, 4)))
    for other in (noise_generator(3, 5), noise_generator(4, 4), noise_generator(3, 4, rank=1)):
        assert not torch.equal(a, add_input_noise(x, 0.1, other))


def test_field_loss_adds_noise_to_the_inputs_only():
    seen = {}

    def model(x):
        seen["x"] = x
        return x[:, -1:]

    def loss_fn(pred, target):
        seen["target"] = target
        return (pred - target).pow(2).mean()

    trainer = types.SimpleNamespace(config=TrainConfig(seed=9, progress=False), step=4, rank=0,
                                    epoch=0, ddp_model=model, loss_fn=loss_fn)
    x, y = torch.randn(2, 2, 8, 8), torch.randn(2, 1, 8, 8)
    x0, y0 = x.clone(), y.clone()
    FieldLoss(VORTICITY, 1, input_noise=0.1)(trainer, x, y)
    want = add_input_noise(x0, 0.1, noise_generator(9, 4))
    assert torch.equal(seen["x"], want) and not torch.equal(seen["x"], x0)
    assert seen["target"] is y and torch.equal(y, y0) and torch.equal(x, x0)


def test_noisy_unrolled_training_resumes_exactly(field_data, tmp_path):
    windows = FieldWindows(field_data, t_in=2, t_out=2)
    loss = FieldLoss(windows.layout, 1, unroll_steps=2, input_noise=0.05)
    kw = {"schedule": "constant", "unroll_steps": 2, "input_noise": 0.05}
    straight = Trainer(_conv(2, 1, dtype=torch.float32), windows,
                       _train_cfg(tmp_path / "a", **kw), loss_step=loss)
    straight.fit()
    Trainer(_conv(2, 1, dtype=torch.float32), windows, _train_cfg(tmp_path / "b", epochs=1, **kw),
            loss_step=loss).fit()
    resumed = Trainer(_conv(2, 1, seed=1, dtype=torch.float32), windows,
                      _train_cfg(tmp_path / "b", **kw), loss_step=loss)
    resumed.fit(resume=True)
    assert "train.epochs 1 -> 2" in resumed.resume_note
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


# ------------------------------------------------------------- curriculum --------------
def test_curriculum_grows_from_one_to_unroll_steps():
    assert [curriculum_steps(e, 5, 3) for e in range(1, 6)] == [1, 1, 2, 2, 3]
    assert [curriculum_steps(e, 3, 4) for e in range(1, 4)] == [1, 2, 4]
    assert curriculum_steps(1, 1, 4) == 4  # one epoch: the last epoch's K
    loss = FieldLoss(VORTICITY, 1, unroll_steps=3, curriculum=True)
    assert [loss.steps_at(e, 3) for e in (1, 2, 3)] == [1, 2, 3]
    assert FieldLoss(VORTICITY, 1, unroll_steps=3).steps_at(1, 3) == 3


def test_trainer_unrolls_the_curriculum_steps_per_epoch(field_data, tmp_path):
    windows = FieldWindows(field_data, t_in=2, t_out=3)  # K = 3, t_out = 1
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = _conv(2, 1, dtype=torch.float32)

        def forward(self, x):
            calls.append(x.shape[0])
            return self.conv(x)

    ends = {}  # epoch -> model calls so far, after its last batch
    trainer = Trainer(Counting(), windows, _train_cfg(tmp_path, epochs=3, unroll_steps=3,
                                                      unroll_curriculum=True),
                      loss_step=FieldLoss(windows.layout, 1, 3, curriculum=True),
                      callbacks=[lambda t, e, b, v: ends.__setitem__(e, len(calls))])
    trainer.fit()
    batches = len(windows) // 4
    per_epoch = [ends[0], ends[1] - ends[0], ends[2] - ends[1]]
    assert per_epoch == [batches * k for k in (1, 2, 3)]  # K = 1, 2, 3 model steps per batch


# ------------------------------------------------------------- experiment & configs ----
def test_make_datasets_carries_unroll_steps_times_t_out_frames(field_data, tmp_path):
    _, windows, _, _ = make_datasets(_experiment(field_data, tmp_path, unroll_steps=3))
    x, y = windows[0]
    assert x.shape[0] == 2 and y.shape[0] == 3  # 3 steps of t_out = 1 frame
    assert len(windows) == 3 * (8 - 2 - 3 + 1)  # fewer windows fit
    cfg = _experiment(field_data, tmp_path, unroll_steps=3)
    cfg.data.augment = "C4"  # every frame of the unrolled target moves with its input
    _, augmented, _, _ = make_datasets(cfg)
    assert augmented[0][1].shape == (3, 16, 16) and len(augmented) == len(windows)
    with pytest.raises(ValueError, match=r"train.unroll_steps: 7 steps of t_out = 1 frames "
                                         r"after t_in = 2 need windows of 9 frames.*"
                                         r"expected unroll_steps <= 6"):
        make_datasets(_experiment(field_data, tmp_path, unroll_steps=7))


def test_unrolled_run_stores_its_settings_and_refuses_a_changed_k_on_resume(field_data,
                                                                           tmp_path):
    cfg = _experiment(field_data, tmp_path / "run", unroll_steps=2, pushforward=True,
                      input_noise=0.01)
    trainer, history = train(cfg)
    assert isinstance(trainer.loss_step, FieldLoss) and trainer.loss_step.pushforward
    assert math.isfinite(history[0]["train_loss"])
    stored = load_checkpoint(tmp_path / "run" / "last.pt")["config"]
    assert (stored["unroll_steps"], stored["pushforward"], stored["input_noise"]) == (2, True,
                                                                                      0.01)
    more = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, unroll_steps=3))
    with pytest.raises(ValueError, match=r"train.unroll_steps: stored 2, requested 3"):
        train(more, resume=True)
    noisier = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, input_noise=0.02,
                                                                 epochs=2))
    trainer, history = train(noisier, resume=True)  # a regularizer: applied like weight_decay
    assert "train.input_noise 0.01 -> 0.02" in trainer.resume_note
    assert [r["epoch"] for r in history] == [2]


def test_checkpoints_without_the_new_settings_resume_unchanged():
    old = dataclasses.asdict(TrainConfig())
    for key in ("unroll_steps", "unroll_curriculum", "pushforward", "input_noise"):
        del old[key]
    assert resume_changes(old, TrainConfig()) == []
    assert resume_changes(old, TrainConfig(unroll_steps=2)) == [("unroll_steps", 1, 2)]


def test_particle_data_refuses_field_only_methods(tmp_path):
    path = tmp_path / "p.zarr"
    toy_particle_dataset().to_zarr(path, consolidated=False)
    base = {"data": {"train": str(path), "input_frames": [0, 1], "delta": 3},
            "train": {"out_dir": str(tmp_path / "run")}}
    for data_settings, train_settings, message in (
            ({"predict_velocity": True}, {"input_noise": 0.1},
             "train.input_noise: applies to field data only; got 0.1"),
            ({"predict_velocity": False}, {"unroll_steps": 3},
             "train.unroll_steps: an unrolled particle loss feeds "
             "predicted velocities back, so it needs data.predict_velocity = true"),
            ({"predict_velocity": True}, {"unroll_steps": 4},
             r"input_frames: frame 0 \+ 4 x delta 3 is outside the 12 frames")):
        cfg = config_from_dict({"data": {**base["data"], **data_settings},
                                "train": {**base["train"], **train_settings}})
        with pytest.raises(ValueError, match=message):
            make_datasets(cfg)


def _particle_model():
    from grepsnet_sciml.models import GRepsNBody
    torch.manual_seed(0)
    return GRepsNBody(hidden=8, vectors=2, tensors=1, n_layers=1, velocity_output=True).double()


def test_particle_pairs_carry_the_states_k_strides_ahead():
    ds = toy_particle_dataset()
    pairs = ParticlePairs(ds, [0, 2], 3, predict_velocity=True, steps=3, dtype=torch.float64)
    (x, v, q), (xs, vs) = pairs[1]  # sample 0, input frame 2
    assert xs.shape == vs.shape == (3, 5, 3)
    for k in range(3):
        assert torch.equal(xs[k], torch.as_tensor(ds.position.values[0, 2 + 3 * (k + 1)]))
        assert torch.equal(vs[k], torch.as_tensor(ds.velocity.values[0, 2 + 3 * (k + 1)]))
    one = ParticlePairs(ds, [0, 2], 3, predict_velocity=True, dtype=torch.float64)
    assert torch.equal(one[1][1][0], xs[0]) and torch.equal(x, one[1][0][0])
    with pytest.raises(ValueError, match="steps: 2 unrolled steps need predict_velocity"):
        ParticlePairs(ds, 0, 3, steps=2)
    with pytest.raises(ValueError, match="steps: expected a positive integer"):
        ParticlePairs(ds, 0, 3, predict_velocity=True, steps=0)


def test_unrolled_particle_loss_matches_the_rollout_loop():
    ds = toy_particle_dataset()
    pairs = ParticlePairs(ds, 0, 3, predict_velocity=True, steps=3, dtype=torch.float64)
    inputs, (xs, vs) = next(iter(torch.utils.data.DataLoader(pairs, batch_size=6)))
    model, mse = _particle_model(), get_loss("mse")
    x, v, q = inputs
    expected = []
    for k in range(3):
        x, v = model(x, v, q)
        expected.append(mse(x, xs[:, k]) + mse(v, vs[:, k]))
    loss = unrolled_particle_loss(model, inputs, (xs, vs), steps=3, loss_fn=mse)
    assert abs(loss.item() - (sum(expected) / 3).item()) < 1e-12
    one = unrolled_particle_loss(model, inputs, (xs, vs), steps=1, loss_fn=mse)
    assert one.item() == expected[0].item()
    push = unrolled_particle_loss(model, inputs, (xs, vs), steps=3, loss_fn=mse,
                                  pushforward=True)
    assert abs(push.item() - expected[2].item()) < 1e-12
    # pushforward: the gradient flows through the last step only
    model.zero_grad()
    push.backward()
    grad_push = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with torch.no_grad():
        x1, v1 = model(*inputs)
        x2, v2 = model(x1, v1, q)
    x3, v3 = model(x2, v2, q)
    (mse(x3, xs[:, 2]) + mse(v3, vs[:, 2])).backward()
    for a, p in zip(grad_push, model.parameters()):
        assert torch.allclose(a, p.grad, rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="target: expected .* with n >= steps = 4"):
        unrolled_particle_loss(model, inputs, (xs, vs), steps=4, loss_fn=mse)


def test_unrolled_particle_loss_is_invariant_under_e3_and_permutations():
    from grepsnet_sciml.groups import O
    ds = toy_particle_dataset()
    pairs = ParticlePairs(ds, 0, 3, predict_velocity=True, steps=2, dtype=torch.float64)
    (x, v, q), (xs, vs) = next(iter(torch.utils.data.DataLoader(pairs, batch_size=6)))
    model, mse = _particle_model(), get_loss("mse")
    g = O(3).sample(1, generator=torch.Generator().manual_seed(3))[0]
    shift, perm = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64), torch.randperm(5)
    moved = ((x @ g.T + shift)[:, perm], (v @ g.T)[:, perm], q[:, perm])
    target = ((xs @ g.T + shift)[:, :, perm], (vs @ g.T)[:, :, perm])
    a = unrolled_particle_loss(model, (x, v, q), (xs, vs), steps=2, loss_fn=mse)
    b = unrolled_particle_loss(model, moved, target, steps=2, loss_fn=mse)
    assert abs(a.item() - b.item()) <= 1e-10 * a.item()


def test_particle_runs_train_unrolled_from_the_config(tmp_path):
    path = tmp_path / "p.zarr"
    toy_particle_dataset().to_zarr(path, consolidated=False)
    cfg = config_from_dict({
        "data": {"train": str(path), "input_frames": [0, 1], "delta": 3,
                 "predict_velocity": True},
        "model": {"name": "grepsnbody", "hidden": 8, "vectors": 2, "tensors": 1,
                  "n_layers": 1},
        "train": {"out_dir": str(tmp_path / "run"), "epochs": 2, "batch_size": 4,
                  "progress": False, "unroll_steps": 2, "unroll_curriculum": True}})
    trainer, history = train(cfg)
    assert isinstance(trainer.loss_step, ParticleLoss)
    assert trainer.loss_step.steps_at(1, 2) == 1 and trainer.loss_step.steps_at(2, 2) == 2
    assert len(history) == 2 and all(math.isfinite(r["train_loss"]) for r in history)


def test_toml_round_trip_and_command_line_keep_the_options(tmp_path):
    cfg = config_from_dict({"data": {"train": "d.zarr"},
                            "train": {"unroll_steps": 4, "unroll_curriculum": True,
                                      "pushforward": True, "input_noise": 0.02}})
    text = save_config(cfg, tmp_path / "c.toml")
    assert "unroll_steps = 4" in text and "pushforward = true" in text
    assert load_config(tmp_path / "c.toml") == cfg
    cfg = set_field(config_from_dict({}), "train.unroll_steps", "2")
    cfg = set_field(cfg, "train.pushforward", "true")
    cfg = set_field(cfg, "train.input_noise", "1e-2")
    assert (cfg.train.unroll_steps, cfg.train.pushforward, cfg.train.input_noise) == (2, True,
                                                                                      0.01)
    assert config_from_dict({"train": {"input_noise": 0}}).train.input_noise == 0.0


@pytest.mark.parametrize("settings, message", [
    ({"unroll_steps": 0}, "unroll_steps: expected a positive integer .* got 0"),
    ({"unroll_steps": 2.0}, "unroll_steps: expected a positive integer .* got 2.0"),
    ({"unroll_steps": True}, "unroll_steps: expected a positive integer .* got True"),
    ({"pushforward": True}, "pushforward: needs unroll_steps > 1 .* unroll_steps=1"),
    ({"unroll_curriculum": True}, "unroll_curriculum: needs unroll_steps > 1"),
    ({"unroll_steps": 2, "pushforward": "yes"}, "pushforward: expected true or false, got "
                                                "'yes'"),
    ({"input_noise": -0.1}, r"input_noise: expected a finite number >= 0 .* got -0.1"),
    ({"input_noise": math.nan}, "input_noise: expected a finite number >= 0 .* got nan"),
    ({"input_noise": math.inf}, "input_noise: expected a finite number >= 0 .* got inf"),
])
def test_bad_values_name_the_setting(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


def test_toml_types_are_checked():
    with pytest.raises(ValueError, match="train.unroll_steps: expected int, got 1.5"):
        config_from_dict({"train": {"unroll_steps": 1.5}})
    with pytest.raises(ValueError, match="train.pushforward: expected true or false"):
        set_field(config_from_dict({}), "train.pushforward", "maybe")


# ------------------------------------------------------------- the command line --------
@pytest.fixture(scope="module")
def ns_data(tmp_path_factory):
    from grepsnet_sciml.datasets import navier_stokes

    path = tmp_path_factory.mktemp("ns") / "train.zarr"
    navier_stokes.generate(4, "ns-sym", resolution=16, sim_resolution=16, viscosity=1e-3,
                           t_final=6.0, record_every=1.0, seed=0,
                           progress=False).to_zarr(path, consolidated=False)
    return path


def test_grepsnet_train_with_unroll_pushforward_and_noise(ns_data, tmp_path, capsys):
    from grepsnet_sciml.cli import main

    config = tmp_path / "fno.toml"
    config.write_text(f'[data]\ntrain = "{ns_data}"\nt_in = 2\nvalid_rollout_steps = 2\n\n'
                      '[model]\nname = "fno"\nmodes = 3\nwidth = 4\nn_layers = 1\n\n'
                      '[train]\nepochs = 1\nbatch_size = 4\nprogress = false\n'
                      'device = "cpu"\n')
    out = tmp_path / "run"
    assert main(["train", str(config), "--train.out_dir", str(out), "--train.unroll_steps",
                 "2", "--train.pushforward", "true", "--train.input_noise", "0.01"]) == 0
    assert "trained 1 epochs" in capsys.readouterr().out
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and math.isfinite(rows[0]["train_loss"])
    # 3 training samples x (6 - 2 - 2 + 1) windows of 2 target frames, batches of 4
    assert rows[0]["step"] == (3 * 3) // 4
    stored = load_checkpoint(out / "last.pt")["config"]
    assert (stored["unroll_steps"], stored["pushforward"], stored["input_noise"]) == (2, True,
                                                                                      0.01)


@pytest.mark.parametrize("pushforward", [False, True])
def test_unrolled_loss_is_invariant_under_every_d4_element(pushforward):
    """An equivariant model gives an unrolled loss with L(g.x, g.y) = L(x, y) for all 8
    elements of D4 acting on the grid (vorticity T0p), float64."""
    from grepsnet_sciml import Reps
    from grepsnet_sciml.models import GRepsFNO2d

    torch.manual_seed(0)
    layout = FieldLayout(("vorticity",), ("T0p",), D4())
    t_in, steps = 2, 3
    model = GRepsFNO2d(layout.reps(t_in), layout.reps(1), width=1, modes=3,
                       n_layers=1).double()
    x = torch.randn(2, t_in, 8, 8, dtype=torch.float64)
    y = torch.randn(2, steps, 8, 8, dtype=torch.float64)
    rep_x, rep_y = Reps(f"{t_in}xT0p", D4()), Reps(f"{steps}xT0p", D4())
    for loss in ("mse", "relative_l2"):
        ref = unrolled_loss(model, x, y, layout=layout, t_out=1, steps=steps,
                            loss_fn=get_loss(loss), pushforward=pushforward)
        for g in range(D4().order):
            moved = unrolled_loss(model, rep_x.act(g, x, grid=True), rep_y.act(g, y, grid=True),
                                  layout=layout, t_out=1, steps=steps, loss_fn=get_loss(loss),
                                  pushforward=pushforward)
            assert float((abs(moved - ref) / ref).detach()) < 1e-10, (loss, g)
