"""Equivariant nonlinearities.

- T0 and R channels: any pointwise function ``sigma`` (the regular representation permutes
  entries, so elementwise functions commute with it).
- T0p, T1, T2 channels: multiplied by a function of an invariant scalar, never passed
  through a pointwise function (``sigma(g v) != g sigma(v)``). A pseudo-scalar ``p`` gated by
  an invariant stays a pseudo-scalar (``p -> det(g) p`` commutes with ``p * s``).

:class:`NormActivation` gates each channel by its own invariant norm, on points and on grid
fields alike (the one activation of the point and grid stacks);
:class:`GatedActivation` by extra T0 gate channels appended to the input (e3nn's Gate).

Examples
--------
>>> import torch
>>> from grepsnet_sciml import Reps
>>> from grepsnet_sciml.groups import O
>>> act = NormActivation(Reps("2xT0 + T1", O(3)))
>>> act(torch.randn(4, 5)).shape
torch.Size([4, 5])
>>> from grepsnet_sciml.groups import D4
>>> act = NormActivation(Reps("T0p + 2xR", D4()), domain="grid")
>>> act(torch.randn(2, 17, 8, 8)).shape
torch.Size([2, 17, 8, 8])
>>> gate = GatedActivation(Reps("2xT0 + T1 + T2", O(3)))
>>> gate.rep_in
Reps('2xT0 + T1 + T2 + 2xT0', O(3))
>>> gate(torch.randn(4, gate.rep_in.dim)).shape
torch.Size([4, 14])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..reps import Reps
from . import tensor_ops as ops
from .linear import TypedModule, check_domain, from_points, to_points

__all__ = ["NormActivation", "GatedActivation", "activation_function", "invariant_norms"]

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": nn.functional.silu,
    "relu": torch.relu,
    "gelu": nn.functional.gelu,
    "tanh": torch.tanh,
    "softplus": nn.functional.softplus,
}
_GATED = ("T0p", "T1", "T2")


def activation_function(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The pointwise function called ``name`` (``silu``, ``relu``, ``gelu``, ``tanh``, ...)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation: unknown {name!r}; expected one of {list(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def invariant_norms(kind: str, x: torch.Tensor, metric: torch.Tensor, eps: float = 0.0):
    """Per-channel invariant magnitude of a part: ``|p|``, ``sqrt(|v^T eta v|)``, Frobenius.

    ``x``: a part ``(..., n, *fibre)`` of kind T0p, T1 or T2 -> ``(..., n)``.
    """
    if kind == "T0p":
        return torch.sqrt(x * x + eps)
    if kind == "T1":
        return ops.norm(x, metric, eps)
    if kind == "T2":
        return ops.frobenius(x, metric, eps)
    raise ValueError(f"kind: expected one of {list(_GATED)}, got {kind!r}")


class NormActivation(TypedModule):
    """Pointwise ``sigma`` on T0 and R; norm gating on T0p, T1 and T2.

    ``x_c -> x_c * sigmoid(||x_c|| - t_c)`` for each non-scalar channel ``c``, with
    ``||x_c|| = sqrt(|q_c| + eps)`` its invariant norm (``q_c`` = ``p_c^2``,
    ``v_c^T eta v_c`` or ``tr(M_c eta M_c^T eta)``; the sum of squares of the channel's
    components for orthogonal groups) and a learned threshold ``t_c`` per channel (escnn's
    ``n_sigmoid``). A pseudo-scalar gated by an invariant stays a pseudo-scalar.

    Parameters
    ----------
    reps : Reps
        Input and output representation (``rep_in == rep_out``), over any group.
    activation : str
        Pointwise function for T0 and R (:func:`activation_function`); GELU as G-FNO.
    domain : {"point", "grid"}
        Point features ``(..., dim)`` or fields ``(batch, dim, X, Y)``.
    threshold : float
        Initial value of every ``t_c``.
    eps : float
        Added under the square roots.

    Attributes
    ----------
    threshold : torch.nn.Parameter or None
        ``(n,)``, one per T0p, T1 and T2 channel in the order of ``reps.blocks``.

    Raises
    ------
    ValueError
        If ``reps`` is not a Reps, or ``activation`` or ``domain`` is unknown.
    """

    def __init__(
        self,
        reps: Reps,
        activation: str = "gelu",
        domain: str = "point",
        threshold: float = 0.5,
        eps: float = 1e-12,
    ):
        super().__init__()
        if not isinstance(reps, Reps):
            raise ValueError(f"reps: expected a Reps such as Reps('4xT0 + 2xT1', D4()), "
                             f"got {reps!r}")
        self.rep_in = self.rep_out = reps
        self.domain = check_domain(domain)
        self.act = activation_function(activation)
        self.eps = float(eps)
        n_gated = sum(b.mult for b in reps.blocks if b.kind in _GATED)
        self.threshold = (
            nn.Parameter(torch.full((n_gated,), float(threshold))) if n_gated else None
        )
        metric = reps.group.metric
        self.euclidean = torch.equal(metric, torch.eye(len(metric), dtype=metric.dtype))
        self.register_buffer("eta", metric.to(torch.get_default_dtype()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the activation; ``(..., dim)`` points or ``(batch, dim, X, Y)`` fields."""
        self.rep_in.check(x, "x", grid=self.domain == "grid")
        if self.domain == "point":  # as fields (batch, dim) without grid axes
            return self._fields(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        return self._fields(x)

    def _fields(self, x: torch.Tensor) -> torch.Tensor:
        """Block by block on ``(batch, dim, *grid)``."""
        b, grid = x.shape[0], x.shape[2:]
        parts, c0 = [], 0
        for block in self.rep_in.blocks:
            xb = x[:, block.slice]
            if block.kind not in _GATED:
                parts.append(self.act(xb))
                continue
            v = xb.reshape(b, block.mult, block.size, *grid)
            if self.euclidean or block.kind == "T0p":  # sum of squares of the components
                norm = torch.sqrt(v.pow(2).sum(2, keepdim=True) + self.eps)
            else:
                fibre = v.movedim(2, -1)
                if block.kind == "T2":
                    fibre = fibre.unflatten(-1, self.eta.shape)
                norm = invariant_norms(block.kind, fibre, self.eta.to(v.dtype), self.eps)
                norm = norm.unsqueeze(2)
            thr = self.threshold[c0 : c0 + block.mult].reshape(1, -1, 1, *([1] * len(grid)))
            c0 += block.mult
            parts.append((v * torch.sigmoid(norm - thr)).reshape(xb.shape))
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


class GatedActivation(TypedModule):
    """Gate non-scalar channels by extra invariant scalars (e3nn's Gate).

    ``rep_in = rep_out + k x T0`` with ``k`` the number of T0p, T1 and T2 channels of
    ``rep_out`` (gate scalars appended last, in the order of those channels sorted by kind
    T0p, T1, T2). Output: ``sigma`` on T0 and R; ``x_c * sigmoid(gate_c)`` on the rest.

    Parameters
    ----------
    rep_out : Reps
    activation : str
    domain : {"point", "grid"}
    """

    def __init__(self, rep_out: Reps, activation: str = "silu", domain: str = "point"):
        super().__init__()
        self.n_gates = sum(rep_out.count(k) for k in _GATED)
        self.rep_out = rep_out
        gates = Reps(f"{self.n_gates}xT0", rep_out.group)
        self.rep_in = rep_out + gates if self.n_gates else rep_out
        self.domain = check_domain(domain)
        self.act = activation_function(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_points(x, self.rep_in, self.domain)
        dim = self.rep_out.dim
        parts = ops.split(x[..., :dim], self.rep_out)
        gates = torch.sigmoid(x[..., dim:])
        out, k = {}, 0
        for kind in ("T0", "R"):
            if kind in parts:
                out[kind] = self.act(parts[kind])
        for kind in _GATED:
            if kind in parts:
                n = parts[kind].shape[x.ndim - 1]
                out[kind] = ops.gate(gates[..., k : k + n], parts[kind])
                k += n
        return from_points(ops.join(out, self.rep_out), self.domain)
