"""Jittable training and evaluation of one network, a whole epoch per call (`lax.scan` over batches).

A network is given as `apply(params, batch_stats, extra, x, train, rng, drop_path_rate=None) -> (logits,
aux_logits | None, batch_stats)`; `extra` is a tuple of runtime arrays (the masks of a masked network, or
empty), so one compiled program can serve every architecture that shares `apply`. `drop_path_rate` is a
scalar (traced: the ramp needs no recompilation), given only when the config uses drop-path.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from nasjax.data import augment_batch
from nasjax.train.protocol import TrainConfig
from nasjax.train.state import TrainState

Apply = Callable


def module_apply(module) -> Apply:
    """`apply` of a Flax module called as module(x, *extra, train=...[, drop_path_rate=...]); a tuple
    output is (logits, aux)."""

    def apply(params, batch_stats, extra, x, train, rng, drop_path_rate=None):
        variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
        if train:
            rate = {} if drop_path_rate is None else {"drop_path_rate": drop_path_rate}
            out, updates = module.apply(variables, x, *extra, train=True, rngs={"dropout": rng},
                                        mutable=["batch_stats"], **rate)
            batch_stats = updates.get("batch_stats", batch_stats)
        else:
            out = module.apply(variables, x, *extra, train=False)
        logits, aux = out if isinstance(out, tuple) else (out, None)
        return logits, aux, batch_stats

    return apply


def cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
    """Mean softmax cross-entropy of logits (B, K) against int labels (B,), with label smoothing."""
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing) if smoothing \
        else jax.nn.one_hot(labels, logits.shape[-1])
    return jnp.mean(optax.softmax_cross_entropy(logits, targets))


def train_step(apply: Apply, tx: optax.GradientTransformation, config: TrainConfig,
               state: TrainState, extra, x: jax.Array, y: jax.Array,
               drop_path_rate=None) -> tuple[TrainState, jax.Array]:
    """One SGD step on a normalized batch x (B, H, W, 3), labels (B,): augment, forward, update -> loss.

    drop_path_rate: this step's drop-path probability (`TrainConfig.drop_path_rate`), None without."""
    rng, k_aug, k_drop = jax.random.split(state.rng, 3)
    x = augment_batch(k_aug, x, crop_padding=config.crop_padding, flip=config.flip, cutout=config.cutout,
                      autoaugment=config.autoaugment)

    def loss_fn(params):
        logits, aux, batch_stats = apply(params, state.batch_stats, extra, x, True, k_drop, drop_path_rate)
        loss = cross_entropy(logits, y, config.label_smoothing)
        if aux is not None and config.auxiliary_weight:
            loss = loss + config.auxiliary_weight * cross_entropy(aux, y, config.label_smoothing)
        return loss, batch_stats

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return TrainState(params=optax.apply_updates(state.params, updates), batch_stats=batch_stats,
                      opt_state=opt_state, step=state.step + 1, rng=rng), loss


def epoch_order(data_key: jax.Array, epoch, num_examples: int, batch_size: int) -> jax.Array:
    """int32 (steps, batch_size): this epoch's shuffled batches (the incomplete last batch is dropped)."""
    steps = num_examples // batch_size
    perm = jax.random.permutation(jax.random.fold_in(data_key, epoch), num_examples)
    return perm[:steps * batch_size].reshape(steps, batch_size)


def train_epoch(apply: Apply, tx, config: TrainConfig, state: TrainState, extra, data_key, epoch,
                images: jax.Array, labels: jax.Array) -> tuple[TrainState, jax.Array]:
    """One epoch over images (N, H, W, 3) normalized, labels (N,) -> (state, losses (steps,)).

    extra: the network's runtime arrays, or a function of the step number (int32 scalar) returning
    them (a weight-sharing supernet draws its architecture per step). With drop-path, every step of
    epoch `epoch` uses `config.drop_path_rate(epoch)` (DARTS's ramp)."""
    order = epoch_order(data_key, epoch, images.shape[0], config.batch_size)
    rate = config.drop_path_rate(epoch) if config.drop_path else None

    def body(st, idx):
        step_extra = extra(st.step) if callable(extra) else extra
        return train_step(apply, tx, config, st, step_extra, images[idx], labels[idx], rate)

    return jax.lax.scan(body, state, order)


def accuracy(apply: Apply, state: TrainState, extra, images: jax.Array, labels: jax.Array,
             batch_size: int) -> jax.Array:
    """Top-1 accuracy (scalar) over images (N, H, W, 3) normalized, in eval mode, batch by batch."""
    n = images.shape[0]
    nb = -(-n // batch_size)
    pad = nb * batch_size - n
    xs = jnp.pad(images, ((0, pad), (0, 0), (0, 0), (0, 0))).reshape(nb, batch_size, *images.shape[1:])
    ys = jnp.pad(labels, (0, pad), constant_values=-1).reshape(nb, batch_size)  # -1 never matches

    def body(correct, xy):
        logits, _, _ = apply(state.params, state.batch_stats, extra, xy[0], False, None)
        return correct + jnp.sum(jnp.argmax(logits, -1) == xy[1]), None

    correct, _ = jax.lax.scan(body, jnp.zeros((), jnp.int32), (xs, ys))
    return correct / n
