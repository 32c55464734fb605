"""The equivariance harness: passes equivariant modules, fails the others with a table."""

import math

import pytest
import torch
from torch import nn

from grepsnet_sciml import Reps
from grepsnet_sciml.groups import C4, D4, Lorentz, O
from grepsnet_sciml.testing import (
    FLOAT32_RTOL,
    FLOAT64_RTOL,
    EquivarianceError,
    assert_equivariant,
    equivariance_errors,
)


class Scale(nn.Module):
    """Multiply by a learnable scalar: equivariant for every representation."""

    def __init__(self, reps, domain="point"):
        super().__init__()
        self.rep_in = self.rep_out = reps
        self.domain = domain
        self.a = nn.Parameter(torch.tensor(1.5))

    def forward(self, x):
        return self.a * x


class TanhEverything(nn.Module):
    """Pointwise tanh on a vector: not equivariant for rotations."""

    def __init__(self, reps):
        super().__init__()
        self.rep_in = self.rep_out = reps

    def forward(self, x):
        return torch.tanh(x)


class Shift(nn.Module):
    """Roll a field by one cell: translation equivariant, not rotation equivariant."""

    rep_in = rep_out = Reps("T0", D4())
    domain = "grid"

    def forward(self, x):
        return torch.roll(x, 1, dims=-1)


class Mask(nn.Module):
    """Multiply by the D4-invariant forcing cos 4 pi x + cos 4 pi y: not shift equivariant."""

    rep_in = rep_out = Reps("T0p", D4())
    domain = "grid"

    def __init__(self, translation_equivariant):
        super().__init__()
        self.translation_equivariant = translation_equivariant

    def forward(self, x):
        n = x.shape[-1]
        grid = torch.arange(n, dtype=x.dtype) / n
        return x * (torch.cos(4 * math.pi * grid)[:, None] + torch.cos(4 * math.pi * grid))


class Centre(nn.Module):
    """Particles ``(batch, n, 3)``: ``x + (x - mean x)``, E(3) x S_n equivariant."""

    rep_in = rep_out = Reps("T1", O(3))
    particle_axis = 1
    translation_inputs = translation_outputs = (0,)

    def __init__(self, translation_equivariant=True, break_permutations=False):
        super().__init__()
        self.translation_equivariant = translation_equivariant
        self.break_permutations = break_permutations

    def forward(self, x):
        y = x + (x - x.mean(dim=1, keepdim=True))
        if self.break_permutations:
            weight = torch.arange(1, x.shape[1] + 1, dtype=x.dtype)[:, None]
            y = y + weight * (x - x.mean(dim=1, keepdim=True))
        return y


class TwoInOut(nn.Module):
    """Two inputs and two outputs: ``(s, v) -> (s * |v|^2, s v)``."""

    rep_in = (Reps("T0", O(3)), Reps("T1", O(3)))
    rep_out = (Reps("T0", O(3)), Reps("T1", O(3)))

    def forward(self, s, v):
        return s * (v * v).sum(-1, keepdim=True), s * v


def test_passes_equivariant_modules_in_both_precisions(dtype):
    for group in (D4(), O(3), Lorentz()):
        reps = Reps("T0 + T0p + T1 + T2", group)
        report = assert_equivariant(Scale(reps), dtype=dtype)
        assert report.passed and report.max_error < report.tolerance / 10
        assert report.tolerance == (FLOAT32_RTOL if dtype == torch.float32 else FLOAT64_RTOL)
    report = assert_equivariant(Scale(Reps("T1 + R", D4()), "grid"), dtype=dtype)
    assert len(report.rows) == 8 and [r["name"] for r in report.rows][:2] == ["e", "r"]
    assert assert_equivariant(TwoInOut(), dtype=dtype).max_error < 10 * FLOAT32_RTOL


class NanOnReflections(nn.Module):
    """Returns NaN when the (positive) pseudo-scalar input has been flipped by a reflection."""

    rep_in = rep_out = Reps("T0p", D4())

    def forward(self, x):
        return torch.where(x > 0, x, torch.full_like(x, math.nan))


def test_nan_outputs_fail_even_after_finite_errors():
    x = torch.ones(2, 1, dtype=torch.float64)
    report = equivariance_errors(NanOnReflections(), x)
    assert report.rows[0]["error"] == 0.0  # the identity comes first and is fine
    assert math.isnan(report.max_error) and not report.passed
    with pytest.raises(EquivarianceError, match="nan  <-- FAIL"):
        assert_equivariant(NanOnReflections(), x)


def test_continuous_groups_sample_the_requested_number():
    report = equivariance_errors(Scale(Reps("T1", O(4))), n_samples=5)
    assert len(report.rows) == 5
    assert {r["det"] for r in report.rows} <= {1.0, -1.0}


def test_fails_on_a_non_equivariant_module_with_a_table():
    with pytest.raises(EquivarianceError) as info:
        assert_equivariant(TanhEverything(Reps("2xT1", O(3))), dtype=torch.float64)
    message = str(info.value)
    assert "TanhEverything is not equivariant" in message
    assert "rel. error" in message and "<-- FAIL" in message and "tolerance 1.0e-10" in message
    report = equivariance_errors(TanhEverything(Reps("2xT1", O(3))))
    assert report.max_error > 1e-3 and not report.passed


def test_grid_failure_table_flags_only_the_broken_elements():
    report = equivariance_errors(Shift())
    errors = {r["name"]: r["error"] for r in report.rows}
    assert errors["e"] == 0.0
    assert all(errors[name] > 0.1 for name in ("r", "r2", "r3", "m"))
    with pytest.raises(EquivarianceError, match="FAIL"):
        assert_equivariant(Shift())


def test_grid_translations_are_tested_when_declared():
    # the mask is invariant under D4 about the origin, so only shifts can expose it
    assert equivariance_errors(Mask(False)).max_error < 1e-12
    report = equivariance_errors(Mask(True))
    assert report.max_error > 0.1
    assert all(isinstance(r["translation"], tuple) for r in report.rows)
    assert equivariance_errors(Mask(True), translations=False).max_error < 1e-12


def test_point_translations_and_particle_permutations():
    report = assert_equivariant(Centre(), dtype=torch.float64)
    assert all(r["translation"] == "yes" and r["permutation"] == "yes" for r in report.rows)

    class Doubling(Centre):
        def forward(self, x):
            return 2 * x  # a translation t becomes 2t

    assert equivariance_errors(Doubling(), translations=False).max_error < 1e-12
    assert equivariance_errors(Doubling()).max_error > 0.1
    broken = Centre(break_permutations=True)
    assert equivariance_errors(broken).max_error > 0.1
    assert equivariance_errors(broken, permutations=False).max_error < 1e-12


def test_explicit_inputs_and_rtol_override():
    reps = Reps("T1", C4())
    x = reps.randn(3, 4, dtype=torch.float64)
    report = assert_equivariant(Scale(reps), x, dtype=torch.float64)
    assert len(report.rows) == 4
    loose = assert_equivariant(TanhEverything(reps), x, rtol=10.0)
    assert loose.tolerance == 10.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_rejects_non_finite_inputs(bad):
    reps = Reps("T1", O(3))
    x = reps.randn(2)
    x[1, 2] = bad
    with pytest.raises(ValueError, match=r"^inputs\[0\]: contains NaN or Inf; expected finite"):
        assert_equivariant(Scale(reps), x)


def test_bad_harness_input_raises_value_error():
    reps = Reps("T1", O(3))
    with pytest.raises(ValueError, match=r"^inputs: .*1 inputs, got 2"):
        assert_equivariant(Scale(reps), (reps.randn(2), reps.randn(2)))
    with pytest.raises(ValueError, match=r"^inputs\[0\]: expected last dimension 3"):
        assert_equivariant(Scale(reps), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"^module.domain: expected 'point' or 'grid'"):
        assert_equivariant(Scale(reps, domain="mesh"))
    with pytest.raises(ValueError, match=r"^inputs\[0\]: .*\(8, 6\); expected \(N, N\)"):
        assert_equivariant(Scale(Reps("T0", D4()), "grid"), torch.zeros(2, 1, 8, 6))
