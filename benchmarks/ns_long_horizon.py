"""Long-horizon rollouts of trained NS surrogates against the solver
(:mod:`grepsnet_sciml.benchmarks.long_horizon`).

Usage::

    python benchmarks/ns_long_horizon.py --data TEST_STORE --steps 1000 --horizons 100 1000 \\
        GRepsFNO=runs/.../GRepsFNO_seed0/best.pt GFNO-p4=runs/.../GFNO-p4_seed0/best.pt

writes ``benchmarks/results/ns_long_horizon.{json,md}`` and ``ns_long_horizon_band.{png,json}``
(``--stem NAME`` for other names; ``--energy-budget NAME ...`` rolls those models out with
the energy-budget head put on, :func:`grepsnet_sciml.solvers.experiment.load_model`).
"""

import argparse
from pathlib import Path

from grepsnet_sciml.benchmarks.long_horizon import format_table, run

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", metavar="NAME=CHECKPOINT")
    parser.add_argument("--data", required=True, help="test store of the initial states")
    parser.add_argument("--steps", type=int, default=100, help="rollout steps (default 100)")
    parser.add_argument("--horizons", type=int, nargs="+", default=None,
                        help="steps at which to read the measures (default: --steps)")
    parser.add_argument("--samples", type=int, default=16, help="test trajectories (16)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--stem", default="ns_long_horizon",
                        help="output file names <stem>.{json,md}, <stem>_band.{png,json}")
    parser.add_argument("--energy-budget", nargs="+", default=[], metavar="NAME",
                        help="models rolled out with the energy-budget head put on")
    parser.add_argument("--test-steps", type=int, default=0, metavar="STEPS",
                        help="also score STEPS-step rollouts from every trajectory by the NS "
                        "bench's test error (0: not)")
    args = parser.parse_args()
    pairs = [c.split("=", 1) for c in args.checkpoints]
    if any(len(p) != 2 for p in pairs):
        parser.error(f"checkpoints: expected NAME=CHECKPOINT pairs, got {args.checkpoints}")
    result = run(dict(pairs), args.data, args.steps, args.horizons or [args.steps],
                 args.samples, args.out, stem=args.stem, energy_budget=args.energy_budget,
                 test_steps=args.test_steps)
    print(format_table(result))
