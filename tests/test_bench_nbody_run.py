"""``benchmarks.nbody``: a miniature run end to end, per-model runs merged, bad merges."""

import json

import numpy as np
import pytest

from grepsnet_sciml.benchmarks import nbody

TINY = dict(n_train=20, n_valid=10, n_test=10, budget_s=None, max_epochs=2, n_long=4,
            input_frame=10, target_frame=20, long_steps=4000, horizons=(1, 2),
            rollout_max_epochs=1, rollout_budget_s=None, threads=1, stream_train=40,
            stream_valid=20)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("nbody")
    out = {}
    for name in ("GRepsNBody", "EGNN"):
        out[name] = nbody.run("smoke", cache=root / "cache", out_dir=root / name,
                              models=(name,), **TINY)
    return root, out


def test_run_writes_table_json_and_rollouts_for_both_physics(runs):
    root, out = runs
    result = out["GRepsNBody"]
    assert set(result["rollout"]) == {"egnn", "clean"}
    for entries in result["rollout"].values():
        horizons = entries["GRepsNBody"]["horizons"]
        assert list(horizons) == ["1", "2"]
        assert horizons["1"]["mse"] is not None and np.isfinite(horizons["1"]["mse"])
    # the clean physics conserves energy: the simulator's drift is far below egnn's clipping
    drift = result["rollout"]["clean"]["GRepsNBody"]["horizons"]["2"]["sim_energy_drift"]
    assert drift < 1e-2
    saved = json.loads((root / "GRepsNBody" / "nbody_smoke.json").read_text())
    assert saved["models"]["GRepsNBody"]["epochs"] == [2]
    assert (root / "GRepsNBody" / "nbody_smoke.png").stat().st_size > 0
    assert "Rollout on `clean` physics" in (root / "GRepsNBody" / "nbody_smoke.md").read_text()


def test_merge_joins_models_and_rollouts(runs, tmp_path):
    root, out = runs
    merged = nbody.merge([root / n / "nbody_smoke.json" for n in ("GRepsNBody", "EGNN")],
                         out_dir=tmp_path, cache=root / "cache")
    assert list(merged["models"]) == ["GRepsNBody", "EGNN"]
    assert set(merged["rollout"]["clean"]) == {"GRepsNBody", "EGNN"}
    for name in ("GRepsNBody", "EGNN"):
        assert merged["models"][name]["test_mse"]["mean"] == pytest.approx(
            out[name]["models"][name]["test_mse"]["mean"])
        assert merged["models"][name]["forward_s_per_100"] > 0
    assert merged["equal_epochs"] == 2
    assert (tmp_path / "nbody_smoke.md").is_file()


def test_merge_rejects_other_settings_and_duplicates(runs, tmp_path):
    root, _ = runs
    path = root / "GRepsNBody" / "nbody_smoke.json"
    other = json.loads(path.read_text())
    other["settings"]["lr"] = 1.0
    other_path = tmp_path / "other.json"
    other_path.write_text(json.dumps(other))
    with pytest.raises(ValueError, match="other settings"):
        nbody.merge([path, other_path], out_dir=tmp_path, cache=root / "cache")
    with pytest.raises(ValueError, match=r"model\(s\) \['GRepsNBody'\] appear in more than one"):
        nbody.merge([path, path], out_dir=tmp_path, cache=root / "cache")
    foreign = tmp_path / "foreign.json"
    foreign.write_text("{}")
    with pytest.raises(ValueError, match="has no 'protocol'"):
        nbody.merge([foreign], out_dir=tmp_path, cache=root / "cache")
    foreign.write_text("[1, 2]")
    with pytest.raises(ValueError, match="holds list; expected a results object"):
        nbody.merge([foreign], out_dir=tmp_path, cache=root / "cache")
    with pytest.raises(ValueError, match="cannot read .*missing.json"):
        nbody.merge([tmp_path / "missing.json"], out_dir=tmp_path, cache=root / "cache")
