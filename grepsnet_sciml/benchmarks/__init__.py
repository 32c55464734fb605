"""Benchmark drivers behind ``grepsnet bench`` (and the scripts in ``benchmarks/``).

- :mod:`.ns`: Navier-Stokes, GRepsFNO against G-FNO (p4, p4m), FNO and FNO + augmentation.
- :mod:`.nbody`: charged N-body, GRepsNBody against EGNN.

Import the submodule you need; this package imports nothing itself.
"""
