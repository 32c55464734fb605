"""The path weight space of :class:`~.linear.EquivariantLinear` (private).

Used for every group that is not planar (O(d), SO(d), the Lorentz group, permutation
groups). The map is a sum of *paths*, one per pair (input kind, output kind) with an
equivariant linear map that exists for every group with ``g^T eta g = eta`` (the R paths
for every finite group):

===============  ====================================================  ==================
path             map (channels ``c`` in, ``o`` out)                    weights
===============  ====================================================  ==================
T0 -> T0         ``y_o = sum_c W_oc s_c + b_o``                        ``(o, c)``
T0p -> T0p       ``y_o = sum_c W_oc p_c``                              ``(o, c)``
T1 -> T1         ``y_o = sum_c W_oc v_c``                              ``(o, c)``
T2 -> T2         ``y_o = sum_c W_oc M_c + W'_oc M_c^T``                ``(2, o, c)``
T0 -> T2         ``y_o = sum_c W_oc s_c eta^{-1}``                     ``(o, c)``
T2 -> T0         ``y_o = sum_c W_oc tr(M_c eta)``                      ``(o, c)``
R -> R           :func:`regular_block` (``"conv"`` / ``"mean"``)       ``(o, c, |G|)`` /
                                                                       ``(2, o, c)``
K -> R           lift ``y_o(h) = sum_c <A_oc, rho_K(h)^{-1} x_c>``      ``(o, c, size_K)``
R -> K           projection ``y_o = sum_ch rho_K(h) B_oc f_c(h)``       ``(o, c, size_K)``
===============  ====================================================  ==================

(``K`` in T0, T0p, T1, T2; the lift from T0 is the broadcast and the projection to T0 the
sum over the group axis.) Biases sit only on invariant entries: T0 outputs and, constant
over the group axis, R outputs. Weights act on channels only, the same for every component
of a T1/T2 channel. For a particular group there can be more equivariant maps (e.g. T0p ->
T0 when no element has ``det g = -1``); they are left out, as in the paper.

Parameters registered on the layer: ``weights`` (a ``ParameterDict`` with keys
``"{ki}_to_{ko}"``), ``bias_t0`` and ``bias_r``. Weights are drawn ``N(0, 1 / fan)`` with
``fan`` the number of unit-variance terms summed into one output entry over all paths into
that output kind, so outputs have O(1) scale for standard normal inputs; biases start at 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..groups import FiniteGroup
from ..reps import KINDS
from . import tensor_ops as ops

_TENSOR_KINDS = ("T0", "T0p", "T1", "T2")  # mixed within their kind, lifted to / from R


def regular_block(w: torch.Tensor, regular: str, index: torch.Tensor) -> torch.Tensor:
    """Dense ``R -> R`` block ``(o, |G|, c, |G|)`` of the pointwise regular mixing.

    ``"conv"``: ``w`` ``(o, c, |G|)``, the group convolution ``y_h = sum_g W_{h^{-1} g} x_g``
    (G-FNO's 1x1 ``GConv2d``); ``"mean"``: ``w = (A, B)`` ``(2, o, c)``, the G-RepsNet map
    ``y_h = A x_h + B mean_g x_g``. ``index[h, g]`` is the index of ``h^{-1} g``
    (:func:`~._spectral_kernels.regular_index_maps`).
    """
    g = index.shape[0]
    if regular == "conv":
        return w[:, :, index].permute(0, 2, 1, 3)
    a, b = w
    eye = torch.eye(g, dtype=a.dtype, device=a.device)
    return torch.einsum("oc,gh->ogch", a, eye) + (b / g)[:, None, :, None]


def build(lin: nn.Module, bias: bool) -> None:
    """Register the path weights, biases and index buffers on ``lin``."""
    rep_in, rep_out, regular = lin.rep_in, lin.rep_out, lin.regular
    group = rep_in.group
    finite = isinstance(group, FiniteGroup)
    n_in = {k: rep_in.count(k) for k in KINDS}
    n_out = {k: rep_out.count(k) for k in KINDS}

    lin.weights = nn.ParameterDict()
    shapes: dict[tuple[str, str], tuple[int, ...]] = {}
    fans: dict[tuple[str, str], int] = {}
    for k in _TENSOR_KINDS:
        if n_in[k] and n_out[k]:
            shapes[(k, k)] = ((2,) if k == "T2" else ()) + (n_out[k], n_in[k])
            fans[(k, k)] = (2 if k == "T2" else 1) * n_in[k]
    if n_in["T0"] and n_out["T2"]:
        shapes[("T0", "T2")] = (n_out["T2"], n_in["T0"])
        fans[("T0", "T2")] = n_in["T0"]
    if n_in["T2"] and n_out["T0"]:
        shapes[("T2", "T0")] = (n_out["T0"], n_in["T2"])
        fans[("T2", "T0")] = n_in["T2"] * group.d
    if finite:
        order = group.order
        if n_in["R"] and n_out["R"]:
            if regular == "conv":
                shapes[("R", "R")] = (n_out["R"], n_in["R"], order)
                fans[("R", "R")] = n_in["R"] * order
            else:  # the group mean counted as one more term per input channel
                shapes[("R", "R")] = (2, n_out["R"], n_in["R"])
                fans[("R", "R")] = 2 * n_in["R"]
        for k in _TENSOR_KINDS:
            size = rep_in.kind_size(k)
            if n_in[k] and n_out["R"]:
                shapes[(k, "R")] = (n_out["R"], n_in[k], size)
                fans[(k, "R")] = n_in[k] * size
            if n_in["R"] and n_out[k]:
                shapes[("R", k)] = (n_out[k], n_in["R"], size)
                fans[("R", k)] = n_in["R"] * order
    total = {k: sum(f for (_, ko), f in fans.items() if ko == k) for k in KINDS}
    lin.paths = list(shapes)
    for (ki, ko), shape in shapes.items():
        w = torch.randn(shape) / math.sqrt(total[ko])
        lin.weights[f"{ki}_to_{ko}"] = nn.Parameter(w)

    lin.bias_t0 = nn.Parameter(torch.zeros(n_out["T0"])) if bias and n_out["T0"] else None
    lin.bias_r = nn.Parameter(torch.zeros(n_out["R"])) if bias and n_out["R"] else None
    lin.n_free = sum(p.numel() for p in lin.weights.values()) + (
        n_out["T0"] + n_out["R"] if bias else 0
    )

    dtype = torch.get_default_dtype()
    metric = group.metric
    lin.register_buffer("eta_inv", torch.linalg.inv(metric).to(dtype), persistent=False)
    d = group.d
    swap = torch.arange(d * d).reshape(d, d).T.reshape(-1)
    lin.register_buffer("transpose_perm", torch.eye(d * d, dtype=dtype)[swap], persistent=False)
    if finite:
        inverse = torch.tensor([group.inverse_index(a) for a in range(group.order)])
        for k in _TENSOR_KINDS:
            rho = rep_in.rho(k).to(dtype)
            lin.register_buffer(f"rho_{k}", rho, persistent=False)
            lin.register_buffer(f"rho_inv_{k}", rho[inverse], persistent=False)


def path_matrix(lin: nn.Module, ki: str, ko: str, w: torch.Tensor) -> torch.Tensor:
    """Dense block ``(n_out, size_out, n_in, size_in)`` (or reshapable to it) of one path."""
    d = lin.rep_in.group.d
    if ki == ko and ki in ("T0", "T0p"):
        return w
    if ki == ko == "T1":
        return torch.einsum("oc,ab->oacb", w, torch.eye(d, dtype=w.dtype, device=w.device))
    if ki == ko == "T2":
        eye = torch.eye(d * d, dtype=w.dtype, device=w.device)
        return torch.einsum("oc,ab->oacb", w[0], eye) + torch.einsum(
            "oc,ab->oacb", w[1], lin.transpose_perm
        )
    if (ki, ko) == ("T0", "T2"):
        return torch.einsum("oc,a->oac", w, lin.eta_inv.reshape(-1))
    if (ki, ko) == ("T2", "T0"):
        return torch.einsum("oc,a->oca", w, lin.eta.T.reshape(-1))
    if ki == ko == "R":
        return regular_block(w, lin.regular, lin.regular_index)
    if ko == "R":
        return torch.einsum("oca,hab->ohcb", w, getattr(lin, f"rho_inv_{ki}"))
    return torch.einsum("hab,ocb->oach", getattr(lin, f"rho_{ko}"), w)


def block(lin: nn.Module, ki: str, ko: str) -> torch.Tensor:
    """Dense block ``(n_out size_out, n_in size_in)`` of the path ``ki -> ko``."""
    w = path_matrix(lin, ki, ko, lin.weights[f"{ki}_to_{ko}"])
    n_o, n_i = lin.rep_out.count(ko), lin.rep_in.count(ki)
    return w.reshape(n_o * lin.rep_out.kind_size(ko), n_i * lin.rep_in.kind_size(ki))


def bias_values(lin: nn.Module) -> torch.Tensor | None:
    """The bias at ``bias_idx`` (T0 values, then R values repeated ``|G|`` times), or None."""
    parts = []
    if lin.bias_t0 is not None:
        parts.append(lin.bias_t0)
    if lin.bias_r is not None:
        parts.append(lin.bias_r.repeat_interleave(lin.rep_out.group.order))
    return torch.cat(parts) if parts else None


def _run_path(lin, ki: str, ko: str, w: torch.Tensor, p: torch.Tensor, lead: int):
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
        return linear(p, w)[..., None, None] * lin.eta_inv
    if (ki, ko) == ("T2", "T0"):
        return linear(ops.trace(p, lin.eta), w)
    n_o = lin.rep_out.count(ko)
    block = path_matrix(lin, ki, ko, w)
    block = block.reshape(n_o * lin.rep_out.kind_size(ko), -1)
    y = linear(p.flatten(lead), block)
    return y.reshape(*p.shape[:lead], *ops.part_shape(ko, n_o, lin.rep_out.group))


def forward(lin: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``y = W x + b`` path by path on point features ``(..., rep_in.dim)``."""
    lead = x.ndim - 1
    parts = ops.split(x, lin.rep_in)
    out: dict[str, torch.Tensor] = {}
    for ki, ko in lin.paths:
        y = _run_path(lin, ki, ko, lin.weights[f"{ki}_to_{ko}"].to(x.dtype), parts[ki], lead)
        out[ko] = y if ko not in out else out[ko] + y
    for k in KINDS:
        n = lin.rep_out.count(k)
        if n and k not in out:
            shape = (*x.shape[:-1], *ops.part_shape(k, n, lin.rep_out.group))
            out[k] = x.new_zeros(shape)
    if lin.bias_t0 is not None:
        out["T0"] = out["T0"] + lin.bias_t0.to(x.dtype)
    if lin.bias_r is not None:
        out["R"] = out["R"] + lin.bias_r.to(x.dtype)[:, None]
    return ops.join(out, lin.rep_out)
