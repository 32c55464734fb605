"""G-RepsNet layers (Basu, Lohit & Brand, TMLR 2025) on typed representations.

One :class:`GRepsLayer` ``rep_in -> rep_out`` does, per point:

1. *Convert between orders* (parts of :mod:`tensor_ops`, inner products with the metric):

   - T0 features: the T0 inputs; the squashed Gram matrix ``<v_i, v_j>`` of the T1
     channels (``i <= j``); ``tr(M eta)`` and the squashed ``tr(M eta M^T eta)`` of each T2
     channel; the squashed products ``p_i p_j`` of pseudo-scalars; the group mean of each
     R channel.
   - T0p features: the T0p inputs; for ``d = 2`` also ``u_i x v_j`` (``i < j``) and
     ``eps : M``.
   - T1 features: the T1 inputs; the contractions ``M_i eta v_j``; for ``d = 2`` also
     ``p_i J v_j``.
   - T2 features: the T2 inputs; the outer products ``v_i v_j^T`` (``i <= j``); for
     ``d = 2`` also ``p_i J``.
   - R features: the R inputs.

   ``squash(q) = q / sqrt(1 + |q|)`` tames the growth of quadratic invariants (linear
   near 0, ``~ sqrt|q|`` far out) and is odd, so pseudo-scalars stay pseudo. The number of
   pairwise features grows as the square of the channel counts (``n1 (n1 + 1) / 2`` Gram
   entries and outer products, ``n1 n2`` contractions); ``pairwise=False`` keeps only
   ``i = j``.
2. *Invariant branch* (T0 and R, with bias): ``EquivariantLinear -> sigma ->
   EquivariantLinear`` to the T0 and R outputs plus one gate scalar per T0p/T1/T2 output
   channel (R is processed like T0 copy by copy, with group convolutions and lifts).
3. *Tensor branch* (T0p, T1, T2, no bias): ``EquivariantLinear`` from all features (T0
   enters T2 as ``s eta^{-1}``, R by projection), each kind divided by its per-sample RMS
   invariant norm, multiplied by its gates, then a channel-mixing ``EquivariantLinear``.
4. Residual ``x + layer(x)`` when ``rep_in == rep_out``.

Every step is equivariant, so ``layer(rho_in(g) x) = rho_out(g) layer(x)`` for every
``g`` with ``g^T eta g = eta``. With ``domain="grid"`` the layer acts pointwise on fields
``(batch, dim, X, Y)`` (so it also commutes with the grid action and cyclic shifts).
Unlike the reference script, every normalization is per sample (and per point).

References
----------
S. Basu, S. Lohit, M. Brand, "G-RepsNet: A Lightweight Construction of Equivariant
Networks for Arbitrary Matrix Groups", TMLR 2025, arXiv:2402.15413.

Examples
--------
>>> import torch
>>> from grepsnet_sciml import Reps
>>> from grepsnet_sciml.groups import O
>>> layer = GRepsLayer(Reps("5xT0 + 5xT1", O(3)), Reps("8xT0 + 4xT1 + 2xT2", O(3)))
>>> layer(torch.randn(10, 20)).shape
torch.Size([10, 38])
>>> mlp = GRepsMLP(Reps("5xT0 + 5xT1", O(3)), Reps("T2", O(3)),
...                hidden=Reps("16xT0 + 8xT1 + 4xT2", O(3)), depth=2)
>>> mlp(torch.randn(10, 20)).shape
torch.Size([10, 9])
"""

from __future__ import annotations

import torch
from torch import nn

from ..reps import KINDS, Reps
from . import tensor_ops as ops
from .linear import (
    EquivariantLinear,
    TypedModule,
    check_domain,
    check_reps,
    from_points,
    to_points,
)
from .nonlinear import activation_function
from .norm import EquivariantLayerNorm

__all__ = ["GRepsLayer", "GRepsMLP", "squash"]

_TENSOR_KINDS = ("T0p", "T1", "T2")


def squash(q: torch.Tensor) -> torch.Tensor:
    """``q / sqrt(1 + |q|)``: odd, smooth, linear near 0 and ``~ sqrt|q|`` for large ``q``."""
    return q / torch.sqrt(1 + q.abs())


def _pairs(n: int, m: int, pairwise: bool, symmetric: bool, diagonal: bool):
    """Index pairs ``(i, j)`` used for pairwise features (lists of ints)."""
    if symmetric:
        i, j = ops.upper_pairs(n, diagonal=diagonal)
        if not pairwise:
            keep = i == j
            i, j = i[keep], j[keep]
        return i, j
    i, j = torch.meshgrid(torch.arange(n), torch.arange(m), indexing="ij")
    i, j = i.reshape(-1), j.reshape(-1)
    if not pairwise:
        keep = i == j
        i, j = i[keep], j[keep]
    return i, j


class _Converter(nn.Module):
    """Step 1: all order conversions, parts of ``rep_in`` -> flat ``(*lead, features.dim)``."""

    def __init__(self, rep_in: Reps, pairwise: bool):
        super().__init__()
        group = rep_in.group
        n = {k: rep_in.count(k) for k in KINDS}
        self.two_d = group.d == 2
        idx = {
            "gram": _pairs(n["T1"], n["T1"], pairwise, True, True),
            "pp": _pairs(n["T0p"], n["T0p"], pairwise, True, True),
            "cross": _pairs(n["T1"], n["T1"], pairwise, True, False) if self.two_d else None,
            "contract": _pairs(n["T2"], n["T1"], pairwise, False, False),
            "hodge": _pairs(n["T0p"], n["T1"], pairwise, False, False) if self.two_d else None,
            "outer": _pairs(n["T1"], n["T1"], pairwise, True, True),
        }
        for name, pair in idx.items():
            if pair is not None:
                self.register_buffer(f"{name}_i", pair[0], persistent=False)
                self.register_buffer(f"{name}_j", pair[1], persistent=False)
        size = {name: (0 if pair is None else len(pair[0])) for name, pair in idx.items()}
        counts = {
            "T0": n["T0"] + size["gram"] + 2 * n["T2"] + size["pp"] + n["R"],
            "T0p": n["T0p"] + size["cross"] + (n["T2"] if self.two_d else 0),
            "T1": n["T1"] + size["contract"] + size["hodge"],
            "T2": n["T2"] + size["outer"] + (n["T0p"] if self.two_d else 0),
            "R": n["R"],
        }
        self.features = Reps([(counts[k], k) for k in KINDS if counts[k]], group)
        self.register_buffer(
            "eta", group.metric.to(torch.get_default_dtype()), persistent=False
        )
        j = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.get_default_dtype())
        self.register_buffer("hodge_matrix", j, persistent=False)

    def forward(self, parts: dict[str, torch.Tensor], lead: tuple[int, ...]):
        eta = self.eta
        s, p = parts.get("T0"), parts.get("T0p")
        v, m, f = parts.get("T1"), parts.get("T2"), parts.get("R")
        feats: dict[str, list[torch.Tensor]] = {k: [] for k in KINDS}
        if s is not None:
            feats["T0"].append(s)
        if v is not None:
            gi, gj = self.gram_i, self.gram_j
            q = torch.einsum("...ia,ab,...ib->...i", v[..., gi, :], eta, v[..., gj, :])
            feats["T0"].append(squash(q))
            feats["T1"].append(v)
            oi, oj = self.outer_i, self.outer_j
            feats["T2"].append(torch.einsum("...ia,...ib->...iab", v[..., oi, :], v[..., oj, :]))
        if m is not None:
            feats["T0"].append(ops.trace(m, eta))
            feats["T0"].append(squash(ops.frobenius_sq(m, eta)))
            feats["T2"].append(m)
            if v is not None and len(self.contract_i):
                ci, cj = self.contract_i, self.contract_j
                feats["T1"].append(
                    torch.einsum("...iab,bc,...ic->...ia", m[..., ci, :, :], eta, v[..., cj, :])
                )
            if self.two_d:
                feats["T0p"].append(ops.levi_civita_2d(m))
        if p is not None:
            feats["T0"].append(squash(p[..., self.pp_i] * p[..., self.pp_j]))
            feats["T0p"].append(p)
            if self.two_d:
                feats["T2"].append(p[..., :, None, None] * self.hodge_matrix)
                if v is not None and len(self.hodge_i):
                    hv = ops.hodge_2d(v[..., self.hodge_j, :])
                    feats["T1"].append(p[..., self.hodge_i, None] * hv)
        if self.two_d and v is not None and len(self.cross_i):
            ci, cj = self.cross_i, self.cross_j
            u, w = v[..., ci, :], v[..., cj, :]
            feats["T0p"].append(squash(u[..., 0] * w[..., 1] - u[..., 1] * w[..., 0]))
        if f is not None:
            feats["T0"].append(ops.regular_pool(f))
            feats["R"].append(f)
        # one concatenation straight into the flat layout of ``features`` (kinds in order)
        flat = [piece.reshape(*lead, -1) for k in KINDS for piece in feats[k]]
        return torch.cat(flat, dim=-1)


class GRepsLayer(TypedModule):
    """One G-RepsNet layer ``rep_in -> rep_out`` (see the module docstring).

    Parameters
    ----------
    rep_in, rep_out : Reps
        Representations over the same group (any of T0, T0p, T1, T2, R).
    domain : {"point", "grid"}
        ``"point"``: ``(..., rep_in.dim) -> (..., rep_out.dim)``; ``"grid"``: fields
        ``(batch, rep_in.dim, X, Y) -> (batch, rep_out.dim, X, Y)``, pointwise.
    hidden_scalars : int, optional
        Width of the T0 hidden layer of the invariant branch; default
        ``max(16, 2 * (T0 outputs + gates))``.
    activation : str
        Pointwise function of the invariant branch (T0 and R).
    pairwise : bool
        Use all channel pairs for inner, outer, cross products and contractions
        (``True``), or only ``i = j`` (cheaper for many channels).
    residual : bool, optional
        Add the input to the output; default ``rep_in == rep_out``.
    eps : float
        Added to the RMS norms that normalize the tensor branch.

    Raises
    ------
    ValueError
        If ``rep_out`` asks for a kind that no conversion of ``rep_in`` can produce (e.g.
        T0p from T0 and T1 only over O(3)), or ``residual`` is asked for with
        ``rep_in != rep_out``.
    """

    def __init__(
        self,
        rep_in: Reps,
        rep_out: Reps,
        domain: str = "point",
        hidden_scalars: int | None = None,
        activation: str = "silu",
        pairwise: bool = True,
        residual: bool | None = None,
        eps: float = 1e-6,
    ):
        super().__init__()
        check_reps(rep_in, rep_out)
        if residual and rep_in != rep_out:
            raise ValueError(
                f"residual: needs rep_in == rep_out, got {rep_in} and {rep_out}"
            )
        self.rep_in, self.rep_out = rep_in, rep_out
        self.domain = check_domain(domain)
        self.residual = rep_in == rep_out if residual is None else bool(residual)
        self.eps = eps
        self.act = activation_function(activation)
        group = rep_in.group
        n_out = {k: rep_out.count(k) for k in KINDS}
        self.convert = _Converter(rep_in, pairwise)
        features = self.convert.features
        self.n_gates = sum(n_out[k] for k in _TENSOR_KINDS)

        scalars_out = n_out["T0"] + self.n_gates
        if hidden_scalars is None:
            hidden_scalars = max(16, 2 * scalars_out)
        if not isinstance(hidden_scalars, int) or hidden_scalars < 1:
            raise ValueError(
                f"hidden_scalars: expected a positive integer, got {hidden_scalars!r}"
            )
        n_regular = max(rep_in.count("R"), n_out["R"]) if n_out["R"] or rep_in.count("R") else 0
        hidden = Reps(
            [(hidden_scalars, "T0")] + ([(n_regular, "R")] if n_regular else []), group
        )
        invariant_out = [(scalars_out, "T0")] if scalars_out else []
        invariant_out += [(n_out["R"], "R")] if n_out["R"] else []
        self.invariant_out = Reps(invariant_out, group)
        self.hidden = hidden
        self.lin_a = EquivariantLinear(features, hidden, bias=True)
        self.lin_b = (
            EquivariantLinear(hidden, self.invariant_out, bias=True) if invariant_out else None
        )

        tensor_out = [(n_out[k], k) for k in _TENSOR_KINDS if n_out[k]]
        self.tensor_out = Reps(tensor_out, group)
        if tensor_out:
            self.tensor_a = EquivariantLinear(features, self.tensor_out, bias=False)
            missing = [k for k in _TENSOR_KINDS if n_out[k] and not self.tensor_a.reaches(k)]
            if missing:
                raise ValueError(
                    f"rep_out: no equivariant conversion of rep_in={rep_in} produces "
                    f"{missing}; add such channels to rep_in"
                )
            self.tensor_b = EquivariantLinear(self.tensor_out, self.tensor_out, bias=False)
        else:
            self.tensor_a = self.tensor_b = None
        self.register_buffer(
            "eta", group.metric.to(torch.get_default_dtype()), persistent=False
        )

    def _rms(self, kind: str, y: torch.Tensor) -> torch.Tensor:
        """Per-sample RMS invariant norm of one kind's channels ``(..., n, *fibre)``.

        ``sqrt(mean_c |q_c| + eps)`` with ``q_c`` = ``p_c^2``, ``v_c^T eta v_c`` or
        ``tr(M_c eta M_c^T eta)``, shaped ``(..., 1, 1, ...)`` to broadcast against ``y``.
        """
        if kind == "T0p":
            q = y * y
        elif kind == "T1":
            q = ops.sq_norm(y, self.eta).abs()
        else:
            q = ops.frobenius_sq(y, self.eta).abs()
        r = torch.sqrt(q.mean(dim=-1, keepdim=True) + self.eps)
        return r.reshape(*r.shape, *([1] * (y.ndim - r.ndim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer; shapes as in the class docstring."""
        xp = to_points(x, self.rep_in, self.domain)
        lead = tuple(xp.shape[:-1])
        flat = self.convert(ops.split(xp, self.rep_in), lead)
        out: dict[str, torch.Tensor] = {}
        if self.lin_b is not None:
            inv = ops.split(self.lin_b(self.act(self.lin_a(flat))), self.invariant_out)
            scalars = inv.get("T0")
            if self.rep_out.count("T0"):
                out["T0"] = scalars[..., : self.rep_out.count("T0")]
            if "R" in inv:
                out["R"] = inv["R"]
        if self.tensor_a is not None:
            gates = scalars[..., self.rep_out.count("T0") :]
            ten = ops.split(self.tensor_a(flat), self.tensor_out)
            k = 0
            for kind in _TENSOR_KINDS:
                if kind not in ten:
                    continue
                y = ten[kind]
                c = y.shape[len(lead)]
                ten[kind] = ops.gate(gates[..., k : k + c], y / self._rms(kind, y))
                k += c
            out.update(ops.split(self.tensor_b(ops.join(ten, self.tensor_out)), self.tensor_out))
        y = ops.join(out, self.rep_out)
        if self.residual:
            y = y + xp
        return from_points(y, self.domain)

    def extra_repr(self) -> str:
        return (
            f"{self.rep_in} -> {self.rep_out}, domain={self.domain!r}, "
            f"residual={self.residual}"
        )


class GRepsMLP(TypedModule):
    """A stack of :class:`GRepsLayer` with residuals and a final equivariant linear map.

    ``rep_in -> hidden`` (one layer), then ``depth - 1`` residual layers
    ``hidden -> hidden`` (each optionally followed by :class:`EquivariantLayerNorm`), then
    :class:`EquivariantLinear` ``hidden -> rep_out`` (bias on T0 and R outputs), as in the
    paper's models.

    Parameters
    ----------
    rep_in, rep_out, hidden : Reps
        Over the same group; ``hidden`` must reach every kind of ``rep_out`` linearly
        (T0 from T0, T2 or R; T0p from T0p or R; T1 from T1 or R; T2 from T0, T2 or R; R
        from anything).
    depth : int
        Number of layers mapping into ``hidden`` (>= 1).
    domain : {"point", "grid"}
    norm : bool
        Insert a per-sample :class:`EquivariantLayerNorm` after every hidden layer.
    **layer_kwargs
        Passed to every :class:`GRepsLayer` (``hidden_scalars``, ``activation``,
        ``pairwise``, ``eps``).
    """

    def __init__(
        self,
        rep_in: Reps,
        rep_out: Reps,
        hidden: Reps,
        depth: int = 2,
        domain: str = "point",
        norm: bool = False,
        **layer_kwargs,
    ):
        super().__init__()
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth: expected a positive integer, got {depth!r}")
        if not isinstance(hidden, Reps) or hidden.group != rep_in.group:
            raise ValueError(
                f"hidden: expected Reps over {rep_in.group!r}, got {hidden!r}"
            )
        self.rep_in, self.rep_out, self.hidden = rep_in, rep_out, hidden
        self.domain = check_domain(domain)
        layers: list[nn.Module] = []
        for k in range(depth):
            layers.append(GRepsLayer(rep_in if k == 0 else hidden, hidden, "point", **layer_kwargs))
            if norm:
                layers.append(EquivariantLayerNorm(hidden))
        self.layers = nn.Sequential(*layers)
        self.head = EquivariantLinear(hidden, rep_out, bias=True)
        missing = [k for k in KINDS if rep_out.count(k) and not self.head.reaches(k)]
        if missing:
            raise ValueError(
                f"hidden: {hidden} cannot reach the kinds {missing} of rep_out={rep_out} "
                "linearly; add such channels to hidden"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., rep_in.dim) -> (..., rep_out.dim)`` (fields on grids)."""
        xp = to_points(x, self.rep_in, self.domain)
        return from_points(self.head(self.layers(xp)), self.domain)

    def extra_repr(self) -> str:
        return f"{self.rep_in} -> {self.rep_out}, domain={self.domain!r}"
