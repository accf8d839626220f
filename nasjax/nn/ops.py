"""Primitive layers and CPU kernels shared by every network (`nasjax.nn`), and the XLA compiler
options of nasjax's programs.

`Conv` has the parameter layout of `flax.linen.Conv` (kernel HWIO, bias) and computes through
`conv2d`, which picks the convolution implementation that is fast on the backend in use:

* ``"xla"``: `lax.conv_general_dilated` and its autodiff (the choice on GPU/TPU).
* ``"canonical"`` (the CPU choice): the same forward convolution; the input and kernel gradients are
  also written as forward convolutions in the NHWC x HWIO layout, on explicitly transposed operands.
  XLA:CPU runs a convolution as a fast Eigen kernel only in that layout. At the top level of a program
  its canonicalization pass transposes autodiff's backward convolutions into it, but not inside a
  loop body (`lax.scan`, `lax.map`: a training epoch), where they fell back to a naive loop 25-250x
  slower (3x3/32 layer, batch 128: dX 19 -> 500 ms, dW 39 -> 9,300 ms). Optimization barriers keep the
  explicit transposes from being folded back. Stride-1 results equal XLA's bit for bit.
* ``"auto"``: ``"canonical"`` on CPU, ``"xla"`` elsewhere.

Grouped and dilated convolutions go to XLA, except depthwise ones (`depthwise_conv2d`): on CPU those
and the overlapping k x k pools (`max_pool_window`, `avg_pool_window`) are shifted multiply-adds (maxes)
over the k x k taps with explicit gradients of the same form, elementwise work that XLA:CPU fuses and
runs near memory bandwidth inside loop bodies too, where its grouped convolution and select-and-scatter
ran at 0.7 GFLOP/s (depthwise 3x3/16, batch 64: 61 ms fwd+bwd, 488 ms inside `lax.scan`). Accelerators
keep XLA's own ops. Figures: `experiments/perf_conv.py`.

Training-mode batch norm (`batch_norm_train`, DARTS' cells) has its gradient written out, and on CPU
its per-channel sums are products with a row of ones (`channel_sums`): XLA:CPU's reductions to a few
lanes ran at a third of memory bandwidth, and a batch norm by autodiff takes several of them.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

IMPLS = ("auto", "xla", "canonical")  # "canonical" is the CPU path of every op below
# XLA:CPU (jaxlib 0.10) hands convolutions and dots to YNNPACK by default. On this project's CPU,
# XLA's Eigen kernels ran them 1.3-2x faster (experiments/perf_conv.py), so nasjax compiles its
# training programs with YNNPACK off (`compiler_options`).
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}

Pads = tuple[tuple[int, int], tuple[int, int]]


def resolve_impl(impl: str = "auto") -> str:
    """"auto" -> the implementation used on `jax.default_backend()`; other names are checked and kept."""
    if impl not in IMPLS:
        raise ValueError(f"unknown conv impl {impl!r}; expected one of {IMPLS}")
    if impl == "auto":
        return "canonical" if jax.default_backend() == "cpu" else "xla"
    return impl


def compiler_options(platform: str | None = None) -> dict[str, str]:
    """`jax.jit(..., compiler_options=...)` for nasjax's programs on `platform` (default: the default
    backend): `CPU_COMPILER_OPTIONS` on CPU, none elsewhere."""
    return dict(CPU_COMPILER_OPTIONS) if (platform or jax.default_backend()) == "cpu" else {}


def _spatial_pads(size: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                  padding) -> Pads:
    """Explicit (lo, hi) pads per spatial dim for "SAME" / "VALID" / explicit pairs, as XLA computes them."""
    if isinstance(padding, str):
        return tuple(tuple(p) for p in lax.padtype_to_pads(size, kernel, strides, padding))
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    if len(pads) != 2:
        raise ValueError(f"padding needs 2 (lo, hi) pairs, got {padding!r}")
    return pads


def _xla_conv(x: jax.Array, w: jax.Array, strides, padding, dilation=(1, 1), groups: int = 1):
    return lax.conv_general_dilated(
        x, w, window_strides=strides, padding=padding, rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


def _dilate(dy: jax.Array, strides: tuple[int, int]) -> jax.Array:
    """dY with stride - 1 zeros between neighbours, so strided gradients become stride-1 convolutions."""
    if strides == (1, 1):
        return dy
    return lax.pad(dy, jnp.zeros((), dy.dtype), ((0, 0, 0), (0, 0, strides[0] - 1), (0, 0, strides[1] - 1),
                                                 (0, 0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _canonical_conv(x: jax.Array, w: jax.Array, strides: tuple[int, int], pads: Pads) -> jax.Array:
    """XLA's convolution, x (B, H, W, C), w (kh, kw, C, O) -> (B, Ho, Wo, O); `_canonical_bwd` gives
    its gradients."""
    return _xla_conv(x, w, strides, pads)


def _canonical_fwd(x, w, strides, pads):
    return _canonical_conv(x, w, strides, pads), (x, w)


def _canonical_bwd(strides, pads, res, dy):
    x, w = res
    dyd = _dilate(dy, strides)
    dims = list(zip(w.shape[:2], (lo for lo, _ in pads), x.shape[1:3], dyd.shape[1:3]))  # (k, lo, size, d)
    # dX: a stride-1 correlation of the dilated dY with the flipped kernel, in/out channels swapped,
    # padded to a "full" convolution cropped to x's extent.
    w_t = lax.optimization_barrier(jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2))
    dx = _xla_conv(dyd, w_t, (1, 1), [(k - 1 - lo, size + lo - d) for k, lo, size, d in dims])
    # dW: images and channels trade places: x as (C, H, W, B) convolved with dY as (Ho, Wo, B, O).
    x_t, dy_t = lax.optimization_barrier((x.transpose(3, 1, 2, 0), dyd.transpose(1, 2, 0, 3)))
    dw = _xla_conv(x_t, dy_t, (1, 1), [(lo, k - size - lo + d - 1) for k, lo, size, d in dims])
    dw = dw.transpose(1, 2, 0, 3)
    return dx, dw


_canonical_conv.defvjp(_canonical_fwd, _canonical_bwd)


def conv2d(x: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1),
           padding: str | Sequence[tuple[int, int]] = "SAME", dilation: Sequence[int] = (1, 1),
           groups: int = 1, impl: str = "auto") -> jax.Array:
    """NHWC x HWIO convolution: x (B, H, W, Cin), kernel (kh, kw, Cin/groups, Cout) -> (B, H', W', Cout).

    `impl` is "auto" | "xla" | "canonical" (module docstring); grouped or dilated convolutions always
    run on XLA's autodiff.
    """
    strides, dilation = tuple(int(s) for s in strides), tuple(int(d) for d in dilation)
    impl = resolve_impl(impl)
    if impl == "canonical" and groups == 1 and dilation == (1, 1):
        if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[2] != x.shape[3]:
            raise ValueError(f"conv2d needs x (B, H, W, C) and kernel (kh, kw, C, O); got {x.shape}, "
                             f"{kernel.shape}")
        pads = _spatial_pads(x.shape[1:3], kernel.shape[:2], strides, padding)
        return _canonical_conv(x, kernel, strides, pads)
    return _xla_conv(x, kernel, strides, padding, dilation, groups)


def max_pool(x: jax.Array, size: int = 2, padding: str = "VALID") -> jax.Array:
    """Non-overlapping size x size max-pool (stride = size): x (B, H, W, C) -> (B, H', W', C).

    "VALID" drops the last rows/columns that do not fill a window; "SAME" pads them with -inf.
    Equals `nn.max_pool(x, (size, size), strides=(size, size), padding=padding)` forward. Computed as
    a reshape and a max, whose gradient is elementwise, instead of XLA's select-and-scatter: on this
    project's CPU the backward of a 2x2 pool after a 32x32x64 ReLU fell from 131 to 22 ms (batch 128).
    Tied maxima share the gradient equally (a pooled ReLU's ties are zeros, whose gradient the ReLU
    drops).
    """
    if padding not in ("VALID", "SAME"):
        raise ValueError(f"max_pool padding must be 'VALID' or 'SAME', got {padding!r}")
    b, h, w, c = x.shape
    if padding == "SAME":
        x = jnp.pad(x, ((0, 0), (0, -h % size), (0, -w % size), (0, 0)), constant_values=-jnp.inf)
    else:
        x = x[:, :h - h % size, :w - w % size]
    ho, wo = x.shape[1] // size, x.shape[2] // size
    return jnp.max(x.reshape(b, ho, size, wo, size, c), axis=(2, 4))


# --- depthwise convolutions and overlapping pools as k x k shifted taps (the CPU path) ---------------
def _taps(xp: jax.Array, k: int, dilation: int, stride: int, out: tuple[int, int]):
    """The k * k shifted views of padded xp (B, Hp, Wp, C) that tap (a, b) of a dilated, strided k x k
    window reads for every output pixel: a list of (a, b, view (B, *out, C)), row-major."""
    ho, wo = out
    return [(a, b, lax.slice(xp, (0, a * dilation, b * dilation, 0),
                             (xp.shape[0], a * dilation + stride * (ho - 1) + 1,
                              b * dilation + stride * (wo - 1) + 1, xp.shape[3]), (1, stride, stride, 1)))
            for a in range(k) for b in range(k)]


def _out_size(size: int, k: int, stride: int, dilation: int, pad: int) -> int:
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def _sums_over_pixels(arrays: list[jax.Array]) -> list[jax.Array]:
    """Each of arrays (B, H, W, C) summed over B, H, W -> (C,), as ONE variadic reduction: a single
    pass over every input. Nine separate reductions to C lanes ran at ~1 GFLOP/s on XLA:CPU (a
    depthwise 3x3 kernel gradient at 64x32x32x16: 12.9 ms, against 0.8 ms this way). For summands
    computed in the same loop (tap views times dY), which it never stores: `channel_sums`' products with
    ones took 14.4 against 2.9 ms there (5x5: 30.6 against 5.0 ms)."""
    zeros = tuple(jnp.zeros((), a.dtype) for a in arrays)
    return list(lax.reduce(tuple(arrays), zeros, lambda a, b: tuple(x + y for x, y in zip(a, b)),
                           (0, 1, 2)))


def _scatter_taps(parts, k: int, dilation: int, stride: int, padded: tuple[int, int], pad: int,
                  size: tuple[int, int]) -> jax.Array:
    """Transpose of `_taps`: sum the per-tap cotangents parts[a * k + b] (B, Ho, Wo, C) back onto the
    padded input grid and crop the padding: (B, H, W, C). Tap offset a * dilation = s * q + r lands on
    rows r, r + s, ... shifted by q, so the parts are padded into place per (row, column) phase on an
    s-times smaller grid, summed, and the phases interleaved once (one phase at stride 1; XLA:CPU ran
    the parts' interior-padded scatters 3x slower)."""
    offsets = [(a * dilation, b * dilation) for a in range(k) for b in range(k)]
    ho, wo = parts[0].shape[1:3]
    grid = tuple(-(-n // stride) for n in padded)  # each phase's rows and columns
    phases = {}
    for (a, b), part in zip(offsets, parts):
        (qa, ra), (qb, rb) = divmod(a, stride), divmod(b, stride)
        placed = lax.pad(part, jnp.zeros((), part.dtype),
                         [(0, 0, 0), (qa, grid[0] - qa - ho, 0), (qb, grid[1] - qb - wo, 0), (0, 0, 0)])
        phases[ra, rb] = placed if (ra, rb) not in phases else phases[ra, rb] + placed
    zero = jnp.zeros((parts[0].shape[0], *grid, parts[0].shape[3]), parts[0].dtype)
    rows = [jnp.stack([phases.get((ra, rb), zero) for rb in range(stride)], axis=3) for ra in range(stride)]
    total = jnp.stack(rows, axis=2).reshape(zero.shape[0], grid[0] * stride, grid[1] * stride, zero.shape[3])
    return total[:, pad:pad + size[0], pad:pad + size[1]]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _taps_depthwise(x: jax.Array, w: jax.Array, stride: int, dilation: int, pad: int) -> jax.Array:
    """sum over taps of view * w[a, b]: x (B, H, W, C), w (k, k, C) -> (B, Ho, Wo, C)."""
    k = w.shape[0]
    out = tuple(_out_size(n, k, stride, dilation, pad) for n in x.shape[1:3])
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return sum(view * w[a, b] for a, b, view in _taps(xp, k, dilation, stride, out))


def _taps_depthwise_fwd(x, w, stride, dilation, pad):
    return _taps_depthwise(x, w, stride, dilation, pad), (x, w)


def _taps_depthwise_bwd(stride, dilation, pad, res, dy):
    x, w = res
    k = w.shape[0]
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    views = _taps(xp, k, dilation, stride, dy.shape[1:3])
    dw = jnp.stack(_sums_over_pixels([view * dy for _, _, view in views])).reshape(w.shape)
    if stride == 1 and 2 * pad == dilation * (k - 1):  # "same": the transpose is the flipped kernel's conv
        return _taps_depthwise(dy, w[::-1, ::-1], 1, dilation, pad), dw
    dx = _scatter_taps([dy * w[a, b] for a, b, _ in views], k, dilation, stride, xp.shape[1:3], pad,
                       x.shape[1:3])
    return dx, dw


_taps_depthwise.defvjp(_taps_depthwise_fwd, _taps_depthwise_bwd)


def depthwise_conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1, dilation: int = 1,
                     padding: int | None = None, impl: str = "auto") -> jax.Array:
    """Depthwise k x k convolution, symmetric zero padding (default dilation * (k - 1) // 2, as PyTorch's
    `Conv2d(C, C, k, stride, padding, dilation, groups=C)` in DARTS' ops): x (B, H, W, C),
    kernel (k, k, C) -> (B, Ho, Wo, C). CPU: shifted taps with explicit gradients (module docstring)."""
    k = kernel.shape[0]
    if x.ndim != 4 or kernel.shape != (k, k, x.shape[3]):
        raise ValueError(f"depthwise_conv2d needs x (B, H, W, C) and kernel (k, k, C); got {x.shape}, "
                         f"{kernel.shape}")
    pad = dilation * (k - 1) // 2 if padding is None else int(padding)
    if resolve_impl(impl) == "canonical":
        return _taps_depthwise(x, kernel, int(stride), int(dilation), pad)
    return _xla_conv(x, kernel[:, :, None, :], (stride, stride), ((pad, pad), (pad, pad)),
                     (dilation, dilation), x.shape[3])


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _taps_max_pool(x: jax.Array, k: int, stride: int) -> jax.Array:
    return _taps_max_pool_fwd(x, k, stride)[0]


def _taps_max_pool_fwd(x, k, stride):
    """(max over taps, (int8 index of each window's first maximum, a (H, W) zero-size token of x's size))."""
    pad = (k - 1) // 2
    out = tuple(_out_size(n, k, stride, 1, pad) for n in x.shape[1:3])
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-jnp.inf)
    best, arg = None, None
    for a, b, view in _taps(xp, k, 1, stride, out):
        if best is None:
            best, arg = view, jnp.zeros(view.shape, jnp.int8)
        else:  # strictly greater: the first maximum in row-major window order wins, as select-and-scatter
            better = view > best
            best, arg = jnp.where(better, view, best), jnp.where(better, jnp.int8(a * k + b), arg)
    return best, (arg, jnp.zeros((0, *x.shape[1:3]), x.dtype))


def _taps_max_pool_bwd(k, stride, res, dy):
    arg, token = res
    pad, size = (k - 1) // 2, token.shape[1:]
    parts = [jnp.where(arg == t, dy, 0.0).astype(dy.dtype) for t in range(k * k)]
    return (_scatter_taps(parts, k, 1, stride, (size[0] + 2 * pad, size[1] + 2 * pad), pad, size),)


_taps_max_pool.defvjp(_taps_max_pool_fwd, _taps_max_pool_bwd)


def max_pool_window(x: jax.Array, window: int = 3, stride: int = 1, impl: str = "auto") -> jax.Array:
    """Overlapping window x window max-pool, padding (window - 1) // 2 with -inf (PyTorch's
    `MaxPool2d(k, stride, padding=k // 2)`): x (B, H, W, C) -> (B, Ho, Wo, C). The gradient goes to the
    first maximum of each window, as XLA's select-and-scatter. CPU: shifted taps (module docstring)."""
    if window % 2 != 1:
        raise ValueError(f"max_pool_window needs an odd window, got {window}")
    if resolve_impl(impl) == "canonical":
        return _taps_max_pool(x, window, stride)
    p = (window - 1) // 2
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, window, window, 1), (1, stride, stride, 1),
                             ((0, 0), (p, p), (p, p), (0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _taps_window_sum(x: jax.Array, k: int) -> jax.Array:
    """Stride-1 k x k window sums over zero padding (k - 1) // 2: x (B, H, W, C) -> (B, H, W, C). The
    map is self-adjoint (pixel j is in i's window iff i is in j's), so its gradient is the same sums of
    the cotangent: one pass, where autodiff's nine padded slices ran 3x slower than XLA's pool."""
    p = (k - 1) // 2
    return sum(view for _, _, view in _taps(jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))), k, 1, 1, x.shape[1:3]))


_taps_window_sum.defvjp(lambda x, k: (_taps_window_sum(x, k), None),
                        lambda k, _, dy: (_taps_window_sum(dy, k),))


def avg_pool_window(x: jax.Array, window: int = 3, stride: int = 1, impl: str = "auto") -> jax.Array:
    """Overlapping window x window average pool, padding (window - 1) // 2, padding not counted
    (PyTorch's `AvgPool2d(k, stride, padding=k // 2, count_include_pad=False)`):
    x (B, H, W, C) -> (B, Ho, Wo, C). CPU: a sum of shifted taps (its autodiff is shifted pads)."""
    if window % 2 != 1:
        raise ValueError(f"avg_pool_window needs an odd window, got {window}")
    p = (window - 1) // 2
    pads = ((0, 0), (p, p), (p, p), (0, 0))
    if resolve_impl(impl) == "canonical":
        total = _taps_window_sum(x, window) if stride == 1 else sum(
            view for _, _, view in _taps(jnp.pad(x, pads), window, 1, stride,
                                         tuple(_out_size(n, window, stride, 1, p) for n in x.shape[1:3])))
    else:
        total = lax.reduce_window(x, 0.0, lax.add, (1, window, window, 1), (1, stride, stride, 1), pads)
    # Window sizes are static: count them with numpy, no extra work in the program.
    ones = np.pad(np.ones(x.shape[1:3], np.float32), p)
    count = sum(ones[a:a + stride * (total.shape[1] - 1) + 1:stride, b:b + stride * (total.shape[2] - 1) + 1:stride]
                for a in range(window) for b in range(window))
    return total / count[None, :, :, None].astype(x.dtype)


# --- batch normalization over (B, H, W) in training mode (the CPU path) ------------------------------
def channel_sums(arrays: list[jax.Array], impl: str = "auto") -> list[jax.Array]:
    """Each of arrays (..., C) summed over every axis but the last -> (C,). CPU: one product with a row
    of ones per array; XLA:CPU splits a reduction to a few lanes into a partial reduce-window and a
    reduce that ran at a third of the bandwidth its GEMM streams at (64x32x32x16: 0.50 against 0.24 ms).
    For arrays the program stores anyway (batch norm's); `_sums_over_pixels` for summands it need not."""
    if resolve_impl(impl) != "canonical":
        return [jnp.sum(a, axis=tuple(range(a.ndim - 1))) for a in arrays]
    return [lax.dot(jnp.ones((1, a.size // a.shape[-1]), a.dtype), a.reshape(-1, a.shape[-1]),
                    precision=lax.Precision.HIGHEST)[0] for a in arrays]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _batch_norm_train(x, scale, bias, eps: float, impl: str):
    return _batch_norm_train_fwd(x, scale, bias, eps, impl)[0]


def _batch_norm_train_fwd(x, scale, bias, eps, impl):
    n = x.size // x.shape[-1]
    (total,) = channel_sums([x], impl)
    mean = total / n
    centered = x - mean
    (squares,) = channel_sums([centered * centered], impl)
    var = squares / n
    inv = lax.rsqrt(var + eps)
    return (centered * (inv * scale) + bias, mean, var), (centered, inv, scale)


def _batch_norm_train_bwd(eps, impl, res, cts):
    centered, inv, scale = res
    dy = cts[0]  # the batch statistics only feed the running averages, which are not differentiated
    n = dy.size // dy.shape[-1]
    dbias, dot = channel_sums([dy, dy * centered], impl)
    dx = (scale * inv) * (dy - dbias / n - centered * (inv * inv * dot / n))
    return dx, dot * inv, dbias


_batch_norm_train.defvjp(_batch_norm_train_fwd, _batch_norm_train_bwd)


def batch_norm_train(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float = 1e-5,
                     impl: str = "auto") -> tuple[jax.Array, jax.Array, jax.Array]:
    """Training-mode batch norm over every axis but the last, with its gradient written out (two
    channel sums forward, two backward): x (..., C), scale, bias (C,) -> (y, batch mean (C,), biased
    batch variance (C,)). The statistics are for running averages: no gradient flows through them."""
    return _batch_norm_train(x, scale, bias, float(eps), resolve_impl(impl))


class Conv(nn.Module):
    """2-D convolution over NHWC inputs; drop-in for `nn.Conv` (same parameter names and shapes)."""

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: str = "SAME"
    kernel_dilation: tuple[int, int] = (1, 1)
    feature_group_count: int = 1
    use_bias: bool = True
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array, kernel_mask: jax.Array | None = None) -> jax.Array:
        """kernel_mask (kh, kw), optional: multiplies the kernel (a masked ConvNet, `nasjax.nn.convnet`)."""
        in_features = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init,
                            (*self.kernel_size, in_features // self.feature_group_count, self.features),
                            jnp.float32)
        if kernel_mask is not None:
            kernel = kernel * kernel_mask[:, :, None, None]
        y = conv2d(x, kernel.astype(x.dtype), self.strides, self.padding, self.kernel_dilation,
                   self.feature_group_count)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32).astype(x.dtype)
        return y


def batch_norm(train: bool, name: str) -> nn.BatchNorm:
    """BatchNorm with PyTorch's defaults, as the NB-201 and DARTS references use: momentum 0.1
    (flax 0.9), eps 1e-5."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


class ReLUConvBN(nn.Module):
    """ReLU -> k x k conv (no bias, padding k // 2) -> BN: (B, H, W, C) -> (B, H/stride, W/stride, features)."""

    features: int
    kernel: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        p = self.kernel // 2
        # Explicit symmetric padding, as PyTorch pads (SAME would pad (0, 1) at stride 2).
        x = Conv(self.features, (self.kernel, self.kernel), strides=(self.stride, self.stride),
                 padding=((p, p), (p, p)), use_bias=False, name="conv")(nn.relu(x))
        return batch_norm(train, "bn")(x)
