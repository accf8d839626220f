"""Recurrent cells for language modelling: the DARTS / ENAS cell space and an LSTM-10K-style DAG space.

The cell (DARTS rnn/model.py, after ENAS): from the input x_t (E,) and the previous hidden state h (H,),
  s_0 = h + sigmoid(c_0) * (tanh(g_0) - h),        [c_0, g_0] = [x_t, h] W_0,       W_0 (E + H, 2H)
and each of the `num_nodes` intermediate nodes i = 1..N reads one earlier state s_p (p < i) and applies
one activation f_i from {tanh, relu, sigmoid, identity} in a highway step
  s_i = s_p + sigmoid(c_i) * (f_i(g_i) - s_p),     [c_i, g_i] = s_p W_i,                W_i (H, 2H).
The new hidden state is the mean of the output nodes. Which nodes: DARTS averages *all* intermediate
nodes (`concat=range(1, N + 1)` in every DARTS genotype, and its continuous relaxation mixes all of
them), ENAS the *loose ends* (nodes no other node reads). `output="all"` (the default, DARTS: the space
whose published cells DARTS_V1_RNN / DARTS_V2_RNN are, and the one the weight-sharing papers search) or
`output="loose_ends"` (ENAS; its published cell `ENAS_RNN` parses there).

`RNNCellSpace` encoding, int32 (num_nodes, 2): row i-1 = (predecessor p in 0..i-1, activation id into
`activations`). Every such array is a distinct cell, so the space has N! * k^N members (DARTS' N = 8,
k = 4: 2.6e9) and `enumerate` / `index` (mixed radix, node 1 most significant) work for small N.

`RNNDAGSpace` is `002_*`'s LSTM-10K-style variant: a connectivity matrix over 6 nodes with exactly 9
edges and a list of operators limited to "a fully connected layer followed by ReLU or an identity
layer". Here a node may read several earlier states (their mean enters its highway step, so a
one-input node is exactly the cell above) and the activations are {relu, identity}. Encoding, int32
(num_nodes, num_nodes + 1): row i-1 = adjacency to states 0..i-1 (columns i..N-1 zero), then the
activation id in the last column.

Both spaces describe a cell the same way (`inputs_and_activations`, `nodes`, `concat`), from which
`nasjax.nn.rnn` builds the language model around it: embedding -> cell unrolled with `lax.scan` ->
softmax tied to the embedding, with the cell fixed or as data (one program for every cell).
"""

from __future__ import annotations

import ast
import dataclasses
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nasjax.spaces.base import MAX_ENUMERATE, Graph, InvalidEncodingError, NotEnumerableError, Space

ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")
OUTPUTS = ("all", "loose_ends")
PRED, ACT = 0, 1  # fields of an RNNCellSpace encoding row


class RNNGenotype(NamedTuple):
    """DARTS' recurrent genotype (rnn/genotypes.py `Genotype(recurrent, concat)`): per node
    (activation name, predecessor state index), and the averaged states (1-based)."""

    recurrent: list
    concat: list

    def __repr__(self) -> str:
        concat = list(self.concat)
        if concat and concat == list(range(concat[0], concat[-1] + 1)):
            concat_s = f"range({concat[0]}, {concat[-1] + 1})"
        else:
            concat_s = repr(concat)
        return f"Genotype(recurrent={list(map(tuple, self.recurrent))!r}, concat={concat_s})"


# The published cells, quark0/darts rnn/genotypes.py.
DARTS_V1_RNN = RNNGenotype(
    recurrent=[("relu", 0), ("relu", 1), ("tanh", 2), ("relu", 3), ("relu", 4), ("identity", 1),
               ("relu", 5), ("relu", 1)],
    concat=list(range(1, 9)))
DARTS_V2_RNN = RNNGenotype(
    recurrent=[("sigmoid", 0), ("relu", 1), ("relu", 1), ("identity", 1), ("tanh", 2), ("sigmoid", 5),
               ("tanh", 3), ("relu", 5)],
    concat=list(range(1, 9)))
ENAS_RNN = RNNGenotype(
    recurrent=[("tanh", 0), ("tanh", 1), ("relu", 1), ("tanh", 3), ("tanh", 3), ("relu", 3), ("relu", 4),
               ("relu", 7), ("relu", 8), ("relu", 8), ("relu", 8)],
    concat=[2, 5, 6, 9, 10, 11])


def parse_rnn_genotype(text: str) -> RNNGenotype:
    """A DARTS recurrent genotype string, e.g. "Genotype(recurrent=[('sigmoid', 0), ('relu', 1)],
    concat=range(1, 3))" (`concat` a list or range(a, b)). Evaluates nothing: `InvalidEncodingError`
    naming what is malformed."""
    def fail(why: str):
        raise InvalidEncodingError(f"recurrent genotype {text!r}: {why}")

    if not isinstance(text, str):
        raise InvalidEncodingError(f"recurrent genotype must be a str, got {type(text).__name__}")
    try:
        call = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        fail(f"not a Python expression ({e.msg})")
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
        fail("expected Genotype(recurrent=[...], concat=...)")
    fields = {k.arg: k.value for k in call.keywords}
    for name, node in zip(("recurrent", "concat"), call.args):
        fields.setdefault(name, node)
    if set(fields) != {"recurrent", "concat"}:
        fail(f"fields {sorted(k for k in fields if k)}, expected recurrent and concat")
    try:
        recurrent = ast.literal_eval(fields["recurrent"])
    except ValueError:
        fail("recurrent is not a literal list of (activation, predecessor) pairs")
    if not isinstance(recurrent, (list, tuple)) or not all(
            isinstance(e, (list, tuple)) and len(e) == 2 and isinstance(e[0], str) and isinstance(e[1], int)
            for e in recurrent):
        fail("recurrent must be a list of (activation name, predecessor index) pairs")
    node = fields["concat"]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
            and not node.keywords and all(isinstance(a, ast.Constant) and isinstance(a.value, int)
                                          for a in node.args) and 1 <= len(node.args) <= 2):
        concat = list(range(*(a.value for a in node.args)))
    else:
        try:
            concat = ast.literal_eval(node)
        except ValueError:
            fail("concat must be a list of ints or range(a, b)")
        if not isinstance(concat, (list, tuple)) or not all(isinstance(c, int) for c in concat):
            fail("concat must be a list of ints or range(a, b)")
    return RNNGenotype([tuple(e) for e in recurrent], list(concat))


def loose_ends(inputs, xp=jnp):
    """bool (N,): intermediate nodes no other node reads, from input weights (N, N + 1) (`xp`: jax.numpy
    in programs, numpy on the host)."""
    return ~xp.any(inputs[:, 1:] > 0, axis=0)


def output_weights(inputs, output: str, xp=jnp):
    """float32 (N,): weight of each intermediate node in the new hidden state (`output` rule: the mean of
    all nodes or of the loose ends), from input weights (N, N + 1)."""
    n = inputs.shape[0]
    mask = loose_ends(inputs, xp) if output == "loose_ends" else xp.ones((n,), bool)
    return mask.astype(xp.float32) / xp.sum(mask)


# --- the spaces ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RecurrentSpace(Space):
    """What both recurrent spaces share: the cell as (activation, predecessors) per node and as
    adjacency + activation arrays, genotype and description (networks: `nasjax.nn.rnn`)."""

    num_nodes: int = 8
    activations: tuple[str, ...] = ACTIVATIONS
    output: str = "all"

    def __post_init__(self):
        if self.num_nodes < 1:
            raise ValueError(f"num_nodes must be >= 1, got {self.num_nodes}")
        if not self.activations or any(a not in ACTIVATIONS for a in self.activations) \
                or len(set(self.activations)) != len(self.activations):
            raise ValueError(f"activations must be distinct names from {ACTIVATIONS}; got {self.activations}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")

    def inputs_and_activations(self, enc, xp=jnp):
        """(0/1 float32 (N, N + 1) adjacency to states, activation ids into `self.activations` (N,));
        `xp`: jax.numpy (jittable) or numpy (host side, no dispatch)."""
        raise NotImplementedError

    def nodes(self, enc) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """Per node (activation name, predecessor state indices) of a valid encoding."""
        adjacency, acts = self.inputs_and_activations(self.checked(enc), np)
        return tuple((self.activations[a], tuple(int(j) for j in np.flatnonzero(row)))
                     for row, a in zip(adjacency, acts))

    def concat(self, enc) -> tuple[int, ...]:
        """The averaged states (1-based), DARTS' `concat`."""
        weights = output_weights(self.inputs_and_activations(self.checked(enc), np)[0], self.output, np)
        return tuple(int(i) + 1 for i in np.flatnonzero(weights))

    def graphs(self, enc) -> list[Graph]:
        """The cell: x_t and h_{t-1}, each node with its activation on its input edges, the averaged
        states into h_t."""
        nodes, concat = self.nodes(enc), self.concat(enc)
        vertices = ([(0, "x_t, h_{t-1}", "input")] + [(i + 1, f"{i + 1}", "node") for i in range(len(nodes))]
                    + [("out", "h_t (mean)", "output")])
        return [Graph("recurrent cell", vertices, [(j, i + 1, act) for i, (act, preds) in enumerate(nodes)
                                                   for j in preds] + [(j, "out", "") for j in concat])]


@dataclasses.dataclass(frozen=True)
class RNNCellSpace(RecurrentSpace):
    """DARTS' recurrent cell space (default 8 nodes, 4 activations, output = mean of all nodes); see the
    module docstring."""

    @property
    def encoding_shape(self) -> tuple[int, ...]:
        return (self.num_nodes, 2)

    @property
    def num_features(self) -> int:
        return self.num_nodes * (self.num_nodes + len(self.activations))

    def _radix(self) -> np.ndarray:
        """int64 (N,): node i (0-based) has (i + 1) * k choices."""
        return (np.arange(self.num_nodes) + 1) * len(self.activations)

    # --- pure, jittable ---------------------------------------------------------------------------
    def _sample(self, key: jax.Array, n: int) -> jax.Array:
        k_pred, k_act = jax.random.split(key)
        pred = jax.random.randint(k_pred, (n, self.num_nodes), 0, np.arange(1, self.num_nodes + 1))
        act = jax.random.randint(k_act, (n, self.num_nodes), 0, len(self.activations))
        return jnp.stack([pred, act], axis=-1).astype(jnp.int32)

    def is_valid(self, enc: jax.Array) -> jax.Array:
        enc = jnp.asarray(enc)
        pred, act = enc[..., PRED], enc[..., ACT]
        return jnp.all((pred >= 0) & (pred <= np.arange(self.num_nodes))
                       & (act >= 0) & (act < len(self.activations)))

    def _edits(self) -> np.ndarray:
        """int (M, 3) one-edits (node, field, offset): new value = (old + offset) mod (choices)."""
        k = len(self.activations)
        rows = [(i, PRED, d) for i in range(self.num_nodes) for d in range(1, i + 1)]
        rows += [(i, ACT, d) for i in range(self.num_nodes) for d in range(1, k)]
        return np.asarray(rows, np.int32).reshape(-1, 3)

    def neighbors(self, enc: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Change one node's predecessor or activation: int32 (N(N-1)/2 + N(k-1), N, 2), all real."""
        enc = jnp.asarray(enc, jnp.int32)
        node, field, offset = self._edits().T
        modulus = np.where(field == PRED, node + 1, len(self.activations))
        values = (enc[node, field] + offset) % modulus
        rows = jnp.broadcast_to(enc, (len(node),) + enc.shape)
        rows = rows.at[np.arange(len(node)), node, field].set(values)
        return rows, jnp.ones((len(node),), bool)

    def features(self, enc: jax.Array) -> jax.Array:
        """float32 (N (N + k),): per node a one-hot predecessor (N slots) then a one-hot activation."""
        enc = jnp.asarray(enc)
        pred = jax.nn.one_hot(enc[:, PRED], self.num_nodes, dtype=jnp.float32)
        act = jax.nn.one_hot(enc[:, ACT], len(self.activations), dtype=jnp.float32)
        return jnp.concatenate([pred, act], axis=-1).reshape(-1)

    def inputs_and_activations(self, enc, xp=jnp):
        return xp.eye(self.num_nodes + 1, dtype=xp.float32)[enc[:, PRED]], enc[:, ACT]

    def index(self, enc: jax.Array) -> jax.Array:
        """Mixed radix, node 1 most significant, digit pred * k + act (jittable; small N only)."""
        self._check_enumerable()
        enc = jnp.asarray(enc, jnp.int32)
        radix = self._radix()
        place = np.concatenate([np.cumprod(radix[::-1])[::-1][1:], [1]]).astype(np.int32)
        digits = enc[:, PRED] * len(self.activations) + enc[:, ACT]
        return jnp.sum(digits * place).astype(jnp.int32)

    # --- host side --------------------------------------------------------------------------------
    def validation_errors(self, enc: np.ndarray) -> list[str]:
        errors = []
        for i, (pred, act) in enumerate(enc, start=1):
            if not 0 <= pred < i:
                errors.append(f"node {i}: predecessor {pred} not available (node {i} reads state 0..{i - 1})")
            if not 0 <= act < len(self.activations):
                errors.append(f"node {i}: activation id {act} outside [0, {len(self.activations)}) for "
                              f"activations {self.activations}")
        return errors

    def size(self) -> int:
        return math.factorial(self.num_nodes) * len(self.activations) ** self.num_nodes

    def can_enumerate(self) -> bool:
        return self.size() <= MAX_ENUMERATE

    def _check_enumerable(self):
        if not self.can_enumerate():
            raise NotEnumerableError(f"RNNCellSpace with {self.num_nodes} nodes has {self.size():,} cells, "
                                     f"more than {MAX_ENUMERATE:,}")

    def enumerate(self) -> np.ndarray:
        self._check_enumerable()
        codes = np.arange(self.size())
        radix = self._radix()
        digits = np.empty((len(codes), self.num_nodes), np.int64)
        for i in range(self.num_nodes - 1, -1, -1):
            codes, digits[:, i] = np.divmod(codes, radix[i])
        k = len(self.activations)
        return np.stack([digits // k, digits % k], axis=-1).astype(np.int32)

    def to_genotype(self, enc) -> RNNGenotype:
        """DARTS' recurrent genotype of a valid encoding."""
        return RNNGenotype([(a, p[0]) for a, p in self.nodes(enc)], list(self.concat(enc)))

    def from_genotype(self, recurrent: Sequence, concat: Sequence) -> np.ndarray:
        """int32 (N, 2) encoding of a DARTS recurrent genotype (e.g. `from_genotype(*DARTS_V2_RNN)`);
        `InvalidEncodingError` naming what this space cannot express."""
        if len(recurrent) != self.num_nodes:
            raise InvalidEncodingError(f"genotype has {len(recurrent)} nodes, this space {self.num_nodes}")
        enc = np.zeros(self.encoding_shape, np.int64)
        for i, entry in enumerate(recurrent, start=1):
            name, pred = entry
            if name not in self.activations:
                raise InvalidEncodingError(f"node {i}: unknown activation {name!r}; known: "
                                           f"{', '.join(self.activations)}")
            enc[i - 1] = (pred, self.activations.index(name))
        self.validate(enc)
        expected = self.concat(enc)
        if tuple(concat) != expected:
            raise InvalidEncodingError(f"concat {list(concat)}: this space (output={self.output!r}) averages "
                                       f"states {list(expected)}")
        return enc.astype(np.int32)

    def parse(self, text: str) -> np.ndarray:
        """Encoding of a DARTS genotype string (see `parse_rnn_genotype`)."""
        return self.from_genotype(*parse_rnn_genotype(text))

    def describe(self, enc) -> str:
        """The genotype in DARTS notation: Genotype(recurrent=[('sigmoid', 0), ...], concat=range(1, 9))."""
        return repr(self.to_genotype(enc))


@dataclasses.dataclass(frozen=True)
class RNNDAGSpace(RecurrentSpace):
    """`002_*`'s LSTM-10K-style space (defaults: 6 nodes, exactly 9 edges, {relu, identity}, output =
    mean of the loose ends as in ENAS, whose cell definition LSTM-10K follows); see the module docstring.
    `num_edges=None` allows any number of edges (every node needs at least one input)."""

    num_nodes: int = 6
    activations: tuple[str, ...] = ("relu", "identity")
    output: str = "loose_ends"
    num_edges: int | None = 9

    def __post_init__(self):
        super().__post_init__()
        most = self.num_nodes * (self.num_nodes + 1) // 2
        if self.num_edges is not None and not self.num_nodes <= self.num_edges <= most:
            raise ValueError(f"num_edges must be in [{self.num_nodes}, {most}] for {self.num_nodes} "
                             f"nodes, got {self.num_edges}")

    @property
    def encoding_shape(self) -> tuple[int, ...]:
        return (self.num_nodes, self.num_nodes + 1)

    @property
    def num_features(self) -> int:
        return self.num_nodes * (self.num_nodes + len(self.activations))

    def _slots(self) -> np.ndarray:
        """bool (N, N): the adjacency entries a node may set (node i reads states 0..i-1)."""
        return np.tril(np.ones((self.num_nodes, self.num_nodes), bool))

    def _sample(self, key: jax.Array, n: int) -> jax.Array:
        """Uniform over valid cells: uniform edge subsets of the right size until every node has an
        input (rejection; accepts about 1 in 5 draws at the defaults), uniform activations."""
        slots = self._slots()
        flat = np.flatnonzero(slots)

        def one(key):
            def draw(carry):
                key, _ = carry
                key, k = jax.random.split(key)
                if self.num_edges is None:
                    chosen = jax.random.bernoulli(k, 0.5, (len(flat),))
                else:
                    rank = jnp.argsort(jax.random.uniform(k, (len(flat),)))
                    chosen = rank < self.num_edges
                adj = jnp.zeros((self.num_nodes * self.num_nodes,), jnp.int32).at[flat].set(chosen)
                return key, adj.reshape(self.num_nodes, self.num_nodes)

            k_adj, k_act = jax.random.split(key)
            _, adj = jax.lax.while_loop(lambda c: ~jnp.all(jnp.any(c[1] > 0, axis=1)), draw,
                                        (k_adj, jnp.zeros((self.num_nodes, self.num_nodes), jnp.int32)))
            act = jax.random.randint(k_act, (self.num_nodes, 1), 0, len(self.activations))
            return jnp.concatenate([adj, act], axis=1).astype(jnp.int32)

        return jax.vmap(one)(jax.random.split(key, n))

    def is_valid(self, enc: jax.Array) -> jax.Array:
        enc = jnp.asarray(enc)
        adj, act = enc[:, :-1], enc[:, -1]
        ok = jnp.all(jnp.where(self._slots(), (adj == 0) | (adj == 1), adj == 0))
        ok &= jnp.all(jnp.any(adj > 0, axis=1)) & jnp.all((act >= 0) & (act < len(self.activations)))
        if self.num_edges is not None:
            ok &= jnp.sum(adj) == self.num_edges
        return ok

    def neighbors(self, enc: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Move one edge to a free slot (or, with num_edges=None, toggle one), or change one node's
        activation: (int32 (M, N, N + 1), bool (M,)); rows leaving a node without input are masked."""
        enc = jnp.asarray(enc, jnp.int32)
        flat = np.flatnonzero(self._slots())
        k = len(self.activations)
        if self.num_edges is None:
            src = dst = flat
        else:
            src, dst = np.repeat(flat, len(flat)), np.tile(flat, len(flat))
            keep = src != dst
            src, dst = src[keep], dst[keep]
        adj = enc[:, :-1].reshape(-1)
        rows = jnp.broadcast_to(adj, (len(src), adj.size))
        if self.num_edges is None:
            rows = rows.at[np.arange(len(src)), src].set(1 - adj[src])
            real = jnp.ones((len(src),), bool)
        else:
            rows = rows.at[np.arange(len(src)), src].set(0).at[np.arange(len(src)), dst].set(1)
            real = (adj[src] == 1) & (adj[dst] == 0)
        rows = rows.reshape(len(src), self.num_nodes, self.num_nodes)
        real &= jnp.all(jnp.any(rows > 0, axis=2), axis=1)
        edge_rows = jnp.concatenate(
            [rows, jnp.broadcast_to(enc[:, -1:], (len(src), self.num_nodes, 1))], axis=2)
        node, offset = np.repeat(np.arange(self.num_nodes), k - 1), np.tile(np.arange(1, k), self.num_nodes)
        act_rows = jnp.broadcast_to(enc, (len(node),) + enc.shape).at[np.arange(len(node)), node, -1].set(
            (enc[node, -1] + offset) % k)
        return (jnp.concatenate([edge_rows, act_rows]),
                jnp.concatenate([real, jnp.ones((len(node),), bool)]))

    def features(self, enc: jax.Array) -> jax.Array:
        """float32 (N (N + k),): per node its adjacency row then a one-hot activation."""
        enc = jnp.asarray(enc)
        act = jax.nn.one_hot(enc[:, -1], len(self.activations), dtype=jnp.float32)
        return jnp.concatenate([enc[:, :-1].astype(jnp.float32), act], axis=-1).reshape(-1)

    def inputs_and_activations(self, enc, xp=jnp):
        adj = enc[:, :-1].astype(xp.float32)
        return xp.concatenate([adj, xp.zeros((self.num_nodes, 1), xp.float32)], axis=1), enc[:, -1]

    def validation_errors(self, enc: np.ndarray) -> list[str]:
        errors = []
        adj, act = enc[:, :-1], enc[:, -1]
        slots = self._slots()
        for i in range(self.num_nodes):
            node = f"node {i + 1}"
            if np.any(adj[i][~slots[i]] != 0):
                errors.append(f"{node}: reads states {np.flatnonzero(adj[i][~slots[i]]) + i + 1}, only "
                              f"0..{i} exist before it")
            if np.any((adj[i][slots[i]] != 0) & (adj[i][slots[i]] != 1)):
                errors.append(f"{node}: adjacency entries must be 0 or 1, got {adj[i][slots[i]].tolist()}")
            elif not np.any(adj[i][slots[i]]):
                errors.append(f"{node}: has no input")
            if not 0 <= act[i] < len(self.activations):
                errors.append(f"{node}: activation id {act[i]} outside [0, {len(self.activations)}) for "
                              f"activations {self.activations}")
        if self.num_edges is not None and adj[slots].sum() != self.num_edges:
            errors.append(f"{int(adj[slots].sum())} edges, this space has exactly {self.num_edges}")
        return errors

    def describe(self, enc) -> str:
        nodes = ", ".join(f"{i}: {a}(mean{list(p)})" for i, (a, p) in enumerate(self.nodes(enc), start=1))
        return f"RNN DAG cell [{nodes}] -> mean{list(self.concat(enc))}"
