"""Successive halving over stand-alone training: every candidate trains the first rung's epochs, the
best continue (the same training run, not a restart) to the next rung's, and so on
(`nasjax.search.hyperband.halving_rungs` plans the rungs)."""

from __future__ import annotations

import numpy as np

from nasjax.data import Dataset
from nasjax.train import TrainConfig, select, train_population


def successive_halving(space, archs: np.ndarray, data: Dataset, config: TrainConfig, keys,
                       rungs: list[tuple[int, int]]) -> tuple[int, dict]:
    """Train `archs` (N, *enc), arch i from keys[i], rung by rung of `rungs` ((architectures, epochs
    trained so far) each; `config.epochs` spans the learning-rate schedule), continuing the best of
    each rung by validation accuracy (failed ones last).
    -> (index of the best at the last rung, {rung epochs: {arch index: validation accuracy}})."""
    alive, state, scores = np.arange(len(archs)), None, {}
    for r, (_, epochs) in enumerate(rungs):
        if state is None:
            results, state = train_population(space, archs, data, config, keys=keys, epochs=epochs)
        else:
            results, state = train_population(space, None, data, config, state=state, epochs=epochs)
        acc = np.array([np.nan if res.failed else res.final_val_acc for res in results])
        scores[epochs] = dict(zip(alive.tolist(), acc.tolist()))
        survivors = rungs[r + 1][0] if r + 1 < len(rungs) else 1
        keep = np.argsort(-np.where(np.isfinite(acc), acc, -np.inf), kind="stable")[:survivors]
        alive, state = alive[keep], select(state, keep)
    return int(alive[0]), scores
