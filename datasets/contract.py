"""The dataset contract: what a grepsnet-sciml dataset's attrs declare, parsed once.

Every dataset written by :mod:`~grepsnet_sciml.datasets.navier_stokes`,
:mod:`~grepsnet_sciml.datasets.charged_particles` or the :mod:`~grepsnet_sciml.datasets.loaders`
carries the attrs below; :meth:`DatasetSpec.to_attrs` writes them and
:meth:`DatasetSpec.from_dataset` reads them back (validated, errors naming the file and the
attribute). Training, evaluation, diagnostics and the models read only the resulting
:class:`DatasetSpec`. To use your own data, give it these attrs.

Attributes of the dataset
-------------------------
``kind`` (required)
    ``"field"``: variables ``(sample, time, x, y)`` on a square periodic grid, ``T1``
    variables with a trailing ``component`` axis ``(x, y)``. ``"particles"``:
    ``position``/``velocity`` ``(sample, time, particle, spatial)`` and ``charge``
    ``(sample, particle)``.
``group`` (required)
    The repr of the point group, as :func:`~grepsnet_sciml.groups.group_from_string` reads
    it: ``"D4()"``, ``"D2('diagonal')"``, ``"C1()"``, ``"O(3)"``.
``representations`` (required)
    JSON object ``variable -> kind`` of :class:`~grepsnet_sciml.reps.Reps` (fields: ``T0``,
    ``T0p``, ``T1``; particles also ``T2``). It may name optional variables the file does not
    hold (e.g. ``velocity``), but at least one that it does.
``symmetry`` (optional)
    JSON object. ``elements``: the declared symmetries, each ``{"name", "matrix", "shift"}``
    with ``matrix`` an element of ``group`` (for planar groups ``name`` is its name in
    ``group.element_names``) and ``shift`` in domain units (default zeros). A field element
    maps every variable ``f`` of kind ``K`` to ``(g . f)(x) = rho_K(g) f(g^{-1} (x - shift))``:
    :meth:`Reps.act <grepsnet_sciml.reps.Reps.act>` with ``grid=True``, then a cyclic shift
    by ``shift * N`` cells, so a ``T0p`` vorticity changes sign under reflections.
    Default: every element of a finite group with zero shift; none for a continuous group.
    ``translations``: whether every translation is a symmetry too (fields: every cyclic
    shift; particles: ``position -> position + t``); default false. ``exact``: whether the
    data obeys the symmetry to round-off; ``note``: why not, or how well; ``group``: if
    given, equal to ``attrs["group"]``; ``action``: a description, written by
    :meth:`DatasetSpec.to_attrs` and ignored on reading. Datasets written before the action
    went through ``Reps.act`` hold a per-element ``negate`` flag; it is checked against
    ``det g < 0`` (when a variable is ``T0p``) and otherwise ignored.
``config`` (optional)
    JSON object: the generator's full configuration (default ``{}``).
Anything else (``equation``, ``solver_version``, ``seed``, ``split``, ...)
    Kept verbatim in :attr:`DatasetSpec.metadata`. Keys starting with ``_`` are run-time
    notes (``_source``: the path the dataset was opened from) and are not part of it.

Examples
--------
The attrs of a 16 x 16 NS-Sym dataset (elements cut to two):

>>> import json
>>> attrs = {
...     "kind": "field",
...     "group": "D4()",
...     "representations": '{"vorticity": "T0p", "velocity": "T1"}',
...     "symmetry": json.dumps({"elements": [
...         {"name": "e", "matrix": [[1, 0], [0, 1]], "shift": [0.0, 0.0]},
...         {"name": "m", "matrix": [[1, 0], [0, -1]], "shift": [0.25, 0.25]}],
...         "translations": False, "exact": True}),
...     "config": '{"viscosity": 0.0001, "forcing": "symmetric"}',
...     "seed": 0,
... }
>>> spec = DatasetSpec.from_attrs(attrs, source="ns_sym.zarr")
>>> spec.kind, spec.group, spec.reps("vorticity", 10)
('field', D4(), Reps('10xT0p', D4()))
>>> [e.name for e in spec.elements], spec.config["viscosity"], spec.metadata["seed"]
(['e', 'm'], 0.0001, 0)
>>> DatasetSpec.from_attrs(spec.to_attrs()) == spec
True
>>> import torch
>>> w = torch.zeros(16, 16); w[1, 2] = 1.0
>>> moved = spec.act(spec.elements[1], "vorticity", w)   # -w(m^{-1}(x - s))
>>> moved.nonzero().tolist(), float(moved.sum())
([[5, 2]], -1.0)
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Any

import torch

from grepsnet_sciml.groups import FiniteGroup, Group, PlanarGroup, group_from_string
from grepsnet_sciml.reps import Reps

__all__ = [
    "KINDS",
    "FIELD_DIMS",
    "COMPONENT_DIM",
    "PARTICLE_DIM",
    "SPATIAL_DIM",
    "FIELD_REPRESENTATIONS",
    "FIELD_ACTION",
    "PARTICLE_ACTION",
    "SymmetryElement",
    "DatasetSpec",
    "group_elements",
    "source_of",
]

#: Values of ``attrs["kind"]``.
KINDS = ("field", "particles")
#: Leading dimensions of every field variable; ``T1`` variables add :data:`COMPONENT_DIM`.
FIELD_DIMS = ("sample", "time", "x", "y")
COMPONENT_DIM = "component"
#: Particle axis (permuted by the symmetry) and the axis of a particle vector.
PARTICLE_DIM = "particle"
SPATIAL_DIM = "spatial"
#: Representation kinds a field variable may have (the grid layout of each is fixed).
FIELD_REPRESENTATIONS = ("T0", "T0p", "T1")
#: ``symmetry["action"]`` written for each kind.
FIELD_ACTION = (
    "(g . f)(x) = rho(g) f(g^{-1} (x - shift)) for every variable f, rho its representation "
    "(T0: 1, T0p: det g, T1: g); shift in domain units; on an N x N grid Reps.act(g, f, "
    "grid=True) then a cyclic shift by shift * N cells; translations: every cyclic shift"
)
PARTICLE_ACTION = (
    "x_i -> g x_{pi(i)} + t for position, v_i -> g v_{pi(i)} for the other T1 variables, "
    "q_i -> q_{pi(i)} for T0 variables, g in the group, pi a permutation of the 'particle' "
    "axis, t a translation (when translations is true)"
)
_ACTIONS = {"field": FIELD_ACTION, "particles": PARTICLE_ACTION}
_CONTRACT = ("kind", "group", "representations", "symmetry", "config")


@dataclass(frozen=True)
class SymmetryElement:
    """One declared symmetry: a group matrix with the translation that accompanies it.

    Attributes
    ----------
    name : str
        E.g. ``"m"`` (for planar groups its name in ``group.element_names``).
    matrix : tuple of tuple of float
        ``g``, ``(d, d)``.
    shift : tuple of float
        ``s`` in domain units, length ``d``.

    Examples
    --------
    >>> import torch
    >>> from grepsnet_sciml.groups import D4
    >>> m = SymmetryElement("m", ((1, 0), (0, -1)), (0.25, 0.25))
    >>> x = Reps("T0p", D4()).randn(2, grid=(8, 8))
    >>> torch.equal(m.act(Reps("T0p", D4()), x),
    ...             -torch.roll(x[..., (-torch.arange(8)) % 8], (2, 2), (-2, -1)))
    True
    """

    name: str
    matrix: tuple[tuple[float, ...], ...]
    shift: tuple[float, ...]

    @property
    def g(self) -> torch.Tensor:
        """``matrix`` as a float64 tensor."""
        return torch.tensor(self.matrix, dtype=torch.float64)

    @property
    def det(self) -> int:
        """Sign of ``det g`` (+1 or -1)."""
        return int(torch.sign(torch.linalg.det(self.g)))

    def cells(self, n: int) -> tuple[int, ...]:
        """``shift * n`` as whole grid cells; ``ValueError`` when it is not."""
        cells = tuple(int(round(s * n)) for s in self.shift)
        if any(abs(s * n - c) > 1e-9 for s, c in zip(self.shift, cells)):
            divisor = math.lcm(*(Fraction(s).limit_denominator(1000).denominator
                                 for s in self.shift))
            raise ValueError(
                f"element {self.name!r}: shift {list(self.shift)} is not a whole number of "
                f"cells on the {n} x {n} grid; expected N divisible by {divisor}"
            )
        return cells

    def act(self, reps: Reps, x: torch.Tensor) -> torch.Tensor:
        """Apply the element to fields ``x`` of shape ``(batch, reps.dim, N, N)``.

        ``reps.act(g, x, grid=True)`` followed by the cyclic shift ``shift * N`` cells:
        ``(g . x)(i) = rho(g) x(g^{-1} (i - s N) mod N)``.
        """
        moved = reps.act(self.g, x, grid=True)
        return torch.roll(moved, self.cells(x.shape[-1]), dims=(-2, -1))

    def to_json(self) -> dict:
        """``{"name", "matrix", "shift"}`` (integer matrices written as integers)."""
        matrix = [[int(v) if float(v).is_integer() else float(v) for v in row]
                  for row in self.matrix]
        return {"name": self.name, "matrix": matrix, "shift": [float(s) for s in self.shift]}


def source_of(ds) -> str:
    """What errors call ``ds``: ``ds.encoding["source"]``, ``ds.attrs["_source"]`` or
    ``"dataset"``."""
    return str(ds.encoding.get("source") or ds.attrs.get("_source") or "dataset")


def group_elements(group: FiniteGroup, shifts: Mapping[str, Sequence[float]] | None = None
                   ) -> tuple[SymmetryElement, ...]:
    """Every element of a finite group, with ``shifts[name]`` (default zeros).

    Names are ``group.element_names`` for planar groups, ``"g0", "g1", ...`` otherwise.
    """
    shifts = shifts or {}
    names = getattr(group, "element_names", [f"g{k}" for k in range(group.order)])
    return tuple(
        SymmetryElement(name, _matrix_tuple(g), tuple(float(s) for s in
                                                      shifts.get(name, (0.0,) * group.d)))
        for name, g in zip(names, group.elements())
    )


def _matrix_tuple(g) -> tuple[tuple[float, ...], ...]:
    rows = torch.as_tensor(g, dtype=torch.float64).tolist()
    return tuple(tuple(float(round(v)) if abs(v - round(v)) < 1e-12 else v for v in row)
                 for row in rows)


def _plain(value):
    """JSON fallback for the numpy scalars and arrays that attrs read from files hold."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{value!r} is not JSON-serialisable")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's declared contract: kind, group, representations, symmetry and config.

    Build it with :meth:`from_dataset` (or :meth:`from_attrs`) and write it with
    :meth:`to_attrs`; the constructor validates the values (see the module docstring for
    the attrs).

    Attributes
    ----------
    kind : {"field", "particles"}
    group : Group
    representations : Mapping[str, str]
        Variable -> representation kind (read-only); :meth:`reps` gives the :class:`Reps`.
    elements : tuple of SymmetryElement
        The declared symmetry elements (empty for continuous groups).
    translations : bool
        Every translation is a symmetry too.
    exact : bool
        The data obeys the symmetry to round-off.
    note : str
        How well, or why not.
    config : Mapping[str, Any]
        The generator config (read-only, JSON values).
    metadata : Mapping[str, Any]
        The other attrs (read-only), written back verbatim.
    source : str
        Names the dataset in errors (a path, or ``"dataset"``); not part of equality.

    Raises
    ------
    ValueError
        Naming ``source``, the attribute, the value and what is expected.
    """

    kind: str
    group: Group
    representations: Mapping[str, str]
    elements: tuple[SymmetryElement, ...] = ()
    translations: bool = False
    exact: bool = False
    note: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source: str = field(default="dataset", compare=False)

    def __post_init__(self):
        src = self.source
        _check_kind_and_group(self.kind, self.group, src)
        if not isinstance(self.representations, Mapping) or not self.representations:
            raise ValueError(
                f"{src}: attrs['representations'] = {self.representations!r}; expected a "
                "non-empty JSON object mapping variables to kinds such as "
                "'{\"vorticity\": \"T0p\"}'"
            )
        for name, rep in self.representations.items():
            try:
                Reps(rep, self.group)
            except ValueError as err:
                raise ValueError(f"{src}: attrs['representations'][{name!r}] = {rep!r}: "
                                 f"{err}") from err
            if self.kind == "field" and rep not in FIELD_REPRESENTATIONS:
                raise ValueError(
                    f"{src}: attrs['representations'][{name!r}] = {rep!r}; a field variable "
                    f"is one of {FIELD_REPRESENTATIONS}"
                )
        names = [e.name for e in self.elements]
        if len(set(names)) != len(names):
            raise ValueError(f"{src}: attrs['symmetry'] elements {names}: expected distinct "
                             "names")
        for e in self.elements:
            _check_element(e, self.group, src)
        object.__setattr__(self, "representations",
                           MappingProxyType({str(k): str(v)
                                             for k, v in self.representations.items()}))
        object.__setattr__(self, "elements", tuple(self.elements))
        object.__setattr__(self, "translations", bool(self.translations))
        object.__setattr__(self, "exact", bool(self.exact))
        for name in ("config", "metadata"):
            value = getattr(self, name)
            try:
                json.dumps(dict(value), default=_plain)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{src}: {name}: expected a JSON-ready mapping, got "
                                 f"{value!r}") from err
            object.__setattr__(self, name, MappingProxyType(dict(value)))

    def __hash__(self) -> int:
        return hash((self.kind, self.group, tuple(self.representations.items()),
                     self.elements, self.translations, self.exact, self.note,
                     json.dumps(dict(self.config), default=_plain),
                     json.dumps(dict(self.metadata), default=_plain)))

    # ----- reading ---------------------------------------------------------------------
    @classmethod
    def from_attrs(cls, attrs: Mapping, source: str = "dataset") -> DatasetSpec:
        """Parse and validate the attrs of the contract (see the module docstring).

        Parameters
        ----------
        attrs : mapping
            A dataset's attrs.
        source : str
            Names the dataset in errors.

        Raises
        ------
        ValueError
            A required attribute is missing, or one is malformed, naming ``source``, the
            attribute, the value and what is expected.
        """
        for key, want in (("kind", f"one of {KINDS}"),
                          ("group", "the repr of the point group such as 'D4()' or 'O(3)'"),
                          ("representations", "JSON such as '{\"vorticity\": \"T0p\"}'")):
            if key not in attrs:
                raise ValueError(f"{source}: missing {key!r} attribute; expected {want}")
        try:
            group = group_from_string(str(attrs["group"]))
        except ValueError as err:
            raise ValueError(f"{source}: attrs['group'] = {attrs['group']!r}: {err}") from err
        representations = _json_object(attrs, "representations", source, required=True)
        symmetry = _json_object(attrs, "symmetry", source)
        kind = attrs["kind"]
        _check_kind_and_group(kind, group, source)
        elements = _parse_elements(symmetry, group, representations, source)
        metadata = {k: v for k, v in attrs.items()
                    if k not in _CONTRACT and not str(k).startswith("_")}
        return cls(
            kind=kind, group=group, representations=representations, elements=elements,
            translations=_translations(symmetry.get("translations", False), source),
            exact=_flag(symmetry, "exact", source), note=str(symmetry.get("note", "")),
            config=_json_object(attrs, "config", source), metadata=metadata, source=source,
        )

    @classmethod
    def from_dataset(cls, ds) -> DatasetSpec:
        """:meth:`from_attrs` of ``ds.attrs``, then the checks that need the data.

        ``representations`` must name at least one variable of ``ds``, and for field data
        every element's shift must be whole cells of the grid.

        Parameters
        ----------
        ds : xarray.Dataset
            Errors name ``ds.encoding["source"]`` or ``ds.attrs["_source"]`` when set.
        """
        source = source_of(ds)
        spec = cls.from_attrs(ds.attrs, source)
        if not any(name in ds.variables for name in spec.representations):
            raise ValueError(
                f"{source}: attrs['representations'] names {sorted(spec.representations)}, "
                f"no variable of the dataset (variables: {sorted(map(str, ds.data_vars))})"
            )
        if spec.kind == "field" and "x" in ds.sizes:
            for e in spec.elements:
                try:
                    e.cells(ds.sizes["x"])
                except ValueError as err:
                    raise ValueError(f"{source}: attrs['symmetry']: {err}") from err
        return spec

    # ----- writing ---------------------------------------------------------------------
    def to_attrs(self) -> dict:
        """The attrs of the contract: JSON strings for the structured entries, plus metadata."""
        symmetry = {
            "group": repr(self.group),
            "elements": [e.to_json() for e in self.elements],
            "translations": self.translations,
            "exact": self.exact,
            "note": self.note,
            "action": _ACTIONS[self.kind],
        }
        return {
            **dict(self.metadata),
            "kind": self.kind,
            "group": repr(self.group),
            "representations": json.dumps(dict(self.representations)),
            "symmetry": json.dumps(symmetry),
            "config": json.dumps(dict(self.config), default=_plain),
        }

    def replace(self, **changes) -> DatasetSpec:
        """A copy with fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    # ----- using -----------------------------------------------------------------------
    def reps(self, variable: str, mult: int = 1) -> Reps:
        """``Reps(f"{mult}x{kind}", group)`` of a declared variable."""
        if variable not in self.representations:
            raise ValueError(
                f"{self.source}: variable {variable!r} has no entry in "
                f"attrs['representations'] (declared: {sorted(self.representations)}); "
                "expected its kind such as 'T0p' or 'T1'"
            )
        return Reps([(mult, self.representations[variable])], self.group)

    def require(self, ds, kind: str, variables: Sequence[str]) -> None:
        """Raise ``ValueError`` unless ``ds`` (described by this spec) is ``kind`` data holding
        ``variables``, each declared and, for fields, with the dims of its kind."""
        if self.kind != kind:
            raise ValueError(
                f"{self.source}: holds {self.kind!r} data (attrs['kind']), expected {kind!r}; "
                f"variables present: {sorted(map(str, ds.data_vars))}"
            )
        for name in variables:
            if name not in ds.data_vars:
                raise ValueError(
                    f"{self.source}: variable {name!r} is missing; expected one of the {kind} "
                    f"variables, found {sorted(map(str, ds.data_vars))}"
                )
            self.reps(name)
            if kind == "field":
                want = self.dims(name)
                if tuple(ds[name].dims) != want:
                    raise ValueError(f"{self.source}: variable {name!r} has dims "
                                     f"{ds[name].dims}, expected {want}")

    def dims(self, variable: str) -> tuple[str, ...]:
        """Dims of a field variable: :data:`FIELD_DIMS`, plus ``component`` for ``T1``."""
        vector = self.reps(variable).count("T1") > 0
        return FIELD_DIMS + ((COMPONENT_DIM,) if vector else ())

    def act(self, element: SymmetryElement, variable: str, values: torch.Tensor
            ) -> torch.Tensor:
        """Apply ``element`` to a field variable in the dataset's layout.

        Parameters
        ----------
        element : SymmetryElement
        variable : str
            A declared field variable; its representation decides the action.
        values : torch.Tensor
            ``(..., N, N)`` for ``T0``/``T0p``, ``(..., N, N, 2)`` for ``T1`` (the trailing
            dims of :meth:`dims`).

        Returns
        -------
        torch.Tensor
            ``rho(g) f(g^{-1} (x - shift))``, same shape.
        """
        reps = self.reps(variable)
        vector = reps.count("T1") > 0
        x = values.movedim(-1, -3) if vector else values[..., None, :, :]
        lead = x.shape[:-3]
        moved = element.act(reps, x.reshape(-1, *x.shape[-3:])).reshape(*lead, *x.shape[-3:])
        return moved.movedim(-3, -1) if vector else moved[..., 0, :, :]


def _check_kind_and_group(kind, group, source: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"{source}: attrs['kind'] = {kind!r}; expected one of {KINDS}")
    if not isinstance(group, Group):
        raise ValueError(f"{source}: group: expected a Group such as D4() or O(3), got "
                         f"{group!r}")
    if kind == "field" and not isinstance(group, PlanarGroup):
        raise ValueError(f"{source}: attrs['group'] = {group!r}; field data needs a planar "
                         "group such as 'D4()' or 'C1()'")


def _json_object(attrs: Mapping, key: str, source: str, required: bool = False) -> dict:
    raw = attrs.get(key)
    if raw is None and not required:
        return {}
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}: attrs[{key!r}] = {raw!r} is not JSON ({err.msg}); "
                         "expected a JSON object") from err
    if not isinstance(value, Mapping):
        raise ValueError(f"{source}: attrs[{key!r}] = {raw!r}; expected a JSON object")
    return dict(value)


def _flag(symmetry: dict, key: str, source: str) -> bool:
    value = symmetry.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{source}: attrs['symmetry'][{key!r}] = {value!r}; expected true "
                         "or false")
    return value


def _translations(value, source: str) -> bool:
    legacy = {"all": True, "none": False}  # written before translations became a flag
    if isinstance(value, bool):
        return value
    if value in legacy:
        return legacy[value]
    raise ValueError(f"{source}: attrs['symmetry']['translations'] = {value!r}; expected true "
                     "or false")


def _parse_elements(symmetry: dict, group: Group, representations: dict, source: str
                    ) -> tuple[SymmetryElement, ...]:
    declared = symmetry.get("group")
    # charged-particle data written before this module declared "E(3) x S_n" with the
    # point group under "point_group"
    if declared is not None and declared != repr(group) and (
            symmetry.get("point_group") != repr(group)):
        raise ValueError(f"{source}: attrs['symmetry']['group'] = {declared!r} disagrees with "
                         f"attrs['group'] = {repr(group)!r}; expected the same group")
    raw = symmetry.get("elements")
    if not raw:
        return group_elements(group) if isinstance(group, FiniteGroup) else ()
    if not isinstance(raw, list):
        raise ValueError(f"{source}: attrs['symmetry']['elements'] = {raw!r}; expected a list "
                         "of {\"name\", \"matrix\", \"shift\"} objects")
    pseudo = "T0p" in representations.values()
    elements = []
    for k, item in enumerate(raw):
        where = f"{source}: attrs['symmetry']['elements'][{k}]"
        if not isinstance(item, Mapping) or "matrix" not in item or "name" not in item:
            raise ValueError(f"{where} = {item!r}; expected an object with 'name', 'matrix' "
                             "and optionally 'shift'")
        try:
            g = torch.tensor(item["matrix"], dtype=torch.float64)
            shift = tuple(float(s) for s in item.get("shift", (0.0,) * group.d))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: matrix {item['matrix']!r} or shift "
                             f"{item.get('shift')!r} is not numeric") from err
        if g.shape != (group.d, group.d) or len(shift) != group.d:
            raise ValueError(f"{where}: matrix {item['matrix']!r} and shift {list(shift)}; "
                             f"expected a ({group.d}, {group.d}) matrix and {group.d} shifts "
                             f"for {group!r}")
        element = SymmetryElement(str(item["name"]), _matrix_tuple(g), shift)
        if "negate" in item and pseudo and bool(item["negate"]) != (element.det < 0):
            raise ValueError(
                f"{where}: 'negate' = {item['negate']!r} for element {element.name!r} with "
                f"det g = {element.det}, but the T0p variables change sign exactly when "
                f"det g < 0; expected 'negate' = {element.det < 0} (or no 'negate')"
            )
        elements.append(element)
    return tuple(elements)


def _check_element(e: SymmetryElement, group: Group, source: str) -> None:
    where = f"{source}: attrs['symmetry'] element {e.name!r}"
    g = e.g
    if g.shape != (group.d, group.d) or len(e.shift) != group.d:
        raise ValueError(f"{where}: matrix {list(map(list, e.matrix))}, shift "
                         f"{list(e.shift)}; expected a ({group.d}, {group.d}) matrix and "
                         f"{group.d} shifts for {group!r}")
    try:
        group.check_element(g, "matrix")
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err
    names = getattr(group, "element_names", None)
    if names is not None and names[group.index(g)] != e.name:
        raise ValueError(f"{where}: the matrix {list(map(list, e.matrix))} is "
                         f"{names[group.index(g)]!r} in {group!r}; expected the name "
                         f"{names[group.index(g)]!r}")
