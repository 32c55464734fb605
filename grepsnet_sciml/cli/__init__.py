"""The ``grepsnet`` command line: a thin shell over the library.

Each submodule of this package owns one command group and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed ``argparse.Namespace``. Library modules never parse arguments.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Command modules, in the order ``grepsnet --help`` lists them.
COMMAND_MODULES = ("generate", "import_", "train", "bench", "demo")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available command registered."""
    parser = argparse.ArgumentParser(
        prog="grepsnet",
        description="Symmetry-exact surrogate solvers: generate data, train, roll out, "
        "evaluate and benchmark G-RepsNet models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``grepsnet`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        result = args.func(args)
    except (ValueError, FileExistsError, FileNotFoundError, PermissionError) as err:
        print(f"grepsnet {args.command}: error: {err}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
