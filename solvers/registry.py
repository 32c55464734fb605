"""One registry of surrogate models: a name, a typed config, a builder and the data it takes.

Every model is a :class:`ModelEntry`: its lower-case name (what ``[model] name`` and
``--model.name`` take), a display name (the benchmark's, accepted as an alias), a frozen
dataclass config whose fields mirror the constructor's arguments with the constructor's
defaults, a builder ``builder(config, rep_in, rep_out) -> nn.Module``, the data kind
(``"field"`` or ``"particles"``) and a one-line description. Constructor arguments that
the data decides (``rep_in``/``rep_out``, channel counts, the group, ``velocity_output``)
are not config fields.

=================  =================  =====================  ==========================
name               display            config                 model
=================  =================  =====================  ==========================
fno                FNO                :class:`FNOConfig`     FNOBaseline
fno-aug            FNO+aug            :class:`FNOAugConfig`  FNOBaseline, C4-augmented
grepsfno           GRepsFNO           GRepsFNOConfig         GRepsFNO2d (data's group)
grepsfno-c4        GRepsFNO-C4        GRepsFNOC4Config       GRepsFNO2d over C4
gfno-p4            GFNO-p4            GFNOP4Config           GFNO2d p4, scalar
gfno-p4m           GFNO-p4m           GFNOP4mConfig          GFNO2d p4m, scalar
gfno-p4m-pseudo    GFNO-p4m-pseudo    GFNOP4mPseudoConfig    GFNO2d p4m, pseudo-scalar
mpnn               MPNN               MPNNConfig             ParticleMPNN
grepsnbody         GRepsNBody         GRepsNBodyConfig       GRepsNBody
egnn               EGNN               EGNNConfig             EGNN
=================  =================  =====================  ==========================

Field names have one meaning across all configs:

- ``modes``: the spectral window ``|kx|, |ky| <= modes - 1`` (closed under the point
  group); every field model, and any registered field model with a ``modes`` field, must
  keep ``modes - 1 < N / 2`` (:func:`~.experiment.check_modes`).
- ``width``: the multiplicity of the hidden field type of a grid model. For ``fno`` it
  counts real channels; for the regular-representation models (``grepsfno*`` with
  ``channels = "regular"``, ``gfno-*``) it counts copies of ``R``, i.e. ``|G| width`` real
  channels.
- ``hidden``: the invariant (scalar) width of a particle model. ``GRepsFNO2d``'s constructor
  argument ``hidden`` (an explicit hidden type) is the config field ``hidden_type``.
- ``n_layers``: Fourier blocks (grid models) or message-passing rounds (particles).
- ``regular_mixing``: how pointwise layers mix regular channels, ``"mean"`` or ``"conv"``
  (``GRepsFNO2d(regular_mixing=...)``, passed on as
  ``EquivariantLinear(domain="grid", regular=...)`` and to every ``FourierBlock2d``). The
  spectral weight sharing of regular channels (``SpectralConv2d(regular="shared" |
  "group")``) is fixed by the model, not a config field: ``"shared"`` for ``grepsfno*``,
  ``"group"`` for ``gfno-*`` (whose pointwise mixing is fixed to ``"conv"``).

Examples
--------
>>> entry = get_model("GFNO-p4")
>>> entry.name, entry.kind, entry.config()
('gfno-p4', 'field', GFNOP4Config(width=10, modes=12, n_layers=4))
>>> model_config("grepsnbody", {"hidden": 32}).hidden
32
>>> model_config("gfno-p4", {"hidden": 3})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: model.hidden: unknown setting of model 'gfno-p4'; expected one of ['modes', ...]
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from grepsnet_sciml.groups import C4, FiniteGroup, PlanarGroup, group_from_string
from grepsnet_sciml.models import EGNN, GFNO2d, GRepsFNO2d, GRepsNBody
from grepsnet_sciml.models.baselines import FNOBaseline, ParticleMPNN
from grepsnet_sciml.reps import Reps

from .forcing import ForcingInput

__all__ = ["ModelEntry", "REGISTRY", "AUTO_MODELS", "FIELD_MEANINGS", "AutoModelConfig",
           "register_model", "check_value", "parse_value",
           "get_model", "model_name", "model_config", "resolve_auto", "build_core",
           "restrict_reps", "FNOConfig", "FNOAugConfig", "GRepsFNOConfig", "GRepsFNOC4Config",
           "GFNOConfig", "GFNOP4Config", "GFNOP4mConfig", "GFNOP4mPseudoConfig", "MPNNConfig",
           "GRepsNBodyConfig", "EGNNConfig"]

KINDS = ("field", "particles")

FIELD_MEANINGS = {
    "modes": "spectral window |kx|, |ky| <= modes - 1 (below N/2)",
    "width": "multiplicity of a grid model's hidden type: real channels for fno, copies of "
             "the regular representation R (|G| width real channels) for grepsfno* and gfno-*",
    "n_layers": "Fourier blocks (grid models) or message-passing rounds (particle models)",
    "hidden": "invariant (scalar) width of a particle model's node features and messages",
}
"""The one meaning of each field name that several models share (see the module docs)."""

AUTO_MODELS = {"field": "fno", "particles": "mpnn"}
"""What ``model.name = "auto"`` builds for each data kind."""


# ----- typed values --------------------------------------------------------------------------
def _optional(annotation):
    """``(inner, True)`` for ``X | None``, else ``(annotation, False)``."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return inner, True
    return annotation, False


def check_value(value, annotation, key: str):
    """``value`` as a setting of type ``annotation`` (int -> float widened); else ValueError."""
    annotation, optional = _optional(annotation)
    if value is None and optional:
        return None
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typing.get_origin(annotation) in (list, typing.List):  # noqa: UP006
        (inner,) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected a list of {inner.__name__}, got {value!r}")
        return [check_value(v, inner, key) for v in value]
    if isinstance(annotation, type) and not (
            isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))):
        none = " or nothing" if optional else ""
        raise ValueError(f"{key}: expected {annotation.__name__}{none}, got {value!r}")
    return value


def parse_value(text: str, annotation, key: str):
    """A command-line string as a setting of type ``annotation``.

    Lists are comma-separated; booleans accept true/false/1/0/yes/no; ``X | None`` settings
    take ``none`` for nothing.
    """
    annotation, optional = _optional(annotation)
    if optional and text.lower() == "none":
        return None
    if typing.get_origin(annotation) in (list, typing.List):  # noqa: UP006
        (inner,) = typing.get_args(annotation)
        return [parse_value(t.strip(), inner, key) for t in text.split(",") if t.strip()]
    if annotation is bool:
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(f"{key}: expected true or false, got {text!r}")
    if isinstance(annotation, types.GenericAlias):
        raise ValueError(f"{key}: cannot parse {text!r}")
    try:
        return annotation(text)
    except ValueError as err:
        raise ValueError(f"{key}: expected {annotation.__name__}, got {text!r}") from err


class _Validated:
    """Checks every field's type, that numbers are positive (``>= 0`` for those named in
    ``_non_negative``) and strings among ``_choices``."""

    _choices: ClassVar[dict[str, tuple[str, ...]]] = {}
    _non_negative: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            key = f"model.{f.name}"
            value = check_value(getattr(self, f.name), hints[f.name], key)
            object.__setattr__(self, f.name, value)
            if f.name in self._choices and value not in self._choices[f.name]:
                raise ValueError(f"{key}: {type(self).__name__} expects one of "
                                 f"{list(self._choices[f.name])}, got {value!r}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if f.name in self._non_negative and value < 0:
                    raise ValueError(f"{key}: {type(self).__name__} expects a number >= 0, "
                                     f"got {value!r}")
                if f.name not in self._non_negative and value <= 0:
                    raise ValueError(f"{key}: {type(self).__name__} expects a positive "
                                     f"number, got {value!r}")


# ----- configs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FNOConfig(_Validated):
    """:class:`~grepsnet_sciml.models.baselines.FNOBaseline` (Li et al.'s FNO2d, not equivariant).

    ``v_0 = P([x, grid])``, ``v_{l+1} = GELU(K_l v_l + W_l v_l)`` (spectral convolution over
    the window plus a 1x1 skip), output ``Q(v_L)``; ``(batch, rep_in.dim, X, Y) -> (batch,
    rep_out.dim, X, Y)``.

    Attributes
    ----------
    modes : int
        Window ``|kx|, |ky| <= modes - 1``.
    width : int
        Hidden channels (real channels, no group structure).
    n_layers : int
        Fourier layers.
    projection : int
        Hidden channels of the output projection.
    """

    modes: int = 12
    width: int = 20
    n_layers: int = 4
    projection: int = 128


@dataclass(frozen=True)
class FNOAugConfig(FNOConfig):
    """``fno-aug``: :class:`FNOConfig`'s FNO trained on C4-augmented data ("FNO + aug").

    Each training item ``(x, y)`` is replaced by ``(g . x, g . y)`` for a random ``g`` in C4,
    ``(g . f)(i) = rho(g) f(g^{-1} i)`` (see :class:`~.data.GroupAugmented`); the
    entry fixes ``augment = "C4"``, so ``data.augment`` may be left empty.

    Attributes
    ----------
    modes, width, n_layers, projection : int
        As :class:`FNOConfig`.
    """


@dataclass(frozen=True)
class GRepsFNOConfig(_Validated):
    """:class:`~grepsnet_sciml.models.GRepsFNO2d` over the data's group.

    Lift ``EquivariantLinear(rep_in -> hidden, domain="grid")``, ``n_layers`` equivariant Fourier
    blocks (group spectral kernels and pointwise group convolutions by default), projection
    ``hidden -> mid -> rep_out``; equivariant, ``f(g . x) = g . f(x)`` for every ``g`` of the
    data's group, ``(batch, rep_in.dim, N, N) -> (batch, rep_out.dim, N, N)``.

    Attributes
    ----------
    width : int
        Copies of each hidden kind: with ``channels = "regular"`` the hidden type is
        ``width x R`` (``|G| width`` real channels).
    modes : int
        Window ``|kx|, |ky| <= modes - 1``.
    n_layers : int
        Fourier blocks.
    channels : str
        Hidden kinds: ``"regular"`` (``R``), ``"tensor"`` (``T0 + T0p + T1 + T2``) or
        ``"mixed"`` (``T0 + T0p + T1 + R``), each ``width`` times.
    hidden_type : str or None
        An explicit hidden type such as ``"4xT0 + 2xR"`` (the constructor's ``hidden``);
        overrides ``width`` and ``channels``.
    regular_mixing : str
        Pointwise mixing of regular channels, ``"mean"`` or ``"conv"``.
    spectral_mixing : str
        Spectral kernels of regular channels: ``"shared"`` by the copies or G-FNO's
        ``"group"`` convolution.
    projection_ratio : int
        Width multiplier of the projection's hidden layer.
    radial_embedding : bool
        Append the invariant radial channel (breaks translation equivariance).
    pointwise : str
        Per-block pointwise network, ``"linear"`` or ``"grepsnet"``.
    output_dealias : bool
        Filter the output to the NS solver's 2/3-rule band (``DealiasFilter2d``).
    mlp_width : int or None
        Copies of each hidden kind in the hidden layer of the ``"linear"`` pointwise network
        (None: from ``mlp_expansion``).
    mlp_expansion : float
        That hidden layer's width relative to ``width`` (``round(mlp_expansion width)``
        copies; 2/3: ``4 x R`` at width 6). Checkpoints written before this setting existed
        are read with 1.0, the width they were trained at.
    forcing_channel : str
        Feed the data's named forcing as one more input channel (:mod:`~.forcing`; exactly
        invariant under the declared symmetry, fixed in space): ``"auto"`` when the data
        name one, ``"on"`` (an error without one) or ``"off"``.
    energy_budget : bool
        Rescale every predicted vorticity so that the step obeys the vorticity equation's
        kinetic-energy budget, forcing work minus viscous dissipation
        (:class:`~grepsnet_sciml.models.vorticity_budget.EnergyBudget`, applied in the data's
        units by :class:`~.normalize.NormalizedModel`); needs vorticity-only data whose
        generator config gives the viscosity and the frame spacing.
    """

    width: int = 6
    modes: int = 12
    n_layers: int = 3
    channels: str = "regular"
    hidden_type: str | None = None
    regular_mixing: str = "conv"
    spectral_mixing: str = "group"
    projection_ratio: int = 2
    radial_embedding: bool = False
    pointwise: str = "linear"
    mlp_width: int | None = None
    mlp_expansion: float = 2 / 3
    output_dealias: bool = False
    forcing_channel: str = "auto"
    energy_budget: bool = False

    _choices: ClassVar[dict[str, tuple[str, ...]]] = {
        "channels": ("regular", "tensor", "mixed"), "regular_mixing": ("mean", "conv"),
        "spectral_mixing": ("shared", "group"), "forcing_channel": ("auto", "on", "off"),
        "pointwise": ("linear", "grepsnet")}


@dataclass(frozen=True)
class GRepsFNOC4Config(GRepsFNOConfig):
    """``grepsfno-c4``: :class:`GRepsFNOConfig`'s model over C4 whatever the data's group.

    The data's types are read over C4 (``10xT0p`` in, ``T0p`` out for vorticity), which must
    be a subgroup of the data's group; rotations only, reflections are not built in.

    Attributes
    ----------
    width, modes, n_layers, channels, hidden_type, regular_mixing, spectral_mixing, projection_ratio, radial_embedding, pointwise, mlp_width, mlp_expansion, output_dealias, forcing_channel, energy_budget
        As :class:`GRepsFNOConfig` (``width x R`` is ``4 width`` real channels).
    """  # noqa: E501


@dataclass(frozen=True)
class GFNOConfig(_Validated):
    """Fields of the G-FNO entries (:class:`~grepsnet_sciml.models.GFNO2d`); not registered.

    Lift to ``width x R``, ``n_layers`` group Fourier blocks (spectral weights per group
    element: ``"group"``; pointwise mixing ``"conv"``), projection ``4 width x R -> out``.
    Input and output are frames of one field, ``(batch, rep_in.dim, N, N) -> (batch,
    rep_out.dim, N, N)``; group and the field's kind are fixed by the entry.

    Attributes
    ----------
    width : int
        Copies of the regular representation ``R`` per layer (``|G| width`` real channels).
    modes : int
        Window ``|kx|, |ky| <= modes - 1``.
    n_layers : int
        Fourier layers.
    """

    width: int = 10
    modes: int = 12
    n_layers: int = 4


@dataclass(frozen=True)
class GFNOP4Config(GFNOConfig):
    """``gfno-p4``: G-FNO over p4 (C4 rotations), frames as scalars (``nxT0`` over C4).

    Attributes
    ----------
    width, modes, n_layers : int
        As :class:`GFNOConfig`.
    """


@dataclass(frozen=True)
class GFNOP4mConfig(GFNOConfig):
    """``gfno-p4m``: G-FNO over p4m (D4), frames as scalars, as in the G-FNO paper.

    On vorticity (a pseudo-scalar) this builds in the wrong reflection action, ``w(g^{-1} x)``
    instead of ``det(g) w(g^{-1} x)``: the benchmark's baseline.

    Attributes
    ----------
    width, modes, n_layers : int
        As :class:`GFNOConfig`.
    """


@dataclass(frozen=True)
class GFNOP4mPseudoConfig(GFNOConfig):
    """``gfno-p4m-pseudo``: G-FNO over p4m (D4) with frames as pseudo-scalars (``nxT0p``).

    Attributes
    ----------
    width, modes, n_layers : int
        As :class:`GFNOConfig`.
    """


@dataclass(frozen=True)
class MPNNConfig(_Validated):
    """:class:`~grepsnet_sciml.models.baselines.ParticleMPNN` (permutation-equivariant only).

    ``h_i = phi_h([x_i, v_i, q_i])``, ``h_i <- h_i + phi_u([h_i, sum_j phi_m([h_i, h_j,
    q_i q_j, x_i - x_j])])``, ``x_i' = x_i + phi_x(h_i)``; positions ``(batch, n, 3)``.

    Attributes
    ----------
    hidden : int
        Width of every MLP.
    n_layers : int
        Message-passing rounds.
    """

    hidden: int = 64
    n_layers: int = 4


@dataclass(frozen=True)
class GRepsNBodyConfig(_Validated):
    """:class:`~grepsnet_sciml.models.GRepsNBody`, E(3) x S_n-equivariant.

    ``f(g x + t, g v, q) = g f(x, v, q) + t`` for ``g`` in O(3); positions ``(batch, n, 3)``.

    Attributes
    ----------
    hidden : int
        Invariant (T0) channels per node and message.
    vectors : int
        Vector (T1) channels per node.
    tensors : int
        Order-2 (T2) channels of the per-node structure tensor.
    n_layers : int
        Message-passing layers.
    graph : str
        Neighbour graph, ``"full"``, ``"knn"`` or ``"radius"``.
    k : int or None
        Neighbours of the ``"knn"`` graph.
    radius : float or None
        Cut-off of the ``"radius"`` graph.
    charge_edges : bool
        Give edges the charge product ``q_i q_j``.
    n_particles : int or None
        If given, inputs with another particle count are rejected.
    softening : float or None
        If given, edges also see ``1 / (|r_ij| + softening)`` and its square.
    conserve_momentum : bool or None
        Remove the mean predicted velocity change: total momentum conserved to round-off
        (needs velocity outputs, ``data.predict_velocity``). None (default): on exactly
        when the model predicts velocities.
    conserve_energy : bool
        Rescale the predicted velocities about their mean so that the predicted state keeps
        the input's Coulomb energy (needs velocity outputs); exact to round-off whenever the
        predicted positions leave energy for the relative motion.
    energy_softening : float
        Softening length of that energy: the data's ``softening`` (``attrs["config"]``; 0.1
        for the ``clean`` preset, 0 for ``egnn``).
    radial : str
        Distance feature of the edges: ``"squared"`` (``|r_ij|^2``, EGNN's) or ``"inverse"``
        (the bounded ``1 / (1 + |r_ij|)``).
    """

    hidden: int = 64
    vectors: int = 8
    tensors: int = 4
    n_layers: int = 2
    graph: str = "full"
    k: int | None = None
    radius: float | None = None
    charge_edges: bool = True
    n_particles: int | None = None
    softening: float | None = None
    conserve_momentum: bool | None = None
    conserve_energy: bool = False
    energy_softening: float = 0.0
    radial: str = "squared"

    _choices: ClassVar[dict[str, tuple[str, ...]]] = {"graph": ("full", "knn", "radius"),
                                                      "radial": ("squared", "inverse")}
    _non_negative: ClassVar[tuple[str, ...]] = ("energy_softening",)


@dataclass(frozen=True)
class EGNNConfig(_Validated):
    """:class:`~grepsnet_sciml.models.EGNN` (Satorras et al.), E(3) x S_n-equivariant.

    ``f(g x + t, g v, q) = g f(x, v, q) + t`` for ``g`` in O(3); positions ``(batch, n, 3)``.

    Attributes
    ----------
    hidden : int
        Width of node features and messages.
    n_layers : int
        ``E_GCL_vel`` layers.
    graph : str
        Neighbour graph, ``"full"``, ``"knn"`` or ``"radius"``.
    k : int or None
        Neighbours of the ``"knn"`` graph.
    radius : float or None
        Cut-off of the ``"radius"`` graph.
    n_particles : int or None
        If given, inputs with another particle count are rejected.
    """

    hidden: int = 64
    n_layers: int = 4
    graph: str = "full"
    k: int | None = None
    radius: float | None = None
    n_particles: int | None = None

    _choices: ClassVar[dict[str, tuple[str, ...]]] = {"graph": ("full", "knn", "radius")}


@dataclass(frozen=True)
class AutoModelConfig:
    """``model.name = "auto"``: :data:`AUTO_MODELS` (``fno`` for fields, ``mpnn`` for particles).

    The data kind is only known when the data is opened, so the settings are kept as given
    and become the chosen model's config in :func:`resolve_auto`; each must be a field of
    ``fno`` or ``mpnn`` (and valid there) already when the config is read.

    Attributes
    ----------
    settings : tuple of (str, value)
        The ``[model]`` settings besides ``name``, sorted by key.
    """

    settings: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        values = dict(self.settings)
        object.__setattr__(self, "settings", tuple(sorted(values.items())))
        candidates = [REGISTRY[n] for n in AUTO_MODELS.values()]
        known = sorted({f.name for e in candidates for f in dataclasses.fields(e.config)})
        for key in values:
            if key not in known:
                raise ValueError(f"model.{key}: unknown setting of model 'auto' (fno for "
                                 f"fields, mpnn for particles); expected one of {known}")
        for entry in candidates:  # every setting valid for each model that has it
            names = {f.name for f in dataclasses.fields(entry.config)}
            entry.config(**{k: v for k, v in values.items() if k in names})


# ----- the registry ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Attributes
    ----------
    name : str
        Lower-case name (``[model] name``).
    config : type
        Frozen dataclass of the model's settings; ``config()`` gives the defaults.
    builder : callable
        ``builder(config, rep_in, rep_out) -> nn.Module``; ``rep_in``/``rep_out`` are the
        data's types (one :class:`~grepsnet_sciml.reps.Reps` for fields, ``(T1, T1, T0)``
        and ``T1`` or ``(T1, T1)`` for particles).
    kind : str
        ``"field"`` or ``"particles"``.
    description : str
        One line.
    display : str
        The benchmark's name, accepted as an alias.
    augment : str
        Group (``"C4"``) whose random element transforms every training item, or ``""``.
    """

    name: str
    config: type
    builder: Callable[..., nn.Module]
    kind: str
    description: str
    display: str
    augment: str = ""


REGISTRY: dict[str, ModelEntry] = {}
"""Registered models by lower-case name; :func:`get_model` also takes display names."""


def register_model(name: str, config_cls: type, builder: Callable[..., nn.Module], kind: str,
                   description: str = "", display: str | None = None,
                   augment: str = "") -> ModelEntry:
    """Make a model available as ``[model] name = name`` with the fields of ``config_cls``.

    Parameters
    ----------
    name : str
        Lower-case name, not ``"auto"``; registering a name again replaces its entry.
    config_cls : type
        Frozen dataclass whose fields mirror the constructor (typed, with defaults); one
        class per entry, as the config's type names its model in checkpoints. A ``modes``
        field must mean the window ``|k| <= modes - 1``.
    builder : callable
        ``builder(config, rep_in, rep_out) -> nn.Module``.
    kind : {"field", "particles"}
        The data the model takes.
    description : str
        One line for the CLI help.
    display : str, optional
        Alias (default ``name``).
    augment : str
        Group whose random element transforms every training item (``""``: none).

    Returns
    -------
    ModelEntry
    """
    if not isinstance(name, str) or not name or name != name.lower() or name == "auto":
        raise ValueError(f"name: expected a non-empty lower-case name other than 'auto', "
                         f"got {name!r}")
    if not (dataclasses.is_dataclass(config_cls) and isinstance(config_cls, type)
            and config_cls.__dataclass_params__.frozen):
        raise ValueError(f"config_cls: expected a frozen dataclass, got {config_cls!r}")
    missing = [f.name for f in dataclasses.fields(config_cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"config_cls: {config_cls.__name__} fields {missing} have no default; "
                         "expected a default for every field")
    if kind not in KINDS:
        raise ValueError(f"kind: expected 'field' or 'particles', got {kind!r}")
    for other in REGISTRY.values():
        if other.config is config_cls and other.name != name:
            raise ValueError(f"config_cls: {config_cls.__name__} is already the config of "
                             f"{other.name!r}; expected a class of its own (a subclass will do)")
    if augment:
        group_from_string(augment)
    entry = ModelEntry(name, config_cls, builder, kind, description, display or name, augment)
    REGISTRY[name] = entry
    return entry


def get_model(name: str) -> ModelEntry:
    """The entry registered as ``name`` or with that display name (``"GFNO-p4"``)."""
    if name in REGISTRY:
        return REGISTRY[name]
    for entry in REGISTRY.values():
        if entry.display == name:
            return entry
    raise ValueError(f"model.name: unknown model {name!r}; expected 'auto' or one of "
                     f"{sorted(REGISTRY)} (or a display name: "
                     f"{sorted(e.display for e in REGISTRY.values())})")


def model_name(config) -> str:
    """The registered name of a model config (``"auto"`` for :class:`AutoModelConfig`)."""
    if isinstance(config, AutoModelConfig):
        return "auto"
    for entry in REGISTRY.values():
        if type(config) is entry.config:
            return entry.name
    raise ValueError(f"model: {type(config).__name__} is not the config of a registered model; "
                     f"expected one of {[e.config.__name__ for e in REGISTRY.values()]}")


def model_config(name: str, values: dict | None = None):
    """The config of model ``name`` from plain settings (as TOML gives them).

    Raises
    ------
    ValueError
        Unknown model, a setting the model does not have (the message lists its fields) or
        a value of the wrong type or range; messages name ``model.<field>``.
    """
    values = dict(values or {})
    if name == "auto":
        return AutoModelConfig(tuple(values.items()))
    entry = get_model(name)
    hints = typing.get_type_hints(entry.config)
    known = sorted(f.name for f in dataclasses.fields(entry.config))
    for key in values:
        if key not in known:
            raise ValueError(f"model.{key}: unknown setting of model {entry.name!r}; expected "
                             f"one of {known}")
    return entry.config(**{k: check_value(v, hints[k], f"model.{k}") for k, v in values.items()})


def resolve_auto(config, kind: str):
    """``config`` itself, or for ``"auto"`` the config of :data:`AUTO_MODELS` ``[kind]``."""
    if not isinstance(config, AutoModelConfig):
        return config
    name = AUTO_MODELS[kind]
    known = {f.name for f in dataclasses.fields(REGISTRY[name].config)}
    for key, _ in config.settings:
        if key not in known:
            raise ValueError(f"model.{key}: model 'auto' is {name!r} for {kind} data, which "
                             f"has no setting {key!r}; expected one of {sorted(known)} or "
                             "an explicit model.name")
    return model_config(name, dict(config.settings))


def build_core(config, rep_in, rep_out, forcing: tuple[str, float] | None = None) -> nn.Module:
    """The model of a (resolved) config for data of types ``rep_in -> rep_out``.

    Parameters
    ----------
    config
        A model config of :data:`REGISTRY`.
    rep_in, rep_out : Reps or tuple of Reps
        The data's types.
    forcing : (str, float), optional
        The data's named forcing and its amplitude (:attr:`~.data.FieldLayout.forcing`). A
        config with ``forcing_channel = "on"`` (or ``"auto"`` when ``forcing`` is given)
        builds its model for one more input channel of the vorticity's kind and wraps it in
        :class:`~.forcing.ForcingInput`, which appends the forcing.
    """
    entry = REGISTRY[model_name(config)]
    mode = getattr(config, "forcing_channel", "off")
    if mode == "off" or (mode == "auto" and forcing is None):
        return entry.builder(config, rep_in, rep_out)
    if forcing is None:
        raise ValueError("model.forcing_channel: 'on' needs data whose attrs['config'] names "
                         "a forcing ('fno' or 'symmetric'), got data without one; expected "
                         "forcing_channel = 'auto' or 'off'")
    kind = next((b.kind for b in rep_in.blocks if b.kind in ("T0", "T0p")), None)
    if kind is None:
        raise ValueError(f"model.forcing_channel: the forcing is a source of vorticity, but the "
                         f"input {rep_in} has no scalar or pseudo-scalar field")
    core = entry.builder(config, rep_in + Reps(kind, rep_in.group), rep_out)
    return ForcingInput(core, *forcing)


# ----- builders --------------------------------------------------------------------------------
def restrict_reps(reps: Reps, group: FiniteGroup, name: str) -> Reps:
    """``reps`` read over ``group``, a subgroup of ``reps.group``; ValueError otherwise."""
    mine = reps.group
    inside = isinstance(mine, FiniteGroup) and all(
        any(float((g - h).abs().max()) < 1e-9 for h in mine.elements())
        for g in group.elements())
    if not inside:
        raise ValueError(f"model.name: {name!r} works over {group!r}, which is not a subgroup of "
                         f"the data's group {mine!r}; expected data whose group contains it")
    return Reps(str(reps), group)


def _build_fno(cfg: FNOConfig, rep_in: Reps, rep_out: Reps) -> nn.Module:
    return FNOBaseline(rep_in, rep_out, **dataclasses.asdict(cfg))


def _grepsfno_kwargs(cfg: GRepsFNOConfig) -> dict:
    kwargs = dataclasses.asdict(cfg)
    kwargs["hidden"] = kwargs.pop("hidden_type")
    del kwargs["forcing_channel"]  # build_core's wrapper (ForcingInput), not the model's
    del kwargs["energy_budget"]  # build_model's head, in the data's units
    return kwargs


def _build_grepsfno(cfg: GRepsFNOConfig, rep_in: Reps, rep_out: Reps) -> nn.Module:
    if not isinstance(rep_in.group, PlanarGroup):
        raise ValueError(f"model.name: 'grepsfno' needs field data over a planar group, got "
                         f"{rep_in.group!r}")
    return GRepsFNO2d(rep_in, rep_out, group=rep_in.group, **_grepsfno_kwargs(cfg))


def _build_grepsfno_c4(cfg: GRepsFNOC4Config, rep_in: Reps, rep_out: Reps) -> nn.Module:
    c4 = C4()
    return GRepsFNO2d(restrict_reps(rep_in, c4, "grepsfno-c4"),
                      restrict_reps(rep_out, c4, "grepsfno-c4"), group=c4,
                      **_grepsfno_kwargs(cfg))


def _one_field(rep_in: Reps, rep_out: Reps, name: str) -> None:
    kinds = {b.kind for r in (rep_in, rep_out) for b in r.blocks}
    if len(kinds) != 1 or not kinds <= {"T0", "T0p"}:
        raise ValueError(
            f"model.name: {name!r} takes frames of one scalar or pseudo-scalar field; the "
            f"data gives rep_in {rep_in} and rep_out {rep_out} (expected nxT0 or nxT0p, e.g. "
            "data.variables = ['vorticity'])")


def _gfno_builder(name: str, group: str, vorticity: str):
    def build(cfg: GFNOConfig, rep_in: Reps, rep_out: Reps) -> nn.Module:
        _one_field(rep_in, rep_out, name)
        return GFNO2d(rep_in.dim, rep_out.dim, group=group, vorticity=vorticity,
                      **dataclasses.asdict(cfg))

    return build


def _particle_outputs(rep_in, rep_out, name: str) -> bool:
    """True when velocities are predicted too; ValueError unless (T1, T1, T0) -> T1 (, T1)."""
    got_in = tuple(str(r) for r in rep_in) if isinstance(rep_in, tuple) else (str(rep_in),)
    outs = rep_out if isinstance(rep_out, tuple) else (rep_out,)
    got_out = tuple(str(r) for r in outs)
    if got_in != ("T1", "T1", "T0") or got_out not in (("T1",), ("T1", "T1")):
        raise ValueError(
            f"model.name: {name!r} maps (positions T1, velocities T1, charges T0) to positions "
            f"T1 (and velocities T1); the data gives rep_in {got_in} and rep_out {got_out}")
    return len(outs) == 2


def _build_mpnn(cfg: MPNNConfig, rep_in, rep_out) -> nn.Module:
    return ParticleMPNN(predict_velocity=_particle_outputs(rep_in, rep_out, "mpnn"),
                        **dataclasses.asdict(cfg))


def _build_grepsnbody(cfg: GRepsNBodyConfig, rep_in, rep_out) -> nn.Module:
    return GRepsNBody(velocity_output=_particle_outputs(rep_in, rep_out, "grepsnbody"),
                      **dataclasses.asdict(cfg))


def _build_egnn(cfg: EGNNConfig, rep_in, rep_out) -> nn.Module:
    return EGNN(velocity_output=_particle_outputs(rep_in, rep_out, "egnn"),
                **dataclasses.asdict(cfg))


for _args in (
    ("fno", FNOConfig, _build_fno, "field",
     "neuraloperator FNO2d with a coordinate grid (not equivariant)", "FNO"),
    ("fno-aug", FNOAugConfig, _build_fno, "field",
     "FNO trained on inputs moved by a random C4 rotation per item", "FNO+aug", "C4"),
    ("grepsfno", GRepsFNOConfig, _build_grepsfno, "field",
     "G-RepsNet FNO, equivariant to the data's group (width x R hidden)", "GRepsFNO"),
    ("grepsfno-c4", GRepsFNOC4Config, _build_grepsfno_c4, "field",
     "G-RepsNet FNO over C4 rotations only", "GRepsFNO-C4"),
    ("gfno-p4", GFNOP4Config, _gfno_builder("gfno-p4", "p4", "scalar"), "field",
     "G-FNO over p4 (rotations), frames as scalars", "GFNO-p4"),
    ("gfno-p4m", GFNOP4mConfig, _gfno_builder("gfno-p4m", "p4m", "scalar"), "field",
     "G-FNO over p4m, frames as scalars (the paper's; wrong for vorticity)", "GFNO-p4m"),
    ("gfno-p4m-pseudo", GFNOP4mPseudoConfig,
     _gfno_builder("gfno-p4m-pseudo", "p4m", "pseudoscalar"), "field",
     "G-FNO over p4m, frames as pseudo-scalars", "GFNO-p4m-pseudo"),
    ("mpnn", MPNNConfig, _build_mpnn, "particles",
     "plain message passing on raw coordinates (permutation-equivariant only)", "MPNN"),
    ("grepsnbody", GRepsNBodyConfig, _build_grepsnbody, "particles",
     "G-RepsNet N-body network, E(3) x S_n-equivariant", "GRepsNBody"),
    ("egnn", EGNNConfig, _build_egnn, "particles",
     "E(n)-equivariant graph network (Satorras et al.)", "EGNN"),
):
    register_model(*_args)
del _args
