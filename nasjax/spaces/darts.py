"""The DARTS search space (Liu et al. 2019; the space `001_*` evaluates): a normal and a reduction cell.

Each cell has two inputs (0: c_{k-2}, 1: c_{k-1}) and `num_nodes` intermediate nodes; node i (0-based)
sums two edges, each applying one op to one of its predecessors {0, 1, 2, ..., i + 1} (index j >= 2 is
intermediate node j - 2). The two inputs of a node are distinct, as in DARTS genotypes. The cell output
concatenates all intermediate nodes (DARTS' `concat = range(2, 2 + num_nodes)`).

Encoding, int32 (2, num_nodes, 2, 2): [cell (0 normal, 1 reduce), node, slot, (input index, op id)], op
ids index `ops` (DARTS' PRIMITIVES order by default). A node's sum does not depend on the order of its
two edges, so the canonical encoding lists the smaller input index in slot 0 and every network has
exactly one encoding (`canonicalize` sorts; `from_genotype` accepts either order).

'none' (the zero op) is part of `ops` so op ids match DARTS' PRIMITIVES, but DARTS never derives it
into a final cell: with `include_none=False` (default) an encoding using it is invalid, and sample,
size, neighbours and validity all exclude it. `include_none=True` admits it everywhere, which gives
`001_*`'s random sampling ("one out of eight possible operations with uniform probability 1/8").

The network (`to_module`) is DARTS' evaluation network `NetworkCIFAR` (quark0/darts cnn/model.py,
operations.py), op for op: stem conv3x3 (3C) + BN; `layers` cells with reductions (channels doubled,
stride 2 on the edges reading the cell inputs) at layers // 3 and 2 * layers // 3; preprocessing
FactorizedReduce after a reduction, else ReLU-conv1x1-BN; drop-path on every op but the identity while
training; an optional CIFAR auxiliary head after cell 2 * layers // 3; global average pooling; linear
classifier. BatchNorms are affine with PyTorch's defaults (momentum 0.1, eps 1e-5).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nasjax.spaces import ops as primitives
from nasjax.spaces.base import InvalidEncodingError, Space

OPS = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
       "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
CELLS = ("normal", "reduce")
INPUT, OP = 0, 1  # fields of the last encoding axis


class Genotype(NamedTuple):
    """DARTS' genotype: per cell a list of (op name, input index), 2 per node, and the concatenated nodes."""

    normal: list
    normal_concat: list
    reduce: list
    reduce_concat: list


# The published DARTS (second order) cell, quark0/darts cnn/genotypes.py.
DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5])


# --- the network -------------------------------------------------------------------------------------
class DwPwBN(nn.Module):
    """ReLU -> depthwise k x k (dilation d, padding d (k - 1) / 2) -> pointwise 1x1 -> BN: DARTS' DilConv,
    and each half of its SepConv (dilation 1). (B, H, W, C) -> (B, H / stride, W / stride, features)."""

    features: int
    kernel: int
    stride: int = 1
    dilation: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        p = self.dilation * (self.kernel - 1) // 2
        x = primitives.Conv(x.shape[-1], (self.kernel, self.kernel), strides=(self.stride, self.stride),
                            padding=((p, p), (p, p)), kernel_dilation=(self.dilation, self.dilation),
                            feature_group_count=x.shape[-1], use_bias=False, name="depthwise")(nn.relu(x))
        x = primitives.Conv(self.features, (1, 1), use_bias=False, name="pointwise")(x)
        return primitives.batch_norm(train, "bn")(x)


class SepConv(nn.Module):
    """DARTS' SepConv: DwPwBN(stride) then DwPwBN(1), both k x k. (B, H, W, C) -> (B, H/s, W/s, features)."""

    features: int
    kernel: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = DwPwBN(x.shape[-1], self.kernel, self.stride, name="sep1")(x, train)
        return DwPwBN(self.features, self.kernel, name="sep2")(x, train)


class FactorizedReduce(nn.Module):
    """ReLU -> two 1x1 stride-2 convs, on x and on x shifted by one pixel, concatenated -> BN:
    (B, H, W, C) -> (B, H/2, W/2, features), features even."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.features % 2:
            raise ValueError(f"FactorizedReduce needs an even number of features, got {self.features}")
        x = nn.relu(x)
        half = functools.partial(primitives.Conv, self.features // 2, (1, 1), strides=(2, 2),
                                 padding="VALID", use_bias=False)
        x = jnp.concatenate([half(name="conv_1")(x), half(name="conv_2")(x[:, 1:, 1:])], axis=-1)
        return primitives.batch_norm(train, "bn")(x)


class EdgeOp(nn.Module):
    """One DARTS op by name (operations.py `OPS`, affine=True): (B, H, W, C) -> (B, H/s, W/s, C)."""

    op: str
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        c, s = x.shape[-1], self.stride
        if self.op == "none":
            return jnp.zeros_like(x[:, ::s, ::s])
        if self.op == "max_pool_3x3":
            return nn.max_pool(x, (3, 3), strides=(s, s), padding=((1, 1), (1, 1)))
        if self.op == "avg_pool_3x3":
            return nn.avg_pool(x, (3, 3), strides=(s, s), padding=((1, 1), (1, 1)), count_include_pad=False)
        if self.op == "skip_connect":
            return x if s == 1 else FactorizedReduce(c, name="reduce")(x, train)
        kind, kernel = self.op.rsplit("_", 1)[0], int(self.op[-1])
        if kind == "sep_conv":
            return SepConv(c, kernel, s, name="sep_conv")(x, train)
        if kind == "dil_conv":
            return DwPwBN(c, kernel, s, dilation=2, name="dil_conv")(x, train)
        raise ValueError(f"unknown DARTS op {self.op!r}; known: {', '.join(OPS)}")


def drop_path(x: jax.Array, rate, key: jax.Array) -> jax.Array:
    """Zero whole examples of x (B, ...) with probability `rate`, scale the kept ones by 1 / (1 - rate)."""
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep, 0.0).astype(x.dtype)


class DARTSCell(nn.Module):
    """One cell: `edges` lists (op name, input index), two per node.
    (s0, s1) -> (B, H', W', nodes * features)."""

    edges: tuple[tuple[str, int], ...]
    features: int
    reduction: bool = False
    reduction_prev: bool = False

    @nn.compact
    def __call__(self, s0: jax.Array, s1: jax.Array, train: bool = False, drop_path_rate=0.0) -> jax.Array:
        if self.reduction_prev:
            s0 = FactorizedReduce(self.features, name="preprocess0")(s0, train)
        else:
            s0 = primitives.ReLUConvBN(self.features, 1, name="preprocess0")(s0, train)
        states = [s0, primitives.ReLUConvBN(self.features, 1, name="preprocess1")(s1, train)]
        # A Python 0 skips drop-path statically; anything else (a float or a traced schedule) applies it.
        dropping = train and not (isinstance(drop_path_rate, (int, float)) and drop_path_rate == 0)
        for node in range(len(self.edges) // 2):
            total = 0.0
            for slot in range(2):
                op, index = self.edges[2 * node + slot]
                stride = 2 if self.reduction and index < 2 else 1
                h = EdgeOp(op, stride, name=f"node{node}_edge{slot}")(states[index], train)
                if dropping and not (op == "skip_connect" and stride == 1):
                    h = drop_path(h, drop_path_rate, self.make_rng("dropout"))
                total = total + h
            states.append(total)
        return jnp.concatenate(states[2:], axis=-1)


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS' auxiliary classifier on an 8x8 map: ReLU, avg-pool 5/3, conv1x1-128-BN-ReLU,
    conv2x2-768-BN-ReLU, linear. (B, 8, 8, C) -> (B, num_classes)."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.avg_pool(nn.relu(x), (5, 5), strides=(3, 3), padding="VALID")
        x = primitives.Conv(128, (1, 1), use_bias=False, name="conv1")(x)
        x = nn.relu(primitives.batch_norm(train, "bn1")(x))
        x = primitives.Conv(768, (2, 2), padding="VALID", use_bias=False, name="conv2")(x)
        x = nn.relu(primitives.batch_norm(train, "bn2")(x))
        return nn.Dense(self.num_classes, name="classifier")(x.reshape(x.shape[0], -1))


class DARTSNetwork(nn.Module):
    """DARTS' `NetworkCIFAR`. x (B, H, W, 3) -> logits (B, num_classes), or (logits, aux_logits) when
    `auxiliary` and `train`.

    Training (`train=True`) updates `batch_stats` (pass mutable=["batch_stats"]) and, when the drop-path
    rate is not 0, draws from the rng stream 'dropout'. `drop_path_rate` given to `__call__` overrides
    the attribute, so a schedule (DARTS grows it linearly over epochs) needs no recompilation. The
    auxiliary head's parameters are created at init whenever `auxiliary` is set.
    """

    normal: tuple[tuple[str, int], ...]
    reduce: tuple[tuple[str, int], ...]
    num_classes: int = 10
    init_channels: int = 36
    layers: int = 20
    auxiliary: bool = False
    drop_path_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, drop_path_rate=None):
        rate = self.drop_path_rate if drop_path_rate is None else drop_path_rate
        c = self.init_channels
        x = primitives.Conv(3 * c, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, name="stem")(x)
        s0 = s1 = primitives.batch_norm(train, "stem_bn")(x)
        reductions = (self.layers // 3, 2 * self.layers // 3)
        reduction_prev, aux_logits = False, None
        for i in range(self.layers):
            reduction = i in reductions
            c = 2 * c if reduction else c
            cell = DARTSCell(self.reduce if reduction else self.normal, c, reduction, reduction_prev,
                             name=f"cell{i}")
            s0, s1 = s1, cell(s0, s1, train, rate)
            reduction_prev = reduction
            if self.auxiliary and i == reductions[1] and (train or self.is_initializing()):
                aux_logits = AuxiliaryHeadCIFAR(self.num_classes, name="auxiliary_head")(s1, train)
        logits = nn.Dense(self.num_classes, name="classifier")(jnp.mean(s1, axis=(1, 2)))
        return (logits, aux_logits) if self.auxiliary and train else logits


# --- the space ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DARTSSpace(Space):
    """Normal + reduction cell of `num_nodes` nodes, two (input, op) edges each; see the module docstring."""

    num_nodes: int = 4
    ops: tuple[str, ...] = OPS
    include_none: bool = False

    def __post_init__(self):
        if self.num_nodes < 1:
            raise ValueError(f"num_nodes must be >= 1, got {self.num_nodes}")
        unknown = [op for op in self.ops if op not in OPS]
        if unknown or len(set(self.ops)) != len(self.ops):
            raise ValueError(f"ops must be distinct names from {OPS}; got {self.ops}")
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
    def sample(self, key: jax.Array, n: int) -> jax.Array:
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
        enc = jnp.asarray(enc)
        op = jax.nn.one_hot(enc[..., OP], len(self.ops), dtype=jnp.float32)
        inputs = jax.nn.one_hot(enc[..., INPUT], self.num_nodes + 1, dtype=jnp.float32)
        return jnp.concatenate([op, inputs], axis=-1).reshape(-1)

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
                    if not 0 <= index < i + 2:
                        errors.append(f"{where} slot {s}: input index {index} not available (node {i} "
                                      f"takes 0=c_{{k-2}}, 1=c_{{k-1}} or earlier nodes, i.e. 0..{i + 1})")
                    if not 0 <= op < len(self.ops):
                        errors.append(f"{where} slot {s}: op id {op} out of range [0, {len(self.ops)}) "
                                      f"for ops {self.ops}")
                    elif op not in self.allowed_ops:
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

    def to_genotype(self, enc) -> Genotype:
        """DARTS' genotype of a valid encoding: (op name, input index) per edge, node by node."""
        enc = self.checked(enc)
        cells = [[(self.ops[op], int(index)) for index, op in enc[c].reshape(-1, 2)] for c in range(2)]
        concat = list(range(2, 2 + self.num_nodes))
        return Genotype(cells[0], concat, cells[1], list(concat))

    def from_genotype(self, normal: Sequence, normal_concat: Sequence, reduce: Sequence,
                      reduce_concat: Sequence) -> np.ndarray:
        """Canonical int32 (2, N, 2, 2) encoding of a DARTS genotype (e.g. `from_genotype(*DARTS_V2)`);
        `InvalidEncodingError` naming what the space cannot express."""
        enc = np.zeros(self.encoding_shape, np.int32)
        cells = zip(CELLS, (normal, reduce), (normal_concat, reduce_concat))
        for c, (cell, edges, concat) in enumerate(cells):
            if list(concat) != list(range(2, 2 + self.num_nodes)):
                raise InvalidEncodingError(f"{cell} concat {list(concat)}: this space concatenates all "
                                           f"intermediate nodes {list(range(2, 2 + self.num_nodes))}")
            if len(edges) != 2 * self.num_nodes:
                raise InvalidEncodingError(f"{cell} cell has {len(edges)} edges, expected 2 per node "
                                           f"({2 * self.num_nodes})")
            for e, edge in enumerate(edges):
                op, index = edge
                if op not in self.ops:
                    raise InvalidEncodingError(f"{cell} cell edge {e}: unknown op {op!r}; known: "
                                               f"{', '.join(self.ops)}")
                enc[c, e // 2, e % 2] = (index, self.ops.index(op))
        enc = np.asarray(self.canonicalize(enc))
        self.validate(enc)
        return enc

    def describe(self, enc) -> str:
        """The genotype in DARTS notation: Genotype(normal=[('sep_conv_3x3', 0), ...], ...)."""
        return repr(self.to_genotype(enc))

    def to_module(self, enc, num_classes: int = 10, init_channels: int = 36, layers: int = 20,
                  auxiliary: bool = False, drop_path_rate: float = 0.0) -> DARTSNetwork:
        """DARTS' evaluation network (defaults: the CIFAR-10 protocol's 20 cells, 36 channels)."""
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        if init_channels < 1 or init_channels % 2:
            raise ValueError(f"init_channels must be a positive even number (FactorizedReduce halves "
                             f"channels), got {init_channels}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        genotype = self.to_genotype(enc)
        return DARTSNetwork(normal=tuple(genotype.normal), reduce=tuple(genotype.reduce),
                            num_classes=num_classes, init_channels=init_channels, layers=layers,
                            auxiliary=auxiliary, drop_path_rate=drop_path_rate)
