"""Layer-wise execution of plain ConvNets (`ConvNetSpace` without batch norm), the CPU engine.

A ConvNet is a chain of units z_i = conv_i(x_i) + b_i, where x_0 is the augmented image and x_i (i >= 1)
= pre_i(z_{i-1}), the ReLU of the previous unit followed by its 2x2 max-pool where the network pools
there (`nasjax.nn.convnet.activation`, as in the network's module); the head is logits =
Dense(mean_hw(pre(z_last))). Each unit's forward and backward is a program compiled for its *shape*
(batch, H, W, C_in, C_out, k, pool) by `jax.jit`'s own cache, so every architecture of a space reuses
the same few dozen programs: a new architecture compiles only its optimizer update (elementwise, a
fraction of a second), where one whole-network training program costs seconds of compilation per
architecture on CPU. A Python loop drives the chain, a few dispatches per unit and step; a unit's
convolution takes milliseconds to seconds on CPU, so the dispatches cost little.

A unit's forward returns its input x_i beside z_i, and its backward takes both: the kernel gradient
convolves a transposed x_i, and XLA:CPU transposed a stored x_i several times faster than an x_i it
recomputes from z_{i-1} in the same loop (ReLU fused into the transpose, 128x32x32x64: 37 against
13 ms, 27.5 against 3.5 ms with `nasjax.runtime`). Augmentation, key use, parameters and
optimizer are those of `steps.train_step` on `ConvNet`, so results equal the whole-network program's
up to float summation order (tests/test_layered.py states the tolerance).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nasjax.data import augment_batch
from nasjax.nn.convnet import activation, is_convnet_space
from nasjax.nn.init import lecun_std
from nasjax.nn import ops
from nasjax.spaces.convnet import ConvNetSpace
from nasjax.train.protocol import TrainConfig
from nasjax.train.optim import make_optimizer
from nasjax.train.state import TrainState
from nasjax.train.steps import cross_entropy, epoch_order


class Plan(NamedTuple):
    """How an architecture's units chain: pools[i] says whether unit i's input (i >= 1) is pooled
    after the ReLU, pools[depth] the same for the head's input."""

    pools: tuple[bool, ...]

    @property
    def depth(self) -> int:
        return len(self.pools) - 1


def supports(space) -> bool:
    """Whether `space`'s networks can run layer-wise (plain ConvNets without batch norm)."""
    return is_convnet_space(space) and not space.batch_norm


def plan(space: ConvNetSpace, enc, image_size: int = 32) -> Plan:
    """The unit chain of one architecture (the space's pooling positions)."""
    return Plan((False, *space.pool_positions(enc, image_size)))


# --- per-shape programs (jit caches one compilation per shape and static flags) ---------------------
def _conv(kernel: jax.Array, bias: jax.Array, x: jax.Array) -> jax.Array:
    return ops.conv2d(x, kernel) + bias


def _unit(kernel: jax.Array, bias: jax.Array, z_prev: jax.Array, first: bool, pool: bool):
    """(x, z): a unit's input x (the image when first, else pre(z_prev)) and its output z (B, H', W',
    C_out)."""
    x = z_prev if first else activation(z_prev, pool)
    return x, _conv(kernel, bias, x)


def _head(kernel: jax.Array, bias: jax.Array, z_last: jax.Array, pool: bool) -> jax.Array:
    return jnp.mean(activation(z_last, pool), axis=(1, 2)) @ kernel + bias


# The layered engine is the CPU execution: `train_population(execution="auto")` picks it on CPU only.
_jit = functools.partial(jax.jit, compiler_options=ops.CPU_COMPILER_OPTIONS)
unit_forward = _jit(_unit, static_argnames=("first", "pool"))
head_logits = _jit(_head, static_argnames=("pool",))


@functools.partial(_jit, static_argnames=("first", "pool"))
def unit_backward(kernel, bias, x, z_prev, dz, first: bool, pool: bool):
    """Gradients of a unit given its input x and dz (like z): (d kernel, d bias, d z_prev or None for
    the first unit)."""
    if first:
        _, vjp = jax.vjp(lambda k, b: _conv(k, b, x), kernel, bias)
        return (*vjp(dz), None)
    dk, db, dx = jax.vjp(_conv, kernel, bias, x)[1](dz)
    return dk, db, jax.vjp(lambda z: activation(z, pool), z_prev)[1](dx)[0]


@functools.partial(_jit, static_argnames=("pool", "smoothing"))
def head_backward(kernel, bias, z_last, labels, pool: bool, smoothing: float):
    """(loss, (d kernel, d bias, d z_last)) of the mean cross-entropy of the head on z_last."""
    def loss(k, b, z):
        return cross_entropy(_head(k, b, z, pool), labels, smoothing)

    return jax.value_and_grad(loss, argnums=(0, 1, 2))(kernel, bias, z_last)


@functools.partial(jax.jit, static_argnames=("config",))
def next_batch(rng, images, labels, idx, config: TrainConfig):
    """`train_step`'s key use and augmentation: (next rng, augmented x (B, H, W, 3), labels (B,))."""
    rng, k_aug, _ = jax.random.split(rng, 3)  # the third key is train_step's dropout key
    x = augment_batch(k_aug, images[idx], crop_padding=config.crop_padding, flip=config.flip,
                      cutout=config.cutout, autoaugment=config.autoaugment)
    return rng, x, labels[idx]


@functools.lru_cache(maxsize=None)
def _update_fn(config: TrainConfig, steps_per_epoch: int):
    """The optimizer step of `make_optimizer(config, steps_per_epoch)`, jitted (one small elementwise
    program per architecture's parameter shapes)."""
    tx = make_optimizer(config, steps_per_epoch)

    def update(params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return jax.jit(update)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _truncated_normals(key: jax.Array, count: int, size: int) -> jax.Array:
    """float32 (count, size): row i is N(0, 1) truncated to [-2, 2], drawn with key i of split(key)."""
    return jax.vmap(lambda k: jax.random.truncated_normal(k, -2.0, 2.0, (size,)))(
        jax.random.split(key, count))


def init_params(space: ConvNetSpace, enc, key: jax.Array, num_classes: int = 10) -> dict:
    """`ConvNet` parameters (float32 numpy) {"conv{i}": {kernel, bias}, "head": {kernel, bias}} drawn
    from the distribution of Flax's defaults: lecun-normal kernels (N(0, 1) truncated to [-2, 2],
    scaled to std sqrt(1 / fan_in)), zero biases.

    Kernel i is the start of row i of one (max_depth + 1, largest kernel size) draw, so one program per
    space serves every architecture: whole-module `init` compiles a program per architecture, and
    threefry makes each cost seconds on CPU. The draws are therefore not the bits that
    `nasjax.nn.build(space, enc).init(key, x)` gives for the same key (Flax draws each parameter with a key
    derived from its name), only the same distribution (tests/test_layered.py compares them).
    """
    c_max = max(space.channels)
    size = max(max(space.kernels) ** 2 * max(c_max, 3) * c_max, c_max * num_classes)
    draws = np.asarray(_truncated_normals(key, space.max_depth + 1, size))  # host slicing: no per-shape ops

    def lecun_normal(row: int, shape: tuple[int, ...]) -> np.ndarray:
        std = np.float32(lecun_std(math.prod(shape[:-1])))
        return draws[row, :math.prod(shape)].reshape(shape) * std

    params, cin = {}, 3
    for i, (c, k) in enumerate(space.layers(enc)):
        params[f"conv{i}"] = {"kernel": lecun_normal(i, (k, k, cin, c)), "bias": np.zeros((c,), np.float32)}
        cin = c
    params["head"] = {"kernel": lecun_normal(space.max_depth, (cin, num_classes)),
                      "bias": np.zeros((num_classes,), np.float32)}
    return params


# --- training and evaluation ---------------------------------------------------------------------
def _forward(params, the_plan: Plan, image: jax.Array) -> tuple[list[jax.Array], list[jax.Array]]:
    """(xs, zs): every unit's input x_i (x_0 = image) and output z_i."""
    xs, zs = [], [image]
    for i in range(the_plan.depth):
        p = params[f"conv{i}"]
        x, z = unit_forward(p["kernel"], p["bias"], zs[-1], first=i == 0, pool=the_plan.pools[i])
        xs.append(x)
        zs.append(z)
    return xs, zs[1:]


def _gradients(params, the_plan: Plan, x, y, smoothing: float):
    """(loss scalar, grads like params) of one batch, unit by unit from the head down."""
    xs, zs = _forward(params, the_plan, x)
    head = params["head"]
    loss, (dk, db, dz) = head_backward(head["kernel"], head["bias"], zs[-1], y,
                                       pool=the_plan.pools[-1], smoothing=smoothing)
    grads = {"head": {"kernel": dk, "bias": db}}
    for i in reversed(range(the_plan.depth)):
        p = params[f"conv{i}"]
        dk, db, dz = unit_backward(p["kernel"], p["bias"], xs[i], zs[i - 1] if i else None, dz,
                                   first=i == 0, pool=the_plan.pools[i])
        grads[f"conv{i}"] = {"kernel": dk, "bias": db}
    return loss, grads


def train_epoch(the_plan: Plan, config: TrainConfig, state: TrainState, extra, data_key, epoch,
                images: jax.Array, labels: jax.Array):
    """`steps.train_epoch` layer-wise: one epoch over images (N, H, W, 3) normalized, labels (N,), with
    the optimizer of `make_optimizer(config, N // batch_size)`.

    extra must be () (plain ConvNets have no runtime masks). -> (state, losses float32 (steps,)).
    """
    del extra
    order = np.asarray(epoch_order(jnp.asarray(data_key), epoch, images.shape[0], config.batch_size))
    update = _update_fn(config, len(order))
    params, opt_state, rng = state.params, state.opt_state, jnp.asarray(state.rng)
    losses = []
    for idx in order:
        rng, x, y = next_batch(rng, images, labels, jnp.asarray(idx), config=config)
        loss, grads = _gradients(params, the_plan, x, y, config.label_smoothing)
        params, opt_state = update(params, opt_state, grads)
        losses.append(loss)
    state = state.replace(params=params, opt_state=opt_state, step=state.step + len(order), rng=rng)
    return state, jnp.stack(losses)


def accuracy(the_plan: Plan, state: TrainState, extra, images: jax.Array, labels: jax.Array,
             batch_size: int) -> jax.Array:
    """Top-1 accuracy (scalar) over images (N, H, W, 3) normalized, batch by batch (the last batch
    padded to `batch_size`, so every batch runs the same compiled units)."""
    del extra
    n = images.shape[0]
    nb = -(-n // batch_size)
    xs = jnp.pad(images, ((0, nb * batch_size - n), (0, 0), (0, 0), (0, 0)))
    ys = jnp.pad(labels, (0, nb * batch_size - n), constant_values=-1)  # -1 never matches
    head = state.params["head"]
    correct = jnp.zeros((), jnp.int32)
    for b in range(nb):
        z = _forward(state.params, the_plan, xs[b * batch_size:(b + 1) * batch_size])[1][-1]
        logits = head_logits(head["kernel"], head["bias"], z, pool=the_plan.pools[-1])
        correct = correct + jnp.sum(jnp.argmax(logits, -1) == ys[b * batch_size:(b + 1) * batch_size])
    return correct / n
