"""``grepsnet bench``: run a benchmark and print its table.

Each benchmark is one sub-subcommand, added by a ``_add_<name>(subparsers)`` function
listed in :data:`BENCHMARKS`; it sets ``func`` to a small function that calls one library
function, prints a table and returns an exit status. ``grepsnet bench synthetic`` calls
:func:`grepsnet_sciml.synthetic.run_synthetic_benchmark`, ``grepsnet bench ns``
:func:`grepsnet_sciml.benchmarks.ns.run` (or ``time_models``) and ``grepsnet bench nbody``
:func:`grepsnet_sciml.benchmarks.nbody.run`. The scripts ``benchmarks/ns.py`` and
``benchmarks/nbody.py`` are these commands with their results next to the script.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def _seed_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        seeds = ()
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated non-negative integers such as 0,1,2, got {text!r}"
        )
    return seeds


def _run_synthetic(args: argparse.Namespace) -> int:
    from ..synthetic import format_table, run_synthetic_benchmark

    results = run_synthetic_benchmark(
        size=args.size,
        seeds=args.seeds,
        tasks=args.tasks,
        out_dir=args.out,
        progress=not args.no_progress,
    )
    print(format_table(results))
    for kind, path in results.get("files", {}).items():
        print(f"{kind}: {path}")
    return 0


def _add_synthetic(subparsers) -> None:
    from ..synthetic import SIZES, TASKS

    p = subparsers.add_parser(
        "synthetic",
        help="G-RepsNet vs. an MLP on EMLP's O(5), O(3) inertia and O(1,3) tasks",
        description="Train G-RepsNet and a plain MLP of similar parameter count with the "
        "same budget on EMLP's synthetic tasks; print test MSE (mean ± std over seeds), "
        "parameters, seconds per epoch and equivariance errors; write JSON, markdown and "
        "PNG to --out.",
    )
    p.add_argument(
        "--size", default="quick", choices=list(SIZES),
        help="budget: quick (make demo, minutes), full (the paper code's), tiny (smoke test)",
    )
    p.add_argument("--seeds", type=_seed_list, default=(0, 1, 2),
                   help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=None,
                   help="subset of tasks (default all)")
    p.add_argument("--out", default="runs/bench",
                   help="folder for synthetic_{size}.json/.md/.png (default runs/bench)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=_run_synthetic)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _run_ns(args: argparse.Namespace) -> int:
    from ..benchmarks import ns

    if args.merge:
        result = ns.merge(args.merge, args.out)
        print(ns.format_table(result["summary"]))
        return 0
    if args.timing_only:
        result = ns.time_models(args.protocol, args.preset, args.models, args.repeats,
                                args.out, args.threads, args.width, args.layers,
                                args.modes)
        print(result["table"])
        return 0
    overrides = {key: getattr(args, key) for key in ns.OVERRIDES
                 if getattr(args, key) is not None}
    if args.data_only:
        cache = args.cache if args.cache is not None else ns.CACHE
        p = ns.make_protocol(args.protocol, args.preset, **overrides)
        stores, _ = ns.prepare_data(p, args.preset, cache, args.data,
                                    progress=not args.no_progress)
        for split, path in stores.items():
            shape = tuple(ns.open_dataset(path)["vorticity"].shape)
            print(f"{split}: {shape} (trajectory, time, x, y) in {path}")
        return 0
    result = ns.run(args.protocol, args.preset, args.models, args.seeds, args.cache,
                    args.out, args.device, args.threads, not args.no_progress,
                    data=args.data, width=args.width, n_layers=args.layers,
                    modes=args.modes, **overrides)
    print(ns.format_table(result["summary"]))
    for kind, path in result["files"].items():
        print(f"{kind}: {path}")
    return 0


def _add_ns(subparsers) -> None:
    from ..benchmarks.ns import MODELS, OPTIONAL_MODELS, PRESET_GROUPS, PROTOCOLS

    p = subparsers.add_parser(
        "ns", help="Navier-Stokes: GRepsFNO vs G-FNO (p4, p4m), FNO, FNO + augmentation",
        description="Train every model at matched parameter counts on generated NS(-Sym) "
        "data and print test error, rotated test error, equivariance errors, long-rollout "
        "errors and timings; write ns_<protocol>_<preset>.{json,md,png} to --out. "
        "Protocols: paper (G-FNO's, GPU), quick (2 CPU cores), late (quick after a "
        "burn-in of 100 time units), smoke, tiny.")
    p.add_argument("--protocol", default="quick", choices=list(PROTOCOLS),
                   help="sizes (default %(default)s)")
    p.add_argument("--preset", default="ns-sym", choices=list(PRESET_GROUPS),
                   help="forcing (default %(default)s)")
    p.add_argument("--models", nargs="+", default=list(MODELS),
                   choices=list(MODELS + OPTIONAL_MODELS),
                   help=f"models to train (default: all but {', '.join(OPTIONAL_MODELS)})")
    p.add_argument("--seeds", type=_seed_list, default=None,
                   help="comma-separated seeds (default: the protocol's)")
    p.add_argument("--cache", type=Path, default=None,
                   help="data cache folder (default runs/ns_data)")
    p.add_argument("--out", type=Path, default=Path("benchmarks") / "results",
                   help="results folder (default %(default)s)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="torch threads (default 1)")
    p.add_argument("--timing-only", action="store_true",
                   help="only time forward/backward per batch at matched parameters")
    p.add_argument("--repeats", type=_positive_int, default=5,
                   help="timing rounds with --timing-only (default 5)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--data-only", action="store_true",
                   help="only generate (or find) the protocol's cached data")
    p.add_argument("--merge", nargs="+", type=Path, default=None, metavar="JSON",
                   help="instead of training, join these ns_<protocol>_<preset>.json runs "
                   "(same settings, different models) into one result in --out")
    p.add_argument("--data", type=Path, default=None, metavar="PATH",
                   help="train/valid/test on PATH instead of generated data: a zarr/netCDF "
                   "store (split in order by --n-train/--n-valid/--n-test), a folder written "
                   "by generate_splits, or an FNO/G-FNO .mat file (u of shape (N, X, Y, T)); "
                   "its sha256 goes into the JSON")
    for flag, what in (("--n-train", "training trajectories"),
                       ("--n-valid", "validation trajectories"),
                       ("--n-test", "test trajectories"), ("--t-in", "input frames"),
                       ("--steps", "rollout steps (training horizon)"),
                       ("--epochs", "training epochs")):
        p.add_argument(flag, type=_positive_int, default=None,
                       help=f"{what} (default: the protocol's)")
    p.add_argument("--eval-every", dest="valid_every", type=_positive_int, default=None,
                   metavar="K", help="validate every K epochs (and after the last); best "
                   "checkpoint among those (default 1)")
    p.add_argument("--width", type=_positive_int, default=None,
                   help="hidden width of every model instead of the parameter-matched one "
                   "(a width sweep; rows named <model>_w<width>_seed<seed>)")
    p.add_argument("--layers", type=_positive_int, default=None,
                   help="Fourier layers of every model instead of the protocol's (a depth "
                   "sweep; _L<layers> is added to the row names)")
    p.add_argument("--modes", type=_positive_int, default=None,
                   help="Fourier modes of every model instead of the protocol's (a mode "
                   "sweep; _m<modes> is added to the row names)")
    p.set_defaults(func=_run_ns)


def _run_nbody(args: argparse.Namespace) -> int:
    from ..benchmarks import nbody

    if args.merge:
        results = nbody.merge(args.merge, out_dir=args.out, cache=args.cache)
        print(nbody.format_table(results))
        return 0
    overrides = {}
    for key, value in (("budget_s", args.budget), ("rollout_budget_s", args.rollout_budget),
                       ("seeds", args.seeds), ("threads", args.threads),
                       ("max_epochs", args.epochs), ("eval_every", args.eval_every),
                       ("n_train", args.n_train)):
        if value is not None:
            overrides[key] = value
    if args.epochs is not None and args.budget is None:
        overrides["budget_s"] = None  # --epochs alone: exactly that many epochs
    if args.no_rollout:
        overrides["rollout"] = False
    if args.models:
        overrides["models"] = tuple(args.models)
    results = nbody.run(args.protocol, cache=args.cache, out_dir=args.out, data=args.data,
                        **overrides)
    print(nbody.format_table(results))
    return 0


def _add_nbody(subparsers) -> None:
    from ..benchmarks.nbody import CACHE, MODELS, PROTOCOLS, RESULTS

    p = subparsers.add_parser(
        "nbody", help="charged 5-body task: GRepsNBody vs EGNN",
        description="Train GRepsNBody and EGNN on EGNN's charged 5-body task (generated, "
        "or the EGNN .npy files of --data; same wall-clock budget each in the quick "
        "protocol, or --epochs) and print test MSE, timings, "
        "equivariance errors and long-rollout errors; write nbody_<protocol>.{json,md,png} "
        "to --out. Protocols: quick (2 CPU cores), paper (EGNN's, GPU), smoke.")
    p.add_argument("--protocol", default="quick", choices=list(PROTOCOLS),
                   help="settings (default %(default)s)")
    p.add_argument("--budget", type=_positive_float, default=None,
                   help="training seconds per model and seed (default: the protocol's)")
    p.add_argument("--rollout-budget", type=_positive_float, default=None,
                   help="training seconds of the (x, v) models for the rollout")
    p.add_argument("--seeds", type=_seed_list, default=None,
                   help="comma-separated seeds (default: the protocol's)")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch threads")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="epochs per model and seed; without --budget exactly this many "
                   "(no time budget), with it at most this many")
    p.add_argument("--eval-every", type=_positive_int, default=None, metavar="K",
                   help="validate every K epochs (and after the last); the test MSE is "
                   "reported at the best validation (default: the protocol's)")
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="train/valid/test on the EGNN .npy files in DIR "
                   "({loc,vel,charges,edges}_{train,valid,test}_<suffix>.npy) instead of "
                   "generated data; their sha256 go into the JSON")
    p.add_argument("--n-train", type=_positive_int, default=None,
                   help="training trajectories")
    p.add_argument("--no-rollout", action="store_true", help="skip the long rollouts")
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=None,
                   help="models to train (default: all)")
    p.add_argument("--merge", nargs="+", type=Path, default=None, metavar="JSON",
                   help="instead of training, join these nbody_<protocol>.json runs (same "
                   "settings, different models) into one result in --out")
    p.add_argument("--cache", type=Path, default=CACHE,
                   help="data cache folder (default %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS,
                   help="results folder (default %(default)s)")
    p.set_defaults(func=_run_nbody)


BENCHMARKS = (_add_synthetic, _add_ns, _add_nbody)
"""Functions adding one ``grepsnet bench`` sub-subcommand each, in help order."""


def register(subparsers) -> None:
    """Add ``bench`` and its benchmarks to the ``grepsnet`` parser."""
    parser = subparsers.add_parser(
        "bench", help="run benchmarks and print their tables",
        description="Run a benchmark, print its table and write JSON/markdown/PNG results.",
    )
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for add in BENCHMARKS:
        add(sub)

    def show_help(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=show_help)
