"""Train reference surrogates on generated data: an FNO for NS-Sym fields, an MPNN for particles.

    python examples/train_surrogate.py --data runs/examples/data --out runs/examples

The experiment is a typed config (the same one ``grepsnet train CONFIG.toml`` reads);
checkpoints (``best.pt`` by validation rollout error, ``last.pt``) and ``metrics.jsonl``
land in ``OUT/fno`` and ``OUT/mpnn``. Rerun with ``--resume`` to continue an interrupted run,
or with ``--overwrite`` to replace the runs (a plain rerun refuses to touch them).
TOML configs for the equivariant models (``grepsnet train examples/configs/<name>.toml``)
are in ``examples/configs/``; ``grepsnet train --help`` lists every model and its fields.
"""

import argparse
import os

from grepsnet_sciml.solvers.config import config_from_dict
from grepsnet_sciml.solvers.experiment import train


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="runs/examples/data")
    parser.add_argument("--out", default="runs/examples")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--t-in", type=int, default=4)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true")
    mode.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    fields = config_from_dict({
        "data": {"train": os.path.join(args.data, "ns_sym_train.zarr"), "t_in": args.t_in},
        "model": {"name": "fno", "modes": 8, "width": 24, "n_layers": 4},
        "train": {"out_dir": os.path.join(args.out, "fno"), "epochs": args.epochs,
                  "batch_size": 8, "lr": 3e-3, "progress": False},
    })
    _, history = train(fields, resume=args.resume, overwrite=args.overwrite)
    print("fno:", [round(h["valid_error"], 4) for h in history], "validation rollout errors")

    particles = config_from_dict({
        "data": {"train": os.path.join(args.data, "particles_train.zarr"),
                 "input_frames": list(range(0, 31, 3)), "delta": 10, "predict_velocity": True},
        "model": {"name": "mpnn", "hidden": 48, "n_layers": 3},
        "train": {"out_dir": os.path.join(args.out, "mpnn"), "epochs": args.epochs,
                  "batch_size": 32, "lr": 2e-3, "loss": "mse", "progress": False},
    })
    _, history = train(particles, resume=args.resume,
                       overwrite=args.overwrite)
    print("mpnn:", [round(h["valid_error"], 4) for h in history], "validation rollout errors")


if __name__ == "__main__":
    main()
