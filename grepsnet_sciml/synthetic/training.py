"""Training loop shared by every model on the synthetic tasks (same budget for all).

Mean squared error ``mean_{n, k} (f(x_n)_k - y_nk)^2`` in the data set's own units,
minimised with Adam over shuffled mini-batches; the learning rate is constant or follows a
cosine decay stepped once per batch.

Examples
--------
>>> from grepsnet_sciml.synthetic.data import O5Synthetic
>>> from grepsnet_sciml.synthetic.models import MLPBaseline
>>> train, test = O5Synthetic(64, seed=0), O5Synthetic(64, seed=0, split="test")
>>> model = MLPBaseline(train.rep_in, train.rep_out, width=8, depth=1)
>>> result = train_model(model, train, test, epochs=2, batch_size=32, lr=1e-3, seed=0)
>>> len(result.train_losses), result.test_mse > 0
(2, True)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import SyntheticDataset

__all__ = ["TrainResult", "train_model", "mse"]

SCHEDULES = ("constant", "cosine")


@dataclass
class TrainResult:
    """Outcome of :func:`train_model`.

    Attributes
    ----------
    train_losses : list of float
        Mean training MSE of each epoch.
    test_mse : float
        MSE on the whole test set after training.
    seconds_per_epoch : float
        Wall time of the training epochs divided by their number (evaluation excluded).
    cpu_seconds_per_epoch : float
        The same in CPU time of this process (unaffected by other processes on the
        machine as long as torch uses one thread).
    """

    train_losses: list[float] = field(default_factory=list)
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
    test: SyntheticDataset,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    schedule: str = "constant",
    progress: bool = False,
    description: str = "train",
) -> TrainResult:
    """Train ``model`` in float32 with Adam on ``train``; report the MSE on ``test``.

    Parameters
    ----------
    model : nn.Module
        Maps ``(batch, rep_in.dim)`` to ``(batch, rep_out.dim)``; trained in place.
    train, test : SyntheticDataset
        Inputs ``x`` and targets ``y``.
    epochs, batch_size : int
        Budget: ``epochs * ceil(len(train) / batch_size)`` Adam steps.
    lr : float
        Initial learning rate.
    seed : int
        Seeds the order of the mini-batches.
    schedule : str
        ``"constant"`` or ``"cosine"`` (decay to 0 over all steps, stepped per batch).
    progress : bool
        Show a tqdm bar over epochs.

    Returns
    -------
    TrainResult
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs, batch_size: expected positive, got {epochs}, {batch_size}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {SCHEDULES}, got {schedule!r}")
    gen = torch.Generator().manual_seed(seed)
    x_all, y_all = train.x.float(), train.y.float()
    n = len(train)
    steps = epochs * math.ceil(n / batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        if schedule == "cosine"
        else None
    )
    result = TrainResult()
    elapsed = cpu = 0.0
    bar = tqdm(range(epochs), desc=description, leave=False, disable=not progress)
    for _ in bar:
        start, cpu_start = time.perf_counter(), time.process_time()
        model.train()
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            loss = ((model(x_all[idx]) - y_all[idx]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += float(loss.detach()) * len(idx)
        elapsed += time.perf_counter() - start
        cpu += time.process_time() - cpu_start
        result.train_losses.append(total / n)
        bar.set_postfix(loss=f"{result.train_losses[-1]:.3g}")
    result.seconds_per_epoch = elapsed / epochs
    result.cpu_seconds_per_epoch = cpu / epochs
    result.test_mse = mse(model, test)
    return result
