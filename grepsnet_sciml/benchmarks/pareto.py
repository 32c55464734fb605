"""Accuracy against cost of the Navier-Stokes benchmark's models: the picture users look at.

Each point is one model at one width, the mean (and standard deviation, as error bars) over
the seeds that trained it, read from ``ns_<protocol>_<preset>.json`` files written by
:func:`~grepsnet_sciml.benchmarks.ns.run` (or merged by
:func:`~grepsnet_sciml.benchmarks.ns.merge`): test relative L2 (%) against training seconds
per epoch and against parameters. The official G-FNO-p4 and FNO2d, run by their own code on
the same quick data, are marked as reference points (:data:`OFFICIAL`).

Usage::

    python benchmarks/ns_pareto.py benchmarks/results/ns_quick_ns-sym.json [more.json ...]

writes ``benchmarks/results/ns_pareto.{png,json}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from grepsnet_sciml._atomic import atomic_path, atomic_write_text

from ._results import claim, read_results, variant, variant_label

__all__ = ["OFFICIAL", "pareto_points", "write_pareto"]

OFFICIAL = {
    "official G-FNO-p4": {"test_error": 13.02, "parameters": 366721, "seconds_per_epoch": 40.0},
    "official FNO2d": {"test_error": 24.92, "parameters": 416661, "seconds_per_epoch": 16.0},
}
"""The official codes on our quick NS-Sym data (``../shared/ANCHORS.md``): test error and
parameters measured on the exact windows of ``grepsnet bench ns --protocol quick``; seconds
per epoch from the anchors' run of the same protocol sizes on a 2-core CPU, one thread."""


def pareto_points(paths) -> list[dict]:
    """One point per (model, width, depth): mean and standard deviation over seeds.

    Parameters
    ----------
    paths : sequence of path
        Results JSON files; rows of the same model, width and seed in two files are refused.

    Returns
    -------
    list of dict
        ``{"model", "width", "seeds", "parameters", "seconds_per_epoch",
        "seconds_per_epoch_std", "test_error", "test_error_std", "sources"}``.
    """
    rows, seen = [], set()
    for path in paths:
        part = read_results(path)
        if "rows" not in part:
            raise ValueError(f"paths: {path} has no 'rows'; expected a file written by "
                             "grepsnet_sciml.benchmarks.ns.run")
        for row in part["rows"]:
            claim(seen, row)
            rows.append({**row, "source": str(path)})
    if not rows:
        raise ValueError("paths: expected results files with at least one row, got none")
    points = []
    for key in dict.fromkeys(variant(r) for r in rows):
        mine = [r for r in rows if variant(r) == key]
        point = {"model": key[0], "width": key[1], "n_layers": key[2], "modes": key[3],
                 "seeds": len(mine),
                 "parameters": float(np.mean([r["parameters"] for r in mine])),
                 "sources": sorted({r["source"] for r in mine})}
        for key, name in (("train_seconds_per_epoch", "seconds_per_epoch"),
                          ("test_error", "test_error")):
            values = [r[key] for r in mine]
            point[name] = float(np.mean(values))
            point[f"{name}_std"] = float(np.std(values))
        points.append(point)
    return points


def write_pareto(paths, out_dir, stem: str = "ns_pareto") -> dict:
    """Plot :func:`pareto_points` of ``paths`` and write ``stem.{png,json}`` atomically.

    Returns
    -------
    dict
        ``{"points": [...], "official": OFFICIAL, "files": {"png": ..., "json": ...}}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    points = pareto_points(paths)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {k: out_dir / f"{stem}.{k}" for k in ("png", "json")}
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6), sharey=True)
    models = list(dict.fromkeys(p["model"] for p in points))
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(models)}
    for ax, key, label in ((axes[0], "seconds_per_epoch", "training seconds per epoch"),
                           (axes[1], "parameters", "parameters")):
        for model in models:
            mine = sorted((p for p in points if p["model"] == model), key=lambda p: p[key])
            xs = [p[key] for p in mine]
            ax.errorbar(xs, [p["test_error"] for p in mine],
                        yerr=[p["test_error_std"] for p in mine],
                        xerr=[p["seconds_per_epoch_std"] for p in mine]
                        if key == "seconds_per_epoch" else None,
                        marker="o", capsize=3, color=colors[model], label=model)
            for p in mine:
                ax.annotate(variant_label(p), (p[key], p["test_error"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        for name, ref in OFFICIAL.items():
            ax.scatter([ref[key]], [ref["test_error"]], marker="*", s=160, color="black",
                       zorder=5)
            ax.annotate(name, (ref[key], ref["test_error"]), fontsize=8, xytext=(5, -10),
                        textcoords="offset points")
        ax.set_xlabel(label)
        if key == "seconds_per_epoch":
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
                lambda v, _: f"{v:g}" if str(int(v))[0] in "1235" else ""))
        else:
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
                lambda v, _: f"{v / 1e3:,.0f}k"))
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("test relative L2 over the rollout (%)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8,
               frameon=False)
    fig.suptitle("Navier-Stokes benchmark: accuracy against cost (mean ± sd over seeds; "
                 "stars: official codes on the same data)", fontsize=10)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    with atomic_path(files["png"], suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    result = {"points": points, "official": OFFICIAL, "sources": [str(p) for p in paths]}
    atomic_write_text(files["json"], json.dumps(result, indent=2))
    result["files"] = {k: str(v) for k, v in files.items()}
    return result
