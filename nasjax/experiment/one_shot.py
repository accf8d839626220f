"""One-shot evaluation (`002_*` §4.3's one-shot LaNAS; `000_*`'s weight-sharing scores): the space's
supernet is trained once per run, and every asked cell is scored by its validation accuracy with the
inherited weights, batch-norm statistics recomputed on its own path (`nasjax.benchmarks.supernet`).

    state = trained_supernet(space, searching, config, key, workdir, split_seed=seed, val_images=n)
    objective = supernet_objective(space, state, searching, config, seed)   # for nasjax.search.run

The trained supernet is written to the work directory as a supernet checkpoint before the search
starts, so a resumed run scores with the same weights and any strategy can search the same supernet
later (`nasjax.benchmarks.supernet.load(workdir)`). A cell asked again is answered from the
benchmark's cache; scoring is deterministic, so a cached score, a re-scored one and one scored after a
resume are the same bits.
"""

from __future__ import annotations

import pathlib
import sys

import jax
import numpy as np

from nasjax.benchmarks import supernet
from nasjax.data import Dataset
from nasjax.experiment.cli import UsageError
from nasjax.train import TrainConfig
from nasjax.train.state import TrainState
from nasjax.train.weight_sharing import train_supernet


def trained_supernet(space, data: Dataset, config: TrainConfig, key: jax.Array, folder: pathlib.Path, *,
                     split_seed: int, val_images: int) -> TrainState:
    """The supernet trained `config.epochs` epochs on `data`'s training images (one uniformly sampled
    path per batch), read from the checkpoint in `folder` when an earlier invocation wrote it, else
    trained and saved there (`supernet.save`; `data` is the CIFAR-10 split `split_seed` cut to its first
    `val_images` validation images). UsageError if its loss is not finite (nothing is then saved)."""
    weights = pathlib.Path(folder) / supernet.WEIGHTS_FILE
    if weights.exists():
        state = supernet.read_state(weights, space, config, len(data.train_labels))
    else:
        def progress(epoch, loss):
            print(f"supernet epoch {epoch + 1}/{config.epochs}: mean training loss {loss:.4f}",
                  file=sys.stderr, flush=True)

        state, losses = train_supernet(space, data, config, key, progress=progress)
        bad = ~np.isfinite(losses)
        if bad.any():
            epoch = int(np.argmax(bad.any(axis=1)))
            raise UsageError(f"the supernet's training loss is not finite from epoch {epoch + 1} on (try a "
                             f"lower --lr); nothing was saved to {folder}")
    if not (pathlib.Path(folder) / supernet.METADATA_FILE).exists():  # also for a run saved before it existed
        supernet.save(folder, space, config, state, data, split_seed=split_seed, val_images=val_images)
    return state


def supernet_objective(space, state: TrainState, data: Dataset, config: TrainConfig, seed: int,
                       bn_batches: int = 2):
    """objective(archs (n, *enc), key) -> (validation accuracies float32 (n,), one record per
    architecture) for nasjax.search.run, scored with the supernet `state` (the key is not used: the
    scores are deterministic). `objective.scores(archs)` is the same lookup without records."""
    bench = supernet.SupernetBenchmark(space, state, supernet.scoring_data(data, 0, bn_batches, config.batch_size),
                                       config, bn_batches)

    def objective(archs, key):
        records = [{"seed": seed, "description": space.describe(a), "evaluation": "supernet"}
                   for a in np.asarray(archs)]
        return bench.scores(archs), records

    objective.scores = bench.scores
    return objective
