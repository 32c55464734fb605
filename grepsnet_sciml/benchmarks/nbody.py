"""Charged N-body benchmark: GRepsNBody against EGNN on EGNN's charged 5-body task.

Usage (``benchmarks/nbody.py`` takes the same options)::

    grepsnet bench nbody --protocol quick [--budget 900] [--seeds 0] [--threads 2]
    grepsnet bench nbody --protocol paper            # 10000 epochs, 3 seeds, GPU
    grepsnet bench nbody --protocol smoke            # minutes, end-to-end check

Data: the ``egnn`` preset of :mod:`grepsnet_sciml.datasets.charged_particles` (seed 43, the
stream ordered train 10000 / valid 2000 / test 2000; the first 3000 training trajectories
are used), input frame 30, target frame 40 (1000 steps later); generated once and cached as
``.npz`` under ``--cache``. Training: Adam (lr 5e-4, weight decay 1e-12), batch 100, MSE on
absolute positions, constant learning rate; the validation MSE is computed every epoch and
the test MSE reported at the best-validation epoch, as in EGNN's ``main_nbody.py``.

Protocols
---------
``quick``
    Each model trains for the same wall-clock budget (training steps only; 15 minutes by
    default, on ``--threads`` torch threads). The "equal epochs" column is the
    best-validation test MSE within the first ``E`` epochs of each run, ``E`` the fewest
    epochs any model completed (the learning rate is constant, so this equals training for
    ``E`` epochs).
``paper``
    EGNN's protocol: 10000 epochs, 3 seeds, no time limit (sized for one GPU).
``smoke``
    200 / 200 / 200 trajectories and a short budget: checks the pipeline end to end; its
    numbers are not comparable with the others.

Also reported per model: parameters, forward time per batch of 100 (median, no gradient,
the models timed alternately), training time per epoch, the equivariance error on test
inputs (random O(3) elements, translations, permutations; float32 and float64), and the
trivial predictors ``x_0`` (no motion) and ``x_0 + T v_0``. Long horizon: models with a
velocity head (``velocity_output=True``, loss ``MSE(x) + MSE(v)``, ``rollout_budget_s``,
7.5 minutes in ``quick``) are trained on each of ``rollout_presets`` (``egnn``, and
``clean``: the same system with a softened, unclipped, energy-conserving force) and rolled
out 2, 5 and 10 times from frame 30 of a separate split of that physics simulated for 15000
steps with its own seed; reported are the position MSE against the simulator per horizon
and the mean absolute energy error ``|E_model - E_sim|`` (and the simulator's own drift from
the start: the force clipping of the ``egnn`` physics does not conserve energy).

All training clips the global gradient norm at ``grad_clip`` (1.0; both models alike):
without it GRepsNBody's loss overflowed to NaN after about 340 epochs in a 15-minute run.
:func:`merge` joins runs made with the same settings for different models (e.g. one process
per model, each pinned to one core, to run both side by side) and times their forward passes
together::

    grepsnet bench nbody --protocol quick --models GRepsNBody --threads 1 --out runs/a &
    grepsnet bench nbody --protocol quick --models EGNN --threads 1 --out runs/b
    grepsnet bench nbody --merge runs/a/nbody_quick.json runs/b/nbody_quick.json

Writes ``benchmarks/results/nbody_{protocol}.json`` (all numbers and settings),
``.md`` (the table) and ``.png`` (validation curves and rollout error per horizon) under the
working directory unless ``out_dir`` says otherwise.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from grepsnet_sciml._atomic import atomic_path, atomic_write_text
from grepsnet_sciml.datasets.charged_particles import generate, total_energy
from grepsnet_sciml.models.egnn import EGNN
from grepsnet_sciml.models.nbody import GRepsNBody
from grepsnet_sciml.testing import equivariance_errors

from ._results import read_results

RESULTS = Path("benchmarks") / "results"
"""Default output folder (relative to the working directory: the repository root)."""
CACHE = Path("runs") / "nbody_data"
"""Default data cache (relative to the working directory)."""
MODELS = {"GRepsNBody": GRepsNBody, "EGNN": EGNN}
STEPS_PER_FRAME = 100
HORIZON = 1.0  # time between input and target frames: 1000 steps of dt = 1e-3


@dataclass(frozen=True)
class Protocol:
    """Settings of one benchmark protocol (all stored in the JSON)."""

    n_train: int = 3000
    n_valid: int = 2000
    n_test: int = 2000
    budget_s: float | None = 900.0
    max_epochs: int = 10000
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
        budget_s=None, seeds=(0, 1, 2), rollout_budget_s=None, rollout_max_epochs=2000,
        device="auto",
    ),
    "smoke": Protocol(
        n_train=200, n_valid=200, n_test=200, budget_s=90.0, n_long=50,
        rollout_budget_s=30.0, threads=1,
    ),
}


# --------------------------------------------------------------------------- data
def _atomic_savez(path: Path, **arrays) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def load_task(p: Protocol, cache: Path, preset: str = "egnn") -> dict[str, dict[str, np.ndarray]]:
    """Frames ``input_frame`` and ``target_frame`` of the three splits (cached ``.npz``).

    Returns ``{split: {"x": (N, 2, n, 3), "v": (N, 2, n, 3), "q": (N, n)}}`` with the input
    frame first. Split ``s`` holds samples ``0 .. n_s - 1`` of that split of the stream of
    ``preset`` (``"egnn"``: the benchmark's physics; ``"clean"``: the same system with a
    softened, unclipped force; both store a frame every 100 steps).
    """
    frames = [p.input_frame, p.target_frame]
    out = {}
    for split, n in (("train", p.n_train), ("valid", p.n_valid), ("test", p.n_test)):
        path = cache / (
            f"{preset}_seed{p.data_seed}_{split}{n}_of{p.stream_train}-{p.stream_valid}"
            f"_frames{frames[0]}-{frames[1]}.npz"
        )
        if not path.is_file():
            ds = generate(n, seed=p.data_seed, preset=preset, split=split,
                          n_train=p.stream_train, n_valid=p.stream_valid)
            _atomic_savez(path, x=ds.position.values[:, frames], v=ds.velocity.values[:, frames],
                          q=ds.charge.values)
        with np.load(path) as z:
            out[split] = {k: z[k] for k in ("x", "v", "q")}
    return out


def load_long(p: Protocol, cache: Path, preset: str = "egnn") -> dict[str, np.ndarray]:
    """The long-horizon split: frames ``input_frame + 10 m`` for ``m`` in ``0 .. max``.

    Returns ``{"x", "v": (N, frames, n, 3), "q": (N, n), "softening": ()}`` (the
    potential's softening length, 0 for ``egnn``).
    """
    frames = [p.input_frame + 10 * m for m in range(max(p.horizons) + 1)]
    path = cache / f"{preset}_long_seed{p.long_seed}_n{p.n_long}_steps{p.long_steps}.npz"
    if not path.is_file():
        ds = generate(p.n_long, seed=p.long_seed, preset=preset, split="test",
                      n_steps=p.long_steps, n_train=0, n_valid=0)
        if ds.sizes["time"] <= frames[-1]:
            raise ValueError(f"long_steps: {p.long_steps} steps store {ds.sizes['time']} frames; "
                             f"the horizons {p.horizons} need frame {frames[-1]}")
        softening = json.loads(ds.attrs["config"])["softening"] or 0.0
        _atomic_savez(path, x=ds.position.values[:, frames], v=ds.velocity.values[:, frames],
                      q=ds.charge.values, softening=np.float64(softening))
    with np.load(path) as z:
        return {k: z[k] for k in ("x", "v", "q", "softening")}


def _tensors(split: dict, device, dtype=torch.float32):
    x = torch.as_tensor(split["x"], dtype=dtype, device=device)
    v = torch.as_tensor(split["v"], dtype=dtype, device=device)
    q = torch.as_tensor(split["q"], dtype=dtype, device=device)
    return x[:, 0], v[:, 0], q, x[:, 1], v[:, 1]


# --------------------------------------------------------------------------- training
@torch.no_grad()
def evaluate(model, data, batch_size: int = 100) -> float:
    """Mean squared error of the predicted positions over a split (per coordinate)."""
    x0, v0, q, xt, _ = data
    total = 0.0
    for s in range(0, len(x0), batch_size):
        out = model(x0[s:s + batch_size], v0[s:s + batch_size], q[s:s + batch_size])
        pos = out[0] if isinstance(out, tuple) else out
        total += float(((pos - xt[s:s + batch_size]) ** 2).sum())
    return total / xt.numel()


def train(model, train_data, valid_data, test_data, *, lr, weight_decay, batch_size,
          budget_s, max_epochs, seed, velocity_loss=False, grad_clip=None, label=""):
    """Train with Adam at a constant learning rate for a wall-clock budget or epoch count.

    ``grad_clip`` rescales each step's gradient to at most that global norm (``None``: off).
    A non-finite training loss ends the run (marked ``diverged``).

    Returns a history: per epoch the training loss, validation MSE, test MSE (computed when
    the validation improves) and cumulative training seconds (evaluation excluded). The
    model is left with its best-validation weights.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    x0, v0, q, xt, vt = train_data
    n = len(x0)
    history, spent, best = [], 0.0, math.inf
    best_state = copy.deepcopy(model.state_dict())
    bar = tqdm(total=int(budget_s) if budget_s else max_epochs, desc=label,
               unit="s" if budget_s else "epoch", leave=False)
    for epoch in range(max_epochs):
        if budget_s is not None and spent >= budget_s:
            break
        model.train()
        order = torch.randperm(n, generator=gen)
        start, loss_sum = time.perf_counter(), 0.0
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size].to(x0.device)
            out = model(x0[idx], v0[idx], q[idx])
            if velocity_loss:
                loss = ((out[0] - xt[idx]) ** 2).mean() + ((out[1] - vt[idx]) ** 2).mean()
            else:
                loss = ((out - xt[idx]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
        if x0.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        spent += elapsed
        model.eval()
        val = evaluate(model, valid_data, batch_size)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / n, "valid": val, "test": None,
               "seconds": spent, "epoch_seconds": elapsed}
        if val < best:
            best = val
            row["test"] = evaluate(model, test_data, batch_size)
            best_state = copy.deepcopy(model.state_dict())
        if not math.isfinite(loss_sum):
            row["diverged"] = True
            history.append(row)
            break
        history.append(row)
        bar.update(int(spent) - bar.n if budget_s else 1)
        bar.set_postfix(valid=f"{val:.4g}", best=f"{best:.4g}")
    bar.close()
    model.load_state_dict(best_state)
    return history


def best_test(history, max_epoch: int | None = None) -> dict:
    """Test MSE at the best-validation epoch among epochs ``<= max_epoch``."""
    rows = [r for r in history if max_epoch is None or r["epoch"] <= max_epoch]
    row = min(rows, key=lambda r: r["valid"])
    return {"epoch": row["epoch"], "valid": row["valid"], "test": row["test"]}


# --------------------------------------------------------------------------- measurements
@torch.no_grad()
def forward_times(models: dict, data, repeats: int = 30, batch: int = 100) -> dict:
    """Median seconds per forward pass of a batch, models timed alternately."""
    x0, v0, q = (t[:batch] for t in data[:3])
    times = {name: [] for name in models}
    for m in models.values():
        m.eval()
        for _ in range(3):
            m(x0, v0, q)
    for _ in range(repeats):
        for name, m in models.items():
            if x0.device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            m(x0, v0, q)
            if x0.device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    return {name: float(np.median(t)) for name, t in times.items()}


def equivariance(model, data) -> dict:
    """Max relative equivariance error on 10 test systems, float32 and float64."""
    x, v, q = (t[:10].cpu() for t in data[:3])
    inputs = (x, v, q[..., None])  # charges as the T0 feature the harness expects
    gen = torch.Generator().manual_seed(0)
    model = copy.deepcopy(model).cpu()
    return {
        str(dt).removeprefix("torch."): equivariance_errors(
            model, tuple(t.to(dt) for t in inputs), dtype=dt, n_samples=8, generator=gen
        ).max_error
        for dt in (torch.float32, torch.float64)
    }


def trivial_predictors(data) -> dict:
    x0, v0, _, xt, _ = data
    return {
        "no motion": float(((x0 - xt) ** 2).mean()),
        "x + T v": float(((x0 + HORIZON * v0 - xt) ** 2).mean()),
    }


@torch.no_grad()
def rollout(model, long: dict, horizons, device, escape: float = 1e3) -> dict:
    """Apply the 1000-step predictor ``m`` times from frame 30; MSE and energy per horizon.

    A trajectory whose prediction becomes non-finite or leaves ``|x| < escape`` counts as
    diverged and is dropped from later steps; MSE and energy error are over the others.
    Energies use the split's potential (``long["softening"]``).
    """
    softening = float(long["softening"])
    x = torch.as_tensor(long["x"], dtype=torch.float32, device=device)
    v = torch.as_tensor(long["v"], dtype=torch.float32, device=device)
    q = torch.as_tensor(long["q"], dtype=torch.float32, device=device)
    xs, vs = x[:, 0].clone(), v[:, 0].clone()
    alive = torch.ones(len(xs), dtype=torch.bool, device=device)
    e_sim = total_energy(long["x"], long["v"], long["q"][:, None], softening)  # (N, frames)
    out = {}
    for m in range(1, max(horizons) + 1):
        idx = alive.nonzero().squeeze(1)
        if len(idx):
            xo, vo = model(xs[idx], vs[idx], q[idx])
            ok = (torch.isfinite(xo).all(-1).all(-1) & torch.isfinite(vo).all(-1).all(-1)
                  & (xo.abs().amax((-1, -2)) < escape))
            xs[idx[ok]], vs[idx[ok]] = xo[ok], vo[ok]
            alive[idx[~ok]] = False
        if m in horizons:
            keep = alive.cpu().numpy()
            row = {"steps": 1000 * m, "diverged_fraction": float(1 - keep.mean()),
                   "mse": None, "energy_error": None,
                   "sim_energy_drift": float(np.mean(np.abs(e_sim[:, m] - e_sim[:, 0])))}
            if keep.any():
                e_model = total_energy(xs[alive].cpu().double().numpy(),
                                       vs[alive].cpu().double().numpy(), long["q"][keep],
                                       softening)
                row["mse"] = float(((xs[alive] - x[alive, m]) ** 2).mean())
                row["energy_error"] = float(np.mean(np.abs(e_model - e_sim[keep, m])))
            out[str(m)] = row
    return out


# --------------------------------------------------------------------------- driver
def run(protocol: str = "quick", cache: Path = CACHE, out_dir: Path = RESULTS,
        **overrides) -> dict:
    """Run one protocol; returns (and writes) the results dictionary.

    ``overrides`` replace fields of the :class:`Protocol` (e.g. ``budget_s=60``,
    ``seeds=(0, 1)``, ``n_train=500``, ``rollout=False``).
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
    task = load_task(p, cache)
    splits = {k: _tensors(v, device) for k, v in task.items()}
    results = {"protocol": protocol, "settings": asdict(p), "device": str(device),
               "torch_threads": torch.get_num_threads(), "trivial": trivial_predictors(
                   splits["test"]), "models": {}}
    probe = {name: MODELS[name]().to(device) for name in p.models}
    times = forward_times(probe, splits["test"])
    for name in p.models:
        runs = []
        for seed in p.seeds:
            torch.manual_seed(seed)
            model = MODELS[name]().to(device)
            hist = train(model, splits["train"], splits["valid"], splits["test"], lr=p.lr,
                         weight_decay=p.weight_decay, batch_size=p.batch_size,
                         budget_s=p.budget_s, max_epochs=p.max_epochs, seed=seed,
                         grad_clip=p.grad_clip, label=f"{name} seed {seed}")
            runs.append({"seed": seed, "history": hist, "best": best_test(hist),
                         "equivariance": equivariance(model, splits["test"])})
        results["models"][name] = {
            "parameters": sum(t.numel() for t in probe[name].parameters()),
            "forward_s_per_100": times[name], "runs": runs,
        }
    if p.rollout:
        results["rollout"] = {}
        for preset in p.rollout_presets:
            data = splits if preset == "egnn" else {
                k: _tensors(v, device) for k, v in load_task(p, cache, preset).items()}
            results["rollout"][preset] = _rollouts(p, data, load_long(p, cache, preset), device)
    _summarise(results)
    write(results, out_dir, protocol)
    return results


def _rollouts(p: Protocol, splits: dict, long: dict, device) -> dict:
    """Train each model's (x, v) predictor on ``splits`` and roll it out on ``long``."""
    out = {}
    for name in p.models:
        torch.manual_seed(p.seeds[0])
        model = MODELS[name](velocity_output=True).to(device)
        hist = train(model, splits["train"], splits["valid"], splits["test"], lr=p.lr,
                     weight_decay=p.weight_decay, batch_size=p.batch_size,
                     budget_s=p.rollout_budget_s, max_epochs=p.rollout_max_epochs,
                     seed=p.seeds[0], velocity_loss=True, grad_clip=p.grad_clip,
                     label=f"{name} (x, v)")
        model.eval()
        out[name] = {"epochs": len(hist), "best": best_test(hist),
                     "horizons": rollout(model, long, p.horizons, device)}
    return out


def _summarise(results: dict) -> None:
    """Add the per-model means over seeds and the equal-epoch comparison, in place."""
    equal = min(len(r["history"]) for m in results["models"].values() for r in m["runs"])
    results["equal_epochs"] = equal
    for entry in results["models"].values():
        entry["epoch_s"] = float(np.mean([row["epoch_seconds"] for r in entry["runs"]
                                          for row in r["history"]]))
        tests = [r["best"]["test"] for r in entry["runs"]]
        eq = [best_test(r["history"], equal)["test"] for r in entry["runs"]]
        entry["test_mse"] = {"mean": float(np.mean(tests)), "std": float(np.std(tests))}
        entry["test_mse_equal_epochs"] = {"mean": float(np.mean(eq)), "std": float(np.std(eq))}
        entry["epochs"] = [len(r["history"]) for r in entry["runs"]]
        entry["diverged"] = [bool(r["history"][-1].get("diverged")) for r in entry["runs"]]
        entry["equivariance_max"] = {
            k: max(r["equivariance"][k] for r in entry["runs"]) for k in ("float32", "float64")
        }


def merge(paths, out_dir: Path = RESULTS, cache: Path = CACHE) -> dict:
    """Combine runs of the same protocol that trained different models (e.g. one process per
    model, each on its own core) into one result, and time the forward passes side by side.

    Parameters
    ----------
    paths : sequence of path
        ``nbody_<protocol>.json`` files written by :func:`run` with the same settings except
        ``models``.
    out_dir, cache : Path
        Where the merged ``nbody_<protocol>.{json,md,png}`` go; the data cache (for the
        forward timing on the test split).
    """
    parts = [read_results(path) for path in paths]
    if not parts:
        raise ValueError("paths: expected at least one nbody_<protocol>.json, got none")
    first = parts[0]
    for path, part in zip(paths, parts):
        for key in ("protocol", "models", "settings"):
            if key not in part:
                raise ValueError(f"paths: {path} has no {key!r}; expected a file written by "
                                 "grepsnet_sciml.benchmarks.nbody.run")
        mine = {k: v for k, v in part["settings"].items() if k != "models"}
        ref = {k: v for k, v in first["settings"].items() if k != "models"}
        if part["protocol"] != first["protocol"] or mine != ref:
            raise ValueError(f"paths: {path} was run with other settings than {paths[0]}; "
                             "expected the same protocol and settings except the models")
    merged = {key: first[key] for key in ("protocol", "device", "torch_threads", "trivial")}
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
    test = _tensors(load_task(p, Path(cache))["test"], torch.device("cpu"))
    times = forward_times({name: MODELS[name]() for name in merged["models"]}, test)
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
            h = r["history"]
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
