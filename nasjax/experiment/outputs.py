"""A script's output folder: CSV tables and a Markdown summary, each replaced atomically."""

from __future__ import annotations

import os
import pathlib

from nasjax.io import atomic_write_bytes, write_csv


def write_outputs(out: str | os.PathLike, tables: dict[str, list[dict]], summary: str) -> pathlib.Path:
    """Folder `out` (created) with one CSV per `tables` entry (file name -> rows) and summary.md
    holding `summary`; returns the folder."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        write_csv(out / name, rows)
    atomic_write_bytes(out / "summary.md", summary.encode())
    return out
