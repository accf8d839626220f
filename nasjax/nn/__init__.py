"""Every network and op: CPU kernels and compiler options (`ops`), Flax's initializer (`init`), FLOP
counting (`cost`), and the networks of each search space, built through one interface (`api`):

  nasjax.nn.build(space, enc, num_classes=..., **options)   the network `enc` denotes
  nasjax.nn.supernet(space, num_classes=..., **options)     one network for every architecture,
                                                            called with nasjax.nn.arch_data(space, enc)
  nasjax.nn.param_count(space, enc, params)                 the parameters `enc`'s network uses

Each space's network module registers its networks on import (`register(SpaceType, Networks(...))`):
`convnet`, `nasbench101`, `nasbench201`, `cells` (the DARTS family), `rnn`.
"""

from nasjax.nn import cost, init, ops
from nasjax.nn.api import (Networks, arch_data, build, example_input, has_supernet, networks, param_count,
                           reads_images, register, supernet)
from nasjax.nn import cells, convnet, nasbench101, nasbench201, rnn  # noqa: E402  (registrations)

__all__ = ["Networks", "arch_data", "build", "cells", "convnet", "cost", "example_input", "has_supernet", "init",
           "nasbench101", "nasbench201", "networks", "ops", "param_count", "reads_images", "register", "rnn",
           "supernet"]
