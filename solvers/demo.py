"""The end-to-end demo behind ``grepsnet demo``: data, training, far rollout, evaluation,
symmetry diagnostics and a report, for Navier-Stokes (NS-Sym) and charged particles.

Each part trains an equivariant model and a baseline on the same data and compares them
side by side (:func:`~.compare.compare_job`): GRepsFNO and FNO on NS-Sym, GRepsNBody and
EGNN on charged particles. Sizes (:class:`DemoConfig`) are chosen to finish in about 5
minutes on 2 CPU cores. The data is generated chunk by chunk into zarr stores in
``out_dir/data`` (:func:`~grepsnet_sciml.datasets.splits.generate_to_store`,
:func:`~grepsnet_sciml.datasets.splits.generate_splits`; each split from its own stream): an
interrupted generation resumes, a finished one is reused. Every model's config is written
beside its run folder (``<run>.toml``, :func:`~.config.save_config`, read by ``grepsnet
train``). Training always starts fresh: the demo replaces its own earlier runs and results
(``overwrite``), and refuses a folder of other files.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from grepsnet_sciml._atomic import atomic_write_text
from grepsnet_sciml.datasets.splits import generate_splits, generate_to_store, split_seed

from .compare import compare_job
from .config import ExperimentConfig, config_from_dict, save_config
from .data import open_dataset
from .experiment import load_model, train
from .plots import write_json
from .reference import dataset_config

#: Captions of the figures the demo writes (any other PNG is linked under its file name).
_CAPTIONS = {
    "error_vs_time": "error vs time (dotted line: the training horizon)",
    "snapshots": "vorticity snapshots: solver, models and their errors",
    "spectra": "kinetic energy spectra",
    "equivariance_error": "equivariance error per rollout step",
    "transformed_test_error": "error on the transformed test set per rollout step",
    "trajectories": "particle trajectories of sample 0",
    "energy_drift": "relative energy drift of models and solver",
    "energy_band": "energy and enstrophy against the solver's stationary band",
    "conservation": "momentum and angular momentum drift of models and solver",
}

__all__ = ["DemoConfig", "run_demo", "summary_table"]


@dataclass
class DemoConfig:
    """Sizes of the demo.

    Attributes
    ----------
    out_dir : str
        Output folder (data, runs, figures, ``report.md``).
    resolution : int
        NS grid (simulated and stored).
    viscosity : float
        NS viscosity.
    ns_train, ns_test : int
        NS trajectories for training (and validation) and for testing.
    ns_frames : int
        Frames per NS training trajectory (one per time unit).
    t_in : int
        History frames of the field surrogate.
    ns_epochs : int
        Epochs of each NS surrogate.
    grepsfno_width : int
        Regular channels of GRepsFNO (``width x R``, 8 real channels each for D4; 6, the
        model's default; 3 Fourier layers, block MLPs through ``4 x R`` and the data's forcing
        as an input channel, the registry's defaults).
    ns_rollout : int
        Rollout steps against the solver (past the ``ns_frames`` training horizon).
    particle_train, particle_test : int
        Charged-particle trajectories (``clean`` preset, 5 particles).
    particle_epochs : int
        Epochs of each particle surrogate.
    particle_rollout : int
        Model steps of 1 time unit (the data spans 5).
    diagnose_steps : int
        Steps of the symmetry diagnostics (on the same test samples as the evaluation).
    progress : bool
        Progress bars (stage headers and the closing summary table are printed anyway).
    """

    out_dir: str = "runs/demo"
    resolution: int = 32
    viscosity: float = 1e-3
    ns_train: int = 24
    ns_test: int = 4
    ns_frames: int = 20
    t_in: int = 4
    ns_epochs: int = 25
    grepsfno_width: int = 6
    ns_rollout: int = 40
    particle_train: int = 160
    particle_test: int = 4
    particle_epochs: int = 25
    particle_rollout: int = 10
    diagnose_steps: int = 10
    progress: bool = True


def _ns_data(cfg: DemoConfig, folder: str) -> tuple[str, str]:
    """NS-Sym train and test stores, each from its own stream (seed ``split_seed(0, split)``).

    The test split holds only the ``t_in`` frames the rollouts start from.
    """
    from grepsnet_sciml.datasets import navier_stokes

    paths = []
    for split, n, frames in (("train", cfg.ns_train, cfg.ns_frames),
                             ("test", cfg.ns_test, cfg.t_in)):
        path = os.path.join(folder, f"ns_sym_{split}.zarr")
        if not os.path.exists(path):
            generate_to_store(
                navier_stokes.generate, path, n, seed=split_seed(0, split), chunk_size=8,
                kwargs={"preset": "ns-sym", "resolution": cfg.resolution,
                        "sim_resolution": cfg.resolution, "viscosity": cfg.viscosity,
                        "t_final": float(frames), "record_every": 1.0, "progress": False},
                progress=cfg.progress)
        paths.append(path)
    return paths[0], paths[1]


def _particle_data(cfg: DemoConfig, folder: str) -> tuple[str, str]:
    """Charged-particle train and test stores of the ``clean`` preset (seed 0, keyed by split)."""
    from grepsnet_sciml.datasets import charged_particles

    path = os.path.join(folder, "particles")
    stores = {s: os.path.join(path, f"{s}.zarr") for s in ("train", "test")}
    if not os.path.exists(path):
        generate_splits(charged_particles.generate, path,
                        {"train": cfg.particle_train, "test": cfg.particle_test}, seed=0,
                        kwargs={"preset": "clean", "progress": False}, split_argument=True,
                        progress=cfg.progress)
    return stores["train"], stores["test"]


def _stage(text: str) -> None:
    """Print a stage header (between progress bars, which tqdm keeps below it)."""
    from tqdm.auto import tqdm

    tqdm.write(f"== {text}")


def _fmt(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.3g}"


def _corr(value: float, horizon: int) -> str:
    return f"> {horizon} (never below)" if value == float("inf") else f"{value:g}"


def _parameters(checkpoint: str) -> int:
    """Real parameters of a checkpoint's model (a complex weight counts twice)."""
    core = load_model(checkpoint).model.core
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in core.parameters())


def _train_fresh(cfg, header: str) -> tuple[str, list[dict], float]:
    """Write ``cfg`` to ``<out_dir>.toml`` and train it from scratch; ``(best checkpoint,
    history, seconds)``. ``header`` is the stage header printed first."""
    _stage(header)
    save_config(cfg, cfg.train.out_dir.rstrip(os.sep) + ".toml")
    clock = time.perf_counter()
    _, history = train(cfg, overwrite=True)
    return os.path.join(cfg.train.out_dir, "best.pt"), history, time.perf_counter() - clock


def _with_model(base: dict, name: str, out_dir: str, **model) -> ExperimentConfig:
    values = {section: dict(table) for section, table in base.items()}
    values["model"] = {"name": name, **model}
    values["train"]["out_dir"] = out_dir
    return config_from_dict(values)


def _eq_last(diag, model: str) -> float:
    return float(diag.equivariance_error.sel(model=model).isel(time=-1).max())


def _at(curve, step: int) -> float:
    """``curve`` (one value per rollout step) at 1-based ``step``; NaN past its end."""
    return float(curve[step - 1]) if 1 <= step <= len(curve) else float("nan")


def _announcer(data: str):
    return lambda stage: _stage(f"{stage} on {data}")


def _links(out: str, part: str) -> list[str]:
    """Markdown image links to every PNG in ``out/part``, captioned from ``_CAPTIONS``."""
    lines = []
    for png in sorted(glob.glob(os.path.join(out, part, "*.png"))):
        name = os.path.basename(png)[:-4]
        lines += [f"![{_CAPTIONS.get(name, name)}]({part}/{name}.png)", ""]
    return lines


def _config_links(part: str, runs: dict) -> str:
    return "Configs of the trained models (`grepsnet train CONFIG` reproduces each): " + ", ".join(
        f"[{name}: `{part}/{os.path.basename(r.train.out_dir)}.toml`]"
        f"({part}/{os.path.basename(r.train.out_dir)}.toml)" for name, r in runs.items()) + "."


def _ns_part(cfg: DemoConfig, out: str, lines: list[str]) -> dict:
    _stage(f"generating NS-Sym data ({cfg.ns_train} train + {cfg.ns_test} test trajectories "
           f"at {cfg.resolution}x{cfg.resolution})")
    ns_train, ns_test = _ns_data(cfg, os.path.join(out, "data"))
    modes = min(12, cfg.resolution // 4)
    base = {
        "data": {"train": ns_train, "t_in": cfg.t_in, "valid_rollout_steps": 8},
        "train": {"epochs": cfg.ns_epochs, "batch_size": 16, "lr": 3e-3,
                  "progress": cfg.progress, "device": "cpu"},
    }
    runs = {
        "GRepsFNO": _with_model(base, "grepsfno", os.path.join(out, "ns", "train_grepsfno"),
                                modes=modes, width=cfg.grepsfno_width),
        "FNO": _with_model(base, "fno", os.path.join(out, "ns", "train_fno"), modes=modes,
                           width=24, n_layers=4),
    }
    # a training trajectory of ns_frames frames holds rollouts of ns_frames - t_in steps
    horizon = cfg.ns_frames - cfg.t_in
    ckpts, numbers = {}, {}
    for name, run in runs.items():
        ckpts[name], hist, seconds = _train_fresh(
            run, f"training {name} on NS-Sym ({cfg.ns_train} trajectories, {cfg.ns_epochs} "
            "epochs)")
        numbers[name] = {"train_epochs": len(hist), "train_seconds": seconds,
                         "seconds_per_epoch": sum(r["seconds"] for r in hist) / len(hist),
                         "parameters": _parameters(ckpts[name]),
                         "final_train_loss": hist[-1]["train_loss"],
                         "best_valid_rollout_error": hist[-1]["best"]}
    ev, diag = compare_job(ckpts, ns_test, os.path.join(out, "ns"), cfg.ns_rollout,
                           n_samples=cfg.ns_test, diagnose_steps=cfg.diagnose_steps,
                           diagnose_samples=cfg.ns_test, overwrite=True, horizon=horizon,
                           announce=_announcer("NS-Sym"))
    for name in ckpts:
        rel = ev.rel_l2.sel(model=name).mean("sample").values
        numbers[name].update({
            "evaluated_samples": ev.sizes["sample"], "diagnosed_samples": diag.attrs["n_samples"],
            "training_horizon_steps": horizon,
            "rel_l2_step1": float(rel[0]), "rel_l2_step10": _at(rel, 10),
            "rel_l2_horizon": _at(rel, horizon),
            "rel_l2_diagnose_step": _at(rel, cfg.diagnose_steps),
            "rel_l2_last": float(rel[-1]),
            "rel_l2_rollout": float(ev.rel_l2_rollout.sel(model=name).mean()),
            "correlation_time": float(ev.correlation_time.sel(model=name).min()),
            "spectrum_ratio_worst_last": float(
                ev.spectrum_ratio_worst.sel(model=name).isel(spectrum_time=-1)),
            "energy_in_band_last": float(ev.energy_in_band.sel(model=name).isel(time=-1)),
            "enstrophy_in_band_last": float(
                ev.enstrophy_in_band.sel(model=name).isel(time=-1)),
            "blow_up_time": float(ev.blow_up_time.sel(model=name).min()),
            "equivariance_error_last_step": _eq_last(diag, name),
            "transformed_test_error_last_step": float(
                diag.transformed_error.sel(model=name).isel(time=-1).max()),
        })
    numbers["solver"] = {"equivariance_error_last_step": _eq_last(diag, "solver")}
    names = list(ckpts)
    lines += [
        "## 2D Navier-Stokes, NS-Sym forcing (D4 with shifted reflections)", "",
        f"{cfg.ns_train} trajectories of {cfg.ns_frames} frames at {cfg.resolution}x"
        f"{cfg.resolution} (viscosity {cfg.viscosity}); surrogates: GRepsFNO (exactly "
        f"D4-equivariant, {cfg.grepsfno_width}xR hidden channels, {modes} modes, the "
        f"forcing as an input channel) and "
        f"neuraloperator's FNO (reference, not equivariant, width 24), {cfg.t_in} history "
        f"frames -> next frame, {cfg.ns_epochs} epochs each on the same data. Rollout of "
        f"{cfg.ns_rollout} steps from {cfg.ns_test} test states, against the pseudo-spectral "
        f"solver from the same states (training trajectories span {cfg.ns_frames} time "
        f"units, i.e. rollouts of up to {horizon} steps: the training horizon). Every row "
        f"uses the same {cfg.ns_test} test samples.", "",
        "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
    ]
    rows = [("relative L2, step 1", "rel_l2_step1"),
            (f"relative L2, step {horizon} (training horizon)", "rel_l2_horizon"),
            (f"relative L2, step {cfg.ns_rollout}", "rel_l2_last"),
            ("relative L2 over the whole rollout", "rel_l2_rollout"),
            (f"relative L2, step {cfg.diagnose_steps} (the step of the two rows below)",
             "rel_l2_diagnose_step")]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(_fmt(numbers[n][key]) for n in names) + " |")
    lines += [
        "| correlation time (first time < 0.8, earliest sample) | " + " | ".join(
            _corr(numbers[n]["correlation_time"], cfg.ns_rollout) for n in names) + " |",
        "| worst shell-spectrum ratio model/solver at the last step (shells 1..N/3; 1 is "
        "exact) | " + " | ".join(
            _fmt(numbers[n]["spectrum_ratio_worst_last"]) for n in names) + " |",
        "| samples with energy / enstrophy in the solver's 5-95% band, last step | " +
        " | ".join(f"{numbers[n]['energy_in_band_last']:.0%} / "
                   f"{numbers[n]['enstrophy_in_band_last']:.0%}" for n in names) + " |",
        "| first blow-up (guard) time | " + " | ".join(
            "never" if math.isinf(numbers[n]["blow_up_time"]) else
            f"{numbers[n]['blow_up_time']:.3g}" for n in names) + " |",
        f"| equivariance error at step {cfg.diagnose_steps} (max over the declared "
        "elements) | " + " | ".join(
            f"{numbers[n]['equivariance_error_last_step']:.2e}" for n in names) + " |",
        f"| error on the transformed test set at step {cfg.diagnose_steps} (max) | " +
        " | ".join(_fmt(numbers[n]["transformed_test_error_last_step"]) for n in names) + " |",
        "| parameters | " + " | ".join(str(numbers[n]["parameters"]) for n in names) + " |",
        "| training time (s) | " + " | ".join(
            f"{numbers[n]['train_seconds']:.0f}" for n in names) + " |",
        "| training time per epoch (s) | " + " | ".join(
            f"{numbers[n]['seconds_per_epoch']:.2g}" for n in names) + " |",
        "", f"The solver's own equivariance error at step {cfg.diagnose_steps}: "
        f"{numbers['solver']['equivariance_error_last_step']:.2e}.", "",
        _config_links("ns", runs), "", *_links(out, "ns")]
    return numbers


def _particle_part(cfg: DemoConfig, out: str, lines: list[str]) -> dict:
    _stage(f"generating charged-particle data ({cfg.particle_train} train + "
           f"{cfg.particle_test} test trajectories)")
    p_train, p_test = _particle_data(cfg, os.path.join(out, "data"))
    delta = 10
    # from frame 0, a training trajectory holds rollouts of (frames - 1) // delta steps
    with open_dataset(p_train) as ds:
        horizon = (ds.sizes["time"] - 1) // delta
        softening = float(dataset_config(ds).get("softening") or 0.0)
    base = {
        "data": {"train": p_train, "input_frames": list(range(0, 31, 2)), "delta": delta,
                 "predict_velocity": True, "valid_rollout_steps": 4},
        "train": {"epochs": cfg.particle_epochs, "batch_size": 64, "lr": 2e-3,
                  "loss": "mse", "progress": cfg.progress, "device": "cpu"},
    }
    pdir = os.path.join(out, "particles")
    runs = {
        # bounded distance features and the data's energy kept exactly: stable rollouts
        "GRepsNBody": _with_model(base, "grepsnbody", os.path.join(pdir, "train_grepsnbody"),
                                  hidden=64, n_layers=2, radial="inverse",
                                  conserve_energy=True, energy_softening=softening),
        "EGNN": _with_model(base, "egnn", os.path.join(pdir, "train_egnn"), hidden=64,
                            n_layers=4),
    }
    ckpts, numbers = {}, {}
    for name, run in runs.items():
        ckpts[name], hist, seconds = _train_fresh(
            run, f"training {name} on charged particles ({cfg.particle_train} trajectories, "
            f"{cfg.particle_epochs} epochs)")
        numbers[name] = {"train_epochs": len(hist), "train_seconds": seconds,
                         "seconds_per_epoch": sum(r["seconds"] for r in hist) / len(hist),
                         "parameters": _parameters(ckpts[name]),
                         "final_train_loss": hist[-1]["train_loss"]}
    steps = min(cfg.diagnose_steps, cfg.particle_rollout)
    ev, diag = compare_job(ckpts, p_test, pdir, cfg.particle_rollout,
                           n_samples=cfg.particle_test, diagnose_steps=steps,
                           diagnose_samples=cfg.particle_test, overwrite=True, horizon=horizon,
                           announce=_announcer("charged particles"))
    for name in ckpts:
        mse = ev.position_mse.sel(model=name).mean("sample")
        numbers[name].update({
            "evaluated_samples": ev.sizes["sample"], "diagnosed_samples": diag.attrs["n_samples"],
            "training_horizon_steps": horizon,
            "position_mse_horizon": _at(mse.values, horizon),
            "position_mse_per_step": [float(v) for v in mse],
            "energy_drift_last": float(np.abs(ev.energy_drift.sel(model=name).isel(time=-1))
                                       .mean()),
            "momentum_drift_last": float(ev.momentum_drift.sel(model=name).isel(time=-1)
                                         .mean()),
            "angular_momentum_drift_last": float(
                ev.angular_momentum_drift.sel(model=name).isel(time=-1).mean()),
            "escaped_last": float(ev.escaped.sel(model=name).isel(time=-1)),
            "equivariance_error_per_step": [
                float(v) for v in diag.equivariance_error.sel(model=name).max("element")],
            "transformed_test_error_per_step": [
                float(v) for v in diag.transformed_error.sel(model=name).max("element")],
        })
    numbers["solver"] = {"equivariance_error_per_step": [
        float(v) for v in diag.equivariance_error.sel(model="solver").max("element")]}
    names = list(ckpts)
    lines += [
        "## Charged particles (5 bodies, `clean` preset, E(3) x S_n)", "",
        f"{cfg.particle_train} trajectories; surrogates: GRepsNBody (G-RepsNet, exactly "
        "E(3) x S_n-equivariant, conserving the total momentum and the data's energy by "
        "construction, bounded distance features) and EGNN (Satorras et al. 2021, "
        "equivariant baseline), both "
        "predicting positions and velocities 1 time unit (10 frames) ahead, "
        f"{cfg.particle_epochs} epochs each. Rollout of {cfg.particle_rollout} steps "
        f"({cfg.particle_rollout} time units; the training trajectories span {horizon}: the "
        "training horizon) against the velocity-Verlet solver. Every table uses the same "
        f"{cfg.particle_test} test samples.", "",
        "Position MSE per horizon (mean over samples; the training horizon is marked):", "",
        "| step | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
    ]
    for k in range(cfg.particle_rollout):
        mark = " (training horizon)" if k + 1 == horizon else ""
        lines.append(f"| {k + 1}{mark} | " + " | ".join(
            _fmt(numbers[n]["position_mse_per_step"][k]) for n in names) + " |")
    lines += ["", "Equivariance error and relative L2 error on the transformed test set per "
              "step (max over 8 random E(3) x S_n elements, float64):", "",
              "| step | " + " | ".join(f"{n} equivariance" for n in names + ["solver"]) + " | "
              + " | ".join(f"{n} transformed test" for n in names) + " |",
              "|---|" + "---|" * (2 * len(names) + 1)]
    for k in range(steps):
        lines.append(f"| {k + 1} | " + " | ".join(
            f"{numbers[n]['equivariance_error_per_step'][k]:.2e}"
            for n in names + ["solver"]) + " | " + " | ".join(
            _fmt(numbers[n]["transformed_test_error_per_step"][k]) for n in names) + " |")
    lines += [
        "", "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
        "| abs. relative energy drift, last step | " + " | ".join(
            _fmt(numbers[n]["energy_drift_last"]) for n in names) + " |",
        "| momentum drift, last step | " + " | ".join(
            _fmt(numbers[n]["momentum_drift_last"]) for n in names) + " |",
        "| angular momentum drift, last step | " + " | ".join(
            _fmt(numbers[n]["angular_momentum_drift_last"]) for n in names) + " |",
        f"| escaped (a particle farther than {ev.escaped.attrs['escape_radius']:g} from the "
        "origin), last step | "
        + " | ".join(f"{numbers[n]['escaped_last']:.0%}" for n in names) + " |",
        "| parameters | " + " | ".join(str(numbers[n]["parameters"]) for n in names) + " |",
        "| training time (s) | " + " | ".join(
            f"{numbers[n]['train_seconds']:.0f}" for n in names) + " |",
        "| training time per epoch (s) | " + " | ".join(
            f"{numbers[n]['seconds_per_epoch']:.2g}" for n in names) + " |",
        "", _config_links("particles", runs), "", *_links(out, "particles")]
    return numbers


def summary_table(summary: dict) -> list[str]:
    """The demo's key numbers as fixed-width text lines, one row per model.

    Columns: the test error of one step, the rollout error at the training horizon and at
    the last step (relative L2 for NS-Sym, position MSE for particles), the equivariance
    error at the last diagnosed step, the real parameters and the training seconds per
    epoch.
    """
    head = (f"{'data':<10} {'model':<11} {'metric':<12} {'step 1':>9} {'horizon':>15} "
            f"{'last step':>15} {'equivariance':>12} {'params':>8} {'s/epoch':>7}")
    lines = [head, "-" * len(head)]
    parts = (("NS-Sym", "navier_stokes", "rel. L2", "rel_l2_step1", "rel_l2_horizon",
              "rel_l2_last"),
             ("particles", "particles", "position MSE", None, "position_mse_horizon", None))
    for data, key, metric, first, at_horizon, last in parts:
        numbers = summary[key]
        n_steps = summary["config"]["ns_rollout" if key == "navier_stokes" else
                                    "particle_rollout"]
        for model, row in numbers.items():
            if model == "solver":
                continue
            per_step = row.get("position_mse_per_step")
            one = row[first] if first else per_step[0]
            end = row[last] if last else per_step[-1]
            equiv = row.get("equivariance_error_last_step")
            if equiv is None:
                equiv = row["equivariance_error_per_step"][-1]
            horizon = row["training_horizon_steps"]
            lines.append(
                f"{data:<10} {model:<11} {metric:<12} {_fmt(one):>9} "
                f"{_fmt(row[at_horizon]) + f' (step {horizon})':>15} "
                f"{_fmt(end) + f' (step {n_steps})':>15} {equiv:>12.2e} "
                f"{row['parameters']:>8} {row['seconds_per_epoch']:>7.2g}")
    return lines


def run_demo(cfg: DemoConfig | None = None) -> str:
    """Run the demo; print the stages and a closing summary table; return ``report.md``."""
    cfg = cfg or DemoConfig()
    out = cfg.out_dir
    os.makedirs(os.path.join(out, "data"), exist_ok=True)
    clock = time.perf_counter()
    lines = ["# grepsnet demo", ""]
    summary = {"config": dataclasses.asdict(cfg)}
    summary["navier_stokes"] = _ns_part(cfg, out, lines)
    summary["particles"] = _particle_part(cfg, out, lines)
    summary["seconds"] = time.perf_counter() - clock
    _stage("writing the report")
    table = summary_table(summary)
    lines += ["## Summary", "", "```", *table, "```", "",
              f"Total time: {summary['seconds']:.0f} s. Numbers: `summary.json`.", ""]
    report = os.path.join(out, "report.md")
    atomic_write_text(report, "\n".join(lines))
    write_json(summary, os.path.join(out, "summary.json"))
    print("\n".join(["", *table, "", f"total time {summary['seconds']:.0f} s"]), flush=True)
    return report
