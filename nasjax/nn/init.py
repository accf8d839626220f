"""Flax's default kernel initializer (`lecun_normal`), for networks that draw their parameters
themselves instead of through Flax layers (the DARTS cells' stacked edges, the layered ConvNet)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# The standard deviation of N(0, 1) truncated to [-2, 2]: Flax's truncated-normal initialisers divide by
# it so that the kept draws have the requested variance (flax.linen.initializers.variance_scaling).
TRUNCATED_STD = .87962566103423978


def lecun_std(fan_in: int) -> float:
    """The factor Flax's lecun_normal multiplies a [-2, 2]-truncated N(0, 1) draw by: variance 1 / fan_in."""
    return fan_in ** -0.5 / TRUNCATED_STD


def lecun_normal(key: jax.Array, shapes: list[tuple[int, ...]], fan_ins: list[int]) -> list[jax.Array]:
    """Kernels of `shapes` distributed as Flax's lecun_normal with the given fan-ins, all from ONE
    truncated-normal draw of their total size, cut in order (a sampler per kernel costs seconds to
    compile)."""
    sizes = [math.prod(shape) for shape in shapes]
    draw = jax.random.truncated_normal(key, -2.0, 2.0, (sum(sizes),), jnp.float32)
    out, start = [], 0
    for shape, size, fan_in in zip(shapes, sizes, fan_ins):
        out.append(draw[start:start + size].reshape(shape) * lecun_std(fan_in))
        start += size
    return out
