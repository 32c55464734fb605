"""Training seconds per epoch of the NS bench's models, side by side in one process.

Each model trains on the bench's own data and row configuration (``grepsnet bench ns``:
matched widths, GRepsFNO at :data:`~grepsnet_sciml.benchmarks.ns.OWN`), one epoch at a time
in turn (``grepsnet_sciml.solvers.experiment.train`` resumed with one more epoch), so load
on the machine falls on every model alike. An epoch's seconds are the trainer's own
(``metrics.jsonl``: batches, loss, backward and optimiser steps; validation excluded).
Reported: the mean over epochs after the first, and the median over those epochs of each
model's seconds over the reference's (G-FNO-p4) in the same round, with quartiles.

Usage::

    python benchmarks/ns_epoch_timing.py [--epochs 6] [--models GRepsFNO GFNO-p4]

writes ``benchmarks/results/ns_epoch_timing.{json,md}`` (data in the bench's cache,
``runs/ns_data``; the runs in a temporary folder).
"""

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from grepsnet_sciml.benchmarks import ns
from grepsnet_sciml.solvers.experiment import train

ROOT = Path(__file__).resolve().parent.parent


def main(epochs: int, models: list[str], protocol: str, preset: str) -> int:
    if ns.REFERENCE not in models:
        models = [ns.REFERENCE, *models]
    torch.set_num_threads(1)
    p = ns.make_protocol(protocol, preset)
    stores, _ = ns.prepare_data(p, preset, ROOT / ns.CACHE, progress=False)
    matched, _ = ns.widths(models, p, ns.PRESET_GROUPS[preset], ns.preset_forcing(preset))
    seconds = {name: [] for name in models}
    with tempfile.TemporaryDirectory() as tmp:
        configs = {name: ns.row_config(name, matched[name][0], p, preset, stores, 0,
                                       Path(tmp) / name, progress=False) for name in models}
        for epoch in range(1, epochs + 1):
            for name in (models if epoch % 2 else models[::-1]):
                cfg = configs[name]
                cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epoch))
                _, history = train(cfg, resume=epoch > 1)
                seconds[name].append(history[-1]["seconds"])
    kept = {name: s[1:] for name, s in seconds.items()}  # the first epoch warms up
    ref = kept[ns.REFERENCE]
    rows = []
    for name in models:
        rows.append({"model": name, "width": matched[name][0],
                     "seconds_per_epoch": float(np.mean(kept[name])),
                     "seconds": seconds[name], **ns.paired_ratio(kept[name], ref)})
    lines = ["| model | width | s/epoch | ratio to G-FNO-p4 (quartiles) |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['width']} | {r['seconds_per_epoch']:.1f} | "
              f"{ns.ratio_text(r)} |" for r in rows]
    ns.write_table(ROOT / "benchmarks" / "results" / "ns_epoch_timing",
                   {"protocol": protocol, "preset": preset, "epochs": epochs, "threads": 1,
                    "torch": torch.__version__, "rows": rows}, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--models", nargs="+", default=["GRepsFNO", ns.REFERENCE])
    parser.add_argument("--protocol", default="quick")
    parser.add_argument("--preset", default="ns-sym")
    args = parser.parse_args()
    sys.exit(main(args.epochs, args.models, args.protocol, args.preset))
