"""The plain ConvNet of `nasjax.spaces.convnet` (LaNAS `002_*` §2 and A.1), its registration as the
networks of `ConvNetSpace` (`nasjax.nn.build`), and its masked form: one definition, run three ways
by `nasjax.train` (whole network, masked max-shape program, layer by layer on its parameters).

Masked form: every layer of a depth-d network has max(channels) filters of max(kernels)^2; a k x k
kernel is the centre of the big one (its border multiplied by a 0/1 kernel mask) and absent output
channels are zeroed after the ReLU by a channel mask. With the true parameters zero-padded
(`nasjax.train.masked.embed`), padded entries see zero inputs or zero output gradients, so the masked
network computes what the true one does (up to float summation order) and one compiled program serves
every architecture of depth d. Depth is not masked: the 2x2 pools sit after fixed layer positions.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nasjax.nn import ops
from nasjax.nn.api import Networks, networks, register
from nasjax.spaces.convnet import ConvNetSpace, pool_positions


def activation(z: jax.Array, pool: bool, channel_mask: jax.Array | None = None) -> jax.Array:
    """What follows a layer's convolution (and batch norm): ReLU, the masked form's channel mask
    (max_channels,), then the 2x2 max-pool where the network pools. The layer-wise execution
    (`nasjax.train.layered`) chains the same function between its units."""
    x = nn.relu(z)
    if channel_mask is not None:
        x = x * channel_mask
    return ops.max_pool(x) if pool else x


class ConvNet(nn.Module):
    """A plain ConvNet: `channels[i]` filters of size `kernels[i]` x `kernels[i]` in layer i, each
    Conv [-> BN] -> ReLU [-> 2x2 max-pool], then global average pooling and Dense(num_classes).

    __call__(x (B, H, W, C), channel_mask=None, kernel_mask=None, train=False) -> logits (B, classes);
    the masks (depth, channels) and (depth, k, k) select a smaller network inside this one (the
    masked form, module docstring)."""

    channels: tuple[int, ...]
    kernels: tuple[int, ...]
    num_classes: int = 10
    pool_every: int = 2
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, channel_mask: jax.Array | None = None,
                 kernel_mask: jax.Array | None = None, train: bool = False) -> jax.Array:
        pools = pool_positions(self.pool_every, len(self.channels), x.shape[1])
        for i, (c, k) in enumerate(zip(self.channels, self.kernels)):
            conv = ops.Conv(c, (k, k), use_bias=not self.batch_norm, name=f"conv{i}")
            # The unmasked call takes the input alone, as Flax's nn.Conv does (tests swap it in).
            x = conv(x) if kernel_mask is None else conv(x, kernel_mask[i])
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn{i}")(x)
            x = activation(x, pools[i], None if channel_mask is None else channel_mask[i])
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(x)


def build(space: ConvNetSpace, enc, *, num_classes: int = 10) -> ConvNet:
    """The ConvNet `enc` denotes."""
    layers = space.layers(enc)
    return ConvNet(channels=tuple(c for c, _ in layers), kernels=tuple(k for _, k in layers),
                   num_classes=num_classes, pool_every=space.pool_every, batch_norm=space.batch_norm)


register(ConvNetSpace, Networks(build=build))


def is_convnet_space(space) -> bool:
    """Whether `space`'s networks are these ConvNets (it registered this module's `build`)."""
    return networks(space).build is build


def masked(space: ConvNetSpace, depth: int, num_classes: int = 10) -> ConvNet:
    """The masked form shared by every depth-`depth` network of `space` (called with `masks`)."""
    return ConvNet(channels=(max(space.channels),) * depth, kernels=(max(space.kernels),) * depth,
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
