"""Search spaces: fixed-shape integer encodings <-> pure Flax modules."""

from nasjax.spaces import cost
from nasjax.spaces.base import InvalidEncodingError, NotEnumerableError, Space
from nasjax.spaces.convnet import ConvNet, ConvNetSpace
from nasjax.spaces.darts import DARTS_V2, DARTSNetwork, DARTSSpace, Genotype
from nasjax.spaces.nasbench101 import NASBench101Space, NB101Network
from nasjax.spaces.nasbench201 import NASBench201Space, NB201Network
from nasjax.spaces.rnn import (CellArrays, RecurrentGenotype, RNNCellSpace, RNNDAGSpace, RNNLanguageModel,
                               parse_genotype)

__all__ = [
    "cost", "ConvNet", "ConvNetSpace", "DARTS_V2", "DARTSNetwork", "DARTSSpace", "Genotype",
    "InvalidEncodingError", "NASBench101Space", "NASBench201Space", "NB101Network", "NB201Network",
    "NotEnumerableError", "RNNCellSpace", "RNNDAGSpace", "RNNLanguageModel", "RecurrentGenotype",
    "CellArrays", "Space", "parse_genotype",
]
