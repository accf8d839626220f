"""A script's output folder: CSV tables, a Markdown summary and plots, each replaced atomically; line
styles that keep many series apart; pyplot for files and how a figure is written."""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Callable, Iterable

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


def pyplot():
    """matplotlib.pyplot on the Agg backend (figures go to files; no display needed), imported on first
    use so that scripts start without it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: str | os.PathLike) -> None:
    """Lay `fig` out, write it to `path` (PNG, 120 dpi) and close it (pyplot keeps open figures alive)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


LINE_STYLES = ("-", "--", ":", "-.")


def series_styles(names: Iterable[str], family: Callable[[str], str] = lambda name: name) -> dict[str, dict]:
    """matplotlib keyword arguments (color, ls) for each series in `names`, all told apart: one color
    per `family(name)` (tab10's, then tab20's light shades: 20 families), solid for the series named as
    its family and dashed, dotted, dash-dotted for the family's others in order (e.g. a strategy's
    paper settings beside it). Matplotlib's default cycle repeats after 10 series."""
    import matplotlib

    colors = list(matplotlib.colormaps["tab10"].colors) + list(matplotlib.colormaps["tab20"].colors[1::2])
    families: dict[str, int] = {}
    others: dict[str, int] = {}
    styles = {}
    for name in names:
        f = family(name)
        families.setdefault(f, len(families))
        if name == f:
            rank = 0
        else:
            rank = others[f] = others.get(f, 0) + 1
        styles[name] = dict(color=colors[families[f] % len(colors)], ls=LINE_STYLES[rank % len(LINE_STYLES)])
    return styles
