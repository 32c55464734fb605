"""Training loop with atomic checkpoints, exact resume, NaN guard and DDP.

:class:`Trainer` trains any model whose dataset items are ``(inputs, target)`` (a tensor
or tuple of tensors each). Per epoch ``e`` the sample order is a permutation drawn from a
generator seeded with ``(seed, e)`` alone, so a run resumed from the ``last`` checkpoint
(model, optimizer, scheduler, RNG states) replays exactly the batches an uninterrupted run
sees: on CPU with the same thread count the final weights are bit-identical.

With ``torch.distributed`` initialized (``torchrun``; gloo on CPU, nccl on GPU) each rank
takes an equal slice of every global batch and DDP averages gradients, so training matches
one process at the same global batch to floating-point tolerance.

Files written to ``config.out_dir``: ``last.pt`` (every epoch), ``best.pt`` (lowest
validation error), ``metrics.jsonl`` (one JSON object per epoch). Checkpoints are written to
a temporary file and renamed (``os.replace``), so a crash never leaves a torn file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .losses import get_loss

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged", "save_atomic", "load_checkpoint"]


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
        that epoch's metrics row gets ``"stopped": "time_budget"``. The time counted is
        wall time of the epochs (validation included) of every ``fit`` of the run,
        ``elapsed`` in the metrics: it is stored in checkpoints, so a
        resumed run goes on counting from where it stopped (resuming a run that used up
        its budget trains no further epochs unless the budget is raised). With the cosine
        schedule the learning rate then never reaches 0; use ``"constant"`` for
        budget-bounded protocols.
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

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
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


class TrainingDiverged(RuntimeError):
    """Raised when the loss becomes NaN or Inf; the last good checkpoint is kept."""


def save_atomic(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same directory, then ``os.replace``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint written by :class:`Trainer` (tensors on CPU).

    Checkpoints hold RNG states (numpy arrays, Python tuples), so they are unpickled in
    full: load only files you trust.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint: no file at {path!r}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"checkpoint: {path!r} is not a grepsnet training checkpoint")
    return ckpt


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
                 meta: dict | None = None, callbacks: Sequence[Callable] = ()):
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config: expected a TrainConfig, got {type(config).__name__}")
        if len(train_set) < config.batch_size:
            raise ValueError(
                f"batch_size: {config.batch_size} exceeds the {len(train_set)} training items"
            )
        self.config, self.train_set = config, train_set
        self.valid_fn, self.meta, self.callbacks = valid_fn, dict(meta or {}), list(callbacks)
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
        """Everything needed to continue the run exactly."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "numpy": np.random.get_state(),  # noqa: NPY002 - global state of user code
                    "python": random.getstate(),
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
        """Restore the state of ``path`` (default ``last.pt``); False if there is none."""
        path = path or self.last_path
        if not os.path.exists(path):
            return False
        ckpt = load_checkpoint(path)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        np.random.set_state(ckpt["rng"]["numpy"])  # noqa: NPY002 - restores user code state
        random.setstate(ckpt["rng"]["python"])
        if ckpt["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        self.epoch, self.step, self.best = ckpt["epoch"], ckpt["step"], ckpt["best"]
        self.elapsed = float(ckpt.get("elapsed", 0.0))
        return True

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
        out = self.ddp_model(*_as_tuple(inputs))
        return sum(self.loss_fn(p, y) for p, y in zip(_as_tuple(out), _as_tuple(target)))

    def _global_mean(self, value: torch.Tensor) -> float:
        value = value.detach().to(torch.float64).reshape(1)
        if self.distributed:
            value = value.to(self.device)
            torch.distributed.all_reduce(value)
            value = value / self.world
        return float(value)

    def fit(self, resume: bool = False) -> list[dict]:
        """Train for the remaining epochs; returns the metrics of the epochs run.

        Parameters
        ----------
        resume : bool
            Continue from ``last.pt`` in ``out_dir`` when it exists.

        Raises
        ------
        TrainingDiverged
            On a NaN or Inf loss; ``last.pt`` and ``best.pt`` keep their last good state.
        """
        cfg = self.config
        if not (resume and self.resume()):
            torch.manual_seed(cfg.seed)
            np.random.seed(cfg.seed % 2**32)  # noqa: NPY002 - seeds user code (augmentation)
            random.seed(cfg.seed)
        history = []
        main = self.rank == 0
        if main:
            os.makedirs(self.out_dir, exist_ok=True)
        budget = cfg.time_budget_s
        if budget and self.elapsed >= budget:
            return history
        for epoch in range(self.epoch, cfg.epochs):
            self.model.train()
            start, total = time.perf_counter(), 0.0
            bar = tqdm(self._batches(epoch), total=self.batches_per_epoch,
                       desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and main),
                       leave=False)
            for k, (inputs, target) in enumerate(bar):
                inputs, target = _to(inputs, self.device), _to(target, self.device)
                loss = self._loss(inputs, target)
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
            if self.valid_fn is not None:
                self.model.eval()
                score = self._broadcast(self.valid_fn(self.model) if main else 0.0)
                row["valid_error"] = score
            self.elapsed += time.perf_counter() - start
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
                with open(self.metrics_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
            if stop:
                break
        return history

    def _broadcast(self, value: float) -> float:
        if not self.distributed:
            return float(value)
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.broadcast(t, 0)
        return float(t)
