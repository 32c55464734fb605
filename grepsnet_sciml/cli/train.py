"""``grepsnet train | rollout | evaluate | diagnose``: train a surrogate and judge it.

``grepsnet train CONFIG.toml`` reads a TOML file mirroring
:class:`grepsnet_sciml.solvers.config.ExperimentConfig` (tables ``[data]``, ``[model]``,
``[train]``); every field can also be set as ``--section.field VALUE``. For multi-process
training launch the console script with torchrun, e.g.
``torchrun --nproc_per_node 2 $(which grepsnet) train CONFIG.toml``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys

__all__ = ["register"]


def _field_docs(cls) -> dict[str, str]:
    """Attribute descriptions from a numpydoc ``Attributes`` section."""
    docs, current = {}, None
    for line in (cls.__doc__ or "").splitlines():
        match = re.match(r"^    (\w+(?:, \w+)*) : ", line)
        if match:
            current = [n.strip() for n in match.group(1).split(",")]
            for name in current:
                docs[name] = ""
        elif current and line.startswith("        "):
            for name in current:
                docs[name] = (docs[name] + " " + line.strip()).strip()
        elif not line.strip():
            current = None
    return docs


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    from grepsnet_sciml.solvers.config import ExperimentConfig

    defaults = ExperimentConfig()
    for section in dataclasses.fields(ExperimentConfig):
        cls = type(getattr(defaults, section.name))
        group = parser.add_argument_group(f"[{section.name}] settings ({cls.__name__})")
        docs = _field_docs(cls)
        for f in dataclasses.fields(cls):
            default = getattr(getattr(defaults, section.name), f.name)
            shown = ",".join(map(str, default)) if isinstance(default, list) else default
            group.add_argument(f"--{section.name}.{f.name}", dest=f"set:{section.name}.{f.name}",
                               metavar="VALUE", default=None,
                               help=f"{docs.get(f.name, '')} (default: {shown!r})")


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("set:") and v is not None}


def _train(args: argparse.Namespace) -> int:
    import torch

    from grepsnet_sciml.solvers.config import ExperimentConfig, load_config, set_field
    from grepsnet_sciml.solvers.experiment import train
    from grepsnet_sciml.solvers.trainer import TrainingDiverged

    cfg = load_config(args.config) if args.config else ExperimentConfig()
    for key, value in _overrides(args).items():
        cfg = set_field(cfg, key, value)
    if not cfg.data.train:
        raise ValueError("data.train: no training dataset given; set it in the TOML file or "
                         "with --data.train PATH")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        backend = "nccl" if torch.cuda.is_available() and cfg.train.device != "cpu" else "gloo"
        torch.distributed.init_process_group(backend)
    try:
        _, history = train(cfg, resume=args.resume)
    except TrainingDiverged as err:
        print(f"grepsnet train: {err}", file=sys.stderr)
        return 1
    finally:
        if distributed:
            torch.distributed.destroy_process_group()
    if not distributed or int(os.environ.get("RANK", "0")) == 0:
        if history:
            last = history[-1]
            print(f"trained {last['epoch']} epochs: train loss {last['train_loss']:.4g}, "
                  f"best validation error {last['best']:.4g}")
        print(f"checkpoints and metrics in {cfg.train.out_dir}")
    return 0


def _job(args: argparse.Namespace):
    from grepsnet_sciml.solvers.pipeline import JobConfig

    return JobConfig(checkpoint=args.checkpoint, data=args.data, out_dir=args.out_dir,
                     n_steps=args.n_steps, n_samples=args.n_samples, start=args.start,
                     chunk=args.chunk)


def _rollout(args: argparse.Namespace) -> int:
    from grepsnet_sciml.solvers.pipeline import rollout_job

    print(f"rollout written to {rollout_job(_job(args))}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from grepsnet_sciml.solvers.pipeline import evaluate_job

    ev = evaluate_job(_job(args))
    metric = "rel_l2_rollout" if "rel_l2_rollout" in ev else "position_mse"
    print(f"{metric}: {float(ev[metric].mean()):.4g} (mean over samples); results and figures "
          f"in {args.out_dir}")
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from grepsnet_sciml.solvers.pipeline import diagnose_job

    diag = diagnose_job(_job(args))
    for model in diag.model.values:
        err = float(diag.equivariance_error.sel(model=model).isel(time=-1).max())
        print(f"{model}: largest equivariance error at the last step {err:.3e}")
    print(f"diagnostics and figures in {args.out_dir}")
    return 0


def _add_job_options(parser: argparse.ArgumentParser, out_default: str, steps: int) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint written by 'grepsnet train' (best.pt or last.pt)")
    parser.add_argument("--data", required=True,
                        help="generated dataset (zarr or .nc) to start from, e.g. the test split")
    parser.add_argument("--out-dir", default=out_default, help="output folder (default: "
                        "%(default)s)")
    parser.add_argument("--n-steps", type=int, default=steps,
                        help="rollout steps (default: %(default)s)")
    parser.add_argument("--n-samples", type=int, default=4,
                        help="samples from the start of the data (0: all; default: %(default)s)")
    parser.add_argument("--start", type=int, default=0,
                        help="first frame of the initial state (default: %(default)s)")
    parser.add_argument("--chunk", type=int, default=16,
                        help="steps kept in memory between writes (default: %(default)s)")


def register(subparsers) -> None:
    """Add the train, rollout, evaluate and diagnose commands."""
    p = subparsers.add_parser(
        "train", help="train a surrogate solver from a TOML config",
        description="Train a surrogate on a generated dataset. Settings come from CONFIG "
        "(TOML tables [data], [model], [train]) and --section.field options, which win.")
    p.add_argument("config", nargs="?", help="TOML config file (optional)")
    p.add_argument("--resume", action="store_true",
                   help="continue from last.pt in train.out_dir (bit-identical on CPU)")
    _add_config_options(p)
    p.set_defaults(func=_train)

    p = subparsers.add_parser(
        "rollout", help="roll a trained surrogate out far, streamed to zarr",
        description="Autoregressive rollout of a trained model from dataset states into "
        "OUT_DIR/rollout.zarr (memory independent of the number of steps).")
    _add_job_options(p, "runs/rollout", 200)
    p.set_defaults(func=_rollout)

    p = subparsers.add_parser(
        "evaluate", help="score a surrogate's rollout against the numerical solver",
        description="Roll the surrogate and the dataset's numerical solver out from the same "
        "states; write OUT_DIR/evaluation.nc and figures (PNG + JSON).")
    _add_job_options(p, "runs/eval", 50)
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser(
        "diagnose", help="symmetry consistency of surrogate and solver per group element",
        description="Measure ||M^t(g x0) - g M^t(x0)|| / ||M^t(x0)|| for every declared "
        "symmetry element and step, for the surrogate and the numerical solver; write "
        "OUT_DIR/diagnostics.nc and figures.")
    _add_job_options(p, "runs/diagnose", 20)
    p.set_defaults(func=_diagnose)
