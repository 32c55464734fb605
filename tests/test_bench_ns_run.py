"""``benchmarks.ns``: the ``tiny`` protocol end to end, per-process runs merged, bad merges."""

import json

import numpy as np
import pytest

from grepsnet_sciml.benchmarks import ns


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ns")
    out = {}
    for tag, models in (("a", ["GRepsFNO", "FNO"]), ("b", ["GFNO-p4"])):
        out[tag] = ns.run("tiny", "ns-sym", models=models, cache=root / "cache",
                          out_dir=root / tag, progress=False)
    return root, out


def test_tiny_run_reports_every_number_and_exact_equivariance(runs):
    _, out = runs
    rows = {r["model"]: r for r in out["a"]["rows"]}
    assert set(rows) == {"GRepsFNO", "FNO"}
    for row in rows.values():
        for key in ("test_error", "test_error_rotated90", "rollout_error_2x",
                    "rollout_error_5x", "test_error_superres", "train_seconds_per_epoch"):
            assert np.isfinite(row[key]), key
        assert 0.9 < row["parameter_ratio"] < 1.1 or row["model"] == "FNO"
    assert rows["GRepsFNO"]["equivariance_error_declared"] < 1e-5
    # two epochs from the small spectral init: FNO's outputs are still small, but its
    # rotation error stays two orders of magnitude above float32 round-off (GRepsFNO's)
    assert rows["FNO"]["equivariance_error_C4"] > 1e-4
    exact = rows["GRepsFNO"]["equivariance_error_declared"]
    assert rows["FNO"]["equivariance_error_C4"] > 100 * exact
    # the 2x finer test data is the same trajectories: every other point matches closely
    assert out["a"]["data"]["superres_times_aligned"]


def test_merge_joins_rows_and_rejects_mismatches(runs, tmp_path):
    root, out = runs
    paths = [root / t / "ns_tiny_ns-sym.json" for t in ("a", "b")]
    merged = ns.merge(paths, tmp_path)
    assert [r["model"] for r in merged["rows"]] == ["GRepsFNO", "FNO", "GFNO-p4"]
    assert [e["model"] for e in merged["summary"]] == ["GRepsFNO", "FNO", "GFNO-p4"]
    assert (tmp_path / "ns_tiny_ns-sym.png").stat().st_size > 0
    with pytest.raises(ValueError, match="appears in more than one file"):
        ns.merge([paths[0], paths[0]], tmp_path)
    other = json.loads(paths[1].read_text())
    other["threads"] = 7
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps(other))
    with pytest.raises(ValueError, match="differs from"):
        ns.merge([paths[0], bad], tmp_path)
    foreign = tmp_path / "foreign.json"
    foreign.write_text("{}")
    with pytest.raises(ValueError, match="has no"):
        ns.merge([foreign], tmp_path)
    foreign.write_bytes(b"\x89PNG not json")
    with pytest.raises(ValueError, match="cannot read .*foreign.json as a results JSON"):
        ns.merge([foreign], tmp_path)


def test_cli_data_only_and_merge(runs, tmp_path, capsys):
    from grepsnet_sciml.cli import main

    root, _ = runs
    assert main(["bench", "ns", "--protocol", "tiny", "--data-only", "--cache",
                 str(root / "cache"), "--no-progress"]) == 0
    assert "train: (20, 7, 16, 16)" in capsys.readouterr().out
    paths = [str(root / t / "ns_tiny_ns-sym.json") for t in ("a", "b")]
    assert main(["bench", "ns", "--merge", *paths, "--out", str(tmp_path)]) == 0
    assert "| GFNO-p4 |" in capsys.readouterr().out
