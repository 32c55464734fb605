"""Simulation data: generators, chunked storage and loaders (``grepsnet_sciml.datasets``).

- :mod:`~grepsnet_sciml.datasets.navier_stokes`: 2D incompressible Navier-Stokes (vorticity).
- :mod:`~grepsnet_sciml.datasets.charged_particles`: charged N-body systems in 3D.
- :mod:`~grepsnet_sciml.datasets.storage`: chunked, atomic, resumable zarr/netCDF writing and
  lazy opening; :mod:`~grepsnet_sciml.datasets.splits`: train/valid/test with derived seeds.
- :mod:`~grepsnet_sciml.datasets.loaders`: the community's FNO ``.mat`` and EGNN ``.npy``
  files in the same xarray form.
"""

from . import charged_particles, loaders, navier_stokes, splits, storage
from .loaders import load_egnn_npy, load_fno_mat
from .splits import SPLITS, generate_splits, generate_to_store, open_splits, split_seed
from .storage import open_dataset, write_dataset

__all__ = [
    "charged_particles",
    "loaders",
    "navier_stokes",
    "splits",
    "storage",
    "load_egnn_npy",
    "load_fno_mat",
    "SPLITS",
    "generate_splits",
    "generate_to_store",
    "open_splits",
    "split_seed",
    "open_dataset",
    "write_dataset",
]
