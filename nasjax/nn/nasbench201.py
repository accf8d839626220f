"""The NAS-Bench-201 network (Dong & Yang 2020): the benchmark's macro skeleton around its cell, and its
registration as the networks of `NASBench201Space` (`nasjax.nn.build`)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nasjax.nn import ops
from nasjax.nn.api import Networks, register
from nasjax.spaces.nasbench201 import EDGES, NUM_NODES, NASBench201Space


class ResNetBasicBlock(nn.Module):
    """The reduction block between stages: two ReLU-Conv3x3-BN (first with stride 2) plus a
    shortcut of 2x2 average pooling and a 1x1 conv: (B, H, W, C) -> (B, H/2, W/2, features)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        y = ops.ReLUConvBN(self.features, 3, stride=2, name="conv_a")(x, train)
        y = ops.ReLUConvBN(self.features, 3, name="conv_b")(y, train)
        shortcut = nn.avg_pool(x, (2, 2), strides=(2, 2))
        shortcut = ops.Conv(self.features, (1, 1), use_bias=False, name="downsample")(shortcut)
        return shortcut + y


class NB201Cell(nn.Module):
    """One cell: `ops[e]` is the op name on edge `EDGES[e]`; (B, H, W, C) -> (B, H, W, C)."""

    ops: tuple[str, ...]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        channels = x.shape[-1]
        nodes = [x]
        for j in range(1, NUM_NODES):
            total = jnp.zeros_like(x)
            for e, (to, i) in enumerate(EDGES):
                if to != j:
                    continue
                op, h = self.ops[e], nodes[i]
                if op == "skip_connect":
                    total = total + h
                elif op == "nor_conv_1x1":
                    total = total + ops.ReLUConvBN(channels, 1, name=f"edge{j}_{i}")(h, train)
                elif op == "nor_conv_3x3":
                    total = total + ops.ReLUConvBN(channels, 3, name=f"edge{j}_{i}")(h, train)
                elif op == "avg_pool_3x3":
                    total = total + nn.avg_pool(h, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                                                count_include_pad=False)
                # "none" adds zeros.
            nodes.append(total)
        return nodes[-1]


class NB201Network(nn.Module):
    """The NAS-Bench-201 macro skeleton: stem (conv3x3 + BN), three stages of `cells_per_stage` cells with
    `channels`, 2x, 4x filters joined by `ResNetBasicBlock` reductions, BN-ReLU, global average pooling
    and a linear classifier. x (B, H, W, 3) -> logits (B, num_classes)."""

    ops: tuple[str, ...]
    num_classes: int = 10
    channels: int = 16
    cells_per_stage: int = 5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = ops.Conv(self.channels, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, name="stem")(x)
        x = ops.batch_norm(train, "stem_bn")(x)
        for stage in range(3):
            if stage:
                x = ResNetBasicBlock(self.channels * 2 ** stage, name=f"reduce{stage}")(x, train)
            for c in range(self.cells_per_stage):
                x = NB201Cell(self.ops, name=f"stage{stage}_cell{c}")(x, train)
        x = nn.relu(ops.batch_norm(train, "lastact_bn")(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="classifier")(x)


def build(space: NASBench201Space, enc, *, num_classes: int = 10, channels: int = 16,
          cells_per_stage: int = 5) -> NB201Network:
    """The benchmark's network (defaults C=16, N=5 as in NAS-Bench-201)."""
    return NB201Network(ops=tuple(space.op_names(enc)), num_classes=num_classes, channels=channels,
                        cells_per_stage=cells_per_stage)


register(NASBench201Space, Networks(build=build))
