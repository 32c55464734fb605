"""Charged N-body benchmark: GRepsNBody against EGNN on EGNN's charged 5-body task.

Usage (``benchmarks/nbody.py`` takes the same options)::

    grepsnet bench nbody --protocol quick [--budget 900] [--seeds 0] [--threads 2]
    grepsnet bench nbody --protocol paper            # 10000 epochs, 3 seeds, GPU
    grepsnet bench nbody --protocol smoke            # minutes, end-to-end check
    grepsnet bench nbody --data DIR --epochs 1000 --eval-every 5   # the user's .npy files

This module holds only the protocol: its settings, the model list and the summary table.
Everything else is the solvers pipeline: data are generated with
:func:`grepsnet_sciml.datasets.splits.generate_splits` into zarr split directories under
``--cache`` (resumable; found again on the next run) or read from the user's EGNN ``.npy``
files (:func:`grepsnet_sciml.datasets.charged_particles.load_egnn_npy`); pairs come from
:class:`~grepsnet_sciml.solvers.data.ParticlePairs`, training is
:class:`~grepsnet_sciml.solvers.trainer.Trainer`, predictions are
:func:`~grepsnet_sciml.solvers.rollout.rollout` and errors
:func:`~grepsnet_sciml.solvers.evaluate.evaluate`.

Data: the ``egnn`` preset of :mod:`grepsnet_sciml.datasets.charged_particles` (seed 43, the
stream ordered train 10000 / valid 2000 / test 2000; the first 3000 training trajectories
are used), input frame 30, target frame 40 (1000 steps later). With ``data`` (``--data
DIR``) the first ``n_train`` / ``n_valid`` / ``n_test`` trajectories of the EGNN files
``{loc,vel,charges[,edges]}_{train,valid,test}_<suffix>.npy`` in ``DIR`` are used instead
(the EGNN repository's ``charged5_initvel1small`` files hold 10000 / 2000 / 2000); the
results record the folder and the sha256 of every file read. Training: Adam (lr 5e-4,
weight decay 1e-12), batch 100, MSE on absolute positions, constant learning rate, global
gradient norm clipped at ``grad_clip`` (1.0; without it GRepsNBody's loss overflowed to NaN
after about 340 epochs in a 15-minute run); the validation MSE is computed every
``eval_every`` epochs (and after the last one) and the test MSE reported at the
best-validation epoch, as in EGNN's ``main_nbody.py`` (``--test_interval``).

Protocols
---------
``quick``
    Each model trains for the same wall-clock budget (the trainer's ``time_budget_s``:
    training and validation; 15 minutes by default, on ``--threads`` torch threads),
    validating every epoch. The "equal epochs" column is the best-validation test MSE
    within the first ``E`` epochs of each run, ``E`` the fewest epochs any model completed
    (the learning rate is constant, so this equals training for ``E`` epochs).
``paper``
    EGNN's protocol: 10000 epochs, validation every 5, 3 seeds, no time limit (sized for one
    GPU).
``smoke``
    200 / 200 / 200 trajectories and a short budget: checks the pipeline end to end; its
    numbers are not comparable with the others.

``max_epochs`` (``--epochs``) and ``eval_every`` (``--eval-every``) apply to every
protocol; ``--epochs`` without ``--budget`` trains exactly that many epochs (no budget).

Also reported per model: parameters, forward time per batch of 100 (median, no gradient,
the models timed alternately), training time per epoch, the equivariance error on test
inputs (random O(3) elements, translations, permutations; float32 and float64), and the
trivial predictors ``x_0`` (no motion) and ``x_0 + T v_0``. Long horizon: models with a
velocity head (``velocity_output=True``, loss ``MSE(x) + MSE(v)``, ``rollout_budget_s``,
7.5 minutes in ``quick``) are trained on each of ``rollout_presets`` (``egnn``: the one-step
task's data, the user's with ``data``; ``clean``: the same system with a softened,
unclipped, energy-conserving force, generated) and rolled out 2, 5 and 10 times from frame
30 of a separate generated split of that physics simulated for 15000 steps with its own
seed; reported are the position MSE against the simulator per horizon and the mean
absolute energy error ``|E_model - E_sim|`` over the trajectories the rollout's blow-up
guard kept (and the simulator's own drift from the start: the force clipping of the
``egnn`` physics does not conserve energy).

:func:`merge` joins runs made with the same settings and data for different models (e.g.
one process per model, each pinned to one core, to run both side by side) and times their
forward passes together::

    grepsnet bench nbody --protocol quick --models GRepsNBody --threads 1 --out runs/a &
    grepsnet bench nbody --protocol quick --models EGNN --threads 1 --out runs/b
    grepsnet bench nbody --merge runs/a/nbody_quick.json runs/b/nbody_quick.json

Writes ``benchmarks/results/nbody_{protocol}.json`` (all numbers, settings and the data
used; ``summary``: one row per model with ``test_error``, the mean test MSE), ``.md`` (the
table) and ``.png`` (validation curves and rollout error per horizon) under the working
directory unless ``out_dir`` says otherwise. Checkpoints live in a temporary folder for the
duration of each training.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from grepsnet_sciml._atomic import atomic_path, atomic_write_text
from grepsnet_sciml.datasets.charged_particles import generate, load_egnn_npy
from grepsnet_sciml.datasets.splits import SPLITS, generate_splits, open_splits
from grepsnet_sciml.models.egnn import EGNN
from grepsnet_sciml.models.nbody import GRepsNBody
from grepsnet_sciml.solvers.data import ParticlePairs
from grepsnet_sciml.solvers.evaluate import evaluate
from grepsnet_sciml.solvers.rollout import rollout
from grepsnet_sciml.solvers.trainer import (
    TrainConfig,
    Trainer,
    TrainingDiverged,
    load_checkpoint,
)
from grepsnet_sciml.solvers.unroll import ParticleLoss
from grepsnet_sciml.testing import equivariance_errors

from ._results import read_results

RESULTS = Path("benchmarks") / "results"
"""Default output folder (relative to the working directory: the repository root)."""
CACHE = Path("runs") / "nbody_data"
"""Default data cache (relative to the working directory)."""
MODELS = {"GRepsNBody": GRepsNBody, "EGNN": EGNN}
HORIZON = 1.0  # time between input and target frames: 1000 steps of dt = 1e-3
NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class Protocol:
    """Settings of one benchmark protocol (all stored in the JSON)."""

    n_train: int = 3000
    n_valid: int = 2000
    n_test: int = 2000
    budget_s: float | None = 900.0
    max_epochs: int = 10000
    eval_every: int = 1
    seeds: tuple[int, ...] = (0,)
    lr: float = 5e-4
    weight_decay: float = 1e-12
    batch_size: int = 100
    input_frame: int = 30
    target_frame: int = 40
    data_seed: int = 43
    stream_train: int = 10000
    stream_valid: int = 2000
    long_seed: int = 4343
    n_long: int = 500
    long_steps: int = 15000
    horizons: tuple[int, ...] = (1, 2, 5, 10)
    rollout: bool = True
    rollout_presets: tuple[str, ...] = ("egnn", "clean")
    rollout_budget_s: float | None = 450.0
    rollout_max_epochs: int = 10000
    threads: int = 2
    grad_clip: float | None = 1.0
    device: str = "cpu"
    models: tuple[str, ...] = ("GRepsNBody", "EGNN")


PROTOCOLS = {
    "quick": Protocol(),
    "paper": Protocol(
        budget_s=None, eval_every=5, seeds=(0, 1, 2), rollout_budget_s=None,
        rollout_max_epochs=2000, device="auto",
    ),
    "smoke": Protocol(
        n_train=200, n_valid=200, n_test=200, budget_s=90.0, n_long=50,
        rollout_budget_s=30.0, threads=1,
    ),
}


# --------------------------------------------------------------------------- data
def _splits_dir(cache: Path, name: str, samples: dict, seed: int, kwargs: dict) -> Path:
    """Generate (or resume, or find) a split directory of ``generate`` under ``cache``."""
    path = cache / name
    if not path.exists():
        generate_splits(generate, path, samples, seed=seed, kwargs={**kwargs, "progress": False},
                        split_argument=True, chunk_size=500, progress=False)
    return path


def generated_task(p: Protocol, cache: Path, preset: str = "egnn"
                   ) -> tuple[dict[str, xr.Dataset], Path]:
    """The three splits of the one-step task, generated into ``cache`` on first use.

    Split ``s`` holds samples ``0 .. n_s - 1`` of that split of the stream of ``preset``
    (``"egnn"``: the benchmark's physics; ``"clean"``: the same system with a softened,
    unclipped force; both store a frame every 100 steps).

    Returns
    -------
    (splits, path)
        ``{"train", "valid", "test"}`` -> lazily opened zarr dataset; their directory.
    """
    name = (f"{preset}_seed{p.data_seed}_train{p.n_train}_valid{p.n_valid}_test{p.n_test}"
            f"_of{p.stream_train}-{p.stream_valid}")
    path = _splits_dir(cache, name, {"train": p.n_train, "valid": p.n_valid,
                                     "test": p.n_test}, p.data_seed,
                       {"preset": preset, "n_train": p.stream_train, "n_valid": p.stream_valid})
    return open_splits(path), path


def long_split(p: Protocol, cache: Path, preset: str = "egnn") -> xr.Dataset:
    """The long-horizon split (``long_steps`` steps, seed ``long_seed``), generated on first use.

    Raises
    ------
    ValueError
        ``long_steps`` stores too few frames for ``horizons``.
    """
    path = _splits_dir(cache, f"{preset}_long_seed{p.long_seed}_n{p.n_long}_steps{p.long_steps}",
                       {"test": p.n_long}, p.long_seed,
                       {"preset": preset, "n_steps": p.long_steps, "n_train": 0, "n_valid": 0})
    ds = open_splits(path)["test"]
    last = p.input_frame + 10 * max(p.horizons)
    if ds.sizes["time"] <= last:
        raise ValueError(f"long_steps: {p.long_steps} steps store {ds.sizes['time']} frames; "
                         f"the horizons {p.horizons} need frame {last}")
    return ds


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_egnn_folder(path, p: Protocol) -> tuple[dict[str, xr.Dataset], dict]:
    """The user's EGNN ``.npy`` files as the three splits, and a record of what was read.

    Parameters
    ----------
    path : path-like
        Folder holding ``{loc,vel,charges}_{split}_<suffix>.npy`` (and optionally
        ``edges_..``) for the splits train, valid and test, one ``suffix`` for all.
    p : Protocol
        ``n_train``, ``n_valid``, ``n_test`` trajectories are used (the first of each file).

    Returns
    -------
    (splits, record)
        ``{"train", "valid", "test"}`` -> dataset (as :func:`load_egnn_npy` returns it);
        ``{"path", "suffix", "sha256": {file name: digest}, "samples": {split: n}}``.

    Raises
    ------
    FileNotFoundError
        No folder at ``path``.
    ValueError
        No, several or incomplete sets of files; a file that is not a ``.npy`` array or not
        EGNN's layout; fewer trajectories than the protocol uses. The message names the file.
    """
    folder = Path(path)
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"data: {str(folder)!r} {what}; expected a folder of EGNN .npy "
                                "files (loc_train_<suffix>.npy, vel_..., charges_...)")
    suffixes = sorted(f.name[len("loc_train_"):-len(".npy")]
                      for f in folder.glob("loc_train_*.npy"))
    if len(suffixes) != 1:
        found = f"several suffixes {suffixes}" if suffixes else "no loc_train_<suffix>.npy"
        raise ValueError(f"data: {str(folder)!r} holds {found}; expected the EGNN files of one "
                         "data set: {loc,vel,charges}_{train,valid,test}_<suffix>.npy")
    suffix = suffixes[0]
    files = [folder / f"{name}_{split}_{suffix}.npy" for split in SPLITS
             for name in ("loc", "vel", "charges", "edges")]
    missing = [f.name for f in files if not f.is_file() and not f.name.startswith("edges_")]
    if missing:
        raise ValueError(f"data: {str(folder)!r} lacks {', '.join(missing)}; expected loc, vel "
                         f"and charges files for train, valid and test (suffix {suffix!r})")
    files = [f for f in files if f.is_file()]
    for f in files:
        with open(f, "rb") as handle:
            if handle.read(len(NPY_MAGIC)) != NPY_MAGIC:
                raise ValueError(f"data: {f} is not a .npy array file (no NumPy header); "
                                 "expected an EGNN file written by numpy.save")
    sizes = {"train": p.n_train, "valid": p.n_valid, "test": p.n_test}
    splits = {}
    for split in SPLITS:
        try:
            ds = load_egnn_npy(folder, split, suffix)
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(f"data: the {split} files in {str(folder)!r} (suffix {suffix!r}) "
                             f"are not EGNN charged-particle arrays: {err}") from err
        have, need = ds.sizes["sample"], sizes[split]
        if have < need:
            raise ValueError(f"data: {folder / f'loc_{split}_{suffix}.npy'} holds {have} "
                             f"trajectories; the protocol uses n_{split}={need} (pass smaller "
                             "sizes, e.g. --n-train)")
        if ds.sizes["time"] <= p.target_frame:
            raise ValueError(f"data: {folder / f'loc_{split}_{suffix}.npy'} holds "
                             f"{ds.sizes['time']} frames; the task reads frame {p.target_frame}")
        ds.attrs["_source"] = str(folder / f"loc_{split}_{suffix}.npy")
        splits[split] = ds
    record = {"path": str(folder.resolve()), "suffix": suffix,
              "sha256": {f.name: _sha256(f) for f in files}, "samples": sizes}
    return splits, record


def _pairs(splits: dict, p: Protocol, velocity: bool = False,
           train_steps: int = 1) -> dict[str, ParticlePairs]:
    """One-step pairs of each split; the training pairs ``train_steps`` strides deep.

    Unrolled training pairs start at ``input_frame``, or as late as the trajectories allow
    (the ``egnn`` preset stores 49 frames, so two strides of 10 start at frame 28).
    """
    sizes = {"train": p.n_train, "valid": p.n_valid, "test": p.n_test}
    delta = p.target_frame - p.input_frame

    def first(ds, s):
        if s != "train" or train_steps == 1:
            return p.input_frame
        return min(p.input_frame, ds.sizes["time"] - 1 - train_steps * delta)

    return {s: ParticlePairs(ds, first(ds, s), delta, samples=slice(0, sizes[s]),
                             predict_velocity=velocity, steps=train_steps if s == "train" else 1)
            for s, ds in splits.items()}


def _inputs(pairs: ParticlePairs, n: int | None = None):
    """``(positions, velocities, charges)`` at the input frame of the first ``n`` samples."""
    f = pairs.frames[0]
    return (pairs.position[:n, f], pairs.velocity[:n, f], pairs.charge[:n])


# --------------------------------------------------------------------------- training
def one_step_mse(model, pairs: ParticlePairs) -> float:
    """Position MSE (per coordinate) of one model step over a split: rollout, then evaluate.

    A sample the rollout's blow-up guard stops makes the result NaN.
    """
    x0, v0, q = _inputs(pairs)
    f = pairs.frames[0] + pairs.delta
    result = rollout(model, (x0, v0, q), 1, step_time=HORIZON)
    ev = evaluate({"model": result.states}, (pairs.position[:, f:f + 1],
                                             pairs.velocity[:, f:f + 1]),
                  "particles", charges=q, initial=(x0, v0))
    return float(ev.position_mse.mean())


def train(model, pairs: dict[str, ParticlePairs], p: Protocol, *, seed: int, budget_s,
          max_epochs: int, loss_step=None) -> tuple[list[dict], bool]:
    """Train ``model`` with :class:`Trainer` (Adam, constant lr) on ``pairs["train"]``.

    ``loss_step``: the Trainer's (e.g. :class:`~grepsnet_sciml.solvers.unroll.ParticleLoss`
    over training pairs that many strides deep); default one-step MSE.

    The validation MSE is computed every ``p.eval_every`` epochs (and after the last); at
    each improvement the test MSE too. A non-finite training loss ends the run.

    Returns
    -------
    (history, diverged)
        Per epoch: ``epoch``, ``train_loss``, ``valid`` and ``test`` (None when not
        computed), ``seconds`` (the trainer's cumulative ``elapsed``) and
        ``epoch_seconds`` (training steps of the epoch). The model is left with its
        best-validation weights.
    """
    scores, best = {}, [math.inf]

    def valid_fn(m) -> float:
        val = one_step_mse(m, pairs["valid"])
        test = None
        if val < best[0]:
            best[0] = val
            test = one_step_mse(m, pairs["test"])
        scores[trainer.epoch] = (val, test)
        return val

    with tempfile.TemporaryDirectory(prefix="nbody-run-") as run_dir:
        config = TrainConfig(
            out_dir=run_dir, epochs=max_epochs, batch_size=p.batch_size, lr=p.lr,
            weight_decay=p.weight_decay, optimizer="adam", loss="mse", seed=seed,
            grad_clip=p.grad_clip or 0.0, progress=False, device=p.device,
            schedule="constant", time_budget_s=budget_s or 0.0, valid_every=p.eval_every)
        trainer = Trainer(model, pairs["train"], config, valid_fn=valid_fn, loss_step=loss_step)
        diverged = False
        try:
            trainer.fit()
        except TrainingDiverged:
            diverged = True
        rows = [json.loads(line) for line in Path(trainer.metrics_path).read_text().splitlines()
                ] if Path(trainer.metrics_path).exists() else []
        if Path(trainer.best_path).exists():
            model.load_state_dict(load_checkpoint(trainer.best_path)["model"])
    history = [{"epoch": r["epoch"], "train_loss": r["train_loss"],
                "valid": scores.get(r["epoch"], (None, None))[0],
                "test": scores.get(r["epoch"], (None, None))[1],
                "seconds": r["elapsed"], "epoch_seconds": r["seconds"]} for r in rows]
    return history, diverged


def best_test(history, max_epoch: int | None = None) -> dict:
    """Test MSE at the best-validation epoch among validated epochs ``<= max_epoch``."""
    rows = [r for r in history if r["valid"] is not None and math.isfinite(r["valid"])
            and (max_epoch is None or r["epoch"] <= max_epoch)]
    if not rows:
        return {"epoch": None, "valid": None, "test": None}
    row = min(rows, key=lambda r: r["valid"])
    return {"epoch": row["epoch"], "valid": row["valid"], "test": row["test"]}


# --------------------------------------------------------------------------- measurements
@torch.no_grad()
def forward_times(models: dict, inputs, repeats: int = 30) -> dict:
    """Median seconds per forward pass of ``inputs`` (a batch), models timed alternately."""
    times = {name: [] for name in models}
    for m in models.values():
        m.eval()
        for _ in range(3):
            m(*inputs)
    for _ in range(repeats):
        for name, m in models.items():
            if inputs[0].device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            m(*inputs)
            if inputs[0].device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    return {name: float(np.median(t)) for name, t in times.items()}


def equivariance(model, pairs: ParticlePairs) -> dict:
    """Max relative equivariance error on 10 test systems, float32 and float64."""
    inputs = _inputs(pairs, 10)
    gen = torch.Generator().manual_seed(0)
    model = copy.deepcopy(model).cpu()
    return {
        str(dt).removeprefix("torch."): equivariance_errors(
            model, tuple(t.to(dt) for t in inputs), dtype=dt, n_samples=8, generator=gen
        ).max_error
        for dt in (torch.float32, torch.float64)
    }


def trivial_predictors(pairs: ParticlePairs) -> dict:
    """Test MSE of ``x_0`` (no motion) and ``x_0 + T v_0``."""
    x0, v0, _ = _inputs(pairs)
    xt = pairs.position[:, pairs.frames[0] + pairs.delta]
    return {
        "no motion": float(((x0 - xt) ** 2).mean()),
        "x + T v": float(((x0 + HORIZON * v0 - xt) ** 2).mean()),
    }


_DRIFTS = {"energy_drift": "relative_energy_drift_median", "momentum_drift": "momentum_drift",
           "angular_momentum_drift": "angular_momentum_drift"}
"""Drifts of :func:`~grepsnet_sciml.solvers.evaluate.evaluate_particles` -> row keys."""


def softening_of(ds: xr.Dataset) -> float:
    """The softening length of a generated split's Coulomb force (0 for the ``egnn`` preset)."""
    return float(json.loads(ds.attrs["config"])["softening"] or 0.0)


def long_rollout(model, long: xr.Dataset, p: Protocol) -> dict:
    """Apply the 1000-step (x, v) predictor ``m`` times from frame ``input_frame``.

    Per horizon in ``p.horizons``: position MSE and mean ``|E_model - E_sim|`` over the
    trajectories the blow-up guard of :func:`rollout` kept, the share it stopped, and the
    simulator's drift ``|E_sim(t) - E_sim(0)|``; energies with the split's potential. Also
    the share of trajectories with a particle escaped past ``|x| = 1000`` (or stopped), the
    median relative energy drift ``|E_t - E_0| / |E_0|``, and the mean momentum and angular
    momentum drifts ``||P_t - P_0||``, ``||L_t - L_0||`` over the kept trajectories, each
    beside the simulator's own (``sim_*``).
    """
    softening = softening_of(long)
    frames = [p.input_frame + 10 * m for m in range(max(p.horizons) + 1)]
    x = torch.as_tensor(long.position.values[:, frames], dtype=torch.float32)
    v = torch.as_tensor(long.velocity.values[:, frames], dtype=torch.float32)
    q = torch.as_tensor(long.charge.values, dtype=torch.float32)[..., None]
    device = next(model.parameters()).device
    result = rollout(model, (x[:, 0].to(device), v[:, 0].to(device), q.to(device)),
                     max(p.horizons), step_time=HORIZON)
    xs, vs = result.states
    # the initial frame leads both, so the energies at time 0 are the simulator's start
    ev = evaluate({"model": (torch.cat([x[:, :1], xs], 1), torch.cat([v[:, :1], vs], 1))},
                  (x, v), "particles", charges=q, initial=(x[:, 0], v[:, 0]),
                  softening=softening)
    mse = ev.position_mse.sel(model="model").values
    e_model = ev.energy.sel(model="model").values
    e_sim = ev.energy_true.values
    out = {}
    for m in p.horizons:
        keep = np.isfinite(mse[:, m])
        row = {"steps": 1000 * m, "diverged_fraction": float(1 - keep.mean()),
               "mse": None, "energy_error": None,
               "sim_energy_drift": float(np.mean(np.abs(e_sim[:, m] - e_sim[:, 0])))}
        row["escaped"] = float(ev.escaped.sel(model="model").values[m])
        for key, name in _DRIFTS.items():
            reduce = np.median if key == "energy_drift" else np.mean
            row[f"sim_{name}"] = float(reduce(np.abs(ev[f"{key}_true"].values[:, m])))
            row[name] = None
            if keep.any():
                row[name] = float(reduce(np.abs(ev[key].sel(model="model").values[keep, m])))
        if keep.any():
            row["mse"] = float(mse[keep, m].mean())
            row["energy_error"] = float(np.mean(np.abs(e_model[keep, m] - e_sim[keep, m])))
        out[str(m)] = row
    return out


# --------------------------------------------------------------------------- driver
def _task(p: Protocol, cache: Path, data) -> tuple[dict[str, xr.Dataset], dict]:
    if data is None:
        splits, path = generated_task(p, cache)
        return splits, {"path": str(path.resolve()), "generated": "egnn", "sha256": None}
    return read_egnn_folder(data, p)


def run(protocol: str = "quick", cache: Path = CACHE, out_dir: Path = RESULTS, data=None,
        **overrides) -> dict:
    """Run one protocol; returns (and writes) the results dictionary.

    Parameters
    ----------
    protocol : str
        A key of :data:`PROTOCOLS`.
    cache : Path
        Folder of the generated split directories.
    out_dir : Path
        Where ``nbody_<protocol>.{json,md,png}`` go.
    data : path-like, optional
        A folder of EGNN ``.npy`` files for the one-step task (see
        :func:`read_egnn_folder`); default: generated.
    overrides
        Replace fields of the :class:`Protocol` (e.g. ``budget_s=60``, ``seeds=(0, 1)``,
        ``n_train=500``, ``eval_every=5``, ``rollout=False``).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {list(PROTOCOLS)}, got {protocol!r}")
    fields = set(Protocol.__dataclass_fields__)
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"overrides: unknown settings {unknown}; expected fields of "
                         f"Protocol: {sorted(fields)}")
    p = replace(PROTOCOLS[protocol], **overrides)
    for name in ("budget_s", "rollout_budget_s"):
        value = getattr(p, name)
        if value is not None and not value > 0:
            raise ValueError(f"{name}: expected a positive number of seconds or None, got "
                             f"{value!r}")
    unknown_models = [m for m in p.models if m not in MODELS]
    if unknown_models or not p.seeds:
        raise ValueError(f"models, seeds: expected models from {list(MODELS)} and at least "
                         f"one seed, got {p.models} and {p.seeds}")
    torch.set_num_threads(p.threads)
    device = torch.device("cuda" if p.device == "auto" and torch.cuda.is_available()
                          else "cpu" if p.device == "auto" else p.device)
    settings = asdict(p)
    p = replace(p, device=device.type)  # what the trainer is given
    cache = Path(cache)
    splits, record = _task(p, cache, data)
    pairs = _pairs(splits, p)
    results = {"protocol": protocol, "settings": settings, "data": record,
               "device": str(device), "torch_threads": torch.get_num_threads(),
               "trivial": trivial_predictors(pairs["test"]), "models": {}}
    probe = {name: MODELS[name]().to(device) for name in p.models}
    times = forward_times(probe, tuple(t.to(device) for t in _inputs(pairs["test"], 100)))
    for name in p.models:
        runs = []
        for seed in p.seeds:
            torch.manual_seed(seed)
            model = MODELS[name]()
            hist, diverged = train(model, pairs, p, seed=seed, budget_s=p.budget_s,
                                   max_epochs=p.max_epochs)
            runs.append({"seed": seed, "history": hist, "best": best_test(hist),
                         "diverged": diverged,
                         "equivariance": equivariance(model, pairs["test"])})
        results["models"][name] = {
            "parameters": sum(t.numel() for t in probe[name].parameters()),
            "forward_s_per_100": times[name], "runs": runs,
        }
    if p.rollout:
        results["rollout"] = {}
        for preset in p.rollout_presets:
            task = splits if preset == "egnn" else generated_task(p, cache, preset)[0]
            results["rollout"][preset] = _rollouts(p, task, long_split(p, cache, preset))
    _summarise(results)
    write(results, Path(out_dir), protocol)
    return results


def _rollouts(p: Protocol, splits: dict, long: xr.Dataset, models: dict | None = None,
              methods: dict | None = None) -> dict:
    """Train each model's (x, v) predictor on the task's ``splits`` and roll it out on ``long``.

    ``models``: display name -> constructor taking ``velocity_output`` (default: those of
    ``p.models`` in :data:`MODELS`); every one starts from seed ``p.seeds[0]``. ``methods``:
    display name -> settings of :class:`~grepsnet_sciml.solvers.unroll.ParticleLoss`
    (``unroll_steps``, ``curriculum``, ``pushforward``) for the models trained on an unrolled
    loss; the others train one step.
    """
    models = models if models is not None else {name: MODELS[name] for name in p.models}
    methods = methods or {}
    out = {}
    for name, build in models.items():
        torch.manual_seed(p.seeds[0])
        model = build(velocity_output=True)
        method = methods.get(name)
        loss = None if method is None else ParticleLoss(**method)
        pairs = _pairs(splits, p, velocity=True, train_steps=1 if loss is None
                       else loss.unroll_steps)
        hist, diverged = train(model, pairs, p, seed=p.seeds[0], budget_s=p.rollout_budget_s,
                               max_epochs=p.rollout_max_epochs, loss_step=loss)
        out[name] = {"epochs": len(hist), "best": best_test(hist), "diverged": diverged,
                     "horizons": long_rollout(model, long, p)}
    return out


def _summarise(results: dict) -> None:
    """Add the per-model means over seeds, the equal-epoch comparison and ``summary``."""
    equal = min(len(r["history"]) for m in results["models"].values() for r in m["runs"])
    results["equal_epochs"] = equal
    results["summary"] = []
    for name, entry in results["models"].items():
        entry["epoch_s"] = float(np.mean([row["epoch_seconds"] for r in entry["runs"]
                                          for row in r["history"]]))
        tests = [r["best"]["test"] for r in entry["runs"]]
        eq = [best_test(r["history"], equal)["test"] for r in entry["runs"]]
        tests = [math.nan if t is None else t for t in tests]
        eq = [math.nan if t is None else t for t in eq]
        entry["test_mse"] = {"mean": float(np.mean(tests)), "std": float(np.std(tests))}
        entry["test_mse_equal_epochs"] = {"mean": float(np.mean(eq)), "std": float(np.std(eq))}
        entry["epochs"] = [len(r["history"]) for r in entry["runs"]]
        entry["validations"] = [sum(row["valid"] is not None for row in r["history"])
                                for r in entry["runs"]]
        entry["diverged"] = [bool(r.get("diverged")) for r in entry["runs"]]
        entry["equivariance_max"] = {
            k: max(r["equivariance"][k] for r in entry["runs"]) for k in ("float32", "float64")
        }
        results["summary"].append({
            "model": name, "seeds": len(entry["runs"]), "parameters": entry["parameters"],
            "test_error": entry["test_mse"]["mean"], "test_error_std": entry["test_mse"]["std"],
            "test_error_equal_epochs": entry["test_mse_equal_epochs"]["mean"],
            "epochs": entry["epochs"], "train_seconds_per_epoch": entry["epoch_s"],
            "forward_s_per_100": entry["forward_s_per_100"],
        })


def merge(paths, out_dir: Path = RESULTS, cache: Path = CACHE) -> dict:
    """Combine runs of the same protocol that trained different models (e.g. one process per
    model, each on its own core) into one result, and time the forward passes side by side.

    Parameters
    ----------
    paths : sequence of path
        ``nbody_<protocol>.json`` files written by :func:`run` with the same settings and
        data except ``models``.
    out_dir, cache : Path
        Where the merged ``nbody_<protocol>.{json,md,png}`` go; the data cache (for the
        forward timing on the test split of generated data; runs on the user's files read
        the recorded folder, whose files must still have the recorded sha256).
    """
    parts = [read_results(path) for path in paths]
    if not parts:
        raise ValueError("paths: expected at least one nbody_<protocol>.json, got none")
    first = parts[0]
    for path, part in zip(paths, parts):
        for key in ("protocol", "models", "settings", "data"):
            if key not in part:
                raise ValueError(f"paths: {path} has no {key!r}; expected a file written by "
                                 "grepsnet_sciml.benchmarks.nbody.run")
        mine = {k: v for k, v in part["settings"].items() if k != "models"}
        ref = {k: v for k, v in first["settings"].items() if k != "models"}
        if part["protocol"] != first["protocol"] or mine != ref:
            raise ValueError(f"paths: {path} was run with other settings than {paths[0]}; "
                             "expected the same protocol and settings except the models")
        if part["data"].get("sha256") != first["data"].get("sha256"):
            raise ValueError(f"paths: {path} was run on other data than {paths[0]} (sha256 of "
                             "the files differ); expected the same data")
    merged = {key: first[key] for key in ("protocol", "device", "torch_threads", "trivial",
                                          "data")}
    merged["settings"] = dict(first["settings"])
    merged["models"], merged["merged_from"] = {}, [str(path) for path in paths]
    for part in parts:
        overlap = set(part["models"]) & set(merged["models"])
        if overlap:
            raise ValueError(f"paths: model(s) {sorted(overlap)} appear in more than one file")
        merged["models"].update(part["models"])
        for preset, entries in part.get("rollout", {}).items():
            merged.setdefault("rollout", {}).setdefault(preset, {}).update(entries)
    merged["settings"]["models"] = list(merged["models"])
    p = replace(Protocol(), **{k: tuple(v) if isinstance(v, list) else v
                               for k, v in merged["settings"].items()})
    torch.set_num_threads(first["torch_threads"])
    if first["data"].get("sha256") is None:
        splits = generated_task(p, Path(cache))[0]
    else:
        splits, record = read_egnn_folder(first["data"]["path"], p)
        if record["sha256"] != first["data"]["sha256"]:
            raise ValueError(f"paths: the files in {first['data']['path']} changed since "
                             f"{paths[0]} was run (sha256 differ); expected the same data")
    test = ParticlePairs(splits["test"], p.input_frame, p.target_frame - p.input_frame,
                         samples=slice(0, p.n_test))
    times = forward_times({name: MODELS[name]() for name in merged["models"]},
                          _inputs(test, 100))
    for name, entry in merged["models"].items():
        entry["forward_s_per_100"] = times[name]
    _summarise(merged)
    write(merged, Path(out_dir), merged["protocol"])
    return merged


def format_table(results: dict) -> str:
    """Markdown table of one run."""
    eq = results["equal_epochs"]
    lines = [
        f"Charged 5-body, protocol `{results['protocol']}` on {results['device']} "
        f"({results['torch_threads']} torch threads); test MSE at the best-validation epoch.",
        "",
        f"| model | params | forward s / 100 | s / epoch | epochs | test MSE | "
        f"test MSE at {eq} epochs | equiv. err f32 / f64 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in results["models"].items():
        t, te = m["test_mse"], m["test_mse_equal_epochs"]
        lines.append(
            f"| {name} | {m['parameters']} | {m['forward_s_per_100']:.4f} | {m['epoch_s']:.2f} "
            f"| {','.join(map(str, m['epochs']))} | {t['mean']:.5f} +- {t['std']:.5f} "
            f"| {te['mean']:.5f} +- {te['std']:.5f} | {m['equivariance_max']['float32']:.1e} "
            f"/ {m['equivariance_max']['float64']:.1e} |"
        )
    for name, mse in results["trivial"].items():
        lines.append(f"| {name} | 0 | | | | {mse:.5f} | | exact |")
    for preset, entries in results.get("rollout", {}).items():
        horizons = list(next(iter(entries.values()))["horizons"])
        lines += ["", f"Rollout on `{preset}` physics: the (x, v) predictors from frame 30 of "
                      "the long split (MSE / mean |E_model - E_sim| over non-diverged "
                      "trajectories (share diverged); simulator drift |E_sim(t) - E_sim(0)|):",
                  "", "| model | epochs | " + " | ".join(f"{h} x 1000 steps" for h in horizons)
                  + " |", "|---|---|" + "---|" * len(horizons)]
        for name, r in entries.items():
            cells = [f"{c['mse']:.4f} / {c['energy_error']:.3f} ({c['diverged_fraction']:.0%})"
                     if c["mse"] is not None else "all diverged" for c in r["horizons"].values()]
            lines.append(f"| {name} | {r['epochs']} | " + " | ".join(cells) + " |")
        first = next(iter(entries.values()))["horizons"].values()
        lines.append("| simulator drift | | " + " | ".join(
            f"{c['sim_energy_drift']:.3f}" for c in first) + " |")
    return "\n".join(lines)


def write(results: dict, out_dir: Path, protocol: str) -> None:
    """JSON, Markdown and PNG next to each other, each written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"nbody_{protocol}"
    for suffix, text in ((".json", json.dumps(results, indent=1)),
                         (".md", format_table(results) + "\n")):
        atomic_write_text(stem.with_suffix(suffix), text)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, m in results["models"].items():
        for r in m["runs"]:
            h = [row for row in r["history"] if row["valid"] is not None]
            axes[0].plot([row["seconds"] for row in h], [row["valid"] for row in h],
                         label=f"{name} seed {r['seed']}")
    for mse in results["trivial"].values():
        axes[0].axhline(mse, ls=":", c="gray")
    axes[0].set(xlabel="training seconds", ylabel="validation MSE", yscale="log",
                title="one-step (1000 steps) validation")
    axes[0].legend()
    styles = {"egnn": "o-", "clean": "s--"}
    colours = {name: f"C{i}" for i, name in enumerate(MODELS)}
    for preset, entries in results.get("rollout", {}).items():
        for name, r in entries.items():
            hs = [int(h) for h in r["horizons"]]
            mse = [np.nan if c["mse"] is None else c["mse"] for c in r["horizons"].values()]
            axes[1].plot(hs, mse, styles.get(preset, "^:"), c=colours.get(name),
                         label=f"{name} ({preset})")
    axes[1].set(xlabel="rollout length (x 1000 steps)", ylabel="position MSE", yscale="log",
                title="rollout from frame 30")
    if results.get("rollout"):
        axes[1].legend()
    else:
        axes[1].set_axis_off()
    fig.tight_layout()
    with atomic_path(stem.with_suffix(".png"), suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
