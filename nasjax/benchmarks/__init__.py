"""Tabular benchmarks: scores of every architecture of an enumerable space, queried by encoding.

    bench = nasjax.benchmarks.load("nasbench201-cifar10")        # data_dir or $NASJAX_DATA_DIR
    bench = nasjax.benchmarks.load("convnet-cifar10")            # shipped in the package
    scores = bench.objective()(archs, key)                          # float32 (n,), jittable
    best_enc, best_score = bench.optimum()
"""

from __future__ import annotations

import functools
import os
from typing import Callable

from nasjax.benchmarks import convnet, nasbench201
from nasjax.benchmarks.tabular import BenchmarkDataError, TabularBenchmark

# name -> loader(data_dir) -> TabularBenchmark. Names are listed here, not discovered, so the set of
# benchmarks never depends on import order.
LOADERS: dict[str, Callable[[str | os.PathLike | None], TabularBenchmark]] = {
    "nasbench201-cifar10": functools.partial(nasbench201.load, "cifar10"),
    "nasbench201-cifar100": functools.partial(nasbench201.load, "cifar100"),
    "nasbench201-imagenet16": functools.partial(nasbench201.load, "imagenet16"),
    # Built by experiments/build_convnet_table.py and shipped in the package: needs no data_dir.
    "convnet-cifar10": lambda data_dir: convnet.load(),
    # "nasbench101": the official tfrecord reader (nasjax.benchmarks.nasbench101).
}


def load(name: str, data_dir: str | os.PathLike | None = None) -> TabularBenchmark:
    """The benchmark `name` (see `LOADERS`), reading its data from `data_dir` where it needs files."""
    if name not in LOADERS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(sorted(LOADERS))}")
    return LOADERS[name](data_dir)


__all__ = ["BenchmarkDataError", "LOADERS", "TabularBenchmark", "convnet", "load", "nasbench201"]
