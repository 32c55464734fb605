"""Plot how well surrogates and solvers keep their symmetry along a rollout.

    python examples/symmetry_diagnostics.py --data runs/examples/data --runs runs/examples

For every declared symmetry element g (NS-Sym: D4 with reflections shifted by (1/4, 1/4);
particles: random E(3) x S_n elements) and step t it measures
||M^t(g x0) - g M^t(x0)|| / ||M^t(x0)|| for the trained model and for the numerical
solver, and the model's error on the transformed test set; figures (log scale, one curve
per element, PNG + JSON) go to ``RUNS/<model>/diagnose`` (kept unless ``--overwrite``).
"""

import argparse
import os

from grepsnet_sciml.solvers.pipeline import JobConfig, diagnose_job


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="runs/examples/data")
    parser.add_argument("--runs", default="runs/examples")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of an earlier run")
    args = parser.parse_args(argv)
    for model, data in (("fno", "ns_sym_test.zarr"), ("mpnn", "particles_test.zarr")):
        out = os.path.join(args.runs, model, "diagnose")
        diag = diagnose_job(JobConfig(checkpoint=os.path.join(args.runs, model, "best.pt"),
                                      data=os.path.join(args.data, data), out_dir=out,
                                      n_steps=args.steps, n_samples=2,
                                      overwrite=args.overwrite), name=model)
        last = diag.equivariance_error.isel(time=-1).max("element")
        for name in diag.model.values:
            print(f"{model} data, {name}: largest equivariance error at step {args.steps}: "
                  f"{float(last.sel(model=name)):.2e}")
        print(f"figures: {out}/equivariance_error.png, {out}/transformed_test_error.png")


if __name__ == "__main__":
    main()
