"""GRepsNBody: an E(3) x permutation equivariant N-body predictor with G-RepsNet features.

Particles carry G-RepsNet tensors over O(3): invariant channels ``h`` (T0, ``(b, n, H)``,
initialised from the speed ``|v_i|``) and vector channels ``V`` (T1, ``C1`` channels,
initialised from the velocity). Each layer passes messages along a neighbour graph (all
other particles by default) held densely as ``(b, n, k, ...)``:

1. T1 -> T0 conversions on the edges: ``|r_ij|^2`` of the current relative position
   ``r_ij = x_i - x_j``, the fixed edge invariants (charge product ``q_i q_j``, squared input
   distance), optionally softened inverse distances, and the inner products
   ``<V_i, r~_ij>``, ``<V_j, r~_ij>`` with ``r~_ij = r_ij / (|r_ij| + 1)``; with ``h_i, h_j``
   they go through an MLP to the invariant message ``m_ij``;
2. the message sets the invariant coefficients of a vector message (T0 x T1 -> T1)
   ``mu_ij = alpha(m_ij) r~_ij + beta(m_ij) V_j`` and of an order-2 message (T1 x T1 -> T2
   outer products) ``gamma(m_ij) r~_ij r~_ij^T``; their neighbour means are ``U_i`` (T1)
   and the structure tensor ``T_i`` (T2);
3. the contraction ``T_i W_i`` (T2 . T1 -> T1) with vectors ``W_i`` mixed from
   ``(V_i, U_i)`` brings three-body angular information back to vectors
   (see :func:`structure_contraction`);
4. the norms of ``(V_i, U_i, T_i W_i)`` and ``<W_i, T_i W_i>`` (T1, T2 -> T0) with ``h_i`` and
   the mean message update ``h`` through an MLP with a residual; the vectors are mixed over
   channels without bias, divided by an invariant per-particle scale and gated by the new
   invariants, ``V <- V + gate(h) Mix(V, U, T W) / (1 + mean |.|)``; the position moves by a
   combination of the vector channels with invariant weights,
   ``x_i <- x_i + sum_c w_c(h_i) V_ic`` (initialised near zero, so the untrained model
   predicts almost no motion).

Positions enter only through differences and are moved only by vectors, so the model
predicts the displacement ``x_T - x_0`` and adds it back. Equivariance:
``f(g x + t, g v, q)[P] = g f(x, v, q)[P] + t`` for ``g`` in O(3), translations ``t`` and
particle permutations ``P``; charges enter only through the products ``q_i q_j``, so flipping
every charge leaves the prediction unchanged, like the physics.

The conversions are the core's (:mod:`grepsnet_sciml.layers.tensor_ops`: inner products,
norms, gating, outer products, contractions), fused for speed on component-major vectors
``(3, b, n, C)``; a test holds the fused T2 path against ``tensor_ops.outer`` and
``tensor_ops.contract``.

Examples
--------
>>> import torch
>>> model = GRepsNBody()
>>> x, v, q = torch.randn(2, 5, 3), torch.randn(2, 5, 3), torch.randn(2, 5).sign()
>>> model(x, v, q).shape
torch.Size([2, 5, 3])
"""

from __future__ import annotations

import torch
from torch import nn

from ._particles import (
    ParticlePredictor,
    check_inputs,
    edge_linear,
    gather_neighbours,
    neighbour_graph,
)
from .energy import EnergyProjection

__all__ = ["GRepsNBody", "GRepsNBodyLayer", "structure_contraction"]

_EPS = 1e-8


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Neighbour features of component-major ``x`` ``(3, b, n, ...)`` -> ``(3, b, n, k, ...)``."""
    if index.ndim == 2:
        out = x.index_select(2, index.flatten())
        return out.view(*x.shape[:3], index.shape[-1], *x.shape[3:])
    return gather_neighbours(x.movedim(0, -1), index).movedim(-1, 0)


class GRepsNBodyLayer(nn.Module):
    """One message-passing layer of :class:`GRepsNBody`.

    Vectors are stored component-major, ``(3, b, n, C)``, so that every inner product,
    outer-product contraction and neighbour sum is a few large contiguous element-wise
    operations (the fastest layout on CPUs for ``d = 3``).

    Parameters
    ----------
    hidden : int
        Invariant channels ``H`` of nodes and messages.
    vectors : int
        Vector channels ``C1``.
    tensors : int
        Order-2 channels ``C2`` of the structure tensor.
    edge_dim : int
        Number of fixed edge invariants (charge product, input distance).
    softening : float, optional
        Add the radial features ``1 / (|r_ij| + softening)`` and its square.
    radial : {"squared", "inverse"}
        The distance feature of the edges: ``|r_ij|^2`` (EGNN's) or ``1 / (1 + |r_ij|)``
        (bounded, so that far-apart particles, as in a dispersing system beyond the training
        distances, look like far-apart particles instead of an extrapolation).

    Notes
    -----
    The structure tensor ``T_i = mean_j gamma_ij r_ij r_ij^T`` is never formed: its
    contraction with vectors is ``T_i W = mean_j gamma_ij r_ij (r_ij . W)`` and its quadratic
    form ``<W, T_i W> = mean_j gamma_ij (r_ij . W)^2``.
    """

    def __init__(
        self,
        hidden: int,
        vectors: int,
        tensors: int,
        edge_dim: int,
        softening: float | None = None,
        radial: str = "squared",
    ):
        super().__init__()
        act = nn.SiLU()
        self.radial = _check_radial(radial)
        self.vectors, self.tensors = vectors, tensors
        self.softening = None if softening is None else float(softening)
        n_radial = 1 if softening is None else 3
        self.edge_in = nn.Linear(2 * hidden + n_radial + edge_dim + 2 * vectors, hidden)
        self.edge_mlp = nn.Sequential(act, nn.Linear(hidden, hidden), act)
        self.coefficients = nn.Linear(hidden, 2 * vectors + tensors)
        self.to_contract = nn.Linear(2 * vectors, tensors, bias=False)
        n_vec = 2 * vectors + tensors
        self.node_mlp = nn.Sequential(
            nn.Linear(2 * hidden + n_vec + tensors, hidden), act, nn.Linear(hidden, hidden)
        )
        self.vector_mix = nn.Linear(n_vec, vectors, bias=False)
        self.gate = nn.Linear(hidden, vectors)
        self.position_weights = nn.Linear(hidden, vectors)
        nn.init.xavier_uniform_(self.position_weights.weight, gain=0.001)
        nn.init.zeros_(self.position_weights.bias)

    def forward(self, h, vec, x, edge_attr, index, weights=None):
        """Update node features and positions.

        Parameters
        ----------
        h : torch.Tensor
            ``(b, n, H)`` invariants.
        vec : torch.Tensor
            ``(3, b, n, C1)`` vectors, component-major.
        x : torch.Tensor
            ``(3, b, n)`` positions, component-major.
        edge_attr : torch.Tensor
            ``(b, n, k, E)`` fixed edge invariants.
        index : torch.Tensor
            ``(n, k)`` or ``(b, n, k)`` neighbours.
        weights : torch.Tensor, optional
            ``(b, n, k)`` mean weights of masked edges; ``None`` averages over all ``k``.

        Returns
        -------
        h, vec, x : updated, same shapes.
        """
        r = x[..., None] - _gather(x, index)  # (3, b, n, k): r_ij = x_i - x_j
        dist2 = (r * r).sum(0)
        dist = dist2.sqrt()
        rn = r / (dist + 1.0)  # r_ij / (|r_ij| + 1): bounded T1 edge feature
        rn_c = rn[..., None]
        vec_j = _gather(vec, index)  # (3, b, n, k, C1)
        edge = [(dist2 if self.radial == "squared" else 1.0 / (1.0 + dist))[..., None], edge_attr]
        if self.softening is not None:
            inverse = 1.0 / (dist + self.softening)  # Coulomb-like radial features, bounded
            edge += [inverse[..., None], (inverse * inverse)[..., None]]
        edge = torch.cat(
            [
                *edge,
                (rn_c * vec[:, :, :, None]).sum(0),  # <V_i, rn_ij>  T1 x T1 -> T0
                (rn_c * vec_j).sum(0),  # <V_j, rn_ij>
            ],
            -1,
        )
        m = self.edge_mlp(edge_linear(self.edge_in, h, edge, index))  # (b, n, k, H)
        coef = self.coefficients(m)
        if weights is None:
            mean = _mean
        else:
            coef, m = coef * weights[..., None], m * weights[..., None]
            mean = _sum
        alpha, beta, gamma = coef.split([self.vectors, self.vectors, self.tensors], -1)
        u = mean(alpha * rn_c + beta * vec_j, 3)  # (3, b, n, C1)  T0 x T1 -> T1
        both = torch.cat([vec, u], -1)
        tw, quad = structure_contraction(gamma, rn, self.to_contract(both), mean)
        new = torch.cat([both, tw], -1)
        norms = torch.sqrt((new * new).sum(0) + _EPS)  # T1 -> T0
        h = h + self.node_mlp(torch.cat([h, mean(m, 2), norms, quad], -1))
        scale = 1.0 + norms.mean(-1)  # per-node invariant scale
        vec = vec + self.vector_mix(new) * (self.gate(h) / scale[..., None])
        x = x + (self.position_weights(h) * vec).sum(-1)
        return h, vec, x


def structure_contraction(gamma, rn, w, mean=None):
    """Contract the per-node structure tensor with vectors, without forming it.

    ``T_ic = mean_j gamma_ijc r_ij r_ij^T`` (T1 x T1 -> T2 outer products averaged over the
    neighbours) is contracted with ``W_ic``: returns ``T_ic W_ic = mean_j gamma_ijc r_ij
    (r_ij . W_ic)`` (T2 . T1 -> T1) and ``<W_ic, T_ic W_ic> = mean_j gamma_ijc
    (r_ij . W_ic)^2`` (T0).

    Parameters
    ----------
    gamma : torch.Tensor
        ``(b, n, k, C)`` invariant edge coefficients.
    rn : torch.Tensor
        ``(3, b, n, k)`` edge vectors, component-major.
    w : torch.Tensor
        ``(3, b, n, C)`` node vectors, component-major.
    mean : callable, optional
        ``mean(x, axis)`` over the neighbours; default ``x.mean(axis)`` (pass a sum for
        pre-weighted ``gamma``).

    Returns
    -------
    tw : torch.Tensor
        ``(3, b, n, C)``.
    quad : torch.Tensor
        ``(b, n, C)``.
    """
    mean = _mean if mean is None else mean
    s = (rn[..., None] * w[:, :, :, None]).sum(0)  # <r_ij, W_ic>  (b, n, k, C)
    gs = gamma * s
    return mean(gs * rn[..., None], 3), mean(gs * s, 2)


RADIAL = ("squared", "inverse")
"""Distance features of :class:`GRepsNBody`'s edges."""


def _check_radial(radial: str) -> str:
    if radial not in RADIAL:
        raise ValueError(f"radial: expected one of {list(RADIAL)}, got {radial!r}")
    return radial


def _radial(dist2: torch.Tensor, radial: str) -> torch.Tensor:
    """``|r|^2`` or ``1 / (1 + |r|)`` from squared distances."""
    return dist2 if radial == "squared" else 1.0 / (1.0 + dist2.sqrt())


def _mean(x: torch.Tensor, axis: int) -> torch.Tensor:
    return x.mean(axis)


def _sum(x: torch.Tensor, axis: int) -> torch.Tensor:
    return x.sum(axis)


class GRepsNBody(ParticlePredictor):
    """G-RepsNet N-body predictor: ``(positions, velocities, charges) -> positions``.

    Group O(3) with translations and particle permutations;
    ``rep_in = (T1, T1, T0)`` per particle, ``rep_out = T1`` per particle.

    Parameters
    ----------
    hidden : int
        Invariant (T0) channels per node and message.
    vectors : int
        Vector (T1) channels per node.
    tensors : int
        Order-2 (T2) channels of the per-node structure tensor.
    n_layers : int
        Message-passing layers.
    graph : {"full", "knn", "radius"}
        Neighbour graph; ``"knn"`` uses the ``k`` nearest other particles, ``"radius"`` every
        other particle closer than ``radius`` (recomputed from the input positions).
    k, radius : optional
        Parameters of the ``"knn"`` and ``"radius"`` graphs.
    charge_edges : bool
        Give edges the charge product ``q_i q_j`` (otherwise charges are ignored).
    n_particles : int, optional
        If given, inputs with another particle count are rejected.
    velocity_output : bool
        Also predict the velocities, ``v_T = v_0 + sum_c w_c(h) V_c`` (for rollouts); then
        ``rep_out = (T1, T1)`` and ``forward`` returns ``(positions, velocities)``.
    softening : float, optional
        If given, edges also see ``1 / (|r_ij| + softening)`` and its square (Coulomb-like
        radial features).
    radial : {"squared", "inverse"}
        Distance feature of the edges (the input distance and each layer's current one):
        ``|r_ij|^2`` (EGNN's, the default) or the bounded ``1 / (1 + |r_ij|)``, which keeps
        rollouts of a dispersing system from extrapolating in the distance.
    conserve_momentum : bool, optional
        With ``velocity_output``: remove the mean of the predicted velocity changes,
        ``dv_i <- dv_i - mean_j dv_j``, so that the total momentum ``sum_i v_i`` (equal
        masses) is conserved to round-off, as in an isolated system (Newton's third law).
        The projection commutes with rotations, reflections and permutations, so
        equivariance is kept. Default (None): on exactly when ``velocity_output``.
    conserve_energy : bool
        With ``velocity_output``: rescale the predicted velocities about their mean so that
        the predicted state has the input's softened Coulomb energy,
        ``E(x_T, v_T) = E(x_0, v_0)`` with ``E = 1/2 sum |v_i|^2 + sum_{i<j} q_i q_j /
        sqrt(r_ij^2 + eps^2)`` (:func:`~grepsnet_sciml.models.energy.project_energy`; unit
        masses and Coulomb constant, the data's physics; :attr:`energy_head`). Invariant
        scalars only, so equivariance and the total momentum are kept. The head needs the
        data's units: behind normalization it is applied after decoding (the pipeline's
        :func:`~grepsnet_sciml.solvers.experiment.build_model` does so).
    energy_softening : float
        ``eps >= 0`` of that energy (the data's softening: 0.1 for the ``clean`` preset, 0 for
        ``egnn``).

    Shapes
    ------
    positions, velocities ``(batch, n, 3)``; charges ``(batch, n)`` or ``(batch, n, 1)``;
    output ``(batch, n, 3)`` (twice with ``velocity_output``).
    """

    def __init__(
        self,
        hidden: int = 64,
        vectors: int = 8,
        tensors: int = 4,
        n_layers: int = 2,
        graph: str = "full",
        k: int | None = None,
        radius: float | None = None,
        charge_edges: bool = True,
        n_particles: int | None = None,
        velocity_output: bool = False,
        softening: float | None = None,
        conserve_momentum: bool | None = None,
        conserve_energy: bool = False,
        energy_softening: float = 0.0,
        radial: str = "squared",
    ):
        super().__init__()
        for name, value in (("hidden", hidden), ("vectors", vectors), ("tensors", tensors),
                            ("n_layers", n_layers)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        self.graph, self.k, self.radius, self.n_particles = graph, k, radius, n_particles
        neighbour_graph(torch.zeros(1, max(2, (k or 0) + 1), 3), graph, k, radius)  # validates
        self.charge_edges = charge_edges
        self.radial = _check_radial(radial)
        self.embedding = nn.Linear(1, hidden)
        self.vector_embedding = nn.Parameter(torch.ones(vectors))
        edge_dim = 2 if charge_edges else 1
        self.layers = nn.ModuleList(
            GRepsNBodyLayer(hidden, vectors, tensors, edge_dim, softening, radial)
            for _ in range(n_layers)
        )
        self.velocity_output = bool(velocity_output)
        if conserve_momentum is None:
            conserve_momentum = self.velocity_output
        if conserve_momentum and not self.velocity_output:
            raise ValueError("conserve_momentum: needs velocity_output=True (the model "
                             "predicts no velocities otherwise)")
        self.conserve_momentum = bool(conserve_momentum)
        if conserve_energy and not self.velocity_output:
            raise ValueError("conserve_energy: needs velocity_output=True (the model "
                             "predicts no velocities otherwise)")
        self.energy_head = EnergyProjection(energy_softening)  # validates the softening
        self.conserve_energy = bool(conserve_energy)
        if self.velocity_output:
            self.velocity_readout = nn.Linear(hidden, vectors)

    def forward(
        self, positions: torch.Tensor, velocities: torch.Tensor, charges: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Predict positions ``(batch, n, 3)`` one horizon ahead (and velocities)."""
        x, v, q = check_inputs(positions, velocities, charges, self.n_particles)
        index, mask = neighbour_graph(x, self.graph, self.k, self.radius)
        weights = None if mask is None else mask / mask.sum(-1, keepdim=True).clamp(min=1)
        xc = x.permute(2, 0, 1)  # (3, b, n)
        diff = xc[..., None] - _gather(xc, index)
        attrs = [_radial((diff * diff).sum(0), self.radial)]
        if self.charge_edges:
            attrs.insert(0, q[:, :, None] * gather_neighbours(q, index))
        edge_attr = torch.stack(attrs, -1)
        h = self.embedding(torch.linalg.vector_norm(v, dim=-1, keepdim=True))
        vec = self.vector_embedding * v.permute(2, 0, 1)[..., None]  # (3, b, n, C1)
        for layer in self.layers:
            h, vec, xc = layer(h, vec, xc, edge_attr, index, weights)
        if not self.velocity_output:
            return xc.permute(1, 2, 0)
        dv = (self.velocity_readout(h) * vec).sum(-1).permute(1, 2, 0)
        if self.conserve_momentum:
            dv = dv - dv.mean(1, keepdim=True)
        out = xc.permute(1, 2, 0), v + dv
        return self.energy_head((x, v, q), out) if self.conserve_energy else out
