"""GFNO2d: group-equivariant Fourier neural operator (Helwig et al., ICML 2023), own version.

Written from the paper's description: the input frames are lifted pointwise to regular
channels over p4 (C4) or p4m (D4); each Fourier layer is a *group* spectral convolution, in
which output copy ``h`` uses the base kernel transformed by ``h`` with the group axis of the
input permuted, ``W_{h,g}(k) = W_{h^{-1} g}(h^{-1} k)`` (``(|G| C)^2`` complex weights per
mode, Hermitian on a group-closed window ``|k| <= modes - 1``); pointwise layers are 1x1
group convolutions ``y_h = sum_g W_{h^{-1} g} x_g``; instance norms share their statistics
over the group axis; the output is pooled over the group. The layer arrangement is the
paper's: ``x -> gelu(mlp(norm(K norm(x))) + W x)`` and a two-layer projection with a 4x wider
hidden layer.

Reflections and vorticity. The original p4m model lifts the input with the same weights on
every copy and pools with the same weights, i.e. it treats the vorticity as a true scalar
under reflections, which the Navier-Stokes data do not satisfy (vorticity is a pseudo-scalar).
``vorticity="scalar"`` (default) keeps that baseline behaviour; ``"pseudoscalar"`` lifts with
``det(h)`` signs and pools with them, the correct treatment.

Examples
--------
>>> import torch
>>> model = GFNO2d(10, 1, width=2, modes=4, n_layers=1, group="p4")
>>> model(torch.randn(3, 10, 16, 16)).shape
torch.Size([3, 1, 16, 16])
"""

from __future__ import annotations

import torch
from torch import nn

from ..groups import C4, D4
from ..layers.linear import EquivariantLinear
from ..layers.nonlinear import NormActivation
from ..layers.spectral import FourierBlock2d, count_free_parameters
from ..reps import Reps

__all__ = ["GFNO2d"]

_GROUPS = {"p4": C4, "p4m": D4}


class GFNO2d(nn.Module):
    """G-FNO-p4 / G-FNO-p4m on scalar (or pseudo-scalar) input frames.

    Parameters
    ----------
    in_channels, out_channels : int
        Input frames and output frames (fields of one kind each).
    width : int
        Regular channels per layer (``width x R``, ``|G| width`` real channels).
    modes : int
        Window ``|kx|, |ky| <= modes - 1`` (G-FNO's ``modes``).
    n_layers : int
        Fourier layers (4 in the paper).
    group : {"p4", "p4m"}
        Rotations C4, or rotations and reflections D4.
    vorticity : {"scalar", "pseudoscalar"}
        Kind of the input and output fields under reflections (see the module docstring).

    Attributes
    ----------
    rep_in, rep_out : Reps
        ``in_channels x T0`` (or ``T0p``) and ``out_channels x T0`` (or ``T0p``).
    hparams : dict
        JSON-serialisable constructor arguments (``GFNO2d(**hparams)`` rebuilds it).
    domain : str
        ``"grid"``.
    translation_equivariant : bool
        True (no positional embedding).

    Notes
    -----
    ``forward``: ``(batch, in_channels, N, N) -> (batch, out_channels, N, N)``.
    """

    domain = "grid"
    translation_equivariant = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int = 10,
        modes: int = 12,
        n_layers: int = 4,
        group: str = "p4",
        vorticity: str = "scalar",
    ):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("width", width), ("n_layers", n_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if group not in _GROUPS:
            raise ValueError(f"group: expected 'p4' or 'p4m', got {group!r}")
        if vorticity not in ("scalar", "pseudoscalar"):
            raise ValueError(f"vorticity: expected 'scalar' or 'pseudoscalar', got {vorticity!r}")
        g = _GROUPS[group]()
        kind = "T0" if vorticity == "scalar" else "T0p"
        self.group_name, self.vorticity = group, vorticity
        self.hparams = {"in_channels": in_channels, "out_channels": out_channels,
                        "width": width, "modes": modes, "n_layers": n_layers, "group": group,
                        "vorticity": vorticity}
        self.rep_in = Reps(f"{in_channels}x{kind}", g)
        self.rep_out = Reps(f"{out_channels}x{kind}", g)
        hidden = Reps(f"{width}xR", g)
        self.lift = EquivariantLinear(self.rep_in, hidden, domain="grid", regular="conv")
        self.blocks = nn.ModuleList(
            FourierBlock2d(hidden, modes, "group", "conv", last=(i == n_layers - 1))
            for i in range(n_layers)
        )
        self.project1 = EquivariantLinear(hidden, hidden * 4, domain="grid", regular="conv")
        self.project_act = NormActivation(hidden * 4, domain="grid")
        self.project2 = EquivariantLinear(hidden * 4, self.rep_out, domain="grid", regular="conv")

    def n_free_parameters(self) -> int:
        """Dimension of the weight space (see ``count_free_parameters``)."""
        return count_free_parameters(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rep_in.check(x, "x", grid=True)
        x = self.lift(x)
        for block in self.blocks:
            x = block(x)
        return self.project2(self.project_act(self.project1(x)))
