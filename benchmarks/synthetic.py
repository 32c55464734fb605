"""Synthetic benchmark: G-RepsNet vs. a plain MLP on EMLP's O(5), O(3) and O(1,3) tasks.

Usage: ``python benchmarks/synthetic.py [--size quick|full] [--seeds 0,1,2]``. Runs
:func:`grepsnet_sciml.synthetic.run_synthetic_benchmark` with one torch thread and writes
``benchmarks/results/synthetic_{size}.json``, ``.md`` and ``.png``.
"""

import argparse
from pathlib import Path

import torch

from grepsnet_sciml.synthetic import SIZES, format_table, run_synthetic_benchmark

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="quick", choices=list(SIZES))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    results = run_synthetic_benchmark(size=args.size, seeds=seeds, out_dir=RESULTS)
    print(format_table(results))
    for kind, path in results["files"].items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
