"""Chunked, atomic, resumable storage of generated datasets, and lazy opening.

A dataset of ``n_samples`` samples is produced chunk by chunk by a callable
``make_chunk(first_sample, n) -> xarray.Dataset`` (samples ``first_sample .. first_sample + n - 1``
along the dimension ``sample``) and streamed to disk, so peak memory depends on the chunk size,
never on ``n_samples``. Chunks may be computed serially or on a dask.distributed cluster; the
driver process alone writes, each chunk into its own aligned region, so the result is the same
whatever the order in which chunks finish.

Formats: zarr (chunked along ``sample`` by ``chunk_size``; the default) or netCDF-4 through
h5netcdf when the path ends in ``.nc``.

Atomicity and resuming
----------------------
Nothing appears at ``PATH`` until the dataset is complete; a finished zarr store carries
consolidated metadata, so a plain ``xarray.open_zarr(PATH)`` opens it. The work happens in
the workspace ``PATH.partial/``::

    manifest.json   the arguments, their fingerprint, the settings the bytes depend on
                    (torch/numpy versions, CPU capability, threads) and the finished chunks
    store.zarr      the zarr store being filled, chunk by chunk
    assembled.nc    (netCDF only) the finished file, streamed from store.zarr at the end

A chunk is recorded in the manifest (written atomically: temp file + ``os.replace``) only after
its data are written, so a run killed at any moment (SIGKILL included) and started again with
the same arguments recomputes only the chunks not recorded and ends with the same bytes of
data as an uninterrupted run. A resume under other settings (another torch or numpy build,
another kind of CPU), or a chunk computed by a worker under other settings, is refused, as it
would mix chunks of different bits. The finished store is moved to ``PATH`` with ``os.replace``;
an existing ``PATH`` is kept until its replacement is complete. A workspace made with
different arguments, or a file that is not one of ours, is refused with an error naming it;
``overwrite`` replaces only a store or split directory this package wrote.

Reading
-------
:func:`open_dataset` is lazy; a chunk that cannot be decoded (truncated, overwritten) raises
a ``ValueError`` naming the store, the variable and the chunk file when it is read.
A run that fails before finishing any chunk removes its workspace (it holds nothing).

Examples
--------
>>> import tempfile, pathlib
>>> import numpy as np, xarray as xr
>>> def make_chunk(first, n):
...     k = np.arange(first, first + n, dtype=float)
...     return xr.Dataset({"u": (("sample", "x"), k[:, None] * np.ones(3))},
...                       attrs={"kind": "field", "group": "C4()",
...                              "representations": '{"u": "T0"}'})
>>> out = pathlib.Path(tempfile.mkdtemp()) / "demo.zarr"
>>> path = write_dataset(out, make_chunk, 5, 2, config={"demo": 1}, progress=False)
>>> ds = open_dataset(path)
>>> ds.u.chunks[0], float(ds.u.sum())
((2, 2, 1), 30.0)
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dask.array
import numpy as np
import xarray as xr
from dask.base import tokenize

from grepsnet_sciml._atomic import atomic_path, atomic_write_text

from ._environment import describe_environment_difference, runtime_environment
from ._files import (
    describe_difference,
    fingerprint,
    fsync_dir,
    jsonable,
    lock_directory,
    make_directory,
    positive_int,
    remove,
)
from ._progress import reporting

__all__ = [
    "MANIFEST_NAME",
    "SAMPLE_DIM",
    "check_output",
    "check_replaceable",
    "consolidate_metadata",
    "local_cluster",
    "open_dataset",
    "read_manifest",
    "require_finished",
    "storage_format",
    "validate_dataset",
    "workspace_of",
    "write_dataset",
]

SAMPLE_DIM = "sample"
MANIFEST_NAME = "manifest.json"
_MANIFEST_KIND = "grepsnet-sciml partial dataset"
_MANIFEST_VERSION = 2
SPLITS_MANIFEST = "splits.json"
SPLITS_KIND = "grepsnet-sciml split directory"
_SPLIT_STORES = {f"{s}{x}" for s in ("train", "valid", "test") for x in (".zarr", ".nc")}
_ZARR_METADATA = {"zarr.json", ".zattrs", ".zgroup", ".zmetadata"}
_STORE_NAME = "store.zarr"
_ASSEMBLED_NAME = "assembled.nc"
_REPLACED_NAME = "replaced"
# Time-like coordinates (e.g. ``time`` with units "s") stay plain floats on reading.
_OPEN_OPTIONS = {"decode_times": False, "decode_timedelta": False}


def storage_format(path: str | os.PathLike) -> str:
    """``"netcdf"`` when ``path`` ends in ``.nc``, otherwise ``"zarr"``."""
    return "netcdf" if Path(path).suffix == ".nc" else "zarr"


def workspace_of(path: str | os.PathLike) -> Path:
    """The workspace ``PATH.partial`` in which ``path`` is built."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def require_finished(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path, if generation there has finished.

    Raises
    ------
    ValueError
        ``path`` is missing but its workspace exists (an interrupted run).
    FileNotFoundError
        Nothing at ``path``; ``what`` names what was expected there.
    """
    path = Path(path)
    if not path.exists():
        if workspace_of(path).exists():
            raise ValueError(
                f"{path}: generation has not finished (its workspace {workspace_of(path)} "
                "exists); rerun the same command to complete it"
            )
        raise FileNotFoundError(f"{path}: no such {what}")
    return path


# --------------------------------------------------------------------------------------------
# writing


def write_dataset(
    path: str | os.PathLike,
    make_chunk: Callable[[int, int], xr.Dataset],
    n_samples: int,
    chunk_size: int,
    *,
    config: Mapping[str, Any],
    overwrite: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    processes: bool = True,
    progress: bool = True,
) -> Path:
    """Generate a dataset chunk by chunk and store it atomically and resumably.

    Chunk ``c`` holds samples ``c * chunk_size .. min((c + 1) * chunk_size, n_samples) - 1``
    and is computed as ``make_chunk(c * chunk_size, n)``. Variables with a ``sample``
    dimension are written chunk by chunk; everything else (coordinates such as ``x`` or
    ``time``, sample-independent variables, the dataset's attrs) comes from chunk 0.

    Parameters
    ----------
    path : str or os.PathLike
        Output: a zarr directory, or a netCDF-4 file when it ends in ``.nc``.
    make_chunk : callable
        ``make_chunk(first_sample, n) -> xarray.Dataset`` with a ``sample`` dimension of
        length ``n``; the same arguments must always give the same data. It must be picklable
        when ``workers`` or ``scheduler`` is given.
    n_samples : int
        Number of samples, positive.
    chunk_size : int
        Samples per chunk (and per zarr/netCDF chunk along ``sample``), positive; values above
        ``n_samples`` are reduced to ``n_samples``.
    config : mapping
        JSON-serialisable description of what ``make_chunk`` computes (generator, preset,
        seed, ...). Its fingerprint, with ``n_samples``, ``chunk_size`` and the format, decides
        whether an existing workspace may be resumed.
    overwrite : bool
        Replace an existing ``path`` (only once the new dataset is complete), and discard a
        workspace made with other arguments or settings. Without it both are refused. Only a
        store or split directory this package wrote is replaced (:func:`check_replaceable`).
    workers : int, optional
        Compute chunks on a dask.distributed ``LocalCluster`` of this many single-threaded
        workers listening on 127.0.0.1 only. This process computes chunks itself, in order,
        until the cluster is up (so a job shorter than the workers' start runs as serially).
    scheduler : str, optional
        Address of an existing dask.distributed scheduler to compute chunks on (the workers
        need ``make_chunk``'s code; results come back to this process, which writes them).
    processes : bool
        With ``workers``: worker processes (true parallelism) or threads of this process.
    progress : bool
        Show a tqdm bar (samples written).

    Returns
    -------
    pathlib.Path
        ``path``, holding the complete dataset.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is false.
    ValueError
        Bad arguments; a workspace made with other arguments or under other settings of
        :func:`~grepsnet_sciml.datasets._environment.runtime_environment` (without
        ``overwrite``); a chunk computed by a worker under other settings; a ``path``, workspace
        or store that is not ours or is corrupt; a chunk of the wrong form.
    PermissionError
        The folder of ``path`` is not writable (the message names it).
    """
    path = Path(path)
    n_samples = positive_int(n_samples, "n_samples")
    chunk_size = min(positive_int(chunk_size, "chunk_size"), n_samples)
    if not callable(make_chunk):
        raise ValueError(f"make_chunk: expected a callable (first_sample, n), got {make_chunk!r}")
    if workers is not None and scheduler is not None:
        raise ValueError(f"workers={workers!r}, scheduler={scheduler!r}: give at most one of them")
    if workers is not None:
        workers = positive_int(workers, "workers")
    check_output(path, overwrite)
    arguments = {
        "config": jsonable(config, "config"),
        "n_samples": n_samples,
        "chunk_size": chunk_size,
        "format": storage_format(path),
    }
    workspace = _Workspace.open(workspace_of(path), arguments, overwrite)
    try:
        todo = workspace.missing_chunks()
        if todo:
            _fill(workspace, make_chunk, todo, workers, scheduler, processes, progress, path.name)
        workspace.finish(path)
    except BaseException:
        # A run that fails before finishing any chunk (e.g. a generator argument it rejects)
        # leaves nothing worth resuming: remove its workspace, so other arguments may follow.
        if not workspace.manifest["complete"]:
            shutil.rmtree(workspace.root, ignore_errors=True)
        raise
    finally:
        workspace.release()
    return path


def _fill(workspace, make_chunk, todo, workers, scheduler, processes, progress, label):
    """Compute the chunks ``todo`` and write each as it arrives."""
    from contextlib import closing

    from tqdm.auto import tqdm

    n_samples = workspace.arguments["n_samples"]
    done = n_samples - sum(workspace.bounds(c)[1] for c in todo)
    waiting: dict[int, xr.Dataset] = {}  # chunks that arrived before chunk 0 set the layout
    written, pending = [done], [0.0]  # samples stored; work reported on the chunk computed here
    with (
        tqdm(total=n_samples, initial=done, unit="sample", desc=label, disable=not progress,
             bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total} samples "
             "[{elapsed}<{remaining}]") as bar,
        closing(_compute(make_chunk, workspace, todo, workers, scheduler, processes)) as results,
    ):
        def advance(samples: float) -> None:  # a chunk computed here moves the bar as it goes
            pending[0] += samples
            bar.update(min(float(n_samples), written[0] + pending[0]) - bar.n)

        with reporting(advance):
            for c, chunk in results:
                if not workspace.initialised and c != 0:
                    waiting[c] = chunk
                    continue
                for c_ready, ready in [(c, chunk), *sorted(waiting.items())]:
                    workspace.write_chunk(c_ready, ready)
                    written[0] += workspace.bounds(c_ready)[1]
                waiting.clear()
                pending[0] = 0.0
                bar.update(written[0] - bar.n)


def _compute(make_chunk, workspace, todo, workers, scheduler, processes) -> Iterator:
    """Yield ``(chunk index, dataset)`` for each chunk in ``todo``, in completion order.

    With ``workers`` or ``scheduler``, the cluster starts (or the client connects) in a
    background thread while this process computes chunks itself, in order; the workers take
    the remaining chunks once they are up. Their start (processes, imports) thus costs no
    time of its own: a job shorter than it runs as serially, a longer one gains the workers'
    throughput. Every chunk is ``make_chunk(first, n)`` wherever it runs, so the bytes are
    the same.
    """
    queue = iter(todo)
    if workers is None and scheduler is None:
        for c in queue:
            yield c, _call_chunk(make_chunk, workspace, c)
        return
    starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grepsnet-cluster")
    connecting = starter.submit(_connect, workers, scheduler, processes)
    starter.shutdown(wait=False)
    try:
        while not connecting.done():
            c = next(queue, None)
            if c is None:
                return
            yield c, _call_chunk(make_chunk, workspace, c)
        yield from _compute_on(connecting.result()[1], make_chunk, workspace, queue)
    finally:
        _disconnect(connecting)


def _connect(workers, scheduler, processes):
    """``(cluster, client)``: a new :func:`local_cluster` (None with ``scheduler``) and a client."""
    from distributed import Client

    cluster = local_cluster(workers, processes) if scheduler is None else None
    try:
        return cluster, Client(cluster if cluster is not None else scheduler)
    except BaseException:
        if cluster is not None:
            cluster.close()
        raise


def _disconnect(connecting) -> None:
    """Close the client and cluster of ``connecting`` once it has them (nothing if it failed)."""
    try:
        cluster, client = connecting.result()
    except Exception:  # the start failed: nothing to close, and its error was raised already
        return
    client.close()
    if cluster is not None:
        cluster.close()


def _compute_on(client, make_chunk, workspace, queue) -> Iterator:
    """Yield ``(chunk index, dataset)`` for the chunks left in ``queue``, computed on ``client``."""
    from distributed import as_completed

    n_workers = max(1, len(client.scheduler_info()["workers"]))
    running = as_completed()
    key = workspace.arguments_fingerprint[:16]

    def submit_next() -> bool:
        c = next(queue, None)
        if c is not None:
            first, n = workspace.bounds(c)
            running.add(client.submit(
                _computed_with, make_chunk, first, n, key=f"grepsnet-{key}-{c}", pure=False
            ))
        return c is not None

    # At most two chunks per worker are in flight. Until chunk 0 has laid out the store,
    # finished chunks wait in memory, so no more are started: memory stays bounded.
    limit = 2 * n_workers
    for _ in range(limit):
        submit_next()
    for future in running:
        c = int(future.key.rsplit("-", 1)[1])
        environment, chunk = future.result()
        future.release()
        if environment != workspace.environment:
            difference = describe_environment_difference(
                environment, workspace.environment, ("this run", "worker")
            )
            raise ValueError(
                f"chunk {c} of {workspace.root} was computed by a dask worker under other "
                f"settings, which change the bytes ({difference}); run workers with the "
                "same torch and numpy builds on the same kind of CPU"
            )
        yield c, chunk
        if workspace.initialised:
            while running.count() < limit and submit_next():
                pass


def local_cluster(workers: int, processes: bool = True):
    """A dask.distributed ``LocalCluster`` of single-threaded workers on 127.0.0.1 only.

    The workers start without dask's ``MALLOC_TRIM_THRESHOLD_=65536``: setting that glibc
    variable at all turns off malloc's adaptive mmap threshold, so every large temporary
    array of a solver is mapped and unmapped afresh (a Navier-Stokes generation ran 4x
    slower serially with it set).

    Parameters
    ----------
    workers : int
        Number of workers.
    processes : bool
        Worker processes (true parallelism) or threads of this process (cheap to start).
    """
    import dask.config
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(
            n_workers=positive_int(workers, "workers"),
            threads_per_worker=1,
            processes=processes,
            protocol="tcp://",
            host="127.0.0.1",
            dashboard_address=None,
        )


def _computed_with(make_chunk, first: int, n: int) -> tuple[dict, xr.Dataset]:
    """``(runtime_environment(), make_chunk(first, n))``, run on a dask worker."""
    return runtime_environment(), make_chunk(first, n)


def _call_chunk(make_chunk, workspace, c) -> xr.Dataset:
    first, n = workspace.bounds(c)
    return make_chunk(first, n)


class _Workspace:
    """The ``PATH.partial`` directory: manifest, lock and the store being filled."""

    def __init__(self, root: Path, manifest: dict, lock_fd: int):
        self.root = root
        self.manifest = manifest
        self._lock_fd = lock_fd

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path, arguments: dict, overwrite: bool) -> _Workspace:
        digest = fingerprint(arguments)
        environment = runtime_environment()
        if root.exists() and overwrite:
            try:
                read_manifest(root)
            except _OtherVersionError:  # ours, from another version: discard it
                shutil.rmtree(root)
        if root.exists():
            manifest = read_manifest(root)
            finished = len(_ranges_to_set(manifest["complete"])) == manifest["n_chunks"]
            if finished and not (root / _STORE_NAME).exists():
                # left over by a run stopped after moving its dataset out: nothing to resume
                shutil.rmtree(root)
            elif manifest["fingerprint"] != digest:
                if not overwrite:
                    raise ValueError(
                        f"{root / MANIFEST_NAME}: unfinished work made with other arguments "
                        f"({describe_difference(manifest['arguments'], arguments)}); rerun "
                        "with the original arguments to resume it, or pass overwrite=True "
                        "(--overwrite) to discard it"
                    )
                shutil.rmtree(root)
            elif manifest["environment"] != environment:
                if not overwrite:
                    raise ValueError(
                        f"{root / MANIFEST_NAME}: its chunks were computed under other settings, "
                        "which change the bytes ("
                        f"{describe_environment_difference(environment, manifest['environment'])}"
                        "); resuming would mix chunks of different bits: resume under the stored "
                        "settings, or pass overwrite=True (--overwrite) to discard them"
                    )
                shutil.rmtree(root)
        if not root.exists():
            n_chunks = -(-arguments["n_samples"] // arguments["chunk_size"])
            manifest = {
                "kind": _MANIFEST_KIND,
                "version": _MANIFEST_VERSION,
                "fingerprint": digest,
                "arguments": arguments,
                "environment": environment,
                "n_chunks": n_chunks,
                "initialised": False,
                "complete": [],
            }
            # Created under a temporary name and renamed, so a workspace always has a manifest.
            staging = root.with_name(f"{root.name}.{os.getpid()}.tmp")
            shutil.rmtree(staging, ignore_errors=True)
            make_directory(staging)
            atomic_write_text(staging / MANIFEST_NAME, json.dumps(manifest, indent=1))
            os.replace(staging, root)
        lock_fd = lock_directory(root)
        try:
            manifest = read_manifest(root)
        except ValueError:
            os.close(lock_fd)
            raise
        return cls(root, manifest, lock_fd)

    def release(self) -> None:
        os.close(self._lock_fd)

    # -- bookkeeping -------------------------------------------------------------------------
    @property
    def arguments(self) -> dict:
        return self.manifest["arguments"]

    @property
    def arguments_fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def environment(self) -> dict:
        """The settings the chunks were computed under (see ``runtime_environment``)."""
        return self.manifest["environment"]

    @property
    def initialised(self) -> bool:
        return self.manifest["initialised"]

    @property
    def store(self) -> Path:
        return self.root / _STORE_NAME

    def bounds(self, c: int) -> tuple[int, int]:
        """``(first_sample, n)`` of chunk ``c``."""
        size = self.arguments["chunk_size"]
        first = c * size
        return first, min(size, self.arguments["n_samples"] - first)

    def missing_chunks(self) -> list[int]:
        done = _ranges_to_set(self.manifest["complete"])
        return [c for c in range(self.manifest["n_chunks"]) if c not in done]

    def _save(self) -> None:
        atomic_write_text(self.root / MANIFEST_NAME, json.dumps(self.manifest, indent=1))

    # -- writing -----------------------------------------------------------------------------
    def write_chunk(self, c: int, chunk: xr.Dataset) -> None:
        """Write chunk ``c`` into its region (creating the store from chunk 0), then record it."""
        first, n = self.bounds(c)
        if not isinstance(chunk, xr.Dataset):
            raise ValueError(
                f"make_chunk({first}, {n}): expected an xarray.Dataset, got {type(chunk).__name__}"
            )
        if chunk.sizes.get(SAMPLE_DIM) != n:
            raise ValueError(
                f"make_chunk({first}, {n}): expected a '{SAMPLE_DIM}' dimension of length {n}, "
                f"got sizes {dict(chunk.sizes)}"
            )
        if SAMPLE_DIM in chunk.indexes and not np.array_equal(
            chunk[SAMPLE_DIM].values, np.arange(first, first + n)
        ):
            raise ValueError(
                f"make_chunk({first}, {n}): its '{SAMPLE_DIM}' coordinate must be "
                f"{first} .. {first + n - 1}, got {chunk[SAMPLE_DIM].values[[0, -1]].tolist()}"
            )
        chunk = _variable_length_strings(chunk)
        if not self.initialised:  # _fill hands over chunk 0 first
            self._create_store(chunk)
            self.manifest["initialised"] = True
            self._save()
        self._check_layout(chunk, first, n)
        region = chunk.drop_encoding().drop_vars(
            [name for name, var in chunk.variables.items() if SAMPLE_DIM not in var.dims]
        )
        if SAMPLE_DIM in region.indexes:
            region = region.drop_vars(SAMPLE_DIM)
        region.attrs = {}
        try:
            region.to_zarr(
                self.store, region={SAMPLE_DIM: slice(first, first + n)}, consolidated=False
            )
        except (OSError, KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{self.store}: cannot write chunk {c} ({err}); the partial store may be "
                "corrupt: delete it or pass overwrite=True (--overwrite)"
            ) from err
        done = _ranges_to_set(self.manifest["complete"]) | {c}
        self.manifest["complete"] = _set_to_ranges(done)
        self._save()

    def _create_store(self, chunk: xr.Dataset) -> None:
        """Lay out the whole store from chunk 0: metadata, coordinates, sample-free data."""
        n_samples = self.arguments["n_samples"]
        size = self.arguments["chunk_size"]
        chunk = chunk.drop_encoding()
        variables, encoding = {}, {}
        for name, var in chunk.variables.items():
            if name == SAMPLE_DIM:
                var = xr.Variable(SAMPLE_DIM, np.arange(n_samples), var.attrs)
            elif SAMPLE_DIM in var.dims:
                shape = tuple(n_samples if d == SAMPLE_DIM else s for d, s in var.sizes.items())
                chunks = tuple(size if d == SAMPLE_DIM else s for d, s in var.sizes.items())
                lazy = dask.array.zeros(shape, dtype=var.dtype, chunks=chunks)
                var = xr.Variable(var.dims, lazy, var.attrs)
                encoding[name] = {"chunks": chunks}
            variables[name] = var
        template = xr.Dataset(
            {k: v for k, v in variables.items() if k in chunk.data_vars},
            coords={k: v for k, v in variables.items() if k in chunk.coords},
            attrs=chunk.attrs,
        )
        template.to_zarr(self.store, mode="w", compute=False, consolidated=False, encoding=encoding)

    def _check_layout(self, chunk: xr.Dataset, first: int, n: int) -> None:
        """Every chunk must have chunk 0's sample variables, dimensions and dtypes."""
        expected = self._layout()
        got = {
            name: (var.dims, _dtype_name(var.dtype), _sample_free_shape(var))
            for name, var in chunk.variables.items()
            if SAMPLE_DIM in var.dims and name != SAMPLE_DIM
        }
        if got != expected:
            raise ValueError(
                f"make_chunk({first}, {n}): its variables {got} differ from those of the "
                f"store {expected}"
            )

    def _layout(self) -> dict:
        if not hasattr(self, "_layout_cache"):
            try:
                stored = xr.open_zarr(
                    self.store,
                    consolidated=False,
                    chunks=None,
                    mask_and_scale=False,
                    **_OPEN_OPTIONS,
                )
            except Exception as err:  # any failure to read the store means it is unusable
                raise ValueError(
                    f"{self.store}: the partial store cannot be read ({err}); delete "
                    f"{self.root} or pass overwrite=True (--overwrite)"
                ) from err
            self._layout_cache = {
                name: (var.dims, _dtype_name(var.dtype), _sample_free_shape(var))
                for name, var in stored.variables.items()
                if SAMPLE_DIM in var.dims and name != SAMPLE_DIM
            }
            stored.close()
        return self._layout_cache

    def finish(self, path: Path) -> None:
        """Move the finished dataset to ``path`` (a zarr store with consolidated metadata)
        and remove the workspace."""
        product = self.store
        if self.arguments["format"] == "netcdf":
            product = self.root / _ASSEMBLED_NAME
            if not product.exists():
                _assemble_netcdf(self.store, product, self.arguments["chunk_size"])
        else:
            consolidate_metadata(product)
        if path.exists() or path.is_symlink():
            replaced = self.root / _REPLACED_NAME
            if replaced.exists():
                remove(replaced)
            os.replace(path, replaced)
        os.replace(product, path)
        fsync_dir(path.parent)
        self._discard()

    def _discard(self) -> None:
        """Remove the workspace: renamed first, so a half-deleted one is never mistaken."""
        trash = self.root.with_name(f"{self.root.name}.{os.getpid()}.trash")
        os.replace(self.root, trash)
        shutil.rmtree(trash)


def _assemble_netcdf(store: Path, target: Path, chunk_size: int) -> None:
    """Stream the finished zarr ``store`` into the netCDF-4 file ``target`` (atomically)."""
    ds = xr.open_zarr(store, consolidated=False, chunks={}, **_OPEN_OPTIONS).drop_encoding()
    encoding = {
        name: {
            "chunksizes": tuple(chunk_size if d == SAMPLE_DIM else s for d, s in var.sizes.items())
        }
        for name, var in ds.variables.items()
        if SAMPLE_DIM in var.dims and name != SAMPLE_DIM
    }
    with atomic_path(target, suffix=".nc") as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
        ds.close()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())


def consolidate_metadata(store: str | os.PathLike) -> None:
    """Write the consolidated metadata of the finished zarr ``store``.

    Then a plain ``xarray.open_zarr(store)`` opens it from one metadata read and without the
    warning about missing consolidated metadata. Call it after the last change to the
    store's arrays or attrs: later changes are not seen by consolidated readers. zarr's
    warning that consolidated metadata is not part of the Zarr format 3 specification is
    silenced (xarray and zarr-python read it).
    """
    import zarr
    from zarr.errors import ZarrUserWarning

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Consolidated metadata is currently not part",
            category=ZarrUserWarning,
        )
        zarr.consolidate_metadata(os.fspath(store))


# --------------------------------------------------------------------------------------------
# the manifest


def read_manifest(workspace: str | os.PathLike) -> dict:
    """Read and check the manifest of a workspace ``PATH.partial``.

    Raises
    ------
    ValueError
        Naming the manifest file, when it is missing, unreadable or not ours.
    """
    file = Path(workspace) / MANIFEST_NAME
    try:
        manifest = json.loads(file.read_text())
    except FileNotFoundError:
        raise ValueError(
            f"{file}: missing, so {workspace} is not a grepsnet-sciml workspace; move or delete it"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{file}: corrupt manifest ({err}); delete {workspace}") from err
    keys = {
        "kind", "version", "fingerprint", "arguments", "environment", "n_chunks", "initialised",
        "complete",
    }
    if not isinstance(manifest, dict) or manifest.get("kind") != _MANIFEST_KIND:
        raise ValueError(
            f"{file}: not a grepsnet-sciml manifest (expected a JSON object with kind "
            f"{_MANIFEST_KIND!r} and keys {sorted(keys)}); move or delete {workspace}"
        )
    if manifest.get("version") != _MANIFEST_VERSION or not keys <= manifest.keys():
        raise _OtherVersionError(
            f"{file}: manifest version {manifest.get('version')!r}, expected "
            f"{_MANIFEST_VERSION} with keys {sorted(keys)} (made by another version of "
            f"grepsnet-sciml); delete {workspace} or pass overwrite=True (--overwrite)"
        )
    return manifest


class _OtherVersionError(ValueError):
    """A manifest of ours written by another version of the package."""


def _ranges_to_set(ranges: list) -> set[int]:
    return {c for start, stop in ranges for c in range(start, stop)}


def _set_to_ranges(chunks: set[int]) -> list[list[int]]:
    """``{0, 1, 2, 5}`` -> ``[[0, 3], [5, 6]]`` (half-open ranges)."""
    ranges: list[list[int]] = []
    for c in sorted(chunks):
        if ranges and ranges[-1][1] == c:
            ranges[-1][1] = c + 1
        else:
            ranges.append([c, c + 1])
    return ranges


def check_output(path: Path, overwrite: bool) -> None:
    """Raise unless ``path`` is free, or ``overwrite`` is set and ``path`` is ours to replace."""
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(
                f"{path} already exists; choose another output path or pass overwrite=True "
                "(--overwrite) to replace it"
            )
        check_replaceable(path)


def check_replaceable(path: str | os.PathLike) -> None:
    """Raise unless ``path`` is something this package wrote, so ``overwrite`` may replace it.

    Replaceable are a dataset store (zarr folder or netCDF file) that
    :func:`open_dataset` accepts and whose folder holds nothing but zarr metadata and arrays,
    and a split directory (its ``splits.json`` of our kind, beside nothing but split stores).

    Raises
    ------
    ValueError
        Naming ``path`` and why it is not ours (what it holds, or why it cannot be read).
    """
    path = Path(path)
    refuse = (
        f"{path}: refusing to overwrite it: {{}}; --overwrite (overwrite=True) replaces only a "
        "store or split directory written by grepsnet-sciml: move or delete it yourself, or "
        "choose another output path"
    )
    if path.is_dir() and (path / SPLITS_MANIFEST).is_file():
        try:
            kind = json.loads((path / SPLITS_MANIFEST).read_text()).get("kind")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            kind = None
        if kind != SPLITS_KIND:
            raise ValueError(refuse.format(f"its {SPLITS_MANIFEST} is not one of ours"))
        allowed = _SPLIT_STORES | {SPLITS_MANIFEST}
        foreign = sorted(f.name for f in path.iterdir() if f.name not in allowed)
        if foreign:
            raise ValueError(refuse.format(f"it holds files that are not ours: {foreign}"))
        return
    if not (path.is_dir() or path.is_file()):
        raise ValueError(refuse.format("it is neither a file nor a folder"))
    if path.is_dir():
        foreign = sorted(
            f.name for f in path.iterdir()
            if f.name not in _ZARR_METADATA
            and not (f.is_dir() and ((f / "zarr.json").is_file() or (f / ".zarray").is_file()))
        )
        if foreign:
            raise ValueError(refuse.format(f"it holds files that are not ours: {foreign}"))
    try:
        open_dataset(path).close()
    except ValueError as err:
        raise ValueError(refuse.format(f"it is not a grepsnet-sciml dataset ({err})")) from err


# --------------------------------------------------------------------------------------------
# reading


def open_dataset(path: str | os.PathLike, chunks: Mapping | None = None) -> xr.Dataset:
    """Open a stored dataset lazily (dask-backed) and check that it is one of ours.

    Parameters
    ----------
    path : str or os.PathLike
        A zarr store or netCDF file written by :func:`write_dataset`.
    chunks : mapping, optional
        Dask chunks; by default the stored ones (``chunk_size`` samples along ``sample``).

    Returns
    -------
    xarray.Dataset
        Nothing is loaded until asked for, so datasets larger than memory work.

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    ValueError
        ``path`` is unfinished (its workspace exists), unreadable, or lacks the attrs of a
        grepsnet-sciml dataset (``kind``, ``group``, ``representations``).
    """
    path = require_finished(path, "dataset")
    chunks = {} if chunks is None else dict(chunks)
    try:
        if path.is_dir():
            ds = xr.open_zarr(path, consolidated=False, chunks=chunks, **_OPEN_OPTIONS)
        else:
            ds = xr.open_dataset(path, engine="h5netcdf", chunks=chunks, **_OPEN_OPTIONS)
    except Exception as err:  # any failure to read means it is not a store we can use
        hint = ""
        if path.is_dir() and any(path.glob("*.zarr")):
            hint = "; it looks like a directory of splits: use open_splits"
        raise ValueError(
            f"{path}: not a readable zarr store or netCDF-4 file ({type(err).__name__}: "
            f"{err}){hint}"
        ) from err
    try:
        validate_dataset(ds, source=str(path))
        return _checked_reads(ds, path)
    except ValueError:
        ds.close()
        raise


def _checked_reads(ds: xr.Dataset, path: Path) -> xr.Dataset:
    """``ds`` with every dask-backed variable read through :class:`_CheckedArray`."""
    if path.is_dir():
        raw = xr.open_zarr(path, consolidated=False, chunks=None, **_OPEN_OPTIONS)
    else:
        raw = xr.open_dataset(path, engine="h5netcdf", chunks=None, **_OPEN_OPTIONS)
    replaced = {}
    for name, var in ds.variables.items():
        if isinstance(var.data, dask.array.Array):
            guarded = _CheckedArray(raw[name].variable, path, str(name))
            data = dask.array.from_array(
                guarded, chunks=var.data.chunks, lock=False, asarray=False,
                name=f"grepsnet-read-{tokenize(str(path), name, var.data.name)}",
                meta=np.empty((0,) * var.ndim, dtype=var.dtype),
            )
            replaced[name] = var.copy(data=data)
    return ds.assign(replaced)


class _CheckedArray:
    """One stored variable, read on demand; a failed read names the store, the variable and
    the chunk file(s) (zarr) or HDF5 chunk indices (netCDF) instead of a bare codec error.

    Parameters
    ----------
    variable : xarray.Variable
        The variable opened lazily (not dask-backed, not loaded).
    path : pathlib.Path
        The store or netCDF file.
    name : str
        The variable's name.
    """

    def __init__(self, variable: xr.Variable, path: Path, name: str):
        self.variable, self.path, self.name = variable, path, name
        self.shape, self.dtype, self.ndim = variable.shape, variable.dtype, variable.ndim
        stored = variable.encoding.get("chunks") or variable.encoding.get("chunksizes")
        self.stored_chunks = tuple(stored) if stored else self.shape

    def __getitem__(self, key) -> np.ndarray:
        try:
            return np.asarray(self.variable[key].values)
        except Exception as err:  # a codec, HDF5 or file-system error: name where it happened
            raise ValueError(
                f"{self.path}: variable {self.name!r}: cannot read {self._where(key)} "
                f"({type(err).__name__}: {err}); the file is damaged (truncated or overwritten): "
                "regenerate the dataset"
            ) from err

    def _where(self, key) -> str:
        """The stored chunks that ``key`` (a tuple of slices) covers, as chunk files."""
        ranges = []
        for s, size, step in zip(key, self.shape, self.stored_chunks):
            start, stop, _ = s.indices(size)
            ranges.append(range(start // step, max(start, stop - 1) // step + 1))
        coords = list(itertools.product(*ranges))
        if not self.path.is_dir():
            return f"HDF5 chunk(s) {coords[:3]}" + (" ..." if len(coords) > 3 else "")
        files = [str(self.path / self.name / _zarr_chunk_key(self.path / self.name, c))
                 for c in coords[:3]]
        return "chunk file(s) " + ", ".join(files) + (" ..." if len(coords) > 3 else "")


def _zarr_chunk_key(array_dir: Path, coords: tuple[int, ...]) -> str:
    """The name, inside a zarr array's folder, of the chunk at ``coords`` (v3 or v2 layout)."""
    try:
        meta = json.loads((array_dir / "zarr.json").read_text())
    except (OSError, ValueError):
        meta = None
    if isinstance(meta, dict):  # zarr v3: "default" keys are c/i/j, "v2" keys i.j
        encoding = meta.get("chunk_key_encoding", {})
        separator = encoding.get("configuration", {}).get("separator", "/")
        prefix = f"c{separator}" if encoding.get("name", "default") == "default" else ""
        return prefix + separator.join(map(str, coords)) if coords else "c"
    try:
        separator = json.loads((array_dir / ".zarray").read_text()).get("dimension_separator")
    except (OSError, ValueError, AttributeError):
        separator = None
    return (separator or ".").join(map(str, coords)) or "0"


def validate_dataset(ds: xr.Dataset, source: str | None = None):
    """Check the attrs every grepsnet-sciml dataset declares: the contract of
    :class:`~grepsnet_sciml.datasets.contract.DatasetSpec`.

    ``kind`` is ``"field"`` or ``"particles"``; ``group`` is the repr of a group;
    ``representations`` is a JSON object mapping variable names (at least one of them a
    variable of ``ds``; the others are optional variables not stored) to representation
    kinds of that group; ``symmetry`` (optional) declares the elements
    (:meth:`~grepsnet_sciml.datasets.contract.DatasetSpec.from_dataset`).

    Parameters
    ----------
    ds : xarray.Dataset
    source : str, optional
        Names ``ds`` in errors (default
        :func:`~grepsnet_sciml.datasets.contract.source_of`).

    Returns
    -------
    DatasetSpec
        The parsed attrs.

    Raises
    ------
    ValueError
        Naming ``source``, the attribute and what was expected; a dataset lacking all of
        ``kind``, ``group`` and ``representations`` is called not a grepsnet-sciml dataset.
    """
    from .contract import DatasetSpec, source_of

    source = source_of(ds) if source is None else str(source)
    missing = [a for a in ("kind", "group", "representations") if a not in ds.attrs]
    if missing:
        raise ValueError(
            f"{source}: not a grepsnet-sciml dataset: attrs {missing} missing (expected "
            "'kind', 'group' and 'representations', as written by grepsnet_sciml.datasets)"
        )
    if source_of(ds) != source:  # name ds as the caller does
        ds = ds.copy(deep=False)
        ds.encoding = {**ds.encoding, "source": source}
    return DatasetSpec.from_dataset(ds)


# --------------------------------------------------------------------------------------------
# small helpers


def _sample_free_shape(var: xr.Variable) -> tuple[int, ...]:
    return tuple(s for d, s in zip(var.dims, var.shape) if d != SAMPLE_DIM)


def _dtype_name(dtype: np.dtype) -> str:
    """Dtype for comparing layouts; strings of any storage are ``"str"``."""
    return "str" if dtype.kind in "UOT" else str(dtype)


def _variable_length_strings(ds: xr.Dataset) -> xr.Dataset:
    """Fixed-width strings (e.g. a ``spatial`` coordinate) as variable-length ones.

    Zarr v3 has a specified variable-length string type but none for fixed-width numpy
    strings (zarr warns it may change); values and xarray equality are unaffected.
    """
    fixed = [name for name, var in ds.variables.items() if var.dtype.kind == "U"]
    return ds.assign({name: ds[name].astype(object) for name in fixed}) if fixed else ds
