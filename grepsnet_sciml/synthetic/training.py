"""Training of every model on the synthetic tasks (same budget for all), on the solvers'
:class:`~grepsnet_sciml.solvers.trainer.Trainer`.

Mean squared error ``mean_{n, k} (f(x_n)_k - y_nk)^2`` in the data set's own units,
minimised with Adam (no weight decay) over shuffled mini-batches of float32 items
``(x, y)``; the learning rate is constant or follows a cosine decay stepped once per batch.
After every epoch the model's MSE on a validation split picks the best epoch; its weights
(``best.pt``, in a temporary folder removed afterwards) are the model that is tested.

Examples
--------
>>> from grepsnet_sciml.synthetic.data import O5Synthetic
>>> from grepsnet_sciml.synthetic.models import MLPBaseline
>>> train = O5Synthetic(64, seed=0)
>>> valid, test = O5Synthetic(64, seed=0, split="valid"), O5Synthetic(64, seed=0, split="test")
>>> model = MLPBaseline(train.rep_in, train.rep_out, width=8, depth=1)
>>> result = train_model(model, train, valid, test, epochs=2, batch_size=32, lr=1e-3, seed=0)
>>> len(result.train_losses), result.best_epoch in (1, 2), result.test_mse > 0
(2, True, True)
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from ..solvers.trainer import TrainConfig, Trainer, load_checkpoint
from .data import SyntheticDataset

__all__ = ["TrainResult", "train_model", "mse"]


@dataclass
class TrainResult:
    """Outcome of :func:`train_model`.

    Attributes
    ----------
    train_losses : list of float
        Mean training MSE of each epoch.
    valid_mse : list of float
        Validation MSE after each epoch.
    best_epoch : int
        The epoch of the lowest validation MSE, whose weights the model holds afterwards.
    test_mse : float
        MSE of the best epoch's model on the whole test set.
    seconds_per_epoch : float
        Wall time of the training steps per epoch (validation and checkpoints excluded).
    cpu_seconds_per_epoch : float
        CPU time of this process per epoch of training, validation excluded (checkpoint
        writes included); unaffected by other processes on the machine as long as torch
        uses one thread.
    """

    train_losses: list[float] = field(default_factory=list)
    valid_mse: list[float] = field(default_factory=list)
    best_epoch: int = 0
    test_mse: float = math.nan
    seconds_per_epoch: float = math.nan
    cpu_seconds_per_epoch: float = math.nan


def mse(model: nn.Module, data: SyntheticDataset, batch_size: int = 1000) -> float:
    """Mean squared error of ``model`` on ``data`` (float32, no gradients)."""
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            x = data.x[start : start + batch_size].float()
            y = data.y[start : start + batch_size].float()
            total += float(((model(x) - y) ** 2).sum())
            count += y.numel()
    return total / count


def train_model(
    model: nn.Module,
    train: SyntheticDataset,
    valid: SyntheticDataset,
    test: SyntheticDataset,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    schedule: str = "constant",
) -> TrainResult:
    """Train ``model`` in float32 with Adam on ``train``; report the best epoch's test MSE.

    Parameters
    ----------
    model : nn.Module
        Maps ``(batch, rep_in.dim)`` to ``(batch, rep_out.dim)``; trained in place, left
        with the weights of the epoch of lowest MSE on ``valid``.
    train, valid, test : SyntheticDataset
        Inputs ``x`` and targets ``y``.
    epochs, batch_size : int
        Budget: ``epochs * (len(train) // batch_size)`` Adam steps (a remainder of fewer
        than ``batch_size`` samples is left out of each epoch's permutation).
    lr : float
        Initial learning rate.
    seed : int
        Seeds the order of the mini-batches (and, as :meth:`Trainer.fit` does, the
        global torch, numpy and python RNGs).
    schedule : str
        ``"constant"`` or ``"cosine"`` (decay to 0 over all steps, stepped per batch).

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        Non-positive ``epochs`` or ``batch_size``, ``batch_size`` above ``len(train)``, or
        an unknown ``schedule`` (from :class:`~grepsnet_sciml.solvers.trainer.TrainConfig`).
    """
    items = torch.utils.data.TensorDataset(train.x.float(), train.y.float())
    validation_cpu = 0.0

    def validate(m: nn.Module) -> float:
        nonlocal validation_cpu
        start = time.process_time()
        value = mse(m, valid)
        validation_cpu += time.process_time() - start
        return value

    with tempfile.TemporaryDirectory(prefix="grepsnet-synthetic-") as out_dir:
        config = TrainConfig(out_dir=out_dir, epochs=epochs, batch_size=batch_size, lr=lr,
                             weight_decay=0.0, optimizer="adam", loss="mse", seed=seed,
                             progress=False, device="cpu", schedule=schedule)
        trainer = Trainer(model, items, config, valid_fn=validate)
        cpu_start = time.process_time()
        history = trainer.fit()
        cpu = time.process_time() - cpu_start - validation_cpu
        best = load_checkpoint(trainer.best_path)
    model.load_state_dict(best["model"])
    return TrainResult(
        train_losses=[row["train_loss"] for row in history],
        valid_mse=[row["valid_error"] for row in history],
        best_epoch=best["epoch"],
        test_mse=mse(model, test),
        seconds_per_epoch=sum(row["seconds"] for row in history) / len(history),
        cpu_seconds_per_epoch=cpu / len(history),
    )
