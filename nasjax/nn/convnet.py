"""The plain ConvNet of `nasjax.spaces.convnet` (LaNAS `002_*` §2 and A.1), and its registration as the
networks of `ConvNetSpace` (`nasjax.nn.build`)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nasjax.nn import ops
from nasjax.nn.api import Networks, register
from nasjax.spaces.convnet import ConvNetSpace, pool_positions


class ConvNet(nn.Module):
    """A plain ConvNet: `channels[i]` filters of size `kernels[i]` x `kernels[i]` in layer i."""

    channels: tuple[int, ...]
    kernels: tuple[int, ...]
    num_classes: int = 10
    pool_every: int = 2
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """x (B, H, W, C) float -> logits (B, num_classes)."""
        pools = pool_positions(self.pool_every, len(self.channels), x.shape[1])
        for i, (c, k) in enumerate(zip(self.channels, self.kernels)):
            x = ops.Conv(c, (k, k), use_bias=not self.batch_norm, name=f"conv{i}")(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn{i}")(x)
            x = nn.relu(x)
            if pools[i]:
                x = ops.max_pool(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(x)


def build(space: ConvNetSpace, enc, *, num_classes: int = 10) -> ConvNet:
    """The ConvNet `enc` denotes."""
    layers = space.layers(enc)
    return ConvNet(channels=tuple(c for c, _ in layers), kernels=tuple(k for _, k in layers),
                   num_classes=num_classes, pool_every=space.pool_every, batch_norm=space.batch_norm)


register(ConvNetSpace, Networks(build=build))
