"""Tensor operations and G-RepsNet layers: equivariance, slow references, gradients."""

import types

import pytest
import torch
from torch import nn

from grepsnet_sciml import Reps
from grepsnet_sciml.groups import C4, D2, D4, SO, FiniteGroup, Lorentz, O, Permutation, PlanarGroup
from grepsnet_sciml.layers import (
    EquivariantLayerNorm,
    EquivariantLinear,
    GatedActivation,
    GRepsLayer,
    GRepsMLP,
    NormActivation,
)
from grepsnet_sciml.layers import tensor_ops as ops
from grepsnet_sciml.layers.grepsnet import squash
from grepsnet_sciml.testing import assert_equivariant

GROUPS = [C4(), D4(), D2("diagonal"), O(3), O(5), SO(3), Lorentz(), Permutation(3)]
PLANAR = [g for g in GROUPS if isinstance(g, PlanarGroup)]
PATH_GROUPS = [O(3), Lorentz(), Permutation(3)]  # EquivariantLinear's path weight space
GRID = {"grid_size": 4}


def _finite(group):
    return isinstance(group, FiniteGroup)


def _planar(group):
    return isinstance(group, PlanarGroup)


def _mixed(group):
    return Reps("2xT0 + T0p + 2xT1 + T2" + (" + R" if _finite(group) else ""), group)


def _randomize_biases(module, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "bias" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))


def _check(module, dtype, grid=False):
    """assert_equivariant on points and, for planar groups, on grids."""
    assert_equivariant(module, dtype=dtype)
    if grid:
        module.domain = "grid"
        assert_equivariant(module, dtype=dtype, **GRID)
        module.domain = "point"


# ----------------------------------------------------------------------------------------
# tensor operations
# ----------------------------------------------------------------------------------------
class OpModule(nn.Module):
    """Wrap a function of parts as a module the harness can check."""

    def __init__(self, rep_in, rep_out, fn):
        super().__init__()
        self.rep_in, self.rep_out, self.fn = rep_in, rep_out, fn

    def forward(self, x):
        eta = self.rep_in.group.metric.to(x.dtype)
        out = self.fn(ops.split(x, self.rep_in), eta)
        return ops.join(out, self.rep_out)


def _flat(x, lead=1):
    return x.flatten(lead)


OPS = {
    "inner": ("3xT1", "6xT0", lambda p, e: {"T0": _flat(ops.inner(p["T1"][:, :2], p["T1"], e))}),
    "gram": ("3xT1", "9xT0", lambda p, e: {"T0": _flat(ops.gram(p["T1"], e))}),
    "norms": ("3xT1", "6xT0", lambda p, e: {
        "T0": torch.cat([ops.sq_norm(p["T1"], e), ops.norm(p["T1"], e, 1e-6)], -1)}),
    "trace_frobenius": ("2xT2", "6xT0", lambda p, e: {"T0": torch.cat(
        [ops.trace(p["T2"], e), ops.frobenius_sq(p["T2"], e), ops.frobenius(p["T2"], e)], -1)}),
    "gate": ("2xT0 + T0p + 2xT1 + 2xT2", "T0p + 2xT1 + 2xT2", lambda p, e: {
        "T0p": ops.gate(p["T0"][:, :1], p["T0p"]),
        "T1": ops.gate(p["T0"], p["T1"]),
        "T2": ops.gate(p["T0"], p["T2"])}),
    "outer": ("2xT1", "4xT2", lambda p, e: {"T2": ops.outer(p["T1"], p["T1"]).flatten(1, 2)}),
    "scalar_to_t2": ("2xT0", "2xT2", lambda p, e: {"T2": ops.scalar_to_t2(p["T0"], e)}),
    "contract": ("2xT2 + 3xT1", "6xT1", lambda p, e: {
        "T1": ops.contract(p["T2"], p["T1"], e).flatten(1, 2)}),
    "transpose": ("2xT2", "2xT2", lambda p, e: {"T2": ops.transpose(p["T2"])}),
    "pseudo_products": ("2xT0p + 2xT0", "4xT0 + 4xT0p", lambda p, e: {
        "T0": _flat(ops.pseudo_products(p["T0p"], p["T0p"])),
        "T0p": _flat(ops.pseudo_products(p["T0p"], p["T0"]))}),
}
OPS_FINITE = {
    "regular": ("2xR + 2xT0", "2xT0 + 2xR", lambda p, e: {
        "T0": ops.regular_pool(p["R"]), "R": ops.regular_broadcast(p["T0"], p["R"].shape[-1])}),
}
OPS_2D = {
    "levi_civita_2d": ("2xT1 + T2 + T0p", "4xT0p + T0p + 2xT1", lambda p, e: {
        "T0p": torch.cat([_flat(ops.cross_2d(p["T1"], p["T1"])), ops.levi_civita_2d(p["T2"])], -1),
        "T1": p["T0p"][..., None] * ops.hodge_2d(p["T1"])}),
}


def _op_cases():
    for group in GROUPS:
        table = dict(OPS)
        if _finite(group):
            table.update(OPS_FINITE)
        if group.d == 2:
            table.update(OPS_2D)
        for name, case in table.items():
            yield pytest.param(group, *case, id=f"{name}-{group!r}")


@pytest.mark.parametrize("group,spec_in,spec_out,fn", list(_op_cases()))
def test_tensor_ops_are_equivariant(group, spec_in, spec_out, fn, dtype):
    module = OpModule(Reps(spec_in, group), Reps(spec_out, group), fn)
    assert_equivariant(module, dtype=dtype)


def test_tensor_ops_match_slow_references():
    gen = torch.Generator().manual_seed(0)
    for group in (O(3), Lorentz(), D4()):
        eta, d = group.metric, group.d
        u = torch.randn(2, 3, d, generator=gen, dtype=torch.float64)
        m = torch.randn(2, 2, d, d, generator=gen, dtype=torch.float64)
        s = torch.randn(2, 2, generator=gen, dtype=torch.float64)
        gram, outer = ops.gram(u, eta), ops.outer(u, u)
        contract = ops.contract(m, u, eta)
        for b in range(2):
            for i in range(3):
                assert torch.isclose(ops.sq_norm(u, eta)[b, i], u[b, i] @ eta @ u[b, i])
                for j in range(3):
                    assert torch.isclose(gram[b, i, j], u[b, i] @ eta @ u[b, j])
                    assert torch.allclose(outer[b, i, j], torch.outer(u[b, i], u[b, j]))
            for c in range(2):
                mc = m[b, c]
                assert torch.isclose(ops.trace(m, eta)[b, c], torch.trace(mc @ eta))
                ref = torch.trace(mc @ eta @ mc.T @ eta)
                assert torch.isclose(ops.frobenius_sq(m, eta)[b, c], ref)
                assert torch.isclose(ops.frobenius(m, eta)[b, c], ref.abs().sqrt())
                assert torch.allclose(ops.scalar_to_t2(s, eta)[b, c], s[b, c] * eta.inverse())
                for j in range(3):
                    assert torch.allclose(contract[b, c, j], mc @ eta @ u[b, j])
        assert torch.equal(ops.transpose(m)[1, 0], m[1, 0].T)
    v = torch.randn(4, 3, 2, generator=gen, dtype=torch.float64)
    cross = ops.cross_2d(v, v)
    assert torch.allclose(cross[2, 0, 1], torch.linalg.det(torch.stack([v[2, 0], v[2, 1]])))
    assert torch.allclose(ops.hodge_2d(v)[1, 2], torch.tensor([-v[1, 2, 1], v[1, 2, 0]]))
    m2 = torch.randn(3, 2, 2, dtype=torch.float64)
    assert torch.allclose(ops.levi_civita_2d(m2), m2[:, 0, 1] - m2[:, 1, 0])
    f = torch.randn(2, 3, 8, dtype=torch.float64)
    assert torch.allclose(ops.regular_pool(f), f.sum(-1) / 8)
    assert torch.equal(ops.regular_broadcast(f[..., 0], 8)[:, :, 5], f[..., 0])


@pytest.mark.parametrize("group", GROUPS, ids=repr)
def test_split_join_round_trip_and_reference_layout(group):
    spec = "T0 + 2xT1 + T0p + T2 + 2xT0 + T1" + (" + 2xR + T0" if _finite(group) else "")
    reps = Reps(spec, group)
    x = reps.randn(3, 2, dtype=torch.float64)
    parts = ops.split(x, reps)
    assert torch.equal(ops.join(parts, reps), x)
    # reference: the channels of each kind, block by block in the order written
    for kind, part in parts.items():
        channels = []
        for b in reps.blocks:
            if b.kind == kind:
                for c in range(b.mult):
                    lo = b.start + c * b.size
                    channels.append(x[..., lo : lo + b.size])
        ref = torch.stack(channels, dim=2).reshape(part.shape)
        assert torch.equal(part, ref)
        assert part.shape[2:] == ops.part_shape(kind, reps.count(kind), group)


@pytest.mark.parametrize("group", PLANAR, ids=repr)
def test_rho_matrices_agree_with_reps_act(group):
    for kind in ("T0", "T0p", "T1", "T2", "R"):
        reps = Reps(kind, group)
        rho = Reps("T0", group).rho(kind)
        x = reps.randn(5, dtype=torch.float64)
        for a in range(group.order):
            assert torch.allclose(x @ rho[a].T, reps.act(a, x))


def test_layers_submodule_names_are_the_modules():
    import grepsnet_sciml.layers as layers
    import grepsnet_sciml.layers.norm as norm_module

    assert isinstance(layers.norm, types.ModuleType) and layers.norm is norm_module
    assert norm_module.__name__ == "grepsnet_sciml.layers.norm"
    assert norm_module.EquivariantLayerNorm is EquivariantLayerNorm
    assert layers.tensor_ops is ops and callable(ops.norm)
    assert not set(ops.__all__) & set(layers.__all__)


def test_split_join_bad_input():
    reps = Reps("T0 + T1", O(3))
    with pytest.raises(ValueError, match=r"^x: expected last dimension 4"):
        ops.split(torch.zeros(2, 5), reps)
    with pytest.raises(ValueError, match=r"^parts: missing kind 'T1'"):
        ops.join({"T0": torch.zeros(2, 1)}, reps)
    with pytest.raises(ValueError, match=r"^parts\['T1'\]: expected trailing shape \(1, 3\)"):
        ops.join({"T0": torch.zeros(2, 1), "T1": torch.zeros(2, 2, 3)}, reps)
    with pytest.raises(ValueError, match=r"^v: the 2D Levi-Civita"):
        ops.hodge_2d(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"^kind: unknown representation 'T3'"):
        ops.part_shape("T3", 1, O(3))


# ----------------------------------------------------------------------------------------
# EquivariantLinear
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("regular", ["conv", "mean"])
@pytest.mark.parametrize("group", GROUPS, ids=repr)
def test_linear_is_equivariant(group, regular, dtype):
    torch.manual_seed(0)
    rep_in = _mixed(group)
    rep_out = Reps("T1 + 3xT0 + 2xT2 + T0p" + (" + 2xR" if _finite(group) else ""), group)
    lin = EquivariantLinear(rep_in, rep_out, regular=regular)
    assert lin.projected == _planar(group)
    _randomize_biases(lin)
    _check(lin, dtype, grid=_planar(group))


PAIRS = [
    ("2xT0 + T0p + T1 + T2", "T0 + 2xT0p + T1 + T2"),
    ("2xR", "3xR"),
    ("T0p + R + T1", "R + T2 + T0"),
]


@pytest.mark.parametrize("regular", ["mean", "conv"])
@pytest.mark.parametrize("pair", PAIRS, ids=["tensor", "regular", "mixed"])
@pytest.mark.parametrize("group", PLANAR, ids=repr)
def test_linear_is_equivariant_on_grids_for_every_pair_of_kinds(group, pair, regular, dtype):
    torch.manual_seed(6)
    lin = EquivariantLinear(Reps(pair[0], group), Reps(pair[1], group), domain="grid",
                            regular=regular)
    _randomize_biases(lin)
    assert_equivariant(lin, dtype=dtype, **GRID)


def _slow_linear(lin, x):
    """Reference for the path weight space on ``(batch, dim)`` float64, channel by channel."""
    rep_in, rep_out = lin.rep_in, lin.rep_out
    group = rep_in.group
    eta = group.metric
    parts = ops.split(x, rep_in)
    out = {k: torch.zeros(x.shape[0], *ops.part_shape(k, rep_out.count(k), group),
                          dtype=x.dtype) for k in ("T0", "T0p", "T1", "T2", "R")
           if rep_out.count(k)}
    w = {key: p.detach().double() for key, p in lin.weights.items()}
    elements = group.elements() if _finite(group) else None

    def find(matrix):
        return int((elements - matrix).abs().flatten(1).amax(1).argmin())

    for ki, ko in lin.paths:
        wk = w[f"{ki}_to_{ko}"]
        xi = parts[ki]
        for o in range(rep_out.count(ko)):
            for c in range(rep_in.count(ki)):
                if ki == ko == "T2":
                    out[ko][:, o] += wk[0, o, c] * xi[:, c] + wk[1, o, c] * xi[:, c].mT
                elif ki == ko == "R" and lin.regular == "mean":
                    out["R"][:, o] += wk[0, o, c] * xi[:, c]
                    out["R"][:, o] += wk[1, o, c] * xi[:, c].mean(-1, keepdim=True)
                elif ki == ko == "R":
                    for h in range(group.order):
                        for k in range(group.order):
                            hk = find(elements[h] @ elements[k])
                            out["R"][:, o, h] += wk[o, c, k] * xi[:, c, hk]
                elif ki == ko:
                    out[ko][:, o] += wk[o, c] * xi[:, c]
                elif (ki, ko) == ("T0", "T2"):
                    out[ko][:, o] += wk[o, c] * xi[:, c, None, None] * eta.inverse()
                elif (ki, ko) == ("T2", "T0"):
                    tr = torch.stack([torch.trace(mat @ eta) for mat in xi[:, c]])
                    out[ko][:, o] += wk[o, c] * tr
                elif ko == "R":  # lift: <A, rho(h)^-1 x>, the inverse acting through Reps.act
                    reps_k = Reps(ki, group)
                    for h in range(group.order):
                        moved = reps_k.act(torch.linalg.inv(elements[h]), xi[:, c].reshape(-1, 1)
                                           if ki in ("T0", "T0p") else xi[:, c].flatten(1))
                        out["R"][:, o, h] += moved @ wk[o, c]
                else:  # project: sum_h rho(h) B f(h)
                    reps_k = Reps(ko, group)
                    for h in range(group.order):
                        moved = reps_k.act(elements[h], wk[o, c][None])[0]
                        contrib = xi[:, c, h, None] * moved
                        out[ko][:, o] += contrib.reshape(out[ko][:, o].shape)
    if lin.bias_t0 is not None:
        out["T0"] += lin.bias_t0.detach().double()
    if lin.bias_r is not None:
        out["R"] += lin.bias_r.detach().double()[:, None]
    return ops.join(out, rep_out)


@pytest.mark.parametrize("regular", ["conv", "mean"])
@pytest.mark.parametrize("group", PATH_GROUPS, ids=repr)
def test_linear_paths_match_slow_reference(group, regular):
    torch.manual_seed(1)
    rep_in = _mixed(group) + Reps("T2 + T0", group)
    rep_out = Reps("2xT0 + T2 + T0p + 2xT1" + (" + 2xR" if _finite(group) else ""), group)
    lin = EquivariantLinear(rep_in, rep_out, regular=regular).double()
    assert not lin.projected
    _randomize_biases(lin)
    x = rep_in.randn(3, dtype=torch.float64)
    ref = _slow_linear(lin, x)
    assert torch.allclose(lin(x), ref, atol=1e-12)
    assert torch.allclose(lin.dense_forward(x), ref, atol=1e-12)
    assert lin.n_free == sum(p.numel() for p in lin.parameters())


def _rho(reps, a):
    """Dense fibre representation of element ``a``, ``(dim, dim)`` float64."""
    return reps.act(a, torch.eye(reps.dim, dtype=torch.float64)).T.contiguous()


@pytest.mark.parametrize("regular", ["mean", "conv"])
@pytest.mark.parametrize("pair", PAIRS, ids=["tensor", "regular", "mixed"])
def test_linear_projected_matches_dense_reference(pair, regular):
    torch.manual_seed(7)
    group = D4()
    rep_in, rep_out = Reps(pair[0], group), Reps(pair[1], group)
    lin = EquivariantLinear(rep_in, rep_out, domain="grid", regular=regular).double()
    assert lin.projected
    _randomize_biases(lin)
    w, b = lin.matrix().detach(), lin.bias_vector().detach()
    x = rep_in.randn(2, grid=(6, 6), dtype=torch.float64)
    ref = torch.einsum("oi,bixy->boxy", w, x) + b[:, None, None]
    assert torch.allclose(lin(x), ref, atol=1e-13)
    assert torch.allclose(lin.dense_forward(x), ref, atol=1e-13)
    # the dense weight commutes with the fibre action; the bias is invariant
    for a in range(group.order):
        assert torch.allclose(w @ _rho(rep_in, a), _rho(rep_out, a) @ w, atol=1e-13)
        assert torch.allclose(_rho(rep_out, a) @ b, b, atol=1e-13)


def _commutant_dimension(rep_in, rep_out):
    """Slow reference: dim of ``{W : W rho_in(g) = rho_out(g) W for all g}`` by a null space."""
    eye_in, eye_out = torch.eye(rep_in.dim, dtype=torch.float64), torch.eye(rep_out.dim,
                                                                            dtype=torch.float64)
    rows = [torch.kron(eye_out, _rho(rep_in, a).T.contiguous())
            - torch.kron(_rho(rep_out, a), eye_in)
            for a in range(rep_in.group.order)]
    constraints = torch.cat(rows)  # acting on W flattened row-major
    return rep_in.dim * rep_out.dim - int(torch.linalg.matrix_rank(constraints, atol=1e-9))


@pytest.mark.parametrize("kinds", [("T1", "T1"), ("T2", "T2"), ("T0p", "T0"), ("T1", "T2"),
                                   ("T2 + T0p", "T0 + T1"), ("R", "T1 + R"), ("T0 + T2", "R")])
@pytest.mark.parametrize("group", PLANAR, ids=repr)
def test_linear_projected_space_is_the_full_equivariant_space(group, kinds):
    """With ``regular="conv"`` the weights span every equivariant map (rank == n_free)."""
    rep_in, rep_out = Reps(kinds[0], group), Reps(kinds[1], group)
    lin = EquivariantLinear(rep_in, rep_out, bias=False).double()
    samples = []
    for _ in range(2 * lin.n_free + 4):
        for p in lin.parameters():
            torch.nn.init.normal_(p)
        samples.append(lin.matrix().detach().reshape(-1))
    rank = int(torch.linalg.matrix_rank(torch.stack(samples), atol=1e-9)) if samples else 0
    assert rank == lin.n_free == _commutant_dimension(rep_in, rep_out)


def test_linear_projected_has_no_weights_for_forbidden_pairs():
    lin = EquivariantLinear(Reps("T0", C4()), Reps("T1", C4()), domain="grid")
    assert len(list(lin.parameters())) == 0 and lin.n_free == 0 and not lin.reaches("T1")
    assert torch.equal(lin(torch.randn(1, 1, 4, 4)), torch.zeros(1, 2, 4, 4))
    # C4 has the 90-degree rotation as a T1 -> T1 map, D4 does not
    assert EquivariantLinear(Reps("T1", C4()), Reps("T1", C4()), bias=False).n_free == 2
    assert EquivariantLinear(Reps("T1", D4()), Reps("T1", D4()), bias=False).n_free == 1


@pytest.mark.parametrize("regular", ["conv", "mean"])
@pytest.mark.parametrize("group", PLANAR, ids=repr)
def test_linear_on_grid_equals_linear_per_point(group, regular):
    """One set of weights: the grid layer is the point layer applied at every grid point."""
    rep_in = Reps("T0 + 2xT0p + T1 + T2 + 2xR + T1", group)
    rep_out = Reps("2xT1 + R + T0 + T0p + T2", group)
    torch.manual_seed(0)
    grid = EquivariantLinear(rep_in, rep_out, domain="grid", regular=regular).double()
    torch.manual_seed(0)
    point = EquivariantLinear(rep_in, rep_out, domain="point", regular=regular).double()
    assert all(torch.equal(a, b) for a, b in zip(grid.state_dict().values(),
                                                 point.state_dict().values()))
    _randomize_biases(grid)
    point.load_state_dict(grid.state_dict())
    f = rep_in.randn(2, grid=(5, 5), dtype=torch.float64)
    per_point = point(f.movedim(1, -1)).movedim(-1, 1)
    assert torch.allclose(grid(f), per_point, atol=1e-13)
    assert torch.allclose(point(f[:, :, 3, 1]), grid(f)[:, :, 3, 1], atol=1e-13)


def test_linear_paths_output_scale_is_order_one():
    torch.manual_seed(0)
    spec = "16xT0 + 8xT0p + 8xT1 + 8xT2"
    big = EquivariantLinear(Reps(spec, O(3)), Reps(spec, O(3)))
    parts = ops.split(big(big.rep_in.randn(2000)).detach(), big.rep_out)
    for kind, part in parts.items():
        rms = float(part.pow(2).mean().sqrt())
        lower = 0.3 if kind == "T2" else 0.5  # T0 -> T2 fills the diagonal only
        assert lower < rms < 2.0, (kind, rms)


def test_linear_bad_input_names_argument_value_and_expectation():
    d4 = D4()
    with pytest.raises(ValueError, match=r"^regular: expected 'mean' or 'conv', got 'dense'"):
        EquivariantLinear(Reps("R", d4), Reps("R", d4), regular="dense")
    with pytest.raises(ValueError, match=r"^domain: expected 'point' or 'grid', got 'mesh'"):
        EquivariantLinear(Reps("T1", d4), Reps("T1", d4), domain="mesh")
    with pytest.raises(ValueError, match=r"^rep_out: expected a Reps over D4\(\) like rep_in, "
                                         r"got C4\(\)"):
        EquivariantLinear(Reps("T1", d4), Reps("T1", C4()))
    with pytest.raises(ValueError, match=r"^rep_out: expected a Reps over O\(3\) like rep_in, "
                                         r"got O\(2\)"):
        EquivariantLinear(Reps("T1", O(3)), Reps("T1", O(2)))
    with pytest.raises(ValueError, match=r"^rep_in: expected a Reps such as .*, got 'T1'"):
        EquivariantLinear("T1", Reps("T1", d4))
    with pytest.raises(ValueError, match=r"^rep_out: expected a Reps such as .*, got None"):
        EquivariantLinear(Reps("T1", O(3)), None)
    with pytest.raises(ValueError, match=r"^x: expected a field of shape \(batch, 2, X, Y\)"):
        EquivariantLinear(Reps("T1", d4), Reps("T1", d4), domain="grid")(torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"^x: expected last dimension 2 for T1"):
        EquivariantLinear(Reps("T1", d4), Reps("T1", d4))(torch.zeros(2, 3))


# ----------------------------------------------------------------------------------------
# nonlinearities and normalization
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("group", GROUPS, ids=repr)
def test_nonlinearities_and_norm_are_equivariant(group, dtype):
    torch.manual_seed(0)
    reps = _mixed(group)
    for module in (NormActivation(reps), GatedActivation(reps), EquivariantLayerNorm(reps)):
        _randomize_biases(module)
        _check(module, dtype, grid=_planar(group))


def test_norm_activation_matches_reference():
    reps = Reps("2xT0 + T0p + T1 + T2 + R + T1", D4())
    act = NormActivation(reps).double()
    with torch.no_grad():
        act.threshold.uniform_(-1.0, 1.0)
    x = reps.randn(3, dtype=torch.float64)
    y = ops.split(act(x), reps)
    p = ops.split(x, reps)
    t = act.threshold.detach()  # one per gated channel, in the order of reps.blocks
    assert torch.allclose(y["T0"], nn.functional.gelu(p["T0"]))
    assert torch.allclose(y["R"], nn.functional.gelu(p["R"]))
    for n in range(3):
        s = p["T0p"][n, 0]  # odd in s: the pseudo-scalar stays pseudo
        assert torch.allclose(y["T0p"][n, 0], s * torch.sigmoid(s.abs() - t[0]))
        for c, tc in ((0, t[1]), (1, t[3])):
            v = p["T1"][n, c]
            assert torch.allclose(y["T1"][n, c], v * torch.sigmoid(v.norm() - tc))
        m = p["T2"][n, 0]
        assert torch.allclose(y["T2"][n, 0], m * torch.sigmoid(m.norm() - t[2]))


def test_norm_activation_uses_the_invariant_norm_of_the_metric():
    group = Lorentz()
    reps = Reps("T1 + T2 + T0", group)
    act = NormActivation(reps, activation="silu", threshold=0.0, eps=0.0).double()
    x = reps.randn(4, dtype=torch.float64)
    y = ops.split(act(x), reps)
    p = ops.split(x, reps)
    eta = group.metric
    for n in range(4):
        v, m = p["T1"][n, 0], p["T2"][n, 0]
        q_v, q_m = v @ eta @ v, torch.trace(m @ eta @ m.T @ eta)
        assert torch.allclose(y["T1"][n, 0], v * torch.sigmoid(q_v.abs().sqrt()))
        assert torch.allclose(y["T2"][n, 0], m * torch.sigmoid(q_m.abs().sqrt()))
    assert torch.allclose(y["T0"], nn.functional.silu(p["T0"]))


@pytest.mark.parametrize("group", PLANAR, ids=repr)
def test_norm_activation_on_grid_equals_activation_per_point(group):
    reps = Reps("T0 + 2xT0p + T1 + T2 + 2xR + T1", group)
    grid, point = NormActivation(reps, domain="grid").double(), NormActivation(reps).double()
    with torch.no_grad():
        grid.threshold.uniform_(-1.0, 1.0)
    point.load_state_dict(grid.state_dict())
    f = reps.randn(2, grid=(5, 5), dtype=torch.float64)
    assert torch.allclose(grid(f), point(f.movedim(1, -1)).movedim(-1, 1), atol=1e-14)
    assert torch.allclose(point(f[:, :, 2, 4]), grid(f)[:, :, 2, 4], atol=1e-14)
    assert point(reps.randn(3, 2, 4)).shape == (3, 2, 4, reps.dim)  # extra point axes


def test_norm_activation_bad_input():
    o3 = O(3)
    with pytest.raises(ValueError, match=r"^activation: unknown 'swish'; expected one of"):
        NormActivation(Reps("T1", o3), activation="swish")
    with pytest.raises(ValueError, match=r"^domain: expected 'point' or 'grid', got 'mesh'"):
        NormActivation(Reps("T1", o3), domain="mesh")
    with pytest.raises(ValueError, match=r"^reps: expected a Reps such as .*, got 'T1'"):
        NormActivation("T1")
    with pytest.raises(ValueError, match=r"^x: expected a field of shape \(batch, 2, X, Y\)"):
        NormActivation(Reps("T1", D4()), domain="grid")(torch.zeros(1, 3, 4, 4))


def test_gated_activation_layout():
    rep_out = Reps("T0 + T1 + T0p", O(3))
    gate = GatedActivation(rep_out)
    assert gate.rep_in == rep_out + Reps("2xT0", O(3))
    x = gate.rep_in.randn(4, dtype=torch.float64)
    y = gate.double()(x)
    # T0p gate comes first (kinds sorted T0p, T1, T2), then the T1 gate
    assert torch.allclose(y[:, 4], x[:, 4] * torch.sigmoid(x[:, 5]))
    assert torch.allclose(y[:, 1:4], x[:, 1:4] * torch.sigmoid(x[:, 6:7]))


def test_layer_norm_matches_reference_and_is_per_sample():
    reps = Reps("4xT0 + 2xT1 + T0p", O(3))
    ln = EquivariantLayerNorm(reps, eps=1e-5).double()
    x = reps.randn(5, dtype=torch.float64) * 7
    y = ln(x)
    t0 = nn.functional.layer_norm(x[:, :4], (4,), eps=1e-5)
    assert torch.allclose(y[:, :4], t0)
    v = x[:, 4:10].reshape(5, 2, 3)
    scale = (v.pow(2).sum(-1).mean(-1) + 1e-5).sqrt()
    assert torch.allclose(y[:, 4:10], (v / scale[:, None, None]).reshape(5, 6))
    assert torch.allclose(y[:, 10], x[:, 10] / (x[:, 10] ** 2 + 1e-5).sqrt())
    for domain, z in (("point", reps.randn(4)),
                      ("grid", Reps("2xT0 + T1 + R", D4()).randn(4, grid=(6, 6)))):
        module = EquivariantLayerNorm(
            reps if domain == "point" else Reps("2xT0 + T1 + R", D4()), domain=domain)
        _assert_per_sample(module, z)


def _assert_per_sample(module, x):
    """Changing sample 1 (scaled, shifted) leaves sample 0's output unchanged."""
    y = module(x)
    x2 = x.clone()
    x2[1:] = 100 * x2[1:] + 3
    y2 = module(x2)
    assert torch.allclose(y[0], y2[0], atol=1e-6)
    assert not torch.allclose(y[1], y2[1], atol=1e-3)


# ----------------------------------------------------------------------------------------
# GRepsLayer and GRepsMLP
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("group", GROUPS, ids=repr)
def test_greps_layer_is_equivariant(group, dtype):
    torch.manual_seed(0)
    rep_in = _mixed(group)
    rep_out = Reps("3xT0 + T0p + 2xT1 + T2" + (" + 2xR" if _finite(group) else ""), group)
    for layer in (GRepsLayer(rep_in, rep_out), GRepsLayer(rep_in, rep_in)):
        _randomize_biases(layer)
        _check(layer, dtype, grid=_planar(group))
    assert GRepsLayer(rep_in, rep_in).residual and not GRepsLayer(rep_in, rep_out).residual


@pytest.mark.parametrize("group", GROUPS, ids=repr)
def test_greps_mlp_mixed_reps_is_equivariant(group, dtype):
    torch.manual_seed(0)
    rep_in = Reps("4xT0 + 2xT0p + 3xT1 + 2xT2", group)
    hidden = Reps("8xT0 + 2xT0p + 3xT1 + 2xT2" + (" + 2xR" if _finite(group) else ""), group)
    mlp = GRepsMLP(rep_in, Reps("T2", group), hidden=hidden, depth=2, norm=True)
    _randomize_biases(mlp)
    _check(mlp, dtype, grid=_planar(group))


@pytest.mark.parametrize("group", [D4(), O(3), Lorentz()], ids=repr)
def test_greps_layer_options_stay_equivariant(group, dtype):
    torch.manual_seed(0)
    rep_in = _mixed(group) + Reps("2xT1 + T0p", group)
    rep_out = Reps("2xT0 + T0p + T1 + T2", group)
    dense = GRepsLayer(rep_in, rep_out)
    cheap = GRepsLayer(rep_in, rep_out, pairwise=False, hidden_scalars=5, activation="tanh")
    assert cheap.convert.features.dim < dense.convert.features.dim
    assert cheap.lin_a.rep_out.count("T0") == 5
    for layer in (dense, cheap):
        _randomize_biases(layer)
        _check(layer, dtype, grid=_planar(group))


@pytest.mark.parametrize("group", PLANAR, ids=repr)
def test_greps_layer_makes_pseudo_scalars_from_planar_vectors(group, dtype):
    # in 2D, u x v and eps : M are pseudo-scalars and p J v is a vector
    torch.manual_seed(0)
    layer = GRepsLayer(Reps("2xT1", group), Reps("T0p + T2", group))
    x = layer.rep_in.randn(4, dtype=torch.float64)
    reflections = [g for g in group.elements() if torch.linalg.det(g) < 0]
    for g in reflections:  # a reflection flips the pseudo-scalar output
        y, y_g = layer.double()(x)[:, 0], layer.double()(layer.rep_in.act(g, x))[:, 0]
        assert torch.allclose(y_g, -y) and y.abs().min() > 0
    _check(GRepsLayer(Reps("T0p + T1", group), Reps("2xT1", group)), dtype, grid=True)
    _check(layer, dtype, grid=True)


def _slow_features(layer, x):
    """Reference for the order conversions of a GRepsLayer (O(3), T0 + T1 + T2 input)."""
    eta = layer.rep_in.group.metric
    p = ops.split(x, layer.rep_in)
    s, v, m = p["T0"], p["T1"], p["T2"]
    n1, n2 = v.shape[1], m.shape[1]
    rows = []
    for b in range(x.shape[0]):
        t0 = list(s[b])
        t0 += [squash(v[b, i] @ eta @ v[b, j]) for i in range(n1) for j in range(i, n1)]
        t0 += [torch.trace(m[b, c] @ eta) for c in range(n2)]
        t0 += [squash(torch.trace(m[b, c] @ eta @ m[b, c].T @ eta)) for c in range(n2)]
        t1 = list(v[b]) + [m[b, c] @ eta @ v[b, j] for c in range(n2) for j in range(n1)]
        t2 = [torch.outer(v[b, i], v[b, j]) for i in range(n1) for j in range(i, n1)]
        t2 += list(m[b])
        rows.append((torch.stack(t0), torch.stack(t1), torch.stack(t2)))
    return [torch.stack([r[k] for r in rows]) for k in range(3)]


def test_greps_layer_conversions_match_slow_reference():
    rep_in = Reps("2xT0 + 3xT1 + 2xT2", Lorentz())
    layer = GRepsLayer(rep_in, Reps("T0 + T1", Lorentz())).double()
    x = rep_in.randn(4, dtype=torch.float64)
    feats = ops.split(layer.convert(ops.split(x, rep_in), (4,)), layer.convert.features)
    t0, t1, t2 = _slow_features(layer, x)
    # the converter's order: T0 inputs, Gram, then T2 invariants (trace, Frobenius)
    assert torch.allclose(feats["T0"], t0, atol=1e-12)
    assert torch.allclose(feats["T1"], t1, atol=1e-12)
    # T2 features: outer products first, then the T2 inputs
    assert torch.allclose(feats["T2"], t2, atol=1e-12)


def test_greps_layer_on_grid_is_pointwise():
    rep_in, rep_out = Reps("T0p + T1 + R", D4()), Reps("T0 + T0p + R", D4())
    torch.manual_seed(0)
    grid = GRepsLayer(rep_in, rep_out, domain="grid")
    point = GRepsLayer(rep_in, rep_out)
    point.load_state_dict(grid.state_dict())
    f = rep_in.randn(2, grid=(4, 4))
    assert torch.allclose(grid(f)[:, :, 2, 3], point(f[:, :, 2, 3]), atol=1e-6)


@pytest.mark.parametrize("group", [D4(), O(3)], ids=repr)
def test_every_parameter_receives_a_gradient(group):
    torch.manual_seed(0)
    rep_in = _mixed(group)
    rep_out = Reps("2xT0 + T0p + T1 + T2" + (" + R" if _finite(group) else ""), group)
    modules = [
        EquivariantLinear(rep_in, rep_out),
        NormActivation(rep_in),
        GatedActivation(rep_in),
        EquivariantLayerNorm(rep_in),
        GRepsLayer(rep_in, rep_out),
        GRepsLayer(rep_in, rep_in),
        # (two R channels: layer norm removes a constant offset of a single R channel)
        GRepsMLP(rep_in, rep_out, hidden=rep_in + rep_in, depth=2, norm=True),
    ]
    for module in modules:
        _randomize_biases(module)
        x = module.rep_in.randn(8).requires_grad_()
        out = module(x)
        (out * torch.randn_like(out)).sum().backward()
        for name, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (type(module).__name__, name)
        assert x.grad.abs().sum() > 0


def test_greps_mlp_is_per_sample():
    torch.manual_seed(0)
    reps = _mixed(D4())
    mlp = GRepsMLP(reps, Reps("T0p + T1", D4()), hidden=reps, depth=2, norm=True)
    _assert_per_sample(mlp, reps.randn(3))
    mlp.domain = "grid"
    _assert_per_sample(mlp, reps.randn(3, grid=(4, 4)))


def test_layer_bad_input():
    o3 = O(3)
    with pytest.raises(ValueError, match=r"^rep_out: no equivariant conversion.*\['T0p'\]"):
        GRepsLayer(Reps("T0 + T1", o3), Reps("T0p", o3))
    with pytest.raises(ValueError, match=r"^hidden: .*\['T1'\]"):
        GRepsMLP(Reps("T1", o3), Reps("T1", o3), hidden=Reps("4xT0", o3))
    with pytest.raises(ValueError, match=r"^depth: expected a positive integer, got 0"):
        GRepsMLP(Reps("T1", o3), Reps("T1", o3), hidden=Reps("T1", o3), depth=0)
    with pytest.raises(ValueError, match=r"^rep_out: expected a Reps over O\(3\) like rep_in"):
        GRepsLayer(Reps("T1", o3), Reps("T1", O(2)))
    with pytest.raises(ValueError, match=r"^domain: expected 'point' or 'grid', got 'mesh'"):
        GRepsLayer(Reps("T1", o3), Reps("T1", o3), domain="mesh")
    with pytest.raises(ValueError, match=r"^hidden_scalars: expected a positive integer, got 0"):
        GRepsLayer(Reps("T1", o3), Reps("T1", o3), hidden_scalars=0)
    with pytest.raises(ValueError, match=r"^rep_in: expected a Reps such as .*, got 'T1'"):
        GRepsLayer("T1", Reps("T1", o3))
    with pytest.raises(ValueError, match=r"^residual: needs rep_in == rep_out"):
        GRepsLayer(Reps("T1", o3), Reps("2xT1", o3), residual=True)
    with pytest.raises(ValueError, match=r"^x: expected last dimension 3 for T1, got shape"):
        GRepsLayer(Reps("T1", o3), Reps("T1", o3))(torch.zeros(2, 4))
    for layer in (EquivariantLinear(Reps("T1", D4()), Reps("T1", D4()), domain="grid"),
                  NormActivation(Reps("T1", D4()), domain="grid")):
        with pytest.raises(ValueError, match=r"^x: .*\(6, 4\); expected \(N, N\)"):
            layer(torch.zeros(1, 2, 6, 4))


def test_layers_handle_particle_axes_and_grid_shifts():
    torch.manual_seed(0)
    reps = Reps("2xT0 + 2xT1 + T2", O(3))
    layer = GRepsMLP(reps, Reps("T0 + T1", O(3)), hidden=reps, depth=1, norm=True)
    x = reps.randn(2, 5)
    out = layer(x)
    assert out.shape == (2, 5, 4)
    assert torch.allclose(out[1, 3], layer(x[1, 3]), atol=1e-6)
    layer.particle_axis = 1
    assert all(r["permutation"] == "yes" for r in assert_equivariant(layer).rows)
    # on grids every layer commutes with cyclic shifts, which the harness then checks
    grid_layer = GRepsLayer(_mixed(D4()), _mixed(D4()), domain="grid")
    assert grid_layer.translation_equivariant and not GRepsLayer(reps, reps).translation_equivariant
    report = assert_equivariant(grid_layer, **GRID)
    assert all(isinstance(r["translation"], tuple) for r in report.rows)


def test_greps_mlp_learns_an_equivariant_target():
    # target: sum_i v_i v_i^T + |v_0|^2 I (an O(3)-equivariant T2 function of 3 vectors)
    torch.manual_seed(0)
    group = O(3)
    x = Reps("3xT1", group).randn(128)
    v = x.reshape(-1, 3, 3)
    y = torch.einsum("nia,nib->nab", v, v) + (v[:, 0] ** 2).sum(-1)[:, None, None] * torch.eye(3)
    y = y.reshape(-1, 9)
    mlp = GRepsMLP(Reps("3xT1", group), Reps("T2", group),
                   hidden=Reps("8xT0 + 4xT1 + 2xT2", group), depth=1)
    # plain Adam written out: torch.optim's first use imports torch._dynamo (seconds)
    params = list(mlp.parameters())
    first = [torch.zeros_like(p) for p in params]
    second = [torch.zeros_like(p) for p in params]
    losses = []
    for step in range(1, 41):
        loss = (mlp(x) - y).pow(2).mean()
        mlp.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p, m, v in zip(params, first, second):
                m.lerp_(p.grad, 0.1)
                v.lerp_(p.grad**2, 0.001)
                p -= 1e-2 * (m / (1 - 0.9**step)) / ((v / (1 - 0.999**step)).sqrt() + 1e-8)
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.05 * losses[0], (losses[0], losses[-1])

