"""Tensor conversions and G-RepsNet layers on typed representations.

- :mod:`~grepsnet_sciml.layers.tensor_ops`: split/join a flat tensor by kind and convert
  between orders (inner products, traces, outer products, contractions, pooling); call its
  functions through the module (``grepsnet_sciml.layers.tensor_ops.norm``), as the names
  of the submodules here (``norm``, ...) are the modules.
- :class:`EquivariantLinear`: all channel-mixing and cross-kind equivariant linear maps,
  on points and (as a 1x1 convolution) on grid fields.
- :class:`NormActivation`, :class:`GatedActivation`: equivariant nonlinearities (points and
  grids).
- :class:`EquivariantLayerNorm`: per-sample normalization.
- :class:`GRepsLayer`, :class:`GRepsMLP`: the G-RepsNet layer and network.

Every layer declares ``rep_in``, ``rep_out`` and ``domain`` (``"point"`` or ``"grid"``)
for :func:`grepsnet_sciml.testing.assert_equivariant`.
"""

from . import tensor_ops
from .grepsnet import GRepsLayer, GRepsMLP
from .linear import EquivariantLinear, TypedModule
from .nonlinear import GatedActivation, NormActivation
from .norm import EquivariantLayerNorm
from .spectral import (
    EquivariantInstanceNorm2d,
    FourierBlock2d,
    SpectralConv2d,
    SpectralCurl,
    SpectralDivergence,
    SpectralGradient,
    SpectralHessian,
    count_free_parameters,
    radial_channel,
    spectral_conv_reference,
)

__all__ = [
    "tensor_ops",
    "TypedModule",
    "EquivariantLinear",
    "NormActivation",
    "GatedActivation",
    "EquivariantLayerNorm",
    "GRepsLayer",
    "GRepsMLP",
    "SpectralConv2d",
    "spectral_conv_reference",
    "EquivariantInstanceNorm2d",
    "FourierBlock2d",
    "SpectralGradient",
    "SpectralDivergence",
    "SpectralCurl",
    "SpectralHessian",
    "count_free_parameters",
    "radial_channel",
]
