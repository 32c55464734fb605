"""From a config and a generated dataset to a trained, checkpointed surrogate and back.

- :func:`build_model` builds the model named in the config with ``rep_in``/``rep_out``
  read from the dataset's attrs, wrapped with its equivariant normalization.
- :func:`train` runs the :class:`~.trainer.Trainer` and picks ``best`` by a validation
  rollout error.
- :func:`load_model` rebuilds a trained model from a checkpoint alone.

Models come from :mod:`~grepsnet_sciml.solvers.registry` (:data:`~.registry.REGISTRY`,
:func:`~.registry.register_model`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

from grepsnet_sciml.datasets.contract import DatasetSpec, source_of
from grepsnet_sciml.groups import group_from_string
from grepsnet_sciml.models.vorticity_budget import EnergyBudget
from grepsnet_sciml.reps import Reps

from .config import (
    ExperimentConfig,
    config_from_dict,
    config_to_dict,
    model_to_dict,
    with_settings_added_later,
)
from .data import (
    PARTICLE_VARIABLES,
    FieldLayout,
    FieldWindows,
    GroupAugmented,
    ParticlePairs,
    field_layout,
    field_trajectories,
    open_dataset,
    particle_reps,
)
from .losses import relative_l2
from .normalize import NormalizedModel, Normalizer, block_statistics
from .registry import (
    AUTO_MODELS,
    REGISTRY,
    build_core,
    get_model,
    model_config,
    model_name,
    resolve_auto,
)
from .rollout import rollout
from .trainer import (
    RESUME_APPLIED,
    Trainer,
    load_checkpoint,
    refuse_resume,
    resume_changes,
    train_defaults,
)
from .unroll import PARTICLE_METHODS, FieldLoss, ParticleLoss, uses_field_methods

__all__ = ["model_from_dataset", "build_model", "make_datasets", "train", "load_model",
           "LoadedModel", "model_description", "check_modes"]


def _check_kind(name: str, kind: str, source: str = "the data") -> None:
    want = get_model(name).kind
    if want != kind:
        others = sorted(n for n, e in REGISTRY.items() if e.kind == kind)
        raise ValueError(
            f"model.name: {name!r} is a {want} model, but {source} holds {kind} data "
            f"(attrs['kind'] = {kind!r}); expected one of {others} for {kind} data")


def check_modes(name: str, modes: int, grid: tuple[int, int], source: str = "the data") -> None:
    """ValueError naming ``modes``, the grid and the bound when ``modes`` exceeds the grid.

    Parameters
    ----------
    name : str
        A registered model; only field models with a ``modes`` field are checked.
    modes : int
        ``model.modes``, the window ``|kx|, |ky| <= modes - 1``.
    grid : (int, int)
        The data's ``(X, Y)``.
    source : str
        Names the data in the message.
    """
    entry = get_model(name)
    if entry.kind != "field" or "modes" not in {f.name for f in dataclasses.fields(entry.config)}:
        return
    n = min(grid)
    if modes - 1 >= n // 2:
        raise ValueError(
            f"model.modes: {modes} is too large for the {grid[0]}x{grid[1]} grid of {source}: "
            f"{name!r} keeps the window |k| <= modes - 1, which must stay below Nyquist "
            f"N/2 = {n // 2}; expected modes <= {n // 2}")


def _split(cfg: ExperimentConfig):
    """(train dataset, train samples, valid dataset, valid samples)."""
    train_ds = open_dataset(cfg.data.train)
    n = train_ds.sizes["sample"]
    if cfg.data.valid:
        valid_ds = open_dataset(cfg.data.valid)
        train_idx, valid_idx = list(range(n)), list(range(valid_ds.sizes["sample"]))
    else:
        if not 0 < cfg.data.valid_fraction < 1:
            raise ValueError(f"data.valid_fraction: expected in (0, 1), got "
                             f"{cfg.data.valid_fraction}")
        n_valid = max(1, round(n * cfg.data.valid_fraction))
        if n_valid >= n:
            raise ValueError(f"data.train: {n} samples are too few to hold out a validation set")
        valid_ds, train_idx, valid_idx = train_ds, list(range(n - n_valid)), list(
            range(n - n_valid, n))
    if cfg.data.n_train:
        train_idx = train_idx[: cfg.data.n_train]
    return train_ds, train_idx, valid_ds, valid_idx


def _augment(cfg: ExperimentConfig, kind: str) -> str:
    """The augmentation group of the run: ``data.augment`` or the one its model fixes."""
    fixed = get_model(_resolve_name(cfg.model, kind)).augment
    given = cfg.data.augment
    if fixed and given and group_from_string(given) != group_from_string(fixed):
        raise ValueError(f"data.augment: {given!r} conflicts with model "
                         f"{model_name(cfg.model)!r}, which trains on {fixed}-augmented data; "
                         f"expected '' or {fixed!r}")
    group = given or fixed
    if group and kind != "field":
        raise ValueError(f"data.augment: {group!r} applies to field data only; expected '' for "
                         f"{kind} data")
    return group


def _check_particle_methods(cfg) -> None:
    """ValueError naming the first training method particle data cannot take: a field-only
    one (``input_noise``), or an unrolled loss without velocity outputs."""
    used = uses_field_methods(cfg.train)
    name = next((m for m in used if m not in PARTICLE_METHODS), None)
    if name is not None:
        raise ValueError(f"train.{name}: applies to field data only; got "
                         f"{getattr(cfg.train, name)!r} for particle data (expected its "
                         f"default, {train_defaults()[name]!r})")
    if used and not cfg.data.predict_velocity:
        raise ValueError(f"train.{used[0]}: an unrolled particle loss feeds predicted "
                         "velocities back, so it needs data.predict_velocity = true; got "
                         "predict_velocity = false")


def _check_unroll_fits(steps: int, t_in: int, t_out: int, ds) -> None:
    n_time = ds.sizes["time"]
    if steps > 1 and t_in + steps * t_out > n_time:
        most = (n_time - t_in) // t_out
        raise ValueError(
            f"train.unroll_steps: {steps} steps of t_out = {t_out} frames after t_in = {t_in} "
            f"need windows of {t_in + steps * t_out} frames, but {source_of(ds)} has {n_time};"
            f" expected unroll_steps <= {most}")


def make_datasets(cfg: ExperimentConfig):
    """Training pairs and validation data: ``(kind, train_set, valid_ds, valid_idx)``.

    With an augmentation group (``data.augment`` or the model's) ``train_set`` is a
    :class:`GroupAugmented` over the :class:`~.data.FieldWindows` (``train_set.base``).
    Field targets hold ``train.unroll_steps * data.t_out`` frames (the unrolled loss of
    :mod:`~.unroll`; one step by default), so with ``K > 1`` fewer windows fit in each
    trajectory: ``time - t_in - K t_out + 1`` per sample.

    Raises
    ------
    ValueError
        Particle data with a field-only training method set (``train.input_noise``) or an
        unrolled loss without velocity outputs, or an unrolled window longer than the
        trajectories; the message names the setting. Particle pairs with
        ``train.unroll_steps = K`` carry the states ``K`` strides ahead.
    """
    train_ds, train_idx, valid_ds, valid_idx = _split(cfg)
    kind = DatasetSpec.from_dataset(train_ds).kind
    d = cfg.data
    if kind == "field":
        steps = cfg.train.unroll_steps
        _check_unroll_fits(steps, d.t_in, d.t_out, train_ds)
        train_set = FieldWindows(train_ds, d.t_in, d.t_out * steps, d.variables,
                                 samples=train_idx)
        augment = _augment(cfg, kind)
        if augment:
            train_set = GroupAugmented(train_set, group_from_string(augment),
                                       torch.Generator().manual_seed(cfg.train.seed))
    else:
        _augment(cfg, kind)
        _check_particle_methods(cfg)
        train_set = ParticlePairs(train_ds, d.input_frames, d.delta, samples=train_idx,
                                  predict_velocity=d.predict_velocity,
                                  steps=cfg.train.unroll_steps)
    return kind, train_set, valid_ds, valid_idx


def model_from_dataset(ds, name: str = "auto", *, t_in: int = 10, t_out: int = 1,
                       variables=None, predict_velocity: bool = True, **hparams):
    """A model whose ``rep_in``/``rep_out`` are read from a dataset's attrs (no normalization).

    Parameters
    ----------
    ds : xarray.Dataset or path
        A generated dataset; its ``kind``, ``group`` and ``representations`` decide the types.
    name : str
        A key of :data:`MODELS` or ``"auto"``.
    t_in, t_out, variables
        Fields: history frames in, frames out, stacked variables (default vorticity).
    predict_velocity : bool
        Particles: also predict velocities.
    **hparams
        Fields of the model's config (:mod:`~.registry`), e.g. ``modes``, ``width``,
        ``n_layers`` or ``hidden``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"vorticity": (("sample", "time", "x", "y"), np.zeros((1, 4, 8, 8)))},
    ...                 attrs={"kind": "field", "group": "D4()",
    ...                        "representations": '{"vorticity": "T0p"}'})
    >>> model = model_from_dataset(ds, "fno", t_in=3, modes=2, width=4, n_layers=1)
    >>> model.rep_in, model.rep_out
    (Reps('3xT0p', D4()), Reps('T0p', D4()))
    """
    ds = open_dataset(ds)
    spec = DatasetSpec.from_dataset(ds)
    if spec.kind == "field":
        layout = field_layout(ds, variables, spec=spec)
        rep_in, rep_out = layout.reps(t_in), layout.reps(t_out)
    else:
        rep_in, rep_out = particle_reps(ds, predict_velocity, spec=spec)
    cfg = resolve_auto(model_config(name, hparams), spec.kind)
    name = model_name(cfg)
    _check_kind(name, spec.kind, spec.source)
    if spec.kind == "field":
        _check_window(cfg, (ds.sizes["x"], ds.sizes["y"]), spec.source)
        return build_core(cfg, rep_in, rep_out, _forcing(layout))
    return build_core(cfg, rep_in, rep_out)


def _forcing(layout: FieldLayout) -> tuple[str, float] | None:
    """The layout's named forcing for :func:`~.registry.build_core`, or None."""
    return (layout.forcing, layout.forcing_amplitude) if layout.forcing is not None else None


def _field_normalizers(layout: FieldLayout, frames: torch.Tensor, t_in: int, t_out: int):
    stats, start = [], 0
    for kind in layout.kinds:
        size = 2 if kind == "T1" else 1
        stats.append(block_statistics(frames[:, :, start : start + size], kind))
        start += size
    scale, shift = [s for s, _ in stats], [m for _, m in stats]
    return (Normalizer(layout.reps(t_in), scale, shift, "grid"),
            Normalizer(layout.reps(t_out), scale, shift, "grid"))


def _particle_normalizers(rep_in, rep_out, train_set: ParticlePairs | None):
    if train_set is None:
        stats = {"position": (1.0, 0.0), "velocity": (1.0, 0.0), "charge": (1.0, 0.0)}
    else:
        stats = {"position": block_statistics(train_set.position, "T1"),
                 "velocity": block_statistics(train_set.velocity, "T1"),
                 "charge": block_statistics(train_set.charge, rep_in[2].blocks[0].kind)}
    ins = [Normalizer(r, [stats[v][0]], [stats[v][1]]) for r, v in zip(rep_in,
                                                                       PARTICLE_VARIABLES)]
    outs = [Normalizer(r, [stats[v][0]], [stats[v][1]])
            for r, v in zip(rep_out if isinstance(rep_out, tuple) else (rep_out,),
                            PARTICLE_VARIABLES)]
    return ins, outs


def _resolve_name(model_cfg, kind: str) -> str:
    """The registered name of ``model_cfg``; ``"auto"`` is :data:`~.registry.AUTO_MODELS`."""
    name = model_name(model_cfg)
    return AUTO_MODELS[kind] if name == "auto" else name


def _check_window(model_cfg, grid: tuple[int, int], source: str) -> None:
    if hasattr(model_cfg, "modes"):
        check_modes(model_name(model_cfg), model_cfg.modes, grid, source)


def build_model(cfg: ExperimentConfig, kind: str, train_set=None, layout=None,
                rep_in=None, rep_out=None) -> NormalizedModel:
    """The configured model wrapped in its normalization (statistics from ``train_set``).

    With ``cfg.data.normalize`` false the normalizers are the identity (scale 1, shift 0).

    Raises
    ------
    ValueError
        The model takes data of the other kind, a setting of ``"auto"`` is not one of the
        model it becomes, or (when ``train_set`` gives the grid) ``model.modes`` is too
        large for it; the message names model, data and bound.
    """
    name = _resolve_name(cfg.model, kind)
    source = repr(cfg.data.train) if cfg.data.train else "the data"
    _check_kind(name, kind, source)
    model_cfg = resolve_auto(cfg.model, kind)
    train_set = getattr(train_set, "base", train_set)  # statistics of the data as it is
    if kind == "field" and train_set is not None:
        _check_window(model_cfg, (train_set.ds.sizes["x"], train_set.ds.sizes["y"]), source)
    if kind == "field":
        layout = layout or train_set.layout
        rep_in, rep_out = layout.reps(cfg.data.t_in), layout.reps(cfg.data.t_out)
        if cfg.data.normalize:
            frames = (train_set.data[:64] if train_set is not None and train_set.data is not None
                      else field_trajectories(train_set.ds, layout, train_set.samples[:16])
                      if train_set is not None else torch.ones(1, 1, layout.frame_channels, 1, 1))
            ins, outs = _field_normalizers(layout, frames, cfg.data.t_in, cfg.data.t_out)
        else:  # identity: scale 1, shift 0 per field
            ones, zeros = [1.0] * len(layout.kinds), [0.0] * len(layout.kinds)
            ins, outs = (Normalizer(layout.reps(t), ones, zeros, "grid")
                         for t in (cfg.data.t_in, cfg.data.t_out))
    else:
        if train_set is not None:
            rep_in, rep_out = train_set.rep_in, train_set.rep_out
        ins, outs = _particle_normalizers(rep_in, rep_out,
                                          train_set if cfg.data.normalize else None)
    core = build_core(model_cfg, rep_in, rep_out, _forcing(layout) if kind == "field" else None)
    head = None
    if getattr(core, "conserve_energy", False):  # the energy of the data's units, not the core's
        head, core.conserve_energy = core.energy_head, False
    if getattr(model_cfg, "energy_budget", False):
        head = _energy_budget_head(layout, source)
    return NormalizedModel(core, ins, outs, head)


def _energy_budget_head(layout: FieldLayout, source: str) -> EnergyBudget:
    """The :class:`EnergyBudget` head of ``layout``'s data; ValueError naming what is missing."""
    if layout.variables != ("vorticity",) or layout.kinds != ("T0p",):
        raise ValueError(f"model.energy_budget: the budget is the vorticity equation's, but "
                         f"the data of {source} are read as {list(layout.variables)} of kinds "
                         f"{list(layout.kinds)}; expected data.variables = ['vorticity'] (a "
                         "pseudo-scalar)")
    missing = [name for name, value in (("viscosity", layout.viscosity),
                                        ("record_every", layout.frame_time)) if value is None]
    if missing:
        raise ValueError(f"model.energy_budget: needs the data's {missing}, which "
                         f"attrs['config'] of {source} does not give; expected Navier-Stokes "
                         "data from grepsnet_sciml.datasets (or energy_budget = false)")
    return EnergyBudget(layout.viscosity, layout.frame_time, layout.forcing,
                        layout.forcing_amplitude)


def _field_validator(valid_ds, valid_idx, layout: FieldLayout, t_in: int, n_steps: int):
    n_steps = min(n_steps, valid_ds.sizes["time"] - t_in)
    frames = field_trajectories(valid_ds, layout, valid_idx, slice(0, t_in + n_steps))

    def validate(model) -> float:
        result = rollout(model, frames[:, :t_in], n_steps, layout=layout)
        err = relative_l2(result.states.nan_to_num(1e30), frames[:, t_in:], reduction="none")
        return float(torch.where(result.blown_up, torch.inf, err.double()).mean())

    return validate


def _particle_validator(valid_ds, valid_idx, frame0: int, delta: int, n_steps: int):
    n_steps = max(1, min(n_steps, (valid_ds.sizes["time"] - 1 - frame0) // delta))
    sub = valid_ds.isel(sample=valid_idx)
    pos = torch.as_tensor(np.asarray(sub["position"].values), dtype=torch.float32)
    vel = torch.as_tensor(np.asarray(sub["velocity"].values), dtype=torch.float32)
    q = torch.as_tensor(np.asarray(sub["charge"].values), dtype=torch.float32)[..., None]
    truth = pos[:, frame0 + delta : frame0 + delta * n_steps + 1 : delta]

    def validate(model) -> float:
        result = rollout(model, (pos[:, frame0], vel[:, frame0], q), n_steps,
                         step_time=float(delta))
        err = relative_l2(result.states[0].nan_to_num(1e30), truth, reduction="none")
        return float(torch.where(result.blown_up, torch.inf, err.double()).mean())

    return validate


def _check_resume(cfg: ExperimentConfig) -> None:
    """Refuse to resume a run whose data, model or run-defining settings differ from ``cfg``.

    Every difference is listed (stored vs requested), before any model is built.
    """
    path = os.path.join(cfg.train.out_dir, "last.pt")
    if not os.path.exists(path):
        return
    ckpt = load_checkpoint(path)
    stored = ckpt.get("meta", {}).get("experiment")
    if not isinstance(stored, dict):
        raise ValueError(f"resume: {path!r} lacks the experiment it was trained with "
                         "(meta['experiment']); expected a checkpoint written by train()")
    now = config_to_dict(cfg)
    kind = ckpt["meta"].get("kind")
    if kind in AUTO_MODELS:  # "auto" is stored as the model it became
        now["model"] = model_to_dict(resolve_auto(cfg.model, kind))

    stored = with_settings_added_later(stored)

    def same(section: str, key: str, a, b) -> bool:
        # a data path given relative once and absolute the next time is the same data
        if section == "data" and key in ("train", "valid") and a and b:
            return os.path.realpath(a) == os.path.realpath(b)
        return a == b

    keys = {"data": list(now["data"]),
            "model": list(now["model"]) + [k for k in stored.get("model", {})
                                           if k not in now["model"]]}
    diffs = [(f"{section}.{key}", stored.get(section, {}).get(key), now[section].get(key))
             for section in ("data", "model") for key in keys[section]
             if not same(section, key, stored.get(section, {}).get(key), now[section].get(key))]
    diffs += [(f"train.{k}", a, b) for k, a, b in resume_changes(ckpt["config"], cfg.train)
              if k not in RESUME_APPLIED]
    if diffs:
        refuse_resume(path, diffs)


def train(cfg: ExperimentConfig, resume: bool = False, callbacks: Sequence[Callable] = (),
          overwrite: bool = False):
    """Build data and model from ``cfg`` and train; returns ``(trainer, history)``.

    The model is initialised after seeding torch with ``cfg.train.seed``, so the same
    config gives the same run.

    Field runs that set ``train.unroll_steps``, ``train.unroll_curriculum``,
    ``train.pushforward`` or ``train.input_noise`` train with the
    :class:`~.unroll.FieldLoss` they ask for (``K`` forward passes per item, see
    :mod:`~.unroll`); with all of them at their defaults the run is one-step teacher
    forcing, exactly as before these options existed.

    Parameters
    ----------
    cfg : ExperimentConfig
    resume : bool
        Continue the run in ``cfg.train.out_dir`` from its ``last.pt``. Changed settings
        of :data:`~.trainer.RESUME_APPLIED` (``lr``, ``epochs``, ...) are applied and listed
        in ``trainer.resume_note``; changed data, model or other train settings are refused.
    callbacks : sequence of callable
        Passed to the :class:`~.trainer.Trainer`.
    overwrite : bool
        Replace the grepsnet training run in ``out_dir`` (a folder of other files is
        refused).

    Raises
    ------
    FileExistsError
        ``out_dir`` already holds files and neither ``resume`` nor ``overwrite`` applies.
    ValueError
        A resume with changed data, model or run-defining settings (each listed), or data
        the model cannot take.
    """
    if resume and not overwrite:
        _check_resume(cfg)
    kind, train_set, valid_ds, valid_idx = make_datasets(cfg)
    cfg = dataclasses.replace(cfg, model=resolve_auto(cfg.model, kind))  # stored as built
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, kind, train_set)
    d = cfg.data
    if kind == "field":
        valid_fn = _field_validator(valid_ds, valid_idx, train_set.layout, d.t_in,
                                    d.valid_rollout_steps)
        meta_data = {"layout": train_set.layout.to_json()}
    else:
        valid_fn = _particle_validator(valid_ds, valid_idx, d.input_frames[0], d.delta,
                                       d.valid_rollout_steps)
        meta_data = {"rep_in": [str(r) for r in train_set.rep_in],
                     "rep_out": [str(r) for r in (train_set.rep_out if isinstance(
                         train_set.rep_out, tuple) else (train_set.rep_out,))],
                     "group": repr(train_set.rep_in[0].group)}
    meta = {"kind": kind, "experiment": config_to_dict(cfg), **meta_data,
            "model": model_description(cfg, model, kind)}
    loss_step = None  # default: one-step teacher forcing, as Trainer alone trains
    if kind == "field" and uses_field_methods(cfg.train):
        loss_step = FieldLoss.from_config(train_set.layout, d.t_out, cfg.train)
    elif kind != "field" and uses_field_methods(cfg.train):
        loss_step = ParticleLoss.from_config(cfg.train)
    trainer = Trainer(model, train_set, cfg.train, valid_fn=valid_fn, meta=meta,
                      callbacks=callbacks, loss_step=loss_step)
    history = trainer.fit(resume=resume, overwrite=overwrite)
    return trainer, history


@dataclasses.dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint, with what is needed to roll it out.

    Attributes
    ----------
    model : NormalizedModel
        In eval mode, on CPU.
    kind : str
        ``"field"`` or ``"particles"``.
    config : ExperimentConfig
    layout : FieldLayout or None
        Fields only.
    epoch : int
    """

    model: NormalizedModel
    kind: str
    config: ExperimentConfig
    layout: FieldLayout | None
    epoch: int


def _reps_strings(reps) -> list[str]:
    return [str(r) for r in (reps if isinstance(reps, tuple) else (reps,))]


def model_description(cfg: ExperimentConfig, model: NormalizedModel, kind: str) -> dict:
    """What a checkpoint's weights belong to: model name, class and core types.

    Stored as ``meta["model"]``; :func:`load_model` checks the rebuilt model against it.
    """
    core = model.core
    return {"name": _resolve_name(cfg.model, kind),
            "class": type(core).__name__, "rep_in": _reps_strings(core.rep_in),
            "rep_out": _reps_strings(core.rep_out), "group": repr(_first_reps(core.rep_in).group)}


def _first_reps(reps) -> Reps:
    return reps[0] if isinstance(reps, tuple) else reps


def _check_expected(path, stored: dict, name: str | None, rep_in, rep_out) -> None:
    if name is not None and stored.get("name") != get_model(name).name:
        raise ValueError(f"checkpoint: {path!r} holds a {stored.get('name')!r} model "
                         f"({stored.get('class')}); expected {name!r}")
    for label, want in (("rep_in", rep_in), ("rep_out", rep_out)):
        if want is None:
            continue
        want_s = _reps_strings(want)
        group = repr(_first_reps(want).group)
        if want_s != stored.get(label) or group != stored.get("group"):
            raise ValueError(
                f"checkpoint: {path!r} holds a model with {label} {stored.get(label)} of "
                f"{stored.get('group')}; expected {want_s} of {group}")


def load_model(path, name: str | None = None, rep_in=None, rep_out=None, *,
               energy_budget: bool | None = None) -> LoadedModel:
    """Rebuild the trained model stored in checkpoint ``path`` (``best.pt``/``last.pt``).

    Parameters
    ----------
    path : str
        A checkpoint written by :func:`train`.
    name : str, optional
        Expected model name (of :data:`~.registry.REGISTRY`; display names are accepted).
    rep_in, rep_out : Reps or tuple of Reps, optional
        Expected types of the model's inputs/outputs (as the core model declares them).
    energy_budget : bool, optional
        Field models: put the energy-budget head
        (:class:`~grepsnet_sciml.models.vorticity_budget.EnergyBudget`) on (True) or take it
        off (False) whatever the model was trained with; None: as trained. The head has no
        weights, so any field checkpoint takes it (one written before the data's viscosity
        was kept in checkpoints cannot).

    Raises
    ------
    ValueError
        If the checkpoint holds another model or other types than expected, or its weights
        do not fit the model its description rebuilds; the message names both. Also
        ``energy_budget`` for particle models, or data the budget does not describe.
    """
    ckpt = load_checkpoint(path)
    meta = ckpt.get("meta", {})
    if "kind" not in meta or "experiment" not in meta:
        raise ValueError(f"checkpoint: {path!r} lacks the model description (meta)")
    stored = meta.get("model", {})
    if stored:
        _check_expected(path, stored, name, rep_in, rep_out)
    elif name is not None or rep_in is not None or rep_out is not None:
        raise ValueError(f"checkpoint: {path!r} has no model description to check against "
                         f"name={name!r}, rep_in={rep_in}, rep_out={rep_out}")
    cfg = config_from_dict(with_settings_added_later(meta["experiment"]))
    if meta["kind"] == "field":
        layout = FieldLayout.from_json(meta["layout"])
        model = build_model(cfg, "field", layout=layout)
    else:
        layout = None
        group = group_from_string(meta["group"])
        rep_in = tuple(Reps(r, group) for r in meta["rep_in"])
        outs = tuple(Reps(r, group) for r in meta["rep_out"])
        model = build_model(cfg, "particles", rep_in=rep_in,
                            rep_out=outs if len(outs) > 1 else outs[0])
    if stored:
        built = model_description(cfg, model, meta["kind"])
        if built != stored:
            raise ValueError(f"checkpoint: {path!r} describes {stored}, but its config rebuilds "
                             f"{built}")
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise ValueError(
            f"checkpoint: the weights in {path!r} do not fit the {type(model.core).__name__} "
            f"its config describes (expected its state_dict keys and shapes): {err}") from err
    if energy_budget is not None:
        if meta["kind"] != "field":
            raise ValueError(f"energy_budget: {path!r} holds a particle model; the energy "
                             "budget is the vorticity equation's (expected None)")
        model.head = _energy_budget_head(layout, repr(path)) if energy_budget else None
    return LoadedModel(model.eval(), meta["kind"], cfg, layout, ckpt["epoch"])

