"""EGNN with velocities (Satorras, Hoogeboom, Welling, ICML 2021), the N-body baseline.

A reimplementation of the ``E_GCL_vel`` network the paper uses on the charged 5-body task:
invariant node features ``h`` and positions ``x`` updated layer by layer,

.. math::

    m_{ij} &= \\phi_e(h_i, h_j, \\lVert x_i - x_j \\rVert^2, a_{ij}), \\\\
    x_i &\\leftarrow x_i + \\frac{1}{|N(i)|} \\sum_{j \\in N(i)} (x_i - x_j)\\, \\phi_x(m_{ij})
          + \\phi_v(h_i)\\, v_i, \\\\
    h_i &\\leftarrow h_i + \\phi_h\\Big(h_i, \\sum_{j \\in N(i)} m_{ij}\\Big),

with ``h_i`` initialised from the speed ``|v_i|`` and edge attributes ``a_ij = (q_i q_j,
|x_i - x_j|^2)`` taken at the input positions. Edges are held densely as ``(batch, n, k, .)``.

Equivariance: ``f(g x + t, g v, q)[P] = g f(x, v, q)[P] + t`` for ``g`` in O(3), translations
``t`` and particle permutations ``P``.

Examples
--------
>>> import torch
>>> model = EGNN()
>>> x, v, q = torch.randn(2, 5, 3), torch.randn(2, 5, 3), torch.randn(2, 5).sign()
>>> model(x, v, q).shape
torch.Size([2, 5, 3])
"""

from __future__ import annotations

import torch
from torch import nn

from ._particles import (
    ParticlePredictor,
    aggregate,
    check_inputs,
    edge_linear,
    gather_neighbours,
    neighbour_graph,
)

__all__ = ["EGNN", "EGNNLayer"]


class EGNNLayer(nn.Module):
    """One ``E_GCL_vel`` layer on dense edges.

    Parameters
    ----------
    hidden : int
        Width of ``h`` and of the messages.
    edge_dim : int
        Number of edge attributes ``a_ij``.
    update_nodes : bool
        Update ``h`` (the last layer of the network skips it: its output would be unused).
    coord_clamp : float
        Each component of ``(x_i - x_j) phi_x(m_ij)`` is clipped to ``[-clamp, clamp]``, as in
        the reference code (a guard that does not fire in practice; where it fires it is not
        rotation-equivariant).
    """

    def __init__(
        self, hidden: int, edge_dim: int, update_nodes: bool = True, coord_clamp: float = 100.0
    ):
        super().__init__()
        act = nn.SiLU()
        self.edge_in = nn.Linear(2 * hidden + 1 + edge_dim, hidden)
        self.edge_mlp = nn.Sequential(act, nn.Linear(hidden, hidden), act)
        last = nn.Linear(hidden, 1, bias=False)
        nn.init.xavier_uniform_(last.weight, gain=0.001)
        self.coord_mlp = nn.Sequential(nn.Linear(hidden, hidden), act, last)
        self.vel_mlp = nn.Sequential(nn.Linear(hidden, hidden), act, nn.Linear(hidden, 1))
        self.node_mlp = (
            nn.Sequential(nn.Linear(2 * hidden, hidden), act, nn.Linear(hidden, hidden))
            if update_nodes
            else None
        )
        self.coord_clamp = float(coord_clamp)

    def forward(self, h, x, v, edge_attr, index, mask):
        """``h (b, n, H)``, ``x, v (b, n, 3)``, ``edge_attr (b, n, k, E)`` -> ``(h, x)``."""
        diff = x[:, :, None, :] - gather_neighbours(x, index)  # (b, n, k, 3)
        radial = (diff * diff).sum(-1, keepdim=True)
        m = self.edge_mlp(edge_linear(self.edge_in, h, torch.cat([radial, edge_attr], -1), index))
        trans = (diff * self.coord_mlp(m)).clamp(-self.coord_clamp, self.coord_clamp)
        x = x + aggregate(trans, mask, mean=True) + self.vel_mlp(h) * v
        if self.node_mlp is not None:
            h = h + self.node_mlp(torch.cat([h, aggregate(m, mask, mean=False)], -1))
        return h, x


class EGNN(ParticlePredictor):
    """EGNN N-body predictor: ``(positions, velocities, charges) -> positions``.

    Group O(3) with translations and particle permutations;
    ``rep_in = (T1, T1, T0)`` per particle, ``rep_out = T1`` per particle.

    Parameters
    ----------
    hidden : int
        Width of node features and messages (paper: 64).
    n_layers : int
        Number of ``E_GCL_vel`` layers (paper: 4).
    graph : {"full", "knn", "radius"}
        Neighbour graph (paper: fully connected).
    k, radius : optional
        Parameters of the ``"knn"`` and ``"radius"`` graphs.
    n_particles : int, optional
        If given, inputs with another particle count are rejected.
    velocity_output : bool
        Also predict the velocities (an extension for rollouts, not in the paper):
        ``v_T = a(h_i) v_i + b(h_i) (x_T - x_0)`` with an invariant MLP ``(a, b)``; then
        ``rep_out = (T1, T1)`` and ``forward`` returns ``(positions, velocities)``.

    Shapes
    ------
    positions, velocities ``(batch, n, 3)``; charges ``(batch, n)`` or ``(batch, n, 1)``;
    output ``(batch, n, 3)`` (twice with ``velocity_output``).

    Notes
    -----
    The reference code also builds a node MLP in the last layer whose output is never used;
    it is left out here, so every parameter receives a gradient (about 12k fewer parameters).
    """

    def __init__(
        self,
        hidden: int = 64,
        n_layers: int = 4,
        graph: str = "full",
        k: int | None = None,
        radius: float | None = None,
        n_particles: int | None = None,
        velocity_output: bool = False,
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers: expected a positive integer, got {n_layers}")
        self.graph, self.k, self.radius, self.n_particles = graph, k, radius, n_particles
        neighbour_graph(torch.zeros(1, max(2, (k or 0) + 1), 3), graph, k, radius)  # validates
        self.embedding = nn.Linear(1, hidden)
        self.layers = nn.ModuleList(
            EGNNLayer(hidden, edge_dim=2, update_nodes=i < n_layers - 1) for i in range(n_layers)
        )
        self.velocity_output = bool(velocity_output)
        if self.velocity_output:
            self.velocity_readout = nn.Sequential(
                nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2)
            )

    def forward(
        self, positions: torch.Tensor, velocities: torch.Tensor, charges: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Predict positions ``(batch, n, 3)`` one horizon ahead (and velocities)."""
        x0, v, q = check_inputs(positions, velocities, charges, self.n_particles)
        x = x0
        index, mask = neighbour_graph(x, self.graph, self.k, self.radius)
        diff = x[:, :, None, :] - gather_neighbours(x, index)
        edge_attr = torch.stack(
            [q[:, :, None] * gather_neighbours(q, index), (diff * diff).sum(-1)], -1
        )
        h = self.embedding(torch.linalg.vector_norm(v, dim=-1, keepdim=True))
        for layer in self.layers:
            h, x = layer(h, x, v, edge_attr, index, mask)
        if not self.velocity_output:
            return x
        a, b = self.velocity_readout(h).unbind(-1)
        return x, a[..., None] * v + b[..., None] * (x - x0)
