"""The equivariant spectral convolution :class:`SpectralConv2d` (private; see ``spectral``).

Also its complex per-mode channel mixing :func:`mode_matmul` and the slow reference
:func:`spectral_conv_reference`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..reps import Reps
from ._spectral_dft import window_irfft2, window_irfft2_pairs, window_rfft2, window_rfft2_pairs
from ._spectral_kernels import (
    check_grid_resolution,
    check_modes,
    hermitian,
    negation_index,
    regular_index_maps,
    spectral_init_std,
    window_index_maps,
)
from ._spectral_orbits import WindowOrbits
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

__all__ = ["SpectralConv2d", "mode_matmul", "spectral_conv_reference"]


class SpectralConv2d(nn.Module):
    """Equivariant spectral convolution between typed fields.

    Parameters
    ----------
    rep_in, rep_out : Reps
        Input and output types over the same planar group (C4, D4 or a subgroup).
    modes : int
        The window keeps ``|kx|, |ky| <= modes - 1``; inputs need ``N >= 2 modes``, even.
    regular : {"shared", "group"}
        How ``R -> R`` channels are convolved (see the module docstring).

    Attributes
    ----------
    rep_in, rep_out : Reps
    domain : str
        ``"grid"``.
    translation_equivariant : bool
        True: the layer commutes with cyclic shifts.
    n_free : int
        Real dimension of the kernel space it parameterises (its effective parameter count).

    Notes
    -----
    ``forward``: ``(batch, rep_in.dim, N, N) -> (batch, rep_out.dim, N, N)``, implementing
    ``y = irfft2(W . rfft2(x))`` on the window, both transforms restricted to the window
    (:func:`~._spectral_dft.window_rfft2`: two real matrix products each, cheaper than FFTs
    for FNO-sized windows and in the backward pass). With ``regular="group"`` the ``R -> R``
    kernel is gathered on one mode per orbit of the group only and applied to the orbit's
    inputs stacked along the batch (:mod:`._spectral_orbits`). Equivariance:
    ``f(rho_in(g) x(g^{-1} . + s)) = rho_out(g) f(x)(g^{-1} . + s)`` for every ``g`` and shift
    ``s``.
    """

    domain = "grid"
    translation_equivariant = True

    def __init__(self, rep_in: Reps, rep_out: Reps, modes: int, regular: str = "shared"):
        super().__init__()
        check_reps(rep_in, "rep_in")
        check_reps(rep_out, "rep_out")
        check_same_group(rep_in, rep_out)
        self.modes = check_modes(modes)
        if regular not in ("shared", "group"):
            raise ValueError(f"regular: expected 'shared' or 'group', got {regular!r}")
        self.rep_in, self.rep_out, self.regular = rep_in, rep_out, regular
        group = rep_in.group
        idx = window_index_maps(group, modes)
        neg = negation_index(modes)
        self.register_buffer("modes_idx", idx, persistent=False)
        m = 2 * modes - 1  # the half window ky >= 0, rows kx = -K..K
        half = (torch.arange(m)[:, None] * m + torch.arange(modes - 1, m)[None, :]).reshape(-1)
        self.register_buffer("half_idx", idx[:, half], persistent=False)
        self.register_buffer("neg", neg, persistent=False)
        self.register_buffer("table", regular_index_maps(group), persistent=False)
        layout_indices(self, rep_in, "in")
        merge_layout(self, "out", rep_out)
        # free weights pass through the Hermitian average, which halves their variance
        scale = math.sqrt(2.0) * spectral_init_std(rep_in.dim, modes)
        self.pairs = KindPairs(rep_in, rep_out, idx, neg, scale=scale)
        self.n_free = self.pairs.n_free
        m2 = idx.shape[1]
        c_in, c_out = rep_in.count("R"), rep_out.count("R")
        if c_in and c_out:
            shape = [c_out, c_in] + ([group.order] if regular == "group" else []) + [m2, 2]
            self.weight_regular = nn.Parameter(scale * torch.randn(shape))
            self.n_free += c_out * c_in * m2 * (group.order if regular == "group" else 1)
            if regular == "group":
                self._register_orbits(WindowOrbits(group, modes), idx, c_in, c_out)
        else:
            self.weight_regular = None

    def _register_orbits(self, orbits: WindowOrbits, idx: torch.Tensor, c_in: int, c_out: int):
        """Buffers of the orbit-stacked ``R -> R`` product (see ``_spectral_orbits``)."""
        self.register_buffer("orbit_idx", idx[:, orbits.representatives], persistent=False)
        self.orbit_classes = orbits.classes
        for name, (index, sign) in (("orbit_in", orbits.gather_index(c_in)),
                                    ("orbit_out", orbits.scatter_index(c_out))):
            self.register_buffer(f"{name}_index", index, persistent=False)
            self.register_buffer(f"{name}_sign", sign, persistent=False)

    # ----- kernels ---------------------------------------------------------------------------
    def regular_kernel(self, at: str = "window") -> torch.Tensor | None:
        """R -> R kernel: ``(C_out, C_in, |G|, L)`` (shared) or ``(C_out, |G|, C_in, |G|, L)``
        (group), or None. ``at`` picks the ``L`` modes: ``"window"`` all ``M*M``, ``"half"``
        the ``M (K + 1)`` with ``ky >= 0`` (the shared forward pass), ``"orbits"`` one
        representative per orbit of the group (the group forward pass, see
        ``_spectral_orbits``)."""
        if self.weight_regular is None:
            return None
        choices = {"window": self.modes_idx, "half": self.half_idx}
        if self.regular == "group":
            choices["orbits"] = self.orbit_idx
        if at not in choices:
            raise ValueError(f"at: expected one of {sorted(choices)}, got {at!r}")
        w = hermitian(torch.view_as_complex(self.weight_regular), self.neg)
        modes_idx = choices[at]
        if self.regular == "shared":
            return w[..., modes_idx]
        # K[o, h, c, g](k) = W[o, c, h^{-1} g](h^{-1} k)
        k = w[:, :, self.table[:, :, None], modes_idx[:, None, :]]
        return k.transpose(1, 2)

    def dense_kernel(self) -> torch.Tensor:
        """The full kernel ``(rep_out.dim, rep_in.dim, M, M)`` complex, in the flat layouts.

        ``[..., i, j]`` is the mode ``(kx, ky) = (i - K, j - K)``; used by the slow reference.
        """
        m = 2 * self.modes - 1
        param = next(self.parameters())
        dtype = _complex(param.dtype)
        dense = torch.zeros(self.rep_out.dim, self.rep_in.dim, m * m, dtype=dtype,
                            device=param.device)
        order_out, order_in = self.rep_out.kind_indices, self.rep_in.kind_indices
        for ko in order_out:
            for ki in order_in:
                if ko == ki == "R":
                    block = self._regular_dense()
                else:
                    block = self.pairs.block([ko], [ki])
                if block is not None:
                    dense[order_out[ko][:, None], order_in[ki][None, :]] = block.to(dtype)
        return dense.reshape(self.rep_out.dim, self.rep_in.dim, m, m)

    def _regular_dense(self) -> torch.Tensor | None:
        k = self.regular_kernel()
        if k is None:
            return None
        if self.regular == "shared":
            eye = torch.eye(k.shape[2], dtype=k.dtype, device=k.device)
            k = torch.einsum("ocgm,gh->ogchm", k, eye)
        co, g, ci = k.shape[0], k.shape[1], k.shape[2]
        return k.reshape(co * g, ci * g, k.shape[-1])

    # ----- forward ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rep_in.check(x, "x", grid=True)
        n = check_grid_resolution(tuple(x.shape[-2:]), self.modes, "x")
        if len(self.in_t) == len(self.out_t) == 0:  # R -> R only: real pairs throughout
            return self._regular_forward(x, n)
        xw = window_rfft2(x, self.modes)  # rows kx = -K..K, columns ky = 0..K
        x_t, x_r = take(xw, self.in_t), take(xw, self.in_r)
        y_t = _add(
            _apply(self._half(self.pairs.block(TENSOR_KINDS, TENSOR_KINDS)), x_t),
            _apply(self._half(self.pairs.block(TENSOR_KINDS, ["R"])), x_r),
        )
        y_r = _apply(self._half(self.pairs.block(["R"], TENSOR_KINDS)), x_t)
        if self.weight_regular is not None:
            yr = self._regular_product(torch.cat([x_r.real, x_r.imag], -1))
            y_r = _add(y_r, torch.complex(yr[..., :self.modes], yr[..., self.modes:]))
        window = merge(y_t, y_r, self.out_inv, xw, (len(self.out_t), len(self.out_r)))
        return window_irfft2(window, n)

    def _regular_forward(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """The forward pass of an ``R -> R`` layer on real pairs (no complex tensors)."""
        return window_irfft2_pairs(self._regular_product(window_rfft2_pairs(x, self.modes)), n)

    def _regular_product(self, xs: torch.Tensor) -> torch.Tensor:
        """The ``R -> R`` kernel on real pairs ``(B, C_in |G|, 2K+1, 2(K+1))`` of the window."""
        b = xs.shape[0]
        if self.regular == "group":
            return self._orbit_product(xs)
        # shared: the copies are independent modes of one product
        half = self.regular_kernel("half").unflatten(-1, (xs.shape[2], self.modes))
        ys = pair_mode_matmul(xs.reshape(b, -1, self.rep_in.group.order, *xs.shape[2:]), half)
        return ys.reshape(b, -1, *xs.shape[2:])

    def _orbit_product(self, xs: torch.Tensor) -> torch.Tensor:
        """Group kernels on the orbit representatives only, the orbits' inputs stacked along
        the batch: ``rho(e)^{-1} y(e f) = K(f) rho(e)^{-1} x(e f)`` (``_spectral_orbits``)."""
        k = self.regular_kernel("orbits")  # (C_out, G, C_in, G, F)
        co, g, ci, _, f = k.shape
        w = pair_kernel(k.reshape(co * g, ci * g, f))  # (F, 2 C_in G, 2 C_out G)
        b, rows = xs.shape[0], xs.shape[2]
        x = xs.reshape(b, -1).index_select(1, self.orbit_in_index)
        x = (x.view(b, -1, 2, w.shape[1] // 2) * self.orbit_in_sign).view(b, -1, w.shape[1])
        x = x.transpose(0, 1)  # (slots, B, 2 C_in G)
        ys, slot, rep = [], 0, 0
        for n_orbits, n_elements in self.orbit_classes:  # one batched product per class
            xc = x[slot:slot + n_orbits * n_elements].reshape(n_orbits, n_elements * b, -1)
            ys.append(torch.bmm(xc, w[rep:rep + n_orbits]).view(n_orbits * n_elements, b, -1))
            slot, rep = slot + n_orbits * n_elements, rep + n_orbits
        y = torch.cat(ys).transpose(0, 1).reshape(b, -1)
        y = y.index_select(1, self.orbit_out_index).view(b, -1, rows, 2, self.modes)
        return (y * self.orbit_out_sign).view(b, -1, *xs.shape[2:])

    def _half(self, w: torch.Tensor | None) -> torch.Tensor | None:
        """Keep ``ky >= 0`` of a flat-mode kernel ``(..., M*M) -> (..., M, K+1)``."""
        if w is None:
            return None
        m = 2 * self.modes - 1
        return w.reshape(*w.shape[:-1], m, m)[..., self.modes - 1 :]

    def extra_repr(self) -> str:
        return f"{self.rep_in} -> {self.rep_out}, modes={self.modes}, regular={self.regular!r}"


def _complex(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _apply(w: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    if w is None or x.shape[1] == 0:
        return None
    return mode_matmul(x, w)


def mode_matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Complex channel mixing per mode: ``y[b, o, m] = sum_i w[o, i, m] x[b, i, m]``.

    ``x`` is ``(B, I, *modes)``, ``w`` ``(O, I, *modes)``, both complex: :func:`pair_mode_matmul`
    on ``[Re x | Im x]`` (CPU ``bmm`` on complex tensors falls back to a slow per-matrix loop).
    """
    m = x.shape[-1]
    y = pair_mode_matmul(torch.cat([x.real, x.imag], -1), w)
    return torch.complex(y[..., :m], y[..., m:])


def pair_mode_matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """:func:`mode_matmul` on real pairs: ``x`` ``(B, I, *outer, 2m)`` holds ``[Re | Im]`` of
    ``m`` modes on its last axis (layout of
    :func:`~._spectral_dft.window_rfft2_pairs`), ``w`` is complex ``(O, I, *outer, m)``;
    returns ``(B, O, *outer, 2m)``, ``y[b, o, k] = sum_i w[o, i, k] x[b, i, k]`` per mode ``k``.
    """
    b, i, outer, m = x.shape[0], x.shape[1], x.shape[2:-1], x.shape[-1] // 2
    o, p = w.shape[0], math.prod(outer)
    xm = x.reshape(b, i, p, 2, m).permute(2, 4, 0, 3, 1).reshape(p * m, b, 2 * i)
    y = torch.bmm(xm, pair_kernel(w.reshape(o, i, p * m)))  # (P m, B, 2O): [Re y | Im y]
    return y.reshape(p, m, b, 2, o).permute(2, 4, 0, 3, 1).reshape(b, o, *outer, 2 * m)


def pair_kernel(w: torch.Tensor) -> torch.Tensor:
    """Complex per-mode matrices ``(O, I, L)`` as the real ``(L, 2I, 2O)`` that maps
    ``[Re x | Im x]`` to ``[Re y | Im y]``: ``[[Re w^T, Im w^T], [-Im w^T, Re w^T]]``, built
    from real views (no complex gradients to zero-fill)."""
    o, i, n_modes = w.shape
    wm = torch.view_as_real(w).permute(2, 3, 1, 0)  # (L, 2, I, O)
    re, im = wm[:, 0], wm[:, 1]
    wr = torch.stack([torch.stack([re, im], 2), torch.stack([-im, re], 2)], 1)
    return wr.reshape(n_modes, 2 * i, 2 * o)


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    return a if b is None else a + b


def spectral_conv_reference(x: torch.Tensor, kernel: torch.Tensor, modes: int) -> torch.Tensor:
    """Slow reference: full complex FFT, explicit loop over the window's modes, inverse FFT.

    Parameters
    ----------
    x : torch.Tensor
        ``(batch, C_in, N, N)`` real.
    kernel : torch.Tensor
        ``(C_out, C_in, M, M)`` complex, ``[..., i, j]`` the mode ``(i - K, j - K)``.
    modes : int
        ``K = modes - 1``.

    Returns
    -------
    torch.Tensor
        ``(batch, C_out, N, N)`` complex128; its imaginary part vanishes for a Hermitian kernel.
    """
    n = x.shape[-1]
    big_k = modes - 1
    xh = torch.fft.fft2(x.to(torch.complex128))
    yh = torch.zeros(x.shape[0], kernel.shape[0], n, n, dtype=torch.complex128)
    kernel = kernel.to(torch.complex128)
    for i, kx in enumerate(range(-big_k, big_k + 1)):
        for j, ky in enumerate(range(-big_k, big_k + 1)):
            yh[:, :, kx % n, ky % n] = xh[:, :, kx % n, ky % n] @ kernel[:, :, i, j].T
    return torch.fft.ifft2(yh)
