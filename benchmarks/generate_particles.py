"""Charged-particle generation speed: vectorised generator against a per-trajectory loop.

Usage::

    python benchmarks/generate_particles.py [--quick] [--threads 2] [--no-full]

For each preset (``egnn``, ``clean``) the vectorised :func:`charged_particles.generate` and
the straightforward per-trajectory Python loop of the same physics
(:mod:`grepsnet_sciml.datasets._particles_reference`, bit-identical for ``egnn``) run the
full 5000-step trajectories, alternately, three times; the loop is timed on a few
trajectories and reported per trajectory (it is linear in their number); the median
speed-up is reported. Then the whole EGNN data set
(:func:`charged_particles.egnn_benchmark`, 10000 / 2000 / 2000 trajectories) is timed once.
Wall and CPU seconds are both recorded, with the load average, since the machine may be
shared. BLAS and torch are pinned to one thread each; ``--threads`` only sets how many
chunks of trajectories numpy integrates concurrently.

Writes ``benchmarks/results/generate_particles.json`` and ``.png`` and prints a table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from grepsnet_sciml._atomic import atomic_path, atomic_write_text  # noqa: E402
from grepsnet_sciml.datasets import _particles_reference as slow  # noqa: E402
from grepsnet_sciml.datasets import charged_particles as cp  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _loop(preset: str, n: int, seed: int):
    if preset == "egnn":
        rs = np.random.RandomState(seed)
        return [slow.egnn_trajectory(rs) for _ in range(n)]
    ds = cp.generate(n, preset="clean", seed=seed, n_steps=100, progress=False)
    return [slow.clean_trajectory(ds.charge.values[k], ds.position.values[k, 0].T,
                                  ds.velocity.values[k, 0].T) for k in range(n)]


def run_particle_benchmark(n_vectorised: int = 1024, n_loop: int = 3, repeats: int = 3,
                           full: bool = True, threads: int = 2, seed: int = 43) -> dict:
    """Time the generators; returns all numbers and settings as a JSON-ready dict.

    The loop and the vectorised generator run alternately ``repeats`` times (full
    5000-step trajectories) and the median of the per-repeat speed-ups is reported, which
    is robust to other load on a shared machine.

    Parameters
    ----------
    n_vectorised : int
        Trajectories per vectorised run (one chunk of the default size).
    n_loop : int
        Trajectories run through the per-trajectory loop per repeat (its time is linear in
        their number).
    repeats : int
        Alternating repetitions.
    full : bool
        Also time the whole EGNN data set (14000 trajectories) once, with ``threads``.
    threads : int
        Concurrent chunks in the full run (the loop/vectorised comparison uses one thread).
    seed : int
        Seed of both presets.

    Returns
    -------
    dict
        ``presets[preset]``: per-repeat loop and vectorised seconds per trajectory (wall and
        CPU), their medians and the median speed-ups; ``full``: the EGNN data set's wall
        and CPU seconds; ``settings``.
    """
    torch.set_num_threads(1)
    result = {
        "settings": {"n_vectorised": n_vectorised, "n_loop": n_loop, "repeats": repeats,
                     "threads_full": threads, "seed": seed, "n_steps": 5000,
                     "cpu_count": os.cpu_count(),
                     "machine": platform.processor() or platform.machine(),
                     "numpy": np.__version__, "torch": torch.__version__},
        "presets": {},
    }
    cp.generate(2, seed=seed, n_steps=200, progress=False)  # warm-up (imports, checks)
    for preset in cp.PRESETS:
        runs = {"loop_wall": [], "loop_cpu": [], "vectorised_wall": [], "vectorised_cpu": [],
                "load_average": []}
        for _ in range(repeats):
            runs["load_average"].append(os.getloadavg()[0])
            _, wall, cpu = _timed(lambda preset=preset: _loop(preset, n_loop, seed))
            runs["loop_wall"].append(wall / n_loop)
            runs["loop_cpu"].append(cpu / n_loop)
            _, wall, cpu = _timed(lambda preset=preset: cp.generate(
                n_vectorised, seed=seed, preset=preset, threads=1, progress=False))
            runs["vectorised_wall"].append(wall / n_vectorised)
            runs["vectorised_cpu"].append(cpu / n_vectorised)
        ratio = {kind: [a / b for a, b in zip(runs[f"loop_{kind}"], runs[f"vectorised_{kind}"])]
                 for kind in ("wall", "cpu")}
        result["presets"][preset] = {
            "runs_s_per_trajectory": runs,
            "loop_s_per_trajectory": float(np.median(runs["loop_wall"])),
            "vectorised_s_per_trajectory": float(np.median(runs["vectorised_wall"])),
            "speedup_wall": float(np.median(ratio["wall"])),
            "speedup_cpu": float(np.median(ratio["cpu"])),
            "speedups_wall": ratio["wall"],
        }
    if full:
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as tmp:
            splits, wall, cpu = _timed(lambda: cp.egnn_benchmark(seed=seed, out_dir=tmp,
                                                                 threads=threads,
                                                                 progress=False))
        result["full"] = {"trajectories": sum(ds.sizes["sample"] for ds in splits.values()),
                          "wall_s": wall, "cpu_s": cpu, "threads": threads,
                          "load_average_before": load, "target_wall_s": 120.0}
    return result


def format_table(result: dict) -> str:
    """The benchmark's numbers as a plain-text table."""
    lines = [f"{'preset':8s} {'loop s/traj':>12s} {'vector s/traj':>14s} {'speed-up wall':>14s}"
             f" {'speed-up cpu':>13s}"]
    for preset, r in result["presets"].items():
        lines.append(f"{preset:8s} {r['loop_s_per_trajectory']:12.4f} "
                     f"{r['vectorised_s_per_trajectory']:14.6f} {r['speedup_wall']:13.0f}x "
                     f"{r['speedup_cpu']:12.0f}x")
    if "full" in result:
        f = result["full"]
        lines.append(f"full EGNN data set ({f['trajectories']} trajectories, {f['threads']} "
                     f"threads): {f['wall_s']:.1f} s wall, {f['cpu_s']:.1f} s CPU (target < "
                     f"{f['target_wall_s']:.0f} s wall; load average "
                     f"{f['load_average_before']:.1f})")
    return "\n".join(lines)


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = list(result["presets"])
    loop = [1 / result["presets"][p]["loop_s_per_trajectory"] for p in presets]
    vec = [1 / result["presets"][p]["vectorised_s_per_trajectory"] for p in presets]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    x = np.arange(len(presets))
    ax.bar(x - 0.2, loop, 0.4, label="per-trajectory loop")
    ax.bar(x + 0.2, vec, 0.4, label="vectorised")
    ax.set_xticks(x, presets)
    ax.set_yscale("log")
    ax.set_ylabel("trajectories per second (5000 steps)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _write(result: dict, directory: Path) -> dict:
    target = directory / "generate_particles.json"
    atomic_write_text(target, json.dumps(result, indent=2))
    with atomic_path(directory / "generate_particles.png", suffix=".png") as tmp:
        _plot(result, tmp)
    return {"json": str(target), "png": str(directory / "generate_particles.png")}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="256 vectorised / 1 loop trajectory, 1 repeat, no full run")
    parser.add_argument("--threads", type=int, default=2, help="threads of the full run")
    parser.add_argument("--no-full", action="store_true", help="skip the 14000-trajectory run")
    args = parser.parse_args()
    kwargs = dict(n_vectorised=256, n_loop=1, repeats=1, full=False) if args.quick else {}
    if args.no_full:
        kwargs["full"] = False
    out = run_particle_benchmark(threads=args.threads, **kwargs)
    files = _write(out, RESULTS)
    print(format_table(out))
    for kind, path in files.items():
        print(f"{kind}: {path}")
