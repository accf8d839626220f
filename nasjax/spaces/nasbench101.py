"""The NAS-Bench-101 cell space (Ying et al. 2019, google-research/nasbench).

A cell is a DAG on V = 7 vertices: vertex 0 is the cell input, vertex V-1 the output, and each of the
V-2 = 5 inner vertices applies one op of `ops` (default, in the official `available_ops` order:
0 conv3x3-bn-relu, 1 conv1x1-bn-relu, 2 maxpool3x3).

Encoding, int32 (V(V-1)/2 + V-2,) = (26,):
  [21 adjacency bits of the strictly upper triangle, row-major: (0,1), (0,2), ..., (0,6), (1,2), ...,
   (5,6); then the op ids of inner vertices 1..5]
i.e. the official `ModelSpec(matrix, ops)` arguments, flattened without the parts that never vary (the
28 entries on and below the diagonal, the input and output labels).

Validity is the official API's `NASBench.is_valid(ModelSpec(matrix, ops))`: the cell is first *pruned*
(vertices not on an input->output path are dropped with their edges, `model_spec._prune`); it is valid
when the input still reaches the output and the pruned cell has at most `max_edges` = 9 edges. So an
encoding may carry extraneous vertices and edges (the official API accepts them and so do we): several
encodings denote one network, and `arch_hash` (the official isomorphism-invariant graph hash of the
pruned cell, equal to the dataset's keys) identifies it. This is also what lets a pruned benchmark
cell with fewer than 7 vertices be stored in the fixed shape (`encode` pads it with isolated vertices).
We are stricter in one place: every adjacency entry must be 0 or 1 and every op id in range, including
those of pruned vertices (an integer array has no "unused" value).

`sample` is uniform over valid encodings, which is the official random-search sampler (`random_spec`
in the nasbench colab: uniform matrix and ops, rejected until `is_valid`); it is not uniform over the
423,624 distinct networks (`NUM_NETWORKS`), which cannot be told apart without hashing. `size()` is
None: the space is not enumerated (its encodings are not unique and far too many).

Neighbours: flip one adjacency bit (21) or change one op to another (5 x 2), masked by validity: 31
rows. Op changes are always valid, so every valid cell has at least 10 neighbours. A neighbour is a
different encoding; an edit on a pruned vertex can leave the network unchanged (same `arch_hash`).

The network (`nasjax.nn.build`, `nasjax.nn.nasbench101`; nasbench/lib/model_builder.py): stem
conv3x3-BN-ReLU (128), `num_stacks` stacks of `cells_per_stack` cells, 2x2 max-pool and doubled channels
before every stack but the first, global average pooling, dense. Inside a cell the output's channels are
split over the vertices that feed it (`vertex_channels`); inner vertices sum their inputs (other vertices
truncated to their width, the cell input through a 1x1 conv-BN-ReLU projection); the output concatenates
its inputs and adds a projection of the cell input when that edge exists.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math

import jax
import jax.numpy as jnp
import numpy as np

from nasjax.spaces.base import Graph, InvalidEncodingError, Space, TokenView

OPS = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
INPUT, OUTPUT = "input", "output"
# Distinct networks (isomorphism classes of valid pruned cells) in the official dataset.
NUM_NETWORKS = 423_624
# Rejection sampling draws at most this many candidates per cell; about 3 in 4 raw draws are valid,
# so running out (then a fixed valid cell is returned) has probability below 1e-100.
MAX_SAMPLE_TRIES = 256


@functools.lru_cache(maxsize=None)
def _upper(v: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols) of the strict upper triangle of a v x v matrix in row-major order, and the
    int (v, v) position of each entry in that order (-1 on and below the diagonal). Cached: host-side
    encoding runs once per stored cell when a benchmark file is read."""
    rows, cols = np.triu_indices(v, 1)
    slots = np.full((v, v), -1)
    slots[rows, cols] = np.arange(len(rows))
    for a in (rows, cols, slots):
        a.flags.writeable = False
    return rows, cols, slots


# --- the official graph utilities -------------------------------------------------------------------
def hash_module(matrix: np.ndarray, labels: list[int]) -> str:
    """The official isomorphism-invariant MD5 hash (nasbench/lib/graph_util.py `hash_module`).

    matrix int (V, V) adjacency of a pruned cell; labels: V ints (-1 input, -2 output, op index).
    Each vertex starts from md5(str((out_degree, in_degree, label))); V rounds replace it by the md5 of
    its sorted in-neighbour hashes, '|', sorted out-neighbour hashes, '|', its own hash; the result is
    the md5 of str(sorted vertex hashes). The string forms are part of the algorithm: they make these
    hashes equal to the dataset's keys.
    """
    matrix = np.asarray(matrix)
    v = matrix.shape[0]
    out_deg, in_deg = matrix.sum(axis=1).tolist(), matrix.sum(axis=0).tolist()
    hashes = [_md5(str((int(o), int(i), int(label)))) for o, i, label in zip(out_deg, in_deg, labels)]
    preds = [[w for w in range(v) if matrix[w, u]] for u in range(v)]
    succs = [[w for w in range(v) if matrix[u, w]] for u in range(v)]
    for _ in range(v):
        hashes = [_md5("".join(sorted(hashes[w] for w in preds[u])) + "|"
                       + "".join(sorted(hashes[w] for w in succs[u])) + "|" + hashes[u])
                  for u in range(v)]
    return _md5(str(sorted(hashes)))


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


# --- the space --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class NASBench101Space(Space, TokenView):
    """NAS-Bench-101 cells: V vertices, at most `max_edges` edges after pruning, inner ops from `ops`."""

    num_vertices: int = 7
    max_edges: int = 9
    ops: tuple[str, ...] = OPS

    def __post_init__(self):
        if self.num_vertices < 2:
            raise ValueError(f"num_vertices must be >= 2, got {self.num_vertices}")
        if self.max_edges < 1:
            raise ValueError(f"max_edges must be >= 1, got {self.max_edges}")
        unknown = [op for op in self.ops if op not in OPS]
        if not self.ops or unknown or len(set(self.ops)) != len(self.ops):
            raise ValueError(f"ops must be distinct names from {OPS}, got {self.ops}")

    # --- static description -------------------------------------------------------------------
    @property
    def num_edge_slots(self) -> int:
        return self.num_vertices * (self.num_vertices - 1) // 2

    @property
    def num_inner(self) -> int:
        return self.num_vertices - 2

    @property
    def encoding_shape(self) -> tuple[int, ...]:
        return (self.num_edge_slots + self.num_inner,)

    @property
    def num_features(self) -> int:
        return self.num_edge_slots + self.num_inner * len(self.ops)

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """(source, target) of each adjacency bit, in encoding order."""
        rows, cols, _ = _upper(self.num_vertices)
        return tuple(zip(rows.tolist(), cols.tolist()))

    # --- pure, jittable pieces ------------------------------------------------------------------
    def split(self, enc):
        """(adjacency bits (E,), inner op ids (V-2,)) of an encoding."""
        return enc[:self.num_edge_slots], enc[self.num_edge_slots:]

    # The helpers below take the array module `xp`: jnp when traced, numpy for host-side checks
    # (thousands of host calls would otherwise each dispatch a dozen small XLA ops).
    def _adjacency(self, enc, xp):
        slots = _upper(self.num_vertices)[2]
        return xp.where(slots >= 0, enc[np.maximum(slots, 0)], 0)

    def _kept(self, adjacency, xp):
        v = self.num_vertices
        reach = (adjacency != 0) | xp.eye(v, dtype=bool)
        # Paths have at most V-1 edges; each squaring doubles the path length covered.
        for _ in range(max(1, math.ceil(math.log2(v - 1)))):
            reach = (reach.astype(xp.int32) @ reach.astype(xp.int32)) > 0
        return reach[0] & reach[:, v - 1]

    def _pruned_edges(self, adjacency, kept, xp):
        return xp.sum(xp.where(kept[:, None] & kept[None, :], adjacency, 0))

    def adjacency(self, enc: jax.Array) -> jax.Array:
        """int32 (V, V) upper-triangular adjacency matrix of an encoding."""
        return self._adjacency(jnp.asarray(enc, jnp.int32), jnp)

    def kept_vertices(self, enc: jax.Array) -> jax.Array:
        """bool (V,): vertices on an input->output path (all False but vertex 0 when disconnected)."""
        return self._kept(self.adjacency(enc), jnp)

    def num_pruned_edges(self, enc: jax.Array) -> jax.Array:
        """int32 scalar: edges of the pruned cell (both ends on an input->output path)."""
        adjacency = self.adjacency(enc)
        return self._pruned_edges(adjacency, self._kept(adjacency, jnp), jnp)

    def is_valid(self, enc: jax.Array) -> jax.Array:
        enc = jnp.asarray(enc, jnp.int32)
        bits, op_ids = self.split(enc)
        well_formed = (jnp.all((bits == 0) | (bits == 1))
                       & jnp.all((op_ids >= 0) & (op_ids < len(self.ops))))
        adjacency = self._adjacency(enc, jnp)
        kept = self._kept(adjacency, jnp)
        return (well_formed & kept[self.num_vertices - 1]
                & (self._pruned_edges(adjacency, kept, jnp) <= self.max_edges))

    def _candidate(self, key: jax.Array) -> jax.Array:
        """A raw draw: uniform adjacency bits and op ids (one PRNG call: it keeps compiles short; the
        modulo bias on op ids is below 1e-9)."""
        high = np.array([2] * self.num_edge_slots + [len(self.ops)] * self.num_inner, np.uint32)
        return (jax.random.bits(key, self.encoding_shape, jnp.uint32) % high).astype(jnp.int32)

    def _fallback(self) -> np.ndarray:
        """A fixed valid cell (input -> output edge only), returned if rejection sampling runs out."""
        enc = np.zeros(self.encoding_shape, np.int32)
        enc[self.edges.index((0, self.num_vertices - 1))] = 1
        return enc

    def _sample_one(self, key: jax.Array) -> jax.Array:
        def undecided(carry):
            tries, _, enc = carry
            return (tries < MAX_SAMPLE_TRIES) & ~self.is_valid(enc)

        def draw(carry):
            tries, key, _ = carry
            key, sub = jax.random.split(key)
            return tries + 1, key, self._candidate(sub)

        # The all-zero start is invalid (no edges), so at least one candidate is drawn.
        start = (jnp.zeros((), jnp.int32), key, jnp.zeros(self.encoding_shape, jnp.int32))
        _, _, enc = jax.lax.while_loop(undecided, draw, start)
        return jnp.where(self.is_valid(enc), enc, self._fallback())

    def _sample(self, key: jax.Array, n: int) -> jax.Array:
        """`n` cells uniform over valid encodings (rejection sampling): int32 (n, E + V - 2)."""
        return jax.vmap(self._sample_one)(jax.random.split(key, n))

    def neighbors(self, enc: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Flip one of the E adjacency bits, or change one inner op to each other op.

        Returns (int32 (E + (V-2)(K-1), E + V - 2) rows, bool mask of the valid ones)."""
        enc = jnp.asarray(enc, jnp.int32)
        e, k = self.num_edge_slots, len(self.ops)
        flips = enc[None, :].repeat(e, axis=0)
        flips = flips.at[jnp.arange(e), jnp.arange(e)].set(1 - enc[:e])
        slot = np.repeat(np.arange(self.num_inner), k - 1)
        delta = np.tile(np.arange(1, k), self.num_inner)
        changes = enc[None, :].repeat(len(slot), axis=0)
        changes = changes.at[np.arange(len(slot)), e + slot].set((enc[e + slot] + delta) % k)
        rows = jnp.concatenate([flips, changes])
        return rows, jax.vmap(self.is_valid)(rows)

    def features(self, enc: jax.Array) -> jax.Array:
        """float32 (E + (V-2) K,): the adjacency bits, then a one-hot of each inner vertex's op."""
        bits, op_ids = self.split(jnp.asarray(enc))
        one_hot = jax.nn.one_hot(op_ids, len(self.ops), dtype=jnp.float32).reshape(-1)
        return jnp.concatenate([bits.astype(jnp.float32), one_hot])

    @property
    def token_vocab(self) -> tuple[int, ...]:
        """The encoding itself: E adjacency bits (vocabulary 2), then V-2 op ids. Connectivity and the
        edge limit are not per-position rules: a token sequence can decode to an invalid cell."""
        return (2,) * self.num_edge_slots + (len(self.ops),) * self.num_inner

    def to_tokens(self, enc: jax.Array) -> jax.Array:
        return jnp.asarray(enc, jnp.int32)

    def from_tokens(self, tokens: jax.Array) -> jax.Array:
        return jnp.asarray(tokens, jnp.int32)

    # --- host side --------------------------------------------------------------------------------
    def validation_errors(self, enc: np.ndarray) -> list[str]:
        bits, op_ids = self.split(enc)
        errors = [f"adjacency entry {s}->{t} is {b}, expected 0 or 1"
                  for (s, t), b in zip(self.edges, bits) if b not in (0, 1)]
        errors += [f"vertex {i + 1}: op id {o} out of range [0, {len(self.ops)}) for ops {self.ops}"
                   for i, o in enumerate(op_ids) if not 0 <= o < len(self.ops)]
        if errors:
            return errors
        adjacency = self._adjacency(enc, np)
        kept = self._kept(adjacency, np)
        if not kept[self.num_vertices - 1]:
            return [f"disconnected cell: no path from the input (vertex 0) to the output "
                    f"(vertex {self.num_vertices - 1})"]
        pruned = int(self._pruned_edges(adjacency, kept, np))
        if pruned > self.max_edges:
            return [f"too many edges: {pruned} after pruning (max {self.max_edges})"]
        return []

    def decode(self, enc) -> tuple[np.ndarray, list[str]]:
        """The official `ModelSpec` arguments: (int (V, V) matrix, V op names with input/output)."""
        enc = self.checked(enc)
        _, op_ids = self.split(enc)
        return (self._adjacency(enc, np).astype(np.int32),
                [INPUT] + [self.ops[o] for o in op_ids] + [OUTPUT])

    def spec(self, enc) -> tuple[np.ndarray, list[str]]:
        """The pruned cell, as the official `ModelSpec.matrix` / `.ops`: ((V', V') matrix, V' names)."""
        matrix, names = self.decode(enc)
        kept = np.flatnonzero(self._kept(matrix, np))
        return matrix[np.ix_(kept, kept)], [names[i] for i in kept]

    def graphs(self, enc) -> list[Graph]:
        """The pruned cell, ops on the vertices."""
        matrix, names = self.spec(enc)
        kinds = ["input"] + ["node"] * (len(names) - 2) + ["output"]
        return [Graph("cell", list(zip(range(len(names)), names, kinds)),
                      [(int(a), int(b), "") for a, b in zip(*np.nonzero(matrix))])]

    def encode(self, matrix, ops) -> np.ndarray:
        """Encoding of an official-style spec: square upper-triangular 0/1 `matrix` of V' <= V vertices
        and its V' op names (first 'input', last 'output'; names or op ids for inner vertices).

        A smaller (e.g. pruned, as stored in the dataset) cell is padded with isolated vertices placed
        before the output, which pruning removes again: the result denotes the same network.
        """
        m = np.asarray(matrix)
        if m.ndim != 2 or m.shape[0] != m.shape[1] or not 2 <= m.shape[0] <= self.num_vertices:
            raise InvalidEncodingError(f"matrix must be square with 2..{self.num_vertices} vertices, "
                                       f"got shape {m.shape}")
        if len(ops) != m.shape[0]:
            raise InvalidEncodingError(f"{len(ops)} ops for a {m.shape[0]}-vertex matrix")
        rows, cols, _ = _upper(m.shape[0])
        if np.count_nonzero(m) != np.count_nonzero(m[rows, cols]):
            raise InvalidEncodingError("matrix must be upper triangular (a DAG in vertex order)")
        if ops[0] != INPUT or ops[-1] != OUTPUT:
            raise InvalidEncodingError(f"first op must be {INPUT!r} and last {OUTPUT!r}, got {ops}")
        op_ids = []
        for name in ops[1:-1]:
            if isinstance(name, str) and name in self.ops:
                op_ids.append(self.ops.index(name))
            elif isinstance(name, (int, np.integer)):
                op_ids.append(int(name))
            else:
                raise InvalidEncodingError(f"unknown op {name!r}; ops are {self.ops}")
        v, small = self.num_vertices, m.shape[0]
        place = list(range(small - 1)) + [v - 1]  # vertex i of `matrix` -> vertex place[i]
        full = np.zeros((v, v), np.int64)
        full[np.ix_(place, place)] = m
        inner = np.zeros(self.num_inner, np.int64)
        inner[:small - 2] = op_ids
        rows, cols, _ = _upper(v)
        enc = np.concatenate([full[rows, cols], inner]).astype(np.int32)
        self.validate(enc)
        return enc

    def labels(self, enc) -> tuple[np.ndarray, list[int]]:
        """(pruned matrix, official hash labels: -1 input, op index, -2 output)."""
        matrix, names = self.spec(enc)
        return matrix, [-1] + [self.ops.index(n) for n in names[1:-1]] + [-2]

    def arch_hash(self, enc) -> str:
        """The official dataset key of the network `enc` denotes (equal for isomorphic cells)."""
        return hash_module(*self.labels(enc))

    def describe(self, enc) -> str:
        matrix, names = self.spec(enc)
        edges = " ".join(f"{s}->{t}" for s, t in zip(*np.nonzero(matrix)))
        inner = ", ".join(f"{i}:{n}" for i, n in enumerate(names[1:-1], start=1))
        return (f"NB101 cell, {len(names)} vertices, {int(matrix.sum())} edges [{edges}]; "
                f"ops [{inner or 'none'}]")
