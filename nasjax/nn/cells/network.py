"""DARTS' evaluation network `NetworkCIFAR` (quark0/darts cnn/model.py, operations.py), op for op, and
its registration as the networks of `DARTSSpace` and `NASNetSpace` (`nasjax.nn.build`,
`nasjax.nn.supernet`; LaNet's model.py is the same network with the NASNet cell: one cell code for
normal and reduction cells, the output its loose ends).

Stem conv3x3 (3C) + BN; `layers` cells with reductions (channels doubled, stride 2 on the edges
reading the cell inputs) at layers // 3 and 2 * layers // 3; preprocessing FactorizedReduce after a
reduction, else ReLU-conv1x1-BN; drop-path on every op but the identity while training; an optional
CIFAR auxiliary head after cell 2 * layers // 3; global average pooling; linear classifier.
BatchNorms are affine with PyTorch's defaults (momentum 0.1, eps 1e-5).
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nasjax.nn import ops as primitives
from nasjax.nn.api import Networks, register
from nasjax.nn.cells.cell import CellSpec, DARTSCell, read_width, restrict
from nasjax.spaces.darts import OPS, DARTSSpace, check_network_size
from nasjax.spaces.nasnet import NASNetSpace, loose_ends


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


def cell_plan(genotype, layers: int, shared_cell: bool, loose: bool) -> list[tuple]:
    """Per cell (its genotype (N, 2, 2), reduction, the mask of the states its output concatenates or
    None for all): the network's wiring. `genotype` (N, 2, 2) shared or (2, N, 2, 2) [normal, reduce];
    numpy or traced (masks alike)."""
    reductions = reduction_layers(layers)
    plan = []
    for i in range(layers):
        reduction = i in reductions
        cell = genotype if shared_cell else genotype[int(reduction)]
        plan.append((cell, reduction, loose_ends(cell, reduction) if loose else None))
    return plan


class Classifier(nn.Module):
    """The linear classifier over a loose-end cell's pooled output x (B, S * C), reading the states
    `mask` (S,) marks (`restrict`): nn.Dense's parameters and initialisation, every genotype one shape."""

    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, mask) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.num_classes))
        bias = self.param("bias", nn.initializers.zeros, (self.num_classes,))
        x, kernel = restrict(x, mask, kernel)
        return x @ kernel + bias

    def multiply_adds(self, x, mask) -> int:
        return read_width(x, mask) * self.num_classes


class DARTSNetwork(nn.Module):
    """DARTS' `NetworkCIFAR` over every candidate op (the weight-sharing supernet; see `nasjax.nn.cells.cell`).
    x (B, H, W, 3), genotype int (2, num_nodes, 2, 2) (or (num_nodes, 2, 2) with `shared_cell`) ->
    logits (B, num_classes), or (logits, aux_logits) when `auxiliary` and `train`.

    `genotype` (a nested tuple of the encoding) fixes the architecture at build time; otherwise pass it
    to `__call__` (traced: one compiled program for every genotype). Training (`train=True`) updates
    `batch_stats` (pass mutable=["batch_stats"]) and, when the drop-path rate is not 0, draws from the
    rng stream 'dropout'. `drop_path_rate` given to `__call__` overrides the attribute, so a schedule
    (DARTS grows it linearly over epochs) needs no recompilation. The auxiliary head's parameters are
    created at init whenever `auxiliary` is set. With `loose_ends` each cell's output is its loose ends
    (`nasjax.nn.cells.cell`): the layers reading it read those states only; with `twins` a node may
    take one (input, op) pair twice (`CellSpec`).
    """

    ops: tuple[str, ...] = OPS
    num_nodes: int = 4
    genotype: tuple | None = None
    num_classes: int = 10
    init_channels: int = 36
    layers: int = 20
    auxiliary: bool = False
    drop_path_rate: float = 0.0
    shared_cell: bool = False
    loose_ends: bool = False
    twins: bool = False

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
        masks = (None, None)  # of s0, s1
        reduction_prev, aux_logits = False, None
        for i, (cell_genotype, reduction, mask) in enumerate(
                cell_plan(genotype, self.layers, self.shared_cell, self.loose_ends)):
            c = 2 * c if reduction else c
            cell = DARTSCell(self.ops, self.num_nodes, c, reduction, reduction_prev, self.loose_ends, self.twins,
                             name=f"cell{i}")
            s0, s1 = s1, cell(s0, s1, cell_genotype, train, rate, masks)
            masks, reduction_prev = (masks[1], mask), reduction
            if self.auxiliary and i == reduction_layers(self.layers)[1] and (train or self.is_initializing()):
                aux_in = s1 if mask is None else s1 * jnp.repeat(mask, s1.shape[-1] // len(mask)).astype(s1.dtype)
                aux_logits = AuxiliaryHeadCIFAR(self.num_classes, name="auxiliary_head")(aux_in, train)
        pooled = jnp.mean(s1, axis=(1, 2))
        if self.loose_ends:
            logits = Classifier(self.num_classes, name="classifier")(pooled, masks[1])
        else:
            logits = nn.Dense(self.num_classes, name="classifier")(pooled)
        return (logits, aux_logits) if self.auxiliary and train else logits


def _rows(leaf, mask) -> int:
    """Parameters of a kernel (..., S * C, out) or (S * C, out) reading the states `mask` marks."""
    return math.prod(leaf.shape) if mask is None else math.prod(leaf.shape) * int(np.sum(mask)) // len(mask)


def path_param_count(params, genotype: np.ndarray, ops: tuple[str, ...] = OPS, shared_cell: bool = False,
                     loose: bool = False) -> int:
    """Parameters of the network `genotype` chooses among a `DARTSNetwork`'s `params` (the network's
    `shared_cell` and `loose_ends`): every leaf outside the cells' edges and, per cell, the chosen ops'
    slices of the edge leaves; kernels reading a loose-end cell's output count the rows it concatenates."""
    genotype = np.asarray(genotype, np.int32)
    cells = sorted((name for name in params if name.startswith("cell")), key=lambda n: int(n[4:]))
    plan = cell_plan(genotype, len(cells), shared_cell, loose)
    masks = [None, None] + [mask for _, _, mask in plan]  # of the stem (twice), then of each cell's output
    reads = {"classifier": {"kernel": masks[-1]},
             "auxiliary_head": {"conv1": masks[2 + reduction_layers(len(cells))[1]]}}
    total = 0
    for name, tree in params.items():
        if name in cells:
            continue
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            first = path[0].key
            total += _rows(leaf, reads.get(name, {}).get(first))
    for i, (name, (cell_genotype, reduction, _)) in enumerate(zip(cells, plan)):
        for k, pre in enumerate(("preprocess0", "preprocess1")):
            for path, leaf in jax.tree_util.tree_leaves_with_path(params[name]["preprocess"][pre]):
                total += _rows(leaf, None if path[0].key == "bn" else masks[i + k])
        c = params[name]["preprocess"]["preprocess1"]["bn"]["scale"].shape[0]
        spec = CellSpec(tuple(ops), genotype.shape[-3], c, reduction)
        total += spec.path_param_count(cell_genotype)
    return total


# --- the networks of DARTSSpace and NASNetSpace ----------------------------------------------------------
def _as_tuple(nested):
    return tuple(_as_tuple(v) for v in nested) if isinstance(nested, list) else nested


@dataclasses.dataclass(frozen=True)
class CellNetworks:
    """The networks of a cell space whose cells are as `shared_cell`, `loose_ends` and `twins` say
    (`DARTSNetwork`); its methods are the space's `nasjax.nn` builders."""

    shared_cell: bool = False
    loose_ends: bool = False
    twins: bool = False

    def _network(self, space, genotype, num_classes: int, init_channels: int | None, layers: int | None,
                 auxiliary: bool, drop_path_rate: float) -> DARTSNetwork:
        init_channels = space.init_channels if init_channels is None else init_channels
        layers = space.layers if layers is None else layers
        check_network_size(init_channels, layers)
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        return DARTSNetwork(ops=space.ops, num_nodes=space.num_nodes, genotype=genotype, num_classes=num_classes,
                            init_channels=init_channels, layers=layers, auxiliary=auxiliary,
                            drop_path_rate=drop_path_rate, shared_cell=self.shared_cell, loose_ends=self.loose_ends,
                            twins=self.twins)

    def build(self, space, enc, *, num_classes: int = 10, init_channels: int | None = None, layers: int | None = None,
              auxiliary: bool = False, drop_path_rate: float = 0.0) -> DARTSNetwork:
        """DARTS' evaluation network for `enc` (default size: the space's `init_channels`, `layers`), its
        genotype built in: `module.apply(variables, x)`. It holds every candidate op's parameters
        (`param_count` counts the chosen ones)."""
        return self._network(space, _as_tuple(space.checked(enc).tolist()), num_classes, init_channels, layers,
                             auxiliary, drop_path_rate)

    def supernet(self, space, *, num_classes: int = 10, init_channels: int | None = None, layers: int | None = None,
                 auxiliary: bool = False, drop_path_rate: float = 0.0) -> DARTSNetwork:
        """The same network with the genotype as data (`module.apply(variables, x, genotype)`), so every
        architecture shares one module and one compiled training program (the weight-sharing supernet)."""
        return self._network(space, None, num_classes, init_channels, layers, auxiliary, drop_path_rate)

    def arch_data(self, space, enc) -> jax.Array:
        return jnp.asarray(enc, jnp.int32)

    def param_count(self, space, enc, params) -> int:
        """Parameters of the network `enc` denotes among `params` of its module (every candidate op's are
        there): the chosen ops' and the shared layers' (their rows facing concatenated states)."""
        return path_param_count(params, space.checked(enc), space.ops, self.shared_cell, self.loose_ends)

    def networks(self) -> Networks:
        return Networks(build=self.build, supernet=self.supernet, arch_data=self.arch_data,
                        param_count=self.param_count)


register(DARTSSpace, CellNetworks().networks())
register(NASNetSpace, CellNetworks(shared_cell=True, loose_ends=True, twins=True).networks())
