"""Long-horizon rollouts of charged-particle (x, v) predictors
(:mod:`grepsnet_sciml.benchmarks.nbody_long_horizon`).

Usage::

    python benchmarks/nbody_long_horizon.py [--presets egnn clean] [--epochs 600]
    python benchmarks/nbody_long_horizon.py --merge runs/a/nbody_long_horizon.json \\
        runs/b/nbody_long_horizon.json
    python benchmarks/nbody_long_horizon.py --timing-only [--presets clean] [--models ...]

writes ``benchmarks/results/nbody_long_horizon.{json,md,png}``.
"""

import argparse
import json
import sys
from pathlib import Path

from grepsnet_sciml.benchmarks import nbody_long_horizon as lh

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="quick")
    parser.add_argument("--models", nargs="+", default=list(lh.MODELS), choices=list(lh.MODELS))
    parser.add_argument("--presets", nargs="+", default=list(lh.PRESETS),
                        choices=list(lh.PRESETS))
    parser.add_argument("--epochs", type=int, default=600, help="training epochs (600)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "nbody_data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--merge", nargs="+", type=Path, default=None, metavar="JSON")
    parser.add_argument("--timing-only", action="store_true",
                        help="only time a training step of each model side by side "
                             "(nbody_long_horizon_timing.{json,md}, first preset)")
    args = parser.parse_args()
    try:
        if args.timing_only:
            timing = lh.train_step_times(args.models, args.presets[0], cache=args.cache,
                                         out_dir=args.out, threads=args.threads,
                                         protocol=args.protocol)
            sys.exit(print(json.dumps(timing["ratio"], indent=1)))
        if args.merge:
            result = lh.merge(args.merge, args.out)
        else:
            result = lh.run(args.protocol, args.models, args.presets, args.epochs, args.seed,
                            args.cache, args.out, args.threads)
    except ValueError as err:
        sys.exit(f"error: {err}")
    print(lh.format_table(result))
