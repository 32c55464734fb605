"""Navier-Stokes benchmark: GRepsFNO against G-FNO (p4, p4m), FNO and FNO + augmentation.

Protocols (see ANCHORS.md, G-FNO section):

- ``paper``: G-FNO's protocol (64x64 stored, simulated at 256, 1000/100/100 trajectories,
  10 input frames, 10 (NS-Sym) or 20 (NS) rollout steps, modes 12, 4 layers, 100 epochs,
  Adam 1e-3, weight decay 1e-4, cosine schedule per batch, batch 20, best-validation
  checkpoint, 3 seeds). Sized for a GPU.
- ``quick``: the same physics stored at 32x32 (simulated at 64), 200/50/50 trajectories,
  modes 8, 20 epochs, one seed; meant for 2 CPU cores.
- ``late``: ``quick`` later in the flow's life: every trajectory is simulated for a burn-in
  of 100 time units before its frames are stored. The ``quick`` frames (``t = 1..20``) are
  the start of the spin-up from random initial fields; the NS-Sym flow at ``nu = 1e-4`` is
  not statistically stationary within 1000 time units (the solver's mean energy grows from
  0.003 at ``t = 2`` to 0.010 at ``t = 100`` and 0.056 at ``t = 1000``, still rising), so
  these frames are closer to the energies a long rollout meets, not on an attractor.
- ``smoke``: ``quick`` sizes with 20/5/5 trajectories and 2 epochs (end-to-end check).
- ``tiny``: a smoke test of the whole pipeline on tiny models (minutes).

Every row is an :class:`~grepsnet_sciml.solvers.config.ExperimentConfig` trained by
:func:`grepsnet_sciml.solvers.experiment.train` (one-step on the true history, teacher
forcing: every window of ``t_in`` frames of the first ``t_in + steps`` frames predicts the
next frame; no input normalization; ``best`` by the validation rollout error over ``steps``
steps) and evaluated by an autoregressive :func:`~grepsnet_sciml.solvers.rollout.rollout`.
Its TOML file is written to ``<out>/configs/ns_<protocol>_<preset>/<model>_seed<seed>.toml``:
``grepsnet train`` on it reproduces the row's training (its checkpoints are in the cache, under
``runs/ns_<protocol>_<preset>/``). Reported per model: parameters (the dimension of the
weight space; real numbers, complex weights count twice), training seconds per epoch,
forward and forward+backward milliseconds per batch, activation memory of a training step, test
relative L2 over the rollout (G-FNO's metric, %), the same on the test set rotated by
90 degrees about the origin grid point, the equivariance error under the dataset's declared
group (vorticity a pseudo-scalar) and under C4, and the rollout error at 2x and 5x the
training horizon. Widths are chosen so that every model's parameter count is within 10% of
G-FNO-p4's (the count and the ratio are reported), FNO's to the official FNO2d's count;
GRepsFNO runs at its own real hidden channels, modes, depth and forcing channel per protocol
(:data:`OWN`: 48 channels, modes 10, 3 layers and the data's forcing as an input channel on
the quick data), with the model's other defaults (block MLPs through two thirds of its
width).

Data are generated once into resumable zarr stores in the cache, one per split with its
own derived seed (:func:`~grepsnet_sciml.datasets.splits.generate_to_store`), or read from
``data``: a store of ours split into train/valid/test by the protocol's sizes (in that
order), a folder of splits written by :func:`~grepsnet_sciml.datasets.splits.generate_splits`
(the first samples of each), or an FNO/G-FNO ``.mat`` file (``u`` of shape ``(N, X, Y, T)``).
The selected samples and frames are copied into stores in the cache that the configs name.

Usage (``benchmarks/ns.py`` takes the same options)::

    grepsnet bench ns --protocol quick --preset ns-sym
    grepsnet bench ns --protocol tiny --preset ns-sym --models GRepsFNO GFNO-p4
    grepsnet bench ns --protocol quick --timing-only --models GRepsFNO GFNO-p4
    grepsnet bench ns --data ns_V1e-4.mat --n-train 1000 --n-valid 100 --n-test 100
    grepsnet bench ns --merge runs/a/ns_quick_ns-sym.json runs/b/ns_quick_ns-sym.json

Writes ``benchmarks/results/ns_<protocol>_<preset>.{json,md,png}`` (timing only:
``ns_timing_<protocol>_<preset>.{json,md}``) under the working directory unless
``out_dir`` says otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.io
import torch
import xarray as xr
from torch import nn

from grepsnet_sciml import Reps
from grepsnet_sciml._atomic import atomic_path, atomic_write_text
from grepsnet_sciml.datasets.contract import DatasetSpec, group_elements
from grepsnet_sciml.datasets.loaders import load_fno_mat
from grepsnet_sciml.datasets.navier_stokes import FORCING_AMPLITUDE, generate
from grepsnet_sciml.datasets.splits import generate_to_store, open_splits, split_seed
from grepsnet_sciml.datasets.storage import SPLITS_MANIFEST, write_dataset
from grepsnet_sciml.groups import C4, D4, group_from_string
from grepsnet_sciml.layers.spectral import count_free_parameters
from grepsnet_sciml.models.baselines import FNOBaseline
from grepsnet_sciml.models.gfno import GFNO2d
from grepsnet_sciml.models.grepsfno import GRepsFNO2d
from grepsnet_sciml.solvers.config import DataConfig, ExperimentConfig, save_config
from grepsnet_sciml.solvers.data import field_layout, field_trajectories, open_dataset
from grepsnet_sciml.solvers.experiment import train
from grepsnet_sciml.solvers.forcing import ForcingInput
from grepsnet_sciml.solvers.registry import build_core, get_model, model_config
from grepsnet_sciml.solvers.rollout import rollout
from grepsnet_sciml.solvers.trainer import TrainConfig, load_checkpoint

from ._results import claim, read_results, variant

RESULTS = Path("benchmarks") / "results"
"""Default output folder (relative to the working directory: the repository root)."""
CACHE = Path("runs") / "ns_data"
"""Default data cache (relative to the working directory)."""
MODELS = ("GRepsFNO", "GFNO-p4", "GFNO-p4m", "GFNO-p4m-pseudo", "FNO", "FNO+aug")
"""The models a run trains by default (display names of :mod:`~grepsnet_sciml.solvers.registry`)."""
OPTIONAL_MODELS = ("GRepsFNO-C4",)
"""Also accepted: GRepsFNO's design over C4 (rotations only, reflections not built in),
matched in parameters to G-FNO-p4 like the baselines."""
REFERENCE = "GFNO-p4"
OWN_WIDTH = ("GRepsFNO",)
"""Models run at their own architecture (:data:`OWN`; their cost is set by the channels,
modes and depth, not the parameters), not matched in parameters as the other models are."""
OWN = {
    "quick": {"channels": 48, "modes": 10, "n_layers": 3, "forcing_channel": "auto"},
    "smoke": {"channels": 48, "modes": 10, "n_layers": 3, "forcing_channel": "auto"},
    "late": {"channels": 48, "modes": 8, "n_layers": 4, "forcing_channel": "off",
             "mlp_expansion": 1.0},
}
"""The architecture of the :data:`OWN_WIDTH` models per protocol name, the most accurate of
those measured there at no more than G-FNO-p4's cost (README): ``channels // |G|`` copies
of ``R`` (6 over D4, GRepsFNO's default width; 12 over D2-diagonal), Fourier ``modes`` and
``n_layers``, and ``forcing_channel`` (``"auto"``: the data's named forcing as one more
input channel, :mod:`~grepsnet_sciml.solvers.forcing`). On the quick 32x32 data ``6 x R``,
modes 10, 3 layers, block MLPs through ``4 x R`` (the model's default ``mlp_expansion``)
and the forcing channel: 9.15% over 3 seeds at 0.96x G-FNO-p4's seconds per epoch (9.55%
with full-width MLPs, 10.45% without the forcing channel; ``5 x R`` with 4 layers 9.59%
at about 1.0x); on the later-in-time ``late`` data
``6 x R`` with modes 8 and 4 layers, full-width block MLPs, no forcing channel (13.88%
against 17.34% for ``5 x R`` at modes 10, seed 0; neither the forcing channel nor the
narrower MLPs are measured there). Other keys are passed to the model's config. Other
protocols:
:data:`OWN_DEFAULT`."""
OWN_DEFAULT = {"channels": 48, "modes": None, "n_layers": None, "forcing_channel": "auto"}
"""The :data:`OWN` entry where it does not name the protocol (``modes`` and ``n_layers``
None: the protocol's)."""
PRESET_GROUPS = {"ns-sym": "D4()", "ns": "D2('diagonal')"}
FORCINGS = {"ns-sym": "symmetric", "ns": "fno"}
"""The forcing of an FNO/G-FNO ``.mat`` file of each preset (:func:`load_fno_mat`)."""


def preset_forcing(preset: str) -> tuple[str, float]:
    """``(name, amplitude)`` of the preset's forcing, as a model's forcing channel takes it."""
    return FORCINGS[preset], FORCING_AMPLITUDE
OVERRIDES = ("n_train", "n_valid", "n_test", "t_in", "steps", "epochs", "valid_every")
"""Protocol settings :func:`run` takes as keyword overrides."""


@dataclass(frozen=True)
class Protocol:
    """Sizes of one benchmark protocol (``valid_every``: validation cadence in epochs;
    ``burn_in``: simulated time before the first stored frame)."""

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
    valid_every: int = 1
    burn_in: float = 0.0


PROTOCOLS = {
    "paper": Protocol("paper", 64, 256, 1000, 100, 100, modes=12, epochs=100,
                      steps={"ns-sym": 10, "ns": 20}, seeds=(0, 1, 2)),
    "quick": Protocol("quick", 32, 64, 200, 50, 50, modes=8, epochs=20,
                      steps={"ns-sym": 10, "ns": 10}),
    "late": Protocol("late", 32, 64, 200, 50, 50, modes=8, epochs=20,
                     steps={"ns-sym": 10, "ns": 10}, burn_in=100.0),
    "smoke": Protocol("smoke", 32, 64, 20, 5, 5, modes=8, epochs=2,
                      steps={"ns-sym": 10, "ns": 10}),
    "tiny": Protocol("tiny", 16, 32, 20, 5, 5, modes=4, epochs=2, steps={"ns-sym": 3, "ns": 3},
                     reference_width=3, t_in=4, batch_size=10, max_width=16),
}


def make_protocol(name: str, preset: str, **overrides) -> Protocol:
    """The protocol ``name`` with the settings of :data:`OVERRIDES` that are given replaced.

    ``steps`` replaces the rollout steps of ``preset``. ValueError naming a bad name,
    preset or setting.
    """
    if name not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {list(PROTOCOLS)}, got {name!r}")
    if preset not in PRESET_GROUPS:
        raise ValueError(f"preset: expected 'ns-sym' or 'ns', got {preset!r}")
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise ValueError(f"overrides: unknown settings {unknown}; expected some of {OVERRIDES}")
    given = {k: v for k, v in overrides.items() if v is not None}
    for key, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key}: expected a positive integer, got {value!r}")
    p = PROTOCOLS[name]
    if "steps" in given:
        given["steps"] = {**p.steps, preset: given["steps"]}
    return dataclasses.replace(p, **given)


# ----- data ------------------------------------------------------------------------------------
def _frames(p: Protocol, preset: str) -> dict[str, tuple[int, int]]:
    """``split -> (trajectories, frames)``: train/valid ``t_in + steps``, test the 5x rollout."""
    steps = p.steps[preset]
    return {"train": (p.n_train, p.t_in + steps), "valid": (p.n_valid, p.t_in + steps),
            "test": (p.n_test, p.t_in + max(p.long_factors) * steps)}


def _check_store(path: Path, n: int, frames: int) -> xr.Dataset:
    ds = open_dataset(path)
    if (ds.sizes["sample"], ds.sizes["time"]) != (n, frames):
        raise ValueError(f"{path}: holds {ds.sizes['sample']} trajectories of "
                         f"{ds.sizes['time']} frames; expected {n} of {frames} (remove it to "
                         "regenerate)")
    return ds


def _generated(p: Protocol, preset: str, cache: Path, seed: int, progress: bool):
    sizes = _frames(p, preset)
    fine = 2 * p.resolution
    if fine <= p.sim_resolution:  # zero-shot super-resolution: same test trajectories, 2x finer
        sizes["test_fine"] = (p.n_test, p.t_in + p.steps[preset])
    stores = {}
    for split, (n, frames) in sizes.items():
        burn = f"_b{p.burn_in:g}" if p.burn_in else ""
        path = cache / f"ns_{preset}_{p.name}_{split}_seed{seed}_n{n}_t{frames}{burn}.zarr"
        if not path.exists():  # an interrupted write resumes
            kwargs = {"preset": preset, "resolution": fine if split == "test_fine" else
                      p.resolution, "sim_resolution": p.sim_resolution,
                      "t_final": p.burn_in + frames, "t_start": p.burn_in,
                      "record_every": 1.0, "progress": False}
            generate_to_store(generate, path, n, seed=split_seed(seed, split.split("_")[0]),
                              kwargs=kwargs, progress=progress)
        _check_store(path, n, frames)
        stores[split] = path
    info = {"source": "generated", "seed": seed}
    if "test_fine" in stores:
        test, fine_ds = open_dataset(stores["test"]), open_dataset(stores["test_fine"])
        n = fine_ds.sizes["time"]
        if not np.array_equal(fine_ds["time"].values, test["time"].values[:n]):
            raise ValueError(f"{stores['test_fine']}: its frame times differ from the test "
                             f"set's ({stores['test']})")
        coarse = fine_ds["vorticity"].values[..., ::2, ::2]
        info.update(superres_resolution=fine, superres_times_aligned=True,
                    superres_subsample_mismatch=float(np.abs(
                        coarse - test["vorticity"].values[:, :n]).max()))
    return stores, info


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
    for f in files:
        if f != path:
            digest.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


_EXPECTED = ("expected a zarr/netCDF store written by grepsnet_sciml.datasets, a folder of "
             "splits written by generate_splits, or an FNO/G-FNO .mat file (variable 'u' of "
             "shape (N, X, Y, T))")


def _mat_times(path: Path) -> np.ndarray | None:
    """Frame times ``1 .. T`` for a ``.mat`` file without ``t`` (G-FNO's unit record steps).

    None when the file has ``t`` or is not a readable MATLAB file with a 4-d ``u`` (then
    :func:`load_fno_mat` names the problem).
    """
    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:  # MATLAB v7.3 stores axes reversed
                shapes = {k: v.shape[::-1] for k, v in f.items() if isinstance(v, h5py.Dataset)}
        else:
            shapes = {name: shape for name, shape, _ in scipy.io.whosmat(path)}
    except (ValueError, OSError, TypeError, scipy.io.matlab.MatReadError):
        return None
    if "t" in shapes or len(shapes.get("u", ())) != 4:
        return None
    return np.arange(1, shapes["u"][3] + 1, dtype=np.float64)


def _open_user(path: Path, preset: str) -> tuple[str, dict[str, xr.Dataset]]:
    """``(format, datasets)``: one ``"all"`` dataset, or one per split of a split folder."""
    if not path.exists():
        raise FileNotFoundError(f"data: {path} does not exist; {_EXPECTED}")
    try:
        if path.is_dir() and (path / SPLITS_MANIFEST).exists():
            return "splits", open_splits(path)
        if path.suffix.lower() == ".mat":
            return "mat", {"all": load_fno_mat(path, FORCINGS[preset], time=_mat_times(path),
                                               include_initial=False)}
        return "store", {"all": open_dataset(path)}
    except ValueError as err:
        raise ValueError(f"data: cannot read {path} ({err}); {_EXPECTED}") from err


class _Selection:
    """``make_chunk`` of :func:`write_dataset`: chunks of ``ds[samples, :frames]``."""

    def __init__(self, ds: xr.Dataset, start: int, frames: int):
        self.ds, self.start, self.frames = ds, start, frames

    def __call__(self, first: int, n: int) -> xr.Dataset:
        sub = self.ds.isel(sample=slice(self.start + first, self.start + first + n),
                           time=slice(0, self.frames))
        return sub.assign_coords(sample=np.arange(first, first + n)).load()


def _user_data(path: Path, p: Protocol, preset: str, cache: Path, progress: bool):
    path = Path(path)
    fmt, sets = _open_user(path, preset)
    digest = sha256_of(path)
    sizes = _frames(p, preset)
    first = sets.get("all", next(iter(sets.values())))
    spec = DatasetSpec.from_dataset(first)
    spec.require(first, "field", ("vorticity",))
    n_time = min(ds.sizes["time"] for ds in sets.values())
    need = p.t_in + p.steps[preset]
    if n_time < need:
        raise ValueError(f"data: {path} has {n_time} frames per trajectory; expected at least "
                         f"t_in + steps = {need}")
    factors = [f for f in p.long_factors if p.t_in + f * p.steps[preset] <= n_time]
    sizes["test"] = (p.n_test, min(n_time, sizes["test"][1]))
    chosen, start = {}, 0  # every size is checked before any store is written
    for split, (n, frames) in sizes.items():
        if fmt == "splits":
            if split not in sets:
                raise ValueError(f"data: {path} has no {split} split; expected train, valid "
                                 "and test stores")
            ds, offset, where = sets[split], 0, f" in its {split} split"
        else:
            ds, offset, where = sets["all"], start, ""
            start += n
        if ds.sizes["sample"] < offset + n:
            raise ValueError(f"data: {path} has {ds.sizes['sample']} trajectories{where}; "
                             f"expected at least {offset + n} for --n-train {p.n_train}, "
                             f"--n-valid {p.n_valid}, --n-test {p.n_test}")
        chosen[split] = (ds, offset, n, frames)
    stores = {}
    for split, (ds, offset, n, frames) in chosen.items():
        store = cache / f"user_{digest[:16]}" / f"{split}_from{offset}_n{n}_t{frames}.zarr"
        if not store.exists():
            write_dataset(store, _Selection(ds, offset, frames), n, 32,
                          config={"source": str(path), "sha256": digest, "split": split,
                                  "first": offset, "frames": frames}, progress=progress)
        _check_store(store, n, frames)
        stores[split] = store
    info = {"source": "user", "path": str(path), "sha256": digest, "format": fmt,
            "grid": [int(first.sizes["x"]), int(first.sizes["y"])], "frames": int(n_time),
            "long_factors": factors}
    return stores, info


def prepare_data(p: Protocol, preset: str, cache: Path, data: Path | None = None,
                 seed: int = 0, progress: bool = True) -> tuple[dict[str, Path], dict]:
    """The stores of every split and a description of the data.

    Parameters
    ----------
    p : Protocol
    preset : {"ns-sym", "ns"}
    cache : Path
        Folder of the generated stores (and of the copies of ``data``'s selection).
    data : Path, optional
        The user's data (see the module docstring); by default the protocol's are generated.
    seed : int
        Global seed of the generated data (each split derives its own).
    progress : bool

    Returns
    -------
    stores : dict
        ``split -> store``: ``train`` and ``valid`` hold ``t_in + steps`` frames, ``test``
        ``t_in + max(long_factors) * steps`` (fewer when ``data`` has fewer), plus
        ``test_fine`` (the test trajectories at 2x resolution) when the protocol has it.
    info : dict
        ``source``; generated: the super-resolution check; ``data``: its path, sha256,
        format, grid, frames and the long-rollout factors that fit.

    Raises
    ------
    FileNotFoundError, ValueError
        ``data`` missing, foreign, too short or too small for the split sizes (named).
    """
    cache = Path(cache)
    if data is not None:
        return _user_data(Path(data), p, preset, cache, progress)
    return _generated(p, preset, cache, seed, progress)


# ----- models ----------------------------------------------------------------------------------
def real_parameter_count(model: nn.Module) -> int:
    """Free real parameters: equivariant layers count their weight space, complex counts 2x."""
    if any(hasattr(m, "n_free") for m in model.modules()):
        return count_free_parameters(model)
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())


def own_architecture(p: Protocol) -> dict:
    """The :data:`OWN` entry of protocol ``p`` (:data:`OWN_DEFAULT` if it names none)."""
    return OWN.get(p.name, OWN_DEFAULT)


def architecture(name: str, p: Protocol, n_layers: int | None = None,
                 modes: int | None = None) -> dict:
    """``{"n_layers", "modes"}`` of model ``name``'s row, and for the :data:`OWN_WIDTH`
    models the other settings of their :data:`OWN` entry (``"forcing_channel"``, ...): the
    protocol's (:data:`OWN`'s for the :data:`OWN_WIDTH` models) unless a sweep replaces
    them."""
    if name not in OWN_WIDTH:
        return {"n_layers": n_layers or p.n_layers, "modes": modes or p.modes}
    own = own_architecture(p)
    config = {k: v for k, v in own.items() if k not in ("channels", "n_layers", "modes")}
    return {"n_layers": n_layers or own["n_layers"] or p.n_layers,
            "modes": modes or own["modes"] or p.modes, **config}


def _core(name: str, width: int, p: Protocol, group: str, forcing=None,
          n_layers: int | None = None, modes: int | None = None) -> nn.Module:
    """The registry's model ``name`` at ``width`` for ``t_in`` vorticity frames over ``group``.

    ``forcing``: the data's named forcing (see :func:`~grepsnet_sciml.solvers.registry.build_core`);
    ``n_layers``, ``modes``: Fourier layers and modes instead of the protocol's.
    """
    g = group_from_string(group)
    cfg = model_config(get_model(name).name, {"width": width,
                                              **architecture(name, p, n_layers, modes)})
    return build_core(cfg, Reps(f"{p.t_in}xT0p", g), Reps("T0p", g), forcing)


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


def matched_width(name: str, p: Protocol, group: str, target: int, forcing=None,
                  n_layers: int | None = None, modes: int | None = None) -> tuple[int, int]:
    """The width whose parameter count is closest to ``target``, and that count."""
    best = None
    for width in range(2, p.max_width + 1):
        count = real_parameter_count(_core(name, width, p, group, forcing, n_layers, modes))
        if best is None or abs(count - target) < abs(best[1] - target):
            best = (width, count)
        if count > target:
            break
    return best


def widths(models, p: Protocol, group: str, forcing=None, width: int | None = None,
           n_layers: int | None = None, modes: int | None = None) -> tuple[dict, int]:
    """``({model: (width, parameters)}, target)``: G-FNO-p4's count matched, FNO the official,
    the :data:`OWN_WIDTH` models at the real channels of :data:`OWN`; every model at
    ``width`` instead when it is given (a width sweep). ``n_layers`` and ``modes`` (depth and
    mode sweeps) change the counted models, not the G-FNO-p4 reference."""
    target = real_parameter_count(_core(REFERENCE, p.reference_width, p, group))
    arch = {"n_layers": n_layers, "modes": modes}
    if width is not None:
        return {name: (width, real_parameter_count(_core(name, width, p, group, forcing,
                                                         **arch)))
                for name in models}, target
    out = {}
    for name in models:
        if name == REFERENCE:
            out[name] = (p.reference_width, target)
        elif name in OWN_WIDTH:
            channels = own_architecture(p)["channels"]
            width = max(1, channels // group_from_string(group).order)
            out[name] = (width, real_parameter_count(_core(name, width, p, group, forcing,
                                                           **arch)))
        elif name.startswith("FNO"):
            out[name] = matched_width(name, p, group, official_fno2d_parameters(p), forcing,
                                      **arch)
        else:
            out[name] = matched_width(name, p, group, target, forcing, **arch)
    return out, target


def row_config(name: str, width: int, p: Protocol, preset: str, stores: dict, seed: int,
               run_dir: Path, device: str = "cpu", progress: bool = True,
               n_layers: int | None = None, modes: int | None = None) -> ExperimentConfig:
    """The experiment of one row: G-FNO's training settings, no normalization.

    Adam (``lr``, L2 ``weight_decay``), cosine schedule per batch, relative-L2 loss, one-step
    windows of the train store, ``best`` by the validation rollout over ``steps`` steps.
    ``n_layers`` and ``modes`` replace the protocol's Fourier layers and modes.
    """
    model = model_config(get_model(name).name, {"width": width,
                                                **architecture(name, p, n_layers, modes)})
    data = DataConfig(train=str(stores["train"]), valid=str(stores["valid"]), t_in=p.t_in,
                      t_out=1, valid_rollout_steps=p.steps[preset], normalize=False)
    train_cfg = TrainConfig(out_dir=str(run_dir), epochs=p.epochs, batch_size=p.batch_size,
                            lr=p.lr, weight_decay=p.weight_decay, optimizer="adam",
                            loss="relative_l2", seed=seed, progress=progress, device=device,
                            schedule="cosine", valid_every=p.valid_every)
    return ExperimentConfig(data=data, model=model, train=train_cfg)


# ----- evaluation ------------------------------------------------------------------------------
def relative_l2_percent(pred: torch.Tensor, true: torch.Tensor) -> float:
    """G-FNO's metric: ``100 x mean_b ||pred_b - true_b|| / ||true_b||`` over all frames."""
    num = (pred - true).flatten(1).norm(dim=1)
    return float(100 * (num / true.flatten(1).norm(dim=1)).mean())


def _rollout(model: nn.Module, w0: torch.Tensor, n_steps: int, layout) -> torch.Tensor:
    """``(B, t_in, X, Y) -> (B, n_steps, X, Y)`` by :func:`rollout` (NaN after a blow-up)."""
    return rollout(model, w0[:, :, None], n_steps, layout=layout).states[:, :, 0].cpu()


def rotate90(w: torch.Tensor) -> torch.Tensor:
    """Rotate fields by 90 degrees about the origin grid point (vorticity keeps its sign)."""
    return C4().act_grid(1, w)


def equivariance(model: nn.Module, x: torch.Tensor, elements, t_in: int) -> dict:
    """Max relative equivariance error over the declared elements and over C4 (no shifts).

    ``declared``: every :class:`~grepsnet_sciml.datasets.contract.SymmetryElement` of the
    data, its point-group part with its shift (vorticity a pseudo-scalar),
    ``||f(e . x) - e . f(x)|| / ||e . f(x)||``; ``C4``: the rotations about the origin grid
    point. ``x`` is ``(batch, t_in, N, N)``; errors in float64 from a float32 model.
    """
    # every planar element of interest lies in D4, so the types are read over D4
    reps_in, reps_out = Reps(f"{t_in}xT0p", D4()), Reps("T0p", D4())
    rotations = group_elements(C4())
    out = {}
    with torch.no_grad():
        fx = model(x).double()
        for label, chosen in (("declared", elements), ("C4", rotations)):
            errors = []
            for e in chosen:
                lhs = model(e.act(reps_in, x)).double()
                rhs = e.act(reps_out, fx)
                errors.append(float((lhs - rhs).norm() / rhs.norm().clamp_min(1e-300)))
            out[label] = max(errors)
            out[f"{label}_per_element"] = errors
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
def run_model(cfg: ExperimentConfig, name: str, p: Protocol, preset: str, stores: dict,
              long_factors) -> dict:
    """Train the row ``cfg`` with :func:`train` and evaluate its ``best`` checkpoint."""
    steps = p.steps[preset]
    trainer, history = train(cfg, overwrite=True)
    model = trainer.model
    model.load_state_dict(load_checkpoint(trainer.best_path)["model"])
    model.eval()
    windows = getattr(trainer.train_set, "base", trainer.train_set)
    layout = windows.layout
    device = next(model.parameters()).device

    test_ds = open_dataset(stores["test"])
    test = field_trajectories(test_ds, field_layout(test_ds))[:, :, 0]
    long = (test.shape[1] - p.t_in) if not long_factors else max(long_factors) * steps
    w0 = test[:, : p.t_in]
    pred = _rollout(model, w0, long, layout)
    truth = test[:, p.t_in : p.t_in + long]
    pred_rot = _rollout(model, rotate90(w0), steps, layout)
    x, y = next(iter(torch.utils.data.DataLoader(windows, batch_size=p.batch_size)))
    x, y = x.to(device), y.to(device)
    core = model.core
    row = {
        "model": name, "seed": cfg.train.seed, "width": cfg.model.width,
        "n_layers": cfg.model.n_layers, "modes": cfg.model.modes,
        "parameters": real_parameter_count(core),
        "stored_parameters": sum(q.numel() * (2 if q.is_complex() else 1)
                                 for q in core.parameters()),
        "train_seconds_per_epoch": float(np.mean([h["seconds"] for h in history])),
        "best_valid_error": 100 * trainer.best,
        "test_error": relative_l2_percent(pred[:, :steps], truth[:, :steps]),
        "test_error_rotated90": relative_l2_percent(pred_rot, rotate90(truth[:, :steps])),
        "per_step_error": [relative_l2_percent(pred[:, k : k + 1], truth[:, k : k + 1])
                           for k in range(long)],
        "activation_memory_mb": activation_megabytes(model, x, y),
        **timings(model, x, y),
    }
    if "test_fine" in stores:
        fine_ds = open_dataset(stores["test_fine"])
        fine = field_trajectories(fine_ds, field_layout(fine_ds))[:, :, 0]
        pred_fine = _rollout(model, fine[:, : p.t_in], steps, layout)
        row["test_error_superres"] = relative_l2_percent(pred_fine,
                                                         fine[:, p.t_in : p.t_in + steps])
    for f in long_factors:
        row[f"rollout_error_{f}x"] = relative_l2_percent(pred[:, : f * steps],
                                                         truth[:, : f * steps])
    elements = DatasetSpec.from_dataset(test_ds).elements
    eq = equivariance(model, w0[: min(4, len(w0))].to(device), elements, p.t_in)
    row.update({f"equivariance_error_{k}": v for k, v in eq.items()})
    return row


def run(protocol: str = "quick", preset: str = "ns-sym", models=MODELS, seeds=None,
        cache: Path | None = None, out_dir: Path = RESULTS, device: str = "cpu",
        threads: int = 1, progress: bool = True, data: Path | None = None,
        width: int | None = None, n_layers: int | None = None, modes: int | None = None,
        **overrides) -> dict:
    """Run the benchmark and write JSON, markdown, PNG and one TOML per row to ``out_dir``.

    Parameters
    ----------
    protocol, preset : str
        A key of :data:`PROTOCOLS`; ``"ns-sym"`` or ``"ns"``.
    models : sequence of str
        Display names from :data:`MODELS` and :data:`OPTIONAL_MODELS`.
    seeds : sequence of int, optional
        Training seeds (default: the protocol's).
    cache : Path, optional
        Data stores and training runs (default :data:`CACHE`).
    out_dir : Path
        Results; the configs go to
        ``out_dir/configs/ns_<protocol>_<preset>/<model>_seed<seed>.toml``.
    device : {"cpu", "cuda", "auto"}
    threads : int
        Torch threads.
    progress : bool
    data : Path, optional
        The user's data instead of generated (see :func:`prepare_data`); its path and
        sha256 go into the JSON.
    width : int, optional
        Hidden width of every model instead of the parameter-matched one (a width sweep:
        the rows, configs and run folders are named ``<model>_w<width>_seed<seed>``).
    n_layers : int, optional
        Fourier layers of every model instead of the protocol's (a depth sweep: ``_L<n>``
        is added to the names).
    modes : int, optional
        Fourier modes of every model instead of the protocol's (a mode sweep: ``_m<modes>``
        is added to the names; even grids need ``N >= 2 modes``).
    **overrides
        Settings of :data:`OVERRIDES` (``n_train``, ``t_in``, ``epochs``, ``valid_every``,
        ...) replacing the protocol's.

    Returns
    -------
    dict
        ``{"protocol", "preset", "rows": [...], "summary": [...], "files": {...}}``.
    """
    p = make_protocol(protocol, preset, **overrides)
    unknown = [m for m in models if m not in MODELS + OPTIONAL_MODELS]
    if unknown:
        raise ValueError(f"models: unknown {unknown}; expected names from "
                         f"{MODELS + OPTIONAL_MODELS}")
    torch.set_num_threads(threads)
    seeds = tuple(seeds) if seeds is not None else p.seeds
    cache = Path(cache) if cache is not None else CACHE
    stores, data_info = prepare_data(p, preset, cache, data, progress=progress)
    long_factors = tuple(data_info.get("long_factors", p.long_factors))
    layout = field_layout(open_dataset(stores["train"]))
    group = repr(layout.group)
    dev = device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    forcing = (layout.forcing, layout.forcing_amplitude) if layout.forcing else None
    for key, value in (("width", width), ("n_layers", n_layers), ("modes", modes)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"{key}: expected a positive integer or None, got {value!r}")
    matched, target = widths(models, p, group, forcing, width, n_layers, modes)
    runs = cache / "runs" / f"ns_{protocol}_{preset}"
    rows = []
    for seed in seeds:
        for name in models:
            stem = (name + ("" if width is None else f"_w{width}")
                    + ("" if n_layers is None else f"_L{n_layers}")
                    + ("" if modes is None else f"_m{modes}") + f"_seed{seed}")
            cfg = row_config(name, matched[name][0], p, preset, stores, seed,
                             runs / stem, dev, progress, n_layers, modes)
            toml = Path(out_dir) / "configs" / f"ns_{protocol}_{preset}" / f"{stem}.toml"
            save_config(cfg, toml)
            row = run_model(cfg, name, p, preset, stores, long_factors)
            row["parameter_ratio"] = row["parameters"] / target
            row["config"] = str(toml)
            rows.append(row)
            print(f"{name:>16} seed {seed}: test {row['test_error']:.2f}%  "
                  f"rot90 {row['test_error_rotated90']:.2f}%  "
                  f"{row['train_seconds_per_epoch']:.1f} s/epoch")
    result = {
        "protocol": dataclasses.asdict(p), "preset": preset, "device": dev,
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
            claim(seen, row)
            rows.append(row)
    result = {**{k: first[k] for k in first if k not in ("rows", "summary", "files")},
              "rows": rows, "summary": summarise(rows), "merged_from": [str(p) for p in paths]}
    stem = f"ns_{first['protocol']['name']}_{first['preset']}"
    result["files"] = write_outputs(result, out_dir, stem)
    return result


def time_models(protocol: str = "quick", preset: str = "ns-sym", models=MODELS,
                repeats: int = 5, out_dir: Path = RESULTS, threads: int = 1,
                width: int | None = None, n_layers: int | None = None,
                modes: int | None = None) -> dict:
    """Forward and forward+backward time per batch at matched parameters, side by side.

    No data or training: random inputs of the protocol's shape; the models are timed in
    turn within each of ``repeats`` rounds (so machine load affects them alike) and the
    median is reported; ``ratio_to_reference`` is the median over rounds of each
    model's forward+backward time over G-FNO-p4's in the same round (with quartiles,
    :func:`side_by_side`). ``width`` sets every model's width instead of the matched one,
    ``n_layers`` and ``modes`` every model's Fourier layers and modes instead of the
    protocol's.
    Writes ``ns_timing_<protocol>_<preset>.{json,md}``.
    """
    p = make_protocol(protocol, preset)
    torch.set_num_threads(threads)
    group = PRESET_GROUPS[preset]
    forcing = preset_forcing(preset)
    matched, _ = widths(models, p, group, forcing, width, n_layers, modes)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(p.batch_size, p.t_in, p.resolution, p.resolution, generator=gen)
    y = torch.randn(p.batch_size, 1, p.resolution, p.resolution, generator=gen)
    built = {}
    for name in models:
        torch.manual_seed(0)
        built[name] = (matched[name][0], _core(name, matched[name][0], p, group, forcing,
                                               n_layers, modes))
    medians = side_by_side({name: model for name, (_, model) in built.items()}, x, y, repeats,
                           reference=REFERENCE if REFERENCE in built else None)
    rows = []
    for name, (width, model) in built.items():
        rows.append({"model": name, "width": width, "parameters": real_parameter_count(model),
                     "real_channels": _real_channels(model), **medians[name]})
    result = {"protocol": dataclasses.asdict(p), "preset": preset, "threads": threads,
              "batch": p.batch_size, "repeats": repeats, "rows": rows,
              "torch": torch.__version__}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"ns_timing_{protocol}_{preset}"
    lines = ["| model | width | params | real channels | fwd ms | fwd+bwd ms | "
             "ratio (quartiles) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['width']} | {r['parameters']} | "
                     f"{r['real_channels']} | {r['forward_ms']:.0f} | "
                     f"{r['forward_backward_ms']:.0f} | "
                     f"{ratio_text(r) if 'ratio_to_reference' in r else 'n/a'} |")
    write_table(stem, result, lines)
    result["table"] = "\n".join(lines)
    return result


def write_table(stem: Path, payload: dict, lines: list[str]) -> None:
    """Write ``<stem>.json`` (``payload``) and ``<stem>.md`` (the Markdown ``lines``),
    each atomically."""
    stem = Path(stem)
    atomic_write_text(stem.with_suffix(".json"), json.dumps(payload, indent=2))
    atomic_write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")


def side_by_side(models: dict, x: torch.Tensor, y: torch.Tensor, repeats: int,
                 reference: str | None = None) -> dict:
    """``{name: {"forward_ms", "forward_backward_ms"}}``: medians over ``repeats`` rounds, each
    round timing every model once in turn (:func:`timings`; every other round in reverse
    order), so machine load affects them alike.

    With a ``reference`` (one of ``models``) each entry also has ``ratio_to_reference``, the
    median over rounds of the forward+backward time over the reference's in the same round,
    and its quartiles ``ratio_to_reference_q25`` / ``_q75``: paired within rounds, steadier
    than a ratio of medians on a loaded machine.
    """
    samples = {name: [] for name in models}
    names = list(models)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            samples[name].append(timings(models[name], x, y, repeats=1))
    out = {name: {key: float(np.median([t[key] for t in times]))
                  for key in ("forward_ms", "forward_backward_ms")}
           for name, times in samples.items()}
    if reference is not None:
        ref = [t["forward_backward_ms"] for t in samples[reference]]
        for name, times in samples.items():
            out[name].update(paired_ratio([t["forward_backward_ms"] for t in times], ref))
    return out


def paired_ratio(values, reference) -> dict:
    """``{"ratio_to_reference", "ratio_to_reference_q25", "ratio_to_reference_q75"}``: the
    median and quartiles of ``values[i] / reference[i]`` (times of the same round)."""
    q25, q50, q75 = np.percentile([a / b for a, b in zip(values, reference)], [25, 50, 75])
    return {"ratio_to_reference": float(q50), "ratio_to_reference_q25": float(q25),
            "ratio_to_reference_q75": float(q75)}


def ratio_text(row: dict) -> str:
    """``"1.04 (1.01-1.10)"``: a row's :func:`paired_ratio` for a table."""
    return (f"{row['ratio_to_reference']:.2f} ({row['ratio_to_reference_q25']:.2f}-"
            f"{row['ratio_to_reference_q75']:.2f})")


def _real_channels(model: nn.Module) -> int | None:
    """Real channels of the hidden field (``hidden.dim`` or ``width x |G|``), through a
    :class:`~grepsnet_sciml.solvers.forcing.ForcingInput` wrapper."""
    if isinstance(model, ForcingInput):
        model = model.core
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
    """Mean and standard deviation over seeds of each reported number, per model, width and
    depth (:func:`~._results.variant`)."""
    out = []
    for key in dict.fromkeys(variant(r) for r in rows):
        mine = [r for r in rows if variant(r) == key]
        entry = {"model": key[0], "width": key[1], "n_layers": key[2], "modes": key[3],
                 "seeds": len(mine)}
        for key in _KEYS:
            values = [r[key] for r in mine if key in r]
            if values:
                entry[key] = float(np.mean(values))
                entry[f"{key}_std"] = float(np.std(values))
        out.append(entry)
    return out


def format_table(summary: list[dict]) -> str:
    """Markdown table of the summary."""
    head = ("| model | width | layers | modes | params | s/epoch | fwd ms | fwd+bwd ms | "
            "act. MB | test % | rot90 % | equiv. (declared) | equiv. (C4) | 2x % | 5x % | "
            "2x res. % |")
    lines = [head, "|" + "---|" * 16]
    for e in summary:
        lines.append(
            f"| {e['model']} | {e['width']} | {e.get('n_layers') or '-'} | "
            f"{e.get('modes') or '-'} | "
            f"{e['parameters']:.0f} | "
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
