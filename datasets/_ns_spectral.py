"""Spectral building blocks for the 2D Navier-Stokes generator on the unit torus.

Grid convention: ``x_i = i / N`` (``i = 0..N-1``) on both axes; axis ``-2`` is ``x`` and
axis ``-1`` is ``y`` (the ``rfft`` axis). Wavenumbers are integers ``k`` with the field
``sum_k w_hat(k) exp(2 pi i k . x)``.

Examples
--------
>>> f = forcing_field("symmetric", 8)
>>> f.shape
torch.Size([8, 8])
>>> w = gaussian_random_field(2, 16, seed=0, first_sample=5)
>>> w.shape, bool(torch.equal(w[1], gaussian_random_field(1, 16, seed=0, first_sample=6)[0]))
(torch.Size([2, 16, 16]), True)
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "FORCINGS",
    "forcing_field",
    "gaussian_random_field",
    "scaled_forcing_field",
    "grid_coordinates",
    "sample_generator",
    "wavenumbers",
]

#: Named forcings: ``"fno"`` = 0.1 (sin 2 pi (x+y) + cos 2 pi (x+y)) (FNO's NS data),
#: ``"symmetric"`` = 0.1 (cos 4 pi x + cos 4 pi y) (G-FNO's NS-Sym data).
FORCINGS = ("fno", "symmetric")


def grid_coordinates(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Grid points ``x_i = i / n``, shape ``(n,)``."""
    return torch.arange(n, dtype=dtype) / n


def forcing_field(name: str, n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A named forcing sampled on the ``n x n`` grid, shape ``(n, n)`` indexed ``[x, y]``.

    ``"fno"``: ``f = 0.1 (sin 2 pi (x + y) + cos 2 pi (x + y))``;
    ``"symmetric"``: ``f = 0.1 (cos 4 pi x + cos 4 pi y)``.
    """
    t = grid_coordinates(n, torch.float64)
    x, y = torch.meshgrid(t, t, indexing="ij")
    if name == "fno":
        f = 0.1 * (torch.sin(2 * math.pi * (x + y)) + torch.cos(2 * math.pi * (x + y)))
    elif name == "symmetric":
        f = 0.1 * (torch.cos(4 * math.pi * x) + torch.cos(4 * math.pi * y))
    else:
        raise ValueError(f"forcing: unknown forcing {name!r}; expected one of {list(FORCINGS)}")
    return f.to(dtype)


def scaled_forcing_field(name: str, n: int, amplitude: float) -> torch.Tensor:
    """:func:`forcing_field` with amplitude ``amplitude`` instead of 0.1, ``(n, n)`` float64."""
    return forcing_field(name, n) * (amplitude / 0.1)


def wavenumbers(n: int, nyquist: str = "negative") -> tuple[torch.Tensor, torch.Tensor]:
    """Integer wavenumbers of the ``rfft2`` half spectrum, each ``(n, n // 2 + 1)`` float64.

    ``k_x`` runs along axis 0 (``0, 1, ..., n/2 - 1, -n/2, ..., -1``) and ``k_y`` along the
    rfft axis (``0, ..., n/2 - 1`` then the Nyquist entry). ``nyquist="negative"`` gives the
    Nyquist entries the value ``-n/2`` (the FNO reference convention); ``"zero"`` sets them to
    0, so that odd derivatives of the Nyquist modes vanish.
    """
    half = n // 2
    k = torch.cat([torch.arange(0, half), torch.arange(-half, 0)]).to(torch.float64)
    if nyquist == "zero":
        k[half] = 0.0
    elif nyquist != "negative":
        raise ValueError(f"nyquist: expected 'negative' or 'zero', got {nyquist!r}")
    kx = k[:, None].expand(n, half + 1).clone()
    ky = k[None, : half + 1].expand(n, half + 1).clone()
    return kx, ky


def sample_generator(seed: int, index: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, index)`` alone (numpy ``SeedSequence`` mixing)."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint32)
    generator = torch.Generator()
    generator.manual_seed(int(state[0]) | (int(state[1] & 0x7FFFFFFF) << 32))
    return generator


def gaussian_random_field(
    n_samples: int,
    resolution: int,
    seed: int,
    first_sample: int = 0,
    alpha: float = 2.5,
    tau: float = 7.0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Zero-mean Gaussian random fields ``N(0, sigma^2 (-Laplacian + tau^2 I)^{-alpha})``.

    The FNO/G-FNO ``GaussianRF`` construction on the unit torus: ``sigma = tau^(alpha - 1)``,
    ``sqrt_eig(k) = N^2 sqrt(2) sigma (4 pi^2 |k|^2 + tau^2)^(-alpha / 2)`` with
    ``sqrt_eig(0) = 0``, and ``w = Re ifft2(sqrt_eig * xi)`` with complex standard normal
    ``xi`` (real and imaginary parts of variance 1/2). Sample ``j`` draws ``xi`` from
    :func:`sample_generator` ``(seed, first_sample + j)`` only, so any chunking of the
    sample range gives identical fields.

    Returns
    -------
    torch.Tensor
        ``(n_samples, resolution, resolution)`` on the CPU, indexed ``[sample, x, y]``.
    """
    half = resolution // 2
    k = torch.cat([torch.arange(0, half), torch.arange(-half, 0)]).to(torch.float64)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    sigma = tau ** (alpha - 1.0)
    sqrt_eig = (
        resolution**2 * math.sqrt(2.0) * sigma * (4 * math.pi**2 * k2 + tau**2) ** (-alpha / 2)
    )
    sqrt_eig[0, 0] = 0.0
    fields = []
    for j in range(n_samples):
        generator = sample_generator(seed, first_sample + j)
        xi = torch.randn(resolution, resolution, dtype=torch.complex128, generator=generator)
        fields.append(torch.fft.ifft2(sqrt_eig * xi).real)
    if not fields:
        return torch.zeros(0, resolution, resolution, dtype=dtype)
    return torch.stack(fields).to(dtype)
