"""Side-by-side cost of GRepsFNO variants (width, depth, modes, projection, MLP) against G-FNO-p4.

Forward and forward+backward of one quick-protocol batch (20 windows of 10 frames, 32x32),
every model timed in turn within each round so machine load affects them alike (as
``grepsnet bench ns --timing-only``), one torch thread, the median over rounds. G-FNO-p4 runs
at the bench's width (10), the reference of the ratios (each the median over rounds of the
time over G-FNO-p4's in the same round, with quartiles).

Usage::

    python benchmarks/ns_timing_variants.py [--repeats 20]

writes ``benchmarks/results/ns_timing_variants.{json,md}``.
"""

import argparse
import sys
from pathlib import Path

import torch

from grepsnet_sciml import Reps
from grepsnet_sciml.benchmarks.ns import (
    make_protocol,
    preset_forcing,
    ratio_text,
    real_parameter_count,
    side_by_side,
    write_table,
)
from grepsnet_sciml.groups import D4
from grepsnet_sciml.models import GFNO2d
from grepsnet_sciml.solvers.registry import build_core, model_config

ROOT = Path(__file__).resolve().parent.parent
FULL = {"mlp_expansion": 1.0}  # block MLPs as wide as the blocks (before the 2/3 default)
OFF = {"forcing_channel": "off", **FULL}
L4 = {"n_layers": 4, **OFF}
VARIANTS = {
    "GRepsFNO w6 L3 modes 10 block MLP 4xR + forcing (default)": {"modes": 10},
    "GRepsFNO w6 L3 modes 10 + forcing": {"modes": 10, **FULL},
    "GRepsFNO w6 L3 modes 10": {"modes": 10, **OFF},
    "GRepsFNO w5 L3 modes 10 + forcing": {"width": 5, "modes": 10, **FULL},
    "GRepsFNO w5 L4 modes 10 (previous default)": {"width": 5, "modes": 10, **L4},
    "GRepsFNO w5 L4 modes 10 + forcing": {"width": 5, "modes": 10, "n_layers": 4, **FULL},
    "GRepsFNO w5 L4 modes 10 block MLP 3xR + forcing": {"width": 5, "modes": 10,
                                                        "n_layers": 4, "mlp_width": 3},
    "GRepsFNO w6 L4 modes 8 (earlier default)": {"modes": 8, **L4},
    "GRepsFNO w6 L3 modes 8": {"modes": 8, **OFF},
    "GRepsFNO w5 L4 modes 8": {"width": 5, "modes": 8, **L4},
    "GRepsFNO w5 L4 modes 9": {"width": 5, "modes": 9, **L4},
    "GRepsFNO w5 L4 modes 12": {"width": 5, "modes": 12, **L4},
    "GRepsFNO w5 L4 modes 10 projection ratio 1": {"width": 5, "modes": 10,
                                                   "projection_ratio": 1, **L4},
    "GRepsFNO w5 L4 modes 10 shared spectral kernels": {"width": 5, "modes": 10,
                                                        "spectral_mixing": "shared", **L4},
    "GRepsFNO w5 L4 modes 10 block MLP 3xR": {"width": 5, "modes": 10, "mlp_width": 3, **L4},
}
"""Registry config values of ``grepsfno`` (its defaults elsewhere: ``6 x R``, 3 layers, block
MLPs through ``4 x R``, the forcing as an input channel)."""


def main(repeats: int) -> int:
    torch.set_num_threads(1)
    p = make_protocol("quick", "ns-sym")
    g = D4()
    built = {"GFNO-p4 w10 (reference)": GFNO2d(p.t_in, 1, width=p.reference_width,
                                               modes=p.modes, n_layers=p.n_layers, group="p4")}
    for label, values in VARIANTS.items():
        torch.manual_seed(0)
        built[label] = build_core(model_config("grepsfno", values), Reps(f"{p.t_in}xT0p", g),
                                  Reps("T0p", g), preset_forcing("ns-sym"))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(p.batch_size, p.t_in, p.resolution, p.resolution, generator=gen)
    y = torch.randn(p.batch_size, 1, p.resolution, p.resolution, generator=gen)
    medians = side_by_side(built, x, y, repeats, reference="GFNO-p4 w10 (reference)")
    rows = [{"model": label, "parameters": real_parameter_count(model), **medians[label]}
            for label, model in built.items()]
    lines = ["| model | params | fwd ms | fwd+bwd ms | ratio to G-FNO-p4 (quartiles) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['parameters']} | {r['forward_ms']:.0f} | "
              f"{r['forward_backward_ms']:.0f} | {ratio_text(r)} |" for r in rows]
    write_table(ROOT / "benchmarks" / "results" / "ns_timing_variants",
                {"repeats": repeats, "batch": p.batch_size, "threads": 1,
                 "torch": torch.__version__, "rows": rows}, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    sys.exit(main(parser.parse_args().repeats))
