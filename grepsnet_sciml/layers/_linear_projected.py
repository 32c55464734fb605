"""The projected weight space of :class:`~.linear.EquivariantLinear` (private).

Used for planar groups (C4, D4 and their subgroups), whose fibre representations are all
signed permutations. Every pair of kinds except ``R -> R`` gets the *full* space of
equivariant maps, the orthogonal projection ``W = mean_g rho_out(g) V rho_in(g)^T`` of a
free matrix ``V`` (:class:`~._spectral_typed.KindPairs`); pairs whose equivariant space is
empty (e.g. T0 -> T1 under C4) get no weights. ``R -> R`` is
:func:`~._linear_paths.regular_block` (``"mean"`` or ``"conv"``).

Parameters registered on the layer: ``pairs`` (the :class:`~._spectral_typed.KindPairs`,
keys ``pairs.weights.{ko}_{ki}``), ``weight_regular`` and ``bias`` (T0 outputs, then one
value per R output channel).

Initialisation follows torch's default ``Conv2d`` (the official G-FNO's ``GConv2d`` 1x1
layers): free weights of standard deviation ``1 / sqrt(3 fan_in)`` with ``fan_in`` the input
channels (times ``|G|`` for the group convolution), invariant biases uniform in
``+-1 / sqrt(fan_in)``. Starting at ``1 / sqrt(fan_in)`` with zero bias instead (sqrt(3)
larger) gave G-FNO-p4 14.43 +- 0.18% test relative L2 on the quick NS-Sym data against
13.65 +- 0.78% with this rule (3 seeds each; the official G-FNO code: 13.02%).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._linear_paths import regular_block
from ._spectral_typed import TENSOR_KINDS, KindPairs, layout_indices, merge, merge_layout, take


def build(lin: nn.Module, bias: bool) -> None:
    """Register the projected weights, the regular weights, the bias and layout buffers."""
    rep_in, rep_out, regular = lin.rep_in, lin.rep_out, lin.regular
    group = rep_in.group
    n_channels = max(sum(b.mult for b in rep_in.blocks), 1)
    lin.pairs = KindPairs(rep_in, rep_out, scale=1.0 / math.sqrt(3 * n_channels))
    lin.n_free = lin.pairs.n_free
    layout_indices(lin, rep_in, "in")
    merge_layout(lin, "out", rep_out)
    c_in, c_out = rep_in.count("R"), rep_out.count("R")
    lin.weight_regular = None
    if c_in and c_out:
        if regular == "mean":
            w = torch.randn(2, c_out, c_in) / math.sqrt(3 * n_channels)
        else:
            w = torch.randn(c_out, c_in, group.order) / math.sqrt(3 * n_channels * group.order)
        lin.weight_regular = nn.Parameter(w)
        lin.n_free += w.numel()
    lin.n_t0 = rep_out.count("T0")
    lin.paths = [(ki, ko) for ko in lin.pairs.kinds_out for ki in lin.pairs.kinds_in
                 if f"{ko}_{ki}" in lin.pairs.weights]
    if lin.weight_regular is not None:
        lin.paths.append(("R", "R"))
    if bias and lin.n_t0 + c_out:
        bound = 1.0 / math.sqrt(n_channels * (group.order if c_in else 1))
        lin.bias = nn.Parameter(torch.empty(lin.n_t0 + c_out).uniform_(-bound, bound))
        lin.n_free += lin.bias.numel()
    else:
        lin.bias = None


def block(lin: nn.Module, ki: str, ko: str) -> torch.Tensor:
    """Dense block ``(n_out size_out, n_in size_in)`` of the pair ``(ki, ko)`` of ``paths``."""
    if ki == ko == "R":
        k = regular_block(lin.weight_regular, lin.regular, lin.regular_index)
        return k.reshape(k.shape[0] * k.shape[1], k.shape[2] * k.shape[3])
    return lin.pairs.block([ko], [ki])


def bias_values(lin: nn.Module) -> torch.Tensor | None:
    """The bias at ``bias_idx`` (T0 values, then R values repeated ``|G|`` times), or None."""
    if lin.bias is None:
        return None
    g = lin.rep_out.group.order
    return torch.cat([lin.bias[: lin.n_t0], lin.bias[lin.n_t0 :].repeat_interleave(g)])


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


def grid_forward(lin: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``y(i) = W x(i) + b`` on fields ``(batch, rep_in.dim, X, Y)``, block by block.

    The tensor and R parts are mixed by separate matrix products, and ``"mean"`` R -> R
    mixing costs ``O(|G| C^2)`` per point instead of the dense ``(|G| C)^2``.
    """
    x_t, x_r = take(x, lin.in_t), take(x, lin.in_r)
    pairs = lin.pairs
    y_t = _add(
        _mm(pairs.block(TENSOR_KINDS, TENSOR_KINDS), x_t),
        _mm(pairs.block(TENSOR_KINDS, ["R"]), x_r),
    )
    y_r = _mm(pairs.block(["R"], TENSOR_KINDS), x_t)
    if lin.weight_regular is not None:
        b, g = x.shape[0], lin.rep_in.group.order
        if lin.regular == "mean":
            xr = x_r.reshape(b, -1, g, x.shape[-2] * x.shape[-1])
            a, c = lin.weight_regular
            yr = _mm(a, xr) + _mm(c, xr.mean(2))[:, :, None]
            yr = yr.reshape(b, -1, *x.shape[-2:])
        else:
            yr = _mm(block(lin, "R", "R"), x_r)
        y_r = _add(y_r, yr)
    y = merge(y_t, y_r, lin.out_inv, x, (len(lin.out_t), len(lin.out_r)))
    b = lin.bias_vector()
    return y if b is None else y + b[:, None, None]
