"""Instance norm, radial channel and parameter count for typed grid fields (private;
re-exported by ``spectral``).

The pointwise linear map and activation of the grid stack are the core's
:class:`~grepsnet_sciml.layers.EquivariantLinear` and
:class:`~grepsnet_sciml.layers.NormActivation` with ``domain="grid"``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..reps import Reps
from ._spectral_typed import check_reps

__all__ = [
    "EquivariantInstanceNorm2d",
    "count_free_parameters",
    "radial_channel",
]


class EquivariantInstanceNorm2d(nn.Module):
    """Per-sample instance normalization with statistics shared within each typed channel.

    For each sample and channel ``c`` (a block of ``s`` components ``x_{c,a}(i)``):

    .. math:: y_{c,a}(i) = \\gamma_c \\frac{x_{c,a}(i) - \\mu_{c,a}}
       {\\sqrt{\\langle (x_c - \\mu_c)^2 \\rangle + \\epsilon}} + \\beta_c

    where ``mu_{c,a}`` is the grid mean of component ``a`` (the grid mean of a T1 field is a
    vector, so subtracting it is equivariant), except for R channels whose mean is also shared
    over the group axis, and ``<.>`` averages over the grid *and* all components. ``gamma``
    scales each channel; the bias ``beta`` exists only on T0 and R channels. Nothing is
    shared across the batch.

    Parameters
    ----------
    reps : Reps
    eps : float
    affine : bool
        Learn ``gamma`` (and ``beta`` on invariant channels); default False, as G-FNO's norm.
    """

    domain = "grid"
    translation_equivariant = True

    def __init__(self, reps: Reps, eps: float = 1e-5, affine: bool = False):
        super().__init__()
        check_reps(reps, "reps")
        self.rep_in = self.rep_out = reps
        self.eps = float(eps)
        n_channels = sum(b.mult for b in reps.blocks)
        if affine:
            self.weight = nn.Parameter(torch.ones(n_channels))
            invariant = [b.kind in ("T0", "R") for b in reps.blocks for _ in range(b.mult)]
            self.register_buffer("invariant", torch.tensor(invariant), persistent=False)
            self.bias = nn.Parameter(torch.zeros(int(sum(invariant))))
        else:
            self.weight = self.bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rep_in.check(x, "x", grid=True)
        b = x.shape[0]
        parts, c0 = [], 0
        if self.weight is not None:
            bias = torch.zeros_like(self.weight).index_put(
                (self.invariant.nonzero().squeeze(1),), self.bias
            )
        for block in self.rep_in.blocks:
            xb = x[:, block.slice]
            if block.kind in ("T0", "R"):  # statistics over the grid and the group axis
                xb = F.instance_norm(xb.reshape(b, block.mult, -1), eps=self.eps)
                xb = xb.reshape(b, block.mult, block.size, *x.shape[-2:])
            else:
                xb = xb.reshape(b, block.mult, block.size, *x.shape[-2:])
                xb = xb - xb.mean(dim=(3, 4), keepdim=True)
                var = xb.pow(2).mean(dim=(2, 3, 4), keepdim=True)
                xb = xb / torch.sqrt(var + self.eps)
            if self.weight is not None:
                c1 = c0 + block.mult
                xb = xb * self.weight[c0:c1, None, None, None] + bias[c0:c1, None, None, None]
                c0 = c1
            parts.append(xb.reshape(b, block.dim, *x.shape[-2:]))
        return torch.cat(parts, 1)


def radial_channel(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Invariant radial coordinate on the unit torus, ``(1, 1, n, n)``.

    ``r(i) = |d(i)|`` with ``d_a(i) = min(i_a, n - i_a) / n`` the periodic distance to the
    origin grid point; invariant under D4 about the origin, but *not* under translations (a
    model that uses it is no longer translation-equivariant).
    """
    i = torch.arange(n, dtype=torch.float64)
    d = torch.minimum(i, n - i) / n
    r = torch.sqrt(d[:, None] ** 2 + d[None, :] ** 2)
    return r.to(dtype)[None, None]


def count_free_parameters(module: nn.Module) -> int:
    """Effective parameter count: equivariant layers count the dimension of their weight space.

    A module with an ``n_free`` attribute counts ``n_free`` for its whole subtree (projected
    layers store redundant free weights); others count their own parameters' ``numel``.
    """
    if hasattr(module, "n_free"):
        return int(module.n_free)
    own = sum(p.numel() for p in module.parameters(recurse=False))
    return own + sum(count_free_parameters(c) for c in module.children())
