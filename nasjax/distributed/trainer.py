"""The trainer interface, its in-process implementation, and the layout a process trains with."""

from __future__ import annotations

import os
import socket
from typing import Callable

import jax
import numpy as np

from nasjax.data import Dataset
from nasjax.train import ArchResult, TrainConfig, train_population

Trainer = Callable[[np.ndarray, np.ndarray], list[tuple[ArchResult, dict]]]


class WorkersLostError(RuntimeError):
    """A task's workers died more often than its retry limit; the results already logged are kept."""


def local_trainer(space, data: Dataset, config: TrainConfig) -> Trainer:
    """train(archs (n, *enc), keys (n, 2)) -> [(ArchResult, {})]: `train_population` in this process."""

    def train(archs, keys):
        results, _ = train_population(space, np.asarray(archs), data, config, keys=list(keys))
        return [(r, {}) for r in results]

    return train


def worker_layout() -> dict:
    """This process's device and thread layout (on CPU, XLA's bits depend on it) and where it is."""
    devices = jax.local_devices()
    return {"host": socket.gethostname(), "pid": os.getpid(), "platform": devices[0].platform,
            "device_kind": devices[0].device_kind, "devices": len(devices),
            "cpus": len(os.sched_getaffinity(0)), "xla_flags": os.environ.get("XLA_FLAGS", "")}
