"""nasjax: neural architecture search in JAX.

Layers (imports point downward only): search, benchmarks, train -> nn, metrics, data -> spaces -> io.
"""

from nasjax import benchmarks, data, metrics, nn, search, spaces, train

__version__ = "0.1.0"
__all__ = ["benchmarks", "data", "metrics", "nn", "search", "spaces", "train"]
