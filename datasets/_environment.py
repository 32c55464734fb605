"""What the bytes of generated data depend on besides the arguments: builds, CPU, threads.

The generators give bit-identical data for any chunking, batching or worker count, but the
last bits still depend on the software and the CPU: the torch and numpy versions, the SIMD
kernels torch and numpy dispatch to on this CPU, and the number of torch threads (a
reduction or FFT split over threads rounds differently). The generators pin the thread count
to :data:`GENERATION_THREADS` while they run (:func:`generation_threads`), and resumable
writers record :func:`runtime_environment` so that a run resumed under another setting is
refused rather than mixing chunks of different bytes.

Examples
--------
>>> env = runtime_environment()
>>> sorted(env)
['cpu_capability', 'numpy', 'numpy_cpu_dispatch', 'torch', 'torch_threads']
>>> describe_environment_difference({"torch": "2.13.0"}, {"torch": "2.12.1"})
"torch: stored '2.12.1', now '2.13.0'"
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = [
    "GENERATION_THREADS",
    "describe_environment_difference",
    "generation_threads",
    "runtime_environment",
]

#: Torch intra-op threads used while generating (the bytes depend on the thread count).
GENERATION_THREADS = 1


@contextlib.contextmanager
def generation_threads() -> Iterator[None]:
    """Run the block with :data:`GENERATION_THREADS` torch threads, then restore the count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(GENERATION_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def runtime_environment() -> dict:
    """The settings of this process that change the bytes of generated data.

    Returns
    -------
    dict
        ``torch`` and ``numpy`` versions, ``cpu_capability`` (the SIMD level torch dispatches
        to, ``torch.backends.cpu.get_cpu_capability()``), ``numpy_cpu_dispatch`` (numpy's
        baseline and the dispatched SIMD targets this CPU supports) and ``torch_threads``
        (:data:`GENERATION_THREADS`, the count the generators run with).
    """
    import numpy as np
    import torch
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # numpy < 2
        from numpy.core import _multiarray_umath as umath

    dispatch = [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]
    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "numpy_cpu_dispatch": " ".join([*umath.__cpu_baseline__, *dispatch]),
        "torch_threads": GENERATION_THREADS,
    }


def describe_environment_difference(
    now: dict, stored: dict, labels: tuple[str, str] = ("stored", "now")
) -> str:
    """``"name: stored X, now Y"`` for every setting where ``stored`` and ``now`` differ
    (``labels`` replace the words ``stored`` and ``now``)."""
    return "; ".join(
        f"{k}: {labels[0]} {stored.get(k)!r}, {labels[1]} {now.get(k)!r}"
        for k in sorted(now.keys() | stored.keys())
        if now.get(k) != stored.get(k)
    )
