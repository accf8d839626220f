"""Neural Architecture Optimization (Luo et al. 2018) as a pure ask/tell strategy, and the learned
embedding it shares with RNAS (`004_*`, nasjax/search/rnas.py).

The model (`Seq2Seq`, Flax) reads an architecture as its token sequence (`space.to_tokens`: one token
per position, per-position vocabularies `space.token_vocab`):
  encoder    LSTM over the tokens; the embedding z is a linear map of its hidden states, on the unit
             sphere (NAO's reference normalizes its encoder outputs)                     (hidden,)
  predictor  MLP z -> sigmoid, the predicted target in (0, 1)                              scalar
  decoder    LSTM started from z, fed z and the position, one readout per position      (L, V)
Tokens are embedded per position (position t's token k has its own vector), so the encoder sees where
it is. Training (`fit`, `train_steps` optax Adam steps per tell, warm-started from the previous
tell) minimizes (1 - trade_off) * reconstruction cross-entropy + trade_off * squared prediction error
(NAO's loss; the reference's trade-off 0.8). Targets (`targets`): "minmax", the successful scores
scaled to [0, 1] as the reference does, or "rank", their ranks scaled to [0, 1] (`base.rank_targets`;
NAS-Bench-201's heavy low tail of broken cells squeezes min-max targets of the good cells together).
Minibatches are drawn from the told rows of the fixed-capacity history (static shapes: indices below
`history.count`), plus `unlabeled` fresh uniform samples of the space that count in the
reconstruction term only: sampling the space costs no evaluation, and they teach the decoder the
whole space rather than the few told architectures (semi-supervised, as in SemiNAS).

Decoding is greedy and constrained: at position t only the tokens `space.token_mask(tokens, t)`
allows can be chosen, so ConvNet, NB-201 and DARTS decodes are valid by construction
(`space.tokens_always_valid`). NB-101's validity (input reaches output, at most 9 edges after
pruning) is not a per-position rule; there an invalid decode is *repaired*: replaced by its valid
one-edit neighbour (`space.neighbors`) that the decoder's per-position log-probabilities rate
highest, or, when no neighbour is valid, by a mutation of the parent it came from.

Proposals (`propose` -> `Proposal`, each ask traceable to where it came from): the top `n_parents`
told architectures are the parents; a subclass searches the embedding from their embeddings
(`search_embedding`: NAO's gradient steps, RNAS's sampling) and collects, in its order, the decodes
that are new (not told, not repeated). When fewer than n are new, `fallback` says what fills the rest:
"repeat", the reference's rule as far as a fixed ask size allows (the reference evaluates fewer
architectures that round; here the slots re-ask the parents, best first: told already, they cost an
evaluation and teach nothing); "neighbors", the unseen one-edit neighbours of the parents ranked by
the predictor, then repeats. No row fills with uniform samples. Until `n_init` successful evaluations
the strategy samples uniformly (unseen first), as the reference starts from random architectures.

NAO's step (`NAO.search_embedding`, the reference's rule): every parent's embedding moves by step
size s along the predictor's raw gradient, z' = unit(z + s grad), for s = 1, 2, ... until at least n
new architectures have decoded or s reaches `max_step_size`.

The defaults are rank targets and the neighbour fallback; a strategy's `PAPER` holds its paper's
settings (min-max targets, repeat fallback; the rows "nao_paper" and "rnas_paper" of the
sample-efficiency tables). All train `train_steps` steps per round, far fewer than the reference's 1,000 epochs per round (not
affordable for a hundred searches of a thousand evaluations on a CPU).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from nasjax.search.base import (History, State, Strategy, first_occurrence, match, rank_targets, register,
                                sample_unseen, uniform_cond)
from nasjax.spaces.base import TokenView

NEG = -1e9  # logit of a masked token (finite: keeps log-softmax and its gradient NaN-free)


class Seq2Seq(nn.Module):
    """NAO's encoder, predictor and decoder over token sequences with per-position vocabularies
    `vocab` (L,). Methods work on one sequence; the strategy drives the recurrences with lax.scan."""

    vocab: tuple[int, ...]
    hidden: int = 32
    features: int = 16

    def setup(self):
        self.offsets = np.concatenate([[0], np.cumsum(self.vocab)[:-1]]).astype(np.int32)
        self.embed = nn.Embed(sum(self.vocab), self.features)
        self.position = nn.Embed(len(self.vocab), self.features)
        self.encoder = nn.OptimizedLSTMCell(self.hidden)
        self.decoder = nn.OptimizedLSTMCell(self.hidden)
        self.project = nn.Dense(self.hidden)
        self.carry_init = nn.Dense(2 * self.hidden)
        self.readout = nn.Dense(max(self.vocab))
        self.predictor_hidden = nn.Dense(self.hidden)
        self.predictor_out = nn.Dense(1)

    def token_embedding(self, tokens: jax.Array) -> jax.Array:
        """int (L,) -> float32 (L, features)."""
        return self.embed(jnp.asarray(self.offsets) + tokens)

    def encoder_step(self, carry, x: jax.Array):
        return self.encoder(carry, x)

    def embedding(self, states: jax.Array) -> jax.Array:
        """The encoder's hidden states (L, hidden) -> z (hidden,): a linear map of all of them (a mean
        would blur which position said what), on the unit sphere as NAO's reference normalizes its
        encoder outputs (so step sizes and sampling scales have a fixed unit)."""
        return unit(self.project(states.reshape(-1)))

    def decoder_start(self, z: jax.Array):
        c, h = jnp.split(self.carry_init(z), 2)
        return c, jnp.tanh(h)

    def decoder_step(self, carry, t: jax.Array, z: jax.Array):
        """Position t's logits (max(vocab),), fed z and a learned vector of position t. Not the token
        chosen at t - 1: then training (teacher forcing) and greedy decoding see the same inputs;
        dependencies between positions are the space's masks."""
        carry, h = self.decoder(carry, jnp.concatenate([self.position(t), z]))
        return carry, self.readout(h)

    def predict(self, z: jax.Array) -> jax.Array:
        """The predicted target in (0, 1) (a sigmoid, as NAO's reference; targets are in [0, 1])."""
        return nn.sigmoid(self.predictor_out(nn.relu(self.predictor_hidden(z)))[0])

    def __call__(self, tokens: jax.Array):
        """Touches every parameter once (for `init`)."""
        x = self.token_embedding(tokens)
        carry, h = self.encoder_step(self.encoder.initialize_carry(jax.random.key(0), x[0].shape), x[0])
        h = self.embedding(jnp.broadcast_to(h, (len(self.vocab), self.hidden)))
        _, logits = self.decoder_step(self.decoder_start(h), jnp.zeros((), jnp.int32), h)
        return self.predict(h), logits


def unit(z: jax.Array) -> jax.Array:
    """z (..., H) scaled to unit L2 norm along its last axis (a zero vector stays zero)."""
    return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


TARGETS = ("minmax", "rank")
FALLBACKS = ("repeat", "neighbors")
# Where an asked architecture came from (`Proposal.kind`).
DECODED, NEIGHBOR, REPEAT = 0, 1, 2
# The papers' settings of the shared machinery (a strategy's `PAPER` adds its own; the rows
# "nao_paper" and "rnas_paper" of experiments/sample_efficiency.py).
PAPER = dict(targets="minmax", fallback="repeat")


@struct.dataclass
class EmbeddingState(State):
    """params: the Seq2Seq parameters; opt_state: their Adam state."""

    params: dict
    opt_state: optax.OptState


@struct.dataclass
class Proposal:
    """n proposed architectures and their provenance.

    archs int32 (n, *enc); kind int32 (n,): DECODED, NEIGHBOR or REPEAT; z float32 (n, hidden): the
    embedding a decoded one came from (0 otherwise); parent int32 (n,): the parent (index among the
    parents, best first) it came from or is a neighbour or repeat of (-1 for an RNAS sample);
    step int32 (n,): NAO's step size (0 otherwise); count int32: how many are filled (n when done).
    """

    archs: jax.Array
    kind: jax.Array
    z: jax.Array
    parent: jax.Array
    step: jax.Array
    count: jax.Array

    @classmethod
    def empty(cls, n: int, encoding_shape: tuple[int, ...], hidden: int) -> "Proposal":
        return cls(archs=jnp.zeros((n, *encoding_shape), jnp.int32), kind=jnp.zeros((n,), jnp.int32),
                   z=jnp.zeros((n, hidden), jnp.float32), parent=jnp.zeros((n,), jnp.int32),
                   step=jnp.zeros((n,), jnp.int32), count=jnp.zeros((), jnp.int32))

    def add(self, archs: jax.Array, ok: jax.Array, kind: int, z: jax.Array, parent: jax.Array,
            step: jax.Array) -> "Proposal":
        """Append, in order, the candidates archs int32 (C, *enc) where ok bool (C,) holds, up to n in
        all (the rest are dropped); z (C, hidden), parent (C,), step (C,) their provenance."""
        n = self.kind.shape[0]
        pos = self.count + jnp.cumsum(ok) - 1
        at = jnp.where(ok & (pos < n), pos, n)  # index n: dropped

        def put(dst, src):
            return dst.at[at].set(src.astype(dst.dtype), mode="drop")

        return Proposal(archs=put(self.archs, archs), kind=put(self.kind, jnp.full(ok.shape, kind)),
                        z=put(self.z, z), parent=put(self.parent, parent), step=put(self.step, step),
                        count=jnp.minimum(self.count + jnp.sum(ok), n))

    def new(self, history: History, archs: jax.Array) -> jax.Array:
        """bool (C,): candidates neither told, nor already proposed, nor repeated among themselves."""
        told = match(history.encodings, history.filled, archs)[0]
        taken = match(self.archs, jnp.arange(self.kind.shape[0]) < self.count, archs)[0]
        return ~told & ~taken & first_occurrence(archs)


@dataclasses.dataclass(frozen=True)
class EmbeddingSearch(Strategy):
    """Shared model, training and proposal machinery of NAO and RNAS; a subclass defines
    `search_embedding`: the decodes it proposes, in its order."""

    n_init: int = 10
    n_parents: int = 16
    hidden: int = 32
    features: int = 16
    train_steps: int = 30
    batch_size: int = 32
    unlabeled: int = 32
    learning_rate: float = 3e-3
    trade_off: float = 0.8
    targets: str = "rank"
    fallback: str = "neighbors"
    HPARAMS = ("learning_rate", "trade_off")
    PAPER: ClassVar[dict] = PAPER  # the paper's configuration
    state_class = EmbeddingState

    def __post_init__(self):
        super().__post_init__()
        why = self.unsupported(self.space)
        if why:
            raise ValueError(why)
        if not 0 <= self.trade_off <= 1:
            raise ValueError(f"trade_off must be in [0, 1], got {self.trade_off}")
        for name in ("n_parents", "hidden", "features", "train_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name, allowed in (("targets", TARGETS), ("fallback", FALLBACKS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @classmethod
    def unsupported(cls, space) -> str | None:
        if not isinstance(space, TokenView):
            return f"{type(space).__name__} has no token view (token_vocab, to_tokens, from_tokens)"
        return None

    # --- the model -------------------------------------------------------------------------------
    @property
    def model(self) -> Seq2Seq:
        return Seq2Seq(vocab=tuple(self.space.token_vocab), hidden=self.hidden, features=self.features)

    def optimizer(self, learning_rate: jax.Array) -> optax.GradientTransformation:
        return optax.adam(learning_rate)

    def encode(self, params, tokens: jax.Array) -> jax.Array:
        """int (L,) -> unit embedding float32 (hidden,) of the encoder's hidden states."""
        model = self.model
        x = model.apply(params, tokens, method=Seq2Seq.token_embedding)
        zeros = jnp.zeros((self.hidden,), jnp.float32)
        step = lambda carry, xt: model.apply(params, carry, xt, method=Seq2Seq.encoder_step)  # noqa: E731
        states = jax.lax.scan(step, (zeros, zeros), x)[1]
        return model.apply(params, states, method=Seq2Seq.embedding)

    def embed(self, params, archs: jax.Array) -> jax.Array:
        """archs int32 (M, *enc) -> embeddings float32 (M, hidden)."""
        return jax.vmap(lambda a: self.encode(params, self.space.to_tokens(a)))(archs)

    def predict(self, params, z: jax.Array) -> jax.Array:
        return self.model.apply(params, z, method=Seq2Seq.predict)

    def logits(self, params, z: jax.Array) -> jax.Array:
        """The decoder's unmasked logits float32 (L, max(vocab)) for embedding z."""
        model = self.model
        step = lambda carry, t: model.apply(params, carry, t, z, method=Seq2Seq.decoder_step)  # noqa: E731
        start = model.apply(params, z, method=Seq2Seq.decoder_start)
        return jax.lax.scan(step, start, jnp.arange(len(self.space.token_vocab)))[1]

    def masked_log_probs(self, logits: jax.Array, tokens: jax.Array) -> jax.Array:
        """Log-probabilities float32 (L, V) of each position under `space.token_mask` of the given
        token sequence's prefix (int (L,)); all positions at once (teacher forcing)."""
        masks = jax.vmap(lambda t: self.space.token_mask(tokens, t))(jnp.arange(logits.shape[0]))
        return jax.nn.log_softmax(jnp.where(masks, logits, NEG))

    def greedy(self, logits: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The most likely token at each position among those `space.token_mask` allows after the
        tokens chosen before it. -> (tokens int32 (L,), log-probabilities float32 (L, V))."""

        def step(seq, t):
            logp = jax.nn.log_softmax(jnp.where(self.space.token_mask(seq, t), logits[t], NEG))
            return seq.at[t].set(jnp.argmax(logp).astype(jnp.int32)), logp

        return jax.lax.scan(step, jnp.zeros((logits.shape[0],), jnp.int32), jnp.arange(logits.shape[0]))

    def decode(self, params, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Greedy constrained decode of one embedding -> (tokens int32 (L,), log-probs (L, V))."""
        return self.greedy(self.logits(params, z))

    def loss(self, params, tokens: jax.Array, y: jax.Array, labeled: jax.Array, trade_off: jax.Array) -> jax.Array:
        """tokens int (B, L), y float32 (B,) targets in [0, 1], labeled bool (B,), trade_off scalar
        -> scalar."""

        def one(seq):
            z = self.encode(params, seq)
            logp = self.masked_log_probs(self.logits(params, z), seq)
            return -jnp.sum(jnp.take_along_axis(logp, seq[:, None], axis=1)), self.predict(params, z)

        nll, pred = jax.vmap(one)(tokens)
        err = jnp.where(labeled, (pred - y) ** 2, 0.0)
        return ((1 - trade_off) * jnp.mean(nll)
                + trade_off * jnp.sum(err) / jnp.maximum(jnp.sum(labeled), 1))

    def scaled_targets(self, history: History) -> tuple[jax.Array, jax.Array]:
        """(the predictor's targets in [0, 1] for the successful told rows, float32 (capacity,), 0
        elsewhere; which rows are labeled, bool (capacity,)). "minmax": (s - min) / (max - min) over
        the successful scores (0.5 when they are all equal); "rank": `rank_targets`."""
        ok = history.filled & jnp.isfinite(history.scores)
        if self.targets == "rank":
            return rank_targets(history), ok
        lo = jnp.min(jnp.where(ok, history.scores, jnp.inf))
        hi = jnp.max(jnp.where(ok, history.scores, -jnp.inf))
        y = jnp.where(hi > lo, (history.scores - lo) / jnp.where(hi > lo, hi - lo, 1.0), 0.5)
        return jnp.where(ok, y, 0.0), ok

    def train_step(self, key: jax.Array, params, opt_state, history: History, hparams: dict):
        """One Adam step on a minibatch: `batch_size` told rows (labeled where their score is finite)
        and `unlabeled` uniform samples. -> (params, opt_state, loss)."""
        k_rows, k_space = jax.random.split(key)
        rows = jax.random.randint(k_rows, (self.batch_size,), 0, jnp.maximum(history.count, 1))
        y, ok = self.scaled_targets(history)
        archs, labeled, y = history.encodings[rows], ok[rows], y[rows]
        if self.unlabeled:
            archs = jnp.concatenate([archs, self.space.sample(k_space, self.unlabeled)])
            labeled = jnp.concatenate([labeled, jnp.zeros((self.unlabeled,), bool)])
            y = jnp.concatenate([y, jnp.zeros((self.unlabeled,), jnp.float32)])
        tokens = jax.vmap(self.space.to_tokens)(archs)
        value, grads = jax.value_and_grad(self.loss)(params, tokens, y, labeled, hparams["trade_off"])
        updates, opt_state = self.optimizer(hparams["learning_rate"]).update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    def fit(self, key: jax.Array, params, opt_state, history: History, hparams: dict, steps: int):
        """`steps` train steps (a lax.scan) -> (params, opt_state, losses float32 (steps,))."""

        def body(carry, k):
            params, opt_state, loss = self.train_step(k, *carry, history, hparams)
            return (params, opt_state), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), jax.random.split(key, steps))
        return params, opt_state, losses

    # --- protocol --------------------------------------------------------------------------------
    def _init(self, key: jax.Array) -> tuple[jax.Array, dict]:
        key, k_model = jax.random.split(key)
        tokens = jnp.zeros((len(self.space.token_vocab),), jnp.int32)
        params = self.model.init(k_model, tokens)
        # Adam's initial state does not depend on the learning rate.
        return key, dict(params=params, opt_state=self.optimizer(self.learning_rate).init(params))

    def ask(self, state: EmbeddingState, n: int) -> tuple[jax.Array, EmbeddingState]:
        key, k_rand, k_model = jax.random.split(state.key, 3)
        told = jnp.sum(state.history.filled & jnp.isfinite(state.history.scores))
        archs = uniform_cond(told >= self.n_init,
                             lambda k_model, _, params, history: self.propose(k_model, params, history, n).archs,
                             lambda _, k_rand, __, history: sample_unseen(self.space, k_rand, history, n),
                             k_model, k_rand, state.params, state.history)
        return archs, state.replace(key=key)

    def _tell(self, state: EmbeddingState, archs: jax.Array, scores: jax.Array) -> EmbeddingState:
        """Train the model on the history (which already holds the told rows)."""
        key, k_fit = jax.random.split(state.key)
        params, opt_state, _ = self.fit(k_fit, state.params, state.opt_state, state.history, state.hparams,
                                       self.train_steps)
        return state.replace(key=key, params=params, opt_state=opt_state)

    # --- proposals -------------------------------------------------------------------------------
    def parents(self, params, history: History) -> tuple[jax.Array, jax.Array]:
        """The top `n_parents` successful told architectures, best first (fewer told: the best
        repeats; P is n_parents, or the history's capacity if smaller) -> (encodings int32
        (P, *enc), embeddings float32 (P, hidden))."""
        ranked = history.ranked_scores()
        top = jax.lax.top_k(ranked, min(self.n_parents, history.capacity))[1]
        top = jnp.where(jnp.isfinite(ranked[top]), top, top[0])
        archs = history.encodings[top]
        return archs, self.embed(params, archs)

    def repair(self, key: jax.Array, enc: jax.Array, logp: jax.Array, parent: jax.Array) -> jax.Array:
        """`enc` if valid; else its valid one-edit neighbour with the highest summed decoder
        log-probability (logp (L, V)); else a mutation of `parent` (see the module docstring)."""
        nbrs, real = self.space.neighbors(enc)
        tokens = jax.vmap(self.space.to_tokens)(nbrs)
        ll = jnp.sum(jnp.take_along_axis(logp[None], tokens[..., None], axis=2)[..., 0], axis=1)
        best = nbrs[jnp.argmax(jnp.where(real, ll, -jnp.inf))]
        fallback = jnp.where(jnp.any(real), best, self.space.mutate(key, parent))
        return jnp.where(self.space.is_valid(enc), enc, fallback).astype(jnp.int32)

    def decode_all(self, key: jax.Array, params, z: jax.Array, parents: jax.Array) -> jax.Array:
        """Valid architectures int32 (C, *enc) decoded from embeddings z (C, hidden), each repaired
        (where the space needs it) towards parents int32 (C, *enc)."""
        tokens, logp = jax.vmap(lambda zi: self.decode(params, zi))(z)
        decoded = jax.vmap(self.space.from_tokens)(tokens)
        if self.space.tokens_always_valid:
            return decoded.astype(jnp.int32)
        return jax.vmap(self.repair)(jax.random.split(key, z.shape[0]), decoded, logp, parents)

    def search_embedding(self, key: jax.Array, params, parent_archs: jax.Array, parent_z: jax.Array,
                         history: History, proposal: Proposal) -> Proposal:
        """Add the strategy's new decodes to `proposal`, in its order (see the subclasses)."""
        raise NotImplementedError

    def propose(self, key: jax.Array, params, history: History, n: int) -> Proposal:
        """n architectures: the new decodes of `search_embedding`, then the `fallback` (see the
        module docstring)."""
        parent_archs, parent_z = self.parents(params, history)
        proposal = Proposal.empty(n, self.space.encoding_shape, self.hidden)
        proposal = self.search_embedding(key, params, parent_archs, parent_z, history, proposal)
        if self.fallback == "neighbors":
            proposal = uniform_cond(proposal.count < n, self.add_neighbors, lambda _, __, ___, p: p,
                                    params, history, parent_archs, proposal)
        # Repeats: the remaining slots re-ask the parents, best first.
        p = parent_archs.shape[0]
        slot = jnp.arange(n)
        which = (slot - proposal.count) % p
        repeat = slot >= proposal.count
        expand = repeat.reshape((n,) + (1,) * len(self.space.encoding_shape))
        return proposal.replace(archs=jnp.where(expand, parent_archs[which], proposal.archs),
                                kind=jnp.where(repeat, REPEAT, proposal.kind),
                                parent=jnp.where(repeat, which, proposal.parent), count=jnp.int32(n))

    def add_neighbors(self, params, history: History, parent_archs: jax.Array, proposal: Proposal) -> Proposal:
        """The fallback "neighbors": the parents' unseen one-edit neighbours, best predicted first."""
        nbrs, real = jax.vmap(self.space.neighbors)(parent_archs)  # (P, M, *enc), (P, M)
        p, m = real.shape
        nbrs = nbrs.reshape(p * m, *self.space.encoding_shape).astype(jnp.int32)
        value = jnp.where(real.reshape(-1), jax.vmap(lambda z: self.predict(params, z))(self.embed(params, nbrs)),
                          -jnp.inf)
        order = jnp.argsort(-value, stable=True)
        nbrs, ok = nbrs[order], jnp.isfinite(value[order])
        ok = ok & proposal.new(history, nbrs)
        zeros = jnp.zeros((p * m,), jnp.int32)
        return proposal.add(nbrs, ok, NEIGHBOR, jnp.zeros((p * m, self.hidden)), (order // m).astype(jnp.int32),
                            zeros)


@register("nao")
@dataclasses.dataclass(frozen=True)
class NAO(EmbeddingSearch):
    """NAO's gradient steps in the embedding, the step size growing until enough new architectures
    decode (at most `max_step_size`)."""

    max_step_size: int = 50

    def __post_init__(self):
        super().__post_init__()
        if self.max_step_size < 1:
            raise ValueError(f"max_step_size must be >= 1, got {self.max_step_size}")

    def gradient(self, params, z: jax.Array) -> jax.Array:
        """The predictor's gradient float32 (P, hidden) at embeddings z (P, hidden)."""
        return jax.vmap(jax.grad(lambda zi: self.predict(params, zi)))(z)

    def step(self, params, z: jax.Array, size: jax.Array) -> jax.Array:
        """Embeddings z (P, hidden) moved by `size` along the predictor's raw gradient, back on the
        unit sphere: unit(z + size * grad)."""
        return moved(z, self.gradient(params, z), size)

    def search_embedding(self, key, params, parent_archs, parent_z, history, proposal):
        n, p = proposal.kind.shape[0], parent_z.shape[0]
        parents = jnp.arange(p, dtype=jnp.int32)
        grad = self.gradient(params, parent_z)

        def body(carry):
            size, proposal = carry
            size = size + 1
            z = moved(parent_z, grad, size.astype(jnp.float32))
            archs = self.decode_all(jax.random.fold_in(key, size), params, z, parent_archs)
            proposal = proposal.add(archs, proposal.new(history, archs), DECODED, z, parents,
                                    jnp.full((p,), size))
            return size, proposal

        def more(carry):
            size, proposal = carry
            return (proposal.count < n) & (size < self.max_step_size)

        return jax.lax.while_loop(more, body, (jnp.zeros((), jnp.int32), proposal))[1]


def moved(z: jax.Array, grad: jax.Array, size: jax.Array) -> jax.Array:
    """NAO's step: unit(z + size * grad) (z, grad (P, hidden))."""
    return unit(z + size * grad)
