"""Training losses for stable long rollouts of field and particle surrogates.

One-step teacher forcing trains a model ``M`` only on true inputs, while a rollout feeds it
its own predictions. The three methods here, each a setting of
:class:`~.trainer.TrainConfig` (``[train]`` in TOML), train it on the states it meets in a
rollout:

- **unrolled loss** (``unroll_steps = K``, optionally ``unroll_curriculum``): the model is
  applied ``K`` times, sliding the packed window exactly as :func:`~.rollout.rollout` does,
  and the loss is the mean over the ``K`` steps;
- **pushforward trick** (``pushforward``; Brandstetter, Worrall & Welling 2022, "Message
  passing neural PDE solvers", ICLR): the first ``K - 1`` steps run without gradient and
  only the last step's prediction is trained;
- **input noise** (``input_noise``, fields only): i.i.d. Gaussian noise on the input window.

Particle (x, v) predictors (``data.predict_velocity``) take the unrolled loss and the
pushforward trick through :class:`ParticleLoss`: ``(x_k, v_k) = M(x_{k-1}, v_{k-1}, q)``
from the true ``(x_0, v_0)``, and ``L = (1/K) sum_k [loss(x_k, X_k) + loss(v_k, V_k)]``
against the true states ``K`` strides ahead (``ParticlePairs(..., steps=K)``). A rollout of
an E(3) x S_n-equivariant ``M`` is equivariant, so the loss is invariant.

Window rule
    With frames in a :class:`~.data.FieldLayout` of ``C`` channels per frame, ``w_0`` the
    ``t_in`` input frames ``(B, t_in, C, X, Y)`` and ``pack`` the layout's packing to
    ``(B, t_in * C, X, Y)``: ``p_k = M(pack(w_{k-1}))`` (``t_out`` frames) and
    ``w_k = [w_{k-1}, unpack(p_k)][-t_in:]`` (the last ``t_in`` frames), for
    ``k = 1 .. K``. The target ``y`` holds the ``K * t_out`` true frames after ``w_0``,
    ``y_k`` its frames ``(k - 1) t_out .. k t_out - 1``.

Losses
    Unrolled: ``L = (1/K) sum_{k=1}^K loss(p_k, pack(y_k))``; ``K`` forward passes per item
    and a backward pass through all of them. Pushforward: ``L = loss(p_K, pack(y_K))`` with
    ``p_1 .. p_{K-1}`` computed under ``torch.no_grad`` (so ``w_{K-1}`` is a constant):
    ``K`` forward passes, one backward pass through the last only. ``K = 1`` is exactly
    one-step training.

Equivariance
    The window rule commutes with every grid symmetry ``g`` (``pack`` and slicing act on
    frames, which ``g`` moves alike), so an equivariant ``M`` gives an equivariant unrolled
    map ``M^k(g . w) = g . M^k(w)`` and a loss invariant under ``(w, y) -> (g . w, g . y)``.
    The input noise ``x + sigma * rms(x) * eps``, ``eps ~ N(0, I)`` i.i.d. over every
    channel and grid point, is invariant in distribution under every grid permutation and
    sign flip (``g . eps ~ eps``) and ``rms`` is invariant, so ``g . (x + noise)`` and
    ``g . x + noise`` have the same distribution: equivariance holds in distribution.

Examples
--------
>>> import torch
>>> from grepsnet_sciml.groups import D4
>>> from grepsnet_sciml.solvers.data import FieldLayout
>>> from grepsnet_sciml.solvers.losses import get_loss
>>> layout = FieldLayout(("vorticity",), ("T0p",), D4())
>>> model = torch.nn.Conv2d(2, 1, 3, padding=1, padding_mode="circular")
>>> x, y = torch.randn(4, 2, 8, 8), torch.randn(4, 3, 8, 8)  # t_in = 2, K = 3, t_out = 1
>>> loss = unrolled_loss(model, x, y, layout=layout, t_out=1, steps=3,
...                      loss_fn=get_loss("mse"))
>>> loss.shape
torch.Size([])
>>> [curriculum_steps(e, 5, 3) for e in range(1, 6)]
[1, 1, 2, 2, 3]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .data import FieldLayout
from .trainer import TrainConfig, train_defaults

__all__ = ["FieldLoss", "ParticleLoss", "unrolled_loss", "unrolled_particle_loss",
           "add_input_noise", "noise_generator", "curriculum_steps", "uses_field_methods",
           "FIELD_METHODS", "PARTICLE_METHODS"]

FIELD_METHODS = ("unroll_steps", "unroll_curriculum", "pushforward", "input_noise")
"""Settings of :class:`~.trainer.TrainConfig` for stable rollouts, by name."""
PARTICLE_METHODS = ("unroll_steps", "unroll_curriculum", "pushforward")
"""Those of :data:`FIELD_METHODS` that particle (x, v) predictors take too."""


def uses_field_methods(config: TrainConfig) -> list[str]:
    """The settings of :data:`FIELD_METHODS` that ``config`` sets to a value other than
    its default (``unroll_steps`` 1, the others off), in that order."""
    defaults = train_defaults()
    return [name for name in FIELD_METHODS if getattr(config, name) != defaults[name]]


def curriculum_steps(epoch: int, epochs: int, unroll_steps: int) -> int:
    """Steps ``K_e`` the curriculum unrolls in epoch ``epoch`` (1-based) of ``epochs``.

    ``K_e = 1 + floor((e - 1) (K - 1) / (E - 1))`` with ``K = unroll_steps`` and
    ``E = epochs``: 1 at epoch 1, growing linearly (rounded down) to ``K`` at epoch ``E``;
    ``E = 1`` gives ``K``. Epochs past ``E`` (never trained) keep ``K``.

    Examples
    --------
    >>> [curriculum_steps(e, 4, 4) for e in range(1, 5)]
    [1, 2, 3, 4]
    >>> [curriculum_steps(e, 3, 5) for e in range(1, 4)]
    [1, 3, 5]
    """
    if epochs <= 1 or epoch >= epochs:
        return unroll_steps
    return 1 + ((max(epoch, 1) - 1) * (unroll_steps - 1)) // (epochs - 1)


def noise_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by ``(seed, step, rank)`` alone.

    The training step ``step`` (0-based, counted over the whole run) and the DDP ``rank``
    enter the seed, so a resumed run draws the noise an uninterrupted one draws and ranks
    draw independent noise for their slices of a batch.
    """
    words = np.random.SeedSequence([int(seed) % 2**63, int(step), int(rank)]).generate_state(
        2, np.uint64)
    return torch.Generator().manual_seed(int(words[0]) % 2**63)


def add_input_noise(inputs: torch.Tensor, level: float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """``x + level * rms(x) * eps``: i.i.d. Gaussian noise scaled per sample.

    Parameters
    ----------
    inputs : torch.Tensor
        ``(B, t_in * C, X, Y)`` packed input windows ``x``.
    level : float
        ``sigma >= 0``, the noise standard deviation relative to ``rms(x_b) =
        sqrt(mean(x_b ** 2))`` over sample ``b``'s whole window. 0: ``inputs`` itself is
        returned.
    generator : torch.Generator, optional
        A CPU generator (:func:`noise_generator`); ``eps ~ N(0, 1)`` is drawn on the CPU in
        the inputs' dtype and moved to their device, so the noise does not depend on it.

    Returns
    -------
    torch.Tensor
        ``(B, t_in * C, X, Y)``: ``x_b + sigma rms(x_b) eps_b``, ``eps`` i.i.d. over
        samples, channels and grid points; the distribution is invariant under every grid
        symmetry and sign flip, so an equivariant model stays equivariant in distribution.
    """
    if not (math.isfinite(level) and level >= 0):
        raise ValueError(f"input_noise: expected a finite number >= 0, got {level!r}")
    if level == 0:
        return inputs
    eps = torch.randn(inputs.shape, generator=generator, dtype=inputs.dtype)
    eps = eps.to(inputs.device)
    rms = inputs.detach().pow(2).flatten(1).mean(1).sqrt()
    return inputs + (level * rms).reshape(-1, *[1] * (inputs.ndim - 1)) * eps


def unrolled_loss(model: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
                  target: torch.Tensor, *, layout: FieldLayout, t_out: int, steps: int,
                  loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  pushforward: bool = False) -> torch.Tensor:
    """The loss of ``steps`` autoregressive model steps (see the module's window rule).

    Parameters
    ----------
    model : callable
        Field model ``(B, t_in * C, X, Y) -> (B, t_out * C, X, Y)``.
    inputs : torch.Tensor
        ``(B, t_in * C, X, Y)``: the packed input window ``pack(w_0)``.
    target : torch.Tensor
        ``(B, n * t_out * C, X, Y)`` with ``n >= steps``: the packed true frames after
        ``w_0`` (``K_max * t_out`` of them, e.g. from
        ``FieldWindows(ds, t_in, t_out * K_max)``); the first ``steps * t_out`` are used.
    layout : FieldLayout
        How frames pack into channels (``C = layout.frame_channels``).
    t_out : int
        Frames per model step.
    steps : int
        ``K >= 1``, the model steps.
    loss_fn : callable
        ``loss_fn(prediction, truth) -> scalar`` (:func:`~.losses.get_loss`).
    pushforward : bool
        Run steps ``1 .. K - 1`` under ``torch.no_grad`` and return the loss of step ``K``
        only.

    Returns
    -------
    torch.Tensor
        Scalar: ``(1/K) sum_k loss_fn(p_k, pack(y_k))``, or ``loss_fn(p_K, pack(y_K))``
        with ``pushforward``. ``K = 1`` is ``loss_fn(model(inputs), target)`` exactly.

    Raises
    ------
    ValueError
        ``steps`` or ``t_out`` not a positive integer, or a target of other than a whole
        number ``>= steps`` of ``t_out``-frame steps; the message names the shapes.
    """
    for name, value in (("steps", steps), ("t_out", t_out)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    c = layout.frame_channels
    per_step = t_out * c
    if target.shape[1] % per_step or target.shape[1] < steps * per_step or inputs.shape[1] % c:
        raise ValueError(
            f"target: expected (batch, n * {per_step}, X, Y) with n >= steps = {steps} "
            f"(t_out = {t_out} frames of {c} channels per step) and inputs of whole frames, "
            f"got target {tuple(target.shape)} and inputs {tuple(inputs.shape)}")
    if steps == 1 and target.shape[1] == per_step:
        return loss_fn(model(inputs), target)  # one-step training, bit for bit
    t_in = inputs.shape[1] // c
    truth = layout.unpack(target, target.shape[1] // c)
    window, x, losses = None, inputs, []
    for k in range(steps):
        last = k == steps - 1
        with torch.set_grad_enabled(torch.is_grad_enabled() and (last or not pushforward)):
            pred = model(x)
        if last or not pushforward:
            losses.append(loss_fn(pred, layout.pack(truth[:, k * t_out : (k + 1) * t_out])))
        if not last:  # slide: w_k = [w_{k-1}, unpack(p_k)][-t_in:], as rollout does
            if window is None:
                window = layout.unpack(inputs, t_in)
            new = layout.unpack(pred, t_out).to(window.dtype)
            window = torch.cat([window, new], dim=1)[:, -t_in:]
            x = layout.pack(window)
    return losses[0] if len(losses) == 1 else torch.stack(losses).mean()


@dataclass(frozen=True)
class FieldLoss:
    """The training loss of a field batch with unrolling, pushforward and input noise.

    A ``loss_step`` for :class:`~.trainer.Trainer`: ``loss(trainer, inputs, target)`` adds
    the input noise (generator :func:`noise_generator` of ``(trainer.config.seed,
    trainer.step, trainer.rank)``) and returns :func:`unrolled_loss` of
    ``trainer.ddp_model`` with ``trainer.loss_fn``, unrolling :meth:`steps_at` steps in the
    epoch being trained. Training items are ``(inputs (t_in * C, X, Y), target
    (unroll_steps * t_out * C, X, Y))`` (``FieldWindows(ds, t_in, t_out * unroll_steps)``).

    Cost per item: ``K`` forward passes and a backward pass through all of them (about
    ``K`` times one-step training); with ``pushforward`` ``K`` forward passes of which
    ``K - 1`` have no backward (and keep no activations).

    Parameters
    ----------
    layout : FieldLayout
        The frames' layout (``C = layout.frame_channels``).
    t_out : int
        Frames per model step (``data.t_out``).
    unroll_steps : int
        ``K``, model steps per item (``train.unroll_steps``).
    curriculum : bool
        Unroll :func:`curriculum_steps` steps in each epoch (``train.unroll_curriculum``).
    pushforward : bool
        Train the last step only, the earlier ones without gradient (``train.pushforward``).
    input_noise : float
        ``sigma`` of :func:`add_input_noise` (``train.input_noise``).
    """

    layout: FieldLayout
    t_out: int
    unroll_steps: int = 1
    curriculum: bool = False
    pushforward: bool = False
    input_noise: float = 0.0

    @classmethod
    def from_config(cls, layout: FieldLayout, t_out: int, config: TrainConfig) -> FieldLoss:
        """The loss that the settings of ``config`` ask for."""
        return cls(layout, t_out, config.unroll_steps, config.unroll_curriculum,
                   config.pushforward, config.input_noise)

    def steps_at(self, epoch: int, epochs: int) -> int:
        """``K`` in epoch ``epoch`` (1-based) of ``epochs``: :func:`curriculum_steps` with
        ``curriculum``, else ``unroll_steps``."""
        if self.curriculum:
            return curriculum_steps(epoch, epochs, self.unroll_steps)
        return self.unroll_steps

    def __call__(self, trainer, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cfg = trainer.config
        if self.input_noise:
            gen = noise_generator(cfg.seed, trainer.step, trainer.rank)
            inputs = add_input_noise(inputs, self.input_noise, gen)
        return unrolled_loss(trainer.ddp_model, inputs, target, layout=self.layout,
                             t_out=self.t_out, steps=self.steps_at(trainer.epoch + 1,
                                                                   cfg.epochs),
                             loss_fn=trainer.loss_fn, pushforward=self.pushforward)


def unrolled_particle_loss(model, inputs, target, *, steps: int,
                           loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                           pushforward: bool = False) -> torch.Tensor:
    """The loss of ``steps`` rollout steps of a particle (x, v) predictor.

    Parameters
    ----------
    model : callable
        ``model(positions, velocities, charges) -> (positions, velocities)``, each
        ``(B, N, 3)``.
    inputs : tuple
        ``(positions (B, N, 3), velocities (B, N, 3), charges (B, N, 1))``: the true state.
    target : tuple
        ``(positions, velocities)``, each ``(B, n, N, 3)`` with ``n >= steps``: the true
        states ``1 .. n`` strides later (``ParticlePairs(..., steps=n)``).
    steps : int
        ``K >= 1``.
    loss_fn : callable
        ``loss_fn(prediction, truth) -> scalar``.
    pushforward : bool
        Steps ``1 .. K - 1`` without gradient; the loss of step ``K`` only.

    Returns
    -------
    torch.Tensor
        ``(1/K) sum_k [loss_fn(x_k, X_k) + loss_fn(v_k, V_k)]`` (the last term alone with
        ``pushforward``).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    xs, vs = target
    if xs.ndim != 4 or xs.shape[1] < steps or vs.shape != xs.shape:
        raise ValueError(f"target: expected (positions, velocities) of shape (batch, n, N, 3) "
                         f"with n >= steps = {steps}, got {tuple(xs.shape)} and "
                         f"{tuple(vs.shape)}")
    x, v, q = inputs
    losses = []
    for k in range(steps):
        last = k == steps - 1
        with torch.set_grad_enabled(torch.is_grad_enabled() and (last or not pushforward)):
            x, v = model(x, v, q)
        if last or not pushforward:
            losses.append(loss_fn(x, xs[:, k]) + loss_fn(v, vs[:, k]))
    return losses[0] if len(losses) == 1 else torch.stack(losses).mean()


@dataclass(frozen=True)
class ParticleLoss:
    """The training loss of a particle batch with unrolling and the pushforward trick.

    A ``loss_step`` for :class:`~.trainer.Trainer` over ``ParticlePairs(...,
    predict_velocity=True, steps=unroll_steps)``: :func:`unrolled_particle_loss` of
    ``trainer.ddp_model`` with ``trainer.loss_fn``, unrolling :meth:`steps_at` steps in the
    epoch being trained. Cost per item: ``K`` forward passes and a backward pass through all
    of them (with ``pushforward``, through the last only).

    Parameters
    ----------
    unroll_steps : int
        ``K`` (``train.unroll_steps``).
    curriculum : bool
        :func:`curriculum_steps` steps in each epoch (``train.unroll_curriculum``).
    pushforward : bool
        ``train.pushforward``.
    """

    unroll_steps: int = 1
    curriculum: bool = False
    pushforward: bool = False

    @classmethod
    def from_config(cls, config: TrainConfig) -> ParticleLoss:
        """The loss that the settings of ``config`` ask for."""
        return cls(config.unroll_steps, config.unroll_curriculum, config.pushforward)

    def steps_at(self, epoch: int, epochs: int) -> int:
        """``K`` in epoch ``epoch`` (1-based) of ``epochs``."""
        if self.curriculum:
            return curriculum_steps(epoch, epochs, self.unroll_steps)
        return self.unroll_steps

    def __call__(self, trainer, inputs, target) -> torch.Tensor:
        steps = self.steps_at(trainer.epoch + 1, trainer.config.epochs)
        return unrolled_particle_loss(trainer.ddp_model, inputs, target, steps=steps,
                                      loss_fn=trainer.loss_fn, pushforward=self.pushforward)
