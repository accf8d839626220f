"""One-shot evaluation (`002_*` §4.3's one-shot LaNAS; `000_*`'s weight-sharing scores): the space's
supernet is trained once per run, and every asked cell is scored by its validation accuracy with the
inherited weights, batch-norm statistics recomputed on its own path (`nasjax.train.weight_sharing`).

    state = trained_supernet(space, searching, config, key, workdir / SUPERNET_FILE)
    objective = supernet_objective(space, state, searching, config, seed)   # for nasjax.search.run

The trained supernet is written to the work directory before the search starts, so a resumed run
scores with the same weights; a cell asked again is answered from a cache, not scored again. Scoring
is deterministic (one compiled program per space, one cell per call), so a cached score, a re-scored
one and one scored after a resume are the same bits.
"""

from __future__ import annotations

import pathlib
import sys

import flax.serialization
import jax
import numpy as np

from nasjax.data import Dataset
from nasjax.experiment.cli import UsageError
from nasjax.io import atomic_write_bytes
from nasjax.train import TrainConfig
from nasjax.train.state import TrainState
from nasjax.train.weight_sharing import candidate_scorer, init_supernet, train_supernet

SUPERNET_FILE = "supernet.msgpack"


def trained_supernet(space, data: Dataset, config: TrainConfig, key: jax.Array,
                     path: pathlib.Path) -> TrainState:
    """The supernet trained `config.epochs` epochs on `data`'s training images (one uniformly sampled
    path per batch), read from `path` when an earlier invocation wrote it, else trained and written
    there. UsageError if its loss is not finite (the file is then not written)."""
    if path.exists():  # the structure to restore into: a fresh state (its init program is a small one)
        template = init_supernet(space, config, jax.random.key_data(jax.random.key(0)),
                                 len(data.train_labels) // config.batch_size)
        return flax.serialization.from_bytes(template, path.read_bytes())

    def progress(epoch, loss):
        print(f"supernet epoch {epoch + 1}/{config.epochs}: mean training loss {loss:.4f}", file=sys.stderr,
              flush=True)

    state, losses = train_supernet(space, data, config, key, progress=progress)
    bad = ~np.isfinite(losses)
    if bad.any():
        epoch = int(np.argmax(bad.any(axis=1)))
        raise UsageError(f"the supernet's training loss is not finite from epoch {epoch + 1} on (try a "
                         f"lower --lr); nothing was saved to {path}")
    atomic_write_bytes(path, flax.serialization.to_bytes(state))
    return state


def supernet_objective(space, state: TrainState, data: Dataset, config: TrainConfig, seed: int,
                       bn_batches: int = 2):
    """objective(archs (n, *enc), key) -> (validation accuracies float32 (n,), one record per
    architecture) for nasjax.search.run, scored with the supernet `state` (the key is not used: the
    scores are deterministic). `objective.scores(archs)` is the same lookup without records."""
    cache: dict[bytes, float] = {}
    score = candidate_scorer(space, data, config, bn_batches)

    def scores(archs) -> np.ndarray:
        archs = np.asarray(archs, np.int32)
        for arch in archs:
            if arch.tobytes() not in cache:
                cache[arch.tobytes()] = float(score(state, arch[None])[0])
        return np.array([cache[a.tobytes()] for a in archs], np.float32)

    def objective(archs, key):
        del key
        records = [{"seed": seed, "description": space.describe(a), "evaluation": "supernet"}
                   for a in np.asarray(archs)]
        return scores(archs), records

    objective.scores = scores
    return objective
