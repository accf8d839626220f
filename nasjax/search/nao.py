"""Neural Architecture Optimization (Luo et al. 2018) as a pure ask/tell strategy, and the learned
embedding it shares with RNAS (`004_*`, nasjax/search/rnas.py).

The model (`Seq2Seq`, Flax) reads an architecture as its token sequence (`space.to_tokens`: one token
per position, per-position vocabularies `space.token_vocab`):
  encoder    LSTM over the tokens; the embedding z is a linear map of its hidden states  (hidden,)
  predictor  MLP z -> standardized score                                                  scalar
  decoder    LSTM started from z, fed z and the position, one readout per position      (L, V)
Tokens are embedded per position (position t's token k has its own vector), so the encoder sees where
it is. Training (`fit`, `train_steps` optax Adam steps per tell, warm-started from the previous
tell) minimizes (1 - trade_off) * reconstruction cross-entropy + trade_off * squared prediction error,
NAO's loss. Minibatches are drawn from the told rows of the fixed-capacity history (static shapes:
indices below `history.count`), plus `unlabeled` fresh uniform samples of the space that count in
the reconstruction term only: sampling the space costs no evaluation, and they teach the decoder the
whole space rather than the few told architectures (semi-supervised, as in SemiNAS).

Decoding is greedy and constrained: at position t only the tokens `space.token_mask(tokens, t)`
allows can be chosen, so ConvNet, NB-201 and DARTS decodes are valid by construction
(`space.tokens_always_valid`). NB-101's validity (input reaches output, at most 9 edges after
pruning) is not a per-position rule; there an invalid decode is *repaired*: replaced by its valid
one-edit neighbour (`space.neighbors`) that the decoder's per-position log-probabilities rate
highest, or, when no neighbour is valid, by a mutation of the architecture whose embedding it came
from. Every proposal is therefore valid.

NAO's step (`NAO.embeddings`): the top `n_parents` told architectures are encoded, and each embedding
moves along the predictor's gradient (unit direction) by every distance of `step_sizes`, in units of
the parents' embedding spread (RMS distance to their mean). All moved embeddings are decoded; the new
(not told, not duplicated) ones are ranked by the predictor at their own embedding and the best n are
asked. Too few new ones: uniform unseen samples fill the rest. Until `n_init` successful evaluations
the strategy samples uniformly (unseen first).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from nasjax.search.base import (History, State, Strategy, first_occurrence, match, register, sample_unseen,
                                uniform_cond)
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
        would blur which position said what)."""
        return self.project(states.reshape(-1))

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
        return self.predictor_out(nn.relu(self.predictor_hidden(z)))[0]

    def __call__(self, tokens: jax.Array):
        """Touches every parameter once (for `init`)."""
        x = self.token_embedding(tokens)
        carry, h = self.encoder_step(self.encoder.initialize_carry(jax.random.key(0), x[0].shape), x[0])
        h = self.embedding(jnp.broadcast_to(h, (len(self.vocab), self.hidden)))
        _, logits = self.decoder_step(self.decoder_start(h), jnp.zeros((), jnp.int32), h)
        return self.predict(h), logits


@struct.dataclass
class EmbeddingState(State):
    """params: the Seq2Seq parameters; opt_state: their Adam state."""

    params: dict
    opt_state: optax.OptState


@dataclasses.dataclass(frozen=True)
class EmbeddingSearch(Strategy):
    """Shared model, training and proposal machinery of NAO and RNAS; a subclass defines
    `embeddings(key, params, parents)`: the embeddings to decode."""

    n_init: int = 10
    n_parents: int = 16
    hidden: int = 32
    features: int = 16
    train_steps: int = 10
    batch_size: int = 32
    unlabeled: int = 32
    learning_rate: float = 3e-3
    trade_off: float = 0.5
    HPARAMS = ("learning_rate", "trade_off")
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
        """int (L,) -> embedding float32 (hidden,) of the encoder's hidden states."""
        model = self.model
        x = model.apply(params, tokens, method=Seq2Seq.token_embedding)
        zeros = jnp.zeros((self.hidden,), jnp.float32)
        step = lambda carry, xt: model.apply(params, carry, xt, method=Seq2Seq.encoder_step)  # noqa: E731
        states = jax.lax.scan(step, (zeros, zeros), x)[1]
        return model.apply(params, states, method=Seq2Seq.embedding)

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
        """tokens int (B, L), y float32 (B,) standardized scores, labeled bool (B,), trade_off scalar
        -> scalar."""

        def one(seq):
            z = self.encode(params, seq)
            logp = self.masked_log_probs(self.logits(params, z), seq)
            return -jnp.sum(jnp.take_along_axis(logp, seq[:, None], axis=1)), self.predict(params, z)

        nll, pred = jax.vmap(one)(tokens)
        err = jnp.where(labeled, (pred - y) ** 2, 0.0)
        return ((1 - trade_off) * jnp.mean(nll)
                + trade_off * jnp.sum(err) / jnp.maximum(jnp.sum(labeled), 1))

    def standardized(self, history: History) -> tuple[jax.Array, jax.Array]:
        """(scores standardized over the successful told rows (capacity,), which rows are labeled)."""
        ok = history.filled & jnp.isfinite(history.scores)
        y = jnp.where(ok, history.scores, 0.0)
        m = jnp.maximum(jnp.sum(ok), 1)
        mu = jnp.sum(y) / m
        sd = jnp.sqrt(jnp.sum(jnp.where(ok, (y - mu) ** 2, 0.0)) / m)
        return jnp.where(ok, (y - mu) / jnp.where(sd > 0, sd, 1.0), 0.0), ok

    def train_step(self, key: jax.Array, params, opt_state, history: History, hparams: dict):
        """One Adam step on a minibatch: `batch_size` told rows (labeled where their score is finite)
        and `unlabeled` uniform samples. -> (params, opt_state, loss)."""
        k_rows, k_space = jax.random.split(key)
        rows = jax.random.randint(k_rows, (self.batch_size,), 0, jnp.maximum(history.count, 1))
        y, ok = self.standardized(history)
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
                             lambda k_model, _, params, history, hp: self.propose(k_model, params, history, n, hp),
                             lambda _, k_rand, __, history, ___: sample_unseen(self.space, k_rand, history, n),
                             k_model, k_rand, state.params, state.history, state.hparams)
        return archs, state.replace(key=key)

    def _tell(self, state: EmbeddingState, archs: jax.Array, scores: jax.Array) -> EmbeddingState:
        """Train the model on the history (which already holds the told rows)."""
        key, k_fit = jax.random.split(state.key)
        params, opt_state, _ = self.fit(k_fit, state.params, state.opt_state, state.history, state.hparams,
                                       self.train_steps)
        return state.replace(key=key, params=params, opt_state=opt_state)

    # --- proposals -------------------------------------------------------------------------------
    def embeddings(self, key: jax.Array, params, parents: jax.Array, hparams: dict) -> tuple[jax.Array, jax.Array]:
        """The embeddings to decode, from the parents' embeddings (P, hidden): (float32 (C, hidden),
        int32 (C,) the parent each one is closest in origin to, for `repair`)."""
        raise NotImplementedError

    def parents(self, params, history: History) -> tuple[jax.Array, jax.Array]:
        """The top `n_parents` successful told architectures (fewer told: the best repeat; P is
        n_parents, or the history's capacity if smaller) -> (encodings int32 (P, *enc), embeddings
        float32 (P, hidden))."""
        ranked = history.ranked_scores()
        top = jax.lax.top_k(ranked, min(self.n_parents, history.capacity))[1]
        top = jnp.where(jnp.isfinite(ranked[top]), top, top[0])
        archs = history.encodings[top]
        return archs, jax.vmap(lambda a: self.encode(params, self.space.to_tokens(a)))(archs)

    def repair(self, key: jax.Array, enc: jax.Array, logp: jax.Array, parent: jax.Array) -> jax.Array:
        """`enc` if valid; else its valid one-edit neighbour with the highest summed decoder
        log-probability (logp (L, V)); else a mutation of `parent` (see the module docstring)."""
        nbrs, real = self.space.neighbors(enc)
        tokens = jax.vmap(self.space.to_tokens)(nbrs)
        ll = jnp.sum(jnp.take_along_axis(logp[None], tokens[..., None], axis=2)[..., 0], axis=1)
        best = nbrs[jnp.argmax(jnp.where(real, ll, -jnp.inf))]
        fallback = jnp.where(jnp.any(real), best, self.space.mutate(key, parent))
        return jnp.where(self.space.is_valid(enc), enc, fallback).astype(jnp.int32)

    def propose(self, key: jax.Array, params, history: History, n: int, hparams: dict) -> jax.Array:
        """int32 (n, *enc): the n new decoded architectures the predictor rates highest, then uniform
        unseen ones if fewer than n are new."""
        k_emb, k_repair, k_fill = jax.random.split(key, 3)
        parent_archs, parent_z = self.parents(params, history)
        z, origin = self.embeddings(k_emb, params, parent_z, hparams)
        tokens, logp = jax.vmap(lambda zi: self.decode(params, zi))(z)
        decoded = jax.vmap(self.space.from_tokens)(tokens)
        parent = parent_archs[origin]
        if self.space.tokens_always_valid:
            cands = decoded
        else:
            cands = jax.vmap(self.repair)(jax.random.split(k_repair, z.shape[0]), decoded, logp, parent)
        value = jax.vmap(lambda a: self.predict(params, self.encode(params, self.space.to_tokens(a))))(cands)
        fillers = sample_unseen(self.space, k_fill, history, n)
        pool = jnp.concatenate([cands, fillers])
        # Fillers rank below every new candidate; told and repeated rows are out.
        value = jnp.concatenate([value, jnp.full((n,), NEG)])
        seen, _ = match(history.encodings, history.filled, pool)
        value = jnp.where(~seen & first_occurrence(pool) & jnp.isfinite(value), value, -jnp.inf)
        return pool[jax.lax.top_k(value, n)[1]]


def spread(z: jax.Array) -> jax.Array:
    """RMS distance of embeddings (P, H) to their mean (a floor keeps it positive)."""
    return jnp.sqrt(jnp.mean(jnp.sum((z - jnp.mean(z, axis=0)) ** 2, axis=1)) + 1e-6)


@register("nao")
@dataclasses.dataclass(frozen=True)
class NAO(EmbeddingSearch):
    """NAO's gradient step in the embedding: each parent moves along the predictor's gradient by every
    `step_sizes` multiple of the parents' embedding spread."""

    step_sizes: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)

    def embeddings(self, key: jax.Array, params, parents: jax.Array, hparams: dict) -> tuple[jax.Array, jax.Array]:
        grad = jax.vmap(jax.grad(lambda z: self.predict(params, z)))(parents)
        direction = grad / (jnp.linalg.norm(grad, axis=1, keepdims=True) + 1e-12)
        steps = jnp.asarray(self.step_sizes)[:, None, None] * spread(parents)
        z = (parents[None] + steps * direction[None]).reshape(-1, parents.shape[1])
        return z, jnp.tile(jnp.arange(parents.shape[0], dtype=jnp.int32), len(self.step_sizes))
