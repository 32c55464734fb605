"""Equivariant normalization, losses as invariant functions, and the reference models."""

import pytest
import torch

from grepsnet_sciml import Reps
from grepsnet_sciml.groups import D4, O
from grepsnet_sciml.models.baselines import FNOBaseline, ParticleMPNN
from grepsnet_sciml.solvers.losses import get_loss, mse, relative_l2
from grepsnet_sciml.solvers.normalize import NormalizedModel, Normalizer, block_statistics
from grepsnet_sciml.testing import EquivarianceError, assert_equivariant

GRID_REPS = Reps("2xT0 + 3xT0p + 2xT1 + T2 + R", D4())
POINT_REPS = Reps("2xT0 + T0p + 2xT1 + T2", O(3))


def _fitted(reps, domain, dtype):
    gen = torch.Generator().manual_seed(1)
    grid = (8, 8) if domain == "grid" else None
    data = 3.0 * reps.randn(6, grid=grid, generator=gen, dtype=dtype) + 1.5
    return Normalizer.fit(reps, data, domain), data


@pytest.mark.parametrize("domain,reps", [("grid", GRID_REPS), ("point", POINT_REPS)])
def test_normalizer_is_equivariant(domain, reps, dtype):
    norm, _ = _fitted(reps, domain, dtype)
    assert_equivariant(norm.to(dtype), dtype=dtype)

    class Decode(torch.nn.Module):
        rep_in = rep_out = reps

        def __init__(self):
            super().__init__()
            self.domain, self.norm = domain, norm

        def forward(self, x):
            return self.norm.decode(x)

    assert_equivariant(Decode().to(dtype), dtype=dtype)


def test_normalizer_statistics_and_round_trip():
    norm, data = _fitted(GRID_REPS, "grid", torch.float64)
    # one scale per block, shift only on the T0 block
    assert norm.scale.shape == (len(GRID_REPS.blocks),)
    assert norm.shift[0] != 0 and (norm.shift[1:] == 0).all()
    enc = norm.encode(data)
    torch.testing.assert_close(norm.decode(enc), data, rtol=1e-12, atol=1e-12)
    # the T0 block is standardised; every other block has unit root mean square
    t0 = enc[:, :2]
    assert abs(float(t0.mean())) < 1e-12 and abs(float(t0.std(unbiased=False)) - 1) < 1e-12
    for b in GRID_REPS.blocks[1:]:
        assert abs(float(enc[:, b.slice].pow(2).mean().sqrt()) - 1) < 1e-12
    # a vector field is scaled by one number, not per component
    vec = torch.tensor([[10.0, 0.1], [-10.0, -0.1]])
    n = Normalizer.fit(Reps("T1", O(2)), vec)
    assert n.scale.tolist() == pytest.approx([block_statistics(vec, "T1")[0]])
    torch.testing.assert_close(n.encode(vec)[:, 0] / n.encode(vec)[:, 1], vec[:, 0] / vec[:, 1])


def test_normalizer_bad_input():
    with pytest.raises(ValueError, match="shift: a T0p block cannot be shifted"):
        Normalizer(Reps("T0p", D4()), [1.0], [0.5])
    with pytest.raises(ValueError, match="scale: expected finite positive"):
        Normalizer(Reps("T0", D4()), [0.0])
    with pytest.raises(ValueError, match="expected 2 entries"):
        Normalizer(Reps("T0 + T1", D4()), [1.0])
    with pytest.raises(ValueError, match="domain: expected 'grid' or 'point'"):
        Normalizer(Reps("T0", D4()), [1.0], domain="mesh")
    with pytest.raises(ValueError, match="values: contain NaN"):
        block_statistics(torch.tensor([1.0, float("nan")]), "T0")


class _Sum(torch.nn.Module):
    """An equivariant core: concatenation and a scalar mix of typed point inputs."""

    rep_in = (Reps("T1", O(3)), Reps("T1", O(3)), Reps("T0", O(3)))
    rep_out = (Reps("T1", O(3)), Reps("T1", O(3)))

    def forward(self, x, v, q):
        return x + q * v, 2 * v


def test_normalized_model_keeps_equivariance(dtype):
    gen = torch.Generator().manual_seed(0)
    ins = [Normalizer.fit(r, 2 * r.randn(20, generator=gen, dtype=torch.float64) + 1)
           for r in _Sum.rep_in]
    outs = [Normalizer.fit(r, 3 * r.randn(20, generator=gen, dtype=torch.float64))
            for r in _Sum.rep_out]
    model = NormalizedModel(_Sum(), ins, outs).to(dtype)
    assert_equivariant(model, dtype=dtype)
    with pytest.raises(ValueError, match="in_norms: expected 3 normalizers, got 1"):
        NormalizedModel(_Sum(), ins[:1], outs)


class _Loss(torch.nn.Module):
    """Per-sample loss of a (prediction, target) pair, broadcast to a constant scalar field."""

    domain = "grid"

    def __init__(self, name, reps):
        super().__init__()
        self.rep_in = (reps, reps)
        self.rep_out = Reps("T0", reps.group)
        self.loss = get_loss(name)

    def forward(self, p, y):
        per_sample = self.loss(p, y, reduction="none")
        return per_sample[:, None, None, None].expand(-1, 1, *p.shape[-2:])


@pytest.mark.parametrize("name", ["relative_l2", "mse"])
def test_losses_are_invariant(name, dtype):
    assert_equivariant(_Loss(name, GRID_REPS), dtype=dtype)


def test_loss_values():
    y = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    p = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert relative_l2(p, y, reduction="none").tolist() == [1.0, 1.0]
    assert float(mse(p, y)) == pytest.approx((12.5 + 0.5) / 2)
    with pytest.raises(ValueError, match="target: shape"):
        mse(p, y[:1])
    with pytest.raises(ValueError, match="loss: unknown loss 'l1'"):
        get_loss("l1")
    with pytest.raises(ValueError, match="reduction: expected"):
        mse(p, y, reduction="max")


def test_fno_baseline_runs_in_both_precisions_and_is_not_equivariant(dtype):
    torch.manual_seed(0)
    model = FNOBaseline(Reps("3xT0p", D4()), Reps("T0p", D4()), modes=4, width=8,
                        n_layers=2).to(dtype)
    out = model(torch.randn(2, 3, 16, 16, dtype=dtype))
    assert out.shape == (2, 1, 16, 16) and out.dtype == dtype
    # the coordinate-grid positional embedding breaks the group action (a reference model)
    with pytest.raises(EquivarianceError):
        assert_equivariant(model, dtype=dtype)
    with pytest.raises(ValueError, match="expected a field of shape"):
        model(torch.randn(2, 4, 16, 16, dtype=dtype))


def test_particle_mpnn_permutation_but_not_rotation_equivariant(dtype):
    torch.manual_seed(0)
    model = ParticleMPNN(hidden=16, n_layers=2, predict_velocity=True).to(dtype)
    # identity rotation with a random particle permutation: passes
    assert_equivariant(model, elements=torch.eye(3, dtype=torch.float64)[None], dtype=dtype)
    with pytest.raises(EquivarianceError):
        assert_equivariant(model, dtype=dtype)
    with pytest.raises(ValueError, match="charges: expected shape"):
        model(torch.randn(2, 5, 3), torch.randn(2, 5, 3), torch.randn(2, 5, 2))
