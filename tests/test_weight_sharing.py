"""nasjax.train.weight_sharing (RS-WS, `000_*`): batch-norm recomputation, same seed same ranking."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasjax.spaces import DARTSSpace
from nasjax.train import TrainConfig, module_apply
from nasjax.train import weight_sharing as ws


class _TwoPaths(nn.Module):
    """Path 0 or 1 (data) picks one of two batch norms over the batch axis (momentum 0.1 of the new
    statistics, PyTorch's convention); only the chosen one updates its statistics in training."""

    @nn.compact
    def __call__(self, x, path, train: bool = False, drop_path_rate=None):
        scale = self.param("scale", nn.initializers.ones, x.shape[-1:])
        out = jnp.zeros_like(x)
        for i in range(2):
            mean = self.variable("batch_stats", f"mean{i}", jnp.zeros, x.shape[-1:])
            var = self.variable("batch_stats", f"var{i}", jnp.ones, x.shape[-1:])
            m, v = (x.mean(0), x.var(0)) if train else (mean.value, var.value)
            if train and not self.is_initializing():
                mean.value = jnp.where(path == i, 0.9 * mean.value + 0.1 * m, mean.value)
                var.value = jnp.where(path == i, 0.9 * var.value + 0.1 * v, var.value)
            out = out + jnp.where(path == i, (x - m) * jax.lax.rsqrt(v + 1e-5) * scale, 0.0)
        return out


def test_recomputed_batch_stats_average_the_batches_of_the_path():
    module = _TwoPaths()
    x = jnp.asarray(np.random.default_rng(0).normal(2.0, 3.0, (3, 8, 5)), jnp.float32)
    variables = module.init(jax.random.key(0), x[0], 0)
    old = jax.tree.map(lambda v: v + 7.0, variables["batch_stats"])
    recompute = jax.jit(ws.recompute_batch_stats, static_argnums=0)
    stats = recompute(module_apply(module), variables["params"], old, (1,), x)
    np.testing.assert_allclose(stats["mean1"], jnp.mean(x.mean(axis=1), axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["var1"], jnp.mean(x.var(axis=1), axis=0), rtol=1e-4)
    np.testing.assert_array_equal(stats["mean0"], old["mean0"])  # path 0 untouched
    np.testing.assert_array_equal(stats["var0"], old["var0"])


@pytest.fixture(scope="module")
def tiny(cifar):
    space = DARTSSpace(init_channels=4, layers=3)
    data = cifar.take(train=64, val=64, test=0)
    config = TrainConfig(epochs=2, batch_size=32, eval_batch_size=32)
    candidates = np.asarray(space.sample(jax.random.key(1), 3))
    return space, data, config, candidates


@pytest.mark.slow
def test_same_seed_same_ranking(tiny):
    space, data, config, candidates = tiny
    runs = []
    for _ in range(2):
        state, losses = ws.train_supernet(space, data, config, jax.random.key(3))
        runs.append((state, losses, ws.score_candidates(space, state, candidates, data, config, bn_batches=1)))
    (s0, l0, a0), (s1, l1, a1) = runs
    assert l0.shape == (2, 2) and np.all(np.isfinite(l0))
    np.testing.assert_array_equal(l0, l1)
    np.testing.assert_array_equal(a0, a1)
    jax.tree.map(np.testing.assert_array_equal, s0.params, s1.params)
    assert np.all((a0 >= 0) & (a0 <= 1))
    other, _ = ws.train_supernet(space, data, config, jax.random.key(4))
    # (not the first leaf alone: it is a zero-initialized bias for every seed)
    assert not all(map(np.array_equal, jax.tree.leaves(other.params), jax.tree.leaves(s0.params)))
