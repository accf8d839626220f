"""nasjax.train: configs, steps, the masked ConvNet program, learning on real CIFAR-10."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasjax.data import normalize
from nasjax.nn import build
from nasjax.nn.convnet import masked, masks
from nasjax.spaces.convnet import ConvNetSpace
from nasjax.train import (PRESETS, TrainConfig, create_state, embed, extract, make_optimizer, module_apply,
                          preset, train_epoch, train_population)

SPACE = ConvNetSpace(channels=(4, 8), kernels=(3, 5), max_depth=3)
MASK_TOL = dict(rtol=1e-5, atol=1e-5)  # same math, different conv shapes -> summation order only


def test_presets_follow_001():
    assert PRESETS["base"].lr == 0.025 and PRESETS["base"].final_lr == 0.0
    assert PRESETS["cutout"].cutout == 16
    assert PRESETS["cutout+droppath"].drop_path == 0.2
    assert PRESETS["+auxiliary"].auxiliary_weight == 0.4
    assert PRESETS["+autoaugment"].autoaugment and PRESETS["+autoaugment"].cutout == 16
    assert preset("cutout", epochs=3).epochs == 3


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(lr=-1.0), dict(label_smoothing=1.0),
                                 dict(drop_path=1.5)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="invalid TrainConfig"):
        TrainConfig(**bad)


@pytest.mark.parametrize("final_lr", [0.0, 0.01])
def test_learning_rate_is_cosine_annealed_over_all_epochs(final_lr):
    """Step t of `epochs * steps_per_epoch` steps T uses final + (lr - final) (1 + cos(pi t / T)) / 2:
    with unit gradients and no momentum, decay or clipping, the update is minus that rate."""
    from nasjax.train.optim import make_optimizer

    config = TrainConfig(epochs=3, lr=0.1, final_lr=final_lr, momentum=0.0, weight_decay=0.0,
                         grad_clip=0.0)
    steps_per_epoch = 4
    tx = make_optimizer(config, steps_per_epoch)
    params = jnp.zeros(())
    state = tx.init(params)
    rates = []
    for _ in range(config.epochs * steps_per_epoch + 2):
        updates, state = tx.update(jnp.ones(()), state, params)
        rates.append(-float(updates))
    total = config.epochs * steps_per_epoch
    t = np.minimum(np.arange(total + 2), total)
    expected = final_lr + (0.1 - final_lr) * (1 + np.cos(np.pi * t / total)) / 2
    np.testing.assert_allclose(rates, expected, rtol=1e-5, atol=1e-7)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown protocol"):
        preset("nope")


@pytest.mark.parametrize("layers", [pytest.param([(8, 3), (4, 5), (8, 3)], marks=pytest.mark.slow),
                                    [(4, 5)], [(8, 5), (8, 3)]])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_masked_matches_true_module(cifar_batch, layers, batch_norm):
    """Logits (train and eval mode) and gradients of the masked program equal the true-size module's."""
    space = SPACE.__class__(**{**SPACE.__dict__, "batch_norm": batch_norm})
    enc = space.encode(layers)
    true = build(space, enc)
    variables = true.init(jax.random.PRNGKey(1), cifar_batch)
    big = masked(space, len(layers))
    big_vars = embed(space, enc, variables)
    extra = masks(space, enc)
    x, y = cifar_batch, jnp.arange(8) % 10

    def loss(module, params, *args):
        out = module.apply({**variables, **big_vars, "params": params} if module is big
                           else {**variables, "params": params}, x, *args, train=True,
                           mutable=["batch_stats"])[0]
        return jnp.mean(jax.nn.log_softmax(out)[jnp.arange(8), y]), out

    (l_true, out_true), g_true = jax.value_and_grad(lambda p: loss(true, p), has_aux=True)(variables["params"])
    (l_big, out_big), g_big = jax.value_and_grad(lambda p: loss(big, p, *extra), has_aux=True)(big_vars["params"])
    np.testing.assert_allclose(out_big, out_true, **MASK_TOL)
    np.testing.assert_allclose(big.apply(big_vars, x, *extra), true.apply(variables, x), **MASK_TOL)
    chex.assert_trees_all_close(extract(space, enc, g_big, g_true), g_true, **MASK_TOL)
    # Padded entries get exactly zero gradient, so they stay zero under SGD + weight decay.
    padded = jax.tree.map(lambda g, e: jnp.sum(jnp.abs(g)) - jnp.sum(jnp.abs(e)), g_big,
                          embed(space, enc, {"params": g_true})["params"])
    assert max(abs(float(v)) for v in jax.tree.leaves(padded)) < 1e-4


def test_small_net_beats_chance_after_one_epoch(cifar):
    space = ConvNetSpace(channels=(16,), kernels=(3,), max_depth=2)
    config = TrainConfig(epochs=1, batch_size=32, lr=0.05, crop_padding=0, flip=False)
    data = cifar._replace(val_images=cifar.val_images[:500], val_labels=cifar.val_labels[:500])
    (res,), _ = train_population(space, space.encode([(16, 3), (16, 3)])[None], data, config,
                                 jax.random.PRNGKey(0))
    assert not res.failed
    assert res.final_val_acc > 0.2 and res.test_acc > 0.2, res  # chance is 0.1 on 10 balanced classes
    assert normalize(cifar.train_images[:1]).dtype == jnp.float32


_SEEN_RATES: list[float] = []


class _RateProbe(nn.Module):
    """A linear classifier that reports the drop-path rate each training step hands it."""

    @nn.compact
    def __call__(self, x, train: bool = False, drop_path_rate=None):
        if train:
            jax.debug.callback(lambda r: _SEEN_RATES.append(float(r)), drop_path_rate, ordered=True)
        return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))


def test_drop_path_ramps_linearly_over_epochs():
    """Every step t of the engine's epochs gets DARTS's rate drop_path * (t // steps_per_epoch) / epochs."""
    config = TrainConfig(epochs=4, batch_size=8, drop_path=0.3, crop_padding=0, flip=False)
    probe = _RateProbe()
    _SEEN_RATES.clear()
    apply = module_apply(probe)
    tx = make_optimizer(config, steps_per_epoch=3)
    images = jnp.asarray(np.random.default_rng(0).normal(size=(24, 4, 4, 3)), jnp.float32)
    labels = jnp.arange(24) % 10
    state = create_state(probe.init(jax.random.PRNGKey(0), images[:1]), tx, jax.random.PRNGKey(1))
    epoch_fn = jax.jit(functools.partial(train_epoch, apply, tx, config))
    for epoch in range(config.epochs):
        state, _ = epoch_fn(state, (), jax.random.PRNGKey(2), epoch, images, labels)
    jax.effects_barrier()
    steps = np.arange(config.epochs * 3)
    np.testing.assert_allclose(_SEEN_RATES, 0.3 * (steps // 3) / config.epochs, rtol=1e-6)
    assert config.drop_path_rate(0) == 0.0 and config.drop_path_rate(2) == pytest.approx(0.15)
