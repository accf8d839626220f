"""The NAS-Bench-201 / NATS-Bench topology search space (Dong & Yang 2020): one cell, 4 nodes, 6 edges.

Node 0 is the cell input; node j (1..3) is the sum over i < j of op_ij(node i); node 3 is the output.
Each edge carries one of 5 operations, in NATS-Bench's index order:
  0 none (zeros), 1 skip_connect (identity), 2 nor_conv_1x1, 3 nor_conv_3x3 (ReLU-Conv-BN),
  4 avg_pool_3x3 (stride 1, pad 1, padding not counted).

Encoding, int32 (6,): op ids of the edges in the benchmark string's order
  EDGES = (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2)
i.e. `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`. All 5^6 = 15,625 encodings are valid, including cells whose
output is disconnected from the input (they are in the benchmark: their networks output a constant).
`enumerate()` lists them in mixed radix, edge 0 most significant (so `index(enc)` = sum enc[e] 5^(5-e)).

Action spaces for MCTS (`actions`): "sequential" sets the edges' ops in order; "global" first decides
which edges exist, then their ops.

Neighbours (`003_*`'s local search): change the op of one edge, 6 x 4 = 24 per architecture.
`arch_hash` identifies functionally equivalent cells the way the benchmark's `UniqueString` does.
"""

from __future__ import annotations

import dataclasses
import hashlib

import jax
import jax.numpy as jnp
import numpy as np

from nasjax.spaces.base import ActionOrders, Graph, InvalidEncodingError, Space, TokenView

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to node j, from node i)
NUM_NODES = 4
NUM_EDGES = len(EDGES)
NUM_OPS = len(OPS)


# --- the space ---------------------------------------------------------------------------------
def _unique_string(op_names: list[str]) -> str:
    """The benchmark's `UniqueString` (NATS-Bench `Structure.to_unique_str(consider_zero=True)`):
    a node's string is the sorted '+'-join of its inputs' terms; '#' is zero, skip passes its input's
    string through, any other op wraps it as '(input)@op'."""
    nodes = ["0"]
    for j in range(1, NUM_NODES):
        terms = []
        for e, (to, i) in enumerate(EDGES):
            if to != j:
                continue
            op, src = op_names[e], nodes[i]
            if op == "none" or src == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(src)
            else:
                terms.append(f"({src})@{op}")
        nodes.append("+".join(sorted(terms)))
    return nodes[-1]


@dataclasses.dataclass(frozen=True)
class NASBench201Space(Space, TokenView, ActionOrders):
    """The 15,625 cells of NAS-Bench-201 (no configuration: the space is the benchmark's)."""

    @property
    def encoding_shape(self) -> tuple[int, ...]:
        return (NUM_EDGES,)

    @property
    def num_features(self) -> int:
        return NUM_EDGES * NUM_OPS

    # --- pure, jittable ---------------------------------------------------------------------------
    def _sample(self, key: jax.Array, n: int) -> jax.Array:
        return jax.random.randint(key, (n, NUM_EDGES), 0, NUM_OPS, dtype=jnp.int32)

    def is_valid(self, enc: jax.Array) -> jax.Array:
        enc = jnp.asarray(enc)
        return jnp.all((enc >= 0) & (enc < NUM_OPS))

    def neighbors(self, enc: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Every change of one edge's op: int32 (24, 6), all real (mask all True)."""
        enc = jnp.asarray(enc, jnp.int32)
        edge = np.repeat(np.arange(NUM_EDGES), NUM_OPS - 1)
        delta = np.tile(np.arange(1, NUM_OPS), NUM_EDGES)
        rows = jnp.tile(enc, (len(edge), 1))
        rows = rows.at[np.arange(len(edge)), edge].set((enc[edge] + delta) % NUM_OPS)
        return rows, jnp.ones((len(edge),), bool)

    def features(self, enc: jax.Array) -> jax.Array:
        """float32 (30,): one-hot op per edge, edge-major."""
        return jax.nn.one_hot(jnp.asarray(enc), NUM_OPS, dtype=jnp.float32).reshape(-1)

    def index(self, enc: jax.Array) -> jax.Array:
        place = NUM_OPS ** np.arange(NUM_EDGES - 1, -1, -1)
        return jnp.sum(jnp.asarray(enc, jnp.int32) * place).astype(jnp.int32)

    tokens_always_valid = True

    @property
    def token_vocab(self) -> tuple[int, ...]:
        """One token per edge: its op id."""
        return (NUM_OPS,) * NUM_EDGES

    def to_tokens(self, enc: jax.Array) -> jax.Array:
        return jnp.asarray(enc, jnp.int32)

    def from_tokens(self, tokens: jax.Array) -> jax.Array:
        return jnp.asarray(tokens, jnp.int32)

    # --- host side --------------------------------------------------------------------------------
    def validation_errors(self, enc: np.ndarray) -> list[str]:
        return [f"edge {e} ({j}<-{i}): op id {v} outside [0, {NUM_OPS}) for ops {OPS}"
                for e, ((j, i), v) in enumerate(zip(EDGES, enc)) if not 0 <= v < NUM_OPS]

    def size(self) -> int:
        return NUM_OPS ** NUM_EDGES

    def can_enumerate(self) -> bool:
        return True

    def enumerate(self) -> np.ndarray:
        codes = np.arange(self.size())
        return (codes[:, None] // NUM_OPS ** np.arange(NUM_EDGES - 1, -1, -1)[None] % NUM_OPS).astype(np.int32)

    def action_orders(self) -> tuple[str, ...]:
        """Two action spaces over the cell, as LaNAS §2's for ConvNets: "sequential" (the op of each
        edge in `EDGES` order) and "global" (first which edges exist, i.e. are not "none", for all
        six; then the op of every existing edge)."""
        return ("sequential", "global")

    def actions(self, enc: np.ndarray, order: str) -> list[int]:
        self.check_order(order)
        ops_ = np.asarray(enc).tolist()
        if order == "sequential":
            return ops_
        return [int(op != 0) for op in ops_] + [op - 1 for op in ops_ if op != 0]

    def op_names(self, enc) -> list[str]:
        """The op name on each edge, in `EDGES` order."""
        return [OPS[v] for v in self.checked(enc)]

    def graphs(self, enc) -> list[Graph]:
        """The cell: input, nodes 1 and 2, output; an edge per op that is not 'none'."""
        vertices = [(0, "input", "input"), (1, "1", "node"), (2, "2", "node"), (3, "output", "output")]
        return [Graph("cell", vertices, [(i, j, name) for (j, i), name in zip(EDGES, self.op_names(enc))
                                         if name != "none"])]

    def to_string(self, enc) -> str:
        """The benchmark's string, e.g. '|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|...~2|'."""
        names = self.op_names(enc)
        groups = ["|" + "|".join(f"{names[e]}~{i}" for e, (to, i) in enumerate(EDGES) if to == j) + "|"
                  for j in range(1, NUM_NODES)]
        return "+".join(groups)

    def from_string(self, s: str) -> np.ndarray:
        """int32 (6,) encoding of a benchmark string; `InvalidEncodingError` naming what is malformed."""
        if not isinstance(s, str):
            raise InvalidEncodingError(f"NB-201 string must be a str, got {type(s).__name__}")
        groups = s.strip().split("+")
        if len(groups) != NUM_NODES - 1:
            raise InvalidEncodingError(
                f"NB-201 string {s!r}: {len(groups)} node groups separated by '+', expected {NUM_NODES - 1}")
        enc = np.zeros((NUM_EDGES,), np.int32)
        for j, group in enumerate(groups, start=1):
            if len(group) < 2 or group[0] != "|" or group[-1] != "|":
                raise InvalidEncodingError(
                    f"NB-201 string {s!r}: node {j} group {group!r} must start and end with '|'")
            entries = group[1:-1].split("|")
            if len(entries) != j:
                raise InvalidEncodingError(
                    f"NB-201 string {s!r}: node {j} has {len(entries)} inputs, expected {j}")
            seen = set()
            for entry in entries:
                op, sep, src = entry.partition("~")
                if not sep:
                    raise InvalidEncodingError(
                        f"NB-201 string {s!r}: node {j} entry {entry!r} is not of the form 'op~input'")
                if op not in OPS:
                    raise InvalidEncodingError(
                        f"NB-201 string {s!r}: node {j} has unknown op {op!r}; known: {', '.join(OPS)}")
                if not src.isdigit() or int(src) >= j:
                    raise InvalidEncodingError(
                        f"NB-201 string {s!r}: node {j} entry {entry!r} has input {src!r}, expected one of "
                        f"0..{j - 1}")
                if int(src) in seen:
                    raise InvalidEncodingError(
                        f"NB-201 string {s!r}: node {j} lists input {src} twice")
                seen.add(int(src))
                enc[EDGES.index((j, int(src)))] = OPS.index(op)
        return enc

    def unique_string(self, enc) -> str:
        """The benchmark's `UniqueString`: equal exactly for cells NATS-Bench deems equivalent."""
        return _unique_string(self.op_names(enc))

    def arch_hash(self, enc) -> str:
        """Equal for functionally equivalent cells (same `unique_string`), e.g. differing only on edges
        whose output is discarded."""
        return hashlib.sha256(self.unique_string(enc).encode()).hexdigest()[:32]

    def describe(self, enc) -> str:
        return f"NB-201 cell {self.to_string(enc)}"
