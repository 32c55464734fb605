"""Groups: axioms, element counts, sampling, reprs and the grid action about the origin."""

import math

import pytest
import torch

from grepsnet_sciml.groups import (
    C1,
    C2,
    C4,
    D1,
    D2,
    D4,
    SO,
    FiniteGroup,
    Lorentz,
    O,
    Permutation,
    PlanarGroup,
    group_from_string,
)

FINITE = [
    (C1(), 1),
    (C2(), 2),
    (C4(), 4),
    (D1("x"), 2),
    (D1("y"), 2),
    (D1("diagonal"), 2),
    (D1("antidiagonal"), 2),
    (D2("cartesian"), 4),
    (D2("diagonal"), 4),
    (D4(), 8),
    (Permutation(3), 6),
]
CONTINUOUS = [O(1), O(2), O(3), O(5), SO(2), SO(3), SO(5), Lorentz(), Lorentz(0.5)]


def _find(elements, g):
    diff = (elements - g).abs().flatten(1).amax(1)
    return int(diff.argmin()), float(diff.min())


@pytest.mark.parametrize("group,order", FINITE, ids=[repr(g) for g, _ in FINITE])
def test_finite_group_axioms(group, order):
    e = group.elements()
    assert e.shape == (order, group.d, group.d) and group.order == order
    assert torch.equal(e[0], torch.eye(group.d, dtype=torch.float64))
    table = group.multiplication_table
    eta = group.metric
    for a in range(order):
        # metric preserved, inverse present, closure consistent with the table
        assert torch.allclose(e[a].T @ eta @ e[a], eta, atol=1e-12)
        k, err = _find(e, torch.linalg.inv(e[a]))
        assert err < 1e-12 and k == group.inverse_index(a)
        for b in range(order):
            k, err = _find(e, e[a] @ e[b])
            assert err < 1e-12 and k == int(table[a, b])
    # every element listed once
    assert len({tuple(x.flatten().tolist()) for x in e}) == order


def test_d4_subgroups_are_subsets_of_d4_in_its_order():
    d4 = D4().elements()
    for group, _ in FINITE[:-1]:
        idx = [_find(d4, g)[0] for g in group.elements()]
        assert idx == sorted(idx)
        assert group.element_names == [D4().element_names[k] for k in idx]


@pytest.mark.parametrize("group", CONTINUOUS, ids=repr)
def test_continuous_samples_preserve_metric_and_close(group):
    gen = torch.Generator().manual_seed(0)
    g = group.sample(64, generator=gen)
    h = group.sample(64, generator=gen)
    eta = group.metric
    assert g.shape == (64, group.d, group.d) and g.dtype == torch.float64
    for x in (g, g @ h, torch.linalg.inv(g)):
        residual = (x.transpose(1, 2) @ eta @ x - eta).abs().max()
        assert residual < 1e-10
    # inverse = eta^-1 g^T eta
    inv = torch.linalg.inv(eta) @ g.transpose(1, 2) @ eta
    assert (inv @ g - torch.eye(group.d, dtype=torch.float64)).abs().max() < 1e-10


def test_orthogonal_sampling_covers_both_components_and_is_haar_like():
    gen = torch.Generator().manual_seed(1)
    for n in (1, 2, 3, 5):
        det = torch.linalg.det(O(n).sample(200, generator=gen))
        assert (det < 0).any() and (det > 0).any()
        assert abs(float((det < 0).double().mean()) - 0.5) < 0.15
    for n in (2, 3, 5):
        g = SO(n).sample(2000, generator=gen)
        assert (torch.linalg.det(g) > 0).all()
        # Haar measure: E[g] = 0 and E[g_ij^2] = 1/n
        assert g.mean(0).abs().max() < 0.1
        assert ((g**2).mean(0) - 1 / n).abs().max() < 0.05
        o = O(n).sample(2000, generator=gen)
        assert o.mean(0).abs().max() < 0.1


def test_lorentz_samples_include_boosts_and_time_reversal():
    g = Lorentz().sample(200, generator=torch.Generator().manual_seed(2))
    g00 = g[:, 0, 0]
    assert (g00.abs() > 1.05).any()  # genuine boosts: |Lambda^0_0| = cosh(rapidity)
    assert (g00 < 0).any() and (g00 > 0).any()
    assert (g00.abs() >= 1 - 1e-12).all()
    assert (g00.abs() <= math.cosh(1.0) + 1e-12).all()


@pytest.mark.parametrize(
    "group", [g for g, _ in FINITE] + CONTINUOUS + [Permutation(6)], ids=repr
)
def test_repr_round_trips(group):
    rebuilt = group_from_string(repr(group))
    assert rebuilt == group and hash(rebuilt) == hash(group) and repr(rebuilt) == repr(group)
    if isinstance(group, FiniteGroup):
        assert torch.equal(rebuilt.elements(), group.elements())


def test_group_from_string_accepts_bare_names():
    assert group_from_string("D4") == D4()
    assert group_from_string(" O( 3 ) ") == O(3)


@pytest.mark.parametrize(
    "make,argument,value",
    [
        (lambda: group_from_string("Foo()"), "group", "Foo()"),
        (lambda: group_from_string("O(x y)"), "group", "x y"),
        (lambda: group_from_string(3), "group", "3"),
        (lambda: D1("z"), "axis", "'z'"),
        (lambda: D2("polar"), "axes", "'polar'"),
        (lambda: O(0), "n", "0"),
        (lambda: SO(-2), "n", "-2"),
        (lambda: Permutation(0), "n", "0"),
        (lambda: D4().index(torch.eye(2) * 2), "g", "2.0"),
        (lambda: D4().index(9), "g", "9"),
        (lambda: PlanarGroup([torch.tensor([[2.0, 0.0], [0.0, 1.0]])], "X()"), "generators", "2.0"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(make, argument, value):
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert message.startswith(argument + ":") and value in message


@pytest.mark.parametrize("group", [C4(), D4(), D2("diagonal")], ids=repr)
def test_grid_action_is_a_homomorphism(group):
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    e, table = group.elements(), group.multiplication_table
    for a in range(group.order):
        assert torch.equal(group.act_grid(e[a], x), group.act_grid(a, x))
        for b in range(group.order):
            lhs = group.act_grid(a, group.act_grid(b, x))
            assert torch.equal(lhs, group.act_grid(int(table[a, b]), x))
    assert torch.equal(group.act_grid(0, x), x)


def test_grid_action_moves_points_by_g_about_the_origin():
    n = 7
    group = D4()
    for a, g in enumerate(group.elements()):
        for i, j in [(0, 0), (1, 0), (2, 5), (6, 3)]:
            delta = torch.zeros(n, n)
            delta[i, j] = 1
            moved = group.act_grid(a, delta)
            target = (g.round().long() @ torch.tensor([i, j])) % n
            assert moved[tuple(target.tolist())] == 1 and moved.sum() == 1


def test_d4_leaves_the_ns_sym_forcing_invariant_but_rot90_does_not():
    n = 16
    x = torch.arange(n, dtype=torch.float64) / n
    xx, yy = torch.meshgrid(x, x, indexing="ij")
    forcing = torch.cos(4 * math.pi * xx) + torch.cos(4 * math.pi * yy)
    group = D4()
    for a in range(group.order):
        assert (group.act_grid(a, forcing) - forcing).abs().max() < 1e-12
    rotated = torch.rot90(forcing, 1, dims=(0, 1))
    assert (rotated - forcing).abs().max() > 0.1
    # rot90 rotates about the array centre: the origin action is rot90 followed by a shift
    r = group.element_names.index("r")
    field = torch.randn(n, n, dtype=torch.float64)
    assert not torch.equal(group.act_grid(r, field), torch.rot90(field, 1, dims=(0, 1)))
    shifted = torch.roll(torch.rot90(field, 1, dims=(0, 1)), 1, dims=0)
    assert torch.equal(group.act_grid(r, field), shifted)


def test_regular_permutation_is_a_homomorphism():
    group = D4()
    table = group.multiplication_table
    for a in range(group.order):
        pa = group.regular_permutation(a)
        assert sorted(pa.tolist()) == list(range(group.order))
        for b in range(group.order):
            pb = group.regular_permutation(b)
            # (g.(h.f))[k] = f[P_h[P_g[k]]] = ((gh).f)[k]
            assert torch.equal(pb[pa], group.regular_permutation(int(table[a, b])))


def test_non_square_grid_raises_naming_the_argument():
    with pytest.raises(ValueError, match=r"^field: .*\(8, 6\).*\(N, N\)"):
        D4().check_grid((8, 6), "field")
    with pytest.raises(ValueError, match=r"^x: .*\(8, 6\)"):
        C4().act_grid(0, torch.zeros(1, 8, 6))
    with pytest.raises(ValueError, match=r"^x: .*O\(3\)"):
        O(3).check_grid((8, 8))


def test_permutation_group_elements_and_indices():
    group = Permutation(4)
    assert group.order == 24 and group.elements().shape == (24, 4, 4)
    g = group.sample(3, generator=torch.Generator().manual_seed(0))
    p = Permutation.as_indices(g)
    x = torch.randn(4)
    assert torch.equal(g[0].float() @ x, x[p[0]])
    assert group.elements()[group.index(g[1])].equal(g[1])
