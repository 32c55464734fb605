"""One equivariant Fourier layer in the G-FNO arrangement (private; see ``spectral``)."""

from __future__ import annotations

from torch import nn

from ..reps import Reps
from ._spectral_conv import SpectralConv2d
from ._spectral_pointwise import EquivariantInstanceNorm2d
from .grepsnet import GRepsLayer
from .linear import EquivariantLinear
from .nonlinear import NormActivation


class FourierBlock2d(nn.Module):
    """``x -> act(mlp(norm(K norm(x))) + W x)`` on typed fields, as in G-FNO/FNO.

    ``K`` is a :class:`~grepsnet_sciml.layers.spectral.SpectralConv2d`, ``W`` is an
    :class:`~grepsnet_sciml.layers.EquivariantLinear` on the grid, ``norm`` is
    :class:`EquivariantInstanceNorm2d` (no parameters) and ``act`` is
    :class:`~grepsnet_sciml.layers.NormActivation` on the grid (skipped after the last
    block). ``mlp`` is ``EquivariantLinear -> NormActivation -> EquivariantLinear``
    (``pointwise="linear"``, as G-FNO's) or the core's G-RepsNet layer
    :class:`~grepsnet_sciml.layers.GRepsLayer` at every grid point (``pointwise="grepsnet"``:
    order conversions such as inner and outer products of vector channels, gated tensors).

    Parameters
    ----------
    reps : Reps
        Type of the hidden field, ``(batch, reps.dim, N, N) -> (batch, reps.dim, N, N)``.
    modes : int
    spectral_regular : {"shared", "group"}
        R -> R spectral kernels (G-RepsNet sharing or G-FNO group convolution).
    pointwise_regular : {"mean", "conv"}
        R -> R pointwise mixing.
    last : bool
        No activation at the end.
    pointwise : {"linear", "grepsnet"}
        The ``mlp`` (see above).
    mlp_hidden : Reps, optional
        Type of the hidden layer of the ``"linear"`` ``mlp`` (default ``reps``; narrower is
        cheaper, as neuraloperator's ``channel_mlp_expansion``).
    """

    domain = "grid"
    translation_equivariant = True

    def __init__(
        self,
        reps: Reps,
        modes: int,
        spectral_regular: str = "shared",
        pointwise_regular: str = "mean",
        last: bool = False,
        pointwise: str = "linear",
        mlp_hidden: Reps | None = None,
    ):
        super().__init__()
        if pointwise not in ("linear", "grepsnet"):
            raise ValueError(f"pointwise: expected 'linear' or 'grepsnet', got {pointwise!r}")
        if mlp_hidden is not None and pointwise != "linear":
            raise ValueError(f"mlp_hidden: only the 'linear' mlp has a hidden type, got "
                             f"pointwise={pointwise!r}")
        if mlp_hidden is not None and mlp_hidden.group != reps.group:
            raise ValueError(f"mlp_hidden: its group {mlp_hidden.group!r} is not reps' "
                             f"{reps.group!r}")
        mid = reps if mlp_hidden is None else mlp_hidden
        self.rep_in = self.rep_out = reps
        self.norm = EquivariantInstanceNorm2d(reps)
        self.spectral = SpectralConv2d(reps, reps, modes, regular=spectral_regular)
        if pointwise == "grepsnet":
            self.mlp = GRepsLayer(reps, reps, domain="grid", residual=False)
        else:
            self.mlp = nn.Sequential(
                EquivariantLinear(reps, mid, domain="grid", regular=pointwise_regular),
                NormActivation(mid, domain="grid"),
                EquivariantLinear(mid, reps, domain="grid", regular=pointwise_regular),
            )
        self.skip = EquivariantLinear(reps, reps, domain="grid", regular=pointwise_regular)
        self.act = None if last else NormActivation(reps, domain="grid")

    def forward(self, x):
        y = self.norm(self.spectral(self.norm(x)))
        y = self.mlp(y) + self.skip(x)
        return y if self.act is None else self.act(y)
