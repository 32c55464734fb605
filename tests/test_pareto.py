"""The NS accuracy-against-cost picture: points per (model, width), mean and sd over seeds."""

import json

import pytest

from grepsnet_sciml.benchmarks.pareto import OFFICIAL, pareto_points, write_pareto


def _file(path, rows):
    path.write_text(json.dumps({"rows": rows}))
    return path


def _row(model, width, seed, err, sec, params=1000.0):
    return {"model": model, "width": width, "seed": seed, "test_error": err,
            "train_seconds_per_epoch": sec, "parameters": params}


def test_points_average_seeds_per_model_and_width(tmp_path):
    a = _file(tmp_path / "a.json", [_row("M", 4, 0, 10.0, 2.0), _row("M", 4, 1, 12.0, 4.0),
                                    _row("M", 8, 0, 7.0, 9.0)])
    b = _file(tmp_path / "b.json", [_row("N", 2, 0, 20.0, 1.0)])
    points = {(p["model"], p["width"]): p for p in pareto_points([a, b])}
    assert set(points) == {("M", 4), ("M", 8), ("N", 2)}
    m4 = points[("M", 4)]
    assert (m4["seeds"], m4["test_error"], m4["test_error_std"]) == (2, 11.0, 1.0)
    assert (m4["seconds_per_epoch"], m4["seconds_per_epoch_std"]) == (3.0, 1.0)
    result = write_pareto([a, b], tmp_path / "out")
    assert (tmp_path / "out" / "ns_pareto.png").stat().st_size > 0
    saved = json.loads((tmp_path / "out" / "ns_pareto.json").read_text())
    assert saved["official"] == OFFICIAL and len(saved["points"]) == 3
    assert result["files"]["png"].endswith("ns_pareto.png")


def test_the_same_row_twice_and_foreign_files_are_refused(tmp_path):
    a = _file(tmp_path / "a.json", [_row("M", 4, 0, 10.0, 2.0)])
    with pytest.raises(ValueError, match="appears in more than one file"):
        pareto_points([a, a])
    foreign = tmp_path / "f.json"
    foreign.write_text(json.dumps({"something": 1}))
    with pytest.raises(ValueError, match="has no 'rows'"):
        pareto_points([foreign])
    with pytest.raises(ValueError, match="at least one row"):
        pareto_points([])
