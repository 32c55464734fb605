"""Equivariant nonlinearities.

- T0 and R channels: any pointwise function ``sigma`` (the regular representation permutes
  entries, so elementwise functions commute with it).
- T0p, T1, T2 channels: multiplied by a function of an invariant scalar, never passed
  through a pointwise function (``sigma(g v) != g sigma(v)``). A pseudo-scalar ``p`` gated by
  an invariant stays a pseudo-scalar (``p -> det(g) p`` commutes with ``p * s``).

:class:`NormActivation` gates each channel by its own invariant norm;
:class:`GatedActivation` by extra T0 gate channels appended to the input (e3nn's Gate).

Examples
--------
>>> import torch
>>> from grepsnet_sciml import Reps
>>> from grepsnet_sciml.groups import O
>>> act = NormActivation(Reps("2xT0 + T1", O(3)))
>>> act(torch.randn(4, 5)).shape
torch.Size([4, 5])
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

    ``x_c -> x_c * sigmoid(||x_c|| + b_c)`` for each non-scalar channel ``c``, with
    ``||.||`` the invariant norm of :func:`invariant_norms` and a learned bias ``b_c``.

    Parameters
    ----------
    reps : Reps
        Input and output representation (``rep_in == rep_out``).
    activation : str
        Pointwise function for T0 and R.
    domain : {"point", "grid"}
        Point features ``(..., dim)`` or fields ``(batch, dim, X, Y)``.
    eps : float
        Added under the square roots.
    """

    def __init__(
        self, reps: Reps, activation: str = "silu", domain: str = "point", eps: float = 1e-6
    ):
        super().__init__()
        self.rep_in = self.rep_out = reps
        self.domain = check_domain(domain)
        self.act = activation_function(activation)
        self.eps = eps
        self.bias = nn.ParameterDict(
            {k: nn.Parameter(torch.zeros(reps.count(k))) for k in _GATED if reps.count(k)}
        )
        self.register_buffer(
            "eta", reps.group.metric.to(torch.get_default_dtype()), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = ops.split(to_points(x, self.rep_in, self.domain), self.rep_in)
        out = {}
        for kind, p in parts.items():
            if kind in ("T0", "R"):
                out[kind] = self.act(p)
            else:
                size = invariant_norms(kind, p, self.eta, self.eps)
                out[kind] = ops.gate(torch.sigmoid(size + self.bias[kind]), p)
        return from_points(ops.join(out, self.rep_out), self.domain)


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
