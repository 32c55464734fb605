"""Navier-Stokes generator benchmark: fast IF-RK4 scheme against the FNO reference scheme.

Both schemes start from the same Gaussian-random-field vorticity on the same grid and are
scored against a converged reference (the fast scheme with small fixed steps, checked
against a run with twice its step). Reported per case: simulated time per wall-clock second
(``n_samples * t_span / wall``), relative L2 error at the end, and the ratios fast / fno.
Timings are the best of ``repeats`` interleaved runs with one torch thread; the machine is
shared, so ``speedup`` is the ratio of process CPU times (what each scheme computes) and
``speedup_wall`` the ratio of wall-clock rates (subject to other workers' load). The
per-sample memory of the generator is measured in fresh subprocesses (peak RSS at batch 17
minus batch 1, over 16).

Run ``python benchmarks/generate_ns.py`` to print the table and write
``benchmarks/results/generate_ns.json`` and ``generate_ns.png``, then the workers timing.

Workers timing (``--workers-only`` runs just this, in about four minutes): the same small
``grepsnet generate navier-stokes`` store (:data:`WORKERS_CASE`) written serially and with
``--workers 2``, interleaved, best wall time of ``repeats``; plus one serial run with
``MALLOC_TRIM_THRESHOLD_=65536``, the variable dask used to give its workers. It checks that
both stores hold the same bits and writes ``benchmarks/results/generate_workers.{json,md}``
with the load average, since other jobs on a shared machine take cores from the workers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from grepsnet_sciml._atomic import atomic_path, atomic_write_text
from grepsnet_sciml.datasets._ns_spectral import gaussian_random_field
from grepsnet_sciml.datasets.navier_stokes import NavierStokes2D

RESULTS = Path(__file__).resolve().parent / "results"

#: (name, simulation resolution, samples, start time, span, forcing): "late" cases start
#: from a developed flow (faster velocities, so shorter CFL steps) reached by the fast scheme.
CASES = (
    ("64-early", 64, 4, 0.0, 0.5, "symmetric"),
    ("64-late", 64, 4, 20.0, 0.5, "symmetric"),
    ("256-early", 256, 2, 0.0, 0.1, "symmetric"),
    ("256-late-ns", 256, 2, 20.0, 0.1, "fno"),
)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _timed(solver: NavierStokes2D, w0: torch.Tensor, span: float):
    """``(result, wall seconds, CPU seconds of this process)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = solver.advance(w0, span)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def run_ns_benchmark(
    cases=CASES,
    viscosity: float = 1e-4,
    seed: int = 0,
    reference_dt: float = 5e-4,
    repeats: int = 2,
    memory: bool = True,
) -> dict:
    """Time and score both schemes on each case; returns a JSON-ready dict.

    Parameters
    ----------
    cases : sequence of (name, resolution, n_samples, t_start, t_span, forcing)
    reference_dt : float
        Fixed step of the converged reference (fast scheme, ``cfl=None``); its own error is
        estimated against a run with twice the step.
    repeats : int
        Interleaved timing repeats; the best wall time counts.
    memory : bool
        Also measure the generator's per-sample memory in subprocesses.
    """
    torch.set_num_threads(1)
    rows = []
    for name, n, n_samples, t_start, span, forcing in cases:
        w0 = gaussian_random_field(n_samples, n, seed)
        if t_start > 0:
            w0 = NavierStokes2D(n, viscosity, forcing).advance(w0, t_start)
        reference = NavierStokes2D(n, viscosity, forcing, dt=reference_dt, cfl=None)
        ref = reference.advance(w0, span)
        coarse = NavierStokes2D(n, viscosity, forcing, dt=2 * reference_dt, cfl=None)
        ref_error = _rel(coarse.advance(w0, span), ref)
        solvers = {
            "fno": NavierStokes2D(n, viscosity, forcing, scheme="fno"),
            "fast": NavierStokes2D(n, viscosity, forcing),
        }
        walls = {k: float("inf") for k in solvers}
        cpus = {k: float("inf") for k in solvers}
        errors = {}
        for _ in range(repeats):
            for key, solver in solvers.items():
                out, wall, cpu = _timed(solver, w0, span)
                walls[key], cpus[key] = min(walls[key], wall), min(cpus[key], cpu)
                errors[key] = _rel(out, ref)
        rate = {k: n_samples * span / walls[k] for k in solvers}
        rows.append({
            "case": name,
            "forcing": forcing,
            "resolution": n,
            "n_samples": n_samples,
            "t_start": t_start,
            "t_span": span,
            "reference_dt": reference_dt,
            "reference_self_error": ref_error,
            "fno_wall_s": walls["fno"],
            "fast_wall_s": walls["fast"],
            "fno_sim_time_per_s": rate["fno"],
            "fast_sim_time_per_s": rate["fast"],
            "fno_error": errors["fno"],
            "fast_error": errors["fast"],
            "fno_cpu_s": cpus["fno"],
            "fast_cpu_s": cpus["fast"],
            "speedup_wall": rate["fast"] / rate["fno"],
            "speedup": cpus["fno"] / cpus["fast"],
            "error_ratio_fast_over_fno": errors["fast"] / errors["fno"],
        })
    result = {
        "benchmark": (
            "navier-stokes generator, fast IF-RK4 (default cfl 1.0, dt <= 1/32) "
            "vs fno scheme (dt 1e-4)"
        ),
        "viscosity": viscosity,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "target": "speedup (CPU-time ratio) >= 20 at error_ratio_fast_over_fno <= 1",
        "cases": rows,
    }
    if memory:
        result["memory"] = per_sample_memory()
    return result


_MEMORY_SCRIPT = """
import resource, sys, torch
torch.set_num_threads(1)
from grepsnet_sciml.datasets.navier_stokes import generate
n = int(sys.argv[1])
generate(n, "ns-sym", t_final=0.05, record_every=0.05, batch_size=n, progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def per_sample_memory(sizes=(1, 17)) -> dict:
    """Peak RSS (KiB) of ``generate(n, "ns-sym")`` (simulated 256, stored 64) in a fresh
    process for each batch size; per-sample MiB = difference / (count difference)."""
    peaks = {}
    for n in sizes:
        out = subprocess.run(
            [sys.executable, "-c", _MEMORY_SCRIPT, str(n)],
            capture_output=True, text=True, check=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        peaks[n] = int(out.stdout.strip().splitlines()[-1])
    small, large = min(sizes), max(sizes)
    per_sample = (peaks[large] - peaks[small]) / (large - small) / 1024
    return {
        "preset": "ns-sym (sim 256, stored 64)",
        "peak_rss_kib": {str(k): v for k, v in peaks.items()},
        "per_sample_mib": per_sample,
    }


def format_table(result: dict) -> str:
    """Plain-text table of :func:`run_ns_benchmark`'s result."""
    head = (
        f"{'case':<12} {'N':>4} {'B':>2} {'fno t/s':>9} {'fast t/s':>9} {'wall x':>7} "
        f"{'cpu x':>7} "
        f"{'fno err':>9} {'fast err':>9} {'ref err':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in result["cases"]:
        lines.append(
            f"{r['case']:<12} {r['resolution']:>4} {r['n_samples']:>2} "
            f"{r['fno_sim_time_per_s']:>9.3g} {r['fast_sim_time_per_s']:>9.3g} "
            f"{r['speedup_wall']:>6.1f}x {r['speedup']:>6.1f}x "
            f"{r['fno_error']:>9.2e} {r['fast_error']:>9.2e} "
            f"{r['reference_self_error']:>9.1e}"
        )
    if "memory" in result:
        lines.append(f"generator memory per sample: {result['memory']['per_sample_mib']:.1f} MiB "
                     f"({result['memory']['preset']})")
    return "\n".join(lines)


#: ``grepsnet generate`` arguments of the workers timing (about 25 s serially on one core).
WORKERS_CASE = (
    "navier-stokes", "--preset", "ns-sym", "--samples", "16", "--resolution", "64",
    "--sim-resolution", "256", "--t-final", "3", "--chunk-size", "2", "--no-progress",
)
_CLI = "from grepsnet_sciml.cli import main; raise SystemExit(main())"


def _generate(out: Path, extra=(), env=None) -> tuple[float, float]:
    """Run ``grepsnet generate`` on :data:`WORKERS_CASE`; ``(wall s, CPU s of all children)``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", _CLI, "generate", *WORKERS_CASE, "--out", str(out), *extra],
        check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def run_workers_benchmark(workers: int = 2, repeats: int = 2) -> dict:
    """Serial against ``--workers`` on :data:`WORKERS_CASE`; returns a JSON-ready dict.

    ``ratio_serial_over_workers`` > 1 means the workers are faster (wall time). CPU time of
    the workers' processes is not counted (they are the cluster's children, not ours).
    """
    from grepsnet_sciml.datasets.storage import open_dataset

    load_before = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as folder:
        walls = {"serial": [], "workers": []}
        for r in range(repeats):
            for mode, extra in (("workers", ("--workers", str(workers))), ("serial", ())):
                walls[mode].append(_generate(Path(folder) / f"{mode}{r}.zarr", extra)[0])
        trimmed = _generate(Path(folder) / "trim.zarr", env={"MALLOC_TRIM_THRESHOLD_": "65536"})
        serial = open_dataset(Path(folder) / "serial0.zarr").vorticity.values
        parallel = open_dataset(Path(folder) / "workers0.zarr").vorticity.values
        identical = serial.tobytes() == parallel.tobytes()
    best = {k: min(v) for k, v in walls.items()}
    return {
        "benchmark": f"grepsnet generate serial vs --workers {workers}",
        "command": "grepsnet generate " + " ".join(WORKERS_CASE) + " --out OUT [--workers 2]",
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
        "repeats": repeats,
        "serial_wall_s": walls["serial"],
        "workers_wall_s": walls["workers"],
        "ratio_serial_over_workers": best["serial"] / best["workers"],
        "serial_with_dask_malloc_trim_wall_s": trimmed[0],
        "identical_bits": identical,
    }


def workers_markdown(result: dict) -> str:
    """Markdown summary of :func:`run_workers_benchmark`."""
    return "\n".join([
        f"# {result['benchmark']}",
        "",
        f"`{result['command']}` on {result['cpus']} CPUs "
        f"(load average before: {', '.join(f'{v:.2f}' for v in result['load_average_before'])}"
        f"; after: {', '.join(f'{v:.2f}' for v in result['load_average_after'])}; other jobs "
        "were running).",
        "",
        "| run | wall s (each repeat) |",
        "| --- | --- |",
        f"| serial | {', '.join(f'{v:.1f}' for v in result['serial_wall_s'])} |",
        f"| --workers 2 | {', '.join(f'{v:.1f}' for v in result['workers_wall_s'])} |",
        f"| serial, MALLOC_TRIM_THRESHOLD_=65536 | "
        f"{result['serial_with_dask_malloc_trim_wall_s']:.1f} |",
        "",
        f"Best serial / best workers: **{result['ratio_serial_over_workers']:.2f}** "
        "(> 1: the workers are faster). Same bits in both stores: "
        f"{result['identical_bits']}.",
        "",
    ])


def _write_atomic(path: Path, write) -> None:
    with atomic_path(path, suffix=path.suffix) as tmp:
        write(tmp)


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in result["cases"]:
        for key, marker in (("fno", "s"), ("fast", "o")):
            ax.loglog(
                r[f"{key}_sim_time_per_s"], r[f"{key}_error"], marker, label=f"{key} {r['case']}"
            )
    ax.set_xlabel("simulated time per wall second (samples x time / s)")
    ax.set_ylabel("relative L2 error vs converged reference")
    ax.set_title("Navier-Stokes: fast IF-RK4 vs fno scheme")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers-only", action="store_true", help="only the workers timing")
    if not parser.parse_args().workers_only:
        outcome = run_ns_benchmark()
        print(format_table(outcome))
        atomic_write_text(RESULTS / "generate_ns.json", json.dumps(outcome, indent=2) + "\n")
        _plot(outcome, RESULTS / "generate_ns.png")
    timing = run_workers_benchmark()
    print(workers_markdown(timing))
    atomic_write_text(RESULTS / "generate_workers.json", json.dumps(timing, indent=2) + "\n")
    atomic_write_text(RESULTS / "generate_workers.md", workers_markdown(timing))
