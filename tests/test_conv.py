"""nasjax.nn.ops: the "canonical" convolution vs `lax.conv_general_dilated`, and `max_pool`.

Tolerance: outputs and gradients agree to rtol 1e-4 with atol 1e-4 * max|reference| (float32 sums of
up to 7*7*96 = 4704 products, which strided gradients take in a different order); stride-1 results
are asserted bit-equal; the training-loss curves agree to rtol 1e-4.
"""

import functools
import unittest.mock

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from nasjax.nn import build, ops
from nasjax.spaces import ConvNetSpace

RTOL = 1e-4


def _reference(x, w, strides, padding):
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _assert_close(actual, expected):
    scale = max(float(jnp.max(jnp.abs(e))) for e in jax.tree.leaves(expected))
    chex.assert_trees_all_close(actual, expected, rtol=RTOL, atol=RTOL * scale)


def _case(kernel, stride, padding):
    """A random shape for (kernel, stride, padding), drawn from a seed fixed per case."""
    rng = np.random.default_rng([kernel, stride, padding == "SAME"])
    batch = int(rng.choice([1, 3, 20]))  # 20 runs several batch chunks
    size = int(rng.integers(kernel, 12))
    cin, cout = (int(c) for c in rng.integers(3, 97, size=2))
    # numpy draws: jax.random would compile a sampler per shape, which dominates these tests' time.
    x = jnp.asarray(rng.standard_normal((batch, size, size + 1, cin), np.float32))
    w = rng.standard_normal((kernel, kernel, cin, cout), np.float32) / np.sqrt(kernel ** 2 * cin)
    return x, jnp.asarray(w), (stride, stride)


# Every kernel size with both strides; each (stride, padding) pair occurs twice.
CASES = [(k, s, ("SAME", "VALID")[(k // 2 + s) % 2]) for k in (1, 3, 5, 7) for s in (1, 2)]


def _output_and_grads(conv, x, w, cotangent):
    """conv(x, w) and d/d(x, w) of sum(tanh(conv(x, w)) * cotangent), a loss whose dY varies by position."""
    return jax.jit(lambda x, w: (conv(x, w), jax.grad(
        lambda x, w: jnp.sum(jnp.tanh(conv(x, w)) * cotangent), (0, 1))(x, w)))(x, w)


def _case_and_reference(kernel, stride, padding):
    """(x, w, strides, cotangent, XLA's output, XLA's gradients) for a case."""
    x, w, strides = _case(kernel, stride, padding)
    shape = jax.eval_shape(lambda x, w: _reference(x, w, strides, padding), x, w).shape
    cotangent = jnp.asarray(np.random.default_rng(1).standard_normal(shape, np.float32))
    y_ref, grads_ref = _output_and_grads(lambda x, w: _reference(x, w, strides, padding), x, w, cotangent)
    return x, w, strides, cotangent, y_ref, grads_ref


@pytest.mark.parametrize("kernel,stride,padding", CASES)
def test_forward_and_gradients_match_xla(kernel, stride, padding):
    x, w, strides, cotangent, y_ref, grads_ref = _case_and_reference(kernel, stride, padding)
    y, grads = _output_and_grads(lambda x, w: ops.conv2d(x, w, strides, padding, impl="canonical"),
                                 x, w, cotangent)
    chex.assert_shape(y, y_ref.shape)
    if stride == 1:  # the same convolutions as XLA's canonicalized autodiff
        chex.assert_trees_all_equal((y, grads), (y_ref, grads_ref))
    _assert_close(y, y_ref)
    _assert_close(grads, grads_ref)


def _convolution_labels(hlo_text: str) -> list[str]:
    return [line.split("dim_labels=")[1].split(",")[0] for line in hlo_text.splitlines()
            if " convolution(" in line]


@pytest.mark.parametrize("stride", [1, 2])
def test_gradients_inside_a_loop_stay_in_the_fast_layout(stride):
    """Inside lax.map every convolution of the forward and backward pass keeps the NHWC x HWIO
    layout that XLA:CPU runs as an Eigen kernel; autodiff's own backward convolutions do not."""
    x, w, _ = _case(3, stride, "SAME")

    def compiled_labels(impl):
        grad = jax.grad(lambda w, x: jnp.sum(ops.conv2d(x, w, (stride, stride), impl=impl) ** 2), (0, 1))
        looped = jax.jit(lambda w, x: lax.map(lambda xi: grad(w, xi), x[None]))
        return _convolution_labels(looped.lower(w, x).compile().as_text())

    assert compiled_labels("canonical") == ["b01f_01io->b01f"] * 3
    if jax.default_backend() == "cpu":
        assert set(compiled_labels("xla")) != {"b01f_01io->b01f"}


def test_deterministic_bits():
    x, w, strides = _case(5, 2, "SAME")
    fn = jax.jit(jax.value_and_grad(
        lambda x, w: jnp.sum(ops.conv2d(x, w, strides, "SAME", impl="canonical") ** 2), (0, 1)))
    first, second = fn(x, w), fn(x, w)
    jax.tree.map(np.testing.assert_array_equal, first, second)


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (3, 7, 9, 4), (1, 1, 1, 2)])
@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_max_pool_matches_flax(shape, padding):
    x = jnp.asarray(np.random.default_rng(len(shape) + shape[1]).standard_normal(shape, np.float32))
    pools = [lambda x: ops.max_pool(x, 2, padding), lambda x: nn.max_pool(x, (2, 2), (2, 2), padding)]
    (y, grad), (y_ref, grad_ref) = (
        jax.jit(lambda x, pool=pool: (pool(x), jax.grad(lambda x: jnp.sum(pool(x) ** 2))(x)))(x)
        for pool in pools)
    chex.assert_trees_all_equal((y, grad), (y_ref, grad_ref))
    with pytest.raises(ValueError, match="padding"):
        ops.max_pool(x, 2, "FULL")


def test_impl_selection_and_fallback():
    assert ops.resolve_impl("xla") == "xla"
    assert ops.resolve_impl("auto") == ("canonical" if jax.default_backend() == "cpu" else "xla")
    with pytest.raises(ValueError, match="unknown conv impl"):
        ops.conv2d(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2)), impl="fast")
    # Grouped and dilated convolutions are not the canonical path's: they go to XLA and match it.
    x, _, _ = _case(3, 1, "SAME")
    w = jnp.asarray(np.random.default_rng(0).standard_normal((3, 3, x.shape[-1] // 2, 6), np.float32))
    y = ops.conv2d(x, w, (1, 1), "SAME", dilation=(2, 2), groups=2, impl="canonical")
    expected = lax.conv_general_dilated(x, w, (1, 1), "SAME", rhs_dilation=(2, 2),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2)
    np.testing.assert_array_equal(y, expected)


def test_conv_module_matches_flax_conv_layout(random_variables):
    x, _, _ = _case(3, 1, "SAME")
    params = random_variables(nn.Conv(7, (3, 3)), x)
    chex.assert_trees_all_equal_shapes(params, jax.eval_shape(ops.Conv(7, (3, 3)).init, jax.random.key(1), x))
    _assert_close(ops.Conv(7, (3, 3)).apply(params, x), nn.Conv(7, (3, 3)).apply(params, x))


def _loss_curve(module, params, images, labels, steps, compiler_options=None):
    opt = optax.sgd(0.05, momentum=0.9)

    def loss_fn(p):
        logits = module.apply(p, images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @functools.partial(jax.jit, compiler_options=compiler_options)
    def step(p, s):
        loss, g = jax.value_and_grad(loss_fn)(p)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    state, losses = opt.init(params), []
    for _ in range(steps):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    return np.array(losses)


def test_cifar_training_curve_matches_flax_conv(cifar, random_variables):
    from nasjax.data import normalize

    images, labels = normalize(cifar.train_images[:24]), jnp.asarray(cifar.train_labels[:24])
    space = ConvNetSpace.motivating()
    module = build(space, space.encode([(32, 5), (64, 3)]))
    params = random_variables(module, images[:1])
    fast = _loss_curve(module, params, images, labels, steps=5, compiler_options=ops.compiler_options())
    # The reference network: the same module in plain Flax (nn.Conv, nn.max_pool, XLA's defaults).
    with unittest.mock.patch.object(ops, "Conv", nn.Conv), unittest.mock.patch.object(
            ops, "max_pool", lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))):
        reference = _loss_curve(module, params, images, labels, steps=5)
    assert ops.resolve_impl() == ("canonical" if jax.default_backend() == "cpu" else "xla")
    assert reference[-1] < reference[0]  # the curve is a real training curve
    np.testing.assert_allclose(fast, reference, rtol=RTOL)


# --- depthwise convolutions and overlapping pools (DARTS' ops) ---------------------------------------
def _taps_case(shape, seed):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal(shape, np.float32)), rng


@pytest.mark.parametrize("kernel, dilation, stride", [(k, d, s) for k in (3, 5) for d in (1, 2) for s in (1, 2)])
def test_depthwise_matches_xla(kernel, dilation, stride):
    """Odd and even sizes in one case: H = 9, W = 8."""
    x, rng = _taps_case((3, 9, 8, 5), kernel + 10 * dilation + 100 * stride)
    w = jnp.asarray(rng.standard_normal((kernel, kernel, 5), np.float32) / kernel)
    shape = jax.eval_shape(lambda x: ops.depthwise_conv2d(x, w, stride, dilation, impl="xla"), x).shape
    cotangent = jnp.asarray(rng.standard_normal(shape, np.float32))
    results = [_output_and_grads(functools.partial(
        lambda x, w, impl: ops.depthwise_conv2d(x, w, stride, dilation, impl=impl), impl=impl), x, w, cotangent)
        for impl in ("canonical", "xla")]
    _assert_close(*results)


@pytest.mark.parametrize("pool", [ops.max_pool_window, ops.avg_pool_window])
@pytest.mark.parametrize("stride", [1, 2])
def test_window_pools_match_xla(pool, stride):
    x, rng = _taps_case((2, 9, 8, 3), stride)
    shape = jax.eval_shape(lambda x: pool(x, 3, stride, "xla"), x).shape
    cotangent = jnp.asarray(rng.standard_normal(shape, np.float32))
    results = [jax.jit(lambda x, impl=impl: (pool(x, 3, stride, impl), jax.grad(
        lambda x: jnp.sum(jnp.tanh(pool(x, 3, stride, impl)) * cotangent))(x)))(x)
        for impl in ("canonical", "xla")]
    _assert_close(*results)
    with pytest.raises(ValueError, match="odd window"):
        pool(x, 2, stride)


def test_max_pool_window_gradient_goes_to_the_first_maximum():
    """Tied maxima (a ReLU's zeros): the whole gradient goes to the first one, as select-and-scatter."""
    x = jnp.asarray(np.maximum(np.random.default_rng(3).standard_normal((2, 7, 6, 3), np.float32), 0))
    grads = [jax.jit(jax.grad(lambda x, impl=impl: jnp.sum(ops.max_pool_window(x, 3, 1, impl) ** 3 + 
                                                            ops.max_pool_window(x, 3, 1, impl))))(x)
             for impl in ("canonical", "xla")]
    np.testing.assert_array_equal(*grads)


def test_taps_ops_inside_a_loop_compile_to_elementwise_work():
    """Forward and gradient inside lax.map: no convolution, reduce-window or select-and-scatter left,
    the ops XLA:CPU runs slowly in loop bodies."""
    x, rng = _taps_case((2, 8, 8, 4), 0)
    w = jnp.asarray(rng.standard_normal((3, 3, 4), np.float32))

    def loss(x, w):
        y = ops.depthwise_conv2d(x, w, 2, 2, impl="canonical")
        return jnp.sum(ops.max_pool_window(y, 3, 1, "canonical") + ops.avg_pool_window(y, 3, 1, "canonical"))

    looped = jax.jit(lambda x, w: lax.map(lambda xi: jax.grad(loss, (0, 1))(xi, w), x[None]))
    text = looped.lower(x, w).compile().as_text()
    for op in ("convolution(", "reduce-window(", "select-and-scatter("):
        assert op not in text


def _batch_norm_by_autodiff(x, scale, bias, eps=1e-5):
    mean = jnp.mean(x, axis=(0, 1, 2))
    var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
    return (x - mean) * (lax.rsqrt(var + eps) * scale) + bias, mean, var


@pytest.mark.parametrize("impl", ["canonical", "xla"])
@pytest.mark.parametrize("shape", [(4, 9, 8, 5), (1, 1, 1, 3), (3, 4, 4, 64)])
def test_batch_norm_train_matches_autodiff(impl, shape):
    """Output, batch statistics and the written-out gradients (x, scale, bias) of `batch_norm_train`
    against autodiff of the textbook formula, on an input far from zero mean and unit variance."""
    x, rng = _taps_case(shape, shape[-1])
    x = 3.0 * x + 2.0
    scale, bias = (jnp.asarray(rng.standard_normal(shape[-1:], np.float32)) for _ in range(2))
    cotangent = jnp.asarray(rng.standard_normal(shape, np.float32))

    def outputs_and_grads(bn):
        loss = lambda x, scale, bias: jnp.sum(jnp.tanh(bn(x, scale, bias)[0]) * cotangent)  # noqa: E731
        return bn(x, scale, bias), jax.grad(loss, (0, 1, 2))(x, scale, bias)

    actual = jax.jit(lambda: outputs_and_grads(functools.partial(ops.batch_norm_train, impl=impl)))()
    _assert_close(actual, jax.jit(lambda: outputs_and_grads(_batch_norm_by_autodiff))())
