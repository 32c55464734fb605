"""Generated xarray datasets as torch datasets, with every channel's representation.

A generated dataset declares its own symmetry in its attrs, read once into a
:class:`~grepsnet_sciml.datasets.contract.DatasetSpec` (kind ``"field"`` or
``"particles"``, the point group, each variable's representation kind). This module turns
such a dataset into training pairs and tells models which :class:`~grepsnet_sciml.reps.Reps`
their inputs and outputs carry.

Fields
------
``vorticity(sample, time, x, y)`` (and optionally ``velocity(sample, time, x, y,
component)``). A :class:`FieldLayout` stacks the chosen variables of one time frame into
``C`` channels; ``t`` frames are packed channel-major per variable into ``(batch, dim, X,
Y)``: with ``t_in`` history frames of vorticity, ``rep_in = Reps(f"{t_in}xT0p", group)``.
:class:`FieldWindows` yields ``(x, y)`` with ``x`` the packed frames ``k .. k+t_in-1`` and
``y`` the packed frames ``k+t_in .. k+t_in+t_out-1`` (teacher forcing).

Particles
---------
``position(sample, time, particle, spatial)``, ``velocity(...)``, ``charge(sample,
particle)``. :class:`ParticlePairs` yields ``((positions, velocities, charges), target)``:
the state at an input frame and the positions (and velocities) ``delta`` frames later
(the EGNN task: frame 30 -> 40).

Examples
--------
>>> import numpy as np, xarray as xr
>>> ds = xr.Dataset({"vorticity": (("sample", "time", "x", "y"), np.zeros((2, 6, 8, 8)))},
...                 attrs={"kind": "field", "group": "D4()",
...                        "representations": '{"vorticity": "T0p"}'})
>>> windows = FieldWindows(ds, t_in=3)
>>> len(windows), windows.rep_in, windows.rep_out
(6, Reps('3xT0p', D4()), Reps('T0p', D4()))
>>> [tuple(t.shape) for t in windows[0]]
[(3, 8, 8), (1, 8, 8)]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from grepsnet_sciml.datasets._ns_spectral import FORCINGS
from grepsnet_sciml.datasets.contract import FIELD_DIMS, DatasetSpec, source_of
from grepsnet_sciml.datasets.navier_stokes import FORCING_AMPLITUDE
from grepsnet_sciml.groups import Group, PlanarGroup, group_from_string
from grepsnet_sciml.reps import Reps

from .registry import restrict_reps

__all__ = [
    "FIELD_DIMS",
    "PARTICLE_VARIABLES",
    "FieldLayout",
    "FieldWindows",
    "GroupAugmented",
    "ParticlePairs",
    "open_dataset",
    "field_layout",
    "field_trajectories",
    "particle_reps",
]

PARTICLE_VARIABLES = ("position", "velocity", "charge")
"""Variables a particle dataset must hold."""
_KIND_SIZE = {"T0": 1, "T0p": 1, "T1": 2, "T2": 4}


def open_dataset(path: str | os.PathLike | xr.Dataset) -> xr.Dataset:
    """Open a generated dataset lazily (dask-backed): zarr store or ``.nc`` file.

    Parameters
    ----------
    path : str, PathLike or xarray.Dataset
        A zarr directory, a netCDF file (``.nc``) or an already open dataset (returned
        as is).

    Returns
    -------
    xarray.Dataset
        With ``attrs["_source"]`` set to the path, so errors can name the file.

    Raises
    ------
    FileNotFoundError, ValueError
        No dataset at ``path``, or not one written by ``grepsnet_sciml.datasets``.
    """
    if isinstance(path, xr.Dataset):
        return path
    from grepsnet_sciml.datasets.storage import open_dataset as open_stored

    path = os.fspath(path)
    ds = open_stored(path)
    ds.attrs["_source"] = path
    return ds


def _check_finite(values: np.ndarray, ds: xr.Dataset, name: str, where: str) -> None:
    if not np.isfinite(values).all():
        bad = np.argwhere(~np.isfinite(values))[0].tolist()
        raise ValueError(
            f"{source_of(ds)}: variable {name!r} contains NaN or Inf ({where}, first at index "
            f"{bad}); expected finite values"
        )


@dataclass(frozen=True)
class FieldLayout:
    """How the field variables of one time frame stack into channels.

    Parameters
    ----------
    variables : tuple of str
        Variable names, e.g. ``("vorticity",)``.
    kinds : tuple of str
        Their representation kinds, e.g. ``("T0p",)``.
    group : Group
        The planar point group.
    forcing : str or None
        The data's named forcing (``"fno"``, ``"symmetric"``) when its generator config
        declares one, for models fed it as an input channel (:mod:`~.forcing`).
    forcing_amplitude : float
        Its amplitude.
    viscosity : float or None
        The data's kinematic viscosity ``nu`` when its generator config declares one (for the
        energy-budget head, :mod:`~grepsnet_sciml.models.vorticity_budget`).
    frame_time : float or None
        The time between stored frames (the config's ``record_every``), likewise.

    Attributes
    ----------
    frame_channels : int
        ``C``, channels of one frame (T0/T0p: 1, T1: 2).
    """

    variables: tuple[str, ...]
    kinds: tuple[str, ...]
    group: Group
    forcing: str | None = None
    forcing_amplitude: float = 0.1
    viscosity: float | None = None
    frame_time: float | None = None

    @property
    def frame_channels(self) -> int:
        return sum(_KIND_SIZE[k] for k in self.kinds)

    def _offsets(self) -> list[tuple[int, int]]:
        out, start = [], 0
        for k in self.kinds:
            out.append((start, _KIND_SIZE[k]))
            start += _KIND_SIZE[k]
        return out

    def reps(self, n_frames: int) -> Reps:
        """Representation of ``n_frames`` packed frames: ``n x kind`` per variable."""
        if not isinstance(n_frames, int) or n_frames < 1:
            raise ValueError(f"n_frames: expected a positive integer, got {n_frames!r}")
        return Reps([(n_frames, k) for k in self.kinds], self.group)

    def pack(self, frames: torch.Tensor) -> torch.Tensor:
        """``(batch, T, C, X, Y) -> (batch, T * C, X, Y)`` in the layout of :meth:`reps`."""
        b, t, c = frames.shape[:3]
        if frames.ndim != 5 or c != self.frame_channels:
            raise ValueError(
                f"frames: expected (batch, T, {self.frame_channels}, X, Y), got "
                f"{tuple(frames.shape)}"
            )
        parts = [frames[:, :, s : s + n].reshape(b, t * n, *frames.shape[-2:])
                 for s, n in self._offsets()]
        return torch.cat(parts, dim=1)

    def unpack(self, x: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Inverse of :meth:`pack`: ``(batch, T * C, X, Y) -> (batch, T, C, X, Y)``."""
        self.reps(n_frames).check(x, "x", grid=True)
        b = x.shape[0]
        parts, start = [], 0
        for _, n in self._offsets():
            parts.append(x[:, start : start + n_frames * n].reshape(b, n_frames, n,
                                                                   *x.shape[-2:]))
            start += n_frames * n
        return torch.cat(parts, dim=2)

    def to_json(self) -> dict:
        out = {"variables": list(self.variables), "kinds": list(self.kinds),
               "group": repr(self.group)}
        if self.forcing is not None:
            out.update(forcing=self.forcing, forcing_amplitude=self.forcing_amplitude)
        for name in ("viscosity", "frame_time"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_json(cls, data: dict) -> FieldLayout:
        return cls(tuple(data["variables"]), tuple(data["kinds"]),
                   group_from_string(data["group"]), data.get("forcing"),
                   float(data.get("forcing_amplitude", 0.1)), data.get("viscosity"),
                   data.get("frame_time"))


def field_layout(ds: xr.Dataset, variables: Sequence[str] | None = None, *,
                 spec: DatasetSpec | None = None) -> FieldLayout:
    """The :class:`FieldLayout` of ``variables`` (default: vorticity) declared by ``ds``.

    ``spec``: ``DatasetSpec.from_dataset(ds)`` when the caller has parsed it already.
    """
    variables = tuple(variables) if variables is not None else ("vorticity",)
    if not variables:
        raise ValueError("variables: expected at least one field variable, got ()")
    spec = spec or DatasetSpec.from_dataset(ds)
    spec.require(ds, "field", variables)
    forcing = spec.config.get("forcing")
    named = forcing in FORCINGS
    viscosity, frame_time = (spec.config.get(k) for k in ("viscosity", "record_every"))
    return FieldLayout(variables, tuple(spec.representations[v] for v in variables), spec.group,
                       forcing if named else None,
                       float(spec.config.get("forcing_amplitude", FORCING_AMPLITUDE))
                       if named else FORCING_AMPLITUDE,
                       float(viscosity) if viscosity is not None else None,
                       float(frame_time) if frame_time is not None else None)


def field_trajectories(ds: xr.Dataset, layout: FieldLayout, samples=None, times=None,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Read frames as ``(sample, time, C, X, Y)`` (loads them; checks for NaN/Inf).

    Parameters
    ----------
    samples, times : slice, sequence of int or None
        Positional selections (default: all).
    """
    sel = {}
    if samples is not None:
        sel["sample"] = samples
    if times is not None:
        sel["time"] = times
    parts = []
    for name, kind in zip(layout.variables, layout.kinds):
        values = np.asarray(ds[name].isel(sel).values)
        _check_finite(values, ds, name, f"samples {samples}, times {times}")
        if kind == "T1":
            values = np.moveaxis(values, -1, 2)
        else:
            values = values[:, :, None]
        parts.append(torch.as_tensor(values, dtype=dtype))
    return torch.cat(parts, dim=2)


def _positions(selection, size: int, argument: str) -> list[int]:
    if selection is None:
        return list(range(size))
    if isinstance(selection, slice):
        return list(range(size))[selection]
    out = [int(i) for i in selection]
    for i in out:
        if not 0 <= i < size:
            raise ValueError(f"{argument}: index {i} out of range for {size} entries")
    return out


class FieldWindows(torch.utils.data.Dataset):
    """Teacher-forcing windows of a field dataset: ``t_in`` frames -> next ``t_out`` frames.

    Parameters
    ----------
    ds : xarray.Dataset or path
        A generated field dataset (opened lazily when a path is given).
    t_in : int
        History frames in the input.
    t_out : int
        Frames predicted (1: one-step).
    variables : sequence of str, optional
        Field variables to stack (default ``("vorticity",)``).
    samples : slice or sequence of int, optional
        Which samples to use (default all).
    stride : int
        Step between window starts.
    in_memory : bool or None
        Load the selected samples once (default: when they take under 1 GiB); otherwise
        each item reads its frames lazily.
    dtype : torch.dtype

    Attributes
    ----------
    layout : FieldLayout
    rep_in, rep_out : Reps
        ``layout.reps(t_in)`` and ``layout.reps(t_out)``.

    Items are ``(x, y)``: ``x`` of shape ``(rep_in.dim, X, Y)``, ``y`` ``(rep_out.dim, X, Y)``.
    """

    def __init__(self, ds, t_in: int, t_out: int = 1, variables: Sequence[str] | None = None,
                 samples=None, stride: int = 1, in_memory: bool | None = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        ds = open_dataset(ds)
        for name, value in (("t_in", t_in), ("t_out", t_out), ("stride", stride)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        self.ds, self.t_in, self.t_out, self.dtype = ds, t_in, t_out, dtype
        self.layout = field_layout(ds, variables)
        self.rep_in, self.rep_out = self.layout.reps(t_in), self.layout.reps(t_out)
        n_time = ds.sizes["time"]
        if t_in + t_out > n_time:
            raise ValueError(
                f"t_in, t_out: a window needs t_in + t_out = {t_in + t_out} frames but "
                f"{source_of(ds)} has {n_time}"
            )
        self.samples = _positions(samples, ds.sizes["sample"], "samples")
        starts = range(0, n_time - t_in - t_out + 1, stride)
        self.index = [(s, k) for s in range(len(self.samples)) for k in starts]
        if in_memory is None:
            per_sample = sum(ds[v].isel(sample=0).nbytes for v in self.layout.variables)
            in_memory = per_sample * len(self.samples) < 2**30
        self.data = (field_trajectories(ds, self.layout, self.samples, dtype=dtype)
                     if in_memory else None)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, k = self.index[i]
        n = self.t_in + self.t_out
        if self.data is not None:
            frames = self.data[s, k : k + n]
        else:
            frames = field_trajectories(self.ds, self.layout, [self.samples[s]],
                                        slice(k, k + n), self.dtype)[0]
        x = self.layout.pack(frames[None, : self.t_in])[0]
        y = self.layout.pack(frames[None, self.t_in :])[0]
        return x, y


def particle_reps(ds: xr.Dataset, predict_velocity: bool = False, *,
                  spec: DatasetSpec | None = None):
    """``(rep_in, rep_out)`` of a particle dataset: ``(T1, T1, T0) -> T1`` (or ``(T1, T1)``).

    Inputs are (positions, velocities, charges), outputs positions (and velocities).
    ``spec``: ``DatasetSpec.from_dataset(ds)`` when the caller has parsed it already.
    """
    spec = spec or DatasetSpec.from_dataset(ds)
    spec.require(ds, "particles", PARTICLE_VARIABLES)
    rep_in = tuple(spec.reps(v) for v in PARTICLE_VARIABLES)
    if predict_velocity:
        return rep_in, (spec.reps("position"), spec.reps("velocity"))
    return rep_in, spec.reps("position")


class ParticlePairs(torch.utils.data.Dataset):
    """Particle states at an input frame and positions ``delta`` frames later.

    Parameters
    ----------
    ds : xarray.Dataset or path
        A generated particle dataset.
    input_frames : int or sequence of int
        Input frame(s) (EGNN: 30); each sample contributes one pair per input frame.
    delta : int
        Frames between input and target (EGNN: 10).
    samples : slice or sequence of int, optional
    predict_velocity : bool
        Targets are ``(positions, velocities)`` instead of positions.
    dtype : torch.dtype
    steps : int
        ``K``: targets are the states ``delta, 2 delta, .., K delta`` frames later, for the
        unrolled loss (:class:`~.unroll.ParticleLoss`); ``K > 1`` needs ``predict_velocity``.

    Items are ``((positions (N, 3), velocities (N, 3), charges (N, 1)), target)`` with
    ``target`` positions ``(N, 3)`` or a pair ``(positions, velocities)``; with ``steps > 1``
    the pair ``(positions (K, N, 3), velocities (K, N, 3))``.
    """

    def __init__(self, ds, input_frames: int | Sequence[int] = 30, delta: int = 10,
                 samples=None, predict_velocity: bool = False,
                 dtype: torch.dtype = torch.float32, steps: int = 1):
        super().__init__()
        ds = open_dataset(ds)
        self.rep_in, self.rep_out = particle_reps(ds, predict_velocity)
        if not isinstance(delta, int) or delta < 1:
            raise ValueError(f"delta: expected a positive integer, got {delta!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps: expected a positive integer, got {steps!r}")
        if steps > 1 and not predict_velocity:
            raise ValueError(f"steps: {steps} unrolled steps need predict_velocity=True (a "
                             "rollout feeds the predicted velocities back)")
        frames = [input_frames] if isinstance(input_frames, int) else list(input_frames)
        n_time = ds.sizes["time"]
        for f in frames:
            if not isinstance(f, int) or f < 0 or f + steps * delta > n_time - 1:
                ahead = f"delta {delta}" if steps == 1 else f"{steps} x delta {delta}"
                raise ValueError(f"input_frames: frame {f} + {ahead} is outside the {n_time} "
                                 f"frames of {source_of(ds)}")
        self.samples = _positions(samples, ds.sizes["sample"], "samples")
        self.delta, self.frames, self.predict_velocity = delta, frames, predict_velocity
        self.steps = steps
        sub = ds.isel(sample=self.samples)
        arrays = {}
        for name in PARTICLE_VARIABLES:
            values = np.asarray(sub[name].values)
            _check_finite(values, ds, name, "selected samples")
            arrays[name] = torch.as_tensor(values, dtype=dtype)
        self.position, self.velocity = arrays["position"], arrays["velocity"]
        self.charge = arrays["charge"][..., None]
        self.index = [(s, f) for s in range(len(self.samples)) for f in frames]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        s, f = self.index[i]
        inputs = (self.position[s, f], self.velocity[s, f], self.charge[s])
        if self.steps > 1:
            later = slice(f + self.delta, f + self.steps * self.delta + 1, self.delta)
            return inputs, (self.position[s, later], self.velocity[s, later])
        target = self.position[s, f + self.delta]
        if self.predict_velocity:
            target = (target, self.velocity[s, f + self.delta])
        return inputs, target


class GroupAugmented(torch.utils.data.Dataset):
    """Field training items moved by a random element of ``group``: ``(g . x, g . y)``.

    ``(g . f)(i) = rho(g) f(g^{-1} i mod N)`` on the grid about the origin point, with
    ``rho`` the field's representation read over ``group`` (T0 unchanged, T0p times
    ``det g``, T1 rotated: :meth:`~grepsnet_sciml.reps.Reps.act`); ``g`` is drawn uniformly
    per item from ``generator``. For data whose symmetry contains ``group`` the augmented
    pairs follow the same dynamics ("FNO + augmentation").

    Parameters
    ----------
    base : FieldWindows
        Items ``x`` of shape ``(rep_in.dim, X, Y)``, ``y`` ``(rep_out.dim, X, Y)``.
    group : PlanarGroup
        A subgroup of the data's group.
    generator : torch.Generator
        Source of the elements (seeded from ``train.seed``; its state is not checkpointed,
        so a resumed run draws other elements than an uninterrupted one).

    Attributes
    ----------
    rep_in, rep_out : Reps
        ``base.rep_in``/``base.rep_out`` over ``group``.
    layout : FieldLayout
        ``base.layout``.
    """

    def __init__(self, base: FieldWindows, group: PlanarGroup, generator: torch.Generator):
        self.base, self.group, self.generator = base, group, generator
        self.layout = base.layout
        self.rep_in = restrict_reps(base.rep_in, group, f"data.augment {group!r}")
        self.rep_out = restrict_reps(base.rep_out, group, f"data.augment {group!r}")

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.base[i]
        a = int(torch.randint(self.group.order, (), generator=self.generator))
        return (self.rep_in.act(a, x[None], grid=True)[0],
                self.rep_out.act(a, y[None], grid=True)[0])
