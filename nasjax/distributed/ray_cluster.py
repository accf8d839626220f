"""Train a round's architectures on a Ray cluster (this module imports Ray).

    with connect("local"):                        # or "auto", or the head's "host:port"
        train = ray_trainer(space, data, config)  # the data goes to Ray's object store once
        pairs = train(archs, keys)                # [(ArchResult, {"worker": layout}), ...] in order

A round is cut into tasks: on a cluster with GPUs, one share per GPU, which the population engine
trains together on that GPU; on CPUs only, one architecture per task, one task per CPU slot at a time
(the CPU engine trains architectures one after another anyway, and single tasks balance networks whose
costs differ tenfold). Architecture i trains from keys[i] alone, so neither the cut nor the worker
changes its bits, given the same device and thread layout: `connect` gives the workers this
process's XLA_FLAGS (and its host-memory policy, `nasjax.runtime`), and each result records its
worker's layout. A worker that dies mid-task (killed, node lost) has its task run again on another
(Ray retries system failures `max_retries` times; past that, `WorkersLostError`); finished results are
already with this process and are kept.
"""

from __future__ import annotations

import contextlib
import math
import os
import time

import numpy as np
import ray
from tqdm.auto import tqdm

from nasjax.data import Dataset
from nasjax.distributed.trainer import Trainer, WorkersLostError, worker_layout
from nasjax.runtime import CHILD_ENV
from nasjax.train import TrainConfig, train_population


@contextlib.contextmanager
def connect(address: str, env: dict[str, str] | None = None, **init_kwargs):
    """Connected to a Ray cluster for the duration of the context: "local" starts one on this machine
    (all its CPUs and GPUs; it stops on exit), "auto" joins the cluster this machine runs
    (`ray start`), "host:port" the one with that head. Our workers get this process's XLA_FLAGS (its
    device layout), its glibc malloc settings (set by `reuse_host_memory`) and `env`; init_kwargs go
    to `ray.init`.
    Raises ConnectionError naming the address when there is no cluster there or it does not start."""
    inherited = {name: os.environ[name] for name in CHILD_ENV if name in os.environ}
    env = {"XLA_FLAGS": os.environ.get("XLA_FLAGS", ""), **inherited, **(env or {})}
    try:
        ray.init(address=address, runtime_env={"env_vars": env}, **init_kwargs)
    except Exception as e:  # noqa: BLE001 (a local node that fails to start raises a bare Exception)
        raise ConnectionError(f"no Ray cluster at {address!r}: {e} (`ray start --head` starts one; "
                              "'local' starts one for this process only)") from None
    try:
        yield
    finally:
        ray.shutdown()


@ray.remote
def _train_share(space, data: Dataset, config: TrainConfig, archs: np.ndarray, keys: np.ndarray):
    """One task: `archs` trained together from their `keys` by this worker; (results, layout)."""
    t = time.perf_counter()
    results, _ = train_population(space, archs, data, config, keys=list(keys))
    return results, {**worker_layout(), "task_seconds": time.perf_counter() - t}


def ray_trainer(space, data: Dataset, config: TrainConfig, *, archs_per_task: int | None = None,
                max_retries: int = 3, progress: bool = True) -> Trainer:
    """train(archs (n, *enc), keys (n, 2)) -> [(ArchResult, {"worker": layout})] in the order of
    archs, trained by the connected cluster's workers.

    archs_per_task: architectures a task trains together (default: a round split evenly over the
    GPUs, else 1).
    max_retries: times a task whose worker died is run again; one more death raises
    WorkersLostError.
    The layout is `worker_layout()` plus task_seconds (training in the task) and result_seconds
    (from submitting the round to this result). The progress bar counts finished architectures.
    """
    if archs_per_task is not None and archs_per_task < 1:
        raise ValueError(f"archs_per_task must be >= 1, got {archs_per_task}")
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries}")
    data_ref = ray.put(data)

    def train(archs, keys):
        archs, keys = np.asarray(archs), np.asarray(keys)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        size = archs_per_task or (math.ceil(len(archs) / gpus) if gpus else 1)
        task = _train_share.options(num_cpus=1, num_gpus=1 if gpus else 0, max_retries=max_retries,
                                    retry_exceptions=False)
        starts = range(0, len(archs), size)
        t0 = time.perf_counter()
        pending = {task.remote(space, data_ref, config, archs[s:s + size], keys[s:s + size]): s
                   for s in starts}
        finished = {}
        with tqdm(total=len(archs), desc="on Ray", unit="arch", leave=False,
                  disable=not progress) as bar:
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                try:
                    results, layout = ray.get(ref)
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                        ray.exceptions.ObjectLostError) as e:
                    raise WorkersLostError(
                        f"a Ray task's worker died {max_retries + 1} times (the retry limit is "
                        f"{max_retries}: {type(e).__name__}); finished work is kept: run the same "
                        "command again to resume") from None
                layout["result_seconds"] = time.perf_counter() - t0
                finished[pending.pop(ref)] = [(r, {"worker": layout}) for r in results]
                bar.update(len(results))
        return [pair for s in starts for pair in finished[s]]

    return train
