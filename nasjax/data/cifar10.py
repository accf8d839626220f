"""CIFAR-10 from a local original-format `cifar-10-batches-py` folder or from tensorflow-datasets.

Images are kept as uint8 NHWC numpy arrays (the caller decides when to move them to the device);
`normalize` turns them into float32 with the usual per-channel CIFAR-10 mean/std.

The training set is split into train / validation as in the seeds' search phase (`001_*` A.1: search
trains on one part of the training set and validates on the other; DARTS uses 50/50), stratified by class
and deterministic given `split_seed`.
"""

from __future__ import annotations

import os
import pathlib
import pickle
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

ENV_VAR = "NASJAX_DATA_DIR"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

_HOW_TO_FIX = (f"Point --data-dir or the {ENV_VAR} environment variable at a folder holding the original "
               f"`{FOLDER}` folder (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz), or use "
               "source='tfds' on a machine with internet and TensorFlow.")


class DataError(ValueError):
    """Data is missing, unreadable or malformed; the message names the file and says how to fix it."""


class Dataset(NamedTuple):
    """A labelled image dataset as numpy arrays.

    *_images: uint8 (N, 32, 32, 3) NHWC; *_labels: int32 (N,) in [0, 10).
    `source` is "local:<folder>" or "tfds".
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    name: str
    source: str

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES

    def take(self, train: int = 0, val: int = 0, test: int = 0) -> "Dataset":
        """The first `train` / `val` / `test` images of each part (0: all of that part).

        Raises ValueError naming the part when it holds fewer images than asked for.
        """
        parts = {}
        for part, count in (("train", train), ("val", val), ("test", test)):
            images, labels = getattr(self, f"{part}_images"), getattr(self, f"{part}_labels")
            if count < 0 or count > len(labels):
                raise ValueError(f"asked for {count} {part} images; {self.name} ({self.source}) has "
                                 f"{len(labels)}")
            if count:
                parts.update({f"{part}_images": images[:count], f"{part}_labels": labels[:count]})
        return self._replace(**parts)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> pathlib.Path | None:
    """The data folder: `data_dir` if given, else $NASJAX_DATA_DIR, else None (no local data).

    Raises DataError if the chosen folder does not exist.
    """
    origin = "data_dir"
    if data_dir is None:
        data_dir, origin = os.environ.get(ENV_VAR) or None, ENV_VAR
    if data_dir is None:
        return None
    path = pathlib.Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataError(f"data folder {path} (from {origin}) does not exist. {_HOW_TO_FIX}")
    return path


def _cifar_folder(root: pathlib.Path) -> pathlib.Path:
    """`root` itself if it is the `cifar-10-batches-py` folder, else `root/cifar-10-batches-py`."""
    folder = root / FOLDER if (root / FOLDER).is_dir() else root
    missing = [f for f in (*TRAIN_FILES, TEST_FILE) if not (folder / f).is_file()]
    if missing:
        raise DataError(f"CIFAR-10 batch file(s) {', '.join(missing)} missing in {folder}. {_HOW_TO_FIX}")
    return folder


def _read_batch(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """One original pickle -> (uint8 (N, 32, 32, 3), int32 (N,)); DataError naming `path` if malformed."""
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data, labels = batch[b"data"], batch[b"labels"]
    except Exception as e:  # any unpickling failure means the file is corrupt or not a CIFAR batch
        raise DataError(f"{path} is not a readable CIFAR-10 batch ({type(e).__name__}: {e}); the file is "
                        f"truncated or corrupt: replace it with the original. {_HOW_TO_FIX}") from e
    data, labels = np.asarray(data), np.asarray(labels)
    n = data.shape[0] if data.ndim else 0
    if data.dtype != np.uint8 or data.shape != (n, int(np.prod(IMAGE_SHAPE))) or labels.shape != (n,):
        raise DataError(f"{path}: expected uint8 data (N, 3072) and N labels, got data {data.dtype} "
                        f"{data.shape} and labels {labels.shape}; replace it with the original. "
                        f"{_HOW_TO_FIX}")
    if n == 0:
        raise DataError(f"{path} holds no images; replace it with the original. {_HOW_TO_FIX}")
    if not (np.issubdtype(labels.dtype, np.integer)
                  and labels.min() >= 0 and labels.max() < NUM_CLASSES):
        raise DataError(f"{path}: labels must be integers in 0..{NUM_CLASSES - 1}; replace it with the "
                        f"original. {_HOW_TO_FIX}")
    # Rows hold 1024 red, 1024 green, 1024 blue values of a row-major 32x32 image.
    images = data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int32)


def _load_local(root: pathlib.Path):
    folder = _cifar_folder(root)
    parts = [_read_batch(folder / f) for f in TRAIN_FILES]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return train, _read_batch(folder / TEST_FILE), f"local:{folder}"


def _load_tfds():
    try:
        import tensorflow_datasets as tfds  # lazy: heavy, and only this path needs TensorFlow

        train, test = tfds.as_numpy(tfds.load("cifar10", split=["train", "test"], batch_size=-1,
                                              as_supervised=True))
    except Exception as e:  # no TF / no internet / download failure all mean the same to the user
        raise DataError(f"loading CIFAR-10 through tensorflow-datasets failed ({type(e).__name__}: {e}); "
                        "it needs TensorFlow and internet (or a prepared tfds cache). Offline, set "
                        f"--data-dir or {ENV_VAR} to a folder holding `{FOLDER}`.") from e
    (x, y), (x_test, y_test) = train, test
    return ((np.asarray(x, np.uint8), np.asarray(y, np.int32)),
            (np.asarray(x_test, np.uint8), np.asarray(y_test, np.int32)), "tfds")


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val), each sorted, with round(fraction * n_c) of every class c in val.

    labels: int (N,). Deterministic given `seed`; the two index sets are disjoint and cover range(N).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    val = [rng.permutation(np.flatnonzero(labels == c))[:round(fraction * np.sum(labels == c))]
           for c in range(NUM_CLASSES)]
    val = np.sort(np.concatenate(val)).astype(np.int64)
    return np.setdiff1d(np.arange(len(labels)), val), val


def load_cifar10(data_dir: str | os.PathLike | None = None, validation_fraction: float = 0.5,
                 split_seed: int = 0, source: str = "auto") -> Dataset:
    """CIFAR-10 with a stratified train / validation split of the training set.

    data_dir: a folder containing `cifar-10-batches-py/`, or that folder itself; None -> $NASJAX_DATA_DIR.
    source: "local" (the folder), "tfds" (tensorflow-datasets, needs internet/TF), or "auto" (local if a
      folder is given or set in the environment, else tfds).
    validation_fraction: share of each class moved from train to val (0 -> empty val); split_seed picks it.
    Raises DataError (with how to fix it) when data is missing or corrupt.
    """
    if source not in ("auto", "local", "tfds"):
        raise ValueError(f"source must be 'auto', 'local' or 'tfds', got {source!r}")
    root = None if source == "tfds" else resolve_data_dir(data_dir)
    if source == "local" and root is None:
        raise DataError(f"source='local' but no data folder was given and {ENV_VAR} is not set. "
                        f"{_HOW_TO_FIX}")
    (x, y), (x_test, y_test), origin = _load_tfds() if root is None else _load_local(root)
    tr, va = stratified_split(y, validation_fraction, split_seed)
    return Dataset(x[tr], y[tr], x[va], y[va], x_test, y_test, name="cifar10", source=origin)


def normalize(images, mean=CIFAR10_MEAN, std=CIFAR10_STD) -> jnp.ndarray:
    """uint8-range images (..., H, W, 3) -> float32 (..., H, W, 3), (x / 255 - mean) / std per channel."""
    x = jnp.asarray(images, jnp.float32) / 255.0
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
