"""A script's output folder: CSV tables, a Markdown summary and plots, each replaced atomically."""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Callable

from nasjax.io import atomic_write_bytes, write_csv


def publish(out: str | os.PathLike, tables: dict[str, list[dict]], summary: str,
            plots: dict[str, Callable[[pathlib.Path], None]], started: float) -> pathlib.Path:
    """Folder `out` (created) with one CSV per `tables` entry (file name -> rows), summary.md holding
    `summary` and one PNG per `plots` entry (file name -> draw(path)); then prints the summary and a
    line with the wall time since `started` (time.perf_counter()) and the files. Returns the folder."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        write_csv(out / name, rows)
    atomic_write_bytes(out / "summary.md", summary.encode())
    for name, draw in plots.items():
        draw(out / name)
    print(summary)
    print(f"wall time {time.perf_counter() - started:.0f} s; wrote {out}/: "
          + ", ".join([*tables, "summary.md", *plots]))
    return out
