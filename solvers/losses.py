"""Training losses: relative L2 per sample and mean squared error.

Both are invariant functions of ``(prediction, target)``: ``L(rho(g) p, rho(g) y) = L(p, y)``
for orthogonal representations, since they depend only on Euclidean norms over all
non-batch entries.

Examples
--------
>>> import torch
>>> y = torch.tensor([[3.0, 4.0]])
>>> float(relative_l2(torch.zeros(1, 2), y))
1.0
>>> float(mse(y, torch.zeros(1, 2)))
12.5
"""

from __future__ import annotations

import torch

__all__ = ["relative_l2", "mse", "LOSSES", "get_loss"]


def _flat(*tensors: torch.Tensor) -> list[torch.Tensor]:
    a = tensors[0]
    out = []
    for t in tensors:
        if t.shape != a.shape:
            raise ValueError(
                f"target: shape {tuple(t.shape)} differs from prediction {tuple(a.shape)}"
            )
        out.append(t.reshape(t.shape[0], -1))
    return out


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")


def relative_l2(prediction: torch.Tensor, target: torch.Tensor, reduction: str = "mean",
                eps: float = 1e-12) -> torch.Tensor:
    """``||p_b - y_b||_2 / ||y_b||_2`` per sample ``b`` (norms over all non-batch entries).

    Parameters
    ----------
    prediction, target : torch.Tensor
        ``(batch, ...)`` of equal shape.
    reduction : str
        ``"mean"`` (default), ``"sum"`` or ``"none"`` (``(batch,)``).
    eps : float
        Guards division by a zero target norm.
    """
    p, y = _flat(prediction, target)
    err = torch.linalg.vector_norm(p - y, dim=1) / torch.linalg.vector_norm(y, dim=1).clamp_min(
        eps)
    return _reduce(err, reduction)


def mse(prediction: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean over entries of ``(p - y)^2`` per sample, then ``reduction`` over the batch."""
    p, y = _flat(prediction, target)
    return _reduce((p - y).pow(2).mean(dim=1), reduction)


LOSSES = {"relative_l2": relative_l2, "mse": mse}
"""Losses by name, as used in training configs."""


def get_loss(name: str):
    """The loss function called ``name`` (a key of :data:`LOSSES`)."""
    if name not in LOSSES:
        raise ValueError(f"loss: unknown loss {name!r}; expected one of {sorted(LOSSES)}")
    return LOSSES[name]
