"""Surrogate-solver benchmark: Trainer overhead, rollout memory, surrogate vs solver speed.

1. Training throughput (samples/s) of the reference FNO through :class:`Trainer` against
   a bare loop doing the same work (same batches, model, optimizer and schedule); target:
   overhead under 5%.
2. Peak memory of a rollout streamed to zarr at 10 and 1000 steps (64x64, batch 4),
   measured in fresh subprocesses: the process peak RSS (target: equal within 10%) and the
   peak during the rollout minus the RSS before it. The in-memory rollout is shown for
   contrast.
3. Surrogate rollout against the numerical solver from the same states at 64x64 over the
   same simulated time (NS-Sym, nu = 1e-4): the fast integrating-factor RK4 scheme and the
   reference ``fno`` scheme (dt = 1e-4); target: at least 100x.

Timings are the best of ``repeats`` interleaved runs with one torch thread (the machine is
shared). Run ``python benchmarks/solvers.py [trainer] [rollout_memory] [speedup]`` (default:
all three; named ones are rerun and merged) to print the table and write
``benchmarks/results/solvers.json`` and ``solvers.md``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def _field_data(n_samples: int, n: int, frames: int):
    import numpy as np
    import xarray as xr

    gen = torch.Generator().manual_seed(0)
    w = torch.randn(n_samples, frames, n, n, generator=gen)
    return xr.Dataset({"vorticity": (("sample", "time", "x", "y"), w.numpy())},
                      coords={"time": np.arange(frames, dtype=float)},
                      attrs={"kind": "field", "group": "D4()",
                             "representations": '{"vorticity": "T0p"}'})


def trainer_overhead(repeats: int = 4, epochs: int = 2) -> dict:
    """Samples/s through the Trainer and through a bare loop on the same batches."""
    from grepsnet_sciml.models.baselines import FNOBaseline
    from grepsnet_sciml.solvers.data import FieldWindows
    from grepsnet_sciml.solvers.losses import relative_l2
    from grepsnet_sciml.solvers.trainer import TrainConfig, Trainer

    data = FieldWindows(_field_data(48, 32, 8), t_in=4)
    cfg_kw = dict(epochs=epochs, batch_size=16, lr=1e-3, progress=False, device="cpu")

    def model():
        torch.manual_seed(0)
        return FNOBaseline(data.rep_in, data.rep_out, modes=8, width=24, n_layers=4)

    def bare() -> float:
        m = model()
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=1e-4)
        per_epoch = len(data) // 16
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * per_epoch)
        start = time.perf_counter()
        for epoch in range(epochs):
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch))
            for k in range(per_epoch):
                items = [data[int(i)] for i in order[k * 16 : (k + 1) * 16]]
                x = torch.stack([a for a, _ in items])
                y = torch.stack([b for _, b in items])
                loss = relative_l2(m(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        return epochs * per_epoch * 16 / (time.perf_counter() - start)

    def trainer() -> float:
        with tempfile.TemporaryDirectory() as out:
            t = Trainer(model(), data, TrainConfig(out_dir=out, **cfg_kw))
            start = time.perf_counter()
            t.fit()
            return epochs * t.batches_per_epoch * 16 / (time.perf_counter() - start)

    bare_best = trainer_best = 0.0
    for k in range(repeats):  # interleaved, alternating which runs first
        if k % 2:
            trainer_best = max(trainer_best, trainer())
        bare_best = max(bare_best, bare())
        if not k % 2:
            trainer_best = max(trainer_best, trainer())
    return {"bare_samples_per_s": bare_best, "trainer_samples_per_s": trainer_best,
            "overhead": 1 - trainer_best / bare_best, "target": "< 0.05",
            "setup": "FNO modes 8 width 24, 4 layers, 32x32, 4 frames in, batch 16, "
                     f"{epochs} epochs (checkpoint each epoch included)"}


_MEMORY_SCRIPT = r"""
import os, sys, threading, time, tempfile, torch
torch.set_num_threads(1)
from grepsnet_sciml import Reps
from grepsnet_sciml.groups import D4
from grepsnet_sciml.models.baselines import FNOBaseline
from grepsnet_sciml.solvers.data import FieldLayout
from grepsnet_sciml.solvers.rollout import rollout

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

steps, stream = int(sys.argv[1]), sys.argv[2] == "stream"
layout = FieldLayout(("vorticity",), ("T0p",), D4())
torch.manual_seed(0)
model = FNOBaseline(layout.reps(4), layout.reps(1), modes=8, width=8, n_layers=2)
x0 = torch.randn(4, 4, 1, 64, 64)
with tempfile.TemporaryDirectory() as tmp:
    rollout(model, x0, 20, layout=layout, store=os.path.join(tmp, "warm.zarr"))  # warm-up
    rollout(model, x0, 20, layout=layout)
    peak, done = [rss()], []
    def poll():
        while not done:
            peak.append(rss())
            time.sleep(0.005)
    thread = threading.Thread(target=poll)
    base = rss()
    thread.start()
    rollout(model, x0, steps, layout=layout, growth_limit=1e30,
            store=os.path.join(tmp, "r.zarr") if stream else None)
    done.append(1)
    thread.join()
print(max(peak) - base, max(peak))
"""


def rollout_memory() -> dict:
    """Extra peak RSS (bytes) of streamed and in-memory rollouts at 10 and 1000 steps."""
    out = {}
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for mode in ("stream", "memory"):
        for steps in (10, 1000):
            proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(steps), mode],
                                  capture_output=True, text=True, env=env, check=True)
            extra, total = proc.stdout.strip().splitlines()[-1].split()
            out[f"{mode}_{steps}_bytes"] = int(extra)
            out[f"{mode}_{steps}_peak_rss_bytes"] = int(total)
    out["stream_ratio_1000_vs_10"] = (out["stream_1000_peak_rss_bytes"]
                                      / out["stream_10_peak_rss_bytes"])
    out["memory_ratio_1000_vs_10"] = (out["memory_1000_peak_rss_bytes"]
                                      / out["memory_10_peak_rss_bytes"])
    out["target"] = "peak RSS ratio 1000 / 10 steps (streamed) within 1 +- 0.1"
    out["setup"] = "FNO modes 8 width 8 (2 layers), 64x64, batch 4, 4 frames in, zarr chunk 16"
    return out


def surrogate_speedup(n_steps: int = 10, batch: int = 8, repeats: int = 2) -> dict:
    """Wall time of the surrogate rollout and the solvers over ``n_steps`` time units."""
    from grepsnet_sciml.datasets.navier_stokes import NavierStokes2D
    from grepsnet_sciml.groups import D4
    from grepsnet_sciml.models.baselines import FNOBaseline
    from grepsnet_sciml.solvers.data import FieldLayout
    from grepsnet_sciml.solvers.rollout import rollout

    layout = FieldLayout(("vorticity",), ("T0p",), D4())
    torch.manual_seed(0)
    model = FNOBaseline(layout.reps(10), layout.reps(1), modes=12, width=32, n_layers=4)
    x0 = torch.randn(batch, 10, 1, 64, 64)
    w0 = x0[:, -1, 0].double()
    fast = NavierStokes2D(64, 1e-4, "symmetric", scheme="fast")
    fno_scheme = NavierStokes2D(64, 1e-4, "symmetric", scheme="fno")
    times = {"surrogate": float("inf"), "solver_fast": float("inf")}
    for _ in range(repeats):
        start = time.perf_counter()
        rollout(model, x0, n_steps, layout=layout, growth_limit=1e30)
        times["surrogate"] = min(times["surrogate"], time.perf_counter() - start)
        start = time.perf_counter()
        fast.advance(w0, float(n_steps))
        times["solver_fast"] = min(times["solver_fast"], time.perf_counter() - start)
    # the reference scheme (dt = 1e-4) is timed over 0.2 time units and scaled
    start = time.perf_counter()
    fno_scheme.advance(w0, 0.2)
    times["solver_fno_scheme"] = (time.perf_counter() - start) * n_steps / 0.2
    return {"seconds": times, "speedup_vs_fast": times["solver_fast"] / times["surrogate"],
            "speedup_vs_fno_scheme": times["solver_fno_scheme"] / times["surrogate"],
            "target": ">= 100",
            "setup": f"64x64, batch {batch}, {n_steps} time units (1 surrogate step each), "
                     "FNO modes 12 width 32 with 10 frames in; NS-Sym nu = 1e-4, fast scheme "
                     "dt = 0.0125 (default at 64), fno scheme dt = 1e-4 (timed over 0.2 "
                     "and scaled)"}


def main() -> dict:
    torch.set_num_threads(1)
    sections = {"trainer": trainer_overhead, "rollout_memory": rollout_memory,
                "speedup": surrogate_speedup}
    only = [a for a in sys.argv[1:] if a in sections] or list(sections)
    path = RESULTS / "solvers.json"
    results = json.loads(path.read_text()) if path.exists() and len(only) < 3 else {}
    results["torch_threads"] = 1
    for key in only:
        fn = sections[key]
        start = time.perf_counter()
        results[key] = fn()
        print(f"{key}: done in {time.perf_counter() - start:.0f} s", flush=True)
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "solvers.json.tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(RESULTS / "solvers.json.tmp", RESULTS / "solvers.json")
    t, m, s = results["trainer"], results["rollout_memory"], results["speedup"]
    mib = 2**20
    sec = s["seconds"]
    rows = [
        ("bare loop (samples/s)", f"{t['bare_samples_per_s']:.1f}", ""),
        ("Trainer (samples/s)", f"{t['trainer_samples_per_s']:.1f}", ""),
        ("Trainer overhead", f"{100 * t['overhead']:.1f}%", "< 5%"),
        ("streamed rollout: extra peak RSS, 10 / 1000 steps",
         f"{m['stream_10_bytes'] / mib:.1f} / {m['stream_1000_bytes'] / mib:.1f} MiB", ""),
        ("streamed rollout: process peak RSS, 10 / 1000 steps",
         f"{m['stream_10_peak_rss_bytes'] / mib:.0f} / "
         f"{m['stream_1000_peak_rss_bytes'] / mib:.0f} MiB", ""),
        ("streamed rollout: peak RSS ratio 1000 / 10 steps",
         f"{m['stream_ratio_1000_vs_10']:.3f}", "1 +- 0.1"),
        ("in-memory rollout: extra peak RSS, 10 / 1000 steps",
         f"{m['memory_10_bytes'] / mib:.1f} / {m['memory_1000_bytes'] / mib:.1f} MiB", ""),
        ("in-memory rollout: peak RSS ratio 1000 / 10 steps",
         f"{m['memory_ratio_1000_vs_10']:.3f}", "(contrast)"),
        ("surrogate rollout, 10 time units (s)", f"{sec['surrogate']:.3f}", ""),
        ("solver, fast scheme (s)", f"{sec['solver_fast']:.3f}", ""),
        ("solver, fno scheme dt = 1e-4 (s, scaled)", f"{sec['solver_fno_scheme']:.1f}", ""),
        ("speed-up vs fast scheme", f"{s['speedup_vs_fast']:.1f}x", ">= 100x"),
        ("speed-up vs fno scheme", f"{s['speedup_vs_fno_scheme']:.0f}x", ">= 100x"),
    ]
    rows = ["| quantity | value | target |", "|---|---|---|"] + [
        f"| {a} | {b} | {c} |" for a, b, c in rows]
    table = "\n".join(rows)
    print(table)
    with open(RESULTS / "solvers.md.tmp", "w") as f:
        f.write("# benchmarks/solvers.py (one torch thread)\n\n" + table + "\n")
    os.replace(RESULTS / "solvers.md.tmp", RESULTS / "solvers.md")
    return results


if __name__ == "__main__":
    main()
