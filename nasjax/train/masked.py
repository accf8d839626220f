"""One compiled program for all ConvNet-space networks of one depth: a masked max-shape ConvNet.

Every layer has max(channels) filters of max(kernels)^2; a k x k kernel is the centre of the big one
(the border is multiplied by a 0/1 kernel mask) and absent output channels are zeroed after the ReLU by a
channel mask. Parameters are the true network's, zero-padded (`embed`): padded entries see zero inputs or
zero output gradients, so they get exactly zero gradients, stay zero under weight decay and momentum, and
the network computes what the true-size network computes (up to float summation order). Depth is not
masked: the 2x2 pools sit after fixed layer positions, so networks are bucketed by depth.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nasjax.nn import ops
from nasjax.spaces.convnet import ConvNetSpace, pool_positions


class MaskedConvNet(nn.Module):
    """`depth` layers of max(channels) x max(kernels)^2 convs; masks pick the real architecture."""

    depth: int
    max_channels: int
    max_kernel: int
    num_classes: int = 10
    pool_every: int = 2
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, channel_mask: jax.Array, kernel_mask: jax.Array,
                 train: bool = False) -> jax.Array:
        """x (B, H, W, C); channel_mask (depth, max_channels), kernel_mask (depth, K, K) -> (B, classes)."""
        k, c = self.max_kernel, self.max_channels
        pools = pool_positions(self.pool_every, self.depth, x.shape[1])
        for i in range(self.depth):
            kernel = self.param(f"conv{i}_kernel", nn.initializers.zeros, (k, k, x.shape[-1], c))
            x = ops.conv2d(x, kernel * kernel_mask[i][:, :, None, None], (1, 1), "SAME", (1, 1), 1)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn{i}")(x)
            else:
                x = x + self.param(f"conv{i}_bias", nn.initializers.zeros, (c,))
            x = nn.relu(x) * channel_mask[i]
            if pools[i]:
                x = ops.max_pool(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(x)


def masked_module(space: ConvNetSpace, depth: int, num_classes: int = 10) -> MaskedConvNet:
    return MaskedConvNet(depth=depth, max_channels=max(space.channels), max_kernel=max(space.kernels),
                         num_classes=num_classes, pool_every=space.pool_every, batch_norm=space.batch_norm)


def masks(space: ConvNetSpace, enc) -> tuple[np.ndarray, np.ndarray]:
    """float32 channel mask (depth, max_channels) and kernel mask (depth, K, K) of an encoding."""
    layers = space.layers(enc)
    c_max, k_max = max(space.channels), max(space.kernels)
    cm = np.zeros((len(layers), c_max), np.float32)
    km = np.zeros((len(layers), k_max, k_max), np.float32)
    for i, (c, k) in enumerate(layers):
        cm[i, :c] = 1.0
        o = (k_max - k) // 2
        km[i, o:o + k, o:o + k] = 1.0
    return cm, km


def _name_map(space: ConvNetSpace, depth: int) -> dict[tuple[str, str], tuple[str, str]]:
    """(module, leaf) in `ConvNet` -> (module, leaf) in `MaskedConvNet`."""
    out = {("head", "kernel"): ("head", "kernel"), ("head", "bias"): ("head", "bias")}
    for i in range(depth):
        out[(f"conv{i}", "kernel")] = (f"conv{i}_kernel",)
        if not space.batch_norm:
            out[(f"conv{i}", "bias")] = (f"conv{i}_bias",)
    return out


def _offsets(shape_small, shape_big) -> tuple[int, ...]:
    """Where a true leaf sits in its padded leaf: spatial dims of a 4-D kernel centred, others at 0."""
    if len(shape_big) == 4:
        return ((shape_big[0] - shape_small[0]) // 2, (shape_big[1] - shape_small[1]) // 2, 0, 0)
    return (0,) * len(shape_big)


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def _set(tree, path, value):
    tree = dict(tree)
    tree[path[0]] = value if len(path) == 1 else _set(tree.get(path[0], {}), path[1:], value)
    return tree


def embed(space: ConvNetSpace, enc, variables, num_classes: int = 10):
    """True-size ConvNet variables -> MaskedConvNet variables (zero-padded); same collections."""
    depth = len(space.layers(enc))
    template = jax.eval_shape(
        lambda: masked_module(space, depth, num_classes).init(
            jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), *masks(space, enc)))
    out = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), template)
    names = _name_map(space, depth)
    for col, tree in variables.items():
        for mod, leaves in tree.items():
            for leaf, value in leaves.items():
                dst = (col, *names.get((mod, leaf), (mod, leaf)))
                big = _get(out, dst)
                out = _set(out, dst, jax.lax.dynamic_update_slice(big, value, _offsets(value.shape, big.shape)))
    return out


def extract(space: ConvNetSpace, enc, masked_tree, true_tree):
    """MaskedConvNet collection -> the true-size one (`true_tree` gives structure and shapes)."""
    depth = len(space.layers(enc))
    names = _name_map(space, depth)
    out = {}
    for mod, leaves in true_tree.items():
        for leaf, value in leaves.items():
            big = _get(masked_tree, names.get((mod, leaf), (mod, leaf)))
            out = _set(out, (mod, leaf), jax.lax.dynamic_slice(big, _offsets(value.shape, big.shape),
                                                                value.shape))
    return out
