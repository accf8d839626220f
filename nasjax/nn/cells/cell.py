"""The DARTS-family cell: two inputs, `num_nodes` nodes each summing two (input, op) edges, output the
concatenation of the nodes (DARTS) or of the loose ends, the states no node reads (the NASNet space).

Every cell holds the parameters of every candidate op on every edge (node i, predecessor j): the
weight-sharing supernet. The genotype chooses one (j, op) per slot and only that op runs. Given as a
numpy array (a network built for one architecture, `nasjax.nn.build`) the choice is made in Python
(`_static_cell`); given as a traced int array (`nasjax.nn.supernet`) the cell is a `lax.scan` over its
2 * num_nodes chosen edges, each a `lax.switch` over the ops (`_traced_cell`, with a hand-written
backward), so one compiled program serves every genotype of a configuration and each op is compiled
once per cell, not once per edge. Both read the same parameters with the same op code, so a supernet
path equals its stand-alone network (tests/test_darts.py, tests/test_nasnet.py). Op parameters: each
leaf stacks every edge (node i, predecessor j) on axis 0, node by node (DARTS' 14 edges for 4 nodes);
FactorizedReduce (the reduction cell's skip_connect from the two cell inputs) stacks 2 per node. With
`twins` (the NASNet space, where a node may take one (input, op) pair twice, two modules in the
reference networks) each node's edges are stacked twice and the second of two equal pairs uses copy 1.

`CellSpec` fixes the node count, op set, which inputs a node may read (any of its i + 2 predecessors),
whether a pair may come twice (`twins`) and what the output holds: every node, or with `loose_ends`
every state a loose end may be (a normal cell's inputs and nodes, a reduction cell's nodes), all of
them, so its width does not depend on the genotype. Which of those
states are concatenated is then a mask (`nasjax.spaces.nasnet.loose_ends`) the readers of the output
apply (`restrict`): the next cells' preprocessing, the classifier and the auxiliary head read only the
rows of their kernels that face a loose end, so the network computes and counts exactly the network
of the concatenated states, while every genotype has the same parameter shapes. The op library is
`nasjax.nn.cells.ops`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from nasjax.nn.cells.ops import apply_op, factorized_reduce, is_stat, nest, op_shapes, relu_conv_bn
from nasjax.nn.init import lecun_normal
from nasjax.spaces.darts import INPUT, OP


def _kernels(key: jax.Array, shapes: list[tuple[int, ...]]) -> list[jax.Array]:
    """Flax's default conv-kernel init for kernels (E, k, k, C) depthwise (fan_in k * k) or (E, Cin, Cout)
    pointwise (fan_in Cin), E stacked edges, from one draw (`nasjax.nn.init.lecun_normal`)."""
    return lecun_normal(key, shapes, [shape[1] * shape[2] if len(shape) == 4 else shape[1] for shape in shapes])


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """Static shape of one cell's edges: candidate `ops`, `num_nodes`, `features` C, `reduction`,
    whether the output is the loose ends (`loose_ends`) or the nodes, and whether a node may take the
    same (input, op) pair twice (`twins`: the second then has parameters of its own, a second copy of
    every edge, as two modules of the reference networks; without, a node's inputs are distinct)."""

    ops: tuple[str, ...]
    num_nodes: int
    features: int
    reduction: bool
    loose_ends: bool = False
    twins: bool = False

    @property
    def first_output(self) -> int:
        """The first state in the output: 0 when the cell inputs are in it, else 2 (the first node)."""
        return 0 if self.loose_ends and not self.reduction else 2

    @property
    def output_states(self) -> int:
        return self.num_nodes + 2 - self.first_output

    def _inputs_per_node(self, op: str) -> list[int]:
        """Inputs of `op`'s edges per node: all i + 2 predecessors; the reduction's FactorizedReduce 2."""
        return [2 if self.reduction and op == "skip_connect" else i + 2 for i in range(self.num_nodes)]

    def _edges_per_node(self, op: str) -> list[int]:
        """Stacked edges of `op` per node: its inputs, twice with `twins` (copy 0, then copy 1)."""
        return [(2 if self.twins else 1) * m for m in self._inputs_per_node(op)]

    def edge_index(self, op: str, node, j, twin=0):
        """Axis-0 index of edge (node, input j, copy `twin`) in `op`'s stacked leaves; node, j and twin
        may be traced (a reduction's FactorizedReduce then clamps j to the cell inputs, where it has
        parameters)."""
        offsets = np.concatenate([[0], np.cumsum(self._edges_per_node(op))[:-1]])
        inputs = self._inputs_per_node(op)
        if isinstance(node, int):
            return int(offsets[node]) + twin * inputs[node] + j
        if self.reduction and op == "skip_connect":
            j = jnp.minimum(j, 1)
        return jnp.asarray(offsets, jnp.int32)[node] + twin * jnp.asarray(inputs, jnp.int32)[node] + j

    def twin(self, genotype, node, slot):
        """1 for the second slot of a node whose two (input, op) pairs are equal (with `twins`), else 0;
        numpy (ints) or traced."""
        if not self.twins or slot == 0:
            return 0
        same = genotype[node, 0] == genotype[node, 1]
        return int(same.all()) if isinstance(genotype, np.ndarray) else same.all().astype(jnp.int32)

    def stride(self, index) -> int:
        return 2 if self.reduction and index < 2 else 1

    def shapes(self, stats: bool) -> dict:
        """{op: {leaf path: stacked shape}} of the edge parameters (or batch statistics)."""
        out = {}
        for op in self.ops:
            stride = 2 if self.reduction and op == "skip_connect" else 1
            leaves = {path: (sum(self._edges_per_node(op)), *shape)
                      for path, shape in op_shapes(op, self.features, stride).items() if is_stat(path) == stats}
            if leaves:
                out[op] = leaves
        return out

    def init_params(self, key: jax.Array) -> dict:
        """Kernels as Flax's default (lecun_normal: truncated normal, variance 1 / fan_in, per edge), BN
        scale 1 and bias 0; all kernels from one draw (a sampler per leaf costs seconds to compile)."""
        flat = {(op, path): shape for op, leaves in self.shapes(stats=False).items() for path, shape in leaves.items()}
        kernels = [k for k in flat if not k[1].endswith(("/scale", "/bias"))]
        draw = _kernels(key, [flat[k] for k in kernels])
        out: dict = {}
        for k, shape in flat.items():
            op, path = k
            kind = path.rsplit("/", 1)[-1]
            value = draw.pop(0) if k in kernels else (jnp.ones if kind == "scale" else jnp.zeros)(shape)
            out.setdefault(op, {})[path] = value
        return {op: nest(leaves) for op, leaves in out.items()}

    def init_stats(self) -> dict:
        """The batch statistics, an entry for every op with parameters (empty for a conv without BN)."""
        stats = self.shapes(stats=True)
        return {op: nest({path: (jnp.ones if path.endswith("var") else jnp.zeros)(shape, jnp.float32)
                          for path, shape in stats.get(op, {}).items()}) for op in self.shapes(stats=False)}

    def path_param_count(self, genotype: np.ndarray) -> int:
        """Parameters of the ops the cell genotype (num_nodes, 2, 2) chooses."""
        total = 0
        for i in range(self.num_nodes):
            for index, op_id in genotype[i]:
                total += sum(math.prod(shape) for path, shape in
                             op_shapes(self.ops[op_id], self.features, self.stride(index)).items()
                             if not is_stat(path))
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
                index = spec.edge_index(op, i, j, spec.twin(genotype, i, slot))
                h, new = apply_op(op, _take(params[op], index), _take(stats[op], index), states[j], stride, train)
                stats = {**stats, op: _put(stats[op], index, new)}
            else:
                h, _ = apply_op(op, {}, {}, states[j], stride, train)
            if keys is not None and not (op == "skip_connect" and stride == 1):
                h = h * _drop_mask(keys[2 * i + slot], h.shape[0], rate, h.dtype)
            total = total + h
        states.append(total)
    return jnp.concatenate(states[spec.first_output:], axis=-1), stats


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
                    return apply_op(op, {}, {}, x, stride, train)[0], s
                h, new = apply_op(op, p[op], s[op], x, stride, train)
                return h, {**s, op: new}
            out.append(branch)
    return out


class _Edges(NamedTuple):
    """A traced cell's 2 * num_nodes chosen edges in order (node, slot), the `lax.scan` axis."""

    node: jax.Array  # int (2N,)
    input: jax.Array  # int (2N,): j
    twin: jax.Array  # int (2N,): the copy of the edge's parameters (`CellSpec.twin`)
    branch: jax.Array  # int (2N,): the `_branches` index
    identity: jax.Array  # bool (2N,): a stride-1 skip_connect, which drop-path leaves alone
    key: jax.Array | None  # (2N, ...) drop-path key data, or None (no drop-path)


def _edges(spec: CellSpec, genotype, key) -> _Edges:
    n = spec.num_nodes
    j, op = genotype[:, :, INPUT].reshape(-1), genotype[:, :, OP].reshape(-1)
    wide = (j < 2) if spec.reduction else jnp.zeros_like(j, bool)
    skip = spec.ops.index("skip_connect") if "skip_connect" in spec.ops else -1
    twin = jnp.stack([jnp.stack([spec.twin(genotype, i, 0), spec.twin(genotype, i, 1)]) for i in range(n)])
    return _Edges(jnp.repeat(jnp.arange(n, dtype=j.dtype), 2), j, twin.reshape(-1).astype(j.dtype),
                  op + len(spec.ops) * wide, (op == skip) & ~wide,
                  None if key is None else jax.random.split(key, 2 * n))


def _edge_indices(spec: CellSpec, params: dict, edge: _Edges) -> dict:
    """{op: axis-0 index of the edge} for every op with parameters (and statistics) in the cell."""
    return {op: spec.edge_index(op, edge.node, edge.input, edge.twin) for op in params}


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
        index = _edge_indices(spec, params, edge)
        hh, new = lax.switch(edge.branch, branches, _slices(params, index), _slices(stats, index), x_in, x_mid)
        stats = {op: _put(stats[op], i, new[op]) for op, i in index.items()}
        if edge.key is not None:
            hh = jnp.where(edge.identity, hh, hh * _drop_mask(edge.key, b, rate, hh.dtype))
        return (_add_to_node(spec, buf, edge.node, hh), stats), None

    (buf, stats), _ = lax.scan(step, (buf, stats), _edges(spec, genotype, key))
    mids = buf[1] if spec.reduction else buf[spec.first_output:]
    out = jnp.moveaxis(mids, 0, 3).reshape(*mids.shape[1:4], spec.output_states * c)
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
    m = spec.output_states
    dmids = jnp.moveaxis(dout.reshape(*dout.shape[:3], m, dout.shape[-1] // m), 3, 0)
    if spec.reduction:
        dbuf = (jnp.zeros_like(buf[0]), dmids)
    else:
        dbuf = jnp.concatenate([jnp.zeros_like(buf[:spec.first_output]), dmids])

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
        index = _edge_indices(spec, params, edge)
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


def restrict(x: jax.Array, mask, *kernels: jax.Array) -> tuple:
    """(x, *kernels) reading only the states of a loose-end cell's output x (B, ..., S * C) that `mask`
    bool (S,) marks concatenated; kernels (S * C, ...) read x's channels. A numpy mask (a genotype built
    in) selects those channels and kernel rows; a traced one zeroes the other kernel rows (same values
    and gradients). mask None: x and kernels as they are."""
    if mask is None:
        return (x, *kernels)
    if isinstance(mask, np.ndarray):
        rows = np.flatnonzero(np.repeat(mask, x.shape[-1] // mask.shape[0]))
        return (x[..., rows], *(k[rows] for k in kernels))
    rows = jnp.repeat(mask, x.shape[-1] // mask.shape[0])
    return (x, *(k * rows.reshape(-1, *([1] * (k.ndim - 1))).astype(k.dtype) for k in kernels))


def read_width(x, mask) -> int:
    """Channels of x a reader restricted to `mask` (numpy or None) reads."""
    return x.shape[-1] if mask is None else x.shape[-1] * int(np.sum(mask)) // len(mask)


def _preprocess(fn, p, s, x, mask, train):
    """A preprocessing op (relu_conv_bn, factorized_reduce) reading the states of x `mask` marks."""
    names = [name for name in p if name != "bn"]
    x, *kernels = restrict(x, mask, *(p[name] for name in names))
    return fn({**p, **dict(zip(names, kernels))}, s, x, train)


class DARTSCell(nn.Module):
    """One cell over every candidate op: preprocessing of (s0, s1) to `features` channels, then the nodes
    of `genotype` (num_nodes, 2, 2) [node, slot, (input, op)], numpy (chosen in Python) or traced
    (a `lax.scan` over the chosen edges, a `lax.switch` per edge). `masks`: for s0 and s1 when a
    loose-end cell made them, the states of theirs to read (`restrict`), else None.
    (s0, s1) -> (B, H', W', output_states * features) (`CellSpec`)."""

    ops: tuple[str, ...]
    num_nodes: int
    features: int
    reduction: bool = False
    reduction_prev: bool = False
    loose_ends: bool = False
    twins: bool = False

    @nn.compact
    def __call__(self, s0, s1, genotype, train: bool = False, drop_path_rate=0.0, masks=(None, None)):
        c = self.features
        spec = CellSpec(self.ops, self.num_nodes, c, self.reduction, self.loose_ends, self.twins)
        pre_shapes = {"preprocess0": ({"conv_1": (s0.shape[-1], c // 2), "conv_2": (s0.shape[-1], c // 2)}
                                      if self.reduction_prev else {"pointwise": (s0.shape[-1], c)}),
                      "preprocess1": {"pointwise": (s1.shape[-1], c)}}

        def init_pre(key):
            names = [(name, leaf) for name, leaves in pre_shapes.items() for leaf in leaves]
            draw = _kernels(key, [(1, *pre_shapes[name][leaf]) for name, leaf in names])
            out = {name: {"bn": {"scale": jnp.ones((c,)), "bias": jnp.zeros((c,))}} for name in pre_shapes}
            for (name, leaf), value in zip(names, draw):
                out[name][leaf] = value[0]
            return out

        pre = self.param("preprocess", init_pre)
        pre_stats = self.variable("batch_stats", "preprocess", lambda: {
            name: {"bn": {"mean": jnp.zeros((c,)), "var": jnp.ones((c,))}} for name in pre_shapes})
        params = self.param("edges", spec.init_params)
        stats = self.variable("batch_stats", "edges", spec.init_stats)

        prep0 = factorized_reduce if self.reduction_prev else relu_conv_bn
        s0, st0 = _preprocess(prep0, pre["preprocess0"], pre_stats.value["preprocess0"], s0, masks[0], train)
        s1, st1 = _preprocess(relu_conv_bn, pre["preprocess1"], pre_stats.value["preprocess1"], s1, masks[1], train)
        # A Python 0 skips drop-path statically; anything else (a float or a traced schedule) applies it.
        dropping = train and not (isinstance(drop_path_rate, (int, float)) and drop_path_rate == 0)
        key = jax.random.key_data(self.make_rng("dropout")) if dropping else None
        if self.is_initializing():  # the parameters are made; skip compiling the cell into init
            b, h, w, _ = s1.shape
            h, w = (h // 2, w // 2) if self.reduction else (h, w)
            return jnp.zeros((b, h, w, spec.output_states * c), s1.dtype)
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

    def multiply_adds(self, s0, s1, genotype, train=False, drop_path_rate=0.0, masks=(None, None)) -> int:
        """Multiply-adds of the cell's convolutions for a concrete `genotype` (num_nodes, 2, 2) and
        `masks`, given its inputs' shapes (nodes at half s1's resolution in a reduction cell):
        `nasjax.nn.cost` asks for them, as they are not Flax layers. The preprocessing is a 1x1 conv of
        the channels it reads to `features` channels at s1's resolution (after a reduction,
        FactorizedReduce's two stride-2 halves to features / 2 each: the same count); an edge from a
        cell input of a reduction cell runs at stride 2; pools, identities and 'none' cost nothing."""
        c, (h, w) = self.features, s1.shape[1:3]
        total = h * w * (read_width(s0, masks[0]) + read_width(s1, masks[1])) * c
        hw = (h // 2) * (w // 2) if self.reduction else h * w  # every node's resolution
        for j, op_id in np.asarray(genotype).reshape(-1, 2):
            op = self.ops[op_id]
            stride = 2 if self.reduction and j < 2 else 1
            if op.startswith(("sep_conv", "dil_conv")):
                halves = 2 if op.startswith("sep_conv") else 1  # SepConv is two (depthwise, pointwise)
                total += halves * (int(op[-1]) ** 2 * c + c * c) * hw
            elif op == "skip_connect" and stride == 2:
                total += c * c * hw  # FactorizedReduce: two 1x1 convs c -> c / 2
            elif op == "conv_1x1":
                total += c * c * hw
        return total
