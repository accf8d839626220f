"""The optimizers, all optax: image networks' SGD (`make_optimizer`), language models' SGD/ASGD
(`lm_optimizer`), and the pieces optax lacks: PyTorch's gradient clip, ASGD's iterate average and an
exponential moving average of the iterates (`iterate_ema`, evaluated with `evaluation_state`).

ASGD (PyTorch `torch.optim.ASGD` with t0=0, lambd=0, as DARTS uses it) is plain SGD whose state also
holds the average of the iterates since averaging was switched on (`start_averaging`); before that
the average is the weights themselves. Evaluation reads `average(opt_state)`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nasjax.train.protocol import TrainConfig


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """clip(global norm) -> + weight_decay * params -> SGD(momentum) with cosine lr over `config.epochs`;
    with `config.ema_decay`, its state also keeps the iterates' moving average (`iterate_ema`)."""
    schedule = optax.cosine_decay_schedule(config.lr, config.epochs * steps_per_epoch,
                                           alpha=config.final_lr / config.lr if config.lr else 0.0)
    parts = [optax.clip_by_global_norm(config.grad_clip)] if config.grad_clip else []
    parts += [optax.add_decayed_weights(config.weight_decay),
              optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov)]
    tx = optax.chain(*parts)
    return iterate_ema(tx, config.ema_decay) if config.ema_decay else tx


class EMAState(NamedTuple):
    """inner: the wrapped optimizer's state; ema: the moving average of the iterates."""

    inner: Any
    ema: Any


def iterate_ema(inner: optax.GradientTransformation, decay: float) -> optax.GradientTransformation:
    """`inner` whose state also keeps ema <- decay * ema + (1 - decay) * p_{t+1} over the iterates
    p_{t+1} = p_t + update_t, starting at the initial weights (the updates themselves are `inner`'s)."""

    def init(params):
        return EMAState(inner=inner.init(params), ema=params)

    def update(updates, state: EMAState, params=None):
        if params is None:
            raise ValueError("iterate_ema needs the parameters (the iterates it averages)")
        updates, inner_state = inner.update(updates, state.inner, params)
        new = optax.apply_updates(params, updates)
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema, new)
        return updates, EMAState(inner=inner_state, ema=ema)

    return optax.GradientTransformation(init, update)


def evaluation_state(config: TrainConfig, state):
    """The TrainState whose weights an evaluation reads: the iterates' moving average when
    `config.ema_decay` (the batch-norm statistics stay the trained network's), else `state`."""
    return state.replace(params=state.opt_state.ema) if config.ema_decay else state


def clip_by_global_norm_eps(max_norm: float, eps: float = 1e-6) -> optax.GradientTransformation:
    """PyTorch's `clip_grad_norm_`: g * min(1, max_norm / (|g| + eps)), |g| the global norm. It is
    `optax.clip_by_global_norm` (g * max_norm / |g| above the threshold) but for eps in the
    denominator; the language models keep it because DARTS' training (PyTorch) uses it."""

    def update(updates, state, params=None):
        del params
        scale = jnp.minimum(1.0, max_norm / (optax.tree.norm(updates) + eps))
        return jax.tree.map(lambda g: g * scale, updates), state

    return optax.GradientTransformation(optax.init_empty_state, update)


class ASGDState(NamedTuple):
    """inner: the wrapped optimizer's state; average: the iterate average (the weights until
    averaging starts); count int32: iterates averaged; averaging bool."""

    inner: Any
    average: Any
    count: jax.Array
    averaging: jax.Array


def asgd(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """`inner` whose state also keeps the mean of the iterates p_{t+1} = p_t + update_t produced since
    `start_averaging` (the updates themselves are `inner`'s)."""

    def init(params):
        return ASGDState(inner=inner.init(params), average=params, count=jnp.zeros((), jnp.int32),
                         averaging=jnp.zeros((), bool))

    def update(updates, state: ASGDState, params=None):
        if params is None:
            raise ValueError("asgd needs the parameters (the iterates it averages)")
        updates, inner_state = inner.update(updates, state.inner, params)
        new = optax.apply_updates(params, updates)
        count = state.count + state.averaging.astype(jnp.int32)
        mu = 1.0 / jnp.maximum(count, 1).astype(jnp.float32)
        average = jax.tree.map(lambda a, p: jnp.where(state.averaging, a + (p - a) * mu, p),
                               state.average, new)
        return updates, ASGDState(inner=inner_state, average=average, count=count, averaging=state.averaging)

    return optax.GradientTransformation(init, update)


def start_averaging(state: ASGDState, switch=True) -> ASGDState:
    """Averaging on from the next update where `switch` (bool, or bool array under vmap) holds; a
    no-op where it is already on."""
    return state._replace(averaging=state.averaging | jnp.asarray(switch))


def average(state: ASGDState):
    """The ASGD iterate average (the current weights before averaging starts)."""
    return state.average
