"""Where a training step of the NS models spends its time: torch profiler, grouped by kind.

One forward+backward of a batch of 20 windows (quick protocol: 10 frames of 32x32, modes 8
unless a model sets its own), one torch thread, each model profiled over 5 steps after 2
warm-up steps. Self CPU time of the aten ops is grouped into FFT, matmul, elementwise,
copy/cat/index, norms, activation and other, per step. The models: the registry defaults of
GRepsFNO (at the bench's modes 10, with the NS-Sym forcing as an input channel) and G-FNO-p4
at the bench's widths, and GRepsFNO's previous defaults (``5 x R`` with 4 layers at modes 10;
``6 x R`` at modes 8; ``20 x R``, shared spectral kernels, mean pointwise mixing) for the
before/after comparison.

Usage::

    python benchmarks/ns_profile.py

writes ``benchmarks/results/ns_profile.{json,md}``.
"""

import json
import sys
from pathlib import Path

import torch
from torch.profiler import profile

from grepsnet_sciml import Reps
from grepsnet_sciml._atomic import atomic_write_text
from grepsnet_sciml.benchmarks.ns import preset_forcing
from grepsnet_sciml.groups import D4
from grepsnet_sciml.solvers.registry import build_core, model_config

ROOT = Path(__file__).resolve().parent.parent
OLD = {"forcing_channel": "off", "mlp_expansion": 1.0}
"""What the previous defaults did not have: the forcing channel, the narrower block MLPs."""
MODELS = {
    "GRepsFNO (default: 6xR, 3 layers, MLP 4xR, modes 10, forcing channel)": (
        "grepsfno", {"modes": 10}),
    "GRepsFNO (previous default: 5xR, modes 10)": (
        "grepsfno", {"width": 5, "modes": 10, "n_layers": 4, **OLD}),
    "GRepsFNO (earlier default: 6xR, modes 8)": ("grepsfno", {"width": 6, "n_layers": 4, **OLD}),
    "GRepsFNO (first default: 20xR, shared, mean)": (
        "grepsfno", {"width": 20, "n_layers": 4, "spectral_mixing": "shared",
                     "regular_mixing": "mean", **OLD}),
    "GFNO-p4": ("gfno-p4", {"width": 10, "n_layers": 4}),
}
KINDS = {
    "fft": ("fft",),
    "matmul": ("bmm", "mm", "matmul", "addmm", "linear"),
    "norm": ("batch_norm", "instance_norm", "var", "std"),
    "activation": ("gelu", "sigmoid", "silu"),
    "copy/cat/index": ("copy", "cat", "index", "gather", "scatter", "fill", "zero", "stack",
                       "clone", "contiguous", "select_backward", "slice_backward"),
    "elementwise": ("add", "mul", "sub", "div", "neg", "pow", "sum", "mean", "complex",
                    "real", "imag", "sqrt", "where", "clamp"),
}


def kind_of(name: str) -> str:
    """The group of an aten op name (``aten::bmm`` -> ``matmul``)."""
    op = name.split("::")[-1]
    for kind, keys in KINDS.items():
        if any(k in op for k in keys):
            return kind
    return "other"


def profile_model(model: torch.nn.Module, steps: int = 5) -> dict:
    """Per-step milliseconds by kind and aten calls per step."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20, 10, 32, 32, generator=gen)
    y = torch.randn(20, 1, 32, 32, generator=gen)

    def step():
        model.zero_grad(set_to_none=True)
        (model(x) - y).pow(2).mean().backward()

    for _ in range(2):
        step()
    with profile() as prof:
        for _ in range(steps):
            step()
    by_kind, calls = {}, 0
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue
        calls += event.count
        kind = kind_of(event.key)
        by_kind[kind] = by_kind.get(kind, 0.0) + event.self_cpu_time_total / 1000 / steps
    total = sum(by_kind.values())
    return {"ms_per_step": total, "aten_calls_per_step": calls / steps,
            "ms_by_kind": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
            "share_by_kind": {k: v / total for k, v in by_kind.items()}}


def main() -> int:
    torch.set_num_threads(1)
    g = D4()
    results = {}
    for label, (name, values) in MODELS.items():
        cfg = model_config(name, {"modes": 8, **values})
        torch.manual_seed(0)
        model = build_core(cfg, Reps("10xT0p", g), Reps("T0p", g), preset_forcing("ns-sym"))
        results[label] = {"config": {"name": name, **values}, **profile_model(model)}
        print(f"{label}: {results[label]['ms_per_step']:.0f} ms/step, "
              f"{results[label]['aten_calls_per_step']:.0f} aten calls")
    kinds = list(KINDS) + ["other"]
    lines = ["| model | ms/step (profiled) | aten calls | " + " | ".join(kinds) + " |",
             "|" + "---|" * (3 + len(kinds))]
    for label, r in results.items():
        shares = " | ".join(f"{100 * r['share_by_kind'].get(k, 0):.0f}%" for k in kinds)
        lines.append(f"| {label} | {r['ms_per_step']:.0f} | {r['aten_calls_per_step']:.0f} | "
                     f"{shares} |")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ns_profile.json", json.dumps(results, indent=2))
    atomic_write_text(out / "ns_profile.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
