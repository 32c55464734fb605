"""Atomic file output shared by every writer of the package.

A file is written to a temporary sibling and moved over its destination with
``os.replace`` only once complete, so a crash never leaves a torn file and an existing file
is replaced in one step. The finished file gets the mode a plain ``open(path, "w")`` would
give (``0o666`` less the process umask; ``mkstemp``'s ``0o600`` would hide results from
colleagues on a shared machine).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "umask_mode"]


def umask_mode(base: int = 0o666) -> int:
    """``base`` less the process umask: the mode ``open``/``mkdir`` would give a new entry."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` if the block succeeds.

    Parameters
    ----------
    path : path-like
        Destination. Its folder is created if missing.
    suffix : str
        Ending of the temporary name (some writers choose the format from it, e.g. ``.png``).

    Raises
    ------
    PermissionError
        The folder of ``path`` cannot be written (the message names it).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp" + suffix)
    except OSError as err:
        raise PermissionError(
            f"cannot write {path}: its folder {folder} is not writable ({err.strerror}); "
            "choose an output path in a writable folder"
        ) from err
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, umask_mode())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode())
