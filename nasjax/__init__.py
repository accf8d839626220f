"""nasjax: neural architecture search in JAX.

Layers (imports point downward only): benchmarks -> train -> nn, metrics, data -> spaces -> io; search ->
spaces (search never imports train).
"""

from nasjax import benchmarks, data, metrics, nn, search, spaces, train

__version__ = "0.1.0"
__all__ = ["benchmarks", "data", "metrics", "nn", "search", "spaces", "train"]
