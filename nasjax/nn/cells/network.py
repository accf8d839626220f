"""DARTS' evaluation network `NetworkCIFAR` (quark0/darts cnn/model.py, operations.py), op for op, and
its registration as the networks of `DARTSSpace` (`nasjax.nn.build`, `nasjax.nn.supernet`).

Stem conv3x3 (3C) + BN; `layers` cells with reductions (channels doubled, stride 2 on the edges
reading the cell inputs) at layers // 3 and 2 * layers // 3; preprocessing FactorizedReduce after a
reduction, else ReLU-conv1x1-BN; drop-path on every op but the identity while training; an optional
CIFAR auxiliary head after cell 2 * layers // 3; global average pooling; linear classifier.
BatchNorms are affine with PyTorch's defaults (momentum 0.1, eps 1e-5).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nasjax.nn import ops as primitives
from nasjax.nn.api import Networks, register
from nasjax.nn.cells.cell import CellSpec, DARTSCell
from nasjax.spaces.darts import OPS, DARTSSpace, check_network_size


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
    """DARTS' `NetworkCIFAR` over every candidate op (the weight-sharing supernet; see `nasjax.nn.cells.cell`).
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


# --- the networks of DARTSSpace ------------------------------------------------------------------------
def _network(space: DARTSSpace, genotype, num_classes: int, init_channels: int | None, layers: int | None,
             auxiliary: bool, drop_path_rate: float) -> DARTSNetwork:
    init_channels = space.init_channels if init_channels is None else init_channels
    layers = space.layers if layers is None else layers
    check_network_size(init_channels, layers)
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
    return DARTSNetwork(ops=space.ops, num_nodes=space.num_nodes, genotype=genotype, num_classes=num_classes,
                        init_channels=init_channels, layers=layers, auxiliary=auxiliary,
                        drop_path_rate=drop_path_rate)


def _as_tuple(nested):
    return tuple(_as_tuple(v) for v in nested) if isinstance(nested, list) else nested


def build(space: DARTSSpace, enc, *, num_classes: int = 10, init_channels: int | None = None,
          layers: int | None = None, auxiliary: bool = False, drop_path_rate: float = 0.0) -> DARTSNetwork:
    """DARTS' evaluation network for `enc` (default size: the space's `init_channels`, `layers`), its
    genotype built in: `module.apply(variables, x)`. It holds every candidate op's parameters
    (`param_count` counts the chosen ones)."""
    return _network(space, _as_tuple(space.checked(enc).tolist()), num_classes, init_channels, layers, auxiliary,
                    drop_path_rate)


def supernet(space: DARTSSpace, *, num_classes: int = 10, init_channels: int | None = None, layers: int | None = None,
             auxiliary: bool = False, drop_path_rate: float = 0.0) -> DARTSNetwork:
    """The same network with the genotype as data (`module.apply(variables, x, genotype)`), so every
    architecture shares one module and one compiled training program (the weight-sharing supernet)."""
    return _network(space, None, num_classes, init_channels, layers, auxiliary, drop_path_rate)


def param_count(space: DARTSSpace, enc, params) -> int:
    """Parameters of the network `enc` denotes among `params` of its module (every candidate op's are
    there): the chosen ops' and the shared layers'."""
    return path_param_count(params, space.checked(enc), space.ops)


register(DARTSSpace, Networks(build=build, supernet=supernet, arch_data=lambda space, enc: jnp.asarray(enc, jnp.int32),
                              param_count=param_count))
