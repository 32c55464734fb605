"""The energy budget of the vorticity equation and the EnergyBudget head: the budget against
the solver, the head's exactness, its equivariance under every declared element of both
presets, and the pipeline option."""

import math

import pytest
import torch

from grepsnet_sciml import Reps
from grepsnet_sciml.datasets import navier_stokes
from grepsnet_sciml.datasets._ns_spectral import FORCINGS, forcing_field
from grepsnet_sciml.datasets.navier_stokes import dataset_spec
from grepsnet_sciml.models.vorticity_budget import EnergyBudget, energy_budget_terms
from grepsnet_sciml.solvers.config import config_from_dict
from grepsnet_sciml.solvers.data import FieldLayout
from grepsnet_sciml.solvers.evaluate import field_energy
from grepsnet_sciml.solvers.experiment import build_model

N = 16


@pytest.fixture(scope="module")
def solver_run():
    """Four NS-Sym trajectories, 32x32 frames of a 64x64 solve, one time unit apart."""
    return navier_stokes.generate(4, "ns-sym", resolution=32, sim_resolution=64, t_final=8.0,
                                  record_every=1.0, seed=3, progress=False)


def _fields(n=N, frames=3, dtype=torch.float64, seed=0):
    """Smooth random vorticity (spectrum ``exp(-|k|^2 / 8)``), ``(2, frames, n, n)``."""
    noise = torch.randn(2, frames, n, n, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(seed))
    k = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
    smooth = torch.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / 8)
    return torch.fft.ifft2(torch.fft.fft2(noise) * smooth).real.to(dtype)


def test_energy_matches_the_evaluation_energy_and_the_terms_their_definitions():
    w = _fields()
    energy, work, dissipation = energy_budget_terms(w, forcing_field("symmetric", N), 1e-3)
    assert torch.allclose(energy, field_energy(w)[0], rtol=1e-12)
    # P = <psi f> = <w Lap^{-1}(-f)>: f = 0.1 (cos 4 pi x + cos 4 pi y) has |k| = 2 only
    psi_f = forcing_field("symmetric", N) / (4 * math.pi**2 * 4)
    assert torch.allclose(work, (w * psi_f).mean((-2, -1)), rtol=1e-10, atol=1e-14)
    assert torch.allclose(dissipation, 1e-3 * (w**2).mean((-2, -1)), rtol=1e-12)


def test_the_solver_obeys_the_trapezoidal_budget_across_each_stored_step(solver_run):
    w = torch.as_tensor(solver_run["vorticity"].values)  # (sample, time, 32, 32)
    head = EnergyBudget(1e-4, 1.0, "symmetric")
    residual = head.residual(w[:, :-1], w[:, 1:])
    change = field_energy(w)[0].diff(dim=1) / field_energy(w)[0][:, :-1]
    assert float(change.abs().mean()) > 0.05  # the energy moves a lot per step ...
    assert float(residual.abs().max()) < 5e-3  # ... and the budget follows it
    assert float(residual.abs().mean()) < 1e-3


def test_the_head_scales_the_solver_s_own_step_by_about_one(solver_run):
    w = torch.as_tensor(solver_run["vorticity"].values)
    head = EnergyBudget(1e-4, 1.0, "symmetric")
    scale = head.scale(w[:, 3], w[:, 4])
    assert float((scale - 1).abs().max()) < 5e-3
    damped = head.scale(w[:, 3], 0.8 * w[:, 4])  # a prediction that lost energy is rescaled up
    assert torch.allclose(damped, scale / 0.8, rtol=2e-2)


@pytest.mark.parametrize("forcing", [None, *FORCINGS])
@pytest.mark.parametrize("t_out", [1, 3])
def test_every_predicted_step_obeys_the_budget_exactly(forcing, t_out):
    head = EnergyBudget(2e-3, 0.5, forcing, amplitude=0.3)
    x, y = _fields(frames=4), 0.5 * _fields(frames=t_out, seed=1)
    out = head((x,), y)
    assert out.shape == y.shape
    previous = torch.cat([x[:, -1:], out[:, :-1]], 1)
    assert float(head.residual(previous, out).abs().max()) < 1e-12
    ratio = out / y  # one positive factor per sample and frame
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), rtol=1e-10)
    assert bool((ratio > 0).all())


def test_unforced_the_energy_decays_by_the_dissipation():
    head = EnergyBudget(1e-2, 0.1, None)
    x = _fields(frames=1)
    out = head((x,), x.clone())
    e0, _, d0 = energy_budget_terms(x[:, 0], None, 1e-2)
    e1, _, d1 = energy_budget_terms(out[:, 0], None, 1e-2)
    assert bool((e1 < e0).all())
    assert torch.allclose(e1 - e0, -0.05 * (d0 + d1), rtol=1e-12)


def test_the_head_is_resolution_independent_and_differentiable():
    head = EnergyBudget(1e-3, 1.0, "fno")
    for n in (8, 16, 32):
        x, y = _fields(n, frames=2), _fields(n, frames=1, seed=2).requires_grad_()
        out = head((x,), y)
        assert float(head.residual(x[:, -1], out[:, 0]).detach().abs().max()) < 1e-12
        out.square().sum().backward()
        assert torch.isfinite(y.grad).all() and float(y.grad.abs().max()) > 0


def _act(element, group, x):
    return element.act(Reps(f"{x.shape[1]}xT0p", group), x)


@pytest.mark.parametrize("forcing", FORCINGS)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_the_head_commutes_with_every_declared_element(forcing, dtype, tol):
    spec = dataset_spec(forcing)
    head = EnergyBudget(1e-3, 1.0, forcing)
    x, y = _fields(frames=3, dtype=dtype), _fields(frames=2, dtype=dtype, seed=4)
    out = head((x,), y)
    errors = {}
    for element in spec.elements:
        moved = head((_act(element, spec.group, x),), _act(element, spec.group, y))
        expected = _act(element, spec.group, out)
        errors[element.name] = float((moved - expected).norm() / expected.norm())
    assert max(errors.values()) < tol, errors


def test_constructor_errors_name_the_argument():
    with pytest.raises(ValueError, match="viscosity: expected a positive number, got -1"):
        EnergyBudget(-1, 1.0)
    with pytest.raises(ValueError, match="frame_time: expected a positive number, got nan"):
        EnergyBudget(1e-3, float("nan"))
    with pytest.raises(ValueError, match="forcing: expected None or one of"):
        EnergyBudget(1e-3, 1.0, "kolmogorov")


def _config(**model):
    return config_from_dict({"data": {"train": "t.zarr", "t_in": 3},
                             "model": {"name": "grepsfno", "width": 2, "modes": 3,
                                       "n_layers": 1, "energy_budget": True, **model}})


def test_build_model_puts_the_head_after_decoding_with_the_data_s_physics():
    spec = dataset_spec("symmetric")
    layout = FieldLayout(("vorticity",), ("T0p",), spec.group, "symmetric", 0.1, 1e-4, 1.0)
    model = build_model(_config(), "field", layout=layout).double()
    head = model.head
    assert isinstance(head, EnergyBudget)
    assert (head.viscosity, head.frame_time, head.forcing) == (1e-4, 1.0, "symmetric")
    x = _fields(frames=3)
    with torch.no_grad():
        out = model(x)
    assert float(head.residual(x[:, -1], out[:, 0]).abs().max()) < 1e-12
    plain = build_model(_config(energy_budget=False), "field", layout=layout)
    assert plain.head is None


def test_build_model_refuses_data_the_budget_does_not_describe():
    spec = dataset_spec("symmetric")
    no_physics = FieldLayout(("vorticity",), ("T0p",), spec.group, "symmetric", 0.1)
    with pytest.raises(ValueError, match=r"model.energy_budget: needs the data's \['viscosity', "
                                         r"'record_every'\]"):
        build_model(_config(), "field", layout=no_physics)
    two = FieldLayout(("vorticity", "velocity"), ("T0p", "T1"), spec.group, "symmetric", 0.1,
                      1e-4, 1.0)
    with pytest.raises(ValueError, match="model.energy_budget: the budget is the vorticity "
                                         "equation's"):
        build_model(_config(), "field", layout=two)


def test_the_layout_reads_the_physics_from_the_data_and_keeps_it_in_checkpoints(solver_run):
    from grepsnet_sciml.solvers.data import field_layout

    layout = field_layout(solver_run)
    assert (layout.viscosity, layout.frame_time) == (1e-4, 1.0)
    assert FieldLayout.from_json(layout.to_json()) == layout
    old = {k: v for k, v in layout.to_json().items() if k not in ("viscosity", "frame_time")}
    assert FieldLayout.from_json(old).viscosity is None  # checkpoints written before
