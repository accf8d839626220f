"""Search spaces: fixed-shape integer encodings only (their networks: `nasjax.nn`)."""

from nasjax.spaces.base import ActionOrders, Graph, InvalidEncodingError, NotEnumerableError, Space, TokenView
from nasjax.spaces.convnet import ConvNetSpace
from nasjax.spaces.darts import DARTS_V2_CNN, CNNGenotype, DARTSSpace, parse_cnn_genotype
from nasjax.spaces.nasbench101 import NASBench101Space
from nasjax.spaces.nasbench201 import NASBench201Space
from nasjax.spaces.nasnet import LANET, NASNetSpace
from nasjax.spaces.rnn import (DARTS_V1_RNN, DARTS_V2_RNN, ENAS_RNN, RNNCellSpace, RNNDAGSpace, RNNGenotype,
                               parse_rnn_genotype)

__all__ = [
    "ActionOrders", "CNNGenotype", "ConvNetSpace", "Graph", "DARTS_V1_RNN", "DARTS_V2_CNN", "DARTS_V2_RNN", "DARTSSpace",
    "ENAS_RNN", "InvalidEncodingError", "LANET", "NASBench101Space", "NASBench201Space", "NASNetSpace", "NotEnumerableError",
    "RNNCellSpace", "RNNDAGSpace", "RNNGenotype", "Space", "TokenView", "parse_cnn_genotype",
    "parse_rnn_genotype",
]
