"""Typed experiment configuration, mirrored one to one by TOML files.

A TOML file has one table per section of :class:`ExperimentConfig`::

    [data]
    train = "data/ns_sym.zarr"
    t_in = 10

    [model]
    name = "gfno-p4"
    width = 10
    modes = 12

    [train]
    epochs = 20
    lr = 1e-3

``[model]`` holds ``name`` (a model of :mod:`~grepsnet_sciml.solvers.registry`, or
``"auto"``) and exactly that model's fields (its typed config, e.g.
:class:`~.registry.GFNOP4Config`); the other sections are :class:`DataConfig` and
:class:`~.trainer.TrainConfig`. Every field has a default; unknown keys and values of the
wrong type are errors naming the key. The CLI exposes each field as ``--section.field``.

Examples
--------
>>> cfg = config_from_dict({"data": {"train": "d.zarr", "t_in": 4},
...                         "model": {"name": "gfno-p4", "width": 6}, "train": {"epochs": 2}})
>>> cfg.data.t_in, cfg.train.epochs, cfg.model
(4, 2, GFNOP4Config(width=6, modes=12, n_layers=4))
>>> config_to_dict(cfg)["model"]
{'name': 'gfno-p4', 'width': 6, 'modes': 12, 'n_layers': 4}
>>> config_from_dict(config_to_dict(cfg)) == cfg
True
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
import typing
from dataclasses import dataclass, field
from typing import Any

from grepsnet_sciml._atomic import atomic_write_text
from grepsnet_sciml.groups import group_from_string

from .registry import (
    AutoModelConfig,
    check_value,
    get_model,
    model_config,
    model_name,
    parse_value,
)
from .trainer import TrainConfig

__all__ = ["DataConfig", "ExperimentConfig", "config_from_dict", "config_to_dict",
           "model_to_dict", "load_config", "save_config", "set_field"]


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
    t_in : int
        History frames the model reads per sample (fields only).
    t_out : int
        Frames the model predicts per call (fields only).
    input_frames : list of int
        Input frames of each particle sample (EGNN: [30]).
    delta : int
        Frames between a particle input and its target (EGNN: 10).
    predict_velocity : bool
        Particle models also predict velocities (needed for long rollouts).
    valid_rollout_steps : int
        Steps of the validation rollout that picks the ``best`` checkpoint.
    augment : str
        Fields: a group (``"C4"``, ``"D4"``), a subgroup of the data's, whose random element
        ``g`` replaces each training item ``(x, y)`` by ``(g . x, g . y)``; ``""``: none.
        Models that train on augmented data (``fno-aug``) set it themselves.
    normalize : bool
        Scale inputs and outputs by one statistic per field of the training data
        (:mod:`~.normalize`); false: the model sees the data as stored (identity
        normalizers, as in G-FNO's protocol).
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
    augment: str = ""
    normalize: bool = True

    def __post_init__(self):
        if not isinstance(self.augment, str):
            raise ValueError(f"data.augment: expected a group name such as 'C4', got "
                             f"{self.augment!r}")
        if self.augment:
            try:
                group_from_string(self.augment)
            except ValueError as err:
                raise ValueError(f"data.augment: {err}") from err


@dataclass
class ExperimentConfig:
    """A full training run: ``data``, ``model`` and ``train`` sections.

    ``model`` is the typed config of one registered model (:func:`~.registry.model_name`
    gives its name) or :class:`~.registry.AutoModelConfig`.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: Any = field(default_factory=AutoModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _section(cls, values: dict, name: str):
    if not isinstance(values, dict):
        raise ValueError(f"{name}: expected a table of settings, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ValueError(f"{name}.{key}: unknown setting; expected one of {sorted(known)}")
    kwargs = {k: check_value(v, hints[k], f"{name}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def _model_section(values: dict):
    if not isinstance(values, dict):
        raise ValueError(f"model: expected a table of settings, got {values!r}")
    values = dict(values)
    name = values.pop("name", "auto")
    if not isinstance(name, str):
        raise ValueError(f"model.name: expected str, got {name!r}")
    return model_config(name, values)


SETTINGS_ADDED_LATER = {"data": {"normalize": True},
                        "model": {"mlp_expansion": (("grepsfno", "grepsfno-c4"), 1.0)}}
"""Settings a stored experiment may lack because it predates them, with the value they had
then (``model`` entries: the models that have the setting, and the value)."""


def with_settings_added_later(stored: dict) -> dict:
    """A checkpoint's stored experiment (``meta["experiment"]``) with the settings it predates
    filled in by :data:`SETTINGS_ADDED_LATER` (e.g. a GRepsFNO trained before
    ``mlp_expansion`` existed had the value 1.0, its pointwise MLP as wide as its blocks)."""
    stored = {section: dict(values) if isinstance(values, dict) else values
              for section, values in stored.items()}
    for key, value in SETTINGS_ADDED_LATER["data"].items():
        stored.setdefault("data", {}).setdefault(key, value)
    model = stored.get("model")
    if isinstance(model, dict):
        for key, (names, value) in SETTINGS_ADDED_LATER["model"].items():
            if model.get("name") in names:
                model.setdefault(key, value)
    return stored


def config_from_dict(values: dict) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from nested dicts (as TOML gives them)."""
    sections = {f.name: f for f in dataclasses.fields(ExperimentConfig)}
    for key in values:
        if key not in sections:
            raise ValueError(f"{key}: unknown section; expected one of {sorted(sections)}")
    return ExperimentConfig(data=_section(DataConfig, values.get("data", {}), "data"),
                            model=_model_section(values.get("model", {})),
                            train=_section(TrainConfig, values.get("train", {}), "train"))


def model_to_dict(model) -> dict:
    """``{"name": ..., **fields}`` of a model config (``[model]`` as plain data)."""
    if isinstance(model, AutoModelConfig):
        return {"name": "auto", **dict(model.settings)}
    return {"name": model_name(model), **dataclasses.asdict(model)}


def config_to_dict(cfg: ExperimentConfig) -> dict:
    """Nested plain dicts (JSON/TOML-ready; settings left unset, ``None``, are kept)."""
    return {"data": dataclasses.asdict(cfg.data), "model": model_to_dict(cfg.model),
            "train": dataclasses.asdict(cfg.train)}


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


def _toml_value(value, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else
                                                        ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v, key) for v in value) + "]"
    raise ValueError(f"{key}: cannot write {value!r} to TOML; expected a bool, number, string "
                     "or list of them")


def save_config(cfg: ExperimentConfig, path: str | os.PathLike) -> str:
    """Write ``cfg`` as a TOML file that :func:`load_config` reads back to ``cfg``.

    Settings left unset (``None``) are omitted, so they read back as their default.

    Parameters
    ----------
    cfg : ExperimentConfig
    path : str or PathLike
        The file (written atomically; its folder is created).

    Returns
    -------
    str
        The TOML text.

    Raises
    ------
    ValueError
        A setting that TOML cannot hold, or one whose default is not ``None`` left unset
        (the file would not read back to ``cfg``).
    """
    lines = []
    for section, values in config_to_dict(cfg).items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value, f'{section}.{key}')}"
                  for key, value in values.items() if value is not None]
        lines.append("")
    text = "\n".join(lines)
    if config_from_dict(tomllib.loads(text)) != cfg:
        raise ValueError(f"config: {os.fspath(path)!r} would not read back to the config "
                         "(an unset setting whose default is not None?)")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, text)
    return text


def _model_hint(model, key: str):
    """The type of setting ``key`` of the configured model (ValueError naming its fields)."""
    if isinstance(model, AutoModelConfig):
        classes = [get_model(n).config for n in ("fno", "mpnn")]
    else:
        classes = [type(model)]
    for cls in classes:
        hints = typing.get_type_hints(cls)
        if key in {f.name for f in dataclasses.fields(cls)}:
            return hints[key]
    known = sorted({f.name for cls in classes for f in dataclasses.fields(cls)})
    raise ValueError(f"model.{key}: unknown setting of model {model_name(model)!r}; expected "
                     f"one of {known} (or set model.name first)")


def set_field(cfg: ExperimentConfig, dotted: str, text: str) -> ExperimentConfig:
    """Return ``cfg`` with ``section.field`` set from a command-line string.

    Lists are comma-separated; booleans accept true/false/1/0/yes/no; optional settings
    take ``none``. ``model.name`` starts from that model's defaults, so set it before the
    model's other fields.
    """
    values = config_to_dict(cfg)
    section, _, key = dotted.partition(".")
    if section == "model" and key == "name":
        values["model"] = {"name": text}
    elif section == "model" and key:
        values["model"][key] = parse_value(text, _model_hint(cfg.model, key), dotted)
    elif section not in values or key not in values[section]:
        raise ValueError(f"{dotted}: unknown setting; expected section.field such as train.lr")
    else:
        hint = typing.get_type_hints(type(getattr(cfg, section)))[key]
        values[section][key] = parse_value(text, hint, dotted)
    return config_from_dict(values)
