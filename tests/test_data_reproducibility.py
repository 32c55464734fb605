"""Bits that cannot depend on the machine: FFT layouts, thread count, resume settings."""

import json
import os

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


def test_a_worker_under_other_settings_is_refused(tmp_path, monkeypatch):
    def elsewhere(make_chunk, first, n):
        return {**_environment.runtime_environment(), "numpy": "0.1"}, make_chunk(first, n)

    monkeypatch.setattr(storage, "_computed_with", elsewhere)
    path = tmp_path / "out.zarr"
    with pytest.raises(ValueError, match=r"computed by a dask worker under other settings.*"
                                         r"numpy: this run '.*', worker '0\.1'"):
        generate_to_store(_standin, path, 4, chunk_size=2, workers=1, processes=False,
                          progress=False)
    assert not path.exists()


def test_local_workers_start_without_dasks_malloc_trim_threshold(monkeypatch):
    from distributed import Client

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with storage.local_cluster(1) as cluster, Client(cluster) as client:
        assert client.submit(os.environ.get, "MALLOC_TRIM_THRESHOLD_").result() is None
        assert client.submit(os.environ.get, "OMP_NUM_THREADS").result() == "1"
