"""Matrix groups and their actions on points, particle indices and square periodic grids.

Every group is a value: it has a defining representation of dimension ``d`` (matrices
``(d, d)``), a ``metric`` ``eta`` with ``g^T eta g = eta``, and either a finite list of
``elements()`` or a ``sample(n)`` method for continuous groups.

Grid convention
---------------
Planar finite groups (``C4``, ``D4`` and their subgroups) act on an ``N x N`` periodic grid
with points ``x_i = i / N`` *about the origin grid point* ``i = (0, 0)``: an element ``g``
(an integer matrix) maps the field ``f`` to ``(g . f)(i) = f(g^{-1} i mod N)``. This is the
action that leaves a forcing such as ``cos(4 pi x)`` sampled at ``x_i = i / N`` invariant;
``torch.rot90`` instead rotates about the array centre, which is this action followed by a
one-cell shift.

Examples
--------
>>> g = D4()
>>> g.order
8
>>> g.elements().shape
torch.Size([8, 2, 2])
>>> O(3).sample(4).shape
torch.Size([4, 3, 3])
>>> group_from_string(repr(D2("diagonal"))) == D2("diagonal")
True
"""

from __future__ import annotations

import itertools
import math
import re

import torch

__all__ = [
    "Group",
    "FiniteGroup",
    "PlanarGroup",
    "C1",
    "C2",
    "C4",
    "D1",
    "D2",
    "D4",
    "O",
    "SO",
    "Lorentz",
    "Permutation",
    "group_from_string",
]


class Group:
    """A matrix group given by its defining representation.

    Attributes
    ----------
    d : int
        Dimension of the defining representation.
    metric : torch.Tensor
        ``(d, d)`` float64 invariant metric ``eta`` with ``g^T eta g = eta`` for all ``g``.
    """

    d: int
    is_finite: bool = False
    acts_on_grid: bool = False

    @property
    def metric(self) -> torch.Tensor:
        return torch.eye(self.d, dtype=torch.float64)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random elements, shape ``(n, d, d)``, float64."""
        raise NotImplementedError

    def det(self, g: torch.Tensor) -> torch.Tensor:
        """Sign of the determinant of ``g`` (``(..., d, d)`` -> ``(...)``), +1 or -1."""
        return torch.sign(torch.linalg.det(g.to(torch.float64)))

    def check_element(self, g: torch.Tensor, argument: str = "g") -> None:
        """Raise ``ValueError`` unless the ``(d, d)`` matrix ``g`` is in the group.

        The defining relation ``g^T eta g = eta`` (and ``det g = 1`` for special groups) is
        checked to a tolerance of the matrix's precision: ``1e-4`` for float32 and lower,
        ``1e-8`` for float64, relative to the metric.
        """
        g64 = torch.as_tensor(g).detach().to("cpu", torch.float64)
        tol = 1e-8 if torch.as_tensor(g).dtype == torch.float64 else 1e-4
        eta = self.metric
        defect = float((g64.T @ eta @ g64 - eta).abs().max())
        if not defect <= tol:
            raise ValueError(
                f"{argument}: the matrix {g64.tolist()} is not an element of {self!r}: "
                f"max |g^T eta g - eta| = {defect:.3g}, expected <= {tol:g}"
            )

    def check_grid(self, shape: tuple[int, ...], argument: str = "x") -> None:
        """Raise ``ValueError`` unless the group can act on a grid of this spatial shape."""
        raise ValueError(
            f"{argument}: the group {self!r} does not act on grids; "
            "expected a planar finite group such as C4() or D4()"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Group) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))


class FiniteGroup(Group):
    """A finite matrix group listed element by element.

    Parameters
    ----------
    elements : torch.Tensor
        ``(|G|, d, d)`` matrices, the identity first; the order fixes the layout of the
        regular representation.
    """

    is_finite = True

    def __init__(self, elements: torch.Tensor):
        elements = torch.as_tensor(elements, dtype=torch.float64)
        if elements.ndim != 3 or elements.shape[1] != elements.shape[2]:
            raise ValueError(f"elements: expected shape (n, d, d), got {tuple(elements.shape)}")
        if not torch.allclose(elements[0], torch.eye(elements.shape[1], dtype=torch.float64)):
            raise ValueError("elements: the first element must be the identity")
        self._elements = elements
        self.d = elements.shape[1]
        self._table = self._multiplication_table()

    @property
    def order(self) -> int:
        return self._elements.shape[0]

    def elements(self) -> torch.Tensor:
        """All elements, ``(|G|, d, d)`` float64, in the group's fixed order."""
        return self._elements.clone()

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        idx = torch.randint(self.order, (n,), generator=generator)
        return self._elements[idx].clone()

    def check_element(self, g: torch.Tensor, argument: str = "g") -> None:
        """Raise ``ValueError`` unless ``g`` is one of :meth:`elements` (to 1e-6)."""
        self.index(g)

    def index(self, g: torch.Tensor | int) -> int:
        """Position of ``g`` in :meth:`elements`; raises ``ValueError`` if ``g`` is not in G."""
        if isinstance(g, int):
            if not 0 <= g < self.order:
                raise ValueError(f"g: element index {g} out of range for {self!r}")
            return g
        g = torch.as_tensor(g, dtype=torch.float64).reshape(self.d, self.d)
        diff = (self._elements - g).abs().flatten(1).amax(1)
        k = int(diff.argmin())
        if diff[k] > 1e-6:
            raise ValueError(
                f"g: matrix {g.tolist()} is not an element of {self!r}; expected one of its "
                "elements()"
            )
        return k

    def _multiplication_table(self) -> torch.Tensor:
        prods = torch.einsum("aij,bjk->abik", self._elements, self._elements)
        diff = (prods[:, :, None] - self._elements[None, None]).abs().flatten(3).amax(3)
        table = diff.argmin(2)
        if (diff.gather(2, table[..., None]) > 1e-6).any():
            raise ValueError("elements: the list is not closed under multiplication")
        return table

    @property
    def multiplication_table(self) -> torch.Tensor:
        """``(|G|, |G|)`` long ``T`` with ``elements[T[a, b]] = elements[a] @ elements[b]``."""
        return self._table.clone()

    def inverse_index(self, a: int) -> int:
        """Index of the inverse of element ``a``."""
        return int((self._table[a] == 0).nonzero()[0, 0])

    def regular_permutation(self, g: torch.Tensor | int) -> torch.Tensor:
        """Index map ``P`` of the regular action: ``(g . f)[h] = f[P[h]]``, ``P[h] = g^{-1} h``."""
        a_inv = self.inverse_index(self.index(g))
        return self._table[a_inv].clone()


_ROT90 = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
_MIRROR_X = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)  # (x, y) -> (x, -y)
_D4_ELEMENTS = torch.stack(
    [torch.linalg.matrix_power(_ROT90, k) for k in range(4)]
    + [torch.linalg.matrix_power(_ROT90, k) @ _MIRROR_X for k in range(4)]
)
_D4_NAMES = ["e", "r", "r2", "r3", "m", "rm", "r2m", "r3m"]
_AXES = {
    "x": _MIRROR_X,  # reflection across the x axis: (x, y) -> (x, -y)
    "y": -_MIRROR_X,  # (x, y) -> (-x, y)
    "diagonal": torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64),
    "antidiagonal": torch.tensor([[0.0, -1.0], [-1.0, 0.0]], dtype=torch.float64),
}


class PlanarGroup(FiniteGroup):
    """A subgroup of D4 acting on the plane and on square periodic grids.

    Elements are listed in D4's order: rotations ``r^k`` (k = 0..3, counter-clockwise by
    90 degrees) then reflections ``r^k m`` with ``m: (x, y) -> (x, -y)``.

    Parameters
    ----------
    generators : list of torch.Tensor
        ``(2, 2)`` integer matrices generating the subgroup.
    name : str
        A constructor call that rebuilds the group (its repr).
    """

    acts_on_grid = True

    def __init__(self, generators: list[torch.Tensor], name: str):
        keep = _closure_in_d4(generators)
        super().__init__(_D4_ELEMENTS[keep])
        self.element_names = [_D4_NAMES[k] for k in keep]
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def check_grid(self, shape: tuple[int, ...], argument: str = "x") -> None:
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(
                f"{argument}: {self!r} acts only on square 2D grids, got spatial shape "
                f"{tuple(shape)}; expected (N, N)"
            )

    def grid_index(self, g: torch.Tensor | int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Source indices ``(sx, sy)``, each ``(n, n)``, with ``(g . f)[i, j] = f[sx, sy]``.

        Implements ``(g . f)(i) = f(g^{-1} i mod n)`` about the origin grid point.
        """
        g_inv = self._elements[self.inverse_index(self.index(g))].round().long()
        i = torch.arange(n)
        ii, jj = torch.meshgrid(i, i, indexing="ij")
        src = torch.einsum("ab,bxy->axy", g_inv, torch.stack([ii, jj])) % n
        return src[0], src[1]

    def act_grid(self, g: torch.Tensor | int, x: torch.Tensor) -> torch.Tensor:
        """Move grid values: ``(g . x)[..., i] = x[..., g^{-1} i mod N]`` over the last two axes."""
        self.check_grid(tuple(x.shape[-2:]))
        sx, sy = self.grid_index(g, x.shape[-1])
        return x[..., sx.to(x.device), sy.to(x.device)]


def _closure_in_d4(generators: list[torch.Tensor]) -> list[int]:
    gens = [torch.as_tensor(g, dtype=torch.float64) for g in generators]
    members = {0}
    frontier = [torch.eye(2, dtype=torch.float64)]
    while frontier:
        new = []
        for a in frontier:
            for b in gens:
                c = a @ b
                k = int((_D4_ELEMENTS - c).abs().flatten(1).amax(1).argmin())
                if (_D4_ELEMENTS[k] - c).abs().max() > 1e-9:
                    raise ValueError(f"generators: {b.tolist()} is not an element of D4")
                if k not in members:
                    members.add(k)
                    new.append(_D4_ELEMENTS[k])
        frontier = new
    return sorted(members)


def C1() -> PlanarGroup:
    """The trivial group acting on the plane."""
    return PlanarGroup([], "C1()")


def C2() -> PlanarGroup:
    """Rotations by 0 and 180 degrees about the origin."""
    return PlanarGroup([_ROT90 @ _ROT90], "C2()")


def C4() -> PlanarGroup:
    """Rotations by multiples of 90 degrees about the origin (p4's point group)."""
    return PlanarGroup([_ROT90], "C4()")


def D1(axis: str = "x") -> PlanarGroup:
    """One reflection; ``axis`` in ``"x"``, ``"y"``, ``"diagonal"``, ``"antidiagonal"``."""
    if axis not in _AXES:
        raise ValueError(f"axis: unknown reflection axis {axis!r}; expected one of {list(_AXES)}")
    return PlanarGroup([_AXES[axis]], f"D1({axis!r})")


def D2(axes: str = "cartesian") -> PlanarGroup:
    """180-degree rotation with two reflections: ``axes`` ``"cartesian"`` or ``"diagonal"``."""
    choice = {"cartesian": _AXES["x"], "diagonal": _AXES["diagonal"]}
    if axes not in choice:
        raise ValueError(f"axes: expected 'cartesian' or 'diagonal', got {axes!r}")
    return PlanarGroup([_ROT90 @ _ROT90, choice[axes]], f"D2({axes!r})")


def D4() -> PlanarGroup:
    """The symmetry group of the square: 4 rotations and 4 reflections (p4m's point group)."""
    return PlanarGroup([_ROT90, _MIRROR_X], "D4()")


def _haar_orthogonal(n: int, d: int, generator: torch.Generator | None) -> torch.Tensor:
    a = torch.randn(n, d, d, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]


class O(Group):  # noqa: N801 - the group's name
    """The orthogonal group O(n): ``g^T g = I``, rotations and reflections."""

    def __init__(self, n: int):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n: expected a positive integer dimension, got {n!r}")
        self.d = n

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Haar-distributed elements ``(n, d, d)``."""
        return _haar_orthogonal(n, self.d, generator)

    def __repr__(self) -> str:
        return f"O({self.d})"


class SO(O):
    """The special orthogonal group SO(n): rotations only (``det g = 1``)."""

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        q = _haar_orthogonal(n, self.d, generator)
        flip = torch.linalg.det(q) < 0
        q[flip, :, 0] = -q[flip, :, 0]
        return q

    def check_element(self, g: torch.Tensor, argument: str = "g") -> None:
        super().check_element(g, argument)
        det = float(torch.linalg.det(torch.as_tensor(g).detach().to("cpu", torch.float64)))
        if det < 0:
            raise ValueError(
                f"{argument}: the matrix has determinant {det:.3g}; {self!r} expected det g = +1 "
                "(rotations only); use O(n) for reflections"
            )

    def __repr__(self) -> str:
        return f"SO({self.d})"


class Lorentz(Group):
    """The Lorentz group O(1,3) with metric ``diag(1, -1, -1, -1)``: ``g^T eta g = eta``."""

    d = 4

    def __init__(self, max_rapidity: float = 1.0):
        self.max_rapidity = float(max_rapidity)

    @property
    def metric(self) -> torch.Tensor:
        return torch.diag(torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Boost (random direction, rapidity uniform in ``[-max_rapidity, max_rapidity]``)
        times an O(3) rotation or reflection, times time reversal with probability 1/2."""
        rot = _haar_orthogonal(n, 3, generator)
        direction = torch.randn(n, 3, generator=generator, dtype=torch.float64)
        direction = direction / direction.norm(dim=-1, keepdim=True)
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        rapidity = self.max_rapidity * (2 * u - 1)
        ch, sh = torch.cosh(rapidity), torch.sinh(rapidity)
        boost = torch.zeros(n, 4, 4, dtype=torch.float64)
        boost[:, 0, 0] = ch
        boost[:, 0, 1:] = sh[:, None] * direction
        boost[:, 1:, 0] = sh[:, None] * direction
        nn_t = direction[:, :, None] * direction[:, None, :]
        boost[:, 1:, 1:] = torch.eye(3, dtype=torch.float64) + (ch - 1)[:, None, None] * nn_t
        spatial = torch.zeros(n, 4, 4, dtype=torch.float64)
        spatial[:, 0, 0] = 1.0
        spatial[:, 1:, 1:] = rot
        t_sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
        spatial[:, 0, 0] = t_sign.to(torch.float64)
        return boost @ spatial

    def __repr__(self) -> str:
        return "Lorentz()" if self.max_rapidity == 1.0 else f"Lorentz({self.max_rapidity!r})"


class Permutation(FiniteGroup):
    """The symmetric group S_n acting on n particle indices by permutation matrices.

    ``elements()`` lists all ``n!`` permutations (use small ``n``); ``sample`` draws
    uniformly random permutations for any ``n``.
    """

    def __init__(self, n: int):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n: expected a positive number of particles, got {n!r}")
        self.n = n
        self.d = n
        self._elements = None

    def elements(self) -> torch.Tensor:
        if self._elements is None:
            if self.n > 7:
                raise ValueError(
                    f"n: listing all {math.factorial(self.n)} permutations is too many"
                )
            eye = torch.eye(self.n, dtype=torch.float64)
            self._perms = torch.tensor(list(itertools.permutations(range(self.n))))
            self._elements = eye[self._perms]
        return self._elements.clone()

    @property
    def _table(self) -> torch.Tensor:
        # built on first use from index composition (p_ab = p_b[p_a]): the generic matrix
        # comparison needs |G|^3 d^2 memory
        if getattr(self, "_table_cache", None) is None:
            self.elements()
            perms = self._perms
            weights = self.n ** torch.arange(self.n - 1, -1, -1)
            lookup = torch.zeros(self.n**self.n, dtype=torch.long)
            lookup[(perms * weights).sum(1)] = torch.arange(len(perms))
            # code(p_b[p_a]) = sum_i w_i p_b[p_a[i]] = sum_j p_b[j] v_a[j], v_a[p_a[i]] = w_i
            v = torch.zeros(len(perms), self.n, dtype=torch.long)
            v.scatter_(1, perms, weights.expand(len(perms), -1).contiguous())
            codes = v.double() @ perms.double().T  # [a, b], exact integers
            self._table_cache = lookup[codes.round().long()]
        return self._table_cache

    @property
    def order(self) -> int:
        return math.factorial(self.n)

    def index(self, g: torch.Tensor | int) -> int:
        self.elements()
        return super().index(g)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        eye = torch.eye(self.n, dtype=torch.float64)
        return torch.stack([eye[torch.randperm(self.n, generator=generator)] for _ in range(n)])

    def check_element(self, g: torch.Tensor, argument: str = "g") -> None:
        """Raise ``ValueError`` unless ``g`` is an ``n x n`` permutation matrix."""
        g64 = torch.as_tensor(g).detach().to("cpu", torch.float64)
        binary = bool(((g64 == 0) | (g64 == 1)).all())
        if not (binary and (g64.sum(0) == 1).all() and (g64.sum(1) == 1).all()):
            raise ValueError(
                f"{argument}: expected a {self.n} x {self.n} permutation matrix (one 1 per row "
                f"and column, zeros elsewhere) for {self!r}, got {g64.tolist()}"
            )

    @staticmethod
    def as_indices(g: torch.Tensor) -> torch.Tensor:
        """Index form ``p`` of a permutation matrix: ``(g x)[i] = x[p[i]]``."""
        return g.argmax(dim=-1)

    def __repr__(self) -> str:
        return f"Permutation({self.n})"


_FACTORIES = {
    "C1": C1,
    "C2": C2,
    "C4": C4,
    "D1": D1,
    "D2": D2,
    "D4": D4,
    "O": O,
    "SO": SO,
    "Lorentz": Lorentz,
    "Permutation": Permutation,
}
_CALL = re.compile(r"^\s*([A-Za-z][A-Za-z0-9]*)\s*\(\s*(.*?)\s*\)\s*$")


def group_from_string(text: str) -> Group:
    """Rebuild a group from its repr (``"D4()"``, ``"O(3)"``, ``"D2('diagonal')"``, ...).

    Also accepts a bare name without parentheses for groups without arguments (``"D4"``).
    """
    if not isinstance(text, str):
        raise ValueError(f"group: expected a string such as 'D4()', got {text!r}")
    match = _CALL.match(text) or _CALL.match(text + "()")
    if match is None or match.group(1) not in _FACTORIES:
        raise ValueError(
            f"group: unknown group {text!r}; expected one of "
            + ", ".join(f"{k}(...)" for k in _FACTORIES)
        )
    name, arg = match.groups()
    if not arg:
        return _FACTORIES[name]()
    if re.fullmatch(r"\d+", arg):
        return _FACTORIES[name](int(arg))
    if re.fullmatch(r"[\d.eE+-]+", arg):
        return _FACTORIES[name](float(arg))
    quoted = re.fullmatch(r"""['"]([A-Za-z]+)['"]""", arg)
    if quoted:
        return _FACTORIES[name](quoted.group(1))
    raise ValueError(f"group: cannot parse the argument {arg!r} in {text!r}")
