"""The end-to-end demo behind ``grepsnet demo``: data, training, far rollout, evaluation,
symmetry diagnostics and a report, for Navier-Stokes (NS-Sym) and charged particles.

Sizes (:class:`DemoConfig`) are chosen to finish in a few minutes on 2 CPU cores. Data
already generated in ``out_dir/data`` is reused; training always starts fresh.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass

import numpy as np

from .config import config_from_dict
from .experiment import train
from .pipeline import JobConfig, diagnose_job, evaluate_job
from .plots import write_json

__all__ = ["DemoConfig", "run_demo"]


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
    ns_rollout : int
        Rollout steps against the solver (past the ``ns_frames`` training horizon).
    particle_train, particle_test : int
        Charged-particle trajectories (``clean`` preset, 5 particles).
    particle_epochs : int
    particle_rollout : int
        Model steps of 1 time unit (the data spans 5).
    diagnose_steps : int
        Steps of the symmetry diagnostics.
    progress : bool
    """

    out_dir: str = "runs/demo"
    resolution: int = 32
    viscosity: float = 1e-3
    ns_train: int = 24
    ns_test: int = 4
    ns_frames: int = 20
    t_in: int = 4
    ns_epochs: int = 25
    ns_rollout: int = 40
    particle_train: int = 160
    particle_test: int = 4
    particle_epochs: int = 25
    particle_rollout: int = 10
    diagnose_steps: int = 10
    progress: bool = True


def _write_store(ds, path: str) -> None:
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    # zarr v3 has no fixed-width string type: store string coordinates variable-length
    fixed = [name for name, var in ds.variables.items() if var.dtype.kind == "U"]
    ds = ds.assign_coords({name: ds[name].astype(object) for name in fixed})
    ds.to_zarr(tmp, consolidated=False)
    os.replace(tmp, path)


def _ns_data(cfg: DemoConfig, folder: str) -> tuple[str, str]:
    from grepsnet_sciml.datasets import navier_stokes

    paths = []
    for split, n, seed, frames in (("train", cfg.ns_train, 0, cfg.ns_frames),
                                   ("test", cfg.ns_test, 1, cfg.t_in)):
        path = os.path.join(folder, f"ns_sym_{split}.zarr")
        if not os.path.exists(path):
            ds = navier_stokes.generate(
                n, "ns-sym", resolution=cfg.resolution, sim_resolution=cfg.resolution,
                viscosity=cfg.viscosity, t_final=float(frames), record_every=1.0, seed=seed,
                progress=cfg.progress)
            _write_store(ds, path)
        paths.append(path)
    return paths[0], paths[1]


def _particle_data(cfg: DemoConfig, folder: str) -> tuple[str, str]:
    from grepsnet_sciml.datasets import charged_particles

    paths = []
    for split, n in (("train", cfg.particle_train), ("test", cfg.particle_test)):
        path = os.path.join(folder, f"particles_{split}.zarr")
        if not os.path.exists(path):
            ds = charged_particles.generate(n, preset="clean", seed=0, split=split,
                                            progress=cfg.progress)
            _write_store(ds, path)
        paths.append(path)
    return paths[0], paths[1]


def _fmt(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.3g}"


def _corr(value: float, horizon: int) -> str:
    return f"> {horizon} (never below)" if value == float("inf") else f"{value:g}"


def run_demo(cfg: DemoConfig | None = None) -> str:
    """Run the demo; returns the path of ``report.md``."""
    cfg = cfg or DemoConfig()
    out = cfg.out_dir
    data_dir = os.path.join(out, "data")
    os.makedirs(data_dir, exist_ok=True)
    clock = time.perf_counter()
    lines = ["# grepsnet demo", ""]
    summary = {"config": dataclasses.asdict(cfg)}

    # ----- Navier-Stokes (NS-Sym) ---------------------------------------------------------
    ns_train, ns_test = _ns_data(cfg, data_dir)
    ns_cfg = config_from_dict({
        "data": {"train": ns_train, "t_in": cfg.t_in, "valid_rollout_steps": 8},
        "model": {"name": "fno", "modes": min(12, cfg.resolution // 4), "width": 24,
                  "n_layers": 4},
        "train": {"out_dir": os.path.join(out, "ns", "train"), "epochs": cfg.ns_epochs,
                  "batch_size": 16, "lr": 3e-3, "progress": cfg.progress, "device": "cpu"},
    })
    if os.path.exists(ns_cfg.train.out_dir):
        shutil.rmtree(ns_cfg.train.out_dir)
    _, ns_hist = train(ns_cfg)
    ckpt = os.path.join(ns_cfg.train.out_dir, "best.pt")
    ev = evaluate_job(JobConfig(checkpoint=ckpt, data=ns_test, out_dir=os.path.join(out, "ns"),
                                n_steps=cfg.ns_rollout, n_samples=cfg.ns_test), "FNO")
    diag = diagnose_job(JobConfig(checkpoint=ckpt, data=ns_test,
                                  out_dir=os.path.join(out, "ns"), n_steps=cfg.diagnose_steps,
                                  n_samples=2), "FNO")
    rel = ev.rel_l2.sel(model="FNO").mean("sample")
    ns_numbers = {
        "train_epochs": len(ns_hist), "final_train_loss": ns_hist[-1]["train_loss"],
        "best_valid_rollout_error": ns_hist[-1]["best"],
        "rel_l2_step1": float(rel[0]), "rel_l2_step10": float(rel[min(9, len(rel) - 1)]),
        "rel_l2_last": float(rel[-1]),
        "rel_l2_rollout": float(ev.rel_l2_rollout.mean()),
        "correlation_time": float(ev.correlation_time.min()),
        "equivariance_error_last_step": {
            str(m): float(diag.equivariance_error.sel(model=m).isel(time=-1).max())
            for m in diag.model.values},
        "transformed_test_error_last_step": {
            str(m): float(diag.transformed_error.sel(model=m).isel(time=-1).max())
            for m in diag.model.values},
    }
    summary["navier_stokes"] = ns_numbers
    lines += [
        "## 2D Navier-Stokes, NS-Sym forcing (D4 with shifted reflections)", "",
        f"{cfg.ns_train} trajectories of {cfg.ns_frames} frames at {cfg.resolution}x"
        f"{cfg.resolution} (viscosity {cfg.viscosity}); surrogate: neuraloperator FNO "
        f"(reference, not equivariant), {cfg.t_in} history frames -> next frame, "
        f"{len(ns_hist)} epochs. Rollout of {cfg.ns_rollout} steps from "
        f"{cfg.ns_test} test states, against the pseudo-spectral solver from the same states "
        f"(training trajectories span {cfg.ns_frames} time units).", "",
        "| metric | value |", "|---|---|",
        f"| relative L2, step 1 | {_fmt(ns_numbers['rel_l2_step1'])} |",
        f"| relative L2, step 10 | {_fmt(ns_numbers['rel_l2_step10'])} |",
        f"| relative L2, step {cfg.ns_rollout} | {_fmt(ns_numbers['rel_l2_last'])} |",
        f"| relative L2 over the whole rollout | {_fmt(ns_numbers['rel_l2_rollout'])} |",
        f"| correlation time (first time < 0.8, earliest sample) | "
        f"{_corr(ns_numbers['correlation_time'], cfg.ns_rollout)} |",
    ]
    for m, v in ns_numbers["equivariance_error_last_step"].items():
        lines.append(f"| equivariance error of {m} at step {cfg.diagnose_steps} (max over "
                     f"elements) | {v:.2e} |")
    lines += ["", "![error vs time](ns/error_vs_time.png)", "",
              "![equivariance error](ns/equivariance_error.png)", "",
              "![transformed test error](ns/transformed_test_error.png)", "",
              "![snapshots](ns/snapshots.png)", "", "![spectra](ns/spectra.png)", ""]

    # ----- charged particles ---------------------------------------------------------------
    p_train, p_test = _particle_data(cfg, data_dir)
    p_cfg = config_from_dict({
        "data": {"train": p_train, "input_frames": list(range(0, 31, 2)), "delta": 10,
                 "predict_velocity": True, "valid_rollout_steps": 4},
        "model": {"name": "mpnn", "hidden": 64, "n_layers": 3},
        "train": {"out_dir": os.path.join(out, "particles", "train"),
                  "epochs": cfg.particle_epochs, "batch_size": 64, "lr": 2e-3,
                  "loss": "mse", "progress": cfg.progress, "device": "cpu"},
    })
    if os.path.exists(p_cfg.train.out_dir):
        shutil.rmtree(p_cfg.train.out_dir)
    _, p_hist = train(p_cfg)
    ckpt = os.path.join(p_cfg.train.out_dir, "best.pt")
    pdir = os.path.join(out, "particles")
    evp = evaluate_job(JobConfig(checkpoint=ckpt, data=p_test, out_dir=pdir,
                                 n_steps=cfg.particle_rollout, n_samples=cfg.particle_test),
                       "MPNN")
    diagp = diagnose_job(JobConfig(checkpoint=ckpt, data=p_test, out_dir=pdir,
                                   n_steps=min(cfg.diagnose_steps, cfg.particle_rollout),
                                   n_samples=2), "MPNN")
    mse = evp.position_mse.sel(model="MPNN").mean("sample")
    p_numbers = {
        "train_epochs": len(p_hist), "final_train_loss": p_hist[-1]["train_loss"],
        "position_mse_step1": float(mse[0]), "position_mse_last": float(mse[-1]),
        "energy_drift_last": float(np.abs(evp.energy_drift.isel(time=-1)).mean()),
        "momentum_drift_last": float(evp.momentum_drift.isel(time=-1).mean()),
        "equivariance_error_last_step": {
            str(m): float(diagp.equivariance_error.sel(model=m).isel(time=-1).max())
            for m in diagp.model.values},
    }
    summary["particles"] = p_numbers
    lines += [
        "## Charged particles (5 bodies, `clean` preset, E(3) x S_n)", "",
        f"{cfg.particle_train} trajectories; surrogate: plain message-passing network "
        f"(reference, permutation- but not rotation-equivariant) predicting positions and "
        f"velocities 1 time unit (10 frames) ahead, {len(p_hist)} epochs. Rollout of "
        f"{cfg.particle_rollout} steps ({cfg.particle_rollout} time units; the data spans 5) "
        "against the velocity-Verlet solver.", "",
        "| metric | value |", "|---|---|",
        f"| position MSE, step 1 | {_fmt(p_numbers['position_mse_step1'])} |",
        f"| position MSE, step {cfg.particle_rollout} | {_fmt(p_numbers['position_mse_last'])} |",
        f"| abs. relative energy drift, last step | {_fmt(p_numbers['energy_drift_last'])} |",
        f"| momentum drift, last step | {_fmt(p_numbers['momentum_drift_last'])} |",
    ]
    for m, v in p_numbers["equivariance_error_last_step"].items():
        lines.append(f"| equivariance error of {m} (max over 8 random E(3) x S_n elements) "
                     f"| {v:.2e} |")
    lines += ["", "![error vs time](particles/error_vs_time.png)", "",
              "![energy drift](particles/energy_drift.png)", "",
              "![trajectories](particles/trajectories.png)", "",
              "![equivariance error](particles/equivariance_error.png)", ""]
    summary["seconds"] = time.perf_counter() - clock
    lines += [f"Total time: {summary['seconds']:.0f} s. Numbers: `summary.json`.", ""]
    report = os.path.join(out, "report.md")
    tmp = report + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, report)
    write_json(summary, os.path.join(out, "summary.json"))
    return report
