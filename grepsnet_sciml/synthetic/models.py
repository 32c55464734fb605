"""Models compared on the synthetic tasks: G-RepsNet, a plain MLP, and a standardizing wrapper.

Both models are wrapped in :class:`Standardized`, which applies a task's
:class:`~grepsnet_sciml.synthetic.data.Standardization` in a way that keeps equivariance:
inputs are divided by one positive number per channel, outputs multiplied by one number per
channel, and a mean is added only to invariant ``T0`` outputs.

Examples
--------
>>> from grepsnet_sciml import Reps
>>> from grepsnet_sciml.groups import O
>>> mlp = MLPBaseline(Reps("2xT1", O(5)), Reps("T0", O(5)), width=16, depth=2)
>>> count_parameters(mlp) == mlp_parameter_count(10, 1, 16, 2)
True
>>> mlp_width_for(count_parameters(mlp), 10, 1, 2)
16
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..layers.grepsnet import GRepsMLP
from ..reps import Reps
from .data import Standardization

__all__ = [
    "Standardized",
    "MLPBaseline",
    "build_grepsnet",
    "count_parameters",
    "mlp_parameter_count",
    "mlp_width_for",
]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _check_per_channel(values: torch.Tensor, reps: Reps, argument: str, mean: bool) -> None:
    if values.shape != (reps.dim,):
        raise ValueError(f"{argument}: expected shape ({reps.dim},), got {tuple(values.shape)}")
    for b in reps.blocks:
        block = values[b.slice].reshape(b.mult, b.size)
        if mean:
            if b.kind != "T0" and bool((block != 0).any()):
                raise ValueError(
                    f"{argument}: a mean may only be added to T0 channels, got nonzero "
                    f"values on a {b.kind} block; this would break equivariance"
                )
            continue
        if bool((block <= 0).any()) or bool((block != block[:, :1]).any()):
            raise ValueError(
                f"{argument}: expected one positive scale per channel of {reps}, got "
                f"{values.tolist()}; per-component scales break equivariance"
            )


class Standardized(nn.Module):
    """``f(x) = y_scale * model(x / x_scale) + y_mean``, equivariant whenever ``model`` is.

    Scaling every component of a channel by the same positive number commutes with the
    group action on that channel, and ``y_mean`` is nonzero only on ``T0`` entries, so
    ``f(g x) = g f(x)`` holds exactly when it holds for ``model``.

    Parameters
    ----------
    model : nn.Module
        Maps ``(batch, rep_in.dim)`` to ``(batch, rep_out.dim)``.
    stats : Standardization
        ``x_scale`` ``(rep_in.dim,)``, ``y_mean`` and ``y_scale`` ``(rep_out.dim,)``.
    rep_in, rep_out : Reps
        Types of the inputs and outputs (declared for the equivariance harness).

    Raises
    ------
    ValueError
        If a scale varies within a channel or a mean touches a non-invariant channel.
    """

    def __init__(self, model: nn.Module, stats: Standardization, rep_in: Reps, rep_out: Reps):
        super().__init__()
        _check_per_channel(stats.x_scale, rep_in, "stats.x_scale", mean=False)
        _check_per_channel(stats.y_scale, rep_out, "stats.y_scale", mean=False)
        _check_per_channel(stats.y_mean, rep_out, "stats.y_mean", mean=True)
        self.model = model
        self.rep_in, self.rep_out = rep_in, rep_out
        self.register_buffer("x_scale", stats.x_scale.clone().float())
        self.register_buffer("y_mean", stats.y_mean.clone().float())
        self.register_buffer("y_scale", stats.y_scale.clone().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.y_scale * self.model(x / self.x_scale) + self.y_mean


class MLPBaseline(nn.Module):
    """A plain MLP ``Linear -> SiLU -> ... -> Linear`` with ``depth`` hidden layers.

    It declares the types it is meant to map (``rep_in``, ``rep_out``) so the
    equivariance harness can measure how far from equivariant it is; it is not
    equivariant by construction.

    Parameters
    ----------
    rep_in, rep_out : Reps
        Input ``(batch, rep_in.dim)`` and output ``(batch, rep_out.dim)`` layouts.
    width : int
        Hidden width.
    depth : int
        Number of hidden layers (at least 1).
    """

    def __init__(self, rep_in: Reps, rep_out: Reps, width: int, depth: int):
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width, depth: expected positive integers, got {width}, {depth}")
        self.rep_in, self.rep_out = rep_in, rep_out
        layers: list[nn.Module] = []
        d = rep_in.dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.SiLU()]
            d = width
        layers.append(nn.Linear(d, rep_out.dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def mlp_parameter_count(d_in: int, d_out: int, width: int, depth: int) -> int:
    """Parameters of :class:`MLPBaseline`.

    ``(d_in + 1) w + (depth - 1) (w + 1) w + (w + 1) d_out`` for width ``w``.
    """
    return (d_in + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * d_out


def mlp_width_for(n_params: int, d_in: int, d_out: int, depth: int) -> int:
    """The width whose :class:`MLPBaseline` has the parameter count closest to ``n_params``."""
    a, b, c = depth - 1, d_in + 1 + (depth - 1) + d_out, d_out - n_params
    guess = -c / b if a == 0 else (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    candidates = {max(1, math.floor(guess)), max(1, math.ceil(guess))}
    return min(
        sorted(candidates),
        key=lambda w: abs(mlp_parameter_count(d_in, d_out, w, depth) - n_params),
    )


def build_grepsnet(rep_in: Reps, rep_out: Reps, hidden: str, depth: int) -> nn.Module:
    """The G-RepsNet model ``GRepsMLP(rep_in, rep_out, Reps(hidden, group), depth)``.

    Parameters
    ----------
    hidden : str
        Hidden representation over ``rep_in.group``, e.g. ``"32xT0 + 16xT1 + 4xT2"``.
    """
    return GRepsMLP(rep_in, rep_out, Reps(hidden, rep_in.group), depth)
