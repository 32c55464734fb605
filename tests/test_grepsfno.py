"""GRepsFNO2d: exact C4/D4 equivariance, pseudo-scalar vorticity, attrs, resolution, errors."""

import json

import pytest
import torch

from grepsnet_sciml import Reps
from grepsnet_sciml.groups import C4, D2, D4
from grepsnet_sciml.models.grepsfno import GRepsFNO2d, reps_from_attrs
from grepsnet_sciml.testing import assert_equivariant, equivariance_errors

ATTRS = {"group": "D4()", "representations": json.dumps({"vorticity": "T0p", "velocity": "T1"})}


def small(group, channels="regular", rep_in="3xT0p + T1", **kwargs):
    torch.manual_seed(0)
    kwargs = {"width": 2, "modes": 4, "n_layers": 2, "projection_ratio": 2, **kwargs}
    return GRepsFNO2d(rep_in, "T0p", group=group, channels=channels, **kwargs)


@pytest.mark.parametrize("group", [C4(), D4(), D2("diagonal")], ids=["C4", "D4", "D2diag"])
def test_regular_model_equivariant(group, dtype):
    report = assert_equivariant(small(group), dtype=dtype)
    assert len(report.rows) == group.order
    assert all(isinstance(r["translation"], tuple) for r in report.rows)


@pytest.mark.parametrize("channels", ["tensor", "mixed"])
def test_tensor_and_mixed_models_equivariant(channels, dtype):
    assert_equivariant(small(D4(), channels, n_layers=1), dtype=dtype)


def test_grepsnet_pointwise_blocks_equivariant(dtype):
    """The core's GRepsLayer as the per-block pointwise network."""
    model = small(D4(), "mixed", n_layers=1, pointwise="grepsnet")
    assert_equivariant(model, dtype=dtype)


@pytest.mark.parametrize("channels", ["regular", "mixed"])
def test_narrow_block_mlp_equivariant(channels, dtype):
    """``mlp_width``: the blocks' pointwise MLP through fewer copies of each kind."""
    model = small(D4(), channels, width=3, n_layers=1, mlp_width=1)
    mid = model.blocks[0].mlp[1].rep_in
    assert mid.dim == {"regular": 8, "mixed": 1 + 1 + 2 + 8}[channels]
    assert_equivariant(model, dtype=dtype)
    assert model.hparams["mlp_width"] == 1
    assert GRepsFNO2d.from_hparams(model.hparams).blocks[0].mlp[1].rep_in == mid


def test_block_mlp_width_follows_the_expansion():
    """``mlp_expansion`` (default 2/3): ``round(mlp_expansion width)`` copies, at least one;
    ``mlp_width`` and an explicit ``hidden`` take precedence."""
    rep_in, rep_out = Reps("3xT0p", D4()), Reps("T0p", D4())
    for width, expansion, copies in ((6, 2 / 3, 4), (12, 2 / 3, 8), (5, 1.0, 5), (1, 0.2, 1)):
        model = GRepsFNO2d(rep_in, rep_out, width=width, modes=3, n_layers=1,
                           mlp_expansion=expansion)
        assert model.blocks[0].mlp[1].rep_in == Reps(f"{copies}xR", D4())
        assert model.hparams["mlp_width"] == copies
    model = GRepsFNO2d(rep_in, rep_out, width=6, modes=3, n_layers=1, mlp_width=2)
    assert model.blocks[0].mlp[1].rep_in == Reps("2xR", D4())
    model = GRepsFNO2d(rep_in, rep_out, hidden="2xT0p + 3xR", modes=3, n_layers=1)
    assert model.blocks[0].mlp[1].rep_in == Reps("2xT0p + 3xR", D4())
    for bad in (0, -1.0, float("inf"), float("nan"), True, "2/3"):
        with pytest.raises(ValueError, match="mlp_expansion: expected a positive finite number"):
            GRepsFNO2d(rep_in, rep_out, modes=3, mlp_expansion=bad)


def test_dealiased_output_equivariant_and_in_the_solvers_band(dtype):
    model = small(D4(), n_layers=1, output_dealias=True)
    assert_equivariant(model, dtype=dtype)
    out = model(torch.randn(2, 5, 16, 16))
    spectrum = torch.fft.rfft2(out).abs()
    k = torch.fft.fftfreq(16, 1.0 / 16).abs()
    outside = (k[:, None] > 16 / 3) | (k[None, :9] > 16 / 3)
    assert spectrum[..., outside].max() < 1e-5 * spectrum.max()
    assert GRepsFNO2d.from_hparams(model.hparams).dealias is not None


def test_vorticity_changes_sign_under_reflections():
    model = small(D4(), rep_in="3xT0p").double()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    y = model(x)
    group = D4()
    for a in range(group.order):
        det = float(torch.linalg.det(group.elements()[a]))
        out = model(det * group.act_grid(a, x))
        assert torch.allclose(out, det * group.act_grid(a, y), atol=1e-10)
        if det < 0:  # a model treating vorticity as a scalar would give +moved
            assert (out - group.act_grid(a, y)).abs().max() > 1e-3


def test_radial_embedding_keeps_point_group_but_not_translations():
    model = small(D4(), radial_embedding=True)
    assert model.translation_equivariant is False
    assert_equivariant(model, dtype=torch.float64)
    model.translation_equivariant = True  # pretend: the harness now also shifts the grid
    assert equivariance_errors(model).max_error > 1e-3


def test_resolution_independent():
    model = small(D4())
    for n in (32, 64):
        y = model(torch.randn(2, model.rep_in.dim, n, n))
        assert y.shape == (2, 1, n, n) and torch.isfinite(y).all()


def test_gradients_reach_every_parameter():
    for channels in ("regular", "mixed"):
        model = small(D4(), channels)
        model(torch.randn(2, model.rep_in.dim, 16, 16)).pow(2).mean().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().max() > 0, (channels, name)


def test_built_from_dataset_attrs():
    rep_in, rep_out = reps_from_attrs(ATTRS, inputs=("vorticity", "velocity"), t_in=10)
    assert rep_in == Reps("10xT0p + 10xT1", D4()) and rep_out == Reps("T0p", D4())
    model = GRepsFNO2d.from_attrs(ATTRS, t_in=4, width=2, modes=4, n_layers=1)
    assert model.rep_in == Reps("4xT0p", D4()) and model.rep_out == Reps("T0p", D4())
    ns = {"group": "D2('diagonal')", "representations": ATTRS["representations"]}
    assert GRepsFNO2d.from_attrs(ns, t_in=2, width=1, modes=2, n_layers=1).rep_in.group == D2(
        "diagonal")
    assert model.domain == "grid" and model.translation_equivariant is True
    assert 0 < model.n_free_parameters() < sum(p.numel() for p in model.parameters())


def test_rebuilt_from_hparams_round_trip():
    model = small(D4(), "mixed", radial_embedding=True)
    text = json.dumps(model.hparams)
    clone = GRepsFNO2d.from_hparams(json.loads(text))
    clone.load_state_dict(model.state_dict())
    x = torch.randn(1, model.rep_in.dim, 16, 16)
    assert clone.rep_in == model.rep_in and clone.hidden == model.hidden
    assert torch.equal(clone(x), model(x))


def test_bad_inputs():
    model = small(D4())
    with pytest.raises(ValueError, match=r"x: expected a field of shape \(batch, 5, X, Y\)"):
        model(torch.randn(1, 4, 16, 16))
    with pytest.raises(ValueError, match="x: .*square"):
        model(torch.randn(1, 5, 16, 18))
    with pytest.raises(ValueError, match="x: expected an even resolution"):
        model(torch.randn(1, 5, 15, 15))
    with pytest.raises(ValueError, match="too small for modes"):
        model(torch.randn(1, 5, 6, 6))
    with pytest.raises(ValueError, match="channels"):
        GRepsFNO2d("T0p", "T0p", group=D4(), channels="dense")
    with pytest.raises(ValueError, match="group: needed"):
        GRepsFNO2d("T0p", "T0p")
    with pytest.raises(ValueError, match="group: C4"):
        GRepsFNO2d(Reps("T0p", D4()), Reps("T0p", D4()), group=C4())
    with pytest.raises(ValueError, match="pointwise"):
        GRepsFNO2d("T0p", "T0p", group=D4(), pointwise="mlp")
    with pytest.raises(ValueError, match="width"):
        GRepsFNO2d("T0p", "T0p", group=D4(), width=0)
    with pytest.raises(ValueError, match="mlp_width: expected a positive integer, got 0"):
        GRepsFNO2d("T0p", "T0p", group=D4(), mlp_width=0)
    with pytest.raises(ValueError, match="mlp_hidden: only the 'linear' mlp"):
        GRepsFNO2d("T0p", "T0p", group=D4(), pointwise="grepsnet", mlp_width=2)
    with pytest.raises(ValueError, match="attrs: missing 'group'"):
        reps_from_attrs({"representations": "{}"})
    with pytest.raises(ValueError, match="inputs/outputs: 'pressure'"):
        reps_from_attrs(ATTRS, inputs=("pressure",))
