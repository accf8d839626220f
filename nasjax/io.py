"""Files that survive crashes: atomic replacement, and JSONL logs read back after a kill.

The one way nasjax replaces a file (checkpoints, logs cut back on resume, tables, population states):
write a temporary file in the same folder, fsync it, `os.replace` it over the target, fsync the folder
so the rename itself survives a power loss. If writing fails (full disk), the target keeps its old
content and the temporary file is removed; a killed process leaves its temporary behind, which
`remove_temporaries` deletes when the next run takes the folder over. Logs are appended whole lines at
a time (`append_jsonl`, fsynced) and read back with `read_jsonl`, which drops a line torn by a kill and
cuts a log back to a checkpoint.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pathlib
import re
import secrets
from typing import BinaryIO, Callable

import numpy as np


# atomic_write's temporaries: `.{target name}.{8 hex digits}.tmp`.
_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")


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
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        _name_the_file(e, path)
        raise
    _fsync_dir(path.parent)
    return path


def _name_the_file(error: BaseException, path: pathlib.Path) -> None:
    """Raise an OSError that names no file (a failed write or fsync: a full disk) again naming
    `path`, so that the one line reporting it says which file."""
    if isinstance(error, OSError) and error.filename is None:
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    """Replace `path` by `data` atomically (see `atomic_write`)."""
    return atomic_write(path, lambda f: f.write(data))


def remove_temporaries(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Delete the temporaries that killed `atomic_write`s left anywhere under `folder`; returns them.
    Only for a folder no other process is writing (e.g. a work directory whose lock is held)."""
    found = [p for p in pathlib.Path(folder).rglob(".*.tmp") if _TEMPORARY.fullmatch(p.name) and p.is_file()]
    for p in found:
        p.unlink(missing_ok=True)
    return found


def append_jsonl(path: str | os.PathLike, records: list[dict]) -> None:
    """Append one JSON line per record to `path`, in one write, and fsync it: after a kill the file
    ends with whole records, or with one torn last line that `read_jsonl` removes."""
    try:
        with open(path, "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        _name_the_file(e, pathlib.Path(path))
        raise


def sha256_of_arrays(*arrays) -> str:
    """Hex sha256 of the arrays' bytes, in order (what identifies data that was read)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def write_csv(path: str | os.PathLike, rows: list[dict]) -> pathlib.Path:
    """Replace `path` by a CSV of `rows` atomically: a header of every key in first-seen order, a
    row per dict (missing keys empty)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_bytes(path, text.getvalue().encode())


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


class CorruptFileError(ValueError):
    """A file nasjax wrote earlier (checkpoint, log) is damaged; the message names it and the problem."""


def read_jsonl(path: str | os.PathLike, keep: int | None = None) -> list[dict]:
    """The records of a JSONL log written by appending whole lines ([] if there is no file).

    A last line torn by a kill mid-write is removed from the file. With `keep`, the file is cut back
    to its first `keep` records (a resumed run redoes the later ones) and must hold at least that
    many. Raises `CorruptFileError` for a damaged line before the last, or too few records.
    """
    path = pathlib.Path(path)
    lines = path.read_bytes().splitlines(keepends=True) if path.exists() else []
    records = []
    for i, line in enumerate(lines):
        try:
            if not line.endswith(b"\n"):
                raise ValueError("no line end")
            records.append(json.loads(line))
        except ValueError:  # also json.JSONDecodeError and UnicodeDecodeError
            if i < len(lines) - 1:
                raise CorruptFileError(f"{path} line {i + 1} is damaged (not a JSON record); move the "
                                       "file away to redo its work") from None
    if keep is not None and len(records) < keep:
        raise CorruptFileError(f"{path} has {len(records)} records but the checkpoint holds {keep}: "
                               "the log was damaged; move the work directory away to start again")
    kept = len(records) if keep is None else keep
    if kept < len(lines):
        atomic_write(path, lambda f: f.write(b"".join(lines[:kept])))
    return records[:kept]
