"""Typed experiment configuration, mirrored one to one by TOML files.

A TOML file has one table per section of :class:`ExperimentConfig`::

    [data]
    train = "data/ns_sym.zarr"
    t_in = 10

    [model]
    name = "fno"
    modes = 12

    [train]
    epochs = 20
    lr = 1e-3

Every field has a default; unknown keys and values of the wrong type are errors naming the
key. The CLI exposes each field as ``--section.field``.

Examples
--------
>>> cfg = config_from_dict({"data": {"train": "d.zarr", "t_in": 4}, "train": {"epochs": 2}})
>>> cfg.data.t_in, cfg.train.epochs, cfg.model.name
(4, 2, 'auto')
>>> config_from_dict(config_to_dict(cfg)) == cfg
True
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field

from .trainer import TrainConfig

__all__ = ["DataConfig", "ModelConfig", "ExperimentConfig", "config_from_dict",
           "config_to_dict", "load_config", "set_field"]


@dataclass
class DataConfig:
    """Which data to train on and how it becomes training pairs.

    Attributes
    ----------
    train : str
        Path of the generated training dataset (zarr or ``.nc``).
    valid : str
        Path of a validation dataset; empty: the last ``valid_fraction`` of ``train``.
    valid_fraction : float
        Share of ``train``'s samples held out when ``valid`` is empty.
    n_train : int
        Use at most this many training samples (0: all).
    variables : list of str
        Field variables stacked per frame (fields only).
    t_in, t_out : int
        History frames in, frames out (fields only).
    input_frames : list of int
        Input frames of each particle sample (EGNN: [30]).
    delta : int
        Frames between a particle input and its target (EGNN: 10).
    predict_velocity : bool
        Particle models also predict velocities (needed for long rollouts).
    valid_rollout_steps : int
        Steps of the validation rollout that picks the ``best`` checkpoint.
    """

    train: str = ""
    valid: str = ""
    valid_fraction: float = 0.2
    n_train: int = 0
    variables: list[str] = field(default_factory=lambda: ["vorticity"])
    t_in: int = 10
    t_out: int = 1
    input_frames: list[int] = field(default_factory=lambda: [30])
    delta: int = 10
    predict_velocity: bool = True
    valid_rollout_steps: int = 10


@dataclass
class ModelConfig:
    """Which surrogate to build; ``rep_in``/``rep_out`` come from the data.

    Attributes
    ----------
    name : str
        A key of :data:`grepsnet_sciml.solvers.experiment.MODELS`, or ``"auto"``
        (``"fno"`` for fields, ``"mpnn"`` for particles).
        Fields: ``fno``, ``grepsfno``, ``gfno-p4``, ``gfno-p4m``; particles: ``mpnn``,
        ``grepsnbody``, ``egnn``.
    modes : int
        Field models: Fourier modes per axis.
    width : int
        Field models: hidden channels (``grepsfno``/``gfno-*``: copies of the regular
        representation). 0: the model's default (fno 32, grepsfno 8, gfno 10).
    n_layers : int
        Fourier layers or message-passing rounds. 0: the model's default (grepsnbody 2,
        the others 4).
    hidden : int
        Particle models: hidden width. 0: the model's default (64).
    """

    name: str = "auto"
    modes: int = 12
    width: int = 0
    n_layers: int = 0
    hidden: int = 0

    def __post_init__(self):
        if not isinstance(self.modes, int) or self.modes < 1:
            raise ValueError(f"model.modes: expected a positive integer, got {self.modes!r}")
        for name in ("width", "n_layers", "hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"model.{name}: expected an integer >= 0 (0: the model's "
                                 f"default), got {value!r}")


@dataclass
class ExperimentConfig:
    """A full training run: ``data``, ``model`` and ``train`` sections."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _check_type(value, annotation, key):
    hint = typing.get_origin(annotation)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (list, typing.List):  # noqa: UP006
        (inner,) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected a list of {inner.__name__}, got {value!r}")
        return [_check_type(v, inner, key) for v in value]
    if isinstance(annotation, type) and not (
            isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))):
        raise ValueError(f"{key}: expected {annotation.__name__}, got {value!r}")
    return value


def _section(cls, values: dict, name: str):
    if not isinstance(values, dict):
        raise ValueError(f"{name}: expected a table of settings, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ValueError(f"{name}.{key}: unknown setting; expected one of {sorted(known)}")
    kwargs = {k: _check_type(v, hints[k], f"{name}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def config_from_dict(values: dict) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from nested dicts (as TOML gives them)."""
    sections = {f.name: f for f in dataclasses.fields(ExperimentConfig)}
    for key in values:
        if key not in sections:
            raise ValueError(f"{key}: unknown section; expected one of {sorted(sections)}")
    hints = typing.get_type_hints(ExperimentConfig)
    return ExperimentConfig(**{k: _section(hints[k], values.get(k, {}), k) for k in sections})


def config_to_dict(cfg: ExperimentConfig) -> dict:
    """Nested plain dicts (JSON/TOML-ready)."""
    return dataclasses.asdict(cfg)


def load_config(path: str | os.PathLike) -> ExperimentConfig:
    """Read a TOML config file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"config: no file at {path!r}")
    with open(path, "rb") as f:
        try:
            values = tomllib.load(f)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config: {path!r} is not valid TOML ({err})") from err
    return config_from_dict(values)


def set_field(cfg: ExperimentConfig, dotted: str, text: str) -> ExperimentConfig:
    """Return ``cfg`` with ``section.field`` set from a command-line string.

    Lists are comma-separated; booleans accept true/false/1/0/yes/no.
    """
    values = config_to_dict(cfg)
    section, _, key = dotted.partition(".")
    if section not in values or key not in values[section]:
        raise ValueError(f"{dotted}: unknown setting; expected section.field such as train.lr")
    hint = typing.get_type_hints(type(getattr(cfg, section)))[key]
    values[section][key] = _parse_text(text, hint, dotted)
    return config_from_dict(values)


def _parse_text(text: str, hint, key: str):
    if typing.get_origin(hint) in (list, typing.List):  # noqa: UP006
        (inner,) = typing.get_args(hint)
        return [_parse_text(t.strip(), inner, key) for t in text.split(",") if t.strip()]
    if hint is bool:
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(f"{key}: expected true or false, got {text!r}")
    if isinstance(hint, types.GenericAlias):
        raise ValueError(f"{key}: cannot parse {text!r}")
    try:
        return hint(text)
    except ValueError as err:
        raise ValueError(f"{key}: expected {hint.__name__}, got {text!r}") from err
