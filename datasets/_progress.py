"""Fractional progress of the chunk being generated, for the store writer's sample bar.

:func:`~grepsnet_sciml.datasets.storage.write_dataset` counts samples, but a generator
computes a whole chunk (16 samples, say) together, so its bar would move once per chunk.
While it computes a chunk in this process it installs a *sink* with :func:`reporting`; the
generators' time loops call :func:`report` with the samples' worth of work just done
(``batch * dt / t_final``), and the bar advances smoothly. Without a sink (a direct
``generate()`` call, or a chunk computed on a dask worker) :func:`report` does nothing.

Examples
--------
>>> seen = []
>>> with reporting(seen.append):
...     report(0.5)
>>> report(1.0)  # no sink installed: ignored
>>> seen
[0.5]
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["reporting", "report", "current_sink"]

_SINK: contextvars.ContextVar[Callable[[float], None] | None] = contextvars.ContextVar(
    "grepsnet_progress_sink", default=None)


@contextmanager
def reporting(sink: Callable[[float], None]) -> Iterator[None]:
    """Send :func:`report` calls made in this context to ``sink(samples)``."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


def current_sink() -> Callable[[float], None] | None:
    """The installed sink (to hand to worker threads, which do not inherit the context)."""
    return _SINK.get()


def report(samples: float) -> None:
    """Tell the installed sink that ``samples`` samples' worth of work was done."""
    sink = _SINK.get()
    if sink is not None:
        sink(samples)
