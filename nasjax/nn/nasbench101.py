"""The NAS-Bench-101 network (nasbench/lib/model_builder.py) around one pruned cell, and its registration
as the networks of `NASBench101Space` (`nasjax.nn.build`); the module docstring of
`nasjax.spaces.nasbench101` describes it."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nasjax.nn import ops as _ops
from nasjax.nn.api import Networks, register
from nasjax.spaces.nasbench101 import NASBench101Space

# Official BatchNorm constants (nasbench/lib/base_ops.py).
BN_MOMENTUM, BN_EPSILON = 0.997, 1e-5


def vertex_channels(in_channels: int, out_channels: int, matrix: np.ndarray) -> list[int]:
    """Channels of every vertex of a pruned cell (model_builder.py `compute_vertex_channels`).

    The output's channels are split evenly over the inner vertices that feed it (the first
    `out % fan_in` of them get one more); every other inner vertex takes the largest width among the
    inner vertices it feeds, so widths never grow along an edge.
    """
    matrix = np.asarray(matrix)
    v = matrix.shape[0]
    channels = [0] * v
    channels[0], channels[v - 1] = in_channels, out_channels
    if v == 2:
        return channels
    fan_in = int(matrix[1:, v - 1].sum())
    base, extra = divmod(out_channels, fan_in)
    for t in range(1, v - 1):
        if matrix[t, v - 1]:
            channels[t] = base + (1 if extra > 0 else 0)
            extra -= 1
    for t in range(v - 3, 0, -1):
        if not matrix[t, v - 1]:
            channels[t] = max([channels[t]] + [channels[d] for d in range(t + 1, v - 1) if matrix[t, d]])
    return channels


class ConvBNReLU(nn.Module):
    """k x k conv (no bias, SAME) -> BN -> ReLU: (B, H, W, C) -> (B, H, W, features)."""

    features: int
    kernel: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = _ops.Conv(self.features, (self.kernel, self.kernel), use_bias=False, name="conv")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                         name="bn")(x)
        return nn.relu(x)


class NB101Cell(nn.Module):
    """One pruned cell: (B, H, W, C_in) -> (B, H, W, channels).

    matrix: the pruned (V', V') adjacency as nested tuples; ops: names of its V'-2 inner vertices.
    """

    matrix: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]
    channels: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        m = np.asarray(self.matrix)
        v = m.shape[0]
        width = vertex_channels(x.shape[-1], self.channels, m)
        tensors, to_output = [x], []
        for t in range(1, v - 1):
            # Inner inputs are truncated to this vertex's width (they are at most one channel wider).
            inputs = [tensors[s][..., :width[t]] for s in range(1, t) if m[s, t]]
            if m[0, t]:
                inputs.append(ConvBNReLU(width[t], 1, name=f"proj{t}")(x, train))
            h = sum(inputs[1:], inputs[0])
            op = self.ops[t - 1]
            if op == "maxpool3x3":
                h = nn.max_pool(h, (3, 3), strides=(1, 1), padding="SAME")
            else:
                h = ConvBNReLU(width[t], 3 if op == "conv3x3-bn-relu" else 1, name=f"vertex{t}")(h, train)
            tensors.append(h)
            if m[t, v - 1]:
                to_output.append(h)
        if not to_output:  # the input feeds the output directly and nothing else does
            return ConvBNReLU(self.channels, 1, name="proj_out")(x, train)
        out = jnp.concatenate(to_output, axis=-1)
        if m[0, v - 1]:
            out = out + ConvBNReLU(self.channels, 1, name="proj_out")(x, train)
        return out


class NB101Network(nn.Module):
    """The NAS-Bench-101 network around one pruned cell: (B, H, W, 3) -> logits (B, num_classes)."""

    matrix: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]
    num_classes: int = 10
    stem_channels: int = 128
    num_stacks: int = 3
    cells_per_stack: int = 3

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = ConvBNReLU(self.stem_channels, 3, name="stem")(x, train)
        for s in range(self.num_stacks):
            channels = x.shape[-1]
            if s > 0:
                x = _ops.max_pool(x, padding="SAME")
                channels *= 2
            for c in range(self.cells_per_stack):
                x = NB101Cell(self.matrix, self.ops, channels, name=f"stack{s}_cell{c}")(x, train)
        x = jnp.mean(x, axis=(1, 2))
        # tf.layers.dense's default initializer.
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.glorot_uniform(), name="head")(x)


def build(space: NASBench101Space, enc, *, num_classes: int = 10, stem_channels: int = 128, num_stacks: int = 3,
          cells_per_stack: int = 3) -> NB101Network:
    """The NAS-Bench-101 network (defaults: the benchmark's) built around the pruned cell."""
    matrix, names = space.spec(enc)
    return NB101Network(matrix=tuple(map(tuple, matrix.tolist())), ops=tuple(names[1:-1]),
                        num_classes=num_classes, stem_channels=stem_channels,
                        num_stacks=num_stacks, cells_per_stack=cells_per_stack)


register(NASBench101Space, Networks(build=build))
