"""``grepsnet import``: turn community data files into grepsnet stores.

``grepsnet import fno-mat FILE --out STORE --forcing F`` converts an FNO / G-FNO
Navier-Stokes ``.mat`` file into one store; ``grepsnet import egnn-npy DIR --out FOLDER``
converts EGNN's charged-particle ``.npy`` files into a split directory of train/valid/test
stores. Both write through the chunked, atomic storage of ``grepsnet generate`` (nothing
appears at the output until it is complete; an existing output is refused unless
``--overwrite``, which replaces only stores written by grepsnet), and the stores carry the
data contract's attrs, so ``grepsnet train --data.train STORE`` reads them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .generate import _positive, _positive_float

__all__ = ["egnn_split", "register"]

#: Default samples per chunk on disk.
CHUNK_SIZE = {"fno-mat": 64, "egnn-npy": 2000}


class _Slices:
    """``make_chunk(first, n)``: samples ``first .. first + n - 1`` of one loaded dataset."""

    def __init__(self, ds):
        self.ds = ds

    def __call__(self, first: int, n: int):
        return self.ds.isel(sample=slice(first, first + n)).load()


def _file_identity(path: Path) -> dict:
    """What the import reads, for the fingerprint that guards resuming."""
    stat = path.stat()
    return {"path": os.fspath(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _report(stores: dict) -> None:
    from grepsnet_sciml.datasets.storage import open_dataset

    for name, path in stores.items():
        ds = open_dataset(path)
        sizes = ", ".join(f"{d}={n}" for d, n in ds.sizes.items())
        print(f"{name}: {path} ({sizes}; group {ds.attrs['group']})")
        ds.close()


def _fno_mat(args: argparse.Namespace) -> int:
    from grepsnet_sciml.datasets.loaders import load_fno_mat
    from grepsnet_sciml.datasets.storage import write_dataset

    path = Path(args.file)
    forcing = None if args.forcing == "none" else args.forcing
    ds = load_fno_mat(path, forcing, include_initial=not args.no_initial,
                      viscosity=args.viscosity)
    config = {
        "importer": "fno-mat", "file": _file_identity(path), "forcing": forcing,
        "viscosity": args.viscosity, "include_initial": not args.no_initial,
    }
    store = write_dataset(args.out, _Slices(ds), ds.sizes["sample"],
                          args.chunk_size or CHUNK_SIZE["fno-mat"], config=config,
                          overwrite=args.overwrite, progress=not args.no_progress)
    _report({"data": store})
    return 0


def egnn_split(n_samples: int, *, seed: int, first_sample: int, split: str, directory: str,
               suffix: str, dt: float, record_every: int):
    """Samples ``first_sample .. first_sample + n_samples - 1`` of one EGNN ``.npy`` split.

    The ``generate`` of :func:`grepsnet_sciml.datasets.splits.generate_splits` for an
    import (``seed`` is unused: the files fix the data). Module-level, so that it pickles.

    Parameters
    ----------
    n_samples, first_sample : int
        The samples to read.
    seed : int
        Ignored (the generator protocol passes it).
    split : {"train", "valid", "test"}
        Which files to read.
    directory, suffix, dt, record_every
        As for :func:`grepsnet_sciml.datasets.charged_particles.load_egnn_npy`.

    Returns
    -------
    xarray.Dataset
        As ``load_egnn_npy`` gives it, restricted to the samples asked for.
    """
    from grepsnet_sciml.datasets.charged_particles import load_egnn_npy

    ds = load_egnn_npy(directory, split, suffix, dt=dt, record_every=record_every, mmap=True)
    return ds.isel(sample=slice(first_sample, first_sample + n_samples)).load()


def _egnn_npy(args: argparse.Namespace) -> int:
    import numpy as np

    from grepsnet_sciml.datasets.charged_particles import SPLITS
    from grepsnet_sciml.datasets.splits import generate_splits

    directory = Path(args.directory)
    if not directory.is_dir():
        raise ValueError(f"DIR: expected a folder of EGNN .npy files, got {str(directory)!r}")
    sizes = {}
    for split in SPLITS:
        loc = directory / f"loc_{split}_{args.suffix}.npy"
        if loc.is_file():
            sizes[split] = int(np.load(loc, mmap_mode="r").shape[0])
    if not sizes:
        raise ValueError(
            f"DIR: no loc_{{train,valid,test}}_{args.suffix}.npy in {str(directory)!r}; "
            "expected EGNN files (pass --suffix for another file-name suffix)"
        )
    kwargs = {"directory": os.fspath(directory.resolve()), "suffix": args.suffix,
              "dt": args.dt, "record_every": args.record_every}
    stores = generate_splits(egnn_split, args.out, sizes, kwargs=kwargs, split_argument=True,
                             format=args.format, chunk_size=args.chunk_size or
                             CHUNK_SIZE["egnn-npy"], overwrite=args.overwrite,
                             progress=not args.no_progress)
    _report(stores)
    return 0


def _common_options(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--chunk-size", type=_positive,
                   help=f"samples per chunk on disk (default {CHUNK_SIZE[name]})")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it is a store or split directory written by grepsnet "
                   "(only once the new data is complete); anything else there is refused")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def register(subparsers) -> None:
    """Add ``import`` with its ``fno-mat`` and ``egnn-npy`` converters."""
    parser = subparsers.add_parser(
        "import", help="convert FNO .mat or EGNN .npy data into grepsnet stores",
        description="Convert community data files into grepsnet stores (chunked and atomic, "
        "with the data contract's attrs), ready for grepsnet train.")
    sub = parser.add_subparsers(dest="importer", metavar="FORMAT")

    p = sub.add_parser(
        "fno-mat", help="FNO / G-FNO Navier-Stokes .mat file -> one store",
        description="Read an FNO / G-FNO Navier-Stokes .mat file (MATLAB v5 or v7.3; "
        "variables a, u, t) and write its vorticity to the store --out (zarr, or netCDF if "
        "--out ends in .nc). The file does not say which forcing made it, so --forcing "
        "declares it; it decides the declared symmetry group.")
    p.add_argument("file", metavar="FILE", help="the .mat file")
    p.add_argument("--out", required=True, help="output store")
    p.add_argument("--forcing", required=True, choices=("fno", "symmetric", "none"),
                   help="forcing the file was made with: fno (FNO's ns data; symmetry D2 "
                   "diagonal), symmetric (G-FNO's NS-Sym; D4) or none (D4 and translations)")
    p.add_argument("--viscosity", type=_positive_float,
                   help="viscosity of the file's data, recorded in the attrs (the file does "
                   "not hold it; the numerical solver of evaluate needs it)")
    p.add_argument("--no-initial", action="store_true",
                   help="leave out the initial field a (by default the frame at t = 0)")
    _common_options(p, "fno-mat")
    p.set_defaults(func=_fno_mat, command_name="fno-mat")

    p = sub.add_parser(
        "egnn-npy", help="EGNN charged-particle .npy files -> train/valid/test stores",
        description="Read EGNN's loc/vel/charges(/edges)_SPLIT_SUFFIX.npy files and write "
        "the folder --out holding a train, valid and test store for each split found.")
    p.add_argument("directory", metavar="DIR", help="folder of the .npy files")
    p.add_argument("--out", required=True, help="output split directory")
    p.add_argument("--suffix", default="charged5_initvel1small",
                   help="file-name suffix (default %(default)s)")
    p.add_argument("--dt", type=_positive_float, default=1e-3,
                   help="time step of the simulation (default %(default)s)")
    p.add_argument("--record-every", type=_positive, default=100,
                   help="steps between stored frames (default %(default)s)")
    p.add_argument("--format", choices=("zarr", "netcdf"), default="zarr",
                   help="format of the split stores (default %(default)s)")
    _common_options(p, "egnn-npy")
    p.set_defaults(func=_egnn_npy, command_name="egnn-npy")
