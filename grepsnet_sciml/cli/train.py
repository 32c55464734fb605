"""``grepsnet train | rollout | evaluate | diagnose``: train a surrogate and judge it.

``grepsnet train CONFIG.toml`` reads a TOML file mirroring
:class:`grepsnet_sciml.solvers.config.ExperimentConfig` (tables ``[data]``, ``[model]``,
``[train]``); every field can also be set as ``--section.field VALUE``. For multi-process
training launch the console script with torchrun, e.g.
``torchrun --nproc_per_node 2 $(which grepsnet) train CONFIG.toml``.

No command replaces work it finds: ``train`` refuses an ``out_dir`` that holds files unless
``--resume`` continues the run there or ``--overwrite`` replaces it (only a folder written by
``grepsnet train``); ``rollout``, ``evaluate`` and ``diagnose`` refuse to replace their own
earlier results unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import re
import sys
import textwrap

__all__ = ["register"]


def _role(match: re.Match) -> str:
    target = re.sub(r"\s*<[^>]*>$", "", match.group(1))  # "title <target>": the title
    if target.startswith("~"):
        return target.rsplit(".", 1)[-1]
    return target.lstrip(".")


def _plain(text: str) -> str:
    """``text`` without Sphinx/reST markup: ``:class:`~a.B``` -> ``B``, double and single
    backquotes dropped (``"auto"`` keeps its quotes)."""
    text = re.sub(r":[\w:]+:`([^`]*)`", _role, text)
    text = re.sub(r"``(.*?)``", r"\1", text, flags=re.S)
    return re.sub(r"`([^`]*)`", r"\1", text)


def _field_docs(cls) -> dict[str, str]:
    """Plain-text attribute descriptions from a numpydoc ``Attributes`` section.

    An entry naming several attributes (``a, b : int``) gives each of them its
    description; the test of ``--help`` texts requires one description per option, so
    the config classes document each attribute on its own line.
    """
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
    return {name: _plain(text) for name, text in docs.items()}


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else repr(value)


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    from grepsnet_sciml.solvers.config import DataConfig
    from grepsnet_sciml.solvers.registry import AUTO_MODELS, FIELD_MEANINGS, REGISTRY
    from grepsnet_sciml.solvers.trainer import TrainConfig

    for section, cls in (("data", DataConfig), ("train", TrainConfig)):
        group = parser.add_argument_group(f"[{section}] settings ({cls.__name__})")
        docs, defaults = _field_docs(cls), cls()
        for f in dataclasses.fields(cls):
            group.add_argument(f"--{section}.{f.name}", dest=f"set:{section}.{f.name}",
                               metavar="VALUE", default=None,
                               help=f"{docs.get(f.name, '')} (default: "
                               f"{_shown(getattr(defaults, f.name))})")
    lines = []
    for e in REGISTRY.values():
        fields = ", ".join(f"{f.name}={_shown(getattr(e.config(), f.name))}"
                           for f in dataclasses.fields(e.config))
        lines += [f"  {e.name} ({e.display}, {e.kind}): {_plain(e.description)}",
                  textwrap.fill(fields, 88, initial_indent=" " * 6, subsequent_indent=" " * 6)]
    group = parser.add_argument_group(
        "[model] settings: name, then exactly that model's fields",
        "\n".join(["models (fields with defaults):", *lines]))
    group.add_argument("--model.name", dest="set:model.name", metavar="NAME", default=None,
                       help="one of the models above (or its display name), or 'auto' "
                       f"({AUTO_MODELS['field']} for fields, {AUTO_MODELS['particles']} for "
                       "particles); applied before the other --model options and starts "
                       "from that model's defaults (default: 'auto')")
    owners: dict[str, list] = {}
    for e in REGISTRY.values():
        for f in dataclasses.fields(e.config):
            owners.setdefault(f.name, []).append(e)
    for key, entries in owners.items():
        doc = _plain(FIELD_MEANINGS.get(key) or _field_docs(entries[0].config).get(key, ""))
        defaults = ", ".join(f"{e.name} {_shown(getattr(e.config(), key))}" for e in entries)
        group.add_argument(f"--model.{key}", dest=f"set:model.{key}", metavar="VALUE",
                           default=None, help=f"{doc} (defaults: {defaults})")


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    """``section.field -> text`` of the options given, ``model.name`` first."""
    given = {k[4:]: v for k, v in vars(args).items() if k.startswith("set:") and v is not None}
    return dict(sorted(given.items(), key=lambda kv: kv[0] != "model.name"))


def _reported(command):
    """Print a PermissionError (unwritable output) as a one-line error; exit status 2."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except PermissionError as err:
            print(f"grepsnet {args.command}: error: {err}", file=sys.stderr)
            return 2

    return run


@_reported
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
        trainer, history = train(cfg, resume=args.resume, overwrite=args.overwrite)
    except TrainingDiverged as err:
        print(f"grepsnet train: {err}", file=sys.stderr)
        return 1
    finally:
        if distributed:
            torch.distributed.destroy_process_group()
    if not distributed or int(os.environ.get("RANK", "0")) == 0:
        if trainer.resume_note:
            print(trainer.resume_note)
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
                     chunk=args.chunk, overwrite=args.overwrite,
                     energy_budget={"on": True, "off": False, None: None}[args.energy_budget])


@_reported
def _rollout(args: argparse.Namespace) -> int:
    from grepsnet_sciml.solvers.pipeline import rollout_job

    result = rollout_job(_job(args))
    print(result.guard_report())
    print(f"rollout of {result.steps_run} steps written to {result.store}")
    return 0


@_reported
def _evaluate(args: argparse.Namespace) -> int:
    from grepsnet_sciml.solvers.pipeline import evaluate_job, evaluation_summary

    for line in evaluation_summary(evaluate_job(_job(args))):
        print(line)
    print(f"results and figures in {args.out_dir}")
    return 0


@_reported
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
    parser.add_argument("--energy-budget", choices=("on", "off"), default=None,
                        help="field models: rescale every predicted vorticity so each step "
                        "obeys the energy budget of the vorticity equation (on), or not (off), "
                        "whatever the model was trained with (default: as trained)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace this command's earlier results in --out-dir (never "
                        "other files); without it existing results are an error")


def register(subparsers) -> None:
    """Add the train, rollout, evaluate and diagnose commands."""
    p = subparsers.add_parser(
        "train", help="train a surrogate solver from a TOML config",
        description="Train a surrogate on a generated dataset. Settings come from CONFIG\n"
        "(TOML tables [data], [model], [train]) and --section.field options, which win.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="TOML config file (optional)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue from last.pt in train.out_dir (bit-identical on CPU); "
                      "changed train.lr/epochs/weight_decay/grad_clip/time_budget_s are "
                      "applied and listed, other changed settings are refused")
    mode.add_argument("--overwrite", action="store_true",
                      help="replace the grepsnet training run in train.out_dir (a folder "
                      "of other files is refused); without --resume or --overwrite a "
                      "train.out_dir holding files is an error")
    _add_config_options(p)
    p.set_defaults(func=_train)

    p = subparsers.add_parser(
        "rollout", help="roll a trained surrogate out far, streamed to zarr",
        description="Autoregressive rollout of a trained model from dataset states into "
        "OUT_DIR/rollout.zarr (memory and start-up time independent of the number of "
        "steps). Trajectories that blow up (NaN/Inf or 1000x growth) are stopped and "
        "reported by sample and step; the rollout ends when all have.")
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
