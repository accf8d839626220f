"""Flags of the scripts in experiments/: parsed and checked before anything is written.

Every bad value is refused by `Parser.parse_args` with one line naming the flag (a `UsageError`):
value types check range and finiteness (`integer`, `real`, `SEED`, `folder`), and `check` states the
conditions between flags. `main` runs a script's body and turns every expected failure (bad flags or
data, a damaged or unwritable work directory, a cluster that lost its workers) into one line on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
from typing import Callable

from nasjax.benchmarks import BenchmarkDataError
from nasjax.data import DataError
from nasjax.distributed import WorkersLostError
from nasjax.io import CorruptFileError


class UsageError(Exception):
    """Bad flags, too little data for them, or an unusable work directory: one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (`UsageError`) and the defaults shown by --help."""

    def __init__(self, doc: str, **kwargs):
        super().__init__(description=doc.split("\n\n")[0],
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kwargs)

    def error(self, message):  # one line instead of argparse's usage block
        raise UsageError(f"{message} (see --help)")


def integer(lo: int | None = 1, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi] (None: unbounded on that side)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {_range(lo, hi)}, got {value}")
        return value
    return parse


def real(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
         hi_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [lo, hi] (open at an end with lo_open / hi_open)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        low_bad = lo is not None and (value <= lo if lo_open else value < lo)
        high_bad = hi is not None and (value >= hi if hi_open else value > hi)
        if not math.isfinite(value) or low_bad or high_bad:
            where = _range(lo, hi, "(" if lo_open else "[", ")" if hi_open else "]")
            raise argparse.ArgumentTypeError(f"must be a finite number {where}, got {text}")
        return value
    return parse


def _range(lo, hi, left="[", right="]") -> str:
    if hi is None:
        return f"> {lo}" if left == "(" else f">= {lo}"
    if lo is None:
        return f"< {hi}" if right == ")" else f"<= {hi}"
    return f"in {left}{lo}, {hi}{right}"


# A seed is a uint32 (what jax.random.key takes without wrapping).
SEED = integer(0, 2**32 - 1)
COUNT = integer(1)       # a positive count
IMAGES = integer(0)      # an image or token count, 0: all of them


def folder(text: str) -> str:
    """An argparse type: a folder path that is not empty and not a file (it may not exist yet)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, got an empty path")
    if pathlib.Path(text).expanduser().exists() and not pathlib.Path(text).expanduser().is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return text


def add_population_flags(p: argparse.ArgumentParser, *, train_images: int, eval_images: int) -> None:
    """The flags of a script that trains a population of random ConvNets on the first images of
    CIFAR-10: --data-dir, --seed, --archs, --epochs, --batch-size, --train-images, --eval-images
    (defaults `train_images` and `eval_images`; 0: all)."""
    p.add_argument("--data-dir", type=folder, default=os.environ.get("NASJAX_DATA_DIR"))
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--archs", type=COUNT, default=16)
    p.add_argument("--epochs", type=COUNT, default=1)
    p.add_argument("--batch-size", type=COUNT, default=128)
    p.add_argument("--train-images", type=IMAGES, default=train_images,
                   help="use the first N training images (0: all)")
    p.add_argument("--eval-images", type=IMAGES, default=eval_images,
                   help="use the first N validation and test images (0: all)")


def check(*conditions: tuple[bool, str]) -> None:
    """Raise UsageError with the message of the first (ok, message) whose ok is false."""
    for ok, message in conditions:
        if not ok:
            raise UsageError(message)


def check_data_dir(data_dir: str | None, env: str = "NASJAX_DATA_DIR") -> None:
    """UsageError if the data folder (`data_dir`, else $env) is a file: a loader would say it is missing."""
    path = data_dir if data_dir is not None else os.environ.get(env) or None
    if path is not None and pathlib.Path(path).expanduser().is_file():
        raise UsageError(f"{'--data-dir' if data_dir is not None else '$' + env} {path} is a file, not "
                         "a folder")


EXPECTED = (UsageError, DataError, BenchmarkDataError, CorruptFileError, WorkersLostError)


def main(run: Callable[[], object]) -> int:
    """Run a script's body (`run()`, which prints its results); return its exit status: 0, or 2 with
    one line on stderr for bad input, damaged or unwritable files and lost workers, 130 on Ctrl-C."""
    try:
        run()
    except EXPECTED as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # read-only or full disk, a file where a folder should be, ...
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}; results must go to a writable folder with free space "
              "(finished work is kept: fix it and run the same command again to resume)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0
