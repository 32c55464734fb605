"""The demo's report helpers: the closing summary table and the figure links."""

from grepsnet_sciml.solvers.demo import _links, summary_table


def _summary():
    ns_row = {"rel_l2_step1": 0.0123, "rel_l2_horizon": 0.25, "rel_l2_last": 0.5,
              "equivariance_error_last_step": 3e-15, "parameters": 1774,
              "seconds_per_epoch": 1.5, "training_horizon_steps": 16}
    particle_row = {"position_mse_per_step": [0.01, 0.02, 0.04], "position_mse_horizon": 0.02,
                    "equivariance_error_per_step": [1e-16, 2e-16, 4e-16], "parameters": 60952,
                    "seconds_per_epoch": 0.25, "training_horizon_steps": 2}
    return {"config": {"ns_rollout": 40, "particle_rollout": 3},
            "navier_stokes": {"GRepsFNO": ns_row, "solver": {"equivariance_error_last_step": 0}},
            "particles": {"EGNN": particle_row, "solver": {}}}


def test_summary_table_rows_hold_the_key_numbers():
    lines = summary_table(_summary())
    assert lines[0].split()[:3] == ["data", "model", "metric"]
    rows = {line.split()[1]: line for line in lines[2:]}
    assert set(rows) == {"GRepsFNO", "EGNN"}  # the solver has no row
    assert rows["GRepsFNO"].split() == ["NS-Sym", "GRepsFNO", "rel.", "L2", "0.0123", "0.25",
                                        "(step", "16)", "0.5", "(step", "40)", "3.00e-15",
                                        "1774", "1.5"]
    assert rows["EGNN"].split() == ["particles", "EGNN", "position", "MSE", "0.01", "0.02",
                                    "(step", "2)", "0.04", "(step", "3)", "4.00e-16", "60952",
                                    "0.25"]
    assert len({len(line) for line in lines}) == 1  # fixed width


def test_links_name_every_png_of_a_part(tmp_path):
    (tmp_path / "ns").mkdir()
    for name in ("error_vs_time.png", "new_figure.png", "error_vs_time.json"):
        (tmp_path / "ns" / name).write_bytes(b"")
    lines = [line for line in _links(str(tmp_path), "ns") if line]
    assert lines == ["![error vs time (dotted line: the training horizon)]"
                     "(ns/error_vs_time.png)", "![new_figure](ns/new_figure.png)"]
