"""``benchmarks.nbody_long_horizon``: miniature runs on both physics, exact momentum
conservation of GRepsNBody's rollouts against its ablation, merges and bad arguments."""

import json

import pytest

from grepsnet_sciml.benchmarks import nbody_long_horizon as lh

TINY = dict(n_train=20, n_valid=10, n_test=10, batch_size=10, eval_every=1, n_long=4,
            input_frame=10, target_frame=20, long_steps=4000, horizons=(1, 2),
            stream_train=40, stream_valid=20)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lh")
    out = {preset: lh.run("smoke", presets=(preset,), epochs=2, cache=root / "cache",
                          out_dir=root / preset, **TINY) for preset in ("clean", "egnn")}
    return root, out


def test_momentum_is_conserved_by_construction_only_in_grepsnbody(runs):
    _, out = runs
    clean = out["clean"]["presets"]["clean"]
    for h in ("1", "2"):
        own, free = clean["GRepsNBody"]["horizons"][h], clean["GRepsNBody-free"]["horizons"][h]
        # float32 states of 5 particles: round-off of |sum v| (of order 1)
        assert own["momentum_drift"] < 1e-5
        assert free["momentum_drift"] > 100 * own["momentum_drift"]
        # the clean physics conserves momentum; its simulator to float round-off too
        assert own["sim_momentum_drift"] < 1e-5
        for key in ("mse", "relative_energy_drift_median", "angular_momentum_drift"):
            assert own[key] is not None and own[key] >= 0
        assert 0 <= own["escaped"] <= 1
    assert clean["EGNN"]["horizons"]["2"]["momentum_drift"] > 1e-4


def test_energy_variants_keep_the_energy_on_both_physics(runs):
    _, out = runs
    for preset in ("clean", "egnn"):
        entries = out[preset]["presets"][preset]
        for name in ("GRepsNBody-energy", "GRepsNBody-inverse-energy",
                     "GRepsNBody-inverse-energy-unroll2"):
            for h in ("1", "2"):
                row = entries[name]["horizons"][h]
                # the projection holds E(x, v) of the split's potential: float32 round-off
                assert row["relative_energy_drift_median"] < 1e-4, (preset, name, h)
                assert row["momentum_drift"] < 1e-5
        free = entries["GRepsNBody"]["horizons"]["2"]["relative_energy_drift_median"]
        assert free > 1e-3


def test_unrolled_variants_train_on_two_strides(runs):
    _, out = runs
    assert lh.METHODS["GRepsNBody-inverse-energy-unroll2"] == {"unroll_steps": 2}
    for preset in ("clean", "egnn"):
        entry = out[preset]["presets"][preset]["GRepsNBody-inverse-energy-unroll2"]
        assert entry["epochs"] == 2 and not entry["diverged"]


def test_training_step_timing_side_by_side(runs, tmp_path):
    root, _ = runs
    result = lh.train_step_times(("GRepsNBody", "GRepsNBody-inverse-energy"), "clean",
                                 batch=10, repeats=2, cache=root / "cache", out_dir=tmp_path,
                                 protocol="smoke")
    assert result["ratio"]["GRepsNBody"] == 1.0
    assert result["seconds"]["GRepsNBody-inverse-energy"] > 0
    assert "| GRepsNBody-inverse-energy |" in (tmp_path / "nbody_long_horizon_timing.md"
                                                ).read_text()
    with pytest.raises(ValueError, match="models: expected names from"):
        lh.train_step_times(("SchNet",), cache=root / "cache", out_dir=tmp_path)


def test_merge_joins_presets_and_writes_table_and_plot(runs, tmp_path):
    root, _ = runs
    paths = [root / p / "nbody_long_horizon.json" for p in ("clean", "egnn")]
    merged = lh.merge(paths, tmp_path)
    assert list(merged["presets"]) == ["clean", "egnn"]
    table = (tmp_path / "nbody_long_horizon.md").read_text()
    assert "`egnn` physics" in table and "| GRepsNBody-free |" in table
    assert "| simulator | | 2x |" in table
    assert (tmp_path / "nbody_long_horizon.png").stat().st_size > 0
    saved = json.loads((tmp_path / "nbody_long_horizon.json").read_text())
    assert saved["presets"]["egnn"]["EGNN"]["epochs"] == 2
    with pytest.raises(ValueError, match="appear in more than one file"):
        lh.merge([paths[0], paths[0]], tmp_path)


@pytest.mark.parametrize("kwargs, message", [
    (dict(models=("SchNet",)), "models: expected names from"),
    (dict(presets=("gravity",)), "presets: expected some of"),
    (dict(epochs=0), "epochs: expected a positive integer, got 0"),
    (dict(protocol="huge"), "protocol: expected one of"),
    (dict(n_trains=3), "overrides: unknown settings"),
])
def test_bad_arguments_are_named(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        lh.run(**{"protocol": "smoke", **kwargs}, cache=tmp_path, out_dir=tmp_path)
