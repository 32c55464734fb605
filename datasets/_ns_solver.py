"""Pseudo-spectral solver for 2D incompressible Navier-Stokes in vorticity form.

Equation on the unit torus ``[0, 1)^2``::

    dw/dt + u . grad w = nu Laplacian w + f,     u = (d psi/dy, -d psi/dx),   -Laplacian psi = w

with the vorticity ``w(x, y)`` indexed ``[..., x, y]`` on the grid ``x_i = i / N``.

Two time integrators share the spectral discretisation (``rfft2`` along ``(x, y)``, the
nonlinear term ``u . grad w`` formed in physical space and 2/3-dealiased,
``|k_x|, |k_y| <= (2/3)(N/2)``):

- ``scheme="fno"``: the FNO/G-FNO reference generator's scheme, Crank-Nicolson on the
  viscous term with explicit Euler advection and forcing,
  ``w_hat <- (-dt F_hat + dt f_hat + (1 - dt nu lap / 2) w_hat) / (1 + dt nu lap / 2)``,
  ``dt = 1e-4``, with the reference's wavenumber conventions (Nyquist entries ``-N/2``,
  ``lap[0, 0] = 1``). Its Nyquist treatment differs between the two axes, which breaks the
  grid symmetries at about 3e-7.
- ``scheme="fast"`` (default): Lawson's integrating-factor RK4 (the viscous term exactly
  through ``exp(-nu 4 pi^2 |k|^2 t)``, advection and forcing by classical RK4) with large
  CFL-adaptive steps chosen per sample (or fixed steps). The Nyquist modes are zeroed
  (state, forcing and odd derivatives), so every grid symmetry of the forcing holds to
  round-off.

Examples
--------
>>> import math, torch
>>> n = 16
>>> x = torch.arange(n, dtype=torch.float64) / n
>>> w0 = torch.cos(2 * math.pi * (x[:, None] + 2 * x[None, :]))[None]  # |k|^2 = 5
>>> solver = NavierStokes2D(n, viscosity=1e-3, forcing=None)
>>> w1 = solver.advance(w0, 0.5)
>>> exact = w0 * math.exp(-1e-3 * 4 * math.pi**2 * 5 * 0.5)
>>> bool(((w1 - exact).norm() / exact.norm()) < 1e-12)
True
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from tqdm import tqdm

from ._ns_spectral import FORCINGS, forcing_field, wavenumbers

__all__ = [
    "NavierStokes2D", "SCHEMES", "FNO_DT", "FAST_DT", "default_dt", "per_field", "record_count",
]

SCHEMES = ("fast", "fno")
#: Time step of the FNO/G-FNO reference generator.
FNO_DT = 1e-4
#: Default largest step of the fast scheme; the CFL condition usually sets a shorter one
#: (the presets' flows reach max|u| + max|v| of about 0.1 to 0.8).
FAST_DT = 1.0 / 32


def per_field(transform, x: torch.Tensor, **kwargs) -> torch.Tensor:
    """Apply a 2D ``torch.fft`` function to each field ``x[..., :, :]`` on its own.

    torch's FFT backends round a batched transform differently from a single one (MKL, and
    on some CPUs with the field's place in the batch or its memory alignment), so that
    batching would tie a sample's bits to the samples simulated beside it. Every call here
    transforms one freshly allocated (so 64-byte aligned) contiguous field of the same shape,
    whatever the batch, chunk or sample count.

    Parameters
    ----------
    transform : callable
        ``torch.fft.rfft2`` or ``torch.fft.irfft2`` (over the last two axes).
    x : torch.Tensor
        ``(..., A, B)`` fields.
    **kwargs
        Passed to ``transform`` (e.g. ``s=(N, N)``).

    Returns
    -------
    torch.Tensor
        ``(..., A', B')``: the transforms stacked in the order of ``x``.
    """
    fields = x.reshape(-1, *x.shape[-2:])
    out = torch.stack([transform(f.clone(), **kwargs) for f in fields])
    return out.reshape(*x.shape[:-2], *out.shape[-2:])


def default_dt(scheme: str) -> float:
    """Default (largest) time step: ``1e-4`` for ``"fno"``; ``FAST_DT = 1/32`` for ``"fast"``."""
    if scheme == "fno":
        return FNO_DT
    return FAST_DT


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
    return dtype


class NavierStokes2D:
    """Batched pseudo-spectral stepper on ``(batch, N, N)`` vorticity tensors.

    Parameters
    ----------
    resolution : int
        Even grid size ``N`` (simulation resolution).
    viscosity : float
        Kinematic viscosity ``nu > 0``.
    forcing : {"fno", "symmetric"}, None, or array of shape (N, N)
        Time-independent forcing ``f`` of the vorticity equation.
    scheme : {"fast", "fno"}
        Time integrator (see the module docstring).
    dt : float, optional
        ``"fno"``: the exact step (default ``1e-4``); ``"fast"``: the largest step
        (default ``FAST_DT = 1/32``).
    cfl : float or None
        Fast scheme: target CFL number ``dt (max|u| + max|v|) N`` of per-sample adaptive
        steps (default 1.0): before each step, sample ``i`` takes
        ``min(dt, cfl / (N (max|u_i| + max|v_i|)))``, shortened so that the steps end exactly
        on the record times. Each sample's steps depend on its own state only, so results
        do not depend on the batch. ``None``: fixed equal steps not above ``dt``.
    cfl_max : float
        With fixed steps, a step whose CFL number exceeds this raises ``RuntimeError``
        (the IF-RK4 limit with 2/3 dealiasing is about 1.35).
    dtype : torch.dtype
        ``torch.float64`` (default) or ``torch.float32``.
    device : str or torch.device
        Where the computation runs.
    """

    def __init__(
        self,
        resolution: int,
        viscosity: float,
        forcing: str | None | np.ndarray | torch.Tensor = "symmetric",
        scheme: str = "fast",
        dt: float | None = None,
        cfl: float | None = 1.0,
        cfl_max: float = 1.0,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ):
        if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)):
            raise ValueError(f"resolution: expected a positive even integer, got {resolution!r}")
        if resolution < 4 or resolution % 2:
            raise ValueError(f"resolution: expected an even integer >= 4, got {resolution!r}")
        if not (isinstance(viscosity, (int, float)) and math.isfinite(viscosity) and viscosity > 0):
            raise ValueError(f"viscosity: expected a positive number, got {viscosity!r}")
        if scheme not in SCHEMES:
            raise ValueError(f"scheme: unknown scheme {scheme!r}; expected one of {list(SCHEMES)}")
        if dt is None:
            dt = default_dt(scheme)
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt: expected a positive time step, got {dt!r}")
        if not (isinstance(cfl_max, (int, float)) and cfl_max > 0):
            raise ValueError(f"cfl_max: expected a positive number, got {cfl_max!r}")
        if cfl is not None and not (isinstance(cfl, (int, float)) and 0 < cfl <= cfl_max):
            raise ValueError(f"cfl: expected None or a number in (0, cfl_max], got {cfl!r}")
        self.cfl = None if cfl is None else float(cfl)
        self.resolution = int(resolution)
        self.viscosity = float(viscosity)
        self.scheme = scheme
        self.dt = float(dt)
        self.cfl_max = float(cfl_max)
        self.dtype = _real_dtype(dtype)
        self.device = torch.device(device)
        self.forcing = self._forcing_grid(forcing)
        self._build_operators()
        self._factors: dict[float, tuple[torch.Tensor, ...]] = {}

    # ----- set-up -----------------------------------------------------------------------
    def _forcing_grid(self, forcing) -> torch.Tensor:
        n = self.resolution
        if forcing is None:
            f = torch.zeros(n, n, dtype=torch.float64)
        elif isinstance(forcing, str):
            if forcing not in FORCINGS:
                raise ValueError(
                    f"forcing: unknown forcing {forcing!r}; expected one of "
                    f"{list(FORCINGS)}, None or an array of shape ({n}, {n})"
                )
            f = forcing_field(forcing, n)
        else:
            f = torch.as_tensor(np.asarray(forcing) if not torch.is_tensor(forcing) else forcing)
            if tuple(f.shape) != (n, n):
                raise ValueError(
                    f"forcing: expected an array of shape ({n}, {n}), got {tuple(f.shape)}"
                )
            f = f.detach().cpu().to(torch.float64)
            if not torch.isfinite(f).all():
                raise ValueError("forcing: the array contains NaN or Inf; expected finite values")
        return f.to(self.dtype).to(self.device)

    def _build_operators(self) -> None:
        n = self.resolution
        cdtype = torch.complex128 if self.dtype == torch.float64 else torch.complex64
        kx, ky = wavenumbers(n, "negative")
        k_max = n // 2
        # the reference compares |k| <= (2/3) k_max in floating point
        dealias = (kx.abs() <= (2.0 / 3.0) * k_max) & (ky.abs() <= (2.0 / 3.0) * k_max)
        lap = 4 * math.pi**2 * (kx**2 + ky**2)
        if self.scheme == "fno":
            lap[0, 0] = 1.0
            inv_lap = 1.0 / lap
            dkx, dky = kx, ky
            keep = torch.ones_like(lap)
        else:
            inv_lap = torch.where(lap > 0, 1.0 / torch.where(lap > 0, lap, 1.0), 0.0)
            dkx, dky = wavenumbers(n, "zero")
            keep = ((kx.abs() < k_max) & (ky.abs() < k_max)).to(torch.float64)
        dev = self.device
        self._lap = lap.to(self.dtype).to(dev)
        self._inv_lap = inv_lap.to(self.dtype).to(dev)
        self._dx = (2 * math.pi * dkx * 1j).to(cdtype).to(dev)
        self._dy = (2 * math.pi * dky * 1j).to(cdtype).to(dev)
        self._dealias = dealias.to(self.dtype).to(dev)
        self._keep = keep.to(self.dtype).to(dev)
        # Basdevant form of the fast scheme: (u . grad w)^ = -4 pi^2 [k_x k_y (v^2 - u^2)^
        # + (k_x^2 - k_y^2) (u v)^], dealiased
        scale = -4 * math.pi**2 * dealias.to(torch.float64)
        self._dxy = (scale * dkx * dky).to(self.dtype).to(dev)
        self._dxx_yy = (scale * (dkx**2 - dky**2)).to(self.dtype).to(dev)
        self._f_hat = self.to_spectral(self.forcing)

    # ----- spectral helpers -------------------------------------------------------------
    def to_spectral(self, w: torch.Tensor) -> torch.Tensor:
        """``rfft2`` over the last two axes; the fast scheme zeroes the Nyquist modes."""
        w_hat = per_field(torch.fft.rfft2, w)
        return w_hat if self.scheme == "fno" else w_hat * self._keep

    def to_physical(self, w_hat: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_spectral`: ``(..., N, N//2+1)`` -> ``(..., N, N)``."""
        n = self.resolution
        return per_field(torch.fft.irfft2, w_hat, s=(n, n))

    def velocity(self, w: torch.Tensor) -> torch.Tensor:
        """Velocity ``u = (d psi/dy, -d psi/dx)`` with ``-Laplacian psi = w``.

        ``(batch, N, N)`` or ``(N, N)`` -> the same with a last axis of 2, ordered ``(x, y)``.
        """
        w, squeeze = self._batched(w, "w")
        u = self._velocity_spectral(self.to_spectral(w))
        return u[0] if squeeze else u

    def _velocity_spectral(self, w_hat: torch.Tensor) -> torch.Tensor:
        psi_hat = w_hat * self._inv_lap
        uv = self.to_physical(torch.stack((self._dy * psi_hat, -self._dx * psi_hat), dim=-3))
        return uv.movedim(-3, -1)

    def _advection(self, w_hat: torch.Tensor, with_speed: bool = True):
        """Dealiased ``F_hat = (u . grad w)^`` and ``max|u| + max|v|`` per batch element
        (``None`` unless ``with_speed``).

        The fast scheme uses Basdevant's form ``u . grad w = d_xy (v^2 - u^2) +
        (d_xx - d_yy)(u v)`` (valid for divergence-free ``u``): 4 FFTs instead of 5. The fno
        scheme forms ``u w_x + v w_y`` as the reference does.
        """
        psi_hat = w_hat * self._inv_lap
        if self.scheme == "fast":
            u, v = self.to_physical(
                torch.stack((self._dy * psi_hat, -self._dx * psi_hat), dim=-3)
            ).unbind(-3)
            products = per_field(torch.fft.rfft2, torch.stack((v * v - u * u, u * v), dim=-3))
            f_hat = self._dxy * products[..., 0, :, :] + self._dxx_yy * products[..., 1, :, :]
            if not with_speed:
                return f_hat, None
            return f_hat, u.abs().amax((-2, -1)) + v.abs().amax((-2, -1))
        spec = torch.stack(
            (self._dy * psi_hat, -self._dx * psi_hat, self._dx * w_hat, self._dy * w_hat), dim=-3
        )
        u, v, w_x, w_y = self.to_physical(spec).unbind(-3)
        f_hat = per_field(torch.fft.rfft2, u * w_x + v * w_y) * self._dealias
        speed = u.abs().amax((-2, -1)) + v.abs().amax((-2, -1))
        return f_hat, speed

    def _step_factors(self, step: float) -> tuple[torch.Tensor, ...]:
        if step not in self._factors:
            a = step * self.viscosity * self._lap
            if self.scheme == "fno":
                self._factors[step] = (1.0 - 0.5 * a, 1.0 + 0.5 * a)
            else:
                half = torch.exp(-0.5 * a)
                self._factors[step] = (half, half * half)
        return self._factors[step]

    def _fno_step(self, w_hat: torch.Tensor, step: float) -> tuple[torch.Tensor, torch.Tensor]:
        cn_minus, cn_plus = self._step_factors(step)
        adv, speed = self._advection(w_hat)
        w_new = (-step * adv + step * self._f_hat + cn_minus * w_hat) / cn_plus
        return w_new, speed

    def _rk4(self, w_hat: torch.Tensor, adv: torch.Tensor, step) -> torch.Tensor:
        """Lawson IF-RK4 step of size ``step`` (a float, or ``(batch, 1, 1)`` per sample),
        given ``adv`` = the advection term at ``w_hat``."""
        if isinstance(step, float):
            e1, e2 = self._step_factors(step)
        else:
            # one exp per sample: torch's vectorised and scalar (loop tail) exp differ in
            # the last bit, and a batched call's tail position depends on the batch size
            e1 = torch.stack([torch.exp(s * self._lap) for s in (-0.5 * self.viscosity) * step])
            e2 = e1 * e1
        n1 = self._f_hat - adv
        n2 = self._f_hat - self._advection(e1 * (w_hat + 0.5 * step * n1), False)[0]
        n3 = self._f_hat - self._advection(e1 * w_hat + 0.5 * step * n2, False)[0]
        n4 = self._f_hat - self._advection(e2 * w_hat + step * e1 * n3, False)[0]
        return e2 * w_hat + (step / 6.0) * (e2 * n1 + 2.0 * e1 * (n2 + n3) + n4)

    # ----- time stepping ----------------------------------------------------------------
    @property
    def adaptive(self) -> bool:
        """Whether steps follow the CFL condition (fast scheme with ``cfl`` set)."""
        return self.scheme == "fast" and self.cfl is not None

    def plan(self, interval: float, argument: str = "t_span") -> tuple[int, float]:
        """Fixed-step plan: number of steps and step size covering ``interval``.

        ``"fno"``: ``interval`` must be a multiple of ``dt``; ``"fast"``: the fewest equal
        steps not above ``dt`` (with ``cfl`` set, the steps are shortened further where the
        flow requires). ``argument`` names ``interval`` in error messages.
        """
        if not (isinstance(interval, (int, float)) and math.isfinite(interval) and interval > 0):
            raise ValueError(f"{argument}: expected a positive time span, got {interval!r}")
        if self.scheme == "fno":
            steps = round(interval / self.dt)
            if steps < 1 or abs(steps * self.dt - interval) > 1e-9 * interval:
                raise ValueError(
                    f"{argument}: {interval!r} is not a multiple of the fno scheme's dt = "
                    f"{self.dt!r}; expected k * dt"
                )
            return steps, self.dt
        steps = max(1, math.ceil(interval / self.dt - 1e-9))
        return steps, interval / steps

    def _batched(self, w, argument: str) -> tuple[torch.Tensor, bool]:
        n = self.resolution
        if not torch.is_tensor(w):
            w = torch.as_tensor(np.asarray(w))
        if w.ndim not in (2, 3) or tuple(w.shape[-2:]) != (n, n):
            raise ValueError(
                f"{argument}: expected a field ({n}, {n}) or a batch (batch, {n}, {n}), "
                f"got shape {tuple(w.shape)}"
            )
        if not torch.isfinite(w).all():
            raise ValueError(f"{argument}: contains NaN or Inf; expected finite values")
        squeeze = w.ndim == 2
        w = w.to(self.dtype).to(self.device)
        return (w[None] if squeeze else w), squeeze

    def _interval(self, w_hat, t0: float, t1: float, bar, sample_offset: int) -> torch.Tensor:
        """Integrate the batch ``(batch, N, N//2+1)`` from ``t0`` to ``t1``."""
        if self.adaptive:
            w_hat = self._adaptive_interval(w_hat, t0, t1, bar, sample_offset)
        else:
            steps, step = self.plan(t1 - t0, "record_every")
            for j in range(steps):
                if self.scheme == "fno":
                    w_hat, speed = self._fno_step(w_hat, step)
                else:
                    adv, speed = self._advection(w_hat)
                    w_hat = self._rk4(w_hat, adv, step)
                cfl = step * speed * self.resolution
                bad = ~(cfl <= self.cfl_max)
                if bad.any():
                    i = int(bad.nonzero()[0, 0])
                    self._blow_up(i, t0 + j * step, float(cfl[i]), sample_offset)
                bar.update(step)
        finite = torch.isfinite(torch.view_as_real(w_hat)).flatten(1).all(1)
        if not finite.all():
            self._blow_up(int((~finite).nonzero()[0, 0]), t1, math.nan, sample_offset)
        return w_hat

    def _adaptive_interval(self, w_hat, t0, t1, bar, sample_offset) -> torch.Tensor:
        """Per-sample CFL-adaptive IF-RK4: sample ``i`` steps with
        ``min(dt, cfl / (N (max|u| + max|v|)))``, the rest of the interval split evenly, so
        each sample's path depends on its own state alone."""
        batch = w_hat.shape[0]
        t = torch.full((batch,), float(t0), dtype=torch.float64)
        done = torch.zeros(batch, dtype=torch.bool)
        while not done.all():
            active = (~done).nonzero().flatten()
            every = len(active) == batch
            w = w_hat if every else w_hat[active.to(self.device)]
            adv, speed = self._advection(w)
            speed = speed.to(torch.float64).cpu()
            for k in range(len(active)):
                limit = self.cfl / (self.resolution * float(speed[k]))
                if not math.isfinite(float(speed[k])) or limit < 1e-6 * self.dt:
                    self._blow_up(int(active[k]), float(t[active[k]]), math.nan, sample_offset)
            remaining = t1 - t[active]
            step = torch.clamp(self.cfl / (self.resolution * speed), max=self.dt)
            count = torch.ceil(remaining / step - 1e-9).clamp(min=1)
            step = remaining / count
            w = self._rk4(w, adv, step.to(self.dtype).to(self.device)[:, None, None])
            before = float(t.min())
            t[active] += step
            done[active] = count == 1
            t[done] = t1
            if every:
                w_hat = w
            else:
                w_hat = w_hat.index_copy(0, active.to(self.device), w)
            bar.update(float(t.min()) - before)
        return w_hat

    def _blow_up(self, i: int, t: float, cfl: float, sample_offset: int):
        if math.isfinite(cfl):
            reason = (
                f"CFL number {cfl:.3g} exceeds cfl_max = {self.cfl_max} "
                f"(dt = {self.dt:g}); lower dt"
            )
        else:
            reason = "the vorticity or velocity is not finite (NaN/Inf) or unbounded"
        raise RuntimeError(
            f"sample {sample_offset + i}: simulation blew up at t = {t:.6g}: {reason}"
        )

    def advance(self, w: torch.Tensor, t_span: float, progress: bool = False) -> torch.Tensor:
        """Integrate ``(batch, N, N)`` (or ``(N, N)``) vorticity over ``t_span``.

        Returns a tensor of the same shape; pure (no state is kept between calls).
        """
        w, squeeze = self._batched(w, "w")
        self.plan(t_span)
        with tqdm(total=t_span, disable=not progress, desc="navier-stokes", unit="t") as bar:
            w_hat = self._interval(self.to_spectral(w), 0.0, t_span, bar, 0)
        w = self.to_physical(w_hat)
        return w[0] if squeeze else w

    def trajectory(
        self,
        w0: torch.Tensor,
        t_final: float,
        record_every: float,
        include_initial: bool = False,
        progress: bool = False,
    ) -> torch.Tensor:
        """Records at ``t = record_every, 2 record_every, ..., t_final`` (and ``t = 0``).

        ``(batch, N, N)`` -> ``(batch, time, N, N)``.
        """
        w0, squeeze = self._batched(w0, "w0")
        records = [
            self.to_physical(w_hat)
            for _, w_hat in self.records(w0, t_final, record_every, include_initial, progress)
        ]
        out = torch.stack(records, dim=-3)
        return out[0] if squeeze else out

    def records(
        self,
        w0: torch.Tensor,
        t_final: float,
        record_every: float,
        include_initial: bool = False,
        progress: bool = False,
        sample_offset: int = 0,
        bar=None,
    ) -> Iterator[tuple[float, torch.Tensor]]:
        """Yield ``(t, w_hat)`` at each record time; ``w0`` is ``(batch, N, N)`` and
        ``w_hat`` ``(batch, N, N//2+1)``. ``bar`` (tqdm, counting simulated time) is
        updated as the batch advances; errors name sample ``sample_offset + i``."""
        n_records = record_count(t_final, record_every)
        self.plan(record_every, "record_every")
        w0, _ = self._batched(w0, "w0")
        w_hat = self.to_spectral(w0)
        if include_initial:
            yield 0.0, w_hat
        own = bar is None
        if own:
            bar = tqdm(total=t_final, disable=not progress, desc="navier-stokes", unit="t")
        try:
            for r in range(n_records):
                t0, t1 = r * record_every, (r + 1) * record_every
                w_hat = self._interval(w_hat, t0, t1, bar, sample_offset)
                yield t1, w_hat
        finally:
            if own:
                bar.close()


def record_count(t_final: float, record_every: float) -> int:
    """Number of records ``t_final / record_every`` (must be a positive integer)."""
    for name, value in (("t_final", t_final), ("record_every", record_every)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name}: expected a positive time, got {value!r}")
    n = round(t_final / record_every)
    if n < 1 or abs(n * record_every - t_final) > 1e-9 * t_final:
        raise ValueError(
            f"t_final: {t_final!r} is not a positive multiple of record_every = "
            f"{record_every!r}; expected k * record_every"
        )
    return n
