"""The half mode window of a spectral layer as orbits of its group (private).

An equivariant kernel satisfies ``K(g k) = rho_out(g) K(k) rho_in(g)^{-1}``, so on the orbit
of a representative mode ``f``

.. math:: \\rho_{out}(g)^{-1}\\, y(g f) = K(f)\\, [\\rho_{in}(g)^{-1}\\, x(g f)],

one kernel ``K(f)`` per orbit applied to the orbit's inputs stacked along the batch axis. For
real fields ``x(-k) = conj x(k)``, so an orbit needs one element ``e`` per pair ``+-e f`` of
its modes: four for a generic mode under D4, two on the axes and diagonals, one at the
origin. The kernel is then gathered on the representatives only (``1/4`` of the half window
``ky >= 0`` for D4, ``1/2`` for C4) instead of on every mode, for the same multiply-adds.
Orbits that need the same number of elements form one batched product (a *class*).

For ``R -> R`` layers ``rho(g)`` permutes the group axis of every regular copy:
``(rho(a)^{-1} x)_h = x_{a h}`` and ``(rho(a) z)_h = z_{a^{-1} h}``.
"""

from __future__ import annotations

import torch

from ..groups import PlanarGroup

__all__ = ["WindowOrbits"]


class WindowOrbits:
    """Orbit representatives of the window ``|kx|, |ky| <= modes - 1`` and the index maps
    between the half window and the stacked orbit inputs.

    Parameters
    ----------
    group : PlanarGroup
    modes : int

    Attributes
    ----------
    representatives : torch.Tensor
        ``(F,)`` long, flat full-window index ``(kx + K) M + (ky + K)`` of each orbit's
        representative (``M = 2K + 1``), ordered by class.
    classes : list of (int, int)
        ``(orbits, elements)`` per class: the stack holds ``orbits x elements`` slots of it,
        slot ``(f, e)`` at ``offset + f elements + e``.
    element : torch.Tensor
        ``(S,)`` long, the group element ``e`` (index into ``group``) of each slot.
    source : torch.Tensor
        ``(S,)`` long, half-window index ``(kx + K) (K + 1) + ky`` of the one of ``+-e f`` in
        the half window; ``source_conj`` ``(S,)`` bool is True where it is ``-e f``.
    slot : torch.Tensor
        ``(M (K + 1),)`` long, for each half-window mode ``p`` the slot with ``e f = +-p``;
        ``slot_conj`` bool is True where it is ``-p``.
    """

    def __init__(self, group: PlanarGroup, modes: int):
        big_k = modes - 1
        matrices = group.elements().round().long()
        self.group, self.modes = group, modes

        def image(a: int, k: tuple[int, int]) -> tuple[int, int]:
            return tuple((matrices[a] @ torch.tensor(k)).tolist())

        def pair(k: tuple[int, int]) -> frozenset:
            return frozenset({k, (-k[0], -k[1])})

        window = [(kx, ky) for kx in range(-big_k, big_k + 1) for ky in range(-big_k, big_k + 1)]
        seen: set[tuple[int, int]] = set()
        orbits = []  # (representative, elements: one per pair +-e f)
        for k in window:
            if k in seen:
                continue
            pairs, chosen = set(), []
            for a in range(group.order):
                if pair(image(a, k)) not in pairs:
                    pairs.add(pair(image(a, k)))
                    chosen.append(a)
            seen |= set().union(*pairs)
            orbits.append((k, chosen))
        orbits.sort(key=lambda o: -len(o[1]))  # stable: classes of equal size contiguous
        sizes = [len(o[1]) for o in orbits]
        self.classes = [(sizes.count(s), s) for s in sorted(set(sizes), reverse=True)]
        element, source, conj = [], [], []
        cover: dict[tuple[int, int], tuple[int, bool]] = {}
        for f, chosen in orbits:
            for a in chosen:
                q = image(a, f)
                neg = (-q[0], -q[1])
                src = neg if q[1] < 0 else q  # the half window: ky >= 0, the whole ky = 0 row
                slot = len(element)
                element.append(a)
                source.append((src[0] + big_k) * (big_k + 1) + src[1])
                conj.append(q[1] < 0)
                if q not in cover or cover[q][1]:
                    cover[q] = (slot, False)
                cover.setdefault(neg, (slot, True))
        half = [(kx, ky) for kx in range(-big_k, big_k + 1) for ky in range(big_k + 1)]
        self.representatives = torch.tensor(
            [(f[0] + big_k) * (2 * big_k + 1) + f[1] + big_k for f, _ in orbits])
        self.element, self.source = torch.tensor(element), torch.tensor(source)
        self.source_conj = torch.tensor(conj)
        self.slot = torch.tensor([cover[p][0] for p in half])
        self.slot_conj = torch.tensor([cover[p][1] for p in half])

    def gather_index(self, copies: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack the orbit inputs of ``copies x R`` real pairs.

        Returns ``index`` ``(S 2 C,)`` long into one sample's flat window
        ``(C, M, 2 (K + 1))`` (layout of :func:`~._spectral_dft.window_rfft2_pairs`,
        ``C = copies |G|``) and ``sign`` ``(S, 2, 1)`` (float32, ``-1`` on conjugated imaginary
        parts), so that ``x.flatten(1)[:, index].view(B, S, 2, C) * sign`` holds
        ``[Re | Im] rho(e)^{-1} x(e f)`` of every slot over channels ``(copy, h)``.
        """
        m, order = self.modes, self.group.order
        perm = self.group.multiplication_table[self.element]  # (S, |G|): e h
        channel = torch.arange(copies)[None, :, None] * order + perm[:, None, :]  # (S, c, |G|)
        kx, ky = self.source // m, self.source % m
        ri = torch.arange(2)[None, :, None, None]
        index = ((channel[:, None] * (2 * m - 1) + kx[:, None, None, None]) * 2 + ri) * m \
            + ky[:, None, None, None]  # (S, 2, copies, |G|)
        sign = torch.ones(len(self.element), 2, 1)
        sign[:, 1][self.source_conj] = -1.0
        return index.reshape(-1), sign

    def scatter_index(self, copies: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Put stacked orbit outputs of ``copies x R`` back on the half window.

        Returns ``index`` ``(C M 2 (K + 1),)`` long into one sample's flat stack ``(S, 2 C)``
        and ``sign`` ``(M, 2, K + 1)`` (float32), so that ``y.flatten(1)[:, index].view(B, C,
        M, 2, K + 1) * sign`` is ``rho(e) y`` of the covering slot, conjugated where it holds
        ``-p``.
        """
        m, order = self.modes, self.group.order
        inverse = torch.tensor([self.group.inverse_index(a) for a in range(order)])
        rows = 2 * m - 1
        slot = self.slot.view(rows, m)
        conj = self.slot_conj.view(rows, m)
        perm = self.group.multiplication_table[inverse[self.element[self.slot]]]  # (P, |G|)
        # (copies, |G|, M, K + 1): output channel (copy, h) reads the slot's (copy, e^{-1} h)
        channel = (torch.arange(copies)[:, None, None, None] * order
                   + perm.view(rows, m, order).permute(2, 0, 1)[None])
        ri = torch.arange(2).view(1, 1, 1, 2, 1)
        index = (slot[None, None, :, None, :] * 2 + ri) * (copies * order) \
            + channel[:, :, :, None, :]
        sign = torch.where(conj[:, None, :] & (ri[0, 0] == 1), -1.0, 1.0)  # (M, 2, K + 1)
        return index.reshape(-1), sign
