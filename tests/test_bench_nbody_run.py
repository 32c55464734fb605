"""``benchmarks.nbody``: miniature runs end to end on generated data and on EGNN ``.npy``
files, per-model runs merged, bad merges and bad ``--data`` folders."""

import hashlib
import json
import math

import numpy as np
import pytest

from grepsnet_sciml.benchmarks import nbody
from grepsnet_sciml.datasets.charged_particles import generate, save_egnn_npy

TINY = dict(n_train=20, n_valid=10, n_test=10, batch_size=10, budget_s=None, max_epochs=3,
            eval_every=2, n_long=4, input_frame=10, target_frame=20, long_steps=4000,
            horizons=(1, 2), rollout_max_epochs=1, rollout_budget_s=None, threads=1,
            stream_train=40, stream_valid=20)
SUFFIX = "charged5_tiny"


def _numbers(tree, where=""):
    """Every float or int in a JSON tree, with its path."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _numbers(v, f"{where}/{k}")
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _numbers(v, f"{where}/{i}")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield where, tree


def _all_finite(results):
    bad = [(w, x) for w, x in _numbers(results) if not math.isfinite(x)]
    assert not bad


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
    _all_finite(result)
    assert set(result["rollout"]) == {"egnn", "clean"}
    for entries in result["rollout"].values():
        horizons = entries["GRepsNBody"]["horizons"]
        assert list(horizons) == ["1", "2"]
        assert horizons["1"]["mse"] is not None and horizons["1"]["mse"] > 0
    # the clean physics conserves energy: the simulator's drift is far below egnn's clipping
    drift = result["rollout"]["clean"]["GRepsNBody"]["horizons"]["2"]["sim_energy_drift"]
    assert drift < 1e-2 < result["rollout"]["egnn"]["GRepsNBody"]["horizons"]["2"][
        "sim_energy_drift"]
    saved = json.loads((root / "GRepsNBody" / "nbody_smoke.json").read_text())
    # 3 epochs validated every 2: after epochs 2 and 3 (the last)
    assert saved["models"]["GRepsNBody"]["epochs"] == [3]
    assert saved["models"]["GRepsNBody"]["validations"] == [2]
    history = saved["models"]["GRepsNBody"]["runs"][0]["history"]
    assert [row["valid"] is not None for row in history] == [False, True, True]
    assert saved["summary"][0]["model"] == "GRepsNBody"
    assert saved["summary"][0]["test_error"] > 0
    assert saved["summary"][0]["test_error"] == pytest.approx(
        saved["models"]["GRepsNBody"]["test_mse"]["mean"])
    assert saved["data"]["sha256"] is None and saved["data"]["path"].endswith(
        "egnn_seed43_train20_valid10_test10_of40-20")
    assert (root / "cache" / "egnn_seed43_train20_valid10_test10_of40-20" / "train.zarr").is_dir()
    assert (root / "GRepsNBody" / "nbody_smoke.png").stat().st_size > 0
    assert "Rollout on `clean` physics" in (root / "GRepsNBody" / "nbody_smoke.md").read_text()


def test_merge_joins_models_and_rollouts(runs, tmp_path):
    root, out = runs
    merged = nbody.merge([root / n / "nbody_smoke.json" for n in ("GRepsNBody", "EGNN")],
                         out_dir=tmp_path, cache=root / "cache")
    assert list(merged["models"]) == ["GRepsNBody", "EGNN"]
    assert [row["model"] for row in merged["summary"]] == ["GRepsNBody", "EGNN"]
    assert set(merged["rollout"]["clean"]) == {"GRepsNBody", "EGNN"}
    for name in ("GRepsNBody", "EGNN"):
        assert merged["models"][name]["test_mse"]["mean"] == pytest.approx(
            out[name]["models"][name]["test_mse"]["mean"])
        assert merged["models"][name]["forward_s_per_100"] > 0
    assert merged["equal_epochs"] == 3
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
    other = json.loads(path.read_text())
    other["data"]["sha256"] = {"loc_train_x.npy": "0" * 64}
    other_path.write_text(json.dumps(other))
    with pytest.raises(ValueError, match="other data"):
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


@pytest.fixture(scope="module")
def npy_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("egnn_npy")
    for split, n in (("train", 100), ("valid", 20), ("test", 20)):
        ds = generate(n, seed=7, split=split, n_steps=2200, n_train=100, n_valid=20,
                      progress=False)
        save_egnn_npy(ds, folder, split, suffix=SUFFIX)
    return folder


def test_run_on_egnn_npy_files_records_them_and_beats_no_motion(npy_folder, tmp_path):
    settings = {**TINY, "n_train": 100, "n_valid": 20, "n_test": 20, "batch_size": 20,
                "max_epochs": 6, "eval_every": 3, "rollout": False}
    result = nbody.run("smoke", cache=tmp_path / "cache", out_dir=tmp_path / "out",
                       data=npy_folder, models=("EGNN",), **settings)
    _all_finite(result)
    saved = json.loads((tmp_path / "out" / "nbody_smoke.json").read_text())
    files = sorted(f.name for f in npy_folder.iterdir())
    assert len(files) == 12
    assert saved["data"]["path"] == str(npy_folder.resolve())
    assert saved["data"]["sha256"] == {
        f: hashlib.sha256((npy_folder / f).read_bytes()).hexdigest() for f in files}
    assert not (tmp_path / "cache").exists()  # nothing generated
    entry = saved["models"]["EGNN"]
    assert entry["epochs"] == [6] and entry["validations"] == [2]  # after epochs 3 and 6
    test = saved["summary"][0]["test_error"]
    assert 0 < test < saved["trivial"]["no motion"]
    best = entry["runs"][0]["best"]
    assert best["epoch"] in (3, 6) and best["test"] == pytest.approx(test)
    # the trivial baseline is computed on the files' own test split
    loc = np.load(npy_folder / f"loc_test_{SUFFIX}.npy")
    assert saved["trivial"]["no motion"] == pytest.approx(
        float(((loc[:, 10] - loc[:, 20]) ** 2).mean()), rel=1e-6)


def test_bad_data_folders_are_named(npy_folder, tmp_path):
    p = nbody.Protocol(**{**TINY, "n_train": 100, "n_valid": 20, "n_test": 20})
    with pytest.raises(FileNotFoundError, match=r"data: '.*nowhere' does not exist; expected "
                                                "a folder of EGNN .npy files"):
        nbody.read_egnn_folder(tmp_path / "nowhere", p)
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in npy_folder.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / f"vel_valid_{SUFFIX}.npy").write_text("time,x,y,z\n0,1,2,3\n")
    with pytest.raises(ValueError, match=rf"data: .*vel_valid_{SUFFIX}.npy is not a .npy array "
                                         "file"):
        nbody.read_egnn_folder(bad, p)
    (bad / f"vel_valid_{SUFFIX}.npy").unlink()
    with pytest.raises(ValueError, match=rf"lacks vel_valid_{SUFFIX}.npy"):
        nbody.read_egnn_folder(bad, p)
    with pytest.raises(ValueError, match=rf"loc_train_{SUFFIX}.npy holds 100 trajectories; the "
                                         "protocol uses n_train=3000"):
        nbody.read_egnn_folder(npy_folder, nbody.PROTOCOLS["quick"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no loc_train_<suffix>.npy"):
        nbody.read_egnn_folder(empty, p)
