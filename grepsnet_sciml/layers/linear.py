"""The equivariant linear map between direct sums of tensor representations.

:class:`EquivariantLinear` ``rep_in -> rep_out`` is the one pointwise linear layer of the
package, for point features and for grid fields (a 1x1 convolution). Its weight space
depends on the group:

- planar groups (C4, D4 and their subgroups): the *full* space of equivariant maps between
  every pair of kinds, by projection (:mod:`._linear_projected`); ``R -> R`` is the
  G-RepsNet mixing ``y_h = A x_h + B mean_g x_g`` (``regular="mean"``) or the group
  convolution ``y_h = sum_g W_{h^{-1} g} x_g`` (``regular="conv"``, G-FNO's 1x1
  ``GConv2d``);
- every other group (O(d), SO(d), the Lorentz group, permutation groups): the *paths* that
  exist for every group with ``g^T eta g = eta`` (:mod:`._linear_paths`: channel mixing
  within a kind, T0 <-> T2 through the metric, ``R -> R`` as above, lifts to and
  projections from R for finite groups).

Either way biases sit only on invariant entries (T0 outputs and, constant over the group
axis, R outputs) and ``rho_out(g) W = W rho_in(g)`` for every group element ``g``;
:meth:`EquivariantLinear.matrix` is the map as one dense matrix.

Examples
--------
>>> import torch
>>> from grepsnet_sciml import Reps
>>> from grepsnet_sciml.groups import D4, O
>>> lin = EquivariantLinear(Reps("2xT0 + T1", O(3)), Reps("T0 + 3xT1", O(3)))
>>> lin(torch.randn(5, 5)).shape
torch.Size([5, 10])
>>> lin = EquivariantLinear(Reps("T1 + R", D4()), Reps("2xT1", D4()), domain="grid")
>>> lin(torch.randn(2, 10, 8, 8)).shape
torch.Size([2, 4, 8, 8])
"""

from __future__ import annotations

import torch
from torch import nn

from ..groups import FiniteGroup, PlanarGroup
from ..reps import Reps
from . import _linear_paths, _linear_projected
from ._spectral_kernels import regular_index_maps

__all__ = ["EquivariantLinear", "TypedModule", "check_domain", "to_points", "from_points"]

DENSE_MIN_POINTS = 4096
"""Above this many feature vectors the path weight space uses one dense matrix."""
REGULAR = ("mean", "conv")
"""The ``R -> R`` mixings of :class:`EquivariantLinear`."""


def check_domain(domain: str) -> str:
    """Validate ``domain`` (``"point"`` or ``"grid"``)."""
    if domain not in ("point", "grid"):
        raise ValueError(f"domain: expected 'point' or 'grid', got {domain!r}")
    return domain


def check_reps(rep_in, rep_out) -> None:
    """Raise ``ValueError`` unless both are :class:`~grepsnet_sciml.reps.Reps` over one group."""
    for argument, reps in (("rep_in", rep_in), ("rep_out", rep_out)):
        if not isinstance(reps, Reps):
            raise ValueError(
                f"{argument}: expected a Reps such as Reps('4xT0 + 2xT1', D4()), got {reps!r}"
            )
    if rep_in.group != rep_out.group:
        raise ValueError(
            f"rep_out: expected a Reps over {rep_in.group!r} like rep_in, got {rep_out.group!r}"
        )


def to_points(x: torch.Tensor, reps: Reps, domain: str, argument: str = "x") -> torch.Tensor:
    """Check ``x`` against ``reps`` and move the channel axis last.

    ``(batch, dim, X, Y)`` -> ``(batch, X, Y, dim)`` on grids; point features unchanged.
    """
    reps.check(x, argument, grid=domain == "grid")
    return x.movedim(1, -1) if domain == "grid" else x


def from_points(y: torch.Tensor, domain: str) -> torch.Tensor:
    """Inverse of :func:`to_points` for the output layout."""
    return y.movedim(-1, 1) if domain == "grid" else y


class TypedModule(nn.Module):
    """Base of the layers here: declares ``rep_in``, ``rep_out`` and ``domain``.

    On grids every such layer acts pointwise (or with statistics over the whole grid), so it
    commutes with cyclic shifts; ``translation_equivariant`` tells the harness to check it.
    """

    @property
    def translation_equivariant(self) -> bool:
        return self.domain == "grid"


class EquivariantLinear(TypedModule):
    """The equivariant linear map ``rep_in -> rep_out``, ``y = W x + b`` at every point.

    Parameters
    ----------
    rep_in, rep_out : Reps
        Input and output representations over the same group.
    bias : bool
        Learn a bias on T0 outputs and a group-constant bias on R outputs.
    domain : {"point", "grid"}
        ``"point"``: ``(..., rep_in.dim) -> (..., rep_out.dim)``; ``"grid"``: fields
        ``(batch, rep_in.dim, X, Y) -> (batch, rep_out.dim, X, Y)``, the same map at every
        grid point (a 1x1 convolution).
    regular : {"conv", "mean"}
        ``R -> R`` mixing: ``"conv"`` the group convolution ``y_h = sum_g W_{h^{-1} g} x_g``
        (``C_out C_in |G|`` weights, ``(|G| C)^2`` products per point); ``"mean"`` the
        G-RepsNet map ``y_h = A x_h + B mean_g x_g`` (``2 C_out C_in`` weights, ``O(|G|
        C^2)`` per point on grids).

    Attributes
    ----------
    paths : list of tuple
        The pairs ``(kind_in, kind_out)`` that carry weights.
    n_free : int
        Dimension of the weight space (weights and biases).
    projected : bool
        Whether the weights are projected (planar groups) or paths (other groups); the
        module docstrings of :mod:`._linear_projected` and :mod:`._linear_paths` list the
        parameters and their initialisation.

    Raises
    ------
    ValueError
        If ``rep_in``/``rep_out`` are not ``Reps`` over one group, or ``domain`` or
        ``regular`` is unknown (each message names the argument and the value).

    Notes
    -----
    Equivariance: ``W rho_in(g) = rho_out(g) W`` for every ``g``; on grids also commutes with
    the grid action and cyclic shifts. Planar groups: free weights start like torch's
    ``Conv2d`` (std ``1 / sqrt(3 fan_in)``, invariant biases uniform in ``1 / sqrt(fan_in)``);
    other groups: ``N(0, 1 / fan)`` with zero bias, so outputs have O(1) scale.

    Examples
    --------
    >>> import torch
    >>> from grepsnet_sciml import Reps
    >>> from grepsnet_sciml.groups import C4
    >>> lin = EquivariantLinear(Reps("3xR", C4()), Reps("T0 + 2xR", C4()), regular="mean")
    >>> lin(torch.randn(7, 12)).shape, lin.paths
    (torch.Size([7, 9]), [('R', 'T0'), ('R', 'R')])
    """

    def __init__(
        self,
        rep_in: Reps,
        rep_out: Reps,
        bias: bool = True,
        domain: str = "point",
        regular: str = "conv",
    ):
        super().__init__()
        check_reps(rep_in, rep_out)
        self.domain = check_domain(domain)
        if regular not in REGULAR:
            raise ValueError(f"regular: expected 'mean' or 'conv', got {regular!r}")
        self.rep_in, self.rep_out, self.regular = rep_in, rep_out, regular
        group = rep_in.group
        self.projected = isinstance(group, PlanarGroup)
        self.register_buffer(
            "eta", group.metric.to(torch.get_default_dtype()), persistent=False
        )
        order, empty = rep_out.kind_indices, torch.zeros(0, dtype=torch.long)
        invariant = torch.cat([order.get("T0", empty), order.get("R", empty)])
        self.register_buffer("bias_idx", invariant, persistent=False)
        if isinstance(group, FiniteGroup):
            self.register_buffer("regular_index", regular_index_maps(group), persistent=False)
        self._space.build(self, bias)

    @property
    def _space(self):
        """The module implementing this layer's weight space."""
        return _linear_projected if self.projected else _linear_paths

    def reaches(self, kind: str) -> bool:
        """Whether some weight of this map ends in ``kind`` (else that output is constant)."""
        return any(ko == kind for _, ko in self.paths)

    def matrix(self) -> torch.Tensor:
        """The map as a dense ``(rep_out.dim, rep_in.dim)`` matrix in the flat layout."""
        dense = self.eta.new_zeros(self.rep_out.dim, self.rep_in.dim)
        order_out, order_in = self.rep_out.kind_indices, self.rep_in.kind_indices
        for ki, ko in self.paths:
            block = self._space.block(self, ki, ko).to(dense.dtype)
            dense[order_out[ko][:, None], order_in[ki][None, :]] = block
        return dense

    def bias_vector(self) -> torch.Tensor | None:
        """The bias ``(rep_out.dim,)`` in the flat layout, or None without bias parameters."""
        values = self._space.bias_values(self)
        if values is None:
            return None
        return values.new_zeros(self.rep_out.dim).index_put((self.bias_idx,), values)

    def dense_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same map through :meth:`matrix` and :meth:`bias_vector` (a slow reference)."""
        x = to_points(x, self.rep_in, self.domain)
        b = self.bias_vector()
        y = nn.functional.linear(x, self.matrix().to(x.dtype), None if b is None else b.to(x.dtype))
        return from_points(y, self.domain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``y = W x + b``; shapes as in the class docstring.

        Projected weights: on grids kind block by kind block (cheap ``"mean"`` mixing), on
        points one dense matrix product. Paths: path by path for few points (fewer
        operations for T1/T2 channels); one dense matrix product on grids and for more than
        ``DENSE_MIN_POINTS`` feature vectors. All compute the same map.
        """
        if self.projected and self.domain == "grid":
            self.rep_in.check(x, "x", grid=True)
            return _linear_projected.grid_forward(self, x)
        if (self.projected or self.domain == "grid"
                or x.numel() > DENSE_MIN_POINTS * max(self.rep_in.dim, 1)):
            return self.dense_forward(x)
        return _linear_paths.forward(self, x)

    def extra_repr(self) -> str:
        regular = f", regular={self.regular!r}" if ("R", "R") in self.paths else ""
        return f"{self.rep_in} -> {self.rep_out}, domain={self.domain!r}{regular}"
