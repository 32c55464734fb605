"""Equivariant linear maps between direct sums of tensor representations.

:class:`EquivariantLinear` is a sum of *paths*, one per pair (input kind, output kind)
with an equivariant linear map that exists for every group with ``g^T eta g = eta`` (the R
paths for every finite group):

===============  ====================================================  ==================
path             map (channels ``c`` in, ``o`` out)                    weights
===============  ====================================================  ==================
T0 -> T0         ``y_o = sum_c W_oc s_c + b_o``                        ``(o, c)``
T0p -> T0p       ``y_o = sum_c W_oc p_c``                              ``(o, c)``
T1 -> T1         ``y_o = sum_c W_oc v_c``                              ``(o, c)``
T2 -> T2         ``y_o = sum_c W_oc M_c + W'_oc M_c^T``                ``(2, o, c)``
T0 -> T2         ``y_o = sum_c W_oc s_c eta^{-1}``                     ``(o, c)``
T2 -> T0         ``y_o = sum_c W_oc tr(M_c eta)``                      ``(o, c)``
R -> R           group convolution ``y_o(h) = sum_ck W_oc(k) f_c(hk)``  ``(o, c, |G|)``
K -> R           lift ``y_o(h) = sum_c <A_oc, rho_K(h)^{-1} x_c>``      ``(o, c, size_K)``
R -> K           projection ``y_o = sum_ch rho_K(h) B_oc f_c(h)``       ``(o, c, size_K)``
===============  ====================================================  ==================

(``K`` in T0, T0p, T1, T2; the lift from T0 is the broadcast and the projection to T0 the
sum over the group axis.) Biases sit only on invariant entries: T0 outputs and, constant
over the group axis, R outputs. Weights act on channels only, the same for every component
of a T1/T2 channel. Equivariance: ``rho_out(g) W x = W rho_in(g) x``. For a particular
group there can be more equivariant maps (e.g. the 90-degree rotation of T1 for C4, or
T0p -> T0 when no element has ``det g = -1``); they are left out, as in the paper.

The forward pass applies path by path on the parts of :func:`~.tensor_ops.split`
(channel mixing costs ``n_out * n_in`` per fibre component); :meth:`matrix` assembles the
same map as one dense ``(rep_out.dim, rep_in.dim)`` matrix.

Examples
--------
>>> import torch
>>> from grepsnet_sciml import Reps
>>> from grepsnet_sciml.groups import D4
>>> lin = EquivariantLinear(Reps("2xT0 + T1", D4()), Reps("T0p + 3xR", D4()))
>>> lin(torch.randn(5, 4)).shape
torch.Size([5, 25])
>>> lin = EquivariantLinear(Reps("T1", D4()), Reps("2xT1", D4()), domain="grid")
>>> lin(torch.randn(2, 2, 8, 8)).shape
torch.Size([2, 4, 8, 8])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..groups import FiniteGroup
from ..reps import KINDS, Reps
from . import tensor_ops as ops

__all__ = ["EquivariantLinear", "TypedModule", "check_domain", "to_points", "from_points"]

_SAME_KIND = ("T0", "T0p", "T1", "T2")
DENSE_MIN_POINTS = 4096
"""Above this many feature vectors :class:`EquivariantLinear` uses one dense matrix."""
_LIFTABLE = ("T0", "T0p", "T1", "T2")


def check_domain(domain: str) -> str:
    """Validate ``domain`` (``"point"`` or ``"grid"``)."""
    if domain not in ("point", "grid"):
        raise ValueError(f"domain: expected 'point' or 'grid', got {domain!r}")
    return domain


def to_points(x: torch.Tensor, reps: Reps, domain: str, argument: str = "x") -> torch.Tensor:
    """Check ``x`` against ``reps`` and move the channel axis last.

    ``(batch, dim, X, Y)`` -> ``(batch, X, Y, dim)`` on grids; point features unchanged.
    """
    reps.check(x, argument, grid=domain == "grid")
    return x.movedim(1, -1) if domain == "grid" else x


def from_points(y: torch.Tensor, domain: str) -> torch.Tensor:
    """Inverse of :func:`to_points` for the output layout."""
    return y.movedim(-1, 1) if domain == "grid" else y


class TypedModule(nn.Module):
    """Base of the layers here: declares ``rep_in``, ``rep_out`` and ``domain``.

    On grids every such layer acts pointwise (or with statistics over the whole grid), so it
    commutes with cyclic shifts; ``translation_equivariant`` tells the harness to check it.
    """

    @property
    def translation_equivariant(self) -> bool:
        return self.domain == "grid"


class EquivariantLinear(TypedModule):
    """The equivariant linear map ``rep_in -> rep_out`` built from the paths listed above.

    Parameters
    ----------
    rep_in, rep_out : Reps
        Input and output representations over the same group.
    bias : bool
        Learn a bias on T0 outputs and a group-constant bias on R outputs.
    domain : {"point", "grid"}
        ``"point"``: ``(..., rep_in.dim) -> (..., rep_out.dim)``; ``"grid"``: fields
        ``(batch, rep_in.dim, X, Y) -> (batch, rep_out.dim, X, Y)``, pointwise.

    Notes
    -----
    Weights are drawn ``N(0, 1 / fan)`` with ``fan`` the number of unit-variance terms
    summed into one output entry over all paths into that output kind, so outputs have
    O(1) scale for standard normal inputs.
    """

    def __init__(self, rep_in: Reps, rep_out: Reps, bias: bool = True, domain: str = "point"):
        super().__init__()
        if not isinstance(rep_in, Reps) or not isinstance(rep_out, Reps):
            raise ValueError(
                f"rep_in, rep_out: expected Reps, got {type(rep_in).__name__}, "
                f"{type(rep_out).__name__}"
            )
        if rep_in.group != rep_out.group:
            raise ValueError(
                f"rep_out: group {rep_out.group!r} differs from rep_in's {rep_in.group!r}"
            )
        self.rep_in, self.rep_out = rep_in, rep_out
        self.domain = check_domain(domain)
        group = rep_in.group
        self.finite = isinstance(group, FiniteGroup)
        n_in = {k: rep_in.count(k) for k in KINDS}
        n_out = {k: rep_out.count(k) for k in KINDS}

        self.weights = nn.ParameterDict()
        shapes: dict[tuple[str, str], tuple[int, ...]] = {}
        fans: dict[tuple[str, str], int] = {}
        for k in _SAME_KIND:
            if n_in[k] and n_out[k]:
                shapes[(k, k)] = ((2,) if k == "T2" else ()) + (n_out[k], n_in[k])
                fans[(k, k)] = (2 if k == "T2" else 1) * n_in[k]
        if n_in["T0"] and n_out["T2"]:
            shapes[("T0", "T2")] = (n_out["T2"], n_in["T0"])
            fans[("T0", "T2")] = n_in["T0"]
        if n_in["T2"] and n_out["T0"]:
            shapes[("T2", "T0")] = (n_out["T0"], n_in["T2"])
            fans[("T2", "T0")] = n_in["T2"] * group.d
        if self.finite:
            order = group.order
            if n_in["R"] and n_out["R"]:
                shapes[("R", "R")] = (n_out["R"], n_in["R"], order)
                fans[("R", "R")] = n_in["R"] * order
            for k in _LIFTABLE:
                size = rep_in.kind_size(k)
                if n_in[k] and n_out["R"]:
                    shapes[(k, "R")] = (n_out["R"], n_in[k], size)
                    fans[(k, "R")] = n_in[k] * size
                if n_in["R"] and n_out[k]:
                    shapes[("R", k)] = (n_out[k], n_in["R"], size)
                    fans[("R", k)] = n_in["R"] * order
        total = {k: sum(f for (_, ko), f in fans.items() if ko == k) for k in KINDS}
        self.paths = list(shapes)
        for (ki, ko), shape in shapes.items():
            w = torch.randn(shape) / math.sqrt(total[ko])
            self.weights[f"{ki}_to_{ko}"] = nn.Parameter(w)

        self.bias_t0 = nn.Parameter(torch.zeros(n_out["T0"])) if bias and n_out["T0"] else None
        self.bias_r = nn.Parameter(torch.zeros(n_out["R"])) if bias and n_out["R"] else None

        dtype = torch.get_default_dtype()
        metric = group.metric
        self.register_buffer("eta", metric.to(dtype), persistent=False)
        self.register_buffer("eta_inv", torch.linalg.inv(metric).to(dtype), persistent=False)
        d = group.d
        swap = torch.arange(d * d).reshape(d, d).T.reshape(-1)
        transpose_perm = torch.eye(d * d, dtype=dtype)[swap]
        self.register_buffer("transpose_perm", transpose_perm, persistent=False)
        if self.finite:
            table = group.multiplication_table
            inverse = torch.tensor([group.inverse_index(a) for a in range(group.order)])
            self.register_buffer("conv_index", table[inverse], persistent=False)
            for k in _LIFTABLE:
                rho = rep_in.rho(k).to(dtype)
                self.register_buffer(f"rho_{k}", rho, persistent=False)
                self.register_buffer(f"rho_inv_{k}", rho[inverse], persistent=False)
        self.register_buffer("inv_perm_in", rep_in.sort_inverse, persistent=False)
        self.register_buffer("inv_perm_out", rep_out.sort_inverse, persistent=False)
        # layouts already grouped by kind need no reordering of the dense matrix
        self.sorted_in, self.sorted_out = rep_in.is_sorted, rep_out.is_sorted

    def reaches(self, kind: str) -> bool:
        """Whether some path of this map ends in ``kind`` (else that output is constant)."""
        return any(ko == kind for _, ko in self.paths)

    # ------------------------------------------------------------------------------------
    def _path_matrix(self, ki: str, ko: str, w: torch.Tensor) -> torch.Tensor:
        """Dense block ``(n_out * size_out, n_in * size_in)`` of one path."""
        d = self.rep_in.group.d
        if ki == ko and ki in ("T0", "T0p"):
            return w
        if ki == ko == "T1":
            return torch.einsum("oc,ab->oacb", w, torch.eye(d, dtype=w.dtype, device=w.device))
        if ki == ko == "T2":
            eye = torch.eye(d * d, dtype=w.dtype, device=w.device)
            return torch.einsum("oc,ab->oacb", w[0], eye) + torch.einsum(
                "oc,ab->oacb", w[1], self.transpose_perm
            )
        if (ki, ko) == ("T0", "T2"):
            return torch.einsum("oc,a->oac", w, self.eta_inv.reshape(-1))
        if (ki, ko) == ("T2", "T0"):
            return torch.einsum("oc,a->oca", w, self.eta.T.reshape(-1))
        if ki == ko == "R":
            return w[:, :, self.conv_index].permute(0, 2, 1, 3)
        if ko == "R":
            return torch.einsum("oca,hab->ohcb", w, getattr(self, f"rho_inv_{ki}"))
        return torch.einsum("hab,ocb->oach", getattr(self, f"rho_{ko}"), w)

    def matrix(self) -> torch.Tensor:
        """The full map as a dense ``(rep_out.dim, rep_in.dim)`` matrix in the flat layout."""
        ref = self.eta
        rows = []
        for ko in KINDS:
            n_o = self.rep_out.count(ko)
            if not n_o:
                continue
            size_o = self.rep_out.kind_size(ko)
            row = []
            for ki in KINDS:
                n_i = self.rep_in.count(ki)
                if not n_i:
                    continue
                size_i = self.rep_in.kind_size(ki)
                if (ki, ko) in self.paths:
                    block = self._path_matrix(ki, ko, self.weights[f"{ki}_to_{ko}"])
                    block = block.reshape(n_o * size_o, n_i * size_i)
                else:
                    block = ref.new_zeros(n_o * size_o, n_i * size_i)
                row.append(block)
            rows.append(torch.cat(row, dim=1) if row else ref.new_zeros(n_o * size_o, 0))
        if not rows:
            return ref.new_zeros(0, self.rep_in.dim)
        w = torch.cat(rows, dim=0)
        if not self.sorted_out:
            w = w[self.inv_perm_out]
        return w if self.sorted_in else w[:, self.inv_perm_in]

    def bias_vector(self) -> torch.Tensor | None:
        """The bias in the flat output layout, or None without bias parameters."""
        if self.bias_t0 is None and self.bias_r is None:
            return None
        parts = {}
        for k in KINDS:
            n = self.rep_out.count(k)
            if n:
                parts[k] = self.eta.new_zeros(ops.part_shape(k, n, self.rep_out.group))
        if self.bias_t0 is not None:
            parts["T0"] = self.bias_t0
        if self.bias_r is not None:
            parts["R"] = ops.regular_broadcast(self.bias_r, self.rep_out.group.order)
        return ops.join(parts, self.rep_out)

    def _run_path(self, ki: str, ko: str, w: torch.Tensor, p: torch.Tensor, lead: int):
        """One path applied to the part ``p`` ``(*lead, n_in, *fibre)``."""
        linear = nn.functional.linear
        if ki == ko and ki in ("T0", "T0p"):
            return linear(p, w)
        if ki == ko == "T1":
            return linear(p.transpose(-1, -2), w).transpose(-1, -2)
        if ki == ko == "T2":
            y = linear(p.flatten(-2).transpose(-1, -2), w[0])
            y = y + linear(p.transpose(-1, -2).flatten(-2).transpose(-1, -2), w[1])
            return y.transpose(-1, -2).unflatten(-1, p.shape[-2:])
        if (ki, ko) == ("T0", "T2"):
            return linear(p, w)[..., None, None] * self.eta_inv
        if (ki, ko) == ("T2", "T0"):
            return linear(ops.trace(p, self.eta), w)
        n_o = self.rep_out.count(ko)
        block = self._path_matrix(ki, ko, w)
        block = block.reshape(n_o * self.rep_out.kind_size(ko), -1)
        y = linear(p.flatten(lead), block)
        return y.reshape(*p.shape[:lead], *ops.part_shape(ko, n_o, self.rep_out.group))

    def _forward_paths(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``y = W x + b``, path by path; shapes as in the class docstring."""
        x = to_points(x, self.rep_in, self.domain)
        lead = x.ndim - 1
        parts = ops.split(x, self.rep_in)
        out: dict[str, torch.Tensor] = {}
        for ki, ko in self.paths:
            y = self._run_path(ki, ko, self.weights[f"{ki}_to_{ko}"].to(x.dtype), parts[ki], lead)
            out[ko] = y if ko not in out else out[ko] + y
        for k in KINDS:
            n = self.rep_out.count(k)
            if n and k not in out:
                shape = (*x.shape[:-1], *ops.part_shape(k, n, self.rep_out.group))
                out[k] = x.new_zeros(shape)
        if self.bias_t0 is not None:
            out["T0"] = out["T0"] + self.bias_t0.to(x.dtype)
        if self.bias_r is not None:
            out["R"] = out["R"] + self.bias_r.to(x.dtype)[:, None]
        return from_points(ops.join(out, self.rep_out), self.domain)

    def dense_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same map through :meth:`matrix` and :meth:`bias_vector` (a slow reference)."""
        x = to_points(x, self.rep_in, self.domain)
        b = self.bias_vector()
        y = nn.functional.linear(x, self.matrix().to(x.dtype), None if b is None else b.to(x.dtype))
        return from_points(y, self.domain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``y = W x + b``; shapes as in the class docstring.

        Many points (grids, or more than ``DENSE_MIN_POINTS`` feature vectors): one dense
        matrix product, a 1x1 convolution; few points: path by path, with fewer operations
        for T1/T2 channels. Both compute the same map.
        """
        if self.domain == "grid" or x.numel() > DENSE_MIN_POINTS * max(self.rep_in.dim, 1):
            return self.dense_forward(x)
        return self._forward_paths(x)

    def extra_repr(self) -> str:
        return f"{self.rep_in} -> {self.rep_out}, domain={self.domain!r}"
