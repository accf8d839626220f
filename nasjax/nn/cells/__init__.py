"""The DARTS family of cell networks: the functional op library (`ops`), the cell (`cell`: static and
`lax.scan` cells with a hand-written backward) and the network around it (`network`, registered as
`DARTSSpace`'s)."""

from nasjax.nn.cells import cell, network, ops
from nasjax.nn.cells.cell import CellSpec, DARTSCell
from nasjax.nn.cells.network import AuxiliaryHeadCIFAR, DARTSNetwork, path_param_count, reduction_layers

__all__ = ["AuxiliaryHeadCIFAR", "CellSpec", "DARTSCell", "DARTSNetwork", "cell", "network", "ops",
           "path_param_count", "reduction_layers"]
