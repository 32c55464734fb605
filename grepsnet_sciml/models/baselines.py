"""Reference (non-equivariant) surrogate models: neuraloperator's FNO and a plain MPNN.

These are the baselines the equivariant models are compared with. They declare
``rep_in``/``rep_out`` like every model of the package, so the training, rollout and
diagnostics code treats them alike, but they do **not** commute with the group:

- :class:`FNOBaseline` wraps ``neuralop.models.FNO`` with its default coordinate-grid
  positional embedding (as users run it), which breaks rotation, reflection and
  translation equivariance;
- :class:`ParticleMPNN` is a message-passing network on raw coordinates: it commutes with
  particle permutations but not with rotations or translations.

Examples
--------
>>> import torch
>>> from grepsnet_sciml import Reps
>>> from grepsnet_sciml.groups import D4
>>> model = FNOBaseline(Reps("4xT0p", D4()), Reps("T0p", D4()), modes=4, width=8, n_layers=2)
>>> model(torch.zeros(2, 4, 16, 16)).shape
torch.Size([2, 1, 16, 16])
>>> mpnn = ParticleMPNN(hidden=16, n_layers=2)
>>> x, v, q = torch.randn(3, 5, 3), torch.randn(3, 5, 3), torch.ones(3, 5, 1)
>>> mpnn(x, v, q).shape
torch.Size([3, 5, 3])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..groups import O
from ..layers._spectral_kernels import check_grid_resolution, spectral_init_std
from ..reps import Reps

__all__ = ["FNOBaseline", "ParticleMPNN"]


class FNOBaseline(nn.Module):
    """neuraloperator's Fourier neural operator, configured as the original FNO2d (not equivariant).

    Maps ``(batch, rep_in.dim, X, Y) -> (batch, rep_out.dim, X, Y)`` with
    ``neuralop.models.FNO`` set up as Li et al.'s FNO2d (ICLR 2021): the coordinate grid
    ``(x, y)`` appended to the input channels, a linear lifting to ``width``, ``n_layers``
    Fourier layers ``v <- GELU(K v + W v)`` (spectral convolution plus a 1x1 skip, no GELU
    after the last), and a projection ``width -> projection -> rep_out.dim`` with a GELU
    between. neuraloperator's own extras are off (channel MLPs, normalisation, soft gating,
    the lifting MLP). Its blocks apply the GELU twice between layers (``GELU(GELU(.))``,
    neuraloperator 2.0 with ``use_channel_mlp=False``); the original applies it once.

    The window is the package's: ``|kx|, |ky| <= modes - 1`` (neuraloperator's
    ``n_modes = (2 modes - 1, 2 modes - 1)``), one mode row fewer than the original's
    ``[-modes, modes - 1] x [0, modes - 1]``. The spectral weights follow the package's
    initialisation rule (:func:`~grepsnet_sciml.layers._spectral_kernels.spectral_init_std`).

    Parameters
    ----------
    rep_in, rep_out : Reps
        Input and output representations over a planar group (e.g. ``Reps("10xT0p", D4())``
        for 10 history frames of vorticity); only their dimensions are used by the network.
    modes : int
        Window ``|k| <= modes - 1``; inputs need ``N > 2 (modes - 1)``.
    width : int
        Hidden channels.
    n_layers : int
        Number of Fourier layers.
    projection : int
        Hidden channels of the projection (128 in the original).
    """

    domain = "grid"
    translation_equivariant = False

    def __init__(self, rep_in: Reps, rep_out: Reps, modes: int = 12, width: int = 20,
                 n_layers: int = 4, projection: int = 128):
        super().__init__()
        from neuralop.models import FNO

        for name, value in (("modes", modes), ("width", width), ("n_layers", n_layers),
                            ("projection", projection)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if not isinstance(rep_in, Reps) or not isinstance(rep_out, Reps):
            raise ValueError(f"rep_in/rep_out: expected Reps, got {rep_in!r}, {rep_out!r}")
        self.rep_in, self.rep_out, self.modes = rep_in, rep_out, modes
        self.hparams = {"modes": modes, "width": width, "n_layers": n_layers,
                        "projection": projection}
        window = 2 * modes - 1
        self.fno = FNO(n_modes=(window, window), in_channels=rep_in.dim,
                       out_channels=rep_out.dim, hidden_channels=width, n_layers=n_layers,
                       lifting_channel_ratio=0, projection_channel_ratio=(projection + 0.5) / width,
                       positional_embedding="grid", use_channel_mlp=False, norm=None,
                       fno_skip="linear")
        # a complex normal_ of std s gives each real part s / sqrt(2)
        std = math.sqrt(2.0) * spectral_init_std(width, modes)
        with torch.no_grad():
            for conv in self.fno.fno_blocks.convs:
                conv.weight.normal_(0, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, rep_in.dim, X, Y) -> (batch, rep_out.dim, X, Y)``."""
        self.rep_in.check(x, "x", grid=True)
        check_grid_resolution(tuple(x.shape[-2:]), self.modes, "x")
        return self.fno(x)

    def state_dict(self, *args, **kwargs):
        # neuralop's FNO adds an unprefixed "_metadata" entry (its constructor kwargs) to
        # the shared state dict, which breaks strict loading of any model containing it;
        # the hyper-parameters live in ``hparams`` instead.
        out = super().state_dict(*args, **kwargs)
        out.pop("_metadata", None)
        return out

    def _apply(self, fn, recurse=True):
        # ``.to(float32)`` would cast the complex spectral weights to real (dropping their
        # imaginary parts) and ``.double()`` leaves them complex64: keep each complex weight
        # complex, in the precision of the real parameters.
        def keep_complex(t):
            if not t.is_complex():
                return fn(t)
            real = torch.view_as_real(t)
            out = fn(real)
            if out is real:  # nothing to convert (e.g. .to() the current device)
                return t
            # a fresh tensor, not a view: views slow down autograd and the optimizer
            return torch.view_as_complex(out.contiguous()).clone()

        return super()._apply(keep_complex, recurse)


class ParticleMPNN(nn.Module):
    """A plain message-passing network for charged particles (permutation-equivariant only).

    ``forward(positions, velocities, charges) -> positions`` (or ``(positions,
    velocities)`` with ``predict_velocity``):

    .. math::
        h_i = \\phi_h([x_i, v_i, q_i]), \\quad
        m_{ij} = \\phi_m([h_i, h_j, q_i q_j, x_i - x_j]), \\quad
        h_i \\leftarrow h_i + \\phi_u([h_i, \\textstyle\\sum_{j \\ne i} m_{ij}]),

    and ``x_i' = x_i + phi_x(h_i)`` (and ``v_i' = phi_v(h_i)``). Raw coordinates enter the
    features, so it does not commute with rotations or translations.

    Parameters
    ----------
    hidden : int
        Width of every MLP.
    n_layers : int
        Message-passing rounds.
    predict_velocity : bool
        Also return the velocities at the target frame (needed for long rollouts).

    Shapes
    ------
    positions, velocities ``(batch, particle, 3)``; charges ``(batch, particle, 1)``.
    """

    domain = "point"
    particle_axis = 1
    translation_equivariant = False

    def __init__(self, hidden: int = 64, n_layers: int = 4, predict_velocity: bool = False):
        super().__init__()
        for name, value in (("hidden", hidden), ("n_layers", n_layers)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        group = O(3)
        self.rep_in = (Reps("T1", group), Reps("T1", group), Reps("T0", group))
        self.rep_out = (Reps("T1", group), Reps("T1", group)) if predict_velocity else Reps(
            "T1", group)
        self.hparams = {"hidden": hidden, "n_layers": n_layers,
                        "predict_velocity": predict_velocity}
        self.predict_velocity = predict_velocity
        act = nn.SiLU
        self.embed = nn.Sequential(nn.Linear(7, hidden), act(), nn.Linear(hidden, hidden))
        self.message = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * hidden + 4, hidden), act(), nn.Linear(hidden, hidden))
            for _ in range(n_layers)
        )
        self.update = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * hidden, hidden), act(), nn.Linear(hidden, hidden))
            for _ in range(n_layers)
        )
        self.head = nn.Sequential(nn.Linear(hidden, hidden), act(),
                                  nn.Linear(hidden, 6 if predict_velocity else 3))

    def forward(self, positions: torch.Tensor, velocities: torch.Tensor, charges: torch.Tensor):
        for name, t, width in (("positions", positions, 3), ("velocities", velocities, 3),
                               ("charges", charges, 1)):
            if t.ndim != 3 or t.shape[-1] != width or t.shape[:2] != positions.shape[:2]:
                raise ValueError(
                    f"{name}: expected shape (batch, particle, {width}) matching positions "
                    f"{tuple(positions.shape)}, got {tuple(t.shape)}"
                )
        n = positions.shape[1]
        h = self.embed(torch.cat([positions, velocities, charges], dim=-1))
        qq = charges * charges.transpose(1, 2)  # (B, N, N)
        rel = positions[:, :, None] - positions[:, None]  # (B, N, N, 3)
        off = ~torch.eye(n, dtype=torch.bool, device=positions.device)
        for message, update in zip(self.message, self.update):
            pair = torch.cat([h[:, :, None].expand(-1, -1, n, -1),
                              h[:, None].expand(-1, n, -1, -1), qq[..., None], rel], dim=-1)
            m = (message(pair) * off[None, :, :, None]).sum(2)
            h = h + update(torch.cat([h, m], dim=-1))
        out = self.head(h)
        if self.predict_velocity:
            return positions + out[..., :3], out[..., 3:]
        return positions + out
