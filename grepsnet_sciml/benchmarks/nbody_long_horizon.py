"""Long-horizon rollouts of charged-particle (x, v) predictors: escapes, drifts, errors.

For each physics preset (``egnn``: EGNN's charged 5-body system with its force clipping;
``clean``: the same system with a softened, unclipped, energy- and momentum-conserving force)
every model's (x, v) predictor (``velocity_output=True``, loss ``MSE(x) + MSE(v)``) is
trained for ``epochs`` epochs on that physics's one-step task (frame 30 -> 40, 1000
simulator steps; the settings of :mod:`~grepsnet_sciml.benchmarks.nbody`, best validation
checkpoint) and applied 1, 2, 5 and 10 times from frame 30 of a separate long split
(:func:`~grepsnet_sciml.benchmarks.nbody.long_rollout`). Reported per horizon, beside the
simulator's own: position MSE, the share of trajectories with a particle past
``|x| = 1000`` (or stopped by the blow-up guard), the median relative energy drift
``|E_t - E_0| / |E_0|`` and the mean momentum and angular momentum drifts. Training for a
fixed number of epochs (not a time budget) keeps the numbers independent of machine load.

Models: ``GRepsNBody`` (total momentum conserved by construction, its default with velocity
outputs), ``GRepsNBody-free`` (the same without the projection, the ablation),
``GRepsNBody-energy`` (also the energy: ``conserve_energy=True`` with the preset's softening)
and ``EGNN``.

Usage (``benchmarks/nbody_long_horizon.py`` takes the same options)::

    python benchmarks/nbody_long_horizon.py --presets clean --out runs/a &
    python benchmarks/nbody_long_horizon.py --presets egnn --out runs/b
    python benchmarks/nbody_long_horizon.py --merge runs/a/nbody_long_horizon.json \\
        runs/b/nbody_long_horizon.json

writes ``nbody_long_horizon.{json,md,png}`` (the PNG: error and drift curves per horizon).
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from grepsnet_sciml._atomic import atomic_path, atomic_write_text
from grepsnet_sciml.models.egnn import EGNN
from grepsnet_sciml.models.nbody import GRepsNBody
from grepsnet_sciml.solvers.unroll import ParticleLoss, unrolled_particle_loss

from . import nbody
from ._results import read_results

__all__ = ["MODELS", "run", "merge", "format_table", "train_step_times"]

MODELS = {
    "GRepsNBody": (GRepsNBody, {}),
    "GRepsNBody-free": (GRepsNBody, {"conserve_momentum": False}),
    "GRepsNBody-energy": (GRepsNBody, {"conserve_energy": True}),
    "GRepsNBody-inverse": (GRepsNBody, {"radial": "inverse"}),
    "GRepsNBody-inverse-energy": (GRepsNBody, {"radial": "inverse", "conserve_energy": True}),
    "GRepsNBody-inverse-energy-unroll2": (GRepsNBody, {"radial": "inverse",
                                                        "conserve_energy": True}),
    "GRepsNBody-inverse-unroll2": (GRepsNBody, {"radial": "inverse"}),
    "EGNN": (EGNN, {}),
}
"""Display name -> (class, constructor options besides ``velocity_output=True``); a model
that conserves energy is given the preset's softening (``energy_softening``)."""
METHODS = {"GRepsNBody-inverse-energy-unroll2": {"unroll_steps": 2},
           "GRepsNBody-inverse-unroll2": {"unroll_steps": 2}}
"""Display name -> :class:`~grepsnet_sciml.solvers.unroll.ParticleLoss` settings of the
models trained on an unrolled loss (the others train one step)."""
PRESETS = ("egnn", "clean")
STEM = "nbody_long_horizon"


def run(protocol: str = "quick", models=tuple(MODELS), presets=PRESETS, epochs: int = 600,
        seed: int = 0, cache: Path = nbody.CACHE, out_dir: Path = nbody.RESULTS,
        threads: int = 1, **overrides) -> dict:
    """Train and roll out every model on every preset; write ``nbody_long_horizon.*``.

    Parameters
    ----------
    protocol : str
        A protocol of :data:`grepsnet_sciml.benchmarks.nbody.PROTOCOLS` (data sizes,
        optimiser, horizons).
    models : sequence of str
        Names from :data:`MODELS`.
    presets : sequence of {"egnn", "clean"}
    epochs : int
        Training epochs of every (x, v) predictor.
    seed : int
        Training seed (the same initial weights for ``GRepsNBody`` and ``GRepsNBody-free``).
    cache, out_dir : Path
        Data cache and results folder.
    threads : int
        Torch threads.
    **overrides
        Fields of the :class:`~grepsnet_sciml.benchmarks.nbody.Protocol` replaced (e.g.
        ``n_train``, ``horizons``).

    Returns
    -------
    dict
        ``{"protocol", "settings", "epochs", "seed", "presets": {preset: {model: {"epochs",
        "best", "diverged", "horizons"}}}, "files"}``.
    """
    if protocol not in nbody.PROTOCOLS:
        raise ValueError(f"protocol: expected one of {list(nbody.PROTOCOLS)}, got {protocol!r}")
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"models: expected names from {list(MODELS)}, got {list(models)}")
    bad = [s for s in presets if s not in PRESETS]
    if bad or not presets:
        raise ValueError(f"presets: expected some of {list(PRESETS)}, got {list(presets)}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected a positive integer, got {epochs!r}")
    torch.set_num_threads(threads)
    fields = set(nbody.Protocol.__dataclass_fields__)
    if set(overrides) - fields:
        raise ValueError(f"overrides: unknown settings {sorted(set(overrides) - fields)}; "
                         f"expected fields of Protocol: {sorted(fields)}")
    p = replace(nbody.PROTOCOLS[protocol], **overrides, threads=threads, device="cpu",
                rollout_budget_s=None, rollout_max_epochs=epochs, seeds=(seed,))
    cache = Path(cache)
    results = {"protocol": protocol, "settings": asdict(p), "epochs": epochs, "seed": seed,
               "torch_threads": threads, "presets": {}}
    for preset in presets:
        splits = nbody.generated_task(p, cache, preset)[0]
        long = nbody.long_split(p, cache, preset)
        builds = {name: _build(name, nbody.softening_of(long)) for name in models}
        entries = nbody._rollouts(p, splits, long, builds,
                                  {name: METHODS[name] for name in models if name in METHODS})
        results["presets"][preset] = entries
    results["files"] = write(results, Path(out_dir))
    return results


def train_step_times(models=tuple(MODELS), preset: str = "clean", batch: int = 100,
                     repeats: int = 30, cache: Path = nbody.CACHE, out_dir: Path = nbody.RESULTS,
                     threads: int = 1, protocol: str = "quick") -> dict:
    """Seconds per training step (forward, loss, backward, Adam) side by side.

    Every model is built and trained as in :func:`run` for ``preset`` (the one-step loss
    ``MSE(x) + MSE(v)``, or the unrolled :class:`~grepsnet_sciml.solvers.unroll.ParticleLoss`
    of :data:`METHODS`) and steps on the same ``batch`` training systems; the models take
    turns ``repeats`` times after 3 warm-up steps, so a change of machine load falls on all
    of them. Writes ``nbody_long_horizon_timing.{json,md}`` with each model's median and its
    ratio to the first model's.
    """
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"models: expected names from {list(MODELS)}, got {list(models)}")
    torch.set_num_threads(threads)
    p = nbody.PROTOCOLS[protocol]
    splits = nbody.generated_task(p, Path(cache), preset)[0]
    softening = nbody.softening_of(splits["train"])
    mse = torch.nn.functional.mse_loss
    steps = {}
    for name in models:
        torch.manual_seed(0)
        model = _build(name, softening)(velocity_output=True)
        loss = ParticleLoss(**METHODS.get(name, {}))
        pairs = nbody._pairs(splits, p, velocity=True, train_steps=loss.unroll_steps)["train"]
        items = [pairs[i] for i in range(batch)]
        inputs = tuple(torch.stack([item[0][k] for item in items]) for k in range(3))
        target = tuple(torch.stack([item[1][k] for item in items]) for k in range(2))
        if loss.unroll_steps == 1:
            target = tuple(t[:, None] for t in target)
        steps[name] = (model, torch.optim.Adam(model.parameters(), lr=p.lr), inputs, target,
                       loss.unroll_steps)

    def step(model, opt, inputs, target, k):
        opt.zero_grad()
        unrolled_particle_loss(model, inputs, target, steps=k, loss_fn=mse).backward()
        opt.step()

    times = {name: [] for name in models}
    for _ in range(3):
        for pair in steps.values():
            step(*pair)
    for _ in range(repeats):
        for name, pair in steps.items():
            start = time.perf_counter()
            step(*pair)
            times[name].append(time.perf_counter() - start)
    first = models[0]
    medians = {name: float(np.median(t)) for name, t in times.items()}
    result = {"preset": preset, "batch": batch, "repeats": repeats, "torch_threads": threads,
              "seconds": medians,
              "ratio": {name: medians[name] / medians[first] for name in models},
              "ratio_quartiles": {name: [float(r) for r in np.percentile(
                  np.asarray(times[name]) / np.asarray(times[first]), [25, 75])]
                  for name in models}}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"Training step (forward, loss, backward, Adam) on {batch} `{preset}` systems, "
             f"{threads} torch thread(s), models taking turns {repeats} times; ratio to "
             f"{first} (per-step quartiles).", "",
             "| model | ms per step | ratio | quartiles |", "|---|---|---|---|"]
    for name in models:
        lo, hi = result["ratio_quartiles"][name]
        lines.append(f"| {name} | {1e3 * medians[name]:.1f} | {result['ratio'][name]:.2f} | "
                     f"{lo:.2f}-{hi:.2f} |")
    atomic_write_text(out_dir / f"{STEM}_timing.json", json.dumps(result, indent=1))
    atomic_write_text(out_dir / f"{STEM}_timing.md", "\n".join(lines) + "\n")
    return result


def _build(name: str, softening: float):
    """Constructor of model ``name`` taking ``velocity_output``, for data of this softening."""
    cls, options = MODELS[name]
    if options.get("conserve_energy"):
        options = {**options, "energy_softening": softening}
    return functools.partial(cls, **options)


def merge(paths, out_dir: Path = nbody.RESULTS) -> dict:
    """Join runs of different presets (or models) made with the same settings."""
    parts = [read_results(path) for path in paths]
    if not parts:
        raise ValueError(f"paths: expected at least one {STEM}.json, got none")
    first = parts[0]
    merged = {k: first[k] for k in ("protocol", "settings", "epochs", "seed", "torch_threads")
              if k in first}
    merged["presets"], merged["merged_from"] = {}, [str(p) for p in paths]
    for path, part in zip(paths, parts):
        if "presets" not in part:
            raise ValueError(f"paths: {path} has no 'presets'; expected a file written by "
                             "grepsnet_sciml.benchmarks.nbody_long_horizon.run")
        for key in ("protocol", "settings", "epochs", "seed"):
            if part.get(key) != first.get(key):
                raise ValueError(f"paths: {path} differs from {paths[0]} in {key!r}; "
                                 "expected runs with the same settings")
        for preset, entries in part["presets"].items():
            mine = merged["presets"].setdefault(preset, {})
            overlap = sorted(set(mine) & set(entries))
            if overlap:
                raise ValueError(f"paths: {overlap} on {preset!r} appear in more than one file")
            mine.update(entries)
    merged["files"] = write(merged, Path(out_dir))
    return merged


def _cell(value, spec: str) -> str:
    return "diverged" if value is None else format(value, spec)


def format_table(results: dict) -> str:
    """Markdown: one table per preset, a row per model and horizon (and the simulator's)."""
    lines = [f"Charged 5-body (x, v) predictors, protocol `{results['protocol']}`, "
             f"{results['epochs']} epochs each, seed {results['seed']}; rollouts from frame 30 "
             "of the long split, one model step = 1000 simulator steps. MSE and drifts over "
             "the trajectories the blow-up guard kept; escaped: a particle past |x| = 1000 or "
             "stopped."]
    for preset, entries in results["presets"].items():
        lines += ["", f"`{preset}` physics:", "",
                  "| model | one-step test MSE | horizon | position MSE | escaped | "
                  "energy drift (median, rel.) | momentum drift | angular momentum drift |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, r in entries.items():
            test = r["best"].get("test")
            for h, c in r["horizons"].items():
                lines.append(
                    f"| {name} | {_cell(test, '.5f')} | {h}x | {_cell(c['mse'], '.4f')} | "
                    f"{c['escaped']:.0%} | {_cell(c['relative_energy_drift_median'], '.3g')} | "
                    f"{_cell(c['momentum_drift'], '.2e')} | "
                    f"{_cell(c['angular_momentum_drift'], '.2e')} |")
        sim = next(iter(entries.values()))["horizons"]
        for h, c in sim.items():
            lines.append(f"| simulator | | {h}x | 0 | 0% | "
                         f"{c['sim_relative_energy_drift_median']:.3g} | "
                         f"{c['sim_momentum_drift']:.2e} | "
                         f"{c['sim_angular_momentum_drift']:.2e} |")
    return "\n".join(lines) + "\n"


def write(results: dict, out_dir: Path) -> dict:
    """``nbody_long_horizon.{json,md,png}``, each written atomically; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {k: out_dir / f"{STEM}.{k}" for k in ("json", "md", "png")}
    presets = list(results["presets"])
    keys = (("mse", "position MSE"), ("relative_energy_drift_median", "energy drift (median)"),
            ("momentum_drift", "momentum drift"), ("escaped", "escaped share"))
    fig, axes = plt.subplots(len(presets), len(keys), figsize=(4 * len(keys), 3.4 * len(presets)),
                             squeeze=False)
    for row, preset in enumerate(presets):
        entries = results["presets"][preset]
        for col, (key, label) in enumerate(keys):
            ax = axes[row, col]
            for name, r in entries.items():
                hs = [int(h) for h in r["horizons"]]
                ys = [np.nan if c[key] is None else c[key] for c in r["horizons"].values()]
                ax.plot(hs, ys, "o-", label=name)
            if key != "mse" and key != "escaped":
                sim = next(iter(entries.values()))["horizons"]
                ax.plot([int(h) for h in sim], [c[f"sim_{key}"] for c in sim.values()], "k:",
                        label="simulator")
            ax.set(xlabel="horizons (x 1000 steps)", ylabel=label, title=f"{preset}: {label}")
            if key != "escaped":
                ax.set_yscale("symlog", linthresh=1e-8)
            ax.grid(True, alpha=0.3)
        axes[row, 0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(files["png"], suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    atomic_write_text(files["json"], json.dumps({**results, "files": {k: str(v) for k, v in
                                                                       files.items()}},
                                                indent=1))
    atomic_write_text(files["md"], format_table(results))
    return {k: str(v) for k, v in files.items()}
