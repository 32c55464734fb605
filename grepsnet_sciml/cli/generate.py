"""``grepsnet generate``: simulate a dataset and stream it to disk.

``grepsnet generate navier-stokes|charged-particles --preset P --samples N --out PATH``
writes one store (zarr, or netCDF when PATH ends in ``.nc``); with ``--valid``/``--test`` it
writes the directory PATH with ``train``, ``valid`` and ``test`` stores. Runs are chunked,
atomic and resumable (rerun the same command after an interruption), and ``--workers`` /
``--scheduler`` compute chunks on dask.distributed. Everything is done by
:func:`grepsnet_sciml.datasets.splits.generate_to_store` and
:func:`~grepsnet_sciml.datasets.splits.generate_splits`.
"""

from __future__ import annotations

import argparse
import importlib

#: Generator module, presets, default chunk size and whether the module places splits
#: itself (``generate(..., split=)``) for each command.
GENERATORS = {
    "navier-stokes": {
        "module": "grepsnet_sciml.datasets.navier_stokes",
        "presets": ("ns", "ns-sym"),
        "default_preset": "ns-sym",
        "chunk_size": 16,
        "split_argument": False,
    },
    "charged-particles": {
        "module": "grepsnet_sciml.datasets.charged_particles",
        "presets": ("egnn", "clean"),
        "default_preset": "egnn",
        "chunk_size": 2000,
        "split_argument": True,
    },
}


def _count(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        kind = "a positive integer" if minimum > 0 else "a non-negative integer"
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}")
    return value


def _positive(text: str) -> int:
    return _count(text, 1)


def _non_negative(text: str) -> int:
    return _count(text, 0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


#: What each preset sets, in plain text, for ``--help`` (charged particles; Navier-Stokes
#: from ``navier_stokes.PRESET_DESCRIPTIONS``).
PARTICLE_PRESETS = {
    "egnn": "EGNN's nbody_small system bit for bit: 5 particles, unsoftened Coulomb force "
            "clipped at 0.1/dt, box +-5, dt 1e-3, 5000 steps, a frame every 100 steps (49 "
            "frames); symmetry only approximately E(3)",
    "clean": "the same physics without shortcuts: softened Coulomb (softening 0.1), no "
             "clipping or box, velocity Verlet, dt 1e-3, 5000 steps, frames every 100 steps "
             "from step 0 (51 frames); exactly E(3) x S_n equivariant",
}
#: Generator argument -> the option that sets it, to name the option in errors.
OPTIONS = {
    "resolution": "--resolution", "sim_resolution": "--sim-resolution",
    "viscosity": "--viscosity", "forcing": "--forcing", "forcing_amplitude": "--forcing-amplitude",
    "t_final": "--t-final", "record_every": "--record-every", "scheme": "--scheme",
    "n_particles": "--particles", "n_steps": "--steps", "dt": "--dt", "softening": "--softening",
}


def _preset_help(name: str) -> str:
    if name == "navier-stokes":
        from grepsnet_sciml.datasets.navier_stokes import PRESET_DESCRIPTIONS as described
    else:
        described = PARTICLE_PRESETS
    spec = GENERATORS[name]
    listed = "; ".join(f"{preset}: {described[preset]}" for preset in spec["presets"])
    return f"physics preset (default {spec['default_preset']}). {listed}"


def _named_option(err: ValueError) -> ValueError:
    """``err`` with a leading generator argument (``resolution: ...``) named as its option."""
    text = str(err)
    argument, sep, rest = text.partition(":")
    if sep and argument in OPTIONS:
        return ValueError(f"{OPTIONS[argument]}:{rest}")
    return err


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _generator_kwargs(args: argparse.Namespace) -> dict:
    """Arguments for the generator: the preset and the options the user gave."""
    kwargs = {"preset": args.preset, "progress": False}
    if args.command_name == "navier-stokes":
        for option in ("resolution", "sim_resolution", "viscosity", "forcing_amplitude",
                       "t_final", "record_every", "scheme"):
            if getattr(args, option) is not None:
                kwargs[option] = getattr(args, option)
        if args.forcing is not None:
            kwargs["forcing"] = None if args.forcing == "none" else args.forcing
        if args.velocity:
            kwargs["velocity"] = True
        if args.dtype is not None:
            import torch

            kwargs["dtype"] = getattr(torch, args.dtype)
        if args.device is not None:
            kwargs["device"] = args.device
    else:
        for option, name in (
            ("particles", "n_particles"),
            ("steps", "n_steps"),
            ("record_every", "record_every"),
            ("dt", "dt"),
            ("softening", "softening"),
        ):
            if getattr(args, option) is not None:
                kwargs[name] = getattr(args, option)
        if args.preset == "egnn" and (args.valid or args.test):
            # the one legacy stream holds train, then valid, then test
            kwargs.update(n_train=args.samples, n_valid=args.valid)
    return kwargs


def _run(args: argparse.Namespace) -> int:
    try:
        return _generate(args)
    except ValueError as err:
        raise _named_option(err) from err


def _generate(args: argparse.Namespace) -> int:
    from grepsnet_sciml.datasets.splits import generate_splits, generate_to_store
    from grepsnet_sciml.datasets.storage import open_dataset, storage_format

    spec = GENERATORS[args.command_name]
    module = importlib.import_module(spec["module"])
    kwargs = _generator_kwargs(args)
    if args.command_name == "navier-stokes":  # refuse a bad combination before any work
        fields = {k: v for k, v in kwargs.items() if k in OPTIONS}
        module.preset(args.preset, **fields)
    generate = module.generate
    common = {
        "seed": args.seed,
        "chunk_size": args.chunk_size or spec["chunk_size"],
        "overwrite": args.overwrite,
        "workers": args.workers,
        "scheduler": args.scheduler,
        "progress": not args.no_progress,
    }
    if args.valid or args.test:
        if storage_format(args.out) == "netcdf":
            raise ValueError(
                f"--out {args.out}: with --valid/--test the output is a directory of split "
                "stores; name it without .nc and pass --format netcdf for netCDF stores"
            )
        sizes = {"train": args.samples, "valid": args.valid, "test": args.test}
        stores = generate_splits(
            generate,
            args.out,
            sizes,
            split_argument=spec["split_argument"],
            format=args.format or "zarr",
            kwargs=kwargs,
            **common,
        )
    else:
        if args.format is not None and args.format != storage_format(args.out):
            raise ValueError(
                f"--format {args.format}: a single store's format follows its path "
                f"({args.out!r} gives {storage_format(args.out)}; netCDF paths end in .nc)"
            )
        stores = {
            "data": generate_to_store(generate, args.out, args.samples, kwargs=kwargs, **common)
        }
    for name, path in stores.items():
        ds = open_dataset(path)
        sizes = ", ".join(f"{d}={n}" for d, n in ds.sizes.items())
        print(f"{name}: {path} ({sizes}; group {ds.attrs['group']})")
        ds.close()
    return 0


def _add_command(subparsers, name: str) -> None:
    spec = GENERATORS[name]
    what = {
        "navier-stokes": "2D Navier-Stokes vorticity trajectories",
        "charged-particles": "3D charged-particle trajectories",
    }[name]
    split_rule = (
        "the generator's own split streams (egnn: one stream, train then valid then test)"
        if spec["split_argument"]
        else "distinct seeds derived from --seed"
    )
    p = subparsers.add_parser(
        name,
        help=f"simulate {what}",
        description=f"Simulate {what} and write them chunk by chunk to a zarr store "
        "(netCDF if --out ends in .nc), or with --valid/--test to the directory --out "
        f"holding train/valid/test stores drawn from {split_rule}. An interrupted run "
        "resumes when the same command is run again.",
    )
    p.add_argument(
        "--preset",
        choices=spec["presets"],
        default=spec["default_preset"],
        help=_preset_help(name),
    )
    p.add_argument(
        "--samples",
        type=_positive,
        required=True,
        help="number of samples (of the train split with --valid/--test)",
    )
    p.add_argument("--valid", type=_non_negative, default=0, help="validation samples")
    p.add_argument("--test", type=_non_negative, default=0, help="test samples")
    p.add_argument("--out", required=True, help="output store or split directory")
    p.add_argument("--seed", type=_non_negative, default=0, help="global seed (default 0)")
    if name == "navier-stokes":
        p.add_argument("--resolution", type=_positive, help="stored grid size (preset: 64)")
        p.add_argument(
            "--sim-resolution",
            type=_positive,
            help="simulated grid size, a multiple of --resolution (preset: 256)",
        )
        p.add_argument(
            "--viscosity", type=_positive_float, help="kinematic viscosity nu (preset: 1e-4)"
        )
        p.add_argument(
            "--forcing",
            choices=("fno", "symmetric", "none"),
            help="forcing: fno = A (sin 2 pi (x+y) + cos 2 pi (x+y)) (symmetry D2 diagonal), "
            "symmetric = A (cos 4 pi x + cos 4 pi y) (symmetry D4), none (D4 and "
            "translations) (preset ns: fno, ns-sym: symmetric)",
        )
        p.add_argument(
            "--forcing-amplitude",
            type=_positive_float,
            help="amplitude A of the named forcing (default 0.1); keeps the declared symmetry",
        )
        p.add_argument("--t-final", type=_positive_float, help="final time (preset: 30)")
        p.add_argument(
            "--record-every", type=_positive_float, help="time between frames (preset: 1)"
        )
        p.add_argument("--scheme", choices=("fast", "fno"), help="time integrator (default fast)")
        p.add_argument("--velocity", action="store_true", help="also store the velocity")
        p.add_argument(
            "--dtype",
            choices=("float64", "float32"),
            help="precision of the simulation (default float64)",
        )
        p.add_argument("--device", help="torch device of the solver (default cpu)")
    else:
        p.add_argument("--particles", type=_positive, help="particles per system (default 5)")
        p.add_argument("--steps", type=_positive, help="time steps (preset: 5000)")
        p.add_argument("--record-every", type=_positive, help="steps between frames (preset: 100)")
        p.add_argument("--dt", type=_positive_float, help="time step (preset: 1e-3)")
        p.add_argument(
            "--softening",
            type=_non_negative_float,
            help="softening length of the Coulomb force (clean only; preset: 0.1)",
        )
    p.add_argument(
        "--chunk-size",
        type=_positive,
        help=f"samples per chunk on disk and per task (default {spec['chunk_size']})",
    )
    p.add_argument(
        "--format",
        choices=("zarr", "netcdf"),
        help="format of split stores (a single store follows --out's suffix)",
    )
    parallel = p.add_mutually_exclusive_group()
    parallel.add_argument(
        "--workers",
        type=_positive,
        help="compute chunks on a local dask cluster of N worker processes",
    )
    parallel.add_argument(
        "--scheduler", help="compute chunks on the dask cluster at this scheduler address"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out if it is a store or split directory written by grepsnet (only "
        "once the new data is complete); anything else there is refused",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run, command_name=name)


def register(subparsers) -> None:
    """Add ``generate`` and its generators to the ``grepsnet`` parser."""
    parser = subparsers.add_parser(
        "generate",
        help="simulate training data (Navier-Stokes, charged particles)",
        description="Simulate a dataset and stream it to disk: chunked, atomic, resumable, "
        "optionally parallel on dask.distributed.",
    )
    sub = parser.add_subparsers(dest="generator", metavar="GENERATOR")
    for name in GENERATORS:
        _add_command(sub, name)
