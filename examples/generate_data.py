"""Generate small NS-Sym (2D Navier-Stokes) and charged-particle datasets as zarr stores.

    python examples/generate_data.py --out runs/examples/data

Writes ``ns_sym_{train,test}.zarr`` (vorticity on a periodic grid, D4 symmetry with shifted
reflections) and ``particles_{train,test}.zarr`` (5 charged bodies, ``clean`` preset, E(3)
x S_n), each declaring its group and the representation of every variable in its attrs.
"""

import argparse
import os

from grepsnet_sciml.datasets import charged_particles, navier_stokes


def save(ds, path):
    # zarr v3 stores fixed-width strings (the particles' "spatial" labels) as objects
    fixed = [name for name, var in ds.variables.items() if var.dtype.kind == "U"]
    ds.assign_coords({name: ds[name].astype(object) for name in fixed}).to_zarr(
        path, mode="w", consolidated=False)
    print(f"wrote {path}: {dict(ds.sizes)}, group {ds.attrs['group']}, "
          f"representations {ds.attrs['representations']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/examples/data")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--ns-samples", type=int, default=16)
    parser.add_argument("--frames", type=int, default=16, help="NS frames (1 per time unit)")
    parser.add_argument("--particle-samples", type=int, default=100)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for split, n, seed in (("train", args.ns_samples, 0), ("test", 2, 1)):
        ds = navier_stokes.generate(n, "ns-sym", resolution=args.resolution,
                                    sim_resolution=args.resolution, viscosity=1e-3,
                                    t_final=float(args.frames), record_every=1.0, seed=seed,
                                    progress=False)
        save(ds, os.path.join(args.out, f"ns_sym_{split}.zarr"))
    for split, n in (("train", args.particle_samples), ("test", 2)):
        ds = charged_particles.generate(n, preset="clean", seed=0, split=split, progress=False)
        save(ds, os.path.join(args.out, f"particles_{split}.zarr"))


if __name__ == "__main__":
    main()
