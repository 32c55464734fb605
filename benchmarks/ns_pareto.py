"""Accuracy against cost of the NS benchmark's models (:mod:`grepsnet_sciml.benchmarks.pareto`).

Usage::

    python benchmarks/ns_pareto.py benchmarks/results/ns_quick_ns-sym.json [more.json ...]

writes ``benchmarks/results/ns_pareto.{png,json}``.
"""

import sys
from pathlib import Path

from grepsnet_sciml.benchmarks._results import variant_label
from grepsnet_sciml.benchmarks.pareto import write_pareto

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) > 1 else 2)
    result = write_pareto(sys.argv[1:], ROOT / "benchmarks" / "results")
    for point in result["points"]:
        print(f"{point['model']:>16} {variant_label(point):<6} {point['test_error']:6.2f}% "
              f"± {point['test_error_std']:.2f}  {point['seconds_per_epoch']:6.1f} s/epoch  "
              f"{point['parameters']:9.0f} params  ({point['seeds']} seeds)")
    print(result["files"]["png"])
