"""Equivariant spectral layers: exact equivariance, Hermitian kernels, slow references."""

import math

import pytest
import torch

from grepsnet_sciml import Reps
from grepsnet_sciml.groups import C1, C2, C4, D1, D2, D4, O
from grepsnet_sciml.layers import EquivariantLinear, NormActivation
from grepsnet_sciml.layers._spectral_conv import pair_mode_matmul
from grepsnet_sciml.layers._spectral_dft import window_irfft2, window_rfft2, window_rfft2_pairs
from grepsnet_sciml.layers._spectral_kernels import negation_index, window_index_maps
from grepsnet_sciml.layers.spectral import (
    DealiasFilter2d,
    EquivariantInstanceNorm2d,
    FourierBlock2d,
    SpectralConv2d,
    SpectralCurl,
    SpectralDivergence,
    SpectralGradient,
    SpectralHessian,
    radial_channel,
    spectral_conv_reference,
)
from grepsnet_sciml.testing import assert_equivariant, equivariance_errors

GROUPS = [C4(), D4(), D2("diagonal")]
GROUP_IDS = ["C4", "D4", "D2diag"]
PAIRS = [
    ("2xT0 + T0p + T1 + T2", "T0 + 2xT0p + T1 + T2"),
    ("2xR", "3xR"),
    ("T0p + R + T1", "R + T2 + T0"),
]


def rho(reps: Reps, a: int) -> torch.Tensor:
    """Dense fibre representation of element ``a``, ``(dim, dim)`` float64."""
    eye = torch.eye(reps.dim, dtype=torch.float64)
    return reps.act(a, eye).T


def smooth_field(reps: Reps, n: int, k_max: int = 3, seed: int = 0) -> torch.Tensor:
    """A random band-limited field ``(1, dim, n, n)`` with ``|k| <= k_max``, float64."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.arange(n, dtype=torch.float64) / n
    xx, yy = torch.meshgrid(x, x, indexing="ij")
    out = torch.zeros(1, reps.dim, n, n, dtype=torch.float64)
    for kx in range(-k_max, k_max + 1):
        for ky in range(0, k_max + 1):
            a, b = torch.randn(2, reps.dim, generator=gen, dtype=torch.float64)
            phase = 2 * math.pi * (kx * xx + ky * yy)
            out[0] += a[:, None, None] * torch.cos(phase) + b[:, None, None] * torch.sin(phase)
    return out


# ----- window ----------------------------------------------------------------------------------
@pytest.mark.parametrize("group", GROUPS, ids=GROUP_IDS)
def test_window_is_closed_under_group_and_negation(group):
    modes = 5
    idx = window_index_maps(group, modes)
    m2 = (2 * modes - 1) ** 2
    for row in idx:
        assert torch.equal(row.sort().values, torch.arange(m2))
    neg = negation_index(modes)
    k = torch.arange(-(modes - 1), modes)
    kx, ky = torch.meshgrid(k, k, indexing="ij")
    flat_k = torch.stack([kx.reshape(-1), ky.reshape(-1)], 1)
    assert torch.equal(flat_k[neg], -flat_k)
    # the index map really is k -> g^{-1} k
    for a, g in enumerate(group.elements().round().long()):
        g_inv = torch.linalg.inv(g.double()).round().long()
        assert torch.equal(flat_k[idx[a]], flat_k @ g_inv.T)


def test_neuralop_style_window_is_not_closed():
    """The trap: a window k in [-m/2, m/2 - 1] is not mapped to itself by a rotation."""
    m = 8
    window = {(kx, ky) for kx in range(-m // 2, m // 2) for ky in range(-m // 2, m // 2)}
    rot = C4().elements()[1].round().long()
    rotated = {tuple((rot @ torch.tensor(k)).tolist()) for k in window}
    assert rotated != window


# ----- spectral convolution --------------------------------------------------------------------
@pytest.mark.parametrize("regular", ["shared", "group"])
@pytest.mark.parametrize("pair", PAIRS, ids=["tensor", "regular", "mixed"])
@pytest.mark.parametrize("group", GROUPS, ids=GROUP_IDS)
def test_spectral_conv_equivariant(group, pair, regular, dtype):
    torch.manual_seed(0)
    layer = SpectralConv2d(Reps(pair[0], group), Reps(pair[1], group), modes=4, regular=regular)
    report = assert_equivariant(layer, dtype=dtype)
    assert len(report.rows) == group.order


@pytest.mark.parametrize("regular", ["shared", "group"])
@pytest.mark.parametrize("pair", PAIRS, ids=["tensor", "regular", "mixed"])
def test_spectral_conv_matches_slow_reference_and_is_real(pair, regular):
    torch.manual_seed(1)
    group = D4()
    rep_in, rep_out = Reps(pair[0], group), Reps(pair[1], group)
    layer = SpectralConv2d(rep_in, rep_out, modes=4, regular=regular).double()
    x = rep_in.randn(2, grid=(16, 16), dtype=torch.float64)
    ref = spectral_conv_reference(x, layer.dense_kernel(), 4)
    fast = layer(x)
    assert ref.real.abs().max() > 1e-3
    assert torch.allclose(fast, ref.real, atol=1e-12, rtol=0)
    assert ref.imag.abs().max() < 1e-13 * ref.real.abs().max()


def _fft_window(x, modes):
    """The window of ``torch.fft.rfft2`` (rows kx = -K..K, columns ky = 0..K)."""
    n, big_k = x.shape[-1], modes - 1
    xh = torch.fft.rfft2(x)
    return torch.cat([xh[:, :, n - big_k:, :big_k + 1], xh[:, :, :big_k + 1, :big_k + 1]], 2)


def _fft_unwindow(w, n):
    """``torch.fft.irfft2`` of the window ``w`` zero-padded to the half spectrum."""
    big_k = w.shape[-1] - 1
    gap = w.new_zeros(w.shape[0], w.shape[1], n - 2 * big_k - 1, big_k + 1)
    return torch.fft.irfft2(torch.cat([w[:, :, big_k:], gap, w[:, :, :big_k]], 2), s=(n, n))


@pytest.mark.parametrize("n, modes", [(8, 2), (16, 4), (18, 5), (32, 8)])
def test_window_dft_equals_torch_fft_with_gradients(n, modes):
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(2, 3, n, n, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(2, 3, 2 * modes - 1, modes, dtype=torch.complex128, generator=gen,
                    requires_grad=True)
    pairs = [(window_rfft2(x, modes), _fft_window(x, modes)),
             (window_irfft2(w, n), _fft_unwindow(w, n))]
    for fast, ref in pairs:
        assert ref.abs().max() > 1e-2
        assert (fast - ref).abs().max() < 1e-12 * ref.abs().max()
    weight = torch.randn(pairs[1][0].shape, dtype=torch.float64, generator=gen)
    grads = []
    for fast_or_ref in (0, 1):
        loss = (pairs[0][fast_or_ref].abs() ** 2).sum() + (pairs[1][fast_or_ref] * weight).sum()
        grads.append(torch.autograd.grad(loss, (x, w)))
    for g_fast, g_ref in zip(*grads):
        assert (g_fast - g_ref).abs().max() < 1e-11 * g_ref.abs().max()


def test_shared_forward_gathers_the_half_window_of_the_regular_kernel():
    layer = SpectralConv2d(Reps("2xR", D4()), Reps("3xR", D4()), modes=4, regular="shared")
    full, half = layer.regular_kernel(), layer.regular_kernel("half")
    assert half.shape[-1] == 7 * 4
    assert torch.equal(layer._half(full).flatten(-2), half)
    with pytest.raises(ValueError, match="at: expected one of"):
        layer.regular_kernel("orbits")  # only group kernels are gathered on orbits


PLANAR = [C1(), C2(), C4(), D1("x"), D1("diagonal"), D2(), D2("diagonal"), D4()]
# orbits of the 9 x 9 window (modes 5) under the group and k -> -k
ORBITS = [41, 41, 21, 25, 25, 25, 25, 15]


@pytest.mark.parametrize(("group", "n_orbits"), list(zip(PLANAR, ORBITS)), ids=str)
def test_group_kernels_on_orbit_representatives_equal_the_per_mode_product(group, n_orbits):
    torch.manual_seed(3)
    order, modes = group.order, 5
    layer = SpectralConv2d(Reps("2xR", group), Reps("3xR", group), modes, "group").double()
    assert layer.orbit_idx.shape == (order, n_orbits)
    x = torch.randn(3, 2 * order, 12, 12, dtype=torch.float64, requires_grad=True)
    xs = window_rfft2_pairs(x, modes)  # a real field's: Hermitian on the row ky = 0
    half = layer.regular_kernel("half")  # every mode of the half window
    ref = pair_mode_matmul(xs, half.reshape(3 * order, 2 * order, 9, modes))
    fast = layer._regular_product(xs)
    assert (fast - ref).abs().max() < 1e-12 * ref.abs().max()
    probe = torch.randn_like(ref)
    grads = [torch.autograd.grad((y * probe).sum(), (x, layer.weight_regular), retain_graph=True)
             for y in (fast, ref)]
    for g_fast, g_ref in zip(*grads):
        assert (g_fast - g_ref).abs().max() < 1e-12 * g_ref.abs().max()


@pytest.mark.parametrize("group", GROUPS, ids=GROUP_IDS)
def test_kernel_is_hermitian_and_satisfies_the_constraint(group):
    torch.manual_seed(2)
    rep_in, rep_out = Reps("T0 + T0p + T1 + T2 + R", group), Reps("T0p + T1 + T2 + R", group)
    layer = SpectralConv2d(rep_in, rep_out, modes=3).double()
    w = layer.dense_kernel().detach()  # (out, in, M, M), [i, j] <-> k = (i - K, j - K)
    assert torch.allclose(w.flip(-2, -1), w.conj(), atol=1e-14)
    big_k = 2
    for a, g in enumerate(group.elements().round().long()):
        ro, ri = rho(rep_out, a).to(w.dtype), rho(rep_in, a).to(w.dtype)
        for i in range(5):
            for j in range(5):
                gk = g @ torch.tensor([i - big_k, j - big_k])
                lhs = w[:, :, gk[0] + big_k, gk[1] + big_k]
                assert torch.allclose(lhs, ro @ w[:, :, i, j] @ ri.T, atol=1e-13)


@pytest.mark.parametrize("kinds", [("T1", "T1"), ("T0", "T1"), ("T2", "T0p"), ("R", "T1")])
def test_free_parameter_count_is_the_rank_of_the_kernel_space(kinds):
    group = D4()
    layer = SpectralConv2d(Reps(kinds[0], group), Reps(kinds[1], group), modes=2).double()
    samples = []
    for _ in range(4 * layer.n_free + 8):
        for p in layer.parameters():
            torch.nn.init.normal_(p)
        w = layer.dense_kernel().detach().reshape(-1)
        samples.append(torch.cat([w.real, w.imag]))
    rank = torch.linalg.matrix_rank(torch.stack(samples), atol=1e-9)
    assert layer.n_free > 0
    assert int(rank) == layer.n_free


def test_pseudoscalar_channels_change_sign_under_reflections():
    torch.manual_seed(3)
    group = D4()
    layer = SpectralConv2d(Reps("T1", group), Reps("T0p", group), modes=4).double()
    x = Reps("T1", group).randn(1, grid=(16, 16), dtype=torch.float64)
    y = layer(x)
    for a in range(group.order):
        det = float(torch.linalg.det(group.elements()[a]))
        moved = group.act_grid(a, y)
        out = layer(Reps("T1", group).act(a, x, grid=True))
        assert torch.allclose(out, det * moved, atol=1e-12)
        if det < 0:
            assert (out - moved).abs().max() > 1e-3


def test_resolution_independence_on_band_limited_fields():
    torch.manual_seed(4)
    group = D4()
    rep_in, rep_out = Reps("T0p + T1", group), Reps("T0 + R", group)
    layer = SpectralConv2d(rep_in, rep_out, modes=4).double()
    x64 = smooth_field(rep_in, 64)
    x32 = x64[..., ::2, ::2]
    y64, y32 = layer(x64), layer(x32)
    assert y64.shape[-1] == 64 and y32.shape[-1] == 32
    assert torch.allclose(y64[..., ::2, ::2], y32, atol=1e-11)


def test_gradients_reach_every_parameter():
    torch.manual_seed(5)
    group = D4()
    reps = Reps("T0 + T0p + T1 + T2 + 2xR", group)
    modules = [
        SpectralConv2d(reps, reps, modes=3),
        SpectralConv2d(reps, reps, modes=3, regular="group"),
        EquivariantLinear(reps, reps, domain="grid", regular="mean"),
        EquivariantLinear(reps, reps, domain="grid", regular="conv"),
        EquivariantInstanceNorm2d(reps, affine=True),
        NormActivation(reps, domain="grid"),
    ]
    for module in modules:
        x = reps.randn(2, grid=(8, 8))
        module(x).pow(2).mean().backward()
        for name, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().max() > 0, (type(module).__name__, name)


# ----- norm and activation ---------------------------------------------------------------------
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("group", GROUPS, ids=GROUP_IDS)
def test_norm_and_activation_equivariant(group, affine, dtype):
    reps = Reps("2xT0 + T0p + T1 + T2 + 2xR", group)
    norm = EquivariantInstanceNorm2d(reps, affine=affine)
    if affine:
        with torch.no_grad():
            norm.weight.uniform_(0.5, 2.0)
            norm.bias.normal_()
    assert_equivariant(norm, dtype=dtype)
    assert_equivariant(NormActivation(reps, domain="grid"), dtype=dtype)


def test_norm_is_per_sample_and_normalises():
    reps = Reps("T0 + T1 + R", D4())
    norm = EquivariantInstanceNorm2d(reps, eps=0.0)
    x = reps.randn(3, grid=(8, 8), dtype=torch.float64) * 5 + 2
    y = norm(x)
    x2 = x.clone()
    x2[1:] = 100 * torch.randn_like(x2[1:])
    assert torch.allclose(norm(x2)[0], y[0], atol=1e-14)
    assert torch.allclose(y[:, 0].mean((-2, -1)), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(y[:, 0].pow(2).mean((-2, -1)), torch.ones(3, dtype=torch.float64))
    v = y[:, 1:3]  # one vector channel: shared scale over both components
    assert torch.allclose(v.pow(2).mean((1, 2, 3)), torch.ones(3, dtype=torch.float64))
    r = y[:, 3:]
    assert torch.allclose(r.mean((1, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-12)


def test_fourier_block_equivariant(dtype):
    torch.manual_seed(8)
    reps = Reps("T0 + T0p + T1 + 2xR", D4())
    assert_equivariant(FourierBlock2d(reps, modes=4), dtype=dtype)
    assert_equivariant(FourierBlock2d(reps, modes=4, spectral_regular="group",
                                      pointwise_regular="conv", last=True), dtype=dtype)


def test_radial_channel_is_invariant_but_not_translation_invariant():
    r = radial_channel(16, torch.float64)
    for a in range(8):
        assert torch.equal(D4().act_grid(a, r), r)
    assert not torch.equal(torch.roll(r, 3, -1), r)
    assert float(r[0, 0, 0, 0]) == 0.0


# ----- spectral derivatives --------------------------------------------------------------------
@pytest.mark.parametrize("group", GROUPS, ids=GROUP_IDS)
def test_derivatives_equivariant(group, dtype):
    for layer in (SpectralGradient(group, 2), SpectralDivergence(group, 2),
                  SpectralCurl(group, 2), SpectralHessian(group, 2)):
        assert_equivariant(layer, dtype=dtype)


def test_derivatives_match_analytic_values():
    n = 32
    x = torch.arange(n, dtype=torch.float64) / n
    xx, yy = torch.meshgrid(x, x, indexing="ij")
    a, b = 2 * math.pi * 2, 2 * math.pi * 3
    f = torch.sin(a * xx + b * yy)
    c = torch.cos(a * xx + b * yy)
    group = D4()
    grad = SpectralGradient(group)(f[None, None])[0]
    assert torch.allclose(grad, torch.stack([a * c, b * c]), atol=1e-10)
    u, v = torch.sin(a * xx), torch.cos(b * yy)  # div = a cos(ax) - b sin(by); curl = 0
    vel = torch.stack([u, v])[None]
    assert torch.allclose(SpectralDivergence(group)(vel)[0, 0],
                          a * torch.cos(a * xx) - b * torch.sin(b * yy), atol=1e-10)
    assert SpectralCurl(group)(vel).abs().max() < 1e-10
    rot = torch.stack([torch.sin(b * yy), torch.zeros_like(yy)])[None]  # curl = -b cos(by)
    assert torch.allclose(SpectralCurl(group)(rot)[0, 0], -b * torch.cos(b * yy), atol=1e-10)
    hess = SpectralHessian(group)(f[None, None])[0]
    expected = -torch.stack([a * a * f, a * b * f, a * b * f, b * b * f])
    assert torch.allclose(hess, expected, atol=1e-9)
    grad = SpectralGradient(group)(torch.randn(1, 1, n, n, dtype=torch.float64))
    assert SpectralCurl(group)(grad).abs().max() < 1e-12 * grad.abs().max()


# ----- bad input -------------------------------------------------------------------------------
def test_bad_inputs_raise_value_errors_naming_the_argument():
    group = D4()
    layer = SpectralConv2d(Reps("T1", group), Reps("T0", group), modes=4)
    with pytest.raises(ValueError, match="x: .*square"):
        layer(torch.randn(1, 2, 16, 12))
    with pytest.raises(ValueError, match="x: expected an even resolution"):
        layer(torch.randn(1, 2, 15, 15))
    with pytest.raises(ValueError, match="x: resolution N = 6 is too small for modes = 4"):
        layer(torch.randn(1, 2, 6, 6))
    with pytest.raises(ValueError, match=r"x: expected a field of shape \(batch, 2, X, Y\)"):
        layer(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="modes"):
        SpectralConv2d(Reps("T1", group), Reps("T0", group), modes=0)
    with pytest.raises(ValueError, match="rep_in: expected a planar grid group"):
        SpectralConv2d(Reps("T1", O(2)), Reps("T0", O(2)), modes=4)
    with pytest.raises(ValueError, match="rep_out: expected a Reps over D4"):
        SpectralConv2d(Reps("T1", group), Reps("T0", C2()), modes=4)
    with pytest.raises(ValueError, match="regular"):
        SpectralConv2d(Reps("R", group), Reps("R", group), modes=4, regular="dense")
    with pytest.raises(ValueError, match="channels"):
        SpectralGradient(group, 0)


def test_harness_detects_a_non_equivariant_spectral_kernel():
    """Break the projection and the harness must notice (the tests above can fail)."""
    layer = SpectralConv2d(Reps("T1", D4()), Reps("T1", D4()), modes=4).double()
    layer.pairs.pair = lambda ko, ki: torch.view_as_complex(layer.pairs.weights[f"{ko}_{ki}"])
    assert equivariance_errors(layer).max_error > 1e-2


def test_spectral_module_re_exports_the_grid_layers():
    from grepsnet_sciml.layers import _spectral_block, _spectral_conv, spectral

    assert spectral.SpectralConv2d is _spectral_conv.SpectralConv2d is SpectralConv2d
    assert spectral.mode_matmul is _spectral_conv.mode_matmul
    assert _spectral_block.SpectralConv2d is SpectralConv2d
    assert set(spectral.__all__) == {
        "SpectralConv2d", "spectral_conv_reference", "FourierBlock2d",
        "EquivariantInstanceNorm2d", "SpectralGradient",
        "SpectralDivergence", "SpectralCurl", "SpectralHessian", "count_free_parameters",
        "radial_channel", "DealiasFilter2d",
    }


# ----- dealiasing filter -----------------------------------------------------------------------
def test_dealias_filter_equivariant_for_every_type(dtype):
    reps = Reps("T0 + T0p + T1 + T2 + R", D4())
    report = assert_equivariant(DealiasFilter2d(reps), dtype=dtype)
    assert len(report.rows) == 8


def test_dealias_filter_keeps_the_solvers_band_and_drops_the_rest():
    n = 24  # band edge (2/3) 12 = 8
    x = torch.arange(n, dtype=torch.float64) / n
    xx, yy = torch.meshgrid(x, x, indexing="ij")
    kept = torch.cos(2 * math.pi * (8 * xx - 3 * yy)) + torch.sin(2 * math.pi * 8 * yy)
    dropped = torch.cos(2 * math.pi * (9 * xx + yy)) + torch.sin(2 * math.pi * (2 * xx - 9 * yy))
    field = (kept + dropped)[None, None]
    out = DealiasFilter2d(Reps("T0", D4()))(field)
    assert (out[0, 0] - kept).abs().max() < 1e-12
    # the same band as the solver's 2/3 rule, |k| <= (2/3)(N/2)
    mask = DealiasFilter2d(Reps("T0", D4())).mask(n)
    k = torch.fft.fftfreq(n, 1.0 / n).abs()
    assert torch.equal(mask, (k[:, None] <= 8) & (k[None, : n // 2 + 1] <= 8))
    with pytest.raises(ValueError, match="fraction: expected a number in"):
        DealiasFilter2d(Reps("T0", D4()), fraction=1.5)
