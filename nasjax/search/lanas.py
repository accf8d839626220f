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
NAS-Bench-201 (see `tree.exploration` and the measurements in the LaNAS class docstring).

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
increments the counts along their paths (back-propagation). The choice goes through
`base.uniform_cond`, so searches vmapped over seeds with the same ask sizes (hence the same refit
schedule) refit together only when due, instead of every `tell` as a batched `lax.cond` would.

Failed evaluations (NaN scores) stay in the history and count as visits, but are excluded from the
fits and from the means; a visited node without any successful sample gets the worst successful
score seen as its value.

Reproducibility: the same key gives the same search, and `jax.vmap` over keys gives bit for bit the
searches run separately. XLA compiles batched and unbatched programs differently (FMA contraction,
divisions by broadcast values turned into reciprocal multiplies, the association of reductions and
matrix products), so the numerics that decisions hang on avoid all three: products feeding sums go
through `mul`, projections through `project`, sums over samples through `exact_sums` (exact, hence
order-free); see `nasjax.search.numerics`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from nasjax.search.base import (History, State, Strategy, catalogue, check_told, enumerable, first_occurrence, match,
                                rank_targets, register, uniform_cond)
from nasjax.search.numerics import (exact_matmul, exact_parts, exact_sums, group_sums, hashed_uniform, mul,
                                    project, spd_solve)
from nasjax.search.tree import (SPREADS, common_depth, exploration, node_depth, node_stats, node_values,
                                route, ucb)
from nasjax.spaces.base import Space


@struct.dataclass
class LaNASState(State):
    """State of a LaNAS search; I = 2^(h-1) - 1 internal nodes, T = 2^h - 1 nodes, F features.

    weights float32 (I, F), cuts float32 (I,): node j sends an architecture with
    features x left (good) iff project(x, weights[j]) >= cuts[j] (raw features, see `project`);
    visits int32 (T,): told samples routed through each node; scored int32 (T,): those with a
    finite score; total float32 (T,): sum of their scores; fitted_at int32: history count at the
    last fit (-1: not fitted yet); selected int32: the node the last `ask` sampled from (a leaf once
    fitted, the root 0 before); taken bool (size,): catalogue members asked or told (shape (0,) in
    rejection mode); source: samples learned elsewhere that join every fit (`LaNAS.transfer_init`;
    0 rows otherwise), each weighing source_weight float32 samples in the fits.
    """

    weights: jax.Array
    cuts: jax.Array
    visits: jax.Array
    scored: jax.Array
    total: jax.Array
    fitted_at: jax.Array
    selected: jax.Array
    taken: jax.Array
    source: History
    source_weight: jax.Array


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


# What the splits' regressors fit: "raw" scores, or "rank": each successful score's rank among them
# scaled to [0, 1], invariant to any increasing transform of the scores (a heavy low tail of broken
# architectures then weighs no more than any other rank).
SPLIT_SCORES = ("raw", "rank")


def split_targets(history: History, kind: str) -> jax.Array:
    """float32 (capacity,): the targets of the splits' fits for the successful rows ("raw": the
    scores; "rank": `base.rank_targets`); other rows are ignored by the fit."""
    return history.scores if kind == "raw" else rank_targets(history)


# The paper's setting (`002_*`: Cp = 0.1 x the best score, tuned on NAS-Bench-101 accuracies).
PAPER_EXPLORATION = dict(cp_spread="max", cp_scale=0.1)
# The paper's benchmark runs (`002_*` Fig. 5: Cp = 0.1, init = 10, select = 10).
PAPER = dict(PAPER_EXPLORATION, n_init=10, n_select=10)


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
    ridge penalty `ridge` (relative to the node's sample count, on standardized features), the
    splits fitted to `split_scores` ("raw" or "rank", see `SPLIT_SCORES`). Spaces with
    at most `max_catalogue` members are sampled from their catalogue, others by rejection sampling
    with `n_candidates` candidates per attempt and at most `max_attempts` attempts per ask.

    Default exploration: cp_scale=0.1 x the std of the successful scores. Measured on NAS-Bench-201
    (16 searches x 400 samples each, median samples to the optimum, cifar10 / cifar100 /
    imagenet16): 0.1 std 112 / 112.5 / 131.5 (88 / 88 / 88 % of searches reached it), 0.05 std
    104.5 / 124 / 136.5 (75 / 94 / 94 %); the paper's 0.1 x max score took 218.5 on cifar10
    (100 x 1,000, issue 12), where its bonus (6-14 accuracy points) dwarfs the 0.5-2 point
    differences between good leaves.

    Default refit period n_select=2 (the paper's 10 is in `PAPER`). Measured on NAS-Bench-201 (the
    sample-efficiency tables' 100 seeds x 500 samples, median samples to the optimum): cifar100
    82.5 (1: 81.0, 10: 120.5), imagenet16 102.0; cifar10, 50 seeds: 76.0 (1: 76.0, 3: 84.0, 5: 92.5,
    10: 104.5). A refit every sample costs about 1.8x the search time of every second sample."""

    height: int = 5
    n_init: int = 10
    n_select: int = 2
    cp: float = 0.0
    cp_scale: float = 0.1
    cp_spread: str = "std"
    ridge: float = 1e-3
    max_catalogue: int = 200_000
    n_candidates: int = 256
    max_attempts: int = 16
    split_scores: str = "raw"
    HPARAMS = ("cp", "cp_scale", "ridge")
    state_class = LaNASState

    def __post_init__(self):
        super().__post_init__()
        checks = [(self.height >= 2, f"height must be >= 2, got {self.height}"),
                  (self.n_init >= 1, f"n_init must be >= 1, got {self.n_init}"),
                  (self.n_select >= 1, f"n_select must be >= 1, got {self.n_select}"),
                  (self.cp >= 0 and self.cp_scale >= 0,
                   f"cp and cp_scale must be >= 0, got {self.cp}, {self.cp_scale}"),
                  (self.cp_spread in SPREADS,
                   f"cp_spread must be one of {SPREADS}, got {self.cp_spread!r}"),
                  (self.ridge > 0, f"ridge must be > 0, got {self.ridge}"),
                  (self.split_scores in SPLIT_SCORES,
                   f"split_scores must be one of {SPLIT_SCORES}, got {self.split_scores!r}"),
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
    def _init(self, key: jax.Array) -> tuple[jax.Array, dict]:
        f, nodes = self.space.num_features, 2 ** self.height - 1
        size = self.space.size() if self.from_catalogue else 0
        return key, dict(
            weights=jnp.zeros((self.num_internal, f), jnp.float32),
            cuts=jnp.zeros((self.num_internal,), jnp.float32),
            visits=jnp.zeros((nodes,), jnp.int32), scored=jnp.zeros((nodes,), jnp.int32),
            total=jnp.zeros((nodes,), jnp.float32), fitted_at=jnp.full((), -1, jnp.int32),
            selected=jnp.zeros((), jnp.int32), taken=jnp.zeros((size,), bool),
            source=History.empty(0, self.space.encoding_shape), source_weight=jnp.ones((), jnp.float32))

    def transfer_init(self, key: jax.Array, hparams: dict | None = None, *, source_archs: jax.Array,
                      source_scores: jax.Array, source_count: jax.Array | int | None = None,
                      source_mass: float | jax.Array | None = None, exclude: bool = False) -> LaNASState:
        """The initial state of a search that starts from latent actions learned elsewhere (`002_*`
        §4.4): the source samples, archs int (P, *enc) with scores float (P,) (NaN: not used), of
        which the first `source_count` (default P; traced, so sources of several sizes share one
        program) are the source, join every fit of the tree, and the tree is fitted to them before
        the first ask (when any score is finite), so the first asks already descend learned actions.
        The node statistics that UCB reads count this search's own samples only; refits follow the
        usual schedule. Scores become split targets within the source (`split_scores`: "rank" makes
        another task's scores comparable). `source_mass`: the source's total weight in the fits, in
        samples (each source sample weighs source_mass / source_count; default `n_init`: the source
        counts as much as the random samples a fresh search starts from), so that a large source
        guides the first splits without outweighing the search's own samples: at full weight a
        source of 1-20 % of NB-201 made LaNAS slower, at weight n_init faster (see
        experiments/lanas_transfer.py). `exclude` (catalogue mode): the source members are never
        asked (intra-task transfer: they belong to the searched table and are already evaluated).
        A source without a finite score and without `exclude` gives the search `init(key, hparams)`
        gives, bit for bit. For `nasjax.search.scan`: `init=functools.partial(strategy.transfer_init,
        source_archs=..., source_scores=...)`.
        """
        check_told(self.space, source_archs, source_scores)
        count = jnp.asarray(source_archs.shape[0] if source_count is None else source_count, jnp.int32)
        real = jnp.arange(source_archs.shape[0]) < count
        source = History(encodings=jnp.asarray(source_archs, jnp.int32),
                         scores=jnp.where(real, jnp.asarray(source_scores, jnp.float32), jnp.nan), count=count)
        mass = self.n_init if source_mass is None else source_mass
        weight = jnp.asarray(mass, jnp.float32) / jnp.maximum(source.count, 1).astype(jnp.float32)
        state = self.init(key, hparams).replace(source=source, source_weight=weight)
        if exclude:
            if not self.from_catalogue:
                raise ValueError("exclude needs an enumerable space (catalogue mode); "
                                 f"{type(self.space).__name__} is sampled by rejection")
            index = jnp.where(real, jax.vmap(self.space.index)(source.encodings), state.taken.shape[0])
            state = state.replace(taken=state.taken.at[index].set(True, mode="drop"))
        return uniform_cond(jnp.any(jnp.isfinite(source.scores)), self.refit, lambda s: s, state)

    def ask(self, state: LaNASState, n: int) -> tuple[jax.Array, LaNASState]:
        key, sub = jax.random.split(state.key)
        fitted = state.fitted_at >= 0
        node, depth = self._select(state)
        state = state.replace(key=key, selected=jnp.where(fitted, node, 0).astype(jnp.int32))
        if self.from_catalogue:
            return self._draw_members(state, sub, n, jnp.where(fitted, depth, 0))
        return self._draw_rejection(state, sub, n), state

    def _tell(self, state: LaNASState, archs: jax.Array, scores: jax.Array) -> LaNASState:
        history = state.history
        if self.from_catalogue:
            state = state.replace(taken=state.taken.at[jax.vmap(self.space.index)(archs)].set(True))
        due = (history.count >= self.n_init) & (
            (state.fitted_at < 0) | (history.count - state.fitted_at >= self.n_select))
        return uniform_cond(due, lambda s, _, __: self.refit(s), self._backpropagate, state, archs, scores)

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

    def fit(self, history: History, ridge: jax.Array,
            source: History | None = None, source_weight: jax.Array | float = 1.0
            ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Fit every internal node, level by level (a level's regions depend on the splits above),
        to the history's successful samples and, when given, a `source`'s (latent actions learned
        elsewhere, `transfer_init`; each set's targets by `split_scores` within the set).

        The ridge fits use features standardized over the successful samples (so the penalty is
        scale-free); the splits are stored in raw features. Every sum is exact per set, and the
        source's, times `source_weight` (a source sample counts as that many samples), is added
        after the history's: an empty source adds zeros, so it fits the same bits.
        -> (weights (I, F), cuts (I,), leaf int32 (capacity,) of every history row).
        """
        sets = [history] + ([source] if source is not None and source.capacity else [])
        xs = [self.features(h.encodings).T for h in sets]  # (F, C): each feature contiguous
        oks = [h.filled & jnp.isfinite(h.scores) for h in sets]
        f = xs[0].shape[0]

        def add_sets(per_set):  # a sum per set, the source's weighted, added in a fixed order
            return functools.reduce(jnp.add, per_set[:1] + [t * source_weight for t in per_set[1:]])

        first_two = add_sets([exact_sums(ok[None], jnp.where(ok, jnp.concatenate([x, jnp.ones_like(x[:1])]),
                                                              0.0))[0] for x, ok in zip(xs, oks)])
        inv_count = 1.0 / jnp.maximum(first_two[f], 1.0)
        mu = mul(first_two[:f, None], inv_count)
        sd = jnp.sqrt(mul(add_sets([exact_sums(ok[None], jnp.where(ok, mul(x - mu, x - mu), 0.0))[0]
                                    for x, ok in zip(xs, oks)]), inv_count))
        sd = jnp.where(sd > 1e-6, sd, 1.0)[:, None]  # constant features: leave unscaled
        rows = [exact_parts(moments(mul(x - mu, 1.0 / sd), split_targets(h, self.split_scores), ok))
                for x, ok, h in zip(xs, oks, sets)]
        # One loop step per level, each fitting the widest level's number of nodes: the product
        # adding the rows costs the same at any width, and the loop keeps each level's routing
        # materialized (an unrolled loop lets XLA recompute it in every group's mask).
        width = (self.num_internal + 1) // 2
        fit_nodes = jax.vmap(ridge_from_moments, in_axes=(0, None, None))

        def level(depth, carry):
            weights, cuts, nodes = carry
            first = (1 << depth) - 1
            groups = [node[None] == first + jnp.arange(width)[:, None] for node in nodes]
            sums = add_sets([group_sums(g, r, h.count) for g, r, h in zip(groups, rows, sets)])
            w, z_mean, _, _ = fit_nodes(sums, f, ridge)
            # z . w >= z_mean . w  <=>  x . (w / sd) >= x_mean . (w / sd). Rows past this level's
            # nodes belong to the next level, which overwrites them.
            w = mul(w.T, 1.0 / sd)  # (F, width)
            cut = project(mu + mul(sd, z_mean.T), w)
            weights = jax.lax.dynamic_update_slice(weights, w.T, (first, 0))
            cuts = jax.lax.dynamic_update_slice(cuts, cut, (first,))

            # Route: each row's node parameters picked by a product with the one-hot groups
            # (exact: one nonzero term), cheaper than a gather; the same bits as `tree.descend`.
            def route_rows(x, g, node):
                left = project(x, exact_matmul(w, g)) >= exact_matmul(cut[None], g)[0]
                return 2 * node + jnp.where(left, 1, 2)

            return weights, cuts, tuple(route_rows(x, g, node) for x, g, node in zip(xs, groups, nodes))

        start = (jnp.zeros((self.num_internal, f), jnp.float32),
                 jnp.zeros((self.num_internal,), jnp.float32),
                 tuple(jnp.zeros(x.shape[1:], jnp.int32) for x in xs))
        weights, cuts, nodes = jax.lax.fori_loop(0, self.height - 1, level, start)
        return weights, cuts, nodes[0]

    def refit(self, state: LaNASState) -> LaNASState:
        """Learn the tree from the whole history; recompute every node's statistics."""
        h = state.history
        weights, cuts, leaves = self.fit(h, state.hparams["ridge"], state.source, state.source_weight)
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
        c = exploration(state.history, state.hparams["cp"], state.hparams["cp_scale"], self.cp_spread)
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
