"""Roll trained surrogates far past their training horizon and score them against the solver.

    python examples/rollout_far.py --data runs/examples/data --runs runs/examples --steps 60

For each model the numerical solver (read from the dataset's attrs) runs from the same
initial states; ``evaluation.nc`` (dims model, sample, time) and figures (error vs time,
snapshots, spectra / trajectories, each PNG + JSON) go to ``RUNS/<model>/eval``. A long
rollout is also streamed to ``rollout.zarr`` with constant memory. Existing results are
kept unless ``--overwrite``.
"""

import argparse
import os

from grepsnet_sciml.solvers.pipeline import JobConfig, evaluate_job, rollout_job


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="runs/examples/data")
    parser.add_argument("--runs", default="runs/examples")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of an earlier run")
    args = parser.parse_args(argv)
    for model, data in (("fno", "ns_sym_test.zarr"), ("mpnn", "particles_test.zarr")):
        job = JobConfig(checkpoint=os.path.join(args.runs, model, "best.pt"),
                        data=os.path.join(args.data, data),
                        out_dir=os.path.join(args.runs, model, "eval"),
                        n_steps=args.steps if model == "fno" else max(1, args.steps // 6),
                        n_samples=2, overwrite=args.overwrite)
        ev = evaluate_job(job, name=model)
        if model == "fno":
            print(f"fno: relative L2 over {job.n_steps} steps "
                  f"{float(ev.rel_l2_rollout.mean()):.3g}, correlation time "
                  f"{float(ev.correlation_time.mean()):.3g}")
        else:
            print(f"mpnn: position MSE after {job.n_steps} steps "
                  f"{float(ev.position_mse.isel(time=-1).mean()):.3g}")
        streamed = rollout_job(job)
        print(streamed.guard_report())
        print(f"streamed rollout: {streamed.store}")


if __name__ == "__main__":
    main()
