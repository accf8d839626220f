"""Random search with weight sharing (RS-WS, `000_*`): train one supernet whose every training batch runs a
uniformly sampled architecture, then score candidates with the inherited weights.

The space's supernet (`nasjax.nn.supernet`) is a module that takes the architecture as data,
`module(x, enc, train=...)`, holding every candidate op's parameters and running only the ops `enc`
chooses (the DARTS network, `nasjax.nn.cells`). So one compiled program serves every path:
a training step draws enc = space.sample(fold_in(arch_key, step), 1)[0] and updates only the sampled
path's parameters by gradient. The others get zero gradients, but weight decay and momentum still
move them: PyTorch's SGD, which `000_*`'s code uses, skips parameters without a gradient, so this
differs from it there.

Scoring (`000_*`): a candidate's batch-norm statistics are recomputed on a few training batches with
its own path (the supernet's running statistics mix every path), then its validation accuracy is
measured with the inherited weights. The recomputed statistics are the mean over the batches of each
batch's statistics, whatever momentum the network's batch norm uses (see `recompute_batch_stats`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nasjax.data import Dataset, normalize
from nasjax.nn import ops
from nasjax.train import steps
from nasjax.train.executions import trainable
from nasjax.train.protocol import TrainConfig
from nasjax.train.optim import make_optimizer
from nasjax.train.state import TrainState, create_state


@functools.lru_cache(maxsize=None)
def supernet(space, config: TrainConfig, num_classes: int = 10):
    """(module, apply) of `space`'s weight-sharing network for `config` (auxiliary tower, drop-path)."""
    any_arch = np.asarray(space.sample(jax.random.key(0), 1))[0]  # the module is the same for every arch
    module, _ = trainable(space, any_arch, config, num_classes)
    return module, steps.module_apply(module)


def init_supernet(space, config: TrainConfig, key: jax.Array, steps_per_epoch: int,
                  num_classes: int = 10) -> TrainState:
    """The supernet's TrainState at step 0 (keys split as `train_population` splits an arch's)."""
    k_init, k_drop, k_rng = jax.random.split(key, 3)
    module, _ = supernet(space, config, num_classes)
    enc = space.sample(k_init, 1)[0]
    variables = jax.jit(lambda r, e: module.init(r, jnp.zeros((1, 32, 32, 3)), e, train=False))(
        {"params": k_init, "dropout": k_drop}, enc)
    return create_state(variables, make_optimizer(config, steps_per_epoch), k_rng)


@functools.lru_cache(maxsize=None)
def _epoch_fn(space, config: TrainConfig, num_classes: int, steps_per_epoch: int):
    _, apply = supernet(space, config, num_classes)
    tx = make_optimizer(config, steps_per_epoch)

    def epoch(state, arch_key, data_key, epoch, images, labels):
        def path(step):  # one uniformly sampled architecture per step, the same for a given step
            return (space.sample(jax.random.fold_in(arch_key, step), 1)[0],)

        return steps.train_epoch(apply, tx, config, state, path, data_key, epoch, images, labels)

    return jax.jit(epoch, compiler_options=ops.compiler_options())


def train_supernet(space, data: Dataset, config: TrainConfig, key: jax.Array, num_classes: int = 10,
                   progress=None) -> tuple[TrainState, np.ndarray]:
    """RS-WS training: `config.epochs` epochs over `data`'s training images, each batch through one
    architecture drawn uniformly. -> (state, losses float32 (epochs, steps)). Same key, same bits.
    A non-finite loss is not an error here: the caller sees it in the losses."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    n = len(data.train_labels)
    if n < config.batch_size:
        raise ValueError(f"{n} training images < batch_size {config.batch_size}")
    spe = n // config.batch_size
    k_state, k_arch, k_data = jax.random.split(key, 3)
    state = init_supernet(space, config, k_state, spe, num_classes)
    images = jnp.asarray(normalize(data.train_images))
    labels = jnp.asarray(data.train_labels, jnp.int32)
    fn = _epoch_fn(space, config, num_classes, spe)
    losses = []
    for epoch in range(config.epochs):
        state, loss = fn(state, k_arch, k_data, epoch, images, labels)
        losses.append(np.asarray(loss))
        if progress is not None:
            progress(epoch, float(np.mean(losses[-1])))
    return state, np.stack(losses)


def recompute_batch_stats(apply, params, batch_stats, extra, batches: jax.Array):
    """Batch-norm statistics of the path `extra` selects: the mean over `batches` (K, B, H, W, 3) of each
    batch's statistics; statistics the path does not touch are kept.

    Read off the network's own update s' = (1 - m) s + m b, whatever its momentum m: from s = 0 it
    returns m b, from s = 1 it returns 1 - m + m b, so m and b follow exactly (m = 0: untouched)."""
    zeros = jax.tree.map(jnp.zeros_like, batch_stats)
    ones = jax.tree.map(jnp.ones_like, batch_stats)
    no_key = jax.random.key_data(jax.random.key(0))  # drop-path is off (rate 0): the key is never read

    def batch_stat(x):
        _, _, from_zeros = apply(params, zeros, extra, x, True, no_key, 0.0)
        _, _, from_ones = apply(params, ones, extra, x, True, no_key, 0.0)
        return from_zeros, from_ones

    from_zeros, from_ones = jax.lax.map(batch_stat, batches)

    def combine(old, s0, s1):
        m = 1.0 - (s1 - s0)  # (K, ...)
        touched = m > 1e-3
        return jnp.where(touched[0], jnp.mean(s0 / jnp.where(touched, m, 1.0), axis=0), old)

    return jax.tree.map(combine, batch_stats, from_zeros, from_ones)


@functools.lru_cache(maxsize=None)
def _score_fn(space, config: TrainConfig, num_classes: int):
    _, apply = supernet(space, config, num_classes)

    def score(state, candidates, bn_batches, images, labels):
        def one(enc):
            extra = (enc,)
            stats = recompute_batch_stats(apply, state.params, state.batch_stats, extra, bn_batches)
            return steps.accuracy(apply, state.replace(batch_stats=stats), extra, images, labels,
                                  config.eval_batch_size)

        return jax.lax.map(one, candidates)

    return jax.jit(score, compiler_options=ops.compiler_options())


def candidate_scorer(space, data: Dataset, config: TrainConfig, bn_batches: int = 2, num_classes: int = 10):
    """score(state, candidates (n, *encoding)) -> validation accuracy float (n,) of each candidate with
    the supernet `state`'s weights, after recomputing its batch-norm statistics on the first
    `bn_batches` x `config.batch_size` training images (not augmented). The images are normalized
    and put on the device once, here, for every call of `score`."""
    need = bn_batches * config.batch_size
    if len(data.train_labels) < need:
        raise ValueError(f"{bn_batches} batch-norm batches need {need} training images, have "
                         f"{len(data.train_labels)}")
    bn = jnp.asarray(normalize(data.train_images[:need])).reshape(bn_batches, config.batch_size,
                                                                  *data.train_images.shape[1:])
    images, labels = jnp.asarray(normalize(data.val_images)), jnp.asarray(data.val_labels, jnp.int32)
    fn = _score_fn(space, config, num_classes)

    def score(state: TrainState, candidates) -> np.ndarray:
        candidates = np.stack([space.checked(c) for c in np.asarray(candidates)])
        return np.asarray(fn(state, jnp.asarray(candidates), bn, images, labels), np.float64)

    return score


def score_candidates(space, state: TrainState, candidates, data: Dataset, config: TrainConfig,
                     bn_batches: int = 2, num_classes: int = 10) -> np.ndarray:
    """`candidate_scorer(space, data, config, bn_batches, num_classes)(state, candidates)`, for one call."""
    return candidate_scorer(space, data, config, bn_batches, num_classes)(state, candidates)
