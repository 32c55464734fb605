"""2D incompressible Navier-Stokes data on the unit torus, as labelled xarray datasets.

Vorticity form ``dw/dt + u . grad w = nu Laplacian w + f`` with ``u = (psi_y, -psi_x)``,
``-Laplacian psi = w``, solved by :class:`NavierStokes2D` (pseudo-spectral, 2/3
dealiasing; the reference ``"fno"`` scheme or the fast integrating-factor RK4 default).

Presets (:data:`PRESETS`, typed :class:`NavierStokesConfig`):

- ``"ns"``: FNO's NS data, ``nu = 1e-4``, forcing ``0.1 (sin 2 pi (x+y) + cos 2 pi (x+y))``,
  30 frames at ``t = 1, ..., 30``, simulated at 256 and stored at 64;
- ``"ns-sym"``: G-FNO's NS-Sym physics, forcing ``0.1 (cos 4 pi x + cos 4 pi y)``, the same
  sizes (frames at integer times).

Declared symmetry (``attrs["symmetry"]``). An orthogonal ``g`` with a shift ``s`` maps a
solution to ``(g . w)(x) = det(g) w(g^{-1} (x - s))`` (vorticity is a pseudo-scalar) and
``(g . u)(x) = g u(g^{-1} (x - s))``; this solves the equation with forcing
``det(g) f(g^{-1} (x - s))``, so it is a symmetry exactly when that equals ``f``:

- ``"symmetric"``: ``D4()``; rotations with ``s = 0``; reflections with ``s = (1/4, 1/4)``
  (``cos 4 pi (x - 1/4) = -cos 4 pi x`` undoes the sign ``det g = -1``).
- ``"fno"``: ``f = h(x + y)``, ``h(t) = 0.1 sqrt(2) sin(2 pi t + pi/4)``: ``D2('diagonal')``;
  ``-I`` with ``s = (1/4, 0)`` (``h(1/4 - t) = h(t)``), the diagonal reflection with
  ``s = (1/2, 0)`` (``-h(t - 1/2) = h(t)``), the anti-diagonal one with ``s = (3/4, 0)``.
- ``None``: ``D4()`` with ``s = 0`` (and every translation); a user array: ``C1()``.

:func:`dataset_spec` declares this as a :class:`~grepsnet_sciml.datasets.contract.DatasetSpec`
(written to the attrs with ``to_attrs``); its elements act through ``Reps.act``, so the
vorticity's sign comes from its representation ``T0p``.

Examples
--------
>>> ds = generate(2, resolution=16, t_final=0.5, record_every=0.25, progress=False)
>>> ds.vorticity.dims, ds.vorticity.shape
(('sample', 'time', 'x', 'y'), (2, 2, 16, 16))
>>> ds.attrs["group"]
'D4()'
>>> preset("ns", resolution=32).sim_resolution
256
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from grepsnet_sciml import __version__
from grepsnet_sciml.groups import C1, D2, D4

from ._environment import generation_threads
from ._ns_solver import SCHEMES, NavierStokes2D, default_dt, record_count
from ._ns_spectral import (
    FORCINGS,
    gaussian_random_field,
    grid_coordinates,
    scaled_forcing_field,
)
from ._progress import report
from .contract import DatasetSpec, group_elements

__all__ = [
    "NavierStokes2D",
    "NavierStokesConfig",
    "FORCING_AMPLITUDE",
    "PRESETS",
    "PRESET_DESCRIPTIONS",
    "SOLVER_VERSION",
    "VORTICITY",
    "VELOCITY",
    "dataset_spec",
    "generate",
    "preset",
]

#: xarray names of the data contract (:mod:`~grepsnet_sciml.datasets.contract`).
VORTICITY = "vorticity"
VELOCITY = "velocity"
#: Solver version written to ``attrs["solver_version"]``.
SOLVER_VERSION = f"grepsnet_sciml {__version__} navier_stokes/1"
#: Amplitude of both named forcings in the anchors' data (FNO's NS, G-FNO's NS-Sym).
FORCING_AMPLITUDE = 0.1
#: ``attrs["equation"]``.
EQUATION = "dw/dt + u . grad w = nu Laplacian w + f on the unit torus"


@dataclass(frozen=True)
class NavierStokesConfig:
    """Everything that defines a Navier-Stokes data set (besides seed and sample range).

    Attributes
    ----------
    resolution : int
        Stored grid size ``R`` (``x_i = i / R``).
    sim_resolution : int or None
        Simulation grid size ``S``, a multiple of ``R`` (``None``: ``S = R``); every
        ``S / R``-th point is stored.
    viscosity : float
        ``nu > 0``.
    forcing : {"fno", "symmetric"} or None
        Named forcing, or ``None`` for none (a user array is passed to :func:`generate`).
    forcing_amplitude : float
        Amplitude ``A > 0`` of the named forcing (``A (sin 2 pi (x+y) + cos 2 pi (x+y))``
        or ``A (cos 4 pi x + cos 4 pi y)``); it does not change the declared symmetry.
    t_final, record_every : float
        Frames at ``t = record_every, 2 record_every, ..., t_final``.
    t_start : float
        Burn-in: only the frames at ``t > t_start`` are stored (a multiple of
        ``record_every`` below ``t_final``; ``0``: all). The flow is simulated from ``t = 0``
        either way, so the stored frames equal the last ones of a run without burn-in.
        A burn-in of a few hundred time units puts the frames on the forced flow's
        attractor (its statistically stationary state) instead of the spin-up.
    include_initial : bool
        Also store the initial field at ``t = 0`` as the first frame (needs ``t_start = 0``).
    scheme : {"fast", "fno"}
        Time integrator (see :class:`NavierStokes2D`).
    dt : float or None
        Time step (``None``: ``1e-4`` for ``"fno"``; the largest step ``1/32`` for
        ``"fast"``).
    cfl : float or None
        Fast scheme: target CFL number of the per-sample adaptive steps (``None``: fixed
        steps of ``dt``).
    cfl_max : float
        With fixed steps, the CFL number above which the run stops with an error.
    velocity : bool
        Also store the velocity field.
    alpha, tau : float
        Gaussian random field ``N(0, tau^(2 alpha - 2) (-Laplacian + tau^2 I)^(-alpha))``.
    """

    resolution: int = 64
    sim_resolution: int | None = None
    viscosity: float = 1e-4
    forcing: str | None = "symmetric"
    forcing_amplitude: float = FORCING_AMPLITUDE
    t_final: float = 30.0
    record_every: float = 1.0
    t_start: float = 0.0
    include_initial: bool = False
    scheme: str = "fast"
    dt: float | None = None
    cfl: float | None = 1.0
    cfl_max: float = 1.0
    velocity: bool = False
    alpha: float = 2.5
    tau: float = 7.0

    @property
    def simulation_resolution(self) -> int:
        """``sim_resolution``, or ``resolution`` when it is ``None``."""
        return self.resolution if self.sim_resolution is None else self.sim_resolution

    @property
    def time_step(self) -> float:
        """``dt``, or the scheme's default at the simulation resolution."""
        return default_dt(self.scheme) if self.dt is None else self.dt

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field.

        Besides each field's range, the stored resolution must make the declared symmetry
        act on the grid: the named forcings pair some elements with shifts of 1/4 of the
        domain, so they need a resolution divisible by 4.
        """
        for name in ("resolution", "sim_resolution"):
            value = getattr(self, name)
            if value is None and name == "sim_resolution":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        s, r = self.simulation_resolution, self.resolution
        if r > s:
            raise ValueError(
                f"resolution: the stored resolution {r} exceeds sim_resolution {s}; "
                "expected resolution <= sim_resolution"
            )
        if s % r:
            raise ValueError(
                f"resolution: {r} does not divide sim_resolution {s}; expected a divisor"
            )
        if s % 2 or s < 4:
            raise ValueError(f"sim_resolution: expected an even grid size >= 4, got {s}")
        for name in ("viscosity", "forcing_amplitude", "t_final", "record_every", "cfl_max",
                     "alpha", "tau"):
            value = getattr(self, name)
            if not _positive(value):
                raise ValueError(f"{name}: expected a positive number, got {value!r}")
        if self.dt is not None and not _positive(self.dt):
            raise ValueError(f"dt: expected a positive time step or None, got {self.dt!r}")
        if self.cfl is not None and not (_positive(self.cfl) and self.cfl <= self.cfl_max):
            raise ValueError(
                f"cfl: expected None or a number in (0, cfl_max = {self.cfl_max}], "
                f"got {self.cfl!r}"
            )
        if self.forcing is not None and self.forcing not in FORCINGS and self.forcing != "array":
            raise ValueError(
                f"forcing: unknown forcing {self.forcing!r}; expected one of "
                f"{list(FORCINGS)}, None or an array"
            )
        if self.forcing not in FORCINGS and self.forcing_amplitude != FORCING_AMPLITUDE:
            raise ValueError(
                f"forcing_amplitude: {self.forcing_amplitude!r} applies to a named forcing, but "
                f"forcing is {self.forcing!r}; expected a forcing among {list(FORCINGS)} or "
                f"the default amplitude {FORCING_AMPLITUDE}"
            )
        if self.scheme not in SCHEMES:
            raise ValueError(
                f"scheme: unknown scheme {self.scheme!r}; expected one of {list(SCHEMES)}"
            )
        divisor = _shift_divisor(self.forcing)
        if r % divisor:
            shifts = sorted({tuple(v) for v in _SHIFTS[self.forcing].values()})
            lower, upper = r - r % divisor, r - r % divisor + divisor
            raise ValueError(
                f"resolution: {r} is not divisible by {divisor}; the {self.forcing!r} "
                f"forcing's declared symmetry {_GROUPS[self.forcing]()!r} pairs some of its "
                f"elements with shifts {shifts} of the domain, whole grid cells only when the "
                f"stored resolution is divisible by {divisor}; expected a multiple of "
                f"{divisor} such as {lower or upper} or {upper}"
            )
        record_count(self.t_final, self.record_every)
        self.skipped_records()

    def skipped_records(self) -> int:
        """Records of the burn-in (``t <= t_start``), not stored; ValueError if ``t_start``
        is not a multiple of ``record_every`` in ``[0, t_final)``."""
        t0 = self.t_start
        if isinstance(t0, bool) or not isinstance(t0, (int, float)) or not (
                math.isfinite(t0) and 0 <= t0 < self.t_final):
            raise ValueError(f"t_start: expected a time in [0, t_final = {self.t_final}), "
                             f"got {t0!r}")
        if t0 == 0:
            return 0
        if self.include_initial:
            raise ValueError(f"include_initial: True stores t = 0, which the burn-in "
                             f"t_start = {t0} skips; expected include_initial=False")
        n = round(t0 / self.record_every)
        if abs(n * self.record_every - t0) > 1e-9 * t0:
            raise ValueError(f"t_start: {t0!r} is not a multiple of record_every = "
                             f"{self.record_every!r}; expected k * record_every")
        return n

    @classmethod
    def from_json(cls, text: str) -> NavierStokesConfig:
        """Rebuild the config from ``ds.attrs["config"]`` (extra keys such as ``dtype`` or
        ``initial_condition`` are ignored)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in fields})

    def to_dict(self) -> dict:
        """JSON-ready dict of all fields plus the resolved simulation resolution and dt."""
        out = dataclasses.asdict(self)
        out["sim_resolution"] = self.simulation_resolution
        out["dt"] = self.time_step
        return out


def _positive(value) -> bool:
    return (
        isinstance(value, (int, float, np.floating, np.integer))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


#: Presets matching the anchors' data sets (sizes overridable through :func:`preset`);
#: :data:`PRESET_DESCRIPTIONS` says in plain text what each sets.
PRESETS: dict[str, NavierStokesConfig] = {
    "ns": NavierStokesConfig(
        resolution=64, sim_resolution=256, viscosity=1e-4, forcing="fno",
        t_final=30.0, record_every=1.0,
    ),
    "ns-sym": NavierStokesConfig(
        resolution=64, sim_resolution=256, viscosity=1e-4, forcing="symmetric",
        t_final=30.0, record_every=1.0,
    ),
}


#: One plain-text line per preset (for ``grepsnet generate navier-stokes --help``).
PRESET_DESCRIPTIONS = {
    "ns": "FNO's NS data: forcing fno = 0.1 (sin 2 pi (x+y) + cos 2 pi (x+y)), viscosity "
          "1e-4, symmetry D2('diagonal') with shifts, frames t = 1..30, simulated 256, "
          "stored 64",
    "ns-sym": "G-FNO's NS-Sym data: forcing symmetric = 0.1 (cos 4 pi x + cos 4 pi y), "
              "viscosity 1e-4, symmetry D4 (reflections with shift (1/4, 1/4)), frames "
              "t = 1..30, simulated 256, stored 64",
}


def preset(name: str, **overrides) -> NavierStokesConfig:
    """The preset ``name`` (``"ns"`` or ``"ns-sym"``) with fields replaced by ``overrides``.

    Raises ``ValueError`` for an unknown preset or field, or an invalid result (see
    :meth:`NavierStokesConfig.validate`).
    """
    if name not in PRESETS:
        raise ValueError(f"preset: unknown preset {name!r}; expected one of {list(PRESETS)}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(NavierStokesConfig)}
    if unknown:
        raise ValueError(f"overrides: unknown config fields {sorted(unknown)}")
    config = dataclasses.replace(PRESETS[name], **overrides)
    config.validate()
    return config


# ----- symmetry declaration ----------------------------------------------------------------
_SHIFTS = {
    # forcing -> {element name: shift}; elements not listed have shift (0, 0)
    "symmetric": {"m": (0.25, 0.25), "rm": (0.25, 0.25), "r2m": (0.25, 0.25),
                  "r3m": (0.25, 0.25)},
    "fno": {"r2": (0.25, 0.0), "rm": (0.5, 0.0), "r3m": (0.75, 0.0)},
    None: {},
}
_GROUPS = {"symmetric": D4, "fno": lambda: D2("diagonal"), None: D4}
def _shift_divisor(forcing: str | None) -> int:
    """Smallest ``d`` such that every declared shift of ``forcing`` is whole cells on a grid
    of a multiple of ``d`` points (4 for both named forcings; 1 for none or an array)."""
    denominators = [
        Fraction(s).limit_denominator(1000).denominator
        for shift in _SHIFTS.get(forcing, {}).values()
        for s in shift
    ]
    return math.lcm(1, *denominators)


def dataset_spec(forcing: str | None, scheme: str = "fast", config: dict | None = None,
                 metadata: dict | None = None) -> DatasetSpec:
    """The data contract of Navier-Stokes data made with ``forcing`` and ``scheme``.

    Parameters
    ----------
    forcing : {"fno", "symmetric", "array"} or None
        Decides the group and the shift of each element (module docstring).
    scheme : {"fast", "fno"}
        ``exact`` is false for ``"fno"``, whose Nyquist treatment breaks the grid symmetry at
        about 3e-7 relative.
    config, metadata : dict, optional
        The generator config and the other attrs.

    Returns
    -------
    DatasetSpec
        Kind ``"field"``, vorticity ``T0p`` and velocity ``T1``, every element of the group
        with its shift, translations for the unforced equation only.
    """
    group = _GROUPS[forcing]() if forcing in _GROUPS else C1()
    note = (
        "exact to round-off (Nyquist modes zeroed)"
        if scheme == "fast"
        else "the fno scheme's Nyquist treatment breaks the grid symmetry at about 3e-7"
    )
    return DatasetSpec(
        kind="field", group=group, representations={VORTICITY: "T0p", VELOCITY: "T1"},
        elements=group_elements(group, _SHIFTS.get(forcing, {})),
        translations=forcing is None, exact=scheme == "fast", note=note,
        config=config or {}, metadata=metadata or {},
    )


# ----- generation --------------------------------------------------------------------------
class _FromPreset:
    def __repr__(self) -> str:
        return "<from preset>"


_UNSET = _FromPreset()


def _sha256(array: torch.Tensor) -> str:
    return hashlib.sha256(np.ascontiguousarray(array.cpu().numpy()).tobytes()).hexdigest()


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "positive" if minimum > 0 else "non-negative"
        raise ValueError(f"{name}: expected a {kind} integer, got {value!r}")
    return int(value)


def _initial_fields(initial_condition, n_samples: int, size: int) -> torch.Tensor:
    w0 = initial_condition
    if not torch.is_tensor(w0):
        w0 = torch.as_tensor(np.asarray(w0))
    shape = tuple(w0.shape)
    if w0.ndim == 2:
        w0 = w0.expand(n_samples, *w0.shape)
    if w0.ndim != 3 or tuple(w0.shape) != (n_samples, size, size):
        raise ValueError(
            f"initial_condition: expected shape ({size}, {size}) or ({n_samples}, {size}, "
            f"{size}) at the simulation resolution, got {shape}"
        )
    if not torch.isfinite(w0).all():
        raise ValueError("initial_condition: contains NaN or Inf; expected finite values")
    return w0.detach().cpu().to(torch.float64)


def generate(
    n_samples: int,
    preset: str | NavierStokesConfig | None = None,
    *,
    resolution=_UNSET,
    sim_resolution=_UNSET,
    viscosity=_UNSET,
    forcing=_UNSET,
    forcing_amplitude=_UNSET,
    t_final=_UNSET,
    record_every=_UNSET,
    t_start=_UNSET,
    include_initial=_UNSET,
    scheme=_UNSET,
    dt=_UNSET,
    cfl=_UNSET,
    cfl_max=_UNSET,
    velocity=_UNSET,
    seed: int = 0,
    first_sample: int = 0,
    initial_condition=None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    progress: bool = True,
) -> xr.Dataset:
    """Simulate ``n_samples`` trajectories and return them as an xarray dataset.

    Parameters
    ----------
    n_samples : int
        Number of trajectories: samples ``first_sample .. first_sample + n_samples - 1``.
    preset : {"ns", "ns-sym"}, NavierStokesConfig or None
        Base configuration; ``None`` is ``NavierStokesConfig()`` (64x64 simulated and
        stored, symmetric forcing, ``nu = 1e-4``, ``t = 1..30``). Keyword arguments that are
        given replace its fields (see :class:`NavierStokesConfig` for their meaning).
    forcing : {"fno", "symmetric"}, None, or array (S, S)
        A user array is used as given (declared group ``C1()``).
    seed : int
        Sample ``i``'s initial field derives from ``(seed, first_sample + i)`` alone and its
        time steps from its own state, so any chunking of the sample range or
        ``batch_size`` gives identical data: bitwise for one torch and numpy build on one
        kind of CPU (see :mod:`grepsnet_sciml.datasets._environment`). Torch runs with
        one thread during the call (the previous count is restored).
    initial_condition : array (S, S) or (n_samples, S, S), optional
        User initial vorticity at the simulation resolution instead of random fields.
    dtype : torch.dtype
        ``torch.float64`` (default) or ``torch.float32`` for the whole computation.
    device : str or torch.device
        Where the solver runs (the random fields are drawn on the CPU).
    batch_size : int
        Samples simulated together (memory; results do not depend on it).
    progress : bool
        Show a tqdm bar of simulated time, updated every time step.

    Notes
    -----
    The fast scheme removes the Nyquist modes of the initial field (stored as such at
    ``t = 0`` with ``include_initial``). The named forcings need a stored resolution
    divisible by 4, so that their declared shifts are whole grid cells.

    Returns
    -------
    xarray.Dataset
        ``vorticity (sample, time, x, y)`` and, with ``velocity=True``,
        ``velocity (sample, time, x, y, component)``; coordinates ``sample`` (global
        indices), ``time``, ``x = y = i / resolution``, ``component = ["x", "y"]``; attrs
        ``group``, ``representations``, ``symmetry``, ``config``, ``solver_version``,
        ``seed``, ``kind`` (JSON strings and numbers).

    Raises
    ------
    ValueError
        For invalid arguments (naming the argument, the value and what is expected).
    RuntimeError
        If a simulation blows up (NaN/Inf or CFL violation), naming the sample and time.
    """
    if isinstance(preset, NavierStokesConfig):
        config = preset
    elif preset is None:
        config = NavierStokesConfig()
    elif isinstance(preset, str) and preset in PRESETS:
        config = PRESETS[preset]
    else:
        raise ValueError(f"preset: unknown preset {preset!r}; expected one of {list(PRESETS)}")
    given = {
        "resolution": resolution, "sim_resolution": sim_resolution, "viscosity": viscosity,
        "forcing_amplitude": forcing_amplitude, "t_final": t_final, "t_start": t_start,
        "record_every": record_every, "include_initial": include_initial, "scheme": scheme,
        "dt": dt, "cfl": cfl, "cfl_max": cfl_max, "velocity": velocity,
    }
    forcing_array = None
    if forcing is not _UNSET:
        if forcing is None or isinstance(forcing, str):
            given["forcing"] = forcing
        else:
            forcing_array = forcing
            given["forcing"] = "array"
    config = dataclasses.replace(config, **{k: v for k, v in given.items() if v is not _UNSET})
    config.validate()
    n_samples = _check_count("n_samples", n_samples, 1)
    seed = _check_count("seed", seed, 0)
    first_sample = _check_count("first_sample", first_sample, 0)
    batch_size = _check_count("batch_size", batch_size, 1)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype: expected torch.float32 or torch.float64, got {dtype!r}")
    with generation_threads():
        return _simulate(config, forcing_array, n_samples, seed, first_sample, initial_condition,
                         dtype, device, batch_size, progress)


class _SampleReport:
    """A time bar that also reports ``rate * dt`` samples of work per ``update(dt)``.

    ``rate = batch / t_final``: the batch's share of the samples per unit of simulated time
    (see :mod:`~grepsnet_sciml.datasets._progress`).
    """

    def __init__(self, bar, rate: float):
        self.bar, self.rate = bar, rate

    def update(self, dt: float) -> None:
        self.bar.update(dt)
        report(dt * self.rate)


def _simulate(config, forcing_array, n_samples, seed, first_sample, initial_condition, dtype,
              device, batch_size, progress) -> xr.Dataset:
    """The body of :func:`generate`, with validated arguments."""
    size, stored = config.simulation_resolution, config.resolution
    stride = size // stored
    forcing = forcing_array if forcing_array is not None else config.forcing
    if config.forcing in FORCINGS and config.forcing_amplitude != FORCING_AMPLITUDE:
        forcing = scaled_forcing_field(config.forcing, size, config.forcing_amplitude)
    solver = NavierStokes2D(
        size, config.viscosity, forcing,
        scheme=config.scheme, dt=config.time_step, cfl=config.cfl, cfl_max=config.cfl_max,
        dtype=dtype, device=device,
    )
    if initial_condition is None:
        w0_all = None
        ic_text = f"gaussian_random_field(alpha={config.alpha}, tau={config.tau})"
    else:
        w0_all = _initial_fields(initial_condition, n_samples, size)
        ic_text = f"user array sha256:{_sha256(w0_all)}"

    n_records = record_count(config.t_final, config.record_every)
    skip = config.skipped_records()
    times = [k * config.record_every for k in range(skip + 1, n_records + 1)]
    if config.include_initial:
        times = [0.0] + times
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    vort = np.empty((n_samples, len(times), stored, stored), dtype=np_dtype)
    vel = np.empty((n_samples, len(times), stored, stored, 2), dtype=np_dtype) if (
        config.velocity) else None
    solver.plan(config.record_every, "record_every")
    n_batches = math.ceil(n_samples / batch_size)
    batches = f" x {n_batches} batches" if n_batches > 1 else ""
    with tqdm(
        total=config.t_final * n_batches, disable=not progress,
        desc=f"navier-stokes, {n_samples} samples, simulated time (t_final = "
        f"{config.t_final:.3g}{batches})",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.3g}/{total:.3g} time units "
        "[{elapsed}<{remaining}]",
    ) as bar:
        for start in range(0, n_samples, batch_size):
            count = min(batch_size, n_samples - start)
            if w0_all is None:
                w0 = gaussian_random_field(
                    count, size, seed, first_sample + start, config.alpha, config.tau
                )
            else:
                w0 = w0_all[start:start + count]
            records = solver.records(
                w0.to(dtype).to(device), config.t_final, config.record_every,
                config.include_initial, sample_offset=first_sample + start,
                bar=_SampleReport(bar, count / config.t_final),
            )
            for r, (_, w_hat) in enumerate(itertools.islice(records, skip, None)):
                w = solver.to_physical(w_hat)[..., ::stride, ::stride]
                vort[start:start + count, r] = w.cpu().numpy()
                if vel is not None:
                    u = solver._velocity_spectral(w_hat)[..., ::stride, ::stride, :]
                    vel[start:start + count, r] = u.cpu().numpy()

    return _dataset(
        vort, vel, times, first_sample, config, forcing_array, ic_text, seed, dtype
    )


def _dataset(vort, vel, times, first_sample, config, forcing_array, ic_text, seed, dtype):
    stored = config.resolution
    coords = {
        "sample": ("sample", np.arange(first_sample, first_sample + vort.shape[0])),
        "time": ("time", np.asarray(times, dtype=np.float64),
                 {"units": "1", "long_name": "time (nondimensional)", "axis": "T"}),
        "x": ("x", grid_coordinates(stored).numpy(),
              {"units": "1", "long_name": "x coordinate on the unit torus", "axis": "X"}),
        "y": ("y", grid_coordinates(stored).numpy(),
              {"units": "1", "long_name": "y coordinate on the unit torus", "axis": "Y"}),
    }
    data_vars = {
        VORTICITY: (("sample", "time", "x", "y"), vort, {
            "units": "1", "long_name": "vorticity dv/dx - du/dy (nondimensional)",
            "representation": "T0p",
        }),
    }
    if vel is not None:
        coords["component"] = ("component", np.array(["x", "y"]))
        data_vars[VELOCITY] = (("sample", "time", "x", "y", "component"), vel, {
            "units": "1", "long_name": "velocity (u, v) from the stream function",
            "representation": "T1",
        })
    full = config.to_dict()
    if forcing_array is not None:
        f = torch.as_tensor(np.asarray(forcing_array), dtype=torch.float64)
        full["forcing_sha256"] = _sha256(f)
    full["initial_condition"] = ic_text
    full["dtype"] = str(dtype).replace("torch.", "")
    spec = dataset_spec(
        config.forcing if forcing_array is None else "array", config.scheme, full,
        {"equation": EQUATION, "solver_version": SOLVER_VERSION, "seed": int(seed),
         "Conventions": "CF-1.8"},
    )
    return xr.Dataset(data_vars, coords=coords, attrs=spec.to_attrs())
