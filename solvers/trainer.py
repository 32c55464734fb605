"""Training loop with atomic checkpoints, exact resume, NaN guard and DDP.

:class:`Trainer` trains any model whose dataset items are ``(inputs, target)`` (a tensor
or tuple of tensors each). Per epoch ``e`` the sample order is a permutation drawn from a
generator seeded with ``(seed, e)`` alone, so a run resumed from the ``last`` checkpoint
(model, optimizer, scheduler, RNG states) replays exactly the batches an uninterrupted run
sees: on CPU with the same thread count the final weights are bit-identical.

With ``torch.distributed`` initialized (``torchrun``; gloo on CPU, nccl on GPU) each rank
takes an equal slice of every global batch and DDP averages gradients, so training matches
one process at the same global batch to floating-point tolerance.

Files written to ``config.out_dir``: ``grepsnet-run.json`` (marks the folder as a training
run of this package), ``last.pt`` (every epoch), ``best.pt`` (lowest validation error),
``metrics.jsonl`` (one JSON object per epoch). Every file is written to a temporary sibling
and renamed (:mod:`grepsnet_sciml._atomic`), so a crash never leaves a torn file, and gets
the mode of the user's umask. A folder that already holds files is never trained into
unless the run resumes it or ``overwrite`` replaces it (see :meth:`Trainer.fit`).

Checkpoints hold only tensors and plain data (dicts, lists, numbers, strings), so
:func:`load_checkpoint` reads them with ``torch.load(weights_only=True)``: a file holding
other pickled objects is refused instead of run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pickle
import random
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from grepsnet_sciml._atomic import atomic_path, atomic_write_text

from .losses import get_loss

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged", "save_atomic", "load_checkpoint",
           "prepare_run_dir", "refuse_resume", "resume_changes", "train_defaults", "RUN_MARKER",
           "RESUME_APPLIED"]

logger = logging.getLogger(__name__)

RUN_MARKER = "grepsnet-run.json"
"""File a :class:`Trainer` writes into every ``out_dir`` it trains into."""
RUN_FILES = (RUN_MARKER, "last.pt", "best.pt", "metrics.jsonl")
"""Every file a training run writes (plus temporary ``.<name>.*.tmp`` siblings)."""
RESUME_APPLIED = ("epochs", "lr", "weight_decay", "grad_clip", "time_budget_s", "progress",
                  "device", "valid_every", "input_noise")
"""Settings of :class:`TrainConfig` a resumed run may change: they are applied from then on.
The others (``batch_size``, ``optimizer``, ``loss``, ``schedule``, ``seed``,
``unroll_steps``, ``unroll_curriculum``, ``pushforward``) define the run and a resume that
changes them is refused (``unroll_steps`` also sets how many windows fit in the training
trajectories, hence the length of an epoch and of the cosine schedule)."""


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run (stored as data in every checkpoint).

    Attributes
    ----------
    out_dir : str
        Directory for checkpoints and metrics.
    epochs : int
        Passes over the training set.
    batch_size : int
        Global batch size (split evenly over DDP ranks).
    lr : float
        Learning rate (the peak of the cosine schedule).
    schedule : str
        ``"cosine"`` (stepped once per batch, from ``lr`` down to 0 at the end of
        ``epochs``) or ``"constant"``.
    weight_decay : float
        Decoupled (AdamW) or L2 (Adam) weight decay.
    optimizer : str
        ``"adamw"`` or ``"adam"``.
    loss : str
        ``"relative_l2"`` or ``"mse"`` (summed over outputs for multi-output models).
    seed : int
        Seeds the per-epoch sample order and the global torch/numpy/python RNGs.
    grad_clip : float
        Clip the global gradient norm to this value (0: off).
    progress : bool
        Show a tqdm bar with the live loss.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
    time_budget_s : float
        Wall-clock budget of the run in seconds (0: none). Training stops at the first
        epoch boundary at or past the budget (the epoch in progress always finishes) and
        that epoch's metrics row gets ``"stopped": "time_budget"``. The time counted is the
        wall time of the training steps of every ``fit`` of the run (validation excluded, so
        models whose validation costs differ get the same training time), ``elapsed`` in
        the metrics: it is stored in checkpoints, so a
        resumed run goes on counting from where it stopped (resuming a run that used up
        its budget trains no further epochs unless the budget is raised). With the cosine
        schedule the learning rate then never reaches 0; use ``"constant"`` for
        budget-bounded protocols.
    valid_every : int
        Evaluation cadence in epochs: ``valid_fn`` runs after epochs ``valid_every``,
        ``2 valid_every``, ... and after the run's last epoch (``epochs`` reached or the time
        budget spent), so a run of ``E`` epochs validates ``ceil(E / valid_every)`` times;
        ``best`` is chosen among those epochs. Metrics rows of the other epochs have no
        ``valid_error``. 1 (default): every epoch.
    unroll_steps : int
        Fields, and particles with velocity outputs (targets ``K`` strides ahead,
        :class:`~.unroll.ParticleLoss`): ``K``, the model steps of the unrolled training loss
        (:mod:`~.unroll`). Training items carry ``K * t_out`` target frames (so fewer windows
        fit in each trajectory), the model is applied ``K`` times, sliding the packed
        window as a rollout does, and the loss is ``(1/K) sum_k loss(M^k(x), y_k)``. Costs
        ``K`` forward passes per item and a backward pass through all of them (about ``K``
        times the compute and activation memory of one-step training). 1 (default): one-step
        teacher forcing, exactly as without the option.
    unroll_curriculum : bool
        Fields and particles, needs ``unroll_steps > 1``: epoch ``e`` (1-based) of ``E`` unrolls
        ``1 + floor((e - 1) (unroll_steps - 1) / (E - 1))`` steps, from 1 at epoch 1 up to
        ``unroll_steps`` at epoch ``E`` (a one-epoch run uses ``unroll_steps``); a resume
        that changes ``epochs`` follows the new ``E`` from then on.
    pushforward : bool
        Fields and particles, needs ``unroll_steps > 1``: the pushforward trick
        (Brandstetter, Worrall & Welling 2022): the first ``K - 1`` steps run without
        gradient (``torch.no_grad``) and the loss is that of the last step's prediction
        only; ``K`` forward passes and one backward pass per item.
    input_noise : float
        Fields only: during training, add i.i.d. Gaussian noise of standard deviation
        ``input_noise * rms(x)`` (``rms`` over each sample's input window) to the input
        window, not to the target; drawn from a generator seeded by ``seed`` and the step,
        so runs are reproducible and resumable. Keeps equivariance in distribution. 0
        (default): off.
    """

    out_dir: str = "runs/train"
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    loss: str = "relative_l2"
    seed: int = 0
    grad_clip: float = 0.0
    progress: bool = True
    device: str = "auto"
    schedule: str = "cosine"
    time_budget_s: float = 0.0
    valid_every: int = 1
    unroll_steps: int = 1
    unroll_curriculum: bool = False
    pushforward: bool = False
    input_noise: float = 0.0

    def __post_init__(self):
        for name in ("epochs", "batch_size", "valid_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive learning rate, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay: expected >= 0, got {self.weight_decay!r}")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer: expected 'adam' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule: expected 'cosine' or 'constant', got {self.schedule!r}")
        if not (self.time_budget_s >= 0 and math.isfinite(self.time_budget_s)):
            raise ValueError(f"time_budget_s: expected a finite number >= 0 (0: no budget), "
                             f"got {self.time_budget_s!r}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device: expected 'cpu', 'cuda' or 'auto', got {self.device!r}")
        get_loss(self.loss)
        self._check_unroll()

    def _check_unroll(self) -> None:
        k = self.unroll_steps
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"unroll_steps: expected a positive integer (model steps of the "
                             f"unrolled loss; 1: one-step training), got {k!r}")
        for name in ("unroll_curriculum", "pushforward"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"{name}: expected true or false, got {value!r}")
            if value and k == 1:
                raise ValueError(f"{name}: needs unroll_steps > 1 (it changes how the "
                                 f"unrolled steps train); got {name}=True with unroll_steps=1")
        noise = self.input_noise
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (
                math.isfinite(noise) and noise >= 0):
            raise ValueError(f"input_noise: expected a finite number >= 0 (noise std relative "
                             f"to the input rms; 0: off), got {noise!r}")
        self.input_noise = float(noise)


def train_defaults() -> dict:
    """``{setting: default}`` of every :class:`TrainConfig` field."""
    return {f.name: f.default for f in dataclasses.fields(TrainConfig)}


class TrainingDiverged(RuntimeError):
    """Raised when the loss becomes NaN or Inf; the last good checkpoint is kept."""


def save_atomic(obj, path: str | os.PathLike) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically, with the mode of the user's umask."""
    with atomic_path(path, suffix=".pt") as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint written by :class:`Trainer` (tensors on CPU).

    The file is read with ``torch.load(weights_only=True)``: only tensors and plain data are
    accepted, so a checkpoint from someone else cannot run code.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is empty, truncated, not a torch file, holds pickled objects other than
        tensors and plain data, or is not a grepsnet training checkpoint; the message names
        the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint: no file at {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"checkpoint: {path!r} is a folder; expected a .pt file written by "
                         "grepsnet train (best.pt or last.pt)")
    if os.path.getsize(path) == 0:
        raise ValueError(f"checkpoint: {path!r} is empty (0 bytes); expected a grepsnet "
                         "checkpoint (best.pt or last.pt written by grepsnet train)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = [line.strip() for line in str(err).splitlines() if "global" in line.lower()]
        if found:  # torch refused a class or function: the file is not plain data
            raise ValueError(
                f"checkpoint: {path!r} holds pickled Python objects other than tensors and "
                "plain data, which could run code when loaded; refused (grepsnet checkpoints "
                f"hold only tensors, dicts, lists, numbers and strings): {found[0]}"
            ) from err
        raise _corrupt(path, err) from err
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            UnicodeDecodeError, AttributeError, ImportError, IndexError, KeyError,
            TypeError) as err:
        raise _corrupt(path, err) from err
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"checkpoint: {path!r} is a torch file but not a grepsnet training "
                         "checkpoint (expected a dict with 'model' and 'config'); pass best.pt "
                         "or last.pt written by grepsnet train")
    return ckpt


def _first_line(err: BaseException) -> str:
    """The informative line of an error (torch wraps unpickling errors in boilerplate)."""
    noise = ("weights only", "weights_only", "documentation", "file an issue")
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [line for line in lines if not any(n in line.lower() for n in noise)]
    return (useful or lines or [type(err).__name__])[0]


def _corrupt(path: str, err: BaseException) -> ValueError:
    return ValueError(
        f"checkpoint: {path!r} is not a grepsnet checkpoint or is corrupt (truncated or "
        f"overwritten): torch.load failed with {type(err).__name__}: {_first_line(err)}; "
        "expected best.pt or last.pt written by grepsnet train")


def _own_temporary(name: str) -> bool:
    return name.endswith(".tmp") and any(name.startswith(f".{f}.") for f in RUN_FILES)


def prepare_run_dir(out_dir: str | os.PathLike, resume: bool = False,
                    overwrite: bool = False) -> bool:
    """Make ``out_dir`` ready for a training run; True when there is a run to resume.

    Parameters
    ----------
    out_dir : path-like
        The run folder (``train.out_dir``).
    resume : bool
        Continue the run whose ``last.pt`` is in ``out_dir``.
    overwrite : bool
        Replace the run in ``out_dir``: its files are removed, but only when the folder is
        marked as a grepsnet training run (``grepsnet-run.json``) and holds nothing else.

    Raises
    ------
    FileExistsError
        ``out_dir`` already holds files and neither ``resume`` (with a ``last.pt``) nor
        ``overwrite`` (of a grepsnet run folder) applies; nothing is touched. The message
        names the folder and the entries in the way.
    ValueError
        Both ``resume`` and ``overwrite``.
    """
    if resume and overwrite:
        raise ValueError("resume, overwrite: expected at most one of them (resume continues "
                         "the run in out_dir, overwrite replaces it)")
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise FileExistsError(f"train.out_dir: {out_dir!r} is a file; expected a folder")
    entries = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
    if not entries:
        return False
    foreign = [e for e in entries if e not in RUN_FILES and not _own_temporary(e)]
    marked = RUN_MARKER in entries
    if resume and "last.pt" in entries:
        return True
    if (resume and marked and not foreign) or (overwrite and marked and not foreign):
        if overwrite:
            for name in entries:
                os.remove(os.path.join(out_dir, name))
        return False
    listed = ", ".join(entries[:8]) + (f" and {len(entries) - 8} more" if len(entries) > 8
                                       else "")
    if overwrite:
        why = (f"it holds entries no grepsnet training run writes: {', '.join(foreign)}"
               if marked else f"it is not marked as a grepsnet training run (no {RUN_MARKER})"
               f" and holds {listed}")
        raise FileExistsError(
            f"train.out_dir: {out_dir!r}: overwrite replaces only a run folder written by "
            f"grepsnet train, but {why}; nothing was removed. Choose "
            "another out_dir or remove those files yourself")
    if resume:
        raise FileExistsError(
            f"train.out_dir: {out_dir!r} has no last.pt to resume from but holds {listed}; "
            "nothing was touched. Choose another out_dir, or overwrite=True (--overwrite) to "
            "replace a grepsnet run there")
    raise FileExistsError(
        f"train.out_dir: {out_dir!r} already holds {listed}; nothing was touched. Pass "
        "resume=True (--resume) to continue that run, overwrite=True (--overwrite) to replace "
        "it, or choose another out_dir")


def refuse_resume(path, differences) -> None:
    """Raise ``ValueError`` listing each ``(setting, stored, requested)`` a resume cannot change."""
    raise ValueError(
        f"resume: {str(path)!r} was trained with other settings than requested, which a "
        "resumed run cannot change: " + "; ".join(
            f"{k}: stored {a!r}, requested {b!r}" for k, a, b in differences)
        + ". Resume with the stored settings or start a new run (another out_dir or "
        "overwrite)")


def resume_changes(stored: dict, config: TrainConfig) -> list[tuple[str, object, object]]:
    """``(setting, stored value, requested value)`` for every setting that differs.

    ``out_dir`` is not compared (a run may be moved). ``stored`` is the ``config`` dict of
    a checkpoint.
    """
    now = dataclasses.asdict(config)
    # a setting added after the checkpoint was written had its default value then
    added = train_defaults()
    return [(k, stored.get(k, added.get(k)), v) for k, v in now.items()
            if k != "out_dir" and stored.get(k, added.get(k)) != v]


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _to(x, device):
    if isinstance(x, (tuple, list)):
        return tuple(_to(t, device) for t in x)
    return x.to(device)


class Trainer:
    """Train ``model`` on ``train_set`` with the settings of ``config``.

    Parameters
    ----------
    model : nn.Module
        Called as ``model(*inputs)``; its ``state_dict`` (with normalization buffers) is
        what checkpoints store.
    train_set : torch.utils.data.Dataset
        Items ``(inputs, target)``; ``inputs`` a tensor or tuple, ``target`` likewise.
    config : TrainConfig
    valid_fn : callable, optional
        ``valid_fn(model) -> float``, e.g. a validation rollout error; chooses ``best``.
        Without it, ``best`` follows the training loss.
    meta : dict, optional
        JSON-serialisable data stored in checkpoints (e.g. how to rebuild the model).
    callbacks : sequence of callable
        ``cb(trainer, epoch, batch, loss)`` after every optimizer step (tests use it to
        interrupt a run).
    loss_step : callable, optional
        ``loss_step(trainer, inputs, target) -> loss``, the scalar training loss of one
        batch (already on ``trainer.device``), called in training mode; during the batch
        ``trainer.epoch`` is the 0-based index of the epoch being trained and
        ``trainer.step`` the number of optimizer steps taken before it. The model to call
        is ``trainer.ddp_model``, the configured loss ``trainer.loss_fn``. Default: one
        step, ``sum_i loss_fn(model(*inputs)_i, target_i)`` over the outputs
        (:meth:`_loss`). The unrolled, pushforward and noisy field losses are
        :class:`~.unroll.FieldLoss`: the ``unroll_*``, ``pushforward`` and ``input_noise``
        settings of ``config`` act through it (:func:`~.experiment.train` builds it from
        them); a Trainer given none trains one step whatever they say.

    Examples
    --------
    >>> import torch, tempfile
    >>> data = torch.utils.data.TensorDataset(torch.randn(8, 3), torch.randn(8, 1))
    >>> cfg = TrainConfig(out_dir=tempfile.mkdtemp(), epochs=2, batch_size=4, progress=False)
    >>> history = Trainer(torch.nn.Linear(3, 1), data, cfg).fit()
    >>> [row["epoch"] for row in history]
    [1, 2]
    """

    def __init__(self, model: torch.nn.Module, train_set, config: TrainConfig,
                 valid_fn: Callable[[torch.nn.Module], float] | None = None,
                 meta: dict | None = None, callbacks: Sequence[Callable] = (),
                 loss_step: Callable[..., torch.Tensor] | None = None):
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config: expected a TrainConfig, got {type(config).__name__}")
        if len(train_set) < config.batch_size:
            raise ValueError(
                f"batch_size: {config.batch_size} exceeds the {len(train_set)} training items"
            )
        self.config, self.train_set = config, train_set
        self.valid_fn, self.meta, self.callbacks = valid_fn, dict(meta or {}), list(callbacks)
        if loss_step is not None and not callable(loss_step):
            raise ValueError(f"loss_step: expected a callable (trainer, inputs, target) -> "
                             f"loss or None, got {type(loss_step).__name__}")
        self.loss_step = loss_step
        self.distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = torch.distributed.get_rank() if self.distributed else 0
        self.world = torch.distributed.get_world_size() if self.distributed else 1
        if config.batch_size % self.world:
            raise ValueError(
                f"batch_size: {config.batch_size} is not divisible by the {self.world} ranks"
            )
        if config.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(config.device)
        if self.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        self.model = model.to(self.device)
        self.loss_fn = get_loss(config.loss)
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt(params, lr=config.lr, weight_decay=config.weight_decay)
        self.batches_per_epoch = len(train_set) // config.batch_size
        if config.schedule == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=config.epochs * self.batches_per_epoch)
        else:
            self.scheduler = torch.optim.lr_scheduler.ConstantLR(
                self.optimizer, factor=1.0, total_iters=0)
        self.ddp_model = (torch.nn.parallel.DistributedDataParallel(self.model)
                          if self.distributed else self.model)
        self.epoch, self.step = 0, 0
        self.best = math.inf
        self.elapsed = 0.0
        self.out_dir = config.out_dir
        self.resume_note = ""

    # ---------------------------------------------------------------- checkpoints -----
    @property
    def last_path(self) -> str:
        return os.path.join(self.out_dir, "last.pt")

    @property
    def best_path(self) -> str:
        return os.path.join(self.out_dir, "best.pt")

    @property
    def metrics_path(self) -> str:
        return os.path.join(self.out_dir, "metrics.jsonl")

    def state(self) -> dict:
        """Everything needed to continue the run exactly (tensors and plain data only)."""
        np_state = np.random.get_state()  # noqa: NPY002 - global state of user code
        py_state = random.getstate()
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "numpy": {"name": np_state[0],
                              "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                              "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                              "gauss": float(np_state[4])},
                    "python": {"version": py_state[0], "state": list(py_state[1]),
                               "gauss": py_state[2]},
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available()
                    else []},
            "epoch": self.epoch,
            "step": self.step,
            "best": self.best,
            "elapsed": self.elapsed,
            "config": dataclasses.asdict(self.config),
            "meta": self.meta,
        }

    def resume(self, path: str | None = None) -> bool:
        """Restore the state of ``path`` (default ``last.pt``); False if there is none.

        Settings of :data:`RESUME_APPLIED` that differ from the checkpoint's are applied
        (the learning rate and the cosine schedule's length follow the new ``lr`` and
        ``epochs`` from the current step on) and listed in :attr:`resume_note`.

        Raises
        ------
        ValueError
            The checkpoint is unreadable, was made with other settings outside
            :data:`RESUME_APPLIED` (each listed, stored vs requested), or its weights do not
            fit the model; nothing is changed.
        """
        path = path or self.last_path
        if not os.path.exists(path):
            return False
        ckpt = load_checkpoint(path)
        changes = resume_changes(ckpt["config"], self.config)
        refused = [c for c in changes if c[0] not in RESUME_APPLIED]
        if refused:
            refuse_resume(path, [(f"train.{k}", a, b) for k, a, b in refused])
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as err:
            raise ValueError(
                f"resume: the weights in {path!r} do not fit the {type(self.model).__name__} "
                f"being trained (expected the same architecture): {_first_line(err)}"
            ) from err
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        rng = ckpt["rng"]
        torch.set_rng_state(rng["torch"])
        npr = rng["numpy"]
        np.random.set_state((npr["name"], npr["keys"].numpy().astype(np.uint32),  # noqa: NPY002
                             npr["pos"], npr["has_gauss"], npr["gauss"]))
        py = rng["python"]
        random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.epoch, self.step, self.best = ckpt["epoch"], ckpt["step"], ckpt["best"]
        self.elapsed = float(ckpt.get("elapsed", 0.0))
        self._apply_schedule({k for k, _, _ in changes})
        self.resume_note = f"resumed {path} at epoch {self.epoch} (step {self.step})"
        if changes:
            self.resume_note += "; applying changed settings: " + ", ".join(
                f"train.{k} {a!r} -> {b!r}" for k, a, b in changes)
        logger.info(self.resume_note)
        return True

    def _apply_schedule(self, changed: set[str]) -> None:
        """Point optimizer and scheduler at the current ``lr``/``epochs``/``weight_decay``."""
        cfg = self.config
        if not changed & {"lr", "epochs", "weight_decay"}:
            return
        total = cfg.epochs * self.batches_per_epoch
        if cfg.schedule == "cosine":
            self.scheduler.T_max = total
            lr = cfg.lr * (1 + math.cos(math.pi * min(self.step, total) / total)) / 2
        else:
            lr = cfg.lr
        self.scheduler.base_lrs = [cfg.lr for _ in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["initial_lr"], group["lr"] = cfg.lr, lr
            group["weight_decay"] = cfg.weight_decay
        self.scheduler._last_lr = [lr for _ in self.optimizer.param_groups]

    # ---------------------------------------------------------------- training --------
    def _batches(self, epoch: int):
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.train_set), generator=gen)
        b, local = self.config.batch_size, self.config.batch_size // self.world
        for k in range(self.batches_per_epoch):
            idx = order[k * b + self.rank * local : k * b + (self.rank + 1) * local]
            items = [self.train_set[int(i)] for i in idx]
            yield torch.utils.data.default_collate(items)

    def _loss(self, inputs, target) -> torch.Tensor:
        """The default loss of one batch: ``sum_i loss_fn(model(*inputs)_i, target_i)``."""
        out = self.ddp_model(*_as_tuple(inputs))
        return sum(self.loss_fn(p, y) for p, y in zip(_as_tuple(out), _as_tuple(target)))

    def _global_mean(self, value: torch.Tensor) -> float:
        value = value.detach().to(torch.float64).reshape(1)
        if self.distributed:
            value = value.to(self.device)
            torch.distributed.all_reduce(value)
            value = value / self.world
        return float(value)

    def _label(self) -> str:
        """The model's display name for the progress bar (``meta["model"]["name"]``)."""
        from .registry import get_model

        model = self.meta.get("model")
        name = model.get("name") if isinstance(model, dict) else None
        try:
            return get_model(name).display if name else type(self.model).__name__
        except ValueError:  # a name outside the registry: shown as given
            return str(name)

    def fit(self, resume: bool = False, overwrite: bool = False) -> list[dict]:
        """Train for the remaining epochs; returns the metrics of the epochs run.

        Parameters
        ----------
        resume : bool
            Continue from ``last.pt`` in ``out_dir`` when it exists (see :meth:`resume`).
        overwrite : bool
            Replace the training run in ``out_dir`` (see :func:`prepare_run_dir`).

        Raises
        ------
        FileExistsError
            ``out_dir`` already holds files and neither ``resume`` nor ``overwrite``
            applies (nothing is touched).
        TrainingDiverged
            On a NaN or Inf loss; ``last.pt`` and ``best.pt`` keep their last good state.
        """
        cfg = self.config
        self._check_dtypes()
        resuming = self._on_main(lambda: self._prepare(resume, overwrite))
        if not (resuming and self.resume()):
            torch.manual_seed(cfg.seed)
            np.random.seed(cfg.seed % 2**32)  # noqa: NPY002 - seeds user code (augmentation)
            random.seed(cfg.seed)
        history = []
        main = self.rank == 0
        rows = []
        if main:
            rows = [r for r in self._read_metrics() if r.get("epoch", 0) <= self.epoch]
        budget = cfg.time_budget_s
        if budget and self.elapsed >= budget:
            return history
        for epoch in range(self.epoch, cfg.epochs):
            self.model.train()
            start, total = time.perf_counter(), 0.0
            bar = tqdm(self._batches(epoch), total=self.batches_per_epoch,
                       desc=f"{self._label()} train epoch {epoch + 1}/{cfg.epochs}",
                       disable=not (cfg.progress and main), leave=False, unit="batch")
            for k, (inputs, target) in enumerate(bar):
                inputs, target = _to(inputs, self.device), _to(target, self.device)
                loss = (self._loss(inputs, target) if self.loss_step is None
                        else self.loss_step(self, inputs, target))
                value = self._global_mean(loss)
                if not math.isfinite(value):
                    bar.close()
                    kept = self.last_path if os.path.exists(self.last_path) else "none yet"
                    raise TrainingDiverged(
                        f"loss became {value} at epoch {epoch + 1}, batch {k + 1} (step "
                        f"{self.step + 1}); training stopped. Last good checkpoint: {kept}; "
                        f"best.pt was not touched. Try a lower lr (now {cfg.lr}) or grad_clip."
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                self.step += 1
                total += value
                bar.set_postfix(loss=f"{value:.4g}")
                for cb in self.callbacks:
                    cb(self, epoch, k, value)
            self.epoch = epoch + 1
            row = {"epoch": self.epoch, "step": self.step,
                   "train_loss": total / self.batches_per_epoch,
                   "lr": self.scheduler.get_last_lr()[0],
                   "seconds": time.perf_counter() - start}
            score = row["train_loss"]
            last = self.epoch == cfg.epochs or (
                bool(budget) and self.elapsed + row["seconds"] >= budget)
            validate = self.valid_fn is not None and (self.epoch % cfg.valid_every == 0 or last)
            if self.valid_fn is not None:
                score = math.nan  # no validation this epoch: best stays
            if validate:
                self.model.eval()
                score = self._broadcast(self.valid_fn(self.model) if main else 0.0)
                row["valid_error"] = score
            self.elapsed += row["seconds"]  # training time only: validation is not charged
            row["elapsed"] = self.elapsed
            stop = bool(budget) and self.elapsed >= budget and self.epoch < cfg.epochs
            if stop:
                row["stopped"] = "time_budget"
            improved = math.isfinite(score) and score < self.best
            if improved:
                self.best = score
            row["best"] = self.best
            history.append(row)
            if main:
                save_atomic(self.state(), self.last_path)
                if improved:
                    save_atomic(self.state(), self.best_path)
                rows.append(row)
                atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))
            if stop:
                break
        return history

    def _prepare(self, resume: bool, overwrite: bool) -> bool:
        """Check (and with ``overwrite`` empty) ``out_dir``, then mark it as a run folder."""
        resuming = prepare_run_dir(self.out_dir, resume, overwrite)
        marker = os.path.join(self.out_dir, RUN_MARKER)
        if not os.path.exists(marker):
            atomic_write_text(marker, json.dumps(
                {"written_by": "grepsnet_sciml.solvers.Trainer", "files": list(RUN_FILES)},
                indent=1) + "\n")
        return resuming

    def _read_metrics(self) -> list[dict]:
        if not os.path.exists(self.metrics_path):
            return []
        with open(self.metrics_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def _on_main(self, fn):
        """``fn()`` on rank 0 only; its result or error is shared with every rank."""
        box = [None, None]
        if self.rank == 0:
            try:
                box[0] = fn()
            except (OSError, ValueError) as err:
                box[1] = err
        if self.distributed:
            torch.distributed.broadcast_object_list(box, 0)
        if box[1] is not None:
            raise box[1]
        return box[0]

    def _check_dtypes(self) -> None:
        """ValueError naming both dtypes when the data's floats differ from the model's."""
        param = next((p for p in self.model.parameters() if p.is_floating_point()), None)
        if param is None:
            return
        inputs, target = self.train_set[0]
        for t in (*_as_tuple(inputs), *_as_tuple(target)):
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != param.dtype:
                raise ValueError(
                    f"train_set: items are {t.dtype} but the model's parameters are "
                    f"{param.dtype}; expected one dtype (cast the data, or the model with "
                    f"model.to({t.dtype}))")

    def _broadcast(self, value: float) -> float:
        if not self.distributed:
            return float(value)
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.broadcast(t, 0)
        return float(t)
