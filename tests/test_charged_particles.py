"""Charged-particle generators: EGNN reference bit for bit, clean preset symmetry and physics."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from grepsnet_sciml.datasets import _particles_egnn as fast
from grepsnet_sciml.datasets import _particles_reference as slow
from grepsnet_sciml.datasets import charged_particles as cp
from grepsnet_sciml.groups import O

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / \
    "egnn_charged5_seed43.npz"
needs_reference = pytest.mark.skipif(not REFERENCE.is_file(),
                                     reason="../shared/reference/egnn_charged5_seed43.npz absent")
EQUIVARIANCE_RTOL = 1e-10  # float64


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as data:
        return {key: data[key] for key in data.files}


def _compare_with_reference(ds, reference, split, rows):
    """Counts of (bitwise equal, close) frames; asserts the README's criterion."""
    loc = ds.position.values.transpose(0, 1, 3, 2)  # back to the original (n, 49, 3, 5)
    vel = ds.velocity.values.transpose(0, 1, 3, 2)
    ref_loc, ref_vel = reference[f"loc_{split}"][rows], reference[f"vel_{split}"][rows]
    sensitivity = reference[f"roundoff_sensitivity_{split}"][rows]
    assert np.array_equal(ds.charge.values, reference[f"charges_{split}"][rows, :, 0])
    edges = ds.charge.values[:, :, None] * ds.charge.values[:, None, :]
    assert np.array_equal(edges, reference[f"edges_{split}"][rows])
    equal = (loc == ref_loc).all(axis=(2, 3)) & (vel == ref_vel).all(axis=(2, 3))
    small = sensitivity < 1e-9
    assert equal[small].all(), (
        f"{split}: {int((~equal & small).sum())} frames with roundoff sensitivity < 1e-9 "
        f"differ from the reference")
    error = np.maximum(np.abs(loc - ref_loc).max(axis=(2, 3)),
                       np.abs(vel - ref_vel).max(axis=(2, 3)))
    assert (error[~small] <= 1e-6 + 10 * sensitivity[~small]).all()
    return int(equal.sum()), equal.size


@needs_reference
@pytest.mark.parametrize("split, first, n", [("train", 0, 6), ("valid", 9, 4), ("test", 120, 8)])
def test_egnn_matches_reference_rows(reference, split, first, n):
    """Rows from each split of the seed-43 stream (valid/test placed after train), bitwise."""
    rows = np.arange(first, first + n)
    assert np.array_equal(reference[f"index_{split}"][rows], rows)
    ds = cp.generate(n, seed=43, preset="egnn", split=split, first_sample=first,
                     progress=False)
    assert list(ds.sample.values) == list(rows)
    equal, total = _compare_with_reference(ds, reference, split, rows)
    assert equal == total  # every frame, on this machine


@needs_reference
@pytest.mark.slow
def test_egnn_matches_all_reference_trajectories(reference):
    counts = {}
    for split in cp.SPLITS:
        rows = reference[f"index_{split}"]
        ds = cp.generate(len(rows), seed=43, split=split, progress=False)
        counts[split] = _compare_with_reference(ds, reference, split, rows)
    assert all(equal == total for equal, total in counts.values()), counts


@needs_reference
def test_egnn_benchmark_files_round_trip(reference, tmp_path):
    """Small split sizes keep the train rows of the canonical stream; .npy files load back."""
    splits = cp.egnn_benchmark(n_train=3, n_valid=1, n_test=2, out_dir=tmp_path,
                               progress=False)
    assert [splits[s].sizes["sample"] for s in cp.SPLITS] == [3, 1, 2]
    _compare_with_reference(splits["train"], reference, "train", np.arange(3))
    loc = np.load(tmp_path / "loc_train_charged5_initvel1small.npy")
    assert loc.shape == (3, 49, 3, 5) and loc.dtype == np.float64
    assert np.array_equal(loc, reference["loc_train"][:3])
    edges = np.load(tmp_path / "edges_valid_charged5_initvel1small.npy")
    charges = np.load(tmp_path / "charges_valid_charged5_initvel1small.npy")
    assert charges.shape == (1, 5, 1)
    assert np.array_equal(edges, charges @ charges.transpose(0, 2, 1))
    for split in cp.SPLITS:
        loaded = cp.load_egnn_npy(tmp_path, split)
        for name in ("position", "velocity", "charge", "time"):
            assert np.array_equal(loaded[name].values, splits[split][name].values)
        assert loaded.attrs["kind"] == "particles"


def test_egnn_stream_is_continuous():
    """valid starts where train ends in the single stream; chunks equal one call."""
    kwargs = dict(seed=5, n_steps=300, progress=False)
    whole = cp.generate(6, **kwargs)
    valid = cp.generate(2, split="valid", first_sample=1, n_train=3, **kwargs)
    test = cp.generate(1, split="test", n_train=3, n_valid=1, **kwargs)
    chunk = cp.generate(3, first_sample=2, batch_size=2, threads=2, **kwargs)
    for part, rows in ((valid, [4, 5]), (test, [4]), (chunk, [2, 3, 4])):
        for name in ("position", "velocity", "charge"):
            assert np.array_equal(part[name].values, whole[name].values[rows])
    assert whole.time.values[0] == pytest.approx(0.1) and whole.sizes["time"] == 2


@pytest.mark.parametrize("n", [2, 5, 8])
def test_egnn_equals_slow_loop(n):
    """Vectorised generator against the per-trajectory loop (n = 8 uses numpy's full sum)."""
    ds = cp.generate(3, n_particles=n, seed=11, n_steps=400, progress=False)
    rs = np.random.RandomState(11)
    for k in range(3):
        loc, vel, charges = slow.egnn_trajectory(rs, n, 400)
        assert np.array_equal(ds.position.values[k], loc.transpose(0, 2, 1))
        assert np.array_equal(ds.velocity.values[k], vel.transpose(0, 2, 1))
        assert np.array_equal(ds.charge.values[k], charges)


@pytest.mark.parametrize("fused", [True, False])
def test_egnn_force_paths_equal_slow_loop(fused):
    """Both ways of rounding x_i . x_j as the original's syrk (torch's fused addcmul_ and
    numpy.matmul per trajectory) give the loop's force bit for bit, close pairs included."""
    if fused and not fast.torch_fma_is_exact():
        pytest.skip("torch.addcmul_ is not a fused multiply-add on this CPU")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((64, 3, 5)) * np.exp(rng.uniform(-3, 1, (64, 1, 1)))
    x[:8, :, 1] = x[:8, :, 0] + 1e-3 * rng.standard_normal((8, 3))  # clipped pairs
    q = rng.choice([-1.0, 1.0], size=(64, 5))
    force = fast.EgnnForce(q, 100.0, fused=fused)(np.ascontiguousarray(x.transpose(2, 1, 0)))
    for b in range(64):
        expected = slow._egnn_force(x[b].copy(), np.outer(q[b], q[b]), 100.0)
        assert np.array_equal(force[:, :, b].T, expected)


@needs_reference
def test_egnn_simulate_continues_reference(reference):
    """From frame 30 (EGNN's input), 1000 steps give frame 40 (its target) bit for bit."""
    loc, vel = reference["loc_test"][:8], reference["vel_test"][:8]
    x, v = cp.simulate(loc[:, 30].transpose(0, 2, 1), vel[:, 30].transpose(0, 2, 1),
                       reference["charges_test"][:8], 1000, preset="egnn")
    assert np.array_equal(x, loc[:, 40].transpose(0, 2, 1))
    assert np.array_equal(v, vel[:, 40].transpose(0, 2, 1))


@needs_reference
def test_egnn_simulate_from_initial_state(reference):
    """The documented convention: 100 (k + 1) steps from the drawn initial state give frame k."""
    charges, z_pos, z_vel = fast.draw_trajectories(np.random.RandomState(43), 2, 5, 49)
    x0, v0 = fast.initial_state(z_pos, z_vel, 1.0, 0.5, 5.0)
    x, v = cp.simulate(x0.transpose(0, 2, 1), v0.transpose(0, 2, 1), charges, 100)
    assert np.array_equal(x, reference["loc_train"][:2, 0].transpose(0, 2, 1))
    assert np.array_equal(v, reference["vel_train"][:2, 0].transpose(0, 2, 1))


def _random_states(batch, n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, n, 3)), 0.5 * rng.standard_normal((batch, n, 3)),
            rng.choice([-1.0, 1.0], size=(batch, n)))


def _relative(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_clean_commutes_with_e3_and_permutations():
    """simulate(g x + t, g v) = g simulate(x, v) + t for rotations AND reflections; same
    for particle permutations (float64, 1000 steps)."""
    x, v, q = _random_states(4, 5)
    steps = 1000
    x1, v1 = cp.simulate(x, v, q, steps, preset="clean")
    group = O(3).sample(6, torch.Generator().manual_seed(0)).numpy()
    group = np.concatenate([group, -group[:1]])  # make sure both determinants occur
    assert {round(float(d)) for d in np.linalg.det(group)} == {-1, 1}
    shift = np.array([3.0, -1.5, 0.7])
    for g in group:
        xg, vg = cp.simulate(x @ g.T + shift, v @ g.T, q, steps, preset="clean")
        assert _relative(xg, x1 @ g.T + shift) < EQUIVARIANCE_RTOL
        assert _relative(vg, v1 @ g.T) < EQUIVARIANCE_RTOL
    perm = np.random.default_rng(1).permutation(5)
    xp, vp = cp.simulate(x[:, perm], v[:, perm], q[:, perm], steps, preset="clean")
    assert _relative(xp, x1[:, perm]) < EQUIVARIANCE_RTOL
    assert _relative(vp, v1[:, perm]) < EQUIVARIANCE_RTOL


def test_egnn_clipping_breaks_rotation_symmetry():
    """Control for the test above: with active clipping the egnn preset is not O(3)-exact."""
    x = np.array([[[0.0, 0.0, 0.0], [0.05, 0.02, 0.0], [2.0, 1.0, 1.0]]])
    v = np.zeros_like(x)
    q = np.array([[1.0, -1.0, 1.0]])
    g = O(3).sample(1, torch.Generator().manual_seed(3)).numpy()[0]
    x1, _ = cp.simulate(x, v, q, 5, preset="egnn")
    xg, _ = cp.simulate(x @ g.T, v, q, 5, preset="egnn")
    assert _relative(xg, x1 @ g.T) > 1e-6


def test_clean_conserves_energy_and_momentum():
    ds = cp.generate(24, preset="clean", seed=3, progress=False)
    energy = cp.total_energy(ds.position.values, ds.velocity.values,
                             ds.charge.values[:, None], softening=0.1)
    drift = np.abs(energy - energy[:, :1]) / np.maximum(np.abs(energy[:, :1]), 1.0)
    assert drift.max() < cp.CLEAN_ENERGY_TOLERANCE
    momentum = ds.velocity.values.sum(axis=2)
    assert np.abs(momentum - momentum[:, :1]).max() < cp.CLEAN_MOMENTUM_TOLERANCE


def test_clean_energy_error_is_second_order():
    x, v, q = _random_states(8, 5, seed=4)
    errors = []
    for dt in (2e-3, 1e-3):
        steps = round(1.0 / dt)
        xs, vs = cp.simulate(x, v, q, steps, preset="clean", dt=dt)
        e0 = cp.total_energy(x, v, q, 0.1)
        errors.append(np.abs(cp.total_energy(xs, vs, q, 0.1) - e0).max())
    assert 3.0 < errors[0] / errors[1] < 5.5


def test_clean_equals_slow_loop_and_chunks():
    ds = cp.generate(5, preset="clean", seed=2, n_steps=300, progress=False)
    part = cp.generate(2, preset="clean", seed=2, first_sample=3, n_steps=300, batch_size=1,
                       threads=2, progress=False)
    for name in ("position", "velocity", "charge"):
        assert np.array_equal(part[name].values, ds[name].values[3:])
    other = cp.generate(1, preset="clean", seed=2, split="valid", n_steps=300, progress=False)
    assert not np.array_equal(other.position.values[0], ds.position.values[0])
    for k in range(5):
        loc, vel = slow.clean_trajectory(ds.charge.values[k], ds.position.values[k, 0].T,
                                         ds.velocity.values[k, 0].T, 300)
        assert _relative(ds.position.values[k], loc.transpose(0, 2, 1)) < 1e-13
        assert _relative(ds.velocity.values[k], vel.transpose(0, 2, 1)) < 1e-13
    assert ds.sizes["time"] == 4 and ds.time.values[0] == 0.0


def test_attrs_follow_the_data_contract():
    ds = cp.generate(2, preset="clean", seed=9, n_steps=100, progress=False)
    assert ds.position.dims == ("sample", "time", "particle", "spatial")
    assert ds.charge.dims == ("sample", "particle")
    assert ds.attrs["group"] == "O(3)" and ds.attrs["kind"] == "particles"
    assert json.loads(ds.attrs["representations"]) == {"position": "T1", "velocity": "T1",
                                                       "charge": "T0"}
    symmetry = json.loads(ds.attrs["symmetry"])
    assert symmetry["group"] == "O(3)" and symmetry["exact"] is True
    assert symmetry["translations"] is True and symmetry["elements"] == []
    config = json.loads(ds.attrs["config"])
    assert config["preset"] == "clean" and config["softening"] == 0.1 and config["seed"] == 9
    assert ds.attrs["seed"] == 9
    egnn = cp.generate(1, n_steps=200, progress=False)
    assert json.loads(egnn.attrs["symmetry"])["exact"] is False


def test_simulate_accepts_torch_and_detects_blow_up():
    x, v, q = _random_states(3, 4)
    xt, vt = cp.simulate(torch.tensor(x), torch.tensor(v), torch.tensor(q)[..., None], 50,
                         preset="clean")
    xn, vn = cp.simulate(x, v, q, 50, preset="clean")
    assert xt.dtype == torch.float64 and np.array_equal(xt.numpy(), xn)
    x[1, 2] = x[1, 0]  # two particles on top of each other, no softening
    with pytest.raises(cp.BlowUpError, match=r"sample 1 at time t = 0\.05"):
        cp.simulate(x, v, q, 50, preset="clean", softening=0.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_samples=0), "n_samples"),
    (dict(n_samples=2.5), "n_samples"),
    (dict(n_samples=True), "n_samples"),
    (dict(n_samples=1, n_particles=1), "n_particles"),
    (dict(n_samples=1, preset="springs"), "preset"),
    (dict(n_samples=1, split="dev"), "split"),
    (dict(n_samples=1, first_sample=-1), "first_sample"),
    (dict(n_samples=1, seed=-3), "seed"),
    (dict(n_samples=1, seed=2**32), "seed"),
    (dict(n_samples=1, n_steps=250), "n_steps"),
    (dict(n_samples=1, n_steps=100), "n_steps"),
    (dict(n_samples=1, dt=0.0), "dt"),
    (dict(n_samples=1, softening=0.1), "softening"),
    (dict(n_samples=1, preset="clean", softening=-1.0), "softening"),
    (dict(n_samples=1, batch_size=0), "batch_size"),
    (dict(n_samples=1, threads=0), "threads"),
])
def test_generate_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cp.generate(progress=False, **kwargs)


def test_other_functions_reject_bad_input(tmp_path):
    x, v, q = _random_states(2, 3)
    with pytest.raises(ValueError, match="positions"):
        cp.simulate(x[0], v, q, 1)
    with pytest.raises(ValueError, match="velocities"):
        cp.simulate(x, v[:, :2], q, 1)
    with pytest.raises(ValueError, match="charges"):
        cp.simulate(x, v, q[:, :2], 1)
    with pytest.raises(ValueError, match="n_steps"):
        cp.simulate(x, v, q, -1)
    x[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="positions.*NaN"):
        cp.simulate(x, v, q, 1)
    with pytest.raises(ValueError, match="n_valid"):
        cp.egnn_benchmark(n_valid=0)
    with pytest.raises(ValueError, match="directory"):
        cp.load_egnn_npy(tmp_path / "absent", "train")
    with pytest.raises(ValueError, match="loc_train_charged5_initvel1small.npy"):
        cp.load_egnn_npy(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        cp.load_egnn_npy(tmp_path, "training")
