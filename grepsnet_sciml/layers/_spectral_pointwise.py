"""Pointwise equivariant layers for typed grid fields (private; re-exported by ``spectral``).

All act at every grid point of ``(batch, reps.dim, X, Y)`` fields, so they commute with grid
translations and with the grid part of the group action; their weights are tied so that they
commute with the fibre action.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..reps import Reps
from ._spectral_kernels import regular_index_maps
from ._spectral_typed import (
    TENSOR_KINDS,
    KindPairs,
    check_reps,
    check_same_group,
    layout_indices,
    merge,
    merge_layout,
    take,
)

__all__ = [
    "EquivariantPointwise2d",
    "EquivariantInstanceNorm2d",
    "NormActivation2d",
    "count_free_parameters",
    "radial_channel",
]


def _mm(w: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """``y[b, o] = sum_i w[o, i] x[b, i]`` at every grid point (a 1x1 convolution)."""
    if w is None or x.shape[1] == 0:
        return None
    b = x.shape[0]
    y = torch.bmm(w.expand(b, -1, -1), x.reshape(b, x.shape[1], -1))  # no transposed copies
    return y.reshape(b, -1, *x.shape[2:])


def _add(a, b):
    if a is None:
        return b
    return a if b is None else a + b


class EquivariantPointwise2d(nn.Module):
    """Equivariant linear map applied at every grid point (a 1x1 convolution).

    Parameters
    ----------
    rep_in, rep_out : Reps
        Types over the same planar group.
    bias : bool
        Bias on invariant channels only: T0, and R channels (the same value on every copy).
    regular : {"mean", "conv"}
        ``R -> R`` mixing: ``"mean"`` is the G-RepsNet map ``y_h = A x_h + B mean_g x_g``
        (``2 C_out C_in`` weights, ``O(|G| C^2)`` per point); ``"conv"`` the group convolution
        ``y_h = sum_g W_{h^{-1} g} x_g`` (G-FNO's 1x1 ``GConv2d``, ``(|G| C)^2`` per point).

    Notes
    -----
    ``forward``: ``(batch, rep_in.dim, X, Y) -> (batch, rep_out.dim, X, Y)``, ``y(i) = W x(i)
    + b`` with ``W rho_in(g) = rho_out(g) W`` for every ``g``. The other pairs of types use the
    orthogonal projection ``W = mean_g rho_out(g) V rho_in(g)^T`` of a free matrix ``V``; pairs
    whose equivariant space is empty (e.g. T0 -> T1 under C4) get no weights.
    """

    domain = "grid"
    translation_equivariant = True

    def __init__(self, rep_in: Reps, rep_out: Reps, bias: bool = True, regular: str = "mean"):
        super().__init__()
        check_reps(rep_in, "rep_in")
        check_reps(rep_out, "rep_out")
        check_same_group(rep_in, rep_out)
        if regular not in ("mean", "conv"):
            raise ValueError(f"regular: expected 'mean' or 'conv', got {regular!r}")
        self.rep_in, self.rep_out, self.regular = rep_in, rep_out, regular
        group = rep_in.group
        n_channels = sum(b.mult for b in rep_in.blocks)
        self.pairs = KindPairs(rep_in, rep_out, scale=1.0 / math.sqrt(n_channels))
        self.n_free = self.pairs.n_free
        layout_indices(self, rep_in, "in")
        merge_layout(self, "out", rep_out)
        self.register_buffer("table", regular_index_maps(group), persistent=False)
        c_in, c_out = rep_in.count("R"), rep_out.count("R")
        self.weight_regular = None
        if c_in and c_out:
            if regular == "mean":
                w = torch.randn(2, c_out, c_in) / math.sqrt(n_channels)
            else:
                w = torch.randn(c_out, c_in, group.order) / math.sqrt(n_channels * group.order)
            self.weight_regular = nn.Parameter(w)
            self.n_free += w.numel()
        self.n_t0, self.n_r = rep_out.count("T0"), c_out
        if bias and self.n_t0 + self.n_r:
            self.bias = nn.Parameter(torch.zeros(self.n_t0 + self.n_r))
            self.n_free += self.bias.numel()
            order, empty = rep_out.kind_indices, torch.zeros(0, dtype=torch.long)
            idx = torch.cat([order.get("T0", empty), order.get("R", empty)])
            self.register_buffer("bias_idx", idx, persistent=False)
        else:
            self.bias = None

    def dense_matrix(self) -> torch.Tensor:
        """The full weight ``(rep_out.dim, rep_in.dim)`` in the flat layouts (slow reference)."""
        param = next(self.parameters())
        dense = torch.zeros(self.rep_out.dim, self.rep_in.dim, dtype=param.dtype,
                            device=param.device)
        order_out, order_in = self.rep_out.kind_indices, self.rep_in.kind_indices
        for ko in order_out:
            for ki in order_in:
                block = self._regular_dense() if ko == ki == "R" else self.pairs.block([ko], [ki])
                if block is not None:
                    dense[order_out[ko][:, None], order_in[ki][None, :]] = block
        return dense

    def dense_bias(self) -> torch.Tensor:
        """The full bias ``(rep_out.dim,)`` (zero off the invariant channels)."""
        param = next(self.parameters())
        out = torch.zeros(self.rep_out.dim, dtype=param.dtype, device=param.device)
        if self.bias is not None:
            out[self.bias_idx] = self._bias_values()
        return out

    def _bias_values(self) -> torch.Tensor:
        g = self.rep_out.group.order
        return torch.cat([self.bias[: self.n_t0], self.bias[self.n_t0 :].repeat_interleave(g)])

    def _regular_dense(self) -> torch.Tensor | None:
        if self.weight_regular is None:
            return None
        g = self.rep_in.group.order
        if self.regular == "mean":
            a, b = self.weight_regular
            eye = torch.eye(g, dtype=a.dtype, device=a.device)
            k = torch.einsum("oc,gh->ogch", a, eye) + (b / g)[:, None, :, None]
        else:
            k = self.weight_regular[:, :, self.table].permute(0, 2, 1, 3)
        return k.reshape(k.shape[0] * g, k.shape[2] * g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rep_in.check(x, "x", grid=True)
        x_t, x_r = take(x, self.in_t), take(x, self.in_r)
        y_t = _add(
            _mm(self.pairs.block(TENSOR_KINDS, TENSOR_KINDS), x_t),
            _mm(self.pairs.block(TENSOR_KINDS, ["R"]), x_r),
        )
        y_r = _mm(self.pairs.block(["R"], TENSOR_KINDS), x_t)
        if self.weight_regular is not None:
            b, g = x.shape[0], self.rep_in.group.order
            if self.regular == "mean":
                xr = x_r.reshape(b, -1, g, x.shape[-2] * x.shape[-1])
                a, c = self.weight_regular
                yr = _mm(a, xr) + _mm(c, xr.mean(2))[:, :, None]
                yr = yr.reshape(b, -1, *x.shape[-2:])
            else:
                yr = _mm(self._regular_dense(), x_r)
            y_r = _add(y_r, yr)
        y = merge(y_t, y_r, self.out_inv, x, (len(self.out_t), len(self.out_r)))
        if self.bias is not None:
            b = torch.zeros(self.rep_out.dim, dtype=y.dtype, device=y.device)
            b = b.index_put((self.bias_idx,), self._bias_values())
            y = y + b[:, None, None]
        return y

    def extra_repr(self) -> str:
        return f"{self.rep_in} -> {self.rep_out}, regular={self.regular!r}"


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


class NormActivation2d(nn.Module):
    """Equivariant pointwise nonlinearity for typed fields.

    T0 and R channels: GELU (entrywise, which commutes with permuting the regular copies).
    T0p, T1, T2 channels: the norm nonlinearity ``y = x * sigmoid(|x| - b_c)`` with ``|x|`` the
    Euclidean norm of the channel's components (invariant under signed permutations) and a
    learned per-channel threshold ``b_c`` (escnn's ``n_sigmoid``).

    Parameters
    ----------
    reps : Reps
    """

    domain = "grid"
    translation_equivariant = True

    def __init__(self, reps: Reps):
        super().__init__()
        check_reps(reps, "reps")
        self.rep_in = self.rep_out = reps
        n_gated = sum(b.mult for b in reps.blocks if b.kind not in ("T0", "R"))
        self.threshold = nn.Parameter(torch.full((n_gated,), 0.5)) if n_gated else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rep_in.check(x, "x", grid=True)
        b = x.shape[0]
        parts, c0 = [], 0
        for block in self.rep_in.blocks:
            xb = x[:, block.slice]
            if block.kind in ("T0", "R"):
                parts.append(F.gelu(xb))
                continue
            v = xb.reshape(b, block.mult, block.size, *x.shape[-2:])
            norm = torch.sqrt(v.pow(2).sum(2, keepdim=True) + 1e-12)
            thr = self.threshold[c0 : c0 + block.mult][None, :, None, None, None]
            c0 += block.mult
            parts.append((v * torch.sigmoid(norm - thr)).reshape(xb.shape))
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
