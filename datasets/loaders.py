"""Read the community's data files into the xarray form of :mod:`grepsnet_sciml.datasets`.

- FNO / G-FNO Navier-Stokes ``.mat`` files (:func:`load_fno_mat`): MATLAB v5 (read with
  ``scipy.io.loadmat``) or v7.3 (HDF5, read lazily with h5py). Variables ``a`` (initial
  vorticity, ``(sample, x, y)``), ``u`` (vorticity, ``(sample, x, y, time)``) and ``t``
  (record times), as the FNO script ``ns_2d.py`` and G-FNO's ``ns_2d_rt.py`` save them.
  MATLAB v7.3 stores every array with its axes reversed (column-major), so HDF5 holds ``u``
  as ``(time, y, x, sample)``; the loader reverses them back.
- EGNN charged-particle ``.npy`` files: :func:`load_egnn_npy`, the loader of
  :mod:`grepsnet_sciml.datasets.charged_particles`, re-exported here.

The files do not say which forcing they were made with, so the user names it; the declared
contract is then :func:`grepsnet_sciml.datasets.navier_stokes.dataset_spec` for that forcing
and the reference (``"fno"``) scheme, checked against the file's grid.

Examples
--------
>>> import tempfile, pathlib, numpy as np, scipy.io
>>> path = pathlib.Path(tempfile.mkdtemp()) / "ns.mat"
>>> u = np.zeros((2, 8, 8, 3), dtype=np.float32)
>>> scipy.io.savemat(path, {"a": u[..., 0], "u": u, "t": np.array([1.0, 2.0, 3.0])})
>>> ds = load_fno_mat(path, forcing="symmetric")
>>> ds.vorticity.dims, ds.vorticity.shape, ds.time.values.tolist()
(('sample', 'time', 'x', 'y'), (2, 4, 8, 8), [0.0, 1.0, 2.0, 3.0])
>>> ds.attrs["group"]
'D4()'
"""

from __future__ import annotations

import os
from pathlib import Path

import dask.array
import h5py
import numpy as np
import scipy.io
import xarray as xr

from .charged_particles import load_egnn_npy
from .navier_stokes import EQUATION, VORTICITY, dataset_spec

__all__ = ["FNO_FORCINGS", "load_fno_mat", "load_egnn_npy"]

#: Forcings a user may name for an FNO/G-FNO file (``None``: unforced).
FNO_FORCINGS = ("fno", "symmetric", None)


def load_fno_mat(
    path: str | os.PathLike,
    forcing: str | None,
    *,
    time=None,
    include_initial: bool = True,
    viscosity: float | None = None,
    chunk_size: int = 64,
) -> xr.Dataset:
    """Read an FNO / G-FNO Navier-Stokes ``.mat`` file (MATLAB v5 or v7.3).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.mat`` file, with ``u`` ``(sample, x, y, time)`` and optionally ``a``
        ``(sample, x, y)`` and ``t``, in MATLAB's axis order (x = first grid index, the
        ``meshgrid(..., indexing='ij')`` convention of the scripts).
    forcing : {"fno", "symmetric"} or None
        The forcing the file was made with (FNO's ``ns`` data: ``"fno"``; G-FNO's NS-Sym:
        ``"symmetric"``); it decides the declared group and symmetry.
    time : array (T,), optional
        Times of the frames of ``u``. By default ``t`` from the file; when ``t`` is ``k``
        times longer than the time axis of ``u`` (the G-FNO script saves all record times
        but keeps every ``k``-th frame), every ``k``-th entry from the first.
    include_initial : bool
        Prepend ``a`` as the frame at ``t = 0`` (when the file has ``a``).
    viscosity : float, optional
        Recorded in ``attrs["config"]`` if given (the files do not store it).
    chunk_size : int
        Samples per dask chunk for v7.3 files, which are read lazily (v5 files are read whole).

    Returns
    -------
    xarray.Dataset
        ``vorticity (sample, time, x, y)`` in the file's dtype with coordinates ``sample``,
        ``time``, ``x = y = i / N``; attrs as :func:`navier_stokes.generate` writes them
        (``kind``, ``group``, ``representations``, ``symmetry``, ``config``,
        ``solver_version``, ``seed`` = -1 as unknown) and ``source``.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        Unknown ``forcing``; a file that is not a MATLAB file, lacks ``u``, or has arrays of
        the wrong shape; times that do not fit ``u`` (pass ``time=``); a grid on which the
        forcing's declared shifts are not whole cells (named forcings: N divisible by 4).
    """
    path = Path(path)
    if forcing not in FNO_FORCINGS:
        raise ValueError(
            f"forcing: expected one of {FNO_FORCINGS} (the forcing the file was made with), "
            f"got {forcing!r}"
        )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    if not path.is_file():
        raise FileNotFoundError(f"path: {path} is not a file")
    if h5py.is_hdf5(path):
        version = "MATLAB v7.3 (HDF5)"
        arrays = _read_v73(path, chunk_size)
    else:
        version = "MATLAB v5"
        arrays = _read_v5(path)
    u = arrays.get("u")
    if u is None:
        raise ValueError(f"{path}: no variable 'u' (expected FNO/G-FNO variables a, u, t)")
    if u.ndim != 4 or u.shape[1] != u.shape[2]:
        raise ValueError(f"{path}: variable 'u' has shape {u.shape}, expected (sample, N, N, time)")
    n_samples, n, _, n_time = u.shape
    vorticity = u.transpose(0, 3, 1, 2)
    times = _frame_times(path, arrays.get("t"), time, n_time)
    a = arrays.get("a")
    if a is not None and a.shape != (n_samples, n, n):
        raise ValueError(
            f"{path}: variable 'a' has shape {a.shape}, expected {(n_samples, n, n)} like 'u'"
        )
    initial = include_initial and a is not None
    if initial:
        stack = dask.array.concatenate if isinstance(u, dask.array.Array) else np.concatenate
        vorticity = stack([a[:, None].astype(u.dtype), vorticity], axis=1)
        times = np.concatenate([[0.0], times])
    grid = np.arange(n) / n
    config = {
        "source": str(path),
        "format": version,
        "forcing": forcing,
        "viscosity": viscosity,
        "resolution": n,
        "scheme": "fno",
        "include_initial": bool(initial),
        "dtype": str(vorticity.dtype),
    }
    spec = dataset_spec(forcing, "fno", config, {
        "equation": EQUATION,
        "solver_version": f"external: FNO/G-FNO pseudo-spectral solver ({version} file)",
        "seed": -1,
        "source": str(path),
    })
    for element in spec.elements:  # the declared shifts must be whole cells of the grid
        try:
            element.cells(n)
        except ValueError as err:
            raise ValueError(f"{path}: the {forcing!r} forcing's declared symmetry: {err}") from err
    return xr.Dataset(
        {
            VORTICITY: (
                ("sample", "time", "x", "y"),
                vorticity,
                {
                    "units": "1",
                    "long_name": "vorticity dv/dx - du/dy (nondimensional)",
                    "representation": "T0p",
                },
            )
        },
        coords={
            "sample": np.arange(n_samples),
            "time": (
                "time",
                times,
                {"units": "1", "long_name": "time (nondimensional)", "axis": "T"},
            ),
            "x": (
                "x",
                grid,
                {"units": "1", "long_name": "x coordinate on the unit torus", "axis": "X"},
            ),
            "y": (
                "y",
                grid,
                {"units": "1", "long_name": "y coordinate on the unit torus", "axis": "Y"},
            ),
        },
        attrs=spec.to_attrs(),
    )


def _read_v5(path: Path) -> dict:
    try:
        contents = scipy.io.loadmat(path, variable_names=["a", "u", "t"])
    except (ValueError, TypeError, OSError, scipy.io.matlab.MatReadError) as err:
        raise ValueError(f"{path}: not a readable MATLAB .mat file ({err})") from err
    return {k: v for k, v in contents.items() if k in ("a", "u", "t")}


def _read_v73(path: Path, chunk_size: int) -> dict:
    """Lazy arrays of a v7.3 file, axes reversed back to MATLAB's order."""
    file = h5py.File(path, "r")  # kept open by the dask arrays that read from it
    arrays = {}
    for name in ("a", "u", "t"):
        if name not in file:
            continue
        stored = file[name]
        if not isinstance(stored, h5py.Dataset) or stored.dtype.kind not in "fiu":
            raise ValueError(f"{path}: variable {name!r} is not a numeric array (got {stored!r})")
        chunks = tuple(
            min(chunk_size, s) if axis == stored.ndim - 1 else s
            for axis, s in enumerate(stored.shape)
        )
        arrays[name] = dask.array.from_array(stored, chunks=chunks).T
    if "t" in arrays:
        arrays["t"] = arrays["t"].compute()
    return arrays


def _frame_times(path: Path, t, time, n_time: int) -> np.ndarray:
    if time is not None:
        times = np.asarray(time, dtype=np.float64).ravel()
        if times.shape != (n_time,):
            raise ValueError(
                f"time: expected {n_time} times (the time axis of 'u'), got {times.shape[0]}"
            )
        return times
    if t is None:
        raise ValueError(f"{path}: no variable 't'; pass time= with the {n_time} frame times")
    t = np.asarray(t, dtype=np.float64).ravel()
    if t.size == n_time:
        return t
    if t.size > n_time and t.size % n_time == 0:
        return t[:: t.size // n_time]
    raise ValueError(
        f"{path}: variable 't' has {t.size} times, which does not fit the {n_time} frames of "
        "'u'; pass time= with the frame times"
    )
