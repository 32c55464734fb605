"""Simulation data: generators, chunked storage and loaders (``grepsnet_sciml.datasets``).

- :mod:`~grepsnet_sciml.datasets.contract`: :class:`DatasetSpec`, the attrs every dataset
  declares (kind, group, representations, symmetry, config), parsed and written in one place.
- :mod:`~grepsnet_sciml.datasets.navier_stokes`: 2D incompressible Navier-Stokes (vorticity).
- :mod:`~grepsnet_sciml.datasets.charged_particles`: charged N-body systems in 3D.
- :mod:`~grepsnet_sciml.datasets.storage`: chunked, atomic, resumable zarr/netCDF writing and
  lazy opening; :mod:`~grepsnet_sciml.datasets.splits`: train/valid/test with derived seeds.
- :mod:`~grepsnet_sciml.datasets.loaders`: the community's FNO ``.mat`` and EGNN ``.npy``
  files in the same xarray form.
"""

if __name__ != "grepsnet_sciml.datasets":  # the folder imported by its bare name
    import os
    import runpy

    # by path: importing grepsnet_sciml here would need torch for a non-torch package
    _toplevel = os.path.join(os.path.dirname(__file__), "..", "grepsnet_sciml", "_toplevel.py")
    runpy.run_path(_toplevel)["defer_to_installed"](__name__, __file__)
else:
    from . import charged_particles, contract, loaders, navier_stokes, splits, storage
    from .contract import DatasetSpec, SymmetryElement
    from .loaders import load_egnn_npy, load_fno_mat
    from .splits import SPLITS, generate_splits, generate_to_store, open_splits, split_seed
    from .storage import open_dataset, write_dataset

    __all__ = [
        "charged_particles",
        "contract",
        "loaders",
        "navier_stokes",
        "splits",
        "storage",
        "DatasetSpec",
        "SymmetryElement",
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
