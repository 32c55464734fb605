"""Equivariant spectral convolutions on typed fields over C4, D4 and their subgroups.

A spectral convolution multiplies the Fourier modes of a field in a window
``|kx|, |ky| <= K`` (``K = modes - 1``, size ``2K + 1``, as in G-FNO) by a kernel ``W(k)``
and drops the others:

.. math:: \\hat y(k) = W(k)\\, \\hat x(k) \\quad (|k_x|, |k_y| \\le K), \\qquad \\hat y(k) = 0
   \\text{ otherwise.}

On a square periodic ``N x N`` grid with the action ``(g . f)(i) = rho(g) f(g^{-1} i mod N)``
(about the origin grid point, :meth:`~grepsnet_sciml.groups.PlanarGroup.act_grid`) the layer
commutes with every ``g`` iff ``W(g k) = rho_out(g) W(k) rho_in(g)^T``, and keeps real fields
real iff ``W(-k) = conj(W(k))``. The window is closed under D4 and negation, and the kernel is
the orthogonal projection of a free kernel onto both constraints, so the layer is exactly
equivariant (to float round-off) for every pair of input/output types, including the
spectral conversions between orders (gradient-like T0 -> T1, divergence-like T1 -> T0,
curl-like T1 -> T0p, Hessian-like T0 -> T2), which are all inside this space.

Regular channels (``R``) are treated the G-RepsNet way by default (``regular="shared"``):
copy ``h`` of every channel is convolved with the base kernel transformed by ``h``,
``W_h(k) = W(h^{-1} k)``, with weights shared across copies, costing ``|G| C^2`` per mode;
copies interact only through the pointwise layers. ``regular="group"`` is G-FNO's group
convolution ``W_{h,g}(k) = W_{h^{-1} g}(h^{-1} k)``, costing ``(|G| C)^2`` per mode.

Examples
--------
>>> import torch
>>> from grepsnet_sciml import Reps
>>> from grepsnet_sciml.groups import D4
>>> conv = SpectralConv2d(Reps("2xT0p + T1", D4()), Reps("3xR", D4()), modes=4)
>>> conv(torch.randn(5, 4, 16, 16)).shape
torch.Size([5, 24, 16, 16])

The layers live in private modules: the convolution in ``_spectral_conv``, the instance norm
in ``_spectral_pointwise``, the Fourier block in ``_spectral_block``, the spectral
derivatives in ``_spectral_derivatives`` and the dealiasing filter in ``_spectral_filter``.
The pointwise linear map and activation on grids are
:class:`~grepsnet_sciml.layers.EquivariantLinear` and
:class:`~grepsnet_sciml.layers.NormActivation` with ``domain="grid"``.
"""

from ._spectral_block import FourierBlock2d
from ._spectral_conv import (
    SpectralConv2d,
    mode_matmul,  # noqa: F401 - public helper, kept out of __all__ as before
    spectral_conv_reference,
)
from ._spectral_derivatives import (
    SpectralCurl,
    SpectralDivergence,
    SpectralGradient,
    SpectralHessian,
)
from ._spectral_filter import DealiasFilter2d
from ._spectral_pointwise import EquivariantInstanceNorm2d, count_free_parameters, radial_channel

__all__ = [
    "SpectralConv2d",
    "spectral_conv_reference",
    "FourierBlock2d",
    "EquivariantInstanceNorm2d",
    "SpectralGradient",
    "SpectralDivergence",
    "SpectralCurl",
    "SpectralHessian",
    "DealiasFilter2d",
    "count_free_parameters",
    "radial_channel",
]
