"""Shared pieces of the particle models: input checks and neighbour graphs.

Both :class:`~grepsnet_sciml.models.nbody.GRepsNBody` and
:class:`~grepsnet_sciml.models.egnn.EGNN` read ``(positions, velocities, charges)`` and pass
messages along a neighbour graph stored densely: node ``i`` has the neighbours
``index[..., i, :]`` (``k`` of them, ``i`` itself excluded), so edge tensors have shape
``(batch, n, k, ...)`` and aggregation is a reduction over the axis ``k``; no Python loop over
particles and no scatter.

Examples
--------
>>> import torch
>>> pos, vel, q = check_inputs(torch.zeros(2, 4, 3), torch.zeros(2, 4, 3), torch.ones(2, 4))
>>> q.shape
torch.Size([2, 4])
>>> full_neighbours(4)
tensor([[1, 2, 3],
        [0, 2, 3],
        [0, 1, 3],
        [0, 1, 2]])
"""

from __future__ import annotations

import torch
from torch import nn

from ..groups import O
from ..reps import Reps

__all__ = [
    "GRAPHS",
    "ParticlePredictor",
    "aggregate",
    "check_inputs",
    "edge_linear",
    "full_neighbours",
    "gather_neighbours",
    "neighbour_graph",
]

GRAPHS = ("full", "knn", "radius")
"""Neighbour graphs the particle models accept."""

_VECTOR = Reps("T1", O(3))


class ParticlePredictor(nn.Module):
    """What a particle model maps, as :func:`~grepsnet_sciml.testing.assert_equivariant` reads it.

    ``forward(positions, velocities, charges)``: ``rep_in = (T1, T1, T0)`` per particle over
    O(3), particles along axis 1, positions (input 0, output 0) translate. ``rep_out`` is
    ``T1`` (positions), or ``(T1, T1)`` (positions, velocities) when ``velocity_output``.
    """

    rep_in = (_VECTOR, _VECTOR, Reps("T0", O(3)))
    particle_axis = 1
    translation_equivariant = True
    translation_inputs = (0,)
    translation_outputs = (0,)
    velocity_output = False

    @property
    def rep_out(self) -> Reps | tuple[Reps, Reps]:
        return (_VECTOR, _VECTOR) if self.velocity_output else _VECTOR


def check_inputs(
    positions: torch.Tensor,
    velocities: torch.Tensor,
    charges: torch.Tensor | None,
    n_particles: int | None = None,
    min_particles: int = 2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate particle inputs and return them with charges as ``(batch, n)``.

    Parameters
    ----------
    positions, velocities : torch.Tensor
        ``(batch, n, 3)`` each, finite, same shape.
    charges : torch.Tensor
        ``(batch, n)`` or ``(batch, n, 1)``, finite.
    n_particles : int, optional
        The particle count the model was built for; ``None`` accepts any count.
    min_particles : int
        Fewest particles the model's graph needs.

    Raises
    ------
    ValueError
        Naming the argument, what was received and what was expected.
    """
    for name, x in (("positions", positions), ("velocities", velocities)):
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 3 or x.shape[-1] != 3:
            raise ValueError(
                f"{name}: expected shape (batch, n_particles, 3), got {tuple(x.shape)}"
            )
    if velocities.shape != positions.shape:
        raise ValueError(
            f"velocities: expected the shape of positions {tuple(positions.shape)}, "
            f"got {tuple(velocities.shape)}"
        )
    batch, n = positions.shape[:2]
    if charges is None:
        raise ValueError(
            f"charges: expected a tensor of shape ({batch}, {n}) or ({batch}, {n}, 1), got None"
        )
    if not isinstance(charges, torch.Tensor):
        raise ValueError(f"charges: expected a torch.Tensor, got {type(charges).__name__}")
    if charges.ndim == 3 and charges.shape[-1] == 1:
        charges = charges[..., 0]
    if tuple(charges.shape) != (batch, n):
        raise ValueError(
            f"charges: expected shape ({batch}, {n}) or ({batch}, {n}, 1), "
            f"got {tuple(charges.shape)}"
        )
    if n < min_particles:
        raise ValueError(f"positions: expected at least {min_particles} particles, got {n}")
    if n_particles is not None and n != n_particles:
        raise ValueError(
            f"positions: the model was built for n_particles={n_particles}, got {n} particles"
        )
    for name, x in (("positions", positions), ("velocities", velocities), ("charges", charges)):
        if not torch.isfinite(x).all():
            raise ValueError(f"{name}: contains NaN or Inf; expected finite values")
    return positions, velocities, charges.to(positions.dtype)


def full_neighbours(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(n, n - 1)`` long: row ``i`` lists every particle except ``i``, in increasing order."""
    idx = torch.arange(n, device=device)
    grid = idx.expand(n, n)
    return grid[grid != idx[:, None]].reshape(n, n - 1)


def neighbour_graph(
    positions: torch.Tensor, graph: str = "full", k: int | None = None, radius: float | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Neighbour indices and an optional edge mask for a particle graph.

    Parameters
    ----------
    positions : torch.Tensor
        ``(batch, n, 3)``.
    graph : {"full", "knn", "radius"}
        Fully connected; the ``k`` nearest other particles; every other particle closer than
        ``radius`` (edges kept densely, the others masked out).

    Returns
    -------
    index : torch.Tensor
        ``(n, n - 1)`` for ``"full"`` and ``"radius"``, ``(batch, n, k)`` for ``"knn"``.
    mask : torch.Tensor or None
        ``(batch, n, n - 1)`` in the dtype of ``positions`` (1 keeps an edge) for
        ``"radius"``, else ``None``.

    All three graphs depend on distances only, so they are invariant under E(3) and permute
    with the particles (up to ties at exactly equal distances for ``"knn"``).
    """
    n = positions.shape[1]
    index = full_neighbours(n, positions.device)
    if graph == "full":
        return index, None
    diff = positions[:, :, None, :] - positions[:, index, :]
    dist2 = (diff * diff).sum(-1)  # (batch, n, n - 1)
    if graph == "knn":
        if k is None or not 1 <= k <= n - 1:
            raise ValueError(f"k: expected 1 <= k <= n_particles - 1 = {n - 1}, got {k}")
        nearest = dist2.topk(k, dim=-1, largest=False).indices
        return index[torch.arange(n, device=positions.device)[:, None], nearest], None
    if graph == "radius":
        if radius is None or not radius > 0:
            raise ValueError(f"radius: expected a positive cut-off, got {radius}")
        return index, (dist2 < radius * radius).to(positions.dtype)
    raise ValueError(f"graph: expected one of {GRAPHS}, got {graph!r}")


def gather_neighbours(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Features of each node's neighbours.

    Parameters
    ----------
    x : torch.Tensor
        ``(batch, n, ...)`` node features.
    index : torch.Tensor
        ``(n, k)`` shared by the batch or ``(batch, n, k)``.

    Returns
    -------
    torch.Tensor
        ``(batch, n, k, ...)`` with ``out[b, i, m] = x[b, index[(b,) i, m]]``.
    """
    batch, n = x.shape[:2]
    if index.ndim == 2:
        out = x.index_select(1, index.flatten())
    else:
        offsets = torch.arange(batch, device=x.device)[:, None, None] * n
        out = x.reshape(batch * n, *x.shape[2:]).index_select(0, (index + offsets).flatten())
    return out.view(batch, n, index.shape[-1], *x.shape[2:])


def aggregate(messages: torch.Tensor, mask: torch.Tensor | None, mean: bool) -> torch.Tensor:
    """Sum or mean of edge messages ``(batch, n, k, ...)`` over neighbours -> ``(batch, n, ...)``.

    ``mask`` ``(batch, n, k)`` weights the edges (radius graphs); a mean divides by the number
    of kept edges (at least one).
    """
    if mask is None:
        return messages.mean(2) if mean else messages.sum(2)
    m = mask.reshape(mask.shape + (1,) * (messages.ndim - 3))
    total = (messages * m).sum(2)
    if not mean:
        return total
    count = mask.sum(2).clamp(min=1)
    return total / count.reshape(count.shape + (1,) * (total.ndim - 2))


def edge_linear(
    linear: torch.nn.Linear, h: torch.Tensor, edge: torch.Tensor, index: torch.Tensor
) -> torch.Tensor:
    """``linear([h_i, h_j, e_ij])`` for every edge, without building the concatenation.

    The weight is split as ``[W_i, W_j, W_e]``; ``W_i h`` and ``W_j h`` are computed once per
    node and broadcast to the edges, which is the same map at a fraction of the cost.

    Parameters
    ----------
    linear : torch.nn.Linear
        ``in_features = 2 H + E``.
    h : torch.Tensor
        ``(batch, n, H)`` node features.
    edge : torch.Tensor
        ``(batch, n, k, E)`` edge features.
    index : torch.Tensor
        Neighbour indices as in :func:`gather_neighbours`.

    Returns
    -------
    torch.Tensor
        ``(batch, n, k, out_features)``.
    """
    hidden = h.shape[-1]
    w_i, w_j, w_e = linear.weight.split([hidden, hidden, edge.shape[-1]], dim=1)
    src = (h @ w_i.T)[:, :, None]
    dst = gather_neighbours(h @ w_j.T, index)
    out = edge @ w_e.T + src + dst
    return out if linear.bias is None else out + linear.bias
