"""Typed channel bookkeeping shared by the spectral layers and the projected weight space of
:class:`~grepsnet_sciml.layers.EquivariantLinear` (private).

:class:`KindPairs` owns one weight tensor per pair (output kind, input kind) of a map
``rep_in -> rep_out`` whose equivariant space is non-empty, projects each onto that space
(:func:`~._spectral_kernels.project`) and assembles them into dense blocks in the
*sorted* layout (kinds grouped in the order T0, T0p, T1, T2, R). Regular-to-regular pairs are
left to the caller (shared weights across the copies, or G-FNO's group convolution).

:func:`layout_indices`, :func:`merge_layout`, :func:`take` and :func:`merge` move fields
between the flat layout of a :class:`~grepsnet_sciml.reps.Reps` and its tensor and R parts,
with the index tensors cached on the ``Reps``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..reps import KINDS, Reps
from ._spectral_kernels import (
    character,
    check_planar_group,
    hermitian,
    pair_gather,
    project,
    signed_permutation,
)

TENSOR_KINDS = ("T0", "T0p", "T1", "T2")


def check_reps(reps, argument: str) -> Reps:
    """Raise ``ValueError`` unless ``reps`` is a non-empty ``Reps`` over a planar group."""
    if not isinstance(reps, Reps):
        raise ValueError(f"{argument}: expected a Reps such as Reps('4xT0p', D4()), got {reps!r}")
    if reps.dim == 0:
        raise ValueError(f"{argument}: expected a non-empty Reps, got {reps!r}")
    check_planar_group(reps.group, argument)
    return reps


def check_same_group(rep_in: Reps, rep_out: Reps) -> None:
    if rep_in.group != rep_out.group:
        raise ValueError(
            f"rep_out: expected a Reps over {rep_in.group!r} like rep_in, got {rep_out.group!r}"
        )


class KindPairs(nn.Module):
    """Projected weights for every (kind_out, kind_in) pair except R -> R.

    Parameters
    ----------
    rep_in, rep_out : Reps
        Over the same planar group.
    modes_idx : torch.Tensor, optional
        ``(|G|, M*M)`` window index maps; when given the weights are complex spectral kernels
        ``(C_out, C_in, s_out, s_in, M*M)`` (stored as real pairs) made Hermitian with ``neg``.
    neg : torch.Tensor, optional
        ``(M*M,)`` negation map, needed with ``modes_idx``.
    scale : float
        Standard deviation of the initial (unprojected) weights.

    Attributes
    ----------
    n_free : int
        Real dimension of the space of equivariant (and Hermitian) weights it spans.
    """

    def __init__(self, rep_in: Reps, rep_out: Reps, modes_idx=None, neg=None, scale=1.0):
        super().__init__()
        group = rep_in.group
        self.spectral = modes_idx is not None
        self.kinds_in = [k for k in KINDS if rep_in.count(k)]
        self.kinds_out = [k for k in KINDS if rep_out.count(k)]
        self.count_in = {k: rep_in.count(k) for k in self.kinds_in}
        self.count_out = {k: rep_out.count(k) for k in self.kinds_out}
        chars = {}
        for kind in set(self.kinds_in) | set(self.kinds_out):
            perm, sign = signed_permutation(rep_in.rho(kind))
            self.register_buffer(f"perm_{kind}", perm, persistent=False)
            self.register_buffer(f"sign_{kind}", sign, persistent=False)
            chars[kind] = character(perm, sign)
        if self.spectral:
            self.register_buffer("modes_idx", modes_idx, persistent=False)
            self.register_buffer("neg", neg, persistent=False)
            fixed = (modes_idx == torch.arange(modes_idx.shape[1])).sum(1).to(torch.float64)
        else:
            fixed = torch.ones(group.order, dtype=torch.float64)
        self.weights = nn.ParameterDict()
        self.n_free = 0
        for ko in self.kinds_out:
            for ki in self.kinds_in:
                if ko == "R" and ki == "R":
                    continue
                free = float((chars[ko] * chars[ki] * fixed).mean())
                if free < 0.5:
                    continue
                shape = [
                    self.count_out[ko],
                    self.count_in[ki],
                    getattr(self, f"perm_{ko}").shape[1],
                    getattr(self, f"perm_{ki}").shape[1],
                ]
                if self.spectral:
                    shape += [modes_idx.shape[1], 2]
                self.weights[f"{ko}_{ki}"] = nn.Parameter(scale * torch.randn(shape))
                index, sign = pair_gather(
                    getattr(self, f"perm_{ko}"), getattr(self, f"sign_{ko}"),
                    getattr(self, f"perm_{ki}"), getattr(self, f"sign_{ki}"),
                    modes_idx if self.spectral else None,
                )
                self.register_buffer(f"index_{ko}_{ki}", index, persistent=False)
                self.register_buffer(f"gsign_{ko}_{ki}", sign, persistent=False)
                self.n_free += round(free) * self.count_out[ko] * self.count_in[ki]

    def pair(self, ko: str, ki: str) -> torch.Tensor | None:
        """Projected weight of one pair, ``(C_out, C_in, s_out, s_in[, M*M])``, or None."""
        key = f"{ko}_{ki}"
        if key not in self.weights:
            return None
        w = self.weights[key]
        if self.spectral:
            w = torch.view_as_complex(w)
        w = project(w, getattr(self, f"index_{key}"), getattr(self, f"gsign_{key}"))
        if self.spectral:
            w = hermitian(w, self.neg)
        return w

    def block(self, kinds_out, kinds_in) -> torch.Tensor | None:
        """Dense ``(d_out, d_in[, M*M])`` block over the given kinds (sorted layout), or None."""
        kinds_out = [k for k in kinds_out if k in self.count_out]
        kinds_in = [k for k in kinds_in if k in self.count_in]
        if not kinds_out or not kinds_in:
            return None
        if not any(f"{ko}_{ki}" in self.weights for ko in kinds_out for ki in kinds_in):
            return None
        rows = []
        for ko in kinds_out:
            cols = []
            for ki in kinds_in:
                w = self.pair(ko, ki)
                co, ci = self.count_out[ko], self.count_in[ki]
                so = getattr(self, f"perm_{ko}").shape[1]
                si = getattr(self, f"perm_{ki}").shape[1]
                tail = [self.modes_idx.shape[1]] if self.spectral else []
                if w is None:
                    dtype = self._dtype()
                    w = torch.zeros([co * so, ci * si] + tail, dtype=dtype, device=self._device())
                else:
                    w = w.transpose(1, 2).reshape([co * so, ci * si] + tail)
                cols.append(w)
            rows.append(torch.cat(cols, 1))
        return torch.cat(rows, 0)

    def _dtype(self):
        p = next(iter(self.weights.values()))
        if self.spectral:
            return torch.complex128 if p.dtype == torch.float64 else torch.complex64
        return p.dtype

    def _device(self):
        return next(iter(self.weights.values())).device


def layout_indices(module: nn.Module, reps: Reps, prefix: str) -> None:
    """Register the index buffers ``{prefix}_t`` and ``{prefix}_r`` of the layout of ``reps``.

    ``{prefix}_t`` ``(d_t,)`` long: the flat indices of the T0, T0p, T1 and T2 entries, in the
    sorted layout; ``{prefix}_r`` ``(d_R,)`` long: those of the R entries. Together they are
    :attr:`~grepsnet_sciml.reps.Reps.sort_permutation`.
    """
    perm = reps.sort_permutation
    n_t = reps.dim - reps.count("R") * reps.kind_size("R")
    module.register_buffer(f"{prefix}_t", perm[:n_t], persistent=False)
    module.register_buffer(f"{prefix}_r", perm[n_t:], persistent=False)


def merge_layout(module: nn.Module, prefix: str, reps: Reps) -> None:
    """Register ``{prefix}_t``, ``{prefix}_r`` (see :func:`layout_indices`) and ``{prefix}_inv``
    ``(reps.dim,)`` long (None if the identity), which gathers ``cat([tensor part, R part])``
    back to the layout of ``reps``."""
    layout_indices(module, reps, prefix)
    inv = None if reps.is_sorted else reps.sort_inverse
    module.register_buffer(f"{prefix}_inv", inv, persistent=False)


def take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[:, idx]`` without a copy when ``idx`` is a contiguous range."""
    if idx.numel() == 0:
        return x[:, :0]
    start = int(idx[0])
    if int(idx[-1]) - start + 1 == idx.numel() and (idx.numel() == 1 or bool(
            (idx.diff() == 1).all())):
        return x[:, start : start + idx.numel()]
    return x.index_select(1, idx)


def merge(y_t, y_r, inv, like: torch.Tensor, widths: tuple[int, int]) -> torch.Tensor:
    """Concatenate the tensor part and the R part and reorder them by ``inv``.

    A part that is None but has a non-zero width in ``widths`` becomes zeros shaped like
    ``like`` (``(batch, *, *spatial)``).
    """
    parts = []
    for y, width in zip((y_t, y_r), widths):
        if y is None and width:
            y = like.new_zeros(like.shape[0], width, *like.shape[2:])
        if y is not None:
            parts.append(y)
    y = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
    return y if inv is None else y.index_select(1, inv)
