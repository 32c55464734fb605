"""File-system helpers of the dataset writers: folders, locks, argument fingerprints."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "describe_difference",
    "fingerprint",
    "fsync_dir",
    "jsonable",
    "lock_directory",
    "make_directory",
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


def make_directory(path: Path) -> None:
    """Create ``path`` and missing parents with the default (umask) mode.

    Raises
    ------
    PermissionError
        ``path`` cannot be created (e.g. a read-only folder); the message names the folder.
    """
    try:
        path.mkdir(parents=True)
    except OSError as err:
        folder = next((p for p in path.parents if p.exists()), path.parent)
        raise PermissionError(
            f"cannot create {path}: the folder {folder} is not writable ({err.strerror}); "
            "choose an output path in a writable folder"
        ) from err


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
    """Delete a file, a link or a folder tree."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
