"""Autoregressive rollout of a surrogate, with a blow-up guard and optional zarr streaming.

:func:`rollout` is a pure function of (model, initial state, number of steps): no autograd
graph, batched over samples, and with ``store=`` its working memory does not grow with
``n_steps`` (frames are flushed to a zarr store every ``chunk`` steps).

Fields
    ``initial_state`` ``(batch, t_in, C, X, Y)`` frames in a :class:`~.data.FieldLayout`;
    the model maps the packed window ``(batch, t_in * C, X, Y)`` to the next ``t_out``
    frames, and the window slides: ``w_{k+1} = [w_k[t_out:], M(w_k)]``.
Particles
    ``initial_state = (positions (B, N, 3), velocities (B, N, 3), charges (B, N, 1))``;
    the model returns positions, or ``(positions, velocities)``. With positions only the
    velocity is estimated as ``(x_{k+1} - x_k) / step_time``.

Blow-up guard: trajectory ``b`` stops at the first step whose state has a NaN/Inf entry or
a norm above ``growth_limit * ||initial state||``: that step is ``blowup_step[b]`` (1-based,
0 when it never blew up), from it on its frames are NaN and the model is no longer called
on it, ``valid_steps[b]`` counts the good steps, and the other trajectories go on. When every
trajectory has blown up the rollout stops: in memory the remaining steps are NaN, a store
ends at that step. :meth:`RolloutResult.guard_report` says which samples died at which step.

Streaming (``store=``): frames are appended to the zarr store every ``chunk`` steps, so
memory and the time before the first step do not depend on ``n_steps``. The store has the
coordinates ``sample``, ``x``, ``y`` (fields) or ``particle``, ``spatial`` (particles) given
by ``coords=`` (:func:`store_coordinates` takes them from the data), absolute times
``start_time + k * step_time``, the attrs given by ``attrs=`` besides its own, and, once
finished, consolidated metadata, so a plain ``xarray.open_zarr(store)`` opens it.

Examples
--------
>>> import torch
>>> from grepsnet_sciml.groups import D4
>>> from grepsnet_sciml.solvers.data import FieldLayout
>>> layout = FieldLayout(("vorticity",), ("T0p",), D4())
>>> class Mean(torch.nn.Module):  # next frame = mean of the 2-frame window
...     def forward(self, x):
...         return x.mean(1, keepdim=True)
>>> result = rollout(Mean(), torch.ones(3, 2, 1, 8, 8), 5, layout=layout)
>>> result.states.shape, result.valid_steps.tolist(), result.blowup_step.tolist()
(torch.Size([3, 5, 1, 8, 8]), [5, 5, 5], [0, 0, 0])
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
import zarr

from grepsnet_sciml.datasets.storage import consolidate_metadata

from .data import FieldLayout

__all__ = ["RolloutResult", "rollout", "solver_rollout", "store_coordinates", "guard_report",
           "ROLLOUT_MARKER"]

ROLLOUT_MARKER = "grepsnet rollout"
"""``attrs["written_by"]`` of every store :func:`rollout` writes."""


def guard_report(blowup_step, n_steps: int, steps_run: int | None = None) -> str:
    """One line saying which samples the blow-up guard stopped at which step.

    Parameters
    ----------
    blowup_step : sequence of int
        Per sample, the 1-based step the guard fired at (0: never).
    n_steps : int
        Steps requested.
    steps_run : int, optional
        Steps actually run (less than ``n_steps`` when every sample blew up).
    """
    steps = [int(k) for k in np.asarray(blowup_step).reshape(-1)]
    dead = [(b, k) for b, k in enumerate(steps) if k > 0]
    if not dead:
        return f"blow-up guard: all {len(steps)} samples stayed finite for {n_steps} steps"
    listed = ", ".join(f"sample {b} at step {k}" for b, k in dead[:20])
    if len(dead) > 20:
        listed += f" and {len(dead) - 20} more"
    text = (f"blow-up guard: {len(dead)} of {len(steps)} samples blew up (NaN/Inf or norm "
            f"above the growth limit): {listed}")
    if len(dead) == len(steps):
        run = steps_run if steps_run is not None else max(steps)
        text += f"; every trajectory had stopped, so the rollout ended at step {run} of " \
                f"{n_steps}"
    return text


@dataclass
class RolloutResult:
    """Output of :func:`rollout`.

    Attributes
    ----------
    states : torch.Tensor or tuple or None
        Fields ``(batch, n_steps, C, X, Y)``; particles ``(positions, velocities)`` each
        ``(batch, n_steps, N, 3)``; None when streamed to ``store``. Step ``k`` (0-based)
        is the state ``k + 1`` model steps after the initial state; NaN from a
        trajectory's blow-up on.
    valid_steps : torch.Tensor
        ``(batch,)`` long: steps before the blow-up guard stopped the trajectory.
    blown_up : torch.Tensor
        ``(batch,)`` bool.
    store : str or None
        The zarr store holding the states (``xarray.open_zarr(store)``; consolidated
        metadata once finished): the state variables over ``time`` with the coordinates
        given to :func:`rollout`, ``valid_steps(sample)`` and ``blowup_step(sample)``; it
        ends at ``steps_run``.
    blowup_step : torch.Tensor
        ``(batch,)`` long: the 1-based step at which the guard fired, 0 if it never did.
    n_steps : int
        Steps requested.
    steps_run : int
        Steps computed: ``n_steps`` unless every trajectory blew up earlier.
    """

    states: torch.Tensor | tuple | None
    valid_steps: torch.Tensor
    blown_up: torch.Tensor
    store: str | None = None
    blowup_step: torch.Tensor | None = None
    n_steps: int = 0
    steps_run: int = 0

    def guard_report(self) -> str:
        """Which samples the blow-up guard stopped at which step (one line)."""
        return guard_report(self.blowup_step, self.n_steps, self.steps_run)


def _norms(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x.reshape(x.shape[0], -1).double(), dim=1)


class _Sink:
    """Collects steps in memory, or appends them to a zarr store every ``chunk`` steps."""

    def __init__(self, names, dims, store, chunk, step_time, start_time, coords, attrs):
        self.names, self.dims, self.store, self.chunk = names, dims, store, chunk
        self.step_time, self.start_time = step_time, start_time
        self.coords, self.attrs = coords, attrs
        self.buffer: list[list[torch.Tensor]] = [[] for _ in names]
        self.written = 0
        self.group = None
        if store is not None and os.path.exists(store):
            raise FileExistsError(f"store: {store!r} already exists; choose a new path")

    def _coordinates(self, blocks) -> dict:
        """The given coordinates of the stored dimensions (``sample`` by default its
        index), checked against the sizes of the states."""
        sizes = {}
        for dims, block in zip(self.dims, blocks):
            sizes.update((d, n) for d, n in zip(dims, block.shape) if d != "time")
        unknown = sorted(set(self.coords) - set(sizes))
        if unknown:
            raise ValueError(f"coords: dimensions {unknown} are not stored; expected some of "
                             f"{sorted(sizes)}")
        out = {"sample": np.arange(sizes["sample"])}
        for dim, values in self.coords.items():
            values = np.asarray(values)
            if values.shape != (sizes[dim],):
                raise ValueError(f"coords: {dim!r} has shape {values.shape}, expected "
                                 f"({sizes[dim]},) like the states")
            out[dim] = values.astype(object) if values.dtype.kind == "U" else values
        return out

    def add(self, states: list[torch.Tensor]) -> None:
        for buf, s in zip(self.buffer, states):
            buf.append(s.detach().cpu())
        if self.store is not None and len(self.buffer[0]) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if not self.buffer[0]:
            return
        n = len(self.buffer[0])
        blocks = [torch.stack(buf, 1).float().numpy() for buf in self.buffer]
        time = self.start_time + np.arange(self.written + 1, self.written + n + 1) * (
            self.step_time)
        if self.group is None:
            encoding = {name: {"chunks": (b.shape[0], self.chunk, *b.shape[2:])}
                        for name, b in zip(self.names, blocks)}
            encoding["time"] = {"chunks": (self.chunk,)}
            coords = {"time": ("time", time, {"long_name": "time of the state (start_time + "
                                                           "step * step_time)"}),
                      **self._coordinates(blocks)}
            xr.Dataset({name: (d, b) for name, d, b in zip(self.names, self.dims, blocks)},
                       coords=coords, attrs=self.attrs).to_zarr(
                self.store, mode="w-", consolidated=False, encoding=encoding)
            self.group = zarr.open_group(self.store, mode="r+")
        else:
            end = self.written + n
            for name, b in zip(self.names, blocks):
                array = self.group[name]
                array.resize((b.shape[0], end, *b.shape[2:]))
                array[:, self.written : end] = b
            self.group["time"].resize((end,))
            self.group["time"][self.written : end] = time
        self.written += n
        self.buffer = [[] for _ in self.names]

    def finish(self, valid_steps: torch.Tensor, blowup_step: torch.Tensor, n_steps: int,
               report: str):
        if self.store is None:
            out = [torch.stack(buf, 1) for buf in self.buffer]
            missing = n_steps - out[0].shape[1]
            if missing:  # every trajectory blew up: the rest is NaN too
                out = [torch.cat([o, torch.full((o.shape[0], missing, *o.shape[2:]),
                                                math.nan, dtype=o.dtype, device=o.device)], 1)
                       for o in out]
            return out
        self.flush()
        xr.Dataset({
            "valid_steps": ("sample", valid_steps.numpy(),
                            {"description": "steps before the blow-up guard stopped the "
                                            "trajectory"}),
            "blowup_step": ("sample", blowup_step.numpy(),
                            {"description": "1-based step at which the blow-up guard fired "
                                            "(NaN/Inf or norm above growth_limit times the "
                                            "initial one); 0: never"}),
        }).to_zarr(self.store, mode="a", consolidated=False)
        self.group.attrs.update({"n_steps_requested": n_steps, "steps_run": self.written,
                                 "guard": report})
        consolidate_metadata(self.store)
        return None


def rollout(model: torch.nn.Module, initial_state, n_steps: int, *,
            layout: FieldLayout | None = None, growth_limit: float = 1e3,
            store: str | os.PathLike | None = None, chunk: int = 16,
            step_time: float | None = None, start_time: float = 0.0,
            coords: Mapping | None = None, attrs: Mapping | None = None) -> RolloutResult:
    """Roll ``model`` out autoregressively for ``n_steps`` steps from ``initial_state``.

    Parameters
    ----------
    model : nn.Module
        Field model ``(B, t_in*C, X, Y) -> (B, t_out*C, X, Y)`` or particle model
        ``(positions, velocities, charges) -> positions or (positions, velocities)``.
        It must treat samples independently (it is called on the surviving ones only).
    initial_state : torch.Tensor or tuple
        Fields ``(B, t_in, C, X, Y)`` (needs ``layout``); particles ``(positions,
        velocities, charges)``. Of the floating dtype of the model's parameters.
    n_steps : int
        Frames to produce (model calls for fields: ``ceil(n_steps / t_out)``).
    layout : FieldLayout, optional
        Required for fields.
    growth_limit : float
        Stop a trajectory whose state norm exceeds ``growth_limit`` times the initial one.
    store : path, optional
        Stream the states to this new zarr store instead of returning them.
    chunk : int
        Steps kept in memory between appends to ``store``.
    step_time : float, optional
        Time per step: the spacing of the store's time coordinate, and the finite-difference
        step for particle models that predict positions only (then required).
    start_time : float
        Time of the initial state (of its last frame for fields): step ``k`` (1-based) is
        stored at ``start_time + k * step_time``.
    coords : mapping, optional
        Coordinate values of the store by dimension: ``sample``, ``x``, ``y``,
        ``component`` (fields); ``sample``, ``particle``, ``spatial`` (particles); each 1-D
        of the states' length along it. ``sample`` defaults to ``0 .. B - 1``.
        :func:`store_coordinates` takes them from the dataset the states came from.
    attrs : mapping, optional
        Attributes of the store besides those :func:`rollout` writes (``written_by``,
        ``growth_limit``, ``representations``, fields: ``group``; at the end
        ``n_steps_requested``, ``steps_run``, ``guard``), e.g. model name, checkpoint and
        data paths, start frame. Values are JSON-ready (str, numbers, lists).

    Returns
    -------
    RolloutResult

    Raises
    ------
    ValueError
        Bad arguments, or an initial state whose dtype differs from the model's (both
        named).
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps: expected a positive integer, got {n_steps!r}")
    if not growth_limit > 1:
        raise ValueError(f"growth_limit: expected a number > 1, got {growth_limit!r}")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk: expected a positive integer, got {chunk!r}")
    store = os.fspath(store) if store is not None else None
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None else torch.device("cpu")
    if param is not None:
        for t in (initial_state if isinstance(initial_state, (tuple, list))
                  else (initial_state,)):
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != param.dtype:
                raise ValueError(
                    f"initial_state: dtype {t.dtype} differs from the model's parameters "
                    f"({param.dtype}); expected one dtype: cast the state (e.g. "
                    f".to({param.dtype})) or the model (model.to({t.dtype}))")
    if not (isinstance(start_time, (int, float)) and math.isfinite(start_time)):
        raise ValueError(f"start_time: expected a finite number, got {start_time!r}")
    for name, value in (("coords", coords), ("attrs", attrs)):
        if value is not None and not isinstance(value, Mapping):
            raise ValueError(f"{name}: expected a mapping or None, got {type(value).__name__}")
    store_info = (float(start_time), dict(coords or {}),
                  {**dict(attrs or {}), "written_by": ROLLOUT_MARKER,
                   "growth_limit": float(growth_limit)})
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if isinstance(initial_state, (tuple, list)):
                return _particles(model, initial_state, n_steps, growth_limit, store, chunk,
                                  step_time, device, store_info)
            if layout is None:
                raise ValueError("layout: a FieldLayout is required to roll out a field model")
            return _fields(model, initial_state, n_steps, layout, growth_limit, store, chunk,
                           step_time, device, store_info)
    finally:
        model.train(was_training)


def _guard(new: torch.Tensor, ref_norm: torch.Tensor, limit: float) -> torch.Tensor:
    norms = _norms(new)
    return torch.isfinite(norms) & (norms <= limit * ref_norm)


class _Guard:
    """Per-sample alive mask, valid-step count and blow-up step."""

    def __init__(self, b: int):
        self.alive = torch.ones(b, dtype=torch.bool)
        self.valid = torch.zeros(b, dtype=torch.long)
        self.blowup = torch.zeros(b, dtype=torch.long)

    def update(self, ok: torch.Tensor, step: int) -> None:
        ok = ok & self.alive
        self.blowup[self.alive & ~ok] = step
        self.valid += ok.long()
        self.alive = ok

    def result(self, states, store, n_steps, steps_run) -> RolloutResult:
        return RolloutResult(states, self.valid, ~self.alive, store, self.blowup, n_steps,
                             steps_run)


def _fields(model, state, n_steps, layout, limit, store, chunk, step_time, device, store_info):
    if not isinstance(state, torch.Tensor) or state.ndim != 5 or (
            state.shape[2] != layout.frame_channels):
        raise ValueError(
            f"initial_state: expected (batch, t_in, {layout.frame_channels}, X, Y) frames, got "
            f"{getattr(state, 'shape', type(state).__name__)}"
        )
    if not torch.isfinite(state).all():
        raise ValueError("initial_state: contains NaN or Inf; expected finite frames")
    b, t_in, c, nx, ny = state.shape
    window = state.to(device)
    ref = _norms(window[:, -1]).clamp_min(1e-30)
    guard = _Guard(b)
    dims = []
    for kind in layout.kinds:
        extra = ("component",) if kind == "T1" else ()
        dims.append(("sample", "time", "x", "y") + extra)
    start_time, coords, attrs = store_info
    attrs = {**attrs, "group": repr(layout.group),
             "representations": json.dumps(dict(zip(layout.variables, layout.kinds)))}
    # in memory the frames stay whole (one buffer); a store gets one array per variable
    names = layout.variables if store is not None else ("frames",)
    sink = _Sink(names, dims, store, chunk, step_time or 1.0, start_time, coords, attrs)
    done = 0
    while done < n_steps and guard.alive.any():
        idx = guard.alive.nonzero()[:, 0].to(device)
        out = model(layout.pack(window[idx]))
        t_out = out.shape[1] // c
        new = torch.full((b, t_out, *window.shape[2:]), math.nan, dtype=window.dtype,
                         device=device)
        new[idx] = layout.unpack(out, t_out).to(window.dtype)
        for j in range(min(t_out, n_steps - done)):
            if not guard.alive.any():
                break
            frame = new[:, j]
            guard.update(_guard(frame, ref, limit).cpu(), done + 1)
            frame = torch.where(guard.alive.to(device)[:, None, None, None], frame,
                                torch.full_like(frame, math.nan))
            sink.add(_split_fields(frame, layout) if store is not None else [frame])
            done += 1
        slid = torch.cat([window, new], dim=1)[:, -t_in:]
        window = torch.where(guard.alive.to(device)[:, None, None, None, None], slid, window)
    states = sink.finish(guard.valid, guard.blowup, n_steps,
                         guard_report(guard.blowup, n_steps, done))
    return guard.result(states[0] if states is not None else None, store, n_steps, done)
def _split_fields(frame: torch.Tensor, layout: FieldLayout) -> list[torch.Tensor]:
    parts, start = [], 0
    for kind in layout.kinds:
        if kind == "T1":
            parts.append(frame[:, start : start + 2].movedim(1, -1))
            start += 2
        else:
            parts.append(frame[:, start])
            start += 1
    return parts


def _particles(model, state, n_steps, limit, store, chunk, step_time, device, store_info):
    if len(state) != 3:
        raise ValueError(
            f"initial_state: expected (positions, velocities, charges), got {len(state)} tensors"
        )
    x, v, q = (t.to(device) for t in state)
    for name, t in (("positions", x), ("velocities", v), ("charges", q)):
        if not torch.isfinite(t).all():
            raise ValueError(f"initial_state: {name} contain NaN or Inf; expected finite values")
    b = x.shape[0]
    ref = _norms(torch.cat([x, v], -1)).clamp_min(1e-30)
    guard = _Guard(b)
    dims = [("sample", "time", "particle", "spatial")] * 2
    start_time, coords, attrs = store_info
    attrs = {**attrs, "representations": json.dumps({"position": "T1", "velocity": "T1"})}
    sink = _Sink(("position", "velocity"), dims, store, chunk, step_time or 1.0, start_time,
                 coords, attrs)
    done = 0
    while done < n_steps and guard.alive.any():
        idx = guard.alive.nonzero()[:, 0].to(device)
        out = model(x[idx], v[idx], q[idx])
        if isinstance(out, (tuple, list)):
            x_out, v_out = out
        else:
            if step_time is None:
                raise ValueError(
                    "step_time: required to estimate velocities for a model that predicts "
                    "positions only"
                )
            x_out, v_out = out, (out - x[idx]) / step_time
        x_new, v_new = torch.full_like(x, math.nan), torch.full_like(v, math.nan)
        x_new[idx], v_new[idx] = x_out.to(x.dtype), v_out.to(v.dtype)
        done += 1
        guard.update(_guard(torch.cat([x_new, v_new], -1), ref, limit).cpu(), done)
        mask = guard.alive.to(device)[:, None, None]
        nan = torch.full_like(x_new, math.nan)
        sink.add([torch.where(mask, x_new, nan), torch.where(mask, v_new, nan)])
        x, v = torch.where(mask, x_new, x), torch.where(mask, v_new, v)
    states = sink.finish(guard.valid, guard.blowup, n_steps,
                         guard_report(guard.blowup, n_steps, done))
    return guard.result(tuple(states) if states is not None else None, store, n_steps, done)


def store_coordinates(ds: xr.Dataset, samples, frame: int) -> dict:
    """``coords`` and ``start_time`` of :func:`rollout` for states taken from ``ds``.

    Parameters
    ----------
    ds : xarray.Dataset
        The dataset the initial states come from.
    samples : sequence of int
        Positions (``isel``) along ``sample`` of the rolled-out samples.
    frame : int
        Position along ``time`` of the initial state (fields: its last frame, ``start +
        t_in - 1``).

    Returns
    -------
    dict
        ``{"coords": {...}, "start_time": float}``, to pass as ``**`` to :func:`rollout`:
        the ``sample`` values of ``samples``, the data's ``x``, ``y``, ``component``,
        ``particle`` and ``spatial`` coordinates that it has, and ``ds.time[frame]``.

    Raises
    ------
    ValueError
        ``frame`` outside the data's time axis (both named).
    """
    n_time = ds.sizes.get("time", 0)
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or not (
            0 <= frame < n_time):
        raise ValueError(f"frame: expected a frame index in [0, {n_time}), got {frame!r}")
    coords = {"sample": np.asarray(ds["sample"].values)[np.asarray(samples, dtype=np.int64)]}
    for dim in ("x", "y", "component", "particle", "spatial"):
        if dim in ds.coords:
            coords[dim] = np.asarray(ds[dim].values)
    return {"coords": coords, "start_time": float(ds["time"].values[frame])}


def solver_rollout(model: torch.nn.Module, solver, initial_state, n_steps: int,
                   **rollout_kwargs) -> tuple[RolloutResult, torch.Tensor | tuple]:
    """Learned and numerical trajectories from the same initial state, side by side.

    Parameters
    ----------
    model : nn.Module
        The surrogate (see :func:`rollout`).
    solver : callable
        ``solver(initial_state, n_steps)`` returning the true states in the layout of
        :attr:`RolloutResult.states` (e.g. :func:`grepsnet_sciml.solvers.reference.
        navier_stokes_solver` or ``particle_solver``).
    initial_state, n_steps, rollout_kwargs
        As for :func:`rollout`.

    Returns
    -------
    (RolloutResult, truth)
    """
    learned = rollout(model, initial_state, n_steps, **rollout_kwargs)
    return learned, solver(initial_state, n_steps)
