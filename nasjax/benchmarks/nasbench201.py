"""NAS-Bench-201 (NATS-Bench topology search space) from a CSV export of the official API.

File: `<data_dir>/nasbench201/nb201_cifar_200epochs.csv`, one row per architecture (15,625 rows), columns
  CIFAR10TestAccuracy200Epochs, CIFAR100TestAccuracy200Epochs, ImageNetTestAccuracy200Epochs
      test accuracy (%) after the benchmark's 200-epoch schedule, mean over the benchmark's runs
  ArchitectureString   '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' (read with `NASBench201Space.from_string`)
  UniqueString         optional; equal for functionally equivalent cells (not needed to load)
Rows may come in any order: they are placed at `space.index(from_string(ArchitectureString))`.

The file holds one value per architecture and dataset (the benchmark's mean over its training runs),
so the benchmark has n_seeds = 1 and `query(enc, key)` equals `query_mean(enc)`: searches on it are
noise-free. (NATS-Bench's per-seed values would give n_seeds > 1 columns; this format does not carry them.)

Producing the file with the official API (`pip install nats_bench`, benchmark files from its README,
`$TORCH_HOME/NATS-tss-v1_0-3ffb9-simple`):

    from nats_bench import create
    import csv
    api = create(None, "tss", fast_mode=True, verbose=False)
    columns = {"CIFAR10TestAccuracy200Epochs": "cifar10", "CIFAR100TestAccuracy200Epochs": "cifar100",
               "ImageNetTestAccuracy200Epochs": "ImageNet16-120"}
    with open("nb201_cifar_200epochs.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow([*columns, "ArchitectureString"])
        for i in range(len(api)):  # 15,625
            accs = [api.get_more_info(i, d, hp="200", is_random=False)["test-accuracy"]
                    for d in columns.values()]
            out.writerow([*accs, api.arch(i)])

(`is_random=False` averages the benchmark's runs; `is_random=True` would draw one of them.)
"""

from __future__ import annotations

import csv
import math
import os
import pathlib

import jax
import numpy as np

from nasjax.benchmarks.tabular import BenchmarkDataError, TabularBenchmark, data_folder
from nasjax.spaces.base import InvalidEncodingError
from nasjax.spaces.nasbench201 import NASBench201Space

FILENAME = pathlib.Path("nasbench201") / "nb201_cifar_200epochs.csv"
ARCH_COLUMN = "ArchitectureString"
COLUMNS = {  # dataset name -> column of the export
    "cifar10": "CIFAR10TestAccuracy200Epochs",
    "cifar100": "CIFAR100TestAccuracy200Epochs",
    "imagenet16": "ImageNetTestAccuracy200Epochs",
}


def default_path(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The export's path under `data_dir`, else under $NASJAX_DATA_DIR."""
    return data_folder(data_dir, FILENAME) / FILENAME


def read_table(path: str | os.PathLike, dataset: str) -> np.ndarray:
    """float32 (15625, 1): the `dataset` column of the export at `path`, in `enumerate()` order."""
    if dataset not in COLUMNS:
        raise ValueError(f"unknown NB-201 dataset {dataset!r}; known: {', '.join(COLUMNS)}")
    path = pathlib.Path(path)
    if not path.is_file():
        raise BenchmarkDataError(
            f"NB-201 export not found at {path}; produce it with the NATS-Bench API as described in "
            f"nasjax.benchmarks.nasbench201's docstring")
    space = NASBench201Space()
    column = COLUMNS[dataset]
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        missing = [c for c in (column, ARCH_COLUMN) if c not in header]
        if missing:
            raise BenchmarkDataError(f"{path}: missing column(s) {', '.join(missing)}; found {header}")
        col, arch_col = header.index(column), header.index(ARCH_COLUMN)
        encs, values, lines = [], [], []
        for line, row in enumerate(reader, start=2):  # line 1 is the header
            if not row:  # blank line
                continue
            if len(row) != len(header):
                raise BenchmarkDataError(
                    f"{path}:{line}: row has {len(row)} fields, the header has {len(header)}")
            try:
                encs.append(space.from_string(row[arch_col]))
            except InvalidEncodingError as e:
                raise BenchmarkDataError(f"{path}:{line}: {e}") from None
            try:
                values.append(float(row[col]))
            except ValueError:
                raise BenchmarkDataError(
                    f"{path}:{line}: {column} value {row[col]!r} is not a number") from None
            if not (math.isfinite(values[-1]) and 0.0 <= values[-1] <= 100.0):
                raise BenchmarkDataError(
                    f"{path}:{line}: {column} value {values[-1]} is not an accuracy in [0, 100]")
            lines.append(line)
    if len(encs) != space.size():
        raise BenchmarkDataError(f"{path}: {len(encs)} architectures, expected {space.size()}")
    index = np.asarray(jax.vmap(space.index)(np.stack(encs)))
    first = np.full(space.size(), -1)
    for k, i in enumerate(index):  # with the right count, a duplicate is the only way to miss one
        if first[i] >= 0:
            raise BenchmarkDataError(f"{path}:{lines[k]}: architecture {space.to_string(encs[k])} "
                                     f"repeats line {lines[first[i]]}")
        first[i] = k
    scores = np.empty((space.size(), 1), np.float32)
    scores[index, 0] = values
    return scores


def load(dataset: str, data_dir: str | os.PathLike | None = None) -> TabularBenchmark:
    """The NB-201 benchmark for `dataset` ("cifar10", "cifar100", "imagenet16"), n_seeds = 1."""
    path = default_path(data_dir)
    return TabularBenchmark(name=f"nasbench201-{dataset}", space=NASBench201Space(),
                            table=read_table(path, dataset),
                            source=f"{path} column {COLUMNS.get(dataset)} (200-epoch test accuracy, "
                                   f"mean over the benchmark's runs)")
