"""Per-sample equivariant normalization (never across the batch).

:class:`EquivariantLayerNorm` normalizes each sample by statistics of that sample alone,
one scale per kind computed from invariants:

- T0: ``(s - mean) / sqrt(var + eps) * w + b`` over the T0 channels;
- R: the same over all channels and group copies (both statistics are invariant under the
  permutation of copies); ``w``, ``b`` per channel, shared by the copies;
- T0p: ``p / sqrt(mean p^2 + eps) * w`` (no shift: a shift would not be pseudo);
- T1: ``v / sqrt(mean_c |v_c^T eta v_c| + eps) * w``;
- T2: ``M / sqrt(mean_c |tr(M_c eta M_c^T eta)| + eps) * w``.

On grids (``domain="grid"``) the means also run over the grid points of the sample, which
the group only permutes. Point inputs with extra axes (e.g. ``(batch, particles, dim)``)
are normalized per row.

Examples
--------
>>> import torch
>>> from grepsnet_sciml import Reps
>>> from grepsnet_sciml.groups import O
>>> ln = EquivariantLayerNorm(Reps("3xT0 + 2xT1", O(3)))
>>> y = ln(10 * torch.randn(4, 9))
>>> bool(abs(y[:, :3].std(1, unbiased=False) - 1).max() < 1e-3)
True
"""

from __future__ import annotations

import torch
from torch import nn

from ..reps import KINDS, Reps
from . import tensor_ops as ops
from .linear import TypedModule, check_domain, from_points, to_points

__all__ = ["EquivariantLayerNorm"]


class EquivariantLayerNorm(TypedModule):
    """Layer normalization with one invariant scale per kind, per sample.

    Parameters
    ----------
    reps : Reps
        Input and output representation.
    eps : float
        Added to the variances.
    affine : bool
        Learn per-channel scales (all kinds) and shifts (T0 and R only).
    domain : {"point", "grid"}
        Point features ``(..., dim)`` or fields ``(batch, dim, X, Y)``.
    """

    def __init__(self, reps: Reps, eps: float = 1e-5, affine: bool = True, domain: str = "point"):
        super().__init__()
        self.rep_in = self.rep_out = reps
        self.domain = check_domain(domain)
        self.eps = eps
        self.weight = nn.ParameterDict()
        self.bias = nn.ParameterDict()
        if affine:
            for k in KINDS:
                if reps.count(k):
                    self.weight[k] = nn.Parameter(torch.ones(reps.count(k)))
                    if k in ("T0", "R"):
                        self.bias[k] = nn.Parameter(torch.zeros(reps.count(k)))
        self.register_buffer(
            "eta", reps.group.metric.to(torch.get_default_dtype()), persistent=False
        )

    def _reduce(self, q: torch.Tensor, lead: int) -> torch.Tensor:
        """Mean of ``q`` ``(batch, [X, Y,] ...)`` over all axes after the sample's own."""
        keep = 1 if self.domain == "grid" else lead
        dims = tuple(range(keep, q.ndim))
        return q.mean(dim=dims, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_points(x, self.rep_in, self.domain)
        lead = x.ndim - 1
        parts = ops.split(x, self.rep_in)
        out = {}
        for kind, p in parts.items():
            if kind in ("T0", "R"):
                centred = p - self._reduce(p, lead)
                y = centred / torch.sqrt(self._reduce(centred * centred, lead) + self.eps)
            else:
                if kind == "T0p":
                    q = p * p
                elif kind == "T1":
                    q = ops.sq_norm(p, self.eta).abs()
                else:
                    q = ops.frobenius_sq(p, self.eta).abs()
                scale = torch.sqrt(self._reduce(q, lead) + self.eps)
                y = p / scale.reshape(*scale.shape, *([1] * (p.ndim - scale.ndim)))
            fibre = [1] * (p.ndim - lead - 1)
            if kind in self.weight:
                y = y * self.weight[kind].reshape(-1, *fibre)
            if kind in self.bias:
                y = y + self.bias[kind].reshape(-1, *fibre)
            out[kind] = y
        return from_points(ops.join(out, self.rep_out), self.domain)
