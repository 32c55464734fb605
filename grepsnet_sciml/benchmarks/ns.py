"""Navier-Stokes benchmark: GRepsFNO against G-FNO (p4, p4m), FNO and FNO + augmentation.

Protocols (see ANCHORS.md, G-FNO section):

- ``paper``: G-FNO's protocol (64x64 stored, simulated at 256, 1000/100/100 trajectories,
  10 input frames, 10 (NS-Sym) or 20 (NS) rollout steps, modes 12, 4 layers, 100 epochs,
  Adam 1e-3, weight decay 1e-4, cosine schedule per batch, batch 20, best-validation
  checkpoint, 3 seeds). Sized for a GPU.
- ``quick``: the same physics stored at 32x32 (simulated at 64), 200/50/50 trajectories,
  modes 8, 20 epochs, one seed; meant for 2 CPU cores.
- ``smoke``: ``quick`` sizes with 20/5/5 trajectories and 2 epochs (end-to-end check).
- ``tiny``: a smoke test of the whole pipeline on tiny models (minutes).

Training is one-step on the true history (teacher forcing: every window of ``t_in`` frames
of the first ``t_in + steps`` frames predicts the next frame), evaluation an autoregressive
rollout. Reported per model: parameters (the dimension of the weight space; real numbers,
complex weights count twice), training seconds per epoch, forward milliseconds per batch,
forward+backward milliseconds per batch, activation memory of a training step, test
relative L2 over the rollout (G-FNO's metric, %), the same on the test set rotated by
90 degrees about the origin grid point, the equivariance error under the dataset's declared
group (vorticity a pseudo-scalar) and under C4, and the rollout error at 2x and 5x the
training horizon. Widths are chosen so that every model's parameter count is within 10% of
G-FNO-p4's (the count and the ratio are reported). Data are generated once and cached.

Usage (``benchmarks/ns.py`` takes the same options)::

    grepsnet bench ns --protocol quick --preset ns-sym
    grepsnet bench ns --protocol tiny --preset ns-sym --models GRepsFNO GFNO-p4
    grepsnet bench ns --protocol quick --timing-only --models GRepsFNO GFNO-p4
    grepsnet bench ns --merge runs/a/ns_quick_ns-sym.json runs/b/ns_quick_ns-sym.json

Writes ``benchmarks/results/ns_<protocol>_<preset>.{json,md,png}`` (timing only:
``ns_timing_<protocol>_<preset>.{json,md}``) under the working directory unless
``out_dir`` says otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import nn

from grepsnet_sciml import Reps
from grepsnet_sciml._atomic import atomic_path, atomic_write_text
from grepsnet_sciml.datasets.navier_stokes import generate
from grepsnet_sciml.datasets.splits import split_seed
from grepsnet_sciml.groups import C4, group_from_string
from grepsnet_sciml.layers.spectral import count_free_parameters
from grepsnet_sciml.models.baselines import FNOBaseline
from grepsnet_sciml.models.gfno import GFNO2d
from grepsnet_sciml.models.grepsfno import GRepsFNO2d
from grepsnet_sciml.solvers.trainer import TrainConfig, Trainer, load_checkpoint
from grepsnet_sciml.testing import equivariance_errors

from ._results import read_results

RESULTS = Path("benchmarks") / "results"
"""Default output folder (relative to the working directory: the repository root)."""
CACHE = Path("runs") / "ns_data"
"""Default data cache (relative to the working directory)."""
MODELS = ("GRepsFNO", "GFNO-p4", "GFNO-p4m", "GFNO-p4m-pseudo", "FNO", "FNO+aug")
"""The models a run trains by default."""
OPTIONAL_MODELS = ("GRepsFNO-C4",)
"""Also accepted: GRepsFNO with rotations only (C4 regular channels, half the channels of
the D4 model at the same parameter count)."""
REFERENCE = "GFNO-p4"
PRESET_GROUPS = {"ns-sym": "D4()", "ns": "D2('diagonal')"}


@dataclass(frozen=True)
class Protocol:
    """Sizes of one benchmark protocol."""

    name: str
    resolution: int
    sim_resolution: int
    n_train: int
    n_valid: int
    n_test: int
    modes: int
    epochs: int
    steps: dict
    reference_width: int = 10
    t_in: int = 10
    n_layers: int = 4
    batch_size: int = 20
    lr: float = 1e-3
    weight_decay: float = 1e-4
    long_factors: tuple = (2, 5)
    seeds: tuple = (0,)
    max_width: int = 64


PROTOCOLS = {
    "paper": Protocol("paper", 64, 256, 1000, 100, 100, modes=12, epochs=100,
                      steps={"ns-sym": 10, "ns": 20}, seeds=(0, 1, 2)),
    "quick": Protocol("quick", 32, 64, 200, 50, 50, modes=8, epochs=20,
                      steps={"ns-sym": 10, "ns": 10}),
    "smoke": Protocol("smoke", 32, 64, 20, 5, 5, modes=8, epochs=2,
                      steps={"ns-sym": 10, "ns": 10}),
    "tiny": Protocol("tiny", 16, 32, 20, 5, 5, modes=4, epochs=2, steps={"ns-sym": 3, "ns": 3},
                     reference_width=3, t_in=4, batch_size=10, max_width=16),
}


# ----- data ------------------------------------------------------------------------------------
def _atomic_netcdf(ds: xr.Dataset, path: Path) -> None:
    with atomic_path(path, suffix=".nc") as tmp:
        ds.to_netcdf(tmp)


def load_data(p: Protocol, preset: str, cache: Path, seed: int = 0, progress: bool = True):
    """Vorticity ``(sample, time, x, y)`` float32 per split, the attrs, and a check dict.

    Train and valid hold ``t_in + steps`` frames, test ``t_in + max(long_factors) * steps``.
    ``test_fine`` (when the simulation resolves it) holds the same test trajectories stored
    at twice the resolution; its frame times must equal the test set's and its every other
    point should reproduce the coarse data (the mismatch is reported). Each split is
    generated once (its own derived seed) and cached as netCDF in ``cache``.
    """
    steps = p.steps[preset]
    sizes = {
        "train": (p.n_train, p.t_in + steps),
        "valid": (p.n_valid, p.t_in + steps),
        "test": (p.n_test, p.t_in + max(p.long_factors) * steps),
    }
    fine = 2 * p.resolution
    if fine <= p.sim_resolution:  # zero-shot super-resolution: same test trajectories, 2x finer
        sizes["test_fine"] = (p.n_test, p.t_in + steps)
    out, times, attrs = {}, {}, None
    for split, (n, frames) in sizes.items():
        path = cache / f"ns_{preset}_{p.name}_{split}_seed{seed}.nc"
        if not path.exists():
            ds = generate(n, preset, resolution=fine if split == "test_fine" else p.resolution,
                          sim_resolution=p.sim_resolution, t_final=float(frames),
                          record_every=1.0, seed=split_seed(seed, split.split("_")[0]),
                          progress=progress)
            _atomic_netcdf(ds, path)
        with xr.open_dataset(path) as ds:
            ds = ds.load()
        attrs = attrs or dict(ds.attrs)
        w = torch.from_numpy(ds["vorticity"].values.astype(np.float32))
        if w.shape[1] < frames:
            raise ValueError(f"{path}: expected {frames} frames, found {w.shape[1]}")
        out[split], times[split] = w[:, :frames], ds["time"].values[:frames]
    info = {}
    if "test_fine" in out:
        n = out["test_fine"].shape[1]
        if not np.array_equal(times["test_fine"], times["test"][:n]):
            raise ValueError("test_fine: its frame times differ from the test set's")
        coarse = out["test_fine"][..., ::2, ::2]
        info = {
            "superres_resolution": fine,
            "superres_times_aligned": True,
            "superres_subsample_mismatch": float((coarse - out["test"][:, :n]).abs().max()),
        }
    return out, attrs, info


class Windows(torch.utils.data.Dataset):
    """One-step training items: ``(w[s : s + t_in], w[s + t_in])`` for ``s < steps``.

    Parameters
    ----------
    w : torch.Tensor
        ``(trajectories, time, X, Y)``.
    augment : PlanarGroup, optional
        Apply a random element (grid action about the origin, vorticity sign ``det g``) to
        each item, as in "FNO + augmentation".
    """

    def __init__(self, w: torch.Tensor, t_in: int, steps: int, augment=None):
        self.w, self.t_in, self.steps, self.augment = w, t_in, steps, augment

    def __len__(self) -> int:
        return self.w.shape[0] * self.steps

    def __getitem__(self, i: int):
        traj, s = divmod(int(i), self.steps)
        x = self.w[traj, s : s + self.t_in]
        y = self.w[traj, s + self.t_in][None]
        if self.augment is not None:
            a = int(torch.randint(self.augment.order, ()))
            det = float(torch.linalg.det(self.augment.elements()[a]))
            x, y = det * self.augment.act_grid(a, x), det * self.augment.act_grid(a, y)
        return x, y


# ----- models ----------------------------------------------------------------------------------
def real_parameter_count(model: nn.Module) -> int:
    """Free real parameters: equivariant layers count their weight space, complex counts 2x."""
    if any(hasattr(m, "n_free") for m in model.modules()):
        return count_free_parameters(model)
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())


def build(name: str, width: int, p: Protocol, attrs: dict) -> nn.Module:
    """The model ``name`` at ``width`` for data with ``attrs`` (one output frame)."""
    if name == "GRepsFNO":
        return GRepsFNO2d.from_attrs(attrs, t_in=p.t_in, width=width, modes=p.modes,
                                     n_layers=p.n_layers)
    if name == "GRepsFNO-C4":
        return GRepsFNO2d(Reps(f"{p.t_in}xT0p", C4()), Reps("T0p", C4()), width=width,
                          modes=p.modes, n_layers=p.n_layers)
    if name.startswith("GFNO"):
        group = "p4" if name == "GFNO-p4" else "p4m"
        vorticity = "pseudoscalar" if name.endswith("pseudo") else "scalar"
        return GFNO2d(p.t_in, 1, width=width, modes=p.modes, n_layers=p.n_layers, group=group,
                      vorticity=vorticity)
    if name.startswith("FNO"):
        group = group_from_string(attrs["group"])
        return FNOBaseline(Reps(f"{p.t_in}xT0p", group), Reps("T0p", group),
                           modes=p.modes, width=width, n_layers=p.n_layers)
    raise ValueError(f"name: unknown model {name!r}; expected one of "
                     f"{MODELS + OPTIONAL_MODELS}")


def official_fno2d_parameters(p: Protocol, width: int = 20) -> int:
    """Parameters of the official G-FNO repository's FNO2d at the protocol's sizes.

    Its window is ``[-modes, modes - 1] x [0, modes - 1]`` (two complex weight blocks of
    ``modes x modes``), with a channel MLP and a 1x1 skip per layer and the projection
    ``width -> 4 width -> 1``: 416,661 at width 20, modes 8 and 10 input frames (the anchors'
    quick count), 928,661 at modes 12 (the paper's 0.93M). The FNO baselines are matched to
    this count, as the G-FNO models are matched to G-FNO-p4's.
    """
    spectral = p.n_layers * 2 * 2 * width * width * p.modes * p.modes
    lifting = (p.t_in + 2) * width + width
    layers = p.n_layers * (2 * (width * width + width) + width * width + width)
    projection = width * 4 * width + 4 * width + 4 * width + 1
    return spectral + lifting + layers + projection


def matched_width(name: str, p: Protocol, attrs: dict, target: int) -> tuple[int, int]:
    """The width whose parameter count is closest to ``target``, and that count."""
    best = None
    for width in range(2, p.max_width + 1):
        count = real_parameter_count(build(name, width, p, attrs))
        if best is None or abs(count - target) < abs(best[1] - target):
            best = (width, count)
        if count > target:
            break
    return best


# ----- evaluation ------------------------------------------------------------------------------
def rollout(model: nn.Module, w0: torch.Tensor, n_steps: int, batch: int = 20) -> torch.Tensor:
    """Autoregressive rollout ``(B, t_in, X, Y) -> (B, n_steps, X, Y)``, no autograd."""
    model.eval()
    outs = []
    with torch.no_grad():
        for start in range(0, w0.shape[0], batch):
            state, frames = w0[start : start + batch], []
            for _ in range(n_steps):
                nxt = model(state)
                frames.append(nxt)
                state = torch.cat([state[:, 1:], nxt], 1)
            outs.append(torch.cat(frames, 1))
    return torch.cat(outs, 0)


def relative_l2_percent(pred: torch.Tensor, true: torch.Tensor) -> float:
    """G-FNO's metric: ``100 x mean_b ||pred_b - true_b|| / ||true_b||`` over all frames."""
    num = (pred - true).flatten(1).norm(dim=1)
    return float(100 * (num / true.flatten(1).norm(dim=1)).mean())


def rotate90(w: torch.Tensor) -> torch.Tensor:
    """Rotate fields by 90 degrees about the origin grid point (vorticity keeps its sign)."""
    return C4().act_grid(1, w)


class _Declared(nn.Module):
    """Wraps a one-frame model with the data's types, for the equivariance harness."""

    domain = "grid"

    def __init__(self, model: nn.Module, group, t_in: int, shifts: bool):
        super().__init__()
        self.model = model
        self.rep_in, self.rep_out = Reps(f"{t_in}xT0p", group), Reps("T0p", group)
        self.translation_equivariant = shifts

    def forward(self, x):
        return self.model(x)


def equivariance(model: nn.Module, x: torch.Tensor, group, t_in: int) -> dict:
    """Max relative equivariance error per group (vorticity a pseudo-scalar), no shifts."""
    out = {}
    for label, g in (("declared", group), ("C4", C4())):
        report = equivariance_errors(_Declared(model, g, t_in, False), x, dtype=torch.float32)
        out[label] = report.max_error
        out[f"{label}_per_element"] = [r["error"] for r in report.rows]
    return out


def activation_megabytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Bytes of the tensors saved for backward in one training step (a peak-memory proxy)."""
    seen, total = set(), [0]

    def pack(t):
        key = (t.data_ptr(), t.numel(), t.dtype)
        if key not in seen:
            seen.add(key)
            total[0] += t.numel() * t.element_size()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = (model(x) - y).pow(2).mean()
    loss.backward()
    model.zero_grad(set_to_none=True)
    params = sum(q.numel() * q.element_size() for q in model.parameters())
    return (total[0] + params) / 2**20


def timings(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int = 3) -> dict:
    """Median forward and forward+backward milliseconds for one batch."""
    fwd, both = [], []

    def sync():
        if x.is_cuda:
            torch.cuda.synchronize(x.device)

    model.train()
    (model(x) - y).pow(2).mean().backward()  # warm-up
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            model(x)
        sync()
        t1 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        (model(x) - y).pow(2).mean().backward()
        sync()
        t2 = time.perf_counter()
        fwd.append(t1 - t0)
        both.append(t2 - t1)
    model.zero_grad(set_to_none=True)
    return {"forward_ms": 1e3 * float(np.median(fwd)),
            "forward_backward_ms": 1e3 * float(np.median(both))}


# ----- driver ----------------------------------------------------------------------------------
def run_model(name, width, p, preset, data, attrs, seed, device, work, progress):
    steps = p.steps[preset]
    torch.manual_seed(seed)
    model = build(name, width, p, attrs)
    augment = C4() if name == "FNO+aug" else None
    train = Windows(data["train"], p.t_in, steps, augment)
    valid = data["valid"].to(device)

    def valid_fn(m):
        pred = rollout(m, valid[:, : p.t_in], steps, p.batch_size)
        return relative_l2_percent(pred, valid[:, p.t_in : p.t_in + steps])

    cfg = TrainConfig(out_dir=str(work / f"{name}_seed{seed}"), epochs=p.epochs,
                      batch_size=p.batch_size, lr=p.lr, weight_decay=p.weight_decay,
                      optimizer="adam", loss="relative_l2", seed=seed, progress=progress,
                      device=str(device))
    trainer = Trainer(model, train, cfg, valid_fn=valid_fn)
    history = trainer.fit()
    model.load_state_dict(load_checkpoint(trainer.best_path)["model"])
    model.eval()

    test = data["test"].to(device)
    w0, long = test[:, : p.t_in], max(p.long_factors) * steps
    pred = rollout(model, w0, long, p.batch_size)
    truth = test[:, p.t_in : p.t_in + long]
    pred_rot = rollout(model, rotate90(w0), steps, p.batch_size)
    x, y = next(iter(torch.utils.data.DataLoader(train, batch_size=p.batch_size)))
    x, y = x.to(device), y.to(device)
    row = {
        "model": name, "seed": seed, "width": width,
        "parameters": real_parameter_count(model),
        "stored_parameters": sum(q.numel() * (2 if q.is_complex() else 1)
                                 for q in model.parameters()),
        "train_seconds_per_epoch": float(np.mean([h["seconds"] for h in history])),
        "best_valid_error": trainer.best,
        "test_error": relative_l2_percent(pred[:, :steps], truth[:, :steps]),
        "test_error_rotated90": relative_l2_percent(pred_rot, rotate90(truth[:, :steps])),
        "per_step_error": [relative_l2_percent(pred[:, k : k + 1], truth[:, k : k + 1])
                           for k in range(long)],
        "activation_memory_mb": activation_megabytes(model, x, y),
        **timings(model, x, y),
    }
    if "test_fine" in data:
        fine = data["test_fine"].to(device)
        pred_fine = rollout(model, fine[:, : p.t_in], steps, p.batch_size)
        row["test_error_superres"] = relative_l2_percent(pred_fine,
                                                         fine[:, p.t_in : p.t_in + steps])
    for f in p.long_factors:
        row[f"rollout_error_{f}x"] = relative_l2_percent(pred[:, : f * steps],
                                                         truth[:, : f * steps])
    eq = equivariance(model, w0[: min(4, len(w0))], group_from_string(attrs["group"]), p.t_in)
    row.update({f"equivariance_error_{k}": v for k, v in eq.items()})
    return row


def run(protocol: str = "quick", preset: str = "ns-sym", models=MODELS, seeds=None,
        cache: Path | None = None, out_dir: Path = RESULTS, device: str = "cpu",
        threads: int = 1, progress: bool = True) -> dict:
    """Run the benchmark and write JSON, markdown and PNG to ``out_dir``.

    Returns
    -------
    dict
        ``{"protocol", "preset", "rows": [...], "summary": [...], "files": {...}}``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {list(PROTOCOLS)}, got {protocol!r}")
    if preset not in ("ns-sym", "ns"):
        raise ValueError(f"preset: expected 'ns-sym' or 'ns', got {preset!r}")
    unknown = [m for m in models if m not in MODELS + OPTIONAL_MODELS]
    if unknown:
        raise ValueError(f"models: unknown {unknown}; expected names from "
                         f"{MODELS + OPTIONAL_MODELS}")
    torch.set_num_threads(threads)
    p = PROTOCOLS[protocol]
    seeds = tuple(seeds) if seeds is not None else p.seeds
    cache = Path(cache) if cache is not None else CACHE
    data, attrs, data_info = load_data(p, preset, cache, progress=progress)
    dev = torch.device(device if device != "auto" else
                       ("cuda" if torch.cuda.is_available() else "cpu"))
    target = real_parameter_count(build(REFERENCE, p.reference_width, p, attrs))
    widths = {}
    for name in models:
        if name == REFERENCE:
            widths[name] = (p.reference_width, target)
        elif name.startswith("FNO"):
            widths[name] = matched_width(name, p, attrs, official_fno2d_parameters(p))
        else:
            widths[name] = matched_width(name, p, attrs, target)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for seed in seeds:
            for name in models:
                row = run_model(name, widths[name][0], p, preset, data, attrs, seed, dev,
                                Path(work), progress)
                row["parameter_ratio"] = row["parameters"] / target
                rows.append(row)
                print(f"{name:>16} seed {seed}: test {row['test_error']:.2f}%  "
                      f"rot90 {row['test_error_rotated90']:.2f}%  "
                      f"{row['train_seconds_per_epoch']:.1f} s/epoch")
    result = {
        "protocol": dataclasses.asdict(p), "preset": preset, "device": str(dev),
        "threads": threads, "reference": REFERENCE, "reference_parameters": target,
        "data": data_info,
        "rows": rows, "summary": summarise(rows),
    }
    result["files"] = write_outputs(result, out_dir, f"ns_{protocol}_{preset}")
    return result


def merge(paths, out_dir: Path = RESULTS) -> dict:
    """Join runs of the same protocol and preset that trained different models (e.g. one
    process per model group, each pinned to its own core) into one result.

    Parameters
    ----------
    paths : sequence of path
        ``ns_<protocol>_<preset>.json`` files written by :func:`run`.
    out_dir : Path
        Where the merged ``ns_<protocol>_<preset>.{json,md,png}`` go.

    Returns
    -------
    dict
        As :func:`run`'s, with ``merged_from`` listing ``paths``.
    """
    parts = []
    for path in paths:
        part = read_results(path)
        missing = [k for k in ("protocol", "preset", "rows", "reference_parameters")
                   if k not in part]
        if missing:
            raise ValueError(f"paths: {path} has no {missing}; expected a file written by "
                             "grepsnet_sciml.benchmarks.ns.run")
        parts.append(part)
    if not parts:
        raise ValueError("paths: expected at least one ns_<protocol>_<preset>.json, got none")
    first = parts[0]
    keys = ("protocol", "preset", "device", "threads", "reference_parameters")
    rows, seen = [], set()
    for path, part in zip(paths, parts):
        if any(part.get(k) != first.get(k) for k in keys):
            raise ValueError(f"paths: {path} differs from {paths[0]} in {list(keys)}; "
                             "expected runs of the same protocol and settings")
        for row in part["rows"]:
            key = (row["model"], row["seed"])
            if key in seen:
                raise ValueError(f"paths: model {row['model']!r} seed {row['seed']} appears "
                                 "in more than one file")
            seen.add(key)
            rows.append(row)
    result = {**{k: first[k] for k in first if k not in ("rows", "summary", "files")},
              "rows": rows, "summary": summarise(rows), "merged_from": [str(p) for p in paths]}
    stem = f"ns_{first['protocol']['name']}_{first['preset']}"
    result["files"] = write_outputs(result, out_dir, stem)
    return result


def time_models(protocol: str = "quick", preset: str = "ns-sym", models=MODELS,
                repeats: int = 5, out_dir: Path = RESULTS, threads: int = 1) -> dict:
    """Forward and forward+backward time per batch at matched parameters, side by side.

    No data or training: random inputs of the protocol's shape; the models are timed in
    turn within each of ``repeats`` rounds (so machine load affects them alike) and the
    median is reported. Writes ``ns_timing_<protocol>_<preset>.{json,md}``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {list(PROTOCOLS)}, got {protocol!r}")
    if preset not in PRESET_GROUPS:
        raise ValueError(f"preset: expected 'ns-sym' or 'ns', got {preset!r}")
    torch.set_num_threads(threads)
    p = PROTOCOLS[protocol]
    attrs = {"group": PRESET_GROUPS[preset],
             "representations": json.dumps({"vorticity": "T0p", "velocity": "T1"})}
    target = real_parameter_count(build(REFERENCE, p.reference_width, p, attrs))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(p.batch_size, p.t_in, p.resolution, p.resolution, generator=gen)
    y = torch.randn(p.batch_size, 1, p.resolution, p.resolution, generator=gen)
    built = {}
    for name in models:
        width = p.reference_width if name == REFERENCE else matched_width(
            name, p, attrs, target)[0]
        torch.manual_seed(0)
        built[name] = (width, build(name, width, p, attrs))
    samples = {name: [] for name in models}
    for _ in range(repeats):
        for name, (_, model) in built.items():
            samples[name].append(timings(model, x, y, repeats=1))
    rows = []
    for name, (width, model) in built.items():
        rows.append({
            "model": name, "width": width, "parameters": real_parameter_count(model),
            "real_channels": _real_channels(model),
            "forward_ms": float(np.median([s["forward_ms"] for s in samples[name]])),
            "forward_backward_ms": float(np.median([s["forward_backward_ms"]
                                                    for s in samples[name]])),
        })
    ref = next((r for r in rows if r["model"] == REFERENCE), None)
    for r in rows:
        if ref is not None:
            r["time_ratio_to_reference"] = r["forward_backward_ms"] / ref["forward_backward_ms"]
    result = {"protocol": dataclasses.asdict(p), "preset": preset, "threads": threads,
              "batch": p.batch_size, "repeats": repeats, "rows": rows,
              "torch": torch.__version__}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"ns_timing_{protocol}_{preset}"
    lines = ["| model | width | params | real channels | fwd ms | fwd+bwd ms | ratio |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['width']} | {r['parameters']} | "
                     f"{r['real_channels']} | {r['forward_ms']:.0f} | "
                     f"{r['forward_backward_ms']:.0f} | "
                     f"{r.get('time_ratio_to_reference', math.nan):.2f} |")
    for path, text in ((stem.with_suffix(".json"), json.dumps(result, indent=2)),
                       (stem.with_suffix(".md"), "\n".join(lines) + "\n")):
        atomic_write_text(path, text)
    result["table"] = "\n".join(lines)
    return result


def _real_channels(model: nn.Module) -> int | None:
    """Real channels of the hidden field (``hidden.dim`` or ``width x |G|``)."""
    if isinstance(model, GRepsFNO2d):
        return model.hidden.dim
    if isinstance(model, GFNO2d):
        return model.blocks[0].rep_in.dim
    if isinstance(model, FNOBaseline):
        return model.hparams["width"]
    return None


_KEYS = ("parameters", "train_seconds_per_epoch", "forward_ms", "forward_backward_ms",
         "activation_memory_mb", "test_error", "test_error_rotated90",
         "equivariance_error_declared", "equivariance_error_C4", "rollout_error_2x",
         "rollout_error_5x", "test_error_superres")


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds of each reported number, per model."""
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        entry = {"model": name, "width": mine[0]["width"], "seeds": len(mine)}
        for key in _KEYS:
            values = [r[key] for r in mine if key in r]
            if values:
                entry[key] = float(np.mean(values))
                entry[f"{key}_std"] = float(np.std(values))
        out.append(entry)
    return out


def format_table(summary: list[dict]) -> str:
    """Markdown table of the summary."""
    head = ("| model | width | params | s/epoch | fwd ms | fwd+bwd ms | act. MB | test % | "
            "rot90 % | equiv. (declared) | equiv. (C4) | 2x % | 5x % | 2x res. % |")
    lines = [head, "|" + "---|" * 14]
    for e in summary:
        lines.append(
            f"| {e['model']} | {e['width']} | {e['parameters']:.0f} | "
            f"{e['train_seconds_per_epoch']:.1f} | {e['forward_ms']:.1f} | "
            f"{e['forward_backward_ms']:.1f} | {e['activation_memory_mb']:.0f} | "
            f"{e['test_error']:.2f} ± {e['test_error_std']:.2f} | "
            f"{e['test_error_rotated90']:.2f} | {e['equivariance_error_declared']:.1e} | "
            f"{e['equivariance_error_C4']:.1e} | {e.get('rollout_error_2x', math.nan):.2f} | "
            f"{e.get('rollout_error_5x', math.nan):.2f} | "
            f"{e.get('test_error_superres', math.nan):.2f} |"
        )
    return "\n".join(lines)


def write_outputs(result: dict, out_dir: Path, stem: str) -> dict:
    """Write ``stem.json``, ``stem.md`` and ``stem.png`` atomically; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {k: out_dir / f"{stem}.{k}" for k in ("json", "md", "png")}

    atomic_write_text(files["json"], json.dumps(result, indent=2))
    atomic_write_text(files["md"], format_table(result["summary"]) + "\n")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = [e["model"] for e in result["summary"]]
    ax1.bar(np.arange(len(names)) - 0.2, [e["test_error"] for e in result["summary"]], 0.4,
            label="test")
    ax1.bar(np.arange(len(names)) + 0.2,
            [e["test_error_rotated90"] for e in result["summary"]], 0.4, label="rotated 90")
    ax1.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
    ax1.set_ylabel("relative L2 over the rollout (%)")
    ax1.legend()
    for name in names:
        curves = [r["per_step_error"] for r in result["rows"] if r["model"] == name]
        ax2.plot(np.arange(1, len(curves[0]) + 1), np.mean(curves, 0), label=name)
    ax2.set_xlabel("rollout step")
    ax2.set_ylabel("relative L2 per step (%)")
    ax2.set_yscale("log")
    ax2.legend(fontsize=8)
    fig.suptitle(f"Navier-Stokes {result['preset']}, protocol {result['protocol']['name']}")
    fig.tight_layout()
    with atomic_path(files["png"], suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return {k: str(v) for k, v in files.items()}
