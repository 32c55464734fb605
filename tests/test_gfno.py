"""GFNO2d (own G-FNO): p4 / p4m equivariance, scalar vs pseudo-scalar vorticity, cost."""

import pytest
import torch

from grepsnet_sciml import Reps
from grepsnet_sciml.groups import D4
from grepsnet_sciml.models.gfno import GFNO2d
from grepsnet_sciml.testing import assert_equivariant, equivariance_errors


def small(group="p4", vorticity="scalar"):
    torch.manual_seed(0)
    return GFNO2d(3, 1, width=2, modes=4, n_layers=2, group=group, vorticity=vorticity)


@pytest.mark.parametrize("vorticity", ["scalar", "pseudoscalar"])
@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_equivariant_under_its_group(group, vorticity, dtype):
    model = small(group, vorticity)
    report = assert_equivariant(model, dtype=dtype)
    assert len(report.rows) == (4 if group == "p4" else 8)


def test_p4m_scalar_baseline_is_not_pseudoscalar_equivariant():
    """The original p4m treats vorticity as a scalar: it fails the true (T0p) symmetry."""
    model = small("p4m", "scalar")
    assert model.rep_in == Reps("3xT0", D4())
    model.rep_in, model.rep_out = Reps("3xT0p", D4()), Reps("T0p", D4())
    report = equivariance_errors(model)
    rotations = [r["error"] for r in report.rows if r["det"] > 0]
    reflections = [r["error"] for r in report.rows if r["det"] < 0]
    assert max(rotations) < 1e-10
    assert min(reflections) > 1e-2
    assert_equivariant(small("p4m", "pseudoscalar"), dtype=torch.float64)


def test_group_spectral_weights_cost_g_c_squared():
    width, modes = 3, 4
    for group, order in (("p4", 4), ("p4m", 8)):
        model = GFNO2d(2, 1, width=width, modes=modes, n_layers=1, group=group)
        spectral = model.blocks[0].spectral
        assert spectral.n_free == order * width ** 2 * (2 * modes - 1) ** 2
        assert spectral.regular_kernel().shape == (width, order, width, order,
                                                   (2 * modes - 1) ** 2)


def test_rebuilt_from_hparams():
    model = small("p4m", "pseudoscalar")
    clone = GFNO2d(**model.hparams)
    clone.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 16, 16)
    assert clone.rep_in == model.rep_in and torch.equal(clone(x), model(x))


def test_gradients_reach_every_parameter():
    model = small("p4m", "pseudoscalar")
    model(torch.randn(2, 3, 16, 16)).pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name


def test_resolution_independent_and_bad_inputs():
    model = small()
    for n in (32, 64):
        assert model(torch.randn(1, 3, n, n)).shape == (1, 1, n, n)
    with pytest.raises(ValueError, match=r"x: expected a field of shape \(batch, 3, X, Y\)"):
        model(torch.randn(1, 2, 16, 16))
    with pytest.raises(ValueError, match="x: .*square"):
        model(torch.randn(1, 3, 16, 8))
    with pytest.raises(ValueError, match="too small for modes"):
        model(torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match="group: expected 'p4' or 'p4m'"):
        GFNO2d(3, 1, group="p6")
    with pytest.raises(ValueError, match="vorticity"):
        GFNO2d(3, 1, vorticity="vector")
    with pytest.raises(ValueError, match="in_channels"):
        GFNO2d(0, 1)
