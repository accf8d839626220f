"""LaNAS's NASNet cell space (`002_*` §4.3 and A.2; the space LaNet was found in).

One cell code, shared by the normal and the reduction cells (as NASBench-101 and PNAS share theirs).
The cell has two inputs (0: c_{k-2}, 1: c_{k-1}) and `num_nodes` nodes (7 in LaNet); node i (0-based)
sums two (op, input) pairs whose inputs are any of its predecessors {0, 1, ..., i + 1} (index j >= 2 is
node j - 2), the same input twice allowed. The cell's output concatenates every state no node reads,
the *loose ends*: in a normal cell the unused cell inputs too, in a reduction cell only nodes (its
inputs are at twice the nodes' resolution). So the output width depends on the cell (`loose_ends`).

Encoding, int32 (num_nodes, 2, 2): [node, slot, (input index, op id)], op ids index `ops`. The two slots
are kept in the order given (the reference samples and prints them so): the encodings number
prod_i (k (i + 2))^2 with k ops, the paper's 4.36 x 10^17 for LaNet's 7 nodes and 4 ops, while
`arch_hash` identifies the two orders of a node's pairs, which build the same network.

Default ops are the reference implementation's (facebookresearch/LaMCTS, LaNAS/LaNet/CIFAR10), whose op
ids its flat integer lists use; `PAPER_OPS` is the list of §4.3's text (3/5/7 max pool, 3/5/7
separable conv, 1x1 conv, identity). The reference's flat list (`to_list`, `from_list`) is every
node's two op ids, then every node's two input indices: LaNet is `LANET`. Genotype strings are
DARTS' (`to_genotype`, `from_genotype`; the concat lists are the loose ends).

The networks (`nasjax.nn.build`, `nasjax.nn.supernet`) are DARTS' evaluation network with this cell
(`nasjax.nn.cells`); `init_channels` and `layers` are their default size.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from nasjax.spaces import darts
from nasjax.spaces.base import Graph, InvalidEncodingError, Space, TokenView
from nasjax.spaces.darts import (INPUT, OP, CNNGenotype, cell_edges, check_cell_space, edge_features,
                                 parse_cnn_genotype, slot_errors)

OPS = ("sep_conv_3x3", "max_pool_3x3", "skip_connect", "sep_conv_5x5")
PAPER_OPS = ("max_pool_3x3", "max_pool_5x5", "max_pool_7x7", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7",
             "conv_1x1", "skip_connect")
# Every op a cell can run (`nasjax.nn.cells.ops`): DARTS' and the NASNet ones.
CELL_OPS = darts.OPS + ("max_pool_5x5", "max_pool_7x7", "sep_conv_7x7", "conv_1x1")
# LaNet, the best cell of LaNAS's NASNet search (LaMCTS LaNAS/LaNet/CIFAR10/README.md).
LANET = (2, 2, 0, 2, 1, 2, 0, 2, 2, 3, 2, 1, 2, 0, 0, 1, 1, 1, 2, 1, 1, 0, 3, 4, 3, 0, 3, 1)


def loose_ends(enc, reduction: bool):
    """bool (num_nodes + 2,) normal cell, (num_nodes,) reduction cell: which states (cell inputs, then
    nodes; a reduction cell's nodes only) the cell `enc` (num_nodes, 2, 2) concatenates, the ones no node
    reads. numpy in, numpy out; jnp (traced too) in, jnp out."""
    xp = np if isinstance(enc, np.ndarray) else jnp
    inputs = enc[..., INPUT].reshape(-1)
    used = xp.any(inputs[:, None] == xp.arange(enc.shape[0] + 2)[None, :], axis=0)
    return ~used[2:] if reduction else ~used


@dataclasses.dataclass(frozen=True)
class NASNetSpace(Space, TokenView):
    """One shared cell of `num_nodes` nodes, two ordered (input, op) pairs each; see the module docstring.
    `init_channels` and `layers` are the default size of its networks (LaNet's CIFAR-10 network: 36
    channels, 20 cells, 3,222,982 parameters)."""

    num_nodes: int = 7
    ops: tuple[str, ...] = OPS
    init_channels: int = 36
    layers: int = 20

    def __post_init__(self):
        check_cell_space(self.num_nodes, self.ops, tuple(op for op in CELL_OPS if op != "none"),
                         self.init_channels, self.layers)

    # --- static description -------------------------------------------------------------------
    @property
    def encoding_shape(self) -> tuple[int, ...]:
        return (self.num_nodes, 2, 2)

    @property
    def num_features(self) -> int:
        return self.num_nodes * 2 * (len(self.ops) + self.num_nodes + 1)

    def _num_inputs(self) -> np.ndarray:
        """int (num_nodes,): node i reads one of i + 2 states."""
        return np.arange(self.num_nodes) + 2

    # --- pure, jittable ---------------------------------------------------------------------------
    def _sample(self, key: jax.Array, n: int) -> jax.Array:
        """Uniform over encodings: every slot's input and op independent and uniform (the reference's
        `gen_code`)."""
        k_input, k_op = jax.random.split(key)
        shape = (n, self.num_nodes, 2)
        inputs = jax.random.randint(k_input, shape, 0, self._num_inputs()[:, None])
        op = jax.random.randint(k_op, shape, 0, len(self.ops))
        return jnp.stack([inputs, op], axis=-1).astype(jnp.int32)

    def is_valid(self, enc: jax.Array) -> jax.Array:
        enc = jnp.asarray(enc)
        inputs, op = enc[..., INPUT], enc[..., OP]
        return (jnp.all((inputs >= 0) & (inputs < self._num_inputs()[:, None]))
                & jnp.all((op >= 0) & (op < len(self.ops))))

    def canonicalize(self, enc: jax.Array) -> jax.Array:
        """The same network with each node's pairs ordered by (input, op) (jittable, batches too)."""
        enc = jnp.asarray(enc, jnp.int32)
        key = enc[..., INPUT] * len(self.ops) + enc[..., OP]
        swap = key[..., 0] > key[..., 1]
        return jnp.where(swap[..., None, None], enc[..., ::-1, :], enc)

    def _edits(self) -> np.ndarray:
        """int (M, 4) one-edits (node, slot, field, new value): every op and every input of every slot;
        the one equal to the current value is masked out per encoding."""
        rows = [(i, s, OP, v) for i in range(self.num_nodes) for s in range(2) for v in range(len(self.ops))]
        rows += [(i, s, INPUT, v) for i in range(self.num_nodes) for s in range(2) for v in range(i + 2)]
        return np.asarray(rows, np.int32)

    def neighbors(self, enc: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Change one slot's op or input: (int32 (M, N, 2, 2), bool (M,)); a valid encoding has
        sum_i 2 (k - 1 + i + 1) real neighbours (k ops)."""
        enc = jnp.asarray(enc, jnp.int32)
        i, s, f, v = self._edits().T
        rows = jnp.broadcast_to(enc, (len(v),) + enc.shape).at[np.arange(len(v)), i, s, f].set(v)
        return rows, enc[i, s, f] != v

    def features(self, enc: jax.Array) -> jax.Array:
        """float32 (N * 2 * (len(ops) + N + 1),): per slot (node, slot order) a one-hot op followed by
        a one-hot input index."""
        return edge_features(enc, len(self.ops), self.num_nodes)

    tokens_always_valid = True

    @property
    def token_vocab(self) -> tuple[int, ...]:
        """The encoding flattened: per node and slot [input index (i + 2 values), op id]."""
        return tuple(v for m in self._num_inputs() for _ in range(2) for v in (int(m), len(self.ops)))

    def to_tokens(self, enc: jax.Array) -> jax.Array:
        return jnp.asarray(enc, jnp.int32).reshape(-1)

    def from_tokens(self, tokens: jax.Array) -> jax.Array:
        return jnp.asarray(tokens, jnp.int32).reshape(self.encoding_shape)

    # --- host side --------------------------------------------------------------------------------
    def validation_errors(self, enc: np.ndarray) -> list[str]:
        errors = []
        for i in range(self.num_nodes):
            for s in range(2):
                errors += slot_errors(f"node {i} slot {s}", i, *enc[i, s], self.ops)
        return errors

    def size(self) -> int:
        """Number of encodings: prod_i (k (i + 2))^2, k ops (LaNet's space: 4.36 x 10^17)."""
        return math.prod((len(self.ops) * int(m)) ** 2 for m in self._num_inputs())

    def arch_hash(self, enc) -> str:
        """Equal for encodings that differ only in the order of a node's two pairs."""
        return super().arch_hash(np.asarray(self.canonicalize(self.checked(enc))))

    def to_list(self, enc) -> list[int]:
        """The reference's flat list: [op of node 0 slot 0, op of node 0 slot 1, ..., then the inputs
        in the same order] (4 * num_nodes ints)."""
        enc = self.checked(enc)
        return [int(v) for v in enc[..., OP].reshape(-1)] + [int(v) for v in enc[..., INPUT].reshape(-1)]

    def from_list(self, values) -> np.ndarray:
        """The encoding of the reference's flat list (`to_list`); `InvalidEncodingError` naming what
        is wrong."""
        values = list(values)
        if len(values) != 4 * self.num_nodes:
            raise InvalidEncodingError(f"NASNetSpace: a list of {len(values)} ints, expected 4 per node "
                                       f"({4 * self.num_nodes} for {self.num_nodes} nodes)")
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            raise InvalidEncodingError(f"NASNetSpace: list entries must be ints, got {values}")
        n = 2 * self.num_nodes
        enc = np.stack([np.reshape(values[n:], (-1, 2)), np.reshape(values[:n], (-1, 2))], axis=-1)
        return self.checked(enc)

    def graphs(self, enc) -> list[Graph]:
        return darts.genotype_graphs(self.to_genotype(enc))

    def to_genotype(self, enc) -> CNNGenotype:
        """DARTS' genotype: the cell's (op name, input index) pairs for both cells, and each cell's loose
        ends as its concat (the reference's `translator`)."""
        enc = self.checked(enc)
        edges = [(self.ops[op], int(index)) for index, op in enc.reshape(-1, 2)]
        normal = [int(j) for j in np.flatnonzero(loose_ends(enc, False))]
        reduce = [int(j) + 2 for j in np.flatnonzero(loose_ends(enc, True))]
        return CNNGenotype(edges, normal, list(edges), reduce)

    def from_genotype(self, genotype) -> np.ndarray:
        """The encoding of a genotype (a `CNNGenotype` or the string DARTS prints); its two cells must
        be the same and its concats the loose ends. `InvalidEncodingError` naming the problem."""
        if isinstance(genotype, str):
            genotype = parse_cnn_genotype(genotype)
        normal, normal_concat, reduce, reduce_concat = genotype
        enc = cell_edges("normal", normal, self.ops, self.num_nodes)
        if not np.array_equal(cell_edges("reduce", reduce, self.ops, self.num_nodes), enc):
            raise InvalidEncodingError("NASNetSpace shares one cell: the normal and reduce edges differ")
        self.validate(enc)
        expected = self.to_genotype(enc)
        for name, concat, loose in (("normal", normal_concat, expected.normal_concat),
                                    ("reduce", reduce_concat, expected.reduce_concat)):
            if list(concat) != loose:
                raise InvalidEncodingError(f"{name}_concat {list(concat)}: this space concatenates the "
                                           f"states no node reads, {loose}")
        return enc

    def describe(self, enc) -> str:
        """The genotype in DARTS notation: Genotype(normal=[('skip_connect', 0), ...], ...)."""
        return repr(self.to_genotype(enc))
