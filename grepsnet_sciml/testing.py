"""Equivariance harness: check ``f(g . x) = g . f(x)`` for a module's own types.

A module declares what it maps:

- ``rep_in``: a :class:`~grepsnet_sciml.reps.Reps`, or a tuple of them (one per
  ``forward`` argument);
- ``rep_out``: a ``Reps`` or a tuple of them (one per output);
- ``domain`` (optional, default ``"point"``): ``"grid"`` for fields ``(batch, dim, X, Y)``
  on which the group also moves grid points;
- ``translation_equivariant`` (optional, default False): for grids, commutes with cyclic
  shifts; for points, with adding one vector to the inputs listed in
  ``translation_inputs`` and the outputs in ``translation_outputs`` (positions);
- ``particle_axis`` (optional, default None): the axis of point inputs and outputs that
  lists particles, whose permutations the module commutes with.

The harness enumerates every element of a finite group (or samples continuous ones),
combines each with a random translation and particle permutation where they apply, runs the
module in the requested dtype and compares in float64.

Examples
--------
>>> import torch
>>> from grepsnet_sciml import Reps
>>> from grepsnet_sciml.groups import O
>>> class Scale(torch.nn.Module):
...     rep_in = rep_out = Reps("2xT1", O(3))
...     def forward(self, x):
...         return 2 * x
>>> report = assert_equivariant(Scale(), dtype=torch.float32)
>>> report.max_error < FLOAT32_RTOL
True
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch

from .groups import FiniteGroup
from .reps import Reps

__all__ = [
    "FLOAT32_RTOL",
    "FLOAT64_RTOL",
    "EquivarianceReport",
    "EquivarianceError",
    "assert_equivariant",
    "equivariance_errors",
]

FLOAT32_RTOL = 1e-5
"""Largest accepted relative equivariance error in float32."""
FLOAT64_RTOL = 1e-10
"""Largest accepted relative equivariance error in float64 for exact groups."""


class EquivarianceError(AssertionError):
    """Raised by :func:`assert_equivariant` when an error exceeds the tolerance."""


@dataclass
class EquivarianceReport:
    """Per-element equivariance errors.

    Attributes
    ----------
    rows : list of dict
        One row per tested element: ``element`` (index or sample number), ``name``,
        ``det``, ``translation``, ``permutation`` and ``error`` (relative, float64).
    tolerance : float
    dtype : torch.dtype
    """

    rows: list[dict] = field(default_factory=list)
    tolerance: float = FLOAT64_RTOL
    dtype: torch.dtype = torch.float64

    @property
    def max_error(self) -> float:
        """Largest error; NaN if any error is NaN (a NaN never hides behind a finite one)."""
        errors = [r["error"] for r in self.rows]
        if any(math.isnan(e) for e in errors):
            return math.nan
        return max(errors, default=0.0)

    @property
    def passed(self) -> bool:
        return all(r["error"] <= self.tolerance for r in self.rows)

    def table(self) -> str:
        """A readable table of the errors, one line per element."""
        lines = [f"{'element':>8} {'name':>8} {'det':>4} {'shift':>6} {'perm':>5}  rel. error"]
        for r in self.rows:
            flag = "" if r["error"] <= self.tolerance else "  <-- FAIL"  # NaN fails too
            lines.append(
                f"{r['element']:>8} {r['name']:>8} {r['det']:>4.0f} {str(r['translation']):>6} "
                f"{str(r['permutation']):>5}  {r['error']:.3e}{flag}"
            )
        lines.append(f"tolerance {self.tolerance:.1e} in {self.dtype}; max {self.max_error:.3e}")
        return "\n".join(lines)


def _as_tuple(reps) -> tuple[Reps, ...]:
    return tuple(reps) if isinstance(reps, (tuple, list)) else (reps,)


def equivariance_errors(
    module: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...] | torch.Tensor | None = None,
    *,
    elements: torch.Tensor | None = None,
    n_samples: int = 8,
    dtype: torch.dtype = torch.float64,
    batch: int = 2,
    grid_size: int = 16,
    n_particles: int = 5,
    translations: bool = True,
    permutations: bool = True,
    generator: torch.Generator | None = None,
) -> EquivarianceReport:
    """Compute the relative equivariance error of ``module`` per group element.

    Parameters
    ----------
    module : torch.nn.Module
        Declares ``rep_in``/``rep_out`` (and optionally ``domain``,
        ``translation_equivariant``, ``translation_inputs``, ``translation_outputs``,
        ``particle_axis``; see the module docstring).
    inputs : tensor or tuple of tensors, optional
        Inputs in the layout of ``rep_in``; random normal inputs when omitted, with shape
        ``(batch, dim, grid_size, grid_size)`` on grids, ``(batch, n_particles, dim)`` when
        the module has a ``particle_axis``, else ``(batch, dim)``.
    elements : torch.Tensor, optional
        ``(n, d, d)`` elements to test; default all elements of a finite group, else
        ``n_samples`` random ones.
    dtype : torch.dtype
        Precision the module runs in (errors are always computed in float64).

    Returns
    -------
    EquivarianceReport
        ``error = ||f(g x) - g f(x)|| / ||g f(x)||`` per element (all outputs together).
    """
    reps_in, reps_out = _as_tuple(module.rep_in), _as_tuple(module.rep_out)
    group = reps_in[0].group
    domain = getattr(module, "domain", "point")
    if domain not in ("point", "grid"):
        raise ValueError(f"module.domain: expected 'point' or 'grid', got {domain!r}")
    grid = domain == "grid"
    particle_axis = getattr(module, "particle_axis", None)
    shift_ok = translations and getattr(module, "translation_equivariant", False)
    shift_in = tuple(getattr(module, "translation_inputs", ()))
    shift_out = tuple(getattr(module, "translation_outputs", ()))
    gen = generator if generator is not None else torch.Generator().manual_seed(0)

    if inputs is None:
        inputs = tuple(
            r.randn(batch, grid=(grid_size, grid_size), generator=gen, dtype=dtype)
            if grid
            else r.randn(batch, *((n_particles,) if particle_axis is not None else ()),
                         generator=gen, dtype=dtype)
            for r in reps_in
        )
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    if len(inputs) != len(reps_in):
        raise ValueError(
            f"inputs: module.rep_in lists {len(reps_in)} inputs, got {len(inputs)} tensors"
        )
    for k, (x, r) in enumerate(zip(inputs, reps_in)):
        r.check(x, f"inputs[{k}]", grid=grid)
        if not torch.isfinite(x).all():
            raise ValueError(f"inputs[{k}]: contains NaN or Inf; expected finite values")
    inputs = tuple(x.to(dtype) for x in inputs)

    if elements is None:
        elements = group.elements() if isinstance(group, FiniteGroup) else group.sample(
            n_samples, generator=gen
        )
    names = getattr(group, "element_names", None)
    model = copy.deepcopy(module).to(dtype).eval()

    def run(xs):
        with torch.no_grad():
            out = model(*xs)
        return out if isinstance(out, (tuple, list)) else (out,)

    ref = run(inputs)
    if len(ref) != len(reps_out):
        raise ValueError(
            f"module.rep_out: declares {len(reps_out)} outputs, forward returned {len(ref)}"
        )
    report = EquivarianceReport(
        tolerance=FLOAT64_RTOL if dtype == torch.float64 else FLOAT32_RTOL, dtype=dtype
    )
    for k, g in enumerate(elements):
        shift = perm = None
        if shift_ok and grid:
            shift = tuple(int(s) for s in torch.randint(grid_size, (2,), generator=gen))
        elif shift_ok:
            shift = torch.randn(group.d, generator=gen, dtype=torch.float64)
        if permutations and particle_axis is not None:
            perm = torch.randperm(inputs[0].shape[particle_axis], generator=gen)

        def transform(xs, reps_list, shifted, g=g, shift=shift, perm=perm):
            out = []
            for j, (x, r) in enumerate(zip(xs, reps_list)):
                y = r.act(g, x, grid=grid)
                if shift is not None and grid:
                    y = torch.roll(y, shifts=shift, dims=(-2, -1))
                elif shift is not None and j in shifted:
                    y = y + shift.to(y.dtype).repeat(r.dim // group.d)
                if perm is not None:
                    y = y.index_select(particle_axis % y.ndim, perm)
                out.append(y)
            return tuple(out)

        lhs = run(transform(inputs, reps_in, shift_in))
        rhs = transform(ref, reps_out, shift_out)
        num = sum(torch.linalg.vector_norm(a.double() - b.double()) ** 2 for a, b in zip(lhs, rhs))
        den = sum(torch.linalg.vector_norm(b.double()) ** 2 for b in rhs)
        error = float(num.sqrt() / den.sqrt()) if den > 0 else float(num.sqrt())
        report.rows.append(
            {
                "element": k,
                "name": names[k] if names is not None and len(elements) == len(names) else "-",
                "det": float(torch.sign(torch.linalg.det(g.double()))),
                "translation": shift if not isinstance(shift, torch.Tensor) else "yes",
                "permutation": "yes" if perm is not None else None,
                "error": error,
            }
        )
    return report


def assert_equivariant(module: torch.nn.Module, *args, rtol: float | None = None, **kwargs):
    """Assert that ``module`` commutes with its group; see :func:`equivariance_errors`.

    Parameters
    ----------
    rtol : float, optional
        Tolerance; default :data:`FLOAT32_RTOL` or :data:`FLOAT64_RTOL` by ``dtype``.

    Returns
    -------
    EquivarianceReport

    Raises
    ------
    EquivarianceError
        With the per-element table, when any relative error exceeds the tolerance.
    """
    report = equivariance_errors(module, *args, **kwargs)
    if rtol is not None:
        report.tolerance = rtol
    if not report.passed:
        raise EquivarianceError(
            f"{type(module).__name__} is not equivariant:\n{report.table()}"
        )
    return report
