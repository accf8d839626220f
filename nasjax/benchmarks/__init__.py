"""Benchmarks: stored scores of a space's architectures, queried by encoding; every one `load` returns
follows the `Benchmark` protocol (name, space, objective, optimum, enumerate, jittable, enumerable).
A trained weight-sharing supernet is a benchmark too (`supernet.load(checkpoint folder)`): its
objective runs on the host and it has no known optimum.

    bench = nasjax.benchmarks.load("nasbench201-cifar10")        # data_dir or $NASJAX_DATA_DIR
    bench = nasjax.benchmarks.load("convnet-cifar10")            # shipped in the package
    bench = nasjax.benchmarks.load("nasbench101", data_dir)      # the official tfrecord, no TensorFlow
    scores = bench.objective()(archs, key)                          # float32 (n,), jittable
    best_enc, best_score = bench.optimum()
    bench = nasjax.benchmarks.supernet.load("runs/lanas_cifar")  # lanas_cifar --evaluation supernet
"""

from __future__ import annotations

import functools
import os
from typing import Callable

from nasjax.benchmarks import convnet, nasbench101, nasbench201, supernet
from nasjax.benchmarks.tabular import Benchmark, BenchmarkDataError, TabularBenchmark

# name -> loader(data_dir) -> Benchmark. Names are listed here, not discovered, so the set of
# benchmarks never depends on import order.
LOADERS: dict[str, Callable[[str | os.PathLike | None], Benchmark]] = {
    "nasbench201-cifar10": functools.partial(nasbench201.load, "cifar10"),
    "nasbench201-cifar100": functools.partial(nasbench201.load, "cifar100"),
    "nasbench201-imagenet16": functools.partial(nasbench201.load, "imagenet16"),
    # Built by experiments/build_convnet_table.py and shipped in the package: needs no data_dir.
    "convnet-cifar10": lambda data_dir: convnet.load(),
    # The official tfrecord, read without TensorFlow (nasjax.benchmarks.nasbench101).
    "nasbench101": nasbench101.load,
}


def load(name: str, data_dir: str | os.PathLike | None = None) -> Benchmark:
    """The benchmark `name` (see `LOADERS`), reading its data from `data_dir` where it needs files."""
    if not isinstance(name, str) or name not in LOADERS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(sorted(LOADERS))}")
    return LOADERS[name](data_dir)


__all__ = ["Benchmark", "BenchmarkDataError", "LOADERS", "TabularBenchmark", "convnet", "load",
           "nasbench101", "nasbench201", "supernet"]
