"""The Space protocol, checked the same way for every search space."""

import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nasjax.nn
from nasjax.spaces import (ConvNetSpace, DARTSSpace, InvalidEncodingError, NASBench101Space,
                           NASBench201Space, NASNetSpace, RNNCellSpace, RNNDAGSpace, TokenView)

# name -> (space, nasjax.nn.build options that keep the forward-pass test small). ConvNet module options
# (BatchNorm, no pooling) are tested in test_convnet_space.py.
SPACES = {
    "convnet-motivating": (ConvNetSpace.motivating(), {}),
    "convnet-60k": (ConvNetSpace.convnet60k(), {}),
    "nasbench101": (NASBench101Space(), dict(stem_channels=8, cells_per_stack=1)),
    "nasbench201": (NASBench201Space(), dict(channels=4, cells_per_stage=1)),
    "darts": (DARTSSpace(), dict(init_channels=8, layers=3)),
    "nasnet": (NASNetSpace(), dict(init_channels=8, layers=3)),
    # Recurrent cells: their language model's forward pass is tested in test_rnn.py.
    "rnn-darts": (RNNCellSpace(), None),
    "rnn-lstm10k": (RNNDAGSpace(), None),
}
SMALL = dict(SPACES.values())  # space -> its small network options
N = 64  # every test draws this many: one compiled sampler per space


@pytest.fixture(params=sorted(SPACES), scope="module")
def space(request):
    return SPACES[request.param][0]


@pytest.fixture(scope="module")
def jitted(space):
    """The space's functions compiled once and shared by its tests (each compile costs seconds):
    sample(key, n) with n static, and is_valid over a batch of encodings."""
    return types.SimpleNamespace(sample=jax.jit(space.sample, static_argnums=1),
                                 is_valid=jax.jit(jax.vmap(space.is_valid)))


def _flat(encs):
    return np.asarray(encs).reshape(len(encs), -1)


def test_sample_shape_validity_and_determinism(space, jitted):
    a = jitted.sample(jax.random.key(0), N)
    chex.assert_shape(a, (N, *space.encoding_shape))
    chex.assert_type(a, jnp.int32)
    assert bool(jnp.all(jitted.is_valid(a)))
    space.validate(a)
    np.testing.assert_array_equal(a, jitted.sample(jax.random.key(0), N))
    assert not np.array_equal(a, jitted.sample(jax.random.key(1), N))


def test_sample_vmaps_over_keys(space, jitted):
    keys = jax.random.split(jax.random.key(3), 4)
    batched = jax.jit(jax.vmap(lambda k: space.sample(k, N)))(keys)
    chex.assert_shape(batched, (4, N, *space.encoding_shape))
    for k, rows in zip(keys, batched):
        np.testing.assert_array_equal(rows, jitted.sample(k, N))


def test_neighbors_and_mutate_are_valid_and_distinct(space, jitted):
    encs = jitted.sample(jax.random.key(7), N)[:8]
    keys = jax.random.split(jax.random.key(8), 8)
    # One program for both (mutate builds the neighbours too): each compile costs seconds.
    both = jax.jit(lambda k, e: (jax.vmap(space.neighbors)(e), jax.vmap(space.mutate)(k, e)))
    (nbrs, mask), mutated = both(keys, encs)
    encs, nbrs, mask = np.asarray(encs), np.asarray(nbrs), np.asarray(mask)
    assert mask.any(axis=1).all()
    assert np.asarray(jitted.is_valid(nbrs[mask])).all()
    for enc, rows, m in zip(encs, nbrs, mask):
        real = rows[m]
        assert not any(np.array_equal(r, enc) for r in real)
        assert len({np.ascontiguousarray(r).tobytes() for r in real}) == len(real)
    assert bool(jnp.all(jitted.is_valid(mutated)))
    assert not np.any(np.all(_flat(mutated) == _flat(encs), axis=1))


def test_features_are_finite_fixed_length(space, jitted):
    feats = jax.jit(jax.vmap(space.features))(jitted.sample(jax.random.key(2), N))
    chex.assert_shape(feats, (N, space.num_features))
    chex.assert_tree_all_finite(feats)


@pytest.mark.parametrize("bad_shape", [(3,), (2, 3, 5)])
def test_validate_rejects_wrong_shape(space, bad_shape):
    with pytest.raises(InvalidEncodingError, match="shape"):
        space.validate(np.zeros(bad_shape, np.int32))


def test_validate_names_the_space_for_a_ragged_list(space):
    row = np.zeros(space.encoding_shape, np.int32).tolist()
    with pytest.raises(InvalidEncodingError, match=f"{type(space).__name__}: encoding is a ragged"):
        space.validate([row, row[:-1]])


@pytest.mark.parametrize("n", [-1, 2.0, True, "3"])
def test_sample_rejects_a_count_that_is_not_a_non_negative_int(space, n):
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        space.sample(jax.random.key(0), n)


def test_arch_hash_rejects_an_invalid_encoding(space, jitted):
    enc = np.asarray(jitted.sample(jax.random.key(12), N)[0])
    assert space.arch_hash(enc) == space.arch_hash(enc.tolist())
    with pytest.raises(InvalidEncodingError, match=type(space).__name__):
        space.arch_hash(np.full_like(enc, 99))
    with pytest.raises(InvalidEncodingError, match="shape"):
        space.arch_hash(enc[..., :1])


def test_validate_rejects_floats(space, jitted):
    enc = np.asarray(jitted.sample(jax.random.key(0), N)[0], np.float32)
    with pytest.raises(InvalidEncodingError, match="dtype"):
        space.validate(enc)


def test_forward_pass_on_real_cifar(space, jitted, cifar_batch, random_variables):
    if SMALL[space] is None:
        pytest.skip("not an image network")
    enc = jitted.sample(jax.random.key(11), N)[0]
    module = nasjax.nn.build(space, enc, num_classes=10, **SMALL[space])
    logits = jax.jit(module.apply)(random_variables(module, cifar_batch), cifar_batch)
    chex.assert_shape(logits, (cifar_batch.shape[0], 10))
    chex.assert_tree_all_finite(logits)
    assert space.describe(enc)


def random_masked_tokens(space, key):
    """A token sequence drawn position by position uniformly among the tokens `token_mask` allows."""
    vocab = space.token_vocab

    def step(tokens, xs):
        t, k = xs
        allowed = space.token_mask(tokens, t)
        return tokens.at[t].set(jax.random.categorical(k, jnp.where(allowed, 0.0, -jnp.inf))), None

    tokens = jnp.zeros((len(vocab),), jnp.int32)
    return jax.lax.scan(step, tokens, (jnp.arange(len(vocab)), jax.random.split(key, len(vocab))))[0]


def test_token_view_round_trips_and_masks_decode_valid(space, jitted):
    if not isinstance(space, TokenView):
        pytest.skip(f"{type(space).__name__} defines no token view (NAO and RNAS do not search it)")
    encs = jitted.sample(jax.random.key(4), N)

    def views(e, k):
        tokens = space.to_tokens(e)
        allowed = jax.vmap(lambda t: space.token_mask(tokens, t)[tokens[t]])(jnp.arange(len(tokens)))
        return tokens, space.from_tokens(tokens), allowed, space.from_tokens(random_masked_tokens(space, k))

    tokens, back, allowed, drawn = jax.jit(jax.vmap(views))(encs, jax.random.split(jax.random.key(5), N))
    chex.assert_shape(tokens, (N, len(space.token_vocab)))
    assert np.all((np.asarray(tokens) >= 0) & (np.asarray(tokens) < np.asarray(space.token_vocab)))
    np.testing.assert_array_equal(back, encs)
    assert np.asarray(allowed).all(), "a valid encoding's tokens must pass token_mask"
    if space.tokens_always_valid:  # NB-101: connectivity and the edge limit are not per-token rules
        assert bool(jnp.all(jitted.is_valid(drawn)))
        assert len(np.unique(_flat(drawn), axis=0)) > N // 2  # the masks do not collapse the space
