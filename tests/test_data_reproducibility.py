"""Bits that cannot depend on the machine: FFT layouts, thread count, resume settings."""

import json
import os
import threading
import time

import numpy as np
import pytest
import torch
import xarray as xr

from grepsnet_sciml.datasets import _environment, storage
from grepsnet_sciml.datasets import navier_stokes as ns
from grepsnet_sciml.datasets.splits import (
    GeneratorChunks,
    generate_splits,
    generate_to_store,
    split_seed,
)
from grepsnet_sciml.datasets.storage import open_dataset, write_dataset

_RECORDED = ("fft2", "ifft2", "rfft2", "irfft2", "fftn", "ifftn", "rfftn", "irfftn", "fft",
             "ifft", "rfft", "irfft")


def _small(n_samples, **kwargs):
    options = dict(resolution=16, t_final=0.5, record_every=0.25, progress=False, seed=3)
    options.update(kwargs)
    return ns.generate(n_samples, **options)


@pytest.fixture
def layouts(monkeypatch):
    """Record every torch.fft call (and torch.exp) as (function, shape, strides, dtype,
    offset from 64-byte alignment, keyword arguments, torch threads)."""
    calls = set()

    def recording(name, function):
        def wrapper(x, *args, **kwargs):
            calls.add((name, tuple(x.shape), x.stride(), str(x.dtype), x.data_ptr() % 64,
                       args, tuple(sorted(kwargs.items())), torch.get_num_threads()))
            return function(x, *args, **kwargs)
        return wrapper

    for name in _RECORDED:
        monkeypatch.setattr(torch.fft, name, recording(name, getattr(torch.fft, name)))
    monkeypatch.setattr(torch, "exp", recording("exp", torch.exp))
    return calls


@pytest.mark.parametrize("options", [
    {},  # fast scheme, CFL-adaptive (per-sample steps, samples leave the batch one by one)
    {"cfl": None, "dtype": torch.float32, "velocity": True},
    {"scheme": "fno", "t_final": 0.0004, "record_every": 0.0002},
], ids=["adaptive", "fixed-float32-velocity", "fno"])
def test_every_fft_has_one_layout_whatever_the_batching(layouts, options):
    """The layouts of the transforms are the same for any batch, chunk or sample count, so
    no FFT backend (MKL on any CPU) can round one sample differently because of its
    neighbours; and the data agree bit for bit."""
    runs = {
        "4 samples, one batch": lambda: _small(4, **options),
        "4 samples, batches of 1": lambda: _small(4, batch_size=1, **options),
        "4 samples, batches of 3": lambda: _small(4, batch_size=3, **options),
        "chunks 1 + 3": lambda: xr.concat(
            [_small(1, **options), _small(3, first_sample=1, **options)], dim="sample"),
        "3 samples": lambda: _small(3, **options),
    }
    seen, data = {}, {}
    for label, run in runs.items():
        layouts.clear()
        data[label] = run().vorticity.values
        seen[label] = set(layouts)
    reference = seen["4 samples, one batch"]
    assert reference and all(len(shape) == 2 for _, shape, *_ in reference)
    assert {call[-1] for call in reference} == {1}  # one torch thread inside the generator
    for label, calls in seen.items():
        assert calls == reference, f"{label}: {calls ^ reference}"
    whole = data["4 samples, one batch"]
    for label in ("4 samples, batches of 1", "4 samples, batches of 3", "chunks 1 + 3"):
        assert data[label].tobytes() == whole.tobytes(), label
    assert data["3 samples"].tobytes() == whole[:3].tobytes()


def test_per_field_transform_equals_the_batched_one_to_round_off():
    from grepsnet_sciml.datasets._ns_solver import per_field

    x = torch.randn(3, 2, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = per_field(torch.fft.rfft2, x)
    assert out.shape == (3, 2, 16, 9)
    assert float((out - torch.fft.rfft2(x)).abs().max()) < 1e-12
    back = per_field(torch.fft.irfft2, out, s=(16, 16))
    assert float((back - x).abs().max()) < 1e-13


def test_torch_thread_count_does_not_change_the_bytes_and_is_restored():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = _small(2, sim_resolution=32).vorticity.values
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        one = _small(2, sim_resolution=32).vorticity.values
    finally:
        torch.set_num_threads(before)
    assert two.tobytes() == one.tobytes()


def test_runtime_environment_names_what_the_bytes_depend_on():
    env = _environment.runtime_environment()
    assert env["torch"] == torch.__version__ and env["numpy"] == np.__version__
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["torch_threads"] == _environment.GENERATION_THREADS == 1
    assert env["numpy_cpu_dispatch"]


def _standin(n_samples, *, seed, first_sample=0):
    k = np.arange(first_sample, first_sample + n_samples, dtype=float)
    return xr.Dataset(
        {"u": (("sample", "x"), (seed + k[:, None]) * np.ones(3))},
        coords={"sample": np.arange(first_sample, first_sample + n_samples)},
        attrs={"kind": "field", "group": "C4()", "representations": json.dumps({"u": "T0"})})


_CRASH_SEEDS = set()


def _crashing(n_samples, *, seed, first_sample=0):
    """``_standin``, failing for the seeds in ``_CRASH_SEEDS``."""
    if seed in _CRASH_SEEDS:
        raise RuntimeError("simulated crash")
    return _standin(n_samples, seed=seed, first_sample=first_sample)


class _FailAfter:
    def __init__(self, chunks, calls):
        self.chunks, self.calls = chunks, calls

    def __call__(self, first, n):
        if self.calls == 0:
            raise RuntimeError("simulated crash")
        self.calls -= 1
        return self.chunks(first, n)


def test_resume_under_other_settings_is_refused_naming_the_setting(tmp_path, monkeypatch):
    path = tmp_path / "out.zarr"
    chunks = GeneratorChunks(_standin, 6, 0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_dataset(path, _FailAfter(chunks, 2), 6, 2, config=chunks.config(), progress=False)
    workspace = storage.workspace_of(path)
    manifest = storage.read_manifest(workspace)
    assert manifest["complete"] == [[0, 2]]
    stored = manifest["environment"]["cpu_capability"]
    other = {**_environment.runtime_environment(), "cpu_capability": "AVX2-other",
             "torch": "0.0.0"}
    monkeypatch.setattr(storage, "runtime_environment", lambda: other)
    with pytest.raises(ValueError) as info:
        write_dataset(path, chunks, 6, 2, config=chunks.config(), progress=False)
    message = str(info.value)
    assert str(workspace / storage.MANIFEST_NAME) in message
    assert f"cpu_capability: stored {stored!r}, now 'AVX2-other'" in message
    assert f"torch: stored {torch.__version__!r}, now '0.0.0'" in message
    assert "numpy" not in message  # only what differs is named
    assert storage.read_manifest(workspace)["complete"] == [[0, 2]]  # nothing lost
    # with overwrite the old chunks are discarded and the run completes under the new settings
    write_dataset(path, chunks, 6, 2, config=chunks.config(), overwrite=True, progress=False)
    assert open_dataset(path).u.values[:, 0].tolist() == [0, 1, 2, 3, 4, 5]


def test_split_directory_resume_under_other_settings_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "splits"
    _CRASH_SEEDS.add(split_seed(0, "valid"))
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            generate_splits(_crashing, path, {"train": 2, "valid": 2}, chunk_size=2,
                            progress=False)
    finally:
        _CRASH_SEEDS.clear()
    other = {**_environment.runtime_environment(), "torch_threads": 4}
    monkeypatch.setattr("grepsnet_sciml.datasets.splits.runtime_environment", lambda: other)
    with pytest.raises(ValueError, match="torch_threads: stored 1, now 4"):
        generate_splits(_crashing, path, {"train": 2, "valid": 2}, chunk_size=2,
                        progress=False)
    assert (storage.workspace_of(path) / "train.zarr").exists()  # the finished split is kept


def _slow_in_the_driver(n_samples, *, seed, first_sample=0):
    """``_standin``, taking 0.5 s in the main thread (the driver computes chunks while the
    cluster starts), so that the workers get chunks too."""
    if threading.current_thread() is threading.main_thread():
        time.sleep(0.5)
    return _standin(n_samples, seed=seed, first_sample=first_sample)


def test_a_worker_under_other_settings_is_refused(tmp_path, monkeypatch):
    def elsewhere(make_chunk, first, n):
        return {**_environment.runtime_environment(), "numpy": "0.1"}, make_chunk(first, n)

    monkeypatch.setattr(storage, "_computed_with", elsewhere)
    path = tmp_path / "out.zarr"
    with pytest.raises(ValueError, match=r"computed by a dask worker under other settings.*"
                                         r"numpy: this run '.*', worker '0\.1'"):
        generate_to_store(_slow_in_the_driver, path, 40, chunk_size=2, workers=1,
                          processes=False, progress=False)
    assert not path.exists()


def test_the_driver_computes_chunks_while_the_cluster_starts(tmp_path, monkeypatch):
    """A job done before the workers are up is computed by the driver alone (no time lost
    to the start), gives the serial bytes, and the cluster is still closed."""
    started, local_cluster = [], storage.local_cluster

    def slow_cluster(workers, processes=True):
        time.sleep(1.0)
        started.append(local_cluster(workers, processes))
        return started[-1]

    monkeypatch.setattr(storage, "local_cluster", slow_cluster)
    threads = []

    def recording(n_samples, *, seed, first_sample=0):
        threads.append(threading.current_thread().name)
        return _standin(n_samples, seed=seed, first_sample=first_sample)

    serial = generate_to_store(_standin, tmp_path / "serial.zarr", 6, chunk_size=2,
                               progress=False)
    both = generate_to_store(recording, tmp_path / "both.zarr", 6, chunk_size=2, workers=2,
                             processes=False, progress=False)
    assert threads == ["MainThread"] * 3
    assert len(started) == 1 and started[0].status.name == "closed"
    assert open_dataset(both).u.values.tobytes() == open_dataset(serial).u.values.tobytes()
    assert open_dataset(both).u.values[:, 0].tolist() == [0, 1, 2, 3, 4, 5]


def test_local_workers_start_without_dasks_malloc_trim_threshold(monkeypatch):
    from distributed import Client

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with storage.local_cluster(1) as cluster, Client(cluster) as client:
        assert client.submit(os.environ.get, "MALLOC_TRIM_THRESHOLD_").result() is None
        assert client.submit(os.environ.get, "OMP_NUM_THREADS").result() == "1"


_REDUCTIONS = ("umr_sum", "umr_prod", "umr_maximum", "umr_minimum")
_PRODUCTS = ("matmul", "dot", "einsum", "tensordot", "inner", "vdot", "sum")


@pytest.fixture
def reductions(monkeypatch):
    """Record every numpy product (``np.matmul``, ``np.dot``, ..) and every array-method
    reduction (``.sum()``, ``.prod()``, ``.max()``, ``.min()``, ``.mean()``) as
    (function, shape, dtype, axis)."""
    import numpy._core._methods as methods

    calls = []

    def recording(name, function, axis_position):
        def wrapper(*args, **kwargs):
            axis = kwargs.get("axis", args[axis_position] if len(args) > axis_position else None)
            shapes = tuple(np.shape(a) for a in args if isinstance(a, np.ndarray))
            dtypes = tuple(str(a.dtype) for a in args if isinstance(a, np.ndarray))
            calls.append((name, shapes, dtypes, axis))
            return function(*args, **kwargs)
        return wrapper

    for name in _REDUCTIONS:
        monkeypatch.setattr(methods, name, recording(name, getattr(methods, name), 1))
    for name in _PRODUCTS:
        monkeypatch.setattr(np, name, recording(name, getattr(np, name), 99))
    return calls


def _matmul_operators(module) -> list[int]:
    """Lines of ``module`` that use the ``@`` operator (invisible to monkeypatching)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(module))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, ast.MatMult)]


@pytest.mark.parametrize("preset", ["clean", "egnn"])
def test_particle_arithmetic_per_sample_does_not_depend_on_the_chunking(reductions, preset):
    """No floating-point product or reduction of the particle integrators has a shape that
    depends on the chunk size or the sample count (BLAS and numpy may round those
    differently per shape and CPU): the recorded calls are the same, shape for shape, for
    chunks of 1 and 3 and 3 or 4 samples; and the data agree bit for bit."""
    from grepsnet_sciml.datasets import _particles_clean, _particles_common, _particles_egnn
    from grepsnet_sciml.datasets import charged_particles as cp

    for module in (_particles_clean, _particles_common, _particles_egnn):
        assert _matmul_operators(module) == [], module.__name__

    def run(n_samples, batch_size):
        return cp.generate(n_samples, preset=preset, seed=5, n_steps=300, record_every=100,
                           batch_size=batch_size, progress=False)

    seen, data = {}, {}
    for n_samples in (3, 4):
        for batch_size in (1, 3):
            reductions.clear()
            ds = run(n_samples, batch_size)
            data[n_samples, batch_size] = (ds.position.values, ds.velocity.values)
            seen[n_samples, batch_size] = {call for call in reductions
                                           if any(d.startswith("float") for d in call[2])}
    reference = seen[4, 3]
    assert not any(name in ("matmul", "dot", "einsum", "tensordot", "inner", "vdot")
                   for name, *_ in reference)
    if preset == "clean":  # only the per-sample draw |u|^2 of (3, n) directions
        assert reference == {("umr_sum", ((3, 5),), ("float64",), 0)}
    for key, calls in seen.items():
        assert calls == reference, f"{key}: {calls ^ reference}"
    whole_position, whole_velocity = data[4, 3]
    assert np.isfinite(whole_position).all() and float(np.abs(whole_velocity).max()) > 0.1
    for (n_samples, batch_size), (position, velocity) in data.items():
        label = f"{n_samples} samples, batches of {batch_size}"
        assert position.tobytes() == whole_position[:n_samples].tobytes(), label
        assert velocity.tobytes() == whole_velocity[:n_samples].tobytes(), label


@pytest.mark.parametrize("preset", ["clean", "egnn"])
def test_particle_forces_of_one_trajectory_equal_those_in_any_batch(preset):
    """The force of each trajectory is bit-identical alone or in a batch of 1, 3 or 40
    (9 particles: the egnn force sums its full pair matrix in numpy for ``n > 7``)."""
    from grepsnet_sciml.datasets._particles_clean import CleanForce
    from grepsnet_sciml.datasets._particles_egnn import EgnnForce

    rng = np.random.default_rng(7)
    charges = rng.choice([-1.0, 1.0], size=(40, 9))
    y = np.ascontiguousarray(rng.standard_normal((9, 3, 40)) * 2.0)
    forces = {"clean": lambda q: CleanForce(q, 0.1), "egnn": lambda q: EgnnForce(q, 100.0)}
    make = forces[preset]
    whole = make(charges)(y)
    assert whole.shape == (9, 3, 40) and float(np.abs(whole).max()) > 1e-3
    for size in (1, 3):
        for start in range(0, 40, size):
            part = make(charges[start:start + size])(
                np.ascontiguousarray(y[..., start:start + size]))
            assert part.tobytes() == np.ascontiguousarray(whole[..., start:start + size]).tobytes()
