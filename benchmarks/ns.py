"""Navier-Stokes benchmark: GRepsFNO against G-FNO (p4, p4m), FNO and FNO + augmentation.

A thin script around ``grepsnet bench ns`` (the driver is
:mod:`grepsnet_sciml.benchmarks.ns`): the same options, with results written to
``benchmarks/results/`` and data cached in ``runs/ns_data/`` of this repository wherever it
is run from. See ``python benchmarks/ns.py --help``.
"""

import sys
from pathlib import Path

from grepsnet_sciml.cli import main

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    defaults = ["--out", str(ROOT / "benchmarks" / "results"), "--cache",
                str(ROOT / "runs" / "ns_data")]
    sys.exit(main(["bench", "ns", *defaults, *sys.argv[1:]]))
