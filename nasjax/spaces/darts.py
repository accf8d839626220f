"""The DARTS search space (Liu et al. 2019; the space `001_*` evaluates): a normal and a reduction cell.

Each cell has two inputs (0: c_{k-2}, 1: c_{k-1}) and `num_nodes` intermediate nodes; node i (0-based)
sums two edges, each applying one op to one of its predecessors {0, 1, 2, ..., i + 1} (index j >= 2 is
intermediate node j - 2). The two inputs of a node are distinct, as in DARTS genotypes. The cell output
concatenates all intermediate nodes (DARTS' `concat = range(2, 2 + num_nodes)`).

Encoding, int32 (2, num_nodes, 2, 2): [cell (0 normal, 1 reduce), node, slot, (input index, op id)], op
ids index `ops` (DARTS' PRIMITIVES order by default). A node's sum does not depend on the order of its
two edges, so the canonical encoding lists the smaller input index in slot 0 and every network has
exactly one encoding (`canonicalize` sorts; `from_genotype` accepts either order, and the genotype
strings the DARTS family of repositories prints, flat or nested per node: `parse_cnn_genotype`).

'none' (the zero op) is part of `ops` so op ids match DARTS' PRIMITIVES, but DARTS never derives it
into a final cell: with `include_none=False` (default) an encoding using it is invalid, and sample,
size, neighbours and validity all exclude it. The default also matches `001_*`'s random sampling as
run: its text says "one out of eight possible operations with uniform probability 1/8" (eight is
PRIMITIVES with 'none'), but the 214 sampled genotypes it trained contain no 'none' (issue 17).
`include_none=True` admits it everywhere (the text's literal 1/8).

The networks (`nasjax.nn.build`, `nasjax.nn.supernet`: DARTS' evaluation network `NetworkCIFAR`) are in
`nasjax.nn.cells`; `init_channels` and `layers` are their default size.
"""

from __future__ import annotations

import ast
import dataclasses
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nasjax.spaces.base import Graph, InvalidEncodingError, Space, TokenView

OPS = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
       "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
CELLS = ("normal", "reduce")
INPUT, OP = 0, 1  # fields of the last encoding axis


class CNNGenotype(NamedTuple):
    """DARTS' convolutional genotype: per cell a list of (op name, input index), 2 per node, and the
    concatenated nodes. Printed as DARTS prints it, `Genotype(normal=..., ...)`."""

    normal: list
    normal_concat: list
    reduce: list
    reduce_concat: list

    def __repr__(self) -> str:
        return "Genotype(" + ", ".join(f"{name}={value!r}" for name, value in zip(self._fields, self)) + ")"


# The published DARTS (second order) cell, quark0/darts cnn/genotypes.py.
DARTS_V2_CNN = CNNGenotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5])


def parse_cnn_genotype(text: str) -> CNNGenotype:
    """The `CNNGenotype` in the string DARTS-family repositories print, e.g.
    "Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), reduce=[...],
    reduce_concat=range(2, 6))" (also [2, 3, 4, 5] concats and per-node nested edge lists). Only
    literals and range(...) are read, nothing is executed; `InvalidEncodingError` names what is wrong."""
    try:
        call = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise InvalidEncodingError(f"genotype string is not a Python expression: {e.msg}") from None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
        raise InvalidEncodingError(f"expected 'Genotype(normal=..., normal_concat=..., reduce=..., "
                                   f"reduce_concat=...)', got {text[:60]!r}")
    fields = dict(zip(CNNGenotype._fields, call.args))
    fields.update({kw.arg: kw.value for kw in call.keywords})
    missing = [f for f in CNNGenotype._fields if f not in fields]
    unknown = [f for f in fields if f not in CNNGenotype._fields]
    if missing or unknown:
        raise InvalidEncodingError(f"genotype string: missing fields {missing}, unknown fields {unknown}")

    def value(name, node):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
            return list(range(*(value(name, a) for a in node.args)))
        try:
            return ast.literal_eval(node)
        except ValueError:
            raise InvalidEncodingError(f"genotype field {name}: {ast.unparse(node)!r} is not a literal "
                                       "or range(...)") from None

    return CNNGenotype(**{name: value(name, node) for name, node in fields.items()})


def _flat_edges(cell: str, edges: Sequence) -> list:
    """A cell's (op, input) edges, flattening the per-node nested form [[(op, j), (op, j)], ...]."""
    edges = list(edges)
    if not edges or not all(isinstance(e, (list, tuple)) and e and isinstance(e[0], (list, tuple))
                            for e in edges):
        return edges
    for i, node in enumerate(edges):
        if len(node) != 2:
            raise InvalidEncodingError(f"{cell} cell node {i} has {len(node)} edges, expected 2")
    return [tuple(edge) for node in edges for edge in node]


def cell_edges(cell: str, edges: Sequence, ops: Sequence[str], num_nodes: int) -> np.ndarray:
    """int32 (num_nodes, 2, 2) [node, slot, (input index, op id)] of one cell's genotype edges, flat
    (2 per node) or nested per node, op names looked up in `ops`; in the genotype's own order.
    `InvalidEncodingError` naming a malformed edge (input ranges are the space's to check)."""
    edges = _flat_edges(cell, edges)
    if len(edges) != 2 * num_nodes:
        raise InvalidEncodingError(f"{cell} cell has {len(edges)} edges, expected 2 per node ({2 * num_nodes})")
    out = np.zeros((num_nodes, 2, 2), np.int32)
    for e, edge in enumerate(edges):
        if not (isinstance(edge, (tuple, list)) and len(edge) == 2 and isinstance(edge[0], str)
                and isinstance(edge[1], (int, np.integer))):
            raise InvalidEncodingError(f"{cell} cell edge {e}: {edge!r} is not an (op name, input index) pair")
        op, index = edge
        if op not in ops:
            raise InvalidEncodingError(f"{cell} cell edge {e}: unknown op {op!r}; known: {', '.join(ops)}")
        out[e // 2, e % 2] = (index, list(ops).index(op))
    return out


# --- the space ---------------------------------------------------------------------------------------
def genotype_graphs(genotype: CNNGenotype) -> list[Graph]:
    """A DARTS-family genotype's two cells as drawn: inputs c_{k-2}, c_{k-1}, nodes 0..N-1 (state j >= 2
    is node j - 2), two (op, j) edges per node, the concatenated states into c_{k}."""
    def cell(title, edges, concat):
        n = len(edges) // 2
        vertices = ([(0, "c_{k-2}", "input"), (1, "c_{k-1}", "input")]
                    + [(j + 2, str(j), "node") for j in range(n)] + [("out", "c_{k}", "output")])
        return Graph(title, vertices, [(j, e // 2 + 2, op) for e, (op, j) in enumerate(edges)]
                     + [(j, "out", "") for j in concat])

    return [cell("normal cell", genotype.normal, genotype.normal_concat),
            cell("reduction cell", genotype.reduce, genotype.reduce_concat)]


@dataclasses.dataclass(frozen=True)
class DARTSSpace(Space, TokenView):
    """Normal + reduction cell of `num_nodes` nodes, two (input, op) edges each; see the module docstring.
    `init_channels` and `layers` are the default size of its networks (`nasjax.nn.build` and
    `nasjax.nn.supernet`; DARTS' CIFAR-10 evaluation network: 36 channels, 20 cells)."""

    num_nodes: int = 4
    ops: tuple[str, ...] = OPS
    include_none: bool = False
    init_channels: int = 36
    layers: int = 20

    def __post_init__(self):
        check_cell_space(self.num_nodes, self.ops, OPS, self.init_channels, self.layers)
        if not self.allowed_ops:
            raise ValueError(f"no op left to sample from ops={self.ops}, include_none={self.include_none}")

    # --- static description -------------------------------------------------------------------
    @property
    def encoding_shape(self) -> tuple[int, ...]:
        return (2, self.num_nodes, 2, 2)

    @property
    def num_features(self) -> int:
        return 2 * self.num_nodes * 2 * (len(self.ops) + self.num_nodes + 1)

    @property
    def allowed_ops(self) -> tuple[int, ...]:
        """Op ids a valid encoding may use ('none' only with include_none)."""
        return tuple(i for i, op in enumerate(self.ops) if op != "none" or self.include_none)

    def _num_inputs(self) -> np.ndarray:
        """int (num_nodes,): node i chooses among i + 2 predecessors."""
        return np.arange(self.num_nodes) + 2

    # --- pure, jittable ---------------------------------------------------------------------------
    def _sample(self, key: jax.Array, n: int) -> jax.Array:
        """Uniform over valid encodings: per node a uniform pair of distinct inputs, then uniform ops."""
        k_first, k_second, k_op = jax.random.split(key, 3)
        shape = (n, 2, self.num_nodes)
        m = self._num_inputs()
        first = jax.random.randint(k_first, shape, 0, m)
        # Uniform over the m - 1 other predecessors: skip `first`.
        second = jax.random.randint(k_second, shape, 0, m - 1)
        second = second + (second >= first)
        inputs = jnp.stack([jnp.minimum(first, second), jnp.maximum(first, second)], axis=-1)
        allowed = jnp.asarray(self.allowed_ops, jnp.int32)
        op = allowed[jax.random.randint(k_op, shape + (2,), 0, len(self.allowed_ops))]
        return jnp.stack([inputs, op], axis=-1).astype(jnp.int32)

    def canonicalize(self, enc: jax.Array) -> jax.Array:
        """The same network with each node's edges ordered by input index (jittable, batches too)."""
        enc = jnp.asarray(enc, jnp.int32)
        swap = enc[..., 0, INPUT] > enc[..., 1, INPUT]
        return jnp.where(swap[..., None, None], enc[..., ::-1, :], enc)

    def is_valid(self, enc: jax.Array) -> jax.Array:
        enc = jnp.asarray(enc)
        inputs, op = enc[..., INPUT], enc[..., OP]
        in_range = (inputs >= 0) & (inputs < self._num_inputs()[None, :, None])
        op_ok = jnp.isin(op, jnp.asarray(self.allowed_ops))
        ordered = inputs[..., 0] < inputs[..., 1]
        return jnp.all(in_range) & jnp.all(op_ok) & jnp.all(ordered)

    def _edits(self) -> np.ndarray:
        """int (M, 5) candidate one-edits (cell, node, slot, field, new value): every allowed op and every
        available input for every edge; a candidate equal to the current value or producing two equal
        inputs is masked out per encoding."""
        rows = [(c, i, s, OP, v) for c in range(2) for i in range(self.num_nodes) for s in range(2)
                for v in self.allowed_ops]
        rows += [(c, i, s, INPUT, v) for c in range(2) for i in range(self.num_nodes) for s in range(2)
                 for v in range(i + 2)]
        return np.asarray(rows, np.int32)

    def neighbors(self, enc: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Change one edge's op or input (then re-sort the node): (int32 (M, 2, N, 2, 2), bool (M,)).
        A valid encoding has 2 * sum_i 2 * (k - 1 + i) real neighbours, k = len(allowed_ops)."""
        enc = jnp.asarray(enc, jnp.int32)
        c, i, s, f, v = self._edits().T
        rows = jnp.broadcast_to(enc, (len(v),) + enc.shape).at[np.arange(len(v)), c, i, s, f].set(v)
        changed = enc[c, i, s, f] != v
        distinct = (f == OP) | (enc[c, i, 1 - s, INPUT] != v)
        return self.canonicalize(rows), changed & distinct

    def features(self, enc: jax.Array) -> jax.Array:
        """float32 (2 * N * 2 * (len(ops) + N + 1),): per edge (cell, node, slot order) a one-hot op
        followed by a one-hot input index."""
        return edge_features(enc, len(self.ops), self.num_nodes)

    tokens_always_valid = True

    @property
    def token_vocab(self) -> tuple[int, ...]:
        """Per cell and node: [input pair, op of the smaller input, op of the larger one]. The pair
        (a, b), a < b, is token b(b-1)/2 + a (node i has C(i+2, 2) pairs); ops are indices into
        `allowed_ops`. Every token sequence within the vocabularies is a valid encoding."""
        per_node = [(math.comb(int(m), 2), len(self.allowed_ops), len(self.allowed_ops))
                    for m in self._num_inputs()]
        return tuple(v for _ in CELLS for node in per_node for v in node)

    def _pairs(self) -> np.ndarray:
        """int (C(N+1, 2), 2): input pair (a, b) of each pair token."""
        return np.asarray([(a, b) for b in range(self.num_nodes + 1) for a in range(b)], np.int32)

    def to_tokens(self, enc: jax.Array) -> jax.Array:
        enc = jnp.asarray(enc, jnp.int32)
        a, b = enc[..., 0, INPUT], enc[..., 1, INPUT]
        op_token = jnp.zeros((len(self.ops),), jnp.int32).at[jnp.asarray(self.allowed_ops)].set(
            jnp.arange(len(self.allowed_ops), dtype=jnp.int32))
        ops = op_token[enc[..., OP]]
        return jnp.concatenate([(b * (b - 1) // 2 + a)[..., None], ops], axis=-1).reshape(-1)

    def from_tokens(self, tokens: jax.Array) -> jax.Array:
        tokens = jnp.asarray(tokens, jnp.int32).reshape(2, self.num_nodes, 3)
        inputs = jnp.asarray(self._pairs())[tokens[..., 0]]
        ops = jnp.asarray(self.allowed_ops, jnp.int32)[tokens[..., 1:]]
        return jnp.stack([inputs, ops], axis=-1)

    # --- host side --------------------------------------------------------------------------------
    def validation_errors(self, enc: np.ndarray) -> list[str]:
        errors = []
        for c, cell in enumerate(CELLS):
            for i in range(self.num_nodes):
                where = f"{cell} cell node {i}"
                inputs = enc[c, i, :, INPUT]
                for s in range(2):
                    index, op = enc[c, i, s]
                    errors += slot_errors(f"{where} slot {s}", i, index, op, self.ops)
                    if 0 <= op < len(self.ops) and op not in self.allowed_ops:
                        errors.append(f"{where} slot {s}: op 'none' is excluded (include_none=False)")
                if inputs[0] == inputs[1]:
                    errors.append(f"{where}: both inputs are {inputs[0]}; a node needs 2 distinct inputs")
                elif inputs[0] > inputs[1]:
                    errors.append(f"{where}: inputs ({inputs[0]}, {inputs[1]}) not in ascending order "
                                  "(the canonical encoding lists the smaller input first; see canonicalize)")
        return errors

    def size(self) -> int:
        """Exact number of networks: per cell prod_i C(i + 2, 2) * k^2 (k allowed ops), squared."""
        per_cell = math.prod(math.comb(int(m), 2) for m in self._num_inputs())
        return (per_cell * len(self.allowed_ops) ** (2 * self.num_nodes)) ** 2

    def graphs(self, enc) -> list[Graph]:
        return genotype_graphs(self.to_genotype(enc))

    def to_genotype(self, enc) -> CNNGenotype:
        """DARTS' genotype of a valid encoding: (op name, input index) per edge, node by node."""
        enc = self.checked(enc)
        cells = [[(self.ops[op], int(index)) for index, op in enc[c].reshape(-1, 2)] for c in range(2)]
        concat = list(range(2, 2 + self.num_nodes))
        return CNNGenotype(cells[0], concat, cells[1], list(concat))

    def from_genotype(self, normal, normal_concat: Sequence | None = None, reduce: Sequence | None = None,
                      reduce_concat: Sequence | None = None) -> np.ndarray:
        """Canonical int32 (2, N, 2, 2) encoding of a DARTS genotype: its four fields
        (`from_genotype(*DARTS_V2_CNN)`), a `CNNGenotype`, or the string DARTS prints
        (`parse_cnn_genotype`); each cell's edges flat (2 per node) or nested per node.
        `InvalidEncodingError` naming what the space cannot express."""
        if isinstance(normal, str):
            normal = parse_cnn_genotype(normal)
        if isinstance(normal, CNNGenotype) or (isinstance(normal, tuple) and hasattr(normal, "_fields")):
            normal, normal_concat, reduce, reduce_concat = normal
        if normal_concat is None or reduce is None or reduce_concat is None:
            raise InvalidEncodingError("from_genotype needs a Genotype, its string, or its four fields "
                                       "(normal, normal_concat, reduce, reduce_concat)")
        enc = np.zeros(self.encoding_shape, np.int32)
        cells = zip(CELLS, (normal, reduce), (normal_concat, reduce_concat))
        for c, (cell, edges, concat) in enumerate(cells):
            if list(concat) != list(range(2, 2 + self.num_nodes)):
                raise InvalidEncodingError(f"{cell} concat {list(concat)}: this space concatenates all "
                                           f"intermediate nodes {list(range(2, 2 + self.num_nodes))}")
            enc[c] = cell_edges(cell, edges, self.ops, self.num_nodes)
        enc = np.asarray(self.canonicalize(enc))
        self.validate(enc)
        return enc

    def describe(self, enc) -> str:
        """The genotype in DARTS notation: Genotype(normal=[('sep_conv_3x3', 0), ...], ...)."""
        return repr(self.to_genotype(enc))


def edge_features(enc: jax.Array, num_ops: int, num_nodes: int) -> jax.Array:
    """float32: per (input, op) edge of a cell encoding (..., 2) of `num_nodes` nodes, in order, a one-hot
    op (num_ops) followed by a one-hot input index (num_nodes + 1), flattened."""
    enc = jnp.asarray(enc)
    op = jax.nn.one_hot(enc[..., OP], num_ops, dtype=jnp.float32)
    inputs = jax.nn.one_hot(enc[..., INPUT], num_nodes + 1, dtype=jnp.float32)
    return jnp.concatenate([op, inputs], axis=-1).reshape(-1)


def slot_errors(where: str, node: int, index: int, op: int, ops: Sequence[str]) -> list[str]:
    """The problems of one (input index, op id) slot of cell node `node` (0-based), named by `where`."""
    errors = []
    if not 0 <= index < node + 2:
        errors.append(f"{where}: input index {index} not available (node {node} takes 0=c_{{k-2}}, "
                      f"1=c_{{k-1}} or earlier nodes, i.e. 0..{node + 1})")
    if not 0 <= op < len(ops):
        errors.append(f"{where}: op id {op} out of range [0, {len(ops)}) for ops {tuple(ops)}")
    return errors


def check_cell_space(num_nodes: int, ops: Sequence[str], known: Sequence[str], init_channels: int,
                     layers: int) -> None:
    """ValueError unless a cell space can have `num_nodes` nodes, `ops` (distinct, from `known`) and
    networks of `init_channels` channels and `layers` cells."""
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
    check_network_size(init_channels, layers)
    if not ops or any(op not in known for op in ops) or len(set(ops)) != len(ops):
        raise ValueError(f"ops must be distinct names from {tuple(known)}; got {tuple(ops)}")


def check_network_size(init_channels: int, layers: int) -> None:
    """ValueError unless DARTS' network can have `init_channels` channels and `layers` cells."""
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    if init_channels < 1 or init_channels % 2:
        raise ValueError(f"init_channels must be a positive even number (FactorizedReduce halves "
                         f"channels), got {init_channels}")
