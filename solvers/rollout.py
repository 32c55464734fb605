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
a norm above ``growth_limit * ||initial state||``; from that step on its frames are NaN,
``valid_steps[b]`` counts the good steps and the other trajectories go on.

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
>>> result.states.shape, result.valid_steps.tolist()
(torch.Size([3, 5, 1, 8, 8]), [5, 5, 5])
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
import zarr

from .data import FieldLayout

__all__ = ["RolloutResult", "rollout", "solver_rollout"]


@dataclass
class RolloutResult:
    """Output of :func:`rollout`.

    Attributes
    ----------
    states : torch.Tensor or tuple or None
        Fields ``(batch, n_steps, C, X, Y)``; particles ``(positions, velocities)`` each
        ``(batch, n_steps, N, 3)``; None when streamed to ``store``. Step ``k`` (0-based)
        is the state ``k + 1`` model steps after the initial state.
    valid_steps : torch.Tensor
        ``(batch,)`` long: steps before the blow-up guard stopped the trajectory.
    blown_up : torch.Tensor
        ``(batch,)`` bool.
    store : str or None
        The zarr store holding the states (``xarray.open_zarr(store, consolidated=False)``).
    """

    states: torch.Tensor | tuple | None
    valid_steps: torch.Tensor
    blown_up: torch.Tensor
    store: str | None = None


def _norms(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x.reshape(x.shape[0], -1).double(), dim=1)


class _Sink:
    """Collects steps in memory or flushes them to a zarr store every ``chunk`` steps."""

    def __init__(self, names, dims, shapes, n_steps, store, chunk, step_time):
        self.names, self.dims, self.store, self.chunk = names, dims, store, chunk
        self.buffer: list[list[torch.Tensor]] = [[] for _ in names]
        self.written = 0
        if store is not None:
            if os.path.exists(store):
                raise FileExistsError(f"store: {store!r} already exists; choose a new path")
            import dask.array as da

            data = {n: (d, da.zeros((s[0], n_steps, *s[1:]), chunks=(s[0], chunk, *s[1:]),
                                    dtype=np.float32))
                    for n, d, s in zip(names, dims, shapes)}
            time = (np.arange(1, n_steps + 1) * step_time).astype(np.float64)
            xr.Dataset(data, coords={"time": time}).to_zarr(store, compute=False, mode="w-",
                                                               consolidated=False)
            group = zarr.open_group(store, mode="r+")
            self.arrays = {name: group[name] for name in names}  # opened once, written per chunk

    def add(self, states: list[torch.Tensor]) -> None:
        for buf, s in zip(self.buffer, states):
            buf.append(s.detach().cpu())
        if self.store is not None and len(self.buffer[0]) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if not self.buffer[0]:
            return
        n = len(self.buffer[0])
        for name, buf in zip(self.names, self.buffer):
            self.arrays[name][:, self.written : self.written + n] = torch.stack(
                buf, 1).float().numpy()
        self.written += n
        self.buffer = [[] for _ in self.names]

    def finish(self, valid_steps: torch.Tensor):
        if self.store is None:
            return [torch.stack(buf, 1) for buf in self.buffer]
        self.flush()
        xr.Dataset({"valid_steps": ("sample", valid_steps.numpy())}).to_zarr(
            self.store, mode="a", consolidated=False)
        return None


def rollout(model: torch.nn.Module, initial_state, n_steps: int, *,
            layout: FieldLayout | None = None, growth_limit: float = 1e3,
            store: str | os.PathLike | None = None, chunk: int = 16,
            step_time: float | None = None) -> RolloutResult:
    """Roll ``model`` out autoregressively for ``n_steps`` steps from ``initial_state``.

    Parameters
    ----------
    model : nn.Module
        Field model ``(B, t_in*C, X, Y) -> (B, t_out*C, X, Y)`` or particle model
        ``(positions, velocities, charges) -> positions or (positions, velocities)``.
    initial_state : torch.Tensor or tuple
        Fields ``(B, t_in, C, X, Y)`` (needs ``layout``); particles ``(positions,
        velocities, charges)``.
    n_steps : int
        Frames to produce (model calls for fields: ``ceil(n_steps / t_out)``).
    layout : FieldLayout, optional
        Required for fields.
    growth_limit : float
        Stop a trajectory whose state norm exceeds ``growth_limit`` times the initial one.
    store : path, optional
        Stream the states to this new zarr store instead of returning them.
    chunk : int
        Steps kept in memory between flushes to ``store``.
    step_time : float, optional
        Time per step: the store's time coordinate, and the finite-difference step for
        particle models that predict positions only (then required).

    Returns
    -------
    RolloutResult
    """
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps: expected a positive integer, got {n_steps!r}")
    if not growth_limit > 1:
        raise ValueError(f"growth_limit: expected a number > 1, got {growth_limit!r}")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk: expected a positive integer, got {chunk!r}")
    store = os.fspath(store) if store is not None else None
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if isinstance(initial_state, (tuple, list)):
                return _particles(model, initial_state, n_steps, growth_limit, store, chunk,
                                  step_time, device)
            if layout is None:
                raise ValueError("layout: a FieldLayout is required to roll out a field model")
            return _fields(model, initial_state, n_steps, layout, growth_limit, store, chunk,
                           step_time, device)
    finally:
        model.train(was_training)


def _guard(new: torch.Tensor, ref_norm: torch.Tensor, limit: float) -> torch.Tensor:
    norms = _norms(new)
    return torch.isfinite(norms) & (norms <= limit * ref_norm)


def _fields(model, state, n_steps, layout, limit, store, chunk, step_time, device):
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
    alive = torch.ones(b, dtype=torch.bool)
    valid = torch.zeros(b, dtype=torch.long)
    dims, shapes = [], []
    for kind in layout.kinds:
        extra = ("component",) if kind == "T1" else ()
        dims.append(("sample", "time", "x", "y") + extra)
        shapes.append((b, nx, ny) + ((2,) if kind == "T1" else ()))
    sink = _Sink(layout.variables, dims, shapes, n_steps, store, chunk, step_time or 1.0)
    done = 0
    while done < n_steps:
        out = model(layout.pack(window))
        t_out = out.shape[1] // c
        new = layout.unpack(out, t_out)
        for j in range(min(t_out, n_steps - done)):
            frame = new[:, j]
            ok = _guard(frame, ref, limit).cpu() & alive
            valid += ok.long()
            alive = ok
            frame = torch.where(alive.to(device)[:, None, None, None], frame,
                                torch.full_like(frame, math.nan))
            sink.add(_split_fields(frame, layout) if store is not None else [frame])
            done += 1
        slid = torch.cat([window, new], dim=1)[:, -t_in:]
        window = torch.where(alive.to(device)[:, None, None, None, None], slid, window)
    states = sink.finish(valid)
    return RolloutResult(states[0] if states is not None else None, valid, ~alive, store)


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


def _particles(model, state, n_steps, limit, store, chunk, step_time, device):
    if len(state) != 3:
        raise ValueError(
            f"initial_state: expected (positions, velocities, charges), got {len(state)} tensors"
        )
    x, v, q = (t.to(device) for t in state)
    for name, t in (("positions", x), ("velocities", v), ("charges", q)):
        if not torch.isfinite(t).all():
            raise ValueError(f"initial_state: {name} contain NaN or Inf; expected finite values")
    b, n = x.shape[:2]
    ref = _norms(torch.cat([x, v], -1)).clamp_min(1e-30)
    alive = torch.ones(b, dtype=torch.bool)
    valid = torch.zeros(b, dtype=torch.long)
    dims = [("sample", "time", "particle", "spatial")] * 2
    sink = _Sink(("position", "velocity"), dims, [(b, n, x.shape[-1])] * 2, n_steps, store,
                 chunk, step_time or 1.0)
    for _ in range(n_steps):
        out = model(x, v, q)
        if isinstance(out, (tuple, list)):
            x_new, v_new = out
        else:
            if step_time is None:
                raise ValueError(
                    "step_time: required to estimate velocities for a model that predicts "
                    "positions only"
                )
            x_new, v_new = out, (out - x) / step_time
        ok = _guard(torch.cat([x_new, v_new], -1), ref, limit).cpu() & alive
        valid += ok.long()
        alive = ok
        mask = alive.to(device)[:, None, None]
        nan = torch.full_like(x_new, math.nan)
        sink.add([torch.where(mask, x_new, nan), torch.where(mask, v_new, nan)])
        x, v = torch.where(mask, x_new, x), torch.where(mask, v_new, v)
    states = sink.finish(valid)
    return RolloutResult(tuple(states) if states is not None else None, valid, ~alive, store)


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
