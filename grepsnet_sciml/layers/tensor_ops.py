"""Functional conversions between tensor orders, on the "parts" of a :class:`Reps`.

A flat tensor ``(..., reps.dim)`` is split by kind into *parts* (all blocks of one kind
concatenated in the order written):

========  ========================  ====================================
kind      part shape                action of ``g``
========  ========================  ====================================
``T0``    ``(..., n0)``             unchanged
``T0p``   ``(..., n0p)``            ``det(g) p``
``T1``    ``(..., n1, d)``          ``g v``
``T2``    ``(..., n2, d, d)``       ``g M g^T``
``R``     ``(..., nR, |G|)``        ``f(h) -> f(g^{-1} h)``
========  ========================  ====================================

Every operation below maps parts to parts and is equivariant for any group with
``g^T eta g = eta`` (``eta`` = ``group.metric``: the identity for ``O(n)``, ``SO(n)`` and
the planar groups, ``diag(1, -1, -1, -1)`` for ``Lorentz()``). Vectors and tensors are
contravariant, so invariants contract with ``eta``: ``<u, v> = u^T eta v``,
``tr(M eta)``, ``tr(M eta M^T eta)``; the invariant order-2 tensor is ``eta^{-1}``. The
``*_2d`` operations use the Levi-Civita symbol and exist only for ``d = 2`` orthogonal
groups (``C4``, ``D4``, their subgroups, ``O(2)``, ``SO(2)``).

Examples
--------
>>> import torch
>>> from grepsnet_sciml import Reps
>>> from grepsnet_sciml.groups import O
>>> reps = Reps("2xT0 + 3xT1", O(3))
>>> parts = split(torch.randn(5, reps.dim), reps)
>>> parts["T1"].shape
torch.Size([5, 3, 3])
>>> gram(parts["T1"], O(3).metric).shape
torch.Size([5, 3, 3])
>>> torch.equal(join(parts, reps), join(split(join(parts, reps), reps), reps))
True
"""

from __future__ import annotations

import torch

from ..groups import Group
from ..reps import KINDS, Reps

__all__ = [
    "split",
    "join",
    "part_shape",
    "inner",
    "gram",
    "sq_norm",
    "norm",
    "trace",
    "frobenius_sq",
    "frobenius",
    "gate",
    "outer",
    "scalar_to_t2",
    "contract",
    "transpose",
    "pseudo_products",
    "regular_pool",
    "regular_broadcast",
    "cross_2d",
    "levi_civita_2d",
    "hodge_2d",
    "upper_pairs",
]


def part_shape(kind: str, mult: int, group: Group) -> tuple[int, ...]:
    """Trailing shape of the part of ``kind`` with ``mult`` channels.

    Examples
    --------
    >>> from grepsnet_sciml.groups import D4
    >>> part_shape("T2", 4, D4()), part_shape("R", 2, D4())
    ((4, 2, 2), (2, 8))
    """
    if kind in ("T0", "T0p"):
        return (mult,)
    if kind == "T1":
        return (mult, group.d)
    if kind == "T2":
        return (mult, group.d, group.d)
    if kind == "R":
        return (mult, group.order)
    raise ValueError(f"kind: unknown representation {kind!r}; expected one of {list(KINDS)}")


def split(x: torch.Tensor, reps: Reps) -> dict[str, torch.Tensor]:
    """Split ``x`` ``(..., reps.dim)`` into one part per kind present in ``reps``.

    Returns
    -------
    dict
        ``{kind: (..., *part_shape(kind, reps.count(kind)))}`` for every kind with a
        positive count, blocks of the same kind concatenated in the order written.
    """
    reps.check(x, "x")
    lead = x.shape[:-1]
    pieces: dict[str, list[torch.Tensor]] = {}
    for b in reps.blocks:
        xb = x[..., b.slice].reshape(*lead, *part_shape(b.kind, b.mult, reps.group))
        pieces.setdefault(b.kind, []).append(xb)
    return {k: (v[0] if len(v) == 1 else torch.cat(v, dim=len(lead))) for k, v in pieces.items()}


def join(parts: dict[str, torch.Tensor], reps: Reps) -> torch.Tensor:
    """Inverse of :func:`split`: lay the parts out flat, ``(..., reps.dim)``.

    Raises
    ------
    ValueError
        If a kind of ``reps`` is missing from ``parts`` or a part has the wrong shape.
    """
    lead = None
    for kind in KINDS:
        n = reps.count(kind)
        if n == 0:
            continue
        if kind not in parts:
            raise ValueError(f"parts: missing kind {kind!r} required by {reps}")
        tail = part_shape(kind, n, reps.group)
        p = parts[kind]
        if tuple(p.shape[p.ndim - len(tail) :]) != tail:
            raise ValueError(
                f"parts[{kind!r}]: expected trailing shape {tail} for {reps}, "
                f"got {tuple(p.shape)}"
            )
        if lead is None:
            lead = p.shape[: p.ndim - len(tail)]
    if lead is None:
        raise ValueError(f"reps: cannot join parts for the empty representation {reps!r}")
    offsets = dict.fromkeys(KINDS, 0)
    flat = []
    for b in reps.blocks:
        p = parts[b.kind]
        k = offsets[b.kind]
        flat.append(p.narrow(len(lead), k, b.mult).reshape(*lead, b.dim))
        offsets[b.kind] = k + b.mult
    return torch.cat(flat, dim=-1)


def _eta(metric: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return metric.to(dtype=like.dtype, device=like.device)


def inner(u: torch.Tensor, v: torch.Tensor, metric: torch.Tensor) -> torch.Tensor:
    """All pairwise metric inner products ``<u_i, v_j> = u_i^T eta v_j``.

    ``u`` ``(..., n, d)``, ``v`` ``(..., m, d)`` -> ``(..., n, m)``; invariant (T0).
    """
    return torch.einsum("...ia,ab,...jb->...ij", u, _eta(metric, u), v)


def gram(v: torch.Tensor, metric: torch.Tensor) -> torch.Tensor:
    """Gram matrix ``G_ij = v_i^T eta v_j`` of the channels of ``v`` ``(..., n, d)``."""
    return inner(v, v, metric)


def sq_norm(v: torch.Tensor, metric: torch.Tensor) -> torch.Tensor:
    """Signed squared norm ``v_i^T eta v_i`` per channel: ``(..., n, d)`` -> ``(..., n)``."""
    return torch.einsum("...ia,ab,...ib->...i", v, _eta(metric, v), v)


def norm(v: torch.Tensor, metric: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Invariant norm ``sqrt(|v^T eta v| + eps)`` per channel: ``(..., n, d)`` -> ``(..., n)``."""
    return torch.sqrt(sq_norm(v, metric).abs() + eps)


def trace(m: torch.Tensor, metric: torch.Tensor) -> torch.Tensor:
    """Invariant trace ``tr(M eta)`` per channel: ``(..., n, d, d)`` -> ``(..., n)``."""
    return torch.einsum("...iab,ba->...i", m, _eta(metric, m))


def frobenius_sq(m: torch.Tensor, metric: torch.Tensor) -> torch.Tensor:
    """Invariant squared Frobenius norm ``tr(M eta M^T eta)``: ``(..., n, d, d)`` -> ``(..., n)``.

    Equals ``sum_ab M_ab^2`` for orthogonal groups; may be negative for Lorentz.
    """
    eta = _eta(metric, m)
    return torch.einsum("...iab,bc,...idc,da->...i", m, eta, m, eta)


def frobenius(m: torch.Tensor, metric: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """``sqrt(|tr(M eta M^T eta)| + eps)`` per channel: ``(..., n, d, d)`` -> ``(..., n)``."""
    return torch.sqrt(frobenius_sq(m, metric).abs() + eps)


def gate(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Multiply each channel of ``x`` ``(..., n, *fibre)`` by an invariant ``s`` ``(..., n)``.

    T0 -> T1 gating (``s_i v_i``), and likewise for T0p, T2 and R channels.
    """
    return s.reshape(*s.shape, *([1] * (x.ndim - s.ndim))) * x


def outer(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """All outer products ``u_i v_j^T`` (T1 x T1 -> T2).

    ``u`` ``(..., n, d)``, ``v`` ``(..., m, d)`` -> ``(..., n, m, d, d)``.
    """
    return torch.einsum("...ia,...jb->...ijab", u, v)


def scalar_to_t2(s: torch.Tensor, metric: torch.Tensor) -> torch.Tensor:
    """T0 -> T2: ``s_i eta^{-1}`` (the identity for orthogonal groups).

    ``(..., n)`` -> ``(..., n, d, d)``; ``g eta^{-1} g^T = eta^{-1}``.
    """
    eta_inv = torch.linalg.inv(_eta(metric, s))
    return s[..., None, None] * eta_inv


def contract(m: torch.Tensor, v: torch.Tensor, metric: torch.Tensor) -> torch.Tensor:
    """All contractions ``M_i eta v_j`` (T2 . T1 -> T1).

    ``m`` ``(..., n, d, d)``, ``v`` ``(..., k, d)`` -> ``(..., n, k, d)``.
    """
    return torch.einsum("...iab,bc,...jc->...ija", m, _eta(metric, m), v)


def transpose(m: torch.Tensor) -> torch.Tensor:
    """``M_i^T`` per channel (T2 -> T2): ``(..., n, d, d)`` -> ``(..., n, d, d)``."""
    return m.transpose(-1, -2)


def pseudo_products(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """All products ``p_i q_j``: ``(..., n)``, ``(..., m)`` -> ``(..., n, m)``.

    T0p x T0p -> T0, T0p x T0 -> T0p, T0 x T0 -> T0 (the sign factors multiply).
    """
    return p[..., :, None] * q[..., None, :]


def regular_pool(f: torch.Tensor) -> torch.Tensor:
    """Invariant pooling R -> T0: mean over the group axis, ``(..., n, |G|)`` -> ``(..., n)``."""
    return f.mean(dim=-1)


def regular_broadcast(s: torch.Tensor, order: int) -> torch.Tensor:
    """T0 -> R: the constant function ``f_i(h) = s_i``, ``(..., n)`` -> ``(..., n, |G|)``."""
    return s[..., None].expand(*s.shape, order)


def _check_2d(x: torch.Tensor, name: str) -> None:
    if x.shape[-1] != 2:
        raise ValueError(
            f"{name}: the 2D Levi-Civita operations need d = 2, got trailing shape "
            f"{tuple(x.shape)}"
        )


def cross_2d(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """All 2D cross products ``u_i x v_j = eps_ab u_ia v_jb`` (T1 x T1 -> T0p, ``d = 2``).

    ``(..., n, 2)``, ``(..., m, 2)`` -> ``(..., n, m)``; changes sign under reflections.
    """
    _check_2d(u, "u")
    _check_2d(v, "v")
    return u[..., :, None, 0] * v[..., None, :, 1] - u[..., :, None, 1] * v[..., None, :, 0]


def levi_civita_2d(m: torch.Tensor) -> torch.Tensor:
    """``eps_ab M_ab = M_xy - M_yx`` per channel (T2 -> T0p, ``d = 2``): ``(..., n)``."""
    _check_2d(m, "m")
    return m[..., 0, 1] - m[..., 1, 0]


def hodge_2d(v: torch.Tensor) -> torch.Tensor:
    """Rotate by +90 degrees, ``J v = (-v_y, v_x)`` (``d = 2``): ``(..., n, 2)``.

    ``J g v = det(g) g J v`` for ``g`` in O(2), so ``p J v`` is a vector when ``p`` is a
    pseudo-scalar (T0p x T1 -> T1).
    """
    _check_2d(v, "v")
    return torch.stack([-v[..., 1], v[..., 0]], dim=-1)


def upper_pairs(n: int, diagonal: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs ``(i, j)`` with ``i <= j`` (or ``i < j``), as two long tensors."""
    i, j = torch.triu_indices(n, n, offset=0 if diagonal else 1)
    return i, j
