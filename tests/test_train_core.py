"""The training core's mechanisms, each tested directly against its definition: drop-path keeps the
mean, ASGD averages the iterates since averaging began, gradient clipping is optax's global-norm
clip, a tied decoder reads the embedding before embedding dropout, and a weight-sharing candidate is
scored with batch-norm statistics recomputed on its own path (not the supernet's running ones)."""


import jax
import jax.numpy as jnp
import numpy as np
import optax

import nasjax.nn

from nasjax.spaces import DARTSSpace, RNNCellSpace
from nasjax.nn.cells.cell import _drop_mask
from nasjax.train import TrainConfig, lm, optim
from nasjax.train.state import TrainState
from nasjax.train import weight_sharing as ws


def test_drop_path_preserves_the_mean():
    """A dropped path is 0, a kept one is scaled by 1 / keep: E[factor] = 1 for every rate."""
    for rate in (0.2, 0.5):
        factor = np.asarray(jax.jit(_drop_mask, static_argnums=(1, 3))(jax.random.key(0), 20_000, rate,
                                                                       jnp.float32))
        np.testing.assert_allclose(np.unique(factor), [0.0, 1.0 / (1.0 - rate)], rtol=1e-6)
        assert abs(factor.mean() - 1.0) < 0.03, (rate, factor.mean())  # 4 standard errors at rate 0.5


def _sgd_steps(tx, params, grad, steps: int, start: int | None = None):
    """`steps` updates of `tx` from params on the gradient function `grad`, averaging switched on
    before step `start` -> (iterates after each step, final optimizer state)."""
    state, iterates = tx.init(params), []
    for step in range(steps):
        if step == start:
            state = optim.start_averaging(state)
        updates, state = tx.update(grad(params), state, params)
        params = optax.apply_updates(params, updates)
        iterates.append(params)
    return iterates, state


def test_asgd_averages_the_iterates_since_averaging_began():
    """Averaging switched on after k SGD steps: the mean of the n - k later iterates, by hand."""
    target = jnp.asarray([1.0, -2.0, 0.5])
    grad = jax.grad(lambda p: jnp.sum((p["w"] - target) ** 2))
    tx = lm.optimizer(lm.LMConfig(lr=0.1, clip=100.0, weight_decay=0.01))
    params = {"w": jnp.asarray([3.0, 3.0, 3.0])}
    k, n = 3, 7
    iterates, state = _sgd_steps(tx, params, grad, n, start=k)
    np.testing.assert_allclose(optim.average(state)["w"], np.mean([p["w"] for p in iterates[k:]], axis=0),
                               rtol=1e-6)
    before, state = _sgd_steps(tx, params, grad, 2)  # not averaging: the average is the weights
    np.testing.assert_array_equal(optim.average(state)["w"], before[-1]["w"])
    g = grad(params)["w"]  # SGD with PyTorch's weight decay: p - lr (g + wd p)
    np.testing.assert_allclose(before[0]["w"], params["w"] - 0.1 * (g + 0.01 * params["w"]), rtol=1e-6)


def test_ema_of_the_iterates_and_evaluation_reads_it():
    """TrainConfig.ema_decay: the optimizer state's average is decay * ema + (1 - decay) * iterate from
    the initial weights, by hand; evaluation reads it (and the trained weights without the switch)."""
    target = jnp.asarray([1.0, -2.0, 0.5])
    grad = jax.grad(lambda p: jnp.sum((p["w"] - target) ** 2))
    config = TrainConfig(lr=0.1, momentum=0.0, weight_decay=0.0, grad_clip=0.0, ema_decay=0.8, epochs=1)
    tx = optim.make_optimizer(config, steps_per_epoch=100)
    params = {"w": jnp.asarray([3.0, 3.0, 3.0])}
    iterates, opt_state = _sgd_steps(tx, params, grad, 5)
    ema = params["w"]
    for p in iterates:
        ema = 0.8 * ema + 0.2 * p["w"]
    np.testing.assert_allclose(opt_state.ema["w"], ema, rtol=1e-6)
    state = TrainState(params=iterates[-1], batch_stats={}, opt_state=opt_state, step=jnp.int32(5), rng=None)
    np.testing.assert_array_equal(optim.evaluation_state(config, state).params["w"], opt_state.ema["w"])
    plain = config.replace(ema_decay=0.0)
    assert optim.evaluation_state(plain, state) is state
    assert not isinstance(optim.make_optimizer(plain, 100).init(params), optim.EMAState)


def test_clipping_is_optax_global_norm_clipping():
    """The LM's gradient clip is optax.clip_by_global_norm (up to PyTorch's 1e-6 in the denominator)."""
    tx = lm.optimizer(lm.LMConfig(lr=1.0, clip=0.25, weight_decay=0.0))
    grads = {"a": jnp.asarray([3.0, -4.0]), "b": jnp.asarray([[1.0, 2.0]])}  # global norm sqrt(30)
    params = jax.tree.map(jnp.zeros_like, grads)
    for g in (grads, jax.tree.map(lambda g: g / 100, grads)):  # above and below the threshold
        expected, _ = optax.clip_by_global_norm(0.25).update(g, None)
        updates, _ = tx.update(g, tx.init(params), params)  # lr 1: the update is -clip(g)
        jax.tree.map(lambda u, e: np.testing.assert_allclose(-u, e, rtol=1e-5), updates, expected)


def test_tied_decoder_reads_the_embedding_before_embedding_dropout():
    """With only embedding dropout on, training-mode logits are outputs @ embedding.T + bias, the
    embedding untouched: dropping a word's row drops its input, not its output logit."""
    space = RNNCellSpace(num_nodes=2)
    model = nasjax.nn.build(space, np.asarray([[0, 0], [1, 1]]), num_classes=30, hidden_size=8,
                            dropout=0.0, dropout_h=0.0, dropout_x=0.0, dropout_i=0.0, dropout_e=0.5)
    tokens = jnp.asarray(np.arange(24).reshape(6, 4) % 30, jnp.int32)
    hidden = jnp.zeros((4, 8))
    params = model.init(jax.random.key(0), tokens, hidden)
    logits, _, outputs = model.apply(params, tokens, hidden, train=True, rngs={"dropout": jax.random.key(1)})
    eval_logits, _, _ = model.apply(params, tokens, hidden)
    assert not np.allclose(logits, eval_logits)  # embedding dropout did act (on the inputs)
    p = params["params"]
    np.testing.assert_allclose(logits, outputs @ p["embedding"].T + p["decoder_bias"], rtol=1e-5, atol=1e-6)


def test_candidate_score_ignores_the_supernets_running_statistics(cifar):
    """Scoring recomputes each candidate's batch-norm statistics: corrupting the supernet's running
    statistics changes no score. (An untrained supernet of two ops, so that only the scoring program
    compiles: its running statistics are Flax's 0 / 1, which scores made with them would show.)"""
    space = DARTSSpace(num_nodes=2, ops=("skip_connect", "sep_conv_3x3"), init_channels=4, layers=2)
    data = cifar.take(train=32, val=64, test=0)
    config = TrainConfig(epochs=1, batch_size=32, eval_batch_size=32)
    state = ws.init_supernet(space, config, jax.random.key_data(jax.random.key(3)), 1)
    candidates = np.asarray(space.sample(jax.random.key(1), 3))
    scores = ws.score_candidates(space, state, candidates, data, config, bn_batches=1)
    corrupted = state.replace(batch_stats=jax.tree.map(lambda s: s * 50.0 + 3.0, state.batch_stats))
    np.testing.assert_array_equal(
        ws.score_candidates(space, corrupted, candidates, data, config, bn_batches=1), scores)
