"""Bit-reproducible float32 arithmetic: the same bits in any XLA program, batched (vmapped) or not.

Search decisions (LaNAS's routing, its fits) hang on the last bits of sums and products, and a
vmapped search must equal the searches run separately. XLA compiles a batched and an unbatched
program differently: a float multiply feeding an add may be fused into an FMA in one and not the
other, a division by a broadcast value may become a multiplication by its reciprocal in one and not
the other, and reductions and matrix products may associate differently. So every product that
feeds a sum goes through `mul`, divisions by a broadcast value are written as `mul` by its
reciprocal, every sum over samples goes through `exact_sums` (exact, hence order-free), and linear
systems through `spd_solve` (elementwise steps only); the rest is elementwise (correctly rounded).
`hashed_uniform` gives cheap tie-breaking noise per index.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp


def mul(a: jax.Array, b: jax.Array) -> jax.Array:
    """a * b rounded to 22 mantissa bits: an integer-level rounding step between the multiply and
    whatever adds it, so no compiler can fuse the two into an FMA (whose single rounding would
    differ from the product's)."""
    return jax.lax.reduce_precision(a * b, exponent_bits=8, mantissa_bits=22)


def project(x: jax.Array, w: jax.Array) -> jax.Array:
    """sum_f x[f] * w[f] in a fixed order (x, w: (F, ...), broadcasting) -> (...). Every routing
    decision uses it, so an architecture's projection has the same bits wherever it is computed."""
    acc = mul(x[0], w[0])
    for f in range(1, x.shape[0]):
        acc = acc + mul(x[f], w[f])
    return acc


def exact_sums(groups: jax.Array, values: jax.Array) -> jax.Array:
    """Sum over the columns of `values` float32 (S, C) in each group: groups bool (W, C) -> (W, S),
    bit-reproducible in any program (see `exact_parts`)."""
    return group_sums(groups, exact_parts(values))


def exact_parts(values: jax.Array) -> jax.Array:
    """`values` float32 (S, C) split into two parts (2S, C) on per-row power-of-two grids fine
    enough that every partial sum of at most C entries of a part is exactly representable; so a
    matrix product adding them is exact in whatever order it adds (`group_sums`). Only what lies
    below the second grid is dropped (at most C^2 2^-49 of the row's largest magnitude).

    Grids: u = 2^(e - 23) with 2^e > C max|row|, so a sum of C entries of the first part is a
    multiple of u below 2^24 u; the remainder is at most u / 2, so the second grid is u 2^(k - 25)
    with 2^k >= C.
    """
    c = values.shape[1]
    scale = jnp.max(jnp.abs(values), axis=1, keepdims=True) * c
    e = jnp.maximum(jnp.frexp(scale)[1], -60)  # all-zero (or tiny) rows: keep both grids normal
    k = max(c - 1, 1).bit_length()
    hi = to_grid(values, e - 23)
    return jnp.concatenate([hi, to_grid(values - hi, e - 48 + k)])  # values - hi: exact


def to_grid(values: jax.Array, exponent: jax.Array) -> jax.Array:
    """`values` rounded to the nearest multiple of 2^exponent (broadcasting; ties to even): the
    scalings by powers of two are exact. An explicit rounding op: the textbook trick, adding and
    removing 1.5 * 2^23, is simplified away by XLA inside a jit (values came back unrounded, so the
    "exact" sums were not, and only the CPU matrix product's fixed order kept vmapped and separate
    searches equal; the reduction of `exact_matmul`'s other branch then differed)."""
    return jnp.round(values * jnp.ldexp(1.0, -exponent)) * jnp.ldexp(1.0, exponent)


def group_sums(groups: jax.Array, parts: jax.Array, count: jax.Array | None = None) -> jax.Array:
    """Per-group sums of the columns of `exact_parts` output: groups bool (W, C), parts (2S, C) ->
    (W, S); each part's sum is exact, and the two are added once.

    With `count`, only the first `count` columns are added (the rest must be zero), CHUNK at a
    time, so the work follows the history's size rather than its capacity; exact, so the result is
    the same.
    """
    s, c = parts.shape[0] // 2, parts.shape[1]
    if count is None or c <= CHUNK:
        sums = part_sums(groups, parts)
    else:
        sums = bounded_part_sums(groups, parts, count)
    return (sums[:s] + sums[s:]).T


CHUNK = 256


def part_sums(groups: jax.Array, parts: jax.Array) -> jax.Array:
    """Exact sums of `parts` (..., 2S, C) over each group of groups (..., W, C) -> (..., 2S, W)."""
    return exact_matmul(parts, jnp.swapaxes(groups, -1, -2))


def exact_matmul(a: jax.Array, b: jax.Array, backend: str | None = None) -> jax.Array:
    """a float32 (..., M, K) @ b bool (..., K, N) -> (..., M, N), for products that are exact in any
    order: every partial sum representable (`exact_parts`), or one nonzero term (a one-hot b).

    On CPU a float32 matrix product. Elsewhere a masked reduction doing the same additions: on an
    H200 (jax 0.11.2) XLA's GEMM autotuner picked, for some batch sizes, kernels that lose low bits
    of 24-bit operands even at Precision.HIGHEST or the F32_F32_F32 algorithm, so vmapped and
    separate LaNAS fits differed (experiments/accelerator_check.py); a reduction has no such kernel
    choice. On CPU the reduction costs 3.5x the product in a LaNAS search (perf_search). Both are
    exact, so they give the same bits. `backend`: the one set by `matmul_backend`, else the
    default backend, unless given.
    """
    if (backend or _FORCED_BACKEND[0] or jax.default_backend()) == "cpu":
        return jnp.matmul(a, b.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
    return jnp.sum(jnp.where(b[..., None, :, :], a[..., :, :, None], 0.0), axis=-2)


_FORCED_BACKEND: list[str | None] = [None]


@contextlib.contextmanager
def matmul_backend(backend: str):
    """Within the block, `exact_matmul` takes `backend`'s branch ("cpu": the matrix product; any
    other name: the masked reduction) whatever the default backend, so the accelerators' branch can
    be tested on CPU. It acts when a program is traced: a function jitted and compiled before keeps
    the branch it was traced with."""
    previous = _FORCED_BACKEND[0]
    _FORCED_BACKEND[0] = backend
    try:
        yield
    finally:
        _FORCED_BACKEND[0] = previous


def chunk_loop(groups: jax.Array, parts: jax.Array, count: jax.Array) -> jax.Array:
    """`part_sums` over the first `count` (a scalar) columns, CHUNK at a time; leading batch axes
    allowed. The last chunk may overlap the one before: its repeated columns are left out."""
    c = parts.shape[-1]

    def step(carry):
        i, acc = carry
        start = jnp.minimum(i * CHUNK, c - CHUNK)
        fresh = start + jnp.arange(CHUNK) >= i * CHUNK
        g = jax.lax.dynamic_slice_in_dim(groups, start, CHUNK, groups.ndim - 1) & fresh
        return i + 1, acc + part_sums(g, jax.lax.dynamic_slice_in_dim(parts, start, CHUNK,
                                                                       parts.ndim - 1))

    acc = jnp.zeros((*parts.shape[:-1], groups.shape[-2]), jnp.float32)
    return jax.lax.while_loop(lambda carry: carry[0] * CHUNK < count, step, (0, acc))[1]


@jax.custom_batching.custom_vmap
def bounded_part_sums(groups: jax.Array, parts: jax.Array, count: jax.Array) -> jax.Array:
    """`chunk_loop`; vmapped, one loop up to the longest history for the whole batch (a loop with a
    per-search trip count would slice every chunk with per-search indices). Columns past a
    search's own count are zero and its sums exact, so its result is the same."""
    return chunk_loop(groups, parts, count)


@bounded_part_sums.def_vmap
def _bounded_part_sums_vmap(axis_size, in_batched, groups, parts, count):
    groups, parts = (a if batched else jnp.broadcast_to(a, (axis_size, *a.shape))
                     for a, batched in zip((groups, parts), in_batched))
    return chunk_loop(groups, parts, jnp.max(count) if in_batched[2] else count), True



def spd_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """Solve a x = b for symmetric positive definite a float32 (F, F), b (F,) by Cholesky.

    Every step is elementwise (rank-1 updates, axpys through `mul`): no reductions and no LAPACK
    call, whose rounding may differ between batched (vmapped) and unbatched programs.
    """
    f = a.shape[0]
    rows = jnp.arange(f)

    def factor(k, carry):  # right-looking: column k of the factor, then update the trailing block
        chol, rest = carry
        col = jnp.where(rows >= k, mul(rest[:, k], 1.0 / jnp.sqrt(rest[k, k])), 0.0)
        return chol.at[:, k].set(col), rest - mul(col[:, None], col[None, :])

    chol = jax.lax.fori_loop(0, f, factor, (jnp.zeros_like(a), a))[0]

    def forward(j, carry):  # chol y = b, column by column
        y, r = carry
        yj = r[j] / chol[j, j]
        return y.at[j].set(yj), r - mul(chol[:, j], yj)

    def backward(i, carry):  # chol^T x = y, from the last row up
        x, r = carry
        j = f - 1 - i
        xj = r[j] / chol[j, j]
        return x.at[j].set(xj), r - mul(chol[j, :], xj)

    y = jax.lax.fori_loop(0, f, forward, (jnp.zeros_like(b), b))[0]
    return jax.lax.fori_loop(0, f, backward, (jnp.zeros_like(b), y))[0]


def hashed_uniform(key: jax.Array, size: int) -> jax.Array:
    """float32 (size,) in [0, 1): independent-looking uniforms for tie-breaking, from 64 bits of
    `key` hashed with each index (the `lowbias32` integer hash, twice). A few integer operations
    per entry instead of a counter-mode PRNG's dozens: asks draw one per catalogue member."""
    seed = jax.random.bits(key, (2,), jnp.uint32)
    h = lowbias32(lowbias32(jnp.arange(size, dtype=jnp.uint32) ^ seed[0]) ^ seed[1])
    return (h >> 8).astype(jnp.float32) * (1.0 / (1 << 24))


def lowbias32(x: jax.Array) -> jax.Array:
    """A 32-bit integer mixing hash (C. Wellons' lowbias32)."""
    x = (x ^ (x >> 16)) * jnp.uint32(0x7FEB352D)
    x = (x ^ (x >> 15)) * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)
