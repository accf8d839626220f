"""The ConvNet-on-CIFAR-10 table nasjax builds with its own engine and ships in the package.

`experiments/build_convnet_table.py` trains every architecture of a `ConvNetSpace` with a fixed
protocol and several training seeds, then writes the table with `write_table`; `read_table` reads it
back and `load` turns it into a `TabularBenchmark` ("convnet-cifar10" in `nasjax.benchmarks.LOADERS`).

File format (`.npz`, written by `write_table` only), n = space.size() rows in `space.enumerate()` order:
  encodings     int32   (n, 1 + 2 max_depth)
  val_acc       float32 (n, seeds, epochs)  validation accuracy (fraction) after each epoch, NaN = failed
  test_acc      float32 (n, seeds)          test accuracy (fraction) after the last epoch, NaN = failed
  train_seconds float32 (n, seeds)          training wall time
  params        int64   (n,)                parameter count
  flops         float64 (n,)                forward FLOPs per 32x32 image
  failed        bool    (n, seeds)
  meta          JSON string: "format", "space" (ConvNetSpace fields), and whatever the builder records
                (protocol, training keys, data provenance, versions, build command and wall time)
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np

from nasjax.benchmarks.tabular import BenchmarkDataError, TabularBenchmark
from nasjax.io import atomic_write
from nasjax.spaces.convnet import ConvNetSpace

FORMAT = "nasjax-convnet-table/1"
DEFAULT_PATH = pathlib.Path(__file__).resolve().parent / "tables" / "convnet_cifar10.npz"
BUILD_COMMAND = "python experiments/build_convnet_table.py --data-dir ../shared/data"
ARRAYS = {  # name -> (dtype, shape after the row axis: "s" seeds, "e" epochs, "f" encoding length)
    "encodings": (np.int32, "f"), "val_acc": (np.float32, "se"), "test_acc": (np.float32, "s"),
    "train_seconds": (np.float32, "s"), "params": (np.int64, ""), "flops": (np.float64, ""),
    "failed": (np.bool_, "s"),
}


@dataclasses.dataclass(frozen=True, eq=False)
class ConvNetTable:
    """Every architecture of `space` trained with `seeds` seeds for `epochs` epochs (see the module
    docstring for the arrays' shapes); rows follow `space.enumerate()`."""

    space: ConvNetSpace
    encodings: np.ndarray
    val_acc: np.ndarray
    test_acc: np.ndarray
    train_seconds: np.ndarray
    params: np.ndarray
    flops: np.ndarray
    failed: np.ndarray
    meta: dict

    @property
    def seeds(self) -> int:
        return self.val_acc.shape[1]

    @property
    def epochs(self) -> int:
        return self.val_acc.shape[2]


def _space_fields(space: ConvNetSpace) -> dict:
    return {f.name: getattr(space, f.name) for f in dataclasses.fields(space)}


def _space_from(fields: dict) -> ConvNetSpace:
    return ConvNetSpace(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def _check(table: ConvNetTable, where: str) -> None:
    """Raise BenchmarkDataError unless the arrays have the documented dtypes and shapes and the rows
    are exactly `space.enumerate()`."""
    members = table.space.enumerate()
    n, f = members.shape
    if table.val_acc.ndim != 3 or 0 in table.val_acc.shape[1:]:
        raise BenchmarkDataError(f"{where}: val_acc has shape {table.val_acc.shape}, expected "
                                 "(n, seeds >= 1, epochs >= 1)")
    sizes = {"s": table.val_acc.shape[1], "e": table.val_acc.shape[2], "f": f}
    for name, (dtype, dims) in ARRAYS.items():
        value = getattr(table, name)
        expected = (n, *(sizes[d] for d in dims))
        if value.shape != expected or value.dtype != dtype:
            raise BenchmarkDataError(f"{where}: {name} is {value.dtype} {value.shape}, expected "
                                     f"{np.dtype(dtype)} {expected} for {table.space}")
    if not np.array_equal(table.encodings, members):
        bad = int(np.argmax(np.any(table.encodings != members, axis=1)))
        raise BenchmarkDataError(f"{where}: row {bad} holds {table.encodings[bad].tolist()}, expected "
                                 f"{members[bad].tolist()}: the table must cover the whole space in "
                                 "space.enumerate() order")


def write_table(path: str | os.PathLike, table: ConvNetTable) -> pathlib.Path:
    """Check `table` and write it (compressed) to `path`, atomically; returns the path."""
    path = pathlib.Path(path)
    _check(table, str(path))
    meta = {**table.meta, "format": FORMAT, "space": _space_fields(table.space)}
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: getattr(table, name) for name in ARRAYS}
    return atomic_write(path, lambda f: np.savez_compressed(
        f, meta=np.asarray(json.dumps(meta, sort_keys=True)), **arrays))


def read_table(path: str | os.PathLike | None = None) -> ConvNetTable:
    """The table at `path` (default: the one shipped in the package, `DEFAULT_PATH`)."""
    if path is not None and (not isinstance(path, (str, os.PathLike)) or not str(path).strip()):
        raise ValueError(f"path must name a table file, got {path!r}")
    path = pathlib.Path(DEFAULT_PATH if path is None else path)
    if path.is_dir():
        raise ValueError(f"path {path} is a folder; expected a ConvNet table file (.npz)")
    if not path.is_file():
        raise BenchmarkDataError(f"ConvNet table not found at {path}; build it with `{BUILD_COMMAND}` "
                                 f"(add --out {path} for another location)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in (*ARRAYS, "meta")}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError) as e:
        raise BenchmarkDataError(f"{path} is not a readable ConvNet table ({type(e).__name__}: {e}); "
                                 f"rebuild it with `{BUILD_COMMAND}`") from None
    if meta.get("format") != FORMAT:
        raise BenchmarkDataError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}; "
                                 f"rebuild it with `{BUILD_COMMAND}`")
    try:
        space = _space_from(meta["space"])
    except (KeyError, TypeError, ValueError) as e:
        raise BenchmarkDataError(f"{path}: bad space description {meta.get('space')!r} ({e})") from None
    table = ConvNetTable(space=space, meta=meta, **arrays)
    _check(table, str(path))
    return table


def load(path: str | os.PathLike | None = None, name: str = "convnet-cifar10") -> TabularBenchmark:
    """The table at `path` (default: the shipped one) as a benchmark: scores are final validation
    accuracies in percent, one column per training seed (NaN = failed); `test_table` holds the test
    accuracies and `curves` the validation accuracy after each epoch, both in percent."""
    table = read_table(path)
    val = np.where(table.failed[..., None], np.nan, 100.0 * table.val_acc)
    test = np.where(table.failed, np.nan, 100.0 * table.test_acc)
    protocol = table.meta.get("protocol", {})
    return TabularBenchmark(
        name=name, space=table.space, table=val[..., -1], test_table=test, curves=val,
        source=(f"{path or DEFAULT_PATH}: {len(table.encodings)} ConvNets x {table.seeds} seeds, "
                f"{table.epochs} epochs, batch {protocol.get('batch_size')}, lr {protocol.get('lr')}"))
