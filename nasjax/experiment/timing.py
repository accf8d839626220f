"""Timing for the perf_*.py scripts: interleaved medians, the machine's matmul ceiling, and nasjax's
ConvNets built from plain Flax layers (the reference the CPU kernels are measured against)."""

from __future__ import annotations

import contextlib
import statistics
import time
import unittest.mock

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nasjax.nn import ops


def interleaved_medians(fns: dict, steps: int) -> dict[str, float]:
    """Median wall ms of each `fns[name]()` over `steps` rounds that call every fn in turn, after two
    warm-up calls each (compile, caches): drifts in machine speed hit all fns alike."""
    for fn in fns.values():
        fn(), fn()
    times = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def matmul_peaks(steps: int, key) -> dict[str, float]:
    """GFLOP/s of a large f32 matmul (4096x2048 @ 2048x2048) in XLA (jitted jnp.dot, nasjax's options)
    and, when installed, PyTorch: the ceiling a convolution can reach in each."""
    n = 2048
    a, b = jax.random.normal(key, (2 * n, n)), jax.random.normal(key, (n, n))
    dot = jax.jit(jnp.dot, compiler_options=ops.compiler_options())
    fns = {"xla": lambda: dot(a, b).block_until_ready()}
    try:
        import torch
        ta, tb = torch.tensor(np.asarray(a)), torch.tensor(np.asarray(b))
        out = torch.empty(2 * n, n)
        fns["torch"] = lambda: torch.mm(ta, tb, out=out)
    except ImportError:
        pass
    return {name: 2.0 * 2 * n ** 3 / (ms * 1e6) for name, ms in interleaved_medians(fns, steps).items()}


@contextlib.contextmanager
def plain_flax():
    """Within: nasjax's spaces build their ConvNets from `nn.Conv` and `nn.max_pool` (plain Flax)."""
    with unittest.mock.patch.object(ops, "Conv", nn.Conv), unittest.mock.patch.object(
            ops, "max_pool", lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))):
        yield
