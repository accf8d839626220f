"""The DARTS family's operations as pure functions of (params, batch statistics, x): the functional op
library the cells of `nasjax.nn.cells.cell` run (quark0/darts cnn/operations.py `OPS`, affine; the
NASNet space's 5x5 and 7x7 max pools, 7x7 separable conv and 1x1 conv as LaMCTS' LaNet operations.py).

Each op maps (p, s, x (B, H, W, C), train) -> (y, new s): p its parameters, s its batch statistics
(mean, var); `op_shapes` gives both as {leaf path: shape}, 'bn/mean' and 'bn/var' being the
statistics. BatchNorms are affine with PyTorch's defaults (momentum 0.1, eps 1e-5), as DARTS'.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from nasjax.nn import ops as primitives
from nasjax.spaces.nasnet import CELL_OPS

_BN_MOMENTUM, _BN_EPS = 0.1, 1e-5  # PyTorch's defaults, as DARTS' BatchNorms


def batch_norm(x: jax.Array, p: dict, s: dict, train: bool) -> tuple[jax.Array, dict]:
    """Affine BN of x (B, H, W, C) with params {scale, bias}, stats {mean, var} -> (y, new stats)."""
    if train:
        y, mean, var = primitives.batch_norm_train(x, p["scale"], p["bias"], _BN_EPS)
        mean, var = lax.stop_gradient(mean), lax.stop_gradient(var)
        return y, {"mean": (1 - _BN_MOMENTUM) * s["mean"] + _BN_MOMENTUM * mean,
                   "var": (1 - _BN_MOMENTUM) * s["var"] + _BN_MOMENTUM * var}
    return (x - s["mean"]) * (lax.rsqrt(s["var"] + _BN_EPS) * p["scale"]) + p["bias"], s


def pointwise(x: jax.Array, w: jax.Array) -> jax.Array:
    """1x1 convolution as a matmul: x (B, H, W, Cin), w (Cin, Cout) -> (B, H, W, Cout)."""
    return lax.dot_general(x, w, (((3,), (0,)), ((), ())))


def relu_conv_bn(p, s, x, train):
    """DARTS' ReLUConvBN 1x1 (a cell's preprocessing)."""
    y, bn = batch_norm(pointwise(nn.relu(x), p["pointwise"]), p["bn"], s["bn"], train)
    return y, {"bn": bn}


def factorized_reduce(p, s, x, train):
    """DARTS' FactorizedReduce: ReLU, two 1x1 stride-2 convs on x and x shifted by one pixel,
    concatenated, BN: (B, H, W, C) -> (B, H/2, W/2, Cout)."""
    x = nn.relu(x)
    y = jnp.concatenate([pointwise(x[:, ::2, ::2], p["conv_1"]), pointwise(x[:, 1::2, 1::2], p["conv_2"])],
                        axis=-1)
    y, bn = batch_norm(y, p["bn"], s["bn"], train)
    return y, {"bn": bn}


def dw_pw_bn(p, s, x, stride, dilation, train):
    """ReLU -> depthwise k x k (padding d (k - 1) / 2) -> pointwise -> BN: DARTS' DilConv and each
    half of its SepConv."""
    x = primitives.depthwise_conv2d(nn.relu(x), p["depthwise"], stride, dilation)
    y, bn = batch_norm(pointwise(x, p["pointwise"]), p["bn"], s["bn"], train)
    return y, {"bn": bn}


def op_shapes(op: str, c: int, stride: int) -> dict:
    """{leaf path: shape} of one op's parameters and batch statistics ('bn/mean', 'bn/var') at c channels."""
    bn = {"bn/scale": (c,), "bn/bias": (c,), "bn/mean": (c,), "bn/var": (c,)}
    if op == "skip_connect" and stride == 2:
        return {"conv_1": (c, c // 2), "conv_2": (c, c // 2), **bn}
    if op == "conv_1x1":  # a bare convolution, no ReLU or BN (LaNet's operations.py)
        return {"kernel": (c, c)}
    if op.startswith(("sep_conv", "dil_conv")):
        k = int(op[-1])
        one = {"depthwise": (k, k, c), "pointwise": (c, c), **bn}
        if op.startswith("dil_conv"):
            return one
        return {f"{half}/{leaf}": shape for half in ("sep1", "sep2") for leaf, shape in one.items()}
    return {}


def apply_op(op: str, p: dict, s: dict, x: jax.Array, stride: int, train: bool):
    """One cell op (operations.py `OPS`, affine): x (B, H, W, C) -> ((B, H/s, W/s, C), new stats)."""
    if op == "none":
        return jnp.zeros_like(x[:, ::stride, ::stride]), s
    if op.startswith("max_pool"):
        return primitives.max_pool_window(x, int(op[-1]), stride), s
    if op == "avg_pool_3x3":
        return primitives.avg_pool_window(x, 3, stride), s
    if op == "skip_connect":
        return (x, s) if stride == 1 else factorized_reduce(p, s, x, train)
    if op == "conv_1x1":
        return pointwise(x[:, ::stride, ::stride], p["kernel"]), s
    if op.startswith("dil_conv"):
        return dw_pw_bn(p, s, x, stride, 2, train)
    if op.startswith("sep_conv"):
        y, s1 = dw_pw_bn(p["sep1"], s["sep1"], x, stride, 1, train)
        y, s2 = dw_pw_bn(p["sep2"], s["sep2"], y, 1, 1, train)
        return y, {"sep1": s1, "sep2": s2}
    raise ValueError(f"unknown cell op {op!r}; known: {', '.join(CELL_OPS)}")


def nest(flat: dict) -> dict:
    out: dict = {}
    for path, value in flat.items():
        *head, leaf = path.split("/")
        node = out
        for h in head:
            node = node.setdefault(h, {})
        node[leaf] = value
    return out


def is_stat(path: str) -> bool:
    return path.endswith(("/mean", "/var"))
