"""Typed representations: the data type of a G-RepsNet feature space.

A :class:`Reps` is an immutable, hashable value such as ``Reps("8xT0 + 2xT0p + 4xT1", D4())``
listing blocks of tensors of the group's defining representation:

========  ====================================  ============================  =========
name      meaning                               action of ``g``               size
========  ====================================  ============================  =========
``T0``    scalar                                ``s -> s``                    1
``T0p``   pseudo-scalar (e.g. 2D vorticity)     ``s -> det(g) s``             1
``T1``    vector                                ``v -> g v``                  d
``T2``    order-2 tensor                        ``M -> g M g^T``              d * d
``R``     regular representation (finite G)     ``f(h) -> f(g^{-1} h)``       abs(G)
========  ====================================  ============================  =========

Flat channel layout
-------------------
Blocks are laid out in the order written. A block ``m x K`` occupies ``m * size(K)``
consecutive entries, channel-major: channel 0's components, then channel 1's. ``T2`` is
row-major ``d x d`` per channel and ``R`` lists ``|G|`` entries per channel in the order of
``group.elements()``. Point features have shape ``(..., reps.dim)``; fields on a 2D grid
``(batch, reps.dim, X, Y)`` with ``T1`` components ordered like the grid axes ``(x, y)``.

Examples
--------
>>> from grepsnet_sciml.groups import D4
>>> reps = Reps("2xT0 + T0p + 3xT1 + T2", D4())
>>> reps.dim
13
>>> reps
Reps('2xT0 + T0p + 3xT1 + T2', D4())
>>> eval(repr(reps)) == reps
True
>>> (reps + Reps("R", D4())).dim
21
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from .groups import (  # noqa: F401 - names used by eval(repr(reps))
    C1,
    C2,
    C4,
    D1,
    D2,
    D4,
    SO,
    FiniteGroup,
    Group,
    Lorentz,
    O,
    Permutation,
    PlanarGroup,
    group_from_string,
)

__all__ = ["Reps", "Block", "KINDS"]

KINDS = ("T0", "T0p", "T1", "T2", "R")
_TERM = re.compile(r"^(?:(\d+)\s*x\s*)?([A-Za-z][A-Za-z0-9]*)$")


@dataclass(frozen=True)
class Block:
    """One block of a :class:`Reps`: ``mult`` copies of the representation ``kind``.

    Attributes
    ----------
    mult : int
        Multiplicity (number of channels).
    kind : str
        One of ``"T0", "T0p", "T1", "T2", "R"``.
    size : int
        Entries per channel.
    start : int
        Offset of the block in the flat layout.
    """

    mult: int
    kind: str
    size: int
    start: int

    @property
    def dim(self) -> int:
        return self.mult * self.size

    @property
    def slice(self) -> slice:
        return slice(self.start, self.start + self.dim)


class Reps:
    """A direct sum of tensor representations of a group, with a flat channel layout.

    Parameters
    ----------
    spec : str or Reps or list of (int, str)
        E.g. ``"8xT0 + 2xT0p + 4xT1 + 2xT2"``; a bare name means multiplicity 1; ``"0"``
        (or an empty list) is the empty representation. An empty or blank string is refused
        as the likely sign of a missing value.
    group : Group
        The group acting (e.g. ``D4()``, ``O(3)``, ``Lorentz()``).

    Raises
    ------
    ValueError
        For an empty string, an unknown representation name, a non-positive multiplicity or
        ``R`` over a continuous group.
    """

    __slots__ = ("_terms", "_group", "_blocks", "_cache")

    def __init__(self, spec: str | Reps | list[tuple[int, str]], group: Group | str):
        if isinstance(group, str):
            group = group_from_string(group)
        if not isinstance(group, Group):
            raise ValueError(f"group: expected a Group such as D4() or O(3), got {group!r}")
        if isinstance(spec, Reps):
            terms = spec._terms
        elif isinstance(spec, str):
            terms = _parse(spec)
        elif isinstance(spec, (list, tuple)) and all(
            isinstance(t, (list, tuple)) and len(t) == 2 for t in spec
        ):
            terms = tuple((int(m), str(k)) for m, k in spec)
        else:
            raise ValueError(
                f"spec: expected a string like '4xT0 + 2xT1' or a list of (mult, kind), "
                f"got {spec!r}"
            )
        for mult, kind in terms:
            if kind not in KINDS:
                raise ValueError(
                    f"spec: unknown representation {kind!r}; expected one of {list(KINDS)}"
                )
            if mult <= 0:
                raise ValueError(f"spec: multiplicity of {kind} must be positive, got {mult}")
            if kind == "R" and not isinstance(group, FiniteGroup):
                raise ValueError(
                    f"spec: the regular representation R needs a finite group, got {group!r}"
                )
        object.__setattr__(self, "_terms", tuple(terms))
        object.__setattr__(self, "_group", group)
        blocks, start = [], 0
        for mult, kind in terms:
            size = _kind_size(kind, group)
            blocks.append(Block(mult, kind, size, start))
            start += mult * size
        object.__setattr__(self, "_blocks", tuple(blocks))
        # derived tensors (layout indices, rho matrices), computed on first use; never part
        # of the value (equality, hash, pickling and copies ignore it)
        object.__setattr__(self, "_cache", {})

    def __setattr__(self, name, value):
        raise AttributeError("Reps is immutable")

    def __reduce__(self):
        # rebuild through the constructor (pickling, copy.deepcopy of modules holding Reps)
        return (Reps, (list(self._terms), self._group))

    def __copy__(self) -> Reps:
        return self

    def __deepcopy__(self, memo) -> Reps:
        return self

    # ----- value semantics -------------------------------------------------------------
    @property
    def group(self) -> Group:
        return self._group

    @property
    def blocks(self) -> tuple[Block, ...]:
        return self._blocks

    @property
    def dim(self) -> int:
        """Total number of entries in the flat layout."""
        return sum(b.dim for b in self._blocks)

    def slices(self) -> list[slice]:
        """One slice of the flat layout per block, in order."""
        return [b.slice for b in self._blocks]

    def count(self, kind: str) -> int:
        """Total multiplicity of ``kind`` over all blocks."""
        if kind not in KINDS:
            raise ValueError(f"kind: unknown representation {kind!r}; expected one of {KINDS}")
        return sum(b.mult for b in self._blocks if b.kind == kind)

    def kind_size(self, kind: str) -> int:
        """Entries per channel of ``kind``: 1 (T0, T0p), ``d`` (T1), ``d * d`` (T2), ``|G|`` (R).

        Raises
        ------
        ValueError
            For an unknown kind, or R over a continuous group.
        """
        if kind not in KINDS:
            raise ValueError(f"kind: unknown representation {kind!r}; expected one of {KINDS}")
        if kind == "R" and not isinstance(self._group, FiniteGroup):
            raise ValueError(
                f"kind: the regular representation R needs a finite group, got {self._group!r}"
            )
        return _kind_size(kind, self._group)

    def simplify(self) -> Reps:
        """Merge adjacent blocks of the same kind (the layout is unchanged)."""
        merged: list[list] = []
        for mult, kind in self._terms:
            if merged and merged[-1][1] == kind:
                merged[-1][0] += mult
            else:
                merged.append([mult, kind])
        return Reps([(m, k) for m, k in merged], self._group)

    def sorted(self) -> Reps:
        """The same multiplicities grouped by kind in the order T0, T0p, T1, T2, R."""
        return Reps([(self.count(k), k) for k in KINDS if self.count(k)], self._group)

    def __add__(self, other: Reps) -> Reps:
        if not isinstance(other, Reps):
            return NotImplemented
        if other._group != self._group:
            raise ValueError(
                f"other: cannot add Reps over {other._group!r} to {self._group!r}; "
                "expected the same group"
            )
        return Reps(self._terms + other._terms, self._group)

    def __mul__(self, k: int) -> Reps:
        if not isinstance(k, int) or isinstance(k, bool):
            return NotImplemented
        if k <= 0:
            raise ValueError(f"k: multiplier must be a positive integer, got {k}")
        return Reps([(m * k, kind) for m, kind in self._terms], self._group)

    __rmul__ = __mul__

    def __len__(self) -> int:
        return len(self._blocks)

    def __iter__(self):
        return iter(self._blocks)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Reps)
            and self._terms == other._terms
            and self._group == other._group
        )

    def __hash__(self) -> int:
        return hash((self._terms, self._group))

    def __str__(self) -> str:
        return " + ".join(k if m == 1 else f"{m}x{k}" for m, k in self._terms) or "0"

    def __repr__(self) -> str:
        return f"Reps({str(self)!r}, {self._group!r})"

    # ----- layout by kind (computed once, cached; every call returns a fresh copy) --------
    def _cached(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def kind_indices(self) -> dict[str, torch.Tensor]:
        """Flat indices of the entries of each kind, blocks of one kind in the order written.

        Returns
        -------
        dict of str to torch.Tensor
            ``kind -> (count(kind) * kind_size(kind),)`` long indices into this layout, for
            the kinds present, in the order T0, T0p, T1, T2, R. ``x[..., idx[kind]]`` is the
            part of ``kind`` of :func:`~grepsnet_sciml.layers.tensor_ops.split`, flattened.

        Examples
        --------
        >>> from grepsnet_sciml.groups import D4
        >>> Reps("T1 + T0 + T1", D4()).kind_indices
        {'T0': tensor([2]), 'T1': tensor([0, 1, 3, 4])}
        """
        cached = self._cached("kind_indices", self._compute_kind_indices)
        return {kind: idx.clone() for kind, idx in cached.items()}

    def _compute_kind_indices(self) -> dict[str, torch.Tensor]:
        out = {}
        for kind in KINDS:
            idx = [torch.arange(b.start, b.start + b.dim) for b in self._blocks if b.kind == kind]
            if idx:
                out[kind] = torch.cat(idx)
        return out

    @property
    def sort_permutation(self) -> torch.Tensor:
        """``(dim,)`` long ``P``: ``x[..., P]`` is ``x`` in the layout of :meth:`sorted`.

        The concatenation of :attr:`kind_indices` (kinds in the order T0, T0p, T1, T2, R).

        Examples
        --------
        >>> from grepsnet_sciml.groups import D4
        >>> Reps("T1 + T0 + T1", D4()).sort_permutation
        tensor([2, 0, 1, 3, 4])
        """
        return self._cached("sort_permutation", self._compute_sort_permutation).clone()

    def _compute_sort_permutation(self) -> torch.Tensor:
        parts = list(self.kind_indices.values())
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

    @property
    def sort_inverse(self) -> torch.Tensor:
        """``(dim,)`` long inverse of :attr:`sort_permutation`: ``y[..., inverse]`` takes
        ``y`` from the layout of :meth:`sorted` back to this one."""
        return self._cached("sort_inverse", lambda: torch.argsort(self.sort_permutation)).clone()

    @property
    def is_sorted(self) -> bool:
        """Whether the layout is already grouped by kind (:attr:`sort_permutation` is the
        identity)."""
        return self._cached(
            "is_sorted", lambda: torch.equal(self.sort_inverse, torch.arange(self.dim))
        )

    def rho(self, kind: str) -> torch.Tensor:
        """Representation matrices of one channel of ``kind`` for every group element.

        Parameters
        ----------
        kind : str
            One of ``"T0", "T0p", "T1", "T2", "R"`` (present in this Reps or not).

        Returns
        -------
        torch.Tensor
            ``(|G|, s, s)`` float64, ``s = kind_size(kind)``, elements in the order of
            ``group.elements()``, so that ``rho(h) x`` is :meth:`act` on one channel: ``T0``
            1, ``T0p`` ``det h``, ``T1`` ``h``, ``T2`` ``h (x) h`` (row-major), ``R`` the
            regular permutation matrices.

        Raises
        ------
        ValueError
            For an unknown kind or a group that is not finite.

        Examples
        --------
        >>> from grepsnet_sciml.groups import D4
        >>> Reps("T1", D4()).rho("T2").shape
        torch.Size([8, 4, 4])
        """
        self.kind_size(kind)
        if not isinstance(self._group, FiniteGroup):
            raise ValueError(
                f"kind: rho({kind!r}) lists one matrix per group element and needs a finite "
                f"group, got {self._group!r}"
            )
        return self._cached(("rho", kind), lambda: _kind_matrices(self._group, kind)).clone()

    # ----- tensors ---------------------------------------------------------------------
    def randn(
        self,
        *shape: int,
        grid: tuple[int, int] | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Standard normal tensor in this layout.

        Returns ``(*shape, dim)`` for point features, or ``(*shape, dim, X, Y)`` when
        ``grid=(X, Y)`` is given.
        """
        full = (*shape, self.dim) if grid is None else (*shape, self.dim, *grid)
        return torch.randn(full, generator=generator, dtype=dtype, device=device)

    def check(self, x: torch.Tensor, argument: str = "x", grid: bool = False) -> None:
        """Raise ``ValueError`` unless ``x`` has this layout (and a grid the group acts on)."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{argument}: expected a torch.Tensor, got {type(x).__name__}")
        if grid:
            if x.ndim != 4 or x.shape[1] != self.dim:
                raise ValueError(
                    f"{argument}: expected a field of shape (batch, {self.dim}, X, Y) for "
                    f"{self}, got {tuple(x.shape)}"
                )
            self._group.check_grid(tuple(x.shape[-2:]), argument)
        elif x.ndim < 1 or x.shape[-1] != self.dim:
            raise ValueError(
                f"{argument}: expected last dimension {self.dim} for {self}, "
                f"got shape {tuple(x.shape)}"
            )

    def act(self, g: torch.Tensor | int, x: torch.Tensor, grid: bool = False) -> torch.Tensor:
        """Apply the group element ``g`` to ``x`` in this layout.

        Parameters
        ----------
        g : torch.Tensor or int
            ``(d, d)`` group matrix, or an element index for finite groups.
        x : torch.Tensor
            ``(..., dim)`` point features, or ``(batch, dim, X, Y)`` fields if ``grid``.
        grid : bool
            Also move the grid points: ``(g . f)(i) = rho(g) f(g^{-1} i mod N)``.

        Returns
        -------
        torch.Tensor
            ``rho(g) x`` with the same shape: T0 unchanged, T0p times ``det g``, T1
            ``g v``, T2 ``g M g^T``, R permuted by ``h -> g^{-1} h``.
        """
        self.check(x, "x", grid=grid)
        if isinstance(g, int):
            if not isinstance(self._group, FiniteGroup):
                raise ValueError(
                    f"g: element indices need a finite group, not {self._group!r}; "
                    f"expected a ({self._group.d}, {self._group.d}) matrix"
                )
            g = self._group.elements()[self._group.index(g)]
        g = torch.as_tensor(g).to(dtype=x.dtype, device=x.device)
        d = self._group.d
        if g.shape != (d, d):
            raise ValueError(
                f"g: expected a ({d}, {d}) matrix for {self._group!r}, got {tuple(g.shape)}"
            )
        self._group.check_element(g, "g")
        axis = 1 if grid else x.ndim - 1
        parts = []
        for b in self._blocks:
            xb = x.narrow(axis, b.start, b.dim)
            parts.append(self._act_block(b, g, xb, axis))
        out = torch.cat(parts, dim=axis) if parts else x.clone()
        if grid:
            out = self._group.act_grid(g.to(torch.float64).cpu(), out)
        return out

    def _act_block(self, b: Block, g: torch.Tensor, xb: torch.Tensor, axis: int) -> torch.Tensor:
        d = self._group.d
        shape = list(xb.shape)
        if b.kind == "T0":
            return xb.clone()
        if b.kind == "T0p":
            return torch.sign(torch.linalg.det(g.to(torch.float64))).to(xb.dtype) * xb
        if b.kind == "T1":
            v = xb.reshape(shape[:axis] + [b.mult, d] + shape[axis + 1 :])
            v = torch.tensordot(v.movedim(axis + 1, -1), g, dims=([-1], [1])).movedim(-1, axis + 1)
            return v.reshape(shape)
        if b.kind == "T2":
            m = xb.reshape(shape[:axis] + [b.mult, d, d] + shape[axis + 1 :])
            m = m.movedim(axis + 1, -1).movedim(axis + 1, -1)  # (..., mult, ..., i, j)
            m = g @ m @ g.T
            m = m.movedim(-1, axis + 1).movedim(-1, axis + 1)
            return m.reshape(shape)
        # regular representation
        perm = self._group.regular_permutation(g.to(torch.float64).cpu()).to(xb.device)
        r = xb.reshape(shape[:axis] + [b.mult, b.size] + shape[axis + 1 :])
        return r.index_select(axis + 1, perm).reshape(shape)


def _kind_size(kind: str, group: Group) -> int:
    if kind in ("T0", "T0p"):
        return 1
    if kind == "T1":
        return group.d
    if kind == "T2":
        return group.d * group.d
    return group.order


def _kind_matrices(group: FiniteGroup, kind: str) -> torch.Tensor:
    """``(|G|, s, s)`` float64 matrices ``rho_kind(h)`` of one channel (see :meth:`Reps.rho`)."""
    h = group.elements()
    if kind == "T0":
        return torch.ones(len(h), 1, 1, dtype=torch.float64)
    if kind == "T0p":
        return torch.sign(torch.linalg.det(h))[:, None, None]
    if kind == "T1":
        return h
    if kind == "T2":
        return torch.einsum("hac,hbd->habcd", h, h).reshape(len(h), group.d**2, group.d**2)
    eye = torch.eye(group.order, dtype=torch.float64)
    return torch.stack([eye[group.regular_permutation(a)] for a in range(group.order)])


def _parse(spec: str) -> tuple[tuple[int, str], ...]:
    if not isinstance(spec, str):
        raise ValueError(f"spec: expected a string like '4xT0 + 2xT1', got {spec!r}")
    text = spec.strip()
    if text == "":
        raise ValueError(
            f"spec: got the empty string {spec!r}; expected terms like '4xT0 + 2xT1', or '0' "
            "for the empty representation"
        )
    if text == "0":
        return ()
    terms = []
    for raw in text.split("+"):
        match = _TERM.match(raw.strip())
        if match is None:
            raise ValueError(
                f"spec: cannot parse {raw.strip()!r} in {spec!r}; expected terms like '4xT1'"
            )
        mult = int(match.group(1)) if match.group(1) is not None else 1
        terms.append((mult, match.group(2)))
    return tuple(terms)
