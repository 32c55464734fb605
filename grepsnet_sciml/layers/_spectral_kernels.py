"""Index maps and projections behind the equivariant spectral layers (private).

Conventions
-----------
A planar group element ``g`` acts on a grid field by ``(g . f)(i) = rho(g) f(g^{-1} i mod N)``
(:meth:`~grepsnet_sciml.groups.PlanarGroup.act_grid` plus the fibre action). In Fourier space
(``f^(k) = sum_i f(i) exp(-2 pi i k . i / N)``) this reads ``(g . f)^(k) = rho(g) f^(g^{-1} k)``
because ``g`` is orthogonal. A kernel ``W(k)`` acting mode-wise therefore commutes with the
group iff ``W(g k) = rho_out(g) W(k) rho_in(g)^T`` for every ``g``, and keeps real fields real
iff ``W(-k) = conj(W(k))``.

For every element of a subgroup of D4 the fibre representations T0, T0p, T1, T2 and R are
*signed permutations*: ``(rho(g) x)[a] = sign[a] x[perm[a]]``. Every projection below is
therefore one precomputed gather with signs, costing ``|G|`` times the size of the kernel.

The frequency window keeps ``|kx|, |ky| <= K`` with ``K = modes - 1`` (size ``M = 2K + 1``,
as in G-FNO); it is closed under D4 and under ``k -> -k``. Modes are flattened row-major:
``flat(k) = (kx + K) M + (ky + K)``.
"""

from __future__ import annotations

import math

import torch

from ..groups import FiniteGroup, PlanarGroup

__all__ = [
    "check_planar_group",
    "check_grid_resolution",
    "signed_permutation",
    "character",
    "window_index_maps",
    "negation_index",
    "check_modes",
    "spectral_init_std",
    "pair_gather",
    "project",
    "hermitian",
    "regular_index_maps",
]


def check_planar_group(group, argument: str = "group") -> PlanarGroup:
    """Return ``group`` if it is C4, D4 or one of their subgroups, else raise ``ValueError``."""
    if not isinstance(group, PlanarGroup):
        raise ValueError(
            f"{argument}: expected a planar grid group such as C4() or D4(), got {group!r}"
        )
    return group


def check_modes(modes, argument: str = "modes") -> int:
    """Validate the number of retained modes per axis (``K = modes - 1``)."""
    if isinstance(modes, bool) or not isinstance(modes, int) or modes < 1:
        raise ValueError(f"{argument}: expected a positive integer, got {modes!r}")
    return modes


def spectral_init_std(in_channels: int, modes: int) -> float:
    r"""Initial standard deviation of each real component of a spectral kernel: the one rule.

    Every spectral kernel of the package (typed, regular, G-FNO's group convolution and the
    neuraloperator FNO baseline) starts like torch's default convolution initialisation
    (kaiming-uniform with ``a = sqrt(5)``: ``U(-b, b)``, ``b = 1 / sqrt(fan_in)``) for a
    kernel the size of the frequency window, which is also the official G-FNO's rule:

    .. math:: \sigma = \frac{1}{\sqrt{3\, \mathrm{fan}_{in}}}, \qquad
       \mathrm{fan}_{in} = C_{in} (2K + 1)(K + 1), \quad K = \mathrm{modes} - 1,

    with ``C_in`` the real input channels (``rep_in.dim``) and ``(2K+1)(K+1)`` the modes of
    the window's half-plane (the independent ones of a real field). A kernel scaled by the
    channels alone (``1 / sqrt(C_in)``) starts about 18 times larger at modes 8 and trains
    markedly worse: G-FNO-p4 23.8% against 13.0% relative L2 on the quick NS-Sym data.

    Parameters
    ----------
    in_channels : int
        Real input channels ``C_in``.
    modes : int
        Window size parameter (``|k| <= modes - 1``).

    Returns
    -------
    float
        ``sigma`` of the effective kernel's real and imaginary parts. Layers whose free
        weights pass through the Hermitian average ``(W(k) + conj W(-k)) / 2`` draw them
        with ``sqrt(2) sigma``, so that the average has ``sigma``.
    """
    k = check_modes(modes) - 1
    return 1.0 / math.sqrt(3.0 * in_channels * (2 * k + 1) * (k + 1))


def check_grid_resolution(shape: tuple[int, ...], modes: int, argument: str = "x") -> int:
    """Raise ``ValueError`` unless the grid is square, even and resolves the window.

    The window ``|k| <= modes - 1`` must stay strictly below the Nyquist mode ``N / 2``.

    Returns
    -------
    int
        The resolution ``N``.
    """
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(
            f"{argument}: expected a square grid (N, N), got spatial shape {tuple(shape)}"
        )
    n = int(shape[0])
    if n % 2:
        raise ValueError(f"{argument}: expected an even resolution N, got N = {n}")
    if modes - 1 >= n // 2:
        raise ValueError(
            f"{argument}: resolution N = {n} is too small for modes = {modes}: the window "
            f"|k| <= {modes - 1} must stay below Nyquist N/2; expected N >= {2 * modes}"
        )
    return n


def signed_permutation(rho: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed-permutation form of matrices such as :meth:`~grepsnet_sciml.reps.Reps.rho`.

    Parameters
    ----------
    rho : torch.Tensor
        ``(|G|, s, s)`` float64, one matrix per group element.

    Returns
    -------
    perm : torch.Tensor
        ``(|G|, s)`` long.
    sign : torch.Tensor
        ``(|G|, s)`` float64 with ``(rho[g] x)[a] = sign[g, a] x[perm[g, a]]``.

    Raises
    ------
    ValueError
        If some ``rho[g]`` is not a signed permutation matrix.
    """
    perm = rho.abs().argmax(2)
    sign = rho.gather(2, perm[..., None]).squeeze(2)
    if ((rho.abs() > 1e-12).sum(2) != 1).any() or not torch.equal(sign.abs(), sign**2):
        raise ValueError("rho: expected signed permutation matrices")
    return perm, sign


def character(perm: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Trace of each ``rho(g)`` from its signed-permutation form, ``(|G|,)`` float64."""
    ar = torch.arange(perm.shape[1])
    return (sign * (perm == ar).to(sign.dtype)).sum(1)


def _flat(k: torch.Tensor, big_k: int) -> torch.Tensor:
    m = 2 * big_k + 1
    return (k[0] + big_k) * m + (k[1] + big_k)


def window_index_maps(group: PlanarGroup, modes: int) -> torch.Tensor:
    """``(|G|, M*M)`` long ``idx`` with ``idx[g, flat(k)] = flat(g^{-1} k)``.

    So ``W[..., idx[g]]`` is the kernel ``k -> W(g^{-1} k)`` (``W`` rotated/reflected by ``g``).
    """
    big_k = modes - 1
    r = torch.arange(-big_k, big_k + 1)
    kx, ky = torch.meshgrid(r, r, indexing="ij")
    k = torch.stack([kx.reshape(-1), ky.reshape(-1)])
    elements = group.elements().round().long()
    out = []
    for a in range(group.order):
        g_inv = elements[group.inverse_index(a)]
        out.append(_flat(g_inv @ k, big_k))
    return torch.stack(out)


def negation_index(modes: int) -> torch.Tensor:
    """``(M*M,)`` long with ``neg[flat(k)] = flat(-k)``."""
    m = 2 * modes - 1
    return torch.arange(m * m - 1, -1, -1)


def pair_gather(
    perm_out: torch.Tensor,
    sign_out: torch.Tensor,
    perm_in: torch.Tensor,
    sign_in: torch.Tensor,
    modes_idx: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather form of the projection onto equivariant kernels of one pair of kinds.

    Parameters
    ----------
    perm_out, sign_out, perm_in, sign_in : torch.Tensor
        ``(|G|, s)`` signed permutations of one channel of the output / input kind.
    modes_idx : torch.Tensor, optional
        ``(|G|, M*M)`` from :func:`window_index_maps` (spectral kernels).

    Returns
    -------
    index : torch.Tensor
        ``(|G|, L)`` long, ``L = s_out s_in [M*M]``: flat source entry of each element.
    sign : torch.Tensor
        ``(|G|, L)`` float64, so that ``W_sym = mean_g sign[g] * W_flat[..., index[g]]`` is
        ``mean_g rho_out(g) W(g^{-1} k) rho_in(g)^T`` (see :func:`project`).
    """
    so, si = perm_out.shape[1], perm_in.shape[1]
    mm = 1 if modes_idx is None else modes_idx.shape[1]
    index = perm_out[:, :, None] * si + perm_in[:, None, :]  # (G, so, si)
    sign = sign_out[:, :, None] * sign_in[:, None, :]
    if modes_idx is None:
        return index.reshape(len(index), -1), sign.reshape(len(sign), -1)
    index = index[..., None] * mm + modes_idx[:, None, None, :]  # (G, so, si, MM)
    sign = sign[..., None].expand(-1, so, si, mm)
    return index.reshape(len(index), -1), sign.reshape(len(sign), -1)


def project(w: torch.Tensor, index: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Average ``rho_out(g) W(g^{-1} k) rho_in(g)^T`` over the group (orthogonal projection).

    Parameters
    ----------
    w : torch.Tensor
        ``(C_out, C_in, s_out, s_in[, M*M])`` real or complex.
    index, sign : torch.Tensor
        From :func:`pair_gather`.

    Returns
    -------
    torch.Tensor
        Same shape as ``w``: its equivariant part.
    """
    flat = w.reshape(w.shape[0], w.shape[1], -1)
    v = flat[:, :, index] * sign.to(flat.real.dtype)  # (C_out, C_in, G, L)
    return v.mean(2).reshape(w.shape)


def hermitian(w: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """``(W(k) + conj(W(-k))) / 2`` over the last (flattened mode) axis."""
    return 0.5 * (w + w.index_select(-1, neg).conj())


def regular_index_maps(group: FiniteGroup) -> torch.Tensor:
    """``(|G|, |G|)`` long ``T`` with ``T[h, g] =`` index of ``h^{-1} g``."""
    table = group.multiplication_table
    inv = torch.tensor([group.inverse_index(a) for a in range(group.order)])
    return table[inv]
