"""The compute cost of a network, one definition for every space.

FLOPs = 2 x the multiply-adds of the network's convolutions and dense layers in one image's inference
forward pass (`train=False`), for a given input shape. Pooling, normalisation, activations, additions
and biases are not counted, as NAS papers count (their "FLOPs" are usually these multiply-adds, e.g.
NAS-Bench-201's 7.78M for its cells without convolutions; nasjax reports two operations per
multiply-add). A convolution producing an (H', W', C_out) map with a
kh x kw kernel over C_in / groups input channels costs H' W' C_out kh kw C_in / groups multiply-adds; a
dense layer C_in x C_out costs C_in C_out.

The count is read off the module's own layers (every `ops.Conv`, `nn.Conv` and `nn.Dense` call, with
the shapes they see), traced abstractly with `jax.eval_shape`: nothing is compiled or computed. A
module that computes convolutions without Flax layers (a DARTS cell over every candidate op) states
their count itself: `multiply_adds(*call args)`, asked instead of looking inside it.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nasjax.nn import ops

CONVS = (ops.Conv, nn.Conv)


def multiply_adds(module: nn.Module, variables: Any, image_shape: tuple[int, int, int]) -> int:
    """Multiply-adds of the convolutions and dense layers of `module.apply(variables, x, train=False)`
    for one image x of `image_shape` (H, W, C). `variables` may be shapes (`jax.eval_shape(init)`)."""
    counts: list[int] = []

    def count(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        layer = context.module
        if context.method_name == "__call__" and hasattr(layer, "multiply_adds"):
            counts.append(layer.multiply_adds(*args, **kwargs))
        elif context.method_name == "__call__" and isinstance(layer, (*CONVS, nn.Dense)):
            fan_in = args[0].shape[-1]
            if isinstance(layer, CONVS):
                fan_in = math.prod(layer.kernel_size) * fan_in // layer.feature_group_count
            counts.append(math.prod(out.shape) * fan_in)
        return out

    x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    with nn.intercept_methods(count):
        jax.eval_shape(lambda v, x: module.apply(v, x, train=False), variables, x)
    return sum(counts)


def forward_flops(module: nn.Module, variables: Any, image_shape: tuple[int, int, int]) -> float:
    """FLOPs (2 x multiply-adds, see the module docstring) of one image's inference forward pass."""
    return 2.0 * multiply_adds(module, variables, image_shape)
