"""LaNAS (`002_*` §3, Algorithms 1-2): a tree of learned linear actions searched with MCTS, and the
regression-tree baseline (the same tree, always sampling its best leaf).

The tree is a complete binary tree of height h in heap order: node j has children 2j+1 (left, the
good region) and 2j+2 (right, the bad region); nodes [0, 2^(h-1) - 1) are internal and the 2^(h-1)
nodes after them are leaves. Each internal node j holds a linear regressor on standardized features
z = (x - mu) / sd (x = space.features(a); mu, sd over the successful samples), fitted by closed-form
ridge least squares to the successful samples routed into its region; with an intercept the mean
prediction over those samples equals their mean score, so "predicted >= the node's mean score" is
the half-space x . w_j >= cut_j in raw features (w_j = the slope / sd, cut_j = w_j . the samples'
mean x). A sample's region is found by routing it down the tree with these constraints.

Search, per `ask`: UCB selection from the root picks one leaf (ucb = v(child) +
2 Cp sqrt(2 ln n(parent) / n(child)), +inf for an unvisited child; ties go left; in catalogue mode
children whose region has no unasked member are skipped, since a fit on few samples can leave a
region empty and an empty region is never visited, so its +inf would be chosen forever), and all n asked
architectures come from that leaf's region. Call `ask(state, 1)` per sample to select per sample as
Algorithm 1 does; `ask(state, n)` selects once for the batch. Cp = cp + cp_scale * the spread of the
successful scores: by default their standard deviation (`cp_spread="std"`), so that one default
works whatever the scores' scale and offset; the paper's 0.1 x max score is `PAPER_EXPLORATION`
(`cp_spread="max", cp_scale=0.1`), which was tuned on NAS-Bench-101 and over-explores on
NAS-Bench-201 (see `exploration` and the measurements in the LaNAS class docstring).

Sampling from the selected region:
* enumerable spaces (size <= `max_catalogue`): uniformly among members not yet asked or told
  (pending ones included; ties broken by `hashed_uniform`), never re-asking one. The members'
  regions are found during the UCB descent of each `ask` (one projection of the catalogue per
  level, on the node descended from).
* large spaces: batched rejection sampling. Each attempt routes `n_candidates` uniform samples down
  the tree; a candidate is accepted when ALL constraints of the path hold (it routes to the selected
  leaf; the reference code accepts a sample when any one holds, LaMCTS#17). At most `max_attempts`
  attempts. Candidates already told (equal encodings in the history) or repeated within the ask
  come after every fresh one, so an ask proposes a told architecture only when the attempts found
  too few fresh ones (architectures asked but not yet told are not known to a later ask).
Fallback, both modes (the nearest non-empty region): when the region has fewer than n members
available (or fewer than n candidates were accepted), the rest are those satisfying the longest
leading part of the path's constraints, i.e. the deepest constraints are dropped first; in enumerable
mode, members already asked come last, once everything else is taken.

Learning: the first fit happens once `n_init` architectures have been told (until then samples are
uniform over the whole space), then a refit every `n_select` told architectures. A refit routes the
whole history down the new tree, recomputing every node's visit count n (told samples in the region)
and value v (mean successful score in the region); between refits `tell` routes the new samples and
increments the counts along their paths (back-propagation).

Failed evaluations (NaN scores) stay in the history and count as visits, but are excluded from the
fits and from the means; a visited node without any successful sample gets the worst successful
score seen as its value.

Reproducibility: the same key gives the same search, and `jax.vmap` over keys gives bit for bit the
searches run separately. XLA compiles batched and unbatched programs differently (FMA contraction,
divisions by broadcast values turned into reciprocal multiplies, the association of reductions and
matrix products), so the numerics that decisions hang on avoid all three: products feeding sums go
through `mul`, projections through `project`, sums over samples through `exact_sums` (exact, hence
order-free); see the comment above `mul`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from nasjax.search.base import (History, Strategy, catalogue, check_told, enumerable, first_occurrence,
                                match, register)
from nasjax.spaces.base import Space


@struct.dataclass
class LaNASState:
    """State of a LaNAS search; I = 2^(h-1) - 1 internal nodes, T = 2^h - 1 nodes, F features.

    key; history; weights float32 (I, F), cuts float32 (I,): node j sends an architecture with
    features x left (good) iff project(x, weights[j]) >= cuts[j] (raw features, see `project`);
    visits int32 (T,): told samples routed through each node; scored int32 (T,): those with a
    finite score; total float32 (T,): sum of their scores; fitted_at int32: history count at the
    last fit (-1: not fitted yet); selected int32: the node the last `ask` sampled from (a leaf once
    fitted, the root 0 before); taken bool (size,): catalogue members asked or told (shape (0,) in
    rejection mode).
    """

    key: jax.Array
    history: History
    weights: jax.Array
    cuts: jax.Array
    visits: jax.Array
    scored: jax.Array
    total: jax.Array
    fitted_at: jax.Array
    selected: jax.Array
    taken: jax.Array


# --- bit-reproducible arithmetic -------------------------------------------------------------------
# Routing decisions hang on the last bits of fitted parameters and projections, and a vmapped search
# must equal a separate one. XLA compiles a batched and an unbatched program differently: a float
# multiply feeding an add may be fused into an FMA in one and not the other, a division by a
# broadcast value may become a multiplication by its reciprocal in one and not the other, and
# reductions and matrix products may associate differently. So every product that feeds a sum
# goes through `mul`, divisions by a broadcast value are written as `mul` by its reciprocal, and
# every sum over samples goes through `exact_sums`; the rest is elementwise (correctly rounded).
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
    """`values` rounded to the nearest multiple of 2^exponent (broadcasting), given |values| < 2^(22 +
    exponent): adding and removing 1.5 * 2^23 rounds to an integer exactly; the scalings by powers of
    two are exact."""
    magic = jnp.float32(1.5 * 2 ** 23)
    return ((values * jnp.ldexp(1.0, -exponent) + magic) - magic) * jnp.ldexp(1.0, exponent)


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
    return jnp.matmul(parts, jnp.swapaxes(groups, -1, -2).astype(jnp.float32),
                      precision=jax.lax.Precision.HIGHEST)


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


# --- fitting --------------------------------------------------------------------------------------
def moments(z: jax.Array, y: jax.Array, mask: jax.Array) -> jax.Array:
    """Per-sample sufficient statistics of a ridge fit, zero where `mask` is False: z float32 (F, C),
    y (C,), mask bool (C,) -> (S, C) rows [1, y, z (F), z y (F), z_i z_j for i <= j (row-major)]."""
    z, y = jnp.where(mask, z, 0.0), jnp.where(mask, y, 0.0)
    upper = [mul(z[i:i + 1], z[i:]) for i in range(z.shape[0])]
    return jnp.concatenate([mask[None].astype(jnp.float32), y[None], z, mul(z, y), *upper])


def ridge_from_moments(sums: jax.Array, f: int, ridge: float):
    """Ridge least squares with an unpenalized intercept from summed `moments` (S,) of F features.

    -> (w (F,), z_mean (F,), y_mean scalar, count): prediction y_mean + (z - z_mean) . w minimizes
    sum (pred - y)^2 + ridge * max(count, 1) |w|^2 over the summed rows. No rows gives w = 0.
    """
    count, sy, sz, szy = sums[0], sums[1], sums[2:2 + f], sums[2 + f:2 + 2 * f]
    denom = jnp.maximum(count, 1.0)
    z_mean, y_mean = mul(sz, 1.0 / denom), mul(sy, 1.0 / denom)
    gram = jnp.zeros((f, f), jnp.float32).at[np.triu_indices(f)].set(sums[2 + 2 * f:])
    gram = gram + jnp.triu(gram, 1).T
    # Centred sums: sum (z - z_mean)(z - z_mean)^T = sum z z^T - sum(z) z_mean^T, likewise for y.
    gram = gram - mul(sz[:, None], z_mean[None, :]) + jnp.diag(jnp.full((f,), ridge) * denom)
    w = spd_solve(gram, szy - mul(sz, y_mean))
    return w, z_mean, y_mean, count


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


# --- the tree -------------------------------------------------------------------------------------
def descend(node: jax.Array, x: jax.Array, weights: jax.Array, cuts: jax.Array) -> jax.Array:
    """One routing step: samples at internal `node` (int32 (M,)) with features x float32 (F, M)
    go to the left child iff project(x, weights[node]) >= cuts[node] -> child int32 (M,)."""
    left = project(x, weights[node].T) >= cuts[node]
    return 2 * node + jnp.where(left, 1, 2)


def route(x: jax.Array, weights: jax.Array, cuts: jax.Array, height: int) -> jax.Array:
    """Leaf (heap index) of each sample with features x float32 (F, M) -> int32 (M,)."""
    node = jnp.zeros(x.shape[1:], jnp.int32)
    for _ in range(height - 1):
        node = descend(node, x, weights, cuts)
    return node


def node_depth(node: jax.Array) -> jax.Array:
    """Depth of heap node(s) (root: 0)."""
    return 31 - jax.lax.clz(jnp.asarray(node, jnp.int32) + 1)


def common_depth(leaves: jax.Array, node: jax.Array, height: int) -> jax.Array:
    """How many leading constraints of the path to `node` the samples in `leaves` satisfy: the depth
    of the deepest common ancestor of each leaf and `node`, int32 like `leaves`."""
    depth = node_depth(node)
    ancestor = (leaves + 1) >> (height - 1 - depth)  # 1-based heap id of the leaf's ancestor at depth
    differ = ancestor ^ (node + 1)
    return depth - (32 - jax.lax.clz(differ.astype(jnp.int32)))


def node_stats(leaves: jax.Array, scores: jax.Array, told: jax.Array, height: int):
    """Back-propagated statistics of samples at `leaves` (int32 (M,)) with `scores` (M,), counting
    rows where `told` holds -> (visits int32 (T,), scored int32 (T,), total float32 (T,)) per node in
    heap order (a node's entry sums its two children's)."""
    n_leaves = 2 ** (height - 1)
    ok = told & jnp.isfinite(scores)
    columns = jnp.stack([told.astype(jnp.float32), ok.astype(jnp.float32),
                         jnp.where(ok, scores, 0.0)])
    groups = leaves[None] == n_leaves - 1 + jnp.arange(n_leaves)[:, None]
    levels = [exact_sums(groups, columns)]
    while levels[0].shape[0] > 1:  # parents sum their children, pairwise: a fixed order
        levels.insert(0, levels[0][0::2] + levels[0][1::2])
    visits, scored, total = jnp.concatenate(levels).T
    return visits.astype(jnp.int32), scored.astype(jnp.int32), total


def ucb(value: jax.Array, n_child: jax.Array, n_parent: jax.Array, c: jax.Array) -> jax.Array:
    """UCB1 of Algorithm 1: value + 2c sqrt(2 ln n_parent / n_child), +inf for an unvisited child."""
    bonus = mul(2.0 * c, jnp.sqrt(2.0 * jnp.log(jnp.maximum(n_parent, 1)) / jnp.maximum(n_child, 1)))
    return jnp.where(n_child > 0, value + bonus, jnp.inf)


SPREADS = ("std", "max")
# The paper's setting (`002_*`: Cp = 0.1 x the best score, tuned on NAS-Bench-101 accuracies).
PAPER_EXPLORATION = dict(cp_spread="max", cp_scale=0.1)


def exploration(history: History, cp: float, cp_scale: float, spread: str) -> jax.Array:
    """The UCB constant cp + cp_scale * the spread of the successful scores (0 before any):
    "std": their standard deviation, so UCB's ranking is invariant to an affine rescaling of the
    scores (accuracies in [0, 1] or in percent, perplexities alike); "max": max |score| (the
    paper's, scale-dependent: a shift of the scores changes the bonus). Exact sums (`exact_sums`),
    so that the constant has the same bits in vmapped and separate searches."""
    ok = history.filled & jnp.isfinite(history.scores)
    if spread == "max":
        return cp + mul(cp_scale, jnp.max(jnp.where(ok, jnp.abs(history.scores), 0.0)))
    inv_count = 1.0 / jnp.maximum(jnp.sum(ok), 1).astype(jnp.float32)
    mean = mul(exact_sums(ok[None], jnp.where(ok, history.scores, 0.0)[None])[0, 0], inv_count)
    d = jnp.where(ok, history.scores - mean, 0.0)
    var = mul(exact_sums(ok[None], mul(d, d)[None])[0, 0], inv_count)
    return cp + mul(cp_scale, jnp.sqrt(var))


def node_values(total: jax.Array, scored: jax.Array, history: History) -> jax.Array:
    """Mean successful score per node; the worst successful score seen for nodes without one."""
    ok = history.filled & jnp.isfinite(history.scores)
    worst = jnp.min(jnp.where(ok, history.scores, jnp.inf))
    worst = jnp.where(jnp.isfinite(worst), worst, 0.0)
    return jnp.where(scored > 0, total / jnp.maximum(scored, 1), worst)


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


@functools.lru_cache(maxsize=16)
def catalogue_features(space: Space) -> np.ndarray:
    """float32 (size, F): features of every catalogue member (cached per space; callable while
    tracing: computed eagerly)."""
    with jax.ensure_compile_time_eval():
        feats = jax.vmap(space.features)(jnp.asarray(catalogue(space)))
    return np.asarray(feats, np.float32)


@register("lanas")
@dataclasses.dataclass(frozen=True)
class LaNAS(Strategy):
    """LaNAS over `space`: a tree of `height` levels (2^(height-1) leaves), `n_init` random samples
    before the first fit, a refit every `n_select` told samples, UCB constant cp + cp_scale * the
    `cp_spread` of the successful scores (std by default; PAPER_EXPLORATION for the paper's),
    ridge penalty `ridge` (relative to the node's sample count, on standardized features). Spaces with
    at most `max_catalogue` members are sampled from their catalogue, others by rejection sampling
    with `n_candidates` candidates per attempt and at most `max_attempts` attempts per ask."""

    height: int = 5
    n_init: int = 10
    n_select: int = 10
    cp: float = 0.0
    cp_scale: float = 0.1
    cp_spread: str = "std"
    ridge: float = 1e-3
    max_catalogue: int = 200_000
    n_candidates: int = 256
    max_attempts: int = 16

    def __post_init__(self):
        checks = [(self.height >= 2, f"height must be >= 2, got {self.height}"),
                  (self.n_init >= 1, f"n_init must be >= 1, got {self.n_init}"),
                  (self.n_select >= 1, f"n_select must be >= 1, got {self.n_select}"),
                  (self.cp >= 0 and self.cp_scale >= 0,
                   f"cp and cp_scale must be >= 0, got {self.cp}, {self.cp_scale}"),
                  (self.cp_spread in SPREADS,
                   f"cp_spread must be one of {SPREADS}, got {self.cp_spread!r}"),
                  (self.ridge > 0, f"ridge must be > 0, got {self.ridge}"),
                  (self.n_candidates >= 1 and self.max_attempts >= 1,
                   f"n_candidates and max_attempts must be >= 1, got "
                   f"{self.n_candidates}, {self.max_attempts}")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    # --- static description -----------------------------------------------------------------------
    @property
    def from_catalogue(self) -> bool:
        """Whether asks draw from the enumerated space (else rejection sampling)."""
        return enumerable(self.space, self.max_catalogue)

    @property
    def num_internal(self) -> int:
        return 2 ** (self.height - 1) - 1

    # --- protocol -------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> LaNASState:
        f, nodes = self.space.num_features, 2 ** self.height - 1
        size = self.space.size() if self.from_catalogue else 0
        return LaNASState(
            key=key, history=History.empty(self.capacity, self.space.encoding_shape),
            weights=jnp.zeros((self.num_internal, f), jnp.float32),
            cuts=jnp.zeros((self.num_internal,), jnp.float32),
            visits=jnp.zeros((nodes,), jnp.int32), scored=jnp.zeros((nodes,), jnp.int32),
            total=jnp.zeros((nodes,), jnp.float32), fitted_at=jnp.full((), -1, jnp.int32),
            selected=jnp.zeros((), jnp.int32), taken=jnp.zeros((size,), bool))

    def ask(self, state: LaNASState, n: int) -> tuple[jax.Array, LaNASState]:
        key, sub = jax.random.split(state.key)
        fitted = state.fitted_at >= 0
        node, depth = self._select(state)
        state = state.replace(key=key, selected=jnp.where(fitted, node, 0).astype(jnp.int32))
        if self.from_catalogue:
            return self._draw_members(state, sub, n, jnp.where(fitted, depth, 0))
        return self._draw_rejection(state, sub, n), state

    def tell(self, state: LaNASState, archs: jax.Array, scores: jax.Array) -> LaNASState:
        check_told(self.space, archs, scores)
        scores = scores.astype(jnp.float32)
        history = state.history.add(archs, scores)
        taken = state.taken
        if self.from_catalogue:
            taken = taken.at[jax.vmap(self.space.index)(archs)].set(True)
        state = state.replace(history=history, taken=taken)
        due = (history.count >= self.n_init) & (
            (state.fitted_at < 0) | (history.count - state.fitted_at >= self.n_select))
        return jax.lax.cond(due, self.refit, lambda s: self._backpropagate(s, archs, scores), state)

    # --- learning -------------------------------------------------------------------------------
    def features(self, archs: jax.Array) -> jax.Array:
        """float32 (M, F) features of archs int32 (M, *enc); looked up in catalogue mode, so that a
        member's features have the same bits in the history as in the catalogue."""
        if self.from_catalogue:
            return jnp.asarray(catalogue_features(self.space))[jax.vmap(self.space.index)(archs)]
        return jax.vmap(self.space.features)(archs).astype(jnp.float32)

    def leaves(self, state: LaNASState, archs: jax.Array) -> jax.Array:
        """int32 (M,): the leaf of each of archs int32 (M, *enc) under the current tree."""
        return route(self.features(archs).T, state.weights, state.cuts, self.height)

    def fit(self, history: History) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Fit every internal node, level by level (a level's regions depend on the splits above).

        The ridge fits use features standardized over the successful samples (so the penalty is
        scale-free); the splits are stored in raw features.
        -> (weights (I, F), cuts (I,), leaf int32 (capacity,) of every history row).
        """
        x = self.features(history.encodings).T  # (F, C): each feature contiguous
        ok = history.filled & jnp.isfinite(history.scores)
        f = x.shape[0]
        first_two = exact_sums(ok[None], jnp.where(ok, jnp.concatenate([x, jnp.ones_like(x[:1])]),
                                                   0.0))[0]
        inv_count = 1.0 / jnp.maximum(first_two[f], 1.0)
        mu = mul(first_two[:f, None], inv_count)
        sd = jnp.sqrt(mul(exact_sums(ok[None], jnp.where(ok, mul(x - mu, x - mu), 0.0))[0],
                          inv_count))
        sd = jnp.where(sd > 1e-6, sd, 1.0)[:, None]  # constant features: leave unscaled
        rows = exact_parts(moments(mul(x - mu, 1.0 / sd), history.scores, ok))
        # One loop step per level, each fitting the widest level's number of nodes: the product
        # adding the rows costs the same at any width, and the loop keeps each level's routing
        # materialized (an unrolled loop lets XLA recompute it in every group's mask).
        width = (self.num_internal + 1) // 2
        fit_nodes = jax.vmap(ridge_from_moments, in_axes=(0, None, None))

        def level(depth, carry):
            weights, cuts, node = carry
            first = (1 << depth) - 1
            groups = node[None] == first + jnp.arange(width)[:, None]
            w, z_mean, _, _ = fit_nodes(group_sums(groups, rows, history.count), f, self.ridge)
            # z . w >= z_mean . w  <=>  x . (w / sd) >= x_mean . (w / sd). Rows past this level's
            # nodes belong to the next level, which overwrites them.
            w = mul(w.T, 1.0 / sd)  # (F, width)
            cut = project(mu + mul(sd, z_mean.T), w)
            weights = jax.lax.dynamic_update_slice(weights, w.T, (first, 0))
            cuts = jax.lax.dynamic_update_slice(cuts, cut, (first,))
            # Route: each row's node parameters picked by a product with the one-hot groups
            # (exact: one nonzero term), cheaper than a gather; the same bits as `descend`.
            one_hot = groups.astype(jnp.float32)

            def pick(params):  # (P, width) -> (P, C)
                return jnp.matmul(params, one_hot, precision=jax.lax.Precision.HIGHEST)

            left = project(x, pick(w)) >= pick(cut[None])[0]
            return weights, cuts, 2 * node + jnp.where(left, 1, 2)

        start = (jnp.zeros((self.num_internal, f), jnp.float32),
                 jnp.zeros((self.num_internal,), jnp.float32), jnp.zeros(x.shape[1:], jnp.int32))
        return jax.lax.fori_loop(0, self.height - 1, level, start)

    def refit(self, state: LaNASState) -> LaNASState:
        """Learn the tree from the whole history; recompute every node's statistics."""
        h = state.history
        weights, cuts, leaves = self.fit(h)
        visits, scored, total = node_stats(leaves, h.scores, h.filled, self.height)
        return state.replace(weights=weights, cuts=cuts, visits=visits, scored=scored,
                             total=total, fitted_at=h.count)

    def _backpropagate(self, state: LaNASState, archs: jax.Array, scores: jax.Array) -> LaNASState:
        leaves = self.leaves(state, archs)
        visits, scored, total = node_stats(leaves, scores, jnp.ones(scores.shape, bool), self.height)
        return state.replace(visits=state.visits + visits, scored=state.scored + scored,
                             total=state.total + total)

    # --- search ---------------------------------------------------------------------------------
    def child_scores(self, state: LaNASState, children: jax.Array, parent: jax.Array) -> jax.Array:
        """UCB of `children` of `parent` (Algorithm 2, get_ucb)."""
        c = exploration(state.history, self.cp, self.cp_scale, self.cp_spread)
        value = node_values(state.total, state.scored, state.history)
        return ucb(value[children], state.visits[children], state.visits[parent], c)

    def select(self, state: LaNASState) -> jax.Array:
        """The leaf reached from the root by the highest child score, ties to the left, skipping
        closed (exhausted) regions (Algorithm 2, ucb_select)."""
        return self._select(state)[0]

    def _select(self, state: LaNASState) -> tuple[jax.Array, jax.Array | None]:
        """-> (the selected leaf, in catalogue mode int32 (size,): how many leading constraints of
        its path each member satisfies (None in rejection mode)).

        In catalogue mode a child is closed when no untaken member lies in its region (once every
        member is taken: no member at all); the members' projections are computed on the way down,
        one node per level.
        """
        node = jnp.zeros((), jnp.int32)
        depth = untaken = None
        if self.from_catalogue:
            x = jnp.asarray(catalogue_features(self.space).T)  # (F, size): contiguous per feature
            untaken = ~state.taken
            untaken = untaken | ~jnp.any(untaken)
            depth = jnp.zeros(untaken.shape, jnp.int32)  # members inside the node have depth d
        for d in range(self.height - 1):
            children = jnp.stack([2 * node + 1, 2 * node + 2])
            u = self.child_scores(state, children, node)
            if self.from_catalogue:
                left = project(x, state.weights[node]) >= state.cuts[node]
                candidate = (depth == d) & untaken
                # One reduction for both children, so the projection is computed once for it.
                open_ = jax.lax.reduce((candidate & left, candidate & ~left), (False, False),
                                       lambda a, b: (a[0] | b[0], a[1] | b[1]), (0,))
                u = jnp.where(jnp.stack(open_), u, -jnp.inf)
            right = u[1] > u[0]
            node = jnp.where(right, children[1], children[0])
            if self.from_catalogue:
                depth = depth + ((depth == d) & (left != right))
        return node, depth

    def constraints(self, state: LaNASState) -> tuple[jax.Array, jax.Array, jax.Array]:
        """The linear constraints of the path to the selected node, in raw features (Algorithm 2,
        get_constraints): (w float32 (D, F), b float32 (D,), left bool (D,)) for the D = height - 1
        path nodes, meaning features . w[d] >= b[d] if left[d] else features . w[d] < b[d].
        Entries past the selected node's depth have w = 0, b = 0, left = True (always satisfied)."""
        node = state.selected
        depth = node_depth(node)
        d = jnp.arange(self.height - 1)
        on_path = d < depth
        child = ((node + 1) >> jnp.clip(depth - d - 1, 0)) - 1
        parent = jnp.where(on_path, (child - 1) // 2, 0)
        return (jnp.where(on_path[:, None], state.weights[parent], 0.0),
                jnp.where(on_path, state.cuts[parent], 0.0), ~on_path | (child == 2 * parent + 1))

    def _draw_members(self, state: LaNASState, key: jax.Array, n: int, depth: jax.Array):
        size = state.taken.shape[0]
        if n > size:
            raise ValueError(f"ask(n={n}) exceeds the space's {size} members")
        # Priority: constraints of the path satisfied (all of them = in the region), members
        # already taken last; uniform noise in [0, 1) breaks ties at random.
        priority = jnp.where(state.taken, -1, depth).astype(jnp.float32)
        idx = jax.lax.top_k(priority + hashed_uniform(key, size), n)[1]
        archs = jnp.asarray(catalogue(self.space))[idx]
        return archs, state.replace(taken=state.taken.at[idx].set(True))

    def _draw_rejection(self, state: LaNASState, key: jax.Array, n: int) -> jax.Array:
        if n > self.n_candidates:
            raise ValueError(f"ask(n={n}) exceeds n_candidates={self.n_candidates}")
        full = node_depth(state.selected)

        history = state.history
        demote = float(self.height + 1)  # below every fresh candidate's depth + noise in [0, 1)

        def attempt(carry):
            i, key, archs, priority = carry
            key, k_sample, k_tie = jax.random.split(key, 3)
            cand = self.space.sample(k_sample, self.n_candidates)
            leaves = self.leaves(state, cand)
            p = common_depth(leaves, state.selected, self.height).astype(jnp.float32)
            p = p + jax.random.uniform(k_tie, p.shape)
            # The new candidates first: a kept one shadows the padding rows (-inf) it may equal.
            pool, pool_p = jnp.concatenate([cand, archs]), jnp.concatenate([p, priority])
            told = match(history.encodings, history.filled, pool)[0]
            pool_p = jnp.where(told | ~first_occurrence(pool), pool_p - demote, pool_p)
            best = jax.lax.top_k(pool_p, n)[1]
            return i + 1, key, pool[best], pool_p[best]

        def more(carry):
            i, _, _, priority = carry
            return (i < self.max_attempts) & (jnp.min(priority) < full)

        start = (jnp.zeros((), jnp.int32), key,
                 jnp.zeros((n, *self.space.encoding_shape), jnp.int32), jnp.full((n,), -jnp.inf))
        return jax.lax.while_loop(more, attempt, start)[2]


@register("regression_tree")
@dataclasses.dataclass(frozen=True)
class RegressionTree(LaNAS):
    """LaNAS without exploration (`002_*` §3.4, "RT"): always goes left (the region predicted
    better at every split) unless, in catalogue mode, the left region is exhausted."""

    def child_scores(self, state: LaNASState, children: jax.Array, parent: jax.Array) -> jax.Array:
        return jnp.zeros(children.shape, jnp.float32)
