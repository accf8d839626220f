"""Recurrent cells on Penn Treebank: genotype strings, encodings, the language model on the real PTB
files, weight sharing, and the PTB reader's errors. (The Space protocol tests in test_spaces.py cover
RNNCellSpace and RNNDAGSpace too.)"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nasjax.nn
from nasjax.data import DataError, batchify, bptt_batches, load_ptb, unigram_perplexity
from nasjax.spaces import InvalidEncodingError, RNNCellSpace, RNNDAGSpace
from nasjax.spaces.rnn import DARTS_V1_RNN, DARTS_V2_RNN, ENAS_RNN
from nasjax.train import lm

# DARTS_V2 exactly as quark0/darts rnn/genotypes.py prints it.
DARTS_V2_TEXT = ("Genotype(recurrent=[('sigmoid', 0), ('relu', 1), ('relu', 1), ('identity', 1), "
                 "('tanh', 2), ('sigmoid', 5), ('tanh', 3), ('relu', 5)], concat=range(1, 9))")
SPACE = RNNCellSpace()


def test_published_darts_cell_parses_and_round_trips():
    enc = SPACE.parse(DARTS_V2_TEXT)
    assert enc.tolist() == [[0, 2], [1, 1], [1, 1], [1, 3], [2, 0], [5, 2], [3, 0], [5, 1]]
    assert SPACE.describe(enc) == DARTS_V2_TEXT
    assert SPACE.to_genotype(enc) == DARTS_V2_RNN
    v1 = SPACE.from_genotype(*DARTS_V1_RNN)
    assert SPACE.parse(SPACE.describe(v1)).tolist() == v1.tolist()
    # ENAS averages the loose ends: its cell belongs to the loose-ends space of 11 nodes only.
    enas_space = RNNCellSpace(num_nodes=11, output="loose_ends")
    assert enas_space.concat(enas_space.from_genotype(*ENAS_RNN)) == tuple(ENAS_RNN.concat)
    with pytest.raises(InvalidEncodingError, match="averages states"):
        RNNCellSpace(num_nodes=11).from_genotype(*ENAS_RNN)


@pytest.mark.parametrize("text, message", [
    (DARTS_V2_TEXT.replace("'sigmoid', 0", "'swish', 0"), "node 1: unknown activation 'swish'"),
    (DARTS_V2_TEXT.replace("('tanh', 3)", "('tanh', 7)"), "node 7: predecessor 7 not available"),
    (DARTS_V2_TEXT.replace("range(1, 9)", "range(2, 9)"), "averages states"),
    ("Genotype(recurrent=[('relu', 0)], concat=range(1, 2))", "1 nodes, this space 8"),
    ("Genotype(recurrent=[('relu', 0)", "not a Python expression"),
    ("Cell(recurrent=[], concat=[])", "expected Genotype"),
    ("Genotype(recurrent=[('relu', 'x')], concat=[1])", "pairs"),
    ("Genotype(recurrent=[('relu', 0)], concat=__import__('os'))", "concat must be"),
])
def test_malformed_genotypes_are_named(text, message):
    with pytest.raises(InvalidEncodingError, match=message):
        SPACE.parse(text)


def test_enumerate_and_index_round_trip():
    small = RNNCellSpace(num_nodes=3, activations=("tanh", "relu"))
    every = small.enumerate()
    assert len(every) == small.size() == 3 * 2 * 2 ** 3  # 3! predecessors x 2^3 activations
    assert len({row.tobytes() for row in every}) == len(every)
    assert np.asarray(jax.vmap(small.is_valid)(every)).all()
    np.testing.assert_array_equal(jax.jit(jax.vmap(small.index))(every), np.arange(len(every)))
    for enc in every[::7]:
        assert small.parse(small.describe(enc)).tolist() == enc.tolist()


def test_validation_errors_name_the_problem():
    with pytest.raises(InvalidEncodingError, match="node 2: predecessor 2 not available"):
        SPACE.validate(np.asarray([[0, 0], [2, 0]] + [[0, 0]] * 6))
    with pytest.raises(InvalidEncodingError, match="activation id 4"):
        SPACE.validate(np.asarray([[0, 4]] + [[0, 0]] * 7))
    dag = RNNDAGSpace()
    enc = np.zeros(dag.encoding_shape, np.int32)
    enc[:, 0] = 1  # every node reads state 0: 6 edges
    with pytest.raises(InvalidEncodingError, match="6 edges, this space has exactly 9"):
        dag.validate(enc)
    enc[1, 0] = 0
    with pytest.raises(InvalidEncodingError, match="node 2: has no input"):
        dag.validate(enc)


def test_arch_data_describes_the_cell():
    cell = nasjax.nn.arch_data(SPACE, SPACE.from_genotype(*DARTS_V2_RNN))
    np.testing.assert_allclose(np.asarray(cell.inputs).sum(1), 1.0)
    assert np.asarray(cell.inputs).argmax(1).tolist() == [p for _, p in DARTS_V2_RNN.recurrent]
    np.testing.assert_allclose(cell.output, np.full(8, 1 / 8))
    dag = RNNDAGSpace()
    enc = np.zeros(dag.encoding_shape, np.int32)
    enc[:, 0] = 1
    enc[3:, 1:4] = np.eye(3)  # nodes 4-6 also read states 1-3: 9 edges; loose ends 4, 5, 6
    cell = nasjax.nn.arch_data(dag, enc)
    assert dag.concat(enc) == tuple(np.flatnonzero(cell.output) + 1) == (4, 5, 6)
    np.testing.assert_allclose(np.asarray(cell.output).sum(), 1.0, rtol=1e-6)


# --- the language model on the real PTB files ---------------------------------------------------------
@pytest.fixture(scope="module")
def ptb(data_dir):
    return load_ptb(data_dir)


# Small and without dropout so that a short run learns: 32 units, windows of 10 x 16 tokens.
SMALL = dict(hidden_size=32, dropout=0.0, dropout_h=0.0, dropout_x=0.0, dropout_i=0.0, dropout_e=0.0)
CONFIG = lm.LMConfig(batch_size=16, bptt=10, eval_batch_size=16, lr=20.0, clip=1.0)


def test_supernet_with_one_cell_equals_the_standalone_cell(ptb):
    enc = SPACE.parse(DARTS_V2_TEXT)
    standalone = nasjax.nn.build(SPACE, enc, num_classes=ptb.vocab_size, hidden_size=16)
    supernet = nasjax.nn.supernet(SPACE, num_classes=ptb.vocab_size, hidden_size=16)
    tokens = jnp.asarray(batchify(ptb.valid[:200], 4)[:12])  # real text (12, 4)
    hidden = jnp.asarray(np.random.default_rng(0).normal(size=(4, 16)), jnp.float32)
    params = standalone.init(jax.random.key(0), tokens, hidden)
    cell = nasjax.nn.arch_data(SPACE, enc)
    rngs = {"dropout": jax.random.key(1)}  # same dropout masks in both (DARTS' default rates)
    a = jax.jit(functools.partial(standalone.apply, train=True))(params, tokens, hidden, rngs=rngs)
    b = jax.jit(functools.partial(supernet.apply, train=True))(params, tokens, hidden, cell, rngs=rngs)
    for x, y in zip(a, b):
        assert np.isfinite(np.asarray(x)).all()
        np.testing.assert_array_equal(x, y)



@pytest.fixture(scope="module")
def lm_run(ptb):
    """DARTS_V2 (cell as data) on the first 72,000 training tokens in 3 chunks of the same shape (one
    compiled program): the step, the chunks and the state after chunk 0."""
    model = nasjax.nn.supernet(SPACE, num_classes=ptb.vocab_size, **SMALL)
    x, y = lm.windows(ptb.train, 16, 10, tokens=72_016)  # 450 windows
    chunks = [(x[i * 150:(i + 1) * 150], y[i * 150:(i + 1) * 150]) for i in range(3)]
    cell = nasjax.nn.arch_data(SPACE, SPACE.parse(DARTS_V2_TEXT))
    cells = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (150,) + a.shape), cell)
    # Data and cells are arguments (constants would be folded into the program at compile time).
    compiled = jax.jit(functools.partial(lm.train_windows, model, CONFIG))

    def step(state, chunk):
        return compiled(state, *chunk, cells)

    init = jax.jit(functools.partial(lm.init_state, model, CONFIG))
    first, _ = step(init(jax.random.key(0)), chunks[0])
    return dict(model=model, cell=cell, step=step, init=init, chunks=chunks, first=first)


def test_small_lm_beats_the_unigram_baseline(ptb, lm_run):
    """After one pass over the 3 chunks (450 steps, 72,000 tokens)."""
    state = lm_run["first"]
    for chunk in lm_run["chunks"][1:]:
        state, _ = lm_run["step"](state, chunk)
    valid = lm.windows(ptb.valid, 16, 10, tokens=8_000)
    loss = jax.jit(functools.partial(lm.evaluate, lm_run["model"]))(lm.eval_params(state), *valid, lm_run["cell"])
    val_ppl = lm.perplexity(loss)
    unigram = unigram_perplexity(ptb.train, np.asarray(valid[1]).ravel(), ptb.vocab_size)
    assert 600 < unigram < 800  # PTB's validation text under the training unigram distribution
    # Well below: at least a fifth under the best context-free model.
    assert val_ppl < 0.8 * unigram, (val_ppl, unigram)
    assert not bool(state.failed)


def test_same_seed_same_bits(lm_run):
    again, _ = lm_run["step"](lm_run["init"](jax.random.key(0)), lm_run["chunks"][0])

    def bits(state):
        return state.replace(train=state.train.replace(rng=jax.random.key_data(state.train.rng)))

    jax.tree_util.tree_map(np.testing.assert_array_equal, bits(again), bits(lm_run["first"]))


def test_diverging_model_is_a_recorded_failure(lm_run):
    state = lm_run["first"]
    poisoned = state.replace(train=state.train.replace(
        params=jax.tree_util.tree_map(lambda p: p.at[0].set(jnp.inf), state.train.params)))
    after, losses = lm_run["step"](poisoned, lm_run["chunks"][1])
    assert bool(after.failed) and not np.isfinite(np.asarray(losses)).all()
    jax.tree_util.tree_map(np.testing.assert_array_equal, after.train.params, poisoned.train.params)
    assert np.isnan(lm.perplexity(np.nan))


# --- the PTB reader -------------------------------------------------------------------------------------
def test_ptb_streams(ptb):
    assert ptb.vocab_size == 10_000 and "<unk>" in ptb.vocab and "<eos>" in ptb.vocab
    assert len(ptb.train) == 929_589 and len(ptb.valid) == 73_760 and len(ptb.test) == 82_430
    x, y = bptt_batches(batchify(ptb.valid, 10), 35)
    assert x.shape == y.shape == ((73_760 // 10 - 1) // 35, 35, 10)
    np.testing.assert_array_equal(x[0, 1:], y[0, :-1])
    np.testing.assert_array_equal(x[:, :, 0].ravel()[:100], ptb.valid[:100])


def _copy_ptb(tmp_path, ptb_dir, **replace):
    folder = tmp_path / "ptb"
    folder.mkdir()
    for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
        text = (ptb_dir / name).read_bytes()
        # The whole training file (the vocabulary), the first 100 lines of the others.
        default = text if "train" in name else b"".join(text.splitlines(keepends=True)[:100])
        content = replace.get(name.split(".")[1], default)
        if content is not None:
            (folder / name).write_bytes(content)
    return tmp_path


@pytest.mark.parametrize("part, content, message", [
    ("valid", None, "ptb.valid.txt missing"),
    ("test", b"\xff\xfe binary", "ptb.test.txt is not UTF-8"),
    ("train", b"\n\n", "ptb.train.txt holds no words"),
    ("test", b"zyxwvut words unheard of\n", "not in the training vocabulary"),
])
def test_missing_or_malformed_ptb_files_are_named(tmp_path, data_dir, part, content, message):
    root = _copy_ptb(tmp_path, data_dir / "ptb", **{part: content})
    with pytest.raises(DataError, match=message):
        load_ptb(root)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_ptb(tmp_path / "nowhere")
