"""Reps: parsing, layout, value semantics, and the group action against a slow reference."""

import copy
import pickle

import pytest
import torch

import grepsnet_sciml.reps as reps_module
from grepsnet_sciml import Reps
from grepsnet_sciml.groups import C4, D2, D4, SO, FiniteGroup, Lorentz, O, Permutation
from grepsnet_sciml.layers import tensor_ops as ops
from grepsnet_sciml.reps import KINDS

GROUPS = [C4(), D4(), D2("diagonal"), O(2), O(3), SO(3), O(5), Lorentz()]
PLANAR = [C4(), D4(), D2("diagonal")]


def _spec(group):
    base = "2xT0 + T0p + 2xT1 + T2 + T0 + T1"
    return base + (" + 2xR" if isinstance(group, FiniteGroup) else "")


def _elements(group, n=4):
    if isinstance(group, FiniteGroup):
        return group.elements()
    return group.sample(n, generator=torch.Generator().manual_seed(0))


def test_parsing_dim_blocks_and_slices():
    reps = Reps("8xT0 + 2xT0p + 4xT1 + 2xT2 + 3xR", D4())
    assert reps.dim == 8 + 2 + 4 * 2 + 2 * 4 + 3 * 8
    assert [(b.mult, b.kind, b.size, b.start) for b in reps.blocks] == [
        (8, "T0", 1, 0),
        (2, "T0p", 1, 8),
        (4, "T1", 2, 10),
        (2, "T2", 4, 18),
        (3, "R", 8, 26),
    ]
    assert reps.slices() == [slice(0, 8), slice(8, 10), slice(10, 18), slice(18, 26),
                             slice(26, 50)]
    assert reps.count("T1") == 4 and len(reps) == 5
    assert Reps("T1 + 2 x T2", O(3)).dim == 3 + 18
    assert Reps("0", O(3)).dim == 0 and Reps([], O(3)).dim == 0
    assert Reps("T0p", Lorentz()).dim == 1 and Reps("T2", Lorentz()).dim == 16
    assert Reps([(2, "T1")], "O(4)") == Reps("2xT1", O(4))


def test_algebra_sorted_and_simplify():
    a, b = Reps("2xT0 + T1", O(3)), Reps("T1 + T2", O(3))
    s = a + b
    assert str(s) == "2xT0 + T1 + T1 + T2" and s.dim == a.dim + b.dim
    assert str(s.simplify()) == "2xT0 + 2xT1 + T2"
    assert str((b + a).sorted()) == "2xT0 + 2xT1 + T2"
    assert 3 * a == a * 3 == Reps("6xT0 + 3xT1", O(3))
    assert (a * 2).dim == 2 * a.dim


@pytest.mark.parametrize("group", GROUPS, ids=repr)
def test_repr_round_trips_and_value_semantics(group):
    reps = Reps(_spec(group), group)
    again = eval(repr(reps), vars(reps_module))
    assert again == reps and hash(again) == hash(reps) and repr(again) == repr(reps)
    assert {reps: 1}[Reps(_spec(group), group)] == 1
    assert reps != Reps("T0", group) and reps != _spec(group)
    assert copy.deepcopy(reps) == reps and pickle.loads(pickle.dumps(reps)) == reps
    with pytest.raises(AttributeError):
        reps.foo = 1


def test_reps_over_different_groups_differ():
    assert Reps("T1", O(3)) != Reps("T1", SO(3))
    assert Reps("T1", D4()) != Reps("T1", D2("diagonal"))
    assert hash(Reps("T1", O(3))) == hash(Reps("T1", "O(3)"))


def test_randn_and_check_shapes():
    reps = Reps("T0 + T1", D4())
    assert reps.randn(4, 5).shape == (4, 5, 3)
    assert reps.randn(2, grid=(8, 8), dtype=torch.float64).dtype == torch.float64
    assert reps.randn(2, grid=(8, 8)).shape == (2, 3, 8, 8)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(reps.randn(3, generator=g1), reps.randn(3, generator=g2))


def _slow_fibre(reps, g, x):
    """Reference fibre action on point features ``(batch, dim)``, channel by channel."""
    group = reps.group
    det = float(torch.sign(torch.linalg.det(g)))
    out = torch.empty_like(x)
    for b in reps.blocks:
        for c in range(b.mult):
            lo = b.start + c * b.size
            seg = x[:, lo : lo + b.size]
            if b.kind == "T0":
                y = seg
            elif b.kind == "T0p":
                y = det * seg
            elif b.kind == "T1":
                y = torch.stack([g @ v for v in seg])
            elif b.kind == "T2":
                d = group.d
                y = torch.stack([(g @ m.reshape(d, d) @ g.T).reshape(-1) for m in seg])
            else:
                e = group.elements()
                g_inv = torch.linalg.inv(g)
                y = torch.empty_like(seg)
                for h in range(group.order):
                    # (g . f)(h) = f(g^-1 h): find g^-1 h by comparing matrices
                    target = g_inv @ e[h]
                    k = int((e - target).abs().flatten(1).amax(1).argmin())
                    y[:, h] = seg[:, k]
            out[:, lo : lo + b.size] = y
    return out


@pytest.mark.parametrize("group", GROUPS, ids=repr)
def test_act_matches_slow_reference_on_points(group):
    reps = Reps(_spec(group), group)
    x = reps.randn(3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for g in _elements(group):
        assert torch.allclose(reps.act(g, x), _slow_fibre(reps, g, x), atol=1e-12)


@pytest.mark.parametrize("group", PLANAR, ids=repr)
def test_act_matches_slow_reference_on_grids(group):
    reps = Reps(_spec(group), group)
    n = 5
    x = reps.randn(2, grid=(n, n), dtype=torch.float64)
    for a, g in enumerate(group.elements()):
        out = reps.act(a, x, grid=True)
        g_inv = torch.linalg.inv(g).round().long()
        for i in range(n):
            for j in range(n):
                si, sj = ((g_inv @ torch.tensor([i, j])) % n).tolist()
                expected = _slow_fibre(reps, g, x[:, :, si, sj])
                assert torch.allclose(out[:, :, i, j], expected, atol=1e-12)


@pytest.mark.parametrize(
    ("group", "kind"),
    [
        (group, kind)
        for group in GROUPS
        for kind in ("T0", "T0p", "T1", "T2", "R")
        if kind != "R" or isinstance(group, FiniteGroup)  # R needs a finite group
    ],
    ids=lambda v: v if isinstance(v, str) else repr(v),
)
def test_act_is_a_homomorphism(group, kind):
    reps = Reps(f"3x{kind}", group)
    x = reps.randn(2, 4, dtype=torch.float64)
    elements = _elements(group)
    for g in elements:
        for h in elements[:4]:
            lhs = reps.act(g @ h, x)
            rhs = reps.act(g, reps.act(h, x))
            assert torch.allclose(lhs, rhs, atol=1e-10)
    if group in PLANAR:
        f = reps.randn(2, grid=(6, 6), dtype=torch.float64)
        for g in elements:
            for h in elements:
                lhs = reps.act(g @ h, f, grid=True)
                assert torch.allclose(lhs, reps.act(g, reps.act(h, f, grid=True), grid=True))


@pytest.mark.parametrize("group", GROUPS, ids=repr)
def test_layout_by_kind_matches_split_and_sorted(group):
    reps = Reps(_spec(group), group)
    x = reps.randn(3, dtype=torch.float64)
    parts = ops.split(x, reps)
    indices = reps.kind_indices
    assert list(indices) == [k for k in KINDS if reps.count(k)]
    for kind, idx in indices.items():
        assert idx.dtype == torch.long and len(idx) == reps.count(kind) * reps.kind_size(kind)
        assert torch.equal(x[:, idx], parts[kind].flatten(1))
    perm, inverse = reps.sort_permutation, reps.sort_inverse
    assert torch.equal(x[:, perm], torch.cat([parts[k].flatten(1) for k in indices], 1))
    assert torch.equal(ops.split(x[:, perm], reps.sorted())["T1"], parts["T1"])
    assert torch.equal(perm[inverse], torch.arange(reps.dim))
    assert not reps.is_sorted and reps.sorted().is_sorted
    assert torch.equal(reps.sorted().sort_permutation, torch.arange(reps.dim))
    assert [reps.kind_size(k) for k in ("T0", "T0p", "T1", "T2")] == [1, 1, group.d, group.d**2]


def test_layout_by_kind_of_the_empty_reps():
    empty = Reps("0", O(3))
    assert empty.kind_indices == {} and empty.is_sorted
    assert empty.sort_permutation.shape == (0,) and empty.sort_permutation.dtype == torch.long


@pytest.mark.parametrize("group", [g for g in GROUPS if isinstance(g, FiniteGroup)], ids=repr)
def test_rho_is_the_action_on_one_channel(group):
    for kind in KINDS:
        rho = Reps("T0", group).rho(kind)
        one = Reps(kind, group)
        assert rho.shape == (group.order, one.dim, one.dim) and rho.dtype == torch.float64
        x = one.randn(4, dtype=torch.float64)
        for a in range(group.order):
            assert torch.allclose(x @ rho[a].T, one.act(a, x), atol=1e-12)


def test_cached_layout_is_computed_once_and_handed_out_as_copies():
    reps = Reps("T1 + 2xT0 + R", D4())
    first = reps.sort_permutation
    first.zero_()
    reps.kind_indices["T1"].zero_()
    reps.rho("T1").zero_()
    assert torch.equal(reps.sort_permutation, torch.tensor([2, 3, 0, 1, *range(4, 12)]))
    assert torch.equal(reps.kind_indices["T1"], torch.tensor([0, 1]))
    assert torch.equal(reps.rho("T1"), D4().elements())
    # the cache is not part of the value: equality, hashing, pickling and copies ignore it
    fresh = Reps("T1 + 2xT0 + R", D4())
    assert fresh == reps and hash(fresh) == hash(reps)
    assert pickle.loads(pickle.dumps(reps)) == reps and copy.deepcopy(reps) is reps
    assert torch.equal(pickle.loads(pickle.dumps(reps)).sort_inverse, reps.sort_inverse)


def test_act_accepts_element_indices_and_keeps_dtype():
    reps = Reps("T1 + R", D4())
    x = reps.randn(2, dtype=torch.float32)
    for a, g in enumerate(D4().elements()):
        assert torch.equal(reps.act(a, x), reps.act(g, x))
    assert reps.act(1, x).dtype == torch.float32


@pytest.mark.parametrize(
    "make,argument,value",
    [
        (lambda: Reps("3xT7", O(3)), "spec", "T7"),
        (lambda: Reps("", O(3)), "spec", "''"),
        (lambda: Reps("  ", O(3)), "spec", "'  '"),
        (lambda: Reps("T1", O(3)).act(2 * torch.eye(3), torch.zeros(2, 3)), "g", "O(3)"),
        (lambda: Reps("T1", O(3)).act(torch.tensor([[1.0, 0.1, 0], [0, 1, 0], [0, 0, 1]]),
                                      torch.zeros(2, 3)), "g", "0.1"),
        (lambda: Reps("T1", SO(3)).act(-torch.eye(3, dtype=torch.float64),
                                       torch.zeros(2, 3, dtype=torch.float64)), "g", "-1"),
        (lambda: Reps("T1", Lorentz()).act(torch.eye(4) * 1.5, torch.zeros(2, 4)), "g",
         "Lorentz()"),
        (lambda: Reps("T1", D4()).act(torch.tensor([[0.6, -0.8], [0.8, 0.6]]),
                                      torch.zeros(2, 2)), "g", "D4()"),
        (lambda: Reps("T1", Permutation(3)).act(torch.ones(3, 3), torch.zeros(2, 3)), "g",
         "permutation matrix"),
        (lambda: Reps("0xT1", O(3)), "spec", "got 0"),
        (lambda: Reps([(-2, "T1")], O(3)), "spec", "got -2"),
        (lambda: Reps("axT1", O(3)), "spec", "axT1"),
        (lambda: Reps("T1 + + T2", O(3)), "spec", "''"),
        (lambda: Reps(5, O(3)), "spec", "5"),
        (lambda: Reps("2xR", O(3)), "spec", "O(3)"),
        (lambda: Reps("R", Lorentz()), "spec", "Lorentz()"),
        (lambda: Reps("T1", "Bogus()"), "group", "Bogus()"),
        (lambda: Reps("T1", 3), "group", "3"),
        (lambda: Reps("T1", O(3)) + Reps("T1", O(2)), "other", "O(2)"),
        (lambda: Reps("T1", O(3)) * 0, "k", "0"),
        (lambda: Reps("T1", O(3)).count("T9"), "kind", "T9"),
        (lambda: Reps("T1", O(3)).kind_size("T9"), "kind", "T9"),
        (lambda: Reps("T1", O(3)).kind_size("R"), "kind", "O(3)"),
        (lambda: Reps("T1", O(3)).rho("T1"), "kind", "O(3)"),
        (lambda: Reps("T1", D4()).rho("T9"), "kind", "T9"),
        (lambda: Reps("T1", O(3)).act(torch.eye(3), torch.zeros(2, 4)), "x", "(2, 4)"),
        (lambda: Reps("T1", O(3)).act(torch.eye(2), torch.zeros(2, 3)), "g", "(2, 2)"),
        (lambda: Reps("T1", O(3)).act(0, torch.zeros(2, 3)), "g", "O(3)"),
        (lambda: Reps("T1", D4()).act(0, torch.zeros(2, 3, 8, 8), grid=True), "x", "(2, 3, 8, 8)"),
        (lambda: Reps("T1", D4()).act(0, torch.zeros(2, 2, 8, 6), grid=True), "x", "(8, 6)"),
        (lambda: Reps("T1", O(3)).act(torch.eye(3), torch.zeros(1, 3, 4, 4), grid=True), "x",
         "O(3)"),
        (lambda: Reps("T1", O(3)).check([1.0, 2.0, 3.0], "velocity"), "velocity", "list"),
        (lambda: Reps("T1", O(3)).check(torch.zeros(5, 2), "velocity"), "velocity", "(5, 2)"),
    ],
)
def test_bad_input_raises_value_error_naming_argument_and_value(make, argument, value):
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert message.startswith(argument + ":"), message
    assert value in message, message
    assert "expected" in message or "must" in message or "needs" in message
