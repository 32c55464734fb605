"""EMLP's synthetic tasks and the G-RepsNet vs. MLP benchmark (``grepsnet bench synthetic``).

- :mod:`.data`: seeded data sets ``O5Synthetic`` (O(5)), ``Inertia`` (O(3)) and
  ``ParticleInteraction`` (O(1,3)), each declaring ``rep_in``, ``rep_out`` and ``group``;
- :mod:`.models`: the MLP baseline and the equivariance-preserving standardization;
- :mod:`.training`: training of both models on the solvers' ``Trainer``;
- :mod:`.benchmark`: :func:`run_synthetic_benchmark`, its table, JSON and plot.
"""

from .benchmark import SIZES, BenchmarkSize, format_table, run_synthetic_benchmark
from .data import TASKS, Inertia, O5Synthetic, ParticleInteraction, make_dataset

__all__ = [
    "TASKS",
    "SIZES",
    "BenchmarkSize",
    "O5Synthetic",
    "Inertia",
    "ParticleInteraction",
    "make_dataset",
    "run_synthetic_benchmark",
    "format_table",
]
