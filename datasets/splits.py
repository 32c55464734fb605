"""Generate datasets with a ``generate`` function straight to disk, one store or train/valid/test.

A generator follows the reproducibility contract of :mod:`grepsnet_sciml.datasets`:
``generate(n, seed=S, first_sample=k0, **kwargs)`` returns samples ``k0 .. k0 + n - 1`` of the
stream defined by ``S``, each sample's randomness deriving from ``(S, sample index)`` alone.
So a store written chunk by chunk, serially or on many workers, equals ``generate(n, seed=S)``
in memory, whatever the chunk size.

Split seeds
-----------
Splits are drawn from distinct streams. The seed of split ``s`` (index ``i`` in
``("train", "valid", "test")``) is the first 32-bit word of
``numpy.random.SeedSequence([seed, i]).generate_state(1)``: independent of the split sizes,
distinct between splits, and usable by numpy and torch alike. Generators that place splits
themselves (``charged_particles.generate(..., split=)``: the ``egnn`` preset continues one
legacy stream train -> valid -> test, ``clean`` keys each sample by ``(seed, split, k)``) are
called with ``split_argument=True``: every split keeps ``seed`` and gets ``split=name``.

Layout of a split directory ``PATH``: ``PATH/train.zarr``, ``PATH/valid.zarr``,
``PATH/test.zarr`` (or ``.nc``), each with attrs ``split`` and ``split_seed_from`` (the global
seed) besides the generator's own, and ``PATH/splits.json`` recording the arguments. The
directory appears only once every split is complete (built in ``PATH.partial``, like a single
store).

Examples
--------
>>> split_seed(0, "train") != split_seed(0, "valid") != split_seed(0, "test")
True
>>> split_seed(0, "train") == split_seed(0, "train")
True
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from grepsnet_sciml._atomic import atomic_write_text

from ._environment import describe_environment_difference, runtime_environment
from ._files import (
    describe_difference,
    fingerprint,
    jsonable,
    lock_directory,
    make_directory,
    positive_int,
    remove,
)
from .storage import (
    SPLITS_KIND,
    SPLITS_MANIFEST,
    check_output,
    local_cluster,
    open_dataset,
    require_finished,
    workspace_of,
    write_dataset,
)

__all__ = [
    "SPLITS",
    "GeneratorChunks",
    "split_seed",
    "generate_to_store",
    "generate_splits",
    "open_splits",
]

SPLITS = ("train", "valid", "test")


def split_seed(seed: int, split: str) -> int:
    """The seed of one split, derived from the global ``seed`` (see the module docstring).

    Parameters
    ----------
    seed : int
        Global seed, non-negative.
    split : str
        ``"train"``, ``"valid"`` or ``"test"``.

    Returns
    -------
    int
        A seed in ``[0, 2**32)``.
    """
    seed = _seed(seed)
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    state = np.random.SeedSequence([seed, SPLITS.index(split)]).generate_state(1, np.uint32)
    return int(state[0])


class GeneratorChunks:
    """``make_chunk`` for :func:`~grepsnet_sciml.datasets.storage.write_dataset` from a generator.

    ``chunks(first, n)`` returns ``generate(n, seed=seed, first_sample=first, **kwargs)`` with
    the ``n_samples`` entry of ``attrs["config"]`` (if any) set to the whole store's, so that
    chunk 0 (whose attrs the store keeps) carries the attrs of ``generate(n_samples, ...)``.
    Dtype and device arguments (``torch.float32``) are recorded by name.

    Parameters
    ----------
    generate : callable
        ``generate(n, seed=, first_sample=, **kwargs) -> xarray.Dataset``; a module-level
        function, so that it pickles for dask workers.
    n_samples : int
        Samples in the whole store.
    seed : int
        Seed of the stream.
    kwargs : mapping
        Further arguments of ``generate`` (preset, resolution, ...): JSON-serialisable values,
        or torch/numpy dtypes and devices.
    attrs : mapping
        Attributes added to every chunk (e.g. ``split``).
    """

    def __init__(
        self,
        generate: Callable[..., xr.Dataset],
        n_samples: int,
        seed: int,
        kwargs: Mapping[str, Any] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ):
        if not callable(generate):
            raise ValueError(f"generate: expected a callable, got {generate!r}")
        self.generate = generate
        self.n_samples = positive_int(n_samples, "n_samples")
        self.seed = _seed(seed)
        self.kwargs = dict(kwargs or {})
        self._recorded_kwargs = {k: _recordable(v, k) for k, v in self.kwargs.items()}
        self.attrs = dict(attrs or {})

    def config(self) -> dict:
        """JSON description of the stream (the fingerprint that guards resuming)."""
        from grepsnet_sciml import __version__

        return {
            "generator": f"{self.generate.__module__}.{self.generate.__qualname__}",
            "seed": self.seed,
            "kwargs": self._recorded_kwargs,
            "attrs": self.attrs,
            "grepsnet_sciml": __version__,
        }

    def __call__(self, first_sample: int, n: int) -> xr.Dataset:
        ds = self.generate(n, seed=self.seed, first_sample=first_sample, **self.kwargs)
        attrs = dict(ds.attrs)
        if isinstance(attrs.get("config"), str):
            try:
                config = json.loads(attrs["config"])
            except json.JSONDecodeError:
                config = None
            if isinstance(config, dict) and "n_samples" in config:
                config["n_samples"] = self.n_samples
                attrs["config"] = json.dumps(config)
        attrs.update(self.attrs)
        return ds.assign_attrs(attrs)


def generate_to_store(
    generate: Callable[..., xr.Dataset],
    path: str | os.PathLike,
    n_samples: int,
    *,
    seed: int = 0,
    kwargs: Mapping[str, Any] | None = None,
    chunk_size: int = 32,
    overwrite: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    processes: bool = True,
    progress: bool = True,
) -> Path:
    """Write ``generate(n_samples, seed=seed, **kwargs)`` to one store, chunk by chunk.

    The store equals the in-memory ``generate(n_samples, seed=seed, **kwargs)`` (values,
    coordinates and attrs) whatever ``chunk_size`` or ``workers``. ``kwargs`` are further
    arguments of ``generate`` (see :class:`GeneratorChunks`). See
    :func:`~grepsnet_sciml.datasets.storage.write_dataset` for ``path``, ``overwrite``,
    ``workers``, ``scheduler``, ``processes``, ``progress`` and resuming.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    chunks = GeneratorChunks(generate, n_samples, seed, kwargs=kwargs)
    return write_dataset(
        path,
        chunks,
        n_samples,
        chunk_size,
        config=chunks.config(),
        overwrite=overwrite,
        workers=workers,
        scheduler=scheduler,
        processes=processes,
        progress=progress,
    )


def generate_splits(
    generate: Callable[..., xr.Dataset],
    path: str | os.PathLike,
    samples: Mapping[str, int],
    *,
    seed: int = 0,
    kwargs: Mapping[str, Any] | None = None,
    split_argument: bool = False,
    format: str = "zarr",
    chunk_size: int = 32,
    overwrite: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    processes: bool = True,
    progress: bool = True,
) -> dict[str, Path]:
    """Write train/valid/test splits into the directory ``path``, each from its own stream.

    Parameters
    ----------
    generate : callable
        The generator (see :class:`GeneratorChunks`).
    path : str or os.PathLike
        Output directory; refused if it exists, unless ``overwrite``.
    samples : mapping
        Samples per split, e.g. ``{"train": 1000, "valid": 100, "test": 100}``; splits with
        0 samples are left out, the others must be among ``SPLITS``.
    seed : int
        Global seed; split seeds derive from it (:func:`split_seed`).
    kwargs : mapping, optional
        Further arguments of ``generate`` (see :class:`GeneratorChunks`).
    split_argument : bool
        Call ``generate(..., seed=seed, split=name)`` for each split instead of deriving a
        seed per split (for generators that place splits themselves).
    format : str
        ``"zarr"`` or ``"netcdf"``.
    chunk_size, overwrite, workers, scheduler, processes, progress
        As in :func:`~grepsnet_sciml.datasets.storage.write_dataset`; an interrupted run
        resumes where it stopped, split by split, if the settings that change the bytes
        (:func:`~grepsnet_sciml.datasets._environment.runtime_environment`) are the stored
        ones.

    Returns
    -------
    dict
        Split name -> path of its store.
    """
    path = Path(path)
    seed = _seed(seed)
    unknown = sorted(set(samples) - set(SPLITS))
    if unknown:
        raise ValueError(f"samples: unknown splits {unknown}, expected keys among {SPLITS}")
    sizes = {s: int(samples[s]) for s in SPLITS if samples.get(s, 0) != 0}
    for s, n in sizes.items():
        positive_int(n, f"samples[{s!r}]")
    if not sizes:
        raise ValueError(f"samples: expected at least one positive split size, got {samples!r}")
    chunk_size = positive_int(chunk_size, "chunk_size")
    suffixes = {"zarr": ".zarr", "netcdf": ".nc"}
    if format not in suffixes:
        raise ValueError(f"format: expected 'zarr' or 'netcdf', got {format!r}")
    check_output(path, overwrite)
    streams = {}
    for name, n in sizes.items():
        split_kwargs = {**(kwargs or {}), "split": name} if split_argument else kwargs
        streams[name] = GeneratorChunks(
            generate,
            n,
            seed if split_argument else split_seed(seed, name),
            kwargs=split_kwargs,
            attrs={"split": name, "split_seed_from": seed},
        )
    arguments = {
        "splits": {s: {"n_samples": sizes[s], **c.config()} for s, c in streams.items()},
        "chunk_size": chunk_size,
        "format": format,
    }
    workspace = workspace_of(path)
    lock_fd = _open_split_workspace(workspace, arguments, overwrite)
    cluster = None
    try:
        if workers is not None:  # one cluster for all splits
            cluster = local_cluster(workers, processes)
            scheduler = cluster.scheduler_address
        for s, chunks in streams.items():
            store = workspace / f"{s}{suffixes[format]}"
            if store.exists():  # finished by an earlier run with the same arguments
                continue
            write_dataset(
                store,
                chunks,
                sizes[s],
                chunk_size,
                config=chunks.config(),
                scheduler=scheduler,
                progress=progress,
            )
        # The old ``path`` (with overwrite) is removed only once its replacement is in place.
        replaced = workspace.with_name(workspace.name + ".replaced")
        if path.exists() or path.is_symlink():
            if replaced.exists():
                remove(replaced)
            os.replace(path, replaced)
        os.replace(workspace, path)
        if replaced.exists():
            remove(replaced)
    except BaseException:
        nothing_done = workspace.is_dir() and [f.name for f in workspace.iterdir()] == [
            SPLITS_MANIFEST
        ]
        if nothing_done:  # nothing worth resuming: let other arguments follow
            shutil.rmtree(workspace, ignore_errors=True)
        raise
    finally:
        if cluster is not None:
            cluster.close()
        os.close(lock_fd)
    return {s: path / f"{s}{suffixes[format]}" for s in streams}


def _open_split_workspace(workspace: Path, arguments: dict, overwrite: bool) -> int:
    """Create or check the workspace of a split directory; return its lock."""
    digest = fingerprint(arguments)
    environment = runtime_environment()
    manifest_file = workspace / SPLITS_MANIFEST
    if workspace.exists():
        try:
            manifest = json.loads(manifest_file.read_text())
            ours = isinstance(manifest, dict) and manifest.get("kind") == SPLITS_KIND
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(
                f"{manifest_file}: missing or unreadable ({err}), so {workspace} is not a "
                "grepsnet-sciml workspace; move or delete it"
            ) from err
        if not ours:
            raise ValueError(
                f"{manifest_file}: not a grepsnet-sciml split manifest (expected kind "
                f"{SPLITS_KIND!r}); move or delete {workspace}"
            )
        if manifest.get("fingerprint") != digest:
            if not overwrite:
                raise ValueError(
                    f"{manifest_file}: unfinished work made with other arguments "
                    f"({describe_difference(manifest.get('arguments'), arguments)}); rerun "
                    "with the original arguments to resume it, or pass overwrite=True "
                    "(--overwrite) to discard it"
                )
            shutil.rmtree(workspace)
        elif manifest.get("environment") != environment:
            if not overwrite:
                stored = manifest.get("environment") or {}
                raise ValueError(
                    f"{manifest_file}: its splits were computed under other settings, which "
                    f"change the bytes ({describe_environment_difference(environment, stored)});"
                    " resuming would mix stores of different bits: resume under the stored "
                    "settings, or pass overwrite=True (--overwrite) to discard them"
                )
            shutil.rmtree(workspace)
    if not workspace.exists():
        staging = workspace.with_name(f"{workspace.name}.{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        make_directory(staging)
        manifest = {
            "kind": SPLITS_KIND, "fingerprint": digest, "arguments": arguments,
            "environment": environment,
        }
        atomic_write_text(staging / SPLITS_MANIFEST, json.dumps(manifest, indent=1))
        os.replace(staging, workspace)
    return lock_directory(workspace)


def open_splits(path: str | os.PathLike) -> dict[str, xr.Dataset]:
    """Open every split store of a directory written by :func:`generate_splits`, lazily.

    Returns
    -------
    dict
        Split name -> dask-backed dataset (see
        :func:`~grepsnet_sciml.datasets.storage.open_dataset`), in the order train, valid, test.

    Raises
    ------
    FileNotFoundError, ValueError
        ``path`` missing, unfinished, holding no split store, or a store not ours.
    """
    path = require_finished(path, "directory of splits")
    found = {}
    for s in SPLITS:
        for suffix in (".zarr", ".nc"):
            if (path / f"{s}{suffix}").exists():
                found[s] = open_dataset(path / f"{s}{suffix}")
    if not found:
        raise ValueError(
            f"{path}: no split store in it (expected train/valid/test .zarr or .nc stores)"
        )
    return found


def _recordable(value: Any, argument: str) -> Any:
    """``value`` as JSON for the fingerprint; dtypes and devices by name."""
    import torch

    if isinstance(value, (torch.dtype, torch.device, np.dtype)):
        return str(value)
    return jsonable(value, argument)


def _seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    return int(seed)
