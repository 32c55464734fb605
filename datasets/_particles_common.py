"""Pieces shared by the charged-particle integrators: pair bookkeeping, blow-up checks, chunking.

Internal layout
---------------
The integrators keep the state of ``B`` trajectories of ``n`` particles as arrays of shape
``(n, 3, B)`` (particle, coordinate, trajectory): every per-particle or per-pair slice is then
a contiguous block over trajectories, so each numpy call works on all trajectories at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._progress import current_sink

__all__ = ["BlowUpError", "Pairs", "check_finite", "run_chunks"]


class BlowUpError(FloatingPointError):
    """A trajectory became NaN or infinite; the message names the sample and the time."""


class Pairs:
    """The unordered particle pairs ``i < j`` of ``n`` particles and how forces sum over them.

    Parameters
    ----------
    n : int
        Number of particles.

    Attributes
    ----------
    i, j : numpy.ndarray
        ``(P,)`` int, ``P = n (n - 1) / 2``, pairs in ``numpy.triu_indices(n, 1)`` order.
    rows : list of list of (int, bool)
        For particle ``i``, the pairs ``(p, sign)`` with partners ``j = 0 .. n-1, j != i`` in
        increasing ``j``; ``sign`` is True when ``i`` is the pair's first particle (term
        ``+t_p``), False when it is the second (term ``-t_p``).
    """

    def __init__(self, n: int):
        self.n = n
        self.i, self.j = np.triu_indices(n, 1)
        index = {(int(a), int(b)): p for p, (a, b) in enumerate(zip(self.i, self.j))}
        self.rows = [
            [(index[(min(a, b), max(a, b))], a < b) for b in range(n) if b != a] for a in range(n)
        ]

    def sum_left_to_right(self, terms: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out[i] = (((+-t_p0) +- t_p1) +- ...)`` over the partners of ``i`` in increasing order.

        ``terms`` is ``(P, 3, B)`` holding ``t_ij`` for the pairs ``i < j`` (``t_ji = -t_ij``);
        ``out`` is ``(n, 3, B)``. Only elementwise numpy operations on ``(3, B)`` slices, in
        an order fixed by :attr:`rows` alone, so every trajectory gets the same correctly
        rounded additions whatever ``B`` is (no BLAS, no reduction whose order could depend
        on the shape or the CPU).
        """
        for a, row in enumerate(self.rows):
            acc = out[a]
            p0, first = row[0]
            if first:
                np.copyto(acc, terms[p0])
            else:
                np.negative(terms[p0], out=acc)
            for p, sign in row[1:]:
                if sign:
                    np.add(acc, terms[p], out=acc)
                else:
                    np.subtract(acc, terms[p], out=acc)
        return out

    def sum_in_order(self, terms: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out[i] = sum_j t_ij`` added in the order numpy's ``sum(axis=-1)`` uses on a row.

        ``terms`` is ``(P, 3, B)`` holding ``t_ij`` for the pairs ``i < j``, with
        ``t_ji = -t_ij`` and ``t_ii = 0``; ``out`` is ``(n, 3, B)``. This reproduces, bit for
        bit, ``T.sum(axis=-1)`` of the C-contiguous ``(3, n, n)`` term matrix ``T`` of one
        trajectory: for ``n <= 7`` numpy adds a row left to right,
        ``(((t_i0 + t_i1) + t_i2) + ...)`` (the zero diagonal term changes nothing), which is
        :meth:`sum_left_to_right`; for larger ``n`` the full matrix ``(B, 3, n, n)`` is built
        and summed by numpy itself, one row of length ``n`` per reduction, so the order does
        not depend on ``B`` either.
        """
        if self.n <= 7:
            return self.sum_left_to_right(terms, out)
        full = np.zeros((terms.shape[-1], 3, self.n, self.n))
        moved = np.moveaxis(terms, 0, -1).transpose(1, 0, 2)  # (B, 3, P)
        full[:, :, self.i, self.j] = moved
        full[:, :, self.j, self.i] = -moved
        out[...] = full.sum(axis=-1).transpose(2, 1, 0)
        return out


def check_finite(arrays: tuple[np.ndarray, ...], first_sample: int, time: float) -> None:
    """Raise :class:`BlowUpError` if any trajectory of the ``(n, 3, B)`` arrays is not finite.

    The message names the first bad trajectory as ``first_sample + b`` and the time ``time``.
    """
    bad = np.zeros(arrays[0].shape[-1], dtype=bool)
    for array in arrays:
        bad |= ~np.isfinite(array).all(axis=(0, 1))
    if bad.any():
        sample = first_sample + int(np.flatnonzero(bad)[0])
        raise BlowUpError(
            f"the simulation blew up (NaN/Inf) in sample {sample} at time t = {time:.6g}; "
            f"{int(bad.sum())} trajectories of this chunk are affected"
        )


def run_chunks(
    work: Callable[[slice, Callable[[int], None]], None],
    n_total: int,
    batch_size: int,
    threads: int,
    progress_total: int,
    progress: bool,
    description: str,
) -> None:
    """Run ``work(chunk, advance)`` for every chunk of ``range(n_total)``, maybe in threads.

    ``advance(k)`` moves a shared tqdm bar (``progress_total`` units per chunk) by ``k`` and
    reports ``k * len(chunk) / progress_total`` samples to the installed progress sink
    (:mod:`~grepsnet_sciml.datasets._progress`), which the store writer shows.
    numpy releases the GIL in its loops, so ``threads = 2`` uses two cores; the result does
    not depend on ``threads`` or ``batch_size`` (every trajectory is computed on its own).
    """
    from tqdm.auto import tqdm

    chunks = [slice(a, min(a + batch_size, n_total)) for a in range(0, n_total, batch_size)]
    bar = tqdm(total=progress_total * len(chunks), desc=description, disable=not progress,
               unit="step")
    lock = threading.Lock()
    sink = current_sink()  # worker threads do not inherit the caller's context

    def advancing(chunk: slice) -> Callable[[int], None]:
        share = (chunk.stop - chunk.start) / progress_total  # samples per step

        def advance(k: int) -> None:
            with lock:
                bar.update(k)
                if sink is not None:
                    sink(k * share)

        return advance

    try:
        if threads <= 1 or len(chunks) == 1:
            for chunk in chunks:
                work(chunk, advancing(chunk))
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                futures = [pool.submit(work, chunk, advancing(chunk)) for chunk in chunks]
                for future in futures:
                    future.result()
    finally:
        bar.close()
