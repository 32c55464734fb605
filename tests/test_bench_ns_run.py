"""``benchmarks.ns``: the ``tiny`` protocol end to end, per-process runs merged, bad merges,
rows reproduced by ``grepsnet train`` from their TOML, the user's ``.mat`` data."""

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch

from grepsnet_sciml import Reps
from grepsnet_sciml.benchmarks import ns
from grepsnet_sciml.cli import main
from grepsnet_sciml.groups import D4
from grepsnet_sciml.solvers.config import load_config
from grepsnet_sciml.solvers.trainer import load_checkpoint


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ns")
    out = {}
    for tag, models in (("a", ["GRepsFNO", "FNO"]), ("b", ["GFNO-p4", "FNO+aug"])):
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
        assert 0.9 < row["parameter_ratio"] < 1.1 or row["model"] in ("FNO", *ns.OWN_WIDTH)
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
    names = ["GRepsFNO", "FNO", "GFNO-p4", "FNO+aug"]
    assert [r["model"] for r in merged["rows"]] == names
    assert [e["model"] for e in merged["summary"]] == names
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
    root, _ = runs
    assert main(["bench", "ns", "--protocol", "tiny", "--data-only", "--cache",
                 str(root / "cache"), "--no-progress"]) == 0
    assert "train: (20, 7, 16, 16)" in capsys.readouterr().out
    paths = [str(root / t / "ns_tiny_ns-sym.json") for t in ("a", "b")]
    assert main(["bench", "ns", "--merge", *paths, "--out", str(tmp_path)]) == 0
    assert "| GFNO-p4 |" in capsys.readouterr().out


@pytest.mark.parametrize("tag, model", [("a", "GRepsFNO"), ("b", "FNO+aug")])
def test_row_config_reproduces_the_row_with_grepsnet_train(runs, tmp_path, tag, model):
    root, out = runs
    row = next(r for r in out[tag]["rows"] if r["model"] == model)
    toml = root / tag / "configs" / "ns_tiny_ns-sym" / f"{model}_seed0.toml"
    assert row["config"] == str(toml)
    cfg = load_config(toml)
    # G-FNO's settings, unnormalized, validated on the rollout over `steps`
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay, cfg.train.schedule,
            cfg.train.loss, cfg.train.batch_size, cfg.train.epochs) == (
        "adam", 1e-3, 1e-4, "cosine", "relative_l2", 10, 2)
    assert (cfg.data.normalize, cfg.data.t_in, cfg.data.valid_rollout_steps) == (False, 4, 3)
    bench = load_checkpoint(f"{cfg.train.out_dir}/best.pt")
    assert bench["best"] * 100 == pytest.approx(row["best_valid_error"], rel=1e-12)
    assert main(["train", str(toml), "--train.out_dir", str(tmp_path / "again"),
                 "--train.progress", "false"]) == 0
    again = load_checkpoint(tmp_path / "again" / "best.pt")
    assert again["best"] == bench["best"] and again["epoch"] == bench["epoch"]
    assert bench["model"].keys() == again["model"].keys()
    for key, value in bench["model"].items():
        assert torch.equal(value, again["model"][key]), key


def _tiny_mat(runs, path):
    """A G-FNO-layout .mat file (u: (N, X, Y, T)) of the generated tiny trajectories."""
    import scipy.io

    root, _ = runs
    store = next((root / "cache").glob("ns_ns-sym_tiny_train_*.zarr"))
    w = ns.open_dataset(store)["vorticity"].values  # (20, 7, 16, 16)
    scipy.io.savemat(path, {"u": w.transpose(0, 2, 3, 1)})
    return w


def test_bench_on_a_mat_file(runs, tmp_path, capsys):
    mat = tmp_path / "ns_tiny.mat"
    w = _tiny_mat(runs, mat)
    argv = ["bench", "ns", "--protocol", "tiny", "--data", str(mat), "--n-train", "10",
            "--n-valid", "5", "--n-test", "5", "--epochs", "1", "--eval-every", "1",
            "--models", "GRepsFNO", "--cache", str(tmp_path / "cache"), "--out",
            str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 0
    result = json.loads((tmp_path / "out" / "ns_tiny_ns-sym.json").read_text())
    assert result["data"]["path"] == str(mat)
    assert result["data"]["sha256"] == hashlib.sha256(mat.read_bytes()).hexdigest()
    assert result["data"]["format"] == "mat" and result["data"]["frames"] == 7
    assert result["protocol"]["epochs"] == 1 and result["protocol"]["n_train"] == 10
    (entry,) = result["summary"]
    assert entry["model"] == "GRepsFNO" and 0 < entry["test_error"] < 100
    row = result["rows"][0]
    assert "rollout_error_2x" not in row  # 7 frames: no room for a 2x rollout
    assert all(np.isfinite(v) for v in row["per_step_error"]) and len(row["per_step_error"]) == 3
    assert row["equivariance_error_declared"] < 1e-5
    # the test split is trajectories 15..19 of the file, first 7 frames
    cfg = load_config(row["config"])
    test = ns.open_dataset(cfg.data.train.replace("train_from0_n10", "test_from15_n5"))
    np.testing.assert_array_equal(test["vorticity"].values, w[15:20])


def test_bench_refuses_foreign_or_wrong_data(runs, tmp_path, capsys):
    import scipy.io

    common = ["--protocol", "tiny", "--n-train", "10", "--n-valid", "5", "--n-test", "5",
              "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    foreign = tmp_path / "foreign.mat"
    foreign.write_text("not a MATLAB file")
    no_u = tmp_path / "no_u.mat"
    scipy.io.savemat(no_u, {"a": np.zeros((2, 8, 8))})
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    short = tmp_path / "short.mat"
    scipy.io.savemat(short, {"u": np.zeros((20, 16, 16, 5))})
    few = tmp_path / "few.mat"
    _tiny_mat(runs, few)
    for path, message in ((foreign, "foreign.mat"), (no_u, "no variable 'u'"),
                          (notes, "notes.txt: not a readable zarr store"),
                          (tmp_path / "nowhere.mat", "nowhere.mat does not exist"),
                          (short, "has 5 frames per trajectory; expected at least t_in + "
                           "steps = 7")):
        assert main(["bench", "ns", "--data", str(path), *common]) == 2
        err = capsys.readouterr().err
        assert message in err and str(path) in err, err
    assert main(["bench", "ns", "--data", str(few), *common[:-4], "--n-test", "50"]) == 2
    assert "has 20 trajectories; expected at least 65" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_width_sweep_names_its_rows_and_merges_beside_the_matched_run(runs, tmp_path, capsys):
    root, out = runs
    assert main(["bench", "ns", "--protocol", "tiny", "--models", "GRepsFNO", "--width", "2",
                 "--cache", str(root / "cache"), "--out", str(tmp_path / "w"),
                 "--no-progress"]) == 0
    capsys.readouterr()
    swept = json.loads((tmp_path / "w" / "ns_tiny_ns-sym.json").read_text())
    (row,) = swept["rows"]
    assert row["width"] == 2
    assert row["config"].endswith("GRepsFNO_w2_seed0.toml")
    assert load_config(row["config"]).model.width == 2
    matched = next(r for r in out["a"]["rows"] if r["model"] == "GRepsFNO")
    assert matched["width"] != 2 and row["parameters"] < matched["parameters"]
    merged = ns.merge([root / "a" / "ns_tiny_ns-sym.json", tmp_path / "w" / "ns_tiny_ns-sym.json"],
                      tmp_path / "m")
    widths = [(e["model"], e["width"]) for e in merged["summary"] if e["model"] == "GRepsFNO"]
    assert widths == [("GRepsFNO", matched["width"]), ("GRepsFNO", 2)]
    with pytest.raises(ValueError, match="width: expected a positive integer or None, got 0"):
        ns.run("tiny", "ns-sym", models=["FNO"], cache=root / "cache", out_dir=tmp_path,
               progress=False, width=0)


def test_depth_sweep_names_its_rows_and_keeps_them_apart_in_the_summary(runs, tmp_path,
                                                                       capsys):
    root, out = runs
    matched = next(r for r in out["a"]["rows"] if r["model"] == "GRepsFNO")
    assert matched["n_layers"] == ns.PROTOCOLS["tiny"].n_layers
    assert main(["bench", "ns", "--protocol", "tiny", "--models", "GRepsFNO", "--width",
                 str(matched["width"]), "--layers", "1", "--cache", str(root / "cache"),
                 "--out", str(tmp_path / "d"), "--no-progress"]) == 0
    assert "| GRepsFNO | " in capsys.readouterr().out
    (row,) = json.loads((tmp_path / "d" / "ns_tiny_ns-sym.json").read_text())["rows"]
    assert row["n_layers"] == 1 and row["width"] == matched["width"]
    assert row["config"].endswith(f"GRepsFNO_w{matched['width']}_L1_seed0.toml")
    assert load_config(row["config"]).model.n_layers == 1
    assert row["parameters"] < matched["parameters"]
    summary, table = _merged_beside_matched(root, tmp_path)
    depths = [(e["width"], e["n_layers"]) for e in summary if e["model"] == "GRepsFNO"]
    assert depths == [(matched["width"], matched["n_layers"]), (matched["width"], 1)]
    assert f"| GRepsFNO | {matched['width']} | 1 |" in table
    with pytest.raises(ValueError, match="n_layers: expected a positive integer or None"):
        ns.run("tiny", "ns-sym", models=["FNO"], cache=root / "cache", out_dir=tmp_path,
               progress=False, n_layers=0)


def _merged_beside_matched(root, tmp_path):
    """Merge the sweep's rows in ``tmp_path/d`` with the matched run: (summary, table)."""
    merged = ns.merge([root / "a" / "ns_tiny_ns-sym.json", tmp_path / "d" / "ns_tiny_ns-sym.json"],
                      tmp_path / "m")
    return merged["summary"], (tmp_path / "m" / "ns_tiny_ns-sym.md").read_text()


def test_mode_sweep_names_its_rows_and_keeps_them_apart_in_the_summary(runs, tmp_path):
    root, out = runs
    matched = next(r for r in out["a"]["rows"] if r["model"] == "GRepsFNO")
    assert matched["modes"] == ns.PROTOCOLS["tiny"].modes == 4
    result = ns.run("tiny", "ns-sym", models=["GRepsFNO"], cache=root / "cache",
                    out_dir=tmp_path / "d", progress=False, width=matched["width"], modes=3)
    (row,) = result["rows"]
    assert row["modes"] == 3 and row["n_layers"] == matched["n_layers"]
    assert row["config"].endswith(f"GRepsFNO_w{matched['width']}_m3_seed0.toml")
    assert load_config(row["config"]).model.modes == 3
    assert row["parameters"] < matched["parameters"]
    summary, table = _merged_beside_matched(root, tmp_path)
    modes = [e["modes"] for e in summary if e["model"] == "GRepsFNO"]
    assert modes == [4, 3]
    assert f"| GRepsFNO | {matched['width']} | {matched['n_layers']} | 3 |" in table
    with pytest.raises(ValueError, match="modes: expected a positive integer or None"):
        ns.run("tiny", "ns-sym", models=["FNO"], cache=root / "cache", out_dir=tmp_path,
               progress=False, modes=0)


def test_late_protocol_stores_frames_after_its_burn_in(tmp_path):
    p = ns.PROTOCOLS["late"]
    assert p.burn_in > 0 and ns.PROTOCOLS["quick"].burn_in == 0
    tiny = ns.PROTOCOLS["tiny"]
    burnt = dataclasses.replace(tiny, burn_in=2.0)
    plain, _ = ns._generated(tiny, "ns-sym", tmp_path, 0, False)
    stores, _ = ns._generated(burnt, "ns-sym", tmp_path, 0, False)
    assert stores["train"].name.endswith("_b2.zarr") and stores["train"] != plain["train"]
    a, b = ns.open_dataset(plain["train"]), ns.open_dataset(stores["train"])
    frames = a.sizes["time"]
    assert b["time"].values.tolist() == [3.0 + k for k in range(frames)]
    # the same trajectories two time units later: frames 3..frames of the run without it
    np.testing.assert_array_equal(b["vorticity"].values[:, : frames - 2],
                                  a["vorticity"].values[:, 2:])


def test_grepsfno_runs_at_its_own_architecture_per_protocol():
    quick, late = ns.make_protocol("quick", "ns-sym"), ns.make_protocol("late", "ns-sym")
    for p, (width, modes, depth, extra) in (
            (quick, (6, 10, 3, {"forcing_channel": "auto"})),
            (late, (6, 8, 4, {"forcing_channel": "off", "mlp_expansion": 1.0}))):
        matched, _ = ns.widths(["GRepsFNO", "GFNO-p4"], p, "D4()")
        assert matched["GRepsFNO"][0] == width and matched["GFNO-p4"][0] == p.reference_width
        assert ns.architecture("GRepsFNO", p) == {"n_layers": depth, "modes": modes, **extra}
        assert ns.architecture("GFNO-p4", p) == {"n_layers": p.n_layers, "modes": p.modes}
        assert p.modes == 8 and p.n_layers == 4
    assert ns.architecture("GRepsFNO", quick, n_layers=2, modes=12) == {
        "n_layers": 2, "modes": 12, "forcing_channel": "auto"}
    matched, _ = ns.widths(["GRepsFNO"], quick, "D2('diagonal')")
    assert matched["GRepsFNO"][0] == 12  # 48 real channels over the order-4 group
    core = ns._core("GRepsFNO", 6, quick, "D4()", ("symmetric", 0.1))
    assert type(core).__name__ == "ForcingInput" and ns._real_channels(core) == 48
    assert core.rep_in == Reps("10xT0p", D4())  # the forcing is appended inside
    tiny = ns.make_protocol("tiny", "ns-sym")  # not in OWN: the protocol's depth and modes
    assert ns.architecture("GRepsFNO", tiny) == {"n_layers": tiny.n_layers, "modes": tiny.modes,
                                                 "forcing_channel": "auto"}


def test_side_by_side_pairs_each_round_with_the_reference():
    torch.manual_seed(0)
    models = {"a": torch.nn.Conv2d(2, 1, 1), "b": torch.nn.Conv2d(2, 1, 3, padding=1)}
    x, y = torch.randn(2, 2, 8, 8), torch.randn(2, 1, 8, 8)
    out = ns.side_by_side(models, x, y, repeats=3, reference="a")
    assert out["a"]["ratio_to_reference"] == 1.0  # every round against itself
    for entry in out.values():
        assert entry["forward_ms"] > 0 and entry["forward_backward_ms"] > 0
        assert (entry["ratio_to_reference_q25"] <= entry["ratio_to_reference"]
                <= entry["ratio_to_reference_q75"])
    assert "ratio_to_reference" not in ns.side_by_side(models, x, y, repeats=1)["b"]
