"""Atomic file writes: a reader sees the old file or the new one, never a torn mix, even after a crash.

The one way nasjax replaces a file (checkpoints, logs cut back on resume, tables, population states):
write a temporary file in the same folder, fsync it, `os.replace` it over the target, fsync the folder
so the rename itself survives a power loss. If writing fails (full disk, killed process), the target
keeps its old content and the temporary file is removed.
"""

from __future__ import annotations

import os
import pathlib
import secrets
from typing import BinaryIO, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> pathlib.Path:
    """Replace `path` by what `write(f)` writes into a binary file object; returns the path."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # Mode 0o666 less the umask, as a plain open() gives (mkstemp would make the file private).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    """Replace `path` by `data` atomically (see `atomic_write`)."""
    return atomic_write(path, lambda f: f.write(data))


def _fsync_dir(folder: pathlib.Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
