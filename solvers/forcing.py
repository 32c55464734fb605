"""The dataset's forcing as an input channel: a fixed field consistent with the declared group.

A translation-equivariant model cannot know where a forcing fixed in space sits; it must
infer it from the input frames. :class:`ForcingInput` appends the forcing ``f`` of the
Navier-Stokes data, sampled on the input's grid, to every input as one more channel of the
vorticity's kind (the forcing is a source of vorticity, a pseudo-scalar ``T0p``):

.. math:: F(x) = M([x, f])

For a declared symmetry element ``(g, s)`` (``grepsnet_sciml.datasets.navier_stokes``) the
forcing is invariant, ``det(g) f(g^{-1}(i - s)) = f(i)``: that is what makes ``(g, s)`` a
symmetry of the data. So if ``M`` commutes with ``g`` and with cyclic shifts, ``F`` commutes
with every declared element: ``F((g, s) . x) = M([(g, s) . x, (g, s) . f]) = (g, s) . F(x)``.
``F`` is no longer equivariant under shifts that move the forcing, nor under elements the
data do not declare (``tests/test_forcing.py`` checks both named forcings' invariance under
their declared elements, and ``F``'s equivariance under each of them).

The field is computed from its name and amplitude at the resolution of each input (the named
forcings are trigonometric polynomials), so the model stays resolution-independent.

Examples
--------
>>> import torch
>>> from grepsnet_sciml import Reps
>>> from grepsnet_sciml.groups import D4
>>> from grepsnet_sciml.models import GRepsFNO2d
>>> core = GRepsFNO2d(Reps("3xT0p", D4()), Reps("T0p", D4()), width=2, modes=3, n_layers=1)
>>> model = ForcingInput(core, "symmetric", 0.1)
>>> model.rep_in, model(torch.randn(2, 2, 8, 8)).shape
(Reps('2xT0p', D4()), torch.Size([2, 1, 8, 8]))
"""

from __future__ import annotations

import torch
from torch import nn

from grepsnet_sciml.datasets._ns_spectral import FORCINGS, scaled_forcing_field
from grepsnet_sciml.datasets.navier_stokes import FORCING_AMPLITUDE
from grepsnet_sciml.reps import Reps

__all__ = ["ForcingInput", "forcing_of"]


def forcing_of(config, source: str = "the data") -> tuple[str, float]:
    """``(name, amplitude)`` of a dataset's named forcing, from its generator config.

    Raises
    ------
    ValueError
        The config names no forcing of :data:`~grepsnet_sciml.datasets._ns_spectral.FORCINGS`
        (no forcing, a user array, or data that do not say).
    """
    name = dict(config).get("forcing")
    if name not in FORCINGS:
        raise ValueError(
            f"model.forcing_channel: {source} declares forcing {name!r} in attrs['config']; a "
            f"forcing channel needs one of {list(FORCINGS)} (set forcing_channel = false)")
    return name, float(dict(config).get("forcing_amplitude", FORCING_AMPLITUDE))


class ForcingInput(nn.Module):
    """``x -> core([x, f])`` with ``f`` the named forcing on the grid of ``x``.

    Parameters
    ----------
    core : nn.Module
        A grid model whose ``rep_in`` ends with one channel of the forcing's kind (the last
        block has multiplicity one more than the data's).
    forcing : {"fno", "symmetric"}
        The forcing's name (:func:`forcing_of`).
    amplitude : float
        Its amplitude (0.1 in the FNO and G-FNO data).

    Attributes
    ----------
    rep_in : Reps
        ``core.rep_in`` without the forcing channel: ``(batch, rep_in.dim, N, N)`` in.
    rep_out : Reps
        ``core.rep_out``.
    translation_equivariant : bool
        False: the forcing is fixed in space.
    """

    domain = "grid"
    translation_equivariant = False

    def __init__(self, core: nn.Module, forcing: str, amplitude: float):
        super().__init__()
        if forcing not in FORCINGS:
            raise ValueError(f"forcing: expected one of {list(FORCINGS)}, got {forcing!r}")
        last = core.rep_in.blocks[-1]
        if last.kind not in ("T0", "T0p"):
            raise ValueError(f"core: its rep_in {core.rep_in} must end with the forcing's scalar "
                             "or pseudo-scalar channel")
        self.core, self.forcing, self.amplitude = core, forcing, float(amplitude)
        kept = [(b.mult, b.kind) for b in core.rep_in.blocks[:-1]]
        if last.mult > 1:
            kept.append((last.mult - 1, last.kind))
        self.rep_in = Reps(kept, core.rep_in.group)
        self.rep_out = core.rep_out

    def field(self, n: int, dtype: torch.dtype, device) -> torch.Tensor:
        """The forcing on the ``n x n`` grid, ``(1, 1, n, n)``."""
        f = scaled_forcing_field(self.forcing, n, self.amplitude)
        return f.to(dtype=dtype, device=device)[None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rep_in.check(x, "x", grid=True)
        f = self.field(x.shape[-1], x.dtype, x.device).expand(x.shape[0], 1, *x.shape[-2:])
        return self.core(torch.cat([x, f], 1))

    def extra_repr(self) -> str:
        return f"forcing={self.forcing!r}, amplitude={self.amplitude:g}"
