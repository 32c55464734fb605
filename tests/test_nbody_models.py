"""GRepsNBody and EGNN: E(3) x S_n equivariance, shapes, gradients, batching, bad input."""

import pytest
import torch

from grepsnet_sciml.groups import O
from grepsnet_sciml.layers import tensor_ops as ops
from grepsnet_sciml.models.egnn import EGNN
from grepsnet_sciml.models.energy import coulomb_energy, coulomb_potential, project_energy
from grepsnet_sciml.models.nbody import GRepsNBody, structure_contraction
from grepsnet_sciml.testing import EquivarianceError, assert_equivariant, equivariance_errors

SMALL = {
    "GRepsNBody": lambda **kw: GRepsNBody(hidden=16, vectors=4, tensors=2, n_layers=2, **kw),
    "EGNN": lambda **kw: EGNN(hidden=16, n_layers=2, **kw),
}
DEFAULT = {"GRepsNBody": GRepsNBody, "EGNN": EGNN}


def _elements(n: int = 6) -> torch.Tensor:
    """Random rotations and reflections (both signs of det), float64."""
    gen = torch.Generator().manual_seed(1)
    q = O(3).sample(n, generator=gen)
    sign = torch.tensor([1.0 if k % 2 == 0 else -1.0 for k in range(n)], dtype=torch.float64)
    q[:, :, 0] *= (torch.sign(torch.linalg.det(q)) * sign)[:, None]
    return q


def _inputs(batch=3, n=5, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, 3, generator=gen, dtype=dtype)
    v = 0.5 * torch.randn(batch, n, 3, generator=gen, dtype=dtype)
    q = torch.randint(0, 2, (batch, n), generator=gen).to(dtype) * 2 - 1
    return x, v, q


def _harness(x, v, q):
    """Inputs in the harness's layout: charges as a T0 feature ``(batch, n, 1)``."""
    return x, v, q[..., None]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", ["GRepsNBody", "EGNN"])
def test_default_models_equivariant(name, dtype):
    elements = _elements()
    assert set(torch.sign(torch.linalg.det(elements)).tolist()) == {-1.0, 1.0}
    report = assert_equivariant(DEFAULT[name](), _harness(*_inputs(dtype=dtype)), dtype=dtype,
                                elements=elements)
    assert len(report.rows) == len(elements)
    assert all(r["translation"] == "yes" and r["permutation"] == "yes" for r in report.rows)


@pytest.mark.parametrize("name", ["GRepsNBody", "EGNN"])
@pytest.mark.parametrize(
    "options",
    [{"graph": "knn", "k": 2}, {"graph": "radius", "radius": 1.5}, {"velocity_output": True}],
    ids=["knn", "radius", "velocity"],
)
def test_variants_equivariant(name, options, dtype):
    model = SMALL[name](**options)
    assert_equivariant(
        model, _harness(*_inputs(n=6, dtype=dtype)), dtype=dtype, elements=_elements(4)
    )


def test_random_harness_inputs_accepted():
    """The harness's own random inputs (charges as (batch, n, 1)) work unchanged."""
    for name in SMALL:
        assert_equivariant(SMALL[name](), dtype=torch.float64)


class _RotationBroken(GRepsNBody):
    def forward(self, positions, velocities, charges):
        return super().forward(positions, velocities, charges) + 0.1 * velocities[..., [1, 0, 2]]


class _TranslationBroken(GRepsNBody):
    def forward(self, positions, velocities, charges):
        return super().forward(positions, velocities, charges) + 0.1 * positions


class _PermutationBroken(GRepsNBody):
    def forward(self, positions, velocities, charges):
        index = torch.arange(positions.shape[1], dtype=positions.dtype)
        return super().forward(positions, velocities, charges) + 0.1 * index[:, None] * velocities


@pytest.mark.parametrize(
    "broken, keep",
    [
        (_RotationBroken, {"translations": False, "permutations": False}),
        (_TranslationBroken, {"permutations": False, "elements": torch.eye(3)[None]}),
        (_PermutationBroken, {"translations": False, "elements": torch.eye(3)[None]}),
    ],
    ids=["rotation", "translation", "permutation"],
)
def test_broken_variants_fail(broken, keep, dtype):
    """Each variant breaks one symmetry; the harness catches it with only that one tested."""
    model = broken(hidden=16, vectors=4, tensors=2, n_layers=2)
    inputs = _harness(*_inputs(dtype=dtype))
    options = {"elements": _elements(4), **keep}
    with pytest.raises(EquivarianceError):
        assert_equivariant(model, inputs, dtype=dtype, **options)
    assert equivariance_errors(model, inputs, dtype=dtype, **options).max_error > 1e-3


@pytest.mark.parametrize("name", ["GRepsNBody", "EGNN"])
@pytest.mark.parametrize("n", [2, 7])
def test_shapes_and_charge_layouts(name, n):
    model = SMALL[name]()
    x, v, q = _inputs(batch=4, n=n, dtype=torch.float32)
    out = model(x, v, q)
    assert out.shape == (4, n, 3) and out.dtype == torch.float32
    torch.testing.assert_close(model(x, v, q[..., None]), out, rtol=0, atol=0)
    pos, vel = SMALL[name](velocity_output=True)(x, v, q)
    assert pos.shape == vel.shape == (4, n, 3)


@pytest.mark.parametrize("name", ["GRepsNBody", "EGNN"])
def test_charge_flip_invariance(name):
    """Charges enter through q_i q_j only, like the Coulomb force: flipping all is a no-op."""
    model = DEFAULT[name]().double()
    x, v, q = _inputs()
    torch.testing.assert_close(model(x, v, -q), model(x, v, q), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(model(x, v, q * torch.tensor([1.0, -1, 1, 1, 1]).double()),
                              model(x, v, q))


def test_charge_edges_off_ignores_charges():
    model = SMALL["GRepsNBody"](charge_edges=False).double()
    x, v, q = _inputs()
    torch.testing.assert_close(model(x, v, q), model(x, v, torch.randn_like(q)), rtol=0, atol=0)
    assert_equivariant(model, _harness(x, v, q), elements=_elements(2))


@pytest.mark.parametrize("name", ["GRepsNBody", "EGNN"])
@pytest.mark.parametrize("velocity_output", [False, True])
def test_gradients_reach_all_parameters(name, velocity_output):
    model = DEFAULT[name](velocity_output=velocity_output)
    x, v, q = _inputs(dtype=torch.float32)
    out = model(x, v, q)
    loss = sum((o**2).sum() for o in out) if velocity_output else (out**2).sum()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert p.grad.abs().max() > 0, pname


@pytest.mark.parametrize("name", ["GRepsNBody", "EGNN"])
@pytest.mark.parametrize("options", [{}, {"graph": "knn", "k": 3}], ids=["full", "knn"])
def test_batched_equals_per_sample(name, options):
    model = SMALL[name](**options).double()
    x, v, q = _inputs(batch=4, n=6)
    out = model(x, v, q)
    single = torch.cat([model(x[i : i + 1], v[i : i + 1], q[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(out, single, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["GRepsNBody", "EGNN"])
def test_complete_graphs_agree(name):
    """A k-NN graph with k = n - 1 and a radius graph with a huge radius are the full graph."""
    full = SMALL[name]().double()
    x, v, q = _inputs(n=5)
    ref = full(x, v, q)
    for options in ({"graph": "knn", "k": 4}, {"graph": "radius", "radius": 1e3}):
        other = SMALL[name](**options).double()
        other.load_state_dict(full.state_dict())
        torch.testing.assert_close(other(x, v, q), ref, rtol=1e-12, atol=1e-12)
    near = SMALL[name](graph="knn", k=1).double()
    near.load_state_dict(full.state_dict())
    assert not torch.allclose(near(x, v, q), ref)


def test_structure_contraction_matches_explicit_tensor():
    """The fused T2 path equals forming T = mean_j gamma r r^T with the core's outer/contract."""
    gen = torch.Generator().manual_seed(3)
    b, n, k, c = 2, 4, 3, 5
    gamma = torch.randn(b, n, k, c, generator=gen, dtype=torch.float64)
    r = torch.randn(b, n, k, 3, generator=gen, dtype=torch.float64)
    w = torch.randn(b, n, c, 3, generator=gen, dtype=torch.float64)
    tw, quad = structure_contraction(gamma, r.permute(3, 0, 1, 2), w.permute(3, 0, 1, 2))
    eta = O(3).metric
    rr = ops.outer(r[..., None, :], r[..., None, :])[..., 0, 0, :, :]  # (b, n, k, 3, 3)
    tensor = (gamma[..., None, None] * rr[..., None, :, :]).mean(2)  # (b, n, c, 3, 3)
    ref = ops.contract(tensor, w, eta).diagonal(dim1=-3, dim2=-2).movedim(-1, -2)  # (b,n,c,3)
    torch.testing.assert_close(tw.permute(1, 2, 3, 0), ref, rtol=1e-12, atol=1e-12)
    ref_quad = ops.inner(w, ref, eta).diagonal(dim1=-2, dim2=-1)
    torch.testing.assert_close(quad, ref_quad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["GRepsNBody", "EGNN"])
def test_bad_input(name):
    model = SMALL[name]()
    x, v, q = _inputs(dtype=torch.float32)
    cases = [
        ((x, v[:, :4], q), "velocities: expected the shape of positions"),
        ((x[..., :2], v[..., :2], q), r"positions: expected shape \(batch, n_particles, 3\)"),
        ((x, v, None), "charges: expected a tensor of shape"),
        ((x, v, q[:, :4]), r"charges: expected shape \(3, 5\) or \(3, 5, 1\)"),
        ((x[:, :1], v[:, :1], q[:, :1]), "positions: expected at least 2 particles"),
    ]
    for name_, arg in (("positions", 0), ("velocities", 1), ("charges", 2)):
        bad = [t.clone() for t in (x, v, q)]
        bad[arg][0, 0] = float("nan")
        cases.append((tuple(bad), f"{name_}: contains NaN"))
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            model(*args)
    fixed = SMALL[name](n_particles=4)
    with pytest.raises(ValueError, match="built for n_particles=4, got 5"):
        fixed(x, v, q)
    with pytest.raises(ValueError, match=r"k: expected 1 <= k <= n_particles - 1 = 4, got 5"):
        SMALL[name](graph="knn", k=5)(x, v, q)
    with pytest.raises(ValueError, match="graph: expected one of"):
        SMALL[name](graph="delaunay")
    for radius in (-1.0, None):
        with pytest.raises(ValueError, match="radius: expected a positive cut-off"):
            SMALL[name](graph="radius", radius=radius)
    with pytest.raises(ValueError, match="k: expected 1 <= k"):
        SMALL[name](graph="knn")


def test_conserve_momentum_is_exact_and_keeps_equivariance(dtype):
    model = SMALL["GRepsNBody"](velocity_output=True, conserve_momentum=True).to(dtype)
    x, v, q = _inputs(n=6, dtype=dtype)
    with torch.no_grad():
        _, v_out = model(x, v, q)
    drift = (v_out.sum(1) - v.sum(1)).norm(dim=-1) / v.norm(dim=-1).sum(1)
    assert float(drift.max()) < (1e-14 if dtype == torch.float64 else 1e-6)
    assert SMALL["GRepsNBody"](velocity_output=True).conserve_momentum  # the default
    assert not SMALL["GRepsNBody"]().conserve_momentum
    free = SMALL["GRepsNBody"](velocity_output=True, conserve_momentum=False).to(dtype)
    free.load_state_dict(model.state_dict())
    with torch.no_grad():
        _, v_free = free(x, v, q)
    assert float((v_free.sum(1) - v.sum(1)).norm()) > 1e-4  # not conserved without it
    assert_equivariant(model, _harness(x, v, q), dtype=dtype, elements=_elements(4))


def test_conserve_momentum_needs_velocity_outputs():
    with pytest.raises(ValueError, match="conserve_momentum: needs velocity_output"):
        GRepsNBody(conserve_momentum=True)


def test_conserve_energy_is_exact_and_keeps_equivariance_and_momentum(dtype):
    x, v, q = _inputs(n=6, dtype=dtype)
    for softening in (0.0, 0.1):
        model = SMALL["GRepsNBody"](velocity_output=True, conserve_energy=True,
                                    energy_softening=softening).to(dtype)
        with torch.no_grad():
            x_out, v_out = model(x, v, q)
        e0, e1 = coulomb_energy(x, v, q, softening), coulomb_energy(x_out, v_out, q, softening)
        assert float(((e1 - e0).abs() / e0.abs()).max()) < (1e-12 if dtype == torch.float64
                                                             else 1e-5)
        drift = (v_out.sum(1) - v.sum(1)).norm(dim=-1) / v.norm(dim=-1).sum(1)
        assert float(drift.max()) < (1e-14 if dtype == torch.float64 else 1e-6)
        assert_equivariant(model, _harness(x, v, q), dtype=dtype, elements=_elements(4))
    free = SMALL["GRepsNBody"](velocity_output=True).to(dtype)
    free.load_state_dict(model.state_dict())
    with torch.no_grad():
        x_free, v_free = free(x, v, q)
    assert torch.equal(x_free, x_out)  # positions are not touched
    assert float((coulomb_energy(x_free, v_free, q, 0.1) - e0).abs().max()) > 1e-4


def test_project_energy_reaches_the_target_and_keeps_the_mean_velocity():
    x, v, q = _inputs(batch=4, n=5)
    target = coulomb_energy(x, v, q, 0.1) + torch.tensor([0.0, 0.5, -0.05, 2.0],
                                                           dtype=torch.float64)
    w = project_energy(x, 1.7 * v + 0.1, target, q, 0.1)
    assert torch.allclose(coulomb_energy(x, w, q, 0.1), target, rtol=0, atol=1e-12)
    assert torch.allclose(w.mean(1), (1.7 * v + 0.1).mean(1), rtol=0, atol=1e-14)
    # no energy left for the relative motion: every particle moves with the mean velocity
    low = coulomb_potential(x, q, 0.1) - 1.0
    w = project_energy(x, v, low, q, 0.1)
    assert torch.allclose(w, v.mean(1, keepdim=True).expand_as(w), rtol=0, atol=1e-14)


def test_coulomb_energy_matches_explicit_pairs():
    x, v, q = _inputs(batch=2, n=4)
    for softening in (0.0, 0.3):
        expected = 0.5 * (v ** 2).sum((1, 2))
        for i in range(4):
            for j in range(i + 1, 4):
                r2 = ((x[:, i] - x[:, j]) ** 2).sum(-1)
                expected = expected + q[:, i] * q[:, j] / (r2 + softening ** 2).sqrt()
        assert torch.allclose(coulomb_energy(x, v, q, softening), expected, rtol=1e-14)


@pytest.mark.parametrize("options, match", [
    ({"conserve_energy": True}, "conserve_energy: needs velocity_output"),
    ({"velocity_output": True, "conserve_energy": True, "energy_softening": -0.1},
     "energy_softening: expected a number >= 0"),
    ({"velocity_output": True, "energy_softening": "auto"}, "energy_softening: expected"),
])
def test_conserve_energy_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        GRepsNBody(**options)


def test_inverse_radial_is_equivariant_bounded_and_checked(dtype):
    model = SMALL["GRepsNBody"](radial="inverse", velocity_output=True).to(dtype)
    x, v, q = _inputs(dtype=dtype)
    assert_equivariant(model, _harness(x, v, q), dtype=dtype, elements=_elements(4))
    squared = SMALL["GRepsNBody"](velocity_output=True).to(dtype)
    squared.load_state_dict(model.state_dict())
    with torch.no_grad():  # the same weights read other distance features
        assert not torch.allclose(model(x, v, q)[0], squared(x, v, q)[0])
        # spread apart 100x, the particles' features saturate instead of growing as r^2
        far = [m(100 * x, v, q)[1] for m in (model, squared)]
    assert float(far[0].abs().max()) < 10 * float(v.abs().max())
    assert not float(far[1].abs().max()) <= float(far[0].abs().max())  # larger, or NaN
    with pytest.raises(ValueError, match="radial: expected one of"):
        GRepsNBody(radial="cubic")

