"""The DARTS search space (Liu et al. 2019; the space `001_*` evaluates): a normal and a reduction cell.

Each cell has two inputs (0: c_{k-2}, 1: c_{k-1}) and `num_nodes` intermediate nodes; node i (0-based)
sums two edges, each applying one op to one of its predecessors {0, 1, 2, ..., i + 1} (index j >= 2 is
intermediate node j - 2). The two inputs of a node are distinct, as in DARTS genotypes. The cell output
concatenates all intermediate nodes (DARTS' `concat = range(2, 2 + num_nodes)`).

Encoding, int32 (2, num_nodes, 2, 2): [cell (0 normal, 1 reduce), node, slot, (input index, op id)], op
ids index `ops` (DARTS' PRIMITIVES order by default). A node's sum does not depend on the order of its
two edges, so the canonical encoding lists the smaller input index in slot 0 and every network has
exactly one encoding (`canonicalize` sorts; `from_genotype` accepts either order, and the genotype
strings the DARTS family of repositories prints, flat or nested per node: `parse_genotype`).

'none' (the zero op) is part of `ops` so op ids match DARTS' PRIMITIVES, but DARTS never derives it
into a final cell: with `include_none=False` (default) an encoding using it is invalid, and sample,
size, neighbours and validity all exclude it. The default also matches `001_*`'s random sampling as
run: its text says "one out of eight possible operations with uniform probability 1/8" (eight is
PRIMITIVES with 'none'), but the 214 sampled genotypes it trained contain no 'none' (issue 17).
`include_none=True` admits it everywhere (the text's literal 1/8).

The network (`to_module`) is DARTS' evaluation network `NetworkCIFAR` (quark0/darts cnn/model.py,
operations.py), op for op: stem conv3x3 (3C) + BN; `layers` cells with reductions (channels doubled,
stride 2 on the edges reading the cell inputs) at layers // 3 and 2 * layers // 3; preprocessing
FactorizedReduce after a reduction, else ReLU-conv1x1-BN; drop-path on every op but the identity while
training; an optional CIFAR auxiliary head after cell 2 * layers // 3; global average pooling; linear
classifier. BatchNorms are affine with PyTorch's defaults (momentum 0.1, eps 1e-5).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import math
from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

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


def parse_genotype(text: str) -> Genotype:
    """The `Genotype` in the string DARTS-family repositories print, e.g.
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
    fields = dict(zip(Genotype._fields, call.args))
    fields.update({kw.arg: kw.value for kw in call.keywords})
    missing = [f for f in Genotype._fields if f not in fields]
    unknown = [f for f in fields if f not in Genotype._fields]
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

    return Genotype(**{name: value(name, node) for name, node in fields.items()})


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


# --- the network -------------------------------------------------------------------------------------
# Every cell holds the parameters of every candidate op on every edge (node i, predecessor j): the
# weight-sharing supernet. The genotype chooses one (j, op) per slot and only that op runs. Given as a
# numpy array (a network built for one architecture, `to_module`) the choice is made in Python; given as
# a traced int array (`DARTSSpace.trainable`, weight sharing) the cell is a `lax.scan` over its
# 2 * num_nodes chosen edges, each a `lax.switch` over the ops, so one compiled program serves every
# genotype of a configuration and each op is compiled once per cell, not once per edge. Both read the
# same parameters with the same op code, so a supernet path equals its stand-alone network
# (tests/test_darts.py). Op parameters: each leaf stacks every edge (node i, predecessor j) on axis 0,
# node by node (DARTS' 14 edges for 4 nodes); FactorizedReduce (the reduction cell's skip_connect from
# the two cell inputs) stacks 2 per node.
_BN_MOMENTUM, _BN_EPS = 0.1, 1e-5  # PyTorch's defaults, as DARTS' BatchNorms


def _lecun_normal(key: jax.Array, shapes: list[tuple[int, ...]]) -> list[jax.Array]:
    """Flax's default conv-kernel init (truncated normal in [-2, 2] sd, variance 1 / fan_in) for kernels
    (E, k, k, C) depthwise (fan_in k * k) or (E, Cin, Cout) pointwise (fan_in Cin), E stacked edges."""
    sizes = [math.prod(shape) for shape in shapes]
    draw = jax.random.truncated_normal(key, -2.0, 2.0, (sum(sizes),), jnp.float32)
    out, start = [], 0
    for shape, size in zip(shapes, sizes):
        fan_in = shape[1] * shape[2] if len(shape) == 4 else shape[1]
        # .87962566103423978: the sd of a standard normal truncated to [-2, 2], as Flax divides by it.
        out.append(draw[start:start + size].reshape(shape) * (fan_in ** -0.5 / .87962566103423978))
        start += size
    return out


def _batch_norm(x: jax.Array, p: dict, s: dict, train: bool) -> tuple[jax.Array, dict]:
    """Affine BN of x (B, H, W, C) with params {scale, bias}, stats {mean, var} -> (y, new stats)."""
    if train:
        y, mean, var = primitives.batch_norm_train(x, p["scale"], p["bias"], _BN_EPS)
        mean, var = lax.stop_gradient(mean), lax.stop_gradient(var)
        return y, {"mean": (1 - _BN_MOMENTUM) * s["mean"] + _BN_MOMENTUM * mean,
                   "var": (1 - _BN_MOMENTUM) * s["var"] + _BN_MOMENTUM * var}
    return (x - s["mean"]) * (lax.rsqrt(s["var"] + _BN_EPS) * p["scale"]) + p["bias"], s


def _pointwise(x: jax.Array, w: jax.Array) -> jax.Array:
    """1x1 convolution as a matmul: x (B, H, W, Cin), w (Cin, Cout) -> (B, H, W, Cout)."""
    return lax.dot_general(x, w, (((3,), (0,)), ((), ())))


def _relu_conv_bn(p, s, x, train):
    """DARTS' ReLUConvBN 1x1 (a cell's preprocessing)."""
    y, bn = _batch_norm(_pointwise(nn.relu(x), p["pointwise"]), p["bn"], s["bn"], train)
    return y, {"bn": bn}


def _factorized_reduce(p, s, x, train):
    """DARTS' FactorizedReduce: ReLU, two 1x1 stride-2 convs on x and x shifted by one pixel,
    concatenated, BN: (B, H, W, C) -> (B, H/2, W/2, Cout)."""
    x = nn.relu(x)
    y = jnp.concatenate([_pointwise(x[:, ::2, ::2], p["conv_1"]), _pointwise(x[:, 1::2, 1::2], p["conv_2"])],
                        axis=-1)
    y, bn = _batch_norm(y, p["bn"], s["bn"], train)
    return y, {"bn": bn}


def _dw_pw_bn(p, s, x, stride, dilation, train):
    """ReLU -> depthwise k x k (padding d (k - 1) / 2) -> pointwise -> BN: DARTS' DilConv and each
    half of its SepConv."""
    x = primitives.depthwise_conv2d(nn.relu(x), p["depthwise"], stride, dilation)
    y, bn = _batch_norm(_pointwise(x, p["pointwise"]), p["bn"], s["bn"], train)
    return y, {"bn": bn}


def _op_shapes(op: str, c: int, stride: int) -> dict:
    """{leaf path: shape} of one op's parameters and batch statistics ('bn/mean', 'bn/var') at c channels."""
    bn = {"bn/scale": (c,), "bn/bias": (c,), "bn/mean": (c,), "bn/var": (c,)}
    if op == "skip_connect" and stride == 2:
        return {"conv_1": (c, c // 2), "conv_2": (c, c // 2), **bn}
    if op.startswith(("sep_conv", "dil_conv")):
        k = int(op[-1])
        one = {"depthwise": (k, k, c), "pointwise": (c, c), **bn}
        if op.startswith("dil_conv"):
            return one
        return {f"{half}/{leaf}": shape for half in ("sep1", "sep2") for leaf, shape in one.items()}
    return {}


def _apply_op(op: str, p: dict, s: dict, x: jax.Array, stride: int, train: bool):
    """One DARTS op (operations.py `OPS`, affine): x (B, H, W, C) -> ((B, H/s, W/s, C), new stats)."""
    if op == "none":
        return jnp.zeros_like(x[:, ::stride, ::stride]), s
    if op == "max_pool_3x3":
        return primitives.max_pool_window(x, 3, stride), s
    if op == "avg_pool_3x3":
        return primitives.avg_pool_window(x, 3, stride), s
    if op == "skip_connect":
        return (x, s) if stride == 1 else _factorized_reduce(p, s, x, train)
    if op.startswith("dil_conv"):
        return _dw_pw_bn(p, s, x, stride, 2, train)
    if op.startswith("sep_conv"):
        y, s1 = _dw_pw_bn(p["sep1"], s["sep1"], x, stride, 1, train)
        y, s2 = _dw_pw_bn(p["sep2"], s["sep2"], y, 1, 1, train)
        return y, {"sep1": s1, "sep2": s2}
    raise ValueError(f"unknown DARTS op {op!r}; known: {', '.join(OPS)}")


def _nest(flat: dict) -> dict:
    out: dict = {}
    for path, value in flat.items():
        *head, leaf = path.split("/")
        node = out
        for h in head:
            node = node.setdefault(h, {})
        node[leaf] = value
    return out


def _is_stat(path: str) -> bool:
    return path.endswith(("/mean", "/var"))


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """Static shape of one cell's edges: candidate `ops`, `num_nodes`, `features` C, `reduction`."""

    ops: tuple[str, ...]
    num_nodes: int
    features: int
    reduction: bool

    def _inputs_per_node(self, op: str) -> list[int]:
        """Stacked edges of `op` per node: all i + 2 predecessors; the reduction's FactorizedReduce 2."""
        return [2 if self.reduction and op == "skip_connect" else i + 2 for i in range(self.num_nodes)]

    def edge_index(self, op: str, node, j):
        """Axis-0 index of edge (node, input j) in `op`'s stacked leaves; node and j may be traced (a
        reduction's FactorizedReduce then clamps j to the cell inputs, where it has parameters)."""
        offsets = np.concatenate([[0], np.cumsum(self._inputs_per_node(op))[:-1]])
        if isinstance(node, int):
            return int(offsets[node]) + j
        if self.reduction and op == "skip_connect":
            j = jnp.minimum(j, 1)
        return jnp.asarray(offsets, jnp.int32)[node] + j

    def stride(self, index) -> int:
        return 2 if self.reduction and index < 2 else 1

    def shapes(self, stats: bool) -> dict:
        """{op: {leaf path: stacked shape}} of the edge parameters (or batch statistics)."""
        out = {}
        for op in self.ops:
            stride = 2 if self.reduction and op == "skip_connect" else 1
            leaves = {path: (sum(self._inputs_per_node(op)), *shape)
                      for path, shape in _op_shapes(op, self.features, stride).items() if _is_stat(path) == stats}
            if leaves:
                out[op] = leaves
        return out

    def init_params(self, key: jax.Array) -> dict:
        """Kernels as Flax's default (lecun_normal: truncated normal, variance 1 / fan_in, per edge), BN
        scale 1 and bias 0; all kernels from one draw (a sampler per leaf costs seconds to compile)."""
        flat = {(op, path): shape for op, leaves in self.shapes(stats=False).items() for path, shape in leaves.items()}
        kernels = [k for k in flat if not k[1].endswith(("/scale", "/bias"))]
        draw = _lecun_normal(key, [flat[k] for k in kernels])
        out: dict = {}
        for k, shape in flat.items():
            op, path = k
            kind = path.rsplit("/", 1)[-1]
            value = draw.pop(0) if k in kernels else (jnp.ones if kind == "scale" else jnp.zeros)(shape)
            out.setdefault(op, {})[path] = value
        return {op: _nest(leaves) for op, leaves in out.items()}

    def init_stats(self) -> dict:
        return {op: _nest({path: (jnp.ones if path.endswith("var") else jnp.zeros)(shape, jnp.float32)
                           for path, shape in leaves.items()}) for op, leaves in self.shapes(stats=True).items()}

    def path_param_count(self, genotype: np.ndarray) -> int:
        """Parameters of the ops the cell genotype (num_nodes, 2, 2) chooses."""
        total = 0
        for i in range(self.num_nodes):
            for index, op_id in genotype[i]:
                total += sum(math.prod(shape) for path, shape in
                             _op_shapes(self.ops[op_id], self.features, self.stride(index)).items()
                             if not _is_stat(path))
        return total


def _has_params(params: dict, op: str, stride: int) -> bool:
    """Whether `op` at `stride` has parameters (and batch statistics) in a cell's edge trees."""
    return op in params and not (op == "skip_connect" and stride == 1)


def _take(tree, index):
    return jax.tree.map(lambda leaf: leaf[index], tree)


def _put(tree, index, value):
    return jax.tree.map(lambda leaf, v: leaf.at[index].set(v), tree, value)


def _drop_mask(key, batch: int, rate, dtype) -> jax.Array:
    """(B, 1, 1, 1) drop-path factor: 0 with probability `rate`, else 1 / (1 - rate)."""
    keep = 1.0 - rate
    return jnp.where(jax.random.bernoulli(key, keep, (batch, 1, 1, 1)), 1.0 / keep, 0.0).astype(dtype)


def _static_cell(spec: CellSpec, params, stats, s0, s1, genotype: np.ndarray, train: bool, rate, key):
    """The cell for a concrete genotype: ops chosen in Python, autodiff as usual. -> (out, stats)."""
    states = [s0, s1]
    keys = jax.random.split(key, 2 * spec.num_nodes) if key is not None else None
    for i in range(spec.num_nodes):
        total = 0.0
        for slot in range(2):
            j, op_id = (int(v) for v in genotype[i, slot])
            op, stride = spec.ops[op_id], spec.stride(j)
            if _has_params(params, op, stride):
                index = spec.edge_index(op, i, j)
                h, new = _apply_op(op, _take(params[op], index), _take(stats[op], index), states[j], stride, train)
                stats = {**stats, op: _put(stats[op], index, new)}
            else:
                h, _ = _apply_op(op, {}, {}, states[j], stride, train)
            if keys is not None and not (op == "skip_connect" and stride == 1):
                h = h * _drop_mask(keys[2 * i + slot], h.shape[0], rate, h.dtype)
            total = total + h
        states.append(total)
    return jnp.concatenate(states[2:], axis=-1), stats


def _branches(spec: CellSpec, train: bool):
    """The edge branches of a traced genotype: branch b = op + len(ops) * (stride-2 edge). Each maps
    (edge params, edge stats, x_in, x_mid) -> (h, new edge stats), the trees holding every op's slice
    for the edge; x_in is a cell input (the reduction's stride-2 edges read it), x_mid the state at j."""
    strides = (1, 2) if spec.reduction else (1,)
    out = []
    for stride in strides:
        for op in spec.ops:
            def branch(p, s, x_in, x_mid, op=op, stride=stride):
                x = x_in if stride == 2 else x_mid
                if not _has_params(p, op, stride):
                    return _apply_op(op, {}, {}, x, stride, train)[0], s
                h, new = _apply_op(op, p[op], s[op], x, stride, train)
                return h, {**s, op: new}
            out.append(branch)
    return out


class _Edges(NamedTuple):
    """A traced cell's 2 * num_nodes chosen edges in order (node, slot), the `lax.scan` axis."""

    node: jax.Array  # int (2N,)
    input: jax.Array  # int (2N,): j
    branch: jax.Array  # int (2N,): the `_branches` index
    identity: jax.Array  # bool (2N,): a stride-1 skip_connect, which drop-path leaves alone
    key: jax.Array | None  # (2N, ...) drop-path key data, or None (no drop-path)


def _edges(spec: CellSpec, genotype, key) -> _Edges:
    n = spec.num_nodes
    j, op = genotype[:, :, INPUT].reshape(-1), genotype[:, :, OP].reshape(-1)
    wide = (j < 2) if spec.reduction else jnp.zeros_like(j, bool)
    skip = spec.ops.index("skip_connect") if "skip_connect" in spec.ops else -1
    return _Edges(jnp.repeat(jnp.arange(n, dtype=j.dtype), 2), j, op + len(spec.ops) * wide, (op == skip) & ~wide,
                  None if key is None else jax.random.split(key, 2 * n))


def _edge_indices(spec: CellSpec, params: dict, node, j) -> dict:
    """{op: axis-0 index of edge (node, j)} for every op with parameters (and statistics) in the cell."""
    return {op: spec.edge_index(op, node, j) for op in params}


def _slices(tree: dict, index: dict) -> dict:
    """{op: that op's leaves at its edge index} of a cell's stacked edge parameters (or statistics)."""
    return {op: _take(tree[op], i) for op, i in index.items()}


def _edge_inputs(spec: CellSpec, buf, j):
    """(x_in, x_mid) an edge reading state j gets from the state buffer(s)."""
    if spec.reduction:
        inputs, mids = buf
        return (lax.dynamic_index_in_dim(inputs, jnp.minimum(j, 1), keepdims=False),
                lax.dynamic_index_in_dim(mids, jnp.maximum(j - 2, 0), keepdims=False))
    x = lax.dynamic_index_in_dim(buf, j, keepdims=False)
    return x, x


def _node_state(spec: CellSpec, buf, node):
    return lax.dynamic_index_in_dim(buf[1] if spec.reduction else buf, node + (0 if spec.reduction else 2),
                                    keepdims=False)


def _add_to_node(spec: CellSpec, buf, node, h):
    if spec.reduction:
        return buf[0], buf[1].at[node].add(h)
    return buf.at[node + 2].add(h)


def _traced_forward(spec, train, params, stats, s0, s1, genotype, rate, key):
    """-> (out, new stats, buffer of every state): the dynamic cell's forward pass, a scan over edges."""
    b, h, w, c = s1.shape
    n = spec.num_nodes
    if spec.reduction:
        buf = (jnp.stack([s0, s1]), jnp.zeros((n, b, h // 2, w // 2, c), s1.dtype))
    else:
        buf = jnp.concatenate([jnp.stack([s0, s1]), jnp.zeros((n, b, h, w, c), s1.dtype)])
    branches = _branches(spec, train)

    def step(carry, edge: _Edges):
        buf, stats = carry
        x_in, x_mid = _edge_inputs(spec, buf, edge.input)
        index = _edge_indices(spec, params, edge.node, edge.input)
        hh, new = lax.switch(edge.branch, branches, _slices(params, index), _slices(stats, index), x_in, x_mid)
        stats = {op: _put(stats[op], i, new[op]) for op, i in index.items()}
        if edge.key is not None:
            hh = jnp.where(edge.identity, hh, hh * _drop_mask(edge.key, b, rate, hh.dtype))
        return (_add_to_node(spec, buf, edge.node, hh), stats), None

    (buf, stats), _ = lax.scan(step, (buf, stats), _edges(spec, genotype, key))
    mids = buf[1] if spec.reduction else buf[2:]
    out = jnp.moveaxis(mids, 0, 3).reshape(*mids.shape[1:4], n * c)
    return out, stats, buf


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _traced_cell(spec, train, params, stats, s0, s1, genotype, rate, key):
    out, stats, _ = _traced_forward(spec, train, params, stats, s0, s1, genotype, rate, key)
    return out, stats


def _traced_cell_fwd(spec, train, params, stats, s0, s1, genotype, rate, key):
    out, new_stats, buf = _traced_forward(spec, train, params, stats, s0, s1, genotype, rate, key)
    return (out, new_stats), (params, stats, buf, genotype, rate, key)


def _traced_cell_bwd(spec, train, res, cts):
    """Backward through the chosen ops only: a reverse scan over the edges, each edge's op re-run under
    `jax.vjp` inside the same switch (its residuals would otherwise be kept for every branch), its
    parameter and input gradients added in place into the stacked parameter and state-buffer gradients."""
    params, stats, buf, genotype, rate, key = res
    dout = cts[0]
    n, c = spec.num_nodes, dout.shape[-1] // spec.num_nodes
    dmids = jnp.moveaxis(dout.reshape(*dout.shape[:3], n, c), 3, 0)
    if spec.reduction:
        dbuf = (jnp.zeros_like(buf[0]), dmids)
    else:
        dbuf = jnp.concatenate([jnp.zeros_like(buf[:2]), dmids])

    def vjp_branch(branch):
        def run(p, s, x_in, x_mid, dh):
            if not spec.reduction:  # one input (x_in is x_mid): no zero cotangent to make and add
                return jax.vjp(lambda p, x: branch(p, s, x, x)[0], p, x_mid)[1](dh)
            return jax.vjp(lambda p, x_in, x_mid: branch(p, s, x_in, x_mid)[0], p, x_in, x_mid)[1](dh)
        return run

    grads = [vjp_branch(branch) for branch in _branches(spec, train)]

    def step(carry, edge: _Edges):
        dbuf, dparams = carry
        dh = _node_state(spec, dbuf, edge.node)
        if edge.key is not None:
            dh = jnp.where(edge.identity, dh, dh * _drop_mask(edge.key, dh.shape[0], rate, dh.dtype))
        x_in, x_mid = _edge_inputs(spec, buf, edge.input)
        index = _edge_indices(spec, params, edge.node, edge.input)
        dp, *dx = lax.switch(edge.branch, grads, _slices(params, index), _slices(stats, index), x_in, x_mid, dh)
        dparams = {op: jax.tree.map(lambda g, d: g.at[i].add(d), dparams[op], dp[op]) for op, i in index.items()}
        j = edge.input
        if spec.reduction:
            dbuf = (dbuf[0].at[jnp.minimum(j, 1)].add(dx[0]), dbuf[1].at[jnp.maximum(j - 2, 0)].add(dx[1]))
        else:
            dbuf = dbuf.at[j].add(dx[0])
        return (dbuf, dparams), None

    (dbuf, dparams), _ = lax.scan(step, (dbuf, jax.tree.map(jnp.zeros_like, params)),
                                  _edges(spec, genotype, key), reverse=True)
    ds0, ds1 = (dbuf[0][0], dbuf[0][1]) if spec.reduction else (dbuf[0], dbuf[1])
    zero = lambda x: np.zeros(np.shape(x), jax.dtypes.float0) if not jnp.issubdtype(  # noqa: E731
        jnp.result_type(x), jnp.floating) else jnp.zeros_like(x)
    return (dparams, jax.tree.map(zero, stats), ds0, ds1, zero(genotype), zero(rate),
            None if key is None else zero(key))


_traced_cell.defvjp(_traced_cell_fwd, _traced_cell_bwd)


class DARTSCell(nn.Module):
    """One cell over every candidate op: preprocessing of (s0, s1) to `features` channels, then the nodes
    of `genotype` (num_nodes, 2, 2) [node, slot, (input, op)], numpy (chosen in Python) or traced
    (a `lax.scan` over the chosen edges, a `lax.switch` per edge).
    (s0, s1) -> (B, H', W', num_nodes * features)."""

    ops: tuple[str, ...]
    num_nodes: int
    features: int
    reduction: bool = False
    reduction_prev: bool = False

    @nn.compact
    def __call__(self, s0, s1, genotype, train: bool = False, drop_path_rate=0.0):
        c = self.features
        spec = CellSpec(self.ops, self.num_nodes, c, self.reduction)
        pre_shapes = {"preprocess0": ({"conv_1": (s0.shape[-1], c // 2), "conv_2": (s0.shape[-1], c // 2)}
                                      if self.reduction_prev else {"pointwise": (s0.shape[-1], c)}),
                      "preprocess1": {"pointwise": (s1.shape[-1], c)}}

        def init_pre(key):
            names = [(name, leaf) for name, leaves in pre_shapes.items() for leaf in leaves]
            draw = _lecun_normal(key, [(1, *pre_shapes[name][leaf]) for name, leaf in names])
            out = {name: {"bn": {"scale": jnp.ones((c,)), "bias": jnp.zeros((c,))}} for name in pre_shapes}
            for (name, leaf), value in zip(names, draw):
                out[name][leaf] = value[0]
            return out

        pre = self.param("preprocess", init_pre)
        pre_stats = self.variable("batch_stats", "preprocess", lambda: {
            name: {"bn": {"mean": jnp.zeros((c,)), "var": jnp.ones((c,))}} for name in pre_shapes})
        params = self.param("edges", spec.init_params)
        stats = self.variable("batch_stats", "edges", spec.init_stats)

        prep0 = _factorized_reduce if self.reduction_prev else _relu_conv_bn
        s0, st0 = prep0(pre["preprocess0"], pre_stats.value["preprocess0"], s0, train)
        s1, st1 = _relu_conv_bn(pre["preprocess1"], pre_stats.value["preprocess1"], s1, train)
        # A Python 0 skips drop-path statically; anything else (a float or a traced schedule) applies it.
        dropping = train and not (isinstance(drop_path_rate, (int, float)) and drop_path_rate == 0)
        key = jax.random.key_data(self.make_rng("dropout")) if dropping else None
        if self.is_initializing():  # the parameters are made; skip compiling the cell into init
            b, h, w, _ = s1.shape
            h, w = (h // 2, w // 2) if self.reduction else (h, w)
            return jnp.zeros((b, h, w, self.num_nodes * c), s1.dtype)
        if isinstance(genotype, np.ndarray):
            out, new_stats = _static_cell(spec, params, stats.value, s0, s1, genotype, train, drop_path_rate,
                                          key)
        else:
            out, new_stats = _traced_cell(spec, train, params, stats.value, s0, s1, genotype,
                                          jnp.asarray(drop_path_rate, s1.dtype), key)
        if train:
            pre_stats.value = {"preprocess0": st0, "preprocess1": st1}
            stats.value = new_stats
        return out

    def multiply_adds(self, s0, s1, genotype, *_, **__) -> int:
        """Multiply-adds of the cell's convolutions for a concrete `genotype` (num_nodes, 2, 2), given
        its inputs' shapes (nodes at half s1's resolution in a reduction cell): `nasjax.spaces.cost` asks
        for them, as they are not Flax layers. The preprocessing is a 1x1 conv to `features` channels at
        s1's resolution (after a reduction, FactorizedReduce's two stride-2 halves to features / 2 each:
        the same count); an edge from a cell input of a reduction cell runs at stride 2; pools,
        identities and 'none' cost nothing."""
        c, (h, w) = self.features, s1.shape[1:3]
        total = h * w * (s0.shape[-1] + s1.shape[-1]) * c
        hw = (h // 2) * (w // 2) if self.reduction else h * w  # every node's resolution
        for j, op_id in np.asarray(genotype).reshape(-1, 2):
            op = self.ops[op_id]
            stride = 2 if self.reduction and j < 2 else 1
            if op.startswith(("sep_conv", "dil_conv")):
                halves = 2 if op.startswith("sep_conv") else 1  # SepConv is two (depthwise, pointwise)
                total += halves * (int(op[-1]) ** 2 * c + c * c) * hw
            elif op == "skip_connect" and stride == 2:
                total += c * c * hw  # FactorizedReduce: two 1x1 convs c -> c / 2
        return total


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


def reduction_layers(layers: int) -> tuple[int, int]:
    """The cells (0-based) that reduce: layers // 3 and 2 * layers // 3."""
    return layers // 3, 2 * layers // 3


class DARTSNetwork(nn.Module):
    """DARTS' `NetworkCIFAR` over every candidate op (the weight-sharing supernet; see above).
    x (B, H, W, 3), genotype int (2, num_nodes, 2, 2) -> logits (B, num_classes), or (logits,
    aux_logits) when `auxiliary` and `train`.

    `genotype` (a nested tuple of the encoding) fixes the architecture at build time; otherwise pass it
    to `__call__` (traced: one compiled program for every genotype). Training (`train=True`) updates
    `batch_stats` (pass mutable=["batch_stats"]) and, when the drop-path rate is not 0, draws from the
    rng stream 'dropout'. `drop_path_rate` given to `__call__` overrides the attribute, so a schedule
    (DARTS grows it linearly over epochs) needs no recompilation. The auxiliary head's parameters are
    created at init whenever `auxiliary` is set.
    """

    ops: tuple[str, ...] = OPS
    num_nodes: int = 4
    genotype: tuple | None = None
    num_classes: int = 10
    init_channels: int = 36
    layers: int = 20
    auxiliary: bool = False
    drop_path_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, genotype=None, train: bool = False, drop_path_rate=None):
        if (genotype is None) == (self.genotype is None):
            raise ValueError("DARTSNetwork needs a genotype: built in (genotype=...) or passed to the call, "
                             "not both")
        genotype = np.asarray(self.genotype, np.int32) if genotype is None else jnp.asarray(genotype, jnp.int32)
        rate = self.drop_path_rate if drop_path_rate is None else drop_path_rate
        c = self.init_channels
        x = primitives.Conv(3 * c, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, name="stem")(x)
        s0 = s1 = primitives.batch_norm(train, "stem_bn")(x)
        reductions = reduction_layers(self.layers)
        reduction_prev, aux_logits = False, None
        for i in range(self.layers):
            reduction = i in reductions
            c = 2 * c if reduction else c
            cell = DARTSCell(self.ops, self.num_nodes, c, reduction, reduction_prev, name=f"cell{i}")
            s0, s1 = s1, cell(s0, s1, genotype[int(reduction)], train, rate)
            reduction_prev = reduction
            if self.auxiliary and i == reductions[1] and (train or self.is_initializing()):
                aux_logits = AuxiliaryHeadCIFAR(self.num_classes, name="auxiliary_head")(s1, train)
        logits = nn.Dense(self.num_classes, name="classifier")(jnp.mean(s1, axis=(1, 2)))
        return (logits, aux_logits) if self.auxiliary and train else logits


def path_param_count(params, genotype: np.ndarray, ops: tuple[str, ...] = OPS) -> int:
    """Parameters of the network `genotype` (2, N, 2, 2) chooses among a `DARTSNetwork`'s `params`:
    every leaf outside the cells' edges and, per cell, the chosen ops' slices of the edge leaves."""
    genotype = np.asarray(genotype, np.int32)
    cells = sorted((name for name in params if name.startswith("cell")), key=lambda n: int(n[4:]))
    total = sum(math.prod(leaf.shape) for name, tree in params.items() if name not in cells
                for leaf in jax.tree.leaves(tree))
    reductions = reduction_layers(len(cells))
    for i, name in enumerate(cells):
        total += sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params[name]["preprocess"]))
        c = params[name]["preprocess"]["preprocess1"]["pointwise"].shape[1]
        spec = CellSpec(tuple(ops), genotype.shape[1], c, i in reductions)
        total += spec.path_param_count(genotype[int(i in reductions)])
    return total


# --- the space ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DARTSSpace(Space):
    """Normal + reduction cell of `num_nodes` nodes, two (input, op) edges each; see the module docstring.
    `init_channels` and `layers` configure the network the engine trains (`trainable`) and `to_module`'s
    default (DARTS' CIFAR-10 evaluation network: 36 channels, 20 cells)."""

    num_nodes: int = 4
    ops: tuple[str, ...] = OPS
    include_none: bool = False
    init_channels: int = 36
    layers: int = 20

    def __post_init__(self):
        if self.num_nodes < 1:
            raise ValueError(f"num_nodes must be >= 1, got {self.num_nodes}")
        _check_network(self.init_channels, self.layers)
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

    def from_genotype(self, normal, normal_concat: Sequence | None = None, reduce: Sequence | None = None,
                      reduce_concat: Sequence | None = None) -> np.ndarray:
        """Canonical int32 (2, N, 2, 2) encoding of a DARTS genotype: its four fields
        (`from_genotype(*DARTS_V2)`), a `Genotype`, or the string DARTS prints (`parse_genotype`); each
        cell's edges flat (2 per node) or nested per node. `InvalidEncodingError` naming what the space
        cannot express."""
        if isinstance(normal, str):
            normal = parse_genotype(normal)
        if isinstance(normal, Genotype) or (isinstance(normal, tuple) and hasattr(normal, "_fields")):
            normal, normal_concat, reduce, reduce_concat = normal
        if normal_concat is None or reduce is None or reduce_concat is None:
            raise InvalidEncodingError("from_genotype needs a Genotype, its string, or its four fields "
                                       "(normal, normal_concat, reduce, reduce_concat)")
        normal, reduce = _flat_edges("normal", normal), _flat_edges("reduce", reduce)
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
                if not (isinstance(edge, (tuple, list)) and len(edge) == 2 and isinstance(edge[0], str)
                        and isinstance(edge[1], (int, np.integer))):
                    raise InvalidEncodingError(f"{cell} cell edge {e}: {edge!r} is not an (op name, input "
                                               "index) pair")
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

    def _network(self, genotype, num_classes: int, init_channels: int | None, layers: int | None,
                 auxiliary: bool, drop_path_rate: float) -> DARTSNetwork:
        init_channels = self.init_channels if init_channels is None else init_channels
        layers = self.layers if layers is None else layers
        _check_network(init_channels, layers)
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        return DARTSNetwork(ops=self.ops, num_nodes=self.num_nodes, genotype=genotype, num_classes=num_classes,
                            init_channels=init_channels, layers=layers, auxiliary=auxiliary,
                            drop_path_rate=drop_path_rate)

    def to_module(self, enc, num_classes: int = 10, init_channels: int | None = None, layers: int | None = None,
                  auxiliary: bool = False, drop_path_rate: float = 0.0) -> DARTSNetwork:
        """DARTS' evaluation network for `enc` (default size: the space's `init_channels`, `layers`),
        its genotype built in: `module.apply(variables, x)`. It holds every candidate op's parameters
        (`param_count` counts the chosen ones)."""
        return self._network(_as_tuple(self.checked(enc).tolist()), num_classes, init_channels, layers, auxiliary,
                             drop_path_rate)

    def trainable(self, enc, num_classes: int = 10, auxiliary: bool = False, drop_path_rate: float = 0.0):
        """(module, (genotype,)): the space's network with the genotype as data, so every architecture
        shares one module and one compiled training program (the weight-sharing supernet)."""
        return (self._network(None, num_classes, None, None, auxiliary, drop_path_rate),
                (self.checked(enc),))

    def param_count(self, enc, params) -> int:
        """Parameters of the network `enc` denotes among `params` of its module (every candidate op's
        are there): the chosen ops' and the shared layers'."""
        return path_param_count(params, self.checked(enc), self.ops)


def _as_tuple(nested):
    return tuple(_as_tuple(v) for v in nested) if isinstance(nested, list) else nested


def _check_network(init_channels: int, layers: int) -> None:
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    if init_channels < 1 or init_channels % 2:
        raise ValueError(f"init_channels must be a positive even number (FactorizedReduce halves "
                         f"channels), got {init_channels}")
