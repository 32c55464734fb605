"""Charged N-body benchmark: GRepsNBody against EGNN on EGNN's charged 5-body task.

A thin script around ``grepsnet bench nbody`` (the driver is
:mod:`grepsnet_sciml.benchmarks.nbody`): the same options, with results written to
``benchmarks/results/`` and data cached in ``runs/nbody_data/`` of this repository wherever it
is run from. See ``python benchmarks/nbody.py --help``.
"""

import sys
from pathlib import Path

from grepsnet_sciml.cli import main

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    defaults = ["--out", str(ROOT / "benchmarks" / "results"), "--cache",
                str(ROOT / "runs" / "nbody_data")]
    sys.exit(main(["bench", "nbody", *defaults, *sys.argv[1:]]))
