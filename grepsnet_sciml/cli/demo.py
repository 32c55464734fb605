"""``grepsnet demo``: generate data, train, roll out far, evaluate, diagnose, report."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _demo(args: argparse.Namespace) -> int:
    from grepsnet_sciml.solvers.demo import DemoConfig, run_demo

    cfg = DemoConfig(out_dir=args.out, progress=not args.quiet)
    if args.small:
        cfg = DemoConfig(out_dir=args.out, progress=not args.quiet, resolution=16, ns_train=6,
                         ns_test=2, ns_frames=8, t_in=2, ns_epochs=2, ns_rollout=12,
                         particle_train=16, particle_test=2, particle_epochs=2,
                         particle_rollout=6, diagnose_steps=3, grepsfno_width=2)
    report = run_demo(cfg)
    print(f"demo report: {report}")
    return 0


def register(subparsers) -> None:
    """Add the demo command."""
    p = subparsers.add_parser(
        "demo", help="end-to-end demo: data, training, far rollout, evaluation, report",
        description="On a fresh machine: generate a small NS-Sym dataset and a charged-"
        "particle dataset, train GRepsFNO beside FNO and GRepsNBody beside EGNN, roll them "
        "out past the training horizon, evaluate them against the numerical solvers, "
        "measure their symmetry consistency step by step, and write figures and report.md "
        "into OUT (about 5 minutes on 2 CPUs).")
    p.add_argument("--out", default="runs/demo", help="output folder (default: %(default)s)")
    p.add_argument("--small", action="store_true",
                   help="a tiny run (seconds) that checks the pipeline, not the results")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_demo)
