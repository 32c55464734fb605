"""Normalization that keeps equivariance: one shared scale per field, shifts only on scalars.

Per-component statistics (a separate mean and std for ``u_x`` and ``u_y``) break rotation
equivariance, and a mean shift of a pseudo-scalar breaks reflections. Here each block of a
:class:`~grepsnet_sciml.reps.Reps` (one field: ``10xT0p`` for 10 frames of vorticity, or
``4xT1`` for 4 frames of velocity) gets one scale ``s_b > 0``, and only true scalars
(``T0``) get a shift ``m_b``:

.. math::
    \\mathrm{encode}(x)_c = (x_c - m_{b(c)}) / s_{b(c)}, \\qquad
    \\mathrm{decode}(y)_c = s_{b(c)} y_c + m_{b(c)},

with ``m_b = 0`` unless block ``b`` is ``T0``. Because ``s`` is the same for every
component of every channel of a block, ``encode(rho(g) x) = rho(g) encode(x)`` for every
kind (T0, T0p, T1, T2, R). Statistics: ``T0`` mean and standard deviation; other kinds the
root mean square over all entries (no centring).

Examples
--------
>>> import torch
>>> from grepsnet_sciml import Reps
>>> from grepsnet_sciml.groups import O
>>> reps = Reps("T0 + T1", O(3))
>>> x = torch.tensor([[1.0, 3.0, 0.0, 4.0], [3.0, 0.0, 3.0, 4.0]])
>>> norm = Normalizer.fit(reps, x)
>>> norm.scale.tolist(), norm.shift.tolist()
([1.0, 2.8867...], [2.0, 0.0])
>>> torch.allclose(norm.decode(norm.encode(x)), x)
True
"""

from __future__ import annotations

import torch
from torch import nn

from grepsnet_sciml.reps import Reps

__all__ = ["Normalizer", "NormalizedModel", "block_statistics"]


def block_statistics(values: torch.Tensor, kind: str) -> tuple[float, float]:
    """``(scale, shift)`` of one field's values (any shape, all entries of the block).

    ``T0``: ``(std, mean)``; any other kind: ``(rms, 0)``. A zero scale becomes 1.
    """
    values = values.to(torch.float64)
    if not torch.isfinite(values).all():
        raise ValueError(f"values: contain NaN or Inf; expected finite {kind} data")
    if kind == "T0":
        shift = float(values.mean())
        scale = float(values.std(unbiased=False))
    else:
        shift = 0.0
        scale = float(values.pow(2).mean().sqrt())
    return (scale if scale > 0 else 1.0), shift


class Normalizer(nn.Module):
    """Equivariant per-block affine normalization of tensors in a ``Reps`` layout.

    Parameters
    ----------
    reps : Reps
        Layout of the tensors.
    scale, shift : sequence of float
        One entry per block of ``reps``; ``shift`` must be 0 on every non-``T0`` block.
    domain : str
        ``"grid"`` (channels on axis 1 of ``(batch, dim, X, Y)``) or ``"point"``
        (channels last, ``(..., dim)``).

    Attributes
    ----------
    rep_in, rep_out : Reps
        Both ``reps``; ``forward`` is :meth:`encode`, an equivariant map.
    """

    def __init__(self, reps: Reps, scale, shift=None, domain: str = "point"):
        super().__init__()
        if domain not in ("grid", "point"):
            raise ValueError(f"domain: expected 'grid' or 'point', got {domain!r}")
        scale = torch.as_tensor(scale, dtype=torch.float64).reshape(-1)
        shift = torch.zeros_like(scale) if shift is None else torch.as_tensor(
            shift, dtype=torch.float64).reshape(-1)
        if scale.numel() != len(reps.blocks) or shift.numel() != len(reps.blocks):
            raise ValueError(
                f"scale/shift: expected {len(reps.blocks)} entries (one per block of {reps}), "
                f"got {scale.numel()} and {shift.numel()}"
            )
        if not (torch.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"scale: expected finite positive values, got {scale.tolist()}")
        for b, m in zip(reps.blocks, shift.tolist()):
            if b.kind != "T0" and m != 0:
                raise ValueError(
                    f"shift: a {b.kind} block cannot be shifted (breaks equivariance); got {m}"
                )
        self.rep_in = self.rep_out = reps
        self.domain = domain
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)
        sizes = torch.tensor([b.dim for b in reps.blocks], dtype=torch.long)
        self.register_buffer("_block_of_channel",
                             torch.repeat_interleave(torch.arange(len(reps.blocks)), sizes),
                             persistent=False)

    @classmethod
    def fit(cls, reps: Reps, data: torch.Tensor, domain: str = "point") -> Normalizer:
        """Statistics of ``data`` in the layout of ``reps`` (``(..., dim)`` or grid fields)."""
        reps.check(data, "data", grid=domain == "grid")
        axis = 1 if domain == "grid" else data.ndim - 1
        stats = [block_statistics(data.narrow(axis, b.start, b.dim), b.kind)
                 for b in reps.blocks]
        return cls(reps, [s for s, _ in stats], [m for _, m in stats], domain)

    def _expand(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        v = v[self._block_of_channel].to(x.dtype)
        return v[:, None, None] if self.domain == "grid" else v

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - m) / s`` channel by channel."""
        return (x - self._expand(self.shift, x)) / self._expand(self.scale, x)

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        """``s y + m`` channel by channel (inverse of :meth:`encode`)."""
        return y * self._expand(self.scale, y) + self._expand(self.shift, y)

    forward = encode


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


class NormalizedModel(nn.Module):
    """``decode_out(core(encode_in(x)))``: a model that carries its normalization.

    Parameters
    ----------
    core : nn.Module
        Declares ``rep_in``/``rep_out`` (and ``domain``, ``particle_axis``, ...).
    in_norms, out_norms : Normalizer or sequence of Normalizer
        One per input / output of ``core``, in the layouts of its ``rep_in``/``rep_out``.
    head : nn.Module, optional
        ``head(inputs, outputs) -> outputs`` applied in the data's units, after decoding
        (e.g. :class:`~grepsnet_sciml.models.energy.EnergyProjection`, whose energy is not
        that of normalized states); it must be equivariant itself.

    The buffers travel with ``state_dict``, so checkpoints hold the normalization. It is
    equivariant whenever ``core`` (and ``head``) are (the normalizers are).
    """

    def __init__(self, core: nn.Module, in_norms, out_norms, head: nn.Module | None = None):
        super().__init__()
        self.core, self.head = core, head
        self.in_norms = nn.ModuleList(_as_tuple(in_norms))
        self.out_norms = nn.ModuleList(_as_tuple(out_norms))
        for attr in ("rep_in", "rep_out", "domain", "particle_axis", "translation_equivariant",
                     "translation_inputs", "translation_outputs"):
            if hasattr(core, attr):
                setattr(self, attr, getattr(core, attr))
        if len(self.in_norms) != len(_as_tuple(core.rep_in)):
            raise ValueError(
                f"in_norms: expected {len(_as_tuple(core.rep_in))} normalizers, "
                f"got {len(self.in_norms)}"
            )
        if len(self.out_norms) != len(_as_tuple(core.rep_out)):
            raise ValueError(
                f"out_norms: expected {len(_as_tuple(core.rep_out))} normalizers, "
                f"got {len(self.out_norms)}"
            )

    def forward(self, *inputs):
        out = self.core(*(n.encode(x) for n, x in zip(self.in_norms, inputs)))
        if isinstance(out, (tuple, list)):
            out = tuple(n.decode(y) for n, y in zip(self.out_norms, out))
        else:
            out = self.out_norms[0].decode(out)
        return out if self.head is None else self.head(inputs, out)
