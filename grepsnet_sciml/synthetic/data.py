"""The three synthetic regression tasks of EMLP (Finzi, Welling, Wilson; ICML 2021).

Each data set draws standard normal inputs, computes an exactly invariant or equivariant
target, and declares ``rep_in``, ``rep_out`` (:class:`~grepsnet_sciml.Reps`) and ``group``:

- :class:`O5Synthetic`: group ``O(5)``, ``rep_in = 2xT1``, ``rep_out = T0``;
- :class:`Inertia`: group ``O(3)``, ``rep_in = 5xT0 + 5xT1``, ``rep_out = T2``;
- :class:`ParticleInteraction`: group ``Lorentz()`` (O(1,3)), ``rep_in = 4xT1``,
  ``rep_out = T0``.

The definitions follow EMLP's ``emlp/datasets.py`` (same input distributions and
targets). Its flat layouts coincide with :class:`~grepsnet_sciml.Reps`' channel-major
layout: EMLP reshapes ``2*Vector`` to ``(N, 2, 5)``, ``k*Scalar + k*Vector`` to masses
``(N, k)`` followed by positions ``(N, k, 3)``, and the inertia tensor ``T(2)`` is
flattened row-major, exactly as ``Reps`` lays out ``T1`` and ``T2`` channels.

Normalization: :meth:`SyntheticDataset.standardization` returns EMLP's statistics, all of
which keep equivariance (one positive scale per vector channel, a mean and scale only for
invariant targets, the identity for ``Inertia``); the benchmark computes them on the
training split only (EMLP computed them before splitting).

Seeding: a data set is a function of ``(task, seed, split)`` alone; train and test splits
of one seed are independent streams (``numpy.random.default_rng([task_id, seed, split])``).

Examples
--------
>>> data = O5Synthetic(8, seed=0)
>>> data.x.shape, data.y.shape
(torch.Size([8, 10]), torch.Size([8, 1]))
>>> data.rep_in, data.rep_out
(Reps('2xT1', O(5)), Reps('T0', O(5)))
>>> bool((O5Synthetic(8, seed=0).x == data.x).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..groups import Group, Lorentz, O
from ..reps import Reps

__all__ = [
    "SyntheticDataset",
    "O5Synthetic",
    "Inertia",
    "ParticleInteraction",
    "Standardization",
    "TASKS",
    "make_dataset",
    "o5_target",
    "inertia_target",
    "particle_interaction_target",
]

SPLITS = {"train": 0, "test": 1, "valid": 2}
"""Split name -> stream index in the seed sequence."""

MINKOWSKI = torch.diag(torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64))


def o5_target(x: torch.Tensor) -> torch.Tensor:
    """O(5)-invariant target of :class:`O5Synthetic`.

    ``y = sin |r1| - |r2|^3 / 2 + (r1 . r2) / (|r1| |r2|)``.

    Parameters
    ----------
    x : torch.Tensor
        ``(n, 10)``: ``r1 = x[:, :5]``, ``r2 = x[:, 5:]``.

    Returns
    -------
    torch.Tensor
        ``(n, 1)``.
    """
    r1, r2 = x[:, :5], x[:, 5:10]
    n1, n2 = r1.norm(dim=-1), r2.norm(dim=-1)
    y = torch.sin(n1) - 0.5 * n2**3 + (r1 * r2).sum(-1) / (n1 * n2)
    return y[:, None]


def inertia_target(x: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Inertia tensor of ``k`` point masses, an O(3)-equivariant ``T2``.

    ``I = sum_i m_i (|r_i|^2 Id - r_i r_i^T)``, so ``I(g m, g r) = g I g^T``.

    Parameters
    ----------
    x : torch.Tensor
        ``(n, 4 k)``: masses ``x[:, :k]`` then positions ``x[:, k:]`` as ``(n, k, 3)``.

    Returns
    -------
    torch.Tensor
        ``(n, 9)``, ``I`` flattened row-major.
    """
    m = x[:, :k]
    r = x[:, k:].reshape(-1, k, 3)
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    r2 = (r**2).sum(-1)[..., None, None]
    inertia = (m[..., None, None] * (r2 * eye - r[..., :, None] * r[..., None, :])).sum(1)
    return inertia.reshape(-1, 9)


def particle_interaction_target(x: torch.Tensor) -> torch.Tensor:
    """Lorentz-invariant electron-muon scattering matrix element of
    :class:`ParticleInteraction`.

    With ``<u, v> = u^T eta v``, ``eta = diag(1, -1, -1, -1)``:
    ``L_e = p1 p3^T - (<p1, p3> - <p1, p1>) eta``,
    ``L_mu = (eta p2)(eta p4)^T - (<p2, p4> - <p2, p2>) eta`` and
    ``y = 4 sum_ab (L_e)_ab (L_mu)_ab``, a full contraction of a contravariant with a
    covariant tensor, hence invariant under O(1,3).

    Parameters
    ----------
    x : torch.Tensor
        ``(n, 16)``: four-momenta ``p1 .. p4`` as ``(n, 4, 4)``.

    Returns
    -------
    torch.Tensor
        ``(n, 1)``.
    """
    p = x.reshape(-1, 4, 4)
    p1, p2, p3, p4 = p.unbind(1)
    eta = MINKOWSKI.to(dtype=x.dtype, device=x.device)

    def dot(u, v):
        return ((u @ eta) * v).sum(-1)[:, None, None]

    l_e = p1[:, :, None] * p3[:, None, :] - (dot(p1, p3) - dot(p1, p1)) * eta
    l_mu = (p2 @ eta)[:, :, None] * (p4 @ eta)[:, None, :] - (dot(p2, p4) - dot(p2, p2)) * eta
    return 4 * (l_e * l_mu).sum((-1, -2))[:, None]


@dataclass(frozen=True)
class Standardization:
    """An equivariance-preserving affine normalization ``x / x_scale``,
    ``y = y_scale * f + y_mean``.

    Attributes
    ----------
    x_scale : torch.Tensor
        ``(rep_in.dim,)`` positive, constant over the components of each channel.
    y_mean : torch.Tensor
        ``(rep_out.dim,)``, nonzero only on invariant ``T0`` entries.
    y_scale : torch.Tensor
        ``(rep_out.dim,)`` positive, constant over the components of each channel.
    """

    x_scale: torch.Tensor
    y_mean: torch.Tensor
    y_scale: torch.Tensor


def _channel_rms(x: torch.Tensor, reps: Reps) -> torch.Tensor:
    """One RMS per channel (over samples and components), broadcast to ``(reps.dim,)``."""
    scale = torch.ones(reps.dim, dtype=torch.float64)
    for b in reps.blocks:
        xb = x[:, b.slice].reshape(x.shape[0], b.mult, b.size)
        rms = xb.pow(2).mean((0, 2)).sqrt()
        scale[b.slice] = rms.repeat_interleave(b.size)
    return scale


class SyntheticDataset(torch.utils.data.Dataset):
    """Base class: ``n_samples`` inputs ``x`` ``(n, rep_in.dim)`` and targets ``y``
    ``(n, rep_out.dim)``, float64, with ``y = target(x)``.

    Parameters
    ----------
    n_samples : int
        Number of samples (positive).
    seed : int
        Seed of the stream (non-negative).
    split : str
        ``"train"``, ``"test"`` or ``"valid"``: independent streams of one seed.
    """

    name: str = ""
    task_id: int = -1
    group: Group
    rep_in: Reps
    rep_out: Reps

    def __init__(self, n_samples: int = 1000, seed: int = 0, split: str = "train"):
        if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
            raise ValueError(f"n_samples: expected a positive integer, got {n_samples!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")
        self.n_samples, self.seed, self.split = n_samples, seed, split
        rng = np.random.default_rng([self.task_id, seed, SPLITS[split]])
        self.x = self._draw(rng, n_samples)
        self.y = self.target(self.x)

    def _draw(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        return torch.from_numpy(rng.standard_normal((n, self.rep_in.dim)))

    @staticmethod
    def target(x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def standardization(self) -> Standardization:
        """The normalization EMLP applies to this task (identity by default)."""
        return Standardization(
            torch.ones(self.rep_in.dim, dtype=torch.float64),
            torch.zeros(self.rep_out.dim, dtype=torch.float64),
            torch.ones(self.rep_out.dim, dtype=torch.float64),
        )

    def __len__(self) -> int:
        return self.n_samples

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.n_samples}, seed={self.seed}, split={self.split!r})"


class _ScalarTargetStandardization:
    """EMLP's choice for invariant targets: ``x`` scaled by one RMS per vector channel
    (a scalar per channel commutes with ``g``), ``y`` by its mean and standard deviation
    (``y`` is invariant)."""

    def standardization(self) -> Standardization:
        y_mean = self.y.mean(0)
        y_scale = self.y.std(0)
        return Standardization(_channel_rms(self.x, self.rep_in), y_mean, y_scale)


class O5Synthetic(_ScalarTargetStandardization, SyntheticDataset):
    """O(5)-invariant regression: two vectors ``r1, r2 ~ N(0, I_5)`` -> :func:`o5_target`.

    ``rep_in = 2xT1``, ``rep_out = T0`` over ``O(5)``. Standardization as EMLP: inputs
    divided by one RMS per vector, target by its mean and standard deviation.
    """

    name = "o5"
    task_id = 0
    group = O(5)
    rep_in = Reps("2xT1", O(5))
    rep_out = Reps("T0", O(5))

    @staticmethod
    def target(x: torch.Tensor) -> torch.Tensor:
        return o5_target(x)


class Inertia(SyntheticDataset):
    """O(3)-equivariant inertia tensor of 5 point masses -> :func:`inertia_target`.

    Masses ``softplus(z)``, positions ``N(0, I_3)``; ``rep_in = 5xT0 + 5xT1``,
    ``rep_out = T2`` over ``O(3)``. No standardization (EMLP's stats are ``0, 1, 0, 1``).
    """

    name = "inertia"
    task_id = 1
    group = O(3)
    rep_in = Reps("5xT0 + 5xT1", O(3))
    rep_out = Reps("T2", O(3))

    def _draw(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        x = super()._draw(rng, n)
        x[:, :5] = torch.nn.functional.softplus(x[:, :5])
        return x

    @staticmethod
    def target(x: torch.Tensor) -> torch.Tensor:
        return inertia_target(x, 5)


class ParticleInteraction(_ScalarTargetStandardization, SyntheticDataset):
    """Lorentz-invariant e-mu scattering: four-momenta ``p_i ~ N(0, I_4 / 16)`` ->
    :func:`particle_interaction_target`.

    ``rep_in = 4xT1``, ``rep_out = T0`` over ``Lorentz()`` = O(1,3). Standardization as
    EMLP: one RMS per four-vector, target by its mean and standard deviation.
    """

    name = "lorentz"
    task_id = 2
    group = Lorentz()
    rep_in = Reps("4xT1", Lorentz())
    rep_out = Reps("T0", Lorentz())

    def _draw(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        return super()._draw(rng, n) / 4

    @staticmethod
    def target(x: torch.Tensor) -> torch.Tensor:
        return particle_interaction_target(x)


TASKS: dict[str, type[SyntheticDataset]] = {
    cls.name: cls for cls in (O5Synthetic, Inertia, ParticleInteraction)
}
"""Task name -> data set class, in benchmark order."""


def make_dataset(task: str, n_samples: int, seed: int, split: str = "train") -> SyntheticDataset:
    """Build the data set of ``task`` (a key of :data:`TASKS`).

    Raises
    ------
    ValueError
        For an unknown task name.
    """
    if task not in TASKS:
        raise ValueError(f"task: unknown synthetic task {task!r}; expected one of {list(TASKS)}")
    return TASKS[task](n_samples, seed=seed, split=split)
