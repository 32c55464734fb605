"""Chunked, atomic, resumable storage: round trips, resuming after a kill, workers, bad input."""

import inspect
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from grepsnet_sciml.datasets import splits as splits_mod
from grepsnet_sciml.datasets import storage
from grepsnet_sciml.datasets.splits import (
    SPLITS,
    GeneratorChunks,
    generate_splits,
    generate_to_store,
    open_splits,
    split_seed,
)
from grepsnet_sciml.datasets.storage import open_dataset, write_dataset

N = 10


def standin_generate(n_samples, *, seed, first_sample=0, resolution=4, preset="tiny"):
    """A small generator honouring the datasets contract: sample k depends on (seed, k) only."""
    fields, labels = [], []
    for k in range(first_sample, first_sample + n_samples):
        rng = np.random.default_rng([seed, k])
        fields.append(rng.standard_normal((3, resolution, resolution)))
        labels.append(rng.integers(0, 100))
    grid = np.arange(resolution) / resolution
    config = {"n_samples": n_samples, "first_sample": first_sample, "seed": seed,
              "resolution": resolution, "preset": preset}
    return xr.Dataset(
        {
            "vorticity": (("sample", "time", "x", "y"), np.stack(fields), {"units": "1/s"}),
            "label": ("sample", np.array(labels, dtype=np.int32)),
            "forcing": (("x", "y"), np.cos(2 * np.pi * grid)[:, None] + 0 * grid),
        },
        coords={"sample": np.arange(first_sample, first_sample + n_samples),
                "time": ("time", [0.0, 0.5, 1.0], {"units": "s"}), "x": grid, "y": grid},
        attrs={"kind": "field", "group": "D4()", "seed": seed, "config": json.dumps(config),
               "representations": json.dumps({"vorticity": "T0p", "label": "T0"})},
    )


class Recorder:
    """make_chunk that records the chunks it computes and can fail after ``fail_after`` calls."""

    def __init__(self, chunks, fail_after=None):
        self.chunks, self.fail_after, self.calls = chunks, fail_after, []

    def __call__(self, first, n):
        if self.fail_after is not None and len(self.calls) == self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls.append(first)
        return self.chunks(first, n)


class LateFirstChunk:
    """make_chunk whose chunk 0 is slow, so that later chunks finish first on workers."""

    def __init__(self, chunks):
        self.chunks = chunks

    def __call__(self, first, n):
        if first == 0:
            time.sleep(0.5)
        return self.chunks(first, n)


def _chunks(seed=0, n=N, **kwargs):
    return GeneratorChunks(standin_generate, n, seed, kwargs=kwargs)


def _write(path, make_chunk, n=N, chunk_size=3, **kwargs):
    config = kwargs.pop("config", {"test": "standin"})
    return write_dataset(path, make_chunk, n, chunk_size, config=config, progress=False, **kwargs)


def _tree_bytes(path):
    path = Path(path)
    if path.is_file():
        return {".": path.read_bytes()}
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*"))
            if f.is_file()}


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_round_trip_equals_in_memory_generation_and_is_lazy(tmp_path, suffix):
    path = generate_to_store(standin_generate, tmp_path / f"d{suffix}", N, seed=5, chunk_size=3,
                             progress=False)
    assert path.is_dir() == (suffix == ".zarr")
    assert not storage.workspace_of(path).exists()
    ds = open_dataset(path)
    assert ds.vorticity.chunks[0] == (3, 3, 3, 1)
    assert type(ds.vorticity.data).__module__.startswith("dask")
    xr.testing.assert_identical(ds.load(), standin_generate(N, seed=5))
    assert ds.vorticity.dtype == np.float64 and ds.label.dtype == np.int32


def test_finished_zarr_store_opens_with_plain_open_zarr(tmp_path):
    # consolidated metadata: no "Failed to open Zarr store with consolidated metadata"
    # warning (warnings are errors here), and the metadata describe the complete store
    path = generate_to_store(standin_generate, tmp_path / "d.zarr", N, seed=5, chunk_size=3,
                             progress=False)
    with xr.open_zarr(path, consolidated=True, decode_times=False) as ds:
        assert ds.vorticity.shape[0] == N and ds.attrs["kind"] == "field"
        xr.testing.assert_identical(ds.load(), standin_generate(N, seed=5))
    with xr.open_zarr(path, decode_times=False) as ds:
        assert ds.sizes["sample"] == N


def test_chunk_size_does_not_change_the_data(tmp_path):
    a = generate_to_store(standin_generate, tmp_path / "a.zarr", N, seed=1, chunk_size=2,
                          progress=False)
    b = generate_to_store(standin_generate, tmp_path / "b.zarr", N, seed=1, chunk_size=7,
                          progress=False)
    xr.testing.assert_identical(open_dataset(a).load(), open_dataset(b).load())
    # and a different seed gives different data
    c = generate_to_store(standin_generate, tmp_path / "c.zarr", N, seed=2, chunk_size=7,
                          progress=False)
    assert not np.allclose(open_dataset(a).vorticity, open_dataset(c).vorticity)


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_resume_after_a_crash_computes_only_missing_chunks(tmp_path, suffix):
    reference = _write(tmp_path / f"ref{suffix}", _chunks())
    path = tmp_path / f"out{suffix}"
    crashing = Recorder(_chunks(), fail_after=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _write(path, crashing)
    assert not path.exists()
    manifest = storage.read_manifest(storage.workspace_of(path))
    assert manifest["complete"] == [[0, 2]] and manifest["n_chunks"] == 4

    resumed = Recorder(_chunks())
    _write(path, resumed)
    assert resumed.calls == [6, 9]  # chunks 2 and 3 only
    xr.testing.assert_identical(open_dataset(path).load(), open_dataset(reference).load())
    if suffix == ".zarr":
        assert _tree_bytes(path) == _tree_bytes(reference)
    assert not storage.workspace_of(path).exists()


_KILLED_SCRIPT = """
import importlib, json, sys, time, types
import numpy as np, xarray as xr
# the storage modules without the package (no torch import): a fast start for the process
# that gets killed
package = types.ModuleType("datasets_alone")
package.__path__ = [{datasets!r}]
sys.modules["datasets_alone"] = package
storage = importlib.import_module("datasets_alone.storage")
{generator}
def slow(first, n):
    time.sleep(0.3)
    return standin_generate(n, seed=0, first_sample=first)
storage.write_dataset({path!r}, slow, {n}, 1, config={{"test": "standin"}}, progress=False)
"""


def _plain_chunk(first, n):
    return standin_generate(n, seed=0, first_sample=first)


def test_resume_after_sigkill_is_identical_to_an_uninterrupted_run(tmp_path):
    path = tmp_path / "killed.zarr"
    script = tmp_path / "run.py"
    datasets = str(Path(storage.__file__).parent)
    script.write_text(_KILLED_SCRIPT.format(datasets=datasets, path=str(path), n=N,
                                            generator=inspect.getsource(standin_generate)))
    proc = subprocess.Popen([sys.executable, str(script)])
    manifest_file = storage.workspace_of(path) / storage.MANIFEST_NAME
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            try:
                complete = json.loads(manifest_file.read_text())["complete"]
            except (OSError, ValueError):
                complete = []
            if complete and complete[0][1] >= 2:
                break
            assert proc.poll() is None, "the writer finished before it could be killed"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not path.exists()
    done = storage.read_manifest(storage.workspace_of(path))["complete"]
    n_done = sum(b - a for a, b in done)
    assert 2 <= n_done < N

    resumed = Recorder(_plain_chunk)
    _write(path, resumed, chunk_size=1)
    assert len(resumed.calls) == N - n_done
    reference = _write(tmp_path / "ref.zarr", _plain_chunk, chunk_size=1)
    assert _tree_bytes(path) == _tree_bytes(reference)


def test_stopped_after_moving_the_dataset_out(tmp_path, monkeypatch):
    path = tmp_path / "out.zarr"

    def killed(self):
        raise RuntimeError("killed before the workspace was removed")

    with monkeypatch.context() as patch:
        patch.setattr(storage._Workspace, "_discard", killed)
        with pytest.raises(RuntimeError, match="killed"):
            _write(path, _chunks(seed=0))
    xr.testing.assert_identical(open_dataset(path).load(), standin_generate(N, seed=0))
    assert storage.workspace_of(path).exists()
    with pytest.raises(FileExistsError):
        _write(path, _chunks(seed=0))
    _write(path, _chunks(seed=0), overwrite=True)  # the leftover workspace is not resumed
    xr.testing.assert_identical(open_dataset(path).load(), standin_generate(N, seed=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


def test_resume_refuses_other_arguments_unless_overwrite(tmp_path):
    path = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError):
        _write(path, Recorder(_chunks(), fail_after=1), config={"seed": 1})
    manifest_file = storage.workspace_of(path) / storage.MANIFEST_NAME
    with pytest.raises(ValueError, match="other arguments") as err:
        _write(path, _chunks(), config={"seed": 2})
    assert str(manifest_file) in str(err.value) and "config.seed: stored 1" in str(err.value)
    with pytest.raises(ValueError, match="chunk_size: stored 3, requested 4"):
        _write(path, _chunks(), config={"seed": 1}, chunk_size=4)
    # the partial work is untouched by the refusals
    assert storage.read_manifest(storage.workspace_of(path))["complete"] == [[0, 1]]
    _write(path, _chunks(seed=2), config={"seed": 2}, overwrite=True)
    xr.testing.assert_identical(open_dataset(path).load(), standin_generate(N, seed=2))


def test_existing_output_is_refused_and_kept_until_replacement_is_complete(tmp_path):
    path = _write(tmp_path / "out.zarr", _chunks(seed=0))
    before = _tree_bytes(path)
    with pytest.raises(FileExistsError, match="out.zarr already exists"):
        _write(path, _chunks(seed=1), config={"seed": 1})
    with pytest.raises(RuntimeError):
        _write(path, Recorder(_chunks(seed=1), fail_after=2), config={"seed": 1}, overwrite=True)
    assert _tree_bytes(path) == before  # a failed overwrite loses nothing
    _write(path, _chunks(seed=1), config={"seed": 1}, overwrite=True)
    xr.testing.assert_identical(open_dataset(path).load(), standin_generate(N, seed=1))
    # a netCDF file is replaced the same way
    nc = _write(tmp_path / "out.nc", _chunks(seed=0))
    with pytest.raises(FileExistsError):
        _write(nc, _chunks(seed=0))
    _write(nc, _chunks(seed=1), config={"seed": 1}, overwrite=True)
    xr.testing.assert_identical(open_dataset(nc).load(), standin_generate(N, seed=1))


def test_foreign_or_corrupt_workspace_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "out.zarr"
    workspace = storage.workspace_of(path)
    workspace.mkdir()
    (workspace / "notes.txt").write_text("someone else's")
    manifest_file = workspace / storage.MANIFEST_NAME
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=f"{manifest_file}: missing"):
            _write(path, _chunks(), overwrite=overwrite)
    manifest_file.write_text("{not json")
    with pytest.raises(ValueError, match=f"{manifest_file}: corrupt manifest"):
        _write(path, _chunks())
    manifest_file.write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(ValueError, match=f"{manifest_file}: not a grepsnet-sciml manifest"):
        _write(path, _chunks())
    assert (workspace / "notes.txt").read_text() == "someone else's"


def test_corrupt_partial_store_is_reported(tmp_path):
    path = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError):
        _write(path, Recorder(_chunks(), fail_after=1))
    store = storage.workspace_of(path) / "store.zarr"
    (store / "zarr.json").write_text("garbage")
    with pytest.raises(ValueError, match=f"{store}: the partial store cannot be read"):
        _write(path, _chunks())


def test_a_second_writer_is_locked_out(tmp_path):
    path = tmp_path / "out.zarr"
    inner = _chunks()

    def reentrant(first, n):
        if first == 3:
            _write(path, _chunks())
        return inner(first, n)

    with pytest.raises(ValueError, match="another process is writing"):
        _write(path, reentrant)
    _write(path, _chunks())  # the lock is released with the failed run
    xr.testing.assert_identical(open_dataset(path).load(), standin_generate(N, seed=0))


def test_validate_dataset_is_the_contract():
    from grepsnet_sciml.datasets.contract import DatasetSpec

    ds = standin_generate(2, seed=0)
    spec = storage.validate_dataset(ds, source="mine.zarr")
    assert spec == DatasetSpec.from_dataset(ds) and spec.kind == ds.attrs["kind"]
    with pytest.raises(ValueError, match=r"^mine.zarr: attrs\['kind'\] = 'points'; expected "
                                         r"one of \('field', 'particles'\)"):
        storage.validate_dataset(ds.assign_attrs(kind="points"), source="mine.zarr")
    # the errors name the dataset as xarray does when no source is given
    ds.encoding["source"] = "/data/x.zarr"
    with pytest.raises(ValueError, match=r"^/data/x.zarr: attrs\['group'\] = 'E\(7\)'"):
        storage.validate_dataset(ds.assign_attrs(group="E(7)"))


def test_open_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.zarr"):
        open_dataset(tmp_path / "nothing.zarr")
    foreign = tmp_path / "foreign.zarr"
    xr.Dataset({"u": ("sample", np.zeros(3))}).to_zarr(foreign, consolidated=False)
    with pytest.raises(ValueError, match=r"foreign.zarr: not a grepsnet-sciml dataset.*'kind'"):
        open_dataset(foreign)
    bad = standin_generate(2, seed=0)
    bad.attrs["representations"] = json.dumps({"pressure": "T0"})
    bad.to_netcdf(tmp_path / "bad.nc", engine="h5netcdf")
    with pytest.raises(ValueError, match=r"names \[.pressure.\], no variable of the dataset"):
        open_dataset(tmp_path / "bad.nc")
    bad.attrs["representations"] = json.dumps({"vorticity": "T7"})
    bad.to_netcdf(tmp_path / "bad2.nc", engine="h5netcdf")
    with pytest.raises(ValueError, match=r"\['vorticity'\] = 'T7'"):
        open_dataset(tmp_path / "bad2.nc")
    bad.attrs.update(representations=json.dumps({"vorticity": "T0p"}), group="E(7)")
    bad.to_netcdf(tmp_path / "bad3.nc", engine="h5netcdf")
    with pytest.raises(ValueError, match=r"attrs\['group'\] = 'E\(7\)'"):
        open_dataset(tmp_path / "bad3.nc")
    (tmp_path / "text.nc").write_text("not a netCDF file")
    with pytest.raises(ValueError, match="text.nc: not a readable zarr store or netCDF-4 file"):
        open_dataset(tmp_path / "text.nc")
    corrupt = _write(tmp_path / "corrupt.zarr", _chunks())
    (corrupt / "zarr.json").write_text("garbage")
    with pytest.raises(ValueError, match="corrupt.zarr: not a readable zarr store"):
        open_dataset(corrupt)
    unfinished = tmp_path / "unfinished.zarr"
    with pytest.raises(RuntimeError):
        _write(unfinished, Recorder(_chunks(), fail_after=1))
    with pytest.raises(ValueError, match="generation has not finished"):
        open_dataset(unfinished)


def test_bad_arguments(tmp_path):
    path = tmp_path / "x.zarr"
    with pytest.raises(ValueError, match="n_samples: expected a positive integer, got 0"):
        _write(path, _chunks(), n=0)
    with pytest.raises(ValueError, match="chunk_size: expected a positive integer, got -1"):
        _write(path, _chunks(), chunk_size=-1)
    with pytest.raises(ValueError, match="workers: expected a positive integer, got 0"):
        _write(path, _chunks(), workers=0)
    with pytest.raises(ValueError, match="give at most one of them"):
        _write(path, _chunks(), workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="config: must be JSON-serialisable"):
        _write(path, _chunks(), config={"array": np.zeros(2)})
    with pytest.raises(ValueError, match="make_chunk: expected a callable"):
        _write(path, "not callable")
    with pytest.raises(ValueError, match=r"make_chunk\(0, 3\): expected a 'sample' dimension"):
        _write(path, lambda first, n: standin_generate(n + 1, seed=0, first_sample=first))
    # a run failing before its first chunk leaves nothing behind, so other arguments may follow
    assert not path.exists() and not storage.workspace_of(path).exists()
    _write(path, _chunks(), config={"other": "arguments"})
    with pytest.raises(ValueError, match=r"make_chunk\(3, 3\): its variables"):
        _write(tmp_path / "y.zarr",
               lambda first, n: standin_generate(n, seed=0, first_sample=first,
                                                 resolution=4 + (first > 0)))
    with pytest.raises(ValueError, match="seed: expected a non-negative integer, got -1"):
        generate_to_store(standin_generate, path, 3, seed=-1)
    with pytest.raises(ValueError, match="resolution: must be JSON-serialisable"):
        generate_to_store(standin_generate, path, 3, kwargs={"resolution": np.zeros(2)})


def test_split_seeds_are_distinct_and_documented():
    for seed in (0, 1, 43, 2**40):
        seeds = [split_seed(seed, s) for s in SPLITS]
        assert len(set(seeds)) == 3 and all(0 <= s < 2**32 for s in seeds)
        expected = np.random.SeedSequence([seed, 1]).generate_state(1, np.uint32)[0]
        assert seeds[1] == expected
    with pytest.raises(ValueError, match="split: expected one of"):
        split_seed(0, "training")


def test_splits_directory_with_derived_seeds_and_resume(tmp_path):
    path = tmp_path / "data"
    sizes = {"train": 5, "valid": 3, "test": 2}
    original = splits_mod.write_dataset
    calls = []

    def crash_on_test(store, *args, **kwargs):  # let train and valid finish, then crash
        calls.append(Path(store).name)
        if Path(store).name == "test.zarr" and len(calls) == 3:
            raise RuntimeError("simulated crash")
        return original(store, *args, **kwargs)

    splits_mod.write_dataset = crash_on_test
    try:
        with pytest.raises(RuntimeError):
            generate_splits(standin_generate, path, sizes, seed=7, chunk_size=2, progress=False)
        assert not path.exists()
        stores = generate_splits(standin_generate, path, sizes, seed=7, chunk_size=2,
                                 progress=False)
    finally:
        splits_mod.write_dataset = original
    assert calls == ["train.zarr", "valid.zarr", "test.zarr", "test.zarr"]
    assert set(stores) == set(SPLITS)
    opened = open_splits(path)
    for s, ds in opened.items():
        expected = standin_generate(sizes[s], seed=split_seed(7, s))
        expected.attrs.update(split=s, split_seed_from=7)
        xr.testing.assert_identical(ds.load(), expected)
    with pytest.raises(FileExistsError):
        generate_splits(standin_generate, path, sizes, seed=7, progress=False)
    with pytest.raises(ValueError, match=r"samples: unknown splits \['training'\]"):
        generate_splits(standin_generate, tmp_path / "e", {"training": 3}, progress=False)
    with pytest.raises(ValueError, match=r"samples\['valid'\]: expected a positive integer"):
        generate_splits(standin_generate, tmp_path / "e", {"train": 3, "valid": -1},
                        progress=False)


def standin_split_generate(n_samples, *, seed, first_sample=0, split="train"):
    """A stand-in that places splits itself (as charged_particles.generate does)."""
    ds = standin_generate(n_samples, seed=seed, first_sample=first_sample)
    stream = 1000 * SPLITS.index(split)
    return ds.assign(vorticity=ds.vorticity + stream).assign_attrs(split_given=split)


def test_splits_placed_by_the_generator_keep_the_global_seed(tmp_path):
    stores = generate_splits(standin_split_generate, tmp_path / "s", {"train": 4, "valid": 3},
                             seed=3, split_argument=True, format="netcdf", chunk_size=2,
                             workers=2, processes=False, progress=False)
    assert set(stores) == {"train", "valid"} and stores["valid"].suffix == ".nc"
    for s in ("train", "valid"):
        expected = standin_split_generate(len(open_dataset(stores[s]).sample), seed=3, split=s)
        expected.attrs.update(split=s, split_seed_from=3)
        xr.testing.assert_identical(open_dataset(stores[s]).load(), expected)


def test_workers_and_an_existing_scheduler_give_identical_stores(tmp_path):
    from distributed import LocalCluster

    serial = generate_to_store(standin_generate, tmp_path / "serial.zarr", N, seed=4,
                               chunk_size=2, progress=False)
    # chunk 0 (which lays out the store) arrives last: the others wait for it
    late = LateFirstChunk(_chunks(seed=4))
    parallel = _write(tmp_path / "workers.zarr", late, chunk_size=2, config=late.chunks.config(),
                      workers=2, processes=False)
    assert _tree_bytes(parallel) == _tree_bytes(serial)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp://",
                      host="127.0.0.1", dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        remote = generate_to_store(standin_generate, tmp_path / "sched.nc", N, seed=4,
                                   chunk_size=2, scheduler=cluster.scheduler_address,
                                   progress=False)
    xr.testing.assert_identical(open_dataset(remote).load(), open_dataset(serial).load())


@pytest.mark.slow
def test_worker_processes_give_identical_stores(tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        serial = generate_to_store(standin_generate, tmp_path / "serial.zarr", N, seed=4,
                                   chunk_size=2, progress=False)
        parallel = generate_to_store(standin_generate, tmp_path / "procs.zarr", N, seed=4,
                                     chunk_size=2, workers=2, processes=True, progress=False)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert _tree_bytes(parallel) == _tree_bytes(serial)


def test_peak_memory_does_not_grow_with_n_samples(tmp_path):
    import tracemalloc

    def peak(n):
        tracemalloc.start()
        generate_to_store(standin_generate, tmp_path / f"m{n}.zarr", n, seed=0, chunk_size=4,
                          kwargs={"resolution": 32}, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small, large = peak(4), peak(32)  # 8 x more data: 0.1 MB -> 0.8 MB of samples
    assert large < small + 0.3e6, (small, large)
    assert open_dataset(tmp_path / "m32.zarr").sizes["sample"] == 32
