"""The forcing channel: exact equivariance under the declared elements (with their shifts),
resolution independence, and clear errors."""

import pytest
import torch

from grepsnet_sciml import Reps
from grepsnet_sciml.datasets._ns_spectral import FORCINGS, forcing_field
from grepsnet_sciml.datasets.navier_stokes import dataset_spec
from grepsnet_sciml.solvers.forcing import ForcingInput, forcing_of
from grepsnet_sciml.solvers.registry import build_core, model_config

N = 16


def _model(forcing: str, dtype=torch.float64, name="grepsfno", mode="on", **extra):
    spec = dataset_spec(forcing)
    cfg = model_config(name, {"width": 2, "modes": 4, "n_layers": 2, "forcing_channel": mode,
                              **extra})
    group = spec.group
    torch.manual_seed(0)
    model = build_core(cfg, Reps("3xT0p", group), Reps("T0p", group), (forcing, 0.1))
    return model.to(dtype), spec


def _error(model, x, element, reps_in, reps_out):
    with torch.no_grad():
        lhs = model(element.act(reps_in, x))
        rhs = element.act(reps_out, model(x))
    return float((lhs - rhs).norm() / rhs.norm())


@pytest.mark.parametrize("forcing", FORCINGS)
def test_named_forcings_are_invariant_under_their_declared_elements(forcing):
    spec = dataset_spec(forcing)
    f = forcing_field(forcing, N)[None, None]
    for element in spec.elements:
        moved = element.act(Reps("T0p", spec.group), f)
        assert torch.allclose(moved, f, atol=1e-14), element.name


@pytest.mark.parametrize("forcing", FORCINGS)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_forced_grepsfno_is_equivariant_under_every_declared_element(forcing, dtype, tol):
    model, spec = _model(forcing, dtype, spectral_mixing="group", regular_mixing="conv")
    assert isinstance(model, ForcingInput) and not model.translation_equivariant
    reps_in, reps_out = Reps("3xT0p", spec.group), Reps("T0p", spec.group)
    x = torch.randn(2, 3, N, N, dtype=dtype, generator=torch.Generator().manual_seed(1))
    errors = {e.name: _error(model, x, e, reps_in, reps_out) for e in spec.elements}
    assert max(errors.values()) < tol, errors


def test_the_forcing_channel_is_seen_and_breaks_other_shifts():
    model, spec = _model("symmetric")
    reps = Reps("3xT0p", spec.group)
    x = torch.randn(2, 3, N, N, dtype=torch.float64)
    with torch.no_grad():
        moved = model(torch.roll(x, (1, 0), (-2, -1)))
        expected = torch.roll(model(x), (1, 0), (-2, -1))
    # a shift of one cell is not declared: the forcing does not move with the input
    assert float((moved - expected).norm() / expected.norm()) > 1e-3
    reflection = next(e for e in spec.elements if e.name == "m")
    pure = type(reflection)("m", reflection.matrix, (0.0, 0.0))  # without its declared shift
    assert _error(model, x, pure, reps, Reps("T0p", spec.group)) > 1e-3


def test_forcing_is_computed_at_each_resolution():
    model, _ = _model("symmetric")
    for n in (8, 16, 32):
        f = model.field(n, torch.float64, "cpu")
        assert f.shape == (1, 1, n, n)
        assert torch.allclose(f[0, 0], forcing_field("symmetric", n))
        assert model(torch.randn(1, 3, n, n, dtype=torch.float64)).shape == (1, 1, n, n)


def test_auto_uses_the_forcing_only_when_the_data_name_one():
    cfg = model_config("grepsfno", {"width": 2, "modes": 4, "n_layers": 1,
                                    "forcing_channel": "auto"})
    reps_in, reps_out = Reps("3xT0p", dataset_spec("symmetric").group), None
    reps_out = Reps("T0p", reps_in.group)
    assert not isinstance(build_core(cfg, reps_in, reps_out), ForcingInput)
    assert isinstance(build_core(cfg, reps_in, reps_out, ("symmetric", 0.1)), ForcingInput)


def test_on_without_a_named_forcing_is_a_clear_error():
    cfg = model_config("grepsfno", {"width": 2, "modes": 4, "n_layers": 1,
                                    "forcing_channel": "on"})
    group = dataset_spec("symmetric").group
    with pytest.raises(ValueError, match="forcing_channel: 'on' needs data"):
        build_core(cfg, Reps("3xT0p", group), Reps("T0p", group))
    with pytest.raises(ValueError, match="forcing_channel"):
        model_config("grepsfno", {"forcing_channel": "yes"})
    with pytest.raises(ValueError, match="declares forcing 'array'"):
        forcing_of({"forcing": "array"}, "store.zarr")
    assert forcing_of({"forcing": "fno", "forcing_amplitude": 0.2}) == ("fno", 0.2)


def test_wrong_input_names_the_argument():
    model, _ = _model("symmetric")
    with pytest.raises(ValueError, match="x"):
        model(torch.randn(1, 4, N, N, dtype=torch.float64))  # 4 channels, 3 expected
