"""``grepsnet bench``: run a benchmark and print its table.

Each benchmark is one sub-subcommand, added by a ``_add_<name>(subparsers)`` function
listed in :data:`BENCHMARKS`; it sets ``func`` to a small function that calls one library
function, prints a table and returns an exit status. ``grepsnet bench synthetic`` calls
:func:`grepsnet_sciml.synthetic.run_synthetic_benchmark`.
"""

from __future__ import annotations

import argparse


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


BENCHMARKS = (_add_synthetic,)
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
