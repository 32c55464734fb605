"""``grepsnet bench ns`` / ``bench nbody``: argument parsing, wiring and bad input.

The drivers' smallest protocols take minutes (data generation and training), so the
commands are checked here with the driver functions replaced by recorders.
"""

import pytest

from grepsnet_sciml.benchmarks import nbody, ns
from grepsnet_sciml.cli import main


def test_bench_ns_forwards_its_options(monkeypatch, tmp_path, capsys):
    calls = {}

    def fake_run(*args, **kwargs):
        calls["run"], calls["kwargs"] = args, kwargs
        return {"summary": [], "files": {"json": str(tmp_path / "x.json")}}

    monkeypatch.setattr(ns, "run", fake_run)
    monkeypatch.setattr(ns, "format_table", lambda summary: "TABLE")
    assert main(["bench", "ns", "--protocol", "tiny", "--preset", "ns", "--models", "GRepsFNO",
                 "FNO", "--seeds", "3,4", "--out", str(tmp_path), "--threads", "2",
                 "--no-progress"]) == 0
    assert calls["run"] == ("tiny", "ns", ["GRepsFNO", "FNO"], (3, 4), None, tmp_path, "cpu", 2,
                            False)
    assert calls["kwargs"] == {"data": None, "width": None, "n_layers": None, "modes": None}
    assert capsys.readouterr().out.splitlines()[0] == "TABLE"
    # the user's data with the protocol's sizes replaced: only the given ones are forwarded
    assert main(["bench", "ns", "--data", str(tmp_path / "u.mat"), "--n-train", "30",
                 "--n-test", "4", "--t-in", "5", "--steps", "6", "--epochs", "7",
                 "--eval-every", "2", "--width", "5", "--layers", "3", "--modes", "10"]) == 0
    assert calls["kwargs"] == {"data": tmp_path / "u.mat", "n_train": 30, "n_test": 4,
                               "t_in": 5, "steps": 6, "epochs": 7, "valid_every": 2,
                               "width": 5, "n_layers": 3, "modes": 10}

    def fake_time(*args):
        calls["time"] = args
        return {"table": "TIMES"}

    monkeypatch.setattr(ns, "time_models", fake_time)
    assert main(["bench", "ns", "--timing-only", "--repeats", "2", "--out", str(tmp_path)]) == 0
    assert calls["time"] == ("quick", "ns-sym", list(ns.MODELS), 2, tmp_path, 1, None, None,
                             None)
    assert main(["bench", "ns", "--timing-only", "--layers", "3", "--width", "6",
                 "--modes", "10"]) == 0
    assert calls["time"][-3:] == (6, 3, 10)


def test_bench_nbody_forwards_only_given_overrides(monkeypatch, tmp_path, capsys):
    calls = {}

    def fake_run(protocol, cache, out_dir, data, **overrides):
        calls.update(protocol=protocol, cache=cache, out=out_dir, data=data,
                     overrides=overrides)
        return {}

    monkeypatch.setattr(nbody, "run", fake_run)
    monkeypatch.setattr(nbody, "format_table", lambda results: "TABLE")
    assert main(["bench", "nbody", "--protocol", "smoke", "--budget", "12.5", "--seeds", "1,2",
                 "--no-rollout", "--out", str(tmp_path)]) == 0
    assert calls["protocol"] == "smoke" and calls["out"] == tmp_path
    assert calls["cache"] == nbody.CACHE and calls["data"] is None
    assert calls["overrides"] == {"budget_s": 12.5, "seeds": (1, 2), "rollout": False}
    assert "TABLE" in capsys.readouterr().out
    # the EGNN protocol on the user's files: fixed epochs (no budget) and a cadence
    assert main(["bench", "nbody", "--data", str(tmp_path), "--epochs", "40",
                 "--eval-every", "5"]) == 0
    assert calls["data"] == tmp_path
    assert calls["overrides"] == {"max_epochs": 40, "eval_every": 5, "budget_s": None}
    assert main(["bench", "nbody", "--epochs", "40", "--budget", "60"]) == 0
    assert calls["overrides"] == {"max_epochs": 40, "budget_s": 60.0}


def test_bench_nbody_reports_a_bad_data_folder(tmp_path, capsys):
    assert main(["bench", "nbody", "--data", str(tmp_path / "nowhere"), "--no-rollout",
                 "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]) != 0
    assert "nowhere' does not exist; expected a folder of EGNN .npy files" in (
        capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["ns", "--protocol", "huge"], "invalid choice: 'huge'"),
    (["ns", "--models", "GNN"], "invalid choice: 'GNN'"),
    (["ns", "--threads", "0"], "expected a positive integer, got '0'"),
    (["ns", "--seeds", "a,b"], "expected comma-separated non-negative integers"),
    (["ns", "--eval-every", "0"], "expected a positive integer, got '0'"),
    (["ns", "--n-train", "-3"], "expected a positive integer, got '-3'"),
    (["nbody", "--budget", "-5"], "expected a positive number of seconds, got '-5'"),
    (["nbody", "--budget", "inf"], "expected a positive number of seconds, got 'inf'"),
    (["nbody", "--epochs", "x"], "expected a positive integer, got 'x'"),
    (["nbody", "--eval-every", "0"], "expected a positive integer, got '0'"),
])
def test_bench_rejects_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_drivers_reject_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="protocol: expected one of .*got 'huge'"):
        ns.run("huge", out_dir=tmp_path)
    with pytest.raises(ValueError, match="preset: expected 'ns-sym' or 'ns', got 'ns2'"):
        ns.run("tiny", "ns2", out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"models: unknown \['GNN'\]"):
        ns.run("tiny", models=["GNN"], out_dir=tmp_path)
    with pytest.raises(ValueError, match="protocol: expected one of .*got 'huge'"):
        ns.time_models("huge", out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"overrides: unknown settings \['budget'\]"):
        ns.run("tiny", out_dir=tmp_path, budget=3)
    with pytest.raises(ValueError, match="epochs: expected a positive integer, got 0"):
        ns.run("tiny", out_dir=tmp_path, epochs=0)
    with pytest.raises(ValueError, match="protocol: expected one of .*got 'huge'"):
        nbody.run("huge", cache=tmp_path, out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"overrides: unknown settings \['budget'\]"):
        nbody.run("smoke", cache=tmp_path, out_dir=tmp_path, budget=3)
    with pytest.raises(ValueError, match="budget_s: expected a positive number"):
        nbody.run("smoke", cache=tmp_path, out_dir=tmp_path, budget_s=0.0)
    with pytest.raises(ValueError, match="models, seeds: expected models from"):
        nbody.run("smoke", cache=tmp_path, out_dir=tmp_path, models=("GNN",))
