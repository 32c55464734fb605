"""``grepsnet generate`` end to end, with the real generators at tiny sizes."""

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from grepsnet_sciml.cli import main
from grepsnet_sciml.datasets import charged_particles, navier_stokes
from grepsnet_sciml.datasets.splits import open_splits, split_seed
from grepsnet_sciml.datasets.storage import open_dataset

REFERENCE = Path(__file__).resolve().parents[2] / "shared/reference/egnn_charged5_seed43.npz"
TINY_NS = ["--resolution", "8", "--sim-resolution", "8", "--t-final", "0.5",
           "--record-every", "0.25"]
TINY_NS_KWARGS = {"resolution": 8, "sim_resolution": 8, "t_final": 0.5, "record_every": 0.25,
                  "progress": False}


def test_navier_stokes_store_equals_the_library_call(tmp_path, capsys):
    out = tmp_path / "ns.zarr"
    code = main(["generate", "navier-stokes", "--preset", "ns", "--samples", "3", "--seed", "5",
                 "--chunk-size", "2", "--out", str(out), *TINY_NS])
    assert code == 0
    assert str(out) in capsys.readouterr().out
    ds = open_dataset(out)
    assert ds.vorticity.chunks[0] == (2, 1)
    expected = navier_stokes.generate(3, "ns", seed=5, **TINY_NS_KWARGS)
    xr.testing.assert_identical(ds.load(), expected)

    # an existing output is refused with a clean error, and replaced with --overwrite
    args = ["generate", "navier-stokes", "--samples", "2", "--out", str(out), *TINY_NS]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "grepsnet generate: error:" in err and "already exists" in err
    assert main([*args, "--overwrite", "--no-progress"]) == 0
    assert open_dataset(out).sizes["sample"] == 2


def test_navier_stokes_splits_in_netcdf_on_a_dask_scheduler(tmp_path):
    from distributed import LocalCluster

    out = tmp_path / "splits"
    # worker threads of this process keep start-up cheap; the transport is loopback TCP
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp://",
                      host="127.0.0.1", dashboard_address=None) as cluster:
        code = main(["generate", "navier-stokes", "--preset", "ns-sym", "--samples", "2",
                     "--valid", "1", "--test", "1", "--seed", "7", "--format", "netcdf",
                     "--scheduler", cluster.scheduler_address, "--out", str(out),
                     "--no-progress", *TINY_NS])
    assert code == 0
    stores = open_splits(out)
    assert list(stores) == ["train", "valid", "test"]
    assert sorted(p.name for p in out.iterdir()) == ["splits.json", "test.nc", "train.nc",
                                                     "valid.nc"]
    for split, ds in stores.items():
        assert ds.attrs["seed"] == split_seed(7, split) and ds.attrs["split"] == split
        expected = navier_stokes.generate(ds.sizes["sample"], "ns-sym",
                                          seed=split_seed(7, split), **TINY_NS_KWARGS)
        np.testing.assert_array_equal(ds.vorticity.values, expected.vorticity.values)
    assert not np.allclose(stores["valid"].vorticity[0], stores["test"].vorticity[0])


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference data not available")
def test_charged_particles_egnn_matches_the_canonical_files(tmp_path):
    out = tmp_path / "egnn.zarr"
    code = main(["generate", "charged-particles", "--preset", "egnn", "--samples", "3",
                 "--seed", "43", "--chunk-size", "2", "--out", str(out), "--no-progress"])
    assert code == 0
    ds = open_dataset(out)
    reference = np.load(REFERENCE)
    np.testing.assert_array_equal(ds.position.values,
                                  reference["loc_train"][:3].transpose(0, 1, 3, 2))
    np.testing.assert_array_equal(ds.velocity.values,
                                  reference["vel_train"][:3].transpose(0, 1, 3, 2))
    np.testing.assert_array_equal(ds.charge.values, reference["charges_train"][:3, :, 0])
    assert json.loads(ds.attrs["config"])["n_samples"] == 3


def test_charged_particles_splits_follow_the_generator(tmp_path):
    out = tmp_path / "particles"
    code = main(["generate", "charged-particles", "--preset", "egnn", "--samples", "3",
                 "--valid", "2", "--test", "2", "--seed", "43", "--steps", "300",
                 "--record-every", "100", "--out", str(out), "--no-progress"])
    assert code == 0
    stores = open_splits(out)
    whole = charged_particles.generate(7, seed=43, preset="egnn", n_steps=300,
                                       record_every=100, progress=False)
    start = 0
    for ds in stores.values():
        n = ds.sizes["sample"]
        np.testing.assert_array_equal(ds.position.values,
                                      whole.position.values[start:start + n])
        start += n


def test_bad_arguments_exit_with_status_2(tmp_path, capsys):
    base = ["generate", "navier-stokes", "--out", str(tmp_path / "x.zarr")]
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--samples", "0"])
    assert exit_info.value.code == 2
    assert "--samples: expected a positive integer, got '0'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--samples", "1", "--preset", "kolmogorov"])
    with pytest.raises(SystemExit):
        main([*base, "--samples", "1", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"])
    capsys.readouterr()
    # rejected by the generator: a clean error, and nothing left behind
    assert main([*base, "--samples", "1", "--resolution", "16", "--sim-resolution", "8"]) == 2
    assert "resolution" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    assert main([*base, "--samples", "1", "--format", "netcdf", *TINY_NS]) == 2
    assert "--format netcdf" in capsys.readouterr().err
    nc = ["generate", "navier-stokes", "--out", str(tmp_path / "x.nc"), "--samples", "1"]
    assert main([*nc, "--valid", "1", *TINY_NS]) == 2
    assert "a directory of split stores" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_navier_stokes_physics_options_reach_the_generator(tmp_path):
    out = tmp_path / "ns.zarr"
    assert main(["generate", "navier-stokes", "--preset", "ns-sym", "--samples", "2",
                 "--viscosity", "1e-3", "--forcing", "fno", "--forcing-amplitude", "0.3",
                 "--out", str(out), "--no-progress", *TINY_NS]) == 0
    ds = open_dataset(out)
    expected = navier_stokes.generate(2, "ns-sym", viscosity=1e-3, forcing="fno",
                                      forcing_amplitude=0.3, **TINY_NS_KWARGS)
    xr.testing.assert_identical(ds.load(), expected)
    config = json.loads(ds.attrs["config"])
    assert (config["viscosity"], config["forcing"], config["forcing_amplitude"]) == (
        1e-3, "fno", 0.3)
    assert ds.attrs["group"] == "D2('diagonal')"
    default = navier_stokes.generate(2, "ns-sym", viscosity=1e-3, forcing="fno",
                                     **TINY_NS_KWARGS)
    assert not np.allclose(default.vorticity.values, ds.vorticity.values)


def test_charged_particles_dt_and_softening_options(tmp_path):
    out = tmp_path / "p.zarr"
    assert main(["generate", "charged-particles", "--preset", "clean", "--samples", "2",
                 "--particles", "4", "--steps", "20", "--record-every", "10", "--dt", "2e-3",
                 "--softening", "0.2", "--out", str(out), "--no-progress"]) == 0
    expected = charged_particles.generate(2, n_particles=4, preset="clean", n_steps=20,
                                          record_every=10, dt=2e-3, softening=0.2,
                                          progress=False)
    xr.testing.assert_identical(open_dataset(out).load(), expected)


def test_bad_physics_values_name_the_option(tmp_path, capsys):
    base = ["generate", "navier-stokes", "--samples", "1", "--out", str(tmp_path / "x.zarr")]
    with pytest.raises(SystemExit):
        main([*base, "--viscosity", "-1"])
    assert "--viscosity: expected a positive number, got '-1'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--forcing", "kolmogorov"])
    assert "--forcing: invalid choice: 'kolmogorov'" in capsys.readouterr().err
    assert main([*base, "--resolution", "6", "--sim-resolution", "6"]) == 2
    assert "error: --resolution: 6 is not divisible by 4" in capsys.readouterr().err
    assert main([*base, "--forcing", "none", "--forcing-amplitude", "0.2", *TINY_NS]) == 2
    assert "error: --forcing-amplitude: 0.2 applies to a named forcing" in (
        capsys.readouterr().err)
    particles = ["generate", "charged-particles", "--samples", "1", "--out",
                 str(tmp_path / "p.zarr")]
    assert main([*particles, "--steps", "250", "--record-every", "100"]) == 2
    assert "error: --steps: expected a multiple of record_every" in capsys.readouterr().err
    assert main([*particles, "--softening", "0.1"]) == 2
    assert "error: --softening: the egnn preset is unsoftened" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def _helps(parser, path=("grepsnet",)):
    """``(command path, parser)`` for every parser of the command line."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _helps(sub, (*path, name))


def test_help_texts_are_plain_and_describe_each_option_once():
    import re

    from grepsnet_sciml.cli import build_parser

    parsers = dict(_helps(build_parser()))
    assert ("grepsnet", "import", "fno-mat") in parsers  # every subcommand is walked
    for path, parser in parsers.items():
        text = " ".join(parser.format_help().split())  # markup split across lines too
        for markup in ("``", ":data:", ":class:", ":func:", ":meth:", ":mod:", ":attr:"):
            assert markup not in text, f"{' '.join(path)} --help contains {markup!r}"
    train = parsers[("grepsnet", "train")]
    seen = {}
    for action in train._actions:
        if not action.help or not action.option_strings:
            continue
        described = re.sub(r" \(defaults?: .*\)$", "", action.help, flags=re.S)
        assert described not in seen, (
            f"{action.option_strings[0]} and {seen.get(described)} share the description "
            f"{described!r}")
        seen[described] = action.option_strings[0]
    assert seen["History frames the model reads per sample (fields only)."] == "--data.t_in"
    assert seen["Frames the model predicts per call (fields only)."] == "--data.t_out"
    ns = " ".join(parsers[("grepsnet", "generate", "navier-stokes")].format_help().split())
    for described in ("ns: FNO's NS data: forcing fno", "viscosity 1e-4", "symmetry D4",
                      "simulated 256, stored 64", "--forcing-amplitude"):
        assert described in ns
    particles = parsers[("grepsnet", "generate", "charged-particles")].format_help()
    assert "egnn: EGNN's nbody_small" in " ".join(particles.split())
