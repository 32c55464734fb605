"""EMLP's synthetic tasks, the MLP baseline, the training loop and the synthetic benchmark."""

import json

import pytest
import torch

from grepsnet_sciml import Reps
from grepsnet_sciml.cli import main as cli_main
from grepsnet_sciml.groups import O
from grepsnet_sciml.synthetic import SIZES, TASKS, make_dataset, run_synthetic_benchmark
from grepsnet_sciml.synthetic.benchmark import BenchmarkSize
from grepsnet_sciml.synthetic.data import (
    MINKOWSKI,
    Inertia,
    O5Synthetic,
    ParticleInteraction,
    Standardization,
)
from grepsnet_sciml.synthetic.models import (
    MLPBaseline,
    Standardized,
    build_grepsnet,
    count_parameters,
    mlp_parameter_count,
    mlp_width_for,
)
from grepsnet_sciml.synthetic.training import mse, train_model
from grepsnet_sciml.testing import FLOAT64_RTOL, assert_equivariant, equivariance_errors


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("task", list(TASKS))
def test_target_equivariant_under_group_samples(task):
    # f(g x) = g f(x) in float64 for sampled elements (reflections and boosts included).
    data = make_dataset(task, 200, seed=3)
    gs = data.group.sample(16, generator=torch.Generator().manual_seed(1))
    assert (torch.linalg.det(gs) < 0).any()
    for g in gs:
        lhs = data.target(data.rep_in.act(g, data.x))
        rhs = data.rep_out.act(g, data.y)
        assert _rel(lhs, rhs) < FLOAT64_RTOL


def test_o5_target_formula_and_layout():
    data = O5Synthetic(50, seed=0)
    r1, r2 = data.x[:, :5], data.x[:, 5:]
    expected = (
        torch.sin(r1.norm(dim=1))
        - 0.5 * r2.norm(dim=1) ** 3
        + torch.nn.functional.cosine_similarity(r1, r2, dim=1)
    )
    torch.testing.assert_close(data.y[:, 0], expected, rtol=1e-12, atol=1e-12)


def test_inertia_is_a_physical_inertia_tensor():
    data = Inertia(100, seed=0)
    m, r = data.x[:, :5], data.x[:, 5:].reshape(-1, 5, 3)
    assert (m > 0).all()
    inertia = data.y.reshape(-1, 3, 3)
    torch.testing.assert_close(inertia, inertia.transpose(1, 2), rtol=0, atol=1e-12)
    # trace I = 2 sum_i m_i |r_i|^2 and I is positive semi-definite.
    trace = torch.diagonal(inertia, dim1=1, dim2=2).sum(-1)
    torch.testing.assert_close(trace, 2 * (m * (r**2).sum(-1)).sum(-1), rtol=1e-12, atol=0)
    assert torch.linalg.eigvalsh(inertia).min() > -1e-12
    # A single unit mass on the z axis at distance 2: I = diag(4, 4, 0).
    x = torch.zeros(1, 20, dtype=torch.float64)
    x[0, 0], x[0, 7] = 1.0, 2.0
    torch.testing.assert_close(
        Inertia.target(x).reshape(3, 3), torch.diag(torch.tensor([4.0, 4.0, 0.0]).double())
    )


def test_particle_interaction_closed_form():
    # 4 [(p1.p2)(p3.p4) - A (p1.p3) - B (p2.p4) + 4 A B], A = p2.p4 - p2.p2, B = p1.p3 - p1.p1.
    data = ParticleInteraction(100, seed=0)
    p1, p2, p3, p4 = data.x.reshape(-1, 4, 4).unbind(1)

    def dot(u, v):
        return torch.einsum("na,ab,nb->n", u, MINKOWSKI, v)

    a = dot(p2, p4) - dot(p2, p2)
    b = dot(p1, p3) - dot(p1, p1)
    expected = 4 * (dot(p1, p2) * dot(p3, p4) - a * dot(p1, p3) - b * dot(p2, p4) + 4 * a * b)
    torch.testing.assert_close(data.y[:, 0], expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("task", list(TASKS))
def test_seeding_and_shapes(task):
    a = make_dataset(task, 32, seed=5)
    b = make_dataset(task, 32, seed=5)
    assert a.x.shape == (32, a.rep_in.dim) and a.y.shape == (32, a.rep_out.dim)
    assert a.x.dtype == torch.float64 and a.rep_in.group == a.group == a.rep_out.group
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, make_dataset(task, 32, seed=6).x)
    assert not torch.equal(a.x, make_dataset(task, 32, seed=5, split="test").x)
    # A longer draw of the same stream starts with the same samples.
    assert torch.equal(make_dataset(task, 64, seed=5).x[:32], a.x)
    x, y = a[3]
    assert torch.equal(x, a.x[3]) and torch.equal(y, a.y[3]) and len(a) == 32


@pytest.mark.parametrize("task", list(TASKS))
def test_standardization_is_per_channel(task):
    data = make_dataset(task, 500, seed=0)
    stats = data.standardization()
    for b in data.rep_in.blocks:
        block = stats.x_scale[b.slice].reshape(b.mult, b.size)
        assert torch.equal(block, block[:, :1].expand_as(block))
    if task == "inertia":  # EMLP's stats for Inertia are the identity.
        assert torch.equal(stats.x_scale, torch.ones(20, dtype=torch.float64))
        assert torch.equal(stats.y_mean, torch.zeros(9, dtype=torch.float64))
    else:
        torch.testing.assert_close(stats.y_mean, data.y.mean(0))
        normalized = (data.x / stats.x_scale).reshape(500, -1, data.group.d)
        torch.testing.assert_close(normalized.pow(2).mean((0, 2)), torch.ones(normalized.shape[1],
                                   dtype=torch.float64))


@pytest.mark.parametrize("task", list(TASKS))
def test_grepsnet_model_is_equivariant(task, dtype):
    data = make_dataset(task, 16, seed=0)
    torch.manual_seed(0)
    net = build_grepsnet(data.rep_in, data.rep_out, SIZES["tiny"].hidden[task], 1)
    model = Standardized(net, data.standardization(), data.rep_in, data.rep_out)
    assert_equivariant(model, data.x[:4], dtype=dtype, n_samples=4)


def test_standardized_rejects_equivariance_breaking_stats():
    data = O5Synthetic(100, seed=0)
    stats = data.standardization()
    mlp = MLPBaseline(data.rep_in, data.rep_out, 8, 1)
    per_component = data.x.std(0)
    with pytest.raises(ValueError, match="stats.x_scale"):
        Standardized(mlp, Standardization(per_component, stats.y_mean, stats.y_scale),
                     data.rep_in, data.rep_out)
    inertia = Inertia(10, seed=0)
    ones = torch.ones(20, dtype=torch.float64)
    with pytest.raises(ValueError, match="stats.y_mean"):
        Standardized(MLPBaseline(inertia.rep_in, inertia.rep_out, 8, 1),
                     Standardization(ones, torch.ones(9, dtype=torch.float64),
                                     torch.ones(9, dtype=torch.float64)),
                     inertia.rep_in, inertia.rep_out)


def test_mlp_parameter_matching_and_is_not_equivariant():
    for d_in, d_out, depth, target in [(10, 1, 3, 20000), (20, 9, 3, 51234), (16, 1, 2, 3000)]:
        width = mlp_width_for(target, d_in, d_out, depth)
        mlp = MLPBaseline(Reps(f"{d_in}xT0", O(3)), Reps(f"{d_out}xT0", O(3)), width, depth)
        assert count_parameters(mlp) == mlp_parameter_count(d_in, d_out, width, depth)
        assert abs(count_parameters(mlp) - target) / target < 0.02
    data = O5Synthetic(8, seed=0)
    torch.manual_seed(0)
    mlp = MLPBaseline(data.rep_in, data.rep_out, 16, 2)
    assert equivariance_errors(mlp, data.x).max_error > 1e-3


def test_training_reduces_loss_and_is_reproducible():
    train, test = O5Synthetic(128, seed=0), O5Synthetic(128, seed=0, split="test")
    valid = O5Synthetic(128, seed=0, split="valid")

    def fit():
        torch.manual_seed(0)
        model = Standardized(MLPBaseline(train.rep_in, train.rep_out, 32, 2),
                             train.standardization(), train.rep_in, train.rep_out)
        return model, train_model(model, train, valid, test, epochs=20, batch_size=16,
                                  lr=3e-3, seed=0)

    (model, first), (_, second) = fit(), fit()
    assert len(first.train_losses) == len(first.valid_mse) == 20
    assert first.train_losses[-1] < 0.2 * first.train_losses[0]
    assert first.test_mse < 0.5 * float(test.y.var())
    assert first.train_losses == second.train_losses and first.test_mse == second.test_mse
    assert first.seconds_per_epoch > 0 and first.cpu_seconds_per_epoch > 0
    # the model keeps the weights of the best validation epoch, and is tested with them
    best = min(first.valid_mse)
    assert first.valid_mse[first.best_epoch - 1] == best
    assert mse(model, valid) == pytest.approx(best, rel=1e-6)
    assert mse(model, test) == first.test_mse


def test_training_refuses_a_batch_larger_than_the_data():
    train = O5Synthetic(8, seed=0)
    model = MLPBaseline(train.rep_in, train.rep_out, 4, 1)
    with pytest.raises(ValueError, match="batch_size: 16 exceeds the 8 training items"):
        train_model(model, train, train, train, epochs=1, batch_size=16, lr=1e-3)
    with pytest.raises(ValueError, match="schedule: expected 'cosine' or 'constant'"):
        train_model(model, train, train, train, epochs=1, batch_size=8, lr=1e-3,
                    schedule="step")


def test_benchmark_tiny_writes_results(tmp_path):
    results = run_synthetic_benchmark("tiny", seeds=(0, 1), out_dir=tmp_path, progress=False)
    files = results["files"]
    assert set(files) == {"json", "markdown", "png"}
    stored = json.loads((tmp_path / "synthetic_tiny.json").read_text())
    assert stored["size"] == "tiny" and stored["seeds"] == [0, 1]
    assert set(stored["tasks"]) == set(TASKS)
    for task, entry in stored["tasks"].items():
        assert entry["group"] == repr(TASKS[task].group)
        models = entry["models"]
        assert set(models) == {"grepsnet", "mlp"}
        for m in models.values():
            assert len(m["test_mse"]) == 2
            assert m["test_mse_mean"] == pytest.approx(sum(m["test_mse"]) / 2)
            assert m["seconds_per_epoch"] > 0 and m["params"] > 0
            assert all(e in (1, 2) for e in m["best_epoch"]) and len(m["best_epoch"]) == 2
        g, mlp = models["grepsnet"], models["mlp"]
        assert abs(mlp["params"] - g["params"]) / g["params"] < 0.1
        assert g["equivariance_error_float64"] < FLOAT64_RTOL
        assert g["equivariance_error_float32"] < 1e-5
        assert mlp["equivariance_error_float64"] > 1e-3
        assert entry["mse_ratio_mlp_over_grepsnet"] == pytest.approx(
            mlp["test_mse_mean"] / g["test_mse_mean"]
        )
    table = (tmp_path / "synthetic_tiny.md").read_text()
    assert "G-RepsNet" in table and "| lorentz | Lorentz() |" in table
    assert (tmp_path / "synthetic_tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bench_synthetic(tmp_path, capsys):
    rc = cli_main(["bench", "synthetic", "--size", "tiny", "--seeds", "0", "--tasks", "o5",
                   "--out", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "| o5 | O(5) | G-RepsNet |" in out
    assert (tmp_path / "synthetic_tiny.json").exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": "huge"}, "size: unknown benchmark size 'huge'"),
        ({"size": 3}, "size:"),
        ({"tasks": ["o5", "qm9"]}, "tasks: unknown synthetic task"),
        ({"tasks": []}, "tasks:"),
        ({"seeds": ()}, "seeds:"),
        ({"seeds": (0, -1)}, "seeds:"),
        ({"size": BenchmarkSize("bare", 8, 8, epochs=1, batch_size=8)}, "size: 'bare' lacks"),
    ],
)
def test_benchmark_bad_input(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        run_synthetic_benchmark(**kwargs, out_dir=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args, match",
    [
        (("qm9", 10, 0), "task: unknown synthetic task 'qm9'"),
        (("o5", 0, 0), "n_samples: expected a positive integer, got 0"),
        (("o5", 10, -1), "seed: expected a non-negative integer, got -1"),
        (("o5", 10, 0, "val"), "split: expected one of"),
    ],
)
def test_dataset_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        make_dataset(*args)


def test_custom_size_is_accepted():
    size = BenchmarkSize(
        "custom", 16, 16, epochs=1, batch_size=16, lr={"o5": {"grepsnet": 1e-3, "mlp": 1e-3}},
        hidden={"o5": "2xT0 + 2xT1"}, depth=1, mlp_depth=1, n_equivariance_samples=1,
    )
    results = run_synthetic_benchmark(size, seeds=(0,), tasks="o5", progress=False)
    assert list(results["tasks"]) == ["o5"] and "files" not in results
