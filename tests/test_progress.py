"""Generation progress in samples: a chunk computed together moves the store's bar as it goes."""

import time

import pytest

from grepsnet_sciml.datasets import charged_particles, navier_stokes
from grepsnet_sciml.datasets._progress import report, reporting
from grepsnet_sciml.datasets.storage import write_dataset


def test_navier_stokes_reports_a_samples_worth_of_work_per_sample():
    seen = []
    with reporting(seen.append):
        navier_stokes.generate(3, resolution=16, t_final=1.0, record_every=0.5, batch_size=2,
                               progress=False)
    assert len(seen) > 3  # once per time step, not once per chunk
    assert sum(seen) == pytest.approx(3.0, rel=1e-9)


@pytest.mark.parametrize("threads", [1, 2])
def test_particles_report_from_worker_threads(threads):
    seen = []
    with reporting(seen.append):
        charged_particles.generate(3, preset="clean", n_steps=200, record_every=100,
                                   batch_size=1, threads=threads, progress=False)
    assert len(seen) > 3
    assert sum(seen) == pytest.approx(3.0, rel=1e-9)


def test_without_a_sink_report_does_nothing():
    report(1.0)  # no error, nothing to send to


def test_store_bar_shows_fractions_of_the_chunk_being_computed(tmp_path, capsys):
    def make_chunk(first, n):
        for _ in range(2):
            time.sleep(0.15)  # beyond tqdm's refresh interval
            report(n / 4)
        return navier_stokes.generate(n, resolution=16, t_final=0.5, record_every=0.5,
                                      first_sample=first, progress=False)

    write_dataset(tmp_path / "s.zarr", make_chunk, 4, 4, config={"test": 1}, progress=True)
    err = capsys.readouterr().err
    assert "1.0/4 samples" in err or "2.0/4 samples" in err  # inside chunk 0 of 4 samples
    assert "4.0/4 samples" in err
