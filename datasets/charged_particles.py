"""Charged particles in 3D: the EGNN benchmark system, bit for bit, and a symmetry-exact variant.

``n`` unit-mass particles with charges ``q_i = +-1`` interact through Coulomb forces (like
charges repel)::

    a_i = sum_{j != i} q_i q_j (x_i - x_j) / r_ij^3

Presets
-------
``"egnn"``
    The system of EGNN's ``nbody_small`` benchmark (vgsatorras/egnn,
    ``n_body_system/dataset/synthetic_sim.py``), reproduced bit for bit in float64:
    unsoftened force with squared distances ``|a|^2 + |b|^2 - 2 a.b``, each Cartesian
    component clipped to ``+-0.1/dt``, ``dt = 1e-3``, one full kick then drift/kick
    (symplectic Euler), 5000 steps, frame ``k`` = step ``100 (k + 1)`` (49 frames, the
    initial state is not stored), the reflecting box ``+-5`` applied once to the initial
    state. ``velocity`` lags ``position`` by half a step: it is the velocity of the drift
    that produced the position. All trajectories come from one legacy
    ``numpy.random.RandomState(seed)`` drawn train, valid, test in order, so sample ``k`` of
    split ``valid`` is trajectory ``n_train + k`` of the stream. The clipping breaks exact
    rotation equivariance (it is exact only under the 48 signed axis permutations).
``"clean"``
    The same physics without symmetry-breaking shortcuts: softened Coulomb
    ``(r^2 + eps^2)^{-3/2}`` (``eps = 0.1``), no clipping, no box, velocity Verlet with
    positions and velocities at the same time, frames at steps ``0, 100, .., 5000``
    (51 frames, ``t = 0 .. 5``). Exactly E(3) x S_n equivariant (up to round-off), conserves
    momentum to round-off (``CLEAN_MOMENTUM_TOLERANCE``) and energy to
    ``CLEAN_ENERGY_TOLERANCE`` (relative, measured).
    Sample ``k`` of split ``s`` derives its randomness from ``(seed, s, k)`` alone.

Datasets have ``position(sample, time, particle, spatial)``, ``velocity(...)`` and
``charge(sample, particle)``; attrs (:func:`dataset_spec`, the contract of
:mod:`~grepsnet_sciml.datasets.contract`) ``kind = "particles"``, ``group = "O(3)"``,
``representations``, ``symmetry`` (E(3) x S_n: translations, no listed elements),
``config``, ``seed`` and ``solver_version``.

Examples
--------
>>> ds = generate(3, preset="clean", n_steps=200, record_every=100, progress=False)
>>> ds.position.dims, ds.position.shape
(('sample', 'time', 'particle', 'spatial'), (3, 3, 5, 3))
>>> ds.attrs["group"], ds.attrs["kind"]
('O(3)', 'particles')
>>> x, v = simulate(ds.position[:, 0].values, ds.velocity[:, 0].values, ds.charge.values,
...                 200, preset="clean")
>>> bool(np.array_equal(x, ds.position[:, -1].values))
True
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from grepsnet_sciml._atomic import atomic_path
from grepsnet_sciml.groups import O

from . import _particles_clean as _clean
from . import _particles_egnn as _egnn
from ._particles_common import BlowUpError, check_finite, run_chunks
from .contract import DatasetSpec

__all__ = [
    "PRESETS",
    "SPLITS",
    "SOLVER_VERSION",
    "CLEAN_ENERGY_TOLERANCE",
    "CLEAN_MOMENTUM_TOLERANCE",
    "EGNN_SUFFIX",
    "BlowUpError",
    "dataset_spec",
    "generate",
    "egnn_benchmark",
    "simulate",
    "total_energy",
    "save_egnn_npy",
    "load_egnn_npy",
]

PRESETS = ("egnn", "clean")
SPLITS = ("train", "valid", "test")
#: Version 2: the clean force sums pair terms in a fixed elementwise order (version 1 used a
#: BLAS product whose rounding could depend on the chunk size and the CPU; the bits may
#: differ from version 1, e.g. for 9 particles).
SOLVER_VERSION = "grepsnet-sciml charged-particles 2"
EGNN_SUFFIX = "charged5_initvel1small"
#: Energy bound of the clean preset's default setup: ``|E(t) - E(0)| <= tol max(|E(0)|, 1)``
#: over all frames (measured maximum 3.0e-3 over 256 trajectories; velocity Verlet, the
#: error scales as dt^2).
CLEAN_ENERGY_TOLERANCE = 1e-2
#: Bound on the change of the total momentum ``sum_i v_i`` (round-off; measured 4e-14).
CLEAN_MOMENTUM_TOLERANCE = 1e-12
_REPRESENTATIONS = {"position": "T1", "velocity": "T1", "charge": "T0"}
_DEFAULTS = {
    "egnn": {"dt": 1e-3, "n_steps": 5000, "record_every": 100, "softening": None},
    "clean": {"dt": 1e-3, "n_steps": 5000, "record_every": 100, "softening": 0.1},
}
_LOC_STD = 1.0
_SPEED = 0.5
_BOX = 5.0
_DEFAULT_BATCH = 1024


# --------------------------------------------------------------------------- validation
def _int(name: str, value, minimum: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return int(value)


def _positive_float(name: str, value, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    ok = ok and np.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        expected = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return float(value)


def _choice(name: str, value, options) -> str:
    if value not in options:
        raise ValueError(f"{name}: expected one of {options}, got {value!r}")
    return value


def _physics(preset, dt, n_steps, record_every, softening) -> dict:
    """Validated integration settings of ``preset`` with user overrides."""
    _choice("preset", preset, PRESETS)
    values = dict(_DEFAULTS[preset])
    for key, value in (("dt", dt), ("n_steps", n_steps), ("record_every", record_every),
                       ("softening", softening)):
        if value is not None:
            values[key] = value
    values["dt"] = _positive_float("dt", values["dt"])
    values["n_steps"] = _int("n_steps", values["n_steps"], 1, "a positive integer")
    values["record_every"] = _int("record_every", values["record_every"], 1,
                                  "a positive integer")
    if values["n_steps"] % values["record_every"]:
        raise ValueError(f"n_steps: expected a multiple of record_every = "
                         f"{values['record_every']}, got {values['n_steps']!r}")
    if preset == "egnn":
        if softening is not None:
            raise ValueError(f"softening: the egnn preset is unsoftened, expected None, got "
                             f"{softening!r}")
        if values["n_steps"] < 2 * values["record_every"]:
            raise ValueError(f"n_steps: the egnn preset stores steps record_every * (k + 1) "
                             f"below n_steps, expected at least 2 * record_every = "
                             f"{2 * values['record_every']}, got {values['n_steps']!r}")
    else:
        values["softening"] = _positive_float("softening", values["softening"],
                                              allow_zero=True)
    return values


# --------------------------------------------------------------------------- datasets
_SYMMETRY_NOTES = {
    "egnn": "approximate: the per-component force clipping at 0.1/dt and the one-time box "
            "reflection at +-5 are exact only under the 48 signed axis permutations; the "
            "initial-state distribution is E(3) x S_n invariant",
    "clean": "exact up to floating-point round-off",
}


def dataset_spec(config: dict, seed: int) -> DatasetSpec:
    """The data contract of charged-particle data with generator ``config`` (its ``preset``).

    Kind ``"particles"``, group ``O(3)`` with translations and particle permutations
    (E(3) x S_n), position and velocity ``T1``, charge ``T0``; exact for ``"clean"``.
    """
    preset = config["preset"]
    return DatasetSpec(
        kind="particles", group=O(3), representations=_REPRESENTATIONS, translations=True,
        exact=preset == "clean", note=_SYMMETRY_NOTES[preset], config=config,
        metadata={"solver_version": SOLVER_VERSION, "seed": int(seed)},
    )


def _dataset(position, velocity, charge, steps, dt, first_sample, config, seed) -> xr.Dataset:
    """Wrap ``(S, T, n, 3)`` trajectories and ``(S, n)`` charges in the shared data contract."""
    n_samples, _, n = position.shape[:3]
    dims = ("sample", "time", "particle", "spatial")
    ds = xr.Dataset(
        {
            "position": (dims, position, {"long_name": "particle position", "units": "1"}),
            "velocity": (dims, velocity, {"long_name": "particle velocity", "units": "1"}),
            "charge": (("sample", "particle"), charge,
                       {"long_name": "particle charge", "units": "1"}),
        },
        coords={
            "sample": np.arange(first_sample, first_sample + n_samples),
            "time": ("time", np.asarray(steps) * dt, {"long_name": "time", "units": "1"}),
            "step": ("time", np.asarray(steps, dtype=np.int64)),
            "particle": np.arange(n),
            "spatial": ["x", "y", "z"],
        },
    )
    ds.attrs.update(dataset_spec(config, seed).to_attrs())
    return ds


def _egnn_frames(physics: dict) -> tuple[int, np.ndarray]:
    n_records = physics["n_steps"] // physics["record_every"] - 1
    return n_records, physics["record_every"] * np.arange(1, n_records + 1)


def _integrate(preset, physics, charges, x0, v0, first_sample, batch_size, threads, progress):
    """Integrate ``(B, 3, n)`` initial states in chunks; ``(B, R, n, 3)`` frames."""
    batch, _, n = x0.shape
    n_records = (physics["n_steps"] // physics["record_every"]) + (1 if preset == "clean"
                                                                  else -1)
    position = np.empty((batch, n_records, n, 3))
    velocity = np.empty((batch, n_records, n, 3))

    def work(chunk: slice, advance_bar) -> None:
        args = (charges[chunk], x0[chunk], v0[chunk], physics["n_steps"],
                physics["record_every"], physics["dt"])
        if preset == "egnn":
            loc, vel = _egnn.integrate(*args, first_sample + chunk.start, advance_bar)
        else:
            loc, vel = _clean.integrate(*args, physics["softening"],
                                        first_sample + chunk.start, advance_bar)
        position[chunk], velocity[chunk] = loc, vel

    run_chunks(work, batch, batch_size, threads, physics["n_steps"], progress,
               f"charged particles ({preset}), {batch} samples, {physics['n_steps']} steps of "
               f"dt = {physics['dt']:.3g} each (t = {physics['n_steps'] * physics['dt']:.3g})")
    return position, velocity


def generate(
    n_samples: int,
    n_particles: int = 5,
    seed: int = 0,
    preset: str = "egnn",
    first_sample: int = 0,
    split: str = "train",
    *,
    dt: float | None = None,
    n_steps: int | None = None,
    record_every: int | None = None,
    softening: float | None = None,
    n_train: int = 10000,
    n_valid: int = 2000,
    batch_size: int = _DEFAULT_BATCH,
    threads: int = 1,
    progress: bool = True,
) -> xr.Dataset:
    """Simulate ``n_samples`` trajectories of ``n_particles`` charged particles.

    Vectorised over samples (random draws per sample, then one time loop for all of them).

    Parameters
    ----------
    n_samples, n_particles : int
        Positive.
    seed : int
        ``egnn``: seed of the one legacy ``RandomState`` stream (0 .. 2**32 - 1; the
        benchmark uses 43). ``clean``: global seed of the per-sample streams (>= 0).
    preset : {"egnn", "clean"}
        See the module docstring.
    first_sample : int
        Index (>= 0) of the first sample within ``split``: returns samples
        ``first_sample .. first_sample + n_samples - 1``, identical to the same rows of one
        larger call (any chunking gives the same data).
    split : {"train", "valid", "test"}
        ``egnn``: where the split starts in the one stream (``0``, ``n_train``,
        ``n_train + n_valid``; the stream is replayed up to there without integrating).
        ``clean``: part of each sample's seed key ``(seed, split index, sample)``.
    dt, n_steps, record_every, softening : optional
        Override the preset's ``1e-3``, ``5000``, ``100`` and (clean only) ``eps = 0.1``.
        ``n_steps`` must be a multiple of ``record_every``. ``egnn`` clips at ``0.1 / dt``.
    n_train, n_valid : int
        ``egnn`` split sizes that place ``valid`` and ``test`` in the stream.
    batch_size : int
        Trajectories integrated together (memory/cache trade-off; results do not depend
        on it).
    threads : int
        Batches integrated in parallel threads (numpy releases the GIL); results do not
        depend on it.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    xarray.Dataset
        ``position``, ``velocity`` ``(sample, time, particle, spatial)`` float64 and
        ``charge`` ``(sample, particle)``; coordinates ``sample`` (index within the split),
        ``time``, ``step``, ``particle``, ``spatial``; attrs per the data contract.

    Raises
    ------
    ValueError
        Bad argument (named in the message).
    BlowUpError
        A trajectory became NaN/Inf (the message names the sample and time).
    """
    n_samples = _int("n_samples", n_samples, 1, "a positive integer")
    n_particles = _int("n_particles", n_particles, 2, "an integer >= 2")
    first_sample = _int("first_sample", first_sample, 0, "an integer >= 0")
    split = _choice("split", split, SPLITS)
    physics = _physics(preset, dt, n_steps, record_every, softening)
    batch_size = _int("batch_size", batch_size, 1, "a positive integer")
    threads = _int("threads", threads, 1, "a positive integer")
    if preset == "egnn" and not (isinstance(seed, (int, np.integer))
                                 and not isinstance(seed, bool) and 0 <= seed < 2**32):
        raise ValueError(f"seed: expected an integer in [0, 2**32 - 1], got {seed!r}")
    seed = _int("seed", seed, 0, "an integer >= 0")
    loc_std = _LOC_STD * (float(n_particles) / 5.0) ** (1 / 3)
    config = {"preset": preset, "n_samples": n_samples, "n_particles": n_particles,
              "seed": seed, "first_sample": first_sample, "split": split, **physics,
              "loc_std": loc_std, "speed": _SPEED}
    if preset == "egnn":
        n_train = _int("n_train", n_train, 0, "an integer >= 0")
        n_valid = _int("n_valid", n_valid, 0, "an integer >= 0")
        offset = {"train": 0, "valid": n_train, "test": n_train + n_valid}[split]
        n_records, steps = _egnn_frames(physics)
        rs = np.random.RandomState(seed)
        _egnn.skip_trajectories(rs, offset + first_sample, n_particles, n_records)
        charges, z_pos, z_vel = _egnn.draw_trajectories(rs, n_samples, n_particles, n_records)
        x0, v0 = _egnn.initial_state(z_pos, z_vel, loc_std, _SPEED, _BOX)
        config.update({"clip": 0.1 / physics["dt"], "box": _BOX, "n_train": n_train,
                       "n_valid": n_valid, "stream_offset": offset + first_sample,
                       "source": "vgsatorras/egnn n_body_system/dataset/synthetic_sim.py "
                                 "ChargedParticlesSim (re-implemented, bitwise)"})
    else:
        stream = SPLITS.index(split)
        draws = [_clean.draw_sample(seed, stream, first_sample + k, n_particles, loc_std,
                                    _SPEED) for k in range(n_samples)]
        charges, x0, v0 = (np.stack(parts) for parts in zip(*draws))
        steps = physics["record_every"] * np.arange(physics["n_steps"] //
                                                     physics["record_every"] + 1)
    position, velocity = _integrate(preset, physics, charges, x0, v0, first_sample,
                                    batch_size, threads, progress)
    return _dataset(position, velocity, charges, steps, physics["dt"], first_sample, config,
                    seed)


def egnn_benchmark(
    seed: int = 43,
    n_train: int = 10000,
    n_valid: int = 2000,
    n_test: int = 2000,
    out_dir: str | os.PathLike | None = None,
    *,
    n_particles: int = 5,
    threads: int = 1,
    progress: bool = True,
) -> dict[str, xr.Dataset]:
    """The EGNN ``nbody_small`` data set: train, valid and test from one stream.

    With the defaults this is ``python generate_dataset.py --num-train 10000 --seed 43
    --sufix small`` of vgsatorras/egnn, bit for bit (all 14000 trajectories are integrated
    together).

    Parameters
    ----------
    seed : int
        Seed of the legacy ``RandomState``.
    n_train, n_valid, n_test : int
        Split sizes (>= 1), drawn in this order.
    out_dir : path, optional
        If given, also write the original ``{loc,vel,edges,charges}_{split}_charged5_
        initvel1small.npy`` files there (see :func:`save_egnn_npy`).
    n_particles, threads, progress
        As in :func:`generate`.

    Returns
    -------
    dict
        ``{"train": Dataset, "valid": Dataset, "test": Dataset}``, each as :func:`generate`
        would return it for that split.
    """
    sizes = {"train": _int("n_train", n_train, 1, "a positive integer"),
             "valid": _int("n_valid", n_valid, 1, "a positive integer"),
             "test": _int("n_test", n_test, 1, "a positive integer")}
    total = sum(sizes.values())
    whole = generate(total, n_particles, seed, "egnn", n_train=n_train, n_valid=n_valid,
                     threads=threads, progress=progress)
    spec = DatasetSpec.from_dataset(whole)
    result, start = {}, 0
    for split, size in sizes.items():
        part = whole.isel(sample=slice(start, start + size))
        part = part.assign_coords(sample=np.arange(size))
        part.attrs = spec.replace(config={**spec.config, "n_samples": size, "split": split,
                                          "stream_offset": start}).to_attrs()
        result[split] = part
        start += size
    if out_dir is not None:
        for split, ds in result.items():
            save_egnn_npy(ds, out_dir, split, suffix=f"charged{n_particles}_initvel1small")
    return result


# --------------------------------------------------------------------------- EGNN files
def save_egnn_npy(ds: xr.Dataset, directory, split: str, suffix: str = EGNN_SUFFIX) -> None:
    """Write ``ds`` as EGNN's ``{loc,vel,edges,charges}_{split}_{suffix}.npy`` (atomically).

    Axis orders as the original: ``loc``/``vel`` ``(sample, time, 3, particle)``, ``edges``
    ``(sample, n, n)`` = ``q q^T``, ``charges`` ``(sample, n, 1)``; all float64.
    """
    _choice("split", split, SPLITS)
    directory = Path(directory)
    charge = np.asarray(ds["charge"].values, dtype=np.float64)
    arrays = {
        "loc": np.ascontiguousarray(ds["position"].values.transpose(0, 1, 3, 2)),
        "vel": np.ascontiguousarray(ds["velocity"].values.transpose(0, 1, 3, 2)),
        "edges": charge[:, :, None] * charge[:, None, :],
        "charges": charge[:, :, None],
    }
    for name, array in arrays.items():
        with atomic_path(directory / f"{name}_{split}_{suffix}.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, array)


def load_egnn_npy(directory, split: str, suffix: str = EGNN_SUFFIX, *, dt: float = 1e-3,
                  record_every: int = 100, mmap: bool = False) -> xr.Dataset:
    """Read EGNN ``.npy`` files of one split into the same xarray form as :func:`generate`.

    Parameters
    ----------
    directory : path
        Folder with ``loc_{split}_{suffix}.npy``, ``vel_..``, ``charges_..`` (and optionally
        ``edges_..``, checked against ``q q^T``).
    split : {"train", "valid", "test"}
    suffix : str
        File-name suffix (the canonical data set: ``"charged5_initvel1small"``).
    dt, record_every : float, int
        Time step and recording interval of the files (frame ``k`` = step
        ``record_every (k + 1)``); the files do not store them.
    mmap : bool
        Memory-map ``loc``/``vel`` instead of reading them.

    Returns
    -------
    xarray.Dataset
        As :func:`generate` with ``preset="egnn"``.
    """
    _choice("split", split, SPLITS)
    dt = _positive_float("dt", dt)
    record_every = _int("record_every", record_every, 1, "a positive integer")
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"directory: expected an existing folder, got {str(directory)!r}")
    paths = {name: directory / f"{name}_{split}_{suffix}.npy"
             for name in ("loc", "vel", "charges", "edges")}
    for name in ("loc", "vel", "charges"):
        if not paths[name].is_file():
            raise ValueError(f"directory: expected file {paths[name].name} in "
                             f"{str(directory)!r}, not found")
    mode = "r" if mmap else None
    loc = np.load(paths["loc"], mmap_mode=mode)
    vel = np.load(paths["vel"], mmap_mode=mode)
    charges = np.load(paths["charges"])
    if loc.ndim != 4 or loc.shape[2] != 3 or vel.shape != loc.shape:
        raise ValueError(f"{paths['loc'].name}: expected loc and vel of one shape "
                         f"(sample, time, 3, particle), got {loc.shape} and {vel.shape}")
    n_samples, n_records, _, n = loc.shape
    if charges.shape != (n_samples, n, 1):
        raise ValueError(f"{paths['charges'].name}: expected shape {(n_samples, n, 1)}, got "
                         f"{charges.shape}")
    charge = charges[:, :, 0].astype(np.float64)
    if paths["edges"].is_file():
        edges = np.load(paths["edges"])
        if not np.array_equal(edges, charge[:, :, None] * charge[:, None, :]):
            raise ValueError(f"{paths['edges'].name}: expected q q^T of the charges file")
    steps = record_every * np.arange(1, n_records + 1)
    config = {"preset": "egnn", "n_samples": n_samples, "n_particles": n, "dt": dt,
              "n_steps": record_every * (n_records + 1), "record_every": record_every,
              "split": split, "source": f"EGNN .npy files in {str(directory)!r} "
                                        f"(suffix {suffix!r})"}
    return _dataset(loc.transpose(0, 1, 3, 2), vel.transpose(0, 1, 3, 2), charge, steps, dt,
                    0, config, seed=-1)


# --------------------------------------------------------------------------- stepping
def simulate(positions, velocities, charges, n_steps: int, preset: str = "egnn", *,
             dt: float | None = None, softening: float | None = None):
    """Continue trajectories by ``n_steps`` steps of a preset's integrator (pure function).

    Parameters
    ----------
    positions, velocities : array_like or torch.Tensor
        ``(batch, n, 3)``. For ``egnn`` pass a recorded frame as the generator stores it:
        the position at step ``s`` and the velocity that carried it there (half a step
        behind); each step is then ``v += dt F(x); x += dt v``, so ``n_steps = 100 m`` from
        frame ``k`` gives frame ``k + m`` bit for bit (float64 numpy input), and from the
        initial state (before the first kick) ``100 (k + 1)`` steps give frame ``k``. For
        ``clean`` both are at the same time (velocity Verlet).
    charges : array_like or torch.Tensor
        ``(batch, n)`` or ``(batch, n, 1)``.
    n_steps : int
        Steps to take (>= 0).
    preset : {"egnn", "clean"}
    dt, softening : float, optional
        Override the preset's values.

    Returns
    -------
    positions, velocities
        ``(batch, n, 3)``, numpy float64 for numpy input, torch tensors of the input's dtype
        and device for torch input.
    """
    n_steps = _int("n_steps", n_steps, 0, "an integer >= 0")
    physics = _physics(preset, dt, None, None, softening)
    as_torch = None
    if type(positions).__module__.startswith("torch"):
        as_torch = (positions.dtype, positions.device)
        positions, velocities, charges = (t.detach().cpu().double().numpy()
                                          for t in (positions, velocities, charges))
    x = np.asarray(positions, dtype=np.float64)
    v = np.asarray(velocities, dtype=np.float64)
    q = np.asarray(charges, dtype=np.float64)
    if x.ndim != 3 or x.shape[-1] != 3 or x.shape[1] < 2:
        raise ValueError(f"positions: expected shape (batch, n >= 2, 3), got {x.shape}")
    if v.shape != x.shape:
        raise ValueError(f"velocities: expected shape {x.shape}, got {v.shape}")
    if q.shape == x.shape[:2] + (1,):
        q = q[..., 0]
    if q.shape != x.shape[:2]:
        raise ValueError(f"charges: expected shape {x.shape[:2]} or {x.shape[:2] + (1,)}, "
                         f"got {q.shape}")
    for name, array in (("positions", x), ("velocities", v), ("charges", q)):
        if not np.isfinite(array).all():
            raise ValueError(f"{name}: expected finite values, got NaN or Inf")
    y = np.ascontiguousarray(x.transpose(1, 2, 0))
    w = np.ascontiguousarray(v.transpose(1, 2, 0))
    if preset == "egnn":
        _egnn.advance(y, w, q, n_steps, physics["dt"])
    else:
        _clean.advance(y, w, q, n_steps, physics["dt"], physics["softening"])
    check_finite((y, w), 0, n_steps * physics["dt"])
    x_out, v_out = y.transpose(2, 0, 1).copy(), w.transpose(2, 0, 1).copy()
    if as_torch is not None:
        import torch

        dtype, device = as_torch
        return (torch.from_numpy(x_out).to(dtype=dtype, device=device),
                torch.from_numpy(v_out).to(dtype=dtype, device=device))
    return x_out, v_out


def total_energy(position, velocity, charge, softening: float = 0.0) -> np.ndarray:
    """Total energy ``sum_i |v_i|^2 / 2 + sum_{i<j} q_i q_j / sqrt(r_ij^2 + eps^2)``.

    Parameters
    ----------
    position, velocity : array_like
        ``(..., n, 3)``.
    charge : array_like
        ``(..., n)``, broadcastable against the leading axes of ``position``.
    softening : float
        ``eps`` (0 for the egnn system, 0.1 for clean).

    Returns
    -------
    numpy.ndarray
        ``(...)``.
    """
    x = np.asarray(position, dtype=np.float64)
    v = np.asarray(velocity, dtype=np.float64)
    q = np.asarray(charge, dtype=np.float64)
    i, j = np.triu_indices(x.shape[-2], 1)
    diff = x[..., i, :] - x[..., j, :]
    r = np.sqrt((diff * diff).sum(axis=-1) + softening * softening)
    return 0.5 * (v * v).sum(axis=(-1, -2)) + (q[..., i] * q[..., j] / r).sum(axis=-1)
