"""File-system helpers of the dataset writers: atomic writes, locks, argument fingerprints."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_write_text",
    "describe_difference",
    "fingerprint",
    "fsync_dir",
    "jsonable",
    "lock_directory",
    "positive_int",
    "remove",
]


def fingerprint(arguments: dict) -> str:
    """SHA-256 (hex) of the canonical JSON of ``arguments``."""
    text = json.dumps(arguments, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def describe_difference(stored: Any, requested: Any, prefix: str = "") -> str:
    """Human-readable list of the entries where two JSON values differ."""
    if isinstance(stored, dict) and isinstance(requested, dict):
        parts = [
            describe_difference(stored.get(k), requested.get(k), f"{prefix}{k}.")
            for k in sorted(stored.keys() | requested.keys())
            if stored.get(k) != requested.get(k)
        ]
        return "; ".join(parts)
    return f"{prefix.rstrip('.')}: stored {stored!r}, requested {requested!r}"


def positive_int(value: Any, argument: str) -> int:
    """``value`` as an ``int``; ``ValueError`` naming ``argument`` unless positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{argument}: expected a positive integer, got {value!r}")
    return int(value)


def jsonable(value: Any, argument: str) -> Any:
    """``value`` through a JSON round trip; ``ValueError`` naming ``argument`` if impossible."""
    try:
        return json.loads(json.dumps(value, sort_keys=True))
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{argument}: must be JSON-serialisable (numbers, strings, lists, dicts) to be "
            f"recorded for resuming; got {value!r} ({err})"
        ) from err


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (after ``os.replace`` into it) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def lock_directory(root: Path) -> int:
    """Hold an exclusive lock on the workspace for as long as this process writes to it."""
    fd = os.open(root, os.O_RDONLY)
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ValueError(f"{root}: another process is writing this dataset") from None
    return fd


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
