"""Language-model training on a token stream (DARTS rnn/train.py protocol), jit-compiled and NaN-safe.

One training step on a window (bptt, B) of inputs and next-token targets: cross-entropy plus DARTS'
temporal activation regularisation `beta * mean((o_{t+1} - o_t)^2)` on the cell outputs, gradients
clipped to global norm `clip`, then SGD with weight decay (PyTorch's: `g + wd * p` after clipping).
The hidden state is carried from window to window (truncated BPTT). ASGD is SGD plus an average of the
iterates from the moment it is switched on (PyTorch ASGD with t0=0, lambd=0, as DARTS uses it);
evaluation always uses `eval_params(state)` (the average once averaging, else the weights). `fit`
switches it on DARTS' non-monotone rule: after an epoch whose validation loss is worse than the best
of all but the last `nonmono` epochs. DARTS draws a random window length per step; windows here have
the fixed length `bptt` (static shapes: one compiled program).

A step whose loss or gradient is not finite leaves the weights unchanged and sets `failed`; a failed
model stays failed (its perplexity is reported as NaN): a diverging cell is a recorded failure.

The cell is either fixed in the module (`nasjax.nn.build`) or data (`nasjax.nn.supernet`, `cells` given
per window, leading axis W): then one program trains any cell of the configuration, a population of
cells is `jax.vmap` over (state, cells), and a different cell per window is weight-sharing training.
"""

from __future__ import annotations

import dataclasses
import functools
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from tqdm.auto import tqdm

from nasjax.data.ptb import batchify, bptt_batches
from nasjax.nn.api import arch_data
from nasjax.nn.rnn import CellArrays, RNNLanguageModel
from nasjax.train import optim
from nasjax.train.state import TrainState, create_state


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Optimisation (DARTS rnn/train.py defaults; its search phase uses batch 256, wd 5e-7). Dropout
    rates and sizes belong to the model (`RNNLanguageModel`)."""

    batch_size: int = 64
    bptt: int = 35
    eval_batch_size: int = 10
    lr: float = 20.0
    clip: float = 0.25
    weight_decay: float = 8e-7
    beta: float = 1e-3
    nonmono: int = 5

    def __post_init__(self):
        for name in ("batch_size", "bptt", "eval_batch_size", "nonmono"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.clip <= 0 or self.weight_decay < 0 or self.beta < 0:
            raise ValueError(f"need lr > 0, clip > 0, weight_decay >= 0, beta >= 0; got {self}")


def optimizer(config: LMConfig) -> optax.GradientTransformation:
    """SGD with PyTorch's weight decay after PyTorch's gradient clip, under ASGD's iterate average:
    p <- p - lr (clip(g) + wd p)."""
    return optim.asgd(optax.chain(optim.clip_by_global_norm_eps(config.clip),
                                  optax.add_decayed_weights(config.weight_decay), optax.sgd(config.lr)))


@struct.dataclass
class LMState:
    """train: the weights, the `optimizer(config)` state (ASGD) and the key (`TrainState.rng`); hidden
    float32 (B, H) carried between windows; failed bool."""

    train: TrainState
    hidden: jax.Array
    failed: jax.Array


def init_state(model: RNNLanguageModel, config: LMConfig, key: jax.Array) -> LMState:
    """Fresh weights (DARTS' uniform initialisation) and a zero hidden state (B, H)."""
    k_init, k_train = jax.random.split(key)
    tokens = jnp.zeros((1, 1), jnp.int32)
    hidden = jnp.zeros((1, model.hidden_size))
    cell = None if model.nodes is not None else _example_cell(model.num_nodes)
    variables = model.init(k_init, tokens, hidden, cell)
    return LMState(train=create_state(variables, optimizer(config), k_train),
                   hidden=jnp.zeros((config.batch_size, model.hidden_size)), failed=jnp.zeros((), bool))


def _example_cell(num_nodes: int) -> CellArrays:
    """Any cell of `num_nodes` nodes: parameter shapes do not depend on it."""
    inputs = jax.nn.one_hot(jnp.arange(num_nodes), num_nodes + 1)
    return CellArrays(inputs, jnp.zeros((num_nodes,), jnp.int32), jnp.full((num_nodes,), 1.0 / num_nodes))


def eval_params(state: LMState):
    """The weights to evaluate: the ASGD average (equal to the weights before averaging starts)."""
    return optim.average(state.train.opt_state)


def start_averaging(state: LMState, switch=True) -> LMState:
    """Switch SGD to ASGD from the next step on where `switch` holds (a no-op if already averaging)."""
    opt_state = optim.start_averaging(state.train.opt_state, switch)
    return state.replace(train=state.train.replace(opt_state=opt_state))


def _loss(model, config, params, hidden, inputs, targets, cell, key):
    logits, hidden, outputs = model.apply({"params": params}, inputs, hidden, cell, train=True,
                                          rngs={"dropout": key})
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
    tar = jnp.mean(jnp.square(outputs[1:] - outputs[:-1])) if config.beta else 0.0
    return nll + config.beta * tar, (nll, hidden)


def train_step(model: RNNLanguageModel, config: LMConfig, state: LMState, inputs: jax.Array,
               targets: jax.Array, cell: CellArrays | None = None) -> tuple[LMState, jax.Array]:
    """One window: inputs / targets int32 (bptt, B) -> (state, cross-entropy float32 scalar)."""
    train = state.train
    key, k_drop = jax.random.split(train.rng)
    grad_fn = jax.value_and_grad(functools.partial(_loss, model, config), has_aux=True)
    (_, (nll, hidden)), grads = grad_fn(train.params, jax.lax.stop_gradient(state.hidden), inputs, targets,
                                        cell, k_drop)
    updates, opt_state = optimizer(config).update(grads, train.opt_state, train.params)
    params = optax.apply_updates(train.params, updates)
    # (A gradient is finite exactly when its clipped value is: a non-finite entry makes the norm so.)
    finite = jnp.isfinite(nll) & jnp.all(jnp.asarray(
        [jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]))
    ok = finite & ~state.failed
    keep = functools.partial(jax.tree_util.tree_map, lambda new, old: jnp.where(ok, new, old))
    train = train.replace(params=keep(params, train.params), opt_state=keep(opt_state, train.opt_state),
                          step=train.step + 1, rng=key)
    return LMState(train=train, hidden=jnp.where(ok, hidden, state.hidden), failed=~ok), nll


def train_windows(model: RNNLanguageModel, config: LMConfig, state: LMState, inputs: jax.Array,
                  targets: jax.Array, cells: CellArrays | None = None) -> tuple[LMState, jax.Array]:
    """`train_step` over consecutive windows inputs / targets int32 (W, bptt, B), with `cells` (leading
    axis W) one per window when the cell is data: (state, cross-entropy float32 (W,))."""
    def body(state, xs):
        x, y, cell = xs
        return train_step(model, config, state, x, y, cell)

    return jax.lax.scan(body, state, (inputs, targets, cells))


def evaluate(model: RNNLanguageModel, params, inputs: jax.Array, targets: jax.Array,
             cell: CellArrays | None = None) -> jax.Array:
    """Mean cross-entropy (nats per token) over windows (W, bptt, B), hidden state carried from zero."""
    def body(hidden, xy):
        logits, hidden, _ = model.apply({"params": params}, xy[0], hidden, cell)
        return hidden, optax.softmax_cross_entropy_with_integer_labels(logits, xy[1]).mean()

    hidden = jnp.zeros((inputs.shape[2], model.hidden_size))
    return jnp.mean(jax.lax.scan(body, hidden, (inputs, targets))[1])


def windows(stream: np.ndarray, batch_size: int, bptt: int, tokens: int = 0) -> tuple[jax.Array, jax.Array]:
    """A token stream (its first `tokens`; 0: all) as windows for training or evaluation:
    inputs / targets int32 (W, bptt, batch_size)."""
    stream = stream[:tokens] if tokens else stream
    x, y = bptt_batches(batchify(stream, batch_size), bptt)
    return jnp.asarray(x), jnp.asarray(y)


def perplexity(loss) -> np.ndarray:
    """exp(cross-entropy); NaN where the loss is not finite."""
    loss = np.asarray(loss, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(np.isfinite(loss), np.exp(loss), np.nan)


@dataclasses.dataclass
class FitResult:
    """state after the last epoch; val_ppl float64 (epochs, *population) per epoch (NaN: failed);
    best_val_ppl (*population,); failed bool (*population,); tokens trained on (per model)."""

    state: LMState
    val_ppl: np.ndarray
    best_val_ppl: np.ndarray
    failed: np.ndarray
    tokens: int


def fit(model: RNNLanguageModel, config: LMConfig, key: jax.Array, train: tuple, valid: tuple, epochs: int,
        cells: CellArrays | None = None, population: int | None = None, progress: bool = False) -> FitResult:
    """Train for `epochs` passes over `train` (windows from `windows`), validating after each and
    switching to ASGD on DARTS' non-monotone rule. With `population` P, `cells` holds one cell per
    model (leading axis P) and the P models are trained together in one vmapped program from keys
    split from `key`; otherwise `cells` is None (fixed cell) or one cell."""
    x, y = train
    n_windows = x.shape[0]

    def expand(cell):  # one cell per window
        return None if cell is None else jax.tree_util.tree_map(
            lambda a: jnp.broadcast_to(a, (n_windows,) + a.shape), cell)

    # The data are arguments, not constants folded into the programs.
    def step(s, c, x, y):
        return train_windows(model, config, s, x, y, expand(c))

    def score(s, c, vx, vy):
        return evaluate(model, eval_params(s), vx, vy, c)

    init = functools.partial(init_state, model, config)
    if population is None:
        init, step, score = jax.jit(init), jax.jit(step), jax.jit(score)
        state = init(key)
    else:
        init, step = jax.jit(jax.vmap(init)), jax.jit(jax.vmap(step, in_axes=(0, 0, None, None)))
        score = jax.jit(jax.vmap(score, in_axes=(0, 0, None, None)))
        state = init(jax.random.split(key, population))
    history = []
    for _ in tqdm(range(epochs), disable=not progress, desc="epochs"):
        state, _ = step(state, cells, x, y)
        loss = np.where(np.asarray(state.failed), np.nan, np.asarray(score(state, cells, *valid)))
        history.append(loss)
        if len(history) > config.nonmono:
            earlier = np.stack(history[:-config.nonmono])
            best_before = np.min(np.where(np.isnan(earlier), np.inf, earlier), axis=0)
            switch = loss > best_before
            state = start_averaging(state, switch)
    val_ppl = perplexity(np.stack(history))
    failed = np.asarray(state.failed)
    best = np.where(failed, np.nan, np.nanmin(np.where(np.isnan(val_ppl), np.inf, val_ppl), axis=0))
    return FitResult(state=state, val_ppl=val_ppl, best_val_ppl=best, failed=failed,
                     tokens=epochs * int(np.prod(x.shape)))


# --- weight sharing -----------------------------------------------------------------------------------
def train_supernet(model: RNNLanguageModel, config: LMConfig, space, state: LMState, inputs: jax.Array,
                   targets: jax.Array) -> tuple[LMState, jax.Array]:
    """Weight-sharing training (`000_*`'s random search with weight sharing): every window trains the
    shared weights of `model` (a `space.supernet`) through one cell drawn uniformly from `space`, keys
    split from the state's. Returns (state, cross-entropy float32 (W,)); jittable with `space` static."""
    key, k_cells = jax.random.split(state.train.rng)
    cells = jax.vmap(functools.partial(arch_data, space))(space.sample(k_cells, inputs.shape[0]))
    state = state.replace(train=state.train.replace(rng=key))
    return train_windows(model, config, state, inputs, targets, cells)


def shared_weight_loss(model: RNNLanguageModel, space, params, encodings: jax.Array, inputs: jax.Array,
                       targets: jax.Array) -> jax.Array:
    """Validation cross-entropy float32 (n,) of each cell int32 (n, *enc) with the supernet's shared
    weights: the ranking of random search with weight sharing (lower is better). Jittable."""
    cells = jax.vmap(functools.partial(arch_data, space))(encodings)
    return jax.lax.map(lambda cell: evaluate(model, params, inputs, targets, cell), cells)
