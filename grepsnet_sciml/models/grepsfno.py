"""GRepsFNO2d: an exactly C4/D4-equivariant Fourier neural operator with G-RepsNet channels.

The model maps typed input fields (e.g. ten vorticity frames, ``Reps("10xT0p", D4())``, and
optionally velocity frames ``T1``) to typed outputs on a square periodic grid:

.. math:: f(\\rho_{in}(g)\\, x(g^{-1} \\cdot + s)) = \\rho_{out}(g)\\, f(x)(g^{-1} \\cdot + s)

for every element ``g`` of the group (acting about the origin grid point) and every cyclic
shift ``s``. Layers: a pointwise equivariant lift to the hidden type, ``n_layers``
:class:`~grepsnet_sciml.layers.spectral.FourierBlock2d` (equivariant spectral convolution on a
group-closed window, instance norm with shared statistics, pointwise G-RepsNet mixing), and a
pointwise projection to the output type. Hidden channels are regular (``R``, each copy
convolved with the rotated shared kernel), tensor fields (T0, T0p, T1, T2) or both.

Cost. With ``width x R`` hidden channels and ``spectral_mixing="shared"`` a spectral layer
holds ``width^2 (2 modes - 1)^2`` real weights and costs ``|G| width^2`` complex products per
mode; ``"group"`` (the default, G-FNO's group convolution) holds ``|G| width^2 (2 modes -
1)^2`` and costs ``(|G| width)^2``, its kernel gathered on one mode per orbit of the group
(a quarter of the half window for D4). The spectral part (window transforms, per-mode
products) grows with the window: at ``5 x R`` over D4 and modes 10 on 32x32 grids it is
about 35-40% of a CPU training step, the pointwise layers, norms and activations over the
``|G| width`` real channels the rest (``grepsnet bench ns --timing-only`` measures the cost
side by side).

Examples
--------
>>> import torch
>>> from grepsnet_sciml import Reps
>>> from grepsnet_sciml.groups import D4
>>> model = GRepsFNO2d(Reps("10xT0p", D4()), Reps("T0p", D4()), width=2, modes=4, n_layers=1)
>>> model(torch.randn(3, 10, 16, 16)).shape
torch.Size([3, 1, 16, 16])
"""

from __future__ import annotations

import torch
from torch import nn

from ..groups import group_from_string
from ..layers.linear import EquivariantLinear
from ..layers.nonlinear import NormActivation
from ..layers.spectral import (
    DealiasFilter2d,
    FourierBlock2d,
    count_free_parameters,
    radial_channel,
)
from ..reps import Reps

__all__ = ["GRepsFNO2d", "reps_from_attrs"]

CHANNELS = ("regular", "tensor", "mixed")


def reps_from_attrs(
    attrs: dict, inputs=("vorticity",), outputs=("vorticity",), t_in: int = 10
) -> tuple[Reps, Reps]:
    """Input and output types declared by a dataset's attrs.

    Parameters
    ----------
    attrs : dict
        The dataset contract's attrs (:class:`~grepsnet_sciml.datasets.contract.DatasetSpec`):
        ``attrs["group"]`` (a group repr such as ``"D4()"``) and ``attrs["representations"]``
        (JSON such as ``'{"vorticity": "T0p", "velocity": "T1"}'``); ``attrs["kind"]``, if
        given, must be ``"field"``.
    inputs, outputs : sequence of str
        Variables fed in (``t_in`` frames each, in this order) and predicted (one frame each).
    t_in : int
        Number of input frames.

    Returns
    -------
    rep_in, rep_out : Reps
        E.g. ``Reps('10xT0p', D4())`` and ``Reps('T0p', D4())``.
    """
    from grepsnet_sciml.datasets.contract import DatasetSpec

    spec = DatasetSpec.from_attrs({"kind": "field", **attrs}, source="attrs")
    if spec.kind != "field":
        raise ValueError(f"attrs: attrs['kind'] = {spec.kind!r}; GRepsFNO2d needs 'field' data")
    for name in tuple(inputs) + tuple(outputs):
        if name not in spec.representations:
            raise ValueError(
                f"inputs/outputs: {name!r} is not among the dataset's representations "
                f"{sorted(spec.representations)}"
            )
    rep_in = sum((spec.reps(n, t_in) for n in inputs[1:]), spec.reps(inputs[0], t_in))
    rep_out = sum((spec.reps(n) for n in outputs[1:]), spec.reps(outputs[0]))
    return rep_in, rep_out


class GRepsFNO2d(nn.Module):
    """Equivariant FNO on typed fields with G-RepsNet channels.

    Parameters
    ----------
    rep_in, rep_out : Reps or str
        Input/output types (strings need ``group``).
    group : PlanarGroup, optional
        C4, D4 or a subgroup; must match ``rep_in.group`` if both are given.
    width : int
        Multiplicity of each hidden kind (``regular``: ``width x R``; ``tensor``:
        ``width x (T0 + T0p + T1 + T2)``; ``mixed``: ``width x (T0 + T0p + T1 + R)``).
    modes : int
        Spectral window ``|kx|, |ky| <= modes - 1`` (G-FNO's convention).
    n_layers : int
        Number of Fourier blocks.
    channels : {"regular", "tensor", "mixed"}
    hidden : Reps or str, optional
        Explicit hidden type (overrides ``width``/``channels``).
    regular_mixing : {"mean", "conv"}
        Pointwise ``R -> R`` mixing (see :class:`~grepsnet_sciml.layers.EquivariantLinear`).
    spectral_mixing : {"shared", "group"}
        Spectral ``R -> R`` kernels (see :class:`~grepsnet_sciml.layers.spectral.SpectralConv2d`):
        one kernel shared by the copies (``|G| width^2`` products per mode) or G-FNO's group
        convolution (``(|G| width)^2``).
    projection_ratio : int
        Width multiplier of the projection's hidden layer (G-FNO uses 4; 2 costs about a
        quarter less per step at no measured loss).
    radial_embedding : bool
        Append the invariant radial channel :func:`radial_channel` to the input. Keeps the
        point-group equivariance but breaks translation equivariance (off by default).
    pointwise : {"linear", "grepsnet"}
        Per-block pointwise network: G-FNO-style two equivariant 1x1 layers, or the core's
        :class:`~grepsnet_sciml.layers.GRepsLayer` (see :class:`FourierBlock2d`).
    output_dealias : bool
        Filter the output to the NS solver's 2/3-rule band
        (:class:`~grepsnet_sciml.layers.spectral.DealiasFilter2d`): no energy where the
        solver's states have none (off by default).
    mlp_expansion : float
        Width of the hidden layer of the ``"linear"`` pointwise network relative to
        ``width`` (neuraloperator's ``channel_mlp_expansion``): ``max(1, round(mlp_expansion
        width))`` copies of each hidden kind (2/3: ``4 x R`` at the default width).
    mlp_width : int, optional
        The hidden layer's multiplicity itself, instead of ``mlp_expansion``. With an explicit
        ``hidden`` and no ``mlp_width`` the hidden layer is ``hidden`` (``pointwise="grepsnet"``
        has no hidden layer).

    Attributes
    ----------
    rep_in, rep_out, hidden : Reps
    hparams : dict
        JSON-serialisable constructor arguments (:meth:`from_hparams` rebuilds the model).
    domain : str
        ``"grid"``.
    translation_equivariant : bool
        True unless ``radial_embedding``.

    Notes
    -----
    The defaults (``6 x R`` hidden channels, 3 blocks with pointwise MLPs through ``4 x R``,
    group spectral kernels, group-convolution pointwise mixing, projection ratio 2) are the
    configuration that measured most accurate at less than G-FNO-p4's cost on the quick NS-Sym
    benchmark (README, ``benchmarks/results/ns_quick_ns-sym.md``), there with ``modes=10`` on
    32x32 grids and the data's forcing as one more input channel (the solvers' model registry does
    that by default, :mod:`grepsnet_sciml.solvers.forcing`); its cost is set by its real
    channels (``8 x 6 = 48`` for D4), its depth and its modes.

    ``forward``: ``(batch, rep_in.dim, N, N) -> (batch, rep_out.dim, N, N)`` for any even
    ``N >= 2 modes`` (resolution-independent). When the hidden type has T0 channels, the
    lift also receives the squared norm of every non-T0 input channel (a pointwise-linear
    lift cannot build invariants from pseudo-scalars or vectors).
    """

    domain = "grid"

    def __init__(
        self,
        rep_in,
        rep_out,
        group=None,
        width: int = 6,
        modes: int = 12,
        n_layers: int = 3,
        channels: str = "regular",
        hidden=None,
        regular_mixing: str = "conv",
        spectral_mixing: str = "group",
        projection_ratio: int = 2,
        radial_embedding: bool = False,
        pointwise: str = "linear",
        mlp_width: int | None = None,
        output_dealias: bool = False,
        mlp_expansion: float = 2 / 3,
    ):
        super().__init__()
        rep_in = _as_reps(rep_in, group, "rep_in")
        rep_out = _as_reps(rep_out, group if group is not None else rep_in.group, "rep_out")
        if group is not None and rep_in.group != group:
            raise ValueError(f"group: {group!r} does not match rep_in's group {rep_in.group!r}")
        for name, value in (("width", width), ("n_layers", n_layers),
                            ("projection_ratio", projection_ratio)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if channels not in CHANNELS:
            raise ValueError(f"channels: expected one of {CHANNELS}, got {channels!r}")
        if mlp_width is not None:
            if isinstance(mlp_width, bool) or not isinstance(mlp_width, int) or mlp_width < 1:
                raise ValueError(f"mlp_width: expected a positive integer, got {mlp_width!r}")
        if (isinstance(mlp_expansion, bool) or not isinstance(mlp_expansion, (int, float))
                or not mlp_expansion > 0 or mlp_expansion == float("inf")):
            raise ValueError(f"mlp_expansion: expected a positive finite number, got "
                             f"{mlp_expansion!r}")
        g = rep_in.group
        if mlp_width is None and hidden is None and pointwise == "linear":
            mlp_width = max(1, round(mlp_expansion * width))
        if hidden is None:
            hidden = Reps(_hidden_spec(channels, width), g)
        hidden = _as_reps(hidden, g, "hidden")
        mlp_hidden = None if mlp_width is None else Reps(_hidden_spec(channels, mlp_width), g)
        self.rep_in, self.rep_out, self.hidden = rep_in, rep_out, hidden
        self.modes, self.channels = modes, channels
        self.hparams = {
            "rep_in": str(rep_in), "rep_out": str(rep_out), "group": repr(g), "width": width,
            "modes": modes, "n_layers": n_layers, "channels": channels, "hidden": str(hidden),
            "regular_mixing": regular_mixing, "spectral_mixing": spectral_mixing,
            "projection_ratio": projection_ratio,
            "radial_embedding": bool(radial_embedding), "pointwise": pointwise,
            "mlp_width": mlp_width, "output_dealias": bool(output_dealias),
            "mlp_expansion": float(mlp_expansion),
        }
        self.radial_embedding = bool(radial_embedding)
        self.translation_equivariant = not self.radial_embedding
        lift_in = rep_in
        # a linear lift cannot make invariants out of pseudo-scalars or vectors; when the
        # hidden type has T0 channels it also sees the squared norms (G-RepsNet T1 -> T0)
        self.n_invariants = sum(
            b.mult for b in rep_in.blocks if b.kind != "T0"
        ) if hidden.count("T0") else 0
        if self.n_invariants:
            lift_in = lift_in + Reps(f"{self.n_invariants}xT0", g)
        if self.radial_embedding:
            lift_in = lift_in + Reps("T0", g)
        self.lift = EquivariantLinear(lift_in, hidden, domain="grid", regular=regular_mixing)
        self.blocks = nn.ModuleList(
            FourierBlock2d(hidden, modes, spectral_mixing, regular_mixing, last=(i == n_layers - 1),
                           pointwise=pointwise, mlp_hidden=mlp_hidden)
            for i in range(n_layers)
        )
        mid = _reaching(hidden, rep_out) * projection_ratio
        self.project1 = EquivariantLinear(hidden, mid, domain="grid", regular=regular_mixing)
        self.project_act = NormActivation(mid, domain="grid")
        self.project2 = EquivariantLinear(mid, rep_out, domain="grid", regular=regular_mixing)
        self.dealias = DealiasFilter2d(rep_out) if output_dealias else None

    @classmethod
    def from_hparams(cls, hparams: dict) -> GRepsFNO2d:
        """Rebuild a model from its JSON-serialisable ``hparams`` (e.g. from a checkpoint)."""
        kwargs = dict(hparams)
        kwargs["group"] = group_from_string(kwargs["group"])
        return cls(**kwargs)

    @classmethod
    def from_attrs(cls, attrs: dict, inputs=("vorticity",), outputs=("vorticity",),
                   t_in: int = 10, **kwargs) -> GRepsFNO2d:
        """Build the model a dataset declares (see :func:`reps_from_attrs`)."""
        rep_in, rep_out = reps_from_attrs(attrs, inputs, outputs, t_in)
        return cls(rep_in, rep_out, **kwargs)

    @classmethod
    def from_dataset(cls, dataset, **kwargs) -> GRepsFNO2d:
        """Same as :meth:`from_attrs` with ``dataset.attrs`` (an ``xarray.Dataset``)."""
        return cls.from_attrs(dict(dataset.attrs), **kwargs)

    def n_free_parameters(self) -> int:
        """Dimension of the equivariant weight space (see ``count_free_parameters``)."""
        return count_free_parameters(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rep_in.check(x, "x", grid=True)
        if self.n_invariants:
            x = torch.cat([x, self._squared_norms(x)], 1)
        if self.radial_embedding:
            r = radial_channel(x.shape[-1], x.dtype).to(x.device)
            x = torch.cat([x, r.expand(x.shape[0], 1, *x.shape[-2:])], 1)
        x = self.lift(x)
        for block in self.blocks:
            x = block(x)
        y = self.project2(self.project_act(self.project1(x)))
        return y if self.dealias is None else self.dealias(y)

    def _squared_norms(self, x: torch.Tensor) -> torch.Tensor:
        """Squared fibre norm of every non-T0 input channel, ``(batch, n_invariants, X, Y)``."""
        parts = []
        for b in self.rep_in.blocks:
            if b.kind != "T0":
                xb = x[:, b.slice].reshape(x.shape[0], b.mult, b.size, *x.shape[-2:])
                parts.append(xb.pow(2).sum(2))
        return torch.cat(parts, 1)


def _reaching(hidden: Reps, rep_out: Reps) -> Reps:
    """The blocks of ``hidden`` with a non-zero pointwise equivariant map to ``rep_out``
    (e.g. under D4, T0 and T1 channels cannot feed a pseudo-scalar output pointwise).

    The probe layers draw their weights from the global RNG, like every layer of the model:
    models built under one seed depend on these draws."""
    keep = [
        (b.mult, b.kind) for b in hidden.blocks
        if EquivariantLinear(Reps(b.kind, hidden.group), rep_out, bias=False, regular="mean").n_free
    ]
    return Reps(keep, hidden.group) if keep else hidden


def _hidden_spec(channels: str, width: int) -> str:
    """The hidden type of ``width`` copies of each kind of ``channels``."""
    return {
        "regular": f"{width}xR",
        "tensor": f"{width}xT0 + {width}xT0p + {width}xT1 + {width}xT2",
        "mixed": f"{width}xT0 + {width}xT0p + {width}xT1 + {width}xR",
    }[channels]


def _as_reps(reps, group, argument: str) -> Reps:
    if isinstance(reps, Reps):
        return reps
    if isinstance(reps, str):
        if group is None:
            raise ValueError(f"group: needed to read {argument}={reps!r}; pass e.g. D4()")
        return Reps(reps, group)
    raise ValueError(f"{argument}: expected a Reps or a string such as '10xT0p', got {reps!r}")
